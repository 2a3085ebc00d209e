/* tools/cli.c: the helpers every file of the evstore tool shares (see
 * cli.h): messages and exit codes, opening the store, formatting and
 * parsing numbers and times, allocators that exit when memory runs out,
 * and a growable byte buffer. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"

int cli_fail(int code, const char *fmt, ...)
{
	va_list ap;

	fflush(stdout);
	fputs("evstore: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	return code;
}

int cli_usage(const char *cmd, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "evstore%s%s: ", cmd ? " " : "", cmd ? cmd : "");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see evstore%s%s --help)\n", cmd ? " " : "",
	        cmd ? cmd : "");
	return EXIT_USAGE;
}

int cli_store_fail(const evs_error *err, const char *prefix)
{
	cli_fail(EXIT_ERR, "%s%s", prefix ? prefix : "",
	         err->message ? err->message : evs_strerror(err->code));
	return err->code == EVS_ECONFLICT ? EXIT_CONFLICT : EXIT_ERR;
}

int cli_open_store(evs_store **out, const cli_conn *conn,
                   unsigned int pool_size)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	int rc;

	opts.schema = conn->schema;
	opts.pool_size = pool_size;
	/* Threads of an import may wait on each other's stream locks. */
	opts.pool_timeout_ms = 60000;
	if (evs_store_open_pg(out, conn->dsn, &opts, &err) == 0)
		return EXIT_OK;
	rc = cli_store_fail(&err, NULL);
	evs_error_clear(&err);
	return rc;
}

void cli_format_time(char out[CLI_TIME_LEN], int64_t micros)
{
	int64_t secs = micros / 1000000, us = micros % 1000000;
	time_t t;
	struct tm tm;
	size_t len;

	if (us < 0) {
		us += 1000000;
		secs--;
	}
	t = (time_t)secs;
	if (gmtime_r(&t, &tm) == NULL) {
		snprintf(out, CLI_TIME_LEN, "?");
		return;
	}
	len = strftime(out, CLI_TIME_LEN, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + len, CLI_TIME_LEN - len, ".%06dZ", (int)us);
}

int cli_parse_int(int64_t *out, const char *text, int64_t min, int64_t max)
{
	char *end;
	long long v;

	if (text[0] == '\0' || text[0] == ' ' || text[0] == '+')
		return -1;
	errno = 0;
	v = strtoll(text, &end, 10);
	if (errno != 0 || *end != '\0' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

void cli_format_count(char *out, size_t size, int64_t n)
{
	char digits[32];
	size_t len, i, o = 0;

	len = (size_t)snprintf(digits, sizeof(digits), "%lld", (long long)n);
	for (i = 0; i < len && o + 2 < size; i++) {
		if (i > 0 && digits[i - 1] != '-' && (len - i) % 3 == 0)
			out[o++] = ',';
		out[o++] = digits[i];
	}
	out[o] = '\0';
}

double cli_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void out_of_memory(void)
{
	cli_fail(EXIT_ERR, "out of memory");
	exit(EXIT_ERR);
}

void *cli_xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	if (p == NULL)
		out_of_memory();
	return p;
}

void *cli_xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (p == NULL)
		out_of_memory();
	return p;
}

char *cli_xstrdup(const char *s)
{
	size_t n = strlen(s) + 1;

	return memcpy(cli_xmalloc(n), s, n);
}

static void buf_reserve(cli_buf *b, size_t more)
{
	size_t cap;

	if (b->len + more + 1 <= b->cap)
		return;
	for (cap = b->cap ? b->cap : 256; cap < b->len + more + 1; cap *= 2)
		;
	b->p = cli_xrealloc(b->p, cap);
	b->cap = cap;
}

void cli_buf_add(cli_buf *b, const char *s, size_t n)
{
	buf_reserve(b, n);
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

void cli_buf_adds(cli_buf *b, const char *s)
{
	cli_buf_add(b, s, strlen(s));
}

void cli_buf_addc(cli_buf *b, char c)
{
	cli_buf_add(b, &c, 1);
}

void cli_buf_printf(cli_buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		out_of_memory();
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
}
