/* The store contract for subscriptions (include/evstore/subscription.h),
 * on every backend, through the public API only.
 *
 * On PostgreSQL every test shares one schema, and so one feed: a test
 * reads a category of its own (ct_id() made into a category, '-' turned
 * into '_'), event types of its own, or looks only at its own streams.
 * Every wait is a bounded loop of short waits. */
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "contract/contract_int.h"
#include "common/testutil.h"

/* The bound of every wait for the feed, a lease or a thread. */
#define WAIT_MS 5000
#define NAME_MAX_LEN 96

/* ---- helpers -------------------------------------------------------------- */

static int64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms)
{
	struct timespec ts;

	if (ms <= 0)
		return;
	ts.tv_sec = ms / 1000;
	ts.tv_nsec = (long)(ms % 1000) * 1000000L;
	nanosleep(&ts, NULL);
}

static int on_postgres(void)
{
	return strcmp(ct_backend->name, "postgres") == 0;
}

static int on_memory(void)
{
	return strcmp(ct_backend->name, "memory") == 0;
}

/* A category of this test's own: ct_id(base) with each '-' made '_'. */
static void make_cat(char *out, size_t size, const char *base)
{
	char *p;

	snprintf(out, size, "%s", ct_id(base));
	for (p = out; *p; p++)
		if (*p == '-')
			*p = '_';
}

static void make_stream(char *out, size_t size, const char *cat,
                        const char *rest)
{
	snprintf(out, size, "%s-%s", cat, rest);
}

/* A copy of ct_id(base), which rotates through static buffers. */
static void make_name(char *out, size_t size, const char *base)
{
	snprintf(out, size, "%s", ct_id(base));
}

/* Appends count events of `type` whose data are {"n": first + i}. */
static void append_typed(const char *id, int64_t expected, const char *type,
                         int first, size_t count)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *evs[16];
	size_t i;
	int rc;

	ck_assert_uint_le(count, 16);
	for (i = 0; i < count; i++)
		evs[i] = ct_event(type, first + (int)i);
	rc = evs_store_append(NULL, ct_store, id, expected, evs, count, &err);
	ck_assert_msg(rc == 0, "append to \"%s\": %s", id,
	              err.message ? err.message : evs_strerror(rc));
	for (i = 0; i < count; i++)
		evs_event_free(evs[i]);
	evs_error_clear(&err);
}

static int data_n(const evs_event *ev)
{
	json_object *n = NULL;

	ck_assert(json_object_object_get_ex(evs_event_data(ev), "n", &n));
	return json_object_get_int(n);
}

/* Whether the stream id is in category cat (its part before the first
 * '-', or all of it). */
static int in_category(const char *id, const char *cat)
{
	size_t n = strcspn(id, "-");

	return strlen(cat) == n && memcmp(id, cat, n) == 0;
}

static int pos_cmp(const evs_position *a, const evs_position *b)
{
	if (a->commit != b->commit)
		return a->commit < b->commit ? -1 : 1;
	if (a->global != b->global)
		return a->global < b->global ? -1 : 1;
	return 0;
}

#define ASSERT_POS_EQ(a, b)                                                 \
	do {                                                                 \
		evs_position a_ = (a), b_ = (b);                             \
		ck_assert_msg(pos_cmp(&a_, &b_) == 0,                        \
		              "position (%llu, %lld) is not (%llu, %lld)",   \
		              (unsigned long long)a_.commit,                 \
		              (long long)a_.global,                          \
		              (unsigned long long)b_.commit,                 \
		              (long long)b_.global);                         \
	} while (0)

static evs_position checkpoint_of(const evs_event *ev)
{
	evs_position p;

	evs_event_checkpoint(&p, ev);
	return p;
}

/* rc and err say `code`, and the message names `what`. */
#define ASSERT_REFUSED(rc, err, want, what)                                 \
	do {                                                                 \
		int rc_ = (rc);                                              \
		ck_assert_msg(rc_ == (want), "got %d (%s), not %d naming %s",\
		              rc_, (err).message ? (err).message : "-",      \
		              (want), (what));                               \
		ck_assert_int_eq((err).code, (want));                        \
		ck_assert_msg(tu_names((err).message, (what)),               \
		              "message \"%s\" does not name \"%s\"",         \
		              (err).message ? (err).message : "(null)",      \
		              (what));                                       \
	} while (0)

/* ---- what a handler saw ------------------------------------------------------ */

#define MAX_CALLS 512

typedef struct seen {
	const char *cat;         /* keep only this category's events; NULL:
	                            keep every event */
	evs_event **ev;          /* copies of the events kept, in order */
	size_t n, cap;
	size_t delivered;        /* events handed out, kept or not */
	evs_position last;       /* checkpoint of the last one handed out */
	int out_of_order;        /* checkpoints that did not grow */
	int calls;               /* handler calls, failed ones too */
	size_t sizes[MAX_CALLS]; /* events per call */
	int bad_batch;           /* an empty batch, or an index past its
	                            end that gave an event */
	int fail_call;           /* this call (from 1) fails; 0: none */
	int fail_code;
	evs_position failed_first; /* first event of the failed batch */
	int conn_null, conn_set; /* calls with(out) evs_sub_batch_conn() */
	const char *check_name;  /* read this subscription's stored
	                            checkpoint inside the handler */
	evs_position stored_inside;
} seen;

static void seen_init(seen *s, const char *cat)
{
	memset(s, 0, sizeof(*s));
	s->cat = cat;
}

static void seen_free(seen *s)
{
	size_t i;

	for (i = 0; i < s->n; i++)
		evs_event_free(s->ev[i]);
	free(s->ev);
	s->ev = NULL;
	s->n = s->cap = 0;
}

/* What evs_store_subscriptions() says of one name (the row of member
 * `member`, and how many rows the name has, in which order). */
typedef struct listed {
	const char *name;
	unsigned int member;
	int rows;
	unsigned int members[8];
	int found;
	unsigned int group_size;
	char filter[512];
	evs_position position;
	int64_t lag;
	int has_owner;
	int64_t lease_until, lease_epoch, updated_at;
	int calls;
	int stop_with;           /* non-zero: returned by the callback */
} listed;

static int on_listed(const evs_sub_info *in, void *payload)
{
	listed *l = payload;

	l->calls++;
	if (l->stop_with)
		return l->stop_with;
	if (strcmp(in->name, l->name) != 0)
		return 0;
	if (l->rows < 8)
		l->members[l->rows] = in->member;
	l->rows++;
	if (in->member != l->member)
		return 0;
	l->found++;
	l->group_size = in->group_size;
	snprintf(l->filter, sizeof(l->filter), "%s", in->filter);
	l->position = in->position;
	l->lag = in->lag;
	l->has_owner = in->owner != NULL;
	l->lease_until = in->lease_until;
	l->lease_epoch = in->lease_epoch;
	l->updated_at = in->updated_at;
	return 0;
}

static void list_member(listed *out, const char *name, unsigned int member)
{
	evs_error err = EVS_ERROR_INIT;
	int rc;

	memset(out, 0, sizeof(*out));
	out->name = name;
	out->member = member;
	rc = evs_store_subscriptions(ct_store, name, on_listed, out, &err);
	ck_assert_msg(rc == 0, "evs_store_subscriptions: %s",
	              err.message ? err.message : evs_strerror(rc));
	evs_error_clear(&err);
}

static void list_sub(listed *out, const char *name)
{
	list_member(out, name, 0);
	ck_assert_msg(out->found == 1, "subscription \"%s\" listed %d times",
	              name, out->found);
}

/* The stored checkpoint of a subscription (member 0). */
static evs_position stored_position(const char *name)
{
	listed l;

	list_sub(&l, name);
	return l.position;
}

static int on_batch(evs_sub_batch *batch, void *payload, evs_error *err)
{
	seen *s = payload;
	size_t n = evs_sub_batch_count(batch), i;

	s->calls++;
	if (n == 0 || evs_sub_batch_get(batch, 0) == NULL ||
	    evs_sub_batch_get(batch, n) != NULL)
		s->bad_batch++;
	if (evs_sub_batch_conn(batch) == NULL)
		s->conn_null++;
	else
		s->conn_set++;
	if (s->check_name != NULL)
		s->stored_inside = stored_position(s->check_name);
	if (s->fail_call == s->calls) {
		evs_event_checkpoint(&s->failed_first,
		                     evs_sub_batch_get(batch, 0));
		return evs_error_set(err, s->fail_code, NULL,
		                     "the handler failed on purpose");
	}
	if (s->calls <= MAX_CALLS)
		s->sizes[s->calls - 1] = n;
	for (i = 0; i < n; i++) {
		const evs_event *ev = evs_sub_batch_get(batch, i);
		evs_position at = checkpoint_of(ev);

		if (s->delivered > 0 && pos_cmp(&at, &s->last) <= 0)
			s->out_of_order++;
		s->last = at;
		s->delivered++;
		if (s->cat != NULL &&
		    !in_category(evs_event_aggregate_id(ev), s->cat))
			continue;
		if (s->n == s->cap) {
			size_t cap = s->cap ? 2 * s->cap : 16;
			evs_event **p = realloc(s->ev, cap * sizeof(*p));

			ck_assert_ptr_nonnull(p);
			s->ev = p;
			s->cap = cap;
		}
		ck_assert_int_eq(evs_event_dup(&s->ev[s->n], ev, NULL), 0);
		s->n++;
	}
	return 0;
}

static evs_sub *open_sub(const evs_sub_options *o)
{
	evs_error err = EVS_ERROR_INIT;
	evs_sub *sub = NULL;
	int rc = evs_sub_open(&sub, ct_store, o, &err);

	ck_assert_msg(rc == 0, "evs_sub_open: %s",
	              err.message ? err.message : evs_strerror(rc));
	ck_assert_ptr_nonnull(sub);
	evs_error_clear(&err);
	return sub;
}

/* One poll that must not fail; returns what it handled. */
static int poll_once(evs_sub *sub, size_t max_events, seen *s)
{
	evs_error err = EVS_ERROR_INIT;
	int rc = evs_sub_poll(sub, max_events, on_batch, s, &err);

	ck_assert_msg(rc >= 0, "evs_sub_poll: %d %s", rc,
	              err.message ? err.message : evs_strerror(rc));
	ck_assert_int_eq(err.code, 0);
	evs_error_clear(&err);
	return rc;
}

/* Polls until s kept `want` events (a bounded wait: the PostgreSQL feed
 * may hold events back while another transaction runs), then once more:
 * exactly `want`, none twice. */
static void poll_until(evs_sub *sub, seen *s, size_t want)
{
	int64_t end = now_ms() + WAIT_MS;

	while (s->n < want && now_ms() < end)
		if (poll_once(sub, 0, s) == 0)
			sleep_ms(2);
	poll_once(sub, 0, s);
	ck_assert_msg(s->n == want, "kept %zu events, not %zu", s->n, want);
	ck_assert_int_eq(s->out_of_order, 0);
	ck_assert_int_eq(s->bad_batch, 0);
}

/* Checks a delivered event against what the store holds at its version. */
static void check_stored(const evs_event *ev)
{
	evs_event_list *list = NULL;
	const evs_event *st;
	evs_position a, b;

	ck_assert_int_eq(evs_store_load(&list, ct_store,
	                                evs_event_aggregate_id(ev),
	                                evs_event_version(ev) - 1, NULL), 0);
	st = evs_event_list_get(list, 0);
	ck_assert_ptr_nonnull(st);
	ck_assert(evs_uuid_equal(evs_event_id(st), evs_event_id(ev)));
	ck_assert_int_eq(evs_event_version(st), evs_event_version(ev));
	ck_assert_str_eq(evs_event_type(st), evs_event_type(ev));
	ck_assert_str_eq(evs_event_data_json(st), evs_event_data_json(ev));
	ck_assert_ptr_null(evs_event_metadata_json(ev));
	ck_assert_int_eq(evs_event_position(st), evs_event_position(ev));
	ck_assert_int_eq(evs_event_recorded_at(st), evs_event_recorded_at(ev));
	ck_assert_int_gt(evs_event_recorded_at(ev), 0);
	evs_event_checkpoint(&a, st);
	evs_event_checkpoint(&b, ev);
	ASSERT_POS_EQ(a, b);
	evs_event_list_free(list);
}

static void check_event(const evs_event *ev, const char *id, int64_t version,
                        int n)
{
	ck_assert_str_eq(evs_event_aggregate_id(ev), id);
	ck_assert_int_eq(evs_event_version(ev), version);
	ck_assert_int_eq(data_n(ev), n);
}

/* ---- delivery ------------------------------------------------------------- */

START_TEST(transient_sub_delivers_its_feed_once_in_order)
{
	static const char *const types[10] = {
		"sub.one", "sub.one", "sub.two", "sub.two", "sub.three",
		"sub.three", "sub.three", "sub.one", "sub.three", "sub.one"};
	static const int64_t versions[10] = {0, 1, 0, 2, 0, 1, 2, 1, 3, 2};
	char cat[NAME_MAX_LEN], a[128], b[128], c[128];
	const char *order[10];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_feed_info fi;
	evs_position pos;
	evs_sub *sub;
	seen s, d;
	size_t i;

	make_cat(cat, sizeof(cat), "feed");
	make_stream(a, sizeof(a), cat, "a");
	make_stream(b, sizeof(b), cat, "b");
	make_stream(c, sizeof(c), cat, "c");
	order[0] = order[1] = order[3] = order[8] = a;
	order[2] = order[7] = order[9] = b;
	order[4] = order[5] = order[6] = c;
	/* The whole feed, from just before this test's events (on
	 * PostgreSQL the schema holds every earlier test's events: reading
	 * all of them in pages of 4 would take minutes). */
	ck_assert_int_eq(evs_store_feed_info(&fi, ct_store, NULL), 0);
	o.start = EVS_SUB_FROM_POSITION;
	o.start_position = fi.head;
	/* Several streams, interleaved; one append of three. */
	append_typed(a, EVS_NO_VERSION, "sub.one", 0, 2);
	append_typed(b, EVS_NO_VERSION, "sub.two", 2, 1);
	append_typed(a, 1, "sub.two", 3, 1);
	append_typed(c, EVS_NO_VERSION, "sub.three", 4, 3);
	append_typed(b, 0, "sub.one", 7, 1);
	append_typed(a, 2, "sub.three", 8, 1);

	seen_init(&s, cat);
	o.batch_max = 4;
	sub = open_sub(&o);
	ck_assert_int_eq(evs_sub_active(sub), 1);
	poll_until(sub, &s, 9);
	for (i = 0; i < 9; i++) {
		const evs_event *ev = s.ev[i];

		check_event(ev, order[i], versions[i], (int)i);
		ck_assert_str_eq(evs_event_type(ev), types[i]);
		check_stored(ev);
		if (i > 0) {
			evs_position p = checkpoint_of(s.ev[i - 1]);
			evs_position q = checkpoint_of(ev);

			ck_assert_int_gt(evs_event_position(ev),
			                 evs_event_position(s.ev[i - 1]));
			ck_assert_int_lt(pos_cmp(&p, &q), 0);
		}
	}
	/* One append, one commit; a later append, a later one. */
	ck_assert(checkpoint_of(s.ev[4]).commit ==
	          checkpoint_of(s.ev[6]).commit);
	ck_assert(checkpoint_of(s.ev[3]).commit <
	          checkpoint_of(s.ev[4]).commit);
	ck_assert(checkpoint_of(s.ev[6]).commit <
	          checkpoint_of(s.ev[7]).commit);
	/* (On PostgreSQL the feed holds other tests' events too.) */
	for (i = 0; i < (size_t)s.calls && i < MAX_CALLS; i++)
		ck_assert_uint_le(s.sizes[i], 4);
	evs_sub_position(sub, &pos);
	ASSERT_POS_EQ(pos, s.last);

	/* Then it follows the feed: a new event, once. */
	append_typed(b, 1, "sub.one", 9, 1);
	poll_until(sub, &s, 10);
	check_event(s.ev[9], b, 2, 9);
	check_stored(s.ev[9]);
	evs_sub_free(sub);

	/* NULL options: a transient subscription of everything, from the
	 * start: its first page (and not the whole feed, on a shared
	 * schema), in the feed's order. */
	seen_init(&d, NULL);
	sub = NULL;
	ck_assert_int_eq(evs_sub_open(&sub, ct_store, NULL, NULL), 0);
	ck_assert_int_ge(poll_once(sub, 10, &d), 10);
	ck_assert_int_eq(d.out_of_order, 0);
	evs_sub_free(sub);
	seen_free(&s);
	seen_free(&d);
}
END_TEST

START_TEST(category_filter_reads_one_category)
{
	char cat[NAME_MAX_LEN], longer[NAME_MAX_LEN], s1[128], s2[128],
	     x1[128], x2[128];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	const char *ids[5];
	static const int64_t versions[5] = {0, 1, 0, 0, 2};
	static const int ns[5] = {0, 1, 3, 4, 6};
	evs_sub *sub;
	seen s;
	size_t i;

	make_cat(cat, sizeof(cat), "cat");
	make_cat(longer, sizeof(longer), "catx"); /* cat is its prefix */
	make_stream(s1, sizeof(s1), cat, "1");
	make_stream(s2, sizeof(s2), cat, "a-b"); /* up to the first '-' */
	make_stream(x1, sizeof(x1), longer, "1");
	snprintf(x2, sizeof(x2), "%s_1-1", cat);
	append_typed(s1, EVS_NO_VERSION, "sub.t", 0, 2);
	append_typed(x1, EVS_NO_VERSION, "sub.t", 2, 1);
	append_typed(s2, EVS_NO_VERSION, "sub.t", 3, 1);
	append_typed(cat, EVS_NO_VERSION, "sub.t", 4, 1); /* no '-': all */
	append_typed(x2, EVS_NO_VERSION, "sub.t", 5, 1);
	append_typed(s1, 1, "sub.t", 6, 1);
	ids[0] = ids[1] = ids[4] = s1;
	ids[2] = s2;
	ids[3] = cat;

	/* Keep every event delivered: all must be of the category. */
	seen_init(&s, NULL);
	o.category = cat;
	o.batch_max = 2;
	sub = open_sub(&o);
	poll_until(sub, &s, 5);
	for (i = 0; i < 5; i++) {
		check_event(s.ev[i], ids[i], versions[i], ns[i]);
		check_stored(s.ev[i]);
	}
	evs_sub_free(sub);
	seen_free(&s);

	/* The longer category sees only its own. */
	seen_init(&s, NULL);
	o.category = longer;
	sub = open_sub(&o);
	poll_until(sub, &s, 1);
	check_event(s.ev[0], x1, 0, 2);
	evs_sub_free(sub);
	seen_free(&s);
}
END_TEST

/* Opens a transient subscription with these filters and checks that it
 * delivers exactly the events whose "n" are `want` (in that order). */
static void expect_ns(const char *cat, const char *const *types,
                      const int *want, size_t n_want)
{
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_sub *sub;
	seen s;
	size_t i;

	seen_init(&s, NULL);
	o.category = cat;
	o.types = types;
	sub = open_sub(&o);
	poll_until(sub, &s, n_want);
	for (i = 0; i < n_want; i++) {
		const char *type = evs_event_type(s.ev[i]);
		size_t t;

		ck_assert_int_eq(data_n(s.ev[i]), want[i]);
		if (cat != NULL)
			ck_assert(in_category(evs_event_aggregate_id(s.ev[i]),
			                      cat));
		for (t = 0; types[t] != NULL; t++)
			if (strcmp(types[t], type) == 0)
				break;
		ck_assert_msg(types[t] != NULL, "type \"%s\" delivered",
		              type);
	}
	evs_sub_free(sub);
	seen_free(&s);
}

START_TEST(type_filters_read_those_types)
{
	char cat[NAME_MAX_LEN], other[NAME_MAX_LEN], c1[128], c2[128],
	     d1[128], alpha[NAME_MAX_LEN], beta[NAME_MAX_LEN],
	     gamma[NAME_MAX_LEN];
	const char *one[2], *two[3], *twice[3], *cat_two[3], *cat_one[2];
	static const int want_one[3] = {0, 3, 4};
	static const int want_two[5] = {0, 1, 3, 4, 5};
	static const int want_cat_two[3] = {0, 2, 4};
	static const int want_cat_one[2] = {1, 5};

	make_cat(cat, sizeof(cat), "typed");
	make_cat(other, sizeof(other), "other");
	make_stream(c1, sizeof(c1), cat, "1");
	make_stream(c2, sizeof(c2), cat, "2");
	make_stream(d1, sizeof(d1), other, "1");
	/* Types of this test's own: the type feeds hold only these. */
	make_name(alpha, sizeof(alpha), "alpha");
	make_name(beta, sizeof(beta), "beta");
	make_name(gamma, sizeof(gamma), "gamma");
	append_typed(c1, EVS_NO_VERSION, alpha, 0, 1);
	append_typed(c2, EVS_NO_VERSION, beta, 1, 1);
	append_typed(c1, 0, gamma, 2, 1);
	append_typed(d1, EVS_NO_VERSION, alpha, 3, 1);
	append_typed(c2, 0, alpha, 4, 1);
	append_typed(c1, 1, beta, 5, 1);

	one[0] = alpha;
	one[1] = NULL;
	expect_ns(NULL, one, want_one, 3);
	two[0] = beta;
	two[1] = alpha;
	two[2] = NULL;
	expect_ns(NULL, two, want_two, 5);
	/* A repeated type is that type once. */
	twice[0] = alpha;
	twice[1] = alpha;
	twice[2] = NULL;
	expect_ns(NULL, twice, want_one, 3);
	cat_two[0] = gamma;
	cat_two[1] = alpha;
	cat_two[2] = NULL;
	expect_ns(cat, cat_two, want_cat_two, 3);
	cat_one[0] = beta;
	cat_one[1] = NULL;
	expect_ns(cat, cat_one, want_cat_one, 2);
}
END_TEST

#define GROUP_STREAMS 30

START_TEST(group_of_three_splits_streams_whole)
{
	char cat[NAME_MAX_LEN], name[NAME_MAX_LEN], id[128];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_sub *subs[3];
	seen s[3];
	int owner[GROUP_STREAMS], count[GROUP_STREAMS];
	int64_t last[GROUP_STREAMS];
	int64_t end;
	size_t total = 0;
	int i, m, nonempty = 0;
	listed l;

	make_cat(cat, sizeof(cat), "grp");
	make_name(name, sizeof(name), "group");
	for (i = 0; i < GROUP_STREAMS; i++) {
		snprintf(id, sizeof(id), "%s-%d", cat, i);
		append_typed(id, EVS_NO_VERSION, "sub.g", i, 1);
	}
	for (i = 0; i < GROUP_STREAMS; i++) {
		snprintf(id, sizeof(id), "%s-%d", cat, i);
		append_typed(id, 0, "sub.g", GROUP_STREAMS + i, 1);
	}
	o.name = name;
	o.category = cat;
	o.group_size = 3;
	o.batch_max = 7;
	for (m = 0; m < 3; m++) {
		seen_init(&s[m], NULL);
		o.group_member = (unsigned int)m;
		subs[m] = open_sub(&o);
		ck_assert_int_eq(evs_sub_active(subs[m]), 1);
	}
	end = now_ms() + WAIT_MS;
	while (total < 2 * GROUP_STREAMS && now_ms() < end) {
		int got = 0;

		for (m = 0; m < 3; m++)
			got += poll_once(subs[m], 0, &s[m]);
		total = s[0].n + s[1].n + s[2].n;
		if (got == 0)
			sleep_ms(2);
	}
	for (m = 0; m < 3; m++)
		poll_once(subs[m], 0, &s[m]);
	total = s[0].n + s[1].n + s[2].n;
	ck_assert_uint_eq(total, 2 * GROUP_STREAMS);

	for (i = 0; i < GROUP_STREAMS; i++) {
		owner[i] = -1;
		count[i] = 0;
		last[i] = EVS_NO_VERSION;
	}
	for (m = 0; m < 3; m++) {
		size_t k;

		ck_assert_int_eq(s[m].out_of_order, 0);
		nonempty += s[m].n > 0;
		for (k = 0; k < s[m].n; k++) {
			const evs_event *ev = s[m].ev[k];
			const char *sid = evs_event_aggregate_id(ev);

			ck_assert(in_category(sid, cat));
			i = atoi(sid + strlen(cat) + 1);
			ck_assert(i >= 0 && i < GROUP_STREAMS);
			/* A stream is never split, and comes in order. */
			ck_assert_msg(owner[i] == -1 || owner[i] == m,
			              "stream %d went to members %d and %d", i,
			              owner[i], m);
			owner[i] = m;
			ck_assert_int_eq(evs_event_version(ev), last[i] + 1);
			last[i] = evs_event_version(ev);
			ck_assert_int_eq(data_n(ev),
			                 i + (int)last[i] * GROUP_STREAMS);
			count[i]++;
		}
	}
	/* Every event to exactly one member. */
	for (i = 0; i < GROUP_STREAMS; i++)
		ck_assert_int_eq(count[i], 2);
	/* 30 streams over 3 members: all on one would be a broken hash. */
	ck_assert_int_ge(nonempty, 2);

	/* Listed by name, then member. */
	list_member(&l, name, 2);
	ck_assert_int_eq(l.rows, 3);
	ck_assert_int_eq(l.found, 1);
	ck_assert_uint_eq(l.members[0], 0);
	ck_assert_uint_eq(l.members[1], 1);
	ck_assert_uint_eq(l.members[2], 2);
	ck_assert_uint_eq(l.group_size, 3);
	for (m = 0; m < 3; m++) {
		evs_sub_free(subs[m]);
		seen_free(&s[m]);
	}
}
END_TEST

/* ---- where a subscription starts ------------------------------------------ */

START_TEST(from_end_skips_what_came_before)
{
	char cat[NAME_MAX_LEN], s1[128], name[NAME_MAX_LEN];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_sub *sub;
	seen s;

	make_cat(cat, sizeof(cat), "end");
	make_stream(s1, sizeof(s1), cat, "1");
	make_name(name, sizeof(name), "end");
	append_typed(s1, EVS_NO_VERSION, "sub.e", 0, 3);

	/* A filtered one. */
	seen_init(&s, NULL);
	o.category = cat;
	o.start = EVS_SUB_FROM_END;
	sub = open_sub(&o);
	ck_assert_int_eq(poll_once(sub, 0, &s), 0);
	ck_assert_int_eq(s.calls, 0);
	append_typed(s1, 2, "sub.e", 3, 2);
	poll_until(sub, &s, 2);
	check_event(s.ev[0], s1, 3, 3);
	check_event(s.ev[1], s1, 4, 4);
	evs_sub_free(sub);
	seen_free(&s);

	/* One of the whole feed. */
	seen_init(&s, cat);
	o.category = NULL;
	sub = open_sub(&o);
	poll_once(sub, 0, &s);
	ck_assert_uint_eq(s.n, 0);
	append_typed(s1, 4, "sub.e", 5, 1);
	poll_until(sub, &s, 1);
	check_event(s.ev[0], s1, 5, 5);
	evs_sub_free(sub);
	seen_free(&s);

	/* A named one stores where it starts when first opened: an event
	 * appended while it is closed is still its. */
	seen_init(&s, NULL);
	o.category = cat;
	o.name = name;
	sub = open_sub(&o);
	evs_sub_free(sub);
	append_typed(s1, 5, "sub.e", 6, 1);
	sub = open_sub(&o);
	poll_until(sub, &s, 1);
	check_event(s.ev[0], s1, 6, 6);
	evs_sub_free(sub);
	seen_free(&s);
}
END_TEST

START_TEST(from_position_starts_after_a_checkpoint)
{
	char cat[NAME_MAX_LEN], s1[128], s2[128], name[NAME_MAX_LEN];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_position p[5];
	evs_sub *sub;
	seen all, s;
	size_t i;

	make_cat(cat, sizeof(cat), "frompos");
	make_stream(s1, sizeof(s1), cat, "1");
	make_stream(s2, sizeof(s2), cat, "2");
	make_name(name, sizeof(name), "frompos");
	append_typed(s1, EVS_NO_VERSION, "sub.p", 0, 2);
	append_typed(s2, EVS_NO_VERSION, "sub.p", 2, 1);
	append_typed(s1, 1, "sub.p", 3, 1);
	append_typed(s2, 0, "sub.p", 4, 1);
	seen_init(&all, NULL);
	o.category = cat;
	sub = open_sub(&o);
	poll_until(sub, &all, 5);
	evs_sub_free(sub);
	for (i = 0; i < 5; i++)
		p[i] = checkpoint_of(all.ev[i]);

	/* After the second event: the last three. */
	seen_init(&s, NULL);
	o.start = EVS_SUB_FROM_POSITION;
	o.start_position = p[1];
	sub = open_sub(&o);
	poll_until(sub, &s, 3);
	for (i = 0; i < 3; i++)
		ck_assert(evs_uuid_equal(evs_event_id(s.ev[i]),
		                         evs_event_id(all.ev[i + 2])));
	evs_sub_free(sub);
	seen_free(&s);

	/* After the last: nothing. */
	seen_init(&s, NULL);
	o.start_position = p[4];
	sub = open_sub(&o);
	ck_assert_int_eq(poll_once(sub, 0, &s), 0);
	evs_sub_free(sub);
	seen_free(&s);

	/* A named one starts there once; then its checkpoint rules. */
	seen_init(&s, NULL);
	o.name = name;
	o.start_position = p[2];
	sub = open_sub(&o);
	poll_until(sub, &s, 2);
	ck_assert_int_eq(data_n(s.ev[0]), 3);
	evs_sub_free(sub);
	o.start_position = p[0];
	sub = open_sub(&o);
	ck_assert_int_eq(poll_once(sub, 0, &s), 0);
	evs_sub_free(sub);
	seen_free(&s);
	seen_free(&all);
}
END_TEST

/* ---- checkpoints and delivery modes ------------------------------------------ */

START_TEST(named_sub_resumes_after_its_checkpoint)
{
	char cat[NAME_MAX_LEN], s1[128], name[NAME_MAX_LEN];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_position pos;
	evs_sub *sub;
	seen s, r;

	make_cat(cat, sizeof(cat), "resume");
	make_stream(s1, sizeof(s1), cat, "1");
	make_name(name, sizeof(name), "resume");
	append_typed(s1, EVS_NO_VERSION, "sub.r", 0, 5);
	seen_init(&s, NULL);
	o.name = name;
	o.category = cat;
	o.batch_max = 2;
	sub = open_sub(&o);
	ck_assert_int_eq(evs_sub_active(sub), 1);
	/* Whole batches: 3 asked, 4 handled. */
	ck_assert_int_eq(poll_once(sub, 3, &s), 4);
	ck_assert_uint_eq(s.n, 4);
	evs_sub_position(sub, &pos);
	ASSERT_POS_EQ(pos, checkpoint_of(s.ev[3]));
	evs_sub_free(sub);
	ASSERT_POS_EQ(stored_position(name), checkpoint_of(s.ev[3]));

	seen_init(&r, NULL);
	sub = open_sub(&o);
	evs_sub_position(sub, &pos);
	ASSERT_POS_EQ(pos, checkpoint_of(s.ev[3]));
	poll_until(sub, &r, 1);
	check_event(r.ev[0], s1, 4, 4);
	evs_sub_free(sub);
	sub = open_sub(&o);
	ck_assert_int_eq(poll_once(sub, 0, &r), 0);
	evs_sub_free(sub);
	seen_free(&s);
	seen_free(&r);
}
END_TEST

/* A deletion is a change subscribers must hear of: a category
 * subscription gets every marker, in order, and none of the events a
 * hard delete removed before it read them; a checkpoint that names a
 * removed event still resumes (no EVS_EREWOUND). */
static void lc_delete(const char *id, int64_t expected, unsigned int flags)
{
	evs_error err = EVS_ERROR_INIT;
	int rc = evs_store_delete(NULL, ct_store, id, expected, flags, &err);

	ck_assert_msg(rc == 0, "delete %s: %s", id,
	              err.message ? err.message : evs_strerror(rc));
	evs_error_clear(&err);
}

static void check_marker(const evs_event *ev, const char *id, int64_t version,
                         const char *type)
{
	ck_assert_str_eq(evs_event_aggregate_id(ev), id);
	ck_assert_int_eq(evs_event_version(ev), version);
	ck_assert_str_eq(evs_event_type(ev), type);
}

START_TEST(subscriber_sees_every_deletion_and_no_removed_event)
{
	char cat[NAME_MAX_LEN], s1[128], s2[128], s3[128], name[NAME_MAX_LEN];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_sub *sub;
	seen s, r;

	make_cat(cat, sizeof(cat), "lcsub");
	make_stream(s1, sizeof(s1), cat, "1");
	make_stream(s2, sizeof(s2), cat, "2");
	make_stream(s3, sizeof(s3), cat, "3");
	make_name(name, sizeof(name), "lcsub");
	append_typed(s1, EVS_NO_VERSION, "sub.l", 0, 3);
	seen_init(&s, NULL);
	o.name = name;
	o.category = cat;
	o.batch_max = 1;
	sub = open_sub(&o);
	poll_until(sub, &s, 3);
	check_event(s.ev[2], s1, 2, 2);
	/* Stored there: the checkpoint names s1's last event. */
	evs_sub_free(sub);

	lc_delete(s1, 2, EVS_DELETE_HARD);
	/* s3 is written and hard-deleted before the subscriber reads it. */
	append_typed(s3, EVS_NO_VERSION, "sub.l", 10, 3);
	lc_delete(s3, 2, EVS_DELETE_HARD);
	append_typed(s2, EVS_NO_VERSION, "sub.l", 20, 1);
	lc_delete(s2, 0, 0);
	ck_assert_int_eq(evs_store_undelete(NULL, ct_store, s2, 1, &err), 0);
	append_typed(s2, 2, "sub.l", 21, 1);

	seen_init(&r, NULL);
	sub = open_sub(&o);
	poll_until(sub, &r, 6);
	ck_assert_uint_eq(r.n, 6);
	check_marker(r.ev[0], s1, 3, EVS_TYPE_DELETED);
	check_marker(r.ev[1], s3, 3, EVS_TYPE_DELETED);
	check_event(r.ev[2], s2, 0, 20);
	check_marker(r.ev[3], s2, 1, EVS_TYPE_DELETED);
	check_marker(r.ev[4], s2, 2, EVS_TYPE_UNDELETED);
	check_event(r.ev[5], s2, 3, 21);
	ck_assert_int_eq(r.out_of_order, 0);
	ck_assert_int_eq(poll_once(sub, 0, &r), 0);
	evs_sub_free(sub);
	seen_free(&s);
	seen_free(&r);
	evs_error_clear(&err);
}
END_TEST

START_TEST(checkpoint_every_n_and_on_free)
{
	char cat[NAME_MAX_LEN], s1[128], name[NAME_MAX_LEN];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_position start = EVS_POSITION_START, pos;
	evs_sub *sub;
	seen s, r;
	size_t i;

	make_cat(cat, sizeof(cat), "every");
	make_stream(s1, sizeof(s1), cat, "1");
	make_name(name, sizeof(name), "every");
	append_typed(s1, EVS_NO_VERSION, "sub.c", 0, 10);
	seen_init(&s, NULL);
	o.name = name;
	o.category = cat;
	o.batch_max = 1;
	o.checkpoint_every = 4;
	sub = open_sub(&o);
	/* Opened from the start, and that is stored at once. */
	ASSERT_POS_EQ(stored_position(name), start);
	ck_assert_int_eq(poll_once(sub, 3, &s), 3);
	ASSERT_POS_EQ(stored_position(name), start);
	ck_assert_int_eq(poll_once(sub, 1, &s), 1);
	ASSERT_POS_EQ(stored_position(name), checkpoint_of(s.ev[3]));
	ck_assert_int_eq(poll_once(sub, 2, &s), 2);
	ASSERT_POS_EQ(stored_position(name), checkpoint_of(s.ev[3]));
	evs_sub_position(sub, &pos);
	ASSERT_POS_EQ(pos, checkpoint_of(s.ev[5]));
	/* Freed: what was handled is stored, and not handed out again. */
	evs_sub_free(sub);
	ASSERT_POS_EQ(stored_position(name), checkpoint_of(s.ev[5]));
	seen_init(&r, NULL);
	sub = open_sub(&o);
	poll_until(sub, &r, 4);
	for (i = 0; i < 4; i++)
		check_event(r.ev[i], s1, 6 + (int64_t)i, 6 + (int)i);
	evs_sub_free(sub);
	seen_free(&s);
	seen_free(&r);
}
END_TEST

START_TEST(handler_error_hands_the_batch_out_again)
{
	char cat[NAME_MAX_LEN], s1[128], name[NAME_MAX_LEN];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_position pos;
	evs_sub *sub;
	seen s;
	size_t i;

	make_cat(cat, sizeof(cat), "fail");
	make_stream(s1, sizeof(s1), cat, "1");
	make_name(name, sizeof(name), "fail");
	append_typed(s1, EVS_NO_VERSION, "sub.f", 0, 7);
	seen_init(&s, NULL);
	s.fail_call = 2;
	s.fail_code = -100;
	o.name = name;
	o.category = cat;
	o.batch_max = 3;
	sub = open_sub(&o);
	ck_assert_int_eq(evs_sub_poll(sub, 0, on_batch, &s, &err), -100);
	ck_assert_int_eq(err.code, -100);
	ck_assert_ptr_nonnull(err.message);
	ck_assert_ptr_nonnull(strstr(err.message, "failed on purpose"));
	evs_error_clear(&err);
	ck_assert_uint_eq(s.n, 3);
	/* The first batch counted; the second did not. */
	ASSERT_POS_EQ(stored_position(name), checkpoint_of(s.ev[2]));
	evs_sub_position(sub, &pos);
	ASSERT_POS_EQ(pos, checkpoint_of(s.ev[2]));
	/* The next poll hands it out again, then the rest. */
	poll_until(sub, &s, 7);
	ck_assert_int_eq(s.calls, 4);
	ASSERT_POS_EQ(checkpoint_of(s.ev[3]), s.failed_first);
	for (i = 0; i < 7; i++)
		check_event(s.ev[i], s1, (int64_t)i, (int)i);
	ASSERT_POS_EQ(stored_position(name), checkpoint_of(s.ev[6]));
	evs_sub_free(sub);
	seen_free(&s);
}
END_TEST

START_TEST(transactional_moves_the_checkpoint_on_success_only)
{
	char cat[NAME_MAX_LEN], s1[128], name[NAME_MAX_LEN];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_position start = EVS_POSITION_START, pos;
	evs_error err = EVS_ERROR_INIT;
	evs_sub *sub;
	seen s;

	make_cat(cat, sizeof(cat), "txn");
	make_stream(s1, sizeof(s1), cat, "1");
	make_name(name, sizeof(name), "txn");
	append_typed(s1, EVS_NO_VERSION, "sub.x", 0, 4);
	seen_init(&s, NULL);
	s.check_name = name;
	s.fail_call = 1;
	s.fail_code = -101;
	o.name = name;
	o.category = cat;
	o.mode = EVS_SUB_TRANSACTIONAL;
	o.batch_max = 2;
	o.checkpoint_every = 100; /* at-least-once only */
	sub = open_sub(&o);
	ck_assert_int_eq(evs_sub_poll(sub, 0, on_batch, &s, &err), -101);
	ck_assert_int_eq(err.code, -101);
	evs_error_clear(&err);
	ASSERT_POS_EQ(s.stored_inside, start);
	ASSERT_POS_EQ(stored_position(name), start);
	evs_sub_position(sub, &pos);
	ASSERT_POS_EQ(pos, start);

	poll_until(sub, &s, 4);
	ck_assert_int_eq(s.calls, 3);
	/* Inside the last handler call: the first batch's checkpoint. */
	ASSERT_POS_EQ(s.stored_inside, checkpoint_of(s.ev[1]));
	/* Stored with each batch, not every 100 events. */
	ASSERT_POS_EQ(stored_position(name), checkpoint_of(s.ev[3]));
	if (on_postgres()) {
		ck_assert_int_eq(s.conn_set, 3);
		ck_assert_int_eq(s.conn_null, 0);
	} else {
		ck_assert_int_eq(s.conn_null, 3);
		ck_assert_int_eq(s.conn_set, 0);
	}
	evs_sub_free(sub);
	ASSERT_POS_EQ(stored_position(name), checkpoint_of(s.ev[3]));
	sub = open_sub(&o);
	ck_assert_int_eq(poll_once(sub, 0, &s), 0);
	evs_sub_free(sub);
	seen_free(&s);

	/* At-least-once: no transaction on any backend. */
	seen_init(&s, NULL);
	o.name = NULL;
	o.mode = EVS_SUB_AT_LEAST_ONCE;
	sub = open_sub(&o);
	poll_until(sub, &s, 4);
	ck_assert_int_eq(s.conn_set, 0);
	evs_sub_free(sub);
	seen_free(&s);
}
END_TEST

/* ---- leases --------------------------------------------------------------- */

/* Polls a standby until it takes over (bounded), waiting as
 * evs_sub_timeout_ms() says, which is never more than poll_max_ms. */
static void wait_active(evs_sub *sub, seen *s, size_t max_events,
                        int poll_max_ms)
{
	int64_t end = now_ms() + WAIT_MS;

	while (!evs_sub_active(sub) && now_ms() < end) {
		int t = evs_sub_timeout_ms(sub);

		ck_assert_int_ge(t, 0);
		ck_assert_int_le(t, poll_max_ms);
		sleep_ms(t);
		poll_once(sub, max_events, s);
	}
	ck_assert_int_eq(evs_sub_active(sub), 1);
}

START_TEST(second_instance_waits_then_takes_over)
{
	char cat[NAME_MAX_LEN], s1[128], name[NAME_MAX_LEN];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_sub *a, *b;
	seen sa, sb;
	listed l;
	size_t i;

	make_cat(cat, sizeof(cat), "lease");
	make_stream(s1, sizeof(s1), cat, "1");
	make_name(name, sizeof(name), "lease");
	append_typed(s1, EVS_NO_VERSION, "sub.l", 0, 6);
	seen_init(&sa, NULL);
	seen_init(&sb, NULL);
	o.name = name;
	o.category = cat;
	o.batch_max = 1;
	o.checkpoint_every = 100;
	o.poll_max_ms = 20;
	a = open_sub(&o);
	ck_assert_int_eq(evs_sub_active(a), 1);
	ck_assert_int_eq(poll_once(a, 3, &sa), 3);

	b = open_sub(&o);
	ck_assert_int_eq(evs_sub_active(b), 0);
	ck_assert_int_eq(poll_once(b, 0, &sb), 0);
	ck_assert_int_eq(sb.calls, 0);
	ck_assert_int_le(evs_sub_timeout_ms(b), 20);
	ck_assert_int_eq(evs_sub_active(a), 1);
	list_sub(&l, name);
	ck_assert(l.has_owner);
	ck_assert_int_ge(l.lease_epoch, 1);
	ck_assert_int_gt(l.lease_until, 0);
	sleep_ms(30);
	ck_assert_int_eq(poll_once(b, 0, &sb), 0);
	ck_assert_int_eq(evs_sub_active(b), 0);

	/* Freed: a's checkpoint is stored and its lease released. */
	evs_sub_free(a);
	list_sub(&l, name);
	ck_assert(!l.has_owner);
	ck_assert_int_eq(l.lease_until, 0);
	ASSERT_POS_EQ(l.position, checkpoint_of(sa.ev[2]));
	wait_active(b, &sb, 0, 20);
	poll_until(b, &sb, 3);
	for (i = 0; i < 3; i++)
		check_event(sb.ev[i], s1, 3 + (int64_t)i, 3 + (int)i);
	evs_sub_free(b);
	seen_free(&sa);
	seen_free(&sb);
}
END_TEST

START_TEST(lost_lease_cannot_store_over_the_successor)
{
	char cat[NAME_MAX_LEN], s1[128], name[NAME_MAX_LEN];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_sub *a, *b, *c;
	seen sa, sb, sc;
	int64_t end;
	listed l;

	make_cat(cat, sizeof(cat), "fence");
	make_stream(s1, sizeof(s1), cat, "1");
	make_name(name, sizeof(name), "fence");
	append_typed(s1, EVS_NO_VERSION, "sub.f", 0, 4);
	seen_init(&sa, NULL);
	seen_init(&sb, NULL);
	seen_init(&sc, NULL);
	o.name = name;
	o.category = cat;
	o.batch_max = 1;
	/* Long enough that b's lease outlives the checks below on a loaded
	 * machine (b renews at half of it, only when it polls). */
	o.lease_ms = 800;
	o.poll_max_ms = 20;
	o.checkpoint_every = 100;
	a = open_sub(&o);
	ck_assert_int_eq(poll_once(a, 2, &sa), 2); /* handled, not stored */

	/* a stops renewing: b takes over once a's lease runs out, from the
	 * stored checkpoint (a's two events come again: at least once). */
	o.checkpoint_every = 0;
	b = open_sub(&o);
	ck_assert_int_eq(evs_sub_active(b), 0);
	wait_active(b, &sb, 1, 20);
	end = now_ms() + WAIT_MS;
	while (sb.n < 1 && now_ms() < end)
		poll_once(b, 1, &sb);
	ck_assert_uint_eq(sb.n, 1);
	check_event(sb.ev[0], s1, 0, 0);
	ASSERT_POS_EQ(stored_position(name), checkpoint_of(sb.ev[0]));

	/* a, freed still believing it is active, stores nothing over b's
	 * checkpoint (though a's is further on) and keeps b's lease. */
	evs_sub_free(a);
	list_sub(&l, name);
	ASSERT_POS_EQ(l.position, checkpoint_of(sb.ev[0]));
	ck_assert(l.has_owner);
	ck_assert_int_eq(evs_sub_active(b), 1);
	poll_until(b, &sb, 4);
	check_event(sb.ev[3], s1, 3, 3);
	ASSERT_POS_EQ(stored_position(name), checkpoint_of(sb.ev[3]));

	/* Now b stops renewing: c takes over, and b's next poll says
	 * EVS_ELEASE and hands nothing out. */
	c = open_sub(&o);
	ck_assert_int_eq(evs_sub_active(c), 0);
	wait_active(c, &sc, 0, 20);
	ck_assert_int_eq(evs_sub_poll(b, 0, on_batch, &sb, &err), EVS_ELEASE);
	ck_assert_int_eq(err.code, EVS_ELEASE);
	evs_error_clear(&err);
	ck_assert_int_eq(evs_sub_active(b), 0);
	ck_assert_int_eq(poll_once(b, 0, &sb), 0);
	ck_assert_uint_eq(sb.n, 4);
	ck_assert_uint_eq(sc.n, 0);
	evs_sub_free(b);
	list_sub(&l, name);
	ck_assert(l.has_owner);
	evs_sub_free(c);
	seen_free(&sa);
	seen_free(&sb);
	seen_free(&sc);
}
END_TEST

/* A reopening of `o` must be refused with EVS_EINVALID naming the
 * subscription, opening nothing. */
static void expect_mismatch(const evs_sub_options *o)
{
	evs_error err = EVS_ERROR_INIT;
	evs_sub *sub = (evs_sub *)&err; /* not NULL: must be set to NULL */
	int rc = evs_sub_open(&sub, ct_store, o, &err);

	if (rc == 0) {
		evs_sub_free(sub);
		ck_abort_msg("subscription \"%s\" reopened with another filter "
		             "or group (member %u of %u) was accepted", o->name,
		             o->group_member, o->group_size);
	}
	ck_assert_int_eq(rc, EVS_EINVALID);
	ck_assert_int_eq(err.code, EVS_EINVALID);
	ck_assert_ptr_null(sub);
	ck_assert_ptr_nonnull(strstr(err.message, o->name));
	evs_error_clear(&err);
}

START_TEST(name_reopened_with_another_filter_is_refused)
{
	char cat[NAME_MAX_LEN], cat2[NAME_MAX_LEN], name[NAME_MAX_LEN],
	     ta[NAME_MAX_LEN], tb[NAME_MAX_LEN];
	const char *types[3], *other[2], *both[3], *again[3];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT, x;
	evs_sub *sub;
	listed l;

	make_cat(cat, sizeof(cat), "mis");
	make_cat(cat2, sizeof(cat2), "mis2");
	make_name(name, sizeof(name), "mismatch");
	make_name(ta, sizeof(ta), "ta");
	make_name(tb, sizeof(tb), "tb");
	types[0] = ta;
	types[1] = NULL;
	other[0] = tb;
	other[1] = NULL;
	both[0] = tb;
	both[1] = ta;
	both[2] = NULL;
	again[0] = ta;
	again[1] = ta;
	again[2] = NULL;
	o.name = name;
	o.category = cat;
	o.types = types;
	sub = open_sub(&o);
	/* While it is open... */
	x = o;
	x.category = cat2;
	expect_mismatch(&x);
	evs_sub_free(sub);
	/* ... and after. */
	expect_mismatch(&x);
	x = o;
	x.category = NULL;
	expect_mismatch(&x);
	x = o;
	x.types = NULL;
	expect_mismatch(&x);
	x = o;
	x.types = other;
	expect_mismatch(&x);
	x = o;
	x.types = both;
	expect_mismatch(&x);
	x = o;
	x.group_size = 2;
	expect_mismatch(&x);
	/* Other options are not the filter; a type twice is that type. */
	x = o;
	x.types = again;
	x.batch_max = 5;
	x.poll_max_ms = 40;
	x.lease_ms = 1000;
	x.checkpoint_every = 3;
	x.start = EVS_SUB_FROM_END;
	sub = open_sub(&x);
	ck_assert_int_eq(evs_sub_active(sub), 1);
	evs_sub_free(sub);
	list_sub(&l, name);
	ck_assert_int_eq(l.rows, 1);
	ck_assert_uint_eq(l.group_size, 1);
}
END_TEST

START_TEST(group_member_of_a_name_stored_otherwise_is_refused)
{
	char cat[NAME_MAX_LEN], cat2[NAME_MAX_LEN], name[NAME_MAX_LEN],
	     gname[NAME_MAX_LEN];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT, x;
	evs_sub *sub;

	make_cat(cat, sizeof(cat), "gm");
	make_cat(cat2, sizeof(cat2), "gm2");
	make_name(name, sizeof(name), "nogroup");
	make_name(gname, sizeof(gname), "group3");
	/* Stored without a group: member 1 of 2 is another group size. */
	o.name = name;
	o.category = cat;
	sub = open_sub(&o);
	evs_sub_free(sub);
	x = o;
	x.group_size = 2;
	x.group_member = 1;
	expect_mismatch(&x);
	/* Stored as a group of 3 (by member 0): member 2 with another filter,
	 * or of a group of 4, is refused. */
	o.name = gname;
	o.group_size = 3;
	sub = open_sub(&o);
	evs_sub_free(sub);
	x = o;
	x.group_member = 2;
	x.category = cat2;
	expect_mismatch(&x);
	x = o;
	x.group_member = 3;
	x.group_size = 4;
	expect_mismatch(&x);
}
END_TEST

/* ---- polling ------------------------------------------------------------ */

START_TEST(max_events_and_batch_max_bound_a_poll)
{
	char cat[NAME_MAX_LEN], s1[128];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_sub *sub;
	seen s;
	size_t i;

	make_cat(cat, sizeof(cat), "bounds");
	make_stream(s1, sizeof(s1), cat, "1");
	append_typed(s1, EVS_NO_VERSION, "sub.b", 0, 5);
	append_typed(s1, 4, "sub.b", 5, 5);
	seen_init(&s, NULL);
	o.category = cat;
	o.batch_max = 3;
	sub = open_sub(&o);
	/* Whole batches: 4 asked, 2 batches of 3. */
	ck_assert_int_eq(poll_once(sub, 4, &s), 6);
	ck_assert_int_eq(s.calls, 2);
	ck_assert_uint_eq(s.sizes[0], 3);
	ck_assert_uint_eq(s.sizes[1], 3);
	ck_assert_int_eq(poll_once(sub, 1, &s), 3);
	ck_assert_int_eq(s.calls, 3);
	ck_assert_uint_eq(s.sizes[2], 3);
	ck_assert_int_eq(poll_once(sub, 0, &s), 1);
	ck_assert_uint_eq(s.sizes[3], 1);
	ck_assert_int_eq(poll_once(sub, 0, &s), 0);
	ck_assert_int_eq(s.calls, 4);
	for (i = 0; i < 10; i++)
		check_event(s.ev[i], s1, (int64_t)i, (int)i);
	evs_sub_free(sub);
	seen_free(&s);

	/* One event per call. */
	seen_init(&s, NULL);
	o.batch_max = 1;
	sub = open_sub(&o);
	ck_assert_int_eq(poll_once(sub, 0, &s), 10);
	ck_assert_int_eq(s.calls, 10);
	for (i = 0; i < 10; i++)
		ck_assert_uint_eq(s.sizes[i], 1);
	evs_sub_free(sub);
	seen_free(&s);

	/* The default (256), and the largest allowed: all in one call. */
	seen_init(&s, NULL);
	o.batch_max = 0;
	sub = open_sub(&o);
	ck_assert_int_eq(poll_once(sub, 0, &s), 10);
	ck_assert_int_eq(s.calls, 1);
	evs_sub_free(sub);
	seen_free(&s);
	seen_init(&s, NULL);
	o.batch_max = 100000;
	sub = open_sub(&o);
	ck_assert_int_eq(poll_once(sub, 0, &s), 10);
	ck_assert_int_eq(s.calls, 1);
	evs_sub_free(sub);
	seen_free(&s);
}
END_TEST

START_TEST(timeout_grows_while_idle_and_drops_after_events)
{
	char cat[NAME_MAX_LEN], s1[128];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	int t[8], k, rc;
	int64_t end;
	evs_sub *sub;
	seen s;

	make_cat(cat, sizeof(cat), "idle");
	make_stream(s1, sizeof(s1), cat, "1");
	seen_init(&s, NULL);
	o.category = cat;
	o.poll_min_ms = 10;
	o.poll_max_ms = 160;
	sub = open_sub(&o);
	ck_assert_int_eq(evs_sub_timeout_ms(sub), 0); /* poll at once */
	for (k = 0; k < 8; k++) {
		ck_assert_int_eq(poll_once(sub, 0, &s), 0);
		t[k] = evs_sub_timeout_ms(sub);
		ck_assert_int_ge(t[k], 0);
		ck_assert_int_le(t[k], 160);
		if (k > 0)
			ck_assert_msg(t[k] + 5 >= t[k - 1],
			              "idle timeout went from %d to %d ms",
			              t[k - 1], t[k]);
	}
	ck_assert_int_le(t[0], 10);
	ck_assert_msg(t[7] > 100, "idle timeout only grew to %d ms", t[7]);

	append_typed(s1, EVS_NO_VERSION, "sub.i", 0, 1);
	poll_until(sub, &s, 1);
	/* poll_until() polled once more, idle: one doubling at most. */
	ck_assert_int_le(evs_sub_timeout_ms(sub), 20);
	append_typed(s1, 0, "sub.i", 1, 1);
	end = now_ms() + WAIT_MS;
	while ((rc = poll_once(sub, 0, &s)) == 0 && now_ms() < end)
		sleep_ms(1);
	ck_assert_int_eq(rc, 1);
	ck_assert_int_le(evs_sub_timeout_ms(sub), 10);
	evs_sub_free(sub);
	seen_free(&s);
}
END_TEST

typedef struct run_state {
	evs_sub *sub;
	pthread_mutex_t lock;
	size_t handled;
	int rc;
	evs_error err;
} run_state;

static int on_run_batch(evs_sub_batch *batch, void *payload, evs_error *err)
{
	run_state *r = payload;

	(void)err;
	pthread_mutex_lock(&r->lock);
	r->handled += evs_sub_batch_count(batch);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static void *run_thread(void *arg)
{
	run_state *r = arg;

	r->rc = evs_sub_run(r->sub, on_run_batch, r, &r->err);
	return NULL;
}

static size_t run_handled(run_state *r)
{
	size_t n;

	pthread_mutex_lock(&r->lock);
	n = r->handled;
	pthread_mutex_unlock(&r->lock);
	return n;
}

/* Waits (bounded by ms) until the run handled `want` events. */
static int run_wait(run_state *r, size_t want, int ms)
{
	int64_t end = now_ms() + ms;

	while (run_handled(r) < want && now_ms() < end)
		sleep_ms(2);
	return run_handled(r) == want;
}

START_TEST(run_returns_when_stopped_from_another_thread)
{
	char cat[NAME_MAX_LEN], s1[128];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	run_state r;
	pthread_t th;
	int64_t t0, took;

	make_cat(cat, sizeof(cat), "run");
	make_stream(s1, sizeof(s1), cat, "1");
	append_typed(s1, EVS_NO_VERSION, "sub.run", 0, 3);
	memset(&r, 0, sizeof(r));
	pthread_mutex_init(&r.lock, NULL);
	r.err = (evs_error)EVS_ERROR_INIT;
	o.category = cat;
	/* Idle waits far longer than the test: only the stop (or the
	 * descriptor) may end them. */
	o.poll_min_ms = 10000;
	o.poll_max_ms = 10000;
	r.sub = open_sub(&o);
	ck_assert_int_eq(pthread_create(&th, NULL, run_thread, &r), 0);
	ck_assert_msg(run_wait(&r, 3, WAIT_MS), "the run handled %zu of 3",
	              run_handled(&r));
	if (evs_sub_fd(r.sub) >= 0) {
		/* It waits on the descriptor too: an append wakes it. */
		append_typed(s1, 2, "sub.run", 3, 2);
		ck_assert_msg(run_wait(&r, 5, 3000),
		              "the run handled %zu of 5 after an append",
		              run_handled(&r));
	}
	sleep_ms(20); /* into its long wait */
	t0 = now_ms();
	evs_sub_stop(r.sub);
	pthread_join(th, NULL);
	took = now_ms() - t0;
	ck_assert_msg(took < 2000, "the run took %lld ms to stop",
	              (long long)took);
	ck_assert_int_eq(r.rc, 0);
	ck_assert_int_eq(r.err.code, 0);
	evs_error_clear(&r.err);
	evs_sub_free(r.sub);
	pthread_mutex_destroy(&r.lock);
}
END_TEST

/* Whether fd becomes readable within ms. */
static int readable(int fd, int ms)
{
	struct pollfd p;

	p.fd = fd;
	p.events = POLLIN;
	p.revents = 0;
	return poll(&p, 1, ms) > 0 && (p.revents & POLLIN);
}

START_TEST(fd_becomes_readable_after_an_append)
{
	char cat[NAME_MAX_LEN], s1[128];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_sub *sub;
	seen s;
	int fd;

	make_cat(cat, sizeof(cat), "fd");
	make_stream(s1, sizeof(s1), cat, "1");
	seen_init(&s, NULL);
	o.category = cat;
	sub = open_sub(&o);
	fd = evs_sub_fd(sub);
	if (on_memory())
		ck_assert_int_ge(fd, 0);
	if (on_postgres())
		ck_assert_int_eq(fd, -1); /* EVS_WAKE_POLL: no descriptor */
	if (fd >= 0) {
		ck_assert_int_eq(poll_once(sub, 0, &s), 0);
		ck_assert(!readable(fd, 0));
		append_typed(s1, EVS_NO_VERSION, "sub.fd", 0, 1);
		ck_assert(readable(fd, 2000));
		poll_until(sub, &s, 1);
		/* A poll reads off what woke it. */
		ck_assert_int_eq(evs_sub_fd(sub), fd);
		ck_assert(!readable(fd, 0));
	} else {
		append_typed(s1, EVS_NO_VERSION, "sub.fd", 0, 1);
		poll_until(sub, &s, 1);
	}
	evs_sub_free(sub);

	seen_free(&s);

	/* EVS_WAKE_NOTIFY opens on both (the memory store always wakes). */
	seen_init(&s, NULL);
	o.wake = EVS_WAKE_NOTIFY;
	sub = open_sub(&o);
	fd = evs_sub_fd(sub);
	ck_assert_int_eq(poll_once(sub, 0, &s), 1);
	if (on_memory()) {
		ck_assert_int_ge(fd, 0);
		ck_assert(!readable(fd, 0));
		append_typed(s1, 0, "sub.fd", 1, 1);
		ck_assert(readable(fd, 2000));
	} else {
		append_typed(s1, 0, "sub.fd", 1, 1);
	}
	poll_until(sub, &s, 2);
	check_event(s.ev[1], s1, 1, 1);
	evs_sub_free(sub);
	seen_free(&s);
}
END_TEST

/* An event loop on a subscription: waits on evs_sub_fd() and
 * evs_sub_timeout_ms(), then polls, for about `ms`; returns how many
 * times it went round. */
static int event_loop(evs_sub *sub, seen *s, int ms)
{
	int64_t end = now_ms() + ms;
	int rounds = 0;

	while (now_ms() < end && rounds < 100000) {
		int fd = evs_sub_fd(sub), t = evs_sub_timeout_ms(sub);
		struct pollfd p;
		int64_t left = end - now_ms();

		if (t > left)
			t = (int)(left > 0 ? left : 0);
		p.fd = fd;
		p.events = POLLIN;
		p.revents = 0;
		if (fd >= 0)
			(void)poll(&p, 1, t);
		else
			sleep_ms(t);
		if (evs_sub_poll(sub, 0, on_batch, s, NULL) < 0)
			break;
		rounds++;
	}
	return rounds;
}

START_TEST(event_loop_on_a_standby_does_not_spin)
{
	char cat[NAME_MAX_LEN], s1[128], name[NAME_MAX_LEN];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_sub *a, *b;
	seen sa, sb;
	int active_rounds, standby_rounds;

	make_cat(cat, sizeof(cat), "spin");
	make_stream(s1, sizeof(s1), cat, "1");
	make_name(name, sizeof(name), "spin");
	seen_init(&sa, NULL);
	seen_init(&sb, NULL);
	o.name = name;
	o.category = cat;
	o.poll_min_ms = 20;
	o.poll_max_ms = 40;
	a = open_sub(&o);
	b = open_sub(&o);
	ck_assert_int_eq(evs_sub_active(b), 0);
	append_typed(s1, EVS_NO_VERSION, "sub.s", 0, 1);
	/* About 200 / 20..40 ms rounds each; thousands would be a busy
	 * loop. */
	active_rounds = event_loop(a, &sa, 200);
	standby_rounds = event_loop(b, &sb, 200);
	evs_sub_free(b);
	evs_sub_free(a);
	ck_assert_uint_eq(sa.n, 1);
	ck_assert_uint_eq(sb.n, 0);
	seen_free(&sa);
	seen_free(&sb);
	ck_assert_msg(active_rounds <= 40, "the active instance's loop went "
	              "round %d times in 200 ms", active_rounds);
	ck_assert_msg(standby_rounds <= 40, "the standby's loop went round "
	              "%d times in 200 ms: its descriptor stays readable "
	              "after evs_sub_poll()", standby_rounds);
}
END_TEST

/* ---- bad options and arguments --------------------------------------------- */

static int no_such_sub(const evs_sub_info *in, void *payload)
{
	return strcmp(in->name, (const char *)payload) == 0 ? 1 : 0;
}

START_TEST(bad_options_are_refused_naming_the_field)
{
	static const char *const seventeen[18] = {
		"t0", "t1", "t2",  "t3",  "t4",  "t5",  "t6",  "t7", "t8",
		"t9", "t10", "t11", "t12", "t13", "t14", "t15", "t16", NULL};
	static const char *const no_types[1] = {NULL};
	static const char *const empty_type[3] = {"ok", "", NULL};
	char name[NAME_MAX_LEN], long_name[300];
	evs_error err = EVS_ERROR_INIT;
	int i;

	make_name(name, sizeof(name), "badopts");
	memset(long_name, 'n', 256);
	long_name[256] = '\0';
	for (i = 0;; i++) {
		evs_sub_options o = EVS_SUB_OPTIONS_INIT;
		evs_sub *sub = (evs_sub *)&err; /* must come back NULL */
		const char *what;
		int code = EVS_EINVALID;

		o.name = name;
		switch (i) {
		case 0: o.name = ""; what = "opts->name"; break;
		case 1: o.name = long_name; what = "opts->name"; break;
		case 2: o.name = "bad\xff"; what = "opts->name"; break;
		case 3: o.name = "bad\nname"; what = "opts->name"; break;
		case 4: o.category = "a-b"; what = "opts->category"; break;
		case 5: o.category = ""; what = "opts->category"; break;
		case 6: o.types = no_types; what = "opts->types"; break;
		case 7: o.types = seventeen; what = "opts->types"; break;
		case 8: o.types = empty_type; what = "opts->types[1]"; break;
		case 9:
			o.group_size = 3;
			o.group_member = 3;
			what = "opts->group_member";
			break;
		case 10:
			o.group_member = 1;
			what = "opts->group_member";
			break;
		case 11:
			o.group_size = (1u << 20) + 1;
			what = "opts->group_size";
			break;
		case 12: o.mode = 2; what = "opts->mode"; break;
		case 13: o.start = 3; what = "opts->start"; break;
		case 14:
			o.start = EVS_SUB_FROM_POSITION;
			o.start_position.global = -1;
			what = "opts->start_position.global";
			break;
		case 15: o.wake = 2; what = "opts->wake"; break;
		case 16: o.batch_max = 100001; what = "opts->batch_max"; break;
		case 17: o.lease_ms = 99; what = "opts->lease_ms"; break;
		case 18:
			o.poll_min_ms = 100;
			o.poll_max_ms = 50;
			what = "opts->poll_min_ms";
			break;
		case 19:
			o.name = NULL;
			o.mode = EVS_SUB_TRANSACTIONAL;
			what = "name";
			break;
		/* A version this library does not know: EVS_EUNSUPPORTED,
		 * as for evs_pg_options (error.h: "the backend lacks the
		 * operation or version"). */
		case 20:
			o.version = 0;
			what = "version";
			code = EVS_EUNSUPPORTED;
			break;
		case 21:
			o.version = EVS_SUB_OPTIONS_VERSION + 1;
			what = "version";
			code = EVS_EUNSUPPORTED;
			break;
		default: what = NULL; break;
		}
		if (what == NULL)
			break;
		ASSERT_REFUSED(evs_sub_open(&sub, ct_store, &o, &err), err,
		               code, what);
		ck_assert_msg(sub == NULL, "case %d: out was not set to NULL",
		              i);
		evs_error_clear(&err);
	}
	/* Nothing was stored under the name. */
	ck_assert_int_eq(evs_store_subscriptions(ct_store, name, no_such_sub,
	                                         name, NULL), 0);
}
END_TEST

START_TEST(limits_of_the_options_are_accepted)
{
	static const char *const sixteen[17] = {
		"t0", "t1", "t2",  "t3",  "t4",  "t5",  "t6",  "t7", "t8",
		"t9", "t10", "t11", "t12", "t13", "t14", "t15", NULL};
	char name[EVS_ID_MAX + 1];
	size_t plen = strlen(ct_id(""));
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_sub *sub;
	seen s;
	listed l;

	/* A name of 255 bytes. */
	ck_assert_uint_lt(plen, EVS_ID_MAX);
	memcpy(name, ct_id(""), plen);
	memset(name + plen, 'n', EVS_ID_MAX - plen);
	name[EVS_ID_MAX] = '\0';
	o.name = name;
	o.types = sixteen;
	o.lease_ms = 100;
	o.batch_max = 100000;
	o.group_size = 1u << 20;
	o.group_member = (1u << 20) - 1;
	o.poll_min_ms = 50;
	o.poll_max_ms = 50;
	sub = open_sub(&o);
	ck_assert_int_eq(evs_sub_active(sub), 1);
	seen_init(&s, NULL);
	ck_assert_int_ge(poll_once(sub, 0, &s), 0);
	evs_sub_free(sub);
	seen_free(&s);
	list_member(&l, name, (1u << 20) - 1);
	ck_assert_int_eq(l.found, 1);
	ck_assert_uint_eq(l.group_size, 1u << 20);
}
END_TEST

START_TEST(bad_arguments_are_refused)
{
	evs_error err = EVS_ERROR_INIT;
	evs_position p = {7, 7};
	char empty[1] = "";
	evs_feed_info info;
	evs_sub *sub = (evs_sub *)&err;
	seen s;

	seen_init(&s, NULL);
	ASSERT_REFUSED(evs_sub_open(NULL, ct_store, NULL, &err), err,
	               EVS_EINVALID, "out");
	ASSERT_REFUSED(evs_sub_open(&sub, NULL, NULL, &err), err,
	               EVS_EINVALID, "store");
	ck_assert_ptr_null(sub);
	ASSERT_REFUSED(evs_sub_poll(NULL, 0, on_batch, &s, &err), err,
	               EVS_EINVALID, "sub");
	ASSERT_REFUSED(evs_sub_run(NULL, on_batch, &s, &err), err,
	               EVS_EINVALID, "sub");
	ASSERT_REFUSED(evs_store_feed_info(NULL, ct_store, &err), err,
	               EVS_EINVALID, "out");
	ASSERT_REFUSED(evs_store_feed_info(&info, NULL, &err), err,
	               EVS_EINVALID, "store");
	ASSERT_REFUSED(evs_store_subscriptions(NULL, NULL, no_such_sub, empty,
	                                       &err),
	               err, EVS_EINVALID, "store");
	ASSERT_REFUSED(evs_store_subscriptions(ct_store, NULL, NULL, NULL,
	                                       &err),
	               err, EVS_EINVALID, "cb");
	sub = open_sub(NULL);
	ASSERT_REFUSED(evs_sub_poll(sub, 0, NULL, NULL, &err), err,
	               EVS_EINVALID, "handler");
	ASSERT_REFUSED(evs_sub_run(sub, NULL, NULL, &err), err, EVS_EINVALID,
	               "handler");
	evs_sub_free(sub);
	evs_error_clear(&err);
	/* NULL handles: harmless answers. */
	evs_sub_free(NULL);
	evs_sub_stop(NULL);
	ck_assert_int_eq(evs_sub_active(NULL), 0);
	ck_assert_int_eq(evs_sub_fd(NULL), -1);
	evs_sub_position(NULL, &p);
	ck_assert(p.commit == 0 && p.global == 0);
	ck_assert_uint_eq(evs_sub_batch_count(NULL), 0);
	ck_assert_ptr_null(evs_sub_batch_get(NULL, 0));
	ck_assert_ptr_null(evs_sub_batch_conn(NULL));
}
END_TEST

/* ---- the feed and the stored subscriptions ------------------------------------- */

START_TEST(feed_info_head_moves_after_an_append)
{
	char cat[NAME_MAX_LEN], s1[128];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_feed_info a, b;
	evs_sub *sub;
	seen s;

	make_cat(cat, sizeof(cat), "head");
	make_stream(s1, sizeof(s1), cat, "1");
	ck_assert_int_eq(evs_store_feed_info(&a, ct_store, &err), 0);
	append_typed(s1, EVS_NO_VERSION, "sub.h", 0, 2);
	ck_assert_int_eq(evs_store_feed_info(&b, ct_store, &err), 0);
	ck_assert_int_gt(b.head.global, a.head.global);
	ck_assert(b.head.commit > a.head.commit);
	/* The head is the event just appended. */
	seen_init(&s, NULL);
	o.category = cat;
	sub = open_sub(&o);
	poll_until(sub, &s, 2);
	ASSERT_POS_EQ(b.head, checkpoint_of(s.ev[1]));
	evs_sub_free(sub);
	seen_free(&s);
	if (on_memory()) {
		ck_assert(b.fence == 0);
		ck_assert_int_eq(b.holder_pid, 0);
		ck_assert_str_eq(b.holder_prepared, "");
	} else {
		ck_assert(b.fence > 0);
	}
	evs_error_clear(&err);
}
END_TEST

/* The filter as listed: its category and its set of types. */
static void check_filter(const char *filter, const char *cat,
                         const char *const *types, size_t n_types)
{
	json_object *j = json_tokener_parse(filter), *c = NULL, *t = NULL;
	size_t i, k;

	ck_assert_msg(j != NULL, "filter \"%s\" is not JSON", filter);
	ck_assert(json_object_object_get_ex(j, "category", &c));
	if (cat == NULL)
		ck_assert(c == NULL);
	else
		ck_assert_str_eq(json_object_get_string(c), cat);
	ck_assert(json_object_object_get_ex(j, "types", &t));
	if (n_types == 0) {
		ck_assert(t == NULL);
	} else {
		ck_assert(json_object_is_type(t, json_type_array));
		ck_assert_uint_eq(json_object_array_length(t), n_types);
		for (i = 0; i < n_types; i++) {
			for (k = 0; k < n_types; k++)
				if (strcmp(json_object_get_string(
				           json_object_array_get_idx(t, k)),
				           types[i]) == 0)
					break;
			ck_assert_msg(k < n_types, "type \"%s\" not in %s",
			              types[i], filter);
		}
	}
	json_object_put(j);
}

static int count_calls(const evs_sub_info *in, void *payload)
{
	(void)in;
	++*(int *)payload;
	return 7;
}

START_TEST(subscriptions_are_listed_with_position_and_lag)
{
	char cat[NAME_MAX_LEN], other[NAME_MAX_LEN], c1[128], c2[128],
	     d1[128], name[NAME_MAX_LEN], ta[NAME_MAX_LEN], tb[NAME_MAX_LEN],
	     tc[NAME_MAX_LEN];
	const char *types[3];
	evs_sub_options o = EVS_SUB_OPTIONS_INIT;
	evs_position start = EVS_POSITION_START;
	evs_sub *sub, *tr;
	int64_t before_us;
	struct timespec ts;
	int calls = 0;
	listed l;
	seen s;

	make_cat(cat, sizeof(cat), "lag");
	make_cat(other, sizeof(other), "lagx");
	make_stream(c1, sizeof(c1), cat, "1");
	make_stream(c2, sizeof(c2), cat, "2");
	make_stream(d1, sizeof(d1), other, "1");
	make_name(name, sizeof(name), "listed");
	make_name(ta, sizeof(ta), "ta");
	make_name(tb, sizeof(tb), "tb");
	make_name(tc, sizeof(tc), "tc");
	append_typed(c1, EVS_NO_VERSION, ta, 0, 3);
	append_typed(c2, EVS_NO_VERSION, tc, 3, 2); /* not its types */
	append_typed(c2, 1, tb, 5, 2);
	append_typed(d1, EVS_NO_VERSION, ta, 7, 3); /* not its category */
	types[0] = tb;
	types[1] = ta;
	types[2] = NULL;
	clock_gettime(CLOCK_REALTIME, &ts);
	before_us = (int64_t)ts.tv_sec * 1000000 - 5000000;

	seen_init(&s, NULL);
	o.name = name;
	o.category = cat;
	o.types = types;
	o.batch_max = 2;
	sub = open_sub(&o);
	/* A transient subscription is not stored. */
	tr = open_sub(NULL);
	list_sub(&l, name);
	ck_assert_int_eq(l.rows, 1);
	ck_assert_uint_eq(l.group_size, 1);
	check_filter(l.filter, cat, types, 2);
	ASSERT_POS_EQ(l.position, start);
	ck_assert_int_eq(l.lag, 5);
	ck_assert(l.has_owner);
	ck_assert_int_ge(l.lease_epoch, 1);
	ck_assert_int_gt(l.lease_until, before_us);
	ck_assert_int_gt(l.updated_at, before_us);

	ck_assert_int_eq(poll_once(sub, 2, &s), 2);
	list_sub(&l, name);
	ASSERT_POS_EQ(l.position, checkpoint_of(s.ev[1]));
	ck_assert_int_eq(l.lag, 3);
	append_typed(c1, 2, ta, 10, 1);
	append_typed(d1, 2, ta, 11, 1);
	append_typed(c2, 3, tc, 12, 1);
	list_sub(&l, name);
	ck_assert_int_eq(l.lag, 4);
	evs_sub_free(sub);
	evs_sub_free(tr);
	/* Released; the checkpoint stays. */
	list_sub(&l, name);
	ck_assert(!l.has_owner);
	ck_assert_int_eq(l.lease_until, 0);
	ASSERT_POS_EQ(l.position, checkpoint_of(s.ev[1]));
	ck_assert_int_eq(l.lag, 4);
	/* The callback's non-zero value stops the listing: a name with two
	 * members lists two rows, and the callback sees one. (Not the
	 * listing of every subscription: on PostgreSQL the schema holds
	 * every earlier test's, each with its lag to count.) */
	o.group_size = 2;
	o.group_member = 1;
	make_name(name, sizeof(name), "listed2");
	o.name = name;
	sub = open_sub(&o);
	o.group_member = 0;
	tr = open_sub(&o);
	ck_assert_int_eq(evs_store_subscriptions(ct_store, name, count_calls,
	                                         &calls, NULL), 7);
	ck_assert_int_eq(calls, 1);
	evs_sub_free(sub);
	evs_sub_free(tr);
	seen_free(&s);
}
END_TEST

void ct_add_sub_tests(Suite *s)
{
	TCase *tc;

	tc = tcase_create("sub-delivery");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, transient_sub_delivers_its_feed_once_in_order);
	tcase_add_test(tc, category_filter_reads_one_category);
	tcase_add_test(tc, type_filters_read_those_types);
	tcase_add_test(tc, group_of_three_splits_streams_whole);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tc = tcase_create("sub-start");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, from_end_skips_what_came_before);
	tcase_add_test(tc, from_position_starts_after_a_checkpoint);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tc = tcase_create("sub-checkpoints");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, named_sub_resumes_after_its_checkpoint);
	tcase_add_test(tc, checkpoint_every_n_and_on_free);
	tcase_add_test(tc, handler_error_hands_the_batch_out_again);
	tcase_add_test(tc, transactional_moves_the_checkpoint_on_success_only);
	tcase_add_test(tc, subscriber_sees_every_deletion_and_no_removed_event);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tc = tcase_create("sub-leases");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, second_instance_waits_then_takes_over);
	tcase_add_test(tc, lost_lease_cannot_store_over_the_successor);
	tcase_add_test(tc, name_reopened_with_another_filter_is_refused);
	tcase_add_test(tc, group_member_of_a_name_stored_otherwise_is_refused);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tc = tcase_create("sub-polling");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, max_events_and_batch_max_bound_a_poll);
	tcase_add_test(tc, timeout_grows_while_idle_and_drops_after_events);
	tcase_add_test(tc, run_returns_when_stopped_from_another_thread);
	tcase_add_test(tc, fd_becomes_readable_after_an_append);
	tcase_add_test(tc, event_loop_on_a_standby_does_not_spin);
	tcase_set_timeout(tc, 30);
	suite_add_tcase(s, tc);

	tc = tcase_create("sub-options");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, bad_options_are_refused_naming_the_field);
	tcase_add_test(tc, limits_of_the_options_are_accepted);
	tcase_add_test(tc, bad_arguments_are_refused);
	suite_add_tcase(s, tc);

	tc = tcase_create("sub-info");
	tcase_add_checked_fixture(tc, ct_setup, ct_teardown);
	tcase_add_test(tc, feed_info_head_moves_after_an_append);
	tcase_add_test(tc, subscriptions_are_listed_with_position_and_lag);
	suite_add_tcase(s, tc);
}
