-- A trigger's statements are planned once per connection and their plan kept. The statements
-- that touch a parent row (a patient when its identifiers or contacts change, a report when its
-- files or results do) looked for it with `id = ANY (ids)`: planned while the table was still
-- small (a fresh database, the first rows of an import), that plan reads the whole table, and
-- the connection kept it as the table grew. At 10,000 patients an import read the reports
-- 46,000 times over, 1.07 billion rows. The parent is now looked for by its id alone, one id at
-- a time, which every plan finds through the primary key. What the functions do is unchanged: a
-- parent named twice (an update that keeps it) is touched once, as the second look finds the row
-- already written by this transaction.
CREATE OR REPLACE FUNCTION touch_parent_patient() RETURNS trigger AS $$
DECLARE
    ids uuid[];
    one uuid;
BEGIN
    IF TG_OP = 'INSERT' THEN
        ids := ARRAY[NEW.patient_id];
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY[OLD.patient_id];
    ELSE
        ids := ARRAY[NEW.patient_id, OLD.patient_id];
    END IF;
    FOREACH one IN ARRAY ids LOOP
        CONTINUE WHEN one IS NULL;
        UPDATE patients SET updated_at = clock_timestamp()
         WHERE id = one
           AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = patients.id)
           AND xmin::text <> pg_current_xact_id()::xid::text;
    END LOOP;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION touch_report() RETURNS trigger AS $$
DECLARE
    ids uuid[];
    one uuid;
BEGIN
    IF TG_OP = 'INSERT' THEN
        ids := ARRAY[NEW.medical_test_id];
    ELSIF TG_OP = 'DELETE' THEN
        ids := ARRAY[OLD.medical_test_id];
    ELSIF TG_TABLE_NAME = 'medical_test_results' AND NEW.medical_test_id IS NOT DISTINCT FROM OLD.medical_test_id THEN
        -- Only linking or unlinking a result changes its report.
        RETURN NULL;
    ELSE
        ids := ARRAY[NEW.medical_test_id, OLD.medical_test_id];
    END IF;
    FOREACH one IN ARRAY ids LOOP
        CONTINUE WHEN one IS NULL;
        UPDATE medical_tests SET updated_at = clock_timestamp()
         WHERE id = one
           AND NOT EXISTS (SELECT 1 FROM fhir_write_guard g WHERE g.row_id = medical_tests.id)
           AND xmin::text <> pg_current_xact_id()::xid::text;
    END LOOP;
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;
