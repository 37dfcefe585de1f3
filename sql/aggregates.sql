-- The regression aggregates (hand-written: pgrx's #[pg_aggregate] cannot express an in-place
-- float8[] transition function; see src/regression_state.rs).
CREATE FUNCTION embedstack.regression_stats_accum(state double precision[], features double precision[], y double precision)
RETURNS double precision[] LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'embedstack_regstats_accum';
CREATE FUNCTION embedstack.regression_stats_accum(state double precision[], features double precision[], y double precision, sample_weight double precision)
RETURNS double precision[] LANGUAGE c IMMUTABLE PARALLEL SAFE
AS 'MODULE_PATHNAME', 'embedstack_regstats_accum';

CREATE AGGREGATE embedstack.regression_stats(features double precision[], y double precision) (
    SFUNC = embedstack.regression_stats_accum,
    STYPE = double precision[],
    COMBINEFUNC = embedstack.merge,
    PARALLEL = SAFE
);
CREATE AGGREGATE embedstack.regression_stats(features double precision[], y double precision, sample_weight double precision) (
    SFUNC = embedstack.regression_stats_accum,
    STYPE = double precision[],
    COMBINEFUNC = embedstack.merge,
    PARALLEL = SAFE
);
CREATE AGGREGATE embedstack.fit_weights(features double precision[], y double precision) (
    SFUNC = embedstack.regression_stats_accum,
    STYPE = double precision[],
    COMBINEFUNC = embedstack.merge,
    FINALFUNC = embedstack.fit_weights_final,
    PARALLEL = SAFE
);
