/* Subscriptions: the front end. It checks the options, keeps the
 * position, hands pages to the handler in batches, stores checkpoints as
 * the delivery mode says, times polls, lease renewals and take-overs, and
 * runs the blocking loop. The backend (sub_int.h) reads the feed and
 * keeps checkpoints and leases. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "event_int.h"
#include "sub_int.h"

#define DEFAULT_BATCH_MAX 256
#define MAX_BATCH 100000
#define DEFAULT_POLL_MIN_MS 20
#define DEFAULT_POLL_MAX_MS 500
#define DEFAULT_LEASE_MS 30000

struct evs_sub_batch {
	evs_event **ev;
	size_t n, cap;
	struct pg_conn *conn;
};

struct evs_sub {
	evs_store *store;
	const evs__sub_ops *ops;
	evs__sub_state *st;
	char *name;      /* NULL: transient */
	evs__feed feed;
	char *category;
	char *types[EVS__SUB_MAX_TYPES];
	char *filter_json;
	char owner[160];
	unsigned int mode, batch_max, checkpoint_every;
	unsigned int poll_min_ms, poll_max_ms, lease_ms;
	unsigned int start;
	evs_position start_position;
	int active;          /* holds the lease (always, when transient) */
	int64_t epoch;
	evs_position pos;    /* after the last event handled */
	evs_uuid last_id;    /* ... and its id */
	int has_last;
	size_t pending;      /* handled since the stored checkpoint */
	int reload;          /* a transaction's outcome is unknown: read the
	                        checkpoint back before going on */
	int64_t next_poll_ms, interval_ms;
	int64_t renew_at_ms; /* active: when to renew the lease */
	int64_t claim_at_ms; /* standby: when to try to take it over */
	int stop_pipe[2];
	volatile sig_atomic_t stopped;
	evs_sub_batch batch;
};

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- batches ------------------------------------------------------------ */

size_t evs_sub_batch_count(const evs_sub_batch *batch)
{
	return batch ? batch->n : 0;
}

const evs_event *evs_sub_batch_get(const evs_sub_batch *batch, size_t i)
{
	return batch != NULL && i < batch->n ? batch->ev[i] : NULL;
}

struct pg_conn *evs_sub_batch_conn(evs_sub_batch *batch)
{
	return batch ? batch->conn : NULL;
}

static void batch_clear(evs_sub_batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		evs_event_free(b->ev[i]);
	b->n = 0;
	b->conn = NULL;
}

/* The backend's read callback: takes ev into the batch. */
static int collect(evs_event *ev, void *payload)
{
	evs_sub_batch *b = payload;

	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 64;
		evs_event **p = realloc(b->ev, cap * sizeof(*p));

		if (p == NULL) {
			evs_event_free(ev);
			return EVS_ENOMEM;
		}
		b->ev = p;
		b->cap = cap;
	}
	b->ev[b->n++] = ev;
	return 0;
}

/* ---- options ------------------------------------------------------------ */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Appends s as a JSON string (ids and types hold no control
 * characters: only '"' and '\' need escaping). */
static size_t json_str(char *out, const char *s)
{
	size_t n = 0;

	out[n++] = '"';
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			out[n++] = '\\';
		out[n++] = *s;
	}
	out[n++] = '"';
	return n;
}

static int build_filter(evs_sub *sub, evs_error *err)
{
	size_t cap = 64, i, n = 0;
	char *j;

	if (sub->category)
		cap += 2 * strlen(sub->category) + 2;
	for (i = 0; i < sub->feed.n_types; i++)
		cap += 2 * strlen(sub->types[i]) + 3;
	j = malloc(cap);
	if (j == NULL)
		return evs__error_nomem(err);
	n += (size_t)sprintf(j, "{\"category\": ");
	if (sub->category)
		n += json_str(j + n, sub->category);
	else
		n += (size_t)sprintf(j + n, "null");
	n += (size_t)sprintf(j + n, ", \"types\": ");
	if (sub->feed.n_types == 0) {
		n += (size_t)sprintf(j + n, "null");
	} else {
		j[n++] = '[';
		for (i = 0; i < sub->feed.n_types; i++) {
			if (i)
				j[n++] = ',';
			n += json_str(j + n, sub->types[i]);
		}
		j[n++] = ']';
	}
	j[n++] = '}';
	j[n] = '\0';
	sub->filter_json = j;
	sub->feed.filter_json = j;
	return 0;
}

static int check_options(evs_sub *sub, const evs_sub_options *o,
                         evs_error *err)
{
	size_t i, n = 0;
	int rc;

	if (o->version == 0 || o->version > EVS_SUB_OPTIONS_VERSION)
		return evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                     "evs_sub_options version %u is not "
		                     "supported (this library knows 1 to %d)",
		                     o->version, EVS_SUB_OPTIONS_VERSION);
	if (o->name != NULL &&
	    (rc = evs__check_name("opts->name", o->name, err)) < 0)
		return rc;
	if (o->category != NULL) {
		if ((rc = evs__check_name("opts->category", o->category,
		                          err)) < 0)
			return rc;
		if (strchr(o->category, '-') != NULL)
			return evs_error_set(err, EVS_EINVALID, NULL,
			                     "opts->category \"%s\" holds a '-': "
			                     "a category is a stream id's part "
			                     "before its first '-'", o->category);
	}
	if (o->types != NULL) {
		for (n = 0; o->types[n] != NULL; n++) {
			char what[32];

			if (n == EVS__SUB_MAX_TYPES)
				return evs_error_set(err, EVS_EINVALID, NULL,
				                     "opts->types holds more than "
				                     "%d types", EVS__SUB_MAX_TYPES);
			snprintf(what, sizeof(what), "opts->types[%zu]", n);
			if ((rc = evs__check_name(what, o->types[n], err)) < 0)
				return rc;
		}
		if (n == 0)
			return evs_error_set(err, EVS_EINVALID, NULL,
			                     "opts->types is empty: NULL reads "
			                     "every type");
	}
	if (o->group_size > 1 && o->group_member >= o->group_size)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->group_member %u is not below "
		                     "opts->group_size %u", o->group_member,
		                     o->group_size);
	if (o->group_size <= 1 && o->group_member != 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->group_member %u without a group "
		                     "(opts->group_size %u)", o->group_member,
		                     o->group_size);
	if (o->group_size > 1 << 20)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->group_size %u is more than %d",
		                     o->group_size, 1 << 20);
	if (o->mode > EVS_SUB_TRANSACTIONAL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->mode %u is not EVS_SUB_AT_LEAST_ONCE "
		                     "or EVS_SUB_TRANSACTIONAL", o->mode);
	if (o->start > EVS_SUB_FROM_POSITION)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->start %u is not EVS_SUB_FROM_START, "
		                     "_FROM_END or _FROM_POSITION", o->start);
	if (o->start == EVS_SUB_FROM_POSITION && o->start_position.global < 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->start_position.global %lld is below "
		                     "0", (long long)o->start_position.global);
	if (o->wake > EVS_WAKE_NOTIFY)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->wake %u is not EVS_WAKE_POLL or "
		                     "EVS_WAKE_NOTIFY", o->wake);
	if (o->batch_max > MAX_BATCH)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->batch_max %u is more than %d",
		                     o->batch_max, MAX_BATCH);
	if (o->poll_min_ms > 0 && o->poll_max_ms > 0 &&
	    o->poll_min_ms > o->poll_max_ms)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->poll_min_ms %u is above "
		                     "opts->poll_max_ms %u", o->poll_min_ms,
		                     o->poll_max_ms);
	if (o->lease_ms > 0 && o->lease_ms < 100)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->lease_ms %u is below 100",
		                     o->lease_ms);
	if (o->name == NULL && o->mode == EVS_SUB_TRANSACTIONAL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "EVS_SUB_TRANSACTIONAL needs a name: its "
		                     "checkpoint commits with the handler's "
		                     "writes");

	sub->mode = o->mode;
	sub->batch_max = o->batch_max ? o->batch_max : DEFAULT_BATCH_MAX;
	sub->checkpoint_every = o->checkpoint_every;
	sub->poll_min_ms = o->poll_min_ms ? o->poll_min_ms : DEFAULT_POLL_MIN_MS;
	sub->poll_max_ms = o->poll_max_ms ? o->poll_max_ms : DEFAULT_POLL_MAX_MS;
	if (sub->poll_min_ms > sub->poll_max_ms)
		sub->poll_max_ms = sub->poll_min_ms;
	sub->lease_ms = o->lease_ms ? o->lease_ms : DEFAULT_LEASE_MS;
	sub->start = o->start;
	sub->start_position = o->start_position;
	if (o->name != NULL && (sub->name = strdup(o->name)) == NULL)
		return evs__error_nomem(err);
	if (o->category != NULL &&
	    (sub->category = strdup(o->category)) == NULL)
		return evs__error_nomem(err);
	for (i = 0; i < n; i++)
		if ((sub->types[i] = strdup(o->types[i])) == NULL)
			return evs__error_nomem(err);
	/* Sorted, without repeats: the stored filter compares as text. */
	qsort(sub->types, n, sizeof(sub->types[0]), cmp_str);
	sub->feed.n_types = 0;
	for (i = 0; i < n; i++) {
		if (sub->feed.n_types > 0 &&
		    strcmp(sub->types[i],
		           sub->types[sub->feed.n_types - 1]) == 0) {
			free(sub->types[i]);
			sub->types[i] = NULL;
			continue;
		}
		sub->types[sub->feed.n_types] = sub->types[i];
		if (sub->feed.n_types != i)
			sub->types[i] = NULL;
		sub->feed.n_types++;
	}
	sub->feed.category = sub->category;
	for (i = 0; i < sub->feed.n_types; i++)
		sub->feed.types[i] = sub->types[i];
	sub->feed.types[sub->feed.n_types] = NULL;
	sub->feed.size = o->group_size > 1 ? o->group_size : 1;
	sub->feed.member = o->group_member;
	return build_filter(sub, err);
}

/* An owner name that no other instance has: host, process, random. */
static int make_owner(evs_sub *sub, evs_error *err)
{
	char host[64] = "", id[EVS_UUID_STRLEN + 1];
	evs_uuid u;
	int rc;

	if ((rc = evs_uuid_generate(&u, err)) < 0)
		return rc;
	evs_uuid_format(id, &u);
	if (gethostname(host, sizeof(host) - 1) != 0)
		snprintf(host, sizeof(host), "?");
	host[sizeof(host) - 1] = '\0';
	snprintf(sub->owner, sizeof(sub->owner), "%s:%ld:%s", host,
	         (long)getpid(), id);
	return 0;
}

/* ---- the lease ------------------------------------------------------------- */

/* Where a subscription without a stored checkpoint starts. */
static int start_position(evs_sub *sub, evs_position *out, evs_error *err)
{
	static const evs_position zero = EVS_POSITION_START;

	switch (sub->start) {
	case EVS_SUB_FROM_END:
		return sub->ops->end(sub->st, out, err);
	case EVS_SUB_FROM_POSITION:
		*out = sub->start_position;
		return 0;
	default:
		*out = zero;
		return 0;
	}
}

/* Claims (or renews) the lease and acts on the answer. Returns 0 (active
 * or standby: see sub->active), EVS_ELEASE (this active instance lost
 * the lease), or an error. */
static int claim(evs_sub *sub, evs_error *err)
{
	evs__claim c;
	int64_t now;
	int was_active = sub->active, rc;

	memset(&c, 0, sizeof(c));
	if ((rc = sub->ops->claim(sub->st, &c, err)) < 0)
		return rc;
	now = now_ms();
	switch (c.status) {
	case EVS__CLAIM_OK:
		break;
	case EVS__CLAIM_BUSY:
		sub->active = 0;
		sub->claim_at_ms = now + (c.lease_left_ms < sub->poll_max_ms
		                                  ? c.lease_left_ms + 1
		                                  : sub->poll_max_ms);
		if (was_active)
			return evs_error_set(err, EVS_ELEASE, NULL,
			                     "subscription \"%s\" lost its "
			                     "lease to another instance",
			                     sub->name);
		return 0;
	case EVS__CLAIM_MISMATCH:
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "subscription \"%s\" (member %u) is stored "
		                     "with another filter or group size than "
		                     "%s and %u: use another name", sub->name,
		                     sub->feed.member, sub->filter_json,
		                     sub->feed.size);
	default:
		return evs_error_set(err, EVS_EREWOUND, NULL,
		                     "subscription \"%s\" has a checkpoint "
		                     "(order key %llu, position %lld) that this "
		                     "store does not reach or no longer has: it "
		                     "was rewound (a restore, a failover that lost "
		                     "commits); reset the subscription on purpose "
		                     "rather than skip events", sub->name,
		                     (unsigned long long)c.position.commit,
		                     (long long)c.position.global);
	}
	sub->renew_at_ms = now + sub->lease_ms / 2;
	if (was_active && !sub->reload && c.epoch == sub->epoch)
		return 0; /* a renewal: nothing else changed */
	sub->active = 1;
	sub->epoch = c.epoch;
	sub->reload = 0;
	sub->pending = 0;
	if (c.has_checkpoint) {
		sub->pos = c.position;
		return 0;
	}
	/* First claim ever: the starting point is stored at once, so that
	 * a restart before the first event starts from the same place. */
	if ((rc = start_position(sub, &sub->pos, err)) < 0 ||
	    (rc = sub->ops->store(sub->st, sub->epoch, &sub->pos, NULL,
	                          err)) < 0) {
		sub->active = 0;
		return rc == EVS_ELEASE ? 0 : rc;
	}
	return 0;
}

/* ---- open, poll, free ------------------------------------------------------ */

static void sub_destroy(evs_sub *sub)
{
	size_t i;

	if (sub->st != NULL)
		sub->ops->close(sub->st);
	batch_clear(&sub->batch);
	free(sub->batch.ev);
	if (sub->stop_pipe[0] >= 0)
		close(sub->stop_pipe[0]);
	if (sub->stop_pipe[1] >= 0)
		close(sub->stop_pipe[1]);
	free(sub->name);
	free(sub->category);
	for (i = 0; i < EVS__SUB_MAX_TYPES; i++)
		free(sub->types[i]);
	free(sub->filter_json);
	free(sub);
}

int evs_sub_open(evs_sub **out, evs_store *store, const evs_sub_options *opts,
                 evs_error *err)
{
	evs_sub_options defaults = EVS_SUB_OPTIONS_INIT;
	evs_sub *sub;
	int rc, i;

	evs__error_reset(err);
	if (out == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "out must not be NULL");
	*out = NULL;
	if (store == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "store must not be NULL");
	if (opts == NULL)
		opts = &defaults;
	sub = calloc(1, sizeof(*sub));
	if (sub == NULL)
		return evs__error_nomem(err);
	sub->stop_pipe[0] = sub->stop_pipe[1] = -1;
	sub->store = store;
	if ((rc = check_options(sub, opts, err)) < 0)
		goto fail;
	sub->ops = evs__store_sub_ops(store);
	if (sub->ops == NULL) {
		rc = evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                   "this store's backend has no subscriptions");
		goto fail;
	}
	if ((rc = make_owner(sub, err)) < 0)
		goto fail;
	if (pipe(sub->stop_pipe) != 0) {
		rc = evs_error_set(err, EVS_ERROR, NULL,
		                   "could not make a pipe: %s",
		                   errno == EMFILE || errno == ENFILE
		                           ? "too many open files"
		                           : "system error");
		goto fail;
	}
	for (i = 0; i < 2; i++) {
		fcntl(sub->stop_pipe[i], F_SETFL,
		      fcntl(sub->stop_pipe[i], F_GETFL) | O_NONBLOCK);
		fcntl(sub->stop_pipe[i], F_SETFD, FD_CLOEXEC);
	}
	rc = sub->ops->open(&sub->st, evs__store_backend(store), sub->name,
	                    &sub->feed, sub->owner, sub->lease_ms, opts->wake,
	                    err);
	if (rc < 0)
		goto fail;
	if (sub->name != NULL) {
		if ((rc = claim(sub, err)) < 0)
			goto fail;
	} else {
		sub->active = 1;
		if ((rc = start_position(sub, &sub->pos, err)) < 0)
			goto fail;
	}
	sub->interval_ms = 0;
	sub->next_poll_ms = now_ms();
	*out = sub;
	return 0;
fail:
	sub_destroy(sub);
	return rc;
}

/* Stores the checkpoint (outside a transaction). */
static int store_checkpoint(evs_sub *sub, evs_error *err)
{
	int rc;

	if (sub->name == NULL || !sub->active || sub->pending == 0)
		return 0;
	rc = sub->ops->store(sub->st, sub->epoch, &sub->pos,
	                     sub->has_last ? &sub->last_id : NULL, err);
	if (rc == EVS_ELEASE) {
		sub->active = 0;
		sub->claim_at_ms = now_ms() + sub->poll_max_ms;
		return evs_error_set(err, EVS_ELEASE, NULL,
		                     "subscription \"%s\" lost its lease to "
		                     "another instance", sub->name);
	}
	if (rc == 0)
		sub->pending = 0;
	return rc;
}

/* Hands the batch to the handler, and moves the position when it took
 * effect. */
static int deliver(evs_sub *sub, evs_sub_handler handler, void *payload,
                   evs_error *err)
{
	evs_sub_batch *b = &sub->batch;
	const evs_event *last = b->ev[b->n - 1];
	evs_position at;
	int rc, hrc;

	evs_event_checkpoint(&at, last);
	if (sub->mode != EVS_SUB_TRANSACTIONAL) {
		hrc = handler(b, payload, err);
		if (hrc != 0)
			return hrc < 0 ? hrc
			               : evs_error_set(err, EVS_ERROR, NULL,
			                               "the handler returned %d",
			                               hrc);
		sub->pos = at;
		sub->last_id = last->id;
		sub->has_last = 1;
		sub->pending += b->n;
		if (sub->checkpoint_every == 0 ||
		    sub->pending >= sub->checkpoint_every)
			return store_checkpoint(sub, err);
		return 0;
	}
	if ((rc = sub->ops->begin(sub->st, &b->conn, err)) < 0)
		return rc;
	hrc = handler(b, payload, err);
	if (hrc != 0) {
		sub->ops->finish(sub->st, 0, NULL);
		return hrc < 0 ? hrc
		               : evs_error_set(err, EVS_ERROR, NULL,
		                               "the handler returned %d", hrc);
	}
	rc = sub->ops->store(sub->st, sub->epoch, &at, &last->id, err);
	if (rc < 0) {
		sub->ops->finish(sub->st, 0, NULL);
		if (rc == EVS_ELEASE) {
			sub->active = 0;
			sub->claim_at_ms = now_ms() + sub->poll_max_ms;
			return evs_error_set(err, EVS_ELEASE, NULL,
			                     "subscription \"%s\" lost its "
			                     "lease to another instance; the "
			                     "batch was rolled back", sub->name);
		}
		return rc;
	}
	if ((rc = sub->ops->finish(sub->st, 1, err)) < 0) {
		/* Committed or not: the stored checkpoint will say. */
		sub->reload = 1;
		return rc;
	}
	sub->pos = at;
	sub->last_id = last->id;
	sub->has_last = 1;
	return 0;
}

/* Lease business before a poll: take-over, renewal, reload. */
static int prepare(evs_sub *sub, evs_error *err)
{
	int64_t now = now_ms();

	if (sub->name == NULL)
		return 0;
	if (!sub->active) {
		if (now < sub->claim_at_ms)
			return 0;
		return claim(sub, err);
	}
	if (sub->reload || now >= sub->renew_at_ms)
		return claim(sub, err);
	return 0;
}

static void schedule(evs_sub *sub, size_t handled, int more)
{
	if (handled > 0)
		sub->interval_ms = more ? 0 : sub->poll_min_ms;
	else if (sub->interval_ms < sub->poll_min_ms)
		sub->interval_ms = sub->poll_min_ms;
	else if (sub->interval_ms * 2 < sub->poll_max_ms)
		sub->interval_ms *= 2;
	else
		sub->interval_ms = sub->poll_max_ms;
	sub->next_poll_ms = now_ms() + sub->interval_ms;
}

int evs_sub_poll(evs_sub *sub, size_t max_events, evs_sub_handler handler,
                 void *payload, evs_error *err)
{
	size_t handled = 0;
	int rc = 0, more = 0;

	evs__error_reset(err);
	if (sub == NULL || handler == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s must not be NULL",
		                     sub == NULL ? "sub" : "handler");
	if ((rc = prepare(sub, err)) < 0)
		goto done;
	/* Read off the wake-ups first, on standby too: a descriptor left
	 * readable would make an event loop spin. */
	sub->ops->drain(sub->st);
	if (!sub->active) {
		sub->next_poll_ms = sub->claim_at_ms;
		return 0;
	}
	for (;;) {
		batch_clear(&sub->batch);
		rc = sub->ops->read(sub->st, &sub->pos, sub->batch_max, collect,
		                    &sub->batch, &more, err);
		if (rc != 0) {
			if (rc > 0)
				rc = evs__error_nomem(err);
			break;
		}
		if (sub->batch.n == 0) {
			more = 0;
			break;
		}
		rc = deliver(sub, handler, payload, err);
		if (rc < 0)
			break;
		handled += sub->batch.n;
		if (!more || (max_events > 0 && handled >= max_events))
			break;
		/* evs_sub_stop() is seen between batches. */
		if (sub->stopped)
			break;
		/* A long catch-up keeps its lease. */
		if (sub->name != NULL && now_ms() >= sub->renew_at_ms &&
		    (rc = claim(sub, err)) < 0)
			break;
	}
	batch_clear(&sub->batch);
done:
	if (rc < 0) {
		/* Try again after a while, from what was stored. */
		sub->interval_ms = sub->poll_max_ms;
		sub->next_poll_ms = now_ms() + sub->interval_ms;
		return rc;
	}
	schedule(sub, handled, more);
	return handled > INT_MAX ? INT_MAX : (int)handled;
}

int evs_sub_fd(const evs_sub *sub)
{
	return sub != NULL && sub->st != NULL ? sub->ops->fd(sub->st) : -1;
}

int evs_sub_timeout_ms(const evs_sub *sub)
{
	int64_t at, left;

	if (sub == NULL)
		return 0;
	at = sub->next_poll_ms;
	if (sub->name != NULL) {
		if (!sub->active && sub->claim_at_ms < at)
			at = sub->claim_at_ms;
		if (sub->active && sub->renew_at_ms < at)
			at = sub->renew_at_ms;
	}
	left = at - now_ms();
	return left <= 0 ? 0 : left > INT_MAX ? INT_MAX : (int)left;
}

void evs_sub_stop(evs_sub *sub)
{
	ssize_t w;

	if (sub == NULL)
		return;
	sub->stopped = 1;
	/* write(2) is async-signal-safe; a full pipe already wakes. */
	w = write(sub->stop_pipe[1], "x", 1);
	(void)w;
}

static int retryable(int rc)
{
	return rc == EVS_EUNAVAILABLE || rc == EVS_ETIMEOUT || rc == EVS_ELEASE;
}

int evs_sub_run(evs_sub *sub, evs_sub_handler handler, void *payload,
                evs_error *err)
{
	char drain[64];
	int rc;

	evs__error_reset(err);
	if (sub == NULL || handler == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s must not be NULL",
		                     sub == NULL ? "sub" : "handler");
	while (read(sub->stop_pipe[0], drain, sizeof(drain)) > 0)
		;
	while (!sub->stopped) {
		struct pollfd p[2];
		int n = 1, fd;

		/* Whole batches up to a bound: stop is seen even while the
		 * feed stays busy. */
		rc = evs_sub_poll(sub, (size_t)sub->batch_max * 16, handler,
		                  payload, err);
		if (rc < 0 && !retryable(rc))
			return rc;
		if (rc < 0)
			evs__error_reset(err);
		p[0].fd = sub->stop_pipe[0];
		p[0].events = POLLIN;
		p[0].revents = 0;
		fd = evs_sub_fd(sub);
		if (fd >= 0) {
			p[1].fd = fd;
			p[1].events = POLLIN;
			p[1].revents = 0;
			n = 2;
		}
		if (!sub->stopped &&
		    poll(p, (nfds_t)n, evs_sub_timeout_ms(sub)) > 0 &&
		    (p[0].revents & POLLIN))
			while (read(sub->stop_pipe[0], drain, sizeof(drain)) > 0)
				;
		if (n == 2 && (p[1].revents & POLLIN))
			sub->next_poll_ms = now_ms();
	}
	return 0;
}

int evs_sub_active(const evs_sub *sub)
{
	return sub != NULL && sub->active;
}

void evs_sub_position(const evs_sub *sub, evs_position *out)
{
	static const evs_position zero = EVS_POSITION_START;

	if (out != NULL)
		*out = sub != NULL ? sub->pos : zero;
}

void evs_sub_free(evs_sub *sub)
{
	if (sub == NULL)
		return;
	if (sub->name != NULL && sub->active) {
		if (sub->mode != EVS_SUB_TRANSACTIONAL)
			store_checkpoint(sub, NULL);
		sub->ops->release(sub->st, sub->epoch);
	}
	sub_destroy(sub);
}

/* ---- the store's feed ------------------------------------------------------ */

int evs_store_feed_info(evs_feed_info *out, evs_store *store, evs_error *err)
{
	const evs__sub_ops *ops;

	evs__error_reset(err);
	if (out == NULL || store == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s must not be NULL",
		                     out == NULL ? "out" : "store");
	memset(out, 0, sizeof(*out));
	ops = evs__store_sub_ops(store);
	if (ops == NULL)
		return evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                     "this store's backend has no subscriptions");
	return ops->feed_info(evs__store_backend(store), out, err);
}

int evs_store_subscriptions(evs_store *store, const char *name,
                            evs_sub_info_cb cb, void *payload, evs_error *err)
{
	const evs__sub_ops *ops;

	evs__error_reset(err);
	if (store == NULL || cb == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s must not be NULL",
		                     store == NULL ? "store" : "cb");
	ops = evs__store_sub_ops(store);
	if (ops == NULL)
		return evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                     "this store's backend has no subscriptions");
	return ops->list(evs__store_backend(store), name, cb, payload, err);
}

/* ---- filters, for backends that filter in the process ---------------------- */

static uint64_t fnv1a(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ull;
	}
	return h;
}

int evs__feed_matches(const evs__feed *feed, const char *stream_id,
                      const char *type)
{
	size_t i;

	if (feed->category != NULL) {
		size_t n = strcspn(stream_id, "-");

		if (strlen(feed->category) != n ||
		    memcmp(feed->category, stream_id, n) != 0)
			return 0;
	}
	if (feed->n_types > 0) {
		for (i = 0; i < feed->n_types; i++)
			if (strcmp(feed->types[i], type) == 0)
				break;
		if (i == feed->n_types)
			return 0;
	}
	return feed->size <= 1 ||
	       (fnv1a(stream_id) & 0x7fffffffffffffffull) % feed->size ==
	               feed->member;
}
