/* Events: construction (with the argument checks), accessors, lists. */
#include <json-c/json.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "event_int.h"

/* json-c's default nesting limit is 32; real payloads go deeper. One more
 * than ours, so that json-c never refuses what evs__json_check() took. */
#define JSON_MAX_DEPTH (EVS_JSON_MAX_DEPTH + 1)

static evs_event *event_alloc(const char *type, size_t type_len,
                              const char *data, size_t data_len,
                              const char *meta, size_t meta_len,
                              const char *agg, size_t agg_len)
{
	size_t size = sizeof(evs_event) + type_len + 1 + data_len + 1;
	evs_event *ev;
	char *p;

	if (meta != NULL)
		size += meta_len + 1;
	if (agg != NULL)
		size += agg_len + 1;
	ev = malloc(size);
	if (ev == NULL)
		return NULL;
	memset(ev, 0, sizeof(*ev));
	p = ev->buf;
	memcpy(p, type, type_len);
	p[type_len] = '\0';
	ev->type = p;
	p += type_len + 1;
	memcpy(p, data, data_len);
	p[data_len] = '\0';
	ev->data = p;
	ev->data_len = data_len;
	p += data_len + 1;
	if (meta != NULL) {
		memcpy(p, meta, meta_len);
		p[meta_len] = '\0';
		ev->metadata = p;
		ev->metadata_len = meta_len;
		p += meta_len + 1;
	}
	if (agg != NULL) {
		memcpy(p, agg, agg_len);
		p[agg_len] = '\0';
		ev->aggregate_id = p;
	}
	ev->version = EVS_NO_VERSION;
	atomic_init(&ev->data_obj, NULL);
	atomic_init(&ev->metadata_obj, NULL);
	return ev;
}

/* Rejects what JSON text or PostgreSQL's jsonb cannot hold: non-finite
 * numbers (json-c would print NaN) and strings with NUL in them. */
static int check_tree(json_object *v, int depth, const char **why)
{
	size_t i, n;

	if (depth > JSON_MAX_DEPTH) {
		*why = "is nested too deeply";
		return -1;
	}
	switch (json_object_get_type(v)) {
	case json_type_double:
		if (!isfinite(json_object_get_double(v))) {
			*why = "holds a number that is not finite";
			return -1;
		}
		return 0;
	case json_type_string:
		if (strlen(json_object_get_string(v)) !=
		    (size_t)json_object_get_string_len(v)) {
			*why = "holds a string with a NUL character";
			return -1;
		}
		return 0;
	case json_type_array:
		n = json_object_array_length(v);
		for (i = 0; i < n; i++)
			if (check_tree(json_object_array_get_idx(v, i),
			               depth + 1, why) < 0)
				return -1;
		return 0;
	case json_type_object: {
		json_object_object_foreach(v, key, child) {
			(void)key;
			if (check_tree(child, depth + 1, why) < 0)
				return -1;
		}
		return 0;
	}
	default:
		return 0;
	}
}

/* Serialises a caller's value; *text is borrowed from the value. */
static int serialize(const char **text, size_t *len, const char *what,
                     json_object *v, evs_error *err)
{
	const char *why = NULL;
	size_t where;

	if (check_tree(v, 0, &why) < 0)
		return evs_error_set(err, EVS_EINVALID, NULL, "%s %s", what,
		                     why);
	*text = json_object_to_json_string_length(
		v, JSON_C_TO_STRING_PLAIN | JSON_C_TO_STRING_NOSLASHESCAPE,
		len);
	if (*text == NULL)
		return evs__error_nomem(err);
	if (!evs__utf8_valid(*text, *len))
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s holds a string that is not valid UTF-8",
		                     what);
	/* A value with a custom serializer prints what it likes. */
	if (evs__json_check(*text, *len, &where, &why) < 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s does not print as valid JSON: %s at "
		                     "byte %zu", what, why, where);
	return 0;
}

/* json-c clamps an integer literal beyond 64 bits to the nearest 64-bit
 * value, silently. PostgreSQL's jsonb writes large doubles out in full
 * (1e20 as 100000000000000000000), so such literals do come back from a
 * store. Returns a copy of text in which each of them gets a ".0", so
 * that json-c reads it as the double it is; NULL (and *out_len 0) when
 * there is none; NULL and *out_len SIZE_MAX when memory ran out. */
static char *widen_big_integers(const char *text, size_t len, size_t *out_len)
{
	static const char pos_max[] = "18446744073709551615";
	static const char neg_max[] = "9223372036854775808";
	size_t i = 0, big = 0, o = 0;
	char *copy = NULL;
	int pass;

	*out_len = 0;
	for (pass = 0; pass < 2; pass++) {
		for (i = 0; i < len;) {
			size_t start = i, d, n;
			int neg;

			if (text[i] == '"') {
				/* Skip a string, escapes included. */
				for (i++; i < len && text[i] != '"'; i++)
					if (text[i] == '\\')
						i++;
				i++;
				goto copy;
			}
			if (text[i] != '-' && (text[i] < '0' || text[i] > '9')) {
				i++;
				goto copy;
			}
			neg = text[i] == '-';
			d = i + (size_t)neg;
			for (i = d; i < len && text[i] >= '0' && text[i] <= '9'; i++)
				;
			n = i - d;
			if (i < len && (text[i] == '.' || text[i] == 'e' ||
			                text[i] == 'E')) {
				while (i < len && strchr("0123456789.eE+-", text[i]))
					i++;
				goto copy;
			}
			if (neg ? (n > 19 || (n == 19 &&
			                      memcmp(text + d, neg_max, 19) > 0))
			        : (n > 20 || (n == 20 &&
			                      memcmp(text + d, pos_max, 20) > 0))) {
				if (pass == 0) {
					big++;
				} else {
					memcpy(copy + o, text + start, i - start);
					o += i - start;
					memcpy(copy + o, ".0", 2);
					o += 2;
					continue;
				}
			}
copy:
			if (pass == 1) {
				if (i > len)
					i = len;
				memcpy(copy + o, text + start, i - start);
				o += i - start;
			}
		}
		if (pass == 0) {
			if (big == 0)
				return NULL;
			copy = malloc(len + 2 * big + 1);
			if (copy == NULL) {
				*out_len = SIZE_MAX;
				return NULL;
			}
		}
	}
	copy[o] = '\0';
	*out_len = o;
	return copy;
}

/* Parses JSON text; *out is yours (NULL for JSON null). */
static json_object *parse_text(const char *text, size_t len,
                               enum json_tokener_error *jerr, size_t *end)
{
	json_tokener *tok = json_tokener_new_ex(JSON_MAX_DEPTH);
	json_object *v;

	if (tok == NULL) {
		/* Out of memory: say so as the parse failure it is. */
		*jerr = json_tokener_error_parse_eof;
		*end = SIZE_MAX;
		return NULL;
	}
	/* Passing the NUL too tells json-c the text ends there. */
	v = json_tokener_parse_ex(tok, text, (int)len + 1);
	*jerr = json_tokener_get_error(tok);
	*end = json_tokener_get_parse_end(tok);
	json_tokener_free(tok);
	return v;
}

/* Checks JSON text the caller gave: strict JSON, valid UTF-8, and nothing
 * jsonb or a json-c double cannot hold. No json-c tree is built: the
 * accessors parse on first use, and most events are never looked at. */
static int check_text(const char *what, const char *text, size_t len,
                      evs_error *err)
{
	const char *why = NULL;
	size_t where;

	if (!evs__utf8_valid(text, len))
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s is not valid UTF-8", what);
	if (len > (size_t)INT32_MAX - 16)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s is larger than 2 GB", what);
	if (evs__json_check(text, len, &where, &why) < 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s is not valid JSON: %s at byte %zu", what,
		                     why, where);
	return 0;
}

/* The first character of a valid JSON text that is not white space. */
static char first_char(const char *text)
{
	while (*text == ' ' || *text == '\t' || *text == '\n' || *text == '\r')
		text++;
	return *text;
}

static int check_metadata_type(json_object *meta, evs_error *err)
{
	if (meta != NULL && !json_object_is_type(meta, json_type_object))
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "metadata must be a JSON object, not %s",
		                     json_type_to_name(json_object_get_type(meta)));
	return 0;
}

static int finish_new(evs_event **out, evs_event *ev, evs_error *err)
{
	int rc = evs_uuid_generate(&ev->id, err);

	if (rc < 0) {
		evs_event_free(ev);
		return rc;
	}
	*out = ev;
	return 0;
}

int evs_event_new(evs_event **out, const char *type, json_object *data,
                  json_object *metadata, evs_error *err)
{
	const char *dtext, *mtext = NULL;
	size_t dlen, mlen = 0;
	evs_event *ev;
	int rc;

	evs__error_reset(err);
	if (out == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "out must not be NULL");
	*out = NULL;
	if ((rc = evs__check_name("type", type, err)) < 0)
		return rc;
	if ((rc = check_metadata_type(metadata, err)) < 0)
		return rc;
	if ((rc = serialize(&dtext, &dlen, "data", data, err)) < 0)
		return rc;
	if (metadata == data && metadata != NULL) {
		/* Printing it again could move the text we point into. */
		mtext = dtext;
		mlen = dlen;
	} else if (metadata != NULL &&
	           (rc = serialize(&mtext, &mlen, "metadata", metadata,
	                           err)) < 0) {
		return rc;
	}
	ev = event_alloc(type, strlen(type), dtext, dlen, mtext, mlen, NULL,
	                 0);
	if (ev == NULL)
		return evs__error_nomem(err);
	return finish_new(out, ev, err);
}

int evs_event_new_json(evs_event **out, const char *type,
                       const char *data_json, const char *metadata_json,
                       evs_error *err)
{
	size_t dlen, mlen = 0;
	evs_event *ev;
	int rc;

	evs__error_reset(err);
	if (out == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "out must not be NULL");
	*out = NULL;
	if ((rc = evs__check_name("type", type, err)) < 0)
		return rc;
	if (data_json == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "data must not be NULL (write \"null\" for "
		                     "JSON null)");
	dlen = strlen(data_json);
	if ((rc = check_text("data", data_json, dlen, err)) < 0)
		return rc;
	if (metadata_json != NULL) {
		char c;

		mlen = strlen(metadata_json);
		if ((rc = check_text("metadata", metadata_json, mlen, err)) < 0)
			return rc;
		c = first_char(metadata_json);
		if (c != '{')
			return evs_error_set(err, EVS_EINVALID, NULL,
			                     "metadata must be a JSON object, not %s%s",
			                     c == '[' ? "an array" :
			                     c == '"' ? "a string" :
			                     c == 'n' ? "null" :
			                     c == 't' || c == 'f' ? "a boolean" :
			                     "a number",
			                     c == 'n' ? " (pass NULL for none)" : "");
	}
	ev = event_alloc(type, strlen(type), data_json, dlen, metadata_json,
	                 mlen, NULL, 0);
	if (ev == NULL)
		return evs__error_nomem(err);
	return finish_new(out, ev, err);
}

int evs_event_new_stored(evs_event **out, const evs_uuid *id,
                         const char *type, const char *data_json,
                         size_t data_len, const char *metadata_json,
                         size_t metadata_len, const char *aggregate_id,
                         int64_t version, int64_t position,
                         int64_t recorded_at, evs_error *err)
{
	evs_event *ev = event_alloc(type, strlen(type), data_json, data_len,
	                            metadata_json, metadata_len, aggregate_id,
	                            strlen(aggregate_id));

	*out = NULL;
	if (ev == NULL)
		return evs__error_nomem(err);
	ev->id = *id;
	ev->version = version;
	ev->position = position;
	ev->recorded_at = recorded_at;
	ev->has_time = 1;
	*out = ev;
	return 0;
}

int evs_event_set_recorded_at(evs_event *ev, int64_t micros, evs_error *err)
{
	evs__error_reset(err);
	if (ev == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "event must not be NULL");
	if (micros < EVS_TIME_MIN_US || micros > EVS_TIME_MAX_US)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "micros %lld is outside 4714 BC to "
		                     "294247 AD", (long long)micros);
	ev->recorded_at = micros;
	ev->has_time = 1;
	return 0;
}

int evs_event_set_id(evs_event *ev, const evs_uuid *id, evs_error *err)
{
	static const evs_uuid nil;

	evs__error_reset(err);
	if (ev == NULL || id == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s must not be NULL",
		                     ev == NULL ? "event" : "id");
	if (evs_uuid_equal(id, &nil))
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "id must not be the nil UUID");
	ev->id = *id;
	return 0;
}

int evs_event_dup(evs_event **out, const evs_event *ev, evs_error *err)
{
	evs_event *copy;

	evs__error_reset(err);
	if (out != NULL)
		*out = NULL;
	if (out == NULL || ev == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s must not be NULL",
		                     out == NULL ? "out" : "event");
	copy = event_alloc(ev->type, strlen(ev->type), ev->data, ev->data_len,
	                   ev->metadata, ev->metadata_len, ev->aggregate_id,
	                   ev->aggregate_id ? strlen(ev->aggregate_id) : 0);
	if (copy == NULL)
		return evs__error_nomem(err);
	copy->id = ev->id;
	copy->version = ev->version;
	copy->position = ev->position;
	copy->recorded_at = ev->recorded_at;
	copy->has_time = ev->has_time;
	copy->commit = ev->commit;
	*out = copy;
	return 0;
}

void evs_event_free(evs_event *ev)
{
	if (ev == NULL)
		return;
	json_object_put(atomic_load(&ev->data_obj));
	json_object_put(atomic_load(&ev->metadata_obj));
	free(ev);
}

const evs_uuid *evs_event_id(const evs_event *ev)
{
	return &ev->id;
}

const char *evs_event_type(const evs_event *ev)
{
	return ev->type;
}

const char *evs_event_data_json(const evs_event *ev)
{
	return ev->data;
}

const char *evs_event_metadata_json(const evs_event *ev)
{
	return ev->metadata;
}

/* Parses text once per event, whichever thread gets there first. */
static json_object *lazy_parse(_Atomic(json_object *) *slot,
                               const char *text, size_t len)
{
	json_object *cur = atomic_load(slot);
	json_object *expected = NULL;
	enum json_tokener_error jerr;
	size_t end, wide_len;
	char *wide;

	if (cur != NULL || text == NULL || len > (size_t)INT32_MAX - 16)
		return cur;
	wide = widen_big_integers(text, len, &wide_len);
	if (wide_len == SIZE_MAX)
		return NULL; /* out of memory, as documented */
	cur = wide ? parse_text(wide, wide_len, &jerr, &end)
	           : parse_text(text, len, &jerr, &end);
	free(wide);
	if (cur == NULL)
		return NULL; /* JSON null */
	if (!atomic_compare_exchange_strong(slot, &expected, cur)) {
		json_object_put(cur);
		return expected;
	}
	return cur;
}

json_object *evs_event_data(const evs_event *ev)
{
	evs_event *e = (evs_event *)ev; /* the cache is not observable */

	return lazy_parse(&e->data_obj, e->data, e->data_len);
}

json_object *evs_event_metadata(const evs_event *ev)
{
	evs_event *e = (evs_event *)ev;

	return lazy_parse(&e->metadata_obj, e->metadata, e->metadata_len);
}

const char *evs_event_aggregate_id(const evs_event *ev)
{
	return ev->aggregate_id;
}

int64_t evs_event_version(const evs_event *ev)
{
	return ev->version;
}

int64_t evs_event_position(const evs_event *ev)
{
	return ev->position;
}

int64_t evs_event_recorded_at(const evs_event *ev)
{
	return ev->recorded_at;
}

void evs_event_checkpoint(evs_position *out, const evs_event *ev)
{
	out->commit = ev->commit;
	out->global = ev->position;
}

void evs_event_set_checkpoint(evs_event *ev, uint64_t commit)
{
	ev->commit = commit;
}

int evs__event_list_new(evs_event_list **out, evs_error *err)
{
	evs_event_list *list = calloc(1, sizeof(*list));

	*out = list;
	return list == NULL ? evs__error_nomem(err) : 0;
}

int evs__event_list_push(evs_event_list *list, evs_event *ev, evs_error *err)
{
	if (list->count == list->cap) {
		size_t cap = list->cap ? list->cap * 2 : 16;
		evs_event **items = realloc(list->items, cap * sizeof(*items));

		if (items == NULL) {
			evs_event_free(ev);
			return evs__error_nomem(err);
		}
		list->items = items;
		list->cap = cap;
	}
	list->items[list->count++] = ev;
	return 0;
}

size_t evs_event_list_count(const evs_event_list *list)
{
	return list == NULL ? 0 : list->count;
}

const evs_event *evs_event_list_get(const evs_event_list *list, size_t index)
{
	if (list == NULL || index >= list->count)
		return NULL;
	return list->items[index];
}

void evs_event_list_free(evs_event_list *list)
{
	size_t i;

	if (list == NULL)
		return;
	for (i = 0; i < list->count; i++)
		evs_event_free(list->items[i]);
	free(list->items);
	free(list);
}
