-- A custom field value belongs to its entity: changing it is a change of that resource, so the
-- entity's row is touched (its version_id and updated_at move, once per transaction), except
-- inside a FHIR write, which marks the row in fhir_write_guard.
CREATE OR REPLACE FUNCTION touch_custom_field_entity() RETURNS trigger AS $$
DECLARE
    r record;
    tbl text;
BEGIN
    IF TG_OP = 'DELETE' THEN
        r := OLD;
    ELSE
        r := NEW;
    END IF;
    tbl := CASE r.entity_type
        WHEN 'Patient' THEN 'patients'
        WHEN 'Encounter' THEN 'consultations'
        WHEN 'Practitioner' THEN 'users'
        WHEN 'AllergyIntolerance' THEN 'patient_allergies'
        WHEN 'MedicationRequest' THEN 'prescriptions'
        WHEN 'DiagnosticReport' THEN 'medical_tests'
        WHEN 'Observation' THEN 'medical_test_results'
    END;
    EXECUTE format(
        'UPDATE %I SET updated_at = clock_timestamp() WHERE id = $1 '
        'AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = $1) '
        'AND xmin::text <> pg_current_xact_id()::xid::text', tbl)
    USING r.entity_id;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER custom_field_values_entity AFTER INSERT OR UPDATE OR DELETE ON custom_field_values FOR EACH ROW EXECUTE FUNCTION touch_custom_field_entity();
