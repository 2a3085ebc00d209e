/* tools/cli.c: the helpers every file of the evstore tool shares (see
 * cli.h): messages and exit codes, opening the store, formatting and
 * parsing numbers and times, allocators that exit when memory runs out,
 * and a growable byte buffer. */
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

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

/* Days since 1970-01-01 of a date in the proleptic Gregorian calendar,
 * and back: H. Hinnant's days_from_civil and civil_from_days (eras of
 * 400 years, March-based years so that the leap day comes last). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	int64_t era, yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = y - era * 400;
	doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t *y, int *m, int *d, int64_t days)
{
	int64_t z = days + 719468, era, doe, yoe, doy, mp;

	era = (z >= 0 ? z : z - 146096) / 146097;
	doe = z - era * 146097;
	yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

void cli_format_time(char out[CLI_TIME_LEN], int64_t micros)
{
	/* Floor division: the fraction and the time of day never go
	 * negative. Neither step can overflow, even for INT64_MIN. */
	int64_t secs = micros / 1000000, us = micros % 1000000;
	int64_t days, sod, y;
	char text[128]; /* what the compiler cannot tell: 30 at most */
	size_t len;
	int m, d, n;

	if (us < 0) {
		us += 1000000;
		secs--;
	}
	days = secs / 86400;
	sod = secs % 86400;
	if (sod < 0) {
		sod += 86400;
		days--;
	}
	civil_from_days(&y, &m, &d, days);
	if (y >= 0 && y <= 9999)
		n = snprintf(text, sizeof(text), "%04lld", (long long)y);
	else
		n = snprintf(text, sizeof(text), "%+05lld", (long long)y);
	snprintf(text + n, sizeof(text) - (size_t)n,
	         "-%02d-%02dT%02d:%02d:%02d.%06dZ", m, d, (int)(sod / 3600),
	         (int)(sod / 60 % 60), (int)(sod % 60), (int)us);
	len = strlen(text);
	if (len >= CLI_TIME_LEN)
		len = CLI_TIME_LEN - 1;
	memcpy(out, text, len);
	out[len] = '\0';
}

/* Exactly @p n decimal digits at *p, then @p sep (none when '\0'). */
static int time_field(int64_t *out, const char **p, int n, char sep)
{
	int64_t v = 0;
	int i;

	for (i = 0; i < n; i++) {
		if ((*p)[i] < '0' || (*p)[i] > '9')
			return -1;
		v = v * 10 + ((*p)[i] - '0');
	}
	if (sep != '\0' && (*p)[n] != sep)
		return -1;
	*p += n + (sep != '\0');
	*out = v;
	return 0;
}

int cli_parse_time(int64_t *out, const char *text)
{
	static const int month_days[12] = {31, 28, 31, 30, 31, 30,
	                                   31, 31, 30, 31, 30, 31};
	const char *p = text;
	int64_t y, mo, d, h, mi, s, frac = 0, secs, max_secs;
	int n = 0, leap;

	if (*p == '+' || *p == '-') {
		/* As cli_format_time() writes it: only outside 0000 to
		 * 9999, no zeros before a fifth digit; 6 digits reach
		 * past the range. */
		while (p[1 + n] >= '0' && p[1 + n] <= '9')
			n++;
		if (n < 4 || n > 6 || (n > 4 && p[1] == '0'))
			return -1;
		p++;
		if (time_field(&y, &p, n, '-') < 0)
			return -1;
		if (text[0] == '-')
			y = -y;
		if (y >= 0 && y <= 9999)
			return -1;
	} else if (time_field(&y, &p, 4, '-') < 0) {
		return -1;
	}
	if (time_field(&mo, &p, 2, '-') < 0 || time_field(&d, &p, 2, 'T') < 0 ||
	    time_field(&h, &p, 2, ':') < 0 || time_field(&mi, &p, 2, ':') < 0 ||
	    time_field(&s, &p, 2, '\0') < 0)
		return -1;
	if (*p == '.') {
		for (p++, n = 0; n < 6 && *p >= '0' && *p <= '9'; p++, n++)
			frac = frac * 10 + (*p - '0');
		if (n == 0)
			return -1;
		for (; n < 6; n++)
			frac *= 10;
	}
	if (strcmp(p, "Z") != 0 && strcmp(p, "+00:00") != 0)
		return -1;
	/* The year first, so that the arithmetic below cannot overflow. */
	if (y < -4713 || y > 294247 || mo < 1 || mo > 12 || h > 23 ||
	    mi > 59 || s > 59)
		return -1;
	leap = y % 4 == 0 && (y % 100 != 0 || y % 400 == 0);
	if (d < 1 || d > month_days[mo - 1] + (mo == 2 && leap))
		return -1;
	secs = days_from_civil(y, (int)mo, (int)d) * 86400 + h * 3600 +
	       mi * 60 + s;
	max_secs = CLI_TIME_MAX / 1000000;
	if (secs > max_secs ||
	    (secs == max_secs && frac > CLI_TIME_MAX % 1000000) ||
	    secs * 1000000 + frac < CLI_TIME_MIN)
		return -1;
	*out = secs * 1000000 + frac;
	return 0;
}

char *cli_quote_ident(const char *s)
{
	cli_buf b = {NULL, 0, 0};

	cli_buf_addc(&b, '"');
	for (; *s; s++) {
		if (*s == '"')
			cli_buf_addc(&b, '"');
		cli_buf_addc(&b, *s);
	}
	cli_buf_addc(&b, '"');
	return b.p;
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

void cli_format_position(char out[CLI_POSITION_LEN], const evs_position *pos)
{
	snprintf(out, CLI_POSITION_LEN, "%llu:%lld",
	         (unsigned long long)pos->commit, (long long)pos->global);
}

/* Only digits, at least one: strtoull would take a sign or spaces. */
static int all_digits(const char *s, size_t n)
{
	size_t i;

	if (n == 0)
		return 0;
	for (i = 0; i < n; i++)
		if (s[i] < '0' || s[i] > '9')
			return 0;
	return 1;
}

int cli_parse_position(evs_position *out, const char *text)
{
	const char *colon = strchr(text, ':');
	unsigned long long commit;
	long long global;
	char *end;

	if (colon == NULL || !all_digits(text, (size_t)(colon - text)) ||
	    !all_digits(colon + 1, strlen(colon + 1)))
		return -1;
	errno = 0;
	commit = strtoull(text, &end, 10);
	if (errno != 0 || end != colon)
		return -1;
	global = strtoll(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0')
		return -1;
	out->commit = (uint64_t)commit;
	out->global = (int64_t)global;
	return 0;
}

size_t cli_text_width(const char *s)
{
	size_t w = 0;

	for (; *s; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			w++;
	return w;
}

size_t cli_fit(const char *s, size_t width, int *cut)
{
	size_t w = 0, i = 0, keep;

	*cut = 0;
	if (cli_text_width(s) <= width)
		return strlen(s);
	*cut = 1;
	if (width < 4)
		return 0;
	keep = width - 3;
	while (s[i] != '\0') {
		if (((unsigned char)s[i] & 0xc0) != 0x80) {
			if (w == keep)
				break;
			w++;
		}
		i++;
	}
	return i;
}

size_t cli_term_width(void)
{
	struct winsize ws;

	if (isatty(STDOUT_FILENO) &&
	    ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return SIZE_MAX;
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
