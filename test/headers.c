/* test/headers.c: the public headers together, in an awkward order and
 * twice over, compile (C99 and C11; test/headers.cpp builds this file as
 * C++), and every function they declare EVS_EXTERN links. Run by
 * `make check-headers`; extern-list.h is generated from the headers. */
#include <evstore/version.h>
#include <evstore/store.h>
#include <evstore/repository.h>
#include <evstore/memory.h>
#include <evstore/event.h>
#include <evstore/evstore.h>
#include <evstore/error.h>
#include <evstore/common.h>
#include <evstore/backend.h>
#include <evstore/aggregate.h>
#include <evstore/evstore.h>
#include <evstore/aggregate.h>

#include <stdio.h>
#include <string.h>

typedef void (*any_function)(void);

/* Taking each address makes the linker find each definition; in C++ it
 * also proves the declaration is inside extern "C". */
#define EVS_SYM(name) (any_function)name,
static const any_function every_function[] = {
#include "extern-list.h"
};

int main(void)
{
	size_t i, n = sizeof every_function / sizeof every_function[0];

	for (i = 0; i < n; i++) {
		if (every_function[i] == NULL) {
			fprintf(stderr, "headers: function %zu is NULL\n", i);
			return 1;
		}
	}
	if (strcmp(evs_version(), EVS_VERSION_STRING) != 0) {
		fprintf(stderr, "headers: evs_version() %s, header %s\n",
		        evs_version(), EVS_VERSION_STRING);
		return 1;
	}
#ifdef __cplusplus
	printf("headers (C++): %zu functions link\n", n);
#else
	printf("headers (C): %zu functions link\n", n);
#endif
	return 0;
}
