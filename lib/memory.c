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
	for (i = evs__hash_str(id) & mask; mb->table[i] != NULL; i = (i + 1) & mask)
		if (strcmp(mb->table[i]->id, id) == 0)
			return mb->table[i];
	return NULL;
}

static void table_put(mem_stream **table, size_t cap, mem_stream *s)
{
	size_t mask = cap - 1, i;

	for (i = evs__hash_str(s->id) & mask; table[i] != NULL; i = (i + 1) & mask)
		;
	table[i] = s;
}

/* Makes room for `more` streams; 0 or EVS_ENOMEM, table unchanged. */
static int table_reserve(mem_backend *mb, size_t more)
{
	size_t cap, i;
	mem_stream **table;

	if ((mb->n_streams + more) * 2 <= mb->table_cap)
		return 0;
	for (cap = mb->table_cap ? mb->table_cap * 2 : 64;
	     cap < (mb->n_streams + more) * 2; cap *= 2)
		;
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

static void snaps_free(mem_stream *s)
{
	size_t i;

	for (i = 0; i < s->n_snaps; i++) {
		free(s->snaps[i].kind);
		free(s->snaps[i].json);
	}
	free(s->snaps);
	s->snaps = NULL;
	s->n_snaps = 0;
}

static void stream_free(mem_stream *s)
{
	size_t i;

	if (s == NULL)
		return;
	snaps_free(s);
	for (i = 0; i < s->count; i++)
		evs_event_free(s->events[i]);
	free(s->events);
	free(s->ids);
	free(s->id);
	free(s);
}

/* ---- appends ---------------------------------------------------------------- */

/* A stream one call touches: what it holds, and the events the call's
 * earlier requests add after that (borrowed, in version order). */
typedef struct mem_touch {
	const char *id;    /* borrowed from a request */
	mem_stream *s;     /* NULL: no stored events (yet) */
	mem_stream *fresh; /* made by the apply phase for a new stream */
	const evs_event **pend;
	size_t n_pend, pend_cap, next;
} mem_touch;

static size_t touch_count(const mem_touch *t)
{
	return (t->s ? t->s->count : 0) + t->n_pend;
}

static const evs_uuid *touch_id_at(const mem_touch *t, size_t v)
{
	size_t base = t->s ? t->s->count : 0;

	return v < base ? &t->s->events[v]->id : &t->pend[v - base]->id;
}

/* The version holding `id` as the call sees the stream, or -1. The
 * pending part is searched linearly: it holds only the events of this
 * call's earlier requests on the same stream. */
static int64_t touch_find(const mem_touch *t, const evs_uuid *id)
{
	int64_t at = find_id(t->s, id);
	size_t base = t->s ? t->s->count : 0, j;

	if (at >= 0)
		return at;
	for (j = 0; j < t->n_pend; j++)
		if (evs_uuid_equal(&t->pend[j]->id, id))
			return (int64_t)(base + j);
	return -1;
}

/* 1 when the batch is stored in t, in order, from version `start`. */
static int is_replay(const mem_touch *t, int64_t start,
                     evs_event *const *events, size_t n)
{
	size_t i;

	if (start < 0 || (size_t)start + n > touch_count(t) ||
	    (t->s != NULL && (size_t)start < t->s->first))
		return 0;
	for (i = 0; i < n; i++)
		if (!evs_uuid_equal(touch_id_at(t, (size_t)start + i),
		                    &events[i]->id))
			return 0;
	return 1;
}

/* Checks a request's version and event ids against the stream as the
 * call sees it. Returns 1 for an idempotent replay (r->version set), 0
 * when it may be stored, or a negative code (r->version set, err filled).
 * Called with the lock held. */
static int check_req(const mem_touch *t, evs_append_req *r, int system,
                     evs_error *err)
{
	int64_t current = (int64_t)touch_count(t) - 1;
	int64_t expected = r->expected_version, at;
	evs_event *const *events = r->events;
	size_t n = r->n_events, i;
	/* A deleted stream takes nothing but a replay of what it holds
	 * (a hard-deleted one holds nothing to replay). */
	int deleted = t->s != NULL && t->s->state != MEM_LIVE && !system;

	if (deleted && t->s->state == MEM_HARD) {
		r->version = current;
		return evs_error_set_deleted(err, r->aggregate_id, expected,
		                             current);
	}
	if (expected >= EVS_NO_VERSION && current != expected) {
		if (!is_replay(t, expected + 1, events, n)) {
			r->version = current;
			if (deleted)
				return evs_error_set_deleted(
					err, r->aggregate_id, expected, current);
			return evs_error_set_conflict(err, r->aggregate_id,
			                              expected, current);
		}
		r->version = expected + (int64_t)n;
		return 1;
	}
	if (expected == EVS_STREAM_EXISTS && current == EVS_NO_VERSION) {
		r->version = current;
		return evs_error_set_conflict(err, r->aggregate_id, expected,
		                              current);
	}
	if (expected < EVS_NO_VERSION) {
		at = touch_find(t, &events[0]->id);
		if (at >= 0 && is_replay(t, at, events, n)) {
			r->version = at + (int64_t)n - 1;
			return 1;
		}
	}
	if (deleted) {
		r->version = current;
		return evs_error_set_deleted(err, r->aggregate_id, expected,
		                             current);
	}
	for (i = 0; i < n; i++) {
		at = touch_find(t, &events[i]->id);
		if (at >= 0) {
			char text[EVS_UUID_STRLEN + 1];

			evs_uuid_format(text, &events[i]->id);
			evs_error_set(err, EVS_EDUPLICATE, NULL,
			              "event id %s is already stored in aggregate "
			              "\"%s\" at version %lld",
			              text, r->aggregate_id, (long long)at);
			evs__error_set_aggregate(err, r->aggregate_id);
			r->version = at;
			return EVS_EDUPLICATE;
		}
	}
	return 0;
}

static int touch_push(mem_touch *t, evs_event *const *events, size_t n)
{
	size_t i;

	if (t->n_pend + n > t->pend_cap) {
		size_t cap = t->pend_cap ? t->pend_cap : 16;
		const evs_event **p;

		while (cap < t->n_pend + n)
			cap *= 2;
		p = realloc(t->pend, cap * sizeof(*p));
		if (p == NULL)
			return EVS_ENOMEM;
		t->pend = p;
		t->pend_cap = cap;
	}
	for (i = 0; i < n; i++)
		t->pend[t->n_pend++] = events[i];
	return 0;
}

/* Makes room for `more` events in the log; 0 or EVS_ENOMEM. */
static int log_reserve(mem_backend *mb, size_t more)
{
	size_t cap = mb->log_cap ? mb->log_cap : 1024;
	evs_event **log;

	if (mb->log_count + more <= mb->log_cap)
		return 0;
	while (cap < mb->log_count + more)
		cap *= 2;
	log = realloc(mb->log, cap * sizeof(*log));
	if (log == NULL)
		return EVS_ENOMEM;
	mb->log = log;
	mb->log_cap = cap;
	return 0;
}

/* For append_locked(): evstore's own append (a lifecycle marker), which
 * writes to a deleted stream. Never set by the front end. */
#define MEM_APPEND_SYSTEM 0x40000000u

/* Every append: one or more requests, with the lock held. Phase 1 checks
 * each request in order against the streams as the earlier ones leave
 * them; phase 2 allocates everything the passing requests need, then
 * stores them, with nothing left that can fail. */
static int append_locked(mem_backend *mb, evs_append_req *reqs, size_t n,
                         unsigned int flags, evs_error *err)
{
	mem_touch *touches = calloc(n, sizeof(*touches));
	size_t *touch_of = malloc(n * sizeof(*touch_of));
	size_t hcap = 16, *hslot = NULL, n_touch = 0, i, j, k;
	size_t total = 0, made = 0, n_fresh = 0;
	evs_event **built = NULL;
	int64_t now = evs__now_us();
	int first = 0, rc = 0;

	while (hcap < 2 * n)
		hcap *= 2;
	hslot = malloc(hcap * sizeof(*hslot));
	if (touches == NULL || touch_of == NULL || hslot == NULL) {
		free(touches);
		free(touch_of);
		free(hslot);
		goto nomem_unlocked;
	}
	for (i = 0; i < hcap; i++)
		hslot[i] = SIZE_MAX;
	for (i = 0; i < n; i++) {
		const char *id = reqs[i].aggregate_id;

		for (j = evs__hash_str(id) & (hcap - 1); hslot[j] != SIZE_MAX;
		     j = (j + 1) & (hcap - 1))
			if (strcmp(touches[hslot[j]].id, id) == 0)
				break;
		if (hslot[j] == SIZE_MAX) {
			hslot[j] = n_touch;
			touches[n_touch].id = id;
			touches[n_touch].s = find_stream(mb, id);
			n_touch++;
		}
		touch_of[i] = hslot[j];
	}
	/* Phase 1. */
	for (i = 0; i < n; i++) {
		evs_append_req *r = &reqs[i];
		mem_touch *t = &touches[touch_of[i]];

		r->replayed = 0;
		r->rc = check_req(t, r, (flags & MEM_APPEND_SYSTEM) != 0,
		                  first == 0 ? err : NULL);
		if (r->rc > 0) {
			r->rc = 0;
			r->replayed = 1;
		} else if (r->rc < 0) {
			if (first == 0)
				first = r->rc;
		} else {
			if (touch_push(t, r->events, r->n_events) < 0)
				goto nomem;
			r->version = (int64_t)touch_count(t) - 1;
			total += r->n_events;
		}
	}
	if (first < 0 && (flags & EVS_APPEND_ATOMIC)) {
		for (i = 0; i < n; i++)
			if (reqs[i].rc == 0 && !reqs[i].replayed) {
				reqs[i].rc = EVS_ENOTSTORED;
				reqs[i].version = EVS_NO_VERSION;
			}
		rc = first;
		goto done;
	}
	if (total == 0) {
		rc = first;
		goto done;
	}
	/* Phase 2: allocate. */
	for (k = 0; k < n_touch; k++) {
		mem_touch *t = &touches[k];

		if (t->n_pend == 0)
			continue;
		if (t->s == NULL) {
			t->fresh = calloc(1, sizeof(*t->fresh));
			if (t->fresh == NULL ||
			    (t->fresh->id = strdup(t->id)) == NULL)
				goto nomem;
			t->fresh->serial = ++mb->last_serial;
			n_fresh++;
		}
		if (stream_reserve(t->s ? t->s : t->fresh, t->n_pend) < 0)
			goto nomem;
		t->next = t->s ? t->s->count : 0;
	}
	if (table_reserve(mb, n_fresh) < 0 || log_reserve(mb, total) < 0 ||
	    (built = malloc(total * sizeof(*built))) == NULL)
		goto nomem;
	for (i = 0; i < n; i++) {
		evs_append_req *r = &reqs[i];
		mem_touch *t = &touches[touch_of[i]];

		if (r->rc != 0 || r->replayed)
			continue;
		for (j = 0; j < r->n_events; j++, made++) {
			const evs_event *ev = r->events[j];

			if (evs_event_new_stored(
			            &built[made], &ev->id, ev->type, ev->data,
			            ev->data_len, ev->metadata, ev->metadata_len,
			            t->id, (int64_t)t->next++,
			            mb->last_position + 1 + (int64_t)made,
			            (flags & EVS_APPEND_KEEP_TIME) ? ev->recorded_at
			                                           : now,
			            NULL) < 0)
				goto nomem;
			evs_event_set_checkpoint(built[made],
			                         mb->last_commit + 1);
		}
	}
	/* Commit: nothing below can fail. */
	for (k = 0; k < n_touch; k++) {
		if (touches[k].fresh != NULL) {
			table_put(mb->table, mb->table_cap, touches[k].fresh);
			mb->n_streams++;
			touches[k].s = touches[k].fresh;
			touches[k].fresh = NULL;
		}
	}
	for (i = 0; i < total; i++) {
		const char *sid = built[i]->aggregate_id;
		mem_stream *s = NULL;

		for (j = evs__hash_str(sid) & (hcap - 1); hslot[j] != SIZE_MAX;
		     j = (j + 1) & (hcap - 1))
			if (strcmp(touches[hslot[j]].id, sid) == 0) {
				s = touches[hslot[j]].s;
				break;
			}
		s->events[s->count++] = built[i];
		ids_put(s->ids, s->ids_cap, &built[i]->id, built[i]->version);
		mb->log[mb->log_count++] = built[i];
	}
	mb->last_position += (int64_t)total;
	mb->last_commit++;
	evs__mem_wake(mb);
	rc = first;
	goto done;
nomem:
	for (i = 0; i < made; i++)
		evs_event_free(built[i]);
	rc = EVS_ENOMEM;
done:
	free(built);
	for (k = 0; k < n_touch; k++) {
		stream_free(touches[k].fresh);
		free(touches[k].pend);
	}
	free(touches);
	free(touch_of);
	free(hslot);
	if (rc != EVS_ENOMEM)
		return rc;
nomem_unlocked:
	for (i = 0; i < n; i++) {
		reqs[i].rc = EVS_ENOMEM;
		reqs[i].replayed = 0;
		reqs[i].version = EVS_NO_VERSION;
	}
	return evs__error_nomem(err);
}

static int mem_append_many(evs_backend *be, evs_append_req *reqs, size_t n,
                           unsigned int flags, evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	int rc;

	pthread_mutex_lock(&mb->lock);
	rc = append_locked(mb, reqs, n, flags, err);
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_append_ext(evs_append_result *out, evs_backend *be,
                          const char *id, int64_t expected,
                          evs_event *const *events, size_t n,
                          unsigned int flags, evs_error *err)
{
	evs_append_req r;
	int rc;

	memset(&r, 0, sizeof(r));
	r.aggregate_id = id;
	r.expected_version = expected;
	r.events = events;
	r.n_events = n;
	rc = mem_append_many(be, &r, 1, flags, err);
	out->version = r.version;
	out->replayed = r.replayed;
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

/* Hands out a chunk copied under the lock (n events; failed: a copy
 * failed, nothing is handed out). Frees what is not handed out. Returns
 * the callback's first non-zero value, or EVS_ENOMEM when failed. */
static int hand_out(evs_event **chunk, size_t n, int failed,
                    evs_backend_event_cb cb, void *payload, evs_error *err)
{
	size_t i;
	int rc = failed ? evs__error_nomem(err) : 0;

	for (i = 0; i < n; i++) {
		if (rc == 0)
			rc = cb(chunk[i], payload);
		else
			evs_event_free(chunk[i]);
	}
	return rc;
}

/* The stream a read goes on with, with the lock held: NULL when it has
 * none (yet), or EVS_EDELETED (err filled) when it is deleted, or was
 * replaced by a new stream of the same id since the read began
 * (*serial: 0 before the first chunk). */
static int reading(mem_stream **out, mem_backend *mb, const char *id,
                   uint64_t *serial, evs_error *err)
{
	mem_stream *s = find_stream(mb, id);

	*out = s;
	if (s != NULL && s->state != MEM_LIVE)
		return evs_error_set_deleted(err, id, EVS_ANY_VERSION,
		                             (int64_t)s->count - 1);
	if (*serial != 0 && (s == NULL || s->serial != *serial))
		return evs_error_set_deleted(err, id, EVS_ANY_VERSION,
		                             EVS_NO_VERSION);
	if (s != NULL)
		*serial = s->serial;
	return 0;
}

/* The first version a read of s returns: at or after where it is
 * truncated and what scavenge left, the last max_count, and from the
 * first event (at or after those) recorded within max_age: a contiguous
 * suffix, as the PostgreSQL backend's stream_start(). Lock held. */
static size_t mem_start(const mem_stream *s, int64_t now)
{
	int64_t start = s->truncate_before;
	size_t i;

	if (s->max_count > 0 && (int64_t)s->count - s->max_count > start)
		start = (int64_t)s->count - s->max_count;
	i = start > (int64_t)s->first ? (size_t)start : s->first;
	if (i > s->count)
		i = s->count;
	if (s->max_age_us > 0)
		while (i < s->count &&
		       s->events[i]->recorded_at < now - s->max_age_us)
			i++;
	return i;
}

static int mem_read(evs_backend *be, const char *id, int64_t after,
                    evs_backend_event_cb cb, void *payload, evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	evs_event *chunk[READ_CHUNK];
	/* after is EVS_NO_VERSION or more: no overflow in unsigned. */
	size_t next = (size_t)((uint64_t)after + 1), end = 0, n, bytes;
	uint64_t serial = 0;
	int rc = 0;
	int first = 1, failed = 0;

	for (;;) {
		mem_stream *s;

		n = 0;
		bytes = 0;
		pthread_mutex_lock(&mb->lock);
		if ((rc = reading(&s, mb, id, &serial, err)) < 0) {
			pthread_mutex_unlock(&mb->lock);
			return rc;
		}
		/* Read up to where the stream ended when the read began,
		 * from its retained suffix. */
		if (first && s != NULL)
			end = s->count;
		first = 0;
		if (s != NULL) {
			size_t start = mem_start(s, evs__now_us());

			if (next < start)
				next = start;
		}
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
		next += n;
		if ((rc = hand_out(chunk, n, failed, cb, payload, err)) != 0 ||
		    n == 0)
			return rc;
	}
}

/* Newest first, from below `before`: chunks copied under the lock and
 * handed out without it, as mem_read. Versions below `before` never
 * change, so the read ends whatever writers do. */
static int mem_read_backward(evs_backend *be, const char *id,
                             int64_t before, size_t max_events,
                             evs_backend_event_cb cb, void *payload,
                             evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	evs_event *chunk[READ_CHUNK];
	size_t left = max_events == 0 ? SIZE_MAX : max_events;
	/* top: one past the index of the next event to hand out. */
	size_t top = before < 1 ? 0 : (uint64_t)before > SIZE_MAX ? SIZE_MAX
	                                                         : (size_t)before;
	size_t n, bytes, lo = 0;
	uint64_t serial = 0;
	int rc = 0, failed = 0;

	while (left > 0 && top > lo) {
		mem_stream *s;

		n = 0;
		bytes = 0;
		pthread_mutex_lock(&mb->lock);
		if ((rc = reading(&s, mb, id, &serial, err)) < 0) {
			pthread_mutex_unlock(&mb->lock);
			return rc;
		}
		if (s != NULL && top > s->count)
			top = s->count;
		if (s != NULL) {
			size_t start = mem_start(s, evs__now_us());

			if (top < start)
				top = start;
			lo = start;
		}
		while (s != NULL && n + lo < top && n < READ_CHUNK &&
		       n < left && bytes < READ_CHUNK_BYTES) {
			if (evs_event_dup(&chunk[n], s->events[top - 1 - n],
			                  NULL) < 0) {
				failed = 1;
				break;
			}
			bytes += event_bytes(chunk[n]);
			n++;
		}
		pthread_mutex_unlock(&mb->lock);
		top -= n;
		left -= n;
		if ((rc = hand_out(chunk, n, failed, cb, payload, err)) != 0 ||
		    n == 0)
			return rc;
	}
	return 0;
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
	int64_t last = after->global, end = 0;
	size_t left = max_events ? max_events : SIZE_MAX, n, next;
	size_t bytes;
	int rc = 0, first = 1, failed = 0;

	/* Positions follow commit order here, so the global position alone
	 * places a checkpoint. The read ends at the position that was last
	 * when it began (a hard delete may remove events from the log in
	 * between: places in it move, positions do not). */
	while (left > 0) {
		n = 0;
		bytes = 0;
		pthread_mutex_lock(&mb->lock);
		if (first)
			end = mb->last_position;
		first = 0;
		for (next = evs__mem_log_after(mb, last);
		     next < mb->log_count && mb->log[next]->position <= end &&
		     n < READ_CHUNK && n < left && bytes < READ_CHUNK_BYTES;
		     next++) {
			if (evs_event_dup(&chunk[n], mb->log[next], NULL) < 0) {
				failed = 1;
				break;
			}
			bytes += event_bytes(chunk[n]);
			n++;
		}
		pthread_mutex_unlock(&mb->lock);
		left -= n;
		if (n > 0)
			last = chunk[n - 1]->position;
		if ((rc = hand_out(chunk, n, failed, cb, payload, err)) != 0 ||
		    n == 0)
			return rc;
	}
	return 0;
}

static int mem_head(int64_t *out, evs_backend *be, const char *id,
                    evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	mem_stream *s;

	int rc;

	pthread_mutex_lock(&mb->lock);
	s = find_stream(mb, id);
	*out = s ? (int64_t)s->count - 1 : EVS_NO_VERSION;
	rc = s != NULL && s->state != MEM_LIVE
	             ? evs_error_set_deleted(err, id, EVS_ANY_VERSION, *out)
	     : *out == EVS_NO_VERSION ? EVS_ENOTFOUND
	                              : 0;
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

/* ---- lifecycle ---------------------------------------------------------- */

/* A lifecycle marker: type, data {"hard": hard} for the stream's own, or
 * {"hard", "reuse", "stream", "version"} for EVS_LIFECYCLE_STREAM (the
 * keys in the order PostgreSQL's jsonb puts them). */
static int marker_new(evs_event **out, const char *type, const char *stream,
                      int hard, int reuse, int64_t version, evs_error *err)
{
	json_object *data = json_object_new_object();
	int rc = EVS_ENOMEM;

	*out = NULL;
	if (data == NULL)
		return evs__error_nomem(err);
	if (stream == NULL && strcmp(type, EVS_TYPE_UNDELETED) == 0) {
		rc = 0;
	} else if (json_object_object_add(data, "hard",
	                                  json_object_new_boolean(hard)) == 0) {
		rc = 0;
		if (stream != NULL &&
		    (json_object_object_add(data, "reuse",
		                            json_object_new_boolean(reuse)) != 0 ||
		     json_object_object_add(data, "stream",
		                            json_object_new_string(stream)) != 0 ||
		     json_object_object_add(data, "version",
		                            json_object_new_int64(version)) != 0))
			rc = EVS_ENOMEM;
	}
	rc = rc < 0 ? evs__error_nomem(err)
	            : evs_event_new(out, type, data, NULL, err);
	json_object_put(data);
	return rc;
}

/* Appends the stream's marker (when mark is not NULL; at `at`, its
 * current version) and the EVS_LIFECYCLE_STREAM event, in one commit.
 * Lock held. */
static int append_markers(mem_backend *mb, const char *id, int64_t at,
                          evs_event *mark, evs_event *life, evs_error *err)
{
	evs_append_req reqs[2];
	size_t n = 0;

	memset(reqs, 0, sizeof(reqs));
	if (mark != NULL) {
		reqs[n].aggregate_id = id;
		reqs[n].expected_version = at;
		reqs[n].events = &mark;
		reqs[n].n_events = 1;
		n++;
	}
	reqs[n].aggregate_id = EVS_LIFECYCLE_STREAM;
	reqs[n].expected_version = EVS_ANY_VERSION;
	reqs[n].events = &life;
	reqs[n].n_events = 1;
	n++;
	return append_locked(mb, reqs, n, EVS_APPEND_ATOMIC | MEM_APPEND_SYSTEM,
	                     err);
}

/* Removes the events of stream s below version `below` from the log and
 * the stream (their places in s->events become NULL, s->first moves up;
 * s->ids keeps the events above). Nothing here can fail. Lock held. */
static void remove_events(mem_backend *mb, mem_stream *s, int64_t below)
{
	size_t i, k = 0, end = below < 0 ? 0 : (size_t)below;

	if (end > s->count)
		end = s->count;
	if (end <= s->first)
		return;
	evs__mem_subs_forget(mb, s->id, below);
	for (i = 0; i < mb->log_count; i++) {
		evs_event *ev = mb->log[i];

		if (ev->version < below && strcmp(ev->aggregate_id, s->id) == 0)
			continue;
		mb->log[k++] = ev;
	}
	mb->log_count = k;
	for (i = s->first; i < end; i++) {
		evs_event_free(s->events[i]);
		s->events[i] = NULL;
	}
	s->first = end;
	if (s->ids != NULL)
		memset(s->ids, 0, s->ids_cap * sizeof(*s->ids));
	for (i = end; i < s->count; i++)
		ids_put(s->ids, s->ids_cap, &s->events[i]->id, (int64_t)i);
}

/* Takes s out of the table (backward-shift of its cluster). Lock held. */
static void table_remove(mem_backend *mb, mem_stream *s)
{
	size_t mask = mb->table_cap - 1, i, j;

	for (i = evs__hash_str(s->id) & mask; mb->table[i] != s;
	     i = (i + 1) & mask)
		;
	mb->table[i] = NULL;
	mb->n_streams--;
	for (j = (i + 1) & mask; mb->table[j] != NULL; j = (j + 1) & mask) {
		mem_stream *t = mb->table[j];

		mb->table[j] = NULL;
		table_put(mb->table, mb->table_cap, t);
	}
}

/* The checks both lifecycle calls start with: the stream exists, at the
 * expected version. Returns 0 with *out set, or an error. Lock held. */
static int lifecycle_find(mem_stream **out, mem_backend *mb, const char *id,
                          int64_t expected, evs_error *err)
{
	mem_stream *s = find_stream(mb, id);

	*out = s;
	if (s == NULL)
		return expected >= 0
		               ? evs_error_set_conflict(err, id, expected,
		                                        EVS_NO_VERSION)
		               : evs_error_set(err, EVS_ENOTFOUND, NULL,
		                               "aggregate \"%s\" has no events",
		                               id);
	return 0;
}

static int mem_delete(int64_t *version_out, evs_backend *be, const char *id,
                      int64_t expected, unsigned int flags, evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	int hard = (flags & EVS_DELETE_HARD) != 0;
	int reuse = (flags & EVS_DELETE_REUSE) != 0;
	evs_event *mark = NULL, *life = NULL;
	mem_stream *s;
	int64_t current, marker;
	int rc;

	pthread_mutex_lock(&mb->lock);
	if ((rc = lifecycle_find(&s, mb, id, expected, err)) < 0)
		goto done;
	current = (int64_t)s->count - 1;
	if (s->state == MEM_HARD || (s->state == MEM_SOFT && !hard)) {
		rc = evs_error_set_deleted(err, id, expected, current);
		goto done;
	}
	if (expected >= 0 && expected != current) {
		rc = evs_error_set_conflict(err, id, expected, current);
		goto done;
	}
	marker = reuse ? EVS_NO_VERSION : current + 1;
	if ((!reuse && (rc = marker_new(&mark, EVS_TYPE_DELETED, NULL, hard, 0,
	                                0, err)) < 0) ||
	    (rc = marker_new(&life, EVS_TYPE_DELETED, id, hard, reuse, marker,
	                     err)) < 0 ||
	    (rc = append_markers(mb, id, current, mark, life, err)) < 0)
		goto done;
	if (hard) {
		remove_events(mb, s, current + 1);
		snaps_free(s);
	}
	if (reuse) {
		table_remove(mb, s);
		stream_free(s);
	} else {
		s->state = hard ? MEM_HARD : MEM_SOFT;
	}
	*version_out = marker;
done:
	pthread_mutex_unlock(&mb->lock);
	evs_event_free(mark);
	evs_event_free(life);
	return rc;
}

static int mem_undelete(int64_t *version_out, evs_backend *be,
                        const char *id, int64_t expected, evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	evs_event *mark = NULL, *life = NULL;
	mem_stream *s;
	int64_t current;
	int rc;

	pthread_mutex_lock(&mb->lock);
	if ((rc = lifecycle_find(&s, mb, id, expected, err)) < 0)
		goto done;
	current = (int64_t)s->count - 1;
	if (s->state == MEM_HARD) {
		rc = evs__error_set_hard_deleted(err, id, expected, current);
		goto done;
	}
	if (expected >= 0 && expected != current) {
		rc = evs_error_set_conflict(err, id, expected, current);
		goto done;
	}
	if (s->state == MEM_LIVE) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "aggregate \"%s\" is not deleted", id);
		goto done;
	}
	if ((rc = marker_new(&mark, EVS_TYPE_UNDELETED, NULL, 0, 0, 0, err)) <
	            0 ||
	    (rc = marker_new(&life, EVS_TYPE_UNDELETED, id, 0, 0, current + 1,
	                     err)) < 0 ||
	    (rc = append_markers(mb, id, current, mark, life, err)) < 0)
		goto done;
	s->state = MEM_LIVE;
	*version_out = current + 1;
done:
	pthread_mutex_unlock(&mb->lock);
	evs_event_free(mark);
	evs_event_free(life);
	return rc;
}

/* ---- truncation, retention, scavenge ------------------------------------ */

/* Whether a snapshot of s (any kind) is at or after version cut - 1. */
static int snap_covers(const mem_stream *s, int64_t cut)
{
	size_t i;

	if (cut <= 0)
		return 1;
	for (i = 0; i < s->n_snaps; i++)
		if (s->snaps[i].version >= cut - 1)
			return 1;
	return 0;
}

/* The checks truncate and set_retention start with, after the lifecycle
 * ones: a live stream at the expected version. Lock held. */
static int retention_find(mem_stream **out, mem_backend *mb, const char *id,
                          int64_t expected, evs_error *err)
{
	int64_t current;
	int rc;

	if ((rc = lifecycle_find(out, mb, id, expected, err)) < 0)
		return rc;
	current = (int64_t)(*out)->count - 1;
	if ((*out)->state != MEM_LIVE)
		return evs_error_set_deleted(err, id, expected, current);
	if (expected >= 0 && expected != current)
		return evs_error_set_conflict(err, id, expected, current);
	return 0;
}

/* Appends type to EVS_LIFECYCLE_STREAM with data (taken). Lock held. */
static int append_life(mem_backend *mb, const char *type, json_object *data,
                       evs_error *err)
{
	evs_event *life = NULL;
	int rc;

	if (data == NULL)
		return evs__error_nomem(err);
	rc = evs_event_new(&life, type, data, NULL, err);
	json_object_put(data);
	if (rc == 0)
		rc = append_markers(mb, NULL, 0, NULL, life, err);
	evs_event_free(life);
	return rc;
}

/* json-c's int64, or null for 0 (no limit). */
static json_object *limit_json(int64_t v)
{
	return v > 0 ? json_object_new_int64(v) : NULL;
}

static int mem_truncate(evs_backend *be, const char *id, int64_t expected,
                        int64_t before, unsigned int flags, evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	int64_t now = evs__now_us(), current, cut;
	json_object *data;
	mem_stream *s, probe;
	int rc;

	pthread_mutex_lock(&mb->lock);
	if ((rc = retention_find(&s, mb, id, expected, err)) < 0)
		goto done;
	current = (int64_t)s->count - 1;
	if (before > current + 1 || before < s->truncate_before) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "could not truncate the stream: version "
		                   "%lld is past the end of aggregate \"%s\", "
		                   "or below where it is truncated already "
		                   "(%lld)", (long long)before, id,
		                   (long long)(before > current + 1
		                                       ? current + 1
		                                       : s->truncate_before));
		goto done;
	}
	if (before == s->truncate_before)
		goto done;
	probe = *s;
	probe.truncate_before = before;
	cut = (int64_t)mem_start(&probe, now);
	if (!(flags & EVS_TRUNCATE_FORCE) &&
	    cut > (int64_t)mem_start(s, now) && !snap_covers(s, cut)) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "could not truncate the stream: no snapshot "
		                   "of aggregate \"%s\" covers the cut (an "
		                   "aggregate could not be rebuilt); save one "
		                   "first, or force it", id);
		goto done;
	}
	data = json_object_new_object();
	if (data != NULL) {
		json_object_object_add(data, "before",
		                       json_object_new_int64(before));
		json_object_object_add(data, "stream",
		                       json_object_new_string(id));
		json_object_object_add(data, "version",
		                       json_object_new_int64(current));
	}
	if ((rc = append_life(mb, "$truncated", data, err)) == 0)
		s->truncate_before = before;
done:
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

static int mem_set_retention(evs_backend *be, const char *id,
                             int64_t expected, const evs_retention *r,
                             unsigned int flags, evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	int64_t now = evs__now_us(), cut;
	json_object *data;
	mem_stream *s, probe;
	int rc;

	pthread_mutex_lock(&mb->lock);
	if ((rc = retention_find(&s, mb, id, expected, err)) < 0)
		goto done;
	/* The cut the new limits make now: a snapshot must cover it when
	 * it cuts more than the stream is cut already. */
	probe = *s;
	probe.max_count = r->max_count;
	probe.max_age_us = r->max_age_s * 1000000;
	cut = (int64_t)mem_start(&probe, now);
	if (!(flags & EVS_TRUNCATE_FORCE) &&
	    cut > (int64_t)mem_start(s, now) && !snap_covers(s, cut)) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "could not set the stream's retention: no "
		                   "snapshot of aggregate \"%s\" covers the cut "
		                   "(an aggregate could not be rebuilt); save "
		                   "one first, or force it", id);
		goto done;
	}
	data = json_object_new_object();
	if (data != NULL) {
		json_object_object_add(data, "stream",
		                       json_object_new_string(id));
		json_object_object_add(data, "version",
		                       json_object_new_int64(
		                               (int64_t)s->count - 1));
		json_object_object_add(data, "max_age_s",
		                       limit_json(r->max_age_s));
		json_object_object_add(data, "max_count",
		                       limit_json(r->max_count));
	}
	if ((rc = append_life(mb, "$retention", data, err)) == 0) {
		s->max_count = r->max_count;
		s->max_age_us = r->max_age_s * 1000000;
	}
done:
	pthread_mutex_unlock(&mb->lock);
	return rc;
}

/* Removes up to max released events, streams in table order. */
static int mem_scavenge(size_t *removed, evs_backend *be, size_t max,
                        evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	int64_t now = evs__now_us();
	size_t i, left = max;

	(void)err;
	pthread_mutex_lock(&mb->lock);
	for (i = 0; i < mb->table_cap && left > 0; i++) {
		mem_stream *s = mb->table[i];
		size_t start, n;

		if (s == NULL || s->state != MEM_LIVE ||
		    (s->truncate_before == 0 && s->max_count == 0 &&
		     s->max_age_us == 0))
			continue;
		start = mem_start(s, now);
		if (start <= s->first)
			continue;
		n = start - s->first < left ? start - s->first : left;
		remove_events(mb, s, (int64_t)(s->first + n));
		left -= n;
	}
	pthread_mutex_unlock(&mb->lock);
	*removed = max - left;
	return 0;
}

/* ---- snapshots ---------------------------------------------------------- */

static mem_snap *find_snap(mem_stream *s, const char *kind,
                           unsigned int format)
{
	size_t i;

	for (i = 0; i < s->n_snaps; i++)
		if (s->snaps[i].format == format &&
		    strcmp(s->snaps[i].kind, kind) == 0)
			return &s->snaps[i];
	return NULL;
}

static int mem_save_snapshot(int *stored, evs_backend *be, const char *id,
                             const char *kind, unsigned int format,
                             int64_t version, const char *json, size_t len,
                             evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	char *copy = malloc(len + 1), *kind_copy = NULL;
	mem_stream *s;
	mem_snap *sn;
	int rc = 0;

	*stored = 0;
	if (copy == NULL)
		return evs__error_nomem(err);
	memcpy(copy, json, len);
	copy[len] = '\0';
	pthread_mutex_lock(&mb->lock);
	s = find_stream(mb, id);
	if (s != NULL && s->state != MEM_LIVE) {
		rc = evs_error_set_deleted(err, id, EVS_ANY_VERSION,
		                           (int64_t)s->count - 1);
		goto done;
	}
	if (s == NULL || version > (int64_t)s->count - 1) {
		rc = evs_error_set(err, EVS_ENOTFOUND, NULL,
		                   "aggregate \"%s\" has no version %lld", id,
		                   (long long)version);
		goto done;
	}
	sn = find_snap(s, kind, format);
	if (sn != NULL && sn->version >= version)
		goto done;
	if (sn == NULL) {
		mem_snap *p = realloc(s->snaps, (s->n_snaps + 1) * sizeof(*p));

		if (p == NULL || (kind_copy = strdup(kind)) == NULL) {
			if (p != NULL)
				s->snaps = p;
			rc = evs__error_nomem(err);
			goto done;
		}
		s->snaps = p;
		sn = &s->snaps[s->n_snaps++];
		sn->kind = kind_copy;
		sn->format = format;
		sn->json = NULL;
	}
	free(sn->json);
	sn->json = copy;
	copy = NULL;
	sn->len = len;
	sn->version = version;
	sn->taken_at = evs__now_us();
	*stored = 1;
done:
	pthread_mutex_unlock(&mb->lock);
	free(copy);
	return rc;
}

static int mem_load_snapshot(evs_backend *be, const char *id,
                             const char *kind, unsigned int format,
                             evs_snapshot_cb scb, evs_backend_event_cb cb,
                             void *payload, evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	int64_t after = EVS_NO_VERSION;
	uint64_t serial = 0;
	char *json = NULL;
	size_t len = 0;
	mem_stream *s;
	mem_snap *sn;
	int rc;

	pthread_mutex_lock(&mb->lock);
	rc = reading(&s, mb, id, &serial, err);
	if (rc == 0 && s != NULL && (sn = find_snap(s, kind, format)) != NULL) {
		json = malloc(sn->len + 1);
		if (json == NULL) {
			rc = evs__error_nomem(err);
		} else {
			memcpy(json, sn->json, sn->len + 1);
			len = sn->len;
			after = sn->version;
		}
	}
	pthread_mutex_unlock(&mb->lock);
	if (rc == 0 && json != NULL)
		rc = scb(after, json, len, payload);
	free(json);
	if (rc != 0)
		return rc;
	/* The events up to the snapshot's version never change: the rest
	 * is an ordinary read from there. */
	return mem_read(be, id, after, cb, payload, err);
}

static int mem_list_snapshots(evs_backend *be, const char *id,
                              evs_snapshot_info_cb cb, void *payload,
                              evs_error *err)
{
	mem_backend *mb = (mem_backend *)be;
	evs_snapshot_info *infos = NULL;
	size_t n = 0, i;
	mem_stream *s;
	int rc = 0;

	pthread_mutex_lock(&mb->lock);
	s = find_stream(mb, id);
	if (s != NULL && s->n_snaps > 0) {
		infos = calloc(s->n_snaps, sizeof(*infos));
		for (i = 0; infos != NULL && i < s->n_snaps; i++) {
			infos[i].kind = strdup(s->snaps[i].kind);
			if (infos[i].kind == NULL)
				break;
			infos[i].aggregate_id = id;
			infos[i].format = s->snaps[i].format;
			infos[i].version = s->snaps[i].version;
			infos[i].taken_at = s->snaps[i].taken_at;
			infos[i].bytes = s->snaps[i].len;
			n++;
		}
		if (infos == NULL || n < s->n_snaps)
			rc = evs__error_nomem(err);
	}
	pthread_mutex_unlock(&mb->lock);
	for (i = 0; i < n; i++) {
		if (rc == 0)
			rc = cb(&infos[i], payload);
		free((char *)infos[i].kind);
	}
	free(infos);
	return rc;
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
	mb->base.append_many = mem_append_many;
	mb->base.append = mem_append;
	mb->base.read = mem_read;
	mb->base.read_backward = mem_read_backward;
	mb->base.head = mem_head;
	mb->base.free = mem_free;
	mb->base.read_all = mem_read_all;
	mb->base.delete_stream = mem_delete;
	mb->base.undelete_stream = mem_undelete;
	mb->base.save_snapshot = mem_save_snapshot;
	mb->base.load_snapshot = mem_load_snapshot;
	mb->base.list_snapshots = mem_list_snapshots;
	mb->base.truncate = mem_truncate;
	mb->base.set_retention = mem_set_retention;
	mb->base.scavenge = mem_scavenge;
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
