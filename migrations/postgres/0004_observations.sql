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
-- fhir_extra becomes json instead of jsonb on every table: json keeps the text a client sent
-- (a decimal written 1e-22 stays so), which jsonb would normalise.
--
-- medical_test_results: a result need not have a patient (an Observation's subject is optional),
-- and a code may be text only (code_text).

ALTER TABLE medical_test_results ALTER COLUMN patient_id DROP NOT NULL;
ALTER TABLE medical_test_results ADD COLUMN code_text text;
ALTER TABLE medical_test_results DROP CONSTRAINT medical_test_results_check;
ALTER TABLE medical_test_results ADD CONSTRAINT medical_test_results_code_check CHECK (code IS NOT NULL OR code_display IS NOT NULL OR code_text IS NOT NULL);
CREATE INDEX medical_test_results_fhir_id_idx ON medical_test_results (fhir_id, id);
ALTER TABLE vital_signs DROP COLUMN fhir_ids;

CREATE TABLE vital_sign_observations (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    vital_sign_id uuid NOT NULL REFERENCES vital_signs (id),
    measurement   text NOT NULL CHECK (measurement IN ('blood-pressure', 'heart-rate', 'respiratory-rate', 'body-temperature', 'oxygen-saturation', 'body-weight', 'body-height', 'bmi', 'head-circumference')),
    fhir_id       text NOT NULL UNIQUE CHECK (fhir_id ~ '^[A-Za-z0-9.-]{1,64}$'),
    version_id    integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at    timestamptz,
    fhir_extra    jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (vital_sign_id, measurement)
);
CREATE TRIGGER vital_sign_observations_touch BEFORE UPDATE ON vital_sign_observations FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX vital_sign_observations_updated_at_idx ON vital_sign_observations (updated_at);

CREATE TABLE vital_sign_codes (
    measurement text NOT NULL,
    part        text NOT NULL CHECK (part IN ('code', 'component')),
    column_name text,
    system      text NOT NULL,
    code        text NOT NULL,
    display     text,
    unit        text,
    ucum        text,
    PRIMARY KEY (measurement, system, code)
);

CREATE OR REPLACE FUNCTION vital_signs_observations() RETURNS trigger AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = NEW.id) THEN
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' THEN
        UPDATE vital_sign_observations o
           SET deleted_at = CASE WHEN x.val IS NULL THEN COALESCE(o.deleted_at, clock_timestamp()) ELSE NULL END
          FROM (VALUES
            ('blood-pressure', COALESCE(NEW.systolic_bp, NEW.diastolic_bp), (NEW.systolic_bp IS DISTINCT FROM OLD.systolic_bp OR NEW.diastolic_bp IS DISTINCT FROM OLD.diastolic_bp)),
            ('heart-rate', NEW.heart_rate, (NEW.heart_rate IS DISTINCT FROM OLD.heart_rate)),
            ('respiratory-rate', NEW.respiratory_rate, (NEW.respiratory_rate IS DISTINCT FROM OLD.respiratory_rate)),
            ('body-temperature', NEW.body_temperature, (NEW.body_temperature IS DISTINCT FROM OLD.body_temperature)),
            ('oxygen-saturation', NEW.oxygen_saturation, (NEW.oxygen_saturation IS DISTINCT FROM OLD.oxygen_saturation)),
            ('body-weight', NEW.body_weight, (NEW.body_weight IS DISTINCT FROM OLD.body_weight)),
            ('body-height', NEW.body_height, (NEW.body_height IS DISTINCT FROM OLD.body_height)),
            ('bmi', NEW.bmi, (NEW.bmi IS DISTINCT FROM OLD.bmi)),
            ('head-circumference', NEW.head_circumference, (NEW.head_circumference IS DISTINCT FROM OLD.head_circumference))
          ) x(measurement, val, changed)
         WHERE o.vital_sign_id = NEW.id
           AND o.measurement = x.measurement
           AND (x.val IS NOT NULL OR o.deleted_at IS NULL)
           AND (x.changed OR NEW.patient_id IS DISTINCT FROM OLD.patient_id OR NEW.consultation_id IS DISTINCT FROM OLD.consultation_id OR NEW.performer_id IS DISTINCT FROM OLD.performer_id OR NEW.measured_at IS DISTINCT FROM OLD.measured_at OR NEW.status IS DISTINCT FROM OLD.status);
    END IF;
    INSERT INTO vital_sign_observations (vital_sign_id, measurement, fhir_id)
    SELECT NEW.id, x.measurement, NEW.id::text || '.' || x.measurement
      FROM (VALUES
            ('blood-pressure', COALESCE(NEW.systolic_bp, NEW.diastolic_bp)),
            ('heart-rate', NEW.heart_rate),
            ('respiratory-rate', NEW.respiratory_rate),
            ('body-temperature', NEW.body_temperature),
            ('oxygen-saturation', NEW.oxygen_saturation),
            ('body-weight', NEW.body_weight),
            ('body-height', NEW.body_height),
            ('bmi', NEW.bmi),
            ('head-circumference', NEW.head_circumference)
      ) x(measurement, val)
     WHERE x.val IS NOT NULL
       AND NOT EXISTS (SELECT 1 FROM vital_sign_observations o WHERE o.vital_sign_id = NEW.id AND o.measurement = x.measurement);
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER vital_signs_observations AFTER INSERT OR UPDATE ON vital_signs FOR EACH ROW EXECUTE FUNCTION vital_signs_observations();

CREATE VIEW observations AS
SELECT r.id, r.fhir_id, r.version_id, r.updated_at, r.deleted_at, 'result' AS source, NULL::text AS measurement,
       r.patient_id, r.consultation_id, r.performer_id, r.status, r.category_code, r.code, r.code_system,
       r.effective_at, COALESCE(r.effective_end, r.effective_at) AS effective_end, r.issued_at,
       r.value_quantity, r.value_unit, r.value_unit_system
  FROM medical_test_results r
UNION ALL
SELECT o.id, o.fhir_id, o.version_id, o.updated_at, COALESCE(o.deleted_at, v.deleted_at), 'vital', o.measurement,
       v.patient_id, v.consultation_id, v.performer_id, v.status, 'vital-signs', c.code, c.system,
       v.measured_at, v.measured_at, NULL::timestamptz,
       CASE o.measurement WHEN 'heart-rate' THEN v.heart_rate WHEN 'respiratory-rate' THEN v.respiratory_rate WHEN 'body-temperature' THEN v.body_temperature WHEN 'oxygen-saturation' THEN v.oxygen_saturation WHEN 'body-weight' THEN v.body_weight WHEN 'body-height' THEN v.body_height WHEN 'bmi' THEN v.bmi WHEN 'head-circumference' THEN v.head_circumference END, c.ucum, 'http://unitsofmeasure.org'
  FROM vital_sign_observations o
  JOIN vital_signs v ON v.id = o.vital_sign_id
  LEFT JOIN vital_sign_codes c ON c.measurement = o.measurement AND c.part = 'code';


DO $$
DECLARE
    t text;
BEGIN
    FOR t IN SELECT table_name FROM information_schema.columns
              WHERE table_schema = current_schema() AND column_name = 'fhir_extra' AND data_type = 'jsonb'
    LOOP
        EXECUTE format('ALTER TABLE %I ALTER COLUMN fhir_extra DROP DEFAULT', t);
        EXECUTE format('ALTER TABLE %I ALTER COLUMN fhir_extra TYPE json USING fhir_extra::json', t);
        EXECUTE format('ALTER TABLE %I ALTER COLUMN fhir_extra SET DEFAULT ''{}''::json', t);
    END LOOP;
END;
$$;
