/* Connections: made with evstore's settings forced and every wait
 * bounded, kept in a pool of slots, each used by one thread at a time. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "pg_int.h"

/* A connection given back this recently is not checked before reuse. */
#define RECHECK_AFTER_MS 100

/* Server notices and warnings go to the log callback, never to stderr
 * (libpq's default). */
static void on_notice(void *arg, const PGresult *res)
{
	pg_backend *pb = arg;
	const char *sev, *state, *msg;
	int level = EVS_LOG_NOTICE;

	if (pb->log == NULL)
		return;
	sev = PQresultErrorField(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (sev != NULL) {
		if (strcmp(sev, "WARNING") == 0)
			level = EVS_LOG_WARNING;
		else if (strcmp(sev, "INFO") == 0 || strcmp(sev, "LOG") == 0)
			level = EVS_LOG_INFO;
		else if (strncmp(sev, "DEBUG", 5) == 0)
			level = EVS_LOG_DEBUG;
	}
	pb->log(level, state != NULL ? state : "00000",
	        msg != NULL ? msg : PQresultErrorMessage(res),
	        pb->log_payload);
}

/* a + b + c in a fresh buffer (yours: free()), NULL when out of memory. */
static char *concat3(const char *a, const char *b, const char *c)
{
	size_t na = strlen(a), nb = strlen(b), nc = strlen(c);
	char *out = malloc(na + nb + nc + 1);

	if (out == NULL)
		return NULL;
	memcpy(out, a, na);
	memcpy(out + na, b, nb);
	memcpy(out + na + nb, c, nc + 1);
	return out;
}

void evs__pg_drop(PGconn *conn)
{
	if (conn == NULL)
		return;
	/* PQfinish sends a goodbye: in non-blocking mode it never waits for
	 * the network to take it. */
	PQsetnonblocking(conn, 1);
	PQfinish(conn);
}

/* The connect timeout in force: a connect_timeout from the conninfo, a
 * service file or PGCONNECT_TIMEOUT (libpq's rules: whole seconds, at
 * least 2, 0 or less for none), else evstore's option; *ms 0: none.
 * Returns 0, or EVS_ECONFIG for a value libpq itself would refuse (its
 * non-blocking connect does not check it, and a silent "none" would let
 * a connection attempt wait forever). */
static int connect_timeout_ms(unsigned int *ms, PGconn *conn,
                              unsigned int dflt, evs_error *err)
{
	PQconninfoOption *opts = PQconninfo(conn), *o;
	int rc = 0;

	*ms = dflt;
	for (o = opts; o != NULL && o->keyword != NULL; o++) {
		const char *v = o->val;
		char *end;
		long s;

		if (strcmp(o->keyword, "connect_timeout") != 0 || v == NULL ||
		    v[0] == '\0')
			continue;
		errno = 0;
		s = strtol(v, &end, 10);
		while (end != v && (*end == ' ' || *end == '\t'))
			end++;
		if (end == v || *end != '\0' || errno != 0 || s > INT_MAX)
			rc = evs_error_set(err, EVS_ECONFIG, NULL,
			                   "invalid connect_timeout value \"%s\" "
			                   "(whole seconds)", v);
		else
			*ms = s <= 0 ? 0 : s < 2 ? 2000
			      : s > INT_MAX / 1000 ? INT_MAX
			                           : (unsigned int)s * 1000;
		break;
	}
	PQconninfoFree(opts);
	return rc;
}

/* Drives libpq's connection state machine under poll(), so that the
 * whole attempt (every host, TLS, authentication) fits in the timeout. */
static int wait_connected(PGconn *conn, int64_t deadline)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;

	for (;;) {
		struct pollfd p;
		int timeout = -1, rc;

		if (st == PGRES_POLLING_OK)
			return 0;
		if (st == PGRES_POLLING_FAILED)
			return -1;
		p.fd = PQsocket(conn);
		if (p.fd < 0)
			return -1;
		p.events = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
		p.revents = 0;
		if (deadline != 0) {
			int64_t left = deadline - evs__pg_now_ms();

			if (left <= 0)
				return 1;
			timeout = left > INT_MAX ? INT_MAX : (int)left;
		}
		rc = poll(&p, 1, timeout);
		if (rc < 0 && errno != EINTR)
			return -1;
		if (rc > 0)
			st = PQconnectPoll(conn);
	}
}

int evs__pg_connect(PGconn **out, pg_backend *pb, int prepare,
                    evs_error *err)
{
	/* Before dbname: defaults that the conninfo may override (a dead
	 * peer is noticed in about a minute, not two hours). After it:
	 * what evstore forces (the SETs below force it again). */
	const char *keys[] = {"keepalives",          "keepalives_idle",
	                      "keepalives_interval", "keepalives_count",
	                      "tcp_user_timeout",    "dbname",
	                      "fallback_application_name",
	                      "client_encoding",     NULL};
	const char *vals[] = {"1",  "30", "10", "3", "30000", pb->conninfo,
	                      "evstore", "UTF8", NULL};
	PGresult *res = NULL;
	PGconn *conn;
	unsigned int limit;
	char *sql;
	int rc;

	*out = NULL;
	conn = PQconnectStartParams(keys, vals, 1);
	if (conn == NULL)
		return evs__error_nomem(err);
	PQsetNoticeReceiver(conn, on_notice, pb);
	/* Errors while connecting then carry their SQLSTATE in the text
	 * (there is no result to ask): evs__pg_connect_error reads it. */
	PQsetErrorVerbosity(conn, PQERRORS_VERBOSE);
	if (PQstatus(conn) == CONNECTION_BAD) {
		rc = evs__pg_connect_error(err, conn);
		PQfinish(conn);
		return rc;
	}
	if ((rc = connect_timeout_ms(&limit, conn, pb->connect_timeout_ms,
	                             err)) < 0) {
		evs__pg_drop(conn);
		return rc;
	}
	rc = wait_connected(conn, evs__pg_deadline(limit));
	if (rc != 0) {
		if (rc > 0)
			rc = evs_error_set(err, EVS_EUNAVAILABLE, NULL,
			                   "could not connect to PostgreSQL "
			                   "within %u ms", limit);
		else
			rc = evs__pg_connect_error(err, conn);
		evs__pg_drop(conn);
		return rc;
	}
	PQsetErrorVerbosity(conn, PQERRORS_DEFAULT);
	if (PQsetnonblocking(conn, 1) != 0) {
		rc = evs__pg_error(err, conn, NULL, "could not connect");
		evs__pg_drop(conn);
		return rc;
	}
	/* A statement still running when evstore gave up on it (and closed
	 * the connection) is ended by the server within 2 s. */
	sql = concat3(pb->session_sql,
	              PQserverVersion(conn) >= 140000
	                      ? "SET client_connection_check_interval = 2000;"
	                      : "",
	              prepare ? pb->prepare_sql : "");
	if (sql == NULL) {
		evs__pg_drop(conn);
		return evs__error_nomem(err);
	}
	rc = evs__pg_exec_conn(&res, conn, NULL, sql, 0, NULL,
	                       evs__pg_deadline(pb->call_timeout_ms),
	                       "could not set up the connection", err);
	free(sql);
	if (rc == 0 && PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = evs__pg_error(err, conn, res,
		                   "could not set up the connection");
	PQclear(res);
	if (rc < 0) {
		evs__pg_drop(conn);
		return rc;
	}
	*out = conn;
	return 0;
}

/* A connection that the server closed while it sat idle (a restart, an
 * administrator, an idle timeout) has something to read: between our
 * calls nothing else is ever pending, so anything readable means the
 * session is over. Costs one poll(), no round trip. */
static int idle_conn_is_dead(PGconn *conn)
{
	struct pollfd p;

	if (PQstatus(conn) != CONNECTION_OK)
		return 1;
	p.fd = PQsocket(conn);
	p.events = POLLIN;
	p.revents = 0;
	if (p.fd < 0)
		return 1;
	return poll(&p, 1, 0) != 0;
}

static void deadline_after(struct timespec *ts, unsigned int ms)
{
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

int evs__pg_acquire(pg_slot **out, pg_backend *pb, evs_error *err)
{
	struct timespec deadline;
	size_t i, pick;
	int have_deadline = 0, rc;
	PGconn *stale = NULL;
	pg_slot *s;

	*out = NULL;
	pthread_mutex_lock(&pb->lock);
	for (;;) {
		pick = pb->pool_size;
		/* A connected idle slot first, else an empty one. */
		for (i = 0; i < pb->pool_size; i++) {
			if (pb->slots[i].busy)
				continue;
			if (pb->slots[i].conn != NULL) {
				pick = i;
				break;
			}
			if (pick == pb->pool_size)
				pick = i;
		}
		if (pick < pb->pool_size)
			break;
		if (!have_deadline) {
			deadline_after(&deadline, pb->pool_timeout_ms);
			have_deadline = 1;
		}
		rc = pthread_cond_timedwait(&pb->freed, &pb->lock, &deadline);
		if (rc == ETIMEDOUT) {
			pthread_mutex_unlock(&pb->lock);
			return evs_error_set(err, EVS_ETIMEOUT, NULL,
			                     "no free database connection within "
			                     "%u ms (pool of %zu)",
			                     pb->pool_timeout_ms, pb->pool_size);
		}
	}
	s = &pb->slots[pick];
	s->busy = 1;
	pthread_mutex_unlock(&pb->lock);

	/* The slot is ours: connect or check it without the lock held. A
	 * connection used a moment ago skips the check: a poll() per call
	 * is a tenth of the client's cost of an append. */
	if (s->conn != NULL &&
	    evs__pg_coarse_ms() - s->released_ms >= RECHECK_AFTER_MS &&
	    idle_conn_is_dead(s->conn)) {
		stale = s->conn;
		s->conn = NULL;
	}
	evs__pg_drop(stale);
	if (s->conn == NULL) {
		rc = evs__pg_connect(&s->conn, pb, 1, err);
		if (rc < 0) {
			pthread_mutex_lock(&pb->lock);
			s->busy = 0;
			pthread_cond_signal(&pb->freed);
			pthread_mutex_unlock(&pb->lock);
			return rc;
		}
	}
	*out = s;
	return 0;
}

void evs__pg_release(pg_backend *pb, pg_slot *s)
{
	PGconn *drop[MAX_POOL_SIZE + 1];
	size_t n = 0, i;

	pthread_mutex_lock(&pb->lock);
	/* A connection that broke or was dropped: the server has usually
	 * restarted, or the network is gone, so the idle ones go too. */
	if (s->conn == NULL || PQstatus(s->conn) != CONNECTION_OK) {
		drop[n++] = s->conn;
		s->conn = NULL;
		for (i = 0; i < pb->pool_size; i++) {
			if (!pb->slots[i].busy && pb->slots[i].conn != NULL) {
				drop[n++] = pb->slots[i].conn;
				pb->slots[i].conn = NULL;
			}
		}
	}
	s->busy = 0;
	s->released_ms = evs__pg_coarse_ms();
	pthread_cond_signal(&pb->freed);
	pthread_mutex_unlock(&pb->lock);
	for (i = 0; i < n; i++)
		evs__pg_drop(drop[i]);
}
