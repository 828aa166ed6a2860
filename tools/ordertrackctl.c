/* SPDX-License-Identifier: ISC */
/*
 * ordertrackctl.c - the operators' command line for ordertrack.
 *
 * It reads the daemon's own configuration file (-c, by default the
 * installed one) through lib/config, so it reaches the same database with
 * the same database.conninfo, and answers the questions an operations desk
 * asks: where is this order, what happened to it, what needs attention
 * now, what did we export, is everything set up.  Reads go straight to the
 * read model and the event log in PostgreSQL (docs/SCHEMA.md); nothing
 * here ever writes to the database.  `tail` is the exception to "straight
 * to PostgreSQL": it follows the daemon's notification feed over TCP as an
 * operator, exactly as any other subscriber would.
 *
 * Output is for people by default (aligned, times in UTC with a Z, the
 * offsets the exporter sent where they matter) and JSON with --json, one
 * document per command (tail: one object per line), for scripts.
 *
 * Exit status (sysexits): 0 done; 1 not found, or the check failed; 64
 * usage; 69 the database or the daemon cannot be reached; 70 an
 * unexpected database error; 78 the configuration is wrong (or the daemon
 * refused the operator's token).  A hello refused for another reason (a
 * connection limit) is 69: the daemon cannot take us now.
 *
 * Limits: one blocking libpq connection, one query at a time; it is a
 * command line tool, not a service.
 */
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <unistd.h>

#include "auth.h"
#include "config.h"
#include "conninfo.h"
#include "migrations.h"
#include "ot_build.h"
#include "validate.h"

#define EX_OK_          0
#define EX_NOTFOUND_    1
#define EX_USAGE_       64
#define EX_UNAVAILABLE_ 69
#define EX_SOFTWARE_    70
#define EX_CONFIG_      78

#define TOKEN_BYTES      32
#define TAIL_BACKLOG_STR "10" /* tail without --after shows this many of the newest */
#define LINE_MAX_        65536

/*
 * An RFC 3339 UTC rendering of a timestamptz column, in SQL.  The protocol's
 * years start at 0001, but an offset can put the instant in 1 BC, which
 * to_char's YYYY would show as year 0001: it is year 0000 (ISO 8601's
 * count), the only one before 0001 an event can reach.
 */
#define UTC(col)                                                                                   \
	"(CASE WHEN (" col ") < '0001-01-01T00:00:00Z' THEN '0000' || to_char((" col               \
	") AT TIME ZONE 'UTC', '-MM-DD\"T\"HH24:MI:SS\"Z\"') ELSE to_char((" col                   \
	") AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') END)"

/* Options, by bit, so each command can say which it takes. */
enum opt_bit {
	O_EXPORTER = 1 << 0,
	O_STATUS = 1 << 1,
	O_HELD = 1 << 2,
	O_ANOMALIES = 1 << 3,
	O_OVERDUE = 1 << 4,
	O_AFTER = 1 << 5,
	O_TOKEN = 1 << 6,
	O_OPERATOR = 1 << 7,
	O_LIMIT = 1 << 8,
	O_FROM = 1 << 9,
	O_TO = 1 << 10,
	O_BY = 1 << 11,
	O_NAME = 1 << 12,
	O_ADDRESS = 1 << 13,
	O_KEEP_DAYS = 1 << 14,
};

/* What the command line said. */
struct opts {
	const char *config;
	bool json;
	unsigned given; /* enum opt_bit of the options used */
	const char *exporter, *status, *token, *operator_id, *from, *to, *by, *name, *address;
	bool held, anomalies, overdue;
	long long after;
	long long limit;
	long long keep_days;
};

/* The state of one run. */
struct ctl {
	struct opts o;
	struct config *cfg;
	PGconn *pg;
	char db_error[512]; /* why ctl_connect failed, for check --json */
};

/* One command: its name, the options it accepts, its positional arguments. */
struct command {
	const char *name;
	unsigned takes;
	int min_args, max_args;
	int (*run)(struct ctl *c, int argc, char **argv);
	const char *usage;
};

static int cmd_status(struct ctl *c, int argc, char **argv);
static int cmd_history(struct ctl *c, int argc, char **argv);
static int cmd_list(struct ctl *c, int argc, char **argv);
static int cmd_tail(struct ctl *c, int argc, char **argv);
static int cmd_token(struct ctl *c, int argc, char **argv);
static int cmd_report(struct ctl *c, int argc, char **argv);
static int cmd_check(struct ctl *c, int argc, char **argv);
static int cmd_prune(struct ctl *c, int argc, char **argv);

static const struct command commands[] = {
    {"status", 0, 2, 2, cmd_status, "status EXPORTER ORDER"},
    {"history", 0, 2, 2, cmd_history, "history EXPORTER ORDER"},
    {"list", O_EXPORTER | O_STATUS | O_HELD | O_ANOMALIES | O_OVERDUE, 0, 0, cmd_list,
     "list [--exporter X] [--status S] [--held] [--anomalies] [--overdue]"},
    {"tail", O_AFTER | O_EXPORTER | O_TOKEN | O_OPERATOR | O_LIMIT | O_ADDRESS, 0, 0, cmd_tail,
     "tail [--after N] [--exporter X] [--operator ID] [--token T] [--limit N] "
     "[--address HOST:PORT]"},
    {"token", O_NAME, 2, 2, cmd_token, "token new [--name NAME] EXPORTER"},
    {"report", O_FROM | O_TO | O_BY, 0, 0, cmd_report,
     "report [--from DATE] [--to DATE] [--by product|buyer|destination|month]"},
    {"check", 0, 0, 0, cmd_check, "check"},
    {"prune", O_KEEP_DAYS, 0, 0, cmd_prune, "prune --keep-days N"},
};
#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

/* Print a message prefixed with the program name on stderr. */
static void warnx_(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warnx_(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("ordertrackctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* Print the usage on f. */
static void usage(FILE *f)
{
	fprintf(f, "usage: ordertrackctl [-c FILE] [--json] COMMAND [ARGS]\n");
	for (size_t i = 0; i < N_COMMANDS; i++)
		fprintf(f, "       ordertrackctl %s\n", commands[i].usage);
	fprintf(f,
	        "  -c, --config FILE  the daemon's configuration file (default %s)\n"
	        "  --json             JSON output for scripts\n"
	        "  -V, --version      print the version; -h, --help this help\n"
	        "Environment: ORDERTRACK_TOKEN, the operator's token for tail (safer than\n"
	        "  --token, which other users of the host can see in ps until tail starts);\n"
	        "  PGHOST, PGPORT, PGUSER, ... for what database.conninfo leaves out.\n"
	        "Exit status: 0 ok, 1 not found or check failed, 64 usage, 69 database or "
	        "daemon unavailable, 70 unexpected database error, 78 configuration.\n",
	        OT_DEFAULT_CONFIG);
}

/* A usage error: say what is wrong, show the usage, return 64. */
static int usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int usage_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	fputs("ordertrackctl: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
	usage(stderr);
	return EX_USAGE_;
}

/* --- small helpers --- */

/* Allocate or abort. */
static void *xmalloc(size_t n)
{
	void *p = malloc(n == 0 ? 1 : n);
	if (p == NULL)
		abort();
	return p;
}

/* Print a JSON value on stdout, indented, and free it. */
static void json_out(json_t *j)
{
	/* 15 digits: a double's own, without 19.300000000000001. */
	char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII |
	                            JSON_REAL_PRECISION(15));
	if (s == NULL)
		abort();
	printf("%s\n", s);
	free(s);
	json_decref(j);
}

/* A column of a result as a JSON string, or null when SQL NULL. */
static json_t *jcol(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		return json_null();
	return json_string(PQgetvalue(r, row, col));
}

/*
 * A numeric column as a JSON number (integer when it has no fraction and
 * fits in 64 bits, else the nearest double), or null.
 */
static json_t *jnum(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col))
		return json_null();
	const char *v = PQgetvalue(r, row, col);
	if (strpbrk(v, ".eE") == NULL) {
		errno = 0;
		long long n = strtoll(v, NULL, 10);
		if (errno != ERANGE)
			return json_integer(n);
	}
	return json_real(strtod(v, NULL));
}

/* A column as text for people: the value, or "-" when SQL NULL or empty. */
static const char *tcol(const PGresult *r, int row, int col)
{
	if (PQgetisnull(r, row, col) || PQgetvalue(r, row, col)[0] == '\0')
		return "-";
	return PQgetvalue(r, row, col);
}

/* Printed width of UTF-8 text: its code points. */
static size_t text_width(const char *s)
{
	size_t n = 0;
	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)
			n++;
	return n;
}

/* A table for people: rows of strings printed in aligned columns. */
struct table {
	size_t ncols;
	char **cells; /* rows * ncols, malloc'd */
	size_t nrows, cap;
};

/* Add one row of ncols strings (copied). */
static void table_row(struct table *t, const char *const *cols)
{
	if (t->nrows == t->cap) {
		t->cap = t->cap ? t->cap * 2 : 16;
		char **nc = realloc(t->cells, t->cap * t->ncols * sizeof(char *));
		if (nc == NULL)
			abort();
		t->cells = nc;
	}
	for (size_t i = 0; i < t->ncols; i++) {
		const char *v = cols[i] != NULL ? cols[i] : "-";
		char *cp = xmalloc(strlen(v) + 1);
		strcpy(cp, v);
		t->cells[t->nrows * t->ncols + i] = cp;
	}
	t->nrows++;
}

/* Print the table (the first row is the heading) and free it. */
static void table_print(struct table *t)
{
	size_t *w = calloc(t->ncols, sizeof(size_t));
	if (w == NULL)
		abort();
	for (size_t r = 0; r < t->nrows; r++)
		for (size_t i = 0; i < t->ncols; i++) {
			size_t n = text_width(t->cells[r * t->ncols + i]);
			if (n > w[i])
				w[i] = n;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t i = 0; i < t->ncols; i++) {
			const char *v = t->cells[r * t->ncols + i];
			bool last = i + 1 == t->ncols;
			fputs(v, stdout);
			if (!last)
				for (size_t k = text_width(v); k < w[i] + 2; k++)
					fputc(' ', stdout);
			free(t->cells[r * t->ncols + i]);
		}
		fputc('\n', stdout);
	}
	free(t->cells);
	free(w);
	t->cells = NULL;
	t->nrows = t->cap = 0;
}

/* --- configuration and database --- */

/*
 * Load and check the configuration file as the daemon does, conninfo
 * included (a string libpq cannot parse is the file's fault, not the
 * database's); NULL with the reason in *err (free() it).
 */
static struct config *ctl_load(const char *path, char **err)
{
	struct config *cfg = config_load(path, err);
	char *why = NULL;
	if (cfg != NULL && !conninfo_check(cfg->conninfo, &why)) {
		if (asprintf(err, "%s: database.conninfo: %s", path, why) < 0)
			abort();
		free(why);
		config_free(cfg);
		cfg = NULL;
	}
	return cfg;
}

/* Load the configuration file; on failure say why and return false. */
static bool ctl_config(struct ctl *c)
{
	char *err = NULL;
	c->cfg = ctl_load(c->o.config, &err);
	if (c->cfg == NULL) {
		warnx_("%s", err);
		free(err);
		return false;
	}
	return true;
}

/* Connect with the config's conninfo; on failure say why and return false. */
static bool ctl_connect(struct ctl *c)
{
	/* UTF-8 whatever conninfo or PGCLIENTENCODING say: the stored text is
	 * UTF-8, and so is what this tool prints (and JSON must be). */
	const char *keys[] = {"dbname", "fallback_application_name", "client_encoding", NULL};
	const char *vals[] = {c->cfg->conninfo, "ordertrackctl", "UTF8", NULL};
	c->pg = PQconnectdbParams(keys, vals, 1);
	if (c->pg == NULL)
		abort();
	if (PQstatus(c->pg) != CONNECTION_OK) {
		char *msg = PQerrorMessage(c->pg);
		size_t n = strlen(msg);
		while (n > 0 && msg[n - 1] == '\n')
			msg[--n] = '\0';
		/* Kept for check --json, which must stay valid UTF-8 whatever
		 * the server's or libpq's language: other bytes become '?'. */
		snprintf(c->db_error, sizeof(c->db_error), "%s", msg);
		for (char *p = c->db_error; *p != '\0'; p++)
			if ((unsigned char)*p >= 0x80)
				*p = '?';
		warnx_("cannot reach the database (database.conninfo of %s): %s", c->o.config, msg);
		return false;
	}
	/* jit off as in the daemon's sessions: the reports read a few hundred
	 * thousand rows at most, and compiling their plans took longer than
	 * running them (0.6 of 1.1 s for a report over 200,000 events). */
	PGresult *r = PQexec(c->pg, "SET TimeZone = 'UTC'; SET default_transaction_read_only = on;"
	                            " SET jit = off");
	PQclear(r);
	return true;
}

/*
 * Run a query with text parameters.  On failure print why and exit: 69
 * when the database or the schema is not there, 64 for a bad value in a
 * parameter, 70 otherwise.
 */
static PGresult *ctl_query(struct ctl *c, const char *sql, int n, const char *const *params)
{
	PGresult *r = PQexecParams(c->pg, sql, n, NULL, params, NULL, NULL, 0);
	ExecStatusType t = PQresultStatus(r);
	if (t == PGRES_TUPLES_OK || t == PGRES_COMMAND_OK)
		return r;
	const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
	int code = EX_SOFTWARE_;
	if (msg == NULL)
		msg = PQerrorMessage(c->pg);
	if (state == NULL || strncmp(state, "08", 2) == 0 || strncmp(state, "57", 2) == 0) {
		warnx_("lost the database: %s", msg);
		code = EX_UNAVAILABLE_;
	} else if (strcmp(state, "42P01") == 0 || strcmp(state, "3F000") == 0 ||
	           strcmp(state, "42883") == 0) {
		warnx_("the ordertrack schema is not in this database (%s); has ordertrackd "
		       "started once against it?",
		       msg);
		code = EX_UNAVAILABLE_;
	} else if (strncmp(state, "22", 2) == 0) {
		warnx_("bad value: %s", msg);
		code = EX_USAGE_;
	} else {
		warnx_("query failed (SQLSTATE %s): %s", state, msg);
	}
	PQclear(r);
	PQfinish(c->pg);
	config_free(c->cfg);
	exit(code);
}

/* Load the config and connect; returns 0, or the exit status to give up with. */
static int ctl_open(struct ctl *c)
{
	if (!ctl_config(c))
		return EX_CONFIG_;
	if (!ctl_connect(c))
		return EX_UNAVAILABLE_;
	return EX_OK_;
}

/* --- status --- */

static const char order_sql[] =
    "SELECT status, buyer, channel, origin, destination, incoterm, currency,"
    " to_char(expected_delivery, 'YYYY-MM-DD'), array_to_json(anomalies)::text,"
    " " UTC("created_at") ", " UTC("last_event_at") ", " UTC(
        "updated_at") " FROM ordertrack.orders WHERE exporter = $1 AND order_ref = $2";

static const char lines_sql[] =
    "SELECT line_no, sku, product, hs_code, quantity::text, unit, unit_price::text, currency"
    " FROM ordertrack.order_lines WHERE exporter = $1 AND order_ref = $2 ORDER BY line_no";

/* The start of the current customs hold of shipment s (an alias), the older one when both
 * stages are held: the rule the customs dwell alert uses (sql/014_hold_both_stages.sql). */
#define HELD_SINCE(s) "ordertrack.held_since(" s ".exporter, " s ".order_ref, " s ".shipment_ref)"

/* SQL built with macros reads best a clause a line, which clang-format would undo. */
/* clang-format off */
static const char shipments_sql[] =
    "SELECT s.shipment_ref, s.status, s.milestone, s.hold, s.exception, s.mode, s.carrier,"
    " s.tracking, s.consignee, " UTC("s.eta") ", " UTC("s.last_event_at") ","
    " s.last_location, " UTC(HELD_SINCE("s"))
    " FROM ordertrack.shipments s"
    " WHERE s.exporter = $1 AND s.order_ref = $2"
    " ORDER BY s.shipment_ref COLLATE \"C\"";
/* clang-format on */

/* Print an order for people. */
static void status_print(const char *exporter, const char *order, const PGresult *o,
                         const PGresult *l, const PGresult *s)
{
	printf("order %s of %s: %s\n", order, exporter, PQgetvalue(o, 0, 0));
	printf("  buyer       %s", tcol(o, 0, 1));
	if (!PQgetisnull(o, 0, 2))
		printf(" (%s)", PQgetvalue(o, 0, 2));
	printf("\n  route       %s -> %s", tcol(o, 0, 3), tcol(o, 0, 4));
	if (!PQgetisnull(o, 0, 5))
		printf(", %s", PQgetvalue(o, 0, 5));
	if (!PQgetisnull(o, 0, 6))
		printf(", prices in %s", PQgetvalue(o, 0, 6));
	printf("\n  created     %s", tcol(o, 0, 9));
	if (!PQgetisnull(o, 0, 7))
		printf(", delivery expected %s", PQgetvalue(o, 0, 7));
	printf("\n  last event  %s\n", tcol(o, 0, 10));
	json_t *an = json_loads(PQgetvalue(o, 0, 8), JSON_DECODE_ANY, NULL);
	printf("  anomalies   ");
	if (json_array_size(an) == 0)
		printf("none");
	for (size_t i = 0; i < json_array_size(an); i++)
		printf("%s%s", i ? ", " : "", json_string_value(json_array_get(an, i)));
	printf("\n");
	json_decref(an);

	printf("lines\n");
	if (PQntuples(l) == 0)
		printf("  (none: no order.created yet)\n");
	struct table t = {.ncols = 6};
	for (int i = 0; i < PQntuples(l); i++) {
		char qty[128], price[128];
		snprintf(qty, sizeof(qty), "%s %s", PQgetvalue(l, i, 4), PQgetvalue(l, i, 5));
		if (PQgetisnull(l, i, 6))
			snprintf(price, sizeof(price), "-");
		else
			snprintf(price, sizeof(price), "%s %s", PQgetvalue(l, i, 6), tcol(l, i, 7));
		const char *row[] = {
		    PQgetvalue(l, i, 0), PQgetvalue(l, i, 1), qty, PQgetvalue(l, i, 3), price,
		    PQgetvalue(l, i, 2)};
		char indent[16];
		snprintf(indent, sizeof(indent), "  %s", row[0]);
		row[0] = indent;
		table_row(&t, row);
	}
	table_print(&t);

	printf("shipments\n");
	if (PQntuples(s) == 0)
		printf("  (none)\n");
	for (int i = 0; i < PQntuples(s); i++) {
		printf("  %s: %s (milestone %s)\n", PQgetvalue(s, i, 0), PQgetvalue(s, i, 1),
		       PQgetvalue(s, i, 2));
		if (!PQgetisnull(s, i, 5))
			printf("      %s, %s, %s, to %s\n", PQgetvalue(s, i, 5), tcol(s, i, 6),
			       tcol(s, i, 7), tcol(s, i, 8));
		printf("      hold %s", tcol(s, i, 3));
		if (!PQgetisnull(s, i, 12))
			printf(" since %s", PQgetvalue(s, i, 12));
		printf(", exception %s, eta %s\n", tcol(s, i, 4), tcol(s, i, 9));
		printf("      last event %s at %s\n", tcol(s, i, 10), tcol(s, i, 11));
	}
}

/* The order as one JSON object. */
static json_t *status_json(const char *exporter, const char *order, const PGresult *o,
                           const PGresult *l, const PGresult *s)
{
	json_t *an = json_loads(PQgetvalue(o, 0, 8), JSON_DECODE_ANY, NULL);
	json_t *j = json_pack("{s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}",
	                      "exporter", exporter, "order", order, "status", jcol(o, 0, 0),
	                      "buyer", jcol(o, 0, 1), "channel", jcol(o, 0, 2), "origin",
	                      jcol(o, 0, 3), "destination", jcol(o, 0, 4), "incoterm",
	                      jcol(o, 0, 5), "currency", jcol(o, 0, 6), "expected_delivery",
	                      jcol(o, 0, 7), "anomalies", an ? an : json_array(), "created_at",
	                      jcol(o, 0, 9), "last_event_at", jcol(o, 0, 10));
	json_t *lines = json_array();
	for (int i = 0; i < PQntuples(l); i++)
		json_array_append_new(lines,
		                      json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "line",
		                                jnum(l, i, 0), "sku", jcol(l, i, 1), "product",
		                                jcol(l, i, 2), "hs_code", jcol(l, i, 3), "quantity",
		                                jnum(l, i, 4), "unit", jcol(l, i, 5), "unit_price",
		                                jnum(l, i, 6), "currency", jcol(l, i, 7)));
	json_object_set_new(j, "lines", lines);
	json_t *ships = json_array();
	for (int i = 0; i < PQntuples(s); i++)
		json_array_append_new(
		    ships,
		    json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
		              "s:o}",
		              "shipment", jcol(s, i, 0), "status", jcol(s, i, 1), "milestone",
		              jcol(s, i, 2), "hold", jcol(s, i, 3), "held_since", jcol(s, i, 12),
		              "exception", jcol(s, i, 4), "mode", jcol(s, i, 5), "carrier",
		              jcol(s, i, 6), "tracking", jcol(s, i, 7), "consignee", jcol(s, i, 8),
		              "eta", jcol(s, i, 9), "last_event_at", jcol(s, i, 10),
		              "last_location", jcol(s, i, 11)));
	json_object_set_new(j, "shipments", ships);
	return j;
}

/* status EXPORTER ORDER: the order, its lines and its shipments. */
static int cmd_status(struct ctl *c, int argc, char **argv)
{
	(void)argc;
	int rc = ctl_open(c);
	if (rc != EX_OK_)
		return rc;
	const char *params[2] = {argv[0], argv[1]};
	PGresult *o = ctl_query(c, order_sql, 2, params);
	if (PQntuples(o) == 0) {
		warnx_("no order %s of exporter %s", argv[1], argv[0]);
		PQclear(o);
		return EX_NOTFOUND_;
	}
	PGresult *l = ctl_query(c, lines_sql, 2, params);
	PGresult *s = ctl_query(c, shipments_sql, 2, params);
	if (c->o.json)
		json_out(status_json(argv[0], argv[1], o, l, s));
	else
		status_print(argv[0], argv[1], o, l, s);
	PQclear(o);
	PQclear(l);
	PQclear(s);
	return EX_OK_;
}

/* --- history --- */

/*
 * Column 5 names the retraction that took the event out, as the fold
 * counts them (lib/model.c): one of the order's event.retracted naming
 * it, unless the event is itself a retraction.  A retraction of a
 * retraction counts for nothing, so it marks nothing either, and a
 * retraction that counts is never taken out itself.
 */
static const char history_sql[] =
    "SELECT e.event_id, e.type, e.shipment_ref, e.body->>'occurred_at',"
    " " UTC(
        "e.received_at") ","
                         " (SELECT min(r.event_id) FROM ordertrack.events r WHERE r.exporter = "
                         "e.exporter"
                         "  AND r.order_ref = e.order_ref AND r.type = 'event.retracted'"
                         "  AND r.body->>'retracts' = e.event_id"
                         "  AND e.type <> 'event.retracted'),"
                         " concat_ws(' ', e.body->'location'->>'code', "
                         "e.body->'location'->>'name'),"
                         " concat_ws(' ', e.body->>'stage', e.body->>'reason', e.body->>'document',"
                         "  e.body->>'number', 'retracts ' ||"
                         "  (e.body->>'retracts'), 'eta ' || (e.body->>'eta')),"
                         " e.body::text"
                         " FROM ordertrack.events e WHERE e.exporter = $1 AND e.order_ref = $2"
                         " ORDER BY e.occurred_at, e.event_id COLLATE \"C\"";

/* history EXPORTER ORDER: every event in time order, retracted ones marked. */
static int cmd_history(struct ctl *c, int argc, char **argv)
{
	(void)argc;
	int rc = ctl_open(c);
	if (rc != EX_OK_)
		return rc;
	const char *params[2] = {argv[0], argv[1]};
	PGresult *r = ctl_query(c, history_sql, 2, params);
	int n = PQntuples(r);
	if (n == 0) {
		warnx_("no events for order %s of exporter %s", argv[1], argv[0]);
		PQclear(r);
		return EX_NOTFOUND_;
	}
	if (c->o.json) {
		json_t *a = json_array();
		for (int i = 0; i < n; i++) {
			json_t *body = json_loads(PQgetvalue(r, i, 8), 0, NULL);
			json_array_append_new(
			    a, json_pack("{s:o, s:o, s:o, s:o, s:o, s:b, s:o, s:o}", "id",
			                 jcol(r, i, 0), "type", jcol(r, i, 1), "shipment",
			                 jcol(r, i, 2), "occurred_at", jcol(r, i, 3), "received_at",
			                 jcol(r, i, 4), "retracted", !PQgetisnull(r, i, 5),
			                 "retracted_by", jcol(r, i, 5), "body",
			                 body ? body : json_null()));
		}
		json_out(json_pack("{s:s, s:s, s:o}", "exporter", argv[0], "order", argv[1],
		                   "events", a));
	} else {
		struct table t = {.ncols = 6};
		const char *head[] = {"OCCURRED AT", "TYPE", "SHIPMENT", "ID", "WHERE", "DETAIL"};
		table_row(&t, head);
		for (int i = 0; i < n; i++) {
			char detail[512];
			snprintf(detail, sizeof(detail), "%s%s%s%s", tcol(r, i, 7),
			         PQgetisnull(r, i, 5) ? "" : "  [RETRACTED by ",
			         PQgetisnull(r, i, 5) ? "" : PQgetvalue(r, i, 5),
			         PQgetisnull(r, i, 5) ? "" : "]");
			const char *row[] = {PQgetvalue(r, i, 3), PQgetvalue(r, i, 1),
			                     tcol(r, i, 2),       PQgetvalue(r, i, 0),
			                     tcol(r, i, 6),       detail};
			table_row(&t, row);
		}
		printf("order %s of %s: %d events (offsets as the exporter sent them)\n", argv[1],
		       argv[0], n);
		table_print(&t);
	}
	PQclear(r);
	return EX_OK_;
}

/* --- list --- */

/* Append formatted SQL to a fixed buffer; the pieces are ours and bounded. */
static void sql_add(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void sql_add(char *buf, size_t cap, const char *fmt, ...)
{
	size_t len = strlen(buf);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf + len, cap - len, fmt, ap);
	va_end(ap);
}

/* The worklist's columns and joins (laid out as shipments_sql); cmd_list adds the
 * filters and the order. */
/* clang-format off */
static const char list_sql[] =
    "SELECT o.exporter, o.order_ref, s.shipment_ref, o.status, s.status, s.hold,"
    " s.exception, " UTC("s.eta") ", " UTC("coalesce(s.last_event_at, o.last_event_at)") ","
    " s.last_location, array_to_json(o.anomalies)::text, o.buyer, " UTC("h.since") ","
    " round((extract(epoch FROM now() - h.since) / 86400)::numeric, 1)"
    " FROM ordertrack.orders o"
    " LEFT JOIN ordertrack.shipments s"
    "  ON s.exporter = o.exporter AND s.order_ref = o.order_ref"
    " LEFT JOIN LATERAL (SELECT " HELD_SINCE("s") " AS since) h ON s.hold IS NOT NULL"
    " WHERE true";
/* clang-format on */

/*
 * Every order status and shipment status the read model writes (lib/model.c,
 * docs/SCHEMA.md): a --status outside them would list nothing, which reads
 * as "nothing in that state" when it is a typo.
 */
static const char *const list_statuses[] = {
    "pending",
    "created",
    "confirmed",
    "booked",
    "in_transit",
    "partially_delivered",
    "delivered",
    "cancelled",
    "exception",
    "customs_hold",
    "none",
    "picked_up",
    "export_cleared",
    "departed",
    "arrived",
    "import_cleared",
    "out_for_delivery",
};

/* list: the worklist, one row per shipment (or per order without one). */
static int cmd_list(struct ctl *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	if (c->o.status != NULL) {
		size_t n = sizeof(list_statuses) / sizeof(list_statuses[0]), i = 0;
		while (i < n && strcmp(list_statuses[i], c->o.status) != 0)
			i++;
		if (i == n) {
			char all[512] = "";
			for (i = 0; i < n; i++)
				sql_add(all, sizeof(all), "%s%s", i ? ", " : "", list_statuses[i]);
			return usage_error("--status must be an order or shipment status: %s (got "
			                   "\"%s\")",
			                   all, c->o.status);
		}
	}
	int rc = ctl_open(c);
	if (rc != EX_OK_)
		return rc;
	char sql[4096] = "";
	const char *params[2];
	int np = 0;
	sql_add(sql, sizeof(sql), "%s", list_sql);
	if (c->o.exporter != NULL) {
		params[np++] = c->o.exporter;
		sql_add(sql, sizeof(sql), " AND o.exporter = $%d", np);
	}
	if (c->o.status != NULL) {
		params[np++] = c->o.status;
		sql_add(sql, sizeof(sql), " AND $%d IN (o.status, s.status)", np);
	}
	if (c->o.held)
		sql_add(sql, sizeof(sql), " AND s.hold IS NOT NULL");
	if (c->o.anomalies)
		sql_add(sql, sizeof(sql), " AND o.anomalies <> '{}'");
	if (c->o.overdue)
		sql_add(sql, sizeof(sql), " AND s.eta < now() AND s.status <> 'delivered'");
	if (!c->o.status && !c->o.held && !c->o.anomalies && !c->o.overdue)
		sql_add(sql, sizeof(sql),
		        " AND o.status NOT IN ('delivered', 'cancelled')"
		        " AND coalesce(s.status, '') <> 'delivered'");
	sql_add(sql, sizeof(sql),
	        " ORDER BY %so.exporter COLLATE \"C\", o.order_ref COLLATE \"C\","
	        " s.shipment_ref COLLATE \"C\"",
	        c->o.held ? "h.since, " : "");
	PGresult *r = ctl_query(c, sql, np, params);
	int n = PQntuples(r);

	if (c->o.json) {
		json_t *a = json_array();
		for (int i = 0; i < n; i++) {
			json_t *an = json_loads(PQgetvalue(r, i, 10), JSON_DECODE_ANY, NULL);
			json_array_append_new(
			    a, json_pack(
			           "{s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, "
			           "s:o, s:o}",
			           "exporter", jcol(r, i, 0), "order", jcol(r, i, 1), "shipment",
			           jcol(r, i, 2), "order_status", jcol(r, i, 3), "shipment_status",
			           jcol(r, i, 4), "hold", jcol(r, i, 5), "held_since",
			           jcol(r, i, 12), "held_days", jnum(r, i, 13), "exception",
			           jcol(r, i, 6), "eta", jcol(r, i, 7), "last_event_at",
			           jcol(r, i, 8), "last_location", jcol(r, i, 9), "anomalies",
			           an ? an : json_array(), "buyer", jcol(r, i, 11)));
		}
		json_out(a);
	} else if (n == 0) {
		printf("nothing to list\n");
	} else {
		struct table t = {.ncols = 10};
		const char *head[] = {"EXPORTER", "ORDER",    "SHIPMENT", "ORDER STATUS",
		                      "SHIPMENT", "HOLD/EXC", "ETA",      "LAST EVENT",
		                      "WHERE",    "ANOMALIES"};
		table_row(&t, head);
		for (int i = 0; i < n; i++) {
			char hold[96], anomalies[256] = "-";
			if (PQgetisnull(r, i, 5))
				snprintf(hold, sizeof(hold), "%s", tcol(r, i, 6));
			else
				snprintf(hold, sizeof(hold), "%s %s d", PQgetvalue(r, i, 5),
				         tcol(r, i, 13));
			json_t *an = json_loads(PQgetvalue(r, i, 10), JSON_DECODE_ANY, NULL);
			for (size_t k = 0; k < json_array_size(an); k++)
				sql_add(anomalies, sizeof(anomalies), "%s%s", k ? "," : "",
				        json_string_value(json_array_get(an, k)));
			if (json_array_size(an) > 0 && anomalies[0] == '-')
				memmove(anomalies, anomalies + 1, strlen(anomalies));
			json_decref(an);
			const char *row[] = {PQgetvalue(r, i, 0), PQgetvalue(r, i, 1),
			                     tcol(r, i, 2),       PQgetvalue(r, i, 3),
			                     tcol(r, i, 4),       hold,
			                     tcol(r, i, 7),       tcol(r, i, 8),
			                     tcol(r, i, 9),       anomalies};
			table_row(&t, row);
		}
		table_print(&t);
	}
	PQclear(r);
	return EX_OK_;
}

/* --- report --- */

/*
 * Volumes per group: the orders created in the period (cancelled ones left
 * out), their lines' quantities per unit, the share delivered, and the
 * median door-to-door time: from order.created to the latest delivery that
 * was not retracted, for orders whose status is delivered.  %s is the
 * group key, over columns of o (the order) and l (the line).
 */
static const char report_sql[] =
    "WITH o AS ("
    " SELECT o.exporter, o.order_ref, o.buyer, o.destination, o.status, o.created_at,"
    "  CASE WHEN o.status = 'delivered' THEN (SELECT max(e.occurred_at)"
    "   FROM ordertrack.events e WHERE e.exporter = o.exporter AND e.order_ref = o.order_ref"
    "   AND e.type = 'shipment.delivered' AND NOT EXISTS (SELECT 1 FROM ordertrack.events r"
    "   WHERE r.exporter = e.exporter AND r.order_ref = e.order_ref"
    "   AND r.type = 'event.retracted' AND r.body->>'retracts' = e.event_id)) END AS delivered_at"
    " FROM ordertrack.orders o"
    " WHERE o.created_at IS NOT NULL AND o.status <> 'cancelled'"
    " AND ($1::date IS NULL OR o.created_at >= $1::date)"
    " AND ($2::date IS NULL OR o.created_at < $2::date + 1)),"
    " x AS (SELECT %s AS k, o.*, l.quantity, l.unit FROM o JOIN ordertrack.order_lines l"
    "  ON l.exporter = o.exporter AND l.order_ref = o.order_ref),"
    " g AS (SELECT k, count(*) AS orders, count(*) FILTER (WHERE status = 'delivered') AS"
    "  delivered, percentile_cont(0.5) WITHIN GROUP (ORDER BY"
    "  extract(epoch FROM delivered_at - created_at) / 86400) AS median_days"
    "  FROM (SELECT DISTINCT k, exporter, order_ref, status, created_at, delivered_at FROM x) d"
    "  GROUP BY k),"
    " q AS (SELECT k, json_object_agg(unit, qty ORDER BY unit) AS quantities"
    "  FROM (SELECT k, unit, sum(quantity) AS qty FROM x GROUP BY k, unit) u GROUP BY k)"
    " SELECT g.k, g.orders, g.delivered, round(g.median_days::numeric, 2), q.quantities::text"
    " FROM g JOIN q ON q.k = g.k ORDER BY g.k COLLATE \"C\"";

/* Render a JSON object of unit -> quantity for people: "640 bag + 480 carton". */
static void quantities_text(const json_t *q, char *buf, size_t cap)
{
	const char *unit;
	json_t *v;
	buf[0] = '\0';
	json_object_foreach((json_t *)q, unit, v)
	{
		char num[64];
		if (json_is_integer(v))
			snprintf(num, sizeof(num), "%lld", (long long)json_integer_value(v));
		else
			snprintf(num, sizeof(num), "%.3f", json_number_value(v));
		sql_add(buf, cap, "%s%s %s", buf[0] ? " + " : "", num, unit);
	}
}

/* report: exported volumes by product, buyer, destination or month. */
static int cmd_report(struct ctl *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	static const struct {
		const char *by, *key, *title;
	} groups[] = {
	    {"product", "l.product", "PRODUCT"},
	    {"buyer", "o.buyer", "BUYER"},
	    {"destination", "o.destination", "DESTINATION"},
	    {"month",
	     "(CASE WHEN o.created_at < '0001-01-01T00:00:00Z' THEN '0000' ||"
	     " to_char(o.created_at, '-MM') ELSE to_char(o.created_at, 'YYYY-MM') END)",
	     "MONTH"},
	};
	const char *by = c->o.by ? c->o.by : "product";
	size_t gi = 0;
	while (gi < sizeof(groups) / sizeof(groups[0]) && strcmp(groups[gi].by, by) != 0)
		gi++;
	if (gi == sizeof(groups) / sizeof(groups[0]))
		return usage_error("--by must be product, buyer, destination or month (got \"%s\")",
		                   by);
	if (c->o.from && validate_date(c->o.from) != NULL)
		return usage_error("--from: %s", validate_date(c->o.from));
	if (c->o.to && validate_date(c->o.to) != NULL)
		return usage_error("--to: %s", validate_date(c->o.to));
	int rc = ctl_open(c);
	if (rc != EX_OK_)
		return rc;

	char sql[sizeof(report_sql) + 256]; /* with the longest key */
	snprintf(sql, sizeof(sql), report_sql, groups[gi].key);
	const char *params[2] = {c->o.from, c->o.to};
	PGresult *r = ctl_query(c, sql, 2, params);
	int n = PQntuples(r);
	json_t *rows = json_array();
	for (int i = 0; i < n; i++) {
		long long orders = strtoll(PQgetvalue(r, i, 1), NULL, 10);
		long long delivered = strtoll(PQgetvalue(r, i, 2), NULL, 10);
		/* A sum past 64 bits is no JSON integer jansson can hold:
		 * then the group's quantities are read as doubles. */
		json_t *q = json_loads(PQgetvalue(r, i, 4), 0, NULL);
		if (q == NULL)
			q = json_loads(PQgetvalue(r, i, 4), JSON_DECODE_INT_AS_REAL, NULL);
		json_array_append_new(
		    rows, json_pack("{s:o, s:I, s:I, s:f, s:o, s:o}", "key", jcol(r, i, 0),
		                    "orders", (json_int_t)orders, "delivered",
		                    (json_int_t)delivered, "delivered_share",
		                    orders > 0 ? (double)delivered / (double)orders : 0.0,
		                    "median_door_to_door_days", jnum(r, i, 3), "quantities",
		                    q ? q : json_object()));
	}
	PQclear(r);

	if (c->o.json) {
		json_out(json_pack("{s:s, s:o, s:o, s:o}", "by", by, "from",
		                   c->o.from ? json_string(c->o.from) : json_null(), "to",
		                   c->o.to ? json_string(c->o.to) : json_null(), "groups", rows));
		return EX_OK_;
	}
	printf("exported volumes by %s, orders created %s to %s (UTC dates), cancelled orders "
	       "left out\n",
	       by, c->o.from ? c->o.from : "at any time", c->o.to ? c->o.to : "now");
	if (n == 0) {
		printf("no orders in this period\n");
		json_decref(rows);
		return EX_OK_;
	}
	struct table t = {.ncols = 5};
	const char *head[] = {groups[gi].title, "QUANTITY", "ORDERS", "DELIVERED",
	                      "MEDIAN DOOR TO DOOR"};
	table_row(&t, head);
	for (size_t i = 0; i < json_array_size(rows); i++) {
		const json_t *row = json_array_get(rows, i);
		char qty[512], orders[32], share[32], median[32];
		quantities_text(json_object_get(row, "quantities"), qty, sizeof(qty));
		snprintf(orders, sizeof(orders), "%lld",
		         (long long)json_integer_value(json_object_get(row, "orders")));
		snprintf(share, sizeof(share), "%.0f%%",
		         100 * json_number_value(json_object_get(row, "delivered_share")));
		const json_t *md = json_object_get(row, "median_door_to_door_days");
		if (json_is_number(md))
			snprintf(median, sizeof(median), "%.1f days", json_number_value(md));
		else
			snprintf(median, sizeof(median), "-");
		const char *key = json_string_value(json_object_get(row, "key"));
		const char *cols[] = {key ? key : "-", qty, orders, share, median};
		table_row(&t, cols);
	}
	table_print(&t);
	json_decref(rows);
	return EX_OK_;
}

/* --- check --- */

/* check: the config file, the database, the schema version. */
static int cmd_check(struct ctl *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	json_t *j = json_object();
	char *err = NULL;
	c->cfg = ctl_load(c->o.config, &err);
	if (c->cfg == NULL) {
		if (c->o.json) {
			json_object_set_new(j, "config",
			                    json_pack("{s:s, s:b, s:s}", "path", c->o.config, "ok",
			                              0, "error", err));
			json_object_set_new(j, "ok", json_false());
			json_out(j);
		} else {
			json_decref(j);
			printf("config    %s: FAILED\n", c->o.config);
		}
		warnx_("%s", err);
		free(err);
		return EX_CONFIG_;
	}
	json_object_set_new(j, "config",
	                    json_pack("{s:s, s:b, s:I, s:I, s:s, s:s}", "path", c->o.config, "ok",
	                              1, "exporters", (json_int_t)c->cfg->n_exporters, "operators",
	                              (json_int_t)c->cfg->n_operators, "listen", c->cfg->listen[0],
	                              "admin_listen", c->cfg->admin_listen));
	if (!c->o.json)
		printf("config    %s: ok (%zu exporters, %zu operators, listen %s, admin %s)\n",
		       c->o.config, c->cfg->n_exporters, c->cfg->n_operators, c->cfg->listen[0],
		       c->cfg->admin_listen[0] ? c->cfg->admin_listen : "off");

	if (!ctl_connect(c)) {
		if (c->o.json) {
			json_object_set_new(j, "database",
			                    json_pack("{s:b, s:s}", "ok", 0, "error", c->db_error));
			json_object_set_new(j, "ok", json_false());
			json_out(j);
		} else {
			json_decref(j);
			printf("database  FAILED: cannot connect\n");
		}
		return EX_UNAVAILABLE_;
	}
	int have = 0;
	char unreadable[512] = "";
	PGresult *r = PQexec(c->pg, "SELECT coalesce(max(version), 0) FROM "
	                            "ordertrack.schema_migrations");
	if (PQresultStatus(r) == PGRES_TUPLES_OK) {
		have = atoi(PQgetvalue(r, 0, 0));
	} else {
		/* Only a missing schema or table means "no schema yet": a role
		 * without the grants of OPERATIONS.md, say, must not be told
		 * that the daemon has never run. */
		const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
		const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
		if (state == NULL || (strcmp(state, "42P01") != 0 && strcmp(state, "3F000") != 0))
			snprintf(unreadable, sizeof(unreadable), "cannot be read: %s%s",
			         msg ? msg : PQerrorMessage(c->pg),
			         state != NULL && strcmp(state, "42501") == 0
			             ? " (this role needs USAGE on schema ordertrack and SELECT on "
			               "its tables)"
			             : "");
	}
	PQclear(r);
	int want = migrations_count;
	/* ordertrackd refuses a database that is not UTF8 (lane.c). */
	const char *encoding = PQparameterStatus(c->pg, "server_encoding");
	bool utf8 = encoding != NULL && strcmp(encoding, "UTF8") == 0;
	char encoding_verdict[200];
	snprintf(encoding_verdict, sizeof(encoding_verdict),
	         "the database's encoding is %s: ordertrackd needs UTF8 (dump it, createdb -E "
	         "UTF8 -T template0, restore)",
	         encoding != NULL ? encoding : "unknown");
	const char *verdict;
	if (unreadable[0] != '\0')
		verdict = unreadable;
	else if (!utf8)
		verdict = encoding_verdict;
	else if (have == want)
		verdict = "up to date";
	else if (have == 0)
		verdict = "no schema yet: ordertrackd creates it when it first starts";
	else if (have < want)
		verdict = "older than this release: ordertrackd migrates it at its next start";
	else
		verdict = "newer than this release: upgrade ordertrackctl and ordertrackd";
	bool ok = have == want && unreadable[0] == '\0' && utf8;
	char version[32];
	int sv = PQserverVersion(c->pg);
	snprintf(version, sizeof(version), "%d.%d", sv / 10000, sv % 10000);
	/* Reported, not failed: a test or scratch cluster may run without them. */
	char fsync[16] = "?", fpw[16] = "?";
	r = PQexec(c->pg, "SELECT current_setting('fsync'), current_setting('full_page_writes')");
	if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1) {
		snprintf(fsync, sizeof(fsync), "%s", PQgetvalue(r, 0, 0));
		snprintf(fpw, sizeof(fpw), "%s", PQgetvalue(r, 0, 1));
	}
	PQclear(r);
	bool durable = strcmp(fsync, "on") == 0 && strcmp(fpw, "on") == 0;
	json_object_set_new(j, "database",
	                    json_pack("{s:b, s:s, s:s, s:o, s:i, s:s, s:b, s:s, s:s}", "ok", 1,
	                              "server_version", version, "encoding",
	                              encoding != NULL ? encoding : "unknown", "schema_version",
	                              unreadable[0] ? json_null() : json_integer(have),
	                              "expected_schema_version", want, "schema", verdict, "durable",
	                              durable, "fsync", fsync, "full_page_writes", fpw));
	json_object_set_new(j, "ok", json_boolean(ok));
	if (c->o.json) {
		json_out(j);
	} else {
		json_decref(j);
		printf("database  ok (PostgreSQL %s, encoding %s)\n", version,
		       encoding != NULL ? encoding : "unknown");
		char have_s[16] = "?";
		if (unreadable[0] == '\0')
			snprintf(have_s, sizeof(have_s), "%d", have);
		printf("schema    version %s of %d: %s\n", have_s, want, verdict);
		printf("durable   fsync=%s full_page_writes=%s: %s\n", fsync, fpw,
		       durable ? "yes"
		               : "NO, an acked event may be lost if the database host crashes");
	}
	return ok ? EX_OK_ : EX_NOTFOUND_;
}

/* --- token --- */

/* Fill buf with n random bytes from the kernel; false on failure. */
static bool random_bytes(unsigned char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = getrandom(buf + got, n - got, 0);
		if (r < 0) {
			if (errno == EINTR)
				continue;
			return false;
		}
		got += (size_t)r;
	}
	return true;
}

/* True when id is 1..64 characters of A-Z a-z 0-9 . _ - (the config's rule). */
static bool id_ok(const char *id)
{
	size_t n = strlen(id);
	if (n == 0 || n > CONFIG_ID_MAX)
		return false;
	for (const char *p = id; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		      (*p >= '0' && *p <= '9') || *p == '.' || *p == '_' || *p == '-'))
			return false;
	return true;
}

/* token new EXPORTER: a fresh token, once, and the config entry for it. */
static int cmd_token(struct ctl *c, int argc, char **argv)
{
	(void)argc;
	if (strcmp(argv[0], "new") != 0)
		return usage_error("unknown token command \"%s\" (only \"token new\")", argv[0]);
	const char *id = argv[1];
	if (!id_ok(id))
		return usage_error("exporter id \"%s\": 1 to %d characters of A-Z a-z 0-9 . _ -",
		                   id, CONFIG_ID_MAX);
	/* Whether this replaces an entry, when the config can be read; a
	 * new token for it keeps its name unless --name gives another. */
	char *err = NULL;
	struct config *cfg = config_load(c->o.config, &err);
	if (cfg == NULL && c->o.name == NULL)
		warnx_("%s could not be read, so the entry below is named after the id, and an "
		       "existing entry's name is not kept (give --name): %s",
		       c->o.config, err);
	free(err);
	err = NULL;
	const struct config_exporter *as_exporter = cfg ? config_find_exporter(cfg, id) : NULL;
	const struct config_exporter *as_operator = cfg ? config_find_operator(cfg, id) : NULL;
	bool exporter_exists = as_exporter != NULL, operator_exists = as_operator != NULL;
	const struct config_exporter *known = as_exporter ? as_exporter : as_operator;
	const char *old_name = known != NULL && known->name != NULL ? known->name : id;
	char name_buf[600];
	snprintf(name_buf, sizeof(name_buf), "%s", c->o.name ? c->o.name : old_name);
	config_free(cfg);
	const char *name = name_buf;
	if (name[0] == '\0' || text_width(name) > 128 || strlen(name) > 512)
		return usage_error("--name must be 1 to 128 characters");
	for (const char *p = name; *p != '\0'; p++)
		if ((unsigned char)*p < 0x20 || *p == 0x7f)
			return usage_error("--name must not contain control characters");

	unsigned char raw[TOKEN_BYTES];
	if (!random_bytes(raw, sizeof(raw))) {
		warnx_("getrandom: %s", strerror(errno));
		return EX_SOFTWARE_;
	}
	char token[2 * TOKEN_BYTES + 1];
	for (size_t i = 0; i < TOKEN_BYTES; i++)
		snprintf(token + 2 * i, 3, "%02x", raw[i]);
	uint8_t digest[AUTH_DIGEST_LEN];
	char hex[2 * AUTH_DIGEST_LEN + 1];
	auth_hash(token, strlen(token), digest);
	auth_format_hex(digest, hex);

	/* The name goes inside a libconfig string: escape \ and ". */
	char quoted[1100];
	size_t o = 0;
	for (const char *p = name; *p != '\0' && o + 3 < sizeof(quoted); p++) {
		if (*p == '"' || *p == '\\')
			quoted[o++] = '\\';
		quoted[o++] = *p;
	}
	quoted[o] = '\0';
	char line[1400];
	snprintf(line, sizeof(line), "{ id = \"%s\"; name = \"%s\"; token_sha256 = \"%s\"; }", id,
	         quoted, hex);
	/* The entry must load as the daemon loads it (a --name that is not
	 * UTF-8, say): check it with the same loader before printing it. */
	char text[1500];
	snprintf(text, sizeof(text), "exporters = ( %s );\n", line);
	struct config *probe = config_parse_string(text, "entry", &err);
	if (probe == NULL) {
		explicit_bzero(token, sizeof(token));
		const char *why = strncmp(err, "entry:1: ", 9) == 0 ? err + 9 : err;
		int rc = usage_error("the entry for %s would not load: %s", id, why);
		free(err);
		return rc;
	}
	config_free(probe);

	if (c->o.json) {
		json_out(json_pack("{s:s, s:s, s:s, s:s, s:s, s:b, s:b}", "exporter", id, "name",
		                   name, "token", token, "token_sha256", hex, "config_line", line,
		                   "replaces_exporter", exporter_exists, "replaces_operator",
		                   operator_exists));
		explicit_bzero(token, sizeof(token));
		return EX_OK_;
	}
	printf("New token for %s. It is shown only this once: give it to the exporter over a "
	       "safe channel.\n\n    %s\n\n",
	       id, token);
	if (exporter_exists || operator_exists)
		printf("Replace the existing entry in %s of %s with this one,\n",
		       exporter_exists ? "exporters" : "operators", c->o.config);
	else
		printf("Add this entry in exporters of %s (the same line works in operators for "
		       "an operator),\n",
		       c->o.config);
	printf("then check the file and reload:\n\n    %s\n\n", line);
	printf("    ordertrackd -t -c %s && systemctl reload ordertrackd\n", c->o.config);
	explicit_bzero(token, sizeof(token));
	return EX_OK_;
}

/* --- tail --- */

/* Split "host:port" ("[v6]:port") into its parts; false when it is not that shape. */
static bool address_split(const char *spec, char *host, size_t host_cap, char *port,
                          size_t port_cap)
{
	const char *colon;
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (end == NULL || end[1] != ':')
			return false;
		snprintf(host, host_cap, "%.*s", (int)(end - spec - 1), spec + 1);
		colon = end + 1;
	} else {
		colon = strrchr(spec, ':');
		if (colon == NULL)
			return false;
		snprintf(host, host_cap, "%.*s", (int)(colon - spec), spec);
	}
	if (colon[1] == '\0' || strlen(colon + 1) >= port_cap)
		return false;
	snprintf(port, port_cap, "%s", colon + 1);
	return true;
}

/* Open a TCP connection to "host:port" (address_split's shape); -1 with a message on failure. */
static int tcp_connect(const char *spec)
{
	char host[256], port[16];
	if (!address_split(spec, host, sizeof(host), port, sizeof(port)))
		abort(); /* the caller checked the shape */
	/* A wildcard listen address is reached on the loopback. */
	if (strcmp(host, "0.0.0.0") == 0 || host[0] == '\0')
		snprintf(host, sizeof(host), "127.0.0.1");
	else if (strcmp(host, "::") == 0)
		snprintf(host, sizeof(host), "::1");

	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai, *p;
	int rc = getaddrinfo(host, port, &hints, &ai);
	if (rc != 0) {
		warnx_("%s: %s", spec, gai_strerror(rc));
		return -1;
	}
	int fd = -1, saved = 0;
	for (p = ai; p != NULL && fd < 0; p = p->ai_next) {
		fd = socket(p->ai_family, p->ai_socktype | SOCK_CLOEXEC, p->ai_protocol);
		if (fd >= 0 && connect(fd, p->ai_addr, p->ai_addrlen) != 0) {
			saved = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(ai);
	if (fd < 0)
		warnx_("cannot reach ordertrackd at %s: %s", spec, strerror(saved));
	return fd;
}

/* A line reader over a socket. */
struct reader {
	int fd;
	char buf[LINE_MAX_];
	size_t len;
};

/* Read one line (without its newline) into out; false at EOF or on error. */
static bool read_line(struct reader *rd, char *out, size_t cap)
{
	for (;;) {
		char *nl = memchr(rd->buf, '\n', rd->len);
		if (nl != NULL) {
			size_t n = (size_t)(nl - rd->buf);
			snprintf(out, cap, "%.*s", (int)n, rd->buf);
			memmove(rd->buf, nl + 1, rd->len - n - 1);
			rd->len -= n + 1;
			return true;
		}
		if (rd->len == sizeof(rd->buf))
			rd->len = 0; /* a line longer than we take: drop it */
		ssize_t r = read(rd->fd, rd->buf + rd->len, sizeof(rd->buf) - rd->len);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return false;
		rd->len += (size_t)r;
	}
}

/* Write a whole line and its newline; false on error. */
static bool write_line(int fd, const char *s)
{
	size_t len = strlen(s), off = 0;
	while (off <= len) {
		const char *p = off < len ? s + off : "\n";
		size_t n = off < len ? len - off : 1;
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return false;
		off += (size_t)w;
	}
	return true;
}

/* A member of a notification as text for people: "-" when missing or null. */
static const char *jtext(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "-";
}

/* One notification for people, on one line. */
static void notification_print(const json_t *n)
{
	const json_t *from = json_object_get(n, "from"), *to = json_object_get(n, "to");
	const char *shipment = json_string_value(json_object_get(n, "shipment"));
	printf("#%lld %s %-19s %s %s%s%s %s -> %s",
	       (long long)json_integer_value(json_object_get(n, "seq")), jtext(n, "at"),
	       jtext(n, "kind"), jtext(n, "exporter"), jtext(n, "order"), shipment ? "/" : "",
	       shipment ? shipment : "", json_is_string(from) ? json_string_value(from) : "(none)",
	       json_is_string(to) ? json_string_value(to) : "(none)");
	if (json_is_string(json_object_get(n, "event")))
		printf("  (event %s at %s)", jtext(n, "event"), jtext(n, "occurred_at"));
	printf("\n");
	fflush(stdout);
}

/*
 * The seq to start after when none is given: just before the newest few
 * stored.  Not the newest seq minus a few: after a prune those may be
 * gone, and the feed would answer feed_gap.
 */
static int tail_default_after(struct ctl *c, long long *after)
{
	if (!ctl_connect(c))
		return EX_UNAVAILABLE_;
	/* With --exporter, that exporter's newest (notifications_exporter_idx). */
	const char *params[1] = {c->o.exporter};
	PGresult *r = ctl_query(
	    c,
	    c->o.exporter != NULL
	        ? "SELECT coalesce(min(seq) - 1, 0) FROM (SELECT seq FROM"
	          " ordertrack.notifications WHERE exporter = $1 ORDER BY seq DESC"
	          " LIMIT " TAIL_BACKLOG_STR ") newest"
	        : "SELECT coalesce(min(seq) - 1, 0) FROM (SELECT seq FROM"
	          " ordertrack.notifications ORDER BY seq DESC LIMIT " TAIL_BACKLOG_STR ") newest",
	    c->o.exporter != NULL ? 1 : 0, params);
	*after = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
	PQclear(r);
	PQfinish(c->pg);
	c->pg = NULL;
	return EX_OK_;
}

/* True when s can be a JSON string: jansson takes UTF-8 only. */
static bool json_text_ok(const char *s)
{
	json_t *j = json_string(s);
	json_decref(j);
	return j != NULL;
}

/* tail: follow the notification feed of the daemon as an operator. */
static int cmd_tail(struct ctl *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	const char *token = c->o.token ? c->o.token : getenv("ORDERTRACK_TOKEN");
	if (token == NULL || token[0] == '\0')
		return usage_error("tail needs an operator's token: --token T or the environment "
		                   "variable ORDERTRACK_TOKEN");
	if (!ctl_config(c))
		return EX_CONFIG_;
	const char *op = c->o.operator_id;
	if (op == NULL) {
		if (c->cfg->n_operators == 0) {
			warnx_("%s has no operators: add one (ordertrackctl token new) or give "
			       "--operator",
			       c->o.config);
			return EX_CONFIG_;
		}
		op = c->cfg->operators[0].id;
	}
	/* The hello and the subscription are JSON: a value that is not UTF-8
	 * cannot go in (the filter would be dropped, the hello not built). */
	if (!json_text_ok(token))
		return usage_error("the token (--token or ORDERTRACK_TOKEN) must be UTF-8 text");
	if (!json_text_ok(op))
		return usage_error("--operator must be UTF-8 text");
	if (c->o.exporter != NULL && !json_text_ok(c->o.exporter))
		return usage_error("--exporter must be UTF-8 text");
	/* tail speaks plain text only: a daemon that takes TLS alone would
	 * close the connection unanswered, which looks like one that is down. */
	if (c->o.address == NULL && c->cfg->tls_enabled && c->cfg->tls_require) {
		warnx_("%s takes only TLS (tls.require = true) and tail speaks plain text: give "
		       "--address HOST:PORT of a port that takes plain text",
		       c->o.config);
		return EX_UNAVAILABLE_;
	}
	const char *addr = c->o.address ? c->o.address : c->cfg->listen[0];
	char host_part[256], port_part[16];
	if (!address_split(addr, host_part, sizeof(host_part), port_part, sizeof(port_part)))
		return usage_error("--address wants HOST:PORT or [IPV6]:PORT (got \"%s\")", addr);
	size_t alen = strlen(addr);
	if (alen >= 2 && strcmp(addr + alen - 2, ":0") == 0)
		return usage_error("%s listens on port 0 (any free port): give --address HOST:PORT",
		                   c->o.config);
	long long after = c->o.after;
	if (!(c->o.given & O_AFTER)) {
		int rc = tail_default_after(c, &after);
		if (rc != EX_OK_)
			return rc;
	}
	int fd = tcp_connect(addr);
	if (fd < 0)
		return EX_UNAVAILABLE_;

	json_t *hello =
	    json_pack("{s:s, s:s, s:s}", "type", "hello", "operator", op, "token", token);
	json_t *sub = json_pack("{s:s, s:I}", "type", "subscribe", "after", (json_int_t)after);
	if (c->o.exporter != NULL)
		json_object_set_new(sub, "exporters", json_pack("[s]", c->o.exporter));
	char *h = json_dumps(hello, JSON_COMPACT), *s = json_dumps(sub, JSON_COMPACT);
	json_decref(hello);
	json_decref(sub);
	struct reader *rd = calloc(1, sizeof(*rd));
	char *line = xmalloc(LINE_MAX_);
	int rc = EX_UNAVAILABLE_;
	bool refused = false;
	long long shown = 0;
	if (rd == NULL || h == NULL || s == NULL)
		abort();
	rd->fd = fd;

	/* Hello first, and its answer: a refused hello is answered, then closed.
	 * A connection refused on connect (a limit) is answered before the
	 * hello, and closed: the write may fail, the answer still be there. */
	bool sent = write_line(fd, h);
	if (read_line(rd, line, LINE_MAX_)) {
		sent = true;
		json_t *w = json_loads(line, 0, NULL);
		const char *type = json_string_value(json_object_get(w, "type"));
		if (type == NULL) {
			/* Another service on that port (the admin endpoint answers
			 * HTTP): say what came back, not an empty refusal. */
			for (char *p = line; *p != '\0'; p++)
				if ((unsigned char)*p < 0x20 || *p == 0x7f)
					*p = ' ';
			warnx_(
			    "%s did not answer the hello as ordertrackd does (got \"%.80s\"): is "
			    "it one of ordertrackd's listen addresses?",
			    addr, line);
			refused = true;
			sent = false;
		} else if (strcmp(type, "welcome") != 0) {
			const char *code = jtext(w, "code");
			warnx_("ordertrackd refused the hello of operator %s: %s: %s", op, code,
			       jtext(w, "message"));
			/* A wrong token is the config's; anything else (a connection
			 * limit, a drain) is the daemon not taking us now. */
			rc = strcmp(code, "auth_failed") == 0 ? EX_CONFIG_ : EX_UNAVAILABLE_;
			refused = true;
			sent = false;
		}
		json_decref(w);
		sent = sent && write_line(fd, s);
	} else if (sent) {
		sent = false; /* closed before answering */
	}
	free(h);
	free(s);
	if (!sent && !refused)
		warnx_("ordertrackd at %s closed the connection%s", addr,
		       c->cfg->tls_enabled
		           ? " (if that port takes only TLS: tail speaks plain text)"
		           : "");
	while (sent && read_line(rd, line, LINE_MAX_)) {
		json_t *j = json_loads(line, 0, NULL);
		const char *type = json_string_value(json_object_get(j, "type"));
		if (type == NULL) {
			json_decref(j);
			continue;
		}
		if (strcmp(type, "error") == 0) {
			const char *code = jtext(j, "code");
			warnx_("ordertrackd refused: %s: %s", code, jtext(j, "message"));
			/* invalid_request names an option the daemon would not take
			 * (an --exporter that is no exporter id, say); anything else
			 * is the daemon not serving us.  1 is for "not found" only. */
			rc = strcmp(code, "auth_failed") == 0       ? EX_CONFIG_
			     : strcmp(code, "invalid_request") == 0 ? EX_USAGE_
			     : strcmp(code, "feed_gap") == 0        ? EX_NOTFOUND_
			                                            : EX_UNAVAILABLE_;
			refused = true;
			json_decref(j);
			break;
		}
		if (strcmp(type, "subscribed") == 0 && !c->o.json)
			fprintf(stderr,
			        "ordertrackctl: following notifications after seq %lld as "
			        "operator %s\n",
			        after, op);
		if (strcmp(type, "notification") == 0) {
			if (c->o.json) {
				printf("%s\n", line);
				fflush(stdout);
			} else {
				notification_print(j);
			}
			shown++;
		}
		json_decref(j);
		if (c->o.limit > 0 && shown >= c->o.limit) {
			rc = EX_OK_;
			break;
		}
	}
	if (rc == EX_UNAVAILABLE_ && sent && !refused)
		warnx_("ordertrackd at %s closed the connection", addr);
	free(line);
	free(rd);
	close(fd);
	return rc;
}

/* --- main --- */

/* Parse a non-negative integer option; false when it is not one. */
static bool parse_count(const char *s, long long *out)
{
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < 0)
		return false;
	*out = v;
	return true;
}

/* The names of the option bits, for messages. */
static const char *opt_name(unsigned bit)
{
	static const char *const names[] = {"--exporter", "--status",  "--held",     "--anomalies",
	                                    "--overdue",  "--after",   "--token",    "--operator",
	                                    "--limit",    "--from",    "--to",       "--by",
	                                    "--name",     "--address", "--keep-days"};
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (bit == 1u << i)
			return names[i];
	return "?";
}

/*
 * --token: keep a copy and write over the argument, which ps and
 * /proc/PID/cmdline show to every user of the host for as long as tail
 * runs.  (Until this runs they see it all the same: ORDERTRACK_TOKEN,
 * readable only by the same user, is the safer way.)
 */
static const char *token_from_argv(char *arg)
{
	static char *copy; /* a global, so a leak checker sees it reachable */
	free(copy);
	copy = strdup(arg);
	if (copy == NULL)
		abort();
	memset(arg, 'x', strlen(arg));
	return copy;
}

/*
 * Read the options before the command into o.  Returns -1 to go on, or
 * the exit code when they asked for help or the version, or were wrong.
 */
static int parse_options(int argc, char **argv, struct opts *o)
{
	enum {
		L_JSON = 256,
		L_EXPORTER,
		L_STATUS,
		L_HELD,
		L_ANOMALIES,
		L_OVERDUE,
		L_AFTER,
		L_TOKEN,
		L_OPERATOR,
		L_LIMIT,
		L_FROM,
		L_TO,
		L_BY,
		L_NAME,
		L_ADDRESS,
		L_KEEP_DAYS
	};
	static const struct option longopts[] = {
	    {"config", required_argument, NULL, 'c'},
	    {"json", no_argument, NULL, L_JSON},
	    {"help", no_argument, NULL, 'h'},
	    {"version", no_argument, NULL, 'V'},
	    {"exporter", required_argument, NULL, L_EXPORTER},
	    {"status", required_argument, NULL, L_STATUS},
	    {"held", no_argument, NULL, L_HELD},
	    {"anomalies", no_argument, NULL, L_ANOMALIES},
	    {"overdue", no_argument, NULL, L_OVERDUE},
	    {"after", required_argument, NULL, L_AFTER},
	    {"token", required_argument, NULL, L_TOKEN},
	    {"operator", required_argument, NULL, L_OPERATOR},
	    {"limit", required_argument, NULL, L_LIMIT},
	    {"from", required_argument, NULL, L_FROM},
	    {"to", required_argument, NULL, L_TO},
	    {"by", required_argument, NULL, L_BY},
	    {"name", required_argument, NULL, L_NAME},
	    {"address", required_argument, NULL, L_ADDRESS},
	    {"keep-days", required_argument, NULL, L_KEEP_DAYS},
	    {NULL, 0, NULL, 0},
	};
	int ch;

	o->config = OT_DEFAULT_CONFIG;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "c:hV", longopts, NULL)) != -1) {
		switch (ch) {
		case 'c':
			o->config = optarg;
			break;
		case 'h':
			usage(stdout);
			return EX_OK_;
		case 'V':
			printf("ordertrackctl %s\n", OT_VERSION);
			return EX_OK_;
		case L_JSON:
			o->json = true;
			break;
		case L_EXPORTER:
			o->exporter = optarg;
			o->given |= O_EXPORTER;
			break;
		case L_STATUS:
			o->status = optarg;
			o->given |= O_STATUS;
			break;
		case L_HELD:
			o->held = true;
			o->given |= O_HELD;
			break;
		case L_ANOMALIES:
			o->anomalies = true;
			o->given |= O_ANOMALIES;
			break;
		case L_OVERDUE:
			o->overdue = true;
			o->given |= O_OVERDUE;
			break;
		case L_AFTER:
			if (!parse_count(optarg, &o->after))
				return usage_error("--after wants a seq, 0 or more (got \"%s\")",
				                   optarg);
			o->given |= O_AFTER;
			break;
		case L_TOKEN:
			o->token = token_from_argv(optarg);
			o->given |= O_TOKEN;
			break;
		case L_OPERATOR:
			o->operator_id = optarg;
			o->given |= O_OPERATOR;
			break;
		case L_LIMIT:
			if (!parse_count(optarg, &o->limit) || o->limit == 0)
				return usage_error("--limit wants a count, 1 or more (got \"%s\")",
				                   optarg);
			o->given |= O_LIMIT;
			break;
		case L_FROM:
			o->from = optarg;
			o->given |= O_FROM;
			break;
		case L_TO:
			o->to = optarg;
			o->given |= O_TO;
			break;
		case L_BY:
			o->by = optarg;
			o->given |= O_BY;
			break;
		case L_NAME:
			o->name = optarg;
			o->given |= O_NAME;
			break;
		case L_ADDRESS:
			o->address = optarg;
			o->given |= O_ADDRESS;
			break;
		case L_KEEP_DAYS:
			if (!parse_count(optarg, &o->keep_days) || o->keep_days > 36500)
				return usage_error(
				    "--keep-days wants days, 0 to 36500 (got \"%s\")", optarg);
			o->given |= O_KEEP_DAYS;
			break;
		default:
			if (optopt != 0 && optopt < 256)
				return usage_error("bad option -%c or its missing argument",
				                   optopt);
			return usage_error("unknown option %s or its missing argument",
			                   argv[optind - 1]);
		}
	}
	return -1;
}

/* --- prune --- */

/*
 * The newest seq prune may delete through: the last notification older
 * than the cutoff (0 when none is: least() would skip the NULL and take
 * a cursor), but none that a configured webhook has still to deliver ($2,
 * the ids, as an array literal: the cursors of webhooks no longer
 * configured hold nothing back; one configured whose row is not made yet
 * starts at 0).  Column 2 names the webhook that held it back, if one did.
 */
static const char prune_plan_sql[] =
    "WITH old AS (SELECT max(seq) AS through FROM ordertrack.notifications"
    "  WHERE created_at < now() - make_interval(days => $1::integer)),"
    " hook AS (SELECT w.id AS webhook, coalesce(c.last_seq, 0) AS last_seq"
    "  FROM unnest($2::text[]) AS w(id)"
    "  LEFT JOIN ordertrack.webhook_cursors c ON c.webhook = w.id"
    "  ORDER BY 2, 1 LIMIT 1)"
    " SELECT CASE WHEN old.through IS NULL THEN 0"
    "  WHEN hook.last_seq IS NULL THEN old.through"
    "  ELSE least(old.through, hook.last_seq) END,"
    "  coalesce(old.through, 0),"
    "  CASE WHEN hook.last_seq < old.through THEN hook.webhook END,"
    "  coalesce((SELECT min(seq) FROM ordertrack.notifications), 0)"
    " FROM old LEFT JOIN hook ON true";

/* One chunk, in a transaction of its own: a short lock, a bounded WAL burst. */
static const char prune_chunk_sql[] =
    "DELETE FROM ordertrack.notifications WHERE seq > $1::bigint AND seq <= $2::bigint";

#define PRUNE_CHUNK 50000

/* A PostgreSQL array literal of the configured webhooks' ids. */
static char *webhook_ids(const struct config *cfg)
{
	size_t cap = 3;
	for (size_t i = 0; i < cfg->n_webhooks; i++)
		cap += strlen(cfg->webhooks[i].id) + 3;
	char *out = malloc(cap), *p = out;
	if (out == NULL)
		abort();
	*p++ = '{';
	for (size_t i = 0; i < cfg->n_webhooks; i++)
		p += sprintf(p, "%s\"%s\"", i ? "," : "", cfg->webhooks[i].id);
	strcpy(p, "}");
	return out;
}

/*
 * prune --keep-days N: delete the notifications older than N days, in
 * chunks.  The events, the read model and the alerts are left alone: only
 * the feed's history goes.  A subscriber that resumes inside what was
 * deleted is told so (feed_gap, PROTOCOL.md), not fed around the hole.
 */
static int cmd_prune(struct ctl *c, int argc, char **argv)
{
	(void)argc;
	(void)argv;
	if (!(c->o.given & O_KEEP_DAYS))
		return usage_error("prune needs --keep-days N");
	int rc = ctl_open(c);
	if (rc != EX_OK_)
		return rc;
	char days[32];
	snprintf(days, sizeof(days), "%lld", c->o.keep_days);
	char *ids = webhook_ids(c->cfg);
	const char *params[2] = {days, ids};
	PGresult *plan = ctl_query(c, prune_plan_sql, 2, params);
	free(ids);
	long long through = strtoll(PQgetvalue(plan, 0, 0), NULL, 10);
	long long older = strtoll(PQgetvalue(plan, 0, 1), NULL, 10);
	long long oldest = strtoll(PQgetvalue(plan, 0, 3), NULL, 10);
	char held_by[128] = "";
	if (!PQgetisnull(plan, 0, 2))
		snprintf(held_by, sizeof(held_by), "%s", PQgetvalue(plan, 0, 2));
	PQclear(plan);

	/* The one command that writes: the session is read-only for the rest. */
	PQclear(ctl_query(c, "SET default_transaction_read_only = off", 0, NULL));
	long long deleted = 0;
	for (long long lo = oldest > 0 ? oldest - 1 : 0; lo < through; lo += PRUNE_CHUNK) {
		char a[32], b[32];
		snprintf(a, sizeof(a), "%lld", lo);
		snprintf(b, sizeof(b), "%lld",
		         lo + PRUNE_CHUNK < through ? lo + PRUNE_CHUNK : through);
		const char *p2[2] = {a, b};
		PGresult *r = ctl_query(c, prune_chunk_sql, 2, p2);
		deleted += strtoll(PQcmdTuples(r), NULL, 10);
		PQclear(r);
	}
	/* Nothing deleted: no seq to name (already pruned, or held back at once). */
	bool any = deleted > 0;
	if (c->o.json) {
		json_out(json_pack("{s:I, s:I, s:o, s:o}", "keep_days", (json_int_t)c->o.keep_days,
		                   "deleted", (json_int_t)deleted, "through_seq",
		                   any ? json_integer(through) : json_null(), "held_back_by",
		                   held_by[0] ? json_string(held_by) : json_null()));
	} else {
		if (any)
			printf(
			    "pruned %lld notifications older than %lld days (through seq %lld)\n",
			    deleted, c->o.keep_days, through);
		else
			printf("pruned nothing: no notification older than %lld days %s\n",
			       c->o.keep_days, held_by[0] ? "may go yet" : "is left");
		if (held_by[0])
			printf("held back by webhook %s: it has not delivered those after seq %lld "
			       "(older ones up to seq %lld are kept)\n",
			       held_by, through, older);
	}
	return EX_OK_;
}

int main(int argc, char **argv)
{
	struct ctl c;
	memset(&c, 0, sizeof(c));
	int rc = parse_options(argc, argv, &c.o);
	if (rc >= 0)
		return rc;
	if (optind >= argc)
		return usage_error("no command given");
	const char *name = argv[optind];
	const struct command *cmd = NULL;
	for (size_t i = 0; i < N_COMMANDS; i++)
		if (strcmp(commands[i].name, name) == 0)
			cmd = &commands[i];
	if (cmd == NULL)
		return usage_error("unknown command \"%s\"", name);
	int nargs = argc - optind - 1;
	if (nargs < cmd->min_args || nargs > cmd->max_args)
		return usage_error("usage: ordertrackctl %s", cmd->usage);
	unsigned extra = c.o.given & ~cmd->takes;
	if (extra != 0)
		return usage_error("%s does not apply to %s", opt_name(extra & -extra), cmd->name);

	rc = cmd->run(&c, nargs, argv + optind + 1);
	if (c.pg != NULL)
		PQfinish(c.pg);
	config_free(c.cfg);
	return rc;
}
