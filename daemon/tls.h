/* SPDX-License-Identifier: ISC */
/*
 * tls.h - TLS on the event port (OpenSSL through libevent's bufferevents).
 *
 * tls_init() builds the server's SSL_CTX from the tls group at start-up;
 * tls_reload() builds a new one on SIGHUP and keeps the old one when that
 * fails.  tls_accept() turns an accepted socket into the bufferevent a
 * connection reads and writes: plain, or TLS, or (tls.require = false)
 * whichever the first byte the peer sends calls for.
 */
#ifndef OT_TLS_H
#define OT_TLS_H

#include <event2/bufferevent.h>
#include <stdbool.h>
#include <sys/socket.h>

#include "config.h"

/*
 * Called once the socket has its bufferevent (never with NULL: a socket
 * closed before that, e.g. silent past the hello deadline, is not
 * handed on).  waited_ms: how long the socket waited for its first byte
 * (sniffing), which the hello deadline has used up; 0 when not sniffed.
 */
typedef void tls_ready_fn(struct bufferevent *bev, const struct sockaddr *sa, int salen,
                          long waited_ms);

/* Load cert, key and ca of cfg (when tls is set); false with *errstr (free() it). */
bool tls_init(const struct config *cfg, char **errstr) __attribute__((warn_unused_result));
/* SIGHUP: load the files of cfg again; on failure keep the running context, log, and
 * return false (cfg's tls keys do not run). */
bool tls_reload(const struct config *cfg);
/* Free the context and any sockets still being sniffed. */
void tls_fini(void);

/*
 * Make the bufferevent for an accepted socket and hand it to ready, at once
 * or (sniffing) from the loop once the peer's first byte is there.
 */
void tls_accept(int fd, const struct sockaddr *sa, int salen, tls_ready_fn *ready);

/*
 * After BEV_EVENT_ERROR on a connection's bufferevent: when it is a TLS
 * one whose handshake had not finished, log msg="tls handshake failed" with
 * the peer and OpenSSL's reason and return true.
 */
bool tls_handshake_failed(struct bufferevent *bev, const char *peer);

#endif
