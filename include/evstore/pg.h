/* evstore/pg.h: the PostgreSQL backend. */
#ifndef EVSTORE_PG_H
#define EVSTORE_PG_H

#include "backend.h"
#include "common.h"
#include "error.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The options-struct version this header describes. */
#define EVS_PG_OPTIONS_VERSION 3

/** The schema version (highest sql/ migration) this library works with. */
#define EVS_PG_SCHEMA_VERSION 7

/** Levels of the messages a log callback receives (PostgreSQL's). */
#define EVS_LOG_DEBUG 0   /**< DEBUG1 to DEBUG5 */
#define EVS_LOG_INFO 1    /**< LOG and INFO */
#define EVS_LOG_NOTICE 2  /**< NOTICE */
#define EVS_LOG_WARNING 3 /**< WARNING */

/**
 * Receives the server's notices and warnings on evstore's connections
 * (a trigger's RAISE NOTICE, a deprecation warning). Called on the thread
 * whose call received the message, so possibly on several threads at
 * once; it must not call the store.
 * @param level     EVS_LOG_DEBUG to EVS_LOG_WARNING
 * @param sqlstate  borrowed for the call: five characters ("01000")
 * @param message   borrowed for the call: the server's message (a
 *                  RAISE NOTICE text may hold newlines)
 * @param payload   evs_pg_options.log_payload
 */
typedef void (*evs_log_cb)(int level, const char *sqlstate,
                           const char *message, void *payload);

/**
 * Settings of a PostgreSQL store. Initialise with EVS_PG_OPTIONS_INIT,
 * then change what you need; a zero means "the default". A struct of an
 * older version (version 1) is read only up to its own last field.
 */
typedef struct evs_pg_options {
	unsigned int version;  /**< always first: EVS_PG_OPTIONS_VERSION */
	const char *schema;    /**< schema of the evstore tables; NULL:
	                            "evstore". Copied. */
	unsigned int pool_size;       /**< connections kept; 0: 4 */
	unsigned int pool_timeout_ms; /**< longest wait for a free connection
	                                   before EVS_ETIMEOUT; 0: 5000 */
	unsigned int statement_timeout_ms; /**< server statement_timeout;
	                                        0: the server's setting */
	unsigned int lock_timeout_ms;      /**< server lock_timeout; 0: the
	                                        server's setting */
	/* ---- version 2 ---- */
	unsigned int connect_timeout_ms; /**< longest wait for a connection
	                                      to be made (per host of a
	                                      multi-host conninfo), before
	                                      EVS_EUNAVAILABLE; 0: 10000.
	                                      A connect_timeout above 0 in
	                                      the conninfo, a service file
	                                      or PGCONNECT_TIMEOUT wins */
	unsigned int call_timeout_ms; /**< client-side deadline of every
	                                   request to the server (an append,
	                                   a version check, one page of a
	                                   read): past it the connection is
	                                   closed and the call fails with
	                                   EVS_ETIMEOUT; 0: 60000 */
	size_t read_buffer_bytes; /**< bytes of events a streaming read
	                               gathers before handing them out (it
	                               may hold one event more); 0: 1 MiB */
	evs_log_cb log;    /**< server notices and warnings; NULL: dropped */
	void *log_payload; /**< passed to @p log */
	unsigned int notify; /**< nonzero: every append that stores events
	                          also NOTIFYs the schema's channel
	                          ("evstore_" and the schema name), waking
	                          subscriptions opened with EVS_WAKE_NOTIFY at
	                          once. It costs writers: PostgreSQL commits
	                          notifying transactions one at a time (README,
	                          "Subscriptions"); 0: off */
	/* ---- version 3 ---- */
	unsigned int group_commit_off; /**< nonzero: every append goes out
	                                    alone, in a transaction of its
	                                    own. 0 (the default): group
	                                    commit, see evs_store_open_pg() */
	unsigned int group_max_appends; /**< most appends sent together;
	                                     0: 64 */
	size_t group_max_bytes; /**< most bytes of event data and metadata
	                             sent together (an append above it goes
	                             alone); 0: 1 MiB */
	unsigned int group_in_flight; /**< appends (alone or in groups)
	                                   out at once; past it, appends
	                                   queue and go out together;
	                                   0: pool_size */
	unsigned int group_lock_wait_ms; /**< longest wait of a group for a
	                                      stream's row lock (one held by
	                                      another session) before its
	                                      appends go out one by one;
	                                      0: 1000 */
} evs_pg_options;

/** Defaults for evs_pg_options. */
#define EVS_PG_OPTIONS_INIT \
	{EVS_PG_OPTIONS_VERSION, NULL, 0, 0, 0, 0, 0, 0, 0, NULL, NULL, 0, \
	 0, 0, 0, 0, 0}

/**
 * Opens a store on a PostgreSQL database whose schema was created by the
 * sql/ migrations (psql -f, or `evstore migrate`). Opening never changes
 * the schema: it connects once, checks the schema version (refusing with
 * EVS_ESCHEMA, naming the migration to apply, when the schema is absent,
 * older or newer than EVS_PG_SCHEMA_VERSION) and the role's privileges,
 * and keeps that connection in the pool.
 *
 * Every connection forces what evstore's SQL relies on, whatever the
 * role, the database or PGOPTIONS say: client_encoding UTF8, READ
 * COMMITTED, array_nulls on, a search_path of pg_catalog, pg_temp, generic
 * plans. TCP keepalives and tcp_user_timeout are on unless the conninfo
 * sets them. No call waits without a bound: connect_timeout_ms,
 * pool_timeout_ms and call_timeout_ms (see evs_pg_options). The server's
 * notices go to opts->log, never to stdout or stderr.
 *
 * The store keeps a pool of connections, opened as calls need them, each
 * used by one thread at a time; the handle is safe to share between
 * threads (not across fork(): a child must not use its parent's store). A
 * call whose connection breaks fails with EVS_EUNAVAILABLE, one that runs
 * out of time with EVS_ETIMEOUT, and the next call reconnects; an append
 * that failed either way may or may not have been stored, and resending
 * the same event ids stores it exactly once. An append stores its events
 * in one transaction: a prepared compare-and-set statement at an exact
 * expected version when the role holds the optional grants (README,
 * "Least privilege"; checked at open), else a call of the schema's
 * append_events function, one round trip either way. When the
 * compare-and-set matches nothing (a conflict, a replay, a stream not
 * there yet), a second round trip calls the function, which reports the
 * true version or the idempotent replay.
 *
 * Group commit (unless opts->group_commit_off): evs_store_append() calls
 * that different threads make at the same time are sent together when
 * they come faster than the connections take them. While fewer than
 * group_in_flight appends are out, an append goes out at once, alone, as
 * without group commit; the appends that arrive while all are out queue,
 * and go out together when one ends: their own statements, in stream-id
 * order, pipelined in one transaction (one round trip, one commit flush;
 * at most group_max_appends and group_max_bytes, one append per stream).
 * Nothing waits for a group to form. Each append keeps its own
 * expected-version check and gets exactly the answer it would get alone
 * (a conflict fails that append only; two appends to one stream go in
 * successive groups), and returns only after its group committed. If
 * the connection breaks under a group, every append of it fails with
 * EVS_EUNAVAILABLE, and resending is a replay as always. A group the
 * server refuses (a lock held past group_lock_wait_ms, a duplicate id, a
 * value the database cannot hold) stored nothing, and its appends go out
 * again one at a time; so does an append whose compare-and-set matched
 * nothing, to learn why. Appends with flags (evs_store_append_ext())
 * always go alone.
 *
 * Reads page through a stream,
 * holding at most read_buffer_bytes of events plus one; the callbacks
 * run with no connection held and no statement open, so they may call
 * the store, even with a pool of one.
 *
 * @param[out] out  yours: free with evs_store_free(); NULL on failure
 * @param conninfo  borrowed for the call (copied): a libpq conninfo string
 *                  or URI; "" or NULL uses libpq's defaults and the PG*
 *                  environment variables
 * @param opts      borrowed for the call; NULL for the defaults
 * @param err       may be NULL; filled on failure
 * @return 0, EVS_EUNAVAILABLE (cannot connect, or not within
 *         connect_timeout_ms), EVS_ECONFIG (the server or libpq refused the
 *         settings: no such database or role, authentication, SSL; or a
 *         conninfo libpq cannot parse), EVS_ESCHEMA, EVS_EINVALID (bad
 *         options), EVS_EUNSUPPORTED (options version), EVS_ETIMEOUT,
 *         EVS_EDB, or EVS_ENOMEM
 */
EVS_EXTERN(int) evs_store_open_pg(evs_store **out, const char *conninfo,
                                  const evs_pg_options *opts, evs_error *err);

#ifdef __cplusplus
}
#endif
#endif
