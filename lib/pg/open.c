/* Opening a PostgreSQL store: options, one connection that checks the
 * schema and the role's privileges and then joins the pool, and freeing. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "pg_int.h"
/* evs__pg_migrations[]: the sql/ files, generated at build time
 * (tools/embed-sql.sh --names), with a static assertion that the last is
 * EVS_PG_SCHEMA_VERSION. */
#include "pg_migrations.h"

#define DEFAULT_SCHEMA "evstore"
#define DEFAULT_POOL_SIZE 4
#define DEFAULT_POOL_TIMEOUT_MS 5000
#define DEFAULT_CONNECT_TIMEOUT_MS 10000
#define DEFAULT_CALL_TIMEOUT_MS 60000
#define DEFAULT_READ_BUFFER_BYTES ((size_t)1 << 20)
#define DEFAULT_GROUP_MAX_APPENDS 64
#define DEFAULT_GROUP_MAX_BYTES ((size_t)1 << 20)
#define DEFAULT_GROUP_LOCK_WAIT_MS 1000

/* How much of an evs_pg_options each version has. */
#define OPTIONS_V1_SIZE offsetof(evs_pg_options, connect_timeout_ms)
#define OPTIONS_V2_SIZE offsetof(evs_pg_options, group_commit_off)

static void pg_free(evs_backend *be)
{
	pg_backend *pb = (pg_backend *)be;
	size_t i;

	if (pb == NULL)
		return;
	for (i = 0; pb->slots != NULL && i < pb->pool_size; i++)
		evs__pg_drop(pb->slots[i].conn);
	free(pb->slots);
	evs__pg_group_free(pb);
	pthread_mutex_destroy(&pb->lock);
	pthread_cond_destroy(&pb->freed);
	free(pb->conninfo);
	free(pb->schema);
	free(pb->session_sql);
	free(pb->prepare_sql);
	free(pb);
}

static int check_schema(pg_backend *pb, PGconn *conn, evs_error *err)
{
	char *sql = evs__pg_schema_version_sql(pb->schema);
	const long want = EVS__PG_MIGRATION_COUNT;
	const char *state;
	PGresult *res;
	long have;
	int rc;

	if (sql == NULL)
		return evs__error_nomem(err);
	rc = evs__pg_exec_conn(&res, conn, NULL, sql, 0, NULL,
	                       evs__pg_deadline(pb->call_timeout_ms),
	                       "could not read the schema version", err);
	free(sql);
	if (rc < 0)
		return rc;
	state = PQresultErrorField(res, PG_DIAG_SQLSTATE);
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		if (state && (strcmp(state, "3F000") == 0 ||
		              strcmp(state, "42P01") == 0))
			rc = evs_error_set(err, EVS_ESCHEMA, state,
			                   "schema \"%s\" holds no evstore tables: "
			                   "apply sql/%s (psql -f) or run "
			                   "evstore migrate", pb->schema,
			                   evs__pg_migrations[0]);
		else
			rc = evs__pg_error(err, conn, res,
			                   "could not read the schema version");
		goto done;
	}
	have = PQgetisnull(res, 0, 0) ? 0
	                              : strtol(PQgetvalue(res, 0, 0), NULL, 10);
	if (have < 0)
		have = 0;
	if (have < want)
		rc = evs_error_set(err, EVS_ESCHEMA, NULL,
		                   "schema \"%s\" is at version %ld, this library "
		                   "needs %ld: apply sql/%s (psql -f) or run "
		                   "evstore migrate", pb->schema, have, want,
		                   evs__pg_migrations[have]);
	else if (have > want)
		rc = evs_error_set(err, EVS_ESCHEMA, NULL,
		                   "schema \"%s\" is at version %ld, newer than "
		                   "the %ld this library (evstore %s) knows: "
		                   "upgrade the library", pb->schema, have, want,
		                   EVS_VERSION_STRING);
done:
	PQclear(res);
	return rc;
}

/* Whether the role holds the optional grants for one-statement appends:
 * *yes 0 when not, or when the probe itself was refused (then the
 * function path, which needs only README's required grants). Returns 0,
 * or a code when the connection failed. */
static int probe_privileges(int *yes, pg_backend *pb, PGconn *conn,
                            evs_error *err)
{
	const char *params[1] = {pb->schema};
	PGresult *res;
	int rc = evs__pg_exec_conn(&res, conn, NULL,
	                           evs__pg_privilege_probe_sql, 1, params,
	                           evs__pg_deadline(pb->call_timeout_ms),
	                           "could not read the role's privileges", err);

	*yes = 0;
	if (rc < 0)
		return rc;
	*yes = PQresultStatus(res) == PGRES_TUPLES_OK && PQntuples(res) == 1 &&
	       strcmp(PQgetvalue(res, 0, 0), "t") == 0;
	PQclear(res);
	return 0;
}

static int check_options(evs_pg_options *o, const evs_pg_options *given,
                         evs_error *err)
{
	evs_pg_options defaults = EVS_PG_OPTIONS_INIT;

	*o = defaults;
	if (given != NULL) {
		if (given->version == 0 ||
		    given->version > EVS_PG_OPTIONS_VERSION)
			return evs_error_set(err, EVS_EUNSUPPORTED, NULL,
			                     "evs_pg_options version %u is not "
			                     "supported (this library knows 1 to "
			                     "%d)", given->version,
			                     EVS_PG_OPTIONS_VERSION);
		/* A caller built against an older header passed a smaller
		 * struct: read only what it has. */
		memcpy(o, given, given->version == 1   ? OPTIONS_V1_SIZE
		                 : given->version == 2 ? OPTIONS_V2_SIZE
		                                       : sizeof(*o));
		o->version = EVS_PG_OPTIONS_VERSION;
	}
	if (o->schema == NULL)
		o->schema = DEFAULT_SCHEMA;
	if (o->schema[0] == '\0' || strlen(o->schema) > 63 ||
	    !evs__utf8_valid(o->schema, strlen(o->schema)))
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->schema must be 1 to 63 bytes of "
		                     "UTF-8");
	if (o->pool_size == 0)
		o->pool_size = DEFAULT_POOL_SIZE;
	if (o->pool_size > MAX_POOL_SIZE)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->pool_size %u is more than %d",
		                     o->pool_size, MAX_POOL_SIZE);
	if (o->pool_timeout_ms == 0)
		o->pool_timeout_ms = DEFAULT_POOL_TIMEOUT_MS;
	if (o->connect_timeout_ms == 0)
		o->connect_timeout_ms = DEFAULT_CONNECT_TIMEOUT_MS;
	if (o->call_timeout_ms == 0)
		o->call_timeout_ms = DEFAULT_CALL_TIMEOUT_MS;
	if (o->read_buffer_bytes == 0)
		o->read_buffer_bytes = DEFAULT_READ_BUFFER_BYTES;
	if (o->group_max_appends == 0)
		o->group_max_appends = DEFAULT_GROUP_MAX_APPENDS;
	if (o->group_max_bytes == 0)
		o->group_max_bytes = DEFAULT_GROUP_MAX_BYTES;
	if (o->group_in_flight == 0)
		o->group_in_flight = o->pool_size;
	if (o->group_in_flight > MAX_POOL_SIZE)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "opts->group_in_flight %u is more than %d",
		                     o->group_in_flight, MAX_POOL_SIZE);
	if (o->group_lock_wait_ms == 0)
		o->group_lock_wait_ms = DEFAULT_GROUP_LOCK_WAIT_MS;
	return 0;
}

/* The schema's NOTIFY channel: "evstore_" and the schema's name when that
 * is plain (lower-case letters, digits, '_'), else "evstore_" and a hash
 * of it; either way a valid identifier to quote in LISTEN. */
static void channel_name(char *out, size_t size, const char *schema)
{
	const char *p;

	for (p = schema; *p; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
		      *p == '_'))
			break;
	if (*p == '\0' && strlen(schema) <= 50) {
		snprintf(out, size, "evstore_%s", schema);
		return;
	}
	snprintf(out, size, "evstore_%016llx",
	         (unsigned long long)evs__hash_str(schema));
}

/* A conninfo that libpq cannot parse is a configuration error, whatever
 * the network does. */
static int check_conninfo(const char *conninfo, evs_error *err)
{
	char *why = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &why);
	int rc = 0;

	if (opts == NULL) {
		size_t n = why ? strlen(why) : 0;

		if (n > 0 && why[n - 1] == '\n')
			why[n - 1] = '\0';
		rc = why ? evs_error_set(err, EVS_ECONFIG, NULL,
		                         "conninfo is not valid: %s", why)
		         : evs__error_nomem(err);
	}
	PQconninfoFree(opts);
	PQfreemem(why);
	return rc;
}

int evs_store_open_pg(evs_store **out, const char *conninfo,
                      const evs_pg_options *opts, evs_error *err)
{
	pg_backend *pb = NULL;
	pthread_condattr_t attr;
	evs_pg_options o;
	PGconn *conn = NULL;
	PGresult *res = NULL;
	int rc, yes;

	evs__error_reset(err);
	if (out == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "out must not be NULL");
	*out = NULL;
	if (conninfo == NULL)
		conninfo = "";
	if ((rc = check_options(&o, opts, err)) < 0 ||
	    (rc = check_conninfo(conninfo, err)) < 0)
		return rc;
	pb = calloc(1, sizeof(*pb));
	if (pb == NULL)
		return evs__error_nomem(err);
	pthread_mutex_init(&pb->lock, NULL);
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&pb->freed, &attr);
	pthread_condattr_destroy(&attr);
	pb->base.version = EVS_BACKEND_VERSION;
	pb->base.append = evs__pg_append;
	pb->base.read = evs__pg_read;
	pb->base.read_backward = evs__pg_read_backward;
	pb->base.head = evs__pg_head;
	pb->base.free = pg_free;
	pb->base.read_all = evs__pg_read_all;
	pb->base.append_ext = evs__pg_append_ext;
	pb->base.append_many = evs__pg_append_many;
	pb->base.delete_stream = evs__pg_delete;
	pb->base.undelete_stream = evs__pg_undelete;
	pb->base.save_snapshot = evs__pg_save_snapshot;
	pb->base.load_snapshot = evs__pg_load_snapshot;
	pb->base.list_snapshots = evs__pg_list_snapshots;
	pb->base.truncate = evs__pg_truncate;
	pb->base.set_retention = evs__pg_set_retention;
	pb->base.scavenge = evs__pg_scavenge;
	pb->pool_size = o.pool_size;
	pb->pool_timeout_ms = o.pool_timeout_ms;
	pb->connect_timeout_ms = o.connect_timeout_ms;
	pb->call_timeout_ms = o.call_timeout_ms;
	pb->read_buffer_bytes = o.read_buffer_bytes;
	pb->log = o.log;
	pb->log_payload = o.log_payload;
	pb->conninfo = strdup(conninfo);
	pb->schema = strdup(o.schema);
	pb->session_sql = evs__pg_session_sql(o.statement_timeout_ms,
	                                      o.lock_timeout_ms);
	channel_name(pb->channel, sizeof(pb->channel), o.schema);
	pb->prepare_sql = evs__pg_prepare_sql(o.schema,
	                                      o.notify ? pb->channel : NULL);
	pb->slots = calloc(o.pool_size, sizeof(*pb->slots));
	pb->group_max_appends = o.group_max_appends;
	pb->group_max_bytes = o.group_max_bytes;
	pb->group_lock_wait_ms = o.group_lock_wait_ms;
	pb->group_in_flight = o.group_in_flight;
	if (pb->conninfo == NULL || pb->schema == NULL ||
	    pb->session_sql == NULL || pb->prepare_sql == NULL ||
	    pb->slots == NULL ||
	    (!o.group_commit_off &&
	     evs__pg_group_init(pb, 1) < 0)) {
		pg_free(&pb->base);
		return evs__error_nomem(err);
	}
	/* One connection now: a wrong address or schema fails here, not at
	 * the first append. The schema is checked before the statements
	 * that name its tables are prepared; then the connection joins the
	 * pool. */
	if ((rc = evs__pg_connect(&conn, pb, 0, err)) < 0 ||
	    (rc = check_schema(pb, conn, err)) < 0 ||
	    (rc = probe_privileges(&yes, pb, conn, err)) < 0)
		goto fail;
	atomic_init(&pb->one_statement, yes);
	rc = evs__pg_exec_conn(&res, conn, NULL, pb->prepare_sql, 0, NULL,
	                       evs__pg_deadline(pb->call_timeout_ms),
	                       "could not prepare evstore's statements", err);
	if (rc == 0 && PQresultStatus(res) != PGRES_COMMAND_OK)
		rc = evs__pg_error(err, conn, res,
		                   "could not prepare evstore's statements");
	PQclear(res);
	if (rc < 0)
		goto fail;
	pb->slots[0].conn = conn;
	pb->slots[0].released_ms = evs__pg_coarse_ms();
	if ((rc = evs_store_new(out, &pb->base, err)) < 0)
		return rc;
	evs__store_set_sub_ops(*out, &evs__pg_sub_ops);
	return 0;
fail:
	evs__pg_drop(conn);
	pg_free(&pb->base);
	return rc;
}
