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
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.name OPERATOR(pg_catalog.=) model_set));
ALTER TABLE embedstack.jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers_of_the_source ON embedstack.jobs FOR SELECT
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.name OPERATOR(pg_catalog.=) model_set));
ALTER TABLE embedstack.generations ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers_of_the_source ON embedstack.generations FOR SELECT
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.name OPERATOR(pg_catalog.=) model_set));
COMMENT ON POLICY readers_of_the_source ON embedstack.generations IS
  'A generation is visible to the roles that see its model set.';
COMMENT ON POLICY readers_of_the_source ON embedstack.model_sets IS
  'A model set is visible to the roles that may read its source table (SELECT on it or on a column, or owner) '
  'and are not subject to row security on it.';
COMMENT ON POLICY readers_of_the_source ON embedstack.fits IS
  'A fit is visible to the roles that see its model set.';
COMMENT ON POLICY readers_of_the_source ON embedstack.jobs IS
  'A job is visible to the roles that see its model set.';

-- Is `rel` NULL, or a relation owned by the owner of `source`? (What a generation may name.)
CREATE FUNCTION embedstack._owned_like(rel regclass, source regclass) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT rel IS NULL OR EXISTS (SELECT 1 FROM pg_class r, pg_class s
                                   WHERE r.oid = rel AND s.oid = source AND r.relowner = s.relowner)
$$;
COMMENT ON FUNCTION embedstack._owned_like(regclass, regclass) IS
  'Internal: whether a relation is NULL or owned by the owner of the source table (the generations'' policy).';

-- Writing (since 0.3.1 everyone writes as themselves, see catalog_writers.sql): the rows of a
-- model set whose source table the role owns -- the current role and the session's outer role
-- both members of the source's owner (_may_write), so a user's SECURITY DEFINER function cannot
-- lend its caller's ownership. A generation's tables (relation, pending) must belong to the
-- source's owner when they are recorded: the event trigger, retention and drop_model_set drop
-- them with rights of their own, and rely on it (and check it again).
CREATE POLICY writers_own_the_source ON embedstack.model_sets FOR ALL
    USING (embedstack._may_write(source)) WITH CHECK (embedstack._may_write(source));
CREATE POLICY writers_own_the_source ON embedstack.fits FOR ALL
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m
                    WHERE m.name OPERATOR(pg_catalog.=) model_set AND embedstack._may_write(m.source)))
    WITH CHECK (EXISTS (SELECT 1 FROM embedstack.model_sets m
                         WHERE m.name OPERATOR(pg_catalog.=) model_set AND embedstack._may_write(m.source)));
CREATE POLICY writers_own_the_source ON embedstack.jobs FOR ALL
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m
                    WHERE m.name OPERATOR(pg_catalog.=) model_set AND embedstack._may_write(m.source)))
    WITH CHECK (EXISTS (SELECT 1 FROM embedstack.model_sets m
                         WHERE m.name OPERATOR(pg_catalog.=) model_set AND embedstack._may_write(m.source)));
CREATE POLICY writers_own_the_source ON embedstack.generations FOR ALL
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m
                    WHERE m.name OPERATOR(pg_catalog.=) model_set AND embedstack._may_write(m.source)))
    WITH CHECK (EXISTS (SELECT 1 FROM embedstack.model_sets m
                         WHERE m.name OPERATOR(pg_catalog.=) model_set AND embedstack._may_write(m.source)
                           AND embedstack._owned_like(relation, m.source) AND embedstack._owned_like(pending, m.source)));
COMMENT ON POLICY writers_own_the_source ON embedstack.model_sets IS
  'A model set is written by the owners of its source table (the current and the outer role).';
COMMENT ON POLICY writers_own_the_source ON embedstack.fits IS
  'A fit is written by the owners of its model set''s source table.';
COMMENT ON POLICY writers_own_the_source ON embedstack.jobs IS
  'A job is written by the owners of its model set''s source table.';
COMMENT ON POLICY writers_own_the_source ON embedstack.generations IS
  'A generation is written by the owners of its model set''s source table, and names only tables of that owner.';

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

-- The source table and its key and model columns of the model set of this name that has this
-- generation table, visible or not (for the served view's gate below, which must run for roles
-- the catalog's row security hides the model set from). No row when the name is free or belongs
-- to a model set without that generation: a served view left behind (its source dropped while a
-- user's view depended on it) then opens to nobody, whoever registers the name next.
CREATE FUNCTION embedstack._served_columns(model_set text, generation regclass, OUT source oid, OUT columns name[])
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT m.source::oid, m.key_column || m.model_columns
      FROM embedstack.model_sets m JOIN embedstack.generations g ON g.model_set = m.name
     WHERE m.name = _served_columns.model_set AND g.relation = _served_columns.generation
$$;
COMMENT ON FUNCTION embedstack._served_columns(text, regclass) IS
  'Internal (SECURITY DEFINER): the source table and key and model column names of the model set that has this '
  'generation table, else no row.';

-- The gate of every served view: the generation tables carry no grants (only their owner, the
-- source's owner, reads them), and the view (owned by the same role, readable by PUBLIC) lets
-- through the roles that may SELECT the source's key and model columns now and are not subject
-- to row security on it (the view cannot apply the source's policies to the generation's rows,
-- so a role that sees only some rows of the source sees none through the view: 42501). So a GRANT
-- or REVOKE on the source, also one made later, applies to the served vectors at once; no grant
-- has to be copied to each generation. Bound to the model set by its name and the generation the
-- view reads (a regclass constant in the view: it follows renames and a dump and restore, and
-- adds no dependency the view does not have already). Evaluated once per query (a one-time
-- filter: it has no column argument); refuses with 42501 rather than showing an empty result.
CREATE FUNCTION embedstack._may_read_served(model_set text, generation regclass) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src oid;
    cols name[];
BEGIN
    SELECT s.source, s.columns INTO src, cols FROM embedstack._served_columns(model_set, generation) s;
    IF src IS NULL THEN
        RAISE EXCEPTION 'this view served model set "%" from %, which is no longer a generation of that model set',
            model_set, generation USING ERRCODE = '42501',
            HINT = 'the view was left behind when its model set was dropped: its owner can drop it';
    END IF;
    IF NOT has_table_privilege(src, 'SELECT') AND EXISTS (
        SELECT 1 FROM unnest(cols) c
         WHERE NOT has_column_privilege(src, c::text, 'SELECT')) THEN
        RAISE EXCEPTION 'permission denied for the served vectors of model set "%"', model_set USING ERRCODE = '42501',
            HINT = 'reading them needs SELECT on the key and model columns of the source table ' || src::regclass::text;
    END IF;
    IF row_security_active(src) THEN
        RAISE EXCEPTION 'permission denied for the served vectors of model set "%": row-level security applies to you on %',
            model_set, src::regclass USING ERRCODE = '42501',
            HINT = 'the served view cannot apply the source table''s row security policies; query the source (and '
                   'embedstack.query_vector) instead, or ask its owner for a role that bypasses them';
    END IF;
    RETURN true;
END $$;
COMMENT ON FUNCTION embedstack._may_read_served(text, regclass) IS
  'Internal: the gate of a served view: true when the current role may SELECT the source''s key and model '
  'columns and is not subject to row security on it, else ERROR 42501.';

-- The gate of the served views of 0.3.0 (bound to the name only). The 0.3.1 upgrade redefines
-- the served view of every model set; a view it could not know (left behind by a dropped model
-- set) reads nothing any more.
CREATE FUNCTION embedstack._may_read_served(model_set text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'this view served model set "%" under embedstack 0.3.0 and is no longer its served view', model_set
        USING ERRCODE = '42501', HINT = 'CALL embedstack.refresh(...) redefines a model set''s served view; drop views left behind';
END $$;
COMMENT ON FUNCTION embedstack._may_read_served(text) IS
  'Internal: the gate of 0.3.0 served views left behind by a dropped model set: always ERROR 42501.';

-- DROP TABLE of a source drops its model sets with it (their fits, jobs and generations): the
-- freshness triggers went with the table; the served view and the generation tables are dropped
-- here when nothing else depends on them (a user's view built on the served view keeps them,
-- with a WARNING: they are then the user's to drop), and the name becomes free. Runs as the
-- extension's owner, on the model sets of the tables the statement dropped only, and drops only
-- what is provably the model set's own, never a relation merely because a catalog row names it
-- (an owner can write anything into its own rows): generation tables that
-- _is_generation_table accepts, all of one owner (the source's, whose row is gone by now), and
-- the view of the recorded name in the source's schema when it is a view of that owner whose
-- rule reads one of those tables.
CREATE FUNCTION embedstack._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m record;
    ms embedstack.model_sets;
    r record;
    owners oid[];
    tables oid[];
    view_oid oid;
BEGIN
    FOR m IN SELECT s.name, d.schema_name
               FROM embedstack.model_sets s JOIN pg_event_trigger_dropped_objects() d
                 ON d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.objid = s.source::oid LOOP
        SELECT * INTO ms FROM embedstack.model_sets x WHERE x.name = m.name;
        -- The owner of the model set's generation tables (the served one's first).
        SELECT array_agg(DISTINCT c.relowner) INTO owners
          FROM embedstack.generations g JOIN pg_class c ON c.oid = g.relation WHERE g.model_set = ms.name;
        IF cardinality(owners) > 1 THEN
            RAISE WARNING 'embedstack: model set "%" is dropped with its source table; its generation tables have '
                          'different owners, so none of them is dropped', ms.name
                USING HINT = 'drop the ones that are yours yourself';
            owners := '{}';
        END IF;
        SELECT coalesce(array_agg(c.oid), '{}') INTO tables
          FROM embedstack.generations g JOIN pg_class c ON c.oid IN (g.relation, g.pending)
         WHERE g.model_set = ms.name
           AND embedstack._is_generation_table(ms, g.id, c.oid::regclass, c.oid = g.pending::oid, owners[1]);
        -- The view is in the schema of the model set's generations (a source moved with ALTER
        -- TABLE ... SET SCHEMA left them where they were), else in the source's.
        view_oid := to_regclass(format('%I.%I', coalesce((SELECT n.nspname FROM pg_class c JOIN pg_namespace n
                                                              ON n.oid = c.relnamespace WHERE c.oid = ANY (tables) LIMIT 1),
                                                             m.schema_name), ms.view_name));
        IF view_oid IS NOT NULL AND NOT EXISTS (
            SELECT 1 FROM pg_class v JOIN pg_rewrite rw ON rw.ev_class = v.oid
              JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = rw.oid
                              AND d.refclassid = 'pg_class'::regclass AND d.refobjid = ANY (tables)
             WHERE v.oid = view_oid AND v.relkind = 'v' AND v.relowner = owners[1]) THEN
            view_oid := NULL;
        END IF;
        FOR r IN SELECT format('%I.%I', n.nspname, c.relname) AS rel, CASE c.relkind WHEN 'v' THEN 'VIEW' ELSE 'TABLE' END AS kind
                   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                  WHERE c.oid = view_oid OR c.oid = ANY (tables)
                  ORDER BY c.relkind = 'v' DESC, c.oid LOOP
            BEGIN
                EXECUTE format('DROP %s %s', r.kind, r.rel);
            EXCEPTION WHEN dependent_objects_still_exist OR undefined_table THEN
                RAISE WARNING 'embedstack: model set "%" is dropped with its source table, but % is left in place: other objects depend on it',
                    ms.name, r.rel USING HINT = 'drop it yourself once nothing needs it';
            END;
        END LOOP;
        DELETE FROM embedstack.fits f WHERE f.model_set = ms.name;
        DELETE FROM embedstack.generations g WHERE g.model_set = ms.name;
        DELETE FROM embedstack.model_sets x WHERE x.name = ms.name;
    END LOOP;
    -- A partition of a served source dropped (its freshness triggers went with it): its rows left
    -- the source without any trigger seeing them, and they cannot be read any more; the keys the
    -- source no longer has are taken out of the live generations (0.4.0, _apply_as_owner PRUNE,
    -- run as the source's owner).
    FOR m IN SELECT DISTINCT s.name
               FROM embedstack.model_sets s JOIN pg_event_trigger_dropped_objects() d
                 ON d.object_type = 'trigger' AND d.address_names[3] = ANY (embedstack._trigger_names(s.name))
              WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = s.source AND c.relkind = 'p')
              ORDER BY s.name LOOP
        PERFORM embedstack._apply_as_owner(m.name, (SELECT x.source FROM embedstack.model_sets x WHERE x.name = m.name), 'PRUNE');
    END LOOP;
END $$;
REVOKE EXECUTE ON FUNCTION embedstack._on_sql_drop() FROM PUBLIC;
COMMENT ON FUNCTION embedstack._on_sql_drop() IS
  'Internal event trigger function: deletes the model sets (fits, jobs, generations) of dropped source tables '
  'and drops their served views and generation tables when nothing else depends on them.';
CREATE EVENT TRIGGER embedstack_source_dropped ON sql_drop EXECUTE FUNCTION embedstack._on_sql_drop();
COMMENT ON EVENT TRIGGER embedstack_source_dropped IS
  'Drops the model sets of a table when the table is dropped (embedstack).';
