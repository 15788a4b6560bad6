-- PostgreSQL's migration 19 compresses the stored renderings with lz4. SQLite stores text as it
-- is: nothing to change. The number is kept so that both engines' migrations keep the same
-- numbers and names.
SELECT 1;
