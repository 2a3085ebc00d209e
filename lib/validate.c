/* Argument checks shared by the front end and the event constructors. */
#include <string.h>
#include <time.h>

#include "common_int.h"

int evs__utf8_valid(const char *str, size_t len)
{
	const unsigned char *s = (const unsigned char *)str;
	size_t i = 0;

	while (i < len) {
		unsigned char c = s[i];
		uint32_t cp;
		size_t n, k;

		if (c < 0x80) {
			i++;
			continue;
		} else if (c >= 0xC2 && c <= 0xDF) {
			n = 1;
			cp = c & 0x1F;
		} else if (c >= 0xE0 && c <= 0xEF) {
			n = 2;
			cp = c & 0x0F;
		} else if (c >= 0xF0 && c <= 0xF4) {
			n = 3;
			cp = c & 0x07;
		} else {
			return 0; /* continuation byte, overlong lead or > U+10FFFF */
		}
		if (len - i <= n)
			return 0;
		for (k = 1; k <= n; k++) {
			if ((s[i + k] & 0xC0) != 0x80)
				return 0;
			cp = (cp << 6) | (s[i + k] & 0x3F);
		}
		if ((n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
			return 0;
		i += n + 1;
	}
	return 1;
}

/* C0 controls, DEL, and the C1 controls U+0080..U+009F (UTF-8 C2 80..9F). */
static const char *find_control(const char *value, size_t len)
{
	const unsigned char *s = (const unsigned char *)value;
	size_t i;

	for (i = 0; i < len; i++) {
		if (s[i] < 0x20 || s[i] == 0x7F)
			return value + i;
		if (s[i] == 0xC2 && i + 1 < len && s[i + 1] >= 0x80 &&
		    s[i + 1] <= 0x9F)
			return value + i;
	}
	return NULL;
}

int evs__check_name(const char *what, const char *value, evs_error *err)
{
	const char *ctl;
	size_t len;

	if (value == NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s must not be NULL", what);
	len = strnlen(value, EVS_ID_MAX + 1);
	if (len == 0)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s must not be empty", what);
	if (len > EVS_ID_MAX)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s is longer than %d bytes", what,
		                     EVS_ID_MAX);
	if (!evs__utf8_valid(value, len))
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s is not valid UTF-8", what);
	ctl = find_control(value, len);
	if (ctl != NULL)
		return evs_error_set(err, EVS_EINVALID, NULL,
		                     "%s contains a control character at byte %zu",
		                     what, (size_t)(ctl - value));
	return 0;
}

uint64_t evs__hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s) {
		h ^= (unsigned char)*s++;
		h *= 1099511628211ull;
	}
	return h;
}

int64_t evs__now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}
