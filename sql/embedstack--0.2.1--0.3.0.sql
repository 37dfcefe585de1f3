-- embedstack 0.2.1 -> 0.3.0: served vectors move out of the user's table (issue 13). Only what
-- changed; each change says why. The upgrade-equals-fresh-install test
-- (pgrx-tests/tests/operations_lifecycle.rs) compares the result with a fresh 0.3.0 install.
-- What happens to a 0.2 served column: it is copied into generation 1 (same vectors, new HNSW
-- index) of a new generation table, the served view is created over it, and the row trigger is
-- replaced by the statement-level ones. The old column and its index stay in the user's table,
-- no longer written (dropping them takes ACCESS EXCLUSIVE on the table and would break the
-- user's views on it): drop them when nothing reads them (docs: README, "Upgrading from 0.2").
\echo Use "ALTER EXTENSION embedstack UPDATE TO '0.3.0'" to load this file. \quit

-- 1. Catalog. model_sets: the staging column is gone (a job writes a generation table); the
-- served view's name, the served generation, what rollback serves and the column 0.2 served
-- from (left in the user's table, see the header) are new.
ALTER TABLE embedstack.model_sets
    DROP COLUMN staging_column, DROP COLUMN staging_fit, DROP COLUMN staging_multipliers, DROP COLUMN staging_storage,
    ADD COLUMN view_name name, ADD COLUMN served_generation bigint, ADD COLUMN previous_fit bigint,
    ADD COLUMN previous_generation bigint, ADD COLUMN legacy_column name;
-- The generations (see sql/catalog.sql), dumped, readable by the readers of the source only.
CREATE TABLE embedstack.generations (
    id           bigserial PRIMARY KEY,
    model_set    text NOT NULL,
    relation     regclass,
    index_name   name,
    fit_id       bigint NOT NULL,
    multipliers  double precision[] NOT NULL,
    storage      text NOT NULL CHECK (storage IN ('vector', 'halfvec')),
    width        integer NOT NULL CHECK (width BETWEEN 1 AND 4000),
    state        text NOT NULL CHECK (state IN ('building', 'served', 'retained')),
    cursor_key   text,
    rows_written bigint NOT NULL DEFAULT 0,
    created_at   timestamptz NOT NULL DEFAULT now(),
    served_at    timestamptz,
    pending      regclass,
    pending_open boolean NOT NULL DEFAULT false
);
CREATE INDEX generations_model_set_idx ON embedstack.generations (model_set, id);
SELECT pg_catalog.pg_extension_config_dump('embedstack.generations', '');
SELECT pg_catalog.pg_extension_config_dump('embedstack.generations_id_seq', '');
REVOKE ALL ON embedstack.generations FROM PUBLIC;
GRANT SELECT ON embedstack.generations TO PUBLIC;
ALTER TABLE embedstack.generations ENABLE ROW LEVEL SECURITY;
CREATE POLICY readers_of_the_source ON embedstack.generations FOR SELECT
    USING (EXISTS (SELECT 1 FROM embedstack.model_sets m WHERE m.name = model_set));
-- jobs: the generation a job writes.
ALTER TABLE embedstack.jobs ADD COLUMN generation bigint;

-- 2. Functions whose arguments changed, and the ones that went with the staging column.
DROP FUNCTION embedstack._own_trigger(regclass, text);
DROP FUNCTION embedstack._w_insert_model_set(text, regclass, name, name[], integer[], regtype[], text, double precision, name, text);
DROP FUNCTION embedstack._w_job_update(bigint, text, bigint, bigint, text, bigint, name, jsonb);
DROP FUNCTION embedstack._w_serve(text, bigint, double precision[], text, name);
DROP FUNCTION embedstack._w_set_staging(text, name, bigint, double precision[], text);
DROP FUNCTION embedstack.create_model_set(text, regclass, name, name[], text, double precision, name, text, integer[]);
DROP FUNCTION embedstack._index_name(text, boolean);
DROP FUNCTION embedstack._index_of(name, name, regclass, name);

-- 3. New and changed functions (generated from the 0.3.0 install script: the definitions are
-- those of sql/*.sql and src/, in one place each).
-- _check_writer
CREATE OR REPLACE FUNCTION embedstack._check_writer(model_set text, batch_size integer, wait boolean) RETURNS embedstack.model_sets
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
    -- The generation tables and the view are created in the source's schema and given to the
    -- source's owner: its owners (members of the owning role) run these.
    PERFORM embedstack._check_owner(ms.source);
    RETURN ms;
END $$;

-- _check_writer
CREATE OR REPLACE FUNCTION embedstack._check_writer(model_set text, batch_size integer, wait boolean) RETURNS embedstack.model_sets
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
    -- The generation tables and the view are created in the source's schema and given to the
    -- source's owner: its owners (members of the owning role) run these.
    PERFORM embedstack._check_owner(ms.source);
    RETURN ms;
END $$;

-- _combine_expr
CREATE FUNCTION embedstack._combine_expr(ms embedstack.model_sets, g embedstack.generations, r text) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('embedstack.%I(%L::float8[], %L::int4[], %L::text[], %I.%I, %s)', '_combine_' || g.storage,
                  g.multipliers, ms.model_dims, ms.model_columns::text[], r, ms.key_column,
                  (SELECT string_agg(format('%I.%I', r, c), ', ' ORDER BY o) FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o)))
$$;

-- _cutover_ready
CREATE OR REPLACE FUNCTION embedstack._cutover_ready(horizon xid8, hidden text[]) RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    RETURN NOT EXISTS (SELECT 1 FROM embedstack._old_transactions(horizon))
       AND NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'virtualxid' AND l.virtualxid = ANY (hidden));
END $$;

-- _cutover_wait_timeout
CREATE  FUNCTION "_cutover_wait_timeout"() RETURNS INT /* i32 */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_cutover_wait_timeout_wrapper';

-- _distribute_generation
CREATE FUNCTION embedstack._distribute_generation(ms embedstack.model_sets, generation regclass) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g record;
BEGIN
    EXECUTE 'SELECT pg_catalog.create_distributed_table($1, $2, colocate_with => $3)'
      USING generation, ms.key_column::text, ms.source::text;
    FOR g IN SELECT DISTINCT a.grantee FROM pg_class c, aclexplode(c.relacl) a
              WHERE c.oid = ms.source AND a.privilege_type = 'SELECT' AND a.grantee <> c.relowner LOOP
        EXECUTE format('GRANT SELECT ON %s TO %s', generation,
                       CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE quote_ident(pg_get_userbyid(g.grantee)) END);
    END LOOP;
END $$;

-- _distributed_on
CREATE FUNCTION embedstack._distributed_on(source regclass) RETURNS name
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    method text;
    col name;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN NULL;
    END IF;
    EXECUTE 'SELECT p.partmethod::text, pg_catalog.column_to_column_name(p.logicalrelid, p.partkey)
               FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1'
       INTO method, col USING source;
    IF method IS NULL THEN
        RETURN NULL;
    END IF;
    IF method <> 'h' THEN
        RAISE EXCEPTION '% is a Citus reference or local table', source USING ERRCODE = '0A000',
            HINT = 'embedstack serves a hash-distributed table (create_distributed_table on its key) or a plain table';
    END IF;
    RETURN col;
END $$;

-- _distributed_pair_statistics
CREATE FUNCTION embedstack._distributed_pair_statistics(ms embedstack.model_sets, pairs regclass, left_column text,
    right_column text, target_column text, sample_weight_column text) RETURNS double precision[]
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    st double precision[];
    eq text := (embedstack._source_info(ms)).key_eq;
BEGIN
    PERFORM embedstack._column(pairs, left_column::name);
    PERFORM embedstack._column(pairs, right_column::name);
    PERFORM embedstack._column(pairs, target_column::name);
    IF sample_weight_column IS NOT NULL THEN
        PERFORM embedstack._column(pairs, sample_weight_column::name);
    END IF;
    PERFORM set_config('citus.enable_repartition_joins', 'on', true);
    EXECUTE format('SELECT embedstack.regression_stats(ARRAY[%s]::float8[], p.%I::float8%s) FROM %s p '
                   'JOIN %s a ON a.%I %s p.%I JOIN %s b ON b.%I %s p.%I',
                   (SELECT string_agg(format('embedstack.cosine(a.%1$I, b.%1$I)', c), ', ' ORDER BY o)
                      FROM unnest(ms.model_columns) WITH ORDINALITY u(c, o)),
                   target_column, CASE WHEN sample_weight_column IS NULL THEN ''
                                       ELSE format(', p.%I::float8', sample_weight_column) END,
                   pairs, ms.source, ms.key_column, eq, left_column, ms.source, ms.key_column, eq, right_column)
       INTO st;
    RETURN st;
END $$;

-- _drop_generation
CREATE FUNCTION embedstack._drop_generation(ms embedstack.model_sets, generation bigint, nowait boolean DEFAULT false)
RETURNS boolean
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    rel regclass;
    prev_timeout text;
BEGIN
    SELECT g.relation INTO rel FROM embedstack.generations g WHERE g.id = generation AND g.model_set = ms.name;
    IF rel IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = rel AND c.relkind = 'r') THEN
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
        EXECUTE format('DROP TABLE %s', rel);
    END IF;
    SELECT g.pending INTO rel FROM embedstack.generations g WHERE g.id = generation AND g.model_set = ms.name;
    IF rel IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = rel AND c.relkind = 'r') THEN
        EXECUTE format('DROP TABLE %s', rel);
    END IF;
    PERFORM embedstack._write('delete_generation', ms.name, generation);
    RETURN true;
END $$;

-- _drop_triggers
CREATE FUNCTION embedstack._drop_triggers(ms embedstack.model_sets) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    t name;
BEGIN
    FOREACH t IN ARRAY embedstack._trigger_names(ms.name) || embedstack._trigger_name(ms.name) LOOP
        IF embedstack._own_trigger(ms.source, ms.name, t) THEN
            EXECUTE format('DROP TRIGGER %I ON %s', t, ms.source);
        END IF;
    END LOOP;
END $$;

-- _freshness_sql
CREATE FUNCTION embedstack._freshness_sql(model_set text, relid oid, event text) RETURNS text[]
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
        RAISE EXCEPTION 'embedstack._refresh_generations(''%'') fired on a table that is not the source of model set "%"',
            model_set, model_set USING ERRCODE = '39P01',
            HINT = 'this trigger function is installed by embedstack.materialize on a model set''s source table only; drop this trigger';
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

-- _generation_name
CREATE FUNCTION embedstack._generation_name(ms embedstack.model_sets, generation bigint) RETURNS name
LANGUAGE sql IMMUTABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT embedstack._derived_name(ms.view_name, 'g' || generation,
                                    CASE WHEN octet_length(ms.view_name || '_g' || generation) > 63 THEN ms.view_name END)
$$;

-- _install_triggers
CREATE FUNCTION embedstack._install_triggers(ms embedstack.model_sets) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    names name[] := embedstack._trigger_names(ms.name);
    events text[] := ARRAY['INSERT', 'UPDATE', 'DELETE', 'TRUNCATE'];
    refs text[] := ARRAY['REFERENCING NEW TABLE AS embedstack_new',
                         'REFERENCING OLD TABLE AS embedstack_old NEW TABLE AS embedstack_new',
                         'REFERENCING OLD TABLE AS embedstack_old', ''];
BEGIN
    FOR i IN 1 .. 4 LOOP
        CONTINUE WHEN embedstack._own_trigger(ms.source, ms.name, names[i]);
        IF EXISTS (SELECT 1 FROM pg_trigger t WHERE t.tgrelid = ms.source AND t.tgname = names[i]) THEN
            RAISE EXCEPTION 'trigger "%" on % is in the way of model set "%"', names[i], ms.source, ms.name
                USING ERRCODE = '42710', HINT = 'rename or drop that trigger';
        END IF;
        EXECUTE format('CREATE TRIGGER %I AFTER %s ON %s %s FOR EACH STATEMENT EXECUTE FUNCTION embedstack._refresh_generations(%L)',
                       names[i], events[i], ms.source, refs[i], ms.name);
    END LOOP;
    -- The row trigger of 0.2.x, if a model set upgraded from it still has one.
    IF embedstack._own_trigger(ms.source, ms.name, embedstack._trigger_name(ms.name)) THEN
        EXECUTE format('DROP TRIGGER %I ON %s', embedstack._trigger_name(ms.name), ms.source);
    END IF;
END $$;

-- _is_served_view
CREATE FUNCTION embedstack._is_served_view(ms embedstack.model_sets) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN v.oid IS NULL THEN NULL
                ELSE v.relkind = 'v' AND EXISTS (
                    SELECT 1 FROM pg_rewrite r JOIN pg_depend d ON d.classid = 'pg_rewrite'::regclass AND d.objid = r.oid
                      JOIN embedstack.generations g ON g.relation::oid = d.refobjid AND g.model_set = ms.name
                     WHERE r.ev_class = v.oid) END
      FROM (SELECT to_regclass(format('%I.%I', n.nspname, ms.view_name)) AS oid
              FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ms.source) x
      LEFT JOIN pg_class v ON v.oid = x.oid
$$;

-- _keep_generations
CREATE  FUNCTION "_keep_generations"() RETURNS INT /* i32 */
STRICT STABLE PARALLEL SAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_keep_generations_wrapper';

-- _live_generations
CREATE FUNCTION embedstack._live_generations(model_set text) RETURNS SETOF embedstack.generations
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT g.* FROM embedstack.generations g JOIN pg_class c ON c.oid = g.relation
     WHERE g.model_set = _live_generations.model_set ORDER BY g.id
$$;

-- _mat_cutover
CREATE OR REPLACE FUNCTION embedstack._mat_cutover(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    j embedstack.jobs;
    ms embedstack.model_sets;
    g embedstack.generations;
BEGIN
    SELECT * INTO j FROM embedstack.jobs WHERE id = job_id;
    ms := embedstack._model_set(j.model_set);
    SELECT * INTO g FROM embedstack.generations x WHERE x.id = j.generation;
    -- ACCESS EXCLUSIVE on the view waits for running queries on it, and queries queue behind a
    -- waiting lock: wait at most 2 s, then let them through and try again in the next step.
    BEGIN
        PERFORM embedstack._point_view(ms, g, 2000);
    EXCEPTION WHEN lock_not_available THEN
        RAISE NOTICE 'embedstack: model set "%": the cut-over waits for queries on its view (retrying)', ms.name;
        PERFORM pg_sleep(0.5);
        RETURN 'cutover';
    END;
    PERFORM embedstack._write('serve', ms.name, j.fit_id, g.id);
    PERFORM embedstack._retain(ms.name);
    PERFORM embedstack._write('job_update', job_id, 'done');
    PERFORM embedstack._write('job_finish', job_id, 'succeeded', coalesce(j.details->>'decision' || '; ', '')
        || format('serving fit %s from generation %s (%s, %s), view %s.%I', j.fit_id, g.id, g.relation, g.storage,
                  (embedstack._source_info(ms)).nsp, ms.view_name));
    RAISE NOTICE 'embedstack: model set "%": serving fit % from generation % (%) through %.%', ms.name, j.fit_id, g.id,
        g.relation, (embedstack._source_info(ms)).nsp, ms.view_name;
    RETURN 'done';
END $$;

-- _mat_index
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
        RAISE EXCEPTION 'relation %.% is in the way of the HNSW index of model set "%"', si.nsp, g.index_name, ms.name
            USING ERRCODE = '42P07', HINT = 'rename or drop it';
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
        PERFORM embedstack._write('job_update', job_id, 'index', NULL, NULL, NULL, NULL, g.index_name,
                                  '{"index_synced": true}'::jsonb);
        RETURN 'index';
    END IF;
    IF idx IS NULL THEN
        IF g.pending IS NULL OR NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN     -- 1
            pname := embedstack._derived_name((SELECT c.relname FROM pg_class c WHERE c.oid = g.relation), 'pending');
            IF to_regclass(format('%I.%I', si.nsp, pname)) IS NOT NULL THEN
                RAISE EXCEPTION 'relation %.% is in the way of model set "%"', si.nsp, pname, ms.name
                    USING ERRCODE = '42P07', HINT = 'rename or drop it';
            END IF;
            EXECUTE format('CREATE %sTABLE %I.%I (%I %s NOT NULL)', CASE WHEN si.persistence = 'u' THEN 'UNLOGGED ' ELSE '' END,
                           si.nsp, pname, ms.key_column, si.key_type);
            EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', si.nsp, pname, si.owner);
            PERFORM embedstack._write('generation_pending', ms.name, g.id, format('%I.%I', si.nsp, pname)::regclass, true);
            PERFORM embedstack._write('job_update', job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"index_synced": false}'::jsonb);
            RETURN 'index';
        END IF;
        IF NOT g.pending_open THEN
            PERFORM embedstack._write('generation_pending', ms.name, g.id, g.pending, true);
            PERFORM embedstack._write('job_update', job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"index_synced": false}'::jsonb);
            RETURN 'index';
        END IF;
        IF NOT coalesce((j.details->>'index_synced')::boolean, false) THEN                              -- 2
            PERFORM embedstack._wait_for_writers(ms.source);
            PERFORM embedstack._write('job_update', job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"index_synced": true}'::jsonb);
            RETURN 'index';
        END IF;
        RAISE NOTICE 'embedstack: model set "%": building the HNSW index %.%', ms.name, si.nsp, g.index_name;      -- 3
        EXECUTE format('CREATE INDEX %I ON %s USING hnsw (%I %I.%s)', g.index_name, g.relation, ms.combined_column,
                       embedstack._vector_schema(), g.storage || '_ip_ops');
        PERFORM embedstack._write('job_update', job_id, 'index', NULL, NULL, NULL, NULL, g.index_name);
        RETURN 'index';
    END IF;
    IF g.pending IS NOT NULL AND EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = g.pending) THEN
        IF g.pending_open THEN                                                                          -- 4
            PERFORM embedstack._write('generation_pending', ms.name, g.id, g.pending, false);
            PERFORM embedstack._write('job_update', job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"catchup_synced": false}'::jsonb);
            RETURN 'index';
        END IF;
        IF NOT coalesce((j.details->>'catchup_synced')::boolean, false) THEN                            -- 5
            PERFORM embedstack._wait_for_writers(ms.source);
            PERFORM embedstack._write('job_update', job_id, 'index', NULL, NULL, NULL, NULL, NULL, '{"catchup_synced": true}'::jsonb);
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
        PERFORM embedstack._write('generation_pending', ms.name, g.id, NULL, false);
        IF n > 0 THEN
            RAISE NOTICE 'embedstack: model set "%": % rows written meanwhile applied to generation %', ms.name, n, g.id;
        END IF;
    ELSIF idx IS NOT NULL AND NOT coalesce((j.details->>'index_synced')::boolean, false) THEN
        RAISE NOTICE 'embedstack: model set "%": the HNSW index %.% of an interrupted run is complete, keeping it',
            ms.name, si.nsp, g.index_name;
    END IF;
    -- Transactions whose snapshot predates this one could read the generation without these
    -- rows; the cut-over waits for them (see _cutover_ready).
    PERFORM embedstack._write('job_update', job_id, 'wait', NULL, NULL, NULL, NULL, g.index_name,
        jsonb_build_object('horizon', pg_current_xact_id()::text, 'hidden', to_jsonb(embedstack._hidden_transactions()),
                           'wait_started', clock_timestamp()));
    RETURN 'wait';
END $$;

-- _mat_prepare
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
        PERFORM embedstack._write('serve', ms.name, j.fit_id, ms.served_generation);
        PERFORM embedstack._write('job_update', job_id, 'done');
        PERFORM embedstack._write('job_finish', job_id, 'succeeded',
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
            USING ERRCODE = '42P07', HINT = 'rename or drop it';
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
        g.id := embedstack._write('insert_generation', ms.name, j.fit_id, lay.multipliers, lay.storage, lay.width);
        gname := embedstack._generation_name(ms, g.id);
        IF to_regclass(format('%I.%I', si.nsp, gname)) IS NOT NULL THEN
            RAISE EXCEPTION 'relation %.% is in the way of a generation of model set "%"', si.nsp, gname, ms.name
                USING ERRCODE = '42P07', HINT = 'rename or drop it';
        END IF;
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
        PERFORM embedstack._write('generation_set', ms.name, g.id, format('%I.%I', si.nsp, gname)::regclass,
                                  embedstack._derived_name(gname, 'hnsw'));
        SELECT * INTO g FROM embedstack.generations x WHERE x.id = g.id;
    END IF;
    IF dist IS NULL THEN
        PERFORM embedstack._install_triggers(ms);
    ELSE
        RAISE NOTICE 'embedstack: model set "%": % is distributed (Citus): changes to it are served after the next %',
            ms.name, ms.source, format('CALL embedstack.refresh(%L)', ms.name);
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', ms.source) INTO total;
    PERFORM embedstack._write('job_update', job_id, 'write', g.rows_written, total, g.cursor_key, NULL, NULL,
                              jsonb_build_object('writers_synced', false, 'resumed_rows', g.rows_written), g.id);
    RAISE NOTICE 'embedstack: model set "%": writing % rows of %(%) into generation % (%)%', ms.name, total,
        lay.storage, lay.width, g.id, g.relation,
        CASE WHEN g.cursor_key IS NOT NULL THEN format(', resuming after %s rows', g.rows_written) ELSE '' END;
    RETURN 'write';
END $$;

-- _mat_wait
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
        PERFORM embedstack._write('job_update', job_id, 'cutover');
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
        PERFORM embedstack._write('job_update', job_id, 'wait', NULL, NULL, NULL, NULL, NULL, '{"waiting": true}'::jsonb);
    END IF;
    PERFORM pg_sleep(0.1);
    RETURN 'wait';
END $$;

-- _mat_write
CREATE OR REPLACE FUNCTION embedstack._mat_write(job_id bigint) RETURNS text
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
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
        PERFORM embedstack._write('job_update', job_id, 'write', NULL, NULL, NULL, NULL, NULL, '{"writers_synced": true}'::jsonb);
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
        PERFORM embedstack._write('job_update', job_id, 'index');
        RETURN 'index';
    END IF;
    done := g.rows_written + n;
    PERFORM embedstack._write('generation_set', ms.name, g.id, NULL, NULL, last_key, done);
    PERFORM embedstack._write('job_update', job_id, 'write', done, NULL, last_key);
    RAISE NOTICE 'embedstack: model set "%": % / % rows (% %%), % rows/s', ms.name, done, j.rows_total,
        CASE WHEN j.rows_total > 0 THEN round(100.0 * done / j.rows_total, 1) ELSE 100 END,
        round((done - coalesce((j.details->>'resumed_rows')::bigint, 0))
              / greatest(extract(epoch FROM clock_timestamp() - j.started_at), 0.001));
    RETURN 'write';
END $$;

-- _may_read_served
CREATE FUNCTION embedstack._may_read_served(model_set text) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    src oid;
    cols name[];
BEGIN
    SELECT s.source, s.columns INTO src, cols FROM embedstack._served_columns(model_set) s;
    IF src IS NULL THEN
        RAISE EXCEPTION 'model set "%" does not exist', model_set USING ERRCODE = '42704';
    END IF;
    IF NOT has_table_privilege(src, 'SELECT') AND EXISTS (
        SELECT 1 FROM unnest(cols) c
         WHERE NOT has_column_privilege(src, c::text, 'SELECT')) THEN
        RAISE EXCEPTION 'permission denied for the served vectors of model set "%"', model_set USING ERRCODE = '42501',
            HINT = 'reading them needs SELECT on the key and model columns of the source table ' || src::regclass::text;
    END IF;
    RETURN true;
END $$;

-- _old_transactions
CREATE FUNCTION embedstack._old_transactions(horizon xid8) RETURNS SETOF integer
LANGUAGE sql VOLATILE PARALLEL RESTRICTED SET search_path = pg_catalog, pg_temp AS $$
    SELECT a.pid FROM pg_stat_activity a
     WHERE a.pid <> pg_backend_pid() AND a.datname = current_database()
       AND a.backend_type IN ('client backend', 'background worker')
       AND greatest(age(a.backend_xid), age(a.backend_xmin)) >= age((horizon::text::numeric % 4294967296)::text::xid)
       AND NOT pg_backend_pid() = ANY (pg_blocking_pids(a.pid))
$$;

-- _on_sql_drop
CREATE OR REPLACE FUNCTION embedstack._on_sql_drop() RETURNS event_trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    m record;
    r record;
BEGIN
    FOR m IN SELECT ms.name, ms.view_name, d.schema_name
               FROM embedstack.model_sets ms JOIN pg_event_trigger_dropped_objects() d
                 ON d.classid = 'pg_class'::regclass AND d.objsubid = 0 AND d.objid = ms.source::oid LOOP
        FOR r IN SELECT format('%I.%I', m.schema_name, m.view_name) AS rel, 'VIEW' AS kind
                  WHERE to_regclass(format('%I.%I', m.schema_name, m.view_name)) IS NOT NULL
                    AND (SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass(format('%I.%I', m.schema_name, m.view_name))) = 'v'
                 UNION ALL
                 SELECT g.relation::text, 'TABLE' FROM embedstack.generations g JOIN pg_class c ON c.oid = g.relation
                  WHERE g.model_set = m.name
                 UNION ALL
                 SELECT g.pending::text, 'TABLE' FROM embedstack.generations g JOIN pg_class c ON c.oid = g.pending
                  WHERE g.model_set = m.name LOOP
            BEGIN
                EXECUTE format('DROP %s %s', r.kind, r.rel);
            EXCEPTION WHEN dependent_objects_still_exist THEN
                RAISE WARNING 'embedstack: model set "%" is dropped with its source table, but % is left in place: other objects depend on it',
                    m.name, r.rel USING HINT = 'drop it yourself once nothing needs it';
            END;
        END LOOP;
        DELETE FROM embedstack.fits f WHERE f.model_set = m.name;
        DELETE FROM embedstack.generations g WHERE g.model_set = m.name;
        DELETE FROM embedstack.model_sets ms WHERE ms.name = m.name;
    END LOOP;
END $$;

-- _own_trigger
CREATE FUNCTION embedstack._own_trigger(source regclass, model_set text, tgname name) RETURNS boolean
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT EXISTS (SELECT 1 FROM pg_trigger t
                    WHERE t.tgrelid = source AND t.tgname = _own_trigger.tgname
                      AND t.tgfoid IN (SELECT p.oid FROM pg_proc p WHERE p.pronamespace = 'embedstack'::regnamespace
                                          AND p.proname IN ('_refresh_generations', '_refresh_combined'))
                      AND t.tgnargs = 1
                      AND t.tgargs = convert_to(model_set, getdatabaseencoding()) || '\x00'::bytea)
$$;

-- _pair_state
CREATE FUNCTION embedstack._pair_state(model_set text, pairs regclass, left_column text, right_column text,
    target_column text, sample_weight_column text) RETURNS double precision[]
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
    dist name := embedstack._distributed_on(ms.source);
BEGIN
    IF dist IS DISTINCT FROM ms.key_column AND dist IS NOT NULL THEN
        RAISE EXCEPTION '% is distributed on column "%", not on its key "%"', ms.source, dist, ms.key_column
            USING ERRCODE = '0A000', HINT = 'distribute the table by its key column';
    END IF;
    IF dist IS NOT NULL AND embedstack._reads_citus_table(pairs) THEN
        RETURN embedstack._distributed_pair_statistics(ms, pairs, left_column, right_column, target_column,
                                                       sample_weight_column);
    END IF;
    RETURN embedstack.pair_statistics(ms.name, pairs, left_column, right_column, target_column, sample_weight_column);
END $$;

-- _point_view
CREATE FUNCTION embedstack._point_view(ms embedstack.model_sets, g embedstack.generations, lock_timeout_ms integer)
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
            USING ERRCODE = '42P07', HINT = 'rename or drop it';
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

-- _reads_citus_table
CREATE FUNCTION embedstack._reads_citus_table(rel regclass) RETURNS boolean
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    found boolean;
BEGIN
    IF to_regclass('pg_catalog.pg_dist_partition') IS NULL THEN
        RETURN false;
    END IF;
    EXECUTE 'SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_dist_partition p WHERE p.logicalrelid = $1
                 OR p.logicalrelid IN (SELECT d.refobjid FROM pg_catalog.pg_rewrite r
                                         JOIN pg_catalog.pg_depend d ON d.classid = ''pg_rewrite''::regclass AND d.objid = r.oid
                                        WHERE r.ev_class = $1 AND d.refclassid = ''pg_class''::regclass))'
       INTO found USING rel;
    RETURN found;
END $$;

-- _refit_fit
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

-- _refresh_generations
CREATE FUNCTION embedstack._refresh_generations() RETURNS trigger
LANGUAGE c VOLATILE PARALLEL UNSAFE AS 'MODULE_PATHNAME', 'embedstack_refresh_generations';

-- _retain
CREATE FUNCTION embedstack._retain(model_set text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
    keep integer := embedstack._keep_generations();
    g record;
BEGIN
    FOR g IN SELECT x.id FROM embedstack.generations x
              WHERE x.model_set = ms.name AND x.state = 'retained'
              ORDER BY x.id = ms.previous_generation DESC, x.served_at DESC NULLS LAST, x.id DESC OFFSET keep LOOP
        PERFORM embedstack._drop_generation(ms, g.id, true);
    END LOOP;
END $$;

-- _run_job
CREATE OR REPLACE PROCEDURE embedstack._run_job(job_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    isolation text := pg_catalog.current_setting('default_transaction_isolation');
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
            PERFORM embedstack._write('job_finish', job_id, 'failed', e_msg,
                pg_catalog.jsonb_build_object('sqlstate', e_state, 'message', e_msg, 'detail', nullif(e_detail, ''),
                                              'hint', nullif(e_hint, ''), 'context', nullif(e_ctx, '')));
            COMMIT;
            PERFORM pg_catalog.set_config('default_transaction_isolation', isolation, false);
            PERFORM embedstack._job_unlock(key);
            PERFORM embedstack._reraise(e_state, e_msg, e_detail, e_hint);
        END IF;
        COMMIT;
        EXIT WHEN phase = 'done';
    END LOOP;
    PERFORM pg_catalog.set_config('default_transaction_isolation', isolation, false);
    PERFORM embedstack._job_unlock(key);
END $$;

-- _served_columns
CREATE FUNCTION embedstack._served_columns(model_set text, OUT source oid, OUT columns name[])
LANGUAGE sql STABLE PARALLEL SAFE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
    SELECT m.source::oid, m.key_column || m.model_columns FROM embedstack.model_sets m WHERE m.name = model_set
$$;

-- _served_view_name
CREATE FUNCTION embedstack._served_view_name(source_name name, model_set text) RETURNS name
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT CASE WHEN octet_length(source_name || '_' || model_set) <= 63 THEN (source_name || '_' || model_set)::name
                ELSE embedstack._derived_name(source_name || '_' || model_set, 'served', source_name || '.' || model_set) END
$$;

-- _source_info
CREATE FUNCTION embedstack._source_info(ms embedstack.model_sets, OUT nsp name, OUT owner name, OUT persistence "char",
    OUT key_type text, OUT key_eq text, OUT key_gt text)
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT n.nspname, pg_get_userbyid(c.relowner), c.relpersistence, format_type(a.atttypid, a.atttypmod),
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

-- _trigger_names
CREATE FUNCTION embedstack._trigger_names(model_set text) RETURNS name[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT ARRAY(SELECT embedstack._derived_name('embedstack_' || model_set, t,
                                                 CASE WHEN octet_length('embedstack_' || model_set || '_trunc') > 63
                                                      THEN 'embedstack_' || model_set END)
                   FROM unnest(ARRAY['ins', 'upd', 'del', 'trunc']) WITH ORDINALITY u(t, o) ORDER BY o)
$$;

-- _view_privileges
CREATE FUNCTION embedstack._view_privileges(ms embedstack.model_sets, nsp name, owner name) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    EXECUTE format('ALTER VIEW %I.%I OWNER TO %I', nsp, ms.view_name, owner);
    -- (TRUNCATE stays: a view cannot be truncated, and it is the privilege that lets the cut-over
    -- LOCK the view in ACCESS EXCLUSIVE mode.)
    EXECUTE format('REVOKE INSERT, UPDATE, DELETE ON %I.%I FROM %I', nsp, ms.view_name, owner);
    EXECUTE format('GRANT SELECT ON %I.%I TO PUBLIC', nsp, ms.view_name);
END $$;

-- _view_sql
CREATE FUNCTION embedstack._view_sql(ms embedstack.model_sets, g embedstack.generations, replace boolean) RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
    SELECT format('CREATE %sVIEW %I.%I AS SELECT g.%I, g.%I::%I.%I AS %I FROM %s g WHERE (SELECT embedstack._may_read_served(%L))',
                  CASE WHEN replace THEN 'OR REPLACE ' ELSE '' END, (embedstack._source_info(ms)).nsp, ms.view_name,
                  ms.key_column, ms.combined_column, embedstack._vector_schema(), g.storage, ms.combined_column,
                  g.relation, ms.name)
$$;

-- _w_delete_generation
CREATE FUNCTION embedstack._w_delete_generation(model_set text, generation bigint) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM embedstack.generations g WHERE g.id = generation AND g.model_set = _w_delete_generation.model_set;
    UPDATE embedstack.model_sets m SET previous_fit = NULL, previous_generation = NULL
     WHERE m.name = _w_delete_generation.model_set AND m.previous_generation = generation;
END $$;

-- _w_delete_model_set
CREATE OR REPLACE FUNCTION embedstack._w_delete_model_set(model_set text) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    DELETE FROM embedstack.fits f WHERE f.model_set = _w_delete_model_set.model_set;   -- no FK: see catalog.sql
    DELETE FROM embedstack.generations g WHERE g.model_set = _w_delete_model_set.model_set;
    DELETE FROM embedstack.model_sets m WHERE m.name = model_set;
END $$;

-- _w_generation_pending
CREATE FUNCTION embedstack._w_generation_pending(model_set text, generation bigint, pending regclass, open boolean)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    UPDATE embedstack.generations g SET pending = _w_generation_pending.pending, pending_open = open
     WHERE g.id = generation AND g.model_set = _w_generation_pending.model_set;
END $$;

-- _w_generation_set
CREATE FUNCTION embedstack._w_generation_set(model_set text, generation bigint, relation regclass,
    index_name name, cursor_key text, rows_written bigint) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
BEGIN
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

-- _w_insert_fit
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

-- _w_insert_generation
CREATE FUNCTION embedstack._w_insert_generation(model_set text, fit_id bigint, multipliers double precision[],
                                                storage text, width integer) RETURNS bigint
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    id bigint;
BEGIN
    INSERT INTO embedstack.generations AS g (model_set, fit_id, multipliers, storage, width, state)
    VALUES (model_set, fit_id, multipliers, storage, width, 'building')
    RETURNING g.id INTO id;
    RETURN id;
END $$;

-- _w_insert_model_set
CREATE FUNCTION embedstack._w_insert_model_set(
    name text, source regclass, key_column name, model_columns name[], model_dims integer[],
    model_types regtype[], mode text, threshold double precision, combined_column name, storage text, view_name name)
RETURNS embedstack.model_sets
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    r embedstack.model_sets;
BEGIN
    INSERT INTO embedstack.model_sets AS m (name, source, key_column, model_columns, model_dims, model_types,
                                            mode, threshold, combined_column, storage, view_name)
    VALUES (name, source, key_column, model_columns, model_dims, model_types, mode, threshold, combined_column, storage,
            view_name)
    RETURNING m.* INTO r;
    RETURN r;
END $$;

-- _w_job_update
CREATE FUNCTION embedstack._w_job_update(job_id bigint, phase text, rows_done bigint DEFAULT NULL,
    rows_total bigint DEFAULT NULL, cursor_key text DEFAULT NULL, fit_id bigint DEFAULT NULL,
    index_name name DEFAULT NULL, details jsonb DEFAULT NULL, generation bigint DEFAULT NULL) RETURNS void
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
           generation = coalesce(_w_job_update.generation, j.generation),
           updated_at = clock_timestamp()
     WHERE j.id = job_id AND j.state = 'running';
END $$;

-- _w_serve
CREATE FUNCTION embedstack._w_serve(model_set text, fit_id bigint, generation bigint) RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    g embedstack.generations;
    m embedstack.model_sets;
BEGIN
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

-- _wait_for_writers
CREATE  FUNCTION "_wait_for_writers"(
	"source" regclass /* RegClass */
) RETURNS void
STRICT VOLATILE PARALLEL UNSAFE
LANGUAGE c /* Rust */
AS 'MODULE_PATHNAME', '_wait_for_writers_wrapper';

-- create_model_set
CREATE FUNCTION embedstack.create_model_set(
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
        RAISE EXCEPTION 'a column appears twice among the key and model columns' USING ERRCODE = '42701';
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

    PERFORM embedstack._write('insert_model_set', name, source, key_column, model_columns, v_dims, v_types, mode,
                              threshold, v_combined, storage, v_view);
    RETURN embedstack._model_set(name);
END $$;

-- drop_model_set
CREATE OR REPLACE FUNCTION embedstack.drop_model_set(name text, drop_columns boolean DEFAULT false)
RETURNS void
LANGUAGE plpgsql VOLATILE PARALLEL UNSAFE SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    ms embedstack.model_sets := embedstack._model_set(name);
    nsp name;
    g record;
BEGIN
    -- Not while a materialize or refit of it runs (the lock is released at the end of this
    -- transaction by the abort callback, or explicitly below).
    PERFORM embedstack._lock_model_set(ms.name, false);
    IF NOT EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = ms.source) THEN
        -- The source is gone (event trigger disabled): only the catalog rows remain, which
        -- embedstack._write lets a superuser delete.
        PERFORM embedstack._write('delete_model_set', ms.name);
        PERFORM embedstack._job_unlock(hashtext(ms.name));
        RETURN;
    END IF;
    PERFORM embedstack._check_owner(ms.source);
    PERFORM embedstack._drop_triggers(ms);
    SELECT n.nspname INTO nsp FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = ms.source;
    BEGIN
        IF embedstack._is_served_view(ms) THEN
            EXECUTE format('DROP VIEW %I.%I', nsp, ms.view_name);
        END IF;
        FOR g IN SELECT x.id FROM embedstack.generations x WHERE x.model_set = ms.name LOOP
            PERFORM embedstack._drop_generation(ms, g.id);
        END LOOP;
    EXCEPTION WHEN dependent_objects_still_exist THEN
        RAISE EXCEPTION 'cannot drop model set "%": objects depend on its served view %.%', ms.name, nsp, ms.view_name
            USING ERRCODE = '2BP01', HINT = 'drop the views or functions built on it first';
    END;
    IF drop_columns AND ms.legacy_column IS NOT NULL THEN
        EXECUTE format('ALTER TABLE %s DROP COLUMN IF EXISTS %I', ms.source, ms.legacy_column);
    END IF;
    PERFORM embedstack._write('delete_model_set', ms.name);
    PERFORM embedstack._job_unlock(hashtext(ms.name));
END $$;

-- fit
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
        embedstack._pair_state(ms.name, pairs, left_column, right_column, target_column, sample_weight_column),
        ridge, nonnegative,
        jsonb_build_object('pairs', pairs::text, 'left', left_column, 'right', right_column,
                           'target', target_column, 'sample_weight', sample_weight_column));
END $$;

-- refresh
CREATE PROCEDURE embedstack.refresh(model_set text, batch_size integer DEFAULT 10000, wait boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets := embedstack._check_writer(model_set, batch_size, wait);
    job bigint;
BEGIN
    IF ms.active_fit IS NULL THEN
        RAISE EXCEPTION 'model set "%" is not served yet', ms.name USING ERRCODE = '55000',
            HINT = 'CALL embedstack.materialize first';
    END IF;
    PERFORM embedstack._lock_model_set(ms.name, wait);
    PERFORM embedstack._require_no_transaction_block('refresh');
    ms := embedstack._model_set(ms.name);
    job := embedstack._write('job_start', ms.name, 'materialize',
        pg_catalog.jsonb_build_object('batch_size', batch_size, 'refresh', true), 'prepare',
        (SELECT max(j.id) FROM embedstack.jobs j WHERE j.model_set = ms.name AND j.state = 'running'));
    PERFORM embedstack._write('job_update', job, 'prepare', NULL, NULL, NULL, ms.active_fit);
    COMMIT;
    CALL embedstack._run_job(job);
END $$;

-- rollback
CREATE PROCEDURE embedstack.rollback(model_set text, wait boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    ms embedstack.model_sets := embedstack._check_writer(model_set, 1, wait);
    g embedstack.generations;
BEGIN
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
        PERFORM embedstack._point_view(ms, g, NULL);
    END IF;
    PERFORM embedstack._write('serve', ms.name, ms.previous_fit, g.id);
    RAISE NOTICE 'embedstack: model set "%": serving fit % from generation % again', ms.name, ms.previous_fit, g.id;
    PERFORM embedstack._job_unlock(pg_catalog.hashtext(ms.name));
END $$;


-- The writers stay reachable through embedstack._write only.
REVOKE EXECUTE ON FUNCTION
    embedstack._w_insert_model_set(text, regclass, name, name[], integer[], regtype[], text, double precision, name, text, name),
    embedstack._w_insert_generation(text, bigint, double precision[], text, integer),
    embedstack._w_generation_set(text, bigint, regclass, name, text, bigint),
    embedstack._w_delete_generation(text, bigint),
    embedstack._w_generation_pending(text, bigint, regclass, boolean),
    embedstack._w_serve(text, bigint, bigint),
    embedstack._w_job_update(bigint, text, bigint, bigint, text, bigint, name, jsonb, bigint)
  FROM PUBLIC;

-- 4. The status view gains the served view, generation and rollback target (columns appended).
CREATE OR REPLACE VIEW embedstack.status WITH (security_invoker = true) AS
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
       e.finished_at AS last_error_at,
       m.view_name AS view,
       m.served_generation,
       m.previous_fit,
       m.previous_generation
  FROM embedstack.model_sets m
  LEFT JOIN embedstack.fits af ON af.id = m.active_fit
  LEFT JOIN LATERAL (SELECT * FROM embedstack.jobs x WHERE x.model_set = m.name ORDER BY x.id DESC LIMIT 1) j ON true
  LEFT JOIN LATERAL (SELECT * FROM embedstack.jobs x WHERE x.model_set = m.name AND x.state = 'failed'
                      ORDER BY x.id DESC LIMIT 1) e ON true;

-- 5. The model sets of 0.2: each gets its view name; a served one moves into generation 1.
-- Objects this script creates for users (generation tables, views) must not become members of
-- the extension (pg_dump would skip them, DROP EXTENSION would drop them): each is released
-- from it right after its creation.
DO $migrate$
DECLARE
    m record;
    ms embedstack.model_sets;
    si record;
    gid bigint;
    gname name;
    coltype text;
    width integer;
    g embedstack.generations;
BEGIN
    FOR m IN SELECT x.name, c.relname, c.relnamespace FROM embedstack.model_sets x JOIN pg_class c ON c.oid = x.source LOOP
        gname := embedstack._served_view_name(m.relname, m.name);
        IF EXISTS (SELECT 1 FROM pg_class c WHERE c.relname = gname AND c.relnamespace = m.relnamespace) THEN
            gname := embedstack._derived_name(m.relname || '_' || m.name, 'served', m.relname || '.' || m.name);
        END IF;
        UPDATE embedstack.model_sets x SET view_name = gname WHERE x.name = m.name;
    END LOOP;
    -- (A model set whose source is gone can only be dropped: any name does.)
    UPDATE embedstack.model_sets x SET view_name = embedstack._served_view_name('dropped', x.name) WHERE x.view_name IS NULL;

    FOR ms IN SELECT * FROM embedstack.model_sets x WHERE EXISTS (SELECT 1 FROM pg_class c WHERE c.oid = x.source) LOOP
        SELECT format_type(a.atttypid, a.atttypmod), a.atttypmod INTO coltype, width FROM pg_attribute a
         WHERE a.attrelid = ms.source AND a.attname = ms.combined_column AND NOT a.attisdropped;
        IF ms.active_fit IS NULL OR coltype IS NULL OR ms.served_multipliers IS NULL THEN
            -- Never materialised (or its column is gone): only a row trigger of an interrupted
            -- first materialise may be left. The next materialise starts from scratch.
            PERFORM embedstack._drop_triggers(ms);
            CONTINUE;
        END IF;
        si := embedstack._source_info(ms);
        INSERT INTO embedstack.generations AS x (model_set, fit_id, multipliers, storage, width, state)
        VALUES (ms.name, ms.active_fit, ms.served_multipliers, ms.served_storage, width, 'building')
        RETURNING x.id INTO gid;
        gname := embedstack._generation_name(ms, gid);
        EXECUTE format('CREATE %sTABLE %I.%I (%I %s NOT NULL PRIMARY KEY, %I %s)',
                       CASE WHEN si.persistence = 'u' THEN 'UNLOGGED ' ELSE '' END, si.nsp, gname,
                       ms.key_column, si.key_type, ms.combined_column, coltype);
        EXECUTE format('ALTER EXTENSION embedstack DROP TABLE %I.%I', si.nsp, gname);
        EXECUTE format('INSERT INTO %I.%I SELECT %I, %I FROM %s', si.nsp, gname, ms.key_column, ms.combined_column, ms.source);
        EXECUTE format('ALTER TABLE %I.%I OWNER TO %I', si.nsp, gname, si.owner);
        EXECUTE format('COMMENT ON TABLE %I.%I IS %L', si.nsp, gname,
                       format('embedstack: generation %s of model set "%s" (fit %s); read it through %I.%I', gid, ms.name,
                              ms.active_fit, si.nsp, ms.view_name));
        EXECUTE format('CREATE INDEX %I ON %I.%I USING hnsw (%I %I.%s)', embedstack._derived_name(gname, 'hnsw'), si.nsp, gname,
                       ms.combined_column, embedstack._vector_schema(), ms.served_storage || '_ip_ops');
        UPDATE embedstack.generations x
           SET relation = format('%I.%I', si.nsp, gname)::regclass, index_name = embedstack._derived_name(gname, 'hnsw'),
               state = 'served', served_at = now()
         WHERE x.id = gid;
        UPDATE embedstack.model_sets x SET served_generation = gid, served_index = embedstack._derived_name(gname, 'hnsw'),
                                           legacy_column = ms.combined_column
         WHERE x.name = ms.name;
        SELECT * INTO g FROM embedstack.generations x WHERE x.id = gid;
        ms.served_generation := gid;
        PERFORM embedstack._point_view(ms, g, NULL);
        EXECUTE format('ALTER EXTENSION embedstack DROP VIEW %I.%I', si.nsp, ms.view_name);
        PERFORM embedstack._install_triggers(ms);
        RAISE NOTICE 'embedstack: model set "%" now serves fit % from %.% (generation %); the column %.% is no longer written',
            ms.name, ms.active_fit, si.nsp, ms.view_name, gid, ms.source, ms.combined_column;
    END LOOP;
END $migrate$;
ALTER TABLE embedstack.model_sets ALTER COLUMN view_name SET NOT NULL;

-- 6. The row trigger function of 0.2 (no trigger uses it any more).
DROP FUNCTION embedstack._refresh_combined();

-- 7. Documentation of what changed.
COMMENT ON POLICY readers_of_the_source ON embedstack.generations IS
  'A generation is visible to the roles that see its model set.';
COMMENT ON FUNCTION embedstack._served_columns(text) IS
  'Internal (SECURITY DEFINER): the source table and the key and model column names of a model set.';
COMMENT ON FUNCTION embedstack._may_read_served(text) IS
  'Internal: the gate of a served view: true when the current role may SELECT the source''s key and model '
  'columns, else ERROR 42501.';
COMMENT ON FUNCTION embedstack._on_sql_drop() IS
  'Internal event trigger function: deletes the model sets (fits, jobs, generations) of dropped source tables '
  'and drops their served views and generation tables when nothing else depends on them.';
COMMENT ON FUNCTION embedstack._distributed_on(regclass) IS
  'Internal: the distribution column of a hash-distributed (Citus) source, NULL for a plain table; 0A000 for '
  'reference and Citus local tables.';
COMMENT ON FUNCTION embedstack._distributed_pair_statistics(embedstack.model_sets, regclass, text, text, text, text) IS
  'Internal: the regression state of labelled pairs over a distributed source, computed by one aggregate on the workers.';
COMMENT ON FUNCTION embedstack._reads_citus_table(regclass) IS
  'Internal: whether a relation is a Citus table or a view reading one.';
COMMENT ON FUNCTION embedstack._pair_state(text, regclass, text, text, text, text) IS
  'Internal: the regression state of labelled pairs (pair_statistics, or one distributed aggregate under Citus).';
COMMENT ON FUNCTION embedstack._distribute_generation(embedstack.model_sets, regclass) IS
  'Internal: distributes a generation co-located with its Citus source and grants it the source''s SELECT grantees.';
COMMENT ON FUNCTION embedstack._combine_vector(double precision[], integer[], text[], "any") IS
  'Internal row kernel: the combined vector of one row (key, then one value per model) for the given '
  'per-model multipliers and dimensions.';
COMMENT ON FUNCTION embedstack._combine_halfvec(double precision[], integer[], text[], "any") IS
  'Internal row kernel: as _combine_vector, as halfvec.';
COMMENT ON FUNCTION embedstack._refresh_generations() IS
  'Internal statement-level trigger: applies the rows a statement inserted, updated, deleted or truncated in a '
  'model set''s source to its live generation tables.';
COMMENT ON FUNCTION embedstack._stored_multipliers(text, bigint) IS
  'Internal: per-model multipliers of the stored vector blocks for a fit.';
COMMENT ON FUNCTION embedstack._layout(text, bigint) IS
  'Internal: the stored layout (multipliers, vector or halfvec, width) of a fit, or ERROR 54000.';
COMMENT ON FUNCTION embedstack._source_info(embedstack.model_sets) IS
  'Internal: schema, owner and persistence of a model set''s source, its key type and the key''s = and > operators.';
COMMENT ON FUNCTION embedstack._generation_name(embedstack.model_sets, bigint) IS
  'Internal: the table name of a generation.';
COMMENT ON FUNCTION embedstack._is_served_view(embedstack.model_sets) IS
  'Internal: whether the model set''s view name is its served view (NULL: no such relation).';
COMMENT ON FUNCTION embedstack._drop_generation(embedstack.model_sets, bigint, boolean) IS
  'Internal: drops a generation table and its catalog row (nowait: skip it when in use).';
COMMENT ON FUNCTION embedstack._live_generations(text) IS
  'Internal: the generations whose tables exist (served, retained, being written).';
COMMENT ON FUNCTION embedstack._combine_expr(embedstack.model_sets, embedstack.generations, text) IS
  'Internal: SQL of the combined vector of row alias r for a generation''s layout.';
COMMENT ON FUNCTION embedstack._freshness_sql(text, oid, text) IS
  'Internal: the statements that apply a source statement''s transition tables to the live generations.';
COMMENT ON FUNCTION embedstack._install_triggers(embedstack.model_sets) IS
  'Internal: creates the model set''s statement-level freshness triggers on its source.';
COMMENT ON FUNCTION embedstack._view_sql(embedstack.model_sets, embedstack.generations, boolean) IS
  'Internal: the definition of a model set''s served view over a generation.';
COMMENT ON FUNCTION embedstack._view_privileges(embedstack.model_sets, name, name) IS
  'Internal: owner, read-only and PUBLIC SELECT of a new served view.';
COMMENT ON FUNCTION embedstack._point_view(embedstack.model_sets, embedstack.generations, integer) IS
  'Internal: creates or redefines the served view to read a generation.';
COMMENT ON FUNCTION embedstack._mat_prepare(bigint) IS
  'Internal materialise step: layout, generation table (new or resumed), freshness triggers.';
COMMENT ON FUNCTION embedstack._mat_write(bigint) IS
  'Internal materialise step: one batch of rows into the generation being written.';
COMMENT ON FUNCTION embedstack._mat_index(bigint) IS
  'Internal materialise step: the HNSW index of the generation, built while the triggers record changed keys '
  'in a pending table, which is applied afterwards.';
COMMENT ON FUNCTION embedstack._cutover_ready(xid8, text[]) IS
  'Internal: true when no transaction of this database that predates the horizon is still running.';
COMMENT ON FUNCTION embedstack._old_transactions(xid8) IS
  'Internal: pids of this database''s sessions whose transaction or snapshot is older than the horizon.';
COMMENT ON FUNCTION embedstack._hidden_transactions() IS
  'Internal: virtual xids of this database''s sessions the caller may not inspect.';
COMMENT ON FUNCTION embedstack._mat_wait(bigint) IS
  'Internal materialise step: waits for older transactions of this database, bounded by embedstack.cutover_wait_timeout.';
COMMENT ON FUNCTION embedstack._retain(text) IS
  'Internal: drops retained generations beyond embedstack.keep_generations.';
COMMENT ON FUNCTION embedstack._mat_cutover(bigint) IS
  'Internal materialise step: points the served view at the new generation and records it.';
COMMENT ON PROCEDURE embedstack.materialize(text, bigint, integer, boolean) IS
  'Writes the combined vectors of a fit (default: the newest fit no refit rejected) into a new generation table '
  'in committed batches, builds its HNSW index and switches the served view to it in one short transaction. '
  'Resumable; one job per model set at a time (55P03, or wait => true). Outside a transaction block only (2D000).';
COMMENT ON PROCEDURE embedstack.refresh(text, integer, boolean) IS
  'Writes the active fit''s vectors into a new generation and switches to it (as materialize, without the '
  'unchanged-layout shortcut): how changes to a distributed (Citus) source are served.';
COMMENT ON PROCEDURE embedstack.rollback(text, boolean) IS
  'Serves the fit and generation served before the last switch again, at once (no rewrite, no index build); '
  'calling it again switches back. 55000 when there is none (embedstack.keep_generations = 0).';
COMMENT ON VIEW embedstack.status IS
  'One row per visible model set: its served view, active fit and generation, what rollback would serve, the '
  'latest job (interrupted when its session is gone) with progress, and the latest error.';
COMMENT ON COLUMN embedstack.model_sets.combined_column IS 'Name of the combined-vector column of the served view and of the generation tables.';
COMMENT ON COLUMN embedstack.model_sets.served_multipliers IS 'Per-model multiplier of the stored blocks of the served generation (0 = left out).';
COMMENT ON COLUMN embedstack.model_sets.served_storage IS 'Type of the served vectors: vector or halfvec.';
COMMENT ON COLUMN embedstack.model_sets.served_index IS 'Name of the HNSW (inner product) index of the served generation.';
COMMENT ON COLUMN embedstack.model_sets.view_name IS 'The served view (in the source''s schema): key and combined vector of the served generation.';
COMMENT ON COLUMN embedstack.model_sets.served_generation IS 'The generation the view reads (embedstack.generations.id).';
COMMENT ON COLUMN embedstack.model_sets.previous_fit IS 'The fit served before the last switch (what rollback serves).';
COMMENT ON COLUMN embedstack.model_sets.previous_generation IS 'The generation served before the last switch (what rollback serves).';
COMMENT ON TABLE embedstack.generations IS
  'Generations: tables of combined vectors (key, vector) the extension wrote, one per materialisation, in the '
  'source''s schema, owned by its owner: building (a job writes it), served (the view reads it), retained (for '
  'rollback, kept fresh). Dumped by pg_dump, with the tables.';
COMMENT ON COLUMN embedstack.generations.id IS 'Generation id (the table is <view>_g<id>).';
COMMENT ON COLUMN embedstack.generations.model_set IS 'The model set.';
COMMENT ON COLUMN embedstack.generations.relation IS 'The generation table.';
COMMENT ON COLUMN embedstack.generations.index_name IS 'Its HNSW (inner product) index.';
COMMENT ON COLUMN embedstack.generations.fit_id IS 'The fit it was written for (query-weighted mode: any fit of the same layout serves from it).';
COMMENT ON COLUMN embedstack.generations.multipliers IS 'Per-model multipliers of its stored blocks.';
COMMENT ON COLUMN embedstack.generations.storage IS 'vector or halfvec.';
COMMENT ON COLUMN embedstack.generations.width IS 'Dimensions of its vectors.';
COMMENT ON COLUMN embedstack.generations.state IS 'building, served or retained.';
COMMENT ON COLUMN embedstack.generations.cursor_key IS 'The last key written by the batches (a resumed job continues after it).';
COMMENT ON COLUMN embedstack.generations.rows_written IS 'Rows written by the batches.';
COMMENT ON COLUMN embedstack.generations.created_at IS 'When the generation was started.';
COMMENT ON COLUMN embedstack.generations.served_at IS 'When it was last switched to.';
COMMENT ON COLUMN embedstack.generations.pending IS
  'While its index is built: the table of keys the freshness triggers changed meanwhile (applied afterwards).';
COMMENT ON COLUMN embedstack.generations.pending_open IS 'Whether the freshness triggers record into the pending table.';
COMMENT ON COLUMN embedstack.model_sets.legacy_column IS
  'The source column a 0.1/0.2 release served from (set by the 0.3.0 upgrade; no longer written); '
  'drop_model_set(name, drop_columns => true) drops it.';
COMMENT ON FUNCTION embedstack._w_generation_pending(text, bigint, regclass, boolean) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): a generation''s pending-keys table.';
COMMENT ON FUNCTION embedstack._keep_generations() IS 'Internal: the value of embedstack.keep_generations.';
COMMENT ON FUNCTION embedstack._cutover_wait_timeout() IS 'Internal: the value of embedstack.cutover_wait_timeout (ms).';
COMMENT ON FUNCTION embedstack._wait_for_writers(regclass) IS
  'Internal: waits until the transactions writing a table when called have ended (takes no lock).';
COMMENT ON FUNCTION embedstack.create_model_set(text, regclass, name, name[], text, double precision, name, text, integer[], name) IS
  'Registers a model set: source table, key column (NOT NULL, single-column unique index), model columns '
  '(vector(n), real[] or double precision[]; dims from the typmod, model_dims, or the first row), mode '
  'symmetric | query_weighted, threshold, combined column name (default <name>_combined), storage, served view '
  'name (default <source>_<name>). Errors: 42703 unknown column, 42804 wrong type, 42P10 key not unique, '
  '42710 duplicate name, 42701/42P07 name clash.';
COMMENT ON FUNCTION embedstack.drop_model_set(text, boolean) IS
  'Removes a model set, its fit history, freshness triggers, served view and generation tables (2BP01 when '
  'objects of yours depend on the view); drop_columns => true also drops a combined column a 0.2 release left '
  'in the source. Unknown model set: 42704.';
COMMENT ON COLUMN embedstack.status.combined_column IS 'The combined-vector column of the served view.';
COMMENT ON COLUMN embedstack.status.served_index IS 'The HNSW index of the served generation.';
COMMENT ON COLUMN embedstack.status.view IS 'The served view (in the source''s schema): query it joined to the source.';
COMMENT ON COLUMN embedstack.status.served_generation IS 'The generation the view reads.';
COMMENT ON COLUMN embedstack.status.previous_fit IS 'What rollback would serve: this fit ...';
COMMENT ON COLUMN embedstack.status.previous_generation IS '... from this generation.';
COMMENT ON COLUMN embedstack.jobs.phase IS 'fit, prepare, write, index, wait (for transactions older than the new generation), cutover, done.';
COMMENT ON COLUMN embedstack.jobs.rows_done IS 'Rows written into the generation so far (committed batches).';
COMMENT ON COLUMN embedstack.jobs.index_name IS 'The HNSW index of the generation being written.';
COMMENT ON COLUMN embedstack.jobs.generation IS 'The generation the job writes (embedstack.generations.id).';
COMMENT ON FUNCTION embedstack._w_insert_model_set(text, regclass, name, name[], integer[], regtype[], text, double precision, name, text, name) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): inserts a model set.';
COMMENT ON FUNCTION embedstack._w_insert_generation(text, bigint, double precision[], text, integer) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): registers a generation being written.';
COMMENT ON FUNCTION embedstack._w_generation_set(text, bigint, regclass, name, text, bigint) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): a generation''s table, index or progress.';
COMMENT ON FUNCTION embedstack._w_delete_generation(text, bigint) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): forgets a generation.';
COMMENT ON FUNCTION embedstack._w_serve(text, bigint, bigint) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): the served fit and generation.';
COMMENT ON FUNCTION embedstack._w_job_update(bigint, text, bigint, bigint, text, bigint, name, jsonb, bigint) IS
  'Internal catalog writer (not executable by PUBLIC; reached through embedstack._write): a job''s progress.';
COMMENT ON FUNCTION embedstack._trigger_name(text) IS 'Internal: name of the row trigger releases 0.1-0.2 installed.';
COMMENT ON FUNCTION embedstack._trigger_names(text) IS 'Internal: names of a model set''s four freshness triggers.';
COMMENT ON FUNCTION embedstack._own_trigger(regclass, text, name) IS
  'Internal: is this trigger on the source the model set''s own (extension function, model set argument)?';
COMMENT ON FUNCTION embedstack._drop_triggers(embedstack.model_sets) IS 'Internal: drops a model set''s freshness triggers.';
COMMENT ON FUNCTION embedstack._served_view_name(name, text) IS 'Internal: the default served view name, <source>_<model set>.';
