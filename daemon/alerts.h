/*
 * alerts.h - periodic evaluation of alerts for stuck shipments.
 */
#ifndef OT_ALERTS_H
#define OT_ALERTS_H

#include "server.h"

/* Start the timer with the configured interval. */
void alerts_start(void);
/* After a reload: restart the timer only when the interval changed. */
void alerts_apply_config(void);
void alerts_stop(void);

#endif
