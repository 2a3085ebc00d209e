/* Subscriptions on PostgreSQL, beyond the contract: crashes, leases,
 * groups, rewinds, the fence report, plans, notifications. */
#include <check.h>

#include "integration/pg_test.h"

Suite *subs_suite(void)
{
	return suite_create("subs");
}
