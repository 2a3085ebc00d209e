/* The one place where PostgreSQL errors become evstore codes. */
#include <stdio.h>
#include <string.h>

#include "pg_int.h"

int evs__pg_code(const char *sqlstate, int connection_bad)
{
	if (sqlstate == NULL || sqlstate[0] == '\0')
		return connection_bad ? EVS_EUNAVAILABLE : EVS_EDB;
	/* Class 08: connection exception. 57P01..57P03: the server is
	 * shutting down, crashed or not yet accepting connections, or an
	 * administrator ended this session. */
	if (strncmp(sqlstate, "08", 2) == 0 || strcmp(sqlstate, "57P01") == 0 ||
	    strcmp(sqlstate, "57P02") == 0 || strcmp(sqlstate, "57P03") == 0)
		return EVS_EUNAVAILABLE;
	/* statement_timeout (query_canceled) and lock_timeout. */
	if (strcmp(sqlstate, "57014") == 0 || strcmp(sqlstate, "55P03") == 0)
		return EVS_ETIMEOUT;
	/* The schema or its objects are gone: invalid_schema_name,
	 * undefined_table, undefined_function. */
	if (strcmp(sqlstate, "3F000") == 0 || strcmp(sqlstate, "42P01") == 0 ||
	    strcmp(sqlstate, "42883") == 0)
		return EVS_ESCHEMA;
	if (connection_bad)
		return EVS_EUNAVAILABLE;
	return EVS_EDB;
}

/* libpq's messages end with a newline and may span lines: keep the first
 * line only. */
static void first_line(char *out, size_t size, const char *msg)
{
	size_t n = 0;

	if (msg == NULL)
		msg = "";
	while (msg[n] != '\0' && msg[n] != '\n' && n + 1 < size) {
		out[n] = msg[n];
		n++;
	}
	out[n] = '\0';
}

int evs__pg_error(evs_error *err, PGconn *conn, const PGresult *res,
                  const char *what)
{
	const char *sqlstate = NULL, *primary = NULL;
	int bad = conn == NULL || PQstatus(conn) == CONNECTION_BAD;
	char line[512];
	int code;

	if (res != NULL) {
		sqlstate = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		primary = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	}
	if (primary == NULL)
		primary = conn != NULL ? PQerrorMessage(conn) : "no connection";
	first_line(line, sizeof(line), primary);
	if (line[0] == '\0')
		snprintf(line, sizeof(line), "%s",
		         bad ? "the connection to the server was lost"
		             : "unknown server error");
	code = evs__pg_code(sqlstate, bad);
	evs_error_set(err, code, sqlstate, "%s: %s", what, line);
	if (res != NULL)
		evs__error_set_detail(err, PQresultErrorField(
			res, PG_DIAG_MESSAGE_DETAIL));
	return code;
}
