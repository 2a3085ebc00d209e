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

#define CHECK_INTERVAL_SQL                                                \
	"DO $$BEGIN SET client_connection_check_interval = 2000; "        \
	"EXCEPTION WHEN OTHERS THEN NULL; END$$;"

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
 * least 2), else evstore's option (also when that value is 0 or less,
 * which libpq reads as "none": evstore never waits without a bound).
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
		else if (s > 0) /* 0 or less: libpq's "none"; evstore's stays */
			*ms = s < 2 ? 2000
			      : s > INT_MAX / 1000 ? INT_MAX
			                           : (unsigned int)s * 1000;
		break;
	}
	PQconninfoFree(opts);
	return rc;
}

/* Entry i of a comma-separated list (libpq's host, hostaddr and port
 * lists), copied to out; a one-entry list stands for every entry. Returns
 * the number of entries. */
static size_t list_entry(const char *list, size_t i, char *out,
                         size_t size)
{
	size_t n = 1, k = 0, len;
	const char *p, *start = list;

	for (p = list; *p; p++)
		n += *p == ',';
	if (n == 1)
		i = 0;
	for (p = list; k < i && *p; p++)
		if (*p == ',' && ++k == i)
			start = p + 1;
	len = strcspn(start, ",");
	if (out != NULL)
		snprintf(out, size, "%.*s", (int)(len < size ? len : size - 1),
		         start);
	return n;
}

/* The entries of a list from index `from` on ("" when it is empty or a
 * one-entry list that stands for all). Yours: free(). */
static char *list_tail(const char *list, size_t from)
{
	size_t n = list_entry(list, 0, NULL, 0), k = 0;
	const char *p = list;

	if (n == 1)
		return strdup(list);
	for (; *p && k < from; p++)
		k += *p == ',';
	return strdup(p);
}

/* libpq tries the hosts of a multi-host conninfo in turn, giving each
 * connect_timeout, but only its blocking connect does so: its
 * non-blocking one, which evstore drives to bound the wait, keeps
 * waiting on a host that never answers. When a host's time is up and
 * others follow it, evstore starts over from the next one. Returns a new
 * connection attempt (the old one is dropped), or NULL when no host is
 * left (or memory ran out). */
static PGconn *start_next_host(PGconn *conn, pg_backend *pb)
{
	PQconninfoOption *opts = PQconninfo(conn), *o;
	const char *hosts = "", *addrs = "", *ports = "";
	const char *cur_host = PQhost(conn), *cur_port = PQport(conn);
	const char **keys = NULL, **vals = NULL;
	char *tails[3] = {NULL, NULL, NULL}, h[256], pt[64];
	size_t n, i, from, k = 0, count = 0;
	PGconn *next = NULL;

	for (o = opts; o != NULL && o->keyword != NULL; o++) {
		count++;
		if (o->val == NULL)
			continue;
		if (strcmp(o->keyword, "host") == 0)
			hosts = o->val;
		else if (strcmp(o->keyword, "hostaddr") == 0)
			addrs = o->val;
		else if (strcmp(o->keyword, "port") == 0)
			ports = o->val;
	}
	n = list_entry(hosts[0] ? hosts : addrs, 0, NULL, 0);
	/* Which entry is being tried: the first whose host and port are
	 * the current ones. */
	for (from = 0; from < n; from++) {
		list_entry(hosts[0] ? hosts : addrs, from, h, sizeof(h));
		list_entry(ports, from, pt, sizeof(pt));
		if (strcmp(h, cur_host ? cur_host : "") == 0 &&
		    (ports[0] == '\0' || strcmp(pt, cur_port ? cur_port : "") == 0))
			break;
	}
	from++;
	if (opts == NULL || from >= n)
		goto done;
	tails[0] = list_tail(hosts, from);
	tails[1] = list_tail(addrs, from);
	tails[2] = list_tail(ports, from);
	keys = calloc(count + 1, sizeof(*keys));
	vals = calloc(count + 1, sizeof(*vals));
	if (!tails[0] || !tails[1] || !tails[2] || !keys || !vals)
		goto done;
	for (o = opts; o->keyword != NULL; o++) {
		const char *v = o->val;

		if (strcmp(o->keyword, "host") == 0)
			v = tails[0];
		else if (strcmp(o->keyword, "hostaddr") == 0)
			v = tails[1];
		else if (strcmp(o->keyword, "port") == 0)
			v = tails[2];
		if (v == NULL || v[0] == '\0')
			continue;
		keys[k] = o->keyword;
		vals[k++] = v;
	}
	next = PQconnectStartParams(keys, vals, 0);
	if (next != NULL) {
		PQsetNoticeReceiver(next, on_notice, pb);
		PQsetErrorVerbosity(next, PQERRORS_VERBOSE);
	}
done:
	free(keys);
	free(vals);
	for (i = 0; i < 3; i++)
		free(tails[i]);
	PQconninfoFree(opts);
	return next;
}

/* Drives libpq's connection state machine under poll(), so that each
 * host's attempt (connect, TLS, authentication) fits in the timeout.
 * Returns 0 (connected), -1 (failed: *connp says why) or 1 (the last
 * host's time ran out). */
static int wait_connected(PGconn **connp, pg_backend *pb,
                          unsigned int limit_ms)
{
	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	int64_t deadline = evs__pg_deadline(limit_ms);

	for (;;) {
		PGconn *conn = *connp, *next;
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

			if (left <= 0) {
				next = start_next_host(conn, pb);
				if (next == NULL)
					return 1;
				evs__pg_drop(conn);
				*connp = next;
				if (PQstatus(next) == CONNECTION_BAD)
					return -1;
				st = PGRES_POLLING_WRITING;
				deadline = evs__pg_deadline(limit_ms);
				continue;
			}
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
	rc = wait_connected(&conn, pb, limit);
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
	 * the connection) is ended by the server within 2 s (PostgreSQL 14
	 * and later, where the platform can tell; elsewhere the setting is
	 * refused, and that is fine). */
	sql = concat3(pb->session_sql,
	              PQserverVersion(conn) >= 140000 ? CHECK_INTERVAL_SQL : "",
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
	if (s->conn != NULL &&
	    (PQstatus(s->conn) != CONNECTION_OK || s->stale)) {
		/* A connection that broke: the server has usually restarted,
		 * so the idle ones go too. Or statements prepared for columns
		 * that a migration changed since: so were theirs. */
		drop[n++] = s->conn;
		s->conn = NULL;
		for (i = 0; i < pb->pool_size; i++) {
			if (!pb->slots[i].busy && pb->slots[i].conn != NULL) {
				drop[n++] = pb->slots[i].conn;
				pb->slots[i].conn = NULL;
			}
		}
	} else if (s->conn != NULL &&
	           PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
		/* A reply not read to its end (or a transaction left open):
		 * this connection cannot serve the next call. (One dropped on
		 * purpose, conn NULL, says nothing about the others.) */
		drop[n++] = s->conn;
		s->conn = NULL;
	}
	s->busy = 0;
	s->stale = 0;
	s->released_ms = evs__pg_coarse_ms();
	pthread_cond_signal(&pb->freed);
	pthread_mutex_unlock(&pb->lock);
	for (i = 0; i < n; i++)
		evs__pg_drop(drop[i]);
}
