/*
 * test_jarena.c - trees parsed under a mark live in blocks until the mark
 * is released; blocks are reused, and given back when no mark holds them.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "jarena.h"

static const char event[] = "{\"type\":\"order.created\",\"id\":\"e1\",\"order\":\"ORD-1\","
                            "\"lines\":[{\"sku\":\"A\",\"quantity\":5,\"unit_price\":4.5},"
                            "{\"sku\":\"B\",\"quantity\":7,\"unit_price\":9.25}]}";

static json_t *parse(const char *text)
{
	json_error_t err;
	json_t *j = json_loads(text, 0, &err);
	assert_non_null(j);
	return j;
}

static int setup(void **state)
{
	(void)state;
	jarena_install();
	return 0;
}

/* What a tree parsed under a mark holds stays readable until release. */
static void test_tree_lives_until_release(void **state)
{
	(void)state;
	struct jarena_mark m;
	jarena_open(&m);
	json_t *j = parse(event);
	jarena_close(&m);
	assert_non_null(m.first);
	assert_true(m.first == m.last);
	/* Heap work between close and release does not touch the tree. */
	json_t *other = json_pack("{s:s}", "k", "v");
	json_decref(other);
	assert_string_equal(json_string_value(json_object_get(j, "order")), "ORD-1");
	json_t *lines = json_object_get(j, "lines");
	assert_int_equal(json_array_size(lines), 2);
	assert_int_equal(json_integer_value(json_object_get(json_array_get(lines, 1), "quantity")),
	                 7);
	jarena_release(&m);
	assert_null(m.first);
	assert_null(m.last);
	jarena_shutdown();
	assert_int_equal(jarena_bytes(), 0);
}

/* A mark with nothing allocated pins nothing. */
static void test_empty_mark(void **state)
{
	(void)state;
	struct jarena_mark m;
	jarena_open(&m);
	jarena_close(&m);
	assert_null(m.first);
	jarena_release(&m);
	assert_int_equal(jarena_bytes(), 0);
}

/*
 * Many trees held at once fill several blocks; released in any order,
 * the blocks come back, and a block is reused rather than a new one
 * started once every mark is released.
 */
static void test_blocks_come_back(void **state)
{
	(void)state;
	enum { N = 400 };
	struct jarena_mark *m = calloc(N, sizeof(*m));
	json_t **trees = calloc(N, sizeof(*trees));
	assert_non_null(m);
	assert_non_null(trees);
	for (int i = 0; i < N; i++) {
		jarena_open(&m[i]);
		trees[i] = parse(event);
		jarena_close(&m[i]);
	}
	size_t held = jarena_bytes();
	assert_true(held >= 2 * 64 * 1024); /* 400 trees need several blocks */
	assert_true(m[0].first != m[N - 1].first);
	/* Odd ones first, then even ones: every tree still reads back. */
	for (int pass = 1; pass >= 0; pass--) {
		for (int i = pass; i < N; i += 2) {
			assert_string_equal(json_string_value(json_object_get(trees[i], "id")),
			                    "e1");
			jarena_release(&m[i]);
		}
	}
	/* Only the block being filled and the spares remain. */
	assert_true(jarena_bytes() <= held);
	for (int round = 0; round < 3; round++) {
		size_t before = jarena_bytes();
		for (int i = 0; i < N; i++) {
			jarena_open(&m[i]);
			trees[i] = parse(event);
			jarena_close(&m[i]);
			jarena_release(&m[i]);
		}
		/* One tree at a time fits in one block, reused each time. */
		assert_int_equal(jarena_bytes(), before);
	}
	jarena_shutdown();
	assert_int_equal(jarena_bytes(), 0);
	free(m);
	free(trees);
}

/* A tree larger than a block gets a block of its own, freed on release. */
static void test_oversize_tree(void **state)
{
	(void)state;
	size_t n = 300 * 1024;
	char *text = malloc(n + 16);
	assert_non_null(text);
	memcpy(text, "{\"big\":\"", 8);
	memset(text + 8, 'x', n);
	memcpy(text + 8 + n, "\"}", 3);
	struct jarena_mark m;
	jarena_open(&m);
	json_t *j = parse(text);
	jarena_close(&m);
	assert_int_equal(json_string_length(json_object_get(j, "big")), n);
	assert_true(jarena_bytes() > n);
	jarena_release(&m);
	jarena_shutdown();
	assert_int_equal(jarena_bytes(), 0);
	free(text);
}

/* Outside a mark jansson uses the heap, freed node by node as before. */
static void test_heap_outside_marks(void **state)
{
	(void)state;
	json_t *j = parse(event);
	assert_int_equal(jarena_bytes(), 0);
	char *s = json_dumps(j, JSON_COMPACT);
	assert_non_null(s);
	assert_non_null(strstr(s, "\"ORD-1\""));
	json_text_free(s);
	json_decref(j);
	/* json_dumps under a mark: its text is freed the same way. */
	struct jarena_mark m;
	jarena_open(&m);
	json_t *k = parse(event);
	s = json_dumps(k, JSON_COMPACT);
	jarena_close(&m);
	assert_non_null(s);
	json_text_free(s);
	json_decref(k); /* harmless: the frees are left to the release */
	jarena_release(&m);
	jarena_shutdown();
	assert_int_equal(jarena_bytes(), 0);
}

/* A parse that fails under a mark leaves nothing behind after release. */
static void test_failed_parse(void **state)
{
	(void)state;
	struct jarena_mark m;
	json_error_t err;
	jarena_open(&m);
	json_t *j = json_loads("{\"a\":[1,2,{\"b\":", 0, &err);
	jarena_close(&m);
	assert_null(j);
	jarena_release(&m);
	jarena_shutdown();
	assert_int_equal(jarena_bytes(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tree_lives_until_release), cmocka_unit_test(test_empty_mark),
	    cmocka_unit_test(test_blocks_come_back),         cmocka_unit_test(test_oversize_tree),
	    cmocka_unit_test(test_heap_outside_marks),       cmocka_unit_test(test_failed_parse),
	};
	return cmocka_run_group_tests(tests, setup, NULL);
}
