/* Subscriptions on the in-memory backend: the stored ones (checkpoint,
 * lease, epoch) in a table under the backend's lock, the feed read from
 * its log (appends hold the lock, so the log is in commit order and no
 * fence is needed), and a pipe per open subscription that an append
 * writes to, so that an event loop wakes at once. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "memory_int.h"

#define READ_BYTES (1u << 20)

typedef struct mem_sub_row {
	char *name;
	unsigned int member, size;
	char *filter;
	char *category;       /* the filter again, for the lag count */
	char *types[EVS__SUB_MAX_TYPES];
	size_t n_types;
	int has_checkpoint;
	evs_position pos;
	int has_last_id;
	evs_uuid last_id;
	char *owner;          /* NULL: nobody holds the lease */
	int64_t lease_until;  /* monotonic ms */
	int64_t epoch;
	int64_t updated_at;   /* us since 1970 */
} mem_sub_row;

struct evs__sub_state {
	mem_backend *mb;
	const char *name;     /* the front end's copy */
	const evs__feed *feed;
	const char *owner;
	unsigned int lease_ms;
	int pipe[2];
};

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The row of (name, member); NULL when none. Lock held. */
static mem_sub_row *find_row(mem_backend *mb, const char *name,
                             unsigned int member)
{
	size_t i;

	for (i = 0; i < mb->n_subs; i++)
		if (mb->subs[i].member == member &&
		    strcmp(mb->subs[i].name, name) == 0)
			return &mb->subs[i];
	return NULL;
}

static int mem_open(evs__sub_state **out, evs_backend *be, const char *name,
                    const evs__feed *feed, const char *owner,
                    unsigned int lease_ms, unsigned int wake, evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	evs__sub_state *st;
	int i;

	(void)wake; /* appends wake every open subscription anyway */
	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (st == NULL)
		return evs__error_nomem(err);
	st->mb = mb;
	st->name = name;
	st->feed = feed;
	st->owner = owner;
	st->lease_ms = lease_ms;
	if (pipe(st->pipe) != 0) {
		free(st);
		return evs_error_set(err, EVS_ERROR, NULL,
		                     "could not make a pipe");
	}
	for (i = 0; i < 2; i++) {
		fcntl(st->pipe[i], F_SETFL,
		      fcntl(st->pipe[i], F_GETFL) | O_NONBLOCK);
		fcntl(st->pipe[i], F_SETFD, FD_CLOEXEC);
	}
	pthread_mutex_lock(&mb->lock);
	if (mb->n_open == mb->open_cap) {
		size_t cap = mb->open_cap ? 2 * mb->open_cap : 8;
		evs__sub_state **p = realloc(mb->open_subs, cap * sizeof(*p));

		if (p == NULL) {
			pthread_mutex_unlock(&mb->lock);
			close(st->pipe[0]);
			close(st->pipe[1]);
			free(st);
			return evs__error_nomem(err);
		}
		mb->open_subs = p;
		mb->open_cap = cap;
	}
	mb->open_subs[mb->n_open++] = st;
	pthread_mutex_unlock(&mb->lock);
	*out = st;
	return 0;
}

/* Whether the event at pos (and with last_id) is in the log. Lock held. */
static int logged(const mem_backend *mb, const evs_position *pos,
                  const evs_uuid *last_id)
{
	size_t i = evs__mem_log_after(mb, pos->global - 1);

	return i < mb->log_count && mb->log[i]->position == pos->global &&
	       evs_uuid_equal(&mb->log[i]->id, last_id);
}

static void row_free(mem_sub_row *row)
{
	size_t i;

	free(row->name);
	free(row->filter);
	free(row->category);
	for (i = 0; i < EVS__SUB_MAX_TYPES; i++)
		free(row->types[i]);
	free(row->owner);
}

static int mem_claim(evs__sub_state *st, evs__claim *out, evs_error *err)
{
	mem_backend *mb = st->mb;
	mem_sub_row *row;
	int64_t now = mono_ms();
	size_t i;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&mb->lock);
	/* Every member of a name reads the same filter in the same group. */
	for (i = 0; i < mb->n_subs; i++) {
		if (strcmp(mb->subs[i].name, st->name) == 0 &&
		    (mb->subs[i].size != st->feed->size ||
		     strcmp(mb->subs[i].filter, st->feed->filter_json) != 0)) {
			out->status = EVS__CLAIM_MISMATCH;
			goto done;
		}
	}
	row = find_row(mb, st->name, st->feed->member);
	if (row == NULL) {
		if (mb->n_subs == mb->subs_cap) {
			size_t cap = mb->subs_cap ? 2 * mb->subs_cap : 8;
			mem_sub_row *p = realloc(mb->subs, cap * sizeof(*p));

			if (p == NULL) {
				rc = evs__error_nomem(err);
				goto done;
			}
			mb->subs = p;
			mb->subs_cap = cap;
		}
		row = &mb->subs[mb->n_subs];
		memset(row, 0, sizeof(*row));
		row->name = strdup(st->name);
		row->filter = strdup(st->feed->filter_json);
		row->category = st->feed->category
		                        ? strdup(st->feed->category) : NULL;
		for (i = 0; i < st->feed->n_types; i++)
			if ((row->types[i] = strdup(st->feed->types[i])) !=
			    NULL)
				row->n_types++;
		if (row->name == NULL || row->filter == NULL ||
		    (st->feed->category && row->category == NULL) ||
		    row->n_types != st->feed->n_types) {
			row_free(row);
			rc = evs__error_nomem(err);
			goto done;
		}
		row->member = st->feed->member;
		row->size = st->feed->size;
		row->updated_at = evs__now_us();
		mb->n_subs++;
	}
	if (row->size != st->feed->size ||
	    strcmp(row->filter, st->feed->filter_json) != 0) {
		out->status = EVS__CLAIM_MISMATCH;
		goto done;
	}
	if (row->owner != NULL && strcmp(row->owner, st->owner) != 0 &&
	    row->lease_until > now) {
		out->status = EVS__CLAIM_BUSY;
		out->lease_left_ms = row->lease_until - now;
		goto done;
	}
	if (row->has_checkpoint &&
	    (row->pos.global > mb->last_position ||
	     (row->has_last_id && !logged(mb, &row->pos, &row->last_id)))) {
		out->status = EVS__CLAIM_REWOUND;
		out->position = row->pos;
		goto done;
	}
	if (row->owner == NULL || strcmp(row->owner, st->owner) != 0) {
		char *owner = strdup(st->owner);

		if (owner == NULL) {
			rc = evs__error_nomem(err);
			goto done;
		}
		free(row->owner);
		row->owner = owner;
		row->epoch++;
	}
	row->lease_until = now + st->lease_ms;
	out->status = EVS__CLAIM_OK;
	out->epoch = row->epoch;
	out->has_checkpoint = row->has_checkpoint;
	out->position = row->pos;
done:
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_end(evs__sub_state *st, evs_position *out, evs_error *err)
{
	(void)err;
	pthread_mutex_lock(&st->mb->lock);
	out->commit = st->mb->last_commit;
	out->global = st->mb->last_position;
	pthread_mutex_unlock(&st->mb->lock);
	return 0;
}

static int mem_read(evs__sub_state *st, const evs_position *after,
                    size_t max, evs_backend_event_cb cb, void *payload,
                    int *more, evs_error *err)
{
	mem_backend *mb = st->mb;
	evs_event **chunk = malloc(max * sizeof(*chunk));
	size_t n = 0, bytes = 0, i, next;
	int rc = 0;

	*more = 0;
	if (chunk == NULL)
		return evs__error_nomem(err);
	pthread_mutex_lock(&mb->lock);
	for (next = evs__mem_log_after(mb, after->global);
	     next < mb->log_count; next++) {
		const evs_event *ev = mb->log[next];

		if (n == max || bytes >= READ_BYTES) {
			*more = 1;
			break;
		}
		if (!evs__feed_matches(st->feed, ev->aggregate_id, ev->type))
			continue;
		if (evs_event_dup(&chunk[n], ev, NULL) < 0) {
			rc = evs__error_nomem(err);
			break;
		}
		bytes += ev->data_len + ev->metadata_len;
		n++;
	}
	pthread_mutex_unlock(&mb->lock);
	for (i = 0; i < n; i++) {
		if (rc == 0)
			rc = cb(chunk[i], payload);
		else
			evs_event_free(chunk[i]);
	}
	free(chunk);
	return rc;
}

/* The memory store has no transactions: the checkpoint is stored when
 * the handler has returned 0, and that is what "transactional" means
 * here. */
static int mem_begin(evs__sub_state *st, struct pg_conn **conn,
                     evs_error *err)
{
	(void)st;
	(void)err;
	*conn = NULL;
	return 0;
}

static int mem_finish(evs__sub_state *st, int commit, evs_error *err)
{
	(void)st;
	(void)commit;
	(void)err;
	return 0;
}

static int pos_less(const evs_position *a, const evs_position *b)
{
	return a->commit < b->commit ||
	       (a->commit == b->commit && a->global < b->global);
}

static int mem_store(evs__sub_state *st, int64_t epoch,
                     const evs_position *pos, const evs_uuid *last_id,
                     evs_error *err)
{
	mem_backend *mb = st->mb;
	mem_sub_row *row;
	int rc = 0;

	pthread_mutex_lock(&mb->lock);
	row = find_row(mb, st->name, st->feed->member);
	if (row == NULL || row->epoch != epoch ||
	    (row->has_checkpoint && pos_less(pos, &row->pos))) {
		rc = evs_error_set(err, EVS_ELEASE, NULL,
		                   "subscription \"%s\" lost its lease",
		                   st->name);
		goto done;
	}
	row->has_checkpoint = 1;
	row->pos = *pos;
	row->has_last_id = last_id != NULL;
	if (last_id != NULL)
		row->last_id = *last_id;
	row->updated_at = evs__now_us();
done:
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static void mem_release(evs__sub_state *st, int64_t epoch)
{
	mem_backend *mb = st->mb;
	mem_sub_row *row;

	pthread_mutex_lock(&mb->lock);
	row = find_row(mb, st->name, st->feed->member);
	if (row != NULL && row->epoch == epoch) {
		free(row->owner);
		row->owner = NULL;
		row->lease_until = 0;
	}
	pthread_mutex_unlock(&mb->lock);
}

static int mem_fd(const evs__sub_state *st)
{
	return st->pipe[0];
}

static int mem_drain(evs__sub_state *st)
{
	char buf[64];
	int woke = 0;

	while (read(st->pipe[0], buf, sizeof(buf)) > 0)
		woke = 1;
	return woke;
}

static void mem_close(evs__sub_state *st)
{
	mem_backend *mb = st->mb;
	size_t i;

	pthread_mutex_lock(&mb->lock);
	for (i = 0; i < mb->n_open; i++) {
		if (mb->open_subs[i] == st) {
			mb->open_subs[i] = mb->open_subs[--mb->n_open];
			break;
		}
	}
	pthread_mutex_unlock(&mb->lock);
	close(st->pipe[0]);
	close(st->pipe[1]);
	free(st);
}

void evs__mem_wake(mem_backend *mb)
{
	size_t i;

	for (i = 0; i < mb->n_open; i++) {
		/* Non-blocking: a full pipe already says "wake up". */
		ssize_t w = write(mb->open_subs[i]->pipe[1], "x", 1);

		(void)w;
	}
}

void evs__mem_subs_forget(mem_backend *mb, const char *stream_id,
                          int64_t below)
{
	size_t i, at;

	for (i = 0; i < mb->n_subs; i++) {
		mem_sub_row *row = &mb->subs[i];

		if (!row->has_last_id)
			continue;
		at = evs__mem_log_after(mb, row->pos.global - 1);
		if (at < mb->log_count &&
		    mb->log[at]->position == row->pos.global &&
		    mb->log[at]->version < below &&
		    strcmp(mb->log[at]->aggregate_id, stream_id) == 0)
			row->has_last_id = 0;
	}
}

void evs__mem_subs_free(mem_backend *mb)
{
	size_t i;

	for (i = 0; i < mb->n_subs; i++)
		row_free(&mb->subs[i]);
	free(mb->subs);
	free(mb->open_subs);
}

static int mem_feed_info(evs_backend *be, evs_feed_info *out,
                         evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;

	(void)err;
	pthread_mutex_lock(&mb->lock);
	out->head.commit = mb->last_commit;
	out->head.global = mb->last_position;
	pthread_mutex_unlock(&mb->lock);
	out->fence = 0;
	return 0;
}

/* Whether ev is in the row's feed (for the lag count). */
static int row_matches(const mem_sub_row *row, const evs_event *ev)
{
	evs__feed f;
	size_t i;

	memset(&f, 0, sizeof(f));
	f.category = row->category;
	for (i = 0; i < row->n_types; i++)
		f.types[i] = row->types[i];
	f.n_types = row->n_types;
	f.size = row->size;
	f.member = row->member;
	return evs__feed_matches(&f, ev->aggregate_id, ev->type);
}

static int mem_list(evs_backend *be, const char *name, evs_sub_info_cb cb,
                    void *payload, evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	evs_sub_info *infos = NULL;
	char **names = NULL, **owners = NULL, **filters = NULL;
	size_t n, i, j;
	int64_t now = mono_ms(), now_us = evs__now_us();
	int rc = 0;

	pthread_mutex_lock(&mb->lock);
	n = mb->n_subs;
	if (n > 0) {
		infos = calloc(n, sizeof(*infos));
		names = calloc(n, sizeof(*names));
		owners = calloc(n, sizeof(*owners));
		filters = calloc(n, sizeof(*filters));
	}
	for (i = 0; i < n && infos && names && owners && filters; i++) {
		const mem_sub_row *row = &mb->subs[i];
		evs_sub_info *in = &infos[i];

		names[i] = strdup(row->name);
		filters[i] = strdup(row->filter);
		owners[i] = row->owner && row->lease_until > now
		                    ? strdup(row->owner)
		                    : NULL;
		in->member = row->member;
		in->group_size = row->size;
		in->position = row->pos;
		in->lease_epoch = row->epoch;
		in->updated_at = row->updated_at;
		in->lease_until = owners[i] ? now_us + (row->lease_until - now) * 1000
		                            : 0;
		for (j = evs__mem_log_after(mb, row->pos.global);
		     j < mb->log_count; j++)
			in->lag += row_matches(row, mb->log[j]);
	}
	pthread_mutex_unlock(&mb->lock);
	if (n > 0 && (!infos || !names || !owners || !filters))
		rc = evs__error_nomem(err);
	for (i = 0; i < n && rc == 0; i++) {
		if (names[i] == NULL || filters[i] == NULL) {
			rc = evs__error_nomem(err);
			break;
		}
		infos[i].name = names[i];
		infos[i].filter = filters[i];
		infos[i].owner = owners[i];
	}
	/* By name, then member. */
	for (i = 1; i < n && rc == 0; i++)
		for (j = i; j > 0; j--) {
			int c = strcmp(names[j - 1], names[j]);
			evs_sub_info ti;
			char *tn, *to, *tf;

			if (c < 0 || (c == 0 && infos[j - 1].member <
			                                infos[j].member))
				break;
			ti = infos[j], infos[j] = infos[j - 1], infos[j - 1] = ti;
			tn = names[j], names[j] = names[j - 1], names[j - 1] = tn;
			to = owners[j], owners[j] = owners[j - 1],
			owners[j - 1] = to;
			tf = filters[j], filters[j] = filters[j - 1],
			filters[j - 1] = tf;
		}
	for (i = 0; i < n && rc == 0; i++)
		if (name == NULL || strcmp(names[i], name) == 0)
			rc = cb(&infos[i], payload);
	for (i = 0; i < n; i++) {
		if (names)
			free(names[i]);
		if (owners)
			free(owners[i]);
		if (filters)
			free(filters[i]);
	}
	free(names);
	free(owners);
	free(filters);
	free(infos);
	return rc;
}

const evs__sub_ops evs__mem_sub_ops = {
	mem_open,   mem_claim,  mem_end,     mem_read, mem_begin,
	mem_finish, mem_store,  mem_release, mem_fd,   mem_drain,
	mem_close,  mem_feed_info, mem_list,
};
