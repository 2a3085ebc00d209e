-- Floor for single-event appends (workload 1): the compare-and-set UPDATE
-- of the stream's row (its version and order key, as evstore's
-- one-statement append sets them) and the INSERT of the event, in one
-- transaction,
-- pipelined (one round trip, like evstore's one call). Each client owns
-- :nstreams streams named (client_id + 1) * 1000 + k, created at version 0
-- by run.sh; :n counts the client's appends (-D n=0), so stream k gets its
-- (n / nstreams)-th append at expected version n / nstreams.
\set k :n % :nstreams
\set sid (:client_id + 1) * 1000 + :k
\set ev :n / :nstreams
\set nv :ev + 1
\startpipeline
BEGIN;
UPDATE streams SET version = version + 1, last_key = pg_current_xact_id() WHERE stream_id = :sid AND version = :ev AND last_key <= pg_current_xact_id();
INSERT INTO events (stream_id, version, event_id, type, data, metadata) VALUES (:sid, :nv, gen_random_uuid(), 'Deposited', :data, :meta);
COMMIT;
\endpipeline
\set n :n + 1
