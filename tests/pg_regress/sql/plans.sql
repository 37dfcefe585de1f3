-- What the planner sees of a served model set: the view's definition and the plan of the
-- README's query. Both texts are PostgreSQL's own deparser and EXPLAIN output, which changed in
-- PostgreSQL 16 (a one-table view's columns are no longer qualified; an InitPlan's result shows
-- as "(InitPlan 1).col1" instead of "$0"): expected/plans.out holds PostgreSQL 15's text and
-- expected/plans_1.out that of 16 and later; pg_regress accepts either. Everything else the
-- suite prints is the same on every supported major. Runs after walkthrough, on the model set
-- 'walk' it leaves served.

-- The view: the key and the combined vector (no dimension: a refit of another width redefines
-- it in place), behind the gate that checks the reader's privileges on the source, evaluated
-- once per query (an InitPlan); the gate is bound to the model set's name and the generation
-- the view reads.
SELECT pg_get_viewdef('walk.items_walk') AS view;

-- The README's query: the HNSW index scan of the served generation, each row joined to the
-- source by its primary key.
SET enable_seqscan = off;
EXPLAIN (COSTS OFF) SELECT i.id FROM walk.items i JOIN walk.items_walk v USING (id)
ORDER BY v.walk_combined <#> embedstack.query_vector('walk', 1)
LIMIT 5;
RESET enable_seqscan;
