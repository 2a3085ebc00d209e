/* The store contract for snapshots: evs_store_save_snapshot(),
 * evs_store_load_snapshot(), evs_store_snapshots(), and the repository
 * that loads from them and writes them by policy. On every backend,
 * through the public API only. */
#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "contract/contract_int.h"

#define ID_LEN (EVS_ID_MAX + 64)

static void make_id(char out[ID_LEN], const char *base)
{
	snprintf(out, ID_LEN, "%s", ct_id(base));
}

/* What a snapshot load handed out. */
typedef struct {
	int snapshots;
	int64_t snap_version;
	char snap_json[256];
	int n;
	int64_t versions[64];
} loaded;

static int on_snap(int64_t version, const char *json, size_t len,
                   void *payload)
{
	loaded *l = payload;

	ck_assert_uint_eq(strlen(json), len);
	ck_assert_int_eq(l->n, 0); /* before any event */
	l->snapshots++;
	l->snap_version = version;
	snprintf(l->snap_json, sizeof(l->snap_json), "%s", json);
	return 0;
}

static int on_event(const evs_event *ev, void *payload)
{
	loaded *l = payload;

	ck_assert_int_lt(l->n, 64);
	l->versions[l->n++] = evs_event_version(ev);
	return 0;
}

static loaded load_from(const char *id, const char *kind, unsigned int format)
{
	evs_error err = EVS_ERROR_INIT;
	loaded l;
	int rc;

	memset(&l, 0, sizeof(l));
	rc = evs_store_load_snapshot(ct_store, id, kind, format, on_snap,
	                             on_event, &l, &err);
	ck_assert_msg(rc == 0, "load_snapshot %s: %s", id,
	              err.message ? err.message : evs_strerror(rc));
	evs_error_clear(&err);
	return l;
}

static int save(const char *id, const char *kind, unsigned int format,
                int64_t version, const char *json, int *stored)
{
	evs_error err = EVS_ERROR_INIT;
	int rc = evs_store_save_snapshot(stored, ct_store, id, kind, format,
	                                 version, json, &err);

	evs_error_clear(&err);
	return rc;
}

/* What evs_store_snapshots() lists. */
typedef struct {
	int n;
	char kind[4][32];
	unsigned int format[4];
	int64_t version[4];
	size_t bytes[4];
} listing;

static int on_info(const evs_snapshot_info *info, void *payload)
{
	listing *l = payload;

	ck_assert_int_lt(l->n, 4);
	ck_assert_int_gt(info->taken_at, 0);
	snprintf(l->kind[l->n], sizeof(l->kind[0]), "%s", info->kind);
	l->format[l->n] = info->format;
	l->version[l->n] = info->version;
	l->bytes[l->n] = info->bytes;
	l->n++;
	return 0;
}

static listing list(const char *id)
{
	evs_error err = EVS_ERROR_INIT;
	listing l;

	memset(&l, 0, sizeof(l));
	ck_assert_int_eq(evs_store_snapshots(ct_store, id, on_info, &l, &err),
	                 0);
	evs_error_clear(&err);
	return l;
}

START_TEST(the_newest_snapshot_is_kept_and_loaded_from)
{
	char id[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	loaded l;
	listing ls;
	int stored = 7, i;

	make_id(id, "snap-keep");
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 10, &err), 0);
	/* No snapshot yet: every event. */
	l = load_from(id, "acct", 1);
	ck_assert_int_eq(l.snapshots, 0);
	ck_assert_int_eq(l.n, 10);
	ck_assert_int_eq(save(id, "acct", 1, 5, "{\"sum\": 15}", &stored), 0);
	ck_assert_int_eq(stored, 1);
	l = load_from(id, "acct", 1);
	ck_assert_int_eq(l.snapshots, 1);
	ck_assert_int_eq(l.snap_version, 5);
	ck_assert_ptr_nonnull(strstr(l.snap_json, "15"));
	ck_assert_int_eq(l.n, 4);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(l.versions[i], 6 + i);
	/* An older one never replaces it; a version the stream lacks is
	 * refused. */
	ck_assert_int_eq(save(id, "acct", 1, 3, "{\"sum\": 6}", &stored), 0);
	ck_assert_int_eq(stored, 0);
	ck_assert_int_eq(save(id, "acct", 1, 5, "{\"sum\": 0}", &stored), 0);
	ck_assert_int_eq(stored, 0);
	ck_assert_int_eq(save(id, "acct", 1, 10, "{}", &stored), EVS_ENOTFOUND);
	ck_assert_int_eq(save(ct_id("snap-none"), "acct", 1, 0, "{}", &stored),
	                 EVS_ENOTFOUND);
	l = load_from(id, "acct", 1);
	ck_assert_int_eq(l.snap_version, 5);
	ck_assert_ptr_nonnull(strstr(l.snap_json, "15"));
	/* Other formats and kinds are kept apart. */
	l = load_from(id, "acct", 2);
	ck_assert_int_eq(l.snapshots, 0);
	ck_assert_int_eq(l.n, 10);
	l = load_from(id, "", 1);
	ck_assert_int_eq(l.snapshots, 0);
	ck_assert_int_eq(save(id, "acct", 2, 2, "[1, 2]", &stored), 0);
	ck_assert_int_eq(stored, 1);
	/* At the last version: the snapshot and nothing after it. */
	ck_assert_int_eq(save(id, "acct", 1, 9, "{\"sum\": 45}", &stored), 0);
	ck_assert_int_eq(stored, 1);
	l = load_from(id, "acct", 1);
	ck_assert_int_eq(l.snap_version, 9);
	ck_assert_int_eq(l.n, 0);
	ls = list(id);
	ck_assert_int_eq(ls.n, 2);
	ck_assert_str_eq(ls.kind[0], "acct");
	ck_assert_uint_eq(ls.format[0], 1);
	ck_assert_int_eq(ls.version[0], 9);
	ck_assert_uint_eq(ls.bytes[0], strlen("{\"sum\": 45}"));
	ck_assert_uint_eq(ls.format[1], 2);
	ck_assert_int_eq(ls.version[1], 2);
	ck_assert_int_eq(list(ct_id("snap-none")).n, 0);
	evs_error_clear(&err);
}
END_TEST

START_TEST(snapshots_follow_the_stream_lifecycle)
{
	char id[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	loaded l;
	int stored;

	make_id(id, "snap-life");
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 4, &err), 0);
	ck_assert_int_eq(save(id, "acct", 1, 3, "{}", &stored), 0);
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, id, 3, 0, &err), 0);
	ck_assert_int_eq(evs_store_load_snapshot(ct_store, id, "acct", 1,
	                                         on_snap, on_event, &l, &err),
	                 EVS_EDELETED);
	ck_assert_int_eq(save(id, "acct", 1, 3, "{}", &stored), EVS_EDELETED);
	ck_assert_int_eq(evs_store_undelete(NULL, ct_store, id, 4, &err), 0);
	/* Back: the snapshot too, and the markers after it. */
	l = load_from(id, "acct", 1);
	ck_assert_int_eq(l.snap_version, 3);
	ck_assert_int_eq(l.n, 2);
	/* A hard delete takes the snapshots; a new stream of the same id
	 * does not find them. */
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, id, 5,
	                                  EVS_DELETE_HARD | EVS_DELETE_REUSE,
	                                  &err),
	                 0);
	ck_assert_int_eq(list(id).n, 0);
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 1, &err), 0);
	l = load_from(id, "acct", 1);
	ck_assert_int_eq(l.snapshots, 0);
	ck_assert_int_eq(l.n, 1);
	evs_error_clear(&err);
}
END_TEST

START_TEST(snapshot_calls_check_their_arguments)
{
	char id[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	loaded l;
	int stored = 7;

	make_id(id, "snap-args");
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 2, &err), 0);
	ck_assert_int_eq(evs_store_save_snapshot(&stored, NULL, id, "k", 1, 0,
	                                         "{}", &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(stored, 0);
	ck_assert_int_eq(save(NULL, "k", 1, 0, "{}", NULL), EVS_EINVALID);
	ck_assert_int_eq(save(id, NULL, 1, 0, "{}", NULL), EVS_EINVALID);
	ck_assert_int_eq(save(id, "k\x01", 1, 0, "{}", NULL), EVS_EINVALID);
	ck_assert_int_eq(save(id, "k", 0, 0, "{}", NULL), EVS_EINVALID);
	ck_assert_int_eq(save(id, "k", 1, -1, "{}", NULL), EVS_EINVALID);
	ck_assert_int_eq(save(id, "k", 1, 0, NULL, NULL), EVS_EINVALID);
	ck_assert_int_eq(save(id, "k", 1, 0, "{oops", NULL), EVS_EINVALID);
	ck_assert_int_eq(save(id, "k", 1, 0, "\"\\u0000\"", NULL), EVS_EINVALID);
	ck_assert_int_eq(evs_store_load_snapshot(ct_store, id, "k", 1, NULL,
	                                         on_event, &l, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_load_snapshot(ct_store, id, "k", 0,
	                                         on_snap, on_event, &l, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_snapshots(ct_store, id, NULL, NULL, &err),
	                 EVS_EINVALID);
	/* None of it stored anything. */
	ck_assert_int_eq(list(id).n, 0);
	evs_error_clear(&err);
}
END_TEST

/* ---- the repository -------------------------------------------------- */

/* An aggregate that sums its events' "n": its state, and what the type
 * saw happen. */
typedef struct {
	long sum;
	int applied;
} summer;

typedef struct {
	int restores, snapshots, applies;
	int fail_snapshot, fail_restore;
} summer_log;

static int summer_create(void **out, const char *id, void *payload,
                         evs_error *err)
{
	(void)id;
	(void)payload;
	*out = calloc(1, sizeof(summer));
	return *out ? 0 : evs_error_set(err, EVS_ENOMEM, NULL, "no memory");
}

static int summer_apply(void *state, const evs_event *ev, void *payload,
                        evs_error *err)
{
	summer *s = state;
	summer_log *log = payload;
	json_object *n;

	if (!json_object_object_get_ex(evs_event_data(ev), "n", &n))
		return evs_error_set(err, EVS_EINVALID, NULL, "no n");
	s->sum += json_object_get_int64(n);
	s->applied++;
	log->applies++;
	return 0;
}

static void summer_free(void *state, void *payload)
{
	(void)payload;
	free(state);
}

static int summer_snapshot(json_object **out, const void *state,
                           void *payload, evs_error *err)
{
	summer_log *log = payload;

	log->snapshots++;
	if (log->fail_snapshot)
		return evs_error_set(err, EVS_ERROR, NULL, "no snapshot today");
	*out = json_object_new_object();
	json_object_object_add(*out, "sum", json_object_new_int64(
		((const summer *)state)->sum));
	return 0;
}

static int summer_restore(void **out, const char *id, json_object *snap,
                          void *payload, evs_error *err)
{
	summer_log *log = payload;
	json_object *sum;
	summer *s;

	(void)id;
	log->restores++;
	if (log->fail_restore ||
	    !json_object_object_get_ex(snap, "sum", &sum))
		return evs_error_set(err, EVS_EINVALID, NULL, "bad snapshot");
	s = calloc(1, sizeof(*s));
	if (s == NULL)
		return evs_error_set(err, EVS_ENOMEM, NULL, "no memory");
	s->sum = (long)json_object_get_int64(sum);
	*out = s;
	return 0;
}

static evs_aggregate_type summer_type(summer_log *log, unsigned int format)
{
	evs_aggregate_type t;

	memset(&t, 0, sizeof(t));
	t.version = EVS_AGGREGATE_TYPE_VERSION;
	t.name = "summer";
	t.create = summer_create;
	t.apply = summer_apply;
	t.free = summer_free;
	t.payload = log;
	t.snapshot_format = format;
	t.snapshot = summer_snapshot;
	t.restore = summer_restore;
	return t;
}

/* Adds one event {"n": n} to aggregate id through the repository (of
 * type t). */
static int add_n(evs_repo *repo, const evs_aggregate_type *t, const char *id,
                 int n)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = NULL;
	int rc = evs_repo_load(&agg, repo, id, &err);

	if (rc == EVS_ENOTFOUND)
		rc = evs_aggregate_new(&agg, t, id, &err);
	ck_assert_int_eq(rc, 0);
	{
		json_object *d = json_object_new_object();

		json_object_object_add(d, "n", json_object_new_int(n));
		ck_assert_int_eq(evs_aggregate_raise_new(agg, "added", d, NULL,
		                                         &err),
		                 0);
		json_object_put(d);
	}
	rc = evs_repo_save(repo, agg, &err);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
	return rc;
}

/* The sum a loaded aggregate holds. */
static long loaded_sum(evs_repo *repo, const char *id)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = NULL;
	long sum;
	int rc = evs_repo_load(&agg, repo, id, &err);

	ck_assert_msg(rc == 0, "load %s: %s", id,
	              err.message ? err.message : evs_strerror(rc));
	sum = ((const summer *)evs_aggregate_state(agg))->sum;
	evs_aggregate_free(agg);
	evs_error_clear(&err);
	return sum;
}

static evs_repo *repo_of(const evs_aggregate_type *t)
{
	evs_error err = EVS_ERROR_INIT;
	evs_repo *repo = NULL;

	ck_assert_int_eq(evs_repo_new(&repo, ct_store, t, &err), 0);
	evs_error_clear(&err);
	return repo;
}

START_TEST(repository_loads_from_snapshots_it_writes_by_policy)
{
	char id[ID_LEN];
	summer_log log;
	evs_aggregate_type t;
	evs_repo *repo;
	evs_error err = EVS_ERROR_INIT;
	listing ls;
	int i;

	memset(&log, 0, sizeof(log));
	t = summer_type(&log, 1);
	make_id(id, "snap-repo");
	repo = repo_of(&t);
	ck_assert_int_eq(evs_repo_set_snapshots(repo, -1, NULL, NULL, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_repo_set_snapshots(repo, 4, NULL, NULL, &err), 0);
	/* Versions 0..9: a snapshot once 4 versions have gone by since the
	 * last one (at 3 and at 7). */
	for (i = 1; i <= 10; i++)
		ck_assert_int_eq(add_n(repo, &t, id, i), 0);
	ck_assert_int_eq(log.snapshots, 2);
	ls = list(id);
	ck_assert_int_eq(ls.n, 1);
	ck_assert_str_eq(ls.kind[0], "summer");
	ck_assert_int_eq(ls.version[0], 7);
	/* A load restores the snapshot and applies the two events after
	 * it. */
	log.restores = log.applies = 0;
	ck_assert_int_eq(loaded_sum(repo, id), 55);
	ck_assert_int_eq(log.restores, 1);
	ck_assert_int_eq(log.applies, 2);
	ck_assert_uint_eq(evs_repo_snapshot_failures(repo), 0);
	evs_repo_free(repo);
	evs_error_clear(&err);
}
END_TEST

static int every_save(const evs_aggregate *agg, int64_t last, void *payload)
{
	int *calls = payload;

	(void)agg;
	(void)last;
	(*calls)++;
	return 1;
}

START_TEST(a_failed_snapshot_never_fails_the_save)
{
	char id[ID_LEN];
	summer_log log;
	evs_aggregate_type t;
	evs_repo *repo;
	evs_error err = EVS_ERROR_INIT;
	int calls = 0;

	memset(&log, 0, sizeof(log));
	t = summer_type(&log, 1);
	make_id(id, "snap-fail");
	repo = repo_of(&t);
	ck_assert_int_eq(evs_repo_set_snapshots(repo, 0, every_save, &calls,
	                                        &err),
	                 0);
	log.fail_snapshot = 1;
	ck_assert_int_eq(add_n(repo, &t, id, 5), 0);
	ck_assert_int_eq(add_n(repo, &t, id, 6), 0);
	ck_assert_int_eq(calls, 2);
	ck_assert_uint_eq(evs_repo_snapshot_failures(repo), 2);
	ck_assert_int_eq(list(id).n, 0);
	ck_assert_uint_eq(ct_count(id), 2);
	/* A snapshot restore() refuses: ignored, the stream replayed. */
	log.fail_snapshot = 0;
	ck_assert_int_eq(add_n(repo, &t, id, 7), 0);
	ck_assert_int_eq(list(id).n, 1);
	log.fail_restore = 1;
	log.restores = log.applies = 0;
	ck_assert_int_eq(loaded_sum(repo, id), 18);
	ck_assert_int_eq(log.restores, 1);
	ck_assert_int_eq(log.applies, 3);
	evs_repo_free(repo);
	evs_error_clear(&err);
}
END_TEST

START_TEST(a_snapshot_of_another_format_is_ignored)
{
	char id[ID_LEN];
	summer_log log;
	evs_aggregate_type t1, t2;
	evs_repo *r1, *r2;
	evs_error err = EVS_ERROR_INIT;
	listing ls;
	int i;

	memset(&log, 0, sizeof(log));
	t1 = summer_type(&log, 1);
	t2 = summer_type(&log, 2);
	make_id(id, "snap-format");
	r1 = repo_of(&t1);
	r2 = repo_of(&t2);
	ck_assert_int_eq(evs_repo_set_snapshots(r1, 2, NULL, NULL, &err), 0);
	ck_assert_int_eq(evs_repo_set_snapshots(r2, 2, NULL, NULL, &err), 0);
	for (i = 1; i <= 4; i++)
		ck_assert_int_eq(add_n(r1, &t1, id, i), 0);
	/* Format 2 finds no snapshot of its own: a full replay, then its
	 * own snapshot after its next save. */
	log.restores = log.applies = 0;
	ck_assert_int_eq(loaded_sum(r2, id), 10);
	ck_assert_int_eq(log.restores, 0);
	ck_assert_int_eq(log.applies, 4);
	ck_assert_int_eq(add_n(r2, &t2, id, 5), 0);
	ls = list(id);
	ck_assert_int_eq(ls.n, 2);
	ck_assert_uint_eq(ls.format[0], 1);
	ck_assert_int_eq(ls.version[0], 3);
	ck_assert_uint_eq(ls.format[1], 2);
	ck_assert_int_eq(ls.version[1], 4);
	log.restores = log.applies = 0;
	ck_assert_int_eq(loaded_sum(r2, id), 15);
	ck_assert_int_eq(log.restores, 1);
	ck_assert_int_eq(log.applies, 0);
	/* A type with half of the snapshot slots is refused. */
	evs_repo_free(r1);
	r1 = NULL;
	t1.restore = NULL;
	ck_assert_int_eq(evs_repo_new(&r1, ct_store, &t1, &err), EVS_EINVALID);
	ck_assert_ptr_null(r1);
	evs_repo_free(r2);
	evs_error_clear(&err);
}
END_TEST

void ct_add_snapshot_tests(Suite *s)
{
	TCase *tc = tcase_create("snapshots");

	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, the_newest_snapshot_is_kept_and_loaded_from);
	tcase_add_test(tc, snapshots_follow_the_stream_lifecycle);
	tcase_add_test(tc, snapshot_calls_check_their_arguments);
	tcase_add_test(tc, repository_loads_from_snapshots_it_writes_by_policy);
	tcase_add_test(tc, a_failed_snapshot_never_fails_the_save);
	tcase_add_test(tc, a_snapshot_of_another_format_is_ignored);
	suite_add_tcase(s, tc);
}
