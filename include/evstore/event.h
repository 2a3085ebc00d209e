/* evstore/event.h: events, event ids and event lists. */
#ifndef EVSTORE_EVENT_H
#define EVSTORE_EVENT_H

#include <json-c/json_object.h>

#include "common.h"
#include "error.h"

#ifdef __cplusplus
extern "C" {
#endif

/** A 128-bit UUID, in network byte order. */
typedef struct evs_uuid {
	unsigned char bytes[16];
} evs_uuid;

/** Length of a UUID's canonical text form, without the terminating NUL. */
#define EVS_UUID_STRLEN 36

/**
 * Makes a new time-ordered UUID (version 7: Unix milliseconds, then
 * random bits from the kernel's random source).
 * @param[out] out  filled on success
 * @param err       may be NULL; filled on failure
 * @return 0, or EVS_ERROR when the kernel's random source fails
 */
EVS_EXTERN(int) evs_uuid_generate(evs_uuid *out, evs_error *err);

/**
 * Parses the canonical 36-character form ("0190b6c4-...") in either case.
 * @param[out] out  filled on success, untouched on failure
 * @param text      borrowed for the call
 * @return 0, or EVS_EINVALID
 */
EVS_EXTERN(int) evs_uuid_parse(evs_uuid *out, const char *text,
                               evs_error *err);

/**
 * Writes the canonical lower-case form and a terminating NUL.
 * @param[out] out  at least EVS_UUID_STRLEN + 1 bytes
 */
EVS_EXTERN(void) evs_uuid_format(char *out, const evs_uuid *id);

/** Returns 1 when @p a and @p b are the same UUID, else 0. */
EVS_EXTERN(int) evs_uuid_equal(const evs_uuid *a, const evs_uuid *b);

/**
 * An event: an id, a type name, data (any JSON value) and optional
 * metadata (a JSON object). Events read from a store also carry the
 * aggregate id, version, global position and the time the store recorded
 * them. An event keeps its data and metadata as JSON text; the json-c
 * accessors parse that text on first use.
 *
 * Thread safety: an event is immutable once built (the setters below are
 * for events not yet shared). All accessors may be called from several
 * threads at once; the json_object values they return are shared, and
 * json-c's reference counts are not atomic, so never get/put or modify the
 * same value from two threads.
 */
typedef struct evs_event evs_event;

/**
 * Builds a new event with a fresh UUIDv7 id.
 *
 * The PostgreSQL backend stores data and metadata as jsonb, so what a
 * load returns is jsonb's rendering: object keys in jsonb's order, the
 * last of duplicate keys kept, whitespace normalised, numbers in jsonb's
 * spelling (1e2 reads back as 100). The in-memory backend keeps the
 * event's text exactly as given.
 *
 * @param[out] out   yours: free with evs_event_free(); NULL on failure
 * @param type       borrowed for the call: 1 to 255 bytes of UTF-8, no
 *                   control characters
 * @param data       borrowed for the call (the event keeps its JSON text,
 *                   not your object); NULL is JSON null. Numbers must be
 *                   finite and at most DBL_MAX in magnitude, with at most
 *                   16383 digits after the point once the exponent is
 *                   applied and an exponent below 1073741823 in magnitude
 *                   (PostgreSQL's numeric limits); strings must be valid
 *                   UTF-8 without NUL.
 * @param metadata   borrowed for the call: a JSON object, or NULL for none
 * @param err        may be NULL; filled on failure
 * @return 0, EVS_EINVALID naming the bad argument, or EVS_ENOMEM
 */
EVS_EXTERN(int) evs_event_new(evs_event **out, const char *type,
                              json_object *data, json_object *metadata,
                              evs_error *err);

/**
 * Like evs_event_new(), but data and metadata are JSON text, which is
 * checked (strict JSON, valid UTF-8, nothing jsonb cannot hold) and kept
 * as written.
 *
 * Numbers must be finite and at most DBL_MAX in magnitude, with at most
 * 16383 digits after the point once the exponent is applied and an
 * exponent below 1073741823 in magnitude (PostgreSQL's numeric limits):
 * "1e-16383" is accepted, "1e-16384" and "100e-16384" are not.
 *
 * The PostgreSQL backend stores data and metadata as jsonb, so what a
 * load returns is jsonb's rendering of your text: object keys in jsonb's
 * order, the last of duplicate keys kept, whitespace normalised, numbers
 * in jsonb's spelling (1e2 reads back as 100). The in-memory backend
 * keeps the text exactly as given.
 *
 * @param data_json      borrowed for the call: any JSON value; not NULL
 * @param metadata_json  borrowed for the call: a JSON object, or NULL
 * @return 0, EVS_EINVALID naming the bad argument, or EVS_ENOMEM
 */
EVS_EXTERN(int) evs_event_new_json(evs_event **out, const char *type,
                                   const char *data_json,
                                   const char *metadata_json,
                                   evs_error *err);

/**
 * Replaces the generated id, for callers that choose their own (an
 * idempotent retry re-sends the same ids). Only for an event not yet
 * shared with other threads.
 * @param id  copied; must not be the nil UUID
 * @return 0, or EVS_EINVALID
 */
EVS_EXTERN(int) evs_event_set_id(evs_event *ev, const evs_uuid *id,
                                 evs_error *err);

/**
 * Sets the time an event was recorded, for an event to be appended with
 * EVS_APPEND_KEEP_TIME (a restore). Only for an event not yet shared with
 * other threads; an event read from a store already has its time.
 * @param micros  microseconds since 1970-01-01 UTC, within PostgreSQL's
 *                timestamptz range (4714 BC to 294247 AD)
 * @return 0, or EVS_EINVALID
 */
EVS_EXTERN(int) evs_event_set_recorded_at(evs_event *ev, int64_t micros,
                                          evs_error *err);

/**
 * Makes an independent copy of @p ev, stored fields included.
 * @param[out] out  yours: free with evs_event_free(); NULL on failure
 * @return 0, EVS_EINVALID (NULL argument) or EVS_ENOMEM
 */
EVS_EXTERN(int) evs_event_dup(evs_event **out, const evs_event *ev,
                              evs_error *err);

/** Frees an event. NULL is fine. */
EVS_EXTERN(void) evs_event_free(evs_event *ev);

/** The event id. Borrowed: valid while the event lives. */
EVS_EXTERN(const evs_uuid *) evs_event_id(const evs_event *ev);

/** The type name. Borrowed: valid while the event lives. */
EVS_EXTERN(const char *) evs_event_type(const evs_event *ev);

/** The data as JSON text. Borrowed: valid while the event lives. */
EVS_EXTERN(const char *) evs_event_data_json(const evs_event *ev);

/** The metadata as JSON text, or NULL when the event has none. Borrowed. */
EVS_EXTERN(const char *) evs_event_metadata_json(const evs_event *ev);

/**
 * The data as a json-c value, parsed on first use. Borrowed: valid while
 * the event lives; json_object_get() it to keep it longer, and do not
 * modify it. NULL when the data is JSON null (or, rarely, when memory ran
 * out parsing it).
 */
EVS_EXTERN(json_object *) evs_event_data(const evs_event *ev);

/**
 * The metadata as a json-c object, parsed on first use; NULL when the
 * event has none. Borrowed, as for evs_event_data().
 */
EVS_EXTERN(json_object *) evs_event_metadata(const evs_event *ev);

/** The aggregate the event was stored in; NULL for an event never stored. */
EVS_EXTERN(const char *) evs_event_aggregate_id(const evs_event *ev);

/** The stored version (0-indexed); EVS_NO_VERSION for an event never stored. */
EVS_EXTERN(int64_t) evs_event_version(const evs_event *ev);

/**
 * The global position: increases with every event the store records, in
 * any stream (gaps are possible); 0 for an event never stored.
 */
EVS_EXTERN(int64_t) evs_event_position(const evs_event *ev);

/**
 * When the store recorded the event: microseconds since 1970-01-01 UTC;
 * 0 for an event never stored (unless set with
 * evs_event_set_recorded_at()).
 */
EVS_EXTERN(int64_t) evs_event_recorded_at(const evs_event *ev);

struct evs_position;

/**
 * The checkpoint of a stored event, for resuming evs_store_read_all()
 * after it; {0, 0} for an event never stored.
 * @param[out] out  filled
 */
EVS_EXTERN(void) evs_event_checkpoint(struct evs_position *out,
                                      const evs_event *ev);

/**
 * An ordered list of events, as returned by evs_store_load(). Immutable
 * once returned, and readable from several threads at once.
 */
typedef struct evs_event_list evs_event_list;

/** Number of events in @p list; 0 for NULL. */
EVS_EXTERN(size_t) evs_event_list_count(const evs_event_list *list);

/**
 * The event at @p index. Borrowed: valid while the list lives.
 * @return the event, or NULL when @p index is out of range
 */
EVS_EXTERN(const evs_event *) evs_event_list_get(const evs_event_list *list,
                                                  size_t index);

/** Frees the list and every event in it. NULL is fine. */
EVS_EXTERN(void) evs_event_list_free(evs_event_list *list);

#ifdef __cplusplus
}
#endif
#endif
