-- Bare floor for single-event appends (workload 1): the same pipelined
-- compare-and-set UPDATE and INSERT as append-cas.sql, on tables that
-- hold nothing but their primary keys (run.sh makes them in a schema of
-- their own): no CHECK constraints, no event-id key, no feed indexes, no
-- order key. What an append costs before evstore's guarantees.
\set k :n % :nstreams
\set sid (:client_id + 1) * 1000 + :k
\set ev :n / :nstreams
\set nv :ev + 1
\startpipeline
BEGIN;
UPDATE streams SET version = version + 1 WHERE stream_id = :sid AND version = :ev;
INSERT INTO events (stream_id, version, event_id, type, data, metadata) VALUES (:sid, :nv, gen_random_uuid(), 'Deposited', :data, :meta);
COMMIT;
\endpipeline
\set n :n + 1
