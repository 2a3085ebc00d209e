/* tools/evstore.c: the evstore command's main: the command table, the
 * option parsing the subcommands share, and the small subcommands
 * (migrate, status, append, read). export and import are in export.c and
 * import.c, tail and subscriptions in tail.c (their options are parsed
 * here), the shared helpers in cli.c. Only the migration runner
 * (migrate.c) talks to libpq; the rest uses the public evstore API, as
 * any application would. */
#define _GNU_SOURCE /* getopt_long */
#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "migrate.h"
#include "progress.h"

/* ---- option parsing shared by the subcommands -------------------------- */

enum { OPT_DSN = 0x100, OPT_SCHEMA, OPT_HELP = 'h' };

#define COMMON_OPTIONS                                                       \
	{"dsn", required_argument, NULL, OPT_DSN},                           \
	{"schema", required_argument, NULL, OPT_SCHEMA},                     \
	{"help", no_argument, NULL, OPT_HELP}

#define CONN_HELP                                                            \
	"  --dsn DSN        libpq connection string or URI (default: "          \
	"$EVS_PG_DSN,\n"                                                     \
	"                   else libpq's PG* variables)\n"                      \
	"  --schema NAME    schema of the evstore tables (default: "           \
	"$EVS_PG_SCHEMA,\n"                                                  \
	"                   else evstore)\n"                                    \
	"  -h, --help       show this help\n"

/* What every subcommand's option loop does with the shared options and
 * getopt's complaints. Returns -1 to go on, else an exit code. */
static int common_option(int c, const char *cmd, const char *help,
                         char **argv, cli_conn *conn)
{
	switch (c) {
	case OPT_DSN:
		conn->dsn = optarg;
		return -1;
	case OPT_SCHEMA:
		conn->schema = optarg;
		return -1;
	case OPT_HELP:
		fputs(help, stdout);
		return EXIT_OK;
	case ':':
		return cli_usage(cmd, "option %s needs a value",
		                 argv[optind - 1]);
	case '?':
		/* "--follow=yes": getopt names the option by its value,
		 * which is no option's letter. */
		if (optopt != 0 && strncmp(argv[optind - 1], "--", 2) == 0 &&
		    strchr(argv[optind - 1], '=') != NULL)
			return cli_usage(cmd, "option %.*s takes no value",
			                 (int)(strchr(argv[optind - 1], '=') -
			                       argv[optind - 1]),
			                 argv[optind - 1]);
		if (optopt != 0 && optopt < 0x100)
			return cli_usage(cmd, "unknown option -%c", optopt);
		return cli_usage(cmd, "unknown option %s", argv[optind - 1]);
	default:
		return cli_usage(cmd, "unexpected option");
	}
}

/* Fills in what the command line left out, from the environment. */
static int resolve_conn(cli_conn *conn, const char *cmd)
{
	if (conn->dsn == NULL)
		conn->dsn = getenv("EVS_PG_DSN");
	if (conn->dsn == NULL)
		conn->dsn = "";
	if (conn->schema == NULL) {
		conn->schema = getenv("EVS_PG_SCHEMA");
		if (conn->schema == NULL || conn->schema[0] == '\0')
			conn->schema = "evstore";
	}
	if (conn->schema[0] == '\0' || strlen(conn->schema) > 63)
		return cli_usage(cmd, "the schema name must be 1 to 63 bytes");
	return -1;
}

static int want_args(const char *cmd, int have, int min, int max)
{
	if (have < min)
		return cli_usage(cmd, "missing arguments");
	if (have > max)
		return cli_usage(cmd, "too many arguments");
	return -1;
}

/* ---- migrate ------------------------------------------------------------ */

static const char migrate_help[] =
	"usage: evstore migrate [--dry-run] [--dsn DSN] [--schema NAME]\n"
	"\n"
	"Applies the pending sql/ migrations (carried inside evstore) in "
	"order, each\n"
	"in its own transaction, under an advisory lock so that two runs "
	"cannot\n"
	"collide. Prints one \"applied NNNN_name\" line per migration.\n"
	"\n"
	"  --dry-run        print the SQL that would be sent; change nothing\n"
	CONN_HELP;

static int cmd_migrate(int argc, char **argv, cli_conn *conn)
{
	static const struct option opts[] = {
		{"dry-run", no_argument, NULL, 'n'},
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	int c, rc, dry_run = 0;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'n')
			dry_run = 1;
		else if ((rc = common_option(c, "migrate", migrate_help, argv,
		                             conn)) >= 0)
			return rc;
	}
	if ((rc = want_args("migrate", argc - optind, 0, 0)) >= 0 ||
	    (rc = resolve_conn(conn, "migrate")) >= 0)
		return rc;
	return mig_migrate(conn->dsn, conn->schema, dry_run, stdout);
}

/* ---- status ------------------------------------------------------------- */

static const char status_help[] =
	"usage: evstore status [--dsn DSN] [--schema NAME]\n"
	"\n"
	"Shows the schema's version and pending migrations, the number of "
	"streams and\n"
	"events, and when the newest event was recorded. When the schema is "
	"up to date,\n"
	"also the feed of all events: its head (the newest event's "
	"COMMIT:GLOBAL\n"
	"position), its fence (the order key from which events are not "
	"readable yet,\n"
	"because an older transaction is still open) and what holds the "
	"fence: a\n"
	"session's pid, application, state and how long its transaction has "
	"been open,\n"
	"or a prepared transaction. Exits 0 when the schema is ready for this "
	"evstore,\n"
	"1 otherwise (missing, pending migrations, or newer).\n"
	"\n"
	CONN_HELP;

static int cmd_status(int argc, char **argv, cli_conn *conn)
{
	static const struct option opts[] = {COMMON_OPTIONS,
	                                     {NULL, 0, NULL, 0}};
	mig_counts counts = {0, 0, -1};
	mig_state st;
	char at[CLI_TIME_LEN];
	size_t i, pending;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1)
		if ((rc = common_option(c, "status", status_help, argv,
		                        conn)) >= 0)
			return rc;
	if ((rc = want_args("status", argc - optind, 0, 0)) >= 0 ||
	    (rc = resolve_conn(conn, "status")) >= 0)
		return rc;
	if ((rc = mig_status(conn->dsn, conn->schema, &st, &counts)) != 0)
		return rc;
	if (!st.schema_exists)
		return cli_fail(EXIT_ERR, "schema \"%s\" does not exist: run "
		                "evstore migrate", conn->schema);
	if (st.version == 0)
		return cli_fail(EXIT_ERR, "schema \"%s\" holds no evstore "
		                "tables: run evstore migrate", conn->schema);
	pending = (size_t)st.version < mig_count
	                  ? mig_count - (size_t)st.version : 0;
	printf("schema:        \"%s\", version %d", conn->schema, st.version);
	if ((size_t)st.version > mig_count)
		printf(" (newer than the %zu this evstore knows)\n", mig_count);
	else
		fputs(pending ? "\n" : " (up to date)\n", stdout);
	printf("pending:       ");
	if (pending == 0)
		printf("none\n");
	for (i = (size_t)st.version; i < mig_count; i++)
		printf("%s%s", mig_files[i].name,
		       i + 1 < mig_count ? ", " : "\n");
	printf("streams:       %lld\n", (long long)counts.streams);
	printf("events:        %lld\n", (long long)counts.events);
	/* A restored event may be older than 1970: newest_us < 0. */
	if (counts.events > 0)
		cli_format_time(at, counts.newest_us);
	printf("newest event:  %s\n", counts.events > 0 ? at : "none");
	if (pending > 0)
		return cli_fail(EXIT_ERR, "schema \"%s\" has %zu pending "
		                "migration%s: run evstore migrate",
		                conn->schema, pending, pending > 1 ? "s" : "");
	if ((size_t)st.version > mig_count)
		return cli_fail(EXIT_ERR, "schema \"%s\" is at version %d, newer "
		                "than the %zu this evstore (%s) knows: upgrade "
		                "evstore", conn->schema, st.version, mig_count,
		                evs_version());
	return feed_status(conn);
}

/* ---- append ------------------------------------------------------------- */

static const char append_help[] =
	"usage: evstore append STREAM TYPE [DATA|-] [--expected N|any|exists]\n"
	"                      [--metadata JSON] [--id UUID] [--dsn DSN] "
	"[--schema NAME]\n"
	"\n"
	"Appends one event to STREAM and prints the stream's new version. "
	"DATA is\n"
	"JSON text (default: {}); - reads it from standard input. Exits 3, "
	"printing\n"
	"the conflict, when the stream is not at the expected version.\n"
	"\n"
	"  --expected N     the stream must be at version N (-1: must have "
	"no events)\n"
	"  --expected any   no check (the default)\n"
	"  --expected exists  the stream must hold one event or more\n"
	"  --metadata JSON  a JSON object stored beside the data\n"
	"  --id UUID        the event id (default: a new UUIDv7); sending "
	"the same id\n"
	"                   again after the same version stores nothing\n"
	CONN_HELP;

/* Reads all of stdin. */
static char *read_stdin(void)
{
	cli_buf b = {NULL, 0, 0};
	char chunk[65536];
	size_t n;

	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
		cli_buf_add(&b, chunk, n);
	if (ferror(stdin)) {
		free(b.p);
		return NULL;
	}
	return b.p ? b.p : cli_xstrdup("");
}

static int cmd_append(int argc, char **argv, cli_conn *conn)
{
	static const struct option opts[] = {
		{"expected", required_argument, NULL, 'e'},
		{"metadata", required_argument, NULL, 'm'},
		{"id", required_argument, NULL, 'i'},
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	const char *expected_text = "any", *metadata = NULL, *id_text = NULL;
	const char *stream, *type, *data = "{}";
	char *data_buf = NULL;
	int64_t expected = EVS_ANY_VERSION, version = 0;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	evs_event *ev = NULL;
	evs_uuid id;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'e')
			expected_text = optarg;
		else if (c == 'm')
			metadata = optarg;
		else if (c == 'i')
			id_text = optarg;
		else if ((rc = common_option(c, "append", append_help, argv,
		                             conn)) >= 0)
			return rc;
	}
	if ((rc = want_args("append", argc - optind, 2, 3)) >= 0 ||
	    (rc = resolve_conn(conn, "append")) >= 0)
		return rc;
	stream = argv[optind];
	type = argv[optind + 1];
	if (strcmp(expected_text, "any") == 0)
		expected = EVS_ANY_VERSION;
	else if (strcmp(expected_text, "exists") == 0)
		expected = EVS_STREAM_EXISTS;
	else if (cli_parse_int(&expected, expected_text, -1,
	                       INT64_MAX - 1) < 0)
		return cli_usage("append", "--expected takes a version (-1 or "
		                 "more), any or exists, not \"%s\"",
		                 expected_text);
	if (id_text != NULL && evs_uuid_parse(&id, id_text, NULL) < 0)
		return cli_usage("append", "--id takes a UUID, not \"%s\"",
		                 id_text);
	if (argc - optind == 3) {
		data = argv[optind + 2];
		if (strcmp(data, "-") == 0) {
			data = data_buf = read_stdin();
			if (data == NULL)
				return cli_fail(EXIT_ERR, "could not read "
				                "standard input: %s",
				                strerror(errno));
		}
	}
	/* The event is checked before anything is sent. */
	if (evs_event_new_json(&ev, type, data, metadata, &err) < 0 ||
	    (id_text != NULL && evs_event_set_id(ev, &id, &err) < 0)) {
		rc = cli_store_fail(&err, NULL);
		goto done;
	}
	if ((rc = cli_open_store(&store, conn, 1)) != EXIT_OK)
		goto done;
	if (evs_store_append(&version, store, stream, expected, &ev, 1,
	                     &err) < 0) {
		rc = cli_store_fail(&err, NULL);
		goto done;
	}
	printf("%lld\n", (long long)version);
	rc = EXIT_OK;
done:
	evs_event_free(ev);
	evs_store_free(store);
	evs_error_clear(&err);
	free(data_buf);
	return rc;
}

/* ---- read --------------------------------------------------------------- */

static const char read_help[] =
	"usage: evstore read STREAM [--from N] [--limit N] [--backward | "
	"--last N]\n"
	"                    [--format ndjson|table] [--dsn DSN] "
	"[--schema NAME]\n"
	"\n"
	"Prints the events of STREAM, oldest first.\n"
	"\n"
	"  --from N         start at version N (default 0; with --backward, "
	"the newest)\n"
	"  --limit N        print at most N events\n"
	"  --backward       newest first, from --from down to version 0\n"
	"  --last N         the last N events, oldest first (not with --from "
	"or\n"
	"                   --backward)\n"
	"  --format ndjson  one JSON object per line, every stored field (as "
	"export);\n"
	"                   the default when standard output is not a "
	"terminal\n"
	"  --format table   aligned columns version, type, recorded_at, "
	"data; data is\n"
	"                   cut to the terminal's width; the default on a "
	"terminal\n"
	CONN_HELP;

typedef struct row {
	char version[24];
	char at[CLI_TIME_LEN];
	char *type;
	char *data;
} row;

typedef struct read_ctx {
	int64_t limit; /* -1: none */
	int64_t count;
	int table;
	cli_buf out;
	row *rows;
	size_t n_rows, cap_rows;
} read_ctx;

static int read_one(const evs_event *ev, void *payload)
{
	read_ctx *ctx = payload;

	if (ctx->limit >= 0 && ctx->count >= ctx->limit)
		return 1;
	ctx->count++;
	if (!ctx->table) {
		ndjson_add_event(&ctx->out, ev);
		if (ctx->out.len >= (1u << 16)) {
			fwrite(ctx->out.p, 1, ctx->out.len, stdout);
			ctx->out.len = 0;
		}
	} else {
		row *r;

		if (ctx->n_rows == ctx->cap_rows) {
			ctx->cap_rows = ctx->cap_rows ? 2 * ctx->cap_rows : 64;
			ctx->rows = cli_xrealloc(ctx->rows, ctx->cap_rows *
			                                        sizeof(row));
		}
		r = &ctx->rows[ctx->n_rows++];
		snprintf(r->version, sizeof(r->version), "%lld",
		         (long long)evs_event_version(ev));
		cli_format_time(r->at, evs_event_recorded_at(ev));
		r->type = cli_xstrdup(evs_event_type(ev));
		r->data = cli_xstrdup(evs_event_data_json(ev));
	}
	return ctx->limit >= 0 && ctx->count >= ctx->limit ? 1 : 0;
}

/* Prints @p s in at most @p width columns, ending with "..." when cut. */
static void print_cut(const char *s, size_t width)
{
	int cut;
	size_t n = cli_fit(s, width, &cut);

	fwrite(s, 1, n, stdout);
	if (cut)
		fputs("...", stdout);
}

static void print_table(read_ctx *ctx)
{
	size_t wv = strlen("version"), wt = strlen("type"), i, used;
	size_t wa = 27; /* an RFC 3339 time; years past 9999 are longer */
	size_t width = cli_term_width();

	for (i = 0; i < ctx->n_rows; i++) {
		if (strlen(ctx->rows[i].version) > wv)
			wv = strlen(ctx->rows[i].version);
		if (cli_text_width(ctx->rows[i].type) > wt)
			wt = cli_text_width(ctx->rows[i].type);
		if (strlen(ctx->rows[i].at) > wa)
			wa = strlen(ctx->rows[i].at);
	}
	used = wv + 2 + wt + 2 + wa + 2;
	printf("%*s  %-*s  %-*s  data\n", (int)wv, "version", (int)wt, "type",
	       (int)wa, "recorded_at");
	for (i = 0; i < ctx->n_rows; i++) {
		row *r = &ctx->rows[i];

		printf("%*s  %s%*s  %-*s  ", (int)wv, r->version, r->type,
		       (int)(wt - cli_text_width(r->type)), "", (int)wa, r->at);
		print_cut(r->data, width > used + 10 ? width - used - 1 : 10);
		putchar('\n');
		free(r->type);
		free(r->data);
	}
}

static int cmd_read(int argc, char **argv, cli_conn *conn)
{
	static const struct option opts[] = {
		{"from", required_argument, NULL, 'f'},
		{"limit", required_argument, NULL, 'l'},
		{"format", required_argument, NULL, 'F'},
		{"backward", no_argument, NULL, 'b'},
		{"last", required_argument, NULL, 'L'},
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	read_ctx ctx = {-1, 0, 0, {NULL, 0, 0}, NULL, 0, 0};
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	evs_event_list *list = NULL;
	const char *format = NULL;
	int64_t from = -1, last = -1;
	int c, rc, backward = 0;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'f') {
			if (cli_parse_int(&from, optarg, 0, INT64_MAX - 1) < 0)
				return cli_usage("read", "--from takes a "
				                 "version (0 or more), not "
				                 "\"%s\"", optarg);
		} else if (c == 'b') {
			backward = 1;
		} else if (c == 'L') {
			if (cli_parse_int(&last, optarg, 1, INT64_MAX) < 0)
				return cli_usage("read", "--last takes a "
				                 "count (1 or more), not "
				                 "\"%s\"", optarg);
		} else if (c == 'l') {
			if (cli_parse_int(&ctx.limit, optarg, 0,
			                  INT64_MAX) < 0)
				return cli_usage("read", "--limit takes a "
				                 "count (0 or more), not "
				                 "\"%s\"", optarg);
		} else if (c == 'F') {
			format = optarg;
		} else if ((rc = common_option(c, "read", read_help, argv,
		                               conn)) >= 0) {
			return rc;
		}
	}
	if ((rc = want_args("read", argc - optind, 1, 1)) >= 0)
		return rc;
	if (last >= 0 && (from >= 0 || backward))
		return cli_usage("read", "--last goes with neither --from nor "
		                 "--backward");
	if ((rc = resolve_conn(conn, "read")) >= 0)
		return rc;
	if (format == NULL)
		ctx.table = isatty(STDOUT_FILENO);
	else if (strcmp(format, "table") == 0)
		ctx.table = 1;
	else if (strcmp(format, "ndjson") != 0)
		return cli_usage("read", "--format is ndjson or table, not "
		                 "\"%s\"", format);
	if ((rc = cli_open_store(&store, conn, 1)) != EXIT_OK)
		return rc;
	if (ctx.limit == 0) {
		rc = 0;
	} else if (last >= 0) {
		/* At most as many events as asked for, held at once. */
		rc = evs_store_load_last(&list, store, argv[optind],
		                         (size_t)last, &err);
		for (size_t i = 0; rc == 0 && i < evs_event_list_count(list);
		     i++)
			if (read_one(evs_event_list_get(list, i), &ctx) != 0)
				break;
		evs_event_list_free(list);
	} else if (backward) {
		rc = evs_store_foreach_backward(
			store, argv[optind], from >= 0 ? from + 1 : EVS_END_VERSION,
			ctx.limit > 0 ? (size_t)ctx.limit : 0, read_one, &ctx,
			&err);
	} else {
		rc = evs_store_foreach(store, argv[optind],
		                       from >= 0 ? from - 1 : EVS_NO_VERSION,
		                       read_one, &ctx, &err);
	}
	if (rc < 0) {
		rc = cli_store_fail(&err, NULL);
		for (size_t i = 0; i < ctx.n_rows; i++) {
			free(ctx.rows[i].type);
			free(ctx.rows[i].data);
		}
	} else {
		rc = EXIT_OK;
		if (ctx.table)
			print_table(&ctx);
		else if (ctx.out.len > 0)
			fwrite(ctx.out.p, 1, ctx.out.len, stdout);
	}
	free(ctx.rows);
	free(ctx.out.p);
	evs_store_free(store);
	evs_error_clear(&err);
	return rc;
}

/* ---- delete, undelete ------------------------------------------------- */

static const char delete_help[] =
	"usage: evstore delete STREAM [--hard [--reuse]] [--expected N | "
	"--yes]\n"
	"                      [--dsn DSN] [--schema NAME]\n"
	"\n"
	"Deletes a stream, in one transaction that appends a \"$deleted\" "
	"marker to it\n"
	"and an event to the $lifecycle stream, and logs itself in "
	"lifecycle_log.\n"
	"Prints the marker's version (-1 with --reuse).\n"
	"Soft (the default): the events stay; appends and reads are refused "
	"until\n"
	"`evstore undelete`.\n"
	"\n"
	"  --hard           remove the events too; the stream stays refused "
	"for good\n"
	"  --reuse          with --hard: remove the stream itself, so that "
	"its id\n"
	"                   starts again at version 0\n"
	"  --expected N     the stream's version as you saw it; if it moved "
	"on, nothing\n"
	"                   is deleted and the exit code is 3\n"
	"  --yes            at whatever version the stream is. On a "
	"terminal one of\n"
	"                   --expected and --yes is needed\n"
	CONN_HELP;

static const char undelete_help[] =
	"usage: evstore undelete STREAM [--expected N | --yes] [--dsn DSN] "
	"[--schema NAME]\n"
	"\n"
	"Brings back a stream that `evstore delete` deleted without --hard: "
	"appends an\n"
	"\"$undeleted\" marker after its \"$deleted\" one (and an event to "
	"$lifecycle), and\n"
	"prints the marker's version. Appends and reads work again.\n"
	"\n"
	"  --expected N     the stream's version (its \"$deleted\" "
	"marker's, as\n"
	"                   `evstore delete` printed it); if it moved on, "
	"exit code 3\n"
	"  --yes            at whatever version the stream is. On a "
	"terminal one of\n"
	"                   --expected and --yes is needed\n"
	CONN_HELP;

/* delete and undelete: the same options, one call. */
static int cmd_lifecycle(int argc, char **argv, cli_conn *conn, int undelete)
{
	static const struct option delete_opts[] = {
		{"expected", required_argument, NULL, 'e'},
		{"yes", no_argument, NULL, 'y'},
		{"hard", no_argument, NULL, 'H'},
		{"reuse", no_argument, NULL, 'R'},
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	static const struct option undelete_opts[] = {
		{"expected", required_argument, NULL, 'e'},
		{"yes", no_argument, NULL, 'y'},
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	const char *cmd = undelete ? "undelete" : "delete";
	const char *expected_text = NULL;
	int64_t expected = EVS_ANY_VERSION, version = EVS_NO_VERSION;
	unsigned int flags = 0;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	int c, rc, yes = 0;

	while ((c = getopt_long(argc, argv, ":h",
	                        undelete ? undelete_opts : delete_opts,
	                        NULL)) != -1) {
		if (c == 'e')
			expected_text = optarg;
		else if (c == 'y')
			yes = 1;
		else if (c == 'H')
			flags |= EVS_DELETE_HARD;
		else if (c == 'R')
			flags |= EVS_DELETE_REUSE;
		else if ((rc = common_option(c, cmd,
		                             undelete ? undelete_help
		                                      : delete_help,
		                             argv, conn)) >= 0)
			return rc;
	}
	if ((rc = want_args(cmd, argc - optind, 1, 1)) >= 0)
		return rc;
	if (expected_text != NULL &&
	    cli_parse_int(&expected, expected_text, 0, INT64_MAX - 1) < 0)
		return cli_usage(cmd, "--expected takes a version (0 or more), "
		                 "not \"%s\"", expected_text);
	if (expected_text != NULL && yes)
		return cli_usage(cmd, "--expected and --yes do not go "
		                 "together");
	if ((flags & EVS_DELETE_REUSE) && !(flags & EVS_DELETE_HARD))
		return cli_usage(cmd, "--reuse goes with --hard");
	/* A person at a terminal says which version, or that any will do;
	 * a script's silence means any. */
	if (expected_text == NULL && !yes && isatty(STDIN_FILENO))
		return cli_usage(cmd, "on a terminal, say --expected VERSION "
		                 "(see `evstore read --last 1 %s`) or --yes",
		                 argv[optind]);
	if ((rc = resolve_conn(conn, cmd)) >= 0 ||
	    (rc = cli_open_store(&store, conn, 1)) != EXIT_OK)
		goto done;
	if ((undelete ? evs_store_undelete(&version, store, argv[optind],
	                                   expected, &err)
	              : evs_store_delete(&version, store, argv[optind],
	                                 expected, flags, &err)) < 0) {
		rc = cli_store_fail(&err, NULL);
		goto done;
	}
	printf("%lld\n", (long long)version);
	rc = EXIT_OK;
done:
	evs_store_free(store);
	evs_error_clear(&err);
	return rc;
}

static int cmd_delete(int argc, char **argv, cli_conn *conn)
{
	return cmd_lifecycle(argc, argv, conn, 0);
}

static int cmd_undelete(int argc, char **argv, cli_conn *conn)
{
	return cmd_lifecycle(argc, argv, conn, 1);
}

/* ---- truncate, retention, scavenge ------------------------------------- */

static const char truncate_help[] =
	"usage: evstore truncate STREAM --before V [--expected N | --yes] "
	"[--force]\n"
	"                        [--dsn DSN] [--schema NAME]\n"
	"\n"
	"Truncates a stream: its reads start at version V from now on; "
	"`evstore\n"
	"scavenge` removes the events below later. Truncation only moves "
	"forward.\n"
	"Refused unless a snapshot of the stream covers the cut (its "
	"version is V - 1\n"
	"or later): an aggregate could not be rebuilt from what is left.\n"
	"\n"
	"  --before V       the first version reads keep\n"
	"  --expected N     the stream's version as you saw it; if it moved "
	"on, nothing\n"
	"                   changes and the exit code is 3\n"
	"  --yes            at whatever version the stream is. On a "
	"terminal one of\n"
	"                   --expected and --yes is needed\n"
	"  --force          even without a snapshot that covers the cut\n"
	CONN_HELP;

static const char retention_help[] =
	"usage: evstore retention STREAM [--max-count N] [--max-age "
	"DURATION]\n"
	"                         [--expected N | --yes] [--force] [--dsn "
	"DSN] [--schema NAME]\n"
	"\n"
	"Sets how much of a stream its reads keep: the last N events, and "
	"those\n"
	"recorded within DURATION (from the first one that recent on). "
	"Neither: keep\n"
	"everything again. Reads follow at once; `evstore scavenge` removes "
	"the rest\n"
	"later. Refused unless a snapshot covers the cut (see truncate).\n"
	"\n"
	"  --max-count N    keep the last N events (0: no limit)\n"
	"  --max-age D      keep what is younger than D: a number of "
	"seconds, or with\n"
	"                   s, m, h or d (90d, 12h; 0: no limit)\n"
	"  --expected N, --yes, --force   as for truncate\n"
	CONN_HELP;

static const char scavenge_help[] =
	"usage: evstore scavenge [--max-events N] [--dsn DSN] [--schema "
	"NAME]\n"
	"\n"
	"Removes the events that truncation and retention released, N at a "
	"time, each\n"
	"step its own short transaction, until none is left; appends go on "
	"meanwhile.\n"
	"Prints how many it removed; shows a progress bar on a terminal.\n"
	"\n"
	"  --max-events N   events per step (default 10000)\n"
	CONN_HELP;

/* "90d", "12h", "30m", "45s" or "3600": seconds. */
static int parse_duration(int64_t *out, const char *text)
{
	static const struct {
		char unit;
		int64_t secs;
	} units[] = {{'s', 1}, {'m', 60}, {'h', 3600}, {'d', 86400}};
	size_t len = strlen(text), i;
	int64_t n, mult = 1;
	char num[32];

	if (len == 0 || len >= sizeof(num))
		return -1;
	memcpy(num, text, len + 1);
	for (i = 0; i < sizeof(units) / sizeof(units[0]); i++)
		if (num[len - 1] == units[i].unit) {
			mult = units[i].secs;
			num[len - 1] = '\0';
			break;
		}
	if (cli_parse_int(&n, num, 0, ((int64_t)1 << 40) / mult) < 0)
		return -1;
	*out = n * mult;
	return 0;
}

/* The options truncate and retention share: the expected version. */
static int expected_of(int64_t *out, const char *cmd, const char *text,
                       int yes, const char *stream)
{
	*out = EVS_ANY_VERSION;
	if (text != NULL && cli_parse_int(out, text, 0, INT64_MAX - 1) < 0)
		return cli_usage(cmd, "--expected takes a version (0 or more), "
		                 "not \"%s\"", text);
	if (text != NULL && yes)
		return cli_usage(cmd, "--expected and --yes do not go "
		                 "together");
	if (text == NULL && !yes && isatty(STDIN_FILENO))
		return cli_usage(cmd, "on a terminal, say --expected VERSION "
		                 "(see `evstore read --last 1 %s`) or --yes",
		                 stream);
	return -1;
}

static int cmd_truncate(int argc, char **argv, cli_conn *conn)
{
	static const struct option opts[] = {
		{"before", required_argument, NULL, 'b'},
		{"expected", required_argument, NULL, 'e'},
		{"yes", no_argument, NULL, 'y'},
		{"force", no_argument, NULL, 'f'},
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	const char *expected_text = NULL, *before_text = NULL;
	int64_t expected, before;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	unsigned int flags = 0;
	int c, rc, yes = 0;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'b')
			before_text = optarg;
		else if (c == 'e')
			expected_text = optarg;
		else if (c == 'y')
			yes = 1;
		else if (c == 'f')
			flags |= EVS_TRUNCATE_FORCE;
		else if ((rc = common_option(c, "truncate", truncate_help,
		                             argv, conn)) >= 0)
			return rc;
	}
	if ((rc = want_args("truncate", argc - optind, 1, 1)) >= 0)
		return rc;
	if (before_text == NULL)
		return cli_usage("truncate", "--before VERSION is needed");
	if (cli_parse_int(&before, before_text, 0, INT64_MAX - 1) < 0)
		return cli_usage("truncate", "--before takes a version (0 or "
		                 "more), not \"%s\"", before_text);
	if ((rc = expected_of(&expected, "truncate", expected_text, yes,
	                      argv[optind])) >= 0 ||
	    (rc = resolve_conn(conn, "truncate")) >= 0 ||
	    (rc = cli_open_store(&store, conn, 1)) != EXIT_OK)
		goto done;
	if (evs_store_truncate(store, argv[optind], expected, before, flags,
	                       &err) < 0) {
		rc = cli_store_fail(&err, NULL);
		goto done;
	}
	rc = EXIT_OK;
done:
	evs_store_free(store);
	evs_error_clear(&err);
	return rc;
}

static int cmd_retention(int argc, char **argv, cli_conn *conn)
{
	static const struct option opts[] = {
		{"max-count", required_argument, NULL, 'c'},
		{"max-age", required_argument, NULL, 'a'},
		{"expected", required_argument, NULL, 'e'},
		{"yes", no_argument, NULL, 'y'},
		{"force", no_argument, NULL, 'f'},
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	const char *expected_text = NULL;
	evs_retention r = {0, 0};
	int64_t expected;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	unsigned int flags = 0;
	int c, rc, yes = 0;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'c') {
			if (cli_parse_int(&r.max_count, optarg, 0,
			                  INT64_MAX - 1) < 0)
				return cli_usage("retention", "--max-count "
				                 "takes a count (0 or more), "
				                 "not \"%s\"", optarg);
		} else if (c == 'a') {
			if (parse_duration(&r.max_age_s, optarg) < 0)
				return cli_usage("retention", "--max-age takes "
				                 "a duration (90d, 12h, 30m, "
				                 "45s or seconds), not \"%s\"",
				                 optarg);
		} else if (c == 'e') {
			expected_text = optarg;
		} else if (c == 'y') {
			yes = 1;
		} else if (c == 'f') {
			flags |= EVS_TRUNCATE_FORCE;
		} else if ((rc = common_option(c, "retention", retention_help,
		                               argv, conn)) >= 0) {
			return rc;
		}
	}
	if ((rc = want_args("retention", argc - optind, 1, 1)) >= 0 ||
	    (rc = expected_of(&expected, "retention", expected_text, yes,
	                      argv[optind])) >= 0 ||
	    (rc = resolve_conn(conn, "retention")) >= 0 ||
	    (rc = cli_open_store(&store, conn, 1)) != EXIT_OK)
		goto done;
	if (evs_store_set_retention(store, argv[optind], expected, &r, flags,
	                            &err) < 0) {
		rc = cli_store_fail(&err, NULL);
		goto done;
	}
	rc = EXIT_OK;
done:
	evs_store_free(store);
	evs_error_clear(&err);
	return rc;
}

static int cmd_scavenge(int argc, char **argv, cli_conn *conn)
{
	static const struct option opts[] = {
		{"max-events", required_argument, NULL, 'n'},
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	int64_t step = 10000;
	size_t n, total = 0;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	progress bar;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'n') {
			if (cli_parse_int(&step, optarg, 1, INT32_MAX) < 0)
				return cli_usage("scavenge", "--max-events "
				                 "takes a count (1 or more), "
				                 "not \"%s\"", optarg);
		} else if ((rc = common_option(c, "scavenge", scavenge_help,
		                               argv, conn)) >= 0) {
			return rc;
		}
	}
	if ((rc = want_args("scavenge", argc - optind, 0, 0)) >= 0 ||
	    (rc = resolve_conn(conn, "scavenge")) >= 0 ||
	    (rc = cli_open_store(&store, conn, 1)) != EXIT_OK)
		goto done;
	progress_start(&bar, "scavenge", -1);
	do {
		rc = evs_store_scavenge(&n, store, (size_t)step, &err);
		if (rc < 0)
			break;
		total += n;
		progress_add(&bar, (int64_t)n);
	} while (n > 0);
	progress_stop(&bar, rc == 0);
	if (rc < 0) {
		rc = cli_store_fail(&err, NULL);
		goto done;
	}
	printf("removed %zu events\n", total);
	rc = EXIT_OK;
done:
	evs_store_free(store);
	evs_error_clear(&err);
	return rc;
}

/* ---- snapshots --------------------------------------------------------- */

static const char snapshots_help[] =
	"usage: evstore snapshots STREAM [--format table|ndjson] [--dsn DSN] "
	"[--schema NAME]\n"
	"\n"
	"Lists the snapshots kept for a stream (the newest of each kind and "
	"format):\n"
	"kind (the aggregate type), format, the version it is the state "
	"after, when it\n"
	"was taken, and its size. A table on a terminal, NDJSON otherwise.\n"
	"\n"
	"  --format F       table or ndjson\n"
	CONN_HELP;

typedef struct {
	int table;
	int rows;
	cli_buf out;
} snap_list;

static int print_snapshot(const evs_snapshot_info *info, void *payload)
{
	snap_list *l = payload;
	char when[CLI_TIME_LEN];

	cli_format_time(when, info->taken_at);
	if (l->table) {
		if (l->rows == 0)
			printf("%-24s  %6s  %12s  %-27s  %10s\n", "kind",
			       "format", "version", "taken_at", "bytes");
		printf("%-24s  %6u  %12lld  %-27s  %10zu\n",
		       info->kind[0] ? info->kind : "-", info->format,
		       (long long)info->version, when, info->bytes);
	} else {
		l->out.len = 0;
		cli_buf_adds(&l->out, "{\"stream_id\":");
		ndjson_add_string(&l->out, info->aggregate_id);
		cli_buf_adds(&l->out, ",\"kind\":");
		ndjson_add_string(&l->out, info->kind);
		cli_buf_printf(&l->out,
		               ",\"format\":%u,\"version\":%lld,"
		               "\"taken_at\":\"%s\",\"bytes\":%zu}\n",
		               info->format, (long long)info->version, when,
		               info->bytes);
		fwrite(l->out.p, 1, l->out.len, stdout);
	}
	l->rows++;
	return 0;
}

static int cmd_snapshots(int argc, char **argv, cli_conn *conn)
{
	static const struct option opts[] = {
		{"format", required_argument, NULL, 'F'},
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	const char *fmt = NULL;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	snap_list l;
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'F')
			fmt = optarg;
		else if ((rc = common_option(c, "snapshots", snapshots_help,
		                             argv, conn)) >= 0)
			return rc;
	}
	if ((rc = want_args("snapshots", argc - optind, 1, 1)) >= 0 ||
	    (rc = resolve_conn(conn, "snapshots")) >= 0)
		return rc;
	memset(&l, 0, sizeof(l));
	if (fmt == NULL)
		l.table = isatty(STDOUT_FILENO);
	else if (strcmp(fmt, "table") == 0)
		l.table = 1;
	else if (strcmp(fmt, "ndjson") != 0)
		return cli_usage("snapshots", "--format is table or ndjson, "
		                 "not \"%s\"", fmt);
	if ((rc = cli_open_store(&store, conn, 1)) != EXIT_OK)
		goto done;
	if (evs_store_snapshots(store, argv[optind], print_snapshot, &l,
	                        &err) < 0) {
		rc = cli_store_fail(&err, NULL);
		goto done;
	}
	rc = EXIT_OK;
done:
	free(l.out.p);
	evs_store_free(store);
	evs_error_clear(&err);
	return rc;
}

/* ---- main ------------------------------------------------------------- */

typedef struct command {
	const char *name;
	int (*run)(int argc, char **argv, cli_conn *conn);
	const char *summary;
} command;

static int run_export(int argc, char **argv, cli_conn *conn);
static int run_import(int argc, char **argv, cli_conn *conn);
static int run_tail(int argc, char **argv, cli_conn *conn);
static int run_subscriptions(int argc, char **argv, cli_conn *conn);

static const command commands[] = {
	{"migrate", cmd_migrate, "apply the pending schema migrations"},
	{"status", cmd_status, "schema version, streams, events, feed fence"},
	{"append", cmd_append, "append one event to a stream"},
	{"read", cmd_read, "print a stream's events"},
	{"tail", run_tail, "print the feed of all events, or follow it"},
	{"subscriptions", run_subscriptions,
	 "stored subscriptions: checkpoint, lag, lease"},
	{"export", run_export, "write events as NDJSON"},
	{"import", run_import, "append NDJSON events back, idempotently"},
	{"delete", cmd_delete, "delete a stream (soft, or --hard)"},
	{"undelete", cmd_undelete, "bring a soft-deleted stream back"},
	{"snapshots", cmd_snapshots, "a stream's snapshots: kind, version, size"},
	{"truncate", cmd_truncate, "start a stream's reads at a version"},
	{"retention", cmd_retention, "keep a stream's last events only"},
	{"scavenge", cmd_scavenge, "remove what truncation released"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* export and import live in export.c and import.c; these adapters give
 * them the shared option handling. */
static const char export_help[] =
	"usage: evstore export [STREAM...] [--dsn DSN] [--schema NAME]\n"
	"\n"
	"Writes events to standard output as NDJSON: one JSON object per "
	"line with\n"
	"stream_id, version, event_id, type, data, metadata, position and "
	"recorded_at.\n"
	"Without STREAM, every stream, in commit order; with STREAMs, each "
	"of them in\n"
	"version order. Shows a progress bar when standard error is a "
	"terminal.\n"
	"\n"
	CONN_HELP;

static const char import_help[] =
	"usage: evstore import [FILE|-] [--jobs N] [--server-time] "
	"[--dsn DSN]\n"
	"                      [--schema NAME]\n"
	"\n"
	"Appends the events of an NDJSON file (as export writes it; default: "
	"standard\n"
	"input) keeping their stream ids, versions, event ids and recorded "
	"times.\n"
	"Keeping times needs EXECUTE on the schema's import_events function "
	"(the\n"
	"schema's owner has it). Importing the same file again changes "
	"nothing: the\n"
	"events already stored are counted as skipped. Shows a progress bar "
	"when\n"
	"standard error is a terminal. Exits 3 when a stream holds other "
	"events at\n"
	"those versions.\n"
	"\n"
	"  --jobs N         connections appending in parallel, each taking "
	"whole\n"
	"                   streams (default 4)\n"
	"  --server-time    ignore recorded_at: the store records the events "
	"now, as\n"
	"                   an application's appends (no extra privilege)\n"
	CONN_HELP;

typedef struct transfer_opts {
	int jobs;
	int server_time;
} transfer_opts;

static int parse_transfer(int argc, char **argv, cli_conn *conn,
                          const char *cmd, const char *help,
                          transfer_opts *t)
{
	static const struct option export_opts[] = {COMMON_OPTIONS,
	                                            {NULL, 0, NULL, 0}};
	static const struct option import_opts[] = {
		{"jobs", required_argument, NULL, 'j'},
		{"server-time", no_argument, NULL, 's'},
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h",
	                        t ? import_opts : export_opts, NULL)) != -1) {
		int64_t jobs;

		if (c == 'j' && t != NULL) {
			if (cli_parse_int(&jobs, optarg, 1, 64) < 0)
				return cli_usage(cmd, "--jobs takes a number "
				                 "from 1 to 64, not \"%s\"",
				                 optarg);
			t->jobs = (int)jobs;
		} else if (c == 's' && t != NULL) {
			t->server_time = 1;
		} else if ((rc = common_option(c, cmd, help, argv, conn)) >=
		           0) {
			return rc;
		}
	}
	return resolve_conn(conn, cmd);
}

static int run_export(int argc, char **argv, cli_conn *conn)
{
	int rc = parse_transfer(argc, argv, conn, "export", export_help, NULL);

	if (rc >= 0)
		return rc;
	return cmd_export(argc - optind, argv + optind, conn);
}

static int run_import(int argc, char **argv, cli_conn *conn)
{
	transfer_opts t = {4, 0};
	int rc = parse_transfer(argc, argv, conn, "import", import_help, &t);

	if (rc >= 0)
		return rc;
	if ((rc = want_args("import", argc - optind, 0, 1)) >= 0)
		return rc;
	return cmd_import(t.jobs, t.server_time,
	                  argc - optind > 0 ? argv[optind] : NULL, conn);
}

/* ---- tail and subscriptions (tail.c) ------------------------------------ */

static const char tail_help[] =
	"usage: evstore tail [--category C] [--type T]... "
	"[--from start|end|POSITION]\n"
	"                    [--subscription NAME [--member M/K]] [--follow] "
	"[--max N]\n"
	"                    [--format ndjson|table] [--dsn DSN] "
	"[--schema NAME]\n"
	"\n"
	"Prints the feed of all events (every stream in commit order, each "
	"stream's\n"
	"events in version order), or the part the filters keep, up to what "
	"it holds\n"
	"now, then exits 0. With --follow, goes on printing events as they "
	"commit until\n"
	"SIGINT or SIGTERM, then exits 0. A POSITION is COMMIT:GLOBAL, an "
	"event's order\n"
	"key and global position (\"761:7507\"), as the table format and "
	"evstore\n"
	"subscriptions show them.\n"
	"\n"
	"  --category C     only streams whose id, up to its first '-', is C\n"
	"  --type T         only events of type T; repeat for up to 16 types\n"
	"  --from start     from the first event (the default)\n"
	"  --from end       only events that commit from now on\n"
	"  --from POSITION  the events after the one at POSITION (0:0 is the "
	"start)\n"
	"  --subscription NAME\n"
	"                   a durable subscription: resume after NAME's "
	"stored\n"
	"                   checkpoint, and store it after each printed batch "
	"and on\n"
	"                   exit, once the events are written out (at least "
	"once: after\n"
	"                   a crash the events since the checkpoint print "
	"again).\n"
	"                   --from applies only while NAME has no checkpoint. "
	"One\n"
	"                   instance runs a NAME at a time: another one waits "
	"for its\n"
	"                   lease with --follow, else exits 1\n"
	"  --member M/K     with --subscription: member M (0 to K-1) of a "
	"group of K\n"
	"                   that share the streams, each stream going to one "
	"member\n"
	"  --follow         keep printing new events until interrupted\n"
	"  --max N          stop after N events; a subscription's checkpoint "
	"is then\n"
	"                   the Nth event\n"
	"  --format ndjson  one JSON object per line, as export writes them "
	"(import\n"
	"                   reads them back); the default when standard "
	"output is not a\n"
	"                   terminal\n"
	"  --format table   columns position, stream_id, version, type, "
	"recorded_at,\n"
	"                   data; data is cut to the terminal's width; the "
	"default on a\n"
	"                   terminal\n"
	CONN_HELP;

/* An id-like option value: 1 to 255 bytes (the library checks the
 * rest). */
static int id_ok(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= 255;
}

static int run_tail(int argc, char **argv, cli_conn *conn)
{
	static const struct option opts[] = {
		{"category", required_argument, NULL, 'c'},
		{"type", required_argument, NULL, 't'},
		{"from", required_argument, NULL, 'f'},
		{"subscription", required_argument, NULL, 's'},
		{"member", required_argument, NULL, 'm'},
		{"follow", no_argument, NULL, 'w'},
		{"max", required_argument, NULL, 'n'},
		{"format", required_argument, NULL, 'o'},
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	const char *format = NULL, *member = NULL;
	tail_opts o;
	int c, rc;

	memset(&o, 0, sizeof(o));
	o.start = EVS_SUB_FROM_START;
	o.group_size = 1;
	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		switch (c) {
		case 'c':
			if (!id_ok(optarg) || strchr(optarg, '-') != NULL)
				return cli_usage("tail", "--category takes 1 "
				                 "to 255 bytes without a '-' "
				                 "(a stream id's part before "
				                 "its first '-'), not \"%s\"",
				                 optarg);
			o.category = optarg;
			break;
		case 't':
			if (!id_ok(optarg))
				return cli_usage("tail", "--type takes an "
				                 "event type of 1 to 255 "
				                 "bytes");
			if (o.n_types == TAIL_MAX_TYPES)
				return cli_usage("tail", "--type may be given "
				                 "at most %d times",
				                 TAIL_MAX_TYPES);
			o.types[o.n_types++] = optarg;
			break;
		case 'f':
			if (strcmp(optarg, "start") == 0) {
				o.start = EVS_SUB_FROM_START;
			} else if (strcmp(optarg, "end") == 0) {
				o.start = EVS_SUB_FROM_END;
			} else if (cli_parse_position(&o.from, optarg) == 0) {
				o.start = EVS_SUB_FROM_POSITION;
			} else {
				return cli_usage("tail", "--from takes start, "
				                 "end or a position "
				                 "COMMIT:GLOBAL, not \"%s\"",
				                 optarg);
			}
			break;
		case 's':
			if (!id_ok(optarg))
				return cli_usage("tail", "--subscription takes "
				                 "a name of 1 to 255 bytes");
			o.name = optarg;
			break;
		case 'm':
			member = optarg;
			break;
		case 'w':
			o.follow = 1;
			break;
		case 'n':
			if (cli_parse_int(&o.max, optarg, 1, INT64_MAX) < 0)
				return cli_usage("tail", "--max takes a count "
				                 "(1 or more), not \"%s\"",
				                 optarg);
			break;
		case 'o':
			format = optarg;
			break;
		default:
			if ((rc = common_option(c, "tail", tail_help, argv,
			                        conn)) >= 0)
				return rc;
		}
	}
	if (member != NULL) {
		const char *slash = strchr(member, '/');
		int64_t m, k;
		char head[24];

		if (slash == NULL || (size_t)(slash - member) >= sizeof(head))
			return cli_usage("tail", "--member takes M/K "
			                 "(member M of a group of K), not "
			                 "\"%s\"", member);
		memcpy(head, member, (size_t)(slash - member));
		head[slash - member] = '\0';
		if (cli_parse_int(&k, slash + 1, 1, 1 << 20) < 0 ||
		    cli_parse_int(&m, head, 0, k - 1) < 0)
			return cli_usage("tail", "--member takes M/K, a "
			                 "member M from 0 to K-1 of a group of "
			                 "K from 1 to %d, not \"%s\"", 1 << 20,
			                 member);
		if (o.name == NULL)
			return cli_usage("tail", "--member needs "
			                 "--subscription");
		o.member = (unsigned int)m;
		o.group_size = (unsigned int)k;
	}
	o.types[o.n_types] = NULL;
	if (format == NULL)
		o.table = isatty(STDOUT_FILENO);
	else if (strcmp(format, "table") == 0)
		o.table = 1;
	else if (strcmp(format, "ndjson") != 0)
		return cli_usage("tail", "--format is ndjson or table, not "
		                 "\"%s\"", format);
	if ((rc = want_args("tail", argc - optind, 0, 0)) >= 0 ||
	    (rc = resolve_conn(conn, "tail")) >= 0)
		return rc;
	return cmd_tail(&o, conn);
}

static const char subscriptions_help[] =
	"usage: evstore subscriptions [--format table|ndjson] [--dsn DSN] "
	"[--schema NAME]\n"
	"\n"
	"Lists the stored subscriptions (of evstore tail --subscription, or "
	"of any\n"
	"application), one per name and group member, by name: the filter, "
	"the\n"
	"checkpoint (COMMIT:GLOBAL, the position of the last event handled; "
	"tail\n"
	"--from takes it), the lag (events of its feed after the checkpoint "
	"that are\n"
	"readable now), and the instance that holds its lease, with the "
	"lease's expiry\n"
	"(\"-\" when no live instance holds it).\n"
	"\n"
	"  --format table   columns name, member (M/K), checkpoint, lag, "
	"owner,\n"
	"                   lease_until, filter (the default)\n"
	"  --format ndjson  one JSON object per line: name, member, "
	"group_size, filter,\n"
	"                   checkpoint, lag, owner, lease_until, lease_epoch, "
	"updated_at\n"
	CONN_HELP;

static int run_subscriptions(int argc, char **argv, cli_conn *conn)
{
	static const struct option opts[] = {
		{"format", required_argument, NULL, 'o'},
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	const char *format = "table";
	int c, rc;

	while ((c = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
		if (c == 'o')
			format = optarg;
		else if ((rc = common_option(c, "subscriptions",
		                             subscriptions_help, argv,
		                             conn)) >= 0)
			return rc;
	}
	if (strcmp(format, "table") != 0 && strcmp(format, "ndjson") != 0)
		return cli_usage("subscriptions", "--format is table or "
		                 "ndjson, not \"%s\"", format);
	if ((rc = want_args("subscriptions", argc - optind, 0, 0)) >= 0 ||
	    (rc = resolve_conn(conn, "subscriptions")) >= 0)
		return rc;
	return cmd_subscriptions(strcmp(format, "table") == 0, conn);
}

static void main_help(void)
{
	size_t i;

	printf("usage: evstore [--dsn DSN] [--schema NAME] COMMAND "
	       "[ARG...]\n"
	       "       evstore COMMAND --help | --version\n\n"
	       "Manages an evstore event store in PostgreSQL.\n\n"
	       "Commands:\n");
	for (i = 0; i < N_COMMANDS; i++)
		printf("  %-15s%s\n", commands[i].name, commands[i].summary);
	printf("\nOptions (also after the command):\n" CONN_HELP
	       "  --version        print the version\n\n"
	       "Exit codes: 0 success, 1 error, 2 bad usage, 3 version "
	       "conflict.\n"
	       "See evstore(1) for more.\n");
}

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{"version", no_argument, NULL, 'V'},
		COMMON_OPTIONS,
		{NULL, 0, NULL, 0},
	};
	cli_conn conn = {NULL, NULL};
	const char *name;
	size_t i;
	int c;

	opterr = 0;
	while ((c = getopt_long(argc, argv, "+:hV", opts, NULL)) != -1) {
		switch (c) {
		case 'h':
			main_help();
			return EXIT_OK;
		case 'V':
			printf("evstore %s (schema version %zu)\n",
			       evs_version(), mig_count);
			return EXIT_OK;
		default: {
			int rc = common_option(c, NULL, "", argv, &conn);

			if (rc >= 0)
				return rc;
		}
		}
	}
	if (optind >= argc)
		return cli_usage(NULL, "no command given");
	name = argv[optind];
	if (strcmp(name, "help") == 0) {
		if (optind + 1 >= argc) {
			main_help();
			return EXIT_OK;
		}
		/* "evstore help read" is "evstore read --help". */
		name = argv[optind + 1];
		for (i = 0; i < N_COMMANDS; i++)
			if (strcmp(name, commands[i].name) == 0) {
				char *help_argv[] = {argv[optind + 1],
				                     (char *)"--help", NULL};

				optind = 0;
				return commands[i].run(2, help_argv, &conn);
			}
		return cli_usage(NULL, "unknown command \"%s\"", name);
	}
	for (i = 0; i < N_COMMANDS; i++)
		if (strcmp(name, commands[i].name) == 0) {
			argc -= optind;
			argv += optind;
			/* 0 makes GNU getopt start over (past argv[0]). */
			optind = 0;
			return commands[i].run(argc, argv, &conn);
		}
	return cli_usage(NULL, "unknown command \"%s\"", name);
}
