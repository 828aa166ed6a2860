/*
 * test_validate.c - unit tests for lib/validate.c.
 *
 * Covers the id and ref charsets at their length boundaries and with every
 * kind of bad character, and RFC 3339 parsing: accepted forms with their
 * exact epoch milliseconds and offsets (worked out by hand in the comments),
 * and the forms that must be refused; dates, HS codes, country and
 * currency codes against their real lists, UN/LOCODEs and document kinds.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "validate.h"

/* Fill buf with n copies of c and terminate it. */
static char *repeat(char *buf, char c, size_t n)
{
	memset(buf, c, n);
	buf[n] = '\0';
	return buf;
}

/* Event ids: empty refused, 1 and 128 characters accepted, 129 refused. */
static void test_event_id_lengths(void **state)
{
	char buf[200];
	(void)state;

	assert_non_null(validate_event_id(""));
	assert_non_null(validate_event_id(NULL));
	assert_null(validate_event_id(repeat(buf, 'a', 1)));
	assert_null(validate_event_id(repeat(buf, 'Z', 127)));
	assert_null(validate_event_id(repeat(buf, '9', 128)));
	assert_non_null(validate_event_id(repeat(buf, 'a', 129)));
	assert_string_equal(validate_event_id(repeat(buf, 'a', 129)),
	                    "must be 1-128 characters of A-Za-z0-9._:-");
}

/* Event ids: every allowed character passes, every other printable one fails. */
static void test_event_id_charset(void **state)
{
	(void)state;

	assert_null(validate_event_id("AZaz09._:-"));
	assert_null(validate_event_id("evt:2026-03-01:0001"));
	for (int c = 1; c < 256; c++) {
		char s[4] = {'a', (char)c, 'b', '\0'};
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '-';
		if (ok)
			assert_null(validate_event_id(s));
		else
			assert_non_null(validate_event_id(s));
	}
	/* A ref-only character and a few likely mistakes. */
	assert_non_null(validate_event_id("a/b"));
	assert_non_null(validate_event_id("a b"));
	assert_non_null(validate_event_id("é"));
}

/* Refs: empty refused, 1 and 64 characters accepted, 65 refused. */
static void test_ref_lengths(void **state)
{
	char buf[100];
	(void)state;

	assert_non_null(validate_ref(""));
	assert_non_null(validate_ref(NULL));
	assert_null(validate_ref(repeat(buf, 'x', 1)));
	assert_null(validate_ref(repeat(buf, '/', 64)));
	assert_non_null(validate_ref(repeat(buf, 'x', 65)));
	assert_string_equal(validate_ref(repeat(buf, 'x', 65)),
	                    "must be 1-64 characters of A-Za-z0-9._/-");
}

/* Refs: every allowed character passes, every other one fails. */
static void test_ref_charset(void **state)
{
	(void)state;

	assert_null(validate_ref("PO-2026/0042_a.b"));
	for (int c = 1; c < 256; c++) {
		char s[4] = {'a', (char)c, 'b', '\0'};
		bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
		          (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '/' || c == '-';
		if (ok)
			assert_null(validate_ref(s));
		else
			assert_non_null(validate_ref(s));
	}
	assert_non_null(validate_ref("a:b")); /* id-only character */
}

/* Parse s, which must be accepted, and compare the instant and offset. */
static void expect_time(const char *s, int64_t want_ms, int want_off)
{
	int64_t ms = 12345;
	int off = 12345;
	const char *why = validate_rfc3339(s, &ms, &off);

	if (why != NULL)
		fail_msg("\"%s\" refused: %s", s, why);
	assert_int_equal(ms, want_ms);
	assert_int_equal(off, want_off);
}

/* Accepted forms, with values worked out by hand. */
static void test_rfc3339_accepted(void **state)
{
	(void)state;

	expect_time("1970-01-01T00:00:00Z", 0, 0);
	expect_time("1970-01-01T00:00:00+00:00", 0, 0);
	expect_time("1970-01-01T00:00:00-00:00", 0, 0);
	/* 1970-01-02T00:00:00Z: one day. */
	expect_time("1970-01-02T00:00:00Z", 86400000, 0);
	/* 2026-03-01: 56 years since 1970 = 20440 days + 14 leap days (1972..2024),
	 * + 31 (Jan) + 28 (Feb) = 20513 days = 1772323200 s; 08:00+02:00 is 06:00Z,
	 * + 21600 s = 1772344800 s. */
	expect_time("2026-03-01T08:00:00+02:00", INT64_C(1772344800000), 120);
	expect_time("2026-03-01T06:00:00Z", INT64_C(1772344800000), 0);
	expect_time("2026-03-01T00:30:00-05:30", INT64_C(1772344800000), -330);
	/* Lower case t and z are accepted (RFC 3339 5.6 note). */
	expect_time("2026-03-01t06:00:00z", INT64_C(1772344800000), 0);
	/* Fractions: 1 digit = tenths, 3 = ms, 9 = ns truncated to ms. */
	expect_time("1970-01-01T00:00:00.5Z", 500, 0);
	expect_time("1970-01-01T00:00:00.25Z", 250, 0);
	expect_time("1970-01-01T00:00:01.123Z", 1123, 0);
	expect_time("1970-01-01T00:00:01.123999999Z", 1123, 0);
	expect_time("1970-01-01T00:00:00.000000001Z", 0, 0);
	/* Before the epoch: -1 s + 0.5 s. */
	expect_time("1969-12-31T23:59:59.5Z", -500, 0);
	/* 2024 is a leap year: 2024-02-29 = 19782 days (54 years: 19710 + 13 leap
	 * days 1972..2020, + 31 + 28); 23:59:59.999-05:30 is 2024-03-01T05:29:59.999Z
	 * = 19783 days + 19799.999 s = 1709270999.999 s. */
	expect_time("2024-02-29T23:59:59.999-05:30", INT64_C(1709270999999), -330);
	/* 2000 is a leap year (divisible by 400). */
	expect_time("2000-02-29T00:00:00Z", INT64_C(951782400000), 0);
	/* Range ends: 0001-01-01 is 719162 days before 1970. */
	expect_time("0001-01-01T00:00:00Z", -INT64_C(719162) * 86400000, 0);
	expect_time("0001-01-01T00:00:00+15:59", -INT64_C(719162) * 86400000 - 959 * 60000, 959);
	/* 9999-12-31 is 2932896 days after 1970. */
	expect_time("9999-12-31T23:59:59-15:59",
	            INT64_C(2932896) * 86400000 + 86399000 + 959 * 60000, -959);
	/* 1900 is not a leap year: 1900-03-01 = -25508 days. */
	expect_time("1900-03-01T00:00:00Z", -INT64_C(25508) * 86400000, 0);
	/* The first of every month of 2026, in seconds (from Python's datetime). */
	static const int64_t first_of_month[12] = {
	    1767225600, 1769904000, 1772323200, 1775001600, 1777593600, 1780272000,
	    1782864000, 1785542400, 1788220800, 1790812800, 1793491200, 1796083200,
	};
	for (int m = 1; m <= 12; m++) {
		char t[32];
		snprintf(t, sizeof(t), "2026-%02d-01T00:00:00Z", m);
		expect_time(t, first_of_month[m - 1] * 1000, 0);
	}
}

/* Outputs may be NULL when the caller only wants the verdict. */
static void test_rfc3339_null_outputs(void **state)
{
	(void)state;
	assert_null(validate_rfc3339("2026-03-01T08:00:00+02:00", NULL, NULL));
}

/* The microsecond instant of s, which must be accepted. */
static int64_t instant_us(const char *s)
{
	struct rfc3339_instant t;
	const char *why = validate_rfc3339_instant(s, &t);
	if (why != NULL)
		fail_msg("\"%s\" refused: %s", s, why);
	return t.us;
}

/*
 * Microseconds, as PostgreSQL's timestamptz holds the same text: six
 * digits exactly, more rounded to nearest with ties to even on the double
 * PostgreSQL computes (the integration test pipeline/test_occurred_at_as_stored
 * compares with a real server's parse).
 */
static void test_rfc3339_microseconds(void **state)
{
	(void)state;
	struct rfc3339_instant t;
	assert_null(validate_rfc3339_instant("2026-03-01T08:00:00.123456+02:00", &t));
	assert_int_equal(t.us, INT64_C(1772344800123456));
	assert_int_equal(t.ms, INT64_C(1772344800123));
	assert_int_equal(t.offset_min, 120);
	assert_int_equal(instant_us("1970-01-01T00:00:00Z"), 0);
	assert_int_equal(instant_us("1970-01-01T00:00:00.5Z"), 500000);
	assert_int_equal(instant_us("1970-01-01T00:00:00.1234564Z"), 123456);
	assert_int_equal(instant_us("1970-01-01T00:00:00.1234566Z"), 123457);
	assert_int_equal(instant_us("1970-01-01T00:00:00.123456789Z"), 123457);
	/* Ties go to the even neighbour: 0.5 us to 0, 1.5 and 2.5 us to 2. */
	assert_int_equal(instant_us("1970-01-01T00:00:00.0000005Z"), 0);
	assert_int_equal(instant_us("1970-01-01T00:00:00.0000015Z"), 2);
	assert_int_equal(instant_us("1970-01-01T00:00:00.0000025Z"), 2);
	/* Rounding may carry into the next second, where the milliseconds,
	 * truncated, stay in this one. */
	assert_null(validate_rfc3339_instant("1969-12-31T23:59:59.9999996Z", &t));
	assert_int_equal(t.us, 0);
	assert_int_equal(t.ms, -1);
	assert_int_equal(instant_us("1969-12-31T23:59:59.5Z"), -500000);
	assert_int_equal(instant_us("0001-01-01T00:00:00Z"), -INT64_C(719162) * 86400000000);
	/* A refused time leaves the output alone. */
	t.us = 777;
	assert_non_null(validate_rfc3339_instant("2026-03-01T08:00:00.1234567890Z", &t));
	assert_int_equal(t.us, 777);
}

/* Parse s, which must be refused, and check that the outputs were left alone. */
static void expect_refused(const char *s)
{
	int64_t ms = 777;
	int off = 777;

	if (validate_rfc3339(s, &ms, &off) == NULL)
		fail_msg("\"%s\" accepted", s);
	assert_int_equal(ms, 777);
	assert_int_equal(off, 777);
}

/* Forms that must be refused. */
static void test_rfc3339_refused(void **state)
{
	(void)state;

	expect_refused(NULL);
	expect_refused("");
	expect_refused("2026-03-01T08:00:00");      /* no offset */
	expect_refused("2026-03-01T08:00:00.123");  /* no offset */
	expect_refused("2026-03-01 08:00:00Z");     /* space for T */
	expect_refused("2026-03-01");               /* date only */
	expect_refused("2026-03-01T08:00Z");        /* no seconds */
	expect_refused("2026-3-01T08:00:00Z");      /* one-digit month */
	expect_refused("26-03-01T08:00:00Z");       /* two-digit year */
	expect_refused("2026-03-01T08:00:00+0200"); /* offset without colon */
	expect_refused("2026-03-01T08:00:00+02");   /* offset without minutes */
	expect_refused("2026-03-01T08:00:00+2:00"); /* one-digit offset hour */
	expect_refused("2026-03-01T08:00:00Zjunk"); /* trailing junk */
	expect_refused("2026-03-01T08:00:00Z ");    /* trailing space */
	expect_refused(" 2026-03-01T08:00:00Z");    /* leading space */
	expect_refused("2026-03-01T08:00:00+02:00x");
	expect_refused("2026-03-01T08:00:00.Z");           /* empty fraction */
	expect_refused("2026-03-01T08:00:00.1234567890Z"); /* 10 digits */
	expect_refused("2026-03-01T08:00:00,5Z");          /* comma fraction */
	expect_refused("2026-00-01T08:00:00Z");            /* month 0 */
	expect_refused("2026-13-01T08:00:00Z");            /* month 13 */
	expect_refused("2026-03-00T08:00:00Z");            /* day 0 */
	expect_refused("2026-04-31T08:00:00Z");            /* April has 30 */
	expect_refused("2026-01-32T08:00:00Z");
	expect_refused("2026-02-29T08:00:00Z"); /* 2026 not leap */
	expect_refused("1900-02-29T08:00:00Z"); /* century, not leap */
	expect_refused("2026-03-01T24:00:00Z");
	expect_refused("2026-03-01T23:60:00Z");
	expect_refused("2026-03-01T23:59:61Z");
	expect_refused("2016-12-31T23:59:60Z"); /* leap second refused, see validate.c */
	expect_refused("2026-03-01T08:00:00+24:00");
	expect_refused("2026-03-01T08:00:00-24:00");
	expect_refused("2026-03-01T08:00:00+16:00"); /* PostgreSQL refuses 16 h */
	expect_refused("2026-03-01T08:00:00-23:59");
	expect_refused("2026-03-01T08:00:00+02:60");
	expect_refused("0000-01-01T00:00:00Z"); /* year 0 */
	expect_refused("+2026-03-01T08:00:00Z");
	expect_refused("2026-03-01T08:00:00UTC");
	expect_refused("2026-03-01X08:00:00Z");
}

/* Reasons are the documented static strings. */
static void test_rfc3339_reasons(void **state)
{
	(void)state;

	assert_string_equal(
	    validate_rfc3339("2026-03-01T08:00:00", NULL, NULL),
	    "must be RFC 3339 with an explicit offset, e.g. 2026-03-01T08:00:00+02:00");
	assert_string_equal(validate_rfc3339("2026-02-29T08:00:00Z", NULL, NULL),
	                    "no such date (month 01-12, day within the month)");
	assert_string_equal(validate_rfc3339("2026-03-01T24:00:00Z", NULL, NULL),
	                    "no such time (hour 00-23, minute and second 00-59)");
	/* A leap second is named as such, not as an impossible time. */
	assert_string_equal(validate_rfc3339("2016-12-31T23:59:60Z", NULL, NULL),
	                    "leap second :60 is not accepted");
	assert_string_equal(validate_rfc3339("2026-13-01T08:00:00Z", NULL, NULL),
	                    "no such date (month 01-12, day within the month)");
	assert_string_equal(validate_rfc3339("2026-03-01T08:00:00+24:00", NULL, NULL),
	                    "offset must be within -15:59..+15:59");
	/* PostgreSQL's limit: 16 hours is out, either way. */
	assert_string_equal(validate_rfc3339("2026-03-01T08:00:00-16:00", NULL, NULL),
	                    "offset must be within -15:59..+15:59");
}

/* Dates: real calendar days only, in the one YYYY-MM-DD form. */
static void test_date(void **state)
{
	(void)state;

	assert_null(validate_date("2026-11-20"));
	assert_null(validate_date("2028-02-29"));
	assert_null(validate_date("2000-02-29"));
	assert_null(validate_date("0001-01-01"));
	assert_null(validate_date("9999-12-31"));
	assert_string_equal(validate_date("2026-02-29"),
	                    "no such date (month 01-12, day within the month)");
	assert_string_equal(validate_date("1900-02-29"),
	                    "no such date (month 01-12, day within the month)");
	assert_non_null(validate_date("2026-04-31"));
	assert_non_null(validate_date("2026-13-01"));
	assert_non_null(validate_date("2026-00-10"));
	assert_string_equal(validate_date("0000-01-01"), "year must be 0001-9999");
	const char *bad[] = {NULL,
	                     "",
	                     "2026-11-2",
	                     "2026/11/20",
	                     "20261120",
	                     "2026-11-20Z",
	                     "2026-11-20T00:00:00Z",
	                     " 2026-11-20",
	                     "26-11-20",
	                     "2026-1-20"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_string_equal(validate_date(bad[i]),
		                    "must be a date YYYY-MM-DD, e.g. 2026-11-20");
}

/* HS codes: 6, 8 or 10 digits; prefixes: 2 to 10 digits. */
static void test_hs(void **state)
{
	char buf[16];
	(void)state;

	for (size_t n = 0; n <= 12; n++) {
		bool code_ok = n == 6 || n == 8 || n == 10;
		bool prefix_ok = n >= 2 && n <= 10;
		repeat(buf, '9', n);
		assert_int_equal(validate_hs_code(buf) == NULL, code_ok);
		assert_int_equal(validate_hs_prefix(buf) == NULL, prefix_ok);
	}
	assert_null(validate_hs_code("090111"));
	assert_null(validate_hs_code("0904211000"));
	assert_string_equal(validate_hs_code("0901.11"), "must be a string of 6, 8 or 10 digits");
	assert_non_null(validate_hs_code("09011a"));
	assert_non_null(validate_hs_code(" 090111"));
	/* Six good digits followed by something else are not a code. */
	assert_non_null(validate_hs_code("090111a"));
	assert_non_null(validate_hs_code("090111 "));
	assert_non_null(validate_hs_code(NULL));
	assert_null(validate_hs_prefix("09"));
	assert_string_equal(validate_hs_prefix("9"), "must be 2-10 digits");
	assert_non_null(validate_hs_prefix("09x"));
	assert_non_null(validate_hs_prefix(NULL));
}

/* Countries: the assigned ISO 3166-1 alpha-2 codes, and nothing else. */
static void test_country(void **state)
{
	int assigned = 0;
	(void)state;

	assert_null(validate_country("RW"));
	assert_null(validate_country("CN"));
	assert_null(validate_country("KE"));
	assert_null(validate_country("HK"));
	assert_null(validate_country("SS"));
	assert_null(validate_country("AX"));
	assert_null(validate_country("ZW"));
	assert_string_equal(validate_country("UK"),
	                    "is not an assigned ISO 3166-1 alpha-2 country code");
	assert_non_null(validate_country("XK")); /* user-assigned, not official */
	assert_non_null(validate_country("EU"));
	assert_non_null(validate_country("AA"));
	assert_string_equal(validate_country("rw"), "must be an ISO 3166-1 alpha-2 country code "
	                                            "(two capital letters), e.g. RW");
	assert_non_null(validate_country("RWA"));
	assert_non_null(validate_country("R"));
	assert_non_null(validate_country(""));
	assert_non_null(validate_country(NULL));
	/* The whole list: exactly 249 codes are assigned. */
	for (char a = 'A'; a <= 'Z'; a++)
		for (char b = 'A'; b <= 'Z'; b++) {
			char s[3] = {a, b, '\0'};
			assigned += validate_country(s) == NULL;
		}
	assert_int_equal(assigned, 249);
}

/* Currencies: ISO 4217 codes in capitals; common mistakes are caught. */
static void test_currency(void **state)
{
	const char *good[] = {"USD", "CNY", "RWF", "EUR", "KES", "HKD",
	                      "AED", "ZWG", "XOF", "XCG", "ZWL"}; /* ZWL: the list's last code */
	const char *bad[] = {"RMB", "CNH", "NTD", "ABC", "XXX", "XTS", "UKP"};
	(void)state;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_null(validate_currency(good[i]));
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		assert_string_equal(validate_currency(bad[i]), "is not an ISO 4217 currency code");
	assert_string_equal(validate_currency("usd"), "must be an ISO 4217 currency code (three "
	                                              "capital letters), e.g. USD");
	assert_non_null(validate_currency("US"));
	assert_non_null(validate_currency("USDT"));
	assert_non_null(validate_currency("US$"));
	assert_non_null(validate_currency(""));
	assert_non_null(validate_currency(NULL));
	/* Only whole codes match, never a piece across two. */
	assert_non_null(validate_currency("DAF"));
	assert_non_null(validate_currency("D A"));
}

/* UN/LOCODEs: a country (or XZ) and three of A-Z, 2-9. */
static void test_locode(void **state)
{
	(void)state;

	assert_null(validate_locode("RWKGL"));
	assert_null(validate_locode("CNHGH"));
	assert_null(validate_locode("CNSHA"));
	assert_null(validate_locode("KEMBA"));
	assert_null(validate_locode("XZ2AB"));
	assert_null(validate_locode("US2ZZ"));
	assert_null(validate_locode("RW9A2")); /* 9 and 2, the ends of the digit range */
	assert_string_equal(validate_locode("rwkgl"), "must be a UN/LOCODE: a country code and 3 "
	                                              "of A-Z or 2-9, e.g. RWKGL");
	assert_non_null(validate_locode("RWKG1")); /* 0 and 1 are not used */
	assert_non_null(validate_locode("RWKG0"));
	assert_non_null(validate_locode("RW KGL"));
	assert_non_null(validate_locode("RWKG"));
	assert_non_null(validate_locode("RWKGLX"));
	assert_non_null(validate_locode("QQKGL"));
	assert_non_null(validate_locode(""));
	assert_non_null(validate_locode(NULL));
}

/* Document kinds: the eight of the protocol, exactly spelled. */
static void test_document(void **state)
{
	const char *good[] = {"phytosanitary",      "certificate_of_origin", "export_declaration",
	                      "commercial_invoice", "packing_list",          "bill_of_lading",
	                      "air_waybill",        "quality_certificate"};
	(void)state;

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		assert_null(validate_document(good[i]));
	assert_non_null(validate_document("Phytosanitary"));
	assert_non_null(validate_document("invoice"));
	assert_non_null(validate_document(""));
	assert_non_null(validate_document(NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_event_id_lengths),
	    cmocka_unit_test(test_event_id_charset),
	    cmocka_unit_test(test_ref_lengths),
	    cmocka_unit_test(test_ref_charset),
	    cmocka_unit_test(test_rfc3339_accepted),
	    cmocka_unit_test(test_rfc3339_null_outputs),
	    cmocka_unit_test(test_rfc3339_microseconds),
	    cmocka_unit_test(test_rfc3339_refused),
	    cmocka_unit_test(test_rfc3339_reasons),
	    cmocka_unit_test(test_date),
	    cmocka_unit_test(test_hs),
	    cmocka_unit_test(test_country),
	    cmocka_unit_test(test_currency),
	    cmocka_unit_test(test_locode),
	    cmocka_unit_test(test_document),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
