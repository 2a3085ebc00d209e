/* Deleting and undeleting streams: one call of the schema's
 * delete_stream() or undelete_stream() (sql/0007), which lock the
 * stream's row, check the expected version, log the change, and append
 * the markers, in one transaction. */
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
	LC_NO_STREAM = 5
};

static int lifecycle_call(int64_t *version_out, pg_backend *pb,
                          const char *stmt, int n_params,
                          const char *const *params, const char *id,
                          int64_t expected, int undelete, evs_error *err)
{
	const char *what = undelete ? "could not undelete the stream"
	                            : "could not delete the stream";
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
	                      params, id, expected, 0, err);
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
	                      params, id, expected, 1, err);
}
