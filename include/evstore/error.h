/* evstore/error.h: return codes and the caller-owned error record. */
#ifndef EVSTORE_ERROR_H
#define EVSTORE_ERROR_H

#include "common.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Return codes. Every fallible call returns 0 (or a documented positive
 * value) on success and one of these negative codes on failure.
 */
typedef enum {
	EVS_OK = 0,
	EVS_ERROR = -1,        /**< anything not listed below */
	EVS_ENOMEM = -2,       /**< out of memory */
	EVS_EINVALID = -3,     /**< bad argument or call order: a caller bug */
	EVS_ENOTFOUND = -4,    /**< no such aggregate (it has no events) */
	EVS_ECONFLICT = -5,    /**< the expected version did not match */
	EVS_EDB = -6,          /**< the database refused; sqlstate is set */
	EVS_EUNSUPPORTED = -7, /**< the backend lacks the operation or version */
	EVS_EUNAVAILABLE = -8, /**< cannot reach the database: retry later */
	EVS_ETIMEOUT = -9,     /**< a lock, statement or pool wait, or the
	                            call's deadline (call_timeout_ms), ran out */
	EVS_EDUPLICATE = -10,  /**< an event id is already used in the stream */
	EVS_ESCHEMA = -11,     /**< database schema absent, older or newer */
	EVS_ECONFIG = -12,     /**< the server refused the connection settings
	                            (no such database or role, authentication
	                            failed, SSL required or refused): fix the
	                            configuration; retrying will not help */
	EVS_ELEASE = -13,      /**< a subscription's lease is held by, or was
	                            taken over by, another instance */
	EVS_EREWOUND = -14,    /**< a subscription's checkpoint names an event
	                            the store no longer has: it was rewound */
	EVS_ENOTSTORED = -15,  /**< a request of an atomic multi-stream
	                            append that was not stored because
	                            another request of the call failed */
	EVS_EDELETED = -16     /**< the stream is deleted: it takes no
	                            appends and cannot be read (see
	                            evs_store_delete()) */
} evs_code;

/**
 * What went wrong, in detail. The caller owns the record: initialise it
 * with EVS_ERROR_INIT, pass its address to any number of calls (each call
 * that takes it first clears what an earlier call left), and release it
 * with evs_error_clear(). Only the library writes to it, so new fields are
 * only ever appended.
 */
typedef struct evs_error {
	int code;             /**< what the call returned; 0 after success */
	char sqlstate[6];     /**< "23505", or "" when not from Postgres */
	const char *message;  /**< one line, lower-case start, no period */
	const char *detail;   /**< more context, or NULL */
	/* Set only for EVS_ECONFLICT and EVS_EDELETED (aggregate_id also for
	 * EVS_EDUPLICATE): */
	const char *aggregate_id; /**< the aggregate of the failed call */
	int64_t expected_version; /**< what the caller expected */
	int64_t actual_version;   /**< the stream's version; -1 when empty
	                               (EVS_EDELETED: the version of its
	                               "$deleted" marker) */
	/* private to the library */
	unsigned int owned_;
} evs_error;

/** Initialiser for an evs_error the caller is about to pass to a call. */
#define EVS_ERROR_INIT {0, {0}, NULL, NULL, NULL, 0, 0, 0u}

/**
 * Frees what the library stored in @p err and resets it to EVS_ERROR_INIT.
 * @param err  may be NULL
 */
EVS_EXTERN(void) evs_error_clear(evs_error *err);

/**
 * Short, static description of a return code ("version conflict");
 * never NULL, also for unknown codes.
 */
EVS_EXTERN(const char *) evs_strerror(int code);

#ifdef __cplusplus
}
#endif
#endif
