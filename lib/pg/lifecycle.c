/* Deleting and undeleting streams: one call of the schema's
 * delete_stream() or undelete_stream() (sql/0007), which lock the
 * stream's row, check the expected version, log the change, and append
 * the markers, in one transaction. And storing and listing snapshots
 * (store_snapshot(), the snapshots table); loading from one is a read
 * (read.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pg_int.h"

/* The status column of delete_stream() and undelete_stream(). */
enum {
	LC_DONE = 0,
	LC_CONFLICT = 2,
	LC_NOT_DELETED = 3,
	LC_DELETED = 4,
	LC_NO_STREAM = 5,
	LC_OUT_OF_RANGE = 6, /* truncate_stream(), set_retention() */
	LC_NO_SNAPSHOT = 7
};

/* Which call: for messages. */
enum { OP_DELETE, OP_UNDELETE, OP_TRUNCATE, OP_RETENTION };

static int lifecycle_call(int64_t *version_out, pg_backend *pb,
                          const char *stmt, int n_params,
                          const char *const *params, const char *id,
                          int64_t expected, int op, evs_error *err)
{
	static const char *const whats[] = {
		"could not delete the stream", "could not undelete the stream",
		"could not truncate the stream",
		"could not set the stream's retention"};
	const char *what = whats[op];
	int undelete = op == OP_UNDELETE;
	PGresult *res = NULL;
	pg_slot *slot;
	int64_t version;
	int rc, status;

	if ((rc = evs__pg_acquire(&slot, pb, err)) < 0)
		return rc;
	rc = evs__pg_exec(&res, pb, slot, stmt, NULL, n_params, params,
	                  evs__pg_deadline(pb->call_timeout_ms), what, err);
	if (rc < 0)
		goto out;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		rc = evs__pg_error(err, slot->conn, res, what);
		goto out;
	}
	status = atoi(PQgetvalue(res, 0, 0));
	version = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
	switch (status) {
	case LC_DONE:
		*version_out = version;
		break;
	case LC_CONFLICT:
		rc = evs_error_set_conflict(err, id, expected, version);
		break;
	case LC_NOT_DELETED:
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "aggregate \"%s\" is not deleted", id);
		break;
	case LC_DELETED:
		rc = undelete ? evs__error_set_hard_deleted(err, id, expected,
		                                            version)
		              : evs_error_set_deleted(err, id, expected,
		                                      version);
		break;
	case LC_NO_STREAM:
		rc = evs_error_set(err, EVS_ENOTFOUND, NULL,
		                   "aggregate \"%s\" has no events", id);
		break;
	case LC_OUT_OF_RANGE:
		rc = op == OP_TRUNCATE
		             ? evs_error_set(err, EVS_EINVALID, NULL,
		                             "%s: version %s is past the end of "
		                             "aggregate \"%s\", or below where "
		                             "it is truncated already (%lld)",
		                             what, params[2], id,
		                             (long long)version)
		             : evs_error_set(err, EVS_EINVALID, NULL,
		                             "%s: a limit is below 0", what);
		break;
	case LC_NO_SNAPSHOT:
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "%s: no snapshot of aggregate \"%s\" covers "
		                   "the cut (an aggregate could not be rebuilt); "
		                   "save one first, or force it",
		                   what, id);
		break;
	default:
		rc = evs_error_set(err, EVS_EDB, NULL,
		                   "%s: the server replied with status %d", what,
		                   status);
		break;
	}
out:
	PQclear(res);
	evs__pg_release(pb, slot);
	return rc;
}

int evs__pg_delete(int64_t *version_out, evs_backend *be, const char *id,
                   int64_t expected, unsigned int flags, evs_error *err)
{
	char expected_text[24];
	const char *params[4];

	snprintf(expected_text, sizeof(expected_text), "%lld",
	         (long long)expected);
	params[0] = id;
	params[1] = expected_text;
	params[2] = (flags & EVS_DELETE_HARD) ? "t" : "f";
	params[3] = (flags & EVS_DELETE_REUSE) ? "t" : "f";
	return lifecycle_call(version_out, (pg_backend *)be, PG_DELETE, 4,
	                      params, id, expected, OP_DELETE, err);
}

int evs__pg_undelete(int64_t *version_out, evs_backend *be, const char *id,
                     int64_t expected, evs_error *err)
{
	char expected_text[24];
	const char *params[2];

	snprintf(expected_text, sizeof(expected_text), "%lld",
	         (long long)expected);
	params[0] = id;
	params[1] = expected_text;
	return lifecycle_call(version_out, (pg_backend *)be, PG_UNDELETE, 2,
	                      params, id, expected, OP_UNDELETE, err);
}

/* ---- truncation, retention, scavenge ------------------------------------- */

int evs__pg_truncate(evs_backend *be, const char *id, int64_t expected,
                     int64_t before, unsigned int flags, evs_error *err)
{
	char expected_text[24], before_text[24];
	const char *params[4];
	int64_t version;

	snprintf(expected_text, sizeof(expected_text), "%lld",
	         (long long)expected);
	snprintf(before_text, sizeof(before_text), "%lld", (long long)before);
	params[0] = id;
	params[1] = expected_text;
	params[2] = before_text;
	params[3] = (flags & EVS_TRUNCATE_FORCE) ? "t" : "f";
	return lifecycle_call(&version, (pg_backend *)be, PG_TRUNCATE, 4,
	                      params, id, expected, OP_TRUNCATE, err);
}

int evs__pg_set_retention(evs_backend *be, const char *id, int64_t expected,
                          const evs_retention *r, unsigned int flags,
                          evs_error *err)
{
	char expected_text[24], count_text[24], age_text[40];
	const char *params[5];
	int64_t version;

	snprintf(expected_text, sizeof(expected_text), "%lld",
	         (long long)expected);
	snprintf(count_text, sizeof(count_text), "%lld",
	         (long long)r->max_count);
	snprintf(age_text, sizeof(age_text), "%lld seconds",
	         (long long)r->max_age_s);
	params[0] = id;
	params[1] = expected_text;
	params[2] = count_text;
	params[3] = age_text;
	params[4] = (flags & EVS_TRUNCATE_FORCE) ? "t" : "f";
	return lifecycle_call(&version, (pg_backend *)be, PG_RETENTION, 5,
	                      params, id, expected, OP_RETENTION, err);
}

int evs__pg_scavenge(size_t *removed, evs_backend *be, size_t max_events,
                     evs_error *err)
{
	static const char what[] = "could not scavenge";
	pg_backend *pb = (pg_backend *)be;
	char max_text[24];
	const char *params[1] = {max_text};
	PGresult *res = NULL;
	pg_slot *slot;
	int rc;

	*removed = 0;
	snprintf(max_text, sizeof(max_text), "%zu", max_events);
	if ((rc = evs__pg_acquire(&slot, pb, err)) < 0)
		return rc;
	rc = evs__pg_exec(&res, pb, slot, PG_SCAVENGE, NULL, 1, params,
	                  evs__pg_deadline(pb->call_timeout_ms), what, err);
	if (rc == 0) {
		if (PQresultStatus(res) != PGRES_TUPLES_OK ||
		    PQntuples(res) != 1)
			rc = evs__pg_error(err, slot->conn, res, what);
		else
			*removed = (size_t)strtoull(PQgetvalue(res, 0, 0), NULL,
			                            10);
	}
	PQclear(res);
	evs__pg_release(pb, slot);
	return rc;
}

/* ---- snapshots (loading is a read: read.c) -------------------------------- */

/* The result of store_snapshot(). */
enum { SNAP_STORED = 0, SNAP_OLDER = 1, SNAP_NO_VERSION = 2, SNAP_DELETED = 3 };

int evs__pg_save_snapshot(int *stored, evs_backend *be, const char *id,
                          const char *kind, unsigned int format,
                          int64_t version, const char *json, size_t len,
                          evs_error *err)
{
	static const char what[] = "could not store the snapshot";
	pg_backend *pb = (pg_backend *)be;
	char format_text[16], version_text[24];
	const char *params[5];
	PGresult *res = NULL;
	pg_slot *slot;
	int rc;

	(void)len;
	*stored = 0;
	snprintf(format_text, sizeof(format_text), "%u", format);
	snprintf(version_text, sizeof(version_text), "%lld", (long long)version);
	params[0] = id;
	params[1] = kind;
	params[2] = format_text;
	params[3] = version_text;
	params[4] = json;
	if ((rc = evs__pg_acquire(&slot, pb, err)) < 0)
		return rc;
	rc = evs__pg_exec(&res, pb, slot, PG_SNAP_SAVE, NULL, 5, params,
	                  evs__pg_deadline(pb->call_timeout_ms), what, err);
	if (rc < 0)
		goto out;
	if (PQresultStatus(res) != PGRES_TUPLES_OK || PQntuples(res) != 1) {
		rc = evs__pg_error(err, slot->conn, res, what);
		goto out;
	}
	switch (atoi(PQgetvalue(res, 0, 0))) {
	case SNAP_STORED:
		*stored = 1;
		break;
	case SNAP_OLDER:
		break;
	case SNAP_NO_VERSION:
		rc = evs_error_set(err, EVS_ENOTFOUND, NULL,
		                   "aggregate \"%s\" has no version %lld", id,
		                   (long long)version);
		break;
	case SNAP_DELETED:
		rc = evs_error_set_deleted(err, id, EVS_ANY_VERSION,
		                           EVS_NO_VERSION);
		break;
	default:
		rc = evs_error_set(err, EVS_EDB, NULL,
		                   "%s: the server replied %s", what,
		                   PQgetvalue(res, 0, 0));
		break;
	}
out:
	PQclear(res);
	evs__pg_release(pb, slot);
	return rc;
}

int evs__pg_list_snapshots(evs_backend *be, const char *id,
                           evs_snapshot_info_cb cb, void *payload,
                           evs_error *err)
{
	static const char what[] = "could not list the snapshots";
	pg_backend *pb = (pg_backend *)be;
	const char *params[1] = {id};
	PGresult *res = NULL;
	pg_slot *slot;
	int rc, i;

	if ((rc = evs__pg_acquire(&slot, pb, err)) < 0)
		return rc;
	rc = evs__pg_exec(&res, pb, slot, PG_SNAP_LIST, NULL, 1, params,
	                  evs__pg_deadline(pb->call_timeout_ms), what, err);
	if (rc == 0 && PQresultStatus(res) != PGRES_TUPLES_OK)
		rc = evs__pg_error(err, slot->conn, res, what);
	/* The rows are few: hand them out with the connection back. */
	evs__pg_release(pb, slot);
	for (i = 0; rc == 0 && i < PQntuples(res); i++) {
		evs_snapshot_info info;

		info.aggregate_id = id;
		info.kind = PQgetvalue(res, i, 0);
		info.format = (unsigned int)strtoul(PQgetvalue(res, i, 1),
		                                    NULL, 10);
		info.version = strtoll(PQgetvalue(res, i, 2), NULL, 10);
		info.taken_at = strtoll(PQgetvalue(res, i, 3), NULL, 10);
		info.bytes = (size_t)strtoull(PQgetvalue(res, i, 4), NULL, 10);
		rc = cb(&info, payload);
	}
	PQclear(res);
	return rc;
}
