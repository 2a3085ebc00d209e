/* Shared by the PostgreSQL integration tests. */
#ifndef EVSTORE_TEST_PG_TEST_H
#define EVSTORE_TEST_PG_TEST_H

#include <check.h>
#include <libpq-fe.h>

#include <evstore/evstore.h>

/* EVS_TEST_PG_DSN, or NULL. */
const char *pg_test_dsn(void);
/* EVS_TEST_PG_SCHEMA, or "evstore". */
const char *pg_test_schema(void);
/* A plain libpq connection to the test database (fails the test if it
 * cannot connect); PQfinish() it. */
PGconn *pg_test_connect(void);
/* Runs SQL on conn, failing the test unless it succeeds; returns the
 * first value of the first row (static buffer) or "". */
const char *pg_test_exec(PGconn *conn, const char *sql);

Suite *pg_suite(void);
Suite *pg_json_suite(void);
Suite *order_suite(void);    /* check_order.c: feed order, racing retries */
Suite *settings_suite(void); /* check_settings.c: forced settings, notices */
Suite *faults_suite(void);   /* check_faults.c: deadlines, refused logins */
Suite *reads_suite(void);    /* check_reads.c: byte-bounded reads */
Suite *subs_suite(void);     /* check_subs.c: subscriptions on PostgreSQL */
Suite *group_suite(void);    /* check_group.c: group commit, append_many */

#endif
