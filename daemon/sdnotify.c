/* SPDX-License-Identifier: ISC */
/*
 * sdnotify.c - the systemd notification protocol through libsystemd.
 *
 * The unit is Type=notify (conf/ordertrackd.service): systemd considers
 * the daemon started when it sends READY=1, which main.c does once the
 * listeners are bound and the database has been reached.  A SIGHUP reload
 * is bracketed by RELOADING=1 (with MONOTONIC_USEC=, which systemd 253's
 * Type=notify-reload requires and older versions ignore) and READY=1;
 * STOPPING=1 is sent when a drain begins.  A STATUS= line, shown by
 * `systemctl status`, is refreshed every STATUS_INTERVAL_S seconds.
 *
 * The watchdog: when the unit sets WatchdogSec=, systemd passes
 * WATCHDOG_USEC and kills the daemon if it hears nothing for that long.
 * WATCHDOG=1 is sent from a timer of the event loop at half that
 * interval, so a loop that stops turning (a callback that never returns)
 * stops the pings and gets the daemon restarted.
 *
 * With no $NOTIFY_SOCKET (not run by systemd, or by tests that did not ask)
 * sd_notify() does nothing and returns 0.  This file is compiled only when
 * libsystemd is found; sdnotify.h turns the calls into nothing otherwise.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <systemd/sd-daemon.h>
#include <time.h>

#include "log.h"
#include "sdnotify.h"

#define STATUS_INTERVAL_S 5
#define STATUS_MAX        256

static struct {
	sdnotify_status_fn *status_fn;
	struct event *ev_status;
	struct event *ev_watchdog;
	uint64_t watchdog_usec; /* 0: no watchdog */
	bool stopping;
} sdn;

/* Send one message; failures are only worth a debug line. */
static void sdn_send(const char *msg)
{
	int r = sd_notify(0, msg);
	if (r < 0)
		log_debug("sd_notify failed", "errno=%d", -r);
}

/* The current status text, or a placeholder before start. */
static void sdn_status(char *buf, size_t cap)
{
	if (sdn.status_fn != NULL)
		sdn.status_fn(buf, cap);
	else
		snprintf(buf, cap, "starting");
}

/* Timer: refresh STATUS=. */
static void sdn_status_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	char status[STATUS_MAX], msg[STATUS_MAX + 16];
	if (sdn.stopping)
		return; /* keep the "stopping" status */
	sdn_status(status, sizeof(status));
	snprintf(msg, sizeof(msg), "STATUS=%s", status);
	sdn_send(msg);
}

/* Timer: the loop is turning; tell the watchdog. */
static void sdn_watchdog_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	sdn_send("WATCHDOG=1");
}

void sdnotify_start(struct event_base *base, sdnotify_status_fn *fn)
{
	sdn.status_fn = fn;
	sdn.ev_status = event_new(base, -1, EV_PERSIST, sdn_status_cb, NULL);
	if (sdn.ev_status == NULL)
		abort();
	struct timeval tv = {STATUS_INTERVAL_S, 0};
	event_add(sdn.ev_status, &tv);

	uint64_t usec = 0;
	if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) {
		sdn.watchdog_usec = usec;
		uint64_t half = usec / 2;
		struct timeval wtv = {(time_t)(half / 1000000), (suseconds_t)(half % 1000000)};
		sdn.ev_watchdog = event_new(base, -1, EV_PERSIST, sdn_watchdog_cb, NULL);
		if (sdn.ev_watchdog == NULL)
			abort();
		event_add(sdn.ev_watchdog, &wtv);
		sdn_send("WATCHDOG=1");
		log_info("watchdog enabled", "interval_ms=%llu ping_ms=%llu",
		         (unsigned long long)(usec / 1000), (unsigned long long)(half / 1000));
	}
}

void sdnotify_stop(void)
{
	if (sdn.ev_status != NULL)
		event_free(sdn.ev_status);
	if (sdn.ev_watchdog != NULL)
		event_free(sdn.ev_watchdog);
	sdn.ev_status = sdn.ev_watchdog = NULL;
}

void sdnotify_ready(void)
{
	char status[STATUS_MAX], msg[STATUS_MAX + 32];
	sdn_status(status, sizeof(status));
	snprintf(msg, sizeof(msg), "READY=1\nSTATUS=%s", status);
	sdn_send(msg);
}

void sdnotify_reloading(void)
{
	struct timespec ts;
	char msg[128];
	clock_gettime(CLOCK_MONOTONIC, &ts);
	unsigned long long usec =
	    (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL;
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu\nSTATUS=reloading", usec);
	sdn_send(msg);
}

void sdnotify_stopping(void)
{
	if (sdn.stopping)
		return;
	sdn.stopping = true;
	sdn_send("STOPPING=1\nSTATUS=stopping: answering what was read, then exiting");
}
