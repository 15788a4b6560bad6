-- Quantity search index: one row per (resource, parameter, coding, value) for quantities that
-- have no column of their own (the components of an Observation kept in medical_test_results),
-- maintained by the mapping layer on every FHIR write. The composite parameters
-- component-code-value-quantity and combo-code-value-quantity read it.
CREATE TABLE search_quantities (
    resource_type TEXT NOT NULL,
    row_id        TEXT NOT NULL,
    param         TEXT NOT NULL,
    code_system   TEXT NOT NULL,
    code          TEXT NOT NULL,
    value         REAL NOT NULL,
    unit_system   TEXT,
    unit_code     TEXT
);
CREATE INDEX search_quantities_lookup_idx ON search_quantities (resource_type, param, code, value);
CREATE INDEX search_quantities_row_idx ON search_quantities (row_id);
