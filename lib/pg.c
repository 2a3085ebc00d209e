/* The PostgreSQL backend: a pool of libpq connections, each with the
 * backend's statements prepared once (generic plans). An append at an
 * exact version is one compare-and-set statement when the role may (see
 * pg_append), else, and whenever that statement matches nothing, a call of
 * the schema's append_events function. Reads page through a stream by
 * version.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event_int.h"
#include "pg_int.h"

#define DEFAULT_SCHEMA "evstore"
#define DEFAULT_POOL_SIZE 4
#define DEFAULT_POOL_TIMEOUT_MS 5000
#define MAX_POOL_SIZE 1024

/* Rows fetched per page of a read, and the bytes a page aims at: a page
 * of large events holds fewer of them. */
#define PAGE_ROWS 1000
#define PAGE_MIN_ROWS 16
#define PAGE_TARGET_BYTES (8u << 20)

/* The migrations, in order; the last is EVS_PG_SCHEMA_VERSION. */
static const char *const migrations[] = {
	"0001_create_schema.sql",
};

typedef struct pg_slot {
	PGconn *conn; /* NULL: not connected */
	int busy;
	int64_t released_ms; /* coarse monotonic time it was last given back */
} pg_slot;

/* A connection given back this recently is not checked before reuse. */
#define RECHECK_AFTER_MS 100

typedef struct pg_backend {
	evs_backend base;
	char *conninfo;
	char *schema;
	char *setup_sql; /* SET ...; PREPARE ...: run on every new connection */
	unsigned int pool_timeout_ms;
	size_t pool_size;
	pthread_mutex_t lock;
	pthread_cond_t freed;
	pg_slot *slots;
	/* Nonzero: the role may run evs_append_cas (see pg_append). */
	atomic_int one_statement;
} pg_backend;

/* ---- small string buffers ---------------------------------------------- */

typedef struct {
	char *p;
	size_t len, cap;
} sbuf;

static int sb_reserve(sbuf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->len + more + 1 <= b->cap)
		return 0;
	for (cap = b->cap ? b->cap : 256; cap < b->len + more + 1; cap *= 2)
		;
	p = realloc(b->p, cap);
	if (p == NULL)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int sb_add(sbuf *b, const char *s, size_t n)
{
	if (sb_reserve(b, n) < 0)
		return -1;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

static int sb_printf(sbuf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static int sb_printf(sbuf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || sb_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

/* Appends one quoted element of a text-format array literal: inside
 * double quotes only '"' and '\' need a backslash. */
static int sb_add_array_elem(sbuf *b, const char *s, size_t n)
{
	size_t i;
	char *q;

	if (sb_reserve(b, 2 * n + 3) < 0)
		return -1;
	q = b->p + b->len;
	*q++ = '"';
	for (i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			*q++ = '\\';
		*q++ = s[i];
	}
	*q++ = '"';
	*q = '\0';
	b->len = (size_t)(q - b->p);
	return 0;
}

/* ---- connections ------------------------------------------------------- */

static char *quote_ident(const char *name)
{
	sbuf b = {NULL, 0, 0};
	const char *p;

	if (sb_add(&b, "\"", 1) < 0)
		return NULL;
	for (p = name; *p; p++)
		if ((*p == '"' && sb_add(&b, "\"", 1) < 0) ||
		    sb_add(&b, p, 1) < 0) {
			free(b.p);
			return NULL;
		}
	if (sb_add(&b, "\"", 1) < 0) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

/* The statements every connection prepares, schema-qualified. The read
 * returns recorded_at as microseconds since the epoch: exact, and no
 * date parsing on our side. */
static char *build_setup_sql(const char *schema, unsigned int stmt_ms,
                             unsigned int lock_ms)
{
	char *q = quote_ident(schema);
	sbuf b = {NULL, 0, 0};
	int bad = q == NULL;

	if (!bad && stmt_ms > 0)
		bad = sb_printf(&b, "SET statement_timeout = %u;", stmt_ms);
	if (!bad && lock_ms > 0)
		bad = sb_printf(&b, "SET lock_timeout = %u;", lock_ms);
	/* Every statement below has one right plan whatever its parameters
	 * (a primary-key or index range in key order). Planning a custom
	 * plan per call costs more than it could save: with the arrays of a
	 * 100-event batch as constants, 100-event appends ran at half speed
	 * (bench/RESULTS.md). The setting is per connection: our own. */
	if (!bad)
		bad = sb_printf(&b, "SET plan_cache_mode = force_generic_plan;");
	if (!bad)
		bad = sb_printf(&b,
			"PREPARE evs_append(text, int8, uuid[], text[], jsonb[], "
			"jsonb[]) AS SELECT status, version FROM "
			"%s.append_events($1, $2, $3, $4, $5, $6);"
			/* An append at an exact version in one statement: the
			 * UPDATE takes the stream's row lock and matches only
			 * at that version (a writer that waited on the lock
			 * re-checks the committed version and matches
			 * nothing); the INSERT runs once per matched row. */
			"PREPARE evs_append_cas(text, int8, uuid[], text[], jsonb[], "
			"jsonb[]) AS WITH s AS (UPDATE %s.streams SET version = "
			"$2 + cardinality($3) WHERE stream_id = $1 AND version = $2 "
			"RETURNING version), e AS (INSERT INTO %s.events (stream_id, "
			"version, event_id, type, data, metadata) SELECT $1, $2 + b.o, "
			"b.id, b.t, b.d, b.m FROM s, unnest($3, $4, $5, $6) WITH "
			"ORDINALITY AS b(id, t, d, m, o)) SELECT version FROM s;"
			"PREPARE evs_read(text, int8, int8, int8) AS SELECT "
			"version, global_position, event_id, type, data, metadata, "
			"(extract(epoch FROM recorded_at) * 1000000)::int8, "
			"transaction_id, stream_id "
			"FROM %s.events WHERE stream_id = $1 AND version > $2 "
			"AND version <= $3 ORDER BY version LIMIT $4;"
			/* Only rows of ended transactions, in commit-id order:
			 * a reader resuming after its checkpoint never skips a
			 * transaction that commits late. */
			"PREPARE evs_read_all(xid8, int8, int8) AS SELECT "
			"version, global_position, event_id, type, data, metadata, "
			"(extract(epoch FROM recorded_at) * 1000000)::int8, "
			"transaction_id, stream_id "
			"FROM %s.events WHERE (transaction_id, global_position) > "
			"($1, $2) AND transaction_id < "
			"pg_snapshot_xmin(pg_current_snapshot()) "
			"ORDER BY transaction_id, global_position LIMIT $3;"
			"PREPARE evs_head(text) AS SELECT version FROM %s.streams "
			"WHERE stream_id = $1;"
			"PREPARE evs_find_ids(text, uuid[]) AS SELECT event_id, "
			"version FROM %s.events WHERE stream_id = $1 AND "
			"event_id = ANY ($2) ORDER BY version LIMIT 1;",
			q, q, q, q, q, q, q);
	free(q);
	if (bad) {
		free(b.p);
		return NULL;
	}
	return b.p;
}

static int connect_one(PGconn **out, pg_backend *pb, evs_error *err)
{
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *vals[] = {pb->conninfo, "evstore", NULL};
	PGconn *conn;
	PGresult *res;
	int rc;

	*out = NULL;
	conn = PQconnectdbParams(keys, vals, 1);
	if (conn == NULL)
		return evs__error_nomem(err);
	if (PQstatus(conn) != CONNECTION_OK) {
		rc = evs__pg_error(err, conn, NULL,
		                   "could not connect to PostgreSQL");
		PQfinish(conn);
		return rc == EVS_EDB ? EVS_EUNAVAILABLE : rc;
	}
	res = PQexec(conn, pb->setup_sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		rc = evs__pg_error(err, conn, res,
		                   "could not prepare evstore's statements");
		PQclear(res);
		PQfinish(conn);
		return rc;
	}
	PQclear(res);
	*out = conn;
	return 0;
}

/* A connection that the server closed while it sat idle (a restart, an
 * administrator, an idle timeout) has something to read: between our
 * calls nothing else is ever pending, so anything readable means the
 * session is over. Costs one poll(), no round trip. */
static int idle_conn_is_dead(PGconn *conn)
{
	struct pollfd p;

	if (PQstatus(conn) != CONNECTION_OK)
		return 1;
	p.fd = PQsocket(conn);
	p.events = POLLIN;
	p.revents = 0;
	if (p.fd < 0)
		return 1;
	return poll(&p, 1, 0) != 0;
}

/* Milliseconds on a clock read without a system call. */
static int64_t coarse_ms(void)
{
	struct timespec ts;

#ifdef CLOCK_MONOTONIC_COARSE
	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
	clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void deadline_after(struct timespec *ts, unsigned int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

/* Takes a slot for this thread, connected. Returns its index or a
 * negative code. */
static int acquire(pg_backend *pb, evs_error *err)
{
	struct timespec deadline;
	size_t i, pick;
	int have_deadline = 0, rc;
	PGconn *stale = NULL;

	pthread_mutex_lock(&pb->lock);
	for (;;) {
		pick = pb->pool_size;
		/* A connected idle slot first, else an empty one. */
		for (i = 0; i < pb->pool_size; i++) {
			if (pb->slots[i].busy)
				continue;
			if (pb->slots[i].conn != NULL) {
				pick = i;
				break;
			}
			if (pick == pb->pool_size)
				pick = i;
		}
		if (pick < pb->pool_size)
			break;
		if (!have_deadline) {
			deadline_after(&deadline, pb->pool_timeout_ms);
			have_deadline = 1;
		}
		rc = pthread_cond_timedwait(&pb->freed, &pb->lock, &deadline);
		if (rc == ETIMEDOUT) {
			pthread_mutex_unlock(&pb->lock);
			return evs_error_set(err, EVS_ETIMEOUT, NULL,
			                     "no free database connection within "
			                     "%u ms (pool of %zu)",
			                     pb->pool_timeout_ms, pb->pool_size);
		}
	}
	pb->slots[pick].busy = 1;
	pthread_mutex_unlock(&pb->lock);

	/* The slot is ours: connect or check it without the lock held. A
	 * connection used a moment ago skips the check: a poll() per call
	 * is a tenth of the client's cost of an append. */
	if (pb->slots[pick].conn != NULL &&
	    coarse_ms() - pb->slots[pick].released_ms >= RECHECK_AFTER_MS &&
	    idle_conn_is_dead(pb->slots[pick].conn)) {
		stale = pb->slots[pick].conn;
		pb->slots[pick].conn = NULL;
	}
	PQfinish(stale);
	if (pb->slots[pick].conn == NULL) {
		rc = connect_one(&pb->slots[pick].conn, pb, err);
		if (rc < 0) {
			pthread_mutex_lock(&pb->lock);
			pb->slots[pick].busy = 0;
			pthread_cond_signal(&pb->freed);
			pthread_mutex_unlock(&pb->lock);
			return rc;
		}
	}
	return (int)pick;
}

/* Gives a slot back. A connection that broke is closed, and so is every
 * idle one: when one breaks, the server has usually restarted. */
static void release(pg_backend *pb, int slot)
{
	PGconn *drop[MAX_POOL_SIZE];
	size_t n = 0, i;
	pg_slot *s = &pb->slots[slot];

	pthread_mutex_lock(&pb->lock);
	if (PQstatus(s->conn) != CONNECTION_OK) {
		drop[n++] = s->conn;
		s->conn = NULL;
		for (i = 0; i < pb->pool_size; i++) {
			if (!pb->slots[i].busy && pb->slots[i].conn != NULL) {
				drop[n++] = pb->slots[i].conn;
				pb->slots[i].conn = NULL;
			}
		}
	}
	s->busy = 0;
	s->released_ms = coarse_ms();
	pthread_cond_signal(&pb->freed);
	pthread_mutex_unlock(&pb->lock);
	for (i = 0; i < n; i++)
		PQfinish(drop[i]);
}

/* ---- append ------------------------------------------------------------ */

static int encode_batch(sbuf arrays[4], evs_event *const *events, size_t n)
{
	size_t i;
	int bad = 0;

	for (i = 0; i < 4 && !bad; i++)
		bad = sb_add(&arrays[i], "{", 1);
	for (i = 0; i < n && !bad; i++) {
		const evs_event *ev = events[i];
		char id[EVS_UUID_STRLEN + 1];
		const char *sep = i ? "," : "";

		evs_uuid_format(id, &ev->id);
		bad = sb_add(&arrays[0], sep, strlen(sep)) ||
		      sb_add(&arrays[0], id, EVS_UUID_STRLEN) ||
		      sb_add(&arrays[1], sep, strlen(sep)) ||
		      sb_add_array_elem(&arrays[1], ev->type,
		                        strlen(ev->type)) ||
		      sb_add(&arrays[2], sep, strlen(sep)) ||
		      sb_add_array_elem(&arrays[2], ev->data, ev->data_len) ||
		      sb_add(&arrays[3], sep, strlen(sep)) ||
		      (ev->metadata == NULL
		               ? sb_add(&arrays[3], "NULL", 4)
		               : sb_add_array_elem(&arrays[3], ev->metadata,
		                                   ev->metadata_len));
	}
	for (i = 0; i < 4 && !bad; i++)
		bad = sb_add(&arrays[i], "}", 1);
	return bad ? -1 : 0;
}

static int head_on(int64_t *out, PGconn *conn, const char *id,
                   evs_error *err)
{
	const char *params[1] = {id};
	PGresult *res = PQexecPrepared(conn, "evs_head", 1, params, NULL,
	                               NULL, 0);
	int rc = 0;

	*out = EVS_NO_VERSION;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		rc = evs__pg_error(err, conn, res,
		                   "could not read the stream's version");
		goto done;
	}
	if (PQntuples(res) == 0) {
		rc = EVS_ENOTFOUND;
		goto done;
	}
	*out = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
done:
	PQclear(res);
	return rc;
}

/* A unique violation on the event-id key: say which id and where. */
static int report_duplicate(PGconn *conn, const char *id, const char *ids,
                            evs_error *err)
{
	const char *params[2] = {id, ids};
	PGresult *res = PQexecPrepared(conn, "evs_find_ids", 2, params, NULL,
	                               NULL, 0);

	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		evs_error_set(err, EVS_EDUPLICATE, "23505",
		              "event id %s is already stored in aggregate \"%s\" "
		              "at version %s",
		              PQgetvalue(res, 0, 0), id, PQgetvalue(res, 0, 1));
	else
		evs_error_set(err, EVS_EDUPLICATE, "23505",
		              "an event id of the batch is already stored in "
		              "aggregate \"%s\"", id);
	evs__error_set_aggregate(err, id);
	PQclear(res);
	return EVS_EDUPLICATE;
}

static int is_privilege_error(const PGresult *res)
{
	const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

	return state != NULL && strcmp(state, "42501") == 0;
}

static int pg_append(int64_t *version_out, evs_backend *be, const char *id,
                     int64_t expected, evs_event *const *events, size_t n,
                     evs_error *err)
{
	pg_backend *pb = (pg_backend *)be;
	sbuf arrays[4] = {{NULL, 0, 0}, {NULL, 0, 0}, {NULL, 0, 0},
	                  {NULL, 0, 0}};
	char expected_text[24];
	const char *params[6];
	PGresult *res = NULL;
	PGconn *conn;
	int slot, rc, i;

	if (encode_batch(arrays, events, n) < 0) {
		rc = evs__error_nomem(err);
		goto out;
	}
	snprintf(expected_text, sizeof(expected_text), "%lld",
	         (long long)expected);
	params[0] = id;
	params[1] = expected_text;
	for (i = 0; i < 4; i++)
		params[2 + i] = arrays[i].p;
	if ((slot = acquire(pb, err)) < 0) {
		rc = slot;
		goto out;
	}
	conn = pb->slots[slot].conn;
	if (expected >= 0 && atomic_load(&pb->one_statement)) {
		/* The common case in one statement: the compare-and-set
		 * UPDATE and the INSERT. No row back means the version did
		 * not match (or the stream is new): the function then says
		 * exactly what happened (conflict or idempotent replay), or
		 * appends if the stream got there in between. */
		res = PQexecPrepared(conn, "evs_append_cas", 6, params, NULL,
		                     NULL, 0);
		if (PQresultStatus(res) == PGRES_TUPLES_OK &&
		    PQntuples(res) == 1) {
			*version_out = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
			rc = 0;
			goto done;
		}
		if (PQresultStatus(res) == PGRES_TUPLES_OK ||
		    is_privilege_error(res)) {
			/* No row, or a privilege revoked since the store was
			 * opened (then the function only, from now on): the
			 * call below decides. Anything else is reported. */
			if (PQresultStatus(res) != PGRES_TUPLES_OK)
				atomic_store(&pb->one_statement, 0);
			PQclear(res);
			res = NULL;
		}
	}
	if (res == NULL)
		res = PQexecPrepared(conn, "evs_append", 6, params, NULL,
		                     NULL, 0);
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		int status = atoi(PQgetvalue(res, 0, 0));
		int64_t version = strtoll(PQgetvalue(res, 0, 1), NULL, 10);

		if (status == 2) {
			rc = evs_error_set_conflict(err, id, expected, version);
		} else {
			*version_out = version;
			rc = 0;
		}
	} else {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		const char *constraint =
			PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);
		int64_t actual;

		if (state && strcmp(state, "23505") == 0 && constraint &&
		    strcmp(constraint, "events_event_id_key") == 0) {
			rc = report_duplicate(conn, id, arrays[0].p, err);
		} else if (state && strcmp(state, "23505") == 0 && constraint &&
		           strcmp(constraint, "events_pkey") == 0) {
			/* The key is the last line of defence: report the
			 * true version, as for any conflict. */
			rc = head_on(&actual, conn, id, err);
			if (rc == 0 || rc == EVS_ENOTFOUND)
				rc = evs_error_set_conflict(err, id, expected,
				                            actual);
		} else {
			rc = evs__pg_error(err, conn, res,
			                   "could not append events");
		}
	}
done:
	PQclear(res);
	release(pb, slot);
out:
	for (i = 0; i < 4; i++)
		free(arrays[i].p);
	return rc;
}

/* ---- read -------------------------------------------------------------- */

/* Builds an event from a row of evs_read or evs_read_all. */
static int parse_row(evs_event **out, const PGresult *res, int row,
                     evs_error *err)
{
	evs_uuid uuid;
	int rc;

	if (evs_uuid_parse(&uuid, PQgetvalue(res, row, 2), NULL) < 0)
		return evs_error_set(err, EVS_EDB, NULL,
		                     "the server sent a malformed event id");
	rc = evs_event_new_stored(
		out, &uuid, PQgetvalue(res, row, 3), PQgetvalue(res, row, 4),
		(size_t)PQgetlength(res, row, 4),
		PQgetisnull(res, row, 5) ? NULL : PQgetvalue(res, row, 5),
		(size_t)PQgetlength(res, row, 5), PQgetvalue(res, row, 8),
		strtoll(PQgetvalue(res, row, 0), NULL, 10),
		strtoll(PQgetvalue(res, row, 1), NULL, 10),
		strtoll(PQgetvalue(res, row, 6), NULL, 10), err);
	if (rc == 0)
		evs_event_set_checkpoint(
			*out, strtoull(PQgetvalue(res, row, 7), NULL, 10));
	return rc;
}

static int pg_read(evs_backend *be, const char *id, int64_t after,
                   evs_backend_event_cb cb, void *payload, evs_error *err)
{
	pg_backend *pb = (pg_backend *)be;
	int64_t upto = INT64_MAX, rows = PAGE_ROWS;
	int first = 1;

	for (;;) {
		char after_text[24], upto_text[24], limit_text[24];
		const char *params[4] = {id, after_text, upto_text, limit_text};
		PGresult *res;
		PGconn *conn;
		size_t bytes = 0;
		int slot, n, i, more, rc = 0;

		if ((slot = acquire(pb, err)) < 0)
			return slot;
		conn = pb->slots[slot].conn;
		/* After the first page, read only up to where the stream
		 * ended then: a read ends, however fast writers are. */
		if (!first && upto == INT64_MAX) {
			rc = head_on(&upto, conn, id, err);
			if (rc < 0 && rc != EVS_ENOTFOUND) {
				release(pb, slot);
				return rc;
			}
		}
		snprintf(after_text, sizeof(after_text), "%lld",
		         (long long)after);
		snprintf(upto_text, sizeof(upto_text), "%lld", (long long)upto);
		/* One row more than the page: whether there is another page
		 * is known without an extra query. */
		snprintf(limit_text, sizeof(limit_text), "%lld",
		         (long long)rows + 1);
		res = PQexecPrepared(conn, "evs_read", 4, params, NULL, NULL,
		                     0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			rc = evs__pg_error(err, conn, res,
			                   "could not read events");
			PQclear(res);
			release(pb, slot);
			return rc;
		}
		/* The page is ours: the connection can serve others (and the
		 * callback) while we hand the events out. */
		release(pb, slot);
		n = PQntuples(res);
		more = n > rows;
		if (more)
			n = (int)rows;
		for (i = 0; i < n && rc == 0; i++) {
			evs_event *ev;

			bytes += (size_t)PQgetlength(res, i, 4) +
			         (size_t)PQgetlength(res, i, 5);
			rc = parse_row(&ev, res, i, err);
			if (rc == 0) {
				after = ev->version;
				rc = cb(ev, payload);
			}
		}
		PQclear(res);
		if (rc != 0 || !more)
			return rc;
		first = 0;
		/* Size the next page to the events seen so far. */
		rows = bytes > 0 ? (int64_t)(PAGE_TARGET_BYTES / (bytes / n + 1))
		                 : PAGE_ROWS;
		if (rows > PAGE_ROWS)
			rows = PAGE_ROWS;
		if (rows < PAGE_MIN_ROWS)
			rows = PAGE_MIN_ROWS;
	}
}

static int pg_read_all(evs_backend *be, const evs_position *after,
                       size_t max_events, evs_backend_event_cb cb,
                       void *payload, evs_error *err)
{
	pg_backend *pb = (pg_backend *)be;
	evs_position at = *after;
	size_t left = max_events ? max_events : SIZE_MAX;
	int64_t rows = PAGE_ROWS;

	while (left > 0) {
		char commit_text[24], global_text[24], limit_text[24];
		const char *params[3] = {commit_text, global_text, limit_text};
		int64_t want = (size_t)rows < left ? rows : (int64_t)left;
		size_t bytes = 0;
		PGresult *res;
		PGconn *conn;
		int slot, n, i, rc = 0;

		if ((slot = acquire(pb, err)) < 0)
			return slot;
		conn = pb->slots[slot].conn;
		snprintf(commit_text, sizeof(commit_text), "%llu",
		         (unsigned long long)at.commit);
		snprintf(global_text, sizeof(global_text), "%lld",
		         (long long)at.global);
		snprintf(limit_text, sizeof(limit_text), "%lld",
		         (long long)want);
		res = PQexecPrepared(conn, "evs_read_all", 3, params, NULL,
		                     NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			rc = evs__pg_error(err, conn, res,
			                   "could not read all events");
			PQclear(res);
			release(pb, slot);
			return rc;
		}
		release(pb, slot);
		n = PQntuples(res);
		for (i = 0; i < n && rc == 0; i++) {
			evs_event *ev;

			bytes += (size_t)PQgetlength(res, i, 4) +
			         (size_t)PQgetlength(res, i, 5);
			rc = parse_row(&ev, res, i, err);
			if (rc == 0) {
				evs_event_checkpoint(&at, ev);
				rc = cb(ev, payload);
			}
		}
		PQclear(res);
		if (rc != 0 || n < want)
			return rc;
		left -= (size_t)n;
		rows = (int64_t)(PAGE_TARGET_BYTES / (bytes / (size_t)n + 1));
		if (rows > PAGE_ROWS)
			rows = PAGE_ROWS;
		if (rows < PAGE_MIN_ROWS)
			rows = PAGE_MIN_ROWS;
	}
	return 0;
}

static int pg_head(int64_t *out, evs_backend *be, const char *id,
                   evs_error *err)
{
	pg_backend *pb = (pg_backend *)be;
	int slot = acquire(pb, err), rc;

	if (slot < 0)
		return slot;
	rc = head_on(out, pb->slots[slot].conn, id, err);
	release(pb, slot);
	return rc;
}

static void pg_free(evs_backend *be)
{
	pg_backend *pb = (pg_backend *)be;
	size_t i;

	if (pb == NULL)
		return;
	for (i = 0; pb->slots != NULL && i < pb->pool_size; i++)
		PQfinish(pb->slots[i].conn);
	free(pb->slots);
	pthread_mutex_destroy(&pb->lock);
	pthread_cond_destroy(&pb->freed);
	free(pb->conninfo);
	free(pb->schema);
	free(pb->setup_sql);
	free(pb);
}

/* ---- open -------------------------------------------------------------- */

static int check_schema(PGconn *conn, const char *schema, evs_error *err)
{
	char *q = quote_ident(schema);
	char sql[512];
	PGresult *res;
	const char *state;
	long have;
	int rc = 0;
	const long want = (long)(sizeof(migrations) / sizeof(migrations[0]));

	if (q == NULL)
		return evs__error_nomem(err);
	snprintf(sql, sizeof(sql), "SELECT max(version) FROM %s.schema_version",
	         q);
	free(q);
	res = PQexec(conn, sql);
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		if (state && (strcmp(state, "3F000") == 0 ||
		              strcmp(state, "42P01") == 0))
			rc = evs_error_set(err, EVS_ESCHEMA, state,
			                   "schema \"%s\" holds no evstore tables: "
			                   "apply sql/%s (psql -f) or run "
			                   "evstore migrate", schema, migrations[0]);
		else
			rc = evs__pg_error(err, conn, res,
			                   "could not read the schema version");
		goto done;
	}
	have = PQgetisnull(res, 0, 0) ? 0 : atol(PQgetvalue(res, 0, 0));
	if (have < want)
		rc = evs_error_set(err, EVS_ESCHEMA, NULL,
		                   "schema \"%s\" is at version %ld, this library "
		                   "needs %ld: apply sql/%s (psql -f) or run "
		                   "evstore migrate", schema, have, want,
		                   migrations[have]);
	else if (have > want)
		rc = evs_error_set(err, EVS_ESCHEMA, NULL,
		                   "schema \"%s\" is at version %ld, newer than "
		                   "the %ld this library (evstore %s) knows: "
		                   "upgrade the library", schema, have, want,
		                   EVS_VERSION_STRING);
done:
	PQclear(res);
	return rc;
}

/* Whether this role may append with evs_append_cas: UPDATE of
 * streams.version and INSERT into the events columns it names (README,
 * "Least privilege"). Without them every append calls append_events(). */
static int may_append_in_one_statement(PGconn *conn, const char *schema)
{
	static const char probe[] =
		"SELECT has_column_privilege(s, 'stream_id', 'SELECT') "
		"AND has_column_privilege(s, 'version', 'SELECT') "
		"AND has_column_privilege(s, 'version', 'UPDATE') "
		"AND has_column_privilege(e, 'stream_id', 'INSERT') "
		"AND has_column_privilege(e, 'version', 'INSERT') "
		"AND has_column_privilege(e, 'event_id', 'INSERT') "
		"AND has_column_privilege(e, 'type', 'INSERT') "
		"AND has_column_privilege(e, 'data', 'INSERT') "
		"AND has_column_privilege(e, 'metadata', 'INSERT') "
		"FROM (SELECT format('%I.streams', $1::text) AS s, "
		"format('%I.events', $1::text) AS e) AS t";
	const char *params[1] = {schema};
	PGresult *res = PQexecParams(conn, probe, 1, NULL, params, NULL, NULL,
	                             0);
	int yes = PQresultStatus(res) == PGRES_TUPLES_OK &&
	          PQntuples(res) == 1 &&
	          strcmp(PQgetvalue(res, 0, 0), "t") == 0;

	PQclear(res);
	return yes;
}

static int check_options(evs_pg_options *o, const evs_pg_options *given,
                         evs_error *err)
{
	evs_pg_options defaults = EVS_PG_OPTIONS_INIT;

	*o = defaults;
	if (given != NULL) {
		if (given->version == 0 ||
		    given->version > EVS_PG_OPTIONS_VERSION)
			return evs_error_set(err, EVS_EUNSUPPORTED, NULL,
			                     "evs_pg_options version %u is not "
			                     "supported (this library knows 1 to "
			                     "%d)", given->version,
			                     EVS_PG_OPTIONS_VERSION);
		*o = *given;
	}
	if (o->schema == NULL)
		o->schema = DEFAULT_SCHEMA;
	if (o->schema[0] == '\0' || strlen(o->schema) > 63 ||
	    !evs__utf8_valid(o->schema, strlen(o->schema)))
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->schema must be 1 to 63 bytes of "
		                     "UTF-8");
	if (o->pool_size == 0)
		o->pool_size = DEFAULT_POOL_SIZE;
	if (o->pool_size > MAX_POOL_SIZE)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->pool_size %u is more than %d",
		                     o->pool_size, MAX_POOL_SIZE);
	if (o->pool_timeout_ms == 0)
		o->pool_timeout_ms = DEFAULT_POOL_TIMEOUT_MS;
	return 0;
}

int evs_store_open_pg(evs_store **out, const char *conninfo,
                      const evs_pg_options *opts, evs_error *err)
{
	pg_backend *pb = NULL;
	pthread_condattr_t attr;
	evs_pg_options o;
	int rc, slot;

	evs__error_reset(err);
	if (out == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "out must not be NULL");
	*out = NULL;
	if ((rc = check_options(&o, opts, err)) < 0)
		return rc;
	pb = calloc(1, sizeof(*pb));
	if (pb == NULL)
		return evs__error_nomem(err);
	pthread_mutex_init(&pb->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pb->freed, &attr);
	pthread_condattr_destroy(&attr);
	pb->base.version = EVS_BACKEND_VERSION;
	pb->base.append = pg_append;
	pb->base.read = pg_read;
	pb->base.head = pg_head;
	pb->base.free = pg_free;
	pb->base.read_all = pg_read_all;
	pb->pool_size = o.pool_size;
	pb->pool_timeout_ms = o.pool_timeout_ms;
	pb->conninfo = strdup(conninfo ? conninfo : "");
	pb->schema = strdup(o.schema);
	pb->setup_sql = build_setup_sql(o.schema, o.statement_timeout_ms,
	                                o.lock_timeout_ms);
	pb->slots = calloc(o.pool_size, sizeof(*pb->slots));
	if (pb->conninfo == NULL || pb->schema == NULL ||
	    pb->setup_sql == NULL || pb->slots == NULL) {
		pg_free(&pb->base);
		return evs__error_nomem(err);
	}
	/* Connect once now: a wrong address or schema fails here, not at
	 * the first append. The schema is checked before anything else. */
	pb->slots[0].conn = PQconnectdbParams(
		(const char *[]){"dbname", "fallback_application_name", NULL},
		(const char *[]){pb->conninfo, "evstore", NULL}, 1);
	if (pb->slots[0].conn == NULL) {
		pg_free(&pb->base);
		return evs__error_nomem(err);
	}
	if (PQstatus(pb->slots[0].conn) != CONNECTION_OK) {
		rc = evs__pg_error(err, pb->slots[0].conn, NULL,
		                   "could not connect to PostgreSQL");
		pg_free(&pb->base);
		return rc == EVS_EDB ? EVS_EUNAVAILABLE : rc;
	}
	if ((rc = check_schema(pb->slots[0].conn, pb->schema, err)) < 0) {
		pg_free(&pb->base);
		return rc;
	}
	atomic_init(&pb->one_statement,
	            may_append_in_one_statement(pb->slots[0].conn, pb->schema));
	PQfinish(pb->slots[0].conn);
	pb->slots[0].conn = NULL;
	/* And keep one prepared connection ready. */
	if ((slot = acquire(pb, err)) < 0) {
		pg_free(&pb->base);
		return slot;
	}
	release(pb, slot);
	return evs_store_new(out, &pb->base, err);
}
