/* evstore/repository.h: load aggregates by replay, save them with a check. */
#ifndef EVSTORE_REPOSITORY_H
#define EVSTORE_REPOSITORY_H

#include "aggregate.h"
#include "common.h"
#include "error.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * A repository: one aggregate type kept in one store. It holds no state
 * besides those two pointers, so it is safe to share between threads
 * exactly as its store is; the aggregates it hands out are not.
 */
typedef struct evs_repo evs_repo;

/**
 * @param[out] out  yours: free with evs_repo_free(); NULL on failure
 * @param store     borrowed: must outlive the repository
 * @param type      borrowed: must outlive the repository
 * @return 0, EVS_EINVALID, EVS_EUNSUPPORTED (type version), or EVS_ENOMEM
 */
EVS_EXTERN(int) evs_repo_new(evs_repo **out, evs_store *store,
                             const evs_aggregate_type *type, evs_error *err);

/** Frees a repository (not its store). NULL is fine. */
EVS_EXTERN(void) evs_repo_free(evs_repo *repo);

/**
 * Says whether the repository writes a snapshot after a save (for a type
 * with snapshots: see evs_aggregate_type.snapshot_format): when the
 * aggregate moved @p every versions or more past its last snapshot (0:
 * never by count), or when @p policy (may be NULL) returns non-zero. The
 * snapshot is written after the append, in a statement of its own; a
 * failure to take or store it never fails the save (it is counted:
 * evs_repo_snapshot_failures()). Call it before the repository is shared
 * between threads.
 * @param policy   called after each save that stored events, with the
 *                 saved aggregate and the version of its last snapshot
 *                 (EVS_NO_VERSION: none); not called when @p every
 *                 already asked for one
 * @return 0, or EVS_EINVALID (a type without snapshots, every below 0)
 */
typedef int (*evs_snapshot_policy_cb)(const evs_aggregate *agg,
                                      int64_t last_snapshot_version,
                                      void *payload);
EVS_EXTERN(int) evs_repo_set_snapshots(evs_repo *repo, int64_t every,
                                       evs_snapshot_policy_cb policy,
                                       void *payload, evs_error *err);

/** Snapshots the repository failed to take or store since it was made. */
EVS_EXTERN(unsigned long) evs_repo_snapshot_failures(const evs_repo *repo);

/**
 * Loads an aggregate: a new, empty instance with every stored event
 * replayed through the type's apply, at the version of the last one.
 * For a type with snapshots: from the newest snapshot of its format (its
 * restore()), then the events after it, in one read (one statement on
 * PostgreSQL when they fit a page); a snapshot that restore() refuses is
 * ignored and the whole stream replayed.
 * @param[out] out      yours: free with evs_aggregate_free(); NULL on failure
 * @param aggregate_id  borrowed for the call
 * @return 0, EVS_ENOTFOUND (the aggregate has no events), EVS_EINVALID,
 *         what the type's create or apply returned, or a store error
 */
EVS_EXTERN(int) evs_repo_load(evs_aggregate **out, evs_repo *repo,
                              const char *aggregate_id, evs_error *err);

/**
 * Saves an aggregate: appends its queued events with its version as the
 * expected version. On success the version moves on by the number saved
 * and the queue is emptied; on any failure (EVS_ECONFLICT with the
 * details included) the aggregate and its queue are left as they were.
 * Saving with an empty queue does nothing and succeeds.
 * @param agg  borrowed; must be of the repository's type
 * @return 0, EVS_ECONFLICT, EVS_EDUPLICATE, EVS_EINVALID, or a store error
 */
EVS_EXTERN(int) evs_repo_save(evs_repo *repo, evs_aggregate *agg,
                              evs_error *err);

/**
 * The "decide" step of evs_repo_update(): inspect the aggregate's state
 * and raise the events that the command produces (or none).
 * @param agg      borrowed: freshly loaded for this attempt
 * @param payload  what was passed to evs_repo_update()
 * @param err      never NULL; fill it when returning a negative code
 * @return 0 to save what was raised; any other value stops without saving
 *         and evs_repo_update() returns it (a domain rule that refuses the
 *         command returns a positive value of its own, for example)
 */
typedef int (*evs_decide_cb)(evs_aggregate *agg, void *payload,
                             evs_error *err);

/** evs_repo_update() flag: a missing aggregate starts empty. */
#define EVS_REPO_CREATE 1u

/**
 * Runs load, decide, save, and on EVS_ECONFLICT starts again with a fresh
 * load, up to @p max_attempts times in all. The decide callback may thus
 * run several times and must not have effects besides raising events.
 * Before the n-th retry it waits a random time of up to 2^(n-1) ms (at
 * most 64 ms), so that writers who collided spread out.
 * @param[out] out      may be NULL; else yours on success (the saved
 *                      aggregate, free with evs_aggregate_free()), NULL
 *                      on failure
 * @param aggregate_id  borrowed for the call
 * @param flags         EVS_REPO_CREATE, or 0 (then a missing aggregate is
 *                      EVS_ENOTFOUND)
 * @param max_attempts  1 or more
 * @return 0, the decide callback's non-zero value, EVS_ECONFLICT (still
 *         conflicting after max_attempts; err has the last one's details),
 *         EVS_ENOTFOUND, EVS_EDUPLICATE, EVS_EINVALID, what the type's
 *         create or apply returned, or a store error
 */
EVS_EXTERN(int) evs_repo_update(evs_aggregate **out, evs_repo *repo,
                                const char *aggregate_id, unsigned int flags,
                                int max_attempts, evs_decide_cb decide,
                                void *payload, evs_error *err);

#ifdef __cplusplus
}
#endif
#endif
