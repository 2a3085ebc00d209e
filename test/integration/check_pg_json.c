/* The library's JSON check and PostgreSQL agree on numbers: a number
 * evs_event_new_json() accepts, jsonb stores, and one jsonb refuses (its
 * numeric input's limits on exponent and scale), the library refuses when
 * the event is made. Numbers past DBL_MAX are the one deliberate
 * difference: numeric holds them, json-c's doubles do not. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "integration/pg_test.h"

/* Boundary literals; big marks those past DBL_MAX. */
static const struct {
	const char *text;
	int big;
} literals[] = {
	{"1e-16383", 0},
	{"1e-16384", 0},
	{"-1e-16383", 0},
	{"-1e-16384", 0},
	{"1E-16384", 0},
	{"100e-16383", 0},
	{"100e-16384", 0},
	{"0e-16383", 0},
	{"0e-16384", 0},
	{"-0e-16383", 0},
	{"-0e-16384", 0},
	{"0.0e-16382", 0},
	{"0.0e-16383", 0},
	{"1.5e-16382", 0},
	{"1.5e-16383", 0},
	{"1.0e-16382", 0},
	{"1.0e-16383", 0},
	{"0.00001e-16378", 0},
	{"0.00001e-16379", 0},
	{"123.456e-16380", 0},
	{"123.456e-16381", 0},
	{"1e-000000000000000000000016383", 0},
	{"1e-000000000000000000000016384", 0},
	{"0e1073741822", 0},
	{"0e1073741823", 0},
	{"0E+1073741822", 0},
	{"0E+1073741823", 0},
	{"0.0e1073741822", 0},
	{"0.0e1073741823", 0},
	{"0e-1073741822", 0},
	{"0e-1073741823", 0},
	{"1e-1073741822", 0},
	{"1e-1073741823", 0},
	{"0e99999999999999999999", 0},
	{"1e-99999999999999999999", 0},
	{"0E+5", 0},
	{"-0.0", 0},
	{"1e-400", 0},
	{"0.000000e999", 0},
	{"12345678901234567890123", 0},
	{"1e308", 0},
	{"1.7976931348623157e308", 0},
	{"-1.7976931348623157e308", 0},
	{"1e309", 1},
	{"-2e308", 1},
	{"1E1073741822", 1},
};
#define N_LITERALS (sizeof(literals) / sizeof(literals[0]))

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

/* "[" number "]"; yours (free()). */
static char *in_array(const char *number)
{
	size_t n = strlen(number) + 3;
	char *s = malloc(n);

	ck_assert_ptr_nonnull(s);
	snprintf(s, n, "[%s]", number);
	return s;
}

/* 1 when the library makes an event of json; a refusal must be
 * EVS_EINVALID. */
static int library_accepts(const char *json)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = NULL;
	int rc = evs_event_new_json(&ev, "t", json, NULL, &err);

	ck_assert_msg(rc == 0 || rc == EVS_EINVALID, "%.80s gave %d", json,
	              rc);
	evs_event_free(ev);
	evs_error_clear(&err);
	return rc == 0;
}

/* 1 when the server casts json to jsonb; a refusal must be SQLSTATE 22003
 * (numeric_value_out_of_range), not a syntax error in the test. */
static int server_accepts(PGconn *conn, const char *json)
{
	const char *params[1] = {json};
	PGresult *res = PQexecParams(conn, "SELECT $1::jsonb", 1, NULL, params,
	                             NULL, NULL, 0);
	const char *state;
	int ok = PQresultStatus(res) == PGRES_TUPLES_OK;

	if (!ok) {
		state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
		ck_assert_msg(state != NULL && strcmp(state, "22003") == 0,
		              "%.80s: SQLSTATE %s: %s", json,
		              state ? state : "(none)", PQerrorMessage(conn));
	}
	PQclear(res);
	return ok;
}

/* Compares the library with the server on json; counts the verdicts. */
static void compare(PGconn *conn, const char *json, int *accepted,
                    int *refused)
{
	int lib = library_accepts(json);
	int pg = server_accepts(conn, json);

	ck_assert_msg(lib == pg, "%.80s: the library %s it, the server %s it",
	              json, lib ? "accepts" : "refuses",
	              pg ? "accepts" : "refuses");
	if (lib)
		(*accepted)++;
	else
		(*refused)++;
}

START_TEST(library_and_server_agree_on_numbers)
{
	static const struct {
		size_t zeros;
		const char *exp;
	} fractions[] = {
		{16382, ""}, {16383, ""}, {16383, "e1"}, {16383, "e-0"},
		{20000, "e3618"}, {20000, "e3617"}, {16381, "e-1"},
		{16381, "e-2"},
	};
	PGconn *conn = pg_test_connect();
	int accepted = 0, refused = 0;
	size_t i;

	for (i = 0; i < N_LITERALS; i++) {
		char *json = in_array(literals[i].text);

		if (literals[i].big) {
			/* Deliberately stricter than numeric: json-c reads
			 * numbers as doubles. */
			ck_assert_msg(!library_accepts(json),
			              "%s is past DBL_MAX", json);
		} else {
			compare(conn, json, &accepted, &refused);
		}
		free(json);
	}
	for (i = 0; i < sizeof(fractions) / sizeof(fractions[0]); i++) {
		char *number = long_fraction(fractions[i].zeros,
		                             fractions[i].exp);
		char *json = in_array(number);

		compare(conn, json, &accepted, &refused);
		free(json);
		free(number);
	}
	/* The list must test both sides. */
	ck_assert_int_ge(accepted, 20);
	ck_assert_int_ge(refused, 20);
	PQfinish(conn);
}
END_TEST

/* What the library accepts at the limits, a PostgreSQL store appends. */
START_TEST(numbers_at_the_limits_are_stored)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	evs_event *ev = NULL;
	evs_event_list *list = NULL;
	char id[64], *data, *tail;
	size_t i, len = 0;

	for (i = 0; i < N_LITERALS; i++)
		len += strlen(literals[i].text) + 1;
	data = malloc(len + 2);
	ck_assert_ptr_nonnull(data);
	tail = data;
	*tail++ = '[';
	for (i = 0; i < N_LITERALS; i++) {
		char *one = in_array(literals[i].text);

		if (library_accepts(one)) {
			if (tail > data + 1)
				*tail++ = ',';
			tail += sprintf(tail, "%s", literals[i].text);
		}
		free(one);
	}
	*tail++ = ']';
	*tail = '\0';
	ck_assert_msg(evs_event_new_json(&ev, "Limits", data,
	                                 "{\"n\": -1.5e-16382}", &err) == 0,
	              "%s", err.message);
	opts.schema = pg_test_schema();
	ck_assert_msg(evs_store_open_pg(&store, pg_test_dsn(), &opts, &err) ==
	              0, "open: %s", err.message);
	snprintf(id, sizeof(id), "pg-json-%ld", (long)getpid());
	ck_assert_msg(evs_store_append(NULL, store, id, EVS_NO_VERSION, &ev, 1,
	                               &err) == 0,
	              "append: %s", err.message);
	ck_assert_int_eq(evs_store_load(&list, store, id, EVS_NO_VERSION,
	                                &err),
	                 0);
	ck_assert_uint_eq(evs_event_list_count(list), 1);
	evs_event_list_free(list);
	evs_event_free(ev);
	evs_store_free(store);
	evs_error_clear(&err);
	free(data);
}
END_TEST

Suite *pg_json_suite(void)
{
	Suite *s = suite_create("pg_json");
	TCase *tc = tcase_create("numbers");

	tcase_set_timeout(tc, 60);
	tcase_add_test(tc, library_and_server_agree_on_numbers);
	tcase_add_test(tc, numbers_at_the_limits_are_stored);
	suite_add_tcase(s, tc);
	return s;
}
