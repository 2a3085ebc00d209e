/* tools/transfer.c: `evstore export` and `evstore import`, and the
 * progress bar they show on a terminal.
 *
 * Import reads the NDJSON on one thread and appends on --jobs others.
 * Each stream belongs to one worker (by a hash of its id), so a stream's
 * batches are appended in file order while different streams go in
 * parallel. A batch is appended with expected version = its first
 * version - 1 and the events' own ids: when those events are already
 * stored, the store treats the append as an idempotent replay and
 * changes nothing, which is what makes a second import a no-op. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "migrate.h"

/* ---- progress bar ------------------------------------------------------ */

typedef struct progress {
	const char *label;
	atomic_llong done;
	atomic_llong total; /* -1: not known */
	double start;
	int active, stop;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
} progress;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void format_duration(char *out, size_t size, double s)
{
	long t = (long)(s + 0.5);

	if (t >= 3600)
		snprintf(out, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60,
		         t % 60);
	else
		snprintf(out, size, "%ld:%02ld", t / 60, t % 60);
}

static void progress_render(progress *p, int final)
{
	long long done = atomic_load(&p->done), total = atomic_load(&p->total);
	double elapsed = now_s() - p->start;
	double rate = elapsed > 0 ? (double)done / elapsed : 0;
	char d[32], t[32], r[32], when[32];
	cli_buf line = {NULL, 0, 0};

	cli_format_count(d, sizeof(d), done);
	cli_format_count(r, sizeof(r), (int64_t)rate);
	/* Time left when the total is known; else the time so far. */
	if (final || total <= 0)
		format_duration(when, sizeof(when), elapsed);
	else if (rate > 0 && done < total)
		format_duration(when, sizeof(when),
		                (double)(total - done) / rate);
	else
		snprintf(when, sizeof(when), "-:--");
	cli_buf_printf(&line, "\r%s ", p->label);
	if (total > 0) {
		const int width = 24;
		double frac = done >= total ? 1.0 : (double)done / (double)total;
		int fill = (int)(frac * width), i;

		cli_format_count(t, sizeof(t), total);
		cli_buf_addc(&line, '[');
		for (i = 0; i < width; i++)
			cli_buf_addc(&line, i < fill ? '#' : '.');
		cli_buf_printf(&line, "] %3d%%  %s/%s events", (int)(frac * 100),
		               d, t);
	} else {
		cli_buf_printf(&line, "%s events", d);
	}
	if (final)
		cli_buf_printf(&line, "  %s/s  in %s\033[K\n", r, when);
	else if (total > 0)
		cli_buf_printf(&line, "  %s/s  ETA %s\033[K", r, when);
	else
		cli_buf_printf(&line, "  %s/s  %s elapsed\033[K", r, when);
	fputs(line.p, stderr);
	free(line.p);
}

static void *progress_main(void *arg)
{
	progress *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->wake, &p->lock, &ts);
		if (!p->stop) {
			pthread_mutex_unlock(&p->lock);
			progress_render(p, 0);
			pthread_mutex_lock(&p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* Shows a bar only when stderr is a terminal; quiet otherwise. */
static void progress_start(progress *p, const char *label, int64_t total)
{
	memset(p, 0, sizeof(*p));
	p->label = label;
	atomic_init(&p->done, 0);
	atomic_init(&p->total, total);
	p->start = now_s();
	if (!isatty(STDERR_FILENO))
		return;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	p->active = pthread_create(&p->thread, NULL, progress_main, p) == 0;
}

static void progress_add(progress *p, int64_t n)
{
	atomic_fetch_add(&p->done, n);
}

/* Ends the bar; @p ok: draw it once more, complete, else clear it. */
static void progress_stop(progress *p, int ok)
{
	if (!p->active)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	if (ok)
		progress_render(p, 1);
	else
		fputs("\r\033[K", stderr);
	p->active = 0;
}

/* ---- export ------------------------------------------------------------ */

/* read_all calls per chunk: the checkpoint moves between chunks. */
#define EXPORT_CHUNK 10000
#define OUT_FLUSH (1u << 20)
/* How long export waits for events held back by an older transaction
 * that is still running. */
#define EXPORT_WAIT_S 30.0

typedef struct export_ctx {
	cli_buf out;
	progress prog;
	evs_position at;
	int64_t count, in_chunk;
	int write_errno;
} export_ctx;

static int flush_out(export_ctx *ctx)
{
	if (ctx->out.len > 0 &&
	    fwrite(ctx->out.p, 1, ctx->out.len, stdout) != ctx->out.len) {
		ctx->write_errno = errno ? errno : EIO;
		return -1;
	}
	ctx->out.len = 0;
	return 0;
}

static int export_one(const evs_event *ev, void *payload)
{
	export_ctx *ctx = payload;

	ndjson_add_event(&ctx->out, ev);
	evs_event_checkpoint(&ctx->at, ev);
	ctx->count++;
	ctx->in_chunk++;
	if ((ctx->count & 255) == 0)
		progress_add(&ctx->prog, 256);
	if (ctx->out.len >= OUT_FLUSH && flush_out(ctx) < 0)
		return 1;
	return 0;
}

/* All streams, in commit order, by checkpointed chunks. read_all holds
 * back the events of transactions newer than the oldest one still
 * running; to export everything committed when we started (@p want
 * events), keep reading until we have that many.
 * Returns 0, a negative code (err filled), 1 (write error) or 2 (events
 * held back too long). */
static int export_all(evs_store *store, int64_t want, export_ctx *ctx,
                      evs_error *err)
{
	double waited_since = 0;
	int rc;

	for (;;) {
		int64_t before = ctx->count;

		ctx->in_chunk = 0;
		rc = evs_store_read_all(store, &ctx->at, EXPORT_CHUNK,
		                        export_one, ctx, err);
		if (rc != 0)
			return rc;
		if (ctx->in_chunk == EXPORT_CHUNK)
			continue;
		if (ctx->count >= want)
			return 0;
		if (ctx->count > before || waited_since == 0)
			waited_since = now_s();
		if (now_s() - waited_since > EXPORT_WAIT_S)
			return 2;
		if (flush_out(ctx) < 0 || fflush(stdout) != 0)
			return 1;
		nanosleep(&(struct timespec){0, 100000000L}, NULL);
	}
}

int cmd_export(int n_streams, char **streams, const cli_conn *conn)
{
	export_ctx ctx;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	mig_counts counts = {0, 0, -1};
	mig_state st;
	int rc, i, missing = 0;

	memset(&ctx, 0, sizeof(ctx));
	if ((rc = cli_open_store(&store, conn, 2)) != EXIT_OK)
		return rc;
	if (n_streams == 0 &&
	    (rc = mig_status(conn->dsn, conn->schema, &st, &counts)) != 0) {
		evs_store_free(store);
		return rc;
	}
	progress_start(&ctx.prog, "export", -1);
	if (n_streams == 0) {
		atomic_store(&ctx.prog.total, counts.events);
		rc = export_all(store, counts.events, &ctx, &err);
	} else {
		int64_t total = 0, v;

		for (i = 0; i < n_streams && ctx.prog.active; i++)
			if (evs_store_current_version(&v, store, streams[i],
			                              NULL) == 0)
				total += v + 1;
		if (ctx.prog.active)
			atomic_store(&ctx.prog.total, total);
		for (i = 0, rc = 0; i < n_streams && rc == 0; i++) {
			int64_t before = ctx.count;

			rc = evs_store_foreach(store, streams[i], EVS_NO_VERSION,
			                       export_one, &ctx, &err);
			if (rc == 0 && ctx.count == before && missing == 0)
				missing = i + 1;
		}
	}
	if (rc == 0 && flush_out(&ctx) < 0)
		rc = 1;
	if (rc == 0 && fflush(stdout) != 0) {
		ctx.write_errno = errno ? errno : EIO;
		rc = 1;
	}
	atomic_store(&ctx.prog.done, ctx.count);
	progress_stop(&ctx.prog, rc == 0);
	if (rc < 0)
		rc = cli_store_fail(&err, NULL);
	else if (rc == 1)
		rc = cli_fail(EXIT_ERR, "could not write the output: %s",
		              strerror(ctx.write_errno));
	else if (rc == 2)
		rc = cli_fail(EXIT_ERR,
		              "%lld events committed before the export began "
		              "are held back by an older transaction that is "
		              "still running (see pg_stat_activity); exported "
		              "%lld", (long long)(counts.events - ctx.count),
		              (long long)ctx.count);
	else if (missing > 0)
		rc = cli_fail(EXIT_ERR, "stream \"%s\" has no events",
		              streams[missing - 1]);
	free(ctx.out.p);
	evs_store_free(store);
	evs_error_clear(&err);
	return rc;
}

/* ---- import ------------------------------------------------------------ */

#define BATCH_EVENTS 1000          /* events per append, at most */
#define BATCH_BYTES (4u << 20)     /* and about this much JSON */
#define PENDING_EVENTS 200000      /* parsed, not yet handed to a worker */
#define PENDING_BYTES (64u << 20)  /* nor more than this */
#define QUEUE_DEPTH 4              /* batches waiting per worker */

typedef struct batch {
	struct batch *next;
	const char *stream; /* the stream entry's copy */
	int64_t first_version;
	long line; /* of its first event */
	size_t n, cap, bytes;
	evs_event **events;
} batch;

typedef struct stream_ent {
	char *id; /* NULL: a free slot */
	uint64_t hash;
	batch *pending;
	unsigned int worker;
} stream_ent;

struct importer;

typedef struct worker {
	struct importer *imp;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t nonempty, nonfull;
	batch *head, *tail;
	size_t queued;
	int closed;
} worker;

typedef struct importer {
	evs_store *store;
	worker *workers;
	int jobs;
	progress prog;
	atomic_int failed;
	pthread_mutex_t err_lock;
	int exit_code;
	/* The reader thread's own: */
	int read_code; /* a bad line: reported after the lines before it */
	long read_line;
	char read_msg[512];
	stream_ent *tab;
	size_t tab_cap, n_streams, pending_events, pending_bytes;
} importer;

static void batch_free(batch *b)
{
	size_t i;

	for (i = 0; i < b->n; i++)
		evs_event_free(b->events[i]);
	free(b->events);
	free(b);
}

/* Records the first failure (and prints it); later ones are dropped. */
static void import_fail(importer *imp, int code, long line,
                        const char *message)
{
	pthread_mutex_lock(&imp->err_lock);
	if (!atomic_load(&imp->failed)) {
		progress_stop(&imp->prog, 0);
		if (line > 0)
			cli_fail(code, "line %ld: %s", line, message);
		else
			cli_fail(code, "%s", message);
		imp->exit_code = code;
		atomic_store(&imp->failed, 1);
	}
	pthread_mutex_unlock(&imp->err_lock);
}

/* A bad line: stop reading, store what came before, then report it. */
static int read_fail(importer *imp, int code, long line, const char *message)
{
	imp->read_code = code;
	imp->read_line = line;
	snprintf(imp->read_msg, sizeof(imp->read_msg), "%s", message);
	return -1;
}

static void import_store_fail(importer *imp, long line, const evs_error *err)
{
	import_fail(imp, err->code == EVS_ECONFLICT ? EXIT_CONFLICT : EXIT_ERR,
	            line, err->message ? err->message
	                               : evs_strerror(err->code));
}

/* Appends a batch. When the stream is already past the batch's start
 * (an import that stopped half way, then a file that goes further),
 * the part already there is resent as an idempotent replay and the
 * rest appended after it. */
static int append_batch(importer *imp, batch *b, evs_error *err)
{
	size_t off = 0;
	int64_t expected = b->first_version - 1;
	int rc, rounds = 0;

	while (off < b->n) {
		size_t left = b->n - off, k;
		int64_t actual;

		rc = evs_store_append(NULL, imp->store, b->stream, expected,
		                      b->events + off, left, err);
		if (rc == 0) {
			progress_add(&imp->prog, (int64_t)left);
			return 0;
		}
		if (rc != EVS_ECONFLICT || ++rounds > 8)
			return rc;
		actual = err->actual_version;
		if (actual <= expected || actual >= expected + (int64_t)left)
			return rc;
		k = (size_t)(actual - expected);
		rc = evs_store_append(NULL, imp->store, b->stream, expected,
		                      b->events + off, k, err);
		if (rc != 0)
			return rc;
		progress_add(&imp->prog, (int64_t)k);
		off += k;
		expected = actual;
	}
	return 0;
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	importer *imp = w->imp;
	evs_error err = EVS_ERROR_INIT;

	for (;;) {
		batch *b;

		pthread_mutex_lock(&w->lock);
		while (w->head == NULL && !w->closed)
			pthread_cond_wait(&w->nonempty, &w->lock);
		b = w->head;
		if (b != NULL) {
			w->head = b->next;
			if (w->head == NULL)
				w->tail = NULL;
			w->queued--;
			pthread_cond_signal(&w->nonfull);
		}
		pthread_mutex_unlock(&w->lock);
		if (b == NULL)
			break;
		if (!atomic_load(&imp->failed) &&
		    append_batch(imp, b, &err) != 0)
			import_store_fail(imp, b->line, &err);
		batch_free(b);
	}
	evs_error_clear(&err);
	return NULL;
}

static void push_batch(importer *imp, stream_ent *e)
{
	worker *w = &imp->workers[e->worker];
	batch *b = e->pending;

	e->pending = NULL;
	imp->pending_events -= b->n;
	imp->pending_bytes -= b->bytes;
	pthread_mutex_lock(&w->lock);
	while (w->queued >= QUEUE_DEPTH && !atomic_load(&imp->failed))
		pthread_cond_wait(&w->nonfull, &w->lock);
	b->next = NULL;
	if (w->tail)
		w->tail->next = b;
	else
		w->head = b;
	w->tail = b;
	w->queued++;
	pthread_cond_signal(&w->nonempty);
	pthread_mutex_unlock(&w->lock);
}

static void push_all(importer *imp)
{
	size_t i;

	for (i = 0; i < imp->tab_cap; i++)
		if (imp->tab[i].id != NULL && imp->tab[i].pending != NULL)
			push_batch(imp, &imp->tab[i]);
}

static uint64_t hash_str(const char *s)
{
	uint64_t h = 14695981039346656037ull;

	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

static stream_ent *stream_find(importer *imp, const char *id)
{
	uint64_t h = hash_str(id);
	size_t i;

	if (2 * (imp->n_streams + 1) > imp->tab_cap) {
		size_t old_cap = imp->tab_cap, j;
		stream_ent *old = imp->tab;

		imp->tab_cap = old_cap ? 2 * old_cap : 1024;
		imp->tab = calloc(imp->tab_cap, sizeof(stream_ent));
		if (imp->tab == NULL) {
			cli_fail(EXIT_ERR, "out of memory");
			exit(EXIT_ERR);
		}
		for (j = 0; j < old_cap; j++) {
			if (old[j].id == NULL)
				continue;
			for (i = old[j].hash & (imp->tab_cap - 1);
			     imp->tab[i].id != NULL;
			     i = (i + 1) & (imp->tab_cap - 1))
				;
			imp->tab[i] = old[j];
		}
		free(old);
	}
	for (i = h & (imp->tab_cap - 1); imp->tab[i].id != NULL;
	     i = (i + 1) & (imp->tab_cap - 1))
		if (imp->tab[i].hash == h && strcmp(imp->tab[i].id, id) == 0)
			return &imp->tab[i];
	imp->tab[i].id = cli_xstrdup(id);
	imp->tab[i].hash = h;
	imp->tab[i].pending = NULL;
	/* The high bits: the low ones chose the slot. */
	imp->tab[i].worker = (unsigned int)((h >> 32) % (uint64_t)imp->jobs);
	imp->n_streams++;
	return &imp->tab[i];
}

/* Parses one line and queues its event. Returns 0, or -1 after
 * recording the failure. */
static int import_line(importer *imp, char *line, size_t len, long lineno,
                       evs_error *err)
{
	ndjson_event ne;
	char why[256];
	evs_event *ev = NULL, *copy = NULL;
	stream_ent *e;
	batch *b;
	evs_uuid id;
	size_t size;

	if (ndjson_parse_line(&ne, line, len, why, sizeof(why)) < 0)
		return read_fail(imp, EXIT_ERR, lineno, why);
	if (evs_uuid_parse(&id, ne.event_id, NULL) < 0)
		return read_fail(imp, EXIT_ERR, lineno,
		                 "\"event_id\" is not a UUID");
	/* Checked here, in line order, so that the first bad line stops
	 * the import and is the one reported. The copy is what waits for
	 * the append: an event made from JSON text also keeps its parsed
	 * json-c tree, several times the size, and the reader may hold a few
	 * hundred thousand events while it gathers streams' batches. */
	if (evs_event_new_json(&ev, ne.type, ne.data, ne.metadata, err) < 0 ||
	    evs_event_set_id(ev, &id, err) < 0 ||
	    evs_event_dup(&copy, ev, err) < 0) {
		evs_event_free(ev);
		return read_fail(imp, EXIT_ERR, lineno,
		                 err->message ? err->message
		                              : evs_strerror(err->code));
	}
	evs_event_free(ev);
	size = sizeof(void *) * 8 + strlen(ne.type) + strlen(ne.data) +
	       (ne.metadata ? strlen(ne.metadata) : 0);
	e = stream_find(imp, ne.stream_id);
	b = e->pending;
	if (b != NULL && ne.version != b->first_version + (int64_t)b->n) {
		push_batch(imp, e);
		b = NULL;
	}
	if (b == NULL) {
		b = cli_xmalloc(sizeof(*b));
		memset(b, 0, sizeof(*b));
		b->stream = e->id;
		b->first_version = ne.version;
		b->line = lineno;
		e->pending = b;
	}
	if (b->n == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 16;
		b->events = cli_xrealloc(b->events, b->cap * sizeof(*b->events));
	}
	b->events[b->n++] = copy;
	b->bytes += size;
	imp->pending_events++;
	imp->pending_bytes += size;
	if (b->n >= BATCH_EVENTS || b->bytes >= BATCH_BYTES)
		push_batch(imp, e);
	if (imp->pending_events >= PENDING_EVENTS ||
	    imp->pending_bytes >= PENDING_BYTES)
		push_all(imp);
	return 0;
}

int cmd_import(int jobs, const char *file, const cli_conn *conn)
{
	importer imp;
	evs_error err = EVS_ERROR_INIT;
	FILE *in = stdin;
	char *line = NULL;
	size_t cap = 0, i;
	ssize_t len;
	long lineno = 0;
	long long bytes_read = 0, events = 0, file_size = -1;
	struct stat stbuf;
	int rc, started = 0;

	memset(&imp, 0, sizeof(imp));
	if (file != NULL && strcmp(file, "-") != 0) {
		in = fopen(file, "r");
		if (in == NULL)
			return cli_fail(EXIT_ERR, "cannot open %s: %s", file,
			                strerror(errno));
	}
	if (fstat(fileno(in), &stbuf) == 0 && S_ISREG(stbuf.st_mode))
		file_size = (long long)stbuf.st_size;
	if ((rc = cli_open_store(&imp.store, conn, (unsigned int)jobs)) !=
	    EXIT_OK)
		goto close_in;
	imp.jobs = jobs;
	atomic_init(&imp.failed, 0);
	pthread_mutex_init(&imp.err_lock, NULL);
	imp.workers = cli_xmalloc((size_t)jobs * sizeof(worker));
	progress_start(&imp.prog, "import", -1);
	for (started = 0; started < jobs; started++) {
		worker *w = &imp.workers[started];

		memset(w, 0, sizeof(*w));
		w->imp = &imp;
		pthread_mutex_init(&w->lock, NULL);
		pthread_cond_init(&w->nonempty, NULL);
		pthread_cond_init(&w->nonfull, NULL);
		if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
			import_fail(&imp, EXIT_ERR, 0, "cannot start a thread");
			break;
		}
	}

	while (!atomic_load(&imp.failed) &&
	       (len = getline(&line, &cap, in)) != -1) {
		lineno++;
		bytes_read += len;
		if (strspn(line, " \t\r\n") == (size_t)len)
			continue; /* a blank line */
		if (import_line(&imp, line, (size_t)len, lineno, &err) < 0)
			break;
		events++;
		/* The total, estimated from the bytes read so far. */
		if (file_size > 0 && (events & 1023) == 0)
			atomic_store(&imp.prog.total,
			             (long long)((double)events *
			                         (double)file_size /
			                         (double)bytes_read));
	}
	if (imp.read_code == 0 && !atomic_load(&imp.failed) && ferror(in))
		read_fail(&imp, EXIT_ERR, lineno + 1, strerror(errno));
	/* Everything before a bad line is stored, nothing after it. */
	if (!atomic_load(&imp.failed)) {
		if (imp.read_code == 0)
			atomic_store(&imp.prog.total, events);
		push_all(&imp);
	}
	for (i = 0; i < (size_t)started; i++) {
		worker *w = &imp.workers[i];

		pthread_mutex_lock(&w->lock);
		w->closed = 1;
		pthread_cond_signal(&w->nonempty);
		pthread_mutex_unlock(&w->lock);
	}
	for (i = 0; i < (size_t)started; i++) {
		pthread_join(imp.workers[i].thread, NULL);
		pthread_mutex_destroy(&imp.workers[i].lock);
		pthread_cond_destroy(&imp.workers[i].nonempty);
		pthread_cond_destroy(&imp.workers[i].nonfull);
	}
	rc = atomic_load(&imp.failed) ? imp.exit_code : EXIT_OK;
	progress_stop(&imp.prog, rc == EXIT_OK && imp.read_code == 0);
	if (rc == EXIT_OK && imp.read_code != 0)
		rc = cli_fail(imp.read_code, "line %ld: %s", imp.read_line,
		              imp.read_msg);
	if (rc == EXIT_OK)
		printf("imported %lld events in %zu streams (events already "
		       "stored are skipped)\n", events, imp.n_streams);
	for (i = 0; i < imp.tab_cap; i++) {
		if (imp.tab[i].pending != NULL)
			batch_free(imp.tab[i].pending);
		free(imp.tab[i].id);
	}
	free(imp.tab);
	free(imp.workers);
	free(line);
	pthread_mutex_destroy(&imp.err_lock);
	evs_store_free(imp.store);
	evs_error_clear(&err);
close_in:
	if (in != stdin)
		fclose(in);
	return rc;
}
