-- History pages by (resource_type, last_updated, rowid) (migration 0006); the older index by
-- (resource_type, last_updated, id) serves no query and costs every version an index entry.
DROP INDEX resource_versions_type_time_idx;
