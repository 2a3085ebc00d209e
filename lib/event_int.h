/* The event struct, shared by the library's own backends. */
#ifndef EVSTORE_EVENT_INT_H
#define EVSTORE_EVENT_INT_H

#include <stdatomic.h>

#include "common_int.h"

struct evs_event {
	evs_uuid id;
	const char *type;       /* all strings point into buf */
	const char *data;       /* JSON text, NUL-terminated */
	size_t data_len;
	const char *metadata;   /* JSON object text, or NULL */
	size_t metadata_len;
	const char *aggregate_id; /* NULL until stored */
	int64_t version;        /* EVS_NO_VERSION until stored */
	int64_t position;
	int64_t recorded_at;
	int has_time;           /* recorded_at is set: stored, or by the caller */
	uint64_t commit;        /* writing transaction; 0 until read_all */
	/* Parsed on first use; set once with a compare-and-swap so that
	 * readers on several threads agree on one object. */
	_Atomic(json_object *) data_obj;
	_Atomic(json_object *) metadata_obj;
	char buf[];
};

struct evs_event_list {
	size_t count;
	size_t cap;
	evs_event **items;
};

/* The recorded times both backends store exactly, in microseconds since
 * 1970-01-01 UTC: PostgreSQL's first timestamptz (4714-11-24 BC) up to
 * one microsecond below INT64_MAX (294247-01-10), the last that the
 * server's extract(epoch ...) returns without rounding through a double. */
#define EVS_TIME_MIN_US (-210866803200000000LL)
#define EVS_TIME_MAX_US (INT64_MAX - 1)

#endif
