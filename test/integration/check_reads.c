/* Streaming reads hold a bounded number of bytes, however large the
 * events: a read of 120 events of 1 MB grows a process by less than
 * 16 MB, measured in a child of its own (getrusage). Callbacks never run
 * while a statement is open on the server, and a page cut at the budget
 * costs only its own connection. */
#include <check.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "integration/pg_test.h"

#define BIG_EVENTS 120
#define BIG_BYTES (1u << 20)
#define MAX_GROWTH_KB (16L * 1024)

static evs_store *open_store(unsigned int pool)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;

	opts.schema = pg_test_schema();
	opts.pool_size = pool;
	ck_assert_msg(evs_store_open_pg(&store, pg_test_dsn(), &opts, &err) ==
	              0, "open: %s", err.message);
	evs_error_clear(&err);
	return store;
}

/* Stores BIG_EVENTS events of about BIG_BYTES each in stream id, ten per
 * append. Returns the checkpoint before the first. */
static void store_big_events(evs_store *store, const char *id)
{
	char *data = malloc(BIG_BYTES + 16);
	evs_error err = EVS_ERROR_INIT;
	int i, j;

	ck_assert_ptr_nonnull(data);
	for (i = 0; i < BIG_EVENTS; i += 10) {
		evs_event *evs[10];

		for (j = 0; j < 10; j++) {
			/* A different string per event: nothing to share. */
			int n = snprintf(data, 32, "\"%03d-", i + j);

			memset(data + n, 'a' + (i + j) % 26, BIG_BYTES - n - 1);
			data[BIG_BYTES - 1] = '"';
			data[BIG_BYTES] = '\0';
			ck_assert_int_eq(evs_event_new_json(&evs[j], "Big", data,
			                                    NULL, &err), 0);
		}
		ck_assert_msg(evs_store_append(NULL, store, id, i - 1, evs, 10,
		                               &err) == 0,
		              "append: %s", err.message);
		for (j = 0; j < 10; j++)
			evs_event_free(evs[j]);
	}
	free(data);
	evs_error_clear(&err);
}

static long max_rss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

typedef struct {
	const char *id;
	long events;
	long bytes;
} count_ctx;

static int count_big(const evs_event *ev, void *payload)
{
	count_ctx *c = payload;

	if (c->id == NULL || strcmp(evs_event_aggregate_id(ev), c->id) == 0) {
		c->events++;
		c->bytes += (long)strlen(evs_event_data_json(ev));
	}
	return 0;
}

/* Runs a read in a child process and returns its peak RSS growth in kB
 * (or fails the test). mode 0: evs_store_foreach; 1: evs_store_read_all
 * from *from. */
static long growth_of_read(const char *id, int mode, const evs_position *from)
{
	int fds[2], status;
	long result[3] = {0, 0, 0};
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		evs_error err = EVS_ERROR_INIT;
		count_ctx c = {id, 0, 0};
		evs_store *store;
		long before;
		int64_t v;
		int rc;

		close(fds[0]);
		/* One connection, opened and used before the measurement. */
		store = open_store(1);
		evs_store_current_version(&v, store, id, NULL);
		before = max_rss_kb();
		if (mode == 0) {
			rc = evs_store_foreach(store, id, EVS_NO_VERSION,
			                       count_big, &c, &err);
		} else {
			c.id = id;
			rc = evs_store_read_all(store, from, 0, count_big, &c,
			                        &err);
		}
		result[0] = rc == 0 ? max_rss_kb() - before : -1;
		result[1] = c.events;
		result[2] = c.bytes;
		evs_error_clear(&err);
		evs_store_free(store);
		if (write(fds[1], result, sizeof(result)) != sizeof(result))
			_exit(2);
		_exit(0);
	}
	close(fds[1]);
	ck_assert_int_eq(read(fds[0], result, sizeof(result)),
	                 (ssize_t)sizeof(result));
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_msg(result[0] >= 0, "the read failed");
	ck_assert_int_eq(result[1], BIG_EVENTS);
	ck_assert_int_eq(result[2], (long)BIG_EVENTS * BIG_BYTES);
	return result[0];
}

static int last_checkpoint(const evs_event *ev, void *payload)
{
	evs_event_checkpoint(payload, ev);
	return 0;
}

START_TEST(reads_of_large_events_hold_a_bounded_number_of_bytes)
{
	evs_store *store = open_store(2);
	evs_position from = EVS_POSITION_START;
	char id[64];
	long grew;

	snprintf(id, sizeof(id), "big-%ld", (long)getpid());
	/* The feed's head before the big events: read_all starts there. */
	ck_assert_int_eq(evs_store_read_all(store, NULL, 0, last_checkpoint,
	                                    &from, NULL), 0);
	store_big_events(store, id);
	evs_store_free(store);

	grew = growth_of_read(id, 0, NULL);
#ifndef __SANITIZE_ADDRESS__
	/* (AddressSanitizer holds freed memory back: no bound there; the
	 * reads still run, and must bring every byte.) */
	ck_assert_msg(grew < MAX_GROWTH_KB,
	              "evs_store_foreach of %d events of 1 MB grew the "
	              "process by %ld kB", BIG_EVENTS, grew);
#endif
	grew = growth_of_read(id, 1, &from);
#ifndef __SANITIZE_ADDRESS__
	ck_assert_msg(grew < MAX_GROWTH_KB,
	              "evs_store_read_all over %d events of 1 MB grew the "
	              "process by %ld kB", BIG_EVENTS, grew);
#endif
	(void)grew;
}
END_TEST

typedef struct {
	int calls;
	int64_t last;
} stop_ctx;

static int stop_at_three(const evs_event *ev, void *payload)
{
	stop_ctx *c = payload;

	c->last = evs_event_version(ev);
	return ++c->calls == 3 ? 7 : 0;
}

/* A callback that stops in the middle of a page of large events (the
 * rest of the page still on its way) leaves a store that works: the
 * connection is given up, not left with a half-read reply. */
START_TEST(stopping_inside_a_page_of_large_events_leaves_the_store_usable)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	stop_ctx c = {0, -1};
	evs_event_list *list = NULL;
	char id[64];

	opts.schema = pg_test_schema();
	opts.pool_size = 1;
	opts.read_buffer_bytes = 1; /* hand out every event as it comes */
	ck_assert_int_eq(evs_store_open_pg(&store, pg_test_dsn(), &opts, &err),
	                 0);
	snprintf(id, sizeof(id), "stop-%ld", (long)getpid());
	store_big_events(store, id);
	ck_assert_int_eq(evs_store_foreach(store, id, EVS_NO_VERSION,
	                                   stop_at_three, &c, &err), 7);
	ck_assert_int_eq(c.calls, 3);
	ck_assert_int_eq(c.last, 2);
	ck_assert_int_eq(evs_store_load(&list, store, id, 110, &err), 0);
	ck_assert_int_eq(evs_event_list_count(list), 9);
	ck_assert_int_eq(evs_event_version(evs_event_list_get(list, 0)), 111);
	evs_event_list_free(list);
	evs_store_free(store);
	evs_error_clear(&err);
}
END_TEST

static void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	nanosleep(&ts, NULL);
}

/* n events of about `bytes` each in stream id, in one append. */
static void store_events(evs_store *store, const char *id, int n,
                         size_t bytes)
{
	evs_event **evs = calloc((size_t)n, sizeof(*evs));
	char *data = malloc(bytes + 3);
	int i;

	ck_assert(evs != NULL && data != NULL);
	data[0] = '"';
	memset(data + 1, 'x', bytes);
	data[bytes + 1] = '"';
	data[bytes + 2] = '\0';
	for (i = 0; i < n; i++)
		ck_assert_int_eq(evs_event_new_json(&evs[i], "Mid", data, NULL,
		                                    NULL), 0);
	ck_assert_int_eq(evs_store_append(NULL, store, id, EVS_NO_VERSION, evs,
	                                  (size_t)n, NULL), 0);
	for (i = 0; i < n; i++)
		evs_event_free(evs[i]);
	free(evs);
	free(data);
}

typedef struct {
	long seen;
	int64_t next;
	int in_order;
} slow_ctx;

static int slow_cb(const evs_event *ev, void *payload)
{
	slow_ctx *c = payload;

	if (evs_event_version(ev) != c->next)
		c->in_order = 0;
	c->next = evs_event_version(ev) + 1;
	c->seen++;
	sleep_ms(3);
	return 0;
}

/* A consumer slower than the server's statement_timeout allows for the
 * whole stream still reads it: no statement stays open while callbacks
 * run (before, a page past the budget was handed out with its statement
 * open, and a 1 s statement_timeout killed the read after 368 of 1,000
 * events). */
START_TEST(a_slow_consumer_is_not_cut_off_by_the_statement_timeout)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	slow_ctx c = {0, 0, 1};
	char id[64];
	int rc;

	opts.schema = pg_test_schema();
	opts.pool_size = 1;
	opts.read_buffer_bytes = 64 * 1024;
	opts.statement_timeout_ms = 1000;
	ck_assert_int_eq(evs_store_open_pg(&store, pg_test_dsn(), &opts, &err),
	                 0);
	snprintf(id, sizeof(id), "slow-%ld", (long)getpid());
	store_events(store, id, 1000, 4096);
	rc = evs_store_foreach(store, id, EVS_NO_VERSION, slow_cb, &c, &err);
	ck_assert_msg(rc == 0, "foreach: %d %s", rc,
	              err.message ? err.message : "");
	ck_assert_int_eq(c.seen, 1000);
	ck_assert(c.in_order);
	evs_store_free(store);
	evs_error_clear(&err);
}
END_TEST

/* The backend pids of the sessions evstore opened (application_name
 * "evstore"), other than the given connection's. */
static int evstore_backends(PGconn *conn, int *pids, int max)
{
	PGresult *res = PQexec(conn, "SELECT pid FROM pg_stat_activity "
	                             "WHERE application_name = 'evstore' "
	                             "AND pid <> pg_backend_pid() "
	                             "ORDER BY pid");
	int n = 0, i;

	ck_assert_int_eq(PQresultStatus(res), PGRES_TUPLES_OK);
	for (i = 0; i < PQntuples(res) && n < max; i++)
		pids[n++] = atoi(PQgetvalue(res, i, 0));
	PQclear(res);
	return n;
}

typedef struct {
	evs_store *store;
	const char *id;
	int rc;
} append_job;

static void *append_waiting(void *arg)
{
	append_job *j = arg;
	evs_event *ev = NULL;

	/* No ck_assert off the test's thread: the result says it all. */
	j->rc = evs_event_new_json(&ev, "T", "{}", NULL, NULL);
	if (j->rc == 0)
		j->rc = evs_store_append(NULL, j->store, j->id,
		                         EVS_ANY_VERSION, &ev, 1, NULL);
	evs_event_free(ev);
	return NULL;
}

/* A page cut at the budget closes its own connection only: the pool's
 * other, idle connections stay (before, every idle one was closed, and
 * the next calls all reconnected). */
START_TEST(a_page_cut_at_the_budget_leaves_the_other_connections)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	PGconn *watch = pg_test_connect(), *lock = pg_test_connect();
	int before[8], after[8], nb, na, i, j, kept = 0;
	char id[64], lock_id[64], sql[256];
	append_job job;
	pthread_t th;
	count_ctx c = {NULL, 0, 0};
	int64_t v;

	opts.schema = pg_test_schema();
	opts.pool_size = 2;
	opts.read_buffer_bytes = 16 * 1024;
	ck_assert_int_eq(evs_store_open_pg(&store, pg_test_dsn(), &opts, &err),
	                 0);
	snprintf(id, sizeof(id), "cut-%ld", (long)getpid());
	snprintf(lock_id, sizeof(lock_id), "cut-lock-%ld", (long)getpid());
	store_events(store, id, 200, 4096);
	store_events(store, lock_id, 1, 10);
	/* Two connections in the pool: one waits on a row lock while the
	 * other serves a call. */
	snprintf(sql, sizeof(sql), "BEGIN; UPDATE \"%s\".streams SET version "
	         "= version WHERE stream_id = '%s'", pg_test_schema(), lock_id);
	pg_test_exec(lock, sql);
	job.store = store;
	job.id = lock_id;
	job.rc = -100;
	ck_assert_int_eq(pthread_create(&th, NULL, append_waiting, &job), 0);
	for (i = 0; i < 500 && evstore_backends(watch, before, 8) < 2; i++)
		sleep_ms(10);
	ck_assert_int_eq(evs_store_current_version(&v, store, id, &err), 0);
	pg_test_exec(lock, "COMMIT");
	pthread_join(th, NULL);
	ck_assert_int_eq(job.rc, 0);
	nb = evstore_backends(watch, before, 8);
	ck_assert_int_eq(nb, 2);
	/* A read of 200 events of 4 KB with a 16 KB budget: its first page
	 * is cut (its connection closed); the rest go on the other one. */
	ck_assert_int_eq(evs_store_foreach(store, id, EVS_NO_VERSION,
	                                   count_big, &c, &err), 0);
	ck_assert_int_eq(c.events, 200);
	na = evstore_backends(watch, after, 8);
	for (i = 0; i < nb; i++)
		for (j = 0; j < na; j++)
			kept += before[i] == after[j];
	ck_assert_msg(kept == 1, "%d of the pool's 2 connections are left "
	              "(want 1: the cut page's own is closed)", kept);
	evs_store_free(store);
	PQfinish(watch);
	PQfinish(lock);
	evs_error_clear(&err);
}
END_TEST

/* ---- snapshots: one statement ---------------------------------------- */

/* Statements this role ran, by pg_stat_statements (when the server
 * counts them; see run.sh), not counting the ones that ask it. */
static long statements_run(PGconn *conn)
{
	return strtol(pg_test_exec(conn,
		"SELECT coalesce(sum(calls), 0) FROM public.pg_stat_statements "
		"WHERE userid = (SELECT oid FROM pg_roles WHERE rolname = "
		"current_user) AND query NOT LIKE '%pg_stat_statements%'"),
		NULL, 10);
}

typedef struct {
	int snapshots;
	int64_t snap_version;
	long events;
	int64_t first, last;
} snap_seen;

static int seen_snapshot(int64_t version, const char *json, size_t len,
                         void *payload)
{
	snap_seen *s = payload;

	(void)len;
	ck_assert_ptr_nonnull(strstr(json, "\"sum\""));
	s->snapshots++;
	s->snap_version = version;
	return 0;
}

static int seen_event(const evs_event *ev, void *payload)
{
	snap_seen *s = payload;

	if (s->events++ == 0)
		s->first = evs_event_version(ev);
	s->last = evs_event_version(ev);
	return 0;
}

START_TEST(a_snapshot_load_of_a_long_stream_is_one_statement)
{
	enum { N = 100000, BACK = 10 };
	evs_store *store = open_store(1);
	PGconn *conn = pg_test_connect();
	evs_error err = EVS_ERROR_INIT;
	char id[64], sql[1024];
	snap_seen s;
	int64_t v;
	long before, after;
	int stored = 0;

	snprintf(id, sizeof(id), "snaplong-%ld", (long)getpid());
	/* 100,000 events, written straight in (as the owner may). */
	snprintf(sql, sizeof(sql),
	         "SET search_path TO \"%s\"; INSERT INTO streams (stream_id, "
	         "version, last_key) VALUES ('%s', %d, pg_current_xact_id()); "
	         "INSERT INTO events (stream_id, version, event_id, type, "
	         "data) SELECT '%s', v, gen_random_uuid(), 'Added', "
	         "jsonb_build_object('n', v) FROM generate_series(0, %d) v",
	         pg_test_schema(), id, N - 1, id, N - 1);
	pg_test_exec(conn, sql);
	ck_assert_int_eq(evs_store_save_snapshot(&stored, store, id, "summer",
	                                         1, N - 1 - BACK,
	                                         "{\"sum\": 1}", &err),
	                 0);
	ck_assert_int_eq(stored, 1);
	/* The store's one connection is made and prepared: what follows
	 * is the load alone. */
	ck_assert_int_eq(evs_store_current_version(&v, store, id, &err), 0);
	ck_assert_int_eq(v, N - 1);
	before = getenv("EVS_TEST_PG_STATEMENTS") ? statements_run(conn) : 0;
	memset(&s, 0, sizeof(s));
	ck_assert_int_eq(evs_store_load_snapshot(store, id, "summer", 1,
	                                         seen_snapshot, seen_event, &s,
	                                         &err),
	                 0);
	ck_assert_int_eq(s.snapshots, 1);
	ck_assert_int_eq(s.snap_version, N - 1 - BACK);
	ck_assert_int_eq(s.events, BACK);
	ck_assert_int_eq(s.first, N - BACK);
	ck_assert_int_eq(s.last, N - 1);
	if (getenv("EVS_TEST_PG_STATEMENTS") != NULL) {
		after = statements_run(conn);
		ck_assert_msg(after - before == 1,
		              "the load ran %ld statements, not 1",
		              after - before);
		/* Without a snapshot of its format: every event, page by
		 * page. */
		memset(&s, 0, sizeof(s));
		before = statements_run(conn);
		ck_assert_int_eq(evs_store_load_snapshot(store, id, "summer",
		                                         2, seen_snapshot,
		                                         seen_event, &s,
		                                         &err),
		                 0);
		after = statements_run(conn);
		ck_assert_int_eq(s.snapshots, 0);
		ck_assert_int_eq(s.events, N);
		ck_assert_int_ge(after - before, N / 1000);
		fprintf(stderr, "reads: a snapshot load of a %d-event stream "
		        "took 1 statement; a full one %ld\n", N,
		        after - before);
	} else {
		fprintf(stderr, "reads: the server counts no statements "
		        "(pg_stat_statements): the snapshot load's count is "
		        "not checked\n");
	}
	evs_store_free(store);
	PQfinish(conn);
	evs_error_clear(&err);
}
END_TEST

Suite *reads_suite(void)
{
	Suite *s = suite_create("reads");
	TCase *tc = tcase_create("bounded");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, reads_of_large_events_hold_a_bounded_number_of_bytes);
	tcase_add_test(tc,
	               stopping_inside_a_page_of_large_events_leaves_the_store_usable);
	tcase_add_test(tc, a_slow_consumer_is_not_cut_off_by_the_statement_timeout);
	tcase_add_test(tc, a_page_cut_at_the_budget_leaves_the_other_connections);
	tcase_add_test(tc, a_snapshot_load_of_a_long_stream_is_one_statement);
	suite_add_tcase(s, tc);
	return s;
}
