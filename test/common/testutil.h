/* Helpers shared by every test runner (compiled into each of them). */
#ifndef EVSTORE_TEST_TESTUTIL_H
#define EVSTORE_TEST_TESTUTIL_H

/* 1 when msg contains word as a whole word (so "data" is not found in
 * "metadata"), else 0; 0 for a NULL msg. */
int tu_names(const char *msg, const char *word);

#endif
