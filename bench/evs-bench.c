/* evs-bench: evstore's side of `make bench` (bench/run.sh runs it beside
 * pgbench). One process is one run of one workload; it prints one or two
 * machine-readable lines,
 *
 *   RESULT <workload> <threads> <events_per_s> <p50_ms> <p99_ms> <rss_mb>
 *
 * ("-" where a field does not apply), a human summary on stderr, and exits
 * non-zero when anything failed, including the end-of-run check that
 * every stream it wrote holds exactly the events it appended, in order.
 *
 * Run `evs-bench --help` for the commands.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <json-c/json.h>
#include <libpq-fe.h>

#include <evstore/evstore.h>

/* ---- options ------------------------------------------------------------ */

typedef struct {
	const char *cmd;
	const char *dsn;
	const char *schema;
	const char *label;   /* workload name in the RESULT line */
	const char *stream;  /* stream (load: prefix of the streams) */
	unsigned threads;
	double seconds;
	unsigned batch;
	unsigned streams;    /* per thread (append) or in all (load) */
	long long events;    /* load / stream: events expected per stream */
	int parse_json;      /* load / stream: also parse data and metadata */
	int max_attempts;    /* contend */
	const char *category; /* subscribe: the category to read */
	unsigned wake;       /* latency: EVS_WAKE_POLL or EVS_WAKE_NOTIFY */
	unsigned notify;     /* the store's evs_pg_options.notify */
	double interval_ms;  /* latency: each thread appends this often */
	unsigned subscribers; /* append: subscriptions following the appends */
	unsigned group_off;  /* the store's evs_pg_options.group_commit_off */
	unsigned shared;     /* append: streams shared by all threads (0) */
	unsigned width;      /* append: streams per evs_store_append_many() */
	unsigned in_flight;  /* the store's evs_pg_options.group_in_flight */
	unsigned pool;       /* the store's pool size (0: threads) */
	unsigned snapshot_format; /* snapload: the format loaded */
} options;

static void usage(FILE *f)
{
	fputs(
"usage: evs-bench COMMAND [options]\n"
"\n"
"Commands (each run is one process; see bench/run.sh):\n"
"  append   each thread appends batches of --batch events with an exact\n"
"           expected version, round-robin over --streams streams of its\n"
"           own (created untimed first), for --seconds\n"
"  contend  --threads threads run evs_repo_update() (load, decide, save,\n"
"           retry on conflict) on one new stream; reports successful\n"
"           appends/s and conflicts/s\n"
"  load     each thread loads one of --streams existing streams named\n"
"           STREAM-0, STREAM-1, ... (thread i: STREAM-(i mod streams)) with\n"
"           evs_store_load() and reads every event; each must hold\n"
"           --events events\n"
"  stream   evs_store_foreach() over the stream --stream once; it must hold\n"
"           --events events\n"
"  subscribe  a transient subscription (EVS_SUB_FROM_START) on --category,\n"
"           batch_max --batch, reads --events events (the category must\n"
"           hold exactly that many, in --streams streams CATEGORY-0,\n"
"           CATEGORY-1, ...) with a handler that counts and checks the\n"
"           order; timed until the last one was handled\n"
"  snapload one thread loads the stream --stream with\n"
"           evs_store_load_snapshot(), kind \"bench\", format\n"
"           --snapshot-format, for --seconds, decoding every event's JSON;\n"
"           the stream must hold --events events; a load is checked to\n"
"           end at the last one. Reports loads/s\n"
"  scavenge evs_store_scavenge() in steps of --batch events until it\n"
"           removes nothing; at least --events must go. Reports events/s\n"
"  latency  --threads threads append single events, each to --streams\n"
"           streams of its own in a new category, one every --interval-ms;\n"
"           one subscription (default options, --wake) follows the\n"
"           category with evs_sub_run(); latency = handler time - the time\n"
"           evs_store_append() returned (0 when the handler ran first:\n"
"           counted, see below)\n"
"\n"
"  append --shared K: every thread appends to K streams shared by all, at\n"
"  any version (EVS_ANY_VERSION), instead of streams of its own\n"
"  append --width W: each call is one atomic evs_store_append_many() of W\n"
"  requests, one per stream of the thread (--streams is W), each of\n"
"  --batch events at its exact version; events/s counts all of them\n"
"\n"
"  append --subscribers N: N subscriptions (default options, from the end\n"
"  of the feed) follow the category \"acct\" on threads of their own\n"
"  while the appends run, with handlers that count and check the order;\n"
"  they must deliver every event appended within 60 s of the end\n"
"\n", f);
	fputs(
"Options:\n"
"  --dsn CONNINFO     libpq conninfo (default: $EVS_TEST_PG_DSN)\n"
"  --schema NAME      evstore schema (default: evs_bench)\n"
"  --label NAME       workload name printed in the RESULT line\n"
"  --threads N        client threads sharing one store; pool size = N (1;\n"
"                     plus one per subscription for latency and\n"
"                     --subscribers)\n"
"  --seconds S        measured time of append, contend, load, latency (10)\n"
"  --batch B          events per append (1); subscribe: batch_max\n"
"  --streams K        append, latency: streams per thread (8); load:\n"
"                     streams (4); subscribe: streams of the category (8)\n"
"  --stream ID        load: stream-name prefix; stream: the stream\n"
"  --events N         load, stream: events each stream holds; subscribe:\n"
"                     events of the category\n"
"  --parse-json       load, stream: also parse each event's data and\n"
"                     metadata with json-c (evs_event_data/metadata)\n"
"  --max-attempts N   contend: attempts per evs_repo_update() (1000)\n"
"  --category NAME    subscribe: the category to read (feed)\n"
"  --wake poll|notify latency: the subscription's wake mode; notify also\n"
"                     opens the store with evs_pg_options.notify (poll)\n"
"  --interval-ms MS   latency: time between a thread's appends (2)\n"
"  --subscribers N    append: subscriptions following the appends (0)\n"
"  --group on|off     the store's group commit (evs_pg_options\n"
"                     .group_commit_off): on, the library's default (on)\n"
"  --in-flight N      the store's group_in_flight (0: the pool's size)\n"
"  --pool N           the store's pool size (0: --threads, plus\n"
"                     subscriptions)\n"
"  --shared K         append: K streams shared by all threads (0)\n"
"  --width W          append: requests per evs_store_append_many() (1)\n"
"  --help             this text\n"
"\n"
"Output: RESULT <workload> <threads> <events_per_s> <p50_ms> <p99_ms>\n"
"<rss_mb> on stdout (contend: a second line for conflicts/s; latency: a\n"
"second line, LABEL-early, for events/s whose handler ran before their\n"
"append returned), details on stderr. Exit status 0 when the run and its\n"
"check passed, 1 otherwise, 2 for bad usage. Latencies are per call (per\n"
"evs_repo_update for contend; per handler call, from the one before, for\n"
"subscribe; commit to handler, per event, for latency), taken from a\n"
"log-linear histogram (<1% error); RSS is the process's peak (getrusage\n"
"ru_maxrss).\n", f);
}

static int parse_args(options *o, int argc, char **argv)
{
	int i;

	memset(o, 0, sizeof(*o));
	o->dsn = getenv("EVS_TEST_PG_DSN");
	o->schema = "evs_bench";
	o->threads = 1;
	o->seconds = 10;
	o->batch = 1;
	o->events = -1;
	o->max_attempts = 1000;
	o->category = "feed";
	o->wake = EVS_WAKE_POLL;
	o->interval_ms = 2;
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		int takes = 1;

		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(a, "--parse-json") == 0) {
			o->parse_json = 1;
			takes = 0;
		} else if (a[0] != '-') {
			if (o->cmd != NULL) {
				fprintf(stderr, "evs-bench: one command only\n");
				return -1;
			}
			o->cmd = a;
			takes = 0;
		} else if (v == NULL) {
			fprintf(stderr, "evs-bench: %s needs a value\n", a);
			return -1;
		} else if (strcmp(a, "--dsn") == 0) {
			o->dsn = v;
		} else if (strcmp(a, "--schema") == 0) {
			o->schema = v;
		} else if (strcmp(a, "--label") == 0) {
			o->label = v;
		} else if (strcmp(a, "--stream") == 0) {
			o->stream = v;
		} else if (strcmp(a, "--threads") == 0) {
			o->threads = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--seconds") == 0) {
			o->seconds = strtod(v, NULL);
		} else if (strcmp(a, "--batch") == 0) {
			o->batch = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--streams") == 0) {
			o->streams = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--events") == 0) {
			o->events = strtoll(v, NULL, 10);
		} else if (strcmp(a, "--max-attempts") == 0) {
			o->max_attempts = atoi(v);
		} else if (strcmp(a, "--category") == 0) {
			o->category = v;
		} else if (strcmp(a, "--wake") == 0) {
			if (strcmp(v, "poll") == 0) {
				o->wake = EVS_WAKE_POLL;
			} else if (strcmp(v, "notify") == 0) {
				o->wake = EVS_WAKE_NOTIFY;
			} else {
				fprintf(stderr, "evs-bench: --wake poll or "
				                "notify\n");
				return -1;
			}
		} else if (strcmp(a, "--interval-ms") == 0) {
			o->interval_ms = strtod(v, NULL);
		} else if (strcmp(a, "--subscribers") == 0) {
			o->subscribers = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--group") == 0) {
			if (strcmp(v, "on") == 0) {
				o->group_off = 0;
			} else if (strcmp(v, "off") == 0) {
				o->group_off = 1;
			} else {
				fprintf(stderr, "evs-bench: --group on or off\n");
				return -1;
			}
		} else if (strcmp(a, "--in-flight") == 0) {
			o->in_flight = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--pool") == 0) {
			o->pool = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--shared") == 0) {
			o->shared = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--width") == 0) {
			o->width = (unsigned)strtoul(v, NULL, 10);
		} else if (strcmp(a, "--snapshot-format") == 0) {
			o->snapshot_format = (unsigned)strtoul(v, NULL, 10);
		} else {
			fprintf(stderr, "evs-bench: unknown option %s\n", a);
			return -1;
		}
		i += takes;
	}
	if (o->cmd == NULL) {
		fprintf(stderr, "evs-bench: no command given\n");
		return -1;
	}
	if (o->dsn == NULL) {
		fprintf(stderr, "evs-bench: no --dsn and no EVS_TEST_PG_DSN\n");
		return -1;
	}
	if (o->threads < 1 || o->threads > 256 || o->seconds <= 0 ||
	    o->batch < 1 || o->batch > 100000 || o->max_attempts < 1 ||
	    o->interval_ms <= 0 || o->subscribers > 64 || o->shared > 64 ||
	    o->width > 64 || (o->shared && o->width > 1)) {
		fprintf(stderr, "evs-bench: --threads 1..256, --seconds > 0, "
		                "--batch 1..100000, --max-attempts >= 1, "
		                "--interval-ms > 0, --subscribers 0..64, "
		                "--shared 0..64, --width 0..64, not both\n");
		return -1;
	}
	if (o->width > 1)
		o->streams = o->width;
	o->notify = strcmp(o->cmd, "latency") == 0 &&
	            o->wake == EVS_WAKE_NOTIFY;
	if (o->streams == 0)
		o->streams = strcmp(o->cmd, "load") == 0 ? 4 : 8;
	if (o->label == NULL)
		o->label = o->cmd;
	return 0;
}

/* ---- time, latency histogram, RSS ---------------------------------------- */

static int64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Log-linear buckets over nanoseconds: exact below 128 ns, then 64
 * buckets per power of two (a bucket is at most 1/64 wide; its midpoint
 * is within 0.8% of any value in it). Up to 2^46 ns (about 19 hours). */
#define H_SUB 64
#define H_LINEAR 128
#define H_MAXBIT 46
#define H_BUCKETS (H_LINEAR + (H_MAXBIT - 6) * H_SUB)

typedef struct {
	uint64_t count[H_BUCKETS];
	uint64_t n;
} histogram;

static size_t h_index(uint64_t v)
{
	int msb, shift;

	if (v < H_LINEAR)
		return (size_t)v;
	msb = 63 - __builtin_clzll(v);
	if (msb >= H_MAXBIT)
		return H_BUCKETS - 1;
	shift = msb - 6;
	return H_LINEAR + (size_t)(shift - 1) * H_SUB +
	       (size_t)((v >> shift) - H_SUB);
}

static double h_value(size_t idx)
{
	size_t shift, sub;

	if (idx < H_LINEAR)
		return (double)idx;
	shift = (idx - H_LINEAR) / H_SUB + 1;
	sub = (idx - H_LINEAR) % H_SUB + H_SUB;
	return ((double)sub + 0.5) * (double)((uint64_t)1 << shift);
}

static void h_add(histogram *h, int64_t ns)
{
	h->count[h_index(ns < 0 ? 0 : (uint64_t)ns)]++;
	h->n++;
}

static void h_merge(histogram *into, const histogram *from)
{
	size_t i;

	for (i = 0; i < H_BUCKETS; i++)
		into->count[i] += from->count[i];
	into->n += from->n;
}

/* The nearest-rank percentile, in milliseconds; -1 when empty. */
static double h_percentile_ms(const histogram *h, double p)
{
	uint64_t rank, seen = 0;
	size_t i;

	if (h->n == 0)
		return -1;
	rank = (uint64_t)(p * (double)h->n + 0.999999);
	if (rank < 1)
		rank = 1;
	for (i = 0; i < H_BUCKETS; i++) {
		seen += h->count[i];
		if (seen >= rank)
			return h_value(i) / 1e6;
	}
	return h_value(H_BUCKETS - 1) / 1e6;
}

static double peak_rss_mb(void)
{
	struct rusage ru;

	if (getrusage(RUSAGE_SELF, &ru) != 0)
		return -1;
	return (double)ru.ru_maxrss / 1024.0; /* Linux: kilobytes */
}

/* ---- results and failures -------------------------------------------- */

static int failed;
static pthread_mutex_t fail_lock = PTHREAD_MUTEX_INITIALIZER;

static void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void fail(const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&fail_lock);
	fputs("evs-bench: FAILED: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	failed = 1;
	pthread_mutex_unlock(&fail_lock);
}

static void fail_err(const char *what, int rc, const evs_error *err)
{
	fail("%s: %s (%s)", what, err->message ? err->message : "?",
	     evs_strerror(rc));
}

static void print_ms(char *buf, size_t n, double ms)
{
	if (ms < 0)
		snprintf(buf, n, "-");
	else
		snprintf(buf, n, "%.3f", ms);
}

static void result(const char *label, unsigned threads, double per_s,
                   const histogram *h, double rss)
{
	char p50[32], p99[32], r[32];

	print_ms(p50, sizeof(p50), h ? h_percentile_ms(h, 0.50) : -1);
	print_ms(p99, sizeof(p99), h ? h_percentile_ms(h, 0.99) : -1);
	if (rss < 0)
		snprintf(r, sizeof(r), "-");
	else
		snprintf(r, sizeof(r), "%.1f", rss);
	printf("RESULT %s %u %.1f %s %s %s\n", label, threads, per_s, p50, p99,
	       r);
	fflush(stdout);
}

/* ---- shared bits ------------------------------------------------------- */

static int open_store(evs_store **store, const options *o, unsigned pool)
{
	evs_pg_options po = EVS_PG_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	int rc;

	po.schema = o->schema;
	po.pool_size = o->pool ? o->pool : pool;
	po.pool_timeout_ms = 60000;
	po.notify = o->notify;
	po.group_commit_off = o->group_off;
	po.group_in_flight = o->in_flight;
	rc = evs_store_open_pg(store, o->dsn, &po, &err);
	if (rc < 0)
		fail_err("evs_store_open_pg", rc, &err);
	evs_error_clear(&err);
	return rc;
}

/* A 64-bit mix of an event id (for order-sensitive and order-free sums). */
static uint64_t id_hash(const evs_uuid *id)
{
	uint64_t a, b;

	memcpy(&a, id->bytes, 8);
	memcpy(&b, id->bytes + 8, 8);
	a ^= b * 0x9e3779b97f4a7c15ull;
	a ^= a >> 31;
	a *= 0xbf58476d1ce4e5b9ull;
	a ^= a >> 29;
	return a;
}

static uint64_t seq_hash(uint64_t h, const evs_uuid *id)
{
	return h * 0x100000001b3ull + id_hash(id);
}

/* The typical payload: ~150 bytes of data, ~115 of metadata, different
 * for every event. */
static void make_payload(char *data, size_t dn, char *meta, size_t mn,
                         const char *account, unsigned thread,
                         uint64_t seq)
{
	snprintf(data, dn,
	         "{\"account_id\":\"%.40s\",\"amount\":%" PRIu64 ",\"currency\":"
	         "\"EUR\",\"reference\":\"invoice 2024-%06" PRIu64 "\","
	         "\"channel\":\"online\",\"note\":\"monthly payment\"}",
	         account, 100 + seq * 7919 % 100000, seq % 1000000);
	snprintf(meta, mn,
	         "{\"correlation_id\":\"%08x-%04x-7%03x-8000-%012" PRIx64 "\","
	         "\"causation_id\":\"%08x-%04x-7%03x-9000-%012" PRIx64 "\","
	         "\"user\":\"teller-07\"}",
	         thread, (unsigned)(seq >> 48) & 0xffff, 0x1u, seq,
	         thread, (unsigned)(seq >> 48) & 0xffff, 0x2u, seq);
}

static int make_event(evs_event **ev, const char *account, unsigned thread,
                      uint64_t seq, evs_error *err)
{
	char data[256], meta[256];

	make_payload(data, sizeof(data), meta, sizeof(meta), account, thread,
	             seq);
	return evs_event_new_json(ev, "Deposited", data, meta, err);
}

typedef struct {
	pthread_barrier_t start;
	int64_t t0, deadline;
	pthread_mutex_t lock;
} run_clock;

/* All threads meet; one of them starts the clock for everyone. */
static void wait_start(run_clock *c, double seconds)
{
	if (pthread_barrier_wait(&c->start) == PTHREAD_BARRIER_SERIAL_THREAD) {
		pthread_mutex_lock(&c->lock);
		c->t0 = now_ns();
		c->deadline = c->t0 + (int64_t)(seconds * 1e9);
		pthread_mutex_unlock(&c->lock);
	}
	pthread_barrier_wait(&c->start);
}

static int64_t run_deadline(run_clock *c)
{
	int64_t d;

	pthread_mutex_lock(&c->lock);
	d = c->deadline;
	pthread_mutex_unlock(&c->lock);
	return d;
}

static void run_clock_init(run_clock *c, unsigned threads)
{
	pthread_barrier_init(&c->start, NULL, threads);
	pthread_mutex_init(&c->lock, NULL);
}

static void run_clock_destroy(run_clock *c)
{
	pthread_barrier_destroy(&c->start);
	pthread_mutex_destroy(&c->lock);
}

/* Counts the events of streams whose id starts with prefix, in SQL:
 * nothing may be stored beyond what the streams' own checks account for. */
static long long sql_count_prefix(const options *o, const char *prefix)
{
	char sql[512];
	char *schema;
	long long n = -1;
	PGconn *c = PQconnectdb(o->dsn);
	PGresult *r;

	if (PQstatus(c) != CONNECTION_OK) {
		fail("libpq: %s", PQerrorMessage(c));
		PQfinish(c);
		return -1;
	}
	schema = PQescapeIdentifier(c, o->schema, strlen(o->schema));
	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM %s.events WHERE stream_id >= $1 AND "
	         "stream_id < $1 || chr(1114111)", schema);
	PQfreemem(schema);
	r = PQexecParams(c, sql, 1, NULL, (const char *[]){prefix}, NULL, NULL,
	                 0);
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
		n = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	else
		fail("counting events: %s", PQerrorMessage(c));
	PQclear(r);
	PQfinish(c);
	return n;
}

/* Checks one stream: versions 0..n-1 in order, the expected count, and
 * the event ids (in version order, or as a set). */
typedef struct {
	int64_t next;
	uint64_t seq, sum;
	int bad;
} check_ctx;

static int check_one(const evs_event *ev, void *payload)
{
	check_ctx *c = payload;

	if (evs_event_version(ev) != c->next) {
		c->bad = 1;
		return 1;
	}
	c->next++;
	c->seq = seq_hash(c->seq, evs_event_id(ev));
	c->sum += id_hash(evs_event_id(ev));
	return 0;
}

static int check_stream(evs_store *store, const char *id, int64_t count,
                        const uint64_t *seq, const uint64_t *sum)
{
	evs_error err = EVS_ERROR_INIT;
	check_ctx c = {0, 0, 0, 0};
	int64_t head = EVS_NO_VERSION;
	int rc;

	rc = evs_store_foreach(store, id, EVS_NO_VERSION, check_one, &c, &err);
	if (rc < 0) {
		fail_err("check: reading back", rc, &err);
		evs_error_clear(&err);
		return -1;
	}
	rc = evs_store_current_version(&head, store, id, &err);
	evs_error_clear(&err);
	if (c.bad || c.next != count || head != count - 1 ||
	    (seq != NULL && c.seq != *seq) || (sum != NULL && c.sum != *sum)) {
		fail("check: stream %s holds %lld events (head %lld%s%s), "
		     "expected %lld%s", id, (long long)c.next, (long long)head,
		     c.bad ? ", versions out of order" : "",
		     (seq && c.seq != *seq) || (sum && c.sum != *sum)
		             ? ", other event ids" : "",
		     (long long)count, rc < 0 && rc != EVS_ENOTFOUND
		                               ? " (head unreadable)" : "");
		return -1;
	}
	return 0;
}

/* A run tag: distinct stream names for every run on the same schema. */
static void run_tag(char *out, size_t n)
{
	evs_uuid u;
	char text[EVS_UUID_STRLEN + 1];

	evs_uuid_generate(&u, NULL);
	evs_uuid_format(text, &u);
	/* The random tail, so that names sort anywhere among others. */
	snprintf(out, n, "%.8s", text + 28);
}

/* ---- append ------------------------------------------------------------ */

typedef struct {
	int64_t version;
	uint64_t seq;
	char id[64];
} stream_state;

/* A stream every thread appends to (append --shared). */
typedef struct {
	char id[64];
	uint64_t count; /* events appended (atomic) */
	uint64_t sum;   /* of their id hashes (atomic): the set check */
} shared_stream;

typedef struct {
	const options *o;
	evs_store *store;
	run_clock *clk;
	unsigned index;
	const char *tag;
	stream_state *streams;
	shared_stream *shared;
	histogram h;
	uint64_t appends, events;
	int64_t t_end;
} append_worker;

static void free_batch(evs_event **batch, unsigned n)
{
	unsigned b;

	for (b = 0; b < n; b++) {
		evs_event_free(batch[b]);
		batch[b] = NULL;
	}
}

/* append --shared: one append at any version to a shared stream. */
static void append_shared(append_worker *w, shared_stream *sh,
                          evs_event **batch, uint64_t *seq, int64_t t0)
{
	const options *o = w->o;
	evs_error err = EVS_ERROR_INIT;
	int64_t v = EVS_NO_VERSION;
	unsigned b;
	int rc = 0;

	for (b = 0; b < o->batch && rc == 0; b++)
		rc = make_event(&batch[b], sh->id, w->index, (*seq)++, &err);
	if (rc == 0)
		rc = evs_store_append(&v, w->store, sh->id, EVS_ANY_VERSION,
		                      batch, o->batch, &err);
	if (rc != 0) {
		fail_err("append", rc, &err);
	} else if (v < (int64_t)o->batch - 1) {
		fail("append to %s returned version %lld", sh->id,
		     (long long)v);
	} else {
		uint64_t sum = 0;

		h_add(&w->h, now_ns() - t0);
		w->appends++;
		w->events += o->batch;
		for (b = 0; b < o->batch; b++)
			sum += id_hash(evs_event_id(batch[b]));
		__atomic_add_fetch(&sh->count, o->batch, __ATOMIC_RELAXED);
		__atomic_add_fetch(&sh->sum, sum, __ATOMIC_RELAXED);
	}
	free_batch(batch, o->batch);
	evs_error_clear(&err);
}

/* append --width: one atomic call appending to each of the thread's
 * streams at its exact version. */
static void append_wide(append_worker *w, evs_event **batch, uint64_t *seq,
                        int64_t t0)
{
	const options *o = w->o;
	evs_error err = EVS_ERROR_INIT;
	evs_append_req reqs[64];
	evs_event **evs = calloc((size_t)o->width * o->batch, sizeof(*evs));
	unsigned k, b;
	int rc = evs == NULL ? EVS_ENOMEM : 0;

	(void)batch;
	for (k = 0; k < o->width && rc == 0; k++) {
		stream_state *s = &w->streams[k];

		for (b = 0; b < o->batch && rc == 0; b++)
			rc = make_event(&evs[k * o->batch + b], s->id, w->index,
			                (*seq)++, &err);
		memset(&reqs[k], 0, sizeof(reqs[k]));
		reqs[k].aggregate_id = s->id;
		reqs[k].expected_version = s->version;
		reqs[k].events = evs + k * o->batch;
		reqs[k].n_events = o->batch;
	}
	if (rc == 0)
		rc = evs_store_append_many(w->store, reqs, o->width,
		                           EVS_APPEND_ATOMIC, &err);
	if (rc != 0) {
		fail_err("append_many", rc, &err);
	} else {
		h_add(&w->h, now_ns() - t0);
		w->appends++;
		for (k = 0; k < o->width; k++) {
			stream_state *s = &w->streams[k];

			if (reqs[k].version != s->version + (int64_t)o->batch)
				fail("append_many to %s returned version %lld",
				     s->id, (long long)reqs[k].version);
			s->version = reqs[k].version;
			w->events += o->batch;
			for (b = 0; b < o->batch; b++)
				s->seq = seq_hash(s->seq, evs_event_id(
				                          evs[k * o->batch + b]));
		}
	}
	if (evs != NULL)
		free_batch(evs, o->width * o->batch);
	free(evs);
	evs_error_clear(&err);
}

static void *append_main(void *arg)
{
	append_worker *w = arg;
	const options *o = w->o;
	evs_error err = EVS_ERROR_INIT;
	evs_event **batch = calloc(o->batch, sizeof(*batch));
	uint64_t seq = 0;
	int64_t deadline;
	unsigned k, i;
	int rc;

	if (batch == NULL) {
		fail("out of memory");
		goto meet;
	}
	/* Untimed: create the thread's streams, one event each. */
	for (k = 0; k < o->streams && !failed && !o->shared; k++) {
		stream_state *s = &w->streams[k];
		evs_event *ev = NULL;

		snprintf(s->id, sizeof(s->id), "acct-%s-t%02u-s%02u", w->tag,
		         w->index, k);
		rc = make_event(&ev, s->id, w->index, seq++, &err);
		if (rc == 0)
			rc = evs_store_append(&s->version, w->store, s->id,
			                      EVS_NO_VERSION, &ev, 1, &err);
		if (rc == 0)
			s->seq = seq_hash(0, evs_event_id(ev));
		else
			fail_err("creating a stream", rc, &err);
		evs_event_free(ev);
	}
meet:
	wait_start(w->clk, o->seconds);
	deadline = run_deadline(w->clk);
	for (i = 0; !failed && batch != NULL; i++) {
		stream_state *s = &w->streams[i % o->streams];
		int64_t t0 = now_ns(), t1, v = EVS_NO_VERSION;
		unsigned b;

		if (t0 >= deadline)
			break;
		if (o->shared) {
			append_shared(w, &w->shared[(i + w->index) % o->shared],
			              batch, &seq, t0);
			continue;
		}
		if (o->width > 1) {
			append_wide(w, batch, &seq, t0);
			continue;
		}
		/* Building the events is part of the cost of an append. */
		for (b = 0, rc = 0; b < o->batch && rc == 0; b++)
			rc = make_event(&batch[b], s->id, w->index, seq++,
			                &err);
		if (rc == 0)
			rc = evs_store_append(&v, w->store, s->id, s->version,
			                      batch, o->batch, &err);
		t1 = now_ns();
		if (rc != 0) {
			fail_err("append", rc, &err);
		} else if (v != s->version + (int64_t)o->batch) {
			fail("append to %s returned version %lld, expected "
			     "%lld", s->id, (long long)v,
			     (long long)(s->version + o->batch));
		} else {
			h_add(&w->h, t1 - t0);
			s->version = v;
			w->appends++;
			w->events += o->batch;
			for (b = 0; b < o->batch; b++)
				s->seq = seq_hash(s->seq,
				                  evs_event_id(batch[b]));
		}
		for (b = 0; b < o->batch; b++) {
			evs_event_free(batch[b]);
			batch[b] = NULL;
		}
	}
	w->t_end = now_ns();
	free(batch);
	evs_error_clear(&err);
	return NULL;
}

static void *append_check_main(void *arg)
{
	append_worker *w = arg;
	unsigned k;

	if (w->o->shared) {
		/* Thread i checks the shared streams i, i + threads, ... */
		for (k = w->index; k < w->o->shared; k += w->o->threads)
			if (check_stream(w->store, w->shared[k].id,
			                 (int64_t)w->shared[k].count, NULL,
			                 &w->shared[k].sum) < 0)
				break;
		return NULL;
	}
	for (k = 0; k < w->o->streams; k++)
		if (check_stream(w->store, w->streams[k].id,
		                 w->streams[k].version + 1, &w->streams[k].seq,
		                 NULL) < 0)
			break;
	return NULL;
}

/* Subscriptions following the appends (append --subscribers): default
 * options (polling), from the end of the feed, on threads of their own;
 * each handler counts the run's events and checks that every stream's
 * versions arrive in order, with no gap and no repeat. */
typedef struct {
	const options *o;
	evs_store *store;
	run_clock *clk;
	const char *prefix;   /* "acct-TAG-": the run's streams */
	int64_t *next;        /* per stream (thread * streams + k) */
	evs_sub *sub;
	uint64_t delivered;   /* the run's events handled (atomic) */
	uint64_t others;      /* other streams of the category */
} follower;

static int follow_handler(evs_sub_batch *b, void *payload, evs_error *err)
{
	follower *f = payload;
	size_t i, n = evs_sub_batch_count(b), plen = strlen(f->prefix);
	uint64_t mine = 0;

	for (i = 0; i < n; i++) {
		const evs_event *ev = evs_sub_batch_get(b, i);
		const char *id = evs_event_aggregate_id(ev);
		unsigned t, k;
		int64_t *next;

		if (strncmp(id, f->prefix, plen) != 0) {
			f->others++;
			continue;
		}
		if (sscanf(id + plen, "t%u-s%u", &t, &k) != 2 ||
		    t >= f->o->threads || k >= f->o->streams) {
			fail("subscriber: an event of stream %s", id);
			return evs_error_set(err, EVS_ERROR, NULL, "check");
		}
		next = &f->next[t * f->o->streams + k];
		if (evs_event_version(ev) != *next) {
			fail("subscriber: %s version %lld, expected %lld", id,
			     (long long)evs_event_version(ev),
			     (long long)*next);
			return evs_error_set(err, EVS_ERROR, NULL, "check");
		}
		++*next;
		mine++;
	}
	__atomic_add_fetch(&f->delivered, mine, __ATOMIC_RELEASE);
	return 0;
}

/* Opened before any appender starts: from the end of the feed, so only
 * what commits from then on (the run's streams are all made after), and
 * the run does not depend on what the table held before. */
static int follower_open(follower *f)
{
	evs_sub_options so = EVS_SUB_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	int rc;

	so.category = "acct";
	so.start = EVS_SUB_FROM_END;
	rc = evs_sub_open(&f->sub, f->store, &so, &err);
	if (rc < 0)
		fail_err("evs_sub_open", rc, &err);
	evs_error_clear(&err);
	return rc;
}

static void *follow_main(void *arg)
{
	follower *f = arg;
	evs_error err = EVS_ERROR_INIT;
	int rc;

	wait_start(f->clk, f->o->seconds);
	if (f->sub != NULL &&
	    (rc = evs_sub_run(f->sub, follow_handler, f, &err)) < 0 &&
	    !failed)
		fail_err("evs_sub_run", rc, &err);
	evs_error_clear(&err);
	return NULL;
}

/* Waits until every follower handled `want` events of the run (or
 * `limit_s` passed), then stops them; returns the seconds it waited. */
static double followers_finish(follower *f, pthread_t *tid, unsigned n,
                               uint64_t want, double limit_s)
{
	int64_t t0 = now_ns(), t;
	unsigned i, done = 0;

	while (!failed && done < n) {
		for (i = 0, done = 0; i < n; i++)
			done += __atomic_load_n(&f[i].delivered,
			                        __ATOMIC_ACQUIRE) >= want;
		if (done == n || now_ns() - t0 > (int64_t)(limit_s * 1e9))
			break;
		nanosleep(&(struct timespec){0, 2000000}, NULL);
	}
	t = now_ns();
	for (i = 0; i < n; i++)
		evs_sub_stop(f[i].sub);
	for (i = 0; i < n; i++) {
		pthread_join(tid[i], NULL);
		if (!failed && f[i].delivered != want)
			fail("subscriber %u handled %llu events of the run, "
			     "expected %llu", i,
			     (unsigned long long)f[i].delivered,
			     (unsigned long long)want);
		evs_sub_free(f[i].sub);
		free(f[i].next);
	}
	return (double)(t - t0) / 1e9;
}

static int cmd_append(const options *o)
{
	evs_store *store = NULL;
	append_worker *w = calloc(o->threads, sizeof(*w));
	pthread_t *tid = calloc(o->threads, sizeof(*tid));
	histogram *all = calloc(1, sizeof(*all));
	follower *f = calloc(o->subscribers + 1, sizeof(*f));
	shared_stream *shared = calloc(o->shared + 1, sizeof(*shared));
	pthread_t *ftid = calloc(o->subscribers + 1, sizeof(*ftid));
	run_clock clk;
	char tag[16], prefix[32];
	uint64_t events = 0, appends = 0, stored = 0;
	int64_t t_end = 0;
	double secs, rss, catch_up = 0;
	unsigned t;
	long long counted;

	if (w == NULL || tid == NULL || all == NULL || f == NULL ||
	    ftid == NULL || shared == NULL) {
		fail("out of memory");
		return 1;
	}
	/* Subscribers take connections of the same pool, as in one
	 * process; they must not make the appenders wait for one. */
	if (open_store(&store, o, o->threads + o->subscribers) < 0)
		return 1;
	run_tag(tag, sizeof(tag));
	snprintf(prefix, sizeof(prefix), "acct-%s-", tag);
	for (t = 0; t < o->shared; t++)
		snprintf(shared[t].id, sizeof(shared[t].id), "acct-%s-hot%02u",
		         tag, t);
	run_clock_init(&clk, o->threads + o->subscribers);
	for (t = 0; t < o->subscribers; t++) {
		f[t].o = o;
		f[t].store = store;
		f[t].clk = &clk;
		f[t].prefix = prefix;
		f[t].next = calloc((size_t)o->threads * o->streams,
		                   sizeof(int64_t));
		if (f[t].next == NULL) {
			fail("out of memory");
			return 1;
		}
		follower_open(&f[t]);
		pthread_create(&ftid[t], NULL, follow_main, &f[t]);
	}
	for (t = 0; t < o->threads; t++) {
		w[t].o = o;
		w[t].store = store;
		w[t].clk = &clk;
		w[t].index = t;
		w[t].tag = tag;
		w[t].shared = shared;
		w[t].streams = calloc(o->streams, sizeof(stream_state));
		if (w[t].streams == NULL) {
			fail("out of memory");
			return 1;
		}
		pthread_create(&tid[t], NULL, append_main, &w[t]);
	}
	for (t = 0; t < o->threads; t++)
		pthread_join(tid[t], NULL);
	rss = peak_rss_mb();
	for (t = 0; t < o->threads; t++) {
		h_merge(all, &w[t].h);
		events += w[t].events;
		appends += w[t].appends;
		if (w[t].t_end > t_end)
			t_end = w[t].t_end;
	}
	secs = (double)(t_end - clk.t0) / 1e9;
	stored = events +
	         (o->shared ? 0 : (uint64_t)o->threads * o->streams);
	/* Untimed: the subscribers must have handled every event of the
	 * run, each stream in order. */
	if (o->subscribers > 0)
		catch_up = followers_finish(f, ftid, o->subscribers, stored, 60);
	/* The check: every stream, read back, holds exactly what we
	 * appended, in order; and nothing else is stored under the tag. */
	if (!failed) {
		for (t = 0; t < o->threads; t++)
			pthread_create(&tid[t], NULL, append_check_main, &w[t]);
		for (t = 0; t < o->threads; t++)
			pthread_join(tid[t], NULL);
	}
	if (!failed && (counted = sql_count_prefix(o, prefix)) >= 0 &&
	    (uint64_t)counted != stored)
		fail("check: %lld events stored under %s, expected %llu",
		     counted, prefix, (unsigned long long)stored);
	fprintf(stderr,
	        "evs-bench append: %u threads, batch %u, %u streams each: "
	        "%llu appends, %llu events in %.2f s; check %s\n",
	        o->threads, o->batch, o->streams, (unsigned long long)appends,
	        (unsigned long long)events, secs, failed ? "FAILED" : "ok");
	if (o->subscribers > 0)
		fprintf(stderr,
		        "evs-bench append: %u subscribers handled all %llu "
		        "events of the run, %.3f s after the appends ended\n",
		        o->subscribers, (unsigned long long)stored, catch_up);
	if (!failed)
		result(o->label, o->threads, (double)events / secs, all, rss);
	for (t = 0; t < o->threads; t++)
		free(w[t].streams);
	free(shared);
	free(f);
	free(ftid);
	run_clock_destroy(&clk);
	evs_store_free(store);
	free(w);
	free(tid);
	free(all);
	return failed;
}

/* ---- contend ------------------------------------------------------------ */

static int counter_create(void **state, const char *id, void *payload,
                          evs_error *err)
{
	(void)id;
	(void)payload;
	(void)err;
	*state = calloc(1, sizeof(int64_t));
	return *state == NULL ? EVS_ENOMEM : 0;
}

static int counter_apply(void *state, const evs_event *ev, void *payload,
                         evs_error *err)
{
	(void)ev;
	(void)payload;
	(void)err;
	++*(int64_t *)state;
	return 0;
}

static void counter_free(void *state, void *payload)
{
	(void)payload;
	free(state);
}

static const evs_aggregate_type counter_type = {
	EVS_AGGREGATE_TYPE_VERSION, "counter", counter_create, counter_apply,
	counter_free, NULL, 0, NULL, NULL,
};

typedef struct {
	const options *o;
	evs_repo *repo;
	run_clock *clk;
	const char *stream;
	unsigned index;
	uint64_t seq;
	uint64_t decides, ok, gave_up;
	uint64_t sum; /* order-free sum of the stored events' id hashes */
	evs_uuid last;
	histogram h;
	int64_t t_end;
} contend_worker;

static int contend_decide(evs_aggregate *agg, void *payload, evs_error *err)
{
	contend_worker *w = payload;
	evs_event *ev = NULL;
	int rc;

	w->decides++;
	rc = make_event(&ev, evs_aggregate_id(agg), w->index, w->seq++, err);
	if (rc < 0)
		return rc;
	w->last = *evs_event_id(ev);
	return evs_aggregate_raise(agg, ev, err);
}

static void *contend_main(void *arg)
{
	contend_worker *w = arg;
	evs_error err = EVS_ERROR_INIT;
	int64_t deadline;

	wait_start(w->clk, w->o->seconds);
	deadline = run_deadline(w->clk);
	while (!failed) {
		int64_t t0 = now_ns(), t1;
		int rc;

		if (t0 >= deadline)
			break;
		rc = evs_repo_update(NULL, w->repo, w->stream, 0,
		                     w->o->max_attempts, contend_decide, w,
		                     &err);
		t1 = now_ns();
		if (rc == 0) {
			h_add(&w->h, t1 - t0);
			w->ok++;
			w->sum += id_hash(&w->last);
		} else if (rc == EVS_ECONFLICT) {
			w->gave_up++;
		} else {
			fail_err("evs_repo_update", rc, &err);
		}
	}
	w->t_end = now_ns();
	evs_error_clear(&err);
	return NULL;
}

static int cmd_contend(const options *o)
{
	evs_store *store = NULL;
	evs_repo *repo = NULL;
	evs_error err = EVS_ERROR_INIT;
	contend_worker *w = calloc(o->threads, sizeof(*w));
	pthread_t *tid = calloc(o->threads, sizeof(*tid));
	histogram *all = calloc(1, sizeof(*all));
	evs_event *ev = NULL;
	run_clock clk;
	char tag[16], stream[64];
	uint64_t decides = 0, ok = 0, gave_up = 0, sum = 0, conflicts;
	int64_t t_end = 0;
	double secs, rss;
	unsigned t;
	int rc;

	if (w == NULL || tid == NULL || all == NULL) {
		fail("out of memory");
		return 1;
	}
	if (open_store(&store, o, o->threads) < 0)
		return 1;
	if ((rc = evs_repo_new(&repo, store, &counter_type, &err)) < 0) {
		fail_err("evs_repo_new", rc, &err);
		return 1;
	}
	run_tag(tag, sizeof(tag));
	snprintf(stream, sizeof(stream), "contend-%s", tag);
	/* Untimed: the stream starts with one event. */
	rc = make_event(&ev, stream, 999, 0, &err);
	if (rc == 0)
		rc = evs_store_append(NULL, store, stream, EVS_NO_VERSION, &ev,
		                      1, &err);
	if (rc < 0) {
		fail_err("creating the stream", rc, &err);
		return 1;
	}
	sum = id_hash(evs_event_id(ev));
	evs_event_free(ev);
	run_clock_init(&clk, o->threads);
	for (t = 0; t < o->threads; t++) {
		w[t].o = o;
		w[t].repo = repo;
		w[t].clk = &clk;
		w[t].stream = stream;
		w[t].index = t;
		pthread_create(&tid[t], NULL, contend_main, &w[t]);
	}
	for (t = 0; t < o->threads; t++)
		pthread_join(tid[t], NULL);
	rss = peak_rss_mb();
	for (t = 0; t < o->threads; t++) {
		h_merge(all, &w[t].h);
		decides += w[t].decides;
		ok += w[t].ok;
		gave_up += w[t].gave_up;
		sum += w[t].sum;
		if (w[t].t_end > t_end)
			t_end = w[t].t_end;
	}
	secs = (double)(t_end - clk.t0) / 1e9;
	/* Every attempt runs decide once; each attempt but the one that
	 * saved ended in a conflict. */
	conflicts = decides - ok;
	if (!failed) {
		uint64_t n = ok + 1;
		long long counted;

		check_stream(store, stream, (int64_t)n, NULL, &sum);
		counted = sql_count_prefix(o, stream);
		if (counted >= 0 && (uint64_t)counted != n)
			fail("check: %lld events stored in %s, expected %llu",
			     counted, stream, (unsigned long long)n);
	}
	fprintf(stderr,
	        "evs-bench contend: %u threads on %s: %llu saved, %llu "
	        "conflicts, %llu gave up after %d attempts, in %.2f s; "
	        "check %s\n", o->threads, stream, (unsigned long long)ok,
	        (unsigned long long)conflicts, (unsigned long long)gave_up,
	        o->max_attempts, secs, failed ? "FAILED" : "ok");
	if (!failed) {
		char label[128];

		snprintf(label, sizeof(label), "%s-ok", o->label);
		result(label, o->threads, (double)ok / secs, all, rss);
		snprintf(label, sizeof(label), "%s-conflicts", o->label);
		result(label, o->threads, (double)conflicts / secs, NULL, -1);
	}
	run_clock_destroy(&clk);
	evs_repo_free(repo);
	evs_store_free(store);
	evs_error_clear(&err);
	free(w);
	free(tid);
	free(all);
	return failed;
}

/* ---- load --------------------------------------------------------------- */

typedef struct {
	const options *o;
	evs_store *store;
	run_clock *clk;
	char stream[300];
	histogram h;
	uint64_t loads, events, bytes;
	int64_t t_end;
} load_worker;

/* What a caller does with a decoded event: read its fields. Returns -1
 * when the event is not the one expected at this place. */
static int read_event(const evs_event *ev, int64_t want_version,
                      int parse, uint64_t *bytes)
{
	const char *meta = evs_event_metadata_json(ev);

	if (evs_event_version(ev) != want_version)
		return -1;
	*bytes += strlen(evs_event_type(ev)) + strlen(evs_event_data_json(ev)) +
	          (meta ? strlen(meta) : 0) + (evs_event_id(ev)->bytes[0] & 1) +
	          (uint64_t)(evs_event_position(ev) & 1) +
	          (uint64_t)(evs_event_recorded_at(ev) & 1);
	if (parse) {
		json_object *d = evs_event_data(ev);
		json_object *m = evs_event_metadata(ev);

		*bytes += (uint64_t)json_object_object_length(d) +
		          (m ? (uint64_t)json_object_object_length(m) : 0);
	}
	return 0;
}

static void *load_main(void *arg)
{
	load_worker *w = arg;
	evs_error err = EVS_ERROR_INIT;
	int64_t deadline;

	wait_start(w->clk, w->o->seconds);
	deadline = run_deadline(w->clk);
	while (!failed) {
		evs_event_list *list = NULL;
		int64_t t0 = now_ns(), t1;
		size_t i, n;
		int rc;

		if (t0 >= deadline)
			break;
		rc = evs_store_load(&list, w->store, w->stream, EVS_NO_VERSION,
		                    &err);
		if (rc < 0) {
			fail_err("evs_store_load", rc, &err);
			break;
		}
		n = evs_event_list_count(list);
		for (i = 0; i < n; i++)
			if (read_event(evs_event_list_get(list, i), (int64_t)i,
			               w->o->parse_json, &w->bytes) < 0) {
				fail("load: %s: event %zu has version %lld",
				     w->stream, i,
				     (long long)evs_event_version(
					     evs_event_list_get(list, i)));
				break;
			}
		evs_event_list_free(list);
		t1 = now_ns();
		if ((long long)n != w->o->events)
			fail("load: %s holds %zu events, expected %lld",
			     w->stream, n, w->o->events);
		h_add(&w->h, t1 - t0);
		w->loads++;
		w->events += n;
	}
	w->t_end = now_ns();
	evs_error_clear(&err);
	return NULL;
}

static int cmd_load(const options *o)
{
	evs_store *store = NULL;
	load_worker *w = calloc(o->threads, sizeof(*w));
	pthread_t *tid = calloc(o->threads, sizeof(*tid));
	histogram *all = calloc(1, sizeof(*all));
	run_clock clk;
	uint64_t events = 0, loads = 0;
	int64_t t_end = 0;
	double secs, rss;
	unsigned t;

	if (w == NULL || tid == NULL || all == NULL) {
		fail("out of memory");
		return 1;
	}
	if (o->stream == NULL || o->events < 0) {
		fprintf(stderr, "evs-bench load: needs --stream and --events\n");
		return 2;
	}
	if (open_store(&store, o, o->threads) < 0)
		return 1;
	run_clock_init(&clk, o->threads);
	for (t = 0; t < o->threads; t++) {
		w[t].o = o;
		w[t].store = store;
		w[t].clk = &clk;
		snprintf(w[t].stream, sizeof(w[t].stream), "%s-%u", o->stream,
		         t % o->streams);
		pthread_create(&tid[t], NULL, load_main, &w[t]);
	}
	for (t = 0; t < o->threads; t++)
		pthread_join(tid[t], NULL);
	rss = peak_rss_mb();
	for (t = 0; t < o->threads; t++) {
		h_merge(all, &w[t].h);
		events += w[t].events;
		loads += w[t].loads;
		if (w[t].t_end > t_end)
			t_end = w[t].t_end;
	}
	secs = (double)(t_end - clk.t0) / 1e9;
	fprintf(stderr,
	        "evs-bench load: %u threads: %llu loads, %llu events in %.2f s%s;"
	        " check %s\n", o->threads, (unsigned long long)loads,
	        (unsigned long long)events, secs,
	        o->parse_json ? " (JSON parsed)" : "",
	        failed ? "FAILED" : "ok");
	if (!failed)
		result(o->label, o->threads, (double)events / secs, all, rss);
	run_clock_destroy(&clk);
	evs_store_free(store);
	free(w);
	free(tid);
	free(all);
	return failed;
}

/* ---- stream -------------------------------------------------------------- */

typedef struct {
	int64_t next;
	int parse;
	uint64_t bytes;
} stream_ctx;

static int stream_one(const evs_event *ev, void *payload)
{
	stream_ctx *c = payload;

	if (read_event(ev, c->next, c->parse, &c->bytes) < 0)
		return 1;
	c->next++;
	return 0;
}

static int cmd_stream(const options *o)
{
	evs_store *store = NULL;
	evs_error err = EVS_ERROR_INIT;
	stream_ctx c = {0, o->parse_json, 0};
	double before, rss, secs;
	int64_t t0, t1;
	int rc;

	if (o->stream == NULL || o->events < 0) {
		fprintf(stderr,
		        "evs-bench stream: needs --stream and --events\n");
		return 2;
	}
	if (open_store(&store, o, 1) < 0)
		return 1;
	before = peak_rss_mb();
	t0 = now_ns();
	rc = evs_store_foreach(store, o->stream, EVS_NO_VERSION, stream_one, &c,
	                       &err);
	t1 = now_ns();
	rss = peak_rss_mb();
	secs = (double)(t1 - t0) / 1e9;
	if (rc < 0)
		fail_err("evs_store_foreach", rc, &err);
	else if (rc > 0)
		fail("stream: event %lld is out of order", (long long)c.next);
	else if (c.next != o->events)
		fail("stream: %s holds %lld events, expected %lld", o->stream,
		     (long long)c.next, o->events);
	fprintf(stderr,
	        "evs-bench stream: %lld events (%.1f MB of text) in %.2f s; "
	        "peak RSS %.1f MB (%.1f MB after opening the store)%s; "
	        "check %s\n", (long long)c.next, (double)c.bytes / 1048576.0,
	        secs, rss, before, o->parse_json ? " (JSON parsed)" : "",
	        failed ? "FAILED" : "ok");
	if (!failed)
		result(o->label, 1, (double)c.next / secs, NULL, rss);
	evs_store_free(store);
	evs_error_clear(&err);
	return failed;
}

/* ---- snapload -------------------------------------------------------- */

typedef struct {
	int snapshots;
	int64_t after;  /* the snapshot's version, or -1 */
	int64_t next;   /* the version expected next */
	uint64_t bytes;
} snapload_ctx;

static int snapload_snapshot(int64_t version, const char *json, size_t len,
                             void *payload)
{
	snapload_ctx *c = payload;
	json_object *state = json_tokener_parse(json);

	if (state == NULL)
		return 1;
	json_object_put(state);
	c->snapshots++;
	c->after = version;
	c->next = version + 1;
	c->bytes += len;
	return 0;
}

static int snapload_event(const evs_event *ev, void *payload)
{
	snapload_ctx *c = payload;

	if (read_event(ev, c->next, 1, &c->bytes) < 0)
		return 1;
	c->next++;
	return 0;
}

static int cmd_snapload(const options *o)
{
	evs_store *store = NULL;
	evs_error err = EVS_ERROR_INIT;
	histogram *h = calloc(1, sizeof(*h));
	uint64_t loads = 0, events = 0;
	int64_t t0, t_end;
	double rss;
	int snapshots = 0, rc = 0;

	if (h == NULL) {
		fail("out of memory");
		return 1;
	}
	if (o->stream == NULL || o->events < 1 || o->snapshot_format == 0) {
		fprintf(stderr, "evs-bench snapload: needs --stream, --events "
		        "and --snapshot-format\n");
		free(h);
		return 2;
	}
	if (open_store(&store, o, 1) < 0) {
		free(h);
		return 1;
	}
	t0 = now_ns();
	t_end = t0 + (int64_t)(o->seconds * 1e9);
	while (!failed && now_ns() < t_end) {
		snapload_ctx c = {0, -1, 0, 0};
		int64_t s = now_ns();

		rc = evs_store_load_snapshot(store, o->stream, "bench",
		                             o->snapshot_format,
		                             snapload_snapshot, snapload_event,
		                             &c, &err);
		h_add(h, now_ns() - s);
		if (rc < 0)
			fail_err("evs_store_load_snapshot", rc, &err);
		else if (rc > 0 || c.next != o->events)
			fail("snapload: %s read up to version %lld, not %lld",
			     o->stream, (long long)c.next - 1,
			     (long long)o->events - 1);
		loads++;
		events += (uint64_t)(c.next - (c.after + 1));
		snapshots += c.snapshots;
	}
	t_end = now_ns();
	rss = peak_rss_mb();
	fprintf(stderr,
	        "evs-bench snapload: %llu loads (%d from a snapshot), %llu "
	        "events applied, in %.2f s; check %s\n",
	        (unsigned long long)loads, snapshots,
	        (unsigned long long)events, (double)(t_end - t0) / 1e9,
	        failed ? "FAILED" : "ok");
	if (!failed)
		result(o->label, 1, (double)loads / ((double)(t_end - t0) / 1e9),
		       h, rss);
	evs_store_free(store);
	evs_error_clear(&err);
	free(h);
	return failed;
}

/* ---- scavenge -------------------------------------------------------- */

static int cmd_scavenge(const options *o)
{
	evs_store *store = NULL;
	evs_error err = EVS_ERROR_INIT;
	histogram *h = calloc(1, sizeof(*h));
	size_t n, total = 0, steps = 0;
	int64_t t0, t1;
	int rc;

	if (h == NULL) {
		fail("out of memory");
		return 1;
	}
	if (o->batch < 1 || o->events < 1) {
		fprintf(stderr, "evs-bench scavenge: needs --batch and "
		        "--events\n");
		free(h);
		return 2;
	}
	if (open_store(&store, o, 1) < 0) {
		free(h);
		return 1;
	}
	t0 = now_ns();
	do {
		int64_t s = now_ns();

		rc = evs_store_scavenge(&n, store, o->batch, &err);
		h_add(h, now_ns() - s);
		if (rc < 0) {
			fail_err("evs_store_scavenge", rc, &err);
			break;
		}
		total += n;
		steps++;
	} while (n > 0);
	t1 = now_ns();
	if (!failed && (long long)total < o->events)
		fail("scavenge: removed %zu events, expected %lld", total,
		     o->events);
	fprintf(stderr, "evs-bench scavenge: %zu events in %zu steps of up "
	        "to %u in %.2f s; check %s\n", total, steps, o->batch,
	        (double)(t1 - t0) / 1e9, failed ? "FAILED" : "ok");
	if (!failed)
		result(o->label, 1, (double)total / ((double)(t1 - t0) / 1e9),
		       h, peak_rss_mb());
	evs_store_free(store);
	evs_error_clear(&err);
	free(h);
	return failed;
}

/* ---- subscribe -------------------------------------------------------- */

typedef struct {
	const options *o;
	size_t catlen;
	int64_t *next;      /* per stream: the version expected next */
	evs_position last;  /* of the last event handled */
	uint64_t count;
	int64_t t_prev, t_done;
	histogram h;        /* per handler call, from the one before */
} sub_ctx;

/* Counts, and checks the feed's order: positions increase, every
 * stream's versions come in order with no gap, all in the category. */
static int subscribe_handler(evs_sub_batch *b, void *payload, evs_error *err)
{
	sub_ctx *c = payload;
	size_t i, n = evs_sub_batch_count(b);
	int64_t now = now_ns();

	h_add(&c->h, now - c->t_prev);
	c->t_prev = now;
	for (i = 0; i < n; i++) {
		const evs_event *ev = evs_sub_batch_get(b, i);
		const char *id = evs_event_aggregate_id(ev);
		evs_position p;
		unsigned long k;
		char *end;

		evs_event_checkpoint(&p, ev);
		if (strncmp(id, c->o->category, c->catlen) != 0 ||
		    id[c->catlen] != '-' ||
		    (k = strtoul(id + c->catlen + 1, &end, 10),
		     *end != '\0') ||
		    k >= c->o->streams) {
			fail("subscribe: an event of stream %s", id);
			return evs_error_set(err, EVS_ERROR, NULL, "check");
		}
		if (evs_event_version(ev) != c->next[k] ||
		    p.commit < c->last.commit ||
		    (p.commit == c->last.commit && p.global <= c->last.global)) {
			fail("subscribe: %s version %lld (expected %lld) at "
			     "(%llu, %lld), after (%llu, %lld)", id,
			     (long long)evs_event_version(ev),
			     (long long)c->next[k],
			     (unsigned long long)p.commit, (long long)p.global,
			     (unsigned long long)c->last.commit,
			     (long long)c->last.global);
			return evs_error_set(err, EVS_ERROR, NULL, "check");
		}
		c->next[k]++;
		c->last = p;
		c->count++;
	}
	if (c->t_done == 0 && c->count >= (uint64_t)c->o->events)
		c->t_done = now_ns();
	return 0;
}

static int cmd_subscribe(const options *o)
{
	evs_store *store = NULL;
	evs_sub *sub = NULL;
	evs_sub_options so = EVS_SUB_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	sub_ctx c;
	double before, rss, secs;
	int64_t t0;
	unsigned k;
	int rc = 0;

	if (o->events < 1) {
		fprintf(stderr, "evs-bench subscribe: needs --events\n");
		return 2;
	}
	memset(&c, 0, sizeof(c));
	c.o = o;
	c.catlen = strlen(o->category);
	if ((c.next = calloc(o->streams, sizeof(int64_t))) == NULL) {
		fail("out of memory");
		return 1;
	}
	if (open_store(&store, o, 1) < 0)
		return 1;
	before = peak_rss_mb();
	so.category = o->category;
	so.start = EVS_SUB_FROM_START;
	so.batch_max = o->batch;
	t0 = now_ns();
	c.t_prev = t0;
	if ((rc = evs_sub_open(&sub, store, &so, &err)) < 0)
		fail_err("evs_sub_open", rc, &err);
	/* Whole batches up to the events expected: no read beyond them
	 * inside the timed part. */
	while (!failed && c.count < (uint64_t)o->events) {
		rc = evs_sub_poll(sub, (size_t)(o->events - (long long)c.count),
		                  subscribe_handler, &c, &err);
		if (rc <= 0) {
			if (rc < 0 && !failed)
				fail_err("evs_sub_poll", rc, &err);
			break;
		}
	}
	if (c.t_done == 0)
		c.t_done = now_ns();
	rss = peak_rss_mb();
	secs = (double)(c.t_done - t0) / 1e9;
	/* Untimed: nothing follows, and every stream was read whole. */
	if (!failed && (rc = evs_sub_poll(sub, 0, subscribe_handler, &c,
	                                  &err)) < 0)
		fail_err("evs_sub_poll", rc, &err);
	if (!failed && c.count != (uint64_t)o->events)
		fail("subscribe: %llu events in category %s, expected %lld",
		     (unsigned long long)c.count, o->category, o->events);
	for (k = 0; !failed && o->events % o->streams == 0 && k < o->streams;
	     k++)
		if (c.next[k] != o->events / o->streams)
			fail("subscribe: %s-%u gave %lld events, expected %lld",
			     o->category, k, (long long)c.next[k],
			     o->events / o->streams);
	fprintf(stderr,
	        "evs-bench subscribe: category %s, batch_max %u: %llu events "
	        "in %llu handler calls, %.2f s; peak RSS %.1f MB (%.1f MB "
	        "after opening the store); check %s\n", o->category, o->batch,
	        (unsigned long long)c.count, (unsigned long long)c.h.n, secs,
	        rss, before, failed ? "FAILED" : "ok");
	if (!failed)
		result(o->label, 1, (double)c.count / secs, &c.h, rss);
	evs_sub_free(sub);
	evs_store_free(store);
	evs_error_clear(&err);
	free(c.next);
	return failed;
}

/* ---- latency ------------------------------------------------------------ */

/* One timed append: its event's id (hashed), set before the call, and
 * when the call returned (0: not yet). Written by the appender, read by
 * the subscription's thread. */
typedef struct {
	uint64_t idh;
	int64_t ret;
} lat_slot;

typedef struct {
	const options *o;
	evs_store *store;
	run_clock *clk;
	unsigned index;
	const char *category;
	stream_state *streams;
	lat_slot *slots;    /* append i: stream i % streams, version
	                       1 + i / streams */
	size_t cap;
	uint64_t appends, late; /* late: started over an interval late */
	int64_t t_end;
} lat_writer;

static void *lat_write_main(void *arg)
{
	lat_writer *w = arg;
	const options *o = w->o;
	evs_error err = EVS_ERROR_INIT;
	int64_t interval = (int64_t)(o->interval_ms * 1e6), next, deadline;
	size_t i;
	unsigned k;
	int rc;

	/* Untimed: the thread's streams, one event each (version 0). */
	for (k = 0; k < o->streams && !failed; k++) {
		stream_state *s = &w->streams[k];
		evs_event *ev = NULL;

		snprintf(s->id, sizeof(s->id), "%s-t%02u-s%02u", w->category,
		         w->index, k);
		rc = make_event(&ev, s->id, w->index, k, &err);
		if (rc == 0)
			rc = evs_store_append(&s->version, w->store, s->id,
			                      EVS_NO_VERSION, &ev, 1, &err);
		if (rc < 0)
			fail_err("creating a stream", rc, &err);
		evs_event_free(ev);
	}
	wait_start(w->clk, o->seconds);
	deadline = run_deadline(w->clk);
	/* The threads take turns, evenly spread over each interval. */
	next = w->clk->t0 + interval * w->index / o->threads;
	for (i = 0; !failed && i < w->cap && next < deadline; i++) {
		stream_state *s = &w->streams[i % o->streams];
		lat_slot *slot = &w->slots[i];
		struct timespec ts = {(time_t)(next / 1000000000),
		                      (long)(next % 1000000000)};
		evs_event *ev = NULL;
		int64_t v = EVS_NO_VERSION, now;

		while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts,
		                       NULL) == EINTR)
			;
		now = now_ns();
		if (now - next > interval) {
			/* Behind: go on from now, no burst to catch up. */
			w->late++;
			next = now;
		}
		rc = make_event(&ev, s->id, w->index, i, &err);
		if (rc == 0) {
			__atomic_store_n(&slot->idh, id_hash(evs_event_id(ev)),
			                 __ATOMIC_RELEASE);
			rc = evs_store_append(&v, w->store, s->id, s->version,
			                      &ev, 1, &err);
			__atomic_store_n(&slot->ret, now_ns(), __ATOMIC_RELEASE);
		}
		evs_event_free(ev);
		if (rc < 0)
			fail_err("append", rc, &err);
		else if (v != s->version + 1)
			fail("append to %s returned version %lld, expected "
			     "%lld", s->id, (long long)v,
			     (long long)(s->version + 1));
		else
			s->version = v;
		w->appends++;
		next += interval;
	}
	w->t_end = now_ns();
	evs_error_clear(&err);
	return NULL;
}

typedef struct {
	const options *o;
	evs_store *store;
	run_clock *clk;
	const char *category;
	lat_writer *w;
	int64_t *next;      /* per stream (thread * streams + k) */
	evs_sub *sub;
	histogram h;
	uint64_t delivered; /* every event of the category (atomic) */
	uint64_t timed, early;
} lat_reader;

static int lat_handler(evs_sub_batch *b, void *payload, evs_error *err)
{
	lat_reader *r = payload;
	const options *o = r->o;
	size_t i, n = evs_sub_batch_count(b), clen = strlen(r->category);

	for (i = 0; i < n; i++) {
		const evs_event *ev = evs_sub_batch_get(b, i);
		const char *id = evs_event_aggregate_id(ev);
		int64_t v = evs_event_version(ev), *next, ret, now;
		unsigned t, k;
		size_t at;
		lat_slot *slot;

		if (strncmp(id, r->category, clen) != 0 ||
		    sscanf(id + clen, "-t%u-s%u", &t, &k) != 2 ||
		    t >= o->threads || k >= o->streams) {
			fail("latency: an event of stream %s", id);
			return evs_error_set(err, EVS_ERROR, NULL, "check");
		}
		next = &r->next[t * o->streams + k];
		if (v != *next) {
			fail("latency: %s version %lld, expected %lld", id,
			     (long long)v, (long long)*next);
			return evs_error_set(err, EVS_ERROR, NULL, "check");
		}
		++*next;
		if (v == 0)
			continue; /* the stream's first event: untimed */
		at = (size_t)(v - 1) * o->streams + k;
		if (at >= r->w[t].cap) {
			fail("latency: %s version %lld was never appended", id,
			     (long long)v);
			return evs_error_set(err, EVS_ERROR, NULL, "check");
		}
		slot = &r->w[t].slots[at];
		ret = __atomic_load_n(&slot->ret, __ATOMIC_ACQUIRE);
		now = now_ns();
		if (__atomic_load_n(&slot->idh, __ATOMIC_ACQUIRE) !=
		    id_hash(evs_event_id(ev))) {
			fail("latency: %s version %lld is not the event "
			     "appended", id, (long long)v);
			return evs_error_set(err, EVS_ERROR, NULL, "check");
		}
		/* The handler ran before the append call returned (the
		 * commit is done, the reply not yet read): latency 0. */
		if (ret == 0)
			r->early++;
		h_add(&r->h, ret == 0 ? 0 : now - ret);
		r->timed++;
	}
	__atomic_add_fetch(&r->delivered, n, __ATOMIC_RELEASE);
	return 0;
}

static void *lat_read_main(void *arg)
{
	lat_reader *r = arg;
	evs_sub_options so = EVS_SUB_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_sub *sub = NULL;
	int rc;

	so.category = r->category;
	so.wake = r->o->wake;
	rc = evs_sub_open(&sub, r->store, &so, &err);
	if (rc < 0)
		fail_err("evs_sub_open", rc, &err);
	r->sub = sub;
	wait_start(r->clk, r->o->seconds);
	if (rc == 0 && (rc = evs_sub_run(sub, lat_handler, r, &err)) < 0 &&
	    !failed)
		fail_err("evs_sub_run", rc, &err);
	evs_error_clear(&err);
	return NULL;
}

static int cmd_latency(const options *o)
{
	evs_store *store = NULL;
	lat_writer *w = calloc(o->threads, sizeof(*w));
	pthread_t *tid = calloc(o->threads + 1, sizeof(*tid));
	lat_reader *r = calloc(1, sizeof(*r));
	run_clock clk;
	char tag[16], category[32];
	uint64_t appends = 0, late = 0, want;
	int64_t t_end = 0, t_wait;
	double secs, rss;
	size_t cap = (size_t)(o->seconds * 1000 / o->interval_ms) + 16;
	unsigned t;

	if (w == NULL || tid == NULL || r == NULL) {
		fail("out of memory");
		return 1;
	}
	if (open_store(&store, o, o->threads + 1) < 0)
		return 1;
	/* A category of the run's own: "lat" and the tag (no '-'). */
	run_tag(tag, sizeof(tag));
	snprintf(category, sizeof(category), "lat%s", tag);
	run_clock_init(&clk, o->threads + 1);
	r->o = o;
	r->store = store;
	r->clk = &clk;
	r->category = category;
	r->w = w;
	r->next = calloc((size_t)o->threads * o->streams, sizeof(int64_t));
	for (t = 0; t < o->threads; t++) {
		w[t].o = o;
		w[t].store = store;
		w[t].clk = &clk;
		w[t].index = t;
		w[t].category = category;
		w[t].cap = cap;
		w[t].streams = calloc(o->streams, sizeof(stream_state));
		w[t].slots = calloc(cap, sizeof(lat_slot));
		if (w[t].streams == NULL || w[t].slots == NULL ||
		    r->next == NULL) {
			fail("out of memory");
			return 1;
		}
	}
	pthread_create(&tid[o->threads], NULL, lat_read_main, r);
	for (t = 0; t < o->threads; t++)
		pthread_create(&tid[t], NULL, lat_write_main, &w[t]);
	for (t = 0; t < o->threads; t++)
		pthread_join(tid[t], NULL);
	for (t = 0; t < o->threads; t++) {
		appends += w[t].appends;
		late += w[t].late;
		if (w[t].t_end > t_end)
			t_end = w[t].t_end;
	}
	secs = (double)(t_end - clk.t0) / 1e9;
	/* Every event appended (and each stream's first) must arrive. */
	want = appends + (uint64_t)o->threads * o->streams;
	t_wait = now_ns();
	while (!failed && __atomic_load_n(&r->delivered, __ATOMIC_ACQUIRE) <
	                          want &&
	       now_ns() - t_wait < (int64_t)30e9)
		nanosleep(&(struct timespec){0, 1000000}, NULL);
	evs_sub_stop(r->sub);
	pthread_join(tid[o->threads], NULL);
	rss = peak_rss_mb();
	if (!failed && (r->delivered != want || r->timed != appends))
		fail("latency: the subscription handled %llu events (%llu "
		     "timed), expected %llu (%llu)",
		     (unsigned long long)r->delivered,
		     (unsigned long long)r->timed, (unsigned long long)want,
		     (unsigned long long)appends);
	fprintf(stderr,
	        "evs-bench latency: wake %s, %u threads, one append each "
	        "every %.2f ms (%llu started over an interval late): %llu "
	        "appends in %.2f s, all handled; commit to handler p50 %.3f "
	        "p99 %.3f p99.9 %.3f max %.3f ms; handler before the append "
	        "returned: %llu; check %s\n",
	        o->wake == EVS_WAKE_NOTIFY ? "notify" : "poll", o->threads,
	        o->interval_ms, (unsigned long long)late,
	        (unsigned long long)appends, secs,
	        h_percentile_ms(&r->h, 0.50), h_percentile_ms(&r->h, 0.99),
	        h_percentile_ms(&r->h, 0.999), h_percentile_ms(&r->h, 1.0),
	        (unsigned long long)r->early, failed ? "FAILED" : "ok");
	if (!failed) {
		char label[128];

		result(o->label, o->threads, (double)appends / secs, &r->h,
		       rss);
		snprintf(label, sizeof(label), "%s-early", o->label);
		result(label, o->threads, (double)r->early / secs, NULL, -1);
	}
	evs_sub_free(r->sub);
	run_clock_destroy(&clk);
	evs_store_free(store);
	for (t = 0; t < o->threads; t++) {
		free(w[t].streams);
		free(w[t].slots);
	}
	free(r->next);
	free(r);
	free(w);
	free(tid);
	return failed;
}

int main(int argc, char **argv)
{
	options o;

	if (parse_args(&o, argc, argv) < 0) {
		usage(stderr);
		return 2;
	}
	if (strcmp(o.cmd, "append") == 0)
		return cmd_append(&o);
	if (strcmp(o.cmd, "contend") == 0)
		return cmd_contend(&o);
	if (strcmp(o.cmd, "load") == 0)
		return cmd_load(&o);
	if (strcmp(o.cmd, "stream") == 0)
		return cmd_stream(&o);
	if (strcmp(o.cmd, "subscribe") == 0)
		return cmd_subscribe(&o);
	if (strcmp(o.cmd, "latency") == 0)
		return cmd_latency(&o);
	if (strcmp(o.cmd, "snapload") == 0)
		return cmd_snapload(&o);
	if (strcmp(o.cmd, "scavenge") == 0)
		return cmd_scavenge(&o);
	fprintf(stderr, "evs-bench: unknown command %s\n", o.cmd);
	usage(stderr);
	return 2;
}
