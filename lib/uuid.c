/* UUIDs: version 7 generation from the kernel's random source, text forms. */
#include <errno.h>
#include <string.h>
#include <sys/random.h>

#include "common_int.h"

int evs_uuid_generate(evs_uuid *out, evs_error *err)
{
	unsigned char *b = out->bytes;
	int64_t us = evs__now_us();
	uint64_t ms = (uint64_t)us / 1000;
	/* RFC 9562 method 3: rand_a holds the sub-millisecond fraction, so
	 * ids made by one thread sort by time at microsecond resolution. */
	unsigned int sub = (unsigned int)(((uint64_t)us % 1000) * 4096 / 1000);
	size_t got = 0;

	while (got < 8) {
		ssize_t r = getrandom(b + 8 + got, 8 - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return evs_error_set(err, EVS_ERROR, NULL,
			                     "could not read the kernel's random "
			                     "source: %s", strerror(errno));
		}
		got += (size_t)r;
	}
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
