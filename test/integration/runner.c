/* Integration runner: the contract suite and the PostgreSQL suites, on a
 * real server. scripts/with-pg.sh and test/integration/run.sh provide it:
 *   EVS_TEST_PG_DSN      conninfo of the database (required)
 *   EVS_TEST_PG_SCHEMA   schema the sql/ migrations were applied to
 *   EVS_TEST_PG_POOL     pool size of the contract stores (default 4)
 *   EVS_TEST_PG_NO_IMPORT  set when the role may not keep recorded times
 *   EVS_TEST_PG_GROUP_OFF  set: the contract stores send every append
 *                        alone (group commit is on by default)
 * CK_RUN_SUITE=contract runs the contract suite alone (the least-privilege
 * run does). Exits non-zero when any test fails. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <evstore/evstore.h>

#include "contract/contract.h"
#include "integration/pg_test.h"

static unsigned int opened;
static char prefix[64];

static int open_pg(evs_store **out, evs_error *err)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	const char *pool = getenv("EVS_TEST_PG_POOL");

	opts.schema = pg_test_schema();
	opts.pool_size = pool ? (unsigned int)atoi(pool) : 4;
	opts.group_commit_off = getenv("EVS_TEST_PG_GROUP_OFF") != NULL;
	/* Tests may share one process (CK_FORK=no): a fresh prefix per test
	 * keeps their streams apart in the one schema. */
	snprintf(prefix, sizeof(prefix), "t%ld-%u-", (long)getpid(), ++opened);
	return evs_store_open_pg(out, pg_test_dsn(), &opts, err);
}

static const char *pg_prefix(void)
{
	return prefix;
}

/* EVS_TEST_PG_NO_IMPORT: the role may not execute import_events (the
 * least-privilege run). */
static contract_backend pg_backend = {
	"postgres", open_pg, pg_prefix, 0, 0,
};

int main(void)
{
	SRunner *sr;
	int failed;

	if (pg_test_dsn() == NULL) {
		fprintf(stderr, "integration: EVS_TEST_PG_DSN is not set; run "
		        "`make check` (it starts a throwaway server) or set it "
		        "to a server (see README)\n");
		return EXIT_FAILURE;
	}
	pg_backend.no_keep_time = getenv("EVS_TEST_PG_NO_IMPORT") != NULL;
	sr = srunner_create(contract_suite(&pg_backend));
	srunner_add_suite(sr, pg_suite());
	srunner_add_suite(sr, pg_json_suite());
	srunner_add_suite(sr, order_suite());
	srunner_add_suite(sr, settings_suite());
	srunner_add_suite(sr, faults_suite());
	srunner_add_suite(sr, reads_suite());
	srunner_add_suite(sr, subs_suite());
	srunner_add_suite(sr, group_suite());
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
