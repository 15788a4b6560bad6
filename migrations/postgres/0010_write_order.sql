-- Every vital_signs row a FHIR write makes or changes keeps its vital_sign_observations rows
-- itself (the mapping layer writes them). Such a transaction says so once, in the
-- transaction-local setting expediente.fhir_vitals, instead of naming each row in
-- expediente.write_guard before and after its write: two statements for every vital-sign
-- Observation. Writes from elsewhere (the clinic's own application) set neither, and the
-- trigger keeps their observation rows as before.
DROP TRIGGER vital_signs_observations ON vital_signs;
CREATE TRIGGER vital_signs_observations AFTER INSERT OR UPDATE ON vital_signs
    FOR EACH ROW WHEN (NOT (COALESCE(current_setting('expediente.fhir_vitals', true), '') = 'on'
                            OR CAST(NEW.id AS text) = ANY (string_to_array(COALESCE(current_setting('expediente.write_guard', true), ''), ','))))
    EXECUTE FUNCTION vital_signs_observations();

-- A transaction that creates a DiagnosticReport and its result Observations inserts the
-- results already linked to the report, whose row comes after them; it defers this foreign
-- key to its commit (SET CONSTRAINTS). Every other write checks it at once, as before.
ALTER TABLE medical_test_results
    ALTER CONSTRAINT medical_test_results_medical_test_id_fkey DEFERRABLE INITIALLY IMMEDIATE;
