/* evstore/common.h: export macro, integer types and version sentinels. */
#ifndef EVSTORE_COMMON_H
#define EVSTORE_COMMON_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Declares a function exported from libevstore. */
#if defined(__GNUC__) || defined(__clang__)
#define EVS_EXTERN(type) __attribute__((visibility("default"))) type
#else
#define EVS_EXTERN(type) type
#endif

/**
 * Expected version of an aggregate that has no events yet, and the version
 * reported for such an aggregate. Versions are 0-indexed: a stream holding
 * n events is at version n - 1.
 */
#define EVS_NO_VERSION ((int64_t)-1)

/** Expected version that skips the concurrency check entirely. */
#define EVS_ANY_VERSION ((int64_t)-2)

/** Expected version that only requires the stream to hold one event or more. */
#define EVS_STREAM_EXISTS ((int64_t)-3)

/** Longest aggregate id and event type name, in bytes. */
#define EVS_ID_MAX 255

/** Returns the library's version string, "MAJOR.MINOR.PATCH". */
EVS_EXTERN(const char *) evs_version(void);

#ifdef __cplusplus
}
#endif
#endif
