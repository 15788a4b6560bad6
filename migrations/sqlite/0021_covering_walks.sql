-- A search by an Observation code and value walks the code's rows in row id order and tests
-- each row's value, then reads the rows whose value matches from the index of codes and values
-- (src/mapping/search/walk.rs). Each row read there was a random read of a table row (a result
-- for its code system and value; a vital-sign Observation for its vital-sign row, that row by
-- its id for the value); at 10,000 patients, 672 rows of a code took 4-6 ms. These indexes
-- carry what those reads test, so the walk and the narrow list are read from indexes alone.
DROP INDEX medical_test_results_code_idx;
CREATE INDEX medical_test_results_code_idx ON medical_test_results (code, id, code_system, value_quantity);
DROP INDEX medical_test_results_value_quantity_idx;
CREATE INDEX medical_test_results_value_quantity_idx ON medical_test_results (code, CAST(value_quantity AS REAL), code_system, value_quantity, id);
DROP INDEX vital_sign_observations_measurement_idx;
CREATE INDEX vital_sign_observations_measurement_idx ON vital_sign_observations (measurement, id, vital_sign_id);
CREATE INDEX vital_sign_observations_vital_sign_idx ON vital_sign_observations (vital_sign_id, measurement, id);
CREATE INDEX vital_signs_values_idx ON vital_signs (id, heart_rate, respiratory_rate, body_temperature, oxygen_saturation, body_weight, body_height, bmi, head_circumference);
DROP INDEX vital_signs_systolic_bp_value_idx;
CREATE INDEX vital_signs_systolic_bp_value_idx ON vital_signs (CAST(systolic_bp AS REAL), systolic_bp, id) WHERE systolic_bp IS NOT NULL;
DROP INDEX vital_signs_diastolic_bp_value_idx;
CREATE INDEX vital_signs_diastolic_bp_value_idx ON vital_signs (CAST(diastolic_bp AS REAL), diastolic_bp, id) WHERE diastolic_bp IS NOT NULL;
DROP INDEX vital_signs_heart_rate_value_idx;
CREATE INDEX vital_signs_heart_rate_value_idx ON vital_signs (CAST(heart_rate AS REAL), heart_rate, id) WHERE heart_rate IS NOT NULL;
DROP INDEX vital_signs_respiratory_rate_value_idx;
CREATE INDEX vital_signs_respiratory_rate_value_idx ON vital_signs (CAST(respiratory_rate AS REAL), respiratory_rate, id) WHERE respiratory_rate IS NOT NULL;
DROP INDEX vital_signs_body_temperature_value_idx;
CREATE INDEX vital_signs_body_temperature_value_idx ON vital_signs (CAST(body_temperature AS REAL), body_temperature, id) WHERE body_temperature IS NOT NULL;
DROP INDEX vital_signs_oxygen_saturation_value_idx;
CREATE INDEX vital_signs_oxygen_saturation_value_idx ON vital_signs (CAST(oxygen_saturation AS REAL), oxygen_saturation, id) WHERE oxygen_saturation IS NOT NULL;
DROP INDEX vital_signs_body_weight_value_idx;
CREATE INDEX vital_signs_body_weight_value_idx ON vital_signs (CAST(body_weight AS REAL), body_weight, id) WHERE body_weight IS NOT NULL;
DROP INDEX vital_signs_body_height_value_idx;
CREATE INDEX vital_signs_body_height_value_idx ON vital_signs (CAST(body_height AS REAL), body_height, id) WHERE body_height IS NOT NULL;
DROP INDEX vital_signs_bmi_value_idx;
CREATE INDEX vital_signs_bmi_value_idx ON vital_signs (CAST(bmi AS REAL), bmi, id) WHERE bmi IS NOT NULL;
DROP INDEX vital_signs_head_circumference_value_idx;
CREATE INDEX vital_signs_head_circumference_value_idx ON vital_signs (CAST(head_circumference AS REAL), head_circumference, id) WHERE head_circumference IS NOT NULL;
