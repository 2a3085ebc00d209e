/* Test doubles for the aggregate and repository suites: a fake backend
 * that wraps the in-memory one, counts the calls to each slot and can be
 * told to fail or to let another writer in just before an append (one test
 * thread only); and "account", a tiny aggregate type. */
#ifndef EVSTORE_TEST_FAKE_BACKEND_H
#define EVSTORE_TEST_FAKE_BACKEND_H

#include <evstore/evstore.h>

typedef struct fake_backend {
	evs_backend base;   /* first: the store sees only this */
	evs_backend *inner; /* the memory backend doing the real work */

	/* Calls that reached each slot, failed ones included (the appends
	 * the fake injects itself are not counted). */
	int appends, reads, heads;

	/* The next fail_appends appends (fail_reads reads) fail with
	 * fail_code and store nothing; each failure counts one down. */
	int fail_appends, fail_reads;
	int fail_code;

	/* Before each of the next inject_appends appends, another writer
	 * appends one event of inject_type with inject_data (JSON text) to
	 * the same stream, so an exact expected version then conflicts. */
	int inject_appends;
	const char *inject_type, *inject_data;
	int injected; /* how many were injected */
} fake_backend;

/* Makes a fake and a store around it. *fake stays valid (borrowed) until
 * evs_store_free(*store_out). Returns 0 or a negative evs code. */
int fake_store_open(evs_store **store_out, fake_backend **fake_out,
                    evs_error *err);

/*
 * The account aggregate: a balance moved by "deposited" and "withdrawn"
 * events whose data is {"amount": n} with n >= 0. apply refuses, with
 * EVS_EINVALID and the state unchanged, any other event type, a missing
 * or negative amount, and a withdrawal above the balance.
 */
typedef struct account {
	int64_t balance;
	int applied; /* events applied to this state */
} account;

/* Counts calls when it is the type's payload (not for threaded tests). */
typedef struct account_tally {
	int creates, applies, frees;
	int create_rc; /* when non-zero, create fails with it */
} account_tally;

/* The type with a NULL payload: safe for any number of threads. */
extern const evs_aggregate_type account_type;

/* Fills *type as account_type, with tally (zeroed here) as payload. */
void account_type_tallied(evs_aggregate_type *type, account_tally *tally);

/* The account state of agg. */
const account *account_of(const evs_aggregate *agg);

/* Raises an event of the given type with {"amount": amount}. */
int account_raise(evs_aggregate *agg, const char *type, int64_t amount,
                  evs_error *err);

/* Appends one such event straight to the store, as another writer would. */
int account_append(evs_store *store, const char *aggregate_id,
                   int64_t expected_version, const char *type,
                   int64_t amount, evs_error *err);

#endif
