-- A stored rendering longer than about 2 KB is compressed. pglz, PostgreSQL's default, took about
-- 32 µs to compress a 3 KB resource on the project's machine; lz4 about 9, and it decompresses
-- faster too (every read and search of such a resource). lz4 needs PostgreSQL 14 built with it:
-- elsewhere the column keeps pglz. Renderings already stored keep their compression until
-- written again; both read back the same text.
DO $$
BEGIN
    IF current_setting('server_version_num')::int >= 140000 THEN
        BEGIN
            ALTER TABLE resource_versions ALTER COLUMN resource SET COMPRESSION lz4;
        EXCEPTION WHEN feature_not_supported THEN
            RAISE NOTICE 'lz4 is not available: stored renderings stay compressed with pglz';
        END;
    END IF;
END
$$;
