-- Citus (optional): a model set whose source is a hash-distributed table. Nothing here needs
-- Citus to be installed; every Citus object is reached through dynamic SQL after a check.
-- What changes for such a source (README, "Scaling out with Citus"):
--   - fit computes the pair features on the workers (one SQL aggregate over the pairs joined
--     twice to the source; the regression state's combine function merges the partial states);
--   - each generation is a distributed table co-located with the source (same distribution
--     column: the key), so the batches are INSERT ... SELECT pushed down to the shards and each
--     shard has its own HNSW index;
--   - no freshness triggers: Citus runs a trigger of a distributed table on every shard, on the
--     workers, which have no embedstack catalog; changes to the source are served after the next
--     CALL embedstack.refresh(model_set) (or materialize / refit), which writes a new generation;
--   - the generation tables get the source's table-level SELECT grants (Citus runs the served
--     view's query on the shards as the querying role, so the view owner's rights do not reach
--     them); later grants apply from the next generation on;
--   - a model set created with dims (a learned projection) keeps its basis on the coordinator:
--     the batches are read on the shards and projected on the coordinator (_mat_write), and the
--     cut-over's served check calls query_vector there (_served_check).

-- The distribution column of a hash-distributed source (NULL: not distributed, or no Citus).
-- Reference tables and Citus local tables are refused (0A000).
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
COMMENT ON FUNCTION embedstack._distributed_on(regclass) IS
  'Internal: the distribution column of a hash-distributed (Citus) source, NULL for a plain table; 0A000 for '
  'reference and Citus local tables.';

-- The regression state of a distributed source's pairs: one aggregate query, planned by Citus
-- (partial states on the workers, merged on the coordinator). The features are
-- embedstack.cosine of each model's two vectors, as pair_statistics computes them; pairs whose
-- keys are not in the source are not counted (the join drops them).
CREATE FUNCTION embedstack._distributed_pair_statistics(ms embedstack.model_sets, pairs regclass, left_column text,
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

-- Is a relation a Citus table, or a view that reads one (refit's views over the pairs)?
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
COMMENT ON FUNCTION embedstack._reads_citus_table(regclass) IS
  'Internal: whether a relation is a Citus table or a view reading one.';

-- The regression state of labelled pairs for fit and refit: pair_statistics (entities read once,
-- features in parallel threads), or the aggregate above when the source is distributed and the
-- pairs are a Citus table too (distributed or reference; with plain pairs, Citus cannot join
-- them to the source twice, and pair_statistics reads the entities through the coordinator).
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
COMMENT ON FUNCTION embedstack._pair_state(text, regclass, text, text, text, text) IS
  'Internal: the regression state of labelled pairs (pair_statistics, or one distributed aggregate under Citus).';

-- Makes a new generation table a distributed table co-located with its distributed source (the
-- key is the distribution column of both), and gives it the source's table-level SELECT grants.
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
COMMENT ON FUNCTION embedstack._distribute_generation(embedstack.model_sets, regclass) IS
  'Internal: distributes a generation co-located with its Citus source and grants it the source''s SELECT grantees.';
