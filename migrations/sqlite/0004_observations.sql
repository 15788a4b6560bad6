-- Observations of the vital signs. Each filled measurement of a vital_signs row is one FHIR
-- Observation; vital_sign_observations gives each its identity: a row id, a logical id (chosen by
-- the client, or derived as '<vital_signs.id>.<measurement>'), its own version, soft delete and
-- fhir_extra. The values stay in vital_signs. Triggers keep this table in step with direct SQL
-- writes to vital_signs: a measurement filled in gets its Observation, a changed one (or a change
-- of the shared patient, consultation, performer, time or status) makes a new version, and one
-- set to NULL is deleted. FHIR writes mark the vital_signs row in fhir_write_guard and keep the
-- table themselves. The measurement keys, LOINC codes and units are data: mappings/vital-signs.json,
-- mirrored into vital_sign_codes at startup.
--
-- The view observations is every Observation, from both tables, with the columns search needs.
--
-- medical_test_results: a result need not have a patient (an Observation's subject is optional),
-- and a code may be text only (code_text).

CREATE TABLE medical_test_results_new (
    id                  TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    fhir_id             TEXT NOT NULL UNIQUE CHECK (length(fhir_id) BETWEEN 1 AND 64 AND fhir_id NOT GLOB '*[^A-Za-z0-9.-]*'),
    medical_test_id     TEXT REFERENCES medical_tests (id),
    patient_id          TEXT REFERENCES patients (id),
    consultation_id     TEXT REFERENCES consultations (id),
    status              TEXT NOT NULL DEFAULT 'final' CHECK (status IN ('registered', 'preliminary', 'final', 'amended', 'corrected', 'cancelled', 'entered-in-error', 'unknown')),
    category_code       TEXT,
    code                TEXT,
    code_system         TEXT,
    code_display        TEXT,
    code_text           TEXT,
    value_type          TEXT CHECK (value_type IN ('quantity', 'string', 'codeable-concept', 'boolean', 'integer', 'range', 'ratio', 'sampled-data', 'time', 'date-time', 'period')),
    value_quantity      TEXT CHECK (value_quantity IS NULL OR (value_quantity NOT GLOB '*[^0-9.eE+-]*' AND (value_quantity GLOB '[0-9]*' OR value_quantity GLOB '-[0-9]*') AND value_quantity GLOB '*[0-9]' AND value_quantity NOT GLOB '*.*.*' AND value_quantity NOT GLOB '*[eE]*[eE]*' AND value_quantity NOT GLOB '*[eE]*.*' AND value_quantity NOT GLOB '*.[^0-9]*' AND value_quantity NOT GLOB '*[^eE][+-]*' AND value_quantity NOT GLOB '0[0-9]*' AND value_quantity NOT GLOB '-0[0-9]*')),
    value_unit          TEXT,
    value_unit_system   TEXT,
    value_code          TEXT,
    value_string        TEXT,
    value_boolean       INTEGER CHECK (value_boolean IN (0, 1)),
    value_integer       INTEGER CHECK (value_integer IS NULL OR typeof(value_integer) = 'integer'),
    value_json          TEXT CHECK (value_json IS NULL OR json_valid(value_json)),
    reference_low       TEXT CHECK (reference_low IS NULL OR (reference_low NOT GLOB '*[^0-9.eE+-]*' AND (reference_low GLOB '[0-9]*' OR reference_low GLOB '-[0-9]*') AND reference_low GLOB '*[0-9]' AND reference_low NOT GLOB '*.*.*' AND reference_low NOT GLOB '*[eE]*[eE]*' AND reference_low NOT GLOB '*[eE]*.*' AND reference_low NOT GLOB '*.[^0-9]*' AND reference_low NOT GLOB '*[^eE][+-]*' AND reference_low NOT GLOB '0[0-9]*' AND reference_low NOT GLOB '-0[0-9]*')),
    reference_high      TEXT CHECK (reference_high IS NULL OR (reference_high NOT GLOB '*[^0-9.eE+-]*' AND (reference_high GLOB '[0-9]*' OR reference_high GLOB '-[0-9]*') AND reference_high GLOB '*[0-9]' AND reference_high NOT GLOB '*.*.*' AND reference_high NOT GLOB '*[eE]*[eE]*' AND reference_high NOT GLOB '*[eE]*.*' AND reference_high NOT GLOB '*.[^0-9]*' AND reference_high NOT GLOB '*[^eE][+-]*' AND reference_high NOT GLOB '0[0-9]*' AND reference_high NOT GLOB '-0[0-9]*')),
    interpretation_code TEXT,
    effective_at        TEXT,
    effective_end       TEXT,
    issued_at           TEXT,
    performer_id        TEXT REFERENCES users (id),
    version_id          INTEGER NOT NULL DEFAULT 1,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at          TEXT,
    fhir_extra          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra)),
    CHECK (code IS NOT NULL OR code_display IS NOT NULL OR code_text IS NOT NULL),
    CHECK (reference_low IS NULL OR reference_high IS NULL OR CAST(reference_low AS REAL) <= CAST(reference_high AS REAL)),
    CHECK (effective_end IS NULL OR effective_at IS NULL OR julianday(effective_end) >= julianday(effective_at))
);
INSERT INTO medical_test_results_new (id, fhir_id, medical_test_id, patient_id, consultation_id, status, category_code, code, code_system, code_display, value_type, value_quantity, value_unit, value_unit_system, value_code, value_string, value_boolean, value_integer, value_json, reference_low, reference_high, interpretation_code, effective_at, effective_end, issued_at, performer_id, version_id, created_at, updated_at, deleted_at, fhir_extra) SELECT id, fhir_id, medical_test_id, patient_id, consultation_id, status, category_code, code, code_system, code_display, value_type, value_quantity, value_unit, value_unit_system, value_code, value_string, value_boolean, value_integer, value_json, reference_low, reference_high, interpretation_code, effective_at, effective_end, issued_at, performer_id, version_id, created_at, updated_at, deleted_at, fhir_extra FROM medical_test_results;
DROP TABLE medical_test_results;
-- The triggers of custom_field_values name medical_test_results; the legacy rename leaves them be.
PRAGMA legacy_alter_table = ON;
ALTER TABLE medical_test_results_new RENAME TO medical_test_results;
PRAGMA legacy_alter_table = OFF;
CREATE TRIGGER medical_test_results_touch AFTER UPDATE ON medical_test_results FOR EACH ROW
BEGIN
    UPDATE medical_test_results SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
CREATE INDEX medical_test_results_patient_idx ON medical_test_results (patient_id, effective_at);
CREATE INDEX medical_test_results_medical_test_idx ON medical_test_results (medical_test_id);
CREATE INDEX medical_test_results_consultation_idx ON medical_test_results (consultation_id);
CREATE INDEX medical_test_results_performer_idx ON medical_test_results (performer_id);
CREATE INDEX medical_test_results_status_idx ON medical_test_results (status);
CREATE INDEX medical_test_results_category_idx ON medical_test_results (category_code);
CREATE INDEX medical_test_results_code_idx ON medical_test_results (code, code_system);
CREATE INDEX medical_test_results_effective_idx ON medical_test_results (effective_at, effective_end);
CREATE INDEX medical_test_results_value_quantity_idx ON medical_test_results (code, CAST(value_quantity AS REAL));
CREATE INDEX medical_test_results_value_code_idx ON medical_test_results (value_code);
CREATE INDEX medical_test_results_updated_at_idx ON medical_test_results (updated_at);
CREATE INDEX medical_test_results_fhir_id_idx ON medical_test_results (fhir_id, id);
ALTER TABLE vital_signs DROP COLUMN fhir_ids;

CREATE TABLE vital_sign_observations (
    id            TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    vital_sign_id TEXT NOT NULL REFERENCES vital_signs (id),
    measurement   TEXT NOT NULL CHECK (measurement IN ('blood-pressure', 'heart-rate', 'respiratory-rate', 'body-temperature', 'oxygen-saturation', 'body-weight', 'body-height', 'bmi', 'head-circumference')),
    fhir_id       TEXT NOT NULL UNIQUE CHECK (length(fhir_id) BETWEEN 1 AND 64 AND fhir_id NOT GLOB '*[^A-Za-z0-9.-]*'),
    version_id    INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at    TEXT,
    fhir_extra    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra)),
    UNIQUE (vital_sign_id, measurement)
);
CREATE TRIGGER vital_sign_observations_touch AFTER UPDATE ON vital_sign_observations FOR EACH ROW
BEGIN
    UPDATE vital_sign_observations SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
CREATE INDEX vital_sign_observations_updated_at_idx ON vital_sign_observations (updated_at);

CREATE TABLE vital_sign_codes (
    measurement TEXT NOT NULL,
    part        TEXT NOT NULL CHECK (part IN ('code', 'component')),
    column_name TEXT,
    system      TEXT NOT NULL,
    code        TEXT NOT NULL,
    display     TEXT,
    unit        TEXT,
    ucum        TEXT,
    PRIMARY KEY (measurement, system, code)
);

CREATE TRIGGER vital_signs_observations_insert AFTER INSERT ON vital_signs FOR EACH ROW
WHEN NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = NEW.id)
BEGIN
    INSERT INTO vital_sign_observations (vital_sign_id, measurement, fhir_id)
    SELECT NEW.id, m.measurement, NEW.id || '.' || m.measurement
      FROM (SELECT 'blood-pressure' AS measurement, COALESCE(NEW.systolic_bp, NEW.diastolic_bp) AS val
        UNION ALL SELECT 'heart-rate', NEW.heart_rate
        UNION ALL SELECT 'respiratory-rate', NEW.respiratory_rate
        UNION ALL SELECT 'body-temperature', NEW.body_temperature
        UNION ALL SELECT 'oxygen-saturation', NEW.oxygen_saturation
        UNION ALL SELECT 'body-weight', NEW.body_weight
        UNION ALL SELECT 'body-height', NEW.body_height
        UNION ALL SELECT 'bmi', NEW.bmi
        UNION ALL SELECT 'head-circumference', NEW.head_circumference) m
     WHERE m.val IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM vital_sign_observations o WHERE o.vital_sign_id = NEW.id AND o.measurement = m.measurement);
END;
CREATE TRIGGER vital_signs_observations_update AFTER UPDATE ON vital_signs FOR EACH ROW
WHEN NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = NEW.id)
BEGIN
    UPDATE vital_sign_observations
       SET deleted_at = CASE WHEN (CASE measurement WHEN 'blood-pressure' THEN COALESCE(NEW.systolic_bp, NEW.diastolic_bp) WHEN 'heart-rate' THEN NEW.heart_rate WHEN 'respiratory-rate' THEN NEW.respiratory_rate WHEN 'body-temperature' THEN NEW.body_temperature WHEN 'oxygen-saturation' THEN NEW.oxygen_saturation WHEN 'body-weight' THEN NEW.body_weight WHEN 'body-height' THEN NEW.body_height WHEN 'bmi' THEN NEW.bmi WHEN 'head-circumference' THEN NEW.head_circumference END) IS NULL THEN COALESCE(deleted_at, (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))) ELSE NULL END
     WHERE vital_sign_id = NEW.id
       AND ((CASE measurement WHEN 'blood-pressure' THEN COALESCE(NEW.systolic_bp, NEW.diastolic_bp) WHEN 'heart-rate' THEN NEW.heart_rate WHEN 'respiratory-rate' THEN NEW.respiratory_rate WHEN 'body-temperature' THEN NEW.body_temperature WHEN 'oxygen-saturation' THEN NEW.oxygen_saturation WHEN 'body-weight' THEN NEW.body_weight WHEN 'body-height' THEN NEW.body_height WHEN 'bmi' THEN NEW.bmi WHEN 'head-circumference' THEN NEW.head_circumference END) IS NOT NULL OR deleted_at IS NULL)
       AND ((CASE measurement WHEN 'blood-pressure' THEN (NEW.systolic_bp IS NOT OLD.systolic_bp OR NEW.diastolic_bp IS NOT OLD.diastolic_bp) WHEN 'heart-rate' THEN (NEW.heart_rate IS NOT OLD.heart_rate) WHEN 'respiratory-rate' THEN (NEW.respiratory_rate IS NOT OLD.respiratory_rate) WHEN 'body-temperature' THEN (NEW.body_temperature IS NOT OLD.body_temperature) WHEN 'oxygen-saturation' THEN (NEW.oxygen_saturation IS NOT OLD.oxygen_saturation) WHEN 'body-weight' THEN (NEW.body_weight IS NOT OLD.body_weight) WHEN 'body-height' THEN (NEW.body_height IS NOT OLD.body_height) WHEN 'bmi' THEN (NEW.bmi IS NOT OLD.bmi) WHEN 'head-circumference' THEN (NEW.head_circumference IS NOT OLD.head_circumference) END) OR NEW.patient_id IS NOT OLD.patient_id OR NEW.consultation_id IS NOT OLD.consultation_id OR NEW.performer_id IS NOT OLD.performer_id OR NEW.measured_at IS NOT OLD.measured_at OR NEW.status IS NOT OLD.status);
    INSERT INTO vital_sign_observations (vital_sign_id, measurement, fhir_id)
    SELECT NEW.id, m.measurement, NEW.id || '.' || m.measurement
      FROM (SELECT 'blood-pressure' AS measurement, COALESCE(NEW.systolic_bp, NEW.diastolic_bp) AS val
        UNION ALL SELECT 'heart-rate', NEW.heart_rate
        UNION ALL SELECT 'respiratory-rate', NEW.respiratory_rate
        UNION ALL SELECT 'body-temperature', NEW.body_temperature
        UNION ALL SELECT 'oxygen-saturation', NEW.oxygen_saturation
        UNION ALL SELECT 'body-weight', NEW.body_weight
        UNION ALL SELECT 'body-height', NEW.body_height
        UNION ALL SELECT 'bmi', NEW.bmi
        UNION ALL SELECT 'head-circumference', NEW.head_circumference) m
     WHERE m.val IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM vital_sign_observations o WHERE o.vital_sign_id = NEW.id AND o.measurement = m.measurement);
END;

CREATE VIEW observations AS
SELECT r.id, r.fhir_id, r.version_id, r.updated_at, r.deleted_at, 'result' AS source, NULL AS measurement,
       r.patient_id, r.consultation_id, r.performer_id, r.status, r.category_code, r.code, r.code_system,
       r.effective_at, COALESCE(r.effective_end, r.effective_at) AS effective_end, r.issued_at,
       r.value_quantity, r.value_unit, r.value_unit_system
  FROM medical_test_results r
UNION ALL
SELECT o.id, o.fhir_id, o.version_id, o.updated_at, COALESCE(o.deleted_at, v.deleted_at), 'vital', o.measurement,
       v.patient_id, v.consultation_id, v.performer_id, v.status, 'vital-signs', c.code, c.system,
       v.measured_at, v.measured_at, NULL,
       CASE o.measurement WHEN 'heart-rate' THEN v.heart_rate WHEN 'respiratory-rate' THEN v.respiratory_rate WHEN 'body-temperature' THEN v.body_temperature WHEN 'oxygen-saturation' THEN v.oxygen_saturation WHEN 'body-weight' THEN v.body_weight WHEN 'body-height' THEN v.body_height WHEN 'bmi' THEN v.bmi WHEN 'head-circumference' THEN v.head_circumference END, c.ucum, 'http://unitsofmeasure.org'
  FROM vital_sign_observations o
  JOIN vital_signs v ON v.id = o.vital_sign_id
  LEFT JOIN vital_sign_codes c ON c.measurement = o.measurement AND c.part = 'code';

