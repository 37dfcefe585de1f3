-- embedstack 0.3.0 -> 0.3.1: the security release (issue 18). Only what changed; each change says
-- why. The upgrade-equals-fresh-install test (pgrx-tests/tests/operations_lifecycle.rs) compares
-- the result with a fresh 0.3.1 install, object by object.
-- In short: no function switches to another role to write the catalog any more (0.3.0's
-- embedstack._write did, and any role could become superuser through it); the catalog is written
-- by each role as itself under row security; everything that drops or writes a relation named in
-- the catalog checks that it is the model set's own; procedures and C code pin search_path; the
-- served views' gate is bound to the generation it reads and refuses roles subject to row security.
\echo Use "ALTER EXTENSION embedstack UPDATE TO '0.3.1'" to load this file. \quit

-- 1. The door that ran catalog writes as the catalog's owner is gone (its statement was parsed
-- with the caller's search_path and cast the caller's arguments: a domain named text in pg_temp
-- or a user cast ran the caller's code as superuser). The library keeps its C symbol, which now
-- runs the writer as the caller (the install scripts of earlier releases create the function).
DROP FUNCTION embedstack._write(text, "any");

-- 2. The catalog is written by each role as itself: PUBLIC may INSERT, UPDATE and DELETE, under
-- row-security policies that allow the rows of model sets whose source the role owns (current and
-- outer role), and, for generations, only relations of the source's owner. SELECT on the
-- sequences lets non-superusers pg_dump the configuration tables; USAGE lets the writers draw ids.
-- (INSERT and UPDATE of every column but the ids: an id a role chose itself could be one the
-- sequence hands out next, and every other role's insert would fail on it.)
GRANT SELECT, INSERT, UPDATE, DELETE ON embedstack.model_sets TO PUBLIC;
GRANT SELECT, DELETE ON embedstack.fits, embedstack.jobs, embedstack.generations TO PUBLIC;
GRANT INSERT (model_set, created_at, options, weights, intercept, diagnostics, state, training_source),
      UPDATE (model_set, created_at, options, weights, intercept, diagnostics, state, training_source)
   ON embedstack.fits TO PUBLIC;
GRANT INSERT (model_set, relation, index_name, fit_id, multipliers, storage, width, state, cursor_key, rows_written,
              created_at, served_at, pending, pending_open),
      UPDATE (model_set, relation, index_name, fit_id, multipliers, storage, width, state, cursor_key, rows_written,
              created_at, served_at, pending, pending_open)
   ON embedstack.generations TO PUBLIC;
GRANT INSERT (model_set, kind, params, fit_id, phase, rows_done, rows_total, cursor_key, index_name, state, outcome,
              details, error, pid, resumed_from, started_at, updated_at, finished_at, generation),
      UPDATE (model_set, kind, params, fit_id, phase, rows_done, rows_total, cursor_key, index_name, state, outcome,
              details, error, pid, resumed_from, started_at, updated_at, finished_at, generation)
   ON embedstack.jobs TO PUBLIC;
GRANT USAGE, SELECT ON SEQUENCE embedstack.fits_id_seq, embedstack.generations_id_seq, embedstack.jobs_id_seq TO PUBLIC;
CREATE FUNCTION embedstack."_may_write"(
	"source" regclass /* RegClass */
) RETURNS bool /* bool */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_may_write_wrapper';
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

-- The readers' policies: the same rule, with the operator named by its schema (a policy is
-- parsed once, when it is created, but a fresh install and an upgrade must define it alike).
ALTER POLICY readers_of_the_source ON embedstack.fits
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.name OPERATOR(pg_catalog.=) model_set));
ALTER POLICY readers_of_the_source ON embedstack.jobs
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.name OPERATOR(pg_catalog.=) model_set));
ALTER POLICY readers_of_the_source ON embedstack.generations
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.name OPERATOR(pg_catalog.=) model_set));
COMMENT ON POLICY readers_of_the_source ON embedstack.model_sets IS
  'A model set is visible to the roles that may read its source table (SELECT on it or on a column, or owner) '
  'and are not subject to row security on it.';

-- 3. Functions: the writers check ownership themselves and run as the caller (executable by
-- PUBLIC now); the served views' gate is bound to the model set's name and generation table and refuses
-- roles subject to row security on the source (the 0.3.0 one-argument gate now always refuses:
-- step 5 redefines every served view); the event trigger, retention and drop_model_set drop only
-- what is provably the model set's own; names someone took get a random suffix; cut-over and
-- rollback lock the view with short attempts, bounded by embedstack.cutover_wait_timeout;
-- procedures pin search_path at entry and after each COMMIT; _in_holdout names its operators.
DROP FUNCTION embedstack._served_columns(text);
CREATE FUNCTION embedstack._owned_model_set(model_set text) RETURNS embedstack.model_sets
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
BEGIN
    PERFORM embedstack._check_owner(ms.source);
    RETURN ms;
END $$;
COMMENT ON FUNCTION embedstack._owned_model_set(text) IS
  'Internal: a model set''s catalog row when the calling role (and the outer role) own its source, else 42501 (42704: no such model set).';

CREATE FUNCTION embedstack._owned_job(job_id bigint) RETURNS embedstack.model_sets
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    name text;
BEGIN
    SELECT j.model_set INTO name FROM embedstack.jobs j WHERE j.id = job_id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'job % does not exist', job_id USING ERRCODE = '42704';
    END IF;
    RETURN embedstack._owned_model_set(name);
END $$;
COMMENT ON FUNCTION embedstack._owned_job(bigint) IS
  'Internal: the model set of a job when the calling role may change it, else 42501 (42704: no such job).';

CREATE OR REPLACE FUNCTION embedstack._w_insert_model_set(
    name text, source regclass, key_column name, model_columns name[], model_dims integer[],
    model_types regtype[], mode text, threshold double precision, combined_column name, storage text, view_name name)
RETURNS embedstack.model_sets
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r embedstack.model_sets;
BEGIN
    PERFORM embedstack._check_owner(source);
    INSERT INTO embedstack.model_sets AS m (name, source, key_column, model_columns, model_dims, model_types,
                                            mode, threshold, combined_column, storage, view_name)
    VALUES (name, source, key_column, model_columns, model_dims, model_types, mode, threshold, combined_column, storage,
            view_name)
    RETURNING m.* INTO r;
    RETURN r;
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_delete_model_set(model_set text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    DELETE FROM embedstack.fits f WHERE f.model_set = _w_delete_model_set.model_set;   -- no FK: see catalog.sql
    DELETE FROM embedstack.generations g WHERE g.model_set = _w_delete_model_set.model_set;
    DELETE FROM embedstack.model_sets m WHERE m.name = model_set;
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_insert_fit(
    model_set text, options jsonb, weights double precision[], intercept double precision,
    diagnostics jsonb, state double precision[], training_source jsonb)
RETURNS embedstack.fits
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r embedstack.fits;
    keep integer := embedstack._keep_history();
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    INSERT INTO embedstack.fits AS f (model_set, options, weights, intercept, diagnostics, state, training_source)
    VALUES (model_set, options, weights, intercept, diagnostics, state, training_source)
    RETURNING f.* INTO r;
    IF keep > 0 THEN
        DELETE FROM embedstack.fits f
         WHERE f.model_set = _w_insert_fit.model_set
           AND f.id < (SELECT min(x.id) FROM (SELECT g.id FROM embedstack.fits g WHERE g.model_set = _w_insert_fit.model_set
                                               ORDER BY g.id DESC LIMIT keep) x)
           AND f.id NOT IN (SELECT v FROM embedstack.model_sets m, LATERAL (VALUES (m.active_fit), (m.previous_fit)) u(v)
                             WHERE m.name = _w_insert_fit.model_set AND v IS NOT NULL)
           AND f.id NOT IN (SELECT g.fit_id FROM embedstack.generations g WHERE g.model_set = _w_insert_fit.model_set)
           AND f.id NOT IN (SELECT j.fit_id FROM embedstack.jobs j
                             WHERE j.model_set = _w_insert_fit.model_set AND j.state = 'running' AND j.fit_id IS NOT NULL);
        DELETE FROM embedstack.jobs j
         WHERE j.model_set = _w_insert_fit.model_set AND j.state <> 'running'
           AND j.id < (SELECT min(x.id) FROM (SELECT g.id FROM embedstack.jobs g WHERE g.model_set = _w_insert_fit.model_set
                                               ORDER BY g.id DESC LIMIT keep) x);
    END IF;
    RETURN r;
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_insert_generation(model_set text, fit_id bigint, multipliers double precision[],
                                                storage text, width integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    INSERT INTO embedstack.generations AS g (model_set, fit_id, multipliers, storage, width, state)
    VALUES (model_set, fit_id, multipliers, storage, width, 'building')
    RETURNING g.id INTO id;
    RETURN id;
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_generation_set(model_set text, generation bigint, relation regclass,
    index_name name, cursor_key text, rows_written bigint) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    UPDATE embedstack.generations g
       SET relation = coalesce(_w_generation_set.relation, g.relation),
           index_name = coalesce(_w_generation_set.index_name, g.index_name),
           cursor_key = coalesce(_w_generation_set.cursor_key, g.cursor_key),
           rows_written = coalesce(_w_generation_set.rows_written, g.rows_written)
     WHERE g.id = generation AND g.model_set = _w_generation_set.model_set;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'generation % of model set "%" does not exist', generation, model_set USING ERRCODE = '42704';
    END IF;
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_delete_generation(model_set text, generation bigint) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    DELETE FROM embedstack.generations g WHERE g.id = generation AND g.model_set = _w_delete_generation.model_set;
    UPDATE embedstack.model_sets m SET previous_fit = NULL, previous_generation = NULL
     WHERE m.name = _w_delete_generation.model_set AND m.previous_generation = generation;
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_generation_pending(model_set text, generation bigint, pending regclass, open boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    UPDATE embedstack.generations g SET pending = _w_generation_pending.pending, pending_open = open
     WHERE g.id = generation AND g.model_set = _w_generation_pending.model_set;
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_serve(model_set text, fit_id bigint, generation bigint) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g embedstack.generations;
    m embedstack.model_sets;
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    IF NOT EXISTS (SELECT 1 FROM embedstack.fits f WHERE f.id = fit_id AND f.model_set = _w_serve.model_set) THEN
        RAISE EXCEPTION 'fit % of model set "%" does not exist', fit_id, model_set USING ERRCODE = '42704';
    END IF;
    SELECT * INTO g FROM embedstack.generations x WHERE x.id = generation AND x.model_set = _w_serve.model_set;
    IF NOT FOUND OR g.relation IS NULL THEN
        RAISE EXCEPTION 'generation % of model set "%" does not exist', generation, model_set USING ERRCODE = '42704';
    END IF;
    SELECT * INTO m FROM embedstack.model_sets x WHERE x.name = _w_serve.model_set FOR UPDATE;
    UPDATE embedstack.generations x SET state = 'retained'
     WHERE x.model_set = _w_serve.model_set AND x.state = 'served' AND x.id <> generation;
    UPDATE embedstack.generations x SET state = 'served', served_at = clock_timestamp() WHERE x.id = generation;
    UPDATE embedstack.model_sets x
       SET active_fit = _w_serve.fit_id, served_generation = generation, served_multipliers = g.multipliers,
           served_storage = g.storage, served_index = g.index_name,
           previous_fit = CASE WHEN m.active_fit IS DISTINCT FROM _w_serve.fit_id OR m.served_generation IS DISTINCT FROM generation
                               THEN m.active_fit ELSE x.previous_fit END,
           previous_generation = CASE WHEN m.active_fit IS DISTINCT FROM _w_serve.fit_id OR m.served_generation IS DISTINCT FROM generation
                                      THEN m.served_generation ELSE x.previous_generation END
     WHERE x.name = _w_serve.model_set;
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_job_start(model_set text, kind text, params jsonb, phase text, resumed_from bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM embedstack._owned_model_set(model_set);
    -- A job still marked running was interrupted (its session is gone: the caller holds the lock).
    UPDATE embedstack.jobs j SET state = 'interrupted', finished_at = j.updated_at
     WHERE j.model_set = _w_job_start.model_set AND j.state = 'running';
    INSERT INTO embedstack.jobs AS j (model_set, kind, params, phase, state, pid, resumed_from)
    VALUES (model_set, kind, params, phase, 'running', pg_backend_pid(), resumed_from)
    RETURNING j.id INTO id;
    RETURN id;
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_job_update(job_id bigint, phase text, rows_done bigint DEFAULT NULL,
    rows_total bigint DEFAULT NULL, cursor_key text DEFAULT NULL, fit_id bigint DEFAULT NULL,
    index_name name DEFAULT NULL, details jsonb DEFAULT NULL, generation bigint DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_job(job_id);
    UPDATE embedstack.jobs j
       SET phase = coalesce(_w_job_update.phase, j.phase),
           rows_done = coalesce(_w_job_update.rows_done, j.rows_done),
           rows_total = coalesce(_w_job_update.rows_total, j.rows_total),
           cursor_key = coalesce(_w_job_update.cursor_key, j.cursor_key),
           fit_id = coalesce(_w_job_update.fit_id, j.fit_id),
           index_name = coalesce(_w_job_update.index_name, j.index_name),
           details = j.details || coalesce(_w_job_update.details, '{}'),
           generation = coalesce(_w_job_update.generation, j.generation),
           updated_at = clock_timestamp()
     WHERE j.id = job_id AND j.state = 'running';
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_job_finish(job_id bigint, state text, outcome text, error jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_job(job_id);
    IF state NOT IN ('succeeded', 'kept', 'failed') THEN
        RAISE EXCEPTION 'invalid final job state "%"', state USING ERRCODE = '22023';
    END IF;
    UPDATE embedstack.jobs j
       SET state = _w_job_finish.state, outcome = _w_job_finish.outcome, error = _w_job_finish.error,
           phase = CASE WHEN _w_job_finish.state = 'failed' THEN j.phase ELSE 'done' END,
           updated_at = clock_timestamp(), finished_at = clock_timestamp()
     WHERE j.id = job_id;
END $$;

CREATE FUNCTION embedstack._served_columns(model_set text, generation regclass, OUT source oid, OUT columns name[])
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT m.source::oid, m.key_column || m.model_columns
      FROM embedstack.model_sets m JOIN embedstack.generations g ON g.model_set = m.name
     WHERE m.name = _served_columns.model_set AND g.relation = _served_columns.generation
$$;
COMMENT ON FUNCTION embedstack._served_columns(text, regclass) IS
  'Internal (SECURITY DEFINER): the source table and key and model column names of the model set that has this '
  'generation table, else no row.';

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

CREATE OR REPLACE FUNCTION embedstack._may_read_served(model_set text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RAISE EXCEPTION 'this view served model set "%" under embedstack 0.3.0 and is no longer its served view', model_set
        USING ERRCODE = '42501', HINT = 'CALL embedstack.refresh(...) redefines a model set''s served view; drop views left behind';
END $$;
COMMENT ON FUNCTION embedstack._may_read_served(text) IS
  'Internal: the gate of 0.3.0 served views left behind by a dropped model set: always ERROR 42501.';

CREATE OR REPLACE FUNCTION embedstack._on_sql_drop() RETURNS event_trigger
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
END $$;

CREATE FUNCTION embedstack._random_hex6() RETURNS text
LANGUAGE sql VOLATILE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT substr(md5(random()::text || clock_timestamp()::text), 1, 6)
$$;
COMMENT ON FUNCTION embedstack._random_hex6() IS 'Internal: six random hex digits (suffix of a name that was taken).';

CREATE OR REPLACE FUNCTION embedstack.create_model_set(
    name text,
    source regclass,
    key_column name,
    model_columns name[],
    mode text DEFAULT 'symmetric',
    threshold double precision DEFAULT 0.05,
    combined_column name DEFAULT NULL,
    storage text DEFAULT 'auto',
    model_dims integer[] DEFAULT NULL,
    view_name name DEFAULT NULL)
RETURNS embedstack.model_sets
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    v_relkind "char";
    v_col record;
    v_key record;
    v_dims integer[] := '{}';
    v_types regtype[] := '{}';
    v_dim integer;
    v_typname pg_catalog.name;
    v_combined pg_catalog.name;
    v_view pg_catalog.name;
    v_nsp pg_catalog.name;
    v_vnsp pg_catalog.name := embedstack._vector_schema();
BEGIN
    IF name IS NULL OR source IS NULL OR key_column IS NULL OR model_columns IS NULL
       OR mode IS NULL OR threshold IS NULL OR storage IS NULL THEN
        RAISE EXCEPTION 'name, source, key_column, model_columns, mode, threshold and storage must not be NULL'
            USING ERRCODE = '22004';
    END IF;
    IF name = '' OR octet_length(name) > 63 THEN
        RAISE EXCEPTION 'model set name must have 1 to 63 bytes, got %', octet_length(name) USING ERRCODE = '22023';
    END IF;
    IF embedstack._model_set_exists(name) THEN
        RAISE EXCEPTION 'model set "%" already exists', name USING ERRCODE = '42710';
    END IF;
    IF mode NOT IN ('symmetric', 'query_weighted') THEN
        RAISE EXCEPTION 'unknown mode "%"', mode USING ERRCODE = '22023',
            HINT = 'mode is ''symmetric'' (weighted stored vectors) or ''query_weighted'' (weights on the query side only)';
    END IF;
    IF NOT (threshold >= 0 AND threshold < 1) THEN
        RAISE EXCEPTION 'threshold must be in [0, 1), got %', threshold USING ERRCODE = '22023';
    END IF;
    IF storage NOT IN ('auto', 'vector', 'halfvec') THEN
        RAISE EXCEPTION 'unknown storage "%"', storage USING ERRCODE = '22023',
            HINT = 'storage is ''auto'' (vector up to 2000 dimensions, halfvec up to 4000), ''vector'' or ''halfvec''';
    END IF;
    PERFORM embedstack._check_owner(source);
    SELECT c.relkind INTO v_relkind FROM pg_class c WHERE c.oid = source;
    IF v_relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION '% is not a table', source USING ERRCODE = '42809';
    END IF;
    -- A model set outlives the session; a temporary table does not (and its model set could
    -- never be dropped by anyone afterwards).
    IF (SELECT c.relpersistence FROM pg_class c WHERE c.oid = source) = 't' THEN
        RAISE EXCEPTION '% is a temporary table', source USING ERRCODE = '0A000',
            HINT = 'a model set outlives the session: use a permanent (or unlogged) table';
    END IF;
    IF cardinality(model_columns) < 1 OR array_position(model_columns, NULL) IS NOT NULL THEN
        RAISE EXCEPTION 'model_columns must name at least one column and contain no NULL' USING ERRCODE = '22023';
    END IF;
    IF (SELECT count(DISTINCT c) FROM unnest(model_columns) c) <> cardinality(model_columns)
       OR key_column = ANY (model_columns) THEN
        RAISE EXCEPTION 'column "%" appears twice among the key and model columns',
            (SELECT c FROM unnest(key_column || model_columns) c GROUP BY c HAVING count(*) > 1 LIMIT 1)
            USING ERRCODE = '42701', HINT = 'name each model column once, and not the key';
    END IF;
    IF view_name IS NOT NULL AND position('.' IN view_name) > 0 THEN
        RAISE EXCEPTION 'view_name "%" contains a dot: it is the name of the served view in the source''s schema', view_name
            USING ERRCODE = '42602', HINT = 'pass the bare name (the view is created next to the source table)';
    END IF;
    IF model_dims IS NOT NULL AND cardinality(model_dims) <> cardinality(model_columns) THEN
        RAISE EXCEPTION 'model_dims has % entries for % model columns', cardinality(model_dims), cardinality(model_columns)
            USING ERRCODE = '22023';
    END IF;

    -- A Citus source: hash-distributed on its key (the generations are co-located with it).
    IF embedstack._distributed_on(source) IS DISTINCT FROM key_column AND embedstack._distributed_on(source) IS NOT NULL THEN
        RAISE EXCEPTION '% is distributed on column "%", not on its key "%"', source, embedstack._distributed_on(source),
            key_column USING ERRCODE = '0A000',
            HINT = 'the served vectors are co-located with the source by its key: distribute the table by its key column';
    END IF;
    -- The key: a NOT NULL column with a single-column unique index (the batches and the
    -- item-to-item query look rows up by it).
    SELECT * INTO v_key FROM embedstack._column(source, key_column);
    IF NOT EXISTS (
        SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = v_key.attnum
         WHERE i.indrelid = source AND i.indisunique AND i.indisvalid AND i.indnkeyatts = 1
           AND i.indkey[0] = v_key.attnum AND i.indpred IS NULL AND i.indexprs IS NULL AND a.attnotnull) THEN
        RAISE EXCEPTION 'key column "%" of % is not a NOT NULL column with a unique index', key_column, source
            USING ERRCODE = '42P10', HINT = 'use the primary key, or add a unique index and NOT NULL on the column';
    END IF;

    FOR i IN 1 .. cardinality(model_columns) LOOP
        SELECT * INTO v_col FROM embedstack._column(source, model_columns[i]);
        SELECT t.typname INTO v_typname FROM pg_type t WHERE t.oid = v_col.typid;
        IF v_typname NOT IN ('vector', '_float4', '_float8')
           OR (v_typname = 'vector' AND (SELECT t.typnamespace FROM pg_type t WHERE t.oid = v_col.typid)
                                         <> (SELECT oid FROM pg_namespace WHERE nspname = v_vnsp)) THEN
            RAISE EXCEPTION 'column "%" of % has type %', model_columns[i], source, format_type(v_col.typid, v_col.typmod)
                USING ERRCODE = '42804', HINT = 'model columns must be vector(n), real[] or double precision[]';
        END IF;
        v_dim := NULL;
        IF v_typname = 'vector' AND v_col.typmod > 0 THEN
            v_dim := v_col.typmod;
            IF model_dims[i] IS NOT NULL AND model_dims[i] <> v_dim THEN
                RAISE EXCEPTION 'model_dims[%] is % but column "%" is %', i, model_dims[i], model_columns[i],
                    format_type(v_col.typid, v_col.typmod) USING ERRCODE = '22023';
            END IF;
        ELSIF model_dims[i] IS NOT NULL THEN
            v_dim := model_dims[i];
        ELSE
            -- Discovered from the first row that has a value; rows that disagree are
            -- reported (22000, naming their key) when they are read.
            EXECUTE format(CASE WHEN v_typname = 'vector' THEN 'SELECT %3$I.vector_dims(%1$I) FROM %2$s WHERE %1$I IS NOT NULL LIMIT 1'
                                ELSE 'SELECT cardinality(%1$I) FROM %2$s WHERE %1$I IS NOT NULL LIMIT 1' END,
                           model_columns[i], source, v_vnsp) INTO v_dim;
            IF v_dim IS NULL THEN
                RAISE EXCEPTION 'cannot discover the dimension of column "%": it has no values yet', model_columns[i]
                    USING ERRCODE = '22023', HINT = 'declare it as vector(n) or pass model_dims';
            END IF;
        END IF;
        IF v_dim < 1 OR v_dim > 16000 THEN
            RAISE EXCEPTION 'column "%" has % dimensions; a model has 1 to 16000', model_columns[i], v_dim
                USING ERRCODE = '22023';
        END IF;
        v_dims := v_dims || v_dim;
        v_types := v_types || v_col.typid::regtype;
    END LOOP;

    v_combined := coalesce(combined_column, embedstack._derived_name(name, 'combined'));
    IF v_combined = key_column THEN
        RAISE EXCEPTION 'combined column "%" is the key column', v_combined USING ERRCODE = '42701',
            HINT = 'the served view has two columns, the key and the combined vector: name them differently';
    END IF;
    -- The served view: <source>_<model set> in the source's schema unless named; it is created by
    -- the first materialise, the name is checked (and reserved in the catalog) now.
    SELECT c.relname, n.nspname INTO v_typname, v_nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.oid = source;
    v_view := coalesce(view_name, embedstack._served_view_name(v_typname, name));
    IF to_regclass(format('%I.%I', v_nsp, v_view)) IS NOT NULL THEN
        RAISE EXCEPTION 'relation %.% already exists', v_nsp, v_view USING ERRCODE = '42P07',
            HINT = 'the model set serves its vectors through a view of that name: pass another view_name';
    END IF;
    IF EXISTS (SELECT 1 FROM embedstack.model_sets m JOIN pg_class c ON c.oid = m.source
                WHERE m.view_name = v_view AND c.relnamespace = (SELECT x.relnamespace FROM pg_class x WHERE x.oid = source)) THEN
        RAISE EXCEPTION 'another model set serves its vectors through %.%', v_nsp, v_view USING ERRCODE = '42P07',
            HINT = 'pass another view_name';
    END IF;

    PERFORM embedstack._w_insert_model_set(name, source, key_column, model_columns, v_dims, v_types, mode,
                              threshold, v_combined, storage, v_view);
    RETURN embedstack._model_set(name);
END $$;

CREATE OR REPLACE FUNCTION embedstack.drop_model_set(name text, drop_columns boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(name);
    nsp name;
    g record;
    dependents text;
BEGIN
    -- Not while a materialize or refit of it runs (the lock is released at the end of this
    -- transaction by the abort callback, or explicitly below).
    PERFORM embedstack._lock_model_set(ms.name, false);
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = ms.source) THEN
        -- The source is gone (event trigger disabled): only the catalog rows remain, which
        -- a superuser may delete (the writers let no one else: _check_owner).
        PERFORM embedstack._w_delete_model_set(ms.name);
        PERFORM embedstack._job_unlock(hashtext(ms.name));
        RETURN;
    END IF;
    PERFORM embedstack._check_owner(ms.source);
    PERFORM embedstack._drop_triggers(ms);
    nsp := (embedstack._source_info(ms)).nsp;
    BEGIN
        IF embedstack._is_served_view(ms) THEN
            EXECUTE format('DROP VIEW %I.%I', nsp, ms.view_name);
        END IF;
        FOR g IN SELECT x.id FROM embedstack.generations x WHERE x.model_set = ms.name LOOP
            PERFORM embedstack._drop_generation(ms, g.id);
        END LOOP;
    EXCEPTION WHEN dependent_objects_still_exist THEN
        -- PostgreSQL's detail names the dependent objects (on the view or on a generation).
        GET STACKED DIAGNOSTICS dependents = PG_EXCEPTION_DETAIL;
        RAISE EXCEPTION 'cannot drop model set "%": other objects depend on its served view %.% or its generation tables',
            ms.name, nsp, ms.view_name USING ERRCODE = '2BP01', DETAIL = dependents,
            HINT = 'drop the objects named in the detail first (they are not the extension''s to drop)';
    END;
    IF drop_columns AND ms.legacy_column IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', ms.source, ms.legacy_column);
    END IF;
    PERFORM embedstack._w_delete_model_set(ms.name);
    PERFORM embedstack._job_unlock(hashtext(ms.name));
END $$;

CREATE OR REPLACE FUNCTION embedstack._record_fit(model_set text, st double precision[], ridge double precision,
    nonnegative boolean, training_source jsonb, extra_diagnostics jsonb DEFAULT '{}')
RETURNS embedstack.fits
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    f embedstack.fit;
    fid bigint;
    r embedstack.fits;
BEGIN
    IF st[4] = 0 THEN
        RAISE EXCEPTION 'no usable pairs in % (% skipped)', training_source->>'pairs', st[5]::bigint USING ERRCODE = '22023',
            HINT = 'a pair is used when both keys exist in the source table, every model vector of both is '
                   'present and non-zero, and the target (and weight) are not NULL';
    END IF;
    f := embedstack.solve(st, ridge, nonnegative, true);
    fid := (embedstack._w_insert_fit(model_set,
        jsonb_build_object('ridge', ridge, 'nonnegative', nonnegative, 'fit_intercept', true),
        f.weights, f.intercept,
        jsonb_build_object('r2', f.r2, 'rmse', f.rmse, 'n_used', f.n_used, 'n_skipped', f.n_skipped,
                           'condition_number', CASE WHEN f.condition_number = 'Infinity' THEN NULL ELSE f.condition_number END,
                           'std_errors', to_jsonb(f.std_errors), 'rank', f.rank,
                           'collinear', to_jsonb(f.collinear)) || extra_diagnostics,
        st, training_source)).id;
    SELECT * INTO r FROM embedstack.fits x WHERE x.id = fid;
    RETURN r;
END $$;

CREATE OR REPLACE FUNCTION embedstack._distributed_pair_statistics(ms embedstack.model_sets, pairs regclass, left_column text,
    right_column text, target_column text, sample_weight_column text) RETURNS double precision[]
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    st double precision[];
    si record := embedstack._source_info(ms);
    -- The key's type by its schema-qualified internal name, without a typmod (a cast to
    -- varchar(n) would truncate a pair key into a false match).
    kt text := (SELECT format('%I.%I', n.nspname, t.typname) FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid
                  JOIN pg_namespace n ON n.oid = t.typnamespace
                 WHERE a.attrelid = ms.source AND a.attname = ms.key_column AND NOT a.attisdropped);
BEGIN
    PERFORM embedstack._column(pairs, left_column::name);
    PERFORM embedstack._column(pairs, right_column::name);
    PERFORM embedstack._column(pairs, target_column::name);
    IF sample_weight_column IS NOT NULL THEN
        PERFORM embedstack._column(pairs, sample_weight_column::name);
    END IF;
    PERFORM set_config('citus.enable_repartition_joins', 'on', true);
    EXECUTE format('SELECT embedstack.regression_stats(ARRAY[%s]::float8[], p.%I::float8%s) FROM %s p '
                   'JOIN %s a ON a.%I %s p.%I::%s JOIN %s b ON b.%I %s p.%I::%s',
                   -- (the pair columns cast to the key's type: the key's own = is named with its
                   -- schema, and no cross-type operator is looked up by name)
                   (SELECT string_agg(format('embedstack.cosine(a.%1$I, b.%1$I)', c), ', ' ORDER BY o)
                      FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o)),
                   target_column, CASE WHEN sample_weight_column IS NULL THEN ''
                                       ELSE format(', p.%I::float8', sample_weight_column) END,
                   pairs, ms.source, ms.key_column, si.key_eq, left_column, kt, ms.source, ms.key_column,
                   si.key_eq, right_column, kt)
       INTO st;
    RETURN st;
END $$;
COMMENT ON FUNCTION embedstack._distributed_pair_statistics(embedstack.model_sets, regclass, text, text, text, text) IS
  'Internal: the regression state of labelled pairs over a distributed source, computed by one aggregate on the workers.';

CREATE OR REPLACE FUNCTION embedstack._source_info(ms embedstack.model_sets, OUT nsp name, OUT owner name, OUT persistence "char",
    OUT key_type text, OUT key_eq text, OUT key_gt text)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce((SELECT gn.nspname FROM embedstack.generations g JOIN pg_class gc ON gc.oid = g.relation
                       JOIN pg_namespace gn ON gn.oid = gc.relnamespace
                      WHERE g.id = ms.served_generation AND g.model_set = ms.name), n.nspname),
           pg_get_userbyid(c.relowner), c.relpersistence, format_type(a.atttypid, a.atttypmod),
           (SELECT format('OPERATOR(%I.%s)', onsp.nspname, o.oprname)
              FROM pg_index i JOIN pg_opclass oc ON oc.oid = i.indclass[0]
              JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amopstrategy = 3
                             AND ao.amoplefttype = oc.opcintype AND ao.amoprighttype = oc.opcintype
              JOIN pg_operator o ON o.oid = ao.amopopr JOIN pg_namespace onsp ON onsp.oid = o.oprnamespace
             WHERE i.indrelid = ms.source AND i.indisunique AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum
             LIMIT 1),
           (SELECT format('OPERATOR(%I.%s)', onsp.nspname, o.oprname)
              FROM pg_index i JOIN pg_opclass oc ON oc.oid = i.indclass[0]
              JOIN pg_amop ao ON ao.amopfamily = oc.opcfamily AND ao.amopstrategy = 5
                             AND ao.amoplefttype = oc.opcintype AND ao.amoprighttype = oc.opcintype
              JOIN pg_operator o ON o.oid = ao.amopopr JOIN pg_namespace onsp ON onsp.oid = o.oprnamespace
             WHERE i.indrelid = ms.source AND i.indisunique AND i.indnkeyatts = 1 AND i.indkey[0] = a.attnum
             LIMIT 1)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
      JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = ms.key_column AND NOT a.attisdropped
     WHERE c.oid = ms.source
$$;
COMMENT ON FUNCTION embedstack._source_info(embedstack.model_sets) IS
  'Internal: schema, owner and persistence of a model set''s source, its key type and the key''s = and > operators.';

CREATE FUNCTION embedstack._is_generation_table(ms embedstack.model_sets, generation bigint, rel regclass, pending boolean,
                                                owner oid) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_class c
         WHERE c.oid = rel AND c.relkind IN ('r', 'p') AND c.relowner = owner
           AND CASE WHEN pending THEN c.relname ~ '_pending(_[0-9a-f]{6})?$'
                    ELSE c.relname = embedstack._generation_name(ms, generation)
                         OR c.relname ~ ('_g' || generation || '_[0-9a-f]{6}$') END)
$$;
COMMENT ON FUNCTION embedstack._is_generation_table(embedstack.model_sets, bigint, regclass, boolean, oid) IS
  'Internal: whether a relation is a generation table (or pending-keys table) of the model set, named so and '
  'owned by the given role.';

CREATE OR REPLACE FUNCTION embedstack._is_served_view(ms embedstack.model_sets) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN v.oid IS NULL THEN NULL
                ELSE v.relkind = 'v' AND v.relowner = x.owner AND EXISTS (
                    SELECT 1 FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                      JOIN embedstack.generations g ON g.relation::oid = d.refobjid AND g.model_set = ms.name
                     WHERE r.ev_class = v.oid) END
      FROM (SELECT to_regclass(format('%I.%I', (embedstack._source_info(ms)).nsp, ms.view_name)) AS oid, c.relowner AS owner
              FROM pg_class c WHERE c.oid = ms.source) x
      LEFT JOIN pg_class v ON v.oid = x.oid
$$;
COMMENT ON FUNCTION embedstack._is_served_view(embedstack.model_sets) IS
  'Internal: whether the model set''s view name is its served view (NULL: no such relation).';

CREATE OR REPLACE FUNCTION embedstack._drop_generation(ms embedstack.model_sets, generation bigint, nowait boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel regclass;
    prev_timeout text;
    owner oid := (SELECT c.relowner FROM pg_class c WHERE c.oid = ms.source);
BEGIN
    -- Only a table that is provably this generation's (see _is_generation_table): the catalog
    -- row may say anything its owner wrote, and this may run as a superuser (pg_cron).
    SELECT g.relation INTO rel FROM embedstack.generations g WHERE g.id = generation AND g.model_set = ms.name;
    IF rel IS NOT NULL AND embedstack._is_generation_table(ms, generation, rel, false, owner) THEN
        IF nowait THEN
            -- Not NOWAIT: the freshness triggers write a retained generation with every write
            -- to the source, so under a steady write load it is never free at an instant; wait
            -- at most 1 s (new writers queue behind the request for that long at worst).
            prev_timeout := current_setting('lock_timeout');
            BEGIN
                PERFORM set_config('lock_timeout', '1s', true);
                EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', rel);
                PERFORM set_config('lock_timeout', prev_timeout, true);
            EXCEPTION WHEN lock_not_available THEN
                RAISE NOTICE 'embedstack: model set "%": generation % (%) is in use, dropped by a later job', ms.name,
                    generation, rel;
                RETURN false;
            END;
        END IF;
        IF nowait THEN
            -- Retention: a generation another role built a view on (PostgreSQL allows that
            -- without any privilege on it) is kept, not a reason to fail the cut-over.
            BEGIN
                EXECUTE format('DROP TABLE %s', rel);
            EXCEPTION WHEN dependent_objects_still_exist THEN
                RAISE NOTICE 'embedstack: model set "%": generation % (%) is kept: other objects depend on it', ms.name,
                    generation, rel USING HINT = 'drop them; a later job drops the generation';
                RETURN false;
            END;
        ELSE
            EXECUTE format('DROP TABLE %s', rel);
        END IF;
    END IF;
    SELECT g.pending INTO rel FROM embedstack.generations g WHERE g.id = generation AND g.model_set = ms.name;
    IF rel IS NOT NULL AND embedstack._is_generation_table(ms, generation, rel, true, owner) THEN
        EXECUTE format('DROP TABLE %s', rel);
    END IF;
    PERFORM embedstack._w_delete_generation(ms.name, generation);
    RETURN true;
END $$;
COMMENT ON FUNCTION embedstack._drop_generation(embedstack.model_sets, bigint, boolean) IS
  'Internal: drops a generation table and its catalog row (nowait: skip it when in use).';

CREATE OR REPLACE FUNCTION embedstack._freshness_sql(model_set text, relid oid, event text) RETURNS text[]
LANGUAGE plpgsql STABLE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets;
    si record;
    g embedstack.generations;
    vnsp name := embedstack._vector_schema();
    k text;
    differ text;
    changed_old text;
    changed_new text;
    out text[] := '{}';
BEGIN
    SELECT * INTO ms FROM embedstack.model_sets m WHERE m.name = model_set;
    IF NOT FOUND OR ms.source::oid <> relid THEN
        -- Not this table's model set (a pg_dump -n of the schema restored without the catalog
        -- rows, or the name now belongs to another table): nothing to keep fresh here, and the
        -- table stays writable; the catalog row of another table is never touched.
        RAISE WARNING 'embedstack: trigger on % names model set "%", which is not a model set of this table: nothing done',
            relid::regclass, model_set
            USING HINT = 'the model set is gone: drop the embedstack_* triggers of this table';
        RETURN '{}';
    END IF;
    si := embedstack._source_info(ms);
    k := format('%I', ms.key_column);
    -- Model values of o and n differ (NULL = NULL counts as the same).
    SELECT string_agg(format('NOT coalesce(o.%1$I %2$s n.%1$I, o.%1$I IS NULL AND n.%1$I IS NULL)', c,
                             CASE WHEN t::oid IN (SELECT ty.oid FROM pg_type ty WHERE ty.typnamespace =
                                                    (SELECT x.oid FROM pg_namespace x WHERE x.nspname = vnsp))
                                  THEN format('OPERATOR(%I.=)', vnsp) ELSE 'OPERATOR(pg_catalog.=)' END), ' OR ')
      INTO differ FROM unnest(ms.model_columns, ms.model_types) u(c, t);
    changed_old := format('SELECT o.%1$s FROM embedstack_old o LEFT JOIN embedstack_new n ON n.%1$s %2$s o.%1$s '
                          'WHERE n.%1$s IS NULL OR %3$s', k, si.key_eq, differ);
    changed_new := format('SELECT n.* FROM embedstack_new n LEFT JOIN embedstack_old o ON o.%1$s %2$s n.%1$s '
                          'WHERE o.%1$s IS NULL OR %3$s', k, si.key_eq, differ);
    FOR g IN SELECT * FROM embedstack._live_generations(ms.name) LOOP
        IF g.pending_open AND event <> 'TRUNCATE' THEN
            -- Its index is being built: record the keys, the job applies them afterwards.
            out := out || format('INSERT INTO %s (%s) %s', g.pending, k, CASE event
                WHEN 'INSERT' THEN format('SELECT n.%s FROM embedstack_new n', k)
                WHEN 'DELETE' THEN format('SELECT o.%s FROM embedstack_old o', k)
                ELSE format('SELECT d.%1$s FROM (%2$s) d UNION ALL SELECT n.%1$s FROM (%3$s) n', k, changed_old, changed_new) END);
        ELSIF event = 'TRUNCATE' THEN
            out := out || format('TRUNCATE %s', g.relation);
            IF g.pending IS NOT NULL THEN
                out := out || format('TRUNCATE %s', g.pending);
            END IF;
        ELSIF event = 'DELETE' THEN
            out := out || format('DELETE FROM %1$s g USING embedstack_old o WHERE g.%2$s %3$s o.%2$s', g.relation, k, si.key_eq);
        ELSIF event = 'INSERT' THEN
            out := out || format('INSERT INTO %1$s (%2$s, %3$I) SELECT n.%2$s, %4$s FROM embedstack_new n', g.relation, k,
                                 ms.combined_column, embedstack._combine_expr(ms, g, 'n'));
        ELSIF event = 'UPDATE' THEN
            out := out || format('DELETE FROM %1$s g USING (%2$s) d WHERE g.%3$s %4$s d.%3$s', g.relation, changed_old, k, si.key_eq)
                       || format('INSERT INTO %1$s (%2$s, %3$I) SELECT n.%2$s, %4$s FROM (%5$s) n', g.relation, k, ms.combined_column,
                                 embedstack._combine_expr(ms, g, 'n'), changed_new);
        ELSE
            RAISE EXCEPTION 'unknown trigger event %', event USING ERRCODE = '39P01';
        END IF;
    END LOOP;
    RETURN out;
END $$;
COMMENT ON FUNCTION embedstack._freshness_sql(text, oid, text) IS
  'Internal: the statements that apply a source statement''s transition tables to the live generations.';

CREATE OR REPLACE FUNCTION embedstack._view_sql(ms embedstack.model_sets, g embedstack.generations, replace boolean) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('CREATE %sVIEW %I.%I AS SELECT g.%I, g.%I::%I.%I AS %I FROM %s g WHERE (SELECT embedstack._may_read_served(%L, %L::pg_catalog.regclass))',
                  CASE WHEN replace THEN 'OR REPLACE ' ELSE '' END, (embedstack._source_info(ms)).nsp, ms.view_name,
                  ms.key_column, ms.combined_column, embedstack._vector_schema(), g.storage, ms.combined_column,
                  g.relation, ms.name, g.relation::text)
$$;
COMMENT ON FUNCTION embedstack._view_sql(embedstack.model_sets, embedstack.generations, boolean) IS
  'Internal: the definition of a model set''s served view over a generation.';

CREATE OR REPLACE FUNCTION embedstack._point_view(ms embedstack.model_sets, g embedstack.generations, lock_timeout_ms integer)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    si record := embedstack._source_info(ms);
    ours boolean := embedstack._is_served_view(ms);
    prev_timeout text := current_setting('lock_timeout');
BEGIN
    IF ours IS NULL THEN
        EXECUTE embedstack._view_sql(ms, g, false);
        PERFORM embedstack._view_privileges(ms, si.nsp, si.owner);
        RETURN;
    END IF;
    IF NOT ours THEN
        RAISE EXCEPTION 'relation %.% is in the way of the served view of model set "%"', si.nsp, ms.view_name, ms.name
            USING ERRCODE = '42P07',
            HINT = 'rename or drop it; if it is the model set''s view and the source table was given to another role '
                   '(ALTER TABLE ... OWNER TO), give the view and the generation tables to that role too (REASSIGN OWNED)';
    END IF;
    IF lock_timeout_ms IS NOT NULL THEN
        PERFORM set_config('lock_timeout', lock_timeout_ms || 'ms', true);
    END IF;
    EXECUTE format('LOCK TABLE %I.%I IN ACCESS EXCLUSIVE MODE', si.nsp, ms.view_name);
    PERFORM set_config('lock_timeout', prev_timeout, true);
    IF ms.served_storage IS NOT DISTINCT FROM g.storage THEN
        EXECUTE embedstack._view_sql(ms, g, true);
    ELSE
        BEGIN
            EXECUTE format('DROP VIEW %I.%I', si.nsp, ms.view_name);
        EXCEPTION WHEN dependent_objects_still_exist THEN
            RAISE EXCEPTION 'the served view %.% of model set "%" changes type from % to %, and objects depend on it',
                si.nsp, ms.view_name, ms.name, ms.served_storage, g.storage USING ERRCODE = '2BP01',
                HINT = 'drop the views built on it and materialise again, or create the model set with a fixed storage';
        END;
        EXECUTE embedstack._view_sql(ms, g, false);
        PERFORM embedstack._view_privileges(ms, si.nsp, si.owner);
    END IF;
END $$;
COMMENT ON FUNCTION embedstack._point_view(embedstack.model_sets, embedstack.generations, integer) IS
  'Internal: creates or redefines the served view to read a generation.';

CREATE OR REPLACE FUNCTION embedstack._mat_prepare(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    si record;
    lay record;
    g embedstack.generations;
    gname name;
    total bigint;
    dist name;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    lay := embedstack._layout(ms.name, j.fit_id);
    si := embedstack._source_info(ms);
    -- Same multipliers and storage: the stored vectors are already what this fit would write
    -- (always so in query-weighted mode); unless a refresh asks for a new generation.
    IF ms.served_multipliers = lay.multipliers AND ms.served_storage = lay.storage
       AND embedstack._is_served_view(ms) AND NOT coalesce((j.params->>'refresh')::boolean, false) THEN
        PERFORM embedstack._w_serve(ms.name, j.fit_id, ms.served_generation);
        PERFORM embedstack._w_job_update(job_id, 'done');
        PERFORM embedstack._w_job_finish(job_id, 'succeeded',
            format('stored vectors unchanged; fit %s is active', j.fit_id));
        RAISE NOTICE 'embedstack: model set "%": stored vectors unchanged, active fit is now %', ms.name, j.fit_id;
        RETURN 'done';
    END IF;
    -- A storage type change drops and recreates the view: refuse now, not after the writing.
    IF ms.served_storage IS DISTINCT FROM lay.storage AND embedstack._is_served_view(ms) AND EXISTS (
        SELECT 1 FROM pg_depend d JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
         WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = to_regclass(format('%I.%I', si.nsp, ms.view_name))
           AND r.ev_class <> d.refobjid) THEN
        RAISE EXCEPTION 'fit % stores % vectors, the served view %.% of model set "%" has %, and objects depend on it',
            j.fit_id, lay.storage, si.nsp, ms.view_name, ms.name, ms.served_storage USING ERRCODE = '2BP01',
            HINT = 'drop the views built on it and materialise again, or create the model set with a fixed storage';
    END IF;

    IF embedstack._is_served_view(ms) = false THEN
        RAISE EXCEPTION 'relation %.% is in the way of the served view of model set "%"', si.nsp, ms.view_name, ms.name
            USING ERRCODE = '42P07',
            HINT = 'rename or drop it; if it is the model set''s view and the source table was given to another role '
                   '(ALTER TABLE ... OWNER TO), give the view and the generation tables to that role too (REASSIGN OWNED)';
    END IF;
    dist := embedstack._distributed_on(ms.source);
    IF dist IS DISTINCT FROM ms.key_column AND dist IS NOT NULL THEN
        RAISE EXCEPTION '% is distributed on column "%", not on its key "%"', ms.source, dist, ms.key_column
            USING ERRCODE = '0A000', HINT = 'distribute the table by its key column';
    END IF;

    SELECT * INTO g FROM embedstack.generations x WHERE x.model_set = ms.name AND x.state = 'building' ORDER BY x.id DESC LIMIT 1;
    IF FOUND AND (g.fit_id <> j.fit_id OR g.multipliers <> lay.multipliers OR g.storage <> lay.storage
                  OR g.relation IS NULL OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.relation)) THEN
        PERFORM embedstack._drop_generation(ms, g.id);
        g := NULL;
    END IF;
    IF g.id IS NULL THEN
        g.id := embedstack._w_insert_generation(ms.name, j.fit_id, lay.multipliers, lay.storage, lay.width);
        gname := embedstack._generation_name(ms, g.id);
        -- Generation ids are predictable (one sequence for the database): a name someone else
        -- took in the schema gets a random suffix instead of failing every run.
        WHILE to_regclass(format('%I.%I', si.nsp, gname)) IS NOT NULL LOOP
            gname := embedstack._derived_name(ms.view_name, 'g' || g.id || '_' || embedstack._random_hex6(), ms.view_name);
        END LOOP;
        EXECUTE format('CREATE %sTABLE %I.%I (%I %s NOT NULL PRIMARY KEY, %I %I.%s(%s))',
                       CASE WHEN si.persistence = 'u' THEN 'UNLOGGED ' ELSE '' END, si.nsp, gname,
                       ms.key_column, si.key_type, ms.combined_column, embedstack._vector_schema(), lay.storage, lay.width);
        EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', si.nsp, gname, si.owner);
        IF dist IS NOT NULL THEN
            PERFORM embedstack._distribute_generation(ms, format('%I.%I', si.nsp, gname)::regclass);
        END IF;
        EXECUTE format('COMMENT ON TABLE %I.%I IS %L', si.nsp, gname,
                       format('embedstack: generation %s of model set "%s" (fit %s); read it through %I.%I', g.id, ms.name,
                              j.fit_id, si.nsp, ms.view_name));
        PERFORM embedstack._w_generation_set(ms.name, g.id, format('%I.%I', si.nsp, gname)::regclass,
                                             embedstack._derived_name(gname, 'hnsw'), NULL, NULL);
        SELECT * INTO g FROM embedstack.generations x WHERE x.id = g.id;
    END IF;
    IF dist IS NULL THEN
        PERFORM embedstack._install_triggers(ms);
    ELSE
        RAISE NOTICE 'embedstack: model set "%": % is distributed (Citus): changes to it are served after the next %',
            ms.name, ms.source, format('CALL embedstack.refresh(%L)', ms.name);
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', ms.source) INTO total;
    PERFORM embedstack._w_job_update(job_id, 'write', g.rows_written, total, g.cursor_key, NULL, NULL,
                              jsonb_build_object('writers_synced', false, 'resumed_rows', g.rows_written), g.id);
    RAISE NOTICE 'embedstack: model set "%": writing % rows of %(%) into generation % (%)%', ms.name, total,
        lay.storage, lay.width, g.id, g.relation,
        CASE WHEN g.cursor_key IS NOT NULL THEN format(', resuming after %s rows', g.rows_written) ELSE '' END;
    RETURN 'write';
END $$;
COMMENT ON FUNCTION embedstack._mat_prepare(bigint) IS
  'Internal materialise step: layout, generation table (new or resumed), freshness triggers.';

CREATE OR REPLACE FUNCTION embedstack._mat_write(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp
    -- The resume cursor is the last key written, as text: written and read back here only, always
    -- with these settings, so a run resumed in a session with another DateStyle, IntervalStyle,
    -- TimeZone, extra_float_digits or lc_monetary reads back exactly the key it wrote (0.3.0 used
    -- the session's: a timestamp cursor resumed under another DateStyle skipped rows, and with
    -- extra_float_digits < 0 float8 keys printed alike and the job never advanced).
    SET DateStyle = 'ISO, YMD' SET IntervalStyle = 'postgres' SET TimeZone = 'UTC' SET extra_float_digits = 3
    SET lc_monetary = 'C' SET bytea_output = 'hex' AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    g embedstack.generations;
    si record;
    n bigint;
    last_key text;
    done bigint;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT * INTO g FROM embedstack.generations x WHERE x.id = j.generation AND x.model_set = ms.name;
    IF NOT FOUND OR g.relation IS NULL THEN
        RAISE EXCEPTION 'the generation job % writes is gone', job_id USING ERRCODE = '55000',
            HINT = 'CALL the procedure again: it starts a new generation';
    END IF;
    IF NOT coalesce((j.details->>'writers_synced')::boolean, true) THEN
        PERFORM embedstack._wait_for_writers(ms.source);
        PERFORM embedstack._w_job_update(job_id, 'write', NULL, NULL, NULL, NULL, NULL, '{"writers_synced": true}'::jsonb);
        RETURN 'write';
    END IF;
    si := embedstack._source_info(ms);
    EXECUTE format('LOCK TABLE %s IN SHARE MODE', g.relation);
    -- The batch's last key from the keys alone, then the key range written by one INSERT ...
    -- SELECT (a range of a distributed source is pushed down to its shards as a whole).
    EXECUTE format('SELECT count(*), (array_agg(b.k::text ORDER BY b.k DESC))[1] FROM ('
                   'SELECT s.%1$I AS k FROM %2$s s %3$s ORDER BY s.%1$I LIMIT %4$s) b',
                   ms.key_column, ms.source,
                   CASE WHEN g.cursor_key IS NULL THEN '' ELSE format('WHERE s.%I %s %L::%s', ms.key_column, si.key_gt,
                                                                      g.cursor_key, si.key_type) END,
                   (j.params->>'batch_size')::integer)
       INTO n, last_key;
    IF last_key IS NOT NULL THEN
        -- (s.key <= last_key as NOT s.key > last_key: the btree's > is named with its schema, and
        -- the planner turns the negation into its negator for the index scan.)
        EXECUTE format('INSERT INTO %1$s (%2$I, %3$I) SELECT s.%2$I, %4$s FROM %5$s s WHERE %6$s NOT (s.%2$I %7$s %8$L::%9$s) '
                       'ON CONFLICT DO NOTHING',
                       g.relation, ms.key_column, ms.combined_column, embedstack._combine_expr(ms, g, 's'), ms.source,
                       CASE WHEN g.cursor_key IS NULL THEN ''
                            ELSE format('s.%I %s %L::%s AND', ms.key_column, si.key_gt, g.cursor_key, si.key_type) END,
                       si.key_gt, last_key, si.key_type);
    END IF;
    IF last_key IS NULL THEN
        PERFORM embedstack._w_job_update(job_id, 'index');
        RETURN 'index';
    END IF;
    -- The batch's keys are all greater than the cursor: the same text again means the key type's
    -- text form does not tell its values apart, and the job would never advance.
    IF last_key = g.cursor_key THEN
        RAISE EXCEPTION 'model set "%": the key column "%" (%) prints two different keys alike (%), so the job cannot '
                        'remember where it stopped', ms.name, ms.key_column, si.key_type, last_key
            USING ERRCODE = '22000', HINT = 'use a key whose text form is unique (an integer, text, uuid, timestamp, ...)';
    END IF;
    done := g.rows_written + n;
    PERFORM embedstack._w_generation_set(ms.name, g.id, NULL, NULL, last_key, done);
    PERFORM embedstack._w_job_update(job_id, 'write', done, NULL, last_key);
    RAISE NOTICE 'embedstack: model set "%": % / % rows (% %%), % rows/s', ms.name, done, j.rows_total,
        CASE WHEN j.rows_total > 0 THEN round(100.0 * done / j.rows_total, 1) ELSE 100 END,
        round((done - coalesce((j.details->>'resumed_rows')::bigint, 0))
              / greatest(extract(epoch FROM clock_timestamp() - j.started_at), 0.001));
    RETURN 'write';
END $$;
COMMENT ON FUNCTION embedstack._mat_write(bigint) IS
  'Internal materialise step: one batch of rows into the generation being written.';

CREATE OR REPLACE FUNCTION embedstack._mat_index(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    g embedstack.generations;
    si record;
    idx regclass;
    pname name;
    n bigint;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT * INTO g FROM embedstack.generations x WHERE x.id = j.generation;
    si := embedstack._source_info(ms);
    idx := to_regclass(format('%I.%I', si.nsp, g.index_name));
    IF idx IS NOT NULL AND NOT EXISTS (SELECT 1 FROM pg_index i WHERE i.indexrelid = idx AND i.indrelid = g.relation) THEN
        -- Someone else took the name: another one, with a random suffix.
        g.index_name := embedstack._derived_name((SELECT c.relname FROM pg_class c WHERE c.oid = g.relation),
                                                 'hnsw_' || embedstack._random_hex6());
        PERFORM embedstack._w_generation_set(ms.name, g.id, NULL, g.index_name, NULL, NULL);
        PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, g.index_name);
        RETURN 'index';
    END IF;
    IF idx IS NOT NULL AND NOT (SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = idx) THEN
        EXECUTE format('DROP INDEX %s', idx);
        idx := NULL;
    END IF;
    IF idx IS NULL AND embedstack._distributed_on(ms.source) IS NOT NULL THEN
        -- No freshness triggers on a distributed source: nothing to record meanwhile.
        RAISE NOTICE 'embedstack: model set "%": building the HNSW index %.% (one per shard)', ms.name, si.nsp, g.index_name;
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (%I %I.%s)', g.index_name, g.relation, ms.combined_column,
                       embedstack._vector_schema(), g.storage || '_ip_ops');
        PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, g.index_name,
                                  '{"index_synced": true}'::jsonb);
        RETURN 'index';
    END IF;
    IF idx IS NULL THEN
        IF g.pending IS NULL OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN     -- 1
            pname := embedstack._derived_name((SELECT c.relname FROM pg_class c WHERE c.oid = g.relation), 'pending');
            WHILE to_regclass(format('%I.%I', si.nsp, pname)) IS NOT NULL LOOP      -- taken: a random suffix
                pname := embedstack._derived_name((SELECT c.relname FROM pg_class c WHERE c.oid = g.relation),
                                                  'pending_' || embedstack._random_hex6());
            END LOOP;
            EXECUTE format('CREATE %sTABLE %I.%I (%I %s NOT NULL)', CASE WHEN si.persistence = 'u' THEN 'UNLOGGED ' ELSE '' END,
                           si.nsp, pname, ms.key_column, si.key_type);
            EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', si.nsp, pname, si.owner);
            PERFORM embedstack._w_generation_pending(ms.name, g.id, format('%I.%I', si.nsp, pname)::regclass, true);
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"index_synced": false}'::jsonb);
            RETURN 'index';
        END IF;
        IF NOT g.pending_open THEN
            PERFORM embedstack._w_generation_pending(ms.name, g.id, g.pending, true);
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"index_synced": false}'::jsonb);
            RETURN 'index';
        END IF;
        IF NOT coalesce((j.details->>'index_synced')::boolean, false) THEN                              -- 2
            PERFORM embedstack._wait_for_writers(ms.source);
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"index_synced": true}'::jsonb);
            RETURN 'index';
        END IF;
        RAISE NOTICE 'embedstack: model set "%": building the HNSW index %.%', ms.name, si.nsp, g.index_name;      -- 3
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (%I %I.%s)', g.index_name, g.relation, ms.combined_column,
                       embedstack._vector_schema(), g.storage || '_ip_ops');
        PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, g.index_name);
        RETURN 'index';
    END IF;
    IF g.pending IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN
        IF g.pending_open THEN                                                                          -- 4
            PERFORM embedstack._w_generation_pending(ms.name, g.id, g.pending, false);
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"catchup_synced": false}'::jsonb);
            RETURN 'index';
        END IF;
        IF NOT coalesce((j.details->>'catchup_synced')::boolean, false) THEN                            -- 5
            PERFORM embedstack._wait_for_writers(ms.source);
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"catchup_synced": true}'::jsonb);
            RETURN 'index';
        END IF;
        EXECUTE format('LOCK TABLE %s IN SHARE MODE', g.relation);                                      -- 6
        EXECUTE format('DELETE FROM %1$s g USING (SELECT DISTINCT p.%2$I AS k FROM %3$s p) p WHERE g.%2$I %4$s p.k',
                       g.relation, ms.key_column, g.pending, si.key_eq);
        EXECUTE format('INSERT INTO %1$s (%2$I, %3$I) SELECT s.%2$I, %4$s FROM %5$s s '
                       'JOIN (SELECT DISTINCT p.%2$I AS k FROM %6$s p) p ON s.%2$I %7$s p.k',
                       g.relation, ms.key_column, ms.combined_column, embedstack._combine_expr(ms, g, 's'), ms.source,
                       g.pending, si.key_eq);
        GET DIAGNOSTICS n = ROW_COUNT;
        EXECUTE format('DROP TABLE %s', g.pending);
        PERFORM embedstack._w_generation_pending(ms.name, g.id, NULL, false);
        IF n > 0 THEN
            RAISE NOTICE 'embedstack: model set "%": % rows written meanwhile applied to generation %', ms.name, n, g.id;
        END IF;
    ELSIF idx IS NOT NULL AND NOT coalesce((j.details->>'index_synced')::boolean, false) THEN
        RAISE NOTICE 'embedstack: model set "%": the HNSW index %.% of an interrupted run is complete, keeping it',
            ms.name, si.nsp, g.index_name;
    END IF;
    -- Transactions whose snapshot predates this one could read the generation without these
    -- rows; the cut-over waits for them (see _cutover_ready).
    PERFORM embedstack._w_job_update(job_id, 'wait', NULL, NULL, NULL, NULL, g.index_name,
        jsonb_build_object('horizon', pg_current_xact_id()::text, 'hidden', to_jsonb(embedstack._hidden_transactions()),
                           'wait_started', clock_timestamp()));
    RETURN 'wait';
END $$;
COMMENT ON FUNCTION embedstack._mat_index(bigint) IS
  'Internal materialise step: the HNSW index of the generation, built while the triggers record changed keys '
  'in a pending table, which is applied afterwards.';

CREATE OR REPLACE FUNCTION embedstack._mat_wait(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    timeout_ms integer := embedstack._cutover_wait_timeout();
    waited interval;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    IF embedstack._cutover_ready((j.details->>'horizon')::xid8,
                                 ARRAY(SELECT jsonb_array_elements_text(j.details->'hidden'))) THEN
        PERFORM embedstack._w_job_update(job_id, 'cutover');
        RETURN 'cutover';
    END IF;
    waited := clock_timestamp() - coalesce((j.details->>'wait_started')::timestamptz, clock_timestamp());
    IF timeout_ms > 0 AND waited > timeout_ms * interval '1 ms' THEN
        RAISE EXCEPTION 'model set "%": gave up waiting after % for transactions older than the new generation (pids %)',
            j.model_set, date_trunc('second', waited),
            coalesce((SELECT string_agg(p::text, ', ') FROM embedstack._old_transactions((j.details->>'horizon')::xid8) p), 'not visible to you')
            USING ERRCODE = '55000',
            HINT = 'the new generation is complete and indexed, the old one still serves: CALL the procedure again to '
                   'resume the wait, end those transactions, or raise embedstack.cutover_wait_timeout';
    END IF;
    IF NOT coalesce((j.details->>'waiting')::boolean, false) THEN
        RAISE NOTICE 'embedstack: model set "%": waiting for transactions older than the new generation to finish (pids %)',
            j.model_set, coalesce((SELECT string_agg(p::text, ', ') FROM embedstack._old_transactions((j.details->>'horizon')::xid8) p),
                                  'not visible to you');
        PERFORM embedstack._w_job_update(job_id, 'wait', NULL, NULL, NULL, NULL, NULL, '{"waiting": true}'::jsonb);
    END IF;
    PERFORM pg_sleep(0.1);
    RETURN 'wait';
END $$;
COMMENT ON FUNCTION embedstack._mat_wait(bigint) IS
  'Internal materialise step: waits for older transactions of this database, bounded by embedstack.cutover_wait_timeout.';

CREATE FUNCTION embedstack._give_up_locking_view(ms embedstack.model_sets, started timestamptz) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    timeout_ms integer := embedstack._cutover_wait_timeout();
    nsp name := (embedstack._source_info(ms)).nsp;
BEGIN
    IF timeout_ms > 0 AND clock_timestamp() - started > timeout_ms * interval '1 ms' THEN
        RAISE EXCEPTION 'model set "%": gave up after % trying to lock its served view %.% (held by pids %)', ms.name,
            date_trunc('second', clock_timestamp() - started), nsp, ms.view_name,
            coalesce((SELECT string_agg(DISTINCT l.pid::text, ', ') FROM pg_locks l
                       WHERE l.locktype = 'relation' AND l.granted AND l.pid <> pg_backend_pid()
                         AND l.relation = to_regclass(format('%I.%I', nsp, ms.view_name))), 'unknown')
            USING ERRCODE = '55P03',
            HINT = 'the sessions named hold a lock on the view (e.g. a long transaction that read it): end them, then CALL '
                   'the procedure again (a materialize or refit resumes at the cut-over), or raise embedstack.cutover_wait_timeout';
    END IF;
END $$;
COMMENT ON FUNCTION embedstack._give_up_locking_view(embedstack.model_sets, timestamptz) IS
  'Internal: 55P03 naming the lock holders once locking the served view took longer than embedstack.cutover_wait_timeout.';

CREATE OR REPLACE FUNCTION embedstack._mat_cutover(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    g embedstack.generations;
    started timestamptz;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT * INTO g FROM embedstack.generations x WHERE x.id = j.generation;
    -- ACCESS EXCLUSIVE on the view waits for running queries on it, and queries queue behind a
    -- waiting lock: wait at most 50 ms per attempt (readers stall that long at worst), then let
    -- them through and try again in the next step; give up after embedstack.cutover_wait_timeout
    -- (the view is readable by PUBLIC: any role may hold a lock on it for as long as it likes).
    BEGIN
        PERFORM embedstack._point_view(ms, g, 50);
    EXCEPTION WHEN lock_not_available THEN
        started := coalesce((j.details->>'cutover_started')::timestamptz, clock_timestamp());
        IF j.details->>'cutover_started' IS NULL THEN
            RAISE NOTICE 'embedstack: model set "%": the cut-over waits for queries on its view (retrying)', ms.name;
            PERFORM embedstack._w_job_update(job_id, 'cutover', NULL, NULL, NULL, NULL, NULL,
                                             jsonb_build_object('cutover_started', started));
        END IF;
        PERFORM embedstack._give_up_locking_view(ms, started);
        PERFORM pg_sleep(0.2);
        RETURN 'cutover';
    END;
    PERFORM embedstack._w_serve(ms.name, j.fit_id, g.id);
    PERFORM embedstack._retain(ms.name);
    PERFORM embedstack._w_job_update(job_id, 'done');
    PERFORM embedstack._w_job_finish(job_id, 'succeeded', coalesce(j.details->>'decision' || '; ', '')
        || format('serving fit %s from generation %s (%s, %s), view %s.%I', j.fit_id, g.id, g.relation, g.storage,
                  (embedstack._source_info(ms)).nsp, ms.view_name));
    RAISE NOTICE 'embedstack: model set "%": serving fit % from generation % (%) through %.%', ms.name, j.fit_id, g.id,
        g.relation, (embedstack._source_info(ms)).nsp, ms.view_name;
    RETURN 'done';
END $$;
COMMENT ON FUNCTION embedstack._mat_cutover(bigint) IS
  'Internal materialise step: points the served view at the new generation and records it.';

CREATE OR REPLACE PROCEDURE embedstack.materialize(model_set text, fit_id bigint DEFAULT NULL, batch_size integer DEFAULT 10000,
                                        wait boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets;
    fid bigint := fit_id;
    job bigint;
BEGIN
    -- Procedures cannot carry SET search_path: nothing below may resolve a name through the
    -- caller's path (a pg_cron job runs this as a superuser, with public on the path), so it is
    -- pinned for this transaction here, and again after each COMMIT.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    ms := embedstack._check_writer(model_set, batch_size, wait);
    PERFORM embedstack._check_job_runner(ms);
    IF fid IS NULL THEN
        -- The latest fit that no refit rejected (a refit that kept the active fit recorded the
        -- new one as kept: serving it by default would undo that decision).
        SELECT max(f.id) INTO fid FROM embedstack.fits f
         WHERE f.model_set = ms.name
           AND NOT EXISTS (SELECT 1 FROM embedstack.jobs j
                            WHERE j.model_set = ms.name AND j.kind = 'refit' AND j.state = 'kept' AND j.fit_id = f.id);
        IF fid IS NULL THEN
            RAISE EXCEPTION 'model set "%" has no fit', ms.name USING ERRCODE = '55000',
                HINT = 'run embedstack.fit first';
        END IF;
    END IF;
    PERFORM embedstack._layout(ms.name, fid);   -- 42704, 22023, 54000 before anything changes
    PERFORM embedstack._lock_model_set(ms.name, wait);
    -- (After the lock, like the COMMIT it stands for: a failure here releases the lock as any.)
    PERFORM embedstack._require_no_transaction_block('materialize');
    job := embedstack._w_job_start(ms.name, 'materialize', pg_catalog.jsonb_build_object('batch_size', batch_size), 'prepare',
        (SELECT max(j.id) FROM embedstack.jobs j WHERE j.model_set = ms.name AND j.state = 'running'));
    PERFORM embedstack._w_job_update(job, 'prepare', NULL, NULL, NULL, fid);
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    CALL embedstack._run_job(job);
END $$;
COMMENT ON PROCEDURE embedstack.materialize(text, bigint, integer, boolean) IS
  'Writes the combined vectors of a fit (default: the newest fit no refit rejected) into a new generation table '
  'in committed batches, builds its HNSW index and switches the served view to it in one short transaction. '
  'Resumable; one job per model set at a time (55P03, or wait => true). Outside a transaction block only (2D000).';

CREATE OR REPLACE PROCEDURE embedstack.refresh(model_set text, batch_size integer DEFAULT 10000, wait boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets;
    job bigint;
BEGIN
    -- Procedures cannot carry SET search_path: nothing below may resolve a name through the
    -- caller's path (a pg_cron job runs this as a superuser, with public on the path), so it is
    -- pinned for this transaction here, and again after each COMMIT.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    ms := embedstack._check_writer(model_set, batch_size, wait);
    PERFORM embedstack._check_job_runner(ms);
    IF ms.active_fit IS NULL THEN
        RAISE EXCEPTION 'model set "%" is not served yet', ms.name USING ERRCODE = '55000',
            HINT = 'CALL embedstack.materialize first';
    END IF;
    PERFORM embedstack._lock_model_set(ms.name, wait);
    PERFORM embedstack._require_no_transaction_block('refresh');
    ms := embedstack._model_set(ms.name);
    job := embedstack._w_job_start(ms.name, 'materialize',
        pg_catalog.jsonb_build_object('batch_size', batch_size, 'refresh', true), 'prepare',
        (SELECT max(j.id) FROM embedstack.jobs j WHERE j.model_set = ms.name AND j.state = 'running'));
    PERFORM embedstack._w_job_update(job, 'prepare', NULL, NULL, NULL, ms.active_fit);
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    CALL embedstack._run_job(job);
END $$;
COMMENT ON PROCEDURE embedstack.refresh(text, integer, boolean) IS
  'Writes the active fit''s vectors into a new generation and switches to it (as materialize, without the '
  'unchanged-layout shortcut): how changes to a distributed (Citus) source are served.';

CREATE OR REPLACE PROCEDURE embedstack.rollback(model_set text, wait boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets;
    g embedstack.generations;
    caller_path pg_catalog.text := pg_catalog.current_setting('search_path');
    started pg_catalog.timestamptz := pg_catalog.clock_timestamp();
BEGIN
    -- Procedures cannot carry SET search_path: nothing below may resolve a name through the
    -- caller's path, so it is pinned here (this procedure does not COMMIT; it may run inside the
    -- caller's transaction block, whose search_path is put back at the end).
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    ms := embedstack._check_writer(model_set, 1, wait);
    PERFORM embedstack._lock_model_set(ms.name, wait);
    ms := embedstack._model_set(ms.name);
    SELECT * INTO g FROM embedstack.generations x
     WHERE x.id = ms.previous_generation AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = x.relation);
    IF ms.previous_fit IS NULL OR NOT FOUND
       OR NOT EXISTS (SELECT 1 FROM embedstack.fits f WHERE f.id = ms.previous_fit) THEN
        PERFORM embedstack._job_unlock(pg_catalog.hashtext(ms.name));
        RAISE EXCEPTION 'model set "%" has nothing to roll back to', ms.name USING ERRCODE = '55000',
            HINT = 'rollback serves the fit and generation served before the last switch; embedstack.keep_generations = 0 keeps none';
    END IF;
    IF g.id <> ms.served_generation THEN
        -- As the cut-over: 50 ms attempts (readers of the view queue behind a waiting lock), given
        -- up after embedstack.cutover_wait_timeout with 55P03.
        LOOP
            BEGIN
                PERFORM embedstack._point_view(ms, g, 50);
                EXIT;
            EXCEPTION WHEN lock_not_available THEN
                PERFORM embedstack._give_up_locking_view(ms, started);
                PERFORM pg_catalog.pg_sleep(0.2);
            END;
        END LOOP;
    END IF;
    PERFORM embedstack._w_serve(ms.name, ms.previous_fit, g.id);
    RAISE NOTICE 'embedstack: model set "%": serving fit % from generation % again', ms.name, ms.previous_fit, g.id;
    PERFORM embedstack._job_unlock(pg_catalog.hashtext(ms.name));
    PERFORM pg_catalog.set_config('search_path', caller_path, true);
END $$;
COMMENT ON PROCEDURE embedstack.rollback(text, boolean) IS
  'Serves the fit and generation served before the last switch again, at once (no rewrite, no index build); '
  'calling it again switches back. 55000 when there is none (embedstack.keep_generations = 0).';

CREATE OR REPLACE PROCEDURE embedstack._run_job(job_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    isolation pg_catalog.text := pg_catalog.current_setting('default_transaction_isolation');
    phase pg_catalog.text;
    key integer;
    failed boolean;
    e_state pg_catalog.text;
    e_msg pg_catalog.text;
    e_detail pg_catalog.text;
    e_hint pg_catalog.text;
    e_ctx pg_catalog.text;
BEGIN
    -- Procedures cannot carry SET search_path: nothing below may resolve a name through the
    -- caller's path (a pg_cron job runs this as a superuser, with public on the path), so it is
    -- pinned for this transaction here, and again after each COMMIT.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    SELECT pg_catalog.hashtext(j.model_set), j.phase INTO key, phase FROM embedstack.jobs j WHERE j.id = job_id;
    PERFORM pg_catalog.set_config('default_transaction_isolation', 'read committed', false);
    LOOP
        failed := false;
        BEGIN
            phase := embedstack._job_step(job_id, phase);
        EXCEPTION WHEN OTHERS OR query_canceled THEN
            GET STACKED DIAGNOSTICS e_state = RETURNED_SQLSTATE, e_msg = MESSAGE_TEXT, e_detail = PG_EXCEPTION_DETAIL,
                                    e_hint = PG_EXCEPTION_HINT, e_ctx = PG_EXCEPTION_CONTEXT;
            failed := true;
        END;
        IF failed THEN
            PERFORM embedstack._w_job_finish(job_id, 'failed', e_msg,
                pg_catalog.jsonb_build_object('sqlstate', e_state, 'message', e_msg, 'detail', nullif(e_detail, ''),
                                              'hint', nullif(e_hint, ''), 'context', nullif(e_ctx, '')));
            COMMIT;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
            PERFORM pg_catalog.set_config('default_transaction_isolation', isolation, false);
            PERFORM embedstack._job_unlock(key);
            PERFORM embedstack._reraise(e_state, e_msg, e_detail, e_hint);
        END IF;
        COMMIT;
        PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        EXIT WHEN phase = 'done';
    END LOOP;
    PERFORM pg_catalog.set_config('default_transaction_isolation', isolation, false);
    PERFORM embedstack._job_unlock(key);
END $$;
COMMENT ON PROCEDURE embedstack._run_job(bigint) IS 'Internal: runs a job''s steps, committing after each; records a failure.';

CREATE FUNCTION embedstack._check_job_runner(ms embedstack.model_sets) RETURNS void
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    owner name := (SELECT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.oid = ms.source);
BEGIN
    IF owner IS NULL OR (SELECT r.rolsuper FROM pg_roles r WHERE r.rolname = owner) THEN
        RETURN;
    END IF;
    IF (SELECT bool_or(r.rolsuper) FROM pg_roles r WHERE r.rolname IN (current_user, session_user)) THEN
        RAISE EXCEPTION 'a superuser does not run the jobs of model set "%": its tables belong to role %', ms.name, owner
            USING ERRCODE = '42501',
            DETAIL = 'code that role attached to them (triggers, rules, index expressions) would run with superuser rights',
            HINT = format('run it as %I: connect as that role, or schedule it with cron.schedule_in_database(..., username => %L)',
                          owner, owner);
    END IF;
END $$;
COMMENT ON FUNCTION embedstack._check_job_runner(embedstack.model_sets) IS
  'Internal: 42501 when a superuser (also under SET ROLE) would run a job on the tables of a role that is not one.';

CREATE OR REPLACE FUNCTION embedstack._in_holdout(left_key text, right_key text, fraction double precision) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    -- (No SET search_path, so that it is inlined into the pair scans; every operator is named
    -- with its schema and every literal has its exact type instead: an inlined body is parsed
    -- with the search_path of the query it is inlined into. OPERATOR(...) binds like any
    -- user-defined operator, left to right: hence the parentheses.)
    SELECT (pg_catalog.hashtextextended(left_key OPERATOR(pg_catalog.||) pg_catalog.chr(31) OPERATOR(pg_catalog.||) right_key,
                                        0::pg_catalog.int8)
            OPERATOR(pg_catalog.&) 1048575::pg_catalog.int8)::pg_catalog.float8
           OPERATOR(pg_catalog.<) (fraction OPERATOR(pg_catalog.*) 1048576::pg_catalog.float8)
$$;
COMMENT ON FUNCTION embedstack._in_holdout(text, text, double precision) IS 'Internal: is a pair held out of a refit''s training (hash of its keys)?';

CREATE OR REPLACE FUNCTION embedstack._refit_fit(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    p jsonb;
    pairs regclass;
    frac double precision;
    st_train double precision[];
    st_hold double precision[];
    f embedstack.fits;
    act embedstack.fits;
    n_hold bigint := 0;
    new_mse double precision;
    act_mse double precision;
    cut boolean;
    decision text;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    p := j.params;
    pairs := (p->>'pairs_oid')::oid::regclass;
    frac := (p->>'holdout_fraction')::double precision;
    IF to_regclass('pg_temp.embedstack_refit_train') IS NOT NULL THEN
        DROP VIEW embedstack_refit_train;
    END IF;
    IF to_regclass('pg_temp.embedstack_refit_holdout') IS NOT NULL THEN
        DROP VIEW embedstack_refit_holdout;
    END IF;
    EXECUTE format('CREATE TEMP VIEW embedstack_refit_train AS SELECT * FROM %s p '
                   'WHERE NOT embedstack._in_holdout(p.%I::text, p.%I::text, %L)', pairs, p->>'left', p->>'right', frac);
    EXECUTE format('CREATE TEMP VIEW embedstack_refit_holdout AS SELECT * FROM %s p '
                   'WHERE embedstack._in_holdout(p.%I::text, p.%I::text, %L)', pairs, p->>'left', p->>'right', frac);
    st_train := embedstack._pair_state(ms.name, 'pg_temp.embedstack_refit_train'::regclass, p->>'left', p->>'right',
                                           p->>'target', p->>'sample_weight');
    IF frac > 0 THEN
        st_hold := embedstack._pair_state(ms.name, 'pg_temp.embedstack_refit_holdout'::regclass, p->>'left', p->>'right',
                                              p->>'target', p->>'sample_weight');
        n_hold := st_hold[4]::bigint;
    END IF;
    -- (Unqualified: pg_temp is on the pinned search_path, and Citus's DROP VIEW handler fails on
    -- the pg_temp. prefix.)
    DROP VIEW embedstack_refit_train, embedstack_refit_holdout;

    SELECT * INTO act FROM embedstack.fits x WHERE x.id = ms.active_fit;
    IF p->>'cutover' = 'if_not_worse' AND act.id IS NOT NULL AND n_hold = 0 THEN
        RAISE EXCEPTION 'no usable held-out pairs to compare a new fit with the active fit %', act.id
            USING ERRCODE = '22023',
            HINT = 'raise holdout_fraction (it is ' || frac || '), or pass cutover => ''always''';
    END IF;
    f := embedstack._record_fit(ms.name, st_train, (p->>'ridge')::double precision, (p->>'nonnegative')::boolean,
        jsonb_build_object('pairs', p->>'pairs', 'left', p->>'left', 'right', p->>'right', 'target', p->>'target',
                           'sample_weight', p->>'sample_weight', 'holdout_fraction', frac, 'split', 'train'));
    IF n_hold > 0 THEN
        new_mse := embedstack.prediction_mse(st_hold, f.weights, f.intercept);
        IF act.id IS NOT NULL THEN
            act_mse := embedstack.prediction_mse(st_hold, act.weights, act.intercept);
        END IF;
    END IF;

    IF p->>'cutover' = 'never' THEN
        cut := false;
        decision := format('fit %s recorded, cutover => never', f.id);
    ELSIF act.id IS NULL THEN
        cut := true;
        decision := format('fit %s: no active fit to compare with', f.id);
    ELSIF p->>'cutover' = 'always' THEN
        cut := true;
        decision := format('fit %s: cutover => always (held-out MSE on %s pairs: new %s, active fit %s %s)',
                           f.id, n_hold, coalesce(new_mse::text, '-'), act.id, coalesce(act_mse::text, '-'));
    ELSE
        cut := new_mse <= act_mse * (1 + (p->>'tolerance')::double precision);
        decision := format('held-out MSE on %s pairs: new fit %s %s, active fit %s %s', n_hold, f.id, new_mse,
                           act.id, act_mse);
    END IF;
    PERFORM embedstack._w_job_update(job_id, CASE WHEN cut THEN 'prepare' ELSE 'done' END, NULL, NULL, NULL, f.id,
        NULL, jsonb_build_object('holdout_pairs', n_hold, 'new_mse', new_mse, 'active_fit', act.id,
                                      'active_mse', act_mse, 'decision', decision));
    IF NOT cut THEN
        PERFORM embedstack._w_job_finish(job_id, 'kept', decision || '; the active fit stays');
        RAISE NOTICE 'embedstack: model set "%": %; the active fit stays', ms.name, decision;
        RETURN 'done';
    END IF;
    RAISE NOTICE 'embedstack: model set "%": %; cutting over', ms.name, decision;
    RETURN 'prepare';
END $$;
COMMENT ON FUNCTION embedstack._refit_fit(bigint) IS 'Internal refit step: fit on the training pairs, compare on the held-out ones, decide.';

CREATE OR REPLACE PROCEDURE embedstack.refit(
    model_set text,
    pairs regclass,
    left_column name,
    right_column name,
    target_column name,
    ridge double precision DEFAULT 0,
    nonnegative boolean DEFAULT false,
    sample_weight_column name DEFAULT NULL,
    holdout_fraction double precision DEFAULT 0.2,
    cutover text DEFAULT 'if_not_worse',
    tolerance double precision DEFAULT 0,
    wait boolean DEFAULT false,
    batch_size integer DEFAULT 10000)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets;
    params pg_catalog.jsonb;
    prev embedstack.jobs;
    job bigint;
BEGIN
    -- Procedures cannot carry SET search_path: nothing below may resolve a name through the
    -- caller's path (a pg_cron job runs this as a superuser, with public on the path), so it is
    -- pinned for this transaction here, and again after each COMMIT.
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    ms := embedstack._check_writer(model_set, batch_size, wait);
    PERFORM embedstack._check_job_runner(ms);
    IF pairs IS NULL OR left_column IS NULL OR right_column IS NULL OR target_column IS NULL OR ridge IS NULL
       OR nonnegative IS NULL OR holdout_fraction IS NULL OR cutover IS NULL OR tolerance IS NULL THEN
        RAISE EXCEPTION 'only sample_weight_column may be NULL' USING ERRCODE = '22004';
    END IF;
    -- NaN compares greater than every number in PostgreSQL: reject it explicitly.
    IF NOT (ridge >= 0) OR ridge IN ('NaN', 'Infinity') THEN
        RAISE EXCEPTION 'ridge must be a finite number >= 0, got %', ridge USING ERRCODE = '22023';
    END IF;
    IF NOT (holdout_fraction >= 0 AND holdout_fraction < 1) THEN
        RAISE EXCEPTION 'holdout_fraction must be in [0, 1), got %', holdout_fraction USING ERRCODE = '22023';
    END IF;
    IF cutover NOT IN ('if_not_worse', 'always', 'never') THEN
        RAISE EXCEPTION 'unknown cutover policy "%"', cutover USING ERRCODE = '22023',
            HINT = 'cutover is ''if_not_worse'' (compare on held-out pairs), ''always'' or ''never'' (only record the fit)';
    END IF;
    IF NOT (tolerance >= 0) OR tolerance IN ('NaN', 'Infinity') THEN
        RAISE EXCEPTION 'tolerance must be a finite number >= 0, got %', tolerance USING ERRCODE = '22023';
    END IF;
    IF holdout_fraction = 0 AND cutover = 'if_not_worse' AND ms.active_fit IS NOT NULL THEN
        RAISE EXCEPTION 'holdout_fraction => 0 leaves no pairs to compare a new fit with the active fit %', ms.active_fit
            USING ERRCODE = '22023', HINT = 'pass holdout_fraction > 0, or cutover => ''always''';
    END IF;
    PERFORM embedstack._column(pairs, left_column);
    PERFORM embedstack._column(pairs, right_column);
    PERFORM embedstack._column(pairs, target_column);
    IF sample_weight_column IS NOT NULL THEN
        PERFORM embedstack._column(pairs, sample_weight_column);
    END IF;
    params := pg_catalog.jsonb_build_object('pairs', pairs::text, 'pairs_oid', pairs::oid, 'left', left_column,
        'right', right_column, 'target', target_column, 'sample_weight', sample_weight_column, 'ridge', ridge,
        'nonnegative', nonnegative, 'holdout_fraction', holdout_fraction, 'cutover', cutover, 'tolerance', tolerance,
        'batch_size', batch_size);
    PERFORM embedstack._lock_model_set(ms.name, wait);
    PERFORM embedstack._require_no_transaction_block('refit');

    SELECT * INTO prev FROM embedstack.jobs j WHERE j.model_set = ms.name AND j.state = 'running' ORDER BY j.id DESC LIMIT 1;
    IF FOUND AND prev.kind = 'refit' AND prev.params - 'batch_size' = params - 'batch_size' AND prev.fit_id IS NOT NULL
       AND prev.phase <> 'fit' THEN
        job := embedstack._w_job_start(ms.name, 'refit', params, 'prepare', prev.id);
        PERFORM embedstack._w_job_update(job, 'prepare', NULL, NULL, NULL, prev.fit_id, NULL,
                                  prev.details || '{"resumed": true}'::jsonb);
        RAISE NOTICE 'embedstack: model set "%": resuming the interrupted refit % (fit %)', ms.name, prev.id, prev.fit_id;
    ELSE
        job := embedstack._w_job_start(ms.name, 'refit', params, 'fit', prev.id);
    END IF;
    COMMIT;
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    CALL embedstack._run_job(job);
END $$;
COMMENT ON PROCEDURE embedstack.refit(text, regclass, name, name, name, double precision, boolean, name, double precision, text, double precision, boolean, integer) IS
  'fit + decide + (materialize) + cut over, as one job, safe to schedule (pg_cron: a lone CALL). Pairs are split '
  'by a hash of their keys; holdout_fraction of them score the new and the active fit (prediction MSE). cutover: '
  'if_not_worse (default: serve the new fit when its held-out MSE <= active * (1 + tolerance), else keep the '
  'active one and record why), always, never (record only). Decision and progress: embedstack.jobs / status. '
  'Busy: 55P03 or wait => true. Re-running after an interruption finishes the interrupted refit.';

-- 4. The writers were not executable by PUBLIC (they ran as the catalog's owner through _write);
-- now they run as the caller and check ownership first.
GRANT EXECUTE ON FUNCTION
    embedstack._w_insert_model_set(text, regclass, name, name[], integer[], regtype[], text, double precision, name, text, name),
    embedstack._w_delete_model_set(text),
    embedstack._w_insert_fit(text, jsonb, double precision[], double precision, jsonb, double precision[], jsonb),
    embedstack._w_insert_generation(text, bigint, double precision[], text, integer),
    embedstack._w_generation_set(text, bigint, regclass, name, text, bigint),
    embedstack._w_delete_generation(text, bigint),
    embedstack._w_generation_pending(text, bigint, regclass, boolean),
    embedstack._w_serve(text, bigint, bigint),
    embedstack._w_job_start(text, text, jsonb, text, bigint),
    embedstack._w_job_update(bigint, text, bigint, bigint, text, bigint, name, jsonb, bigint),
    embedstack._w_job_finish(bigint, text, text, jsonb)
  TO PUBLIC;

-- Their comments (the writers' say how they run now) and the new policy function's.
COMMENT ON FUNCTION embedstack._w_generation_pending(text, bigint, regclass, boolean) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): a generation''s pending-keys table.';
COMMENT ON FUNCTION embedstack._may_read(regclass) IS
  'Internal: whether the current role may read the table (SELECT on it or a column, and not subject to its row security; or owner); '
  'the catalog''s row security for reads uses it.';
COMMENT ON FUNCTION embedstack._may_write(regclass) IS
  'Internal: whether the current role and the session''s outer role both own the table (not a temporary one); '
  'the catalog''s row security for writes uses it.';
COMMENT ON FUNCTION embedstack._w_insert_model_set(text, regclass, name, name[], integer[], regtype[], text, double precision, name, text, name) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): inserts a model set.';
COMMENT ON FUNCTION embedstack._w_delete_model_set(text) IS 'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): deletes a model set.';
COMMENT ON FUNCTION embedstack._w_insert_fit(text, jsonb, double precision[], double precision, jsonb, double precision[], jsonb) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): records a fit and trims the history.';
COMMENT ON FUNCTION embedstack._w_insert_generation(text, bigint, double precision[], text, integer) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): registers a generation being written.';
COMMENT ON FUNCTION embedstack._w_generation_set(text, bigint, regclass, name, text, bigint) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): a generation''s table, index or progress.';
COMMENT ON FUNCTION embedstack._w_delete_generation(text, bigint) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): forgets a generation.';
COMMENT ON FUNCTION embedstack._w_serve(text, bigint, bigint) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): the served fit and generation.';
COMMENT ON FUNCTION embedstack._w_job_start(text, text, jsonb, text, bigint) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): starts a job.';
COMMENT ON FUNCTION embedstack._w_job_update(bigint, text, bigint, bigint, text, bigint, name, jsonb, bigint) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): a job''s progress.';
COMMENT ON FUNCTION embedstack._w_job_finish(bigint, text, text, jsonb) IS
  'Internal catalog writer (as the caller; 42501 unless it owns the model set''s source): a job''s end.';

-- merge: NULL (the aggregate over no rows) is the empty state, merge(s, NULL) = merge(NULL, s) = s:
-- one empty fold no longer wipes a chain of merges (the C function now handles NULL itself).
ALTER FUNCTION embedstack.merge(double precision[], double precision[]) CALLED ON NULL INPUT;
COMMENT ON FUNCTION embedstack.merge(double precision[], double precision[]) IS
  'Merges two regression states (Chan et al.): merge(stats(A), stats(B)) = stats(A UNION ALL B); NULL is the '
  'empty state (merge(s, NULL) = s, merge(NULL, NULL) = NULL). Corrupt state: 22023; different feature counts: 22000.';

-- 5. Every served view gets the new gate, bound to the generation it reads (the one-argument
-- gate of 0.3.0 views refuses everyone from now on). CREATE OR REPLACE keeps the view, its owner,
-- its grants and the views users built on it. (An extension script may not replace an object
-- the extension does not own: the view is made a member for the CREATE OR REPLACE and released
-- right after, as 0.3.0's upgrade released the views it created.)
DO $redefine$
DECLARE
    ms embedstack.model_sets;
    g embedstack.generations;
    view text;
BEGIN
    FOR ms IN SELECT * FROM embedstack.model_sets m WHERE m.served_generation IS NOT NULL LOOP
        SELECT * INTO g FROM embedstack.generations x WHERE x.id = ms.served_generation AND x.model_set = ms.name;
        IF FOUND AND g.relation IS NOT NULL AND embedstack._is_served_view(ms) THEN
            view := format('%I.%I', (embedstack._source_info(ms)).nsp, ms.view_name);
            EXECUTE format('ALTER EXTENSION embedstack ADD VIEW %s', view);
            EXECUTE embedstack._view_sql(ms, g, true);
            EXECUTE format('ALTER EXTENSION embedstack DROP VIEW %s', view);
        END IF;
    END LOOP;
END $redefine$;
