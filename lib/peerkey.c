/*
 * peerkey.c - a peer's key for per-address limits; see peerkey.h.
 *
 * An IPv6 host is normally given a whole /64 (SLAAC, privacy addresses),
 * so it can pick a fresh source address for every connection: counted
 * per /128, limits.max_failed_hellos and max_connections_per_ip would
 * give it 2^64 budgets.  The /64 is the smallest unit one host cannot
 * leave.  IPv4-mapped addresses are IPv4 peers on a dual-stack socket
 * and stay per address, as IPv4 does.
 */
#include "peerkey.h"

#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

void peerkey_format(const struct sockaddr *sa, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";
	const char *suffix = "";
	if (sa->sa_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
	} else if (sa->sa_family == AF_INET6) {
		struct in6_addr a = ((const struct sockaddr_in6 *)sa)->sin6_addr;
		if (!IN6_IS_ADDR_V4MAPPED(&a)) {
			memset(&a.s6_addr[8], 0, 8); /* keep the /64 */
			suffix = "/64";
		}
		inet_ntop(AF_INET6, &a, host, sizeof(host));
	}
	snprintf(out, cap, "%s%s", host, suffix);
}
