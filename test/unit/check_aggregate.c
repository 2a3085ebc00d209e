/* Aggregates on their own: construction, raising events, applying stored
 * events. The account type lives in fake_backend.c. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evstore/evstore.h>

#include "unit/fake_backend.h"
#include "unit/suites.h"

/* A stored event, as a backend would hand it out. */
static evs_event *stored(const char *aggregate_id, int64_t version,
                         const char *type, const char *data)
{
	evs_uuid id;
	evs_event *ev = NULL;

	ck_assert_int_eq(evs_uuid_generate(&id, NULL), 0);
	ck_assert_int_eq(evs_event_new_stored(&ev, &id, type, data,
	                                      strlen(data), NULL, 0,
	                                      aggregate_id, version,
	                                      version + 1, 1, NULL),
	                 0);
	return ev;
}

static evs_aggregate *new_account(const evs_aggregate_type *type,
                                  const char *id)
{
	evs_aggregate *agg = NULL;

	ck_assert_int_eq(evs_aggregate_new(&agg, type, id, NULL), 0);
	ck_assert_ptr_nonnull(agg);
	return agg;
}

START_TEST(new_starts_empty)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = NULL;
	char id[] = "acc-1";

	ck_assert_int_eq(evs_aggregate_new(&agg, &account_type, id, &err), 0);
	ck_assert_int_eq(err.code, 0);
	id[0] = 'X'; /* the id was copied */
	ck_assert_str_eq(evs_aggregate_id(agg), "acc-1");
	ck_assert_int_eq(evs_aggregate_version(agg), EVS_NO_VERSION);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 0);
	ck_assert_ptr_eq(evs_aggregate_type_of(agg), &account_type);
	ck_assert_ptr_nonnull(account_of(agg));
	ck_assert_int_eq(account_of(agg)->balance, 0);
	ck_assert_int_eq(account_of(agg)->applied, 0);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(create_and_free_run_once)
{
	evs_aggregate_type type;
	account_tally tally;
	evs_aggregate *agg;

	account_type_tallied(&type, &tally);
	agg = new_account(&type, "acc-1");
	ck_assert_int_eq(tally.creates, 1);
	ck_assert_int_eq(tally.frees, 0);
	ck_assert_int_eq(account_raise(agg, "deposited", 5, NULL), 0);
	evs_aggregate_free(agg);
	ck_assert_int_eq(tally.creates, 1);
	ck_assert_int_eq(tally.frees, 1);
}
END_TEST

START_TEST(new_rejects_bad_arguments)
{
	static const char *const bad_ids[] = {
		"", "tab\there", "del\x7f", "bad\xff", "c1\xc2\x85",
	};
	evs_error err = EVS_ERROR_INIT;
	static char sentinel;
	evs_aggregate *agg = (evs_aggregate *)(void *)&sentinel;
	char long_id[EVS_ID_MAX + 2];
	size_t i;

	ck_assert_int_eq(evs_aggregate_new(NULL, &account_type, "a", &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(err.code, EVS_EINVALID);
	ck_assert_ptr_nonnull(err.message);

	ck_assert_int_eq(evs_aggregate_new(&agg, NULL, "a", &err),
	                 EVS_EINVALID);
	ck_assert_ptr_null(agg);
	ck_assert_ptr_nonnull(strstr(err.message, "type"));

	ck_assert_int_eq(evs_aggregate_new(&agg, &account_type, NULL, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_null(agg);
	ck_assert_ptr_nonnull(strstr(err.message, "aggregate_id"));

	for (i = 0; i < sizeof(bad_ids) / sizeof(bad_ids[0]); i++) {
		ck_assert_int_eq(evs_aggregate_new(&agg, &account_type,
		                                   bad_ids[i], &err),
		                 EVS_EINVALID);
		ck_assert_ptr_null(agg);
		ck_assert_int_eq(err.code, EVS_EINVALID);
	}

	memset(long_id, 'a', sizeof(long_id) - 1);
	long_id[sizeof(long_id) - 1] = '\0';
	ck_assert_int_eq(evs_aggregate_new(&agg, &account_type, long_id, &err),
	                 EVS_EINVALID);
	long_id[EVS_ID_MAX] = '\0'; /* exactly the limit is fine */
	ck_assert_int_eq(evs_aggregate_new(&agg, &account_type, long_id, &err),
	                 0);
	ck_assert_int_eq(err.code, 0);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_checks_the_type)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate_type type;
	evs_aggregate *agg = NULL;

	type = account_type;
	type.version = 0;
	ck_assert_int_eq(evs_aggregate_new(&agg, &type, "a", &err),
	                 EVS_EUNSUPPORTED);
	ck_assert_ptr_null(agg);
	ck_assert_ptr_nonnull(strstr(err.message, "\"account\""));

	type.version = EVS_AGGREGATE_TYPE_VERSION + 1;
	ck_assert_int_eq(evs_aggregate_new(&agg, &type, "a", &err),
	                 EVS_EUNSUPPORTED);

	type = account_type;
	type.create = NULL;
	ck_assert_int_eq(evs_aggregate_new(&agg, &type, "a", &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "\"create\""));
	type = account_type;
	type.apply = NULL;
	ck_assert_int_eq(evs_aggregate_new(&agg, &type, "a", &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "\"apply\""));
	type = account_type;
	type.free = NULL;
	ck_assert_int_eq(evs_aggregate_new(&agg, &type, "a", &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "\"free\""));
	ck_assert_ptr_null(agg);

	/* The name is optional. */
	type = account_type;
	type.name = NULL;
	ck_assert_int_eq(evs_aggregate_new(&agg, &type, "a", &err), 0);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_passes_create_failure)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate_type type;
	account_tally tally;
	evs_aggregate *agg = NULL;

	account_type_tallied(&type, &tally);
	tally.create_rc = EVS_ENOMEM;
	ck_assert_int_eq(evs_aggregate_new(&agg, &type, "a", &err),
	                 EVS_ENOMEM);
	ck_assert_ptr_null(agg);
	ck_assert_int_eq(err.code, EVS_ENOMEM);
	ck_assert_str_eq(err.message, "account create refused");
	ck_assert_int_eq(tally.creates, 1);
	ck_assert_int_eq(tally.frees, 0); /* no state was made */
	/* Without an error record as well. */
	ck_assert_int_eq(evs_aggregate_new(&agg, &type, "a", NULL),
	                 EVS_ENOMEM);
	ck_assert_ptr_null(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(raise_applies_and_queues)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = new_account(&account_type, "acc-1");
	evs_event *const *pending;

	ck_assert_int_eq(account_raise(agg, "deposited", 5, &err), 0);
	ck_assert_int_eq(account_raise(agg, "deposited", 7, &err), 0);
	ck_assert_int_eq(account_raise(agg, "withdrawn", 2, &err), 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_int_eq(account_of(agg)->balance, 10);
	ck_assert_int_eq(account_of(agg)->applied, 3);
	/* Raised, not saved: the version stays. */
	ck_assert_int_eq(evs_aggregate_version(agg), EVS_NO_VERSION);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 3);
	pending = evs_aggregate_pending(agg);
	ck_assert_ptr_nonnull(pending);
	ck_assert_str_eq(evs_event_type(pending[0]), "deposited");
	ck_assert_str_eq(evs_event_data_json(pending[0]), "{\"amount\":5}");
	ck_assert_str_eq(evs_event_data_json(pending[1]), "{\"amount\":7}");
	ck_assert_str_eq(evs_event_type(pending[2]), "withdrawn");
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(raise_many_keeps_order)
{
	evs_aggregate *agg = new_account(&account_type, "acc-1");
	evs_event *const *pending;
	char want[32];
	int i;

	for (i = 0; i < 100; i++)
		ck_assert_int_eq(account_raise(agg, "deposited", i, NULL), 0);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 100);
	ck_assert_int_eq(account_of(agg)->balance, 99 * 100 / 2);
	pending = evs_aggregate_pending(agg);
	for (i = 0; i < 100; i++) {
		snprintf(want, sizeof(want), "{\"amount\":%d}", i);
		ck_assert_str_eq(evs_event_data_json(pending[i]), want);
	}
	evs_aggregate_free(agg);
}
END_TEST

START_TEST(raise_failure_queues_nothing)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = new_account(&account_type, "acc-1");
	evs_event *ev = NULL;

	ck_assert_int_eq(account_raise(agg, "deposited", 5, &err), 0);

	/* Refused by apply: its code and message come back. */
	ck_assert_int_eq(account_raise(agg, "withdrawn", 6, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(err.code, EVS_EINVALID);
	ck_assert_str_eq(err.message, "insufficient funds");
	ck_assert_int_eq(evs_event_new_json(&ev, "closed", "{\"amount\":1}",
	                                    NULL, NULL),
	                 0);
	ck_assert_int_eq(evs_aggregate_raise(agg, ev, &err), EVS_EINVALID);
	ck_assert_str_eq(err.message, "unknown event type \"closed\"");

	ck_assert_int_eq(account_of(agg)->balance, 5);
	ck_assert_int_eq(account_of(agg)->applied, 1);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 1);
	ck_assert_str_eq(evs_event_data_json(evs_aggregate_pending(agg)[0]),
	                 "{\"amount\":5}");

	/* A later success clears the record. */
	ck_assert_int_eq(account_raise(agg, "withdrawn", 5, &err), 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_ptr_null(err.message);
	ck_assert_int_eq(account_of(agg)->balance, 0);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 2);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(raise_takes_the_event_on_failure)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = new_account(&account_type, "acc-1");
	evs_event *ev = NULL;

	/* Leak checkers (valgrind, ASan) see any event not freed here. */
	ck_assert_int_eq(evs_event_new_json(&ev, "deposited", "{}", NULL,
	                                    NULL),
	                 0);
	ck_assert_int_eq(evs_aggregate_raise(NULL, ev, &err), EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "aggregate"));
	ck_assert_int_eq(evs_aggregate_raise(agg, NULL, &err), EVS_EINVALID);
	ck_assert_int_eq(evs_event_new_json(&ev, "deposited", "{}", NULL,
	                                    NULL),
	                 0);
	ck_assert_int_eq(evs_aggregate_raise(agg, ev, NULL), EVS_EINVALID);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 0);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(raise_refuses_a_queued_id)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate_type type;
	account_tally tally;
	evs_aggregate *agg;
	evs_event *ev = NULL, *copy = NULL;

	account_type_tallied(&type, &tally);
	agg = new_account(&type, "acc-1");
	ck_assert_int_eq(evs_event_new_json(&ev, "deposited", "{\"amount\":3}",
	                                    NULL, NULL),
	                 0);
	ck_assert_int_eq(evs_event_dup(&copy, ev, NULL), 0);
	ck_assert_int_eq(evs_aggregate_raise(agg, ev, &err), 0);
	ck_assert_int_eq(evs_aggregate_raise(agg, copy, &err), EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "already queued"));
	/* Refused before apply: the state saw it once. */
	ck_assert_int_eq(tally.applies, 1);
	ck_assert_int_eq(account_of(agg)->balance, 3);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 1);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(raise_new_checks_its_arguments)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = new_account(&account_type, "acc-1");

	ck_assert_int_eq(evs_aggregate_raise_new(NULL, "deposited", NULL, NULL,
	                                         &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_aggregate_raise_new(agg, "", NULL, NULL, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_aggregate_raise_new(agg, NULL, NULL, NULL, &err),
	                 EVS_EINVALID);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 0);
	ck_assert_int_eq(account_of(agg)->applied, 0);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(apply_stored_moves_the_version)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = new_account(&account_type, "acc-1");
	evs_event *ev0 = stored("acc-1", 0, "deposited", "{\"amount\":4}");
	evs_event *ev1 = stored("acc-1", 1, "deposited", "{\"amount\":6}");

	ck_assert_int_eq(evs_aggregate_apply_stored(agg, ev0, &err), 0);
	ck_assert_int_eq(evs_aggregate_version(agg), 0);
	ck_assert_int_eq(evs_aggregate_apply_stored(agg, ev1, &err), 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_int_eq(evs_aggregate_version(agg), 1);
	ck_assert_int_eq(account_of(agg)->balance, 10);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 0);
	evs_event_free(ev0);
	evs_event_free(ev1);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(apply_stored_wants_the_next_version)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = new_account(&account_type, "acc-1");
	evs_event *ev0 = stored("acc-1", 0, "deposited", "{\"amount\":4}");
	evs_event *ev2 = stored("acc-1", 2, "deposited", "{\"amount\":6}");
	evs_event *fresh = NULL;

	ck_assert_int_eq(evs_aggregate_apply_stored(agg, ev2, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "version 2"));
	ck_assert_int_eq(evs_aggregate_apply_stored(agg, ev0, &err), 0);
	/* The same version twice, and a gap. */
	ck_assert_int_eq(evs_aggregate_apply_stored(agg, ev0, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_aggregate_apply_stored(agg, ev2, &err),
	                 EVS_EINVALID);
	/* An event that was never stored has no version. */
	ck_assert_int_eq(evs_event_new_json(&fresh, "deposited",
	                                    "{\"amount\":1}", NULL, NULL),
	                 0);
	ck_assert_int_eq(evs_aggregate_apply_stored(agg, fresh, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_aggregate_version(agg), 0);
	ck_assert_int_eq(account_of(agg)->balance, 4);
	ck_assert_int_eq(account_of(agg)->applied, 1);
	evs_event_free(ev0);
	evs_event_free(ev2);
	evs_event_free(fresh);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(apply_stored_wants_this_aggregate)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = new_account(&account_type, "acc-1");
	evs_event *other = stored("acc-2", 0, "deposited", "{\"amount\":4}");

	ck_assert_int_eq(evs_aggregate_apply_stored(agg, other, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "\"acc-2\""));
	ck_assert_int_eq(evs_aggregate_version(agg), EVS_NO_VERSION);
	ck_assert_int_eq(account_of(agg)->applied, 0);
	evs_event_free(other);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(apply_stored_refused_with_a_queue)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = new_account(&account_type, "acc-1");
	evs_event *ev0 = stored("acc-1", 0, "deposited", "{\"amount\":4}");

	ck_assert_int_eq(account_raise(agg, "deposited", 1, NULL), 0);
	ck_assert_int_eq(evs_aggregate_apply_stored(agg, ev0, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "unsaved"));
	ck_assert_int_eq(evs_aggregate_version(agg), EVS_NO_VERSION);
	ck_assert_int_eq(account_of(agg)->balance, 1);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 1);
	evs_event_free(ev0);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(apply_stored_failure_keeps_the_version)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = new_account(&account_type, "acc-1");
	evs_event *bad = stored("acc-1", 0, "withdrawn", "{\"amount\":4}");

	ck_assert_int_eq(evs_aggregate_apply_stored(agg, bad, &err),
	                 EVS_EINVALID);
	ck_assert_str_eq(err.message, "insufficient funds");
	ck_assert_int_eq(evs_aggregate_version(agg), EVS_NO_VERSION);
	ck_assert_int_eq(account_of(agg)->balance, 0);
	ck_assert_int_eq(evs_aggregate_apply_stored(NULL, bad, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_aggregate_apply_stored(agg, NULL, &err),
	                 EVS_EINVALID);
	evs_event_free(bad);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(null_aggregate_accessors)
{
	evs_aggregate_free(NULL);
	ck_assert_ptr_null(evs_aggregate_id(NULL));
	ck_assert_int_eq(evs_aggregate_version(NULL), EVS_NO_VERSION);
	ck_assert_ptr_null(evs_aggregate_state(NULL));
	ck_assert_ptr_null(evs_aggregate_type_of(NULL));
	ck_assert_uint_eq(evs_aggregate_pending_count(NULL), 0);
	ck_assert_ptr_null(evs_aggregate_pending(NULL));
}
END_TEST

Suite *aggregate_suite(void)
{
	Suite *s = suite_create("aggregate");
	TCase *tc = tcase_create("core");

	tcase_add_test(tc, new_starts_empty);
	tcase_add_test(tc, create_and_free_run_once);
	tcase_add_test(tc, new_rejects_bad_arguments);
	tcase_add_test(tc, new_checks_the_type);
	tcase_add_test(tc, new_passes_create_failure);
	tcase_add_test(tc, raise_applies_and_queues);
	tcase_add_test(tc, raise_many_keeps_order);
	tcase_add_test(tc, raise_failure_queues_nothing);
	tcase_add_test(tc, raise_takes_the_event_on_failure);
	tcase_add_test(tc, raise_refuses_a_queued_id);
	tcase_add_test(tc, raise_new_checks_its_arguments);
	tcase_add_test(tc, apply_stored_moves_the_version);
	tcase_add_test(tc, apply_stored_wants_the_next_version);
	tcase_add_test(tc, apply_stored_wants_this_aggregate);
	tcase_add_test(tc, apply_stored_refused_with_a_queue);
	tcase_add_test(tc, apply_stored_failure_keeps_the_version);
	tcase_add_test(tc, null_aggregate_accessors);
	suite_add_tcase(s, tc);
	return s;
}
