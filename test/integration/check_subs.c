/* Subscriptions on PostgreSQL, beyond the contract: crashes, leases,
 * groups, rewinds, the fence report, plans, notifications.
 *
 * The crash and lease tests run subscriptions in child processes (fork,
 * no exec; each child connects after the fork and never uses its
 * parent's connections, dies with the test's process (PR_SET_PDEATHSIG)
 * and within alarm()'s bound, and leaves by _exit()), kill or stop them,
 * and check the read models their handlers wrote against the events
 * table. Writers are raw libpq sessions with explicit transactions
 * (rollbacks, every expected-version mode, two streams in one
 * transaction, a transaction held open while others commit); where
 * subscriber processes are forked, the writers' threads run in a process
 * of their own, so that no fork happens in a process with threads.
 *
 * Every test makes its own category and subscription names (make_tag),
 * so they share the run's schema with the other suites. */
#define _DEFAULT_SOURCE /* MAP_ANONYMOUS */

#include <check.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "integration/pg_test.h"

/* ---- small helpers ------------------------------------------------------ */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	if (ms > 0)
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
}

static void sleep_us(long us)
{
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000L};

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

/* xorshift64*: a generator per thread or process. */
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

static long rand_between(uint64_t *rng, long lo, long hi)
{
	return lo + (long)(next_rand(rng) % (uint64_t)(hi - lo + 1));
}

/* The test schema, as a quoted identifier. */
static const char *qs(void)
{
	static char buf[160];
	const char *s = pg_test_schema();
	size_t o = 0;

	buf[o++] = '"';
	for (; *s != '\0' && o + 3 < sizeof(buf); s++) {
		if (*s == '"')
			buf[o++] = '"';
		buf[o++] = *s;
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}

/* A name no other test or run uses, of lower-case letters and digits
 * only: a category, a subscription's name, a table's name. */
static void make_tag(char *out, size_t size, const char *what)
{
	static unsigned int n;

	snprintf(out, size, "sb%ldn%u%s", (long)getpid(), ++n, what);
}

/* Runs printf-formatted SQL (on the test's thread: fails the test
 * unless it succeeds); returns the first value of the first row (a
 * static buffer) or "". */
static const char *sqlf(PGconn *conn, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static const char *sqlf(PGconn *conn, const char *fmt, ...)
{
	char sql[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	return pg_test_exec(conn, sql);
}

static long long sql_ll(PGconn *conn, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static long long sql_ll(PGconn *conn, const char *fmt, ...)
{
	char sql[4096];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(sql, sizeof(sql), fmt, ap);
	va_end(ap);
	return strtoll(pg_test_exec(conn, sql), NULL, 10);
}

/* A libpq session named for pg_stat_activity (PQfinish() it even when
 * it failed). It fails no test itself: writers and children use it. */
static PGconn *connect_as(const char *dsn, const char *application_name)
{
	const char *const keys[] = {"dbname", "application_name", NULL};
	const char *const values[] = {dsn, application_name, NULL};
	PGconn *conn = PQconnectdbParams(keys, values, 1);

	if (PQstatus(conn) == CONNECTION_OK)
		PQclear(PQexec(conn, "SET client_min_messages = warning"));
	return conn;
}

static PGconn *connect_named(const char *application_name)
{
	return connect_as(pg_test_dsn(), application_name);
}

/* A store on dsn whose sessions are named application_name (NULL: the
 * library's "evstore"). */
static int store_open_as(evs_store **out, const char *dsn,
                         const char *application_name, unsigned int pool,
                         unsigned int notify, evs_log_cb log,
                         void *log_payload, evs_error *err)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	char conninfo[2048];

	opts.schema = pg_test_schema();
	opts.pool_size = pool;
	opts.pool_timeout_ms = 30000;
	opts.call_timeout_ms = 20000;
	opts.notify = notify;
	opts.log = log;
	opts.log_payload = log_payload;
	if (application_name != NULL)
		snprintf(conninfo, sizeof(conninfo), "%s application_name=%s",
		         dsn, application_name);
	else
		snprintf(conninfo, sizeof(conninfo), "%s", dsn);
	return evs_store_open_pg(out, conninfo, &opts, err);
}

static evs_store *store_open(const char *application_name,
                             unsigned int pool, unsigned int notify)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;

	ck_assert_msg(store_open_as(&store, pg_test_dsn(), application_name,
	                            pool, notify, NULL, NULL, &err) == 0,
	              "open: %s", err.message);
	evs_error_clear(&err);
	return store;
}

/* n events of type `type` appended to `stream` at any version through
 * the library; returns the stream's version. */
static int64_t lib_append(evs_store *store, const char *stream, int n,
                          const char *type)
{
	evs_event *evs[16];
	evs_error err = EVS_ERROR_INIT;
	int64_t v = -9;
	int i, rc;

	ck_assert_int_le(n, 16);
	for (i = 0; i < n; i++)
		ck_assert_int_eq(evs_event_new_json(&evs[i], type,
		                                    "{\"n\": 1}", NULL, NULL),
		                 0);
	rc = evs_store_append(&v, store, stream, EVS_ANY_VERSION, evs,
	                      (size_t)n, &err);
	ck_assert_msg(rc == 0, "append to %s: %s", stream, err.message);
	for (i = 0; i < n; i++)
		evs_event_free(evs[i]);
	evs_error_clear(&err);
	return v;
}

/* append_events() on a raw session, in whatever transaction it has
 * open: n events of `type`. Sets *status (0 stored, 1 replay, 2
 * conflict) and *version; returns 0, or -1 with the server's message in
 * why. */
static int raw_append(PGconn *conn, const char *stream, long long expected,
                      int n, const char *type, int *status,
                      long long *version, char *why, size_t why_size)
{
	char sql[256], exp[24], ids[16 * (EVS_UUID_STRLEN + 1) + 3];
	char types[16 * 64 + 3], data[16 * 5 + 3], meta[16 * 5 + 3];
	const char *params[6];
	PGresult *res;
	size_t o = 0, ot = 0, od = 0, om = 0;
	int i;

	if (n < 1 || n > 16 || strlen(type) > 60) {
		snprintf(why, why_size, "raw_append: bad arguments");
		return -1;
	}
	ids[o++] = '{';
	types[ot++] = '{';
	data[od++] = '{';
	meta[om++] = '{';
	for (i = 0; i < n; i++) {
		evs_uuid u;

		if (evs_uuid_generate(&u, NULL) < 0) {
			snprintf(why, why_size, "no uuid");
			return -1;
		}
		if (i > 0) {
			ids[o++] = ',';
			types[ot++] = ',';
			data[od++] = ',';
			meta[om++] = ',';
		}
		evs_uuid_format(ids + o, &u);
		o += EVS_UUID_STRLEN;
		ot += (size_t)sprintf(types + ot, "\"%s\"", type);
		od += (size_t)sprintf(data + od, "\"{}\"");
		om += (size_t)sprintf(meta + om, "NULL");
	}
	ids[o++] = '}';
	ids[o] = '\0';
	types[ot++] = '}';
	types[ot] = '\0';
	data[od++] = '}';
	data[od] = '\0';
	meta[om++] = '}';
	meta[om] = '\0';
	snprintf(sql, sizeof(sql), "SELECT status, version FROM "
	         "%s.append_events($1, $2, $3, $4, $5, $6)", qs());
	snprintf(exp, sizeof(exp), "%lld", expected);
	params[0] = stream;
	params[1] = exp;
	params[2] = ids;
	params[3] = types;
	params[4] = data;
	params[5] = meta;
	res = PQexecParams(conn, sql, 6, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		snprintf(why, why_size, "append_events(%s, %lld): %s", stream,
		         expected, PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	*status = atoi(PQgetvalue(res, 0, 0));
	*version = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	PQclear(res);
	return 0;
}

/* The same on the test's thread, failing the test unless it stores. */
static long long raw_append_ok(PGconn *conn, const char *stream,
                               long long expected, int n)
{
	char why[512];
	long long v = -9;
	int status = -1;

	ck_assert_msg(raw_append(conn, stream, expected, n, "T", &status, &v,
	                         why, sizeof(why)) == 0, "%s", why);
	ck_assert_msg(status == 0, "append_events(%s, %lld) gave status %d",
	              stream, expected, status);
	return v;
}

/* Memory that forked children share with the test (zeroed). */
static void *shared_new(size_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE,
	               MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	ck_assert_msg(p != MAP_FAILED, "mmap: %s", strerror(errno));
	return p;
}

/* First thing in a forked child: it dies with the test's process (a
 * failed test must not leave a stopped or running subscriber behind,
 * holding locks, a lease or the feed's fence), and within `seconds`
 * anyway. */
static pid_t test_pid;

static pid_t fork_child(void)
{
	pid_t pid;

	test_pid = getpid();
	pid = fork();
	ck_assert_msg(pid >= 0, "fork: %s", strerror(errno));
	return pid;
}

static void child_init(unsigned int seconds)
{
	prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (getppid() != test_pid)
		_exit(3);
	alarm(seconds);
}

/* Waits for a child at most timeout_ms; then kills it (it must not
 * outlive the test) and fails. Returns its wait status. */
static int reap(pid_t pid, int timeout_ms, const char *what)
{
	int64_t end = now_ms() + timeout_ms;
	int status = 0;
	pid_t r;

	for (;;) {
		r = waitpid(pid, &status, WNOHANG);
		if (r == pid)
			return status;
		ck_assert_msg(r == 0, "waitpid(%s): %s", what, strerror(errno));
		if (now_ms() > end) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			ck_abort_msg("%s did not end within %d ms", what,
			             timeout_ms);
		}
		sleep_ms(2);
	}
}

/* Waits (at most timeout_ms) until no session named application_name is
 * left: a killed client's statements have then committed or rolled back
 * on the server. */
static void wait_sessions_gone(PGconn *admin, const char *application_name,
                               int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	long long n = -1;

	while (now_ms() < end) {
		n = sql_ll(admin, "SELECT count(*) FROM pg_stat_activity "
		           "WHERE application_name = '%s'", application_name);
		if (n == 0)
			return;
		sleep_ms(5);
	}
	ck_abort_msg("%lld sessions named %s outlived their process by %d ms",
	             n, application_name, timeout_ms);
}

/* Where a category's feed ends now: its last event, by order key and
 * position ({0, 0}: none). */
static evs_position feed_last(PGconn *conn, const char *category)
{
	evs_position p = {0, 0};
	char sql[512];
	PGresult *res;

	snprintf(sql, sizeof(sql), "SELECT transaction_id, global_position "
	         "FROM %s.events WHERE split_part(stream_id, '-', 1) = '%s' "
	         "ORDER BY transaction_id DESC, global_position DESC LIMIT 1",
	         qs(), category);
	res = PQexec(conn, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
	              PQerrorMessage(conn));
	if (PQntuples(res) == 1) {
		p.commit = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
		p.global = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	}
	PQclear(res);
	return p;
}

static int pos_cmp(const evs_position *a, const evs_position *b)
{
	if (a->commit != b->commit)
		return a->commit < b->commit ? -1 : 1;
	if (a->global != b->global)
		return a->global < b->global ? -1 : 1;
	return 0;
}

/* A category's feed as the events table orders it. */
typedef struct feed_row {
	evs_position at;
	char stream[96];
	int64_t version;
	char id[EVS_UUID_STRLEN + 1];
} feed_row;

static feed_row *load_feed(PGconn *conn, const char *category, size_t *n)
{
	char sql[512];
	PGresult *res;
	feed_row *rows;
	int i;

	snprintf(sql, sizeof(sql), "SELECT transaction_id, global_position, "
	         "stream_id, version, event_id FROM %s.events WHERE "
	         "split_part(stream_id, '-', 1) = '%s' "
	         "ORDER BY transaction_id, global_position", qs(), category);
	res = PQexec(conn, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
	              PQerrorMessage(conn));
	*n = (size_t)PQntuples(res);
	rows = calloc(*n + 1, sizeof(*rows));
	ck_assert_ptr_nonnull(rows);
	for (i = 0; i < PQntuples(res); i++) {
		rows[i].at.commit = strtoull(PQgetvalue(res, i, 0), NULL, 10);
		rows[i].at.global = strtoll(PQgetvalue(res, i, 1), NULL, 10);
		snprintf(rows[i].stream, sizeof(rows[i].stream), "%s",
		         PQgetvalue(res, i, 2));
		rows[i].version = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		snprintf(rows[i].id, sizeof(rows[i].id), "%s",
		         PQgetvalue(res, i, 4));
	}
	PQclear(res);
	return rows;
}

/* Index of the first feed row after `at` (n: none). */
static size_t feed_after(const feed_row *rows, size_t n,
                         const evs_position *at)
{
	size_t lo = 0, hi = n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (pos_cmp(&rows[mid].at, at) <= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Index of the feed row at `at` exactly, or -1. */
static long feed_index(const feed_row *rows, size_t n, const evs_position *at)
{
	size_t i = feed_after(rows, n, at);

	return i > 0 && pos_cmp(&rows[i - 1].at, at) == 0 ? (long)i - 1 : -1;
}

/* ---- writers ------------------------------------------------------------ */

/* Raw sessions appending to the streams of one category in explicit
 * transactions: at any version, "stream exists", at the version just
 * read (a conflict then rolls back), or creating a stream; sometimes two
 * streams in one transaction; one in ten rolled back; some events to
 * another category whose name starts like this one's. Thread 0 holds its
 * first transaction open for hold_ms while the others commit. They run
 * until `stop`. Lives in shared memory when the threads run in a process
 * of their own. */
#define MAX_WRITERS 4

typedef struct writers {
	char cat[48];
	int n_streams;       /* cat-0 ... made before the writers start */
	int threads;
	int hold_ms;
	int pause_max_ms;    /* between transactions */
	atomic_int stop;
	atomic_int held;     /* the long transaction committed */
	atomic_long committed;   /* events of cat committed */
	atomic_long txns, rolled_back, conflicts, created, noise, doubles;
	atomic_long modes[3];    /* any, exists, exact */
	char error[MAX_WRITERS][400];
} writers;

typedef struct writer_arg {
	writers *w;
	int index;
} writer_arg;

static int writer_txn(writers *w, int index, PGconn *conn, uint64_t *rng,
                      long t, char *why, size_t why_size)
{
	char stream[96], second[96];
	const char *verdict;
	long long expected, v;
	int status = -1, n = (int)rand_between(rng, 1, 3), mode = -1;
	int hold = index == 0 && t == 0 && w->hold_ms > 0;
	int two = 0, noise = 0, rollback = next_rand(rng) % 10 == 0 && !hold;
	long pick = (long)(next_rand(rng) % 20);
	PGresult *res;

	res = PQexec(conn, "BEGIN; SELECT pg_current_xact_id()");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(why, why_size, "BEGIN: %s", PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	if (next_rand(rng) % 2)
		sleep_ms(rand_between(rng, 0, 2));
	if (pick == 0) {
		snprintf(stream, sizeof(stream), "%s-w%dn%ld", w->cat, index, t);
		expected = -1;
	} else if (pick == 1) {
		snprintf(stream, sizeof(stream), "%sx-%ld", w->cat,
		         (long)(next_rand(rng) % 3));
		expected = EVS_ANY_VERSION;
		noise = 1;
	} else {
		snprintf(stream, sizeof(stream), "%s-%ld", w->cat,
		         (long)(next_rand(rng) % (uint64_t)w->n_streams));
		mode = (int)(next_rand(rng) % 3);
		if (mode == 0) {
			expected = EVS_ANY_VERSION;
		} else if (mode == 1) {
			expected = EVS_STREAM_EXISTS;
		} else {
			char sql[256];
			const char *params[1] = {stream};

			snprintf(sql, sizeof(sql), "SELECT version FROM "
			         "%s.streams WHERE stream_id = $1", qs());
			res = PQexecParams(conn, sql, 1, NULL, params, NULL,
			                   NULL, 0);
			if (PQresultStatus(res) != PGRES_TUPLES_OK ||
			    PQntuples(res) != 1) {
				snprintf(why, why_size, "version of %s: %s",
				         stream, PQerrorMessage(conn));
				PQclear(res);
				return -1;
			}
			expected = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
			PQclear(res);
			if (next_rand(rng) % 2)
				sleep_ms(1);
		}
		atomic_fetch_add(&w->modes[mode], 1);
		two = next_rand(rng) % 4 == 0;
	}
	if (raw_append(conn, stream, expected, n, "T", &status, &v, why,
	               why_size) < 0)
		return -1;
	if (status == 2 && mode == 2) {
		atomic_fetch_add(&w->conflicts, 1);
		rollback = 1;
	} else if (status != 0) {
		snprintf(why, why_size, "append_events(%s, %lld): status %d",
		         stream, expected, status);
		return -1;
	}
	if (two) {
		snprintf(second, sizeof(second), "%s-%ld", w->cat,
		         (long)(next_rand(rng) % (uint64_t)w->n_streams));
		/* Row locks in name order: two such transactions never
		 * deadlock. */
		two = strcmp(second, stream) > 0;
	}
	if (two) {
		if (raw_append(conn, second, EVS_ANY_VERSION, 1, "T", &status,
		               &v, why, why_size) < 0)
			return -1;
		if (status != 0) {
			snprintf(why, why_size, "append_events(%s, any): status "
			         "%d", second, status);
			return -1;
		}
	}
	if (hold) {
		/* Open, with an xid and events, while the others commit. */
		sleep_ms(w->hold_ms);
	} else if (next_rand(rng) % 3 == 0) {
		sleep_ms(rand_between(rng, 0, 2));
	}
	verdict = rollback ? "ROLLBACK" : "COMMIT";
	res = PQexec(conn, verdict);
	if (PQresultStatus(res) != PGRES_COMMAND_OK ||
	    strcmp(PQcmdStatus(res), verdict) != 0) {
		snprintf(why, why_size, "%s: %s (%s)", verdict,
		         PQerrorMessage(conn), PQcmdStatus(res));
		PQclear(res);
		return -1;
	}
	PQclear(res);
	atomic_fetch_add(&w->txns, 1);
	if (hold)
		atomic_store(&w->held, 1);
	if (rollback) {
		atomic_fetch_add(&w->rolled_back, 1);
	} else if (noise) {
		atomic_fetch_add(&w->noise, n);
	} else {
		atomic_fetch_add(&w->committed, n + two);
		if (pick == 0)
			atomic_fetch_add(&w->created, 1);
		if (two)
			atomic_fetch_add(&w->doubles, 1);
	}
	return 0;
}

static void *writer_main(void *arg)
{
	writer_arg *a = arg;
	writers *w = a->w;
	char *why = w->error[a->index];
	uint64_t rng = seed_for(100 + a->index);
	PGconn *conn = connect_named("evs-subs-writer");
	long t;

	if (PQstatus(conn) != CONNECTION_OK)
		snprintf(why, sizeof(w->error[0]), "connect: %s",
		         PQerrorMessage(conn));
	for (t = 0; why[0] == '\0' && !atomic_load(&w->stop); t++) {
		if (writer_txn(w, a->index, conn, &rng, t, why,
		               sizeof(w->error[0])) < 0)
			break;
		sleep_ms(rand_between(&rng, 0, w->pause_max_ms));
	}
	/* Closing rolls back whatever an error left open. */
	PQfinish(conn);
	return NULL;
}

/* Makes the category's first streams (one event each). */
static void writers_prepare(writers *w, PGconn *conn, const char *cat,
                            int n_streams, int threads, int hold_ms,
                            int pause_max_ms)
{
	char stream[96];
	int s;

	snprintf(w->cat, sizeof(w->cat), "%s", cat);
	w->n_streams = n_streams;
	w->threads = threads;
	w->hold_ms = hold_ms;
	w->pause_max_ms = pause_max_ms;
	for (s = 0; s < n_streams; s++) {
		snprintf(stream, sizeof(stream), "%s-%d", cat, s);
		raw_append_ok(conn, stream, -1, 1);
	}
	atomic_store(&w->committed, n_streams);
}

static void writers_start(writers *w, pthread_t *th, writer_arg *args)
{
	int i;

	for (i = 0; i < w->threads; i++) {
		args[i].w = w;
		args[i].index = i;
		if (pthread_create(&th[i], NULL, writer_main, &args[i]) != 0)
			abort();
	}
}

static void writers_join(writers *w, pthread_t *th)
{
	int i;

	atomic_store(&w->stop, 1);
	for (i = 0; i < w->threads; i++)
		pthread_join(th[i], NULL);
}

/* The writers' threads in a process of their own: it ends when `stop`
 * is set, and exits 1 when a writer failed. */
static pid_t writers_fork(writers *w)
{
	pid_t pid = fork_child();

	if (pid == 0) {
		pthread_t th[MAX_WRITERS];
		writer_arg args[MAX_WRITERS];
		int i, failed = 0;

		child_init(120);
		writers_start(w, th, args);
		for (i = 0; i < w->threads; i++)
			pthread_join(th[i], NULL);
		for (i = 0; i < w->threads; i++)
			failed |= w->error[i][0] != '\0';
		_exit(failed);
	}
	return pid;
}

static void writers_check(writers *w, PGconn *conn)
{
	long long stored;
	int i;

	for (i = 0; i < w->threads; i++)
		ck_assert_msg(w->error[i][0] == '\0', "writer %d: %s", i,
		              w->error[i]);
	stored = sql_ll(conn, "SELECT count(*) FROM %s.events WHERE "
	                "split_part(stream_id, '-', 1) = '%s'", qs(), w->cat);
	ck_assert_msg(stored == atomic_load(&w->committed),
	              "the writers committed %ld events of %s, the table "
	              "holds %lld", atomic_load(&w->committed), w->cat,
	              stored);
	if (w->hold_ms > 0)
		ck_assert_msg(atomic_load(&w->held), "the long transaction "
		              "never committed");
}

static void writers_report(const char *test, writers *w)
{
	fprintf(stderr, "subs: %s: writers: %ld transactions (%ld any, %ld "
	        "exists, %ld exact; %ld conflicts, %ld rolled back, %ld "
	        "streams made, %ld two-stream), %ld events of the category, "
	        "%ld elsewhere\n", test, atomic_load(&w->txns),
	        atomic_load(&w->modes[0]), atomic_load(&w->modes[1]),
	        atomic_load(&w->modes[2]), atomic_load(&w->conflicts),
	        atomic_load(&w->rolled_back), atomic_load(&w->created),
	        atomic_load(&w->doubles), atomic_load(&w->committed),
	        atomic_load(&w->noise));
}

/* ---- subscribers in child processes ------------------------------------ */

/* What a subscriber instance tells the test (shared memory). */
typedef struct sub_shared {
	atomic_int opened, active_at_open;
	atomic_int in_handler;   /* inside the handler now */
	atomic_long batches;     /* handler calls that returned 0 */
	atomic_long handled;     /* their events */
	atomic_int error_set;
	char error[700];
} sub_shared;

/* One subscriber instance: its options, and where its handler writes. */
typedef struct sub_proc {
	char name[64];      /* the subscription's */
	char cat[48];       /* its category */
	char table[64];     /* read model: <table>_ev (and <table>_st) */
	char app[80];       /* application_name of its sessions */
	unsigned int mode, batch_max, checkpoint_every, lease_ms;
	int instance;
	int work_ms;        /* the handler's "work", after its writes */
	sub_shared *sh;
	PGconn *own;        /* at-least-once: the handler's own session */
} sub_proc;

static void shared_error(sub_shared *sh, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void shared_error(sub_shared *sh, const char *fmt, ...)
{
	int expected = 0;
	va_list ap;

	if (!atomic_compare_exchange_strong(&sh->error_set, &expected, 1))
		return;
	va_start(ap, fmt);
	vsnprintf(sh->error, sizeof(sh->error), fmt, ap);
	va_end(ap);
}

/* Transactional: on the batch's connection, each event goes into
 * <table>_ev (event_id UNIQUE) and moves its stream's max version in
 * <table>_st, which must grow by exactly one (0 for a new stream). */
static int tx_handler(evs_sub_batch *batch, void *payload, evs_error *err)
{
	sub_proc *p = payload;
	PGconn *conn = (PGconn *)evs_sub_batch_conn(batch);
	size_t i, n = evs_sub_batch_count(batch);
	char sql[1024];

	atomic_store(&p->sh->in_handler, 1);
	if (conn == NULL) {
		shared_error(p->sh, "instance %d: no batch connection in "
		             "transactional mode", p->instance);
		atomic_store(&p->sh->in_handler, 0);
		return evs_error_set(err, EVS_ERROR, NULL, "no connection");
	}
	snprintf(sql, sizeof(sql),
	         "WITH e AS (INSERT INTO %s.%s_ev (event_id, stream_id, "
	         "version) VALUES ($1::uuid, $2::text, $3::int8)) "
	         "INSERT INTO %s.%s_st AS s (stream_id, max_version) "
	         "VALUES ($2::text, $3::int8) ON CONFLICT (stream_id) DO "
	         "UPDATE SET max_version = excluded.max_version WHERE "
	         "s.max_version = excluded.max_version - 1 "
	         "RETURNING (s.xmax = 0)::int",
	         qs(), p->table, qs(), p->table);
	for (i = 0; i < n; i++) {
		const evs_event *ev = evs_sub_batch_get(batch, i);
		char id[EVS_UUID_STRLEN + 1], version[24];
		const char *params[3] = {id, evs_event_aggregate_id(ev),
		                         version};
		PGresult *res;
		int ok;

		evs_uuid_format(id, evs_event_id(ev));
		snprintf(version, sizeof(version), "%lld",
		         (long long)evs_event_version(ev));
		res = PQexecParams(conn, sql, 3, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_TUPLES_OK) {
			const char *state =
				PQresultErrorField(res, PG_DIAG_SQLSTATE);

			shared_error(p->sh, "instance %d: read model write of "
			             "%s v%s (%s) failed: SQLSTATE %s: %s",
			             p->instance, params[1], version, id,
			             state ? state : "?", PQerrorMessage(conn));
			PQclear(res);
			atomic_store(&p->sh->in_handler, 0);
			return evs_error_set(err, EVS_ERROR, NULL,
			                     "read model write failed");
		}
		ok = PQntuples(res) == 1 &&
		     (strcmp(PQgetvalue(res, 0, 0), "0") == 0 ||
		      evs_event_version(ev) == 0);
		PQclear(res);
		if (!ok) {
			shared_error(p->sh, "instance %d: %s v%s does not follow "
			             "the stream's last handled version: out of "
			             "version order", p->instance, params[1],
			             version);
			atomic_store(&p->sh->in_handler, 0);
			return evs_error_set(err, EVS_ERROR, NULL,
			                     "out of version order");
		}
	}
	sleep_ms(p->work_ms);
	atomic_fetch_add(&p->sh->handled, (long)n);
	atomic_fetch_add(&p->sh->batches, 1);
	atomic_store(&p->sh->in_handler, 0);
	return 0;
}

/* At-least-once: after its "work", the batch goes, in one autocommitted
 * statement on the instance's own session, into <table>_ev (no unique
 * key), with the instance's number and each event's feed position. */
static int alo_handler(evs_sub_batch *batch, void *payload, evs_error *err)
{
	sub_proc *p = payload;
	size_t i, n = evs_sub_batch_count(batch), o = 0, cap = 256 + n * 200;
	char *sql = malloc(cap);
	PGresult *res;

	if (sql == NULL)
		return EVS_ENOMEM;
	atomic_store(&p->sh->in_handler, 1);
	o += (size_t)snprintf(sql, cap, "INSERT INTO %s.%s_ev (event_id, "
	                      "instance, commit_key, global_pos, stream_id, "
	                      "version) VALUES ", qs(), p->table);
	for (i = 0; i < n; i++) {
		const evs_event *ev = evs_sub_batch_get(batch, i);
		char id[EVS_UUID_STRLEN + 1];
		evs_position at;

		evs_uuid_format(id, evs_event_id(ev));
		evs_event_checkpoint(&at, ev);
		/* Our stream ids hold letters, digits and '-' only. */
		o += (size_t)snprintf(sql + o, cap - o,
		                      "%s('%s', %d, %llu, %lld, '%s', %lld)",
		                      i ? ", " : "", id, p->instance,
		                      (unsigned long long)at.commit,
		                      (long long)at.global,
		                      evs_event_aggregate_id(ev),
		                      (long long)evs_event_version(ev));
	}
	sleep_ms(p->work_ms);
	res = PQexec(p->own, sql);
	free(sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		shared_error(p->sh, "instance %d: read model write failed: %s",
		             p->instance, PQerrorMessage(p->own));
		PQclear(res);
		atomic_store(&p->sh->in_handler, 0);
		return evs_error_set(err, EVS_ERROR, NULL,
		                     "read model write failed");
	}
	PQclear(res);
	atomic_fetch_add(&p->sh->handled, (long)n);
	atomic_fetch_add(&p->sh->batches, 1);
	atomic_store(&p->sh->in_handler, 0);
	return 0;
}

static evs_sub_handler handler_of(const sub_proc *p)
{
	return p->mode == EVS_SUB_TRANSACTIONAL ? tx_handler : alo_handler;
}

static void sub_options(evs_sub_options *o, const sub_proc *p)
{
	evs_sub_options init = EVS_SUB_OPTIONS_INIT;

	*o = init;
	o->name = p->name;
	o->category = p->cat;
	o->mode = p->mode;
	o->batch_max = p->batch_max;
	o->checkpoint_every = p->checkpoint_every;
	o->poll_min_ms = 10;
	o->poll_max_ms = 100;
	o->lease_ms = p->lease_ms;
}

static evs_sub *volatile child_sub;

static void on_sigterm(int sig)
{
	evs_sub *sub = child_sub;

	(void)sig;
	if (sub != NULL)
		evs_sub_stop(sub);
}

/* A subscriber process: runs the subscription until SIGTERM (or its
 * death); on any failure, says why in shared memory and exits 2. */
static void sub_child(sub_proc *p) __attribute__((noreturn));

static void sub_child(sub_proc *p)
{
	evs_error err = EVS_ERROR_INIT;
	evs_sub_options o;
	evs_store *store = NULL;
	evs_sub *sub = NULL;
	struct sigaction sa;
	int rc;

	child_init(120);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigterm;
	sigaction(SIGTERM, &sa, NULL);
	if (store_open_as(&store, pg_test_dsn(), p->app, 2, 0, NULL, NULL,
	                  &err) < 0) {
		shared_error(p->sh, "instance %d: open store: %s", p->instance,
		             err.message);
		_exit(2);
	}
	if (p->mode == EVS_SUB_AT_LEAST_ONCE) {
		p->own = connect_named(p->app);
		if (PQstatus(p->own) != CONNECTION_OK) {
			shared_error(p->sh, "instance %d: connect: %s",
			             p->instance, PQerrorMessage(p->own));
			_exit(2);
		}
	}
	sub_options(&o, p);
	rc = evs_sub_open(&sub, store, &o, &err);
	if (rc < 0) {
		shared_error(p->sh, "instance %d: evs_sub_open: %d %s",
		             p->instance, rc, err.message);
		_exit(2);
	}
	atomic_store(&p->sh->active_at_open, evs_sub_active(sub));
	atomic_store(&p->sh->opened, 1);
	child_sub = sub;
	rc = evs_sub_run(sub, handler_of(p), p, &err);
	child_sub = NULL;
	if (rc != 0) {
		shared_error(p->sh, "instance %d: evs_sub_run: %d %s",
		             p->instance, rc, err.message ? err.message : "");
		_exit(2);
	}
	evs_sub_free(sub);
	evs_store_free(store);
	PQfinish(p->own);
	evs_error_clear(&err);
	_exit(0);
}

static pid_t sub_fork(sub_proc *p)
{
	pid_t pid = fork_child();

	if (pid == 0)
		sub_child(p);
	return pid;
}

typedef struct kill_stats {
	int kills;
	int in_handler;    /* killed inside the handler's transaction */
	int after_batch;   /* killed just after a handler returned */
	int standby;       /* killed before it ever handled a batch */
	int after_store;   /* in the first handler after a stored checkpoint */
} kill_stats;

/* Runs instance after instance of base, each in a child process, and
 * SIGKILLs each: k % 3 (at-least-once: k % 4) == 0 after a random 100 to
 * 1000 ms; 1 inside its handler (after some writes); 2 right after a
 * handler returned (the checkpoint and COMMIT in flight); 3 inside the
 * first handler call after its stored checkpoint moved. After each kill,
 * waits until the killed instance's sessions are gone, then calls
 * after(k, arg). */
static void kill_instances(const sub_proc *base, int kills, PGconn *admin,
                           uint64_t *rng, kill_stats *ks,
                           void (*after)(int k, void *arg), void *arg)
{
	sub_shared *sh = base->sh;
	int k;

	memset(ks, 0, sizeof(*ks));
	for (k = 0; k < kills; k++) {
		sub_proc p = *base;
		int64_t start, until, bound;
		long batches0 = 0;
		int how = k % (base->mode == EVS_SUB_AT_LEAST_ONCE ? 4 : 3);
		int status, inside;
		char stored0[64] = "";
		pid_t pid, r;

		snprintf(p.app, sizeof(p.app), "%s-i%d", base->name, k);
		p.instance = k;
		atomic_store(&sh->in_handler, 0);
		atomic_store(&sh->batches, 0);
		atomic_store(&sh->handled, 0);
		atomic_store(&sh->opened, 0);
		pid = sub_fork(&p);
		start = now_ms();
		until = start + rand_between(rng, 100, 1000);
		bound = start + 5000;
		for (;;) {
			int64_t t = now_ms();

			r = waitpid(pid, &status, WNOHANG);
			ck_assert_msg(r == 0, "instance %d ended by itself "
			              "(status 0x%x): %s", k, status,
			              sh->error);
			if (t > bound)
				break;
			if (how == 0 && t >= until)
				break;
			if (how == 1 && atomic_load(&sh->in_handler))
				break;
			if (how == 2) {
				long b = atomic_load(&sh->batches);

				if (batches0 == 0 && b > 0)
					batches0 = b;
				else if (batches0 > 0 && b > batches0)
					break;
			}
			if (how == 3 && atomic_load(&sh->batches) > 0) {
				const char *at = sqlf(admin, "SELECT coalesce("
				                      "position, 0) FROM "
				                      "%s.subscriptions WHERE "
				                      "name = '%s'", qs(),
				                      base->name);

				if (stored0[0] == '\0') {
					snprintf(stored0, sizeof(stored0), "%s",
					         at);
				} else if (strcmp(stored0, at) != 0) {
					/* Moved: into the next handler. */
					while (!atomic_load(&sh->in_handler) &&
					       now_ms() < bound)
						sleep_us(100);
					break;
				}
				continue;
			}
			sleep_ms(1);
		}
		if (how == 1 || how == 3)
			sleep_ms(rand_between(rng, 0, p.work_ms));
		inside = atomic_load(&sh->in_handler);
		kill(pid, SIGKILL);
		status = reap(pid, 10000, "a killed subscriber");
		ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL,
		              "instance %d ended with status 0x%x before its "
		              "kill: %s", k, status, sh->error);
		ck_assert_msg(!atomic_load(&sh->error_set), "instance %d: %s",
		              k, sh->error);
		ks->kills++;
		if (atomic_load(&sh->batches) == 0 && !inside)
			ks->standby++;
		else if (inside)
			ks->in_handler++;
		else if (how == 2)
			ks->after_batch++;
		if (how == 3 && inside)
			ks->after_store++;
		wait_sessions_gone(admin, p.app, 10000);
		if (after != NULL)
			after(k, arg);
	}
}

/* Runs p in this process until its position reaches the end of its
 * category's feed (the writers are done), then frees it. */
static void catch_up(sub_proc *p, PGconn *admin, int timeout_ms)
{
	evs_error err = EVS_ERROR_INIT;
	evs_position target = feed_last(admin, p->cat), at;
	int64_t end = now_ms() + timeout_ms;
	evs_sub_options o;
	evs_store *store;
	evs_sub *sub = NULL;
	int rc;

	snprintf(p->app, sizeof(p->app), "%s-final", p->name);
	store = store_open(p->app, 2, 0);
	if (p->mode == EVS_SUB_AT_LEAST_ONCE) {
		p->own = connect_named(p->app);
		ck_assert_msg(PQstatus(p->own) == CONNECTION_OK, "connect: %s",
		              PQerrorMessage(p->own));
	}
	sub_options(&o, p);
	rc = evs_sub_open(&sub, store, &o, &err);
	ck_assert_msg(rc == 0, "evs_sub_open: %d %s", rc, err.message);
	for (;;) {
		rc = evs_sub_poll(sub, 0, handler_of(p), p, &err);
		ck_assert_msg(rc >= 0 || rc == EVS_EUNAVAILABLE ||
		              rc == EVS_ETIMEOUT, "evs_sub_poll: %d %s (%s)",
		              rc, err.message, p->sh->error);
		evs_sub_position(sub, &at);
		if (evs_sub_active(sub) && pos_cmp(&at, &target) >= 0)
			break;
		ck_assert_msg(now_ms() < end, "the last instance did not catch "
		              "up within %d ms: at %llu/%lld, the feed ends at "
		              "%llu/%lld", timeout_ms,
		              (unsigned long long)at.commit,
		              (long long)at.global,
		              (unsigned long long)target.commit,
		              (long long)target.global);
		if (rc == 0) {
			int t = evs_sub_timeout_ms(sub);

			poll(NULL, 0, t > 100 ? 100 : t);
		}
	}
	ck_assert_msg(pos_cmp(&at, &target) == 0, "the last instance went "
	              "past the feed's end");
	evs_sub_free(sub);
	evs_store_free(store);
	PQfinish(p->own);
	p->own = NULL;
	evs_error_clear(&err);
}

/* ---- 1: transactional, SIGKILLed ---------------------------------------- */

#define KILLS 12

START_TEST(transactional_subscriber_survives_sigkill)
{
	PGconn *admin = pg_test_connect();
	writers *w = shared_new(sizeof(*w));
	sub_shared *sh = shared_new(sizeof(*sh));
	uint64_t rng = seed_for(1);
	int64_t start = now_ms();
	kill_stats ks;
	sub_proc p;
	char cat[48];
	long long events, rows, diff, first_diff, streams_off;
	int status;
	pid_t wpid;

	make_tag(cat, sizeof(cat), "tx");
	sqlf(admin, "CREATE TABLE %s.%s_ev (seq bigserial PRIMARY KEY, "
	     "event_id uuid NOT NULL UNIQUE, stream_id text NOT NULL, "
	     "version bigint NOT NULL)", qs(), cat);
	sqlf(admin, "CREATE TABLE %s.%s_st (stream_id text PRIMARY KEY, "
	     "max_version bigint NOT NULL)", qs(), cat);
	writers_prepare(w, admin, cat, 8, 3, 2000, 15);
	wpid = writers_fork(w);

	memset(&p, 0, sizeof(p));
	snprintf(p.name, sizeof(p.name), "%s", cat);
	snprintf(p.cat, sizeof(p.cat), "%s", cat);
	snprintf(p.table, sizeof(p.table), "%s", cat);
	p.mode = EVS_SUB_TRANSACTIONAL;
	p.batch_max = 10;
	p.lease_ms = 300;
	p.work_ms = 3;
	p.sh = sh;
	kill_instances(&p, KILLS, admin, &rng, &ks, NULL, NULL);

	atomic_store(&w->stop, 1);
	status = reap(wpid, 30000, "the writers");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "writers: status 0x%x: %s | %s | %s", status,
	              w->error[0], w->error[1], w->error[2]);
	writers_check(w, admin);

	p.instance = KILLS;
	catch_up(&p, admin, 30000);
	ck_assert_msg(!atomic_load(&sh->error_set), "%s", sh->error);

	/* The read model is the category's feed: every event once, in the
	 * feed's order (hence each stream in version order), and each
	 * stream's max version is the stream's. */
	events = sql_ll(admin, "SELECT count(*) FROM %s.events WHERE "
	                "split_part(stream_id, '-', 1) = '%s'", qs(), cat);
	rows = sql_ll(admin, "SELECT count(*) FROM %s.%s_ev", qs(), cat);
	diff = sql_ll(admin, "SELECT count(*) FROM (SELECT event_id, "
	              "row_number() OVER (ORDER BY seq) AS r FROM %s.%s_ev) a "
	              "FULL JOIN (SELECT event_id, row_number() OVER (ORDER "
	              "BY transaction_id, global_position) AS r FROM "
	              "%s.events WHERE split_part(stream_id, '-', 1) = '%s') "
	              "b ON a.r = b.r WHERE a.event_id IS DISTINCT FROM "
	              "b.event_id", qs(), cat, qs(), cat);
	first_diff = sql_ll(admin, "SELECT coalesce(min(r), -1) FROM (SELECT "
	                    "coalesce(a.r, b.r) AS r FROM (SELECT event_id, "
	                    "row_number() OVER (ORDER BY seq) AS r FROM "
	                    "%s.%s_ev) a FULL JOIN (SELECT event_id, "
	                    "row_number() OVER (ORDER BY transaction_id, "
	                    "global_position) AS r FROM %s.events WHERE "
	                    "split_part(stream_id, '-', 1) = '%s') b ON "
	                    "a.r = b.r WHERE a.event_id IS DISTINCT FROM "
	                    "b.event_id) d", qs(), cat, qs(), cat);
	streams_off = sql_ll(admin, "SELECT count(*) FROM (SELECT * FROM "
	                     "%s.streams WHERE split_part(stream_id, '-', 1) "
	                     "= '%s') s FULL JOIN %s.%s_st m USING "
	                     "(stream_id) WHERE s.version IS DISTINCT FROM "
	                     "m.max_version", qs(), cat, qs(), cat);
	ck_assert_msg(rows == events && diff == 0 && streams_off == 0,
	              "read model against the feed: %lld rows for %lld "
	              "events, %lld positions differ (first at row %lld), "
	              "%lld streams' versions differ", rows, events, diff,
	              first_diff, streams_off);
	ck_assert_msg(ks.in_handler + ks.after_batch > 0, "no kill landed "
	              "inside a handler's transaction or at its commit");
	writers_report("transactional_subscriber_survives_sigkill", w);
	fprintf(stderr, "subs: transactional_subscriber_survives_sigkill: "
	        "%lld events handled exactly once in feed order across %d "
	        "SIGKILLs (%d inside the handler's transaction, %d at its "
	        "commit, %d before any batch); %.1f s\n", events, ks.kills,
	        ks.in_handler, ks.after_batch, ks.standby,
	        (double)(now_ms() - start) / 1000.0);
	munmap(w, sizeof(*w));
	munmap(sh, sizeof(*sh));
	PQfinish(admin);
}
END_TEST

/* ---- 2: at-least-once, SIGKILLed ---------------------------------------- */

typedef struct alo_ctx {
	PGconn *admin;
	const char *name;
	evs_position cp[KILLS]; /* the checkpoint after each kill */
} alo_ctx;

static evs_position stored_checkpoint(PGconn *admin, const char *name)
{
	evs_position p = {0, 0};
	char sql[512];
	PGresult *res;

	snprintf(sql, sizeof(sql), "SELECT coalesce(commit_xid::text, '0'), "
	         "coalesce(position, 0) FROM %s.subscriptions WHERE name = "
	         "'%s' AND member = 0", qs(), name);
	res = PQexec(admin, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
	              PQerrorMessage(admin));
	if (PQntuples(res) == 1) {
		p.commit = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
		p.global = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	}
	PQclear(res);
	return p;
}

static void alo_after_kill(int k, void *arg)
{
	alo_ctx *c = arg;

	c->cp[k] = stored_checkpoint(c->admin, c->name);
}

START_TEST(at_least_once_subscriber_survives_sigkill)
{
	PGconn *admin = pg_test_connect();
	writers *w = shared_new(sizeof(*w));
	sub_shared *sh = shared_new(sizeof(*sh));
	uint64_t rng = seed_for(2);
	int64_t start = now_ms();
	size_t n_feed, i, seg_start[KILLS + 1], seg_len[KILLS + 1];
	long redelivered[KILLS], total_dup = 0, worst = 0;
	feed_row *feed;
	kill_stats ks;
	alo_ctx ctx;
	sub_proc p;
	char cat[48], sql[512];
	PGresult *res;
	int status, k, last_instance = 0, rows;
	pid_t wpid;

	make_tag(cat, sizeof(cat), "alo");
	sqlf(admin, "CREATE TABLE %s.%s_ev (seq bigserial PRIMARY KEY, "
	     "event_id uuid NOT NULL, instance int NOT NULL, commit_key "
	     "int8 NOT NULL, global_pos int8 NOT NULL, stream_id text NOT "
	     "NULL, version int8 NOT NULL)", qs(), cat);
	writers_prepare(w, admin, cat, 8, 3, 2000, 15);
	wpid = writers_fork(w);

	memset(&p, 0, sizeof(p));
	snprintf(p.name, sizeof(p.name), "%s", cat);
	snprintf(p.cat, sizeof(p.cat), "%s", cat);
	snprintf(p.table, sizeof(p.table), "%s", cat);
	p.mode = EVS_SUB_AT_LEAST_ONCE;
	p.batch_max = 10;
	p.checkpoint_every = 50;
	p.lease_ms = 300;
	p.work_ms = 3;
	p.sh = sh;
	memset(&ctx, 0, sizeof(ctx));
	ctx.admin = admin;
	ctx.name = cat;
	kill_instances(&p, KILLS, admin, &rng, &ks, alo_after_kill, &ctx);

	atomic_store(&w->stop, 1);
	status = reap(wpid, 30000, "the writers");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "writers: status 0x%x: %s | %s | %s", status,
	              w->error[0], w->error[1], w->error[2]);
	writers_check(w, admin);
	p.instance = KILLS;
	catch_up(&p, admin, 30000);
	ck_assert_msg(!atomic_load(&sh->error_set), "%s", sh->error);

	/* Each instance handed out one run of the feed, in its order,
	 * starting right after the checkpoint its predecessor left stored;
	 * that checkpoint is never beyond what the predecessor handled, and
	 * what it handled past it (handed out again) is at most
	 * checkpoint_every + batch_max events. */
	feed = load_feed(admin, cat, &n_feed);
	memset(seg_len, 0, sizeof(seg_len));
	for (k = 0; k <= KILLS; k++)
		seg_start[k] = k == 0 ? 0
		                      : feed_after(feed, n_feed, &ctx.cp[k - 1]);
	snprintf(sql, sizeof(sql), "SELECT instance, commit_key, global_pos "
	         "FROM %s.%s_ev ORDER BY seq", qs(), cat);
	res = PQexec(admin, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s",
	              PQerrorMessage(admin));
	rows = PQntuples(res);
	for (i = 0; i < (size_t)rows; i++) {
		int inst = atoi(PQgetvalue(res, (int)i, 0));
		evs_position at;
		long idx;

		at.commit = strtoull(PQgetvalue(res, (int)i, 1), NULL, 10);
		at.global = strtoll(PQgetvalue(res, (int)i, 2), NULL, 10);
		idx = feed_index(feed, n_feed, &at);
		ck_assert_msg(inst >= last_instance && inst <= KILLS,
		              "row %zu: instance %d after %d", i, inst,
		              last_instance);
		last_instance = inst;
		ck_assert_msg(idx >= 0, "instance %d handled %llu/%lld, which "
		              "is not in the feed", inst,
		              (unsigned long long)at.commit, (long long)at.global);
		ck_assert_msg((size_t)idx == seg_start[inst] + seg_len[inst],
		              "instance %d's event %zu is feed row %ld; expected "
		              "row %zu (it started after the checkpoint at feed "
		              "row %zu)", inst, seg_len[inst], idx,
		              seg_start[inst] + seg_len[inst], seg_start[inst]);
		seg_len[inst]++;
	}
	PQclear(res);
	for (k = 0; k < KILLS; k++) {
		size_t end = seg_start[k] + seg_len[k];
		size_t next = seg_start[k + 1];

		ck_assert_msg(next >= seg_start[k] && next <= end,
		              "instance %d handled feed rows %zu to %zu, and "
		              "left a checkpoint after which its successor "
		              "starts at row %zu: %s", k, seg_start[k], end,
		              next, next > end ? "events skipped"
		                               : "the checkpoint went back");
		redelivered[k] = (long)(end - next);
		total_dup += redelivered[k];
		if (redelivered[k] > worst)
			worst = redelivered[k];
		ck_assert_msg(redelivered[k] <= (long)(p.checkpoint_every +
		                                       p.batch_max),
		              "instance %d handled %ld events past its last "
		              "stored checkpoint (checkpoint_every %u, batch_max "
		              "%u)", k, redelivered[k], p.checkpoint_every,
		              p.batch_max);
	}
	ck_assert_msg(seg_start[KILLS] + seg_len[KILLS] == n_feed,
	              "the last instance ended at feed row %zu of %zu",
	              seg_start[KILLS] + seg_len[KILLS], n_feed);
	ck_assert_msg((size_t)rows == n_feed + (size_t)total_dup,
	              "%d rows for %zu events and %ld handed out again", rows,
	              n_feed, total_dup);
	ck_assert_msg(total_dup > 0, "no kill ever made an instance hand "
	              "events out again: the test proved nothing");
	writers_report("at_least_once_subscriber_survives_sigkill", w);
	fprintf(stderr, "subs: at_least_once_subscriber_survives_sigkill: "
	        "%zu events, none missing, %ld handed out again across %d "
	        "SIGKILLs (at most %ld per kill; %d inside the handler, %d of "
	        "them right after a stored checkpoint, %d after a batch, %d "
	        "before any batch); %.1f s\n", n_feed, total_dup, ks.kills,
	        worst, ks.in_handler, ks.after_store, ks.after_batch,
	        ks.standby, (double)(now_ms() - start) / 1000.0);
	free(feed);
	munmap(w, sizeof(*w));
	munmap(sh, sizeof(*sh));
	PQfinish(admin);
}
END_TEST

/* ---- in-process subscriptions ------------------------------------------- */

/* Copies of the events a handler got, in order. */
typedef struct collected {
	evs_event **ev;
	size_t n, cap;
	long calls;
} collected;

static int collect_handler(evs_sub_batch *batch, void *payload,
                           evs_error *err)
{
	collected *c = payload;
	size_t i, n = evs_sub_batch_count(batch);

	(void)err;
	c->calls++;
	for (i = 0; i < n; i++) {
		if (c->n == c->cap) {
			size_t cap = c->cap ? 2 * c->cap : 64;
			evs_event **p = realloc(c->ev, cap * sizeof(*p));

			if (p == NULL)
				return EVS_ENOMEM;
			c->ev = p;
			c->cap = cap;
		}
		if (evs_event_dup(&c->ev[c->n], evs_sub_batch_get(batch, i),
		                  NULL) < 0)
			return EVS_ENOMEM;
		c->n++;
	}
	return 0;
}

static void collected_free(collected *c)
{
	size_t i;

	for (i = 0; i < c->n; i++)
		evs_event_free(c->ev[i]);
	free(c->ev);
	memset(c, 0, sizeof(*c));
}

/* Polls (waiting as the subscription says between polls) until c holds
 * `want` events or timeout_ms passed; returns how many it holds. */
static size_t poll_for(evs_sub *sub, evs_sub_handler handler, void *payload,
                       const size_t *n, size_t want, int timeout_ms)
{
	evs_error err = EVS_ERROR_INIT;
	int64_t end = now_ms() + timeout_ms;

	for (;;) {
		int rc = evs_sub_poll(sub, 0, handler, payload, &err);

		ck_assert_msg(rc >= 0, "evs_sub_poll: %d %s", rc,
		              err.message ? err.message : "");
		if (*n >= want || now_ms() >= end)
			break;
		if (rc == 0) {
			int t = evs_sub_timeout_ms(sub);

			poll(NULL, 0, t > 20 ? 20 : t);
		}
	}
	evs_error_clear(&err);
	return *n;
}

static evs_sub *sub_open_ok(evs_store *store, const evs_sub_options *o)
{
	evs_error err = EVS_ERROR_INIT;
	evs_sub *sub = NULL;
	int rc = evs_sub_open(&sub, store, o, &err);

	ck_assert_msg(rc == 0, "evs_sub_open: %d %s", rc,
	              err.message ? err.message : "");
	evs_error_clear(&err);
	return sub;
}

static void event_id_text(char *out, const evs_event *ev)
{
	evs_uuid_format(out, evs_event_id(ev));
}

/* ---- 3: a late commit is never skipped ---------------------------------- */

START_TEST(late_commit_is_never_skipped)
{
	PGconn *a = pg_test_connect(), *b = pg_test_connect();
	evs_store *store = store_open(NULL, 2, 0);
	int round;

	for (round = 0; round < 2; round++) {
		evs_sub_options o = EVS_SUB_OPTIONS_INIT;
		const char *verdict = round == 0 ? "COMMIT" : "ROLLBACK";
		char cat[48], stream[96], why[512];
		collected c;
		feed_row *feed;
		evs_feed_info info;
		evs_sub *sub;
		uint64_t xid_a;
		size_t n_feed, i, want;
		long long v;
		int status = -1, k;

		memset(&c, 0, sizeof(c));
		make_tag(cat, sizeof(cat), "late");
		o.category = cat;
		o.batch_max = 100;
		o.poll_min_ms = 5;
		o.poll_max_ms = 20;
		sub = sub_open_ok(store, &o);

		/* P: committed before A begins; the subscription gets it. */
		snprintf(stream, sizeof(stream), "%s-p", cat);
		raw_append_ok(b, stream, -1, 1);
		ck_assert_uint_eq(poll_for(sub, collect_handler, &c, &c.n, 1,
		                           10000), 1);

		/* A: an event in an open transaction, which holds its xid. */
		pg_test_exec(a, "BEGIN");
		snprintf(stream, sizeof(stream), "%s-a", cat);
		ck_assert_msg(raw_append(a, stream, -1, 1, "A", &status, &v, why,
		                         sizeof(why)) == 0, "%s", why);
		ck_assert_int_eq(status, 0);
		xid_a = strtoull(pg_test_exec(a, "SELECT pg_current_xact_id()"),
		                 NULL, 10);
		/* B: three commits after A's xid, on other streams. */
		for (k = 0; k < 3; k++) {
			snprintf(stream, sizeof(stream), "%s-b%d", cat, k);
			raw_append_ok(b, stream, -1, 1);
		}
		ck_assert_int_eq(sql_ll(b, "SELECT count(*) FROM %s.events "
		                        "WHERE split_part(stream_id, '-', 1) = "
		                        "'%s' AND transaction_id <= '%llu'",
		                        qs(), cat,
		                        (unsigned long long)xid_a), 1);
		/* Polls see nothing of A, and nothing keyed above it. */
		ck_assert_int_eq(evs_store_feed_info(&info, store, NULL), 0);
		ck_assert_msg(info.fence <= xid_a, "the fence %llu is above "
		              "A's open xid %llu",
		              (unsigned long long)info.fence,
		              (unsigned long long)xid_a);
		for (k = 0; k < 5; k++) {
			ck_assert_int_ge(evs_sub_poll(sub, 0, collect_handler,
			                              &c, NULL), 0);
			sleep_ms(10);
		}
		for (i = 0; i < c.n; i++) {
			evs_position at;

			evs_event_checkpoint(&at, c.ev[i]);
			ck_assert_msg(at.commit < xid_a, "round %d: delivered "
			              "%s v%lld (key %llu) while A (xid %llu) was "
			              "open", round,
			              evs_event_aggregate_id(c.ev[i]),
			              (long long)evs_event_version(c.ev[i]),
			              (unsigned long long)at.commit,
			              (unsigned long long)xid_a);
		}
		ck_assert_uint_eq(c.n, 1);

		/* A ends; the next polls deliver the rest in feed order. */
		pg_test_exec(a, verdict);
		want = round == 0 ? 5 : 4;
		poll_for(sub, collect_handler, &c, &c.n, want, 10000);
		for (k = 0; k < 3; k++) {
			ck_assert_int_ge(evs_sub_poll(sub, 0, collect_handler,
			                              &c, NULL), 0);
			sleep_ms(5);
		}
		feed = load_feed(b, cat, &n_feed);
		ck_assert_uint_eq(n_feed, want);
		ck_assert_msg(c.n == want, "round %d (A: %s): %zu events "
		              "delivered, the feed holds %zu", round, verdict,
		              c.n, n_feed);
		for (i = 0; i < c.n; i++) {
			char id[EVS_UUID_STRLEN + 1];

			event_id_text(id, c.ev[i]);
			ck_assert_msg(strcmp(id, feed[i].id) == 0,
			              "round %d: event %zu delivered is %s v%lld, "
			              "the feed's is %s v%lld", round, i,
			              evs_event_aggregate_id(c.ev[i]),
			              (long long)evs_event_version(c.ev[i]),
			              feed[i].stream, (long long)feed[i].version);
		}
		if (round == 0) {
			/* A's event comes first: its key is the oldest. */
			ck_assert_str_eq(evs_event_type(c.ev[1]), "A");
			ck_assert_uint_eq(feed[1].at.commit, xid_a);
		} else {
			for (i = 0; i < c.n; i++)
				ck_assert_str_ne(evs_event_type(c.ev[i]), "A");
		}
		free(feed);
		collected_free(&c);
		evs_sub_free(sub);
	}
	evs_store_free(store);
	PQfinish(a);
	PQfinish(b);
}
END_TEST

/* ---- 4: leases ----------------------------------------------------------- */

/* One instance of the lease tests, in a child process. */
typedef struct lease_inst {
	atomic_int opened, active_at_open;
	atomic_int go;           /* A: start polling */
	atomic_int paused;       /* A: stopped itself inside the handler */
	atomic_int done;         /* A: its poll after the pause returned */
	atomic_int poll_rc, active_after, retried;
	atomic_int hold_first;   /* B: wait inside its first batch ... */
	atomic_int in_first;     /* ... (there now) ... */
	atomic_int release;      /* ... until this is set */
	atomic_long events;      /* handled (committed or not) */
	atomic_int error_set;
	char message[400];
	char error[400];
} lease_inst;

typedef struct lease_proc {
	char name[64], cat[48], table[64], app[80];
	unsigned int mode;
	int idx;                 /* 0: A, 1: B */
	int pause_at_batch;      /* A: 2 (0: never) */
	int pause_on_notice;     /* stop at the server's "evs-subs-pause" */
	long batches;
	lease_inst *me;
	PGconn *own;
} lease_proc;

static void lease_error(lease_inst *me, const char *msg, const char *more)
{
	int expected = 0;

	if (atomic_compare_exchange_strong(&me->error_set, &expected, 1))
		snprintf(me->error, sizeof(me->error), "%s%s", msg,
		         more ? more : "");
}

static int wait_flag(atomic_int *flag, int timeout_ms);

/* Writes (event_id, 'A' or 'B') for each event; A stops itself (SIGSTOP)
 * inside its pause_at_batch-th batch, after writing it. */
static int lease_handler(evs_sub_batch *batch, void *payload, evs_error *err)
{
	lease_proc *p = payload;
	PGconn *conn = p->mode == EVS_SUB_TRANSACTIONAL
	                       ? (PGconn *)evs_sub_batch_conn(batch)
	                       : p->own;
	size_t i, n = evs_sub_batch_count(batch);
	char sql[256];

	snprintf(sql, sizeof(sql), "INSERT INTO %s.%s_rm (event_id, inst) "
	         "VALUES ($1::uuid, $2::text)", qs(), p->table);
	for (i = 0; i < n; i++) {
		char id[EVS_UUID_STRLEN + 1];
		const char *params[2] = {id, p->idx == 0 ? "A" : "B"};
		PGresult *res;

		event_id_text(id, evs_sub_batch_get(batch, i));
		res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
		if (PQresultStatus(res) != PGRES_COMMAND_OK) {
			lease_error(p->me, "read model write: ",
			            PQerrorMessage(conn));
			PQclear(res);
			return evs_error_set(err, EVS_ERROR, NULL, "write");
		}
		PQclear(res);
	}
	atomic_fetch_add(&p->me->events, (long)n);
	if (p->batches == 0 && atomic_load(&p->me->hold_first)) {
		/* B took over: it stays in its first batch (its checkpoint
		 * behind A's) until the test has resumed A. */
		atomic_store(&p->me->in_first, 1);
		wait_flag(&p->me->release, 20000);
	}
	if (++p->batches == p->pause_at_batch) {
		atomic_store(&p->me->paused, 1);
		raise(SIGSTOP);
	}
	return 0;
}

/* The log callback of a store whose process stops itself when the server
 * says "evs-subs-pause" (a trigger's NOTICE): inside a statement's
 * reply, with its transaction open. */
static void on_pause_notice(int level, const char *sqlstate,
                            const char *message, void *payload)
{
	lease_inst *me = payload;

	(void)level;
	(void)sqlstate;
	if (strstr(message, "evs-subs-pause") != NULL) {
		atomic_store(&me->paused, 1);
		raise(SIGSTOP);
	}
}

static void lease_options(evs_sub_options *o, const lease_proc *p)
{
	evs_sub_options init = EVS_SUB_OPTIONS_INIT;

	*o = init;
	o->name = p->name;
	o->category = p->cat;
	o->mode = p->mode;
	o->batch_max = 5;
	o->poll_min_ms = 10;
	o->poll_max_ms = 100;
	o->lease_ms = 1000;
}

static void lease_child(lease_proc *p) __attribute__((noreturn));

static void lease_child(lease_proc *p)
{
	evs_error err = EVS_ERROR_INIT;
	evs_sub_options o;
	evs_store *store = NULL;
	evs_sub *sub = NULL;
	struct sigaction sa;
	int64_t end;
	int rc;

	child_init(60);
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigterm;
	sigaction(SIGTERM, &sa, NULL);
	if (store_open_as(&store, pg_test_dsn(), p->app, 2, 0,
	                  p->pause_on_notice ? on_pause_notice : NULL, p->me,
	                  &err) < 0) {
		lease_error(p->me, "open store: ", err.message);
		_exit(2);
	}
	p->own = connect_named(p->app);
	if (PQstatus(p->own) != CONNECTION_OK) {
		lease_error(p->me, "connect: ", PQerrorMessage(p->own));
		_exit(2);
	}
	lease_options(&o, p);
	if ((rc = evs_sub_open(&sub, store, &o, &err)) < 0) {
		lease_error(p->me, "evs_sub_open: ", err.message);
		_exit(2);
	}
	atomic_store(&p->me->active_at_open, evs_sub_active(sub));
	atomic_store(&p->me->opened, 1);
	if (p->idx == 1) {
		/* B: the standby, until the test stops it. */
		child_sub = sub;
		rc = evs_sub_run(sub, lease_handler, p, &err);
		child_sub = NULL;
		if (rc != 0) {
			lease_error(p->me, "evs_sub_run: ", err.message);
			_exit(2);
		}
	} else {
		/* A: polls from "go" until a poll fails (after its pause)
		 * other than for a lost connection, which evs_sub_run()
		 * would retry too (the server may end the session of a
		 * transaction left idle past its lease). */
		end = now_ms() + 30000;
		while (!atomic_load(&p->me->go) && now_ms() < end)
			sleep_ms(1);
		for (;;) {
			rc = evs_sub_poll(sub, 0, lease_handler, p, &err);
			if (rc == EVS_EUNAVAILABLE || rc == EVS_ETIMEOUT)
				atomic_fetch_add(&p->me->retried, 1);
			else if (rc < 0)
				break;
			if (now_ms() > end)
				break;
			poll(NULL, 0, evs_sub_timeout_ms(sub));
		}
		atomic_store(&p->me->poll_rc, rc);
		atomic_store(&p->me->active_after, evs_sub_active(sub));
		snprintf(p->me->message, sizeof(p->me->message), "%s",
		         err.message ? err.message : "");
		atomic_store(&p->me->done, 1);
	}
	evs_sub_free(sub);
	evs_store_free(store);
	PQfinish(p->own);
	evs_error_clear(&err);
	_exit(0);
}

/* Waits (at most timeout_ms) until *flag is nonzero. */
static int wait_flag(atomic_int *flag, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;

	while (!atomic_load(flag) && now_ms() < end)
		sleep_ms(1);
	return atomic_load(flag);
}

static int wait_stopped(pid_t pid, int timeout_ms)
{
	int64_t end = now_ms() + timeout_ms;
	int status = 0;

	while (now_ms() < end) {
		pid_t r = waitpid(pid, &status, WNOHANG | WUNTRACED);

		if (r == pid)
			return WIFSTOPPED(status) ? 1 : -1;
		sleep_ms(1);
	}
	return 0;
}

static void lease_round(PGconn *admin, evs_store *store, unsigned int mode)
{
	const char *mode_name = mode == EVS_SUB_TRANSACTIONAL
	                                ? "transactional"
	                                : "at-least-once";
	lease_inst *sh = shared_new(2 * sizeof(lease_inst));
	lease_proc p[2];
	char cat[48], stream[96], sql[512];
	long long epoch0, epoch1;
	int64_t t_stop, took;
	feed_row *feed;
	size_t n_feed, i, a_rows = mode == EVS_SUB_TRANSACTIONAL ? 5 : 10;
	PGresult *res;
	pid_t pid[2];
	int k, status, stopped;

	make_tag(cat, sizeof(cat), mode == EVS_SUB_TRANSACTIONAL ? "ltx"
	                                                         : "lalo");
	sqlf(admin, "CREATE TABLE %s.%s_rm (seq bigserial PRIMARY KEY, "
	     "event_id uuid NOT NULL, inst text NOT NULL)", qs(), cat);
	for (k = 0; k < 3; k++) {
		snprintf(stream, sizeof(stream), "%s-%d", cat, k);
		lib_append(store, stream, 10, "L");
	}
	for (k = 0; k < 2; k++) {
		memset(&p[k], 0, sizeof(p[k]));
		snprintf(p[k].name, sizeof(p[k].name), "%s", cat);
		snprintf(p[k].cat, sizeof(p[k].cat), "%s", cat);
		snprintf(p[k].table, sizeof(p[k].table), "%s", cat);
		snprintf(p[k].app, sizeof(p[k].app), "%s-%c", cat, 'A' + k);
		p[k].mode = mode;
		p[k].idx = k;
		p[k].pause_at_batch = k == 0 ? 2 : 0;
		p[k].me = &sh[k];
	}
	atomic_store(&sh[1].hold_first, 1);
	pid[0] = fork_child();
	if (pid[0] == 0)
		lease_child(&p[0]);
	ck_assert_msg(wait_flag(&sh[0].opened, 10000), "A never opened: %s",
	              sh[0].error);
	ck_assert_msg(atomic_load(&sh[0].active_at_open), "A opened on "
	              "standby");
	epoch0 = sql_ll(admin, "SELECT lease_epoch FROM %s.subscriptions "
	                "WHERE name = '%s'", qs(), cat);
	/* A second instance is refused the lease: it opens on standby. */
	pid[1] = fork_child();
	if (pid[1] == 0)
		lease_child(&p[1]);
	ck_assert_msg(wait_flag(&sh[1].opened, 10000), "B never opened: %s",
	              sh[1].error);
	ck_assert_msg(!atomic_load(&sh[1].active_at_open), "%s: B was "
	              "active while A held the lease", mode_name);

	/* A handles a batch, then stops inside the second. */
	atomic_store(&sh[0].go, 1);
	stopped = wait_stopped(pid[0], 10000);
	ck_assert_msg(stopped == 1, "A did not stop in its handler (%d): %s",
	              stopped, sh[0].error);
	t_stop = now_ms();
	ck_assert_int_eq(atomic_load(&sh[0].events), 10);

	/* B takes over once A's lease ends, and holds on inside its first
	 * batch: its stored checkpoint is still behind A's batch. */
	ck_assert_msg(wait_flag(&sh[1].in_first, 15000), "%s: B never took "
	              "over after A stopped: %s", mode_name, sh[1].error);
	took = now_ms() - t_stop;
	epoch1 = sql_ll(admin, "SELECT lease_epoch FROM %s.subscriptions "
	                "WHERE name = '%s'", qs(), cat);
	ck_assert_msg(epoch1 == epoch0 + 1, "%s: epoch %lld after the "
	              "take-over, %lld before", mode_name, epoch1, epoch0);

	/* A resumes: its checkpoint, ahead of the one stored, is refused
	 * for its epoch alone. */
	kill(pid[0], SIGCONT);
	ck_assert_msg(wait_flag(&sh[0].done, 15000), "A never returned from "
	              "its poll after SIGCONT");
	ck_assert_msg(atomic_load(&sh[0].poll_rc) == EVS_ELEASE,
	              "%s: A's poll after the take-over gave %d (%s), not "
	              "EVS_ELEASE", mode_name, atomic_load(&sh[0].poll_rc),
	              sh[0].message);
	ck_assert_int_eq(atomic_load(&sh[0].active_after), 0);
	status = reap(pid[0], 10000, "instance A");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "A: status 0x%x: %s", status, sh[0].error);

	/* B goes through the rest (its read model rows say when). */
	atomic_store(&sh[1].release, 1);
	for (;;) {
		long long b_rows = sql_ll(admin, "SELECT count(DISTINCT "
		                          "event_id) FROM %s.%s_rm WHERE inst "
		                          "= 'B'", qs(), cat);

		if (b_rows >= 25 || now_ms() - t_stop > 20000)
			break;
		sleep_ms(5);
	}
	ck_assert_msg(atomic_load(&sh[1].events) >= 25, "%s: B handled %ld "
	              "events (want 25): %s", mode_name,
	              atomic_load(&sh[1].events), sh[1].error);

	/* The read model: A's first batch (and in at-least-once mode its
	 * second, written outside any transaction), then B's 25 from A's
	 * last stored checkpoint. In transactional mode nothing of A's
	 * second batch is left. */
	feed = load_feed(admin, cat, &n_feed);
	ck_assert_uint_eq(n_feed, 30);
	snprintf(sql, sizeof(sql), "SELECT event_id, inst FROM %s.%s_rm "
	         "ORDER BY seq", qs(), cat);
	res = PQexec(admin, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s",
	              PQerrorMessage(admin));
	ck_assert_msg((size_t)PQntuples(res) == a_rows + 25, "%s: %d read "
	              "model rows, want %zu from A and 25 from B", mode_name,
	              PQntuples(res), a_rows);
	for (i = 0; i < (size_t)PQntuples(res); i++) {
		const char *want_inst = i < a_rows ? "A" : "B";
		size_t want = i < a_rows ? i : i - a_rows + 5;

		ck_assert_msg(strcmp(PQgetvalue(res, (int)i, 1), want_inst) ==
		              0 && strcmp(PQgetvalue(res, (int)i, 0),
		                          feed[want].id) == 0,
		              "%s: read model row %zu is %s from %s; want feed "
		              "row %zu (%s) from %s", mode_name, i,
		              PQgetvalue(res, (int)i, 0),
		              PQgetvalue(res, (int)i, 1), want, feed[want].id,
		              want_inst);
	}
	PQclear(res);
	free(feed);

	kill(pid[1], SIGTERM);
	status = reap(pid[1], 10000, "instance B");
	ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0,
	              "B: status 0x%x: %s", status, sh[1].error);
	fprintf(stderr, "subs: lease (%s): B took over %lld ms after A "
	        "stopped (lease 1000 ms), epoch %lld -> %lld; A's store was "
	        "refused: %s\n", mode_name, (long long)took, epoch0, epoch1,
	        sh[0].message);
	munmap(sh, 2 * sizeof(lease_inst));
}

START_TEST(paused_owner_is_fenced_by_its_successor)
{
	PGconn *admin = pg_test_connect();
	evs_store *store = store_open(NULL, 2, 0);

	lease_round(admin, store, EVS_SUB_TRANSACTIONAL);
	lease_round(admin, store, EVS_SUB_AT_LEAST_ONCE);
	evs_store_free(store);
	PQfinish(admin);
}
END_TEST

/* ---- 4b: a paused owner must not hold its successor back ----------------- */

/* Forks A (transactional, lease 1000 ms, batches of 5) on cat, which
 * stops itself either inside its first handler call after writing to the
 * read model (on_notice 0) or when its first checkpoint store is answered
 * (on_notice 1: a trigger's NOTICE; the store is done, the COMMIT not
 * sent). Returns its pid once it is stopped. */
static pid_t fork_paused_owner(lease_proc *p, lease_inst *me,
                               const char *cat, int on_notice)
{
	int stopped;
	pid_t pid;

	memset(p, 0, sizeof(*p));
	snprintf(p->name, sizeof(p->name), "%s", cat);
	snprintf(p->cat, sizeof(p->cat), "%s", cat);
	snprintf(p->table, sizeof(p->table), "%s", cat);
	snprintf(p->app, sizeof(p->app), "%s-A", cat);
	p->mode = EVS_SUB_TRANSACTIONAL;
	p->pause_at_batch = on_notice ? 0 : 1;
	p->pause_on_notice = on_notice;
	p->me = me;
	atomic_store(&me->go, 1);
	pid = fork_child();
	if (pid == 0)
		lease_child(p);
	stopped = wait_stopped(pid, 10000);
	if (stopped != 1) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		ck_abort_msg("A did not stop (%d): %s", stopped, me->error);
	}
	return pid;
}

/* B, in this process: how long it takes to open, and to handle `want`
 * events (the result says where it got to by `timeout_ms`). */
typedef struct successor {
	int open_rc;
	char open_error[400];
	int64_t open_ms, done_ms;
	size_t handled;
	int active;
	evs_feed_info info;
} successor;

static void run_successor(successor *r, const char *cat, size_t want,
                          int timeout_ms)
{
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_pg_options po = EVS_PG_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	evs_sub *sub = NULL;
	int64_t start = now_ms(), end = start + timeout_ms;
	collected c;

	memset(r, 0, sizeof(*r));
	memset(&c, 0, sizeof(c));
	po.schema = pg_test_schema();
	po.pool_size = 2;
	po.call_timeout_ms = 3000; /* a blocked claim fails in 3 s */
	ck_assert_msg(evs_store_open_pg(&store, pg_test_dsn(), &po, &err) == 0,
	              "open: %s", err.message);
	o.name = cat;
	o.category = cat;
	o.mode = EVS_SUB_TRANSACTIONAL;
	o.batch_max = 5;
	o.poll_min_ms = 10;
	o.poll_max_ms = 100;
	o.lease_ms = 1000;
	while (sub == NULL && now_ms() < end) {
		r->open_rc = evs_sub_open(&sub, store, &o, &err);
		if (r->open_rc != 0)
			snprintf(r->open_error, sizeof(r->open_error), "%s",
			         err.message ? err.message : "");
	}
	r->open_ms = now_ms() - start;
	while (sub != NULL && c.n < want && now_ms() < end) {
		int rc = evs_sub_poll(sub, 0, collect_handler, &c, &err);

		if (rc == 0)
			poll(NULL, 0, evs_sub_timeout_ms(sub) > 20
			                      ? 20
			                      : evs_sub_timeout_ms(sub));
	}
	r->done_ms = now_ms() - start;
	r->handled = c.n;
	r->active = evs_sub_active(sub);
	evs_store_feed_info(&r->info, store, NULL);
	collected_free(&c);
	evs_sub_free(sub);
	evs_store_free(store);
	evs_error_clear(&err);
}

START_TEST(takeover_is_not_blocked_by_a_paused_commit)
{
	PGconn *admin = pg_test_connect();
	evs_store *store = store_open(NULL, 2, 0);
	lease_inst *me = shared_new(sizeof(*me));
	lease_proc p;
	successor r;
	char cat[48], stream[96];
	int k;
	pid_t pid;

	make_tag(cat, sizeof(cat), "pc");
	sqlf(admin, "CREATE TABLE %s.%s_rm (seq bigserial PRIMARY KEY, "
	     "event_id uuid NOT NULL, inst text NOT NULL)", qs(), cat);
	sqlf(admin, "CREATE FUNCTION %s.%s_pause() RETURNS trigger LANGUAGE "
	     "plpgsql AS $$BEGIN RAISE NOTICE 'evs-subs-pause'; RETURN NEW; "
	     "END$$", qs(), cat);
	sqlf(admin, "CREATE TRIGGER %s_pause AFTER UPDATE ON %s.subscriptions "
	     "FOR EACH ROW WHEN (NEW.name = '%s' AND NEW.last_event_id IS "
	     "NOT NULL) EXECUTE FUNCTION %s.%s_pause()", cat, qs(), cat, qs(),
	     cat);
	for (k = 0; k < 2; k++) {
		snprintf(stream, sizeof(stream), "%s-%d", cat, k);
		lib_append(store, stream, 5, "L");
	}
	/* A stored its first checkpoint, in its handler's transaction, and
	 * stopped before COMMIT: its lease runs out in 1 s. */
	pid = fork_paused_owner(&p, me, cat, 1);
	run_successor(&r, cat, 10, 6000);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	sqlf(admin, "DROP TRIGGER %s_pause ON %s.subscriptions", cat, qs());
	ck_assert_msg(r.open_rc == 0 && r.handled == 10,
	              "a successor of an owner paused between its checkpoint "
	              "store and its COMMIT: evs_sub_open gave %d after %lld ms "
	              "(%s); it handled %zu of 10 events in %lld ms (the lease "
	              "is 1000 ms)", r.open_rc, (long long)r.open_ms,
	              r.open_error, r.handled, (long long)r.done_ms);
	fprintf(stderr, "subs: takeover_is_not_blocked_by_a_paused_commit: "
	        "open in %lld ms, 10 events in %lld ms\n",
	        (long long)r.open_ms, (long long)r.done_ms);
	munmap(me, sizeof(*me));
	evs_store_free(store);
	PQfinish(admin);
}
END_TEST

START_TEST(takeover_is_not_frozen_by_a_paused_handler)
{
	PGconn *admin = pg_test_connect();
	evs_store *store = store_open(NULL, 2, 0);
	lease_inst *me = shared_new(sizeof(*me));
	lease_proc p;
	successor r;
	char cat[48], stream[96];
	int k;
	pid_t pid;

	make_tag(cat, sizeof(cat), "ph");
	sqlf(admin, "CREATE TABLE %s.%s_rm (seq bigserial PRIMARY KEY, "
	     "event_id uuid NOT NULL, inst text NOT NULL)", qs(), cat);
	for (k = 0; k < 2; k++) {
		snprintf(stream, sizeof(stream), "%s-%d", cat, k);
		lib_append(store, stream, 5, "L");
	}
	/* A wrote its first batch to the read model (its transaction holds
	 * an xid) and stopped inside the handler. Then 5 more events. */
	pid = fork_paused_owner(&p, me, cat, 0);
	snprintf(stream, sizeof(stream), "%s-2", cat);
	lib_append(store, stream, 5, "L");
	run_successor(&r, cat, 15, 6000);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	ck_assert_msg(r.open_rc == 0 && r.handled == 15,
	              "the successor of an owner paused inside its handler "
	              "handled %zu of 15 events in %lld ms (lease 1000 ms; "
	              "active %d); the fence was held by pid %d (%s, \"%s\")",
	              r.handled, (long long)r.done_ms, r.active,
	              r.info.holder_pid, r.info.holder_application,
	              r.info.holder_state);
	fprintf(stderr, "subs: takeover_is_not_frozen_by_a_paused_handler: "
	        "15 events in %lld ms\n", (long long)r.done_ms);
	munmap(me, sizeof(*me));
	evs_store_free(store);
	PQfinish(admin);
}
END_TEST

/* ---- 5: a consumer group under writers ----------------------------------- */

typedef struct member {
	evs_sub *sub;
	int index;
	feed_row *got;
	size_t n, cap;
	atomic_int *stop;
	atomic_long *total;
	char error[400];
} member;

static int member_handler(evs_sub_batch *batch, void *payload, evs_error *err)
{
	member *m = payload;
	size_t i, n = evs_sub_batch_count(batch);

	(void)err;
	for (i = 0; i < n; i++) {
		const evs_event *ev = evs_sub_batch_get(batch, i);
		feed_row *r;

		if (m->n == m->cap) {
			size_t cap = m->cap ? 2 * m->cap : 256;
			feed_row *p = realloc(m->got, cap * sizeof(*p));

			if (p == NULL)
				return EVS_ENOMEM;
			m->got = p;
			m->cap = cap;
		}
		r = &m->got[m->n++];
		evs_event_checkpoint(&r->at, ev);
		snprintf(r->stream, sizeof(r->stream), "%s",
		         evs_event_aggregate_id(ev));
		r->version = evs_event_version(ev);
	}
	atomic_fetch_add(m->total, (long)n);
	return 0;
}

static void *member_main(void *arg)
{
	member *m = arg;
	evs_error err = EVS_ERROR_INIT;

	while (!atomic_load(m->stop)) {
		int rc = evs_sub_poll(m->sub, 0, member_handler, m, &err);

		if (rc < 0 && rc != EVS_EUNAVAILABLE && rc != EVS_ETIMEOUT) {
			snprintf(m->error, sizeof(m->error), "member %d: %d %s",
			         m->index, rc, err.message ? err.message : "");
			break;
		}
		if (rc <= 0) {
			int t = evs_sub_timeout_ms(m->sub);

			poll(NULL, 0, t > 20 ? 20 : t);
		}
	}
	evs_error_clear(&err);
	return NULL;
}

#define MEMBERS 3

START_TEST(group_members_split_a_category_by_stream)
{
	PGconn *admin = pg_test_connect();
	writers *w = calloc(1, sizeof(*w));
	evs_store *store = store_open(NULL, 4, 0);
	member m[MEMBERS];
	pthread_t th[MEMBERS], wth[MAX_WRITERS];
	writer_arg wargs[MAX_WRITERS];
	atomic_int stop;
	atomic_long total;
	int64_t start = now_ms(), end;
	feed_row *feed;
	int *count, *owner_of;
	size_t n_feed, i, j;
	long long expected;
	char cat[48];
	int k;

	ck_assert_ptr_nonnull(w);
	atomic_init(&stop, 0);
	atomic_init(&total, 0);
	make_tag(cat, sizeof(cat), "grp");
	writers_prepare(w, admin, cat, 30, 3, 1000, 10);
	for (k = 0; k < MEMBERS; k++) {
		evs_sub_options o = EVS_SUB_OPTIONS_INIT;

		memset(&m[k], 0, sizeof(m[k]));
		o.name = cat;
		o.category = cat;
		o.group_member = (unsigned int)k;
		o.group_size = MEMBERS;
		o.batch_max = 50;
		o.poll_min_ms = 10;
		o.poll_max_ms = 100;
		m[k].sub = sub_open_ok(store, &o);
		ck_assert_int_eq(evs_sub_active(m[k].sub), 1);
		m[k].index = k;
		m[k].stop = &stop;
		m[k].total = &total;
		ck_assert_int_eq(pthread_create(&th[k], NULL, member_main, &m[k]),
		                 0);
	}
	writers_start(w, wth, wargs);
	/* The writers write for a while (at least 800 events, 6 s at most). */
	end = now_ms() + 6000;
	while (atomic_load(&w->committed) < 800 && now_ms() < end)
		sleep_ms(10);
	writers_join(w, wth);
	writers_check(w, admin);
	expected = sql_ll(admin, "SELECT count(*) FROM %s.events WHERE "
	                  "split_part(stream_id, '-', 1) = '%s'", qs(), cat);
	end = now_ms() + 20000;
	while (atomic_load(&total) < expected && now_ms() < end)
		sleep_ms(5);
	atomic_store(&stop, 1);
	for (k = 0; k < MEMBERS; k++) {
		pthread_join(th[k], NULL);
		ck_assert_msg(m[k].error[0] == '\0', "%s", m[k].error);
	}

	/* Each event went to exactly one member; a stream to one member
	 * only; each member's events came in the feed's order (so each
	 * stream's in version order); together they are the feed. */
	feed = load_feed(admin, cat, &n_feed);
	ck_assert_uint_eq(n_feed, (size_t)expected);
	count = calloc(n_feed + 1, sizeof(int));
	owner_of = calloc(n_feed + 1, sizeof(int));
	ck_assert(count != NULL && owner_of != NULL);
	for (k = 0; k < MEMBERS; k++) {
		long last = -1;

		ck_assert_msg(m[k].n > 0, "member %d got nothing", k);
		for (i = 0; i < m[k].n; i++) {
			long idx = feed_index(feed, n_feed, &m[k].got[i].at);

			ck_assert_msg(idx >= 0, "member %d got %s v%lld, not in "
			              "the feed", k, m[k].got[i].stream,
			              (long long)m[k].got[i].version);
			ck_assert_msg(idx > last, "member %d got feed row %ld "
			              "after row %ld", k, idx, last);
			ck_assert(strcmp(feed[idx].stream, m[k].got[i].stream) ==
			          0 && feed[idx].version == m[k].got[i].version);
			last = idx;
			count[idx]++;
			owner_of[idx] = k;
		}
	}
	for (i = 0; i < n_feed; i++)
		ck_assert_msg(count[i] == 1, "feed row %zu (%s v%lld) went to "
		              "%d members", i, feed[i].stream,
		              (long long)feed[i].version, count[i]);
	for (i = 0; i < n_feed; i++)
		for (j = i + 1; j < n_feed; j++)
			if (strcmp(feed[i].stream, feed[j].stream) == 0)
				ck_assert_msg(owner_of[i] == owner_of[j],
				              "stream %s split between members %d "
				              "and %d", feed[i].stream, owner_of[i],
				              owner_of[j]);
	writers_report("group_members_split_a_category_by_stream", w);
	fprintf(stderr, "subs: group_members_split_a_category_by_stream: "
	        "%zu events of %lld streams to %zu, %zu and %zu; %.1f s\n",
	        n_feed, sql_ll(admin, "SELECT count(*) FROM %s.streams WHERE "
	                       "split_part(stream_id, '-', 1) = '%s'", qs(),
	                       cat),
	        m[0].n, m[1].n, m[2].n, (double)(now_ms() - start) / 1000.0);
	for (k = 0; k < MEMBERS; k++) {
		evs_sub_free(m[k].sub);
		free(m[k].got);
	}
	free(count);
	free(owner_of);
	free(feed);
	free(w);
	evs_store_free(store);
	PQfinish(admin);
}
END_TEST

/* ---- 6: a rewound checkpoint is refused --------------------------------- */

static size_t handled_count;

static int count_handler(evs_sub_batch *batch, void *payload, evs_error *err)
{
	(void)payload;
	(void)err;
	handled_count += evs_sub_batch_count(batch);
	return 0;
}

START_TEST(rewound_checkpoint_is_refused)
{
	PGconn *admin = pg_test_connect();
	evs_store *store = store_open(NULL, 2, 0);
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_sub *sub = NULL;
	char cat[48], stream[96], before[256], after[256];
	collected c;
	int rc, k, part;

	for (part = 0; part < 2; part++) {
		memset(&c, 0, sizeof(c));
		make_tag(cat, sizeof(cat), part == 0 ? "rwd" : "rwx");
		snprintf(stream, sizeof(stream), "%s-1", cat);
		for (k = 0; k < 3; k++)
			lib_append(store, stream, 1, "R");
		o.name = cat;
		o.category = cat;
		sub = sub_open_ok(store, &o);
		ck_assert_uint_eq(poll_for(sub, collect_handler, &c, &c.n, 3,
		                           10000), 3);
		evs_sub_free(sub); /* stores the checkpoint at the third */
		sub = sub_open_ok(store, &o); /* it still resumes */
		ck_assert_int_eq(evs_sub_poll(sub, 0, collect_handler, &c,
		                              NULL), 0);
		evs_sub_free(sub);
		if (part == 0) {
			char id[EVS_UUID_STRLEN + 1];

			/* A restore that lost the checkpoint's event. */
			event_id_text(id, c.ev[2]);
			ck_assert_int_eq(sql_ll(admin, "INSERT INTO "
			                        "%s.lifecycle_log (operation) "
			                        "VALUES ('test: lose an event'); "
			                        "WITH d AS (DELETE FROM "
			                        "%s.events WHERE event_id = '%s' "
			                        "RETURNING 1) SELECT count(*) FROM "
			                        "d", qs(), qs(), id), 1);
		} else {
			/* An order key the database has not reached. */
			sqlf(admin, "UPDATE %s.subscriptions SET commit_xid = "
			     "(pg_snapshot_xmax(pg_current_snapshot())::text::"
			     "numeric + 1000)::text::xid8, last_event_id = NULL "
			     "WHERE name = '%s'", qs(), cat);
		}
		snprintf(before, sizeof(before), "%s",
		         sqlf(admin, "SELECT commit_xid || '/' || position FROM "
		              "%s.subscriptions WHERE name = '%s'", qs(), cat));
		handled_count = 0;
		sub = (evs_sub *)&handled_count; /* must become NULL */
		rc = evs_sub_open(&sub, store, &o, &err);
		ck_assert_msg(rc == EVS_EREWOUND, "part %d: reopening gave %d "
		              "(%s), not EVS_EREWOUND", part, rc,
		              err.message ? err.message : "");
		ck_assert_ptr_null(sub);
		ck_assert_ptr_nonnull(strstr(err.message, "rewound"));
		ck_assert_uint_eq(handled_count, 0);
		snprintf(after, sizeof(after), "%s",
		         sqlf(admin, "SELECT commit_xid || '/' || position FROM "
		              "%s.subscriptions WHERE name = '%s'", qs(), cat));
		ck_assert_str_eq(before, after);
		/* A transient subscription over the same feed is not
		 * refused: only a stored checkpoint is checked. */
		o.name = NULL;
		sub = sub_open_ok(store, &o);
		evs_sub_free(sub);
		o.name = cat;
		collected_free(&c);
	}
	evs_error_clear(&err);
	evs_store_free(store);
	PQfinish(admin);
}
END_TEST

/* ---- 7: the fence report ------------------------------------------------- */

/* Polls evs_store_feed_info() until its fence is `fence` (other sessions
 * with older xids, autovacuum's, end on their own): 1 when it got there,
 * 0 when not, -1 when the call failed (why says). Asserts nothing: a
 * prepared transaction must be rolled back before the test may fail. */
static int feed_info_at(evs_store *store, uint64_t fence, evs_feed_info *out,
                        int timeout_ms, char *why, size_t why_size)
{
	int64_t end = now_ms() + timeout_ms;
	evs_error err = EVS_ERROR_INIT;
	int rc = 0;

	for (;;) {
		if (evs_store_feed_info(out, store, &err) != 0) {
			snprintf(why, why_size, "evs_store_feed_info: %s",
			         err.message ? err.message : "");
			rc = -1;
			break;
		}
		if (out->fence == fence) {
			rc = 1;
			break;
		}
		if (now_ms() > end)
			break;
		sleep_ms(10);
	}
	evs_error_clear(&err);
	return rc;
}

START_TEST(fence_report_names_the_blocking_session)
{
	PGconn *admin = pg_test_connect(), *holder;
	evs_store *store = store_open(NULL, 2, 0);
	evs_feed_info info;
	char cat[48], app[64], stream[96], gid[96], db[64], why[512];
	const char *mpt;
	uint64_t xid;
	int64_t now_us;
	int at, pid;

	make_tag(cat, sizeof(cat), "fence");
	snprintf(app, sizeof(app), "%s-holder", cat);
	snprintf(db, sizeof(db), "%s", pg_test_exec(admin, "SELECT "
	                                            "current_database()"));
	holder = connect_named(app);
	ck_assert_msg(PQstatus(holder) == CONNECTION_OK, "%s",
	              PQerrorMessage(holder));
	pid = PQbackendPID(holder);
	pg_test_exec(holder, "BEGIN");
	snprintf(stream, sizeof(stream), "%s-1", cat);
	raw_append_ok(holder, stream, -1, 1);
	xid = strtoull(pg_test_exec(holder, "SELECT pg_current_xact_id()"),
	               NULL, 10);
	now_us = strtoll(pg_test_exec(admin, "SELECT (extract(epoch FROM "
	                              "now()) * 1000000)::int8"), NULL, 10);
	at = feed_info_at(store, xid, &info, 10000, why, sizeof(why));
	pg_test_exec(holder, "ROLLBACK");
	ck_assert_msg(at >= 0, "%s", why);
	ck_assert_msg(at, "the fence stayed at %llu, not the open "
	              "transaction's xid %llu", (unsigned long long)info.fence,
	              (unsigned long long)xid);
	ck_assert_int_eq(info.holder_pid, pid);
	ck_assert_str_eq(info.holder_application, app);
	ck_assert_str_eq(info.holder_state, "idle in transaction");
	ck_assert_str_eq(info.holder_database, db);
	ck_assert_str_eq(info.holder_prepared, "");
	ck_assert_msg(info.holder_xact_start > now_us - 60000000 &&
	              info.holder_xact_start <= now_us,
	              "holder_xact_start %lld, now %lld",
	              (long long)info.holder_xact_start, (long long)now_us);
	ck_assert_uint_gt(info.head.commit, 0);

	/* A prepared transaction has no session: its gid is named. */
	mpt = pg_test_exec(admin, "SHOW max_prepared_transactions");
	if (atoi(mpt) == 0) {
		fprintf(stderr, "subs: max_prepared_transactions is 0 on this "
		        "server: fence_report_names_the_blocking_session skips "
		        "the prepared transaction\n");
	} else {
		snprintf(gid, sizeof(gid), "%s-gid", cat);
		pg_test_exec(holder, "BEGIN");
		raw_append_ok(holder, stream, EVS_ANY_VERSION, 1);
		xid = strtoull(pg_test_exec(holder, "SELECT "
		                            "pg_current_xact_id()"), NULL, 10);
		sqlf(holder, "PREPARE TRANSACTION '%s'", gid);
		at = feed_info_at(store, xid, &info, 10000, why, sizeof(why));
		/* Never leave it behind: it would hold every feed forever. */
		sqlf(admin, "ROLLBACK PREPARED '%s'", gid);
		ck_assert_msg(at >= 0, "%s", why);
		ck_assert_msg(at, "the fence stayed at %llu, not the prepared "
		              "transaction's xid %llu",
		              (unsigned long long)info.fence,
		              (unsigned long long)xid);
		ck_assert_str_eq(info.holder_prepared, gid);
		ck_assert_int_eq(info.holder_pid, 0);
	}
	PQfinish(holder);
	evs_store_free(store);
	PQfinish(admin);
}
END_TEST

/* ---- 8: the filtered feeds' plans ---------------------------------------- */

/* lib/pg/statements.c's text of the two filtered feeds, copied (the test
 * checks below that the library's prepared statements still contain
 * it). */
#define ROW_COLUMNS                                                        \
	"version, global_position, event_id, type, data, metadata, "      \
	"(extract(epoch FROM recorded_at) * 1000000)::int8, "              \
	"transaction_id, stream_id "
#define FENCE "transaction_id < pg_snapshot_xmin(pg_current_snapshot())"
#define GROUP(k, m)                                                        \
	"(" k " = 1 OR ((hashtextextended(stream_id, 0) & "                \
	"9223372036854775807) %% " k ") = " m ")"
#define FEED_CATEGORY_SQL                                                  \
	"PREPARE evs_feed_category(text, xid8, int8, int8, int4, "         \
	"int4, text[]) AS SELECT " ROW_COLUMNS "FROM %s.events WHERE "     \
	"split_part(stream_id, '-', 1) <= $1 AND "                         \
	"(split_part(stream_id, '-', 1), transaction_id, "                 \
	"global_position) > ($1, $2, $3) AND " FENCE " AND "               \
	"($7::text[] IS NULL OR type = ANY ($7)) AND "                     \
	GROUP("$5", "$6") " ORDER BY split_part(stream_id, '-', 1), "      \
	"transaction_id, global_position LIMIT $4"
#define FEED_TYPE_SQL                                                      \
	"PREPARE evs_feed_type(text, xid8, int8, int8, int4, int4) "       \
	"AS SELECT " ROW_COLUMNS "FROM %s.events WHERE type <= $1 AND "    \
	"(type, transaction_id, global_position) > ($1, $2, $3) AND "      \
	FENCE " AND " GROUP("$5", "$6") " ORDER BY type, "                 \
	"transaction_id, global_position LIMIT $4"

/* The library's own text of the two statements, read on a handler's
 * connection (a pooled one: every statement is prepared there). */
typedef struct lib_statements {
	char category[4096], type[4096];
	int calls;
	char error[300];
} lib_statements;

static int statements_handler(evs_sub_batch *batch, void *payload,
                              evs_error *err)
{
	lib_statements *ls = payload;
	PGconn *conn = (PGconn *)evs_sub_batch_conn(batch);
	PGresult *res;
	int i;

	(void)err;
	ls->calls++;
	res = PQexec(conn, "SELECT name, statement FROM "
	             "pg_prepared_statements WHERE name IN "
	             "('evs_feed_category', 'evs_feed_type')");
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(ls->error, sizeof(ls->error), "%s",
		         PQerrorMessage(conn));
		PQclear(res);
		return 0;
	}
	for (i = 0; i < PQntuples(res); i++)
		snprintf(strcmp(PQgetvalue(res, i, 0), "evs_feed_type") == 0
		                 ? ls->type
		                 : ls->category,
		         sizeof(ls->category), "%s", PQgetvalue(res, i, 1));
	PQclear(res);
	return 0;
}

/* EXPLAIN EXECUTE's plan, one line per row. */
static void explain(PGconn *conn, const char *execute, char *out,
                    size_t size)
{
	char sql[512];
	PGresult *res;
	size_t o = 0;
	int i;

	snprintf(sql, sizeof(sql), "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, "
	         "SUMMARY OFF) EXECUTE %s", execute);
	res = PQexec(conn, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
	              PQerrorMessage(conn));
	out[0] = '\0';
	for (i = 0; i < PQntuples(res) && o + 2 < size; i++)
		o += (size_t)snprintf(out + o, size - o, "%s\n",
		                      PQgetvalue(res, i, 0));
	PQclear(res);
}

/* Plans the two statements' generic plans for a category and a type of
 * events added for the purpose (then deleted: their streams start with
 * `prefix`): appends failures to `failures`, returns how many plans read
 * and sort instead of walking their index. */
#define PLAN_ROWS 60000

static int plan_shape(PGconn *conn, const char *insert_sql,
                      const char *category, const char *type,
                      const char *prefix, const char *shape,
                      char *failures, size_t size)
{
	static const char *const cases[] = {
		"evs_feed_category('%s', '0', 0, 100, 1, 0, NULL)",
		"evs_feed_category('%s', '0', 0, 100, 3, 1, NULL)",
		"evs_feed_category('%s', '0', 0, 100, 1, 0, '{%s}')",
		"evs_feed_type('%s', '0', 0, 100, 1, 0)",
		"evs_feed_type('%s', '0', 0, 100, 3, 2)",
	};
	char exec[256], plan[8192], want[128];
	size_t i, o = strlen(failures);
	int failed = 0;

	/* Committed (an uncommitted transaction's own rows plan
	 * differently), then deleted again, with fresh statistics both
	 * times; no other test runs meanwhile. */
	pg_test_exec(conn, insert_sql);
	sqlf(conn, "ANALYZE %s.events", qs());
	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int by_type = i >= 3;

		snprintf(exec, sizeof(exec), cases[i], by_type ? type : category,
		         type);
		explain(conn, exec, plan, sizeof(plan));
		snprintf(want, sizeof(want), "Index Scan using %s on events",
		         by_type ? "events_type_position"
		                 : "events_category_position");
		if (strstr(plan, want) == NULL || strstr(plan, "Sort") != NULL ||
		    strstr(plan, "Bitmap") != NULL) {
			/* Check's messages are short: the first plan in
			 * full, then the statements only. */
			failed++;
			if (o < size)
				o += (size_t)snprintf(failures + o, size - o,
				                      "\n%s: EXECUTE %s%s%.1200s",
				                      shape, exec,
				                      o == 0 ? ":\n" : "",
				                      o == 0 ? plan : "");
		}
	}
	sqlf(conn, "INSERT INTO %s.lifecycle_log (operation) VALUES "
	     "('test: clean up'); DELETE FROM %s.events WHERE "
	     "starts_with(stream_id, '%s')", qs(), qs(), prefix);
	sqlf(conn, "ANALYZE %s.events", qs());
	return failed;
}

START_TEST(filtered_feeds_use_their_indexes)
{
	PGconn *conn = pg_test_connect();
	evs_store *store = store_open(NULL, 2, 0);
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	lib_statements ls;
	evs_sub *sub;
	char cat[48], stream[96], sql[4096], big[64], q1[64];
	char failures[2800] = "";
	int failed;

	/* The library's statements, as prepared on its connections. */
	memset(&ls, 0, sizeof(ls));
	make_tag(cat, sizeof(cat), "plan");
	snprintf(stream, sizeof(stream), "%s-1", cat);
	lib_append(store, stream, 1, "P");
	o.name = cat;
	o.category = cat;
	o.mode = EVS_SUB_TRANSACTIONAL;
	sub = sub_open_ok(store, &o);
	ck_assert_int_eq(evs_sub_poll(sub, 0, statements_handler, &ls, NULL),
	                 1);
	evs_sub_free(sub);
	ck_assert_msg(ls.error[0] == '\0', "%s", ls.error);

	/* The test's copies, on a session set as the library sets its. */
	pg_test_exec(conn, "SET plan_cache_mode = force_generic_plan");
	pg_test_exec(conn, "SET search_path = pg_catalog, pg_temp");
	snprintf(sql, sizeof(sql), FEED_CATEGORY_SQL, qs());
	pg_test_exec(conn, sql);
	ck_assert_msg(strstr(ls.category, sql) != NULL, "the library's "
	              "evs_feed_category is not the test's copy any more: "
	              "update FEED_CATEGORY_SQL from lib/pg/statements.c\n"
	              "library: %.1500s\ntest: %.1500s", ls.category, sql);
	snprintf(sql, sizeof(sql), FEED_TYPE_SQL, qs());
	pg_test_exec(conn, sql);
	ck_assert_msg(strstr(ls.type, sql) != NULL, "the library's "
	              "evs_feed_type is not the test's copy any more: update "
	              "FEED_TYPE_SQL from lib/pg/statements.c\nlibrary: "
	              "%.1500s\ntest: %.1500s", ls.type, sql);

	/* Two shapes of a store: one big category (half the events, one
	 * type) among 300 small ones (50 types); four categories and four
	 * types of equal size, interleaved. */
	snprintf(big, sizeof(big), "%sbig", cat);
	snprintf(sql, sizeof(sql), "INSERT INTO %s.events (stream_id, "
	         "version, event_id, type, data) SELECT CASE WHEN i %% 2 = 0 "
	         "THEN '%s-' || (i %% 500) ELSE '%ss' || (i %% 300) || '-' || "
	         "(i %% 7) END, CASE WHEN i %% 2 = 0 THEN i / 500 ELSE i / "
	         "2100 END, gen_random_uuid(), CASE WHEN i %% 2 = 0 THEN "
	         "'PTbig' ELSE 'PTs' || (i %% 50) END, '{}' FROM "
	         "generate_series(0, %d) AS i", qs(), big, cat, PLAN_ROWS - 1);
	failed = plan_shape(conn, sql, big, "PTbig", cat, "one big category",
	                    failures, sizeof(failures));
	snprintf(q1, sizeof(q1), "%sq1", cat);
	snprintf(sql, sizeof(sql), "INSERT INTO %s.events (stream_id, "
	         "version, event_id, type, data) SELECT '%sq' || (i %% 4) || "
	         "'-' || (i %% 400), i / 400, gen_random_uuid(), 'PQ' || "
	         "(i %% 4), '{}' FROM generate_series(0, %d) AS i", qs(), cat,
	         PLAN_ROWS - 1);
	failed += plan_shape(conn, sql, q1, "PQ1", cat,
	                     "four equal categories",
	                     failures, sizeof(failures));
	ck_assert_msg(failed == 0, "%d of 10 generic plans of the filtered "
	              "feeds read their whole range and sort it instead of "
	              "walking their index (a page then costs the whole "
	              "category or type after the checkpoint):%s", failed,
	              failures);
	evs_store_free(store);
	PQfinish(conn);
}
END_TEST

/* ---- 9: notifications ------------------------------------------------------ */

/* The LISTEN session of this test's schema: its pid, or 0. */
static int listen_pid(PGconn *admin, int not_pid)
{
	return (int)sql_ll(admin, "SELECT coalesce(min(pid), 0) FROM "
	                   "pg_stat_activity WHERE application_name = "
	                   "'evstore' AND datname = current_database() AND "
	                   "query LIKE 'LISTEN %%' AND pid <> %d", not_pid);
}

static int readable(int fd, int timeout_ms)
{
	struct pollfd p;

	if (fd < 0)
		return 0;
	p.fd = fd;
	p.events = POLLIN;
	p.revents = 0;
	return poll(&p, 1, timeout_ms) == 1 && (p.revents & (POLLIN | POLLHUP));
}

START_TEST(notify_wakes_and_survives_a_lost_listener)
{
	PGconn *admin = pg_test_connect();
	evs_store *store = store_open(NULL, 2, 1);
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	collected c;
	evs_sub *sub;
	char cat[48], stream[96];
	int64_t t0, woke_ms[2], lost_ms;
	int k, fd, fd_before, old_pid, new_pid = 0, n_listen, rc;
	int64_t v, end;

	memset(&c, 0, sizeof(c));
	make_tag(cat, sizeof(cat), "ntf");
	snprintf(stream, sizeof(stream), "%s-1", cat);
	v = lib_append(store, stream, 1, "N");
	o.category = cat;
	o.wake = EVS_WAKE_NOTIFY;
	o.poll_min_ms = 20;
	o.poll_max_ms = 500;
	sub = sub_open_ok(store, &o);
	ck_assert_int_ge(evs_sub_fd(sub), 0);
	ck_assert_uint_eq(poll_for(sub, collect_handler, &c, &c.n, 1, 10000),
	                  1);

	/* An append wakes the descriptor (an exact version: the
	 * one-statement path; any version: append_events()), and the next
	 * poll delivers it. */
	for (k = 0; k < 2; k++) {
		evs_event *ev = NULL;
		size_t before = c.n;

		ck_assert_int_ge(evs_sub_poll(sub, 0, collect_handler, &c, NULL),
		                 0);
		fd = evs_sub_fd(sub);
		ck_assert_int_ge(fd, 0);
		ck_assert_msg(!readable(fd, 0), "the descriptor is readable "
		              "before the append");
		ck_assert_int_eq(evs_event_new_json(&ev, "N", "{}", NULL, NULL),
		                 0);
		t0 = now_ms();
		rc = evs_store_append(&v, store, stream,
		                      k == 0 ? v : EVS_ANY_VERSION, &ev, 1,
		                      &err);
		ck_assert_msg(rc == 0, "append: %s", err.message);
		evs_event_free(ev);
		ck_assert_msg(readable(fd, 1000), "append %d: no wake-up "
		              "within 1 s", k);
		woke_ms[k] = now_ms() - t0;
		ck_assert_int_eq(evs_sub_poll(sub, 0, collect_handler, &c,
		                              NULL), 1);
		ck_assert_uint_eq(c.n, before + 1);
	}

	/* The listen session is killed: the next event still comes within
	 * poll_max_ms, and a new listen session takes its place. */
	/* (A listen session of an earlier test may take a moment to go.) */
	end = now_ms() + 5000;
	do {
		n_listen = (int)sql_ll(admin, "SELECT count(*) FROM "
		                       "pg_stat_activity WHERE application_name "
		                       "= 'evstore' AND datname = "
		                       "current_database() AND query LIKE "
		                       "'LISTEN %%'");
	} while (n_listen != 1 && now_ms() < end && (sleep_ms(5), 1));
	ck_assert_int_eq(n_listen, 1);
	old_pid = listen_pid(admin, 0);
	ck_assert_int_gt(old_pid, 0);
	fd_before = evs_sub_fd(sub);
	ck_assert_str_eq(sqlf(admin, "SELECT pg_terminate_backend(%d)",
	                      old_pid), "t");
	end = now_ms() + 10000;
	while (sql_ll(admin, "SELECT count(*) FROM pg_stat_activity WHERE "
	              "pid = %d", old_pid) > 0 && now_ms() < end)
		sleep_ms(5);
	t0 = now_ms();
	lib_append(store, stream, 1, "N");
	k = (int)c.n;
	end = t0 + 5000;
	while (c.n == (size_t)k && now_ms() < end) {
		fd = evs_sub_fd(sub);
		if (fd >= 0)
			readable(fd, evs_sub_timeout_ms(sub));
		else
			poll(NULL, 0, evs_sub_timeout_ms(sub));
		ck_assert_int_ge(evs_sub_poll(sub, 0, collect_handler, &c, NULL),
		                 0);
	}
	lost_ms = now_ms() - t0;
	ck_assert_msg(c.n == (size_t)k + 1, "after the listen session was "
	              "killed, the next event did not come within 5 s");
	ck_assert_msg(lost_ms <= 500 + 500, "after the listen session was "
	              "killed, the next event took %lld ms (poll_max_ms 500)",
	              (long long)lost_ms);
	end = now_ms() + 5000;
	while ((new_pid = listen_pid(admin, old_pid)) == 0 && now_ms() < end) {
		fd = evs_sub_fd(sub);
		if (fd >= 0)
			readable(fd, evs_sub_timeout_ms(sub));
		else
			poll(NULL, 0, evs_sub_timeout_ms(sub));
		ck_assert_int_ge(evs_sub_poll(sub, 0, collect_handler, &c, NULL),
		                 0);
	}
	ck_assert_msg(new_pid > 0, "no new listen session within 5 s");
	ck_assert_int_ge(evs_sub_fd(sub), 0);
	/* ... and it wakes again. */
	fd = evs_sub_fd(sub);
	ck_assert_msg(!readable(fd, 0), "the new descriptor is readable "
	              "before the append");
	lib_append(store, stream, 1, "N");
	ck_assert_msg(readable(fd, 1000), "no wake-up within 1 s on the new "
	              "listen session");
	ck_assert_int_eq(evs_sub_poll(sub, 0, collect_handler, &c, NULL), 1);
	fprintf(stderr, "subs: notify_wakes_and_survives_a_lost_listener: "
	        "woke %lld and %lld ms after the appends; with the listener "
	        "killed the event came in %lld ms; listen session %d -> %d, "
	        "fd %d -> %d\n", (long long)woke_ms[0], (long long)woke_ms[1],
	        (long long)lost_ms, old_pid, new_pid, fd_before,
	        evs_sub_fd(sub));
	collected_free(&c);
	evs_sub_free(sub);
	evs_error_clear(&err);
	evs_store_free(store);
	PQfinish(admin);
}
END_TEST

/* A standby with EVS_WAKE_NOTIFY: notifications come to it too, and its
 * evs_sub_run() must wait, not spin on a descriptor nobody drains. */
typedef struct spin_run {
	evs_sub *sub;
	int rc;
	double cpu_s;
} spin_run;

static void *run_standby(void *arg)
{
	spin_run *r = arg;
	evs_error err = EVS_ERROR_INIT;
	struct timespec a, b;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &a);
	r->rc = evs_sub_run(r->sub, count_handler, NULL, &err);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b);
	r->cpu_s = (double)(b.tv_sec - a.tv_sec) +
	           (double)(b.tv_nsec - a.tv_nsec) / 1e9;
	evs_error_clear(&err);
	return NULL;
}

START_TEST(standby_with_notify_does_not_spin)
{
	evs_store *store = store_open(NULL, 3, 1);
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_sub *active, *standby;
	spin_run r;
	pthread_t th;
	char cat[48], stream[96];
	int after_poll;

	make_tag(cat, sizeof(cat), "spin");
	o.name = cat;
	o.category = cat;
	o.wake = EVS_WAKE_NOTIFY;
	active = sub_open_ok(store, &o);
	ck_assert_int_eq(evs_sub_active(active), 1);
	standby = sub_open_ok(store, &o);
	ck_assert_int_eq(evs_sub_active(standby), 0);
	ck_assert_int_ge(evs_sub_fd(standby), 0);
	snprintf(stream, sizeof(stream), "%s-1", cat);
	lib_append(store, stream, 1, "S");
	ck_assert_msg(readable(evs_sub_fd(standby), 2000), "no notification "
	              "reached the standby");
	ck_assert_int_eq(evs_sub_poll(standby, 0, count_handler, NULL, NULL),
	                 0);
	after_poll = readable(evs_sub_fd(standby), 0);

	/* 1.5 s of evs_sub_run() on the standby (the active instance holds
	 * the lease for 30 s). */
	memset(&r, 0, sizeof(r));
	r.sub = standby;
	ck_assert_int_eq(pthread_create(&th, NULL, run_standby, &r), 0);
	sleep_ms(1500);
	evs_sub_stop(standby);
	pthread_join(th, NULL);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_int_eq(evs_sub_active(standby), 0);
	ck_assert_msg(r.cpu_s < 0.3, "a standby's evs_sub_run() used %.2f s "
	              "of CPU in 1.5 s: it spins on a descriptor it never "
	              "drains (readable after a standby poll: %d)", r.cpu_s,
	              after_poll);
	evs_sub_free(standby);
	evs_sub_free(active);
	evs_store_free(store);
}
END_TEST

/* ---- 10: the least-privilege role ------------------------------------------ */

typedef struct find_sub {
	const char *name;
	int found;
	evs_sub_info info;
	char owner[200];
} find_sub;

static int find_sub_cb(const evs_sub_info *info, void *payload)
{
	find_sub *f = payload;

	if (strcmp(info->name, f->name) == 0) {
		f->found++;
		f->info = *info;
		snprintf(f->owner, sizeof(f->owner), "%s",
		         info->owner ? info->owner : "");
	}
	return 0;
}

static int sql_handler(evs_sub_batch *batch, void *payload, evs_error *err)
{
	PGconn *conn = (PGconn *)evs_sub_batch_conn(batch);
	PGresult *res;
	int ok;

	(void)payload;
	res = PQexec(conn, "SELECT txid_current_if_assigned() IS NULL");
	ok = PQresultStatus(res) == PGRES_TUPLES_OK;
	PQclear(res);
	if (!ok)
		return evs_error_set(err, EVS_ERROR, NULL, "handler SQL failed");
	handled_count += evs_sub_batch_count(batch);
	return 0;
}

START_TEST(least_privilege_role_runs_a_named_subscription)
{
	const char *app_dsn = getenv("EVS_TEST_PG_APP_DSN");
	PGconn *admin;
	evs_store *store = NULL;
	evs_error err = EVS_ERROR_INIT;
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_sub *sub, *second;
	evs_position last, at;
	evs_feed_info info;
	find_sub f;
	collected c;
	char cat[48], tx_name[64], stream[96];
	int mode;

	if (app_dsn == NULL || app_dsn[0] == '\0') {
		fprintf(stderr, "subs: EVS_TEST_PG_APP_DSN is not set: the "
		        "least-privilege subscription test does not run\n");
		return;
	}
	admin = pg_test_connect();
	ck_assert_msg(store_open_as(&store, app_dsn, NULL, 2, 0, NULL, NULL,
	                            &err) == 0, "open as the application "
	              "role: %s", err.message);
	ck_assert_str_ne(pg_test_exec(admin, "SELECT current_user"), "");
	make_tag(cat, sizeof(cat), "app");
	snprintf(stream, sizeof(stream), "%s-1", cat);
	lib_append(store, stream, 5, "P");

	for (mode = 0; mode < 2; mode++) {
		const char *name = cat;

		if (mode == 1) {
			snprintf(tx_name, sizeof(tx_name), "%stx", cat);
			name = tx_name;
		}
		memset(&c, 0, sizeof(c));
		o.name = name;
		o.category = cat;
		o.mode = mode ? EVS_SUB_TRANSACTIONAL : EVS_SUB_AT_LEAST_ONCE;
		/* Claim, store, release. */
		sub = sub_open_ok(store, &o);
		ck_assert_int_eq(evs_sub_active(sub), 1);
		handled_count = 0;
		if (mode == 0)
			ck_assert_uint_eq(poll_for(sub, collect_handler, &c,
			                           &c.n, 5, 10000), 5);
		else
			ck_assert_uint_eq(poll_for(sub, sql_handler, NULL,
			                           &handled_count, 5, 10000), 5);
		/* A second instance is on standby (the claim's busy
		 * answer). */
		second = sub_open_ok(store, &o);
		ck_assert_int_eq(evs_sub_active(second), 0);
		evs_sub_free(second);
		evs_sub_free(sub);
		last = feed_last(admin, cat);
		at.commit = (uint64_t)sql_ll(admin, "SELECT commit_xid::text::"
		                             "int8 FROM %s.subscriptions WHERE "
		                             "name = '%s' AND owner IS NULL",
		                             qs(), name);
		at.global = sql_ll(admin, "SELECT position FROM "
		                   "%s.subscriptions WHERE name = '%s'", qs(),
		                   name);
		ck_assert_msg(pos_cmp(&at, &last) == 0, "mode %d: the stored "
		              "checkpoint is %llu/%lld (released?), the feed "
		              "ends at %llu/%lld", mode,
		              (unsigned long long)at.commit, (long long)at.global,
		              (unsigned long long)last.commit,
		              (long long)last.global);
		/* Reopened, it resumes there. */
		sub = sub_open_ok(store, &o);
		ck_assert_int_eq(evs_sub_active(sub), 1);
		ck_assert_int_eq(evs_sub_poll(sub, 0, mode ? sql_handler
		                                           : collect_handler,
		                              &c, NULL), 0);
		memset(&f, 0, sizeof(f));
		f.name = name;
		ck_assert_int_eq(evs_store_subscriptions(store, name,
		                                         find_sub_cb, &f, &err),
		                 0);
		ck_assert_int_eq(f.found, 1);
		ck_assert_int_eq(f.info.lag, 0);
		ck_assert_str_ne(f.owner, "");
		evs_sub_free(sub);
		collected_free(&c);
	}
	ck_assert_msg(evs_store_feed_info(&info, store, &err) == 0,
	              "evs_store_feed_info as the application role: %s",
	              err.message);
	evs_error_clear(&err);
	evs_store_free(store);
	PQfinish(admin);
}
END_TEST

Suite *subs_suite(void)
{
	Suite *s = suite_create("subs");
	TCase *tc;

	tc = tcase_create("crashes");
	tcase_add_test(tc, transactional_subscriber_survives_sigkill);
	tcase_add_test(tc, at_least_once_subscriber_survives_sigkill);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("feed");
	tcase_add_test(tc, late_commit_is_never_skipped);
	tcase_add_test(tc, group_members_split_a_category_by_stream);
	tcase_add_test(tc, rewound_checkpoint_is_refused);
	tcase_add_test(tc, fence_report_names_the_blocking_session);
	tcase_add_test(tc, filtered_feeds_use_their_indexes);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("leases");
	tcase_add_test(tc, paused_owner_is_fenced_by_its_successor);
	tcase_add_test(tc, takeover_is_not_blocked_by_a_paused_commit);
	tcase_add_test(tc, takeover_is_not_frozen_by_a_paused_handler);
	tcase_add_test(tc, least_privilege_role_runs_a_named_subscription);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("notify");
	tcase_add_test(tc, notify_wakes_and_survives_a_lost_listener);
	tcase_add_test(tc, standby_with_notify_does_not_spin);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}
