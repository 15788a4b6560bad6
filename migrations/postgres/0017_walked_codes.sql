-- A search by an Observation code (and value) reads its first page by walking the results of
-- that code, and the vital signs of that measurement, in row id order (the page's order) and
-- stopping at the page's end: the indexes of codes and of measurements end with the row id.
-- Codes up to 250 characters (see migration 12); a longer code is still found by the hash index.
CREATE INDEX medical_test_results_code_id_idx ON medical_test_results (code, id) WHERE length(code) <= 250;
DROP INDEX vital_sign_observations_measurement_idx;
CREATE INDEX vital_sign_observations_measurement_idx ON vital_sign_observations (measurement, id);
