/* A program outside the source tree, built only with what
 * `pkg-config --cflags --libs evstore` prints: proves an installed evstore
 * is usable. Opens a memory store, appends one event, loads it back and
 * checks it. Exits 0 on success, 1 (naming the step) on failure. */
#include <stdio.h>
#include <string.h>

#include <evstore/evstore.h>

static int fail(const char *what, int rc, const evs_error *err)
{
	fprintf(stderr, "consumer: %s: %d (%s): %s\n", what, rc,
	        evs_strerror(rc), err->message ? err->message : "-");
	return 1;
}

int main(void)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	evs_event *ev = NULL;
	evs_event_list *list = NULL;
	const evs_event *got;
	int64_t version = EVS_NO_VERSION;
	int rc, status = 1;

	if (strcmp(evs_version(), EVS_VERSION_STRING) != 0) {
		fprintf(stderr, "consumer: library %s, headers %s\n",
		        evs_version(), EVS_VERSION_STRING);
		return 1;
	}
	if ((rc = evs_store_open_memory(&store, &err)) != 0) {
		status = fail("open", rc, &err);
		goto out;
	}
	if ((rc = evs_event_new_json(&ev, "AccountOpened",
	                             "{\"owner\":\"ada\"}", NULL, &err)) != 0) {
		status = fail("event", rc, &err);
		goto out;
	}
	if ((rc = evs_store_append(&version, store, "account-1", EVS_NO_VERSION,
	                           &ev, 1, &err)) != 0) {
		status = fail("append", rc, &err);
		goto out;
	}
	if ((rc = evs_store_load(&list, store, "account-1", EVS_NO_VERSION,
	                         &err)) != 0) {
		status = fail("load", rc, &err);
		goto out;
	}
	if (version != 0 || evs_event_list_count(list) != 1) {
		fprintf(stderr, "consumer: version %lld, %zu events\n",
		        (long long)version, evs_event_list_count(list));
		goto out;
	}
	got = evs_event_list_get(list, 0);
	if (evs_event_version(got) != 0 ||
	    strcmp(evs_event_type(got), "AccountOpened") != 0 ||
	    !evs_uuid_equal(evs_event_id(got), evs_event_id(ev))) {
		fprintf(stderr, "consumer: loaded event differs\n");
		goto out;
	}
	printf("consumer: evstore %s: appended and loaded version %lld\n",
	       evs_version(), (long long)evs_event_version(got));
	status = 0;
out:
	evs_event_list_free(list);
	evs_event_free(ev);
	evs_store_free(store);
	evs_error_clear(&err);
	return status;
}
