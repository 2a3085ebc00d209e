/* The repository: loads aggregates by replaying their streams and saves
 * them with an optimistic-concurrency check. */
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/random.h>
#include <time.h>

#include "aggregate_int.h"

struct evs_repo {
	evs_store *store;
	const evs_aggregate_type *type;
	/* Snapshot policy (evs_repo_set_snapshots()): set before the
	 * repository is shared, read-only after. */
	int64_t snapshot_every;
	evs_snapshot_policy_cb snapshot_policy;
	void *snapshot_payload;
	atomic_ulong snapshot_failures;
};

/* Returned by the replay callback to stop the read; never a library code. */
#define REPLAY_STOPPED 1

struct replay {
	evs_aggregate *agg;
	evs_error *err;
	int rc;
	int restore_failed;
};

int evs_repo_new(evs_repo **out, evs_store *store,
                 const evs_aggregate_type *type, evs_error *err)
{
	evs_repo *repo;
	int rc;

	evs__error_reset(err);
	if (out == NULL) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "out must not be NULL");
		goto done;
	}
	*out = NULL;
	if (store == NULL) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "store must not be NULL");
		goto done;
	}
	if ((rc = evs__aggregate_type_check(type, err)) != 0)
		goto done;
	repo = malloc(sizeof(*repo));
	if (repo == NULL) {
		rc = evs__error_nomem(err);
		goto done;
	}
	repo->store = store;
	repo->type = type;
	repo->snapshot_every = 0;
	repo->snapshot_policy = NULL;
	repo->snapshot_payload = NULL;
	atomic_init(&repo->snapshot_failures, 0);
	*out = repo;
	rc = 0;
done:
	return rc;
}

void evs_repo_free(evs_repo *repo)
{
	free(repo);
}

static int replay_one(const evs_event *event, void *payload)
{
	struct replay *r = payload;

	r->rc = evs_aggregate_apply_stored(r->agg, event, r->err);
	return r->rc != 0 ? REPLAY_STOPPED : 0;
}

static int restore_one(int64_t version, const char *json, size_t len,
                       void *payload)
{
	struct replay *r = payload;
	evs_error ignored = EVS_ERROR_INIT;

	/* A snapshot the type cannot read is no reason to fail the load:
	 * the stream says everything the snapshot did. */
	r->restore_failed = evs__aggregate_restore(r->agg, version, json, len,
	                                           &ignored) != 0;
	evs_error_clear(&ignored);
	return r->restore_failed ? REPLAY_STOPPED : 0;
}

static const char *snapshot_kind(const evs_aggregate_type *type)
{
	return type->name != NULL ? type->name : "";
}

/* Loads an aggregate. A stream with no events is EVS_ENOTFOUND, unless
 * create is set: then the new, empty instance is the result. With
 * snapshots, from the newest one of the type's format, in one read; a
 * snapshot that cannot be restored is ignored (a full replay follows). */
static int load(evs_aggregate **out, evs_repo *repo, const char *aggregate_id,
                int create, evs_error *err)
{
	struct replay r = {NULL, NULL, 0, 0};
	int rc = EVS_EUNSUPPORTED, snapshots;

	*out = NULL;
	rc = evs_aggregate_new(&r.agg, repo->type, aggregate_id, err);
	if (rc != 0)
		goto done;
	/* Streamed, so a long history is never held in memory at once. */
	r.err = err;
	snapshots = evs__aggregate_type_snapshots(repo->type);
	if (snapshots) {
		rc = evs_store_load_snapshot(repo->store, aggregate_id,
		                             snapshot_kind(repo->type),
		                             repo->type->snapshot_format,
		                             restore_one, replay_one, &r, err);
		if (rc == EVS_EUNSUPPORTED || (rc != 0 && r.restore_failed)) {
			evs__error_reset(err);
			evs_aggregate_free(r.agg);
			r.agg = NULL;
			r.rc = 0;
			snapshots = 0;
			rc = evs_aggregate_new(&r.agg, repo->type,
			                       aggregate_id, err);
			if (rc != 0)
				goto done;
		}
	}
	if (!snapshots)
		rc = evs_store_foreach(repo->store, aggregate_id,
		                       EVS_NO_VERSION, replay_one, &r, err);
	if (rc == REPLAY_STOPPED && r.rc != 0)
		rc = r.rc;
	if (rc != 0)
		goto done;
	if (evs_aggregate_version(r.agg) == EVS_NO_VERSION && !create) {
		rc = evs_error_set(err, EVS_ENOTFOUND, NULL,
		                   "aggregate \"%s\" not found", aggregate_id);
		goto done;
	}
	*out = r.agg;
	r.agg = NULL;
done:
	evs_aggregate_free(r.agg);
	return rc;
}

int evs_repo_load(evs_aggregate **out, evs_repo *repo,
                  const char *aggregate_id, evs_error *err)
{
	int rc;

	evs__error_reset(err);
	if (out == NULL || repo == NULL) {
		if (out != NULL)
			*out = NULL;
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "%s must not be NULL",
		                   out == NULL ? "out" : "repository");
		goto done;
	}
	rc = load(out, repo, aggregate_id, 0, err);
done:
	return rc;
}

/* After a save: a snapshot, when the policy asks for one. In its own
 * statement, after the append; whatever happens to it, the save stands
 * (a failure is only counted: evs_repo_snapshot_failures()). */
static void maybe_snapshot(evs_repo *repo, evs_aggregate *agg)
{
	int64_t last = evs__aggregate_snapshot_version(agg);
	int64_t version = evs_aggregate_version(agg);
	evs_error err = EVS_ERROR_INIT;
	char *json = NULL;
	int want = 0;

	if (!evs__aggregate_type_snapshots(repo->type))
		return;
	if (repo->snapshot_every > 0 &&
	    version - (last < 0 ? -1 : last) >= repo->snapshot_every)
		want = 1;
	if (!want && repo->snapshot_policy != NULL)
		want = repo->snapshot_policy(agg, last,
		                             repo->snapshot_payload) != 0;
	if (!want)
		return;
	if (evs__aggregate_snapshot_json(&json, agg, &err) == 0 &&
	    evs_store_save_snapshot(NULL, repo->store, evs_aggregate_id(agg),
	                            snapshot_kind(repo->type),
	                            repo->type->snapshot_format, version, json,
	                            &err) == 0)
		evs__aggregate_set_snapshot_version(agg, version);
	else
		atomic_fetch_add(&repo->snapshot_failures, 1);
	free(json);
	evs_error_clear(&err);
}

int evs_repo_set_snapshots(evs_repo *repo, int64_t every,
                           evs_snapshot_policy_cb policy, void *payload,
                           evs_error *err)
{
	evs__error_reset(err);
	if (repo == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "repository must not be NULL");
	if (!evs__aggregate_type_snapshots(repo->type))
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "aggregate type \"%s\" takes no snapshots "
		                     "(version 2, with snapshot_format, "
		                     "snapshot and restore)",
		                     evs__aggregate_type_name(repo->type));
	if (every < 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "every must be 0 or more, not %lld",
		                     (long long)every);
	repo->snapshot_every = every;
	repo->snapshot_policy = policy;
	repo->snapshot_payload = payload;
	return 0;
}

unsigned long evs_repo_snapshot_failures(const evs_repo *repo)
{
	return repo != NULL ? atomic_load(&repo->snapshot_failures) : 0;
}

int evs_repo_save(evs_repo *repo, evs_aggregate *agg, evs_error *err)
{
	size_t n;
	int rc;

	evs__error_reset(err);
	if (repo == NULL || agg == NULL) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "%s must not be NULL",
		                   repo == NULL ? "repository" : "aggregate");
		goto done;
	}
	if (evs_aggregate_type_of(agg) != repo->type) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "aggregate \"%s\" is not of the "
		                   "repository's type \"%s\"",
		                   evs_aggregate_id(agg),
		                   evs__aggregate_type_name(repo->type));
		goto done;
	}
	n = evs_aggregate_pending_count(agg);
	if (n == 0) {
		rc = 0;
		goto done;
	}
	rc = evs_store_append(NULL, repo->store, evs_aggregate_id(agg),
	                      evs_aggregate_version(agg),
	                      evs_aggregate_pending(agg), n, err);
	if (rc != 0)
		goto done;
	evs__aggregate_mark_saved(agg);
	maybe_snapshot(repo, agg);
done:
	return rc;
}

/* Runs the decide callback, always with an error record, and makes sure a
 * negative return it did not describe still has a message. */
static int run_decide(evs_decide_cb decide, evs_aggregate *agg,
                      void *payload, evs_error *err)
{
	evs_error local = EVS_ERROR_INIT;
	evs_error *e = err != NULL ? err : &local;
	int rc;

	rc = decide(agg, payload, e);
	if (rc < 0 && e->code == 0)
		evs_error_set(e, rc, NULL,
		              "decide callback failed for aggregate \"%s\"",
		              evs_aggregate_id(agg));
	else if (rc == 0 && e->code != 0)
		evs__error_reset(e);
	evs_error_clear(&local);
	return rc;
}

/* After the n-th conflict, waits a random time up to 2^(n-1) ms, at most
 * 64 ms ("full jitter"): writers that collided spread out instead of
 * colliding again, which matters more than the wait. */
static void backoff(int attempt)
{
	unsigned int r = 0;
	long cap_us = 1000L << (attempt - 1 < 6 ? attempt - 1 : 6);
	struct timespec ts;
	long us;

	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = (unsigned int)evs__now_us();
	us = (long)(r % (unsigned long)(cap_us + 1));
	ts.tv_sec = us / 1000000;
	ts.tv_nsec = (us % 1000000) * 1000;
	nanosleep(&ts, NULL);
}

int evs_repo_update(evs_aggregate **out, evs_repo *repo,
                    const char *aggregate_id, unsigned int flags,
                    int max_attempts, evs_decide_cb decide, void *payload,
                    evs_error *err)
{
	evs_aggregate *agg = NULL;
	int attempt;
	int rc;

	if (out != NULL)
		*out = NULL;
	evs__error_reset(err);
	if (repo == NULL || decide == NULL) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "%s must not be NULL",
		                   repo == NULL ? "repository" : "decide");
		goto done;
	}
	if (max_attempts < 1) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "max_attempts must be 1 or more, not %d",
		                   max_attempts);
		goto done;
	}
	if ((flags & ~EVS_REPO_CREATE) != 0) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "unknown flags 0x%x",
		                   flags & ~EVS_REPO_CREATE);
		goto done;
	}
	for (attempt = 1;; attempt++) {
		rc = load(&agg, repo, aggregate_id,
		          (flags & EVS_REPO_CREATE) != 0, err);
		if (rc != 0)
			goto done;
		if ((rc = run_decide(decide, agg, payload, err)) != 0)
			goto done;
		rc = evs_repo_save(repo, agg, err);
		/* On the last attempt, err keeps that conflict's details. */
		if (rc != EVS_ECONFLICT || attempt >= max_attempts)
			break;
		evs_aggregate_free(agg);
		agg = NULL;
		backoff(attempt);
	}
	if (rc != 0)
		goto done;
	if (out != NULL) {
		*out = agg;
		agg = NULL;
	}
done:
	evs_aggregate_free(agg);
	return rc;
}
