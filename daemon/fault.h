/*
 * fault.h - crash points for the reliability tests.
 *
 * Built only with -Dfault_points=true (never in a production build).  The
 * environment chooses one point and how many times it must be passed
 * before the daemon kills itself with SIGKILL:
 *   OT_FAULT_POINT=before_commit|after_commit|after_acks  OT_FAULT_AFTER=N
 * The tests then restart the daemon and check that every acked event is
 * stored exactly once.  The lose_* points only pretend: lose_commit_answer
 * drops the ingest session as if it broke just after a COMMIT that
 * succeeded, its answer unread (lose_emit_answer before EMIT's rows came,
 * lose_in_prepare while it prepares); break_alerts_session
 * shuts the auxiliary session's socket just after an alert check went.
 */
#ifndef OT_FAULT_H
#define OT_FAULT_H

#include <stdbool.h>

#include "ot_build.h"

#if OT_FAULT_POINTS
/* Is this the chosen point, and has its turn come (counted as for a crash)? */
bool fault_check(const char *name);
/* Die here if this is the chosen point and its turn has come. */
void fault_point(const char *name);
/* The same, but die a moment later, once the loop has written what is queued. */
void fault_point_soon(const char *name);
#else
#define fault_check(name)      false
#define fault_point(name)      ((void)0)
#define fault_point_soon(name) ((void)0)
#endif

#endif
