/*
 * alerts.h - periodic evaluation of alerts for stuck shipments.
 */
#ifndef OT_ALERTS_H
#define OT_ALERTS_H

#include "server.h"

/* Start the timer, or restart it with the configured interval (reload). */
void alerts_start(void);
void alerts_stop(void);

#endif
