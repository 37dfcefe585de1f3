-- The only code that writes the catalog tables. Everything else in the extension runs as the
-- caller (SECURITY INVOKER), so reading vectors, ALTER TABLE on the source and the batch
-- UPDATEs are checked against the caller's own privileges. These functions are SECURITY
-- DEFINER because the catalog is not writable by users; each one first checks, with
-- embedstack._check_owner, that the role calling into the extension owns (is a member of the
-- owner of) the model set's source table, so calling them directly grants nothing more than
-- the public functions do. search_path is pinned and every name is schema-qualified.

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
