/* One request and its reply, never blocking past a deadline. Every
 * connection is in libpq's non-blocking mode: a request is queued, then
 * flushed and answered under poll() with the time that is left. A
 * request whose reply does not come in time has its connection dropped
 * (closing it is the only way to be sure no late reply is read as the
 * answer to the next request); the server notices the closed connection
 * (evstore asks it to check during long statements) and rolls back what
 * had not committed. */
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <time.h>

#include "pg_int.h"

int64_t evs__pg_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t evs__pg_coarse_ms(void)
{
#ifdef CLOCK_MONOTONIC_COARSE
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#else
	return evs__pg_now_ms();
#endif
}

int64_t evs__pg_deadline(unsigned int ms)
{
	return ms == 0 ? 0 : evs__pg_now_ms() + ms;
}

/* Waits until conn's socket is readable (or writable too, with
 * `write`). Returns 1 when ready, 0 when the deadline passed, -1 when
 * the socket is gone. */
static int wait_socket(PGconn *conn, int write, int64_t deadline)
{
	struct pollfd p;

	p.fd = PQsocket(conn);
	if (p.fd < 0)
		return -1;
	p.events = POLLIN | (write ? POLLOUT : 0);
	for (;;) {
		int timeout = -1, rc;

		if (deadline != 0) {
			int64_t left = deadline - evs__pg_now_ms();

			if (left <= 0)
				return 0;
			timeout = left > INT_MAX ? INT_MAX : (int)left;
		}
		p.revents = 0;
		rc = poll(&p, 1, timeout);
		if (rc > 0)
			return 1;
		if (rc < 0 && errno != EINTR)
			return -1;
	}
}

/* Sends what libpq has queued, reading whatever arrives meanwhile (the
 * server may start answering before it has read a large request).
 * Returns 0, -1 (broken), or 1 (deadline). */
static int flush(PGconn *conn, int64_t deadline)
{
	for (;;) {
		int rc = PQflush(conn), w;

		if (rc == 0)
			return 0;
		if (rc < 0)
			return -1;
		w = wait_socket(conn, 1, deadline);
		if (w <= 0)
			return w == 0 ? 1 : -1;
		if (!PQconsumeInput(conn))
			return -1;
	}
}

/* Waits until a result can be taken without blocking. Returns 0, -1
 * (broken) or 1 (deadline). */
static int await(PGconn *conn, int64_t deadline)
{
	while (PQisBusy(conn)) {
		int w = wait_socket(conn, 0, deadline);

		if (w <= 0)
			return w == 0 ? 1 : -1;
		if (!PQconsumeInput(conn))
			return -1;
	}
	return 0;
}

static int send_request(PGconn *conn, const char *stmt, const char *sql,
                        int n_params, const char *const *params)
{
	if (stmt != NULL)
		return PQsendQueryPrepared(conn, stmt, n_params, params, NULL,
		                           NULL, 0);
	if (n_params > 0)
		return PQsendQueryParams(conn, sql, n_params, NULL, params,
		                         NULL, NULL, 0);
	return PQsendQuery(conn, sql);
}

static int timed_out(evs_error *err, const char *what)
{
	return evs_error_set(err, EVS_ETIMEOUT, NULL,
	                     "%s: no reply from the server before the call's "
	                     "deadline (call_timeout_ms); the connection was "
	                     "closed", what);
}

static int is_error(const PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	return st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK &&
	       st != PGRES_SINGLE_TUPLE && st != PGRES_EMPTY_QUERY;
}

int evs__pg_exec_conn(PGresult **out, PGconn *conn, const char *stmt,
                      const char *sql, int n_params,
                      const char *const *params, int64_t deadline,
                      const char *what, evs_error *err)
{
	PGresult *keep = NULL, *res;
	int rc;

	*out = NULL;
	if (!send_request(conn, stmt, sql, n_params, params))
		return evs__pg_error(err, conn, NULL, what);
	if ((rc = flush(conn, deadline)) != 0)
		goto fail;
	for (;;) {
		if ((rc = await(conn, deadline)) != 0)
			goto fail;
		res = PQgetResult(conn);
		if (res == NULL)
			break;
		/* The first error, else the last result. */
		if (keep != NULL && is_error(keep)) {
			PQclear(res);
		} else {
			PQclear(keep);
			keep = res;
		}
	}
	if (keep == NULL)
		return evs__pg_error(err, conn, NULL, what);
	*out = keep;
	return 0;
fail:
	/* A reply may be half read: the caller drops the connection on
	 * EVS_ETIMEOUT, and evs__pg_release drops one that is not idle. */
	PQclear(keep);
	return rc > 0 ? timed_out(err, what)
	              : evs__pg_error(err, conn, NULL, what);
}

int evs__pg_exec(PGresult **out, pg_backend *pb, pg_slot *slot,
                 const char *stmt, const char *sql, int n_params,
                 const char *const *params, int64_t deadline,
                 const char *what, evs_error *err)
{
	int rc = evs__pg_exec_conn(out, slot->conn, stmt, sql, n_params,
	                           params, deadline, what, err);

	if (rc == 0 && stmt != NULL && evs__pg_stale_plan(*out) &&
	    PQtransactionStatus(slot->conn) == PQTRANS_IDLE) {
		/* Prepared before a migration changed its columns: it did
		 * nothing, and no transaction was open. Once: on a new
		 * connection, prepared afresh. (Inside a transaction the
		 * caller must start again: the note below drops it.) */
		PGconn *fresh = NULL;
		evs_error ignored = EVS_ERROR_INIT;

		if (evs__pg_connect(&fresh, pb, 1, &ignored) == 0) {
			PQclear(*out);
			*out = NULL;
			evs__pg_drop(slot->conn);
			slot->conn = fresh;
			rc = evs__pg_exec_conn(out, slot->conn, stmt, sql,
			                       n_params, params, deadline, what,
			                       err);
		}
		evs_error_clear(&ignored);
	}
	if (rc == 0)
		evs__pg_note_result(slot, *out);
	if (rc == EVS_ETIMEOUT) {
		evs__pg_drop(slot->conn);
		slot->conn = NULL;
	}
	return rc;
}

int evs__pg_rows_start(pg_backend *pb, pg_slot *slot, const char *stmt,
                       int n_params, const char *const *params,
                       int64_t deadline, const char *what, evs_error *err)
{
	PGconn *conn = slot->conn;
	int rc;

	(void)pb;
	if (!PQsendQueryPrepared(conn, stmt, n_params, params, NULL, NULL, 0))
		return evs__pg_error(err, conn, NULL, what);
	/* Rows one at a time: memory holds one row, however large the
	 * page, and rows are handed on while the rest arrive. */
	if (!PQsetSingleRowMode(conn)) {
		evs__pg_rows_abandon(slot);
		return evs_error_set(err, EVS_ERROR, NULL,
		                     "%s: libpq refused single-row mode", what);
	}
	if ((rc = flush(conn, deadline)) != 0) {
		rc = rc > 0 ? timed_out(err, what)
		            : evs__pg_error(err, conn, NULL, what);
		if (rc == EVS_ETIMEOUT)
			evs__pg_rows_abandon(slot);
		return rc;
	}
	return 0;
}

/* Reads the results that follow the last row, up to the end. Returns 0,
 * or nonzero when the end did not come (deadline, broken connection):
 * then the caller must not give the connection back as it is. */
static int drain(PGconn *conn, int64_t deadline)
{
	PGresult *res;
	int rc;

	while ((rc = await(conn, deadline)) == 0 &&
	       (res = PQgetResult(conn)) != NULL)
		PQclear(res);
	return rc;
}

int evs__pg_rows_next(PGresult **row, pg_backend *pb, pg_slot *slot,
                      int64_t deadline, const char *what,
                      char sqlstate[6], evs_error *err)
{
	PGconn *conn = slot->conn;
	PGresult *res;
	const char *state;
	int rc;

	(void)pb;
	*row = NULL;
	sqlstate[0] = '\0';
	if ((rc = await(conn, deadline)) != 0) {
		if (rc > 0) {
			evs__pg_rows_abandon(slot);
			return timed_out(err, what);
		}
		return evs__pg_error(err, conn, NULL, what);
	}
	res = PQgetResult(conn);
	if (res == NULL)
		return 0;
	switch (PQresultStatus(res)) {
	case PGRES_SINGLE_TUPLE:
		*row = res;
		return 0;
	case PGRES_TUPLES_OK:
		/* The end: an empty result closes the rows. */
		PQclear(res);
		if ((rc = drain(conn, deadline)) != 0) {
			/* Rows complete, the reply not: never reuse it. */
			if (rc > 0) {
				evs__pg_rows_abandon(slot);
				return timed_out(err, what);
			}
			return evs__pg_error(err, conn, NULL, what);
		}
		return 0;
	default:
		evs__pg_note_result(slot, res);
		rc = evs__pg_error(err, conn, res, what);
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		if (state != NULL)
			snprintf(sqlstate, 6, "%s", state);
		PQclear(res);
		if (drain(conn, deadline) != 0)
			evs__pg_rows_abandon(slot);
		return rc;
	}
}

void evs__pg_rows_abandon(pg_slot *slot)
{
	evs__pg_drop(slot->conn);
	slot->conn = NULL;
}

int evs__pg_pipeline(PGresult **res, pg_backend *pb, pg_slot *slot,
                     size_t n, const char *const *stmts,
                     const int *n_params, const char *const *const *params,
                     int64_t deadline, const char *what, evs_error *err)
{
	PGconn *conn = slot->conn;
	PGresult *r;
	size_t i;
	int rc = 0, synced = 0;

	(void)pb;
	for (i = 0; i < n; i++)
		res[i] = NULL;
	if (!PQenterPipelineMode(conn))
		return evs__pg_error(err, conn, NULL, what);
	for (i = 0; i < n; i++)
		if (!PQsendQueryPrepared(conn, stmts[i], n_params[i], params[i],
		                         NULL, NULL, 0))
			goto broken;
	if (!PQpipelineSync(conn))
		goto broken;
	if ((rc = flush(conn, deadline)) != 0)
		goto fail;
	/* Each statement's results up to the NULL that ends them; then the
	 * Sync's, which comes once the transaction has ended. libpq may
	 * hand a statement's rows one at a time (single-row mode, left set
	 * by an earlier read on this connection, reaches into a pipeline):
	 * the first row's result is kept (these statements return one row
	 * at most), the empty one that closes them dropped; an error is
	 * always kept. */
	for (i = 0; i < n; i++) {
		for (;;) {
			if ((rc = await(conn, deadline)) != 0)
				goto fail;
			r = PQgetResult(conn);
			if (r == NULL)
				break;
			if (res[i] == NULL ||
			    (PQresultStatus(res[i]) == PGRES_SINGLE_TUPLE &&
			     is_error(r))) {
				PQclear(res[i]);
				res[i] = r;
			} else {
				PQclear(r);
			}
		}
		if (res[i] == NULL)
			goto broken;
	}
	if ((rc = await(conn, deadline)) != 0)
		goto fail;
	r = PQgetResult(conn);
	synced = r != NULL && PQresultStatus(r) == PGRES_PIPELINE_SYNC;
	PQclear(r);
	if (!synced || !PQexitPipelineMode(conn))
		goto broken;
	for (i = 0; i < n; i++)
		evs__pg_note_result(slot, res[i]);
	return 0;
broken:
	rc = -1;
fail:
	for (i = 0; i < n; i++) {
		PQclear(res[i]);
		res[i] = NULL;
	}
	rc = rc > 0 ? timed_out(err, what) : evs__pg_error(err, conn, NULL, what);
	if (rc == EVS_ETIMEOUT || PQpipelineStatus(conn) != PQ_PIPELINE_OFF) {
		/* Half a pipeline read: the connection cannot be reused. */
		evs__pg_drop(slot->conn);
		slot->conn = NULL;
	}
	return rc;
}
