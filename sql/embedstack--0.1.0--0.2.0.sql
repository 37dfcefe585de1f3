-- embedstack 0.1.0 -> 0.2.0: operations (refit, job lock, status, history retention), catalog
-- writes behind an owner check, prediction_mse. Hand-written; the upgrade test checks that an
-- upgraded database has exactly the objects (and definitions) of a fresh 0.2.0 install.
\echo Use "ALTER EXTENSION embedstack UPDATE TO '0.2.0'" to load this file. \quit

-- New C functions.
CREATE  FUNCTION "_job_lock"(
	"key" INT, /* i32 */
	"wait" bool /* bool */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_job_lock_wrapper';

CREATE  FUNCTION "_job_unlock"(
	"key" INT /* i32 */
) RETURNS bool /* bool */
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_job_unlock_wrapper';

CREATE  FUNCTION "_check_owner"(
	"source" regclass /* crate :: datatype :: regclass :: RegClass */
) RETURNS void
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_check_owner_wrapper';

CREATE  FUNCTION "_keep_history"() RETURNS INT /* i32 */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_keep_history_wrapper';

CREATE  FUNCTION "prediction_mse"(
	"state" double precision[], /* Array < '_, f64 > */
	"weights" double precision[], /* Vec < Option < f64 > > */
	"intercept" double precision /* f64 */
) RETURNS double precision /* Option < f64 > */
IMMUTABLE STRICT PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', 'prediction_mse_wrapper';

-- No foreign key between the dumped catalog tables: a parallel pg_restore loads both at once.
ALTER TABLE embedstack.fits DROP CONSTRAINT fits_model_set_fkey;

-- The jobs table (not dumped: runtime history).
-- One row per materialise / refit call: progress committed with every batch, the outcome, and
-- the error of a failed call. Not dumped (runtime history; a restored database has no jobs).
CREATE TABLE embedstack.jobs (
    id           bigserial PRIMARY KEY,
    model_set    text NOT NULL REFERENCES embedstack.model_sets (name) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('materialize', 'refit')),
    params       jsonb NOT NULL,
    fit_id       bigint,
    phase        text NOT NULL CHECK (phase IN ('fit', 'prepare', 'write', 'index', 'wait', 'cutover', 'done')),
    rows_done    bigint NOT NULL DEFAULT 0,
    rows_total   bigint,
    cursor_key   text,
    index_name   name,
    state        text NOT NULL CHECK (state IN ('running', 'succeeded', 'kept', 'failed', 'interrupted')),
    outcome      text,
    details      jsonb NOT NULL DEFAULT '{}',
    error        jsonb,
    pid          integer NOT NULL,
    resumed_from bigint,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz
);
CREATE INDEX jobs_model_set_idx ON embedstack.jobs (model_set, id);

-- Everyone may use the extension's functions (each checks what it needs: SELECT on the vectors it
-- reads, ownership of the table it changes); CREATE EXTENSION leaves the schema without grants.
GRANT USAGE ON SCHEMA embedstack TO PUBLIC;

REVOKE ALL ON embedstack.jobs FROM PUBLIC;
GRANT SELECT ON embedstack.jobs TO PUBLIC;

-- Catalog writers (SECURITY DEFINER, owner check).
CREATE FUNCTION embedstack._w_insert_model_set(
    name text, source regclass, key_column name, model_columns name[], model_dims integer[],
    model_types regtype[], mode text, threshold double precision, combined_column name, storage text)
RETURNS embedstack.model_sets
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r embedstack.model_sets;
BEGIN
    PERFORM embedstack._check_owner(source);
    INSERT INTO embedstack.model_sets AS m (name, source, key_column, model_columns, model_dims, model_types,
                                            mode, threshold, combined_column, storage)
    VALUES (name, source, key_column, model_columns, model_dims, model_types, mode, threshold, combined_column, storage)
    RETURNING m.* INTO r;
    RETURN r;
END $$;

-- The source table of a model set, or ERROR 42704; also checks the caller owns it.
CREATE FUNCTION embedstack._owned_source(model_set text) RETURNS regclass
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src regclass;
BEGIN
    SELECT m.source INTO src FROM embedstack.model_sets m WHERE m.name = model_set;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'model set "%" does not exist', model_set USING ERRCODE = '42704';
    END IF;
    PERFORM embedstack._check_owner(src);
    RETURN src;
END $$;

CREATE FUNCTION embedstack._w_delete_model_set(model_set text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_source(model_set);
    DELETE FROM embedstack.fits f WHERE f.model_set = _w_delete_model_set.model_set;   -- no FK: see catalog.sql
    DELETE FROM embedstack.model_sets m WHERE m.name = model_set;
END $$;

-- Records a fit, then trims the history to embedstack.keep_history fits and jobs per model set
-- (never the active fit, a fit being materialised, or the fit of a running job).
CREATE FUNCTION embedstack._w_insert_fit(
    model_set text, options jsonb, weights double precision[], intercept double precision,
    diagnostics jsonb, state double precision[], training_source jsonb)
RETURNS embedstack.fits
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r embedstack.fits;
    keep integer := embedstack._keep_history();
BEGIN
    PERFORM embedstack._owned_source(model_set);
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

-- The staging column of a materialisation in progress (all NULL: none).
CREATE FUNCTION embedstack._w_set_staging(model_set text, column_name name, fit_id bigint,
                                          multipliers double precision[], storage text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_source(model_set);
    UPDATE embedstack.model_sets m
       SET staging_column = _w_set_staging.column_name, staging_fit = _w_set_staging.fit_id,
           staging_multipliers = _w_set_staging.multipliers, staging_storage = _w_set_staging.storage
     WHERE m.name = _w_set_staging.model_set;
END $$;

-- What is served: the active fit and the stored layout (the staging state is cleared). Called
-- in the cut-over transaction, or alone when only the active fit changes (query-weighted mode).
CREATE FUNCTION embedstack._w_serve(model_set text, fit_id bigint, multipliers double precision[],
                                    storage text, index_name name) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_source(model_set);
    IF NOT EXISTS (SELECT 1 FROM embedstack.fits f WHERE f.id = fit_id AND f.model_set = _w_serve.model_set) THEN
        RAISE EXCEPTION 'fit % of model set "%" does not exist', fit_id, model_set USING ERRCODE = '42704';
    END IF;
    UPDATE embedstack.model_sets m
       SET active_fit = _w_serve.fit_id, served_multipliers = _w_serve.multipliers, served_storage = _w_serve.storage,
           served_index = _w_serve.index_name,
           staging_column = NULL, staging_fit = NULL, staging_multipliers = NULL, staging_storage = NULL
     WHERE m.name = _w_serve.model_set;
END $$;

CREATE FUNCTION embedstack._w_job_start(model_set text, kind text, params jsonb, phase text, resumed_from bigint)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id bigint;
BEGIN
    PERFORM embedstack._owned_source(model_set);
    -- A job still marked running was interrupted (its session is gone: the caller holds the lock).
    UPDATE embedstack.jobs j SET state = 'interrupted', finished_at = j.updated_at
     WHERE j.model_set = _w_job_start.model_set AND j.state = 'running';
    INSERT INTO embedstack.jobs AS j (model_set, kind, params, phase, state, pid, resumed_from)
    VALUES (model_set, kind, params, phase, 'running', pg_backend_pid(), resumed_from)
    RETURNING j.id INTO id;
    RETURN id;
END $$;

-- Progress of a running job: NULL arguments leave the column as it is.
CREATE FUNCTION embedstack._w_job_update(job_id bigint, phase text, rows_done bigint DEFAULT NULL,
    rows_total bigint DEFAULT NULL, cursor_key text DEFAULT NULL, fit_id bigint DEFAULT NULL,
    index_name name DEFAULT NULL, details jsonb DEFAULT NULL) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_source((SELECT j.model_set FROM embedstack.jobs j WHERE j.id = job_id));
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

CREATE FUNCTION embedstack._w_job_finish(job_id bigint, state text, outcome text, error jsonb DEFAULT NULL)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    PERFORM embedstack._owned_source((SELECT j.model_set FROM embedstack.jobs j WHERE j.id = job_id));
    IF state NOT IN ('succeeded', 'kept', 'failed') THEN
        RAISE EXCEPTION 'invalid final job state "%"', state USING ERRCODE = '22023';
    END IF;
    UPDATE embedstack.jobs j
       SET state = _w_job_finish.state, outcome = _w_job_finish.outcome, error = _w_job_finish.error,
           phase = CASE WHEN _w_job_finish.state = 'failed' THEN j.phase ELSE 'done' END,
           updated_at = clock_timestamp(), finished_at = clock_timestamp()
     WHERE j.id = job_id;
END $$;

-- Model sets: creation, drop and fit now write through the catalog writers.
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
    IF EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.name = create_model_set.name) THEN
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

    v_combined := coalesce(combined_column, left(name, 54) || '_combined');
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

    RETURN embedstack._w_insert_model_set(name, source, key_column, model_columns, v_dims, v_types, mode,
                                          threshold, v_combined, storage);
END $$;
CREATE OR REPLACE FUNCTION embedstack.drop_model_set(name text, drop_columns boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(name);
BEGIN
    PERFORM embedstack._check_owner(ms.source);
    -- Not while a materialize or refit of it runs (the lock is released at the end of this
    -- transaction by the abort callback, or explicitly below).
    PERFORM embedstack._lock_model_set(ms.name, false);
    EXECUTE format('DROP TRIGGER IF EXISTS %I ON %s', embedstack._trigger_name(ms.name), ms.source);
    IF drop_columns THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', ms.source, ms.combined_column);
        IF ms.staging_column IS NOT NULL THEN
            EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', ms.source, ms.staging_column);
        END IF;
    END IF;
    PERFORM embedstack._w_delete_model_set(ms.name);
    PERFORM embedstack._job_unlock(hashtext(ms.name));
END $$;
CREATE FUNCTION embedstack._record_fit(model_set text, st double precision[], ridge double precision,
    nonnegative boolean, training_source jsonb, extra_diagnostics jsonb DEFAULT '{}')
RETURNS embedstack.fits
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    f embedstack.fit;
BEGIN
    IF st[4] = 0 THEN
        RAISE EXCEPTION 'no usable pairs in % (% skipped)', training_source->>'pairs', st[5]::bigint USING ERRCODE = '22023',
            HINT = 'a pair is used when both keys exist in the source table, every model vector of both is '
                   'present and non-zero, and the target (and weight) are not NULL';
    END IF;
    f := embedstack.solve(st, ridge, nonnegative, true);
    RETURN embedstack._w_insert_fit(model_set,
        jsonb_build_object('ridge', ridge, 'nonnegative', nonnegative, 'fit_intercept', true),
        f.weights, f.intercept,
        jsonb_build_object('r2', f.r2, 'rmse', f.rmse, 'n_used', f.n_used, 'n_skipped', f.n_skipped,
                           'condition_number', CASE WHEN f.condition_number = 'Infinity' THEN NULL ELSE f.condition_number END,
                           'std_errors', to_jsonb(f.std_errors), 'rank', f.rank,
                           'collinear', to_jsonb(f.collinear)) || extra_diagnostics,
        st, training_source);
END $$;
CREATE OR REPLACE FUNCTION embedstack.fit(
    model_set text,
    pairs regclass,
    left_column name,
    right_column name,
    target_column name,
    ridge double precision DEFAULT 0,
    nonnegative boolean DEFAULT false,
    sample_weight_column name DEFAULT NULL)
RETURNS embedstack.fits
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
BEGIN
    IF ridge IS NULL OR nonnegative IS NULL OR NOT (ridge >= 0) OR ridge IN ('NaN', 'Infinity') THEN
        RAISE EXCEPTION 'ridge must be a finite number >= 0 and nonnegative a boolean' USING ERRCODE = '22023';
    END IF;
    PERFORM embedstack._check_owner(ms.source);
    RETURN embedstack._record_fit(ms.name,
        embedstack.pair_statistics(model_set, pairs, left_column, right_column, target_column, sample_weight_column),
        ridge, nonnegative,
        jsonb_build_object('pairs', pairs::text, 'left', left_column, 'right', right_column,
                           'target', target_column, 'sample_weight', sample_weight_column));
END $$;

-- materialize becomes a job of committed steps (new signature: wait).
DROP PROCEDURE embedstack.materialize(text, bigint, integer);
-- Materialising is a job (sql/operations.sql runs it): a sequence of steps, each one short
-- transaction, committed by the driver. All state lives in the table and the catalog (the
-- staging column, the staging index, the job row), so a run killed at any point is continued
-- by the next call, and the served column, its index and the active fit change only in the
-- cut-over step.
--   prepare -> write (one batch per step) -> index -> wait -> cutover -> done

-- The stored layout of a fit: per-model multipliers, storage type and width, or 54000.
CREATE FUNCTION embedstack._layout(model_set text, fit_id bigint,
    OUT multipliers double precision[], OUT storage text, OUT width integer)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
BEGIN
    multipliers := embedstack._stored_multipliers(ms.name, fit_id);
    SELECT coalesce(sum(d), 0) INTO width FROM unnest(ms.model_dims, multipliers) u(d, m) WHERE m <> 0;
    storage := CASE
        WHEN ms.storage IN ('auto', 'vector') AND width <= 2000 THEN 'vector'
        WHEN ms.storage IN ('auto', 'halfvec') AND width <= 4000 THEN 'halfvec'
    END;
    IF storage IS NULL THEN
        RAISE EXCEPTION 'the combined vector of model set "%" would have % dimensions, more than pgvector can index as % (at most %)',
            ms.name, width, CASE ms.storage WHEN 'vector' THEN 'vector' ELSE 'halfvec' END,
            CASE ms.storage WHEN 'vector' THEN 2000 ELSE 4000 END
            USING ERRCODE = '54000',
            HINT = 'vector indexes up to 2000 dimensions, halfvec up to 4000: raise the threshold to leave out '
                   'low-weight models (symmetric mode), drop models from the set, or use lower-dimensional models';
    END IF;
END $$;

CREATE FUNCTION embedstack._staging_index_name(model_set text) RETURNS name
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT (left(m.combined_column, 53) || '_hnsw_next')::name FROM embedstack.model_sets m WHERE m.name = model_set
$$;

-- May the cut-over happen? Not while a transaction older than the last batch still runs: the
-- cut-over renames columns, which is not MVCC-safe, so such a transaction would afterwards read
-- the new column through its old snapshot as NULL (its rows' versions predate the batches). And
-- when the batches were HOT updates, CREATE INDEX marks the new index indcheckxmin: the planner
-- ignores it in those transactions. So, as CREATE INDEX CONCURRENTLY does, wait for them:
--   horizon: an xid taken after the last batch committed (in the index step's transaction);
--   every session of this database whose xid or snapshot xmin we can see must be newer than it;
--   sessions whose details we may not see (other roles', without pg_read_all_stats) must have
--   ended the transaction they were in when the index step ran (hidden: their virtual xids).
-- Autovacuum plans no query and is not waited for; nor are sessions blocked by this one (a
-- materialize or refit queued with wait => true holds its statement's snapshot while it waits
-- for the job lock: waiting for it would deadlock).
CREATE FUNCTION embedstack._cutover_ready(horizon xid8, hidden text[]) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
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

-- The virtual xids of this database's other sessions whose details the caller may not see.
CREATE FUNCTION embedstack._hidden_transactions() RETURNS text[]
LANGUAGE sql VOLATILE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT coalesce(array_agg(l.virtualxid), '{}') FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
     WHERE l.locktype = 'virtualxid' AND l.granted AND a.pid <> pg_backend_pid()
       AND a.datid = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
       AND a.state IS NULL AND NOT pg_backend_pid() = ANY (pg_blocking_pids(a.pid))
$$;

-- prepare: the layout; when the vectors are already stored in it, switching the active fit is
-- all there is to do. Otherwise the staging column (resumed when it belongs
-- to this fit and layout, replaced otherwise) and the freshness trigger, which also keeps the
-- staging column right for rows written while the job runs.
CREATE FUNCTION embedstack._mat_prepare(job_id bigint) RETURNS text
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
        PERFORM embedstack._w_serve(ms.name, j.fit_id, lay.multipliers, lay.storage, ms.served_index);
        PERFORM embedstack._w_job_update(job_id, 'done');
        PERFORM embedstack._w_job_finish(job_id, 'succeeded',
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
        stg := left(ms.combined_column, 58) || '_next';
        IF EXISTS (SELECT 1 FROM pg_attribute a WHERE a.attrelid = ms.source AND a.attname = stg AND NOT a.attisdropped) THEN
            RAISE EXCEPTION 'column "%" of % is in the way of the staging column', stg, ms.source USING ERRCODE = '42701',
                HINT = 'rename or drop it, or create the model set with another combined_column';
        END IF;
        EXECUTE format('ALTER TABLE %s ADD COLUMN %I %I.%s(%s)', ms.source, stg, vnsp, lay.storage, lay.width);
        PERFORM embedstack._w_set_staging(ms.name, stg, j.fit_id, lay.multipliers, lay.storage);
    END IF;
    SELECT string_agg(format('%I', c), ', ' ORDER BY o) INTO collist FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o);
    EXECUTE format('CREATE OR REPLACE TRIGGER %I BEFORE INSERT OR UPDATE OF %s ON %s FOR EACH ROW '
                   'EXECUTE FUNCTION embedstack._refresh_combined(%L)',
                   embedstack._trigger_name(ms.name), collist, ms.source, ms.name);
    EXECUTE format('SELECT count(*), count(%I) FROM %s', stg, ms.source) INTO total, done;
    PERFORM embedstack._w_job_update(job_id, 'write', done, total);
    RAISE NOTICE 'embedstack: model set "%": writing % rows of %(%) into %.% (% already done)',
        ms.name, total - done, lay.storage, lay.width, ms.source, stg, done;
    RETURN 'write';
END $$;

-- write: one batch of batch_size rows whose staging value is missing, in key order after the
-- last batch (keyset pagination; rows written meanwhile are kept right by the trigger).
CREATE FUNCTION embedstack._mat_write(job_id bigint) RETURNS text
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
        PERFORM embedstack._w_job_update(job_id, 'index');
        RETURN 'index';
    END IF;
    done := j.rows_done + n;
    PERFORM embedstack._w_job_update(job_id, 'write', done, NULL, last_key);
    RAISE NOTICE 'embedstack: model set "%": % / % rows (% %%), % rows/s', ms.name, done, j.rows_total,
        CASE WHEN j.rows_total > 0 THEN round(100.0 * done / j.rows_total, 1) ELSE 100 END,
        round(done / greatest(extract(epoch FROM clock_timestamp() - j.started_at), 0.001));
    RETURN 'write';
END $$;

-- index: the HNSW index (inner product: exact weighted-sum ranking even with missing blocks)
-- on the staging column, built before the cut-over so queries keep using the old one. An
-- index left by an interrupted run on the same staging column is kept (the trigger and the
-- batches maintained it like any index).
CREATE FUNCTION embedstack._mat_index(job_id bigint) RETURNS text
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
    idx := embedstack._staging_index_name(ms.name);
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
    PERFORM embedstack._w_job_update(job_id, 'wait', index_name => idx,
        details => jsonb_build_object('horizon', pg_current_xact_id()::text, 'hidden', to_jsonb(embedstack._hidden_transactions())));
    RETURN 'wait';
END $$;

-- wait: until no transaction older than the last batch runs (see _cutover_ready); the old
-- column serves meanwhile. Sleeps 0.1 s per step; the driver commits between steps.
CREATE FUNCTION embedstack._mat_wait(job_id bigint) RETURNS text
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
        PERFORM embedstack._w_job_update(job_id, 'cutover');
        RETURN 'cutover';
    END IF;
    IF NOT coalesce((j.details->>'waiting')::boolean, false) THEN
        RAISE NOTICE 'embedstack: model set "%": waiting for transactions older than the new column to finish (pids %)',
            j.model_set, (SELECT string_agg(a.pid::text, ', ') FROM pg_stat_activity a
                           WHERE (a.backend_xid IS NOT NULL OR a.backend_xmin IS NOT NULL) AND a.pid <> pg_backend_pid());
        PERFORM embedstack._w_job_update(job_id, 'wait', details => '{"waiting": true}');
    END IF;
    PERFORM pg_sleep(0.1);
    RETURN 'wait';
END $$;

-- cutover: one short transaction under ACCESS EXCLUSIVE on the source: the old column and index
-- go, the staging ones take their names, the catalog says what is served.
CREATE FUNCTION embedstack._mat_cutover(job_id bigint) RETURNS text
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
    idx_final := left(ms.combined_column, 58) || '_hnsw';
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
    IF to_regclass(format('%I.%I', nsp, idx_final)) IS NOT NULL THEN
        EXECUTE format('DROP INDEX %I.%I', nsp, idx_final);
    END IF;
    EXECUTE format('ALTER TABLE %s RENAME COLUMN %I TO %I', ms.source, ms.staging_column, ms.combined_column);
    EXECUTE format('ALTER INDEX %I.%I RENAME TO %I', nsp, j.index_name, idx_final);
    PERFORM embedstack._w_serve(ms.name, j.fit_id, ms.staging_multipliers, ms.staging_storage, idx_final);
    PERFORM embedstack._w_job_update(job_id, 'done');
    PERFORM embedstack._w_job_finish(job_id, 'succeeded', coalesce(j.details->>'decision' || '; ', '')
        || format('serving fit %s from %s.%I (%s), index %I.%I', j.fit_id, ms.source, ms.combined_column,
                  ms.staging_storage, nsp, idx_final));
    RAISE NOTICE 'embedstack: model set "%": serving fit % from %.% (%), index %.%', ms.name, j.fit_id, ms.source,
        ms.combined_column, ms.staging_storage, nsp, idx_final;
    RETURN 'done';
END $$;

-- The job lock of a model set (src/operations/job_lock.rs), or 55P03 naming the holder.
CREATE FUNCTION embedstack._lock_model_set(model_set text, wait boolean) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    holder integer;
BEGIN
    IF NOT embedstack._job_lock(hashtext(model_set), wait) THEN
        SELECT l.pid INTO holder FROM pg_locks l
         WHERE l.locktype = 'advisory' AND l.database = (SELECT d.oid FROM pg_database d WHERE d.datname = current_database())
           AND l.classid = 1701667443::oid AND l.objid::bigint = (hashtext(model_set)::bigint & 4294967295)
           AND l.objsubid = 2 AND l.granted;
        RAISE EXCEPTION 'model set "%" is busy: a materialize or refit of it runs in another session (pid %)',
            model_set, coalesce(holder::text, 'unknown') USING ERRCODE = '55P03',
            HINT = 'wait for it to finish (embedstack.status shows its progress), or call with wait => true to queue behind it';
    END IF;
END $$;

-- Raises an error again after the driver recorded it (RAISE cannot take NULL options).
CREATE FUNCTION embedstack._reraise(sqlstate text, message text, detail text, hint text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF coalesce(detail, '') <> '' AND coalesce(hint, '') <> '' THEN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, DETAIL = detail, HINT = hint;
    ELSIF coalesce(detail, '') <> '' THEN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, DETAIL = detail;
    ELSIF coalesce(hint, '') <> '' THEN
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message, HINT = hint;
    ELSE
        RAISE EXCEPTION USING ERRCODE = sqlstate, MESSAGE = message;
    END IF;
END $$;

-- Is a labelled pair held out of a refit's training? A hash of its two keys, so the same pairs
-- are held out on every run (a fit that refit made from the same table never saw them).
CREATE FUNCTION embedstack._in_holdout(left_key text, right_key text, fraction double precision) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT (pg_catalog.hashtextextended(left_key || pg_catalog.chr(31) || right_key, 0) & 1048575) < fraction * 1048576
$$;

-- fit (refit's first step): train on the pairs not held out, score the new and the active fit
-- on the held-out ones (prediction MSE, exact from the held-out regression state), and decide.
CREATE FUNCTION embedstack._refit_fit(job_id bigint) RETURNS text
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
    PERFORM embedstack._w_job_update(job_id, CASE WHEN cut THEN 'prepare' ELSE 'done' END, fit_id => f.id,
        details => jsonb_build_object('holdout_pairs', n_hold, 'new_mse', new_mse, 'active_fit', act.id,
                                      'active_mse', act_mse, 'decision', decision));
    IF NOT cut THEN
        PERFORM embedstack._w_job_finish(job_id, 'kept', decision || '; the active fit stays');
        RAISE NOTICE 'embedstack: model set "%": %; the active fit stays', ms.name, decision;
        RETURN 'done';
    END IF;
    RAISE NOTICE 'embedstack: model set "%": %; cutting over', ms.name, decision;
    RETURN 'prepare';
END $$;

CREATE FUNCTION embedstack._job_step(job_id bigint, phase text) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF phase = 'fit' THEN RETURN embedstack._refit_fit(job_id);
    ELSIF phase = 'prepare' THEN RETURN embedstack._mat_prepare(job_id);
    ELSIF phase = 'write' THEN RETURN embedstack._mat_write(job_id);
    ELSIF phase = 'index' THEN RETURN embedstack._mat_index(job_id);
    ELSIF phase = 'wait' THEN RETURN embedstack._mat_wait(job_id);
    ELSIF phase = 'cutover' THEN RETURN embedstack._mat_cutover(job_id);
    END IF;
    RAISE EXCEPTION 'job % is in unknown phase "%"', job_id, phase USING ERRCODE = 'XX000';
END $$;

-- Runs a job's steps, committing after each. A failing step is recorded in the job row
-- (committed) and its error raised again; the job lock ends with the call either way.
-- No exception block may contain a COMMIT, hence the step-by-step structure.
CREATE PROCEDURE embedstack._run_job(job_id bigint)
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
            PERFORM embedstack._w_job_finish(job_id, 'failed', e_msg,
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

-- Checks shared by materialize and refit; returns the model set.
CREATE FUNCTION embedstack._check_writer(model_set text, batch_size integer, wait boolean) RETURNS embedstack.model_sets
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
BEGIN
    IF batch_size IS NULL OR batch_size < 1 THEN
        RAISE EXCEPTION 'batch_size must be at least 1' USING ERRCODE = '22023';
    END IF;
    IF wait IS NULL THEN
        RAISE EXCEPTION 'wait must not be NULL' USING ERRCODE = '22004';
    END IF;
    PERFORM embedstack._check_owner(ms.source);
    IF NOT has_table_privilege(ms.source, 'UPDATE') THEN
        RAISE EXCEPTION 'permission denied to update table %', ms.source USING ERRCODE = '42501',
            HINT = 'materialize and refit write the combined column: they need UPDATE on the source table';
    END IF;
    RETURN ms;
END $$;

-- Writes the model set's combined column for a fit: into a staging column, in batches of
-- batch_size rows each committed, then builds the HNSW index (inner product) and cuts over
-- in one short transaction. The served column, its index and the active fit stay as they
-- were until that last transaction. Must be called outside an explicit transaction block
-- (it COMMITs); re-running it after an interruption continues with the rows not done yet.
-- One materialize or refit per model set at a time: another caller gets 55P03 at once, or
-- with wait => true queues behind it.
CREATE PROCEDURE embedstack.materialize(model_set text, fit_id bigint DEFAULT NULL, batch_size integer DEFAULT 10000,
                                        wait boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets := embedstack._check_writer(model_set, batch_size, wait);
    fid bigint := fit_id;
    job bigint;
BEGIN
    IF fid IS NULL THEN
        SELECT max(f.id) INTO fid FROM embedstack.fits f WHERE f.model_set = ms.name;
        IF fid IS NULL THEN
            RAISE EXCEPTION 'model set "%" has no fit', ms.name USING ERRCODE = '55000',
                HINT = 'run embedstack.fit first';
        END IF;
    END IF;
    PERFORM embedstack._layout(ms.name, fid);   -- 42704, 22023, 54000 before anything changes
    PERFORM embedstack._lock_model_set(ms.name, wait);
    job := embedstack._w_job_start(ms.name, 'materialize', pg_catalog.jsonb_build_object('batch_size', batch_size), 'prepare',
        (SELECT max(j.id) FROM embedstack.jobs j WHERE j.model_set = ms.name AND j.state = 'running'));
    PERFORM embedstack._w_job_update(job, 'prepare', fit_id => fid);
    COMMIT;
    CALL embedstack._run_job(job);
END $$;

-- fit -> decide -> (materialise) -> cut over, as one job. The pairs are split by a hash of
-- their keys: holdout_fraction of them are held out of training and used to compare the new fit
-- with the active one (prediction MSE). cutover => 'if_not_worse' (default) serves the new fit
-- only when its held-out MSE is at most the active fit's times (1 + tolerance); 'always' serves
-- it regardless; 'never' only records it. The decision is recorded in the job (embedstack.jobs,
-- embedstack.status). Re-running it after an interruption with the same arguments finishes the
-- interrupted refit (its fit and decision) from the last committed batch.
CREATE PROCEDURE embedstack.refit(
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

    SELECT * INTO prev FROM embedstack.jobs j WHERE j.model_set = ms.name AND j.state = 'running' ORDER BY j.id DESC LIMIT 1;
    IF FOUND AND prev.kind = 'refit' AND prev.params - 'batch_size' = params - 'batch_size' AND prev.fit_id IS NOT NULL
       AND prev.phase <> 'fit' THEN
        job := embedstack._w_job_start(ms.name, 'refit', params, 'prepare', prev.id);
        PERFORM embedstack._w_job_update(job, 'prepare', fit_id => prev.fit_id,
                                         details => prev.details || '{"resumed": true}');
        RAISE NOTICE 'embedstack: model set "%": resuming the interrupted refit % (fit %)', ms.name, prev.id, prev.fit_id;
    ELSE
        job := embedstack._w_job_start(ms.name, 'refit', params, 'fit', prev.id);
    END IF;
    COMMIT;
    CALL embedstack._run_job(job);
END $$;

-- Per model set: what is served, the latest job (a job marked running whose session no longer
-- holds the model set's job lock was interrupted) and the latest error.
CREATE VIEW embedstack.status AS
SELECT m.name AS model_set,
       m.source,
       m.combined_column,
       m.mode,
       m.active_fit,
       af.created_at AS active_fit_created_at,
       m.served_index,
       j.id AS job_id,
       j.kind AS job_kind,
       CASE WHEN j.state = 'running' AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_locks l
                 WHERE l.locktype = 'advisory' AND l.pid = j.pid AND l.granted AND l.objsubid = 2
                   AND l.classid = 1701667443::oid AND l.objid::bigint = (pg_catalog.hashtext(m.name)::bigint & 4294967295)
                   AND l.database = (SELECT d.oid FROM pg_catalog.pg_database d WHERE d.datname = pg_catalog.current_database()))
            THEN 'interrupted' ELSE j.state END AS job_state,
       j.phase,
       j.fit_id AS job_fit,
       j.rows_done,
       j.rows_total,
       j.started_at,
       j.updated_at,
       CASE WHEN j.rows_done > 0 AND j.updated_at > j.started_at
            THEN round(j.rows_done / extract(epoch FROM j.updated_at - j.started_at)) END AS rows_per_second,
       j.pid,
       j.outcome,
       e.error ->> 'message' AS last_error,
       e.error ->> 'sqlstate' AS last_error_sqlstate,
       e.finished_at AS last_error_at
  FROM embedstack.model_sets m
  LEFT JOIN embedstack.fits af ON af.id = m.active_fit
  LEFT JOIN LATERAL (SELECT * FROM embedstack.jobs x WHERE x.model_set = m.name ORDER BY x.id DESC LIMIT 1) j ON true
  LEFT JOIN LATERAL (SELECT * FROM embedstack.jobs x WHERE x.model_set = m.name AND x.state = 'failed'
                      ORDER BY x.id DESC LIMIT 1) e ON true;
GRANT SELECT ON embedstack.status TO PUBLIC;

-- Comments: new objects, and those whose meaning changed.
COMMENT ON TABLE embedstack.fits IS
  'Fit history: one row per embedstack.fit or refit. Written only by the embedstack functions; trimmed to '
  'embedstack.keep_history fits per model set (never the active one); dumped by pg_dump.';
COMMENT ON PROCEDURE embedstack.materialize(text, bigint, integer, boolean) IS
  'Writes the combined column for a fit (default: the latest): a staging column filled in batches that each '
  'COMMIT (NOTICE progress, embedstack.status), an HNSW index (vector_ip_ops / halfvec_ip_ops), then an atomic '
  'cut-over; the served column, index and active fit are unchanged until then. Vectors already stored in the '
  'fit''s layout (query-weighted mode): only the active fit switches. Too wide: 54000. Not owner / no UPDATE: '
  '42501. Another materialize or refit of the set running: 55P03, or queue with wait => true. Call outside a '
  'transaction block; re-running after an interruption continues from the last committed batch.';
COMMENT ON PROCEDURE embedstack.refit(text, regclass, name, name, name, double precision, boolean, name, double precision, text, double precision, boolean, integer) IS
  'fit + decide + (materialize) + cut over, as one job, safe to schedule (pg_cron: a lone CALL). Pairs are split '
  'by a hash of their keys; holdout_fraction of them score the new and the active fit (prediction MSE). cutover: '
  'if_not_worse (default: serve the new fit when its held-out MSE <= active * (1 + tolerance), else keep the '
  'active one and record why), always, never (record only). Decision and progress: embedstack.jobs / status. '
  'Busy: 55P03 or wait => true. Re-running after an interruption finishes the interrupted refit.';
COMMENT ON VIEW embedstack.status IS
  'Per model set: active fit, served index, the latest job (kind, state: running | interrupted | succeeded | '
  'kept | failed, phase, rows done / total, started_at, rows per second, pid, outcome) and the latest error.';
COMMENT ON TABLE embedstack.jobs IS
  'One row per materialize / refit call: progress committed with each batch, outcome, error. '
  'Trimmed to embedstack.keep_history rows per model set; not dumped.';
COMMENT ON COLUMN embedstack.jobs.id IS 'Job id.';
COMMENT ON COLUMN embedstack.jobs.model_set IS 'The model set.';
COMMENT ON COLUMN embedstack.jobs.kind IS 'materialize or refit.';
COMMENT ON COLUMN embedstack.jobs.params IS 'Arguments of the call.';
COMMENT ON COLUMN embedstack.jobs.fit_id IS 'The fit being materialised (for a refit: the new fit, once made).';
COMMENT ON COLUMN embedstack.jobs.phase IS 'fit, prepare, write, index, wait (for transactions older than the new column), cutover, done.';
COMMENT ON COLUMN embedstack.jobs.rows_done IS 'Rows of the staging column written (committed).';
COMMENT ON COLUMN embedstack.jobs.rows_total IS 'Rows of the source table when the job started writing.';
COMMENT ON COLUMN embedstack.jobs.cursor_key IS 'Key of the last row of the last committed batch (text).';
COMMENT ON COLUMN embedstack.jobs.index_name IS 'The HNSW index built on the staging column.';
COMMENT ON COLUMN embedstack.jobs.state IS 'running, succeeded, kept (refit decided not to cut over), failed, interrupted (its session ended).';
COMMENT ON COLUMN embedstack.jobs.outcome IS 'What the job did or decided, in words.';
COMMENT ON COLUMN embedstack.jobs.details IS 'Refit decision: holdout_pairs, new_mse, active_fit, active_mse, decision.';
COMMENT ON COLUMN embedstack.jobs.error IS 'A failed job''s error: sqlstate, message, detail, hint, context.';
COMMENT ON COLUMN embedstack.jobs.pid IS 'Backend that ran the job.';
COMMENT ON COLUMN embedstack.jobs.resumed_from IS 'The interrupted job this one continued.';
COMMENT ON COLUMN embedstack.jobs.started_at IS 'When the job started.';
COMMENT ON COLUMN embedstack.jobs.updated_at IS 'Last committed progress.';
COMMENT ON COLUMN embedstack.jobs.finished_at IS 'When it ended.';
COMMENT ON FUNCTION embedstack.prediction_mse(double precision[], double precision[], double precision) IS
  'Weighted mean squared error of intercept + weights . x over the rows a regression state summarises, exact '
  'from the state (no scan); NULL for an empty state. IMMUTABLE STRICT PARALLEL SAFE.';
COMMENT ON FUNCTION embedstack._check_owner(regclass) IS
  'Internal: 42501 unless the role calling into the extension (outer user) is a member of the table''s owner.';
COMMENT ON FUNCTION embedstack._job_lock(integer, boolean) IS 'Internal: takes a model set''s job lock (session advisory lock released on abort).';
COMMENT ON FUNCTION embedstack._job_unlock(integer) IS 'Internal: releases a model set''s job lock.';
COMMENT ON FUNCTION embedstack._keep_history() IS 'Internal: the value of embedstack.keep_history.';
COMMENT ON FUNCTION embedstack._w_insert_model_set(text, regclass, name, name[], integer[], regtype[], text, double precision, name, text) IS
  'Internal catalog writer (SECURITY DEFINER, owner of the source only): inserts a model set.';
COMMENT ON FUNCTION embedstack._owned_source(text) IS 'Internal: a model set''s source table after checking the caller owns it.';
COMMENT ON FUNCTION embedstack._w_delete_model_set(text) IS 'Internal catalog writer (SECURITY DEFINER, owner only): deletes a model set.';
COMMENT ON FUNCTION embedstack._w_insert_fit(text, jsonb, double precision[], double precision, jsonb, double precision[], jsonb) IS
  'Internal catalog writer (SECURITY DEFINER, owner only): records a fit and trims the history.';
COMMENT ON FUNCTION embedstack._w_set_staging(text, name, bigint, double precision[], text) IS
  'Internal catalog writer (SECURITY DEFINER, owner only): the staging column of a materialisation.';
COMMENT ON FUNCTION embedstack._w_serve(text, bigint, double precision[], text, name) IS
  'Internal catalog writer (SECURITY DEFINER, owner only): the served fit and layout.';
COMMENT ON FUNCTION embedstack._w_job_start(text, text, jsonb, text, bigint) IS
  'Internal catalog writer (SECURITY DEFINER, owner only): starts a job.';
COMMENT ON FUNCTION embedstack._w_job_update(bigint, text, bigint, bigint, text, bigint, name, jsonb) IS
  'Internal catalog writer (SECURITY DEFINER, owner only): a job''s progress.';
COMMENT ON FUNCTION embedstack._w_job_finish(bigint, text, text, jsonb) IS
  'Internal catalog writer (SECURITY DEFINER, owner only): a job''s end.';
COMMENT ON FUNCTION embedstack._record_fit(text, double precision[], double precision, boolean, jsonb, jsonb) IS
  'Internal: solves a state and records it as a fit.';
COMMENT ON FUNCTION embedstack._layout(text, bigint) IS 'Internal: stored multipliers, storage and width of a fit, or 54000.';
COMMENT ON FUNCTION embedstack._staging_index_name(text) IS 'Internal: name of the index built on the staging column.';
COMMENT ON FUNCTION embedstack._cutover_ready(xid8, text[]) IS 'Internal: has every transaction older than the horizon (the last batch) ended?';
COMMENT ON FUNCTION embedstack._hidden_transactions() IS 'Internal: virtual xids of this database''s sessions whose details the caller may not see.';
COMMENT ON FUNCTION embedstack._mat_prepare(bigint) IS 'Internal materialise step: layout, staging column, trigger.';
COMMENT ON FUNCTION embedstack._mat_write(bigint) IS 'Internal materialise step: one batch.';
COMMENT ON FUNCTION embedstack._mat_index(bigint) IS 'Internal materialise step: the HNSW index on the staging column.';
COMMENT ON FUNCTION embedstack._mat_wait(bigint) IS 'Internal materialise step: wait until the new index is usable by all.';
COMMENT ON FUNCTION embedstack._mat_cutover(bigint) IS 'Internal materialise step: the atomic cut-over.';
COMMENT ON FUNCTION embedstack._lock_model_set(text, boolean) IS 'Internal: a model set''s job lock, or 55P03 naming the holder.';
COMMENT ON FUNCTION embedstack._reraise(text, text, text, text) IS 'Internal: raises a recorded error again.';
COMMENT ON FUNCTION embedstack._in_holdout(text, text, double precision) IS 'Internal: is a pair held out of a refit''s training (hash of its keys)?';
COMMENT ON FUNCTION embedstack._refit_fit(bigint) IS 'Internal refit step: fit on the training pairs, compare on the held-out ones, decide.';
COMMENT ON FUNCTION embedstack._job_step(bigint, text) IS 'Internal: runs one step of a job.';
COMMENT ON PROCEDURE embedstack._run_job(bigint) IS 'Internal: runs a job''s steps, committing after each; records a failure.';
COMMENT ON FUNCTION embedstack._check_writer(text, integer, boolean) IS 'Internal: checks shared by materialize and refit.';
