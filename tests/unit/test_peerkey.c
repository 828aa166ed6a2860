/*
 * test_peerkey.c - the key of per-address limits: IPv4 and IPv4-mapped
 * addresses per address, other IPv6 addresses per /64.  The integration
 * tests can reach the daemon from ::1 only, one address of its /64, so
 * the sharing of one key across a /64 is shown here.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cmocka.h>

#include "peerkey.h"

/* The key of the address text (IPv4 when it has no ':'), in a static buffer. */
static const char *key_of(const char *addr)
{
	static char out[PEERKEY_MAX];
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (strchr(addr, ':') == NULL) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_port = htons(7433);
		assert_int_equal(inet_pton(AF_INET, addr, &in->sin_addr), 1);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(7433);
		assert_int_equal(inet_pton(AF_INET6, addr, &in6->sin6_addr), 1);
	}
	peerkey_format((const struct sockaddr *)&ss, out, sizeof(out));
	return out;
}

static void test_ipv4_per_address(void **state)
{
	(void)state;
	assert_string_equal(key_of("192.0.2.7"), "192.0.2.7");
	assert_string_equal(key_of("192.0.2.8"), "192.0.2.8");
	assert_string_equal(key_of("127.0.0.1"), "127.0.0.1");
}

/* Every address of one /64 has one key; the next /64 has another. */
static void test_ipv6_per_64(void **state)
{
	(void)state;
	assert_string_equal(key_of("2001:db8:1:2::1"), "2001:db8:1:2::/64");
	assert_string_equal(key_of("2001:db8:1:2:aaaa:bbbb:cccc:dddd"), "2001:db8:1:2::/64");
	assert_string_equal(key_of("2001:db8:1:2:ffff:ffff:ffff:ffff"), "2001:db8:1:2::/64");
	assert_string_equal(key_of("2001:db8:1:3::1"), "2001:db8:1:3::/64");
	assert_string_equal(key_of("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"),
	                    "2001:db8:ffff:ffff::/64");
	assert_string_equal(key_of("fe80::1:2:3:4"), "fe80::/64");
	assert_string_equal(key_of("::1"), "::/64");
}

/* An IPv4 peer on a dual-stack socket is still one IPv4 address. */
static void test_ipv4_mapped_per_address(void **state)
{
	(void)state;
	assert_string_equal(key_of("::ffff:192.0.2.7"), "::ffff:192.0.2.7");
	assert_string_equal(key_of("::ffff:192.0.2.8"), "::ffff:192.0.2.8");
}

static void test_other_family(void **state)
{
	(void)state;
	struct sockaddr_un un;
	memset(&un, 0, sizeof(un));
	un.sun_family = AF_UNIX;
	char out[PEERKEY_MAX];
	peerkey_format((const struct sockaddr *)&un, out, sizeof(out));
	assert_string_equal(out, "?");
}

/* The longest key fits PEERKEY_MAX with room to spare. */
static void test_longest_fits(void **state)
{
	(void)state;
	const char *k = key_of("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
	assert_string_equal(k, "ffff:ffff:ffff:ffff::/64");
	k = key_of("::ffff:255.255.255.255");
	assert_true(strlen(k) < PEERKEY_MAX);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ipv4_per_address),
	    cmocka_unit_test(test_ipv6_per_64),
	    cmocka_unit_test(test_ipv4_mapped_per_address),
	    cmocka_unit_test(test_other_family),
	    cmocka_unit_test(test_longest_fits),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
