/* Every statement the PostgreSQL backend sends, in one place. Each is
 * prepared once per connection, schema-qualified; the schema's own
 * functions (sql/) hold the rest. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_int.h"

/* A printf into a fresh buffer (yours: free()), NULL when out of memory. */
static char *format(const char *fmt, ...)
	__attribute__((format(printf, 1, 2)));

static char *format(const char *fmt, ...)
{
	va_list ap;
	char *out;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || (out = malloc((size_t)n + 1)) == NULL)
		return NULL;
	va_start(ap, fmt);
	vsnprintf(out, (size_t)n + 1, fmt, ap);
	va_end(ap);
	return out;
}

/* "name" with embedded quotes doubled (yours: free()). */
static char *quote_ident(const char *name)
{
	size_t n = strlen(name), i, j = 0;
	char *q = malloc(2 * n + 3);

	if (q == NULL)
		return NULL;
	q[j++] = '"';
	for (i = 0; i < n; i++) {
		if (name[i] == '"')
			q[j++] = '"';
		q[j++] = name[i];
	}
	q[j++] = '"';
	q[j] = '\0';
	return q;
}

char *evs__pg_session_sql(unsigned int statement_timeout_ms,
                          unsigned int lock_timeout_ms)
{
	char stmt[64] = "", lock[64] = "";

	if (statement_timeout_ms > 0)
		snprintf(stmt, sizeof(stmt), "SET statement_timeout = %u;",
		         statement_timeout_ms);
	if (lock_timeout_ms > 0)
		snprintf(lock, sizeof(lock), "SET lock_timeout = %u;",
		         lock_timeout_ms);
	/* What the SQL below and in sql/ relies on, set on the session so
	 * that it wins over the role's and the database's defaults and
	 * PGOPTIONS:
	 * - UTF8: ids, types and JSON are UTF-8; any other client encoding
	 *   makes the server convert (and mangle) them;
	 * - READ COMMITTED: a writer that waited for a stream's row lock
	 *   sees the winner's version (a conflict with the true version);
	 *   under REPEATABLE READ or SERIALIZABLE it gets 40001 instead;
	 * - array_nulls: the metadata array says NULL for "none";
	 * - search_path: every name below is qualified; nothing a role or
	 *   database put on the path can stand in for a built-in;
	 * - generic plans: every statement has one right plan (an index in
	 *   key order), and planning per call with a batch's arrays as
	 *   constants ran 100-event appends at half speed
	 *   (bench/RESULTS.md). */
	return format("SET client_encoding = 'UTF8';"
	              "SET default_transaction_isolation = 'read committed';"
	              "SET array_nulls = on;"
	              "SET search_path = pg_catalog, pg_temp;"
	              "SET plan_cache_mode = force_generic_plan;"
	              "%s%s",
	              stmt, lock);
}

/* The columns every read returns, as parse_row (read.c) takes them.
 * recorded_at as microseconds since the epoch: exact, and no date
 * parsing on our side. */
#define ROW_COLUMNS                                                        \
	"version, global_position, event_id, type, data, metadata, "      \
	"(extract(epoch FROM recorded_at) * 1000000)::int8, "              \
	"transaction_id, stream_id "

/* Only rows below the oldest running transaction: a reader resuming
 * after its checkpoint never skips a transaction that commits late (an
 * order key is never below its writer's id), and a stream's events keep
 * their version order (a stream's keys never go down). */
#define FENCE "transaction_id < pg_snapshot_xmin(pg_current_snapshot())"

/* What a read of stream $1 needs of its row, in one probe of the streams
 * key per page (OFFSET 0 keeps the planner from copying the probe into
 * every place d's columns are used): d.deleted, its version when it is
 * deleted, else NULL; d.start, the first version its reads return
 * (sql/0007: stream_start(), called only for a stream that is truncated
 * or has a retention; else 0). Its two %s are the schema. */
#define STREAM_D_AS(alias)                                                 \
	"(SELECT CASE WHEN s.deleted_at IS NOT NULL THEN s.version END AS " \
	"deleted, CASE WHEN s.truncate_before > 0 OR s.max_count IS NOT "   \
	"NULL OR s.max_age IS NOT NULL THEN %s.stream_start($1) ELSE 0 END " \
	"AS start FROM (SELECT 1) AS one LEFT JOIN %s.streams s ON "         \
	"s.stream_id = $1 OFFSET 0) AS " alias
#define STREAM_D STREAM_D_AS("d")

/* A consumer-group member's share: $k members, this is $m (1: all). The
 * sign bit is masked: abs() overflows on INT64_MIN. */
#define GROUP(k, m)                                                        \
	"(" k " = 1 OR ((hashtextextended(stream_id, 0) & "                \
	"9223372036854775807) %% " k ") = " m ")"

char *evs__pg_prepare_sql(const char *schema, const char *channel)
{
	char *q = quote_ident(schema), *sql, *many, *snaps, *all,
	     notify[128] = "", notify_if[160] = "";

	if (q == NULL)
		return NULL;
	/* With notifications on, every append that stored events tells the
	 * schema's channel, in its own transaction (so at its commit). */
	if (channel != NULL) {
		snprintf(notify, sizeof(notify), ", pg_notify('%s', '')",
		         channel);
		snprintf(notify_if, sizeof(notify_if),
		         ", CASE WHEN status = 0 THEN pg_notify('%s', '') END",
		         channel);
	}
	sql = format(
		"PREPARE " PG_APPEND "(text, int8, uuid[], text[], jsonb[], "
		"jsonb[]) AS SELECT status, version%s FROM "
		"%s.append_events($1, $2, $3, $4, $5, $6);"
		/* An append at an exact version in one statement: the
		 * UPDATE takes the stream's row lock and matches only at
		 * that version (a writer that waited on the lock re-checks
		 * the committed row and matches nothing). It also matches
		 * only when the stream's order key is not above this
		 * transaction's id, so that the events' default
		 * transaction_id (pg_current_xact_id()) is their order key,
		 * as append_events would set it, and only a stream that is
		 * not deleted (sql/0007); otherwise append_events decides.
		 * The INSERT runs once per matched row. */
		"PREPARE " PG_APPEND_CAS "(text, int8, uuid[], text[], "
		"jsonb[], jsonb[]) AS WITH s AS (UPDATE %s.streams SET "
		"version = $2 + cardinality($3), last_key = "
		"pg_current_xact_id() WHERE stream_id = $1 AND "
		"version = $2 AND last_key <= pg_current_xact_id() AND "
		"deleted_at IS NULL RETURNING version), e AS (INSERT INTO %s.events (stream_id, "
		"version, event_id, type, data, metadata) SELECT $1, $2 + b.o, "
		"b.id, b.t, b.d, b.m FROM s, unnest($3, $4, $5, $6) "
		"WITH ORDINALITY AS b(id, t, d, m, o)) SELECT version%s FROM s;"
		/* Recorded times come as ISO 8601 text in UTC
		 * ("2024-05-01 12:34:56.123456+00"): exact, whatever the
		 * session's DateStyle or TimeZone. */
		"PREPARE " PG_IMPORT "(text, int8, uuid[], text[], jsonb[], "
		"jsonb[], timestamptz[]) AS SELECT status, version%s FROM "
		"%s.import_events($1, $2, $3, $4, $5, $6, $7);"
		/* A page of one stream: its events, or, when it is deleted
		 * (sql/0007), one row with its version in the last column
		 * and no event (an empty page: one row of NULLs). */
		"PREPARE " PG_READ "(text, int8, int8, int8) AS SELECT "
		ROW_COLUMNS ", d.deleted FROM " STREAM_D " LEFT JOIN "
		"LATERAL (SELECT * FROM %s.events WHERE stream_id = $1 AND "
		"version > greatest($2, d.start - 1) AND version <= $3 AND "
		"d.deleted IS NULL ORDER BY version LIMIT $4) AS e ON true;"
		"PREPARE " PG_READ_ALL "(xid8, int8, int8) AS SELECT "
		ROW_COLUMNS "FROM %s.events WHERE (transaction_id, "
		"global_position) > ($1, $2) AND " FENCE " "
		"ORDER BY transaction_id, global_position LIMIT $3;"
		/* The feeds of subscriptions. Each filtered one orders by its
		 * filter first, then the feed's order: so a generic plan
		 * walks that filter's index (sql/0003) and stops at LIMIT.
		 * The filter is written "<= $1" beside the row comparison,
		 * which says "> $1 or = $1 and after the checkpoint": the
		 * two select that filter's rows after the checkpoint, and
		 * the scan starts at the checkpoint. (With "= $1" it started
		 * at the filter's first entry and walked to the checkpoint:
		 * every page of a catch-up cost more than the one before.)
		 * Several types: the feed's own index, filtered. */
		"PREPARE " PG_FEED_ALL "(xid8, int8, int8, int4, int4, "
		"text[]) AS SELECT " ROW_COLUMNS "FROM %s.events WHERE "
		"(transaction_id, global_position) > ($1, $2) AND " FENCE
		" AND ($6::text[] IS NULL OR type = ANY ($6)) AND "
		GROUP("$4", "$5") " ORDER BY transaction_id, global_position "
		"LIMIT $3;"
		"PREPARE " PG_FEED_CATEGORY "(text, xid8, int8, int8, int4, "
		"int4, text[]) AS SELECT " ROW_COLUMNS "FROM %s.events WHERE "
		"split_part(stream_id, '-', 1) <= $1 AND "
		"(split_part(stream_id, '-', 1), transaction_id, "
		"global_position) > ($1, $2, $3) AND " FENCE " AND "
		"($7::text[] IS NULL OR type = ANY ($7)) AND "
		GROUP("$5", "$6") " ORDER BY split_part(stream_id, '-', 1), "
		"transaction_id, global_position LIMIT $4;"
		"PREPARE " PG_FEED_TYPE "(text, xid8, int8, int8, int4, int4) "
		"AS SELECT " ROW_COLUMNS "FROM %s.events WHERE type <= $1 AND "
		"(type, transaction_id, global_position) > ($1, $2, $3) AND "
		FENCE " AND " GROUP("$5", "$6") " ORDER BY type, "
		"transaction_id, global_position LIMIT $4;"
		"PREPARE " PG_FENCE " AS SELECT "
		"pg_snapshot_xmin(pg_current_snapshot());"
		"PREPARE " PG_SUB_CLAIM "(text, int4, int4, jsonb, text, int4) "
		"AS SELECT status, lease_epoch, commit_xid, position, "
		"last_event_id, lease_left_ms FROM "
		"%s.subscription_claim($1, $2, $3, $4, $5, $6);"
		"PREPARE " PG_SUB_STORE "(text, int4, int8, xid8, int8, uuid) "
		"AS SELECT %s.subscription_store($1, $2, $3, $4, $5, $6);"
		"PREPARE " PG_SUB_RELEASE "(text, int4, int8) AS SELECT "
		"%s.subscription_release($1, $2, $3);",
		notify_if, q, q, q, notify, notify_if, q, q, q, q, q, q, q, q,
		q, q, q);
	/* Several appends in one call (sql/0004); the server collapses a
	 * transaction's identical notifications into one. */
	many = format(
		"PREPARE " PG_APPEND_MANY "(text[], int8[], int4[], uuid[], "
		"text[], jsonb[], jsonb[], bool, int4) AS SELECT item, status, "
		"version, event_id%s FROM %s.append_many($1, $2, $3, $4, $5, "
		"$6, $7, $8, $9);"
		"PREPARE " PG_LOCK_WAIT "(text) AS SELECT "
		"set_config('lock_timeout', $1, true);"
		"PREPARE " PG_IMPORT_MANY "(text[], int8[], int4[], uuid[], "
		"text[], jsonb[], jsonb[], timestamptz[], bool) AS SELECT "
		"item, status, version, event_id%s FROM %s.import_many($1, "
		"$2, $3, $4, $5, $6, $7, $8, $9);"
		/* A page of one stream backwards: the primary key, walked
		 * down from below $2; a deleted stream as PG_READ. */
		"PREPARE " PG_READ_BACK "(text, int8, int8) AS SELECT "
		ROW_COLUMNS ", d.deleted FROM " STREAM_D " LEFT JOIN "
		"LATERAL (SELECT * FROM %s.events WHERE stream_id = $1 AND "
		"version < $2 AND version >= d.start AND d.deleted IS NULL "
		"ORDER BY version DESC LIMIT $3) AS e ON true;"
		"PREPARE " PG_DELETE "(text, int8, bool, bool) AS SELECT "
		"status, version FROM %s.delete_stream($1, $2, $3, $4);"
		"PREPARE " PG_UNDELETE "(text, int8) AS SELECT status, "
		"version FROM %s.undelete_stream($1, $2);"
		"PREPARE " PG_HEAD "(text) AS SELECT version, deleted_at IS "
		"NOT NULL FROM %s.streams WHERE stream_id = $1;"
		"PREPARE " PG_FIND_IDS "(text, uuid[]) AS SELECT event_id, "
		"version FROM %s.events WHERE stream_id = $1 AND "
		"event_id = ANY ($2) ORDER BY version LIMIT 1;",
		notify_if, q, notify_if, q, q, q, q, q, q, q, q);
	/* Snapshots (sql/0007). A load is one statement: the snapshot's
	 * version and data, and a page of the events after it, as PG_READ
	 * gives them (the data in the first row only). */
	snaps = format(
		"PREPARE " PG_SNAP_SAVE "(text, text, int4, int8, jsonb) AS "
		"SELECT %s.store_snapshot($1, $2, $3, $4, $5);"
		"PREPARE " PG_SNAP_LOAD "(text, text, int4, int8) AS SELECT "
		ROW_COLUMNS ", d.deleted, d.snap_version, CASE WHEN "
		"row_number() OVER () = 1 THEN d.snap_data END FROM (SELECT "
		"d0.deleted, d0.start, sn.version AS snap_version, sn.data AS "
		"snap_data FROM " STREAM_D_AS("d0") " LEFT JOIN %s.snapshots sn ON "
		"sn.stream_id = $1 AND sn.kind = $2 AND sn.format = $3 OFFSET "
		"0) AS d LEFT JOIN LATERAL (SELECT * FROM %s.events WHERE "
		"stream_id = $1 AND version > greatest(d.snap_version, "
		"d.start - 1) AND d.deleted IS NULL ORDER BY version LIMIT $4) "
		"AS e ON true;"
		"PREPARE " PG_TRUNCATE "(text, int8, int8, bool) AS SELECT "
		"status, version FROM %s.truncate_stream($1, $2, $3, $4);"
		"PREPARE " PG_RETENTION "(text, int8, int8, interval, bool) AS "
		"SELECT status, version FROM %s.set_retention($1, $2, $3, $4, "
		"$5);"
		"PREPARE " PG_SCAVENGE "(int4) AS SELECT %s.scavenge($1);"
		"PREPARE " PG_SNAP_LIST "(text) AS SELECT kind, format, "
		"version, (extract(epoch FROM taken_at) * 1000000)::int8, "
		"octet_length(data::text) FROM %s.snapshots WHERE stream_id "
		"= $1 ORDER BY kind, format;",
		q, q, q, q, q, q, q, q, q);
	free(q);
	all = sql && many && snaps ? format("%s%s%s", sql, many, snaps)
	                           : NULL;
	free(sql);
	free(many);
	free(snaps);
	return all;
}

/* What holds the feed back (evs_store_feed_info). $1: none. */
char *evs__pg_feed_info_sql(const char *schema)
{
	char *q = quote_ident(schema), *sql;

	if (q == NULL)
		return NULL;
	sql = format(
		"WITH f AS (SELECT pg_snapshot_xmin(pg_current_snapshot()) "
		"AS fence), h AS (SELECT transaction_id, global_position FROM "
		"%s.events ORDER BY transaction_id DESC, global_position DESC "
		"LIMIT 1), a AS (SELECT pid, application_name, state, datname, "
		"(extract(epoch FROM xact_start) * 1000000)::int8 AS started "
		"FROM pg_stat_activity, f WHERE backend_xid = "
		"f.fence::text::xid LIMIT 1), p AS (SELECT gid FROM "
		"pg_prepared_xacts, f WHERE transaction = f.fence::text::xid "
		"LIMIT 1) SELECT f.fence, h.transaction_id, h.global_position, "
		"a.pid, a.application_name, a.state, a.datname, a.started, "
		"p.gid FROM f LEFT JOIN h ON true LEFT JOIN a ON true "
		"LEFT JOIN p ON true", q);
	free(q);
	return sql;
}

/* The stored subscriptions with their lag (evs_store_subscriptions),
 * counted up to LAG_CAP events each: a listing stays cheap however far
 * behind a forgotten subscription is. */
#define LAG_CAP "1000000"
char *evs__pg_sub_list_sql(const char *schema)
{
	char *q = quote_ident(schema), *sql;

	if (q == NULL)
		return NULL;
	sql = format(
		"SELECT s.name, s.member, s.group_size, s.filter::text, "
		"coalesce(s.commit_xid, '0'), coalesce(s.position, 0), "
		/* Leases as of the statement's start (now()): the lag
		 * counts may take a while. */
		"CASE WHEN s.lease_until > now() THEN s.owner END, "
		"CASE WHEN s.lease_until > now() THEN "
		"(extract(epoch FROM s.lease_until) * 1000000)::int8 END, "
		"s.lease_epoch, (extract(epoch FROM s.updated_at) * "
		"1000000)::int8, (SELECT count(*) FROM (SELECT 1 FROM "
		"%s.events e WHERE "
		"(e.transaction_id, e.global_position) > "
		"(coalesce(s.commit_xid, '0'), coalesce(s.position, 0)) AND "
		"e.transaction_id < pg_snapshot_xmin(pg_current_snapshot()) "
		"AND (s.filter->>'category' IS NULL OR "
		"split_part(e.stream_id, '-', 1) = s.filter->>'category') AND "
		"(jsonb_typeof(s.filter->'types') IS DISTINCT FROM 'array' OR "
		"e.type IN (SELECT jsonb_array_elements_text(s.filter->"
		"'types'))) AND (s.group_size = 1 OR "
		"((hashtextextended(e.stream_id, 0) & 9223372036854775807) %% "
		"s.group_size) = s.member) LIMIT " LAG_CAP ") AS l) FROM "
		"%s.subscriptions s WHERE $1::text IS NULL OR s.name = $1 "
		"ORDER BY s.name, s.member", q, q);
	free(q);
	return sql;
}

char *evs__pg_schema_version_sql(const char *schema)
{
	char *q = quote_ident(schema), *sql;

	if (q == NULL)
		return NULL;
	sql = format("SELECT max(version) FROM %s.schema_version", q);
	free(q);
	return sql;
}

/* Whether this role may append with PG_APPEND_CAS: UPDATE of the
 * stream's version and order key, INSERT into the events columns it
 * names (README, "Least privilege"). Without them every append calls
 * append_events(). $1: the schema. */
const char evs__pg_privilege_probe_sql[] =
	"SELECT has_column_privilege(s, 'stream_id', 'SELECT') "
	"AND has_column_privilege(s, 'version', 'SELECT') "
	"AND has_column_privilege(s, 'last_key', 'SELECT') "
	"AND has_column_privilege(s, 'version', 'UPDATE') "
	"AND has_column_privilege(s, 'last_key', 'UPDATE') "
	"AND has_column_privilege(s, 'deleted_at', 'SELECT') "
	"AND has_column_privilege(e, 'stream_id', 'INSERT') "
	"AND has_column_privilege(e, 'version', 'INSERT') "
	"AND has_column_privilege(e, 'event_id', 'INSERT') "
	"AND has_column_privilege(e, 'type', 'INSERT') "
	"AND has_column_privilege(e, 'data', 'INSERT') "
	"AND has_column_privilege(e, 'metadata', 'INSERT') "
	"FROM (SELECT format('%I.streams', $1::text) AS s, "
	"format('%I.events', $1::text) AS e) AS t";
