/* Subscriptions on PostgreSQL: leases and checkpoints through the
 * schema's subscription_* functions (sql/0003), the fenced feeds of
 * read.c, handler transactions on a pooled connection, and, with
 * EVS_WAKE_NOTIFY, a connection of the subscription's own that LISTENs
 * on the schema's channel. Everything goes through the pool's bounded
 * requests; nothing keeps session state but the LISTEN. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_int.h"
#include "pg_int.h"
#include "sub_int.h"

/* After a lost listen connection, wait this long before trying again. */
#define RELISTEN_MS 1000

struct evs__sub_state {
	pg_backend *pb;
	const char *name;       /* the front end's copies */
	const evs__feed *feed;
	const char *owner;
	char member[16], size[16], lease[16];
	char *types;            /* text[] literal of the feed's types */
	pg_slot *txn;           /* transactional: the open transaction's */
	int wake;
	PGconn *listen;         /* EVS_WAKE_NOTIFY */
	int64_t relisten_at;
};

/* Appends one quoted element of a text-format array literal. */
static size_t array_elem(char *out, const char *s)
{
	size_t n = 0;

	out[n++] = '"';
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			out[n++] = '\\';
		out[n++] = *s;
	}
	out[n++] = '"';
	return n;
}

static char *types_literal(const evs__feed *feed)
{
	size_t cap = 3, i, n = 0;
	char *lit;

	for (i = 0; i < feed->n_types; i++)
		cap += 2 * strlen(feed->types[i]) + 3;
	if ((lit = malloc(cap)) == NULL)
		return NULL;
	lit[n++] = '{';
	for (i = 0; i < feed->n_types; i++) {
		if (i)
			lit[n++] = ',';
		n += array_elem(lit + n, feed->types[i]);
	}
	lit[n++] = '}';
	lit[n] = '\0';
	return lit;
}

/* (Re)opens the listen connection; on failure it stays closed and polling
 * goes on (a lost notification costs latency, never an event). */
static void listen_open(evs__sub_state *st)
{
	char sql[128];
	PGresult *res = NULL;
	PGconn *conn;

	st->relisten_at = evs__pg_now_ms() + RELISTEN_MS;
	if (evs__pg_connect(&conn, st->pb, 0, NULL) < 0)
		return;
	snprintf(sql, sizeof(sql), "LISTEN \"%s\"", st->pb->channel);
	if (evs__pg_exec_conn(&res, conn, NULL, sql, 0, NULL,
	                      evs__pg_deadline(st->pb->call_timeout_ms), "",
	                      NULL) < 0 ||
	    PQresultStatus(res) != PGRES_COMMAND_OK) {
		PQclear(res);
		evs__pg_drop(conn);
		return;
	}
	PQclear(res);
	st->listen = conn;
}

static int pg_sub_open(evs__sub_state **out, evs_backend *be,
                       const char *name, const evs__feed *feed,
                       const char *owner, unsigned int lease_ms,
                       unsigned int wake, evs_error *err)
{
	evs__sub_state *st;

	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return evs__error_nomem(err);
	st->pb = (pg_backend *)be;
	st->name = name;
	st->feed = feed;
	st->owner = owner;
	st->wake = (int)wake;
	snprintf(st->member, sizeof(st->member), "%u", feed->member);
	snprintf(st->size, sizeof(st->size), "%u", feed->size);
	snprintf(st->lease, sizeof(st->lease), "%u", lease_ms);
	if (feed->n_types > 0 && (st->types = types_literal(feed)) == NULL) {
		free(st);
		return evs__error_nomem(err);
	}
	if (wake == EVS_WAKE_NOTIFY)
		listen_open(st);
	*out = st;
	return 0;
}

/* Runs a prepared statement on a pooled connection (or on the open
 * transaction's, when there is one). */
static int run(PGresult **res, evs__sub_state *st, const char *stmt,
               int n, const char *const *params, const char *what,
               evs_error *err)
{
	pg_slot *slot = st->txn;
	int rc;

	*res = NULL;
	if (slot == NULL && (rc = evs__pg_acquire(&slot, st->pb, err)) < 0)
		return rc;
	rc = evs__pg_exec(res, st->pb, slot, stmt, NULL, n, params,
	                  evs__pg_deadline(st->pb->call_timeout_ms), what, err);
	if (rc == 0 && PQresultStatus(*res) != PGRES_TUPLES_OK) {
		rc = evs__pg_error(err, slot->conn, *res, what);
		PQclear(*res);
		*res = NULL;
	}
	if (st->txn == NULL)
		evs__pg_release(st->pb, slot);
	return rc;
}

static void parse_position(evs_position *out, const PGresult *res, int row,
                           int col)
{
	out->commit = strtoull(PQgetvalue(res, row, col), NULL, 10);
	out->global = strtoll(PQgetvalue(res, row, col + 1), NULL, 10);
}

static int pg_sub_claim(evs__sub_state *st, evs__claim *out, evs_error *err)
{
	const char *params[6] = {st->name,          st->member,
	                         st->size,          st->feed->filter_json,
	                         st->owner,         st->lease};
	PGresult *res;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = run(&res, st, PG_SUB_CLAIM, 6, params,
	         "could not claim the subscription", err);
	if (rc < 0)
		return rc;
	out->status = atoi(PQgetvalue(res, 0, 0));
	if (out->status == EVS__CLAIM_OK) {
		out->epoch = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		out->has_checkpoint = !PQgetisnull(res, 0, 2);
		if (out->has_checkpoint)
			parse_position(&out->position, res, 0, 2);
	} else if (out->status == EVS__CLAIM_BUSY) {
		out->lease_left_ms = strtoll(PQgetvalue(res, 0, 5), NULL, 10);
	}
	PQclear(res);
	return 0;
}

static int pg_sub_end(evs__sub_state *st, evs_position *out, evs_error *err)
{
	PGresult *res;
	uint64_t fence;
	int rc = run(&res, st, PG_FENCE, 0, NULL,
	             "could not read the feed's fence", err);

	if (rc < 0)
		return rc;
	/* Every event below the fence committed before now; one at or
	 * above it may still be committing: start just below it. */
	fence = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
	PQclear(res);
	out->commit = fence > 0 ? fence - 1 : 0;
	out->global = INT64_MAX;
	return 0;
}

static int pg_sub_read(evs__sub_state *st, const evs_position *after,
                       size_t max, evs_backend_event_cb cb, void *payload,
                       int *more, evs_error *err)
{
	return evs__pg_read_feed(st->pb, st->feed, st->types, after, max, cb,
	                         payload, more, err);
}

static int pg_sub_begin(evs__sub_state *st, struct pg_conn **conn,
                        evs_error *err)
{
	char sql[128];
	PGresult *res = NULL;
	pg_slot *slot;
	int rc;

	*conn = NULL;
	if ((rc = evs__pg_acquire(&slot, st->pb, err)) < 0)
		return rc;
	/* An owner that stalls inside its transaction (stopped, paused,
	 * swapped out) must not hold the subscription's row, or the feed's
	 * fence, past its lease: the server ends the session once it sits
	 * idle that long, and a successor can take over. */
	snprintf(sql, sizeof(sql), "BEGIN; SET LOCAL "
	         "idle_in_transaction_session_timeout = %s", st->lease);
	rc = evs__pg_exec(&res, st->pb, slot, NULL, sql, 0, NULL,
	                  evs__pg_deadline(st->pb->call_timeout_ms),
	                  "could not begin the handler's transaction", err);
	if (rc == 0 && PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = evs__pg_error(err, slot->conn, res,
		                   "could not begin the handler's transaction");
	PQclear(res);
	if (rc < 0) {
		evs__pg_release(st->pb, slot);
		return rc;
	}
	st->txn = slot;
	*conn = (struct pg_conn *)slot->conn;
	return 0;
}

static int pg_sub_finish(evs__sub_state *st, int commit, evs_error *err)
{
	pg_slot *slot = st->txn;
	PGresult *res = NULL;
	int rc;

	if (slot == NULL)
		return 0;
	st->txn = NULL;
	if (slot->conn == NULL) {
		evs__pg_release(st->pb, slot);
		return evs_error_set(err, EVS_EUNAVAILABLE, NULL,
		                     "the handler's transaction lost its "
		                     "connection");
	}
	rc = evs__pg_exec(&res, st->pb, slot, NULL,
	                  commit ? "COMMIT" : "ROLLBACK", 0, NULL,
	                  evs__pg_deadline(st->pb->call_timeout_ms),
	                  commit ? "could not commit the handler's transaction"
	                         : "could not roll back the handler's "
	                           "transaction",
	                  err);
	if (rc == 0 && PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = evs__pg_error(err, slot->conn, res,
		                   "could not commit the handler's transaction");
	/* COMMIT of a transaction an error aborted answers ROLLBACK. */
	if (rc == 0 && commit && strcmp(PQcmdStatus(res), "COMMIT") != 0)
		rc = evs_error_set(err, EVS_EDB, NULL,
		                   "the handler's transaction was rolled back "
		                   "(%s)", PQcmdStatus(res));
	PQclear(res);
	evs__pg_release(st->pb, slot);
	return rc;
}

static int pg_sub_store(evs__sub_state *st, int64_t epoch,
                        const evs_position *pos, const evs_uuid *last_id,
                        evs_error *err)
{
	char epoch_text[24], commit_text[24], global_text[24];
	char id[EVS_UUID_STRLEN + 1];
	const char *params[6] = {st->name,    st->member,  epoch_text,
	                         commit_text, global_text, NULL};
	PGresult *res;
	int rc, stored;

	if (st->txn != NULL && (st->txn->conn == NULL ||
	                        PQtransactionStatus(st->txn->conn) !=
	                                PQTRANS_INTRANS))
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "the handler's transaction is not open "
		                     "any more (an error in the handler's SQL, "
		                     "or its own COMMIT or ROLLBACK)");
	snprintf(epoch_text, sizeof(epoch_text), "%lld", (long long)epoch);
	snprintf(commit_text, sizeof(commit_text), "%llu",
	         (unsigned long long)pos->commit);
	snprintf(global_text, sizeof(global_text), "%lld",
	         (long long)pos->global);
	if (last_id != NULL) {
		evs_uuid_format(id, last_id);
		params[5] = id;
	}
	rc = run(&res, st, PG_SUB_STORE, 6, params,
	         "could not store the subscription's checkpoint", err);
	if (rc < 0)
		return rc;
	stored = PQntuples(res) == 1 && !PQgetisnull(res, 0, 0) &&
	         strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	if (!stored)
		return evs_error_set(err, EVS_ELEASE, NULL,
		                     "subscription \"%s\" lost its lease",
		                     st->name);
	return 0;
}

static void pg_sub_release(evs__sub_state *st, int64_t epoch)
{
	char epoch_text[24];
	const char *params[3] = {st->name, st->member, epoch_text};
	PGresult *res;

	snprintf(epoch_text, sizeof(epoch_text), "%lld", (long long)epoch);
	if (run(&res, st, PG_SUB_RELEASE, 3, params, "", NULL) == 0)
		PQclear(res);
}

static int pg_sub_fd(const evs__sub_state *st)
{
	return st->listen != NULL ? PQsocket(st->listen) : -1;
}

static int pg_sub_drain(evs__sub_state *st)
{
	PGnotify *n;
	int woke = 0;

	if (st->wake != EVS_WAKE_NOTIFY)
		return 0;
	if (st->listen != NULL &&
	    (!PQconsumeInput(st->listen) ||
	     PQstatus(st->listen) != CONNECTION_OK)) {
		evs__pg_drop(st->listen);
		st->listen = NULL;
		woke = 1; /* notifications may have been lost: read */
	}
	while (st->listen != NULL && (n = PQnotifies(st->listen)) != NULL) {
		woke = 1;
		PQfreemem(n);
	}
	if (st->listen == NULL && evs__pg_now_ms() >= st->relisten_at)
		listen_open(st);
	return woke;
}

static void pg_sub_close(evs__sub_state *st)
{
	if (st->txn != NULL)
		pg_sub_finish(st, 0, NULL);
	evs__pg_drop(st->listen);
	free(st->types);
	free(st);
}

static int pg_feed_info(evs_backend *be, evs_feed_info *out, evs_error *err)
{
	pg_backend *pb = (pg_backend *)be;
	char *sql = evs__pg_feed_info_sql(pb->schema);
	PGresult *res = NULL;
	pg_slot *slot;
	int rc;

	if (sql == NULL)
		return evs__error_nomem(err);
	if ((rc = evs__pg_acquire(&slot, pb, err)) < 0) {
		free(sql);
		return rc;
	}
	rc = evs__pg_exec(&res, pb, slot, NULL, sql, 0, NULL,
	                  evs__pg_deadline(pb->call_timeout_ms),
	                  "could not read the feed's state", err);
	free(sql);
	if (rc == 0 && PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = evs__pg_error(err, slot->conn, res,
		                   "could not read the feed's state");
	if (rc == 0) {
		out->fence = strtoull(PQgetvalue(res, 0, 0), NULL, 10);
		if (!PQgetisnull(res, 0, 1))
			parse_position(&out->head, res, 0, 1);
		if (!PQgetisnull(res, 0, 3)) {
			out->holder_pid = atoi(PQgetvalue(res, 0, 3));
			snprintf(out->holder_application,
			         sizeof(out->holder_application), "%s",
			         PQgetvalue(res, 0, 4));
			snprintf(out->holder_state, sizeof(out->holder_state),
			         "%s", PQgetvalue(res, 0, 5));
			snprintf(out->holder_database,
			         sizeof(out->holder_database), "%s",
			         PQgetvalue(res, 0, 6));
			out->holder_xact_start =
				strtoll(PQgetvalue(res, 0, 7), NULL, 10);
		}
		if (!PQgetisnull(res, 0, 8))
			snprintf(out->holder_prepared,
			         sizeof(out->holder_prepared), "%s",
			         PQgetvalue(res, 0, 8));
	}
	PQclear(res);
	evs__pg_release(pb, slot);
	return rc;
}

static int pg_sub_list(evs_backend *be, const char *name, evs_sub_info_cb cb,
                       void *payload, evs_error *err)
{
	const char *params[1] = {name};
	pg_backend *pb = (pg_backend *)be;
	char *sql = evs__pg_sub_list_sql(pb->schema);
	PGresult *res = NULL;
	pg_slot *slot;
	int rc, i;

	if (sql == NULL)
		return evs__error_nomem(err);
	if ((rc = evs__pg_acquire(&slot, pb, err)) < 0) {
		free(sql);
		return rc;
	}
	rc = evs__pg_exec(&res, pb, slot, NULL, sql, 1, params,
	                  evs__pg_deadline(pb->call_timeout_ms),
	                  "could not list the subscriptions", err);
	free(sql);
	if (rc == 0 && PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = evs__pg_error(err, slot->conn, res,
		                   "could not list the subscriptions");
	/* The rows are ours: the connection can go back first. */
	evs__pg_release(pb, slot);
	for (i = 0; rc == 0 && i < PQntuples(res); i++) {
		evs_sub_info in;

		memset(&in, 0, sizeof(in));
		in.name = PQgetvalue(res, i, 0);
		in.member = (unsigned int)strtoul(PQgetvalue(res, i, 1), NULL, 10);
		in.group_size =
			(unsigned int)strtoul(PQgetvalue(res, i, 2), NULL, 10);
		in.filter = PQgetvalue(res, i, 3);
		parse_position(&in.position, res, i, 4);
		in.owner = PQgetisnull(res, i, 6) ? NULL : PQgetvalue(res, i, 6);
		in.lease_until = PQgetisnull(res, i, 7)
		                         ? 0
		                         : strtoll(PQgetvalue(res, i, 7), NULL, 10);
		in.lease_epoch = strtoll(PQgetvalue(res, i, 8), NULL, 10);
		in.updated_at = strtoll(PQgetvalue(res, i, 9), NULL, 10);
		in.lag = strtoll(PQgetvalue(res, i, 10), NULL, 10);
		rc = cb(&in, payload);
	}
	PQclear(res);
	return rc;
}

const evs__sub_ops evs__pg_sub_ops = {
	pg_sub_open,   pg_sub_claim,   pg_sub_end,     pg_sub_read,
	pg_sub_begin,  pg_sub_finish,  pg_sub_store,   pg_sub_release,
	pg_sub_fd,     pg_sub_drain,   pg_sub_close,   pg_feed_info,
	pg_sub_list,
};
