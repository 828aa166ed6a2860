/*
 * ordertrack-load.c - load generator for ordertrackd: acked throughput and
 * ack latency.
 *
 * It opens N connections, says hello on each, waits until all are
 * welcomed, and then sends realistic export orders: each order is a
 * whole lifecycle (order.created, documents, shipment.booked, export
 * clearance, departure, arrival, sometimes a customs hold, import
 * clearance, delivery) with occurred_at in the past, in Kigali (+02:00)
 * or China (+08:00) local time.  Now and then two neighbouring events of
 * an order are sent in swapped order, as happens in the field.  An order
 * goes through one connection; connections take the next order from one
 * shared sequence when they run out, and every id carries the run id so
 * that repeated runs never collide.  By default a connection sends an
 * order whole before the next, so most of an order's events meet in one
 * batch of the daemon; --open-orders K keeps K orders open per connection
 * and sends an event of each in turn, as live traffic does, where each
 * event meets its order's earlier events already stored.
 *
 * Each connection keeps at most --window events unacked.  The daemon
 * answers every line once, in line order, so the send time of an event
 * waits in a ring indexed by its sequence number until its reply comes.
 * Closed loop (the default) sends as fast as acks allow and times from
 * the moment the event was queued.  Open loop (--rate) gives every event
 * an intended send time on a fixed schedule and times from that, even
 * when a full window made the event wait: the latency a client at that
 * rate would see, without coordinated omission.  The loader wakes once per
 * --tick-us and then every connection sends the events whose time has
 * come, so a high rate does not cost a timer and a write per event (at
 * 8,000 events/s that took 32 µs of CPU per event from the machine the
 * daemon runs on); the wait for the tick counts in the latency.
 *
 * Hot path: events are generated one order at a time into a fixed buffer
 * per connection and copied into the bufferevent; replies are scanned in
 * place without a JSON parser.  Nothing is allocated per event.
 * Latencies go into a log-linear histogram (under 1 % error), so runs of
 * any length use the same memory.
 *
 * Replies are checked against the event they answer (by id, in order).
 * The first few error replies are printed in full, the rest only counted.
 * A run that gets no reply for --timeout seconds with events in flight is
 * reported as stalled, with the state of every connection.
 *
 * --out writes the same event lines to a file without connecting (the
 * COPY baseline of the benchmark): one event per line, no backslash or
 * tab in any of them, byte for byte what a run with the same --run-id
 * and --seed on the same UTC day sends.  --self-check runs every
 * generated event through libordertrack's own request_parse(), and
 * checks the latency percentiles against a sort of synthetic samples.
 *
 * --json prints one object: run_id, exporter, connections, window, orders,
 * rate, sent, acked, stored, duplicate, errors (error replies, replies out
 * of order, unexpected replies), lost (sent and unanswered when the run
 * ended, because a connection died, the daemon stalled or the run was
 * interrupted, plus never sent), bytes_sent, unsent, elapsed_s (first send to last
 * ack), events_per_s (acked), bytes_per_event, latency_{p50,p90,p99,p999,
 * max,mean}_ms, complete and ok.
 *
 * The token: --token is written over in argv as soon as it is read (ps and
 * /proc/PID/cmdline show it to every user of the host until then), so
 * --token-file FILE (its first line) or the environment variable
 * OT_LOAD_TOKEN, which only the same user can read, are the safer ways.
 * --token and --token-file (not both) win over OT_LOAD_TOKEN; without any
 * of them it is the demo exporter's published token.
 *
 * Exit status: 0 when every event was acked (stored or duplicate), 1 on
 * any error reply, lost event, stall, interruption or failed connection,
 * 64 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/event_struct.h>

#include "request.h"

#define LOAD_EXIT_OK    0
#define LOAD_EXIT_FAIL  1
#define LOAD_EXIT_USAGE 64 /* EX_USAGE of sysexits */

#define RUN_ID_MAX       24          /* characters of --run-id */
#define TOKEN_MAX        256         /* bytes of a token */
#define ID_CAP           64          /* bytes for an event id and its NUL */
#define ORDER_EVENTS_MAX 16          /* events in one order, at most */
#define ORDER_BUF_SIZE   (24 * 1024) /* bytes of one order's event lines */
#define OPEN_ORDERS_MAX  256         /* --open-orders: 6 MiB of buffers per connection */
#define REPLY_MAX        2048        /* bytes of a reply line kept; longer ones are cut */
#define ERRORS_SHOWN     5           /* error replies printed in full */
#define CONNECT_LIMIT_S  10          /* seconds to connect and be welcomed */
#define SWAP_PERCENT     20          /* orders with two neighbouring events swapped */
#define HOLD_PERCENT     10          /* orders held at import customs */

#define HIST_EXACT_BITS 8                             /* values below 256 us are exact */
#define HIST_SUB        (1u << (HIST_EXACT_BITS - 1)) /* sub-buckets per octave above */
#define HIST_OCTAVES    40
#define HIST_BUCKETS    ((1u << HIST_EXACT_BITS) + HIST_OCTAVES * HIST_SUB)

#define NS_PER_S  INT64_C(1000000000)
#define NS_PER_US INT64_C(1000)
#define KIGALI    120 /* +02:00, minutes east of UTC */
#define CHINA     480 /* +08:00 */
#define DAY       INT64_C(86400)
#define HOUR      INT64_C(3600)
/* Room for a formatted time as the compiler sees it: any int in each field. */
#define TIME_BUF 80

/* Everything the command line sets. */
struct options {
	const char *host;
	int port;
	const char *exporter;
	const char *token;      /* NUL-terminated in token_buf, or a literal */
	const char *token_from; /* where it came from, for messages */
	unsigned connections;
	uint64_t events;      /* total to send; UINT64_MAX: until --duration ends */
	bool events_set;      /* -n was given */
	unsigned window;      /* unacked events per connection */
	double rate;          /* total events/s; 0: closed loop */
	unsigned tick_us;     /* open loop: send at most this often per connection */
	unsigned open_orders; /* orders each connection sends in turn, an event at a time */
	double duration;      /* seconds, or 0 */
	char run_id[RUN_ID_MAX + 1];
	bool json;
	const char *out; /* write the events here instead of sending */
	bool self_check;
	bool verbose;
	unsigned timeout_s; /* seconds without any ack before giving up */
	uint64_t seed;
};

/* ---------------------------------------------------------------------- */
/* Helpers */

/* Print a message about the command line and exit 64. */
static void __attribute__((noreturn, format(printf, 1, 2))) usage_error(const char *fmt, ...)
{
	va_list ap;

	fputs("ordertrack-load: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputs("\n(ordertrack-load --help shows the options)\n", stderr);
	exit(LOAD_EXIT_USAGE);
}

/* Print a message and exit 1: only before the run or for broken invariants. */
static void __attribute__((noreturn, format(printf, 1, 2))) fatalx(const char *fmt, ...)
{
	va_list ap;

	fputs("ordertrack-load: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(LOAD_EXIT_FAIL);
}

/* Allocate zeroed memory or abort: out of memory is not a code path. */
static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n, size);

	if (p == NULL)
		abort();
	return p;
}

/* The monotonic clock in nanoseconds. */
static int64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * NS_PER_S + ts.tv_nsec;
}

/* The wall clock in milliseconds, for the validator's future check. */
static int64_t wall_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---------------------------------------------------------------------- */
/* Random numbers: splitmix64, seeded per order so output is reproducible. */

struct rng {
	uint64_t s;
};

/* The next 64 random bits. */
static uint64_t rng_next(struct rng *r)
{
	uint64_t z = (r->s += UINT64_C(0x9e3779b97f4a7c15));

	z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
	return z ^ (z >> 31);
}

/* A number in [0, n); n > 0.  The modulo bias is irrelevant here. */
static unsigned rng_below(struct rng *r, unsigned n)
{
	return (unsigned)(rng_next(r) % n);
}

/* A number in [lo, hi]. */
static int64_t rng_range(struct rng *r, int64_t lo, int64_t hi)
{
	return lo + (int64_t)(rng_next(r) % (uint64_t)(hi - lo + 1));
}

/* True with the given chance in percent. */
static bool rng_percent(struct rng *r, unsigned percent)
{
	return rng_below(r, 100) < percent;
}

/* ---------------------------------------------------------------------- */
/* What the orders are made of.  No string here holds '"', '\\' or a tab,
 * so event lines need no escaping and load into COPY's text format as is. */

/* One thing an exporter sells. */
struct product {
	const char *sku;
	const char *name;
	const char *hs_code;
	const char *unit;
	unsigned qty_min, qty_max, qty_step; /* in units */
	unsigned cents_min, cents_max;       /* price per unit, US cents */
};

static const struct product coffee[] = {
    {"KV-WA-G1", "Washed Arabica green coffee, grade 1, Lake Kivu", "090111", "kg", 300, 6000, 60,
     620, 790},
    {"KV-NA-G2", "Natural Arabica green coffee, grade 2", "090111", "kg", 600, 9000, 60, 480, 590},
    {"KV-RB-SPEC", "Red Bourbon specialty green coffee, micro-lot", "090111", "bag", 5, 60, 1,
     38000, 52000},
    {"KV-HO-LOT", "Honey-process Arabica green coffee, Nyamasheke", "090111", "kg", 120, 1800, 30,
     890, 1150},
};

static const struct product chili[] = {
    {"AK-BE-DRY", "Dried bird's eye chili, whole, sun-dried", "090421", "kg", 200, 4000, 50, 410,
     560},
    {"AK-HAB-FLK", "Crushed habanero chili flakes", "090421", "carton", 20, 400, 10, 5200, 7400},
    {"AK-PP-WH", "Whole dried piri-piri chili, hand sorted", "090421", "kg", 500, 8000, 100, 350,
     480},
};

/* A buyer in China and where its goods end up. */
struct buyer {
	const char *name;
	const char *city;
	const char *locode;
	const char *warehouse;
};

static const struct buyer buyers[] = {
    {"Hangzhou Morning Cup Trading Co.", "Hangzhou", "CNHGH",
     "Cainiao bonded warehouse, Xiaoshan district"},
    {"Shanghai Red Lantern Foods Ltd.", "Shanghai", "CNSHA", "Red Lantern DC, Jiading district"},
    {"Chengdu Spice Route Supermarkets Co.", "Chengdu", "CNCTU",
     "Spice Route central warehouse, Shuangliu"},
    {"Shenzhen Bean and Leaf E-commerce Co.", "Shenzhen", "CNSZX",
     "Qianhai cross-border bonded zone, unit 12"},
    {"Guangzhou Highland Imports Ltd.", "Guangzhou", "CNCAN", "Nansha free trade zone, dock 4"},
    {"Beijing Golden Harvest Retail Group", "Beijing", "CNBJS",
     "Golden Harvest cold store, Daxing"},
    {"Kunming Mountain Brew Coffee Co.", "Kunming", "CNKMG", "Mountain Brew roastery, Guandu"},
};

static const char *const channels[] = {
    "Tmall Global flagship store",
    "JD Worldwide",
    "Douyin cross-border shop",
    "Direct supply contract",
};

/* A place with its UN/LOCODE and name. */
struct place {
	const char *code;
	const char *name;
};

static const struct place air_arrivals[] = {
    {"CNCAN", "Guangzhou Baiyun International Airport, cargo terminal"},
    {"CNPVG", "Shanghai Pudong International Airport, east cargo area"},
    {"CNHGH", "Hangzhou Xiaoshan International Airport, cargo terminal"},
    {"CNCTU", "Chengdu Tianfu International Airport, cargo area"},
};

static const struct place sea_departures[] = {
    {"TZDAR", "Port of Dar es Salaam, container terminal"},
    {"KEMBA", "Port of Mombasa, Kipevu container terminal"},
};

static const struct place sea_arrivals[] = {
    {"CNSHA", "Port of Shanghai, Yangshan deep-water terminal"},
    {"CNNGB", "Port of Ningbo-Zhoushan, Beilun terminal"},
    {"CNYTN", "Port of Shenzhen, Yantian international terminal"},
};

static const struct place kigali_airport = {"RWKGL",
                                            "Kigali International Airport, cargo terminal"};
static const struct place kigali_platform = {"RWKGL", "Kigali Logistics Platform, Masaka"};

static const char *const air_carriers[] = {
    "RwandAir Cargo",
    "Ethiopian Airlines Cargo",
    "Qatar Airways Cargo",
    "Kenya Airways Cargo",
};
static const char *const air_prefixes[] = {"459", "071", "157", "706"};
static const char *const air_flights[] = {"WB", "ET", "QR", "KQ"};
static const char *const air_hubs[] = {"via Dubai", "via Addis Ababa", "via Doha", "via Nairobi"};

static const char *const sea_carriers[] = {"Maersk", "COSCO Shipping Lines", "MSC", "CMA CGM"};
static const char *const sea_prefixes[] = {"MAEU", "COSU", "MEDU", "CMAU"};
static const char *const sea_vessels[] = {"Maersk Kensington", "COSCO Aden", "MSC Kalina",
                                          "CMA CGM Tage"};

/* Staff of the exporter who enter events in its ERP, for "ext". */
static const char *const clerks[] = {"j.mukamana", "e.niyonsaba", "p.mugisha", "a.uwase",
                                     "d.habimana"};

static const char *const hold_reasons[] = {
    "Phytosanitary inspection: samples sent to the customs laboratory",
    "Certificate of origin under review for the tariff preference",
    "Random physical inspection by China Customs",
    "Declared weight differs from the scale ticket; re-weighing",
};

static const char *const receivers[] = {
    "Warehouse receiving desk, W. Li",
    "Goods-in supervisor, Zhang Min",
    "Night shift receiving, Chen Hao",
    "Quality control, Liu Yang",
};

#define NELEM(a) (sizeof(a) / sizeof((a)[0]))

/* An order picks one carrier index for all of these. */
_Static_assert(NELEM(air_carriers) == 4 && NELEM(air_prefixes) == 4 && NELEM(air_flights) == 4 &&
                   NELEM(air_hubs) == 4 && NELEM(sea_carriers) == 4 && NELEM(sea_prefixes) == 4 &&
                   NELEM(sea_vessels) == 4,
               "carrier tables must have four rows");

/* ---------------------------------------------------------------------- */
/* The event generator.  One order at a time into a fixed buffer. */

/* One generated event: where its line is in the order buffer, and its id. */
struct gen_event {
	uint32_t off, len; /* the line, '\n' included */
	uint32_t id_len;
	char id[ID_CAP];
};

/* The events of one order, in the order they will be sent. */
struct order_buf {
	char data[ORDER_BUF_SIZE];
	size_t len;
	unsigned n;    /* events */
	unsigned next; /* the next one to send */
	struct gen_event ev[ORDER_EVENTS_MAX];
};

/* The shared source of orders; a budget of events spans all of them. */
struct gen {
	const char *run_id;
	bool chili_first; /* the exporter mostly sells chili */
	int64_t base_s;   /* first order's time, UTC seconds */
	uint64_t seed;
	uint64_t next_order;
	uint64_t remaining; /* events still to hand out; UINT64_MAX: no limit */
	uint64_t orders, events, bytes;
};

/* What one order is, decided before its events are written. */
struct order_ctx {
	struct rng rng;
	const struct gen *g;
	struct order_buf *ob;
	uint64_t ord;
	char order_ref[64];
	char ship_ref[72];
	const struct buyer *buyer;
	bool sea;
	unsigned carrier; /* index into the air_* or sea_* tables */
	unsigned erp_no;  /* the exporter's own sales order number */
};

/* Format UTC seconds as RFC 3339 local time at the given offset. */
static void format_time(char *out, size_t cap, int64_t utc_s, int off_min)
{
	time_t local = (time_t)(utc_s + (int64_t)off_min * 60);
	struct tm tm;
	int a = off_min < 0 ? -off_min : off_min;

	gmtime_r(&local, &tm);
	snprintf(out, cap, "%04d-%02d-%02dT%02d:%02d:%02d%c%02d:%02d", tm.tm_year + 1900,
	         tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
	         off_min < 0 ? '-' : '+', a / 60, a % 60);
}

/* Format the calendar date of UTC seconds at an offset as YYYY-MM-DD. */
static void format_date(char *out, size_t cap, int64_t utc_s, int off_min)
{
	time_t local = (time_t)(utc_s + (int64_t)off_min * 60);
	struct tm tm;

	gmtime_r(&local, &tm);
	snprintf(out, cap, "%04d-%02d-%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday);
}

/* Append printf output to the order buffer; overflowing it is a bug here. */
static void __attribute__((format(printf, 2, 3))) ob_add(struct order_buf *ob, const char *fmt, ...)
{
	va_list ap;
	size_t room = sizeof(ob->data) - ob->len;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(ob->data + ob->len, room, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= room)
		fatalx("%s: an order does not fit in %zu bytes", __func__, sizeof(ob->data));
	ob->len += (size_t)n;
}

/* Start an event line: type, id, occurred_at, order and, if asked, shipment. */
static void ev_begin(struct order_ctx *o, const char *type, int64_t t, int off, bool shipment)
{
	struct order_buf *ob = o->ob;
	struct gen_event *e;
	char when[TIME_BUF];
	int n;

	if (ob->n >= ORDER_EVENTS_MAX)
		fatalx("%s: more than %d events in an order", __func__, ORDER_EVENTS_MAX);
	e = &ob->ev[ob->n];
	e->off = (uint32_t)ob->len;
	n = snprintf(e->id, sizeof(e->id), "%s.%" PRIu64 ".%u", o->g->run_id, o->ord, ob->n);
	if (n < 0 || (size_t)n >= sizeof(e->id))
		fatalx("%s: event id too long", __func__);
	e->id_len = (uint32_t)n;
	format_time(when, sizeof(when), t, off);
	ob_add(ob, "{\"type\":\"%s\",\"id\":\"%s\",\"occurred_at\":\"%s\",\"order\":\"%s\"", type,
	       e->id, when, o->order_ref);
	if (shipment)
		ob_add(ob, ",\"shipment\":\"%s\"", o->ship_ref);
}

/* Add a "location" member. */
static void ev_location(struct order_ctx *o, const char *code, const char *name)
{
	ob_add(o->ob, ",\"location\":{\"code\":\"%s\",\"name\":\"%s\"}", code, name);
}

/* Close the event line and count it. */
static void ev_end(struct order_ctx *o)
{
	struct order_buf *ob = o->ob;
	struct gen_event *e = &ob->ev[ob->n];

	/* What the exporter's ERP attaches to everything it sends. */
	ob_add(ob,
	       ",\"ext\":{\"erp\":\"Odoo 17\",\"sales_order\":\"SO/2026/%05u\","
	       "\"entered_by\":\"%s\"}}\n",
	       o->erp_no, clerks[rng_below(&o->rng, NELEM(clerks))]);
	e->len = (uint32_t)(ob->len - e->off);
	ob->n++;
}

/* order.created with 1-3 lines of coffee or chili. */
static void gen_created(struct order_ctx *o, int64_t t)
{
	struct rng *r = &o->rng;
	unsigned nlines = 1 + rng_below(r, 3);
	bool cny = rng_percent(r, 25);
	char date[TIME_BUF];

	ev_begin(o, "order.created", t, KIGALI, false);
	ob_add(o->ob, ",\"buyer\":\"%s\"", o->buyer->name);
	if (rng_percent(r, 70))
		ob_add(o->ob, ",\"channel\":\"%s\"", channels[rng_below(r, NELEM(channels))]);
	format_date(date, sizeof(date), t + (o->sea ? 50 : 14) * DAY, CHINA);
	ob_add(o->ob,
	       ",\"origin\":\"RW\",\"destination\":\"CN\",\"incoterm\":\"%s\","
	       "\"currency\":\"%s\",\"expected_delivery\":\"%s\",\"lines\":[",
	       o->sea ? (rng_percent(r, 50) ? "FOB" : "CIF") : (rng_percent(r, 70) ? "FCA" : "CPT"),
	       cny ? "CNY" : "USD", date);
	for (unsigned i = 0; i < nlines; i++) {
		bool own = rng_percent(r, 85);
		bool use_chili = own == o->g->chili_first;
		const struct product *p = use_chili ? &chili[rng_below(r, NELEM(chili))]
		                                    : &coffee[rng_below(r, NELEM(coffee))];
		unsigned steps = (p->qty_max - p->qty_min) / p->qty_step + 1;
		unsigned qty = p->qty_min + rng_below(r, steps) * p->qty_step;
		unsigned cents = (unsigned)rng_range(r, p->cents_min, p->cents_max);

		if (cny)
			cents = cents * 72 / 10; /* about 7.2 CNY to the dollar */
		ob_add(o->ob,
		       "%s{\"sku\":\"%s\",\"product\":\"%s\",\"hs_code\":\"%s\",\"quantity\":%u,"
		       "\"unit\":\"%s\",\"unit_price\":%u.%02u}",
		       i ? "," : "", p->sku, p->name, p->hs_code, qty, p->unit, cents / 100,
		       cents % 100);
	}
	ob_add(o->ob, "]");
	ev_end(o);
}

/* document.issued for the whole order or for its shipment. */
static void gen_document(struct order_ctx *o, int64_t t, const char *doc, const char *prefix,
                         bool shipment)
{
	ev_begin(o, "document.issued", t, KIGALI, shipment);
	ob_add(o->ob, ",\"document\":\"%s\",\"number\":\"%s-%" PRIu64 "-%05u\"", doc, prefix,
	       o->ord, rng_below(&o->rng, 100000));
	ob_add(o->ob, ",\"note\":\"Issued in Kigali; scanned copy sent to the buyer\"");
	ev_end(o);
}

/* shipment.booked by air or sea, with carrier, tracking and eta. */
static void gen_booked(struct order_ctx *o, int64_t t, int64_t eta)
{
	struct rng *r = &o->rng;
	unsigned c = o->carrier;
	char when[TIME_BUF];

	ev_begin(o, "shipment.booked", t, KIGALI, true);
	format_time(when, sizeof(when), eta, CHINA);
	if (o->sea) {
		ob_add(o->ob,
		       ",\"mode\":\"sea\",\"carrier\":\"%s\",\"tracking\":\"%s%07u\","
		       "\"note\":\"20 ft dry container, trucked Kigali to port\"",
		       sea_carriers[c], sea_prefixes[c], rng_below(r, 10000000));
	} else {
		ob_add(o->ob,
		       ",\"mode\":\"air\",\"carrier\":\"%s\",\"tracking\":\"%s-%08u\","
		       "\"note\":\"Perishable handling, keep dry\"",
		       air_carriers[c], air_prefixes[c], rng_below(r, 100000000));
	}
	ob_add(o->ob, ",\"consignee\":\"%s\",\"eta\":\"%s\"", o->buyer->name, when);
	ev_end(o);
}

/* A shipment milestone with an optional location and note. */
static void gen_milestone(struct order_ctx *o, const char *type, int64_t t, int off,
                          const struct place *at, const char *note)
{
	ev_begin(o, type, t, off, true);
	if (at != NULL)
		ev_location(o, at->code, at->name);
	if (note != NULL)
		ob_add(o->ob, ",\"note\":\"%s\"", note);
	ev_end(o);
}

/*
 * Write order number ord's events into ob.  The order's time line starts
 * at base plus a spread of twelve days and ends at most 45 days later,
 * so with base at least 60 days ago every occurred_at is in the past.
 */
static void gen_order(const struct gen *g, uint64_t ord, struct order_buf *ob)
{
	struct order_ctx o = {.g = g, .ob = ob, .ord = ord};
	struct rng *r = &o.rng;
	const struct place *arr;
	int64_t t, eta;

	o.rng.s = g->seed ^ (ord * UINT64_C(0xd1b54a32d192ed03));
	rng_next(r);
	snprintf(o.order_ref, sizeof(o.order_ref), "ORD-%s-%06" PRIu64, g->run_id, ord);
	snprintf(o.ship_ref, sizeof(o.ship_ref), "%s/S1", o.order_ref);
	o.buyer = &buyers[rng_below(r, NELEM(buyers))];
	o.sea = rng_percent(r, 30);
	o.carrier = rng_below(r, 4); /* all four carrier tables have four rows */
	o.erp_no = 1 + (unsigned)(ord % 99999);
	ob->len = 0;
	ob->n = 0;
	ob->next = 0;

	t = g->base_s + (int64_t)((ord * 97) % (uint64_t)(12 * DAY)) + rng_range(r, 0, 59);
	gen_created(&o, t);
	t += DAY + rng_range(r, 0, 8 * HOUR);
	gen_document(&o, t, "phytosanitary", "RW-NAEB-PC", true);
	t += rng_range(r, HOUR, 6 * HOUR);
	gen_document(&o, t, "certificate_of_origin", "RW-RRA-COO", false);
	t += rng_range(r, 2 * HOUR, 12 * HOUR);
	eta = t + (o.sea ? 30 * DAY : 3 * DAY);
	gen_booked(&o, t, eta);
	t += DAY + rng_range(r, 0, 10 * HOUR);
	gen_milestone(&o, "shipment.export_cleared", t, KIGALI, &kigali_platform,
	              "Export declaration accepted by RRA customs");
	if (o.sea) {
		t += 3 * DAY + rng_range(r, 0, DAY);
		char note[128];
		snprintf(note, sizeof(note), "Loaded on %s, voyage %03u%c, 1 x 20 ft container",
		         sea_vessels[o.carrier], 100 + rng_below(r, 800), "EW"[rng_below(r, 2)]);
		gen_milestone(&o, "shipment.departed", t, 180,
		              &sea_departures[rng_below(r, NELEM(sea_departures))], note);
		t += rng_range(r, 24 * DAY, 32 * DAY);
		arr = &sea_arrivals[rng_below(r, NELEM(sea_arrivals))];
	} else {
		t += rng_range(r, 4 * HOUR, 20 * HOUR);
		char note[128];
		snprintf(note, sizeof(note), "Flight %s %u %s, %u pieces, %u kg chargeable",
		         air_flights[o.carrier], 300 + rng_below(r, 600), air_hubs[o.carrier],
		         4 + rng_below(r, 60), 120 + rng_below(r, 3000));
		gen_milestone(&o, "shipment.departed", t, KIGALI, &kigali_airport, note);
		t += rng_range(r, 14 * HOUR, 30 * HOUR);
		arr = &air_arrivals[rng_below(r, NELEM(air_arrivals))];
	}
	gen_milestone(&o, "shipment.arrived", t, CHINA, arr,
	              o.sea ? "Discharged, container at the terminal yard"
	                    : "Received by the cargo terminal, awaiting customs");
	if (rng_percent(r, HOLD_PERCENT)) {
		t += rng_range(r, 2 * HOUR, 10 * HOUR);
		ev_begin(&o, "shipment.customs_hold", t, CHINA, true);
		ob_add(ob, ",\"stage\":\"import\",\"reason\":\"%s\"",
		       hold_reasons[rng_below(r, NELEM(hold_reasons))]);
		ev_location(&o, arr->code, arr->name);
		ev_end(&o);
		t += rng_range(r, DAY, 3 * DAY);
		ev_begin(&o, "shipment.customs_released", t, CHINA, true);
		ob_add(ob, ",\"stage\":\"import\"");
		ev_end(&o);
	}
	t += rng_range(r, 4 * HOUR, 30 * HOUR);
	gen_milestone(&o, "shipment.import_cleared", t, CHINA, arr,
	              "Import declaration released by China Customs");
	t += rng_range(r, 10 * HOUR, 30 * HOUR);
	{
		struct place city = {o.buyer->locode, o.buyer->city};
		gen_milestone(&o, "shipment.out_for_delivery", t, CHINA, &city,
		              "Bonded truck, temperature logger on board");
	}
	t += rng_range(r, 3 * HOUR, 9 * HOUR);
	ev_begin(&o, "shipment.delivered", t, CHINA, true);
	ob_add(ob, ",\"received_by\":\"%s\"", receivers[rng_below(r, NELEM(receivers))]);
	ev_location(&o, o.buyer->locode, o.buyer->warehouse);
	ev_end(&o);

	/* Out of order on the wire: swap two neighbours, times unchanged. */
	if (rng_percent(r, SWAP_PERCENT)) {
		unsigned k = rng_below(r, ob->n - 1);
		struct gen_event tmp = ob->ev[k];
		ob->ev[k] = ob->ev[k + 1];
		ob->ev[k + 1] = tmp;
	}
}

/* Set up the shared order source. */
static void gen_init(struct gen *g, const struct options *opt)
{
	memset(g, 0, sizeof(*g));
	g->run_id = opt->run_id;
	g->chili_first = strstr(opt->exporter, "chili") != NULL;
	/* Whole UTC days, so that --out and a run on the same day with the
	 * same --run-id and --seed produce the same bytes. */
	g->base_s = (int64_t)time(NULL) - 60 * DAY;
	g->base_s -= g->base_s % DAY;
	g->seed = opt->seed;
	g->remaining = opt->events;
}

/* Fill ob with the next order, cut to the budget; false when the budget is spent. */
static bool gen_next(struct gen *g, struct order_buf *ob)
{
	if (g->remaining == 0)
		return false;
	gen_order(g, g->next_order++, ob);
	if (ob->n > g->remaining)
		ob->n = (unsigned)g->remaining;
	if (g->remaining != UINT64_MAX)
		g->remaining -= ob->n;
	g->orders++;
	g->events += ob->n;
	for (unsigned i = 0; i < ob->n; i++)
		g->bytes += ob->ev[i].len;
	return true;
}

/* ---------------------------------------------------------------------- */
/* Latency histogram: exact below 256 us, then 128 sub-buckets per octave. */

struct hist {
	uint64_t count[HIST_BUCKETS];
	uint64_t n;
	uint64_t sum_us;
	uint64_t max_us;
};

/* The bucket of a value in microseconds. */
static unsigned hist_index(uint64_t v)
{
	unsigned b, shift;

	if (v < (1u << HIST_EXACT_BITS))
		return (unsigned)v;
	b = 63u - (unsigned)__builtin_clzll(v); /* floor(log2 v), at least 8 */
	shift = b - (HIST_EXACT_BITS - 1);      /* v >> shift is in [128, 256) */
	if (shift > HIST_OCTAVES)
		return HIST_BUCKETS - 1;
	return (1u << HIST_EXACT_BITS) + (shift - 1) * HIST_SUB +
	       (unsigned)((v >> shift) - HIST_SUB);
}

/* The highest value that falls into bucket i. */
static uint64_t hist_upper(unsigned i)
{
	unsigned shift;

	if (i < (1u << HIST_EXACT_BITS))
		return i;
	i -= 1u << HIST_EXACT_BITS;
	shift = i / HIST_SUB + 1;
	return ((uint64_t)(i % HIST_SUB + HIST_SUB + 1) << shift) - 1;
}

/* Record one latency in nanoseconds. */
static void hist_add(struct hist *h, int64_t ns)
{
	uint64_t us = ns > 0 ? (uint64_t)(ns / NS_PER_US) : 0;

	h->count[hist_index(us)]++;
	h->n++;
	h->sum_us += us;
	if (us > h->max_us)
		h->max_us = us;
}

/*
 * The value at quantile q (0..1) in milliseconds, never above the maximum:
 * the nearest rank, the smallest value with at least q of all at or below
 * it (the ceil(q n)-th), as the bucket's upper end.  The tolerance keeps a
 * product such as 0.9 x 10 from rounding up to the next rank.
 */
static double hist_quantile_ms(const struct hist *h, double q)
{
	double want = q * (double)h->n - 1e-6;
	uint64_t rank, seen = 0;

	if (h->n == 0)
		return 0;
	rank = want > 0 ? (uint64_t)want : 0; /* 0-based: ceil(want) - 1 */
	if (rank >= h->n)
		rank = h->n - 1;
	for (unsigned i = 0; i < HIST_BUCKETS; i++) {
		seen += h->count[i];
		if (seen > rank) {
			uint64_t v = hist_upper(i);
			return (double)(v < h->max_us ? v : h->max_us) / 1000.0;
		}
	}
	return (double)h->max_us / 1000.0;
}

/* ---------------------------------------------------------------------- */
/* Connections */

/*
 * A connection's life.  Every change goes through lconn_set_state().
 */
enum lconn_state {
	LC_CONNECTING, /* TCP connect under way; exits: HELLO, FAILED */
	LC_HELLO,      /* hello sent, waiting for welcome; exits: READY, FAILED */
	LC_READY,      /* welcomed, waiting for the others; exits: RUNNING, FAILED */
	LC_RUNNING,    /* sending and reading acks; exits: DONE, FAILED */
	LC_DONE,       /* every event it sent was answered, socket closed; final */
	LC_FAILED,     /* the socket failed or the daemon refused us; final */
	LC_MAX
};

/* An event sent and not yet answered. */
struct inflight {
	int64_t start_ns; /* queued (closed loop) or intended (open loop) send time */
	uint32_t id_len;
	char id[ID_CAP];
};

struct loader;

/* One client connection to the daemon. */
struct lconn {
	struct loader *lc_ld;
	unsigned lc_id;
	enum lconn_state lc_state;
	struct bufferevent *lc_bev;
	struct event lc_send_ev; /* open loop: wakes up when the next event is due */
	struct inflight *lc_ring;
	uint64_t lc_sent, lc_answered; /* sequence numbers; lc_ring[seq % window] */
	struct order_buf *lc_obs;      /* opt->open_orders of them, sent from in turn */
	unsigned lc_cur;               /* the one the next event comes from */
	bool lc_gen_done;              /* the shared sequence has no order left for it */
	bool lc_exhausted;             /* no event left to send on this connection */
};

/* The whole run. */
struct loader {
	const struct options *opt;
	struct event_base *base;
	struct gen gen;
	struct lconn *conns;
	char *hello;
	size_t hello_len;
	unsigned n_ready, n_closed;
	bool started, stop_sending, interrupted, stalled, failed;
	int64_t t_start, t_end, t_last_ack;
	uint64_t sent, bytes_sent, stored, duplicate, errors, mismatched, unexpected;
	unsigned errors_shown;
	struct hist hist;
	struct hist sec_hist; /* -v: the replies of the current second only */
	struct event tick_ev; /* once a second: progress and the watchdog */
	struct event send_ev; /* open loop with --tick-us: pump every connection */
	struct event stop_ev; /* closed loop with --duration: stop sending */
	struct event sigint_ev;
	unsigned ticks, quiet_ticks;
	uint64_t last_acked;
};

static void lconn_pump(struct lconn *c);
static void lconn_finish(struct lconn *c, enum lconn_state final, const char *reason);
static void loader_start(struct loader *ld);
static void loader_maybe_end(struct loader *ld);

/* The name of a connection state, for messages. */
static const char *lconn_state_name(enum lconn_state s)
{
	static const char *const names[LC_MAX] = {"connecting", "hello", "ready",
	                                          "running",    "done",  "failed"};

	return s < LC_MAX ? names[s] : "?";
}

/* Move a connection to a new state; in verbose mode, say so. */
static void lconn_set_state(struct lconn *c, enum lconn_state s)
{
	if (s >= LC_MAX)
		abort();
	if (c->lc_ld->opt->verbose)
		fprintf(stderr, "conn %u: %s -> %s\n", c->lc_id, lconn_state_name(c->lc_state),
		        lconn_state_name(s));
	c->lc_state = s;
}

/* Events sent on this connection and not answered yet. */
static unsigned lconn_unacked(const struct lconn *c)
{
	return (unsigned)(c->lc_sent - c->lc_answered);
}

/* Events acked or refused so far over all connections. */
static uint64_t loader_answered(const struct loader *ld)
{
	return ld->stored + ld->duplicate + ld->errors + ld->mismatched;
}

/* Compare a scanned reply value with a C string. */
static bool val_is(const char *v, size_t vlen, const char *s)
{
	return vlen == strlen(s) && memcmp(v, s, vlen) == 0;
}

/*
 * Find the string value of "key" in a reply line, which the daemon writes
 * as a flat JSON object.  Keys come before values that might quote them,
 * so the first match is the key.  False when absent or not a string.
 */
static bool reply_str(const char *line, size_t len, const char *key, const char **val, size_t *vlen)
{
	size_t klen = strlen(key);
	const char *end = line + len;
	const char *p = line;

	while ((p = memchr(p, '"', (size_t)(end - p))) != NULL) {
		const char *q = p + 1 + klen;
		if (q < end && memcmp(p + 1, key, klen) == 0 && *q == '"') {
			q++;
			while (q < end && *q == ' ')
				q++;
			if (q < end && *q == ':') {
				q++;
				while (q < end && *q == ' ')
					q++;
				if (q >= end || *q != '"')
					return false;
				const char *s = ++q;
				while (q < end && *q != '"')
					q += (*q == '\\' && q + 1 < end) ? 2 : 1;
				if (q >= end)
					return false;
				*val = s;
				*vlen = (size_t)(q - s);
				return true;
			}
		}
		p++;
	}
	return false;
}

/* Print one reply that was not a plain ack, for the first few only. */
static void loader_show(struct loader *ld, const struct lconn *c, const char *what,
                        const char *line, size_t len, const char *expect)
{
	if (ld->errors_shown >= ERRORS_SHOWN)
		return;
	ld->errors_shown++;
	fprintf(stderr, "conn %u: %s (expected the reply to %s): %.*s\n", c->lc_id, what,
	        expect != NULL ? expect : "-", (int)len, line);
	if (ld->errors_shown == ERRORS_SHOWN)
		fprintf(stderr, "(further error replies are only counted)\n");
}

/* Handle the reply to the oldest event in flight. */
static void lconn_event_reply(struct lconn *c, const char *line, size_t len, int64_t now)
{
	struct loader *ld = c->lc_ld;
	const char *type, *id, *result;
	size_t type_len, id_len, result_len;
	struct inflight *f;

	if (lconn_unacked(c) == 0) {
		ld->unexpected++;
		loader_show(ld, c, "reply with no event in flight", line, len, NULL);
		return;
	}
	f = &c->lc_ring[c->lc_answered % ld->opt->window];
	c->lc_answered++;
	hist_add(&ld->hist, now - f->start_ns);
	if (ld->opt->verbose)
		hist_add(&ld->sec_hist, now - f->start_ns);
	ld->t_last_ack = now;

	if (!reply_str(line, len, "type", &type, &type_len)) {
		ld->errors++;
		loader_show(ld, c, "reply without a type", line, len, f->id);
		return;
	}
	bool has_id = reply_str(line, len, "id", &id, &id_len);
	if (has_id && (id_len != f->id_len || memcmp(id, f->id, id_len) != 0)) {
		/* Replies must come in line order; this one does not. */
		ld->mismatched++;
		loader_show(ld, c, "reply for another event", line, len, f->id);
		return;
	}
	if (val_is(type, type_len, "ack") && reply_str(line, len, "result", &result, &result_len)) {
		if (val_is(result, result_len, "stored")) {
			ld->stored++;
			return;
		}
		if (val_is(result, result_len, "duplicate")) {
			ld->duplicate++;
			return;
		}
	}
	ld->errors++;
	loader_show(ld, c, "error reply", line, len, f->id);
}

/* Handle one reply line. */
static void lconn_reply(struct lconn *c, const char *line, size_t len, int64_t now)
{
	struct loader *ld = c->lc_ld;
	const char *type;
	size_t type_len;

	switch (c->lc_state) {
	case LC_HELLO:
		if (!reply_str(line, len, "type", &type, &type_len) ||
		    !val_is(type, type_len, "welcome")) {
			fprintf(stderr, "conn %u: hello refused: %.*s\n", c->lc_id, (int)len, line);
			lconn_finish(c, LC_FAILED, "hello refused");
			return;
		}
		if (ld->opt->verbose)
			fprintf(stderr, "conn %u: %.*s\n", c->lc_id, (int)len, line);
		lconn_set_state(c, LC_READY);
		ld->n_ready++;
		if (ld->n_ready == ld->opt->connections)
			loader_start(ld);
		return;
	case LC_RUNNING:
		lconn_event_reply(c, line, len, now);
		return;
	default:
		ld->unexpected++;
		loader_show(ld, c, "reply before the run started", line, len, NULL);
		return;
	}
}

/* Read callback: handle every whole reply line, then send more. */
static void lconn_read_cb(struct bufferevent *bev, void *arg)
{
	struct lconn *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	int64_t now = mono_ns(); /* one clock read serves every reply of this wake-up */
	char line[REPLY_MAX];

	for (;;) {
		struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, NULL, EVBUFFER_EOL_LF);
		if (eol.pos < 0)
			break;
		size_t n = (size_t)eol.pos;
		size_t take = n < sizeof(line) ? n : sizeof(line);
		if (evbuffer_remove(in, line, take) != (int)take)
			abort();
		evbuffer_drain(in, n - take + 1);
		lconn_reply(c, line, take, now);
		if (c->lc_state != LC_RUNNING && c->lc_state != LC_HELLO)
			return; /* finished, or waiting for the other connections */
	}
	if (c->lc_state == LC_RUNNING)
		lconn_pump(c);
}

/* Connected, refused, closed or broken. */
static void lconn_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct lconn *c = arg;
	struct loader *ld = c->lc_ld;
	char reason[160];

	if (what & BEV_EVENT_CONNECTED) {
		int one = 1;
		/* Small pipelined writes must not wait for acks (Nagle). */
		if (setsockopt(bufferevent_getfd(bev), IPPROTO_TCP, TCP_NODELAY, &one,
		               sizeof(one)) != 0)
			fprintf(stderr, "conn %u: TCP_NODELAY: %s\n", c->lc_id, strerror(errno));
		bufferevent_write(bev, ld->hello, ld->hello_len);
		lconn_set_state(c, LC_HELLO);
		return;
	}
	if (what & BEV_EVENT_EOF)
		snprintf(reason, sizeof(reason), "the daemon closed the connection");
	else
		snprintf(reason, sizeof(reason), "%s",
		         evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	lconn_finish(c, LC_FAILED, reason);
}

/* Open loop: the next event may be due. */
static void lconn_send_cb(evutil_socket_t fd, short what, void *arg)
{
	lconn_pump(arg);
}

/* Open loop: when the j-th event of this connection is meant to leave. */
static int64_t lconn_intended(const struct lconn *c, uint64_t j)
{
	const struct loader *ld = c->lc_ld;
	double slot = (double)j * ld->opt->connections + c->lc_id;

	return ld->t_start + (int64_t)(slot * 1e9 / ld->opt->rate);
}

/*
 * The order the next event comes from, refilled from the shared sequence
 * when it is spent; NULL when no open order has an event left.  Each call
 * starts at lc_cur, which the caller moves on after every event, so with
 * several open orders their events go out interleaved, one at a time.
 */
static struct order_buf *lconn_next_order(struct lconn *c)
{
	struct loader *ld = c->lc_ld;
	unsigned k = ld->opt->open_orders;

	for (unsigned tried = 0; tried < k; tried++) {
		struct order_buf *ob = &c->lc_obs[c->lc_cur];
		if (ob->next < ob->n)
			return ob;
		if (!c->lc_gen_done && (ld->stop_sending || !gen_next(&ld->gen, ob)))
			c->lc_gen_done = true;
		if (ob->next < ob->n)
			return ob;
		c->lc_cur = (c->lc_cur + 1) % k;
	}
	c->lc_exhausted = true;
	return NULL;
}

/*
 * Send what the window and, in open loop, the schedule allow.  At most a
 * window's worth per call; the rest comes from the next ack or timer.
 */
static void lconn_pump(struct lconn *c)
{
	struct loader *ld = c->lc_ld;
	unsigned window = ld->opt->window;

	struct order_buf *ob;

	while (c->lc_state == LC_RUNNING && lconn_unacked(c) < window &&
	       (ob = lconn_next_order(c)) != NULL) {
		int64_t now = mono_ns();
		int64_t start = now;
		if (ld->opt->rate > 0) {
			start = lconn_intended(c, c->lc_sent);
			if (start > now && ld->opt->tick_us > 0)
				break; /* the loader's send tick comes back */
			if (start > now) {
				int64_t us = (start - now + NS_PER_US - 1) / NS_PER_US;
				struct timeval tv = {(time_t)(us / 1000000),
				                     (suseconds_t)(us % 1000000)};
				evtimer_add(&c->lc_send_ev, &tv);
				break;
			}
		}
		struct gen_event *e = &ob->ev[ob->next++];
		c->lc_cur = (c->lc_cur + 1) % ld->opt->open_orders;
		struct inflight *f = &c->lc_ring[c->lc_sent % window];
		f->start_ns = start;
		f->id_len = e->id_len;
		memcpy(f->id, e->id, e->id_len + 1);
		bufferevent_write(c->lc_bev, ob->data + e->off, e->len);
		c->lc_sent++;
		ld->sent++;
		ld->bytes_sent += e->len;
	}
	if (c->lc_state == LC_RUNNING && lconn_unacked(c) == 0 && c->lc_exhausted)
		lconn_finish(c, LC_DONE, NULL);
}

/* The one way a connection ends: close the socket; a failure fails the run. */
static void lconn_finish(struct lconn *c, enum lconn_state final, const char *reason)
{
	struct loader *ld = c->lc_ld;
	enum lconn_state was = c->lc_state;

	if (was == LC_DONE || was == LC_FAILED)
		return;
	if (final == LC_FAILED) {
		unsigned unacked = lconn_unacked(c);
		ld->failed = true;
		fprintf(stderr, "conn %u: %s while %s", c->lc_id, reason, lconn_state_name(was));
		if (was == LC_RUNNING)
			fprintf(stderr, ", %u events unanswered", unacked);
		fputc('\n', stderr);
	}
	if (was == LC_READY)
		ld->n_ready--;
	evtimer_del(&c->lc_send_ev);
	if (c->lc_bev != NULL) {
		bufferevent_free(c->lc_bev);
		c->lc_bev = NULL;
	}
	lconn_set_state(c, final);
	ld->n_closed++;
	if (!ld->started && final == LC_FAILED) {
		/* A run with fewer connections than asked would measure the
		 * wrong thing: give up. */
		event_base_loopbreak(ld->base);
		return;
	}
	loader_maybe_end(ld);
}

/* Start connecting. */
static void lconn_open(struct loader *ld, struct lconn *c, unsigned id, const struct sockaddr *sa,
                       socklen_t salen)
{
	c->lc_ld = ld;
	c->lc_id = id;
	c->lc_state = LC_CONNECTING;
	c->lc_ring = xcalloc(ld->opt->window, sizeof(*c->lc_ring));
	c->lc_obs = xcalloc(ld->opt->open_orders, sizeof(*c->lc_obs));
	evtimer_assign(&c->lc_send_ev, ld->base, lconn_send_cb, c);
	c->lc_bev = bufferevent_socket_new(ld->base, -1, BEV_OPT_CLOSE_ON_FREE);
	if (c->lc_bev == NULL)
		abort();
	bufferevent_setcb(c->lc_bev, lconn_read_cb, NULL, lconn_event_cb, c);
	bufferevent_enable(c->lc_bev, EV_READ | EV_WRITE);
	if (bufferevent_socket_connect(c->lc_bev, (struct sockaddr *)sa, (int)salen) != 0)
		lconn_finish(c, LC_FAILED, "connect failed");
}

/* ---------------------------------------------------------------------- */
/* The run */

/* Every connection is welcomed: start the clock and send. */
/* Open loop: the send tick pumps every connection that is running. */
static void loader_send_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loader *ld = arg;
	(void)fd;
	(void)what;
	for (unsigned i = 0; i < ld->opt->connections; i++)
		if (ld->conns[i].lc_state == LC_RUNNING)
			lconn_pump(&ld->conns[i]);
}

static void loader_start(struct loader *ld)
{
	ld->started = true;
	ld->t_start = mono_ns();
	ld->t_last_ack = ld->t_start;
	if (ld->opt->duration > 0 && ld->opt->rate == 0) {
		struct timeval tv = {
		    (time_t)ld->opt->duration,
		    (suseconds_t)((ld->opt->duration - (double)(time_t)ld->opt->duration) * 1e6)};
		evtimer_add(&ld->stop_ev, &tv);
	}
	if (ld->opt->rate > 0 && ld->opt->tick_us > 0) {
		struct timeval tick = {(time_t)(ld->opt->tick_us / 1000000),
		                       (suseconds_t)(ld->opt->tick_us % 1000000)};
		event_add(&ld->send_ev, &tick);
	}
	for (unsigned i = 0; i < ld->opt->connections; i++) {
		struct lconn *c = &ld->conns[i];
		if (c->lc_state != LC_READY)
			continue;
		lconn_set_state(c, LC_RUNNING);
		lconn_pump(c);
	}
}

/* End the loop once every connection has closed. */
static void loader_maybe_end(struct loader *ld)
{
	if (ld->n_closed < ld->opt->connections)
		return;
	ld->t_end = ld->t_last_ack;
	event_base_loopexit(ld->base, NULL);
}

/* Closed loop with --duration: time is up, send nothing new. */
static void loader_stop_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loader *ld = arg;

	ld->stop_sending = true;
	for (unsigned i = 0; i < ld->opt->connections; i++)
		lconn_pump(&ld->conns[i]);
}

/* Print why each connection is where it is, after a stall or timeout. */
static void loader_dump(const struct loader *ld)
{
	for (unsigned i = 0; i < ld->opt->connections; i++) {
		const struct lconn *c = &ld->conns[i];
		size_t out = 0, in = 0;
		if (c->lc_bev != NULL) {
			out = evbuffer_get_length(bufferevent_get_output(c->lc_bev));
			in = evbuffer_get_length(bufferevent_get_input(c->lc_bev));
		}
		fprintf(stderr,
		        "  conn %u: %s, sent %" PRIu64 ", answered %" PRIu64
		        ", unanswered %u, output buffer %zu bytes, input buffer %zu bytes\n",
		        c->lc_id, lconn_state_name(c->lc_state), c->lc_sent, c->lc_answered,
		        lconn_unacked(c), out, in);
	}
}

/* Once a second: progress in verbose mode, and the watchdog. */
static void loader_tick_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loader *ld = arg;
	uint64_t answered = loader_answered(ld);
	uint64_t inflight = ld->sent - answered;

	ld->ticks++;
	if (!ld->started) {
		if (ld->ticks >= CONNECT_LIMIT_S) {
			fprintf(stderr,
			        "ordertrack-load: only %u of %u connections welcomed after %d s\n",
			        ld->n_ready, ld->opt->connections, CONNECT_LIMIT_S);
			loader_dump(ld);
			ld->failed = true;
			event_base_loopbreak(ld->base);
		}
		return;
	}
	if (ld->opt->verbose) {
		/* Per second, so a stall shows when it happened, not only in
		 * the run's tail. */
		const struct hist *h = &ld->sec_hist;
		fprintf(stderr,
		        "%6.1f s  answered %10" PRIu64 "  last second %8" PRIu64
		        "/s  in flight %6" PRIu64 "  latency ms p50 %.2f p99 %.2f max %.2f\n",
		        (double)(mono_ns() - ld->t_start) / 1e9, answered,
		        answered - ld->last_acked, inflight, hist_quantile_ms(h, 0.50),
		        hist_quantile_ms(h, 0.99), (double)h->max_us / 1000.0);
		memset(&ld->sec_hist, 0, sizeof(ld->sec_hist));
	}
	if (answered == ld->last_acked && inflight > 0)
		ld->quiet_ticks++;
	else
		ld->quiet_ticks = 0;
	ld->last_acked = answered;
	if (ld->opt->timeout_s > 0 && ld->quiet_ticks >= ld->opt->timeout_s) {
		fprintf(stderr,
		        "ordertrack-load: stalled: no reply for %u s with %" PRIu64
		        " events in flight\n",
		        ld->quiet_ticks, inflight);
		loader_dump(ld);
		ld->stalled = true;
		ld->t_end = mono_ns();
		event_base_loopbreak(ld->base);
	}
}

/* SIGINT: stop and report what was measured so far. */
static void loader_sigint_cb(evutil_socket_t fd, short what, void *arg)
{
	struct loader *ld = arg;

	ld->interrupted = true;
	ld->t_end = mono_ns();
	event_base_loopbreak(ld->base);
}

/* Build the hello line once; the token may hold anything, so jansson escapes it. */
static void loader_make_hello(struct loader *ld)
{
	json_t *h = json_pack("{s:s, s:s, s:s}", "type", "hello", "exporter", ld->opt->exporter,
	                      "token", ld->opt->token);
	char *s;

	if (h == NULL)
		fatalx("the exporter and the token (%s) must be valid UTF-8", ld->opt->token_from);
	s = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(h);
	if (s == NULL)
		abort();
	ld->hello_len = strlen(s) + 1;
	ld->hello = xcalloc(ld->hello_len + 1, 1);
	memcpy(ld->hello, s, ld->hello_len - 1);
	ld->hello[ld->hello_len - 1] = '\n';
	free(s);
}

/* Resolve the daemon's address; exits on failure. */
static void resolve(const struct options *opt, struct sockaddr_storage *ss, socklen_t *len)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res;
	char port[16];
	int rc;

	snprintf(port, sizeof(port), "%d", opt->port);
	rc = getaddrinfo(opt->host, port, &hints, &res);
	if (rc != 0)
		fatalx("%s: %s", opt->host, gai_strerror(rc));
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	*len = res->ai_addrlen;
	freeaddrinfo(res);
}

/* Print the result as text or as one JSON object; returns the exit status. */
static int loader_report(struct loader *ld)
{
	const struct options *opt = ld->opt;
	uint64_t answered = loader_answered(ld);
	uint64_t acked = ld->stored + ld->duplicate;
	/* Every reply to an event counts in answered, so the rest of what was
	 * sent went unanswered: a connection died with them in flight, or the
	 * run stalled or was interrupted before their replies came. */
	uint64_t unanswered = ld->sent - answered;
	double elapsed = ld->started ? (double)(ld->t_end - ld->t_start) / 1e9 : 0;
	double eps = elapsed > 0 ? (double)acked / elapsed : 0;
	uint64_t unsent =
	    opt->events != UINT64_MAX && opt->events > ld->sent ? opt->events - ld->sent : 0;
	bool complete = !ld->interrupted && !ld->stalled && !ld->failed && ld->started &&
	                answered == ld->sent && (opt->duration > 0 || unsent == 0);
	bool ok = complete && ld->errors == 0 && ld->mismatched == 0 && ld->unexpected == 0 &&
	          unanswered == 0;
	double bpe = ld->sent > 0 ? (double)ld->bytes_sent / (double)ld->sent : 0;
	double p50 = hist_quantile_ms(&ld->hist, 0.50), p90 = hist_quantile_ms(&ld->hist, 0.90);
	double p99 = hist_quantile_ms(&ld->hist, 0.99), p999 = hist_quantile_ms(&ld->hist, 0.999);
	double max = (double)ld->hist.max_us / 1000.0;
	double mean = ld->hist.n ? (double)ld->hist.sum_us / (double)ld->hist.n / 1000.0 : 0;

	if (opt->json) {
		json_t *o = json_pack(
		    "{s:s, s:s, s:i, s:i, s:i, s:I, s:f, s:I, s:I, s:I, s:I, s:I, s:I, s:I, s:I, "
		    "s:f, "
		    "s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:b, s:b}",
		    "run_id", opt->run_id, "exporter", opt->exporter, "connections",
		    (int)opt->connections, "window", (int)opt->window, "open_orders",
		    (int)opt->open_orders, "orders", (json_int_t)ld->gen.orders, "rate", opt->rate,
		    "sent", (json_int_t)ld->sent, "acked", (json_int_t)acked, "stored",
		    (json_int_t)ld->stored, "duplicate", (json_int_t)ld->duplicate, "errors",
		    (json_int_t)(ld->errors + ld->mismatched + ld->unexpected), "lost",
		    (json_int_t)(unanswered + unsent), "bytes_sent", (json_int_t)ld->bytes_sent,
		    "unsent", (json_int_t)unsent, "elapsed_s", elapsed, "events_per_s", eps,
		    "bytes_per_event", bpe, "latency_p50_ms", p50, "latency_p90_ms", p90,
		    "latency_p99_ms", p99, "latency_p999_ms", p999, "latency_max_ms", max,
		    "latency_mean_ms", mean, "complete", complete, "ok", ok);
		if (o == NULL)
			abort();
		json_dumpf(o, stdout, JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
		fputc('\n', stdout);
		json_decref(o);
	} else if (!ld->started) {
		fprintf(
		    stderr,
		    "ordertrack-load: no run: %u of %u connections were welcomed by %s port %d\n",
		    ld->n_ready, opt->connections, opt->host, opt->port);
	} else {
		printf("ordertrack-load: run %s, %u connections, window %u, ", opt->run_id,
		       opt->connections, opt->window);
		if (opt->rate > 0)
			printf("open loop at %.0f events/s\n", opt->rate);
		else
			printf("closed loop\n");
		printf("  sent        %" PRIu64 " events in %" PRIu64 " orders, %.0f bytes each\n",
		       ld->sent, ld->gen.orders, bpe);
		printf("  acked       %" PRIu64 " (stored %" PRIu64 ", duplicate %" PRIu64 ")\n",
		       acked, ld->stored, ld->duplicate);
		printf("  errors      %" PRIu64 " error replies, %" PRIu64 " out of order, %" PRIu64
		       " unexpected, %" PRIu64 " lost, %" PRIu64 " not sent\n",
		       ld->errors, ld->mismatched, ld->unexpected, unanswered, unsent);
		printf("  elapsed     %.3f s\n", elapsed);
		printf("  throughput  %.0f acked events/s (%.1f MB/s sent)\n", eps,
		       elapsed > 0 ? (double)ld->bytes_sent / elapsed / 1e6 : 0);
		printf(
		    "  latency ms  p50 %.3f  p90 %.3f  p99 %.3f  p99.9 %.3f  max %.3f  mean %.3f\n",
		    p50, p90, p99, p999, max, mean);
		if (ld->interrupted)
			printf("  interrupted: the numbers cover the run so far\n");
		if (ld->stalled)
			printf("  stalled: the daemon stopped answering\n");
	}
	fflush(stdout);
	return ok ? LOAD_EXIT_OK : LOAD_EXIT_FAIL;
}

/* Connect, run, report; returns the exit status. */
static int run_load(const struct options *opt)
{
	struct loader *ld = xcalloc(1, sizeof(*ld));
	struct event_config *cfg;
	struct sockaddr_storage ss;
	socklen_t sslen;
	struct timeval one_s = {1, 0};
	int status;

	ld->opt = opt;
	gen_init(&ld->gen, opt);
	loader_make_hello(ld);
	resolve(opt, &ss, &sslen);
	signal(SIGPIPE, SIG_IGN);

	/* Open-loop schedules need timers finer than a millisecond. */
	cfg = event_config_new();
	if (cfg == NULL)
		abort();
	event_config_set_flag(cfg, EVENT_BASE_FLAG_PRECISE_TIMER);
	ld->base = event_base_new_with_config(cfg);
	event_config_free(cfg);
	if (ld->base == NULL)
		fatalx("cannot create an event base");

	event_assign(&ld->tick_ev, ld->base, -1, EV_PERSIST, loader_tick_cb, ld);
	event_add(&ld->tick_ev, &one_s);
	evtimer_assign(&ld->stop_ev, ld->base, loader_stop_cb, ld);
	event_assign(&ld->send_ev, ld->base, -1, EV_PERSIST, loader_send_cb, ld);
	evsignal_assign(&ld->sigint_ev, ld->base, SIGINT, loader_sigint_cb, ld);
	evsignal_add(&ld->sigint_ev, NULL);

	ld->conns = xcalloc(opt->connections, sizeof(*ld->conns));
	for (unsigned i = 0; i < opt->connections; i++)
		lconn_open(ld, &ld->conns[i], i, (struct sockaddr *)&ss, sslen);

	/* A connect that failed at once already gave up (a loopbreak before
	 * the loop runs would be forgotten). */
	if (ld->n_closed == 0)
		event_base_dispatch(ld->base);
	if (!ld->started)
		ld->failed = true;
	status = loader_report(ld);

	for (unsigned i = 0; i < opt->connections; i++) {
		struct lconn *c = &ld->conns[i];
		evtimer_del(&c->lc_send_ev);
		if (c->lc_bev != NULL)
			bufferevent_free(c->lc_bev);
		free(c->lc_ring);
		free(c->lc_obs);
	}
	event_del(&ld->tick_ev);
	event_del(&ld->send_ev);
	event_del(&ld->stop_ev);
	event_del(&ld->sigint_ev);
	event_base_free(ld->base);
	free(ld->conns);
	free(ld->hello);
	free(ld);
	return status;
}

/* ---------------------------------------------------------------------- */
/* Offline modes */

/* --out: write the events as JSON Lines, the bytes the daemon would get. */
static int run_out(const struct options *opt)
{
	struct gen g;
	struct order_buf *ob = xcalloc(1, sizeof(*ob));
	bool to_stdout = strcmp(opt->out, "-") == 0;
	FILE *f = to_stdout ? stdout : fopen(opt->out, "w");

	if (f == NULL)
		fatalx("%s: %s", opt->out, strerror(errno));
	gen_init(&g, opt);
	while (gen_next(&g, ob))
		for (unsigned i = 0; i < ob->n; i++)
			fwrite(ob->data + ob->ev[i].off, 1, ob->ev[i].len, f);
	if (fflush(f) != 0 || ferror(f) || (!to_stdout && fclose(f) != 0))
		fatalx("%s: write failed: %s", opt->out, strerror(errno));
	fprintf(stderr,
	        "ordertrack-load: wrote %" PRIu64 " events (%" PRIu64 " orders, %" PRIu64
	        " bytes, %.0f per event) to %s\n",
	        g.events, g.orders, g.bytes, g.events ? (double)g.bytes / (double)g.events : 0,
	        opt->out);
	free(ob);
	return LOAD_EXIT_OK;
}

/* Order two latencies for qsort. */
static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/*
 * --self-check of the latency histogram: for samples of several sizes,
 * every percentile the report prints must be the nearest-rank value of a
 * sort of the same samples, up to its bucket's width (1/128 of it above
 * 256 us, exact below).  Returns the number of mismatches.
 */
static unsigned hist_self_check(void)
{
	static const unsigned sizes[] = {1, 2, 3, 10, 100, 999, 1000, 12345, 200000};
	static const unsigned per_mille[] = {500, 900, 990, 999, 1000};
	uint64_t *v = xcalloc(200000, sizeof(*v));
	struct hist *h = xcalloc(1, sizeof(*h));
	struct rng r = {.s = 42};
	unsigned bad = 0;

	for (size_t s = 0; s < NELEM(sizes); s++) {
		uint64_t n = sizes[s];
		memset(h, 0, sizeof(*h));
		for (uint64_t i = 0; i < n; i++) {
			/* Exact microseconds, a body in milliseconds, a tail of seconds. */
			static const uint64_t span[] = {300, 5000, 100000, 10000000};
			v[i] = rng_next(&r) % span[rng_below(&r, NELEM(span))];
			hist_add(h, (int64_t)v[i] * NS_PER_US);
		}
		qsort(v, n, sizeof(*v), cmp_u64);
		for (size_t k = 0; k < NELEM(per_mille); k++) {
			uint64_t rank = (per_mille[k] * n + 999) / 1000; /* ceil(q n), 1-based */
			uint64_t want = v[(rank ? rank : 1) - 1];
			double got = hist_quantile_ms(h, per_mille[k] / 1000.0) * 1000.0;
			double hi = (double)want + (want < 256 ? 0.0 : (double)want / 128.0);
			if (got < (double)want - 0.5 || got > hi + 0.5) {
				if (bad++ < ERRORS_SHOWN)
					fprintf(stderr,
					        "histogram: p%.1f of %" PRIu64
					        " samples is %.0f us,"
					        " a sort says %" PRIu64 " us\n",
					        per_mille[k] / 10.0, n, got, want);
			}
		}
	}
	free(h);
	free(v);
	return bad;
}

/* --self-check: run every event through the daemon's own parser. */
static int run_self_check(const struct options *opt)
{
	struct gen g;
	struct order_buf *ob = xcalloc(1, sizeof(*ob));
	uint64_t bad = 0, by_type[32] = {0};
	const char *type_names[32] = {0};
	size_t min_len = SIZE_MAX, max_len = 0;
	int64_t now = wall_ms();

	gen_init(&g, opt);
	while (gen_next(&g, ob)) {
		for (unsigned i = 0; i < ob->n; i++) {
			const struct gen_event *e = &ob->ev[i];
			struct request rq;
			struct request_error err;
			/* The parser gets the line without its newline, as the framer gives it. */
			size_t len = e->len - 1;

			if (e->len < min_len)
				min_len = e->len;
			if (e->len > max_len)
				max_len = e->len;
			if (!request_parse(ob->data + e->off, len, now, &rq, &err)) {
				if (bad++ < ERRORS_SHOWN)
					fprintf(stderr, "invalid: %s: %s\n  %.*s\n", err.code,
					        err.message, (int)len, ob->data + e->off);
				continue;
			}
			if (rq.kind != REQ_EVENT) {
				bad++;
			} else {
				for (unsigned k = 0; k < 32; k++) {
					if (type_names[k] == NULL)
						type_names[k] = rq.u.event.type;
					if (strcmp(type_names[k], rq.u.event.type) == 0) {
						by_type[k]++;
						break;
					}
				}
			}
			request_clear(&rq);
		}
	}
	printf("self-check: %" PRIu64 " events in %" PRIu64 " orders, %" PRIu64
	       " invalid; bytes per event %.0f (min %zu, max %zu)\n",
	       g.events, g.orders, bad, g.events ? (double)g.bytes / (double)g.events : 0,
	       g.events ? min_len : 0, max_len);
	for (unsigned k = 0; k < 32 && type_names[k] != NULL; k++)
		printf("  %-28s %" PRIu64 "\n", type_names[k], by_type[k]);
	free(ob);
	unsigned hist_bad = hist_self_check();
	printf("self-check: latency percentiles against a sort: %u wrong\n", hist_bad);
	return bad == 0 && hist_bad == 0 ? LOAD_EXIT_OK : LOAD_EXIT_FAIL;
}

/* ---------------------------------------------------------------------- */
/* Command line */

/* Print the options. */
static void usage(FILE *f)
{
	fprintf(f,
	        "usage: ordertrack-load [options]\n"
	        "  -H, --host HOST        daemon address (127.0.0.1)\n"
	        "  -p, --port PORT        daemon port (7433)\n"
	        "  -e, --exporter ID      exporter to say hello as (kivu-coffee)\n"
	        "  -t, --token TOKEN      its token (demo-kivu-token); written over in argv,\n"
	        "                         but ps shows it until then: prefer one of\n"
	        "      --token-file FILE  the token is FILE's first line, or the environment\n"
	        "                         variable OT_LOAD_TOKEN\n"
	        "  -c, --connections N    connections (8)\n"
	        "  -n, --events N         events to send in all (100000)\n"
	        "  -w, --window W         unacked events per connection (500)\n"
	        "  -r, --rate R           open loop: R events/s in all (0: closed loop)\n"
	        "  -d, --duration S       send for S seconds instead of -n events\n"
	        "      --tick-us US       open loop: wake at most every US µs per connection\n"
	        "                         and send all events due (1000; 0: one wake per event)\n"
	        "      --open-orders K    orders each connection has open at once, sending\n"
	        "                         an event of each in turn (1: whole orders, one\n"
	        "                         after another; at most %d)\n"
	        "      --run-id STR       prefix of event ids and order refs (pid and time)\n"
	        "      --seed N           random seed of the generated orders (1)\n"
	        "      --timeout S        give up after S seconds without a reply (60, 0: never)\n"
	        "      --json             print the result as one JSON object\n"
	        "      --out FILE         write the events to FILE ('-': stdout) and exit\n"
	        "      --dry-run          the same as --out -\n"
	        "      --self-check       check every event with the daemon's parser, and the\n"
	        "                         latency percentiles against a sort, and exit\n"
	        "  -v, --verbose          progress and latency every second, connection states\n"
	        "  -h, --help             this text\n"
	        "Exit status: 0 all events acked, 1 errors or lost events, 64 usage error.\n",
	        OPEN_ORDERS_MAX);
}

/* Parse an unsigned integer in [lo, hi] for option name, or exit 64. */
static uint64_t parse_uint(const char *name, const char *s, uint64_t lo, uint64_t hi)
{
	char *end;
	unsigned long long v;

	errno = 0;
	if (*s == '-' || *s == '\0')
		usage_error("%s: '%s' is not a number from %" PRIu64 " to %" PRIu64, name, s, lo,
		            hi);
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < lo || v > hi)
		usage_error("%s: '%s' is not a number from %" PRIu64 " to %" PRIu64, name, s, lo,
		            hi);
	return v;
}

/* Parse a non-negative number of at most hi for option name, or exit 64. */
static double parse_number(const char *name, const char *s, double hi)
{
	char *end;
	double v;

	errno = 0;
	v = strtod(s, &end);
	if (errno != 0 || *end != '\0' || end == s || !(v >= 0) || v > hi)
		usage_error("%s: '%s' is not a number from 0 to %.0f", name, s, hi);
	return v;
}

/* Check a run id: it goes into event ids and order refs, so keep to their common charset. */
static void set_run_id(struct options *opt, const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > RUN_ID_MAX)
		usage_error("--run-id: must be 1-%d characters", RUN_ID_MAX);
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		if (!((ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			usage_error("--run-id: only A-Z a-z 0-9 _ - are allowed");
	}
	memcpy(opt->run_id, s, n + 1);
}

enum {
	OPT_RUN_ID = 256,
	OPT_SEED,
	OPT_TIMEOUT,
	OPT_TICK,
	OPT_OPEN_ORDERS,
	OPT_JSON,
	OPT_OUT,
	OPT_DRY_RUN,
	OPT_SELF_CHECK,
	OPT_TOKEN_FILE,
};

/*
 * The token's storage: a copy, as --token is written over in argv, and a
 * file's first line.  A global, so a leak checker sees it reachable.
 */
static char token_buf[TOKEN_MAX + 2];

/* Check the token's length, then keep it in token_buf, from where. */
static void set_token(struct options *opt, const char *s, size_t n, const char *from)
{
	if (n == 0 || n > TOKEN_MAX)
		usage_error("%s: the token must be 1-%d bytes", from, TOKEN_MAX);
	if (memchr(s, '\0', n) != NULL)
		usage_error("%s: the token holds a NUL byte", from);
	memcpy(token_buf, s, n);
	token_buf[n] = '\0';
	opt->token = token_buf;
	opt->token_from = from;
}

/*
 * --token: keep a copy and write over the argument, which ps and
 * /proc/PID/cmdline show to every user of the host for as long as the run
 * lasts.
 */
static void token_from_argv(struct options *opt, char *arg)
{
	size_t n = strlen(arg);
	set_token(opt, arg, n, "--token");
	memset(arg, 'x', n);
}

/* --token-file: the first line of the file, without its line end. */
static void token_from_file(struct options *opt, const char *path)
{
	char line[TOKEN_MAX + 3]; /* room to see that a line is too long */
	FILE *f = fopen(path, "r");

	if (f == NULL)
		usage_error("--token-file %s: %s", path, strerror(errno));
	size_t n = fread(line, 1, sizeof(line) - 1, f);
	bool failed = ferror(f) != 0;
	fclose(f);
	if (failed)
		usage_error("--token-file %s: cannot read it", path);
	line[n] = '\0';
	char *end = memchr(line, '\n', n);
	if (end != NULL)
		n = (size_t)(end - line);
	if (n > 0 && line[n - 1] == '\r')
		n--;
	set_token(opt, line, n, "--token-file");
	explicit_bzero(line, sizeof(line));
}

/* Fill opt from argv; exits 64 on a usage error and 0 after --help. */
static void parse_options(int argc, char **argv, struct options *opt)
{
	static const struct option longopts[] = {
	    {"host", required_argument, NULL, 'H'},
	    {"port", required_argument, NULL, 'p'},
	    {"exporter", required_argument, NULL, 'e'},
	    {"token", required_argument, NULL, 't'},
	    {"token-file", required_argument, NULL, OPT_TOKEN_FILE},
	    {"connections", required_argument, NULL, 'c'},
	    {"events", required_argument, NULL, 'n'},
	    {"window", required_argument, NULL, 'w'},
	    {"rate", required_argument, NULL, 'r'},
	    {"duration", required_argument, NULL, 'd'},
	    {"run-id", required_argument, NULL, OPT_RUN_ID},
	    {"seed", required_argument, NULL, OPT_SEED},
	    {"timeout", required_argument, NULL, OPT_TIMEOUT},
	    {"tick-us", required_argument, NULL, OPT_TICK},
	    {"open-orders", required_argument, NULL, OPT_OPEN_ORDERS},
	    {"json", no_argument, NULL, OPT_JSON},
	    {"out", required_argument, NULL, OPT_OUT},
	    {"dry-run", no_argument, NULL, OPT_DRY_RUN},
	    {"self-check", no_argument, NULL, OPT_SELF_CHECK},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	int ch;
	const char *token_file = NULL;
	bool token_arg = false;

	*opt = (struct options){
	    .host = "127.0.0.1",
	    .port = 7433,
	    .exporter = "kivu-coffee",
	    .token = "demo-kivu-token",
	    .token_from = "the default token",
	    .connections = 8,
	    .events = 100000,
	    .window = 500,
	    .timeout_s = 60,
	    .tick_us = 1000,
	    .open_orders = 1,
	    .seed = 1,
	};
	snprintf(opt->run_id, sizeof(opt->run_id), "t%lldp%ld", (long long)time(NULL),
	         (long)getpid());

	while ((ch = getopt_long(argc, argv, "H:p:e:t:c:n:w:r:d:vh", longopts, NULL)) != -1) {
		switch (ch) {
		case 'H':
			opt->host = optarg;
			break;
		case 'p':
			opt->port = (int)parse_uint("--port", optarg, 1, 65535);
			break;
		case 'e':
			if (*optarg == '\0' || strlen(optarg) > 64)
				usage_error("--exporter: must be 1-64 characters");
			opt->exporter = optarg;
			break;
		case 't':
			token_from_argv(opt, optarg);
			token_arg = true;
			break;
		case OPT_TOKEN_FILE:
			token_file = optarg;
			break;
		case 'c':
			opt->connections = (unsigned)parse_uint("--connections", optarg, 1, 10000);
			break;
		case 'n':
			opt->events = parse_uint("--events", optarg, 1, UINT64_C(10000000000));
			opt->events_set = true;
			break;
		case 'w':
			opt->window = (unsigned)parse_uint("--window", optarg, 1, 100000);
			break;
		case 'r':
			opt->rate = parse_number("--rate", optarg, 1e8);
			break;
		case 'd':
			opt->duration = parse_number("--duration", optarg, 86400 * 7);
			if (opt->duration <= 0)
				usage_error("--duration: must be more than 0");
			break;
		case OPT_RUN_ID:
			set_run_id(opt, optarg);
			break;
		case OPT_SEED:
			opt->seed = parse_uint("--seed", optarg, 0, UINT64_MAX);
			break;
		case OPT_TIMEOUT:
			opt->timeout_s = (unsigned)parse_uint("--timeout", optarg, 0, 86400);
			break;
		case OPT_TICK:
			opt->tick_us = (unsigned)parse_uint("--tick-us", optarg, 0, 1000000);
			break;
		case OPT_OPEN_ORDERS:
			opt->open_orders =
			    (unsigned)parse_uint("--open-orders", optarg, 1, OPEN_ORDERS_MAX);
			break;
		case OPT_JSON:
			opt->json = true;
			break;
		case OPT_OUT:
			opt->out = optarg;
			break;
		case OPT_DRY_RUN:
			opt->out = "-";
			break;
		case OPT_SELF_CHECK:
			opt->self_check = true;
			break;
		case 'v':
			opt->verbose = true;
			break;
		case 'h':
			usage(stdout);
			exit(LOAD_EXIT_OK);
		default:
			usage(stderr);
			exit(LOAD_EXIT_USAGE);
		}
	}
	if (optind < argc)
		usage_error("unexpected argument '%s'", argv[optind]);
	if (token_arg && token_file != NULL)
		usage_error("give --token or --token-file, not both");
	if (token_file != NULL) {
		token_from_file(opt, token_file);
	} else if (!token_arg) {
		const char *env = getenv("OT_LOAD_TOKEN");
		if (env != NULL)
			set_token(opt, env, strlen(env), "OT_LOAD_TOKEN");
	}
	if (opt->duration > 0) {
		if (opt->events_set)
			usage_error("give -n or -d, not both");
		if (opt->rate > 0) {
			double n = opt->rate * opt->duration;
			opt->events = n < 1 ? 1 : (uint64_t)(n + 0.5);
		} else if (opt->out != NULL || opt->self_check) {
			usage_error("-d without -r gives no event count to write");
		} else {
			opt->events = UINT64_MAX; /* until the time is up */
		}
	}
	if (opt->out != NULL && opt->self_check)
		usage_error("give --out or --self-check, not both");
}

/* Parse the command line and run the mode it asks for. */
int main(int argc, char **argv)
{
	struct options opt;

	parse_options(argc, argv, &opt);
	if (opt.self_check)
		return run_self_check(&opt);
	if (opt.out != NULL)
		return run_out(&opt);
	return run_load(&opt);
}
