/* Helpers shared by every test runner. */
#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <time.h>

#include "common/testutil.h"

int tu_names(const char *msg, const char *word)
{
	size_t n = strlen(word);
	const char *p;

	if (msg == NULL)
		return 0;
	for (p = strstr(msg, word); p != NULL; p = strstr(p + 1, word)) {
		int before = p > msg && (isalnum((unsigned char)p[-1]) ||
		                         p[-1] == '_');
		int after = isalnum((unsigned char)p[n]) || p[n] == '_';

		if (!before && !after)
			return 1;
	}
	return 0;
}

int64_t tu_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void tu_sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	if (ms > 0)
		while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
			;
}

uint64_t tu_rand(uint64_t *state)
{
	uint64_t x = *state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*state = x;
	return x * 0x2545F4914F6CDD1DULL;
}
