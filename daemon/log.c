/*
 * log.c - logfmt records to stderr; see log.h.
 *
 * The daemon is single-threaded, so the rotating buffers of lq() and the
 * level need no locking.  Each record is written with one fwrite of a whole
 * line so records from the daemon never interleave mid-line.
 */
#include "log.h"
#include "logtext.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#define LQ_SLOTS   8
#define LQ_SIZE    512
#define RECORD_MAX 4096

static enum log_level current_level = LOG_LEVEL_INFO;
/* Under journald a "<N>" prefix lets `journalctl -p` filter by level. */
static int journal_prefix;

/* libevent's own warnings end up in our log, at a matching level. */
static void libevent_log(int severity, const char *msg)
{
	enum log_level l = LOG_LEVEL_DEBUG;
	if (severity == EVENT_LOG_ERR)
		l = LOG_LEVEL_ERROR;
	else if (severity == EVENT_LOG_WARN)
		l = LOG_LEVEL_WARNING;
	else if (severity == EVENT_LOG_MSG)
		l = LOG_LEVEL_INFO;
	log_record(l, "libevent", "detail=%s", lq(msg));
}

void log_init(void)
{
	journal_prefix = getenv("JOURNAL_STREAM") != NULL;
	event_set_log_callback(libevent_log);
}

void log_set_level(enum log_level level)
{
	current_level = level;
}

bool log_enabled(enum log_level level)
{
	return level <= current_level;
}

const char *lqn(const char *s, size_t len)
{
	static char bufs[LQ_SLOTS][LQ_SIZE];
	static unsigned slot;

	if (s == NULL)
		return "null";
	char *out = bufs[slot++ % LQ_SLOTS];
	logtext_quote(out, LQ_SIZE, s, len);
	return out;
}

const char *lq(const char *s)
{
	return s ? lqn(s, strlen(s)) : "null";
}

/* syslog priority of a level, for the journald prefix. */
static int level_priority(enum log_level l)
{
	static const int prio[] = {3, 4, 6, 7};
	return prio[l];
}

/* Format and write one record. */
static void log_vrecord(enum log_level level, const char *msg, const char *kvfmt, va_list ap)
{
	char line[RECORD_MAX];
	struct timeval tv;
	struct tm tm;
	size_t n = 0;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	if (journal_prefix)
		n += (size_t)snprintf(line, sizeof(line), "<%d>", level_priority(level));
	n += strftime(line + n, sizeof(line) - n, "ts=%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s msg=%s",
	                      (long)(tv.tv_usec / 1000), log_level_name(level), lq(msg));
	if (kvfmt != NULL && kvfmt[0] != '\0' && n < sizeof(line) - 2) {
		line[n++] = ' ';
		int k = vsnprintf(line + n, sizeof(line) - n, kvfmt, ap);
		if (k > 0)
			n += (size_t)k;
	}
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	fwrite(line, 1, n, stderr);
	fflush(stderr);
}

void log_record(enum log_level level, const char *msg, const char *kvfmt, ...)
{
	if (!log_enabled(level))
		return;
	va_list ap;
	va_start(ap, kvfmt);
	log_vrecord(level, msg, kvfmt, ap);
	va_end(ap);
}

void fatalx(int code, const char *msg, const char *kvfmt, ...)
{
	va_list ap;
	va_start(ap, kvfmt);
	log_vrecord(LOG_LEVEL_ERROR, msg, kvfmt, ap);
	va_end(ap);
	exit(code);
}

const char *log_first_line(const char *msg, char *buf, size_t cap)
{
	snprintf(buf, cap, "%s", msg ? msg : "");
	buf[strcspn(buf, "\n")] = '\0';
	return buf;
}
