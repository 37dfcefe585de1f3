-- Operations: one materialize or refit per model set at a time, run as a job of short committed
-- steps (sql/materialize.sql has the materialise steps), the refit policy, and the status view.

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

-- Per model set: what is served, the latest job (a job marked running whose session no longer
-- holds the model set's job lock was interrupted) and the latest error.
CREATE VIEW embedstack.status WITH (security_invoker = true) AS
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
-- security_invoker: the catalog's row security applies to the role querying the view (a view
-- otherwise reads its tables as the view's owner, who sees every row).
