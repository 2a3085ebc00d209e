-- Floor for loading a 1,000-event stream (workload 4): evstore's own read
-- statement with the parameters of its first page (every version above
-- -1, one row more than the page, so that the end is known), prepared,
-- and no decoding. Client i reads stream load-(i mod :nstreams), made by
-- run.sh. (The bounds are variables, hence parameters, as evstore's are:
-- with constants the planner may pick another plan.) Since migration
-- 0007 the statement also reads, once per page, the stream's row: is it
-- deleted, where do its reads start.
\set k :client_id % :nstreams
\set after -1
\set upto 9223372036854775807
\set lim 1001
SELECT version, global_position, event_id, type, data, metadata, (extract(epoch FROM recorded_at) * 1000000)::int8, transaction_id, stream_id, d.deleted FROM (SELECT CASE WHEN s.deleted_at IS NOT NULL THEN s.version END AS deleted, CASE WHEN s.truncate_before > 0 OR s.max_count IS NOT NULL OR s.max_age IS NOT NULL THEN stream_start('load-' || :k) ELSE 0 END AS start FROM (SELECT 1) AS one LEFT JOIN streams s ON s.stream_id = 'load-' || :k OFFSET 0) AS d LEFT JOIN LATERAL (SELECT * FROM events WHERE stream_id = 'load-' || :k AND version > greatest(:after, d.start - 1) AND version <= :upto AND d.deleted IS NULL ORDER BY version LIMIT :lim) AS e ON true;
