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
enum { STATUS_APPENDED = 0, STATUS_REPLAY = 1, STATUS_CONFLICT = 2 };

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

/* The batch as the text arrays of the append statements: ids, types,
 * data, metadata and, with times, recorded_at. */
static int encode_batch(sbuf arrays[5], evs_event *const *events, size_t n,
                        int times)
{
	size_t i, k = times ? 5 : 4;
	int bad = 0;

	for (i = 0; i < k && !bad; i++)
		bad = sb_add(&arrays[i], "{", 1);
	for (i = 0; i < n && !bad; i++) {
		const evs_event *ev = events[i];
		char id[EVS_UUID_STRLEN + 1], when[64];
		const char *sep = i ? "," : "";
		size_t s = i ? 1 : 0;

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
	for (i = 0; i < k && !bad; i++)
		bad = sb_add(&arrays[i], "}", 1);
	return bad ? -1 : 0;
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

int evs__pg_append_ext(evs_append_result *out, evs_backend *be,
                       const char *id, int64_t expected,
                       evs_event *const *events, size_t n,
                       unsigned int flags, evs_error *err)
{
	pg_backend *pb = (pg_backend *)be;
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

		rc = evs__pg_head_on(&actual, pb, slot, id, deadline, err);
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
