/* UUIDs: version 7 generation from the kernel's random source, text forms. */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/random.h>

#include "common_int.h"

/* Random bytes come from a per-thread pool filled by one getrandom() per
 * 32 ids: a system call per id was the larger part of building an event.
 * A child of fork() must not reuse its parent's pool (the two would make
 * the same ids): a fork handler moves a generation counter on, and a pool
 * of another generation is refilled. This is the library's only
 * process-wide state, and nothing outside this file sees it. */
#define POOL_BYTES 256

static atomic_uint fork_generation;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;

static _Thread_local struct {
	unsigned char bytes[POOL_BYTES];
	size_t used;
	unsigned int generation;
} pool = {{0}, POOL_BYTES, 0};

static void after_fork_in_child(void)
{
	atomic_fetch_add(&fork_generation, 1);
}

static void register_fork_handler(void)
{
	pthread_atfork(NULL, NULL, after_fork_in_child);
}

static int random8(unsigned char *out, evs_error *err)
{
	unsigned int gen;
	size_t got = 0;

	pthread_once(&atfork_once, register_fork_handler);
	gen = atomic_load(&fork_generation);
	if (pool.used + 8 > POOL_BYTES || pool.generation != gen) {
		while (got < POOL_BYTES) {
			ssize_t r = getrandom(pool.bytes + got,
			                      POOL_BYTES - got, 0);
			if (r < 0) {
				if (errno == EINTR)
					continue;
				pool.used = POOL_BYTES;
				return evs_error_set(err, EVS_ERROR, NULL,
				                     "could not read the kernel's "
				                     "random source: %s",
				                     strerror(errno));
			}
			got += (size_t)r;
		}
		pool.used = 0;
		pool.generation = gen;
	}
	memcpy(out, pool.bytes + pool.used, 8);
	/* Used bytes are not kept around. */
	memset(pool.bytes + pool.used, 0, 8);
	pool.used += 8;
	return 0;
}

int evs_uuid_generate(evs_uuid *out, evs_error *err)
{
	unsigned char *b = out->bytes;
	int64_t us = evs__now_us();
	uint64_t ms = (uint64_t)us / 1000;
	/* RFC 9562 method 3: rand_a holds the sub-millisecond fraction, so
	 * ids made by one thread sort by time at microsecond resolution. */
	unsigned int sub = (unsigned int)(((uint64_t)us % 1000) * 4096 / 1000);
	int rc;

	if ((rc = random8(b + 8, err)) < 0)
		return rc;
	b[0] = (unsigned char)(ms >> 40);
	b[1] = (unsigned char)(ms >> 32);
	b[2] = (unsigned char)(ms >> 24);
	b[3] = (unsigned char)(ms >> 16);
	b[4] = (unsigned char)(ms >> 8);
	b[5] = (unsigned char)ms;
	b[6] = (unsigned char)(0x70 | ((sub >> 8) & 0x0F));
	b[7] = (unsigned char)(sub & 0xFF);
	b[8] = (unsigned char)(0x80 | (b[8] & 0x3F));
	return 0;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int evs_uuid_parse(evs_uuid *out, const char *text, evs_error *err)
{
	evs_uuid id;
	size_t i, j = 0;
	char shown[41];

	evs__error_reset(err);
	if (out == NULL || text == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s must not be NULL",
		                     out == NULL ? "out" : "text");
	if (strnlen(text, EVS_UUID_STRLEN + 1) != EVS_UUID_STRLEN)
		goto bad;
	for (i = 0; i < EVS_UUID_STRLEN; i++) {
		int hi, lo;

		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (text[i] != '-')
				goto bad;
			continue;
		}
		hi = hexval(text[i]);
		lo = hexval(text[i + 1]);
		if (hi < 0 || lo < 0)
			goto bad;
		id.bytes[j++] = (unsigned char)(hi << 4 | lo);
		i++;
	}
	*out = id;
	return 0;
bad:
	/* Quote at most 40 bytes, printable ASCII only: one clean line. */
	for (i = 0; i < 40 && text[i] != '\0'; i++)
		shown[i] = text[i] >= 0x20 && text[i] < 0x7F ? text[i] : '?';
	shown[i] = '\0';
	return evs_error_set(err, EVS_EINVALID, NULL,
	                     "\"%s\" is not a UUID "
	                     "(xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx)", shown);
}

void evs_uuid_format(char *out, const evs_uuid *id)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, j = 0;

	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[j++] = '-';
		out[j++] = hex[id->bytes[i] >> 4];
		out[j++] = hex[id->bytes[i] & 0x0F];
	}
	out[j] = '\0';
}

int evs_uuid_equal(const evs_uuid *a, const evs_uuid *b)
{
	return memcmp(a->bytes, b->bytes, 16) == 0;
}
