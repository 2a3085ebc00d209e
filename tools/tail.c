/* tools/tail.c: `evstore tail` (the store's feed, or a filtered part of
 * it, through a subscription: transient, or named with a durable
 * checkpoint), `evstore subscriptions` (the stored ones, with their lag
 * and lease), and the feed lines of `evstore status`. Only the public
 * subscription API (evstore/subscription.h), as an application would. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

/* Events per handler call: what is printed, flushed, then checkpointed
 * at once. */
#define TAIL_BATCH 256

/* SIGINT and SIGTERM stop the subscription through these: the handle in
 * use (NULL while there is none) and a flag for the moments between. */
static evs_sub *volatile tail_sub;
static volatile sig_atomic_t tail_stop;

static void on_stop_signal(int sig)
{
	struct sigaction dfl;
	evs_sub *sub = tail_sub;

	tail_stop = 1;
	if (sub != NULL)
		evs_sub_stop(sub);
	/* A second one ends the program at once: what was printed before
	 * the checkpoint is then printed again by the next run. */
	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	sigemptyset(&dfl.sa_mask);
	sigaction(sig, &dfl, NULL);
}

static void set_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	sa.sa_handler = on_stop_signal;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	/* A reader that went away is a write error (EPIPE): the lease is
	 * then released rather than left to expire. */
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);
}

/* ---- tail ------------------------------------------------------------- */

typedef struct tail_ctx {
	const tail_opts *o;
	evs_sub *sub;
	int64_t printed;
	int done;        /* --max events printed */
	int shrink;      /* a batch held more than --max leaves: refused */
	int write_errno; /* standard output failed */
	cli_buf out;
	/* the table: its header is out; column widths only grow */
	int header;
	size_t w_pos, w_stream, w_version, w_type, w_at, width;
} tail_ctx;

static void add_padded(cli_buf *b, const char *s, size_t width)
{
	size_t w = cli_text_width(s);

	cli_buf_adds(b, s);
	for (; w < width; w++)
		cli_buf_addc(b, ' ');
}

static void add_header(tail_ctx *t)
{
	add_padded(&t->out, "position", t->w_pos + 2);
	add_padded(&t->out, "stream_id", t->w_stream + 2);
	cli_buf_printf(&t->out, "%*s  ", (int)t->w_version, "version");
	add_padded(&t->out, "type", t->w_type + 2);
	add_padded(&t->out, "recorded_at", t->w_at + 2);
	cli_buf_adds(&t->out, "data\n");
	t->header = 1;
}

static void add_table(tail_ctx *t, evs_sub_batch *batch, size_t n)
{
	char pos[CLI_POSITION_LEN], at[CLI_TIME_LEN], version[24];
	size_t i, used, keep;
	int cut;

	for (i = 0; i < n; i++) {
		const evs_event *ev = evs_sub_batch_get(batch, i);
		evs_position p;
		size_t w;

		evs_event_checkpoint(&p, ev);
		cli_format_position(pos, &p);
		cli_format_time(at, evs_event_recorded_at(ev));
		if ((w = strlen(pos)) > t->w_pos)
			t->w_pos = w;
		if ((w = cli_text_width(evs_event_aggregate_id(ev))) >
		    t->w_stream)
			t->w_stream = w;
		if ((w = (size_t)snprintf(version, sizeof(version), "%lld",
		                          (long long)evs_event_version(ev))) >
		    t->w_version)
			t->w_version = w;
		if ((w = cli_text_width(evs_event_type(ev))) > t->w_type)
			t->w_type = w;
		if ((w = strlen(at)) > t->w_at)
			t->w_at = w;
	}
	used = t->w_pos + t->w_stream + t->w_version + t->w_type + t->w_at +
	       5 * 2;
	if (!t->header) {
		add_header(t);
	}
	for (i = 0; i < n; i++) {
		const evs_event *ev = evs_sub_batch_get(batch, i);
		const char *data = evs_event_data_json(ev);
		evs_position p;

		evs_event_checkpoint(&p, ev);
		cli_format_position(pos, &p);
		cli_format_time(at, evs_event_recorded_at(ev));
		add_padded(&t->out, pos, t->w_pos + 2);
		add_padded(&t->out, evs_event_aggregate_id(ev),
		           t->w_stream + 2);
		cli_buf_printf(&t->out, "%*lld  ", (int)t->w_version,
		               (long long)evs_event_version(ev));
		add_padded(&t->out, evs_event_type(ev), t->w_type + 2);
		add_padded(&t->out, at, t->w_at + 2);
		keep = cli_fit(data, t->width > used + 10 ? t->width - used - 1
		                                          : 10, &cut);
		cli_buf_add(&t->out, data, keep);
		if (cut)
			cli_buf_adds(&t->out, "...");
		cli_buf_addc(&t->out, '\n');
	}
}

/* Writes what is buffered and flushes it to the kernel: only then may the
 * checkpoint move past it. */
static int write_out(tail_ctx *t)
{
	if (t->out.len > 0 &&
	    fwrite(t->out.p, 1, t->out.len, stdout) != t->out.len) {
		t->write_errno = errno ? errno : EIO;
		return -1;
	}
	t->out.len = 0;
	if (fflush(stdout) != 0) {
		t->write_errno = errno ? errno : EIO;
		return -1;
	}
	return 0;
}

/* The subscription's handler. Returning 0 lets the library store the
 * checkpoint after the batch, so everything is out of our buffers
 * first. A negative return leaves the checkpoint where it was. */
static int on_batch(evs_sub_batch *batch, void *payload, evs_error *err)
{
	tail_ctx *t = payload;
	size_t n = evs_sub_batch_count(batch), i;

	(void)err;
	if (tail_stop || t->done || t->write_errno)
		return EVS_ERROR;
	if (t->o->max > 0 && (int64_t)n > t->o->max - t->printed) {
		/* A named subscription checkpoints whole batches: print none
		 * of this one, and reopen with smaller ones. */
		if (t->o->name != NULL) {
			t->shrink = 1;
			return EVS_ERROR;
		}
		n = (size_t)(t->o->max - t->printed);
	}
	if (t->o->table)
		add_table(t, batch, n);
	else
		for (i = 0; i < n; i++)
			ndjson_add_event(&t->out, evs_sub_batch_get(batch, i));
	if (write_out(t) < 0)
		return EVS_ERROR;
	t->printed += (int64_t)n;
	if (t->o->max > 0 && t->printed >= t->o->max) {
		t->done = 1;
		evs_sub_stop(t->sub);
	}
	return 0;
}

static int open_sub(evs_sub **out, evs_store *store, const tail_opts *o,
                    unsigned int batch, evs_error *err)
{
	evs_sub_options so = EVS_SUB_OPTIONS_INIT;

	so.name = o->name;
	so.category = o->category;
	so.types = o->n_types > 0 ? o->types : NULL;
	so.group_member = o->member;
	so.group_size = o->group_size;
	so.mode = EVS_SUB_AT_LEAST_ONCE;
	so.start = o->start;
	so.start_position = o->from;
	so.batch_max = batch;
	so.checkpoint_every = 0; /* after every batch */
	/* Stores opened with evs_pg_options.notify wake a follower at
	 * once; others are found by polling (at most 500 ms late). */
	so.wake = o->follow ? EVS_WAKE_NOTIFY : EVS_WAKE_POLL;
	return evs_sub_open(out, store, &so, err);
}

/* " (member M/K)" for a group member, else "". */
static void member_text(char *out, size_t size, const tail_opts *o)
{
	if (o->group_size > 1)
		snprintf(out, size, " (member %u/%u)", o->member,
		         o->group_size);
	else
		out[0] = '\0';
}

typedef struct holder {
	const tail_opts *o;
	char owner[256];
	int64_t lease_until;
} holder;

static int find_holder(const evs_sub_info *in, void *payload)
{
	holder *h = payload;

	if (strcmp(in->name, h->o->name) != 0 || in->member != h->o->member)
		return 0;
	if (in->owner != NULL)
		snprintf(h->owner, sizeof(h->owner), "%s", in->owner);
	h->lease_until = in->lease_until;
	return 1;
}

/* Without --follow, a subscription on standby is an error. */
static int standby_fail(evs_store *store, const tail_opts *o)
{
	holder h;
	char member[48], at[CLI_TIME_LEN], by[sizeof(h.owner) + 64] = "";

	memset(&h, 0, sizeof(h));
	h.o = o;
	member_text(member, sizeof(member), o);
	if (evs_store_subscriptions(store, o->name, find_holder, &h, NULL) >= 0 &&
	    h.owner[0] != '\0' && h.lease_until != 0) {
		cli_format_time(at, h.lease_until);
		snprintf(by, sizeof(by), " (\"%s\", lease until %s)", h.owner,
		         at);
	}
	return cli_fail(EXIT_ERR, "subscription \"%s\"%s is active in another "
	                "instance%s: use --follow to wait for its lease",
	                o->name, member, by);
}

static void waiting_note(const tail_opts *o)
{
	char member[48];

	member_text(member, sizeof(member), o);
	fflush(stdout);
	fprintf(stderr, "evstore: subscription \"%s\"%s is active in another "
	        "instance: waiting for its lease\n", o->name, member);
}

int cmd_tail(const tail_opts *o, const cli_conn *conn)
{
	tail_ctx t;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	evs_sub *sub = NULL;
	unsigned int batch = TAIL_BATCH;
	int rc;

	memset(&t, 0, sizeof(t));
	t.o = o;
	t.w_pos = strlen("position");
	t.w_stream = strlen("stream_id");
	t.w_version = strlen("version");
	t.w_type = strlen("type");
	t.w_at = 27; /* an RFC 3339 time; years past 9999 are longer */
	t.width = cli_term_width();
	set_signals();
	if ((rc = cli_open_store(&store, conn, 2)) != EXIT_OK)
		return rc;
	if (o->max > 0 && o->max < batch)
		batch = (unsigned int)o->max;
	for (;;) {
		if ((rc = open_sub(&sub, store, o, batch, &err)) < 0) {
			rc = cli_store_fail(&err, NULL);
			goto done;
		}
		if (!evs_sub_active(sub)) {
			if (!o->follow) {
				rc = standby_fail(store, o);
				goto done;
			}
			waiting_note(o);
		}
		t.sub = sub;
		tail_sub = sub;
		if (tail_stop) {
			rc = EXIT_OK;
			goto done;
		}
		rc = o->follow ? evs_sub_run(sub, on_batch, &t, &err)
		               : evs_sub_poll(sub, 0, on_batch, &t, &err);
		if (t.write_errno) {
			rc = cli_fail(EXIT_ERR, "could not write the "
			              "output: %s", strerror(t.write_errno));
			goto done;
		}
		if (t.done || tail_stop || rc >= 0) {
			rc = EXIT_OK;
			goto done;
		}
		if (!t.shrink) {
			rc = cli_store_fail(&err, NULL);
			goto done;
		}
		/* The next batch would go past --max: smaller batches, from
		 * the checkpoint just stored. */
		t.shrink = 0;
		batch = (unsigned int)(o->max - t.printed);
		tail_sub = NULL;
		evs_sub_free(sub);
		sub = NULL;
		evs_error_clear(&err);
	}
done:
	if (rc == EXIT_OK && o->table && !t.header) {
		/* No event: the header alone, as read prints it. */
		add_header(&t);
		if (write_out(&t) < 0)
			rc = cli_fail(EXIT_ERR, "could not write the "
			              "output: %s", strerror(t.write_errno));
	}
	tail_sub = NULL;
	/* Stores the checkpoint if a batch's store failed, and releases the
	 * lease, so that a successor starts at once. */
	evs_sub_free(sub);
	evs_store_free(store);
	evs_error_clear(&err);
	free(t.out.p);
	return rc;
}

/* ---- subscriptions ---------------------------------------------------- */

typedef struct sub_row {
	char *name, *filter, *owner;
	char member[32], checkpoint[CLI_POSITION_LEN], lag[24];
	char lease[CLI_TIME_LEN];
} sub_row;

typedef struct list_ctx {
	int table;
	cli_buf out;
	sub_row *rows;
	size_t n, cap;
} list_ctx;

static int list_one(const evs_sub_info *in, void *payload)
{
	list_ctx *l = payload;
	char cp[CLI_POSITION_LEN], at[CLI_TIME_LEN];
	sub_row *r;

	cli_format_position(cp, &in->position);
	if (!l->table) {
		cli_buf_adds(&l->out, "{\"name\":");
		ndjson_add_string(&l->out, in->name);
		cli_buf_printf(&l->out, ",\"member\":%u,\"group_size\":%u,"
		               "\"filter\":%s,\"checkpoint\":\"%s\","
		               "\"lag\":%lld,\"owner\":", in->member,
		               in->group_size, in->filter, cp,
		               (long long)in->lag);
		if (in->owner != NULL)
			ndjson_add_string(&l->out, in->owner);
		else
			cli_buf_adds(&l->out, "null");
		cli_buf_adds(&l->out, ",\"lease_until\":");
		if (in->lease_until != 0) {
			cli_format_time(at, in->lease_until);
			cli_buf_printf(&l->out, "\"%s\"", at);
		} else {
			cli_buf_adds(&l->out, "null");
		}
		cli_format_time(at, in->updated_at);
		cli_buf_printf(&l->out, ",\"lease_epoch\":%lld,"
		               "\"updated_at\":\"%s\"}\n",
		               (long long)in->lease_epoch, at);
		return 0;
	}
	if (l->n == l->cap) {
		l->cap = l->cap ? 2 * l->cap : 16;
		l->rows = cli_xrealloc(l->rows, l->cap * sizeof(sub_row));
	}
	r = &l->rows[l->n++];
	r->name = cli_xstrdup(in->name);
	r->filter = cli_xstrdup(in->filter);
	r->owner = cli_xstrdup(in->owner != NULL ? in->owner : "-");
	snprintf(r->member, sizeof(r->member), "%u/%u", in->member,
	         in->group_size);
	memcpy(r->checkpoint, cp, sizeof(cp));
	snprintf(r->lag, sizeof(r->lag), "%lld", (long long)in->lag);
	if (in->lease_until != 0)
		cli_format_time(r->lease, in->lease_until);
	else
		snprintf(r->lease, sizeof(r->lease), "-");
	return 0;
}

static void list_table(list_ctx *l)
{
	size_t wn = strlen("name"), wm = strlen("member");
	size_t wc = strlen("checkpoint"), wl = strlen("lag");
	size_t wo = strlen("owner"), wu = strlen("lease_until");
	size_t width = cli_term_width(), used, keep, i;
	int cut;

	for (i = 0; i < l->n; i++) {
		sub_row *r = &l->rows[i];

		wn = cli_text_width(r->name) > wn ? cli_text_width(r->name)
		                                  : wn;
		wm = strlen(r->member) > wm ? strlen(r->member) : wm;
		wc = strlen(r->checkpoint) > wc ? strlen(r->checkpoint) : wc;
		wl = strlen(r->lag) > wl ? strlen(r->lag) : wl;
		wo = cli_text_width(r->owner) > wo ? cli_text_width(r->owner)
		                                   : wo;
		wu = strlen(r->lease) > wu ? strlen(r->lease) : wu;
	}
	used = wn + wm + wc + wl + wo + wu + 6 * 2;
	add_padded(&l->out, "name", wn + 2);
	cli_buf_printf(&l->out, "%-*s  %-*s  %*s  ", (int)wm, "member",
	               (int)wc, "checkpoint", (int)wl, "lag");
	add_padded(&l->out, "owner", wo + 2);
	cli_buf_printf(&l->out, "%-*s  filter\n", (int)wu, "lease_until");
	for (i = 0; i < l->n; i++) {
		sub_row *r = &l->rows[i];

		add_padded(&l->out, r->name, wn + 2);
		cli_buf_printf(&l->out, "%-*s  %-*s  %*s  ", (int)wm, r->member,
		               (int)wc, r->checkpoint, (int)wl, r->lag);
		add_padded(&l->out, r->owner, wo + 2);
		cli_buf_printf(&l->out, "%-*s  ", (int)wu, r->lease);
		keep = cli_fit(r->filter,
		               width > used + 10 ? width - used - 1 : 10, &cut);
		cli_buf_add(&l->out, r->filter, keep);
		if (cut)
			cli_buf_adds(&l->out, "...");
		cli_buf_addc(&l->out, '\n');
	}
}

int cmd_subscriptions(int table, const cli_conn *conn)
{
	list_ctx l;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	size_t i;
	int rc;

	memset(&l, 0, sizeof(l));
	l.table = table;
	if ((rc = cli_open_store(&store, conn, 1)) != EXIT_OK)
		return rc;
	if (evs_store_subscriptions(store, NULL, list_one, &l, &err) < 0) {
		rc = cli_store_fail(&err, NULL);
	} else {
		if (table)
			list_table(&l);
		rc = EXIT_OK;
		if ((l.out.len > 0 &&
		     fwrite(l.out.p, 1, l.out.len, stdout) != l.out.len) ||
		    fflush(stdout) != 0)
			rc = cli_fail(EXIT_ERR, "could not write the "
			              "output: %s",
			              strerror(errno ? errno : EIO));
	}
	for (i = 0; i < l.n; i++) {
		free(l.rows[i].name);
		free(l.rows[i].filter);
		free(l.rows[i].owner);
	}
	free(l.rows);
	free(l.out.p);
	evs_store_free(store);
	evs_error_clear(&err);
	return rc;
}

/* ---- the feed, for status ---------------------------------------------- */

/* A duration in seconds as "45s", "12m 5s" or "3h 20m". */
static void format_age(char *out, size_t size, int64_t s)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		snprintf(out, size, "%llds", (long long)s);
	else if (s < 3600)
		snprintf(out, size, "%lldm %llds", (long long)(s / 60),
		         (long long)(s % 60));
	else
		snprintf(out, size, "%lldh %lldm", (long long)(s / 3600),
		         (long long)(s / 60 % 60));
}

int feed_status(const cli_conn *conn)
{
	evs_feed_info fi;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	char pos[CLI_POSITION_LEN], at[CLI_TIME_LEN], age[32];
	int rc, empty, waiting;

	if ((rc = cli_open_store(&store, conn, 1)) != EXIT_OK)
		return rc;
	if (evs_store_feed_info(&fi, store, &err) < 0) {
		rc = cli_store_fail(&err, NULL);
		goto done;
	}
	empty = fi.head.commit == 0 && fi.head.global == 0;
	/* The head is the newest event, readable or not: at or above the
	 * fence, it waits for the transaction that holds the fence. */
	waiting = !empty && fi.fence > 0 && fi.head.commit >= fi.fence;
	cli_format_position(pos, &fi.head);
	printf("feed head:     %s\n", empty ? "none" : pos);
	printf("fence:         %llu (%s)\n", (unsigned long long)fi.fence,
	       waiting ? "the newest events wait for the transaction "
	                 "holding it"
	               : "every stored event is readable");
	printf("fence held by: ");
	if (fi.holder_pid != 0) {
		printf("pid %d, application \"%s\", %s, database \"%s\"",
		       fi.holder_pid, fi.holder_application, fi.holder_state,
		       fi.holder_database);
		if (fi.holder_xact_start != 0) {
			struct timespec now;

			clock_gettime(CLOCK_REALTIME, &now);
			cli_format_time(at, fi.holder_xact_start);
			format_age(age, sizeof(age),
			           ((int64_t)now.tv_sec * 1000000 +
			            now.tv_nsec / 1000 - fi.holder_xact_start) /
			                   1000000);
			printf(", transaction since %s (open %s)", at, age);
		}
		putchar('\n');
	} else if (fi.holder_prepared[0] != '\0') {
		printf("prepared transaction \"%s\" (COMMIT PREPARED or "
		       "ROLLBACK PREPARED ends it)\n", fi.holder_prepared);
	} else if (waiting) {
		printf("a transaction this role cannot see (see "
		       "pg_stat_activity)\n");
	} else {
		printf("none\n");
	}
	rc = EXIT_OK;
done:
	evs_store_free(store);
	evs_error_clear(&err);
	return rc;
}
