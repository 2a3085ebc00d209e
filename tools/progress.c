/* tools/progress.c: the progress bar of export and import (progress.h). */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "progress.h"

static void format_duration(char *out, size_t size, double s)
{
	long t = (long)(s + 0.5);

	if (t >= 3600)
		snprintf(out, size, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60,
		         t % 60);
	else
		snprintf(out, size, "%ld:%02ld", t / 60, t % 60);
}

static void progress_render(progress *p, int final)
{
	long long done = atomic_load(&p->done), total = atomic_load(&p->total);
	double elapsed = cli_now_s() - p->start;
	double rate = elapsed > 0 ? (double)done / elapsed : 0;
	char d[32], t[32], r[32], when[32];
	cli_buf line = {NULL, 0, 0};

	cli_format_count(d, sizeof(d), done);
	cli_format_count(r, sizeof(r), (int64_t)rate);
	/* Time left when the total is known; else the time so far. */
	if (final || total <= 0)
		format_duration(when, sizeof(when), elapsed);
	else if (rate > 0 && done < total)
		format_duration(when, sizeof(when),
		                (double)(total - done) / rate);
	else
		snprintf(when, sizeof(when), "-:--");
	cli_buf_printf(&line, "\r%s ", p->label);
	if (total > 0) {
		const int width = 24;
		double frac = done >= total ? 1.0 : (double)done / (double)total;
		int fill = (int)(frac * width), i;

		cli_format_count(t, sizeof(t), total);
		cli_buf_addc(&line, '[');
		for (i = 0; i < width; i++)
			cli_buf_addc(&line, i < fill ? '#' : '.');
		cli_buf_printf(&line, "] %3d%%  %s/%s events", (int)(frac * 100),
		               d, t);
	} else {
		cli_buf_printf(&line, "%s events", d);
	}
	if (final)
		cli_buf_printf(&line, "  %s/s  in %s\033[K\n", r, when);
	else if (total > 0)
		cli_buf_printf(&line, "  %s/s  ETA %s\033[K", r, when);
	else
		cli_buf_printf(&line, "  %s/s  %s elapsed\033[K", r, when);
	fputs(line.p, stderr);
	free(line.p);
}

static void *progress_main(void *arg)
{
	progress *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 250000000L;
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->wake, &p->lock, &ts);
		if (!p->stop) {
			pthread_mutex_unlock(&p->lock);
			progress_render(p, 0);
			pthread_mutex_lock(&p->lock);
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

void progress_start(progress *p, const char *label, int64_t total)
{
	memset(p, 0, sizeof(*p));
	p->label = label;
	atomic_init(&p->done, 0);
	atomic_init(&p->total, total);
	p->start = cli_now_s();
	if (!isatty(STDERR_FILENO))
		return;
	pthread_mutex_init(&p->lock, NULL);
	pthread_cond_init(&p->wake, NULL);
	p->active = pthread_create(&p->thread, NULL, progress_main, p) == 0;
}

void progress_add(progress *p, int64_t n)
{
	atomic_fetch_add(&p->done, n);
}

void progress_stop(progress *p, int ok)
{
	if (!p->active)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_signal(&p->wake);
	pthread_mutex_unlock(&p->lock);
	pthread_join(p->thread, NULL);
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->wake);
	if (ok)
		progress_render(p, 1);
	else
		fputs("\r\033[K", stderr);
	p->active = 0;
}
