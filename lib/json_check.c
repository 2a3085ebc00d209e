/* A strict JSON syntax check (RFC 8259), because json-c's parser, even in
 * strict mode, accepts single quotes, "1.", leading zeros and raw control
 * characters in strings. json-c still builds the values; this only decides
 * what is JSON. It also refuses what PostgreSQL's jsonb cannot store (a
 * \u0000 escape, an unpaired UTF-16 surrogate escape, a number past
 * numeric's limits on exponent and scale) and numbers beyond the range of
 * a double, which json-c would read as infinity. */
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

/* PostgreSQL's numeric input (numeric_in, which jsonb uses for numbers)
 * refuses an exponent of INT_MAX / 2 or more in magnitude, and a display
 * scale above NUMERIC_DSCALE_MAX. The scale is the number of digits after
 * the point once the exponent is applied, F - E (at least 0), and goes by
 * the literal as written, not by its value: "100e-16384" is refused,
 * although it equals 1e-16382, and so is "0.0e-16383", while "0e-16383"
 * is stored. */
#define PG_EXPONENT_LIMIT 1073741823LL /* INT_MAX / 2 */
#define PG_DSCALE_MAX 16383

/* 1 when a number with frac digits after its point and exponent e (less
 * than PG_EXPONENT_LIMIT in magnitude) has a scale numeric cannot store.
 * Compares frac with PG_DSCALE_MAX + e, rather than subtracting, so that
 * no length of fraction overflows. */
static int scale_too_large(size_t frac, long long e)
{
	if (e < -PG_DSCALE_MAX)
		return 1;
	return frac > (size_t)(PG_DSCALE_MAX + e);
}

/* 1 when the number is beyond what a double holds: json-c would read it
 * as infinity. s points at its integer digits (no sign), int_digits of
 * them, then, if frac_digits > 0, a point and the fraction; e is its
 * exponent. Works on the decimal digits, not with strtod(), which depends
 * on the locale. Numbers within 1e-16 of DBL_MAX may be refused although
 * they would round to it. */
static int too_large_for_double(const char *s, size_t int_digits,
                                size_t frac_digits, long long e)
{
	static const char max17[] = "17976931348623157"; /* DBL_MAX digits */
	char sig[18];
	size_t i, n, nsig = 0, lead = 0;
	long long exp10;
	int seen_nonzero = 0;

	/* Leading zeros only lower the power of ten of the first significant
	 * digit: most numbers are settled here, without a second look at
	 * their digits. */
	if ((long long)int_digits - 1 + e < 308)
		return 0;
	n = int_digits + (frac_digits > 0 ? 1 + frac_digits : 0);
	for (i = 0; i < n; i++) {
		if (s[i] == '.')
			continue;
		if (s[i] != '0')
			seen_nonzero = 1;
		if (!seen_nonzero)
			lead++;
		else if (nsig < 17)
			sig[nsig++] = s[i];
		else
			break;
	}
	if (!seen_nonzero)
		return 0;
	/* The power of ten of the first significant digit. */
	exp10 = (long long)int_digits - 1 - (long long)lead + e;
	if (exp10 != 308)
		return exp10 > 308;
	sig[nsig] = '\0';
	return strcmp(sig, max17) > 0;
}

static int scan_number(scanner *sc)
{
	const char *s = sc->s;
	size_t digits, int_digits, frac_digits = 0, frac_start;
	long long e = 0;
	int eneg = 0;

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
	int_digits = sc->pos - digits;
	if (sc->pos < sc->len && s[sc->pos] == '.') {
		sc->pos++;
		if (sc->pos >= sc->len || !is_digit(s[sc->pos]))
			return fail(sc, "a number needs digits after its point");
		frac_start = sc->pos;
		while (sc->pos < sc->len && is_digit(s[sc->pos]))
			sc->pos++;
		frac_digits = sc->pos - frac_start;
	}
	if (sc->pos < sc->len && (s[sc->pos] == 'e' || s[sc->pos] == 'E')) {
		sc->pos++;
		if (sc->pos < sc->len && (s[sc->pos] == '+' || s[sc->pos] == '-'))
			eneg = s[sc->pos++] == '-';
		if (sc->pos >= sc->len || !is_digit(s[sc->pos]))
			return fail(sc, "a number needs digits in its exponent");
		/* Saturates past the limit: any number of digits is safe. */
		while (sc->pos < sc->len && is_digit(s[sc->pos])) {
			if (e < PG_EXPONENT_LIMIT)
				e = e * 10 + (s[sc->pos] - '0');
			sc->pos++;
		}
		if (eneg)
			e = -e;
	}
	if (sc->pos < sc->len && is_digit(s[sc->pos]))
		return fail(sc, "a number has a leading zero");
	if (e >= PG_EXPONENT_LIMIT || e <= -PG_EXPONENT_LIMIT) {
		sc->pos = digits;
		return fail(sc, "a number has an exponent of 1073741823 or "
		                "more in magnitude (PostgreSQL's numeric "
		                "limit)");
	}
	if (scale_too_large(frac_digits, e)) {
		sc->pos = digits;
		return fail(sc, "a number has more than 16383 digits after its "
		                "point once its exponent is applied "
		                "(PostgreSQL's numeric limit)");
	}
	if (too_large_for_double(s + digits, int_digits, frac_digits, e)) {
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
