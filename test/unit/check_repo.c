/* The repository: load by replay, save with the version check, and the
 * load-decide-save loop that retries on conflicts. Runs on the fake
 * backend (fake_backend.c), which wraps the in-memory one. */
#include <check.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <evstore/evstore.h>

#include "unit/fake_backend.h"
#include "unit/suites.h"

static evs_store *store;
static fake_backend *fake;
static evs_repo *repo;

static void setup(void)
{
	ck_assert_int_eq(fake_store_open(&store, &fake, NULL), 0);
	ck_assert_int_eq(evs_repo_new(&repo, store, &account_type, NULL), 0);
	fake->inject_type = "deposited";
	fake->inject_data = "{\"amount\":100}";
}

static void teardown(void)
{
	evs_repo_free(repo);
	evs_store_free(store);
	repo = NULL;
	store = NULL;
	fake = NULL;
}

static void reset_counts(void)
{
	fake->appends = 0;
	fake->reads = 0;
	fake->heads = 0;
}

/* Appends deposits of 1, 2, ... n to a new stream. */
static void seed(const char *id, int n)
{
	int i;

	for (i = 0; i < n; i++)
		ck_assert_int_eq(account_append(store, id, i - 1, "deposited",
		                                i + 1, NULL),
		                 0);
	reset_counts();
}

static int64_t stored_version(const char *id)
{
	int64_t version = 12345;
	int rc = evs_store_current_version(&version, store, id, NULL);

	ck_assert(rc == 0 || rc == EVS_ENOTFOUND);
	return version;
}

static evs_aggregate *load_ok(const char *id)
{
	evs_aggregate *agg = NULL;

	ck_assert_int_eq(evs_repo_load(&agg, repo, id, NULL), 0);
	ck_assert_ptr_nonnull(agg);
	return agg;
}

/* ---- decide callbacks ---- */

typedef struct command {
	int64_t amount; /* deposited when > 0 */
	int ret;        /* returned after raising */
	int calls;
	int64_t seen_version; /* the aggregate's version at the last call */
} command;

static int decide_deposit(evs_aggregate *agg, void *payload, evs_error *err)
{
	command *cmd = payload;
	int rc;

	cmd->calls++;
	cmd->seen_version = evs_aggregate_version(agg);
	if (cmd->amount > 0 &&
	    (rc = account_raise(agg, "deposited", cmd->amount, err)) != 0)
		return rc;
	if (cmd->ret < 0)
		return evs_error_set(err, cmd->ret, NULL, "command refused");
	return cmd->ret;
}

/* Fails without describing why. */
static int decide_mute_failure(evs_aggregate *agg, void *payload,
                               evs_error *err)
{
	(void)agg;
	(void)payload;
	(void)err;
	return EVS_ERROR;
}

/* ---- repository ---- */

START_TEST(repo_new_checks_its_arguments)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate_type type = account_type;
	static char sentinel;
	evs_repo *r = (evs_repo *)(void *)&sentinel;

	ck_assert_int_eq(evs_repo_new(NULL, store, &account_type, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_repo_new(&r, NULL, &account_type, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_null(r);
	ck_assert_ptr_nonnull(strstr(err.message, "store"));
	ck_assert_int_eq(evs_repo_new(&r, store, NULL, &err), EVS_EINVALID);
	ck_assert_ptr_null(r);
	type.version = 0;
	ck_assert_int_eq(evs_repo_new(&r, store, &type, &err),
	                 EVS_EUNSUPPORTED);
	type = account_type;
	type.apply = NULL;
	ck_assert_int_eq(evs_repo_new(&r, store, &type, &err), EVS_EINVALID);
	ck_assert_ptr_null(r);
	evs_repo_free(NULL);
	evs_error_clear(&err);
}
END_TEST

/* ---- load ---- */

START_TEST(load_replays_the_stream)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = NULL;

	seed("acc-1", 3);
	seed("acc-2", 1);
	ck_assert_int_eq(evs_repo_load(&agg, repo, "acc-1", &err), 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_str_eq(evs_aggregate_id(agg), "acc-1");
	ck_assert_int_eq(evs_aggregate_version(agg), 2);
	ck_assert_int_eq(account_of(agg)->balance, 1 + 2 + 3);
	ck_assert_int_eq(account_of(agg)->applied, 3);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 0);
	ck_assert_ptr_eq(evs_aggregate_type_of(agg), &account_type);
	ck_assert_int_eq(fake->reads, 1);
	ck_assert_int_eq(fake->appends, 0);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(load_replays_a_long_stream)
{
	evs_aggregate *agg;
	int i;

	/* Longer than any read chunk a backend might use. */
	for (i = 0; i < 1000; i++) {
		const char *type = i % 2 ? "withdrawn" : "deposited";

		ck_assert_int_eq(account_append(store, "acc-1", i - 1, type,
		                                i % 2 ? 1 : 2, NULL),
		                 0);
	}
	agg = load_ok("acc-1");
	ck_assert_int_eq(evs_aggregate_version(agg), 999);
	ck_assert_int_eq(account_of(agg)->balance, 500);
	ck_assert_int_eq(account_of(agg)->applied, 1000);
	evs_aggregate_free(agg);
}
END_TEST

START_TEST(load_missing_is_not_found)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate_type type;
	account_tally tally;
	evs_repo *r = NULL;
	static char sentinel;
	evs_aggregate *agg = (evs_aggregate *)(void *)&sentinel;

	account_type_tallied(&type, &tally);
	ck_assert_int_eq(evs_repo_new(&r, store, &type, NULL), 0);
	seed("acc-2", 1);
	ck_assert_int_eq(evs_repo_load(&agg, r, "acc-1", &err),
	                 EVS_ENOTFOUND);
	ck_assert_ptr_null(agg);
	ck_assert_int_eq(err.code, EVS_ENOTFOUND);
	ck_assert_str_eq(err.message, "aggregate \"acc-1\" not found");
	/* The empty instance was made and freed again. */
	ck_assert_int_eq(tally.creates, 1);
	ck_assert_int_eq(tally.frees, 1);
	ck_assert_int_eq(evs_repo_load(&agg, r, "acc-1", NULL), EVS_ENOTFOUND);
	evs_repo_free(r);
	evs_error_clear(&err);
}
END_TEST

START_TEST(load_stops_at_the_first_apply_error)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate_type type;
	account_tally tally;
	evs_repo *r = NULL;
	evs_aggregate *agg = NULL;

	/* The store takes any event; the account refuses the second. */
	ck_assert_int_eq(account_append(store, "acc-1", -1, "deposited", 5,
	                                NULL),
	                 0);
	ck_assert_int_eq(account_append(store, "acc-1", 0, "withdrawn", 10,
	                                NULL),
	                 0);
	ck_assert_int_eq(account_append(store, "acc-1", 1, "deposited", 1,
	                                NULL),
	                 0);
	account_type_tallied(&type, &tally);
	ck_assert_int_eq(evs_repo_new(&r, store, &type, NULL), 0);
	ck_assert_int_eq(evs_repo_load(&agg, r, "acc-1", &err), EVS_EINVALID);
	ck_assert_ptr_null(agg);
	ck_assert_int_eq(err.code, EVS_EINVALID);
	ck_assert_str_eq(err.message, "insufficient funds");
	ck_assert_int_eq(tally.applies, 2);
	ck_assert_int_eq(tally.creates, 1);
	ck_assert_int_eq(tally.frees, 1);
	evs_repo_free(r);
	evs_error_clear(&err);
}
END_TEST

START_TEST(load_passes_store_errors)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = NULL;

	seed("acc-1", 2);
	fake->fail_reads = 1;
	fake->fail_code = EVS_EUNAVAILABLE;
	ck_assert_int_eq(evs_repo_load(&agg, repo, "acc-1", &err),
	                 EVS_EUNAVAILABLE);
	ck_assert_ptr_null(agg);
	ck_assert_int_eq(err.code, EVS_EUNAVAILABLE);
	ck_assert_str_eq(err.message, "injected read failure");
	/* And it is not sticky. */
	agg = load_ok("acc-1");
	ck_assert_int_eq(evs_aggregate_version(agg), 1);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(load_checks_its_arguments)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = NULL;

	seed("acc-1", 1);
	ck_assert_int_eq(evs_repo_load(NULL, repo, "acc-1", &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_repo_load(&agg, NULL, "acc-1", &err),
	                 EVS_EINVALID);
	ck_assert_ptr_null(agg);
	ck_assert_int_eq(evs_repo_load(&agg, repo, NULL, &err), EVS_EINVALID);
	ck_assert_ptr_null(agg);
	ck_assert_int_eq(evs_repo_load(&agg, repo, "", &err), EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "aggregate_id"));
	ck_assert_int_eq(fake->reads, 0);
	evs_error_clear(&err);
}
END_TEST

/* ---- save ---- */

START_TEST(save_appends_and_moves_the_version)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = NULL, *again;

	ck_assert_int_eq(evs_aggregate_new(&agg, &account_type, "acc-1", NULL),
	                 0);
	ck_assert_int_eq(account_raise(agg, "deposited", 10, NULL), 0);
	ck_assert_int_eq(account_raise(agg, "withdrawn", 3, NULL), 0);
	ck_assert_int_eq(evs_repo_save(repo, agg, &err), 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_int_eq(evs_aggregate_version(agg), 1);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 0);
	ck_assert_int_eq(account_of(agg)->balance, 7);
	ck_assert_int_eq(fake->appends, 1);
	ck_assert_int_eq(stored_version("acc-1"), 1);

	/* The next save goes on from there. */
	ck_assert_int_eq(account_raise(agg, "deposited", 5, NULL), 0);
	ck_assert_int_eq(evs_repo_save(repo, agg, &err), 0);
	ck_assert_int_eq(evs_aggregate_version(agg), 2);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 0);
	ck_assert_int_eq(stored_version("acc-1"), 2);

	again = load_ok("acc-1");
	ck_assert_int_eq(evs_aggregate_version(again), 2);
	ck_assert_int_eq(account_of(again)->balance, 12);
	evs_aggregate_free(again);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(save_after_load)
{
	evs_aggregate *agg, *again;

	seed("acc-1", 3);
	agg = load_ok("acc-1");
	ck_assert_int_eq(account_raise(agg, "withdrawn", 6, NULL), 0);
	ck_assert_int_eq(evs_repo_save(repo, agg, NULL), 0);
	ck_assert_int_eq(evs_aggregate_version(agg), 3);
	again = load_ok("acc-1");
	ck_assert_int_eq(evs_aggregate_version(again), 3);
	ck_assert_int_eq(account_of(again)->balance, 0);
	evs_aggregate_free(again);
	evs_aggregate_free(agg);
}
END_TEST

START_TEST(save_with_nothing_queued_skips_the_store)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg, *fresh = NULL;

	seed("acc-1", 2);
	agg = load_ok("acc-1");
	ck_assert_int_eq(evs_repo_save(repo, agg, &err), 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_int_eq(evs_aggregate_version(agg), 1);
	ck_assert_int_eq(evs_aggregate_new(&fresh, &account_type, "acc-9",
	                                   NULL),
	                 0);
	ck_assert_int_eq(evs_repo_save(repo, fresh, &err), 0);
	ck_assert_int_eq(evs_aggregate_version(fresh), EVS_NO_VERSION);
	ck_assert_int_eq(fake->appends, 0);
	ck_assert_int_eq(stored_version("acc-9"), EVS_NO_VERSION);
	evs_aggregate_free(fresh);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(save_conflict_leaves_the_aggregate)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg;
	evs_event *first;
	evs_uuid first_id;

	seed("acc-1", 1);
	agg = load_ok("acc-1");
	ck_assert_int_eq(account_raise(agg, "deposited", 5, NULL), 0);
	ck_assert_int_eq(account_raise(agg, "deposited", 6, NULL), 0);
	first = evs_aggregate_pending(agg)[0];
	first_id = *evs_event_id(first);

	/* Another writer gets in first. */
	ck_assert_int_eq(account_append(store, "acc-1", 0, "withdrawn", 1,
	                                NULL),
	                 0);
	reset_counts();
	ck_assert_int_eq(evs_repo_save(repo, agg, &err), EVS_ECONFLICT);
	ck_assert_int_eq(err.code, EVS_ECONFLICT);
	ck_assert_str_eq(err.aggregate_id, "acc-1");
	ck_assert_int_eq(err.expected_version, 0);
	ck_assert_int_eq(err.actual_version, 1);
	ck_assert_ptr_nonnull(err.message);
	ck_assert_int_eq(fake->appends, 1);

	ck_assert_int_eq(evs_aggregate_version(agg), 0);
	ck_assert_int_eq(account_of(agg)->balance, 1 + 5 + 6);
	ck_assert_int_eq(account_of(agg)->applied, 3);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 2);
	ck_assert_ptr_eq(evs_aggregate_pending(agg)[0], first);
	ck_assert(evs_uuid_equal(evs_event_id(evs_aggregate_pending(agg)[0]),
	                         &first_id));
	ck_assert_str_eq(evs_event_data_json(evs_aggregate_pending(agg)[1]),
	                 "{\"amount\":6}");
	ck_assert_int_eq(stored_version("acc-1"), 1);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(save_conflict_on_a_new_aggregate)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg = NULL;

	ck_assert_int_eq(evs_aggregate_new(&agg, &account_type, "acc-1", NULL),
	                 0);
	ck_assert_int_eq(account_raise(agg, "deposited", 5, NULL), 0);
	seed("acc-1", 1);
	ck_assert_int_eq(evs_repo_save(repo, agg, &err), EVS_ECONFLICT);
	ck_assert_int_eq(err.expected_version, EVS_NO_VERSION);
	ck_assert_int_eq(err.actual_version, 0);
	ck_assert_int_eq(evs_aggregate_version(agg), EVS_NO_VERSION);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 1);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(save_failure_leaves_the_aggregate)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate *agg;

	seed("acc-1", 1);
	agg = load_ok("acc-1");
	ck_assert_int_eq(account_raise(agg, "deposited", 5, NULL), 0);
	fake->fail_appends = 1;
	fake->fail_code = EVS_EUNAVAILABLE;
	ck_assert_int_eq(evs_repo_save(repo, agg, &err), EVS_EUNAVAILABLE);
	ck_assert_int_eq(err.code, EVS_EUNAVAILABLE);
	ck_assert_int_eq(evs_aggregate_version(agg), 0);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 1);
	ck_assert_int_eq(account_of(agg)->balance, 6);
	ck_assert_int_eq(stored_version("acc-1"), 0);

	/* The queue survived, so the same save can simply be tried again. */
	ck_assert_int_eq(evs_repo_save(repo, agg, &err), 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_int_eq(evs_aggregate_version(agg), 1);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 0);
	ck_assert_int_eq(stored_version("acc-1"), 1);
	ck_assert_int_eq(fake->appends, 2);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(save_checks_its_arguments)
{
	evs_error err = EVS_ERROR_INIT;
	evs_aggregate_type other = account_type; /* same slots, other type */
	evs_aggregate *agg = NULL;

	ck_assert_int_eq(evs_aggregate_new(&agg, &other, "acc-1", NULL), 0);
	ck_assert_int_eq(account_raise(agg, "deposited", 5, NULL), 0);
	ck_assert_int_eq(evs_repo_save(repo, agg, &err), EVS_EINVALID);
	ck_assert_ptr_nonnull(strstr(err.message, "type"));
	ck_assert_int_eq(evs_repo_save(NULL, agg, &err), EVS_EINVALID);
	ck_assert_int_eq(evs_repo_save(repo, NULL, &err), EVS_EINVALID);
	ck_assert_int_eq(fake->appends, 0);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 1);
	ck_assert_int_eq(evs_aggregate_version(agg), EVS_NO_VERSION);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

/* ---- update ---- */

START_TEST(update_loads_decides_and_saves)
{
	evs_error err = EVS_ERROR_INIT;
	command cmd = {7, 0, 0, 0};
	evs_aggregate *agg = NULL, *again;

	seed("acc-1", 2);
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, 3,
	                                 decide_deposit, &cmd, &err),
	                 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_int_eq(cmd.calls, 1);
	ck_assert_int_eq(cmd.seen_version, 1);
	ck_assert_ptr_nonnull(agg);
	ck_assert_int_eq(evs_aggregate_version(agg), 2);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 0);
	ck_assert_int_eq(account_of(agg)->balance, 1 + 2 + 7);
	ck_assert_int_eq(fake->appends, 1);
	again = load_ok("acc-1");
	ck_assert_int_eq(account_of(again)->balance, 10);
	evs_aggregate_free(again);
	evs_aggregate_free(agg);

	/* out may be NULL. */
	ck_assert_int_eq(evs_repo_update(NULL, repo, "acc-1", 0, 1,
	                                 decide_deposit, &cmd, NULL),
	                 0);
	ck_assert_int_eq(stored_version("acc-1"), 3);
	evs_error_clear(&err);
}
END_TEST

START_TEST(update_retries_after_a_conflict)
{
	evs_error err = EVS_ERROR_INIT;
	command cmd = {5, 0, 0, 0};
	evs_aggregate *agg = NULL;

	seed("acc-1", 1);
	/* Two other writers win the first two rounds; the third is ours. */
	fake->inject_appends = 2;
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, 3,
	                                 decide_deposit, &cmd, &err),
	                 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_ptr_null(err.aggregate_id);
	ck_assert_int_eq(fake->injected, 2);
	ck_assert_int_eq(cmd.calls, 3);
	ck_assert_int_eq(cmd.seen_version, 2); /* the last load saw both */
	ck_assert_int_eq(fake->appends, 3);
	ck_assert_int_eq(fake->reads, 3);
	ck_assert_ptr_nonnull(agg);
	ck_assert_int_eq(evs_aggregate_version(agg), 3);
	ck_assert_int_eq(account_of(agg)->balance, 1 + 100 + 100 + 5);
	ck_assert_uint_eq(evs_aggregate_pending_count(agg), 0);
	ck_assert_int_eq(stored_version("acc-1"), 3);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(update_gives_up_after_max_attempts)
{
	evs_error err = EVS_ERROR_INIT;
	command cmd = {5, 0, 0, 0};
	static char sentinel;
	evs_aggregate *agg = (evs_aggregate *)(void *)&sentinel, *again;

	seed("acc-1", 1);
	fake->inject_appends = 3;
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, 3,
	                                 decide_deposit, &cmd, &err),
	                 EVS_ECONFLICT);
	ck_assert_ptr_null(agg);
	ck_assert_int_eq(cmd.calls, 3);
	ck_assert_int_eq(fake->appends, 3);
	/* The details are the last conflict's. */
	ck_assert_int_eq(err.code, EVS_ECONFLICT);
	ck_assert_str_eq(err.aggregate_id, "acc-1");
	ck_assert_int_eq(err.expected_version, 2);
	ck_assert_int_eq(err.actual_version, 3);
	/* Only the other writers' events were stored. */
	again = load_ok("acc-1");
	ck_assert_int_eq(evs_aggregate_version(again), 3);
	ck_assert_int_eq(account_of(again)->balance, 1 + 300);
	evs_aggregate_free(again);
	evs_error_clear(&err);
}
END_TEST

START_TEST(update_with_one_attempt_does_not_retry)
{
	command cmd = {5, 0, 0, 0};

	seed("acc-1", 1);
	fake->inject_appends = 1;
	ck_assert_int_eq(evs_repo_update(NULL, repo, "acc-1", 0, 1,
	                                 decide_deposit, &cmd, NULL),
	                 EVS_ECONFLICT);
	ck_assert_int_eq(cmd.calls, 1);
	ck_assert_int_eq(fake->appends, 1);
	ck_assert_int_eq(stored_version("acc-1"), 1);
}
END_TEST

START_TEST(update_creates_with_the_flag)
{
	evs_error err = EVS_ERROR_INIT;
	command cmd = {4, 0, 0, 0};
	evs_aggregate *agg = NULL;

	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", EVS_REPO_CREATE,
	                                 1, decide_deposit, &cmd, &err),
	                 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_ptr_null(err.message);
	ck_assert_int_eq(cmd.calls, 1);
	ck_assert_int_eq(cmd.seen_version, EVS_NO_VERSION);
	ck_assert_int_eq(evs_aggregate_version(agg), 0);
	ck_assert_int_eq(account_of(agg)->balance, 4);
	ck_assert_int_eq(stored_version("acc-1"), 0);
	evs_aggregate_free(agg);

	/* An existing aggregate is loaded as usual with the flag. */
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", EVS_REPO_CREATE,
	                                 1, decide_deposit, &cmd, &err),
	                 0);
	ck_assert_int_eq(cmd.seen_version, 0);
	ck_assert_int_eq(account_of(agg)->balance, 8);
	evs_aggregate_free(agg);
	evs_error_clear(&err);
}
END_TEST

START_TEST(update_create_retries_when_beaten_to_it)
{
	command cmd = {4, 0, 0, 0};
	evs_aggregate *agg = NULL;

	fake->inject_appends = 1;
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", EVS_REPO_CREATE,
	                                 2, decide_deposit, &cmd, NULL),
	                 0);
	ck_assert_int_eq(cmd.calls, 2);
	ck_assert_int_eq(cmd.seen_version, 0);
	ck_assert_int_eq(evs_aggregate_version(agg), 1);
	ck_assert_int_eq(account_of(agg)->balance, 104);
	evs_aggregate_free(agg);
}
END_TEST

START_TEST(update_missing_without_the_flag)
{
	evs_error err = EVS_ERROR_INIT;
	command cmd = {4, 0, 0, 0};
	static char sentinel;
	evs_aggregate *agg = (evs_aggregate *)(void *)&sentinel;

	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, 3,
	                                 decide_deposit, &cmd, &err),
	                 EVS_ENOTFOUND);
	ck_assert_ptr_null(agg);
	ck_assert_int_eq(err.code, EVS_ENOTFOUND);
	ck_assert_ptr_nonnull(strstr(err.message, "\"acc-1\""));
	ck_assert_int_eq(cmd.calls, 0);
	ck_assert_int_eq(fake->appends, 0);
	ck_assert_int_eq(fake->reads, 1);
	ck_assert_int_eq(stored_version("acc-1"), EVS_NO_VERSION);
	evs_error_clear(&err);
}
END_TEST

START_TEST(update_returns_what_decide_refused_with)
{
	evs_error err = EVS_ERROR_INIT;
	command cmd = {5, 42, 0, 0};
	static char sentinel;
	evs_aggregate *agg = (evs_aggregate *)(void *)&sentinel;

	seed("acc-1", 1);
	/* Raised, then refused: nothing may reach the store. */
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, 3,
	                                 decide_deposit, &cmd, &err),
	                 42);
	ck_assert_ptr_null(agg);
	ck_assert_int_eq(cmd.calls, 1);
	ck_assert_int_eq(fake->appends, 0);
	ck_assert_int_eq(stored_version("acc-1"), 0);

	cmd.ret = EVS_EINVALID;
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, 3,
	                                 decide_deposit, &cmd, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(err.code, EVS_EINVALID);
	ck_assert_str_eq(err.message, "command refused");
	ck_assert_int_eq(cmd.calls, 2);

	/* A failure decide did not describe still gets a message. */
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, 3,
	                                 decide_mute_failure, NULL, &err),
	                 EVS_ERROR);
	ck_assert_int_eq(err.code, EVS_ERROR);
	ck_assert_ptr_nonnull(err.message);
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, 3,
	                                 decide_mute_failure, NULL, NULL),
	                 EVS_ERROR);
	ck_assert_int_eq(fake->appends, 0);
	ck_assert_int_eq(stored_version("acc-1"), 0);
	evs_error_clear(&err);
}
END_TEST

START_TEST(update_with_nothing_raised_saves_nothing)
{
	command cmd = {0, 0, 0, 0};
	evs_aggregate *agg = NULL;

	seed("acc-1", 2);
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, 3,
	                                 decide_deposit, &cmd, NULL),
	                 0);
	ck_assert_int_eq(cmd.calls, 1);
	ck_assert_int_eq(fake->appends, 0);
	ck_assert_int_eq(evs_aggregate_version(agg), 1);
	ck_assert_int_eq(account_of(agg)->balance, 3);
	evs_aggregate_free(agg);
}
END_TEST

START_TEST(update_does_not_retry_other_errors)
{
	evs_error err = EVS_ERROR_INIT;
	command cmd = {5, 0, 0, 0};
	evs_aggregate *agg = NULL;

	seed("acc-1", 1);
	fake->fail_appends = 1;
	fake->fail_code = EVS_EUNAVAILABLE;
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, 5,
	                                 decide_deposit, &cmd, &err),
	                 EVS_EUNAVAILABLE);
	ck_assert_ptr_null(agg);
	ck_assert_int_eq(err.code, EVS_EUNAVAILABLE);
	ck_assert_int_eq(cmd.calls, 1);
	ck_assert_int_eq(fake->appends, 1);

	fake->fail_reads = 1;
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, 5,
	                                 decide_deposit, &cmd, &err),
	                 EVS_EUNAVAILABLE);
	ck_assert_int_eq(cmd.calls, 1);
	ck_assert_int_eq(stored_version("acc-1"), 0);
	evs_error_clear(&err);
}
END_TEST

START_TEST(update_checks_its_arguments)
{
	evs_error err = EVS_ERROR_INIT;
	command cmd = {5, 0, 0, 0};
	static char sentinel;
	evs_aggregate *agg = (evs_aggregate *)(void *)&sentinel;

	seed("acc-1", 1);
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, 0,
	                                 decide_deposit, &cmd, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_null(agg);
	ck_assert_ptr_nonnull(strstr(err.message, "max_attempts"));
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, -1,
	                                 decide_deposit, &cmd, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_repo_update(&agg, NULL, "acc-1", 0, 3,
	                                 decide_deposit, &cmd, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0, 3, NULL,
	                                 &cmd, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_repo_update(&agg, repo, NULL, 0, 3,
	                                 decide_deposit, &cmd, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_repo_update(&agg, repo, "", EVS_REPO_CREATE, 3,
	                                 decide_deposit, &cmd, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_repo_update(&agg, repo, "acc-1", 0x80, 3,
	                                 decide_deposit, &cmd, &err),
	                 EVS_EINVALID);
	ck_assert_ptr_null(agg);
	ck_assert_int_eq(cmd.calls, 0);
	ck_assert_int_eq(fake->appends, 0);
	ck_assert_int_eq(fake->reads, 0);
	evs_error_clear(&err);
}
END_TEST

/* ---- several threads, one store ---- */

#define THREADS 4
#define UPDATES 50

typedef struct worker {
	evs_repo *repo;
	pthread_barrier_t *start;
	command cmd;
	int rc;
} worker;

static void *work(void *arg)
{
	worker *w = arg;
	int i;

	pthread_barrier_wait(w->start);
	for (i = 0; i < UPDATES && w->rc == 0; i++)
		w->rc = evs_repo_update(NULL, w->repo, "counter",
		                        EVS_REPO_CREATE, 1000, decide_deposit,
		                        &w->cmd, NULL);
	return NULL;
}

START_TEST(update_from_several_threads)
{
	evs_store *mem = NULL;
	evs_repo *shared = NULL;
	pthread_barrier_t start;
	pthread_t threads[THREADS];
	worker workers[THREADS];
	evs_aggregate *agg = NULL;
	int i, calls = 0;

	ck_assert_int_eq(evs_store_open_memory(&mem, NULL), 0);
	ck_assert_int_eq(evs_repo_new(&shared, mem, &account_type, NULL), 0);
	ck_assert_int_eq(pthread_barrier_init(&start, NULL, THREADS), 0);
	for (i = 0; i < THREADS; i++) {
		memset(&workers[i], 0, sizeof(workers[i]));
		workers[i].repo = shared;
		workers[i].start = &start;
		workers[i].cmd.amount = 1;
		ck_assert_int_eq(pthread_create(&threads[i], NULL, work,
		                                &workers[i]),
		                 0);
	}
	for (i = 0; i < THREADS; i++) {
		ck_assert_int_eq(pthread_join(threads[i], NULL), 0);
		ck_assert_int_eq(workers[i].rc, 0);
		calls += workers[i].cmd.calls;
	}
	pthread_barrier_destroy(&start);
	/* Retries ran decide again, but every update landed exactly once. */
	ck_assert_int_ge(calls, THREADS * UPDATES);
	ck_assert_int_eq(evs_repo_load(&agg, shared, "counter", NULL), 0);
	ck_assert_int_eq(account_of(agg)->balance, THREADS * UPDATES);
	ck_assert_int_eq(evs_aggregate_version(agg), THREADS * UPDATES - 1);
	evs_aggregate_free(agg);
	evs_repo_free(shared);
	evs_store_free(mem);
}
END_TEST

Suite *repo_suite(void)
{
	Suite *s = suite_create("repository");
	TCase *tc = tcase_create("core");
	TCase *threads = tcase_create("threads");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, repo_new_checks_its_arguments);
	tcase_add_test(tc, load_replays_the_stream);
	tcase_add_test(tc, load_replays_a_long_stream);
	tcase_add_test(tc, load_missing_is_not_found);
	tcase_add_test(tc, load_stops_at_the_first_apply_error);
	tcase_add_test(tc, load_passes_store_errors);
	tcase_add_test(tc, load_checks_its_arguments);
	tcase_add_test(tc, save_appends_and_moves_the_version);
	tcase_add_test(tc, save_after_load);
	tcase_add_test(tc, save_with_nothing_queued_skips_the_store);
	tcase_add_test(tc, save_conflict_leaves_the_aggregate);
	tcase_add_test(tc, save_conflict_on_a_new_aggregate);
	tcase_add_test(tc, save_failure_leaves_the_aggregate);
	tcase_add_test(tc, save_checks_its_arguments);
	tcase_add_test(tc, update_loads_decides_and_saves);
	tcase_add_test(tc, update_retries_after_a_conflict);
	tcase_add_test(tc, update_gives_up_after_max_attempts);
	tcase_add_test(tc, update_with_one_attempt_does_not_retry);
	tcase_add_test(tc, update_creates_with_the_flag);
	tcase_add_test(tc, update_create_retries_when_beaten_to_it);
	tcase_add_test(tc, update_missing_without_the_flag);
	tcase_add_test(tc, update_returns_what_decide_refused_with);
	tcase_add_test(tc, update_with_nothing_raised_saves_nothing);
	tcase_add_test(tc, update_does_not_retry_other_errors);
	tcase_add_test(tc, update_checks_its_arguments);
	suite_add_tcase(s, tc);
	/* Valgrind serialises threads: give it time. */
	tcase_set_timeout(threads, 120);
	tcase_add_test(threads, update_from_several_threads);
	suite_add_tcase(s, threads);
	return s;
}
