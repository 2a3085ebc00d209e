/* The store contract for evs_store_append_many(): several appends in one
 * call, each with the rules of evs_store_append(), in array order; with
 * EVS_APPEND_ATOMIC all or nothing. On every backend, through the public
 * API only. */
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract/contract_int.h"

#define ID_LEN (EVS_ID_MAX + 64)

/* A copy of ct_id(base), which rotates through static buffers. */
static void make_id(char out[ID_LEN], const char *base)
{
	snprintf(out, ID_LEN, "%s", ct_id(base));
}

static evs_append_req req(const char *id, int64_t expected,
                          evs_event *const *events, size_t n)
{
	evs_append_req r;

	memset(&r, 0, sizeof(r));
	r.aggregate_id = id;
	r.expected_version = expected;
	r.events = events;
	r.n_events = n;
	r.rc = 12345; /* must be overwritten */
	r.version = 12345;
	return r;
}

static int64_t version_of(const char *id)
{
	evs_error err = EVS_ERROR_INIT;
	int64_t v = 99;
	int rc = evs_store_current_version(&v, ct_store, id, &err);

	ck_assert_msg(rc == 0 || rc == EVS_ENOTFOUND, "version of %s: %s", id,
	              err.message ? err.message : evs_strerror(rc));
	evs_error_clear(&err);
	return rc == EVS_ENOTFOUND ? EVS_NO_VERSION : v;
}

/* Asserts that stream id holds exactly the events evs[0..n), in order. */
static void assert_stream(const char *id, evs_event *const *evs, size_t n)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event_list *list = NULL;
	size_t i;
	int rc = evs_store_load(&list, ct_store, id, EVS_NO_VERSION, &err);

	ck_assert_msg(rc == 0, "load %s: %s", id, err.message);
	ck_assert_uint_eq(evs_event_list_count(list), n);
	for (i = 0; i < n; i++) {
		const evs_event *ev = evs_event_list_get(list, i);

		ck_assert_int_eq(evs_event_version(ev), (int64_t)i);
		ck_assert_msg(evs_uuid_equal(evs_event_id(ev),
		                             evs_event_id(evs[i])),
		              "%s: event %zu is not the one appended", id, i);
	}
	evs_event_list_free(list);
	evs_error_clear(&err);
}

START_TEST(append_many_reports_each_request)
{
	char a[ID_LEN], b[ID_LEN], c[ID_LEN], d[ID_LEN], e[ID_LEN];
	evs_event **ea = ct_make_events(0, 2), **eb = ct_make_events(10, 1);
	evs_event **ec = ct_make_events(20, 1), **ed = ct_make_events(30, 1);
	evs_event **ee = ct_make_events(40, 3), **fresh = ct_make_events(50, 1);
	evs_event *dup[2];
	evs_event *want_e[4];
	evs_append_req r[6];
	evs_error err = EVS_ERROR_INIT;
	int rc;

	make_id(a, "many-a");
	make_id(b, "many-b");
	make_id(c, "many-c");
	make_id(d, "many-d");
	make_id(e, "many-e");
	/* Before: a has ea (versions 0, 1); d has ed; e has ee. */
	ck_assert_int_eq(evs_store_append(NULL, ct_store, a, EVS_NO_VERSION, ea,
	                                  2, NULL), 0);
	ck_assert_int_eq(evs_store_append(NULL, ct_store, d, EVS_NO_VERSION, ed,
	                                  1, NULL), 0);
	ck_assert_int_eq(evs_store_append(NULL, ct_store, e, EVS_NO_VERSION, ee,
	                                  3, NULL), 0);

	r[0] = req(b, EVS_NO_VERSION, eb, 1); /* new stream: stored */
	r[1] = req(a, 0, ec, 1);              /* stale: conflict at 1 */
	r[2] = req(a, EVS_NO_VERSION, ea, 2); /* a replay of a's batch */
	dup[0] = fresh[0];
	dup[1] = ed[0];                       /* d's id, at another place */
	r[3] = req(d, 0, dup, 2);             /* duplicate at version 0 */
	r[4] = req(e, EVS_ANY_VERSION, fresh, 1); /* stored at 3 */
	r[5] = req(c, EVS_STREAM_EXISTS, ec, 1);  /* no stream: conflict */
	rc = evs_store_append_many(ct_store, r, 6, 0, &err);

	ck_assert_int_eq(rc, EVS_ECONFLICT); /* the first failure: r[1] */
	ck_assert_int_eq(err.code, EVS_ECONFLICT);
	ck_assert_str_eq(err.aggregate_id, a);
	ck_assert_int_eq(err.expected_version, 0);
	ck_assert_int_eq(err.actual_version, 1);

	ck_assert_int_eq(r[0].rc, 0);
	ck_assert_int_eq(r[0].replayed, 0);
	ck_assert_int_eq(r[0].version, 0);
	ck_assert_int_eq(r[1].rc, EVS_ECONFLICT);
	ck_assert_int_eq(r[1].version, 1);
	ck_assert_int_eq(r[2].rc, 0);
	ck_assert_int_eq(r[2].replayed, 1);
	ck_assert_int_eq(r[2].version, 1);
	ck_assert_int_eq(r[3].rc, EVS_EDUPLICATE);
	ck_assert_int_eq(r[3].version, 0);
	ck_assert_int_eq(r[4].rc, 0);
	ck_assert_int_eq(r[4].replayed, 0);
	ck_assert_int_eq(r[4].version, 3);
	ck_assert_int_eq(r[5].rc, EVS_ECONFLICT);
	ck_assert_int_eq(r[5].version, EVS_NO_VERSION);

	assert_stream(a, ea, 2);
	assert_stream(b, eb, 1);
	ck_assert_int_eq(version_of(c), EVS_NO_VERSION);
	assert_stream(d, ed, 1);
	want_e[0] = ee[0];
	want_e[1] = ee[1];
	want_e[2] = ee[2];
	want_e[3] = fresh[0];
	assert_stream(e, want_e, 4);

	/* The duplicate's message names the id's place; a call whose
	 * requests all succeed returns 0 and leaves err clear. */
	r[0] = req(d, 0, dup, 2);
	rc = evs_store_append_many(ct_store, r, 1, 0, &err);
	ck_assert_int_eq(rc, EVS_EDUPLICATE);
	ck_assert_str_eq(err.aggregate_id, d);
	ck_assert_ptr_nonnull(strstr(err.message, "version 0"));
	r[0] = req(c, EVS_NO_VERSION, ec, 1);
	ck_assert_int_eq(evs_store_append_many(ct_store, r, 1, 0, &err), 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_int_eq(r[0].version, 0);

	ct_free_events(ea, 2);
	ct_free_events(eb, 1);
	ct_free_events(ec, 1);
	ct_free_events(ed, 1);
	ct_free_events(ee, 3);
	ct_free_events(fresh, 1);
	evs_error_clear(&err);
}
END_TEST

START_TEST(atomic_append_many_stores_all_or_nothing)
{
	char a[ID_LEN], b[ID_LEN], c[ID_LEN];
	evs_event **ea = ct_make_events(0, 1), **eb = ct_make_events(10, 2);
	evs_event **ec = ct_make_events(20, 1), **more = ct_make_events(30, 1);
	evs_event *dupb[2];
	evs_append_req r[4];
	evs_error err = EVS_ERROR_INIT;
	int rc;

	make_id(a, "atomic-a");
	make_id(b, "atomic-b");
	make_id(c, "atomic-c");
	ck_assert_int_eq(evs_store_append(NULL, ct_store, a, EVS_NO_VERSION, ea,
	                                  1, NULL), 0);

	/* b and c are new, a is at 0: the stale request on a fails the
	 * call, and nothing else is stored (b and c stay missing). */
	r[0] = req(b, EVS_NO_VERSION, eb, 2);
	r[1] = req(c, EVS_ANY_VERSION, ec, 1);
	r[2] = req(a, 5, more, 1);
	rc = evs_store_append_many(ct_store, r, 3, EVS_APPEND_ATOMIC, &err);
	ck_assert_int_eq(rc, EVS_ECONFLICT);
	ck_assert_str_eq(err.aggregate_id, a);
	ck_assert_int_eq(err.actual_version, 0);
	ck_assert_int_eq(r[0].rc, EVS_ENOTSTORED);
	ck_assert_int_eq(r[0].version, EVS_NO_VERSION);
	ck_assert_int_eq(r[1].rc, EVS_ENOTSTORED);
	ck_assert_int_eq(r[2].rc, EVS_ECONFLICT);
	ck_assert_int_eq(r[2].version, 0);
	ck_assert_int_eq(version_of(a), 0);
	ck_assert_int_eq(version_of(b), EVS_NO_VERSION);
	ck_assert_int_eq(version_of(c), EVS_NO_VERSION);
	ck_assert_uint_eq(ct_count(b), 0);

	/* The same call at the right version stores all three, and a
	 * replay of it inside an atomic call stores nothing again. */
	r[2] = req(a, 0, more, 1);
	r[0] = req(b, EVS_NO_VERSION, eb, 2);
	r[1] = req(c, EVS_ANY_VERSION, ec, 1);
	ck_assert_int_eq(evs_store_append_many(ct_store, r, 3,
	                                       EVS_APPEND_ATOMIC, &err), 0);
	ck_assert_int_eq(r[0].version, 1);
	ck_assert_int_eq(r[1].version, 0);
	ck_assert_int_eq(r[2].version, 1);
	ck_assert_int_eq(version_of(a), 1);
	assert_stream(b, eb, 2);
	assert_stream(c, ec, 1);
	rc = evs_store_append_many(ct_store, r, 3, EVS_APPEND_ATOMIC, &err);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(r[0].replayed, 1);
	ck_assert_int_eq(r[1].replayed, 1);
	ck_assert_int_eq(r[2].replayed, 1);
	ck_assert_uint_eq(ct_count(a), 2);
	ck_assert_uint_eq(ct_count(b), 2);

	/* A duplicate fails an atomic call too, with its own code. */
	r[0] = req(c, 0, ea, 1);   /* would be fine alone */
	r[1] = req(b, 1, ec, 1);   /* c's id is not b's: fine */
	r[2] = req(a, 1, eb, 1);   /* fine */
	dupb[0] = more[0];
	dupb[1] = eb[1];
	r[3] = req(b, EVS_ANY_VERSION, dupb, 2); /* b's own id, at 1 */
	rc = evs_store_append_many(ct_store, r, 4, EVS_APPEND_ATOMIC, &err);
	ck_assert_int_eq(rc, EVS_EDUPLICATE);
	ck_assert_int_eq(r[0].rc, EVS_ENOTSTORED);
	ck_assert_int_eq(r[1].rc, EVS_ENOTSTORED);
	ck_assert_int_eq(r[2].rc, EVS_ENOTSTORED);
	ck_assert_int_eq(r[3].rc, EVS_EDUPLICATE);
	ck_assert_uint_eq(ct_count(a), 2);
	ck_assert_uint_eq(ct_count(b), 2);
	ck_assert_uint_eq(ct_count(c), 1);

	ct_free_events(ea, 1);
	ct_free_events(eb, 2);
	ct_free_events(ec, 1);
	ct_free_events(more, 1);
	evs_error_clear(&err);
}
END_TEST

START_TEST(append_many_sees_earlier_requests_on_the_same_stream)
{
	char a[ID_LEN];
	evs_event **e1 = ct_make_events(0, 2), **e2 = ct_make_events(10, 1);
	evs_event **e3 = ct_make_events(20, 1), **e4 = ct_make_events(30, 1);
	evs_event *all[4], *mixed[2];
	evs_append_req r[7];
	int rc;

	make_id(a, "same");
	r[0] = req(a, EVS_NO_VERSION, e1, 2);  /* 0, 1 */
	r[1] = req(a, 1, e2, 1);               /* 2: sees r[0] */
	r[2] = req(a, EVS_NO_VERSION, e1, 2);  /* a replay of r[0] */
	r[3] = req(a, EVS_ANY_VERSION, e2, 1); /* a replay of r[1] */
	r[4] = req(a, 1, e3, 1);               /* stale: conflict at 2 */
	mixed[0] = e4[0];
	mixed[1] = e2[0];
	r[5] = req(a, 2, mixed, 2);            /* r[1]'s id: duplicate */
	r[6] = req(a, EVS_STREAM_EXISTS, e3, 1); /* 3 */
	rc = evs_store_append_many(ct_store, r, 7, 0, NULL);
	ck_assert_int_eq(rc, EVS_ECONFLICT);
	ck_assert_int_eq(r[0].rc, 0);
	ck_assert_int_eq(r[0].version, 1);
	ck_assert_int_eq(r[1].rc, 0);
	ck_assert_int_eq(r[1].version, 2);
	ck_assert_int_eq(r[2].rc, 0);
	ck_assert_int_eq(r[2].replayed, 1);
	ck_assert_int_eq(r[2].version, 1);
	ck_assert_int_eq(r[3].rc, 0);
	ck_assert_int_eq(r[3].replayed, 1);
	ck_assert_int_eq(r[3].version, 2);
	ck_assert_int_eq(r[4].rc, EVS_ECONFLICT);
	ck_assert_int_eq(r[4].version, 2);
	ck_assert_int_eq(r[5].rc, EVS_EDUPLICATE);
	ck_assert_int_eq(r[5].version, 2);
	ck_assert_int_eq(r[6].rc, 0);
	ck_assert_int_eq(r[6].version, 3);
	all[0] = e1[0];
	all[1] = e1[1];
	all[2] = e2[0];
	all[3] = e3[0];
	assert_stream(a, all, 4);
	ct_free_events(e1, 2);
	ct_free_events(e2, 1);
	ct_free_events(e3, 1);
	ct_free_events(e4, 1);
}
END_TEST

START_TEST(append_many_checks_its_arguments)
{
	char a[ID_LEN], b[ID_LEN];
	evs_event **ea = ct_make_events(0, 1), **eb = ct_make_events(10, 1);
	evs_event *twice[2], *with_null[1] = {NULL};
	evs_append_req r[3];
	evs_error err = EVS_ERROR_INIT;
	int rc;

	make_id(a, "args-a");
	make_id(b, "args-b");
	ck_assert_int_eq(evs_store_append_many(NULL, r, 1, 0, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_append_many(ct_store, NULL, 1, 0, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_append_many(ct_store, NULL, 0, 0, &err), 0);
	r[0] = req(a, EVS_NO_VERSION, ea, 1);
	ck_assert_int_eq(evs_store_append_many(ct_store, r, 1, 0x80, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "flags"));
	ck_assert_int_eq(r[0].rc, EVS_EINVALID);

	/* Without EVS_APPEND_ATOMIC a malformed request fails alone. */
	twice[0] = eb[0];
	twice[1] = eb[0];
	r[0] = req(a, EVS_NO_VERSION, ea, 1);
	r[1] = req(b, EVS_NO_VERSION, twice, 2);
	r[2] = req("", EVS_NO_VERSION, eb, 1);
	rc = evs_store_append_many(ct_store, r, 3, 0, &err);
	ck_assert_int_eq(rc, EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "reqs[1]"));
	ck_assert_int_eq(r[0].rc, 0);
	ck_assert_int_eq(r[0].version, 0);
	ck_assert_int_eq(r[1].rc, EVS_EINVALID);
	ck_assert_int_eq(r[2].rc, EVS_EINVALID);
	assert_stream(a, ea, 1);
	ck_assert_uint_eq(ct_count(b), 0);

	/* With it, one malformed request refuses the call before anything
	 * is sent. */
	r[0] = req(b, EVS_NO_VERSION, eb, 1);
	r[1] = req(a, 0, with_null, 1);
	r[2] = req(a, -7, eb, 1);
	rc = evs_store_append_many(ct_store, r, 3, EVS_APPEND_ATOMIC, &err);
	ck_assert_int_eq(rc, EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "reqs[1]"));
	ck_assert_int_eq(r[0].rc, EVS_ENOTSTORED);
	ck_assert_int_eq(r[1].rc, EVS_EINVALID);
	ck_assert_int_eq(r[2].rc, EVS_EINVALID);
	ck_assert_uint_eq(ct_count(b), 0);

	/* No events is malformed too (an empty single append is a no-op;
	 * a request must carry something). */
	r[0] = req(b, EVS_NO_VERSION, eb, 0);
	ck_assert_int_eq(evs_store_append_many(ct_store, r, 1, 0, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "n_events"));

	/* Keeping times needs exact versions and a time on every event. */
	r[0] = req(b, EVS_ANY_VERSION, eb, 1);
	ck_assert_int_eq(evs_store_append_many(ct_store, r, 1,
	                                       EVS_APPEND_KEEP_TIME, &err),
	                 EVS_EINVALID);
	ck_assert_uint_eq(ct_count(b), 0);
	ct_free_events(ea, 1);
	ct_free_events(eb, 1);
	evs_error_clear(&err);
}
END_TEST

START_TEST(append_many_keeps_recorded_times)
{
	char a[ID_LEN], b[ID_LEN];
	evs_event **ea = ct_make_events(0, 2), **eb = ct_make_events(10, 1);
	evs_append_req r[2];
	evs_error err = EVS_ERROR_INIT;
	evs_event_list *list = NULL;
	const int64_t t0 = 1262304000000000LL; /* 2010-01-01 UTC */
	int rc;

	make_id(a, "time-a");
	make_id(b, "time-b");
	ck_assert_int_eq(evs_event_set_recorded_at(ea[0], t0, NULL), 0);
	ck_assert_int_eq(evs_event_set_recorded_at(ea[1], t0 + 1, NULL), 0);
	ck_assert_int_eq(evs_event_set_recorded_at(eb[0], t0 + 2, NULL), 0);
	r[0] = req(a, EVS_NO_VERSION, ea, 2);
	r[1] = req(b, EVS_NO_VERSION, eb, 1);
	rc = evs_store_append_many(ct_store, r, 2,
	                           EVS_APPEND_KEEP_TIME | EVS_APPEND_ATOMIC,
	                           &err);
	if (ct_backend->no_keep_time) {
		ck_assert_int_eq(rc, EVS_EDB);
		ck_assert_str_eq(err.sqlstate, "42501");
		ck_assert_uint_eq(ct_count(a), 0);
		ck_assert_uint_eq(ct_count(b), 0);
	} else {
		ck_assert_msg(rc == 0, "%s", err.message);
		ck_assert_int_eq(evs_store_load(&list, ct_store, a,
		                                EVS_NO_VERSION, NULL), 0);
		ck_assert_int_eq(evs_event_recorded_at(
		                         evs_event_list_get(list, 1)), t0 + 1);
		evs_event_list_free(list);
		ck_assert_int_eq(evs_store_load(&list, ct_store, b,
		                                EVS_NO_VERSION, NULL), 0);
		ck_assert_int_eq(evs_event_recorded_at(
		                         evs_event_list_get(list, 0)), t0 + 2);
		evs_event_list_free(list);
	}
	ct_free_events(ea, 2);
	ct_free_events(eb, 1);
	evs_error_clear(&err);
}
END_TEST

/* ---- racing atomic calls ---------------------------------------------------- */

#define RACE_STREAMS 3
#define RACE_CALLS 40

typedef struct {
	char ids[RACE_STREAMS][ID_LEN];
	int thread;
	int stored; /* calls this thread got 0 for */
	int failed;
} race_arg;

/* Each call appends one event to every stream (in an order of its own)
 * at the version it just read: all of the call or none of it lands. The
 * event's data says which thread and call wrote it. */
static void *race_many(void *p)
{
	race_arg *ra = p;
	int call;

	for (call = 0; call < RACE_CALLS; call++) {
		evs_event *ev[RACE_STREAMS];
		evs_append_req r[RACE_STREAMS];
		int k, rc;

		for (k = 0; k < RACE_STREAMS; k++) {
			int s = (k + call + ra->thread) % RACE_STREAMS;

			ev[k] = ct_event("raced", ra->thread * 1000 + call);
			r[k] = req(ra->ids[s], version_of(ra->ids[s]), &ev[k],
			           1);
		}
		rc = evs_store_append_many(ct_store, r, RACE_STREAMS,
		                           EVS_APPEND_ATOMIC, NULL);
		if (rc == 0)
			ra->stored++;
		else if (rc == EVS_ECONFLICT)
			ra->failed++;
		else
			ck_abort_msg("append_many: %s", evs_strerror(rc));
		for (k = 0; k < RACE_STREAMS; k++)
			evs_event_free(ev[k]);
	}
	return NULL;
}

START_TEST(racing_atomic_calls_land_whole_or_not_at_all)
{
	enum { THREADS = 4 };
	race_arg args[THREADS];
	pthread_t th[THREADS];
	int threads = THREADS, t, k, stored = 0;
	int seen[RACE_STREAMS][THREADS * 1000];

	if (ct_backend->max_threads && threads > ct_backend->max_threads)
		threads = ct_backend->max_threads;
	memset(seen, 0, sizeof(seen));
	for (t = 0; t < threads; t++) {
		memset(&args[t], 0, sizeof(args[t]));
		args[t].thread = t;
		for (k = 0; k < RACE_STREAMS; k++) {
			char base[32];

			snprintf(base, sizeof(base), "race-%d", k);
			make_id(args[t].ids[k], base);
		}
		ck_assert_int_eq(pthread_create(&th[t], NULL, race_many,
		                                &args[t]), 0);
	}
	for (t = 0; t < threads; t++) {
		pthread_join(th[t], NULL);
		stored += args[t].stored;
		ck_assert_int_eq(args[t].stored + args[t].failed, RACE_CALLS);
	}
	ck_assert_int_gt(stored, 0);
	/* Every stream holds one event per stored call, versions 0..n-1,
	 * and each stored call's event is in every stream. */
	for (k = 0; k < RACE_STREAMS; k++) {
		evs_event_list *list = NULL;
		size_t i;

		ck_assert_int_eq(evs_store_load(&list, ct_store, args[0].ids[k],
		                                EVS_NO_VERSION, NULL), 0);
		ck_assert_uint_eq(evs_event_list_count(list), (size_t)stored);
		for (i = 0; i < evs_event_list_count(list); i++) {
			const evs_event *ev = evs_event_list_get(list, i);
			json_object *n = NULL;

			ck_assert_int_eq(evs_event_version(ev), (int64_t)i);
			ck_assert(json_object_object_get_ex(evs_event_data(ev),
			                                    "n", &n));
			seen[k][json_object_get_int(n)]++;
		}
		evs_event_list_free(list);
	}
	for (t = 0; t < threads * 1000; t++) {
		ck_assert_int_le(seen[0][t], 1);
		ck_assert_int_eq(seen[1][t], seen[0][t]);
		ck_assert_int_eq(seen[2][t], seen[0][t]);
	}
}
END_TEST

void ct_add_many_tests(Suite *s)
{
	TCase *tc = tcase_create("append-many");

	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, append_many_reports_each_request);
	tcase_add_test(tc, atomic_append_many_stores_all_or_nothing);
	tcase_add_test(tc, append_many_sees_earlier_requests_on_the_same_stream);
	tcase_add_test(tc, append_many_checks_its_arguments);
	tcase_add_test(tc, append_many_keeps_recorded_times);
	tcase_add_test(tc, racing_atomic_calls_land_whole_or_not_at_all);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
}
