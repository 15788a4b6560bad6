-- A file attached to a medical test is part of its DiagnosticReport (presentedForm), and a
-- result linked to it (medical_test_results.medical_test_id) part of its result list: attaching,
-- linking, changing or removing one is a change of the report, so the medical_tests row is
-- touched (its version_id and updated_at move), except inside a FHIR write, which marks the row
-- in fhir_write_guard. Custom field values of a vital-sign Observation touch its
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

-- Linking a result to its report (medical_test_id, written by DiagnosticReport.result) is not a
-- change of the Observation: it makes no new version.
DROP TRIGGER medical_test_results_touch;
CREATE TRIGGER medical_test_results_touch AFTER UPDATE ON medical_test_results FOR EACH ROW
WHEN NOT (NEW.medical_test_id IS NOT OLD.medical_test_id AND NEW.fhir_id IS OLD.fhir_id AND NEW.patient_id IS OLD.patient_id AND NEW.consultation_id IS OLD.consultation_id AND NEW.status IS OLD.status AND NEW.category_code IS OLD.category_code AND NEW.code IS OLD.code AND NEW.code_system IS OLD.code_system AND NEW.code_display IS OLD.code_display AND NEW.value_type IS OLD.value_type AND NEW.value_quantity IS OLD.value_quantity AND NEW.value_unit IS OLD.value_unit AND NEW.value_unit_system IS OLD.value_unit_system AND NEW.value_code IS OLD.value_code AND NEW.value_string IS OLD.value_string AND NEW.value_boolean IS OLD.value_boolean AND NEW.value_integer IS OLD.value_integer AND NEW.value_json IS OLD.value_json AND NEW.reference_low IS OLD.reference_low AND NEW.reference_high IS OLD.reference_high AND NEW.interpretation_code IS OLD.interpretation_code AND NEW.effective_at IS OLD.effective_at AND NEW.effective_end IS OLD.effective_end AND NEW.issued_at IS OLD.issued_at AND NEW.performer_id IS OLD.performer_id AND NEW.deleted_at IS OLD.deleted_at AND NEW.fhir_extra IS OLD.fhir_extra AND NEW.code_text IS OLD.code_text)
BEGIN
    UPDATE medical_test_results SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), version_id = OLD.version_id + 1, created_at = OLD.created_at WHERE id = NEW.id;
END;
CREATE TRIGGER medical_test_results_report_insert AFTER INSERT ON medical_test_results FOR EACH ROW
WHEN NEW.medical_test_id IS NOT NULL
BEGIN
    UPDATE medical_tests SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id = NEW.medical_test_id AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = medical_tests.id);
END;
CREATE TRIGGER medical_test_results_report_update AFTER UPDATE ON medical_test_results FOR EACH ROW
WHEN NEW.medical_test_id IS NOT OLD.medical_test_id
BEGIN
    UPDATE medical_tests SET updated_at = (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')) WHERE id IN (NEW.medical_test_id, OLD.medical_test_id) AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = medical_tests.id);
END;
