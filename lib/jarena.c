/*
 * jarena.c - jansson's memory cut from blocks; see jarena.h.
 *
 * Every allocation jansson asks for carries one word in front of it: a
 * tag saying whether it came from malloc() (freed one by one, as before)
 * or from a block (freed with its block).  The blocks form a chain in the
 * order they were started; a mark pins the blocks its allocations went
 * to, which are consecutive in the chain, since marks do not nest and
 * only an open mark allocates.  A block no mark pins is reset in place if
 * it is the one being filled, else kept as a spare or freed.
 *
 * Under AddressSanitizer, the unused and the released parts of a block
 * are poisoned and allocations are kept apart by a poisoned gap, so a
 * tree used after its release, or written past its end, is reported as
 * it would be on the heap.
 */
#include "jarena.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define JARENA_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define JARENA_ASAN 1
#endif
#endif

#ifdef JARENA_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n)   ASAN_POISON_MEMORY_REGION((p), (n))
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#define GAP            16
#else
#define POISON(p, n)   ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#define GAP            0
#endif

/* A block holds the trees of about twenty events of 400 bytes. */
#define BLOCK_DATA (64 * 1024 - sizeof(struct jblock))
#define SPARE_MAX  16
#define TAG_HEAP   UINT64_C(0x6f74686561700001)
#define TAG_BLOCK  UINT64_C(0x6f74626c6b000002)
#define HDR        sizeof(uint64_t)

struct jblock {
	struct jblock *prev, *next; /* in the chain, or next spare */
	size_t used, cap;           /* bytes of data[] */
	size_t pins;                /* marks holding allocations here */
	uint64_t data[];            /* 8-byte aligned, as jansson needs */
};

static struct {
	bool installed;
	struct jarena_mark *open;
	struct jblock *head, *tail; /* the chain; tail is being filled */
	struct jblock *spare;
	unsigned n_spare;
	size_t bytes;
} ja;

static void block_unlink(struct jblock *b)
{
	if (b->prev != NULL)
		b->prev->next = b->next;
	else
		ja.head = b->next;
	if (b->next != NULL)
		b->next->prev = b->prev;
	else
		ja.tail = b->prev;
	b->prev = b->next = NULL;
}

/* No mark holds b: reset it if it is being filled, else put it away. */
static void block_retire(struct jblock *b)
{
	POISON(b->data, b->cap);
	if (b == ja.tail) {
		b->used = 0;
		return;
	}
	block_unlink(b);
	if (b->cap == BLOCK_DATA && ja.n_spare < SPARE_MAX) {
		b->next = ja.spare;
		ja.spare = b;
		ja.n_spare++;
		return;
	}
	ja.bytes -= sizeof(*b) + b->cap;
	free(b);
}

/* A block with room for need bytes, at the end of the chain, pinned. */
static struct jblock *block_start(size_t need)
{
	struct jblock *b, *old = ja.tail;
	if (need <= BLOCK_DATA && ja.spare != NULL) {
		b = ja.spare;
		ja.spare = b->next;
		ja.n_spare--;
	} else {
		size_t cap = need > BLOCK_DATA ? need : BLOCK_DATA;
		b = malloc(sizeof(*b) + cap);
		if (b == NULL)
			return NULL;
		b->cap = cap;
		ja.bytes += sizeof(*b) + cap;
		POISON(b->data, cap);
	}
	b->used = 0;
	b->pins = 1;
	b->next = NULL;
	b->prev = old;
	if (old != NULL)
		old->next = b;
	else
		ja.head = b;
	ja.tail = b;
	/* The block given up may hold nothing anyone needs. */
	if (old != NULL && old->pins == 0)
		block_retire(old);
	return b;
}

static void *block_alloc(size_t n)
{
	struct jarena_mark *m = ja.open;
	size_t need = HDR + ((n + 7) & ~(size_t)7) + GAP;
	struct jblock *b = ja.tail;

	if (b == NULL || b->cap - b->used < need) {
		b = block_start(need);
		if (b == NULL)
			return NULL;
		if (m->first == NULL)
			m->first = b;
		m->last = b;
	} else if (m->last != b) {
		/* The first allocation of this mark, in a block begun earlier. */
		b->pins++;
		m->first = m->last = b;
	}
	uint64_t *h = (uint64_t *)((char *)b->data + b->used);
	b->used += need;
	UNPOISON(h, HDR + n);
	*h = TAG_BLOCK;
	return h + 1;
}

static void *ja_malloc(size_t n)
{
	if (ja.open != NULL)
		return block_alloc(n);
	uint64_t *h = malloc(HDR + n);
	if (h == NULL)
		return NULL;
	*h = TAG_HEAP;
	return h + 1;
}

static void ja_free(void *p)
{
	if (p == NULL)
		return;
	uint64_t *h = (uint64_t *)p - 1;
	if (*h == TAG_HEAP)
		free(h);
	else if (*h != TAG_BLOCK)
		abort(); /* not jansson's: a heap corruption, stop here */
}

void jarena_install(void)
{
	if (ja.installed)
		return;
	json_set_alloc_funcs(ja_malloc, ja_free);
	ja.installed = true;
}

int jarena_installed(void)
{
	return ja.installed;
}

void jarena_open(struct jarena_mark *m)
{
	if (ja.open != NULL)
		abort(); /* marks do not nest */
	m->first = m->last = NULL;
	if (ja.installed)
		ja.open = m;
}

void jarena_close(struct jarena_mark *m)
{
	if (ja.open == m)
		ja.open = NULL;
}

void jarena_release(struct jarena_mark *m)
{
	struct jblock *b = m->first;
	while (b != NULL) {
		struct jblock *next = b->next;
		bool last = b == m->last;
		if (--b->pins == 0)
			block_retire(b);
		if (last)
			break;
		b = next;
	}
	m->first = m->last = NULL;
}

void jarena_shutdown(void)
{
	while (ja.spare != NULL) {
		struct jblock *b = ja.spare;
		ja.spare = b->next;
		ja.bytes -= sizeof(*b) + b->cap;
		free(b);
	}
	ja.n_spare = 0;
	/* The block being filled goes too unless a mark holds it: a pinned
	 * block is still someone's. */
	if (ja.tail != NULL && ja.tail->pins == 0) {
		struct jblock *b = ja.tail;
		block_unlink(b);
		ja.bytes -= sizeof(*b) + b->cap;
		free(b);
	}
}

size_t jarena_bytes(void)
{
	return ja.bytes;
}

void json_text_free(char *s)
{
	json_free_t f;
	json_get_alloc_funcs(NULL, &f);
	f(s);
}
