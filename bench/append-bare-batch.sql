-- Bare floor for 100-event batch appends (workload 2): append-batch.sql's
-- statements on the bare tables of append-bare.sql.
\set k :n % :nstreams
\set sid (:client_id + 1) * 1000 + :k
\set ev (:n / :nstreams) * :batch
\startpipeline
BEGIN;
UPDATE streams SET version = version + :batch WHERE stream_id = :sid AND version = :ev;
INSERT INTO events (stream_id, version, event_id, type, data, metadata) SELECT :sid, :ev + b.o, gen_random_uuid(), 'Deposited', b.d, b.m FROM unnest(:darr::jsonb[], :marr::jsonb[]) WITH ORDINALITY AS b(d, m, o);
COMMIT;
\endpipeline
\set n :n + 1
