/* Helpers shared by every test runner. */
#include <ctype.h>
#include <string.h>

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
