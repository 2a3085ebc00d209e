/* Group commit: evs_store_append() calls made at the same time by
 * different threads go out together, as one pipeline of the single-append
 * statements ending in one Sync: one round trip, one transaction, one
 * commit flush for all of them. Each keeps its own statement, so its own
 * compare-and-set, and gets the answer it would get alone.
 *
 * No thread and no timer of its own. At most group_in_flight requests
 * (single appends or groups; the pool's size by default) are out at
 * once. An append that finds fewer out and none queued goes out at once,
 * alone, exactly as without group commit: below that load nothing
 * changes. One that finds them all out queues and sleeps; when one ends,
 * the first queued caller to wake becomes the leader: it takes the queue
 * (up to group_max_appends and group_max_bytes, one append per stream: a
 * second one on a stream waits for the next group), sends it, hands every
 * caller its answer and wakes them. So groups form only when appends
 * arrive faster than the connections can take them one at a time, and
 * grow as fast as they pile up, as PostgreSQL's own WAL flush does.
 *
 * A group's statements go in stream-id byte order (every writer that
 * locks several streams does so in this order, so two never wait on each
 * other in a cycle), after a lock_timeout of group_lock_wait_ms for the
 * group's transaction. A request out for longer than that (a lone append
 * waiting for a stream another session holds) lets the next group go out
 * beside it, past the limit.
 *
 * Answers: a compare-and-set that matched stored its events; one that
 * matched nothing (a conflict, a replay, a stream not there yet) tells
 * nothing, so that append goes out again alone after the group, where the
 * schema's function says exactly what happened. A function's row is the
 * answer. If a statement failed (a lock held past the wait, a duplicate
 * id, a value the database cannot hold), the group was rolled back and
 * every append goes out again alone. If the connection broke or the call
 * ran out of time, the group's outcome is unknown: every caller gets that
 * error (resending is a replay). */
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

/* Takes the next group off the lane's queue (lane lock held): the first
 * request, then more while both bounds hold, skipping (leaving queued, in
 * order) a request on a stream the group already has. */
static pg_group_req *take_group(pg_backend *pb, pg_lane *lane, size_t *count)
{
	pg_group_req *first = lane->head, *last = first, **link, *g;
	size_t n = 1, bytes = first->bytes;

	lane->head = first->next;
	first->next = NULL;
	link = &lane->head;
	while (*link != NULL && n < pb->group_max_appends &&
	       bytes + (*link)->bytes <= pb->group_max_bytes) {
		pg_group_req *c = *link;

		for (g = first; g != NULL; g = g->next)
			if (strcmp(g->r.aggregate_id, c->r.aggregate_id) == 0)
				break;
		if (g != NULL) {
			link = &c->next;
			continue;
		}
		*link = c->next;
		c->next = NULL;
		last->next = c;
		last = c;
		bytes += c->bytes;
		n++;
	}
	/* The tail may have been taken. */
	lane->tail = NULL;
	for (g = lane->head; g != NULL; g = g->next)
		lane->tail = g;
	*count = n;
	return first;
}

static int by_stream(const void *a, const void *b)
{
	const pg_group_req *x = *(pg_group_req *const *)a;
	const pg_group_req *y = *(pg_group_req *const *)b;

	return strcmp(x->r.aggregate_id, y->r.aggregate_id);
}

/* One request of a group on the wire: its statement and parameters. */
typedef struct {
	pg_group_req *g;
	const char *stmt;
	char *arrays[4];
	char expected[24];
	const char *params[6];
} wire_req;

/* Reads request w's answer from its statement's result (the group
 * committed). */
static void take_answer(pg_group_req *g, const char *stmt, PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);

	if ((st != PGRES_TUPLES_OK && st != PGRES_SINGLE_TUPLE) ||
	    PQntuples(res) != 1) {
		/* A compare-and-set that matched nothing. */
		g->alone = 1;
		return;
	}
	if (strcmp(stmt, PG_APPEND_CAS) == 0) {
		g->r.rc = 0;
		g->r.version = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		return;
	}
	/* append_events(): status, version. */
	g->r.version = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	switch (atoi(PQgetvalue(res, 0, 0))) {
	case 0:
		g->r.rc = 0;
		break;
	case 1:
		g->r.rc = 0;
		g->r.replayed = 1;
		break;
	case 4:
		g->r.rc = evs_error_set_deleted(&g->err, g->r.aggregate_id,
		                                g->r.expected_version,
		                                g->r.version);
		break;
	default:
		g->r.rc = evs_error_set_conflict(&g->err, g->r.aggregate_id,
		                                 g->r.expected_version,
		                                 g->r.version);
		break;
	}
}

/* Sends one group (no lock held) and fills every request's answer. */
static void send_group(pg_backend *pb, pg_group_req *group, size_t n)
{
	pg_group_req **sorted = NULL, *g;
	wire_req *w = NULL;
	PGresult **res = NULL;
	const char **stmts = NULL;
	const char *const **params = NULL;
	int *n_params = NULL;
	evs_error err = EVS_ERROR_INIT;
	char wait[32];
	const char *wait_param[1] = {wait};
	pg_slot *slot = NULL;
	size_t i;
	int rc, one_statement = atomic_load(&pb->one_statement), failed = 0;

	if (n == 1) {
		/* Nothing to group with: the single path, while the lane is
		 * still held (one request in flight per lane). */
		evs_append_result out = {EVS_NO_VERSION, 0};

		group->r.rc = evs__pg_append_alone(
		        &out, pb, group->r.aggregate_id,
		        group->r.expected_version, group->r.events,
		        group->r.n_events, 0, &group->err);
		group->r.version = out.version;
		group->r.replayed = out.replayed;
		return;
	}
	sorted = malloc(n * sizeof(*sorted));
	w = calloc(n, sizeof(*w));
	res = calloc(n + 1, sizeof(*res));
	stmts = malloc((n + 1) * sizeof(*stmts));
	params = malloc((n + 1) * sizeof(*params));
	n_params = malloc((n + 1) * sizeof(*n_params));
	rc = sorted && w && res && stmts && params && n_params ? 0 : EVS_ENOMEM;
	for (i = 0, g = group; rc == 0 && g != NULL; g = g->next, i++)
		sorted[i] = g;
	if (rc == 0)
		qsort(sorted, n, sizeof(*sorted), by_stream);
	snprintf(wait, sizeof(wait), "%ums", pb->group_lock_wait_ms);
	stmts[0] = PG_LOCK_WAIT;
	n_params[0] = 1;
	params[0] = wait_param;
	for (i = 0; rc == 0 && i < n; i++) {
		wire_req *x = &w[i];
		int k;

		x->g = sorted[i];
		rc = evs__pg_encode_events(x->arrays, x->g->r.events,
		                           x->g->r.n_events);
		if (rc < 0)
			break;
		snprintf(x->expected, sizeof(x->expected), "%lld",
		         (long long)x->g->r.expected_version);
		x->stmt = x->g->r.expected_version >= 0 && one_statement
		                  ? PG_APPEND_CAS
		                  : PG_APPEND;
		x->params[0] = x->g->r.aggregate_id;
		x->params[1] = x->expected;
		for (k = 0; k < 4; k++)
			x->params[2 + k] = x->arrays[k];
		stmts[i + 1] = x->stmt;
		n_params[i + 1] = 6;
		params[i + 1] = x->params;
	}
	if (rc < 0) {
		evs__error_nomem(&err);
		goto answer_all;
	}
	if ((rc = evs__pg_acquire(&slot, pb, &err)) < 0)
		goto answer_all;
	rc = evs__pg_pipeline(res, pb, slot, n + 1, stmts, n_params, params,
	                      evs__pg_deadline(pb->call_timeout_ms),
	                      "could not append events", &err);
	evs__pg_release(pb, slot);
	if (rc < 0)
		goto answer_all;
	for (i = 0; i <= n; i++) {
		ExecStatusType st = PQresultStatus(res[i]);

		if (st != PGRES_TUPLES_OK && st != PGRES_COMMAND_OK &&
		    st != PGRES_SINGLE_TUPLE) {
			const char *state =
			        PQresultErrorField(res[i], PG_DIAG_SQLSTATE);

			/* A privilege revoked under the open store: the
			 * function only, from now on (as append.c). */
			if (state != NULL && strcmp(state, "42501") == 0 &&
			    i > 0 && strcmp(w[i - 1].stmt, PG_APPEND_CAS) == 0)
				atomic_store(&pb->one_statement, 0);
			failed = 1;
			break;
		}
	}
	for (i = 0; i < n; i++) {
		if (failed)
			w[i].g->alone = 1;
		else
			take_answer(w[i].g, w[i].stmt, res[i + 1]);
	}
	goto out;
answer_all:
	/* No answer from the server: every append of the group may or may
	 * not be stored. */
	for (g = group; g != NULL; g = g->next) {
		g->r.rc = rc;
		evs__error_copy(&g->err, &err);
	}
out:
	for (i = 0; w != NULL && i < n; i++) {
		int k;

		for (k = 0; k < 4; k++)
			free(w[i].arrays[k]);
	}
	for (i = 0; res != NULL && i <= n; i++)
		PQclear(res[i]);
	free(sorted);
	free(w);
	free(res);
	free(stmts);
	free(params);
	free(n_params);
	evs_error_clear(&err);
}

int evs__pg_group_append(evs_append_result *out, pg_backend *pb,
                         const char *id, int64_t expected,
                         evs_event *const *events, size_t n,
                         evs_error *err)
{
	pg_lane *lane = &pb->lanes[0];
	pg_group_req me;
	int rc;

	memset(&me, 0, sizeof(me));
	me.r.aggregate_id = id;
	me.r.expected_version = expected;
	me.r.events = events;
	me.r.n_events = n;
	me.bytes = batch_bytes(events, n);
	pthread_mutex_lock(&lane->lock);
	if (lane->in_flight < (int)pb->group_in_flight && lane->head == NULL) {
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

		/* Lead when fewer than group_in_flight are out, or when
		 * the latest out has taken longer than a group may wait for
		 * a lock (a stream held by another session must not hold
		 * every other append). */
		if (lane->head != NULL &&
		    (lane->in_flight < (int)pb->group_in_flight ||
		     now >= stuck_at)) {
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
