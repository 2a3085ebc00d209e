/* tools/export.c: `evstore export`, every stream in commit order or the
 * named ones in version order, as NDJSON on standard output. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "migrate.h"
#include "progress.h"

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
			waited_since = cli_now_s();
		if (cli_now_s() - waited_since > EXPORT_WAIT_S)
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
