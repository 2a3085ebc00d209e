/* evstore/evstore.h: the umbrella header; the only one applications need.
 *
 * evstore keeps event-sourced aggregates: streams of immutable events,
 * appended with an optimistic-concurrency check and read back in order.
 *
 * Thread safety. There is no global state and no init function. A store
 * handle (evs_store) is safe to share between threads, and so is a
 * repository (evs_repo). An aggregate (evs_aggregate) and an event being
 * built are used by one thread at a time. A returned event list is
 * immutable and readable from several threads at once, but json-c's
 * reference counts are not atomic in a default json-c build: never
 * json_object_get()/json_object_put() the same value from two threads.
 *
 * Ownership words used in every comment: borrowed (valid for the call or
 * while the parent lives; do not free), copied (evstore keeps its own),
 * yours (free it with the named function), taken (evstore frees it, even
 * on failure).
 */
#ifndef EVSTORE_EVSTORE_H
#define EVSTORE_EVSTORE_H

#include "aggregate.h"
#include "backend.h"
#include "common.h"
#include "error.h"
#include "event.h"
#include "memory.h"
#include "pg.h"
#include "repository.h"
#include "store.h"
#include "subscription.h"
#include "version.h"

#endif
