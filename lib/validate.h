/*
 * validate.h - field-level checks shared by the request parser and the
 * event model: identifier charsets, timestamps, trade codes (HS, ISO 3166,
 * ISO 4217, UN/LOCODE) and document kinds.
 *
 * Each check returns NULL when the value is fine, or a short reason
 * ("must be 1-128 characters of A-Za-z0-9._:-") that the caller puts after
 * the field name in the error it sends back.
 */
#ifndef OT_VALIDATE_H
#define OT_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Event ids: 1..128 chars of A-Za-z0-9._:- */
const char *validate_event_id(const char *s);
/* Order and shipment refs: 1..64 chars of A-Za-z0-9._/- */
const char *validate_ref(const char *s);

/*
 * RFC 3339 date-time with an explicit offset ("Z" or "+hh:mm"/"-hh:mm"),
 * optional fraction.  On success *epoch_ms is the instant (UTC milliseconds)
 * and *offset_min the offset given; either may be NULL.
 */
const char *validate_rfc3339(const char *s, int64_t *epoch_ms, int *offset_min);

/* The instant of an RFC 3339 time, two ways. */
struct rfc3339_instant {
	int64_t ms; /* Unix epoch milliseconds, fraction digits after the third dropped */
	int64_t us; /* Unix epoch microseconds, as PostgreSQL's timestamptz holds the text */
	int offset_min;
};

/* validate_rfc3339, filling *out (left alone when s is refused). */
const char *validate_rfc3339_instant(const char *s, struct rfc3339_instant *out);

/* A calendar date "YYYY-MM-DD" that exists (Gregorian, years 0001-9999). */
const char *validate_date(const char *s);

/* An HS code as a string of 6, 8 or 10 digits ("090111", "0904211000"). */
const char *validate_hs_code(const char *s);
/* The start of an HS code, for documents.required: 2 to 10 digits. */
const char *validate_hs_prefix(const char *s);

/* An assigned ISO 3166-1 alpha-2 country code ("RW", "CN"). */
const char *validate_country(const char *s);
/* An ISO 4217 currency code ("USD", "CNY", "RWF"). */
const char *validate_currency(const char *s);
/* A UN/LOCODE: a country code, then 3 of A-Z and 2-9 ("RWKGL", "CNHGH"). */
const char *validate_locode(const char *s);

/*
 * A document kind of document.issued and documents.required
 * ("phytosanitary", "certificate_of_origin", ...).
 */
const char *validate_document(const char *s);

#endif
