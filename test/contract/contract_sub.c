/* The store contract for subscriptions (include/evstore/subscription.h),
 * on every backend. */
#include "contract/contract_int.h"

void ct_add_sub_tests(Suite *s)
{
	(void)s;
}
