/* The store front end: every argument is checked here, once; then the
 * call goes to the backend, which trusts what reaches it. */
#include <stdlib.h>
#include <string.h>

#include "event_int.h"
#include "sub_int.h"

struct evs_store {
	evs_backend *be;
	const evs__sub_ops *sub_ops; /* NULL: no subscriptions */
};

void evs__store_set_sub_ops(evs_store *store, const evs__sub_ops *ops)
{
	store->sub_ops = ops;
}

const evs__sub_ops *evs__store_sub_ops(const evs_store *store)
{
	return store->sub_ops;
}

evs_backend *evs__store_backend(const evs_store *store)
{
	return store->be;
}

int evs_store_new(evs_store **out, evs_backend *be, evs_error *err)
{
	evs_store *store;

	evs__error_reset(err);
	if (out != NULL)
		*out = NULL;
	if (be == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "backend must not be NULL");
	if (be->version == 0 || be->version > EVS_BACKEND_VERSION) {
		unsigned int v = be->version;

		if (be->free != NULL)
			be->free(be);
		return evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                     "backend vtable version %u is not supported "
		                     "(this library knows 1 to %d)",
		                     v, EVS_BACKEND_VERSION);
	}
	if (out == NULL || be->append == NULL || be->read == NULL ||
	    be->free == NULL) {
		const char *what = out == NULL         ? "out"
		                   : be->append == NULL ? "backend append slot"
		                   : be->read == NULL   ? "backend read slot"
		                                        : "backend free slot";
		if (be->free != NULL)
			be->free(be);
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s must not be NULL", what);
	}
	store = malloc(sizeof(*store));
	if (store == NULL) {
		be->free(be);
		return evs__error_nomem(err);
	}
	store->be = be;
	store->sub_ops = NULL;
	*out = store;
	return 0;
}

void evs_store_free(evs_store *store)
{
	if (store == NULL)
		return;
	store->be->free(store->be);
	free(store);
}

static int check_store(evs_store *store, evs_error *err)
{
	if (store == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "store must not be NULL");
	return 0;
}

/* Event ids must be distinct within a batch: sort copies and compare
 * neighbours (a batch may hold many thousands of events). */
static int cmp_uuid(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(evs_uuid));
}

static int check_batch(evs_event *const *events, size_t n, evs_error *err)
{
	evs_uuid *ids;
	size_t i;
	int rc = 0;

	if (n > 0 && events == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "events must not be NULL when n_events is "
		                     "%zu", n);
	for (i = 0; i < n; i++)
		if (events[i] == NULL)
			return evs_error_set(err, EVS_EINVALID, NULL,
			                     "events[%zu] must not be NULL", i);
	if (n < 2)
		return 0;
	ids = malloc(n * sizeof(*ids));
	if (ids == NULL)
		return evs__error_nomem(err);
	for (i = 0; i < n; i++)
		ids[i] = events[i]->id;
	qsort(ids, n, sizeof(*ids), cmp_uuid);
	for (i = 1; i < n; i++) {
		if (evs_uuid_equal(&ids[i - 1], &ids[i])) {
			char text[EVS_UUID_STRLEN + 1];

			evs_uuid_format(text, &ids[i]);
			rc = evs_error_set(err, EVS_EINVALID, NULL,
			                   "events holds event id %s twice", text);
			break;
		}
	}
	free(ids);
	return rc;
}

static int check_expected(int64_t expected, size_t n, evs_error *err)
{
	if (expected < EVS_NO_VERSION && expected != EVS_ANY_VERSION &&
	    expected != EVS_STREAM_EXISTS)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "expected_version %lld is not a version "
		                     "(0 or more) nor EVS_NO_VERSION, "
		                     "EVS_ANY_VERSION or EVS_STREAM_EXISTS",
		                     (long long)expected);
	if (expected >= 0 && (uint64_t)(INT64_MAX - expected) < n)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "expected_version %lld leaves no room for "
		                     "%zu more events", (long long)expected, n);
	return 0;
}

/* '$' names are evstore's (EVS_SYSTEM_PREFIX): only a restore
 * (EVS_APPEND_KEEP_TIME) writes them, putting back what a store made. */
static int check_reserved(const char *id, evs_event *const *events, size_t n,
                          unsigned int flags, evs_error *err)
{
	size_t i;

	if (flags & EVS_APPEND_KEEP_TIME)
		return 0;
	if (id[0] == EVS_SYSTEM_PREFIX)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "aggregate_id \"%s\" starts with '$': "
		                     "such ids are evstore's own", id);
	for (i = 0; i < n; i++)
		if (events[i]->type[0] == EVS_SYSTEM_PREFIX)
			return evs_error_set(err, EVS_EINVALID, NULL,
			                     "events[%zu] has type \"%s\": types "
			                     "starting with '$' are evstore's own",
			                     i, events[i]->type);
	return 0;
}

/* With EVS_APPEND_KEEP_TIME: an exact version and a time on every event. */
static int check_keep_time(int64_t expected, evs_event *const *events,
                           size_t n, evs_error *err)
{
	size_t i;

	if (expected < EVS_NO_VERSION)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "EVS_APPEND_KEEP_TIME needs an exact "
		                     "expected_version, not %lld",
		                     (long long)expected);
	for (i = 0; i < n; i++)
		if (!events[i]->has_time)
			return evs_error_set(err, EVS_EINVALID, NULL,
			                     "events[%zu] has no recorded time "
			                     "(EVS_APPEND_KEEP_TIME; see "
			                     "evs_event_set_recorded_at())", i);
	return 0;
}

int evs_store_append_ext(evs_append_result *out, evs_store *store,
                         const char *aggregate_id, int64_t expected_version,
                         evs_event *const *events, size_t n_events,
                         unsigned int flags, evs_error *err)
{
	evs_append_result res = {EVS_NO_VERSION, 0};
	evs_backend *be;
	int rc;

	evs__error_reset(err);
	if ((rc = check_store(store, err)) < 0 ||
	    (rc = evs__check_name("aggregate_id", aggregate_id, err)) < 0 ||
	    (rc = check_expected(expected_version, n_events, err)) < 0 ||
	    (rc = check_batch(events, n_events, err)) < 0)
		return rc;
	if ((flags & ~EVS_APPEND_KEEP_TIME) != 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "flags 0x%x holds unknown bits", flags);
	if ((flags & EVS_APPEND_KEEP_TIME) &&
	    (rc = check_keep_time(expected_version, events, n_events, err)) < 0)
		return rc;
	if ((rc = check_reserved(aggregate_id, events, n_events, flags,
	                         err)) < 0)
		return rc;
	be = store->be;
	if (n_events == 0) {
		if (out == NULL)
			return 0;
		rc = evs_store_current_version(&res.version, store,
		                               aggregate_id, err);
		if (rc == EVS_ENOTFOUND) {
			evs__error_reset(err);
			rc = 0;
		}
		if (rc == 0)
			*out = res;
		return rc;
	}
	if (be->version >= 3 && be->append_ext != NULL)
		rc = be->append_ext(&res, be, aggregate_id, expected_version,
		                    events, n_events, flags, err);
	else if (flags != 0)
		return evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                     "this store's backend cannot keep "
		                     "recorded times");
	else
		rc = be->append(&res.version, be, aggregate_id,
		                expected_version, events, n_events, err);
	if (rc == 0 && out != NULL)
		*out = res;
	return rc;
}

/* ---- multi-stream appends ---------------------------------------------- */

/* Checks request i as evs_store_append_ext() checks its arguments; the
 * message names the request. */
static int check_req(const evs_append_req *r, size_t i, unsigned int flags,
                     evs_error *err)
{
	evs_error tmp = EVS_ERROR_INIT;
	int rc;

	if ((rc = evs__check_name("aggregate_id", r->aggregate_id, &tmp)) == 0 &&
	    r->n_events == 0)
		rc = evs_error_set(&tmp, EVS_EINVALID, NULL,
		                   "n_events must be 1 or more");
	if (rc == 0 &&
	    (rc = check_expected(r->expected_version, r->n_events, &tmp)) == 0 &&
	    (rc = check_batch(r->events, r->n_events, &tmp)) == 0 &&
	    (rc = check_reserved(r->aggregate_id, r->events, r->n_events, flags,
	                         &tmp)) == 0 &&
	    (flags & EVS_APPEND_KEEP_TIME))
		rc = check_keep_time(r->expected_version, r->events,
		                     r->n_events, &tmp);
	if (rc < 0) {
		if (rc == EVS_ENOMEM)
			evs__error_nomem(err);
		else
			evs_error_set(err, rc, NULL, "reqs[%zu]: %s", i,
			              tmp.message ? tmp.message : "invalid");
	}
	evs_error_clear(&tmp);
	return rc;
}

int evs__append_each(evs_append_req *reqs, size_t n, unsigned int flags,
                     evs__append_fn fn, void *ctx, evs_error *err)
{
	size_t i;
	int first = 0;

	for (i = 0; i < n; i++) {
		evs_append_req *r = &reqs[i];
		evs_append_result res = {EVS_NO_VERSION, 0};
		evs_error tmp = EVS_ERROR_INIT;

		r->rc = fn(&res, ctx, r->aggregate_id, r->expected_version,
		           r->events, r->n_events, flags, &tmp);
		r->replayed = r->rc == 0 ? res.replayed : 0;
		r->version = r->rc == 0 ? res.version
		             : r->rc == EVS_ECONFLICT || r->rc == EVS_EDELETED
		                     ? tmp.actual_version
		                     : EVS_NO_VERSION;
		if (r->rc < 0 && first == 0) {
			first = r->rc;
			if (err != NULL) {
				evs__error_reset(err);
				*err = tmp;
				tmp = (evs_error)EVS_ERROR_INIT;
			}
		}
		evs_error_clear(&tmp);
	}
	return first;
}

/* A backend's single append, as evs__append_each() calls it. */
static int backend_append(evs_append_result *out, void *ctx, const char *id,
                          int64_t expected, evs_event *const *events,
                          size_t n, unsigned int flags, evs_error *err)
{
	evs_backend *be = ctx;

	if (be->version >= 3 && be->append_ext != NULL)
		return be->append_ext(out, be, id, expected, events, n, flags,
		                      err);
	return be->append(&out->version, be, id, expected, events, n, err);
}

int evs_store_append_many(evs_store *store, evs_append_req *reqs,
                          size_t n_reqs, unsigned int flags, evs_error *err)
{
	const unsigned int known = EVS_APPEND_ATOMIC | EVS_APPEND_KEEP_TIME;
	evs_append_req *valid = NULL;
	evs_error tmp = EVS_ERROR_INIT;
	evs_backend *be;
	size_t i, k, n_bad = 0, first_bad = n_reqs;
	int rc, whole = 0;

	evs__error_reset(err);
	if ((rc = check_store(store, err)) < 0)
		return rc;
	if (n_reqs > 0 && reqs == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "reqs must not be NULL when n_reqs is %zu",
		                     n_reqs);
	for (i = 0; i < n_reqs; i++) {
		reqs[i].rc = 0;
		reqs[i].replayed = 0;
		reqs[i].version = EVS_NO_VERSION;
	}
	if ((flags & ~known) != 0)
		whole = evs_error_set(err, EVS_EINVALID, NULL,
		                      "flags 0x%x holds unknown bits", flags);
	be = store->be;
	if (whole == 0 && (flags & EVS_APPEND_ATOMIC) &&
	    (be->version < 4 || be->append_many == NULL))
		whole = evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                      "this store's backend cannot append to "
		                      "several streams atomically");
	if (whole == 0 && (flags & EVS_APPEND_KEEP_TIME) &&
	    (be->version < 3 || be->append_ext == NULL))
		whole = evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                      "this store's backend cannot keep "
		                      "recorded times");
	if (whole < 0) {
		for (i = 0; i < n_reqs; i++)
			reqs[i].rc = whole;
		return whole;
	}
	for (i = 0; i < n_reqs; i++) {
		rc = check_req(&reqs[i], i, flags, n_bad == 0 ? err : NULL);
		if (rc == EVS_ENOMEM) {
			for (k = 0; k < n_reqs; k++)
				reqs[k].rc = EVS_ENOMEM;
			return evs__error_nomem(err);
		}
		if (rc < 0) {
			reqs[i].rc = rc;
			if (n_bad++ == 0)
				first_bad = i;
		}
	}
	if (n_bad > 0 && (flags & EVS_APPEND_ATOMIC)) {
		for (i = 0; i < n_reqs; i++)
			if (reqs[i].rc == 0)
				reqs[i].rc = EVS_ENOTSTORED;
		return reqs[first_bad].rc;
	}
	if (n_bad == n_reqs)
		return n_reqs == 0 ? 0 : reqs[first_bad].rc;
	if (n_bad > 0) {
		/* Send the well-formed requests only, then put their
		 * outcomes back in place. */
		valid = malloc((n_reqs - n_bad) * sizeof(*valid));
		if (valid == NULL) {
			for (i = 0; i < n_reqs; i++)
				reqs[i].rc = EVS_ENOMEM;
			return evs__error_nomem(err);
		}
		for (i = 0, k = 0; i < n_reqs; i++)
			if (reqs[i].rc == 0)
				valid[k++] = reqs[i];
	}
	{
		evs_append_req *send = valid ? valid : reqs;
		size_t n_send = n_reqs - n_bad;
		evs_error *e = n_bad > 0 ? &tmp : err;

		if (be->version >= 4 && be->append_many != NULL)
			rc = be->append_many(be, send, n_send, flags, e);
		else
			rc = evs__append_each(send, n_send, flags,
			                      backend_append, be, e);
	}
	if (valid != NULL) {
		for (i = 0, k = 0; i < n_reqs; i++)
			if (reqs[i].rc == 0)
				reqs[i] = valid[k++];
		free(valid);
		/* The first failure in array order is the malformed one
		 * unless a sent request before it failed: then say that. */
		for (i = 0; i < first_bad; i++)
			if (reqs[i].rc < 0)
				break;
		if (i < first_bad) {
			evs__error_reset(err);
			if (err != NULL) {
				*err = tmp;
				tmp = (evs_error)EVS_ERROR_INIT;
			}
		}
		evs_error_clear(&tmp);
		for (i = 0; i < n_reqs; i++)
			if (reqs[i].rc < 0)
				return reqs[i].rc;
		return 0;
	}
	return rc;
}

int evs_store_append(int64_t *version_out, evs_store *store,
                     const char *aggregate_id, int64_t expected_version,
                     evs_event *const *events, size_t n_events,
                     evs_error *err)
{
	evs_append_result res;
	int rc = evs_store_append_ext(version_out ? &res : NULL, store,
	                              aggregate_id, expected_version, events,
	                              n_events, 0, err);

	if (rc == 0 && version_out != NULL)
		*version_out = res.version;
	return rc;
}

typedef struct {
	evs_event_list *list;
	evs_error *err;
} collect_ctx;

static int collect(evs_event *ev, void *payload)
{
	collect_ctx *ctx = payload;

	return evs__event_list_push(ctx->list, ev, ctx->err);
}

static int64_t clamp_from(int64_t from_version)
{
	return from_version < EVS_NO_VERSION ? EVS_NO_VERSION : from_version;
}

int evs_store_load(evs_event_list **out, evs_store *store,
                   const char *aggregate_id, int64_t from_version,
                   evs_error *err)
{
	collect_ctx ctx;
	int rc;

	evs__error_reset(err);
	if (out == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "out must not be NULL");
	*out = NULL;
	if ((rc = check_store(store, err)) < 0 ||
	    (rc = evs__check_name("aggregate_id", aggregate_id, err)) < 0)
		return rc;
	if ((rc = evs__event_list_new(&ctx.list, err)) < 0)
		return rc;
	ctx.err = err;
	rc = store->be->read(store->be, aggregate_id, clamp_from(from_version),
	                     collect, &ctx, err);
	if (rc != 0) {
		evs_event_list_free(ctx.list);
		/* A push failure stops the read with its own code. */
		return rc > 0 ? evs_error_set(err, EVS_ERROR, NULL,
		                              "backend read stopped with %d",
		                              rc)
		              : rc;
	}
	*out = ctx.list;
	return 0;
}

typedef struct {
	evs_event_cb cb;
	void *payload;
} foreach_ctx;

static int forward(evs_event *ev, void *payload)
{
	foreach_ctx *ctx = payload;
	int rc = ctx->cb(ev, ctx->payload);

	evs_event_free(ev);
	return rc;
}

int evs_store_foreach(evs_store *store, const char *aggregate_id,
                      int64_t from_version, evs_event_cb cb, void *payload,
                      evs_error *err)
{
	foreach_ctx ctx;
	int rc;

	evs__error_reset(err);
	if ((rc = check_store(store, err)) < 0 ||
	    (rc = evs__check_name("aggregate_id", aggregate_id, err)) < 0)
		return rc;
	if (cb == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "cb must not be NULL");
	ctx.cb = cb;
	ctx.payload = payload;
	return store->be->read(store->be, aggregate_id,
	                       clamp_from(from_version), forward, &ctx, err);
}

/* The backwards read slot, or EVS_EUNSUPPORTED. */
static int check_backward(evs_store *store, const char *aggregate_id,
                          evs_error *err)
{
	int rc;

	if ((rc = check_store(store, err)) < 0 ||
	    (rc = evs__check_name("aggregate_id", aggregate_id, err)) < 0)
		return rc;
	if (store->be->version < 5 || store->be->read_backward == NULL)
		return evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                     "this backend cannot read a stream "
		                     "backwards");
	return 0;
}

int evs_store_foreach_backward(evs_store *store, const char *aggregate_id,
                               int64_t before_version, size_t max_events,
                               evs_event_cb cb, void *payload,
                               evs_error *err)
{
	foreach_ctx ctx;
	int rc;

	evs__error_reset(err);
	if ((rc = check_backward(store, aggregate_id, err)) < 0)
		return rc;
	if (cb == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "cb must not be NULL");
	if (before_version <= 0)
		return 0; /* no version is lower */
	ctx.cb = cb;
	ctx.payload = payload;
	return store->be->read_backward(store->be, aggregate_id,
	                                before_version, max_events, forward,
	                                &ctx, err);
}

int evs_store_load_last(evs_event_list **out, evs_store *store,
                        const char *aggregate_id, size_t n, evs_error *err)
{
	collect_ctx ctx;
	size_t i;
	int rc;

	evs__error_reset(err);
	if (out == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "out must not be NULL");
	*out = NULL;
	if ((rc = check_backward(store, aggregate_id, err)) < 0)
		return rc;
	if (n == 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "n must be 1 or more");
	if ((rc = evs__event_list_new(&ctx.list, err)) < 0)
		return rc;
	ctx.err = err;
	rc = store->be->read_backward(store->be, aggregate_id,
	                              EVS_END_VERSION, n, collect, &ctx, err);
	if (rc != 0) {
		evs_event_list_free(ctx.list);
		return rc > 0 ? evs_error_set(err, EVS_ERROR, NULL,
		                              "backend read stopped with %d",
		                              rc)
		              : rc;
	}
	/* Newest first as read: the list holds them oldest first. */
	for (i = 0; i < ctx.list->count / 2; i++) {
		evs_event *t = ctx.list->items[i];

		ctx.list->items[i] = ctx.list->items[ctx.list->count - 1 - i];
		ctx.list->items[ctx.list->count - 1 - i] = t;
	}
	*out = ctx.list;
	return 0;
}

static int track_last(evs_event *ev, void *payload)
{
	*(int64_t *)payload = ev->version;
	evs_event_free(ev);
	return 0;
}

int evs_store_current_version(int64_t *version_out, evs_store *store,
                              const char *aggregate_id, evs_error *err)
{
	int64_t version = EVS_NO_VERSION;
	int rc;

	evs__error_reset(err);
	if (version_out == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "version_out must not be NULL");
	*version_out = EVS_NO_VERSION;
	if ((rc = check_store(store, err)) < 0 ||
	    (rc = evs__check_name("aggregate_id", aggregate_id, err)) < 0)
		return rc;
	if (store->be->head != NULL) {
		rc = store->be->head(&version, store->be, aggregate_id, err);
	} else {
		/* The slot is optional: fall back to reading the stream. */
		rc = store->be->read(store->be, aggregate_id, EVS_NO_VERSION,
		                     track_last, &version, err);
		if (rc == 0 && version == EVS_NO_VERSION)
			rc = EVS_ENOTFOUND;
	}
	if (rc == EVS_ENOTFOUND) {
		version = EVS_NO_VERSION;
		if (err != NULL && err->code != EVS_ENOTFOUND)
			evs_error_set(err, EVS_ENOTFOUND, NULL,
			              "aggregate \"%s\" has no events",
			              aggregate_id);
	}
	if (rc == 0 || rc == EVS_ENOTFOUND || rc == EVS_EDELETED)
		*version_out = version;
	return rc;
}

int evs_store_read_all(evs_store *store, const evs_position *after,
                       size_t max_events, evs_event_cb cb, void *payload,
                       evs_error *err)
{
	static const evs_position start = EVS_POSITION_START;
	foreach_ctx ctx;
	int rc;

	evs__error_reset(err);
	if ((rc = check_store(store, err)) < 0)
		return rc;
	if (cb == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "cb must not be NULL");
	if (after != NULL && after->global < 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "after->global %lld is below 0",
		                     (long long)after->global);
	/* A version-1 vtable ends before the read_all slot. */
	if (store->be->version < 2 || store->be->read_all == NULL)
		return evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                     "this store's backend cannot read all "
		                     "streams");
	ctx.cb = cb;
	ctx.payload = payload;
	return store->be->read_all(store->be, after ? after : &start,
	                           max_events, forward, &ctx, err);
}

/* ---- stream lifecycle ------------------------------------------------- */

/* What the lifecycle calls check before the slot: the slot itself, the
 * id, and the expected version (returned in *expected, EVS_STREAM_EXISTS
 * as EVS_ANY_VERSION). `done`: what is done to streams, for messages
 * ("deleted"). */
static int check_lifecycle(evs_store *store, const char *aggregate_id,
                           int64_t *expected, int has_slot,
                           const char *done, evs_error *err)
{
	int rc;

	if ((rc = check_store(store, err)) < 0 ||
	    (rc = evs__check_name("aggregate_id", aggregate_id, err)) < 0)
		return rc;
	if (aggregate_id[0] == EVS_SYSTEM_PREFIX)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "aggregate_id \"%s\" starts with '$': "
		                     "evstore's own streams are not %s",
		                     aggregate_id, done);
	if (*expected == EVS_STREAM_EXISTS)
		*expected = EVS_ANY_VERSION;
	if (*expected < 0 && *expected != EVS_ANY_VERSION)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "expected_version %lld is not a version "
		                     "(0 or more) nor EVS_ANY_VERSION: a stream "
		                     "without events has nothing to act on",
		                     (long long)*expected);
	if (store->be->version < 6 || !has_slot)
		return evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                     "this store's backend has no streams %s",
		                     done);
	return 0;
}

int evs_store_delete(int64_t *version_out, evs_store *store,
                     const char *aggregate_id, int64_t expected_version,
                     unsigned int flags, evs_error *err)
{
	const unsigned int known = EVS_DELETE_HARD | EVS_DELETE_REUSE;
	int64_t version = EVS_NO_VERSION;
	int rc;

	evs__error_reset(err);
	if (version_out != NULL)
		*version_out = EVS_NO_VERSION;
	if ((rc = check_lifecycle(store, aggregate_id, &expected_version,
	                          store != NULL && store->be->version >= 6 &&
	                                  store->be->delete_stream != NULL,
	                          "deleted", err)) < 0)
		return rc;
	if ((flags & ~known) != 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "flags 0x%x holds unknown bits", flags);
	if ((flags & EVS_DELETE_REUSE) && !(flags & EVS_DELETE_HARD))
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "EVS_DELETE_REUSE needs EVS_DELETE_HARD");
	rc = store->be->delete_stream(&version, store->be, aggregate_id,
	                              expected_version, flags, err);
	if (rc == 0 && version_out != NULL)
		*version_out = version;
	return rc;
}

int evs_store_undelete(int64_t *version_out, evs_store *store,
                       const char *aggregate_id, int64_t expected_version,
                       evs_error *err)
{
	int64_t version = EVS_NO_VERSION;
	int rc;

	evs__error_reset(err);
	if (version_out != NULL)
		*version_out = EVS_NO_VERSION;
	if ((rc = check_lifecycle(store, aggregate_id, &expected_version,
	                          store != NULL && store->be->version >= 6 &&
	                                  store->be->undelete_stream != NULL,
	                          "deleted", err)) < 0)
		return rc;
	rc = store->be->undelete_stream(&version, store->be, aggregate_id,
	                                expected_version, err);
	if (rc == 0 && version_out != NULL)
		*version_out = version;
	return rc;
}

/* ---- snapshots -------------------------------------------------------- */

/* The snapshot slots, or EVS_EUNSUPPORTED. */
static int check_snapshots(evs_store *store, const char *aggregate_id,
                           evs_error *err)
{
	int rc;

	if ((rc = check_store(store, err)) < 0 ||
	    (rc = evs__check_name("aggregate_id", aggregate_id, err)) < 0)
		return rc;
	if (store->be->version < 6 || store->be->save_snapshot == NULL ||
	    store->be->load_snapshot == NULL ||
	    store->be->list_snapshots == NULL)
		return evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                     "this store's backend keeps no snapshots");
	return 0;
}

/* A kind is the aggregate type's name: empty, or a name. */
static int check_kind(const char *kind, unsigned int format, evs_error *err)
{
	if (kind == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "kind must not be NULL");
	if (kind[0] != '\0') {
		int rc = evs__check_name("kind", kind, err);

		if (rc < 0)
			return rc;
	}
	if (format == 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "format must be 1 or more");
	return 0;
}

int evs_store_save_snapshot(int *stored_out, evs_store *store,
                            const char *aggregate_id, const char *kind,
                            unsigned int format, int64_t version,
                            const char *json, evs_error *err)
{
	const char *why;
	size_t where, len;
	int stored = 0, rc;

	evs__error_reset(err);
	if (stored_out != NULL)
		*stored_out = 0;
	if ((rc = check_snapshots(store, aggregate_id, err)) < 0 ||
	    (rc = check_kind(kind, format, err)) < 0)
		return rc;
	if (version < 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "version %lld is below 0",
		                     (long long)version);
	if (json == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "json must not be NULL");
	len = strlen(json);
	if (evs__json_check(json, len, &where, &why) < 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "json is not valid JSON: %s at byte %zu",
		                     why, where);
	rc = store->be->save_snapshot(&stored, store->be, aggregate_id, kind,
	                              format, version, json, len, err);
	if (rc == 0 && stored_out != NULL)
		*stored_out = stored;
	return rc;
}

/* The backend hands one payload to both callbacks: the events' context
 * first, so that forward() takes it too. */
typedef struct {
	foreach_ctx events;
	evs_snapshot_cb scb;
} snapshot_ctx;

static int forward_snapshot(int64_t version, const char *json, size_t len,
                            void *payload)
{
	snapshot_ctx *ctx = payload;

	return ctx->scb(version, json, len, ctx->events.payload);
}

int evs_store_load_snapshot(evs_store *store, const char *aggregate_id,
                            const char *kind, unsigned int format,
                            evs_snapshot_cb scb, evs_event_cb cb,
                            void *payload, evs_error *err)
{
	snapshot_ctx ctx;
	int rc;

	evs__error_reset(err);
	if ((rc = check_snapshots(store, aggregate_id, err)) < 0 ||
	    (rc = check_kind(kind, format, err)) < 0)
		return rc;
	if (scb == NULL || cb == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s must not be NULL",
		                     scb == NULL ? "scb" : "cb");
	ctx.events.cb = cb;
	ctx.events.payload = payload;
	ctx.scb = scb;
	return store->be->load_snapshot(store->be, aggregate_id, kind, format,
	                                forward_snapshot, forward, &ctx, err);
}

int evs_store_snapshots(evs_store *store, const char *aggregate_id,
                        evs_snapshot_info_cb cb, void *payload,
                        evs_error *err)
{
	int rc;

	evs__error_reset(err);
	if ((rc = check_snapshots(store, aggregate_id, err)) < 0)
		return rc;
	if (cb == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "cb must not be NULL");
	return store->be->list_snapshots(store->be, aggregate_id, cb, payload,
	                                 err);
}

/* ---- truncation and retention ------------------------------------------ */

/* As check_lifecycle(), for the truncation slots, and the flags. */
static int check_retention(evs_store *store, const char *aggregate_id,
                           int64_t *expected, unsigned int flags,
                           evs_error *err)
{
	int rc = check_lifecycle(store, aggregate_id, expected,
	                         store != NULL && store->be->version >= 6 &&
	                                 store->be->truncate != NULL &&
	                                 store->be->set_retention != NULL &&
	                                 store->be->scavenge != NULL,
	                         "truncated", err);

	if (rc == 0 && (flags & ~EVS_TRUNCATE_FORCE) != 0)
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "flags 0x%x holds unknown bits", flags);
	return rc;
}

int evs_store_truncate(evs_store *store, const char *aggregate_id,
                       int64_t expected_version, int64_t before_version,
                       unsigned int flags, evs_error *err)
{
	int rc;

	evs__error_reset(err);
	if ((rc = check_retention(store, aggregate_id, &expected_version,
	                          flags, err)) < 0)
		return rc;
	if (before_version < 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "before_version %lld is below 0",
		                     (long long)before_version);
	return store->be->truncate(store->be, aggregate_id, expected_version,
	                           before_version, flags, err);
}

int evs_store_set_retention(evs_store *store, const char *aggregate_id,
                            int64_t expected_version,
                            const evs_retention *retention,
                            unsigned int flags, evs_error *err)
{
	int rc;

	evs__error_reset(err);
	if ((rc = check_retention(store, aggregate_id, &expected_version,
	                          flags, err)) < 0)
		return rc;
	if (retention == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "retention must not be NULL");
	if (retention->max_count < 0 || retention->max_age_s < 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "retention->%s is below 0",
		                     retention->max_count < 0 ? "max_count"
		                                              : "max_age_s");
	/* Seconds the server's interval can hold, with room to spare. */
	if (retention->max_age_s > (int64_t)1 << 40)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "retention->max_age_s %lld is too large",
		                     (long long)retention->max_age_s);
	return store->be->set_retention(store->be, aggregate_id,
	                                expected_version, retention, flags,
	                                err);
}

int evs_store_scavenge(size_t *removed_out, evs_store *store,
                       size_t max_events, evs_error *err)
{
	size_t removed = 0;
	int rc;

	evs__error_reset(err);
	if (removed_out != NULL)
		*removed_out = 0;
	if ((rc = check_store(store, err)) < 0)
		return rc;
	if (max_events < 1 || max_events > INT32_MAX)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "max_events must be 1 to %d, not %zu",
		                     INT32_MAX, max_events);
	if (store->be->version < 6 || store->be->scavenge == NULL)
		return evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                     "this store's backend cannot scavenge");
	rc = store->be->scavenge(&removed, store->be, max_events, err);
	if (rc == 0 && removed_out != NULL)
		*removed_out = removed;
	return rc;
}
