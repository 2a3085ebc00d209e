/* tools/migrate.h: the migration runner and the status queries of the
 * evstore tool. The only part of the tool that talks to libpq directly;
 * everything else goes through the public evstore API. */
#ifndef EVSTORE_TOOLS_MIGRATE_H
#define EVSTORE_TOOLS_MIGRATE_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <evstore/pg.h>

/* One embedded sql/ file (tools/embed-sql.sh writes the table). */
typedef struct mig_file {
	int version;      /* 1, 2, ...: the NNNN of NNNN_name.sql */
	const char *name; /* "0001_create_schema" */
	const char *sql;  /* the file, as psql would read it */
} mig_file;

extern const mig_file mig_files[];
extern const size_t mig_count;

/* Where a schema stands. */
typedef struct mig_state {
	int schema_exists; /* the schema itself */
	int version;       /* highest applied migration; 0: none */
} mig_state;

/* What `evstore status` shows beyond the version. */
typedef struct mig_counts {
	int64_t streams;
	int64_t events;
	/* recorded_at of the newest event, -1 when there are none; test
	 * events, not this: a restore may store times before 1970. */
	int64_t newest_us;
} mig_counts;

/* Each function below prints its own one-line "evstore: ..." message on
 * failure and returns an exit code (0 on success, 1 on error). */

/* Applies the pending migrations under an advisory lock (or, with
 * dry_run, prints their SQL to out). Reports "applied NNNN_name" lines
 * on out. */
int mig_migrate(const char *dsn, const char *schema, int dry_run, FILE *out);

/* The schema's state, and (when counts is not NULL and the schema has
 * evstore tables) the number of streams and events. */
int mig_status(const char *dsn, const char *schema, mig_state *state,
               mig_counts *counts);

/* Rewrites one migration as the SQL `evstore migrate` sends: psql
 * meta-command lines dropped, :"schema" and :'schema' replaced by
 * @p schema quoted as an identifier and as a literal. *out is yours
 * (free()). Returns 0, or -1 after printing why (a psql feature the
 * runner cannot follow). */
int mig_render(char **out, const mig_file *file, const char *schema);

#endif
