-- SMART App Launch: the browser sessions of the sign-in pages, the authorization requests
-- being answered, the codes and refresh tokens they yield, EHR launch contexts, and failed
-- sign-ins (for throttling). Every secret (session cookie, code, refresh token, launch id) is
-- kept as its SHA-256 only.

CREATE TABLE browser_sessions (
    token_hash text PRIMARY KEY,
    csrf       text NOT NULL,
    -- Null until someone signs in.
    user_id    uuid REFERENCES users (id),
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    ended_at   timestamptz
);
CREATE INDEX browser_sessions_expiry_idx ON browser_sessions (expires_at);

-- An app's request while its user signs in, picks a patient and consents.
CREATE TABLE authorization_requests (
    id             text PRIMARY KEY,
    session_hash   text NOT NULL,
    client_id      text NOT NULL,
    redirect_uri   text NOT NULL,
    scope          text NOT NULL,
    state          text,
    nonce          text,
    code_challenge text NOT NULL,
    patient        text,
    encounter      text,
    -- 1 for an EHR launch (the clinic's application shows the patient).
    launched       boolean NOT NULL DEFAULT false,
    expires_at     timestamptz NOT NULL
);
CREATE INDEX authorization_requests_expiry_idx ON authorization_requests (expires_at);

-- Every code and refresh token belongs to a family: the tokens one consent yielded. A reused
-- code or refresh token revokes its family.
CREATE TABLE authorization_codes (
    code_hash      text PRIMARY KEY,
    family         text NOT NULL,
    client_id      text NOT NULL,
    redirect_uri   text NOT NULL,
    code_challenge text NOT NULL,
    scope          text NOT NULL,
    user_id        uuid NOT NULL,
    session_hash   text NOT NULL,
    patient        text,
    encounter      text,
    nonce          text,
    launched       boolean NOT NULL DEFAULT false,
    expires_at     timestamptz NOT NULL,
    used_at        timestamptz
);
CREATE INDEX authorization_codes_expiry_idx ON authorization_codes (expires_at);

CREATE TABLE refresh_tokens (
    token_hash   text PRIMARY KEY,
    family       text NOT NULL,
    client_id    text NOT NULL,
    user_id      uuid NOT NULL,
    scope        text NOT NULL,
    patient      text,
    encounter    text,
    -- online_access: the token lives while this browser session does.
    session_hash text,
    -- true for an EHR launch (need_patient_banner stays false on refresh).
    launched     boolean NOT NULL DEFAULT false,
    expires_at   timestamptz NOT NULL,
    used_at      timestamptz,
    revoked_at   timestamptz
);
CREATE INDEX refresh_tokens_family_idx ON refresh_tokens (family);
CREATE INDEX refresh_tokens_expiry_idx ON refresh_tokens (expires_at);

-- Families revoked (a code or refresh token used twice): nothing more is issued in them.
CREATE TABLE revoked_families (
    family     text PRIMARY KEY,
    expires_at timestamptz NOT NULL
);

ALTER TABLE issued_tokens ADD COLUMN family text;
CREATE INDEX issued_tokens_family_idx ON issued_tokens (family) WHERE family IS NOT NULL;

CREATE TABLE launch_contexts (
    launch_hash text PRIMARY KEY,
    client_id   text NOT NULL,
    patient     text NOT NULL,
    encounter   text,
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz
);
CREATE INDEX launch_contexts_expiry_idx ON launch_contexts (expires_at);

-- `account:<email, lower case>` or `address:<ip>`.
CREATE TABLE sign_in_failures (
    subject text NOT NULL,
    at      timestamptz NOT NULL
);
CREATE INDEX sign_in_failures_idx ON sign_in_failures (subject, at);
