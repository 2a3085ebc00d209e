/* A strict JSON syntax check (RFC 8259), because json-c's parser, even in
 * strict mode, accepts single quotes, "1.", leading zeros and raw control
 * characters in strings. json-c still builds the values; this only decides
 * what is JSON. It also refuses what PostgreSQL's jsonb cannot store (a
 * \u0000 escape, an unpaired UTF-16 surrogate escape) and numbers beyond
 * the range of a double, which json-c would read as infinity. */
#include <string.h>

#include "common_int.h"

typedef struct {
	const char *s;
	size_t len, pos;
	const char *why;
} scanner;

static int fail(scanner *sc, const char *why)
{
	if (sc->why == NULL)
		sc->why = why;
	return -1;
}

static void skip_ws(scanner *sc)
{
	while (sc->pos < sc->len &&
	       (sc->s[sc->pos] == ' ' || sc->s[sc->pos] == '\t' ||
	        sc->s[sc->pos] == '\n' || sc->s[sc->pos] == '\r'))
		sc->pos++;
}

static int is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static int hex4(scanner *sc, unsigned int *out)
{
	unsigned int v = 0;
	int i;

	if (sc->len - sc->pos < 4)
		return fail(sc, "a \\u escape needs four hex digits");
	for (i = 0; i < 4; i++) {
		char c = sc->s[sc->pos++];

		v <<= 4;
		if (is_digit(c))
			v |= (unsigned int)(c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned int)(c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned int)(c - 'A' + 10);
		else
			return fail(sc, "a \\u escape needs four hex digits");
	}
	*out = v;
	return 0;
}

static int scan_string(scanner *sc)
{
	sc->pos++; /* the opening quote */
	while (sc->pos < sc->len) {
		unsigned char c = (unsigned char)sc->s[sc->pos];
		unsigned int u, low;

		if (c == '"') {
			sc->pos++;
			return 0;
		}
		if (c < 0x20)
			return fail(sc, "a string holds a raw control character");
		if (c != '\\') {
			sc->pos++;
			continue;
		}
		if (++sc->pos >= sc->len)
			break;
		switch (sc->s[sc->pos++]) {
		case '"': case '\\': case '/': case 'b': case 'f': case 'n':
		case 'r': case 't':
			break;
		case 'u':
			if (hex4(sc, &u) < 0)
				return -1;
			if (u == 0)
				return fail(sc, "a string holds \\u0000, which "
				                "PostgreSQL's jsonb cannot store");
			if (u >= 0xDC00 && u <= 0xDFFF)
				return fail(sc, "a string holds an unpaired "
				                "surrogate escape");
			if (u >= 0xD800 && u <= 0xDBFF) {
				if (sc->len - sc->pos < 6 ||
				    sc->s[sc->pos] != '\\' ||
				    sc->s[sc->pos + 1] != 'u')
					return fail(sc, "a string holds an "
					                "unpaired surrogate escape");
				sc->pos += 2;
				if (hex4(sc, &low) < 0)
					return -1;
				if (low < 0xDC00 || low > 0xDFFF)
					return fail(sc, "a string holds an "
					                "unpaired surrogate escape");
			}
			break;
		default:
			sc->pos--;
			return fail(sc, "a string holds an unknown escape");
		}
	}
	return fail(sc, "a string is not closed");
}

/* 1 when the number s[0..n) (JSON syntax, no sign) is beyond what a
 * double holds: json-c would read it as infinity. Works on the decimal
 * digits, not with strtod(), which depends on the locale. Numbers within
 * 1e-16 of DBL_MAX may be refused although they would round to it. */
static int too_large_for_double(const char *s, size_t n)
{
	static const char max17[] = "17976931348623157"; /* DBL_MAX digits */
	char sig[18];
	size_t i = 0, int_digits = 0, nsig = 0, lead = 0;
	long exp10 = 0, e = 0;
	int seen_nonzero = 0, esign = 1;

	for (; i < n && is_digit(s[i]); i++, int_digits++) {
		if (s[i] != '0')
			seen_nonzero = 1;
		if (!seen_nonzero)
			lead++;
		else if (nsig < 17)
			sig[nsig++] = s[i];
	}
	if (i < n && s[i] == '.')
		for (i++; i < n && is_digit(s[i]); i++) {
			if (s[i] != '0')
				seen_nonzero = 1;
			if (!seen_nonzero)
				lead++;
			else if (nsig < 17)
				sig[nsig++] = s[i];
		}
	if (!seen_nonzero)
		return 0;
	if (i < n && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (s[i] == '+' || s[i] == '-')
			esign = s[i++] == '-' ? -1 : 1;
		for (; i < n && is_digit(s[i]); i++)
			if (e < 100000)
				e = e * 10 + (s[i] - '0');
	}
	/* The power of ten of the first significant digit. */
	exp10 = (long)int_digits - 1 - (long)lead + esign * e;
	if (exp10 != 308)
		return exp10 > 308;
	sig[nsig] = '\0';
	return strcmp(sig, max17) > 0;
}

static int scan_number(scanner *sc)
{
	const char *s = sc->s;
	size_t digits;

	if (s[sc->pos] == '-')
		sc->pos++;
	digits = sc->pos;
	if (sc->pos < sc->len && s[sc->pos] == '0') {
		sc->pos++;
	} else if (sc->pos < sc->len && is_digit(s[sc->pos])) {
		while (sc->pos < sc->len && is_digit(s[sc->pos]))
			sc->pos++;
	} else {
		return fail(sc, "a number needs a digit");
	}
	if (sc->pos < sc->len && s[sc->pos] == '.') {
		sc->pos++;
		if (sc->pos >= sc->len || !is_digit(s[sc->pos]))
			return fail(sc, "a number needs digits after its point");
		while (sc->pos < sc->len && is_digit(s[sc->pos]))
			sc->pos++;
	}
	if (sc->pos < sc->len && (s[sc->pos] == 'e' || s[sc->pos] == 'E')) {
		sc->pos++;
		if (sc->pos < sc->len && (s[sc->pos] == '+' || s[sc->pos] == '-'))
			sc->pos++;
		if (sc->pos >= sc->len || !is_digit(s[sc->pos]))
			return fail(sc, "a number needs digits in its exponent");
		while (sc->pos < sc->len && is_digit(s[sc->pos]))
			sc->pos++;
	}
	if (sc->pos < sc->len && is_digit(s[sc->pos]))
		return fail(sc, "a number has a leading zero");
	if (too_large_for_double(s + digits, sc->pos - digits)) {
		sc->pos = digits;
		return fail(sc, "a number is too large for a double");
	}
	return 0;
}

static int scan_literal(scanner *sc, const char *word)
{
	size_t n = strlen(word);

	if (sc->len - sc->pos < n || memcmp(sc->s + sc->pos, word, n) != 0)
		return fail(sc, "unexpected character");
	sc->pos += n;
	return 0;
}

static int scan_value(scanner *sc, int depth);

static int scan_container(scanner *sc, int depth, char close)
{
	int first = 1;

	if (depth >= EVS_JSON_MAX_DEPTH)
		return fail(sc, "nested too deeply");
	sc->pos++; /* [ or { */
	for (;;) {
		skip_ws(sc);
		if (sc->pos >= sc->len)
			return fail(sc, "unexpected end of text");
		if (sc->s[sc->pos] == close && first) {
			sc->pos++;
			return 0;
		}
		if (close == '}') {
			if (sc->s[sc->pos] != '"')
				return fail(sc, "an object key must be a string");
			if (scan_string(sc) < 0)
				return -1;
			skip_ws(sc);
			if (sc->pos >= sc->len || sc->s[sc->pos] != ':')
				return fail(sc, "an object key needs a colon");
			sc->pos++;
		}
		if (scan_value(sc, depth + 1) < 0)
			return -1;
		skip_ws(sc);
		if (sc->pos >= sc->len)
			return fail(sc, "unexpected end of text");
		if (sc->s[sc->pos] == close) {
			sc->pos++;
			return 0;
		}
		if (sc->s[sc->pos] != ',')
			return fail(sc, "expected a comma");
		sc->pos++;
		first = 0;
	}
}

static int scan_value(scanner *sc, int depth)
{
	skip_ws(sc);
	if (sc->pos >= sc->len)
		return fail(sc, "unexpected end of text");
	switch (sc->s[sc->pos]) {
	case '{':
		return scan_container(sc, depth, '}');
	case '[':
		return scan_container(sc, depth, ']');
	case '"':
		return scan_string(sc);
	case 't':
		return scan_literal(sc, "true");
	case 'f':
		return scan_literal(sc, "false");
	case 'n':
		return scan_literal(sc, "null");
	default:
		if (sc->s[sc->pos] == '-' || is_digit(sc->s[sc->pos]))
			return scan_number(sc);
		return fail(sc, "unexpected character");
	}
}

int evs__json_check(const char *text, size_t len, size_t *where,
                    const char **why)
{
	scanner sc = {text, len, 0, NULL};

	if (scan_value(&sc, 0) == 0) {
		skip_ws(&sc);
		if (sc.pos == len)
			return 0;
		fail(&sc, "unexpected text after the value");
	}
	*where = sc.pos;
	*why = sc.why;
	return -1;
}
