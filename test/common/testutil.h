/* Helpers shared by every test runner (compiled into each of them). */
#ifndef EVSTORE_TEST_TESTUTIL_H
#define EVSTORE_TEST_TESTUTIL_H

/* 1 when msg contains word as a whole word (so "data" is not found in
 * "metadata"), else 0; 0 for a NULL msg. */
int tu_names(const char *msg, const char *word);

#include <stdint.h>

/* Milliseconds on the monotonic clock. */
int64_t tu_now_ms(void);

/* Sleeps ms milliseconds (through signals). */
void tu_sleep_ms(long ms);

/* xorshift64*: a generator per thread (rand() is not thread-safe);
 * *state must start nonzero. */
uint64_t tu_rand(uint64_t *state);

#endif
