/*
 * admin.h - the HTTP endpoint for health checks and metrics
 * (admin.listen); see admin.c.
 */
#ifndef OT_ADMIN_H
#define OT_ADMIN_H

/*
 * Serve GET /healthz, /readyz and /metrics on admin.listen, unless it is
 * "".  A failure to bind is logged and the daemon runs on without the
 * endpoint: ingest matters more than its observers.
 */
void admin_start(void);
void admin_stop(void);

#endif
