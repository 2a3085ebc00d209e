/* The store contract suite: written once against evs_store, run on every
 * backend. A runner describes its backend with a contract_backend and adds
 * contract_suite() to its SRunner. */
#ifndef EVSTORE_TEST_CONTRACT_H
#define EVSTORE_TEST_CONTRACT_H

#include <check.h>
#include <evstore/evstore.h>

typedef struct contract_backend {
	const char *name;
	/* Opens a store whose streams do not overlap any earlier test's
	 * (a fresh store, or fresh stream names through id_prefix). Called in
	 * Check's forked child. Returns 0 or a negative evs code. */
	int (*open)(evs_store **out, evs_error *err);
	/* Prepended to every aggregate id a contract test uses; may change
	 * per test. May be NULL. */
	const char *(*id_prefix)(void);
	/* Largest thread count the backend can serve at once (pool size);
	 * 0 means no limit. */
	int max_threads;
	/* Nonzero when this store's role may not keep recorded times
	 * (EVS_APPEND_KEEP_TIME): such an append must then fail with
	 * EVS_EDB, SQLSTATE 42501, and store nothing. */
	int no_keep_time;
} contract_backend;

Suite *contract_suite(const contract_backend *be);

#endif
