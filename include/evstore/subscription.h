/* evstore/subscription.h: durable consumers of the all-events feed. */
#ifndef EVSTORE_SUBSCRIPTION_H
#define EVSTORE_SUBSCRIPTION_H

#include "common.h"
#include "error.h"
#include "event.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A subscription reads the store's feed of all events (or a filtered part
 * of it: one category, some event types, one member of a consumer group)
 * in the feed's order, from where it last stopped, then follows new
 * commits. It never skips an event whose transaction commits late, and a
 * stream's events always arrive in version order.
 *
 * A named subscription keeps a durable checkpoint in the store (on
 * PostgreSQL, in the schema's subscriptions table): reopening it resumes
 * after the last event whose checkpoint was stored. Only one instance per
 * name (and group member) is active at a time, by a lease with an epoch: a
 * second instance opens on standby and takes over when the lease expires,
 * and an instance that lost its lease can never store a checkpoint over
 * its successor's.
 *
 * A subscription handle is used by one thread at a time (the handler runs
 * on the thread that calls evs_sub_poll() or evs_sub_run()), except for
 * evs_sub_stop(), which any thread or a signal handler may call. Several
 * subscriptions on one store may run on several threads.
 */
typedef struct evs_sub evs_sub;

/** The events one handler call gets, oldest first. */
typedef struct evs_sub_batch evs_sub_batch;

struct pg_conn; /* libpq's PGconn, without including libpq-fe.h */

/** Delivery modes (evs_sub_options.mode). */
#define EVS_SUB_AT_LEAST_ONCE 0u /**< the handler runs outside any
                                      transaction; the checkpoint is stored
                                      every checkpoint_every events and on
                                      evs_sub_free(): after a crash, the
                                      events since it are handed out again */
#define EVS_SUB_TRANSACTIONAL 1u /**< PostgreSQL: the handler runs inside a
                                      transaction (evs_sub_batch_conn()),
                                      which also stores the checkpoint and
                                      commits with the handler's writes:
                                      each batch takes effect exactly once.
                                      The transaction may sit idle (the
                                      handler working between statements)
                                      for lease_ms at most: then the server
                                      ends it, so that a stalled owner
                                      holds neither the name nor the
                                      feed's fence.
                                      Memory store: the checkpoint moves
                                      only when the handler returns 0 */

/** Where a subscription starts when it has no stored checkpoint. */
#define EVS_SUB_FROM_START 0u    /**< the first event */
#define EVS_SUB_FROM_END 1u      /**< only events that commit from now on */
#define EVS_SUB_FROM_POSITION 2u /**< after evs_sub_options.start_position */

/** How a subscription learns of new events (evs_sub_options.wake). */
#define EVS_WAKE_POLL 0u   /**< adaptive polling: poll_min_ms while events
                                flow, doubling up to poll_max_ms when idle */
#define EVS_WAKE_NOTIFY 1u /**< PostgreSQL: also LISTEN for the store's
                                notifications (sent by stores opened with
                                evs_pg_options.notify; see README for their
                                cost to writers). A lost notification costs
                                latency only: polling goes on */

/** The options-struct version this header describes. */
#define EVS_SUB_OPTIONS_VERSION 1

/**
 * Settings of a subscription. Initialise with EVS_SUB_OPTIONS_INIT; a zero
 * means "the default".
 */
typedef struct evs_sub_options {
	unsigned int version;  /**< always first: EVS_SUB_OPTIONS_VERSION */
	const char *name;      /**< durable name (1 to 255 bytes of UTF-8);
	                            NULL: a transient subscription, whose
	                            position lives in the handle only. Copied */
	const char *category;  /**< only streams whose id, up to its first
	                            '-', is this; NULL: every stream. Copied */
	const char *const *types; /**< only these event types (a
	                               NULL-terminated list of up to 16);
	                               NULL: every type. Copied */
	unsigned int group_member; /**< this member, 0 to group_size - 1 */
	unsigned int group_size;   /**< members of a consumer group, each
	                                getting the streams whose stable hash
	                                falls to it; 0 or 1: no group */
	unsigned int mode;     /**< EVS_SUB_AT_LEAST_ONCE or
	                            EVS_SUB_TRANSACTIONAL */
	unsigned int start;    /**< EVS_SUB_FROM_START, _FROM_END or
	                            _FROM_POSITION: used when the subscription
	                            has no stored checkpoint yet */
	evs_position start_position; /**< with EVS_SUB_FROM_POSITION */
	unsigned int batch_max;  /**< events per handler call; 0: 256 */
	unsigned int checkpoint_every; /**< at-least-once: events handled
	                                    between stored checkpoints; 0:
	                                    every batch */
	unsigned int poll_min_ms; /**< 0: 20 */
	unsigned int poll_max_ms; /**< 0: 500 */
	unsigned int lease_ms;    /**< how long an owner keeps the name
	                               without renewing (it renews at half);
	                               0: 30000 */
	unsigned int wake;        /**< EVS_WAKE_POLL or EVS_WAKE_NOTIFY */
} evs_sub_options;

/** Defaults for evs_sub_options. */
#define EVS_SUB_OPTIONS_INIT                                               \
	{EVS_SUB_OPTIONS_VERSION, NULL, NULL, NULL, 0, 0,                  \
	 EVS_SUB_AT_LEAST_ONCE, EVS_SUB_FROM_START, {0, 0}, 0, 0, 0, 0, 0, \
	 EVS_WAKE_POLL}

/**
 * Handles one batch, oldest first. Return 0 to have it checkpointed. A
 * negative code (fill err with evs_error_set()) stops evs_sub_poll(),
 * which returns it; the batch is handed out again on the next poll (in
 * transactional mode, after its transaction was rolled back). The handler
 * must not call evs_sub_poll() or evs_sub_free() on its subscription.
 */
typedef int (*evs_sub_handler)(evs_sub_batch *batch, void *payload,
                               evs_error *err);

/** Number of events in @p batch (1 or more). */
EVS_EXTERN(size_t) evs_sub_batch_count(const evs_sub_batch *batch);

/**
 * The event at @p i. Borrowed: valid until the handler returns (keep a
 * copy with evs_event_dup()). NULL when @p i is out of range.
 */
EVS_EXTERN(const evs_event *) evs_sub_batch_get(const evs_sub_batch *batch,
                                                size_t i);

/**
 * Transactional mode on PostgreSQL: the connection whose open transaction
 * will also store the checkpoint; run the handler's SQL on it. Borrowed:
 * valid until the handler returns; never COMMIT, ROLLBACK or close it.
 * NULL in at-least-once mode and on the memory store.
 */
EVS_EXTERN(struct pg_conn *) evs_sub_batch_conn(evs_sub_batch *batch);

/**
 * Opens a subscription on @p store. A named one claims its lease: when
 * another live instance holds it, the handle opens on standby
 * (evs_sub_active() is 0) and takes the lease over once it expires. Its
 * stored checkpoint must still name an event the store has: otherwise the
 * database was rewound (a restore to an earlier point, a failover that
 * lost commits), and opening fails with EVS_EREWOUND rather than skip the
 * events that will reuse those positions.
 * @param[out] out  yours: free with evs_sub_free(); NULL on failure
 * @param store     borrowed: must outlive the subscription
 * @param opts      borrowed for the call; NULL for the defaults
 * @param err       may be NULL; filled on failure
 * @return 0, EVS_EINVALID (options; a name stored, for any member, with
 *         another filter or group size), EVS_EREWOUND, EVS_EUNSUPPORTED
 *         (an options version this library does not know; a backend
 *         without subscriptions), or a store error
 */
EVS_EXTERN(int) evs_sub_open(evs_sub **out, evs_store *store,
                             const evs_sub_options *opts, evs_error *err);

/**
 * Reads what the feed holds after the subscription's position and hands
 * it to @p handler in batches, storing checkpoints as the mode says, until
 * a page comes back short or @p max_events were handled. Does not wait
 * for new events: with none, it returns 0 at once (each request to the
 * database is bounded by the store's deadlines). A standby instance
 * tries to take the lease over instead, and renews it when due.
 * @param max_events  stop after about this many (whole batches); 0: no
 *                    limit
 * @return the number of events handled (0 or more), the handler's
 *         negative code, EVS_ELEASE (this instance lost its lease: it is
 *         on standby now, and its last batch did not count), or a store
 *         error (EVS_EUNAVAILABLE: the next poll reconnects and goes on
 *         from the stored checkpoint)
 */
EVS_EXTERN(int) evs_sub_poll(evs_sub *sub, size_t max_events,
                             evs_sub_handler handler, void *payload,
                             evs_error *err);

/**
 * A descriptor that becomes readable when new events may be there, for an
 * event loop (poll/epoll, libuv, libevent) to wait on beside
 * evs_sub_timeout_ms(); -1 when there is none (then wait for the timeout
 * alone). It can change after any evs_sub_poll() (a reconnect): read it
 * again each time. Borrowed: never close it.
 */
EVS_EXTERN(int) evs_sub_fd(const evs_sub *sub);

/**
 * Milliseconds until evs_sub_poll() should run even if evs_sub_fd() stays
 * quiet (0: at once): the adaptive poll interval, a lease to renew or to
 * take over.
 */
EVS_EXTERN(int) evs_sub_timeout_ms(const evs_sub *sub);

/**
 * Polls until evs_sub_stop() is called (or a poll fails), waiting between
 * polls on evs_sub_fd() and evs_sub_timeout_ms(). EVS_EUNAVAILABLE and
 * EVS_ETIMEOUT from the store, and EVS_ELEASE, are waited out and retried;
 * any other error, and the handler's, ends the run.
 * @return 0 once stopped, or the code that ended the run
 */
EVS_EXTERN(int) evs_sub_run(evs_sub *sub, evs_sub_handler handler,
                            void *payload, evs_error *err);

/**
 * Makes evs_sub_run() return after the batch in hand (and evs_sub_poll()
 * stop between batches). The handle stays stopped: a later evs_sub_run()
 * returns at once; free it, or open another. Safe from any thread and
 * from a signal handler.
 */
EVS_EXTERN(void) evs_sub_stop(evs_sub *sub);

/** 1 when this instance holds the subscription's lease (always 1 for a
 *  transient one), else 0 (on standby). */
EVS_EXTERN(int) evs_sub_active(const evs_sub *sub);

/** The position after the last event handled (checkpointed or not). */
EVS_EXTERN(void) evs_sub_position(const evs_sub *sub, evs_position *out);

/**
 * Stores the checkpoint (at-least-once), releases the lease so that a
 * successor can start at once, and frees the handle. NULL is fine.
 */
EVS_EXTERN(void) evs_sub_free(evs_sub *sub);

/** What holds the feed back, and how far it goes (evs_store_feed_info()). */
typedef struct evs_feed_info {
	evs_position head;  /**< the newest event stored, readable or not */
	uint64_t fence;     /**< order keys at or above this are not readable
	                         yet (0 on the memory store: no fence) */
	int holder_pid;     /**< PostgreSQL: the session whose open
	                         transaction is the fence; 0 when none (or a
	                         prepared transaction, see holder_prepared) */
	char holder_application[64]; /**< its application_name */
	char holder_state[32];       /**< its state ("idle in transaction") */
	char holder_database[64];    /**< the database it is connected to */
	int64_t holder_xact_start;   /**< its transaction's start, us since
	                                  1970 UTC; 0 when unknown */
	char holder_prepared[200];   /**< a prepared transaction's gid when
	                                  that is what holds it; "" otherwise */
} evs_feed_info;

/**
 * The feed's head and fence, and what holds the fence back: "why is my
 * consumer late?".
 * @return 0, EVS_EUNSUPPORTED (a backend without subscriptions), or a
 *         store error
 */
EVS_EXTERN(int) evs_store_feed_info(evs_feed_info *out, evs_store *store,
                                    evs_error *err);

/** A named subscription as stored (evs_store_subscriptions()). */
typedef struct evs_sub_info {
	const char *name;          /**< borrowed for the callback */
	unsigned int member, group_size;
	const char *filter;        /**< JSON: {"category": ..., "types": [...]} */
	evs_position position;     /**< its checkpoint */
	int64_t lag;               /**< events of its feed after the
	                                checkpoint and readable now, counted
	                                up to 1,000,000 */
	const char *owner;         /**< the instance holding the lease, or
	                                NULL */
	int64_t lease_until;       /**< us since 1970 UTC; 0 when none */
	int64_t lease_epoch;
	int64_t updated_at;        /**< when the checkpoint last moved */
} evs_sub_info;

/** Called once per stored subscription; non-zero stops the listing. */
typedef int (*evs_sub_info_cb)(const evs_sub_info *info, void *payload);

/**
 * Lists the named subscriptions, by name then member.
 * @param name  borrowed for the call: only this name's members; NULL:
 *              every subscription
 * @return 0, the callback's non-zero value, EVS_EUNSUPPORTED, or a store
 *         error
 */
EVS_EXTERN(int) evs_store_subscriptions(evs_store *store, const char *name,
                                        evs_sub_info_cb cb, void *payload,
                                        evs_error *err);

#ifdef __cplusplus
}
#endif
#endif
