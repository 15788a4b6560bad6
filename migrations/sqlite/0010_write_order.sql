-- PostgreSQL's migration 10 lets a FHIR transaction say once that it keeps the observation
-- rows of its vital_signs rows, and lets it defer the check of medical_test_results'
-- medical_test_id foreign key. SQLite keeps both as they are (its writes mark each row in
-- fhir_write_guard, and its foreign keys cannot be deferred once a table exists); this
-- migration keeps the two engines' migration numbers in step.
SELECT 1;
