/*
 * request.c - parse one protocol line into a request; see request.h.
 *
 * jansson does the JSON work: it rejects invalid UTF-8, "\u0000", duplicate
 * keys, numbers it cannot hold, nesting deeper than its own limit and
 * anything after the value.  This file then sorts the object by "type" and
 * checks its fields against tables of rules (name, kind, required, checker):
 * one table for the envelope every event carries, one per event type for
 * what that type adds, and one each for hello and ping.  The event model
 * extends the per-type tables; the code that walks them stays the same.
 *
 * Limits of this version: event objects may carry fields the tables do not
 * name (the strict list comes with the event model), while hello and ping
 * may not.  Text taken from the line and put into an error message is cut
 * to a few dozen bytes at a UTF-8 character boundary, and jansson's own
 * error text is reduced to printable ASCII, so a message is always short,
 * valid UTF-8.  The token of a hello never appears in a message.
 */
#include "request.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "validate.h"

#define HELLO_EXPORTER_MAX 64                /* characters */
#define HELLO_TOKEN_MAX    256               /* characters */
#define FUTURE_MAX_MS      INT64_C(86400000) /* occurred_at may lead the clock by 24 h */
#define QUOTE_MAX          64                /* bytes of line text quoted in a message */

/* The JSON type a field's value must have. */
enum field_kind {
	FIELD_STRING,  /* a JSON string */
	FIELD_INTEGER, /* a JSON integer */
	FIELD_NUMBER,  /* a JSON integer or real */
	FIELD_BOOL,    /* true or false */
	FIELD_OBJECT,  /* a JSON object */
	FIELD_ARRAY,   /* a JSON array */
};

/* What a checker may read and fill while a line is checked. */
struct check_ctx {
	int64_t now_ms;           /* server clock, for "not in the future" */
	struct request_event *ev; /* the event being filled, or NULL */
};

/* Check a value whose kind already matched; NULL when fine, else a reason. */
typedef const char *(*field_check_fn)(const json_t *v, struct check_ctx *cx);

/* One field of an object: its name, JSON kind, whether it must be there, extra check. */
struct field_rule {
	const char *name; /* NULL ends a table */
	enum field_kind kind;
	bool required;
	field_check_fn check; /* NULL when the kind is all there is to check */
};

/* One known event type and the rules it adds to the envelope. */
struct event_type {
	const char *name;
	const struct field_rule *fields; /* NULL-terminated table, or NULL for none */
};

static const char *check_event_id(const json_t *v, struct check_ctx *cx);
static const char *check_ref(const json_t *v, struct check_ctx *cx);
static const char *check_occurred_at(const json_t *v, struct check_ctx *cx);
static const char *check_exporter(const json_t *v, struct check_ctx *cx);
static const char *check_token(const json_t *v, struct check_ctx *cx);

/* Fields every event carries. */
static const struct field_rule envelope_rules[] = {
    {"id", FIELD_STRING, true, check_event_id},
    {"occurred_at", FIELD_STRING, true, check_occurred_at},
    {"order", FIELD_STRING, true, check_ref},
    {"shipment", FIELD_STRING, false, check_ref},
    {NULL, FIELD_STRING, false, NULL},
};

/* What shipment.* types add: the shipment ref becomes required. */
static const struct field_rule shipment_rules[] = {
    {"shipment", FIELD_STRING, true, check_ref},
    {NULL, FIELD_STRING, false, NULL},
};

/* The only fields of a hello besides "type". */
static const struct field_rule hello_rules[] = {
    {"exporter", FIELD_STRING, true, check_exporter},
    {"token", FIELD_STRING, true, check_token},
    {NULL, FIELD_STRING, false, NULL},
};

/* A ping has no field besides "type". */
static const struct field_rule ping_rules[] = {
    {NULL, FIELD_STRING, false, NULL},
};

/* Every event type protocol v1 knows; anything else is unknown_type. */
static const struct event_type event_types[] = {
    {"order.created", NULL},
    {"order.confirmed", NULL},
    {"order.cancelled", NULL},
    {"shipment.booked", shipment_rules},
    {"shipment.picked_up", shipment_rules},
    {"shipment.export_cleared", shipment_rules},
    {"shipment.departed", shipment_rules},
    {"shipment.arrived", shipment_rules},
    {"shipment.import_cleared", shipment_rules},
    {"shipment.out_for_delivery", shipment_rules},
    {"shipment.delivered", shipment_rules},
    {"shipment.checkpoint", shipment_rules},
    {"shipment.customs_hold", shipment_rules},
    {"shipment.customs_released", shipment_rules},
    {"shipment.exception", shipment_rules},
    {"shipment.exception_resolved", shipment_rules},
    {"shipment.eta_changed", shipment_rules},
    {"document.issued", NULL},
    {"event.retracted", NULL},
};

/* Check an event id's charset and length. */
static const char *check_event_id(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return validate_event_id(json_string_value(v));
}

/* Check an order or shipment ref's charset and length. */
static const char *check_ref(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return validate_ref(json_string_value(v));
}

/* Check occurred_at, record its instant and offset, and refuse times over 24 h ahead. */
static const char *check_occurred_at(const json_t *v, struct check_ctx *cx)
{
	int64_t ms;
	int off;
	const char *why = validate_rfc3339(json_string_value(v), &ms, &off);

	if (why != NULL)
		return why;
	/* Unsigned difference: now_ms comes from outside and may be anything. */
	if (ms > cx->now_ms && (uint64_t)ms - (uint64_t)cx->now_ms > (uint64_t)FUTURE_MAX_MS)
		return "is more than 24 h ahead of the server clock";
	if (cx->ev != NULL) {
		cx->ev->occurred_ms = ms;
		cx->ev->offset_min = off;
	}
	return NULL;
}

/* Count the characters (code points) of a valid UTF-8 string of len bytes. */
static size_t utf8_chars(const char *s, size_t len)
{
	size_t n = 0;

	for (size_t i = 0; i < len; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			n++;
	return n;
}

/* Check that a JSON string holds between 1 and max characters. */
static bool string_chars_within(const json_t *v, size_t max)
{
	size_t n = utf8_chars(json_string_value(v), json_string_length(v));
	return n >= 1 && n <= max;
}

/* Check a hello's exporter id length. */
static const char *check_exporter(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return string_chars_within(v, HELLO_EXPORTER_MAX) ? NULL : "must be 1-64 characters";
}

/* Check a hello's token length; the token itself is never quoted. */
static const char *check_token(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return string_chars_within(v, HELLO_TOKEN_MAX) ? NULL : "must be 1-256 characters";
}

/* Length of s[0..len) once a UTF-8 sequence cut off at the end is dropped. */
static size_t utf8_whole_prefix(const char *s, size_t len)
{
	size_t i = len;

	/* Walk back over continuation bytes to the last lead byte. */
	while (i > 0 && ((unsigned char)s[i - 1] & 0xc0) == 0x80)
		i--;
	if (i == 0)
		return 0;
	unsigned char lead = (unsigned char)s[i - 1];
	size_t need = 1;
	if (lead >= 0xf0)
		need = 4;
	else if (lead >= 0xe0)
		need = 3;
	else if (lead >= 0xc0)
		need = 2;
	return (len - (i - 1) >= need) ? len : i - 1;
}

/* Copy at most QUOTE_MAX bytes of line text into out, cut on a character, "..." if cut. */
static void quote_text(char out[QUOTE_MAX + 4], const char *s, size_t len)
{
	size_t n = len;

	if (n > QUOTE_MAX)
		n = utf8_whole_prefix(s, QUOTE_MAX);
	memcpy(out, s, n);
	if (n < len) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
}

/* Fill err with a code and a printf-style message, kept valid UTF-8 if cut. */
static void __attribute__((format(printf, 3, 4)))
set_error(struct request_error *err, const char *code, const char *fmt, ...)
{
	va_list ap;
	int n;

	err->code = code;
	va_start(ap, fmt);
	n = vsnprintf(err->message, sizeof(err->message), fmt, ap);
	va_end(ap);
	if (n < 0) {
		err->message[0] = '\0';
	} else if ((size_t)n >= sizeof(err->message)) {
		size_t keep = utf8_whole_prefix(err->message, sizeof(err->message) - 1);
		err->message[keep] = '\0';
	}
}

/* Report jansson's parse error with its byte position, as printable ASCII only. */
static void set_json_error(struct request_error *err, const json_error_t *je)
{
	char text[sizeof(je->text)];
	size_t i;

	for (i = 0; i + 1 < sizeof(text) && je->text[i] != '\0'; i++) {
		unsigned char c = (unsigned char)je->text[i];
		text[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	text[i] = '\0';
	set_error(err, ERR_MALFORMED_JSON, "invalid JSON at position %d: %s", je->position, text);
}

/* True when v has the JSON type kind asks for. */
static bool kind_matches(const json_t *v, enum field_kind kind)
{
	switch (kind) {
	case FIELD_STRING:
		return json_is_string(v);
	case FIELD_INTEGER:
		return json_is_integer(v);
	case FIELD_NUMBER:
		return json_is_number(v);
	case FIELD_BOOL:
		return json_is_boolean(v);
	case FIELD_OBJECT:
		return json_is_object(v);
	case FIELD_ARRAY:
		return json_is_array(v);
	}
	return false;
}

/* The reason given when a value has the wrong JSON type. */
static const char *kind_reason(enum field_kind kind)
{
	switch (kind) {
	case FIELD_STRING:
		return "must be a string";
	case FIELD_INTEGER:
		return "must be an integer";
	case FIELD_NUMBER:
		return "must be a number";
	case FIELD_BOOL:
		return "must be true or false";
	case FIELD_OBJECT:
		return "must be an object";
	case FIELD_ARRAY:
		return "must be an array";
	}
	return "has the wrong type";
}

/* Check root's fields against one rule table; false with err filled on the first failure. */
static bool check_rules(const json_t *root, const struct field_rule *rules, const char *code,
                        struct check_ctx *cx, struct request_error *err)
{
	for (const struct field_rule *r = rules; r != NULL && r->name != NULL; r++) {
		const json_t *v = json_object_get(root, r->name);
		const char *why;

		if (v == NULL) {
			if (!r->required)
				continue;
			set_error(err, code, "field \"%s\": required", r->name);
			return false;
		}
		if (!kind_matches(v, r->kind)) {
			set_error(err, code, "field \"%s\": %s", r->name, kind_reason(r->kind));
			return false;
		}
		why = r->check != NULL ? r->check(v, cx) : NULL;
		if (why != NULL) {
			set_error(err, code, "field \"%s\": %s", r->name, why);
			return false;
		}
	}
	return true;
}

/* True when a rule table names key. */
static bool rules_name(const struct field_rule *rules, const char *key)
{
	for (const struct field_rule *r = rules; r != NULL && r->name != NULL; r++)
		if (strcmp(r->name, key) == 0)
			return true;
	return false;
}

/* Refuse any member of root other than "type" and those the rules name. */
static bool check_no_unknown(json_t *root, const struct field_rule *rules, const char *code,
                             struct request_error *err)
{
	const char *key;
	json_t *v;

	json_object_foreach(root, key, v)
	{
		if (strcmp(key, "type") == 0 || rules_name(rules, key))
			continue;
		char q[QUOTE_MAX + 4];
		quote_text(q, key, strlen(key));
		set_error(err, code, "unknown field \"%s\"", q);
		return false;
	}
	return true;
}

/* Find an event type by name, or NULL. */
static const struct event_type *event_type_find(const char *name)
{
	for (size_t i = 0; i < sizeof(event_types) / sizeof(event_types[0]); i++)
		if (strcmp(event_types[i].name, name) == 0)
			return &event_types[i];
	return NULL;
}

/* Copy the line's "id" into err when it is a valid event id, so replies can echo it. */
static void note_id(const json_t *root, struct request_error *err)
{
	const json_t *v = json_object_get(root, "id");

	if (!json_is_string(v) || validate_event_id(json_string_value(v)) != NULL)
		return;
	/* A valid id is at most 128 bytes and err->id holds 129. */
	snprintf(err->id, sizeof(err->id), "%s", json_string_value(v));
	err->has_id = true;
}

/* Check an event's envelope and type rules and fill rq->u.event from the tree. */
static bool parse_event(json_t *root, const struct event_type *et, int64_t now_ms,
                        struct request *rq, struct request_error *err)
{
	struct request_event *ev = &rq->u.event;
	struct check_ctx cx = {.now_ms = now_ms, .ev = ev};
	const json_t *ship;

	if (!check_rules(root, envelope_rules, ERR_INVALID_EVENT, &cx, err) ||
	    !check_rules(root, et->fields, ERR_INVALID_EVENT, &cx, err))
		return false;
	ev->type = et->name;
	ev->id = json_string_value(json_object_get(root, "id"));
	ev->order = json_string_value(json_object_get(root, "order"));
	ship = json_object_get(root, "shipment");
	ev->shipment = ship != NULL ? json_string_value(ship) : NULL;
	ev->occurred_at = json_string_value(json_object_get(root, "occurred_at"));
	rq->kind = REQ_EVENT;
	return true;
}

/* Parse line[0..len) into rq, or fill err with the first problem found. */
bool request_parse(const char *line, size_t len, int64_t now_ms, struct request *rq,
                   struct request_error *err)
{
	json_error_t je;
	json_t *root;
	const json_t *type;
	const char *tname;
	struct check_ctx cx = {.now_ms = now_ms, .ev = NULL};

	memset(rq, 0, sizeof(*rq));
	memset(err, 0, sizeof(*err));

	/* DECODE_ANY lets scalars parse so they get the "not an object" message. */
	root = json_loadb(line, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
	if (root == NULL) {
		set_json_error(err, &je);
		return false;
	}
	if (!json_is_object(root)) {
		set_error(err, ERR_MALFORMED_JSON, "a line must be one JSON object");
		goto fail;
	}
	note_id(root, err);

	type = json_object_get(root, "type");
	if (!json_is_string(type)) {
		set_error(err, ERR_INVALID_REQUEST, "field \"type\": required, a string");
		goto fail;
	}
	tname = json_string_value(type);

	if (strcmp(tname, "hello") == 0) {
		if (!check_rules(root, hello_rules, ERR_INVALID_REQUEST, &cx, err) ||
		    !check_no_unknown(root, hello_rules, ERR_INVALID_REQUEST, err))
			goto fail;
		rq->kind = REQ_HELLO;
		rq->u.hello.exporter = json_string_value(json_object_get(root, "exporter"));
		rq->u.hello.token = json_string_value(json_object_get(root, "token"));
	} else if (strcmp(tname, "ping") == 0) {
		if (!check_no_unknown(root, ping_rules, ERR_INVALID_REQUEST, err))
			goto fail;
		rq->kind = REQ_PING;
	} else {
		const struct event_type *et = event_type_find(tname);
		if (et == NULL) {
			char q[QUOTE_MAX + 4];
			quote_text(q, tname, json_string_length(type));
			set_error(err, ERR_UNKNOWN_TYPE, "unknown type \"%s\"", q);
			goto fail;
		}
		if (!parse_event(root, et, now_ms, rq, err))
			goto fail;
	}
	rq->root = root;
	return true;

fail:
	json_decref(root);
	memset(rq, 0, sizeof(*rq));
	return false;
}

/* Release the JSON tree a parsed request points into. */
void request_clear(struct request *rq)
{
	json_decref(rq->root);
	memset(rq, 0, sizeof(*rq));
}

/* Serialise the request compactly with sorted keys; NULL when rq holds no tree. */
char *request_event_canonical(const struct request *rq, size_t *len)
{
	char *s;

	if (rq->root == NULL)
		return NULL;
	s = json_dumps(rq->root, JSON_COMPACT | JSON_SORT_KEYS);
	if (s == NULL)
		abort(); /* only out of memory gets here; not a code path */
	if (len != NULL)
		*len = strlen(s);
	return s;
}
