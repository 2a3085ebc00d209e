/* Group commit: evs_store_append() calls made at the same time by
 * different threads go out together, as one append_many() call (one
 * round trip, one transaction, one commit flush), each keeping its own
 * compare-and-set and its own answer.
 *
 * No thread and no timer of its own. Appends are spread over lanes by a
 * hash of the aggregate id; a lane has at most one request in flight. An
 * append that finds its lane idle and empty goes out at once, alone, on
 * the single-append path (so a lone caller pays nothing). One that finds
 * the lane busy queues and sleeps; when the request in flight ends, the
 * first queued caller to wake becomes the leader: it takes the queue (up
 * to group_max_appends and group_max_bytes), sends it, hands every caller
 * its answer and wakes them. So a group grows exactly as fast as appends
 * pile up behind a commit, as PostgreSQL's own WAL flush does.
 *
 * A request out for longer than group_lock_wait_ms (a lone append
 * waiting for a stream another session holds) lets the next group go out
 * beside it: a held stream delays the rest of its lane by that much at
 * most.
 *
 * Failures: a group whose connection broke or ran out of time leaves
 * every append in it unknown: each caller gets that error (resending is
 * a replay). A group the server refused as a whole (a stream's lock held
 * past group_lock_wait_ms, a value the database cannot hold, no EXECUTE
 * on append_many) stored nothing: each caller then sends its own append
 * alone, which finds out what that append alone would get. */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "event_int.h"
#include "pg_int.h"

typedef struct pg_group_req {
	evs_append_req r;    /* the append; its out fields filled by the leader */
	size_t bytes;        /* of event data and metadata */
	int done;            /* answered (lane lock) */
	int alone;           /* 1: send it alone after all */
	evs_error err;       /* the answer's error, for the caller to take */
	struct pg_group_req *next;
} pg_group_req;

typedef struct pg_lane {
	pthread_mutex_t lock;
	pthread_cond_t wake;       /* on CLOCK_MONOTONIC */
	pg_group_req *head, *tail; /* queued, not yet taken */
	int in_flight;             /* requests out on this lane */
	int64_t since_ms;          /* when the latest of them went out */
} pg_lane;

int evs__pg_group_init(pg_backend *pb, unsigned int n_lanes)
{
	unsigned int i;

	pb->lanes = calloc(n_lanes, sizeof(*pb->lanes));
	if (pb->lanes == NULL)
		return EVS_ENOMEM;
	pb->n_lanes = n_lanes;
	for (i = 0; i < n_lanes; i++) {
		pthread_condattr_t attr;

		pthread_mutex_init(&pb->lanes[i].lock, NULL);
		pthread_condattr_init(&attr);
		pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
		pthread_cond_init(&pb->lanes[i].wake, &attr);
		pthread_condattr_destroy(&attr);
	}
	return 0;
}

void evs__pg_group_free(pg_backend *pb)
{
	unsigned int i;

	if (pb->lanes == NULL)
		return;
	for (i = 0; i < pb->n_lanes; i++) {
		pthread_mutex_destroy(&pb->lanes[i].lock);
		pthread_cond_destroy(&pb->lanes[i].wake);
	}
	free(pb->lanes);
	pb->lanes = NULL;
}

static size_t batch_bytes(evs_event *const *events, size_t n)
{
	size_t i, b = 0;

	for (i = 0; i < n; i++)
		b += events[i]->data_len + events[i]->metadata_len + 64;
	return b;
}

/* Takes the next group off the lane's queue (lane lock held): at least
 * one request, then more while both bounds hold. */
static pg_group_req *take_group(pg_backend *pb, pg_lane *lane, size_t *count)
{
	pg_group_req *first = lane->head, *last = first;
	size_t n = 1, bytes = first->bytes;

	while (last->next != NULL && n < pb->group_max_appends &&
	       bytes + last->next->bytes <= pb->group_max_bytes) {
		last = last->next;
		bytes += last->bytes;
		n++;
	}
	lane->head = last->next;
	if (lane->head == NULL)
		lane->tail = NULL;
	last->next = NULL;
	*count = n;
	return first;
}

/* Sends one group (no lock held) and fills every request's answer. */
static void send_group(pg_backend *pb, pg_group_req *group, size_t n)
{
	evs_append_req *reqs = NULL;
	evs_error *each = NULL, whole_err = EVS_ERROR_INIT;
	pg_group_req *g;
	pg_slot *slot = NULL;
	size_t i;
	int rc, whole = PG_MANY_LOCAL;

	if (n == 1) {
		/* Nothing to group with: the single path, while the lane is
		 * still held (one request in flight per lane). */
		evs_append_result res = {EVS_NO_VERSION, 0};

		group->r.rc = evs__pg_append_alone(
		        &res, pb, group->r.aggregate_id,
		        group->r.expected_version, group->r.events,
		        group->r.n_events, 0, &group->err);
		group->r.version = res.version;
		group->r.replayed = res.replayed;
		return;
	}
	reqs = malloc(n * sizeof(*reqs));
	each = calloc(n, sizeof(*each));
	if (reqs == NULL || each == NULL) {
		rc = evs__error_nomem(&whole_err);
		goto answer_all;
	}
	for (i = 0, g = group; g != NULL; g = g->next, i++)
		reqs[i] = g->r;
	rc = evs__pg_acquire(&slot, pb, &whole_err);
	if (rc < 0)
		goto answer_all;
	rc = evs__pg_many_on_slot(pb, slot, reqs, n, 0, pb->group_lock_wait_ms,
	                          evs__pg_deadline(pb->call_timeout_ms),
	                          &whole, &whole_err, each);
	evs__pg_release(pb, slot);
	if (whole == PG_MANY_SERVER) {
		if (strcmp(whole_err.sqlstate, "42501") == 0)
			atomic_store(&pb->many_denied, 1);
		for (g = group; g != NULL; g = g->next)
			g->alone = 1;
		goto out;
	}
	if (whole == PG_MANY_OK) {
		for (i = 0, g = group; g != NULL; g = g->next, i++) {
			g->r = reqs[i];
			if (reqs[i].rc < 0) {
				g->err = each[i];
				each[i] = (evs_error)EVS_ERROR_INIT;
			}
		}
		goto out;
	}
answer_all:
	/* No answer from the server: every append of the group may or may
	 * not be stored. */
	for (g = group; g != NULL; g = g->next) {
		g->r.rc = rc;
		evs__error_copy(&g->err, &whole_err);
	}
out:
	for (i = 0; each != NULL && i < n; i++)
		evs_error_clear(&each[i]);
	free(each);
	free(reqs);
	evs_error_clear(&whole_err);
}

int evs__pg_group_append(evs_append_result *out, pg_backend *pb,
                         const char *id, int64_t expected,
                         evs_event *const *events, size_t n,
                         evs_error *err)
{
	pg_lane *lane = &pb->lanes[evs__hash_str(id) % pb->n_lanes];
	pg_group_req me;
	int rc;

	memset(&me, 0, sizeof(me));
	me.r.aggregate_id = id;
	me.r.expected_version = expected;
	me.r.events = events;
	me.r.n_events = n;
	me.bytes = batch_bytes(events, n);
	if (atomic_load(&pb->many_denied))
		return evs__pg_append_alone(out, pb, id, expected, events, n, 0,
		                            err);
	pthread_mutex_lock(&lane->lock);
	if (lane->in_flight == 0 && lane->head == NULL) {
		/* Alone: out at once, on the single path. Whoever queues
		 * meanwhile is woken to lead when this is done. */
		lane->in_flight++;
		lane->since_ms = evs__pg_now_ms();
		pthread_mutex_unlock(&lane->lock);
		rc = evs__pg_append_alone(out, pb, id, expected, events, n, 0,
		                          err);
		pthread_mutex_lock(&lane->lock);
		lane->in_flight--;
		if (lane->head != NULL)
			pthread_cond_broadcast(&lane->wake);
		pthread_mutex_unlock(&lane->lock);
		return rc;
	}
	if (lane->tail != NULL)
		lane->tail->next = &me;
	else
		lane->head = &me;
	lane->tail = &me;
	while (!me.done) {
		int64_t now = evs__pg_now_ms();
		int64_t stuck_at = lane->since_ms + pb->group_lock_wait_ms;

		/* Lead when nothing is out on the lane, or when what is
		 * out has taken longer than a group may wait for a lock
		 * (a stream held by another session must not hold every
		 * stream of its lane). */
		if (lane->head != NULL &&
		    (lane->in_flight == 0 || now >= stuck_at)) {
			pg_group_req *group, *g;
			size_t count;

			/* This caller's append may be in a later group when
			 * the queue is long. */
			lane->in_flight++;
			lane->since_ms = now;
			group = take_group(pb, lane, &count);
			pthread_mutex_unlock(&lane->lock);
			send_group(pb, group, count);
			pthread_mutex_lock(&lane->lock);
			for (g = group; g != NULL;) {
				pg_group_req *next = g->next;

				g->done = 1;
				g = next;
			}
			lane->in_flight--;
			pthread_cond_broadcast(&lane->wake);
			continue;
		}
		if (lane->head == NULL) {
			/* This caller's append is out, in a group. */
			pthread_cond_wait(&lane->wake, &lane->lock);
		} else {
			struct timespec ts;

			clock_gettime(CLOCK_MONOTONIC, &ts);
			ts.tv_sec += (time_t)((stuck_at - now) / 1000);
			ts.tv_nsec += (long)((stuck_at - now) % 1000) * 1000000L;
			if (ts.tv_nsec >= 1000000000L) {
				ts.tv_sec++;
				ts.tv_nsec -= 1000000000L;
			}
			pthread_cond_timedwait(&lane->wake, &lane->lock, &ts);
		}
	}
	pthread_mutex_unlock(&lane->lock);
	if (me.alone) {
		evs_error_clear(&me.err);
		return evs__pg_append_alone(out, pb, id, expected, events, n, 0,
		                            err);
	}
	rc = me.r.rc;
	if (rc == 0) {
		out->version = me.r.version;
		out->replayed = me.r.replayed;
	} else if (err != NULL) {
		evs__error_reset(err);
		*err = me.err;
		me.err = (evs_error)EVS_ERROR_INIT;
	}
	evs_error_clear(&me.err);
	return rc;
}
