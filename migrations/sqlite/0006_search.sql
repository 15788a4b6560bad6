-- Quantity search index: one row per (resource, parameter, coding, value) for quantities that
-- have no column of their own (the components of an Observation kept in medical_test_results),
-- maintained by the mapping layer on every FHIR write. The composite parameters
-- component-code-value-quantity and combo-code-value-quantity read it.
CREATE TABLE search_quantities (
    resource_type TEXT NOT NULL,
    row_id        TEXT NOT NULL,
    param         TEXT NOT NULL,
    code_system   TEXT NOT NULL,
    code          TEXT NOT NULL,
    value         REAL NOT NULL,
    unit_system   TEXT,
    unit_code     TEXT
);
CREATE INDEX search_quantities_lookup_idx ON search_quantities (resource_type, param, code, value);
CREATE INDEX search_quantities_row_idx ON search_quantities (row_id);

-- The precision of a date or dateTime a FHIR client sent ('year', 'month' or 'day'; NULL for a
-- time to the second, and for what the clinic writes), so that a date search compares the whole
-- range the value stands for: an effectiveDateTime of 2023 is all of 2023. 'open' marks an
-- Observation effectivePeriod without an end, which reaches out for ever.
ALTER TABLE medical_test_results ADD COLUMN effective_precision TEXT;
ALTER TABLE medical_test_results ADD COLUMN effective_end_precision TEXT;
ALTER TABLE medical_tests ADD COLUMN effective_precision TEXT;
ALTER TABLE prescriptions ADD COLUMN authored_on_precision TEXT;
ALTER TABLE consultations ADD COLUMN period_start_precision TEXT;
ALTER TABLE consultations ADD COLUMN period_end_precision TEXT;
ALTER TABLE patient_allergies ADD COLUMN onset_precision TEXT;
ALTER TABLE patient_allergies ADD COLUMN recorded_date_precision TEXT;
ALTER TABLE vital_signs ADD COLUMN measured_at_precision TEXT;

DROP VIEW observations;
CREATE VIEW observations AS
SELECT r.id, r.fhir_id, r.version_id, r.updated_at, r.deleted_at, 'result' AS source, NULL AS measurement,
       r.patient_id, r.consultation_id, r.performer_id, r.status, r.category_code, r.code, r.code_system,
       r.effective_at, CASE WHEN r.effective_end_precision = 'open' THEN NULL ELSE COALESCE(r.effective_end, r.effective_at) END AS effective_end, r.issued_at,
       r.value_quantity, r.value_unit, r.value_unit_system,
       r.effective_precision, CASE WHEN r.effective_end IS NULL THEN r.effective_precision ELSE r.effective_end_precision END AS effective_end_precision
  FROM medical_test_results r
UNION ALL
SELECT o.id, o.fhir_id, o.version_id, o.updated_at, COALESCE(o.deleted_at, v.deleted_at), 'vital', o.measurement,
       v.patient_id, v.consultation_id, v.performer_id, v.status, 'vital-signs', c.code, c.system,
       v.measured_at, v.measured_at, NULL,
       CASE o.measurement WHEN 'heart-rate' THEN v.heart_rate WHEN 'respiratory-rate' THEN v.respiratory_rate WHEN 'body-temperature' THEN v.body_temperature WHEN 'oxygen-saturation' THEN v.oxygen_saturation WHEN 'body-weight' THEN v.body_weight WHEN 'body-height' THEN v.body_height WHEN 'bmi' THEN v.bmi WHEN 'head-circumference' THEN v.head_circumference END, c.ucum, 'http://unitsofmeasure.org',
       v.measured_at_precision, v.measured_at_precision
  FROM vital_sign_observations o
  JOIN vital_signs v ON v.id = o.vital_sign_id
  LEFT JOIN vital_sign_codes c ON c.measurement = o.measurement AND c.part = 'code';

-- A resource's index rows by parameter, for the index conditions evaluated row by row (and for
-- rewriting a resource's rows), in place of the index on row_id alone.
CREATE INDEX search_strings_row_param_idx ON search_strings (row_id, resource_type, param);
DROP INDEX search_strings_row_idx;

-- Vital-sign Observations by measurement, for code searches across patients.
CREATE INDEX vital_sign_observations_measurement_idx ON vital_sign_observations (measurement);

-- History order: versions written in the same millisecond come out in the order they were
-- written, by rowid (which grows with every insert; PostgreSQL has a seq column for this). An
-- index's entries end with the rowid, so this one is in (type, time, rowid) order.
CREATE INDEX resource_versions_type_time_seq_idx ON resource_versions (resource_type, last_updated);
