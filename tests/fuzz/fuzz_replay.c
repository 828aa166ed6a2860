/* SPDX-License-Identifier: ISC */
/*
 * fuzz_replay.c - run a fuzz target over files, without libFuzzer.
 *
 * Linked with one fuzz_*.c in place of libFuzzer's main, so builds whose
 * compiler cannot fuzz (the gcc builds of tools/test-all, plain and with
 * sanitizers) still run every file of the seed corpus through the target
 * and its checks: the corpus is a regression test everywhere, and a crash
 * input copied into it stays fixed.  Arguments are files or folders (their
 * regular files, in name order, not recursive).  Exit 0 when every input
 * ran; a failed check aborts, as under libFuzzer.
 */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Read a whole file; NULL (with a message) when it cannot be read. */
static uint8_t *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t cap = 0, n = 0;

	if (f == NULL) {
		fprintf(stderr, "fuzz_replay: %s: %s\n", path, strerror(errno));
		return NULL;
	}
	for (;;) {
		if (n == cap) {
			cap = cap ? cap * 2 : 4096;
			uint8_t *nb = realloc(buf, cap);
			if (nb == NULL)
				abort();
			buf = nb;
		}
		size_t r = fread(buf + n, 1, cap - n, f);
		n += r;
		if (r == 0)
			break;
	}
	if (ferror(f)) {
		fprintf(stderr, "fuzz_replay: %s: read error\n", path);
		free(buf);
		buf = NULL;
	}
	fclose(f);
	*len = n;
	return buf;
}

/* Run the target on one file; 0 when it could not be read, else 1. */
static int run_file(const char *path)
{
	size_t len = 0;
	uint8_t *buf = slurp(path, &len);

	if (buf == NULL)
		return 0;
	LLVMFuzzerTestOneInput(buf, len);
	free(buf);
	return 1;
}

/* Order names bytewise, for scandir. */
static int by_name(const struct dirent **a, const struct dirent **b)
{
	return strcmp((*a)->d_name, (*b)->d_name);
}

int main(int argc, char **argv)
{
	int ran = 0, bad = 0;

	for (int i = 1; i < argc; i++) {
		struct stat st;
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "fuzz_replay: %s: %s\n", argv[i], strerror(errno));
			bad++;
			continue;
		}
		if (!S_ISDIR(st.st_mode)) {
			if (run_file(argv[i]))
				ran++;
			else
				bad++;
			continue;
		}
		struct dirent **names;
		int n = scandir(argv[i], &names, NULL, by_name);
		if (n < 0) {
			fprintf(stderr, "fuzz_replay: %s: %s\n", argv[i], strerror(errno));
			bad++;
			continue;
		}
		for (int k = 0; k < n; k++) {
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", argv[i], names[k]->d_name);
			if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
				if (run_file(path))
					ran++;
				else
					bad++;
			}
			free(names[k]);
		}
		free(names);
	}
	printf("fuzz_replay: %d inputs ran, %d could not be read\n", ran, bad);
	return bad > 0 || ran == 0 ? 1 : 0;
}
