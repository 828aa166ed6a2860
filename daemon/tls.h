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

/*
 * The bytes of a TLS record reach the connection only once the record is
 * whole, so a peer sending one byte of a record now and then would never
 * show a started line, while each byte keeps its idle timeout away.  When
 * bev is a TLS bufferevent, call fn(arg) each time bytes of the peer's come
 * off the socket; nothing for a plain one.
 */
typedef void tls_raw_fn(void *arg);
void tls_watch_raw(struct bufferevent *bev, tls_raw_fn *fn, void *arg);
/* Does OpenSSL hold bytes of the peer's not handed on yet (a part of a record)? */
bool tls_raw_pending(struct bufferevent *bev);

#endif
