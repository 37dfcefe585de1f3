-- Who sees which catalog rows, and what happens to a model set when its source goes.
--
-- Reading: each role sees the model sets whose source table it may read (SELECT on the table
-- or on any of its columns, or membership in its owner), and only their fits and jobs. Those
-- rows carry what a reader of the source could compute anyway, but also key values (a job's
-- cursor and error messages) and statistics of the training pairs (fits.state), which must not
-- reach roles that cannot read the table. Writing: no policy is needed, the catalog tables are
-- writable by their owner only (see catalog_writers.sql); the owner and superusers bypass row
-- security, so the extension's own writers and pg_dump see every row.

ALTER TABLE embedstack.model_sets ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers_of_the_source ON embedstack.model_sets FOR SELECT USING (embedstack._may_read(source));
-- The subqueries below see model_sets through its own policy.
ALTER TABLE embedstack.fits ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers_of_the_source ON embedstack.fits FOR SELECT
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.name = model_set));
ALTER TABLE embedstack.jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers_of_the_source ON embedstack.jobs FOR SELECT
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.name = model_set));
ALTER TABLE embedstack.generations ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers_of_the_source ON embedstack.generations FOR SELECT
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.name = model_set));
COMMENT ON POLICY readers_of_the_source ON embedstack.generations IS
  'A generation is visible to the roles that see its model set.';
COMMENT ON POLICY readers_of_the_source ON embedstack.model_sets IS
  'A model set is visible to the roles that may read its source table (SELECT on it or on a column, or owner).';
COMMENT ON POLICY readers_of_the_source ON embedstack.fits IS
  'A fit is visible to the roles that see its model set.';
COMMENT ON POLICY readers_of_the_source ON embedstack.jobs IS
  'A job is visible to the roles that see its model set.';

-- Does a model set of this name exist, visible or not? Names are one namespace per database
-- (like table names, which pg_class shows to everyone): reveals existence only, so that a
-- hidden model set is "permission denied" rather than "does not exist", and a taken name is
-- "already exists".
CREATE FUNCTION embedstack._model_set_exists(model_set text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.name = model_set)
$$;
COMMENT ON FUNCTION embedstack._model_set_exists(text) IS
  'Internal (SECURITY DEFINER): whether a model set of this name exists, visible to the caller or not.';

-- The key and model columns of a model set's source, visible or not (for the served view's
-- gate below, which must run for roles the catalog's row security hides the model set from).
CREATE FUNCTION embedstack._served_columns(model_set text, OUT source oid, OUT columns name[])
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT m.source::oid, m.key_column || m.model_columns FROM embedstack.model_sets m WHERE m.name = model_set
$$;
COMMENT ON FUNCTION embedstack._served_columns(text) IS
  'Internal (SECURITY DEFINER): the source table and the key and model column names of a model set.';

-- The gate of every served view: the generation tables carry no grants (only their owner, the
-- source's owner, reads them), and the view (owned by the same role, readable by PUBLIC) lets
-- through the roles that may SELECT the source's key and model columns now. So a GRANT or REVOKE
-- on the source, also one made later, applies to the served vectors at once; no grant has to be
-- copied to each generation. Evaluated once per query (a one-time filter: it has no column
-- argument); refuses with 42501 rather than showing an empty result.
CREATE FUNCTION embedstack._may_read_served(model_set text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src oid;
    cols name[];
BEGIN
    SELECT s.source, s.columns INTO src, cols FROM embedstack._served_columns(model_set) s;
    IF src IS NULL THEN
        RAISE EXCEPTION 'model set "%" does not exist', model_set USING ERRCODE = '42704';
    END IF;
    IF NOT has_table_privilege(src, 'SELECT') AND EXISTS (
        SELECT 1 FROM unnest(cols) c
         WHERE NOT has_column_privilege(src, c::text, 'SELECT')) THEN
        RAISE EXCEPTION 'permission denied for the served vectors of model set "%"', model_set USING ERRCODE = '42501',
            HINT = 'reading them needs SELECT on the key and model columns of the source table ' || src::regclass::text;
    END IF;
    RETURN true;
END $$;
COMMENT ON FUNCTION embedstack._may_read_served(text) IS
  'Internal: the gate of a served view: true when the current role may SELECT the source''s key and model '
  'columns, else ERROR 42501.';

-- DROP TABLE of a source drops its model sets with it (their fits, jobs and generations): the
-- freshness triggers went with the table; the served view and the generation tables are dropped
-- here when nothing else depends on them (a user's view built on the served view keeps them,
-- with a WARNING: they are then the user's to drop), and the name becomes free. Runs as the
-- extension's owner, but only on the model sets of the tables the statement dropped, and drops
-- only relations recorded in the catalog whose name and schema still match.
CREATE FUNCTION embedstack._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m record;
    r record;
BEGIN
    FOR m IN SELECT ms.name, ms.view_name, d.schema_name
               FROM embedstack.model_sets ms JOIN pg_event_trigger_dropped_objects() d
                 ON d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.objid = ms.source::oid LOOP
        FOR r IN SELECT format('%I.%I', m.schema_name, m.view_name) AS rel, 'VIEW' AS kind
                  WHERE to_regclass(format('%I.%I', m.schema_name, m.view_name)) IS NOT NULL
                    AND (SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass(format('%I.%I', m.schema_name, m.view_name))) = 'v'
                 UNION ALL
                 SELECT g.relation::text, 'TABLE' FROM embedstack.generations g JOIN pg_class c ON c.oid = g.relation
                  WHERE g.model_set = m.name
                 UNION ALL
                 SELECT g.pending::text, 'TABLE' FROM embedstack.generations g JOIN pg_class c ON c.oid = g.pending
                  WHERE g.model_set = m.name LOOP
            BEGIN
                EXECUTE format('DROP %s %s', r.kind, r.rel);
            EXCEPTION WHEN dependent_objects_still_exist THEN
                RAISE WARNING 'embedstack: model set "%" is dropped with its source table, but % is left in place: other objects depend on it',
                    m.name, r.rel USING HINT = 'drop it yourself once nothing needs it';
            END;
        END LOOP;
        DELETE FROM embedstack.fits f WHERE f.model_set = m.name;
        DELETE FROM embedstack.generations g WHERE g.model_set = m.name;
        DELETE FROM embedstack.model_sets ms WHERE ms.name = m.name;
    END LOOP;
END $$;
REVOKE EXECUTE ON FUNCTION embedstack._on_sql_drop() FROM PUBLIC;
COMMENT ON FUNCTION embedstack._on_sql_drop() IS
  'Internal event trigger function: deletes the model sets (fits, jobs, generations) of dropped source tables '
  'and drops their served views and generation tables when nothing else depends on them.';
CREATE EVENT TRIGGER embedstack_source_dropped ON sql_drop EXECUTE FUNCTION embedstack._on_sql_drop();
COMMENT ON EVENT TRIGGER embedstack_source_dropped IS
  'Drops the model sets of a table when the table is dropped (embedstack).';
