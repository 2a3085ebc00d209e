/* Shared by the contract test files: the store under test and helpers. */
#ifndef EVSTORE_TEST_CONTRACT_INT_H
#define EVSTORE_TEST_CONTRACT_INT_H

#include "contract/contract.h"

/* The backend under test and the store its fixture opened for this test. */
extern const contract_backend *ct_backend;
extern evs_store *ct_store;

/* Checked fixtures: open a store before each test, free it after. */
void ct_setup(void);
void ct_teardown(void);

/* A per-test aggregate id built from `base` (the backend's prefix plus
 * base). Returns one of 16 rotating static buffers. */
const char *ct_id(const char *base);

/* A new event of `type` whose data is {"n": n}; fails the test on error.
 * Yours: free with evs_event_free(). */
evs_event *ct_event(const char *type, int n);

/* n events built by ct_event("tested", first + i); yours: free with
 * ct_free_events(). */
evs_event **ct_make_events(int first, size_t n);
void ct_free_events(evs_event **evs, size_t n);

/* Appends one event {"n": n} of type "tested". Returns the store's code;
 * err may be NULL. */
int ct_append_one(const char *id, int64_t expected, evs_error *err);

/* Appends n events built by ct_event("tested", first + i). */
int ct_append_n(const char *id, int64_t expected, int first, size_t n,
                evs_error *err);

/* Number of events stored for id (via evs_store_load); fails the test on
 * error. */
size_t ct_count(const char *id);

/* `threads` threads each try `tries` times to append one event to id at
 * the version they last read; asserts one winner per version, the true
 * actual version for every loser, no gap and no duplicate. */
void ct_race(const char *id, int threads, int tries);

/* The tcases of contract_args.c: every bad input gets EVS_EINVALID naming
 * the argument, and nothing is stored. */
void ct_add_args_tests(Suite *s);

/* The tcases of contract_many.c: evs_store_append_many(). */
void ct_add_many_tests(Suite *s);

/* The tcases of contract_lifecycle.c: deleting streams. */
void ct_add_lifecycle_tests(Suite *s);

/* The tcases of contract_snapshot.c: snapshots, and the repository's. */
void ct_add_snapshot_tests(Suite *s);

/* The tcases of contract_sub.c: subscriptions, on every backend. */
void ct_add_sub_tests(Suite *s);

#endif
