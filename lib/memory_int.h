/* The in-memory backend's state, shared by memory.c (streams, appends,
 * reads) and memory_sub.c (subscriptions). Not exported. */
#ifndef EVSTORE_MEMORY_INT_H
#define EVSTORE_MEMORY_INT_H

#include <pthread.h>

#include "event_int.h"
#include "sub_int.h"

/* A stream's newest snapshot of one kind and format. */
typedef struct mem_snap {
	char *kind;
	unsigned int format;
	int64_t version, taken_at;
	char *json;
	size_t len;
} mem_snap;

typedef struct mem_stream {
	char *id;
	evs_event **events; /* events[v] is version v */
	size_t count, cap;
	/* Open-addressing index of event ids: slot holds version + 1, or 0
	 * when empty; capacity is a power of two, at least twice count. */
	int64_t *ids;
	size_t ids_cap;
	/* MEM_LIVE, or deleted: MEM_SOFT (events kept) or MEM_HARD (only the
	 * "$deleted" marker, at count - 1, is left; events[v] is NULL below
	 * it, and ids holds the marker's alone). */
	int state;
	uint64_t serial; /* tells a stream from a later one of the same id */
	mem_snap *snaps;
	size_t n_snaps;
	/* Retention: reads start at evs__mem_start(); scavenge (or a hard
	 * delete) freed the events below `first` (their places are NULL). */
	size_t first;
	int64_t truncate_before;
	int64_t max_count;  /* 0: no limit */
	int64_t max_age_us; /* 0: no limit */
} mem_stream;

enum { MEM_LIVE = 0, MEM_SOFT = 1, MEM_HARD = 2 };

struct mem_sub_row;
struct evs__sub_state;

typedef struct mem_backend {
	evs_backend base;
	pthread_mutex_t lock;
	mem_stream **table; /* open addressing; capacity is a power of two */
	size_t table_cap, n_streams;
	int64_t last_position;
	uint64_t last_commit; /* one per append that stored events */
	uint64_t last_serial; /* of the last stream made */
	/* Every stored event in global order (borrowed from the streams):
	 * appends hold the lock, so this is commit order too. */
	evs_event **log;
	size_t log_count, log_cap;
	/* Subscriptions (memory_sub.c): the stored ones, and the open ones
	 * to wake after each append. */
	struct mem_sub_row *subs;
	size_t n_subs, subs_cap;
	struct evs__sub_state **open_subs;
	size_t n_open, open_cap;
} mem_backend;

/* Index of the first logged event after position `after`. Lock held. */
size_t evs__mem_log_after(const mem_backend *mb, int64_t after);

/* Wakes every open subscription; called with the lock held after an
 * append stored events. */
void evs__mem_wake(mem_backend *mb);

/* Drops the event id from the checkpoints that name an event of the
 * stream below version `below`, which are about to be removed (their
 * positions stay). Lock held. */
void evs__mem_subs_forget(mem_backend *mb, const char *stream_id,
                          int64_t below);

/* Frees the stored subscriptions (the backend is being freed). */
void evs__mem_subs_free(mem_backend *mb);

extern const evs__sub_ops evs__mem_sub_ops;

#endif
