/* Unit tests for the store front end: evs_store_new() and its vtable
 * checks, out pointers, that bad arguments never reach a backend slot,
 * and the fallback when a backend has no head slot. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evstore/evstore.h>

#include "unit/suites.h"
#include "common/testutil.h"

/* A non-NULL pointer the library must overwrite with NULL on failure. */
static char not_set_target;
#define NOT_SET ((evs_store *)(void *)&not_set_target)

#define ASSERT_FAILS(rc, err, want, what)                                   \
	do {                                                                 \
		ck_assert_int_eq((rc), (want));                              \
		ck_assert_int_eq((err).code, (want));                        \
		ck_assert_msg(tu_names((err).message, (what)),                  \
		              "message \"%s\" does not name \"%s\"",         \
		              (err).message ? (err).message : "(null)",      \
		              (what));                                       \
	} while (0)

/* ---- a static fake vtable: its slots are never meant to run, except
 * free, which counts ---- */

static int static_frees;

static int static_append(int64_t *version_out, evs_backend *be,
                         const char *aggregate_id, int64_t expected_version,
                         evs_event *const *events, size_t n_events,
                         evs_error *err)
{
	(void)version_out;
	(void)be;
	(void)aggregate_id;
	(void)expected_version;
	(void)events;
	(void)n_events;
	return evs_error_set(err, EVS_ERROR, NULL, "static append called");
}

static int static_read(evs_backend *be, const char *aggregate_id,
                       int64_t after_version, evs_backend_event_cb cb,
                       void *payload, evs_error *err)
{
	(void)be;
	(void)aggregate_id;
	(void)after_version;
	(void)cb;
	(void)payload;
	return evs_error_set(err, EVS_ERROR, NULL, "static read called");
}

static void static_free(evs_backend *be)
{
	(void)be;
	static_frees++;
}

static evs_backend static_be;

/* A complete version-1 vtable, and the free counter at zero. */
static evs_backend *fresh_static(void)
{
	evs_backend init = EVS_BACKEND_INIT;

	static_be = init;
	static_be.append = static_append;
	static_be.read = static_read;
	static_be.free = static_free;
	static_frees = 0;
	return &static_be;
}

START_TEST(new_with_null_backend)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NOT_SET;

	ASSERT_FAILS(evs_store_new(&store, NULL, &err), err, EVS_EINVALID,
	             "backend");
	ck_assert_ptr_null(store);
	ck_assert_int_eq(evs_store_new(&store, NULL, NULL), EVS_EINVALID);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_with_version_0)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NOT_SET;
	evs_backend *be = fresh_static();

	be->version = 0;
	ck_assert_int_eq(evs_store_new(&store, be, &err), EVS_EUNSUPPORTED);
	ck_assert_int_eq(err.code, EVS_EUNSUPPORTED);
	ck_assert_msg(tu_names(err.message, "version"), "message \"%s\"",
	              err.message);
	ck_assert_ptr_null(store);
	ck_assert_int_eq(static_frees, 1);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_with_a_newer_version)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NOT_SET;
	evs_backend *be = fresh_static();

	be->version = EVS_BACKEND_VERSION + 1;
	ck_assert_int_eq(evs_store_new(&store, be, &err), EVS_EUNSUPPORTED);
	ck_assert_int_eq(err.code, EVS_EUNSUPPORTED);
	ck_assert_ptr_null(store);
	ck_assert_int_eq(static_frees, 1);
	/* Without an error record the backend is still taken. */
	be = fresh_static();
	be->version = 1000;
	ck_assert_int_eq(evs_store_new(&store, be, NULL), EVS_EUNSUPPORTED);
	ck_assert_int_eq(static_frees, 1);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_without_append_slot)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NOT_SET;
	evs_backend *be = fresh_static();

	be->append = NULL;
	ASSERT_FAILS(evs_store_new(&store, be, &err), err, EVS_EINVALID,
	             "append");
	ck_assert_ptr_null(store);
	ck_assert_int_eq(static_frees, 1);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_without_read_slot)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NOT_SET;
	evs_backend *be = fresh_static();

	be->read = NULL;
	ASSERT_FAILS(evs_store_new(&store, be, &err), err, EVS_EINVALID,
	             "read");
	ck_assert_ptr_null(store);
	ck_assert_int_eq(static_frees, 1);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_without_free_slot)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NOT_SET;
	evs_backend *be = fresh_static();

	be->free = NULL;
	ASSERT_FAILS(evs_store_new(&store, be, &err), err, EVS_EINVALID,
	             "free");
	ck_assert_ptr_null(store);
	ck_assert_int_eq(static_frees, 0);
	/* An unsupported version without a free slot: nothing to call. */
	be->version = 0;
	ck_assert_int_eq(evs_store_new(&store, be, &err), EVS_EUNSUPPORTED);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_without_out)
{
	evs_error err = EVS_ERROR_INIT;
	evs_backend *be = fresh_static();

	ASSERT_FAILS(evs_store_new(NULL, be, &err), err, EVS_EINVALID, "out");
	ck_assert_int_eq(static_frees, 1);
	evs_error_clear(&err);
}
END_TEST

/* The head slot is optional. */
START_TEST(new_and_free_a_complete_backend)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NOT_SET;
	evs_backend *be = fresh_static();

	ck_assert_int_eq(evs_store_new(&store, be, &err), 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_ptr_nonnull(store);
	ck_assert_ptr_ne(store, NOT_SET);
	ck_assert_int_eq(static_frees, 0);
	evs_store_free(store);
	ck_assert_int_eq(static_frees, 1);
	evs_error_clear(&err);
}
END_TEST

START_TEST(store_free_null)
{
	evs_store_free(NULL);
}
END_TEST

/* ---- a wrapper around the memory backend that counts slot calls and
 * can hide its head slot ---- */

typedef struct wrap_backend {
	evs_backend base;
	evs_backend *inner;
	int appends, reads, heads;
	int64_t min_after; /* smallest after_version a read slot saw */
	int *frees;        /* counts calls to the free slot; may be NULL */
} wrap_backend;

static int wrap_append(int64_t *version_out, evs_backend *be,
                       const char *aggregate_id, int64_t expected_version,
                       evs_event *const *events, size_t n_events,
                       evs_error *err)
{
	wrap_backend *w = (wrap_backend *)be;

	w->appends++;
	return w->inner->append(version_out, w->inner, aggregate_id,
	                        expected_version, events, n_events, err);
}

static int wrap_read(evs_backend *be, const char *aggregate_id,
                     int64_t after_version, evs_backend_event_cb cb,
                     void *payload, evs_error *err)
{
	wrap_backend *w = (wrap_backend *)be;

	w->reads++;
	if (after_version < w->min_after)
		w->min_after = after_version;
	return w->inner->read(w->inner, aggregate_id, after_version, cb,
	                      payload, err);
}

static int wrap_head(int64_t *out, evs_backend *be, const char *aggregate_id,
                     evs_error *err)
{
	wrap_backend *w = (wrap_backend *)be;

	w->heads++;
	return w->inner->head(out, w->inner, aggregate_id, err);
}

static void wrap_free(evs_backend *be)
{
	wrap_backend *w = (wrap_backend *)be;

	if (w->frees != NULL)
		(*w->frees)++;
	w->inner->free(w->inner);
	free(w);
}

/* A store around a counting wrapper; *w_out borrowed until the store is
 * freed. with_head 0 leaves the head slot NULL. */
static evs_store *wrap_open(wrap_backend **w_out, int with_head)
{
	evs_backend init = EVS_BACKEND_INIT;
	wrap_backend *w = calloc(1, sizeof(*w));
	evs_store *store = NULL;

	ck_assert_ptr_nonnull(w);
	w->base = init;
	w->base.append = wrap_append;
	w->base.read = wrap_read;
	w->base.head = with_head ? wrap_head : NULL;
	w->base.free = wrap_free;
	w->min_after = INT64_MAX;
	ck_assert_int_eq(evs_backend_memory_new(&w->inner, NULL), 0);
	ck_assert_ptr_nonnull(w->inner);
	if (with_head)
		ck_assert(w->inner->head != NULL);
	ck_assert_int_eq(evs_store_new(&store, &w->base, NULL), 0);
	*w_out = w;
	return store;
}

static evs_event *new_event(int n)
{
	char text[32];
	evs_event *ev = NULL;

	snprintf(text, sizeof(text), "{\"n\":%d}", n);
	ck_assert_int_eq(evs_event_new_json(&ev, "tested", text, NULL, NULL),
	                 0);
	return ev;
}

/* Appends n events to id after expected; returns the store's code. */
static int append_n(evs_store *store, const char *id, int64_t expected,
                    size_t n)
{
	evs_event *evs[8];
	size_t i;
	int rc;

	ck_assert_uint_le(n, 8);
	for (i = 0; i < n; i++)
		evs[i] = new_event((int)i);
	rc = evs_store_append(NULL, store, id, expected, evs, n, NULL);
	for (i = 0; i < n; i++)
		evs_event_free(evs[i]);
	return rc;
}

static int count_cb(const evs_event *ev, void *payload)
{
	(void)ev;
	(*(int *)payload)++;
	return 0;
}

START_TEST(load_without_out)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;

	ck_assert_int_eq(evs_store_open_memory(&store, NULL), 0);
	ASSERT_FAILS(evs_store_load(NULL, store, "a", EVS_NO_VERSION, &err),
	             err, EVS_EINVALID, "out");
	ck_assert_int_eq(evs_store_load(NULL, NULL, "a", EVS_NO_VERSION, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_load(NULL, store, "a", EVS_NO_VERSION,
	                                NULL),
	                 EVS_EINVALID);
	evs_store_free(store);
	evs_error_clear(&err);
}
END_TEST

START_TEST(current_version_without_out)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;

	ck_assert_int_eq(evs_store_open_memory(&store, NULL), 0);
	ck_assert_int_eq(append_n(store, "a", EVS_NO_VERSION, 1), 0);
	ASSERT_FAILS(evs_store_current_version(NULL, store, "a", &err), err,
	             EVS_EINVALID, "version_out");
	ck_assert_int_eq(evs_store_current_version(NULL, NULL, "a", &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_store_current_version(NULL, store, "a", NULL),
	                 EVS_EINVALID);
	evs_store_free(store);
	evs_error_clear(&err);
}
END_TEST

/* Without a head slot, current_version reads the stream. */
START_TEST(current_version_without_head_slot)
{
	evs_error err = EVS_ERROR_INIT;
	wrap_backend *w = NULL;
	evs_store *store = wrap_open(&w, 0);
	int64_t v = 12345;

	ck_assert_int_eq(evs_store_current_version(&v, store, "empty", &err),
	                 EVS_ENOTFOUND);
	ck_assert_int_eq(err.code, EVS_ENOTFOUND);
	ck_assert_int_eq(v, EVS_NO_VERSION);
	ck_assert_ptr_nonnull(err.message);
	ck_assert_ptr_nonnull(strstr(err.message, "\"empty\""));
	ck_assert_int_eq(w->reads, 1);
	ck_assert_int_eq(w->heads, 0);

	ck_assert_int_eq(append_n(store, "three", EVS_NO_VERSION, 3), 0);
	ck_assert_int_eq(append_n(store, "other", EVS_NO_VERSION, 5), 0);
	v = 12345;
	ck_assert_int_eq(evs_store_current_version(&v, store, "three", &err),
	                 0);
	ck_assert_int_eq(v, 2);
	ck_assert_int_eq(err.code, 0);
	ck_assert_ptr_null(err.message);
	ck_assert_int_eq(w->reads, 2);
	ck_assert_int_eq(evs_store_current_version(&v, store, "other", NULL),
	                 0);
	ck_assert_int_eq(v, 4);
	ck_assert_int_eq(evs_store_current_version(&v, store, "none", NULL),
	                 EVS_ENOTFOUND);
	ck_assert_int_eq(v, EVS_NO_VERSION);
	/* One more event moves it on. */
	ck_assert_int_eq(append_n(store, "three", 2, 1), 0);
	ck_assert_int_eq(evs_store_current_version(&v, store, "three", NULL),
	                 0);
	ck_assert_int_eq(v, 3);
	evs_store_free(store);
	evs_error_clear(&err);
}
END_TEST

/* With a head slot, current_version asks it and reads nothing. */
START_TEST(current_version_uses_the_head_slot)
{
	wrap_backend *w = NULL;
	evs_store *store = wrap_open(&w, 1);
	int64_t v = 12345;

	ck_assert_int_eq(evs_store_current_version(&v, store, "x", NULL),
	                 EVS_ENOTFOUND);
	ck_assert_int_eq(v, EVS_NO_VERSION);
	ck_assert_int_eq(append_n(store, "x", EVS_NO_VERSION, 2), 0);
	ck_assert_int_eq(evs_store_current_version(&v, store, "x", NULL), 0);
	ck_assert_int_eq(v, 1);
	ck_assert_int_eq(w->heads, 2);
	ck_assert_int_eq(w->reads, 0);
	evs_store_free(store);
}
END_TEST

/* An empty batch succeeds and reports the current version, whichever way
 * the store finds it; it never reaches the append slot. */
START_TEST(empty_batch_without_head_slot)
{
	evs_error err = EVS_ERROR_INIT;
	wrap_backend *w = NULL;
	evs_store *store = wrap_open(&w, 0);
	int64_t v = 12345;

	ck_assert_int_eq(evs_store_append(&v, store, "e", EVS_NO_VERSION, NULL,
	                                  0, &err),
	                 0);
	ck_assert_int_eq(v, EVS_NO_VERSION);
	ck_assert_int_eq(err.code, 0);
	ck_assert_ptr_null(err.message);
	ck_assert_int_eq(append_n(store, "e", EVS_NO_VERSION, 2), 0);
	ck_assert_int_eq(w->appends, 1);
	v = 12345;
	/* No check at all: a stale expected version is fine here. */
	ck_assert_int_eq(evs_store_append(&v, store, "e", EVS_NO_VERSION, NULL,
	                                  0, &err),
	                 0);
	ck_assert_int_eq(v, 1);
	ck_assert_int_eq(evs_store_append(NULL, store, "e", 7, NULL, 0, &err),
	                 0);
	ck_assert_int_eq(w->appends, 1);
	evs_store_free(store);
	evs_error_clear(&err);
}
END_TEST

/* The front end checks everything before a slot runs: a backend never
 * sees a bad argument. */
START_TEST(bad_arguments_reach_no_slot)
{
	evs_error err = EVS_ERROR_INIT;
	wrap_backend *w = NULL;
	evs_store *store = wrap_open(&w, 1);
	evs_event *evs[3], *dup[2];
	evs_event_list *list = NULL;
	int64_t v;
	int seen = 0;

	evs[0] = new_event(0);
	evs[1] = NULL;
	evs[2] = new_event(2);
	ck_assert_int_eq(evs_event_dup(&dup[0], evs[0], NULL), 0);
	ck_assert_int_eq(evs_event_dup(&dup[1], evs[0], NULL), 0);

#define BAD(call)                                                           \
	ck_assert_int_eq((call), EVS_EINVALID)
	BAD(evs_store_append(NULL, store, NULL, EVS_NO_VERSION, evs, 1, &err));
	BAD(evs_store_append(NULL, store, "", EVS_NO_VERSION, evs, 1, &err));
	BAD(evs_store_append(NULL, store, "a\n", EVS_NO_VERSION, evs, 1,
	                     &err));
	BAD(evs_store_append(NULL, store, "\xff", EVS_NO_VERSION, evs, 1,
	                     &err));
	BAD(evs_store_append(NULL, store, "a", -4, evs, 1, &err));
	BAD(evs_store_append(NULL, store, "a", INT64_MIN, evs, 1, &err));
	BAD(evs_store_append(NULL, store, "a", INT64_MAX, evs, 1, &err));
	BAD(evs_store_append(NULL, store, "a", INT64_MAX - 1, evs, 2, &err));
	BAD(evs_store_append(NULL, store, "a", EVS_NO_VERSION, NULL, 1, &err));
	BAD(evs_store_append(NULL, store, "a", EVS_NO_VERSION, evs, 3, &err));
	BAD(evs_store_append(NULL, store, "a", EVS_NO_VERSION, dup, 2, &err));
	BAD(evs_store_load(&list, store, NULL, EVS_NO_VERSION, &err));
	BAD(evs_store_load(&list, store, "\x01", EVS_NO_VERSION, &err));
	BAD(evs_store_foreach(store, "", EVS_NO_VERSION, count_cb, &seen,
	                      &err));
	BAD(evs_store_foreach(store, "a", EVS_NO_VERSION, NULL, &seen, &err));
	BAD(evs_store_current_version(&v, store, NULL, &err));
	BAD(evs_store_current_version(&v, store, "a\x7f", &err));
#undef BAD
	ck_assert_int_eq(w->appends, 0);
	ck_assert_int_eq(w->reads, 0);
	ck_assert_int_eq(w->heads, 0);
	ck_assert_int_eq(seen, 0);
	evs_event_free(evs[0]);
	evs_event_free(evs[2]);
	evs_event_free(dup[0]);
	evs_event_free(dup[1]);
	evs_store_free(store);
	evs_error_clear(&err);
}
END_TEST

/* The sentinels and the largest version that still fits pass the front
 * end and reach the append slot. */
START_TEST(sentinels_reach_the_append_slot)
{
	evs_error err = EVS_ERROR_INIT;
	wrap_backend *w = NULL;
	evs_store *store = wrap_open(&w, 1);

	ck_assert_int_eq(append_n(store, "s", EVS_ANY_VERSION, 1), 0);
	ck_assert_int_eq(append_n(store, "s", EVS_STREAM_EXISTS, 1), 0);
	ck_assert_int_eq(append_n(store, "s", EVS_NO_VERSION, 1),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(w->appends, 3);
	ck_assert_int_eq(append_n(store, "s", INT64_MAX - 1, 1),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(append_n(store, "s", INT64_MAX - 2, 2),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(w->appends, 5);
	evs_store_free(store);
	evs_error_clear(&err);
}
END_TEST

/* backend.h: after_version is EVS_NO_VERSION or above. */
START_TEST(read_slot_never_sees_below_no_version)
{
	wrap_backend *w = NULL;
	evs_store *store = wrap_open(&w, 0);
	evs_event_list *list = NULL;
	int seen = 0;
	int64_t v;

	ck_assert_int_eq(append_n(store, "r", EVS_NO_VERSION, 3), 0);
	ck_assert_int_eq(evs_store_load(&list, store, "r", INT64_MIN, NULL), 0);
	ck_assert_uint_eq(evs_event_list_count(list), 3);
	evs_event_list_free(list);
	ck_assert_int_eq(evs_store_load(&list, store, "r", EVS_ANY_VERSION,
	                                NULL),
	                 0);
	ck_assert_uint_eq(evs_event_list_count(list), 3);
	evs_event_list_free(list);
	ck_assert_int_eq(evs_store_foreach(store, "r", -100, count_cb, &seen,
	                                   NULL),
	                 0);
	ck_assert_int_eq(seen, 3);
	ck_assert_int_eq(evs_store_current_version(&v, store, "r", NULL), 0);
	ck_assert_int_eq(v, 2);
	ck_assert_int_eq(w->min_after, EVS_NO_VERSION);
	evs_store_free(store);
}
END_TEST

/* A backend without the version 5 slot: reading backwards is refused,
 * no slot runs, and out is NULL. */
START_TEST(backward_reads_need_the_slot)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	evs_event_list *list = (evs_event_list *)(void *)&not_set_target;
	int seen = 0;

	ck_assert_int_eq(evs_store_new(&store, fresh_static(), &err), 0);
	ASSERT_FAILS(evs_store_foreach_backward(store, "b", EVS_END_VERSION, 0,
	                                        count_cb, &seen, &err),
	             err, EVS_EUNSUPPORTED, "backwards");
	ASSERT_FAILS(evs_store_load_last(&list, store, "b", 3, &err), err,
	             EVS_EUNSUPPORTED, "backwards");
	ck_assert_ptr_null(list);
	ck_assert_int_eq(seen, 0);
	evs_store_free(store);
	ck_assert_int_eq(static_frees, 1);
	evs_error_clear(&err);
}
END_TEST

/* evs_store_free() calls the backend's free slot exactly once. */
START_TEST(store_free_frees_the_backend_once)
{
	wrap_backend *w = NULL;
	evs_store *store = wrap_open(&w, 1);
	int frees = 0;

	w->frees = &frees;
	ck_assert_int_eq(append_n(store, "f", EVS_NO_VERSION, 2), 0);
	evs_store_free(store);
	ck_assert_int_eq(frees, 1);
}
END_TEST

Suite *store_args_suite(void)
{
	Suite *s = suite_create("store_args");
	TCase *tc;

	tc = tcase_create("new");
	tcase_add_test(tc, new_with_null_backend);
	tcase_add_test(tc, new_with_version_0);
	tcase_add_test(tc, new_with_a_newer_version);
	tcase_add_test(tc, new_without_append_slot);
	tcase_add_test(tc, new_without_read_slot);
	tcase_add_test(tc, new_without_free_slot);
	tcase_add_test(tc, new_without_out);
	tcase_add_test(tc, new_and_free_a_complete_backend);
	tcase_add_test(tc, store_free_null);
	tcase_add_test(tc, store_free_frees_the_backend_once);
	suite_add_tcase(s, tc);

	tc = tcase_create("front_end");
	tcase_add_test(tc, load_without_out);
	tcase_add_test(tc, current_version_without_out);
	tcase_add_test(tc, current_version_without_head_slot);
	tcase_add_test(tc, current_version_uses_the_head_slot);
	tcase_add_test(tc, empty_batch_without_head_slot);
	tcase_add_test(tc, bad_arguments_reach_no_slot);
	tcase_add_test(tc, sentinels_reach_the_append_slot);
	tcase_add_test(tc, read_slot_never_sees_below_no_version);
	tcase_add_test(tc, backward_reads_need_the_slot);
	suite_add_tcase(s, tc);
	return s;
}
