/* The store contract: what every backend must do, tested through the
 * public evs_store interface only. Each runner supplies a backend. */
#include <json-c/json.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "contract/contract_int.h"

const contract_backend *ct_backend;
evs_store *ct_store;

void ct_setup(void)
{
	evs_error err = EVS_ERROR_INIT;
	int rc = ct_backend->open(&ct_store, &err);

	ck_assert_msg(rc == 0, "cannot open the %s store: %s", ct_backend->name,
	              err.message ? err.message : evs_strerror(rc));
	evs_error_clear(&err);
}

void ct_teardown(void)
{
	evs_store_free(ct_store);
	ct_store = NULL;
}

const char *ct_id(const char *base)
{
	static char bufs[16][EVS_ID_MAX + 64];
	static unsigned int next;
	char *buf = bufs[next++ % 16];
	const char *prefix = ct_backend->id_prefix ? ct_backend->id_prefix() : "";

	snprintf(buf, sizeof(bufs[0]), "%s%s", prefix, base);
	return buf;
}

evs_event *ct_event(const char *type, int n)
{
	evs_error err = EVS_ERROR_INIT;
	json_object *data = json_object_new_object();
	evs_event *ev = NULL;
	int rc;

	json_object_object_add(data, "n", json_object_new_int(n));
	rc = evs_event_new(&ev, type, data, NULL, &err);
	json_object_put(data);
	ck_assert_msg(rc == 0, "evs_event_new: %s", err.message);
	evs_error_clear(&err);
	return ev;
}

void ct_free_events(evs_event **evs, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		evs_event_free(evs[i]);
	free(evs);
}

evs_event **ct_make_events(int first, size_t n)
{
	evs_event **evs = calloc(n ? n : 1, sizeof(*evs));
	size_t i;

	ck_assert_ptr_nonnull(evs);
	for (i = 0; i < n; i++)
		evs[i] = ct_event("tested", first + (int)i);
	return evs;
}

int ct_append_n(const char *id, int64_t expected, int first, size_t n,
                evs_error *err)
{
	evs_event **evs = ct_make_events(first, n);
	int rc = evs_store_append(NULL, ct_store, id, expected, evs, n, err);

	ct_free_events(evs, n);
	return rc;
}

int ct_append_one(const char *id, int64_t expected, evs_error *err)
{
	return ct_append_n(id, expected, 0, 1, err);
}

static evs_event_list *load(const char *id, int64_t from)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event_list *list = NULL;
	int rc = evs_store_load(&list, ct_store, id, from, &err);

	ck_assert_msg(rc == 0, "load \"%s\": %s", id, err.message);
	ck_assert_ptr_nonnull(list);
	evs_error_clear(&err);
	return list;
}

size_t ct_count(const char *id)
{
	evs_event_list *list = load(id, EVS_NO_VERSION);
	size_t n = evs_event_list_count(list);

	evs_event_list_free(list);
	return n;
}

static int64_t current(const char *id)
{
	int64_t v = 12345;
	int rc = evs_store_current_version(&v, ct_store, id, NULL);

	if (rc == EVS_ENOTFOUND) {
		ck_assert_int_eq(v, EVS_NO_VERSION);
		return EVS_NO_VERSION;
	}
	ck_assert_int_eq(rc, 0);
	ck_assert_int_ge(v, 0);
	return v;
}

static int data_n(const evs_event *ev)
{
	json_object *n = NULL;

	ck_assert(json_object_object_get_ex(evs_event_data(ev), "n", &n));
	return json_object_get_int(n);
}

/* ---- versions ---------------------------------------------------------- */

START_TEST(new_stream_has_no_version)
{
	evs_error err = EVS_ERROR_INIT;
	int64_t v = 7;
	const char *id = ct_id("fresh");

	ck_assert_int_eq(evs_store_current_version(&v, ct_store, id, &err),
	                 EVS_ENOTFOUND);
	ck_assert_int_eq(v, EVS_NO_VERSION);
	ck_assert_int_eq(err.code, EVS_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(err.message, "has no events"));
	evs_error_clear(&err);
	ck_assert_uint_eq(ct_count(id), 0);
}
END_TEST

START_TEST(versions_are_zero_indexed)
{
	const char *id = ct_id("order-1");
	evs_event **evs = ct_make_events(1, 2);
	int64_t v = 99;

	ck_assert_int_eq(ct_append_one(id, EVS_NO_VERSION, NULL), 0);
	ck_assert_int_eq(current(id), 0);
	ck_assert_int_eq(evs_store_append(&v, ct_store, id, 0, evs, 2, NULL),
	                 0);
	ck_assert_int_eq(v, 2);
	ck_assert_int_eq(current(id), 2);
	ct_free_events(evs, 2);
}
END_TEST

START_TEST(n_events_give_version_n_minus_1)
{
	const char *id = ct_id("counted");
	evs_event_list *list;
	size_t i;

	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 7, NULL), 0);
	ck_assert_int_eq(ct_append_n(id, 6, 7, 3, NULL), 0);
	ck_assert_int_eq(current(id), 9);
	list = load(id, EVS_NO_VERSION);
	ck_assert_uint_eq(evs_event_list_count(list), 10);
	for (i = 0; i < 10; i++) {
		const evs_event *ev = evs_event_list_get(list, i);

		ck_assert_int_eq(evs_event_version(ev), (int64_t)i);
		ck_assert_int_eq(data_n(ev), (int)i);
		ck_assert_str_eq(evs_event_aggregate_id(ev), id);
		ck_assert_str_eq(evs_event_type(ev), "tested");
	}
	evs_event_list_free(list);
}
END_TEST

START_TEST(empty_append_is_a_noop)
{
	const char *id = ct_id("empty");
	int64_t v = 42;

	ck_assert_int_eq(evs_store_append(&v, ct_store, id, EVS_NO_VERSION,
	                                  NULL, 0, NULL), 0);
	ck_assert_int_eq(v, EVS_NO_VERSION);
	ck_assert_int_eq(current(id), EVS_NO_VERSION);
	ck_assert_uint_eq(ct_count(id), 0);
	/* On a stream with events: no check, no change, version reported. */
	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 2, NULL), 0);
	ck_assert_int_eq(evs_store_append(&v, ct_store, id, 17, NULL, 0, NULL),
	                 0);
	ck_assert_int_eq(v, 1);
	ck_assert_uint_eq(ct_count(id), 2);
}
END_TEST

/* ---- conflicts --------------------------------------------------------- */

START_TEST(stale_version_is_a_conflict)
{
	evs_error err = EVS_ERROR_INIT;
	const char *id = ct_id("order-17");
	char want[512];

	ck_assert_int_eq(ct_append_one(id, EVS_NO_VERSION, NULL), 0);
	ck_assert_int_eq(ct_append_one(id, EVS_NO_VERSION, &err),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(err.code, EVS_ECONFLICT);
	ck_assert_str_eq(err.aggregate_id, id);
	ck_assert_int_eq(err.expected_version, -1);
	ck_assert_int_eq(err.actual_version, 0);
	snprintf(want, sizeof(want),
	         "conflict appending events for aggregate \"%s\": expected "
	         "version -1, but current version is 0", id);
	ck_assert_str_eq(err.message, want);
	ck_assert_str_eq(err.sqlstate, "");
	evs_error_clear(&err);
	ck_assert_uint_eq(ct_count(id), 1);
}
END_TEST

START_TEST(conflict_on_a_missing_stream_reports_minus_one)
{
	evs_error err = EVS_ERROR_INIT;
	const char *id = ct_id("ghost");
	char want[512];

	ck_assert_int_eq(ct_append_one(id, 3, &err), EVS_ECONFLICT);
	ck_assert_int_eq(err.expected_version, 3);
	ck_assert_int_eq(err.actual_version, -1);
	snprintf(want, sizeof(want),
	         "conflict appending events for aggregate \"%s\": expected "
	         "version 3, but current version is -1", id);
	ck_assert_str_eq(err.message, want);
	evs_error_clear(&err);
	ck_assert_uint_eq(ct_count(id), 0);
}
END_TEST

START_TEST(version_ahead_of_the_stream_is_a_conflict)
{
	evs_error err = EVS_ERROR_INIT;
	const char *id = ct_id("ahead");

	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 2, NULL), 0);
	ck_assert_int_eq(ct_append_one(id, 5, &err), EVS_ECONFLICT);
	ck_assert_int_eq(err.expected_version, 5);
	ck_assert_int_eq(err.actual_version, 1);
	evs_error_clear(&err);
	ck_assert_uint_eq(ct_count(id), 2);
}
END_TEST

START_TEST(failed_batch_of_100_stores_nothing)
{
	evs_error err = EVS_ERROR_INIT;
	const char *id = ct_id("batch");
	evs_event **evs = ct_make_events(0, 100);
	evs_event_list *list;

	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 1000, 3, NULL), 0);
	/* A stale version: none of the 100 go in. */
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, 0, evs, 100,
	                                  &err), EVS_ECONFLICT);
	ck_assert_uint_eq(ct_count(id), 3);
	/* The right version, but the last event reuses a stored id: none of
	 * the 99 before it go in either. */
	list = load(id, EVS_NO_VERSION);
	ck_assert_int_eq(evs_event_set_id(evs[99],
	                 evs_event_id(evs_event_list_get(list, 1)), NULL), 0);
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, 2, evs, 100,
	                                  &err), EVS_EDUPLICATE);
	evs_event_list_free(list);
	ck_assert_uint_eq(ct_count(id), 3);
	ck_assert_int_eq(current(id), 2);
	/* And the whole batch goes in once it is right. */
	evs_event_free(evs[99]);
	evs[99] = ct_event("tested", 99);
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, 2, evs, 100,
	                                  &err), 0);
	ck_assert_int_eq(current(id), 102);
	evs_error_clear(&err);
	ct_free_events(evs, 100);
}
END_TEST

/* ---- loading ----------------------------------------------------------- */

START_TEST(from_version_is_exclusive)
{
	const char *id = ct_id("paged");
	evs_event_list *list;

	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 5, NULL), 0);
	list = load(id, 2);
	ck_assert_uint_eq(evs_event_list_count(list), 2);
	ck_assert_int_eq(evs_event_version(evs_event_list_get(list, 0)), 3);
	ck_assert_int_eq(evs_event_version(evs_event_list_get(list, 1)), 4);
	evs_event_list_free(list);
	list = load(id, 0);
	ck_assert_uint_eq(evs_event_list_count(list), 4);
	evs_event_list_free(list);
	list = load(id, 4);
	ck_assert_uint_eq(evs_event_list_count(list), 0);
	evs_event_list_free(list);
	list = load(id, 1000);
	ck_assert_uint_eq(evs_event_list_count(list), 0);
	evs_event_list_free(list);
	list = load(id, INT64_MAX);
	ck_assert_uint_eq(evs_event_list_count(list), 0);
	evs_event_list_free(list);
}
END_TEST

START_TEST(from_version_below_minus_one_loads_all)
{
	const char *id = ct_id("below");
	int64_t froms[] = {EVS_NO_VERSION, -2, -3, -1000, INT64_MIN};
	size_t i;

	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 4, NULL), 0);
	for (i = 0; i < sizeof(froms) / sizeof(froms[0]); i++) {
		evs_event_list *list = load(id, froms[i]);

		ck_assert_uint_eq(evs_event_list_count(list), 4);
		ck_assert_int_eq(evs_event_version(evs_event_list_get(list, 0)),
		                 0);
		evs_event_list_free(list);
	}
}
END_TEST

START_TEST(missing_aggregate_loads_empty)
{
	evs_event_list *list = load(ct_id("nobody"), EVS_NO_VERSION);

	ck_assert_uint_eq(evs_event_list_count(list), 0);
	ck_assert_ptr_null(evs_event_list_get(list, 0));
	evs_event_list_free(list);
}
END_TEST

START_TEST(loaded_list_is_the_callers_copy)
{
	const char *id = ct_id("copied");
	evs_event_list *a, *b;
	json_object *data;

	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 5, 2, NULL), 0);
	a = load(id, EVS_NO_VERSION);
	b = load(id, EVS_NO_VERSION);
	ck_assert_ptr_ne(evs_event_list_get(a, 0), evs_event_list_get(b, 0));
	/* Changing what one load returned changes neither the store nor
	 * another load. */
	data = evs_event_data(evs_event_list_get(a, 0));
	json_object_object_add(data, "n", json_object_new_int(-1));
	ck_assert_int_eq(data_n(evs_event_list_get(a, 0)), -1);
	ck_assert_int_eq(data_n(evs_event_list_get(b, 0)), 5);
	evs_event_list_free(a);
	a = load(id, EVS_NO_VERSION);
	ck_assert_int_eq(data_n(evs_event_list_get(a, 0)), 5);
	/* The list outlives the store's other activity. */
	ck_assert_int_eq(ct_append_n(id, 1, 7, 1, NULL), 0);
	ck_assert_uint_eq(evs_event_list_count(b), 2);
	evs_event_list_free(a);
	evs_event_list_free(b);
}
END_TEST

START_TEST(streams_are_isolated)
{
	const char *a = ct_id("isolated-a"), *b = ct_id("isolated-b");
	evs_event_list *list;

	ck_assert_int_eq(ct_append_n(a, EVS_NO_VERSION, 0, 3, NULL), 0);
	ck_assert_int_eq(ct_append_n(b, EVS_NO_VERSION, 100, 2, NULL), 0);
	ck_assert_int_eq(ct_append_one(ct_id("isolated-a2"), EVS_NO_VERSION,
	                               NULL), 0);
	ck_assert_int_eq(current(a), 2);
	ck_assert_int_eq(current(b), 1);
	list = load(b, EVS_NO_VERSION);
	ck_assert_uint_eq(evs_event_list_count(list), 2);
	ck_assert_int_eq(data_n(evs_event_list_get(list, 0)), 100);
	ck_assert_str_eq(evs_event_aggregate_id(evs_event_list_get(list, 1)),
	                 b);
	evs_event_list_free(list);
	/* A prefix of an id is another stream. */
	ck_assert_int_eq(current(ct_id("isolated-")), EVS_NO_VERSION);
}
END_TEST

START_TEST(thousand_events_come_back_in_order)
{
	const char *id = ct_id("long");
	evs_event_list *list;
	size_t i;
	int64_t prev_pos = 0;

	for (i = 0; i < 1000; i++)
		ck_assert_int_eq(ct_append_n(id, (int64_t)i - 1, (int)i, 1,
		                             NULL), 0);
	list = load(id, EVS_NO_VERSION);
	ck_assert_uint_eq(evs_event_list_count(list), 1000);
	for (i = 0; i < 1000; i++) {
		const evs_event *ev = evs_event_list_get(list, i);

		ck_assert_int_eq(evs_event_version(ev), (int64_t)i);
		ck_assert_int_eq(data_n(ev), (int)i);
		ck_assert_int_gt(evs_event_position(ev), prev_pos);
		prev_pos = evs_event_position(ev);
	}
	evs_event_list_free(list);
}
END_TEST

START_TEST(stored_fields_are_filled)
{
	const char *id = ct_id("fields");
	evs_error err = EVS_ERROR_INIT;
	json_object *data = json_tokener_parse(
		"{\"amount\": 12.5, \"tags\": [\"a\", \"b\"], \"nested\": "
		"{\"deep\": [1, {\"x\": null}]}, \"big\": 9007199254740993}");
	json_object *meta = json_tokener_parse(
		"{\"correlation_id\": \"c-1\", \"causation_id\": \"c-0\"}");
	evs_event *evs[2];
	evs_event_list *list;
	const evs_event *got;
	int64_t before = 0, after;

	ck_assert_int_eq(evs_event_new(&evs[0], "Deposited", data, meta, &err),
	                 0);
	ck_assert_int_eq(evs_event_new_json(&evs[1], "Überwiesen·送金", "\"x\"",
	                                    NULL, &err), 0);
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		before = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	}
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, EVS_NO_VERSION,
	                                  evs, 2, &err), 0);
	{
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		after = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	}
	list = load(id, EVS_NO_VERSION);
	got = evs_event_list_get(list, 0);
	ck_assert(evs_uuid_equal(evs_event_id(got), evs_event_id(evs[0])));
	ck_assert_str_eq(evs_event_type(got), "Deposited");
	ck_assert(json_object_equal(evs_event_data(got), data));
	ck_assert(json_object_equal(evs_event_metadata(got), meta));
	ck_assert_int_gt(evs_event_position(got), 0);
	/* The server's clock may differ a little from ours. */
	ck_assert_int_ge(evs_event_recorded_at(got), before - 5000000);
	ck_assert_int_le(evs_event_recorded_at(got), after + 5000000);
	got = evs_event_list_get(list, 1);
	ck_assert(evs_uuid_equal(evs_event_id(got), evs_event_id(evs[1])));
	ck_assert_str_eq(evs_event_type(got), "Überwiesen·送金");
	ck_assert_str_eq(json_object_get_string(evs_event_data(got)), "x");
	ck_assert_ptr_null(evs_event_metadata(got));
	ck_assert_ptr_null(evs_event_metadata_json(got));
	ck_assert_int_gt(evs_event_position(got),
	                 evs_event_position(evs_event_list_get(list, 0)));
	evs_event_list_free(list);
	evs_event_free(evs[0]);
	evs_event_free(evs[1]);
	json_object_put(data);
	json_object_put(meta);
	evs_error_clear(&err);
}
END_TEST

START_TEST(json_values_of_every_kind_round_trip)
{
	static const char *const texts[] = {
		"null", "true", "false", "0", "-17", "9223372036854775807",
		"-9223372036854775808", "3.25", "-1.5e-07", "\"\"",
		"\"quote \\\" backslash \\\\ tab \\t 東京 🚀\"", "[]", "{}",
		"[1, \"two\", [3], {\"four\": 4}]",
		"{\"'; DROP TABLE events; --\": \"\\u00e9\"}",
	};
	const char *id = ct_id("kinds");
	size_t i, n = sizeof(texts) / sizeof(texts[0]);
	evs_event **evs = calloc(n, sizeof(*evs));
	evs_event_list *list;

	for (i = 0; i < n; i++)
		ck_assert_int_eq(evs_event_new_json(&evs[i], "kind", texts[i],
		                                    NULL, NULL), 0);
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, EVS_NO_VERSION,
	                                  evs, n, NULL), 0);
	list = load(id, EVS_NO_VERSION);
	ck_assert_uint_eq(evs_event_list_count(list), n);
	for (i = 0; i < n; i++) {
		json_object *want = json_tokener_parse(texts[i]);
		json_object *got = evs_event_data(evs_event_list_get(list, i));

		ck_assert_msg(json_object_equal(want, got),
		              "%s came back as %s", texts[i],
		              evs_event_data_json(evs_event_list_get(list, i)));
		json_object_put(want);
	}
	evs_event_list_free(list);
	ct_free_events(evs, n);
}
END_TEST

START_TEST(global_positions_grow_across_streams)
{
	const char *a = ct_id("pos-a"), *b = ct_id("pos-b");
	evs_event_list *la, *lb;

	ck_assert_int_eq(ct_append_one(a, EVS_NO_VERSION, NULL), 0);
	ck_assert_int_eq(ct_append_one(b, EVS_NO_VERSION, NULL), 0);
	ck_assert_int_eq(ct_append_one(a, 0, NULL), 0);
	la = load(a, EVS_NO_VERSION);
	lb = load(b, EVS_NO_VERSION);
	ck_assert_int_lt(evs_event_position(evs_event_list_get(la, 0)),
	                 evs_event_position(evs_event_list_get(lb, 0)));
	ck_assert_int_lt(evs_event_position(evs_event_list_get(lb, 0)),
	                 evs_event_position(evs_event_list_get(la, 1)));
	evs_event_list_free(la);
	evs_event_list_free(lb);
}
END_TEST

/* ---- sentinels --------------------------------------------------------- */

START_TEST(any_version_skips_the_check)
{
	const char *id = ct_id("any");
	int64_t v = 0;

	ck_assert_int_eq(evs_store_append(&v, ct_store, id, EVS_ANY_VERSION,
	                                  NULL, 0, NULL), 0);
	ck_assert_int_eq(ct_append_one(id, EVS_ANY_VERSION, NULL), 0);
	ck_assert_int_eq(ct_append_n(id, EVS_ANY_VERSION, 1, 2, NULL), 0);
	ck_assert_int_eq(current(id), 2);
	{
		evs_event *ev = ct_event("tested", 3);

		ck_assert_int_eq(evs_store_append(&v, ct_store, id,
		                                  EVS_ANY_VERSION, &ev, 1, NULL),
		                 0);
		ck_assert_int_eq(v, 3);
		evs_event_free(ev);
	}
}
END_TEST

START_TEST(stream_exists_needs_an_event)
{
	evs_error err = EVS_ERROR_INIT;
	const char *id = ct_id("exists");
	char want[512];

	ck_assert_int_eq(ct_append_one(id, EVS_STREAM_EXISTS, &err),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(err.expected_version, EVS_STREAM_EXISTS);
	ck_assert_int_eq(err.actual_version, -1);
	snprintf(want, sizeof(want),
	         "conflict appending events for aggregate \"%s\": expected an "
	         "existing stream, but current version is -1", id);
	ck_assert_str_eq(err.message, want);
	ck_assert_uint_eq(ct_count(id), 0);
	ck_assert_int_eq(ct_append_one(id, EVS_NO_VERSION, NULL), 0);
	ck_assert_int_eq(ct_append_one(id, EVS_STREAM_EXISTS, &err), 0);
	ck_assert_int_eq(ct_append_one(id, EVS_STREAM_EXISTS, &err), 0);
	ck_assert_int_eq(current(id), 2);
	evs_error_clear(&err);
}
END_TEST

/* ---- idempotence ------------------------------------------------------- */

START_TEST(replayed_append_stores_nothing)
{
	const char *id = ct_id("replay");
	evs_event **evs = ct_make_events(0, 3);
	int64_t v = 0;

	ck_assert_int_eq(evs_store_append(&v, ct_store, id, EVS_NO_VERSION,
	                                  evs, 2, NULL), 0);
	ck_assert_int_eq(v, 1);
	/* The reply was lost; the client sends the same thing again. */
	v = 0;
	ck_assert_int_eq(evs_store_append(&v, ct_store, id, EVS_NO_VERSION,
	                                  evs, 2, NULL), 0);
	ck_assert_int_eq(v, 1);
	ck_assert_uint_eq(ct_count(id), 2);
	/* A prefix of the stored batch, and its tail after its version. */
	ck_assert_int_eq(evs_store_append(&v, ct_store, id, EVS_NO_VERSION,
	                                  evs, 1, NULL), 0);
	ck_assert_int_eq(v, 0);
	ck_assert_int_eq(evs_store_append(&v, ct_store, id, 0, evs + 1, 1,
	                                  NULL), 0);
	ck_assert_int_eq(v, 1);
	/* Still a replay after someone else appended further. */
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, 1, evs + 2, 1,
	                                  NULL), 0);
	ck_assert_int_eq(evs_store_append(&v, ct_store, id, EVS_NO_VERSION,
	                                  evs, 2, NULL), 0);
	ck_assert_int_eq(v, 1);
	/* With the sentinels, wherever the batch stands. */
	ck_assert_int_eq(evs_store_append(&v, ct_store, id, EVS_ANY_VERSION,
	                                  evs + 1, 2, NULL), 0);
	ck_assert_int_eq(v, 2);
	ck_assert_int_eq(evs_store_append(&v, ct_store, id, EVS_STREAM_EXISTS,
	                                  evs, 3, NULL), 0);
	ck_assert_int_eq(v, 2);
	ck_assert_uint_eq(ct_count(id), 3);
	ck_assert_int_eq(current(id), 2);
	ct_free_events(evs, 3);
}
END_TEST

/* Appends with evs_store_append_ext(); fails the test on error. */
static evs_append_result append_ext(const char *id, int64_t expected,
                                    evs_event **evs, size_t n,
                                    unsigned int flags)
{
	evs_error err = EVS_ERROR_INIT;
	evs_append_result res = {-100, -100};
	int rc = evs_store_append_ext(&res, ct_store, id, expected, evs, n,
	                              flags, &err);

	ck_assert_msg(rc == 0, "append_ext: %s",
	              err.message ? err.message : evs_strerror(rc));
	evs_error_clear(&err);
	return res;
}

START_TEST(append_ext_tells_a_replay_from_an_append)
{
	const char *id = ct_id("replay-ext");
	evs_event **evs = ct_make_events(0, 4);
	evs_append_result r;

	r = append_ext(id, EVS_NO_VERSION, evs, 2, 0);
	ck_assert_int_eq(r.version, 1);
	ck_assert_int_eq(r.replayed, 0);
	/* The same batch again, in every mode: a replay, nothing stored. */
	r = append_ext(id, EVS_NO_VERSION, evs, 2, 0);
	ck_assert_int_eq(r.version, 1);
	ck_assert_int_eq(r.replayed, 1);
	r = append_ext(id, EVS_ANY_VERSION, evs, 2, 0);
	ck_assert_int_eq(r.version, 1);
	ck_assert_int_eq(r.replayed, 1);
	r = append_ext(id, EVS_STREAM_EXISTS, evs + 1, 1, 0);
	ck_assert_int_eq(r.version, 1);
	ck_assert_int_eq(r.replayed, 1);
	/* New events are not. */
	r = append_ext(id, 1, evs + 2, 1, 0);
	ck_assert_int_eq(r.version, 2);
	ck_assert_int_eq(r.replayed, 0);
	r = append_ext(id, EVS_ANY_VERSION, evs + 3, 1, 0);
	ck_assert_int_eq(r.version, 3);
	ck_assert_int_eq(r.replayed, 0);
	/* An empty batch gives the stream's version and is no replay. */
	r = append_ext(id, 17, NULL, 0, 0);
	ck_assert_int_eq(r.version, 3);
	ck_assert_int_eq(r.replayed, 0);
	r = append_ext(ct_id("replay-ext-none"), EVS_NO_VERSION, NULL, 0, 0);
	ck_assert_int_eq(r.version, EVS_NO_VERSION);
	ck_assert_uint_eq(ct_count(id), 4);
	ct_free_events(evs, 4);
}
END_TEST

/* A restore keeps each event's recorded time, microseconds exact, from
 * 4714 BC to the far future; a second restore of it is a replay. */
START_TEST(keep_time_stores_each_events_recorded_time)
{
	static const int64_t times[] = {
		1700000000123456LL,        /* 2023-11-14T22:13:20.123456Z */
		0,                         /* the epoch itself */
		-1,                        /* a microsecond before it */
		-62135596800000000LL,      /* 0001-01-01 */
		-62135596800000001LL,      /* a microsecond before: 1 BC */
		-210866803200000000LL,     /* 4714-11-24 BC, the first */
		253402300799999999LL,      /* 9999-12-31T23:59:59.999999Z */
		INT64_MAX - 1,             /* 294247-01-10, the last */
	};
	const size_t n = sizeof(times) / sizeof(times[0]);
	evs_error err = EVS_ERROR_INIT;
	const char *id = ct_id("keep-time");
	evs_event **evs = ct_make_events(0, n);
	evs_append_result r = {-100, -100};
	evs_event_list *list = NULL;
	evs_event *first;
	size_t i;
	int rc;

	for (i = 0; i < n; i++)
		ck_assert_int_eq(evs_event_set_recorded_at(evs[i], times[i],
		                                           NULL), 0);
	rc = evs_store_append_ext(&r, ct_store, id, EVS_NO_VERSION, evs, n,
	                          EVS_APPEND_KEEP_TIME, &err);
	if (ct_backend->no_keep_time) {
		ck_assert_int_eq(rc, EVS_EDB);
		ck_assert_str_eq(err.sqlstate, "42501");
		ck_assert_uint_eq(ct_count(id), 0);
		goto done;
	}
	ck_assert_msg(rc == 0, "keep-time append: %s", err.message);
	ck_assert_int_eq(r.version, (int64_t)n - 1);
	ck_assert_int_eq(r.replayed, 0);
	ck_assert_int_eq(evs_store_load(&list, ct_store, id, EVS_NO_VERSION,
	                                &err), 0);
	ck_assert_uint_eq(evs_event_list_count(list), n);
	for (i = 0; i < n; i++)
		ck_assert_msg(evs_event_recorded_at(evs_event_list_get(list, i)) ==
		                      times[i],
		              "event %zu: recorded at %lld, not %lld", i,
		              (long long)evs_event_recorded_at(
		                      evs_event_list_get(list, i)),
		              (long long)times[i]);
	/* An event read back keeps its time: restoring it again is a
	 * replay, and nothing more is stored. */
	first = (evs_event *)evs_event_list_get(list, 0);
	rc = evs_store_append_ext(&r, ct_store, id, EVS_NO_VERSION, &first, 1,
	                          EVS_APPEND_KEEP_TIME, &err);
	ck_assert_int_eq(rc, 0);
	ck_assert_int_eq(r.replayed, 1);
	ck_assert_int_eq(r.version, 0);
	ck_assert_uint_eq(ct_count(id), n);
	/* Plain appends keep using the store's clock. */
	{
		evs_event *ev = ct_event("tested", 99);
		int64_t before = (int64_t)time(NULL) * 1000000 - 60000000;
		evs_event_list *more = NULL;

		ck_assert_int_eq(evs_event_set_recorded_at(ev, 5, NULL), 0);
		ck_assert_int_eq(evs_store_append(NULL, ct_store, id,
		                                  (int64_t)n - 1, &ev, 1, NULL),
		                 0);
		ck_assert_int_eq(evs_store_load(&more, ct_store, id,
		                                (int64_t)n - 1, NULL), 0);
		ck_assert_int_gt(evs_event_recorded_at(
		                         evs_event_list_get(more, 0)),
		                 before);
		evs_event_list_free(more);
		evs_event_free(ev);
	}
done:
	evs_event_list_free(list);
	ct_free_events(evs, n);
	evs_error_clear(&err);
}
END_TEST

START_TEST(reused_event_id_is_a_duplicate)
{
	evs_error err = EVS_ERROR_INIT;
	const char *id = ct_id("dup");
	evs_event **evs = ct_make_events(0, 2);
	evs_event *fresh = ct_event("tested", 9);
	evs_event *batch[2];
	char text[EVS_UUID_STRLEN + 1];

	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, EVS_NO_VERSION,
	                                  evs, 2, NULL), 0);
	/* At the right version, a batch holding a stored id. */
	batch[0] = fresh;
	batch[1] = evs[0];
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, 1, batch, 2,
	                                  &err), EVS_EDUPLICATE);
	ck_assert_int_eq(err.code, EVS_EDUPLICATE);
	evs_uuid_format(text, evs_event_id(evs[0]));
	ck_assert_ptr_nonnull(strstr(err.message, text));
	ck_assert_ptr_nonnull(strstr(err.message, id));
	ck_assert_uint_eq(ct_count(id), 2);
	/* With EVS_ANY_VERSION, a stored id out of place. */
	batch[0] = evs[1];
	batch[1] = fresh;
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, EVS_ANY_VERSION,
	                                  batch, 2, &err), EVS_EDUPLICATE);
	batch[0] = evs[1];
	batch[1] = evs[0];
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, EVS_ANY_VERSION,
	                                  batch, 2, &err), EVS_EDUPLICATE);
	ck_assert_uint_eq(ct_count(id), 2);
	/* Not a replay of what is stored after -1: a stale version. */
	batch[0] = evs[0];
	batch[1] = fresh;
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, EVS_NO_VERSION,
	                                  batch, 2, &err), EVS_ECONFLICT);
	ck_assert_int_eq(err.actual_version, 1);
	ck_assert_uint_eq(ct_count(id), 2);
	/* The same id in another stream is fine. */
	ck_assert_int_eq(evs_store_append(NULL, ct_store, ct_id("dup-other"),
	                                  EVS_NO_VERSION, evs, 1, &err), 0);
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, 1, &fresh, 1,
	                                  &err), 0);
	ck_assert_uint_eq(ct_count(id), 3);
	evs_event_free(fresh);
	ct_free_events(evs, 2);
	evs_error_clear(&err);
}
END_TEST

/* ---- streaming --------------------------------------------------------- */

typedef struct {
	int seen;
	int stop_at;
	int64_t last_version;
	int64_t head_inside;
} walk_state;

static int walk(const evs_event *ev, void *payload)
{
	walk_state *w = payload;

	ck_assert_int_eq(evs_event_version(ev), w->last_version + 1);
	w->last_version = evs_event_version(ev);
	w->seen++;
	/* The callback may use the store. */
	ck_assert_int_eq(evs_store_current_version(&w->head_inside, ct_store,
	                                           evs_event_aggregate_id(ev),
	                                           NULL), 0);
	return w->seen == w->stop_at ? 7 : 0;
}

START_TEST(foreach_streams_in_order_and_stops_when_asked)
{
	const char *id = ct_id("streamed");
	walk_state w = {0, 0, EVS_NO_VERSION, 0};

	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 600, NULL), 0);
	ck_assert_int_eq(evs_store_foreach(ct_store, id, EVS_NO_VERSION, walk,
	                                   &w, NULL), 0);
	ck_assert_int_eq(w.seen, 600);
	ck_assert_int_eq(w.head_inside, 599);
	w.seen = 0;
	w.stop_at = 3;
	w.last_version = 9;
	ck_assert_int_eq(evs_store_foreach(ct_store, id, 9, walk, &w, NULL),
	                 7);
	ck_assert_int_eq(w.seen, 3);
	ck_assert_int_eq(w.last_version, 12);
	w.seen = 0;
	w.stop_at = 0;
	w.last_version = 598;
	ck_assert_int_eq(evs_store_foreach(ct_store, id, 598, walk, &w, NULL),
	                 0);
	ck_assert_int_eq(w.seen, 1);
	w.seen = 0;
	ck_assert_int_eq(evs_store_foreach(ct_store, ct_id("none"),
	                                   EVS_NO_VERSION, walk, &w, NULL), 0);
	ck_assert_int_eq(w.seen, 0);
}
END_TEST

/* ---- reading backwards ------------------------------------------------- */

typedef struct {
	int seen;
	int stop_at;
	int64_t last_version; /* the one before: each must be one lower */
	int64_t head_inside;
} back_state;

static int walk_back(const evs_event *ev, void *payload)
{
	back_state *w = payload;
	int n = -1;
	json_object *data = evs_event_data(ev), *v;

	ck_assert_int_eq(evs_event_version(ev), w->last_version - 1);
	w->last_version = evs_event_version(ev);
	/* Each event is the one stored at its version: {"n": version}. */
	ck_assert(json_object_object_get_ex(data, "n", &v));
	n = json_object_get_int(v);
	ck_assert_int_eq(n, evs_event_version(ev));
	w->seen++;
	/* The callback may use the store, appends included. */
	ck_assert_int_eq(evs_store_current_version(&w->head_inside, ct_store,
	                                           evs_event_aggregate_id(ev),
	                                           NULL), 0);
	return w->seen == w->stop_at ? 9 : 0;
}

START_TEST(foreach_backward_streams_newest_first)
{
	const char *id = ct_id("backwards");
	back_state w = {0, 0, 600, 0};

	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 600, NULL), 0);
	/* From the end: all 600, newest first. */
	ck_assert_int_eq(evs_store_foreach_backward(ct_store, id,
	                                            EVS_END_VERSION, 0,
	                                            walk_back, &w, NULL), 0);
	ck_assert_int_eq(w.seen, 600);
	ck_assert_int_eq(w.last_version, 0);
	/* Below a version, at most max_events. */
	memset(&w, 0, sizeof(w));
	w.last_version = 300;
	ck_assert_int_eq(evs_store_foreach_backward(ct_store, id, 300, 5,
	                                            walk_back, &w, NULL), 0);
	ck_assert_int_eq(w.seen, 5);
	ck_assert_int_eq(w.last_version, 295);
	/* A before_version past the end is the end; a callback stops it. */
	memset(&w, 0, sizeof(w));
	w.last_version = 600;
	w.stop_at = 3;
	ck_assert_int_eq(evs_store_foreach_backward(ct_store, id, 1000000, 0,
	                                            walk_back, &w, NULL), 9);
	ck_assert_int_eq(w.seen, 3);
	ck_assert_int_eq(w.last_version, 597);
	/* Below 1: only version 0. Below 0 or less: nothing. */
	memset(&w, 0, sizeof(w));
	w.last_version = 1;
	ck_assert_int_eq(evs_store_foreach_backward(ct_store, id, 1, 0,
	                                            walk_back, &w, NULL), 0);
	ck_assert_int_eq(w.seen, 1);
	memset(&w, 0, sizeof(w));
	ck_assert_int_eq(evs_store_foreach_backward(ct_store, id, 0, 0,
	                                            walk_back, &w, NULL), 0);
	ck_assert_int_eq(evs_store_foreach_backward(ct_store, id, -5, 0,
	                                            walk_back, &w, NULL), 0);
	ck_assert_int_eq(w.seen, 0);
	/* A stream with no events: nothing, and no error. */
	ck_assert_int_eq(evs_store_foreach_backward(ct_store, ct_id("none"),
	                                            EVS_END_VERSION, 0,
	                                            walk_back, &w, NULL), 0);
	ck_assert_int_eq(w.seen, 0);
}
END_TEST

/* Appends one event per callback: a read backwards still ends, and sees
 * only what was there below where it started. */
static int append_while_reading(const evs_event *ev, void *payload)
{
	int *seen = payload;

	(*seen)++;
	ck_assert_int_eq(ct_append_one(evs_event_aggregate_id(ev),
	                               EVS_ANY_VERSION, NULL), 0);
	return 0;
}

START_TEST(foreach_backward_ends_while_writers_append)
{
	const char *id = ct_id("back-growing");
	int seen = 0;

	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 50, NULL), 0);
	ck_assert_int_eq(evs_store_foreach_backward(ct_store, id,
	                                            EVS_END_VERSION, 0,
	                                            append_while_reading,
	                                            &seen, NULL), 0);
	ck_assert_int_eq(seen, 50);
	ck_assert_uint_eq(ct_count(id), 100);
}
END_TEST

START_TEST(load_last_returns_the_last_n_oldest_first)
{
	const char *id = ct_id("last-n");
	evs_event_list *list = NULL;
	evs_error err = EVS_ERROR_INIT;
	size_t i;

	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 30, NULL), 0);
	ck_assert_int_eq(evs_store_load_last(&list, ct_store, id, 4, &err), 0);
	ck_assert_uint_eq(evs_event_list_count(list), 4);
	for (i = 0; i < 4; i++)
		ck_assert_int_eq(evs_event_version(evs_event_list_get(list, i)),
		                 26 + (int64_t)i);
	evs_event_list_free(list);
	/* More than there are: all of them. */
	ck_assert_int_eq(evs_store_load_last(&list, ct_store, id, 1000, &err),
	                 0);
	ck_assert_uint_eq(evs_event_list_count(list), 30);
	for (i = 0; i < 30; i++)
		ck_assert_int_eq(evs_event_version(evs_event_list_get(list, i)),
		                 (int64_t)i);
	evs_event_list_free(list);
	/* None: an empty list. */
	ck_assert_int_eq(evs_store_load_last(&list, ct_store, ct_id("none"), 3,
	                                     &err),
	                 0);
	ck_assert_uint_eq(evs_event_list_count(list), 0);
	evs_event_list_free(list);
	evs_error_clear(&err);
}
END_TEST

/* ---- concurrency ------------------------------------------------------- */

#define RACE_MAX_TRIES 100

typedef struct {
	const char *id;
	pthread_barrier_t *start;
	int tries;
	int wins, losses, bad_actual;
	int64_t won[RACE_MAX_TRIES];
	evs_uuid won_id[RACE_MAX_TRIES];
	char failure[256];
} racer;

static void *race(void *arg)
{
	racer *r = arg;
	int i;

	pthread_barrier_wait(r->start);
	for (i = 0; i < r->tries; i++) {
		evs_error err = EVS_ERROR_INIT;
		evs_event *ev = NULL;
		int64_t seen = EVS_NO_VERSION, v = 0;
		int rc = evs_store_current_version(&seen, ct_store, r->id, &err);

		if (rc == 0 || rc == EVS_ENOTFOUND) {
			/* Widen the window between reading and appending. */
			sched_yield();
			rc = evs_event_new_json(&ev, "raced", "{}", NULL, &err);
			if (rc == 0)
				rc = evs_store_append(&v, ct_store, r->id, seen,
				                      &ev, 1, &err);
		}
		if (rc == 0) {
			r->won[r->wins] = v;
			r->won_id[r->wins] = *evs_event_id(ev);
			r->wins++;
		} else if (rc == EVS_ECONFLICT) {
			r->losses++;
			/* The true version: past the one this racer saw. */
			if (err.expected_version != seen ||
			    err.actual_version <= seen)
				r->bad_actual++;
		} else if (r->failure[0] == '\0') {
			snprintf(r->failure, sizeof(r->failure), "%s",
			         err.message ? err.message : evs_strerror(rc));
		}
		evs_event_free(ev);
		evs_error_clear(&err);
	}
	return NULL;
}

void ct_race(const char *id, int threads, int tries)
{
	racer *rs = calloc((size_t)threads, sizeof(*rs));
	pthread_t *th = calloc((size_t)threads, sizeof(*th));
	evs_event_list *list;
	pthread_barrier_t start;
	int i, j, wins = 0, losses = 0;
	size_t n;

	ck_assert(rs != NULL && th != NULL && tries <= RACE_MAX_TRIES);
	pthread_barrier_init(&start, NULL, (unsigned int)threads);
	for (i = 0; i < threads; i++) {
		rs[i].id = id;
		rs[i].start = &start;
		rs[i].tries = tries;
		ck_assert_int_eq(pthread_create(&th[i], NULL, race, &rs[i]), 0);
	}
	for (i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start);
	list = load(id, EVS_NO_VERSION);
	n = evs_event_list_count(list);
	for (i = 0; i < threads; i++) {
		ck_assert_msg(rs[i].failure[0] == '\0', "racer %d: %s", i,
		              rs[i].failure);
		ck_assert_int_eq(rs[i].bad_actual, 0);
		wins += rs[i].wins;
		losses += rs[i].losses;
		/* Each win is the event stored at the version it was told. */
		for (j = 0; j < rs[i].wins; j++) {
			const evs_event *ev =
				evs_event_list_get(list, (size_t)rs[i].won[j]);

			ck_assert_ptr_nonnull(ev);
			ck_assert(evs_uuid_equal(evs_event_id(ev),
			                         &rs[i].won_id[j]));
		}
	}
	ck_assert_int_eq(wins + losses, threads * tries);
	ck_assert_uint_eq(n, (size_t)wins);
	/* Racing is real: with this many writers some must have lost. */
	ck_assert_int_gt(losses, 0);
	/* No gap, no duplicate: versions 0..n-1, every id once. */
	for (i = 0; i < (int)n; i++) {
		const evs_event *ev = evs_event_list_get(list, (size_t)i);

		ck_assert_int_eq(evs_event_version(ev), i);
		for (j = 0; j < i; j++)
			ck_assert(!evs_uuid_equal(evs_event_id(ev),
			          evs_event_id(evs_event_list_get(list,
			                                          (size_t)j))));
	}
	evs_event_list_free(list);
	free(rs);
	free(th);
}

START_TEST(racing_writers_get_one_winner_per_version)
{
	ct_race(ct_id("raced"), 8, 40);
}
END_TEST

/* ---- reading all streams ----------------------------------------------- */

typedef struct {
	const char *prefix;
	size_t prefix_len;
	char ids[64][96];
	int64_t versions[64];
	evs_position checkpoints[64];
	int n;
	int seen_all;
	int stop_after; /* 0: never */
} all_walk;

static int collect_ours(const evs_event *ev, void *payload)
{
	all_walk *w = payload;

	w->seen_all++;
	if (strncmp(evs_event_aggregate_id(ev), w->prefix, w->prefix_len) == 0 &&
	    w->n < 64) {
		snprintf(w->ids[w->n], sizeof(w->ids[0]), "%s",
		         evs_event_aggregate_id(ev));
		w->versions[w->n] = evs_event_version(ev);
		evs_event_checkpoint(&w->checkpoints[w->n], ev);
		w->n++;
	}
	return w->stop_after && w->seen_all == w->stop_after ? 5 : 0;
}

static int position_after(const evs_position *a, const evs_position *b)
{
	return a->commit > b->commit ||
	       (a->commit == b->commit && a->global > b->global);
}

START_TEST(read_all_gives_every_stream_in_commit_order)
{
	const char *a = ct_id("all-a"), *b = ct_id("all-b"), *c = ct_id("all-c");
	const char *order[7];
	int64_t versions[7] = {0, 1, 0, 2, 0, 1, 2};
	all_walk *w = calloc(1, sizeof(*w));
	evs_position resume, end;
	int i;

	order[0] = order[1] = order[3] = a;
	order[2] = b;
	order[4] = order[5] = order[6] = c;
	w->prefix = ct_id("all-");
	w->prefix_len = strlen(w->prefix);
	ck_assert_int_eq(ct_append_n(a, EVS_NO_VERSION, 0, 2, NULL), 0);
	ck_assert_int_eq(ct_append_one(b, EVS_NO_VERSION, NULL), 0);
	ck_assert_int_eq(ct_append_one(a, 1, NULL), 0);
	ck_assert_int_eq(ct_append_n(c, EVS_NO_VERSION, 0, 3, NULL), 0);
	ck_assert_int_eq(evs_store_read_all(ct_store, NULL, 0, collect_ours, w,
	                                    NULL), 0);
	ck_assert_int_eq(w->n, 7);
	for (i = 0; i < 7; i++) {
		ck_assert_str_eq(w->ids[i], order[i]);
		ck_assert_int_eq(w->versions[i], versions[i]);
		if (i > 0)
			ck_assert(position_after(&w->checkpoints[i],
			                         &w->checkpoints[i - 1]));
	}
	/* One batch, one commit; another append, a later one. */
	ck_assert(w->checkpoints[4].commit == w->checkpoints[6].commit);
	ck_assert(w->checkpoints[3].commit < w->checkpoints[4].commit);

	/* Resuming after the second event reads the rest, and only that:
	 * nothing was written after these streams. */
	resume = w->checkpoints[1];
	end = w->checkpoints[6];
	memset(w->ids, 0, sizeof(w->ids));
	w->n = 0;
	w->seen_all = 0;
	ck_assert_int_eq(evs_store_read_all(ct_store, &resume, 0, collect_ours,
	                                    w, NULL), 0);
	ck_assert_int_eq(w->n, 5);
	ck_assert_int_eq(w->seen_all, 5);
	ck_assert_str_eq(w->ids[0], b);
	/* max_events bounds the read; a callback can stop it. */
	w->n = 0;
	w->seen_all = 0;
	ck_assert_int_eq(evs_store_read_all(ct_store, &resume, 2, collect_ours,
	                                    w, NULL), 0);
	ck_assert_int_eq(w->seen_all, 2);
	ck_assert_str_eq(w->ids[1], a);
	w->n = 0;
	w->seen_all = 0;
	w->stop_after = 3;
	ck_assert_int_eq(evs_store_read_all(ct_store, &resume, 0, collect_ours,
	                                    w, NULL), 5);
	ck_assert_int_eq(w->seen_all, 3);
	/* Past the end: nothing. */
	w->n = 0;
	w->seen_all = 0;
	w->stop_after = 0;
	ck_assert_int_eq(evs_store_read_all(ct_store, &end, 0, collect_ours, w,
	                                    NULL), 0);
	ck_assert_int_eq(w->seen_all, 0);
	free(w);
}
END_TEST

START_TEST(read_all_checks_its_arguments)
{
	evs_error err = EVS_ERROR_INIT;
	evs_position bad = {0, -1};
	all_walk w;

	memset(&w, 0, sizeof(w));
	w.prefix = "";
	ck_assert_int_eq(evs_store_read_all(NULL, NULL, 0, collect_ours, &w,
	                                    &err), EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "store"));
	ck_assert_int_eq(evs_store_read_all(ct_store, NULL, 0, NULL, &w, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "cb"));
	ck_assert_int_eq(evs_store_read_all(ct_store, &bad, 0, collect_ours,
	                                    &w, &err), EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "after"));
	ck_assert_int_eq(w.seen_all, 0);
	evs_error_clear(&err);
}
END_TEST

#define TAIL_WRITERS 4
#define TAIL_EACH 150

typedef struct {
	const char *id;
	int failures;
} tail_writer;

static void *tail_write(void *arg)
{
	tail_writer *w = arg;
	int i;

	for (i = 0; i < TAIL_EACH; i++)
		if (ct_append_one(w->id, i - 1, NULL) != 0)
			w->failures++;
	return NULL;
}

typedef struct {
	const char *prefix;
	size_t prefix_len;
	evs_position at;
	int64_t next_version[TAIL_WRITERS];
	int seen, out_of_order;
	const char *ids[TAIL_WRITERS];
} tailer;

static int tail_cb(const evs_event *ev, void *payload)
{
	tailer *t = payload;
	int i;

	evs_event_checkpoint(&t->at, ev);
	for (i = 0; i < TAIL_WRITERS; i++) {
		if (t->ids[i] == NULL ||
		    strcmp(evs_event_aggregate_id(ev), t->ids[i]) != 0)
			continue;
		/* Each stream's events, once each, in version order. */
		if (evs_event_version(ev) != t->next_version[i])
			t->out_of_order++;
		t->next_version[i] = evs_event_version(ev) + 1;
		t->seen++;
	}
	return 0;
}

START_TEST(a_reader_of_all_streams_never_skips_an_event)
{
	tail_writer ws[TAIL_WRITERS];
	pthread_t th[TAIL_WRITERS];
	char ids[TAIL_WRITERS][96];
	tailer t;
	evs_error err = EVS_ERROR_INIT;
	int i, rounds = 0;

	memset(&t, 0, sizeof(t));
	/* Start after everything already stored. */
	ck_assert_int_eq(evs_store_read_all(ct_store, NULL, 0, tail_cb, &t,
	                                    NULL), 0);
	t.seen = 0;
	for (i = 0; i < TAIL_WRITERS; i++) {
		snprintf(ids[i], sizeof(ids[i]), "%s%d", ct_id("tail-"), i);
		t.ids[i] = ids[i];
		ws[i].id = ids[i];
		ws[i].failures = 0;
		ck_assert_int_eq(pthread_create(&th[i], NULL, tail_write, &ws[i]),
		                 0);
	}
	/* Tail while they write, resuming from the checkpoint each time. */
	while (t.seen < TAIL_WRITERS * TAIL_EACH && rounds < 100000) {
		ck_assert_msg(evs_store_read_all(ct_store, &t.at, 50, tail_cb, &t,
		                                 &err) == 0, "%s", err.message);
		rounds++;
	}
	for (i = 0; i < TAIL_WRITERS; i++) {
		pthread_join(th[i], NULL);
		ck_assert_int_eq(ws[i].failures, 0);
	}
	ck_assert_int_eq(evs_store_read_all(ct_store, &t.at, 0, tail_cb, &t,
	                                    NULL), 0);
	ck_assert_int_eq(t.out_of_order, 0);
	ck_assert_int_eq(t.seen, TAIL_WRITERS * TAIL_EACH);
	evs_error_clear(&err);
}
END_TEST

Suite *contract_suite(const contract_backend *be)
{
	Suite *s = suite_create("contract");
	TCase *tc;

	ct_backend = be;
	tc = tcase_create("versions");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, new_stream_has_no_version);
	tcase_add_test(tc, versions_are_zero_indexed);
	tcase_add_test(tc, n_events_give_version_n_minus_1);
	tcase_add_test(tc, empty_append_is_a_noop);
	suite_add_tcase(s, tc);

	tc = tcase_create("conflicts");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, stale_version_is_a_conflict);
	tcase_add_test(tc, conflict_on_a_missing_stream_reports_minus_one);
	tcase_add_test(tc, version_ahead_of_the_stream_is_a_conflict);
	tcase_add_test(tc, failed_batch_of_100_stores_nothing);
	suite_add_tcase(s, tc);

	tc = tcase_create("loading");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, from_version_is_exclusive);
	tcase_add_test(tc, from_version_below_minus_one_loads_all);
	tcase_add_test(tc, missing_aggregate_loads_empty);
	tcase_add_test(tc, loaded_list_is_the_callers_copy);
	tcase_add_test(tc, streams_are_isolated);
	tcase_add_test(tc, thousand_events_come_back_in_order);
	tcase_add_test(tc, stored_fields_are_filled);
	tcase_add_test(tc, json_values_of_every_kind_round_trip);
	tcase_add_test(tc, global_positions_grow_across_streams);
	tcase_add_test(tc, foreach_streams_in_order_and_stops_when_asked);
	tcase_add_test(tc, foreach_backward_streams_newest_first);
	tcase_add_test(tc, foreach_backward_ends_while_writers_append);
	tcase_add_test(tc, load_last_returns_the_last_n_oldest_first);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("sentinels-and-idempotence");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, any_version_skips_the_check);
	tcase_add_test(tc, stream_exists_needs_an_event);
	tcase_add_test(tc, replayed_append_stores_nothing);
	tcase_add_test(tc, reused_event_id_is_a_duplicate);
	tcase_add_test(tc, append_ext_tells_a_replay_from_an_append);
	tcase_add_test(tc, keep_time_stores_each_events_recorded_time);
	suite_add_tcase(s, tc);

	tc = tcase_create("read-all");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, read_all_gives_every_stream_in_commit_order);
	tcase_add_test(tc, read_all_checks_its_arguments);
	tcase_add_test(tc, a_reader_of_all_streams_never_skips_an_event);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	tc = tcase_create("concurrency");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, racing_writers_get_one_winner_per_version);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);

	ct_add_args_tests(s);
	ct_add_many_tests(s);
	ct_add_lifecycle_tests(s);
	ct_add_snapshot_tests(s);
	ct_add_sub_tests(s);
	return s;
}
