/* tools/cli.h: what the evstore tool's files share. */
#ifndef EVSTORE_TOOLS_CLI_H
#define EVSTORE_TOOLS_CLI_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <evstore/evstore.h>

/* The documented exit codes (evstore(1)). */
enum {
	EXIT_OK = 0,
	EXIT_ERR = 1,     /* anything that went wrong */
	EXIT_USAGE = 2,   /* bad command line */
	EXIT_CONFLICT = 3 /* an append met another version */
};

#if defined(__GNUC__) || defined(__clang__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLI_PRINTF(f, a)
/* ---- tail, subscriptions, the feed (tools/tail.c) ---- */

/* The event types tail filters on, at most (the library's limit). */
#define TAIL_MAX_TYPES 16

/* What `evstore tail` was asked, checked. */
typedef struct tail_opts {
	const char *category;   /* NULL: every stream */
	const char *types[TAIL_MAX_TYPES + 1]; /* NULL-terminated */
	size_t n_types;
	unsigned int start;     /* EVS_SUB_FROM_START, _END or _POSITION */
	evs_position from;      /* with EVS_SUB_FROM_POSITION */
	const char *name;       /* --subscription; NULL: none */
	unsigned int member, group_size; /* --member M/K; 0/1 without */
	int follow;
	int64_t max;            /* 0: no limit */
	int table;
} tail_opts;

/* Prints the feed as @p o says; an exit code. */
int cmd_tail(const tail_opts *o, const cli_conn *conn);

/* Lists the stored subscriptions, as a table or NDJSON; an exit code. */
int cmd_subscriptions(int table, const cli_conn *conn);

/* The feed lines of `evstore status`: head, fence, what holds it. An
 * exit code. */
int feed_status(const cli_conn *conn);

#endif

/* Where to connect: --dsn, else EVS_PG_DSN, else "" (libpq's PG*
 * variables); --schema, else EVS_PG_SCHEMA, else "evstore". */
typedef struct cli_conn {
	const char *dsn;
	const char *schema;
} cli_conn;

/* ---- shared helpers (tools/cli.c) ---- */

/* Prints "evstore: MESSAGE" (one line) on stderr; returns @p code. */
int cli_fail(int code, const char *fmt, ...) CLI_PRINTF(2, 3);

/* Prints "evstore CMD: MESSAGE (see evstore CMD --help)" on stderr and
 * returns EXIT_USAGE. */
int cli_usage(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/* Prints a failed call's message and returns its exit code
 * (EXIT_CONFLICT for EVS_ECONFLICT, else EXIT_ERR). @p prefix, when not
 * NULL, goes before the message ("line 12: "). */
int cli_store_fail(const evs_error *err, const char *prefix);

/* Opens the PostgreSQL store, or prints why not. Returns an exit code. */
int cli_open_store(evs_store **out, const cli_conn *conn,
                   unsigned int pool_size);

/* The times a store keeps (evs_event_set_recorded_at()): microseconds
 * since 1970-01-01 UTC from 4714-11-24 BC to 294247-01-10. */
#define CLI_TIME_MIN (-210866803200000000LL)
#define CLI_TIME_MAX (INT64_MAX - 1)

/* Microseconds since the epoch as RFC 3339 UTC with microseconds,
 * "2024-05-01T12:34:56.123456Z" (27 characters), in the proleptic
 * Gregorian calendar. A year outside 0000 to 9999 is written as ISO 8601
 * expands it: a sign and 4 digits or more, astronomical numbering
 * ("-4713-11-24T00:00:00.000000Z" is 4714 BC, "+294247-01-10T..."). Exact
 * for every int64_t (at most 30 characters and a NUL). */
#define CLI_TIME_LEN 32
void cli_format_time(char out[CLI_TIME_LEN], int64_t micros);

/* Parses what cli_format_time() writes, also with 0 to 5 fraction digits
 * (none: no '.') and "+00:00" for "Z". Returns 0, or -1 for anything
 * else: another form, a date that does not exist (2023-02-29), a time
 * outside CLI_TIME_MIN to CLI_TIME_MAX, or text after it. */
int cli_parse_time(int64_t *out, const char *text);

/* @p s as an SQL identifier, always quoted ("my""schema"). Yours: free()
 * it. */
char *cli_quote_ident(const char *s);

/* Parses a whole decimal integer within [min, max]; 0 or -1. */
int cli_parse_int(int64_t *out, const char *text, int64_t min, int64_t max);

/* A place in the feed as "COMMIT:GLOBAL", the two numbers of an
 * evs_position ("761:7507"): what tail's --from takes and its table
 * shows. */
#define CLI_POSITION_LEN 48
void cli_format_position(char out[CLI_POSITION_LEN], const evs_position *pos);

/* Parses "COMMIT:GLOBAL" (decimal digits only, GLOBAL at most INT64_MAX);
 * 0 or -1. */
int cli_parse_position(evs_position *out, const char *text);

/* Display width of UTF-8 text, one column per character. */
size_t cli_text_width(const char *s);

/* How many bytes of @p s to print in at most @p width columns; *cut is
 * set when "..." must follow them (the width counts it). */
size_t cli_fit(const char *s, size_t width, int *cut);

/* Columns of the terminal on standard output; SIZE_MAX when it is not
 * one. */
size_t cli_term_width(void);

/* 1234567 as "1,234,567". */
void cli_format_count(char *out, size_t size, int64_t n);

/* Seconds on the monotonic clock, for intervals. */
double cli_now_s(void);

/* ---- a growable byte buffer ---- */

typedef struct cli_buf {
	char *p;
	size_t len, cap;
} cli_buf;

/* These abort the program (exit 1, "out of memory") when memory runs
 * out: the tool cannot do anything useful then. */
void cli_buf_add(cli_buf *b, const char *s, size_t n);
void cli_buf_adds(cli_buf *b, const char *s);
void cli_buf_addc(cli_buf *b, char c);
void cli_buf_printf(cli_buf *b, const char *fmt, ...) CLI_PRINTF(2, 3);
void *cli_xmalloc(size_t n);
void *cli_xrealloc(void *p, size_t n);
char *cli_xstrdup(const char *s);

/* ---- NDJSON (tools/ndjson.c) ---- */

/* Appends @p s as a JSON string, quotes included. */
void ndjson_add_string(cli_buf *b, const char *s);

/* Appends one event as a JSON object with every stored field and a
 * newline: stream_id, version, event_id, type, data, metadata (null when
 * none), position, recorded_at. */
void ndjson_add_event(cli_buf *b, const evs_event *ev);

/* One line of an export, parsed. The strings point into the line, which
 * ndjson_parse_line() rewrites in place. */
typedef struct ndjson_event {
	const char *stream_id;
	const char *event_id;
	const char *type;
	const char *data;     /* raw JSON text, as written */
	const char *metadata; /* raw JSON text, or NULL for null or absent */
	const char *recorded_at; /* the string, unchecked; NULL when absent */
	int64_t version;
} ndjson_event;

/* Parses @p line (length @p len, NUL-terminated, modified in place).
 * Returns 0, or -1 with a short reason in @p why ("missing field
 * \"type\"", "not valid JSON: ... at byte 17"). */
int ndjson_parse_line(ndjson_event *out, char *line, size_t len,
                      char *why, size_t why_size);

/* ---- export and import (tools/export.c, tools/import.c) ---- */

/* Exports @p n_streams streams (all of them when 0) to stdout. */
int cmd_export(int n_streams, char **streams, const cli_conn *conn);

/* Imports @p file (stdin when NULL or "-") with @p jobs connections,
 * keeping each event's recorded_at, or, with @p server_time, letting the
 * store stamp them. */
int cmd_import(int jobs, int server_time, const char *file,
               const cli_conn *conn);

/* ---- tail, subscriptions, the feed (tools/tail.c) ---- */

/* The event types tail filters on, at most (the library's limit). */
#define TAIL_MAX_TYPES 16

/* What `evstore tail` was asked, checked. */
typedef struct tail_opts {
	const char *category;   /* NULL: every stream */
	const char *types[TAIL_MAX_TYPES + 1]; /* NULL-terminated */
	size_t n_types;
	unsigned int start;     /* EVS_SUB_FROM_START, _END or _POSITION */
	evs_position from;      /* with EVS_SUB_FROM_POSITION */
	const char *name;       /* --subscription; NULL: none */
	unsigned int member, group_size; /* --member M/K; 0/1 without */
	int follow;
	int64_t max;            /* 0: no limit */
	int table;
} tail_opts;

/* Prints the feed as @p o says; an exit code. */
int cmd_tail(const tail_opts *o, const cli_conn *conn);

/* Lists the stored subscriptions, as a table or NDJSON; an exit code. */
int cmd_subscriptions(int table, const cli_conn *conn);

/* The feed lines of `evstore status`: head, fence, what holds it. An
 * exit code. */
int feed_status(const cli_conn *conn);

#endif
