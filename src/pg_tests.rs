//! `#[pg_test]`s: SQL-callable behaviour and SQLSTATEs, inside a real backend with pgvector.
//! Expected values are computed independently (closed forms, or pgvector's own operators).

use pgrx::prelude::*;

#[pg_schema]
mod tests {
    /// One row of explain: model, cosine, weight, contribution, share, note.
    type ExplainRow = (String, Option<f64>, Option<f64>, Option<f64>, Option<f64>, Option<String>);

    use pgrx::prelude::*;

    /// Runs `sql` inside a PL/pgSQL exception block (a proper subtransaction) and returns
    /// `"SQLSTATE: message"`, or `"00000"` when it succeeded.
    fn outcome(sql: &str) -> String {
        Spi::run(
            "CREATE OR REPLACE FUNCTION pg_temp.outcome(q text) RETURNS text LANGUAGE plpgsql AS $f$
             BEGIN EXECUTE q; RETURN '00000';
             EXCEPTION WHEN OTHERS THEN RETURN SQLSTATE || ': ' || SQLERRM; END $f$",
        )
        .unwrap();
        Spi::get_one_with_args::<String>("SELECT pg_temp.outcome($1)", &[sql.into()]).unwrap().unwrap()
    }

    fn assert_sqlstate(sql: &str, state: &str, message_part: &str) {
        let got = outcome(sql);
        assert!(
            got.starts_with(&format!("{state}: ")) && got.contains(message_part),
            "{sql}\n  expected {state} containing {message_part:?}\n  got {got}"
        );
    }

    fn f64_of(sql: &str) -> Option<f64> {
        Spi::get_one::<f64>(sql).unwrap()
    }

    #[pg_test]
    fn cosine_known_values_all_types() {
        let want = 32.0 / (14.0f64.sqrt() * 77.0f64.sqrt());
        for (a, b) in [
            ("'[1,2,3]'::vector", "'[4,5,6]'::vector"),
            ("'{1,2,3}'::real[]", "'{4,5,6}'::real[]"),
            ("'{1,2,3}'::float8[]", "'{4,5,6}'::float8[]"),
        ] {
            let got = f64_of(&format!("SELECT embedstack.cosine({a}, {b})")).unwrap();
            assert!((got - want).abs() < 1e-15, "{a}: {got} vs {want}");
        }
        assert_eq!(f64_of("SELECT embedstack.cosine('[1,0]'::vector, '[0,3]'::vector)"), Some(0.0));
        assert_eq!(f64_of("SELECT embedstack.cosine('[1,2]'::vector, '[-2,-4]'::vector)"), Some(-1.0));
    }

    #[pg_test]
    fn cosine_agrees_with_pgvector_operator() {
        // pgvector's <=> is 1 - cosine computed in float4/float8 mixes: agree to ~1e-6.
        let diff = f64_of(
            "WITH v AS (SELECT ('[' || string_agg(((i * 7919 % 1000) / 100.0 - 5)::text, ',') || ']')::vector AS a,
                               ('[' || string_agg(((i * 104729 % 997) / 97.0 - 5)::text, ',') || ']')::vector AS b
                        FROM generate_series(1, 384) i)
             SELECT abs(embedstack.cosine(a, b) - (1 - (a <=> b))) FROM v",
        )
        .unwrap();
        assert!(diff < 1e-6, "{diff}");
    }

    #[pg_test]
    fn l2_normalize_all_types() {
        let s =
            Spi::get_one::<String>("SELECT embedstack.l2_normalize('[3,4]'::vector)::text").unwrap().unwrap();
        assert_eq!(s, "[0.6,0.8]");
        let r =
            Spi::get_one::<Vec<f32>>("SELECT embedstack.l2_normalize('{3,0,4}'::real[])").unwrap().unwrap();
        assert_eq!(r, vec![0.6, 0.0, 0.8]);
        let d = Spi::get_one::<Vec<f64>>("SELECT embedstack.l2_normalize('{1,1,1,1}'::float8[])")
            .unwrap()
            .unwrap();
        assert_eq!(d, vec![0.5; 4]);
        // The result is a real pgvector value: its own norm function sees unit length.
        let n = f64_of("SELECT vector_norm(embedstack.l2_normalize('[1,2,3,4,5]'::vector))").unwrap();
        assert!((n - 1.0).abs() < 1e-6);
    }

    #[pg_test]
    fn zero_vector_policy() {
        let s = Spi::get_one::<String>("SELECT embedstack.l2_normalize('[0,0,0]'::vector)::text")
            .unwrap()
            .unwrap();
        assert_eq!(s, "[0,0,0]");
        let r = Spi::get_one::<Vec<f32>>("SELECT embedstack.l2_normalize('{0,0}'::real[])").unwrap().unwrap();
        assert_eq!(r, vec![0.0, 0.0]);
        assert_eq!(f64_of("SELECT embedstack.cosine('[0,0]'::vector, '[1,2]'::vector)"), None);
        assert_eq!(f64_of("SELECT embedstack.cosine('{1,2}'::real[], '{0,0}'::real[])"), None);
        assert_eq!(f64_of("SELECT embedstack.cosine('{0,0}'::float8[], '{0,0}'::float8[])"), None);
    }

    #[pg_test]
    fn null_inputs_give_null() {
        // STRICT: a NULL argument gives NULL without calling the function.
        assert_eq!(f64_of("SELECT embedstack.cosine(NULL::vector, '[1,2]'::vector)"), None);
        assert!(Spi::get_one::<Vec<f32>>("SELECT embedstack.l2_normalize(NULL::real[])").unwrap().is_none());
    }

    #[pg_test]
    fn dimension_mismatch_is_22000_naming_both() {
        assert_sqlstate("SELECT embedstack.cosine('[1,2]'::vector, '[1,2,3]'::vector)", "22000", "2 and 3");
        assert_sqlstate("SELECT embedstack.cosine('{1,2,3}'::real[], '{1}'::real[])", "22000", "3 and 1");
        assert_sqlstate("SELECT embedstack.cosine('{1}'::float8[], '{1,2}'::float8[])", "22000", "1 and 2");
    }

    #[pg_test]
    fn non_finite_is_22023_naming_the_position() {
        assert_sqlstate(
            "SELECT embedstack.cosine('{1,NaN,3}'::real[], '{1,2,3}'::real[])",
            "22023",
            "element 2",
        );
        assert_sqlstate(
            "SELECT embedstack.cosine('{1,2}'::float8[], '{Infinity,1}'::float8[])",
            "22023",
            "element 1",
        );
        assert_sqlstate("SELECT embedstack.l2_normalize('{1,2,-Infinity}'::real[])", "22023", "element 3");
        assert_sqlstate("SELECT embedstack.l2_normalize('{NaN}'::float8[])", "22023", "element 1");
    }

    #[pg_test]
    fn null_element_is_22004() {
        assert_sqlstate("SELECT embedstack.l2_normalize('{1,NULL,3}'::real[])", "22004", "position 2");
        assert_sqlstate(
            "SELECT embedstack.cosine('{1,2}'::float8[], '{NULL,1}'::float8[])",
            "22004",
            "position 1",
        );
    }

    #[pg_test]
    fn cosine_features_one_cosine_per_model() {
        let got = Spi::get_one::<Vec<Option<f64>>>(
            "SELECT embedstack.cosine_features(
                ARRAY['[1,0]'::vector, '[1,2,3]'::vector, '[0,0]'::vector, NULL],
                ARRAY['[0,1]'::vector, '[2,4,6]'::vector, '[1,1]'::vector, '[1]'::vector])",
        )
        .unwrap()
        .unwrap();
        assert_eq!(got, vec![Some(0.0), Some(1.0), None, None]);
    }

    #[pg_test]
    fn cosine_features_walks_null_bitmaps_past_a_byte() {
        // 11 models, NULLs at positions 1, 8, 9 and 11: the bitmap spans two bytes and the
        // walker must step over present elements of different sizes (dimension i+1 for model i).
        let got = Spi::get_one::<Vec<Option<f64>>>(
            "SELECT embedstack.cosine_features(
                (SELECT array_agg(CASE WHEN i IN (1, 8, 9) THEN NULL
                        ELSE array_fill(1::real, ARRAY[i])::vector END ORDER BY i) FROM generate_series(1, 11) i),
                (SELECT array_agg(CASE WHEN i = 11 THEN NULL
                        ELSE (array_fill(1::real, ARRAY[i - 1]) || (-1)::real)::vector END ORDER BY i)
                 FROM generate_series(1, 11) i))",
        )
        .unwrap()
        .unwrap();
        // cos(1_i, (1,…,1,-1)) = (i - 2) / i
        let want: Vec<Option<f64>> = (1..=11)
            .map(|i: i32| if [1, 8, 9, 11].contains(&i) { None } else { Some((i as f64 - 2.0) / i as f64) })
            .collect();
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(&want) {
            match (g, w) {
                (None, None) => {}
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-15, "{got:?}"),
                _ => panic!("{got:?} vs {want:?}"),
            }
        }
    }

    #[pg_test]
    fn cosine_features_reads_stored_and_multidimensional_arrays() {
        // A stored vector[] of wide vectors is TOASTed as a whole; a 2-D array is read in
        // storage order.
        Spi::run(
            "CREATE TEMP TABLE va (id int, models vector[]);
             INSERT INTO va SELECT g, ARRAY[
                 (SELECT array_agg(((i * g) % 11 - 5)::real) FROM generate_series(1, 768) i)::vector,
                 (SELECT array_agg(((i + g) % 7 - 3)::real) FROM generate_series(1, 384) i)::vector]
             FROM generate_series(1, 3) g",
        )
        .unwrap();
        let worst = f64_of(
            "SELECT max(greatest(abs(f[1] - embedstack.cosine(a.models[1], b.models[1])),
                                 abs(f[2] - embedstack.cosine(a.models[2], b.models[2]))))
             FROM va a CROSS JOIN va b,
                  LATERAL embedstack.cosine_features(a.models, b.models) f",
        )
        .unwrap();
        assert_eq!(worst, 0.0);
        let got = Spi::get_one::<Vec<Option<f64>>>(
            "SELECT embedstack.cosine_features(ARRAY[ARRAY['[1,0]'::vector, '[1,1]'::vector], ARRAY['[0,1]'::vector, '[2]'::vector]],
                                               ARRAY[ARRAY['[1,0]'::vector, '[1,1]'::vector], ARRAY['[1,0]'::vector, '[3]'::vector]])",
        )
        .unwrap()
        .unwrap();
        assert_eq!(got, vec![Some(1.0), Some(1.0), Some(0.0), Some(1.0)]);
    }

    #[pg_test]
    fn cosine_features_errors() {
        assert_sqlstate(
            "SELECT embedstack.cosine_features(ARRAY['[1,0]'::vector], ARRAY['[1,0]'::vector, '[1]'::vector])",
            "22000",
            "1 and 2",
        );
        assert_sqlstate(
            "SELECT embedstack.cosine_features(ARRAY['[1,0]'::vector, '[1,2]'::vector], ARRAY['[1,0]'::vector, '[1,2,3]'::vector])",
            "22000",
            "model 2: different vector dimensions 2 and 3",
        );
    }

    #[pg_test]
    fn toasted_and_short_header_vectors_are_read() {
        // vector(768) is stored out of line (pgvector sets STORAGE external): read from a table so
        // that the argument arrives TOASTed; vector(3) arrives with a 1-byte short header.
        Spi::run(
            "CREATE TEMP TABLE tv (id int, big vector(768), small vector(3), arr real[]);
             INSERT INTO tv SELECT g,
                (SELECT array_agg(((i * g) % 17 - 8)::real) FROM generate_series(1, 768) i)::vector(768),
                ARRAY[g, 1, 2]::real[]::vector(3),
                (SELECT array_agg(((i * g) % 13 - 6)::real) FROM generate_series(1, 768) i)
             FROM generate_series(1, 4) g",
        )
        .unwrap();
        let toasted = Spi::get_one::<bool>(
            "SELECT pg_relation_size(reltoastrelid) > 0 FROM pg_class WHERE oid = 'tv'::regclass",
        )
        .unwrap()
        .unwrap();
        assert!(toasted, "the test table should have out-of-line values");
        // Every read path against pgvector's own arithmetic on the same stored values.
        let worst = f64_of(
            "SELECT max(greatest(
                abs(embedstack.cosine(a.big, b.big) - (1 - (a.big <=> b.big))),
                abs(embedstack.cosine(a.small, b.small) - (1 - (a.small <=> b.small))),
                abs(embedstack.cosine(a.arr, b.arr) - (1 - (a.arr::vector <=> b.arr::vector))),
                abs(vector_norm(embedstack.l2_normalize(a.big)) - 1),
                abs((embedstack.cosine_features(ARRAY[a.big, a.small], ARRAY[b.big, b.small]))[1]
                    - (1 - (a.big <=> b.big)))))
             FROM tv a CROSS JOIN tv b",
        )
        .unwrap();
        assert!(worst < 1e-6, "{worst}");
    }

    /// Every function of the extension, with the volatility, strictness and parallel safety it
    /// must declare. A new function without an entry here fails the test.
    /// The only SECURITY DEFINER functions are the existence check of a model set name, the
    /// served view gate's column lookup and the event trigger function, and each pins
    /// search_path; the catalog writers run as the caller (row security decides what it may
    /// write), so none of them switches user.
    #[pg_test]
    fn security_definer_only_where_needed_with_pinned_search_path() {
        let rows: Vec<(String, Option<String>)> = Spi::connect(|client| {
            client
                .select(
                    "SELECT p.proname::text, array_to_string(p.proconfig, ';')
                     FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
                     JOIN pg_extension e ON e.oid = d.refobjid AND d.deptype = 'e'
                     WHERE e.extname = 'embedstack' AND p.prosecdef ORDER BY 1",
                    None,
                    &[],
                )
                .unwrap()
                .map(|r| (r.get::<String>(1).unwrap().unwrap(), r.get::<String>(2).unwrap()))
                .collect()
        });
        let names: Vec<&str> = rows.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["_model_set_exists", "_on_sql_drop", "_served_columns"]);
        for (name, config) in &rows {
            assert_eq!(config.as_deref(), Some("search_path=pg_catalog, pg_temp"), "{name}");
        }
    }

    #[pg_test]
    fn catalog_declarations_are_deliberate() {
        let expected: &[(&str, &str, bool, &str)] = &[
            ("_apply_as_owner(text,regclass,text)", "v", true, "u"),
            ("_check_job_runner(embedstack.model_sets)", "s", false, "s"),
            ("_check_owner(regclass)", "s", true, "s"),
            ("_check_source_shape(regclass)", "s", false, "s"),
            ("_check_writer(text,integer,boolean)", "s", false, "s"),
            ("_column(regclass,name)", "s", false, "s"),
            ("_combine_expr(embedstack.model_sets,embedstack.generations,text)", "s", false, "s"),
            ("_combine_halfvec(double precision[],integer[],text[],\"any\")", "i", false, "s"),
            ("_combine_vector(double precision[],integer[],text[],\"any\")", "i", false, "s"),
            ("_covariance_accum(internal,integer[],\"any\")", "i", false, "s"),
            ("_covariance_combine(internal,internal)", "i", false, "s"),
            ("_covariance_deserialize(bytea,internal)", "i", true, "s"),
            ("_covariance_final(internal)", "i", false, "s"),
            ("_covariance_serialize(internal)", "i", true, "s"),
            ("_create_pending(embedstack.model_sets,embedstack.generations)", "v", false, "u"),
            ("_cutover_ready(xid8,text[])", "v", false, "r"),
            ("_cutover_wait_timeout()", "s", true, "s"),
            ("_derived_name(text,text,text)", "i", false, "s"),
            ("_distribute_generation(embedstack.model_sets,regclass)", "v", false, "u"),
            ("_distributed_on(regclass)", "s", false, "s"),
            ("_distributed_pair_statistics(embedstack.model_sets,regclass,text,text,text,text)", "v", false, "u"),
            ("_drop_generation(embedstack.model_sets,bigint,boolean)", "v", false, "u"),
            ("_drop_pending(embedstack.model_sets,embedstack.generations)", "v", false, "u"),
            ("_drop_triggers(embedstack.model_sets)", "v", false, "u"),
            ("_drop_triggers_on(embedstack.model_sets,regclass)", "v", false, "u"),
            ("_fit_projection(double precision[],double precision[],integer,bigint)", "i", true, "s"),
            ("_freshness_sql(text,oid,text)", "s", false, "r"),
            ("_generation_for(embedstack.model_sets,bigint)", "s", false, "s"),
            ("_generation_name(embedstack.model_sets,bigint)", "i", false, "s"),
            ("_give_up_locking_view(embedstack.model_sets,timestamp with time zone)", "v", false, "r"),
            ("_hidden_transactions()", "v", false, "r"),
            ("_hooked_tables(text)", "s", false, "s"),
            ("_in_holdout(text,text,double precision)", "i", true, "s"),
            ("_install_triggers(embedstack.model_sets)", "v", false, "u"),
            ("_install_triggers_on(embedstack.model_sets,regclass)", "v", false, "u"),
            ("_is_generation_table(embedstack.model_sets,bigint,regclass,boolean,oid)", "s", false, "s"),
            ("_is_pending_table(embedstack.model_sets,embedstack.generations)", "s", false, "s"),
            ("_is_served_view(embedstack.model_sets)", "s", false, "s"),
            ("_job_lock(integer,boolean)", "v", true, "u"),
            ("_job_step(bigint,text)", "v", false, "u"),
            ("_job_unlock(integer)", "v", true, "u"),
            ("_keep_generations()", "s", true, "s"),
            ("_keep_history()", "s", true, "s"),
            ("_layout(text,bigint)", "s", false, "s"),
            ("_learn_projection(embedstack.model_sets,double precision[],bigint)", "v", false, "u"),
            ("_live_generations(text)", "s", false, "s"),
            ("_lock_model_set(text,boolean)", "v", false, "u"),
            ("_lock_source(embedstack.model_sets,timestamp with time zone)", "v", false, "u"),
            ("_mat_cutover(bigint)", "v", false, "u"),
            ("_mat_index(bigint)", "v", false, "u"),
            ("_mat_prepare(bigint)", "v", false, "u"),
            ("_mat_wait(bigint)", "v", false, "u"),
            ("_mat_write(bigint)", "v", false, "u"),
            ("_may_read(regclass)", "s", true, "s"),
            ("_may_read_served(text)", "s", false, "s"),
            ("_may_read_served(text,regclass)", "s", false, "s"),
            ("_may_write(regclass)", "s", true, "s"),
            ("_model_column_list(embedstack.model_sets,text)", "i", false, "s"),
            ("_model_set(text)", "s", false, "s"),
            ("_model_set_exists(text)", "s", false, "s"),
            ("_old_transactions(xid8)", "v", false, "r"),
            ("_on_sql_drop()", "v", false, "u"),
            ("_on_table_ddl()", "v", false, "u"),
            ("_own_trigger(regclass,text,name)", "s", false, "s"),
            ("_owned_job(bigint)", "s", false, "s"),
            ("_owned_like(regclass,regclass)", "s", false, "s"),
            ("_owned_model_set(text)", "s", false, "s"),
            ("_pair_state(text,regclass,text,text,text,text)", "v", false, "u"),
            ("_pending_batch(bigint,embedstack.model_sets,embedstack.generations)", "v", false, "u"),
            ("_point_view(embedstack.model_sets,embedstack.generations,integer)", "v", false, "u"),
            ("_project_halfvec(bigint,double precision[],integer[],text[],\"any\")", "s", false, "s"),
            ("_project_vector(bigint,double precision[],integer[],text[],\"any\")", "s", false, "s"),
            ("_random_hex6()", "v", false, "s"),
            ("_reads_citus_table(regclass)", "s", false, "s"),
            ("_record_fit(text,double precision[],double precision,boolean,jsonb,jsonb)", "v", false, "u"),
            ("_refit_fit(bigint)", "v", false, "u"),
            ("_refresh_generations()", "v", false, "u"),
            ("_require_no_transaction_block(text)", "v", true, "r"),
            ("_reraise(text,text,text,text)", "v", false, "s"),
            ("_retain(text)", "v", false, "u"),
            ("_retire(embedstack.model_sets,bigint)", "v", false, "u"),
            ("_run_job(bigint)", "v", false, "u"),
            ("_served_check(embedstack.model_sets,bigint)", "v", false, "u"),
            ("_served_columns(text,regclass)", "s", false, "s"),
            ("_served_view_name(name,text)", "i", true, "s"),
            ("_source_info(embedstack.model_sets)", "s", false, "s"),
            ("_source_tables(regclass)", "s", false, "s"),
            ("_stored_multipliers(text,bigint)", "s", false, "s"),
            ("_switch_to(embedstack.model_sets,embedstack.generations,bigint,timestamp with time zone)", "v", false, "u"),
            ("_sync_partitions(text)", "v", false, "u"),
            ("_trigger_name(text)", "i", true, "s"),
            ("_trigger_names(text)", "i", true, "s"),
            ("_unprojected_width(embedstack.model_sets,double precision[])", "i", false, "s"),
            ("_vector_schema()", "s", false, "s"),
            ("_view_privileges(embedstack.model_sets,name,name)", "v", false, "u"),
            ("_view_sql(embedstack.model_sets,embedstack.generations,boolean)", "s", false, "s"),
            ("_w_delete_generation(text,bigint)", "v", false, "u"),
            ("_w_delete_model_set(text)", "v", false, "u"),
            ("_w_generation_pending(text,bigint,regclass,boolean)", "v", false, "u"),
            ("_w_generation_projection(text,bigint,bigint)", "v", false, "u"),
            ("_w_generation_set(text,bigint,regclass,name,text,bigint)", "v", false, "u"),
            ("_w_hold(text,text)", "v", false, "u"),
            ("_w_insert_fit(text,jsonb,double precision[],double precision,jsonb,double precision[],jsonb)", "v", false, "u"),
            ("_w_insert_generation(text,bigint,double precision[],text,integer)", "v", false, "u"),
            ("_w_insert_model_set(text,regclass,name,name[],integer[],regtype[],text,double precision,name,text,name)", "v", false, "u"),
            ("_w_insert_projection(text,double precision[],integer,integer,real[],double precision[],double precision,double precision,bigint,bigint)", "v", false, "u"),
            ("_w_job_finish(bigint,text,text,jsonb)", "v", false, "u"),
            ("_w_job_start(text,text,jsonb,text,bigint)", "v", false, "u"),
            ("_w_job_update(bigint,text,bigint,bigint,text,bigint,name,jsonb,bigint)", "v", false, "u"),
            ("_w_model_set_dims(text,integer)", "v", false, "u"),
            ("_w_serve(text,bigint,bigint)", "v", false, "u"),
            ("_wait_for_writers(regclass)", "v", true, "u"),
            ("block_multipliers(double precision[],text,double precision)", "i", true, "s"),
            ("catch_up(text,boolean)", "v", false, "u"),
            ("check(text,regclass,name,name,name)", "s", false, "s"),
            ("cosine(double precision[],double precision[])", "i", true, "s"),
            ("cosine(real[],real[])", "i", true, "s"),
            ("cosine(vector,vector)", "i", true, "s"),
            ("cosine_features(vector[],vector[])", "i", true, "s"),
            ("covariance_stats(integer[],\"any\")", "i", false, "s"),
            ("create_model_set(text,regclass,name,name[],text,double precision,name,text,integer[],name,integer)", "v", false, "u"),
            ("cross_validate(double precision[],double precision[],boolean,boolean)", "i", true, "s"),
            ("drop_model_set(text,boolean)", "v", false, "u"),
            ("evaluate(text,regclass,text,text,text,bigint,boolean)", "v", false, "u"),
            // Reads the caller's source (perhaps a temporary table) and the served view: restricted.
            ("explain(text,anyelement,anyelement,bigint)", "s", false, "r"),
            ("explain(text,text,text,bigint)", "s", false, "r"),
            ("fit(text,regclass,name,name,name,double precision,boolean,name)", "v", false, "u"),
            ("fit_weights(double precision[],double precision)", "i", false, "s"),
            ("fit_weights_final(double precision[])", "i", false, "s"),
            ("l2_normalize(double precision[])", "i", true, "s"),
            ("l2_normalize(real[])", "i", true, "s"),
            ("l2_normalize(vector)", "i", true, "s"),
            ("materialize(text,bigint,integer,boolean)", "v", false, "u"),
            ("merge(double precision[],double precision[])", "i", false, "s"),
            ("pair_statistics(text,regclass,text,text,text,text)", "v", false, "u"),
            ("prediction_mse(double precision[],double precision[],double precision)", "i", true, "s"),
            ("query_vector(text,anyelement)", "s", true, "s"),
            ("query_vector(text,text)", "s", true, "s"),
            ("query_vector(text,vector[])", "s", true, "s"),
            ("refit(text,regclass,name,name,name,double precision,boolean,name,double precision,text,double precision,boolean,integer)", "v", false, "u"),
            ("refresh(text,integer,boolean)", "v", false, "u"),
            ("regression_stats(double precision[],double precision)", "i", false, "s"),
            ("regression_stats(double precision[],double precision,double precision)", "i", false, "s"),
            ("regression_stats_accum(double precision[],double precision[],double precision)", "i", false, "s"),
            ("regression_stats_accum(double precision[],double precision[],double precision,double precision)", "i", false, "s"),
            ("release(text)", "v", false, "u"),
            ("rollback(text,boolean,bigint)", "v", false, "u"),
            // Reads the caller's source (perhaps a temporary table): restricted; STRICT (NULL key, NULL score).
            ("score(text,anyelement,anyelement)", "s", true, "r"),
            ("score(text,text,text)", "s", true, "r"),
            ("solve(double precision[],double precision,boolean,boolean)", "i", true, "s"),
        ];
        let rows: Vec<(String, String, bool, String)> = Spi::connect(|client| {
            client
                .select(
                    "SELECT p.proname || '(' || oidvectortypes(p.proargtypes) || ')',
                            p.provolatile::text, p.proisstrict, p.proparallel::text
                     FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
                     JOIN pg_extension e ON e.oid = d.refobjid AND d.deptype = 'e'
                     WHERE e.extname = 'embedstack' AND p.pronamespace = 'embedstack'::regnamespace
                     ORDER BY (p.proname || '(' || oidvectortypes(p.proargtypes) || ')') COLLATE \"C\"",
                    None,
                    &[],
                )
                .unwrap()
                .map(|r| {
                    (
                        r.get::<String>(1).unwrap().unwrap().replace(", ", ","),
                        r.get::<String>(2).unwrap().unwrap(),
                        r.get::<bool>(3).unwrap().unwrap(),
                        r.get::<String>(4).unwrap().unwrap(),
                    )
                })
                .collect()
        });
        let got: Vec<(&str, &str, bool, &str)> =
            rows.iter().map(|(a, b, c, d)| (a.as_str(), b.as_str(), *c, d.as_str())).collect();
        assert_eq!(got, expected);
    }

    #[pg_test]
    fn every_function_is_documented() {
        let undocumented = Spi::get_one::<i64>(
            "SELECT count(*) FROM pg_proc p WHERE p.pronamespace = 'embedstack'::regnamespace
               AND obj_description(p.oid, 'pg_proc') IS NULL",
        )
        .unwrap()
        .unwrap();
        assert_eq!(undocumented, 0);
    }

    #[pg_test]
    fn fit_weights_recovers_an_exact_relation_and_counts_skipped_rows() {
        // y = 1 + 2 x1 - 3 x2 exactly on 50 rows; 3 rows with a NULL feature/label are skipped.
        Spi::run(
            "CREATE TEMP TABLE r AS
             SELECT ARRAY[(i % 7)::float8 / 7, (i % 5)::float8 / 5 + i / 100.0] AS x,
                    1 + 2 * ((i % 7)::float8 / 7) - 3 * ((i % 5)::float8 / 5 + i / 100.0) AS y
             FROM generate_series(1, 50) i
             UNION ALL VALUES (ARRAY[1, NULL]::float8[], 1.0), (NULL, 2.0), (ARRAY[1, 2]::float8[], NULL)",
        )
        .unwrap();
        let (w, b0) = Spi::get_two::<Vec<f64>, f64>(
            "SELECT (f).weights, (f).intercept FROM (SELECT embedstack.fit_weights(x, y) AS f FROM r) s",
        )
        .unwrap();
        let (n, skipped) = Spi::get_two::<i64, i64>(
            "SELECT (f).n_used, (f).n_skipped FROM (SELECT embedstack.fit_weights(x, y) AS f FROM r) s",
        )
        .unwrap();
        let w = w.unwrap();
        assert!((w[0] - 2.0).abs() < 1e-9 && (w[1] + 3.0).abs() < 1e-9, "{w:?}");
        assert!((b0.unwrap() - 1.0).abs() < 1e-9);
        assert_eq!((n, skipped), (Some(50), Some(3)));
        // The same through a stored state, solved later, and through merge of two halves.
        let b0_merged = f64_of(
            "SELECT (embedstack.solve(embedstack.merge(
                 (SELECT embedstack.regression_stats(x, y) FROM (SELECT * FROM r LIMIT 20) a),
                 (SELECT embedstack.regression_stats(x, y) FROM (SELECT * FROM r OFFSET 20) b)))).intercept",
        )
        .unwrap();
        assert!((b0_merged - 1.0).abs() < 1e-9);
    }

    /// NULL is the empty state: merging it with a state, in either order, gives that state (the
    /// same array, so a chain of merges over folds survives an empty fold); two NULLs stay NULL,
    /// and the aggregate over no rows is still NULL. A malformed state next to a NULL is still
    /// refused (22023).
    #[pg_test]
    fn merge_treats_null_as_the_empty_state() {
        Spi::run(
            "CREATE TEMP TABLE mr AS SELECT ARRAY[i::float8, (i % 7)::float8] AS x, 1 + 2.0 * i - (i % 7) AS y
               FROM generate_series(1, 30) i",
        )
        .unwrap();
        let same = |sql: &str| Spi::get_one::<bool>(sql).unwrap();
        let s = "(SELECT embedstack.regression_stats(x, y) FROM mr)";
        assert_eq!(same(&format!("SELECT embedstack.merge({s}, NULL) = {s}")), Some(true));
        assert_eq!(same(&format!("SELECT embedstack.merge(NULL, {s}) = {s}")), Some(true));
        let empty = "(SELECT embedstack.regression_stats(x, y) FROM mr WHERE false)";
        assert_eq!(same(&format!("SELECT {empty} IS NULL")), Some(true));
        assert_eq!(same(&format!("SELECT embedstack.merge({empty}, {empty}) IS NULL")), Some(true));
        // A chain over three folds, the middle one empty, equals the chain without it.
        let (a, b) = (
            "(SELECT embedstack.regression_stats(x, y) FROM mr WHERE x[1] <= 10)",
            "(SELECT embedstack.regression_stats(x, y) FROM mr WHERE x[1] > 10)",
        );
        assert_eq!(
            same(&format!(
                "SELECT embedstack.merge(embedstack.merge({a}, {empty}), {b}) = embedstack.merge({a}, {b})
                    AND embedstack.merge({a}, {b}) IS NOT NULL"
            )),
            Some(true)
        );
        assert_sqlstate(
            "SELECT embedstack.merge(NULL, '{4011970,1,1,1,0,1,0,0,-1,0,0}'::float8[])",
            "22023",
            "invalid regression state",
        );
    }

    #[pg_test]
    fn aggregate_bad_input_and_empty_input() {
        assert_eq!(
            Spi::get_one::<bool>(
                "SELECT embedstack.fit_weights(ARRAY[1.0], 1.0) IS NULL FROM generate_series(1, 0)"
            )
            .unwrap(),
            Some(true),
            "no rows, no group: the aggregate returns NULL"
        );
        assert_eq!(
            Spi::get_one::<bool>("SELECT embedstack.fit_weights(x, y) IS NULL FROM (VALUES (NULL::float8[], 1.0::float8)) v(x, y)")
                .unwrap(),
            Some(true),
            "only skipped rows: NULL fit"
        );
        assert_sqlstate(
            "SELECT embedstack.regression_stats(x, 1.0) FROM (VALUES (ARRAY[1.0, 2.0]::float8[]), (ARRAY[1.0]::float8[])) v(x)",
            "22000",
            "2 and 1",
        );
        assert_sqlstate("SELECT embedstack.regression_stats(ARRAY[1.0, 'NaN'], 1.0)", "22023", "feature 2");
        assert_sqlstate("SELECT embedstack.regression_stats(ARRAY[1.0], 'Infinity')", "22023", "label");
        assert_sqlstate("SELECT embedstack.regression_stats(ARRAY[1.0], 1.0, -2.0)", "22023", "negative");
        assert_sqlstate("SELECT embedstack.solve('{1,2,3}'::float8[])", "22023", "invalid regression state");
        assert_sqlstate("SELECT embedstack.merge('{4011970,1,1,1,0,1,0,0,0,0,5}'::float8[], '{4011970,1,1,1,0,1,0,0,-1,0,0}'::float8[])", "22023", "invalid regression state");
        assert_sqlstate(
            "SELECT embedstack.solve(embedstack.regression_stats(ARRAY[1.0], 1.0), ridge => -1)",
            "22023",
            "ridge",
        );
    }

    #[pg_test]
    fn collinear_features_warn_and_return_minimum_norm() {
        let w = Spi::get_one::<Vec<f64>>(
            "SELECT (embedstack.fit_weights(ARRAY[x, x], 3 * x + 1)).weights
             FROM (SELECT i::float8 / 10 AS x FROM generate_series(1, 30) i) s",
        )
        .unwrap()
        .unwrap();
        assert!((w[0] - 1.5).abs() < 1e-9 && (w[1] - 1.5).abs() < 1e-9, "{w:?}");
    }

    /// create_model_set(dims => N) (0.5.0): the range is checked (22023), and a query-weighted set
    /// too wide for the index is refused at creation (54000) with a HINT that names dims, and
    /// accepted with dims.
    #[pg_test]
    fn create_model_set_dims_is_checked_and_named_by_the_width_hint() {
        Spi::run("CREATE TABLE w (id int PRIMARY KEY, a vector(3000), b vector(2000))").unwrap();
        assert_sqlstate(
            "SELECT embedstack.create_model_set('s', 'w', 'id', ARRAY['a','b'], dims => 0)",
            "22023",
            "dims must be between 1 and 4000",
        );
        assert_sqlstate(
            "SELECT embedstack.create_model_set('s', 'w', 'id', ARRAY['a','b'], storage => 'vector', dims => 2001)",
            "22023",
            "between 1 and 2000",
        );
        Spi::run(
            "CREATE FUNCTION pg_temp.hint(q text) RETURNS text LANGUAGE plpgsql AS $f$
             DECLARE h text; BEGIN EXECUTE q; RETURN NULL;
             EXCEPTION WHEN OTHERS THEN GET STACKED DIAGNOSTICS h = PG_EXCEPTION_HINT; RETURN SQLSTATE || ': ' || h; END $f$",
        )
        .unwrap();
        let hint = Spi::get_one::<String>(
            "SELECT pg_temp.hint($$SELECT embedstack.create_model_set('s', 'w', 'id', ARRAY['a','b'], mode => 'query_weighted')$$)",
        )
        .unwrap()
        .unwrap();
        assert!(hint.starts_with("54000: ") && hint.contains("dims => N"), "{hint}");
        let dims = Spi::get_one::<i32>(
            "SELECT projection_dims FROM embedstack.create_model_set('s', 'w', 'id', ARRAY['a','b'], mode => 'query_weighted', dims => 512)",
        )
        .unwrap();
        assert_eq!(dims, Some(512));
    }

    fn model_set_table() {
        Spi::run(
            "CREATE TABLE t (id int PRIMARY KEY, nokey int, m1 vector(3), m2 real[], m3 float8[], txt text);
             INSERT INTO t VALUES (1, 1, '[1,0,0]', '{1,2}', '{1,2,3,4}', 'a'), (2, 2, '[0,1,0]', '{2,1}', NULL, 'b')",
        )
        .unwrap();
    }

    #[pg_test]
    fn create_model_set_validates_and_discovers_dimensions() {
        model_set_table();
        let dims = Spi::get_one::<Vec<i32>>(
            "SELECT model_dims FROM embedstack.create_model_set('s', 't', 'id', ARRAY['m1','m2','m3'])",
        )
        .unwrap()
        .unwrap();
        assert_eq!(dims, vec![3, 2, 4]);
        assert_sqlstate(
            "SELECT embedstack.create_model_set('s', 't', 'id', ARRAY['m1'])",
            "42710",
            "already exists",
        );
        assert_sqlstate("SELECT embedstack.create_model_set('u', 't', 'id', ARRAY['nope'])", "42703", "nope");
        assert_sqlstate("SELECT embedstack.create_model_set('u', 't', 'nope', ARRAY['m1'])", "42703", "nope");
        assert_sqlstate("SELECT embedstack.create_model_set('u', 't', 'id', ARRAY['txt'])", "42804", "text");
        assert_sqlstate(
            "SELECT embedstack.create_model_set('u', 't', 'nokey', ARRAY['m1'])",
            "42P10",
            "unique",
        );
        assert_sqlstate(
            "SELECT embedstack.create_model_set('u', 't', 'id', ARRAY['m1','m1'])",
            "42701",
            "column \"m1\" appears twice",
        );
        assert_sqlstate(
            "SELECT embedstack.create_model_set('u', 't', 'id', ARRAY['m1','id'])",
            "42701",
            "column \"id\" appears twice",
        );
        // A schema-qualified view name is not one: refused, not created as a name with a dot.
        assert_sqlstate(
            "SELECT embedstack.create_model_set('u', 't', 'id', ARRAY['m1'], view_name => 'other.v')",
            "42602",
            "contains a dot",
        );
        assert_sqlstate(
            "SELECT embedstack.create_model_set('u', 't', 'id', ARRAY['m1'], mode => 'x')",
            "22023",
            "mode",
        );
        assert_sqlstate(
            "SELECT embedstack.create_model_set('u', 't', 'id', ARRAY['m1'], threshold => 1)",
            "22023",
            "threshold",
        );
        assert_sqlstate(
            "SELECT embedstack.create_model_set('u', 't', 'id', ARRAY['m1'], model_dims => '{4}')",
            "22023",
            "model_dims",
        );
        // The combined column is the served view's second column (0.3.0): it may share a name
        // with a column of the source, not with the key (the view's first column).
        assert_sqlstate(
            "SELECT embedstack.create_model_set('u', 't', 'id', ARRAY['m1'], combined_column => 'id')",
            "42701",
            "key column",
        );
        // A relation already holding the served view's name: 42P07 before anything exists.
        Spi::run("CREATE TABLE t_u (x int)").unwrap();
        assert_sqlstate("SELECT embedstack.create_model_set('u', 't', 'id', ARRAY['m1'])", "42P07", "t_u");
        Spi::run("DROP TABLE t_u").unwrap();
        assert_sqlstate(
            "SELECT embedstack.create_model_set('u', 'no_such_table', 'id', ARRAY['m1'])",
            "42P01",
            "no_such_table",
        );
        assert_sqlstate("SELECT embedstack.drop_model_set('nope')", "42704", "nope");
        assert_sqlstate("SELECT embedstack.fit('nope', 't', 'id', 'id', 'id')", "42704", "nope");
        assert_sqlstate("SELECT embedstack.query_vector('nope', ARRAY['[1,0,0]'::vector])", "42704", "nope");
        // Not materialised yet.
        assert_sqlstate(
            "SELECT embedstack.query_vector('s', ARRAY['[1,0,0]'::vector])",
            "55000",
            "materialise",
        );
        Spi::run("SELECT embedstack.drop_model_set('s')").unwrap();
        assert_eq!(Spi::get_one::<i64>("SELECT count(*) FROM embedstack.model_sets").unwrap(), Some(0));
    }

    #[pg_test]
    fn block_multipliers_follow_the_modes() {
        // Closed forms: w = (4, 1, 0.1): symmetric keeps w > 0.05*4 = 0.2 -> sqrt(1), sqrt(1/4), 0.
        let m =
            Spi::get_one::<Vec<f64>>("SELECT embedstack.block_multipliers('{4,1,0.1}', 'symmetric', 0.05)")
                .unwrap()
                .unwrap();
        assert_eq!(m, vec![1.0, 0.5, 0.0]);
        let m = Spi::get_one::<Vec<f64>>(
            "SELECT embedstack.block_multipliers('{-4,1,0}', 'query_weighted', 0.05)",
        )
        .unwrap()
        .unwrap();
        assert_eq!(m, vec![1.0, 1.0, 1.0]);
        assert_sqlstate(
            "SELECT embedstack.block_multipliers('{-1,0}', 'symmetric', 0.05)",
            "22023",
            "positive",
        );
        assert_sqlstate("SELECT embedstack.block_multipliers('{1}', 'other', 0.05)", "22023", "mode");
    }

    #[pg_test]
    fn fit_and_evaluate_from_stored_columns() {
        // Features are exact closed forms: m1 unit axes, so cos(e1, e2) = 0 and cos(e1, e1) = 1.
        Spi::run(
            "CREATE TABLE e (k text PRIMARY KEY, m vector(2), n real[]);
             INSERT INTO e VALUES ('a', '[1,0]', '{1,0}'), ('b', '[0,1]', '{1,1}'), ('c', '[1,1]', '{0,1}'),
                                  ('z', '[0,0]', '{1,0}');
             CREATE TABLE p (l text, r text, y float8);
             -- y = 1 + 2 cos_m + 3 cos_n exactly
             INSERT INTO p SELECT l, r, 1 + 2 * embedstack.cosine(el.m, er.m) + 3 * embedstack.cosine(el.n, er.n)
               FROM (VALUES ('a','b'), ('a','c'), ('b','c'), ('a','a'), ('c','b')) v(l, r)
               JOIN e el ON el.k = v.l JOIN e er ON er.k = v.r;
             INSERT INTO p VALUES ('a', 'missing', 1), ('a', 'z', 2), ('a', 'b', NULL);
             SELECT embedstack.create_model_set('s', 'e', 'k', ARRAY['m', 'n']);",
        )
        .unwrap();
        let (w, b0) = Spi::get_two::<Vec<f64>, f64>(
            "SELECT weights, intercept FROM embedstack.fit('s', 'p', 'l', 'r', 'y')",
        )
        .unwrap();
        let (w, b0) = (w.unwrap(), b0.unwrap());
        assert!(
            (w[0] - 2.0).abs() < 1e-9 && (w[1] - 3.0).abs() < 1e-9 && (b0 - 1.0).abs() < 1e-9,
            "{w:?} {b0}"
        );
        let (n, skipped) = Spi::get_two::<i64, i64>(
            "SELECT (diagnostics->>'n_used')::int8, (diagnostics->>'n_skipped')::int8 FROM embedstack.fits",
        )
        .unwrap();
        // Missing key, zero vector, NULL target: 3 skipped.
        assert_eq!((n, skipped), (Some(5), Some(3)));
        let fit_pearson = Spi::get_one::<f64>(
            "SELECT pearson FROM embedstack.evaluate('s', 'p', 'l', 'r', 'y') WHERE model = '(fit)'",
        )
        .unwrap()
        .unwrap();
        assert!((fit_pearson - 1.0).abs() < 1e-12);
        assert_sqlstate("SELECT embedstack.fit('s', 'p', 'l', 'r', 'nope')", "42703", "nope");
        Spi::run("DELETE FROM p WHERE r <> 'missing'").unwrap();
        assert_sqlstate("SELECT embedstack.fit('s', 'p', 'l', 'r', 'y')", "22023", "no usable pairs");
    }

    /// explain: closed-form cosines (unit axes), contributions, shares, the intercept and the
    /// prediction of an exact fit y = 1 + 2 cos_m + 3 cos_n; its errors with their SQLSTATEs; and
    /// evaluate's ablation rows (refit without a model) on the same data.
    #[pg_test]
    fn explain_and_ablation_from_stored_columns() {
        Spi::run(
            "CREATE TABLE e (k int PRIMARY KEY, m vector(2), n real[]);
             INSERT INTO e VALUES (1, '[1,0]', '{1,0}'), (2, '[0,1]', '{1,1}'), (3, '[1,1]', '{0,1}'),
                                  (4, '[0,0]', '{1,0}'), (5, '[3,4]', NULL);
             CREATE TABLE p (l int, r int, y float8);
             INSERT INTO p SELECT l, r, 1 + 2 * embedstack.cosine(el.m, er.m) + 3 * embedstack.cosine(el.n, er.n)
               FROM (VALUES (1, 2), (1, 3), (2, 3), (1, 1), (3, 2), (2, 2)) v(l, r)
               JOIN e el ON el.k = v.l JOIN e er ON er.k = v.r;
             SELECT embedstack.create_model_set('s', 'e', 'k', ARRAY['m', 'n']);",
        )
        .unwrap();
        assert_sqlstate("SELECT * FROM embedstack.explain('s', 1, 3)", "55000", "has no fit");
        Spi::run("SELECT embedstack.fit('s', 'p', 'l', 'r', 'y')").unwrap();
        let rows = |sql: &str| -> Vec<ExplainRow> {
            Spi::connect(|c| {
                c.select(sql, None, &[])
                    .unwrap()
                    .map(|r| {
                        (
                            r.get::<String>(1).unwrap().unwrap(),
                            r.get::<f64>(2).unwrap(),
                            r.get::<f64>(3).unwrap(),
                            r.get::<f64>(4).unwrap(),
                            r.get::<f64>(5).unwrap(),
                            r.get::<String>(6).unwrap(),
                        )
                    })
                    .collect()
            })
        };
        let close = |a: Option<f64>, b: f64| a.is_some_and(|a| (a - b).abs() < 1e-9);
        // (1, 3): cos_m = cos([1,0],[1,1]) = 1/sqrt 2, cos_n = cos([1,0],[0,1]) = 0.
        for sql in [
            "SELECT * FROM embedstack.explain('s', 1, 3)",
            "SELECT * FROM embedstack.explain('s', '1', '3')",
            "SELECT * FROM embedstack.explain('s', 1::int8, 3::int8)",
            "SELECT * FROM embedstack.explain('s', '1'::text, '3'::text, (SELECT max(id) FROM embedstack.fits))",
        ] {
            let r = rows(sql);
            let names: Vec<&str> = r.iter().map(|x| x.0.as_str()).collect();
            assert_eq!(names, ["m", "n", "(intercept)", "(total)"], "{sql}");
            let c = 0.5f64.sqrt();
            assert!(close(r[0].1, c) && close(r[0].2, 2.0) && close(r[0].3, 2.0 * c), "{sql}: {:?}", r[0]);
            assert!(close(r[1].1, 0.0) && close(r[1].2, 3.0) && close(r[1].3, 0.0), "{sql}: {:?}", r[1]);
            // share = contribution / sum |contribution|
            assert!(close(r[0].4, 1.0) && close(r[1].4, 0.0), "{sql}: {r:?}");
            assert!(close(r[2].3, 1.0) && r[2].1.is_none(), "{sql}: {:?}", r[2]);
            // prediction = 1 + 2/sqrt 2; nothing served yet
            assert!(close(r[3].3, 1.0 + 2.0 * c) && r[3].1.is_none(), "{sql}: {:?}", r[3]);
            assert!(r[3].5.as_deref().unwrap_or("").contains("not materialised"), "{sql}: {:?}", r[3]);
        }
        // (4, 1): 4's m is a zero vector: no cosine, no prediction.
        let r = rows("SELECT * FROM embedstack.explain('s', 4, 1)");
        assert!(r[0].1.is_none() && r[0].3.is_none() && r[0].4.is_none(), "{r:?}");
        assert!(r[0].5.as_deref().unwrap_or("").contains("a_key"), "{r:?}");
        assert!(close(r[1].1, 1.0) && close(r[1].4, 1.0) && r[3].3.is_none(), "{r:?}");
        // Errors, each with its SQLSTATE; no key value in the messages.
        assert_sqlstate("SELECT * FROM embedstack.explain('nope', 1, 2)", "42704", "does not exist");
        assert_sqlstate("SELECT * FROM embedstack.explain('s', 1, 777)", "P0002", "b_key");
        assert_sqlstate("SELECT * FROM embedstack.explain('s', 777, 1)", "P0002", "a_key");
        assert!(!outcome("SELECT * FROM embedstack.explain('s', 1, 777)").contains("777"));
        assert_sqlstate("SELECT * FROM embedstack.explain('s', 1, 2, 999999)", "42704", "fit 999999");
        assert_sqlstate("SELECT * FROM embedstack.explain(NULL, 1, 2)", "22004", "model_set");
        assert_sqlstate("SELECT * FROM embedstack.explain('s', NULL::int, 2)", "22004", "a_key");
        assert_sqlstate("SELECT * FROM embedstack.explain('s', 1, NULL::int)", "22004", "b_key");
        assert_sqlstate("SELECT * FROM embedstack.explain('s', NULL, NULL)", "22004", "a_key");
        assert_sqlstate("SELECT * FROM embedstack.explain('s', 'x', '1')", "22P02", "integer");
        assert_sqlstate("SELECT * FROM embedstack.explain('s', now(), now())", "42804", "a_key");
        // score: the served score, so 55000 until materialised (its values: the client tests and
        // pg_regress `projection`, which materialise); STRICT.
        assert_sqlstate("SELECT embedstack.score('s', 1, 3)", "55000", "serves nothing");
        assert_sqlstate("SELECT embedstack.score('nope', 1, 3)", "42704", "does not exist");
        assert_eq!(Spi::get_one::<f64>("SELECT embedstack.score('s', NULL::int, 3)").unwrap(), None);
        assert_sqlstate("SELECT embedstack.score('s', '1', '3')", "55000", "serves nothing");
        assert_sqlstate(
            "SELECT * FROM embedstack.evaluate('s', 'p', 'l', 'r', 'y', ablation => NULL)",
            "22004",
            "ablation",
        );

        // Ablation: without m the exact fit leaves y = b + w cos_n, refitted on the training
        // pairs: cos_n over (1,2),(1,3),(2,3),(1,1),(3,2),(2,2) is 1/sqrt2, 0, 1/sqrt2, 1, 1/sqrt2, 1.
        let ev = |sql: &str| -> Vec<(String, i64, Option<f64>)> {
            Spi::connect(|c| {
                c.select(sql, None, &[])
                    .unwrap()
                    .map(|r| {
                        (
                            r.get::<String>(1).unwrap().unwrap(),
                            r.get::<i64>(2).unwrap().unwrap(),
                            r.get::<f64>(3).unwrap(),
                        )
                    })
                    .collect()
            })
        };
        let plain = ev("SELECT model, n, pearson FROM embedstack.evaluate('s', 'p', 'l', 'r', 'y')");
        assert!(plain.iter().all(|r| !r.0.starts_with("(without")), "{plain:?}");
        let abl = ev(
            "SELECT model, n, pearson FROM embedstack.evaluate('s', 'p', 'l', 'r', 'y', ablation => true)",
        );
        assert_eq!(&abl[..plain.len()], &plain[..], "ablation keeps the other rows");
        let names: Vec<&str> = abl[plain.len()..].iter().map(|r| r.0.as_str()).collect();
        assert_eq!(names, ["(without m)", "(without n)"]);
        // The refit without m predicts b + w cos_n: its Pearson with y equals that of cos_n alone
        // (w > 0), which is the per-model row n; the same for the refit without n and row m.
        let by = |name: &str| abl.iter().find(|r| r.0 == name).unwrap().clone();
        assert_eq!(by("(without m)").1, 6);
        assert!((by("(without m)").2.unwrap() - by("n").2.unwrap()).abs() < 1e-12, "{abl:?}");
        assert!((by("(without n)").2.unwrap() - by("m").2.unwrap()).abs() < 1e-12, "{abl:?}");
        // A model set of one model has no ablation rows.
        Spi::run(
            "SELECT embedstack.create_model_set('one', 'e', 'k', ARRAY['m']);
             SELECT embedstack.fit('one', 'p', 'l', 'r', 'y');",
        )
        .unwrap();
        let one = ev(
            "SELECT model, n, pearson FROM embedstack.evaluate('one', 'p', 'l', 'r', 'y', ablation => true)",
        );
        let names: Vec<&str> = one.iter().map(|r| r.0.as_str()).collect();
        assert_eq!(names, ["m", "(stack)", "(fit)"]);
    }

    // ------------------------------------------------------------ search path pinning (0.3.1)

    fn search_path() -> String {
        Spi::get_one::<String>("SELECT pg_catalog.current_setting('search_path')").unwrap().unwrap()
    }

    /// The helper pins the path for its closure only (nested too), and an error raised inside it
    /// and caught by a subtransaction (a PL/pgSQL exception block) leaves the caller's path.
    #[pg_test]
    fn pinned_search_path_is_restored_after_return_and_error() {
        use crate::operations::pinned_path::with_pinned_search_path;
        Spi::run("SET LOCAL search_path = public, pg_catalog").unwrap();
        assert_eq!(search_path(), "public, pg_catalog");
        assert_eq!(with_pinned_search_path(search_path), "pg_catalog, pg_temp");
        assert_eq!(search_path(), "public, pg_catalog");
        let (inner, outer) =
            with_pinned_search_path(|| (with_pinned_search_path(search_path), search_path()));
        assert_eq!((inner.as_str(), outer.as_str()), ("pg_catalog, pg_temp", "pg_catalog, pg_temp"));
        assert_eq!(search_path(), "public, pg_catalog");
        // Errors raised while pinned (the catalog lookup of a missing model set), caught by the
        // exception block of `outcome`.
        assert_sqlstate(
            "SELECT embedstack.pair_statistics('no such set', 'pg_class', 'a', 'b', 'c')",
            "42704",
            "does not exist",
        );
        assert_eq!(search_path(), "public, pg_catalog");
        assert_sqlstate("SELECT embedstack.query_vector('no such set', 1)", "42704", "does not exist");
        assert_eq!(search_path(), "public, pg_catalog");
        // The same path inside a function with its own SET clause, after the error.
        Spi::run(
            "CREATE FUNCTION pg_temp.path_after_error() RETURNS text LANGUAGE plpgsql
               SET search_path = public, pg_catalog AS $f$
             BEGIN
               BEGIN PERFORM embedstack.evaluate('no such set', 'pg_class', 'a', 'b', 'c');
               EXCEPTION WHEN undefined_object THEN NULL; END;
               RETURN pg_catalog.current_setting('search_path');
             END $f$",
        )
        .unwrap();
        assert_eq!(
            Spi::get_one::<String>("SELECT pg_temp.path_after_error()").unwrap().unwrap(),
            "public, pg_catalog"
        );
    }

    /// The key comparisons of the pair scan are chosen from the key's btree family and written
    /// `OPERATOR(pg_catalog.=)`: look-alike operators in a schema on the caller's path (exact
    /// matches for text = varchar and int4 = int8, which the parser would prefer) are never
    /// called. Cross-type pair columns keep working (int8 and numeric against an int4 key);
    /// incomparable ones are 42804.
    #[pg_test]
    fn pair_scan_key_comparisons_ignore_lookalike_operators() {
        Spi::run(
            "CREATE FUNCTION public.hijack_tv(text, varchar) RETURNS boolean LANGUAGE plpgsql AS
               $f$ BEGIN RAISE EXCEPTION 'hijacked text = varchar'; END $f$;
             CREATE OPERATOR public.= (LEFTARG = text, RIGHTARG = varchar, FUNCTION = public.hijack_tv);
             CREATE FUNCTION public.hijack_i48(int4, int8) RETURNS boolean LANGUAGE plpgsql AS
               $f$ BEGIN RAISE EXCEPTION 'hijacked int4 = int8'; END $f$;
             CREATE OPERATOR public.= (LEFTARG = int4, RIGHTARG = int8, FUNCTION = public.hijack_i48);
             CREATE FUNCTION public.hijack_ge(float8, int4) RETURNS boolean LANGUAGE plpgsql AS
               $f$ BEGIN RAISE EXCEPTION 'hijacked float8 >= int4'; END $f$;
             CREATE OPERATOR public.>= (LEFTARG = float8, RIGHTARG = int4, FUNCTION = public.hijack_ge);
             CREATE TABLE hk (k text PRIMARY KEY, m vector(2));
             INSERT INTO hk VALUES ('a', '[1,0]'), ('b', '[0,1]'), ('c', '[1,1]');
             CREATE TABLE hp (l varchar, r varchar, y float8);
             INSERT INTO hp VALUES ('a', 'b', 1), ('a', 'c', 2), ('b', 'c', 3), ('a', 'zz', 4);
             CREATE TABLE ik (id int4 PRIMARY KEY, m vector(2));
             INSERT INTO ik VALUES (1, '[1,0]'), (2, '[0,1]'), (3, '[1,1]');
             CREATE TABLE ip8 (l int8, r int8, y float8);
             INSERT INTO ip8 VALUES (1, 2, 1), (1, 3, 2), (2, 3, 3), (1, 99, 4), (1, 5000000000, 5);
             CREATE TABLE ipn (l numeric, r numeric, y float8);
             INSERT INTO ipn VALUES (1, 2, 1), (1, 3, 2), (2, 3, 3), (1, 2.5, 4);
             CREATE TABLE ipt (l text, r text, y float8);
             SELECT embedstack.create_model_set('hs', 'hk', 'k', ARRAY['m']);
             SELECT embedstack.create_model_set('is', 'ik', 'id', ARRAY['m']);
             SET LOCAL search_path = public, pg_catalog;",
        )
        .unwrap();
        let used = |sql: &str| -> (Option<i64>, Option<i64>) {
            Spi::get_two::<i64, i64>(&format!(
                "SELECT (s).n_used, (s).n_skipped FROM (SELECT embedstack.solve({sql}) AS s) x"
            ))
            .unwrap()
        };
        assert_eq!(used("embedstack.pair_statistics('hs', 'hp', 'l', 'r', 'y')"), (Some(3), Some(1)));
        assert_eq!(used("embedstack.pair_statistics('is', 'ip8', 'l', 'r', 'y')"), (Some(3), Some(2)));
        assert_eq!(used("embedstack.pair_statistics('is', 'ipn', 'l', 'r', 'y')"), (Some(3), Some(1)));
        assert_sqlstate(
            "SELECT embedstack.pair_statistics('is', 'ipt', 'l', 'r', 'y')",
            "42804",
            "cannot be compared with the key",
        );
        // The caller's path is back after each call.
        assert_eq!(search_path(), "public, pg_catalog");
    }

    /// Row errors of the row kernel name the key, unless keys are hidden (the freshness
    /// trigger, for a role without SELECT on the key): then the same message without the value.
    /// The flag is restored after the call, after an error inside it, and an inner call never
    /// shows what an outer one hides.
    #[pg_test]
    fn row_errors_hide_the_key_while_keys_are_hidden() {
        use crate::errors::{keys_hidden, with_keys_hidden};
        let dims = "SELECT embedstack._combine_vector('{1}'::float8[], '{2}'::int4[], '{m}'::text[], 1001, '[1,2,3]'::vector)";
        let nan = "SELECT embedstack._combine_vector('{1}'::float8[], '{2}'::int4[], '{m}'::text[], 1001, '{1,NaN}'::float8[])";
        let null = "SELECT embedstack._combine_vector('{1}'::float8[], '{2}'::int4[], '{m}'::text[], 1001, '{1,NULL}'::float8[])";
        assert_sqlstate(
            dims,
            "22000",
            "row with key 1001: column m has 3 dimensions, the model set expects 2",
        );
        assert_sqlstate(nan, "22023", "row with key 1001: column m");
        assert_sqlstate(null, "22004", "row with key 1001: column m contains a NULL element");
        for (sql, state) in [(dims, "22000"), (nan, "22023"), (null, "22004")] {
            let got = with_keys_hidden(true, || outcome(sql));
            assert!(
                got.starts_with(&format!(
                    "{state}: row with key (hidden: no SELECT privilege on the key): column m"
                )) && !got.contains("1001"),
                "{got}"
            );
        }
        assert!(!keys_hidden());
        assert!(with_keys_hidden(true, || with_keys_hidden(false, keys_hidden)), "inner calls stay hidden");
        assert!(!with_keys_hidden(false, keys_hidden));
        let caught =
            PgTryBuilder::new(|| with_keys_hidden(true, || -> bool { panic!("raised while hidden") }))
                .catch_rust_panic(|_| false)
                .execute();
        assert!(!caught && !keys_hidden());
        assert_sqlstate(dims, "22000", "row with key 1001:");
    }
}
