/* The store contract for deleting streams: evs_store_delete() and
 * evs_store_undelete(), the markers they leave, and the '$' names they
 * reserve. On every backend, through the public API only. */
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "contract/contract_int.h"

#define ID_LEN (EVS_ID_MAX + 64)

static void make_id(char out[ID_LEN], const char *base)
{
	snprintf(out, ID_LEN, "%s", ct_id(base));
}

/* Deletes (or undeletes) id and asserts success at version `want`. */
static void delete_ok(const char *id, int64_t expected, unsigned int flags,
                      int64_t want)
{
	evs_error err = EVS_ERROR_INIT;
	int64_t v = 4711;
	int rc = evs_store_delete(&v, ct_store, id, expected, flags, &err);

	ck_assert_msg(rc == 0, "delete %s: %s", id,
	              err.message ? err.message : evs_strerror(rc));
	ck_assert_int_eq(v, want);
	evs_error_clear(&err);
}

static void undelete_ok(const char *id, int64_t expected, int64_t want)
{
	evs_error err = EVS_ERROR_INIT;
	int64_t v = 4711;
	int rc = evs_store_undelete(&v, ct_store, id, expected, &err);

	ck_assert_msg(rc == 0, "undelete %s: %s", id,
	              err.message ? err.message : evs_strerror(rc));
	ck_assert_int_eq(v, want);
	evs_error_clear(&err);
}

/* Asserts that err says EVS_EDELETED for id at version `at`. */
static void assert_deleted(int rc, evs_error *err, const char *id, int64_t at,
                           const char *what)
{
	ck_assert_msg(rc == EVS_EDELETED, "%s on deleted %s: %d (%s)", what,
	              id, rc, err->message ? err->message : "");
	ck_assert_int_eq(err->code, EVS_EDELETED);
	ck_assert_ptr_nonnull(err->aggregate_id);
	ck_assert_str_eq(err->aggregate_id, id);
	ck_assert_int_eq(err->actual_version, at);
	ck_assert_ptr_nonnull(strstr(err->message, "deleted"));
	evs_error_clear(err);
}

static int count_cb(const evs_event *ev, void *payload)
{
	(void)ev;
	(*(int *)payload)++;
	return 0;
}

/* Every read of id fails with EVS_EDELETED at version `at`, before any
 * event is handed out. */
static void assert_reads_refused(const char *id, int64_t at)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event_list *list = (evs_event_list *)1;
	int64_t v = 4711;
	int seen = 0;

	assert_deleted(evs_store_load(&list, ct_store, id, EVS_NO_VERSION,
	                              &err),
	               &err, id, at, "load");
	ck_assert_ptr_null(list);
	assert_deleted(evs_store_load(&list, ct_store, id, 0, &err), &err, id,
	               at, "load from 0");
	assert_deleted(evs_store_foreach(ct_store, id, EVS_NO_VERSION,
	                                 count_cb, &seen, &err),
	               &err, id, at, "foreach");
	assert_deleted(evs_store_foreach_backward(ct_store, id,
	                                          EVS_END_VERSION, 0,
	                                          count_cb, &seen, &err),
	               &err, id, at, "foreach_backward");
	assert_deleted(evs_store_load_last(&list, ct_store, id, 2, &err),
	               &err, id, at, "load_last");
	ck_assert_int_eq(seen, 0);
	assert_deleted(evs_store_current_version(&v, ct_store, id, &err), &err,
	               id, at, "current_version");
	ck_assert_int_eq(v, at);
}

/* Every way to append to id fails with EVS_EDELETED at version `at`, and
 * stores nothing. */
static void assert_appends_refused(const char *id, int64_t at)
{
	static const int64_t expected[] = {
		EVS_NO_VERSION, 0, EVS_ANY_VERSION, EVS_STREAM_EXISTS};
	evs_error err = EVS_ERROR_INIT;
	evs_event **evs = ct_make_events(900, 2);
	evs_append_req r[2];
	size_t i;

	for (i = 0; i < sizeof(expected) / sizeof(expected[0]); i++)
		assert_deleted(evs_store_append(NULL, ct_store, id,
		                                expected[i], evs, 2, &err),
		               &err, id, at, "append");
	assert_deleted(evs_store_append(NULL, ct_store, id, at, evs, 1, &err),
	               &err, id, at, "append at its version");
	/* Several streams in one call: the deleted one fails alone. */
	memset(r, 0, sizeof(r));
	r[0].aggregate_id = id;
	r[0].expected_version = at;
	r[0].events = evs;
	r[0].n_events = 1;
	r[1].aggregate_id = ct_id("lc-neighbour");
	r[1].expected_version = EVS_ANY_VERSION;
	r[1].events = evs + 1;
	r[1].n_events = 1;
	assert_deleted(evs_store_append_many(ct_store, r, 2, 0, &err), &err,
	               id, at, "append_many");
	ck_assert_int_eq(r[0].rc, EVS_EDELETED);
	ck_assert_int_eq(r[0].version, at);
	ck_assert_int_eq(r[1].rc, 0);
	ck_assert_int_eq(evs_store_append_many(ct_store, r, 1,
	                                       EVS_APPEND_ATOMIC, &err),
	                 EVS_EDELETED);
	evs_error_clear(&err);
	ct_free_events(evs, 2);
}

/* The stream's events, as (type, version) pairs, after undeletion. */
static void assert_types(const char *id, const char *const *types, size_t n)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event_list *list = NULL;
	size_t i;

	ck_assert_int_eq(evs_store_load(&list, ct_store, id, EVS_NO_VERSION,
	                                &err),
	                 0);
	ck_assert_uint_eq(evs_event_list_count(list), n);
	for (i = 0; i < n; i++) {
		const evs_event *ev = evs_event_list_get(list, i);

		ck_assert_int_eq(evs_event_version(ev), (int64_t)i);
		ck_assert_str_eq(evs_event_type(ev), types[i]);
	}
	evs_event_list_free(list);
	evs_error_clear(&err);
}

START_TEST(soft_delete_refuses_appends_and_reads_until_undeleted)
{
	static const char *const types[] = {
		"tested", "tested", "tested", EVS_TYPE_DELETED,
		EVS_TYPE_UNDELETED, "tested"};
	char id[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	evs_event **evs = ct_make_events(0, 3);
	evs_append_result res;

	make_id(id, "lc-soft");
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, EVS_NO_VERSION,
	                                  evs, 3, &err),
	                 0);
	delete_ok(id, 2, 0, 3);
	assert_appends_refused(id, 3);
	assert_reads_refused(id, 3);
	/* The first append, sent again, is still a replay: it was stored. */
	ck_assert_int_eq(evs_store_append_ext(&res, ct_store, id,
	                                      EVS_NO_VERSION, evs, 3, 0,
	                                      &err),
	                 0);
	ck_assert_int_eq(res.replayed, 1);
	ck_assert_int_eq(res.version, 2);
	/* Deleting it again says so, and changes nothing. */
	assert_deleted(evs_store_delete(NULL, ct_store, id, 3, 0, &err), &err,
	               id, 3, "delete");
	assert_deleted(evs_store_delete(NULL, ct_store, id, EVS_ANY_VERSION, 0,
	                                &err),
	               &err, id, 3, "delete");
	/* Back, with both markers in it; the numbering goes on. */
	undelete_ok(id, 3, 4);
	ck_assert_int_eq(ct_append_one(id, 4, &err), 0);
	assert_types(id, types, 6);
	ck_assert_int_eq(evs_store_undelete(NULL, ct_store, id, 5, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "not deleted"));
	ck_assert_uint_eq(ct_count(id), 6);
	evs_error_clear(&err);
	ct_free_events(evs, 3);
}
END_TEST

START_TEST(lifecycle_calls_check_the_expected_version)
{
	char id[ID_LEN], none[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	int64_t v = 4711;

	make_id(id, "lc-expected");
	make_id(none, "lc-none");
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 2, &err), 0);
	/* A stale read: a conflict with the true version, nothing changed. */
	ck_assert_int_eq(evs_store_delete(&v, ct_store, id, 0, 0, &err),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(err.actual_version, 1);
	ck_assert_int_eq(err.expected_version, 0);
	ck_assert_str_eq(err.aggregate_id, id);
	ck_assert_int_eq(v, EVS_NO_VERSION);
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, id, 2,
	                                  EVS_DELETE_HARD, &err),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(ct_append_one(id, 1, &err), 0);
	ck_assert_uint_eq(ct_count(id), 3);
	/* No stream: not found at any version, a conflict at an exact one. */
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, none,
	                                  EVS_ANY_VERSION, 0, &err),
	                 EVS_ENOTFOUND);
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, none, 0, 0, &err),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(err.actual_version, EVS_NO_VERSION);
	ck_assert_int_eq(evs_store_undelete(NULL, ct_store, none,
	                                    EVS_ANY_VERSION, &err),
	                 EVS_ENOTFOUND);
	ck_assert_int_eq(evs_store_current_version(&v, ct_store, none, &err),
	                 EVS_ENOTFOUND);
	/* Undelete at a stale version: a conflict, still deleted. */
	delete_ok(id, EVS_STREAM_EXISTS, 0, 3);
	ck_assert_int_eq(evs_store_undelete(NULL, ct_store, id, 2, &err),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(err.actual_version, 3);
	assert_reads_refused(id, 3);
	undelete_ok(id, EVS_ANY_VERSION, 4);
	evs_error_clear(&err);
}
END_TEST

/* Collects the events after a checkpoint whose stream is one of ours or
 * EVS_LIFECYCLE_STREAM (whose data names one of ours). */
typedef struct {
	const char *ours[4];
	char type[64][64];
	char stream[64][ID_LEN];
	int64_t version[64];
	char data[64][512];
	int n;
} feed_walk;

static int is_ours(const feed_walk *w, const char *id)
{
	int i;

	for (i = 0; i < 4 && w->ours[i] != NULL; i++)
		if (strcmp(w->ours[i], id) == 0)
			return 1;
	return 0;
}

static int feed_cb(const evs_event *ev, void *payload)
{
	feed_walk *w = payload;
	const char *sid = evs_event_aggregate_id(ev);

	if (strcmp(sid, EVS_LIFECYCLE_STREAM) == 0) {
		json_object *d = evs_event_data(ev), *s;

		if (!json_object_object_get_ex(d, "stream", &s) ||
		    !is_ours(w, json_object_get_string(s)))
			return 0;
	} else if (!is_ours(w, sid)) {
		return 0;
	}
	ck_assert_int_lt(w->n, 64);
	snprintf(w->type[w->n], sizeof(w->type[0]), "%s", evs_event_type(ev));
	snprintf(w->stream[w->n], sizeof(w->stream[0]), "%s", sid);
	snprintf(w->data[w->n], sizeof(w->data[0]), "%s",
	         evs_event_data_json(ev));
	w->version[w->n] = evs_event_version(ev);
	w->n++;
	return 0;
}

/* The checkpoint of a fresh event: readers of all events from there see
 * what the test does next. */
static evs_position mark_feed(void)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event_list *list = NULL;
	evs_position at;
	char id[ID_LEN];

	make_id(id, "lc-feed-mark");
	ck_assert_int_eq(ct_append_one(id, EVS_ANY_VERSION, &err), 0);
	ck_assert_int_eq(evs_store_load_last(&list, ct_store, id, 1, &err), 0);
	evs_event_checkpoint(&at, evs_event_list_get(list, 0));
	evs_event_list_free(list);
	evs_error_clear(&err);
	return at;
}

/* Reads all events after `at` until `want` of ours came (a PostgreSQL
 * feed shows a transaction once every older one ended). */
static void walk_feed(feed_walk *w, const evs_position *at, int want)
{
	evs_error err = EVS_ERROR_INIT;
	int tries;

	for (tries = 0; tries < 200; tries++) {
		w->n = 0;
		ck_assert_int_eq(evs_store_read_all(ct_store, at, 0, feed_cb, w,
		                                    &err),
		                 0);
		if (w->n >= want)
			break;
		{
			struct timespec ts = {0, 20 * 1000 * 1000};

			nanosleep(&ts, NULL);
		}
	}
	ck_assert_int_eq(w->n, want);
	evs_error_clear(&err);
}

/* Asserts data (JSON text) has these members. */
static void assert_lifecycle_data(const char *json, const char *stream,
                                  int64_t version, int hard, int reuse)
{
	json_object *d = json_tokener_parse(json), *m;

	ck_assert_ptr_nonnull(d);
	ck_assert(json_object_object_get_ex(d, "stream", &m));
	ck_assert_str_eq(json_object_get_string(m), stream);
	ck_assert(json_object_object_get_ex(d, "version", &m));
	ck_assert_int_eq(json_object_get_int64(m), version);
	ck_assert(json_object_object_get_ex(d, "hard", &m));
	ck_assert_int_eq(json_object_get_boolean(m), hard);
	ck_assert(json_object_object_get_ex(d, "reuse", &m));
	ck_assert_int_eq(json_object_get_boolean(m), reuse);
	json_object_put(d);
}

START_TEST(hard_delete_removes_the_events_for_good)
{
	char id[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	evs_position at;
	feed_walk *w = calloc(1, sizeof(*w));

	make_id(id, "lc-hard");
	at = mark_feed();
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 3, &err), 0);
	/* Soft first; hard later, at the soft marker's version. */
	delete_ok(id, 2, 0, 3);
	delete_ok(id, 3, EVS_DELETE_HARD, 4);
	assert_reads_refused(id, 4);
	assert_appends_refused(id, 4);
	/* A replay of what it held is no replay now: nothing is held. */
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 3, &err),
	                 EVS_EDELETED);
	ck_assert_int_eq(evs_store_undelete(NULL, ct_store, id,
	                                    EVS_ANY_VERSION, &err),
	                 EVS_EDELETED);
	ck_assert_ptr_nonnull(strstr(err.message, "cannot be undeleted"));
	assert_deleted(evs_store_delete(NULL, ct_store, id, EVS_ANY_VERSION,
	                                EVS_DELETE_HARD, &err),
	               &err, id, 4, "hard delete");
	/* Readers of all events: of the stream only the hard marker is
	 * left, and the lifecycle stream tells both deletions, in order. */
	w->ours[0] = id;
	walk_feed(w, &at, 3);
	ck_assert_str_eq(w->stream[0], EVS_LIFECYCLE_STREAM);
	ck_assert_str_eq(w->type[0], EVS_TYPE_DELETED);
	assert_lifecycle_data(w->data[0], id, 3, 0, 0);
	ck_assert_str_eq(w->stream[1], id);
	ck_assert_str_eq(w->type[1], EVS_TYPE_DELETED);
	ck_assert_int_eq(w->version[1], 4);
	ck_assert_ptr_nonnull(strstr(w->data[1], "true"));
	ck_assert_str_eq(w->stream[2], EVS_LIFECYCLE_STREAM);
	assert_lifecycle_data(w->data[2], id, 4, 1, 0);
	free(w);
	evs_error_clear(&err);
}
END_TEST

START_TEST(hard_delete_with_reuse_starts_the_id_again)
{
	char id[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	evs_event_list *list = NULL;
	evs_position at;
	feed_walk *w = calloc(1, sizeof(*w));
	int64_t v = 4711;

	make_id(id, "lc-reuse");
	at = mark_feed();
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 3, &err), 0);
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, id, 2,
	                                  EVS_DELETE_REUSE, &err),
	                 EVS_EINVALID);
	delete_ok(id, 2, EVS_DELETE_HARD | EVS_DELETE_REUSE, EVS_NO_VERSION);
	ck_assert_int_eq(evs_store_current_version(&v, ct_store, id, &err),
	                 EVS_ENOTFOUND);
	ck_assert_int_eq(evs_store_load(&list, ct_store, id, EVS_NO_VERSION,
	                                &err),
	                 0);
	ck_assert_uint_eq(evs_event_list_count(list), 0);
	evs_event_list_free(list);
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, id, EVS_ANY_VERSION,
	                                  0, &err),
	                 EVS_ENOTFOUND);
	/* A new stream under the same id, from version 0. */
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 100, 2, &err), 0);
	ck_assert_uint_eq(ct_count(id), 2);
	/* The feed: the old events are gone, the lifecycle entry says
	 * what happened, the new stream's events follow. */
	w->ours[0] = id;
	walk_feed(w, &at, 3);
	ck_assert_str_eq(w->stream[0], EVS_LIFECYCLE_STREAM);
	assert_lifecycle_data(w->data[0], id, EVS_NO_VERSION, 1, 1);
	ck_assert_str_eq(w->stream[1], id);
	ck_assert_int_eq(w->version[1], 0);
	ck_assert_str_eq(w->type[1], "tested");
	ck_assert_ptr_nonnull(strstr(w->data[1], "100"));
	ck_assert_int_eq(w->version[2], 1);
	free(w);
	evs_error_clear(&err);
}
END_TEST

START_TEST(readers_of_all_events_see_soft_deletion_in_order)
{
	char id[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	evs_position at;
	feed_walk *w = calloc(1, sizeof(*w));

	make_id(id, "lc-feed");
	at = mark_feed();
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 2, &err), 0);
	delete_ok(id, 1, 0, 2);
	undelete_ok(id, 2, 3);
	w->ours[0] = id;
	walk_feed(w, &at, 6);
	/* Its events, its marker and the lifecycle entry (one transaction,
	 * in that order), then the same for undeletion. */
	ck_assert_str_eq(w->type[0], "tested");
	ck_assert_str_eq(w->type[1], "tested");
	ck_assert_str_eq(w->stream[2], id);
	ck_assert_str_eq(w->type[2], EVS_TYPE_DELETED);
	ck_assert_int_eq(w->version[2], 2);
	ck_assert_str_eq(w->stream[3], EVS_LIFECYCLE_STREAM);
	ck_assert_str_eq(w->type[3], EVS_TYPE_DELETED);
	assert_lifecycle_data(w->data[3], id, 2, 0, 0);
	ck_assert_str_eq(w->stream[4], id);
	ck_assert_str_eq(w->type[4], EVS_TYPE_UNDELETED);
	ck_assert_int_eq(w->version[4], 3);
	ck_assert_str_eq(w->stream[5], EVS_LIFECYCLE_STREAM);
	ck_assert_str_eq(w->type[5], EVS_TYPE_UNDELETED);
	assert_lifecycle_data(w->data[5], id, 3, 0, 0);
	free(w);
	evs_error_clear(&err);
}
END_TEST

START_TEST(system_names_belong_to_evstore)
{
	char id[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = NULL;
	evs_event **ok = ct_make_events(0, 1);
	evs_append_req r;
	int64_t v;

	make_id(id, "lc-names");
	/* Ids and types starting with '$': refused, nothing stored. */
	ck_assert_int_eq(evs_store_append(NULL, ct_store, "$mine",
	                                  EVS_ANY_VERSION, ok, 1, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "'$'"));
	ck_assert_int_eq(evs_store_append(NULL, ct_store, EVS_LIFECYCLE_STREAM,
	                                  EVS_ANY_VERSION, ok, 1, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_event_new_json(&ev, EVS_TYPE_DELETED, "{}", NULL,
	                                    &err),
	                 0);
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, EVS_ANY_VERSION,
	                                  &ev, 1, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "type"));
	memset(&r, 0, sizeof(r));
	r.aggregate_id = id;
	r.expected_version = EVS_ANY_VERSION;
	r.events = &ev;
	r.n_events = 1;
	ck_assert_int_eq(evs_store_append_many(ct_store, &r, 1, 0, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_current_version(&v, ct_store, id, &err),
	                 EVS_ENOTFOUND);
	ck_assert_int_eq(evs_store_current_version(&v, ct_store, "$mine",
	                                           &err),
	                 EVS_ENOTFOUND);
	/* Nor are evstore's own streams deleted. */
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, EVS_LIFECYCLE_STREAM,
	                                  EVS_ANY_VERSION, 0, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_undelete(NULL, ct_store,
	                                    EVS_LIFECYCLE_STREAM,
	                                    EVS_ANY_VERSION, &err),
	                 EVS_EINVALID);
	evs_event_free(ev);
	ct_free_events(ok, 1);
	evs_error_clear(&err);
}
END_TEST

START_TEST(lifecycle_calls_check_their_arguments)
{
	char id[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	int64_t v = 4711;

	make_id(id, "lc-args");
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 2, &err), 0);
	ck_assert_int_eq(evs_store_delete(&v, NULL, id, 1, 0, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(v, EVS_NO_VERSION);
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, NULL, 1, 0, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, "", 1, 0, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, id, EVS_NO_VERSION,
	                                  0, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "expected_version"));
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, id, -7, 0, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, id, 1, 4u, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "flags"));
	ck_assert_int_eq(evs_store_undelete(NULL, NULL, id, 1, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_undelete(NULL, ct_store, id,
	                                    EVS_NO_VERSION, &err),
	                 EVS_EINVALID);
	/* None of it changed anything. */
	ck_assert_int_eq(ct_append_one(id, 1, &err), 0);
	ck_assert_uint_eq(ct_count(id), 3);
	evs_error_clear(&err);
}
END_TEST

/* ---- deletion racing appends ------------------------------------------ */

typedef struct {
	const char *id;
	int64_t at;
	int deleter;
	pthread_barrier_t *start;
	int rc;
	int64_t actual;
} lc_racer;

static void *lc_race(void *arg)
{
	lc_racer *r = arg;
	evs_error err = EVS_ERROR_INIT;

	pthread_barrier_wait(r->start);
	if (r->deleter)
		r->rc = evs_store_delete(NULL, ct_store, r->id, r->at, 0, &err);
	else
		r->rc = ct_append_one(r->id, r->at, &err);
	r->actual = err.actual_version;
	evs_error_clear(&err);
	return NULL;
}

START_TEST(deletion_racing_appends_has_one_winner)
{
	enum { RACERS = 4, ROUNDS = 40 };
	evs_error err = EVS_ERROR_INIT;
	int round, deletes_won = 0;

	for (round = 0; round < ROUNDS; round++) {
		char id[ID_LEN], base[32];
		lc_racer rs[RACERS];
		pthread_t th[RACERS];
		pthread_barrier_t start;
		int i, wins = 0;
		int64_t v;

		snprintf(base, sizeof(base), "lc-race-%d", round);
		make_id(id, base);
		ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 2, &err),
		                 0);
		pthread_barrier_init(&start, NULL, RACERS);
		for (i = 0; i < RACERS; i++) {
			rs[i].id = id;
			rs[i].at = 1;
			rs[i].deleter = i == round % RACERS;
			rs[i].start = &start;
			ck_assert_int_eq(pthread_create(&th[i], NULL, lc_race,
			                                &rs[i]),
			                 0);
		}
		for (i = 0; i < RACERS; i++)
			pthread_join(th[i], NULL);
		pthread_barrier_destroy(&start);
		for (i = 0; i < RACERS; i++) {
			if (rs[i].rc == 0) {
				wins++;
				deletes_won += rs[i].deleter;
				continue;
			}
			/* A loser saw the winner: its version moved on, or
			 * the stream was deleted at version 2. */
			ck_assert_msg(rs[i].rc == EVS_ECONFLICT ||
			              (!rs[i].deleter &&
			               rs[i].rc == EVS_EDELETED),
			              "round %d racer %d: %d", round, i, rs[i].rc);
			ck_assert_int_eq(rs[i].actual, 2);
		}
		ck_assert_int_eq(wins, 1);
		/* Either way the stream is at version 2: deleted with its
		 * marker there, or live with the winning append. */
		v = 4711;
		i = evs_store_current_version(&v, ct_store, id, &err);
		ck_assert_int_eq(v, 2);
		ck_assert_int_eq(i, rs[round % RACERS].rc == 0 ? EVS_EDELETED
		                                               : 0);
	}
	/* Both kinds of winner happen (the deleter starts with the
	 * others, so it wins its share of rounds). */
	ck_assert_int_gt(deletes_won, 0);
	ck_assert_int_lt(deletes_won, ROUNDS);
	evs_error_clear(&err);
}
END_TEST

/* ---- truncation, retention, scavenge ---------------------------------- */

/* The versions a load of id from `from` returns, as "5 6 7 ". */
static const char *versions_of(const char *id, int64_t from)
{
	static char buf[512];
	evs_error err = EVS_ERROR_INIT;
	evs_event_list *list = NULL;
	size_t i, len = 0;

	ck_assert_int_eq(evs_store_load(&list, ct_store, id, from, &err), 0);
	buf[0] = '\0';
	for (i = 0; i < evs_event_list_count(list) && len < sizeof(buf) - 24;
	     i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%lld ",
		                        (long long)evs_event_version(
		                                evs_event_list_get(list, i)));
	evs_event_list_free(list);
	evs_error_clear(&err);
	return buf;
}

static const char *versions_back(const char *id, size_t max)
{
	static char buf[512];
	evs_error err = EVS_ERROR_INIT;
	evs_event_list *list = NULL;
	size_t i, len = 0;

	ck_assert_int_eq(evs_store_load_last(&list, ct_store, id, max, &err),
	                 0);
	buf[0] = '\0';
	for (i = 0; i < evs_event_list_count(list) && len < sizeof(buf) - 24;
	     i++)
		len += (size_t)snprintf(buf + len, sizeof(buf) - len, "%lld ",
		                        (long long)evs_event_version(
		                                evs_event_list_get(list, i)));
	evs_event_list_free(list);
	evs_error_clear(&err);
	return buf;
}

/* Scavenges until nothing is left; returns how many it removed. */
static size_t scavenge_all(size_t step)
{
	evs_error err = EVS_ERROR_INIT;
	size_t total = 0, n;
	int rounds = 0;

	do {
		n = 4711;
		ck_assert_int_eq(evs_store_scavenge(&n, ct_store, step, &err),
		                 0);
		ck_assert_uint_le(n, step);
		total += n;
	} while (n > 0 && ++rounds < 100000);
	evs_error_clear(&err);
	return total;
}

START_TEST(truncation_starts_reads_at_the_cut_until_scavenged)
{
	char id[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	evs_position at;
	feed_walk *w = calloc(1, sizeof(*w));
	int64_t v;
	size_t n;

	make_id(id, "lc-trunc");
	at = mark_feed();
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 10, &err), 0);
	/* No snapshot covers the cut: refused, nothing changed. */
	ck_assert_int_eq(evs_store_truncate(ct_store, id, 9, 5, 0, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "snapshot"));
	ck_assert_str_eq(versions_of(id, EVS_NO_VERSION),
	                 "0 1 2 3 4 5 6 7 8 9 ");
	ck_assert_int_eq(evs_store_save_snapshot(NULL, ct_store, id, "k", 1, 4,
	                                         "{}", &err),
	                 0);
	ck_assert_int_eq(evs_store_truncate(ct_store, id, 8, 5, 0, &err),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(err.actual_version, 9);
	ck_assert_int_eq(evs_store_truncate(ct_store, id, 9, 5, 0, &err), 0);
	/* Every read starts at the cut at once; the version is the same. */
	ck_assert_str_eq(versions_of(id, EVS_NO_VERSION), "5 6 7 8 9 ");
	ck_assert_str_eq(versions_of(id, 2), "5 6 7 8 9 ");
	ck_assert_str_eq(versions_of(id, 6), "7 8 9 ");
	ck_assert_str_eq(versions_back(id, 3), "7 8 9 ");
	ck_assert_str_eq(versions_back(id, 100), "5 6 7 8 9 ");
	ck_assert_int_eq(evs_store_current_version(&v, ct_store, id, &err), 0);
	ck_assert_int_eq(v, 9);
	/* It only moves forward, and not past the end. */
	ck_assert_int_eq(evs_store_truncate(ct_store, id, EVS_ANY_VERSION, 3,
	                                    EVS_TRUNCATE_FORCE, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_truncate(ct_store, id, EVS_ANY_VERSION, 11,
	                                    EVS_TRUNCATE_FORCE, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_truncate(ct_store, id, EVS_ANY_VERSION, 5,
	                                    0, &err),
	                 0);
	ck_assert_int_eq(ct_append_one(id, 9, &err), 0);
	ck_assert_str_eq(versions_of(id, EVS_NO_VERSION), "5 6 7 8 9 10 ");
	/* Scavenge removes the rest, in steps: then the feed lacks it too. */
	n = scavenge_all(2);
	ck_assert_uint_ge(n, 5);
	ck_assert_str_eq(versions_of(id, EVS_NO_VERSION), "5 6 7 8 9 10 ");
	w->ours[0] = id;
	walk_feed(w, &at, 7);
	ck_assert_str_eq(w->stream[0], id);
	ck_assert_int_eq(w->version[0], 5);
	ck_assert_int_eq(w->version[4], 9);
	ck_assert_str_eq(w->stream[5], EVS_LIFECYCLE_STREAM);
	ck_assert_str_eq(w->type[5], "$truncated");
	ck_assert_ptr_nonnull(strstr(w->data[5], "\"before\""));
	ck_assert_int_eq(w->version[6], 10);
	/* A replay of a removed batch is no replay: nothing holds it. */
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 10, &err),
	                 EVS_ECONFLICT);
	free(w);
	evs_error_clear(&err);
}
END_TEST

START_TEST(retention_keeps_the_last_events)
{
	char id[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	evs_retention keep3 = {3, 0}, all = {0, 0};

	make_id(id, "lc-keep");
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 10, &err), 0);
	ck_assert_int_eq(evs_store_set_retention(ct_store, id, 9, &keep3, 0,
	                                         &err),
	                 EVS_EINVALID);
	ck_assert_str_eq(versions_of(id, EVS_NO_VERSION),
	                 "0 1 2 3 4 5 6 7 8 9 ");
	ck_assert_int_eq(evs_store_set_retention(ct_store, id, 9, &keep3,
	                                         EVS_TRUNCATE_FORCE, &err),
	                 0);
	ck_assert_str_eq(versions_of(id, EVS_NO_VERSION), "7 8 9 ");
	ck_assert_int_eq(ct_append_one(id, 9, &err), 0);
	ck_assert_str_eq(versions_of(id, EVS_NO_VERSION), "8 9 10 ");
	ck_assert_str_eq(versions_back(id, 10), "8 9 10 ");
	/* No limit again: what scavenge has not removed reads again. */
	ck_assert_int_eq(evs_store_set_retention(ct_store, id, 10, &all, 0,
	                                         &err),
	                 0);
	ck_assert_str_eq(versions_of(id, EVS_NO_VERSION),
	                 "0 1 2 3 4 5 6 7 8 9 10 ");
	ck_assert_int_eq(evs_store_set_retention(ct_store, id, 10, &keep3,
	                                         EVS_TRUNCATE_FORCE, &err),
	                 0);
	scavenge_all(1000);
	ck_assert_int_eq(evs_store_set_retention(ct_store, id, 10, &all, 0,
	                                         &err),
	                 0);
	ck_assert_str_eq(versions_of(id, EVS_NO_VERSION), "8 9 10 ");
	evs_error_clear(&err);
}
END_TEST

/* Appends one event at `at` recorded `ago_s` seconds ago. */
static void append_aged(const char *id, int64_t at, int64_t ago_s)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = ct_event("tested", (int)at);

	ck_assert_int_eq(evs_event_set_recorded_at(
	                         ev, (int64_t)time(NULL) * 1000000 -
	                                     ago_s * 1000000, &err),
	                 0);
	ck_assert_int_eq(evs_store_append_ext(NULL, ct_store, id, at - 1, &ev,
	                                      1, EVS_APPEND_KEEP_TIME, &err),
	                 0);
	evs_event_free(ev);
	evs_error_clear(&err);
}

START_TEST(retention_by_age_reads_a_contiguous_suffix)
{
	char id[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	evs_retention day = {0, 86400};

	if (ct_backend->no_keep_time)
		return; /* its recorded times are the store's clock */
	make_id(id, "lc-age");
	/* Recorded times out of version order, as concurrent writers'
	 * transactions make them: old, old, young, old, young. */
	append_aged(id, 0, 3 * 86400);
	append_aged(id, 1, 2 * 86400);
	append_aged(id, 2, 60);
	append_aged(id, 3, 2 * 86400);
	append_aged(id, 4, 30);
	ck_assert_int_eq(evs_store_set_retention(ct_store, id, 4, &day,
	                                         EVS_TRUNCATE_FORCE, &err),
	                 0);
	/* From the first young one on, the old one after it included. */
	ck_assert_str_eq(versions_of(id, EVS_NO_VERSION), "2 3 4 ");
	scavenge_all(1000);
	day.max_age_s = 0;
	ck_assert_int_eq(evs_store_set_retention(ct_store, id, 4, &day, 0,
	                                         &err),
	                 0);
	ck_assert_str_eq(versions_of(id, EVS_NO_VERSION), "2 3 4 ");
	evs_error_clear(&err);
}
END_TEST

START_TEST(truncation_calls_check_their_arguments)
{
	char id[ID_LEN];
	evs_error err = EVS_ERROR_INIT;
	evs_retention bad = {-1, 0}, ok = {1, 0};
	size_t n = 4711;

	make_id(id, "lc-targs");
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 3, &err), 0);
	ck_assert_int_eq(evs_store_truncate(NULL, id, 2, 1, 0, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_truncate(ct_store, NULL, 2, 1, 0, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_truncate(ct_store, EVS_LIFECYCLE_STREAM,
	                                    EVS_ANY_VERSION, 1,
	                                    EVS_TRUNCATE_FORCE, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_truncate(ct_store, id, EVS_NO_VERSION, 1,
	                                    0, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_truncate(ct_store, id, 2, -1, 0, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_truncate(ct_store, id, 2, 1, 8u, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_set_retention(ct_store, id, 2, NULL, 0,
	                                         &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_set_retention(ct_store, id, 2, &bad, 0,
	                                         &err),
	                 EVS_EINVALID);
	bad.max_count = 0;
	bad.max_age_s = -5;
	ck_assert_int_eq(evs_store_set_retention(ct_store, id, 2, &bad, 0,
	                                         &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_scavenge(&n, ct_store, 0, &err),
	                 EVS_EINVALID);
	ck_assert_uint_eq(n, 0);
	ck_assert_int_eq(evs_store_scavenge(NULL, NULL, 10, &err),
	                 EVS_EINVALID);
	/* Deleted, or not there. */
	ck_assert_int_eq(evs_store_truncate(ct_store, ct_id("lc-tnone"),
	                                    EVS_ANY_VERSION, 0,
	                                    EVS_TRUNCATE_FORCE, &err),
	                 EVS_ENOTFOUND);
	ck_assert_int_eq(evs_store_delete(NULL, ct_store, id, 2, 0, &err), 0);
	ck_assert_int_eq(evs_store_truncate(ct_store, id, EVS_ANY_VERSION, 1,
	                                    EVS_TRUNCATE_FORCE, &err),
	                 EVS_EDELETED);
	ck_assert_int_eq(evs_store_set_retention(ct_store, id, EVS_ANY_VERSION,
	                                         &ok, EVS_TRUNCATE_FORCE,
	                                         &err),
	                 EVS_EDELETED);
	/* None of it changed anything. */
	ck_assert_int_eq(evs_store_undelete(NULL, ct_store, id, 3, &err), 0);
	ck_assert_str_eq(versions_of(id, EVS_NO_VERSION), "0 1 2 3 4 ");
	evs_error_clear(&err);
}
END_TEST

void ct_add_lifecycle_tests(Suite *s)
{
	TCase *tc = tcase_create("lifecycle");

	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, soft_delete_refuses_appends_and_reads_until_undeleted);
	tcase_add_test(tc, lifecycle_calls_check_the_expected_version);
	tcase_add_test(tc, hard_delete_removes_the_events_for_good);
	tcase_add_test(tc, hard_delete_with_reuse_starts_the_id_again);
	tcase_add_test(tc, readers_of_all_events_see_soft_deletion_in_order);
	tcase_add_test(tc, system_names_belong_to_evstore);
	tcase_add_test(tc, lifecycle_calls_check_their_arguments);
	tcase_add_test(tc, deletion_racing_appends_has_one_winner);
	tcase_add_test(tc, truncation_starts_reads_at_the_cut_until_scavenged);
	tcase_add_test(tc, retention_keeps_the_last_events);
	tcase_add_test(tc, retention_by_age_reads_a_contiguous_suffix);
	tcase_add_test(tc, truncation_calls_check_their_arguments);
	suite_add_tcase(s, tc);
}
