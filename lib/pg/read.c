/* Reads: one paging loop, for one stream (by version) and for the fenced
 * feed of all streams (by order key and position). Rows arrive one at a
 * time (single-row mode) and are gathered until the page ends; the
 * connection then goes back to the pool and the events are handed out,
 * so a callback never runs while a statement is open on the server (no
 * statement_timeout can hit a slow consumer, and no server snapshot waits
 * on it). A page that reaches read_buffer_bytes before its end is cut
 * there: its connection is closed (the rest of the reply cannot be left
 * on it), what it gathered is handed out, and the read goes on with pages
 * sized to the events seen so far. So a read holds at most
 * read_buffer_bytes plus one event, however large the events. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "event_int.h"
#include "pg_int.h"
#include "sub_int.h"

/* Rows per page at most: one statement's worth. */
#define PAGE_ROWS 1000

/* Where a read is, and how to ask for its next page. */
typedef struct cursor {
	const char *stmt;  /* PG_READ, PG_READ_BACK or PG_READ_ALL */
	const char *what;  /* for messages */
	/* Fills params (texts in buf) for a page of `rows` rows at most,
	 * and says with *extra whether it asked for one row more (to know
	 * whether another page follows); returns the number of params. */
	int (*params)(struct cursor *c, const char **params, int64_t rows,
	              int *extra);
	/* Whether another page may follow a complete one of `rows` rows
	 * out of `want` (extra_seen: the row asked for beyond them came). */
	int (*more)(const struct cursor *c, int64_t rows, int64_t want,
	            int extra_seen);
	/* Moves past an event handed out. */
	void (*advance)(struct cursor *c, const evs_event *ev);
	/* Called on the page's slot before the page (NULL: nothing). */
	int (*before_page)(struct cursor *c, pg_backend *pb, pg_slot *slot,
	                   evs_error *err);
	size_t left;       /* events still wanted (SIZE_MAX: all) */
	int marked;        /* rows end with the stream's deleted version
	                    * (PG_READ, PG_READ_BACK, PG_SNAP_LOAD) */
	/* A snapshot load: its first page is PG_SNAP_LOAD, whose rows also
	 * carry the snapshot's version and (first row) data; the snapshot
	 * goes to scb before the page's events. */
	const char *kind;
	char format[16];
	evs_snapshot_cb scb;
	void *scb_payload;
	char *snap_json;
	size_t snap_len;
	int64_t snap_version;
	int single_page;   /* one page only; *more says if another follows */
	int *more_out;
	char buf[6][24];
	int pages;         /* pages asked for so far */
	/* one stream */
	const char *id;
	int64_t after, upto; /* upto: its version when page 2 began;
	                      * backwards: the page's versions are below */
	/* all streams */
	evs_position at;
} cursor;

/* Builds an event from a row of PG_READ, PG_READ_BACK or PG_READ_ALL. */
static int parse_row(evs_event **out, const PGresult *res, evs_error *err)
{
	evs_uuid uuid;
	int rc;

	if (evs_uuid_parse(&uuid, PQgetvalue(res, 0, 2), NULL) < 0)
		return evs_error_set(err, EVS_EDB, NULL,
		                     "the server sent a malformed event id");
	rc = evs_event_new_stored(
		out, &uuid, PQgetvalue(res, 0, 3), PQgetvalue(res, 0, 4),
		(size_t)PQgetlength(res, 0, 4),
		PQgetisnull(res, 0, 5) ? NULL : PQgetvalue(res, 0, 5),
		(size_t)PQgetlength(res, 0, 5), PQgetvalue(res, 0, 8),
		strtoll(PQgetvalue(res, 0, 0), NULL, 10),
		strtoll(PQgetvalue(res, 0, 1), NULL, 10),
		strtoll(PQgetvalue(res, 0, 6), NULL, 10), err);
	if (rc == 0)
		evs_event_set_checkpoint(
			*out, strtoull(PQgetvalue(res, 0, 7), NULL, 10));
	return rc;
}

static size_t event_bytes(const evs_event *ev)
{
	return sizeof(*ev) + ev->data_len + ev->metadata_len +
	       strlen(ev->type) + strlen(ev->aggregate_id);
}

/* Events gathered from a page, not yet handed out. */
typedef struct gathered {
	evs_event **ev;
	size_t n, cap, bytes;
} gathered;

/* Hands out every gathered event; stops at the first non-zero return of
 * cb, freeing the rest. */
static int hand_out(gathered *g, cursor *c, evs_backend_event_cb cb,
                    void *payload)
{
	size_t i;
	int rc = 0;

	for (i = 0; i < g->n; i++) {
		if (rc == 0) {
			c->advance(c, g->ev[i]);
			rc = cb(g->ev[i], payload);
		} else {
			evs_event_free(g->ev[i]);
		}
	}
	g->n = 0;
	g->bytes = 0;
	return rc;
}

static void discard(gathered *g)
{
	size_t i;

	for (i = 0; i < g->n; i++)
		evs_event_free(g->ev[i]);
	g->n = 0;
	g->bytes = 0;
}

static int read_pages(pg_backend *pb, cursor *c, evs_backend_event_cb cb,
                      void *payload, evs_error *err)
{
	gathered g = {NULL, 0, 0, 0};
	int64_t page_rows = PAGE_ROWS;
	size_t seen_bytes = 0, seen_events = 0;
	int rc = 0, stale_retried = 0;

	while (c->left > 0) {
		int64_t want = c->left < (size_t)page_rows ? (int64_t)c->left
		                                           : page_rows;
		int64_t deadline, rows = 0;
		const char *params[7];
		char state[6];
		int n_params, extra = 0, extra_seen = 0, cut = 0;
		int64_t deleted = EVS_NO_VERSION;
		pg_slot *slot;

		if ((rc = evs__pg_acquire(&slot, pb, err)) < 0)
			break;
		if (c->before_page != NULL &&
		    (rc = c->before_page(c, pb, slot, err)) < 0) {
			evs__pg_release(pb, slot);
			break;
		}
		c->pages++;
		n_params = c->params(c, params, want, &extra);
		deadline = evs__pg_deadline(pb->call_timeout_ms);
		rc = evs__pg_rows_start(pb, slot, c->stmt, n_params, params,
		                        deadline, c->what, err);
		while (rc == 0) {
			PGresult *row;
			evs_event *ev;

			rc = evs__pg_rows_next(&row, pb, slot, deadline, c->what,
			                       state, err);
			if (rc < 0 && c->id != NULL &&
			    strcmp(state, PG_UNTRANSLATABLE) == 0) {
				/* An id the database cannot hold has no
				 * events there. */
				evs__error_reset(err);
				rc = 0;
			}
			if (rc < 0 || row == NULL)
				break;
			if (c->scb != NULL && c->pages == 1 &&
			    c->snap_json == NULL && PQnfields(row) >= 12 &&
			    !PQgetisnull(row, 0, 11)) {
				c->snap_len = (size_t)PQgetlength(row, 0, 11);
				c->snap_json = malloc(c->snap_len + 1);
				if (c->snap_json == NULL) {
					PQclear(row);
					rc = evs__error_nomem(err);
					break;
				}
				memcpy(c->snap_json, PQgetvalue(row, 0, 11),
				       c->snap_len + 1);
				c->snap_version = strtoll(
					PQgetvalue(row, 0, 10), NULL, 10);
			}
			if (c->marked && (!PQgetisnull(row, 0, 9) ||
			                  PQgetisnull(row, 0, 0))) {
				/* The stream is deleted, or the page is
				 * empty: no event in this row. */
				if (!PQgetisnull(row, 0, 9))
					deleted = strtoll(PQgetvalue(row, 0, 9),
					                  NULL, 10);
				PQclear(row);
				continue;
			}
			if (rows == want) {
				/* The row beyond the page: another follows. */
				PQclear(row);
				extra_seen = 1;
				continue;
			}
			rows++;
			rc = parse_row(&ev, row, err);
			PQclear(row);
			if (rc < 0)
				break;
			if (g.n == g.cap) {
				size_t cap = g.cap ? 2 * g.cap : 64;
				evs_event **p = realloc(g.ev, cap * sizeof(*p));

				if (p == NULL) {
					evs_event_free(ev);
					rc = evs__error_nomem(err);
					break;
				}
				g.ev = p;
				g.cap = cap;
			}
			g.ev[g.n++] = ev;
			g.bytes += event_bytes(ev);
			if (g.bytes >= pb->read_buffer_bytes && rows < want) {
				cut = 1;
				break;
			}
		}
		if (slot->conn != NULL &&
		    PQtransactionStatus(slot->conn) == PQTRANS_ACTIVE)
			/* Cut, or stopped by an error, inside a page: the
			 * rest of its reply cannot be left on the
			 * connection. */
			evs__pg_rows_abandon(slot);
		if (rc != 0 && slot->stale && rows == 0 && !stale_retried) {
			/* The page's statement was prepared before a
			 * migration changed its columns, and did nothing:
			 * once more, on a connection prepared afresh (the
			 * release drops this one). */
			evs__pg_release(pb, slot);
			stale_retried = 1;
			c->pages--;
			evs__error_reset(err);
			rc = 0;
			continue;
		}
		evs__pg_release(pb, slot);
		if (rc == 0 && deleted != EVS_NO_VERSION)
			rc = evs_error_set_deleted(err, c->id, EVS_ANY_VERSION,
			                           deleted);
		if (rc == 0 && c->snap_json != NULL) {
			/* The snapshot, before the events after it; the
			 * next page starts after them (or after it). */
			if (c->after < c->snap_version)
				c->after = c->snap_version;
			rc = c->scb(c->snap_version, c->snap_json, c->snap_len,
			            c->scb_payload);
			free(c->snap_json);
			c->snap_json = NULL;
			c->scb = NULL;
		}
		if (rc != 0)
			break;
		seen_bytes += g.bytes;
		seen_events += g.n;
		rc = hand_out(&g, c, cb, payload);
		if (rc != 0)
			break;
		c->left -= (size_t)rows;
		if (c->single_page) {
			*c->more_out = cut || c->more(c, rows, want, extra_seen);
			break;
		}
		if (!cut && !c->more(c, rows, want, extra_seen))
			break;
		/* The next page: as many of the events seen so far as fit
		 * the budget (at least one). */
		page_rows = (int64_t)(pb->read_buffer_bytes /
		                      (seen_bytes / seen_events + 1));
		if (page_rows > PAGE_ROWS)
			page_rows = PAGE_ROWS;
		if (page_rows < 1)
			page_rows = 1;
	}
	discard(&g);
	free(g.ev);
	free(c->snap_json);
	c->snap_json = NULL;
	return rc;
}

/* ---- one stream ------------------------------------------------------------ */

static int stream_params(cursor *c, const char **params, int64_t rows,
                         int *extra)
{
	/* The first page asks one row more: whether another page follows
	 * is then known without a query. Later pages know where the stream
	 * ended (upto). */
	*extra = c->upto == INT64_MAX;
	snprintf(c->buf[0], sizeof(c->buf[0]), "%lld", (long long)c->after);
	snprintf(c->buf[1], sizeof(c->buf[1]), "%lld", (long long)c->upto);
	snprintf(c->buf[2], sizeof(c->buf[2]), "%lld",
	         (long long)rows + *extra);
	params[0] = c->id;
	params[1] = c->buf[0];
	params[2] = c->buf[1];
	params[3] = c->buf[2];
	return 4;
}

static int stream_more(const cursor *c, int64_t rows, int64_t want,
                       int extra_seen)
{
	(void)rows;
	(void)want;
	return c->upto == INT64_MAX ? extra_seen : c->after < c->upto;
}

static void stream_advance(cursor *c, const evs_event *ev)
{
	c->after = ev->version;
}

/* After the first page, read only up to where the stream ended then: a
 * read ends, however fast writers are. */
static int stream_before_page(cursor *c, pg_backend *pb, pg_slot *slot,
                              evs_error *err)
{
	int rc;

	if (c->pages == 0 || c->upto != INT64_MAX)
		return 0;
	rc = evs__pg_head_on(&c->upto, NULL, pb, slot, c->id,
	                     evs__pg_deadline(pb->call_timeout_ms), err);
	return rc == EVS_ENOTFOUND ? 0 : rc;
}

int evs__pg_read(evs_backend *be, const char *id, int64_t after,
                 evs_backend_event_cb cb, void *payload, evs_error *err)
{
	cursor c;

	memset(&c, 0, sizeof(c));
	c.stmt = PG_READ;
	c.marked = 1;
	c.what = "could not read events";
	c.params = stream_params;
	c.more = stream_more;
	c.advance = stream_advance;
	c.before_page = stream_before_page;
	c.left = SIZE_MAX;
	c.id = id;
	c.after = after;
	c.upto = INT64_MAX;
	return read_pages((pg_backend *)be, &c, cb, payload, err);
}

/* ---- one stream, from a snapshot ------------------------------------------- */

/* The first page: PG_SNAP_LOAD (the snapshot, and events after it); the
 * next ones: PG_READ, as any read of the stream. */
static int snap_params(cursor *c, const char **params, int64_t rows,
                       int *extra)
{
	if (c->pages > 1) {
		c->stmt = PG_READ;
		return stream_params(c, params, rows, extra);
	}
	*extra = 1;
	snprintf(c->buf[2], sizeof(c->buf[2]), "%lld", (long long)rows + 1);
	params[0] = c->id;
	params[1] = c->kind;
	params[2] = c->format;
	params[3] = c->buf[2];
	return 4;
}

int evs__pg_load_snapshot(evs_backend *be, const char *id, const char *kind,
                          unsigned int format, evs_snapshot_cb scb,
                          evs_backend_event_cb cb, void *payload,
                          evs_error *err)
{
	cursor c;

	memset(&c, 0, sizeof(c));
	c.stmt = PG_SNAP_LOAD;
	c.marked = 1;
	c.what = "could not load the snapshot and events";
	c.params = snap_params;
	c.more = stream_more;
	c.advance = stream_advance;
	c.before_page = stream_before_page;
	c.left = SIZE_MAX;
	c.id = id;
	c.after = EVS_NO_VERSION;
	c.upto = INT64_MAX;
	c.kind = kind;
	snprintf(c.format, sizeof(c.format), "%u", format);
	c.scb = scb;
	c.scb_payload = payload;
	return read_pages((pg_backend *)be, &c, cb, payload, err);
}

/* ---- one stream, backwards -------------------------------------------------- */

/* The events below `before` never change: a short page is the end. */
static int back_params(cursor *c, const char **params, int64_t rows,
                       int *extra)
{
	*extra = 0;
	snprintf(c->buf[0], sizeof(c->buf[0]), "%lld", (long long)c->upto);
	snprintf(c->buf[1], sizeof(c->buf[1]), "%lld", (long long)rows);
	params[0] = c->id;
	params[1] = c->buf[0];
	params[2] = c->buf[1];
	return 3;
}

static int back_more(const cursor *c, int64_t rows, int64_t want,
                     int extra_seen)
{
	(void)extra_seen;
	return rows == want && c->upto > 0;
}

static void back_advance(cursor *c, const evs_event *ev)
{
	c->upto = ev->version;
}

int evs__pg_read_backward(evs_backend *be, const char *id, int64_t before,
                          size_t max_events, evs_backend_event_cb cb,
                          void *payload, evs_error *err)
{
	cursor c;

	memset(&c, 0, sizeof(c));
	c.stmt = PG_READ_BACK;
	c.marked = 1;
	c.what = "could not read events";
	c.params = back_params;
	c.more = back_more;
	c.advance = back_advance;
	c.left = max_events == 0 ? SIZE_MAX : max_events;
	c.id = id;
	c.upto = before; /* the page's versions are below it */
	return read_pages((pg_backend *)be, &c, cb, payload, err);
}

/* ---- all streams ----------------------------------------------------------- */

static int all_params(cursor *c, const char **params, int64_t rows,
                      int *extra)
{
	*extra = 0;
	snprintf(c->buf[0], sizeof(c->buf[0]), "%llu",
	         (unsigned long long)c->at.commit);
	snprintf(c->buf[1], sizeof(c->buf[1]), "%lld",
	         (long long)c->at.global);
	snprintf(c->buf[2], sizeof(c->buf[2]), "%lld", (long long)rows);
	params[0] = c->buf[0];
	params[1] = c->buf[1];
	params[2] = c->buf[2];
	return 3;
}

/* The feed can grow between pages: a full page means "ask again", a
 * short one that nothing more is visible now. */
static int all_more(const cursor *c, int64_t rows, int64_t want,
                    int extra_seen)
{
	(void)c;
	(void)extra_seen;
	return rows == want;
}

static void all_advance(cursor *c, const evs_event *ev)
{
	evs_event_checkpoint(&c->at, ev);
}

int evs__pg_read_all(evs_backend *be, const evs_position *after,
                     size_t max_events, evs_backend_event_cb cb,
                     void *payload, evs_error *err)
{
	cursor c;

	memset(&c, 0, sizeof(c));
	c.stmt = PG_READ_ALL;
	c.what = "could not read all events";
	c.params = all_params;
	c.more = all_more;
	c.advance = all_advance;
	c.left = max_events ? max_events : SIZE_MAX;
	c.at = *after;
	return read_pages((pg_backend *)be, &c, cb, payload, err);
}

/* ---- a subscription's feed ------------------------------------------------ */

typedef struct feed_cursor {
	cursor c;
	const evs__feed *feed;
	const char *types; /* a text[] literal, or NULL */
} feed_cursor;

static int feed_params(cursor *c, const char **params, int64_t rows,
                       int *extra)
{
	feed_cursor *fc = (feed_cursor *)c;
	const evs__feed *f = fc->feed;
	int n = 0;

	*extra = 0;
	if (f->category != NULL)
		params[n++] = f->category;
	else if (f->n_types == 1)
		params[n++] = f->types[0];
	snprintf(c->buf[0], sizeof(c->buf[0]), "%llu",
	         (unsigned long long)c->at.commit);
	snprintf(c->buf[1], sizeof(c->buf[1]), "%lld",
	         (long long)c->at.global);
	snprintf(c->buf[2], sizeof(c->buf[2]), "%lld", (long long)rows);
	snprintf(c->buf[3], sizeof(c->buf[3]), "%u", f->size);
	snprintf(c->buf[4], sizeof(c->buf[4]), "%u", f->member);
	params[n++] = c->buf[0];
	params[n++] = c->buf[1];
	params[n++] = c->buf[2];
	params[n++] = c->buf[3];
	params[n++] = c->buf[4];
	if (f->category != NULL || f->n_types != 1)
		params[n++] = fc->types;
	return n;
}

int evs__pg_read_feed(pg_backend *pb, const evs__feed *feed,
                      const char *types, const evs_position *after,
                      size_t max, evs_backend_event_cb cb, void *payload,
                      int *more, evs_error *err)
{
	feed_cursor fc;

	memset(&fc, 0, sizeof(fc));
	fc.feed = feed;
	fc.types = types;
	fc.c.stmt = feed->category != NULL ? PG_FEED_CATEGORY
	            : feed->n_types == 1   ? PG_FEED_TYPE
	                                   : PG_FEED_ALL;
	fc.c.what = "could not read the subscription's feed";
	fc.c.params = feed_params;
	fc.c.more = all_more;
	fc.c.advance = all_advance;
	fc.c.left = max;
	fc.c.single_page = 1;
	fc.c.more_out = more;
	fc.c.at = *after;
	*more = 0;
	return read_pages(pb, &fc.c, cb, payload, err);
}

/* ---- a stream's version ------------------------------------------------------ */

int evs__pg_head_on(int64_t *out, int *deleted, pg_backend *pb,
                    pg_slot *slot, const char *id, int64_t deadline,
                    evs_error *err)
{
	const char *params[1] = {id};
	PGresult *res;
	int rc;

	*out = EVS_NO_VERSION;
	rc = evs__pg_exec(&res, pb, slot, PG_HEAD, NULL, 1, params, deadline,
	                  "could not read the stream's version", err);
	if (rc < 0)
		return rc;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		const char *state = PQresultErrorField(res, PG_DIAG_SQLSTATE);

		/* An id the database cannot hold names no stream there. */
		rc = state != NULL && strcmp(state, PG_UNTRANSLATABLE) == 0
		             ? EVS_ENOTFOUND
		             : evs__pg_error(err, slot->conn, res,
		                             "could not read the stream's "
		                             "version");
	} else if (PQntuples(res) == 0)
		rc = EVS_ENOTFOUND;
	else {
		*out = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		if (deleted != NULL)
			*deleted = PQgetvalue(res, 0, 1)[0] == 't';
	}
	PQclear(res);
	return rc;
}

int evs__pg_head(int64_t *out, evs_backend *be, const char *id,
                 evs_error *err)
{
	pg_backend *pb = (pg_backend *)be;
	pg_slot *slot;
	int deleted = 0;
	int rc = evs__pg_acquire(&slot, pb, err);

	if (rc < 0)
		return rc;
	rc = evs__pg_head_on(out, &deleted, pb, slot, id,
	                     evs__pg_deadline(pb->call_timeout_ms), err);
	evs__pg_release(pb, slot);
	if (rc == 0 && deleted)
		rc = evs_error_set_deleted(err, id, EVS_ANY_VERSION, *out);
	return rc;
}
