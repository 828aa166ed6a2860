/*
 * main.c - ordertrackd: command line, configuration, signals, the loop.
 *
 * Start-up: read and check the config (exit 78 when it is wrong), bind the
 * listeners (exit 69 when that fails), start connecting to PostgreSQL in
 * the background, and run the event loop.  The database being down at
 * start-up is not fatal: the daemon keeps trying and holds events until it
 * can commit them.
 *
 * Signals are handled inside the loop (libevent's evsignal), so the
 * handlers may do real work: SIGHUP reloads the config, SIGTERM and SIGINT
 * drain (stop reading, commit and answer every line already read, close)
 * and exit 0.
 *
 * Operations: systemd hears READY=1 once the listeners are bound and the
 * database has been reached, RELOADING=1 then READY=1 around a reload and
 * STOPPING=1 when a drain begins (sdnotify.c); admin.listen serves
 * /healthz, /readyz and /metrics (admin.c, metrics.c); a stats line is
 * logged every log.stats_interval_s.
 */
#include <errno.h>
#include <getopt.h>
#include <pwd.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin.h"
#include "alerts.h"
#include "aux.h"
#include "conninfo.h"
#include "feed.h"
#include "filemodes.h"
#include "log.h"
#include "privdrop.h"
#include "metrics.h"
#include "peers.h"
#include "sdnotify.h"
#include "tls.h"
#include "webhook.h"
#include "ot_build.h"
#include "server.h"

#define EX_OK_          0
#define EX_USAGE_       64
#define EX_UNAVAILABLE_ 69
#define EX_SOFTWARE_    70
#define EX_CONFIG_      78

#define DRAIN_TICK_MS           50
#define DRAIN_FLUSH_GRACE_TICKS 100 /* 5 s for peers to read their last acks */
#define DRAIN_WEBHOOK_TICKS     300 /* 15 s, past a POST's 10 s timeout */

struct server server;

static int drain_ticks_idle;
static int drain_ticks_hooks;

/* Print the usage text to f. */
static void usage(FILE *f)
{
	fprintf(f,
	        "usage: ordertrackd [-c FILE] [-t] [-V] [-h]\n"
	        "  -c, --config FILE  configuration file (default %s)\n"
	        "  -t, --check        check the configuration and exit: 0 if good, 78 if not\n"
	        "  -V, --version      print the version and exit\n"
	        "  -h, --help         print this help and exit\n",
	        OT_DEFAULT_CONFIG);
}

/*
 * What config_load cannot check without libpq or the system: that libpq
 * can parse database.conninfo (else every connection attempt fails alike,
 * and the daemon would retry for ever), and, for -t, that user names a
 * system user (start-up finds that out only once the listeners are
 * bound).  False with the reason, naming the file and the key, in *err.
 */
static bool config_check_more(const struct config *cfg, bool check_user, char **err)
{
	char *why = NULL;
	int n = 0;
	if (!conninfo_check(cfg->conninfo, &why)) {
		n = asprintf(err, "%s: database.conninfo: %s", cfg->path, why);
		free(why);
	} else if (check_user && cfg->user[0] != '\0' && getpwnam(cfg->user) == NULL) {
		n = asprintf(err, "%s: user: no such user \"%s\"", cfg->path, cfg->user);
	} else {
		return true;
	}
	if (n < 0)
		abort();
	return false;
}

/* The first time the database is reached, start-up is over: tell systemd. */
void server_db_ready(void)
{
	/* (Re)connected with the schema in place: webhooks that could not
	 * read their cursor yet, or lost it with the outage, start now;
	 * subscribers who came before the schema get their first page. */
	webhooks_wake();
	feed_db_ready();
	if (!server.db_ready_logged && !server.draining) {
		server.db_ready_logged = true;
		log_info("ready", "connections=%u", server.n_conns);
		sdnotify_ready();
	}
}

void server_notifications_committed(long long seq)
{
	if (seq > server.last_local_seq)
		server.last_local_seq = seq;
	if (seq > server.last_seq)
		server.last_seq = seq;
	feed_wake();
	webhooks_wake();
}

/* Drain timer: exit the loop once everything read has been answered. */
static void drain_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	unsigned pending = store_pending(server.store);
	if (pending > 0) {
		drain_ticks_idle = 0;
		return;
	}
	/* A webhook POST on the wire is answered, and its cursor written,
	 * first: cut off, it would be delivered again after the restart. */
	if (webhooks_busy() && ++drain_ticks_hooks < DRAIN_WEBHOOK_TICKS)
		return;
	/* Everything is committed; give peers a moment to read the acks. */
	if (!conn_all_idle() && ++drain_ticks_idle < DRAIN_FLUSH_GRACE_TICKS)
		return;
	conn_close_all("shutdown");
	event_base_loopexit(server.base, NULL);
}

/* SIGTERM or SIGINT: drain, then stop; a second one stops at once. */
static void on_terminate(evutil_socket_t sig, short what, void *arg)
{
	(void)what;
	(void)arg;
	if (server.draining) {
		log_warnx("second signal, exiting without draining", "signal=%d pending=%u",
		          (int)sig, store_pending(server.store));
		exit(EX_OK_);
	}
	server.draining = true;
	sdnotify_stopping();
	log_info("draining", "signal=%d connections=%u pending=%u", (int)sig, server.n_conns,
	         store_pending(server.store));
	listeners_close();
	conn_drain_all();
	struct timeval tv = {0, DRAIN_TICK_MS * 1000};
	server.ev_drain_tick = event_new(server.base, -1, EV_PERSIST, drain_tick_cb, NULL);
	if (server.ev_drain_tick == NULL)
		abort();
	event_add(server.ev_drain_tick, &tv);
}

/* Take key out of a comma-separated list of keys, in place. */
static void key_list_drop(char *list, const char *key)
{
	size_t klen = strlen(key);
	char *p = list;
	while (*p != '\0') {
		char *end = strchr(p, ',');
		size_t len = end != NULL ? (size_t)(end - p) : strlen(p);
		if (len == klen && strncmp(p, key, klen) == 0) {
			if (end != NULL)
				memmove(p, end + 1, strlen(end + 1) + 1);
			else if (p > list)
				p[-1] = '\0';
			else
				*p = '\0';
			return;
		}
		p += len + (end != NULL);
	}
}

/* SIGHUP: load the file again; keep the running config if it is broken. */
static void on_reload(evutil_socket_t sig, short what, void *arg)
{
	(void)sig;
	(void)what;
	(void)arg;
	char *err = NULL;
	/* Before READY=1 systemd still sees the start-up: nothing to bracket. */
	bool tell = server.db_ready_logged && !server.draining;
	if (tell)
		sdnotify_reloading();
	struct config *neu = config_load(server.config_path, &err);
	if (neu != NULL && !config_check_more(neu, false, &err)) {
		config_free(neu);
		neu = NULL;
	}
	if (neu == NULL) {
		log_error("config reload failed", "file=%s reason=%s", lq(server.config_path),
		          lq(err));
		free(err);
		metrics_reload(false);
		if (tell)
			sdnotify_ready(); /* still running, on the old config */
		return;
	}
	char restart[256], changed[512];
	struct config *old = server.cfg;
	/* New certificates for new connections.  On a failure the old context
	 * stays, and so do its settings (`require` with them): changed= does
	 * not claim what did not happen, and neu takes the running ones. */
	bool tls_ok = tls_reload(neu);
	config_reload_keys(old, neu, changed, sizeof(changed));
	/* The tls group added or removed changes nothing until a restart
	 * (tls_reload says so): it is not among what this reload changed. */
	if (old->tls_enabled != neu->tls_enabled || !tls_ok)
		key_list_drop(changed, "tls");
	if (!tls_ok)
		config_keep_tls(neu, old);
	if (changed[0] == '\0')
		snprintf(changed, sizeof(changed), "-");
	if (config_restart_keys(old, neu, restart, sizeof(restart)) > 0) {
		log_warnx("config keys need a restart", "keys=%s", restart);
		/* Keep describing what actually runs, so the next reload
		 * reports the difference again. */
		config_keep_restart_keys(neu, old);
	}
	server.cfg = neu;
	log_set_level(neu->log_level);
	store_apply_config(server.store, neu);
	alerts_apply_config();
	webhooks_start();
	conn_apply_config();
	metrics_apply_config();
	metrics_reload(true);
	log_info("config reloaded", "file=%s exporters=%zu changed=%s", lq(server.config_path),
	         neu->n_exporters, changed);
	config_free(old);
	filemodes_check(server.cfg);
	if (tell)
		sdnotify_ready();
}

/* Install the loop's signal events; ignore SIGPIPE (writes report EPIPE). */
static void signals_setup(void)
{
	signal(SIGPIPE, SIG_IGN);
	server.ev_sigterm = evsignal_new(server.base, SIGTERM, on_terminate, NULL);
	server.ev_sigint = evsignal_new(server.base, SIGINT, on_terminate, NULL);
	server.ev_sighup = evsignal_new(server.base, SIGHUP, on_reload, NULL);
	if (!server.ev_sigterm || !server.ev_sigint || !server.ev_sighup)
		fatalx(EX_SOFTWARE_, "cannot set up signals", NULL);
	event_add(server.ev_sigterm, NULL);
	event_add(server.ev_sigint, NULL);
	event_add(server.ev_sighup, NULL);
}

/* Release everything, so leak checkers see a clean exit. */
static void server_shutdown(void)
{
	sdnotify_stop();
	admin_stop();
	metrics_stop();
	alerts_stop();
	store_free(server.store);
	aux_free(server.aux);
	feed_stop();
	webhooks_stop();
	event_free(server.ev_sigterm);
	event_free(server.ev_sigint);
	event_free(server.ev_sighup);
	if (server.ev_drain_tick)
		event_free(server.ev_drain_tick);
	if (server.n_listeners > 0)
		listeners_close();
	tls_fini();
	/* Let pending frees (closed connections) run. */
	event_base_loop(server.base, EVLOOP_NONBLOCK);
	event_base_free(server.base);
	peers_clear();
	config_free(server.cfg);
	jarena_shutdown();
	/* Every tree's blocks went with its slot: anything left is a slot
	 * that was never released. */
	if (jarena_bytes() != 0)
		log_warnx("memory still held at exit", "jansson_blocks_bytes=%zu", jarena_bytes());
}

/* The event loop, with the priorities of server.h. */
static struct event_base *event_loop_new(void)
{
	struct event_config *ec = event_config_new();
	struct event_base *base = NULL;
	if (ec == NULL)
		return NULL;
	if (event_config_set_max_dispatch_interval(ec, NULL, LOOP_CHECK_CALLBACKS, PRIO_NORMAL) ==
	    0)
		base = event_base_new_with_config(ec);
	event_config_free(ec);
	if (base != NULL && event_base_priority_init(base, N_PRIORITIES) != 0) {
		event_base_free(base);
		base = NULL;
	}
	return base;
}

int main(int argc, char **argv)
{
	const char *path = OT_DEFAULT_CONFIG;
	bool check_only = false;
	int ch;

	/* Before anything jansson allocates: see jarena.h. */
	jarena_install();

	/* The long names are those of ordertrackctl, which operators use too. */
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"check", no_argument, NULL, 't'},
	    {"version", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	while ((ch = getopt_long(argc, argv, "c:tVh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			path = optarg;
			break;
		case 't':
			check_only = true;
			break;
		case 'V':
			printf("ordertrackd %s\n", OT_VERSION);
			return EX_OK_;
		case 'h':
			usage(stdout);
			return EX_OK_;
		default:
			usage(stderr);
			return EX_USAGE_;
		}
	}
	if (optind != argc) {
		fprintf(stderr, "ordertrackd: unexpected argument \"%s\"\n", argv[optind]);
		usage(stderr);
		return EX_USAGE_;
	}

	char *err = NULL;
	struct config *cfg = config_load(path, &err);
	if (cfg != NULL && !config_check_more(cfg, check_only, &err)) {
		config_free(cfg);
		cfg = NULL;
	}
	if (cfg == NULL) {
		fprintf(stderr, "ordertrackd: %s\n", err);
		free(err);
		return EX_CONFIG_;
	}
	/* The certificates are read now, as root when started as root. */
	if (!tls_init(cfg, &err)) {
		fprintf(stderr, "ordertrackd: %s\n", err);
		free(err);
		config_free(cfg);
		return EX_CONFIG_;
	}
	if (check_only) {
		filemodes_check(cfg);
		tls_fini();
		printf("ordertrackd: %s: configuration OK\n", path);
		config_free(cfg);
		return EX_OK_;
	}

	log_init();
	log_set_level(cfg->log_level);
	metrics_init();
	TAILQ_INIT(&server.conns);
	server.cfg = cfg;
	server.config_path = path;
	server.base = event_loop_new();
	if (server.base == NULL)
		fatalx(EX_SOFTWARE_, "cannot create the event loop", NULL);
	log_info("starting", "version=%s config=%s pid=%d libevent=%s malloc=%s", OT_VERSION,
	         lq(path), (int)getpid(), event_get_version(), OT_ALLOCATOR);
	filemodes_check(cfg);
	signals_setup();
	if (!listeners_open())
		fatalx(EX_UNAVAILABLE_, "cannot start", "reason=%s", lq("a listen address failed"));
	admin_start();
	/* The sockets are bound (a low port needs root): give root up now,
	 * before talking to anyone. */
	char why[256];
	if (!privdrop(cfg->user, why, sizeof(why)))
		fatalx(EX_CONFIG_, "cannot drop privileges", "user=%s reason=%s", lq(cfg->user),
		       lq(why));
	if (cfg->user[0] != '\0')
		log_info("running as", "user=%s uid=%d", lq(cfg->user), (int)getuid());
	server.store = store_new(server.base, cfg);
	server.aux = aux_new(server.base, cfg->conninfo);
	feed_init(server.aux);
	alerts_start();
	webhooks_start();
	metrics_start();
	sdnotify_start(server.base, metrics_status_line);

	event_base_dispatch(server.base);

	log_info("stopped", "stored=%llu duplicate=%llu rejected=%llu",
	         (unsigned long long)server.events_stored,
	         (unsigned long long)server.events_duplicate,
	         (unsigned long long)server.events_rejected);
	server_shutdown();
	return EX_OK_;
}
