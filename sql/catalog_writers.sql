-- The only code that writes the catalog tables, and the one door to it.
--
-- The catalog tables are writable by their owner (the extension's owner) only. The writers
-- below hold the DML; they are SECURITY INVOKER and not executable by PUBLIC, so nobody calls
-- them directly. The extension's public functions reach them through embedstack._write(writer,
-- VARIADIC args) (src/operations/authorize.rs): a SECURITY INVOKER C function that requires the
-- role calling it (current_user there: a user's SECURITY DEFINER function calls it as that
-- function's owner) *and* the session's outer role (SET ROLE) to be members of the owner of the
-- model set's source table, and only then runs the one allowlisted writer statement as the
-- catalog's owner (a restricted operation) and switches back. Why not SECURITY DEFINER writers
-- with an owner check inside, as in 0.2.0: inside a SECURITY DEFINER function the calling
-- identity is already replaced, so a check there could only see the outer role, and a user's
-- own SECURITY DEFINER function could drive the writers with its caller's ownership.
-- search_path is pinned and every name is schema-qualified.

CREATE FUNCTION embedstack._write(writer text, VARIADIC "any") RETURNS bigint
LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'embedstack_write';

CREATE FUNCTION embedstack._w_insert_model_set(
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

CREATE FUNCTION embedstack._w_delete_model_set(model_set text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM embedstack.fits f WHERE f.model_set = _w_delete_model_set.model_set;   -- no FK: see catalog.sql
    DELETE FROM embedstack.model_sets m WHERE m.name = model_set;
END $$;

-- Records a fit, then trims the history to embedstack.keep_history fits and jobs per model set
-- (never the active fit, a fit being materialised, or the fit of a running job).
CREATE FUNCTION embedstack._w_insert_fit(
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

-- The staging column of a materialisation in progress (all NULL: none).
CREATE FUNCTION embedstack._w_set_staging(model_set text, column_name name, fit_id bigint,
                                          multipliers double precision[], storage text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE embedstack.model_sets m
       SET staging_column = _w_set_staging.column_name, staging_fit = _w_set_staging.fit_id,
           staging_multipliers = _w_set_staging.multipliers, staging_storage = _w_set_staging.storage
     WHERE m.name = _w_set_staging.model_set;
END $$;

-- What is served: the active fit and the stored layout (the staging state is cleared). Called
-- in the cut-over transaction, or alone when only the active fit changes (query-weighted mode).
CREATE FUNCTION embedstack._w_serve(model_set text, fit_id bigint, multipliers double precision[],
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

CREATE FUNCTION embedstack._w_job_start(model_set text, kind text, params jsonb, phase text, resumed_from bigint)
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

-- Progress of a running job: NULL arguments leave the column as it is.
CREATE FUNCTION embedstack._w_job_update(job_id bigint, phase text, rows_done bigint DEFAULT NULL,
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

CREATE FUNCTION embedstack._w_job_finish(job_id bigint, state text, outcome text, error jsonb DEFAULT NULL)
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
