/* Subscriptions inside the library: what lib/sub.c (the front end: the
 * batches, checkpoints, leases' timing, polling and the run loop) asks of
 * a backend. The memory backend (memory.c) and the PostgreSQL backend
 * (pg/sub.c) implement it; a store whose backend has none answers
 * EVS_EUNSUPPORTED. Not exported. */
#ifndef EVSTORE_SUB_INT_H
#define EVSTORE_SUB_INT_H

#include "common_int.h"

#define EVS__SUB_MAX_TYPES 16

/* What a subscription reads, checked and copied by the front end. */
typedef struct evs__feed {
	const char *category;         /* NULL: every stream */
	const char *types[EVS__SUB_MAX_TYPES + 1]; /* NULL-terminated */
	size_t n_types;               /* 0: every type */
	unsigned int member, size;    /* size 1: no group */
	const char *filter_json;      /* {"category":...,"types":[...]},
	                                 types sorted: stored and compared */
} evs__feed;

/* The result of claiming (or renewing) a named subscription's lease. */
typedef struct evs__claim {
	int status;              /* one of the EVS__CLAIM_ values */
	int64_t epoch;           /* CLAIMED: the fencing token */
	int has_checkpoint;      /* CLAIMED: a checkpoint is stored */
	evs_position position;   /* ... and here it is */
	int64_t lease_left_ms;   /* BUSY: until the holder's lease ends */
} evs__claim;

enum {
	EVS__CLAIM_OK = 0,
	EVS__CLAIM_BUSY = 1,     /* another live owner holds it */
	EVS__CLAIM_MISMATCH = 2, /* stored with another filter or group */
	EVS__CLAIM_REWOUND = 3   /* its checkpoint is beyond the log */
};

/* A subscription's backend side (opaque to the front end). */
typedef struct evs__sub_state evs__sub_state;

typedef struct evs__sub_ops {
	/* Sets up the backend side of a subscription: name NULL for a
	 * transient one; wake EVS_WAKE_POLL or _NOTIFY (refuse what the
	 * backend cannot do with EVS_EUNSUPPORTED). */
	int (*open)(evs__sub_state **out, evs_backend *be, const char *name,
	            const evs__feed *feed, const char *owner,
	            unsigned int lease_ms, unsigned int wake, evs_error *err);
	/* Claims or renews the lease (named subscriptions only). */
	int (*claim)(evs__sub_state *st, evs__claim *out, evs_error *err);
	/* Where "from the end" starts: no event that commits after this call
	 * may come before it. */
	int (*end)(evs__sub_state *st, evs_position *out, evs_error *err);
	/* One page of the feed after `after`: at most max events, fewer when
	 * they reach the backend's byte budget (*more then 1, as when the
	 * page was full); callbacks run with no statement open. */
	int (*read)(evs__sub_state *st, const evs_position *after, size_t max,
	            evs_backend_event_cb cb, void *payload, int *more,
	            evs_error *err);
	/* Transactional mode: begins a transaction (*conn: its PGconn, or
	 * NULL on a backend without one); store() then runs in it, and
	 * finish() commits (commit 1) or rolls it back. */
	int (*begin)(evs__sub_state *st, struct pg_conn **conn,
	             evs_error *err);
	int (*finish)(evs__sub_state *st, int commit, evs_error *err);
	/* Stores a checkpoint with this epoch: EVS_ELEASE when the lease
	 * moved on. last_id NULL: a starting point that names no event. */
	int (*store)(evs__sub_state *st, int64_t epoch, const evs_position *pos,
	             const evs_uuid *last_id, evs_error *err);
	/* Gives the lease up. */
	void (*release)(evs__sub_state *st, int64_t epoch);
	/* The descriptor to wait on (-1: none), and reading off what woke
	 * it (returns 1 when something did). */
	int (*fd)(const evs__sub_state *st);
	int (*drain)(evs__sub_state *st);
	void (*close)(evs__sub_state *st);
	/* The store's feed: head, fence and what holds it. */
	int (*feed_info)(evs_backend *be, evs_feed_info *out, evs_error *err);
	/* The stored subscriptions (of one name, or all: NULL), with their
	 * lag. */
	int (*list)(evs_backend *be, const char *name, evs_sub_info_cb cb,
	            void *payload, evs_error *err);
} evs__sub_ops;

/* Gives a store its backend's subscription support (evs_store_open_*). */
void evs__store_set_sub_ops(evs_store *store, const evs__sub_ops *ops);
const evs__sub_ops *evs__store_sub_ops(const evs_store *store);
evs_backend *evs__store_backend(const evs_store *store);

/* A consumer-group member's share of streams: the memory backend's
 * stable hash (PostgreSQL uses hashtextextended() on the server). */
int evs__feed_matches(const evs__feed *feed, const char *stream_id,
                      const char *type);

#endif
