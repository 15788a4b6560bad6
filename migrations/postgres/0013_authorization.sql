-- Authorization: what each role may do, the users who sign in, the OAuth clients, the keys that
-- sign access tokens, and the tokens issued (so that any server process on this database can
-- introspect and revoke them).

-- A role's permissions are SMART v2 scopes (`user/Patient.cruds`, `patient/*.rs`,
-- `user/Observation.cu?category=...|vital-signs`), separated by spaces: the most a user of the
-- role may do, whatever an app asks for. The clinic may edit them.
ALTER TABLE roles ADD COLUMN permissions text NOT NULL DEFAULT '';
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
    ('auditor', 'Auditor', false, 'user/Patient.rs user/Practitioner.rs user/AuditEvent.rs'),
    ('patient', 'Patient (portal)', false, 'patient/*.rs');

-- A user who is a patient (the patient portal) is linked to its Patient.
ALTER TABLE users ADD COLUMN patient_id uuid REFERENCES patients (id);
CREATE INDEX users_patient_idx ON users (patient_id) WHERE patient_id IS NOT NULL;

-- A user's credentials are no part of the Practitioner: changing only them (a new password, a
-- sign-in) makes no new version.
CREATE FUNCTION touch_user() RETURNS trigger AS $$
BEGIN
    IF (OLD.password_hash IS DISTINCT FROM NEW.password_hash
        OR OLD.last_login_at IS DISTINCT FROM NEW.last_login_at)
       AND (OLD.id, OLD.fhir_id_given, OLD.email, OLD.role_id, OLD.specialty_id, OLD.first_name,
            OLD.last_name, OLD.phone, OLD.license_number, OLD.gender, OLD.is_active,
            OLD.version_id, OLD.deleted_at, OLD.fhir_extra::text, OLD.patient_id)
           IS NOT DISTINCT FROM
           (NEW.id, NEW.fhir_id_given, NEW.email, NEW.role_id, NEW.specialty_id, NEW.first_name,
            NEW.last_name, NEW.phone, NEW.license_number, NEW.gender, NEW.is_active,
            NEW.version_id, NEW.deleted_at, NEW.fhir_extra::text, NEW.patient_id) THEN
        RETURN NEW;
    END IF;
    NEW.created_at := OLD.created_at;
    NEW.updated_at := clock_timestamp();
    NEW.version_id := OLD.version_id + 1;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER users_touch ON users;
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch_user();

CREATE TABLE oauth_clients (
    client_id     text PRIMARY KEY CHECK (length(client_id) BETWEEN 1 AND 128),
    name          text,
    -- public: PKCE alone; secret: client_secret_basic; jwks / jwks_url: private_key_jwt.
    kind          text NOT NULL CHECK (kind IN ('public', 'secret', 'jwks', 'jwks_url')),
    secret_hash   text,
    jwks          text,
    jwks_url      text,
    redirect_uris text NOT NULL DEFAULT '',
    scope         text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    removed_at    timestamptz
);

-- The keys that sign access tokens. The private key is encrypted (ChaCha20-Poly1305, nonce
-- first) with the server's key encryption key, which is never in the database. A retired key
-- signs nothing more and stays published until the tokens it signed have expired.
CREATE TABLE signing_keys (
    kid         text PRIMARY KEY,
    alg         text NOT NULL,
    public_jwk  text NOT NULL,
    private_key bytea NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    retired_at  timestamptz
);

CREATE TABLE issued_tokens (
    jti        text PRIMARY KEY,
    client_id  text NOT NULL,
    subject    text NOT NULL,
    scope      text NOT NULL,
    patient    text,
    encounter  text,
    fhir_user  text,
    issued_at  timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX issued_tokens_expiry_idx ON issued_tokens (expires_at);

-- Revocations in the order they happened: every server process follows this list.
CREATE TABLE token_revocations (
    seq        bigserial PRIMARY KEY,
    jti        text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- The jti of every client assertion accepted, until it expires: a replay is refused.
CREATE TABLE client_assertions (
    client_id  text NOT NULL,
    jti        text NOT NULL,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (client_id, jti)
);
