/*
 * pgsock.c - one libpq connection in the event loop; see pgsock.h.
 *
 * The socket gets one persistent event, set again only when what it waits
 * for or the socket itself changes: libpq may open a new socket while
 * connecting (trying the next address of a host), so PQsocket() is read
 * every time.
 */
#include <stdlib.h>

#include "pgsock.h"

void pgsock_init(struct pgsock *ps, struct event_base *base, int priority, event_callback_fn io_cb,
                 event_callback_fn retry_cb, void *arg, int backoff_min_ms, int backoff_max_ms)
{
	ps->pg = NULL;
	ps->base = base;
	ps->io_cb = io_cb;
	ps->arg = arg;
	ps->priority = priority;
	ps->ev_added = false;
	ps->backoff_min_ms = backoff_min_ms;
	ps->backoff_max_ms = backoff_max_ms;
	ps->backoff_ms = backoff_min_ms;
	ps->ev_retry = evtimer_new(base, retry_cb, arg);
	if (ps->ev_retry == NULL)
		abort();
}

bool pgsock_start(struct pgsock *ps, const char *conninfo, const char *app_name,
                  PQnoticeReceiver notice, void *notice_arg)
{
	/* expand_dbname: conninfo may be a whole connection string. */
	const char *keys[] = {"dbname", "fallback_application_name", NULL};
	const char *vals[] = {conninfo, app_name, NULL};

	ps->pg = PQconnectStartParams(keys, vals, 1);
	if (ps->pg == NULL)
		abort(); /* libpq could not allocate */
	PQsetNoticeReceiver(ps->pg, notice, notice_arg);
	if (PQstatus(ps->pg) == CONNECTION_BAD)
		return false;
	pgsock_watch(ps, EV_WRITE);
	return true;
}

enum pgsock_step pgsock_connect_poll(struct pgsock *ps)
{
	switch (PQconnectPoll(ps->pg)) {
	case PGRES_POLLING_READING:
		pgsock_watch(ps, EV_READ);
		return PGSOCK_WAITING;
	case PGRES_POLLING_WRITING:
		pgsock_watch(ps, EV_WRITE);
		return PGSOCK_WAITING;
	case PGRES_POLLING_FAILED:
		return PGSOCK_FAILED;
	default:
		return PQsetnonblocking(ps->pg, 1) == 0 ? PGSOCK_CONNECTED : PGSOCK_FAILED;
	}
}

void pgsock_watch(struct pgsock *ps, short what)
{
	int fd = PQsocket(ps->pg);
	if (ps->ev_added && fd == ps->fd && what == ps->what)
		return;
	if (ps->ev_added)
		event_del(&ps->ev);
	ps->ev_added = false;
	if (fd < 0)
		return;
	event_assign(&ps->ev, ps->base, fd, what | EV_PERSIST, ps->io_cb, ps->arg);
	event_priority_set(&ps->ev, ps->priority);
	event_add(&ps->ev, NULL);
	ps->ev_added = true;
	ps->fd = fd;
	ps->what = what;
}

int pgsock_flush(struct pgsock *ps)
{
	int r = PQflush(ps->pg);
	if (r >= 0)
		pgsock_watch(ps, r == 1 ? EV_READ | EV_WRITE : EV_READ);
	return r;
}

void pgsock_ready(struct pgsock *ps)
{
	ps->backoff_ms = ps->backoff_min_ms;
}

/* Stop watching and close. */
static void pgsock_close(struct pgsock *ps)
{
	if (ps->ev_added)
		event_del(&ps->ev);
	ps->ev_added = false;
	if (ps->pg != NULL)
		PQfinish(ps->pg);
	ps->pg = NULL;
}

int pgsock_close_retry(struct pgsock *ps)
{
	int delay = ps->backoff_ms;
	struct timeval tv = {delay / 1000, (delay % 1000) * 1000};

	pgsock_close(ps);
	evtimer_add(ps->ev_retry, &tv);
	ps->backoff_ms = delay * 2 > ps->backoff_max_ms ? ps->backoff_max_ms : delay * 2;
	return delay;
}

void pgsock_free(struct pgsock *ps)
{
	pgsock_close(ps);
	event_free(ps->ev_retry);
}
