/*
 * request.c - parse one protocol line into a request; see request.h.
 *
 * jansson does the JSON work: it rejects invalid UTF-8, "\u0000", duplicate
 * keys, numbers it cannot hold, nesting deeper than its own limit and
 * anything after the value.  It reads a real too small for a double as 0,
 * though, and knows nothing of PostgreSQL's limits, so one quick pass over
 * the line refuses those numbers too (numbers_in_range).  This file then
 * sorts the object by "type" and checks its fields against tables of rules:
 * one table for the envelope every event carries, one per event type for
 * what that type adds, and one each for hello, ping and subscribe.  A rule
 * gives the field's JSON kind, whether it is required, and what else its
 * value must be (a length in characters, a word from a list, a check
 * function, the members of a nested object, the item count of an array and
 * the rule every item meets); one walker applies every table, and an
 * optional per-type function checks what spans fields.
 *
 * A hello names an exporter or an operator, never both and never neither;
 * which of the two it was is all the parser decides.  A subscribe carries
 * the seq to resume after (a JSON integer, 0 or more) and optional filters,
 * each a non-empty array of well-formed words; whether the sender may use a
 * filter (only operators may choose exporters) is the daemon's business.
 *
 * Checks run in a fixed order, so a line with several problems always gets
 * the same error: first unknown members (a typo such as "ocurred_at" is
 * reported as itself, not as a missing "occurred_at"), then the envelope
 * fields, then "shipment" (required, allowed or refused by the type), then
 * the type's fields in table order, then the cross-field rules.
 * Objects nested in an event (location, lines[i]) are strict as well; only
 * "ext" is free-form.  Messages name the field by its path, e.g.
 * field "lines[2].hs_code": must be a string of 6, 8 or 10 digits.
 *
 * "shipment" is required on shipment.* events, optional on document.issued
 * (a document for one shipment rather than the whole order) and refused on
 * every other type with its own message: a shipment ref on, say,
 * order.cancelled would suggest a per-shipment meaning that the model does
 * not give it.
 *
 * Text fields hold 1 to max characters (code points, not bytes); an empty
 * string is refused, leave the field out instead.  Text taken from the line
 * and put into an error message is cut to a few dozen bytes at a UTF-8
 * character boundary, and jansson's own error text is reduced to printable
 * ASCII, so a message is always short, valid UTF-8.  The token of a hello
 * never appears in a message.
 *
 * The canonical form of an event (what is stored and compared) is compact
 * JSON with sorted keys, as jansson writes it, except that each real is
 * written in the shortest form that reads back as the same double ("7.9",
 * "1e-7"): jansson's own 17 digits would turn 7.9 into 7.9000000000000004,
 * a different number for PostgreSQL.
 */
#include "request.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jarena.h"
#include "jsonw.h"
#include "textbuf.h"
#include "validate.h"

#define HELLO_EXPORTER_MAX 64                /* characters */
#define HELLO_TOKEN_MAX    256               /* characters */
#define FUTURE_MAX_MS      INT64_C(86400000) /* occurred_at may lead the clock by 24 h */
#define QUOTE_MAX          64                /* bytes line text quoted in a message takes escaped */
#define JSON_TEXT_MAX      128               /* bytes of jansson's error text, escaped */
#define PATH_MAX_LEN       96                /* bytes of a field path, e.g. "lines[999].unit" */
#define LINES_MAX          1000              /* items in order.created lines */
#define SUB_KINDS_MAX      16                /* items in a subscribe's kinds */
#define SUB_FILTER_MAX     1000              /* items in a subscribe's orders or exporters */
#define EXPORTER_ID_MAX    64                /* characters of an exporter id in a filter */

/*
 * Numbers jansson accepts but the rest of the way cannot hold.  A double
 * underflows to 0 below about 2.2e-308 (jansson refuses only overflow), so
 * a number that is not zero must be 1e-307 or more in magnitude.  The body
 * is stored as sent and compared as jsonb, whose numeric refuses more
 * than 16383 decimal places (0e-16384, 1.5e-16383) and exponents far out
 * even on a zero; exponents are held to the same 16383.
 */
#define NUMBER_POW_MIN   (-307) /* power of ten of the smallest non-zero number */
#define NUMBER_SCALE_MAX 16383  /* decimal places, and exponent either way */

/* The JSON type a field's value must have. */
enum field_kind {
	FIELD_STRING,  /* a JSON string */
	FIELD_INTEGER, /* a JSON integer */
	FIELD_NUMBER,  /* a JSON integer or real */
	FIELD_BOOL,    /* true or false */
	FIELD_OBJECT,  /* a JSON object */
	FIELD_ARRAY,   /* a JSON array */
};

/* Where a type allows the envelope's "shipment" ref. */
enum ship_policy {
	SHIP_NONE,     /* refused: order.*, event.retracted */
	SHIP_OPTIONAL, /* document.issued: for one shipment, or the whole order */
	SHIP_REQUIRED, /* shipment.* */
};

/* What a checker may read and fill while a line is checked. */
struct check_ctx {
	int64_t now_ms;           /* server clock, for "not in the future" */
	struct request_event *ev; /* the event being filled, or NULL */
};

/* Check a value whose kind already matched; NULL when fine, else a reason. */
typedef const char *(*field_check_fn)(const json_t *v, struct check_ctx *cx);

/* One field of an object and everything its value must be. */
struct field_rule {
	const char *name; /* NULL ends a table */
	enum field_kind kind;
	bool required;
	size_t max_chars;                 /* strings: 1..max_chars characters, when nonzero */
	const char *const *words;         /* strings: one of these (NULL-ended), when set */
	field_check_fn check;             /* a further check, or NULL */
	const struct field_rule *members; /* objects: the only members allowed (NULL: any);
	                                     arrays: each item is such an object */
	const struct field_rule *each;    /* arrays of scalars: the rule every item meets */
	size_t min_items, max_items;      /* arrays: bounds on the item count */
	const char *reason;               /* said for a wrong kind or word; NULL: the kind's */
};

/* Check what spans fields of an event; NULL when fine, else the reason and *field. */
typedef const char *(*event_finish_fn)(const json_t *root, const char **field);

/* One known event type and the rules it adds to the envelope. */
struct event_type {
	const char *name;
	enum ship_policy ship;
	const struct field_rule *fields; /* NULL-terminated table, or NULL for none */
	event_finish_fn finish;          /* cross-field rules, or NULL */
};

/* Rows of the tables, by what the field holds. */
#define F_TEXT(n, req, max)                                                                        \
	{                                                                                          \
		.name = (n), .kind = FIELD_STRING, .required = (req), .max_chars = (max)           \
	}
#define F_STRING(n, req, fn)                                                                       \
	{                                                                                          \
		.name = (n), .kind = FIELD_STRING, .required = (req), .check = (fn)                \
	}
#define F_CODE(n, req, fn, why)                                                                    \
	{                                                                                          \
		.name = (n), .kind = FIELD_STRING, .required = (req), .check = (fn),               \
		.reason = (why)                                                                    \
	}
#define F_WORD(n, req, list, why)                                                                  \
	{                                                                                          \
		.name = (n), .kind = FIELD_STRING, .required = (req), .words = (list),             \
		.reason = (why)                                                                    \
	}
#define F_NUMBER(n, req, fn, why)                                                                  \
	{                                                                                          \
		.name = (n), .kind = FIELD_NUMBER, .required = (req), .check = (fn),               \
		.reason = (why)                                                                    \
	}
#define F_OBJECT(n, req, mem, fn)                                                                  \
	{                                                                                          \
		.name = (n), .kind = FIELD_OBJECT, .required = (req), .members = (mem),            \
		.check = (fn)                                                                      \
	}
#define F_LIST(n, req, mem, lo, hi)                                                                \
	{                                                                                          \
		.name = (n), .kind = FIELD_ARRAY, .required = (req), .members = (mem),             \
		.min_items = (lo), .max_items = (hi)                                               \
	}
#define F_WORDS(n, req, item, lo, hi)                                                              \
	{                                                                                          \
		.name = (n), .kind = FIELD_ARRAY, .required = (req), .each = (item),               \
		.min_items = (lo), .max_items = (hi)                                               \
	}
#define F_END                                                                                      \
	{                                                                                          \
		.name = NULL                                                                       \
	}

static const char *check_event_id(const json_t *v, struct check_ctx *cx);
static const char *check_ref(const json_t *v, struct check_ctx *cx);
static const char *check_occurred_at(const json_t *v, struct check_ctx *cx);
static const char *check_time(const json_t *v, struct check_ctx *cx);
static const char *check_date(const json_t *v, struct check_ctx *cx);
static const char *check_country(const json_t *v, struct check_ctx *cx);
static const char *check_currency(const json_t *v, struct check_ctx *cx);
static const char *check_locode(const json_t *v, struct check_ctx *cx);
static const char *check_hs_code(const json_t *v, struct check_ctx *cx);
static const char *check_document(const json_t *v, struct check_ctx *cx);
static const char *check_positive(const json_t *v, struct check_ctx *cx);
static const char *check_not_negative(const json_t *v, struct check_ctx *cx);
static const char *check_location(const json_t *v, struct check_ctx *cx);
static const char *check_exporter(const json_t *v, struct check_ctx *cx);
static const char *check_token(const json_t *v, struct check_ctx *cx);
static const char *check_exporter_id(const json_t *v, struct check_ctx *cx);
static const char *check_after(const json_t *v, struct check_ctx *cx);
static const char *finish_order_created(const json_t *root, const char **field);
static const char *finish_retracted(const json_t *root, const char **field);

/* Incoterms 2020. */
static const char *const incoterms[] = {"EXW", "FCA", "CPT", "CIP", "DAP", "DPU",
                                        "DDP", "FAS", "FOB", "CFR", "CIF", NULL};
static const char reason_incoterm[] =
    "must be an Incoterm: EXW, FCA, CPT, CIP, DAP, DPU, DDP, FAS, FOB, CFR or CIF";

/* Units of quantity in order lines. */
static const char *const units[] = {"kg",  "g",      "t",      "l",    "bag",
                                    "box", "carton", "pallet", "unit", NULL};
static const char reason_unit[] = "must be one of kg, g, t, l, bag, box, carton, pallet, unit";

/* Transport modes of shipment.booked. */
static const char *const modes[] = {"air", "sea", "road", "rail", "multimodal", NULL};
static const char reason_mode[] = "must be one of air, sea, road, rail, multimodal";

/* Customs stages of shipment.customs_hold and shipment.customs_released. */
static const char *const stages[] = {"export", "import", NULL};
static const char reason_stage[] = "must be export or import";

/* Reasons of shipment.exception. */
static const char *const exception_reasons[] = {"damaged", "lost",  "refused",
                                                "delayed", "other", NULL};
static const char reason_exception[] = "must be one of damaged, lost, refused, delayed, other";

static const char reason_hs_code[] = "must be a string of 6, 8 or 10 digits";
static const char reason_quantity[] = "must be a number greater than 0";
static const char reason_price[] = "must be a number, 0 or more";
static const char reason_time[] =
    "must be RFC 3339 with an explicit offset, e.g. 2026-03-01T08:00:00+02:00";

/* The members of a location object: a UN/LOCODE, a name, or both. */
static const struct field_rule location_rules[] = {
    F_CODE("code", false, check_locode, NULL),
    F_TEXT("name", false, 128),
    F_END,
};

/* Fields every event carries; "shipment" is governed by the type's ship_policy. */
static const struct field_rule envelope_rules[] = {
    F_STRING("id", true, check_event_id),
    F_STRING("occurred_at", true, check_occurred_at),
    F_STRING("order", true, check_ref),
    F_OBJECT("location", false, location_rules, check_location),
    F_TEXT("note", false, 1024),
    F_OBJECT("ext", false, NULL, NULL),
    F_END,
};

/* The members of one order line. */
static const struct field_rule line_rules[] = {
    F_TEXT("sku", true, 64),
    F_TEXT("product", true, 256),
    F_CODE("hs_code", true, check_hs_code, reason_hs_code),
    F_NUMBER("quantity", true, check_positive, reason_quantity),
    F_WORD("unit", true, units, reason_unit),
    F_NUMBER("unit_price", false, check_not_negative, reason_price),
    F_END,
};

/* order.created: who buys what, from where to where. */
static const struct field_rule order_created_rules[] = {
    F_TEXT("buyer", true, 128),
    F_TEXT("channel", false, 128),
    F_STRING("origin", true, check_country),
    F_STRING("destination", true, check_country),
    F_WORD("incoterm", false, incoterms, reason_incoterm),
    F_STRING("currency", false, check_currency),
    F_STRING("expected_delivery", false, check_date),
    F_LIST("lines", true, line_rules, 1, LINES_MAX),
    F_END,
};

/* order.cancelled and customs holds: a free-text reason. */
static const struct field_rule reason_rules[] = {
    F_TEXT("reason", false, 256),
    F_END,
};

/* shipment.booked: the mode, and who carries it to whom. */
static const struct field_rule booked_rules[] = {
    F_WORD("mode", true, modes, reason_mode),
    F_TEXT("carrier", false, 128),
    F_TEXT("tracking", false, 64),
    F_TEXT("consignee", false, 128),
    F_CODE("eta", false, check_time, reason_time),
    F_END,
};

/* shipment.delivered: who signed for it. */
static const struct field_rule delivered_rules[] = {
    F_TEXT("received_by", false, 128),
    F_END,
};

/* shipment.checkpoint: a position report, so the location is required. */
static const struct field_rule checkpoint_rules[] = {
    F_OBJECT("location", true, location_rules, check_location),
    F_END,
};

/* shipment.customs_hold: the stage, and optionally why. */
static const struct field_rule hold_rules[] = {
    F_WORD("stage", true, stages, reason_stage),
    F_TEXT("reason", false, 256),
    F_END,
};

/* shipment.customs_released: the stage. */
static const struct field_rule released_rules[] = {
    F_WORD("stage", true, stages, reason_stage),
    F_END,
};

/* shipment.exception: what went wrong, as a word. */
static const struct field_rule exception_rules[] = {
    F_WORD("reason", true, exception_reasons, reason_exception),
    F_END,
};

/* shipment.eta_changed: the new estimate. */
static const struct field_rule eta_rules[] = {
    F_CODE("eta", true, check_time, reason_time),
    F_END,
};

/* document.issued: which document, and its number. */
static const struct field_rule document_rules[] = {
    F_STRING("document", true, check_document),
    F_TEXT("number", false, 64),
    F_END,
};

/* event.retracted: the id of the event that no longer counts. */
static const struct field_rule retracted_rules[] = {
    F_STRING("retracts", true, check_event_id),
    F_TEXT("reason", false, 256),
    F_END,
};

/*
 * Who a hello speaks for: exactly one of the two (parse_hello checks that).
 * An operator id follows the same rule as an exporter id.
 */
static const struct field_rule hello_who_rules[] = {
    F_STRING("exporter", false, check_exporter),
    F_STRING("operator", false, check_exporter),
    F_END,
};

/* A hello's token, checked after who it is from. */
static const struct field_rule hello_token_rules[] = {
    F_STRING("token", true, check_token),
    F_END,
};

/* A ping has no field besides "type". */
static const struct field_rule ping_rules[] = {
    F_END,
};

/* The kinds of notification a subscriber may ask for. */
static const char *const notification_kinds[] = {
    "order.status",        "order.anomaly", "shipment.status", "shipment.eta",
    "alert.customs_dwell", "alert.overdue", "alert.stale",     NULL,
};
static const char reason_kind[] =
    "must be one of order.status, order.anomaly, shipment.status, shipment.eta, "
    "alert.customs_dwell, alert.overdue, alert.stale";
static const char reason_after[] = "must be an integer >= 0";

/* One item of a subscribe's kinds, orders and exporters. */
static const struct field_rule kind_item = F_WORD("kinds", true, notification_kinds, reason_kind);
static const struct field_rule order_item = F_STRING("orders", true, check_ref);
static const struct field_rule exporter_item = F_STRING("exporters", true, check_exporter_id);

/* subscribe: where to resume, and what to hear about (every filter optional). */
static const struct field_rule subscribe_rules[] = {
    {.name = "after",
     .kind = FIELD_INTEGER,
     .required = true,
     .check = check_after,
     .reason = reason_after},
    F_WORDS("kinds", false, &kind_item, 1, SUB_KINDS_MAX),
    F_WORDS("orders", false, &order_item, 1, SUB_FILTER_MAX),
    F_WORDS("exporters", false, &exporter_item, 1, SUB_FILTER_MAX),
    F_END,
};

/* Every event type protocol v1 knows; anything else is unknown_type. */
static const struct event_type event_types[] = {
    {"order.created", SHIP_NONE, order_created_rules, finish_order_created},
    {"order.confirmed", SHIP_NONE, NULL, NULL},
    {"order.cancelled", SHIP_NONE, reason_rules, NULL},
    {"shipment.booked", SHIP_REQUIRED, booked_rules, NULL},
    {"shipment.picked_up", SHIP_REQUIRED, NULL, NULL},
    {"shipment.export_cleared", SHIP_REQUIRED, NULL, NULL},
    {"shipment.departed", SHIP_REQUIRED, NULL, NULL},
    {"shipment.arrived", SHIP_REQUIRED, NULL, NULL},
    {"shipment.import_cleared", SHIP_REQUIRED, NULL, NULL},
    {"shipment.out_for_delivery", SHIP_REQUIRED, NULL, NULL},
    {"shipment.delivered", SHIP_REQUIRED, delivered_rules, NULL},
    {"shipment.checkpoint", SHIP_REQUIRED, checkpoint_rules, NULL},
    {"shipment.customs_hold", SHIP_REQUIRED, hold_rules, NULL},
    {"shipment.customs_released", SHIP_REQUIRED, released_rules, NULL},
    {"shipment.exception", SHIP_REQUIRED, exception_rules, NULL},
    {"shipment.exception_resolved", SHIP_REQUIRED, NULL, NULL},
    {"shipment.eta_changed", SHIP_REQUIRED, eta_rules, NULL},
    {"document.issued", SHIP_OPTIONAL, document_rules, NULL},
    {"event.retracted", SHIP_NONE, retracted_rules, finish_retracted},
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
	struct rfc3339_instant t;
	const char *why = validate_rfc3339_instant(json_string_value(v), &t);

	if (why != NULL)
		return why;
	/* Unsigned difference: now_ms comes from outside and may be anything. */
	if (t.ms > cx->now_ms && (uint64_t)t.ms - (uint64_t)cx->now_ms > (uint64_t)FUTURE_MAX_MS)
		return "is more than 24 h ahead of the server clock";
	if (cx->ev != NULL) {
		cx->ev->occurred_ms = t.ms;
		cx->ev->occurred_us = t.us;
		cx->ev->offset_min = t.offset_min;
	}
	return NULL;
}

/* Check an RFC 3339 time that may lie anywhere, such as an eta. */
static const char *check_time(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return validate_rfc3339(json_string_value(v), NULL, NULL);
}

/* Check a calendar date YYYY-MM-DD. */
static const char *check_date(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return validate_date(json_string_value(v));
}

/* Check an ISO 3166-1 alpha-2 country code. */
static const char *check_country(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return validate_country(json_string_value(v));
}

/* Check an ISO 4217 currency code. */
static const char *check_currency(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return validate_currency(json_string_value(v));
}

/* Check a UN/LOCODE. */
static const char *check_locode(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return validate_locode(json_string_value(v));
}

/* Check an HS code's shape. */
static const char *check_hs_code(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return validate_hs_code(json_string_value(v));
}

/* Check a document kind. */
static const char *check_document(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return validate_document(json_string_value(v));
}

/* Check a number greater than zero (jansson holds only finite numbers). */
static const char *check_positive(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return json_number_value(v) > 0 ? NULL : reason_quantity;
}

/* Check a number of zero or more. */
static const char *check_not_negative(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return json_number_value(v) >= 0 ? NULL : reason_price;
}

/* Check that a location says where: a code, a name, or both. */
static const char *check_location(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	if (json_object_get(v, "code") == NULL && json_object_get(v, "name") == NULL)
		return "must have \"code\" or \"name\"";
	return NULL;
}

/* order.created: a price needs a currency, and the order must cross a border. */
static const char *finish_order_created(const json_t *root, const char **field)
{
	const json_t *lines = json_object_get(root, "lines");
	const char *origin = json_string_value(json_object_get(root, "origin"));
	const char *dest = json_string_value(json_object_get(root, "destination"));
	size_t i;
	const json_t *line;

	if (strcmp(origin, dest) == 0) {
		*field = "destination";
		return "must differ from \"origin\" (orders are cross-border)";
	}
	if (json_object_get(root, "currency") != NULL)
		return NULL;
	json_array_foreach(lines, i, line)
	{
		if (json_object_get(line, "unit_price") != NULL) {
			*field = "currency";
			return "required when a line has a unit_price";
		}
	}
	return NULL;
}

/* event.retracted: an event cannot retract itself. */
static const char *finish_retracted(const json_t *root, const char **field)
{
	const char *id = json_string_value(json_object_get(root, "id"));
	const char *target = json_string_value(json_object_get(root, "retracts"));

	if (strcmp(id, target) == 0) {
		*field = "retracts";
		return "must not be the event's own id";
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

/*
 * Check an exporter id in a subscribe filter: the characters a configured
 * id may have (see cfg_id_check() in config.c), since no other id can ever match.
 */
static const char *check_exporter_id(const json_t *v, struct check_ctx *cx)
{
	static const char why[] = "must be 1-64 characters of A-Z a-z 0-9 . _ -";
	const char *s = json_string_value(v);
	size_t n = json_string_length(v);

	(void)cx;
	if (n == 0 || n > EXPORTER_ID_MAX)
		return why;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '.' || ch == '_' || ch == '-'))
			return why;
	}
	return NULL;
}

/* Check that a subscribe's "after", known by now to be an integer, is not negative. */
static const char *check_after(const json_t *v, struct check_ctx *cx)
{
	(void)cx;
	return json_integer_value(v) >= 0 ? NULL : reason_after;
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

/*
 * Copy line text into out, cut on a character where its escaped form in a
 * reply would pass max bytes (max <= QUOTE_MAX), with "..." if cut.
 * Bounding the escaped form, not the bytes, is what keeps every message
 * whole in the reply: a \u0001 takes six bytes there.  The longest
 * message, an unknown field with a 95-byte path and a quote, escapes to
 * under 200 bytes; the daemon's 512-byte error reply leaves 315 for it
 * beside a 128-character id and the longest code.
 */
static void quote_text_max(char *out, const char *s, size_t len, size_t max)
{
	size_t n = json_escape_fit(s, len, max);

	memcpy(out, s, n);
	if (n < len) {
		memcpy(out + n, "...", 3);
		n += 3;
	}
	out[n] = '\0';
}

/* quote_text_max() to QUOTE_MAX bytes. */
static void quote_text(char out[QUOTE_MAX + 4], const char *s, size_t len)
{
	quote_text_max(out, s, len, QUOTE_MAX);
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
	char text[sizeof(je->text)], cut[JSON_TEXT_MAX + 4];
	size_t i;

	for (i = 0; i + 1 < sizeof(text) && je->text[i] != '\0'; i++) {
		unsigned char c = (unsigned char)je->text[i];
		text[i] = (c < 0x20 || c >= 0x7f) ? '?' : (char)c;
	}
	text[i] = '\0';
	/* "without JSON_ALLOW_NUL" names a flag of jansson's, which no client
	 * can set: the protocol refuses \u0000, and the message says so. */
	char *flag = strstr(text, " without JSON_ALLOW_NUL");
	if (flag != NULL) {
		size_t cut_len = strlen(" without JSON_ALLOW_NUL");
		memmove(flag, flag + cut_len, strlen(flag + cut_len) + 1);
		i -= cut_len;
	}
	/* Its "near '...'" quotes the line (20 bytes at most in jansson 2.14): bound it all. */
	quote_text_max(cut, text, i, JSON_TEXT_MAX);
	set_error(err, ERR_MALFORMED_JSON, "invalid JSON at position %d: %s", je->position, cut);
}

/* The end of the string whose opening quote is just before p: past its closing quote. */
static const char *string_end(const char *p, const char *end)
{
	const char *start = p;

	for (;;) {
		const char *q = memchr(p, '"', (size_t)(end - p));
		size_t bs = 0;

		if (q == NULL)
			return end;
		/* A quote after an odd run of backslashes is escaped. */
		while (q - bs > start && q[-1 - (ptrdiff_t)bs] == '\\')
			bs++;
		if (bs % 2 == 0)
			return q + 1;
		p = q + 1;
	}
}

/*
 * Check the number at p against what both a double and PostgreSQL's
 * numeric hold; NULL when fine, else why not.  *endp is set past it
 * either way.  Integers are done at once: jansson has refused any that
 * int64 cannot hold.
 */
static const char *number_range(const char *p, const char *end, const char **endp)
{
	long ndig = 0, nfrac = 0, exp = 0;
	long first = -1; /* index of the first non-zero digit before the point */
	long mag = 0;    /* power of ten of the first non-zero digit, exponent aside */
	bool nonzero = false, neg = false;

	if (*p == '-')
		p++;
	for (; p < end && *p >= '0' && *p <= '9'; p++, ndig++)
		if (first < 0 && *p != '0')
			first = ndig;
	if (p == end || (*p != '.' && *p != 'e' && *p != 'E')) {
		*endp = p;
		return NULL;
	}
	if (first >= 0) {
		nonzero = true;
		mag = ndig - 1 - first;
	}
	if (*p == '.')
		for (p++; p < end && *p >= '0' && *p <= '9'; p++) {
			nfrac++;
			if (!nonzero && *p != '0') {
				nonzero = true;
				mag = -nfrac;
			}
		}
	if (p < end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < end && (*p == '+' || *p == '-'))
			neg = *p++ == '-';
		/* Stop growing once past the bound: the verdict is known, no overflow. */
		for (; p < end && *p >= '0' && *p <= '9'; p++)
			if (exp <= NUMBER_SCALE_MAX)
				exp = exp * 10 + (*p - '0');
		if (neg)
			exp = -exp;
	}
	*endp = p;
	if (exp > NUMBER_SCALE_MAX || exp < -NUMBER_SCALE_MAX)
		return "real number exponent out of range";
	if (nfrac - exp > NUMBER_SCALE_MAX)
		return "real number has more than 16383 decimal places";
	if (nonzero && mag + exp < NUMBER_POW_MIN)
		return "real number underflow";
	return NULL;
}

/*
 * Refuse a number that jansson took but that a double or PostgreSQL's
 * numeric cannot hold (see NUMBER_POW_MIN): one pass over the line that
 * jumps from quote to quote with memchr, so only the few bytes outside
 * strings are looked at one by one.
 */
static bool numbers_in_range(const char *line, size_t len, struct request_error *err)
{
	const char *p = line, *end = line + len;

	while (p < end) {
		if (*p == '"') {
			p = string_end(p + 1, end);
		} else if (*p == '-' || (*p >= '0' && *p <= '9')) {
			const char *why = number_range(p, end, &p);
			if (why != NULL) {
				set_error(err, ERR_MALFORMED_JSON,
				          "invalid JSON at position %zu: %s", (size_t)(p - line),
				          why);
				return false;
			}
		} else {
			p++;
		}
	}
	return true;
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

/* True when s is one of the words of a NULL-ended list. */
static bool word_in(const char *s, const char *const *words)
{
	/* The first byte before the call: most candidates differ there. */
	for (; *words != NULL; words++)
		if ((*words)[0] == s[0] && strcmp(*words, s) == 0)
			return true;
	return false;
}

/*
 * Format a field path such as "lines[2].hs_code" into buf of PATH_MAX_LEN
 * bytes; paths are built from table names and indexes, so they fit, and one
 * that did not would only shorten a message.
 */
static void __attribute__((format(printf, 2, 3))) path_format(char *buf, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, PATH_MAX_LEN, fmt, ap);
	va_end(ap);
}

/*
 * Join a and b into buf (PATH_MAX_LEN bytes), cut to fit.  Every field
 * check builds its path, so this is on the per-event path: plain copies,
 * not printf.
 */
static void path_cat(char *buf, const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > PATH_MAX_LEN - 1)
		la = PATH_MAX_LEN - 1;
	if (lb > PATH_MAX_LEN - 1 - la)
		lb = PATH_MAX_LEN - 1 - la;
	memcpy(buf, a, la);
	memcpy(buf + la, b, lb);
	buf[la + lb] = '\0';
}

/* True when a rule table names key. */
static bool rules_name(const struct field_rule *rules, const char *key)
{
	for (const struct field_rule *r = rules; r != NULL && r->name != NULL; r++)
		if (r->name[0] == key[0] && strcmp(r->name, key) == 0)
			return true;
	return false;
}

/* Members that a top-level line may carry besides its tables: "type" was read first. */
static const char *const top_names[] = {"type", NULL};
/* The same for events, whose "shipment" the type's ship_policy governs. */
static const char *const event_top_names[] = {"type", "shipment", NULL};

/*
 * Refuse any member of obj that neither table nor the extra names (NULL
 * or a NULL-ended list) allow; prefix is the object's path plus ".".
 */
static bool check_no_unknown(const json_t *obj, const struct field_rule *a,
                             const struct field_rule *b, const char *const *extra,
                             const char *prefix, const char *code, struct request_error *err)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)obj, key, v)
	{
		if ((extra != NULL && word_in(key, extra)) || rules_name(a, key) ||
		    rules_name(b, key))
			continue;
		char q[QUOTE_MAX + 4];
		quote_text(q, key, strlen(key));
		set_error(err, code, "unknown field \"%s%s\"", prefix, q);
		return false;
	}
	return true;
}

static bool check_rules(const json_t *obj, const struct field_rule *rules, const char *prefix,
                        const char *code, struct check_ctx *cx, struct request_error *err);

static bool check_value(const json_t *v, const struct field_rule *r, const char *path,
                        const char *code, struct check_ctx *cx, struct request_error *err);

/*
 * Check the item count of an array at path, then each item: against the
 * rule's members when items are objects, else against its rule for each.
 */
static bool check_items(const json_t *arr, const struct field_rule *r, const char *path,
                        const char *code, struct check_ctx *cx, struct request_error *err)
{
	size_t n = json_array_size(arr);
	size_t i;
	const json_t *item;

	if (n < r->min_items || n > r->max_items) {
		set_error(err, code, "field \"%s\": must have %zu-%zu items", path, r->min_items,
		          r->max_items);
		return false;
	}
	json_array_foreach(arr, i, item)
	{
		char prefix[PATH_MAX_LEN];
		if (r->each != NULL) {
			path_format(prefix, "%s[%zu]", path, i);
			if (!check_value(item, r->each, prefix, code, cx, err))
				return false;
			continue;
		}
		path_format(prefix, "%s[%zu].", path, i);
		if (!json_is_object(item)) {
			set_error(err, code, "field \"%s[%zu]\": must be an object", path, i);
			return false;
		}
		if (!check_no_unknown(item, r->members, NULL, NULL, prefix, code, err) ||
		    !check_rules(item, r->members, prefix, code, cx, err))
			return false;
	}
	return true;
}

/* Check one present value at path against its rule; false with err filled. */
static bool check_value(const json_t *v, const struct field_rule *r, const char *path,
                        const char *code, struct check_ctx *cx, struct request_error *err)
{
	const char *why = NULL;

	if (!kind_matches(v, r->kind)) {
		set_error(err, code, "field \"%s\": %s", path,
		          r->reason != NULL ? r->reason : kind_reason(r->kind));
		return false;
	}
	if (r->kind == FIELD_STRING && r->max_chars > 0 && !string_chars_within(v, r->max_chars)) {
		set_error(err, code, "field \"%s\": must be 1-%zu characters", path, r->max_chars);
		return false;
	}
	if (r->kind == FIELD_STRING && r->words != NULL && !word_in(json_string_value(v), r->words))
		why = r->reason;
	if (why == NULL && r->kind == FIELD_OBJECT && r->members != NULL) {
		char prefix[PATH_MAX_LEN];
		path_cat(prefix, path, ".");
		if (!check_no_unknown(v, r->members, NULL, NULL, prefix, code, err) ||
		    !check_rules(v, r->members, prefix, code, cx, err))
			return false;
	}
	if (why == NULL && r->kind == FIELD_ARRAY && (r->members != NULL || r->each != NULL) &&
	    !check_items(v, r, path, code, cx, err))
		return false;
	if (why == NULL && r->check != NULL)
		why = r->check(v, cx);
	if (why != NULL) {
		set_error(err, code, "field \"%s\": %s", path, why);
		return false;
	}
	return true;
}

/* Check obj's members against one rule table, in table order; false on the first failure. */
static bool check_rules(const json_t *obj, const struct field_rule *rules, const char *prefix,
                        const char *code, struct check_ctx *cx, struct request_error *err)
{
	for (const struct field_rule *r = rules; r != NULL && r->name != NULL; r++) {
		const json_t *v = json_object_get(obj, r->name);
		char path[PATH_MAX_LEN];

		path_cat(path, prefix, r->name);
		if (v == NULL) {
			if (!r->required)
				continue;
			set_error(err, code, "field \"%s\": required", path);
			return false;
		}
		if (!check_value(v, r, path, code, cx, err))
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

/* "shipment" where a type requires it. */
static const struct field_rule ship_required_rules[] = {
    F_STRING("shipment", true, check_ref),
    F_END,
};

/* "shipment" where a type allows it. */
static const struct field_rule ship_optional_rules[] = {
    F_STRING("shipment", false, check_ref),
    F_END,
};

/* Check an event: members, envelope, shipment, type fields, cross-field rules. */
static bool check_event(const json_t *root, const struct event_type *et, struct check_ctx *cx,
                        struct request_error *err)
{
	const char *code = ERR_INVALID_EVENT;
	const char *field = NULL;
	const char *why;

	if (!check_no_unknown(root, envelope_rules, et->fields, event_top_names, "", code, err) ||
	    !check_rules(root, envelope_rules, "", code, cx, err))
		return false;
	if (et->ship == SHIP_NONE && json_object_get(root, "shipment") != NULL) {
		set_error(err, code,
		          "field \"shipment\": not allowed on %s (only on shipment.* and "
		          "document.issued)",
		          et->name);
		return false;
	}
	if (et->ship == SHIP_REQUIRED && !check_rules(root, ship_required_rules, "", code, cx, err))
		return false;
	if (et->ship == SHIP_OPTIONAL && !check_rules(root, ship_optional_rules, "", code, cx, err))
		return false;
	if (!check_rules(root, et->fields, "", code, cx, err))
		return false;
	why = et->finish != NULL ? et->finish(root, &field) : NULL;
	if (why != NULL) {
		set_error(err, code, "field \"%s\": %s", field, why);
		return false;
	}
	return true;
}

/* Check an event and fill rq->u.event from the tree. */
static bool parse_event(json_t *root, const struct event_type *et, int64_t now_ms,
                        struct request *rq, struct request_error *err)
{
	struct request_event *ev = &rq->u.event;
	struct check_ctx cx = {.now_ms = now_ms, .ev = ev};

	if (!check_event(root, et, &cx, err))
		return false;
	ev->type = et->name;
	ev->id = json_string_value(json_object_get(root, "id"));
	ev->order = json_string_value(json_object_get(root, "order"));
	ev->shipment = json_string_value(json_object_get(root, "shipment"));
	ev->occurred_at = json_string_value(json_object_get(root, "occurred_at"));
	ev->retracts = json_string_value(json_object_get(root, "retracts"));
	rq->kind = REQ_EVENT;
	return true;
}

/*
 * Check a hello: members, then that it names exactly one of exporter and
 * operator, then that one's id, then the token; fill rq->u.hello from the
 * tree.
 */
static bool parse_hello(const json_t *root, struct check_ctx *cx, struct request *rq,
                        struct request_error *err)
{
	const char *code = ERR_INVALID_REQUEST;
	const json_t *exporter, *op;

	if (!check_no_unknown(root, hello_who_rules, hello_token_rules, top_names, "", code, err))
		return false;
	/* Which of the two before what it holds: both is one mistake, not a bad id. */
	exporter = json_object_get(root, "exporter");
	op = json_object_get(root, "operator");
	if (exporter == NULL && op == NULL) {
		set_error(err, code, "field \"exporter\": required (or \"operator\")");
		return false;
	}
	if (exporter != NULL && op != NULL) {
		set_error(err, code, "field \"operator\": not allowed together with \"exporter\"");
		return false;
	}
	if (!check_rules(root, hello_who_rules, "", code, cx, err) ||
	    !check_rules(root, hello_token_rules, "", code, cx, err))
		return false;
	rq->kind = REQ_HELLO;
	rq->u.hello.exporter = json_string_value(exporter);
	/* clang-format reads "operator =" as C++ and would glue it; this is C. */
	/* clang-format off */
	rq->u.hello.operator = json_string_value(op);
	/* clang-format on */
	rq->u.hello.token = json_string_value(json_object_get(root, "token"));
	return true;
}

/* Check a subscribe and fill rq->u.subscribe; the filters stay in the tree. */
static bool parse_subscribe(const json_t *root, struct check_ctx *cx, struct request *rq,
                            struct request_error *err)
{
	const char *code = ERR_INVALID_REQUEST;

	if (!check_no_unknown(root, subscribe_rules, NULL, top_names, "", code, err) ||
	    !check_rules(root, subscribe_rules, "", code, cx, err))
		return false;
	rq->kind = REQ_SUBSCRIBE;
	rq->u.subscribe.after = json_integer_value(json_object_get(root, "after"));
	rq->u.subscribe.kinds = json_object_get(root, "kinds");
	rq->u.subscribe.orders = json_object_get(root, "orders");
	rq->u.subscribe.exporters = json_object_get(root, "exporters");
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
	if (!numbers_in_range(line, len, err))
		goto fail;
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
		if (!parse_hello(root, &cx, rq, err)) {
			err->hello = true; /* a broken hello, not some other line */
			goto fail;
		}
	} else if (strcmp(tname, "subscribe") == 0) {
		if (!parse_subscribe(root, &cx, rq, err))
			goto fail;
	} else if (strcmp(tname, "ping") == 0) {
		if (!check_no_unknown(root, ping_rules, NULL, top_names, "", ERR_INVALID_REQUEST,
		                      err))
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

/* Append jansson's compact text of one value, with extra dump flags. */
static void canon_dump(struct textbuf *b, const json_t *v, size_t flags)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | flags);

	if (s == NULL)
		abort(); /* only out of memory gets here */
	textbuf_add(b, s, strlen(s));
	json_text_free(s);
}

/*
 * Append a real as the shortest text that reads back as the same double,
 * so 7.9 stays "7.9" (jansson alone writes 17 digits, "7.9000000000000004",
 * which PostgreSQL's numeric would keep as a different number).
 */
static void canon_real(struct textbuf *b, const json_t *v)
{
	double d = json_real_value(v);

	for (int p = 1; p < 17; p++) {
		char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(p));
		if (s == NULL)
			abort();
		bool exact = strtod(s, NULL) == d;
		if (exact)
			textbuf_add(b, s, strlen(s));
		json_text_free(s);
		if (exact)
			return;
	}
	canon_dump(b, v, JSON_REAL_PRECISION(17)); /* 17 digits always read back */
}

/* Order object keys bytewise, as JSON_SORT_KEYS does. */
static int canon_key_cmp(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Append the canonical text of v: compact, keys sorted, reals shortest. */
static void canon_value(struct textbuf *b, const json_t *v)
{
	size_t i, n;
	const char *key;
	json_t *m;

	switch (json_typeof(v)) {
	case JSON_OBJECT: {
		const char **keys = calloc(json_object_size(v) + 1, sizeof(*keys));
		if (keys == NULL)
			abort();
		n = 0;
		json_object_foreach((json_t *)v, key, m)
		{
			keys[n++] = key;
		}
		qsort(keys, n, sizeof(*keys), canon_key_cmp);
		textbuf_add(b, "{", 1);
		for (i = 0; i < n; i++) {
			json_t *ks = json_string(keys[i]);
			if (ks == NULL)
				abort(); /* keys are valid UTF-8: jansson checked them */
			if (i > 0)
				textbuf_add(b, ",", 1);
			canon_dump(b, ks, 0);
			json_decref(ks);
			textbuf_add(b, ":", 1);
			canon_value(b, json_object_get(v, keys[i]));
		}
		textbuf_add(b, "}", 1);
		free(keys);
		break;
	}
	case JSON_ARRAY:
		textbuf_add(b, "[", 1);
		json_array_foreach(v, i, m)
		{
			if (i > 0)
				textbuf_add(b, ",", 1);
			canon_value(b, m);
		}
		textbuf_add(b, "]", 1);
		break;
	case JSON_REAL:
		canon_real(b, v);
		break;
	default:
		canon_dump(b, v, 0);
		break;
	}
}

/*
 * Serialise the request compactly with sorted keys, each real in its
 * shortest exact form; NULL when rq holds no tree.
 */
char *request_event_canonical(const struct request *rq, size_t *len)
{
	struct textbuf b = {0};

	if (rq->root == NULL)
		return NULL;
	canon_value(&b, rq->root);
	if (len != NULL)
		*len = b.len;
	return b.p;
}
