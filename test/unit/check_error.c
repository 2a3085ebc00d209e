/* Unit tests for error records: EVS_ERROR_INIT and evs_error_clear(),
 * evs_strerror(), evs_error_set() and evs_error_set_conflict(), and the
 * message style every library message follows. */
#include <check.h>
#include <ctype.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <evstore/evstore.h>

#include "unit/suites.h"
#include "common/testutil.h"

#define ASSERT_NAMES(err, word)                                             \
	ck_assert_msg(tu_names((err).message, (word)),                          \
	              "message \"%s\" does not name \"%s\"",                 \
	              (err).message ? (err).message : "(null)", (word))

/* The record is back to EVS_ERROR_INIT. */
#define ASSERT_CLEAN(err)                                                   \
	do {                                                                 \
		ck_assert_int_eq((err).code, 0);                             \
		ck_assert_str_eq((err).sqlstate, "");                        \
		ck_assert_ptr_null((err).message);                           \
		ck_assert_ptr_null((err).detail);                            \
		ck_assert_ptr_null((err).aggregate_id);                      \
		ck_assert_int_eq((err).expected_version, 0);                 \
		ck_assert_int_eq((err).actual_version, 0);                   \
	} while (0)

/* Message style (STYLE.md §5): one line, lower-case start, no final
 * period or newline. */
#define ASSERT_STYLE(msg)                                                   \
	do {                                                                 \
		const char *m_ = (msg);                                      \
		size_t l_;                                                   \
		ck_assert_ptr_nonnull(m_);                                   \
		l_ = strlen(m_);                                             \
		ck_assert_msg(l_ > 0, "empty message");                      \
		ck_assert_msg(!isupper((unsigned char)m_[0]),                \
		              "message starts upper-case: \"%s\"", m_);      \
		ck_assert_msg(m_[l_ - 1] != '.' && !isspace((unsigned char)m_[l_ - 1]), \
		              "message ends in a period or space: \"%s\"", m_); \
		ck_assert_msg(strchr(m_, '\n') == NULL &&                    \
		              strchr(m_, '\r') == NULL,                      \
		              "message is not one line: \"%s\"", m_);        \
	} while (0)

START_TEST(init_then_clear_fresh_record)
{
	evs_error err = EVS_ERROR_INIT;

	ASSERT_CLEAN(err);
	ck_assert_uint_eq(err.owned_, 0);
	evs_error_clear(&err);
	ASSERT_CLEAN(err);
	evs_error_clear(&err); /* twice is fine */
	ASSERT_CLEAN(err);
	evs_error_clear(NULL);
}
END_TEST

START_TEST(clear_resets_a_filled_record)
{
	evs_error err = EVS_ERROR_INIT;

	evs_error_set_conflict(&err, "order-1", 3, 5);
	ck_assert_int_eq(err.code, EVS_ECONFLICT);
	evs_error_clear(&err);
	ASSERT_CLEAN(err);
	evs_error_set(&err, EVS_EDB, "40001", "could not serialize");
	evs_error_clear(&err);
	ASSERT_CLEAN(err);
}
END_TEST

/* Each call that takes the record first clears what an earlier one left;
 * valgrind and ASan catch the leak if it does not free. */
START_TEST(reused_record_has_the_second_message)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = NULL;

	ck_assert_int_eq(evs_event_new_json(&ev, NULL, "{}", NULL, &err),
	                 EVS_EINVALID);
	ASSERT_NAMES(err, "type");
	ck_assert_int_eq(evs_event_new_json(&ev, "t", "{", NULL, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(err.code, EVS_EINVALID);
	ASSERT_NAMES(err, "data");
	ck_assert_msg(!tu_names(err.message, "type"), "stale message: \"%s\"",
	              err.message);
	ck_assert_ptr_null(ev);
	evs_error_clear(&err);
}
END_TEST

START_TEST(reused_record_through_set_and_conflict)
{
	evs_error err = EVS_ERROR_INIT;

	evs_error_set_conflict(&err, "first-aggregate", 1, 2);
	evs_error_set(&err, EVS_ERROR, NULL, "second %d", 2);
	ck_assert_int_eq(err.code, EVS_ERROR);
	ck_assert_str_eq(err.message, "second 2");
	ck_assert_ptr_null(err.aggregate_id);
	ck_assert_int_eq(err.expected_version, 0);
	ck_assert_int_eq(err.actual_version, 0);
	evs_error_set_conflict(&err, "third", 7, 9);
	ck_assert_str_eq(err.aggregate_id, "third");
	ck_assert_int_eq(err.expected_version, 7);
	ck_assert_int_eq(err.actual_version, 9);
	evs_error_set_conflict(&err, "fourth", 0, -1);
	ck_assert_str_eq(err.aggregate_id, "fourth");
	evs_error_clear(&err);
	ASSERT_CLEAN(err);
}
END_TEST

START_TEST(success_after_failure_leaves_a_clean_record)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = NULL;

	ck_assert_int_eq(evs_event_new_json(&ev, "", "{}", NULL, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(err.message);
	ck_assert_int_eq(evs_event_new_json(&ev, "t", "{}", NULL, &err), 0);
	ck_assert_ptr_nonnull(ev);
	ASSERT_CLEAN(err);
	evs_event_free(ev);
	evs_error_clear(&err);
}
END_TEST

static const int all_codes[] = {
	EVS_OK,          EVS_ERROR,        EVS_ENOMEM,       EVS_EINVALID,
	EVS_ENOTFOUND,   EVS_ECONFLICT,    EVS_EDB,          EVS_EUNSUPPORTED,
	EVS_EUNAVAILABLE, EVS_ETIMEOUT,    EVS_EDUPLICATE,   EVS_ESCHEMA,
	EVS_ECONFIG,     EVS_ELEASE,       EVS_EREWOUND,     EVS_ENOTSTORED,
	EVS_EDELETED,
};
#define N_CODES (sizeof(all_codes) / sizeof(all_codes[0]))

START_TEST(strerror_describes_every_code)
{
	const char *unknown = evs_strerror(12345);
	size_t i, j;

	ck_assert_ptr_nonnull(unknown);
	for (i = 0; i < N_CODES; i++) {
		const char *s = evs_strerror(all_codes[i]);

		ck_assert_ptr_nonnull(s);
		ASSERT_STYLE(s);
		ck_assert_msg(strcmp(s, unknown) != 0,
		              "code %d described as unknown (\"%s\")",
		              all_codes[i], s);
		for (j = 0; j < i; j++)
			ck_assert_msg(strcmp(s, evs_strerror(all_codes[j])) != 0,
			              "codes %d and %d share \"%s\"",
			              all_codes[i], all_codes[j], s);
	}
	/* The header's own example. */
	ck_assert_str_eq(evs_strerror(EVS_ECONFLICT), "version conflict");
}
END_TEST

START_TEST(strerror_unknown_codes)
{
	static const int unknown[] = {1, 2, -17, -100, 4711, INT_MIN, INT_MAX};
	const char *first = evs_strerror(unknown[0]);
	size_t i;

	ck_assert_ptr_nonnull(first);
	ASSERT_STYLE(first);
	for (i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
		const char *s = evs_strerror(unknown[i]);

		ck_assert_ptr_nonnull(s);
		ck_assert_str_eq(s, first);
	}
}
END_TEST

START_TEST(conflict_record_fields_and_message)
{
	evs_error err = EVS_ERROR_INIT;
	char id[] = "order-17";

	ck_assert_int_eq(evs_error_set_conflict(&err, id, 4, 6),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(err.code, EVS_ECONFLICT);
	ck_assert_str_eq(err.message,
	                 "conflict appending events for aggregate \"order-17\": "
	                 "expected version 4, but current version is 6");
	ck_assert_str_eq(err.sqlstate, "");
	ck_assert_ptr_null(err.detail);
	ck_assert_ptr_nonnull(err.aggregate_id);
	ck_assert_str_eq(err.aggregate_id, "order-17");
	/* Copied, not borrowed. */
	ck_assert_ptr_ne(err.aggregate_id, id);
	id[0] = 'X';
	ck_assert_str_eq(err.aggregate_id, "order-17");
	ck_assert_int_eq(err.expected_version, 4);
	ck_assert_int_eq(err.actual_version, 6);
	ASSERT_STYLE(err.message);
	evs_error_clear(&err);
	ASSERT_CLEAN(err);
}
END_TEST

START_TEST(conflict_on_an_empty_stream_reports_minus_one)
{
	evs_error err = EVS_ERROR_INIT;

	evs_error_set_conflict(&err, "cart-9", 0, EVS_NO_VERSION);
	ck_assert_str_eq(err.message,
	                 "conflict appending events for aggregate \"cart-9\": "
	                 "expected version 0, but current version is -1");
	ck_assert_int_eq(err.expected_version, 0);
	ck_assert_int_eq(err.actual_version, -1);
	evs_error_clear(&err);
}
END_TEST

START_TEST(conflict_with_large_versions)
{
	evs_error err = EVS_ERROR_INIT;

	evs_error_set_conflict(&err, "big", INT64_MAX - 1, 5000000000LL);
	ck_assert_str_eq(err.message,
	                 "conflict appending events for aggregate \"big\": "
	                 "expected version 9223372036854775806, but current "
	                 "version is 5000000000");
	ck_assert_int_eq(err.expected_version, INT64_MAX - 1);
	ck_assert_int_eq(err.actual_version, 5000000000LL);
	evs_error_clear(&err);
}
END_TEST

/* EVS_STREAM_EXISTS conflicts with an empty stream: the record keeps the
 * sentinel, and the message still says the actual version. */
START_TEST(conflict_with_a_sentinel)
{
	static const char head[] =
		"conflict appending events for aggregate \"s\": expected ";
	static const char tail[] = ", but current version is -1";
	evs_error err = EVS_ERROR_INIT;
	size_t len;

	evs_error_set_conflict(&err, "s", EVS_STREAM_EXISTS, EVS_NO_VERSION);
	ck_assert_int_eq(err.code, EVS_ECONFLICT);
	ck_assert_int_eq(err.expected_version, EVS_STREAM_EXISTS);
	ck_assert_int_eq(err.actual_version, EVS_NO_VERSION);
	ck_assert_str_eq(err.aggregate_id, "s");
	len = strlen(err.message);
	ck_assert_int_eq(strncmp(err.message, head, strlen(head)), 0);
	ck_assert_uint_gt(len, strlen(head) + strlen(tail));
	ck_assert_str_eq(err.message + len - strlen(tail), tail);
	ASSERT_STYLE(err.message);
	evs_error_clear(&err);
}
END_TEST

START_TEST(null_record_only_gets_the_code)
{
	ck_assert_int_eq(evs_error_set_conflict(NULL, "x", 1, 2),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(evs_error_set(NULL, EVS_EDB, "40001", "x %d", 1),
	                 EVS_EDB);
	ck_assert_int_eq(evs_error_set(NULL, EVS_ETIMEOUT, NULL, "y"),
	                 EVS_ETIMEOUT);
}
END_TEST

START_TEST(set_with_sqlstate)
{
	evs_error err = EVS_ERROR_INIT;

	ck_assert_int_eq(evs_error_set(&err, EVS_EDB, "40001",
	                               "could not serialize access (%d)", 3),
	                 EVS_EDB);
	ck_assert_int_eq(err.code, EVS_EDB);
	ck_assert_str_eq(err.sqlstate, "40001");
	ck_assert_str_eq(err.message, "could not serialize access (3)");
	ck_assert_ptr_null(err.detail);
	ck_assert_ptr_null(err.aggregate_id);
	/* The next call without a SQLSTATE leaves none behind. */
	evs_error_set(&err, EVS_ERROR, NULL, "other");
	ck_assert_str_eq(err.sqlstate, "");
	ck_assert_str_eq(err.message, "other");
	/* Only five characters are kept, NUL-terminated. */
	evs_error_set(&err, EVS_EDB, "23505xyz", "duplicate key");
	ck_assert_str_eq(err.sqlstate, "23505");
	evs_error_clear(&err);
	ASSERT_CLEAN(err);
}
END_TEST

START_TEST(set_formats_like_printf)
{
	evs_error err = EVS_ERROR_INIT;
	char big[2001];

	evs_error_set(&err, EVS_EINVALID, NULL, "%s is %lld, not %zu",
	              "\"x\"", (long long)-4, (size_t)7);
	ck_assert_str_eq(err.message, "\"x\" is -4, not 7");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	evs_error_set(&err, EVS_ERROR, NULL, "long %s", big);
	ck_assert_uint_eq(strlen(err.message), 5 + sizeof(big) - 1);
	evs_error_clear(&err);
}
END_TEST

/* Collects messages from many failing calls and checks their style. */
START_TEST(library_messages_follow_the_style)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = NULL, *evs[2];
	evs_event_list *list = NULL;
	evs_store *store = NULL;
	json_object *one = json_object_new_int(1);
	evs_uuid id, nil;
	int64_t v;

	memset(&nil, 0, sizeof(nil));
#define CHECK_MSG(call, want)                                               \
	do {                                                                 \
		ck_assert_int_eq((call), (want));                            \
		ck_assert_int_eq(err.code, (want));                          \
		ASSERT_STYLE(err.message);                                   \
	} while (0)

	CHECK_MSG(evs_event_new_json(&ev, NULL, "{}", NULL, &err),
	          EVS_EINVALID);
	CHECK_MSG(evs_event_new_json(&ev, "", "{}", NULL, &err), EVS_EINVALID);
	CHECK_MSG(evs_event_new_json(&ev, "a\x01", "{}", NULL, &err),
	          EVS_EINVALID);
	CHECK_MSG(evs_event_new_json(&ev, "\xc3\x28", "{}", NULL, &err),
	          EVS_EINVALID);
	CHECK_MSG(evs_event_new_json(&ev, "t", NULL, NULL, &err),
	          EVS_EINVALID);
	CHECK_MSG(evs_event_new_json(&ev, "t", "{", NULL, &err), EVS_EINVALID);
	CHECK_MSG(evs_event_new_json(&ev, "t", "1 2", NULL, &err),
	          EVS_EINVALID);
	CHECK_MSG(evs_event_new_json(&ev, "t", "{}", "[1]", &err),
	          EVS_EINVALID);
	CHECK_MSG(evs_event_new(&ev, "t", NULL, one, &err), EVS_EINVALID);
	CHECK_MSG(evs_uuid_parse(&id, "nope", &err), EVS_EINVALID);
	CHECK_MSG(evs_store_new(&store, NULL, &err), EVS_EINVALID);
	CHECK_MSG(evs_store_append(NULL, NULL, "a", EVS_NO_VERSION, NULL, 0,
	                           &err),
	          EVS_EINVALID);
	CHECK_MSG(evs_store_load(NULL, NULL, "a", EVS_NO_VERSION, &err),
	          EVS_EINVALID);
	CHECK_MSG(evs_error_set_conflict(&err, "order-17", 4, 6),
	          EVS_ECONFLICT);

	ck_assert_int_eq(evs_store_open_memory(&store, &err), 0);
	CHECK_MSG(evs_store_current_version(&v, store, "none", &err),
	          EVS_ENOTFOUND);
	CHECK_MSG(evs_store_append(NULL, store, "a", -4, NULL, 0, &err),
	          EVS_EINVALID);
	ck_assert_int_eq(evs_event_new_json(&evs[0], "t", "1", NULL, &err), 0);
	ck_assert_int_eq(evs_event_new_json(&evs[1], "t", "2", NULL, &err), 0);
	CHECK_MSG(evs_event_set_id(evs[1], &nil, &err), EVS_EINVALID);
	ck_assert_int_eq(evs_event_set_id(evs[1], evs_event_id(evs[0]), &err),
	                 0);
	CHECK_MSG(evs_store_append(NULL, store, "a", EVS_NO_VERSION, evs, 2,
	                           &err),
	          EVS_EINVALID);
	CHECK_MSG(evs_store_append(NULL, store, "a", 3, evs, 1, &err),
	          EVS_ECONFLICT);
	ck_assert_int_eq(evs_store_load(&list, store, "a", EVS_NO_VERSION,
	                                &err),
	                 0);
	ck_assert_uint_eq(evs_event_list_count(list), 0);
#undef CHECK_MSG
	json_object_put(one);
	evs_event_list_free(list);
	evs_event_free(evs[0]);
	evs_event_free(evs[1]);
	evs_store_free(store);
	evs_error_clear(&err);
}
END_TEST

/* The conflict record filled by a real store, not by the helper. */
START_TEST(conflict_record_from_the_memory_store)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	evs_event *ev = NULL;

	ck_assert_int_eq(evs_store_open_memory(&store, NULL), 0);
	ck_assert_int_eq(evs_event_new_json(&ev, "t", "{}", NULL, NULL), 0);
	ck_assert_int_eq(evs_store_append(NULL, store, "order-17",
	                                  EVS_NO_VERSION, &ev, 1, &err),
	                 0);
	evs_event_free(ev);
	ck_assert_int_eq(evs_event_new_json(&ev, "t", "{}", NULL, NULL), 0);
	ck_assert_int_eq(evs_store_append(NULL, store, "order-17", 4, &ev, 1,
	                                  &err),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(err.code, EVS_ECONFLICT);
	ck_assert_str_eq(err.aggregate_id, "order-17");
	ck_assert_int_eq(err.expected_version, 4);
	ck_assert_int_eq(err.actual_version, 0);
	ck_assert_str_eq(err.message,
	                 "conflict appending events for aggregate \"order-17\": "
	                 "expected version 4, but current version is 0");
	evs_event_free(ev);
	evs_store_free(store);
	evs_error_clear(&err);
}
END_TEST

Suite *error_suite(void)
{
	Suite *s = suite_create("error");
	TCase *tc;

	tc = tcase_create("record");
	tcase_add_test(tc, init_then_clear_fresh_record);
	tcase_add_test(tc, clear_resets_a_filled_record);
	tcase_add_test(tc, reused_record_has_the_second_message);
	tcase_add_test(tc, reused_record_through_set_and_conflict);
	tcase_add_test(tc, success_after_failure_leaves_a_clean_record);
	tcase_add_test(tc, null_record_only_gets_the_code);
	suite_add_tcase(s, tc);

	tc = tcase_create("strerror");
	tcase_add_test(tc, strerror_describes_every_code);
	tcase_add_test(tc, strerror_unknown_codes);
	suite_add_tcase(s, tc);

	tc = tcase_create("set");
	tcase_add_test(tc, conflict_record_fields_and_message);
	tcase_add_test(tc, conflict_on_an_empty_stream_reports_minus_one);
	tcase_add_test(tc, conflict_with_large_versions);
	tcase_add_test(tc, conflict_with_a_sentinel);
	tcase_add_test(tc, set_with_sqlstate);
	tcase_add_test(tc, set_formats_like_printf);
	tcase_add_test(tc, conflict_record_from_the_memory_store);
	suite_add_tcase(s, tc);

	tc = tcase_create("style");
	tcase_add_test(tc, library_messages_follow_the_style);
	suite_add_tcase(s, tc);
	return s;
}
