-- Pre-flight check (0.4.0): what in a model set's source (and, given, its pairs) will make a fit or
-- a materialise fail, skip rows or serve something useless -- counted, with the query that lists
-- the rows, instead of one error per attempt. Reads as the caller (SELECT on the tables needed).

CREATE FUNCTION embedstack.check(model_set text, pairs regclass DEFAULT NULL, left_column name DEFAULT NULL,
                                 right_column name DEFAULT NULL, target_column name DEFAULT NULL)
RETURNS TABLE (severity text, finding text, model_column name, count bigint, detail text, query text)
LANGUAGE plpgsql STABLE PARALLEL SAFE SET search_path = pg_catalog, pg_temp AS $$
#variable_conflict use_variable
DECLARE
    ms embedstack.model_sets := embedstack._model_set(model_set);
    vnsp name := embedstack._vector_schema();
    col name;
    d integer;
    is_vector boolean;
    dims_expr text;
    r record;
    n_rows bigint;
    n_pairs bigint;
    key_of text := format('s.%I', ms.key_column);
    lk text;
    rk text;
    y text;
    usable bigint;
BEGIN
    IF (pairs IS NULL) <> (left_column IS NULL) OR (pairs IS NULL) <> (right_column IS NULL)
       OR (pairs IS NULL) <> (target_column IS NULL) THEN
        RAISE EXCEPTION 'pass the pairs with their left, right and target columns, or none of them' USING ERRCODE = '22023';
    END IF;
    EXECUTE format('SELECT count(*) FROM %s', ms.source) INTO n_rows;
    FOR i IN 1 .. cardinality(ms.model_columns) LOOP
        col := ms.model_columns[i];
        d := ms.model_dims[i];
        is_vector := (SELECT t.typname = 'vector' FROM pg_type t WHERE t.oid = ms.model_types[i]);
        dims_expr := CASE WHEN is_vector THEN format('%I.vector_dims(s.%I)', vnsp, col) ELSE format('cardinality(s.%I)', col) END;
        EXECUTE format(
            'SELECT count(*) FILTER (WHERE s.%1$I IS NULL) AS nulls,
                    count(*) FILTER (WHERE s.%1$I IS NOT NULL AND %2$s <> %3$s) AS bad_dims,
                    string_agg(DISTINCT CASE WHEN s.%1$I IS NOT NULL AND %2$s <> %3$s THEN %2$s::text END, '', '') AS found_dims,
                    count(*) FILTER (WHERE s.%1$I IS NOT NULL AND %4$s) AS zeros,
                    count(*) FILTER (WHERE s.%1$I IS NOT NULL AND %5$s) AS nonfinite,
                    count(*) FILTER (WHERE s.%1$I IS NOT NULL AND %6$s) AS nested
               FROM %7$s s',
            col, dims_expr, d,
            CASE WHEN is_vector THEN format('%I.vector_norm(s.%I) = 0', vnsp, col)
                 ELSE format('NOT EXISTS (SELECT 1 FROM unnest(s.%I) x WHERE x <> 0)', col) END,
            CASE WHEN is_vector THEN 'false'
                 ELSE format('EXISTS (SELECT 1 FROM unnest(s.%I) x WHERE x IS NULL OR x IN (''NaN'', ''Infinity'', ''-Infinity''))', col) END,
            CASE WHEN is_vector THEN 'false' ELSE format('array_ndims(s.%I) > 1', col) END,
            ms.source) INTO r;
        IF r.bad_dims > 0 THEN
            RETURN QUERY SELECT 'error', 'dimension mismatch', col, r.bad_dims,
                format('the model set expects %s dimensions; rows have %s: fit and materialise stop at the first', d, r.found_dims),
                format('SELECT %s, %s FROM %s s WHERE %s <> %s', key_of, dims_expr, ms.source, dims_expr, d);
        END IF;
        IF r.nested > 0 THEN
            RETURN QUERY SELECT 'error', 'multi-dimensional array', col, r.nested,
                'an array of arrays is read as one flat vector: store one vector per row'::text,
                format('SELECT %s FROM %s s WHERE array_ndims(s.%I) > 1', key_of, ms.source, col);
        END IF;
        IF r.nonfinite > 0 THEN
            RETURN QUERY SELECT 'error', 'NULL, NaN or infinite element', col, r.nonfinite,
                'a vector with such an element has no direction: fit and materialise refuse it'::text,
                format('SELECT %s FROM %s s WHERE EXISTS (SELECT 1 FROM unnest(s.%I) x WHERE x IS NULL OR x IN (''NaN'', ''Infinity'', ''-Infinity''))',
                       key_of, ms.source, col);
        END IF;
        IF r.zeros > 0 THEN
            RETURN QUERY SELECT 'warning', 'zero vector', col, r.zeros,
                'a zero vector has no direction: its block is served as zeros and pairs with it are skipped'::text,
                format('SELECT %s FROM %s s WHERE s.%I IS NOT NULL AND %s', key_of, ms.source, col,
                       CASE WHEN is_vector THEN format('%I.vector_norm(s.%I) = 0', vnsp, col)
                            ELSE format('NOT EXISTS (SELECT 1 FROM unnest(s.%I) x WHERE x <> 0)', col) END);
        END IF;
        IF r.nulls > 0 THEN
            RETURN QUERY SELECT 'info', 'NULL vector', col, r.nulls,
                'served with this model''s block as zeros; pairs with it are skipped'::text,
                format('SELECT %s FROM %s s WHERE s.%I IS NULL', key_of, ms.source, col);
        END IF;
    END LOOP;
    EXECUTE format('SELECT count(*) FROM %s s WHERE %s', ms.source,
                   (SELECT string_agg(format('s.%I IS NULL', c), ' AND ') FROM unnest(ms.model_columns) c)) INTO usable;
    IF usable > 0 THEN
        RETURN QUERY SELECT 'warning', 'no model vector', NULL::name, usable,
            'served as a zero vector (score 0 with every query); query_vector refuses its key'::text,
            format('SELECT %s FROM %s s WHERE %s', key_of, ms.source,
                   (SELECT string_agg(format('s.%I IS NULL', c), ' AND ') FROM unnest(ms.model_columns) c));
    END IF;

    IF pairs IS NOT NULL THEN
        PERFORM embedstack._column(pairs, left_column);
        PERFORM embedstack._column(pairs, right_column);
        PERFORM embedstack._column(pairs, target_column);
        lk := format('p.%I', left_column);
        rk := format('p.%I', right_column);
        y := format('p.%I', target_column);
        EXECUTE format('SELECT count(*) FROM %s p', pairs) INTO n_pairs;
        BEGIN
            EXECUTE format(
                'SELECT count(*) FILTER (WHERE NOT EXISTS (SELECT 1 FROM %1$s s WHERE s.%2$I = %3$s)
                                            OR NOT EXISTS (SELECT 1 FROM %1$s s WHERE s.%2$I = %4$s)) AS unknown,
                        count(*) FILTER (WHERE %5$s IS NULL) AS null_target,
                        count(DISTINCT %5$s) AS targets
                   FROM %6$s p', ms.source, ms.key_column, lk, rk, y, pairs) INTO r;
        EXCEPTION WHEN undefined_function THEN
            RETURN QUERY SELECT 'error', 'key types', NULL::name, n_pairs,
                format('the pairs'' columns %I, %I cannot be compared with the key %I of %s: cast them to its type',
                       left_column, right_column, ms.key_column, ms.source), NULL::text;
            RETURN;
        END;
        IF r.unknown > 0 THEN
            RETURN QUERY SELECT 'warning', 'pair key not in the source', NULL::name, r.unknown,
                'these pairs are skipped by fit, refit and evaluate'::text,
                format('SELECT p.* FROM %1$s p WHERE NOT EXISTS (SELECT 1 FROM %2$s s WHERE s.%3$I = %4$s) '
                       'OR NOT EXISTS (SELECT 1 FROM %2$s s WHERE s.%3$I = %5$s)', pairs, ms.source, ms.key_column, lk, rk);
        END IF;
        IF r.null_target > 0 THEN
            RETURN QUERY SELECT 'warning', 'NULL target', NULL::name, r.null_target, 'these pairs are skipped'::text,
                format('SELECT p.* FROM %s p WHERE %s IS NULL', pairs, y);
        END IF;
        IF r.targets = 1 THEN
            RETURN QUERY SELECT 'error', 'constant target', NULL::name, n_pairs - r.null_target,
                'every pair has the same target: a fit explains nothing (r2 = 0)'::text,
                format('SELECT %s, count(*) FROM %s p GROUP BY 1', y, pairs);
        END IF;
        EXECUTE format('SELECT coalesce(sum(c - 1), 0) FROM (SELECT count(*) AS c FROM %s p GROUP BY least(%s, %s), greatest(%s, %s) '
                       'HAVING count(*) > 1) x', pairs, lk, rk, lk, rk) INTO usable;
        IF usable > 0 THEN
            RETURN QUERY SELECT 'warning', 'duplicate pair', NULL::name, usable,
                'a pair given more than once (either order) weighs more in the fit'::text,
                format('SELECT least(%1$s, %2$s), greatest(%1$s, %2$s), count(*) FROM %3$s p GROUP BY 1, 2 HAVING count(*) > 1',
                       lk, rk, pairs);
        END IF;
        usable := n_pairs - r.null_target - r.unknown;
        IF usable < cardinality(ms.model_columns) + 1 THEN
            RETURN QUERY SELECT 'error', 'too few pairs', NULL::name, greatest(usable, 0),
                format('a fit of %s models and an intercept needs at least %s usable pairs (more in practice)',
                       cardinality(ms.model_columns), cardinality(ms.model_columns) + 1), NULL::text;
        END IF;
    END IF;
    RETURN QUERY SELECT 'info', 'summary', NULL::name, n_rows,
        format('%s rows in %s%s', n_rows, ms.source, CASE WHEN pairs IS NULL THEN '' ELSE format(', %s pairs in %s', n_pairs, pairs) END),
        NULL::text;
END $$;
COMMENT ON FUNCTION embedstack.check(text, regclass, name, name, name) IS
  'Pre-flight check of a model set''s source (and pairs): one row per finding (dimension mismatches, NaN, nested '
  'arrays, zero and NULL vectors, rows without any vector, pair keys not in the source, NULL or constant targets, '
  'duplicate pairs, too few pairs) with its severity, count and the query that lists the rows; a summary row last.';
