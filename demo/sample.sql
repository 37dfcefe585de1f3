-- The built-in sample: 300 entities with three embedding models of different quality, and
-- 2,000 labelled pairs. Fully deterministic (md5-based pseudo-random numbers), so every run
-- and every machine sees the same data.
--
-- Truth: each entity has a latent 8-d factor z. Model k sees z through its own fixed random
-- projection plus model-specific noise (text: low noise, glove: medium, cf: high). A pair's
-- label is 5 + 5·cos(z_a, z_b) plus a little noise, so a good stack weights text > glove > cf.
\set QUIET on
CREATE EXTENSION IF NOT EXISTS embedstack CASCADE;
DROP SCHEMA IF EXISTS demo CASCADE;
CREATE SCHEMA demo;

-- Uniform pseudo-random in [-1, 1) from any text key.
CREATE FUNCTION demo.u(key text) RETURNS float8 LANGUAGE sql IMMUTABLE PARALLEL SAFE AS
$$ SELECT ('x' || substr(md5(key), 1, 8))::bit(32)::int / 2147483648.0 $$;

CREATE TABLE demo.latent AS
SELECT i AS id, array_agg(demo.u('z:' || i || ':' || j) ORDER BY j) AS z
FROM generate_series(1, 300) i, generate_series(1, 8) j GROUP BY i;

-- model name, dimension, noise level
CREATE TEMP TABLE models(name text, dim int, noise float8);
INSERT INTO models VALUES ('text', 48, 0.15), ('glove', 32, 0.45), ('cf', 16, 0.9);

CREATE TEMP TABLE model_values AS
SELECT m.name, l.id,
       (array_agg(
          (SELECT sum(demo.u(m.name || ':p:' || d || ':' || j) * l.z[j]) FROM generate_series(1, 8) j)
          + m.noise * demo.u(m.name || ':e:' || l.id || ':' || d)
        ORDER BY d))::real[] AS v
FROM models m CROSS JOIN demo.latent l CROSS JOIN LATERAL generate_series(1, m.dim) d
GROUP BY m.name, l.id;

CREATE TABLE demo.items (
  id       int PRIMARY KEY,
  label    text NOT NULL,
  m_text   vector(48),
  m_glove  vector(32),
  m_cf     vector(16)
);
INSERT INTO demo.items
SELECT l.id, 'item ' || l.id,
       (SELECT v FROM model_values WHERE name = 'text'  AND id = l.id)::vector(48),
       (SELECT v FROM model_values WHERE name = 'glove' AND id = l.id)::vector(32),
       (SELECT v FROM model_values WHERE name = 'cf'    AND id = l.id)::vector(16)
FROM demo.latent l;

CREATE TABLE demo.pairs (a int NOT NULL, b int NOT NULL, similarity float8 NOT NULL);
INSERT INTO demo.pairs
SELECT a, b, 5 + 5 * embedstack.cosine(la.z, lb.z) + 0.3 * demo.u('y:' || k)
FROM (SELECT k, 1 + abs(('x' || substr(md5('a' || k), 1, 7))::bit(28)::int) % 300 AS a,
                1 + abs(('x' || substr(md5('b' || k), 1, 7))::bit(28)::int) % 300 AS b
      FROM generate_series(1, 2000) k) p
JOIN demo.latent la ON la.id = p.a JOIN demo.latent lb ON lb.id = p.b;
ANALYZE demo.items, demo.pairs;
\set QUIET off
SELECT (SELECT count(*) FROM demo.items) AS items, (SELECT count(*) FROM demo.pairs) AS pairs;
