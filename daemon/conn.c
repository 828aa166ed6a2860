/*
 * conn.c - one exporter's TCP connection: framing, hello, events, replies.
 *
 * Every line gets exactly one reply, in the order the lines came.  Replies
 * that need no database (pong, errors) are written at once when nothing is
 * waiting ahead of them; otherwise they queue behind the events in the
 * connection's slot FIFO and leave when the events before them are
 * committed.
 *
 * Back-pressure: a connection stops reading when it has `limits.window`
 * replies queued (unacked events and the pongs and errors waiting behind
 * them), when all connections together have `limits.max_pending` events
 * or `limits.max_pending_bytes` bytes of event lines, or when its peer
 * does not read its replies.  It never drops a line.
 * A peer that leaves its replies unread past the write deadline (paused
 * on its output, or closing with replies still to send) is dropped.
 *
 * Lifetime: a connection whose socket is gone stays allocated until the
 * store has finished with its last event (its slots point to it), then is
 * freed.  conn_close() is the one teardown path and takes a reason.
 */
#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#ifdef __linux__
#include <linux/sockios.h>
#endif

#include "auth.h"
#include "feed.h"
#include "framer.h"
#include "jsonw.h"
#include "log.h"
#include "metrics.h"
#include "ot_build.h"
#include "peers.h"
#include "request.h"
#include "server.h"
#include "tls.h"

/* Replies the peer has not read beyond this pause reading its lines. */
#define OUTPUT_HIGH_WATER (256 * 1024)
/* Lines handled per read callback before yielding to other connections. */
#define LINES_PER_WAKEUP 256
/* The write deadline when limits.idle_timeout_s is 0 (never idle-closed). */
#define WRITE_TIMEOUT_NO_IDLE_S 300
/* Rejected lines and events logged per connection and second; the rest are counted. */
#define REJECTS_LOGGED_PER_S 100
/* How often a closing connection looks whether its peer has all its replies. */
#define CLOSE_POLL_MS 50
/* Keepalive probes (limits.keepalive_s) a peer may leave unanswered. */
#define KEEPALIVE_PROBES 6

enum conn_state {
	CONN_HELLO,   /* waiting for hello; exits: READY, CLOSING */
	CONN_READY,   /* authenticated; exits: CLOSING */
	CONN_CLOSING, /* writing the last replies, then closed; exits: gone */
};

struct conn {
	TAILQ_ENTRY(conn) c_entry;
	unsigned c_id;
	enum conn_state c_state;
	struct bufferevent *c_bev; /* NULL once the socket is closed */
	struct framer c_framer;
	char c_peer[64];
	char c_exporter[CONFIG_ID_MAX + 1];      /* or the operator's id */
	bool c_operator;                         /* an operator: may only subscribe */
	uint8_t c_token_sha256[AUTH_DIGEST_LEN]; /* the token hash it said hello with */
	struct sub *c_sub;                       /* subscribed to the feed */
	struct slot *c_sub_slot;                 /* "subscribed", queued: the feed waits */
	struct slot_list c_slots;                /* replies in line order */
	unsigned c_unacked;                      /* event slots not yet finished */
	unsigned c_nslots;                       /* slots alive, in the store too; <= window */
	bool c_paused;                           /* reading stopped for back-pressure */
	bool c_eof;                              /* the peer sent EOF; answer, then close */
	bool c_unlinked;                         /* socket gone, off the server's list */
	bool c_dead;                             /* free from the loop, outside any callback */
	bool c_flush_pending;                    /* finished slots wait to be written */
	const char *c_close_reason;
	uint64_t c_lines, c_events, c_errors;
	time_t c_rej_second;       /* the second c_rej_logged counts in */
	unsigned c_rej_logged;     /* rejections logged in that second */
	unsigned c_rej_suppressed; /* rejections not logged since the last one logged */
	struct event *c_resume_ev; /* runs buffered lines after a pause */
	struct event *c_timer;     /* hello deadline, then the line deadline */
	struct event *c_out_timer; /* the peer must take its replies by then */
	bool c_line_timer;         /* c_timer is running for a started line */
	bool c_tls_raw;            /* TLS bytes came in since the last decrypted ones */
	struct peer *c_peer_rec;   /* per-address limits */
	bool c_counted;            /* counted in c_peer_rec's connections */
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_cb(struct bufferevent *bev, short what, void *arg);
static void conn_process_input(struct conn *c);
static void conn_close(struct conn *c, const char *reason);
static void conn_maybe_free(struct conn *c);
static void conn_after_results(struct conn *c);
static int conn_unacked_bytes(const struct conn *c);

/* Allocate or abort: out-of-memory is not a code path in this daemon. */
static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);
	if (p == NULL)
		abort();
	return p;
}

/* Current wall clock in milliseconds, for the future-timestamp check. */
static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Render a peer address as host:port. */
static void format_peer(const struct sockaddr *sa, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN];
	peer_host(sa, host, sizeof(host));
	if (sa->sa_family == AF_INET)
		snprintf(out, cap, "%s:%d", host,
		         ntohs(((const struct sockaddr_in *)sa)->sin_port));
	else if (sa->sa_family == AF_INET6)
		snprintf(out, cap, "[%s]:%d", host,
		         ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
	else
		snprintf(out, cap, "unknown");
}

/* Write bytes to the peer if the socket is still there. */
static void conn_write(struct conn *c, const char *data, size_t len)
{
	if (c->c_bev != NULL)
		bufferevent_write(c->c_bev, data, len);
}

/* Format an error reply into buf; returns its length. */
static size_t format_error(char *buf, size_t cap, const char *id, const char *code,
                           const char *message)
{
	struct jsonw w;
	jsonw_init(&w, buf, cap);
	jsonw_open(&w);
	jsonw_str(&w, "type", "error");
	jsonw_str(&w, "id", id);
	jsonw_str(&w, "code", code);
	jsonw_str(&w, "message", message);
	return jsonw_close(&w);
}

/* A new slot on the connection's FIFO. */
static struct slot *slot_new(struct conn *c)
{
	struct slot *s = xcalloc(1, sizeof(*s));
	s->s_owner = c;
	TAILQ_INSERT_TAIL(&c->c_slots, s, s_conn);
	c->c_nslots++;
	return s;
}

/* Drop a slot's parsed event: its tree goes with its blocks, untouched. */
static void slot_drop_tree(struct slot *s)
{
	if (jarena_installed())
		jarena_release(&s->s_mark);
	else
		json_decref(s->s_root);
	s->s_root = NULL;
}

/* Release a slot's event data and the slot. */
static void slot_free(struct slot *s)
{
	free(s->s_body);
	slot_drop_tree(s);
	free(s);
}

/*
 * Queue or send a reply that needs no database.  When events are waiting
 * ahead of it, it waits in the FIFO so the order of replies holds; the
 * slot it waits in is returned (NULL when it was written at once).
 */
static struct slot *conn_reply(struct conn *c, const char *data, size_t len)
{
	if (TAILQ_EMPTY(&c->c_slots)) {
		conn_write(c, data, len);
		return NULL;
	}
	struct slot *s = slot_new(c);
	if (len > sizeof(s->s_reply))
		len = sizeof(s->s_reply); /* replies are built to fit; defensive */
	memcpy(s->s_reply, data, len);
	s->s_reply_len = len;
	s->s_done = true;
	return s;
}

/*
 * Send the finished replies at the head of the FIFO.  A batch commit
 * finishes many at once: they are gathered and handed to the socket buffer
 * in a few large writes rather than one per reply.
 */
static void conn_flush_slots(struct conn *c)
{
	char buf[16384];
	size_t len = 0;
	bool subscribed = false;
	struct slot *s;
	while ((s = TAILQ_FIRST(&c->c_slots)) != NULL && s->s_done) {
		TAILQ_REMOVE(&c->c_slots, s, s_conn);
		if (s == c->c_sub_slot) {
			c->c_sub_slot = NULL;
			subscribed = true;
		}
		if (len + s->s_reply_len > sizeof(buf)) {
			conn_write(c, buf, len);
			len = 0;
		}
		memcpy(buf + len, s->s_reply, s->s_reply_len);
		len += s->s_reply_len;
		c->c_nslots--;
		slot_free(s);
	}
	if (len > 0)
		conn_write(c, buf, len);
	/* "subscribed" is out: the notifications may follow it. */
	if (subscribed && c->c_sub != NULL)
		feed_wake();
}

/*
 * The log field that names who is connected: an operator may share its id
 * with an exporter, so "exporter=" alone would not say which it is.  Before
 * the hello it is "exporter=-".
 */
static const char *conn_role(const struct conn *c)
{
	return c->c_operator ? "operator" : "exporter";
}

/*
 * May this rejection be logged?  A peer sending bad lines in a loop (an
 * empty line is one byte, its log line two hundred) would otherwise fill
 * the disk at many times its own rate; past REJECTS_LOGGED_PER_S in a
 * second the rejections are only counted, and the next one logged says
 * how many were left out (suppressed=).
 */
static bool conn_log_rejection(struct conn *c)
{
	time_t now = time(NULL);
	if (now != c->c_rej_second) {
		c->c_rej_second = now;
		c->c_rej_logged = 0;
	}
	if (c->c_rej_logged >= REJECTS_LOGGED_PER_S) {
		c->c_rej_suppressed++;
		return false;
	}
	c->c_rej_logged++;
	return true;
}

/* Reply to a line with an error; logs the rejection. */
static void conn_error(struct conn *c, const char *id, const char *code, const char *message)
{
	char buf[512];
	size_t n = format_error(buf, sizeof(buf), id, code, message);
	c->c_errors++;
	metrics_line_rejected(code);
	if (conn_log_rejection(c)) {
		log_info("line rejected",
		         "conn=%u peer=%s %s=%s code=%s event=%s reason=%s suppressed=%u", c->c_id,
		         c->c_peer, conn_role(c), c->c_exporter[0] ? c->c_exporter : "-", code,
		         id ? lq(id) : "-", lq(message), c->c_rej_suppressed);
		c->c_rej_suppressed = 0;
	}
	conn_reply(c, buf, n);
}

/* Is this connection over one of its back-pressure limits? */
static bool conn_must_pause(const struct conn *c)
{
	/* Every queued reply counts, not only events: a pong or an error
	 * behind an event that cannot commit holds a whole slot, and a peer
	 * sending pings during an outage would otherwise grow memory without
	 * bound. */
	if (c->c_nslots >= (unsigned)server.cfg->window)
		return true;
	/* All connections' pending events, by count and in bytes (max_pending
	 * lines of max_line_bytes are gigabytes); only a total already at a
	 * cap pauses, so a line larger than the room left is still read when
	 * nothing else is pending.  A connection that still owes its hello is
	 * read: that one line adds no event, and other connections' events
	 * must not hold it past its hello deadline when the database is slow. */
	if (c->c_state != CONN_HELLO &&
	    (store_pending(server.store) >= (unsigned)server.cfg->max_pending ||
	     server.pending_bytes >= (size_t)server.cfg->max_pending_bytes))
		return true;
	if (c->c_bev != NULL &&
	    evbuffer_get_length(bufferevent_get_output(c->c_bev)) > OUTPUT_HIGH_WATER)
		return true;
	return false;
}

/* Seconds the peer has to take its waiting replies. */
static int conn_write_timeout_s(void)
{
	return server.cfg->idle_timeout_s > 0 ? server.cfg->idle_timeout_s
	                                      : WRITE_TIMEOUT_NO_IDLE_S;
}

/*
 * Start the write deadline unless it runs already.  Reading has stopped
 * (or the connection is closing), so the idle timeout, a read timeout,
 * no longer watches this peer.
 */
static void conn_write_deadline(struct conn *c, int seconds)
{
	if (c->c_bev == NULL || evtimer_pending(c->c_out_timer, NULL))
		return;
	struct timeval tv = {seconds, 0};
	evtimer_add(c->c_out_timer, &tv);
}

/* A paused connection whose peer is not reading gets the write deadline. */
static void conn_watch_output(struct conn *c)
{
	if (c->c_bev != NULL &&
	    evbuffer_get_length(bufferevent_get_output(c->c_bev)) > OUTPUT_HIGH_WATER)
		conn_write_deadline(c, conn_write_timeout_s());
}

/* Stop reading from the socket until conn_resume(). */
static void conn_pause(struct conn *c)
{
	if (!c->c_paused && c->c_bev != NULL) {
		c->c_paused = true;
		bufferevent_disable(c->c_bev, EV_READ);
		/* The daemon, not the peer, holds the line up now: its deadline
		 * starts again when reading resumes (conn_arm_line_timer). */
		if (c->c_line_timer) {
			evtimer_del(c->c_timer);
			c->c_line_timer = false;
		}
		conn_watch_output(c);
		log_debug("connection paused", "conn=%u unacked=%u queued=%u", c->c_id,
		          c->c_unacked, c->c_nslots);
	}
}

/* Start reading again and run lines already buffered. */
static void conn_resume(struct conn *c)
{
	if (!c->c_paused || c->c_bev == NULL)
		return;
	if (conn_must_pause(c)) {
		conn_watch_output(c); /* replies may have filled it meanwhile */
		return;
	}
	c->c_paused = false;
	if (!c->c_eof && !server.draining && c->c_state != CONN_CLOSING)
		bufferevent_enable(c->c_bev, EV_READ);
	/* Lines may already sit in the input buffer: libevent will not call
	 * the read callback for them, so run them from the loop. */
	event_active(c->c_resume_ev, EV_TIMEOUT, 0);
}

/* Timer callback of c_resume_ev. */
static void conn_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;
	(void)what;
	if (c->c_dead) {
		framer_fini(&c->c_framer);
		event_free(c->c_resume_ev);
		event_free(c->c_timer);
		event_free(c->c_out_timer);
		free(c);
		return;
	}
	if (c->c_flush_pending) {
		conn_after_results(c);
		if (c->c_state == CONN_CLOSING)
			return;
	}
	conn_process_input(c);
}

/* The hello line: check the exporter (or operator) and its token. */
static void conn_hello(struct conn *c, const struct request *rq)
{
	const char *who = rq->u.hello.exporter;
	const char *tok = rq->u.hello.token;
	bool op = who == NULL;
	const struct config_exporter *e;
	char buf[512];

	if (op) {
		who = rq->u.hello.operator;
		e = config_find_operator(server.cfg, who);
	} else {
		e = config_find_exporter(server.cfg, who);
	}
	/* conn_start refuses new connections from an address past its budget;
	 * one opened before that must not get a guess either, or a peer that
	 * opens many connections first would try one token on each. */
	if (peer_failed_hellos(c->c_peer_rec, time(NULL)) >=
	    (unsigned)server.cfg->max_failed_hellos) {
		size_t n = format_error(buf, sizeof(buf), NULL, ERR_AUTH_FAILED,
		                        "too many failed hellos from this address; try again "
		                        "in a minute");
		log_warnx("hello refused", "conn=%u peer=%s %s=%s code=%s reason=failed_hellos",
		          c->c_id, c->c_peer, op ? "operator" : "exporter", lq(who),
		          ERR_AUTH_FAILED);
		c->c_errors++;
		metrics_line_rejected(ERR_AUTH_FAILED);
		conn_reply(c, buf, n);
		conn_close(c, "failed_hellos");
		return;
	}
	if (e == NULL || !auth_token_matches(e->token_sha256, tok, strlen(tok))) {
		/* Same answer for an unknown id and a wrong token: the reply
		 * must not tell which ids exist. */
		size_t n = format_error(buf, sizeof(buf), NULL, ERR_AUTH_FAILED,
		                        op ? "unknown operator or wrong token"
		                           : "unknown exporter or wrong token");
		unsigned fails = peer_hello_failed(c->c_peer_rec, time(NULL));
		log_warnx("hello refused", "conn=%u peer=%s %s=%s code=%s failures_this_minute=%u",
		          c->c_id, c->c_peer, op ? "operator" : "exporter", lq(who),
		          ERR_AUTH_FAILED, fails);
		c->c_errors++;
		metrics_line_rejected(ERR_AUTH_FAILED);
		conn_reply(c, buf, n);
		conn_close(c, "auth_failed");
		return;
	}
	snprintf(c->c_exporter, sizeof(c->c_exporter), "%s", e->id);
	memcpy(c->c_token_sha256, e->token_sha256, AUTH_DIGEST_LEN);
	c->c_operator = op;
	c->c_state = CONN_READY;
	evtimer_del(c->c_timer); /* the hello deadline is met */

	struct jsonw w;
	jsonw_init(&w, buf, sizeof(buf));
	jsonw_open(&w);
	jsonw_str(&w, "type", "welcome");
	jsonw_str(&w, op ? "operator" : "exporter", c->c_exporter);
	jsonw_int(&w, "protocol", 1);
	jsonw_str(&w, "server", "ordertrackd " OT_VERSION);
	size_t n = jsonw_close(&w);
	conn_reply(c, buf, n);
	log_info(op ? "operator authenticated" : "exporter authenticated", "conn=%u peer=%s %s=%s",
	         c->c_id, c->c_peer, op ? "operator" : "exporter", c->c_exporter);
}

/* A subscribe request: answer "subscribed", then the feed takes over. */
static void conn_subscribe(struct conn *c, const struct request *rq)
{
	char buf[256];
	if (c->c_sub != NULL) {
		conn_error(c, NULL, ERR_INVALID_REQUEST, "already subscribed");
		return;
	}
	if (!c->c_operator && rq->u.subscribe.exporters != NULL) {
		conn_error(c, NULL, ERR_FORBIDDEN,
		           "field \"exporters\": only operators may choose exporters");
		return;
	}
	struct jsonw w;
	jsonw_init(&w, buf, sizeof(buf));
	jsonw_open(&w);
	jsonw_str(&w, "type", "subscribed");
	jsonw_int(&w, "after", rq->u.subscribe.after);
	size_t n = jsonw_close(&w);
	c->c_sub_slot = conn_reply(c, buf, n);
	c->c_sub = feed_subscribe(c, rq, c->c_operator ? NULL : c->c_exporter);
	/* Notifications flow to the peer, not from it: no idle timeout. */
	if (c->c_bev != NULL)
		bufferevent_set_timeouts(c->c_bev, NULL, NULL);
	log_info("subscribed", "conn=%u peer=%s %s=%s after=%lld", c->c_id, c->c_peer,
	         c->c_operator ? "operator" : "exporter", c->c_exporter, rq->u.subscribe.after);
}

/*
 * Notifications come after "subscribed" and otherwise between the replies
 * as they are stored: waiting for the FIFO to empty would hold them back
 * for as long as the peer keeps events in flight, which a stream always
 * does.
 */
bool conn_feed_ready(const struct conn *c)
{
	return c->c_bev != NULL && c->c_state == CONN_READY && c->c_sub_slot == NULL &&
	       evbuffer_get_length(bufferevent_get_output(c->c_bev)) < OUTPUT_HIGH_WATER;
}

void conn_feed_write(struct conn *c, const char *line, size_t len)
{
	struct evbuffer *out = bufferevent_get_output(c->c_bev);
	evbuffer_add(out, line, len);
	evbuffer_add(out, "\n", 1);
}

/*
 * Notifications after..next-1 are gone from the table (pruned, or a
 * database restored from an older backup): seqs are contiguous, so the
 * subscriber would miss them without knowing.  It gets an error in place
 * of them, and its subscription ends (the feed forgets it); the
 * connection stays, and may subscribe again, after what it chooses.
 */
static void conn_feed_end(struct conn *c, const char *msg)
{
	char buf[512];
	size_t n = format_error(buf, sizeof(buf), NULL, ERR_FEED_GAP, msg);
	conn_feed_write(c, buf, n - 1); /* conn_feed_write adds the newline */
	c->c_sub = NULL;
	if (c->c_bev != NULL && server.cfg->idle_timeout_s > 0) {
		struct timeval tv = {server.cfg->idle_timeout_s, 0};
		bufferevent_set_timeouts(c->c_bev, &tv, NULL);
	}
}

void conn_feed_gap(struct conn *c, long long after, long long next)
{
	char msg[200];
	snprintf(msg, sizeof(msg),
	         "notifications %lld to %lld are no longer stored: the subscription has ended;"
	         " subscribe again to go on",
	         after + 1, next - 1);
	log_warnx("feed gap", "conn=%u peer=%s %s=%s after=%lld next=%lld", c->c_id, c->c_peer,
	          conn_role(c), c->c_exporter, after, next);
	conn_feed_end(c, msg);
}

/*
 * The subscriber's cursor is past every seq the database has given out:
 * the database was restored from an older backup (or the cursor is from
 * another database), and the seqs it will give out next were seen there
 * under other notifications.  Fed on, the subscriber would skip them.
 */
void conn_feed_ahead(struct conn *c, long long after, long long last)
{
	char msg[256];
	snprintf(msg, sizeof(msg),
	         "after %lld is past the last notification the database has given out (%lld):"
	         " it was restored from an older backup, or the seq is from another database;"
	         " the subscription has ended; subscribe again with after %lld or less",
	         after, last, last);
	log_warnx("feed cursor ahead", "conn=%u peer=%s %s=%s after=%lld last_seq=%lld", c->c_id,
	          c->c_peer, conn_role(c), c->c_exporter, after, last);
	conn_feed_end(c, msg);
}

/* Hand an event to the store; its reply comes after the commit. */
static void conn_event(struct conn *c, struct request *rq, struct jarena_mark *mark,
                       const char *line, size_t len)
{
	struct slot *s = slot_new(c);
	const struct request_event *ev = &rq->u.event;

	s->s_exporter = c->c_exporter;
	/* The line itself is the body: PostgreSQL parses it into jsonb with
	 * its numbers exact, and compares duplicates as parsed values. */
	s->s_body = malloc(len + 1);
	if (s->s_body == NULL)
		abort();
	memcpy(s->s_body, line, len);
	s->s_body[len] = '\0';
	s->s_body_len = len;
	server.pending_bytes += len; /* until conn_slot_finished */
	s->s_root = rq->root;        /* the slot now owns the tree and its blocks */
	rq->root = NULL;
	s->s_mark = *mark;
	mark->first = mark->last = NULL;
	s->s_type = ev->type;
	s->s_id = ev->id;
	s->s_order = ev->order;
	s->s_shipment = ev->shipment;
	s->s_occurred_at = ev->occurred_at;
	s->s_retracts = ev->retracts;
	s->s_occurred_ms = ev->occurred_ms;
	s->s_occurred_us = ev->occurred_us;
	c->c_unacked++;
	c->c_events++;
	metrics_event_received();
	store_submit(server.store, s);
}

/* Act on one complete line. */
static void conn_line(struct conn *c, const char *line, size_t len)
{
	struct request rq;
	struct request_error err;
	struct jarena_mark mark;

	c->c_lines++;
	/* The tree is cut from blocks: an event's goes with its slot, at
	 * once, after the commit; any other request's right after it. */
	jarena_open(&mark);
	bool parsed = request_parse(line, len, now_ms(), &rq, &err);
	jarena_close(&mark);
	if (!parsed) {
		jarena_release(&mark);
		if (c->c_state == CONN_HELLO) {
			/* A broken hello is told what is wrong with it; any
			 * other line is told to say hello. */
			if (err.hello)
				conn_error(c, NULL, err.code, err.message);
			else
				conn_error(c, NULL, ERR_AUTH_REQUIRED, "say hello first");
			conn_close(c, err.hello ? "bad hello" : "auth_required");
			return;
		}
		if (c->c_operator && strcmp(err.code, ERR_INVALID_EVENT) == 0) {
			/* An operator's event is refused for who sent it, however
			 * it is written: what is wrong with it does not matter. */
			conn_error(c, err.has_id ? err.id : NULL, ERR_FORBIDDEN,
			           "operators may only subscribe");
			return;
		}
		conn_error(c, err.has_id ? err.id : NULL, err.code, err.message);
		return;
	}

	if (c->c_state == CONN_HELLO && rq.kind != REQ_HELLO) {
		conn_error(c, NULL, ERR_AUTH_REQUIRED, "say hello first");
		conn_close(c, "auth_required");
	} else if (rq.kind == REQ_HELLO) {
		if (c->c_state == CONN_READY)
			conn_error(c, NULL, ERR_INVALID_REQUEST, "hello was already accepted");
		else
			conn_hello(c, &rq);
	} else if (rq.kind == REQ_PING) {
		static const char pong[] = "{\"type\":\"pong\"}\n";
		conn_reply(c, pong, sizeof(pong) - 1);
	} else if (rq.kind == REQ_SUBSCRIBE) {
		conn_subscribe(c, &rq);
	} else if (c->c_operator) {
		conn_error(c, rq.u.event.id, ERR_FORBIDDEN, "operators may only subscribe");
	} else {
		conn_event(c, &rq, &mark, line, len);
	}
	request_clear(&rq);
	jarena_release(&mark);
}

/*
 * Has a line begun that is not finished?  Over TLS, bytes of a record not
 * yet whole count: those OpenSSL holds, and those that came since the last
 * decrypted ones (OpenSSL takes a record's header in without saying it has
 * anything pending).  A whole record with no data in it (a TLS 1.3 key
 * update) counts too, until data comes: rare, and then closed as a line
 * begun.
 */
static bool conn_line_begun(const struct conn *c)
{
	return framer_partial(&c->c_framer) || c->c_tls_raw ||
	       (c->c_bev != NULL && tls_raw_pending(c->c_bev));
}

/*
 * A line has been started but not finished: give it limits.line_timeout_s
 * to end, however slowly its bytes come (a slow-loris peer would otherwise
 * hold the connection forever while never tripping the idle timeout).
 */
static void conn_arm_line_timer(struct conn *c, bool lines_done)
{
	if (c->c_state != CONN_READY || c->c_timer == NULL || c->c_paused)
		return;
	if (lines_done && c->c_line_timer) {
		/* The line it was running for is finished; a new one starts. */
		evtimer_del(c->c_timer);
		c->c_line_timer = false;
	}
	/* Over TLS, a record begun counts as a line begun (tls_watch_raw). */
	bool partial = conn_line_begun(c);
	if (partial && !c->c_line_timer) {
		struct timeval tv = {server.cfg->line_timeout_s, 0};
		evtimer_add(c->c_timer, &tv);
		c->c_line_timer = true;
	} else if (!partial && c->c_line_timer) {
		evtimer_del(c->c_timer);
		c->c_line_timer = false;
	}
}

/* Bytes of a TLS record came off the socket: a line may have begun. */
static void conn_tls_raw(void *arg)
{
	struct conn *c = arg;
	c->c_tls_raw = true;
	conn_arm_line_timer(c, false);
}

/* The hello or the line deadline passed. */
static void conn_timer_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;
	(void)what;
	if (c->c_state == CONN_HELLO)
		conn_close(c, "hello timeout");
	else if (c->c_state == CONN_READY && conn_line_begun(c))
		conn_close(c, "line timeout");
	else if (c->c_state == CONN_READY)
		c->c_line_timer = false; /* nothing begun after all */
	else if (c->c_state == CONN_CLOSING)
		conn_close(c, c->c_close_reason); /* its replies may have arrived */
}

/*
 * The connection is about to have lines handled: it goes to the back of
 * the list.  conn_resume_paused() walks the list from the front, so when
 * room under limits.max_pending (or max_pending_bytes) frees up, the
 * connections that waited longest read first; otherwise those at the
 * front would take the room each time and a connection behind them could
 * wait for ever.
 */
static void conn_served(struct conn *c)
{
	if (TAILQ_NEXT(c, c_entry) == NULL)
		return;
	TAILQ_REMOVE(&server.conns, c, c_entry);
	TAILQ_INSERT_TAIL(&server.conns, c, c_entry);
}

/* A line past limits.max_line_bytes: answered, and skipped to its newline. */
static void conn_line_too_long(struct conn *c)
{
	char msg[128];
	snprintf(msg, sizeof(msg), "line longer than %d bytes; skipped",
	         server.cfg->max_line_bytes);
	if (c->c_state == CONN_HELLO) {
		conn_error(c, NULL, ERR_AUTH_REQUIRED, "say hello first");
		conn_close(c, "auth_required");
	} else {
		conn_error(c, NULL, ERR_LINE_TOO_LONG, msg);
	}
	c->c_lines++;
}

/* Frame and handle what the input buffer holds, within the limits. */
static void conn_process_input(struct conn *c)
{
	if (c->c_bev == NULL)
		return;
	struct evbuffer *in = bufferevent_get_input(c->c_bev);
	int lines = 0;

	while (c->c_state != CONN_CLOSING && evbuffer_get_length(in) > 0) {
		if (conn_must_pause(c)) {
			conn_pause(c);
			return;
		}
		if (lines >= LINES_PER_WAKEUP) {
			/* Let other connections and the store run; continue
			 * from the loop. */
			event_active(c->c_resume_ev, EV_TIMEOUT, 0);
			return;
		}
		struct evbuffer_iovec v;
		if (evbuffer_peek(in, -1, NULL, &v, 1) < 1)
			break;
		enum framer_status st;
		struct frame fr;
		size_t used = framer_scan(&c->c_framer, v.iov_base, v.iov_len, &st, &fr);
		if (st != FRAMER_MORE && lines == 0)
			conn_served(c);
		if (st == FRAMER_LINE) {
			conn_line(c, fr.data, fr.len);
			lines++;
		} else if (st == FRAMER_TOO_LONG) {
			conn_line_too_long(c);
			lines++;
		}
		/* The line was handled before its bytes are released. */
		if (c->c_bev != NULL)
			evbuffer_drain(in, used);
		if (c->c_bev == NULL)
			return;
	}
	if (c->c_eof) {
		conn_close(c, "peer closed");
		return;
	}
	conn_arm_line_timer(c, lines > 0);
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	c->c_tls_raw = false; /* a record was whole; SSL_has_pending says if more began */
	conn_process_input(c);
}

/* Output drained below the low-water mark: finish closing or resume. */
static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	/* The peer is taking its replies: its deadline starts again. */
	evtimer_del(c->c_out_timer);
	if (c->c_state == CONN_CLOSING && TAILQ_EMPTY(&c->c_slots)) {
		conn_close(c, c->c_close_reason);
		return;
	}
	if (c->c_paused)
		conn_resume(c);
	if (c->c_sub != NULL)
		feed_wake(); /* a paused subscriber has room again */
}

/* The peer left its replies unread past the deadline: drop it. */
static void conn_write_timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	(void)fd;
	(void)what;
	if (c->c_bev == NULL)
		return;
	log_info("write timeout", "conn=%u peer=%s unsent=%zu", c->c_id, c->c_peer,
	         evbuffer_get_length(bufferevent_get_output(c->c_bev)));
	/* What it has not taken will never be written: free the socket now. */
	bufferevent_free(c->c_bev);
	c->c_bev = NULL;
	if (c->c_state == CONN_CLOSING)
		c->c_close_reason = "write timeout"; /* the reason it ends now */
	conn_close(c, "write timeout");
}

static void conn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *c = arg;
	(void)bev;
	if ((what & BEV_EVENT_EOF) && !(what & BEV_EVENT_WRITING)) {
		/* The peer may have only shut down its sending side: answer
		 * what it sent, then close.  One pass may stop early (a pause,
		 * LINES_PER_WAKEUP); the passes that follow go on with the
		 * buffered lines, and the one that drains them closes. */
		c->c_eof = true;
		bufferevent_disable(c->c_bev, EV_READ);
		/* A TLS bufferevent stops writing at the end of its stream too
		 * and would not start again while replies wait in its output:
		 * start it (for a plain socket this changes nothing). */
		bufferevent_enable(c->c_bev, EV_WRITE);
		conn_process_input(c);
	} else if (what & BEV_EVENT_TIMEOUT) {
		conn_close(c, "idle timeout");
	} else if (what & (BEV_EVENT_ERROR | BEV_EVENT_EOF)) {
		/* EOF while writing: a TLS write that failed on a peer that
		 * is gone (libevent reports it as EOF when dirty shutdowns are
		 * allowed); like any error, nothing more can be written. */
		int err = EVUTIL_SOCKET_ERROR();
		/* A TLS peer that never finished its handshake is logged by tls.c. */
		bool handshake = tls_handshake_failed(c->c_bev, c->c_peer);
		/* Nothing can be written any more: drop the socket now. */
		bufferevent_free(c->c_bev);
		c->c_bev = NULL;
		conn_close(c, handshake           ? "tls handshake failed"
		              : err == ECONNRESET ? "connection reset"
		              : err == ETIMEDOUT  ? "peer not answering"
		                                  : "socket error");
	}
}

/*
 * The one way a connection ends.  Replies already queued are still written
 * (an auth_failed error, the acks of a draining daemon); the socket closes
 * once the peer's system has received them and no event of this
 * connection is waiting for its commit, or at the write deadline.  A
 * socket that failed is dropped at once.
 */
static void conn_close(struct conn *c, const char *reason)
{
	if (c->c_state != CONN_CLOSING) {
		c->c_state = CONN_CLOSING;
		c->c_close_reason = reason;
		if (c->c_bev != NULL)
			bufferevent_disable(c->c_bev, EV_READ);
	}
	if (c->c_unlinked) {
		conn_maybe_free(c);
		return;
	}
	if (c->c_bev != NULL) {
		bool flushed = evbuffer_get_length(bufferevent_get_output(c->c_bev)) == 0;
		if (!flushed)
			conn_write_deadline(c, conn_write_timeout_s());
		if (!TAILQ_EMPTY(&c->c_slots) || !flushed)
			return; /* conn_write_cb or conn_slot_finished come back */
		/* Written is not received: closed with its lines unread (the
		 * peer sent more than was read), the socket is reset and what
		 * it still holds for the peer is thrown away.  Nothing tells
		 * when the peer has it all: look again soon, until the write
		 * deadline. */
		if (conn_unacked_bytes(c) > 0) {
			conn_write_deadline(c, conn_write_timeout_s());
			struct timeval tv = {0, CLOSE_POLL_MS * 1000};
			evtimer_add(c->c_timer, &tv);
			return; /* conn_timer_cb comes back */
		}
		bufferevent_free(c->c_bev);
		c->c_bev = NULL;
	}
	log_info("connection closed",
	         "conn=%u peer=%s %s=%s reason=%s lines=%llu events=%llu errors=%llu", c->c_id,
	         c->c_peer, conn_role(c), c->c_exporter[0] ? c->c_exporter : "-",
	         lq(c->c_close_reason), (unsigned long long)c->c_lines,
	         (unsigned long long)c->c_events, (unsigned long long)c->c_errors);
	if (c->c_sub != NULL) {
		feed_unsubscribe(c->c_sub);
		c->c_sub = NULL;
	}
	if (c->c_counted)
		peer_conn_closed(c->c_peer_rec);
	c->c_counted = false;
	evtimer_del(c->c_timer);
	evtimer_del(c->c_out_timer);
	c->c_unlinked = true;
	server.n_conns--;
	TAILQ_REMOVE(&server.conns, c, c_entry);
	conn_maybe_free(c);
}

/*
 * Free a closed connection once no slot refers to it any more.  The free
 * itself runs from the loop, so a callback that closed the connection can
 * still look at it before it returns.
 */
static void conn_maybe_free(struct conn *c)
{
	if (!c->c_unlinked || c->c_nslots > 0 || c->c_dead)
		return;
	c->c_dead = true;
	event_active(c->c_resume_ev, EV_TIMEOUT, 0);
}

void conn_slot_finished(struct slot *s, enum store_result r, const char *detail)
{
	struct conn *c = s->s_owner;
	char buf[512];
	size_t n;

	switch (r) {
	case STORE_STORED:
	case STORE_DUPLICATE: {
		struct jsonw w;
		jsonw_init(&w, buf, sizeof(buf));
		jsonw_open(&w);
		jsonw_str(&w, "type", "ack");
		jsonw_str(&w, "id", s->s_id);
		jsonw_str(&w, "result", r == STORE_STORED ? "stored" : "duplicate");
		n = jsonw_close(&w);
		break;
	}
	case STORE_CONFLICT:
		detail = "an event with this id and different content is already stored";
		n = format_error(buf, sizeof(buf), s->s_id, ERR_CONFLICT, detail);
		break;
	case STORE_REJECTED:
		n = format_error(buf, sizeof(buf), s->s_id, ERR_INVALID_EVENT, detail);
		break;
	default:
		n = format_error(buf, sizeof(buf), s->s_id, ERR_INTERNAL, detail);
		break;
	}
	if (r != STORE_STORED && r != STORE_DUPLICATE) {
		c->c_errors++;
		if (conn_log_rejection(c)) {
			log_info("event rejected",
			         "conn=%u peer=%s exporter=%s event=%s code=%s reason=%s "
			         "suppressed=%u",
			         c->c_id, c->c_peer, c->c_exporter, lq(s->s_id),
			         r == STORE_CONFLICT   ? ERR_CONFLICT
			         : r == STORE_REJECTED ? ERR_INVALID_EVENT
			                               : ERR_INTERNAL,
			         lq(detail), c->c_rej_suppressed);
			c->c_rej_suppressed = 0;
		}
	}
	memcpy(s->s_reply, buf, n);
	s->s_reply_len = n;
	s->s_done = true;
	/* The event data is no longer needed; free it early.  Its bytes leave
	 * the pending total with it, once: a total that drifted up would
	 * pause every connection for good. */
	if (s->s_body != NULL)
		server.pending_bytes -= s->s_body_len;
	free(s->s_body);
	s->s_body = NULL;
	s->s_body_len = 0;
	slot_drop_tree(s);
	s->s_id = NULL;
	c->c_unacked--;
	/* A commit finishes many slots at once: flush them together from
	 * the loop, in one write, rather than one write per ack. */
	if (!c->c_flush_pending) {
		c->c_flush_pending = true;
		event_active(c->c_resume_ev, EV_TIMEOUT, 0);
	}
}

/* Write the finished replies, then close or resume as the state says. */
static void conn_after_results(struct conn *c)
{
	c->c_flush_pending = false;
	conn_flush_slots(c);
	if (c->c_state == CONN_CLOSING) {
		conn_close(c, c->c_close_reason);
		return;
	}
	conn_resume(c);
}

/* Refuse a new connection with an error line, then close it. */
static void conn_refuse(struct conn *c, const char *code, const char *message, const char *reason)
{
	char buf[256];
	size_t n = format_error(buf, sizeof(buf), NULL, code, message);
	log_warnx("connection refused", "conn=%u peer=%s reason=%s", c->c_id, c->c_peer, reason);
	metrics_conn_rejected();
	conn_write(c, buf, n);
	/* Over TLS the line waits for a handshake that may never come, while
	 * the connection counts against limits.max_connections: it gets the
	 * hello deadline to take its refusal, not the longer write one. */
	conn_write_deadline(c, server.cfg->hello_timeout_s);
	conn_close(c, reason);
}

static void conn_start(struct bufferevent *bev, const struct sockaddr *sa, int salen,
                       long waited_ms);

/*
 * TCP keepalives: after idle_s quiet seconds the system probes the peer,
 * KEEPALIVE_PROBES times idle_s / KEEPALIVE_PROBES apart, so a peer gone
 * without a word (a host switched off, a NAT or firewall that forgot the
 * flow) is found about 2 * idle_s after it last answered, and its
 * connection closed.  Without them a connection with nothing to write (a
 * subscriber on a quiet database, an exporter when idle_timeout_s is 0)
 * would hold its slot under limits.max_connections and
 * max_connections_per_ip for good.
 */
static void conn_keepalive(int fd, int idle_s)
{
	int on = idle_s > 0, cnt = KEEPALIVE_PROBES;
	int intvl = idle_s / KEEPALIVE_PROBES > 0 ? idle_s / KEEPALIVE_PROBES : 1;
	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &on, sizeof(on));
	if (!on)
		return;
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle_s, sizeof(idle_s));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof(intvl));
	setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof(cnt));
}

void conn_accept(int fd, const struct sockaddr *sa, int salen)
{
	/* Acks are small and latency matters: do not let Nagle hold them
	 * until the peer's next packet or delayed ACK. */
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	conn_keepalive(fd, server.cfg->keepalive_s);
	/* Counted here, once: a socket refused or gone while tls.c waits
	 * for its first byte never reaches conn_start. */
	metrics_conn_opened();
	/* Plain or TLS (perhaps after a look at the first byte): tls.c. */
	tls_accept(fd, sa, salen, conn_start);
}

/* The socket has its bufferevent: make the connection and apply the limits. */
static void conn_start(struct bufferevent *bev, const struct sockaddr *sa, int salen,
                       long waited_ms)
{
	(void)salen;
	struct conn *c = xcalloc(1, sizeof(*c));
	c->c_id = ++server.next_conn_id;
	format_peer(sa, c->c_peer, sizeof(c->c_peer));
	c->c_peer_rec = peer_get(sa);
	TAILQ_INIT(&c->c_slots);
	framer_init(&c->c_framer, (size_t)server.cfg->max_line_bytes);
	c->c_resume_ev = event_new(server.base, -1, 0, conn_resume_cb, c);
	c->c_timer = evtimer_new(server.base, conn_timer_cb, c);
	c->c_out_timer = evtimer_new(server.base, conn_write_timeout_cb, c);
	c->c_bev = bev;
	if (c->c_bev == NULL || c->c_resume_ev == NULL || c->c_timer == NULL ||
	    c->c_out_timer == NULL)
		abort();
	bufferevent_setcb(c->c_bev, conn_read_cb, conn_write_cb, conn_event_cb, c);
	tls_watch_raw(c->c_bev, conn_tls_raw, c);
	/* The write callback fires when output drains: used for closing and
	 * for resuming a connection paused by a slow reader. */
	bufferevent_setwatermark(c->c_bev, EV_WRITE, OUTPUT_HIGH_WATER / 4, 0);
	TAILQ_INSERT_TAIL(&server.conns, c, c_entry);
	server.n_conns++;

	if (server.n_conns > (unsigned)server.cfg->max_connections) {
		conn_refuse(c, ERR_TOO_MANY_CONNECTIONS,
		            "the server has reached limits.max_connections",
		            "too_many_connections");
		return;
	}
	if (peer_conns(c->c_peer_rec) >= (unsigned)server.cfg->max_connections_per_ip) {
		conn_refuse(c, ERR_TOO_MANY_CONNECTIONS,
		            "this address has reached limits.max_connections_per_ip",
		            "too_many_connections_per_ip");
		return;
	}
	if (peer_failed_hellos(c->c_peer_rec, time(NULL)) >=
	    (unsigned)server.cfg->max_failed_hellos) {
		conn_refuse(c, ERR_AUTH_FAILED,
		            "too many failed hellos from this address; try again in a minute",
		            "failed_hellos");
		return;
	}
	peer_conn_opened(c->c_peer_rec);
	c->c_counted = true;
	if (server.cfg->idle_timeout_s > 0) {
		struct timeval tv = {server.cfg->idle_timeout_s, 0};
		bufferevent_set_timeouts(c->c_bev, &tv, NULL);
	}
	/* The hello deadline counts from the accept: a sniffed socket has
	 * used up some of it waiting for its first byte. */
	long hello_ms = server.cfg->hello_timeout_s * 1000L - waited_ms;
	if (hello_ms < 0)
		hello_ms = 0;
	struct timeval hello = {hello_ms / 1000, (hello_ms % 1000) * 1000};
	evtimer_add(c->c_timer, &hello);
	bufferevent_enable(c->c_bev, EV_READ | EV_WRITE);
	log_info("connection opened", "conn=%u peer=%s", c->c_id, c->c_peer);
}

void conn_resume_paused(void)
{
	struct conn *c;
	TAILQ_FOREACH(c, &server.conns, c_entry)
	{
		if (c->c_paused)
			conn_resume(c);
	}
}

void conn_drain_all(void)
{
	/* Lines already received are still answered; nothing new is read. */
	struct conn *c, *next;
	TAILQ_FOREACH_SAFE(c, &server.conns, c_entry, next)
	{
		if (c->c_bev == NULL)
			continue;
		bufferevent_disable(c->c_bev, EV_READ);
		conn_process_input(c);
	}
}

/*
 * Bytes handed to the socket that the peer's system has not acknowledged
 * yet; 0 where the system cannot say, and 0 once the peer has reset the
 * connection: nothing more will be acknowledged, but the count stays
 * where it was, and a connection closing with reading off sees no
 * error to end it.
 */
static int conn_unacked_bytes(const struct conn *c)
{
#ifdef SIOCOUTQ
	int n = 0;
	evutil_socket_t fd = bufferevent_getfd(c->c_bev);
	if (fd < 0 || ioctl(fd, SIOCOUTQ, &n) != 0 || n == 0)
		return 0;
#ifdef TCP_INFO
	struct tcp_info ti;
	socklen_t len = sizeof(ti);
	if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE)
		return 0;
#endif
	return n;
#else
	(void)c;
#endif
	return 0;
}

/*
 * Has every peer received its replies?  An empty output buffer is not
 * enough: the replies may still wait in the socket for a peer that reads
 * a moment later, and closing a socket with lines unread in it (the drain
 * reads no more) resets the connection and throws them away.
 */
bool conn_all_idle(void)
{
	const struct conn *c;
	TAILQ_FOREACH(c, &server.conns, c_entry)
	{
		if (!TAILQ_EMPTY(&c->c_slots))
			return false;
		if (c->c_bev != NULL && evbuffer_get_length(bufferevent_get_output(c->c_bev)) > 0)
			return false;
		if (c->c_bev != NULL && conn_unacked_bytes(c) > 0)
			return false;
	}
	return true;
}

void conn_close_all(const char *reason)
{
	struct conn *c, *next;
	TAILQ_FOREACH_SAFE(c, &server.conns, c_entry, next)
	{
		conn_close(c, reason);
		/* A peer that has not taken its replies (or its notifications)
		 * by now never will: the drain is over.  Left for its write
		 * deadline, it would outlive the loop, neither logged as closed
		 * nor freed. */
		if (!c->c_unlinked && c->c_bev != NULL) {
			bufferevent_free(c->c_bev);
			c->c_bev = NULL;
			conn_close(c, reason);
		}
	}
}

void conn_apply_config(void)
{
	struct conn *c, *next;
	TAILQ_FOREACH_SAFE(c, &server.conns, c_entry, next)
	{
		/* A line begun may be too long for the new limit already:
		 * answered now, not when (or if) its next byte comes. */
		if (framer_set_max(&c->c_framer, (size_t)server.cfg->max_line_bytes) &&
		    (c->c_state == CONN_HELLO || c->c_state == CONN_READY))
			conn_line_too_long(c);
		/* A subscriber has no idle timeout (see conn_subscribe). */
		if (c->c_bev != NULL && c->c_sub == NULL) {
			struct timeval tv = {server.cfg->idle_timeout_s, 0};
			bufferevent_set_timeouts(c->c_bev,
			                         server.cfg->idle_timeout_s > 0 ? &tv : NULL, NULL);
		}
		if (c->c_state != CONN_READY)
			continue;
		/* A removed exporter or operator loses its open connections,
		 * and so does one whose token was replaced (rotation). */
		const struct config_exporter *e =
		    c->c_operator ? config_find_operator(server.cfg, c->c_exporter)
		                  : config_find_exporter(server.cfg, c->c_exporter);
		if (e == NULL)
			conn_close(c, c->c_operator ? "operator removed from config"
			                            : "exporter removed from config");
		else if (memcmp(e->token_sha256, c->c_token_sha256, AUTH_DIGEST_LEN) != 0)
			conn_close(c, "token changed in config");
	}
	conn_resume_paused();
}
