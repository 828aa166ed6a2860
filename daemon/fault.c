/*
 * fault.c - crash points; see fault.h.  Compiled only into test builds.
 */
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "fault.h"
#include "log.h"
#include "server.h"

static struct event *fault_timer;

/* Is name the chosen point, and has its countdown reached zero? */
static bool fault_due(const char *name)
{
	static long remaining = -1;
	const char *point = getenv("OT_FAULT_POINT");
	if (point == NULL || strcmp(point, name) != 0)
		return false;
	if (remaining < 0) {
		const char *after = getenv("OT_FAULT_AFTER");
		remaining = after ? strtol(after, NULL, 10) : 1;
	}
	return --remaining == 0;
}

/* Kill the process the hard way, as a power cut would. */
static void fault_die(const char *name)
{
	log_warnx("fault point reached, killing myself", "point=%s", name);
	raise(SIGKILL);
}

bool fault_check(const char *name)
{
	return fault_due(name);
}

void fault_point(const char *name)
{
	if (fault_due(name))
		fault_die(name);
}

/* Timer for fault_point_soon. */
static void fault_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	fault_die(arg);
}

void fault_point_soon(const char *name)
{
	if (!fault_due(name))
		return;
	struct timeval tv = {0, 100 * 1000};
	fault_timer = evtimer_new(server.base, fault_timer_cb, (void *)name);
	evtimer_add(fault_timer, &tv);
}
