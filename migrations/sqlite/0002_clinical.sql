-- expediente clinical schema (SQLite dialect): the ExpedienteDLM clinic tables that the
-- FHIR layer serves as Condition, AllergyIntolerance, Encounter, Observation, MedicationRequest
-- and DiagnosticReport, plus the catalogs, attachments and custom fields they use.
-- Conventions are those of 0001_foundation.sql (id, fhir_id, version_id, created_at, updated_at,
-- deleted_at, fhir_extra, <table>_touch trigger). In addition:
--   * decimals (numeric in PostgreSQL) are TEXT holding the decimal's exact text, not REAL: FHIR
--     decimals keep their precision (37.50 is not 37.5) and PostgreSQL numeric keeps the scale, so
--     both engines round-trip the same text. The CHECKs accept only a FHIR decimal literal
--     (optional '-', no leading zeros, optional fraction and exponent); compare and sort with
--     CAST(col AS REAL). A REAL or INTEGER bound to these columns is stored as its text;
--   * booleans are INTEGER 0/1, dates TEXT 'YYYY-MM-DD', JSON TEXT checked with json_valid;
--   * coded columns whose FHIR binding is required carry a CHECK on the value set; columns with
--     extensible/example bindings (categories, type, reason, route, interpretation) are free text;
--   * foreign keys use the default NO ACTION: clinical rows are soft-deleted (deleted_at), so a
--     hard delete of a patient, user or encounter that still has clinical rows is refused;
--   * a Period (start/end) must not end before it starts (FHIR per-1); compared with julianday()
--     because timestamps may be written as ...Z or ...+00:00.

-- Condition.
CREATE TABLE medical_histories (
    id                  TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    fhir_id             TEXT NOT NULL UNIQUE CHECK (length(fhir_id) BETWEEN 1 AND 64 AND fhir_id NOT GLOB '*[^A-Za-z0-9.-]*'),
    patient_id          TEXT NOT NULL REFERENCES patients (id),
    condition_code      TEXT,
    condition_system    TEXT,
    condition_display   TEXT,
    clinical_status     TEXT CHECK (clinical_status IN ('active', 'recurrence', 'relapse', 'inactive', 'remission', 'resolved')),
    verification_status TEXT CHECK (verification_status IN ('unconfirmed', 'provisional', 'differential', 'confirmed', 'refuted', 'entered-in-error')),
    category            TEXT,
    onset_date          TEXT,
    abatement_date      TEXT,
    notes               TEXT,
    recorded_by         TEXT REFERENCES users (id),
    version_id          INTEGER NOT NULL DEFAULT 1,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at          TEXT,
    fhir_extra          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra))
);
CREATE TRIGGER medical_histories_touch AFTER UPDATE ON medical_histories FOR EACH ROW
BEGIN
    UPDATE medical_histories SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
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
    id          TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    code        TEXT NOT NULL,
    system      TEXT,
    display     TEXT,
    category    TEXT CHECK (category IN ('food', 'medication', 'environment', 'biologic')),
    version_id  INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at  TEXT,
    fhir_extra  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra)),
    UNIQUE (system, code)
);
CREATE TRIGGER allergies_touch AFTER UPDATE ON allergies FOR EACH ROW
BEGIN
    UPDATE allergies SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
CREATE UNIQUE INDEX allergies_local_code_idx ON allergies (code) WHERE system IS NULL;
CREATE INDEX allergies_category_idx ON allergies (category);

-- AllergyIntolerance. allergy_id is nullable: a text-only code (no catalog entry) lives in fhir_extra.
CREATE TABLE patient_allergies (
    id                  TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    fhir_id             TEXT NOT NULL UNIQUE CHECK (length(fhir_id) BETWEEN 1 AND 64 AND fhir_id NOT GLOB '*[^A-Za-z0-9.-]*'),
    patient_id          TEXT NOT NULL REFERENCES patients (id),
    allergy_id          TEXT REFERENCES allergies (id),
    clinical_status     TEXT CHECK (clinical_status IN ('active', 'inactive', 'resolved')),
    verification_status TEXT CHECK (verification_status IN ('unconfirmed', 'presumed', 'confirmed', 'refuted', 'entered-in-error')),
    type                TEXT CHECK (type IN ('allergy', 'intolerance')),
    criticality         TEXT CHECK (criticality IN ('low', 'high', 'unable-to-assess')),
    severity            TEXT CHECK (severity IN ('mild', 'moderate', 'severe')),
    reaction            TEXT,
    onset               TEXT,
    recorded_date       TEXT,
    recorder_id         TEXT REFERENCES users (id),
    notes               TEXT,
    version_id          INTEGER NOT NULL DEFAULT 1,
    created_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at          TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at          TEXT,
    fhir_extra          TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra))
);
CREATE TRIGGER patient_allergies_touch AFTER UPDATE ON patient_allergies FOR EACH ROW
BEGIN
    UPDATE patient_allergies SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
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
    id               TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    fhir_id          TEXT NOT NULL UNIQUE CHECK (length(fhir_id) BETWEEN 1 AND 64 AND fhir_id NOT GLOB '*[^A-Za-z0-9.-]*'),
    patient_id       TEXT NOT NULL REFERENCES patients (id),
    doctor_id        TEXT REFERENCES users (id),
    specialty_id     TEXT REFERENCES specialties (id),
    status           TEXT NOT NULL DEFAULT 'in-progress' CHECK (status IN ('planned', 'arrived', 'triaged', 'in-progress', 'onleave', 'finished', 'cancelled', 'entered-in-error', 'unknown')),
    class_code       TEXT NOT NULL DEFAULT 'AMB' CHECK (class_code IN ('AMB', 'EMER', 'FLD', 'HH', 'IMP', 'ACUTE', 'NONAC', 'OBSENC', 'PRENC', 'SS', 'VR')),
    type_code        TEXT,
    type_system      TEXT,
    type_display     TEXT,
    period_start     TEXT,
    period_end       TEXT,
    reason_code      TEXT,
    reason_system    TEXT,
    reason_display   TEXT,
    chief_complaint  TEXT,
    diagnosis        TEXT,
    treatment_plan   TEXT,
    notes            TEXT,
    version_id       INTEGER NOT NULL DEFAULT 1,
    created_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at       TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at       TEXT,
    fhir_extra       TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra)),
    CHECK (period_end IS NULL OR period_start IS NULL OR julianday(period_end) >= julianday(period_start))
);
CREATE TRIGGER consultations_touch AFTER UPDATE ON consultations FOR EACH ROW
BEGIN
    UPDATE consultations SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
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
-- head_circumference cm, bmi kg/m2. Measurements are exact decimal TEXT (see the header).
CREATE TABLE vital_signs (
    id                 TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    fhir_ids           TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_ids) AND json_type(fhir_ids) = 'object'),
    patient_id         TEXT NOT NULL REFERENCES patients (id),
    consultation_id    TEXT REFERENCES consultations (id),
    performer_id       TEXT REFERENCES users (id),
    measured_at        TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    status             TEXT NOT NULL DEFAULT 'final' CHECK (status IN ('registered', 'preliminary', 'final', 'amended', 'corrected', 'cancelled', 'entered-in-error', 'unknown')),
    systolic_bp        TEXT CHECK (systolic_bp IS NULL OR (systolic_bp NOT GLOB '*[^0-9.eE+-]*' AND systolic_bp GLOB '[0-9]*' AND systolic_bp GLOB '*[0-9]' AND systolic_bp NOT GLOB '*.*.*' AND systolic_bp NOT GLOB '*[eE]*[eE]*' AND systolic_bp NOT GLOB '*[eE]*.*' AND systolic_bp NOT GLOB '*.[^0-9]*' AND systolic_bp NOT GLOB '*[^eE][+-]*' AND systolic_bp NOT GLOB '0[0-9]*')),
    diastolic_bp       TEXT CHECK (diastolic_bp IS NULL OR (diastolic_bp NOT GLOB '*[^0-9.eE+-]*' AND diastolic_bp GLOB '[0-9]*' AND diastolic_bp GLOB '*[0-9]' AND diastolic_bp NOT GLOB '*.*.*' AND diastolic_bp NOT GLOB '*[eE]*[eE]*' AND diastolic_bp NOT GLOB '*[eE]*.*' AND diastolic_bp NOT GLOB '*.[^0-9]*' AND diastolic_bp NOT GLOB '*[^eE][+-]*' AND diastolic_bp NOT GLOB '0[0-9]*')),
    heart_rate         TEXT CHECK (heart_rate IS NULL OR (heart_rate NOT GLOB '*[^0-9.eE+-]*' AND heart_rate GLOB '[0-9]*' AND heart_rate GLOB '*[0-9]' AND heart_rate NOT GLOB '*.*.*' AND heart_rate NOT GLOB '*[eE]*[eE]*' AND heart_rate NOT GLOB '*[eE]*.*' AND heart_rate NOT GLOB '*.[^0-9]*' AND heart_rate NOT GLOB '*[^eE][+-]*' AND heart_rate NOT GLOB '0[0-9]*')),
    respiratory_rate   TEXT CHECK (respiratory_rate IS NULL OR (respiratory_rate NOT GLOB '*[^0-9.eE+-]*' AND respiratory_rate GLOB '[0-9]*' AND respiratory_rate GLOB '*[0-9]' AND respiratory_rate NOT GLOB '*.*.*' AND respiratory_rate NOT GLOB '*[eE]*[eE]*' AND respiratory_rate NOT GLOB '*[eE]*.*' AND respiratory_rate NOT GLOB '*.[^0-9]*' AND respiratory_rate NOT GLOB '*[^eE][+-]*' AND respiratory_rate NOT GLOB '0[0-9]*')),
    body_temperature   TEXT CHECK (body_temperature IS NULL OR (body_temperature NOT GLOB '*[^0-9.eE+-]*' AND body_temperature GLOB '[0-9]*' AND body_temperature GLOB '*[0-9]' AND body_temperature NOT GLOB '*.*.*' AND body_temperature NOT GLOB '*[eE]*[eE]*' AND body_temperature NOT GLOB '*[eE]*.*' AND body_temperature NOT GLOB '*.[^0-9]*' AND body_temperature NOT GLOB '*[^eE][+-]*' AND body_temperature NOT GLOB '0[0-9]*')),
    oxygen_saturation  TEXT CHECK (oxygen_saturation IS NULL OR (oxygen_saturation NOT GLOB '*[^0-9.eE+-]*' AND oxygen_saturation GLOB '[0-9]*' AND oxygen_saturation GLOB '*[0-9]' AND oxygen_saturation NOT GLOB '*.*.*' AND oxygen_saturation NOT GLOB '*[eE]*[eE]*' AND oxygen_saturation NOT GLOB '*[eE]*.*' AND oxygen_saturation NOT GLOB '*.[^0-9]*' AND oxygen_saturation NOT GLOB '*[^eE][+-]*' AND oxygen_saturation NOT GLOB '0[0-9]*') AND (oxygen_saturation IS NULL OR CAST(oxygen_saturation AS REAL) <= 100)),
    body_weight        TEXT CHECK (body_weight IS NULL OR (body_weight NOT GLOB '*[^0-9.eE+-]*' AND body_weight GLOB '[0-9]*' AND body_weight GLOB '*[0-9]' AND body_weight NOT GLOB '*.*.*' AND body_weight NOT GLOB '*[eE]*[eE]*' AND body_weight NOT GLOB '*[eE]*.*' AND body_weight NOT GLOB '*.[^0-9]*' AND body_weight NOT GLOB '*[^eE][+-]*' AND body_weight NOT GLOB '0[0-9]*')),
    body_height        TEXT CHECK (body_height IS NULL OR (body_height NOT GLOB '*[^0-9.eE+-]*' AND body_height GLOB '[0-9]*' AND body_height GLOB '*[0-9]' AND body_height NOT GLOB '*.*.*' AND body_height NOT GLOB '*[eE]*[eE]*' AND body_height NOT GLOB '*[eE]*.*' AND body_height NOT GLOB '*.[^0-9]*' AND body_height NOT GLOB '*[^eE][+-]*' AND body_height NOT GLOB '0[0-9]*')),
    bmi                TEXT CHECK (bmi IS NULL OR (bmi NOT GLOB '*[^0-9.eE+-]*' AND bmi GLOB '[0-9]*' AND bmi GLOB '*[0-9]' AND bmi NOT GLOB '*.*.*' AND bmi NOT GLOB '*[eE]*[eE]*' AND bmi NOT GLOB '*[eE]*.*' AND bmi NOT GLOB '*.[^0-9]*' AND bmi NOT GLOB '*[^eE][+-]*' AND bmi NOT GLOB '0[0-9]*')),
    head_circumference TEXT CHECK (head_circumference IS NULL OR (head_circumference NOT GLOB '*[^0-9.eE+-]*' AND head_circumference GLOB '[0-9]*' AND head_circumference GLOB '*[0-9]' AND head_circumference NOT GLOB '*.*.*' AND head_circumference NOT GLOB '*[eE]*[eE]*' AND head_circumference NOT GLOB '*[eE]*.*' AND head_circumference NOT GLOB '*.[^0-9]*' AND head_circumference NOT GLOB '*[^eE][+-]*' AND head_circumference NOT GLOB '0[0-9]*')),
    notes              TEXT,
    version_id         INTEGER NOT NULL DEFAULT 1,
    created_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at         TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at         TEXT,
    fhir_extra         TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra))
);
CREATE TRIGGER vital_signs_touch AFTER UPDATE ON vital_signs FOR EACH ROW
BEGIN
    UPDATE vital_signs SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
CREATE INDEX vital_signs_patient_idx ON vital_signs (patient_id, measured_at);
CREATE INDEX vital_signs_consultation_idx ON vital_signs (consultation_id);
CREATE INDEX vital_signs_performer_idx ON vital_signs (performer_id);
CREATE INDEX vital_signs_measured_at_idx ON vital_signs (measured_at);
CREATE INDEX vital_signs_status_idx ON vital_signs (status);
CREATE INDEX vital_signs_updated_at_idx ON vital_signs (updated_at);

-- Medication catalog (RxNorm or a clinic-local system; NULL system = local code, kept unique by
-- the partial index).
CREATE TABLE medications (
    id          TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    code        TEXT NOT NULL,
    system      TEXT,
    display     TEXT,
    form        TEXT,
    strength    TEXT,
    version_id  INTEGER NOT NULL DEFAULT 1,
    created_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at  TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at  TEXT,
    fhir_extra  TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra)),
    UNIQUE (system, code)
);
CREATE TRIGGER medications_touch AFTER UPDATE ON medications FOR EACH ROW
BEGIN
    UPDATE medications SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
CREATE UNIQUE INDEX medications_local_code_idx ON medications (code) WHERE system IS NULL;
CREATE INDEX medications_display_idx ON medications (display COLLATE NOCASE);

-- MedicationRequest. medication_id is nullable: a text-only medication lives in fhir_extra.
-- valid_from / valid_until are dispenseRequest.validityPeriod.
CREATE TABLE prescriptions (
    id              TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    fhir_id         TEXT NOT NULL UNIQUE CHECK (length(fhir_id) BETWEEN 1 AND 64 AND fhir_id NOT GLOB '*[^A-Za-z0-9.-]*'),
    patient_id      TEXT NOT NULL REFERENCES patients (id),
    consultation_id TEXT REFERENCES consultations (id),
    prescriber_id   TEXT REFERENCES users (id),
    medication_id   TEXT REFERENCES medications (id),
    status          TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'on-hold', 'cancelled', 'completed', 'entered-in-error', 'stopped', 'draft', 'unknown')),
    intent          TEXT NOT NULL DEFAULT 'order' CHECK (intent IN ('proposal', 'plan', 'order', 'original-order', 'reflex-order', 'filler-order', 'instance-order', 'option')),
    authored_on     TEXT,
    dosage_text     TEXT,
    dose_value      TEXT CHECK (dose_value IS NULL OR (dose_value NOT GLOB '*[^0-9.eE+-]*' AND dose_value GLOB '[0-9]*' AND dose_value GLOB '*[0-9]' AND dose_value NOT GLOB '*.*.*' AND dose_value NOT GLOB '*[eE]*[eE]*' AND dose_value NOT GLOB '*[eE]*.*' AND dose_value NOT GLOB '*.[^0-9]*' AND dose_value NOT GLOB '*[^eE][+-]*' AND dose_value NOT GLOB '0[0-9]*')),
    dose_unit       TEXT,
    route_code      TEXT,
    route_display   TEXT,
    frequency       TEXT,
    timing          TEXT CHECK (timing IS NULL OR json_valid(timing)),
    quantity_value  TEXT CHECK (quantity_value IS NULL OR (quantity_value NOT GLOB '*[^0-9.eE+-]*' AND quantity_value GLOB '[0-9]*' AND quantity_value GLOB '*[0-9]' AND quantity_value NOT GLOB '*.*.*' AND quantity_value NOT GLOB '*[eE]*[eE]*' AND quantity_value NOT GLOB '*[eE]*.*' AND quantity_value NOT GLOB '*.[^0-9]*' AND quantity_value NOT GLOB '*[^eE][+-]*' AND quantity_value NOT GLOB '0[0-9]*')),
    quantity_unit   TEXT,
    refills         INTEGER CHECK (refills IS NULL OR (typeof(refills) = 'integer' AND refills >= 0)),
    valid_from      TEXT,
    valid_until     TEXT,
    notes           TEXT,
    version_id      INTEGER NOT NULL DEFAULT 1,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at      TEXT,
    fhir_extra      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra)),
    CHECK (valid_until IS NULL OR valid_from IS NULL OR julianday(valid_until) >= julianday(valid_from))
);
CREATE TRIGGER prescriptions_touch AFTER UPDATE ON prescriptions FOR EACH ROW
BEGIN
    UPDATE prescriptions SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
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
    id              TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    fhir_id         TEXT NOT NULL UNIQUE CHECK (length(fhir_id) BETWEEN 1 AND 64 AND fhir_id NOT GLOB '*[^A-Za-z0-9.-]*'),
    patient_id      TEXT NOT NULL REFERENCES patients (id),
    consultation_id TEXT REFERENCES consultations (id),
    ordered_by      TEXT REFERENCES users (id),
    performer       TEXT,
    status          TEXT NOT NULL DEFAULT 'registered' CHECK (status IN ('registered', 'partial', 'preliminary', 'final', 'amended', 'corrected', 'appended', 'cancelled', 'entered-in-error', 'unknown')),
    category_code   TEXT,
    category_system TEXT,
    code            TEXT,
    code_system     TEXT,
    code_display    TEXT,
    effective_at    TEXT,
    issued_at       TEXT,
    conclusion      TEXT,
    lab_name        TEXT,
    version_id      INTEGER NOT NULL DEFAULT 1,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at      TEXT,
    fhir_extra      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra)),
    CHECK (code IS NOT NULL OR code_display IS NOT NULL)
);
CREATE TRIGGER medical_tests_touch AFTER UPDATE ON medical_tests FOR EACH ROW
BEGIN
    UPDATE medical_tests SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
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
-- value-quantity search must use CAST(value_quantity AS REAL) to hit its index.
CREATE TABLE medical_test_results (
    id                  TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    fhir_id             TEXT NOT NULL UNIQUE CHECK (length(fhir_id) BETWEEN 1 AND 64 AND fhir_id NOT GLOB '*[^A-Za-z0-9.-]*'),
    medical_test_id     TEXT REFERENCES medical_tests (id),
    patient_id          TEXT NOT NULL REFERENCES patients (id),
    consultation_id     TEXT REFERENCES consultations (id),
    status              TEXT NOT NULL DEFAULT 'final' CHECK (status IN ('registered', 'preliminary', 'final', 'amended', 'corrected', 'cancelled', 'entered-in-error', 'unknown')),
    category_code       TEXT,
    code                TEXT,
    code_system         TEXT,
    code_display        TEXT,
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
    CHECK (code IS NOT NULL OR code_display IS NOT NULL),
    CHECK (reference_low IS NULL OR reference_high IS NULL OR CAST(reference_low AS REAL) <= CAST(reference_high AS REAL)),
    CHECK (effective_end IS NULL OR effective_at IS NULL OR julianday(effective_end) >= julianday(effective_at))
);
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

-- Files attached to a patient, an encounter or a test (not a FHIR resource here). The bytes are
-- either inline (content) or at storage_path; sha256 is lowercase hex.
CREATE TABLE file_attachments (
    id              TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    patient_id      TEXT REFERENCES patients (id),
    consultation_id TEXT REFERENCES consultations (id),
    medical_test_id TEXT REFERENCES medical_tests (id),
    file_name       TEXT,
    content_type    TEXT,
    size_bytes      INTEGER CHECK (size_bytes IS NULL OR (typeof(size_bytes) = 'integer' AND size_bytes >= 0)),
    sha256          TEXT CHECK (sha256 IS NULL OR (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*')),
    storage_path    TEXT,
    content         BLOB,
    uploaded_by     TEXT REFERENCES users (id),
    version_id      INTEGER NOT NULL DEFAULT 1,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at      TEXT,
    fhir_extra      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra)),
    CHECK (patient_id IS NOT NULL OR consultation_id IS NOT NULL OR medical_test_id IS NOT NULL),
    CHECK (content IS NOT NULL OR storage_path IS NOT NULL)
);
CREATE TRIGGER file_attachments_touch AFTER UPDATE ON file_attachments FOR EACH ROW
BEGIN
    UPDATE file_attachments SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
CREATE INDEX file_attachments_patient_idx ON file_attachments (patient_id);
CREATE INDEX file_attachments_consultation_idx ON file_attachments (consultation_id);
CREATE INDEX file_attachments_medical_test_idx ON file_attachments (medical_test_id);
CREATE INDEX file_attachments_uploaded_by_idx ON file_attachments (uploaded_by);
CREATE INDEX file_attachments_sha256_idx ON file_attachments (sha256);

-- Clinic-defined fields, served as FHIR extensions (extension_url) on entity_type. A field is
-- either global (specialty_id NULL) or specific to one specialty; field_key is unique within
-- each, the partial index covering the NULL specialty (NULLs are distinct in UNIQUE).
CREATE TABLE custom_fields (
    id            TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    entity_type   TEXT NOT NULL CHECK (entity_type IN ('Patient', 'Encounter', 'Observation', 'MedicationRequest', 'DiagnosticReport', 'AllergyIntolerance', 'Practitioner')),
    specialty_id  TEXT REFERENCES specialties (id),
    field_key     TEXT NOT NULL CHECK (length(field_key) > 0),
    label         TEXT,
    field_type    TEXT NOT NULL CHECK (field_type IN ('text', 'number', 'date', 'boolean', 'choice')),
    choices       TEXT CHECK (choices IS NULL OR (json_valid(choices) AND json_type(choices) = 'array')),
    is_required   INTEGER NOT NULL DEFAULT 0 CHECK (is_required IN (0, 1)),
    extension_url TEXT UNIQUE,
    version_id    INTEGER NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at    TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at    TEXT,
    fhir_extra    TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra)),
    UNIQUE (entity_type, specialty_id, field_key),
    UNIQUE (id, entity_type),
    CHECK (field_type <> 'choice' OR choices IS NOT NULL)
);
CREATE TRIGGER custom_fields_touch AFTER UPDATE ON custom_fields FOR EACH ROW
BEGIN
    UPDATE custom_fields SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
CREATE UNIQUE INDEX custom_fields_global_key_idx ON custom_fields (entity_type, field_key) WHERE specialty_id IS NULL;
CREATE INDEX custom_fields_specialty_idx ON custom_fields (specialty_id);

-- Values of custom fields. entity_id is the id (not fhir_id) of the row of entity_type (a
-- polymorphic reference, so no foreign key); the composite foreign key keeps entity_type equal to
-- the field's. At most one value column is set (choice values go in value_text).
CREATE TABLE custom_field_values (
    id              TEXT PRIMARY KEY NOT NULL DEFAULT (lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))) CHECK (length(id) = 36),
    custom_field_id TEXT NOT NULL REFERENCES custom_fields (id),
    entity_type     TEXT NOT NULL CHECK (entity_type IN ('Patient', 'Encounter', 'Observation', 'MedicationRequest', 'DiagnosticReport', 'AllergyIntolerance', 'Practitioner')),
    entity_id       TEXT NOT NULL CHECK (length(entity_id) = 36),
    value_text      TEXT,
    value_number    TEXT CHECK (value_number IS NULL OR (value_number NOT GLOB '*[^0-9.eE+-]*' AND (value_number GLOB '[0-9]*' OR value_number GLOB '-[0-9]*') AND value_number GLOB '*[0-9]' AND value_number NOT GLOB '*.*.*' AND value_number NOT GLOB '*[eE]*[eE]*' AND value_number NOT GLOB '*[eE]*.*' AND value_number NOT GLOB '*.[^0-9]*' AND value_number NOT GLOB '*[^eE][+-]*' AND value_number NOT GLOB '0[0-9]*' AND value_number NOT GLOB '-0[0-9]*')),
    value_date      TEXT CHECK (value_date IS NULL OR date(julianday(value_date)) IS value_date),
    value_boolean   INTEGER CHECK (value_boolean IN (0, 1)),
    version_id      INTEGER NOT NULL DEFAULT 1,
    created_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    updated_at      TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    deleted_at      TEXT,
    fhir_extra      TEXT NOT NULL DEFAULT '{}' CHECK (json_valid(fhir_extra)),
    UNIQUE (custom_field_id, entity_id),
    FOREIGN KEY (custom_field_id, entity_type) REFERENCES custom_fields (id, entity_type),
    CHECK ((value_text IS NOT NULL) + (value_number IS NOT NULL) + (value_date IS NOT NULL) + (value_boolean IS NOT NULL) <= 1)
);
CREATE TRIGGER custom_field_values_touch AFTER UPDATE ON custom_field_values FOR EACH ROW
BEGIN
    UPDATE custom_field_values SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
CREATE INDEX custom_field_values_entity_idx ON custom_field_values (entity_type, entity_id);
