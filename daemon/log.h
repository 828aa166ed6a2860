/*
 * log.h - logfmt logging for operators.
 *
 * One record per line: ts=<RFC 3339 UTC> level=<level> msg=<text> key=value...
 * Callers pass the key=value tail as a printf format; string values that may
 * hold spaces or quotes go through lq(), which quotes and escapes them.
 */
#ifndef OT_LOG_H
#define OT_LOG_H

#include <stdarg.h>

#include "config.h"

#define LOG_PRINTF(a, b) __attribute__((format(printf, a, b)))

void log_init(void);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

/* Write one record; kvfmt may be NULL. */
void log_record(enum log_level level, const char *msg, const char *kvfmt, ...) LOG_PRINTF(3, 4);

#define log_error(msg, ...) log_record(LOG_LEVEL_ERROR, msg, __VA_ARGS__)
#define log_warnx(msg, ...) log_record(LOG_LEVEL_WARNING, msg, __VA_ARGS__)
#define log_info(msg, ...)  log_record(LOG_LEVEL_INFO, msg, __VA_ARGS__)
#define log_debug(msg, ...)                                                                        \
	do {                                                                                       \
		if (log_enabled(LOG_LEVEL_DEBUG))                                                  \
			log_record(LOG_LEVEL_DEBUG, msg, __VA_ARGS__);                             \
	} while (0)

/* Log at error level and exit with code. For start-up failures only. */
void fatalx(int code, const char *msg, const char *kvfmt, ...) LOG_PRINTF(3, 4)
    __attribute__((noreturn));

/*
 * A logfmt-safe rendering of s: s itself when it has no space, quote, '=' or
 * control character, else a quoted, escaped copy.  The result lives in one of
 * a few rotating buffers, good for one log call.
 */
const char *lq(const char *s);
const char *lqn(const char *s, size_t len);

/* The first line of msg (libpq's errors run on over several), copied into
 * buf for a one-line record; "" for NULL.  Returns buf. */
const char *log_first_line(const char *msg, char *buf, size_t cap);

#endif
