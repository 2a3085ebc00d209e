/* Streaming reads hold a bounded number of bytes, however large the events. */
#include <check.h>

#include "integration/pg_test.h"

Suite *reads_suite(void)
{
	Suite *s = suite_create("reads");

	return s;
}
