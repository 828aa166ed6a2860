/*
 * peerkey.h - the key under which the daemon counts a peer's connections
 * and failed hellos (daemon/peers.c).
 */
#ifndef OT_PEERKEY_H
#define OT_PEERKEY_H

#include <stddef.h>

struct sockaddr;

/* Room for any key with its NUL: an IPv6 address in text, or a /64 prefix. */
#define PEERKEY_MAX 64

/*
 * The key of the peer at sa into out: an IPv4 address, or an IPv4-mapped
 * IPv6 one, as its text ("192.0.2.7", "::ffff:192.0.2.7"); any other IPv6
 * address as its /64 prefix ("2001:db8:1:2::/64"); "?" for any other
 * family.
 */
void peerkey_format(const struct sockaddr *sa, char *out, size_t cap);

#endif
