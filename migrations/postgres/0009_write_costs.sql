-- What every write paid for and did not need.
--
-- A trigger whose function has nothing to do for a row still costs a PL/pgSQL call per row. A
-- WHEN condition is checked without one:
-- * a result row touches its report only when it is linked to one (on insert) or its link
--   changes (on update): what touch_report itself checks first;
-- * a vital_signs row written by a FHIR write (named in expediente.write_guard) does not keep
--   its vital_sign_observations by trigger: what vital_signs_observations itself checks first.
DROP TRIGGER medical_test_results_report ON medical_test_results;
CREATE TRIGGER medical_test_results_report_insert AFTER INSERT ON medical_test_results
    FOR EACH ROW WHEN (NEW.medical_test_id IS NOT NULL) EXECUTE FUNCTION touch_report();
CREATE TRIGGER medical_test_results_report_update AFTER UPDATE ON medical_test_results
    FOR EACH ROW WHEN (NEW.medical_test_id IS DISTINCT FROM OLD.medical_test_id)
    EXECUTE FUNCTION touch_report();

DROP TRIGGER vital_signs_observations ON vital_signs;
CREATE TRIGGER vital_signs_observations AFTER INSERT OR UPDATE ON vital_signs
    FOR EACH ROW WHEN (NOT (CAST(NEW.id AS text) = ANY (string_to_array(COALESCE(current_setting('expediente.write_guard', true), ''), ','))))
    EXECUTE FUNCTION vital_signs_observations();

-- History pages by (resource_type, last_updated, seq) (migration 0006); the older index by
-- (resource_type, last_updated, id) serves no query and costs every version an index entry.
DROP INDEX resource_versions_type_time_idx;
