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

-- DROP TABLE of a source drops its model sets with it (their fits and jobs too): the freshness
-- trigger, served column and indexes went with the table, and the name becomes free. Runs as
-- the extension's owner, but only on the objects the dropping statement dropped.
CREATE FUNCTION embedstack._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM embedstack.fits f
     USING embedstack.model_sets m, pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.objid = m.source::oid AND f.model_set = m.name;
    DELETE FROM embedstack.model_sets m
     USING pg_event_trigger_dropped_objects() d
     WHERE d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.objid = m.source::oid;
END $$;
REVOKE EXECUTE ON FUNCTION embedstack._on_sql_drop() FROM PUBLIC;
COMMENT ON FUNCTION embedstack._on_sql_drop() IS
  'Internal event trigger function: deletes the model sets (fits, jobs) of dropped source tables.';
CREATE EVENT TRIGGER embedstack_source_dropped ON sql_drop EXECUTE FUNCTION embedstack._on_sql_drop();
COMMENT ON EVENT TRIGGER embedstack_source_dropped IS
  'Drops the model sets of a table when the table is dropped (embedstack).';
