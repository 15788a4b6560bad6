-- PostgreSQL's migration 20 makes its triggers find a parent row by its id alone (a plan kept
-- from a small table read the whole table). SQLite plans a trigger's statements each time it
-- runs them and finds the parent through its primary key: nothing to change. The number is kept
-- so that both engines' migrations keep the same numbers and names.
SELECT 1;
