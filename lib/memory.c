/* The in-memory backend: every stream in a hash table, one mutex around
 * all of it. Stored events are never modified, so reads copy them in
 * chunks under the lock and hand the copies out with the lock released. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "memory_int.h"

/* Events copied per lock hold by a read, and the bytes of JSON they may
 * hold (past it, a chunk ends after the event that crossed it). */
#define READ_CHUNK 256
#define READ_CHUNK_BYTES (1u << 20)

static size_t event_bytes(const evs_event *ev)
{
	return ev->data_len + ev->metadata_len;
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull; /* FNV-1a */

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ull;
	}
	return h;
}

static uint64_t hash_uuid(const evs_uuid *id)
{
	uint64_t a, b, z;

	memcpy(&a, id->bytes, 8);
	memcpy(&b, id->bytes + 8, 8);
	z = a ^ (b * 0x9E3779B97F4A7C15ull); /* splitmix64 finaliser */
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

static mem_stream *find_stream(mem_backend *mb, const char *id)
{
	size_t mask, i;

	if (mb->table_cap == 0)
		return NULL;
	mask = mb->table_cap - 1;
	for (i = hash_str(id) & mask; mb->table[i] != NULL; i = (i + 1) & mask)
		if (strcmp(mb->table[i]->id, id) == 0)
			return mb->table[i];
	return NULL;
}

static void table_put(mem_stream **table, size_t cap, mem_stream *s)
{
	size_t mask = cap - 1, i;

	for (i = hash_str(s->id) & mask; table[i] != NULL; i = (i + 1) & mask)
		;
	table[i] = s;
}

/* Makes room for one more stream; 0 or EVS_ENOMEM, table unchanged. */
static int table_reserve(mem_backend *mb)
{
	size_t cap, i;
	mem_stream **table;

	if ((mb->n_streams + 1) * 2 <= mb->table_cap)
		return 0;
	cap = mb->table_cap ? mb->table_cap * 2 : 64;
	table = calloc(cap, sizeof(*table));
	if (table == NULL)
		return EVS_ENOMEM;
	for (i = 0; i < mb->table_cap; i++)
		if (mb->table[i] != NULL)
			table_put(table, cap, mb->table[i]);
	free(mb->table);
	mb->table = table;
	mb->table_cap = cap;
	return 0;
}

/* The version holding event id `id`, or -1. */
static int64_t find_id(const mem_stream *s, const evs_uuid *id)
{
	size_t mask, i;

	if (s == NULL || s->ids_cap == 0)
		return -1;
	mask = s->ids_cap - 1;
	for (i = hash_uuid(id) & mask; s->ids[i] != 0; i = (i + 1) & mask)
		if (evs_uuid_equal(&s->events[s->ids[i] - 1]->id, id))
			return s->ids[i] - 1;
	return -1;
}

static void ids_put(int64_t *ids, size_t cap, const evs_uuid *id,
                    int64_t version)
{
	size_t mask = cap - 1, i;

	for (i = hash_uuid(id) & mask; ids[i] != 0; i = (i + 1) & mask)
		;
	ids[i] = version + 1;
}

/* Makes room for n more events in s; 0 or EVS_ENOMEM, s unchanged. */
static int stream_reserve(mem_stream *s, size_t n)
{
	size_t need = s->count + n, cap, i;

	if (need > s->cap) {
		evs_event **events;

		for (cap = s->cap ? s->cap : 16; cap < need; cap *= 2)
			;
		events = realloc(s->events, cap * sizeof(*events));
		if (events == NULL)
			return EVS_ENOMEM;
		s->events = events;
		s->cap = cap;
	}
	if (need * 2 > s->ids_cap) {
		int64_t *ids;

		for (cap = s->ids_cap ? s->ids_cap : 32; cap < need * 2;
		     cap *= 2)
			;
		ids = calloc(cap, sizeof(*ids));
		if (ids == NULL)
			return EVS_ENOMEM;
		for (i = 0; i < s->count; i++)
			ids_put(ids, cap, &s->events[i]->id, (int64_t)i);
		free(s->ids);
		s->ids = ids;
		s->ids_cap = cap;
	}
	return 0;
}

static void stream_free(mem_stream *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < s->count; i++)
		evs_event_free(s->events[i]);
	free(s->events);
	free(s->ids);
	free(s->id);
	free(s);
}

/* 1 when the batch is stored in s, in order, from version `start`. */
static int is_replay(const mem_stream *s, int64_t start,
                     evs_event *const *events, size_t n)
{
	size_t i;

	if (s == NULL || start < 0 || (size_t)start + n > s->count)
		return 0;
	for (i = 0; i < n; i++)
		if (!evs_uuid_equal(&s->events[start + i]->id, &events[i]->id))
			return 0;
	return 1;
}

/* Checks the version and event ids. Returns 1 when the batch is an
 * idempotent replay (*version_out set), 0 when it may be stored, or a
 * negative code. Called with the lock held. */
static int check_append(int64_t *version_out, const mem_stream *s,
                        const char *id, int64_t expected,
                        evs_event *const *events, size_t n, evs_error *err)
{
	int64_t current = s ? (int64_t)s->count - 1 : EVS_NO_VERSION;
	int64_t at;
	size_t i;

	if (expected >= EVS_NO_VERSION && current != expected) {
		if (!is_replay(s, expected + 1, events, n))
			return evs_error_set_conflict(err, id, expected,
			                              current);
		*version_out = expected + (int64_t)n;
		return 1;
	}
	if (expected == EVS_STREAM_EXISTS && current == EVS_NO_VERSION)
		return evs_error_set_conflict(err, id, expected, current);
	if (expected < EVS_NO_VERSION) {
		at = find_id(s, &events[0]->id);
		if (at >= 0 && is_replay(s, at, events, n)) {
			*version_out = at + (int64_t)n - 1;
			return 1;
		}
	}
	for (i = 0; i < n; i++) {
		at = find_id(s, &events[i]->id);
		if (at >= 0) {
			char text[EVS_UUID_STRLEN + 1];

			evs_uuid_format(text, &events[i]->id);
			evs_error_set(err, EVS_EDUPLICATE, NULL,
			              "event id %s is already stored in aggregate "
			              "\"%s\" at version %lld",
			              text, id, (long long)at);
			evs__error_set_aggregate(err, id);
			return EVS_EDUPLICATE;
		}
	}
	return 0;
}

static int mem_append_ext(evs_append_result *out, evs_backend *be,
                          const char *id, int64_t expected,
                          evs_event *const *events, size_t n,
                          unsigned int flags, evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	evs_event **built = NULL;
	mem_stream *s, *fresh = NULL;
	int64_t base, now;
	size_t i, made = 0;
	int rc;

	out->replayed = 0;
	pthread_mutex_lock(&mb->lock);
	s = find_stream(mb, id);
	rc = check_append(&out->version, s, id, expected, events, n, err);
	if (rc != 0) {
		out->replayed = rc > 0;
		rc = rc > 0 ? 0 : rc;
		goto done;
	}
	/* Allocate everything first, so that a failure stores nothing. */
	if (s == NULL) {
		fresh = calloc(1, sizeof(*fresh));
		if (fresh == NULL || (fresh->id = strdup(id)) == NULL ||
		    table_reserve(mb) < 0)
			goto nomem;
		s = fresh;
	}
	if (stream_reserve(s, n) < 0)
		goto nomem;
	if (mb->log_count + n > mb->log_cap) {
		size_t cap = mb->log_cap ? mb->log_cap : 1024;
		evs_event **log;

		while (cap < mb->log_count + n)
			cap *= 2;
		log = realloc(mb->log, cap * sizeof(*log));
		if (log == NULL)
			goto nomem;
		mb->log = log;
		mb->log_cap = cap;
	}
	built = malloc(n * sizeof(*built));
	if (built == NULL)
		goto nomem;
	base = (int64_t)s->count;
	now = evs__now_us();
	for (made = 0; made < n; made++) {
		const evs_event *ev = events[made];

		if (evs_event_new_stored(&built[made], &ev->id, ev->type,
		                         ev->data, ev->data_len, ev->metadata,
		                         ev->metadata_len, id,
		                         base + (int64_t)made,
		                         mb->last_position + 1 + (int64_t)made,
		                         (flags & EVS_APPEND_KEEP_TIME)
		                                 ? ev->recorded_at
		                                 : now,
		                         NULL) < 0)
			goto nomem;
		evs_event_set_checkpoint(built[made], mb->last_commit + 1);
	}
	/* Commit: nothing below can fail. */
	if (fresh != NULL) {
		table_put(mb->table, mb->table_cap, fresh);
		mb->n_streams++;
		fresh = NULL;
	}
	for (i = 0; i < n; i++) {
		s->events[s->count++] = built[i];
		ids_put(s->ids, s->ids_cap, &built[i]->id, built[i]->version);
		mb->log[mb->log_count++] = built[i];
	}
	mb->last_position += (int64_t)n;
	mb->last_commit++;
	out->version = (int64_t)s->count - 1;
	evs__mem_wake(mb);
	rc = 0;
	goto done;
nomem:
	for (i = 0; i < made; i++)
		evs_event_free(built[i]);
	rc = evs__error_nomem(err);
done:
	pthread_mutex_unlock(&mb->lock);
	free(built);
	stream_free(fresh);
	return rc;
}

static int mem_append(int64_t *version_out, evs_backend *be,
                      const char *id, int64_t expected,
                      evs_event *const *events, size_t n, evs_error *err)
{
	evs_append_result res;
	int rc = mem_append_ext(&res, be, id, expected, events, n, 0, err);

	if (rc == 0)
		*version_out = res.version;
	return rc;
}

static int mem_read(evs_backend *be, const char *id, int64_t after,
                    evs_backend_event_cb cb, void *payload, evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	evs_event *chunk[READ_CHUNK];
	/* after is EVS_NO_VERSION or more: no overflow in unsigned. */
	size_t next = (size_t)((uint64_t)after + 1), end = 0, n, i, bytes;
	int rc = 0;
	int first = 1, failed = 0;

	for (;;) {
		mem_stream *s;

		n = 0;
		bytes = 0;
		pthread_mutex_lock(&mb->lock);
		s = find_stream(mb, id);
		/* Read up to where the stream ended when the read began. */
		if (first && s != NULL)
			end = s->count;
		first = 0;
		while (s != NULL && next + n < end && n < READ_CHUNK &&
		       bytes < READ_CHUNK_BYTES) {
			if (evs_event_dup(&chunk[n], s->events[next + n],
			                  NULL) < 0) {
				failed = 1;
				break;
			}
			bytes += event_bytes(chunk[n]);
			n++;
		}
		pthread_mutex_unlock(&mb->lock);
		if (failed) {
			rc = evs__error_nomem(err);
			goto drop;
		}
		if (n == 0)
			return 0;
		next += n;
		for (i = 0; i < n; i++) {
			rc = cb(chunk[i], payload);
			chunk[i] = NULL;
			if (rc != 0) {
				i++;
				goto drop_from;
			}
		}
	}
drop:
	i = 0;
drop_from:
	for (; i < n; i++)
		evs_event_free(chunk[i]);
	return rc;
}

/* Index of the first logged event after position `after`. */
size_t evs__mem_log_after(const mem_backend *mb, int64_t after)
{
	size_t lo = 0, hi = mb->log_count;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (mb->log[mid]->position <= after)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

static int mem_read_all(evs_backend *be, const evs_position *after,
                        size_t max_events, evs_backend_event_cb cb,
                        void *payload, evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	evs_event *chunk[READ_CHUNK];
	int64_t last = after->global;
	size_t left = max_events ? max_events : SIZE_MAX, n, i, next, end;
	size_t bytes;
	int rc = 0, first = 1, failed = 0;

	/* Positions follow commit order here, so the global position alone
	 * places a checkpoint. */
	end = 0;
	while (left > 0) {
		n = 0;
		bytes = 0;
		pthread_mutex_lock(&mb->lock);
		if (first)
			end = mb->log_count;
		first = 0;
		for (next = evs__mem_log_after(mb, last);
		     next < end && n < READ_CHUNK && n < left &&
		     bytes < READ_CHUNK_BYTES;
		     next++) {
			if (evs_event_dup(&chunk[n], mb->log[next], NULL) < 0) {
				failed = 1;
				break;
			}
			bytes += event_bytes(chunk[n]);
			n++;
		}
		pthread_mutex_unlock(&mb->lock);
		if (failed) {
			for (i = 0; i < n; i++)
				evs_event_free(chunk[i]);
			return evs__error_nomem(err);
		}
		if (n == 0)
			return 0;
		left -= n;
		last = chunk[n - 1]->position;
		for (i = 0; i < n; i++) {
			rc = cb(chunk[i], payload);
			if (rc != 0) {
				for (i++; i < n; i++)
					evs_event_free(chunk[i]);
				return rc;
			}
		}
	}
	return 0;
}

static int mem_head(int64_t *out, evs_backend *be, const char *id,
                    evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	mem_stream *s;

	(void)err;
	pthread_mutex_lock(&mb->lock);
	s = find_stream(mb, id);
	*out = s ? (int64_t)s->count - 1 : EVS_NO_VERSION;
	pthread_mutex_unlock(&mb->lock);
	return *out == EVS_NO_VERSION ? EVS_ENOTFOUND : 0;
}

static void mem_free(evs_backend *be)
{
	mem_backend *mb = (mem_backend *)be;
	size_t i;

	if (mb == NULL)
		return;
	for (i = 0; i < mb->table_cap; i++)
		stream_free(mb->table[i]);
	free(mb->table);
	free(mb->log);
	evs__mem_subs_free(mb);
	pthread_mutex_destroy(&mb->lock);
	free(mb);
}

int evs_backend_memory_new(evs_backend **out, evs_error *err)
{
	mem_backend *mb;

	evs__error_reset(err);
	if (out == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "out must not be NULL");
	*out = NULL;
	mb = calloc(1, sizeof(*mb));
	if (mb == NULL)
		return evs__error_nomem(err);
	if (pthread_mutex_init(&mb->lock, NULL) != 0) {
		free(mb);
		return evs_error_set(err, EVS_ERROR, NULL,
		                     "could not create a mutex");
	}
	mb->base.version = EVS_BACKEND_VERSION;
	mb->base.append_ext = mem_append_ext;
	mb->base.append = mem_append;
	mb->base.read = mem_read;
	mb->base.head = mem_head;
	mb->base.free = mem_free;
	mb->base.read_all = mem_read_all;
	*out = &mb->base;
	return 0;
}

int evs_store_open_memory(evs_store **out, evs_error *err)
{
	evs_backend *be;
	int rc;

	if (out != NULL)
		*out = NULL;
	if ((rc = evs_backend_memory_new(&be, err)) < 0)
		return rc;
	if ((rc = evs_store_new(out, be, err)) < 0)
		return rc;
	evs__store_set_sub_ops(*out, &evs__mem_sub_ops);
	return 0;
}
