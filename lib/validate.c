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
 * offsets are limited to -15:59..+15:59, as PostgreSQL limits them.  A
 * leap second (":60") is refused: it cannot be told apart from the next
 * second in epoch milliseconds, and none has been scheduled since 2016.
 * Digits of the fraction after the third are dropped (truncated, not
 * rounded) for the millisecond instant the model sorts by; the
 * microsecond instant keeps six, rounded as PostgreSQL rounds them.  The
 * epoch values are computed with plain day arithmetic, never through
 * libc's timezone code.
 *
 * Trade codes are checked against the real lists, kept compact: ISO 3166-1
 * alpha-2 as the officially assigned codes (249, as of 2024; user-assigned
 * codes such as "XK" are refused), ISO 4217 as the codes of list one (2025,
 * including fund and precious-metal codes, without "XTS" for testing and
 * "XXX" for no currency, and keeping a few withdrawn since 2020 that old
 * systems still send).  A UN/LOCODE's first two letters are a country code
 * or "XZ" (international waters), as UN/LOCODE itself defines them.  HS
 * codes are checked for shape only: 6 digits (the international
 * subheading) or the 8- and 10-digit national extensions.
 */
#include "validate.h"

#include <math.h>
#include <string.h>

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
/*
 * PostgreSQL refuses offsets of 16 hours or more ("time zone displacement
 * out of range"); the world's run from -12:00 to +14:00.  Refused here, an
 * event hears why at once instead of failing its batch in the database.
 */
#define MAX_OFFSET_HOURS 15
static const char reason_offset[] = "offset must be within -15:59..+15:59";
static const char reason_date_format[] = "must be a date YYYY-MM-DD, e.g. 2026-11-20";
static const char reason_hs_code[] = "must be a string of 6, 8 or 10 digits";
static const char reason_hs_prefix[] = "must be 2-10 digits";
static const char reason_country_format[] =
    "must be an ISO 3166-1 alpha-2 country code (two capital letters), e.g. RW";
static const char reason_country[] = "is not an assigned ISO 3166-1 alpha-2 country code";
static const char reason_currency_format[] =
    "must be an ISO 4217 currency code (three capital letters), e.g. USD";
static const char reason_currency[] = "is not an ISO 4217 currency code";
static const char reason_locode[] =
    "must be a UN/LOCODE: a country code and 3 of A-Z or 2-9, e.g. RWKGL";
static const char reason_document[] =
    "must be one of phytosanitary, certificate_of_origin, export_declaration, "
    "commercial_invoice, packing_list, bill_of_lading, air_waybill, quality_certificate";

/*
 * ISO 3166-1 alpha-2, officially assigned codes: for each first letter A-Z,
 * the second letters that complete a code ("DEFG..." under A: AD, AE, ...).
 */
static const char *const country_second[26] = {
    "DEFGILMOQRSTUWXZ",        /* A */
    "ABDEFGHIJLMNOQRSTVWYZ",   /* B */
    "ACDFGHIKLMNORUVWXYZ",     /* C */
    "EJKMOZ",                  /* D */
    "CEGHRST",                 /* E */
    "IJKMOR",                  /* F */
    "ABDEFGHILMNPQRSTUWY",     /* G */
    "KMNRTU",                  /* H */
    "DELMNOQRST",              /* I */
    "EMOP",                    /* J */
    "EGHIMNPRWYZ",             /* K */
    "ABCIKRSTUVY",             /* L */
    "ACDEFGHKLMNOPQRSTUVWXYZ", /* M */
    "ACEFGILOPRUZ",            /* N */
    "M",                       /* O */
    "AEFGHKLMNRSTWY",          /* P */
    "A",                       /* Q */
    "EOSUW",                   /* R */
    "ABCDEGHIJKLMNORSTVXYZ",   /* S */
    "CDFGHJKLMNORTVWZ",        /* T */
    "AGMSYZ",                  /* U */
    "ACEGINU",                 /* V */
    "FS",                      /* W */
    "",                        /* X */
    "ET",                      /* Y */
    "AMW",                     /* Z */
};

/*
 * ISO 4217 currency codes, three letters each, in alphabetical order,
 * written as one string so that the list stays a single compact constant.
 */
static const char currencies[] = "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN "
                                 "BAM BBD BDT BGN BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD "
                                 "CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUC CUP CVE CZK "
                                 "DJF DKK DOP DZD "
                                 "EGP ERN ETB EUR "
                                 "FJD FKP "
                                 "GBP GEL GHS GIP GMD GNF GTQ GYD "
                                 "HKD HNL HRK HTG HUF "
                                 "IDR ILS INR IQD IRR ISK "
                                 "JMD JOD JPY "
                                 "KES KGS KHR KMF KPW KRW KWD KYD KZT "
                                 "LAK LBP LKR LRD LSL LYD "
                                 "MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN "
                                 "NAD NGN NIO NOK NPR NZD "
                                 "OMR "
                                 "PAB PEN PGK PHP PKR PLN PYG "
                                 "QAR "
                                 "RON RSD RUB RWF "
                                 "SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL "
                                 "THB TJS TMT TND TOP TRY TTD TWD TZS "
                                 "UAH UGX USD USN UYI UYU UYW UZS "
                                 "VED VES VND VUV "
                                 "WST "
                                 "XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD XPF XPT XSU XUA "
                                 "YER "
                                 "ZAR ZMW ZWG ZWL";

/* The document kinds protocol v1 knows. */
static const char *const documents[] = {
    "phytosanitary", "certificate_of_origin", "export_declaration", "commercial_invoice",
    "packing_list",  "bill_of_lading",        "air_waybill",        "quality_certificate",
};

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

static const int64_t ten_to_the[10] = {1,      10,      100,      1000,      10000,
                                       100000, 1000000, 10000000, 100000000, 1000000000};

/* A fraction's milliseconds, digits after the third dropped. */
static int64_t fraction_ms(int64_t digits, int ndig)
{
	return ndig <= 3 ? digits * ten_to_the[3 - ndig] : digits / ten_to_the[ndig - 3];
}

/*
 * A fraction's microseconds as PostgreSQL computes them for timestamptz:
 * the nearest double to 0.ddd, times 10^6, rounded to nearest (ties to
 * even, rint).  digits is the fraction's ndig digits as an integer.  Up to
 * six digits that is exact, so integers do; beyond, the double steps are
 * kept, since they decide ties (".0000005" is 0 us, ".0000015" 2 us) and
 * the daemon's binary COPY must store what PostgreSQL's own parse of the
 * text would.  The division of two exact doubles is correctly rounded, as
 * strtod is, so both give the same double.
 */
static int64_t fraction_us(int64_t digits, int ndig)
{
	if (ndig <= 6)
		return digits * ten_to_the[6 - ndig];
	return (int64_t)rint((double)digits / (double)ten_to_the[ndig] * 1000000.0);
}

const char *validate_rfc3339(const char *s, int64_t *epoch_ms, int *offset_min)
{
	struct rfc3339_instant t;
	const char *why = validate_rfc3339_instant(s, &t);
	if (why != NULL)
		return why;
	if (epoch_ms != NULL)
		*epoch_ms = t.ms;
	if (offset_min != NULL)
		*offset_min = t.offset_min;
	return NULL;
}

/* Parse an RFC 3339 date-time with offset; see validate.h. */
const char *validate_rfc3339_instant(const char *s, struct rfc3339_instant *out)
{
	const char *p = s;
	int year, mon, day, hour, min, sec, ndig = 0;
	int64_t digits = 0;
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
		p++;
		while (*p >= '0' && *p <= '9') {
			if (ndig < 9)
				digits = digits * 10 + (*p - '0');
			ndig++;
			p++;
		}
		if (ndig == 0 || ndig > 9)
			return reason_format;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		int sign = *p == '-' ? -1 : 1;
		int oh, om;
		p++;
		if (!read_digits(&p, 2, &oh) || !read_char(&p, ':') || !read_digits(&p, 2, &om))
			return reason_format;
		if (oh > MAX_OFFSET_HOURS || om > 59)
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
	out->ms = utc_s * 1000 + fraction_ms(digits, ndig);
	out->us = utc_s * 1000000 + fraction_us(digits, ndig);
	out->offset_min = off;
	return NULL;
}

/* Check a calendar date "YYYY-MM-DD" against the real calendar. */
const char *validate_date(const char *s)
{
	const char *p = s;
	int year, mon, day;

	if (s == NULL)
		return reason_date_format;
	if (!read_digits(&p, 4, &year) || !read_char(&p, '-') || !read_digits(&p, 2, &mon) ||
	    !read_char(&p, '-') || !read_digits(&p, 2, &day) || *p != '\0')
		return reason_date_format;
	if (year < 1)
		return reason_year;
	if (mon < 1 || mon > 12 || day < 1 || day > month_days(year, mon))
		return reason_date;
	return NULL;
}

/* Count the leading decimal digits of s; *end_ok says whether they run to the end. */
static size_t digits_run(const char *s, bool *end_ok)
{
	size_t n = 0;

	while (s[n] >= '0' && s[n] <= '9')
		n++;
	*end_ok = s[n] == '\0';
	return n;
}

/* Check an HS code: exactly 6, 8 or 10 digits. */
const char *validate_hs_code(const char *s)
{
	bool whole;
	size_t n;

	if (s == NULL)
		return reason_hs_code;
	n = digits_run(s, &whole);
	return (whole && (n == 6 || n == 8 || n == 10)) ? NULL : reason_hs_code;
}

/* Check an HS code prefix: 2 to 10 digits. */
const char *validate_hs_prefix(const char *s)
{
	bool whole;
	size_t n;

	if (s == NULL)
		return reason_hs_prefix;
	n = digits_run(s, &whole);
	return (whole && n >= 2 && n <= 10) ? NULL : reason_hs_prefix;
}

/* True for A-Z. */
static bool is_upper(char c)
{
	return c >= 'A' && c <= 'Z';
}

/* True when the two letters at s form an assigned ISO 3166-1 alpha-2 code. */
static bool country_assigned(const char *s)
{
	return is_upper(s[0]) && is_upper(s[1]) && strchr(country_second[s[0] - 'A'], s[1]) != NULL;
}

/* Check an ISO 3166-1 alpha-2 code: two capital letters, officially assigned. */
const char *validate_country(const char *s)
{
	if (s == NULL || !is_upper(s[0]) || !is_upper(s[1]) || s[2] != '\0')
		return reason_country_format;
	return country_assigned(s) ? NULL : reason_country;
}

/* Check an ISO 4217 code: three capital letters found in the list. */
const char *validate_currency(const char *s)
{
	if (s == NULL || !is_upper(s[0]) || !is_upper(s[1]) || !is_upper(s[2]) || s[3] != '\0')
		return reason_currency_format;
	/* Codes sit at multiples of 4 in the list, so a match cannot straddle two. */
	for (size_t i = 0; i + 3 <= sizeof(currencies) - 1; i += 4)
		if (memcmp(currencies + i, s, 3) == 0)
			return NULL;
	return reason_currency;
}

/* Check a UN/LOCODE: country code (or XZ), then three of A-Z and 2-9. */
const char *validate_locode(const char *s)
{
	if (s == NULL || strlen(s) != 5)
		return reason_locode;
	if (!country_assigned(s) && !(s[0] == 'X' && s[1] == 'Z'))
		return reason_locode;
	for (int i = 2; i < 5; i++)
		if (!is_upper(s[i]) && !(s[i] >= '2' && s[i] <= '9'))
			return reason_locode;
	return NULL;
}

/* Check a document kind against the list. */
const char *validate_document(const char *s)
{
	if (s == NULL)
		return reason_document;
	for (size_t i = 0; i < sizeof(documents) / sizeof(documents[0]); i++)
		if (strcmp(documents[i], s) == 0)
			return NULL;
	return reason_document;
}
