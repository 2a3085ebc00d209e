/* tools/migrate.c: applies the embedded sql/ migrations the way psql
 * would, and answers `evstore status`. The migration files are psql
 * scripts: this runner drops their meta-command lines (\if, \set ...),
 * puts the schema where they say :"schema" or :'schema', and sends each
 * file in one PQexec: the file's own BEGIN and COMMIT make it one
 * transaction. A session advisory lock, keyed on the schema name, keeps
 * two runs from applying the same file at once. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>

#include "cli.h"
#include "migrate.h"

/* ---- rendering a psql script as plain SQL -------------------------------- */

/* A literal that means the same whatever standard_conforming_strings
 * says: E'...' (backslashes doubled) when there is a backslash. */
static char *quote_literal(const char *s)
{
	cli_buf b = {NULL, 0, 0};

	if (strchr(s, '\\') != NULL)
		cli_buf_addc(&b, 'E');
	cli_buf_addc(&b, '\'');
	for (; *s; s++) {
		if (*s == '\'' || *s == '\\')
			cli_buf_addc(&b, *s);
		cli_buf_addc(&b, *s);
	}
	cli_buf_addc(&b, '\'');
	return b.p;
}

static int ident_start(unsigned char c)
{
	return isalpha(c) || c == '_' || c >= 0x80;
}

static int ident_char(unsigned char c)
{
	return ident_start(c) || isdigit(c) || c == '$';
}

typedef struct render {
	const mig_file *file;
	const char *s;
	size_t i, n;
	int line;
	int if_depth;
	cli_buf out;
} render;

static int render_fail(render *r, const char *what)
{
	cli_fail(EXIT_ERR, "migration %s, line %d: %s", r->file->name, r->line,
	         what);
	return -1;
}

/* Copies up to and including the byte at @p end (exclusive), counting
 * lines. */
static void copy_to(render *r, size_t end)
{
	size_t k;

	for (k = r->i; k < end; k++)
		if (r->s[k] == '\n')
			r->line++;
	cli_buf_add(&r->out, r->s + r->i, end - r->i);
	r->i = end;
}

/* A line whose first non-blank byte is a backslash: a psql
 * meta-command. The runner follows only the ones the migrations use to
 * default the schema and stop on errors; the whole line is dropped. */
static int meta_line(render *r, size_t at)
{
	size_t end = at, k;
	char name[16];
	size_t len = 0;

	while (end < r->n && r->s[end] != '\n')
		end++;
	for (k = at + 1; k < end && isalpha((unsigned char)r->s[k]) &&
	                 len + 1 < sizeof(name);
	     k++)
		name[len++] = r->s[k];
	name[len] = '\0';
	if (strcmp(name, "if") == 0) {
		r->if_depth++;
	} else if (strcmp(name, "elif") == 0 || strcmp(name, "else") == 0) {
		if (r->if_depth == 0)
			return render_fail(r, "\\else or \\elif without \\if");
	} else if (strcmp(name, "endif") == 0) {
		if (r->if_depth == 0)
			return render_fail(r, "\\endif without \\if");
		r->if_depth--;
	} else if (strcmp(name, "set") != 0 && strcmp(name, "unset") != 0) {
		cli_buf msg = {NULL, 0, 0};
		int rc;

		cli_buf_printf(&msg, "psql command \\%s is not one that "
		               "evstore migrate can run (only \\if, \\else, "
		               "\\endif and \\set)", name);
		rc = render_fail(r, msg.p);
		free(msg.p);
		return rc;
	}
	r->i = end < r->n ? end + 1 : end;
	r->line++;
	return 0;
}

/* Copies a quoted run that starts at r->i: '...', E'...' or "...". */
static int quoted(render *r, char q, int backslashes)
{
	size_t k = r->i + 1;

	for (; k < r->n; k++) {
		if (backslashes && r->s[k] == '\\' && k + 1 < r->n) {
			k++;
		} else if (r->s[k] == q) {
			if (k + 1 < r->n && r->s[k + 1] == q) {
				k++;
				continue;
			}
			copy_to(r, k + 1);
			return 0;
		}
	}
	return render_fail(r, "unterminated quoted string");
}

/* $tag$ ... $tag$; returns 1 when r->i does not start a dollar quote. */
static int dollar_quoted(render *r)
{
	size_t k = r->i + 1, tag_len;
	const char *end;

	if (r->i > 0 && ident_char((unsigned char)r->s[r->i - 1]))
		return 1;
	if (k < r->n && ident_start((unsigned char)r->s[k]))
		while (k < r->n && ident_char((unsigned char)r->s[k]) &&
		       r->s[k] != '$')
			k++;
	if (k >= r->n || r->s[k] != '$')
		return 1;
	tag_len = k + 1 - r->i;
	end = r->s + k + 1;
	for (;;) {
		end = strchr(end, '$');
		if (end == NULL)
			return render_fail(r, "unterminated dollar-quoted "
			                      "string");
		if (strncmp(end, r->s + r->i, tag_len) == 0)
			break;
		end++;
	}
	copy_to(r, (size_t)(end - r->s) + tag_len);
	return 0;
}

/* :"var", :'var' or :var at r->i (a ':'). */
static int variable(render *r, const char *ident, const char *literal,
                    const char *raw)
{
	const char *s = r->s + r->i + 1;
	char q = *s;
	size_t len = 0;
	const char *name;

	if (q == ':') { /* a cast */
		copy_to(r, r->i + 2);
		return 0;
	}
	if (q == '"' || q == '\'') {
		name = s + 1;
		while (name[len] != '\0' && name[len] != q && name[len] != '\n')
			len++;
		if (name[len] != q)
			return render_fail(r, "unterminated psql variable");
		if (len != 6 || strncmp(name, "schema", 6) != 0) {
			cli_buf msg = {NULL, 0, 0};
			int rc;

			cli_buf_printf(&msg, "psql variable :%c%.*s%c is not one "
			               "that evstore migrate sets (only "
			               "schema)", q, (int)len, name, q);
			rc = render_fail(r, msg.p);
			free(msg.p);
			return rc;
		}
		cli_buf_adds(&r->out, q == '"' ? ident : literal);
		r->i += len + 3;
		return 0;
	}
	/* :name is interpolated as is, and only when the variable is set:
	 * arr[a:b] stays what it is. */
	while (ident_char((unsigned char)s[len]) && s[len] != '$')
		len++;
	if (len == 6 && strncmp(s, "schema", 6) == 0) {
		cli_buf_adds(&r->out, raw);
		r->i += len + 1;
		return 0;
	}
	copy_to(r, r->i + 1);
	return 0;
}

int mig_render(char **out, const mig_file *file, const char *schema)
{
	render r = {file, file->sql, 0, strlen(file->sql), 1, 0,
	            {NULL, 0, 0}};
	char *ident = cli_quote_ident(schema), *literal = quote_literal(schema);
	int line_start = 1, rc = 0;

	*out = NULL;
	while (r.i < r.n && rc == 0) {
		char c = r.s[r.i], next = r.s[r.i + 1];

		if (line_start) {
			size_t k = r.i;

			while (k < r.n && (r.s[k] == ' ' || r.s[k] == '\t'))
				k++;
			line_start = 0;
			if (k < r.n && r.s[k] == '\\') {
				rc = meta_line(&r, k);
				line_start = 1;
				continue;
			}
		}
		if (c == '\n') {
			copy_to(&r, r.i + 1);
			line_start = 1;
			continue;
		}
		if (c == ' ' || c == '\t' || c == '\r') {
			copy_to(&r, r.i + 1);
			continue;
		}
		if (c == '-' && next == '-') {
			const char *nl = strchr(r.s + r.i, '\n');

			copy_to(&r, nl ? (size_t)(nl - r.s) : r.n);
			continue;
		}
		if (c == '/' && next == '*') {
			size_t k = r.i + 2;
			int depth = 1;

			while (k < r.n && depth > 0) {
				if (r.s[k] == '/' && r.s[k + 1] == '*') {
					depth++;
					k++;
				} else if (r.s[k] == '*' && r.s[k + 1] == '/') {
					depth--;
					k++;
				}
				k++;
			}
			if (depth > 0)
				rc = render_fail(&r, "unterminated comment");
			else
				copy_to(&r, k);
			continue;
		}
		/* Anything else is SQL: it must not sit inside \if, whose
		 * branches this runner does not choose between. */
		if (r.if_depth > 0) {
			rc = render_fail(&r, "SQL inside \\if ... \\endif, which "
			                     "evstore migrate cannot follow");
			break;
		}
		if (c == '\\') {
			rc = render_fail(&r, "psql meta-command inside a line, "
			                     "which evstore migrate cannot run");
		} else if (c == '\'') {
			int e = r.i > 0 && (r.s[r.i - 1] == 'E' ||
			                    r.s[r.i - 1] == 'e') &&
			        (r.i < 2 ||
			         !ident_char((unsigned char)r.s[r.i - 2]));

			rc = quoted(&r, '\'', e);
		} else if (c == '"') {
			rc = quoted(&r, '"', 0);
		} else if (c == '$') {
			rc = dollar_quoted(&r);
			if (rc == 1) {
				copy_to(&r, r.i + 1);
				rc = 0;
			}
		} else if (c == ':') {
			rc = variable(&r, ident, literal, schema);
		} else {
			copy_to(&r, r.i + 1);
		}
	}
	if (rc == 0 && r.if_depth > 0)
		rc = render_fail(&r, "\\if without \\endif");
	free(ident);
	free(literal);
	if (rc != 0) {
		free(r.out.p);
		return -1;
	}
	*out = r.out.p ? r.out.p : cli_xstrdup("");
	return 0;
}

/* ---- the database side ----------------------------------------------- */

static void quiet_notices(void *arg, const char *message)
{
	(void)arg;
	(void)message;
}

/* The first line of a libpq message, without its newline. */
static const char *first_line(const char *msg, char *buf, size_t size)
{
	size_t n = 0;

	if (msg == NULL)
		msg = "";
	while (msg[n] != '\0' && msg[n] != '\n' && n + 1 < size) {
		buf[n] = msg[n];
		n++;
	}
	buf[n] = '\0';
	return buf;
}

static int pq_fail(PGconn *conn, const PGresult *res, const char *what)
{
	const char *msg = NULL;
	char line[512];

	if (res != NULL)
		msg = PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY);
	if (msg == NULL)
		msg = PQerrorMessage(conn);
	return cli_fail(EXIT_ERR, "%s: %s", what,
	                first_line(msg, line, sizeof(line)));
}

static PGconn *connect_db(const char *dsn)
{
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *vals[] = {dsn, "evstore", NULL};
	PGconn *conn = PQconnectdbParams(keys, vals, 1);

	if (conn == NULL) {
		cli_fail(EXIT_ERR, "out of memory");
		return NULL;
	}
	if (PQstatus(conn) != CONNECTION_OK) {
		pq_fail(conn, NULL, "could not connect to PostgreSQL");
		PQfinish(conn);
		return NULL;
	}
	PQsetNoticeProcessor(conn, quiet_notices, NULL);
	return conn;
}

/* Runs a one-row query; on success *res is yours. */
static int query(PGresult **res, PGconn *conn, const char *sql, int nparams,
                 const char *const *params, const char *what)
{
	*res = PQexecParams(conn, sql, nparams, NULL, params, NULL, NULL, 0);
	if (PQresultStatus(*res) != PGRES_TUPLES_OK || PQntuples(*res) != 1) {
		int rc = pq_fail(conn, *res, what);

		PQclear(*res);
		*res = NULL;
		return rc;
	}
	return 0;
}

static int read_state(mig_state *st, PGconn *conn, const char *schema)
{
	const char *params[1] = {schema};
	PGresult *res;
	char *sql, *ident;
	int has_table, rc;

	rc = query(&res, conn,
	           "SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_namespace "
	           "WHERE nspname = $1), to_regclass(format('%I.%I', $1::text, "
	           "'schema_version')) IS NOT NULL",
	           1, params, "could not read the schema");
	if (rc != 0)
		return rc;
	st->schema_exists = PQgetvalue(res, 0, 0)[0] == 't';
	has_table = PQgetvalue(res, 0, 1)[0] == 't';
	PQclear(res);
	st->version = 0;
	if (!has_table)
		return 0;
	ident = cli_quote_ident(schema);
	sql = cli_xmalloc(strlen(ident) + 80);
	sprintf(sql, "SELECT coalesce(max(version), 0) FROM %s.schema_version",
	        ident);
	rc = query(&res, conn, sql, 0, NULL, "could not read the schema "
	                                     "version");
	free(sql);
	free(ident);
	if (rc != 0)
		return rc;
	st->version = atoi(PQgetvalue(res, 0, 0));
	PQclear(res);
	return 0;
}

/* The advisory-lock key of a schema: FNV-1a of a fixed prefix and the
 * name, so each schema has its own lock and other users of advisory
 * locks are unlikely to meet ours. */
static long long lock_key(const char *schema)
{
	const char *prefix = "evstore migrate:";
	unsigned long long h = 14695981039346656037ull;
	const char *p;

	for (p = prefix; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	for (p = schema; *p; p++)
		h = (h ^ (unsigned char)*p) * 1099511628211ull;
	return (long long)(h & 0x7fffffffffffffffull);
}

static int advisory(PGconn *conn, const char *fn, const char *schema,
                    int *got)
{
	char key[24], sql[64];
	const char *params[1] = {key};
	PGresult *res;
	int rc;

	snprintf(key, sizeof(key), "%lld", lock_key(schema));
	snprintf(sql, sizeof(sql), "SELECT %s($1::int8)::text", fn);
	rc = query(&res, conn, sql, 1, params, "could not take the migration "
	                                       "lock");
	if (rc != 0)
		return rc;
	if (got != NULL)
		*got = strcmp(PQgetvalue(res, 0, 0), "true") == 0;
	PQclear(res);
	return 0;
}

static int newer_than_known(const char *schema, int version)
{
	return cli_fail(EXIT_ERR,
	                "schema \"%s\" is at version %d, newer than the %zu "
	                "this evstore (%s) knows: upgrade evstore", schema,
	                version, mig_count, evs_version());
}

static int apply_one(PGconn *conn, const mig_file *f, const char *sql,
                     const char *schema)
{
	PGresult *res = PQexec(conn, sql);
	ExecStatusType st = PQresultStatus(res);
	mig_state after;
	char what[128];
	int rc = 0;

	if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
		snprintf(what, sizeof(what), "migration %s failed", f->name);
		rc = pq_fail(conn, res, what);
	}
	PQclear(res);
	/* The file stopped in its own transaction: end it. */
	if (PQtransactionStatus(conn) != PQTRANS_IDLE) {
		PQclear(PQexec(conn, "ROLLBACK"));
		if (rc == 0)
			rc = cli_fail(EXIT_ERR, "migration %s left its "
			              "transaction open: rolled back", f->name);
	}
	if (rc != 0)
		return rc;
	if ((rc = read_state(&after, conn, schema)) != 0)
		return rc;
	if (after.version != f->version)
		return cli_fail(EXIT_ERR, "migration %s ran, but schema \"%s\" "
		                "is now at version %d, not %d", f->name, schema,
		                after.version, f->version);
	return 0;
}

int mig_migrate(const char *dsn, const char *schema, int dry_run, FILE *out)
{
	PGconn *conn = connect_db(dsn);
	mig_state st;
	size_t i;
	int rc, got = 1, applied = 0;

	if (conn == NULL)
		return EXIT_ERR;
	if (!dry_run) {
		rc = advisory(conn, "pg_try_advisory_lock", schema, &got);
		if (rc == 0 && !got) {
			fprintf(stderr, "evstore: waiting for another evstore "
			        "migrate on schema \"%s\"\n", schema);
			rc = advisory(conn, "pg_advisory_lock", schema, NULL);
		}
		if (rc != 0)
			goto done;
	}
	if ((rc = read_state(&st, conn, schema)) != 0)
		goto done;
	if ((size_t)st.version > mig_count) {
		rc = newer_than_known(schema, st.version);
		goto done;
	}
	for (i = (size_t)st.version; i < mig_count; i++) {
		char *sql;

		if (mig_render(&sql, &mig_files[i], schema) < 0) {
			rc = EXIT_ERR;
			goto done;
		}
		if (dry_run) {
			size_t len = strlen(sql);

			fprintf(out, "-- evstore migrate: %s, schema \"%s\"\n",
			        mig_files[i].name, schema);
			fputs(sql, out);
			if (len > 0 && sql[len - 1] != '\n')
				fputc('\n', out);
		} else {
			rc = apply_one(conn, &mig_files[i], sql, schema);
			if (rc == 0) {
				fprintf(out, "applied %s\n", mig_files[i].name);
				fflush(out);
			}
		}
		free(sql);
		if (rc != 0)
			goto done;
		applied++;
	}
	if (applied == 0)
		fprintf(out, "%sschema \"%s\" is up to date (version %d)\n",
		        dry_run ? "-- " : "", schema, st.version);
	else if (!dry_run)
		fprintf(out, "schema \"%s\" is at version %zu\n", schema,
		        mig_count);
	rc = 0;
done:
	/* Closing the session releases the lock too; unlock anyway, so a
	 * pooled connection would not keep it. */
	if (!dry_run && PQstatus(conn) == CONNECTION_OK)
		PQclear(PQexec(conn, "SELECT pg_advisory_unlock_all()"));
	PQfinish(conn);
	return rc;
}

int mig_status(const char *dsn, const char *schema, mig_state *st,
               mig_counts *counts)
{
	PGconn *conn = connect_db(dsn);
	PGresult *res;
	char *ident, *sql;
	int rc;

	if (conn == NULL)
		return EXIT_ERR;
	if ((rc = read_state(st, conn, schema)) != 0 || counts == NULL ||
	    st->version < 1) {
		PQfinish(conn);
		return rc;
	}
	ident = cli_quote_ident(schema);
	sql = cli_xmalloc(2 * strlen(ident) + 200);
	sprintf(sql,
	        "SELECT (SELECT count(*) FROM %s.streams), count(*), "
	        "coalesce((extract(epoch FROM max(recorded_at)) * 1000000)"
	        "::int8, -1) FROM %s.events",
	        ident, ident);
	rc = query(&res, conn, sql, 0, NULL, "could not count the events");
	free(sql);
	free(ident);
	if (rc == 0) {
		counts->streams = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		counts->events = strtoll(PQgetvalue(res, 0, 1), NULL, 10);
		counts->newest_us = strtoll(PQgetvalue(res, 0, 2), NULL, 10);
		PQclear(res);
	}
	PQfinish(conn);
	return rc;
}
