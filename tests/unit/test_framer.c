/*
 * test_framer.c - unit tests for lib/framer.c.
 *
 * Every test feeds bytes through framer_scan exactly as the daemon does
 * (call again with the rest of the chunk until it is used up) and records
 * what came out as a transcript: "[text]" for each line, "!" for each
 * FRAMER_TOO_LONG.  Splitting the same input differently must never change
 * the transcript.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "framer.h"

/* What a run of the framer produced. */
struct sink {
	char *log;           /* transcript, NUL-terminated */
	size_t len;          /* bytes in log */
	size_t cap;          /* bytes allocated for log */
	int too_long;        /* FRAMER_TOO_LONG reports seen */
	size_t max_buffered; /* the largest f->len seen after any call */
};

/* Start an empty transcript. */
static void sink_init(struct sink *s)
{
	memset(s, 0, sizeof(*s));
	s->cap = 256;
	s->log = malloc(s->cap);
	assert_non_null(s->log);
	s->log[0] = '\0';
}

/* Release a transcript. */
static void sink_fini(struct sink *s)
{
	free(s->log);
	s->log = NULL;
}

/* Append n bytes to the transcript, growing it as needed. */
static void sink_put(struct sink *s, const char *p, size_t n)
{
	while (s->len + n + 1 > s->cap) {
		s->cap *= 2;
		s->log = realloc(s->log, s->cap);
		assert_non_null(s->log);
	}
	memcpy(s->log + s->len, p, n);
	s->len += n;
	s->log[s->len] = '\0';
}

/* Feed one chunk the way the daemon does, recording every outcome. */
static void feed(struct framer *f, const char *chunk, size_t n, struct sink *s)
{
	size_t off = 0;

	while (off < n) {
		enum framer_status st = FRAMER_MORE;
		struct frame fr = {NULL, 0};
		size_t used = framer_scan(f, chunk + off, n - off, &st, &fr);

		assert_true(used > 0);
		assert_true(used <= n - off);
		switch (st) {
		case FRAMER_LINE:
			assert_true(fr.len <= f->max_line);
			sink_put(s, "[", 1);
			sink_put(s, fr.data, fr.len);
			sink_put(s, "]", 1);
			break;
		case FRAMER_TOO_LONG:
			s->too_long++;
			sink_put(s, "!", 1);
			break;
		case FRAMER_MORE:
			assert_int_equal(used, n - off);
			break;
		}
		off += used;
		if (f->len > s->max_buffered)
			s->max_buffered = f->len;
	}
}

/* Feed a NUL-terminated string as one chunk. */
static void feed_str(struct framer *f, const char *str, struct sink *s)
{
	feed(f, str, strlen(str), s);
}

/* Run input through a fresh framer in chunks of at most step bytes; return the transcript. */
static char *run_chunks(const char *in, size_t n, size_t max_line, size_t step, int *too_long)
{
	struct framer f;
	struct sink s;

	framer_init(&f, max_line);
	sink_init(&s);
	for (size_t off = 0; off < n; off += step)
		feed(&f, in + off, (n - off < step) ? n - off : step, &s);
	assert_false(framer_partial(&f));
	if (too_long != NULL)
		*too_long = s.too_long;
	framer_fini(&f);
	return s.log;
}

/* Check that in, fed in steps of step bytes, gives want. */
static void expect_chunks(const char *in, size_t max_line, size_t step, const char *want)
{
	char *got = run_chunks(in, strlen(in), max_line, step, NULL);
	assert_string_equal(got, want);
	free(got);
}

/* A single line, with and without data after it. */
static void test_one_line(void **state)
{
	struct framer f;
	enum framer_status st;
	struct frame fr;
	const char in[] = "{\"type\":\"ping\"}\nrest";
	(void)state;

	framer_init(&f, 1024);
	size_t used = framer_scan(&f, in, sizeof(in) - 1, &st, &fr);
	assert_int_equal(st, FRAMER_LINE);
	assert_int_equal(used, 16);
	assert_int_equal(fr.len, 15);
	assert_memory_equal(fr.data, "{\"type\":\"ping\"}", 15);
	/* A line wholly inside the chunk is returned in place. */
	assert_ptr_equal(fr.data, in);

	used = framer_scan(&f, in + 16, 4, &st, &fr);
	assert_int_equal(st, FRAMER_MORE);
	assert_int_equal(used, 4);
	assert_true(framer_partial(&f));
	framer_fini(&f);
}

/* Several lines inside one chunk come out one per call, in order. */
static void test_several_lines_one_chunk(void **state)
{
	(void)state;
	expect_chunks("a\nbb\n\nccc\n", 64, 1000, "[a][bb][][ccc]");
}

/* The same multi-line input split at every position, and every pair, gives the same lines. */
static void test_split_everywhere(void **state)
{
	const char in[] = "{\"a\":1}\r\n\nline two\nx\r\n\r\n{\"k\":\"v\\n\"}\nlast";
	const size_t n = sizeof(in) - 1 - 4; /* without the unfinished "last" */
	const char *want = "[{\"a\":1}][][line two][x][][{\"k\":\"v\\n\"}]";
	(void)state;

	for (size_t i = 0; i <= n; i++) {
		struct framer f;
		struct sink s;
		framer_init(&f, 64);
		sink_init(&s);
		feed(&f, in, i, &s);
		feed(&f, in + i, n - i, &s);
		assert_string_equal(s.log, want);
		assert_false(framer_partial(&f));
		sink_fini(&s);
		framer_fini(&f);
	}
	for (size_t i = 0; i <= n; i++) {
		for (size_t j = i; j <= n; j++) {
			struct framer f;
			struct sink s;
			framer_init(&f, 64);
			sink_init(&s);
			feed(&f, in, i, &s);
			feed(&f, in + i, j - i, &s);
			feed(&f, in + j, n - j, &s);
			assert_string_equal(s.log, want);
			sink_fini(&s);
			framer_fini(&f);
		}
	}
	/* One byte at a time, then with the unfinished tail left over. */
	char *got = run_chunks(in, n, 64, 1, NULL);
	assert_string_equal(got, want);
	free(got);

	struct framer f;
	struct sink s;
	framer_init(&f, 64);
	sink_init(&s);
	for (size_t i = 0; i < sizeof(in) - 1; i++)
		feed(&f, in + i, 1, &s);
	assert_string_equal(s.log, want);
	assert_true(framer_partial(&f));
	feed_str(&f, "\n", &s);
	assert_string_equal(s.log + strlen(want), "[last]");
	sink_fini(&s);
	framer_fini(&f);
}

/* CRLF ends a line like LF, also when CR and LF arrive in different chunks. */
static void test_crlf(void **state)
{
	struct framer f;
	struct sink s;
	(void)state;

	expect_chunks("a\r\nb\r\n", 64, 1000, "[a][b]");
	/* A CR not followed by LF is data; only the last CR before LF goes. */
	expect_chunks("a\rb\n", 64, 1000, "[a\rb]");
	expect_chunks("a\r\r\n", 64, 1000, "[a\r]");
	expect_chunks("\r\n", 64, 1000, "[]");

	framer_init(&f, 64);
	sink_init(&s);
	feed_str(&f, "abc\r", &s);
	assert_string_equal(s.log, "");
	assert_true(framer_partial(&f));
	feed_str(&f, "\nnext\r", &s);
	feed_str(&f, "\n", &s);
	assert_string_equal(s.log, "[abc][next]");
	/* CR alone in its chunk, the line before it carried. */
	feed_str(&f, "xy", &s);
	feed_str(&f, "\r", &s);
	feed_str(&f, "\n", &s);
	assert_string_equal(s.log, "[abc][next][xy]");
	/* A line of just CR, split. */
	feed_str(&f, "\r", &s);
	feed_str(&f, "\n", &s);
	assert_string_equal(s.log, "[abc][next][xy][]");
	sink_fini(&s);
	framer_fini(&f);
}

/* Empty lines come out as lines of length 0. */
static void test_empty_lines(void **state)
{
	struct framer f;
	enum framer_status st;
	struct frame fr = {NULL, 99};
	(void)state;

	framer_init(&f, 16);
	size_t used = framer_scan(&f, "\n\n", 2, &st, &fr);
	assert_int_equal(used, 1);
	assert_int_equal(st, FRAMER_LINE);
	assert_int_equal(fr.len, 0);
	framer_fini(&f);
	expect_chunks("\n\n\n", 16, 1, "[][][]");

	/* An empty line at the start of a chunk looks at no byte before the chunk,
	 * even when the byte there is a CR. */
	static const char crlf[] = "\r\n";
	framer_init(&f, 16);
	used = framer_scan(&f, crlf + 1, 1, &st, &fr);
	assert_int_equal(used, 1);
	assert_int_equal(st, FRAMER_LINE);
	assert_int_equal(fr.len, 0);
	framer_fini(&f);
}

/* Build a string of n copies of c followed by tail; caller frees. */
static char *make_line(size_t n, char c, const char *tail)
{
	size_t t = strlen(tail);
	char *p = malloc(n + t + 1);
	assert_non_null(p);
	memset(p, c, n);
	memcpy(p + n, tail, t + 1);
	return p;
}

/* max_line bytes pass; max_line+1 is reported once and skipped, whatever the chunking. */
static void test_max_line_boundary(void **state)
{
	const size_t max = 32;
	const size_t steps[] = {1, 2, 3, 7, 32, 33, 34, 1000};
	(void)state;

	char *exact = make_line(max, 'a', "\nok\n");
	char *exact_crlf = make_line(max, 'a', "\r\nok\n");
	char *over = make_line(max + 1, 'b', "\nok\n");
	char *over_crlf = make_line(max + 1, 'b', "\r\nok\n");
	char *way_over = make_line(5 * max, 'c', "\nok\n\n");
	/* "[" + max a's + "][ok]" */
	char *want_exact = malloc(max + 8);
	assert_non_null(want_exact);
	want_exact[0] = '[';
	memset(want_exact + 1, 'a', max);
	memcpy(want_exact + 1 + max, "][ok]", 6);

	for (size_t k = 0; k < sizeof(steps) / sizeof(steps[0]); k++) {
		int tl = -1;
		char *got = run_chunks(exact, strlen(exact), max, steps[k], &tl);
		assert_string_equal(got, want_exact);
		assert_int_equal(tl, 0);
		free(got);

		got = run_chunks(exact_crlf, strlen(exact_crlf), max, steps[k], &tl);
		assert_string_equal(got, want_exact);
		assert_int_equal(tl, 0);
		free(got);

		got = run_chunks(over, strlen(over), max, steps[k], &tl);
		assert_string_equal(got, "![ok]");
		assert_int_equal(tl, 1);
		free(got);

		got = run_chunks(over_crlf, strlen(over_crlf), max, steps[k], &tl);
		assert_string_equal(got, "![ok]");
		assert_int_equal(tl, 1);
		free(got);

		got = run_chunks(way_over, strlen(way_over), max, steps[k], &tl);
		assert_string_equal(got, "![ok][]");
		assert_int_equal(tl, 1);
		free(got);
	}
	free(exact);
	free(exact_crlf);
	free(over);
	free(over_crlf);
	free(way_over);
	free(want_exact);
}

/* An over-long line carried with a CR, then its LF: still too long, reported once. */
static void test_too_long_cr_split(void **state)
{
	struct framer f;
	struct sink s;
	(void)state;

	framer_init(&f, 4);
	sink_init(&s);
	feed_str(&f, "abcd\r", &s); /* max_line + 1 bytes carried: may still be "abcd" */
	assert_string_equal(s.log, "");
	feed_str(&f, "\n", &s);
	assert_string_equal(s.log, "[abcd]");
	feed_str(&f, "abcde", &s); /* max_line + 1 without CR: too long already */
	assert_string_equal(s.log, "[abcd]!");
	feed_str(&f, "\r\n", &s);
	assert_string_equal(s.log, "[abcd]!");
	feed_str(&f, "abc", &s); /* the same, the byte over the limit in a chunk of its own */
	feed_str(&f, "d", &s);
	feed_str(&f, "e", &s);
	assert_string_equal(s.log, "[abcd]!!");
	feed_str(&f, "\n", &s);
	feed_str(&f, "abcd\r", &s);
	feed_str(&f, "x\n", &s); /* the CR was data after all */
	assert_string_equal(s.log, "[abcd]!!!");
	feed_str(&f, "z\n", &s);
	assert_string_equal(s.log, "[abcd]!!![z]");
	assert_int_equal(s.too_long, 3);
	/* max_line + 2 carried bytes can be no line at all: reported at once, not carried. */
	feed_str(&f, "abc", &s);
	feed_str(&f, "def", &s);
	assert_string_equal(s.log, "[abcd]!!![z]!");
	assert_true(s.max_buffered <= 5);
	feed_str(&f, "\n", &s);
	assert_int_equal(s.too_long, 4);
	sink_fini(&s);
	framer_fini(&f);
}

/* 10 MB without a newline in 4 KiB chunks: bounded memory, one report, then recovery. */
static void test_flood_without_newline(void **state)
{
	const size_t max = 64 * 1024;
	const size_t chunk = 4096;
	const size_t total = 10 * 1024 * 1024;
	char *buf = malloc(chunk);
	struct framer f;
	struct sink s;
	(void)state;

	assert_non_null(buf);
	memset(buf, 'x', chunk);
	framer_init(&f, max);
	sink_init(&s);
	for (size_t sent = 0; sent < total; sent += chunk) {
		feed(&f, buf, chunk, &s);
		assert_true(f.len <= max + 1);
		assert_true(framer_partial(&f));
	}
	assert_int_equal(s.too_long, 1);
	assert_true(s.max_buffered <= max + 1);
	assert_string_equal(s.log, "!");
	feed_str(&f, "tail\r\n{\"type\":\"ping\"}\n", &s);
	assert_string_equal(s.log, "![{\"type\":\"ping\"}]");
	assert_int_equal(s.too_long, 1);
	assert_false(framer_partial(&f));
	sink_fini(&s);
	framer_fini(&f);
	free(buf);
}

/* framer_partial is true exactly between the start and the end of a line. */
static void test_partial(void **state)
{
	struct framer f;
	struct sink s;
	(void)state;

	framer_init(&f, 8);
	sink_init(&s);
	assert_false(framer_partial(&f));
	feed_str(&f, "ab", &s);
	assert_true(framer_partial(&f));
	feed_str(&f, "c\n", &s);
	assert_false(framer_partial(&f));
	feed_str(&f, "0123456789", &s); /* over-long, now skipping */
	assert_true(framer_partial(&f));
	feed_str(&f, "more", &s);
	assert_true(framer_partial(&f));
	feed_str(&f, "\n", &s);
	assert_false(framer_partial(&f));
	assert_string_equal(s.log, "[abc]!");
	sink_fini(&s);
	framer_fini(&f);
}

/* framer_set_max changes the limit and keeps a partial line's bytes. */
static void test_set_max(void **state)
{
	struct framer f;
	struct sink s;
	(void)state;

	framer_init(&f, 100);
	sink_init(&s);
	framer_set_max(&f, 4);
	feed_str(&f, "12345\n1234\n", &s);
	assert_string_equal(s.log, "![1234]");

	/* Grow while a line is partial; the line may then use the new limit. */
	feed_str(&f, "ab", &s);
	framer_set_max(&f, 8);
	assert_true(framer_partial(&f));
	feed_str(&f, "cdefgh\n", &s);
	assert_string_equal(s.log, "![1234][abcdefgh]");

	/* Grow with a partial line, then fill the carry to max_line + 1 with a CR. */
	framer_set_max(&f, 4);
	feed_str(&f, "ab", &s);
	framer_set_max(&f, 8);
	feed_str(&f, "cdefgh\r", &s);
	feed_str(&f, "\n", &s);
	assert_string_equal(s.log, "![1234][abcdefgh][abcdefgh]");

	/* Shrink below a partial line: it is too long at once (said by the
	 * return), and skipped to its newline. */
	feed_str(&f, "abcdef", &s);
	assert_true(framer_set_max(&f, 3));
	assert_true(framer_partial(&f));
	feed_str(&f, "g\nxyz\n", &s);
	assert_string_equal(s.log, "![1234][abcdefgh][abcdefgh][xyz]");
	/* To just over the new limit: a CR there may still end it; another
	 * byte does not. */
	framer_set_max(&f, 8);
	feed_str(&f, "abcd\r", &s);
	assert_false(framer_set_max(&f, 4));
	feed_str(&f, "\n", &s);
	assert_string_equal(s.log, "![1234][abcdefgh][abcdefgh][xyz][abcd]");
	framer_set_max(&f, 8);
	feed_str(&f, "abcde", &s);
	assert_true(framer_set_max(&f, 4));
	feed_str(&f, "\nxyz\n", &s);
	assert_string_equal(s.log, "![1234][abcdefgh][abcdefgh][xyz][abcd][xyz]");
	framer_set_max(&f, 3);

	/* Same limit again is a no-op. */
	feed_str(&f, "xy", &s);
	assert_false(framer_set_max(&f, 3));
	feed_str(&f, "z\n", &s);
	assert_string_equal(s.log, "![1234][abcdefgh][abcdefgh][xyz][abcd][xyz][xyz]");
	sink_fini(&s);
	framer_fini(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_one_line),
	    cmocka_unit_test(test_several_lines_one_chunk),
	    cmocka_unit_test(test_split_everywhere),
	    cmocka_unit_test(test_crlf),
	    cmocka_unit_test(test_empty_lines),
	    cmocka_unit_test(test_max_line_boundary),
	    cmocka_unit_test(test_too_long_cr_split),
	    cmocka_unit_test(test_flood_without_newline),
	    cmocka_unit_test(test_partial),
	    cmocka_unit_test(test_set_max),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
