-- SQLite's migration 18 ends the search index's lookup indexes with row_id, so that a search
-- reads its matches' ids from the index alone. PostgreSQL's indexes are left as they are: it
-- reads a match's row from the table to see whether it is visible anyway, unless the table was
-- vacuumed since the match was written. The number is kept so that both engines' migrations
-- keep the same numbers and names.
SELECT 1;
