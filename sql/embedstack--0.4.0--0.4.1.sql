-- embedstack 0.4.0 -> 0.4.1: a security release of 0.4.0. Only what changed; each change says why.
--
-- The finding: a generation kept for rollback (since 0.4.0), and one whose index is being built,
-- record the keys the source's writers change in a pending-keys table, which its catalog row names
-- (embedstack.generations.pending). 0.4.0 trusted that row wherever it used the table: the reuse of
-- a retained generation by a materialise or refit (_mat_prepare), a rollback (_switch_to), the
-- index build's catch-up (_mat_index), embedstack.catch_up and the freshness triggers read it,
-- indexed it, emptied it, recorded into it, truncated it and in the end DROPped it -- with the
-- rights of whoever ran them (a superuser's rollback of any model set, a superuser's jobs on its
-- own tables, pg_cron). Its generation tables were dropped only when provably the model set's
-- (_is_generation_table, 0.3.1, F2), its pending-keys tables were not: a row naming another table
-- (written by a role that bypasses row security, or left behind when a pending table was dropped
-- by hand and its OID was later reused by another role's table) made the extension drop or change
-- that table. 0.4.1 checks the relation first (_is_pending_table), drops it only through
-- _drop_pending, and otherwise never touches it. Nothing else changes: no catalog table, no
-- stored row; the pending-keys tables 0.4.0 made are named and owned as _is_pending_table
-- requires.
--
-- The upgrade-equals-fresh-install test (pgrx-tests/tests/operations_lifecycle.rs, from 0.3.0
-- through 0.3.1 and 0.4.0) compares the result with a fresh 0.4.1 install, object by object;
-- `scripts/upgrade-delta.py --check sql/embedstack--0.4.0--0.4.1.sql` checks that every function
-- added or changed since sql/releases/embedstack--0.4.0.sql is restated here as the install script
-- defines it.
\echo Use "ALTER EXTENSION embedstack UPDATE TO '0.4.1'" to load this file. \quit

-- 1. New: is the relation a generation's row names as its pending-keys table one the extension
-- made for it? An existing plain table of the source's owner, named after the generation table
-- (itself provably the generation's) as _create_pending names it. Every use below checks it.
CREATE FUNCTION embedstack._is_pending_table(ms embedstack.model_sets, g embedstack.generations) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    pname name;
    rname name;
BEGIN
    IF g.pending IS NULL THEN
        RETURN false;
    END IF;
    SELECT p.relname, r.relname INTO pname, rname
      FROM pg_class p, pg_class r, pg_class s
     WHERE p.oid = g.pending AND r.oid = g.relation AND s.oid = ms.source
       AND p.relkind = 'r' AND p.relowner = s.relowner AND r.relkind IN ('r', 'p') AND r.relowner = s.relowner;
    IF NOT FOUND OR NOT (rname = embedstack._generation_name(ms, g.id) OR rname ~ ('_g' || g.id || '_[0-9a-f]{6}$')) THEN
        RETURN false;
    END IF;
    RETURN pname = rname || '_pending' OR pname = embedstack._derived_name(rname, 'pending')
        OR (left(pname, -6) = left(embedstack._derived_name(rname, 'pending_000000'), -6) AND right(pname, 6) ~ '^[0-9a-f]{6}$');
END $$;
COMMENT ON FUNCTION embedstack._is_pending_table(embedstack.model_sets, embedstack.generations) IS
  'Internal: whether the pending-keys table a generation''s catalog row names is one the extension made for it '
  '(a table of the source''s owner, named after the generation table).';

-- 2. New: the one way a pending-keys table is dropped (it replaces a bare DROP TABLE of whatever
-- the row named in _switch_to, _mat_prepare and _mat_index): only when _is_pending_table accepts
-- it; anything else is left in place with a WARNING and no longer recorded, as retention and the
-- event trigger leave a generation table that is not provably theirs.
CREATE FUNCTION embedstack._drop_pending(ms embedstack.model_sets, g embedstack.generations) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    cur embedstack.generations;
BEGIN
    SELECT * INTO cur FROM embedstack.generations x WHERE x.id = g.id AND x.model_set = ms.name;
    IF cur.pending IS NULL THEN
        RETURN;
    END IF;
    IF embedstack._is_pending_table(ms, cur) THEN
        EXECUTE format('DROP TABLE %s', cur.pending);
    ELSIF EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = cur.pending) THEN
        RAISE WARNING 'embedstack: model set "%": % is recorded as the pending-keys table of generation %, but it is not one: '
                      'left in place, no longer recorded', ms.name, cur.pending, cur.id
            USING HINT = format('the pending-keys tables of generation %s are owned by the owner of %s and named after %s',
                                cur.id, ms.source, cur.relation);
    END IF;
    PERFORM embedstack._w_generation_pending(ms.name, cur.id, NULL, false);
END $$;
COMMENT ON FUNCTION embedstack._drop_pending(embedstack.model_sets, embedstack.generations) IS
  'Internal: drops a generation''s pending-keys table, only when it is provably the generation''s (WARNING '
  'otherwise), and forgets it.';

-- 3. A rollback (and a materialise that serves a retained generation) brings the generation up
-- to date from its pending-keys table only when _is_pending_table accepts it, and drops it with
-- _drop_pending. A row naming another relation is refused (55000, with the hint to materialise
-- the fit anew): what changed since the generation was served is not known, so it is not served,
-- and nothing is read, locked or dropped.
CREATE OR REPLACE FUNCTION embedstack._switch_to(ms embedstack.model_sets, g embedstack.generations, fit_id bigint, started timestamptz)
RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    n bigint := 0;
    was bigint := ms.served_generation;
BEGIN
    IF g.id IS DISTINCT FROM was THEN
        -- Recorded keys in a relation that is not provably its pending-keys table: what changed
        -- since the generation was served is not known, and that relation is never read, locked
        -- or dropped (0.4.0 dropped it); a materialise of the fit replaces the generation.
        IF g.pending IS NOT NULL AND NOT embedstack._is_pending_table(ms, g)
           AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN
            RAISE EXCEPTION 'generation % of model set "%" cannot be brought up to date: % is recorded as its pending-keys '
                            'table, but it is not one', g.id, ms.name, g.pending
                USING ERRCODE = '55000',
                HINT = format('nothing was changed; CALL embedstack.materialize(%L, fit_id => %s) writes that fit anew '
                              '(and drops the generation)', ms.name, fit_id);
        END IF;
        IF embedstack._is_pending_table(ms, g) THEN
            PERFORM embedstack._lock_source(ms, started);
            EXECUTE format('SELECT count(DISTINCT p.%I) FROM %s p', ms.key_column, g.pending) INTO n;
            IF n > 0 THEN
                PERFORM embedstack._apply_as_owner(ms.name, g.relation, 'CATCHUP');
            END IF;
        END IF;
        PERFORM embedstack._drop_pending(ms, g);
        LOOP
            BEGIN
                PERFORM embedstack._point_view(ms, g, 50);
                EXIT;
            EXCEPTION WHEN lock_not_available THEN
                PERFORM embedstack._give_up_locking_view(ms, started);
                PERFORM pg_sleep(0.2);
            END;
        END LOOP;
    END IF;
    PERFORM embedstack._w_serve(ms.name, fit_id, g.id);
    IF was IS NOT NULL AND was IS DISTINCT FROM g.id THEN
        PERFORM embedstack._retire(ms, was);
    END IF;
    RETURN n;
END $$;

-- 4. A materialise or refit that comes back to a retained generation's fit: the generation's
-- pending-keys table is closed, indexed, applied in batches and dropped (_drop_pending) only when
-- _is_pending_table accepts it. Otherwise the generation is not reused: the relation is left alone
-- (WARNING), the generation dropped (_drop_generation: its own table only), the fit written into a
-- new generation.
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
    note text;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    lay := embedstack._layout(ms.name, j.fit_id);
    si := embedstack._source_info(ms);
    -- A live generation already holds what this fit would write (always so in query-weighted
    -- mode): no rows are written (unless a refresh asks for a new generation).
    IF embedstack._is_served_view(ms) AND NOT coalesce((j.params->>'refresh')::boolean, false) THEN
        g := embedstack._generation_for(ms, j.fit_id);
        IF g.id IS NOT NULL AND g.id = ms.served_generation AND (ms.mode = 'symmetric' OR j.fit_id = ms.active_fit
               OR (SELECT f.weights = a.weights AND f.intercept = a.intercept FROM embedstack.fits f, embedstack.fits a
                    WHERE f.id = j.fit_id AND a.id = ms.active_fit)) THEN
            -- Serves exactly what is served (the same stored vectors, and in query-weighted mode the
            -- same weights): nothing changes -- no new active fit, the rollback point stays (0.3.x
            -- made the active fit the rollback point, and the real earlier fit became unreachable).
            PERFORM embedstack._w_job_update(job_id, 'done');
            PERFORM embedstack._w_job_finish(job_id, 'succeeded',
                format('fit %s serves what fit %s serves (same stored vectors and scores): nothing changed', j.fit_id, ms.active_fit));
            RAISE NOTICE 'embedstack: model set "%": fit % serves what fit % serves: nothing changed', ms.name, j.fit_id,
                ms.active_fit;
            RETURN 'done';
        ELSIF g.id IS NOT NULL AND g.id IS DISTINCT FROM ms.served_generation AND g.pending IS NOT NULL
              AND NOT embedstack._is_pending_table(ms, g) AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN
            -- A retained generation of this layout whose catalog row records its keys in a relation
            -- that is not provably its pending-keys table (0.4.1; 0.4.0 indexed, emptied and dropped
            -- whatever relation the row named): what changed since it was served is not known, so
            -- it is not served again. That relation is left alone (a WARNING), the generation
            -- dropped (its own table only), and the fit written into a new generation below.
            PERFORM embedstack._drop_pending(ms, g);
            PERFORM embedstack._drop_generation(ms, g.id);
            RAISE NOTICE 'embedstack: model set "%": generation % is not reused (its recorded keys are not in a table of '
                         'its own): writing fit % anew', ms.name, g.id, j.fit_id;
        ELSIF g.id IS NOT NULL THEN
            -- A retained generation of this layout that recorded keys: brought up to date the way
            -- a new generation's index catch-up is, before the switch -- its pending table closed
            -- (writers write the generation again from then on), the writers that recorded into
            -- it waited for, then the keys applied in batches of 0.1-0.5 s, each its own
            -- transaction under SHARE on the generation -- so the switch pauses no writer for the
            -- recorded rows (it did, all of them: a scheduled refit that came back to an earlier
            -- fit paused writers 10-20 s at 20,000 rows; and writing batches while writers kept
            -- recording did not converge under load). Only a pending table that is provably the
            -- generation's (above) is read, indexed and dropped.
            IF g.id IS DISTINCT FROM ms.served_generation AND embedstack._is_pending_table(ms, g) THEN
                IF g.pending_open THEN
                    PERFORM embedstack._w_generation_pending(ms.name, g.id, g.pending, false);
                    PERFORM embedstack._w_job_update(job_id, 'prepare', NULL, NULL, NULL, NULL, NULL,
                        '{"reuse_synced": false}'::jsonb);
                    RETURN 'prepare';
                END IF;
                IF NOT coalesce((j.details->>'reuse_synced')::boolean, false) THEN
                    PERFORM embedstack._wait_for_writers(p.relid) FROM embedstack._source_tables(ms.source) p;
                    EXECUTE format('CREATE INDEX ON %s (%I)', g.pending, ms.key_column);
                    PERFORM embedstack._w_job_update(job_id, 'prepare', NULL, NULL, NULL, NULL, NULL,
                        '{"reuse_synced": true}'::jsonb);
                    RETURN 'prepare';
                END IF;
                IF embedstack._pending_batch(job_id, ms, g) THEN
                    RETURN 'prepare';
                END IF;
                PERFORM embedstack._drop_pending(ms, g);
                g.pending := NULL;
            END IF;
            -- The served generation with another fit's weights (query-weighted mode), or a retained
            -- generation of this layout, brought up to date: served at once.
            PERFORM embedstack._switch_to(ms, g, j.fit_id, clock_timestamp());
            PERFORM embedstack._retain(ms.name);
            PERFORM embedstack._w_job_update(job_id, 'done');
            note := CASE WHEN j.details ? 'reuse_synced'
                         THEN format('its %s recorded rows written in batches first', coalesce((j.details->>'catchup_applied')::bigint, 0))
                         ELSE 'no rows written' END;
            PERFORM embedstack._w_job_finish(job_id, 'succeeded',
                format('serving fit %s from generation %s (it holds this layout: %s)', j.fit_id, g.id, note));
            RAISE NOTICE 'embedstack: model set "%": serving fit % from generation % (it holds this layout: %)',
                ms.name, j.fit_id, g.id, note;
            RETURN 'done';
        END IF;
        g := NULL;
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
    PERFORM embedstack._check_source_shape(ms.source);
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

-- 5. The index build of a new generation: a pending-keys table that _is_pending_table does not
-- accept (the row changed between the job's steps) is never reopened, indexed, applied or
-- dropped: the keys written during the build are unknown, so the generation is dropped and the
-- job goes back to prepare and writes it anew (WARNING); the table it applied is dropped with
-- _drop_pending.
CREATE OR REPLACE FUNCTION embedstack._mat_index(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    g embedstack.generations;
    si record;
    idx regclass;
    n bigint;
    workers integer;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT * INTO g FROM embedstack.generations x WHERE x.id = j.generation;
    -- The keys written during the build recorded in a relation that is not provably the
    -- generation's pending-keys table (0.4.1; 0.4.0 reopened, indexed, emptied and dropped whatever
    -- relation the catalog row named): they are not known, so the generation is written anew --
    -- that relation left alone (a WARNING), the generation dropped (its own table only), the job
    -- back at prepare with the index steps' state reset.
    IF g.pending IS NOT NULL AND NOT embedstack._is_pending_table(ms, g)
       AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN
        PERFORM embedstack._drop_pending(ms, g);
        PERFORM embedstack._drop_generation(ms, g.id);
        RAISE NOTICE 'embedstack: model set "%": generation % is written anew (the keys written during its index build are '
                     'not in a table of its own)', ms.name, g.id;
        PERFORM embedstack._w_job_update(job_id, 'prepare', 0, NULL, NULL, NULL, NULL,
            '{"index_synced": false, "catchup_synced": false, "catchup_indexed": false, "catchup_keys": 0,
              "catchup_applied": 0, "catchup_batch": null}'::jsonb);
        RETURN 'prepare';
    END IF;
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
            PERFORM embedstack._create_pending(ms, g);
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"index_synced": false}'::jsonb);
            RETURN 'index';
        END IF;
        IF NOT g.pending_open THEN
            PERFORM embedstack._w_generation_pending(ms.name, g.id, g.pending, true);
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"index_synced": false}'::jsonb);
            RETURN 'index';
        END IF;
        IF NOT coalesce((j.details->>'index_synced')::boolean, false) THEN                              -- 2
            PERFORM embedstack._wait_for_writers(p.relid) FROM embedstack._source_tables(ms.source) p;  -- each partition: a writer aimed at one locks only it
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"index_synced": true}'::jsonb);
            RETURN 'index';
        END IF;
        -- 3. With parallel workers: the planner sizes them from the main fork, which TOASTed
        -- vectors leave tiny (0.3.x built every index with none); the table's parallel_workers
        -- decides instead, capped by max_parallel_maintenance_workers as PostgreSQL caps it.
        workers := greatest(current_setting('max_parallel_maintenance_workers')::integer, 0);
        EXECUTE format('ALTER TABLE %s SET (parallel_workers = %s)', g.relation, workers);
        RAISE NOTICE 'embedstack: model set "%": building the HNSW index %.% (up to % parallel workers)', ms.name, si.nsp,
            g.index_name, workers;
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (%I %I.%s)', g.index_name, g.relation, ms.combined_column,
                       embedstack._vector_schema(), g.storage || '_ip_ops');
        PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, g.index_name);
        RETURN 'index';
    END IF;
    IF embedstack._is_pending_table(ms, g) THEN
        IF g.pending_open THEN                                                                          -- 4
            PERFORM embedstack._w_generation_pending(ms.name, g.id, g.pending, false);
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"catchup_synced": false}'::jsonb);
            RETURN 'index';
        END IF;
        IF NOT coalesce((j.details->>'catchup_synced')::boolean, false) THEN                            -- 5
            PERFORM embedstack._wait_for_writers(p.relid) FROM embedstack._source_tables(ms.source) p;  -- each partition: a writer aimed at one locks only it
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"catchup_synced": true}'::jsonb);
            RETURN 'index';
        END IF;
        -- 6. The pending keys, in batches: each its own transaction under SHARE on the generation,
        -- so a writer waits for one batch at most (0.3.x applied them all under one lock, and at
        -- 100,000 rows writers stalled for 348 s). A batch is the first `catchup_batch` distinct
        -- keys in key order (an index on the pending table, made once: it no longer changes),
        -- re-read from the source, then deleted from the pending table in the same transaction;
        -- the batch size adapts to take 0.1-0.5 s.
        IF NOT coalesce((j.details->>'catchup_indexed')::boolean, false) THEN
            EXECUTE format('CREATE INDEX ON %s (%I)', g.pending, ms.key_column);
            EXECUTE format('SELECT count(DISTINCT p.%I) FROM %s p', ms.key_column, g.pending) INTO n;
            IF n > 0 THEN
                RAISE NOTICE 'embedstack: model set "%": applying % rows written meanwhile to generation %', ms.name, n, g.id;
            END IF;
            PERFORM embedstack._w_job_update(job_id, 'index', NULL, NULL, NULL, NULL, NULL,
                jsonb_build_object('catchup_indexed', true, 'catchup_applied', 0, 'catchup_keys', n));
            RETURN 'index';
        END IF;
        IF embedstack._pending_batch(job_id, ms, g) THEN
            RETURN 'index';
        END IF;
        PERFORM embedstack._drop_pending(ms, g);
        IF coalesce((j.details->>'catchup_keys')::bigint, 0) > 0 THEN
            RAISE NOTICE 'embedstack: model set "%": % rows written meanwhile applied to generation %', ms.name,
                (j.details->>'catchup_applied')::bigint, g.id;
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

-- 6. embedstack.catch_up reads and empties only a pending-keys table that _is_pending_table
-- accepts; a generation whose row names anything else is skipped with a WARNING.
CREATE OR REPLACE PROCEDURE embedstack.catch_up(model_set text, wait boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets;
    g embedstack.generations;
    left_ bigint;
    rounds bigint;
    before_ bigint;
    total bigint := 0;
BEGIN
    -- (search_path pinned as in materialize, at entry and after every COMMIT.)
    PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
    ms := embedstack._check_writer(model_set, 1, wait);
    PERFORM embedstack._lock_model_set(ms.name, wait);
    PERFORM embedstack._require_no_transaction_block('catch_up');
    FOR g IN SELECT * FROM embedstack.generations x
              WHERE x.model_set = ms.name AND x.state = 'retained' AND x.pending_open AND x.pending IS NOT NULL
              ORDER BY x.id LOOP
        -- Only a pending-keys table that is provably the generation's is read and emptied (0.4.1).
        IF NOT embedstack._is_pending_table(ms, g) THEN
            RAISE WARNING 'embedstack: model set "%": generation % is not brought up to date: % is recorded as its '
                          'pending-keys table, but it is not one (or is gone)', ms.name, g.id, g.pending
                USING HINT = 'nothing was read or written there';
            CONTINUE;
        END IF;
        EXECUTE pg_catalog.format('SELECT count(*) FROM %s', g.pending) INTO before_;
        -- At most as many batches as there were entries at the start (writers keep recording).
        rounds := before_ / 1000 + 1;
        FOR i IN 1 .. rounds LOOP
            PERFORM embedstack._apply_as_owner(ms.name, g.relation, 'CATCHUP_BATCH');
            COMMIT;
            PERFORM pg_catalog.set_config('search_path', 'pg_catalog, pg_temp', true);
        END LOOP;
        EXECUTE pg_catalog.format('SELECT count(*) FROM %s', g.pending) INTO left_;
        total := total + before_;
        RAISE NOTICE 'embedstack: model set "%": generation % brought up to date (% recorded entries applied, % recorded meanwhile)',
            ms.name, g.id, before_, left_;
    END LOOP;
    PERFORM embedstack._job_unlock(pg_catalog.hashtext(ms.name));
END $$;

-- 7. The freshness triggers record keys into, and truncate, only a pending-keys table that
-- _is_pending_table accepts; a generation whose row names anything else (or a table that is gone,
-- which made every write fail in 0.4.0) is written instead, as a generation without one. The
-- catch-ups run through _apply_as_owner (CATCHUP, CATCHUP_BATCH) accept only such a generation.
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
    part boolean := false;
    leaving text;
    out text[] := '{}';
BEGIN
    SELECT * INTO ms FROM embedstack.model_sets m WHERE m.name = model_set;
    IF FOUND AND event = 'CATCHUP_BATCH' THEN
        -- relid: a retained generation that records keys; up to 1,000 recorded entries taken out of
        -- its pending table and written again from the source, in one statement, while writers go
        -- on recording (embedstack.catch_up): the entries are deleted before the source is read,
        -- so a key a writer records meanwhile stays recorded for a later batch. A key the source no
        -- longer has is deleted; the others are upserted (never HOT: the vector is indexed).
        SELECT * INTO g FROM embedstack.generations x
         WHERE x.model_set = ms.name AND x.relation::oid = relid AND x.pending IS NOT NULL AND x.state = 'retained'
           AND embedstack._is_pending_table(ms, x);
        IF NOT FOUND THEN
            RAISE EXCEPTION '% is not a retained generation of model set "%" with recorded keys', relid::regclass, ms.name
                USING ERRCODE = '22023';
        END IF;
        si := embedstack._source_info(ms);
        k := format('%I', ms.key_column);
        RETURN ARRAY[format(
            'WITH batch AS (DELETE FROM %1$s p WHERE p.ctid OPERATOR(pg_catalog.=) ANY (ARRAY(SELECT q.ctid FROM %1$s q LIMIT 1000)) '
            'RETURNING p.%2$s), keys AS (SELECT DISTINCT b.%2$s AS k FROM batch b), '
            'gone AS (DELETE FROM %3$s g USING keys WHERE g.%2$s %4$s keys.k '
            'AND NOT EXISTS (SELECT FROM %5$s s WHERE s.%2$s %4$s keys.k) RETURNING 1) '
            'INSERT INTO %3$s AS g (%2$s, %6$I) SELECT s.%2$s, %7$s FROM %5$s s JOIN keys ON s.%2$s %4$s keys.k '
            'ON CONFLICT (%2$s) DO UPDATE SET %6$I = EXCLUDED.%6$I',
            g.pending, k, g.relation, si.key_eq, ms.source, ms.combined_column, embedstack._combine_expr(ms, g, 's'))];
    END IF;
    IF FOUND AND event = 'CATCHUP' THEN
        -- relid: a retained generation of the model set; the keys its pending table recorded while
        -- it was not served are written again from the source (the rollback holds SHARE on it).
        SELECT * INTO g FROM embedstack.generations x
         WHERE x.model_set = ms.name AND x.relation::oid = relid AND x.pending IS NOT NULL AND x.state = 'retained'
           AND embedstack._is_pending_table(ms, x);
        IF NOT FOUND THEN
            RAISE EXCEPTION '% is not a retained generation of model set "%" with recorded keys', relid::regclass, ms.name
                USING ERRCODE = '22023';
        END IF;
        si := embedstack._source_info(ms);
        k := format('%I', ms.key_column);
        RETURN ARRAY[
            format('DELETE FROM %1$s g USING (SELECT DISTINCT p.%2$s AS k FROM %3$s p) p WHERE g.%2$s %4$s p.k',
                   g.relation, k, g.pending, si.key_eq),
            format('INSERT INTO %1$s (%2$s, %3$I) SELECT s.%2$s, %4$s FROM %5$s s JOIN (SELECT DISTINCT p.%2$s AS k FROM %6$s p) p '
                   'ON s.%2$s %7$s p.k', g.relation, k, ms.combined_column, embedstack._combine_expr(ms, g, 's'), ms.source,
                   g.pending, si.key_eq)];
    END IF;
    -- relid: the source, or one of its partitions (a statement aimed at the partition fires the
    -- partition's triggers only); for DETACH, a table that was one (it still has the model
    -- set's triggers: sql/partitions.sql drops them afterwards).
    IF FOUND AND ms.source::oid <> relid THEN
        part := CASE WHEN event = 'DETACH' THEN embedstack._own_trigger(relid::regclass, ms.name, (embedstack._trigger_names(ms.name))[1])
                     ELSE ms.source::oid = ANY (ARRAY(SELECT a.relid::oid FROM pg_partition_ancestors(relid) a)) END;
        IF NOT part THEN
            ms := NULL;
        ELSIF (SELECT c.relowner FROM pg_class c WHERE c.oid = relid) <> (SELECT c.relowner FROM pg_class c WHERE c.oid = ms.source) THEN
            -- The trigger runs as the partition's owner, who may not write the generations.
            RAISE EXCEPTION 'partition % of % has another owner than the table, so model set "%" cannot keep its rows served',
                relid::regclass, ms.source, ms.name USING ERRCODE = '0A000',
                HINT = format('ALTER TABLE %s OWNER TO %I', relid::regclass, (SELECT pg_get_userbyid(c.relowner) FROM pg_class c WHERE c.oid = ms.source));
        END IF;
    END IF;
    IF ms.name IS NULL THEN
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
    -- Rows that leave the source with no transition table: a partition truncated (BEFORE
    -- TRUNCATE: they are still there) or detached (still in the detached table), or, PRUNE, a
    -- dropped partition's (gone: every key the source no longer has).
    IF event IN ('DETACH', 'TRUNCATE') AND part THEN
        leaving := format('SELECT p.%s FROM %s p', k, relid::regclass);
    ELSIF event = 'PRUNE' THEN
        IF relid <> ms.source::oid THEN
            RAISE EXCEPTION 'PRUNE applies to the source of model set "%"', ms.name USING ERRCODE = '22023';
        END IF;
    END IF;
    FOR g IN SELECT * FROM embedstack._live_generations(ms.name) LOOP
        IF g.pending IS NOT NULL AND NOT embedstack._is_pending_table(ms, g) THEN
            -- The catalog row names a relation that is not provably the generation's pending-keys
            -- table (or none any more): nothing is recorded into or truncated in it (0.4.1), the
            -- generation is written instead.
            g.pending := NULL;
            g.pending_open := false;
        END IF;
        IF event = 'PRUNE' THEN
            out := out || format(CASE WHEN g.pending_open
                                      THEN 'INSERT INTO %4$s (%2$s) SELECT g.%2$s FROM %1$s g WHERE NOT EXISTS (SELECT FROM %5$s s WHERE s.%2$s %3$s g.%2$s)'
                                      ELSE 'DELETE FROM %1$s g WHERE NOT EXISTS (SELECT FROM %5$s s WHERE s.%2$s %3$s g.%2$s)' END,
                                 g.relation, k, si.key_eq, g.pending, ms.source);
        ELSIF leaving IS NOT NULL THEN
            out := out || CASE WHEN g.pending_open THEN format('INSERT INTO %s (%s) %s', g.pending, k, leaving)
                               ELSE format('DELETE FROM %1$s g USING (%2$s) p WHERE g.%3$s %4$s p.%3$s', g.relation, leaving, k, si.key_eq) END;
        ELSIF event = 'ATTACH' THEN
            -- A partition's rows join the source (replacing whatever a generation held for them).
            IF NOT part THEN
                RAISE EXCEPTION '% is not a partition of the source of model set "%"', relid::regclass, ms.name USING ERRCODE = '22023';
            END IF;
            out := out || CASE WHEN g.pending_open THEN ARRAY[format('INSERT INTO %s (%s) SELECT p.%2$s FROM %s p', g.pending, k, relid::regclass)]
                               ELSE ARRAY[format('DELETE FROM %1$s g USING %2$s p WHERE g.%3$s %4$s p.%3$s', g.relation, relid::regclass, k, si.key_eq),
                                          format('INSERT INTO %1$s (%2$s, %3$I) SELECT p.%2$s, %4$s FROM %5$s p', g.relation, k,
                                                 ms.combined_column, embedstack._combine_expr(ms, g, 'p'), relid::regclass)] END;
        ELSIF event = 'DETACH' THEN
            RAISE EXCEPTION '% is not a detached partition of the source of model set "%"', relid::regclass, ms.name USING ERRCODE = '22023';
        ELSIF g.pending_open AND event <> 'TRUNCATE' THEN
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
