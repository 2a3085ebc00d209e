/* The unit suites, one per module (test/unit/check_<module>.c). */
#ifndef EVSTORE_TEST_UNIT_SUITES_H
#define EVSTORE_TEST_UNIT_SUITES_H

#include <check.h>

Suite *error_suite(void);      /* check_error.c */
Suite *event_suite(void);      /* check_event.c */
Suite *store_args_suite(void); /* check_store_args.c: front-end checks */
Suite *memory_suite(void);     /* check_memory.c: memory-backend specifics */
Suite *aggregate_suite(void);  /* check_aggregate.c */
Suite *repo_suite(void);       /* check_repo.c */
Suite *tcp_proxy_suite(void);  /* check_tcp_proxy.c: test-only proxy */

#endif
