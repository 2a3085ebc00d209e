/* Unit tests for events: construction and its argument checks (type,
 * data, metadata, as json-c values and as JSON text), UUIDs, setters,
 * copies, accessors and event lists. */
#include <check.h>
#include <json-c/json.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <evstore/evstore.h>

#include "unit/suites.h"
#include "common/testutil.h"

/* A non-NULL pointer the library must overwrite with NULL on failure. */
static char not_set_target;
#define not_set ((evs_event *)(void *)&not_set_target)

/* rc and err say EVS_EINVALID, and the message names `what`. */
#define ASSERT_EINVALID(rc, err, what)                                      \
	do {                                                                 \
		ck_assert_int_eq((rc), EVS_EINVALID);                        \
		ck_assert_int_eq((err).code, EVS_EINVALID);                  \
		ck_assert_msg(tu_names((err).message, (what)),                  \
		              "message \"%s\" does not name \"%s\"",         \
		              (err).message ? (err).message : "(null)",      \
		              (what));                                       \
	} while (0)

/* A string of n copies of c; yours (free()). */
static char *repeat(char c, size_t n)
{
	char *s = malloc(n + 1);

	ck_assert_ptr_nonnull(s);
	memset(s, c, n);
	s[n] = '\0';
	return s;
}

/* Parses text with json-c (not the library); yours. */
static json_object *parse(const char *text)
{
	json_tokener *tok = json_tokener_new();
	json_object *v;

	ck_assert_ptr_nonnull(tok);
	v = json_tokener_parse_ex(tok, text, (int)strlen(text) + 1);
	ck_assert_int_eq(json_tokener_get_error(tok), json_tokener_success);
	json_tokener_free(tok);
	return v;
}

/* ---- evs_event_new: data ---- */

/* Builds the loop's data value: any JSON value, NULL for JSON null. */
static json_object *make_data(int i)
{
	json_object *v, *a, *o;

	switch (i) {
	case 0:
		return NULL;
	case 1:
		return json_object_new_int(42);
	case 2:
		return json_object_new_int64(INT64_MIN);
	case 3:
		return json_object_new_int64(INT64_MAX);
	case 4:
		return json_object_new_double(1.5);
	case 5:
		return json_object_new_double(-0.1);
	case 6:
		return json_object_new_string("h\xc3\xa9llo \"q\" \\ / \t\n");
	case 7:
		return json_object_new_string("");
	case 8:
		return json_object_new_boolean(1);
	case 9:
		return json_object_new_boolean(0);
	case 10:
		v = json_object_new_array();
		json_object_array_add(v, json_object_new_int(1));
		json_object_array_add(v, json_object_new_string("a"));
		json_object_array_add(v, NULL);
		o = json_object_new_object();
		json_object_object_add(o, "b", json_object_new_array());
		json_object_array_add(v, o);
		return v;
	case 11:
		return json_object_new_array();
	case 12:
		return json_object_new_object();
	case 13:
		v = json_object_new_object();
		json_object_object_add(v, "amount", json_object_new_int(100));
		json_object_object_add(v, "currency",
		                       json_object_new_string("EUR"));
		json_object_object_add(v, "none", NULL);
		a = json_object_new_array();
		json_object_array_add(a, json_object_new_double(2.25));
		json_object_object_add(v, "Z\xc3\xbcrich \xf0\x9f\x9a\x80", a);
		return v;
	default:
		return json_object_new_uint64(UINT64_MAX);
	}
}
#define N_DATA 15

START_TEST(new_accepts_any_json_value)
{
	evs_error err = EVS_ERROR_INIT;
	json_object *in = make_data(_i);
	json_object *out_obj, *reparsed;
	evs_event *ev = not_set;

	ck_assert_int_eq(evs_event_new(&ev, "tested", in, NULL, &err), 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_ptr_nonnull(ev);
	ck_assert_ptr_ne(ev, not_set);
	ck_assert_str_eq(evs_event_type(ev), "tested");
	/* The text is JSON and means the input. */
	reparsed = parse(evs_event_data_json(ev));
	ck_assert_msg(json_object_equal(in, reparsed),
	              "data %d: text %s", _i, evs_event_data_json(ev));
	json_object_put(reparsed);
	out_obj = evs_event_data(ev);
	ck_assert_msg(json_object_equal(in, out_obj), "data %d", _i);
	/* Borrowed and cached: the same value on every call. */
	ck_assert_ptr_eq(evs_event_data(ev), out_obj);
	if (in == NULL) {
		ck_assert_str_eq(evs_event_data_json(ev), "null");
		ck_assert_ptr_null(out_obj);
	} else {
		/* The event did not keep the caller's object. */
		ck_assert_ptr_ne(out_obj, in);
	}
	ck_assert_ptr_null(evs_event_metadata_json(ev));
	ck_assert_ptr_null(evs_event_metadata(ev));
	evs_event_free(ev);
	json_object_put(in);
	evs_error_clear(&err);
}
END_TEST

/* The event keeps the text, so changing the caller's object later does not
 * change the event (and freeing it first is fine). */
START_TEST(new_borrows_data_and_metadata)
{
	json_object *data = json_object_new_object();
	json_object *meta = json_object_new_object();
	evs_event *ev = NULL;
	char *dtext, *mtext;

	json_object_object_add(data, "n", json_object_new_int(1));
	json_object_object_add(meta, "correlation_id",
	                       json_object_new_string("c-1"));
	ck_assert_int_eq(evs_event_new(&ev, "t", data, meta, NULL), 0);
	dtext = strdup(evs_event_data_json(ev));
	mtext = strdup(evs_event_metadata_json(ev));
	json_object_object_add(data, "later", json_object_new_int(2));
	json_object_object_add(meta, "later", json_object_new_int(2));
	json_object_put(data);
	json_object_put(meta);
	ck_assert_str_eq(evs_event_data_json(ev), dtext);
	ck_assert_str_eq(evs_event_metadata_json(ev), mtext);
	ck_assert_ptr_null(json_object_object_get(evs_event_data(ev), "later"));
	ck_assert_ptr_null(
		json_object_object_get(evs_event_metadata(ev), "later"));
	ck_assert_int_eq(
		json_object_get_int(json_object_object_get(evs_event_data(ev),
	                                                   "n")),
		1);
	free(dtext);
	free(mtext);
	evs_event_free(ev);
}
END_TEST

START_TEST(new_with_metadata_object)
{
	evs_error err = EVS_ERROR_INIT;
	json_object *data = json_object_new_int(7);
	json_object *meta = json_object_new_object();
	json_object *got, *reparsed;
	evs_event *ev = NULL;

	json_object_object_add(meta, "correlation_id",
	                       json_object_new_string("c-1"));
	json_object_object_add(meta, "causation_id",
	                       json_object_new_string("e-0"));
	ck_assert_int_eq(evs_event_new(&ev, "t", data, meta, &err), 0);
	ck_assert_ptr_nonnull(evs_event_metadata_json(ev));
	reparsed = parse(evs_event_metadata_json(ev));
	ck_assert(json_object_equal(reparsed, meta));
	json_object_put(reparsed);
	got = evs_event_metadata(ev);
	ck_assert_ptr_nonnull(got);
	ck_assert(json_object_equal(got, meta));
	ck_assert_ptr_eq(evs_event_metadata(ev), got);
	ck_assert_str_eq(evs_event_data_json(ev), "7");
	evs_event_free(ev);
	json_object_put(data);
	json_object_put(meta);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_with_empty_metadata_object)
{
	json_object *meta = json_object_new_object();
	evs_event *ev = NULL;
	json_object *reparsed;

	ck_assert_int_eq(evs_event_new(&ev, "t", NULL, meta, NULL), 0);
	ck_assert_ptr_nonnull(evs_event_metadata_json(ev));
	reparsed = parse(evs_event_metadata_json(ev));
	ck_assert(json_object_is_type(reparsed, json_type_object));
	ck_assert_int_eq(json_object_object_length(reparsed), 0);
	json_object_put(reparsed);
	evs_event_free(ev);
	json_object_put(meta);
}
END_TEST

/* The same object as data and metadata. */
START_TEST(new_with_data_and_metadata_the_same_object)
{
	json_object *obj = json_object_new_object();
	json_object *a, *b;
	evs_event *ev = NULL;

	json_object_object_add(obj, "k", json_object_new_string("v"));
	ck_assert_int_eq(evs_event_new(&ev, "t", obj, obj, NULL), 0);
	a = parse(evs_event_data_json(ev));
	b = parse(evs_event_metadata_json(ev));
	ck_assert(json_object_equal(a, obj));
	ck_assert(json_object_equal(b, obj));
	json_object_put(a);
	json_object_put(b);
	evs_event_free(ev);
	json_object_put(obj);
}
END_TEST

/* Metadata nested inside data, and data inside metadata: each text is
 * printed from its own object. */
START_TEST(new_with_metadata_inside_data)
{
	json_object *meta = json_object_new_object();
	json_object *data = json_object_new_object();
	json_object *a, *b;
	evs_event *ev = NULL;

	json_object_object_add(meta, "m", json_object_new_int(1));
	json_object_object_add(data, "meta", json_object_get(meta));
	json_object_object_add(data, "d", json_object_new_int(2));
	ck_assert_int_eq(evs_event_new(&ev, "t", data, meta, NULL), 0);
	a = parse(evs_event_data_json(ev));
	b = parse(evs_event_metadata_json(ev));
	ck_assert(json_object_equal(a, data));
	ck_assert(json_object_equal(b, meta));
	json_object_put(a);
	json_object_put(b);
	evs_event_free(ev);
	ck_assert_int_eq(evs_event_new(&ev, "t", meta, data, NULL), 0);
	a = parse(evs_event_data_json(ev));
	b = parse(evs_event_metadata_json(ev));
	ck_assert(json_object_equal(a, meta));
	ck_assert(json_object_equal(b, data));
	json_object_put(a);
	json_object_put(b);
	evs_event_free(ev);
	json_object_put(data);
	json_object_put(meta);
}
END_TEST

static json_object *make_non_object(int i)
{
	json_object *v;

	switch (i) {
	case 0:
		v = json_object_new_array();
		json_object_array_add(v, json_object_new_int(1));
		return v;
	case 1:
		return json_object_new_string("correlation");
	case 2:
		return json_object_new_int(1);
	case 3:
		return json_object_new_double(2.5);
	case 4:
		return json_object_new_boolean(1);
	default:
		return json_object_new_array();
	}
}
#define N_NON_OBJECT 6

START_TEST(new_rejects_metadata_that_is_not_an_object)
{
	evs_error err = EVS_ERROR_INIT;
	json_object *meta = make_non_object(_i);
	json_object *data = json_object_new_object();
	evs_event *ev = not_set;

	ASSERT_EINVALID(evs_event_new(&ev, "t", data, meta, &err), err,
	                "metadata");
	ck_assert_ptr_null(ev);
	json_object_put(meta);
	json_object_put(data);
	evs_error_clear(&err);
}
END_TEST

/* Values json-c holds but JSON text (and jsonb) cannot. `where` 0 puts
 * the bad value at the top, 1 in an array, 2 in an object; `bad` picks
 * it. */
static json_object *bad_value(int bad)
{
	static const char nul[] = "a\0b";

	switch (bad) {
	case 0:
		return json_object_new_double(NAN);
	case 1:
		return json_object_new_double(INFINITY);
	case 2:
		return json_object_new_double(-INFINITY);
	case 3:
		return json_object_new_string_len(nul, 3);
	case 4:
		return json_object_new_string_len(nul + 1, 1); /* just "\0" */
	case 5:
		return json_object_new_string("\xff");
	case 6:
		return json_object_new_string("ok \xc3\x28 not");
	case 7:
		return json_object_new_string("\xed\xa0\x80"); /* surrogate */
	case 8:
		return json_object_new_string("\xc0\xaf"); /* overlong */
	default:
		return json_object_new_string("\xe6\x9d"); /* truncated */
	}
}
#define N_BAD 10

static json_object *wrap(json_object *v, int where)
{
	json_object *w;

	switch (where) {
	case 0:
		return v;
	case 1:
		w = json_object_new_array();
		json_object_array_add(w, json_object_new_int(1));
		json_object_array_add(w, v);
		return w;
	case 2:
		w = json_object_new_object();
		json_object_object_add(w, "fine", json_object_new_int(1));
		json_object_object_add(w, "bad", v);
		return w;
	default: /* deeper */
		w = json_object_new_object();
		json_object_object_add(w, "a", wrap(v, 1));
		return w;
	}
}

START_TEST(new_rejects_bad_values_in_data)
{
	evs_error err = EVS_ERROR_INIT;
	int bad = _i % N_BAD, where = _i / N_BAD;
	json_object *data = wrap(bad_value(bad), where);
	evs_event *ev = not_set;

	ASSERT_EINVALID(evs_event_new(&ev, "t", data, NULL, &err), err,
	                "data");
	ck_assert_ptr_null(ev);
	json_object_put(data);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_rejects_bad_values_in_metadata)
{
	evs_error err = EVS_ERROR_INIT;
	int bad = _i % N_BAD, where = 2 + _i / N_BAD; /* always an object */
	json_object *meta = wrap(bad_value(bad), where);
	json_object *data = json_object_new_int(1);
	evs_event *ev = not_set;

	ASSERT_EINVALID(evs_event_new(&ev, "t", data, meta, &err), err,
	                "metadata");
	ck_assert_ptr_null(ev);
	json_object_put(data);
	json_object_put(meta);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_rejects_invalid_utf8_in_a_key)
{
	evs_error err = EVS_ERROR_INIT;
	json_object *data = json_object_new_object();
	json_object *meta = json_object_new_object();
	evs_event *ev = not_set;

	json_object_object_add(data, "k\xc3\x28", json_object_new_int(1));
	ASSERT_EINVALID(evs_event_new(&ev, "t", data, NULL, &err), err,
	                "data");
	ck_assert_ptr_null(ev);
	json_object_object_add(meta, "\xff", json_object_new_int(1));
	ASSERT_EINVALID(evs_event_new(&ev, "t", NULL, meta, &err), err,
	                "metadata");
	ck_assert_ptr_null(ev);
	json_object_put(data);
	json_object_put(meta);
	evs_error_clear(&err);
}
END_TEST

/* A value with a custom serializer (json_object_new_double_s) must not
 * smuggle text that is not JSON into the event: either the call refuses
 * it, or the text the event keeps is JSON. */
START_TEST(new_never_keeps_text_that_is_not_json)
{
	evs_error err = EVS_ERROR_INIT;
	json_object *data = json_object_new_double_s(1.5, "not json");
	evs_event *ev = NULL, *check = NULL;
	int rc = evs_event_new(&ev, "t", data, NULL, &err);

	if (rc == 0) {
		ck_assert_msg(evs_event_new_json(&check, "t",
		                                 evs_event_data_json(ev), NULL,
		                                 NULL) == 0,
		              "the event keeps \"%s\" as its JSON data",
		              evs_event_data_json(ev));
	} else {
		ASSERT_EINVALID(rc, err, "data");
	}
	evs_event_free(check);
	evs_event_free(ev);
	json_object_put(data);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_with_null_out)
{
	evs_error err = EVS_ERROR_INIT;

	ck_assert_int_eq(evs_event_new(NULL, "t", NULL, NULL, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(evs_event_new_json(NULL, "t", "1", NULL, &err),
	                 EVS_EINVALID);
	ck_assert_int_eq(err.code, EVS_EINVALID);
	evs_error_clear(&err);
}
END_TEST

/* Deeper than json-c's default limit of 32, both ways in. */
START_TEST(new_accepts_deep_nesting)
{
	enum { DEPTH = 100 };
	char text[2 * DEPTH + 2];
	json_object *v = json_object_new_int(1);
	evs_event *ev = NULL;
	int i;

	for (i = 0; i < DEPTH; i++) {
		json_object *a = json_object_new_array();

		json_object_array_add(a, v);
		v = a;
		text[i] = '[';
		text[DEPTH + 1 + i] = ']';
	}
	text[DEPTH] = '1';
	text[2 * DEPTH + 1] = '\0';
	ck_assert_int_eq(evs_event_new(&ev, "t", v, NULL, NULL), 0);
	ck_assert_str_eq(evs_event_data_json(ev), text);
	ck_assert(json_object_equal(evs_event_data(ev), v));
	evs_event_free(ev);
	ck_assert_int_eq(evs_event_new_json(&ev, "t", text, NULL, NULL), 0);
	ck_assert(json_object_equal(evs_event_data(ev), v));
	evs_event_free(ev);
	json_object_put(v);
}
END_TEST

/* Whatever nesting limit the library has, both constructors agree on it,
 * an accepted event reads back (json-c's own limit must not be lower),
 * and a very deep value is refused, not a stack overflow. */
START_TEST(nesting_limit_is_consistent)
{
	static const int depths[] = {255, 256, 257, 258, 300, 1000, 100000};
	int k;

	for (k = 0; k < (int)(sizeof(depths) / sizeof(depths[0])); k++) {
		int depth = depths[k], i, rc_obj, rc_text;
		char *text = malloc(2 * (size_t)depth + 2);
		json_object *v = json_object_new_int(1);
		evs_error err = EVS_ERROR_INIT;
		evs_event *ev = NULL;

		ck_assert_ptr_nonnull(text);
		for (i = 0; i < depth; i++) {
			json_object *a = json_object_new_array();

			json_object_array_add(a, v);
			v = a;
			text[i] = '[';
			text[depth + 1 + i] = ']';
		}
		text[depth] = '1';
		text[2 * depth + 1] = '\0';
		rc_text = evs_event_new_json(&ev, "t", text, NULL, &err);
		if (rc_text == 0) {
			ck_assert_ptr_nonnull(evs_event_data(ev));
			ck_assert(json_object_equal(evs_event_data(ev), v));
			evs_event_free(ev);
		} else {
			ASSERT_EINVALID(rc_text, err, "data");
		}
		if (depth <= 1000) {
			rc_obj = evs_event_new(&ev, "t", v, NULL, &err);
			ck_assert_msg(rc_obj == rc_text,
			              "depth %d: evs_event_new gives %d, "
			              "evs_event_new_json %d", depth, rc_obj,
			              rc_text);
			if (rc_obj == 0) {
				ck_assert(json_object_equal(evs_event_data(ev),
				                            v));
				evs_event_free(ev);
			}
		} else {
			ck_assert_int_eq(rc_text, EVS_EINVALID);
		}
		/* json-c frees recursively too: unwind it by hand. */
		while (json_object_is_type(v, json_type_array)) {
			json_object *inner =
				json_object_get(json_object_array_get_idx(v, 0));

			json_object_put(v);
			v = inner;
		}
		json_object_put(v);
		free(text);
		evs_error_clear(&err);
	}
}
END_TEST

/* ---- evs_event_new_json ---- */

static const char *const valid_json[] = {
	"{}",
	"[]",
	"null",
	"0",
	"-1.5e-3",
	"1E5",
	"-0",
	"\"x\"",
	"\"\"",
	"true",
	"false",
	"{\"a\":1}",
	" { \"b\" : 1 ,\n\t\"a\" : [ 1 , 2.50 , null ] } ",
	"{\"a\":1}\n",
	"\"Z\xc3\xbcrich \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x9a\x80\"",
	"\"\\u00e9\\n\\\"\\\\\\/\\t\\uD834\\uDD1E\"",
	"{\"a\":{\"b\":{\"c\":[[],{}]}},\"d\":\"\x7f\"}",
	"18446744073709551615",
	"-9223372036854775808",
	"{\"a\":1,\"a\":2}",
	"1.7976931348623157e308", /* the largest double is fine */
	"-1e308",
	"1e-400",                 /* too small only rounds to 0 */
	"0.000000e999",
};
#define N_VALID (sizeof(valid_json) / sizeof(valid_json[0]))

START_TEST(new_json_keeps_valid_text_verbatim)
{
	evs_error err = EVS_ERROR_INIT;
	const char *text = valid_json[_i];
	evs_event *ev = not_set;
	json_object *expect, *got;

	ck_assert_int_eq(evs_event_new_json(&ev, "t", text, NULL, &err), 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_ptr_ne(ev, not_set);
	ck_assert_str_eq(evs_event_data_json(ev), text);
	ck_assert_ptr_null(evs_event_metadata_json(ev));
	expect = parse(text);
	got = evs_event_data(ev);
	ck_assert(json_object_equal(got, expect));
	ck_assert_ptr_eq(evs_event_data(ev), got);
	json_object_put(expect);
	evs_event_free(ev);
	evs_error_clear(&err);
}
END_TEST

/* json-c clamps integer literals past 64 bits to the nearest 64-bit value;
 * the event must give the number written (as a double), not a clamp. */
START_TEST(new_json_big_integers_are_not_clamped)
{
	static const struct {
		const char *text;
		double value;
	} cases[] = {
		{"12345678901234567890123", 12345678901234567890123.0},
		{"-12345678901234567890123", -12345678901234567890123.0},
		{"100000000000000000000", 1e20},
		{"-9223372036854775809", -9223372036854775809.0},
		{"18446744073709551616", 18446744073709551616.0},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char text[128];
		evs_event *ev = NULL;
		json_object *v, *item;

		ck_assert_int_eq(evs_event_new_json(&ev, "t", cases[i].text,
		                                    NULL, NULL),
		                 0);
		ck_assert_str_eq(evs_event_data_json(ev), cases[i].text);
		v = evs_event_data(ev);
		ck_assert_msg(json_object_is_type(v, json_type_double),
		              "%s reads as %s", cases[i].text,
		              json_type_to_name(json_object_get_type(v)));
		ck_assert_msg(json_object_get_double(v) == cases[i].value,
		              "%s reads as %s", cases[i].text,
		              json_object_to_json_string(v));
		evs_event_free(ev);
		/* Inside an array, next to a string that looks like one. */
		snprintf(text, sizeof(text), "[\"%s\", %s]", cases[i].text,
		         cases[i].text);
		ck_assert_int_eq(evs_event_new_json(&ev, "t", text, NULL, NULL),
		                 0);
		ck_assert_str_eq(evs_event_data_json(ev), text);
		item = json_object_array_get_idx(evs_event_data(ev), 0);
		ck_assert_str_eq(json_object_get_string(item), cases[i].text);
		item = json_object_array_get_idx(evs_event_data(ev), 1);
		ck_assert(json_object_get_double(item) == cases[i].value);
		evs_event_free(ev);
	}
}
END_TEST

START_TEST(new_json_keeps_metadata_verbatim)
{
	static const char meta[] = " { \"correlation_id\" : \"c-1\" } ";
	evs_event *ev = NULL;
	json_object *got;

	ck_assert_int_eq(evs_event_new_json(&ev, "t", "[1]", meta, NULL), 0);
	ck_assert_str_eq(evs_event_metadata_json(ev), meta);
	got = evs_event_metadata(ev);
	ck_assert_ptr_nonnull(got);
	ck_assert_str_eq(json_object_get_string(
	                         json_object_object_get(got, "correlation_id")),
	                 "c-1");
	ck_assert_ptr_eq(evs_event_metadata(ev), got);
	evs_event_free(ev);
	ck_assert_int_eq(evs_event_new_json(&ev, "t", "1", "{}", NULL), 0);
	ck_assert_str_eq(evs_event_metadata_json(ev), "{}");
	evs_event_free(ev);
}
END_TEST

/* Not JSON (RFC 8259), each for its own reason. */
static const char *const invalid_json[] = {
	"{",
	"{'a':1}",       /* single quotes */
	"'a'",
	"1 2",           /* two values */
	"",
	"   ",
	"NaN",
	"Infinity",
	"-Infinity",
	"{}x",           /* trailing garbage */
	"[1]]",
	"nul",
	"nullx",
	"True",
	"[1,]",          /* trailing comma */
	"{\"a\":1,}",
	"{a:1}",         /* unquoted key */
	"/*c*/1",        /* comments */
	"[1]//c",
	"0x10",
	"+1",
	".5",
	"1.",            /* fraction without digits */
	"[1.]",
	"01",            /* leading zero */
	"-01",
	"1e",
	"\"a\tb\"",      /* raw control character in a string */
	"\"a\nb\"",
	"\"\\x\"",       /* bad escape */
	"\"\\u12\"",
	"\"\\u0000\"",   /* NUL: jsonb cannot hold it */
	"{\"a\\u0000b\":1}", /* in a key, too */
	"\"\\ud800\"",   /* unpaired surrogate escapes: jsonb refuses */
	"\"\\udd1e\"",
	"\"\\ud800\\u0041\"",
	"[\"\\ud800x\"]",
	"\"\xff\"",      /* invalid UTF-8 */
	"\"\xc3\x28\"",
	"{\"\xed\xa0\x80\":1}",
	"1e999",         /* not finite as a double */
	"-2e308",
	"1.8e308",
	"0.00018e312",
	/* 1.7976931348623158e308 written out in full */
	"17976931348623158"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"0000000000000000000000000000000000000000000000000000000000000000"
	"000000000000000000000000000000000000",
};
#define N_INVALID (sizeof(invalid_json) / sizeof(invalid_json[0]))

START_TEST(new_json_rejects_invalid_data)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = not_set;
	int rc = evs_event_new_json(&ev, "t", invalid_json[_i], NULL, &err);

	ck_assert_msg(rc == EVS_EINVALID, "data \"%s\" gave %d",
	              invalid_json[_i], rc);
	ASSERT_EINVALID(rc, err, "data");
	ck_assert_ptr_null(ev);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_json_rejects_invalid_metadata)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = not_set;
	int rc = evs_event_new_json(&ev, "t", "{}", invalid_json[_i], &err);

	ck_assert_msg(rc == EVS_EINVALID, "metadata \"%s\" gave %d",
	              invalid_json[_i], rc);
	ASSERT_EINVALID(rc, err, "metadata");
	ck_assert_ptr_null(ev);
	evs_error_clear(&err);
}
END_TEST

START_TEST(new_json_rejects_null_data)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = not_set;

	ASSERT_EINVALID(evs_event_new_json(&ev, "t", NULL, NULL, &err), err,
	                "data");
	ck_assert_ptr_null(ev);
	ASSERT_EINVALID(evs_event_new_json(&ev, "t", NULL, "{}", &err), err,
	                "data");
	evs_error_clear(&err);
}
END_TEST

/* Valid JSON, but not an object. */
static const char *const non_object_json[] = {
	"[1]", "[]", "\"s\"", "1", "true", "null", " [ {} ] ",
};
#define N_NON_OBJECT_JSON \
	(sizeof(non_object_json) / sizeof(non_object_json[0]))

START_TEST(new_json_rejects_metadata_that_is_not_an_object)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = not_set;
	int rc = evs_event_new_json(&ev, "t", "{}", non_object_json[_i], &err);

	ck_assert_msg(rc == EVS_EINVALID, "metadata \"%s\" gave %d",
	              non_object_json[_i], rc);
	ASSERT_EINVALID(rc, err, "metadata");
	ck_assert_ptr_null(ev);
	evs_error_clear(&err);
}
END_TEST

/* ---- PostgreSQL's numeric limits ---- */

/* jsonb stores numbers as numeric, whose input (set_var_from_str) refuses
 * an exponent of INT_MAX / 2 or more in magnitude, and a display scale
 * above 16383: the digits written after the point, F, less the exponent
 * as written, E (at least 0). It goes by the literal, not the value. */
#define SCALE_WHY "more than 16383 digits after its point"
#define EXPONENT_WHY "exponent of 1073741823 or more"

/* Each row: a number numeric stores, next to one it refuses, and why. */
static const struct {
	const char *ok, *refused, *why;
} numeric_limits[] = {
	{"1e-16383", "1e-16384", SCALE_WHY},
	{"-1e-16383", "-1e-16384", SCALE_WHY},
	{"0e-16383", "0.0e-16383", SCALE_WHY},      /* F counts, zero or not */
	{"-0e-16383", "-0e-16384", SCALE_WHY},
	{"100e-16383", "100e-16384", SCALE_WHY},    /* that one is 1e-16382 */
	{"1.5e-16382", "1.5e-16383", SCALE_WHY},
	{"-1.5e-16382", "-1.5e-16383", SCALE_WHY},
	{"1.0e-16382", "1.0e-16383", SCALE_WHY},
	{"0.00001e-16378", "0.00001e-16379", SCALE_WHY},
	{"123.456e-16380", "123.456e-16381", SCALE_WHY},
	{"1E-16383", "1E-16384", SCALE_WHY},
	{"1e-000000000000000000000016383", "1e-000000000000000000000016384",
	 SCALE_WHY},
	{"1e-16383", "1e-1073741822", SCALE_WHY},   /* the exponent is fine */
	{"0e1073741822", "0e1073741823", EXPONENT_WHY},
	{"-0e1073741822", "-0e1073741823", EXPONENT_WHY},
	{"0E+1073741822", "0E+1073741823", EXPONENT_WHY},
	{"0.0e1073741822", "0.0e1073741823", EXPONENT_WHY},
	{"0e-16383", "0e-1073741823", EXPONENT_WHY},
	{"1e-16383", "1e-1073741823", EXPONENT_WHY},
	{"0e99", "0e99999999999999999999", EXPONENT_WHY}, /* past 64 bits */
	{"1e-99", "1e-99999999999999999999", EXPONENT_WHY},
	{"0e0", "0e-999999999999999999999999999999999999999", EXPONENT_WHY},
};
#define N_NUMERIC_LIMITS (sizeof(numeric_limits) / sizeof(numeric_limits[0]))

/* Where a number can stand: alone, in an array, deep in an object. */
static const char *const number_places[] = {
	"%s",
	"[%s]",
	"[1, \"%s\", %s]",
	"{\"a\": {\"b\": [true, %s]}, \"c\": 2}",
};
#define N_NUMBER_PLACES (sizeof(number_places) / sizeof(number_places[0]))

/* place with each %s replaced by number; yours (free()). */
static char *place_number(const char *place, const char *number)
{
	size_t n = strlen(place) + 2 * strlen(number) + 1;
	char *s = malloc(n);

	ck_assert_ptr_nonnull(s);
	snprintf(s, n, place, number, number);
	return s;
}

/* evs_event_new_json(data, meta) refuses, naming what, for why. */
static void assert_refused(const char *data, const char *meta,
                           const char *what, const char *why)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = not_set;
	int rc = evs_event_new_json(&ev, "t", data, meta, &err);

	ck_assert_msg(rc == EVS_EINVALID, "data %.80s, metadata %.80s gave %d",
	              data, meta ? meta : "NULL", rc);
	ASSERT_EINVALID(rc, err, what);
	ck_assert_msg(strstr(err.message, why) != NULL &&
	              strstr(err.message, "PostgreSQL's numeric limit") != NULL,
	              "message \"%s\" does not say \"%s\"", err.message, why);
	ck_assert_ptr_null(ev);
	evs_error_clear(&err);
}

/* evs_event_new_json(data, meta) makes an event that keeps both texts. */
static void assert_accepted(const char *data, const char *meta)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = NULL;
	int rc = evs_event_new_json(&ev, "t", data, meta, &err);

	ck_assert_msg(rc == 0, "data %.80s, metadata %.80s gave %d: %s", data,
	              meta ? meta : "NULL", rc, err.message);
	ck_assert(strcmp(evs_event_data_json(ev), data) == 0);
	if (meta != NULL)
		ck_assert(strcmp(evs_event_metadata_json(ev), meta) == 0);
	evs_event_free(ev);
	evs_error_clear(&err);
}

/* Both sides of each limit, in data and in metadata, wherever the number
 * stands. */
START_TEST(new_json_numeric_limits)
{
	const char *ok = numeric_limits[_i].ok;
	const char *refused = numeric_limits[_i].refused;
	const char *why = numeric_limits[_i].why;
	size_t p;

	for (p = 0; p < N_NUMBER_PLACES; p++) {
		char *good = place_number(number_places[p], ok);
		char *bad = place_number(number_places[p], refused);
		char *good_meta = place_number("{\"m\": %s}", good);
		char *bad_meta = place_number("{\"m\": %s}", bad);

		assert_accepted(good, NULL);
		assert_accepted("{}", good_meta);
		assert_refused(bad, NULL, "data", why);
		assert_refused(bad, "{}", "data", why);
		assert_refused("{}", bad_meta, "metadata", why);
		assert_refused(good, bad_meta, "metadata", why);
		free(good);
		free(bad);
		free(good_meta);
		free(bad_meta);
	}
	/* As a string, the same text is no number at all. */
	{
		char *s = place_number("[\"%s\", {\"%s\": 1}]", refused);

		assert_accepted(s, NULL);
		free(s);
	}
}
END_TEST

/* "0." and n zeros, then "1", then exp; yours (free()). */
static char *long_fraction(size_t zeros, const char *exp)
{
	size_t n = 2 + zeros + 1 + strlen(exp) + 1;
	char *s = malloc(n);

	ck_assert_ptr_nonnull(s);
	memcpy(s, "0.", 2);
	memset(s + 2, '0', zeros);
	s[2 + zeros] = '1';
	strcpy(s + 3 + zeros, exp);
	return s;
}

/* The scale counts every digit written after the point, so a long
 * fraction hits the limit without an exponent, and a positive exponent
 * buys it back digit for digit. */
START_TEST(new_json_numeric_scale_of_long_fractions)
{
	static const struct {
		size_t zeros;
		const char *exp;
		int ok;
	} cases[] = {
		{16382, "", 1},         /* 16383 digits after the point */
		{16383, "", 0},
		{16382, "e0", 1},
		{16383, "e-0", 0},
		{16383, "e1", 1},
		{20000, "e3618", 1},    /* 20001 - 3618 = 16383 */
		{20000, "e+3617", 0},
		{16381, "e-1", 1},
		{16381, "e-2", 0},
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char *num = long_fraction(cases[i].zeros, cases[i].exp);
		char *arr = place_number("[-%s]", num);
		char *meta = place_number("{\"m\": %s}", num);

		if (cases[i].ok) {
			assert_accepted(num, NULL);
			assert_accepted(arr, meta);
		} else {
			assert_refused(num, NULL, "data", SCALE_WHY);
			assert_refused(arr, NULL, "data", SCALE_WHY);
			assert_refused("[]", meta, "metadata", SCALE_WHY);
		}
		free(num);
		free(arr);
		free(meta);
	}
}
END_TEST

/* A json-c value with a custom serializer prints its own text: the same
 * limits hold for evs_event_new(). */
START_TEST(new_numeric_limits)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = not_set;
	json_object *data, *meta;
	size_t i;

	for (i = 0; i < N_NUMERIC_LIMITS; i++) {
		const char *ok = numeric_limits[i].ok;
		const char *refused = numeric_limits[i].refused;

		data = json_object_new_array();
		json_object_array_add(data, json_object_new_double_s(0.0, ok));
		meta = json_object_new_object();
		json_object_object_add(meta, "m",
		                       json_object_new_double_s(0.0, ok));
		ck_assert_msg(evs_event_new(&ev, "t", data, meta, &err) == 0,
		              "%s: %s", ok, err.message);
		evs_event_free(ev);
		ev = not_set;
		json_object_array_put_idx(data, 0,
		                          json_object_new_double_s(0.0, refused));
		ASSERT_EINVALID(evs_event_new(&ev, "t", data, NULL, &err), err,
		                "data");
		ck_assert_msg(strstr(err.message, numeric_limits[i].why) != NULL,
		              "message \"%s\"", err.message);
		ck_assert_ptr_null(ev);
		ev = not_set;
		json_object_object_add(meta, "m",
		                       json_object_new_double_s(0.0, refused));
		ASSERT_EINVALID(evs_event_new(&ev, "t", NULL, meta, &err), err,
		                "metadata");
		ck_assert_ptr_null(ev);
		ev = not_set;
		json_object_put(data);
		json_object_put(meta);
	}
	evs_error_clear(&err);
}
END_TEST

/* What numeric refuses never reaches a store: the in-memory one, which
 * would keep any text, stays empty. */
START_TEST(refused_numbers_are_never_stored)
{
	evs_store *store = NULL;
	evs_event_list *list = NULL;
	size_t i, made = 0;

	ck_assert_int_eq(evs_store_open_memory(&store, NULL), 0);
	for (i = 0; i < N_NUMERIC_LIMITS; i++) {
		char *data = place_number("[%s]", numeric_limits[i].refused);
		evs_event *ev = NULL;

		if (evs_event_new_json(&ev, "t", data, NULL, NULL) == 0) {
			made++;
			evs_store_append(NULL, store, "n-1", EVS_ANY_VERSION,
			                 &ev, 1, NULL);
		}
		evs_event_free(ev);
		free(data);
	}
	ck_assert_int_eq(evs_store_load(&list, store, "n-1", EVS_NO_VERSION,
	                                NULL),
	                 0);
	ck_assert_msg(evs_event_list_count(list) == 0,
	              "the memory store kept %zu events",
	              evs_event_list_count(list));
	ck_assert_uint_eq(made, 0);
	evs_event_list_free(list);
	evs_store_free(store);
}
END_TEST

/* ---- type names ---- */

static const char *const bad_types[] = {
	"",
	"\xc3\x28",          /* invalid continuation */
	"\xc0\xaf",          /* overlong "/" */
	"\xe0\x80\xaf",      /* overlong, three bytes */
	"\xed\xa0\x80",      /* surrogate */
	"\xf4\x90\x80\x80",  /* past U+10FFFF */
	"\xe6\x9d",          /* truncated */
	"\xff",
	"\x80",              /* lone continuation */
	"\x01",
	"a\x7f",
	"\xc2\x85",          /* C1 control (NEL) */
	"\xc2\x9f",
	"a\nb",
	"\t",
	"type\x1b[0m",
};
#define N_BAD_TYPES (sizeof(bad_types) / sizeof(bad_types[0]))

START_TEST(type_rejected)
{
	evs_error err = EVS_ERROR_INIT;
	json_object *data = json_object_new_int(1);
	evs_event *ev = not_set;

	ASSERT_EINVALID(evs_event_new(&ev, bad_types[_i], data, NULL, &err),
	                err, "type");
	ck_assert_ptr_null(ev);
	ev = not_set;
	ASSERT_EINVALID(evs_event_new_json(&ev, bad_types[_i], "1", NULL,
	                                   &err),
	                err, "type");
	ck_assert_ptr_null(ev);
	json_object_put(data);
	evs_error_clear(&err);
}
END_TEST

START_TEST(type_null_rejected)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = not_set;

	ASSERT_EINVALID(evs_event_new(&ev, NULL, NULL, NULL, &err), err,
	                "type");
	ck_assert_ptr_null(ev);
	ev = not_set;
	ASSERT_EINVALID(evs_event_new_json(&ev, NULL, "1", NULL, &err), err,
	                "type");
	ck_assert_ptr_null(ev);
	evs_error_clear(&err);
}
END_TEST

START_TEST(type_length_limit)
{
	evs_error err = EVS_ERROR_INIT;
	char *t255 = repeat('t', EVS_ID_MAX);
	char *t256 = repeat('t', EVS_ID_MAX + 1);
	char *t1000 = repeat('t', 1000);
	evs_event *ev = not_set;

	ck_assert_int_eq(evs_event_new(&ev, t255, NULL, NULL, &err), 0);
	ck_assert_str_eq(evs_event_type(ev), t255);
	evs_event_free(ev);
	ck_assert_int_eq(evs_event_new_json(&ev, t255, "1", NULL, &err), 0);
	ck_assert_str_eq(evs_event_type(ev), t255);
	evs_event_free(ev);
	ev = not_set;
	ASSERT_EINVALID(evs_event_new(&ev, t256, NULL, NULL, &err), err,
	                "type");
	ck_assert_ptr_null(ev);
	ASSERT_EINVALID(evs_event_new_json(&ev, t256, "1", NULL, &err), err,
	                "type");
	ASSERT_EINVALID(evs_event_new_json(&ev, t1000, "1", NULL, &err), err,
	                "type");
	free(t255);
	free(t256);
	free(t1000);
	evs_error_clear(&err);
}
END_TEST

static const char *const good_types[] = {
	"OrderPlaced",
	"order.placed v2",
	"x",
	"Z\xc3\xbcrich",                           /* Zürich */
	"\xe6\x9d\xb1\xe4\xba\xac",                 /* 東京 */
	"\xf0\x9f\x9a\x80",                         /* 🚀 */
	"\xc2\xa0nbsp",                             /* U+00A0, not C1 */
	"\xef\xbf\xbd",                             /* U+FFFD */
	"\xf4\x8f\xbf\xbf",                         /* U+10FFFF */
	"quote\"back\\slash'",
};
#define N_GOOD_TYPES (sizeof(good_types) / sizeof(good_types[0]))

START_TEST(type_accepted_verbatim)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = NULL;

	ck_assert_int_eq(evs_event_new(&ev, good_types[_i], NULL, NULL, &err),
	                 0);
	ck_assert_str_eq(evs_event_type(ev), good_types[_i]);
	evs_event_free(ev);
	ck_assert_int_eq(evs_event_new_json(&ev, good_types[_i], "1", NULL,
	                                    &err),
	                 0);
	ck_assert_str_eq(evs_event_type(ev), good_types[_i]);
	evs_event_free(ev);
	evs_error_clear(&err);
}
END_TEST

/* 255 bytes of three-byte characters is fine; one more byte is not. */
START_TEST(type_multibyte_at_the_limit)
{
	evs_error err = EVS_ERROR_INIT;
	char t[EVS_ID_MAX + 2];
	evs_event *ev = NULL;
	size_t i;

	for (i = 0; i + 3 <= EVS_ID_MAX; i += 3)
		memcpy(t + i, "\xe6\x9d\xb1", 3);
	t[i] = '\0';
	ck_assert_uint_eq(strlen(t), EVS_ID_MAX);
	ck_assert_int_eq(evs_event_new_json(&ev, t, "1", NULL, &err), 0);
	ck_assert_str_eq(evs_event_type(ev), t);
	evs_event_free(ev);
	t[i] = 'x';
	t[i + 1] = '\0';
	ASSERT_EINVALID(evs_event_new_json(&ev, t, "1", NULL, &err), err,
	                "type");
	evs_error_clear(&err);
}
END_TEST

/* ---- UUIDs ---- */

static int cmp_uuid(const void *a, const void *b)
{
	return memcmp(a, b, sizeof(evs_uuid));
}

/* Orders by the 62 random bits at the end (variant bits masked). */
static int cmp_tail(const void *a, const void *b)
{
	unsigned char ta[8], tb[8];

	memcpy(ta, ((const evs_uuid *)a)->bytes + 8, 8);
	memcpy(tb, ((const evs_uuid *)b)->bytes + 8, 8);
	ta[0] &= 0x3F;
	tb[0] &= 0x3F;
	return memcmp(ta, tb, 8);
}

static void assert_v7(const evs_uuid *id)
{
	ck_assert_int_eq(id->bytes[6] >> 4, 7);
	ck_assert_int_eq(id->bytes[8] >> 6, 2); /* variant 10 */
}

static uint64_t uuid_ms(const evs_uuid *id)
{
	uint64_t ms = 0;
	int i;

	for (i = 0; i < 6; i++)
		ms = ms << 8 | id->bytes[i];
	return ms;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

START_TEST(generated_uuids_are_distinct_v7)
{
	enum { N = 10000 };
	evs_uuid *ids = malloc(N * sizeof(*ids));
	evs_error err = EVS_ERROR_INIT;
	uint64_t before = now_ms(), after;
	size_t i;

	ck_assert_ptr_nonnull(ids);
	for (i = 0; i < N; i++) {
		ck_assert_int_eq(evs_uuid_generate(&ids[i], &err), 0);
		assert_v7(&ids[i]);
	}
	after = now_ms();
	/* The first 48 bits are the Unix time in milliseconds. */
	ck_assert_uint_ge(uuid_ms(&ids[0]), before);
	ck_assert_uint_le(uuid_ms(&ids[N - 1]), after);
	/* One thread, one after another: never going backwards. */
	for (i = 1; i < N; i++)
		ck_assert_uint_ge(uuid_ms(&ids[i]), uuid_ms(&ids[i - 1]));
	qsort(ids, N, sizeof(*ids), cmp_uuid);
	for (i = 1; i < N; i++)
		ck_assert_msg(!evs_uuid_equal(&ids[i - 1], &ids[i]),
		              "duplicate UUID after %zu", i);
	/* Distinct by their random bits alone, not just by the clock: with
	 * 62 random bits a repeat among 10000 is a broken random source. */
	qsort(ids, N, sizeof(*ids), cmp_tail);
	for (i = 1; i < N; i++)
		ck_assert_msg(cmp_tail(&ids[i - 1], &ids[i]) != 0,
		              "random bits repeat after %zu", i);
	ck_assert_int_eq(err.code, 0);
	free(ids);
	evs_error_clear(&err);
}
END_TEST

START_TEST(event_ids_are_distinct_v7)
{
	enum { N = 2000 };
	evs_uuid *ids = malloc(N * sizeof(*ids));
	size_t i;

	ck_assert_ptr_nonnull(ids);
	for (i = 0; i < N; i++) {
		evs_event *ev = NULL;

		if (i % 2)
			ck_assert_int_eq(evs_event_new(&ev, "t", NULL, NULL,
			                               NULL),
			                 0);
		else
			ck_assert_int_eq(evs_event_new_json(&ev, "t", "1",
			                                    NULL, NULL),
			                 0);
		ids[i] = *evs_event_id(ev);
		assert_v7(&ids[i]);
		evs_event_free(ev);
	}
	qsort(ids, N, sizeof(*ids), cmp_uuid);
	for (i = 1; i < N; i++)
		ck_assert(!evs_uuid_equal(&ids[i - 1], &ids[i]));
	free(ids);
}
END_TEST

START_TEST(uuids_are_time_ordered_across_milliseconds)
{
	struct timespec two_ms = {0, 2000000};
	evs_uuid prev, next;
	int i;

	ck_assert_int_eq(evs_uuid_generate(&prev, NULL), 0);
	for (i = 0; i < 5; i++) {
		nanosleep(&two_ms, NULL);
		ck_assert_int_eq(evs_uuid_generate(&next, NULL), 0);
		ck_assert_msg(memcmp(prev.bytes, next.bytes, 16) < 0,
		              "a later UUID sorts first");
		ck_assert_uint_gt(uuid_ms(&next), uuid_ms(&prev));
		prev = next;
	}
}
END_TEST

START_TEST(uuid_parse_format_round_trip)
{
	static const char text[] = "00112233-4455-6677-8899-aabbccddeeff";
	char out[EVS_UUID_STRLEN + 1];
	evs_uuid id, again;
	int i;

	ck_assert_int_eq(evs_uuid_parse(&id, text, NULL), 0);
	for (i = 0; i < 16; i++)
		ck_assert_int_eq(id.bytes[i], i * 0x11);
	memset(out, 'Z', sizeof(out));
	evs_uuid_format(out, &id);
	ck_assert_str_eq(out, text);
	ck_assert_uint_eq(strlen(out), EVS_UUID_STRLEN);
	/* A generated id survives the round trip too. */
	ck_assert_int_eq(evs_uuid_generate(&id, NULL), 0);
	evs_uuid_format(out, &id);
	ck_assert_int_eq(out[8], '-');
	ck_assert_int_eq(out[13], '-');
	ck_assert_int_eq(out[14], '7');
	ck_assert_int_eq(out[18], '-');
	ck_assert_int_eq(out[23], '-');
	ck_assert_int_eq(evs_uuid_parse(&again, out, NULL), 0);
	ck_assert(evs_uuid_equal(&id, &again));
}
END_TEST

START_TEST(uuid_parse_accepts_upper_case)
{
	char out[EVS_UUID_STRLEN + 1];
	evs_uuid lower, upper, mixed;

	ck_assert_int_eq(evs_uuid_parse(&lower,
	                                "0190b6c4-8e3a-7c1d-9f00-0123456789ab",
	                                NULL),
	                 0);
	ck_assert_int_eq(evs_uuid_parse(&upper,
	                                "0190B6C4-8E3A-7C1D-9F00-0123456789AB",
	                                NULL),
	                 0);
	ck_assert_int_eq(evs_uuid_parse(&mixed,
	                                "0190b6C4-8E3a-7c1D-9F00-0123456789aB",
	                                NULL),
	                 0);
	ck_assert(evs_uuid_equal(&lower, &upper));
	ck_assert(evs_uuid_equal(&lower, &mixed));
	evs_uuid_format(out, &upper);
	ck_assert_str_eq(out, "0190b6c4-8e3a-7c1d-9f00-0123456789ab");
}
END_TEST

static const char *const bad_uuids[] = {
	"",
	"0190b6c4-8e3a-7c1d-9f00-0123456789a",    /* 35 */
	"0190b6c4-8e3a-7c1d-9f00-0123456789abc",  /* 37 */
	"0190b6c48e3a7c1d9f000123456789ab",       /* no dashes */
	"0190b6c48-e3a-7c1d-9f00-0123456789ab",   /* dash moved */
	"0190b6c4-8e3a-7c1d-9f000-123456789ab",
	"0190b6c4_8e3a_7c1d_9f00_0123456789ab",
	"0190b6g4-8e3a-7c1d-9f00-0123456789ab",   /* non-hex */
	"0190b6c4-8e3a-7c1d-9f00-0123456789aZ",
	"+190b6c4-8e3a-7c1d-9f00-0123456789ab",
	" 190b6c4-8e3a-7c1d-9f00-0123456789ab",
	"{0190b6c4-8e3a-7c1d-9f00-0123456789ab}",
	"0190b6c4-8e3a-7c1d-9f00-0123456789ab ",
	"0x90b6c4-8e3a-7c1d-9f00-0123456789ab",
	"0190b6c4-8e3a-7c1d-9f00-0123456789\xc3\xa9",
	"------------------------------------",
};
#define N_BAD_UUIDS (sizeof(bad_uuids) / sizeof(bad_uuids[0]))

START_TEST(uuid_parse_rejects_bad_forms)
{
	evs_error err = EVS_ERROR_INIT;
	evs_uuid id, untouched;

	memset(&id, 0x5A, sizeof(id));
	untouched = id;
	ck_assert_msg(evs_uuid_parse(&id, bad_uuids[_i], &err) == EVS_EINVALID,
	              "\"%s\" parsed", bad_uuids[_i]);
	ck_assert_int_eq(err.code, EVS_EINVALID);
	ck_assert_ptr_nonnull(err.message);
	ck_assert(evs_uuid_equal(&id, &untouched));
	evs_error_clear(&err);
}
END_TEST

START_TEST(uuid_parse_rejects_null)
{
	evs_error err = EVS_ERROR_INIT;
	evs_uuid id;

	ck_assert_int_eq(evs_uuid_parse(&id, NULL, &err), EVS_EINVALID);
	ck_assert_int_eq(err.code, EVS_EINVALID);
	ck_assert_int_eq(evs_uuid_parse(NULL,
	                                "0190b6c4-8e3a-7c1d-9f00-0123456789ab",
	                                &err),
	                 EVS_EINVALID);
	evs_error_clear(&err);
}
END_TEST

/* error.h: each call that takes the record first clears what an earlier
 * call left. */
START_TEST(uuid_parse_success_clears_the_record)
{
	evs_error err = EVS_ERROR_INIT;
	evs_uuid id;

	ck_assert_int_eq(evs_uuid_parse(&id, "nope", &err), EVS_EINVALID);
	ck_assert_int_eq(evs_uuid_parse(&id,
	                                "0190b6c4-8e3a-7c1d-9f00-0123456789ab",
	                                &err),
	                 0);
	ck_assert_int_eq(err.code, 0);
	ck_assert_ptr_null(err.message);
	evs_error_clear(&err);
}
END_TEST

/* The message quotes the caller's text; it must still be one line. */
START_TEST(uuid_parse_message_is_one_line)
{
	evs_error err = EVS_ERROR_INIT;
	evs_uuid id;

	ck_assert_int_eq(evs_uuid_parse(&id,
	                                "0190b6c4-8e3a-7c1d-9f00-0123456789a\n",
	                                &err),
	                 EVS_EINVALID);
	ck_assert_ptr_nonnull(err.message);
	ck_assert_msg(strchr(err.message, '\n') == NULL,
	              "message is not one line: \"%s\"", err.message);
	evs_error_clear(&err);
}
END_TEST

START_TEST(uuid_equal)
{
	evs_uuid a, b;

	ck_assert_int_eq(evs_uuid_generate(&a, NULL), 0);
	b = a;
	ck_assert_int_eq(evs_uuid_equal(&a, &b), 1);
	b.bytes[15] ^= 1;
	ck_assert_int_eq(evs_uuid_equal(&a, &b), 0);
	b = a;
	b.bytes[0] ^= 0x80;
	ck_assert_int_eq(evs_uuid_equal(&a, &b), 0);
}
END_TEST

/* ---- setters, copies, accessors ---- */

START_TEST(set_id_replaces_the_generated_id)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = NULL;
	evs_uuid id, before;

	ck_assert_int_eq(evs_event_new_json(&ev, "t", "1", NULL, NULL), 0);
	ck_assert_int_eq(evs_uuid_parse(&id,
	                                "0190b6c4-8e3a-7c1d-9f00-0123456789ab",
	                                NULL),
	                 0);
	before = *evs_event_id(ev);
	ck_assert(!evs_uuid_equal(&before, &id));
	ck_assert_int_eq(evs_event_set_id(ev, &id, &err), 0);
	ck_assert(evs_uuid_equal(evs_event_id(ev), &id));
	/* Copied: changing ours later does not change the event's. */
	id.bytes[0] ^= 0xFF;
	ck_assert(!evs_uuid_equal(evs_event_id(ev), &id));
	ck_assert_int_eq(err.code, 0);
	evs_event_free(ev);
	evs_error_clear(&err);
}
END_TEST

START_TEST(set_id_rejects_nil_and_null)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = NULL;
	evs_uuid nil, before, id;

	memset(&nil, 0, sizeof(nil));
	ck_assert_int_eq(evs_event_new_json(&ev, "t", "1", NULL, NULL), 0);
	before = *evs_event_id(ev);
	ASSERT_EINVALID(evs_event_set_id(ev, &nil, &err), err, "id");
	ck_assert(evs_uuid_equal(evs_event_id(ev), &before));
	ck_assert_int_eq(evs_event_set_id(ev, NULL, &err), EVS_EINVALID);
	ck_assert(evs_uuid_equal(evs_event_id(ev), &before));
	ck_assert_int_eq(evs_uuid_generate(&id, NULL), 0);
	ck_assert_int_eq(evs_event_set_id(NULL, &id, &err), EVS_EINVALID);
	ck_assert_int_eq(err.code, EVS_EINVALID);
	/* Only all-zero is nil. */
	nil.bytes[15] = 1;
	ck_assert_int_eq(evs_event_set_id(ev, &nil, &err), 0);
	evs_event_free(ev);
	evs_error_clear(&err);
}
END_TEST

START_TEST(dup_is_a_deep_copy)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = NULL, *copy = not_set;
	json_object *data, *meta;
	char *type, *dtext, *mtext;
	evs_uuid id;

	ck_assert_int_eq(evs_event_new_json(&ev, "Z\xc3\xbcrich-type",
	                                    "{\"amount\": [1, 2, 3]}",
	                                    "{\"correlation_id\": \"c\"}",
	                                    NULL),
	                 0);
	/* Parse the original's data first: the copy must not share it. */
	data = evs_event_data(ev);
	ck_assert_ptr_nonnull(data);
	ck_assert_int_eq(evs_event_dup(&copy, ev, &err), 0);
	ck_assert_ptr_nonnull(copy);
	ck_assert_ptr_ne(copy, ev);
	ck_assert_ptr_ne(evs_event_type(copy), evs_event_type(ev));
	ck_assert_ptr_ne(evs_event_data_json(copy), evs_event_data_json(ev));
	type = strdup(evs_event_type(ev));
	dtext = strdup(evs_event_data_json(ev));
	mtext = strdup(evs_event_metadata_json(ev));
	id = *evs_event_id(ev);
	data = json_object_get(data);
	evs_event_free(ev);

	ck_assert_str_eq(evs_event_type(copy), type);
	ck_assert_str_eq(evs_event_data_json(copy), dtext);
	ck_assert_str_eq(evs_event_metadata_json(copy), mtext);
	ck_assert(evs_uuid_equal(evs_event_id(copy), &id));
	ck_assert(json_object_equal(evs_event_data(copy), data));
	ck_assert_ptr_ne(evs_event_data(copy), data);
	meta = evs_event_metadata(copy);
	ck_assert_str_eq(
		json_object_get_string(json_object_object_get(meta,
	                                                      "correlation_id")),
		"c");
	ck_assert_ptr_null(evs_event_aggregate_id(copy));
	ck_assert_int_eq(evs_event_version(copy), EVS_NO_VERSION);
	ck_assert_int_eq(evs_event_position(copy), 0);
	ck_assert_int_eq(evs_event_recorded_at(copy), 0);
	json_object_put(data);
	free(type);
	free(dtext);
	free(mtext);
	evs_event_free(copy);
	evs_error_clear(&err);
}
END_TEST

START_TEST(dup_keeps_the_stored_fields)
{
	evs_store *store = NULL;
	evs_event *evs[2], *copy = NULL;
	evs_event_list *list = NULL;
	const evs_event *second;
	int64_t position, recorded_at;
	struct timespec ts;
	int64_t now_us;
	evs_uuid id;

	clock_gettime(CLOCK_REALTIME, &ts);
	now_us = (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
	ck_assert_int_eq(evs_store_open_memory(&store, NULL), 0);
	ck_assert_int_eq(evs_event_new_json(&evs[0], "a", "1", NULL, NULL), 0);
	ck_assert_int_eq(evs_event_new_json(&evs[1], "b", "{\"x\":2}",
	                                    "{\"m\":1}", NULL),
	                 0);
	id = *evs_event_id(evs[1]);
	ck_assert_int_eq(evs_store_append(NULL, store, "order-1",
	                                  EVS_NO_VERSION, evs, 2, NULL),
	                 0);
	evs_event_free(evs[0]);
	evs_event_free(evs[1]);
	ck_assert_int_eq(evs_store_load(&list, store, "order-1",
	                                EVS_NO_VERSION, NULL),
	                 0);
	ck_assert_uint_eq(evs_event_list_count(list), 2);
	second = evs_event_list_get(list, 1);
	ck_assert_ptr_nonnull(second);
	ck_assert_ptr_null(evs_event_list_get(list, 2));
	ck_assert_int_eq(evs_event_dup(&copy, second, NULL), 0);
	position = evs_event_position(second);
	recorded_at = evs_event_recorded_at(second);
	evs_event_list_free(list);
	evs_store_free(store);

	ck_assert_str_eq(evs_event_aggregate_id(copy), "order-1");
	ck_assert_int_eq(evs_event_version(copy), 1);
	ck_assert_int_eq(evs_event_position(copy), position);
	ck_assert_int_gt(position, 0);
	ck_assert_int_eq(evs_event_recorded_at(copy), recorded_at);
	ck_assert_int_ge(recorded_at, now_us - 60 * 1000000LL);
	ck_assert_int_le(recorded_at, now_us + 60 * 1000000LL);
	ck_assert_str_eq(evs_event_type(copy), "b");
	ck_assert_str_eq(evs_event_data_json(copy), "{\"x\":2}");
	ck_assert_str_eq(evs_event_metadata_json(copy), "{\"m\":1}");
	ck_assert(evs_uuid_equal(evs_event_id(copy), &id));
	evs_event_free(copy);
}
END_TEST

START_TEST(dup_rejects_null)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *copy = not_set, *ev = NULL;

	ck_assert_int_eq(evs_event_dup(&copy, NULL, &err), EVS_EINVALID);
	ck_assert_int_eq(err.code, EVS_EINVALID);
	ck_assert_ptr_null(copy);
	ck_assert_int_eq(evs_event_new_json(&ev, "t", "1", NULL, NULL), 0);
	ck_assert_int_eq(evs_event_dup(NULL, ev, &err), EVS_EINVALID);
	evs_event_free(ev);
	evs_error_clear(&err);
}
END_TEST

START_TEST(accessors_of_an_unstored_event)
{
	evs_event *ev = NULL;

	ck_assert_int_eq(evs_event_new_json(&ev, "t", "{\"a\":1}", NULL, NULL),
	                 0);
	ck_assert_ptr_null(evs_event_aggregate_id(ev));
	ck_assert_int_eq(evs_event_version(ev), EVS_NO_VERSION);
	ck_assert_int_eq(evs_event_version(ev), -1);
	ck_assert_int_eq(evs_event_position(ev), 0);
	ck_assert_int_eq(evs_event_recorded_at(ev), 0);
	ck_assert_ptr_null(evs_event_metadata_json(ev));
	ck_assert_ptr_null(evs_event_metadata(ev));
	ck_assert_ptr_nonnull(evs_event_id(ev));
	evs_event_free(ev);
	ck_assert_int_eq(evs_event_new(&ev, "t", NULL, NULL, NULL), 0);
	ck_assert_ptr_null(evs_event_aggregate_id(ev));
	ck_assert_int_eq(evs_event_version(ev), EVS_NO_VERSION);
	ck_assert_int_eq(evs_event_position(ev), 0);
	ck_assert_int_eq(evs_event_recorded_at(ev), 0);
	evs_event_free(ev);
	evs_event_free(NULL);
}
END_TEST

START_TEST(data_accessor_is_borrowed_and_equal)
{
	json_object *in = json_object_new_object();
	json_object *a, *b, *c;
	evs_event *ev = NULL, *ev2 = NULL;

	json_object_object_add(in, "list", json_object_new_array());
	json_object_object_add(in, "s", json_object_new_string("v"));
	ck_assert_int_eq(evs_event_new(&ev, "t", in, NULL, NULL), 0);
	a = evs_event_data(ev);
	b = evs_event_data(ev);
	ck_assert_ptr_nonnull(a);
	ck_assert_ptr_eq(a, b);
	ck_assert(json_object_equal(a, in));
	/* From text as well. */
	ck_assert_int_eq(evs_event_new_json(&ev2, "t", evs_event_data_json(ev),
	                                    NULL, NULL),
	                 0);
	c = evs_event_data(ev2);
	ck_assert_ptr_eq(evs_event_data(ev2), c);
	ck_assert(json_object_equal(c, in));
	/* Keeping it past the event with json_object_get(). */
	a = json_object_get(a);
	evs_event_free(ev);
	ck_assert(json_object_equal(a, in));
	json_object_put(a);
	evs_event_free(ev2);
	json_object_put(in);
}
END_TEST

START_TEST(list_functions_accept_null)
{
	ck_assert_uint_eq(evs_event_list_count(NULL), 0);
	ck_assert_ptr_null(evs_event_list_get(NULL, 0));
	ck_assert_ptr_null(evs_event_list_get(NULL, 5));
	evs_event_list_free(NULL);
}
END_TEST

START_TEST(list_from_a_load)
{
	evs_store *store = NULL;
	evs_event *evs[3];
	evs_event_list *list = NULL;
	size_t i;

	ck_assert_int_eq(evs_store_open_memory(&store, NULL), 0);
	for (i = 0; i < 3; i++) {
		char text[16];

		snprintf(text, sizeof(text), "%zu", i);
		ck_assert_int_eq(evs_event_new_json(&evs[i], "t", text, NULL,
		                                    NULL),
		                 0);
	}
	ck_assert_int_eq(evs_store_append(NULL, store, "l", EVS_NO_VERSION,
	                                  evs, 3, NULL),
	                 0);
	ck_assert_int_eq(evs_store_load(&list, store, "l", EVS_NO_VERSION,
	                                NULL),
	                 0);
	ck_assert_uint_eq(evs_event_list_count(list), 3);
	for (i = 0; i < 3; i++) {
		const evs_event *e = evs_event_list_get(list, i);

		ck_assert_ptr_nonnull(e);
		ck_assert_int_eq(evs_event_version(e), (int64_t)i);
		ck_assert(evs_uuid_equal(evs_event_id(e), evs_event_id(evs[i])));
		ck_assert_int_eq(json_object_get_int(evs_event_data(e)), (int)i);
		evs_event_free(evs[i]);
	}
	ck_assert_ptr_null(evs_event_list_get(list, 3));
	ck_assert_ptr_null(evs_event_list_get(list, (size_t)-1));
	evs_event_list_free(list);
	evs_store_free(store);
}
END_TEST

/* The random bits come from a per-thread pool: a forked child must not
 * draw the same bytes as its parent (they would make the same ids). */
START_TEST(a_forked_child_makes_other_ids_than_its_parent)
{
	evs_uuid first, parent_next, child_next;
	int fds[2], status = 0;
	pid_t pid;

	ck_assert_int_eq(evs_uuid_generate(&first, NULL), 0); /* pool filled */
	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		int ok = evs_uuid_generate(&child_next, NULL) == 0 &&
		         write(fds[1], &child_next, sizeof(child_next)) ==
		                 (ssize_t)sizeof(child_next);
		_exit(ok ? 0 : 1);
	}
	ck_assert_int_eq(evs_uuid_generate(&parent_next, NULL), 0);
	ck_assert_int_eq(read(fds[0], &child_next, sizeof(child_next)),
	                 (ssize_t)sizeof(child_next));
	waitpid(pid, &status, 0);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	close(fds[0]);
	close(fds[1]);
	ck_assert_msg(memcmp(parent_next.bytes + 8, child_next.bytes + 8, 8) != 0,
	              "parent and child drew the same random bits");
}
END_TEST

Suite *event_suite(void)
{
	Suite *s = suite_create("event");
	TCase *tc;

	tc = tcase_create("new");
	tcase_add_loop_test(tc, new_accepts_any_json_value, 0, N_DATA);
	tcase_add_test(tc, new_borrows_data_and_metadata);
	tcase_add_test(tc, new_with_metadata_object);
	tcase_add_test(tc, new_with_empty_metadata_object);
	tcase_add_test(tc, new_with_data_and_metadata_the_same_object);
	tcase_add_test(tc, new_with_metadata_inside_data);
	tcase_add_loop_test(tc, new_rejects_metadata_that_is_not_an_object, 0,
	                    N_NON_OBJECT);
	tcase_add_loop_test(tc, new_rejects_bad_values_in_data, 0, 4 * N_BAD);
	tcase_add_loop_test(tc, new_rejects_bad_values_in_metadata, 0,
	                    2 * N_BAD);
	tcase_add_test(tc, new_rejects_invalid_utf8_in_a_key);
	tcase_add_test(tc, new_never_keeps_text_that_is_not_json);
	tcase_add_test(tc, new_with_null_out);
	tcase_add_test(tc, new_accepts_deep_nesting);
	tcase_add_test(tc, nesting_limit_is_consistent);
	suite_add_tcase(s, tc);

	tc = tcase_create("new_json");
	tcase_add_loop_test(tc, new_json_keeps_valid_text_verbatim, 0,
	                    (int)N_VALID);
	tcase_add_test(tc, new_json_keeps_metadata_verbatim);
	tcase_add_test(tc, new_json_big_integers_are_not_clamped);
	tcase_add_loop_test(tc, new_json_rejects_invalid_data, 0,
	                    (int)N_INVALID);
	tcase_add_loop_test(tc, new_json_rejects_invalid_metadata, 0,
	                    (int)N_INVALID);
	tcase_add_test(tc, new_json_rejects_null_data);
	tcase_add_loop_test(tc, new_json_rejects_metadata_that_is_not_an_object,
	                    0, (int)N_NON_OBJECT_JSON);
	suite_add_tcase(s, tc);

	tc = tcase_create("numeric_limits");
	tcase_add_loop_test(tc, new_json_numeric_limits, 0,
	                    (int)N_NUMERIC_LIMITS);
	tcase_add_test(tc, new_json_numeric_scale_of_long_fractions);
	tcase_add_test(tc, new_numeric_limits);
	tcase_add_test(tc, refused_numbers_are_never_stored);
	suite_add_tcase(s, tc);

	tc = tcase_create("type");
	tcase_add_loop_test(tc, type_rejected, 0, (int)N_BAD_TYPES);
	tcase_add_test(tc, type_null_rejected);
	tcase_add_test(tc, type_length_limit);
	tcase_add_loop_test(tc, type_accepted_verbatim, 0, (int)N_GOOD_TYPES);
	tcase_add_test(tc, type_multibyte_at_the_limit);
	suite_add_tcase(s, tc);

	tc = tcase_create("uuid");
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, generated_uuids_are_distinct_v7);
	tcase_add_test(tc, event_ids_are_distinct_v7);
	tcase_add_test(tc, uuids_are_time_ordered_across_milliseconds);
	tcase_add_test(tc, a_forked_child_makes_other_ids_than_its_parent);
	tcase_add_test(tc, uuid_parse_format_round_trip);
	tcase_add_test(tc, uuid_parse_accepts_upper_case);
	tcase_add_loop_test(tc, uuid_parse_rejects_bad_forms, 0,
	                    (int)N_BAD_UUIDS);
	tcase_add_test(tc, uuid_parse_rejects_null);
	tcase_add_test(tc, uuid_parse_success_clears_the_record);
	tcase_add_test(tc, uuid_parse_message_is_one_line);
	tcase_add_test(tc, uuid_equal);
	suite_add_tcase(s, tc);

	tc = tcase_create("access");
	tcase_add_test(tc, set_id_replaces_the_generated_id);
	tcase_add_test(tc, set_id_rejects_nil_and_null);
	tcase_add_test(tc, dup_is_a_deep_copy);
	tcase_add_test(tc, dup_keeps_the_stored_fields);
	tcase_add_test(tc, dup_rejects_null);
	tcase_add_test(tc, accessors_of_an_unstored_event);
	tcase_add_test(tc, data_accessor_is_borrowed_and_equal);
	tcase_add_test(tc, list_functions_accept_null);
	tcase_add_test(tc, list_from_a_load);
	suite_add_tcase(s, tc);
	return s;
}
