-- The database's own name for itself: the server's audit journal files (docs/AUDIT.md) carry it,
-- so that events kept in a journal are only ever stored into the database they were made for.
ALTER TABLE audit_chain ADD COLUMN instance TEXT;
UPDATE audit_chain SET instance = replace(gen_random_uuid()::text, '-', '') WHERE id = 1;

-- The server's own rows and changes do not call the audit trigger functions at all: a WHEN
-- condition, checked without entering PL/pgSQL, leaves them out (the functions check again).
DROP TRIGGER audit_logs_outside ON audit_logs;
CREATE TRIGGER audit_logs_outside BEFORE INSERT ON audit_logs FOR EACH ROW
    WHEN (NEW.hash IS NULL OR current_setting('expediente.server', true) IS DISTINCT FROM 'on')
    EXECUTE FUNCTION audit_logs_from_outside();

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['patients', 'patient_identifiers', 'patient_contacts', 'medical_histories',
        'patient_allergies', 'consultations', 'vital_signs', 'prescriptions', 'medical_tests',
        'medical_test_results', 'file_attachments', 'custom_field_values']
    LOOP
        EXECUTE format('DROP TRIGGER %I ON %I', t || '_audit', t);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I FOR EACH ROW '
                       'WHEN (current_setting(''expediente.server'', true) IS DISTINCT FROM ''on'') '
                       'EXECUTE FUNCTION audit_direct_change()', t || '_audit', t);
    END LOOP;
END;
$$;

-- Events without a user (a backend service's) or without a client (the command line's) are never
-- searched by them: the agent and client indexes leave them out.
DROP INDEX audit_logs_agent_idx;
DROP INDEX audit_logs_client_idx;
CREATE INDEX audit_logs_agent_idx ON audit_logs (agent, seq) WHERE agent IS NOT NULL;
CREATE INDEX audit_logs_client_idx ON audit_logs (client_id, seq) WHERE client_id IS NOT NULL;

-- The patient of an event about one patient (most reads) is in the event's row; only an event
-- about several lists them in audit_log_patients: one index entry instead of a row and two.
ALTER TABLE audit_logs ADD COLUMN patient TEXT;
CREATE INDEX audit_logs_patient_one_idx ON audit_logs (patient, seq) WHERE patient IS NOT NULL;

-- An event about a Patient resource and that patient alone (a read of a Patient) is found by
-- entity through the patient index: the entity index leaves it out.
DROP INDEX audit_logs_entity_idx;
CREATE INDEX audit_logs_entity_idx ON audit_logs (resource_type, resource_id, seq)
    WHERE patient IS NULL OR resource_type <> 'Patient' OR resource_id <> patient;
