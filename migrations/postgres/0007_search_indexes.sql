-- Search indexes. Quantity search on vital signs (Observation?code-value-quantity=8867-4$gt100 and
-- the component forms for blood pressure): one partial index per measurement column, over the rows
-- that hold that measurement, ordered by value. Without them such a search reads every vital_signs
-- row.
CREATE INDEX vital_signs_systolic_bp_value_idx ON vital_signs (systolic_bp) WHERE systolic_bp IS NOT NULL;
CREATE INDEX vital_signs_diastolic_bp_value_idx ON vital_signs (diastolic_bp) WHERE diastolic_bp IS NOT NULL;
CREATE INDEX vital_signs_heart_rate_value_idx ON vital_signs (heart_rate) WHERE heart_rate IS NOT NULL;
CREATE INDEX vital_signs_respiratory_rate_value_idx ON vital_signs (respiratory_rate) WHERE respiratory_rate IS NOT NULL;
CREATE INDEX vital_signs_body_temperature_value_idx ON vital_signs (body_temperature) WHERE body_temperature IS NOT NULL;
CREATE INDEX vital_signs_oxygen_saturation_value_idx ON vital_signs (oxygen_saturation) WHERE oxygen_saturation IS NOT NULL;
CREATE INDEX vital_signs_body_weight_value_idx ON vital_signs (body_weight) WHERE body_weight IS NOT NULL;
CREATE INDEX vital_signs_body_height_value_idx ON vital_signs (body_height) WHERE body_height IS NOT NULL;
CREATE INDEX vital_signs_bmi_value_idx ON vital_signs (bmi) WHERE bmi IS NOT NULL;
CREATE INDEX vital_signs_head_circumference_value_idx ON vital_signs (head_circumference) WHERE head_circumference IS NOT NULL;

-- The Observation code index (search_strings, param 'code') keeps only the codings that the row's
-- own columns do not hold: the first coding of a result is its code and code_system columns, a
-- vital sign's LOINC code is its measurement. Searches find those through the columns, so the
-- repeated rows only made every code search read them twice.
DELETE FROM search_strings
 WHERE resource_type = 'Observation'
   AND param = 'code'
   AND EXISTS (SELECT 1 FROM observations o
                WHERE o.id = search_strings.row_id
                  AND o.code = search_strings.exact
                  AND COALESCE(o.code_system, '') = search_strings.value);

-- fhir_write_guard was a table that every FHIR write added a row to and removed it from. On
-- PostgreSQL each write left a dead row behind, and without a vacuum between them (autovacuum may
-- be off, or behind a bulk load) the triggers' lookups walked millions of dead index entries:
-- linking a report's results slowed to seconds per write. The guard is now a transaction-local
-- setting (expediente.write_guard, the guarded row ids separated by commas) that ends with the
-- transaction, and fhir_write_guard the view the triggers already read.
DROP TABLE fhir_write_guard;
CREATE VIEW fhir_write_guard AS
SELECT CAST(x AS uuid) AS row_id
  FROM unnest(string_to_array(current_setting('expediente.write_guard', true), ',')) AS x
 WHERE x <> '';
