/* evstore/memory.h: the in-memory backend, for tests and embedding. */
#ifndef EVSTORE_MEMORY_H
#define EVSTORE_MEMORY_H

#include "backend.h"
#include "store.h"

#ifdef __cplusplus
extern "C" {
#endif

/**
 * Opens an empty store that keeps its events in this process's memory.
 * It implements the whole store contract (the same tests run on it as on
 * PostgreSQL), is safe to share between threads, and forgets everything
 * when freed. Reads hand out copies.
 * @param[out] out  yours: free with evs_store_free(); NULL on failure
 * @param err       may be NULL; filled on failure
 * @return 0, or EVS_ENOMEM
 */
EVS_EXTERN(int) evs_store_open_memory(evs_store **out, evs_error *err);

/**
 * The in-memory backend on its own, for wrapping in your own backend.
 * @param[out] out  yours: pass it to evs_store_new() or call its free slot
 * @return 0, or EVS_ENOMEM
 */
EVS_EXTERN(int) evs_backend_memory_new(evs_backend **out, evs_error *err);

#ifdef __cplusplus
}
#endif
#endif
