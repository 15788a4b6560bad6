-- A search by an Observation code (and value) reads its first page by walking the results of
-- that code, and the vital signs of that measurement, in row id order (the page's order) and
-- stopping at the page's end: the indexes of codes and of measurements end with the row id.
-- (A result's code system and value are tested on its row, which the walk reads anyway.)
DROP INDEX medical_test_results_code_idx;
CREATE INDEX medical_test_results_code_idx ON medical_test_results (code, id);
DROP INDEX vital_sign_observations_measurement_idx;
CREATE INDEX vital_sign_observations_measurement_idx ON vital_sign_observations (measurement, id);
