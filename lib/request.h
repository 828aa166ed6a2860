/*
 * request.h - parse one protocol line into a request.
 *
 * A line is one JSON object.  The parser sorts it into hello, ping or event,
 * checks what protocol v1 requires of each, and on failure fills a
 * request_error with the code and a message that names the field.  It never
 * touches sockets or the database; the daemon acts on the result.
 */
#ifndef OT_REQUEST_H
#define OT_REQUEST_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum request_kind {
	REQ_HELLO,
	REQ_PING,
	REQ_EVENT,
	REQ_SUBSCRIBE,
};

/* Error codes of protocol v1, as they appear on the wire. */
#define ERR_MALFORMED_JSON       "malformed_json"
#define ERR_LINE_TOO_LONG        "line_too_long"
#define ERR_INVALID_EVENT        "invalid_event"
#define ERR_UNKNOWN_TYPE         "unknown_type"
#define ERR_INVALID_REQUEST      "invalid_request"
#define ERR_CONFLICT             "conflict"
#define ERR_AUTH_REQUIRED        "auth_required"
#define ERR_AUTH_FAILED          "auth_failed"
#define ERR_TOO_MANY_CONNECTIONS "too_many_connections"
#define ERR_INTERNAL             "internal_error"
#define ERR_FORBIDDEN            "forbidden"
#define ERR_FEED_GAP             "feed_gap"

struct request_error {
	const char *code;  /* one of the ERR_* strings */
	char message[256]; /* what is wrong, naming the field */
	char id[129];      /* the event's id when it could be read */
	bool has_id;
	bool hello; /* the line was a hello (with something wrong in it) */
};

struct request_event {
	const char *type;        /* "order.created", ... */
	const char *id;          /* event id */
	const char *order;       /* order ref */
	const char *shipment;    /* shipment ref or NULL */
	const char *occurred_at; /* as given, offset kept */
	const char *retracts;    /* event.retracted: the id it retracts, else NULL */
	int64_t occurred_ms;     /* the instant, UTC milliseconds */
	int64_t occurred_us;     /* the instant, UTC microseconds, as PostgreSQL stores it */
	int offset_min;          /* the offset given, minutes east of UTC */
};

struct request {
	enum request_kind kind;
	json_t *root; /* owned; strings below point into it */
	union {
		struct {
			const char *exporter; /* an exporter's hello, else NULL */
			const char *operator; /* an operator's hello, else NULL */
			const char *token;
		} hello;
		struct request_event event;
		struct {
			long long after; /* >= 0 */
			/* Filters: arrays of strings, borrowed from root, or NULL
			 * when absent.  kinds are notification kinds, orders are
			 * order refs, exporters are exporter ids. */
			const json_t *kinds;
			const json_t *orders;
			const json_t *exporters;
		} subscribe;
	} u;
};

/*
 * Parse line[0..len).  Returns true and fills rq (release with
 * request_clear), or false and fills err.  now_ms is the server clock, passed
 * in so that checks against it stay testable.
 */
bool request_parse(const char *line, size_t len, int64_t now_ms, struct request *rq,
                   struct request_error *err);
void request_clear(struct request *rq);

/*
 * The event as stored and compared: compact JSON with sorted keys, so that
 * key order and white space do not matter.  Returns a malloc'd string.
 */
char *request_event_canonical(const struct request *rq, size_t *len);

#endif
