-- PostgreSQL's migration 11 lets a FHIR transaction that inserts results already linked to a
-- new report skip touch_report for them. SQLite's trigger for such a row is a plain UPDATE that
-- finds no report row yet, and stays; this migration keeps the two engines' migration numbers
-- in step.
SELECT 1;
