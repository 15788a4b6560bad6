-- PostgreSQL's migration 12 bounds the keys of its btree indexes (an entry holds at most about
-- 2.7 KB). SQLite keeps long keys on overflow pages and needs nothing; this migration keeps the
-- two engines' migration numbers in step.
SELECT 1;
