-- A file attached to a medical test is part of its DiagnosticReport (presentedForm), and a
-- result linked to it (medical_test_results.medical_test_id) part of its result list: attaching,
-- linking, changing or removing one is a change of the report, so the medical_tests row is
-- touched (its version_id and updated_at move, once per transaction), except inside a FHIR
-- write, which marks the row in fhir_write_guard. Custom field values of a vital-sign Observation touch its
-- vital_sign_observations row the same way.
CREATE OR REPLACE FUNCTION touch_report() RETURNS trigger AS $$
DECLARE
    ids uuid[];
BEGIN
    IF TG_OP = 'INSERT' THEN
        ids := ARRAY[NEW.medical_test_id];
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY[OLD.medical_test_id];
    ELSIF TG_TABLE_NAME = 'medical_test_results' AND NEW.medical_test_id IS NOT DISTINCT FROM OLD.medical_test_id THEN
        -- Only linking or unlinking a result changes its report.
        RETURN NULL;
    ELSE
        ids := ARRAY[NEW.medical_test_id, OLD.medical_test_id];
    END IF;
    UPDATE medical_tests SET updated_at = clock_timestamp()
     WHERE id = ANY (ids)
       AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = medical_tests.id)
       AND xmin::text <> pg_current_xact_id()::xid::text;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER file_attachments_report AFTER INSERT OR UPDATE OR DELETE ON file_attachments FOR EACH ROW EXECUTE FUNCTION touch_report();

CREATE OR REPLACE FUNCTION touch_vital_of_custom_field() RETURNS trigger AS $$
DECLARE
    r record;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    IF r.entity_type = 'Observation' THEN
        UPDATE vital_sign_observations SET updated_at = clock_timestamp()
         WHERE id = r.entity_id
           AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = vital_sign_observations.id)
           AND xmin::text <> pg_current_xact_id()::xid::text;
    END IF;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER custom_field_values_vital AFTER INSERT OR UPDATE OR DELETE ON custom_field_values FOR EACH ROW EXECUTE FUNCTION touch_vital_of_custom_field();

-- Linking a result to its report (medical_test_id, written by DiagnosticReport.result) is not a
-- change of the Observation: it makes no new version.
CREATE OR REPLACE FUNCTION touch_result() RETURNS trigger AS $$
BEGIN
    IF NEW.medical_test_id IS DISTINCT FROM OLD.medical_test_id
       AND (to_jsonb(NEW) - 'medical_test_id') = (to_jsonb(OLD) - 'medical_test_id') THEN
        RETURN NEW;
    END IF;
    NEW.created_at := OLD.created_at;
    NEW.updated_at := clock_timestamp();
    NEW.version_id := OLD.version_id + 1;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER medical_test_results_touch ON medical_test_results;
CREATE TRIGGER medical_test_results_touch BEFORE UPDATE ON medical_test_results FOR EACH ROW EXECUTE FUNCTION touch_result();
CREATE TRIGGER medical_test_results_report AFTER INSERT OR UPDATE ON medical_test_results FOR EACH ROW EXECUTE FUNCTION touch_report();
