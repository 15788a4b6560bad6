-- A file attached to a medical test is part of its DiagnosticReport (presentedForm): attaching,
-- changing or removing one is a change of the report, so the medical_tests row is touched (its
-- version_id and updated_at move), except inside a FHIR write, which marks the row in
-- fhir_write_guard. Custom field values of a vital-sign Observation touch its
-- vital_sign_observations row the same way.
CREATE TRIGGER file_attachments_report_insert AFTER INSERT ON file_attachments FOR EACH ROW
WHEN NEW.medical_test_id IS NOT NULL
BEGIN
    UPDATE medical_tests SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.medical_test_id AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = medical_tests.id);
END;
CREATE TRIGGER file_attachments_report_update AFTER UPDATE ON file_attachments FOR EACH ROW
BEGIN
    UPDATE medical_tests SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id IN (NEW.medical_test_id, OLD.medical_test_id) AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = medical_tests.id);
END;
CREATE TRIGGER file_attachments_report_delete AFTER DELETE ON file_attachments FOR EACH ROW
WHEN OLD.medical_test_id IS NOT NULL
BEGIN
    UPDATE medical_tests SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = OLD.medical_test_id AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = medical_tests.id);
END;

CREATE TRIGGER custom_field_values_vital_insert AFTER INSERT ON custom_field_values FOR EACH ROW
WHEN NEW.entity_type = 'Observation'
BEGIN
    UPDATE vital_sign_observations SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = vital_sign_observations.id);
END;
CREATE TRIGGER custom_field_values_vital_update AFTER UPDATE ON custom_field_values FOR EACH ROW
WHEN NEW.entity_type = 'Observation'
BEGIN
    UPDATE vital_sign_observations SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.entity_id AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = vital_sign_observations.id);
END;
CREATE TRIGGER custom_field_values_vital_delete AFTER DELETE ON custom_field_values FOR EACH ROW
WHEN OLD.entity_type = 'Observation'
BEGIN
    UPDATE vital_sign_observations SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = OLD.entity_id AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = vital_sign_observations.id);
END;
