-- The model-set catalog. Written only by the extension's functions; readable by everyone.
-- Both tables are extension configuration tables: pg_dump dumps their rows.
-- There are deliberately no foreign keys between the two dumped tables: pg_dump orders their
-- data by foreign keys only in a serial restore, and a parallel pg_restore -j loads both at once
-- and fails on one (the catalog writers keep fits.model_set pointing at an existing model set and
-- delete a model set's fits with it).

CREATE TABLE embedstack.model_sets (
    name                text PRIMARY KEY CHECK (name <> '' AND octet_length(name) <= 63),
    source              regclass NOT NULL,
    key_column          name NOT NULL,
    model_columns       name[] NOT NULL CHECK (cardinality(model_columns) >= 1),
    model_dims          integer[] NOT NULL CHECK (cardinality(model_dims) = cardinality(model_columns)),
    model_types         regtype[] NOT NULL CHECK (cardinality(model_types) = cardinality(model_columns)),
    mode                text NOT NULL CHECK (mode IN ('symmetric', 'query_weighted')),
    threshold           double precision NOT NULL CHECK (threshold >= 0 AND threshold < 1),
    combined_column     name NOT NULL,
    storage             text NOT NULL CHECK (storage IN ('auto', 'vector', 'halfvec')),
    active_fit          bigint,
    served_multipliers  double precision[],
    served_storage      text CHECK (served_storage IN ('vector', 'halfvec')),
    served_index        name,
    created_at          timestamptz NOT NULL DEFAULT now(),
    view_name           name NOT NULL,
    served_generation   bigint,
    previous_fit        bigint,
    previous_generation bigint,
    legacy_column       name,
    -- A rollback holds the model set (0.4.0): refit records its fits but keeps the served one,
    -- and a plain materialize refuses, until embedstack.release(name).
    held_since          timestamptz,
    held_reason         text,
    -- create_model_set(dims => N) (0.5.0): a fit whose served vector is wider than N is served
    -- projected onto N learned dimensions (sql/projection.sql); NULL: never projected.
    projection_dims     integer CHECK (projection_dims BETWEEN 1 AND 4000)
);

-- The served vectors (0.3.0): each materialisation writes a generation, a table of the
-- extension's making (key, combined vector) in the source's schema, owned by the source's owner,
-- with its HNSW index; the model set's view (model_sets.view_name) selects from the served one.
-- state: building (being written by a job), served (the view reads it), retained (kept for
-- rollback). cursor_key / rows_written: how far the writing got (a resumed job continues
-- there). pending / pending_open: while the generation's index is built, and (since 0.4.0) while
-- it is retained, the freshness triggers record the keys they change in this table instead of
-- writing the generation (CREATE INDEX holds SHARE on it: writing would stall the user's
-- statements for the whole build; a retained one would cost every write an HNSW insert); the job,
-- or the rollback that serves it again, applies them. Dumped: the tables are ordinary user tables.
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
    pending_open boolean NOT NULL DEFAULT false,
    -- The learned projection its vectors are stored with (embedstack.projections.id; 0.5.0),
    -- NULL for unprojected vectors. width is then the projection's dims.
    projection   bigint
);
CREATE INDEX generations_model_set_idx ON embedstack.generations (model_set, id);

CREATE TABLE embedstack.fits (
    id              bigserial PRIMARY KEY,
    model_set       text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now(),
    options         jsonb NOT NULL,
    weights         double precision[] NOT NULL,
    intercept       double precision NOT NULL,
    diagnostics     jsonb NOT NULL,
    state           double precision[] NOT NULL,
    training_source jsonb NOT NULL
);
CREATE INDEX fits_model_set_idx ON embedstack.fits (model_set, id);

-- One row per materialise / refit call: progress committed with every batch, the outcome, and
-- the error of a failed call. Not dumped (runtime history; a restored database has no jobs).
CREATE TABLE embedstack.jobs (
    id           bigserial PRIMARY KEY,
    model_set    text NOT NULL REFERENCES embedstack.model_sets (name) ON DELETE CASCADE,
    kind         text NOT NULL CHECK (kind IN ('materialize', 'refit')),
    params       jsonb NOT NULL,
    fit_id       bigint,
    phase        text NOT NULL CHECK (phase IN ('fit', 'prepare', 'write', 'index', 'wait', 'cutover', 'done')),
    rows_done    bigint NOT NULL DEFAULT 0,
    rows_total   bigint,
    cursor_key   text,
    index_name   name,
    state        text NOT NULL CHECK (state IN ('running', 'succeeded', 'kept', 'failed', 'interrupted')),
    outcome      text,
    details      jsonb NOT NULL DEFAULT '{}',
    error        jsonb,
    pid          integer NOT NULL,
    resumed_from bigint,
    started_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at   timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at  timestamptz,
    generation   bigint
);
CREATE INDEX jobs_model_set_idx ON embedstack.jobs (model_set, id);

SELECT pg_catalog.pg_extension_config_dump('embedstack.model_sets', '');
SELECT pg_catalog.pg_extension_config_dump('embedstack.fits', '');
SELECT pg_catalog.pg_extension_config_dump('embedstack.fits_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('embedstack.generations', '');
SELECT pg_catalog.pg_extension_config_dump('embedstack.generations_id_seq', '');

-- Everyone may use the extension's functions (each checks what it needs: SELECT on the vectors it
-- reads, ownership of the table it changes); CREATE EXTENSION leaves the schema without grants.
GRANT USAGE ON SCHEMA embedstack TO PUBLIC;

-- Read and written by everyone as themselves, row by row under the row-security policies of
-- catalog_access.sql: a role sees the rows of the model sets whose source it may read, and
-- writes only those of the model sets whose source it owns (the writers of catalog_writers.sql
-- are the way the extension writes them). No role switch anywhere: since 0.3.1 nothing runs as
-- the catalog's owner on a caller's behalf. SELECT on the sequences lets a non-superuser pg_dump
-- the configuration tables; USAGE lets the writers draw ids.
REVOKE ALL ON embedstack.model_sets, embedstack.fits, embedstack.jobs, embedstack.generations FROM PUBLIC;
-- (INSERT and UPDATE of every column but the ids: an id a role chose itself could be one the
-- sequence hands out next, and every other role's insert would fail on it.)
GRANT SELECT, INSERT, UPDATE, DELETE ON embedstack.model_sets TO PUBLIC;
GRANT SELECT, DELETE ON embedstack.fits, embedstack.jobs, embedstack.generations TO PUBLIC;
GRANT INSERT (model_set, created_at, options, weights, intercept, diagnostics, state, training_source),
      UPDATE (model_set, created_at, options, weights, intercept, diagnostics, state, training_source)
   ON embedstack.fits TO PUBLIC;
GRANT INSERT (model_set, relation, index_name, fit_id, multipliers, storage, width, state, cursor_key, rows_written,
              created_at, served_at, pending, pending_open, projection),
      UPDATE (model_set, relation, index_name, fit_id, multipliers, storage, width, state, cursor_key, rows_written,
              created_at, served_at, pending, pending_open, projection)
   ON embedstack.generations TO PUBLIC;
GRANT INSERT (model_set, kind, params, fit_id, phase, rows_done, rows_total, cursor_key, index_name, state, outcome,
              details, error, pid, resumed_from, started_at, updated_at, finished_at, generation),
      UPDATE (model_set, kind, params, fit_id, phase, rows_done, rows_total, cursor_key, index_name, state, outcome,
              details, error, pid, resumed_from, started_at, updated_at, finished_at, generation)
   ON embedstack.jobs TO PUBLIC;
GRANT USAGE, SELECT ON SEQUENCE embedstack.fits_id_seq, embedstack.generations_id_seq, embedstack.jobs_id_seq TO PUBLIC;
