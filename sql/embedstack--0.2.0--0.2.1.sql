-- embedstack 0.2.0 -> 0.2.1: the hardening release (issue 11). Only what changed; each change
-- says why. The upgrade-equals-fresh-install test (pgrx-tests/tests/operations_lifecycle.rs)
-- compares the result with a fresh 0.2.1 install object by object.
\echo Use "ALTER EXTENSION embedstack UPDATE TO '0.2.1'" to load this file. \quit

-- 1. Unique derived names (hash suffix when long): used by the trigger, column and index names below.

CREATE FUNCTION embedstack._derived_name(base text, tag text, hash_of text DEFAULT NULL) RETURNS name
LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    suffix text := '_' || substr(md5(coalesce(hash_of, base)), 1, 8) || '_' || tag;
    b text := base;
BEGIN
    IF hash_of IS NULL AND octet_length(base || '_' || tag) <= 63 THEN
        RETURN (base || '_' || tag)::name;
    END IF;
    WHILE octet_length(b) > 63 - octet_length(suffix) LOOP
        b := left(b, -1);
    END LOOP;
    RETURN (b || suffix)::name;
END $$;


-- 2. The catalog write gate and the read check (Rust). The writers lose SECURITY DEFINER and
-- EXECUTE for PUBLIC: they are reached through embedstack._write only, which checks that the
-- calling role and the outer role own the source (a SECURITY DEFINER writer could not see the
-- calling role: the confused deputy of issue 11).

CREATE FUNCTION embedstack._write(writer text, VARIADIC "any") RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'embedstack_write';

CREATE  FUNCTION "_may_read"(
	"source" regclass /* RegClass */
) RETURNS bool /* bool */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_may_read_wrapper';

CREATE OR REPLACE FUNCTION embedstack._w_insert_model_set(
    name text, source regclass, key_column name, model_columns name[], model_dims integer[],
    model_types regtype[], mode text, threshold double precision, combined_column name, storage text)
RETURNS embedstack.model_sets
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r embedstack.model_sets;
BEGIN
    INSERT INTO embedstack.model_sets AS m (name, source, key_column, model_columns, model_dims, model_types,
                                            mode, threshold, combined_column, storage)
    VALUES (name, source, key_column, model_columns, model_dims, model_types, mode, threshold, combined_column, storage)
    RETURNING m.* INTO r;
    RETURN r;
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_delete_model_set(model_set text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM embedstack.fits f WHERE f.model_set = _w_delete_model_set.model_set;   -- no FK: see catalog.sql
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
    INSERT INTO embedstack.fits AS f (model_set, options, weights, intercept, diagnostics, state, training_source)
    VALUES (model_set, options, weights, intercept, diagnostics, state, training_source)
    RETURNING f.* INTO r;
    IF keep > 0 THEN
        DELETE FROM embedstack.fits f
         WHERE f.model_set = _w_insert_fit.model_set
           AND f.id < (SELECT min(x.id) FROM (SELECT g.id FROM embedstack.fits g WHERE g.model_set = _w_insert_fit.model_set
                                               ORDER BY g.id DESC LIMIT keep) x)
           AND f.id NOT IN (SELECT v FROM embedstack.model_sets m, LATERAL (VALUES (m.active_fit), (m.staging_fit)) u(v)
                             WHERE m.name = _w_insert_fit.model_set AND v IS NOT NULL)
           AND f.id NOT IN (SELECT j.fit_id FROM embedstack.jobs j
                             WHERE j.model_set = _w_insert_fit.model_set AND j.state = 'running' AND j.fit_id IS NOT NULL);
        DELETE FROM embedstack.jobs j
         WHERE j.model_set = _w_insert_fit.model_set AND j.state <> 'running'
           AND j.id < (SELECT min(x.id) FROM (SELECT g.id FROM embedstack.jobs g WHERE g.model_set = _w_insert_fit.model_set
                                               ORDER BY g.id DESC LIMIT keep) x);
    END IF;
    RETURN r;
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_set_staging(model_set text, column_name name, fit_id bigint,
                                          multipliers double precision[], storage text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE embedstack.model_sets m
       SET staging_column = _w_set_staging.column_name, staging_fit = _w_set_staging.fit_id,
           staging_multipliers = _w_set_staging.multipliers, staging_storage = _w_set_staging.storage
     WHERE m.name = _w_set_staging.model_set;
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_serve(model_set text, fit_id bigint, multipliers double precision[],
                                    storage text, index_name name) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM embedstack.fits f WHERE f.id = fit_id AND f.model_set = _w_serve.model_set) THEN
        RAISE EXCEPTION 'fit % of model set "%" does not exist', fit_id, model_set USING ERRCODE = '42704';
    END IF;
    UPDATE embedstack.model_sets m
       SET active_fit = _w_serve.fit_id, served_multipliers = _w_serve.multipliers, served_storage = _w_serve.storage,
           served_index = _w_serve.index_name,
           staging_column = NULL, staging_fit = NULL, staging_multipliers = NULL, staging_storage = NULL
     WHERE m.name = _w_serve.model_set;
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_job_start(model_set text, kind text, params jsonb, phase text, resumed_from bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id bigint;
BEGIN
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
    index_name name DEFAULT NULL, details jsonb DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE embedstack.jobs j
       SET phase = coalesce(_w_job_update.phase, j.phase),
           rows_done = coalesce(_w_job_update.rows_done, j.rows_done),
           rows_total = coalesce(_w_job_update.rows_total, j.rows_total),
           cursor_key = coalesce(_w_job_update.cursor_key, j.cursor_key),
           fit_id = coalesce(_w_job_update.fit_id, j.fit_id),
           index_name = coalesce(_w_job_update.index_name, j.index_name),
           details = j.details || coalesce(_w_job_update.details, '{}'),
           updated_at = clock_timestamp()
     WHERE j.id = job_id AND j.state = 'running';
END $$;

CREATE OR REPLACE FUNCTION embedstack._w_job_finish(job_id bigint, state text, outcome text, error jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF state NOT IN ('succeeded', 'kept', 'failed') THEN
        RAISE EXCEPTION 'invalid final job state "%"', state USING ERRCODE = '22023';
    END IF;
    UPDATE embedstack.jobs j
       SET state = _w_job_finish.state, outcome = _w_job_finish.outcome, error = _w_job_finish.error,
           phase = CASE WHEN _w_job_finish.state = 'failed' THEN j.phase ELSE 'done' END,
           updated_at = clock_timestamp(), finished_at = clock_timestamp()
     WHERE j.id = job_id;
END $$;

-- Only the extension's owner executes the writers (through embedstack._write).
REVOKE EXECUTE ON FUNCTION
    embedstack._w_insert_model_set(text, regclass, name, name[], integer[], regtype[], text, double precision, name, text),
    embedstack._w_delete_model_set(text),
    embedstack._w_insert_fit(text, jsonb, double precision[], double precision, jsonb, double precision[], jsonb),
    embedstack._w_set_staging(text, name, bigint, double precision[], text),
    embedstack._w_serve(text, bigint, double precision[], text, name),
    embedstack._w_job_start(text, text, jsonb, text, bigint),
    embedstack._w_job_update(bigint, text, bigint, bigint, text, bigint, name, jsonb),
    embedstack._w_job_finish(bigint, text, text, jsonb)
  FROM PUBLIC;

-- The owner check of the writers moved into embedstack._write.
DROP FUNCTION embedstack._owned_source(text);


-- 3. Catalog rows visible to the roles that may read the source; model sets of dropped tables
-- dropped with them (sql/catalog_access.sql, whole).

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


-- The status view reads the catalog as the querying role (row security applies to it).
ALTER VIEW embedstack.status SET (security_invoker = true);


-- materialize and refit refuse to start inside a transaction block (2D000 with a HINT).
CREATE  FUNCTION "_require_no_transaction_block"(
	"procedure" TEXT /* &str */
) RETURNS void
STRICT VOLATILE PARALLEL RESTRICTED
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_require_no_transaction_block_wrapper';
COMMENT ON FUNCTION embedstack._require_no_transaction_block(text) IS
  'Internal: 2D000 with a hint when materialize or refit is called inside a transaction block (they commit per step).';

-- 4. The public functions and steps that call the writers (now through embedstack._write), check
-- the actual column types, refuse temporary sources, and name what they create uniquely.

CREATE OR REPLACE FUNCTION embedstack._model_set(model_set text) RETURNS embedstack.model_sets
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets;
BEGIN
    SELECT * INTO ms FROM embedstack.model_sets m WHERE m.name = model_set;
    IF NOT FOUND AND embedstack._model_set_exists(model_set) THEN
        RAISE EXCEPTION 'permission denied for model set "%"', model_set USING ERRCODE = '42501',
            HINT = 'a model set is visible to the roles that may read its source table';
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model set "%" does not exist', model_set USING ERRCODE = '42704',
            HINT = 'SELECT name FROM embedstack.model_sets lists them; embedstack.create_model_set creates one';
    END IF;
    RETURN ms;
END $$;

CREATE OR REPLACE FUNCTION embedstack._trigger_name(model_set text) RETURNS name
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN octet_length('embedstack_' || model_set) <= 63 THEN ('embedstack_' || model_set)::name
                ELSE embedstack._derived_name('embedstack_' || model_set, 'trg') END
$$;

CREATE FUNCTION embedstack._own_trigger(source regclass, model_set text) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_trigger t
                    WHERE t.tgrelid = source AND t.tgname = embedstack._trigger_name(model_set)
                      AND t.tgfoid = 'embedstack._refresh_combined()'::regprocedure AND t.tgnargs = 1
                      AND t.tgargs = convert_to(model_set, getdatabaseencoding()) || '\x00'::bytea)
$$;

CREATE OR REPLACE FUNCTION embedstack.create_model_set(
    name text,
    source regclass,
    key_column name,
    model_columns name[],
    mode text DEFAULT 'symmetric',
    threshold double precision DEFAULT 0.05,
    combined_column name DEFAULT NULL,
    storage text DEFAULT 'auto',
    model_dims integer[] DEFAULT NULL)
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
        RAISE EXCEPTION 'a column appears twice among the key and model columns' USING ERRCODE = '42701';
    END IF;
    IF model_dims IS NOT NULL AND cardinality(model_dims) <> cardinality(model_columns) THEN
        RAISE EXCEPTION 'model_dims has % entries for % model columns', cardinality(model_dims), cardinality(model_columns)
            USING ERRCODE = '22023';
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
    IF v_combined = key_column OR v_combined = ANY (model_columns) THEN
        RAISE EXCEPTION 'combined column "%" is the key or a model column', v_combined USING ERRCODE = '42701';
    END IF;
    IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = source AND a.attname = v_combined AND NOT a.attisdropped) THEN
        RAISE EXCEPTION 'column "%" already exists in %', v_combined, source USING ERRCODE = '42701',
            HINT = 'materialize creates the combined column; choose another name with combined_column';
    END IF;
    IF EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.source = create_model_set.source
                AND m.combined_column = v_combined) THEN
        RAISE EXCEPTION 'model set "%" already serves column "%" of %',
            (SELECT m.name FROM embedstack.model_sets m WHERE m.source = create_model_set.source
                AND m.combined_column = v_combined), v_combined, source USING ERRCODE = '42701';
    END IF;

    PERFORM embedstack._write('insert_model_set', name, source, key_column, model_columns, v_dims, v_types, mode,
                              threshold, v_combined, storage);
    RETURN embedstack._model_set(name);
END $$;

CREATE OR REPLACE FUNCTION embedstack.drop_model_set(name text, drop_columns boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(name);
BEGIN
    -- Not while a materialize or refit of it runs (the lock is released at the end of this
    -- transaction by the abort callback, or explicitly below).
    PERFORM embedstack._lock_model_set(ms.name, false);
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = ms.source) THEN
        -- The source is gone (its trigger, columns and indexes with it): only the catalog rows
        -- remain, which embedstack._write lets a superuser delete.
        PERFORM embedstack._write('delete_model_set', ms.name);
        PERFORM embedstack._job_unlock(hashtext(ms.name));
        RETURN;
    END IF;
    PERFORM embedstack._check_owner(ms.source);
    IF embedstack._own_trigger(ms.source, ms.name) THEN
        EXECUTE format('DROP TRIGGER %I ON %s', embedstack._trigger_name(ms.name), ms.source);
    END IF;
    IF drop_columns THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', ms.source, ms.combined_column);
        IF ms.staging_column IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', ms.source, ms.staging_column);
        END IF;
    END IF;
    PERFORM embedstack._write('delete_model_set', ms.name);
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
    fid := embedstack._write('insert_fit', model_set,
        jsonb_build_object('ridge', ridge, 'nonnegative', nonnegative, 'fit_intercept', true),
        f.weights, f.intercept,
        jsonb_build_object('r2', f.r2, 'rmse', f.rmse, 'n_used', f.n_used, 'n_skipped', f.n_skipped,
                           'condition_number', CASE WHEN f.condition_number = 'Infinity' THEN NULL ELSE f.condition_number END,
                           'std_errors', to_jsonb(f.std_errors), 'rank', f.rank,
                           'collinear', to_jsonb(f.collinear)) || extra_diagnostics,
        st, training_source);
    SELECT * INTO r FROM embedstack.fits x WHERE x.id = fid;
    RETURN r;
END $$;

DROP FUNCTION embedstack._staging_index_name(text);

CREATE FUNCTION embedstack._index_name(model_set text, final boolean) RETURNS name
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT embedstack._derived_name(c.relname || '_' || m.combined_column, CASE WHEN final THEN 'hnsw' ELSE 'hnsw_next' END,
                                    format('%I.%I.%I', n.nspname, c.relname, m.combined_column))
      FROM embedstack.model_sets m JOIN pg_class c ON c.oid = m.source JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE m.name = model_set
$$;

CREATE FUNCTION embedstack._index_of(nsp name, idx name, source regclass, col name) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN to_regclass(format('%I.%I', nsp, idx)) IS NULL THEN NULL
                ELSE EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
                              WHERE i.indexrelid = to_regclass(format('%I.%I', nsp, idx)) AND i.indrelid = source
                                AND a.attname = col) END
$$;

CREATE OR REPLACE FUNCTION embedstack._mat_prepare(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    lay record;
    vnsp name := embedstack._vector_schema();
    stg name;
    collist text;
    total bigint;
    done bigint;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    lay := embedstack._layout(ms.name, j.fit_id);
    -- Same multipliers and storage: the stored vectors are already exactly what this fit would
    -- write (always so in query-weighted mode, where they do not depend on the weights).
    IF ms.served_multipliers = lay.multipliers AND ms.served_storage = lay.storage THEN
        PERFORM embedstack._write('serve', ms.name, j.fit_id, lay.multipliers, lay.storage, ms.served_index);
        PERFORM embedstack._write('job_update', job_id, 'done');
        PERFORM embedstack._write('job_finish', job_id, 'succeeded',
            format('stored vectors unchanged; fit %s is active', j.fit_id));
        RAISE NOTICE 'embedstack: model set "%": stored vectors unchanged, active fit is now %', ms.name, j.fit_id;
        RETURN 'done';
    END IF;

    stg := ms.staging_column;
    IF stg IS NOT NULL AND (ms.staging_fit IS DISTINCT FROM j.fit_id OR ms.staging_multipliers IS DISTINCT FROM lay.multipliers
                            OR ms.staging_storage IS DISTINCT FROM lay.storage) THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', ms.source, stg);
        stg := NULL;
    END IF;
    IF stg IS NULL THEN
        stg := embedstack._derived_name(ms.combined_column, 'next');
        IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = ms.source AND a.attname = stg AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column "%" of % is in the way of the staging column', stg, ms.source USING ERRCODE = '42701',
                HINT = 'rename or drop it, or create the model set with another combined_column';
        END IF;
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I %I.%s(%s)', ms.source, stg, vnsp, lay.storage, lay.width);
        PERFORM embedstack._write('set_staging', ms.name, stg, j.fit_id, lay.multipliers, lay.storage);
    END IF;
    SELECT string_agg(format('%I', c), ', ' ORDER BY o) INTO collist FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o);
    IF NOT embedstack._own_trigger(ms.source, ms.name) AND EXISTS (
        SELECT 1 FROM pg_trigger t WHERE t.tgrelid = ms.source AND t.tgname = embedstack._trigger_name(ms.name)) THEN
        RAISE EXCEPTION 'trigger "%" on % is in the way of model set "%"', embedstack._trigger_name(ms.name), ms.source, ms.name
            USING ERRCODE = '42710', HINT = 'rename or drop that trigger';
    END IF;
    EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE INSERT OR UPDATE OF %s ON %s FOR EACH ROW '
                   'EXECUTE FUNCTION embedstack._refresh_combined(%L)',
                   embedstack._trigger_name(ms.name), collist, ms.source, ms.name);
    EXECUTE format('SELECT count(*), count(%I) FROM %s', stg, ms.source) INTO total, done;
    PERFORM embedstack._write('job_update', job_id, 'write', done, total);
    RAISE NOTICE 'embedstack: model set "%": writing % rows of %(%) into %.% (% already done)',
        ms.name, total - done, lay.storage, lay.width, ms.source, stg, done;
    RETURN 'write';
END $$;

CREATE OR REPLACE FUNCTION embedstack._mat_write(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    keytype text;
    cols text;
    n bigint;
    last_key text;
    done bigint;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT format_type(a.atttypid, a.atttypmod) INTO keytype FROM pg_attribute a
     WHERE a.attrelid = ms.source AND a.attname = ms.key_column AND NOT a.attisdropped;
    SELECT string_agg(format('t.%I', c), ', ' ORDER BY o) INTO cols FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o);
    EXECUTE format(
        'WITH b AS (SELECT %1$I AS k FROM %2$s WHERE ($1::text IS NULL OR %1$I > $1::text::%3$s) AND %4$I IS NULL '
        '           ORDER BY %1$I LIMIT $2), '
        '     u AS (UPDATE %2$s t SET %4$I = embedstack.%5$I($3, $4, $5, t.%1$I, %6$s) FROM b WHERE t.%1$I = b.k RETURNING t.%1$I AS k) '
        'SELECT count(*), (SELECT k::text FROM b ORDER BY k DESC LIMIT 1) FROM u',
        ms.key_column, ms.source, keytype, ms.staging_column, '_combine_' || ms.staging_storage, cols)
    INTO n, last_key
    USING j.cursor_key, (j.params->>'batch_size')::integer, ms.staging_multipliers, ms.model_dims, ms.model_columns::text[];
    IF last_key IS NULL THEN
        PERFORM embedstack._write('job_update', job_id, 'index');
        RETURN 'index';
    END IF;
    done := j.rows_done + n;
    PERFORM embedstack._write('job_update', job_id, 'write', done, NULL, last_key);
    RAISE NOTICE 'embedstack: model set "%": % / % rows (% %%), % rows/s', ms.name, done, j.rows_total,
        CASE WHEN j.rows_total > 0 THEN round(100.0 * done / j.rows_total, 1) ELSE 100 END,
        round(done / greatest(extract(epoch FROM clock_timestamp() - j.started_at), 0.001));
    RETURN 'write';
END $$;

CREATE OR REPLACE FUNCTION embedstack._mat_index(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    nsp name;
    idx name;
    idx_oid regclass;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT n.nspname INTO nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ms.source;
    idx := embedstack._index_name(ms.name, false);
    IF NOT embedstack._index_of(nsp, idx, ms.source, ms.staging_column) THEN
        RAISE EXCEPTION 'relation %.% is in the way of the staging index of model set "%"', nsp, idx, ms.name
            USING ERRCODE = '42P07', HINT = 'rename or drop it';
    END IF;
    idx_oid := to_regclass(format('%I.%I', nsp, idx));
    IF idx_oid IS NOT NULL AND NOT EXISTS (
        SELECT 1 FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0]
         WHERE i.indexrelid = idx_oid AND i.indrelid = ms.source AND i.indisvalid AND a.attname = ms.staging_column) THEN
        EXECUTE format('DROP INDEX %I.%I', nsp, idx);
        idx_oid := NULL;
    END IF;
    IF idx_oid IS NULL THEN
        RAISE NOTICE 'embedstack: model set "%": building the HNSW index %.%', ms.name, nsp, idx;
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (%I %I.%s)', idx, ms.source, ms.staging_column,
                       embedstack._vector_schema(), ms.staging_storage || '_ip_ops');
    ELSE
        RAISE NOTICE 'embedstack: model set "%": the HNSW index %.% of an interrupted run is complete, keeping it', ms.name, nsp, idx;
    END IF;
    PERFORM embedstack._write('job_update', job_id, 'wait', NULL, NULL, NULL, NULL, idx,
        jsonb_build_object('horizon', pg_current_xact_id()::text, 'hidden', to_jsonb(embedstack._hidden_transactions())));
    RETURN 'wait';
END $$;

CREATE OR REPLACE FUNCTION embedstack._mat_wait(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    nsp name;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    SELECT n.nspname INTO nsp FROM embedstack.model_sets m JOIN pg_class c ON c.oid = m.source
      JOIN pg_namespace n ON n.oid = c.relnamespace WHERE m.name = j.model_set;
    IF embedstack._cutover_ready((j.details->>'horizon')::xid8,
                                 ARRAY(SELECT jsonb_array_elements_text(j.details->'hidden'))) THEN
        PERFORM embedstack._write('job_update', job_id, 'cutover');
        RETURN 'cutover';
    END IF;
    IF NOT coalesce((j.details->>'waiting')::boolean, false) THEN
        RAISE NOTICE 'embedstack: model set "%": waiting for transactions older than the new column to finish (pids %)',
            j.model_set, (SELECT string_agg(a.pid::text, ', ') FROM pg_stat_activity a
                           WHERE (a.backend_xid IS NOT NULL OR a.backend_xmin IS NOT NULL) AND a.pid <> pg_backend_pid()
                             AND a.datname = current_database()
                             AND a.backend_type IN ('client backend', 'background worker'));
        PERFORM embedstack._write('job_update', job_id, 'wait', NULL, NULL, NULL, NULL, NULL, '{"waiting": true}'::jsonb);
    END IF;
    PERFORM pg_sleep(0.1);
    RETURN 'wait';
END $$;

CREATE OR REPLACE FUNCTION embedstack._mat_cutover(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    nsp name;
    idx_final name;
    prev_timeout text;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT n.nspname INTO nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ms.source;
    idx_final := embedstack._index_name(ms.name, true);
    IF NOT embedstack._index_of(nsp, idx_final, ms.source, ms.combined_column)
       AND idx_final IS DISTINCT FROM ms.served_index THEN
        RAISE EXCEPTION 'relation %.% is in the way of the served index of model set "%"', nsp, idx_final, ms.name
            USING ERRCODE = '42P07', HINT = 'rename or drop it';
    END IF;
    -- ACCESS EXCLUSIVE waits for running queries, and queries queue behind a waiting lock:
    -- wait at most 2 s, then let them through and try again in the next step.
    prev_timeout := current_setting('lock_timeout');
    PERFORM set_config('lock_timeout', '2s', true);
    BEGIN
        EXECUTE format('LOCK TABLE %s IN ACCESS EXCLUSIVE MODE', ms.source);
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'embedstack: model set "%": the cut-over waits for queries on % (retrying)', ms.name, ms.source;
        PERFORM pg_sleep(0.5);
        RETURN 'cutover';
    END;
    PERFORM set_config('lock_timeout', prev_timeout, true);
    IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = ms.source AND a.attname = ms.combined_column
                  AND NOT a.attisdropped) THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN %I', ms.source, ms.combined_column);
    END IF;
    -- The index served so far (by its recorded name: 0.2.0 named it differently), and one
    -- left under the final name, each only when it is this table's index on the column.
    IF ms.served_index IS NOT NULL AND embedstack._index_of(nsp, ms.served_index, ms.source, ms.combined_column) THEN
        EXECUTE format('DROP INDEX %I.%I', nsp, ms.served_index);
    END IF;
    IF embedstack._index_of(nsp, idx_final, ms.source, ms.combined_column) THEN
        EXECUTE format('DROP INDEX %I.%I', nsp, idx_final);
    END IF;
    EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', ms.source, ms.staging_column, ms.combined_column);
    EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', nsp, j.index_name, idx_final);
    PERFORM embedstack._write('serve', ms.name, j.fit_id, ms.staging_multipliers, ms.staging_storage, idx_final);
    PERFORM embedstack._write('job_update', job_id, 'done');
    PERFORM embedstack._write('job_finish', job_id, 'succeeded', coalesce(j.details->>'decision' || '; ', '')
        || format('serving fit %s from %s.%I (%s), index %I.%I', j.fit_id, ms.source, ms.combined_column,
                  ms.staging_storage, nsp, idx_final));
    RAISE NOTICE 'embedstack: model set "%": serving fit % from %.% (%), index %.%', ms.name, j.fit_id, ms.source,
        ms.combined_column, ms.staging_storage, nsp, idx_final;
    RETURN 'done';
END $$;

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
        DROP VIEW pg_temp.embedstack_refit_train;
    END IF;
    IF to_regclass('pg_temp.embedstack_refit_holdout') IS NOT NULL THEN
        DROP VIEW pg_temp.embedstack_refit_holdout;
    END IF;
    EXECUTE format('CREATE TEMP VIEW embedstack_refit_train AS SELECT * FROM %s p '
                   'WHERE NOT embedstack._in_holdout(p.%I::text, p.%I::text, %L)', pairs, p->>'left', p->>'right', frac);
    EXECUTE format('CREATE TEMP VIEW embedstack_refit_holdout AS SELECT * FROM %s p '
                   'WHERE embedstack._in_holdout(p.%I::text, p.%I::text, %L)', pairs, p->>'left', p->>'right', frac);
    st_train := embedstack.pair_statistics(ms.name, 'pg_temp.embedstack_refit_train'::regclass, p->>'left', p->>'right',
                                           p->>'target', p->>'sample_weight');
    IF frac > 0 THEN
        st_hold := embedstack.pair_statistics(ms.name, 'pg_temp.embedstack_refit_holdout'::regclass, p->>'left', p->>'right',
                                              p->>'target', p->>'sample_weight');
        n_hold := st_hold[4]::bigint;
    END IF;
    DROP VIEW pg_temp.embedstack_refit_train, pg_temp.embedstack_refit_holdout;

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
    PERFORM embedstack._write('job_update', job_id, CASE WHEN cut THEN 'prepare' ELSE 'done' END, NULL, NULL, NULL, f.id,
        NULL, jsonb_build_object('holdout_pairs', n_hold, 'new_mse', new_mse, 'active_fit', act.id,
                                      'active_mse', act_mse, 'decision', decision));
    IF NOT cut THEN
        PERFORM embedstack._write('job_finish', job_id, 'kept', decision || '; the active fit stays');
        RAISE NOTICE 'embedstack: model set "%": %; the active fit stays', ms.name, decision;
        RETURN 'done';
    END IF;
    RAISE NOTICE 'embedstack: model set "%": %; cutting over', ms.name, decision;
    RETURN 'prepare';
END $$;

CREATE OR REPLACE PROCEDURE embedstack._run_job(job_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    phase text;
    key integer;
    failed boolean;
    e_state text;
    e_msg text;
    e_detail text;
    e_hint text;
    e_ctx text;
BEGIN
    SELECT pg_catalog.hashtext(j.model_set), j.phase INTO key, phase FROM embedstack.jobs j WHERE j.id = job_id;
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
            PERFORM embedstack._write('job_finish', job_id, 'failed', e_msg,
                pg_catalog.jsonb_build_object('sqlstate', e_state, 'message', e_msg, 'detail', nullif(e_detail, ''),
                                              'hint', nullif(e_hint, ''), 'context', nullif(e_ctx, '')));
            COMMIT;
            PERFORM embedstack._job_unlock(key);
            PERFORM embedstack._reraise(e_state, e_msg, e_detail, e_hint);
        END IF;
        COMMIT;
        EXIT WHEN phase = 'done';
    END LOOP;
    PERFORM embedstack._job_unlock(key);
END $$;

CREATE OR REPLACE PROCEDURE embedstack.materialize(model_set text, fit_id bigint DEFAULT NULL, batch_size integer DEFAULT 10000,
                                        wait boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets := embedstack._check_writer(model_set, batch_size, wait);
    fid bigint := fit_id;
    job bigint;
BEGIN
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
    job := embedstack._write('job_start', ms.name, 'materialize', pg_catalog.jsonb_build_object('batch_size', batch_size), 'prepare',
        (SELECT max(j.id) FROM embedstack.jobs j WHERE j.model_set = ms.name AND j.state = 'running'));
    PERFORM embedstack._write('job_update', job, 'prepare', NULL, NULL, NULL, fid);
    COMMIT;
    CALL embedstack._run_job(job);
END $$;

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
    ms embedstack.model_sets := embedstack._check_writer(model_set, batch_size, wait);
    params jsonb;
    prev embedstack.jobs;
    job bigint;
BEGIN
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
        job := embedstack._write('job_start', ms.name, 'refit', params, 'prepare', prev.id);
        PERFORM embedstack._write('job_update', job, 'prepare', NULL, NULL, NULL, prev.fit_id, NULL,
                                  prev.details || '{"resumed": true}'::jsonb);
        RAISE NOTICE 'embedstack: model set "%": resuming the interrupted refit % (fit %)', ms.name, prev.id, prev.fit_id;
    ELSE
        job := embedstack._write('job_start', ms.name, 'refit', params, 'fit', prev.id);
    END IF;
    COMMIT;
    CALL embedstack._run_job(job);
END $$;


-- (PARALLEL RESTRICTED: it calls pg_backend_pid().)
CREATE OR REPLACE FUNCTION embedstack._cutover_ready(horizon xid8, hidden text[]) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    horizon_age integer := age((horizon::text::numeric % 4294967296)::text::xid);
BEGIN
    IF pg_snapshot_xmin(pg_current_snapshot()) <= horizon THEN
        RETURN false;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_stat_activity a
                WHERE a.pid <> pg_backend_pid() AND a.datname = current_database()
                  AND a.backend_type IN ('client backend', 'background worker')
                  AND greatest(age(a.backend_xid), age(a.backend_xmin)) >= horizon_age
                  AND NOT pg_backend_pid() = ANY (pg_blocking_pids(a.pid))) THEN
        RETURN false;
    END IF;
    RETURN NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'virtualxid' AND l.virtualxid = ANY (hidden));
END $$;

-- (PARALLEL RESTRICTED: it calls pg_backend_pid().)
CREATE OR REPLACE FUNCTION embedstack._hidden_transactions() RETURNS text[]
LANGUAGE sql VOLATILE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(l.virtualxid), '{}') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'virtualxid' AND l.granted AND a.pid <> pg_backend_pid()
       AND a.datid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
       AND a.state IS NULL AND NOT pg_backend_pid() = ANY (pg_blocking_pids(a.pid))
$$;

-- 5. Freshness triggers of model sets whose names are longer than 52 bytes: 0.2.0 cut the name
-- (so two such model sets of one table shared one trigger); rename each to its new unique name.
DO $$
DECLARE
    r record;
BEGIN
    FOR r IN SELECT m.name, m.source, t.tgname FROM embedstack.model_sets m
               JOIN pg_catalog.pg_trigger t ON t.tgrelid = m.source
              WHERE t.tgname = ('embedstack_' || left(m.name, 52))::name
                AND t.tgname <> embedstack._trigger_name(m.name)
                AND t.tgargs = convert_to(m.name, getdatabaseencoding()) || '\x00'::bytea LOOP
        EXECUTE format('ALTER TRIGGER %I ON %s RENAME TO %I', r.tgname, r.source, embedstack._trigger_name(r.name));
    END LOOP;
END $$;

-- 6. Comments of the new and changed functions.
COMMENT ON FUNCTION embedstack._check_owner(regclass) IS
  'Internal: 42501 unless both the current role and the session''s outer role are members of the table''s owner.';
COMMENT ON FUNCTION embedstack._may_read(regclass) IS
  'Internal: whether the current role may read the table (SELECT on it or a column, or owner); the catalog''s row security uses it.';
COMMENT ON FUNCTION embedstack._write(text, "any") IS
  'Internal: the one door to the catalog writers: checks that the calling role and the outer role own the model set''s table, then runs the writer as the catalog''s owner.';
COMMENT ON FUNCTION embedstack._w_insert_model_set(text, regclass, name, name[], integer[], regtype[], text, double precision, name, text) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): inserts a model set.';
COMMENT ON FUNCTION embedstack._w_delete_model_set(text) IS 'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): deletes a model set.';
COMMENT ON FUNCTION embedstack._w_insert_fit(text, jsonb, double precision[], double precision, jsonb, double precision[], jsonb) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): records a fit and trims the history.';
COMMENT ON FUNCTION embedstack._w_set_staging(text, name, bigint, double precision[], text) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): the staging column of a materialisation.';
COMMENT ON FUNCTION embedstack._w_serve(text, bigint, double precision[], text, name) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): the served fit and layout.';
COMMENT ON FUNCTION embedstack._w_job_start(text, text, jsonb, text, bigint) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): starts a job.';
COMMENT ON FUNCTION embedstack._w_job_update(bigint, text, bigint, bigint, text, bigint, name, jsonb) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): a job''s progress.';
COMMENT ON FUNCTION embedstack._w_job_finish(bigint, text, text, jsonb) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): a job''s end.';
COMMENT ON FUNCTION embedstack._index_name(text, boolean) IS
  'Internal: name of a model set''s served (final) or staging HNSW index, derived from its table and column with a hash.';
COMMENT ON FUNCTION embedstack._index_of(name, name, regclass, name) IS
  'Internal: whether an index of that name is the table''s index on that column (NULL when no such relation exists).';
COMMENT ON FUNCTION embedstack._derived_name(text, text, text) IS
  'Internal: a name for an object the extension creates, unique by construction (hash suffix when long or asked for).';
COMMENT ON FUNCTION embedstack._own_trigger(regclass, text) IS
  'Internal: whether the table carries this model set''s freshness trigger.';

-- 7. The columns of the status view are documented (\d+ embedstack.status).
COMMENT ON COLUMN embedstack.status.model_set IS 'The model set''s name.';
COMMENT ON COLUMN embedstack.status.source IS 'Its source table.';
COMMENT ON COLUMN embedstack.status.combined_column IS 'The column of the source that serves the combined vectors.';
COMMENT ON COLUMN embedstack.status.mode IS 'symmetric or query_weighted.';
COMMENT ON COLUMN embedstack.status.active_fit IS 'The fit being served (embedstack.fits.id); NULL before the first materialise.';
COMMENT ON COLUMN embedstack.status.active_fit_created_at IS 'When the active fit was computed.';
COMMENT ON COLUMN embedstack.status.served_index IS 'The HNSW index on the combined column.';
COMMENT ON COLUMN embedstack.status.job_id IS 'The latest materialize or refit job (embedstack.jobs.id).';
COMMENT ON COLUMN embedstack.status.job_kind IS 'materialize or refit.';
COMMENT ON COLUMN embedstack.status.job_state IS 'running, interrupted (marked running but its session no longer holds the job lock), succeeded, kept (refit: the new fit was not better), or failed.';
COMMENT ON COLUMN embedstack.status.phase IS 'The job''s step: fit, prepare, write, index, wait, cutover or done.';
COMMENT ON COLUMN embedstack.status.job_fit IS 'The fit the job materialises.';
COMMENT ON COLUMN embedstack.status.rows_done IS 'Rows written so far (committed batches).';
COMMENT ON COLUMN embedstack.status.rows_total IS 'Rows to write (counted when the job prepared).';
COMMENT ON COLUMN embedstack.status.started_at IS 'When the job started.';
COMMENT ON COLUMN embedstack.status.updated_at IS 'When the job last reported progress.';
COMMENT ON COLUMN embedstack.status.rows_per_second IS 'rows_done divided by the time between started_at and updated_at.';
COMMENT ON COLUMN embedstack.status.pid IS 'The backend running (or that ran) the job.';
COMMENT ON COLUMN embedstack.status.outcome IS 'What a finished job did (served fit, kept decision with both held-out MSEs).';
COMMENT ON COLUMN embedstack.status.last_error IS 'Message of the latest failed job of this model set.';
COMMENT ON COLUMN embedstack.status.last_error_sqlstate IS 'Its SQLSTATE.';
COMMENT ON COLUMN embedstack.status.last_error_at IS 'When it failed.';
