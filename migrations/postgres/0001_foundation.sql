-- expediente foundation schema (PostgreSQL dialect).
-- Conventions for every clinical table:
--   id uuid primary key; fhir_id (the FHIR logical id) unique where the row is a FHIR resource;
--   created_at / updated_at maintained by the touch_row() trigger; version_id bumped by the same
--   trigger on every UPDATE (so direct SQL writes by the clinic application move them too);
--   deleted_at for soft delete; fhir_extra jsonb for what a FHIR client sent that has no column.

CREATE OR REPLACE FUNCTION touch_row() RETURNS trigger AS $$
BEGIN
    NEW.created_at := OLD.created_at;
    NEW.updated_at := clock_timestamp();
    NEW.version_id := OLD.version_id + 1;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TABLE roles (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name        text NOT NULL UNIQUE,
    description text,
    is_clinical boolean NOT NULL DEFAULT false,
    version_id  integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at  timestamptz,
    fhir_extra  jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TRIGGER roles_touch BEFORE UPDATE ON roles FOR EACH ROW EXECUTE FUNCTION touch_row();

INSERT INTO roles (name, description, is_clinical) VALUES
    ('admin', 'System administrator', false),
    ('doctor', 'Physician', true),
    ('nurse', 'Nurse', true),
    ('receptionist', 'Front desk', false);

CREATE TABLE specialties (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code        text NOT NULL UNIQUE,
    system      text,
    name        text NOT NULL,
    description text,
    version_id  integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at  timestamptz,
    fhir_extra  jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TRIGGER specialties_touch BEFORE UPDATE ON specialties FOR EACH ROW EXECUTE FUNCTION touch_row();

-- A user with a clinical role is a Practitioner. Its FHIR id is fhir_id_given when a FHIR client
-- chose one, else the UUID: fhir_id is derived, so users the clinic creates need no FHIR id.
CREATE TABLE users (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    fhir_id_given  text CHECK (fhir_id_given ~ '^[A-Za-z0-9.-]{1,64}$'),
    fhir_id        text GENERATED ALWAYS AS (COALESCE(fhir_id_given, id::text)) STORED UNIQUE,
    email          text UNIQUE,
    password_hash  text,
    role_id        uuid NOT NULL REFERENCES roles (id),
    specialty_id   uuid REFERENCES specialties (id),
    first_name     text,
    last_name      text,
    phone          text,
    license_number text,
    gender         text CHECK (gender IN ('male', 'female', 'other', 'unknown')),
    is_active      boolean NOT NULL DEFAULT true,
    last_login_at  timestamptz,
    version_id     integer NOT NULL DEFAULT 1,
    created_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at     timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at     timestamptz,
    fhir_extra     jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TRIGGER users_touch BEFORE UPDATE ON users FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX users_role_idx ON users (role_id);
CREATE INDEX users_specialty_idx ON users (specialty_id);

CREATE TABLE patients (
    id                      uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    fhir_id                 text NOT NULL UNIQUE CHECK (fhir_id ~ '^[A-Za-z0-9.-]{1,64}$'),
    active                  boolean,
    first_name              text,
    last_name               text,
    gender                  text CHECK (gender IN ('male', 'female', 'other', 'unknown')),
    birth_date              date,
    birth_date_precision    text NOT NULL DEFAULT 'day' CHECK (birth_date_precision IN ('year', 'month', 'day')),
    phone                   text,
    email                   text,
    address_line            text,
    city                    text,
    state                   text,
    postal_code             text,
    country                 text,
    marital_status          text CHECK (marital_status IN ('A', 'D', 'I', 'L', 'M', 'P', 'S', 'T', 'U', 'W', 'C', 'UNK')),
    preferred_language      text,
    general_practitioner_id uuid REFERENCES users (id),
    user_id                 uuid REFERENCES users (id),
    version_id              integer NOT NULL DEFAULT 1,
    created_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at              timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at              timestamptz,
    fhir_extra              jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TRIGGER patients_touch BEFORE UPDATE ON patients FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX patients_last_name_idx ON patients (lower(last_name));
CREATE INDEX patients_birth_date_idx ON patients (birth_date);
CREATE INDEX patients_gender_idx ON patients (gender);
CREATE INDEX patients_updated_at_idx ON patients (updated_at);
CREATE INDEX patients_gp_idx ON patients (general_practitioner_id);

-- Patient.identifier: MRN, national ids (CURP...), each with its system.
CREATE TABLE patient_identifiers (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id  uuid NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    position    integer NOT NULL,
    use_code    text CHECK (use_code IN ('usual', 'official', 'temp', 'secondary', 'old')),
    system      text,
    value       text,
    version_id  integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at  timestamptz,
    fhir_extra  jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TRIGGER patient_identifiers_touch BEFORE UPDATE ON patient_identifiers FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX patient_identifiers_patient_idx ON patient_identifiers (patient_id, position);
CREATE INDEX patient_identifiers_value_idx ON patient_identifiers (value, system);

-- Patient.contact: next of kin, emergency contacts, guardians.
CREATE TABLE patient_contacts (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id   uuid NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    position     integer NOT NULL,
    relationship text,
    first_name   text,
    last_name    text,
    phone        text,
    email        text,
    version_id   integer NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at   timestamptz,
    fhir_extra   jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TRIGGER patient_contacts_touch BEFORE UPDATE ON patient_contacts FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX patient_contacts_patient_idx ON patient_contacts (patient_id, position);

-- Every version of every resource served through FHIR, for vread and _history. `resource` is
-- text, not jsonb: it keeps the exact JSON served (element order, decimal text), which jsonb would
-- re-order and re-space, and the read path serves it as it is.
CREATE TABLE resource_versions (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    resource_type text NOT NULL,
    row_id        uuid NOT NULL,
    fhir_id       text NOT NULL,
    version_id    integer NOT NULL,
    method        text NOT NULL CHECK (method IN ('POST', 'PUT', 'DELETE')),
    last_updated  timestamptz NOT NULL,
    resource      text,
    UNIQUE (resource_type, fhir_id, version_id)
);
CREATE INDEX resource_versions_type_time_idx ON resource_versions (resource_type, last_updated, id);

-- String search index: one row per (resource, parameter, normalised value), maintained by the
-- mapping layer on every FHIR write (names have many parts and a patient many names).
CREATE TABLE search_strings (
    resource_type text NOT NULL,
    row_id        uuid NOT NULL,
    param         text NOT NULL,
    value         text NOT NULL,
    exact         text NOT NULL
);
CREATE INDEX search_strings_lookup_idx ON search_strings (resource_type, param, value text_pattern_ops);
CREATE INDEX search_strings_exact_idx ON search_strings (resource_type, param, exact);
CREATE INDEX search_strings_row_idx ON search_strings (row_id);

-- Append-only audit trail (written by the audit layer; hash-chained).
CREATE TABLE audit_logs (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    seq           bigserial UNIQUE,
    recorded_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    user_id       uuid REFERENCES users (id),
    client_id     text,
    action        text NOT NULL,
    resource_type text,
    resource_id   text,
    patient_id    uuid,
    outcome       text NOT NULL DEFAULT 'success' CHECK (outcome IN ('success', 'minor-failure', 'serious-failure', 'major-failure')),
    source_ip     text,
    details       jsonb NOT NULL DEFAULT '{}'::jsonb,
    prev_hash     text,
    hash          text
);
CREATE INDEX audit_logs_time_idx ON audit_logs (recorded_at);
CREATE INDEX audit_logs_patient_idx ON audit_logs (patient_id);

CREATE OR REPLACE FUNCTION audit_logs_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_logs is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_logs_no_update BEFORE UPDATE OR DELETE ON audit_logs FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();

-- A change to a patient's identifiers or contacts is a change of the Patient: it touches the
-- patients row, so its version_id and updated_at move (once per transaction and patient). FHIR
-- writes, which rewrite the child rows themselves, mark the row in fhir_write_guard for the
-- length of their transaction so the parent is not touched again.
CREATE TABLE fhir_write_guard (
    row_id uuid NOT NULL
);
CREATE INDEX fhir_write_guard_idx ON fhir_write_guard (row_id);

CREATE OR REPLACE FUNCTION touch_parent_patient() RETURNS trigger AS $$
DECLARE
    ids uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        ids := ARRAY[NEW.patient_id];
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY[OLD.patient_id];
    ELSE
        ids := ARRAY[NEW.patient_id, OLD.patient_id];
    END IF;
    UPDATE patients SET updated_at = clock_timestamp()
     WHERE id = ANY (ids)
       AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patients.id)
       AND xmin::text <> pg_current_xact_id()::xid::text;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER patient_identifiers_parent AFTER INSERT OR UPDATE OR DELETE ON patient_identifiers FOR EACH ROW EXECUTE FUNCTION touch_parent_patient();
CREATE TRIGGER patient_contacts_parent AFTER INSERT OR UPDATE OR DELETE ON patient_contacts FOR EACH ROW EXECUTE FUNCTION touch_parent_patient();
