/* The one place where PostgreSQL errors become evstore codes. */
#include <stdio.h>
#include <string.h>

#include "pg_int.h"

#include <ctype.h>

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
static void first_line(char *out, size_t size, const char *msg);

/* The SQLSTATE in a verbose error text ("FATAL:  3D000: database ..."):
 * the first five upper-case letters or digits between ":  " and ": ".
 * Copies it to out (6 bytes) and returns the text after it, or NULL. */
static const char *sqlstate_in_text(char out[6], const char *msg)
{
	const char *p;
	int i;

	for (p = msg; (p = strstr(p, ":  ")) != NULL; p++) {
		const char *c = p + 3;

		for (i = 0; i < 5; i++)
			if (!isdigit((unsigned char)c[i]) &&
			    !isupper((unsigned char)c[i]))
				break;
		if (i == 5 && c[5] == ':' && c[6] == ' ') {
			memcpy(out, c, 5);
			out[5] = '\0';
			return c + 7;
		}
	}
	return NULL;
}

/* Client-side refusals of the settings, which carry no SQLSTATE (libpq's
 * English texts: a translated libpq makes these EVS_EUNAVAILABLE). */
static const char *const config_texts[] = {
	"server does not support SSL, but SSL was required",
	"certificate verify failed",
	"root certificate file",
	"does not match host name",
	"no password supplied",
	"invalid connection option",
	"invalid integer value",      /* port=abc, keepalives_idle=abc ... */
	"invalid sslmode value",
	"invalid gssencmode value",
	"invalid target_session_attrs value",
	"invalid channel_binding value",
	"invalid ssl_min_protocol_version value",
	"invalid ssl_max_protocol_version value",
	"invalid SSL protocol version range",
	"channel binding required",
	"channel binding is required",
	"could not open certificate file",
	"could not load private key file",
	"could not read root certificate file",
	"certificate present, but not private key",
	"has group or world access",  /* a private key file's mode */
};

int evs__pg_connect_error(evs_error *err, PGconn *conn)
{
	const char *msg = conn != NULL ? PQerrorMessage(conn) : "";
	char state[6] = "", line[512];
	const char *text = sqlstate_in_text(state, msg);
	int code = EVS_EUNAVAILABLE;
	size_t i;

	if (text != NULL) {
		/* No such database (3D000) or role, or no pg_hba.conf entry
		 * (28000), a wrong password (28P01), no CONNECT privilege
		 * (42501): retrying will not help. */
		if (strcmp(state, "3D000") == 0 ||
		    strncmp(state, "28", 2) == 0 ||
		    strcmp(state, "42501") == 0)
			code = EVS_ECONFIG;
	} else if (conn != NULL && PQconnectionNeedsPassword(conn)) {
		code = EVS_ECONFIG;
	} else {
		for (i = 0; i < sizeof(config_texts) / sizeof(config_texts[0]);
		     i++)
			if (strstr(msg, config_texts[i]) != NULL)
				code = EVS_ECONFIG;
	}
	/* "connection to server at ... failed: FATAL:  3D000: database
	 * "x" does not exist": keep the part after the SQLSTATE. */
	first_line(line, sizeof(line), text != NULL ? text : msg);
	if (line[0] == '\0')
		snprintf(line, sizeof(line), "%s", "no reason given");
	return evs_error_set(err, code, state[0] ? state : NULL,
	                     "could not connect to PostgreSQL: %s%s", line,
	                     code == EVS_ECONFIG
	                             ? " (check the connection settings)"
	                             : "");
}

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

int evs__pg_stale_plan(const PGresult *res)
{
	const char *state, *msg;

	if (res == NULL ||
	    (state = PQresultErrorField(res, PG_DIAG_SQLSTATE)) == NULL ||
	    strcmp(state, "0A000") != 0)
		return 0;
	/* feature_not_supported is wider: the server function that
	 * refuses it names it (in any language of the messages). */
	msg = PQresultErrorField(res, PG_DIAG_SOURCE_FUNCTION);
	if (msg != NULL)
		return strcmp(msg, "RevalidateCachedQuery") == 0;
	msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	return msg != NULL &&
	       strcmp(msg, "cached plan must not change result type") == 0;
}

void evs__pg_note_result(pg_slot *slot, const PGresult *res)
{
	if (evs__pg_stale_plan(res))
		slot->stale = 1;
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
	if (evs__pg_stale_plan(res)) {
		/* Nothing was done; the connection is replaced (the caller
		 * noted it), so a retry runs on one that fits the schema. */
		code = EVS_EUNAVAILABLE;
		evs_error_set(err, code, sqlstate,
		              "%s: %s (the schema's columns changed under this "
		              "connection; it is replaced: retry)", what, line);
	} else {
		evs_error_set(err, code, sqlstate, "%s: %s", what, line);
	}
	if (res != NULL)
		evs__error_set_detail(err, PQresultErrorField(
			res, PG_DIAG_MESSAGE_DETAIL));
	return code;
}
