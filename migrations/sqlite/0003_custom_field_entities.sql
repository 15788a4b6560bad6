-- A custom field value belongs to its entity: changing it is a change of that resource, so the
-- entity's row is touched (its version_id and updated_at move), except inside a FHIR write, which
-- marks the row in fhir_write_guard.
DROP TRIGGER custom_field_values_touch;
CREATE TRIGGER custom_field_values_touch AFTER UPDATE ON custom_field_values FOR EACH ROW
BEGIN
    UPDATE custom_field_values SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
    UPDATE patients SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'Patient' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patients.id);
    UPDATE consultations SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'Encounter' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = consultations.id);
    UPDATE users SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'Practitioner' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = users.id);
    UPDATE patient_allergies SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'AllergyIntolerance' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patient_allergies.id);
    UPDATE prescriptions SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'MedicationRequest' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = prescriptions.id);
    UPDATE medical_tests SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'DiagnosticReport' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = medical_tests.id);
    UPDATE medical_test_results SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'Observation' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = medical_test_results.id);
END;
CREATE TRIGGER custom_field_values_insert_entity AFTER INSERT ON custom_field_values FOR EACH ROW
BEGIN
    UPDATE patients SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'Patient' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patients.id);
    UPDATE consultations SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'Encounter' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = consultations.id);
    UPDATE users SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'Practitioner' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = users.id);
    UPDATE patient_allergies SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'AllergyIntolerance' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patient_allergies.id);
    UPDATE prescriptions SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'MedicationRequest' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = prescriptions.id);
    UPDATE medical_tests SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'DiagnosticReport' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = medical_tests.id);
    UPDATE medical_test_results SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NEW.entity_type = 'Observation' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = medical_test_results.id);
END;
CREATE TRIGGER custom_field_values_delete_entity AFTER DELETE ON custom_field_values FOR EACH ROW
BEGIN
    UPDATE patients SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = OLD.entity_id AND OLD.entity_type = 'Patient' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patients.id);
    UPDATE consultations SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = OLD.entity_id AND OLD.entity_type = 'Encounter' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = consultations.id);
    UPDATE users SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = OLD.entity_id AND OLD.entity_type = 'Practitioner' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = users.id);
    UPDATE patient_allergies SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = OLD.entity_id AND OLD.entity_type = 'AllergyIntolerance' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patient_allergies.id);
    UPDATE prescriptions SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = OLD.entity_id AND OLD.entity_type = 'MedicationRequest' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = prescriptions.id);
    UPDATE medical_tests SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = OLD.entity_id AND OLD.entity_type = 'DiagnosticReport' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = medical_tests.id);
    UPDATE medical_test_results SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = OLD.entity_id AND OLD.entity_type = 'Observation' AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = medical_test_results.id);
END;
