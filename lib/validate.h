/*
 * validate.h - field-level checks shared by the request parser and the
 * event model: identifier charsets, timestamps, codes.
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
 * and *offset_min the offset given.
 */
const char *validate_rfc3339(const char *s, int64_t *epoch_ms, int *offset_min);

#endif
