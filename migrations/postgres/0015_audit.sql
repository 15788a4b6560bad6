-- The audit trail: every access through the server, and every direct change of a clinical table,
-- as one hash-chained sequence (docs/AUDIT.md has the canonical form and how it is verified).

-- Each row of the chain carries its event as the exact text that was hashed (`event`); the other
-- columns are copies of its fields for searching, checked against it by `audit verify`.
ALTER TABLE audit_logs
    ADD COLUMN event text,
    ADD COLUMN category text,
    ADD COLUMN agent text,
    ADD COLUMN resource_version bigint,
    ADD COLUMN request_id text;
-- The chain assigns seq itself, gapless: not from a sequence, which skips on rollback.
ALTER TABLE audit_logs ALTER COLUMN seq DROP DEFAULT;
-- The patient of an event is in audit_log_patients (an event may name several).
DROP INDEX audit_logs_patient_idx;
CREATE INDEX audit_logs_agent_idx ON audit_logs (agent, seq);
CREATE INDEX audit_logs_client_idx ON audit_logs (client_id, seq);
CREATE INDEX audit_logs_entity_idx ON audit_logs (resource_type, resource_id, seq);

-- The patients whose data an event concerns (a search returns many).
CREATE TABLE audit_log_patients (
    seq     bigint NOT NULL,
    patient text NOT NULL
);
CREATE INDEX audit_log_patients_idx ON audit_log_patients (patient, seq);
CREATE INDEX audit_log_patients_seq_idx ON audit_log_patients (seq);
CREATE TRIGGER audit_log_patients_no_update BEFORE UPDATE OR DELETE ON audit_log_patients FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();

-- The resources an import's event names (it names them all in one event; these rows find it).
CREATE TABLE audit_log_entities (
    seq           bigint NOT NULL,
    resource_type text NOT NULL,
    resource_id   text NOT NULL
);
CREATE INDEX audit_log_entities_idx ON audit_log_entities (resource_type, resource_id, seq);
CREATE INDEX audit_log_entities_seq_idx ON audit_log_entities (seq);
CREATE TRIGGER audit_log_entities_no_update BEFORE UPDATE OR DELETE ON audit_log_entities FOR EACH ROW EXECUTE FUNCTION audit_logs_append_only();

-- The head of the chain: the last sequence number and hash. Appending locks this row until the
-- appending transaction ends, which is what keeps the sequence gapless with several writers and
-- several processes. Rows written before the chain began (start_seq) are outside it.
CREATE TABLE audit_chain (
    id        integer PRIMARY KEY CHECK (id = 1),
    start_seq bigint NOT NULL,
    seq       bigint NOT NULL,
    hash      text NOT NULL,
    writer    integer NOT NULL DEFAULT 0
);
INSERT INTO audit_chain (id, start_seq, seq, hash)
SELECT 1, coalesce(max(seq), 0), coalesce(max(seq), 0), repeat('0', 64) FROM audit_logs;
CREATE OR REPLACE FUNCTION audit_chain_kept() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_chain is kept by the server';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_chain_no_delete BEFORE DELETE ON audit_chain FOR EACH ROW EXECUTE FUNCTION audit_chain_kept();

-- Events not written by the server (direct changes, the clinic application's own audit rows)
-- wait here, in the transaction that made them, until the server chains them.
CREATE TABLE audit_inbox (
    id    bigserial PRIMARY KEY,
    event text NOT NULL
);

-- The server's own connections say so (the `expediente.server` setting): their changes are
-- audited by the server, as FHIR interactions. Any other change of a clinical table is recorded
-- with the columns it changed.
CREATE OR REPLACE FUNCTION audit_direct_change() RETURNS trigger AS $$
DECLARE
    o jsonb;
    n jsonb;
    changes jsonb;
    r jsonb;
BEGIN
    IF current_setting('expediente.server', true) = 'on' THEN
        RETURN NULL;
    END IF;
    IF TG_OP <> 'INSERT' THEN o := to_jsonb(OLD) - 'content'; END IF;
    IF TG_OP <> 'DELETE' THEN n := to_jsonb(NEW) - 'content'; END IF;
    r := coalesce(n, o);
    SELECT coalesce(jsonb_object_agg(k, jsonb_build_object('old', o -> k, 'new', n -> k)), '{}'::jsonb)
      INTO changes
      FROM jsonb_object_keys(r) AS k
     WHERE (o -> k) IS DISTINCT FROM (n -> k);
    INSERT INTO audit_inbox (event) VALUES (jsonb_build_object(
        'kind', 'change',
        'action', lower(TG_OP),
        'table', TG_TABLE_NAME,
        'row', r ->> 'id',
        'patient', CASE WHEN TG_TABLE_NAME = 'patients' THEN r ->> 'id' ELSE r ->> 'patient_id' END,
        'time', to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'by', current_user,
        'changes', changes)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['patients', 'patient_identifiers', 'patient_contacts', 'medical_histories',
        'patient_allergies', 'consultations', 'vital_signs', 'prescriptions', 'medical_tests',
        'medical_test_results', 'file_attachments', 'custom_field_values']
    LOOP
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION audit_direct_change()',
                       t || '_audit', t);
    END LOOP;
END;
$$;

-- An audit row inserted by anyone else than the server (the clinic application's own log) joins
-- the chain through the inbox.
CREATE OR REPLACE FUNCTION audit_logs_from_outside() RETURNS trigger AS $$
BEGIN
    IF NEW.hash IS NOT NULL AND current_setting('expediente.server', true) = 'on' THEN
        RETURN NEW;
    END IF;
    INSERT INTO audit_inbox (event) VALUES (jsonb_build_object(
        'kind', 'clinic',
        'action', NEW.action,
        'table', NEW.resource_type,
        'row', NEW.resource_id,
        'patient', NEW.patient_id::text,
        'user', NEW.user_id::text,
        'client', NEW.client_id,
        'outcome', NEW.outcome,
        'source', NEW.source_ip,
        'time', to_char(coalesce(NEW.recorded_at, clock_timestamp()) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'),
        'by', current_user,
        'details', NEW.details)::text);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_logs_outside BEFORE INSERT ON audit_logs FOR EACH ROW EXECUTE FUNCTION audit_logs_from_outside();

-- The audit trail is reached only by scopes that name it (a wildcard does not): the
-- administrator sees it whole, a patient the events about their own record.
UPDATE roles SET permissions = permissions || ' user/AuditEvent.rs' WHERE name = 'administrator';
UPDATE roles SET permissions = permissions || ' patient/AuditEvent.rs' WHERE name = 'patient';
