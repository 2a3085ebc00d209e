/* What evstore forces on its connections, whatever the role, database or PGOPTIONS say; server notices go to the log callback. */
#include <check.h>

#include "integration/pg_test.h"

Suite *settings_suite(void)
{
	Suite *s = suite_create("settings");

	return s;
}
