-- Long values: a PostgreSQL btree index entry holds at most about 2.7 KB, and a row whose value
-- is longer cannot be written at all ("index row size exceeds btree maximum"). Every index on a
-- text a client writes (a name, an address line, a code, a system, an identifier, an email) keys
-- something bounded instead, and every search stays exact:
--   - equality only: a hash index (4 bytes a row, any length of value, used by `col = ?`);
--     the search index's exact values: a btree of those up to 250 characters and a hash index
--     of the longer ones, each partial, each query naming the length of the value it looks for;
--   - uniqueness: a unique index on md5 of the values (queries find rows through the hash
--     index of the same column);
--   - prefix search: a btree on the first 256 characters, which the string search ranges over
--     before it tests the whole value with LIKE;
--   - a value range after a code: a btree of codes up to 250 characters (partial, as above);
--     a longer code is found by the code's hash index.
-- SQLite keeps its indexes: its btree stores long keys on overflow pages.

-- The search index.
DROP INDEX search_strings_lookup_idx;
CREATE INDEX search_strings_lookup_idx ON search_strings (resource_type, param, left(value, 256) text_pattern_ops);
DROP INDEX search_strings_exact_idx;
CREATE INDEX search_strings_exact_idx ON search_strings (resource_type, param, exact) WHERE length(exact) <= 250;
CREATE INDEX search_strings_exact_long_idx ON search_strings USING hash (exact) WHERE length(exact) > 250;
DROP INDEX search_quantities_lookup_idx;
CREATE INDEX search_quantities_lookup_idx ON search_quantities (resource_type, param, value);
CREATE INDEX search_quantities_code_idx ON search_quantities USING hash (code);

-- Catalogs whose entries clients' codings add.
ALTER TABLE allergies DROP CONSTRAINT allergies_system_code_key;
CREATE UNIQUE INDEX allergies_system_code_key ON allergies (md5(system), md5(code));
DROP INDEX allergies_local_code_idx;
CREATE UNIQUE INDEX allergies_local_code_idx ON allergies (md5(code)) WHERE system IS NULL;
CREATE INDEX allergies_code_idx ON allergies USING hash (code);
ALTER TABLE medications DROP CONSTRAINT medications_system_code_key;
CREATE UNIQUE INDEX medications_system_code_key ON medications (md5(system), md5(code));
DROP INDEX medications_local_code_idx;
CREATE UNIQUE INDEX medications_local_code_idx ON medications (md5(code)) WHERE system IS NULL;
CREATE INDEX medications_code_idx ON medications USING hash (code);
ALTER TABLE specialties DROP CONSTRAINT specialties_code_key;
CREATE UNIQUE INDEX specialties_code_key ON specialties (md5(code));
CREATE INDEX specialties_code_idx ON specialties USING hash (code);

-- Practitioners.
ALTER TABLE users DROP CONSTRAINT users_email_key;
CREATE UNIQUE INDEX users_email_key ON users (md5(email));
CREATE INDEX users_email_idx ON users USING hash (email);
DROP INDEX users_license_number_idx;
CREATE INDEX users_license_number_idx ON users USING hash (license_number);

-- Identifiers.
DROP INDEX patient_identifiers_value_idx;
CREATE INDEX patient_identifiers_value_idx ON patient_identifiers USING hash (value);

-- Encounters.
DROP INDEX consultations_class_idx;
CREATE INDEX consultations_class_idx ON consultations USING hash (class_code);
DROP INDEX consultations_type_idx;
CREATE INDEX consultations_type_idx ON consultations USING hash (type_code);
DROP INDEX consultations_reason_idx;
CREATE INDEX consultations_reason_idx ON consultations USING hash (reason_code);

-- Conditions kept in the medical histories.
DROP INDEX medical_histories_code_idx;
CREATE INDEX medical_histories_code_idx ON medical_histories USING hash (condition_code);
DROP INDEX medical_histories_category_idx;
CREATE INDEX medical_histories_category_idx ON medical_histories USING hash (category);

-- Results and reports.
DROP INDEX medical_test_results_code_idx;
CREATE INDEX medical_test_results_code_idx ON medical_test_results USING hash (code);
DROP INDEX medical_test_results_category_idx;
CREATE INDEX medical_test_results_category_idx ON medical_test_results USING hash (category_code);
DROP INDEX medical_test_results_value_code_idx;
CREATE INDEX medical_test_results_value_code_idx ON medical_test_results USING hash (value_code);
DROP INDEX medical_test_results_value_quantity_idx;
CREATE INDEX medical_test_results_value_quantity_idx ON medical_test_results (code, value_quantity) WHERE length(code) <= 250;
DROP INDEX medical_tests_code_idx;
CREATE INDEX medical_tests_code_idx ON medical_tests USING hash (code);
DROP INDEX medical_tests_category_idx;
CREATE INDEX medical_tests_category_idx ON medical_tests USING hash (category_code);

-- The clinic application's own lookups by name: equality keeps its index.
DROP INDEX patients_last_name_idx;
CREATE INDEX patients_last_name_idx ON patients USING hash (lower(last_name));
DROP INDEX medications_display_idx;
CREATE INDEX medications_display_idx ON medications USING hash (lower(display));
