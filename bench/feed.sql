-- Floor for catching up through a subscription (workload 7): the SQL of
-- the library's PG_FEED_CATEGORY statement (lib/pg/statements.c), one page
-- of :lim rows per transaction, for one category, no group (k = 1). \aset
-- keeps the last row's columns, so the next transaction reads after that
-- row's (transaction_id, global_position), as a subscription moves its
-- position. Start with -D transaction_id=0 -D global_position=0. The types
-- filter's NULL is a constant here (pgbench cannot send a NULL parameter),
-- which the server folds away: the floor skips evaluating it per row.
--
-- The check (client-side, no round trip): the pages tile run.sh's feed
-- data, streams feed-0..feed-(:streams - 1) at global positions 1..n in
-- feed order, so page p must end at position p * :lim; anything else
-- aborts the client (division by zero), which fails the run.
\set page :page + 1
SELECT version, global_position, event_id, type, data, metadata, (extract(epoch FROM recorded_at) * 1000000)::int8, transaction_id, stream_id FROM events WHERE split_part(stream_id, '-', 1) <= :cat AND (split_part(stream_id, '-', 1), transaction_id, global_position) > (:cat, :transaction_id, :global_position) AND transaction_id < pg_snapshot_xmin(pg_current_snapshot()) AND (NULL::text[] IS NULL OR type = ANY (NULL::text[])) AND (:k = 1 OR ((hashtextextended(stream_id, 0) & 9223372036854775807) % :k::int4) = :m::int4) ORDER BY split_part(stream_id, '-', 1), transaction_id, global_position LIMIT :lim
\aset
\if :global_position != :page * :lim
\set page 1 / 0
\endif
