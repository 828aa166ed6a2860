/*
 * validate.c - field-level checks: identifier charsets and RFC 3339 times.
 *
 * Every check is pure and allocation-free and answers with NULL (fine) or a
 * static reason string that the caller prefixes with the field name.
 *
 * Timestamps follow RFC 3339 section 5.6 strictly: "YYYY-MM-DDTHH:MM:SS",
 * an optional fraction of 1 to 9 digits, then "Z" or "+hh:mm"/"-hh:mm".  An
 * offset is mandatory (a time without one names no instant).  As the RFC
 * allows, "t" and "z" are accepted in lower case; no other variation is
 * (no space for "T", no "+hhmm", no missing seconds).  Years run 0001-9999,
 * dates are checked against the real calendar (Gregorian leap years), and
 * offsets are limited to -23:59..+23:59.  A leap second (":60") is refused:
 * it cannot be told apart from the next second in epoch milliseconds, and
 * none has been scheduled since 2016.  Digits of the fraction after the
 * third are dropped (truncated, not rounded).  The epoch value is computed
 * with plain day arithmetic, never through libc's timezone code.
 */
#include "validate.h"

#define EVENT_ID_MAX 128
#define REF_MAX      64

static const char reason_event_id[] = "must be 1-128 characters of A-Za-z0-9._:-";
static const char reason_ref[] = "must be 1-64 characters of A-Za-z0-9._/-";
static const char reason_format[] =
    "must be RFC 3339 with an explicit offset, e.g. 2026-03-01T08:00:00+02:00";
static const char reason_year[] = "year must be 0001-9999";
static const char reason_date[] = "no such date (month 01-12, day within the month)";
static const char reason_time[] = "no such time (hour 00-23, minute and second 00-59)";
static const char reason_leap[] = "leap second :60 is not accepted";
static const char reason_offset[] = "offset must be within -23:59..+23:59";

/* True for the characters shared by event ids and refs: A-Za-z0-9 . _ - */
static bool is_id_common(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '.' || c == '_' || c == '-';
}

/* Check that s is 1..max characters, each common or equal to extra. */
static bool id_charset_ok(const char *s, size_t max, char extra)
{
	size_t n = 0;

	if (s == NULL)
		return false;
	for (; s[n] != '\0'; n++) {
		if (n >= max)
			return false;
		if (!is_id_common(s[n]) && s[n] != extra)
			return false;
	}
	return n > 0;
}

/* Check an event id: 1..128 characters of A-Za-z0-9._:- */
const char *validate_event_id(const char *s)
{
	return id_charset_ok(s, EVENT_ID_MAX, ':') ? NULL : reason_event_id;
}

/* Check an order or shipment ref: 1..64 characters of A-Za-z0-9._/- */
const char *validate_ref(const char *s)
{
	return id_charset_ok(s, REF_MAX, '/') ? NULL : reason_ref;
}

/* Read exactly n decimal digits at *p into *out and advance *p; false if any is missing. */
static bool read_digits(const char **p, int n, int *out)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		char c = (*p)[i];
		if (c < '0' || c > '9')
			return false;
		v = v * 10 + (c - '0');
	}
	*p += n;
	*out = v;
	return true;
}

/* Consume the single character c at *p; false if something else is there. */
static bool read_char(const char **p, char c)
{
	if (**p != c)
		return false;
	(*p)++;
	return true;
}

/* True for Gregorian leap years. */
static bool is_leap(int y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

/* Number of days in month m (1-12) of year y. */
static int month_days(int y, int m)
{
	static const int len[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return (m == 2 && is_leap(y)) ? 29 : len[m - 1];
}

/* Days from 1970-01-01 to y-m-d (proleptic Gregorian, y >= 1); negative before 1970. */
static int64_t days_since_epoch(int y, int m, int d)
{
	/* Days before month m in a common year. */
	static const int before[12] = {0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334};
	/* Days from 0001-01-01 to 1970-01-01. */
	const int64_t epoch_days = 719162;
	int64_t full = (int64_t)y - 1; /* whole years before y, all non-negative */
	int64_t days = full * 365 + full / 4 - full / 100 + full / 400;

	days += before[m - 1] + (d - 1);
	if (m > 2 && is_leap(y))
		days += 1;
	return days - epoch_days;
}

/* Parse an RFC 3339 date-time with offset into epoch milliseconds and offset minutes. */
const char *validate_rfc3339(const char *s, int64_t *epoch_ms, int *offset_min)
{
	const char *p = s;
	int year, mon, day, hour, min, sec, ms = 0;
	int off = 0;

	if (s == NULL)
		return reason_format;
	if (!read_digits(&p, 4, &year) || !read_char(&p, '-') || !read_digits(&p, 2, &mon) ||
	    !read_char(&p, '-') || !read_digits(&p, 2, &day))
		return reason_format;
	if (*p != 'T' && *p != 't')
		return reason_format;
	p++;
	if (!read_digits(&p, 2, &hour) || !read_char(&p, ':') || !read_digits(&p, 2, &min) ||
	    !read_char(&p, ':') || !read_digits(&p, 2, &sec))
		return reason_format;
	if (*p == '.') {
		int ndig = 0;
		p++;
		while (*p >= '0' && *p <= '9') {
			if (ndig < 3)
				ms = ms * 10 + (*p - '0');
			ndig++;
			p++;
		}
		if (ndig == 0 || ndig > 9)
			return reason_format;
		/* Scale "5" to 500 ms and "25" to 250 ms. */
		for (int i = ndig; i < 3; i++)
			ms *= 10;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;
		int oh, om;
		p++;
		if (!read_digits(&p, 2, &oh) || !read_char(&p, ':') || !read_digits(&p, 2, &om))
			return reason_format;
		if (oh > 23 || om > 59)
			return reason_offset;
		off = sign * (oh * 60 + om);
	} else {
		return reason_format;
	}
	if (*p != '\0')
		return reason_format;

	if (year < 1)
		return reason_year;
	if (mon < 1 || mon > 12 || day < 1 || day > month_days(year, mon))
		return reason_date;
	if (sec == 60 && hour <= 23 && min <= 59)
		return reason_leap;
	if (hour > 23 || min > 59 || sec > 59)
		return reason_time;

	int64_t local_s = days_since_epoch(year, mon, day) * 86400 + (int64_t)hour * 3600 +
	                  (int64_t)min * 60 + sec;
	/* Local time minus the offset east of UTC gives UTC. */
	int64_t utc_s = local_s - (int64_t)off * 60;
	if (epoch_ms != NULL)
		*epoch_ms = utc_s * 1000 + ms;
	if (offset_min != NULL)
		*offset_min = off;
	return NULL;
}
