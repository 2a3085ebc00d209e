/* tools/progress.h: the progress bar export and import draw on standard
 * error when it is a terminal, redrawn by a thread of its own. */
#ifndef EVSTORE_TOOLS_PROGRESS_H
#define EVSTORE_TOOLS_PROGRESS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

typedef struct progress {
	const char *label;
	atomic_llong done;
	atomic_llong total; /* -1: not known */
	double start;
	int active, stop;
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
} progress;

/* Shows a bar only when stderr is a terminal; quiet otherwise. */
void progress_start(progress *p, const char *label, int64_t total);

void progress_add(progress *p, int64_t n);

/* Ends the bar; @p ok: draw it once more, complete, else clear it. */
void progress_stop(progress *p, int ok);

#endif
