/* The test doubles: see fake_backend.h. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <json-c/json.h>

#include "unit/fake_backend.h"

static int fake_append(int64_t *version_out, evs_backend *be,
                       const char *aggregate_id, int64_t expected_version,
                       evs_event *const *events, size_t n_events,
                       evs_error *err)
{
	fake_backend *fb = (fake_backend *)be;
	evs_event *other = NULL;
	int64_t other_version;
	int rc;

	fb->appends++;
	if (fb->fail_appends > 0) {
		fb->fail_appends--;
		return evs_error_set(err, fb->fail_code, NULL,
		                     "injected append failure");
	}
	if (fb->inject_appends > 0) {
		fb->inject_appends--;
		rc = evs_event_new_json(&other, fb->inject_type,
		                        fb->inject_data, NULL, err);
		if (rc == 0)
			/* Slots may trust their out pointers: pass one. */
			rc = fb->inner->append(&other_version, fb->inner,
			                       aggregate_id, EVS_ANY_VERSION,
			                       &other, 1, err);
		evs_event_free(other);
		if (rc != 0)
			return rc;
		fb->injected++;
	}
	return fb->inner->append(version_out, fb->inner, aggregate_id,
	                         expected_version, events, n_events, err);
}

static int fake_read(evs_backend *be, const char *aggregate_id,
                     int64_t after_version, evs_backend_event_cb cb,
                     void *payload, evs_error *err)
{
	fake_backend *fb = (fake_backend *)be;

	fb->reads++;
	if (fb->fail_reads > 0) {
		fb->fail_reads--;
		return evs_error_set(err, fb->fail_code, NULL,
		                     "injected read failure");
	}
	return fb->inner->read(fb->inner, aggregate_id, after_version, cb,
	                       payload, err);
}

static int fake_head(int64_t *out, evs_backend *be, const char *aggregate_id,
                     evs_error *err)
{
	fake_backend *fb = (fake_backend *)be;

	fb->heads++;
	return fb->inner->head(out, fb->inner, aggregate_id, err);
}

static void fake_free(evs_backend *be)
{
	fake_backend *fb = (fake_backend *)be;

	fb->inner->free(fb->inner);
	free(fb);
}

int fake_store_open(evs_store **store_out, fake_backend **fake_out,
                    evs_error *err)
{
	evs_backend init = EVS_BACKEND_INIT;
	fake_backend *fb;
	int rc;

	*store_out = NULL;
	*fake_out = NULL;
	fb = calloc(1, sizeof(*fb));
	if (fb == NULL)
		return evs_error_set(err, EVS_ENOMEM, NULL, "out of memory");
	rc = evs_backend_memory_new(&fb->inner, err);
	if (rc != 0) {
		free(fb);
		return rc;
	}
	fb->base = init;
	fb->base.append = fake_append;
	fb->base.read = fake_read;
	fb->base.head = fb->inner->head != NULL ? fake_head : NULL;
	fb->base.free = fake_free;
	fb->fail_code = EVS_ERROR;
	rc = evs_store_new(store_out, &fb->base, err);
	if (rc == 0)
		*fake_out = fb;
	return rc;
}

static int account_create(void **state_out, const char *aggregate_id,
                          void *payload, evs_error *err)
{
	account_tally *tally = payload;
	account *acc;

	(void)aggregate_id;
	if (tally != NULL) {
		tally->creates++;
		if (tally->create_rc != 0)
			return evs_error_set(err, tally->create_rc, NULL,
			                     "account create refused");
	}
	acc = calloc(1, sizeof(*acc));
	if (acc == NULL)
		return evs_error_set(err, EVS_ENOMEM, NULL, "out of memory");
	*state_out = acc;
	return 0;
}

static int account_apply(void *state, const evs_event *event, void *payload,
                         evs_error *err)
{
	account_tally *tally = payload;
	account *acc = state;
	const char *type = evs_event_type(event);
	json_object *amount_obj;
	int64_t amount;

	if (tally != NULL)
		tally->applies++;
	if (!json_object_object_get_ex(evs_event_data(event), "amount",
	                               &amount_obj) ||
	    !json_object_is_type(amount_obj, json_type_int))
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "event \"%s\" has no amount", type);
	amount = json_object_get_int64(amount_obj);
	if (amount < 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "negative amount %lld", (long long)amount);
	if (strcmp(type, "deposited") == 0) {
		acc->balance += amount;
	} else if (strcmp(type, "withdrawn") == 0) {
		if (amount > acc->balance)
			return evs_error_set(err, EVS_EINVALID, NULL,
			                     "insufficient funds");
		acc->balance -= amount;
	} else {
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "unknown event type \"%s\"", type);
	}
	acc->applied++;
	return 0;
}

static void account_free(void *state, void *payload)
{
	account_tally *tally = payload;

	if (tally != NULL)
		tally->frees++;
	free(state);
}

const evs_aggregate_type account_type = {
	EVS_AGGREGATE_TYPE_VERSION, "account", account_create, account_apply,
	account_free, NULL, 0, NULL, NULL,
};

void account_type_tallied(evs_aggregate_type *type, account_tally *tally)
{
	memset(tally, 0, sizeof(*tally));
	*type = account_type;
	type->payload = tally;
}

const account *account_of(const evs_aggregate *agg)
{
	return evs_aggregate_state(agg);
}

int account_raise(evs_aggregate *agg, const char *type, int64_t amount,
                  evs_error *err)
{
	json_object *data = json_object_new_object();
	int rc;

	json_object_object_add(data, "amount", json_object_new_int64(amount));
	rc = evs_aggregate_raise_new(agg, type, data, NULL, err);
	json_object_put(data);
	return rc;
}

int account_append(evs_store *store, const char *aggregate_id,
                   int64_t expected_version, const char *type,
                   int64_t amount, evs_error *err)
{
	char data[64];
	evs_event *ev = NULL;
	int rc;

	snprintf(data, sizeof(data), "{\"amount\":%lld}", (long long)amount);
	rc = evs_event_new_json(&ev, type, data, NULL, err);
	if (rc == 0)
		rc = evs_store_append(NULL, store, aggregate_id,
		                      expected_version, &ev, 1, err);
	evs_event_free(ev);
	return rc;
}
