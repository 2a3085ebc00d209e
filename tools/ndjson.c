/* tools/ndjson.c: events as NDJSON lines, and back.
 *
 * Writing embeds the stored data and metadata text as it is. Reading
 * scans one line by hand rather than through json-c: it keeps the data
 * and metadata text exactly as written (json-c would clamp integers
 * wider than 64 bits and respell numbers), and it decodes the few string
 * fields in place, without an allocation per line. */
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* ---- writing ------------------------------------------------------------ */

void ndjson_add_string(cli_buf *b, const char *s)
{
	static const char hex[] = "0123456789abcdef";
	const char *run = s;

	cli_buf_addc(b, '"');
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		char esc[7] = {'\\', 0, 0, 0, 0, 0, 0};
		size_t n = 2;

		if (c >= 0x20 && c != '"' && c != '\\')
			continue;
		cli_buf_add(b, run, (size_t)(s - run));
		run = s + 1;
		switch (c) {
		case '"': esc[1] = '"'; break;
		case '\\': esc[1] = '\\'; break;
		case '\n': esc[1] = 'n'; break;
		case '\r': esc[1] = 'r'; break;
		case '\t': esc[1] = 't'; break;
		case '\b': esc[1] = 'b'; break;
		case '\f': esc[1] = 'f'; break;
		default:
			memcpy(esc + 1, "u00", 3);
			esc[4] = hex[c >> 4];
			esc[5] = hex[c & 15];
			n = 6;
		}
		cli_buf_add(b, esc, n);
	}
	cli_buf_add(b, run, (size_t)(s - run));
	cli_buf_addc(b, '"');
}

/* JSON text on one line: a raw newline in valid JSON can only be
 * whitespace between tokens (inside a string it must be escaped), so it
 * may become a space. PostgreSQL's jsonb never writes one anyway. */
static void add_json_one_line(cli_buf *b, const char *json)
{
	size_t start = b->len, i;

	cli_buf_adds(b, json);
	if (strpbrk(json, "\n\r") == NULL)
		return;
	for (i = start; i < b->len; i++)
		if (b->p[i] == '\n' || b->p[i] == '\r')
			b->p[i] = ' ';
}

void ndjson_add_event(cli_buf *b, const evs_event *ev)
{
	char id[EVS_UUID_STRLEN + 1], at[CLI_TIME_LEN];
	const char *meta = evs_event_metadata_json(ev);

	evs_uuid_format(id, evs_event_id(ev));
	cli_format_time(at, evs_event_recorded_at(ev));
	cli_buf_adds(b, "{\"stream_id\":");
	ndjson_add_string(b, evs_event_aggregate_id(ev));
	cli_buf_printf(b, ",\"version\":%lld,\"event_id\":\"%s\",\"type\":",
	               (long long)evs_event_version(ev), id);
	ndjson_add_string(b, evs_event_type(ev));
	cli_buf_adds(b, ",\"data\":");
	add_json_one_line(b, evs_event_data_json(ev));
	cli_buf_adds(b, ",\"metadata\":");
	add_json_one_line(b, meta != NULL ? meta : "null");
	cli_buf_printf(b, ",\"position\":%lld,\"recorded_at\":\"%s\"}\n",
	               (long long)evs_event_position(ev), at);
}

/* ---- reading ------------------------------------------------------------ */

#define MAX_DEPTH 512

typedef struct scan {
	char *s;
	size_t i, n;
	char *why;
	size_t why_size;
} scan;

static int bad(scan *sc, const char *what)
{
	snprintf(sc->why, sc->why_size, "not valid JSON: %s at byte %zu", what,
	         sc->i + 1);
	return -1;
}

static void skip_ws(scan *sc)
{
	while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t' ||
	                         sc->s[sc->i] == '\n' || sc->s[sc->i] == '\r'))
		sc->i++;
}

static int hex_value(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int read_hex4(scan *sc, size_t at, unsigned *out)
{
	unsigned v = 0;
	int k, h;

	if (at + 4 > sc->n)
		return -1;
	for (k = 0; k < 4; k++) {
		if ((h = hex_value(sc->s[at + (size_t)k])) < 0)
			return -1;
		v = v * 16 + (unsigned)h;
	}
	*out = v;
	return 0;
}

static size_t put_utf8(char *w, unsigned cp)
{
	if (cp < 0x80) {
		w[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		w[0] = (char)(0xc0 | (cp >> 6));
		w[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		w[0] = (char)(0xe0 | (cp >> 12));
		w[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		w[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	w[0] = (char)(0xf0 | (cp >> 18));
	w[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	w[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	w[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* A string at sc->i (its opening quote). With @p out, decodes it in
 * place (the text only shrinks) and sets *out to the NUL-terminated
 * result; without, only checks it. */
static int string(scan *sc, char **out)
{
	char *w = sc->s + sc->i + 1, *start = w;
	const int decode = out != NULL;

#define PUT(ch) do { if (decode) *w++ = (ch); } while (0)

	sc->i++;
	while (sc->i < sc->n) {
		unsigned char c = (unsigned char)sc->s[sc->i];

		if (c == '"') {
			sc->i++;
			if (out != NULL) {
				*w = '\0';
				*out = start;
			}
			return 0;
		}
		if (c < 0x20)
			return bad(sc, "control character in a string");
		if (c != '\\') {
			PUT((char)c);
			sc->i++;
			continue;
		}
		if (sc->i + 1 >= sc->n)
			break;
		c = (unsigned char)sc->s[sc->i + 1];
		sc->i += 2;
		switch (c) {
		case '"': PUT('"'); break;
		case '\\': PUT('\\'); break;
		case '/': PUT('/'); break;
		case 'b': PUT('\b'); break;
		case 'f': PUT('\f'); break;
		case 'n': PUT('\n'); break;
		case 'r': PUT('\r'); break;
		case 't': PUT('\t'); break;
		case 'u': {
			unsigned cp, lo;

			if (read_hex4(sc, sc->i, &cp) < 0)
				return bad(sc, "bad \\u escape");
			sc->i += 4;
			if (cp >= 0xd800 && cp <= 0xdbff) {
				if (sc->i + 6 > sc->n || sc->s[sc->i] != '\\' ||
				    sc->s[sc->i + 1] != 'u' ||
				    read_hex4(sc, sc->i + 2, &lo) < 0 ||
				    lo < 0xdc00 || lo > 0xdfff)
					return bad(sc, "unpaired surrogate "
					               "escape");
				sc->i += 6;
				cp = 0x10000 + ((cp - 0xd800) << 10) +
				     (lo - 0xdc00);
			} else if (cp >= 0xdc00 && cp <= 0xdfff) {
				return bad(sc, "unpaired surrogate escape");
			}
			if (out != NULL && cp == 0)
				return bad(sc, "\\u0000 in a field");
			/* Six escape bytes or more become four or fewer. */
			if (decode)
				w += put_utf8(w, cp);
			break;
		}
		default:
			sc->i -= 1;
			return bad(sc, "bad escape");
		}
	}
	return bad(sc, "unterminated string");
#undef PUT
}

static int digits(scan *sc)
{
	size_t start = sc->i;

	while (sc->i < sc->n && sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9')
		sc->i++;
	return sc->i > start ? 0 : bad(sc, "expected a digit");
}

/* A number; *integer says whether it had no fraction or exponent. */
static int number(scan *sc, int *integer)
{
	*integer = 1;
	if (sc->s[sc->i] == '-')
		sc->i++;
	if (sc->i < sc->n && sc->s[sc->i] == '0')
		sc->i++;
	else if (digits(sc) < 0)
		return -1;
	if (sc->i < sc->n && sc->s[sc->i] == '.') {
		*integer = 0;
		sc->i++;
		if (digits(sc) < 0)
			return -1;
	}
	if (sc->i < sc->n && (sc->s[sc->i] == 'e' || sc->s[sc->i] == 'E')) {
		*integer = 0;
		sc->i++;
		if (sc->i < sc->n &&
		    (sc->s[sc->i] == '+' || sc->s[sc->i] == '-'))
			sc->i++;
		if (digits(sc) < 0)
			return -1;
	}
	return 0;
}

static int value(scan *sc, int depth);

static int literal(scan *sc, const char *word)
{
	size_t len = strlen(word);

	if (sc->n - sc->i < len || memcmp(sc->s + sc->i, word, len) != 0)
		return bad(sc, "unexpected character");
	sc->i += len;
	return 0;
}

static int container(scan *sc, int depth)
{
	char close = sc->s[sc->i] == '{' ? '}' : ']';

	if (depth >= MAX_DEPTH)
		return bad(sc, "nested too deeply");
	sc->i++;
	skip_ws(sc);
	if (sc->i < sc->n && sc->s[sc->i] == close) {
		sc->i++;
		return 0;
	}
	for (;;) {
		if (close == '}') {
			skip_ws(sc);
			if (sc->i >= sc->n || sc->s[sc->i] != '"')
				return bad(sc, "expected a member name");
			if (string(sc, NULL) < 0)
				return -1;
			skip_ws(sc);
			if (sc->i >= sc->n || sc->s[sc->i] != ':')
				return bad(sc, "expected ':'");
			sc->i++;
		}
		if (value(sc, depth + 1) < 0)
			return -1;
		skip_ws(sc);
		if (sc->i < sc->n && sc->s[sc->i] == ',') {
			sc->i++;
			continue;
		}
		if (sc->i < sc->n && sc->s[sc->i] == close) {
			sc->i++;
			return 0;
		}
		return bad(sc, close == '}' ? "expected ',' or '}'"
		                            : "expected ',' or ']'");
	}
}

/* Checks one value, leading whitespace included. */
static int value(scan *sc, int depth)
{
	int integer;

	skip_ws(sc);
	if (sc->i >= sc->n)
		return bad(sc, "unexpected end of line");
	switch (sc->s[sc->i]) {
	case '{':
	case '[':
		return container(sc, depth);
	case '"':
		return string(sc, NULL);
	case 't':
		return literal(sc, "true");
	case 'f':
		return literal(sc, "false");
	case 'n':
		return literal(sc, "null");
	default:
		if (sc->s[sc->i] == '-' ||
		    (sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9'))
			return number(sc, &integer);
		return bad(sc, "unexpected character");
	}
}

enum {
	F_STREAM, F_VERSION, F_EVENT_ID, F_TYPE, F_DATA, F_METADATA,
	F_RECORDED_AT, F_N
};
static const char *const field_names[F_N] = {
	"stream_id", "version", "event_id", "type", "data", "metadata",
	"recorded_at",
};

/* The members decoded as strings; the others are kept as raw spans. */
static int is_string_field(int f)
{
	return f == F_STREAM || f == F_EVENT_ID || f == F_TYPE ||
	       f == F_RECORDED_AT;
}

/* What a line's members gave: decoded strings, or raw spans [span, end). */
typedef struct fields {
	char *span[F_N];
	size_t end[F_N];
	int seen[F_N];
} fields;

static int must_be(scan *sc, int f, const char *what)
{
	snprintf(sc->why, sc->why_size, "\"%s\" must be %s", field_names[f],
	         what);
	return -1;
}

/* The value of member @p f (F_N: one we do not use) at sc->i. */
static int member_value(scan *sc, fields *fs, int f)
{
	size_t start = sc->i;
	int integer;

	switch (f) {
	case F_STREAM:
	case F_EVENT_ID:
	case F_TYPE:
	case F_RECORDED_AT:
		if (sc->i >= sc->n || sc->s[sc->i] != '"')
			return must_be(sc, f, "a string");
		if (string(sc, &fs->span[f]) < 0)
			return -1;
		break;
	case F_VERSION:
		if (sc->i >= sc->n ||
		    (sc->s[sc->i] != '-' &&
		     (sc->s[sc->i] < '0' || sc->s[sc->i] > '9')))
			return must_be(sc, f, "an integer");
		if (number(sc, &integer) < 0)
			return -1;
		if (!integer)
			return must_be(sc, f, "an integer");
		break;
	default:
		if (value(sc, 1) < 0)
			return -1;
	}
	if (f < F_N) {
		if (!is_string_field(f)) {
			fs->span[f] = sc->s + start;
			fs->end[f] = sc->i;
		}
		fs->seen[f] = 1;
	}
	return 0;
}

/* The members of the line's object, after its '{'. */
static int members(scan *sc, fields *fs)
{
	skip_ws(sc);
	if (sc->i < sc->n && sc->s[sc->i] == '}') {
		sc->i++;
		return 0;
	}
	for (;;) {
		char *key;
		int f;

		skip_ws(sc);
		if (sc->i >= sc->n || sc->s[sc->i] != '"')
			return bad(sc, "expected a member name");
		if (string(sc, &key) < 0)
			return -1;
		skip_ws(sc);
		if (sc->i >= sc->n || sc->s[sc->i] != ':')
			return bad(sc, "expected ':'");
		sc->i++;
		skip_ws(sc);
		for (f = 0; f < F_N; f++)
			if (strcmp(key, field_names[f]) == 0)
				break;
		if (member_value(sc, fs, f) < 0)
			return -1;
		skip_ws(sc);
		if (sc->i < sc->n && sc->s[sc->i] == ',') {
			sc->i++;
			continue;
		}
		if (sc->i < sc->n && sc->s[sc->i] == '}') {
			sc->i++;
			return 0;
		}
		return bad(sc, "expected ',' or '}'");
	}
}

int ndjson_parse_line(ndjson_event *out, char *line, size_t len, char *why,
                      size_t why_size)
{
	scan sc = {line, 0, len, why, why_size};
	fields fs;
	char *end, save;
	long long v;
	int f;

	memset(&fs, 0, sizeof(fs));
	skip_ws(&sc);
	if (sc.i >= sc.n || sc.s[sc.i] != '{')
		return bad(&sc, "expected '{'");
	sc.i++;
	if (members(&sc, &fs) < 0)
		return -1;
	skip_ws(&sc);
	if (sc.i < sc.n)
		return bad(&sc, "text after the object");
	for (f = 0; f < F_N; f++)
		if (!fs.seen[f] && f != F_METADATA && f != F_RECORDED_AT) {
			snprintf(why, why_size, "missing field \"%s\"",
			         field_names[f]);
			return -1;
		}
	/* The raw spans end at a byte the scan has passed (',' '}' or
	 * blank): terminate them there, now that the scan is over. */
	if (fs.seen[F_METADATA]) {
		line[fs.end[F_METADATA]] = '\0';
		if (strcmp(fs.span[F_METADATA], "null") == 0)
			fs.span[F_METADATA] = NULL;
	}
	line[fs.end[F_DATA]] = '\0';
	save = line[fs.end[F_VERSION]];
	line[fs.end[F_VERSION]] = '\0';
	v = strtoll(fs.span[F_VERSION], &end, 10);
	line[fs.end[F_VERSION]] = save;
	if (fs.span[F_VERSION][0] == '-' || v == LLONG_MAX) {
		snprintf(why, why_size, "\"version\" must be an integer from 0 "
		         "to %lld", LLONG_MAX - 1);
		return -1;
	}
	out->version = v;
	out->stream_id = fs.span[F_STREAM];
	out->event_id = fs.span[F_EVENT_ID];
	out->type = fs.span[F_TYPE];
	out->data = fs.span[F_DATA];
	out->metadata = fs.span[F_METADATA];
	out->recorded_at = fs.span[F_RECORDED_AT];
	return 0;
}
