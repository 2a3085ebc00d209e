/* projection: a read model kept by a subscription.
 *
 * A table of account balances (table balances in schema SCHEMA_demo) is
 * kept from the "account" category of the store by a transactional
 * subscription: each batch of events and the subscription's checkpoint
 * commit in one transaction, so the table sees every event exactly once,
 * whatever crashes. It first catches up with what is there (the accounts
 * of examples/bank_account, say), then follows live deposits that a
 * second thread makes while it runs, woken by notifications.
 *
 * Usage: projection [--dsn DSN] [--schema NAME] [--deposits N]
 *
 * --dsn defaults to $EVS_PG_DSN (else libpq's PG* variables), --schema to
 * $EVS_PG_SCHEMA (else "evstore"); the schema must hold evstore's tables
 * (`evstore migrate`). Run it again: it goes on from its checkpoint.
 */
#include <libpq-fe.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <evstore/evstore.h>

#define SUBSCRIPTION "demo-balances"

static evs_store *store;
static char live_account[32];

static int64_t now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* The read model's table: "SCHEMA_demo".balances. */
static char table[160];

/* Applies one event to the balances table, on the batch's transaction. */
static int apply(PGconn *conn, const evs_event *ev, evs_error *err)
{
	char sql[512];
	const char *type = evs_event_type(ev);
	json_object *amount = json_object_object_get(evs_event_data(ev),
	                                             "amount");
	long delta = 0;
	char delta_text[32];
	const char *params[2] = {evs_event_aggregate_id(ev), delta_text};
	PGresult *res;
	int ok;

	if (strcmp(type, "Deposited") == 0)
		delta = json_object_get_int64(amount);
	else if (strcmp(type, "Withdrawn") == 0)
		delta = -json_object_get_int64(amount);
	snprintf(delta_text, sizeof(delta_text), "%ld", delta);
	snprintf(sql, sizeof(sql), "INSERT INTO %s AS b (account, balance, "
	         "events) VALUES ($1, $2, 1) ON CONFLICT (account) DO UPDATE "
	         "SET balance = b.balance + $2, events = b.events + 1", table);
	res = PQexecParams(conn, sql, 2, NULL, params, NULL, NULL, 0);
	ok = PQresultStatus(res) == PGRES_COMMAND_OK;
	if (!ok)
		evs_error_set(err, EVS_EDB, PQresultErrorField(res,
		              PG_DIAG_SQLSTATE), "could not update the balance: "
		              "%s", PQresultErrorField(res,
		              PG_DIAG_MESSAGE_PRIMARY));
	PQclear(res);
	return ok ? 0 : EVS_EDB;
}

typedef struct {
	int live;     /* print each event, with its delay */
	long applied;
} progress;

static int handle(evs_sub_batch *batch, void *payload, evs_error *err)
{
	progress *p = payload;
	PGconn *conn = (PGconn *)evs_sub_batch_conn(batch);
	size_t i;
	int rc;

	for (i = 0; i < evs_sub_batch_count(batch); i++) {
		const evs_event *ev = evs_sub_batch_get(batch, i);

		if ((rc = apply(conn, ev, err)) < 0)
			return rc;
		p->applied++;
		if (p->live)
			printf("   %-22s %-10s %s  (%.1f ms after it was "
			       "recorded)\n", evs_event_aggregate_id(ev),
			       evs_event_type(ev), evs_event_data_json(ev),
			       (double)(now_us() - evs_event_recorded_at(ev)) /
			               1000.0);
	}
	return 0;
}

/* The live writer: deposits of 1.00 to one new account. */
static void *deposit_run(void *arg)
{
	int n = *(int *)arg, i;

	for (i = 0; i < n; i++) {
		struct timespec pause = {0, 150 * 1000000L};
		evs_event *ev = NULL;

		nanosleep(&pause, NULL);
		if (evs_event_new_json(&ev, i == 0 ? "AccountOpened"
		                                   : "Deposited",
		                       i == 0 ? "{\"owner\": \"Grace Hopper\"}"
		                              : "{\"amount\": 100}",
		                       NULL, NULL) == 0)
			evs_store_append(NULL, store, live_account,
			                 EVS_ANY_VERSION, &ev, 1, NULL);
		evs_event_free(ev);
	}
	return NULL;
}

static int print_balances(PGconn *conn)
{
	char sql[256];
	PGresult *res;
	int i;

	snprintf(sql, sizeof(sql), "SELECT account, balance, events FROM %s "
	         "ORDER BY account", table);
	res = PQexec(conn, sql);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		fprintf(stderr, "projection: %s", PQerrorMessage(conn));
		PQclear(res);
		return -1;
	}
	printf("   %-22s %10s %7s\n", "account", "balance", "events");
	for (i = 0; i < PQntuples(res); i++) {
		long cents = atol(PQgetvalue(res, i, 1));

		printf("   %-22s %7ld.%02ld %7s\n", PQgetvalue(res, i, 0),
		       cents / 100, labs(cents % 100), PQgetvalue(res, i, 2));
	}
	PQclear(res);
	return 0;
}

/* The read model equals a replay of the same streams. */
static int check(PGconn *conn, const char *schema)
{
	char sql[1024];
	PGresult *res;
	int ok;

	snprintf(sql, sizeof(sql),
	         "SELECT count(*) FROM (SELECT stream_id, sum(CASE type "
	         "WHEN 'Deposited' THEN (data->>'amount')::bigint WHEN "
	         "'Withdrawn' THEN -(data->>'amount')::bigint ELSE 0 END) AS "
	         "balance, count(*) AS events FROM \"%s\".events WHERE "
	         "split_part(stream_id, '-', 1) = 'account' GROUP BY "
	         "stream_id) AS replay FULL JOIN %s b ON "
	         "b.account = replay.stream_id WHERE b.balance IS DISTINCT "
	         "FROM replay.balance OR b.events IS DISTINCT FROM "
	         "replay.events", schema, table);
	res = PQexec(conn, sql);
	ok = PQresultStatus(res) == PGRES_TUPLES_OK &&
	     strcmp(PQgetvalue(res, 0, 0), "0") == 0;
	PQclear(res);
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	evs_error err = EVS_ERROR_INIT;
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	evs_sub_options so = EVS_SUB_OPTIONS_INIT;
	const char *dsn = getenv("EVS_PG_DSN"), *schema;
	evs_sub *sub = NULL;
	PGconn *conn = NULL;
	PGresult *res;
	progress p = {0, 0};
	pthread_t writer;
	char setup[512];
	int deposits = 20, rc = 1, i, n;
	evs_uuid u;

	opts.schema = getenv("EVS_PG_SCHEMA");
	if (opts.schema != NULL && opts.schema[0] == '\0')
		opts.schema = NULL;
	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--dsn") == 0 && i + 1 < argc) {
			dsn = argv[++i];
		} else if (strcmp(argv[i], "--schema") == 0 && i + 1 < argc) {
			opts.schema = argv[++i];
		} else if (strcmp(argv[i], "--deposits") == 0 &&
		           i + 1 < argc && atoi(argv[i + 1]) > 0) {
			deposits = atoi(argv[++i]);
		} else {
			fprintf(stderr, "usage: %s [--dsn DSN] [--schema NAME] "
			        "[--deposits N]\n", argv[0]);
			return strcmp(argv[i], "--help") == 0 ? 0 : 2;
		}
	}
	schema = opts.schema ? opts.schema : "evstore";
	if (strchr(schema, '"') != NULL || strlen(schema) > 58) {
		fprintf(stderr, "projection: use a plainer schema name\n");
		return 2;
	}
	if (dsn == NULL)
		dsn = "";

	/* The read model's table, and its transactions, are the
	 * application's: a plain libpq connection makes the table. */
	conn = PQconnectdb(dsn);
	if (PQstatus(conn) != CONNECTION_OK) {
		fprintf(stderr, "projection: %s", PQerrorMessage(conn));
		goto done;
	}
	snprintf(table, sizeof(table), "\"%s_demo\".balances", schema);
	snprintf(setup, sizeof(setup), "SET client_min_messages = warning;"
	         "CREATE SCHEMA IF NOT EXISTS \"%s_demo\";"
	         "CREATE TABLE IF NOT EXISTS %s (account text PRIMARY KEY, "
	         "balance bigint NOT NULL, events bigint NOT NULL)", schema,
	         table);
	res = PQexec(conn, setup);
	if (PQresultStatus(res) != PGRES_COMMAND_OK) {
		fprintf(stderr, "projection: %s", PQerrorMessage(conn));
		PQclear(res);
		goto done;
	}
	PQclear(res);

	/* Appends notify, and the subscription listens: live events are
	 * handled within a round trip of their commit. */
	opts.notify = 1;
	so.name = SUBSCRIPTION;
	so.category = "account";
	so.mode = EVS_SUB_TRANSACTIONAL;
	so.wake = EVS_WAKE_NOTIFY;
	if (evs_store_open_pg(&store, dsn, &opts, &err) < 0 ||
	    evs_sub_open(&sub, store, &so, &err) < 0)
		goto fail;
	printf("evstore %s: a projection kept by the transactional "
	       "subscription \"%s\"\n", evs_version(), SUBSCRIPTION);
	if (!evs_sub_active(sub)) {
		fprintf(stderr, "projection: another instance holds \"%s\"; "
		        "try again when it stops\n", SUBSCRIPTION);
		goto done;
	}

	/* 1. Catch up with what the store holds. */
	while ((n = evs_sub_poll(sub, 0, handle, &p, &err)) > 0)
		;
	if (n < 0)
		goto fail;
	printf("1. caught up: %ld events applied; the read model:\n",
	       p.applied);
	if (print_balances(conn) < 0)
		goto done;

	/* 2. Follow live deposits made meanwhile by another thread. */
	if (evs_uuid_generate(&u, &err) < 0)
		goto fail;
	snprintf(live_account, sizeof(live_account), "account-live-%02x%02x%02x",
	         u.bytes[13], u.bytes[14], u.bytes[15]);
	printf("2. following: a second thread opens %s and deposits 1.00, "
	       "%d times\n", live_account, deposits - 1);
	p.live = 1;
	p.applied = 0;
	pthread_create(&writer, NULL, deposit_run, &deposits);
	while (p.applied < deposits) {
		struct pollfd w = {evs_sub_fd(sub), POLLIN, 0};

		/* An event loop would do this: wait on the descriptor or the
		 * timeout, then poll. */
		poll(&w, w.fd >= 0 ? 1 : 0, evs_sub_timeout_ms(sub));
		if ((n = evs_sub_poll(sub, 0, handle, &p, &err)) < 0)
			break;
	}
	pthread_join(writer, NULL);
	if (n < 0)
		goto fail;
	printf("3. the read model now:\n");
	if (print_balances(conn) < 0)
		goto done;
	if (check(conn, schema) < 0) {
		fprintf(stderr, "projection: the read model differs from a "
		        "replay of the events\n");
		goto done;
	}
	printf("4. it equals a replay of every account's events\n");
	rc = 0;
	goto done;
fail:
	fprintf(stderr, "projection: %s\n", err.message);
done:
	evs_sub_free(sub);
	evs_store_free(store);
	PQfinish(conn);
	evs_error_clear(&err);
	return rc;
}
