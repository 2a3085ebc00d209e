/* Aggregate internals that the repository needs, not exported. */
#ifndef EVSTORE_AGGREGATE_INT_H
#define EVSTORE_AGGREGATE_INT_H

#include "common_int.h"

/* Checks an aggregate-type vtable: EVS_EINVALID when type is NULL or a
 * required slot is missing, EVS_EUNSUPPORTED for a version this library
 * does not know. Returns 0 when it can be used. */
int evs__aggregate_type_check(const evs_aggregate_type *type,
                              evs_error *err);

/* The type's name for messages: "(unnamed)" when it has none. */
const char *evs__aggregate_type_name(const evs_aggregate_type *type);

/* Records that the queued events were stored: the version moves on by
 * their number and the queue is emptied (its events freed). */
void evs__aggregate_mark_saved(evs_aggregate *agg);

/* Whether the type keeps snapshots (version 2 with a format). */
int evs__aggregate_type_snapshots(const evs_aggregate_type *type);

/* The version of the snapshot the aggregate was restored from or last
 * saved as (EVS_NO_VERSION: none), and its setter. */
int64_t evs__aggregate_snapshot_version(const evs_aggregate *agg);
void evs__aggregate_set_snapshot_version(evs_aggregate *agg, int64_t version);

/* Replaces the state of a fresh aggregate by the one its type's restore
 * makes from snapshot JSON; the version becomes the snapshot's. On
 * failure the aggregate is unchanged. */
int evs__aggregate_restore(evs_aggregate *agg, int64_t version,
                           const char *json, size_t len, evs_error *err);

/* The state as snapshot JSON (yours: free()). */
int evs__aggregate_snapshot_json(char **out, const evs_aggregate *agg,
                                 evs_error *err);

#endif
