-- Floor for loading a 1,000-event stream (workload 4): evstore's own read
-- statement (first page: all rows above version -1, one more than the
-- page, so that the end is known), no decoding. Client i reads stream
-- load-(i mod :nstreams), created by run.sh.
\set k :client_id % :nstreams
SELECT version, global_position, event_id, type, data, metadata, (extract(epoch FROM recorded_at) * 1000000)::int8 FROM events WHERE stream_id = 'load-' || :k AND version > -1 AND version <= 9223372036854775807 ORDER BY version LIMIT 1001;
