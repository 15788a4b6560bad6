-- A FHIR transaction that inserts new results already linked to their new report (the report's
-- row comes after them; see migration 10) says so once, in the transaction-local setting
-- expediente.fhir_results. touch_report has nothing to do for such a row: the report's row is
-- not there yet, or is the transaction's own (and a FHIR write records the report's version
-- itself). Skipping the call in the trigger's WHEN saves a PL/pgSQL call and an UPDATE per
-- result. Writes from elsewhere set nothing and touch the report as before.
DROP TRIGGER medical_test_results_report_insert ON medical_test_results;
CREATE TRIGGER medical_test_results_report_insert AFTER INSERT ON medical_test_results
    FOR EACH ROW WHEN (NEW.medical_test_id IS NOT NULL
                       AND COALESCE(current_setting('expediente.fhir_results', true), '') <> 'on')
    EXECUTE FUNCTION touch_report();
