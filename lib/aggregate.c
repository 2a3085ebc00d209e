/* Aggregates: an application state rebuilt from events, plus the queue of
 * events raised since the last save. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "aggregate_int.h"

struct evs_aggregate {
	const evs_aggregate_type *type;
	char *id;
	void *state;
	int64_t version;
	int64_t snapshot_version; /* of the snapshot it was restored from or
	                           * last saved (EVS_NO_VERSION: none) */
	evs_event **pending;
	size_t n_pending;
	size_t cap_pending;
};

const char *evs__aggregate_type_name(const evs_aggregate_type *type)
{
	return type->name != NULL ? type->name : "(unnamed)";
}

int evs__aggregate_type_check(const evs_aggregate_type *type,
                              evs_error *err)
{
	const char *missing = NULL;
	const char *name;

	if (type == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "aggregate type must not be NULL");
	/* The name precedes the version fence: every version has it. Read
	 * no slot before the version says the struct has it. */
	name = evs__aggregate_type_name(type);
	if (type->version == 0 || type->version > EVS_AGGREGATE_TYPE_VERSION)
		return evs_error_set(err, EVS_EUNSUPPORTED, NULL,
		                     "aggregate type \"%s\" has version %u, "
		                     "but this library supports 1 to %d",
		                     name, type->version,
		                     EVS_AGGREGATE_TYPE_VERSION);
	if (type->create == NULL)
		missing = "create";
	else if (type->apply == NULL)
		missing = "apply";
	else if (type->free == NULL)
		missing = "free";
	if (missing != NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "aggregate type \"%s\" lacks the required "
		                     "\"%s\" slot", name, missing);
	if (type->version >= 2 &&
	    ((type->snapshot_format != 0) != (type->snapshot != NULL) ||
	     (type->snapshot_format != 0) != (type->restore != NULL)))
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "aggregate type \"%s\" has some of "
		                     "snapshot_format, snapshot and restore "
		                     "but not all three", name);
	return 0;
}

int evs__aggregate_type_snapshots(const evs_aggregate_type *type)
{
	return type->version >= 2 && type->snapshot_format != 0;
}

/*
 * Runs the type's apply. The callback always gets an error record, even
 * when our caller passed none, and a failure it did not describe still
 * gets a message.
 */
static int apply_event(evs_aggregate *agg, const evs_event *event,
                       evs_error *err)
{
	evs_error local = EVS_ERROR_INIT;
	evs_error *e = err != NULL ? err : &local;
	int rc;

	rc = agg->type->apply(agg->state, event, agg->type->payload, e);
	if (rc != 0 && e->code == 0)
		evs_error_set(e, rc, NULL,
		              "could not apply event \"%s\" to aggregate "
		              "\"%s\"", evs_event_type(event), agg->id);
	else if (rc == 0 && e->code != 0)
		evs__error_reset(e);
	evs_error_clear(&local);
	return rc;
}

int evs_aggregate_new(evs_aggregate **out, const evs_aggregate_type *type,
                      const char *aggregate_id, evs_error *err)
{
	evs_error local = EVS_ERROR_INIT;
	evs_error *e = err != NULL ? err : &local;
	evs_aggregate *agg = NULL;
	int rc;

	evs__error_reset(err);
	if (out == NULL) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "out must not be NULL");
		goto done;
	}
	*out = NULL;
	if ((rc = evs__aggregate_type_check(type, err)) != 0)
		goto done;
	if ((rc = evs__check_name("aggregate_id", aggregate_id, err)) != 0)
		goto done;
	agg = calloc(1, sizeof(*agg));
	if (agg == NULL || (agg->id = strdup(aggregate_id)) == NULL) {
		rc = evs__error_nomem(err);
		goto done;
	}
	agg->type = type;
	agg->version = EVS_NO_VERSION;
	agg->snapshot_version = EVS_NO_VERSION;
	rc = type->create(&agg->state, aggregate_id, type->payload, e);
	if (rc != 0) {
		if (e->code == 0)
			evs_error_set(e, rc, NULL,
			              "could not create the state of aggregate "
			              "\"%s\"", aggregate_id);
		goto done;
	}
	if (e->code != 0)
		evs__error_reset(e);
	*out = agg;
	agg = NULL;
done:
	/* Only reached with agg set when there is no state: free() is not
	 * called for a state that create() never made. */
	if (agg != NULL) {
		free(agg->id);
		free(agg);
	}
	evs_error_clear(&local);
	return rc;
}

static void free_pending(evs_aggregate *agg)
{
	size_t i;

	for (i = 0; i < agg->n_pending; i++)
		evs_event_free(agg->pending[i]);
	free(agg->pending);
	agg->pending = NULL;
	agg->n_pending = 0;
	agg->cap_pending = 0;
}

void evs_aggregate_free(evs_aggregate *agg)
{
	if (agg == NULL)
		return;
	free_pending(agg);
	agg->type->free(agg->state, agg->type->payload);
	free(agg->id);
	free(agg);
}

const char *evs_aggregate_id(const evs_aggregate *agg)
{
	return agg != NULL ? agg->id : NULL;
}

int64_t evs_aggregate_version(const evs_aggregate *agg)
{
	return agg != NULL ? agg->version : EVS_NO_VERSION;
}

void *evs_aggregate_state(const evs_aggregate *agg)
{
	return agg != NULL ? agg->state : NULL;
}

const evs_aggregate_type *evs_aggregate_type_of(const evs_aggregate *agg)
{
	return agg != NULL ? agg->type : NULL;
}

size_t evs_aggregate_pending_count(const evs_aggregate *agg)
{
	return agg != NULL ? agg->n_pending : 0;
}

evs_event *const *evs_aggregate_pending(const evs_aggregate *agg)
{
	return agg != NULL ? agg->pending : NULL;
}

/* Room for one more queued event, made before apply runs: an applied
 * event cannot be taken back, so queueing it afterwards must not fail. */
static int reserve_one(evs_aggregate *agg, evs_error *err)
{
	evs_event **grown;
	size_t cap;

	if (agg->n_pending < agg->cap_pending)
		return 0;
	cap = agg->cap_pending != 0 ? agg->cap_pending * 2 : 4;
	if (cap < agg->cap_pending || cap > SIZE_MAX / sizeof(*grown))
		return evs__error_nomem(err);
	grown = realloc(agg->pending, cap * sizeof(*grown));
	if (grown == NULL)
		return evs__error_nomem(err);
	agg->pending = grown;
	agg->cap_pending = cap;
	return 0;
}

/* The store refuses a batch with two equal ids. Catch that here, before
 * the event is applied, or the aggregate could never be saved. */
static int check_not_queued(const evs_aggregate *agg, const evs_event *event,
                            evs_error *err)
{
	const evs_uuid *id = evs_event_id(event);
	char text[EVS_UUID_STRLEN + 1];
	size_t i;

	for (i = 0; i < agg->n_pending; i++) {
		if (evs_uuid_equal(evs_event_id(agg->pending[i]), id)) {
			evs_uuid_format(text, id);
			return evs_error_set(err, EVS_EINVALID, NULL,
			                     "event %s is already queued in "
			                     "aggregate \"%s\"", text, agg->id);
		}
	}
	return 0;
}

int evs_aggregate_raise(evs_aggregate *agg, evs_event *event, evs_error *err)
{
	int rc;

	evs__error_reset(err);
	if (agg == NULL) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "aggregate must not be NULL");
		goto done;
	}
	if (event == NULL) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "event must not be NULL");
		goto done;
	}
	if (evs_event_type(event)[0] == EVS_SYSTEM_PREFIX) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "event type \"%s\" starts with '$': such "
		                   "types are evstore's own",
		                   evs_event_type(event));
		goto done;
	}
	if ((rc = check_not_queued(agg, event, err)) != 0)
		goto done;
	if ((rc = reserve_one(agg, err)) != 0)
		goto done;
	if ((rc = apply_event(agg, event, err)) != 0)
		goto done;
	agg->pending[agg->n_pending++] = event;
	event = NULL;
done:
	evs_event_free(event);
	return rc;
}

int evs_aggregate_raise_new(evs_aggregate *agg, const char *type,
                            json_object *data, json_object *metadata,
                            evs_error *err)
{
	evs_event *event = NULL;
	int rc;

	evs__error_reset(err);
	if (agg == NULL) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "aggregate must not be NULL");
		goto done;
	}
	if ((rc = evs_event_new(&event, type, data, metadata, err)) != 0)
		goto done;
	rc = evs_aggregate_raise(agg, event, err);
done:
	return rc;
}

int evs_aggregate_apply_stored(evs_aggregate *agg, const evs_event *event,
                               evs_error *err)
{
	const char *owner;
	int rc;

	evs__error_reset(err);
	if (agg == NULL || event == NULL) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "%s must not be NULL",
		                   agg == NULL ? "aggregate" : "event");
		goto done;
	}
	/* Raised events were applied on top of the current version; a stored
	 * event slipped in below them would reorder history. */
	if (agg->n_pending > 0) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "aggregate \"%s\" has %zu unsaved events; "
		                   "stored events go before raised ones",
		                   agg->id, agg->n_pending);
		goto done;
	}
	owner = evs_event_aggregate_id(event);
	if (owner == NULL) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "event \"%s\" was never stored",
		                   evs_event_type(event));
		goto done;
	}
	if (strcmp(owner, agg->id) != 0) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "event belongs to aggregate \"%s\", "
		                   "not \"%s\"", owner, agg->id);
		goto done;
	}
	if (evs_event_version(event) != agg->version + 1) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "event has version %lld, but aggregate "
		                   "\"%s\" is at version %lld",
		                   (long long)evs_event_version(event), agg->id,
		                   (long long)agg->version);
		goto done;
	}
	/* evstore's own markers ("$deleted", "$undeleted") take a version
	 * in the stream but are no part of the aggregate's state. */
	if (evs_event_type(event)[0] != EVS_SYSTEM_PREFIX &&
	    (rc = apply_event(agg, event, err)) != 0)
		goto done;
	agg->version++;
done:
	return rc;
}

void evs__aggregate_mark_saved(evs_aggregate *agg)
{
	agg->version += (int64_t)agg->n_pending;
	free_pending(agg);
}

/* ---- snapshots -------------------------------------------------------- */

int64_t evs__aggregate_snapshot_version(const evs_aggregate *agg)
{
	return agg->snapshot_version;
}

int evs__aggregate_restore(evs_aggregate *agg, int64_t version,
                           const char *json, size_t len, evs_error *err)
{
	evs_error local = EVS_ERROR_INIT;
	evs_error *e = err != NULL ? err : &local;
	json_tokener *tok = json_tokener_new_ex(EVS_JSON_MAX_DEPTH + 1);
	json_object *obj = NULL;
	void *state = NULL;
	int rc;

	if (tok == NULL) {
		rc = evs__error_nomem(err);
		goto done;
	}
	obj = json_tokener_parse_ex(tok, json, (int)len);
	if (obj == NULL && json_tokener_get_error(tok) != json_tokener_success) {
		rc = evs_error_set(err, EVS_EINVALID, NULL,
		                   "the snapshot of aggregate \"%s\" at version "
		                   "%lld is not JSON", agg->id,
		                   (long long)version);
		goto done;
	}
	rc = agg->type->restore(&state, agg->id, obj, agg->type->payload, e);
	if (rc != 0) {
		if (e->code == 0)
			evs_error_set(e, rc, NULL,
			              "could not restore aggregate \"%s\" from "
			              "its snapshot at version %lld", agg->id,
			              (long long)version);
		goto done;
	}
	agg->type->free(agg->state, agg->type->payload);
	agg->state = state;
	agg->version = version;
	agg->snapshot_version = version;
done:
	json_object_put(obj);
	if (tok != NULL)
		json_tokener_free(tok);
	evs_error_clear(&local);
	return rc;
}

int evs__aggregate_snapshot_json(char **out, const evs_aggregate *agg,
                                 evs_error *err)
{
	evs_error local = EVS_ERROR_INIT;
	evs_error *e = err != NULL ? err : &local;
	json_object *obj = NULL;
	const char *text;
	int rc;

	*out = NULL;
	rc = agg->type->snapshot(&obj, agg->state, agg->type->payload, e);
	if (rc != 0) {
		if (e->code == 0)
			evs_error_set(e, rc, NULL,
			              "could not take a snapshot of aggregate "
			              "\"%s\"", agg->id);
		goto done;
	}
	text = json_object_to_json_string_ext(obj, JSON_C_TO_STRING_PLAIN);
	if (text == NULL || (*out = strdup(text)) == NULL)
		rc = evs__error_nomem(err);
done:
	json_object_put(obj);
	evs_error_clear(&local);
	return rc;
}

void evs__aggregate_set_snapshot_version(evs_aggregate *agg, int64_t version)
{
	agg->snapshot_version = version;
}
