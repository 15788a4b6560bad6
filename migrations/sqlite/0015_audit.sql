-- The audit trail: every access through the server, and every direct change of a clinical table,
-- as one hash-chained sequence (docs/AUDIT.md has the canonical form and how it is verified).

-- Each row of the chain carries its event as the exact text that was hashed (`event`); the other
-- columns are copies of its fields for searching, checked against it by `audit verify`.
ALTER TABLE audit_logs ADD COLUMN event TEXT;
ALTER TABLE audit_logs ADD COLUMN category TEXT;
ALTER TABLE audit_logs ADD COLUMN agent TEXT;
ALTER TABLE audit_logs ADD COLUMN resource_version INTEGER;
ALTER TABLE audit_logs ADD COLUMN request_id TEXT;
-- The patient of an event is in audit_log_patients (an event may name several).
DROP INDEX audit_logs_patient_idx;
CREATE INDEX audit_logs_agent_idx ON audit_logs (agent, seq);
CREATE INDEX audit_logs_client_idx ON audit_logs (client_id, seq);
CREATE INDEX audit_logs_entity_idx ON audit_logs (resource_type, resource_id, seq);

-- The patients whose data an event concerns (a search returns many).
CREATE TABLE audit_log_patients (
    seq     INTEGER NOT NULL,
    patient TEXT NOT NULL
);
CREATE INDEX audit_log_patients_idx ON audit_log_patients (patient, seq);
CREATE INDEX audit_log_patients_seq_idx ON audit_log_patients (seq);
CREATE TRIGGER audit_log_patients_no_update BEFORE UPDATE ON audit_log_patients
BEGIN
    SELECT RAISE(ABORT, 'audit_logs is append-only');
END;
CREATE TRIGGER audit_log_patients_no_delete BEFORE DELETE ON audit_log_patients
BEGIN
    SELECT RAISE(ABORT, 'audit_logs is append-only');
END;

-- The resources an import's event names (it names them all in one event; these rows find it).
CREATE TABLE audit_log_entities (
    seq           INTEGER NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT NOT NULL
);
CREATE INDEX audit_log_entities_idx ON audit_log_entities (resource_type, resource_id, seq);
CREATE INDEX audit_log_entities_seq_idx ON audit_log_entities (seq);
CREATE TRIGGER audit_log_entities_no_update BEFORE UPDATE ON audit_log_entities
BEGIN
    SELECT RAISE(ABORT, 'audit_logs is append-only');
END;
CREATE TRIGGER audit_log_entities_no_delete BEFORE DELETE ON audit_log_entities
BEGIN
    SELECT RAISE(ABORT, 'audit_logs is append-only');
END;

-- The head of the chain: the last sequence number and hash. SQLite has one writer at a time, so
-- appending under it keeps the sequence gapless. Rows written before the chain began (start_seq)
-- are outside it. `writer` is 1 inside the server's own transactions (set after BEGIN, cleared
-- before COMMIT): their changes are audited by the server, as FHIR interactions.
CREATE TABLE audit_chain (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    start_seq INTEGER NOT NULL,
    seq       INTEGER NOT NULL,
    hash      TEXT NOT NULL,
    writer    INTEGER NOT NULL DEFAULT 0,
    -- The last row written outside the server that was chained (its rowid).
    outside_rowid INTEGER NOT NULL DEFAULT 0
);
INSERT INTO audit_chain (id, start_seq, seq, hash, outside_rowid)
SELECT 1, coalesce(max(seq), 0), coalesce(max(seq), 0), '0000000000000000000000000000000000000000000000000000000000000000', coalesce(max(rowid), 0) FROM audit_logs;
CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain
BEGIN
    SELECT RAISE(ABORT, 'audit_chain is kept by the server');
END;

-- Events not written by the server (direct changes, the clinic application's own audit rows)
-- wait here, in the transaction that made them, until the server chains them.
CREATE TABLE audit_inbox (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    event TEXT NOT NULL
);

-- An audit row inserted by anyone else than the server (the clinic application's own log,
-- without seq and hash) stays as it was written and joins the chain as a copy: the server chains
-- the rows past outside_rowid (a trigger that diverted them would run for every row the server
-- appends, and costs as much as the row itself on SQLite).
CREATE INDEX audit_logs_outside_idx ON audit_logs (seq) WHERE seq IS NULL;

-- Any change of a clinical table not made by the server is recorded with the columns it changed
-- (old and new values; a file's content is left out).
CREATE TRIGGER patients_audit_insert AFTER INSERT ON patients
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'insert', 'table', 'patients', 'row', NEW.id, 'patient', NEW.id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, NULL AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', NULL, NEW.fhir_id
            UNION ALL SELECT 'active', NULL, NEW.active
            UNION ALL SELECT 'first_name', NULL, NEW.first_name
            UNION ALL SELECT 'last_name', NULL, NEW.last_name
            UNION ALL SELECT 'gender', NULL, NEW.gender
            UNION ALL SELECT 'birth_date', NULL, NEW.birth_date
            UNION ALL SELECT 'birth_date_precision', NULL, NEW.birth_date_precision
            UNION ALL SELECT 'phone', NULL, NEW.phone
            UNION ALL SELECT 'email', NULL, NEW.email
            UNION ALL SELECT 'address_line', NULL, NEW.address_line
            UNION ALL SELECT 'city', NULL, NEW.city
            UNION ALL SELECT 'state', NULL, NEW.state
            UNION ALL SELECT 'postal_code', NULL, NEW.postal_code
            UNION ALL SELECT 'country', NULL, NEW.country
            UNION ALL SELECT 'marital_status', NULL, NEW.marital_status
            UNION ALL SELECT 'preferred_language', NULL, NEW.preferred_language
            UNION ALL SELECT 'general_practitioner_id', NULL, NEW.general_practitioner_id
            UNION ALL SELECT 'user_id', NULL, NEW.user_id
            UNION ALL SELECT 'version_id', NULL, NEW.version_id
            UNION ALL SELECT 'created_at', NULL, NEW.created_at
            UNION ALL SELECT 'updated_at', NULL, NEW.updated_at
            UNION ALL SELECT 'deleted_at', NULL, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', NULL, NEW.fhir_extra) WHERE o IS NOT n)));
END;

CREATE TRIGGER patients_audit_update AFTER UPDATE ON patients
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'update', 'table', 'patients', 'row', NEW.id, 'patient', NEW.id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NEW.fhir_id
            UNION ALL SELECT 'active', OLD.active, NEW.active
            UNION ALL SELECT 'first_name', OLD.first_name, NEW.first_name
            UNION ALL SELECT 'last_name', OLD.last_name, NEW.last_name
            UNION ALL SELECT 'gender', OLD.gender, NEW.gender
            UNION ALL SELECT 'birth_date', OLD.birth_date, NEW.birth_date
            UNION ALL SELECT 'birth_date_precision', OLD.birth_date_precision, NEW.birth_date_precision
            UNION ALL SELECT 'phone', OLD.phone, NEW.phone
            UNION ALL SELECT 'email', OLD.email, NEW.email
            UNION ALL SELECT 'address_line', OLD.address_line, NEW.address_line
            UNION ALL SELECT 'city', OLD.city, NEW.city
            UNION ALL SELECT 'state', OLD.state, NEW.state
            UNION ALL SELECT 'postal_code', OLD.postal_code, NEW.postal_code
            UNION ALL SELECT 'country', OLD.country, NEW.country
            UNION ALL SELECT 'marital_status', OLD.marital_status, NEW.marital_status
            UNION ALL SELECT 'preferred_language', OLD.preferred_language, NEW.preferred_language
            UNION ALL SELECT 'general_practitioner_id', OLD.general_practitioner_id, NEW.general_practitioner_id
            UNION ALL SELECT 'user_id', OLD.user_id, NEW.user_id
            UNION ALL SELECT 'version_id', OLD.version_id, NEW.version_id
            UNION ALL SELECT 'created_at', OLD.created_at, NEW.created_at
            UNION ALL SELECT 'updated_at', OLD.updated_at, NEW.updated_at
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NEW.fhir_extra) WHERE o IS NOT n)));
END;

CREATE TRIGGER patients_audit_delete AFTER DELETE ON patients
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'delete', 'table', 'patients', 'row', OLD.id, 'patient', OLD.id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NULL AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NULL
            UNION ALL SELECT 'active', OLD.active, NULL
            UNION ALL SELECT 'first_name', OLD.first_name, NULL
            UNION ALL SELECT 'last_name', OLD.last_name, NULL
            UNION ALL SELECT 'gender', OLD.gender, NULL
            UNION ALL SELECT 'birth_date', OLD.birth_date, NULL
            UNION ALL SELECT 'birth_date_precision', OLD.birth_date_precision, NULL
            UNION ALL SELECT 'phone', OLD.phone, NULL
            UNION ALL SELECT 'email', OLD.email, NULL
            UNION ALL SELECT 'address_line', OLD.address_line, NULL
            UNION ALL SELECT 'city', OLD.city, NULL
            UNION ALL SELECT 'state', OLD.state, NULL
            UNION ALL SELECT 'postal_code', OLD.postal_code, NULL
            UNION ALL SELECT 'country', OLD.country, NULL
            UNION ALL SELECT 'marital_status', OLD.marital_status, NULL
            UNION ALL SELECT 'preferred_language', OLD.preferred_language, NULL
            UNION ALL SELECT 'general_practitioner_id', OLD.general_practitioner_id, NULL
            UNION ALL SELECT 'user_id', OLD.user_id, NULL
            UNION ALL SELECT 'version_id', OLD.version_id, NULL
            UNION ALL SELECT 'created_at', OLD.created_at, NULL
            UNION ALL SELECT 'updated_at', OLD.updated_at, NULL
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NULL
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NULL) WHERE o IS NOT n)));
END;

CREATE TRIGGER patient_identifiers_audit_insert AFTER INSERT ON patient_identifiers
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'insert', 'table', 'patient_identifiers', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, NULL AS o, NEW.id AS n
            UNION ALL SELECT 'patient_id', NULL, NEW.patient_id
            UNION ALL SELECT 'position', NULL, NEW.position
            UNION ALL SELECT 'use_code', NULL, NEW.use_code
            UNION ALL SELECT 'system', NULL, NEW.system
            UNION ALL SELECT 'value', NULL, NEW.value
            UNION ALL SELECT 'version_id', NULL, NEW.version_id
            UNION ALL SELECT 'created_at', NULL, NEW.created_at
            UNION ALL SELECT 'updated_at', NULL, NEW.updated_at
            UNION ALL SELECT 'deleted_at', NULL, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', NULL, NEW.fhir_extra) WHERE o IS NOT n)));
END;

CREATE TRIGGER patient_identifiers_audit_update AFTER UPDATE ON patient_identifiers
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'update', 'table', 'patient_identifiers', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NEW.id AS n
            UNION ALL SELECT 'patient_id', OLD.patient_id, NEW.patient_id
            UNION ALL SELECT 'position', OLD.position, NEW.position
            UNION ALL SELECT 'use_code', OLD.use_code, NEW.use_code
            UNION ALL SELECT 'system', OLD.system, NEW.system
            UNION ALL SELECT 'value', OLD.value, NEW.value
            UNION ALL SELECT 'version_id', OLD.version_id, NEW.version_id
            UNION ALL SELECT 'created_at', OLD.created_at, NEW.created_at
            UNION ALL SELECT 'updated_at', OLD.updated_at, NEW.updated_at
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NEW.fhir_extra) WHERE o IS NOT n)));
END;

CREATE TRIGGER patient_identifiers_audit_delete AFTER DELETE ON patient_identifiers
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'delete', 'table', 'patient_identifiers', 'row', OLD.id, 'patient', OLD.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NULL AS n
            UNION ALL SELECT 'patient_id', OLD.patient_id, NULL
            UNION ALL SELECT 'position', OLD.position, NULL
            UNION ALL SELECT 'use_code', OLD.use_code, NULL
            UNION ALL SELECT 'system', OLD.system, NULL
            UNION ALL SELECT 'value', OLD.value, NULL
            UNION ALL SELECT 'version_id', OLD.version_id, NULL
            UNION ALL SELECT 'created_at', OLD.created_at, NULL
            UNION ALL SELECT 'updated_at', OLD.updated_at, NULL
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NULL
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NULL) WHERE o IS NOT n)));
END;

CREATE TRIGGER patient_contacts_audit_insert AFTER INSERT ON patient_contacts
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'insert', 'table', 'patient_contacts', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, NULL AS o, NEW.id AS n
            UNION ALL SELECT 'patient_id', NULL, NEW.patient_id
            UNION ALL SELECT 'position', NULL, NEW.position
            UNION ALL SELECT 'relationship', NULL, NEW.relationship
            UNION ALL SELECT 'first_name', NULL, NEW.first_name
            UNION ALL SELECT 'last_name', NULL, NEW.last_name
            UNION ALL SELECT 'phone', NULL, NEW.phone
            UNION ALL SELECT 'email', NULL, NEW.email
            UNION ALL SELECT 'version_id', NULL, NEW.version_id
            UNION ALL SELECT 'created_at', NULL, NEW.created_at
            UNION ALL SELECT 'updated_at', NULL, NEW.updated_at
            UNION ALL SELECT 'deleted_at', NULL, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', NULL, NEW.fhir_extra) WHERE o IS NOT n)));
END;

CREATE TRIGGER patient_contacts_audit_update AFTER UPDATE ON patient_contacts
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'update', 'table', 'patient_contacts', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NEW.id AS n
            UNION ALL SELECT 'patient_id', OLD.patient_id, NEW.patient_id
            UNION ALL SELECT 'position', OLD.position, NEW.position
            UNION ALL SELECT 'relationship', OLD.relationship, NEW.relationship
            UNION ALL SELECT 'first_name', OLD.first_name, NEW.first_name
            UNION ALL SELECT 'last_name', OLD.last_name, NEW.last_name
            UNION ALL SELECT 'phone', OLD.phone, NEW.phone
            UNION ALL SELECT 'email', OLD.email, NEW.email
            UNION ALL SELECT 'version_id', OLD.version_id, NEW.version_id
            UNION ALL SELECT 'created_at', OLD.created_at, NEW.created_at
            UNION ALL SELECT 'updated_at', OLD.updated_at, NEW.updated_at
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NEW.fhir_extra) WHERE o IS NOT n)));
END;

CREATE TRIGGER patient_contacts_audit_delete AFTER DELETE ON patient_contacts
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'delete', 'table', 'patient_contacts', 'row', OLD.id, 'patient', OLD.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NULL AS n
            UNION ALL SELECT 'patient_id', OLD.patient_id, NULL
            UNION ALL SELECT 'position', OLD.position, NULL
            UNION ALL SELECT 'relationship', OLD.relationship, NULL
            UNION ALL SELECT 'first_name', OLD.first_name, NULL
            UNION ALL SELECT 'last_name', OLD.last_name, NULL
            UNION ALL SELECT 'phone', OLD.phone, NULL
            UNION ALL SELECT 'email', OLD.email, NULL
            UNION ALL SELECT 'version_id', OLD.version_id, NULL
            UNION ALL SELECT 'created_at', OLD.created_at, NULL
            UNION ALL SELECT 'updated_at', OLD.updated_at, NULL
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NULL
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NULL) WHERE o IS NOT n)));
END;

CREATE TRIGGER medical_histories_audit_insert AFTER INSERT ON medical_histories
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'insert', 'table', 'medical_histories', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, NULL AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', NULL, NEW.fhir_id
            UNION ALL SELECT 'patient_id', NULL, NEW.patient_id
            UNION ALL SELECT 'condition_code', NULL, NEW.condition_code
            UNION ALL SELECT 'condition_system', NULL, NEW.condition_system
            UNION ALL SELECT 'condition_display', NULL, NEW.condition_display
            UNION ALL SELECT 'clinical_status', NULL, NEW.clinical_status
            UNION ALL SELECT 'verification_status', NULL, NEW.verification_status
            UNION ALL SELECT 'category', NULL, NEW.category
            UNION ALL SELECT 'onset_date', NULL, NEW.onset_date
            UNION ALL SELECT 'abatement_date', NULL, NEW.abatement_date
            UNION ALL SELECT 'notes', NULL, NEW.notes
            UNION ALL SELECT 'recorded_by', NULL, NEW.recorded_by
            UNION ALL SELECT 'version_id', NULL, NEW.version_id
            UNION ALL SELECT 'created_at', NULL, NEW.created_at
            UNION ALL SELECT 'updated_at', NULL, NEW.updated_at
            UNION ALL SELECT 'deleted_at', NULL, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', NULL, NEW.fhir_extra) WHERE o IS NOT n)));
END;

CREATE TRIGGER medical_histories_audit_update AFTER UPDATE ON medical_histories
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'update', 'table', 'medical_histories', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NEW.fhir_id
            UNION ALL SELECT 'patient_id', OLD.patient_id, NEW.patient_id
            UNION ALL SELECT 'condition_code', OLD.condition_code, NEW.condition_code
            UNION ALL SELECT 'condition_system', OLD.condition_system, NEW.condition_system
            UNION ALL SELECT 'condition_display', OLD.condition_display, NEW.condition_display
            UNION ALL SELECT 'clinical_status', OLD.clinical_status, NEW.clinical_status
            UNION ALL SELECT 'verification_status', OLD.verification_status, NEW.verification_status
            UNION ALL SELECT 'category', OLD.category, NEW.category
            UNION ALL SELECT 'onset_date', OLD.onset_date, NEW.onset_date
            UNION ALL SELECT 'abatement_date', OLD.abatement_date, NEW.abatement_date
            UNION ALL SELECT 'notes', OLD.notes, NEW.notes
            UNION ALL SELECT 'recorded_by', OLD.recorded_by, NEW.recorded_by
            UNION ALL SELECT 'version_id', OLD.version_id, NEW.version_id
            UNION ALL SELECT 'created_at', OLD.created_at, NEW.created_at
            UNION ALL SELECT 'updated_at', OLD.updated_at, NEW.updated_at
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NEW.fhir_extra) WHERE o IS NOT n)));
END;

CREATE TRIGGER medical_histories_audit_delete AFTER DELETE ON medical_histories
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'delete', 'table', 'medical_histories', 'row', OLD.id, 'patient', OLD.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NULL AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NULL
            UNION ALL SELECT 'patient_id', OLD.patient_id, NULL
            UNION ALL SELECT 'condition_code', OLD.condition_code, NULL
            UNION ALL SELECT 'condition_system', OLD.condition_system, NULL
            UNION ALL SELECT 'condition_display', OLD.condition_display, NULL
            UNION ALL SELECT 'clinical_status', OLD.clinical_status, NULL
            UNION ALL SELECT 'verification_status', OLD.verification_status, NULL
            UNION ALL SELECT 'category', OLD.category, NULL
            UNION ALL SELECT 'onset_date', OLD.onset_date, NULL
            UNION ALL SELECT 'abatement_date', OLD.abatement_date, NULL
            UNION ALL SELECT 'notes', OLD.notes, NULL
            UNION ALL SELECT 'recorded_by', OLD.recorded_by, NULL
            UNION ALL SELECT 'version_id', OLD.version_id, NULL
            UNION ALL SELECT 'created_at', OLD.created_at, NULL
            UNION ALL SELECT 'updated_at', OLD.updated_at, NULL
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NULL
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NULL) WHERE o IS NOT n)));
END;

CREATE TRIGGER patient_allergies_audit_insert AFTER INSERT ON patient_allergies
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'insert', 'table', 'patient_allergies', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, NULL AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', NULL, NEW.fhir_id
            UNION ALL SELECT 'patient_id', NULL, NEW.patient_id
            UNION ALL SELECT 'allergy_id', NULL, NEW.allergy_id
            UNION ALL SELECT 'clinical_status', NULL, NEW.clinical_status
            UNION ALL SELECT 'verification_status', NULL, NEW.verification_status
            UNION ALL SELECT 'type', NULL, NEW.type
            UNION ALL SELECT 'criticality', NULL, NEW.criticality
            UNION ALL SELECT 'severity', NULL, NEW.severity
            UNION ALL SELECT 'reaction', NULL, NEW.reaction
            UNION ALL SELECT 'onset', NULL, NEW.onset
            UNION ALL SELECT 'recorded_date', NULL, NEW.recorded_date
            UNION ALL SELECT 'recorder_id', NULL, NEW.recorder_id
            UNION ALL SELECT 'notes', NULL, NEW.notes
            UNION ALL SELECT 'version_id', NULL, NEW.version_id
            UNION ALL SELECT 'created_at', NULL, NEW.created_at
            UNION ALL SELECT 'updated_at', NULL, NEW.updated_at
            UNION ALL SELECT 'deleted_at', NULL, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', NULL, NEW.fhir_extra
            UNION ALL SELECT 'onset_precision', NULL, NEW.onset_precision
            UNION ALL SELECT 'recorded_date_precision', NULL, NEW.recorded_date_precision) WHERE o IS NOT n)));
END;

CREATE TRIGGER patient_allergies_audit_update AFTER UPDATE ON patient_allergies
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'update', 'table', 'patient_allergies', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NEW.fhir_id
            UNION ALL SELECT 'patient_id', OLD.patient_id, NEW.patient_id
            UNION ALL SELECT 'allergy_id', OLD.allergy_id, NEW.allergy_id
            UNION ALL SELECT 'clinical_status', OLD.clinical_status, NEW.clinical_status
            UNION ALL SELECT 'verification_status', OLD.verification_status, NEW.verification_status
            UNION ALL SELECT 'type', OLD.type, NEW.type
            UNION ALL SELECT 'criticality', OLD.criticality, NEW.criticality
            UNION ALL SELECT 'severity', OLD.severity, NEW.severity
            UNION ALL SELECT 'reaction', OLD.reaction, NEW.reaction
            UNION ALL SELECT 'onset', OLD.onset, NEW.onset
            UNION ALL SELECT 'recorded_date', OLD.recorded_date, NEW.recorded_date
            UNION ALL SELECT 'recorder_id', OLD.recorder_id, NEW.recorder_id
            UNION ALL SELECT 'notes', OLD.notes, NEW.notes
            UNION ALL SELECT 'version_id', OLD.version_id, NEW.version_id
            UNION ALL SELECT 'created_at', OLD.created_at, NEW.created_at
            UNION ALL SELECT 'updated_at', OLD.updated_at, NEW.updated_at
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NEW.fhir_extra
            UNION ALL SELECT 'onset_precision', OLD.onset_precision, NEW.onset_precision
            UNION ALL SELECT 'recorded_date_precision', OLD.recorded_date_precision, NEW.recorded_date_precision) WHERE o IS NOT n)));
END;

CREATE TRIGGER patient_allergies_audit_delete AFTER DELETE ON patient_allergies
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'delete', 'table', 'patient_allergies', 'row', OLD.id, 'patient', OLD.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NULL AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NULL
            UNION ALL SELECT 'patient_id', OLD.patient_id, NULL
            UNION ALL SELECT 'allergy_id', OLD.allergy_id, NULL
            UNION ALL SELECT 'clinical_status', OLD.clinical_status, NULL
            UNION ALL SELECT 'verification_status', OLD.verification_status, NULL
            UNION ALL SELECT 'type', OLD.type, NULL
            UNION ALL SELECT 'criticality', OLD.criticality, NULL
            UNION ALL SELECT 'severity', OLD.severity, NULL
            UNION ALL SELECT 'reaction', OLD.reaction, NULL
            UNION ALL SELECT 'onset', OLD.onset, NULL
            UNION ALL SELECT 'recorded_date', OLD.recorded_date, NULL
            UNION ALL SELECT 'recorder_id', OLD.recorder_id, NULL
            UNION ALL SELECT 'notes', OLD.notes, NULL
            UNION ALL SELECT 'version_id', OLD.version_id, NULL
            UNION ALL SELECT 'created_at', OLD.created_at, NULL
            UNION ALL SELECT 'updated_at', OLD.updated_at, NULL
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NULL
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NULL
            UNION ALL SELECT 'onset_precision', OLD.onset_precision, NULL
            UNION ALL SELECT 'recorded_date_precision', OLD.recorded_date_precision, NULL) WHERE o IS NOT n)));
END;

CREATE TRIGGER consultations_audit_insert AFTER INSERT ON consultations
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'insert', 'table', 'consultations', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, NULL AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', NULL, NEW.fhir_id
            UNION ALL SELECT 'patient_id', NULL, NEW.patient_id
            UNION ALL SELECT 'doctor_id', NULL, NEW.doctor_id
            UNION ALL SELECT 'specialty_id', NULL, NEW.specialty_id
            UNION ALL SELECT 'status', NULL, NEW.status
            UNION ALL SELECT 'class_code', NULL, NEW.class_code
            UNION ALL SELECT 'type_code', NULL, NEW.type_code
            UNION ALL SELECT 'type_system', NULL, NEW.type_system
            UNION ALL SELECT 'type_display', NULL, NEW.type_display
            UNION ALL SELECT 'period_start', NULL, NEW.period_start
            UNION ALL SELECT 'period_end', NULL, NEW.period_end
            UNION ALL SELECT 'reason_code', NULL, NEW.reason_code
            UNION ALL SELECT 'reason_system', NULL, NEW.reason_system
            UNION ALL SELECT 'reason_display', NULL, NEW.reason_display
            UNION ALL SELECT 'chief_complaint', NULL, NEW.chief_complaint
            UNION ALL SELECT 'diagnosis', NULL, NEW.diagnosis
            UNION ALL SELECT 'treatment_plan', NULL, NEW.treatment_plan
            UNION ALL SELECT 'notes', NULL, NEW.notes
            UNION ALL SELECT 'version_id', NULL, NEW.version_id
            UNION ALL SELECT 'created_at', NULL, NEW.created_at
            UNION ALL SELECT 'updated_at', NULL, NEW.updated_at
            UNION ALL SELECT 'deleted_at', NULL, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', NULL, NEW.fhir_extra
            UNION ALL SELECT 'period_start_precision', NULL, NEW.period_start_precision
            UNION ALL SELECT 'period_end_precision', NULL, NEW.period_end_precision) WHERE o IS NOT n)));
END;

CREATE TRIGGER consultations_audit_update AFTER UPDATE ON consultations
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'update', 'table', 'consultations', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NEW.fhir_id
            UNION ALL SELECT 'patient_id', OLD.patient_id, NEW.patient_id
            UNION ALL SELECT 'doctor_id', OLD.doctor_id, NEW.doctor_id
            UNION ALL SELECT 'specialty_id', OLD.specialty_id, NEW.specialty_id
            UNION ALL SELECT 'status', OLD.status, NEW.status
            UNION ALL SELECT 'class_code', OLD.class_code, NEW.class_code
            UNION ALL SELECT 'type_code', OLD.type_code, NEW.type_code
            UNION ALL SELECT 'type_system', OLD.type_system, NEW.type_system
            UNION ALL SELECT 'type_display', OLD.type_display, NEW.type_display
            UNION ALL SELECT 'period_start', OLD.period_start, NEW.period_start
            UNION ALL SELECT 'period_end', OLD.period_end, NEW.period_end
            UNION ALL SELECT 'reason_code', OLD.reason_code, NEW.reason_code
            UNION ALL SELECT 'reason_system', OLD.reason_system, NEW.reason_system
            UNION ALL SELECT 'reason_display', OLD.reason_display, NEW.reason_display
            UNION ALL SELECT 'chief_complaint', OLD.chief_complaint, NEW.chief_complaint
            UNION ALL SELECT 'diagnosis', OLD.diagnosis, NEW.diagnosis
            UNION ALL SELECT 'treatment_plan', OLD.treatment_plan, NEW.treatment_plan
            UNION ALL SELECT 'notes', OLD.notes, NEW.notes
            UNION ALL SELECT 'version_id', OLD.version_id, NEW.version_id
            UNION ALL SELECT 'created_at', OLD.created_at, NEW.created_at
            UNION ALL SELECT 'updated_at', OLD.updated_at, NEW.updated_at
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NEW.fhir_extra
            UNION ALL SELECT 'period_start_precision', OLD.period_start_precision, NEW.period_start_precision
            UNION ALL SELECT 'period_end_precision', OLD.period_end_precision, NEW.period_end_precision) WHERE o IS NOT n)));
END;

CREATE TRIGGER consultations_audit_delete AFTER DELETE ON consultations
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'delete', 'table', 'consultations', 'row', OLD.id, 'patient', OLD.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NULL AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NULL
            UNION ALL SELECT 'patient_id', OLD.patient_id, NULL
            UNION ALL SELECT 'doctor_id', OLD.doctor_id, NULL
            UNION ALL SELECT 'specialty_id', OLD.specialty_id, NULL
            UNION ALL SELECT 'status', OLD.status, NULL
            UNION ALL SELECT 'class_code', OLD.class_code, NULL
            UNION ALL SELECT 'type_code', OLD.type_code, NULL
            UNION ALL SELECT 'type_system', OLD.type_system, NULL
            UNION ALL SELECT 'type_display', OLD.type_display, NULL
            UNION ALL SELECT 'period_start', OLD.period_start, NULL
            UNION ALL SELECT 'period_end', OLD.period_end, NULL
            UNION ALL SELECT 'reason_code', OLD.reason_code, NULL
            UNION ALL SELECT 'reason_system', OLD.reason_system, NULL
            UNION ALL SELECT 'reason_display', OLD.reason_display, NULL
            UNION ALL SELECT 'chief_complaint', OLD.chief_complaint, NULL
            UNION ALL SELECT 'diagnosis', OLD.diagnosis, NULL
            UNION ALL SELECT 'treatment_plan', OLD.treatment_plan, NULL
            UNION ALL SELECT 'notes', OLD.notes, NULL
            UNION ALL SELECT 'version_id', OLD.version_id, NULL
            UNION ALL SELECT 'created_at', OLD.created_at, NULL
            UNION ALL SELECT 'updated_at', OLD.updated_at, NULL
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NULL
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NULL
            UNION ALL SELECT 'period_start_precision', OLD.period_start_precision, NULL
            UNION ALL SELECT 'period_end_precision', OLD.period_end_precision, NULL) WHERE o IS NOT n)));
END;

CREATE TRIGGER vital_signs_audit_insert AFTER INSERT ON vital_signs
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'insert', 'table', 'vital_signs', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, NULL AS o, NEW.id AS n
            UNION ALL SELECT 'patient_id', NULL, NEW.patient_id
            UNION ALL SELECT 'consultation_id', NULL, NEW.consultation_id
            UNION ALL SELECT 'performer_id', NULL, NEW.performer_id
            UNION ALL SELECT 'measured_at', NULL, NEW.measured_at
            UNION ALL SELECT 'status', NULL, NEW.status
            UNION ALL SELECT 'systolic_bp', NULL, NEW.systolic_bp
            UNION ALL SELECT 'diastolic_bp', NULL, NEW.diastolic_bp
            UNION ALL SELECT 'heart_rate', NULL, NEW.heart_rate
            UNION ALL SELECT 'respiratory_rate', NULL, NEW.respiratory_rate
            UNION ALL SELECT 'body_temperature', NULL, NEW.body_temperature
            UNION ALL SELECT 'oxygen_saturation', NULL, NEW.oxygen_saturation
            UNION ALL SELECT 'body_weight', NULL, NEW.body_weight
            UNION ALL SELECT 'body_height', NULL, NEW.body_height
            UNION ALL SELECT 'bmi', NULL, NEW.bmi
            UNION ALL SELECT 'head_circumference', NULL, NEW.head_circumference
            UNION ALL SELECT 'notes', NULL, NEW.notes
            UNION ALL SELECT 'version_id', NULL, NEW.version_id
            UNION ALL SELECT 'created_at', NULL, NEW.created_at
            UNION ALL SELECT 'updated_at', NULL, NEW.updated_at
            UNION ALL SELECT 'deleted_at', NULL, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', NULL, NEW.fhir_extra
            UNION ALL SELECT 'measured_at_precision', NULL, NEW.measured_at_precision) WHERE o IS NOT n)));
END;

CREATE TRIGGER vital_signs_audit_update AFTER UPDATE ON vital_signs
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'update', 'table', 'vital_signs', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NEW.id AS n
            UNION ALL SELECT 'patient_id', OLD.patient_id, NEW.patient_id
            UNION ALL SELECT 'consultation_id', OLD.consultation_id, NEW.consultation_id
            UNION ALL SELECT 'performer_id', OLD.performer_id, NEW.performer_id
            UNION ALL SELECT 'measured_at', OLD.measured_at, NEW.measured_at
            UNION ALL SELECT 'status', OLD.status, NEW.status
            UNION ALL SELECT 'systolic_bp', OLD.systolic_bp, NEW.systolic_bp
            UNION ALL SELECT 'diastolic_bp', OLD.diastolic_bp, NEW.diastolic_bp
            UNION ALL SELECT 'heart_rate', OLD.heart_rate, NEW.heart_rate
            UNION ALL SELECT 'respiratory_rate', OLD.respiratory_rate, NEW.respiratory_rate
            UNION ALL SELECT 'body_temperature', OLD.body_temperature, NEW.body_temperature
            UNION ALL SELECT 'oxygen_saturation', OLD.oxygen_saturation, NEW.oxygen_saturation
            UNION ALL SELECT 'body_weight', OLD.body_weight, NEW.body_weight
            UNION ALL SELECT 'body_height', OLD.body_height, NEW.body_height
            UNION ALL SELECT 'bmi', OLD.bmi, NEW.bmi
            UNION ALL SELECT 'head_circumference', OLD.head_circumference, NEW.head_circumference
            UNION ALL SELECT 'notes', OLD.notes, NEW.notes
            UNION ALL SELECT 'version_id', OLD.version_id, NEW.version_id
            UNION ALL SELECT 'created_at', OLD.created_at, NEW.created_at
            UNION ALL SELECT 'updated_at', OLD.updated_at, NEW.updated_at
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NEW.fhir_extra
            UNION ALL SELECT 'measured_at_precision', OLD.measured_at_precision, NEW.measured_at_precision) WHERE o IS NOT n)));
END;

CREATE TRIGGER vital_signs_audit_delete AFTER DELETE ON vital_signs
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'delete', 'table', 'vital_signs', 'row', OLD.id, 'patient', OLD.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NULL AS n
            UNION ALL SELECT 'patient_id', OLD.patient_id, NULL
            UNION ALL SELECT 'consultation_id', OLD.consultation_id, NULL
            UNION ALL SELECT 'performer_id', OLD.performer_id, NULL
            UNION ALL SELECT 'measured_at', OLD.measured_at, NULL
            UNION ALL SELECT 'status', OLD.status, NULL
            UNION ALL SELECT 'systolic_bp', OLD.systolic_bp, NULL
            UNION ALL SELECT 'diastolic_bp', OLD.diastolic_bp, NULL
            UNION ALL SELECT 'heart_rate', OLD.heart_rate, NULL
            UNION ALL SELECT 'respiratory_rate', OLD.respiratory_rate, NULL
            UNION ALL SELECT 'body_temperature', OLD.body_temperature, NULL
            UNION ALL SELECT 'oxygen_saturation', OLD.oxygen_saturation, NULL
            UNION ALL SELECT 'body_weight', OLD.body_weight, NULL
            UNION ALL SELECT 'body_height', OLD.body_height, NULL
            UNION ALL SELECT 'bmi', OLD.bmi, NULL
            UNION ALL SELECT 'head_circumference', OLD.head_circumference, NULL
            UNION ALL SELECT 'notes', OLD.notes, NULL
            UNION ALL SELECT 'version_id', OLD.version_id, NULL
            UNION ALL SELECT 'created_at', OLD.created_at, NULL
            UNION ALL SELECT 'updated_at', OLD.updated_at, NULL
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NULL
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NULL
            UNION ALL SELECT 'measured_at_precision', OLD.measured_at_precision, NULL) WHERE o IS NOT n)));
END;

CREATE TRIGGER prescriptions_audit_insert AFTER INSERT ON prescriptions
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'insert', 'table', 'prescriptions', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, NULL AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', NULL, NEW.fhir_id
            UNION ALL SELECT 'patient_id', NULL, NEW.patient_id
            UNION ALL SELECT 'consultation_id', NULL, NEW.consultation_id
            UNION ALL SELECT 'prescriber_id', NULL, NEW.prescriber_id
            UNION ALL SELECT 'medication_id', NULL, NEW.medication_id
            UNION ALL SELECT 'status', NULL, NEW.status
            UNION ALL SELECT 'intent', NULL, NEW.intent
            UNION ALL SELECT 'authored_on', NULL, NEW.authored_on
            UNION ALL SELECT 'dosage_text', NULL, NEW.dosage_text
            UNION ALL SELECT 'dose_value', NULL, NEW.dose_value
            UNION ALL SELECT 'dose_unit', NULL, NEW.dose_unit
            UNION ALL SELECT 'route_code', NULL, NEW.route_code
            UNION ALL SELECT 'route_display', NULL, NEW.route_display
            UNION ALL SELECT 'frequency', NULL, NEW.frequency
            UNION ALL SELECT 'timing', NULL, NEW.timing
            UNION ALL SELECT 'quantity_value', NULL, NEW.quantity_value
            UNION ALL SELECT 'quantity_unit', NULL, NEW.quantity_unit
            UNION ALL SELECT 'refills', NULL, NEW.refills
            UNION ALL SELECT 'valid_from', NULL, NEW.valid_from
            UNION ALL SELECT 'valid_until', NULL, NEW.valid_until
            UNION ALL SELECT 'notes', NULL, NEW.notes
            UNION ALL SELECT 'version_id', NULL, NEW.version_id
            UNION ALL SELECT 'created_at', NULL, NEW.created_at
            UNION ALL SELECT 'updated_at', NULL, NEW.updated_at
            UNION ALL SELECT 'deleted_at', NULL, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', NULL, NEW.fhir_extra
            UNION ALL SELECT 'authored_on_precision', NULL, NEW.authored_on_precision) WHERE o IS NOT n)));
END;

CREATE TRIGGER prescriptions_audit_update AFTER UPDATE ON prescriptions
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'update', 'table', 'prescriptions', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NEW.fhir_id
            UNION ALL SELECT 'patient_id', OLD.patient_id, NEW.patient_id
            UNION ALL SELECT 'consultation_id', OLD.consultation_id, NEW.consultation_id
            UNION ALL SELECT 'prescriber_id', OLD.prescriber_id, NEW.prescriber_id
            UNION ALL SELECT 'medication_id', OLD.medication_id, NEW.medication_id
            UNION ALL SELECT 'status', OLD.status, NEW.status
            UNION ALL SELECT 'intent', OLD.intent, NEW.intent
            UNION ALL SELECT 'authored_on', OLD.authored_on, NEW.authored_on
            UNION ALL SELECT 'dosage_text', OLD.dosage_text, NEW.dosage_text
            UNION ALL SELECT 'dose_value', OLD.dose_value, NEW.dose_value
            UNION ALL SELECT 'dose_unit', OLD.dose_unit, NEW.dose_unit
            UNION ALL SELECT 'route_code', OLD.route_code, NEW.route_code
            UNION ALL SELECT 'route_display', OLD.route_display, NEW.route_display
            UNION ALL SELECT 'frequency', OLD.frequency, NEW.frequency
            UNION ALL SELECT 'timing', OLD.timing, NEW.timing
            UNION ALL SELECT 'quantity_value', OLD.quantity_value, NEW.quantity_value
            UNION ALL SELECT 'quantity_unit', OLD.quantity_unit, NEW.quantity_unit
            UNION ALL SELECT 'refills', OLD.refills, NEW.refills
            UNION ALL SELECT 'valid_from', OLD.valid_from, NEW.valid_from
            UNION ALL SELECT 'valid_until', OLD.valid_until, NEW.valid_until
            UNION ALL SELECT 'notes', OLD.notes, NEW.notes
            UNION ALL SELECT 'version_id', OLD.version_id, NEW.version_id
            UNION ALL SELECT 'created_at', OLD.created_at, NEW.created_at
            UNION ALL SELECT 'updated_at', OLD.updated_at, NEW.updated_at
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NEW.fhir_extra
            UNION ALL SELECT 'authored_on_precision', OLD.authored_on_precision, NEW.authored_on_precision) WHERE o IS NOT n)));
END;

CREATE TRIGGER prescriptions_audit_delete AFTER DELETE ON prescriptions
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'delete', 'table', 'prescriptions', 'row', OLD.id, 'patient', OLD.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NULL AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NULL
            UNION ALL SELECT 'patient_id', OLD.patient_id, NULL
            UNION ALL SELECT 'consultation_id', OLD.consultation_id, NULL
            UNION ALL SELECT 'prescriber_id', OLD.prescriber_id, NULL
            UNION ALL SELECT 'medication_id', OLD.medication_id, NULL
            UNION ALL SELECT 'status', OLD.status, NULL
            UNION ALL SELECT 'intent', OLD.intent, NULL
            UNION ALL SELECT 'authored_on', OLD.authored_on, NULL
            UNION ALL SELECT 'dosage_text', OLD.dosage_text, NULL
            UNION ALL SELECT 'dose_value', OLD.dose_value, NULL
            UNION ALL SELECT 'dose_unit', OLD.dose_unit, NULL
            UNION ALL SELECT 'route_code', OLD.route_code, NULL
            UNION ALL SELECT 'route_display', OLD.route_display, NULL
            UNION ALL SELECT 'frequency', OLD.frequency, NULL
            UNION ALL SELECT 'timing', OLD.timing, NULL
            UNION ALL SELECT 'quantity_value', OLD.quantity_value, NULL
            UNION ALL SELECT 'quantity_unit', OLD.quantity_unit, NULL
            UNION ALL SELECT 'refills', OLD.refills, NULL
            UNION ALL SELECT 'valid_from', OLD.valid_from, NULL
            UNION ALL SELECT 'valid_until', OLD.valid_until, NULL
            UNION ALL SELECT 'notes', OLD.notes, NULL
            UNION ALL SELECT 'version_id', OLD.version_id, NULL
            UNION ALL SELECT 'created_at', OLD.created_at, NULL
            UNION ALL SELECT 'updated_at', OLD.updated_at, NULL
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NULL
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NULL
            UNION ALL SELECT 'authored_on_precision', OLD.authored_on_precision, NULL) WHERE o IS NOT n)));
END;

CREATE TRIGGER medical_tests_audit_insert AFTER INSERT ON medical_tests
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'insert', 'table', 'medical_tests', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, NULL AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', NULL, NEW.fhir_id
            UNION ALL SELECT 'patient_id', NULL, NEW.patient_id
            UNION ALL SELECT 'consultation_id', NULL, NEW.consultation_id
            UNION ALL SELECT 'ordered_by', NULL, NEW.ordered_by
            UNION ALL SELECT 'performer', NULL, NEW.performer
            UNION ALL SELECT 'status', NULL, NEW.status
            UNION ALL SELECT 'category_code', NULL, NEW.category_code
            UNION ALL SELECT 'category_system', NULL, NEW.category_system
            UNION ALL SELECT 'code', NULL, NEW.code
            UNION ALL SELECT 'code_system', NULL, NEW.code_system
            UNION ALL SELECT 'code_display', NULL, NEW.code_display
            UNION ALL SELECT 'effective_at', NULL, NEW.effective_at
            UNION ALL SELECT 'issued_at', NULL, NEW.issued_at
            UNION ALL SELECT 'conclusion', NULL, NEW.conclusion
            UNION ALL SELECT 'lab_name', NULL, NEW.lab_name
            UNION ALL SELECT 'version_id', NULL, NEW.version_id
            UNION ALL SELECT 'created_at', NULL, NEW.created_at
            UNION ALL SELECT 'updated_at', NULL, NEW.updated_at
            UNION ALL SELECT 'deleted_at', NULL, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', NULL, NEW.fhir_extra
            UNION ALL SELECT 'effective_precision', NULL, NEW.effective_precision) WHERE o IS NOT n)));
END;

CREATE TRIGGER medical_tests_audit_update AFTER UPDATE ON medical_tests
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'update', 'table', 'medical_tests', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NEW.fhir_id
            UNION ALL SELECT 'patient_id', OLD.patient_id, NEW.patient_id
            UNION ALL SELECT 'consultation_id', OLD.consultation_id, NEW.consultation_id
            UNION ALL SELECT 'ordered_by', OLD.ordered_by, NEW.ordered_by
            UNION ALL SELECT 'performer', OLD.performer, NEW.performer
            UNION ALL SELECT 'status', OLD.status, NEW.status
            UNION ALL SELECT 'category_code', OLD.category_code, NEW.category_code
            UNION ALL SELECT 'category_system', OLD.category_system, NEW.category_system
            UNION ALL SELECT 'code', OLD.code, NEW.code
            UNION ALL SELECT 'code_system', OLD.code_system, NEW.code_system
            UNION ALL SELECT 'code_display', OLD.code_display, NEW.code_display
            UNION ALL SELECT 'effective_at', OLD.effective_at, NEW.effective_at
            UNION ALL SELECT 'issued_at', OLD.issued_at, NEW.issued_at
            UNION ALL SELECT 'conclusion', OLD.conclusion, NEW.conclusion
            UNION ALL SELECT 'lab_name', OLD.lab_name, NEW.lab_name
            UNION ALL SELECT 'version_id', OLD.version_id, NEW.version_id
            UNION ALL SELECT 'created_at', OLD.created_at, NEW.created_at
            UNION ALL SELECT 'updated_at', OLD.updated_at, NEW.updated_at
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NEW.fhir_extra
            UNION ALL SELECT 'effective_precision', OLD.effective_precision, NEW.effective_precision) WHERE o IS NOT n)));
END;

CREATE TRIGGER medical_tests_audit_delete AFTER DELETE ON medical_tests
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'delete', 'table', 'medical_tests', 'row', OLD.id, 'patient', OLD.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NULL AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NULL
            UNION ALL SELECT 'patient_id', OLD.patient_id, NULL
            UNION ALL SELECT 'consultation_id', OLD.consultation_id, NULL
            UNION ALL SELECT 'ordered_by', OLD.ordered_by, NULL
            UNION ALL SELECT 'performer', OLD.performer, NULL
            UNION ALL SELECT 'status', OLD.status, NULL
            UNION ALL SELECT 'category_code', OLD.category_code, NULL
            UNION ALL SELECT 'category_system', OLD.category_system, NULL
            UNION ALL SELECT 'code', OLD.code, NULL
            UNION ALL SELECT 'code_system', OLD.code_system, NULL
            UNION ALL SELECT 'code_display', OLD.code_display, NULL
            UNION ALL SELECT 'effective_at', OLD.effective_at, NULL
            UNION ALL SELECT 'issued_at', OLD.issued_at, NULL
            UNION ALL SELECT 'conclusion', OLD.conclusion, NULL
            UNION ALL SELECT 'lab_name', OLD.lab_name, NULL
            UNION ALL SELECT 'version_id', OLD.version_id, NULL
            UNION ALL SELECT 'created_at', OLD.created_at, NULL
            UNION ALL SELECT 'updated_at', OLD.updated_at, NULL
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NULL
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NULL
            UNION ALL SELECT 'effective_precision', OLD.effective_precision, NULL) WHERE o IS NOT n)));
END;

CREATE TRIGGER medical_test_results_audit_insert AFTER INSERT ON medical_test_results
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'insert', 'table', 'medical_test_results', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, NULL AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', NULL, NEW.fhir_id
            UNION ALL SELECT 'medical_test_id', NULL, NEW.medical_test_id
            UNION ALL SELECT 'patient_id', NULL, NEW.patient_id
            UNION ALL SELECT 'consultation_id', NULL, NEW.consultation_id
            UNION ALL SELECT 'status', NULL, NEW.status
            UNION ALL SELECT 'category_code', NULL, NEW.category_code
            UNION ALL SELECT 'code', NULL, NEW.code
            UNION ALL SELECT 'code_system', NULL, NEW.code_system
            UNION ALL SELECT 'code_display', NULL, NEW.code_display
            UNION ALL SELECT 'code_text', NULL, NEW.code_text
            UNION ALL SELECT 'value_type', NULL, NEW.value_type
            UNION ALL SELECT 'value_quantity', NULL, NEW.value_quantity
            UNION ALL SELECT 'value_unit', NULL, NEW.value_unit
            UNION ALL SELECT 'value_unit_system', NULL, NEW.value_unit_system
            UNION ALL SELECT 'value_code', NULL, NEW.value_code
            UNION ALL SELECT 'value_string', NULL, NEW.value_string
            UNION ALL SELECT 'value_boolean', NULL, NEW.value_boolean
            UNION ALL SELECT 'value_integer', NULL, NEW.value_integer
            UNION ALL SELECT 'value_json', NULL, NEW.value_json
            UNION ALL SELECT 'reference_low', NULL, NEW.reference_low
            UNION ALL SELECT 'reference_high', NULL, NEW.reference_high
            UNION ALL SELECT 'interpretation_code', NULL, NEW.interpretation_code
            UNION ALL SELECT 'effective_at', NULL, NEW.effective_at
            UNION ALL SELECT 'effective_end', NULL, NEW.effective_end
            UNION ALL SELECT 'issued_at', NULL, NEW.issued_at
            UNION ALL SELECT 'performer_id', NULL, NEW.performer_id
            UNION ALL SELECT 'version_id', NULL, NEW.version_id
            UNION ALL SELECT 'created_at', NULL, NEW.created_at
            UNION ALL SELECT 'updated_at', NULL, NEW.updated_at
            UNION ALL SELECT 'deleted_at', NULL, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', NULL, NEW.fhir_extra
            UNION ALL SELECT 'effective_precision', NULL, NEW.effective_precision
            UNION ALL SELECT 'effective_end_precision', NULL, NEW.effective_end_precision) WHERE o IS NOT n)));
END;

CREATE TRIGGER medical_test_results_audit_update AFTER UPDATE ON medical_test_results
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'update', 'table', 'medical_test_results', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NEW.id AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NEW.fhir_id
            UNION ALL SELECT 'medical_test_id', OLD.medical_test_id, NEW.medical_test_id
            UNION ALL SELECT 'patient_id', OLD.patient_id, NEW.patient_id
            UNION ALL SELECT 'consultation_id', OLD.consultation_id, NEW.consultation_id
            UNION ALL SELECT 'status', OLD.status, NEW.status
            UNION ALL SELECT 'category_code', OLD.category_code, NEW.category_code
            UNION ALL SELECT 'code', OLD.code, NEW.code
            UNION ALL SELECT 'code_system', OLD.code_system, NEW.code_system
            UNION ALL SELECT 'code_display', OLD.code_display, NEW.code_display
            UNION ALL SELECT 'code_text', OLD.code_text, NEW.code_text
            UNION ALL SELECT 'value_type', OLD.value_type, NEW.value_type
            UNION ALL SELECT 'value_quantity', OLD.value_quantity, NEW.value_quantity
            UNION ALL SELECT 'value_unit', OLD.value_unit, NEW.value_unit
            UNION ALL SELECT 'value_unit_system', OLD.value_unit_system, NEW.value_unit_system
            UNION ALL SELECT 'value_code', OLD.value_code, NEW.value_code
            UNION ALL SELECT 'value_string', OLD.value_string, NEW.value_string
            UNION ALL SELECT 'value_boolean', OLD.value_boolean, NEW.value_boolean
            UNION ALL SELECT 'value_integer', OLD.value_integer, NEW.value_integer
            UNION ALL SELECT 'value_json', OLD.value_json, NEW.value_json
            UNION ALL SELECT 'reference_low', OLD.reference_low, NEW.reference_low
            UNION ALL SELECT 'reference_high', OLD.reference_high, NEW.reference_high
            UNION ALL SELECT 'interpretation_code', OLD.interpretation_code, NEW.interpretation_code
            UNION ALL SELECT 'effective_at', OLD.effective_at, NEW.effective_at
            UNION ALL SELECT 'effective_end', OLD.effective_end, NEW.effective_end
            UNION ALL SELECT 'issued_at', OLD.issued_at, NEW.issued_at
            UNION ALL SELECT 'performer_id', OLD.performer_id, NEW.performer_id
            UNION ALL SELECT 'version_id', OLD.version_id, NEW.version_id
            UNION ALL SELECT 'created_at', OLD.created_at, NEW.created_at
            UNION ALL SELECT 'updated_at', OLD.updated_at, NEW.updated_at
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NEW.fhir_extra
            UNION ALL SELECT 'effective_precision', OLD.effective_precision, NEW.effective_precision
            UNION ALL SELECT 'effective_end_precision', OLD.effective_end_precision, NEW.effective_end_precision) WHERE o IS NOT n)));
END;

CREATE TRIGGER medical_test_results_audit_delete AFTER DELETE ON medical_test_results
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'delete', 'table', 'medical_test_results', 'row', OLD.id, 'patient', OLD.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NULL AS n
            UNION ALL SELECT 'fhir_id', OLD.fhir_id, NULL
            UNION ALL SELECT 'medical_test_id', OLD.medical_test_id, NULL
            UNION ALL SELECT 'patient_id', OLD.patient_id, NULL
            UNION ALL SELECT 'consultation_id', OLD.consultation_id, NULL
            UNION ALL SELECT 'status', OLD.status, NULL
            UNION ALL SELECT 'category_code', OLD.category_code, NULL
            UNION ALL SELECT 'code', OLD.code, NULL
            UNION ALL SELECT 'code_system', OLD.code_system, NULL
            UNION ALL SELECT 'code_display', OLD.code_display, NULL
            UNION ALL SELECT 'code_text', OLD.code_text, NULL
            UNION ALL SELECT 'value_type', OLD.value_type, NULL
            UNION ALL SELECT 'value_quantity', OLD.value_quantity, NULL
            UNION ALL SELECT 'value_unit', OLD.value_unit, NULL
            UNION ALL SELECT 'value_unit_system', OLD.value_unit_system, NULL
            UNION ALL SELECT 'value_code', OLD.value_code, NULL
            UNION ALL SELECT 'value_string', OLD.value_string, NULL
            UNION ALL SELECT 'value_boolean', OLD.value_boolean, NULL
            UNION ALL SELECT 'value_integer', OLD.value_integer, NULL
            UNION ALL SELECT 'value_json', OLD.value_json, NULL
            UNION ALL SELECT 'reference_low', OLD.reference_low, NULL
            UNION ALL SELECT 'reference_high', OLD.reference_high, NULL
            UNION ALL SELECT 'interpretation_code', OLD.interpretation_code, NULL
            UNION ALL SELECT 'effective_at', OLD.effective_at, NULL
            UNION ALL SELECT 'effective_end', OLD.effective_end, NULL
            UNION ALL SELECT 'issued_at', OLD.issued_at, NULL
            UNION ALL SELECT 'performer_id', OLD.performer_id, NULL
            UNION ALL SELECT 'version_id', OLD.version_id, NULL
            UNION ALL SELECT 'created_at', OLD.created_at, NULL
            UNION ALL SELECT 'updated_at', OLD.updated_at, NULL
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NULL
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NULL
            UNION ALL SELECT 'effective_precision', OLD.effective_precision, NULL
            UNION ALL SELECT 'effective_end_precision', OLD.effective_end_precision, NULL) WHERE o IS NOT n)));
END;

CREATE TRIGGER file_attachments_audit_insert AFTER INSERT ON file_attachments
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'insert', 'table', 'file_attachments', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, NULL AS o, NEW.id AS n
            UNION ALL SELECT 'patient_id', NULL, NEW.patient_id
            UNION ALL SELECT 'consultation_id', NULL, NEW.consultation_id
            UNION ALL SELECT 'medical_test_id', NULL, NEW.medical_test_id
            UNION ALL SELECT 'file_name', NULL, NEW.file_name
            UNION ALL SELECT 'content_type', NULL, NEW.content_type
            UNION ALL SELECT 'size_bytes', NULL, NEW.size_bytes
            UNION ALL SELECT 'sha256', NULL, NEW.sha256
            UNION ALL SELECT 'storage_path', NULL, NEW.storage_path
            UNION ALL SELECT 'uploaded_by', NULL, NEW.uploaded_by
            UNION ALL SELECT 'version_id', NULL, NEW.version_id
            UNION ALL SELECT 'created_at', NULL, NEW.created_at
            UNION ALL SELECT 'updated_at', NULL, NEW.updated_at
            UNION ALL SELECT 'deleted_at', NULL, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', NULL, NEW.fhir_extra) WHERE o IS NOT n)));
END;

CREATE TRIGGER file_attachments_audit_update AFTER UPDATE ON file_attachments
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'update', 'table', 'file_attachments', 'row', NEW.id, 'patient', NEW.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NEW.id AS n
            UNION ALL SELECT 'patient_id', OLD.patient_id, NEW.patient_id
            UNION ALL SELECT 'consultation_id', OLD.consultation_id, NEW.consultation_id
            UNION ALL SELECT 'medical_test_id', OLD.medical_test_id, NEW.medical_test_id
            UNION ALL SELECT 'file_name', OLD.file_name, NEW.file_name
            UNION ALL SELECT 'content_type', OLD.content_type, NEW.content_type
            UNION ALL SELECT 'size_bytes', OLD.size_bytes, NEW.size_bytes
            UNION ALL SELECT 'sha256', OLD.sha256, NEW.sha256
            UNION ALL SELECT 'storage_path', OLD.storage_path, NEW.storage_path
            UNION ALL SELECT 'uploaded_by', OLD.uploaded_by, NEW.uploaded_by
            UNION ALL SELECT 'version_id', OLD.version_id, NEW.version_id
            UNION ALL SELECT 'created_at', OLD.created_at, NEW.created_at
            UNION ALL SELECT 'updated_at', OLD.updated_at, NEW.updated_at
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NEW.fhir_extra) WHERE o IS NOT n)));
END;

CREATE TRIGGER file_attachments_audit_delete AFTER DELETE ON file_attachments
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'delete', 'table', 'file_attachments', 'row', OLD.id, 'patient', OLD.patient_id,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NULL AS n
            UNION ALL SELECT 'patient_id', OLD.patient_id, NULL
            UNION ALL SELECT 'consultation_id', OLD.consultation_id, NULL
            UNION ALL SELECT 'medical_test_id', OLD.medical_test_id, NULL
            UNION ALL SELECT 'file_name', OLD.file_name, NULL
            UNION ALL SELECT 'content_type', OLD.content_type, NULL
            UNION ALL SELECT 'size_bytes', OLD.size_bytes, NULL
            UNION ALL SELECT 'sha256', OLD.sha256, NULL
            UNION ALL SELECT 'storage_path', OLD.storage_path, NULL
            UNION ALL SELECT 'uploaded_by', OLD.uploaded_by, NULL
            UNION ALL SELECT 'version_id', OLD.version_id, NULL
            UNION ALL SELECT 'created_at', OLD.created_at, NULL
            UNION ALL SELECT 'updated_at', OLD.updated_at, NULL
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NULL
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NULL) WHERE o IS NOT n)));
END;

CREATE TRIGGER custom_field_values_audit_insert AFTER INSERT ON custom_field_values
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'insert', 'table', 'custom_field_values', 'row', NEW.id, 'patient', NULL,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, NULL AS o, NEW.id AS n
            UNION ALL SELECT 'custom_field_id', NULL, NEW.custom_field_id
            UNION ALL SELECT 'entity_type', NULL, NEW.entity_type
            UNION ALL SELECT 'entity_id', NULL, NEW.entity_id
            UNION ALL SELECT 'value_text', NULL, NEW.value_text
            UNION ALL SELECT 'value_number', NULL, NEW.value_number
            UNION ALL SELECT 'value_date', NULL, NEW.value_date
            UNION ALL SELECT 'value_boolean', NULL, NEW.value_boolean
            UNION ALL SELECT 'version_id', NULL, NEW.version_id
            UNION ALL SELECT 'created_at', NULL, NEW.created_at
            UNION ALL SELECT 'updated_at', NULL, NEW.updated_at
            UNION ALL SELECT 'deleted_at', NULL, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', NULL, NEW.fhir_extra) WHERE o IS NOT n)));
END;

CREATE TRIGGER custom_field_values_audit_update AFTER UPDATE ON custom_field_values
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'update', 'table', 'custom_field_values', 'row', NEW.id, 'patient', NULL,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NEW.id AS n
            UNION ALL SELECT 'custom_field_id', OLD.custom_field_id, NEW.custom_field_id
            UNION ALL SELECT 'entity_type', OLD.entity_type, NEW.entity_type
            UNION ALL SELECT 'entity_id', OLD.entity_id, NEW.entity_id
            UNION ALL SELECT 'value_text', OLD.value_text, NEW.value_text
            UNION ALL SELECT 'value_number', OLD.value_number, NEW.value_number
            UNION ALL SELECT 'value_date', OLD.value_date, NEW.value_date
            UNION ALL SELECT 'value_boolean', OLD.value_boolean, NEW.value_boolean
            UNION ALL SELECT 'version_id', OLD.version_id, NEW.version_id
            UNION ALL SELECT 'created_at', OLD.created_at, NEW.created_at
            UNION ALL SELECT 'updated_at', OLD.updated_at, NEW.updated_at
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NEW.deleted_at
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NEW.fhir_extra) WHERE o IS NOT n)));
END;

CREATE TRIGGER custom_field_values_audit_delete AFTER DELETE ON custom_field_values
WHEN (SELECT writer FROM audit_chain) = 0
BEGIN
    INSERT INTO audit_inbox (event) VALUES (json_object(
        'kind', 'change', 'action', 'delete', 'table', 'custom_field_values', 'row', OLD.id, 'patient', NULL,
        'time', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'),
        'changes', (SELECT json_group_object(k, json_object('old', o, 'new', n)) FROM (
            SELECT 'id' AS k, OLD.id AS o, NULL AS n
            UNION ALL SELECT 'custom_field_id', OLD.custom_field_id, NULL
            UNION ALL SELECT 'entity_type', OLD.entity_type, NULL
            UNION ALL SELECT 'entity_id', OLD.entity_id, NULL
            UNION ALL SELECT 'value_text', OLD.value_text, NULL
            UNION ALL SELECT 'value_number', OLD.value_number, NULL
            UNION ALL SELECT 'value_date', OLD.value_date, NULL
            UNION ALL SELECT 'value_boolean', OLD.value_boolean, NULL
            UNION ALL SELECT 'version_id', OLD.version_id, NULL
            UNION ALL SELECT 'created_at', OLD.created_at, NULL
            UNION ALL SELECT 'updated_at', OLD.updated_at, NULL
            UNION ALL SELECT 'deleted_at', OLD.deleted_at, NULL
            UNION ALL SELECT 'fhir_extra', OLD.fhir_extra, NULL) WHERE o IS NOT n)));
END;


-- The audit trail is reached only by scopes that name it (a wildcard does not): the
-- administrator sees it whole, a patient the events about their own record.
UPDATE roles SET permissions = permissions || ' user/AuditEvent.rs' WHERE name = 'administrator';
UPDATE roles SET permissions = permissions || ' patient/AuditEvent.rs' WHERE name = 'patient';
