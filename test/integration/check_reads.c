/* Streaming reads hold a bounded number of bytes, however large the
 * events: a read of 120 events of 1 MB grows a process by less than
 * 16 MB, measured in a child of its own (getrusage). */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "integration/pg_test.h"

#define BIG_EVENTS 120
#define BIG_BYTES (1u << 20)
#define MAX_GROWTH_KB (16L * 1024)

static evs_store *open_store(unsigned int pool)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;

	opts.schema = pg_test_schema();
	opts.pool_size = pool;
	ck_assert_msg(evs_store_open_pg(&store, pg_test_dsn(), &opts, &err) ==
	              0, "open: %s", err.message);
	evs_error_clear(&err);
	return store;
}

/* Stores BIG_EVENTS events of about BIG_BYTES each in stream id, ten per
 * append. Returns the checkpoint before the first. */
static void store_big_events(evs_store *store, const char *id)
{
	char *data = malloc(BIG_BYTES + 16);
	evs_error err = EVS_ERROR_INIT;
	int i, j;

	ck_assert_ptr_nonnull(data);
	for (i = 0; i < BIG_EVENTS; i += 10) {
		evs_event *evs[10];

		for (j = 0; j < 10; j++) {
			/* A different string per event: nothing to share. */
			int n = snprintf(data, 32, "\"%03d-", i + j);

			memset(data + n, 'a' + (i + j) % 26, BIG_BYTES - n - 1);
			data[BIG_BYTES - 1] = '"';
			data[BIG_BYTES] = '\0';
			ck_assert_int_eq(evs_event_new_json(&evs[j], "Big", data,
			                                    NULL, &err), 0);
		}
		ck_assert_msg(evs_store_append(NULL, store, id, i - 1, evs, 10,
		                               &err) == 0,
		              "append: %s", err.message);
		for (j = 0; j < 10; j++)
			evs_event_free(evs[j]);
	}
	free(data);
	evs_error_clear(&err);
}

static long max_rss_kb(void)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	return ru.ru_maxrss;
}

typedef struct {
	const char *id;
	long events;
	long bytes;
} count_ctx;

static int count_big(const evs_event *ev, void *payload)
{
	count_ctx *c = payload;

	if (c->id == NULL || strcmp(evs_event_aggregate_id(ev), c->id) == 0) {
		c->events++;
		c->bytes += (long)strlen(evs_event_data_json(ev));
	}
	return 0;
}

/* Runs a read in a child process and returns its peak RSS growth in kB
 * (or fails the test). mode 0: evs_store_foreach; 1: evs_store_read_all
 * from *from. */
static long growth_of_read(const char *id, int mode, const evs_position *from)
{
	int fds[2], status;
	long result[3] = {0, 0, 0};
	pid_t pid;

	ck_assert_int_eq(pipe(fds), 0);
	pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		evs_error err = EVS_ERROR_INIT;
		count_ctx c = {id, 0, 0};
		evs_store *store;
		long before;
		int64_t v;
		int rc;

		close(fds[0]);
		/* One connection, opened and used before the measurement. */
		store = open_store(1);
		evs_store_current_version(&v, store, id, NULL);
		before = max_rss_kb();
		if (mode == 0) {
			rc = evs_store_foreach(store, id, EVS_NO_VERSION,
			                       count_big, &c, &err);
		} else {
			c.id = id;
			rc = evs_store_read_all(store, from, 0, count_big, &c,
			                        &err);
		}
		result[0] = rc == 0 ? max_rss_kb() - before : -1;
		result[1] = c.events;
		result[2] = c.bytes;
		evs_error_clear(&err);
		evs_store_free(store);
		if (write(fds[1], result, sizeof(result)) != sizeof(result))
			_exit(2);
		_exit(0);
	}
	close(fds[1]);
	ck_assert_int_eq(read(fds[0], result, sizeof(result)),
	                 (ssize_t)sizeof(result));
	close(fds[0]);
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
	ck_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	ck_assert_msg(result[0] >= 0, "the read failed");
	ck_assert_int_eq(result[1], BIG_EVENTS);
	ck_assert_int_eq(result[2], (long)BIG_EVENTS * BIG_BYTES);
	return result[0];
}

static int last_checkpoint(const evs_event *ev, void *payload)
{
	evs_event_checkpoint(payload, ev);
	return 0;
}

START_TEST(reads_of_large_events_hold_a_bounded_number_of_bytes)
{
	evs_store *store = open_store(2);
	evs_position from = EVS_POSITION_START;
	char id[64];
	long grew;

	snprintf(id, sizeof(id), "big-%ld", (long)getpid());
	/* The feed's head before the big events: read_all starts there. */
	ck_assert_int_eq(evs_store_read_all(store, NULL, 0, last_checkpoint,
	                                    &from, NULL), 0);
	store_big_events(store, id);
	evs_store_free(store);

	grew = growth_of_read(id, 0, NULL);
#ifndef __SANITIZE_ADDRESS__
	/* (AddressSanitizer holds freed memory back: no bound there; the
	 * reads still run, and must bring every byte.) */
	ck_assert_msg(grew < MAX_GROWTH_KB,
	              "evs_store_foreach of %d events of 1 MB grew the "
	              "process by %ld kB", BIG_EVENTS, grew);
#endif
	grew = growth_of_read(id, 1, &from);
#ifndef __SANITIZE_ADDRESS__
	ck_assert_msg(grew < MAX_GROWTH_KB,
	              "evs_store_read_all over %d events of 1 MB grew the "
	              "process by %ld kB", BIG_EVENTS, grew);
#endif
	(void)grew;
}
END_TEST

typedef struct {
	int calls;
	int64_t last;
} stop_ctx;

static int stop_at_three(const evs_event *ev, void *payload)
{
	stop_ctx *c = payload;

	c->last = evs_event_version(ev);
	return ++c->calls == 3 ? 7 : 0;
}

/* A callback that stops in the middle of a page of large events (the
 * rest of the page still on its way) leaves a store that works: the
 * connection is given up, not left with a half-read reply. */
START_TEST(stopping_inside_a_page_of_large_events_leaves_the_store_usable)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	stop_ctx c = {0, -1};
	evs_event_list *list = NULL;
	char id[64];

	opts.schema = pg_test_schema();
	opts.pool_size = 1;
	opts.read_buffer_bytes = 1; /* hand out every event as it comes */
	ck_assert_int_eq(evs_store_open_pg(&store, pg_test_dsn(), &opts, &err),
	                 0);
	snprintf(id, sizeof(id), "stop-%ld", (long)getpid());
	store_big_events(store, id);
	ck_assert_int_eq(evs_store_foreach(store, id, EVS_NO_VERSION,
	                                   stop_at_three, &c, &err), 7);
	ck_assert_int_eq(c.calls, 3);
	ck_assert_int_eq(c.last, 2);
	ck_assert_int_eq(evs_store_load(&list, store, id, 110, &err), 0);
	ck_assert_int_eq(evs_event_list_count(list), 9);
	ck_assert_int_eq(evs_event_version(evs_event_list_get(list, 0)), 111);
	evs_event_list_free(list);
	evs_store_free(store);
	evs_error_clear(&err);
}
END_TEST

Suite *reads_suite(void)
{
	Suite *s = suite_create("reads");
	TCase *tc = tcase_create("bounded");

	tcase_set_timeout(tc, 120);
	tcase_add_test(tc, reads_of_large_events_hold_a_bounded_number_of_bytes);
	tcase_add_test(tc,
	               stopping_inside_a_page_of_large_events_leaves_the_store_usable);
	suite_add_tcase(s, tc);
	return s;
}
