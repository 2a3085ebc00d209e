/* Error records: codes, messages and the conflict details. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common_int.h"

/* Bits of evs_error.owned_: which strings the library allocated. */
#define OWN_MESSAGE 1u
#define OWN_DETAIL 2u
#define OWN_ID 4u

static const char nomem_message[] = "out of memory";

void evs_error_clear(evs_error *err)
{
	if (err == NULL)
		return;
	if (err->owned_ & OWN_MESSAGE)
		free((char *)err->message);
	if (err->owned_ & OWN_DETAIL)
		free((char *)err->detail);
	if (err->owned_ & OWN_ID)
		free((char *)err->aggregate_id);
	memset(err, 0, sizeof(*err));
}

void evs__error_reset(evs_error *err)
{
	evs_error_clear(err);
}

int evs__error_nomem(evs_error *err)
{
	if (err != NULL) {
		evs_error_clear(err);
		err->code = EVS_ENOMEM;
		err->message = nomem_message;
	}
	return EVS_ENOMEM;
}

int evs__error_copy(evs_error *dst, const evs_error *src)
{
	if (dst == NULL || src == NULL)
		return src ? src->code : 0;
	evs_error_set(dst, src->code, src->sqlstate[0] ? src->sqlstate : NULL,
	              "%s", src->message ? src->message : "");
	if (src->detail != NULL)
		evs__error_set_detail(dst, src->detail);
	if (src->aggregate_id != NULL) {
		evs__error_set_aggregate(dst, src->aggregate_id);
		dst->expected_version = src->expected_version;
		dst->actual_version = src->actual_version;
	}
	return dst->code;
}

static char *vformat(const char *fmt, va_list ap)
{
	va_list ap2;
	char *buf;
	int len;

	va_copy(ap2, ap);
	len = vsnprintf(NULL, 0, fmt, ap2);
	va_end(ap2);
	if (len < 0)
		return NULL;
	buf = malloc((size_t)len + 1);
	if (buf != NULL)
		vsnprintf(buf, (size_t)len + 1, fmt, ap);
	return buf;
}

int evs_error_set(evs_error *err, int code, const char *sqlstate,
                  const char *fmt, ...)
{
	va_list ap;
	char *msg;

	if (err == NULL)
		return code;
	evs_error_clear(err);
	va_start(ap, fmt);
	msg = vformat(fmt, ap);
	va_end(ap);
	if (msg == NULL) {
		/* Keep the caller's code: it matters more than the text. */
		err->message = nomem_message;
	} else {
		err->message = msg;
		err->owned_ |= OWN_MESSAGE;
	}
	err->code = code;
	if (sqlstate != NULL) {
		memcpy(err->sqlstate, sqlstate, strnlen(sqlstate, 5));
		err->sqlstate[5] = '\0';
	}
	return code;
}

static void describe_expected(char *buf, size_t size, int64_t expected)
{
	if (expected == EVS_ANY_VERSION)
		snprintf(buf, size, "any version");
	else if (expected == EVS_STREAM_EXISTS)
		snprintf(buf, size, "an existing stream");
	else
		snprintf(buf, size, "version %lld", (long long)expected);
}

int evs_error_set_conflict(evs_error *err, const char *aggregate_id,
                           int64_t expected, int64_t actual)
{
	char want[32];
	char *id;

	if (err == NULL)
		return EVS_ECONFLICT;
	describe_expected(want, sizeof(want), expected);
	evs_error_set(err, EVS_ECONFLICT, NULL,
	              "conflict appending events for aggregate \"%s\": "
	              "expected %s, but current version is %lld",
	              aggregate_id, want, (long long)actual);
	id = strdup(aggregate_id);
	if (id != NULL) {
		err->aggregate_id = id;
		err->owned_ |= OWN_ID;
	}
	err->expected_version = expected;
	err->actual_version = actual;
	return EVS_ECONFLICT;
}

int evs_error_set_deleted(evs_error *err, const char *aggregate_id,
                          int64_t expected, int64_t actual)
{
	if (err == NULL)
		return EVS_EDELETED;
	evs_error_set(err, EVS_EDELETED, NULL,
	              "aggregate \"%s\" is deleted (at version %lld)",
	              aggregate_id, (long long)actual);
	evs__error_set_aggregate(err, aggregate_id);
	err->expected_version = expected;
	err->actual_version = actual;
	return EVS_EDELETED;
}

int evs__error_set_hard_deleted(evs_error *err, const char *aggregate_id,
                                int64_t expected, int64_t actual)
{
	if (err == NULL)
		return EVS_EDELETED;
	evs_error_set(err, EVS_EDELETED, NULL,
	              "aggregate \"%s\" was deleted with its events (hard, "
	              "at version %lld): it cannot be undeleted",
	              aggregate_id, (long long)actual);
	evs__error_set_aggregate(err, aggregate_id);
	err->expected_version = expected;
	err->actual_version = actual;
	return EVS_EDELETED;
}

int evs__error_set_aggregate(evs_error *err, const char *aggregate_id)
{
	char *id;

	if (err == NULL || err->aggregate_id != NULL)
		return 0;
	id = strdup(aggregate_id);
	if (id == NULL)
		return EVS_ENOMEM;
	err->aggregate_id = id;
	err->owned_ |= OWN_ID;
	return 0;
}

int evs__error_set_detail(evs_error *err, const char *detail)
{
	char *copy;

	if (err == NULL || detail == NULL || detail[0] == '\0')
		return 0;
	copy = strdup(detail);
	if (copy == NULL)
		return EVS_ENOMEM;
	if (err->owned_ & OWN_DETAIL)
		free((char *)err->detail);
	err->detail = copy;
	err->owned_ |= OWN_DETAIL;
	return 0;
}

const char *evs_strerror(int code)
{
	switch (code) {
	case EVS_OK:
		return "success";
	case EVS_ERROR:
		return "error";
	case EVS_ENOMEM:
		return "out of memory";
	case EVS_EINVALID:
		return "invalid argument";
	case EVS_ENOTFOUND:
		return "not found";
	case EVS_ECONFLICT:
		return "version conflict";
	case EVS_EDB:
		return "database error";
	case EVS_EUNSUPPORTED:
		return "not supported";
	case EVS_EUNAVAILABLE:
		return "database unavailable";
	case EVS_ETIMEOUT:
		return "timed out";
	case EVS_EDUPLICATE:
		return "duplicate event id";
	case EVS_ESCHEMA:
		return "schema version mismatch";
	case EVS_ECONFIG:
		return "connection refused by configuration";
	case EVS_ELEASE:
		return "subscription lease lost";
	case EVS_EREWOUND:
		return "checkpoint beyond the store's log";
	case EVS_ENOTSTORED:
		return "not stored: another request of the atomic call failed";
	case EVS_EDELETED:
		return "stream deleted";
	default:
		return "unknown error";
	}
}

const char *evs_version(void)
{
	return EVS_VERSION_STRING;
}
