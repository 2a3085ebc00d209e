/* What evstore forces on its connections, whatever the role, database or
 * PGOPTIONS say; server notices go to the log callback. */
#include <check.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "integration/pg_test.h"

/* ---- helpers ------------------------------------------------------------ */

/* A suffix no other test or run uses: "<pid>-<n>" (Check forks each test,
 * and CK_FORK=no keeps one process: the counter covers both). */
static const char *fresh_tag(void)
{
	static char buf[4][48];
	static unsigned int n;
	char *b = buf[n % 4];

	snprintf(b, sizeof(buf[0]), "%ld-%u", (long)getpid(), ++n);
	return b;
}

static evs_store *open_on(const char *dsn, unsigned int pool, evs_log_cb log,
                          void *payload)
{
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	int rc;

	opts.schema = pg_test_schema();
	opts.pool_size = pool;
	opts.pool_timeout_ms = 30000;
	opts.log = log;
	opts.log_payload = payload;
	rc = evs_store_open_pg(&store, dsn, &opts, &err);
	ck_assert_msg(rc == 0, "open: %s (%s)", err.message, err.sqlstate);
	evs_error_clear(&err);
	return store;
}

static evs_event *make_event(const char *type, const char *data,
                             const char *meta)
{
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = NULL;
	int rc = evs_event_new_json(&ev, type, data, meta, &err);

	ck_assert_msg(rc == 0, "evs_event_new_json: %s", err.message);
	evs_error_clear(&err);
	return ev;
}

/* Appends the batch; fails the test unless the store takes it and ends at
 * version want. */
static void append_ok(evs_store *store, const char *id, int64_t expected,
                      evs_event **evs, size_t n, int64_t want)
{
	evs_error err = EVS_ERROR_INIT;
	int64_t v = -9;
	int rc = evs_store_append(&v, store, id, expected, evs, n, &err);

	ck_assert_msg(rc == 0, "append to \"%s\": %s (%d, SQLSTATE %s)", id,
	              err.message, rc, err.sqlstate);
	ck_assert_int_eq(v, want);
	evs_error_clear(&err);
}

/* A libpq connection that asks for UTF8 itself, whatever the role, the
 * database or the environment (PGOPTIONS, PGCLIENTENCODING) say: the view
 * of any other, well-behaved client. PQfinish() it. */
static PGconn *clean_connect(const char *dsn)
{
	const char *keys[] = {"dbname", "client_encoding", "options", NULL};
	const char *vals[] = {dsn, "UTF8", "-c client_min_messages=warning",
	                      NULL};
	PGconn *conn = PQconnectdbParams(keys, vals, 1);
	const char *enc;

	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "connect: %s",
	              PQerrorMessage(conn));
	pg_test_exec(conn, "SET client_encoding = 'UTF8'");
	enc = PQparameterStatus(conn, "client_encoding");
	ck_assert_str_eq(enc != NULL ? enc : "(none)", "UTF8");
	return conn;
}

static PGresult *query(PGconn *conn, const char *sql, int n,
                       const char *const *params)
{
	PGresult *res = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);

	ck_assert_msg(PQresultStatus(res) == PGRES_TUPLES_OK, "%s: %s", sql,
	              PQerrorMessage(conn));
	return res;
}

/* The test database is hostile where it should be: a plain connection
 * under this process's environment gets these settings. Without this, a
 * change to run.sh (or a PGOPTIONS libpq did not parse) would leave the
 * tests below proving nothing. */
static void expect_defaults(const char *dsn, const char *encoding,
                            const char *isolation, const char *array_nulls)
{
	PGconn *conn = PQconnectdb(dsn);
	PGresult *res;

	ck_assert_msg(PQstatus(conn) == CONNECTION_OK, "connect: %s",
	              PQerrorMessage(conn));
	res = query(conn, "SELECT current_setting('client_encoding'), "
	            "current_setting('default_transaction_isolation'), "
	            "current_setting('array_nulls')", 0, NULL);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), encoding);
	ck_assert_str_eq(PQgetvalue(res, 0, 1), isolation);
	ck_assert_str_eq(PQgetvalue(res, 0, 2), array_nulls);
	PQclear(res);
	PQfinish(conn);
}

/* ---- A. UTF-8 and conflicts, from every hostile source ------------------- */

typedef struct {
	const char *dsn;       /* the store's */
	const char *clean_dsn; /* the same database, for a clean look */
} hostile;

static const char *need_env(const char *name)
{
	const char *v = getenv(name);

	ck_assert_msg(v != NULL && v[0] != '\0', "%s is not set (run.sh sets "
	              "it)", name);
	return v;
}

/* ALTER ROLE ... SET client_encoding, default_transaction_isolation,
 * array_nulls (run.sh). */
static hostile hostile_role(void)
{
	hostile h = {need_env("EVS_TEST_PG_HOSTILE_DSN"), pg_test_dsn()};

	expect_defaults(h.dsn, "LATIN1", "repeatable read", "off");
	return h;
}

/* ALTER DATABASE ... SET the same, with SERIALIZABLE (run.sh). */
static hostile hostile_database(void)
{
	const char *dsn = need_env("EVS_TEST_PG_HOSTILE_DB_DSN");
	hostile h = {dsn, dsn};

	expect_defaults(h.dsn, "LATIN1", "serializable", "off");
	return h;
}

/* The same again in the environment: libpq sends PGOPTIONS in the
 * startup packet (a backslash keeps the space inside the value). */
static hostile hostile_pgoptions(void)
{
	hostile h = {pg_test_dsn(), pg_test_dsn()};

	ck_assert_int_eq(setenv("PGOPTIONS", "-c client_encoding=LATIN1 "
	                        "-c default_transaction_isolation="
	                        "repeatable\\ read -c array_nulls=off", 1), 0);
	expect_defaults(h.dsn, "LATIN1", "repeatable read", "off");
	return h;
}

/* libpq's own default for its client_encoding parameter. */
static hostile hostile_pgclientencoding(void)
{
	hostile h = {pg_test_dsn(), pg_test_dsn()};

	ck_assert_int_eq(setenv("PGCLIENTENCODING", "LATIN1", 1), 0);
	expect_defaults(h.dsn, "LATIN1", "read committed", "on");
	return h;
}

/* Two events of type `type`, data {"k": k}, metadata none and
 * {"m": "ü"} (the metadata array then holds a NULL: array_nulls), to
 * stream base-<unique>. The store reads back exactly these bytes, and so
 * does a clean UTF8 connection: nothing was converted on the way in. */
static void round_trip(const char *dsn, const char *clean_dsn,
                       const char *base, const char *type, const char *k)
{
	static const char *const metas[2] = {NULL, "{\"m\": \"ü\"}"};
	const char *tag = fresh_tag();
	char id[128], data[64], suffix[64], sql[512];
	const char *params[4];
	evs_event *evs[2];
	evs_event_list *list = NULL;
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = open_on(dsn, 2, NULL, NULL);
	PGresult *res;
	PGconn *conn;
	int i, rc;

	snprintf(id, sizeof(id), "%s-%s", base, tag);
	snprintf(suffix, sizeof(suffix), "-%s", tag);
	snprintf(data, sizeof(data), "{\"k\": \"%s\"}", k);
	for (i = 0; i < 2; i++)
		evs[i] = make_event(type, data, metas[i]);
	append_ok(store, id, EVS_NO_VERSION, evs, 2, 1);
	for (i = 0; i < 2; i++)
		evs_event_free(evs[i]);

	rc = evs_store_load(&list, store, id, EVS_NO_VERSION, &err);
	ck_assert_msg(rc == 0, "load: %s", err.message);
	ck_assert_uint_eq(evs_event_list_count(list), 2);
	for (i = 0; i < 2; i++) {
		const evs_event *ev = evs_event_list_get(list, (size_t)i);
		const char *meta = evs_event_metadata_json(ev);

		ck_assert_int_eq(evs_event_version(ev), i);
		ck_assert_str_eq(evs_event_aggregate_id(ev), id);
		ck_assert_str_eq(evs_event_type(ev), type);
		ck_assert_str_eq(evs_event_data_json(ev), data);
		if (metas[i] == NULL)
			ck_assert_ptr_null(meta);
		else
			ck_assert_str_eq(meta != NULL ? meta : "(none)",
			                 metas[i]);
	}
	evs_event_list_free(list);
	evs_store_free(store);

	/* Found by the ASCII suffix, so that a mangled id still shows. */
	conn = clean_connect(clean_dsn);
	snprintf(sql, sizeof(sql),
	         "SELECT version, stream_id, type, data->>'k', "
	         "metadata->>'m', stream_id = $2 AND type = $3 AND "
	         "data->>'k' = $4 FROM \"%s\".events "
	         "WHERE stream_id LIKE '%%' || $1 ORDER BY version",
	         pg_test_schema());
	params[0] = suffix;
	params[1] = id;
	params[2] = type;
	params[3] = k;
	res = query(conn, sql, 4, params);
	ck_assert_int_eq(PQntuples(res), 2);
	for (i = 0; i < 2; i++) {
		ck_assert_int_eq(atoi(PQgetvalue(res, i, 0)), i);
		ck_assert_str_eq(PQgetvalue(res, i, 1), id);
		ck_assert_str_eq(PQgetvalue(res, i, 2), type);
		ck_assert_str_eq(PQgetvalue(res, i, 3), k);
		if (i == 0)
			ck_assert_int_eq(PQgetisnull(res, i, 4), 1);
		else
			ck_assert_str_eq(PQgetvalue(res, i, 4), "ü");
		ck_assert_str_eq(PQgetvalue(res, i, 5), "t");
	}
	PQclear(res);
	snprintf(sql, sizeof(sql),
	         "SELECT version FROM \"%s\".streams WHERE stream_id = $1",
	         pg_test_schema());
	res = query(conn, sql, 1, params + 1);
	ck_assert_int_eq(PQntuples(res), 1);
	ck_assert_str_eq(PQgetvalue(res, 0, 0), "1");
	PQclear(res);
	PQfinish(conn);
}

static void utf8_round_trip(hostile h)
{
	round_trip(h.dsn, h.clean_dsn, "łódź", "café", "żółw");
}

#define RACERS 8
#define ROUNDS 5
#define WARM_UP INT64_MIN

typedef struct {
	evs_store *store;
	const char *id;
	pthread_barrier_t *go;
	int64_t expected; /* WARM_UP: only read the version */
	int rc;
	int64_t version, err_expected, err_actual;
	char sqlstate[6];
	char message[200];
} racer;

static void *race_one(void *arg)
{
	racer *r = arg;
	evs_error err = EVS_ERROR_INIT;
	evs_event *ev = NULL;
	int warm = r->expected == WARM_UP;

	r->rc = warm ? 0 : evs_event_new_json(&ev, "raced", "{\"n\": 1}",
	                                      NULL, &err);
	pthread_barrier_wait(r->go);
	r->version = -9;
	if (r->rc == 0)
		r->rc = warm ? evs_store_current_version(&r->version, r->store,
		                                         r->id, &err)
		             : evs_store_append(&r->version, r->store, r->id,
		                                r->expected, &ev, 1, &err);
	r->err_expected = err.expected_version;
	r->err_actual = err.actual_version;
	memcpy(r->sqlstate, err.sqlstate, sizeof(r->sqlstate));
	snprintf(r->message, sizeof(r->message), "%s",
	         err.message != NULL ? err.message : "");
	evs_event_free(ev);
	evs_error_clear(&err);
	return NULL;
}

/* All RACERS threads start together; returns when all are done. */
static void run_round(racer *rs, evs_store *store, const char *id,
                      int64_t expected)
{
	pthread_barrier_t go;
	pthread_t th[RACERS];
	int i;

	ck_assert_int_eq(pthread_barrier_init(&go, NULL, RACERS), 0);
	for (i = 0; i < RACERS; i++) {
		rs[i].store = store;
		rs[i].id = id;
		rs[i].go = &go;
		rs[i].expected = expected;
		ck_assert_int_eq(pthread_create(&th[i], NULL, race_one, &rs[i]),
		                 0);
	}
	for (i = 0; i < RACERS; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&go);
}

/* RACERS threads append one event each at the same expected version,
 * ROUNDS times: one winner per round, and every loser a conflict that
 * names the winner's version. A writer that waited for the stream's row
 * lock must see the winner's commit (READ COMMITTED), not fail with a
 * serialization error (40001, under REPEATABLE READ or SERIALIZABLE). */
static void race(hostile h)
{
	evs_store *store = open_on(h.dsn, RACERS, NULL, NULL);
	racer rs[RACERS];
	char id[64], first_bad[400] = "";
	evs_event *ev = make_event("raced", "{\"n\": 0}", NULL);
	int64_t expected = 0, v = -9;
	int round, i, bad = 0, losers = 0, bad_rounds = 0;

	snprintf(id, sizeof(id), "race-%s", fresh_tag());
	append_ok(store, id, EVS_NO_VERSION, &ev, 1, 0);
	evs_event_free(ev);
	/* Every connection of the pool made before the first round. */
	memset(rs, 0, sizeof(rs));
	run_round(rs, store, id, WARM_UP);
	for (i = 0; i < RACERS; i++)
		ck_assert_msg(rs[i].rc == 0 && rs[i].version == 0,
		              "warm-up: %d %s", rs[i].rc, rs[i].message);

	for (round = 0; round < ROUNDS; round++) {
		int winners = 0, wrong_version = 0;

		memset(rs, 0, sizeof(rs));
		run_round(rs, store, id, expected);
		for (i = 0; i < RACERS; i++) {
			racer *r = &rs[i];

			if (r->rc == 0) {
				winners++;
				wrong_version |= r->version != expected + 1;
				continue;
			}
			losers++;
			if (r->rc == EVS_ECONFLICT &&
			    r->err_expected == expected &&
			    r->err_actual == expected + 1)
				continue;
			if (bad++ == 0)
				snprintf(first_bad, sizeof(first_bad),
				         "round %d: %s (%d), SQLSTATE \"%s\", "
				         "expected %lld, actual %lld: %s",
				         round, evs_strerror(r->rc), r->rc,
				         r->sqlstate,
				         (long long)r->err_expected,
				         (long long)r->err_actual, r->message);
		}
		if (winners != 1 || wrong_version)
			bad_rounds++;
		/* Go on from wherever the stream is, to count every round. */
		ck_assert_int_eq(evs_store_current_version(&expected, store, id,
		                                           NULL), 0);
	}
	ck_assert_msg(bad == 0 && bad_rounds == 0,
	              "%d of %d losers were not a conflict at the winner's "
	              "version (first: %s); %d of %d rounds without exactly "
	              "one winner at the next version", bad, losers,
	              first_bad, bad_rounds, ROUNDS);
	ck_assert_int_eq(evs_store_current_version(&v, store, id, NULL), 0);
	ck_assert_int_eq(v, ROUNDS);
	evs_store_free(store);
}

START_TEST(hostile_role_keeps_utf8)
{
	utf8_round_trip(hostile_role());
}
END_TEST

START_TEST(hostile_role_races_end_in_conflicts)
{
	race(hostile_role());
}
END_TEST

START_TEST(hostile_database_keeps_utf8)
{
	utf8_round_trip(hostile_database());
}
END_TEST

START_TEST(hostile_database_races_end_in_conflicts)
{
	race(hostile_database());
}
END_TEST

START_TEST(pgoptions_keep_utf8)
{
	utf8_round_trip(hostile_pgoptions());
	unsetenv("PGOPTIONS"); /* for CK_FORK=no */
}
END_TEST

START_TEST(pgoptions_races_end_in_conflicts)
{
	race(hostile_pgoptions());
	unsetenv("PGOPTIONS"); /* for CK_FORK=no */
}
END_TEST

START_TEST(pgclientencoding_keeps_utf8)
{
	utf8_round_trip(hostile_pgclientencoding());
	unsetenv("PGCLIENTENCODING"); /* for CK_FORK=no */
}
END_TEST

START_TEST(pgclientencoding_races_end_in_conflicts)
{
	race(hostile_pgclientencoding());
	unsetenv("PGCLIENTENCODING"); /* for CK_FORK=no */
}
END_TEST

/* ---- B. a LATIN1 database ------------------------------------------------ */

START_TEST(latin1_database_keeps_cafe)
{
	const char *dsn = need_env("EVS_TEST_PG_LATIN1_DSN");

	round_trip(dsn, dsn, "café", "café", "café");
}
END_TEST

/* Refused with the server's SQLSTATE 22P05 (untranslatable_character);
 * nothing stored, nothing converted to something else. */
static void expect_refused(evs_store *store, const char *id,
                           evs_event **evs, size_t n)
{
	evs_error err = EVS_ERROR_INIT;
	int64_t v = -9;
	int rc = evs_store_append(&v, store, id, EVS_NO_VERSION, evs, n, &err);

	ck_assert_msg(rc == EVS_EDB, "append to \"%s\": %d (%s) %s", id, rc,
	              evs_strerror(rc), err.message ? err.message : "");
	ck_assert_str_eq(err.sqlstate, "22P05");
	evs_error_clear(&err);
}

START_TEST(latin1_database_refuses_what_it_cannot_hold)
{
	const char *dsn = need_env("EVS_TEST_PG_LATIN1_DSN");
	evs_store *store = open_on(dsn, 2, NULL, NULL);
	evs_error err = EVS_ERROR_INIT;
	PGconn *conn = clean_connect(dsn);
	char id[128], sql[256], before[64];
	evs_event *evs[2];
	int64_t v = -9;
	int rc;

	/* The tests of this runner take turns: nothing else writes here
	 * meanwhile. */
	snprintf(sql, sizeof(sql),
	         "SELECT (SELECT count(*) FROM \"%s\".events) || '/' || "
	         "(SELECT count(*) FROM \"%s\".streams)",
	         pg_test_schema(), pg_test_schema());
	snprintf(before, sizeof(before), "%s", pg_test_exec(conn, sql));

	/* An id LATIN1 has no letters for. */
	evs[0] = make_event("café", "{\"k\": \"café\"}", NULL);
	expect_refused(store, "łódź-1", evs, 1);
	/* A batch whose second event holds one, as its type or in its data:
	 * the whole batch is refused. */
	snprintf(id, sizeof(id), "café-%s", fresh_tag());
	evs[1] = make_event("łódź", "{\"k\": \"café\"}", NULL);
	expect_refused(store, id, evs, 2);
	evs_event_free(evs[1]);
	evs[1] = make_event("café", "{\"k\": \"żółw\"}", "{\"m\": \"ü\"}");
	expect_refused(store, id, evs, 2);
	evs_event_free(evs[0]);
	evs_event_free(evs[1]);

	rc = evs_store_current_version(&v, store, id, &err);
	ck_assert_msg(rc == EVS_ENOTFOUND, "current version of \"%s\": %d %s",
	              id, rc, err.message ? err.message : "");
	ck_assert_int_eq(v, EVS_NO_VERSION);
	/* The contract says EVS_ENOTFOUND for a stream with no events, but
	 * the server refuses an id this database cannot spell as a
	 * parameter too (22P05), as it did the append. Either way, no
	 * version. */
	rc = evs_store_current_version(&v, store, "łódź-1", &err);
	ck_assert_msg(rc == EVS_ENOTFOUND ||
	              (rc == EVS_EDB && strcmp(err.sqlstate, "22P05") == 0),
	              "current version of \"łódź-1\": %d (%s) SQLSTATE %s: %s",
	              rc, evs_strerror(rc), err.sqlstate,
	              err.message ? err.message : "");
	evs_error_clear(&err);
	evs_store_free(store);

	/* Nothing at all got in, not even a look-alike (ł as l, say). */
	ck_assert_str_eq(pg_test_exec(conn, sql), before);
	PQfinish(conn);
}
END_TEST

/* ---- C. notices and warnings --------------------------------------------- */

/* Names of this runner's audit trigger and function, and the prefix of the
 * streams it reports: set in the tcase's unchecked setup, so the same in
 * every forked test and in the teardown. */
static char audit_name[64], audit_prefix[64];

static void audit_names(void)
{
	snprintf(audit_name, sizeof(audit_name), "evs_settings_audit_%ld",
	         (long)getpid());
	snprintf(audit_prefix, sizeof(audit_prefix), "notice-%ld-",
	         (long)getpid());
}

static void audit_sql(char *sql, size_t size, int create)
{
	const char *s = pg_test_schema();

	if (!create) {
		snprintf(sql, size,
		         "DROP TRIGGER IF EXISTS %s ON \"%s\".events;"
		         "DROP FUNCTION IF EXISTS \"%s\".%s()",
		         audit_name, s, s, audit_name);
		return;
	}
	/* Only this test's streams: later tests share the schema. */
	snprintf(sql, size,
	         "CREATE OR REPLACE FUNCTION \"%s\".%s() RETURNS trigger "
	         "LANGUAGE plpgsql AS $f$ BEGIN "
	         "IF starts_with(NEW.stream_id, '%s') THEN "
	         "RAISE NOTICE 'audit: %% %%', NEW.stream_id, NEW.version; "
	         "RAISE WARNING 'audit warning: %% %%', NEW.stream_id, "
	         "NEW.version; "
	         "END IF; RETURN NULL; END $f$;"
	         "DROP TRIGGER IF EXISTS %s ON \"%s\".events;"
	         "CREATE TRIGGER %s AFTER INSERT ON \"%s\".events FOR EACH ROW "
	         "EXECUTE FUNCTION \"%s\".%s()",
	         s, audit_name, audit_prefix, audit_name, s, audit_name, s, s,
	         audit_name);
}

static PGconn *audit_on(void)
{
	PGconn *owner = pg_test_connect();
	char sql[1024];

	audit_sql(sql, sizeof(sql), 1);
	pg_test_exec(owner, sql);
	return owner;
}

static void audit_off(PGconn *owner)
{
	char sql[512];

	audit_sql(sql, sizeof(sql), 0);
	pg_test_exec(owner, sql);
	PQfinish(owner);
}

/* Unchecked teardown (in the runner, after the tcase): drops the trigger
 * even when a test failed or was killed before its own cleanup. Its own
 * connection, opened and closed here: nothing crosses a fork. */
static void audit_teardown(void)
{
	PGconn *conn = PQconnectdb(pg_test_dsn());
	char sql[512];

	if (PQstatus(conn) == CONNECTION_OK) {
		audit_sql(sql, sizeof(sql), 0);
		PQclear(PQexec(conn, "SET client_min_messages = warning"));
		PQclear(PQexec(conn, sql));
	}
	PQfinish(conn);
}

#define MAX_LOGS 32

typedef struct {
	pthread_mutex_t lock;
	int n;
	struct {
		int level;
		char sqlstate[8];
		char message[256];
	} at[MAX_LOGS];
} log_book;

static void record(int level, const char *sqlstate, const char *message,
                   void *payload)
{
	log_book *b = payload;

	pthread_mutex_lock(&b->lock);
	if (b->n < MAX_LOGS) {
		b->at[b->n].level = level;
		snprintf(b->at[b->n].sqlstate, sizeof(b->at[0].sqlstate), "%s",
		         sqlstate != NULL ? sqlstate : "(null)");
		snprintf(b->at[b->n].message, sizeof(b->at[0].message), "%s",
		         message != NULL ? message : "(null)");
	}
	b->n++;
	pthread_mutex_unlock(&b->lock);
}

/* How many messages the book holds at this level, SQLSTATE and text. */
static int logged(log_book *b, int level, const char *sqlstate,
                  const char *message)
{
	int i, n = 0;

	pthread_mutex_lock(&b->lock);
	for (i = 0; i < b->n && i < MAX_LOGS; i++)
		n += b->at[i].level == level &&
		     strcmp(b->at[i].sqlstate, sqlstate) == 0 &&
		     strcmp(b->at[i].message, message) == 0;
	pthread_mutex_unlock(&b->lock);
	return n;
}

/* Appends n events at expected, to end at version want. */
static void append_plain(evs_store *store, const char *id, int64_t expected,
                         size_t n, int64_t want)
{
	evs_event *evs[4];
	size_t i;

	for (i = 0; i < n; i++)
		evs[i] = make_event("audited", "{\"n\": 1}", NULL);
	append_ok(store, id, expected, evs, n, want);
	for (i = 0; i < n; i++)
		evs_event_free(evs[i]);
}

/* One NOTICE ("00000") and one WARNING ("01000") per event, for versions
 * first..last of id, and nothing else. */
static void expect_audited(log_book *b, const char *id, int first, int last)
{
	char text[160];
	int v, i;

	for (v = first; v <= last; v++) {
		snprintf(text, sizeof(text), "audit: %s %d", id, v);
		ck_assert_msg(logged(b, EVS_LOG_NOTICE, "00000", text) == 1,
		              "NOTICE \"%s\" logged %d times", text,
		              logged(b, EVS_LOG_NOTICE, "00000", text));
		snprintf(text, sizeof(text), "audit warning: %s %d", id, v);
		ck_assert_msg(logged(b, EVS_LOG_WARNING, "01000", text) == 1,
		              "WARNING \"%s\" logged %d times", text,
		              logged(b, EVS_LOG_WARNING, "01000", text));
	}
	for (i = 0; i < b->n && i < MAX_LOGS; i++)
		ck_assert_msg(strlen(b->at[i].sqlstate) == 5,
		              "SQLSTATE \"%s\"", b->at[i].sqlstate);
	ck_assert_int_eq(b->n, 2 * (last - first + 1));
}

START_TEST(notices_and_warnings_reach_the_log_callback)
{
	log_book book = {.lock = PTHREAD_MUTEX_INITIALIZER};
	PGconn *owner = audit_on();
	evs_store *store = open_on(pg_test_dsn(), 2, record, &book);
	char id[128];

	snprintf(id, sizeof(id), "%scb-%s", audit_prefix, fresh_tag());
	/* A new stream: one call of append_events (two events). */
	append_plain(store, id, EVS_NO_VERSION, 2, 1);
	/* At an exact version: the one-statement INSERT (the owner may). */
	append_plain(store, id, 1, 1, 2);
	expect_audited(&book, id, 0, 2);
	evs_store_free(store);
	audit_off(owner);
}
END_TEST

START_TEST(without_a_callback_nothing_is_printed)
{
	log_book book = {.lock = PTHREAD_MUTEX_INITIALIZER};
	PGconn *owner = audit_on();
	evs_store *store = open_on(pg_test_dsn(), 2, NULL, NULL);
	FILE *sink = tmpfile();
	char id[128], got[256];
	struct stat st;
	int saved_out, saved_err;
	size_t n;

	snprintf(id, sizeof(id), "%squiet-%s", audit_prefix, fresh_tag());
	ck_assert_ptr_nonnull(sink);
	fflush(stdout);
	fflush(stderr);
	saved_out = dup(STDOUT_FILENO);
	saved_err = dup(STDERR_FILENO);
	ck_assert_int_ge(saved_out, 0);
	ck_assert_int_ge(saved_err, 0);
	ck_assert_int_ge(dup2(fileno(sink), STDOUT_FILENO), 0);
	ck_assert_int_ge(dup2(fileno(sink), STDERR_FILENO), 0);
	/* (A failure in here would be reported through Check's own
	 * channel, not fds 1 and 2.) Both append paths, and a new pool
	 * connection made on the way. */
	append_plain(store, id, EVS_NO_VERSION, 2, 1);
	append_plain(store, id, 1, 1, 2);
	fflush(stdout);
	fflush(stderr);
	ck_assert_int_ge(dup2(saved_out, STDOUT_FILENO), 0);
	ck_assert_int_ge(dup2(saved_err, STDERR_FILENO), 0);
	close(saved_out);
	close(saved_err);
	evs_store_free(store);

	ck_assert_int_eq(fstat(fileno(sink), &st), 0);
	rewind(sink);
	n = fread(got, 1, sizeof(got) - 1, sink);
	got[n] = '\0';
	ck_assert_msg(st.st_size == 0, "%lld bytes printed: %s",
	              (long long)st.st_size, got);
	fclose(sink);

	/* The trigger was there and spoke: a store with a callback hears
	 * the next event. */
	store = open_on(pg_test_dsn(), 1, record, &book);
	append_plain(store, id, 2, 1, 3);
	expect_audited(&book, id, 3, 3);
	evs_store_free(store);
	audit_off(owner);
}
END_TEST

/* ---- suite -------------------------------------------------------------- */

START_TEST(databases_exist_on_the_throwaway_server)
{
	ck_abort_msg("run.sh could not create the hostile and LATIN1 "
	             "databases on the throwaway server");
}
END_TEST

Suite *settings_suite(void)
{
	Suite *s = suite_create("settings");
	int have_dbs = getenv("EVS_TEST_PG_HOSTILE_DB_DSN") != NULL &&
	               getenv("EVS_TEST_PG_LATIN1_DSN") != NULL;
	TCase *tc;

	tc = tcase_create("forced");
	tcase_add_test(tc, hostile_role_keeps_utf8);
	tcase_add_test(tc, hostile_role_races_end_in_conflicts);
	tcase_add_test(tc, pgoptions_keep_utf8);
	tcase_add_test(tc, pgoptions_races_end_in_conflicts);
	tcase_add_test(tc, pgclientencoding_keeps_utf8);
	tcase_add_test(tc, pgclientencoding_races_end_in_conflicts);
	if (have_dbs) {
		tcase_add_test(tc, hostile_database_keeps_utf8);
		tcase_add_test(tc, hostile_database_races_end_in_conflicts);
		tcase_add_test(tc, latin1_database_keeps_cafe);
		tcase_add_test(tc, latin1_database_refuses_what_it_cannot_hold);
	} else if (getenv("EVS_TEST_PG_RESTART") != NULL) {
		/* scripts/with-pg.sh's own server always lets run.sh. */
		tcase_add_test(tc, databases_exist_on_the_throwaway_server);
	} else {
		fprintf(stderr, "settings: EVS_TEST_PG_HOSTILE_DB_DSN/"
		        "EVS_TEST_PG_LATIN1_DSN are not set (the server "
		        "refused to create databases): the hostile-database "
		        "and LATIN1 tests do not run\n");
	}
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);

	tc = tcase_create("notices");
	tcase_add_unchecked_fixture(tc, audit_names, audit_teardown);
	tcase_add_test(tc, notices_and_warnings_reach_the_log_callback);
	tcase_add_test(tc, without_a_callback_nothing_is_printed);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	return s;
}
