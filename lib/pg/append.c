/* Appends. At an exact version, when the role may (README, "Least
 * privilege"; probed at open), one compare-and-set statement; otherwise,
 * and whenever that statement matches nothing, a call of the schema's
 * append_events function, which is the authority: it tells a conflict
 * (with the true version) from an idempotent replay. Restores
 * (EVS_APPEND_KEEP_TIME) call import_events. Every path sets the
 * stream's order key under its row lock (sql/0002). */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_int.h"
#include "pg_int.h"

/* The status column of append_events() and import_events(). */
enum {
	STATUS_APPENDED = 0,
	STATUS_REPLAY = 1,
	STATUS_CONFLICT = 2,
	STATUS_DELETED = 4 /* sql/0007 */
};

/* ---- text-format arrays ---------------------------------------------------- */

typedef struct {
	char *p;
	size_t len, cap;
} sbuf;

static int sb_reserve(sbuf *b, size_t more)
{
	size_t cap;
	char *p;

	if (b->len + more + 1 <= b->cap)
		return 0;
	for (cap = b->cap ? b->cap : 256; cap < b->len + more + 1; cap *= 2)
		;
	p = realloc(b->p, cap);
	if (p == NULL)
		return -1;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int sb_add(sbuf *b, const char *s, size_t n)
{
	if (sb_reserve(b, n) < 0)
		return -1;
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
	return 0;
}

/* Appends one quoted element of a text-format array literal: inside
 * double quotes only '"' and '\' need a backslash. */
static int sb_add_array_elem(sbuf *b, const char *s, size_t n)
{
	size_t i;
	char *q;

	if (sb_reserve(b, 2 * n + 3) < 0)
		return -1;
	q = b->p + b->len;
	*q++ = '"';
	for (i = 0; i < n; i++) {
		if (s[i] == '"' || s[i] == '\\')
			*q++ = '\\';
		*q++ = s[i];
	}
	*q++ = '"';
	*q = '\0';
	b->len = (size_t)(q - b->p);
	return 0;
}

/* Microseconds since 1970 as "YYYY-MM-DD HH:MM:SS.ffffff+00", with " BC"
 * for years before 1 (proleptic Gregorian, as PostgreSQL). */
static void format_utc(char *out, size_t size, int64_t us)
{
	int64_t secs = us / 1000000, frac = us % 1000000, days, sod;
	int64_t z, era, doe, yoe, y, doy, mp, d, m;

	if (frac < 0) {
		frac += 1000000;
		secs--;
	}
	days = secs / 86400;
	sod = secs % 86400;
	if (sod < 0) {
		sod += 86400;
		days--;
	}
	/* days from civil, inverted (H. Hinnant's algorithm). */
	z = days + 719468;
	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	y = yoe + era * 400;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	d = doy - (153 * mp + 2) / 5 + 1;
	m = mp < 10 ? mp + 3 : mp - 9;
	if (m <= 2)
		y++;
	snprintf(out, size, "%04lld-%02lld-%02lld %02lld:%02lld:%02lld.%06lld+00%s",
	         (long long)(y <= 0 ? 1 - y : y), (long long)m, (long long)d,
	         (long long)(sod / 3600), (long long)(sod / 60 % 60),
	         (long long)(sod % 60), (long long)frac, y <= 0 ? " BC" : "");
}

/* Adds events to the text arrays of the append statements (ids, types,
 * data, metadata and, with times, recorded_at), after `had` elements
 * already there. The arrays are opened by the first call (had 0) and
 * closed by encode_close(). */
static int encode_events(sbuf arrays[5], evs_event *const *events, size_t n,
                         int times, size_t had)
{
	size_t i, k = times ? 5 : 4;
	int bad = 0;

	for (i = 0; i < k && !bad && had == 0; i++)
		bad = sb_add(&arrays[i], "{", 1);
	for (i = 0; i < n && !bad; i++) {
		const evs_event *ev = events[i];
		char id[EVS_UUID_STRLEN + 1], when[64];
		const char *sep = i + had ? "," : "";
		size_t s = i + had ? 1 : 0;

		evs_uuid_format(id, &ev->id);
		bad = sb_add(&arrays[0], sep, s) ||
		      sb_add(&arrays[0], id, EVS_UUID_STRLEN) ||
		      sb_add(&arrays[1], sep, s) ||
		      sb_add_array_elem(&arrays[1], ev->type,
		                        strlen(ev->type)) ||
		      sb_add(&arrays[2], sep, s) ||
		      sb_add_array_elem(&arrays[2], ev->data, ev->data_len) ||
		      sb_add(&arrays[3], sep, s) ||
		      (ev->metadata == NULL
		               ? sb_add(&arrays[3], "NULL", 4)
		               : sb_add_array_elem(&arrays[3], ev->metadata,
		                                   ev->metadata_len));
		if (!bad && times) {
			format_utc(when, sizeof(when), ev->recorded_at);
			bad = sb_add(&arrays[4], sep, s) ||
			      sb_add_array_elem(&arrays[4], when, strlen(when));
		}
	}
	return bad ? -1 : 0;
}

static int encode_close(sbuf *arrays, size_t k)
{
	size_t i;

	for (i = 0; i < k; i++)
		if (sb_add(&arrays[i], "}", 1) < 0)
			return -1;
	return 0;
}

/* The batch as the text arrays of the single-append statements. */
static int encode_batch(sbuf arrays[5], evs_event *const *events, size_t n,
                        int times)
{
	if (encode_events(arrays, events, n, times, 0) < 0)
		return -1;
	return encode_close(arrays, times ? 5 : 4);
}

int evs__pg_encode_events(char *out[4], evs_event *const *events, size_t n)
{
	sbuf arrays[5];
	int i;

	memset(arrays, 0, sizeof(arrays));
	if (encode_batch(arrays, events, n, 0) < 0) {
		for (i = 0; i < 5; i++)
			free(arrays[i].p);
		return EVS_ENOMEM;
	}
	for (i = 0; i < 4; i++)
		out[i] = arrays[i].p;
	return 0;
}

/* ---- replies ------------------------------------------------------------------ */

/* A unique violation on the event-id key: say which id and where. */
static int report_duplicate(pg_backend *pb, pg_slot *slot, const char *id,
                            const char *ids, int64_t deadline,
                            evs_error *err)
{
	const char *params[2] = {id, ids};
	PGresult *res;
	int rc = evs__pg_exec(&res, pb, slot, PG_FIND_IDS, NULL, 2, params,
	                      deadline, "could not find the duplicate event id",
	                      err);

	if (rc < 0)
		return rc;
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1)
		evs_error_set(err, EVS_EDUPLICATE, "23505",
		              "event id %s is already stored in aggregate \"%s\" "
		              "at version %s",
		              PQgetvalue(res, 0, 0), id, PQgetvalue(res, 0, 1));
	else
		evs_error_set(err, EVS_EDUPLICATE, "23505",
		              "an event id of the batch is already stored in "
		              "aggregate \"%s\"", id);
	evs__error_set_aggregate(err, id);
	PQclear(res);
	return EVS_EDUPLICATE;
}

static int has_state(const PGresult *res, const char *state,
                     const char *constraint)
{
	const char *s = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	const char *c = PQresultErrorField(res, PG_DIAG_CONSTRAINT_NAME);

	return s != NULL && strcmp(s, state) == 0 &&
	       (constraint == NULL || (c != NULL && strcmp(c, constraint) == 0));
}

/* ---- append ------------------------------------------------------------------- */

int evs__pg_append_alone(evs_append_result *out, pg_backend *pb,
                         const char *id, int64_t expected,
                         evs_event *const *events, size_t n,
                         unsigned int flags, evs_error *err)
{
	int times = (flags & EVS_APPEND_KEEP_TIME) != 0;
	const char *fn = times ? PG_IMPORT : PG_APPEND;
	sbuf arrays[5];
	char expected_text[24];
	const char *params[7];
	PGresult *res = NULL;
	pg_slot *slot;
	int64_t deadline;
	int rc, i, retried = 0;

	memset(arrays, 0, sizeof(arrays));
	out->replayed = 0;
	if (encode_batch(arrays, events, n, times) < 0) {
		rc = evs__error_nomem(err);
		goto out;
	}
	snprintf(expected_text, sizeof(expected_text), "%lld",
	         (long long)expected);
	params[0] = id;
	params[1] = expected_text;
	for (i = 0; i < 5; i++)
		params[2 + i] = arrays[i].p;
	if ((rc = evs__pg_acquire(&slot, pb, err)) < 0)
		goto out;
	deadline = evs__pg_deadline(pb->call_timeout_ms);
	if (!times && expected >= 0 && atomic_load(&pb->one_statement)) {
		/* The common case in one statement. No row back means the
		 * version did not match (or the stream is new, or its order
		 * key is ahead of this transaction): the function then says
		 * exactly what happened, or appends. */
		rc = evs__pg_exec(&res, pb, slot, PG_APPEND_CAS, NULL, 6,
		                  params, deadline, "could not append events",
		                  err);
		if (rc < 0)
			goto done;
		if (PQresultStatus(res) == PGRES_TUPLES_OK &&
		    PQntuples(res) == 1) {
			out->version = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
			goto done;
		}
		if (PQresultStatus(res) == PGRES_TUPLES_OK ||
		    has_state(res, "42501", NULL)) {
			/* No row, or a privilege revoked since the store was
			 * opened (then the function only, from now on). */
			if (PQresultStatus(res) != PGRES_TUPLES_OK)
				atomic_store(&pb->one_statement, 0);
			PQclear(res);
			res = NULL;
		}
	}
again:
	if (res == NULL) {
		rc = evs__pg_exec(&res, pb, slot, fn, NULL, times ? 7 : 6,
		                  params, deadline, "could not append events",
		                  err);
		if (rc < 0)
			goto done;
	}
	if (PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1) {
		int status = atoi(PQgetvalue(res, 0, 0));
		int64_t version = strtoll(PQgetvalue(res, 0, 1), NULL, 10);

		if (status == STATUS_CONFLICT) {
			rc = evs_error_set_conflict(err, id, expected, version);
		} else if (status == STATUS_DELETED) {
			rc = evs_error_set_deleted(err, id, expected, version);
		} else {
			out->version = version;
			out->replayed = status == STATUS_REPLAY;
		}
	} else if (has_state(res, "23505", "events_event_id_key") &&
	           !retried) {
		/* An event id of the batch is stored. Either it is a genuine
		 * duplicate, or this is a retry that raced its original: the
		 * original committed while this call waited for the stream's
		 * row lock, past the function's replay check. Asking again,
		 * in a fresh statement, tells them apart: a replay now
		 * finds the original's events. */
		PQclear(res);
		res = NULL;
		retried = 1;
		goto again;
	} else if (has_state(res, "23505", "events_event_id_key")) {
		rc = report_duplicate(pb, slot, id, arrays[0].p, deadline, err);
	} else if (has_state(res, "23505", "events_pkey")) {
		/* The key is the last line of defence: report the true
		 * version, as for any conflict. */
		int64_t actual;

		rc = evs__pg_head_on(&actual, NULL, pb, slot, id, deadline,
		                     err);
		if (rc == 0 || rc == EVS_ENOTFOUND)
			rc = evs_error_set_conflict(err, id, expected, actual);
	} else {
		rc = evs__pg_error(err, slot->conn, res,
		                   "could not append events");
	}
done:
	PQclear(res);
	evs__pg_release(pb, slot);
out:
	for (i = 0; i < 5; i++)
		free(arrays[i].p);
	return rc;
}

int evs__pg_append_ext(evs_append_result *out, evs_backend *be,
                       const char *id, int64_t expected,
                       evs_event *const *events, size_t n,
                       unsigned int flags, evs_error *err)
{
	pg_backend *pb = (pg_backend *)be;

	if (flags == 0 && pb->lanes != NULL)
		return evs__pg_group_append(out, pb, id, expected, events, n,
		                            err);
	return evs__pg_append_alone(out, pb, id, expected, events, n, flags,
	                            err);
}

int evs__pg_append(int64_t *version_out, evs_backend *be, const char *id,
                   int64_t expected, evs_event *const *events, size_t n,
                   evs_error *err)
{
	evs_append_result res;
	int rc = evs__pg_append_ext(&res, be, id, expected, events, n, 0, err);

	if (rc == 0)
		*version_out = res.version;
	return rc;
}

/* ---- several appends in one call -------------------------------------------- */

/* The status column of append_many() and import_many(). */
enum {
	MANY_APPENDED = 0,
	MANY_REPLAY = 1,
	MANY_CONFLICT = 2,
	MANY_DUPLICATE = 3,
	MANY_DELETED = 4,
	MANY_NOT_STORED = 9
};

/* Builds the nine (append_many) or nine (import_many) parameters of a
 * call. arrays[0..4] are the events' arrays, arrays[5..7] the stream ids,
 * expected versions and counts. */
static int encode_many(sbuf arrays[8], const evs_append_req *reqs, size_t n,
                       int times)
{
	size_t i, had = 0;
	int bad = 0;

	for (i = 0; i < n && !bad; i++) {
		const evs_append_req *r = &reqs[i];
		char num[48];
		const char *sep = i ? "," : "{";

		bad = encode_events(arrays, r->events, r->n_events, times,
		                    had) < 0 ||
		      sb_add(&arrays[5], sep, 1) ||
		      sb_add_array_elem(&arrays[5], r->aggregate_id,
		                        strlen(r->aggregate_id));
		had += r->n_events;
		snprintf(num, sizeof(num), "%s%lld", sep,
		         (long long)r->expected_version);
		bad = bad || sb_add(&arrays[6], num, strlen(num));
		snprintf(num, sizeof(num), "%s%zu", sep, r->n_events);
		bad = bad || sb_add(&arrays[7], num, strlen(num));
	}
	if (bad || encode_close(arrays, times ? 5 : 4) < 0)
		return -1;
	for (i = 5; i < 8; i++)
		if (sb_add(&arrays[i], "}", 1) < 0)
			return -1;
	return 0;
}

/* Fills the requests from append_many()'s rows. Returns 0, or -1 when
 * the reply does not have their shape. */
static int take_many_rows(evs_append_req *reqs, size_t n, const PGresult *res)
{
	size_t i;

	if (PQresultStatus(res) != PGRES_TUPLES_OK ||
	    (size_t)PQntuples(res) != n || PQnfields(res) < 4)
		return -1;
	for (i = 0; i < n; i++) {
		evs_append_req *r = &reqs[i];
		int row = (int)i;
		int status = atoi(PQgetvalue(res, row, 1));

		if (strtoull(PQgetvalue(res, row, 0), NULL, 10) != i + 1)
			return -1;
		r->replayed = 0;
		r->version = PQgetisnull(res, row, 2)
		                     ? EVS_NO_VERSION
		                     : strtoll(PQgetvalue(res, row, 2), NULL, 10);
		switch (status) {
		case MANY_APPENDED:
			r->rc = 0;
			break;
		case MANY_REPLAY:
			r->rc = 0;
			r->replayed = 1;
			break;
		case MANY_CONFLICT:
			r->rc = EVS_ECONFLICT;
			break;
		case MANY_DUPLICATE:
			r->rc = EVS_EDUPLICATE;
			break;
		case MANY_DELETED:
			r->rc = EVS_EDELETED;
			break;
		case MANY_NOT_STORED:
			r->rc = EVS_ENOTSTORED;
			r->version = EVS_NO_VERSION;
			break;
		default:
			return -1;
		}
	}
	return 0;
}

/* Fills e for a failed request (row i of the reply). */
static void fill_req_error(const evs_append_req *r, const PGresult *res,
                           int i, evs_error *e)
{
	if (r->rc == EVS_ECONFLICT) {
		evs_error_set_conflict(e, r->aggregate_id, r->expected_version,
		                       r->version);
	} else if (r->rc == EVS_EDELETED) {
		evs_error_set_deleted(e, r->aggregate_id, r->expected_version,
		                      r->version);
	} else if (r->rc == EVS_EDUPLICATE) {
		evs_error_set(e, EVS_EDUPLICATE, "23505",
		              "event id %s is already stored in aggregate "
		              "\"%s\" at version %lld",
		              PQgetvalue(res, i, 3), r->aggregate_id,
		              (long long)r->version);
		evs__error_set_aggregate(e, r->aggregate_id);
	} else {
		evs_error_set(e, r->rc, NULL,
		              "not stored: another request of the atomic call "
		              "failed");
	}
}

/* err for the first failed request (in array order, not counting
 * EVS_ENOTSTORED), and each[i] (when not NULL) for every failed one;
 * returns the first one's code, or 0 when none failed. */
static int report_failures(const evs_append_req *reqs, size_t n,
                           const PGresult *res, evs_error *err,
                           evs_error *each)
{
	size_t i;
	int first = 0;

	for (i = 0; i < n; i++) {
		const evs_append_req *r = &reqs[i];

		if (r->rc == 0)
			continue;
		if (each != NULL)
			fill_req_error(r, res, (int)i, &each[i]);
		if (first == 0 && r->rc != EVS_ENOTSTORED) {
			first = r->rc;
			fill_req_error(r, res, (int)i, err);
		}
	}
	return first;
}

int evs__pg_many_on_slot(pg_backend *pb, pg_slot *slot, evs_append_req *reqs,
                         size_t n, unsigned int flags,
                         unsigned int lock_wait_ms, int64_t deadline,
                         int *whole, evs_error *err, evs_error *each)
{
	int times = (flags & EVS_APPEND_KEEP_TIME) != 0;
	sbuf arrays[8];
	char wait_text[16];
	const char *params[9];
	PGresult *res = NULL;
	int rc, i;

	*whole = PG_MANY_OK;
	memset(arrays, 0, sizeof(arrays));
	if (encode_many(arrays, reqs, n, times) < 0) {
		*whole = PG_MANY_LOCAL;
		rc = evs__error_nomem(err);
		goto out;
	}
	snprintf(wait_text, sizeof(wait_text), "%u", lock_wait_ms);
	params[0] = arrays[5].p;
	params[1] = arrays[6].p;
	params[2] = arrays[7].p;
	for (i = 0; i < 4; i++)
		params[3 + i] = arrays[i].p;
	if (times) {
		params[7] = arrays[4].p;
		params[8] = (flags & EVS_APPEND_ATOMIC) ? "t" : "f";
	} else {
		params[7] = (flags & EVS_APPEND_ATOMIC) ? "t" : "f";
		params[8] = wait_text;
	}
	rc = evs__pg_exec(&res, pb, slot, times ? PG_IMPORT_MANY : PG_APPEND_MANY,
	                  NULL, 9, params, deadline, "could not append events",
	                  err);
	if (rc < 0) {
		*whole = PG_MANY_LOCAL;
		goto out;
	}
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		*whole = PG_MANY_SERVER;
		rc = evs__pg_error(err, slot->conn, res,
		                   "could not append events");
		goto out;
	}
	if (take_many_rows(reqs, n, res) < 0) {
		*whole = PG_MANY_SERVER;
		rc = evs_error_set(err, EVS_EDB, NULL,
		                   "could not append events: the server's "
		                   "append_many() replied with an unexpected "
		                   "shape (%d rows for %zu requests)",
		                   PQntuples(res), n);
		goto out;
	}
	rc = report_failures(reqs, n, res, err, each);
out:
	PQclear(res);
	for (i = 0; i < 8; i++)
		free(arrays[i].p);
	return rc;
}

/* Every request's outcome is the whole call's error. */
static int fail_all(evs_append_req *reqs, size_t n, int code)
{
	size_t i;

	for (i = 0; i < n; i++) {
		reqs[i].rc = code;
		reqs[i].replayed = 0;
		reqs[i].version = EVS_NO_VERSION;
	}
	return code;
}

static int alone(evs_append_result *out, void *ctx, const char *id,
                 int64_t expected, evs_event *const *events, size_t n,
                 unsigned int flags, evs_error *err)
{
	return evs__pg_append_alone(out, ctx, id, expected, events, n,
	                            flags & EVS_APPEND_KEEP_TIME, err);
}

int evs__pg_append_many(evs_backend *be, evs_append_req *reqs, size_t n,
                        unsigned int flags, evs_error *err)
{
	pg_backend *pb = (pg_backend *)be;
	pg_slot *slot;
	int rc, whole;

	if ((rc = evs__pg_acquire(&slot, pb, err)) < 0)
		return fail_all(reqs, n, rc);
	rc = evs__pg_many_on_slot(pb, slot, reqs, n, flags, 0,
	                          evs__pg_deadline(pb->call_timeout_ms),
	                          &whole, err, NULL);
	evs__pg_release(pb, slot);
	if (whole == PG_MANY_SERVER && !(flags & EVS_APPEND_ATOMIC)) {
		/* The server refused the call as a whole (a value the
		 * database cannot hold, no EXECUTE on append_many(), a
		 * timeout): one request at a time finds which fail. */
		evs__error_reset(err);
		return evs__append_each(reqs, n, flags, alone, pb, err);
	}
	if (whole != PG_MANY_OK)
		return fail_all(reqs, n, rc);
	return rc;
}
