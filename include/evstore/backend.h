/* evstore/backend.h: the backend vtable, for people who write a backend. */
#ifndef EVSTORE_BACKEND_H
#define EVSTORE_BACKEND_H

#include <stdarg.h>

#include "common.h"
#include "error.h"
#include "event.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The vtable version this header describes. */
#define EVS_BACKEND_VERSION 6

/**
 * Receives one event from a backend's read slot.
 * @param event  taken: the callee frees it
 * @return 0 to go on; any other value stops the read
 */
typedef int (*evs_backend_event_cb)(evs_event *event, void *payload);

typedef struct evs_backend evs_backend;

/**
 * A storage backend. Embed it as the first member of your own struct,
 * fill it, and hand it to evs_store_new(). The store's front end checks
 * every argument before a slot is called, so a slot may trust that:
 * aggregate ids are 1 to 255 bytes of valid UTF-8 without control
 * characters; events are non-NULL, valid, and have distinct ids; n_events
 * is at least 1; expected_version is EVS_NO_VERSION or above, or one of
 * the documented sentinels, and expected_version + n_events does not
 * overflow; after_version is EVS_NO_VERSION or above; out pointers and err
 * records are valid (err may still be NULL). Slots may be called from
 * several threads at once.
 */
struct evs_backend {
	unsigned int version; /**< always first: EVS_BACKEND_VERSION */
	/* ---- version 1 ---- */

	/**
	 * Required. Appends all events or none, following the contract of
	 * evs_store_append(): the version check and its sentinels, the
	 * idempotent replay by event id, EVS_EDUPLICATE for any other reuse
	 * of an event id. Fill err with evs_error_set_conflict() on conflict.
	 */
	int (*append)(int64_t *version_out, evs_backend *be,
	              const char *aggregate_id, int64_t expected_version,
	              evs_event *const *events, size_t n_events, evs_error *err);

	/**
	 * Required. Calls @p cb once per event with a version greater than
	 * @p after_version, oldest first, with events built by
	 * evs_event_new_stored(). When cb returns non-zero, stops and returns
	 * that value. Must not hold a lock that the store's other slots need
	 * while cb runs: the callback may call the store.
	 */
	int (*read)(evs_backend *be, const char *aggregate_id,
	            int64_t after_version, evs_backend_event_cb cb,
	            void *payload, evs_error *err);

	/**
	 * Optional (may be NULL: the front end then reads the stream).
	 * Sets *out to the version of the last event and returns 0, or sets
	 * EVS_NO_VERSION and returns EVS_ENOTFOUND when there is none (a
	 * deleted stream: sets its version and returns EVS_EDELETED).
	 */
	int (*head)(int64_t *out, evs_backend *be, const char *aggregate_id,
	            evs_error *err);

	/** Required. Frees everything, @p be itself included. */
	void (*free)(evs_backend *be);

	/* ---- version 2 ---- */

	/**
	 * Optional (NULL: evs_store_read_all() answers EVS_EUNSUPPORTED).
	 * Calls @p cb for up to @p max_events events (0: no limit) of all
	 * streams, ordered by (commit, global position) and after
	 * @p after, built by evs_event_new_stored() and given their
	 * checkpoint with evs_event_set_checkpoint(). Only events of ended
	 * transactions: a resumed reader must never skip one. Same callback
	 * and locking rules as the read slot.
	 */
	int (*read_all)(evs_backend *be, const evs_position *after,
	                size_t max_events, evs_backend_event_cb cb,
	                void *payload, evs_error *err);

	/* ---- version 3 ---- */

	/**
	 * Optional (NULL: the front end calls append, reports replayed = 0,
	 * and refuses flags with EVS_EUNSUPPORTED). Like append, and also
	 * sets out->replayed to 1 when the batch was an idempotent replay
	 * (out->version as append's version_out). With EVS_APPEND_KEEP_TIME
	 * in @p flags, stores each event's evs_event_recorded_at() instead of
	 * the clock's; the front end has checked that the expected version is
	 * exact and that every event has a time. Other flag bits are never
	 * set.
	 */
	int (*append_ext)(evs_append_result *out, evs_backend *be,
	                  const char *aggregate_id, int64_t expected_version,
	                  evs_event *const *events, size_t n_events,
	                  unsigned int flags, evs_error *err);

	/* ---- version 4 ---- */

	/**
	 * Optional (NULL: the front end sends the requests one by one
	 * through append_ext or append, and refuses EVS_APPEND_ATOMIC with
	 * EVS_EUNSUPPORTED). Follows evs_store_append_many(): requests take
	 * effect in array order, each with the rules of append; with
	 * EVS_APPEND_ATOMIC all or none. Sets rc, replayed and version of
	 * every request; returns 0, or the first failing request's rc (err
	 * filled for it), or a whole-call error after setting every rc to
	 * it. The front end has checked every request as it checks an
	 * append (n_events is at least 1) and that n_reqs is at least 1;
	 * flags holds only EVS_APPEND_ATOMIC and EVS_APPEND_KEEP_TIME.
	 */
	int (*append_many)(evs_backend *be, evs_append_req *reqs,
	                   size_t n_reqs, unsigned int flags, evs_error *err);

	/* ---- version 5 ---- */

	/**
	 * Optional (NULL: evs_store_foreach_backward() and
	 * evs_store_load_last() answer EVS_EUNSUPPORTED). Calls @p cb once
	 * per event with a version lower than @p before_version (1 or more;
	 * EVS_END_VERSION: from the newest), newest first, for up to
	 * @p max_events events (0: no limit), built by
	 * evs_event_new_stored(). Same callback and locking rules as read.
	 */
	int (*read_backward)(evs_backend *be, const char *aggregate_id,
	                     int64_t before_version, size_t max_events,
	                     evs_backend_event_cb cb, void *payload,
	                     evs_error *err);

	/* ---- version 6 ---- */

	/**
	 * Optional (NULL: evs_store_delete() and evs_store_undelete()
	 * answer EVS_EUNSUPPORTED). Follow those calls: both markers, the
	 * EVS_LIFECYCLE_STREAM event, the state change and (hard) the
	 * removal in one atomic step, under the stream's append lock. A
	 * backend with these slots must also refuse appends to a deleted
	 * stream (EVS_EDELETED, after the replay check) and answer its read,
	 * read_backward and head slots with EVS_EDELETED (evs_error_set_deleted()).
	 * The front end has checked the id (not a '$' one), that
	 * expected_version is EVS_ANY_VERSION or 0 and above (it maps
	 * EVS_STREAM_EXISTS to EVS_ANY_VERSION), and the flags.
	 */
	int (*delete_stream)(int64_t *version_out, evs_backend *be,
	                     const char *aggregate_id,
	                     int64_t expected_version, unsigned int flags,
	                     evs_error *err);
	int (*undelete_stream)(int64_t *version_out, evs_backend *be,
	                       const char *aggregate_id,
	                       int64_t expected_version, evs_error *err);

	/**
	 * Optional, all three or none (NULL: the snapshot calls answer
	 * EVS_EUNSUPPORTED). Follow evs_store_save_snapshot(),
	 * evs_store_load_snapshot() and evs_store_snapshots(); save_snapshot
	 * sets *stored to 1 or 0. The front end has checked the id, the
	 * kind, format 1 or more, version 0 or more and the JSON. A hard
	 * delete (delete_stream) must remove the stream's snapshots.
	 * load_snapshot passes @p payload to both callbacks.
	 */
	int (*save_snapshot)(int *stored, evs_backend *be,
	                     const char *aggregate_id, const char *kind,
	                     unsigned int format, int64_t version,
	                     const char *json, size_t len, evs_error *err);
	int (*load_snapshot)(evs_backend *be, const char *aggregate_id,
	                     const char *kind, unsigned int format,
	                     evs_snapshot_cb scb, evs_backend_event_cb cb,
	                     void *payload, evs_error *err);
	int (*list_snapshots)(evs_backend *be, const char *aggregate_id,
	                      evs_snapshot_info_cb cb, void *payload,
	                      evs_error *err);

	/**
	 * Optional, all three or none (NULL: those calls answer
	 * EVS_EUNSUPPORTED). Follow evs_store_truncate(),
	 * evs_store_set_retention() and evs_store_scavenge(). A backend with
	 * them starts every stream read (read, read_backward, load_snapshot)
	 * at the stream's retained suffix. The front end has checked the
	 * id, the expected version (EVS_ANY_VERSION or 0 and above),
	 * before_version 0 or more, limits 0 or more, max_events 1 or more
	 * and the flags.
	 */
	int (*truncate)(evs_backend *be, const char *aggregate_id,
	                int64_t expected_version, int64_t before_version,
	                unsigned int flags, evs_error *err);
	int (*set_retention)(evs_backend *be, const char *aggregate_id,
	                     int64_t expected_version,
	                     const evs_retention *retention,
	                     unsigned int flags, evs_error *err);
	int (*scavenge)(size_t *removed_out, evs_backend *be,
	                size_t max_events, evs_error *err);

	/* ---- version 7 and later: append new slots here, never reorder ---- */
};

/** Initialiser for a backend vtable. */
#define EVS_BACKEND_INIT \
	{EVS_BACKEND_VERSION, NULL, NULL, NULL, NULL, NULL, \
	 NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL}

/**
 * Wraps a backend in a store handle.
 * @param[out] out  yours: free with evs_store_free(); NULL on failure
 * @param be        taken, even on failure (its free slot is called)
 * @param err       may be NULL; filled on failure
 * @return 0, EVS_EINVALID (NULL or incomplete vtable), EVS_EUNSUPPORTED
 *         (version 0 or newer than EVS_BACKEND_VERSION), or EVS_ENOMEM
 */
EVS_EXTERN(int) evs_store_new(evs_store **out, evs_backend *be,
                              evs_error *err);

/**
 * Builds an event as read from storage. Nothing is checked: the backend
 * vouches that @p type is valid and @p data_json (and @p metadata_json
 * when not NULL) is valid JSON.
 * @param[out] out        yours (usually handed on to the read callback)
 * @param id              copied
 * @param type            copied
 * @param data_json       copied: @p data_len bytes, no NUL needed
 * @param metadata_json   copied: @p metadata_len bytes, or NULL for none
 * @param aggregate_id    copied
 * @param version         0 or above
 * @param position        the global position
 * @param recorded_at     microseconds since 1970-01-01 UTC
 * @return 0, or EVS_ENOMEM
 */
EVS_EXTERN(int) evs_event_new_stored(evs_event **out, const evs_uuid *id,
                                     const char *type, const char *data_json,
                                     size_t data_len,
                                     const char *metadata_json,
                                     size_t metadata_len,
                                     const char *aggregate_id,
                                     int64_t version, int64_t position,
                                     int64_t recorded_at, evs_error *err);

/**
 * Sets the checkpoint of an event built by evs_event_new_stored(), for a
 * read_all slot. Only for an event not yet handed out.
 */
EVS_EXTERN(void) evs_event_set_checkpoint(evs_event *ev, uint64_t commit);

/**
 * Fills @p err (when not NULL) with @p code, an optional SQLSTATE and a
 * printf-style message, and returns @p code.
 * @param sqlstate  copied: five characters, or NULL
 */
EVS_EXTERN(int) evs_error_set(evs_error *err, int code, const char *sqlstate,
                              const char *fmt, ...)
#if defined(__GNUC__) || defined(__clang__)
	__attribute__((format(printf, 4, 5)))
#endif
	;

/**
 * Fills @p err (when not NULL) for a version conflict, with the standard
 * message, and returns EVS_ECONFLICT.
 * @param aggregate_id  copied
 * @param expected      the caller's expected version (or sentinel)
 * @param actual        the stream's version; EVS_NO_VERSION when empty
 */
EVS_EXTERN(int) evs_error_set_conflict(evs_error *err,
                                       const char *aggregate_id,
                                       int64_t expected, int64_t actual);

/**
 * Fills @p err (when not NULL) for a call on a deleted stream, with the
 * standard message, and returns EVS_EDELETED.
 * @param aggregate_id  copied
 * @param expected      the caller's expected version (or sentinel;
 *                      EVS_ANY_VERSION for a read)
 * @param actual        the stream's version (its "$deleted" marker's)
 */
EVS_EXTERN(int) evs_error_set_deleted(evs_error *err,
                                      const char *aggregate_id,
                                      int64_t expected, int64_t actual);

#ifdef __cplusplus
}
#endif
#endif
