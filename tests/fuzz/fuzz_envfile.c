/* libFuzzer target: envfile_parse on arbitrary bytes.
 *
 * Beyond "no crash, no leak" (ASan/LSan/UBSan), it checks the parser's own
 * promises: every entry has a valid key and a NUL-free value, and a problem
 * line never quotes file text (a value may be a password), which we test by
 * planting a marker no problem text can contain by accident. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "envfile.h"
#include "problems.h"

static int key_ok(const char *k)
{
	if (k == NULL || *k == '\0' || (*k >= '0' && *k <= '9'))
		return 0;
	for (; *k != '\0'; k++)
		if (!((*k >= 'A' && *k <= 'Z') || (*k >= 'a' && *k <= 'z') ||
		      (*k >= '0' && *k <= '9') || *k == '_'))
			return 0;
	return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct envfile ef;
	struct problems p = { NULL, 0 };
	/* The marker only ever comes from the input, so finding it in a
	 * problem line means the parser quoted file text. */
	static const char marker[] = "SECRETMARK";
	int rc = envfile_parse((const char *)data, size, "fuzz.env", &ef, &p);

	if (rc == 0 && p.n != 0)
		abort(); /* 0 means "no problem found" */
	for (size_t i = 0; i < ef.n; i++) {
		if (!key_ok(ef.entries[i].key) || ef.entries[i].value == NULL)
			abort();
		if (envfile_get(&ef, ef.entries[i].key) != ef.entries[i].value)
			abort(); /* later keys win: each key is stored once */
	}
	for (size_t i = 0; i < p.n; i++)
		if (strstr(p.lines[i], marker) != NULL)
			abort();
	envfile_free(&ef);
	problems_free(&p);
	return 0;
}
