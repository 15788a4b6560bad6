-- expediente clinical schema (PostgreSQL dialect): the ExpedienteDLM clinic tables that the
-- FHIR layer serves as Condition, AllergyIntolerance, Encounter, Observation, MedicationRequest
-- and DiagnosticReport, plus the catalogs, attachments and custom fields they use.
-- Conventions are those of 0001_foundation.sql (id, fhir_id, version_id, created_at, updated_at,
-- deleted_at, fhir_extra, <table>_touch trigger). In addition:
--   * decimals are numeric (keeps the scale, so 37.50 stays 37.50 as FHIR requires); every numeric
--     CHECK rejects NaN and +/-Infinity (scale() is NULL for them), which JSON cannot carry;
--   * coded columns whose FHIR binding is required carry a CHECK on the value set; columns with
--     extensible/example bindings (categories, type, reason, route, interpretation) are free text;
--   * foreign keys use the default NO ACTION: clinical rows are soft-deleted (deleted_at), so a
--     hard delete of a patient, user or encounter that still has clinical rows is refused;
--   * a Period (start/end) must not end before it starts (FHIR per-1).

-- Condition.
CREATE TABLE medical_histories (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    fhir_id             text NOT NULL UNIQUE CHECK (fhir_id ~ '^[A-Za-z0-9.-]{1,64}$'),
    patient_id          uuid NOT NULL REFERENCES patients (id),
    condition_code      text,
    condition_system    text,
    condition_display   text,
    clinical_status     text CHECK (clinical_status IN ('active', 'recurrence', 'relapse', 'inactive', 'remission', 'resolved')),
    verification_status text CHECK (verification_status IN ('unconfirmed', 'provisional', 'differential', 'confirmed', 'refuted', 'entered-in-error')),
    category            text,
    onset_date          timestamptz,
    abatement_date      timestamptz,
    notes               text,
    recorded_by         uuid REFERENCES users (id),
    version_id          integer NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at          timestamptz,
    fhir_extra          jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TRIGGER medical_histories_touch BEFORE UPDATE ON medical_histories FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX medical_histories_patient_idx ON medical_histories (patient_id, onset_date);
CREATE INDEX medical_histories_code_idx ON medical_histories (condition_code, condition_system);
CREATE INDEX medical_histories_category_idx ON medical_histories (category);
CREATE INDEX medical_histories_clinical_status_idx ON medical_histories (clinical_status);
CREATE INDEX medical_histories_verification_status_idx ON medical_histories (verification_status);
CREATE INDEX medical_histories_onset_idx ON medical_histories (onset_date);
CREATE INDEX medical_histories_abatement_idx ON medical_histories (abatement_date);
CREATE INDEX medical_histories_recorded_by_idx ON medical_histories (recorded_by);
CREATE INDEX medical_histories_updated_at_idx ON medical_histories (updated_at);

-- Allergen catalog (AllergyIntolerance.code and .category come from here; not a resource itself).
-- system may be NULL for a clinic-local code; the partial index keeps such codes unique too.
CREATE TABLE allergies (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code        text NOT NULL,
    system      text,
    display     text,
    category    text CHECK (category IN ('food', 'medication', 'environment', 'biologic')),
    version_id  integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at  timestamptz,
    fhir_extra  jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (system, code)
);
CREATE TRIGGER allergies_touch BEFORE UPDATE ON allergies FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE UNIQUE INDEX allergies_local_code_idx ON allergies (code) WHERE system IS NULL;
CREATE INDEX allergies_category_idx ON allergies (category);

-- AllergyIntolerance. allergy_id is nullable: a text-only code (no catalog entry) lives in fhir_extra.
CREATE TABLE patient_allergies (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    fhir_id             text NOT NULL UNIQUE CHECK (fhir_id ~ '^[A-Za-z0-9.-]{1,64}$'),
    patient_id          uuid NOT NULL REFERENCES patients (id),
    allergy_id          uuid REFERENCES allergies (id),
    clinical_status     text CHECK (clinical_status IN ('active', 'inactive', 'resolved')),
    verification_status text CHECK (verification_status IN ('unconfirmed', 'presumed', 'confirmed', 'refuted', 'entered-in-error')),
    type                text CHECK (type IN ('allergy', 'intolerance')),
    criticality         text CHECK (criticality IN ('low', 'high', 'unable-to-assess')),
    severity            text CHECK (severity IN ('mild', 'moderate', 'severe')),
    reaction            text,
    onset               timestamptz,
    recorded_date       timestamptz,
    recorder_id         uuid REFERENCES users (id),
    notes               text,
    version_id          integer NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at          timestamptz,
    fhir_extra          jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TRIGGER patient_allergies_touch BEFORE UPDATE ON patient_allergies FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX patient_allergies_patient_idx ON patient_allergies (patient_id, recorded_date);
CREATE INDEX patient_allergies_allergy_idx ON patient_allergies (allergy_id);
CREATE INDEX patient_allergies_clinical_status_idx ON patient_allergies (clinical_status);
CREATE INDEX patient_allergies_verification_status_idx ON patient_allergies (verification_status);
CREATE INDEX patient_allergies_type_idx ON patient_allergies (type);
CREATE INDEX patient_allergies_criticality_idx ON patient_allergies (criticality);
CREATE INDEX patient_allergies_onset_idx ON patient_allergies (onset);
CREATE INDEX patient_allergies_recorded_date_idx ON patient_allergies (recorded_date);
CREATE INDEX patient_allergies_recorder_idx ON patient_allergies (recorder_id);
CREATE INDEX patient_allergies_updated_at_idx ON patient_allergies (updated_at);

-- Encounter. class_code is the v3 ActEncounterCode (Encounter.class is 1..1; outpatient clinic
-- default AMB).
CREATE TABLE consultations (
    id               uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    fhir_id          text NOT NULL UNIQUE CHECK (fhir_id ~ '^[A-Za-z0-9.-]{1,64}$'),
    patient_id       uuid NOT NULL REFERENCES patients (id),
    doctor_id        uuid REFERENCES users (id),
    specialty_id     uuid REFERENCES specialties (id),
    status           text NOT NULL DEFAULT 'in-progress' CHECK (status IN ('planned', 'arrived', 'triaged', 'in-progress', 'onleave', 'finished', 'cancelled', 'entered-in-error', 'unknown')),
    class_code       text NOT NULL DEFAULT 'AMB' CHECK (class_code IN ('AMB', 'EMER', 'FLD', 'HH', 'IMP', 'ACUTE', 'NONAC', 'OBSENC', 'PRENC', 'SS', 'VR')),
    type_code        text,
    type_system      text,
    type_display     text,
    period_start     timestamptz,
    period_end       timestamptz,
    reason_code      text,
    reason_system    text,
    reason_display   text,
    chief_complaint  text,
    diagnosis        text,
    treatment_plan   text,
    notes            text,
    version_id       integer NOT NULL DEFAULT 1,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at       timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at       timestamptz,
    fhir_extra       jsonb NOT NULL DEFAULT '{}'::jsonb,
    CHECK (period_end IS NULL OR period_start IS NULL OR period_end >= period_start)
);
CREATE TRIGGER consultations_touch BEFORE UPDATE ON consultations FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX consultations_patient_idx ON consultations (patient_id, period_start);
CREATE INDEX consultations_doctor_idx ON consultations (doctor_id, period_start);
CREATE INDEX consultations_specialty_idx ON consultations (specialty_id);
CREATE INDEX consultations_status_idx ON consultations (status);
CREATE INDEX consultations_class_idx ON consultations (class_code);
CREATE INDEX consultations_type_idx ON consultations (type_code, type_system);
CREATE INDEX consultations_reason_idx ON consultations (reason_code, reason_system);
CREATE INDEX consultations_period_idx ON consultations (period_start, period_end);
CREATE INDEX consultations_updated_at_idx ON consultations (updated_at);

-- Vital signs: one wide row per measurement session, served as one Observation (category
-- vital-signs) per non-NULL measurement. The Observation id is derived from id + measurement
-- unless fhir_ids holds a client-chosen id for it ({"heart_rate": "hr-1", ...}); the FHIR layer
-- keeps those ids unique across vital_signs and medical_test_results.
-- Units are fixed (the FHIR layer converts): blood pressure mm[Hg], heart and respiratory rate
-- /min, body_temperature Cel, oxygen_saturation %, body_weight kg, body_height and
-- head_circumference cm, bmi kg/m2.
CREATE TABLE vital_signs (
    id                 uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    fhir_ids           jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(fhir_ids) = 'object'),
    patient_id         uuid NOT NULL REFERENCES patients (id),
    consultation_id    uuid REFERENCES consultations (id),
    performer_id       uuid REFERENCES users (id),
    measured_at        timestamptz NOT NULL DEFAULT clock_timestamp(),
    status             text NOT NULL DEFAULT 'final' CHECK (status IN ('registered', 'preliminary', 'final', 'amended', 'corrected', 'cancelled', 'entered-in-error', 'unknown')),
    systolic_bp        numeric CHECK (systolic_bp IS NULL OR (systolic_bp >= 0 AND scale(systolic_bp) IS NOT NULL)),
    diastolic_bp       numeric CHECK (diastolic_bp IS NULL OR (diastolic_bp >= 0 AND scale(diastolic_bp) IS NOT NULL)),
    heart_rate         numeric CHECK (heart_rate IS NULL OR (heart_rate >= 0 AND scale(heart_rate) IS NOT NULL)),
    respiratory_rate   numeric CHECK (respiratory_rate IS NULL OR (respiratory_rate >= 0 AND scale(respiratory_rate) IS NOT NULL)),
    body_temperature   numeric CHECK (body_temperature IS NULL OR (body_temperature >= 0 AND scale(body_temperature) IS NOT NULL)),
    oxygen_saturation  numeric CHECK (oxygen_saturation IS NULL OR (oxygen_saturation >= 0 AND oxygen_saturation <= 100 AND scale(oxygen_saturation) IS NOT NULL)),
    body_weight        numeric CHECK (body_weight IS NULL OR (body_weight >= 0 AND scale(body_weight) IS NOT NULL)),
    body_height        numeric CHECK (body_height IS NULL OR (body_height >= 0 AND scale(body_height) IS NOT NULL)),
    bmi                numeric CHECK (bmi IS NULL OR (bmi >= 0 AND scale(bmi) IS NOT NULL)),
    head_circumference numeric CHECK (head_circumference IS NULL OR (head_circumference >= 0 AND scale(head_circumference) IS NOT NULL)),
    notes              text,
    version_id         integer NOT NULL DEFAULT 1,
    created_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at         timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at         timestamptz,
    fhir_extra         jsonb NOT NULL DEFAULT '{}'::jsonb
);
CREATE TRIGGER vital_signs_touch BEFORE UPDATE ON vital_signs FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX vital_signs_patient_idx ON vital_signs (patient_id, measured_at);
CREATE INDEX vital_signs_consultation_idx ON vital_signs (consultation_id);
CREATE INDEX vital_signs_performer_idx ON vital_signs (performer_id);
CREATE INDEX vital_signs_measured_at_idx ON vital_signs (measured_at);
CREATE INDEX vital_signs_status_idx ON vital_signs (status);
CREATE INDEX vital_signs_updated_at_idx ON vital_signs (updated_at);

-- Medication catalog (RxNorm or a clinic-local system; NULL system = local code, kept unique by
-- the partial index).
CREATE TABLE medications (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    code        text NOT NULL,
    system      text,
    display     text,
    form        text,
    strength    text,
    version_id  integer NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at  timestamptz,
    fhir_extra  jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (system, code)
);
CREATE TRIGGER medications_touch BEFORE UPDATE ON medications FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE UNIQUE INDEX medications_local_code_idx ON medications (code) WHERE system IS NULL;
CREATE INDEX medications_display_idx ON medications (lower(display));

-- MedicationRequest. medication_id is nullable: a text-only medication lives in fhir_extra.
-- valid_from / valid_until are dispenseRequest.validityPeriod.
CREATE TABLE prescriptions (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    fhir_id         text NOT NULL UNIQUE CHECK (fhir_id ~ '^[A-Za-z0-9.-]{1,64}$'),
    patient_id      uuid NOT NULL REFERENCES patients (id),
    consultation_id uuid REFERENCES consultations (id),
    prescriber_id   uuid REFERENCES users (id),
    medication_id   uuid REFERENCES medications (id),
    status          text NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'on-hold', 'cancelled', 'completed', 'entered-in-error', 'stopped', 'draft', 'unknown')),
    intent          text NOT NULL DEFAULT 'order' CHECK (intent IN ('proposal', 'plan', 'order', 'original-order', 'reflex-order', 'filler-order', 'instance-order', 'option')),
    authored_on     timestamptz,
    dosage_text     text,
    dose_value      numeric CHECK (dose_value IS NULL OR (dose_value >= 0 AND scale(dose_value) IS NOT NULL)),
    dose_unit       text,
    route_code      text,
    route_display   text,
    frequency       text,
    timing          jsonb,
    quantity_value  numeric CHECK (quantity_value IS NULL OR (quantity_value >= 0 AND scale(quantity_value) IS NOT NULL)),
    quantity_unit   text,
    refills         integer CHECK (refills >= 0),
    valid_from      timestamptz,
    valid_until     timestamptz,
    notes           text,
    version_id      integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at      timestamptz,
    fhir_extra      jsonb NOT NULL DEFAULT '{}'::jsonb,
    CHECK (valid_until IS NULL OR valid_from IS NULL OR valid_until >= valid_from)
);
CREATE TRIGGER prescriptions_touch BEFORE UPDATE ON prescriptions FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX prescriptions_patient_idx ON prescriptions (patient_id, authored_on);
CREATE INDEX prescriptions_consultation_idx ON prescriptions (consultation_id);
CREATE INDEX prescriptions_prescriber_idx ON prescriptions (prescriber_id);
CREATE INDEX prescriptions_medication_idx ON prescriptions (medication_id);
CREATE INDEX prescriptions_status_idx ON prescriptions (status);
CREATE INDEX prescriptions_intent_idx ON prescriptions (intent);
CREATE INDEX prescriptions_authored_on_idx ON prescriptions (authored_on);
CREATE INDEX prescriptions_updated_at_idx ON prescriptions (updated_at);

-- DiagnosticReport. DiagnosticReport.code is 1..1: a coded or a text-only code (code_display).
CREATE TABLE medical_tests (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    fhir_id         text NOT NULL UNIQUE CHECK (fhir_id ~ '^[A-Za-z0-9.-]{1,64}$'),
    patient_id      uuid NOT NULL REFERENCES patients (id),
    consultation_id uuid REFERENCES consultations (id),
    ordered_by      uuid REFERENCES users (id),
    performer       text,
    status          text NOT NULL DEFAULT 'registered' CHECK (status IN ('registered', 'partial', 'preliminary', 'final', 'amended', 'corrected', 'appended', 'cancelled', 'entered-in-error', 'unknown')),
    category_code   text,
    category_system text,
    code            text,
    code_system     text,
    code_display    text,
    effective_at    timestamptz,
    issued_at       timestamptz,
    conclusion      text,
    lab_name        text,
    version_id      integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at      timestamptz,
    fhir_extra      jsonb NOT NULL DEFAULT '{}'::jsonb,
    CHECK (code IS NOT NULL OR code_display IS NOT NULL)
);
CREATE TRIGGER medical_tests_touch BEFORE UPDATE ON medical_tests FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX medical_tests_patient_idx ON medical_tests (patient_id, effective_at);
CREATE INDEX medical_tests_consultation_idx ON medical_tests (consultation_id);
CREATE INDEX medical_tests_ordered_by_idx ON medical_tests (ordered_by);
CREATE INDEX medical_tests_status_idx ON medical_tests (status);
CREATE INDEX medical_tests_category_idx ON medical_tests (category_code, category_system);
CREATE INDEX medical_tests_code_idx ON medical_tests (code, code_system);
CREATE INDEX medical_tests_effective_idx ON medical_tests (effective_at);
CREATE INDEX medical_tests_issued_idx ON medical_tests (issued_at);
CREATE INDEX medical_tests_updated_at_idx ON medical_tests (updated_at);

-- Observation for laboratory and every category except the vital signs held in vital_signs.
-- value_type says which value column is in use; value_json holds Range, Ratio, SampledData,
-- Period (and time / dateTime text) as their FHIR JSON. Observation.code is 1..1 (coded or text).
CREATE TABLE medical_test_results (
    id                  uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    fhir_id             text NOT NULL UNIQUE CHECK (fhir_id ~ '^[A-Za-z0-9.-]{1,64}$'),
    medical_test_id     uuid REFERENCES medical_tests (id),
    patient_id          uuid NOT NULL REFERENCES patients (id),
    consultation_id     uuid REFERENCES consultations (id),
    status              text NOT NULL DEFAULT 'final' CHECK (status IN ('registered', 'preliminary', 'final', 'amended', 'corrected', 'cancelled', 'entered-in-error', 'unknown')),
    category_code       text,
    code                text,
    code_system         text,
    code_display        text,
    value_type          text CHECK (value_type IN ('quantity', 'string', 'codeable-concept', 'boolean', 'integer', 'range', 'ratio', 'sampled-data', 'time', 'date-time', 'period')),
    value_quantity      numeric CHECK (value_quantity IS NULL OR scale(value_quantity) IS NOT NULL),
    value_unit          text,
    value_unit_system   text,
    value_code          text,
    value_string        text,
    value_boolean       boolean,
    value_integer       bigint,
    value_json          jsonb,
    reference_low       numeric CHECK (reference_low IS NULL OR scale(reference_low) IS NOT NULL),
    reference_high      numeric CHECK (reference_high IS NULL OR scale(reference_high) IS NOT NULL),
    interpretation_code text,
    effective_at        timestamptz,
    effective_end       timestamptz,
    issued_at           timestamptz,
    performer_id        uuid REFERENCES users (id),
    version_id          integer NOT NULL DEFAULT 1,
    created_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at          timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at          timestamptz,
    fhir_extra          jsonb NOT NULL DEFAULT '{}'::jsonb,
    CHECK (code IS NOT NULL OR code_display IS NOT NULL),
    CHECK (reference_low IS NULL OR reference_high IS NULL OR reference_low <= reference_high),
    CHECK (effective_end IS NULL OR effective_at IS NULL OR effective_end >= effective_at)
);
CREATE TRIGGER medical_test_results_touch BEFORE UPDATE ON medical_test_results FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX medical_test_results_patient_idx ON medical_test_results (patient_id, effective_at);
CREATE INDEX medical_test_results_medical_test_idx ON medical_test_results (medical_test_id);
CREATE INDEX medical_test_results_consultation_idx ON medical_test_results (consultation_id);
CREATE INDEX medical_test_results_performer_idx ON medical_test_results (performer_id);
CREATE INDEX medical_test_results_status_idx ON medical_test_results (status);
CREATE INDEX medical_test_results_category_idx ON medical_test_results (category_code);
CREATE INDEX medical_test_results_code_idx ON medical_test_results (code, code_system);
CREATE INDEX medical_test_results_effective_idx ON medical_test_results (effective_at, effective_end);
CREATE INDEX medical_test_results_value_quantity_idx ON medical_test_results (code, value_quantity);
CREATE INDEX medical_test_results_value_code_idx ON medical_test_results (value_code);
CREATE INDEX medical_test_results_updated_at_idx ON medical_test_results (updated_at);

-- Files attached to a patient, an encounter or a test (not a FHIR resource here). The bytes are
-- either inline (content) or at storage_path; sha256 is lowercase hex.
CREATE TABLE file_attachments (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    patient_id      uuid REFERENCES patients (id),
    consultation_id uuid REFERENCES consultations (id),
    medical_test_id uuid REFERENCES medical_tests (id),
    file_name       text,
    content_type    text,
    size_bytes      bigint CHECK (size_bytes >= 0),
    sha256          text CHECK (sha256 IS NULL OR sha256 ~ '^[0-9a-f]{64}$'),
    storage_path    text,
    content         bytea,
    uploaded_by     uuid REFERENCES users (id),
    version_id      integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at      timestamptz,
    fhir_extra      jsonb NOT NULL DEFAULT '{}'::jsonb,
    CHECK (patient_id IS NOT NULL OR consultation_id IS NOT NULL OR medical_test_id IS NOT NULL),
    CHECK (content IS NOT NULL OR storage_path IS NOT NULL)
);
CREATE TRIGGER file_attachments_touch BEFORE UPDATE ON file_attachments FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX file_attachments_patient_idx ON file_attachments (patient_id);
CREATE INDEX file_attachments_consultation_idx ON file_attachments (consultation_id);
CREATE INDEX file_attachments_medical_test_idx ON file_attachments (medical_test_id);
CREATE INDEX file_attachments_uploaded_by_idx ON file_attachments (uploaded_by);
CREATE INDEX file_attachments_sha256_idx ON file_attachments (sha256);

-- Clinic-defined fields, served as FHIR extensions (extension_url) on entity_type. A field is
-- either global (specialty_id NULL) or specific to one specialty; field_key is unique within
-- each, the partial index covering the NULL specialty (NULLs are distinct in UNIQUE).
CREATE TABLE custom_fields (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    entity_type   text NOT NULL CHECK (entity_type IN ('Patient', 'Encounter', 'Observation', 'MedicationRequest', 'DiagnosticReport', 'AllergyIntolerance', 'Practitioner')),
    specialty_id  uuid REFERENCES specialties (id),
    field_key     text NOT NULL CHECK (length(field_key) > 0),
    label         text,
    field_type    text NOT NULL CHECK (field_type IN ('text', 'number', 'date', 'boolean', 'choice')),
    choices       jsonb CHECK (choices IS NULL OR jsonb_typeof(choices) = 'array'),
    is_required   boolean NOT NULL DEFAULT false,
    extension_url text UNIQUE,
    version_id    integer NOT NULL DEFAULT 1,
    created_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at    timestamptz,
    fhir_extra    jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (entity_type, specialty_id, field_key),
    UNIQUE (id, entity_type),
    CHECK (field_type <> 'choice' OR choices IS NOT NULL)
);
CREATE TRIGGER custom_fields_touch BEFORE UPDATE ON custom_fields FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE UNIQUE INDEX custom_fields_global_key_idx ON custom_fields (entity_type, field_key) WHERE specialty_id IS NULL;
CREATE INDEX custom_fields_specialty_idx ON custom_fields (specialty_id);

-- Values of custom fields. entity_id is the id (not fhir_id) of the row of entity_type (a
-- polymorphic reference, so no foreign key); the composite foreign key keeps entity_type equal to
-- the field's. At most one value column is set (choice values go in value_text).
CREATE TABLE custom_field_values (
    id              uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    custom_field_id uuid NOT NULL REFERENCES custom_fields (id),
    entity_type     text NOT NULL CHECK (entity_type IN ('Patient', 'Encounter', 'Observation', 'MedicationRequest', 'DiagnosticReport', 'AllergyIntolerance', 'Practitioner')),
    entity_id       uuid NOT NULL,
    value_text      text,
    value_number    numeric CHECK (value_number IS NULL OR scale(value_number) IS NOT NULL),
    value_date      date,
    value_boolean   boolean,
    version_id      integer NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at      timestamptz NOT NULL DEFAULT clock_timestamp(),
    deleted_at      timestamptz,
    fhir_extra      jsonb NOT NULL DEFAULT '{}'::jsonb,
    UNIQUE (custom_field_id, entity_id),
    FOREIGN KEY (custom_field_id, entity_type) REFERENCES custom_fields (id, entity_type),
    CHECK (num_nonnulls(value_text, value_number, value_date, value_boolean) <= 1)
);
CREATE TRIGGER custom_field_values_touch BEFORE UPDATE ON custom_field_values FOR EACH ROW EXECUTE FUNCTION touch_row();
CREATE INDEX custom_field_values_entity_idx ON custom_field_values (entity_type, entity_id);
