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
