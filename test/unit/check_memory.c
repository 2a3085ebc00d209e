/* What the in-memory backend does beyond the contract: growth of its
 * tables, reads bounded to where the stream ended, many threads. */
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <evstore/evstore.h>

#include "unit/suites.h"

static evs_store *store;

static void setup(void)
{
	ck_assert_int_eq(evs_store_open_memory(&store, NULL), 0);
}

static void teardown(void)
{
	evs_store_free(store);
	store = NULL;
}

static int append_json(const char *id, int64_t expected, const char *data,
                       evs_uuid *id_out)
{
	evs_event *ev = NULL;
	int rc = evs_event_new_json(&ev, "t", data, NULL, NULL);

	ck_assert_int_eq(rc, 0);
	if (id_out != NULL)
		*id_out = *evs_event_id(ev);
	rc = evs_store_append(NULL, store, id, expected, &ev, 1, NULL);
	evs_event_free(ev);
	return rc;
}

START_TEST(thousands_of_streams)
{
	char id[32];
	int i;
	int64_t v;

	for (i = 0; i < 5000; i++) {
		snprintf(id, sizeof(id), "s-%d", i);
		ck_assert_int_eq(append_json(id, EVS_NO_VERSION, "1", NULL), 0);
		ck_assert_int_eq(append_json(id, 0, "2", NULL), 0);
	}
	for (i = 0; i < 5000; i++) {
		snprintf(id, sizeof(id), "s-%d", i);
		ck_assert_int_eq(evs_store_current_version(&v, store, id, NULL),
		                 0);
		ck_assert_int_eq(v, 1);
	}
	ck_assert_int_eq(evs_store_current_version(&v, store, "s-5000", NULL),
	                 EVS_ENOTFOUND);
}
END_TEST

START_TEST(duplicate_ids_found_in_a_long_stream)
{
	evs_uuid early, late;
	evs_event *ev = NULL;
	evs_error err = EVS_ERROR_INIT;
	int i;

	for (i = 0; i < 3000; i++)
		ck_assert_int_eq(append_json("long", i - 1, "{}",
		                             i == 5 ? &early
		                             : i == 2999 ? &late : NULL), 0);
	ck_assert_int_eq(evs_event_new_json(&ev, "t", "{}", NULL, NULL), 0);
	ck_assert_int_eq(evs_event_set_id(ev, &early, NULL), 0);
	ck_assert_int_eq(evs_store_append(NULL, store, "long", 2999, &ev, 1,
	                                  &err), EVS_EDUPLICATE);
	ck_assert_ptr_nonnull(strstr(err.message, "at version 5"));
	ck_assert_int_eq(evs_event_set_id(ev, &late, NULL), 0);
	ck_assert_int_eq(evs_store_append(NULL, store, "long", 2998, &ev, 1,
	                                  &err), 0);
	ck_assert_int_eq(evs_store_append(NULL, store, "long", 2999, &ev, 1,
	                                  &err), EVS_EDUPLICATE);
	evs_event_free(ev);
	evs_error_clear(&err);
}
END_TEST

static int append_while_reading(const evs_event *ev, void *payload)
{
	int *seen = payload;

	(*seen)++;
	ck_assert_int_eq(append_json("growing", EVS_ANY_VERSION, "0", NULL),
	                 0);
	(void)ev;
	return 0;
}

START_TEST(foreach_ends_where_the_stream_ended_when_it_began)
{
	int seen = 0, i;
	int64_t v;

	for (i = 0; i < 600; i++)
		ck_assert_int_eq(append_json("growing", i - 1, "1", NULL), 0);
	ck_assert_int_eq(evs_store_foreach(store, "growing", EVS_NO_VERSION,
	                                   append_while_reading, &seen, NULL),
	                 0);
	ck_assert_int_eq(seen, 600);
	ck_assert_int_eq(evs_store_current_version(&v, store, "growing", NULL),
	                 0);
	ck_assert_int_eq(v, 1199);
}
END_TEST

#define WRITERS 8
#define PER_WRITER 300

typedef struct {
	int n;
	int failures;
} writer;

static void *write_own_stream(void *arg)
{
	writer *w = arg;
	char id[32];
	int i;

	snprintf(id, sizeof(id), "w-%d", w->n);
	for (i = 0; i < PER_WRITER; i++)
		if (append_json(id, i - 1, "{\"x\": 1}", NULL) != 0)
			w->failures++;
	return NULL;
}

static void *read_streams(void *arg)
{
	int *failures = arg;
	char id[32];
	int i;

	for (i = 0; i < 2000; i++) {
		evs_event_list *list = NULL;
		size_t j;

		snprintf(id, sizeof(id), "w-%d", i % WRITERS);
		if (evs_store_load(&list, store, id, EVS_NO_VERSION, NULL) != 0)
			(*failures)++;
		for (j = 0; j < evs_event_list_count(list); j++)
			if (evs_event_version(evs_event_list_get(list, j)) !=
			    (int64_t)j)
				(*failures)++;
		evs_event_list_free(list);
	}
	return NULL;
}

static int cmp_i64(const void *a, const void *b)
{
	int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;

	return (x > y) - (x < y);
}

START_TEST(writers_and_readers_on_many_threads)
{
	pthread_t th[WRITERS + 2];
	writer ws[WRITERS];
	int read_failures[2] = {0, 0};
	int64_t *positions = malloc(WRITERS * PER_WRITER * sizeof(int64_t));
	size_t k = 0;
	int i;

	for (i = 0; i < WRITERS; i++) {
		ws[i].n = i;
		ws[i].failures = 0;
		ck_assert_int_eq(pthread_create(&th[i], NULL, write_own_stream,
		                                &ws[i]), 0);
	}
	for (i = 0; i < 2; i++)
		ck_assert_int_eq(pthread_create(&th[WRITERS + i], NULL,
		                                read_streams, &read_failures[i]),
		                 0);
	for (i = 0; i < WRITERS + 2; i++)
		pthread_join(th[i], NULL);
	ck_assert_int_eq(read_failures[0] + read_failures[1], 0);
	for (i = 0; i < WRITERS; i++) {
		evs_event_list *list = NULL;
		char id[32];
		size_t j;

		ck_assert_int_eq(ws[i].failures, 0);
		snprintf(id, sizeof(id), "w-%d", i);
		ck_assert_int_eq(evs_store_load(&list, store, id, EVS_NO_VERSION,
		                                NULL), 0);
		ck_assert_uint_eq(evs_event_list_count(list), PER_WRITER);
		for (j = 0; j < PER_WRITER; j++)
			positions[k++] = evs_event_position(
				evs_event_list_get(list, j));
		evs_event_list_free(list);
	}
	/* Every event got its own global position: exactly 1..N here. */
	qsort(positions, k, sizeof(*positions), cmp_i64);
	for (i = 0; i < (int)k; i++)
		ck_assert_int_eq(positions[i], i + 1);
	free(positions);
}
END_TEST

Suite *memory_suite(void)
{
	Suite *s = suite_create("memory");
	TCase *tc = tcase_create("backend");

	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_add_test(tc, thousands_of_streams);
	tcase_add_test(tc, duplicate_ids_found_in_a_long_stream);
	tcase_add_test(tc, foreach_ends_where_the_stream_ended_when_it_began);
	tcase_add_test(tc, writers_and_readers_on_many_threads);
	tcase_set_timeout(tc, 120);
	suite_add_tcase(s, tc);
	return s;
}
