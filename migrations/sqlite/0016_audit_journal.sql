-- The database's own name for itself: the server's audit journal files (docs/AUDIT.md) carry it,
-- so that events kept in a journal are only ever stored into the database they were made for.
ALTER TABLE audit_chain ADD COLUMN instance TEXT;
UPDATE audit_chain SET instance = lower(hex(randomblob(16))) WHERE id = 1;

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
