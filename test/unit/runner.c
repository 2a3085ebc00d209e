/* Unit runner: no database. Unit suites plus the contract suite on the
 * in-memory backend. Exits non-zero when any test fails. */
#include <check.h>
#include <stdlib.h>

#include <evstore/evstore.h>

#include "contract/contract.h"
#include "unit/suites.h"

static int open_memory(evs_store **out, evs_error *err)
{
	return evs_store_open_memory(out, err);
}

static const contract_backend memory_backend = {
	"memory", open_memory, NULL, 0, 0,
};

int main(void)
{
	SRunner *sr = srunner_create(error_suite());
	int failed;

	srunner_add_suite(sr, event_suite());
	srunner_add_suite(sr, store_args_suite());
	srunner_add_suite(sr, memory_suite());
	srunner_add_suite(sr, aggregate_suite());
	srunner_add_suite(sr, repo_suite());
	srunner_add_suite(sr, tcp_proxy_suite());
	srunner_add_suite(sr, contract_suite(&memory_backend));
	srunner_run_all(sr, CK_NORMAL);
	failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
