-- Quantity search index: one row per (resource, parameter, coding, value) for quantities that
-- have no column of their own (the components of an Observation kept in medical_test_results),
-- maintained by the mapping layer on every FHIR write. The composite parameters
-- component-code-value-quantity and combo-code-value-quantity read it.
CREATE TABLE search_quantities (
    resource_type text NOT NULL,
    row_id        uuid NOT NULL,
    param         text NOT NULL,
    code_system   text NOT NULL,
    code          text NOT NULL,
    value         numeric NOT NULL,
    unit_system   text,
    unit_code     text
);
CREATE INDEX search_quantities_lookup_idx ON search_quantities (resource_type, param, code, value);
CREATE INDEX search_quantities_row_idx ON search_quantities (row_id);
