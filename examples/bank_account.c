/* bank_account: a bank account kept as an event-sourced aggregate.
 *
 * An account is opened, money is deposited and withdrawn, and one domain
 * rule holds: no overdraft. Two writers race on one account to show what
 * a version conflict looks like and how the retry helper resolves it;
 * then the account is rebuilt by replaying its events.
 *
 * Usage: bank_account [--dsn DSN] [--schema NAME] [--account ID]
 *        bank_account --memory [--account ID]
 *
 * The events go to PostgreSQL: --dsn, else $EVS_PG_DSN, else libpq's PG*
 * variables; in schema --schema, else $EVS_PG_SCHEMA, else "evstore"
 * (create it first with `evstore migrate`). --memory uses the in-memory
 * store instead, and prints the stream at the end. The account id is
 * new on every run unless --account names one.
 */
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <evstore/evstore.h>

/* ---- the aggregate: state, and how each event changes it ------------- */

typedef struct {
	int opened;
	char owner[64];
	long balance; /* cents */
} account;

static int account_create(void **state_out, const char *id, void *payload,
                          evs_error *err)
{
	(void)id;
	(void)payload;
	*state_out = calloc(1, sizeof(account));
	return *state_out ? 0 : evs_error_set(err, EVS_ENOMEM, NULL,
	                                      "out of memory");
}

static long amount_of(const evs_event *ev)
{
	json_object *v = NULL;

	json_object_object_get_ex(evs_event_data(ev), "amount", &v);
	return (long)json_object_get_int64(v);
}

static int account_apply(void *state, const evs_event *ev, void *payload,
                         evs_error *err)
{
	account *a = state;
	const char *type = evs_event_type(ev);

	(void)payload;
	if (strcmp(type, "AccountOpened") == 0) {
		json_object *owner = NULL;

		json_object_object_get_ex(evs_event_data(ev), "owner", &owner);
		snprintf(a->owner, sizeof(a->owner), "%s",
		         json_object_get_string(owner));
		a->opened = 1;
	} else if (strcmp(type, "Deposited") == 0) {
		a->balance += amount_of(ev);
	} else if (strcmp(type, "Withdrawn") == 0) {
		a->balance -= amount_of(ev);
	} else {
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "unknown account event \"%s\"", type);
	}
	return 0;
}

static void account_free(void *state, void *payload)
{
	(void)payload;
	free(state);
}

/* Snapshots: the state as JSON, and back. Loading then restores the
 * newest snapshot and applies only the events after it. */
static int account_snapshot(json_object **out, const void *state,
                            void *payload, evs_error *err)
{
	const account *a = state;

	(void)payload;
	if ((*out = json_object_new_object()) == NULL)
		return evs_error_set(err, EVS_ENOMEM, NULL, "out of memory");
	json_object_object_add(*out, "opened", json_object_new_boolean(a->opened));
	json_object_object_add(*out, "owner", json_object_new_string(a->owner));
	json_object_object_add(*out, "balance", json_object_new_int64(a->balance));
	return 0;
}

static int account_restore(void **state_out, const char *id,
                           json_object *snap, void *payload, evs_error *err)
{
	json_object *opened, *owner, *balance;
	account *a;
	int rc = account_create(state_out, id, payload, err);

	if (rc != 0)
		return rc;
	a = *state_out;
	if (!json_object_object_get_ex(snap, "opened", &opened) ||
	    !json_object_object_get_ex(snap, "owner", &owner) ||
	    !json_object_object_get_ex(snap, "balance", &balance)) {
		free(a);
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "not an account snapshot");
	}
	a->opened = json_object_get_boolean(opened);
	snprintf(a->owner, sizeof(a->owner), "%s",
	         json_object_get_string(owner));
	a->balance = (long)json_object_get_int64(balance);
	return 0;
}

static const evs_aggregate_type account_type = {
	EVS_AGGREGATE_TYPE_VERSION, "account",
	account_create, account_apply, account_free, NULL,
	1, account_snapshot, account_restore, /* snapshot format 1 */
};

/* Prints the snapshot a load starts from. */
static int print_snapshot(const evs_snapshot_info *info, void *payload)
{
	(void)payload;
	printf("   a snapshot (kind \"%s\", format %u) holds the state at "
	       "version %lld: a load\n   restores it and applies only the "
	       "events after it\n", info->kind, info->format,
	       (long long)info->version);
	return 0;
}

/* ---- commands: decide which events to raise -------------------------- */

/* Positive codes: the command was refused by a domain rule. */
enum { REFUSED_ALREADY_OPEN = 1, REFUSED_NOT_OPEN, REFUSED_OVERDRAFT };

typedef struct {
	const char *kind; /* "open", "deposit", "withdraw" */
	const char *owner;
	long amount;
	int attempts;  /* how many times decide ran */
	long think_us; /* a teller counting the cash: widens the race */
} command;

static int raise_amount(evs_aggregate *agg, const char *type, long amount,
                        evs_error *err)
{
	json_object *data = json_object_new_object();
	int rc;

	json_object_object_add(data, "amount", json_object_new_int64(amount));
	rc = evs_aggregate_raise_new(agg, type, data, NULL, err);
	json_object_put(data);
	return rc;
}

static int decide(evs_aggregate *agg, void *payload, evs_error *err)
{
	command *cmd = payload;
	account *a = evs_aggregate_state(agg);

	/* Counting the cash takes a moment, the first time only: a retry
	 * just re-checks the reloaded balance. */
	if (cmd->attempts++ == 0 && cmd->think_us > 0) {
		struct timespec ts = {0, cmd->think_us * 1000};

		nanosleep(&ts, NULL);
	}
	if (strcmp(cmd->kind, "open") == 0) {
		json_object *data;
		int rc;

		if (a->opened)
			return REFUSED_ALREADY_OPEN;
		data = json_object_new_object();
		json_object_object_add(data, "owner",
		                       json_object_new_string(cmd->owner));
		rc = evs_aggregate_raise_new(agg, "AccountOpened", data, NULL,
		                             err);
		json_object_put(data);
		return rc;
	}
	if (!a->opened)
		return REFUSED_NOT_OPEN;
	if (strcmp(cmd->kind, "deposit") == 0)
		return raise_amount(agg, "Deposited", cmd->amount, err);
	if (a->balance < cmd->amount)
		return REFUSED_OVERDRAFT;
	return raise_amount(agg, "Withdrawn", cmd->amount, err);
}

/* ---- the demo -------------------------------------------------------- */

static evs_repo *repo;
static char ACCOUNT[EVS_ID_MAX + 1];

static int run(const char *kind, const char *owner, long amount,
               long think_us, command *cmd_out)
{
	command cmd = {kind, owner, amount, 0, think_us};
	evs_error err = EVS_ERROR_INIT;
	int rc = evs_repo_update(NULL, repo, ACCOUNT, EVS_REPO_CREATE, 10,
	                         decide, &cmd, &err);

	if (rc < 0)
		fprintf(stderr, "bank_account: %s failed: %s\n", kind,
		        err.message);
	evs_error_clear(&err);
	if (cmd_out != NULL)
		*cmd_out = cmd;
	return rc;
}

typedef struct {
	const char *name;
	int deposits;
	int retries;
	int failures;
} teller;

static pthread_barrier_t start_line;

static void *teller_run(void *arg)
{
	teller *t = arg;
	int i;

	/* Each round, both tellers start a deposit at once, and each takes
	 * a millisecond between loading the account and saving: one saves
	 * first, the other's save conflicts, and the retry helper reloads
	 * the account and saves again. */
	for (i = 0; i < t->deposits; i++) {
		command cmd;

		pthread_barrier_wait(&start_line);
		if (run("deposit", NULL, 1000, 1000, &cmd) != 0)
			t->failures++;
		t->retries += cmd.attempts - 1;
	}
	return NULL;
}

static void print_stream(evs_store *store)
{
	evs_event_list *list = NULL;
	size_t i;

	if (evs_store_load(&list, store, ACCOUNT, EVS_NO_VERSION, NULL) != 0)
		return;
	printf("\n  %-7s  %-14s  %s\n", "version", "type", "data");
	for (i = 0; i < evs_event_list_count(list); i++) {
		const evs_event *ev = evs_event_list_get(list, i);

		printf("  %7lld  %-14s  %s\n", (long long)evs_event_version(ev),
		       evs_event_type(ev), evs_event_data_json(ev));
	}
	evs_event_list_free(list);
}

static int usage(const char *prog, int code)
{
	fprintf(code ? stderr : stdout,
	        "usage: %s [--dsn DSN] [--schema NAME] [--account ID]\n"
	        "       %s --memory [--account ID]\n\n"
	        "Runs the bank-account example on PostgreSQL (DSN: --dsn, "
	        "else $EVS_PG_DSN,\n"
	        "else libpq's PG* variables; schema: --schema, else "
	        "$EVS_PG_SCHEMA, else\n"
	        "evstore; create it with `evstore migrate`), or with --memory "
	        "on an\n"
	        "in-memory store.\n", prog, prog);
	return code;
}

/* A fresh account id, so that runs against the same database do not
 * meet each other's accounts. */
static int new_account_id(evs_error *err)
{
	evs_uuid u;

	if (evs_uuid_generate(&u, err) < 0)
		return -1;
	snprintf(ACCOUNT, sizeof(ACCOUNT), "account-%02x%02x%02x",
	         u.bytes[13], u.bytes[14], u.bytes[15]);
	return 0;
}

int main(int argc, char **argv)
{
	evs_error err = EVS_ERROR_INIT;
	evs_store *store = NULL;
	evs_aggregate *mine = NULL, *theirs = NULL;
	teller tellers[2] = {{"teller A", 10, 0, 0}, {"teller B", 10, 0, 0}};
	evs_pg_options opts = EVS_PG_OPTIONS_INIT;
	const char *dsn = getenv("EVS_PG_DSN"), *account_id = NULL;
	int memory = 0;
	pthread_t th[2];
	account *a;
	int rc = 1, i;

	opts.schema = getenv("EVS_PG_SCHEMA");
	if (opts.schema != NULL && opts.schema[0] == '\0')
		opts.schema = NULL;
	for (i = 1; i < argc; i++) {
		const char *arg = argv[i];
		const char **value = strcmp(arg, "--dsn") == 0      ? &dsn
		                     : strcmp(arg, "--schema") == 0 ? &opts.schema
		                     : strcmp(arg, "--account") == 0
		                             ? &account_id
		                             : NULL;

		if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0)
			return usage(argv[0], 0);
		if (strcmp(arg, "--memory") == 0) {
			memory = 1;
		} else if (value != NULL && i + 1 < argc) {
			*value = argv[++i];
		} else {
			fprintf(stderr, "bank_account: bad argument \"%s\"\n",
			        arg);
			return usage(argv[0], 2);
		}
	}
	if (account_id != NULL)
		snprintf(ACCOUNT, sizeof(ACCOUNT), "%s", account_id);
	else if (new_account_id(&err) < 0)
		goto fail;
	if ((memory ? evs_store_open_memory(&store, &err)
	            : evs_store_open_pg(&store, dsn ? dsn : "", &opts,
	                                &err)) < 0 ||
	    evs_repo_new(&repo, store, &account_type, &err) < 0 ||
	    /* A snapshot after each save that moves the account 10
	     * versions past its last one. */
	    evs_repo_set_snapshots(repo, 10, NULL, NULL, &err) < 0)
		goto fail;
	if (memory)
		printf("evstore %s: bank-account example, in-memory store\n\n",
		       evs_version());
	else
		printf("evstore %s: bank-account example, PostgreSQL schema "
		       "\"%s\"\n\n", evs_version(),
		       opts.schema ? opts.schema : "evstore");

	if ((rc = run("open", "Ada Lovelace", 0, 0, NULL)) != 0 ||
	    (rc = run("deposit", NULL, 5000, 0, NULL)) != 0) {
		if (rc == REFUSED_ALREADY_OPEN)
			fprintf(stderr, "bank_account: %s is already open: "
			        "choose another --account\n", ACCOUNT);
		rc = 1;
		goto done;
	}
	rc = 1;
	printf("1. opened %s for Ada Lovelace and deposited 50.00\n", ACCOUNT);

	if (run("withdraw", NULL, 8000, 0, NULL) == REFUSED_OVERDRAFT)
		printf("2. withdrawing 80.00 is refused: no overdraft "
		       "(balance 50.00)\n");

	/* Two clerks load the same version and both try to save. */
	if (evs_repo_load(&mine, repo, ACCOUNT, &err) < 0 ||
	    evs_repo_load(&theirs, repo, ACCOUNT, &err) < 0 ||
	    raise_amount(mine, "Withdrawn", 2000, &err) < 0 ||
	    raise_amount(theirs, "Withdrawn", 2000, &err) < 0 ||
	    evs_repo_save(repo, mine, &err) < 0)
		goto fail;
	printf("3. two clerks loaded version 1; the first saved a 20.00 "
	       "withdrawal\n");
	if (evs_repo_save(repo, theirs, &err) == EVS_ECONFLICT)
		printf("   the second was refused, nothing lost:\n   %s\n",
		       err.message);
	evs_error_clear(&err);

	/* Two tellers race through the retry helper. */
	pthread_barrier_init(&start_line, NULL, 2);
	for (i = 0; i < 2; i++)
		pthread_create(&th[i], NULL, teller_run, &tellers[i]);
	for (i = 0; i < 2; i++)
		pthread_join(th[i], NULL);
	pthread_barrier_destroy(&start_line);
	printf("4. two tellers deposited 10.00 at the same moment, 10 times "
	       "each:\n   %d saves conflicted; the retry helper reloaded and "
	       "saved them again\n   (%d deposits failed)\n",
	       tellers[0].retries + tellers[1].retries,
	       tellers[0].failures + tellers[1].failures);

	evs_aggregate_free(mine);
	mine = NULL;
	if (evs_repo_load(&mine, repo, ACCOUNT, &err) < 0)
		goto fail;
	a = evs_aggregate_state(mine);
	printf("5. reloaded: owner %s, balance %ld.%02ld, version %lld\n",
	       a->owner, a->balance / 100, a->balance % 100,
	       (long long)evs_aggregate_version(mine));
	if (evs_store_snapshots(store, ACCOUNT, print_snapshot, NULL, &err) < 0)
		goto fail;
	if (memory)
		print_stream(store);
	else
		printf("6. the events stay in PostgreSQL; see them with\n"
		       "   evstore read %s --format table\n", ACCOUNT);
	rc = a->balance == 5000 - 2000 + 20 * 1000 ? 0 : 1;
	if (rc != 0)
		fprintf(stderr, "bank_account: the balance is wrong\n");
	goto done;
fail:
	fprintf(stderr, "bank_account: %s\n", err.message);
done:
	evs_aggregate_free(mine);
	evs_aggregate_free(theirs);
	evs_repo_free(repo);
	evs_store_free(store);
	evs_error_clear(&err);
	return rc;
}
