/* evstore/aggregate.h: event-sourced aggregates: state rebuilt from events. */
#ifndef EVSTORE_AGGREGATE_H
#define EVSTORE_AGGREGATE_H

#include "common.h"
#include "error.h"
#include "event.h"

#ifdef __cplusplus
extern "C" {
#endif

/** The aggregate-type vtable version this header describes. */
#define EVS_AGGREGATE_TYPE_VERSION 2

/**
 * What the application writes for one kind of aggregate (an account, an
 * order): how to make an empty state, apply one event to it, and free it.
 * Keep it in static storage; evstore only borrows it.
 */
typedef struct evs_aggregate_type {
	unsigned int version; /**< always first: EVS_AGGREGATE_TYPE_VERSION */
	const char *name;     /**< for messages, e.g. "account"; may be NULL */
	/* ---- version 1 ---- */

	/**
	 * Required. Makes the empty state of a new aggregate.
	 * @param[out] state_out  the state (NULL is a valid state)
	 * @param aggregate_id    borrowed for the call
	 * @param payload         the type's payload field
	 * @param err             never NULL
	 * @return 0, or a negative code (filling err)
	 */
	int (*create)(void **state_out, const char *aggregate_id,
	              void *payload, evs_error *err);

	/**
	 * Required. Applies one event to the state: both when an event is
	 * raised and when stored events are replayed, so it must not reject
	 * an event it has accepted before. On failure it must leave the
	 * state unchanged.
	 * @param state  the state create() made
	 * @param event  borrowed for the call
	 * @param err    never NULL
	 * @return 0, or a negative code (filling err, e.g. with EVS_EINVALID
	 *         for an unknown event type)
	 */
	int (*apply)(void *state, const evs_event *event, void *payload,
	             evs_error *err);

	/** Required. Frees a state made by create(). */
	void (*free)(void *state, void *payload);

	/** Passed to every slot; may be NULL. */
	void *payload;

	/* ---- version 2 ---- */

	/**
	 * Snapshots (optional: 0 and two NULL slots, or all three set). The
	 * version of the JSON that snapshot() writes and restore() reads, 1
	 * or more: change it whenever that JSON changes, and snapshots of
	 * another format are ignored (the aggregate is replayed, and a new
	 * snapshot written). The repository keeps snapshots under the
	 * type's name: give the type one.
	 */
	unsigned int snapshot_format;

	/**
	 * Writes the state as JSON.
	 * @param[out] out  yours to make, the library's to free: a json-c
	 *                  value that the state can be made from again
	 * @param err       never NULL
	 * @return 0, or a negative code (no snapshot is written, the save
	 *         it follows is not affected)
	 */
	int (*snapshot)(json_object **out, const void *state, void *payload,
	                evs_error *err);

	/**
	 * Makes the state a snapshot describes, as create() makes an empty
	 * one; the events after the snapshot's version are applied to it.
	 * @param snapshot  borrowed for the call
	 * @return 0, or a negative code: the repository then ignores the
	 *         snapshot and replays the whole stream
	 */
	int (*restore)(void **state_out, const char *aggregate_id,
	               json_object *snapshot, void *payload, evs_error *err);

	/* ---- version 3 and later: append new slots here, never reorder ---- */
} evs_aggregate_type;

/**
 * One aggregate instance: id, state, version (EVS_NO_VERSION when it has
 * no stored events) and the queue of events raised but not yet saved.
 *
 * Thread safety: an aggregate is used by one thread at a time.
 */
typedef struct evs_aggregate evs_aggregate;

/**
 * Makes a new, empty aggregate at version EVS_NO_VERSION.
 * @param[out] out      yours: free with evs_aggregate_free(); NULL on failure
 * @param type          borrowed: must outlive the aggregate
 * @param aggregate_id  copied: 1 to 255 bytes of UTF-8, no control
 *                      characters
 * @param err           may be NULL; filled on failure
 * @return 0, EVS_EINVALID (bad id, NULL or incomplete type),
 *         EVS_EUNSUPPORTED (type version), EVS_ENOMEM, or what
 *         type->create returned
 */
EVS_EXTERN(int) evs_aggregate_new(evs_aggregate **out,
                                  const evs_aggregate_type *type,
                                  const char *aggregate_id, evs_error *err);

/** Frees an aggregate, its state and its queued events. NULL is fine. */
EVS_EXTERN(void) evs_aggregate_free(evs_aggregate *agg);

/** The aggregate id. Borrowed: valid while the aggregate lives. */
EVS_EXTERN(const char *) evs_aggregate_id(const evs_aggregate *agg);

/**
 * The version of the last stored event applied; EVS_NO_VERSION when none.
 * Raised events do not move it; saving them does.
 */
EVS_EXTERN(int64_t) evs_aggregate_version(const evs_aggregate *agg);

/** The state that the type's create() made. Borrowed. */
EVS_EXTERN(void *) evs_aggregate_state(const evs_aggregate *agg);

/** The type. Borrowed. */
EVS_EXTERN(const evs_aggregate_type *)
evs_aggregate_type_of(const evs_aggregate *agg);

/**
 * Raises a new event: applies it to the state and, when that succeeds,
 * queues it for the next save.
 * @param event  taken, even on failure
 * @return 0, EVS_EINVALID (NULL argument, an event id already queued, or
 *         a type starting with '$'),
 *         EVS_ENOMEM, or what type->apply returned (then nothing is
 *         queued)
 */
EVS_EXTERN(int) evs_aggregate_raise(evs_aggregate *agg, evs_event *event,
                                    evs_error *err);

/**
 * Builds an event from @p type, @p data and @p metadata (as
 * evs_event_new() does) and raises it.
 * @return 0, EVS_EINVALID, EVS_ENOMEM, or what type->apply returned
 */
EVS_EXTERN(int) evs_aggregate_raise_new(evs_aggregate *agg, const char *type,
                                        json_object *data,
                                        json_object *metadata,
                                        evs_error *err);

/**
 * Applies an already stored event (one read from a store): the state
 * changes and the version becomes the event's version, which must be the
 * next one (current version + 1). evstore's own markers (types starting
 * with '$', such as the "$deleted" and "$undeleted" an undeleted stream
 * holds) only move the version: type->apply never sees them.
 * @param event  borrowed for the call; stored in this aggregate's stream
 * @return 0, EVS_EINVALID (an event never stored or of another aggregate,
 *         not the next version, or events are queued), or what
 *         type->apply returned
 */
EVS_EXTERN(int) evs_aggregate_apply_stored(evs_aggregate *agg,
                                           const evs_event *event,
                                           evs_error *err);

/** Number of raised events not yet saved. */
EVS_EXTERN(size_t) evs_aggregate_pending_count(const evs_aggregate *agg);

/**
 * The queued events, oldest first. Borrowed: valid until the next raise,
 * save or free. May be NULL when the count is 0.
 */
EVS_EXTERN(evs_event *const *)
evs_aggregate_pending(const evs_aggregate *agg);

#ifdef __cplusplus
}
#endif
#endif
