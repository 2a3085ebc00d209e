/* evstore/store.h: the generic event store: append, load, current version. */
#ifndef EVSTORE_STORE_H
#define EVSTORE_STORE_H

#include "common.h"
#include "error.h"
#include "event.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A handle on an event store: one backend (in-memory, PostgreSQL or your
 * own) behind the same interface. Safe to share between threads: every
 * call may run concurrently with any other call on the same handle, except
 * evs_store_free().
 */
typedef struct evs_store evs_store;

/**
 * Frees a store and its backend. No call on the store may be running or
 * start afterwards. NULL is fine.
 */
EVS_EXTERN(void) evs_store_free(evs_store *store);

/**
 * Appends events to one aggregate's stream, all or none, as versions
 * expected_version + 1, expected_version + 2, ...
 *
 * Concurrency: with an exact expected version (EVS_NO_VERSION, 0, 1, ...)
 * the append fails with EVS_ECONFLICT unless the stream's version is
 * exactly that; err then carries the aggregate id and both versions
 * (actual -1 when the stream has no events). EVS_ANY_VERSION skips the
 * check; EVS_STREAM_EXISTS only requires one stored event or more.
 *
 * Idempotence: re-sending events whose ids are already stored in this
 * stream, in the same order, directly after the same expected version
 * (anywhere in the stream, for EVS_ANY_VERSION and EVS_STREAM_EXISTS)
 * succeeds and stores nothing, so a call whose reply was lost can simply
 * be retried, even while the lost call is still running (evs_store_append_ext()
 * tells a replay from a new append). Any other reuse of a stored event id fails with
 * EVS_EDUPLICATE, and nothing is stored.
 *
 * An empty batch is a no-op that succeeds without any check.
 *
 * Deleted streams (evs_store_delete()) take no appends: EVS_EDELETED,
 * err carrying the stream's version; a replay of events the stream
 * already holds is still a replay. Aggregate ids and event types that
 * start with '$' are evstore's own (EVS_SYSTEM_PREFIX): an append with
 * one fails with EVS_EINVALID, except a restore (EVS_APPEND_KEEP_TIME).
 *
 * @param[out] version_out  may be NULL; the version of the batch's last
 *                          event (for a replay, where it was first stored);
 *                          for an empty batch, the stream's current version
 *                          (EVS_NO_VERSION when it has no events)
 * @param store             borrowed
 * @param aggregate_id      borrowed for the call: 1 to 255 bytes of UTF-8,
 *                          no control characters
 * @param expected_version  EVS_NO_VERSION for a new stream, the current
 *                          version, EVS_ANY_VERSION or EVS_STREAM_EXISTS
 * @param events            borrowed for the call; may be NULL only when
 *                          n_events is 0; ids must be distinct
 * @param n_events          number of events
 * @param err               may be NULL; filled on failure
 * @return 0, EVS_ECONFLICT, EVS_EDUPLICATE, EVS_EDELETED, EVS_EINVALID
 *         (naming the argument; nothing stored), or a backend error
 *         (EVS_ENOMEM, EVS_EDB, EVS_EUNAVAILABLE, EVS_ETIMEOUT)
 */
EVS_EXTERN(int) evs_store_append(int64_t *version_out, evs_store *store,
                                 const char *aggregate_id,
                                 int64_t expected_version,
                                 evs_event *const *events, size_t n_events,
                                 evs_error *err);

/** What an append did (evs_store_append_ext()). */
typedef struct evs_append_result {
	int64_t version; /**< as evs_store_append()'s version_out */
	int replayed;    /**< 1: every event of the batch was already stored
	                      there (an idempotent replay) and nothing was
	                      written; 0: the events were stored now (or the
	                      batch was empty) */
} evs_append_result;

/**
 * Flag of evs_store_append_ext(): store each event's own recorded time
 * (evs_event_recorded_at(): read from another store, or set with
 * evs_event_set_recorded_at()) instead of the store's clock. For restoring
 * an export. Needs an exact expected version (EVS_NO_VERSION or 0 and
 * above) and a time on every event. On PostgreSQL the role needs EXECUTE
 * on the schema's import_events function, which only the schema's owner
 * has unless a DBA grants it (README, "Restoring an export"); without it
 * the append fails with EVS_EDB, SQLSTATE 42501, and stores nothing.
 */
#define EVS_APPEND_KEEP_TIME 1u

/**
 * evs_store_append(), and also: tells an idempotent replay from a new
 * append, and takes flags.
 * @param[out] out  may be NULL; filled on success
 * @param flags     0, or EVS_APPEND_KEEP_TIME
 * @return as evs_store_append(); also EVS_EINVALID for an unknown flag,
 *         for EVS_APPEND_KEEP_TIME without an exact expected version or
 *         with an event that has no recorded time, and EVS_EUNSUPPORTED
 *         for EVS_APPEND_KEEP_TIME on a backend without the append_ext
 *         slot. A backend without that slot reports replayed = 0.
 */
EVS_EXTERN(int) evs_store_append_ext(evs_append_result *out,
                                     evs_store *store,
                                     const char *aggregate_id,
                                     int64_t expected_version,
                                     evs_event *const *events,
                                     size_t n_events, unsigned int flags,
                                     evs_error *err);

/**
 * One append of evs_store_append_many(): the inputs as for
 * evs_store_append(), and the outcome of this request.
 */
typedef struct evs_append_req {
	const char *aggregate_id;  /**< borrowed for the call */
	int64_t expected_version;  /**< as for evs_store_append() */
	evs_event *const *events;  /**< borrowed for the call; ids distinct */
	size_t n_events;           /**< 1 or more */
	int rc;                    /**< out: 0 (stored, or an idempotent
	                                replay), EVS_ECONFLICT, EVS_EDUPLICATE,
	                                EVS_EINVALID (this request is malformed),
	                                EVS_ENOTSTORED (valid, but its atomic
	                                call failed), or the whole call's error */
	int replayed;              /**< out: 1 when rc is 0 and every event was
	                                already stored there (nothing written) */
	int64_t version;           /**< out: rc 0: the version of the request's
	                                last event; EVS_ECONFLICT: the stream's
	                                version as this request found it
	                                (EVS_NO_VERSION: no events);
	                                EVS_EDUPLICATE: the version holding the
	                                reused id; otherwise EVS_NO_VERSION */
} evs_append_req;

/**
 * Flag of evs_store_append_many(): store every request or none. Without
 * it each request succeeds or fails on its own.
 */
#define EVS_APPEND_ATOMIC 2u

/**
 * Appends to several streams (or several times to one) in one call: one
 * transaction and one round trip on PostgreSQL. Every request keeps the
 * rules of evs_store_append(): its own expected-version check with the
 * same sentinels, idempotent replay by event id, EVS_EDUPLICATE for any
 * other reuse of an id. Requests take effect in array order, as if sent
 * one after the other: a request on a stream sees the requests before it
 * on that stream (and an event id of an earlier request on the same
 * stream counts as stored).
 *
 * Without EVS_APPEND_ATOMIC a request that fails (conflict, duplicate,
 * malformed) stores nothing and does not stop the others. With it, every
 * request is stored or none is: a failing request has its own code and
 * the others EVS_ENOTSTORED; a malformed request refuses the whole call
 * before anything is sent.
 *
 * The store's PostgreSQL role needs EXECUTE on append_many() (README,
 * "Least privilege"); with EVS_APPEND_KEEP_TIME, on import_many().
 *
 * @param store   borrowed
 * @param reqs    borrowed for the call; the out fields of every request
 *                are always set
 * @param n_reqs  0 (nothing to do: returns 0) or more
 * @param flags   0, EVS_APPEND_ATOMIC, EVS_APPEND_KEEP_TIME, or both
 *                (EVS_APPEND_KEEP_TIME as for evs_store_append_ext(), for
 *                every request)
 * @param err     may be NULL; filled with the first failing request's
 *                details (in array order), or the whole call's error
 * @return 0 when every request succeeded; otherwise the code of the first
 *         failing request in array order (never EVS_ENOTSTORED); or a
 *         whole-call error, which every request's rc repeats: EVS_EINVALID
 *         (NULL reqs, an unknown flag), EVS_EUNSUPPORTED (a backend
 *         without multi-stream appends, with EVS_APPEND_ATOMIC or
 *         EVS_APPEND_KEEP_TIME), or a store error (EVS_ENOMEM, EVS_EDB,
 *         EVS_ETIMEOUT; EVS_EUNAVAILABLE: the outcome is unknown, resend
 *         the same requests: what was stored is a replay)
 */
EVS_EXTERN(int) evs_store_append_many(evs_store *store, evs_append_req *reqs,
                                      size_t n_reqs, unsigned int flags,
                                      evs_error *err);

/**
 * Loads the events of one aggregate whose version is greater than
 * @p from_version, oldest first.
 * @param[out] out      yours: free with evs_event_list_free(); NULL on
 *                      failure. Empty (not an error) for an aggregate with
 *                      no events or a from_version past the end.
 * @param store         borrowed
 * @param aggregate_id  borrowed for the call; the events keep a copy
 * @param from_version  exclusive; EVS_NO_VERSION (or anything below it)
 *                      loads every event
 * @param err           may be NULL; filled on failure
 * @return 0, EVS_EINVALID, EVS_EDELETED (a deleted stream, from any
 *         version; err carries its version), or a backend error
 */
EVS_EXTERN(int) evs_store_load(evs_event_list **out, evs_store *store,
                               const char *aggregate_id, int64_t from_version,
                               evs_error *err);

/**
 * Called once per event by evs_store_foreach().
 * @param event    borrowed: valid until the callback returns (keep a copy
 *                 with evs_event_dup())
 * @param payload  what was passed to evs_store_foreach()
 * @return 0 to go on; anything else stops the read, and
 *         evs_store_foreach() returns it (use positive values to tell them
 *         from the library's negative codes)
 */
typedef int (*evs_event_cb)(const evs_event *event, void *payload);

/**
 * Streams the events of one aggregate whose version is greater than
 * @p from_version, oldest first, one callback per event, without holding
 * the whole stream in memory: a backend holds a bounded number of bytes
 * of events at a time (PostgreSQL: evs_pg_options.read_buffer_bytes). The
 * callback may call the store.
 * @param store         borrowed
 * @param aggregate_id  borrowed for the call
 * @param from_version  exclusive, as for evs_store_load()
 * @param cb            called once per event
 * @param payload       passed to @p cb
 * @param err           may be NULL; filled on failure
 * @return 0 after the last event, the callback's non-zero value when it
 *         stopped the read, EVS_EINVALID, EVS_EDELETED (before any
 *         callback), or a backend error
 */
EVS_EXTERN(int) evs_store_foreach(evs_store *store, const char *aggregate_id,
                                  int64_t from_version, evs_event_cb cb,
                                  void *payload, evs_error *err);

/**
 * The version of an aggregate's last event.
 * @param[out] version_out  the version; EVS_NO_VERSION when there is none
 *                          (a deleted stream: its "$deleted" marker's)
 * @param store             borrowed
 * @param aggregate_id      borrowed for the call
 * @param err               may be NULL; filled on failure
 * @return 0 when the aggregate has events, EVS_ENOTFOUND when it has none,
 *         EVS_EDELETED when it is deleted, EVS_EINVALID, or a backend
 *         error
 */
EVS_EXTERN(int) evs_store_current_version(int64_t *version_out,
                                          evs_store *store,
                                          const char *aggregate_id,
                                          evs_error *err);

/** For evs_store_foreach_backward(): read from the newest event. */
#define EVS_END_VERSION INT64_MAX

/**
 * Streams the events of one aggregate whose version is lower than
 * @p before_version, newest first, one callback per event, in bounded
 * memory as evs_store_foreach() does. The events below @p before_version
 * never change, so a read backwards ends however fast writers append.
 * @param store           borrowed
 * @param aggregate_id    borrowed for the call
 * @param before_version  exclusive; EVS_END_VERSION (or anything above
 *                        the last version) starts at the newest event;
 *                        0 or less reads nothing
 * @param max_events      stop after this many events; 0: no limit
 * @param cb              called once per event
 * @param payload         passed to @p cb
 * @param err             may be NULL; filled on failure
 * @return 0 after the last (oldest) event or the max_events-th, the
 *         callback's non-zero value when it stopped the read,
 *         EVS_EINVALID, EVS_EUNSUPPORTED (a backend without the slot),
 *         EVS_EDELETED, or a backend error
 */
EVS_EXTERN(int) evs_store_foreach_backward(evs_store *store,
                                           const char *aggregate_id,
                                           int64_t before_version,
                                           size_t max_events,
                                           evs_event_cb cb, void *payload,
                                           evs_error *err);

/**
 * Loads the last @p n events of one aggregate, oldest first: all of them
 * when it has fewer. One backwards read of n events (on PostgreSQL, one
 * statement when they fit evs_pg_options.read_buffer_bytes).
 * @param[out] out      the events; free with evs_event_list_free(). NULL
 *                      on failure. Empty (not an error) for an aggregate
 *                      with no events.
 * @param store         borrowed
 * @param aggregate_id  borrowed for the call
 * @param n             1 or more
 * @param err           may be NULL; filled on failure
 * @return 0, EVS_EINVALID, EVS_EUNSUPPORTED, EVS_EDELETED, or a backend
 *         error
 */
EVS_EXTERN(int) evs_store_load_last(evs_event_list **out, evs_store *store,
                                    const char *aggregate_id, size_t n,
                                    evs_error *err);

/* ---- stream lifecycle ------------------------------------------------- */

/** Aggregate ids and event types starting with this belong to evstore. */
#define EVS_SYSTEM_PREFIX '$'
/** The system stream every lifecycle change is recorded in. */
#define EVS_LIFECYCLE_STREAM "$lifecycle"
/** Type of the marker a deletion appends to the stream and to
 *  EVS_LIFECYCLE_STREAM. */
#define EVS_TYPE_DELETED "$deleted"
/** Type of the marker an undeletion appends to both. */
#define EVS_TYPE_UNDELETED "$undeleted"

/** Flag of evs_store_delete(): remove the stream's events too. */
#define EVS_DELETE_HARD 1u
/** Flag of evs_store_delete(), with EVS_DELETE_HARD: remove the stream
 *  itself too, so that its id starts again at version 0. */
#define EVS_DELETE_REUSE 2u

/**
 * Deletes one aggregate's stream, at an expected version like an append
 * (acting on a stale read is EVS_ECONFLICT). In one transaction:
 *   - soft (flags 0): the events stay; a "$deleted" marker event (data
 *     {"hard": false}) is appended to the stream; from then on appends
 *     and reads of the stream fail with EVS_EDELETED (err carries the
 *     marker's version) until evs_store_undelete();
 *   - EVS_DELETE_HARD: the events are removed (a soft-deleted stream may
 *     be hard-deleted later); the stream keeps only its "$deleted" marker
 *     (data {"hard": true}) and stays refused for good;
 *   - EVS_DELETE_HARD | EVS_DELETE_REUSE: the marker and the stream go
 *     too; the id is free, and a new stream under it starts at version 0.
 * Each also appends a "$deleted" event to EVS_LIFECYCLE_STREAM, data
 * {"hard", "reuse", "stream", "version"} (version: the marker's, -1 with
 * EVS_DELETE_REUSE), so readers of all events see every deletion in feed
 * order, also one that leaves nothing in the stream. Readers of all
 * events still see a soft-deleted stream's events; removed events are
 * gone from every read once the call returns. On PostgreSQL the change
 * is logged in lifecycle_log (who, when, which version), and the role
 * needs EXECUTE on delete_stream() (README, "Deleting streams").
 * @param[out] version_out  may be NULL; the marker's version
 *                          (EVS_NO_VERSION with EVS_DELETE_REUSE)
 * @param store             borrowed
 * @param aggregate_id      borrowed; not a '$' id
 * @param expected_version  the stream's current version, or
 *                          EVS_ANY_VERSION (EVS_STREAM_EXISTS: the same)
 * @param flags             0, EVS_DELETE_HARD, or both flags
 * @param err               may be NULL; filled on failure
 * @return 0, EVS_ECONFLICT (an exact version and a stream at another one,
 *         or without events), EVS_ENOTFOUND (any version, no stream),
 *         EVS_EDELETED (already deleted; a hard delete of a soft-deleted
 *         stream is allowed), EVS_EINVALID, EVS_EUNSUPPORTED (a backend
 *         without the slot), or a backend error
 */
EVS_EXTERN(int) evs_store_delete(int64_t *version_out, evs_store *store,
                                 const char *aggregate_id,
                                 int64_t expected_version,
                                 unsigned int flags, evs_error *err);

/**
 * Brings back a soft-deleted stream: appends an "$undeleted" marker
 * (data {}) after its "$deleted" one, and a "$undeleted" event to
 * EVS_LIFECYCLE_STREAM; appends and reads work again, and the stream
 * reads with both markers in it (evs_aggregate_apply_stored() skips
 * '$' events).
 * @param[out] version_out  may be NULL; the "$undeleted" marker's version
 * @param expected_version  the "$deleted" marker's version (as
 *                          EVS_EDELETED's actual_version says), or
 *                          EVS_ANY_VERSION
 * @return 0, EVS_ECONFLICT, EVS_ENOTFOUND, EVS_EINVALID (also: the
 *         stream is not deleted), EVS_EDELETED (hard-deleted: it cannot
 *         come back), EVS_EUNSUPPORTED, or a backend error
 */
EVS_EXTERN(int) evs_store_undelete(int64_t *version_out, evs_store *store,
                                   const char *aggregate_id,
                                   int64_t expected_version,
                                   evs_error *err);

/** Flag of evs_store_truncate() and evs_store_set_retention(): even
 *  without a snapshot at or after the cut. */
#define EVS_TRUNCATE_FORCE 1u

/**
 * Truncates a stream: from now on its reads start at @p before_version
 * (the events below it are no longer read, and evs_store_scavenge()
 * removes them later, in small steps). Its version, its appends and the
 * feed of all events are unchanged until then. Truncation only moves
 * forward. An aggregate cannot be rebuilt from a stream that starts past
 * its first event, so unless @p flags has EVS_TRUNCATE_FORCE, a
 * truncation that cuts more than the stream is cut already needs a
 * snapshot (evs_store_save_snapshot(), any kind) at version
 * @p before_version - 1 or later. A read under way when the cut moves
 * past it goes on from the cut. Appends a "$truncated" event to
 * EVS_LIFECYCLE_STREAM (data {"before", "stream", "version"}); on
 * PostgreSQL logged in lifecycle_log, and the role needs EXECUTE on
 * truncate_stream().
 * @param expected_version  the stream's version, or EVS_ANY_VERSION
 * @param before_version    0 to the stream's version + 1 (then no event
 *                          is read any more); where it is truncated
 *                          already: nothing changes
 * @return 0, EVS_ECONFLICT, EVS_ENOTFOUND, EVS_EDELETED, EVS_EINVALID
 *         (also: past the end, below the present cut, or no snapshot
 *         covers the cut), EVS_EUNSUPPORTED, or a backend error
 */
EVS_EXTERN(int) evs_store_truncate(evs_store *store, const char *aggregate_id,
                                   int64_t expected_version,
                                   int64_t before_version, unsigned int flags,
                                   evs_error *err);

/** How much of a stream evs_store_set_retention() keeps. */
typedef struct evs_retention {
	int64_t max_count; /**< the last this many events; 0: no limit */
	int64_t max_age_s; /**< the events of the last this many seconds
	                        (from the first one that young on): 0: no
	                        limit */
} evs_retention;

/**
 * Sets a stream's retention: its reads return only the events the limits
 * keep (a contiguous suffix, at or after where it is truncated), at once;
 * evs_store_scavenge() removes the others later. Both limits 0: keep
 * everything (from the truncation point) again. Refused, unless
 * EVS_TRUNCATE_FORCE, when the new limits cut more than the stream is cut
 * now and no snapshot covers that cut. Appends a "$retention" event to EVS_LIFECYCLE_STREAM (data
 * {"max_age_s", "max_count", "stream", "version"}); on PostgreSQL logged,
 * and the role needs EXECUTE on set_retention().
 * @param retention  borrowed for the call
 * @return as evs_store_truncate() (EVS_EINVALID also for a negative limit)
 */
EVS_EXTERN(int) evs_store_set_retention(evs_store *store,
                                        const char *aggregate_id,
                                        int64_t expected_version,
                                        const evs_retention *retention,
                                        unsigned int flags, evs_error *err);

/**
 * Removes up to @p max_events events that truncation or retention
 * released, in one transaction, and says how many. Call it until it
 * removes nothing (`evstore scavenge` does). It locks no stream: appends
 * go on meanwhile. Deleted (soft) streams keep their events. On
 * PostgreSQL logged in lifecycle_log, and the role needs EXECUTE on
 * scavenge().
 * @param[out] removed_out  may be NULL; events removed (0: none left)
 * @param max_events        1 or more (10000 is a good step)
 * @return 0, EVS_EINVALID, EVS_EUNSUPPORTED, or a backend error
 */
EVS_EXTERN(int) evs_store_scavenge(size_t *removed_out, evs_store *store,
                                   size_t max_events, evs_error *err);

/* ---- snapshots -------------------------------------------------------- */

/**
 * Called by evs_store_load_snapshot() with the snapshot found, before any
 * event.
 * @param version  the stream version the snapshot is the state after
 * @param json     borrowed for the call: @p len bytes of JSON, NUL-ended
 * @return 0 to go on; anything else stops the load, which returns it
 */
typedef int (*evs_snapshot_cb)(int64_t version, const char *json,
                               size_t len, void *payload);

/**
 * Keeps a snapshot: the state of an aggregate after its stream's events
 * up to @p version, as JSON in a format of the caller's, for loads to
 * start from (evs_store_load_snapshot()). Only the newest snapshot of a
 * stream, kind and format is kept: one at an older version than the one
 * stored never replaces it. A hard delete removes the stream's
 * snapshots. evs_repo_save() calls this for you (evs_repo_set_snapshots()).
 * @param[out] stored_out  may be NULL; 1 when stored, 0 when a snapshot of
 *                         this kind and format at this version or a later
 *                         one was there (nothing changed; not an error)
 * @param aggregate_id     borrowed for the call
 * @param kind             borrowed: the aggregate type's name, 0 to 255
 *                         bytes of UTF-8 without control characters
 * @param format           1 or more: the snapshot format's version
 * @param version          0 or more, at most the stream's version
 * @param json             borrowed: the state as JSON (checked as event
 *                         data is)
 * @return 0, EVS_ENOTFOUND (the stream has no event at @p version),
 *         EVS_EDELETED, EVS_EINVALID, EVS_EUNSUPPORTED (a backend without
 *         snapshots), or a backend error. On PostgreSQL the role needs
 *         EXECUTE on store_snapshot() (README, "Least privilege").
 */
EVS_EXTERN(int) evs_store_save_snapshot(int *stored_out, evs_store *store,
                                        const char *aggregate_id,
                                        const char *kind, unsigned int format,
                                        int64_t version, const char *json,
                                        evs_error *err);

/**
 * Reads an aggregate from its newest snapshot of @p kind and @p format:
 * @p scb once with the snapshot (when there is one), then @p cb once per
 * event after its version, oldest first, in bounded memory as
 * evs_store_foreach(). Without a snapshot, every event. On PostgreSQL the
 * snapshot and the first page of events come in one statement.
 * @param scb  called at most once, before any event
 * @param cb   called once per event after the snapshot
 * @return 0, a callback's non-zero value, EVS_EINVALID, EVS_EDELETED,
 *         EVS_EUNSUPPORTED, or a backend error
 */
EVS_EXTERN(int) evs_store_load_snapshot(evs_store *store,
                                        const char *aggregate_id,
                                        const char *kind, unsigned int format,
                                        evs_snapshot_cb scb, evs_event_cb cb,
                                        void *payload, evs_error *err);

/** A stored snapshot, as evs_store_snapshots() lists it. */
typedef struct evs_snapshot_info {
	const char *aggregate_id; /**< borrowed for the callback */
	const char *kind;         /**< borrowed for the callback */
	unsigned int format;
	int64_t version;
	int64_t taken_at;         /**< microseconds since 1970-01-01 UTC */
	size_t bytes;             /**< of its JSON */
} evs_snapshot_info;

/** Called once per snapshot by evs_store_snapshots(); non-zero stops. */
typedef int (*evs_snapshot_info_cb)(const evs_snapshot_info *info,
                                    void *payload);

/**
 * Lists one stream's snapshots, by kind and format.
 * @return 0, the callback's non-zero value, EVS_EINVALID,
 *         EVS_EUNSUPPORTED, or a backend error
 */
EVS_EXTERN(int) evs_store_snapshots(evs_store *store, const char *aggregate_id,
                                    evs_snapshot_info_cb cb, void *payload,
                                    evs_error *err);

/**
 * A place in the log of all events: the checkpoint of a reader of all
 * streams. Take it from the last event you processed with
 * evs_event_checkpoint() and pass it back to resume after that event.
 */
typedef struct evs_position {
	uint64_t commit; /**< the event's order key (PostgreSQL: at or above
	                      its writing transaction's id, never below an
	                      earlier event of its stream) */
	int64_t global;  /**< the event's global position */
} evs_position;

/** The position before the first event. */
#define EVS_POSITION_START {0, 0}

/**
 * Reads the events of all streams that come after @p after, ordered by
 * (order key, global position): about the order of the transactions that
 * wrote them, and a stream's events always in version order. One callback
 * per event, holding a bounded number of bytes at a time. Only events of
 * transactions that have ended are read, so a reader that resumes from
 * its checkpoint never skips an event whose transaction committed late;
 * events of a transaction still running, and of every later one while it
 * runs, are read by a later call.
 * @param store       borrowed
 * @param after       borrowed for the call; NULL or EVS_POSITION_START for
 *                    the beginning
 * @param max_events  stop after this many events; 0 for no limit
 * @param cb          called once per event; its non-zero return stops the
 *                    read, as for evs_store_foreach()
 * @param payload     passed to @p cb
 * @param err         may be NULL; filled on failure
 * @return 0, the callback's non-zero value, EVS_EINVALID,
 *         EVS_EUNSUPPORTED (a backend without the read_all slot), or a
 *         backend error
 */
EVS_EXTERN(int) evs_store_read_all(evs_store *store, const evs_position *after,
                                   size_t max_events, evs_event_cb cb,
                                   void *payload, evs_error *err);

#ifdef __cplusplus
}
#endif
#endif
