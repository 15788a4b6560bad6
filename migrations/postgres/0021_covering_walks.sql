-- A search by an Observation code and value walks the code's rows in row id order and tests
-- each row's value, then reads the rows whose value matches from the index of codes and values
-- (src/mapping/search/walk.rs). Each row read there was a read of a table row (a result for its
-- code system and value; a vital-sign Observation for its vital-sign row, that row by its id for
-- the value). These indexes carry what those reads test, so that once the visibility map is set
-- (VACUUM, or autovacuum) the walk and the narrow list are index-only scans.
DROP INDEX medical_test_results_code_id_idx;
CREATE INDEX medical_test_results_code_id_idx ON medical_test_results (code, id) INCLUDE (code_system, value_quantity) WHERE length(code) <= 250;
DROP INDEX medical_test_results_value_quantity_idx;
CREATE INDEX medical_test_results_value_quantity_idx ON medical_test_results (code, value_quantity) INCLUDE (code_system, id) WHERE length(code) <= 250;
DROP INDEX vital_sign_observations_measurement_idx;
CREATE INDEX vital_sign_observations_measurement_idx ON vital_sign_observations (measurement, id) INCLUDE (vital_sign_id);
CREATE INDEX vital_sign_observations_vital_sign_idx ON vital_sign_observations (vital_sign_id, measurement) INCLUDE (id);
CREATE INDEX vital_signs_values_idx ON vital_signs (id) INCLUDE (heart_rate, respiratory_rate, body_temperature, oxygen_saturation, body_weight, body_height, bmi, head_circumference);
DROP INDEX vital_signs_systolic_bp_value_idx;
CREATE INDEX vital_signs_systolic_bp_value_idx ON vital_signs (systolic_bp) INCLUDE (id) WHERE systolic_bp IS NOT NULL;
DROP INDEX vital_signs_diastolic_bp_value_idx;
CREATE INDEX vital_signs_diastolic_bp_value_idx ON vital_signs (diastolic_bp) INCLUDE (id) WHERE diastolic_bp IS NOT NULL;
DROP INDEX vital_signs_heart_rate_value_idx;
CREATE INDEX vital_signs_heart_rate_value_idx ON vital_signs (heart_rate) INCLUDE (id) WHERE heart_rate IS NOT NULL;
DROP INDEX vital_signs_respiratory_rate_value_idx;
CREATE INDEX vital_signs_respiratory_rate_value_idx ON vital_signs (respiratory_rate) INCLUDE (id) WHERE respiratory_rate IS NOT NULL;
DROP INDEX vital_signs_body_temperature_value_idx;
CREATE INDEX vital_signs_body_temperature_value_idx ON vital_signs (body_temperature) INCLUDE (id) WHERE body_temperature IS NOT NULL;
DROP INDEX vital_signs_oxygen_saturation_value_idx;
CREATE INDEX vital_signs_oxygen_saturation_value_idx ON vital_signs (oxygen_saturation) INCLUDE (id) WHERE oxygen_saturation IS NOT NULL;
DROP INDEX vital_signs_body_weight_value_idx;
CREATE INDEX vital_signs_body_weight_value_idx ON vital_signs (body_weight) INCLUDE (id) WHERE body_weight IS NOT NULL;
DROP INDEX vital_signs_body_height_value_idx;
CREATE INDEX vital_signs_body_height_value_idx ON vital_signs (body_height) INCLUDE (id) WHERE body_height IS NOT NULL;
DROP INDEX vital_signs_bmi_value_idx;
CREATE INDEX vital_signs_bmi_value_idx ON vital_signs (bmi) INCLUDE (id) WHERE bmi IS NOT NULL;
DROP INDEX vital_signs_head_circumference_value_idx;
CREATE INDEX vital_signs_head_circumference_value_idx ON vital_signs (head_circumference) INCLUDE (id) WHERE head_circumference IS NOT NULL;
