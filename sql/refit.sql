-- refit: fit on the labelled pairs, decide on held-out pairs whether the new fit serves, and if
-- so materialise it (the steps of materialize.sql) -- one job, safe to schedule with pg_cron.

-- Is a labelled pair held out of a refit's training? A hash of its two keys, so the same pairs
-- are held out on every run (a fit that refit made from the same table never saw them).
CREATE FUNCTION embedstack._in_holdout(left_key text, right_key text, fraction double precision) RETURNS boolean
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
        jsonb_build_object('pairs', p->>'pairs', 'pairs_oid', p->'pairs_oid', 'left', p->>'left', 'right', p->>'right', 'target', p->>'target',
                           'sample_weight', p->>'sample_weight', 'holdout_fraction', frac, 'split', 'train'));
    IF n_hold > 0 THEN
        new_mse := embedstack.prediction_mse(st_hold, f.weights, f.intercept);
        IF act.id IS NOT NULL THEN
            act_mse := embedstack.prediction_mse(st_hold, act.weights, act.intercept);
        END IF;
    END IF;

    IF ms.held_since IS NOT NULL THEN
        -- A rollback holds the model set: the fit is recorded, the served one stays.
        cut := false;
        decision := format('fit %s recorded; the model set is held since %s (%s): SELECT embedstack.release(%L) ends the hold',
                           f.id, ms.held_since, ms.held_reason, ms.name);
    ELSIF p->>'cutover' = 'never' THEN
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

