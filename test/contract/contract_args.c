/* The store contract, item "bad input": NULL where a value is needed, an
 * empty, over-long or invalid UTF-8 id or type, data that is not JSON, an
 * expected version below -1 that is not a documented sentinel: each gets
 * EVS_EINVALID with a message naming the argument, and nothing is stored.
 * Also: ids that are awkward for SQL or C round-trip verbatim.
 *
 * Public API only, through ct_store; every aggregate id comes from ct_id()
 * (except the NULL and empty ones, which are never stored anywhere). */
#include <stdlib.h>
#include <string.h>

#include "contract/contract_int.h"
#include "common/testutil.h"

/* rc and err say EVS_EINVALID, and the message names `what`. */
#define ASSERT_EINVALID(rc, err, what)                                      \
	do {                                                                 \
		int rc_ = (rc);                                              \
		ck_assert_msg(rc_ == EVS_EINVALID, "got %d (%s), not "       \
		              "EVS_EINVALID naming %s", rc_,                 \
		              (err).message ? (err).message : "-", (what));  \
		ck_assert_int_eq((err).code, EVS_EINVALID);                  \
		ck_assert_msg(tu_names((err).message, (what)),                  \
		              "message \"%s\" does not name \"%s\"",         \
		              (err).message ? (err).message : "(null)",      \
		              (what));                                       \
	} while (0)

/* ct_id() rotates through 16 buffers: keep ids the test holds on to. */
static char *own_id(const char *base)
{
	char *id = strdup(ct_id(base));

	ck_assert_ptr_nonnull(id);
	return id;
}

/* An id of exactly len bytes: the backend's prefix, then 'x's. */
static char *id_of_length(size_t len)
{
	size_t plen = strlen(ct_id(""));
	char *base, *id;

	ck_assert_uint_lt(plen, len);
	base = malloc(len - plen + 1);
	ck_assert_ptr_nonnull(base);
	memset(base, 'x', len - plen);
	base[len - plen] = '\0';
	id = own_id(base);
	free(base);
	ck_assert_uint_eq(strlen(id), len);
	return id;
}

/* A stream holding exactly one event, so a failed call can be seen to
 * leave it at one. */
static char *stream_with_one(const char *base)
{
	char *id = own_id(base);

	ck_assert_int_eq(ct_append_one(id, EVS_NO_VERSION, NULL), 0);
	ck_assert_uint_eq(ct_count(id), 1);
	return id;
}

static int count_cb(const evs_event *ev, void *payload)
{
	(void)ev;
	(*(int *)payload)++;
	return 0;
}

/* ---- NULL store -------------------------------------------------------- */

START_TEST(append_to_null_store)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-null-store");
	evs_event *ev = ct_event("tested", 1);
	int64_t v;

	ASSERT_EINVALID(evs_store_append(&v, NULL, id, 0, &ev, 1, &err), err,
	                "store");
	ck_assert_uint_eq(ct_count(id), 1);
	evs_event_free(ev);
	free(id);
	evs_error_clear(&err);
}
END_TEST

START_TEST(load_from_null_store)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-null-store");
	evs_event_list *list = (evs_event_list *)(void *)&err;

	ASSERT_EINVALID(evs_store_load(&list, NULL, id, EVS_NO_VERSION, &err),
	                err, "store");
	ck_assert_ptr_null(list);
	free(id);
	evs_error_clear(&err);
}
END_TEST

START_TEST(foreach_on_null_store)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-null-store");
	int seen = 0;

	ASSERT_EINVALID(evs_store_foreach(NULL, id, EVS_NO_VERSION, count_cb,
	                                  &seen, &err),
	                err, "store");
	ck_assert_int_eq(seen, 0);
	free(id);
	evs_error_clear(&err);
}
END_TEST

START_TEST(current_version_of_null_store)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-null-store");
	int64_t v;

	ASSERT_EINVALID(evs_store_current_version(&v, NULL, id, &err), err,
	                "store");
	free(id);
	evs_error_clear(&err);
}
END_TEST

/* ---- aggregate ids ----------------------------------------------------- */

/* Every call that takes an aggregate id refuses `id`, naming it. */
static void assert_id_refused(const char *id)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = ct_event("tested", 1);
	evs_event_list *list = NULL;
	int64_t v;
	int seen = 0;

	ASSERT_EINVALID(evs_store_append(NULL, ct_store, id, EVS_NO_VERSION,
	                                 &ev, 1, &err),
	                err, "aggregate_id");
	ASSERT_EINVALID(evs_store_append(NULL, ct_store, id, EVS_ANY_VERSION,
	                                 &ev, 1, &err),
	                err, "aggregate_id");
	ASSERT_EINVALID(evs_store_load(&list, ct_store, id, EVS_NO_VERSION,
	                               &err),
	                err, "aggregate_id");
	ck_assert_ptr_null(list);
	ASSERT_EINVALID(evs_store_foreach(ct_store, id, EVS_NO_VERSION,
	                                  count_cb, &seen, &err),
	                err, "aggregate_id");
	ck_assert_int_eq(seen, 0);
	ASSERT_EINVALID(evs_store_foreach_backward(ct_store, id,
	                                           EVS_END_VERSION, 0,
	                                           count_cb, &seen, &err),
	                err, "aggregate_id");
	ck_assert_int_eq(seen, 0);
	ASSERT_EINVALID(evs_store_load_last(&list, ct_store, id, 1, &err), err,
	                "aggregate_id");
	ck_assert_ptr_null(list);
	ASSERT_EINVALID(evs_store_current_version(&v, ct_store, id, &err), err,
	                "aggregate_id");
	evs_event_free(ev);
	evs_error_clear(&err);
}

START_TEST(null_id)
{
	assert_id_refused(NULL);
}
END_TEST

START_TEST(empty_id)
{
	assert_id_refused("");
}
END_TEST

/* 256 bytes is refused; nothing lands under its first 255 bytes either
 * (a backend that truncates would put it there). */
START_TEST(id_of_256_bytes)
{
	char *id = id_of_length(EVS_ID_MAX + 1);
	char *truncated = strdup(id);

	ck_assert_ptr_nonnull(truncated);
	truncated[EVS_ID_MAX] = '\0';
	assert_id_refused(id);
	ck_assert_uint_eq(ct_count(truncated), 0);
	free(truncated);
	free(id);
}
END_TEST

START_TEST(id_of_255_bytes)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = id_of_length(EVS_ID_MAX);
	evs_event_list *list = NULL;
	int64_t v = 12345;

	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 2, &err), 0);
	ck_assert_int_eq(evs_store_load(&list, ct_store, id, EVS_NO_VERSION,
	                                &err),
	                 0);
	ck_assert_uint_eq(evs_event_list_count(list), 2);
	ck_assert_str_eq(evs_event_aggregate_id(evs_event_list_get(list, 0)),
	                 id);
	ck_assert_str_eq(evs_event_aggregate_id(evs_event_list_get(list, 1)),
	                 id);
	ck_assert_int_eq(evs_store_current_version(&v, ct_store, id, &err), 0);
	ck_assert_int_eq(v, 1);
	evs_event_list_free(list);
	free(id);
	evs_error_clear(&err);
}
END_TEST

/* 255 bytes made of multi-byte characters is fine too. */
START_TEST(id_of_255_bytes_multibyte)
{
	char base[EVS_ID_MAX + 1];
	size_t plen = strlen(ct_id("")), i = 0;
	evs_event_list *list = NULL;
	char *id;

	while (plen + i + 3 <= EVS_ID_MAX) {
		memcpy(base + i, "\xe6\x9d\xb1", 3); /* 東 */
		i += 3;
	}
	while (plen + i < EVS_ID_MAX)
		base[i++] = 'x';
	base[i] = '\0';
	id = own_id(base);
	ck_assert_uint_eq(strlen(id), EVS_ID_MAX);
	ck_assert_int_eq(ct_append_one(id, EVS_NO_VERSION, NULL), 0);
	ck_assert_int_eq(evs_store_load(&list, ct_store, id, EVS_NO_VERSION,
	                                NULL),
	                 0);
	ck_assert_uint_eq(evs_event_list_count(list), 1);
	ck_assert_str_eq(evs_event_aggregate_id(evs_event_list_get(list, 0)),
	                 id);
	evs_event_list_free(list);
	free(id);
}
END_TEST

static const char *const invalid_utf8_ids[] = {
	"args-\xc3\x28",         /* bad continuation */
	"args-\xff",
	"args-\x80",             /* lone continuation */
	"args-\xc0\xaf",         /* overlong */
	"args-\xed\xa0\x80",     /* surrogate */
	"args-\xf4\x90\x80\x80", /* past U+10FFFF */
	"args-\xe6\x9d",         /* truncated at the end */
	"args-\xe6\x9d-more",    /* truncated in the middle */
};

/* Nothing lands under the valid part either (a backend that stops at the
 * first bad byte would put it there). */
START_TEST(invalid_utf8_id)
{
	char *id = own_id(invalid_utf8_ids[_i]);

	assert_id_refused(id);
	ck_assert_uint_eq(ct_count(ct_id("args-")), 0);
	free(id);
}
END_TEST

static const char *const control_ids[] = {
	"args-a\nb", "args-\x01", "args-a\x7f", "args-\t", "args-\r",
	"args-\x1b[0m", "args-\xc2\x85", "args-\xc2\x9f",
};

START_TEST(control_characters_in_id)
{
	char *id = own_id(control_ids[_i]);

	assert_id_refused(id);
	free(id);
}
END_TEST

/* ---- events ------------------------------------------------------------ */

START_TEST(null_events_with_a_count)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-null-events");

	ASSERT_EINVALID(evs_store_append(NULL, ct_store, id, 0, NULL, 2, &err),
	                err, "events");
	ASSERT_EINVALID(evs_store_append(NULL, ct_store, id, EVS_ANY_VERSION,
	                                 NULL, 1, &err),
	                err, "events");
	ck_assert_uint_eq(ct_count(id), 1);
	free(id);
	evs_error_clear(&err);
}
END_TEST

/* The first element is fine, the second NULL: nothing of the batch is
 * stored, on an existing stream or on a new one. */
START_TEST(null_event_in_a_batch)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-null-event");
	char *fresh = own_id("args-null-event-fresh");
	evs_event *evs[3];
	int64_t v;

	evs[0] = ct_event("tested", 1);
	evs[1] = NULL;
	evs[2] = ct_event("tested", 3);
	ASSERT_EINVALID(evs_store_append(NULL, ct_store, id, 0, evs, 3, &err),
	                err, "events");
	ck_assert_uint_eq(ct_count(id), 1);
	ASSERT_EINVALID(evs_store_append(NULL, ct_store, fresh, EVS_NO_VERSION,
	                                 evs, 3, &err),
	                err, "events");
	ck_assert_uint_eq(ct_count(fresh), 0);
	ck_assert_int_eq(evs_store_current_version(&v, ct_store, fresh, NULL),
	                 EVS_ENOTFOUND);
	/* The same events, whole, still go in afterwards. */
	evs[1] = ct_event("tested", 2);
	ck_assert_int_eq(evs_store_append(NULL, ct_store, id, 0, evs, 3, &err),
	                 0);
	ck_assert_uint_eq(ct_count(id), 4);
	evs_event_free(evs[0]);
	evs_event_free(evs[1]);
	evs_event_free(evs[2]);
	free(fresh);
	free(id);
	evs_error_clear(&err);
}
END_TEST

START_TEST(same_event_id_twice_in_a_batch)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-dup-ids");
	evs_event *evs[3];
	evs_uuid first;

	evs[0] = ct_event("tested", 1);
	evs[1] = ct_event("tested", 2);
	evs[2] = ct_event("tested", 3);
	first = *evs_event_id(evs[0]);
	ck_assert_int_eq(evs_event_set_id(evs[1], &first, NULL), 0);
	ASSERT_EINVALID(evs_store_append(NULL, ct_store, id, 0, evs, 2, &err),
	                err, "events");
	ck_assert_uint_eq(ct_count(id), 1);
	ASSERT_EINVALID(evs_store_append(NULL, ct_store, id, EVS_ANY_VERSION,
	                                 evs, 2, &err),
	                err, "events");
	ck_assert_uint_eq(ct_count(id), 1);
	evs_event_free(evs[1]);
	evs[1] = ct_event("tested", 2);
	/* Not neighbours: the first and the last. */
	ck_assert_int_eq(evs_event_set_id(evs[2], &first, NULL), 0);
	ASSERT_EINVALID(evs_store_append(NULL, ct_store, id, 0, evs, 3, &err),
	                err, "events");
	ck_assert_uint_eq(ct_count(id), 1);
	/* The very same event twice. */
	evs_event_free(evs[2]);
	evs[2] = evs[0];
	ASSERT_EINVALID(evs_store_append(NULL, ct_store, id, 0, evs, 3, &err),
	                err, "events");
	ck_assert_uint_eq(ct_count(id), 1);
	evs_event_free(evs[0]);
	evs_event_free(evs[1]);
	free(id);
	evs_error_clear(&err);
}
END_TEST

/* ---- expected versions ------------------------------------------------- */

static const int64_t bad_expected[] = {-4, -5, -100, INT64_MIN + 1,
                                       INT64_MIN};

START_TEST(expected_version_below_the_sentinels)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-expected");
	char *fresh = own_id("args-expected-fresh");
	evs_event *ev = ct_event("tested", 1);
	int64_t v;

	ASSERT_EINVALID(evs_store_append(NULL, ct_store, id, bad_expected[_i],
	                                 &ev, 1, &err),
	                err, "expected_version");
	ck_assert_uint_eq(ct_count(id), 1);
	ASSERT_EINVALID(evs_store_append(NULL, ct_store, fresh,
	                                 bad_expected[_i], &ev, 1, &err),
	                err, "expected_version");
	ck_assert_uint_eq(ct_count(fresh), 0);
	ck_assert_int_eq(evs_store_current_version(&v, ct_store, fresh, NULL),
	                 EVS_ENOTFOUND);
	evs_event_free(ev);
	free(fresh);
	free(id);
	evs_error_clear(&err);
}
END_TEST

/* The versions would run past INT64_MAX. */
START_TEST(expected_version_with_no_room_left)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-expected-max");

	ASSERT_EINVALID(ct_append_one(id, INT64_MAX, &err), err,
	                "expected_version");
	ck_assert_uint_eq(ct_count(id), 1);
	ASSERT_EINVALID(ct_append_n(id, INT64_MAX - 1, 0, 2, &err), err,
	                "expected_version");
	ck_assert_uint_eq(ct_count(id), 1);
	ASSERT_EINVALID(ct_append_n(id, INT64_MAX - 2, 0, 3, &err), err,
	                "expected_version");
	ck_assert_uint_eq(ct_count(id), 1);
	free(id);
	evs_error_clear(&err);
}
END_TEST

/* Just inside the range: a plain conflict, not bad input. */
START_TEST(expected_version_at_the_edge_is_a_conflict)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-expected-edge");

	ck_assert_int_eq(ct_append_one(id, INT64_MAX - 1, &err),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(err.expected_version, INT64_MAX - 1);
	ck_assert_int_eq(err.actual_version, 0);
	ck_assert_int_eq(ct_append_n(id, INT64_MAX - 3, 0, 3, &err),
	                 EVS_ECONFLICT);
	ck_assert_uint_eq(ct_count(id), 1);
	free(id);
	evs_error_clear(&err);
}
END_TEST

/* -1, -2 and -3 are the documented sentinels, not bad input. */
START_TEST(sentinels_are_not_bad_input)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = own_id("args-sentinels");

	ck_assert_int_eq(ct_append_one(id, EVS_NO_VERSION, &err), 0);
	ck_assert_int_eq(ct_append_one(id, EVS_ANY_VERSION, &err), 0);
	ck_assert_int_eq(ct_append_one(id, EVS_STREAM_EXISTS, &err), 0);
	ck_assert_uint_eq(ct_count(id), 3);
	free(id);
	evs_error_clear(&err);
}
END_TEST

/* ---- foreach ----------------------------------------------------------- */

START_TEST(foreach_without_callback)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-foreach");
	int seen = 0;

	ASSERT_EINVALID(evs_store_foreach(ct_store, id, EVS_NO_VERSION, NULL,
	                                  &seen, &err),
	                err, "cb");
	ck_assert_uint_eq(ct_count(id), 1);
	free(id);
	evs_error_clear(&err);
}
END_TEST

START_TEST(backward_reads_refuse_bad_arguments)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-backward");
	evs_event_list *list = (evs_event_list *)&err; /* must become NULL */
	int seen = 0;

	ASSERT_EINVALID(evs_store_foreach_backward(ct_store, id,
	                                           EVS_END_VERSION, 0, NULL,
	                                           &seen, &err),
	                err, "cb");
	ASSERT_EINVALID(evs_store_foreach_backward(NULL, id, EVS_END_VERSION,
	                                           0, count_cb, &seen, &err),
	                err, "store");
	ASSERT_EINVALID(evs_store_load_last(NULL, ct_store, id, 1, &err), err,
	                "out");
	ASSERT_EINVALID(evs_store_load_last(&list, ct_store, id, 0, &err), err,
	                "n");
	ck_assert_ptr_null(list);
	ASSERT_EINVALID(evs_store_load_last(&list, NULL, id, 1, &err), err,
	                "store");
	ck_assert_int_eq(seen, 0);
	ck_assert_uint_eq(ct_count(id), 1);
	free(id);
	evs_error_clear(&err);
}
END_TEST

/* ---- type, data, metadata ---------------------------------------------- */

/* Bad events cannot be built, so they cannot be stored: each constructor
 * refuses, naming the argument, and the stream stays as it was. */
START_TEST(bad_type_data_or_metadata)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-event");
	char type256[EVS_ID_MAX + 2];
	json_object *arr = json_object_new_array();
	evs_event *ev = NULL;

	memset(type256, 't', EVS_ID_MAX + 1);
	type256[EVS_ID_MAX + 1] = '\0';

	ASSERT_EINVALID(evs_event_new_json(&ev, NULL, "{}", NULL, &err), err,
	                "type");
	ASSERT_EINVALID(evs_event_new_json(&ev, "", "{}", NULL, &err), err,
	                "type");
	ASSERT_EINVALID(evs_event_new_json(&ev, type256, "{}", NULL, &err),
	                err, "type");
	ASSERT_EINVALID(evs_event_new_json(&ev, "\xc3\x28", "{}", NULL, &err),
	                err, "type");
	ASSERT_EINVALID(evs_event_new_json(&ev, "a\x01", "{}", NULL, &err), err,
	                "type");
	ASSERT_EINVALID(evs_event_new_json(&ev, "t", NULL, NULL, &err), err,
	                "data");
	ASSERT_EINVALID(evs_event_new_json(&ev, "t", "{", NULL, &err), err,
	                "data");
	ASSERT_EINVALID(evs_event_new_json(&ev, "t", "1 2", NULL, &err), err,
	                "data");
	ASSERT_EINVALID(evs_event_new_json(&ev, "t", "NaN", NULL, &err), err,
	                "data");
	ASSERT_EINVALID(evs_event_new_json(&ev, "t", "{}", "[1]", &err), err,
	                "metadata");
	ASSERT_EINVALID(evs_event_new_json(&ev, "t", "{}", "{", &err), err,
	                "metadata");
	ASSERT_EINVALID(evs_event_new(&ev, "t", NULL, arr, &err), err,
	                "metadata");
	ck_assert_ptr_null(ev);
	ck_assert_uint_eq(ct_count(id), 1);
	json_object_put(arr);
	free(id);
	evs_error_clear(&err);
}
END_TEST

/* ---- awkward ids round-trip verbatim ------------------------------------ */

static const char *const awkward_ids[] = {
	"args-\"quoted\"",
	"args-'single'",
	"args-O'Brien",
	"args-back\\slash",
	"args-\\\\two",
	"args-'; DROP TABLE x; --",
	"args-\"); DROP TABLE x; --",
	"args-Z\xc3\xbcrich-\xe6\x9d\xb1\xe4\xba\xac-\xf0\x9f\x9a\x80",
	"args-100%",
	"args-a_b",
	"args-$1",
	"args-:name",
	"args-?",
	"args-{\"json\": [1]}",
	"args-NULL",
	"args- spaced ",
	"args-\xc2\xa0nbsp",
	"args-\xef\xbb\xbf" "bom",
};

START_TEST(awkward_id_round_trips)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = own_id(awkward_ids[_i]);
	evs_event_list *list = NULL;
	int64_t v = 12345;
	size_t i;

	ck_assert_int_eq(ct_append_n(id, EVS_NO_VERSION, 0, 2, &err), 0);
	ck_assert_int_eq(ct_append_one(id, 1, &err), 0);
	ck_assert_int_eq(evs_store_load(&list, ct_store, id, EVS_NO_VERSION,
	                                &err),
	                 0);
	ck_assert_uint_eq(evs_event_list_count(list), 3);
	for (i = 0; i < 3; i++) {
		const evs_event *e = evs_event_list_get(list, i);

		ck_assert_str_eq(evs_event_aggregate_id(e), id);
		ck_assert_int_eq(evs_event_version(e), (int64_t)i);
	}
	ck_assert_int_eq(evs_store_current_version(&v, ct_store, id, &err), 0);
	ck_assert_int_eq(v, 2);
	/* The conflict record carries it verbatim too. */
	ck_assert_int_eq(ct_append_one(id, 0, &err), EVS_ECONFLICT);
	ck_assert_str_eq(err.aggregate_id, id);
	evs_event_list_free(list);
	free(id);
	evs_error_clear(&err);
}
END_TEST

/* Ids are compared byte for byte: no case folding, no trimming, no
 * pattern matching, no normalisation. */
START_TEST(ids_are_distinct_byte_for_byte)
{
	static const char *const others[] = {
		"args-Order",  "args-order ",  "args-order\\", "args-order%",
		"args-orde_",  "args-orde%",   "args-ORDER",   " args-order",
		"args-\xc3\x96rder",
	};
	char *id = own_id("args-order");
	size_t i;

	ck_assert_int_eq(ct_append_one(id, EVS_NO_VERSION, NULL), 0);
	for (i = 0; i < sizeof(others) / sizeof(others[0]); i++)
		ck_assert_msg(ct_count(ct_id(others[i])) == 0,
		              "\"%s\" sees the events of \"%s\"", others[i],
		              "args-order");
	/* U+00E9 precomposed and e + U+0301 are different ids. */
	ck_assert_int_eq(ct_append_one(ct_id("args-caf\xc3\xa9"),
	                               EVS_NO_VERSION, NULL),
	                 0);
	ck_assert_uint_eq(ct_count(ct_id("args-cafe\xcc\x81")), 0);
	ck_assert_uint_eq(ct_count(id), 1);
	free(id);
}
END_TEST

/* ---- evs_store_append_ext's flags ------------------------------------------ */

START_TEST(append_ext_refuses_bad_flags)
{
	evs_error err = EVS_ERROR_INIT;
	char *id = stream_with_one("args-flags");
	evs_event *evs[2] = {ct_event("tested", 1), ct_event("tested", 2)};
	evs_append_result r = {-100, -100};

	ck_assert_int_eq(evs_event_set_recorded_at(evs[0], 1000, NULL), 0);
	ck_assert_int_eq(evs_event_set_recorded_at(evs[1], 2000, NULL), 0);
	ASSERT_EINVALID(evs_store_append_ext(&r, ct_store, id, 0, evs, 2, 2u,
	                                     &err),
	                err, "flags");
	ASSERT_EINVALID(evs_store_append_ext(&r, ct_store, id, 0, evs, 2,
	                                     EVS_APPEND_KEEP_TIME | 0x100u,
	                                     &err),
	                err, "flags");
	/* Keeping times needs an exact version... */
	ASSERT_EINVALID(evs_store_append_ext(&r, ct_store, id, EVS_ANY_VERSION,
	                                     evs, 2, EVS_APPEND_KEEP_TIME,
	                                     &err),
	                err, "expected_version");
	ASSERT_EINVALID(evs_store_append_ext(&r, ct_store, id,
	                                     EVS_STREAM_EXISTS, evs, 2,
	                                     EVS_APPEND_KEEP_TIME, &err),
	                err, "expected_version");
	/* ... and a time on every event. */
	evs_event_free(evs[1]);
	evs[1] = ct_event("tested", 3);
	ASSERT_EINVALID(evs_store_append_ext(&r, ct_store, id, 0, evs, 2,
	                                     EVS_APPEND_KEEP_TIME, &err),
	                err, "events[1]");
	ck_assert_int_eq(r.version, -100);
	ck_assert_uint_eq(ct_count(id), 1);
	/* Out of PostgreSQL's range, a time is refused when it is set. */
	ASSERT_EINVALID(evs_event_set_recorded_at(evs[1],
	                                          -210866803200000001LL, &err),
	                err, "micros");
	ASSERT_EINVALID(evs_event_set_recorded_at(evs[1], INT64_MAX, &err),
	                err, "micros");
	ASSERT_EINVALID(evs_event_set_recorded_at(NULL, 0, &err), err,
	                "event");
	evs_event_free(evs[0]);
	evs_event_free(evs[1]);
	free(id);
	evs_error_clear(&err);
}
END_TEST

void ct_add_args_tests(Suite *s)
{
	TCase *tc;

	tc = tcase_create("args-store");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, append_to_null_store);
	tcase_add_test(tc, load_from_null_store);
	tcase_add_test(tc, foreach_on_null_store);
	tcase_add_test(tc, current_version_of_null_store);
	suite_add_tcase(s, tc);

	tc = tcase_create("args-id");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, null_id);
	tcase_add_test(tc, empty_id);
	tcase_add_test(tc, id_of_256_bytes);
	tcase_add_test(tc, id_of_255_bytes);
	tcase_add_test(tc, id_of_255_bytes_multibyte);
	tcase_add_loop_test(tc, invalid_utf8_id, 0,
	                    (int)(sizeof(invalid_utf8_ids) /
	                          sizeof(invalid_utf8_ids[0])));
	tcase_add_loop_test(tc, control_characters_in_id, 0,
	                    (int)(sizeof(control_ids) / sizeof(control_ids[0])));
	suite_add_tcase(s, tc);

	tc = tcase_create("args-events");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, null_events_with_a_count);
	tcase_add_test(tc, null_event_in_a_batch);
	tcase_add_test(tc, same_event_id_twice_in_a_batch);
	tcase_add_loop_test(tc, expected_version_below_the_sentinels, 0,
	                    (int)(sizeof(bad_expected) / sizeof(bad_expected[0])));
	tcase_add_test(tc, expected_version_with_no_room_left);
	tcase_add_test(tc, expected_version_at_the_edge_is_a_conflict);
	tcase_add_test(tc, sentinels_are_not_bad_input);
	tcase_add_test(tc, foreach_without_callback);
	tcase_add_test(tc, backward_reads_refuse_bad_arguments);
	tcase_add_test(tc, bad_type_data_or_metadata);
	tcase_add_test(tc, append_ext_refuses_bad_flags);
	suite_add_tcase(s, tc);

	tc = tcase_create("args-ids-round-trip");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_loop_test(tc, awkward_id_round_trips, 0,
	                    (int)(sizeof(awkward_ids) / sizeof(awkward_ids[0])));
	tcase_add_test(tc, ids_are_distinct_byte_for_byte);
	suite_add_tcase(s, tc);
}
