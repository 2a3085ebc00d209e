/* Per-stream order in the all-events feed, and retries racing their original. */
#include <check.h>

#include "integration/pg_test.h"

Suite *order_suite(void)
{
	Suite *s = suite_create("order");

	return s;
}
