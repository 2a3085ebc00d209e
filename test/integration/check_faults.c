/* Bounded waits behind a frozen or cut network (test/common/tcp_proxy), and connection settings the server refuses. */
#include <check.h>

#include "integration/pg_test.h"

Suite *faults_suite(void)
{
	Suite *s = suite_create("faults");

	return s;
}
