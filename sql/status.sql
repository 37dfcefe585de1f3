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
       e.finished_at AS last_error_at,
       m.view_name AS view,
       m.served_generation,
       m.previous_fit,
       m.previous_generation,
       m.held_since,
       m.held_reason,
       (SELECT pg_catalog.count(*) FROM embedstack.generations g WHERE g.model_set = m.name AND g.state = 'retained')
           AS retained_generations,
       -- (0.5.0) create_model_set's dims, and the learned projection of the served generation:
       -- its id, the width it maps from and the share of the variance it keeps.
       m.projection_dims AS dims,
       sp.id AS served_projection,
       sp.input_width AS unprojected_width,
       sp.variance_kept,
       -- (0.5.0) the Spearman of the served and the fitted scores on the fit's pairs, as the job
       -- that wrote the served generation measured it (_served_check).
       (SELECT (x.details ->> 'served_spearman')::double precision FROM embedstack.jobs x
         WHERE x.model_set = m.name AND x.generation = m.served_generation AND x.details ? 'served_spearman'
         ORDER BY x.id DESC LIMIT 1) AS served_spearman
  FROM embedstack.model_sets m
  LEFT JOIN embedstack.fits af ON af.id = m.active_fit
  LEFT JOIN embedstack.generations sg ON sg.id = m.served_generation
  LEFT JOIN embedstack.projections sp ON sp.id = sg.projection
  LEFT JOIN LATERAL (SELECT * FROM embedstack.jobs x WHERE x.model_set = m.name ORDER BY x.id DESC LIMIT 1) j ON true
  LEFT JOIN LATERAL (SELECT * FROM embedstack.jobs x WHERE x.model_set = m.name AND x.state = 'failed'
                      ORDER BY x.id DESC LIMIT 1) e ON true;
GRANT SELECT ON embedstack.status TO PUBLIC;
-- security_invoker: the catalog's row security applies to the role querying the view (a view
-- otherwise reads its tables as the view's owner, who sees every row).
COMMENT ON VIEW embedstack.status IS
  'One row per visible model set: its served view, active fit and generation, what rollback would serve, the '
  'latest job (interrupted when its session is gone) with progress, the latest error, the hold of a rollback, '
  'how many generations rollback can reach, and the learned projection it serves (dims, variance kept, served '
  'Spearman).';
