/* Per-stream order in the all-events feed, and retries racing their
 * original (issue 9, items 1 and 2).
 *
 * The feed test writes from raw libpq sessions that take their
 * transaction id before they lock a stream (what a batch, or a caller's
 * own transaction, does), mixed with the library's one-statement path,
 * while a reader tails evs_store_read_all(). With plain transaction ids
 * as order keys such writers come out of the feed in the wrong version
 * order (sql/0002_stream_order_key.sql). The race tests hold a stream's
 * row lock while an append and its retry both queue behind it. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "integration/pg_test.h"

#define N_STREAMS 5
#define N_RAW_WRITERS 5
#define RAW_TXNS 250      /* transactions per raw writer */
#define LIB_APPENDS 250   /* appends of the library writer */
#define MAX_PAUSE_US 400

/* ---- small helpers ------------------------------------------------------ */

static void pause_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};

	if (us > 0)
		nanosleep(&ts, NULL);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* xorshift64*: a per-thread generator (rand() is not thread-safe). */
static uint64_t next_rand(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

static uint64_t seed_for(int index)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
	       ((uint64_t)getpid() << 32) ^
	       (0x9E3779B97F4A7C15ULL * (uint64_t)(index + 1));
}

/* A per-test prefix for stream ids: no other run or test uses it. */
static void make_prefix(char *out, size_t size, const char *what)
{
	static unsigned int n;

	snprintf(out, size, "ord%ld-%u-%s-", (long)getpid(), ++n, what);
}

/* "name" with its double quotes doubled, in double quotes. */
static void quote_ident(char *out, size_t size, const char *name)
{
	size_t o = 0;

	if (size < 3)
		return;
	out[o++] = '"';
	for (; *name != '\0' && o + 3 < size; name++) {
		if (*name == '"')
			out[o++] = '"';
		out[o++] = *name;
	}
	out[o++] = '"';
	out[o] = '\0';
}

/* A libpq connection named for pg_stat_activity; PQfinish() it even when
 * it failed. For writer threads: it fails no test itself (Check's asserts
 * belong to the test's own thread). */
static PGconn *connect_named(const char *application_name)
{
	const char *const keys[] = {"dbname", "application_name", NULL};
	const char *const values[] = {pg_test_dsn(), application_name, NULL};

	return PQconnectdbParams(keys, values, 1);
}

/* group_off: every append alone. The race tests need it: with group
 * commit an append and its retry on one store queue behind each other
 * in the client, and never race in the server. */
static evs_store *open_store_on(const char *dsn, unsigned int pool,
                                int group_off)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;

	opts.schema = pg_test_schema();
	opts.pool_size = pool;
	opts.group_commit_off = (unsigned int)group_off;
	opts.pool_timeout_ms = 30000;
	ck_assert_msg(evs_store_open_pg(&store, dsn, &opts, &err) == 0,
	              "open: %s", err.message);
	evs_error_clear(&err);
	return store;
}

static evs_store *open_store(unsigned int pool)
{
	return open_store_on(pg_test_dsn(), pool, 0);
}

/* ---- A: the feed keeps each stream in version order ------------------- */

typedef struct {
	int stream;      /* index into feed_ctx.ids; -1: not one of ours */
	int64_t version;
	int64_t position;
} seen_event;

typedef struct {
	char prefix[64];
	size_t prefix_len;
	char ids[N_STREAMS][96];
	char append_sql[256];   /* a call of append_events() */
	char version_sql[256];  /* a stream's version */
	atomic_int reader_ready;
	atomic_int writers_done;
	/* The reader's own, read by the test's thread after the join. */
	evs_store *reader_store;
	evs_position at;
	seen_event *seen;
	size_t n_seen, cap_seen;
	size_t in_call;          /* events of the current call, any stream */
	size_t final_events;     /* ours that the last call brought */
	unsigned long calls, empty_calls;
	char reader_error[512];
} feed_ctx;

typedef struct {
	int stream;
	int64_t version;
	uint64_t xid;            /* the writer's own transaction id */
} raw_commit;

typedef struct {
	feed_ctx *ctx;
	int index;
	uint64_t rng;
	long committed, rolled_back, conflicts, any, exists, exact;
	raw_commit done[RAW_TXNS];
	size_t n_done;
	char error[512];
} raw_writer;

typedef struct {
	feed_ctx *ctx;
	evs_store *store;
	uint64_t rng;
	long appended, conflicts, gave_up;
	char error[512];
} lib_writer;

static int stream_index(const feed_ctx *ctx, const char *id)
{
	int s;

	for (s = 0; s < N_STREAMS; s++)
		if (strcmp(ctx->ids[s], id) == 0)
			return s;
	return -1;
}

/* One transaction: BEGIN, take an xid, pause, (read the version,) call
 * append_events (which locks the stream), maybe pause again, then
 * COMMIT, or ROLLBACK one time in ten. */
static void raw_transaction(raw_writer *w, PGconn *conn)
{
	feed_ctx *ctx = w->ctx;
	int s = (int)(next_rand(&w->rng) % N_STREAMS);
	int mode = (int)(next_rand(&w->rng) % 3);
	int rollback = next_rand(&w->rng) % 10 == 0;
	char expected[24], uuid[EVS_UUID_STRLEN + 1], ids[EVS_UUID_STRLEN + 3];
	const char *params[6];
	PGresult *res;
	evs_uuid u;
	uint64_t xid;
	int64_t version = -9;
	int status = -1;

	res = PQexec(conn, "BEGIN; SELECT pg_current_xact_id()");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(w->error, sizeof(w->error), "BEGIN: %s",
		         PQerrorMessage(conn));
		PQclear(res);
		return;
	}
	xid = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	pause_us((long)(next_rand(&w->rng) % (MAX_PAUSE_US + 1)));

	if (mode == 2) {
		params[0] = ctx->ids[s];
		res = PQexecParams(conn, ctx->version_sql, 1, NULL, params,
		                   NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK ||
		    PQntuples(res) != 1) {
			snprintf(w->error, sizeof(w->error),
			         "version of %s: %s", ctx->ids[s],
			         PQerrorMessage(conn));
			PQclear(res);
			return;
		}
		snprintf(expected, sizeof(expected), "%s",
		         PQgetvalue(res, 0, 0));
		PQclear(res);
		w->exact++;
	} else if (mode == 1) {
		snprintf(expected, sizeof(expected), "%lld",
		         (long long)EVS_STREAM_EXISTS);
		w->exists++;
	} else {
		snprintf(expected, sizeof(expected), "%lld",
		         (long long)EVS_ANY_VERSION);
		w->any++;
	}
	if (evs_uuid_generate(&u, NULL) < 0) {
		snprintf(w->error, sizeof(w->error), "no uuid");
		return;
	}
	evs_uuid_format(uuid, &u);
	snprintf(ids, sizeof(ids), "{%s}", uuid);
	params[0] = ctx->ids[s];
	params[1] = expected;
	params[2] = ids;
	params[3] = "{\"T\"}";
	params[4] = "{\"{}\"}";
	params[5] = "{NULL}";
	res = PQexecParams(conn, ctx->append_sql, 6, NULL, params, NULL, NULL,
	                   0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		snprintf(w->error, sizeof(w->error),
		         "append_events(%s, %s): %s", ctx->ids[s], expected,
		         PQerrorMessage(conn));
		PQclear(res);
		return;
	}
	status = atoi(PQgetvalue(res, 0, 0));
	version = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	if (status == 2 && mode == 2) {
		w->conflicts++;
	} else if (status != 0) {
		snprintf(w->error, sizeof(w->error),
		         "append_events(%s, %s) gave status %d, version %lld",
		         ctx->ids[s], expected, status, (long long)version);
		return;
	}
	if (next_rand(&w->rng) % 3 == 0)
		pause_us((long)(next_rand(&w->rng) % (MAX_PAUSE_US + 1)));

	res = PQexec(conn, rollback ? "ROLLBACK" : "COMMIT");
	if (PQresultStatus(res) != PGRES_COMMAND_OK ||
	    strcmp(PQcmdStatus(res), rollback ? "ROLLBACK" : "COMMIT") != 0) {
		snprintf(w->error, sizeof(w->error), "%s: %s (%s)",
		         rollback ? "ROLLBACK" : "COMMIT", PQerrorMessage(conn),
		         PQcmdStatus(res));
		PQclear(res);
		return;
	}
	PQclear(res);
	if (status != 0)
		return;
	if (rollback) {
		w->rolled_back++;
	} else {
		w->committed++;
		w->done[w->n_done].stream = s;
		w->done[w->n_done].version = version;
		w->done[w->n_done].xid = xid;
		w->n_done++;
	}
}

static void *raw_write(void *arg)
{
	raw_writer *w = arg;
	PGconn *conn = connect_named("evs-order-writer");
	int t;

	if (PQstatus(conn) != CONNECTION_OK)
		snprintf(w->error, sizeof(w->error), "connect: %s",
		         PQerrorMessage(conn));
	for (t = 0; t < RAW_TXNS && w->error[0] == '\0'; t++)
		raw_transaction(w, conn);
	/* On an error mid-transaction, closing rolls it back. */
	PQfinish(conn);
	return NULL;
}

/* Autocommit appends through the library: at the version last seen (the
 * one-statement compare-and-set for this owner role; on a conflict,
 * again at the true version) or at any version. */
static void *lib_write(void *arg)
{
	lib_writer *w = arg;
	feed_ctx *ctx = w->ctx;
	evs_error err = EVS_ERROR_INIT;
	int64_t known[N_STREAMS];
	int i, s, rc;

	for (s = 0; s < N_STREAMS; s++)
		known[s] = 0;
	for (i = 0; i < LIB_APPENDS && w->error[0] == '\0'; i++) {
		evs_event *ev = NULL;
		int64_t v = -9;
		int tries = 0;

		s = (int)(next_rand(&w->rng) % N_STREAMS);
		if (evs_event_new_json(&ev, "L", "{}", NULL, &err) < 0) {
			snprintf(w->error, sizeof(w->error), "event: %s",
			         err.message);
			break;
		}
		if (next_rand(&w->rng) % 2 == 0) {
			int64_t expected = known[s];

			do {
				rc = evs_store_append(&v, w->store, ctx->ids[s],
				                      expected, &ev, 1, &err);
				if (rc == EVS_ECONFLICT) {
					w->conflicts++;
					expected = err.actual_version;
				}
			} while (rc == EVS_ECONFLICT && ++tries < 100);
		} else {
			rc = evs_store_append(&v, w->store, ctx->ids[s],
			                      EVS_ANY_VERSION, &ev, 1, &err);
		}
		if (rc == 0) {
			w->appended++;
			known[s] = v;
		} else if (rc == EVS_ECONFLICT) {
			w->gave_up++;
		} else {
			snprintf(w->error, sizeof(w->error),
			         "append to %s: %d %s", ctx->ids[s], rc,
			         err.message);
		}
		evs_event_free(ev);
		pause_us((long)(next_rand(&w->rng) % (MAX_PAUSE_US + 1)));
	}
	evs_error_clear(&err);
	return NULL;
}

static int on_feed_event(const evs_event *ev, void *payload)
{
	feed_ctx *ctx = payload;
	const char *id = evs_event_aggregate_id(ev);
	seen_event *e;

	/* The checkpoint moves past every event, ours or not. */
	evs_event_checkpoint(&ctx->at, ev);
	ctx->in_call++;
	if (strncmp(id, ctx->prefix, ctx->prefix_len) != 0)
		return 0;
	if (ctx->n_seen == ctx->cap_seen) {
		size_t cap = ctx->cap_seen ? 2 * ctx->cap_seen : 1024;
		seen_event *p = realloc(ctx->seen, cap * sizeof(*p));

		if (p == NULL)
			return 1;
		ctx->seen = p;
		ctx->cap_seen = cap;
	}
	e = &ctx->seen[ctx->n_seen++];
	e->stream = stream_index(ctx, id);
	e->version = evs_event_version(ev);
	e->position = evs_event_position(ev);
	return 0;
}

/* One call of evs_store_read_all() from the reader's checkpoint. */
static int read_once(feed_ctx *ctx, evs_error *err)
{
	int rc;

	ctx->in_call = 0;
	ctx->calls++;
	rc = evs_store_read_all(ctx->reader_store, &ctx->at, 0, on_feed_event,
	                        ctx, err);
	if (rc != 0)
		snprintf(ctx->reader_error, sizeof(ctx->reader_error),
		         "read_all gave %d: %s", rc,
		         rc > 0                  ? "out of memory"
		         : err->message != NULL ? err->message
		                                : "");
	return rc;
}

/* Waits (at most 10 s) until no other session holds a transaction id:
 * the writers have closed theirs, but the server's own work (an
 * autovacuum ANALYZE writing statistics) may hold one for a moment, and
 * the fence rightly waits for it. Then the database is idle. */
static void wait_until_idle(void)
{
	PGconn *conn = PQconnectdb(pg_test_dsn());
	int i;

	for (i = 0; i < 1000 && PQstatus(conn) == CONNECTION_OK; i++) {
		PGresult *res = PQexec(conn,
			"SELECT count(*) FROM pg_stat_activity WHERE "
			"backend_xid IS NOT NULL AND pid <> pg_backend_pid()");
		int busy = PQresultStatus(res) == PGRES_TUPLES_OK &&
		           strcmp(PQgetvalue(res, 0, 0), "0") != 0;

		PQclear(res);
		if (!busy)
			break;
		pause_us(10000);
	}
	PQfinish(conn);
}

/* Tails the feed until the writers are done, then makes ONE more call:
 * the database is idle by then, so that call must bring the rest. */
static void *read_feed(void *arg)
{
	feed_ctx *ctx = arg;
	evs_error err = EVS_ERROR_INIT;
	size_t before;
	int rc;

	/* Catch up on what earlier tests left before the writers start,
	 * so the reader tails them from the first transaction on. */
	rc = read_once(ctx, &err);
	atomic_store(&ctx->reader_ready, 1);
	while (rc == 0 && !atomic_load(&ctx->writers_done)) {
		rc = read_once(ctx, &err);
		if (rc == 0 && ctx->in_call == 0) {
			ctx->empty_calls++;
			pause_us(1000);
		}
	}
	if (rc == 0) {
		wait_until_idle();
		before = ctx->n_seen;
		read_once(ctx, &err);
		ctx->final_events = ctx->n_seen - before;
	}
	evs_error_clear(&err);
	return NULL;
}

/* The feed's rows for the prefix, from the table. */
typedef struct {
	int64_t max_version[N_STREAMS];
	int64_t *position[N_STREAMS];   /* by version */
	uint64_t *key[N_STREAMS];       /* by version */
	int *count[N_STREAMS];          /* how often the reader saw it */
	seen_event *order;              /* ORDER BY transaction_id, position */
	size_t n;
} table_rows;

static void load_table(table_rows *t, PGconn *conn, const feed_ctx *ctx)
{
	char q[96], sql[512];
	const char *params[1] = {ctx->prefix};
	PGresult *res;
	int s, i, n;

	memset(t, 0, sizeof(*t));
	quote_ident(q, sizeof(q), pg_test_schema());
	snprintf(sql, sizeof(sql),
	         "SELECT stream_id, version, global_position, transaction_id "
	         "FROM %s.events WHERE starts_with(stream_id, $1) "
	         "ORDER BY transaction_id, global_position", q);
	res = PQexecParams(conn, sql, 1, NULL, params, NULL, NULL, 0);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
	              PQerrorMessage(conn));
	n = PQntuples(res);
	t->n = (size_t)n;
	t->order = calloc((size_t)n + 1, sizeof(*t->order));
	ck_assert_ptr_nonnull(t->order);
	for (s = 0; s < N_STREAMS; s++)
		t->max_version[s] = -1;
	for (i = 0; i < n; i++) {
		seen_event *e = &t->order[i];

		e->stream = stream_index(ctx, PQgetvalue(res, i, 0));
		e->version = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		e->position = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		ck_assert_msg(e->stream >= 0, "a stream of this test that it "
		              "never wrote: %s", PQgetvalue(res, i, 0));
		if (e->version > t->max_version[e->stream])
			t->max_version[e->stream] = e->version;
	}
	for (s = 0; s < N_STREAMS; s++) {
		size_t len = (size_t)(t->max_version[s] + 1);

		t->position[s] = calloc(len + 1, sizeof(int64_t));
		t->key[s] = calloc(len + 1, sizeof(uint64_t));
		t->count[s] = calloc(len + 1, sizeof(int));
		ck_assert(t->position[s] && t->key[s] && t->count[s]);
	}
	for (i = 0; i < n; i++) {
		const seen_event *e = &t->order[i];

		t->position[e->stream][e->version] = e->position;
		t->key[e->stream][e->version] =
			strtoull(PQgetvalue(res, i, 3), NULL, 10);
	}
	PQclear(res);
	/* Versions 0..max, each once: the primary key says so, and the
	 * total says there is no gap. */
	for (s = 0, i = 0; s < N_STREAMS; s++)
		i += (int)(t->max_version[s] + 1);
	ck_assert_msg(i == n, "the table's streams have gaps: %d versions, "
	              "%d rows", i, n);
}

static void free_table(table_rows *t)
{
	int s;

	for (s = 0; s < N_STREAMS; s++) {
		free(t->position[s]);
		free(t->key[s]);
		free(t->count[s]);
	}
	free(t->order);
}

/* What the reader saw against the table; fails the test with the counts. */
static void compare_feed(const feed_ctx *ctx, table_rows *t)
{
	int64_t last[N_STREAMS];
	size_t i, missed = 0, duplicated = 0, unknown = 0, inversions = 0;
	size_t first_diff = SIZE_MAX;
	char examples[512] = "", diff[48] = "no";
	size_t ex_len = 0;
	int s, ex_n = 0;

	for (s = 0; s < N_STREAMS; s++)
		last[s] = -1;
	for (i = 0; i < ctx->n_seen; i++) {
		const seen_event *e = &ctx->seen[i];

		if (first_diff == SIZE_MAX &&
		    (i >= t->n || e->stream != t->order[i].stream ||
		     e->version != t->order[i].version ||
		     e->position != t->order[i].position))
			first_diff = i;
		if (e->stream < 0 || e->version < 0 ||
		    e->version > t->max_version[e->stream] ||
		    t->position[e->stream][e->version] != e->position) {
			unknown++;
			continue;
		}
		if (++t->count[e->stream][e->version] > 1)
			duplicated++;
		if (e->version <= last[e->stream]) {
			inversions++;
			if (ex_n++ < 4 && ex_len < sizeof(examples))
				ex_len += (size_t)snprintf(
					examples + ex_len,
					sizeof(examples) - ex_len,
					"%s%s v%lld after v%lld",
					ex_n > 1 ? ";" : "",
					ctx->ids[e->stream] + ctx->prefix_len,
					(long long)e->version,
					(long long)last[e->stream]);
		}
		if (e->version > last[e->stream])
			last[e->stream] = e->version;
	}
	if (first_diff == SIZE_MAX && ctx->n_seen < t->n)
		first_diff = ctx->n_seen;
	for (s = 0; s < N_STREAMS; s++) {
		int64_t v;

		for (v = 0; v <= t->max_version[s]; v++)
			if (t->count[s][v] == 0)
				missed++;
	}
	if (first_diff != SIZE_MAX)
		snprintf(diff, sizeof(diff), "at index %zu", first_diff);
	ck_assert_msg(missed == 0 && duplicated == 0 && unknown == 0 &&
	              inversions == 0 && first_diff == SIZE_MAX,
	              "feed against table (%zu rows, %zu received): %zu "
	              "missed, %zu duplicated, %zu not in the table, %zu out "
	              "of version order [%s]; differs from the table's "
	              "order: %s",
	              t->n, ctx->n_seen, missed, duplicated, unknown,
	              inversions, examples, diff);
}

START_TEST(feed_keeps_each_stream_in_version_order)
{
	feed_ctx *ctx = calloc(1, sizeof(*ctx));
	raw_writer *raw = calloc(N_RAW_WRITERS, sizeof(*raw));
	lib_writer lib;
	pthread_t th_raw[N_RAW_WRITERS], th_lib, th_reader;
	PGconn *conn = pg_test_connect();
	table_rows t;
	char q[96], prefix[sizeof(ctx->prefix)];
	double start = now_s(), waited;
	long committed = 0, rolled_back = 0, conflicts = 0, lifted = 0;
	long below = 0, modes[3] = {0, 0, 0};
	int s, i;
	size_t j;

	ck_assert_ptr_nonnull(ctx);
	ck_assert_ptr_nonnull(raw);
	make_prefix(prefix, sizeof(prefix), "feed");
	memcpy(ctx->prefix, prefix, sizeof(prefix));
	ctx->prefix_len = strlen(prefix);
	quote_ident(q, sizeof(q), pg_test_schema());
	snprintf(ctx->append_sql, sizeof(ctx->append_sql),
	         "SELECT status, version FROM %s.append_events($1, $2, $3, $4, "
	         "$5, $6)", q);
	snprintf(ctx->version_sql, sizeof(ctx->version_sql),
	         "SELECT version FROM %s.streams WHERE stream_id = $1", q);
	atomic_init(&ctx->reader_ready, 0);
	atomic_init(&ctx->writers_done, 0);

	/* The streams exist before the writers start (EVS_STREAM_EXISTS). */
	for (s = 0; s < N_STREAMS; s++) {
		const char *params[6];
		char ids[EVS_UUID_STRLEN + 3], uuid[EVS_UUID_STRLEN + 1];
		evs_uuid u;
		PGresult *res;

		snprintf(ctx->ids[s], sizeof(ctx->ids[s]), "%ss%d", prefix, s);
		ck_assert_int_eq(evs_uuid_generate(&u, NULL), 0);
		evs_uuid_format(uuid, &u);
		snprintf(ids, sizeof(ids), "{%s}", uuid);
		params[0] = ctx->ids[s];
		params[1] = "-1";
		params[2] = ids;
		params[3] = "{\"T\"}";
		params[4] = "{\"{}\"}";
		params[5] = "{NULL}";
		res = PQexecParams(conn, ctx->append_sql, 6, NULL, params, NULL,
		                   NULL, 0);
		ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK &&
		              strcmp(PQgetvalue(res, 0, 0), "0") == 0,
		              "create %s: %s", ctx->ids[s],
		              PQerrorMessage(conn));
		PQclear(res);
	}

	ctx->reader_store = open_store(1);
	ck_assert_int_eq(pthread_create(&th_reader, NULL, read_feed, ctx), 0);
	for (i = 0; i < 60000 && !atomic_load(&ctx->reader_ready); i++)
		pause_us(1000);
	ck_assert_msg(atomic_load(&ctx->reader_ready), "the reader never "
	              "caught up with the feed");
	waited = now_s() - start;

	memset(&lib, 0, sizeof(lib));
	lib.ctx = ctx;
	lib.store = open_store(1);
	lib.rng = seed_for(N_RAW_WRITERS);
	for (i = 0; i < N_RAW_WRITERS; i++) {
		raw[i].ctx = ctx;
		raw[i].index = i;
		raw[i].rng = seed_for(i);
		ck_assert_int_eq(pthread_create(&th_raw[i], NULL, raw_write,
		                                &raw[i]), 0);
	}
	ck_assert_int_eq(pthread_create(&th_lib, NULL, lib_write, &lib), 0);
	for (i = 0; i < N_RAW_WRITERS; i++)
		pthread_join(th_raw[i], NULL);
	pthread_join(th_lib, NULL);
	/* Every writer's session is closed (the raw ones closed their own):
	 * the database is idle when the reader makes its last call. */
	evs_store_free(lib.store);
	atomic_store(&ctx->writers_done, 1);
	pthread_join(th_reader, NULL);
	evs_store_free(ctx->reader_store);

	for (i = 0; i < N_RAW_WRITERS; i++) {
		ck_assert_msg(raw[i].error[0] == '\0', "writer %d: %s", i,
		              raw[i].error);
		committed += raw[i].committed;
		rolled_back += raw[i].rolled_back;
		conflicts += raw[i].conflicts;
		modes[0] += raw[i].any;
		modes[1] += raw[i].exists;
		modes[2] += raw[i].exact;
	}
	ck_assert_msg(lib.error[0] == '\0', "library writer: %s", lib.error);
	ck_assert_msg(ctx->reader_error[0] == '\0', "reader: %s",
	              ctx->reader_error);

	load_table(&t, conn, ctx);
	/* Committed rows: the streams' first events, what the raw writers
	 * committed and what the library stored; none rolled back. */
	ck_assert_msg(t.n == (size_t)(N_STREAMS + committed + lib.appended),
	              "the table holds %zu events of this test; the writers "
	              "committed %ld (+%d first events)", t.n,
	              committed + lib.appended, N_STREAMS);
	/* Each raw writer's key: never below its own transaction id (the
	 * reader's fence stays exact), lifted above it when a younger
	 * transaction had moved the stream first. */
	for (i = 0; i < N_RAW_WRITERS; i++)
		for (j = 0; j < raw[i].n_done; j++) {
			const raw_commit *c = &raw[i].done[j];
			uint64_t key;

			ck_assert_msg(c->version <= t.max_version[c->stream],
			              "%s v%lld was committed, is not stored",
			              ctx->ids[c->stream],
			              (long long)c->version);
			key = t.key[c->stream][c->version];
			if (key < c->xid)
				below++;
			else if (key > c->xid)
				lifted++;
		}
	ck_assert_msg(below == 0, "%ld events stored with an order key below "
	              "their writer's transaction id", below);
	compare_feed(ctx, &t);
	/* The race this test is about happened: else it proves nothing. */
	ck_assert_msg(lifted > 0, "no writer ever found its stream moved by "
	              "a younger transaction (%ld commits)", committed);
	fprintf(stderr,
	        "order: %zu events in order (raw transactions: %ld any, "
	        "%ld exists, %ld exact, %ld conflicts, %ld rolled back, "
	        "%ld committed; %ld library appends, %ld conflicts); %ld "
	        "keys lifted above their writer's xid; reader: %lu calls, "
	        "%lu empty, %zu in the last; %.1f s (%.1f s catching up)\n",
	        t.n, modes[0], modes[1], modes[2], conflicts, rolled_back,
	        committed, lib.appended, lib.conflicts, lifted, ctx->calls,
	        ctx->empty_calls, ctx->final_events, now_s() - start, waited);

	free_table(&t);
	free(ctx->seen);
	free(ctx);
	free(raw);
	PQfinish(conn);
}
END_TEST

/* ---- B: a retry racing its original is a replay ------------------------ */

typedef struct {
	evs_store *store;
	const char *id;
	int64_t expected;
	evs_event *ev;
	int rc;
	evs_append_result res;
	evs_error err;
} racer;

static void *race_append(void *arg)
{
	racer *r = arg;

	r->rc = evs_store_append_ext(&r->res, r->store, r->id, r->expected,
	                             &r->ev, 1, 0, &r->err);
	return NULL;
}

/* Waits until `want` sessions wait, directly or behind one another, for
 * the locks of session `holder`. */
static void wait_for_waiters(PGconn *admin, int holder, int want)
{
	static const char sql[] =
		"WITH RECURSIVE w(pid) AS ("
		" SELECT pid FROM pg_stat_activity"
		"  WHERE $1::int = ANY (pg_blocking_pids(pid))"
		" UNION"
		" SELECT a.pid FROM pg_stat_activity a JOIN w"
		"  ON w.pid = ANY (pg_blocking_pids(a.pid)))"
		"SELECT count(*) FROM w";
	char pid[16];
	const char *params[1] = {pid};
	int i, n = -1;

	snprintf(pid, sizeof(pid), "%d", holder);
	for (i = 0; i < 2000; i++) {
		PGresult *res = PQexecParams(admin, sql, 1, NULL, params, NULL,
		                             NULL, 0);

		ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s",
		              PQerrorMessage(admin));
		n = atoi(PQgetvalue(res, 0, 0));
		PQclear(res);
		if (n >= want)
			return;
		pause_us(5000);
	}
	ck_abort_msg("%d of %d appends ever waited for the stream's lock", n,
	             want);
}

static const char *mode_name(int64_t mode)
{
	return mode == EVS_ANY_VERSION     ? "EVS_ANY_VERSION"
	       : mode == EVS_STREAM_EXISTS ? "EVS_STREAM_EXISTS"
	                                   : "exact version 0";
}

static void race_round(evs_store *store, PGconn *admin, int64_t mode,
                       int round, const char *who)
{
	char prefix[64], id[96], q[96], sql[256], where[160];
	const char *params[1] = {id};
	racer r[2];
	pthread_t th[2];
	evs_event *first = NULL;
	evs_event_list *list = NULL;
	PGconn *holder;
	PGresult *res;
	int64_t v = -9;
	int i;

	make_prefix(prefix, sizeof(prefix), "race");
	snprintf(id, sizeof(id), "%s%s-%d", prefix,
	         mode == EVS_ANY_VERSION     ? "any"
	         : mode == EVS_STREAM_EXISTS ? "exists"
	                                     : "exact", round);
	ck_assert_int_eq(evs_event_new_json(&first, "Opened", "{}", NULL, NULL),
	                 0);
	ck_assert_int_eq(evs_store_append(&v, store, id, EVS_NO_VERSION, &first,
	                                  1, NULL), 0);
	ck_assert_int_eq(v, 0);

	/* X, and its retry: another event with the same id and content. */
	memset(r, 0, sizeof(r));
	for (i = 0; i < 2; i++) {
		r[i].store = store;
		r[i].id = id;
		r[i].expected = mode;
		r[i].err = (evs_error)EVS_ERROR_INIT;
		ck_assert_int_eq(evs_event_new_json(&r[i].ev, "Paid",
		                 "{\"amount\": 5}", NULL, NULL), 0);
	}
	ck_assert_int_eq(evs_event_set_id(r[1].ev, evs_event_id(r[0].ev),
	                                  NULL), 0);

	/* Another session holds the stream's row lock. */
	holder = pg_test_connect();
	quote_ident(q, sizeof(q), pg_test_schema());
	snprintf(sql, sizeof(sql), "UPDATE %s.streams SET version = version "
	         "WHERE stream_id = $1", q);
	pg_test_exec(holder, "BEGIN");
	res = PQexecParams(holder, sql, 1, NULL, params, NULL, NULL, 0);
	ck_assert_msg(PQresultStatus(res) == PGRES_COMMAND_OK &&
	              strcmp(PQcmdTuples(res), "1") == 0, "%s: %s", sql,
	              PQerrorMessage(holder));
	PQclear(res);

	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, race_append,
		                                &r[i]), 0);
	wait_for_waiters(admin, PQbackendPID(holder), 2);
	pg_test_exec(holder, "COMMIT");
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);

	snprintf(where, sizeof(where), "%s as %s, round %d", mode_name(mode),
	         who, round);
	for (i = 0; i < 2; i++) {
		ck_assert_msg(r[i].rc == 0, "%s: append %d gave %d: %s", where,
		              i, r[i].rc, r[i].err.message);
		ck_assert_msg(r[i].res.version == 1, "%s: append %d reported "
		              "version %lld", where, i,
		              (long long)r[i].res.version);
	}
	ck_assert_msg(r[0].res.replayed + r[1].res.replayed == 1 &&
	              (r[0].res.replayed == 0 || r[0].res.replayed == 1),
	              "%s: replayed flags %d and %d, want one of each", where,
	              r[0].res.replayed, r[1].res.replayed);
	ck_assert_int_eq(evs_store_load(&list, store, id, EVS_NO_VERSION, NULL),
	                 0);
	ck_assert_msg(evs_event_list_count(list) == 2, "%s: the stream holds "
	              "%zu events", where, evs_event_list_count(list));
	ck_assert(evs_uuid_equal(evs_event_id(evs_event_list_get(list, 1)),
	                         evs_event_id(r[0].ev)));
	evs_event_list_free(list);
	for (i = 0; i < 2; i++) {
		evs_event_free(r[i].ev);
		evs_error_clear(&r[i].err);
	}
	evs_event_free(first);
	PQfinish(holder);
}

START_TEST(retry_racing_its_original_is_a_replay)
{
	/* As the owner, an append at an exact version is the one-statement
	 * compare-and-set; as the application role (README's required
	 * grants only), every append is a call of append_events. */
	static const int64_t modes[] = {EVS_ANY_VERSION, EVS_STREAM_EXISTS, 0};
	static const char *const who[] = {"the owner", "the application role"};
	const char *dsns[] = {pg_test_dsn(), getenv("EVS_TEST_PG_APP_DSN")};
	PGconn *admin = pg_test_connect();
	size_t d, m;
	int round;

	for (d = 0; d < 2; d++) {
		evs_store *store;

		if (dsns[d] == NULL || dsns[d][0] == '\0') {
			fprintf(stderr, "order: EVS_TEST_PG_APP_DSN is not "
			        "set: the racing retries run as the owner "
			        "only\n");
			continue;
		}
		store = open_store_on(dsns[d], 3, 1);
		for (m = 0; m < sizeof(modes) / sizeof(modes[0]); m++)
			for (round = 0; round < 5; round++)
				race_round(store, admin, modes[m], round,
				           who[d]);
		evs_store_free(store);
	}
	PQfinish(admin);
}
END_TEST

/* ---- C: a genuine reuse of an id is still refused ---------------------- */

START_TEST(genuine_duplicate_is_still_refused)
{
	static const int64_t modes[] = {EVS_ANY_VERSION, EVS_STREAM_EXISTS, 0};
	evs_store *store = open_store(1);
	evs_error err = EVS_ERROR_INIT;
	evs_append_result res;
	evs_event *x = NULL, *fresh = NULL, *batch[2];
	evs_event_list *list = NULL;
	char prefix[64], id[96], uuid[EVS_UUID_STRLEN + 1], want[256];
	int64_t v = -9;
	size_t m;

	make_prefix(prefix, sizeof(prefix), "dup");
	snprintf(id, sizeof(id), "%sx", prefix);
	ck_assert_int_eq(evs_event_new_json(&x, "X", "{}", NULL, NULL), 0);
	ck_assert_int_eq(evs_event_new_json(&fresh, "New", "{}", NULL, NULL),
	                 0);
	evs_uuid_format(uuid, evs_event_id(x));
	ck_assert_int_eq(evs_store_append(&v, store, id, EVS_NO_VERSION, &x, 1,
	                                  NULL), 0);
	ck_assert_int_eq(v, 0);
	snprintf(want, sizeof(want), "event id %s is already stored in "
	         "aggregate \"%s\" at version 0", uuid, id);

	/* X inside another batch, [new, X]: not a replay at any version. */
	batch[0] = fresh;
	batch[1] = x;
	for (m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		res.version = -9;
		res.replayed = -1;
		ck_assert_msg(evs_store_append_ext(&res, store, id, modes[m],
		                                   batch, 2, 0, &err) ==
		              EVS_EDUPLICATE, "%s: %s",
		              mode_name(modes[m]), err.message);
		ck_assert_str_eq(err.sqlstate, "23505");
		ck_assert_msg(strstr(err.message, want) != NULL, "%s: %s",
		              mode_name(modes[m]), err.message);
	}
	/* X alone, but not right after the version it was sent after. */
	ck_assert_int_eq(evs_store_append_ext(&res, store, id, 0, &x, 1, 0,
	                                      &err), EVS_EDUPLICATE);
	ck_assert_msg(strstr(err.message, want) != NULL, "%s", err.message);

	/* Nothing was stored; the true replays still are replays. */
	ck_assert_int_eq(evs_store_load(&list, store, id, EVS_NO_VERSION, NULL),
	                 0);
	ck_assert_uint_eq(evs_event_list_count(list), 1);
	ck_assert(evs_uuid_equal(evs_event_id(evs_event_list_get(list, 0)),
	                         evs_event_id(x)));
	evs_event_list_free(list);
	ck_assert_int_eq(evs_store_append_ext(&res, store, id, EVS_ANY_VERSION,
	                                      &x, 1, 0, &err), 0);
	ck_assert_int_eq(res.replayed, 1);
	ck_assert_int_eq(res.version, 0);
	ck_assert_int_eq(evs_store_append_ext(&res, store, id, EVS_NO_VERSION,
	                                      &x, 1, 0, &err), 0);
	ck_assert_int_eq(res.replayed, 1);
	ck_assert_int_eq(res.version, 0);
	ck_assert_int_eq(evs_store_current_version(&v, store, id, &err), 0);
	ck_assert_int_eq(v, 0);

	evs_event_free(x);
	evs_event_free(fresh);
	evs_error_clear(&err);
	evs_store_free(store);
}
END_TEST

Suite *order_suite(void)
{
	Suite *s = suite_create("order");
	TCase *tc;

	tc = tcase_create("feed");
	tcase_add_test(tc, feed_keeps_each_stream_in_version_order);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("racing retries");
	tcase_add_test(tc, retry_racing_its_original_is_a_replay);
	tcase_add_test(tc, genuine_duplicate_is_still_refused);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}
