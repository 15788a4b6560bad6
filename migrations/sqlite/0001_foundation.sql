-- expediente foundation schema (SQLite dialect).
-- Conventions for every clinical table:
--   id uuid primary key; fhir_id (the FHIR logical id) unique where the row is a FHIR resource;
--   created_at / updated_at maintained by the touch_row() trigger; version_id bumped by the same
--   trigger on every UPDATE (so direct SQL writes by the clinic application move them too);
--   deleted_at for soft delete; fhir_extra (JSON text) for what a FHIR client sent that has no column.
--   The touch triggers' own UPDATE does not fire them again because recursive_triggers is off
--   (SQLite's default, which the server keeps).

CREATE TABLE roles (
    id          TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    name        TEXT NOT NULL UNIQUE,
    description TEXT,
    is_clinical INTEGER NOT NULL DEFAULT 0,
    version_id  INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at  TEXT,
    fhir_extra  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra))
);
CREATE TRIGGER roles_touch AFTER UPDATE ON roles FOR EACH ROW
BEGIN
    UPDATE roles SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;

INSERT INTO roles (name, description, is_clinical) VALUES
    ('admin', 'System administrator', 0),
    ('doctor', 'Physician', 1),
    ('nurse', 'Nurse', 1),
    ('receptionist', 'Front desk', 0);

CREATE TABLE specialties (
    id          TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    code        TEXT NOT NULL UNIQUE,
    system      TEXT,
    name        TEXT NOT NULL,
    description TEXT,
    version_id  INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at  TEXT,
    fhir_extra  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra))
);
CREATE TRIGGER specialties_touch AFTER UPDATE ON specialties FOR EACH ROW
BEGIN
    UPDATE specialties SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;

-- A user with a clinical role is a Practitioner. Its FHIR id is fhir_id_given when a FHIR client
-- chose one, else the UUID: fhir_id is derived, so users the clinic creates need no FHIR id.
CREATE TABLE users (
    id             TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    fhir_id_given  TEXT CHECK (length(fhir_id_given) BETWEEN 1 AND 64 AND fhir_id_given NOT GLOB '*[^A-Za-z0-9.-]*'),
    fhir_id        TEXT GENERATED ALWAYS AS (COALESCE(fhir_id_given, id)) STORED,
    email          TEXT UNIQUE,
    password_hash  TEXT,
    role_id        TEXT NOT NULL REFERENCES roles (id),
    specialty_id   TEXT REFERENCES specialties (id),
    first_name     TEXT,
    last_name      TEXT,
    phone          TEXT,
    license_number TEXT,
    gender         TEXT CHECK (gender IN ('male', 'female', 'other', 'unknown')),
    is_active      INTEGER NOT NULL DEFAULT 1,
    last_login_at  TEXT,
    version_id     INTEGER NOT NULL DEFAULT 1,
    created_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at     TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at     TEXT,
    fhir_extra     TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra))
);
CREATE TRIGGER users_touch AFTER UPDATE ON users FOR EACH ROW
BEGIN
    UPDATE users SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
CREATE UNIQUE INDEX users_fhir_id_idx ON users (fhir_id);
CREATE INDEX users_role_idx ON users (role_id);
CREATE INDEX users_specialty_idx ON users (specialty_id);

CREATE TABLE patients (
    id                      TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    fhir_id                 TEXT NOT NULL UNIQUE CHECK (length(fhir_id) BETWEEN 1 AND 64 AND fhir_id NOT GLOB '*[^A-Za-z0-9.-]*'),
    active                  INTEGER,
    first_name              TEXT,
    last_name               TEXT,
    gender                  TEXT CHECK (gender IN ('male', 'female', 'other', 'unknown')),
    birth_date              TEXT,
    birth_date_precision    TEXT NOT NULL DEFAULT 'day' CHECK (birth_date_precision IN ('year', 'month', 'day')),
    phone                   TEXT,
    email                   TEXT,
    address_line            TEXT,
    city                    TEXT,
    state                   TEXT,
    postal_code             TEXT,
    country                 TEXT,
    marital_status          TEXT CHECK (marital_status IN ('A', 'D', 'I', 'L', 'M', 'P', 'S', 'T', 'U', 'W', 'C', 'UNK')),
    preferred_language      TEXT,
    general_practitioner_id TEXT REFERENCES users (id),
    user_id                 TEXT REFERENCES users (id),
    version_id              INTEGER NOT NULL DEFAULT 1,
    created_at              TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at              TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at              TEXT,
    fhir_extra              TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra))
);
CREATE TRIGGER patients_touch AFTER UPDATE ON patients FOR EACH ROW
BEGIN
    UPDATE patients SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
CREATE INDEX patients_last_name_idx ON patients (last_name COLLATE NOCASE);
CREATE INDEX patients_birth_date_idx ON patients (birth_date);
CREATE INDEX patients_gender_idx ON patients (gender);
CREATE INDEX patients_updated_at_idx ON patients (updated_at);
CREATE INDEX patients_gp_idx ON patients (general_practitioner_id);

-- Patient.identifier: MRN, national ids (CURP...), each with its system.
CREATE TABLE patient_identifiers (
    id          TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    patient_id  TEXT NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    position    INTEGER NOT NULL,
    use_code    TEXT CHECK (use_code IN ('usual', 'official', 'temp', 'secondary', 'old')),
    system      TEXT,
    value       TEXT,
    version_id  INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at  TEXT,
    fhir_extra  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra))
);
CREATE TRIGGER patient_identifiers_touch AFTER UPDATE ON patient_identifiers FOR EACH ROW
BEGIN
    UPDATE patient_identifiers SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
    UPDATE patients SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id IN (NEW.patient_id, OLD.patient_id) AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patients.id);
END;
CREATE TRIGGER patient_identifiers_insert_parent AFTER INSERT ON patient_identifiers FOR EACH ROW
BEGIN
    UPDATE patients SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.patient_id AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patients.id);
END;
CREATE TRIGGER patient_identifiers_delete_parent AFTER DELETE ON patient_identifiers FOR EACH ROW
BEGIN
    UPDATE patients SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = OLD.patient_id AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patients.id);
END;
CREATE INDEX patient_identifiers_patient_idx ON patient_identifiers (patient_id, position);
CREATE INDEX patient_identifiers_value_idx ON patient_identifiers (value, system);

-- Patient.contact: next of kin, emergency contacts, guardians.
CREATE TABLE patient_contacts (
    id           TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    patient_id   TEXT NOT NULL REFERENCES patients (id) ON DELETE CASCADE,
    position     INTEGER NOT NULL,
    relationship TEXT,
    first_name   TEXT,
    last_name    TEXT,
    phone        TEXT,
    email        TEXT,
    version_id   INTEGER NOT NULL DEFAULT 1,
    created_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at   TEXT,
    fhir_extra   TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra))
);
CREATE TRIGGER patient_contacts_touch AFTER UPDATE ON patient_contacts FOR EACH ROW
BEGIN
    UPDATE patient_contacts SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
    UPDATE patients SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id IN (NEW.patient_id, OLD.patient_id) AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patients.id);
END;
CREATE TRIGGER patient_contacts_insert_parent AFTER INSERT ON patient_contacts FOR EACH ROW
BEGIN
    UPDATE patients SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.patient_id AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patients.id);
END;
CREATE TRIGGER patient_contacts_delete_parent AFTER DELETE ON patient_contacts FOR EACH ROW
BEGIN
    UPDATE patients SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = OLD.patient_id AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patients.id);
END;
CREATE INDEX patient_contacts_patient_idx ON patient_contacts (patient_id, position);

-- A change to a patient's identifiers or contacts is a change of the Patient: the child triggers
-- touch the patients row, so its version_id and updated_at move. FHIR writes, which rewrite the
-- child rows themselves, mark the row here for the length of their transaction so the parent is
-- not touched again.
CREATE TABLE fhir_write_guard (
    row_id TEXT NOT NULL
);
CREATE INDEX fhir_write_guard_idx ON fhir_write_guard (row_id);

-- Every version of every resource served through FHIR, for vread and _history, as the exact JSON
-- text served.
CREATE TABLE resource_versions (
    id            TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    resource_type TEXT NOT NULL,
    row_id        TEXT NOT NULL,
    fhir_id       TEXT NOT NULL,
    version_id    INTEGER NOT NULL,
    method        TEXT NOT NULL CHECK (method IN ('POST', 'PUT', 'DELETE')),
    last_updated  TEXT NOT NULL,
    resource      TEXT,
    UNIQUE (resource_type, fhir_id, version_id)
);
CREATE INDEX resource_versions_type_time_idx ON resource_versions (resource_type, last_updated, id);

-- String search index: one row per (resource, parameter, normalised value), maintained by the
-- mapping layer on every FHIR write (names have many parts and a patient many names).
CREATE TABLE search_strings (
    resource_type TEXT NOT NULL,
    row_id        TEXT NOT NULL,
    param         TEXT NOT NULL,
    value         TEXT NOT NULL,
    exact         TEXT NOT NULL
);
CREATE INDEX search_strings_lookup_idx ON search_strings (resource_type, param, value);
CREATE INDEX search_strings_exact_idx ON search_strings (resource_type, param, exact);
CREATE INDEX search_strings_row_idx ON search_strings (row_id);

-- Append-only audit trail (written by the audit layer; hash-chained).
CREATE TABLE audit_logs (
    id            TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    seq           INTEGER UNIQUE,
    recorded_at   TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    user_id       TEXT REFERENCES users (id),
    client_id     TEXT,
    action        TEXT NOT NULL,
    resource_type TEXT,
    resource_id   TEXT,
    patient_id    TEXT,
    outcome       TEXT NOT NULL DEFAULT 'success' CHECK (outcome IN ('success', 'minor-failure', 'serious-failure', 'major-failure')),
    source_ip     TEXT,
    details       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(details)),
    prev_hash     TEXT,
    hash          TEXT
);
CREATE INDEX audit_logs_time_idx ON audit_logs (recorded_at);
CREATE INDEX audit_logs_patient_idx ON audit_logs (patient_id);

CREATE TRIGGER audit_logs_no_update BEFORE UPDATE ON audit_logs
BEGIN
    SELECT RAISE(ABORT, 'audit_logs is append-only');
END;
CREATE TRIGGER audit_logs_no_delete BEFORE DELETE ON audit_logs
BEGIN
    SELECT RAISE(ABORT, 'audit_logs is append-only');
END;
