/* Bounded waits behind a frozen or cut network (test/common/tcp_proxy), and
 * connection settings the server refuses. */
/* TCP_KEEPIDLE, TCP_USER_TIMEOUT and the like (glibc: __USE_MISC). */
#define _DEFAULT_SOURCE

#include <check.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "common/tcp_proxy.h"
#include "contract/contract_int.h"
#include "integration/pg_test.h"

/* Slack on top of a deadline: a loaded machine, a sanitizer build. */
#define MARGIN_MS 1500

/* ---- helpers ------------------------------------------------------------ */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* A stream name no other run or test uses (ids are safe in SQL text). */
static const char *fresh_id(const char *base)
{
	static char buf[8][96];
	static unsigned int n;
	char *b = buf[n % 8];

	snprintf(b, sizeof(buf[0]), "faults%ld-%u-%s", (long)getpid(), ++n,
	         base);
	return b;
}

/* An application_name that marks this test's sessions on the server, so
 * that pg_stat_activity tells when they are gone. */
static const char *app_name(void)
{
	static char buf[64];

	snprintf(buf, sizeof(buf), "evs_faults_%ld", (long)getpid());
	return buf;
}

/* The server's socket, from EVS_TEST_PG_DSN: HOST/.s.PGSQL.PORT for a
 * socket directory, else HOST:PORT. */
static void server_address(char *out, size_t size)
{
	char *why = NULL;
	PQconninfoOption *opts = PQconninfoParse(pg_test_dsn(), &why), *o;
	const char *host = NULL, *port = NULL;

	ck_assert_msg(opts != NULL, "EVS_TEST_PG_DSN: %s", why ? why : "?");
	for (o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (strcmp(o->keyword, "host") == 0)
			host = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			port = o->val;
	}
	if (host == NULL)
		host = "/var/run/postgresql";
	if (port == NULL)
		port = "5432";
	if (host[0] == '/')
		snprintf(out, size, "%s/.s.PGSQL.%s", host, port);
	else
		snprintf(out, size, "%s:%s", host, port);
	PQconninfoFree(opts);
}

/* A proxy in front of the test server, started in the test's own
 * (forked) process. */
static tcp_proxy *start_proxy(void)
{
	char target[512];
	tcp_proxy *p;

	server_address(target, sizeof(target));
	p = tcp_proxy_start(target);
	ck_assert_msg(p != NULL, "cannot start a proxy to %s", target);
	return p;
}

/* EVS_TEST_PG_DSN, then `extra` (later keywords win). */
static void dsn_with(char *out, size_t size, const char *extra)
{
	int n = snprintf(out, size, "%s %s", pg_test_dsn(), extra);

	ck_assert(n > 0 && (size_t)n < size);
}

/* EVS_TEST_PG_DSN through the proxy, tagged with app_name(), then
 * `extra`. */
static void dsn_via(char *out, size_t size, const tcp_proxy *p,
                    const char *extra)
{
	int n = snprintf(out, size,
	                 "%s host=127.0.0.1 port=%d application_name=%s %s",
	                 pg_test_dsn(), tcp_proxy_port(p), app_name(), extra);

	ck_assert(n > 0 && (size_t)n < size);
}

static evs_pg_options options(unsigned int connect_ms, unsigned int call_ms,
                              unsigned int statement_ms)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;

	opts.schema = pg_test_schema();
	opts.pool_size = 1;
	opts.connect_timeout_ms = connect_ms;
	opts.call_timeout_ms = call_ms;
	opts.statement_timeout_ms = statement_ms;
	return opts;
}

static evs_store *open_ok(const char *conninfo, const evs_pg_options *opts)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;

	ck_assert_msg(evs_store_open_pg(&store, conninfo, opts, &err) == 0,
	              "open: %s", err.message);
	evs_error_clear(&err);
	return store;
}

/* What one evs_store_open_pg did (a store it opened is freed at once). */
typedef struct open_result {
	int rc;
	int64_t ms;
	char message[1024];
	char sqlstate[6];
	int out_kept; /* failed, but *out was not set to NULL */
} open_result;

/* Asserts nothing, so that a test can undo a change to the server first. */
static void open_timed(open_result *r, const char *conninfo,
                       const evs_pg_options *opts)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = (evs_store *)&err; /* must become NULL or a store */
	int64_t t0 = now_ms();

	r->rc = evs_store_open_pg(&store, conninfo, opts, &err);
	r->ms = now_ms() - t0;
	snprintf(r->message, sizeof(r->message), "%s",
	         err.message ? err.message : "");
	memcpy(r->sqlstate, err.sqlstate, sizeof(r->sqlstate));
	r->out_kept = r->rc < 0 && store != NULL;
	if (r->rc == 0)
		evs_store_free(store);
	evs_error_clear(&err);
}

/* A plain connection's first value of a query (a static buffer). */
static long long query_ll(PGconn *conn, const char *sql)
{
	return strtoll(pg_test_exec(conn, sql), NULL, 10);
}

static long long stored_events(PGconn *conn, const char *id)
{
	char sql[512];

	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM \"%s\".events WHERE stream_id = '%s'",
	         pg_test_schema(), id);
	return query_ll(conn, sql);
}

/* Sessions of this test (app_name()) on the server. */
static long long our_sessions(PGconn *conn)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM pg_stat_activity "
	         "WHERE application_name = '%s'", app_name());
	return query_ll(conn, sql);
}

/* Waits until every session of this test has ended on the server: a
 * request the proxy held while frozen is delivered when it passes again,
 * and runs to its end (or not) before its session closes. After that,
 * nothing more of it can reach the tables. */
static void wait_sessions_gone(PGconn *conn, long ms)
{
	int64_t until = now_ms() + ms;

	while (our_sessions(conn) > 0) {
		ck_assert_msg(now_ms() < until,
		              "sessions of %s still on the server after %ld ms",
		              app_name(), ms);
		sleep_ms(20);
	}
}

/* ---- calls on a thread of their own, under a watchdog ------------------- */

/* A call that must end by itself: the test waits for it with a bound, so
 * that a library that blocks fails with a message instead of hanging. */
typedef enum { OP_OPEN, OP_APPEND, OP_VERSION, OP_FOREACH } op_kind;

typedef struct job {
	op_kind op;
	const char *conninfo;   /* OP_OPEN */
	evs_pg_options opts;    /* OP_OPEN */
	evs_store *store;       /* the others */
	const char *id;
	evs_event **evs;        /* OP_APPEND, at `expected` */
	size_t n;
	int64_t expected;
	/* results */
	int rc;
	int64_t started, ended; /* now_ms() */
	int64_t version;        /* OP_VERSION */
	size_t seen;            /* OP_FOREACH */
	evs_error err;
	pthread_t thread;
	atomic_int done;
} job;

static int count_cb(const evs_event *ev, void *payload)
{
	(void)ev;
	((job *)payload)->seen++;
	return 0;
}

static void *run_job(void *arg)
{
	job *j = arg;
	evs_store *opened = NULL;

	j->started = now_ms();
	switch (j->op) {
	case OP_OPEN:
		j->rc = evs_store_open_pg(&opened, j->conninfo, &j->opts,
		                          &j->err);
		break;
	case OP_APPEND:
		j->rc = evs_store_append(NULL, j->store, j->id, j->expected,
		                         j->evs, j->n, &j->err);
		break;
	case OP_VERSION:
		j->rc = evs_store_current_version(&j->version, j->store, j->id,
		                                  &j->err);
		break;
	case OP_FOREACH:
		j->rc = evs_store_foreach(j->store, j->id, EVS_NO_VERSION,
		                          count_cb, j, &j->err);
		break;
	}
	j->ended = now_ms();
	evs_store_free(opened);
	atomic_store(&j->done, 1);
	return NULL;
}

static void job_start(job *j)
{
	atomic_init(&j->done, 0);
	j->err = (evs_error)EVS_ERROR_INIT;
	ck_assert_int_eq(pthread_create(&j->thread, NULL, run_job, j), 0);
}

static const char *const op_names[] = {
	"evs_store_open_pg", "evs_store_append", "evs_store_current_version",
	"evs_store_foreach",
};

/* Waits for n jobs, at most limit_ms from now. A job still running then
 * fails the test, naming every call still blocked (the process ends with
 * them: the jobs are on the heap). */
static void jobs_wait(job *js, size_t n, long limit_ms)
{
	int64_t until = now_ms() + limit_ms;
	char blocked[256] = "";
	size_t i, all;

	do {
		for (i = 0, all = 1; i < n; i++)
			all = all && atomic_load(&js[i].done);
		if (!all)
			sleep_ms(5);
	} while (!all && now_ms() < until);
	for (i = 0; i < n; i++) {
		if (atomic_load(&js[i].done))
			continue;
		snprintf(blocked + strlen(blocked),
		         sizeof(blocked) - strlen(blocked), " %s",
		         op_names[js[i].op]);
	}
	ck_assert_msg(blocked[0] == '\0', "still blocked after %ld ms:%s",
	              limit_ms, blocked);
	for (i = 0; i < n; i++)
		pthread_join(js[i].thread, NULL);
}

static void jobs_free(job *js, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		evs_error_clear(&js[i].err);
	free(js);
}

static job *jobs_new(size_t n)
{
	job *js = calloc(n, sizeof(*js));

	ck_assert_ptr_nonnull(js);
	return js;
}

/* ---- A. connecting through a frozen network ----------------------------- */

/* A hung middlebox: the TCP connection is made (the proxy accepts it) but
 * nothing comes back, so libpq waits in SSL negotiation or the startup
 * packet. Each variant: connect_timeout_ms, what the conninfo adds, an
 * environment variable, and the bound expected to win. */
static const struct {
	unsigned int option_ms;
	const char *extra;
	const char *env;
	unsigned int want_ms;
} frozen_opens[] = {
	{1000, "", NULL, 1000},
	{0, "", NULL, 10000},                     /* the default */
	{20000, "connect_timeout=2", NULL, 2000}, /* conninfo wins */
	{20000, "", "2", 2000},                   /* PGCONNECT_TIMEOUT wins */
	{1000, "connect_timeout=0", NULL, 1000},  /* libpq's "none": ours */
};

START_TEST(open_through_a_frozen_network_gives_up_in_time)
{
	unsigned int want = frozen_opens[_i].want_ms;
	tcp_proxy *p = start_proxy();
	char dsn[2048], within[64];
	job *j = jobs_new(1);

	if (frozen_opens[_i].env != NULL)
		ck_assert_int_eq(setenv("PGCONNECT_TIMEOUT",
		                        frozen_opens[_i].env, 1), 0);
	dsn_via(dsn, sizeof(dsn), p, frozen_opens[_i].extra);
	tcp_proxy_set_mode(p, TCP_PROXY_FREEZE);
	j->op = OP_OPEN;
	j->conninfo = dsn;
	j->opts = options(frozen_opens[_i].option_ms, 0, 0);
	job_start(j);
	jobs_wait(j, 1, (long)want + MARGIN_MS + 2000);
	ck_assert_msg(j->rc == EVS_EUNAVAILABLE, "open gave %d: %s", j->rc,
	              j->err.message);
	ck_assert_msg(j->ended - j->started >= (int64_t)want * 9 / 10 &&
	              j->ended - j->started < (int64_t)want + MARGIN_MS,
	              "open gave up after %lld ms, expected about %u",
	              (long long)(j->ended - j->started), want);
	snprintf(within, sizeof(within), "within %u ms", want);
	ck_assert_msg(strstr(j->err.message, within) != NULL,
	              "message does not say \"%s\": %s", within,
	              j->err.message);
	/* It was the frozen network that held it, not a refusal. */
	ck_assert_uint_eq(tcp_proxy_accepted(p), 1);
	jobs_free(j, 1);
	tcp_proxy_stop(p);
	unsetenv("PGCONNECT_TIMEOUT");
}
END_TEST

/* A conninfo of two hosts, the first behind a frozen network: each host
 * gets the whole connect timeout, as with libpq, so the store opens on
 * the second once the first one's time is up. */
START_TEST(a_frozen_first_host_fails_over_to_the_next)
{
	evs_pg_options opts = options(1500, 0, 0);
	tcp_proxy *p = start_proxy();
	char target[512], dsn[2048], *dot;
	open_result r;

	server_address(target, sizeof(target));
	dot = strstr(target, "/.s.PGSQL.");
	ck_assert_msg(dot != NULL, "the test server is not on a socket: %s",
	              target);
	*dot = '\0';
	snprintf(dsn, sizeof(dsn), "%s host=127.0.0.1,%s port=%d,%s "
	         "application_name=%s", pg_test_dsn(), target,
	         tcp_proxy_port(p), dot + strlen("/.s.PGSQL."), app_name());
	tcp_proxy_set_mode(p, TCP_PROXY_FREEZE);
	open_timed(&r, dsn, &opts);
	ck_assert_msg(r.rc == 0, "open gave %d: %s", r.rc, r.message);
	ck_assert_msg(r.ms >= 1350 && r.ms < 1500 + MARGIN_MS,
	              "open took %lld ms, expected about 1500 (the first "
	              "host's timeout, then the second)", (long long)r.ms);
	tcp_proxy_stop(p);
}
END_TEST

/* ---- B. calls through a frozen network ---------------------------------- */

/* Each variant: call_timeout_ms and statement_timeout_ms. A server-side
 * statement timeout cannot help when the request never arrives: the call
 * deadline must. */
static const struct {
	unsigned int call_ms, statement_ms;
} frozen_calls[] = {
	{1000, 0},
	{2000, 1000},
	{0, 0}, /* the default: 60 s */
};

/* evs_pg_options' default call_timeout_ms (README, pg.h). */
#define DEFAULT_CALL_MS 60000u

START_TEST(calls_through_a_frozen_network_time_out_and_retry_replays)
{
	evs_pg_options opts = options(2000, frozen_calls[_i].call_ms,
	                              frozen_calls[_i].statement_ms);
	unsigned int call_ms = frozen_calls[_i].call_ms
	                               ? frozen_calls[_i].call_ms
	                               : DEFAULT_CALL_MS;
	const char *ida = fresh_id("append"), *idv = fresh_id("version"),
	           *idf = fresh_id("foreach");
	evs_event **batch = ct_make_events(0, 2);
	evs_event **others = ct_make_events(10, 3);
	evs_store *stores[3];
	tcp_proxy *p = start_proxy();
	job *js = jobs_new(3);
	evs_append_result res = {0, 0};
	evs_error err = EVS_ERROR_INIT;
	long long before;
	unsigned int accepted;
	int64_t v = -5;
	PGconn *direct;
	char dsn[2048];
	size_t i;

	dsn_via(dsn, sizeof(dsn), p, "");
	/* A store per call: a call that times out drops its connection, and
	 * a new one could not be made through the frozen proxy. */
	for (i = 0; i < 3; i++)
		stores[i] = open_ok(dsn, &opts);
	ck_assert_int_eq(evs_store_append(NULL, stores[1], idv, EVS_NO_VERSION,
	                                  others, 1, NULL), 0);
	ck_assert_int_eq(evs_store_append(NULL, stores[2], idf, EVS_NO_VERSION,
	                                  others + 1, 2, NULL), 0);
	js[0].op = OP_APPEND;
	js[0].store = stores[0];
	js[0].id = ida;
	js[0].evs = batch;
	js[0].n = 2;
	js[0].expected = EVS_NO_VERSION;
	js[1].op = OP_VERSION;
	js[1].store = stores[1];
	js[1].id = idv;
	js[2].op = OP_FOREACH;
	js[2].store = stores[2];
	js[2].id = idf;

	tcp_proxy_set_mode(p, TCP_PROXY_FREEZE);
	for (i = 0; i < 3; i++)
		job_start(&js[i]);
	jobs_wait(js, 3, (long)call_ms + MARGIN_MS + 3000);
	for (i = 0; i < 3; i++) {
		int64_t ms = js[i].ended - js[i].started;

		ck_assert_msg(js[i].rc == EVS_ETIMEOUT, "call %zu gave %d: %s",
		              i, js[i].rc, js[i].err.message);
		ck_assert_msg(ms >= (int64_t)call_ms * 9 / 10 &&
		              ms < (int64_t)call_ms + MARGIN_MS,
		              "call %zu timed out after %lld ms, expected "
		              "about %u", i, (long long)ms, call_ms);
		ck_assert_msg(strstr(js[i].err.message, "deadline") != NULL &&
		              strstr(js[i].err.message, "call_timeout_ms") !=
		                      NULL,
		              "call %zu: message does not name the deadline: "
		              "%s", i, js[i].err.message);
	}
	ck_assert_uint_eq(js[2].seen, 0);
	accepted = tcp_proxy_accepted(p);

	/* The network returns. The frozen requests are delivered now, and
	 * may still be stored: wait until their sessions are gone. */
	tcp_proxy_set_mode(p, TCP_PROXY_PASS);
	direct = pg_test_connect();
	wait_sessions_gone(direct, 10000);
	before = stored_events(direct, ida);
	ck_assert_msg(before == 0 || before == 2,
	              "a batch of 2 was stored in part: %lld", before);

	/* The same events again: stored once, replayed if they were in. */
	ck_assert_msg(evs_store_append_ext(&res, stores[0], ida, EVS_NO_VERSION,
	                                   batch, 2, 0, &err) == 0,
	              "retry: %s", err.message);
	ck_assert_int_eq(res.version, 1);
	ck_assert_int_eq(res.replayed, before == 2);
	ck_assert_int_eq(stored_events(direct, ida), 2);
	ck_assert_uint_eq(tcp_proxy_accepted(p), accepted + 1);
	/* The other stores reconnect too. */
	ck_assert_int_eq(evs_store_current_version(&v, stores[1], idv, &err),
	                 0);
	ck_assert_int_eq(v, 0);
	js[2].seen = 0;
	ck_assert_int_eq(evs_store_foreach(stores[2], idf, EVS_NO_VERSION,
	                                   count_cb, &js[2], &err), 0);
	ck_assert_uint_eq(js[2].seen, 2);
	ck_assert_uint_eq(tcp_proxy_accepted(p), accepted + 3);

	for (i = 0; i < 3; i++)
		evs_store_free(stores[i]);
	evs_error_clear(&err);
	PQfinish(direct);
	jobs_free(js, 3);
	ct_free_events(batch, 2);
	ct_free_events(others, 3);
	tcp_proxy_stop(p);
}
END_TEST

/* ---- C. a cut network --------------------------------------------------- */

/* Variant 0 lets the connection sit idle past the pool's recheck (so the
 * reset is noticed before use), variant 1 calls at once (so the request
 * goes out on the reset connection). */
START_TEST(cut_while_idle_is_unavailable_then_the_pool_reconnects)
{
	evs_pg_options opts = options(5000, 10000, 0);
	const char *id = fresh_id("cut-idle");
	evs_event **batch = ct_make_events(1, 2);
	tcp_proxy *p = start_proxy();
	evs_append_result res = {0, 0};
	evs_error err = EVS_ERROR_INIT;
	job *js = jobs_new(2);
	unsigned int accepted;
	evs_store *store;
	PGconn *direct;
	char dsn[2048];
	int i;

	dsn_via(dsn, sizeof(dsn), p, "");
	opts.pool_size = 2;
	store = open_ok(dsn, &opts);
	ck_assert_int_eq(evs_store_append(NULL, store, id, EVS_NO_VERSION,
	                                  batch, 1, NULL), 0);
	tcp_proxy_set_mode(p, TCP_PROXY_CUT);
	if (_i == 0)
		sleep_ms(250);
	js[0].op = OP_APPEND;
	js[0].store = store;
	js[0].id = id;
	js[0].evs = batch + 1;
	js[0].n = 1;
	js[0].expected = 0;
	js[1].op = OP_VERSION;
	js[1].store = store;
	js[1].id = id;
	/* One after the other: the second needs a new connection, and the
	 * proxy resets that too. */
	for (i = 0; i < 2; i++) {
		job_start(&js[i]);
		jobs_wait(&js[i], 1, 5000);
		ck_assert_msg(js[i].rc == EVS_EUNAVAILABLE,
		              "call %d gave %d: %s", i, js[i].rc,
		              js[i].err.message);
		ck_assert_msg(js[i].ended - js[i].started < 1000,
		              "call %d took %lld ms", i,
		              (long long)(js[i].ended - js[i].started));
	}
	accepted = tcp_proxy_accepted(p);
	tcp_proxy_set_mode(p, TCP_PROXY_PASS);
	/* Every connection was reset before the append was made: nothing
	 * of it can have been stored. */
	ck_assert_msg(evs_store_append_ext(&res, store, id, 0, batch + 1, 1, 0,
	                                   &err) == 0,
	              "after the cut: %s", err.message);
	ck_assert_int_eq(res.version, 1);
	ck_assert_int_eq(res.replayed, 0);
	ck_assert_uint_gt(tcp_proxy_accepted(p), accepted);
	direct = pg_test_connect();
	ck_assert_int_eq(stored_events(direct, id), 2);

	PQfinish(direct);
	evs_error_clear(&err);
	evs_store_free(store);
	jobs_free(js, 2);
	ct_free_events(batch, 2);
	tcp_proxy_stop(p);
}
END_TEST

/* The server pid of this test's session waiting for a lock, or 0. */
static int lock_waiter(PGconn *conn)
{
	char sql[256];

	snprintf(sql, sizeof(sql),
	         "SELECT pid FROM pg_stat_activity WHERE application_name = "
	         "'%s' AND wait_event_type = 'Lock'", app_name());
	return atoi(pg_test_exec(conn, sql));
}

START_TEST(cut_during_a_call_is_unavailable_at_once)
{
	evs_pg_options opts = options(5000, 10000, 0);
	const char *id = fresh_id("cut-busy");
	evs_event **batch = ct_make_events(1, 3);
	tcp_proxy *p = start_proxy();
	evs_append_result res = {0, 0};
	evs_error err = EVS_ERROR_INIT;
	PGconn *locker, *direct;
	job *j = jobs_new(1);
	unsigned int accepted;
	int64_t cut_at, until;
	evs_store *store;
	char dsn[2048], sql[512];
	int pid = 0;

	dsn_via(dsn, sizeof(dsn), p, "");
	store = open_ok(dsn, &opts);
	ck_assert_int_eq(evs_store_append(NULL, store, id, EVS_NO_VERSION,
	                                  batch, 1, NULL), 0);
	/* Another session holds the stream's row: the append reaches the
	 * server and waits there. */
	locker = pg_test_connect();
	snprintf(sql, sizeof(sql),
	         "BEGIN; SELECT 1 FROM \"%s\".streams WHERE stream_id = '%s' "
	         "FOR UPDATE", pg_test_schema(), id);
	pg_test_exec(locker, sql);
	direct = pg_test_connect();
	j->op = OP_APPEND;
	j->store = store;
	j->id = id;
	j->evs = batch + 1;
	j->n = 2;
	j->expected = 0;
	job_start(j);
	for (until = now_ms() + 5000; (pid = lock_waiter(direct)) == 0;
	     sleep_ms(10))
		ck_assert_msg(now_ms() < until, "the append never waited for "
		                                "the lock");
	cut_at = now_ms();
	tcp_proxy_set_mode(p, TCP_PROXY_CUT);
	jobs_wait(j, 1, 5000);
	ck_assert_msg(j->rc == EVS_EUNAVAILABLE, "append gave %d: %s", j->rc,
	              j->err.message);
	ck_assert_msg(j->ended - cut_at < 1000,
	              "the append failed %lld ms after the cut (deadline "
	              "10000 ms)", (long long)(j->ended - cut_at));

	/* evstore asks the server to check for a vanished client every
	 * 2 s: the abandoned append ends before the lock is released, and
	 * is not stored. */
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM pg_stat_activity WHERE pid = %d", pid);
	for (until = now_ms() + 6000; query_ll(direct, sql) > 0;
	     sleep_ms(20))
		ck_assert_msg(now_ms() < until,
		              "the server still runs the abandoned append "
		              "after 6 s (client_connection_check_interval)");
	pg_test_exec(locker, "ROLLBACK");
	ck_assert_int_eq(stored_events(direct, id), 1);

	accepted = tcp_proxy_accepted(p);
	tcp_proxy_set_mode(p, TCP_PROXY_PASS);
	ck_assert_msg(evs_store_append_ext(&res, store, id, 0, batch + 1, 2, 0,
	                                   &err) == 0,
	              "after the cut: %s", err.message);
	ck_assert_int_eq(res.version, 2);
	ck_assert_int_eq(res.replayed, 0);
	ck_assert_uint_gt(tcp_proxy_accepted(p), accepted);
	ck_assert_int_eq(stored_events(direct, id), 3);

	PQfinish(locker);
	PQfinish(direct);
	evs_error_clear(&err);
	evs_store_free(store);
	jobs_free(j, 1);
	ct_free_events(batch, 3);
	tcp_proxy_stop(p);
}
END_TEST

/* ---- TCP settings ------------------------------------------------------- */

/* The socket of this process whose peer is 127.0.0.1:port (the store's
 * connection to the proxy), or -1. */
static int socket_to(int port)
{
	int fd;

	for (fd = 0; fd < 1024; fd++) {
		struct sockaddr_in sin;
		socklen_t len = sizeof(sin);

		if (getpeername(fd, (struct sockaddr *)&sin, &len) == 0 &&
		    sin.sin_family == AF_INET && ntohs(sin.sin_port) == port &&
		    ntohl(sin.sin_addr.s_addr) == INADDR_LOOPBACK)
			return fd;
	}
	return -1;
}

static int sockopt(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	ck_assert_int_eq(getsockopt(fd, level, name, &v, &len), 0);
	return v;
}

/* Each variant: what the conninfo adds, then the expected keepalive
 * switch, idle, interval, count and user timeout. */
static const struct {
	const char *extra;
	int on, idle, interval, count, user_timeout;
} tcp_settings[] = {
	{"", 1, 30, 10, 3, 30000},
	{"keepalives_idle=7 keepalives_count=5 tcp_user_timeout=4000", 1, 7,
	 10, 5, 4000},
	{"keepalives=0 tcp_user_timeout=0", 0, -1, -1, -1, 0},
};

START_TEST(keepalives_and_user_timeout_are_on_by_default)
{
	evs_pg_options opts = options(0, 0, 0);
	tcp_proxy *p = start_proxy();
	evs_store *store;
	char dsn[2048];
	int fd;

	dsn_via(dsn, sizeof(dsn), p, tcp_settings[_i].extra);
	store = open_ok(dsn, &opts);
	fd = socket_to(tcp_proxy_port(p));
	ck_assert_msg(fd >= 0, "no socket to the proxy");
	ck_assert_int_eq(sockopt(fd, SOL_SOCKET, SO_KEEPALIVE) != 0,
	                 tcp_settings[_i].on);
	if (tcp_settings[_i].on) {
		ck_assert_int_eq(sockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE),
		                 tcp_settings[_i].idle);
		ck_assert_int_eq(sockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL),
		                 tcp_settings[_i].interval);
		ck_assert_int_eq(sockopt(fd, IPPROTO_TCP, TCP_KEEPCNT),
		                 tcp_settings[_i].count);
	}
	ck_assert_int_eq(sockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT),
	                 tcp_settings[_i].user_timeout);
	evs_store_free(store);
	tcp_proxy_stop(p);
}
END_TEST

/* ---- D. settings the server or libpq refuse ----------------------------- */

/* Checks that an open failed with `code` within 2 s, with a message.
 * `what` names the case (the conninfo holds a password). */
static void check_refused(const open_result *r, int code, const char *what)
{
	ck_assert_msg(r->rc == code, "%s: gave %d (%s), expected %d (%s)",
	              what, r->rc, r->message, code, evs_strerror(code));
	ck_assert_msg(!r->out_kept, "%s: failed, but *out is not NULL", what);
	ck_assert_msg(r->ms < 2000, "%s: refused after %lld ms", what,
	              (long long)r->ms);
	ck_assert_msg(r->message[0] != '\0', "%s: no message", what);
}

/* Opens with `conninfo` and checks that it fails with `code`. */
static void open_fails(open_result *r, int code, const char *what,
                       const char *conninfo)
{
	evs_pg_options opts = options(5000, 5000, 0);

	open_timed(r, conninfo, &opts);
	check_refused(r, code, what);
}

START_TEST(missing_database_is_a_config_error)
{
	char dbname[64], extra[128], dsn[2048];
	open_result r;

	ck_assert_str_ne(evs_strerror(EVS_ECONFIG), "");
	ck_assert_str_ne(evs_strerror(EVS_ECONFIG), evs_strerror(-999));
	snprintf(dbname, sizeof(dbname), "evs_no_such_db_%ld", (long)getpid());
	snprintf(extra, sizeof(extra), "dbname=%s", dbname);
	dsn_with(dsn, sizeof(dsn), extra);
	open_fails(&r, EVS_ECONFIG, extra, dsn);
	ck_assert_str_eq(r.sqlstate, "3D000");
	ck_assert_msg(strstr(r.message, dbname) != NULL,
	              "message does not name the database: %s", r.message);
}
END_TEST

START_TEST(missing_role_is_a_config_error)
{
	char role[64], extra[128], dsn[2048];
	open_result r;

	snprintf(role, sizeof(role), "evs_no_such_role_%ld", (long)getpid());
	snprintf(extra, sizeof(extra), "user=%s", role);
	dsn_with(dsn, sizeof(dsn), extra);
	open_fails(&r, EVS_ECONFIG, extra, dsn);
	ck_assert_str_eq(r.sqlstate, "28000");
	ck_assert_msg(strstr(r.message, role) != NULL,
	              "message does not name the role: %s", r.message);
}
END_TEST

START_TEST(wrong_password_is_a_config_error)
{
	const char *pw_dsn = getenv("EVS_TEST_PG_PW_DSN");
	evs_pg_options opts = options(5000, 5000, 0);
	char wrong[2048];
	PGconn *conn;
	int checked;
	open_result r;

	ck_assert_msg(pw_dsn != NULL && pw_dsn[0] != '\0',
	              "EVS_TEST_PG_PW_DSN is not set (test/integration/run.sh "
	              "sets it)");
	snprintf(wrong, sizeof(wrong), "%s password=wrong-%ld", pw_dsn,
	         (long)getpid());
	/* Does this server check passwords at all? */
	conn = PQconnectdb(wrong);
	checked = PQstatus(conn) != CONNECTION_OK;
	PQfinish(conn);
	if (checked) {
		open_fails(&r, EVS_ECONFIG, "a wrong password", wrong);
		ck_assert_str_eq(r.sqlstate, "28P01");
	} else {
		fprintf(stderr, "faults: this server lets the password role in "
		        "with a wrong password; that check is skipped\n");
	}
	/* The right one gets past authentication: the store opens, or
	 * (this role has no rights on the schema) the server refuses the
	 * schema check, on a session it had let in. */
	open_timed(&r, pw_dsn, &opts);
	ck_assert_msg(r.rc == 0 || (r.rc == EVS_EDB &&
	                            strcmp(r.sqlstate, "42501") == 0),
	              "the right password gave %d: %s", r.rc, r.message);
}
END_TEST

START_TEST(ssl_required_of_a_server_without_it_is_a_config_error)
{
	evs_pg_options opts = options(5000, 5000, 0);
	tcp_proxy *p = start_proxy();
	char dsn[2048];
	open_result r;

	/* Through TCP: libpq never asks for SSL on a Unix socket. */
	dsn_via(dsn, sizeof(dsn), p, "sslmode=require");
	open_timed(&r, dsn, &opts);
	if (r.rc == 0) {
		fprintf(stderr, "faults: this server offers SSL; the "
		        "sslmode=require check is skipped\n");
	} else {
		check_refused(&r, EVS_ECONFIG, "sslmode=require");
		ck_assert_msg(strstr(r.message, "SSL") != NULL, "message: %s",
		              r.message);
	}
	tcp_proxy_stop(p);
}
END_TEST

START_TEST(unparseable_conninfo_is_a_config_error)
{
	open_result r;

	open_fails(&r, EVS_ECONFIG, "host=x port", "host=x port");
	ck_assert_msg(strstr(r.message, "conninfo") != NULL, "message: %s",
	              r.message);
}
END_TEST

START_TEST(missing_socket_directory_is_unavailable)
{
	char dsn[2048];
	open_result r;

	/* Nothing answers there now; something may later. */
	dsn_with(dsn, sizeof(dsn), "host=/nonexistent-dir");
	open_fails(&r, EVS_EUNAVAILABLE, "host=/nonexistent-dir", dsn);
}
END_TEST

/* A role that may not CONNECT to a database (42501). Only where run.sh
 * made a database the schema owner owns: the owner revokes PUBLIC's
 * CONNECT there, an application role tries, and the grant is restored
 * before anything is asserted. */
START_TEST(no_connect_privilege_is_a_config_error)
{
	const char *owner_db = getenv("EVS_TEST_PG_HOSTILE_DB_DSN");
	const char *app = getenv("EVS_TEST_PG_APP_DSN");
	evs_pg_options opts = options(5000, 5000, 0);
	PQconninfoOption *o, *parsed;
	const char *dbname = NULL;
	char dsn[2048], sql[256];
	PGconn *owner;
	open_result r;

	if (owner_db == NULL || app == NULL) {
		fprintf(stderr, "faults: no database of the owner's; the "
		        "CONNECT privilege check is skipped\n");
		return;
	}
	parsed = PQconninfoParse(owner_db, NULL);
	ck_assert_ptr_nonnull(parsed);
	for (o = parsed; o->keyword != NULL; o++)
		if (strcmp(o->keyword, "dbname") == 0)
			dbname = o->val;
	ck_assert_ptr_nonnull(dbname);
	snprintf(dsn, sizeof(dsn), "%s dbname=%s", app, dbname);
	owner = PQconnectdb(owner_db);
	ck_assert_msg(PQstatus(owner) == CONNECTION_OK, "%s",
	              PQerrorMessage(owner));
	snprintf(sql, sizeof(sql), "REVOKE CONNECT ON DATABASE \"%s\" FROM "
	         "PUBLIC", dbname);
	pg_test_exec(owner, sql);
	open_timed(&r, dsn, &opts);
	snprintf(sql, sizeof(sql), "GRANT CONNECT ON DATABASE \"%s\" TO "
	         "PUBLIC", dbname);
	pg_test_exec(owner, sql);
	PQfinish(owner);
	PQconninfoFree(parsed);
	check_refused(&r, EVS_ECONFIG, "no CONNECT privilege");
	ck_assert_str_eq(r.sqlstate, "42501");
}
END_TEST

/* Values libpq parses as a conninfo but then refuses to use: a retry can
 * never succeed, as with sslmode=bogus (which is EVS_ECONFIG). `tcp`:
 * through the proxy (libpq reads the keepalive settings only for TCP). */
static const struct {
	const char *extra;
	int tcp;
} unusable[] = {
	{"sslmode=bogus", 0},
	{"port=abc", 0},
	{"gssencmode=bogus", 0},
	{"target_session_attrs=bogus", 0},
	{"keepalives_idle=abc", 1},
	{"tcp_user_timeout=abc", 1},
	{"channel_binding=require", 0},
};

START_TEST(unusable_conninfo_values_are_config_errors)
{
	tcp_proxy *p = unusable[_i].tcp ? start_proxy() : NULL;
	char dsn[2048];
	open_result r;

	if (p != NULL)
		dsn_via(dsn, sizeof(dsn), p, unusable[_i].extra);
	else
		dsn_with(dsn, sizeof(dsn), unusable[_i].extra);
	open_fails(&r, EVS_ECONFIG, unusable[_i].extra, dsn);
	tcp_proxy_stop(p);
}
END_TEST

/* libpq's own PQconnectdb refuses connect_timeout=abc; evstore drives the
 * connection itself and must still bound it (or refuse the value). */
START_TEST(invalid_connect_timeout_still_bounds_the_attempt)
{
	tcp_proxy *p = start_proxy();
	job *j = jobs_new(1);
	char dsn[2048];

	dsn_via(dsn, sizeof(dsn), p, "connect_timeout=abc");
	tcp_proxy_set_mode(p, TCP_PROXY_FREEZE);
	j->op = OP_OPEN;
	j->conninfo = dsn;
	j->opts = options(1000, 0, 0);
	job_start(j);
	jobs_wait(j, 1, 1000 + MARGIN_MS + 2000);
	ck_assert_msg(j->rc == EVS_ECONFIG || j->rc == EVS_EUNAVAILABLE,
	              "open gave %d: %s", j->rc, j->err.message);
	jobs_free(j, 1);
	tcp_proxy_stop(p);
}
END_TEST

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

Suite *faults_suite(void)
{
	Suite *s = suite_create("faults");
	TCase *tc;

	tc = tcase_create("frozen");
	tcase_set_timeout(tc, 100);
	tcase_add_loop_test(tc, open_through_a_frozen_network_gives_up_in_time,
	                    0, N_OF(frozen_opens));
	tcase_add_test(tc, a_frozen_first_host_fails_over_to_the_next);
	tcase_add_loop_test(
		tc, calls_through_a_frozen_network_time_out_and_retry_replays,
		0, N_OF(frozen_calls));
	suite_add_tcase(s, tc);

	tc = tcase_create("cut");
	tcase_set_timeout(tc, 30);
	tcase_add_loop_test(
		tc, cut_while_idle_is_unavailable_then_the_pool_reconnects, 0,
		2);
	tcase_add_test(tc, cut_during_a_call_is_unavailable_at_once);
	tcase_add_loop_test(tc, keepalives_and_user_timeout_are_on_by_default,
	                    0, N_OF(tcp_settings));
	suite_add_tcase(s, tc);

	tc = tcase_create("refused");
	tcase_set_timeout(tc, 20);
	tcase_add_test(tc, missing_database_is_a_config_error);
	tcase_add_test(tc, missing_role_is_a_config_error);
	tcase_add_test(tc, wrong_password_is_a_config_error);
	tcase_add_test(tc, ssl_required_of_a_server_without_it_is_a_config_error);
	tcase_add_test(tc, unparseable_conninfo_is_a_config_error);
	tcase_add_test(tc, missing_socket_directory_is_unavailable);
	tcase_add_test(tc, no_connect_privilege_is_a_config_error);
	suite_add_tcase(s, tc);

	/* Values libpq accepts in a conninfo but will not use. */
	tc = tcase_create("values");
	tcase_set_timeout(tc, 20);
	tcase_add_loop_test(tc, unusable_conninfo_values_are_config_errors, 0,
	                    N_OF(unusable));
	tcase_add_test(tc, invalid_connect_timeout_still_bounds_the_attempt);
	suite_add_tcase(s, tc);
	return s;
}
