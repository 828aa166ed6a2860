/* SPDX-License-Identifier: ISC */
/*
 * fuzz_check.c - the checks every fuzz target applies to a line; see
 * fuzz_check.h.
 *
 * Limits: the checks are what must hold for any input, so they cannot say
 * whether a particular line deserved the error it got (the unit tests in
 * tests/unit/test_request.c do that, line by line).  They catch crashes,
 * leaks and reads past the line (ASan), undefined behaviour (UBSan), and
 * broken promises: an unknown error code, a message that is not valid
 * UTF-8 or would not make a valid reply, an accepted event that breaks a
 * rule the parser claims to enforce, a canonical form that does not read
 * back as itself, and a fold whose result depends on the order of events.
 */
#include "fuzz_check.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonw.h"
#include "model.h"
#include "validate.h"

#define REPLY_MAX 512 /* the daemon's error reply buffer (daemon/conn.c) */
#define FUTURE_MS INT64_C(86400000)

/* Documents rules as in conf/ordertrackd.conf, so the fold checks anomalies too. */
static const char *const coffee_docs[] = {"phytosanitary", "certificate_of_origin"};
static const char *const chili_docs[] = {"phytosanitary", "certificate_of_origin",
                                         "quality_certificate"};
static const struct model_doc_rule doc_rules[] = {
    {.hs_prefix = "0901", .documents = (const char **)coffee_docs, .n_documents = 2},
    {.hs_prefix = "0904", .documents = (const char **)chili_docs, .n_documents = 3},
};
static const struct model_rules fold_rules = {.doc_rules = doc_rules, .n_doc_rules = 2};

static void check_error(const struct request *rq, const struct request_error *err);
static void check_accepted(const struct request *rq);
static void check_event(const struct request *rq);
static void check_canonical(const struct request *rq);
static void check_filter(const json_t *list, const char *name);
static size_t utf8_chars(const char *s);
static bool fold_has_id(const struct fuzz_fold *fold, const char *id);

void fuzz_fail(const char *file, int line, const char *cond, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "\n%s:%d: fuzz check failed: %s\n  ", file, line, cond);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	abort();
}

int fuzz_utf8_valid(const char *s, size_t len)
{
	const unsigned char *p = (const unsigned char *)s;
	size_t i = 0;

	while (i < len) {
		unsigned c = p[i];
		size_t n;
		unsigned cp, min;

		if (c < 0x80) {
			i++;
			continue;
		} else if ((c & 0xe0) == 0xc0) {
			n = 1, cp = c & 0x1f, min = 0x80;
		} else if ((c & 0xf0) == 0xe0) {
			n = 2, cp = c & 0x0f, min = 0x800;
		} else if ((c & 0xf8) == 0xf0) {
			n = 3, cp = c & 0x07, min = 0x10000;
		} else {
			return 0; /* a continuation byte first, or 0xf8..0xff */
		}
		if (len - i <= n)
			return 0;
		for (size_t k = 1; k <= n; k++) {
			if ((p[i + k] & 0xc0) != 0x80)
				return 0;
			cp = cp << 6 | (p[i + k] & 0x3f);
		}
		if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
			return 0;
		i += n + 1;
	}
	return 1;
}

/* Code points in a string already known to be valid UTF-8. */
static size_t utf8_chars(const char *s)
{
	size_t n = 0;
	for (; *s != '\0'; s++)
		n += ((unsigned char)*s & 0xc0) != 0x80;
	return n;
}

void fuzz_line(const char *line, size_t len, struct fuzz_fold *fold)
{
	struct request rq;
	struct request_error err;
	/* An exact-size copy, no NUL after it: a read past len is caught by
	 * ASan, and the request may not keep pointers into it. */
	char *copy = malloc(len > 0 ? len : 1);
	bool ok;

	if (copy == NULL)
		abort();
	if (len > 0)
		memcpy(copy, line, len);
	ok = request_parse(copy, len, FUZZ_NOW_MS, &rq, &err);
	memset(copy, '#', len);
	free(copy);

	if (!ok) {
		check_error(&rq, &err);
		return;
	}
	check_accepted(&rq);
	if (rq.kind == REQ_EVENT && fold != NULL && fold->n < FUZZ_FOLD_MAX &&
	    !fold_has_id(fold, rq.u.event.id)) {
		fold->rq[fold->n++] = rq; /* the fold owns the tree now */
		return;
	}
	request_clear(&rq);
}

/* A refused line: a known code, a usable message and id, a valid reply. */
static void check_error(const struct request *rq, const struct request_error *err)
{
	static const char *const codes[] = {ERR_MALFORMED_JSON, ERR_INVALID_REQUEST,
	                                    ERR_UNKNOWN_TYPE, ERR_INVALID_EVENT};
	bool known = false;
	size_t mlen;

	FUZZ_ASSERT(rq->root == NULL, "a refused line left a JSON tree behind");
	FUZZ_ASSERT(err->code != NULL, "a refused line has no error code");
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		known = known || strcmp(err->code, codes[i]) == 0;
	FUZZ_ASSERT(known, "request_parse gave the code \"%s\"", err->code);

	mlen = strnlen(err->message, sizeof(err->message));
	FUZZ_ASSERT(mlen > 0 && mlen < sizeof(err->message), "message length %zu", mlen);
	FUZZ_ASSERT(fuzz_utf8_valid(err->message, mlen), "message is not valid UTF-8: %s",
	            err->message);

	if (err->has_id) {
		size_t ilen = strnlen(err->id, sizeof(err->id));
		FUZZ_ASSERT(ilen < sizeof(err->id) && validate_event_id(err->id) == NULL,
		            "error carries an invalid id \"%.*s\"", (int)ilen, err->id);
	}
	FUZZ_ASSERT(!err->hello || strcmp(err->code, ERR_INVALID_REQUEST) == 0,
	            "a broken hello got \"%s\", not invalid_request", err->code);

	/* The reply the daemon would send (daemon/conn.c, format_error). */
	char buf[REPLY_MAX];
	struct jsonw w;
	json_error_t je;
	jsonw_init(&w, buf, sizeof(buf));
	jsonw_open(&w);
	jsonw_str(&w, "type", "error");
	jsonw_str(&w, "id", err->has_id ? err->id : NULL);
	jsonw_str(&w, "code", err->code);
	jsonw_str(&w, "message", err->message);
	size_t n = jsonw_close(&w);
	FUZZ_ASSERT(n > 0 && n <= sizeof(buf) && buf[n - 1] == '\n', "reply length %zu", n);
	FUZZ_ASSERT(memchr(buf, '\n', n - 1) == NULL, "reply holds a newline: %.*s", (int)n, buf);
	json_t *reply = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &je);
	FUZZ_ASSERT(reply != NULL, "error reply is not JSON (%s): %.*s", je.text, (int)n, buf);
	const char *code = json_string_value(json_object_get(reply, "code"));
	FUZZ_ASSERT(code != NULL && strcmp(code, err->code) == 0, "reply code: %.*s", (int)n, buf);
	if (!w.truncated) {
		const char *msg = json_string_value(json_object_get(reply, "message"));
		FUZZ_ASSERT(msg != NULL && strcmp(msg, err->message) == 0,
		            "reply message differs: %.*s", (int)n, buf);
	}
	json_decref(reply);
}

/* An accepted request: the members its kind promises. */
static void check_accepted(const struct request *rq)
{
	FUZZ_ASSERT(json_is_object(rq->root), "accepted request without an object");
	const char *type = json_string_value(json_object_get(rq->root, "type"));
	FUZZ_ASSERT(type != NULL, "accepted request without a type");

	switch (rq->kind) {
	case REQ_HELLO: {
		const char *who =
		    rq->u.hello.exporter ? rq->u.hello.exporter : rq->u.hello.operator;
		FUZZ_ASSERT(strcmp(type, "hello") == 0, "hello of type %s", type);
		FUZZ_ASSERT((rq->u.hello.exporter == NULL) != (rq->u.hello.operator== NULL),
		            "hello must name exactly one of exporter and operator");
		FUZZ_ASSERT(utf8_chars(who) >= 1 && utf8_chars(who) <= 64, "hello name \"%s\"",
		            who);
		FUZZ_ASSERT(rq->u.hello.token != NULL && utf8_chars(rq->u.hello.token) >= 1 &&
		                utf8_chars(rq->u.hello.token) <= 256,
		            "hello token length");
		break;
	}
	case REQ_PING:
		FUZZ_ASSERT(strcmp(type, "ping") == 0 && json_object_size(rq->root) == 1,
		            "ping of type %s with %zu members", type, json_object_size(rq->root));
		break;
	case REQ_SUBSCRIBE:
		FUZZ_ASSERT(strcmp(type, "subscribe") == 0, "subscribe of type %s", type);
		FUZZ_ASSERT(rq->u.subscribe.after >= 0, "after %lld", rq->u.subscribe.after);
		check_filter(rq->u.subscribe.kinds, "kinds");
		check_filter(rq->u.subscribe.orders, "orders");
		check_filter(rq->u.subscribe.exporters, "exporters");
		break;
	case REQ_EVENT:
		check_event(rq);
		check_canonical(rq);
		break;
	default:
		FUZZ_ASSERT(false, "unknown request kind %d", (int)rq->kind);
	}
}

/* A subscribe filter: absent, or a non-empty array of non-empty strings. */
static void check_filter(const json_t *list, const char *name)
{
	size_t i;
	const json_t *v;

	if (list == NULL)
		return;
	FUZZ_ASSERT(json_is_array(list) && json_array_size(list) > 0, "%s: not a filter", name);
	json_array_foreach(list, i, v)
	{
		FUZZ_ASSERT(json_is_string(v) && json_string_length(v) > 0, "%s[%zu]", name, i);
	}
}

/* An accepted event meets the envelope rules of PROTOCOL.md section 5.1. */
static void check_event(const struct request *rq)
{
	const struct request_event *ev = &rq->u.event;
	int64_t ms = 0;
	int off = 0;

	FUZZ_ASSERT(ev->type && ev->id && ev->order && ev->occurred_at, "envelope member missing");
	FUZZ_ASSERT(strcmp(ev->type, json_string_value(json_object_get(rq->root, "type"))) == 0,
	            "type %s", ev->type);
	FUZZ_ASSERT(validate_event_id(ev->id) == NULL, "accepted id \"%s\"", ev->id);
	FUZZ_ASSERT(validate_ref(ev->order) == NULL, "accepted order \"%s\"", ev->order);
	FUZZ_ASSERT(ev->shipment == NULL || validate_ref(ev->shipment) == NULL,
	            "accepted shipment \"%s\"", ev->shipment);
	if (strncmp(ev->type, "shipment.", 9) == 0)
		FUZZ_ASSERT(ev->shipment != NULL, "%s without a shipment", ev->type);
	if (strncmp(ev->type, "order.", 6) == 0 || strcmp(ev->type, "event.retracted") == 0)
		FUZZ_ASSERT(ev->shipment == NULL, "%s with a shipment", ev->type);
	FUZZ_ASSERT((ev->retracts != NULL) == (strcmp(ev->type, "event.retracted") == 0),
	            "retracts on %s", ev->type);
	FUZZ_ASSERT(ev->retracts == NULL || strcmp(ev->retracts, ev->id) != 0,
	            "a retraction of itself: %s", ev->id);
	FUZZ_ASSERT(validate_rfc3339(ev->occurred_at, &ms, &off) == NULL,
	            "accepted occurred_at \"%s\"", ev->occurred_at);
	FUZZ_ASSERT(ms == ev->occurred_ms && off == ev->offset_min,
	            "occurred_at %s read as %lld/%d, the validator says %lld/%d", ev->occurred_at,
	            (long long)ev->occurred_ms, ev->offset_min, (long long)ms, off);
	FUZZ_ASSERT(ev->occurred_ms <= FUZZ_NOW_MS + FUTURE_MS, "occurred_at %s is too far ahead",
	            ev->occurred_at);
	/* The microseconds COPY stores round what the milliseconds truncate,
	 * so they lie within the millisecond or on its end. */
	FUZZ_ASSERT(ev->occurred_us >= ev->occurred_ms * 1000 &&
	                ev->occurred_us <= ev->occurred_ms * 1000 + 1000,
	            "occurred_at %s: %lld us against %lld ms", ev->occurred_at,
	            (long long)ev->occurred_us, (long long)ev->occurred_ms);
}

/* The canonical form reads back as the same event, with the same canonical form. */
static void check_canonical(const struct request *rq)
{
	size_t n = 0, n2 = 0;
	char *s = request_event_canonical(rq, &n);
	json_error_t je;
	struct request rq2;
	struct request_error err2;

	FUZZ_ASSERT(s != NULL && strlen(s) == n, "canonical form missing or with a NUL");
	json_t *back = json_loadb(s, n, JSON_REJECT_DUPLICATES, &je);
	FUZZ_ASSERT(back != NULL, "canonical form is not JSON (%s): %s", je.text, s);
	FUZZ_ASSERT(json_equal(back, rq->root), "canonical form is another value: %s", s);
	json_decref(back);

	FUZZ_ASSERT(request_parse(s, n, FUZZ_NOW_MS, &rq2, &err2),
	            "canonical form refused (%s: %s): %s", err2.code, err2.message, s);
	char *s2 = request_event_canonical(&rq2, &n2);
	FUZZ_ASSERT(s2 != NULL && n2 == n && memcmp(s, s2, n) == 0,
	            "canonical form not stable:\n  %s\n  %s", s, s2 ? s2 : "(null)");
	free(s2);
	request_clear(&rq2);
	free(s);
}

/* Is an event with this id kept already? */
static bool fold_has_id(const struct fuzz_fold *fold, const char *id)
{
	for (size_t i = 0; i < fold->n; i++) {
		if (strcmp(fold->rq[i].u.event.id, id) == 0)
			return true;
	}
	return false;
}

/* Order events as the walk reads them: by instant, then id. */
static int walk_order(const void *pa, const void *pb)
{
	const struct model_event *a = pa, *b = pb;
	if (a->occurred_ms != b->occurred_ms)
		return a->occurred_ms < b->occurred_ms ? -1 : 1;
	return strcmp(a->id, b->id);
}

/*
 * Folding on from the walk of the first half (in walk order) with the
 * rest gives the whole fold (want), but for the lines when no
 * order.created is among the rest; a retraction on either side means no
 * walk or a refusal.
 */
static void fold_resume_check(const struct model_event *evs, size_t n, const json_t *want)
{
	struct model_event sorted[FUZZ_FOLD_MAX], part[FUZZ_FOLD_MAX];
	size_t k = n / 2;
	json_t *walk, *next;

	if (k == 0)
		return;
	memcpy(sorted, evs, n * sizeof(*evs));
	qsort(sorted, n, sizeof(*sorted), walk_order);
	for (size_t i = 1; i < n; i++)
		if (strcmp(sorted[i].id, sorted[i - 1].id) == 0)
			return; /* a repeated id: the daemon never folds on with one */
	memcpy(part, sorted, k * sizeof(*part));
	json_t *state = model_fold_save(part, k, &fold_rules, &walk);
	if (walk == NULL) {
		json_decref(state);
		return;
	}
	memcpy(part, sorted + k, (n - k) * sizeof(*part));
	json_t *got = model_fold_from(state, walk, part, n - k, &fold_rules, &next);
	if (got != NULL) {
		json_t *view = json_deep_copy(want);
		const struct model_event *latest = NULL;
		for (size_t i = 0; i < n; i++)
			if (strcmp(sorted[i].type, "order.created") == 0)
				latest = &sorted[i];
		if (latest != NULL && latest < sorted + k)
			json_object_set_new(view, "lines", json_null());
		if (!json_equal(view, got)) {
			char *ta = json_dumps(view, JSON_COMPACT | JSON_SORT_KEYS);
			char *tb = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS);
			FUZZ_ASSERT(false, "folding on from a walk differs:\n  %s\n  %s",
			            ta ? ta : "?", tb ? tb : "?");
		}
		json_decref(view);
	}
	json_decref(got);
	json_decref(next);
	json_decref(walk);
	json_decref(state);
}

void fuzz_fold_init(struct fuzz_fold *fold)
{
	fold->n = 0;
}

void fuzz_fold_run(struct fuzz_fold *fold)
{
	struct model_event fwd[FUZZ_FOLD_MAX], rev[FUZZ_FOLD_MAX];
	size_t n = fold->n;

	if (n == 0)
		return;
	for (size_t i = 0; i < n; i++) {
		const struct request_event *ev = &fold->rq[i].u.event;
		fwd[i] = (struct model_event){.id = ev->id,
		                              .type = ev->type,
		                              .occurred_ms = ev->occurred_ms,
		                              .body = fold->rq[i].root};
		rev[n - 1 - i] = fwd[i];
	}
	json_t *a = model_fold(fwd, n, &fold_rules);
	json_t *b = model_fold(rev, n, &fold_rules);
	FUZZ_ASSERT(json_is_object(a) && json_is_object(b), "model_fold gave no object");
	static const char *const parts[] = {"order", "shipments", "lines", "documents"};
	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		FUZZ_ASSERT(json_object_get(a, parts[i]) != NULL, "read model without \"%s\"",
		            parts[i]);
	if (!json_equal(a, b)) {
		char *ta = json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS);
		char *tb = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);
		FUZZ_ASSERT(false, "the fold depends on the order of %zu events:\n  %s\n  %s", n,
		            ta ? ta : "?", tb ? tb : "?");
	}
	fold_resume_check(fwd, n, a);
	json_decref(a);
	json_decref(b);
	for (size_t i = 0; i < n; i++)
		request_clear(&fold->rq[i]);
	fold->n = 0;
}
