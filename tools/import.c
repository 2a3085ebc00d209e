/* tools/import.c: `evstore import`, NDJSON events appended back.
 *
 * Import reads the NDJSON on one thread and appends on --jobs others.
 * Each stream belongs to one worker (by a hash of its id), so a stream's
 * batches are appended in file order while different streams go in
 * parallel. A batch is appended with expected version = its first
 * version - 1 and the events' own ids: when those events are already
 * stored, the store treats the append as an idempotent replay and
 * changes nothing, which is what makes a second import a no-op; the
 * store says so (evs_append_result.replayed), and those events are
 * counted as skipped.
 *
 * Each event keeps its recorded_at (EVS_APPEND_KEEP_TIME: a restore keeps
 * its history), which PostgreSQL allows only a role with EXECUTE on the
 * schema's import_events function; --server-time appends as an
 * application does, and the store stamps the events. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "progress.h"

#define BATCH_EVENTS 1000          /* events per append, at most */
#define BATCH_BYTES (4u << 20)     /* and about this much JSON */
#define PENDING_EVENTS 200000      /* parsed, not yet handed to a worker */
#define PENDING_BYTES (64u << 20)  /* nor more than this */
#define QUEUE_DEPTH 32             /* batches waiting per worker */
#define QUEUE_BYTES (16u << 20)    /* and about this much JSON */
#define CALL_BATCHES 32            /* batches per append_many call */
#define CALL_BYTES (8u << 20)      /* and about this much JSON */

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
	size_t queued, queued_bytes;
	int closed;
} worker;

typedef struct importer {
	evs_store *store;
	const char *schema;
	worker *workers;
	int jobs;
	unsigned int flags; /* of evs_store_append_ext() */
	progress prog;
	atomic_llong skipped; /* events already stored: replayed batches */
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

/* A schema name as SQL takes it: bare when plain lower case, else
 * quoted. Yours: free() it. */
static char *sql_schema(const char *s)
{
	if (!(s[0] >= '0' && s[0] <= '9') &&
	    strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_") == strlen(s))
		return cli_xstrdup(s);
	return cli_quote_ident(s);
}

static void import_store_fail(importer *imp, long line, const evs_error *err)
{
	/* Not about one line: the role may keep no event's time. */
	if ((imp->flags & EVS_APPEND_KEEP_TIME) && err->code == EVS_EDB &&
	    strcmp(err->sqlstate, "42501") == 0) {
		char *name = sql_schema(imp->schema);
		cli_buf msg = {NULL, 0, 0};

		cli_buf_printf(&msg, "the role may not keep recorded times: "
		               "have a DBA grant EXECUTE on functions "
		               "%s.import_many(text[], bigint[], integer[], "
		               "uuid[], text[], jsonb[], jsonb[], "
		               "timestamptz[], boolean) and "
		               "%s.import_events(text, bigint, uuid[], text[], "
		               "jsonb[], jsonb[], timestamptz[]), or run with "
		               "--server-time", name, name);
		import_fail(imp, EXIT_ERR, 0, msg.p);
		free(msg.p);
		free(name);
		return;
	}
	import_fail(imp, err->code == EVS_ECONFLICT ? EXIT_CONFLICT : EXIT_ERR,
	            line, err->message ? err->message
	                               : evs_strerror(err->code));
}

/* One append of the events of @p b from @p off on; counts a replay. */
static int append_part(importer *imp, batch *b, int64_t expected,
                       size_t off, size_t count, evs_error *err)
{
	evs_append_result res;
	int rc = evs_store_append_ext(&res, imp->store, b->stream, expected,
	                              b->events + off, count, imp->flags, err);

	if (rc == 0) {
		if (res.replayed)
			atomic_fetch_add(&imp->skipped, (long long)count);
		progress_add(&imp->prog, (int64_t)count);
	}
	return rc;
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

		rc = append_part(imp, b, expected, off, left, err);
		if (rc == 0)
			return 0;
		if (rc != EVS_ECONFLICT || ++rounds > 8)
			return rc;
		actual = err->actual_version;
		if (actual <= expected || actual >= expected + (int64_t)left)
			return rc;
		k = (size_t)(actual - expected);
		if ((rc = append_part(imp, b, expected, off, k, err)) != 0)
			return rc;
		off += k;
		expected = actual;
	}
	return 0;
}

/* Appends several batches (of different streams, or one stream's in
 * file order) in one call: one transaction for all of them. A batch that
 * conflicts (its stream is already past its start) goes through
 * append_batch(), after the others. */
static void append_batches(importer *imp, batch **bs, size_t n,
                           evs_error *err)
{
	evs_append_req reqs[CALL_BATCHES];
	size_t i, described;

	for (i = 0; i < n; i++) {
		memset(&reqs[i], 0, sizeof(reqs[i]));
		reqs[i].aggregate_id = bs[i]->stream;
		reqs[i].expected_version = bs[i]->first_version - 1;
		reqs[i].events = bs[i]->events;
		reqs[i].n_events = bs[i]->n;
	}
	(void)evs_store_append_many(imp->store, reqs, n, imp->flags, err);
	/* err describes the first failed request (or the call's error). */
	for (i = 0; i < n && reqs[i].rc == 0; i++)
		;
	described = i;
	for (i = 0; i < n && !atomic_load(&imp->failed); i++) {
		if (reqs[i].rc == 0) {
			if (reqs[i].replayed)
				atomic_fetch_add(&imp->skipped,
				                 (long long)bs[i]->n);
			progress_add(&imp->prog, (int64_t)bs[i]->n);
			continue;
		}
		if (reqs[i].rc == EVS_ECONFLICT) {
			described = n;
			if (append_batch(imp, bs[i], err) != 0)
				import_store_fail(imp, bs[i]->line, err);
			continue;
		}
		if (i != described)
			evs_error_set(err, reqs[i].rc, NULL,
			              "%s, appending to aggregate \"%s\"",
			              evs_strerror(reqs[i].rc), bs[i]->stream);
		import_store_fail(imp, bs[i]->line, err);
	}
}

static void *worker_main(void *arg)
{
	worker *w = arg;
	importer *imp = w->imp;
	evs_error err = EVS_ERROR_INIT;

	for (;;) {
		batch *bs[CALL_BATCHES];
		size_t n = 0, bytes = 0, i;

		pthread_mutex_lock(&w->lock);
		while (w->head == NULL && !w->closed)
			pthread_cond_wait(&w->nonempty, &w->lock);
		/* Everything queued, up to a call's worth. */
		while (w->head != NULL && n < CALL_BATCHES &&
		       (n == 0 || bytes + w->head->bytes <= CALL_BYTES)) {
			batch *b = w->head;

			w->head = b->next;
			if (w->head == NULL)
				w->tail = NULL;
			w->queued--;
			w->queued_bytes -= b->bytes;
			bytes += b->bytes;
			bs[n++] = b;
		}
		if (n > 0)
			pthread_cond_signal(&w->nonfull);
		pthread_mutex_unlock(&w->lock);
		if (n == 0)
			break;
		if (!atomic_load(&imp->failed))
			append_batches(imp, bs, n, &err);
		for (i = 0; i < n; i++)
			batch_free(bs[i]);
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
	while ((w->queued >= QUEUE_DEPTH || w->queued_bytes >= QUEUE_BYTES) &&
	       !atomic_load(&imp->failed))
		pthread_cond_wait(&w->nonfull, &w->lock);
	b->next = NULL;
	if (w->tail)
		w->tail->next = b;
	else
		w->head = b;
	w->tail = b;
	w->queued++;
	w->queued_bytes += b->bytes;
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
	evs_event *ev = NULL;
	stream_ent *e;
	batch *b;
	evs_uuid id;
	int64_t at = 0;
	size_t size;

	if (ndjson_parse_line(&ne, line, len, why, sizeof(why)) < 0)
		return read_fail(imp, EXIT_ERR, lineno, why);
	if (evs_uuid_parse(&id, ne.event_id, NULL) < 0)
		return read_fail(imp, EXIT_ERR, lineno,
		                 "\"event_id\" is not a UUID");
	if ((imp->flags & EVS_APPEND_KEEP_TIME) && ne.recorded_at == NULL)
		return read_fail(imp, EXIT_ERR, lineno,
		                 "missing field \"recorded_at\" (or use "
		                 "--server-time)");
	if ((imp->flags & EVS_APPEND_KEEP_TIME) &&
	    cli_parse_time(&at, ne.recorded_at) < 0)
		return read_fail(imp, EXIT_ERR, lineno,
		                 "\"recorded_at\" is not an RFC 3339 UTC time");
	/* Checked here, in line order, so that the first bad line stops
	 * the import and is the one reported. */
	if (evs_event_new_json(&ev, ne.type, ne.data, ne.metadata, err) < 0 ||
	    evs_event_set_id(ev, &id, err) < 0 ||
	    ((imp->flags & EVS_APPEND_KEEP_TIME) &&
	     evs_event_set_recorded_at(ev, at, err) < 0)) {
		evs_event_free(ev);
		return read_fail(imp, EXIT_ERR, lineno,
		                 err->message ? err->message
		                              : evs_strerror(err->code));
	}
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
	b->events[b->n++] = ev;
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

int cmd_import(int jobs, int server_time, const char *file,
               const cli_conn *conn)
{
	importer imp;
	evs_error err = EVS_ERROR_INIT;
	FILE *in = stdin;
	char *line = NULL;
	size_t cap = 0, i;
	ssize_t len;
	long lineno = 0;
	long long bytes_read = 0, events = 0, file_size = -1, skipped;
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
	imp.schema = conn->schema;
	imp.flags = server_time ? 0 : EVS_APPEND_KEEP_TIME;
	atomic_init(&imp.skipped, 0);
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
	skipped = atomic_load(&imp.skipped);
	if (rc == EXIT_OK)
		printf("imported %lld events in %zu streams (%lld already "
		       "stored, skipped)\n", events, imp.n_streams, skipped);
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
