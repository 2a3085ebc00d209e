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

#endif
