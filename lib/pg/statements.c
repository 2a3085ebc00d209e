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

char *evs__pg_prepare_sql(const char *schema)
{
	char *q = quote_ident(schema), *sql;

	if (q == NULL)
		return NULL;
	sql = format(
		"PREPARE " PG_APPEND "(text, int8, uuid[], text[], jsonb[], "
		"jsonb[]) AS SELECT status, version FROM "
		"%s.append_events($1, $2, $3, $4, $5, $6);"
		/* An append at an exact version in one statement: the
		 * UPDATE takes the stream's row lock and matches only at
		 * that version (a writer that waited on the lock re-checks
		 * the committed row and matches nothing). It also matches
		 * only when the stream's order key is not above this
		 * transaction's id, so that the events' default
		 * transaction_id (pg_current_xact_id()) is their order key,
		 * as append_events would set it; otherwise append_events
		 * decides. The INSERT runs once per matched row. */
		"PREPARE " PG_APPEND_CAS "(text, int8, uuid[], text[], "
		"jsonb[], jsonb[]) AS WITH s AS (UPDATE %s.streams SET "
		"version = $2 + cardinality($3), last_key = "
		"pg_current_xact_id() WHERE stream_id = $1 AND "
		"version = $2 AND last_key <= pg_current_xact_id() "
		"RETURNING version), e AS (INSERT INTO %s.events (stream_id, "
		"version, event_id, type, data, metadata) SELECT $1, $2 + b.o, "
		"b.id, b.t, b.d, b.m FROM s, unnest($3, $4, $5, $6) "
		"WITH ORDINALITY AS b(id, t, d, m, o)) SELECT version FROM s;"
		/* Recorded times come as ISO 8601 text in UTC
		 * ("2024-05-01 12:34:56.123456+00"): exact, whatever the
		 * session's DateStyle or TimeZone. */
		"PREPARE " PG_IMPORT "(text, int8, uuid[], text[], jsonb[], "
		"jsonb[], timestamptz[]) AS SELECT status, version FROM "
		"%s.import_events($1, $2, $3, $4, $5, $6, $7);"
		/* recorded_at as microseconds since the epoch: exact, and
		 * no date parsing on our side. */
		"PREPARE " PG_READ "(text, int8, int8, int8) AS SELECT "
		"version, global_position, event_id, type, data, metadata, "
		"(extract(epoch FROM recorded_at) * 1000000)::int8, "
		"transaction_id, stream_id "
		"FROM %s.events WHERE stream_id = $1 AND version > $2 "
		"AND version <= $3 ORDER BY version LIMIT $4;"
		/* Only rows below the oldest running transaction, in
		 * order-key order: a reader resuming after its checkpoint
		 * never skips a transaction that commits late (the key is
		 * never below its writer's id), and a stream's events keep
		 * their version order (a stream's keys never go down). */
		"PREPARE " PG_READ_ALL "(xid8, int8, int8) AS SELECT "
		"version, global_position, event_id, type, data, metadata, "
		"(extract(epoch FROM recorded_at) * 1000000)::int8, "
		"transaction_id, stream_id "
		"FROM %s.events WHERE (transaction_id, global_position) > "
		"($1, $2) AND transaction_id < "
		"pg_snapshot_xmin(pg_current_snapshot()) "
		"ORDER BY transaction_id, global_position LIMIT $3;"
		"PREPARE " PG_HEAD "(text) AS SELECT version FROM %s.streams "
		"WHERE stream_id = $1;"
		"PREPARE " PG_FIND_IDS "(text, uuid[]) AS SELECT event_id, "
		"version FROM %s.events WHERE stream_id = $1 AND "
		"event_id = ANY ($2) ORDER BY version LIMIT 1;",
		q, q, q, q, q, q, q, q);
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
	"AND has_column_privilege(e, 'stream_id', 'INSERT') "
	"AND has_column_privilege(e, 'version', 'INSERT') "
	"AND has_column_privilege(e, 'event_id', 'INSERT') "
	"AND has_column_privilege(e, 'type', 'INSERT') "
	"AND has_column_privilege(e, 'data', 'INSERT') "
	"AND has_column_privilege(e, 'metadata', 'INSERT') "
	"FROM (SELECT format('%I.streams', $1::text) AS s, "
	"format('%I.events', $1::text) AS e) AS t";
