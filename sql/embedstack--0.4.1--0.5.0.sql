-- embedstack 0.4.1 -> 0.5.0 (issue 21): learned projections (create_model_set(dims => N)),
-- explain and the ablation of evaluate. Only what changed since 0.4.1, each change commented;
-- checked by scripts/upgrade-delta.py --check and the upgrade-equals-fresh-install test.
\echo Use "ALTER EXTENSION embedstack UPDATE TO '0.5.0'" to load this file. \quit
