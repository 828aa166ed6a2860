/*
 * sdnotify.h - tell systemd how the daemon is doing (sd_notify); see
 * sdnotify.c.
 *
 * Built with libsystemd (OT_HAVE_SYSTEMD), the calls send READY=1,
 * RELOADING=1, STOPPING=1, STATUS= and WATCHDOG=1 to $NOTIFY_SOCKET, and
 * do nothing when that variable is not set.  Built without it, every call
 * below is an empty inline function and compiles to nothing.
 */
#ifndef OT_SDNOTIFY_H
#define OT_SDNOTIFY_H

#include <event2/event.h>
#include <stddef.h>

#include "ot_build.h"

/* Fill buf with a one-line status for STATUS=. */
typedef void sdnotify_status_fn(char *buf, size_t cap);

#if OT_HAVE_SYSTEMD

/*
 * Start the timers: STATUS= every few seconds from fn, and WATCHDOG=1 at
 * half the interval systemd asks for (WatchdogSec=), if it asks.
 */
void sdnotify_start(struct event_base *base, sdnotify_status_fn *fn);
void sdnotify_stop(void);
/* READY=1 with the current status: start-up finished, or a reload did. */
void sdnotify_ready(void);
/* RELOADING=1 with MONOTONIC_USEC=: a SIGHUP reload begins. */
void sdnotify_reloading(void);
/* STOPPING=1: the daemon drains and will exit. */
void sdnotify_stopping(void);

#else

static inline void sdnotify_start(struct event_base *base, sdnotify_status_fn *fn)
{
	(void)base;
	(void)fn;
}
static inline void sdnotify_stop(void)
{
}
static inline void sdnotify_ready(void)
{
}
static inline void sdnotify_reloading(void)
{
}
static inline void sdnotify_stopping(void)
{
}

#endif

#endif
