/* The PostgreSQL backend's shared definitions, not exported. Its files:
 *   open.c        options, the schema check, evs_store_open_pg, free
 *   pool.c        connecting (settings forced, bounded waits), the pool
 *   exec.c        one request and its reply, within a deadline
 *   statements.c  the SQL evstore sends, in one place
 *   append.c      appends: one statement, or the schema's functions;
 *                 several appends in one call (append_many)
 *   group.c       group commit: concurrent appends sent together, as
 *                 one pipelined transaction
 *   read.c        one paging loop for a stream and for all streams
 *   subscription.c  leases, checkpoints, feeds and wake-ups of
 *                 subscriptions (sub_int.h)
 *   sqlstate.c    server errors to evstore codes
 */
#ifndef EVSTORE_PG_INT_H
#define EVSTORE_PG_INT_H

#include <libpq-fe.h>
#include <pthread.h>
#include <stdatomic.h>

#include "common_int.h"
#include "sub_int.h"

#define MAX_POOL_SIZE 1024

/* ---- the backend --------------------------------------------------------- */

typedef struct pg_slot {
	PGconn *conn;        /* NULL: not connected */
	int busy;
	int64_t released_ms; /* coarse monotonic time it was last given back */
	int stale;           /* its prepared statements no longer fit the
	                      * schema: dropped when given back */
} pg_slot;

typedef struct pg_backend {
	evs_backend base;
	char *conninfo;
	char *schema;
	char *session_sql; /* SETs: what every connection forces */
	char *prepare_sql; /* PREPAREs of the statements below */
	unsigned int pool_timeout_ms;
	unsigned int connect_timeout_ms;
	unsigned int call_timeout_ms;
	size_t read_buffer_bytes;
	evs_log_cb log;
	void *log_payload;
	char channel[64]; /* the schema's NOTIFY channel */
	size_t pool_size;
	pthread_mutex_t lock;
	pthread_cond_t freed;
	pg_slot *slots;
	/* Nonzero: the role may run PG_APPEND_CAS (see append.c). */
	atomic_int one_statement;
	/* Group commit (group.c); lanes is NULL when it is off (one lane:
	 * the queue of appends waiting to go out). */
	struct pg_lane *lanes;
	unsigned int n_lanes;
	unsigned int group_in_flight;
	unsigned int group_max_appends;
	size_t group_max_bytes;
	unsigned int group_lock_wait_ms;
} pg_backend;

/* The prepared statements (statements.c has their text). */
#define PG_APPEND "evs_append"         /* append_events() */
#define PG_APPEND_CAS "evs_append_cas" /* one-statement compare-and-set */
#define PG_IMPORT "evs_import"         /* import_events() */
#define PG_APPEND_MANY "evs_append_many" /* append_many() */
#define PG_IMPORT_MANY "evs_import_many" /* import_many() */
#define PG_READ "evs_read"             /* a page of one stream */
#define PG_READ_ALL "evs_read_all"     /* a page of the fenced feed */
#define PG_READ_BACK "evs_read_back"   /* a page of one stream, backwards */
#define PG_HEAD "evs_head"             /* a stream's version */
#define PG_DELETE "evs_delete"         /* delete_stream() */
#define PG_UNDELETE "evs_undelete"     /* undelete_stream() */
#define PG_SNAP_SAVE "evs_snap_save"   /* store_snapshot() */
#define PG_SNAP_LOAD "evs_snap_load"   /* a snapshot and events after it */
#define PG_SNAP_LIST "evs_snap_list"   /* a stream's snapshots */
#define PG_TRUNCATE "evs_truncate"     /* truncate_stream() */
#define PG_RETENTION "evs_retention"   /* set_retention() */
#define PG_SCAVENGE "evs_scavenge"     /* scavenge() */
#define PG_FIND_IDS "evs_find_ids"     /* where an event id is stored */
#define PG_LOCK_WAIT "evs_lock_wait"   /* lock_timeout for this transaction */
#define PG_FEED_ALL "evs_feed_all"     /* a subscription's page: all */
#define PG_FEED_CATEGORY "evs_feed_category" /* ... one category */
#define PG_FEED_TYPE "evs_feed_type"   /* ... one event type */
#define PG_FENCE "evs_fence"           /* the feed's fence now */
#define PG_SUB_CLAIM "evs_sub_claim"   /* subscription_claim() */
#define PG_SUB_STORE "evs_sub_store"   /* subscription_store() */
#define PG_SUB_RELEASE "evs_sub_release" /* subscription_release() */

/* ---- statements.c ---------------------------------------------------------- */

/* The SETs every connection runs first: what evstore's SQL relies on,
 * whatever the role, database or PGOPTIONS say. NULL when out of memory. */
char *evs__pg_session_sql(unsigned int statement_timeout_ms,
                          unsigned int lock_timeout_ms);

/* The PREPAREs of every statement above, schema-qualified; with a
 * channel, appends notify it (evs_pg_options.notify). */
char *evs__pg_prepare_sql(const char *schema, const char *channel);

/* Queries of the subscription diagnostics (yours: free()). */
char *evs__pg_feed_info_sql(const char *schema);
char *evs__pg_sub_list_sql(const char *schema);

/* "SELECT max(version) FROM <schema>.schema_version" and the like: the
 * text of the open-time probes, schema-qualified (yours: free()). */
char *evs__pg_schema_version_sql(const char *schema);
extern const char evs__pg_privilege_probe_sql[];

/* ---- time ------------------------------------------------------------------ */

/* Milliseconds on the monotonic clock; coarse: a cheaper, coarser read. */
int64_t evs__pg_now_ms(void);
int64_t evs__pg_coarse_ms(void);

/* now + ms, or 0 (no deadline) when ms is 0. */
int64_t evs__pg_deadline(unsigned int ms);

/* ---- pool.c ---------------------------------------------------------------- */

/* Opens a connection with evstore's settings forced, within
 * connect_timeout_ms; with `prepare`, prepares the statements too. */
int evs__pg_connect(PGconn **out, pg_backend *pb, int prepare,
                    evs_error *err);

/* Takes a free slot, connected and prepared, waiting at most
 * pool_timeout_ms. */
int evs__pg_acquire(pg_slot **out, pg_backend *pb, evs_error *err);

/* Gives a slot back. A slot whose connection broke or was dropped (conn
 * NULL or bad) is emptied, and so is every idle one. */
void evs__pg_release(pg_backend *pb, pg_slot *slot);

/* Closes a connection without ever blocking on the network (a frozen
 * peer must not hold the caller). */
void evs__pg_drop(PGconn *conn);

/* ---- exec.c ---------------------------------------------------------------- */

/* Sends one request on slot's connection and waits for its reply until
 * deadline (0: none): a prepared statement when stmt is not NULL, else
 * sql with its parameters, or, without parameters, the simple query sql
 * (which may hold several statements). On a reply,
 * returns 0 with *out set to the first result that is an error, else the
 * last one (check its status). Otherwise *out is NULL and the return is
 * EVS_ETIMEOUT (past the deadline: the connection was dropped),
 * EVS_EUNAVAILABLE (the connection broke) or EVS_ENOMEM, with err filled
 * ("what: ..."). */
int evs__pg_exec(PGresult **out, pg_backend *pb, pg_slot *slot,
                 const char *stmt, const char *sql, int n_params,
                 const char *const *params, int64_t deadline,
                 const char *what, evs_error *err);

/* The same on a bare connection (not yet in a slot): on EVS_ETIMEOUT the
 * caller drops it. */
int evs__pg_exec_conn(PGresult **out, PGconn *conn, const char *stmt,
                      const char *sql, int n_params,
                      const char *const *params, int64_t deadline,
                      const char *what, evs_error *err);

/* Sends n prepared statements as one pipeline ending in one Sync: one
 * round trip and one implicit transaction, committed when the Sync is
 * answered unless a statement failed (then it and every later one are
 * rolled back: a failed one's result is an error, the later ones'
 * PGRES_PIPELINE_ABORTED). On 0, res[i] holds statement i's result
 * (yours: PQclear each). Otherwise nothing is known of the transaction's
 * outcome: EVS_ETIMEOUT or EVS_EUNAVAILABLE, err filled, every res[i]
 * NULL, and the connection dropped when it cannot be reused. */
int evs__pg_pipeline(PGresult **res, pg_backend *pb, pg_slot *slot,
                     size_t n, const char *const *stmts,
                     const int *n_params, const char *const *const *params,
                     int64_t deadline, const char *what, evs_error *err);

/* A prepared statement whose rows come one at a time (single-row mode):
 * evs__pg_rows_start sends it, evs__pg_rows_next waits for the next row.
 * *row is a PGRES_SINGLE_TUPLE result (yours: PQclear), or NULL at the
 * end; an error result becomes the return code (err filled, and its
 * SQLSTATE copied to sqlstate, "" when none). After an
 * error or when stopping early, evs__pg_rows_abandon drops the
 * connection (a reply still arriving cannot be left on it). */
int evs__pg_rows_start(pg_backend *pb, pg_slot *slot, const char *stmt,
                       int n_params, const char *const *params,
                       int64_t deadline, const char *what, evs_error *err);
int evs__pg_rows_next(PGresult **row, pg_backend *pb, pg_slot *slot,
                      int64_t deadline, const char *what,
                      char sqlstate[6], evs_error *err);
void evs__pg_rows_abandon(pg_slot *slot);

/* ---- sqlstate.c ------------------------------------------------------------ */

/* Fills err from a failed result (res may be NULL) on conn: the code
 * follows the SQLSTATE, the message is `what` followed by the server's
 * message. Returns the code. */
int evs__pg_error(evs_error *err, PGconn *conn, const PGresult *res,
                  const char *what);

/* Whether res is the server's refusal of a prepared statement whose
 * result columns changed type since it was prepared (a migration, such
 * as 0005, changed a column under a running connection). The statement
 * did nothing; the connection must prepare its statements again. */
int evs__pg_stale_plan(const PGresult *res);

/* Marks the slot's connection for dropping when given back, if res says
 * its statements are stale. */
void evs__pg_note_result(pg_slot *slot, const PGresult *res);

/* The evs code for a SQLSTATE ("" or NULL when there is none). */
int evs__pg_code(const char *sqlstate, int connection_bad);

/* Fills err for a connection attempt that failed: EVS_ECONFIG when the
 * server or libpq refused the settings (no such database or role,
 * authentication, SSL), else EVS_EUNAVAILABLE. Returns the code. */
int evs__pg_connect_error(evs_error *err, PGconn *conn);

/* ---- subscription.c ------------------------------------------------------------------ */

extern const evs__sub_ops evs__pg_sub_ops;

/* ---- append.c, read.c ------------------------------------------------------ */

int evs__pg_append(int64_t *version_out, evs_backend *be, const char *id,
                   int64_t expected, evs_event *const *events, size_t n,
                   evs_error *err);
int evs__pg_append_ext(evs_append_result *out, evs_backend *be,
                       const char *id, int64_t expected,
                       evs_event *const *events, size_t n,
                       unsigned int flags, evs_error *err);
/* One append in a transaction of its own (no group commit). */
int evs__pg_append_alone(evs_append_result *out, pg_backend *pb,
                         const char *id, int64_t expected,
                         evs_event *const *events, size_t n,
                         unsigned int flags, evs_error *err);

/* ---- group.c --------------------------------------------------------------- */

/* One append through group commit (pb->lanes): alone when fewer than
 * group_in_flight are out, else together with the appends that queued behind
 * the one in flight. */
int evs__pg_group_append(evs_append_result *out, pg_backend *pb,
                         const char *id, int64_t expected,
                         evs_event *const *events, size_t n,
                         evs_error *err);

/* Makes pb->lanes (n of them); frees them. */
int evs__pg_group_init(pg_backend *pb, unsigned int n_lanes);
void evs__pg_group_free(pg_backend *pb);

/* The four text arrays of an append's events (ids, types, data,
 * metadata), each yours to free(); 0 or EVS_ENOMEM. */
int evs__pg_encode_events(char *out[4], evs_event *const *events, size_t n);

int evs__pg_append_many(evs_backend *be, evs_append_req *reqs, size_t n,
                        unsigned int flags, evs_error *err);

/* One append_many() (import_many() with EVS_APPEND_KEEP_TIME) call on an
 * acquired slot, filling every request. Returns 0, the first failing
 * request's rc (err filled for it), or a whole-call code with *whole
 * saying why: PG_MANY_LOCAL (no reply: the connection broke, the
 * deadline passed, out of memory; the outcome is unknown) or
 * PG_MANY_SERVER (the server refused the call: nothing stored). The
 * requests' fields are set only when *whole is PG_MANY_OK; then each
 * (when not NULL, n records) gets every failed request's error. */
enum { PG_MANY_OK = 0, PG_MANY_LOCAL = 1, PG_MANY_SERVER = 2 };
int evs__pg_many_on_slot(pg_backend *pb, pg_slot *slot, evs_append_req *reqs,
                         size_t n, unsigned int flags,
                         unsigned int lock_wait_ms, int64_t deadline,
                         int *whole, evs_error *err, evs_error *each);

int evs__pg_read(evs_backend *be, const char *id, int64_t after,
                 evs_backend_event_cb cb, void *payload, evs_error *err);
int evs__pg_read_backward(evs_backend *be, const char *id, int64_t before,
                          size_t max_events, evs_backend_event_cb cb,
                          void *payload, evs_error *err);
int evs__pg_read_all(evs_backend *be, const evs_position *after,
                     size_t max_events, evs_backend_event_cb cb,
                     void *payload, evs_error *err);
int evs__pg_head(int64_t *out, evs_backend *be, const char *id,
                 evs_error *err);

/* SQLSTATE 22P05: the database's encoding cannot hold a character of a
 * parameter. In a read by stream id, that id cannot name a stream there:
 * it has no events (a load is empty, the version EVS_ENOTFOUND). */
#define PG_UNTRANSLATABLE "22P05"

/* One page of a subscription's feed (sub.c): at most max events after
 * `after`; *more 1 when another page may follow. types: the feed's types
 * as a text[] literal (NULL: none, or the one type of a type feed). */
struct evs__feed;
int evs__pg_read_feed(pg_backend *pb, const struct evs__feed *feed,
                      const char *types, const evs_position *after,
                      size_t max, evs_backend_event_cb cb, void *payload,
                      int *more, evs_error *err);

/* The stream's version on an acquired slot (EVS_ENOTFOUND when none),
 * and (when deleted is not NULL) whether it is deleted. */
int evs__pg_head_on(int64_t *out, int *deleted, pg_backend *pb,
                    pg_slot *slot, const char *id, int64_t deadline,
                    evs_error *err);

/* The snapshot slots (read.c: loading; lifecycle.c: the others). */
int evs__pg_load_snapshot(evs_backend *be, const char *id, const char *kind,
                          unsigned int format, evs_snapshot_cb scb,
                          evs_backend_event_cb cb, void *payload,
                          evs_error *err);
int evs__pg_save_snapshot(int *stored, evs_backend *be, const char *id,
                          const char *kind, unsigned int format,
                          int64_t version, const char *json, size_t len,
                          evs_error *err);
int evs__pg_list_snapshots(evs_backend *be, const char *id,
                           evs_snapshot_info_cb cb, void *payload,
                           evs_error *err);

/* Truncation, retention and scavenge (lifecycle.c). */
int evs__pg_truncate(evs_backend *be, const char *id, int64_t expected,
                     int64_t before, unsigned int flags, evs_error *err);
int evs__pg_set_retention(evs_backend *be, const char *id, int64_t expected,
                          const evs_retention *r, unsigned int flags,
                          evs_error *err);
int evs__pg_scavenge(size_t *removed, evs_backend *be, size_t max_events,
                     evs_error *err);

/* The lifecycle slots (lifecycle.c). */
int evs__pg_delete(int64_t *version_out, evs_backend *be, const char *id,
                   int64_t expected, unsigned int flags, evs_error *err);
int evs__pg_undelete(int64_t *version_out, evs_backend *be, const char *id,
                     int64_t expected, evs_error *err);

#endif
