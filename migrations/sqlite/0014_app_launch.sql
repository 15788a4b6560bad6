-- SMART App Launch: the browser sessions of the sign-in pages, the authorization requests
-- being answered, the codes and refresh tokens they yield, EHR launch contexts, and failed
-- sign-ins (for throttling). Every secret (session cookie, code, refresh token, launch id) is
-- kept as its SHA-256 only.

CREATE TABLE browser_sessions (
    token_hash TEXT PRIMARY KEY,
    csrf       TEXT NOT NULL,
    -- Null until someone signs in.
    user_id    TEXT REFERENCES users (id),
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    ended_at   TEXT
);
CREATE INDEX browser_sessions_expiry_idx ON browser_sessions (expires_at);

-- An app's request while its user signs in, picks a patient and consents.
CREATE TABLE authorization_requests (
    id             TEXT PRIMARY KEY,
    session_hash   TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    state          TEXT,
    nonce          TEXT,
    code_challenge TEXT NOT NULL,
    patient        TEXT,
    encounter      TEXT,
    -- 1 for an EHR launch (the clinic's application shows the patient).
    launched       INTEGER NOT NULL DEFAULT 0,
    expires_at     TEXT NOT NULL
);
CREATE INDEX authorization_requests_expiry_idx ON authorization_requests (expires_at);

-- Every code and refresh token belongs to a family: the tokens one consent yielded. A reused
-- code or refresh token revokes its family.
CREATE TABLE authorization_codes (
    code_hash      TEXT PRIMARY KEY,
    family         TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    code_challenge TEXT NOT NULL,
    scope          TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    session_hash   TEXT NOT NULL,
    patient        TEXT,
    encounter      TEXT,
    nonce          TEXT,
    launched       INTEGER NOT NULL DEFAULT 0,
    expires_at     TEXT NOT NULL,
    used_at        TEXT
);
CREATE INDEX authorization_codes_expiry_idx ON authorization_codes (expires_at);

CREATE TABLE refresh_tokens (
    token_hash   TEXT PRIMARY KEY,
    family       TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    scope        TEXT NOT NULL,
    patient      TEXT,
    encounter    TEXT,
    -- online_access: the token lives while this browser session does.
    session_hash TEXT,
    -- 1 for an EHR launch (need_patient_banner stays false on refresh).
    launched     INTEGER NOT NULL DEFAULT 0,
    expires_at   TEXT NOT NULL,
    used_at      TEXT,
    revoked_at   TEXT
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family);
CREATE INDEX refresh_tokens_expiry_idx ON refresh_tokens (expires_at);

-- Families revoked (a code or refresh token used twice): nothing more is issued in them.
CREATE TABLE revoked_families (
    family     TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);

ALTER TABLE issued_tokens ADD COLUMN family TEXT;
CREATE INDEX issued_tokens_family_idx ON issued_tokens (family) WHERE family IS NOT NULL;

CREATE TABLE launch_contexts (
    launch_hash TEXT PRIMARY KEY,
    client_id   TEXT NOT NULL,
    patient     TEXT NOT NULL,
    encounter   TEXT,
    expires_at  TEXT NOT NULL,
    used_at     TEXT
);
CREATE INDEX launch_contexts_expiry_idx ON launch_contexts (expires_at);

-- `account:<email, lower case>` or `address:<ip>`.
CREATE TABLE sign_in_failures (
    subject TEXT NOT NULL,
    at      TEXT NOT NULL
);
CREATE INDEX sign_in_failures_idx ON sign_in_failures (subject, at);
