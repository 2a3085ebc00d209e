/* Shared by the PostgreSQL backend's files, not exported. */
#ifndef EVSTORE_PG_INT_H
#define EVSTORE_PG_INT_H

#include <libpq-fe.h>

#include "common_int.h"

/* Fills err from a failed result (res may be NULL) on conn: the code
 * follows the SQLSTATE (see pg_error.c), the message is `what` followed by
 * the server's message. Returns the code. */
int evs__pg_error(evs_error *err, PGconn *conn, const PGresult *res,
                  const char *what);

/* The evs code for a SQLSTATE ("" or NULL when there is none). */
int evs__pg_code(const char *sqlstate, int connection_bad);

#endif
