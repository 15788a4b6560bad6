-- A Practitioner's identifier (NPI) is the users.license_number column: conditional creates and
-- conditional references find practitioners by it, one lookup per reference during an import.
CREATE INDEX users_license_number_idx ON users (license_number);
