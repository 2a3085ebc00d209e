/* Group commit and multi-stream appends on PostgreSQL (issue 11): every
 * append keeps its own answer when concurrent appends go out together;
 * a connection killed under a group fails every append of it and a
 * resend stores each event once; a stream held by another session does
 * not hold its neighbours; racing multi-stream calls never deadlock, gap
 * or split. Real threads, real sessions. */
#define _GNU_SOURCE /* pthread_tryjoin_np */
#include <inttypes.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/testutil.h"
#include "integration/pg_test.h"

/* ---- helpers ------------------------------------------------------------ */

static void make_prefix(char *out, size_t size, const char *what)
{
	static unsigned int n;

	snprintf(out, size, "grp%ld-%u-%s-", (long)getpid(), ++n, what);
}

typedef struct {
	unsigned int pool, in_flight, lock_wait_ms, off;
} store_cfg;

static evs_store *open_cfg(const char *dsn, store_cfg cfg)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;

	opts.schema = pg_test_schema();
	opts.pool_size = cfg.pool;
	opts.pool_timeout_ms = 30000;
	opts.group_in_flight = cfg.in_flight;
	opts.group_lock_wait_ms = cfg.lock_wait_ms;
	opts.group_commit_off = cfg.off;
	ck_assert_msg(evs_store_open_pg(&store, dsn, &opts, &err) == 0,
	              "open: %s", err.message);
	evs_error_clear(&err);
	return store;
}

static evs_event *event_n(const char *type, int n)
{
	char data[64];
	evs_event *ev = NULL;

	snprintf(data, sizeof(data), "{\"n\": %d}", n);
	ck_assert_int_eq(evs_event_new_json(&ev, type, data, NULL, NULL), 0);
	return ev;
}

static int data_n(const evs_event *ev)
{
	json_object *n = NULL;

	ck_assert(json_object_object_get_ex(evs_event_data(ev), "n", &n));
	return json_object_get_int(n);
}

static evs_event_list *load_all(evs_store *store, const char *id)
{
	evs_event_list *list = NULL;
	evs_error err = EVS_ERROR_INIT;
	size_t i;

	ck_assert_msg(evs_store_load(&list, store, id, EVS_NO_VERSION, &err) ==
	              0, "load %s: %s", id, err.message);
	for (i = 0; i < evs_event_list_count(list); i++)
		ck_assert_int_eq(evs_event_version(evs_event_list_get(list, i)),
		                 (int64_t)i);
	evs_error_clear(&err);
	return list;
}

/* Asserts that stream id holds n events, versions 0..n-1. */
static void assert_count(evs_store *store, const char *id, size_t n)
{
	evs_event_list *list = load_all(store, id);

	ck_assert_uint_eq(evs_event_list_count(list), n);
	evs_event_list_free(list);
}

/* ---- A: each append keeps its own answer --------------------------------- */

#define A_THREADS 16
#define A_ROUNDS 30
#define A_HOT 4

typedef struct {
	evs_store *store;
	const char *prefix;
	int t;
	char error[512];
	int hot_n;                  /* hot appends made */
	int64_t hot_version[A_ROUNDS];
	int hot_stream[A_ROUNDS];
	evs_uuid hot_id[A_ROUNDS];
	evs_uuid mine[A_ROUNDS];    /* the private stream's events */
	int n_mine;
	int appends;                /* that stored events */
} a_thread;

#define A_FAIL(...)                                                        \
	do {                                                               \
		if (a->error[0] == '\0')                                   \
			snprintf(a->error, sizeof(a->error), __VA_ARGS__); \
	} while (0)

/* A private stream takes a scripted mix whose every answer is known: it
 * is this thread's alone, and the thread waits for each answer. Meanwhile
 * 15 other threads append, so these go out in groups with theirs. */
static void *a_run(void *arg)
{
	a_thread *a = arg;
	evs_error err = EVS_ERROR_INIT;
	evs_append_result res;
	char mine_id[128], missing[128], hot[128];
	int64_t kv = EVS_NO_VERSION;
	int r, rc;

	snprintf(mine_id, sizeof(mine_id), "%sp%d", a->prefix, a->t);
	for (r = 0; r < A_ROUNDS && a->error[0] == '\0'; r++) {
		evs_event *e1 = event_n("Mine", r), *x = event_n("X", r);
		evs_event *dup[2] = {x, NULL};
		evs_event *h = event_n("Hot", a->t * 1000 + r);

		rc = evs_store_append_ext(&res, a->store, mine_id, kv, &e1, 1,
		                          0, &err);
		if (rc != 0 || res.version != kv + 1 || res.replayed)
			A_FAIL("round %d: append at %lld: rc %d v %lld: %s", r,
			       (long long)kv, rc, (long long)res.version,
			       err.message);
		kv++;
		a->mine[a->n_mine++] = *evs_event_id(e1);
		a->appends++;
		if (r % 3 == 1) {
			rc = evs_store_append(NULL, a->store, mine_id, kv - 1,
			                      &x, 1, &err);
			if (rc != EVS_ECONFLICT || err.actual_version != kv)
				A_FAIL("round %d: stale append: rc %d actual "
				       "%lld", r, rc,
				       (long long)err.actual_version);
		}
		if (r % 4 == 2) {
			rc = evs_store_append_ext(&res, a->store, mine_id,
			                          kv - 1, &e1, 1, 0, &err);
			if (rc != 0 || !res.replayed || res.version != kv)
				A_FAIL("round %d: replay: rc %d replayed %d v "
				       "%lld", r, rc, res.replayed,
				       (long long)res.version);
		}
		if (r % 5 == 3) {
			dup[1] = e1;
			rc = evs_store_append(NULL, a->store, mine_id, kv, dup,
			                      2, &err);
			if (rc != EVS_EDUPLICATE)
				A_FAIL("round %d: duplicate: rc %d", r, rc);
		}
		if (r % 6 == 4) {
			snprintf(missing, sizeof(missing), "%sq%d-%d",
			         a->prefix, a->t, r);
			rc = evs_store_append(NULL, a->store, missing,
			                      EVS_STREAM_EXISTS, &x, 1, &err);
			if (rc != EVS_ECONFLICT ||
			    err.actual_version != EVS_NO_VERSION)
				A_FAIL("round %d: existing stream: rc %d", r,
				       rc);
		}
		snprintf(hot, sizeof(hot), "%shot%d", a->prefix, r % A_HOT);
		rc = evs_store_append_ext(&res, a->store, hot, EVS_ANY_VERSION,
		                          &h, 1, 0, &err);
		if (rc != 0)
			A_FAIL("round %d: hot append: rc %d: %s", r, rc,
			       err.message);
		a->hot_stream[a->hot_n] = r % A_HOT;
		a->hot_version[a->hot_n] = res.version;
		a->hot_id[a->hot_n++] = *evs_event_id(h);
		a->appends++;
		evs_event_free(e1);
		evs_event_free(x);
		evs_event_free(h);
	}
	evs_error_clear(&err);
	return NULL;
}

START_TEST(group_commit_gives_each_append_its_own_answer)
{
	static a_thread a[A_THREADS];
	pthread_t th[A_THREADS];
	store_cfg cfg = {A_THREADS, 2, 0, 0}; /* groups: 2 out at once */
	evs_store *store = open_cfg(pg_test_dsn(), cfg);
	char prefix[64], id[128], sql[512];
	PGconn *conn = pg_test_connect();
	int t, k, total = 0, hot_total = 0;
	long txns;

	make_prefix(prefix, sizeof(prefix), "own");
	for (t = 0; t < A_THREADS; t++) {
		memset(&a[t], 0, sizeof(a[t]));
		a[t].store = store;
		a[t].prefix = prefix;
		a[t].t = t;
		ck_assert_int_eq(pthread_create(&th[t], NULL, a_run, &a[t]),
		                 0);
	}
	for (t = 0; t < A_THREADS; t++) {
		pthread_join(th[t], NULL);
		ck_assert_msg(a[t].error[0] == '\0', "thread %d: %s", t,
		              a[t].error);
		total += a[t].appends;
		hot_total += a[t].hot_n;
	}
	/* Each private stream holds its thread's events, in order. */
	for (t = 0; t < A_THREADS; t++) {
		evs_event_list *list;

		snprintf(id, sizeof(id), "%sp%d", prefix, t);
		list = load_all(store, id);
		ck_assert_uint_eq(evs_event_list_count(list),
		                  (size_t)a[t].n_mine);
		for (k = 0; k < a[t].n_mine; k++)
			ck_assert(evs_uuid_equal(
			        evs_event_id(evs_event_list_get(list, (size_t)k)),
			        &a[t].mine[k]));
		evs_event_list_free(list);
	}
	/* Every hot append is where its answer said, each event once. */
	{
		evs_event_list *hot[A_HOT];
		size_t n = 0;

		for (k = 0; k < A_HOT; k++) {
			snprintf(id, sizeof(id), "%shot%d", prefix, k);
			hot[k] = load_all(store, id);
			n += evs_event_list_count(hot[k]);
		}
		ck_assert_uint_eq(n, (size_t)hot_total);
		for (t = 0; t < A_THREADS; t++)
			for (k = 0; k < a[t].hot_n; k++) {
				const evs_event *ev = evs_event_list_get(
				        hot[a[t].hot_stream[k]],
				        (size_t)a[t].hot_version[k]);

				ck_assert_ptr_nonnull(ev);
				ck_assert(evs_uuid_equal(evs_event_id(ev),
				                         &a[t].hot_id[k]));
			}
		for (k = 0; k < A_HOT; k++)
			evs_event_list_free(hot[k]);
	}
	/* And they went out in groups: fewer transactions than appends. */
	snprintf(sql, sizeof(sql),
	         "SELECT count(DISTINCT xmin::text) FROM \"%s\".events "
	         "WHERE stream_id LIKE '%s%%'", pg_test_schema(), prefix);
	txns = atol(pg_test_exec(conn, sql));
	ck_assert_msg(txns < total, "%ld transactions for %d appends", txns,
	              total);
	PQfinish(conn);
	evs_store_free(store);
}
END_TEST

/* ---- B and C: a stream held by another session ------------------------------ */

typedef struct {
	evs_store *store;
	char id[128];
	int64_t expected;
	evs_event *ev;
	int rc;
	int done;
	evs_error err;
} one_append;

static void *run_one(void *arg)
{
	one_append *o = arg;

	o->rc = evs_store_append(NULL, o->store, o->id, o->expected, &o->ev, 1,
	                         &o->err);
	__atomic_store_n(&o->done, 1, __ATOMIC_SEQ_CST);
	return NULL;
}

/* The pids of the sessions waiting for session holder's locks. */
static int waiters(PGconn *admin, int holder, int *pids, int max)
{
	char sql[512];
	PGresult *res;
	int i, n;

	/* Directly, or behind another waiter (the second waiter for a row
	 * waits for the first one's tuple lock). */
	snprintf(sql, sizeof(sql),
	         "WITH RECURSIVE w(pid) AS (SELECT pid FROM pg_stat_activity "
	         "WHERE %d = ANY (pg_blocking_pids(pid)) UNION SELECT a.pid "
	         "FROM pg_stat_activity a JOIN w ON w.pid = ANY "
	         "(pg_blocking_pids(a.pid))) SELECT w.pid FROM w JOIN "
	         "pg_stat_activity a USING (pid) ORDER BY a.backend_start",
	         holder);
	res = PQexec(admin, sql);
	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s",
	              PQerrorMessage(admin));
	n = PQntuples(res);
	for (i = 0; i < n && i < max; i++)
		pids[i] = atoi(PQgetvalue(res, i, 0));
	PQclear(res);
	return n;
}

/* Waits (bounded) until exactly `want` sessions wait for holder; returns
 * the first one's pid. */
static int wait_waiters(PGconn *admin, int holder, int want)
{
	int pids[8], i, n = 0;

	for (i = 0; i < 2000; i++) {
		n = waiters(admin, holder, pids, 8);
		if (n == want)
			return pids[0];
		tu_sleep_ms(5);
	}
	ck_abort_msg("%d sessions waited for the held stream, not %d", n,
	             want);
	return -1;
}

/* Holds stream id's row lock in a session of its own; returns it. */
static PGconn *hold_stream(const char *id, int *pid)
{
	PGconn *holder = pg_test_connect();
	char sql[512];

	pg_test_exec(holder, "BEGIN");
	snprintf(sql, sizeof(sql),
	         "SELECT version FROM \"%s\".streams WHERE stream_id = '%s' "
	         "FOR UPDATE", pg_test_schema(), id);
	pg_test_exec(holder, sql);
	*pid = PQbackendPID(holder);
	return holder;
}

static void terminate(PGconn *admin, int pid)
{
	char sql[64];

	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(%d)", pid);
	ck_assert_str_eq(pg_test_exec(admin, sql), "t");
}

#define B_FREE 4

/* ap[0]: the held stream at version 0; ap[1..B_FREE]: new streams;
 * ap[B_FREE + 1]: the held stream at any version. */
static void setup_appends(one_append *ap, evs_store *store,
                          const char *prefix, const char *held)
{
	int i;

	memset(ap, 0, (B_FREE + 2) * sizeof(*ap));
	for (i = 0; i < B_FREE + 2; i++) {
		ap[i].store = store;
		ap[i].ev = event_n("E", i);
		ap[i].err = (evs_error)EVS_ERROR_INIT;
		if (i == 0 || i == B_FREE + 1) {
			snprintf(ap[i].id, sizeof(ap[i].id), "%s", held);
			ap[i].expected = i == 0 ? 0 : EVS_ANY_VERSION;
		} else {
			snprintf(ap[i].id, sizeof(ap[i].id), "%sfree%d", prefix,
			         i);
			ap[i].expected = EVS_NO_VERSION;
		}
	}
}

static void free_appends(one_append *ap)
{
	int i;

	for (i = 0; i < B_FREE + 2; i++) {
		evs_event_free(ap[i].ev);
		evs_error_clear(&ap[i].err);
	}
}

START_TEST(killed_group_connection_fails_every_append_and_resends_once)
{
	/* One append or group out at a time, and groups that wait for
	 * locks as long as it takes. */
	store_cfg cfg = {8, 1, 60000, 0};
	evs_store *store = open_cfg(pg_test_dsn(), cfg);
	PGconn *admin = pg_test_connect(), *holder;
	one_append ap[B_FREE + 2];
	pthread_t th[B_FREE + 2];
	char prefix[64], held[128];
	evs_event *first = event_n("First", 0);
	int holder_pid, pid, i;

	make_prefix(prefix, sizeof(prefix), "kill");
	snprintf(held, sizeof(held), "%sheld", prefix);
	ck_assert_int_eq(evs_store_append(NULL, store, held, EVS_NO_VERSION,
	                                  &first, 1, NULL), 0);
	holder = hold_stream(held, &holder_pid);

	/* ap[0] goes out alone and waits for the held stream... */
	setup_appends(ap, store, prefix, held);
	ck_assert_int_eq(pthread_create(&th[0], NULL, run_one, &ap[0]), 0);
	pid = wait_waiters(admin, holder_pid, 1);
	/* ... the others queue behind it (four new streams and the held
	 * one again) ... */
	for (i = 1; i < B_FREE + 2; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, run_one, &ap[i]),
		                 0);
	tu_sleep_ms(300);
	for (i = 1; i < B_FREE + 2; i++)
		ck_assert_int_eq(__atomic_load_n(&ap[i].done, __ATOMIC_SEQ_CST),
		                 0);
	/* ... and go out together once it fails: the group waits for the
	 * held stream too, and is killed there. */
	terminate(admin, pid);
	pthread_join(th[0], NULL);
	ck_assert_int_eq(ap[0].rc, EVS_EUNAVAILABLE);
	pid = wait_waiters(admin, holder_pid, 1);
	terminate(admin, pid);
	for (i = 1; i < B_FREE + 2; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(ap[i].rc == EVS_EUNAVAILABLE, "append %d: %d %s",
		              i, ap[i].rc, ap[i].err.message);
	}
	pg_test_exec(holder, "ROLLBACK");

	/* Nothing of the group was stored; resending everything (twice)
	 * stores each event once. */
	for (i = 0; i < B_FREE + 2; i++) {
		int k;

		for (k = 0; k < 2; k++) {
			ck_assert_msg(evs_store_append(NULL, store, ap[i].id,
			                               ap[i].expected, &ap[i].ev,
			                               1, &ap[i].err) == 0,
			              "resend %d: %s", i, ap[i].err.message);
		}
	}
	for (i = 1; i <= B_FREE; i++)
		assert_count(store, ap[i].id, 1);
	assert_count(store, held, 3);
	free_appends(ap);
	evs_event_free(first);
	PQfinish(holder);
	PQfinish(admin);
	evs_store_free(store);
}
END_TEST

START_TEST(held_stream_does_not_hold_the_others)
{
	/* One out at a time; a group waits 300 ms for a lock at most. */
	store_cfg cfg = {8, 1, 300, 0};
	evs_store *store = open_cfg(pg_test_dsn(), cfg);
	PGconn *admin = pg_test_connect(), *holder;
	one_append ap[B_FREE + 2];
	pthread_t th[B_FREE + 2];
	char prefix[64], held[128];
	evs_event *first = event_n("First", 0);
	int holder_pid, i;
	int64_t until;

	make_prefix(prefix, sizeof(prefix), "held");
	snprintf(held, sizeof(held), "%sheld", prefix);
	ck_assert_int_eq(evs_store_append(NULL, store, held, EVS_NO_VERSION,
	                                  &first, 1, NULL), 0);
	holder = hold_stream(held, &holder_pid);
	setup_appends(ap, store, prefix, held);
	/* A lone append waits for the held stream; the others, queued
	 * behind it, still get through while it is held:
	 * the held one's second append ends up waiting alone. */
	ck_assert_int_eq(pthread_create(&th[0], NULL, run_one, &ap[0]), 0);
	wait_waiters(admin, holder_pid, 1);
	for (i = 1; i < B_FREE + 2; i++)
		ck_assert_int_eq(pthread_create(&th[i], NULL, run_one, &ap[i]),
		                 0);
	until = tu_now_ms() + 30000;
	for (i = 1; i <= B_FREE; i++) {
		while (!__atomic_load_n(&ap[i].done, __ATOMIC_SEQ_CST) &&
		       tu_now_ms() < until)
			tu_sleep_ms(10);
		ck_assert_msg(__atomic_load_n(&ap[i].done, __ATOMIC_SEQ_CST),
		              "append %d to a free stream waited for the held "
		              "one", i);
		ck_assert_msg(ap[i].rc == 0, "append %d: %s", i,
		              ap[i].err.message);
	}
	wait_waiters(admin, holder_pid, 2);
	ck_assert_int_eq(__atomic_load_n(&ap[0].done, __ATOMIC_SEQ_CST), 0);
	pg_test_exec(holder, "COMMIT");
	pthread_join(th[0], NULL);
	ck_assert_int_eq(ap[0].rc, 0);
	for (i = 1; i < B_FREE + 2; i++) {
		pthread_join(th[i], NULL);
		ck_assert_msg(ap[i].rc == 0, "append %d: %s", i,
		              ap[i].err.message);
	}
	assert_count(store, held, 3);
	free_appends(ap);
	evs_event_free(first);
	PQfinish(holder);
	PQfinish(admin);
	evs_store_free(store);
}
END_TEST

/* ---- D: racing multi-stream calls ---------------------------------------------- */

#define D_THREADS 8
#define D_CALLS 60
#define D_STREAMS 6

typedef struct {
	evs_store *store;
	const char *prefix;
	int t;
	uint64_t rng;
	int atomic_stored[D_CALLS]; /* 1: this atomic call was stored */
	int is_atomic[D_CALLS];
	int width[D_CALLS];
	char error[512];
} d_thread;

/* Each call appends one event to each of 1 to 4 random streams, in a
 * random order, at the version just read or at any version; atomic or
 * not. An event's n says which thread and call wrote it. */
static void *d_run(void *arg)
{
	d_thread *d = arg;
	evs_error err = EVS_ERROR_INIT;
	int c;

	for (c = 0; c < D_CALLS && d->error[0] == '\0'; c++) {
		char ids[4][128];
		int sidx[4];
		evs_event *ev[4];
		evs_append_req r[4];
		int w = 1 + (int)(tu_rand(&d->rng) % 4), k, rc, used = 0;
		unsigned int flags = tu_rand(&d->rng) % 2 ? EVS_APPEND_ATOMIC
		                                            : 0;

		for (k = 0; k < w; k++) {
			int s = (int)(tu_rand(&d->rng) % D_STREAMS), j;

			for (j = 0; j < used; j++)
				if (sidx[j] == s)
					break;
			if (j < used)
				continue; /* a stream once per call */
			sidx[used] = s;
			snprintf(ids[used], sizeof(ids[used]), "%ss%d",
			         d->prefix, s);
			ev[used] = event_n("D", d->t * 1000 + c);
			memset(&r[used], 0, sizeof(r[used]));
			r[used].aggregate_id = ids[used];
			r[used].events = &ev[used];
			r[used].n_events = 1;
			if (tu_rand(&d->rng) % 3 == 0) {
				r[used].expected_version = EVS_ANY_VERSION;
			} else {
				int64_t v = EVS_NO_VERSION;

				rc = evs_store_current_version(&v, d->store,
				                               ids[used], &err);
				if (rc != 0 && rc != EVS_ENOTFOUND)
					snprintf(d->error, sizeof(d->error),
					         "version: %s", err.message);
				r[used].expected_version = v;
			}
			used++;
		}
		d->width[c] = used;
		d->is_atomic[c] = flags != 0;
		rc = evs_store_append_many(d->store, r, (size_t)used, flags,
		                           &err);
		if (rc != 0 && rc != EVS_ECONFLICT)
			snprintf(d->error, sizeof(d->error),
			         "call %d: %d %s (%s)", c, rc, err.message,
			         err.sqlstate);
		if (flags && rc == 0)
			d->atomic_stored[c] = 1;
		for (k = 0; k < used; k++) {
			if (flags && rc != 0 && r[k].rc == 0 &&
			    !r[k].replayed)
				snprintf(d->error, sizeof(d->error),
				         "call %d: atomic call failed but "
				         "request %d says stored", c, k);
			evs_event_free(ev[k]);
		}
	}
	evs_error_clear(&err);
	return NULL;
}

START_TEST(racing_multi_stream_calls_never_deadlock_gap_or_split)
{
	static d_thread d[D_THREADS];
	static int count[D_THREADS * 1000];
	pthread_t th[D_THREADS];
	store_cfg cfg = {D_THREADS, 0, 0, 0};
	evs_store *store = open_cfg(pg_test_dsn(), cfg);
	char prefix[64], id[128];
	int t, s, c;

	make_prefix(prefix, sizeof(prefix), "race");
	memset(count, 0, sizeof(count));
	for (t = 0; t < D_THREADS; t++) {
		memset(&d[t], 0, sizeof(d[t]));
		d[t].store = store;
		d[t].prefix = prefix;
		d[t].t = t;
		d[t].rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(t + 1) ^
		           (uint64_t)tu_now_ms();
		ck_assert_int_eq(pthread_create(&th[t], NULL, d_run, &d[t]),
		                 0);
	}
	for (t = 0; t < D_THREADS; t++) {
		pthread_join(th[t], NULL);
		ck_assert_msg(d[t].error[0] == '\0', "thread %d: %s", t,
		              d[t].error);
	}
	/* Versions without gaps (load_all), and every stored atomic call
	 * whole, every refused one absent. */
	for (s = 0; s < D_STREAMS; s++) {
		evs_event_list *list;
		size_t i;

		snprintf(id, sizeof(id), "%ss%d", prefix, s);
		list = load_all(store, id);
		for (i = 0; i < evs_event_list_count(list); i++)
			count[data_n(evs_event_list_get(list, i))]++;
		evs_event_list_free(list);
	}
	for (t = 0; t < D_THREADS; t++)
		for (c = 0; c < D_CALLS; c++) {
			int n = count[t * 1000 + c];

			if (!d[t].is_atomic[c])
				ck_assert_int_le(n, d[t].width[c]);
			else if (d[t].atomic_stored[c])
				ck_assert_int_eq(n, d[t].width[c]);
			else
				ck_assert_int_eq(n, 0);
		}
	evs_store_free(store);
}
END_TEST

/* ---- E: the all-events feed keeps each stream in version order ------------ */

#define E_WRITERS 8
#define E_APPENDS 150
#define E_STREAMS 5

typedef struct {
	evs_store *store;
	const char *prefix;
	uint64_t rng;
	int stored; /* events */
	char error[256];
} e_writer;

static void *e_write(void *arg)
{
	e_writer *w = arg;
	evs_error err = EVS_ERROR_INIT;
	int i;

	for (i = 0; i < E_APPENDS && w->error[0] == '\0'; i++) {
		char id[128], id2[128];
		int s = (int)(tu_rand(&w->rng) % E_STREAMS), rc;
		evs_event *ev = event_n("F", i), *ev2 = event_n("F", -i);

		snprintf(id, sizeof(id), "%sf%d", w->prefix, s);
		snprintf(id2, sizeof(id2), "%sf%d", w->prefix,
		         (s + 1) % E_STREAMS);
		if (i % 5 == 4) {
			evs_append_req r[2];

			memset(r, 0, sizeof(r));
			r[0].aggregate_id = id;
			r[0].expected_version = EVS_ANY_VERSION;
			r[0].events = &ev;
			r[0].n_events = 1;
			r[1] = r[0];
			r[1].aggregate_id = id2;
			r[1].events = &ev2;
			rc = evs_store_append_many(w->store, r, 2,
			                           EVS_APPEND_ATOMIC, &err);
			w->stored += rc == 0 ? 2 : 0;
		} else {
			rc = evs_store_append(NULL, w->store, id,
			                      EVS_ANY_VERSION, &ev, 1, &err);
			w->stored += rc == 0 ? 1 : 0;
		}
		if (rc != 0)
			snprintf(w->error, sizeof(w->error), "append: %s",
			         err.message);
		evs_event_free(ev);
		evs_event_free(ev2);
	}
	evs_error_clear(&err);
	return NULL;
}

typedef struct {
	const char *prefix;
	evs_position *pos;
	int64_t next[E_STREAMS];
	int seen;
	char error[256];
} e_reader;

static int e_on_event(const evs_event *ev, void *payload)
{
	e_reader *r = payload;
	const char *id = evs_event_aggregate_id(ev);
	size_t n = strlen(r->prefix);
	int s;

	if (strncmp(id, r->prefix, n) != 0)
		return 0;
	s = atoi(id + n + 1);
	if (evs_event_version(ev) != r->next[s]) {
		snprintf(r->error, sizeof(r->error),
		         "%s: version %lld came when %lld was next", id,
		         (long long)evs_event_version(ev),
		         (long long)r->next[s]);
		return 1;
	}
	r->next[s]++;
	r->seen++;
	return 0;
}

/* Every event moves the reader's checkpoint; ours are checked. */
static int e_track(const evs_event *ev, void *payload)
{
	e_reader *r = payload;

	evs_event_checkpoint(r->pos, ev);
	return e_on_event(ev, payload);
}

START_TEST(feed_keeps_each_stream_in_order_with_group_commit)
{
	static e_writer w[E_WRITERS];
	pthread_t th[E_WRITERS];
	store_cfg cfg = {E_WRITERS, 2, 0, 0};
	evs_store *store = open_cfg(pg_test_dsn(), cfg);
	evs_store *reader = open_cfg(pg_test_dsn(), cfg);
	evs_error err = EVS_ERROR_INIT;
	evs_position pos = EVS_POSITION_START;
	e_reader r;
	char prefix[64];
	int t, total = 0, done = 0, joined[E_WRITERS] = {0};
	int64_t until;

	make_prefix(prefix, sizeof(prefix), "feed");
	memset(&r, 0, sizeof(r));
	r.prefix = prefix;
	/* Start after the feed's last event now (the table's, not just
	 * the fence's: what commits from now on has a higher key). */
	{
		PGconn *c = pg_test_connect();
		char sql[256];

		snprintf(sql, sizeof(sql),
		         "SELECT transaction_id::text || ' ' || global_position "
		         "FROM \"%s\".events ORDER BY transaction_id DESC, "
		         "global_position DESC LIMIT 1", pg_test_schema());
		if (sscanf(pg_test_exec(c, sql), "%" SCNu64 " %" SCNd64,
		           &pos.commit, &pos.global) != 2)
			pos = (evs_position)EVS_POSITION_START;
		PQfinish(c);
	}
	for (t = 0; t < E_WRITERS; t++) {
		memset(&w[t], 0, sizeof(w[t]));
		w[t].store = store;
		w[t].prefix = prefix;
		w[t].rng = 0x9E3779B97F4A7C15ULL * (uint64_t)(t + 1) ^
		           (uint64_t)tu_now_ms();
		ck_assert_int_eq(pthread_create(&th[t], NULL, e_write, &w[t]),
		                 0);
	}
	/* Tail the feed while they write, and after, until all is seen. */
	until = tu_now_ms() + 60000;
	for (;;) {
		int rc;

		r.pos = &pos;
		rc = evs_store_read_all(reader, &pos, 500, e_track, &r, &err);
		ck_assert_msg(rc == 0, "read_all: %d %s %s", rc,
		              err.message ? err.message : "", r.error);
		for (t = 0; t < E_WRITERS; t++)
			if (!joined[t] && pthread_tryjoin_np(th[t], NULL) == 0) {
				joined[t] = 1;
				ck_assert_msg(w[t].error[0] == '\0',
				              "writer %d: %s", t, w[t].error);
				total += w[t].stored;
				done++;
			}
		ck_assert_msg(tu_now_ms() < until,
		              "the feed gave %d of %d events", r.seen, total);
		if (done == E_WRITERS && r.seen >= total)
			break;
		tu_sleep_ms(5);
	}
	ck_assert_int_eq(r.seen, total);
	evs_error_clear(&err);
	evs_store_free(reader);
	evs_store_free(store);
}
END_TEST

Suite *group_suite(void)
{
	Suite *s = suite_create("group");
	TCase *tc = tcase_create("group-commit");

	tcase_add_test(tc, group_commit_gives_each_append_its_own_answer);
	tcase_add_test(tc,
	               killed_group_connection_fails_every_append_and_resends_once);
	tcase_add_test(tc, held_stream_does_not_hold_the_others);
	tcase_add_test(tc, racing_multi_stream_calls_never_deadlock_gap_or_split);
	tcase_add_test(tc, feed_keeps_each_stream_in_order_with_group_commit);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return s;
}
