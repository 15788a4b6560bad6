-- Authorization: what each role may do, the users who sign in, the OAuth clients, the keys that
-- sign access tokens, and the tokens issued (so that any server process on this database can
-- introspect and revoke them).

-- A role's permissions are SMART v2 scopes (`user/Patient.cruds`, `patient/*.rs`,
-- `user/Observation.cu?category=...|vital-signs`), separated by spaces: the most a user of the
-- role may do, whatever an app asks for. The clinic may edit them.
ALTER TABLE roles ADD COLUMN permissions TEXT NOT NULL DEFAULT '';
UPDATE roles SET name = 'administrator', permissions = 'user/*.cruds' WHERE name = 'admin';
UPDATE roles SET name = 'physician', permissions = 'user/*.cruds' WHERE name = 'doctor';
UPDATE roles SET permissions = 'user/Patient.rs user/Encounter.rs user/Practitioner.rs '
    || 'user/AllergyIntolerance.rs user/DiagnosticReport.rs user/MedicationRequest.rs '
    || 'user/Observation.rs '
    || 'user/Observation.cu?category=http://terminology.hl7.org/CodeSystem/observation-category|vital-signs'
    WHERE name = 'nurse';
UPDATE roles SET permissions = 'user/Patient.cruds user/Encounter.cruds user/Practitioner.rs'
    WHERE name = 'receptionist';
INSERT INTO roles (name, description, is_clinical, permissions) VALUES
    ('auditor', 'Auditor', 0, 'user/Patient.rs user/Practitioner.rs user/AuditEvent.rs'),
    ('patient', 'Patient (portal)', 0, 'patient/*.rs');

-- A user who is a patient (the patient portal) is linked to its Patient.
ALTER TABLE users ADD COLUMN patient_id TEXT REFERENCES patients (id);
CREATE INDEX users_patient_idx ON users (patient_id) WHERE patient_id IS NOT NULL;

-- A user's credentials are no part of the Practitioner: changing only them (a new password, a
-- sign-in) makes no new version.
DROP TRIGGER users_touch;
CREATE TRIGGER users_touch AFTER UPDATE ON users FOR EACH ROW
WHEN (OLD.password_hash IS NEW.password_hash AND OLD.last_login_at IS NEW.last_login_at)
    OR OLD.id IS NOT NEW.id OR OLD.fhir_id_given IS NOT NEW.fhir_id_given
    OR OLD.email IS NOT NEW.email OR OLD.role_id IS NOT NEW.role_id
    OR OLD.specialty_id IS NOT NEW.specialty_id OR OLD.first_name IS NOT NEW.first_name
    OR OLD.last_name IS NOT NEW.last_name OR OLD.phone IS NOT NEW.phone
    OR OLD.license_number IS NOT NEW.license_number OR OLD.gender IS NOT NEW.gender
    OR OLD.is_active IS NOT NEW.is_active OR OLD.version_id IS NOT NEW.version_id
    OR OLD.deleted_at IS NOT NEW.deleted_at OR OLD.fhir_extra IS NOT NEW.fhir_extra
    OR OLD.patient_id IS NOT NEW.patient_id
BEGIN
    UPDATE users SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;

CREATE TABLE oauth_clients (
    client_id     TEXT PRIMARY KEY CHECK (length(client_id) BETWEEN 1 AND 128),
    name          TEXT,
    -- public: PKCE alone; secret: client_secret_basic; jwks / jwks_url: private_key_jwt.
    kind          TEXT NOT NULL CHECK (kind IN ('public', 'secret', 'jwks', 'jwks_url')),
    secret_hash   TEXT,
    jwks          TEXT,
    jwks_url      TEXT,
    redirect_uris TEXT NOT NULL DEFAULT '',
    scope         TEXT NOT NULL,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    removed_at    TEXT
);

-- The keys that sign access tokens. The private key is encrypted (ChaCha20-Poly1305, nonce
-- first) with the server's key encryption key, which is never in the database. A retired key
-- signs nothing more and stays published until the tokens it signed have expired.
CREATE TABLE signing_keys (
    kid         TEXT PRIMARY KEY,
    alg         TEXT NOT NULL,
    public_jwk  TEXT NOT NULL,
    private_key BLOB NOT NULL,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    retired_at  TEXT
);

CREATE TABLE issued_tokens (
    jti        TEXT PRIMARY KEY,
    client_id  TEXT NOT NULL,
    subject    TEXT NOT NULL,
    scope      TEXT NOT NULL,
    patient    TEXT,
    encounter  TEXT,
    fhir_user  TEXT,
    issued_at  TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX issued_tokens_expiry_idx ON issued_tokens (expires_at);

-- Revocations in the order they happened: every server process follows this list.
CREATE TABLE token_revocations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    jti        TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- The jti of every client assertion accepted, until it expires: a replay is refused.
CREATE TABLE client_assertions (
    client_id  TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (client_id, jti)
);
