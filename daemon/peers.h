/*
 * peers.h - what the daemon remembers per peer address: open connections
 * (for limits.max_connections_per_ip) and recent failed hellos (to slow
 * down token guessing).  An IPv6 peer's record is its /64's
 * (lib/peerkey.h).
 */
#ifndef OT_PEERS_H
#define OT_PEERS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

struct peer;

struct sockaddr;

/* The host part of a peer's address, for logs ("?" when unknown). */
void peer_host(const struct sockaddr *sa, char *out, size_t cap);
/* The record of the peer at sa (its peerkey_format() key), created on first use. */
struct peer *peer_get(const struct sockaddr *sa);
/* A connection from this peer opened or closed. */
void peer_conn_opened(struct peer *p);
void peer_conn_closed(struct peer *p);
unsigned peer_conns(const struct peer *p);
/* A hello from this peer failed; returns the failures in the current minute. */
unsigned peer_hello_failed(struct peer *p, time_t now);
/* Failed hellos in the current minute. */
unsigned peer_failed_hellos(const struct peer *p, time_t now);
/* Drop every record (shutdown). */
void peers_clear(void);

#endif
