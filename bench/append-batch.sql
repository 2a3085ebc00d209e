-- Floor for 100-event batch appends (workload 2): the compare-and-set
-- UPDATE and one INSERT of the :batch events sent as jsonb arrays (parsed
-- by the server on every call, as evstore's are), in one transaction,
-- pipelined. Streams as in append-cas.sql, created at version 0.
\set k :n % :nstreams
\set sid (:client_id + 1) * 1000 + :k
\set ev (:n / :nstreams) * :batch
\startpipeline
BEGIN;
UPDATE streams SET version = version + :batch, last_key = pg_current_xact_id() WHERE stream_id = :sid AND version = :ev AND last_key <= pg_current_xact_id();
INSERT INTO events (stream_id, version, event_id, type, data, metadata) SELECT :sid, :ev + b.o, gen_random_uuid(), 'Deposited', b.d, b.m FROM unnest(:darr::jsonb[], :marr::jsonb[]) WITH ORDINALITY AS b(d, m, o);
COMMIT;
\endpipeline
\set n :n + 1
