-- Floor for single-event appends (workload 1): a plain one-row INSERT,
-- with no compare-and-set and no stream row. Each client writes its own
-- :nstreams streams, versions counted from 0 (:n is its append count).
\set k :n % :nstreams
\set sid (:client_id + 1) * 1000 + :k
\set v :n / :nstreams
INSERT INTO events (stream_id, version, event_id, type, data, metadata) VALUES (:sid, :v, gen_random_uuid(), 'Deposited', :data, :meta);
\set n :n + 1
