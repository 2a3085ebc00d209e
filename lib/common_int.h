/* Helpers shared inside lib/, not exported. */
#ifndef EVSTORE_COMMON_INT_H
#define EVSTORE_COMMON_INT_H

#include <stdint.h>
#include <stddef.h>

#include <evstore/evstore.h>

/* Checks an aggregate id or type name: 1 to EVS_ID_MAX bytes of valid
 * UTF-8 with no control characters. `what` names the argument in the
 * message. Returns 0 or EVS_EINVALID. */
int evs__check_name(const char *what, const char *value, evs_error *err);

/* 1 when s[0..len) is valid UTF-8 (no overlongs, surrogates or code
 * points past U+10FFFF), else 0. */
int evs__utf8_valid(const char *s, size_t len);

/* Deepest nesting of arrays and objects accepted in event JSON. */
#define EVS_JSON_MAX_DEPTH 256

/* Checks that text[0..len) is one JSON value (RFC 8259, strictly) that
 * jsonb can store. Returns 0, or -1 with the byte offset and reason. */
int evs__json_check(const char *text, size_t len, size_t *where,
                    const char **why);

/* Resets err to "no error" (freeing what an earlier call left). */
void evs__error_reset(evs_error *err);

/* Fills err with EVS_ENOMEM without allocating; returns EVS_ENOMEM. */
int evs__error_nomem(evs_error *err);

/* Adds the aggregate id to an error already set (EVS_EDUPLICATE). */
int evs__error_set_aggregate(evs_error *err, const char *aggregate_id);
/* EVS_EDELETED for an undelete of a hard-deleted stream. */
int evs__error_set_hard_deleted(evs_error *err, const char *aggregate_id,
                                int64_t expected, int64_t actual);

/* Makes dst a copy of src (its strings copied). Returns the code. */
int evs__error_copy(evs_error *dst, const evs_error *src);

/* Adds a detail line (copied) to an error already set. */
int evs__error_set_detail(evs_error *err, const char *detail);

/* One append, as evs__append_each() makes it (ctx: the caller's). */
typedef int (*evs__append_fn)(evs_append_result *out, void *ctx,
                              const char *id, int64_t expected,
                              evs_event *const *events, size_t n,
                              unsigned int flags, evs_error *err);

/* The requests of a multi-stream append one at a time through fn, each
 * in a call (a transaction) of its own: every request's outcome set, err
 * for the first that failed. Returns 0 or that request's code. */
int evs__append_each(evs_append_req *reqs, size_t n, unsigned int flags,
                     evs__append_fn fn, void *ctx, evs_error *err);

/* FNV-1a of a string: a stable hash for tables and lanes. */
uint64_t evs__hash_str(const char *s);

/* Microseconds since 1970-01-01 UTC. */
int64_t evs__now_us(void);

/* Event lists are built by the library only. */
int evs__event_list_new(evs_event_list **out, evs_error *err);
/* Takes ev (frees it on failure). */
int evs__event_list_push(evs_event_list *list, evs_event *ev, evs_error *err);

#endif
