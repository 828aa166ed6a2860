/*
 * model.c - fold the events of one order into its read model; see model.h.
 *
 * The fold is a pure function of the set of events: whatever order they
 * came in, it first drops repeated ids, sorts what is left by (occurred_at
 * instant, id) and only then reads them, oldest first, so that "latest"
 * always means "last in that order".  Ties on the instant are broken by the
 * id, compared byte by byte (strcmp), which makes the order total because
 * ids are unique within an exporter.  Should the same id appear twice (the
 * daemon never stores that, but the fold does not rely on it), the copy
 * with the earlier instant is kept, and between equal instants the one
 * whose type and compact sorted-key JSON sort first.
 *
 * Retractions are resolved on the whole set before the walk, so neither
 * the arrival order nor the occurred_at of a retraction matters: an
 * event.retracted whose "retracts" names an event of the set takes that
 * event out (it stays in the log but counts for nothing); one naming an
 * id that is not there yet waits for it, as the set simply lacks the
 * target; one naming another event.retracted counts for nothing (a status
 * goes back only through an explicit retraction of a real event, and
 * un-retracting is done by sending the event again under a new id).  An
 * effective retraction is an event of the order for updated_at; one that
 * takes nothing out is not.
 *
 * Rules of the walk (all "latest" by the sort above):
 *  - A shipment exists once a shipment.* event names it.  Its milestone is
 *    the highest one reached (booked < picked_up < export_cleared <
 *    departed < arrived < import_cleared < out_for_delivery < delivered;
 *    a later one implies the earlier ones); its departure time is the
 *    earliest instant of a milestone at or past departed.
 *  - hold: per stage, the latest customs_hold/customs_released decides;
 *    when both stages are held, the stage whose hold is latest is shown.
 *  - exception: the reason of the latest exception, cleared by a later
 *    exception_resolved (which clears every exception before it).
 *  - status: delivered, else exception, else customs_hold, else the
 *    milestone's name ("none" before any milestone).
 *  - eta: the latest eta of shipment.booked or shipment.eta_changed; mode,
 *    carrier, tracking and consignee: from the latest shipment.booked,
 *    absent members there giving null; last_event_at and last_location:
 *    from the latest shipment.* event of the shipment (document.issued is
 *    not one), last_location from the latest event that has a location,
 *    its code when it has one, else its name.
 *  - The order's fields and lines come from the latest order.created,
 *    created_at from the earliest.  Its status: pending without
 *    order.created; cancelled when cancelled and no shipment has departed;
 *    with no shipment confirmed or created; else delivered (all shipments),
 *    partially_delivered (some), in_transit (one at or past departed) or
 *    booked.  The time of a cancellation does not matter: a shipment that
 *    departed before or after it is the same anomaly.
 *  - missing_documents: for a shipment that departed, each document that
 *    documents.required asks for the order's lines (every rule whose
 *    hs_prefix begins a line's hs_code) must have been issued, for the
 *    whole order or for that shipment, at or before the departure.
 *
 * Events that lack what the fold reads (a shipment ref on shipment.*, a
 * stage, a reason word, an eta, a document kind, a retracts id) or have an
 * unknown type are ignored, as are events without an id, type or object
 * body.  Other members are read leniently: a value of the wrong kind reads
 * as absent.
 */
#include "model.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "jarena.h"

/* The milestone types in rank order; rank = index + 1. */
static const char *const milestone_types[] = {
    "shipment.booked",           "shipment.picked_up", "shipment.export_cleared",
    "shipment.departed",         "shipment.arrived",   "shipment.import_cleared",
    "shipment.out_for_delivery", "shipment.delivered",
};

/* The milestone names of the read model, indexed by rank. */
static const char *const milestone_names[] = {
    "none",    "booked",         "picked_up",        "export_cleared", "departed",
    "arrived", "import_cleared", "out_for_delivery", "delivered",
};

#define N_MILESTONES   8
#define RANK_DEPARTED  4
#define RANK_DELIVERED 8
#define STAGE_EXPORT   0
#define STAGE_IMPORT   1
#define N_STAGES       2

/* One event as the fold sees it, with what the retraction pass found. */
struct item {
	struct model_event *ev;
	bool retracted; /* an effective retraction names it */
	bool effective; /* event.retracted that took an event out */
};

/* What the walk knows about one shipment. */
struct ship {
	const char *ref;
	int rank;                             /* highest milestone reached, 0 = none */
	bool departed;                        /* a milestone at or past departed was seen */
	int64_t departed_ms;                  /* the earliest such milestone */
	const struct item *customs[N_STAGES]; /* latest hold or release per stage */
	size_t customs_seq[N_STAGES];         /* its position in the walk */
	const char *exception;                /* open exception reason, or NULL */
	const json_t *booked;                 /* body of the latest shipment.booked */
	const json_t *eta;                    /* the latest eta string */
	const char *last_at;                  /* occurred_at of the latest event */
	const json_t *location;               /* the latest location object with code or name */
};

/* Everything the walk gathers about the order. */
struct fold {
	const struct item *created; /* latest order.created */
	const char *created_at;     /* occurred_at of the earliest */
	bool confirmed;             /* an order.confirmed counts */
	bool cancelled;             /* an order.cancelled counts */
	const char *updated_at;     /* occurred_at of the latest event that counts */
	struct ship *ships;
	size_t n_ships, cap_ships;
	const struct item **docs; /* document.issued events */
	size_t n_docs;
};

/* Allocate or abort: running out of memory is not a code path. */
static void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n == 0 ? 1 : n, size == 0 ? 1 : size);

	if (p == NULL)
		abort();
	return p;
}

/* The rank of a milestone type (1 booked .. 8 delivered), else 0. */
int model_milestone_rank(const char *type)
{
	if (type == NULL)
		return 0;
	for (int i = 0; i < N_MILESTONES; i++)
		if (strcmp(milestone_types[i], type) == 0)
			return i + 1;
	return 0;
}

/* A string member of obj, or NULL when absent or not a string. */
static const char *get_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* The event's occurred_at as given, or NULL. */
static const char *occurred_at(const struct model_event *ev)
{
	return get_str(ev->body, "occurred_at");
}

/* Order two numbers as a comparator does. */
static int cmp_i64(int64_t a, int64_t b)
{
	return (a > b) - (a < b);
}

/* Compare two bodies by their compact sorted-key JSON, for duplicate ids only. */
static int body_cmp(const json_t *a, const json_t *b)
{
	char *sa = json_dumps(a, JSON_COMPACT | JSON_SORT_KEYS);
	char *sb = json_dumps(b, JSON_COMPACT | JSON_SORT_KEYS);
	int c;

	if (sa == NULL || sb == NULL)
		abort();
	c = strcmp(sa, sb);
	json_text_free(sa);
	json_text_free(sb);
	return c;
}

/* Order events by id, then instant, then type and body, so the kept copy is fixed. */
static int by_id(const void *pa, const void *pb)
{
	const struct model_event *a = pa, *b = pb;
	int c = strcmp(a->id, b->id);

	if (c == 0)
		c = cmp_i64(a->occurred_ms, b->occurred_ms);
	if (c == 0)
		c = strcmp(a->type, b->type);
	if (c == 0)
		c = body_cmp(a->body, b->body);
	return c;
}

/* Order items by (instant, id): the order the walk reads them in. */
static int by_time(const void *pa, const void *pb)
{
	const struct item *a = pa, *b = pb;
	int c = cmp_i64(a->ev->occurred_ms, b->ev->occurred_ms);

	return c != 0 ? c : strcmp(a->ev->id, b->ev->id);
}

/* Compare an id with an item, for bsearch over the id-sorted items. */
static int id_key_cmp(const void *key, const void *p)
{
	const struct item *it = p;

	return strcmp(key, it->ev->id);
}

/* True when the fold can read the event at all. */
static bool event_usable(const struct model_event *ev)
{
	return ev->id != NULL && ev->type != NULL && json_is_object(ev->body) &&
	       occurred_at(ev) != NULL;
}

/*
 * Sort evs by id, keep the first of each id, and return the kept events as
 * items, still in id order; *n_out is their count.
 */
static struct item *items_unique(struct model_event *evs, size_t n, size_t *n_out)
{
	struct item *items = xcalloc(n, sizeof(*items));
	size_t k = 0;
	size_t m = 0;

	/* Unusable events go to the end first, so by_id never sees a NULL id. */
	for (size_t i = 0; i < n; i++) {
		if (!event_usable(&evs[i]))
			continue;
		struct model_event t = evs[m];
		evs[m] = evs[i];
		evs[i] = t;
		m++;
	}
	if (m > 1) /* evs may be NULL when empty, which qsort does not allow */
		qsort(evs, m, sizeof(*evs), by_id);
	for (size_t i = 0; i < m; i++) {
		if (k > 0 && strcmp(items[k - 1].ev->id, evs[i].id) == 0)
			continue;
		items[k++].ev = &evs[i];
	}
	*n_out = k;
	return items;
}

/* Mark the targets of effective retractions; items must be in id order. */
static void retractions_resolve(struct item *items, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		const char *target;
		struct item *t;

		if (strcmp(items[i].ev->type, "event.retracted") != 0)
			continue;
		target = get_str(items[i].ev->body, "retracts");
		if (target == NULL)
			continue;
		t = bsearch(target, items, n, sizeof(*items), id_key_cmp);
		/* A retraction of a retraction, or of itself, counts for nothing. */
		if (t == NULL || strcmp(t->ev->type, "event.retracted") == 0)
			continue;
		t->retracted = true;
		items[i].effective = true;
	}
}

/* The shipment named ref, created on first mention. */
static struct ship *ship_get(struct fold *f, const char *ref)
{
	for (size_t i = 0; i < f->n_ships; i++)
		if (strcmp(f->ships[i].ref, ref) == 0)
			return &f->ships[i];
	if (f->n_ships == f->cap_ships) {
		size_t cap = f->cap_ships == 0 ? 4 : f->cap_ships * 2;
		struct ship *s = xcalloc(cap, sizeof(*s));
		if (f->n_ships > 0)
			memcpy(s, f->ships, f->n_ships * sizeof(*s));
		free(f->ships);
		f->ships = s;
		f->cap_ships = cap;
	}
	struct ship *s = &f->ships[f->n_ships++];
	memset(s, 0, sizeof(*s));
	s->ref = ref;
	return s;
}

/* The index of a customs stage word, or -1. */
static int stage_index(const char *stage)
{
	if (stage == NULL)
		return -1;
	if (strcmp(stage, "export") == 0)
		return STAGE_EXPORT;
	if (strcmp(stage, "import") == 0)
		return STAGE_IMPORT;
	return -1;
}

/* True when a location object says where, by code or by name. */
static bool location_usable(const json_t *loc)
{
	return get_str(loc, "code") != NULL || get_str(loc, "name") != NULL;
}

/* Apply one shipment.* event, the seq-th of the walk; false when it is ignored. */
static bool walk_shipment(struct fold *f, const struct item *it, size_t seq)
{
	const struct model_event *ev = it->ev;
	const char *ref = get_str(ev->body, "shipment");
	const char *t = ev->type + strlen("shipment.");
	int rank = model_milestone_rank(ev->type);
	int stage = -1;
	const json_t *eta = NULL;

	if (ref == NULL)
		return false;
	/* Check what the event needs before it can create the shipment. */
	if (strcmp(t, "customs_hold") == 0 || strcmp(t, "customs_released") == 0) {
		stage = stage_index(get_str(ev->body, "stage"));
		if (stage < 0)
			return false;
	} else if (strcmp(t, "exception") == 0) {
		if (get_str(ev->body, "reason") == NULL)
			return false;
	} else if (strcmp(t, "eta_changed") == 0) {
		eta = json_object_get(ev->body, "eta");
		if (!json_is_string(eta))
			return false;
	} else if (rank == 0 && strcmp(t, "checkpoint") != 0 &&
	           strcmp(t, "exception_resolved") != 0) {
		return false; /* an unknown shipment.* type */
	}

	struct ship *s = ship_get(f, ref);
	if (rank > s->rank)
		s->rank = rank;
	if (rank >= RANK_DEPARTED && !s->departed) {
		s->departed = true;
		s->departed_ms = ev->occurred_ms;
	}
	if (stage >= 0) {
		s->customs[stage] = it;
		s->customs_seq[stage] = seq;
	}
	if (strcmp(t, "exception") == 0)
		s->exception = get_str(ev->body, "reason");
	else if (strcmp(t, "exception_resolved") == 0)
		s->exception = NULL;
	if (strcmp(t, "booked") == 0) {
		s->booked = ev->body;
		if (json_is_string(json_object_get(ev->body, "eta")))
			eta = json_object_get(ev->body, "eta");
	}
	if (eta != NULL)
		s->eta = eta;
	s->last_at = occurred_at(ev);
	const json_t *loc = json_object_get(ev->body, "location");
	if (json_is_object(loc) && location_usable(loc))
		s->location = loc;
	return true;
}

/* Apply one event that counts, the seq-th of the walk; false when it is ignored. */
static bool walk_event(struct fold *f, const struct item *it, size_t seq)
{
	const struct model_event *ev = it->ev;

	if (strncmp(ev->type, "shipment.", 9) == 0)
		return walk_shipment(f, it, seq);
	if (strcmp(ev->type, "order.created") == 0) {
		if (f->created_at == NULL)
			f->created_at = occurred_at(ev);
		f->created = it;
	} else if (strcmp(ev->type, "order.confirmed") == 0) {
		f->confirmed = true;
	} else if (strcmp(ev->type, "order.cancelled") == 0) {
		f->cancelled = true;
	} else if (strcmp(ev->type, "document.issued") == 0) {
		if (get_str(ev->body, "document") == NULL)
			return false;
		f->docs[f->n_docs++] = it;
	} else if (strcmp(ev->type, "event.retracted") == 0) {
		return it->effective;
	} else {
		return false;
	}
	return true;
}

/* A JSON string copy of s, or null. */
static json_t *str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

/* A copy of obj's string member key, or null. */
static json_t *member_str(const json_t *obj, const char *key)
{
	return str_or_null(get_str(obj, key));
}

/* The stage shown as the shipment's hold, or NULL when neither stage is held. */
static const char *ship_hold(const struct ship *s)
{
	const char *hold = NULL;
	size_t best = 0;

	for (int st = 0; st < N_STAGES; st++) {
		const struct item *c = s->customs[st];
		if (c == NULL || strcmp(c->ev->type, "shipment.customs_hold") != 0)
			continue;
		if (hold == NULL || s->customs_seq[st] > best) {
			hold = st == STAGE_EXPORT ? "export" : "import";
			best = s->customs_seq[st];
		}
	}
	return hold;
}

/* The one-word status of a shipment. */
static const char *ship_status(const struct ship *s)
{
	if (s->rank == RANK_DELIVERED)
		return "delivered";
	if (s->exception != NULL)
		return "exception";
	if (ship_hold(s) != NULL)
		return "customs_hold";
	return milestone_names[s->rank];
}

/* Order shipments by ref. */
static int ship_cmp(const void *pa, const void *pb)
{
	const struct ship *a = pa, *b = pb;

	return strcmp(a->ref, b->ref);
}

/* The shipment's row of the read model. */
static json_t *ship_json(const struct ship *s)
{
	const char *loc = NULL;

	if (s->location != NULL) {
		loc = get_str(s->location, "code");
		if (loc == NULL)
			loc = get_str(s->location, "name");
	}
	return json_pack(
	    "{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "shipment_ref", s->ref,
	    "status", ship_status(s), "milestone", milestone_names[s->rank], "hold",
	    str_or_null(ship_hold(s)), "exception", str_or_null(s->exception), "mode",
	    member_str(s->booked, "mode"), "carrier", member_str(s->booked, "carrier"), "tracking",
	    member_str(s->booked, "tracking"), "consignee", member_str(s->booked, "consignee"),
	    "eta", str_or_null(json_string_value(s->eta)), "last_event_at", str_or_null(s->last_at),
	    "last_location", str_or_null(loc));
}

/* The order's status from what the walk gathered. */
static const char *order_status(const struct fold *f)
{
	size_t delivered = 0;
	bool departed = false;

	for (size_t i = 0; i < f->n_ships; i++) {
		delivered += f->ships[i].rank == RANK_DELIVERED;
		departed = departed || f->ships[i].departed;
	}
	if (f->created == NULL)
		return "pending";
	if (f->cancelled && !departed)
		return "cancelled";
	if (f->n_ships == 0)
		return f->confirmed ? "confirmed" : "created";
	if (delivered == f->n_ships)
		return "delivered";
	if (delivered > 0)
		return "partially_delivered";
	return departed ? "in_transit" : "booked";
}

/* Add word to a small set of document names unless it is there. */
static void doc_set_add(const char **set, size_t *n, size_t cap, const char *word)
{
	for (size_t i = 0; i < *n; i++)
		if (strcmp(set[i], word) == 0)
			return;
	if (*n < cap)
		set[(*n)++] = word;
}

/*
 * The documents the rules require for the lines of order.created, into a
 * new array (*n of them); NULL when none are required.
 */
static const char **docs_required(const struct fold *f, const struct model_rules *rules, size_t *n)
{
	const json_t *lines;
	size_t cap = 0, i;
	const json_t *line;
	const char **set;

	*n = 0;
	if (f->created == NULL || rules == NULL || rules->n_doc_rules == 0)
		return NULL;
	for (size_t r = 0; r < rules->n_doc_rules; r++)
		cap += rules->doc_rules[r].n_documents;
	if (cap == 0)
		return NULL;
	set = xcalloc(cap, sizeof(*set));
	lines = json_object_get(f->created->ev->body, "lines");
	json_array_foreach(lines, i, line)
	{
		const char *hs = get_str(line, "hs_code");
		if (hs == NULL)
			continue;
		for (size_t r = 0; r < rules->n_doc_rules; r++) {
			const struct model_doc_rule *dr = &rules->doc_rules[r];
			if (dr->hs_prefix == NULL ||
			    strncmp(hs, dr->hs_prefix, strlen(dr->hs_prefix)) != 0)
				continue;
			for (size_t d = 0; d < dr->n_documents; d++)
				doc_set_add(set, n, cap, dr->documents[d]);
		}
	}
	return set;
}

/* True when document kind was issued for the order or shipment ref by instant at_ms. */
static bool doc_issued_by(const struct fold *f, const char *kind, const char *ref, int64_t at_ms)
{
	for (size_t i = 0; i < f->n_docs; i++) {
		const struct model_event *ev = f->docs[i]->ev;
		const char *dref = get_str(ev->body, "shipment");
		if (ev->occurred_ms > at_ms || strcmp(get_str(ev->body, "document"), kind) != 0)
			continue;
		if (dref == NULL || strcmp(dref, ref) == 0)
			return true;
	}
	return false;
}

/* True when a shipment departed before every required document was issued. */
static bool missing_documents(const struct fold *f, const struct model_rules *rules)
{
	size_t n_req;
	const char **req = docs_required(f, rules, &n_req);
	bool missing = false;

	for (size_t i = 0; i < f->n_ships && !missing; i++) {
		const struct ship *s = &f->ships[i];
		if (!s->departed)
			continue;
		for (size_t d = 0; d < n_req && !missing; d++)
			missing = !doc_issued_by(f, req[d], s->ref, s->departed_ms);
	}
	free(req);
	return missing;
}

/* The order's anomalies as a sorted array of words. */
static json_t *anomalies_json(const struct fold *f, const struct model_rules *rules)
{
	json_t *a = json_array();
	bool departed = false;

	for (size_t i = 0; i < f->n_ships; i++)
		departed = departed || f->ships[i].departed;
	/* Appended in alphabetical order, so the array is sorted. */
	if (f->cancelled && departed)
		json_array_append_new(a, json_string("cancelled_after_departure"));
	if (missing_documents(f, rules))
		json_array_append_new(a, json_string("missing_documents"));
	return a;
}

/* The order object of the read model. */
static json_t *order_json(const struct fold *f, const struct model_rules *rules)
{
	const json_t *c = f->created != NULL ? f->created->ev->body : NULL;

	return json_pack(
	    "{s:s, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "status", order_status(f),
	    "buyer", member_str(c, "buyer"), "channel", member_str(c, "channel"), "origin",
	    member_str(c, "origin"), "destination", member_str(c, "destination"), "incoterm",
	    member_str(c, "incoterm"), "currency", member_str(c, "currency"), "expected_delivery",
	    member_str(c, "expected_delivery"), "anomalies", anomalies_json(f, rules), "created_at",
	    str_or_null(f->created_at), "updated_at", str_or_null(f->updated_at));
}

/* A copy of obj's number member key, or null. */
static json_t *member_number(const json_t *obj, const char *key)
{
	const json_t *v = json_object_get(obj, key);

	return json_is_number(v) ? json_copy((json_t *)v) : json_null();
}

/* The lines of the latest order.created, each with the order's currency. */
static json_t *lines_json(const struct fold *f)
{
	json_t *out = json_array();
	const json_t *body, *lines, *line;
	size_t i;

	if (f->created == NULL)
		return out;
	body = f->created->ev->body;
	lines = json_object_get(body, "lines");
	json_array_foreach(lines, i, line)
	{
		if (!json_is_object(line))
			continue;
		json_array_append_new(out, json_pack("{s:o, s:o, s:o, s:o, s:o, s:o, s:o}", "sku",
		                                     member_str(line, "sku"), "product",
		                                     member_str(line, "product"), "hs_code",
		                                     member_str(line, "hs_code"), "quantity",
		                                     member_number(line, "quantity"), "unit",
		                                     member_str(line, "unit"), "unit_price",
		                                     member_number(line, "unit_price"), "currency",
		                                     member_str(body, "currency")));
	}
	return out;
}

/* Compare two optional strings, NULL first. */
static int opt_strcmp(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return (a != NULL) - (b != NULL);
	return strcmp(a, b);
}

/* Order documents by (shipment_ref, NULL first; document; instant; id). */
static int doc_cmp(const void *pa, const void *pb)
{
	const struct model_event *a = (*(const struct item *const *)pa)->ev;
	const struct model_event *b = (*(const struct item *const *)pb)->ev;
	int c = opt_strcmp(get_str(a->body, "shipment"), get_str(b->body, "shipment"));

	if (c == 0)
		c = strcmp(get_str(a->body, "document"), get_str(b->body, "document"));
	if (c == 0)
		c = cmp_i64(a->occurred_ms, b->occurred_ms);
	return c != 0 ? c : strcmp(a->id, b->id);
}

/* The documents of the order, sorted. */
static json_t *documents_json(struct fold *f)
{
	json_t *out = json_array();

	qsort(f->docs, f->n_docs, sizeof(*f->docs), doc_cmp);
	for (size_t i = 0; i < f->n_docs; i++) {
		const json_t *b = f->docs[i]->ev->body;
		json_array_append_new(out, json_pack("{s:o, s:o, s:o, s:o}", "shipment_ref",
		                                     member_str(b, "shipment"), "document",
		                                     member_str(b, "document"), "number",
		                                     member_str(b, "number"), "issued_at",
		                                     member_str(b, "occurred_at")));
	}
	return out;
}

/* The read model from what the walk gathered (sorts f's shipments and documents). */
static json_t *fold_result(struct fold *f, const struct model_rules *rules)
{
	json_t *ships = json_array(), *out;

	if (f->n_ships > 1)
		qsort(f->ships, f->n_ships, sizeof(*f->ships), ship_cmp);
	for (size_t i = 0; i < f->n_ships; i++)
		json_array_append_new(ships, ship_json(&f->ships[i]));
	out = json_pack("{s:o, s:o, s:o, s:o}", "order", order_json(f, rules), "shipments", ships,
	                "lines", lines_json(f), "documents", documents_json(f));
	if (out == NULL)
		abort(); /* json_pack fails only when out of memory */
	return out;
}

/* Walk items[0..n) from position seq on; they are in walk order. */
static void walk_items(struct fold *f, const struct item *items, size_t n, size_t seq)
{
	for (size_t i = 0; i < n; i++) {
		if (items[i].retracted)
			continue;
		if (walk_event(f, &items[i], seq + i))
			f->updated_at = occurred_at(items[i].ev);
	}
}

/* ---------------------------------------------------------------------- */
/*
 * The walk, saved and gone on from; see model.h.  What the read model
 * shows of the walk's state (the order's fields and times, each shipment's
 * milestone, exception, booking, eta and location) is read back from the
 * state; the walk saves only the rest, compactly:
 *
 *   {"v":1, "n": events read, "last": [instant ms, id],
 *    "confirmed": true, "cancelled": true (when so),
 *    "hs": [the HS codes of the latest order.created's lines],
 *    "ships": {ref: [departure ms or null, export, import]}, each stage
 *             null or [true for a hold / false for a release, its position],
 *    "docs": [[id, instant ms, shipment or null, document, number or null,
 *              occurred_at], ...]}
 */

#define WALK_VERSION 1

/* The members of order.created the read model shows, as state.order names them. */
static const char *const created_keys[] = {
    "buyer", "channel", "origin", "destination", "incoterm", "currency", "expected_delivery", NULL};

/* The HS codes of the latest order.created's lines, for docs_required(). */
static json_t *hs_codes(const struct fold *f)
{
	json_t *out = json_array();
	size_t i;
	const json_t *line;

	json_array_foreach(json_object_get(f->created->ev->body, "lines"), i, line)
	{
		const json_t *hs = json_object_get(line, "hs_code");
		if (json_is_string(hs))
			json_array_append(out, (json_t *)hs);
	}
	return out;
}

/* One shipment's part of the walk. */
static json_t *ship_save(const struct ship *s)
{
	json_t *a = json_array();

	json_array_append_new(a, s->departed ? json_integer(s->departed_ms) : json_null());
	for (int st = 0; st < N_STAGES; st++) {
		const struct item *c = s->customs[st];
		json_array_append_new(
		    a, c == NULL
		           ? json_null()
		           : json_pack("[b, I]", strcmp(c->ev->type, "shipment.customs_hold") == 0,
		                       (json_int_t)s->customs_seq[st]));
	}
	return a;
}

/* One document.issued event as the walk keeps it. */
static json_t *doc_save(const struct model_event *ev)
{
	return json_pack("[s, I, o, o, o, o]", ev->id, (json_int_t)ev->occurred_ms,
	                 member_str(ev->body, "shipment"), member_str(ev->body, "document"),
	                 member_str(ev->body, "number"), member_str(ev->body, "occurred_at"));
}

/* The walk after n events, the last of them last. */
static json_t *walk_save(const struct fold *f, const struct model_event *last, size_t n)
{
	json_t *w = json_pack("{s:i, s:I, s:[I, s]}", "v", WALK_VERSION, "n", (json_int_t)n, "last",
	                      (json_int_t)last->occurred_ms, last->id);
	json_t *ships = json_object(), *docs = json_array();

	if (w == NULL)
		abort();
	if (f->confirmed)
		json_object_set_new(w, "confirmed", json_true());
	if (f->cancelled)
		json_object_set_new(w, "cancelled", json_true());
	if (f->created != NULL)
		json_object_set_new(w, "hs", hs_codes(f));
	for (size_t i = 0; i < f->n_ships; i++)
		json_object_set_new(ships, f->ships[i].ref, ship_save(&f->ships[i]));
	json_object_set_new(w, "ships", ships);
	for (size_t i = 0; i < f->n_docs; i++)
		json_array_append_new(docs, doc_save(f->docs[i]->ev));
	json_object_set_new(w, "docs", docs);
	return w;
}

/* True when an event of the set is a retraction: such orders are folded whole. */
static bool any_retraction(const struct item *items, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(items[i].ev->type, "event.retracted") == 0)
			return true;
	return false;
}

json_t *model_fold_save(struct model_event *evs, size_t n, const struct model_rules *rules,
                        json_t **walk)
{
	struct fold f;
	size_t n_items;
	struct item *items = items_unique(evs, n, &n_items);
	json_t *out;

	memset(&f, 0, sizeof(f));
	retractions_resolve(items, n_items);
	qsort(items, n_items, sizeof(*items), by_time);
	f.docs = xcalloc(n_items, sizeof(*f.docs));
	walk_items(&f, items, n_items, 0);
	out = fold_result(&f, rules);
	if (walk != NULL)
		*walk = n_items == 0 || any_retraction(items, n_items)
		            ? NULL
		            : walk_save(&f, items[n_items - 1].ev, n_items);
	free(f.docs);
	free(f.ships);
	free(items);
	return out;
}

/* Fold the events of one order into its read model. */
json_t *model_fold(struct model_event *evs, size_t n, const struct model_rules *rules)
{
	return model_fold_save(evs, n, rules, NULL);
}

/*
 * What a fold gone on from a walk makes up for the fold's pointers into
 * events it has not got: the latest order.created, each stage's latest
 * hold or release, the documents; and the bodies they and the shipments
 * read (built from the state), freed at the end.
 */
struct restore {
	struct model_event *evs;
	struct item *items;
	size_t n, cap;
	json_t *bodies; /* an array owning what evs and the shipments point into */
};

/* A made-up event, or NULL when there is no room (a malformed walk). */
static struct item *restore_item(struct restore *r, const char *type, const char *id, int64_t ms,
                                 json_t *body)
{
	if (r->n == r->cap)
		return NULL;
	struct model_event *ev = &r->evs[r->n];
	struct item *it = &r->items[r->n++];
	ev->type = type;
	ev->id = id;
	ev->occurred_ms = ms;
	ev->body = body;
	it->ev = ev;
	return it;
}

/* A new object kept alive by r until the end of the fold. */
static json_t *restore_body(struct restore *r)
{
	json_t *o = json_object();
	json_array_append_new(r->bodies, o);
	return o;
}

/* A string member of obj, or JSON null; false when it is there and neither. */
static bool str_or_null_member(const json_t *obj, const char *key, const json_t **out)
{
	*out = json_object_get(obj, key);
	return json_is_string(*out) || json_is_null(*out);
}

/* The rank of a milestone name of the read model, or -1. */
static int milestone_index(const char *name)
{
	for (int i = 0; name != NULL && i <= N_MILESTONES; i++)
		if (strcmp(milestone_names[i], name) == 0)
			return i;
	return -1;
}

/* A stage of a saved shipment into s; false when malformed. */
static bool stage_restore(struct ship *s, struct restore *r, int st, const json_t *c)
{
	const json_t *seq = json_array_get(c, 1);

	if (json_is_null(c))
		return true;
	if (json_array_size(c) != 2 || !json_is_boolean(json_array_get(c, 0)) ||
	    !json_is_integer(seq) || json_integer_value(seq) < 0)
		return false;
	s->customs[st] =
	    restore_item(r,
	                 json_is_true(json_array_get(c, 0)) ? "shipment.customs_hold"
	                                                    : "shipment.customs_released",
	                 "", 0, NULL);
	s->customs_seq[st] = (size_t)json_integer_value(seq);
	return s->customs[st] != NULL;
}

/* One shipment of the state, with its part of the walk, into f; false when malformed. */
static bool ship_restore(struct fold *f, struct restore *r, const json_t *row, const json_t *saved)
{
	const char *ref = json_string_value(json_object_get(row, "shipment_ref"));
	int rank = milestone_index(json_string_value(json_object_get(row, "milestone")));
	const json_t *dep = json_array_get(saved, 0), *eta, *v[7];
	static const char *const keys[] = {"exception", "mode",          "carrier",      "tracking",
	                                   "consignee", "last_event_at", "last_location"};
	struct ship *s;

	if (ref == NULL || rank < 0 || json_array_size(saved) != 1 + N_STAGES ||
	    !(json_is_null(dep) || json_is_integer(dep)) || !str_or_null_member(row, "eta", &eta))
		return false;
	for (size_t i = 0; i < f->n_ships; i++)
		if (strcmp(f->ships[i].ref, ref) == 0)
			return false; /* a shipment twice */
	s = ship_get(f, ref);
	s->rank = rank;
	s->departed = json_is_integer(dep);
	s->departed_ms = json_integer_value(dep);
	s->eta = json_is_string(eta) ? eta : NULL;
	for (int st = 0; st < N_STAGES; st++)
		if (!stage_restore(s, r, st, json_array_get(saved, (size_t)(1 + st))))
			return false;
	for (size_t i = 0; i < 7; i++)
		if (!str_or_null_member(row, keys[i], &v[i]))
			return false;
	s->exception = json_string_value(v[0]);
	json_t *booked = restore_body(r);
	for (size_t i = 1; i <= 4; i++)
		json_object_set(booked, keys[i], (json_t *)v[i]);
	s->booked = booked;
	s->last_at = json_string_value(v[5]);
	if (json_is_string(v[6])) {
		/* ship_json shows a location's code, else its name: the shown
		 * value as the code shows the same. */
		json_t *loc = restore_body(r);
		json_object_set(loc, "code", (json_t *)v[6]);
		s->location = loc;
	}
	return true;
}

/* The saved documents into f; false when one is malformed. */
static bool docs_restore(struct fold *f, struct restore *r, const json_t *docs)
{
	static const char *const keys[] = {"shipment", "document", "number", "occurred_at"};
	size_t i;
	const json_t *d;

	json_array_foreach(docs, i, d)
	{
		const char *id = json_string_value(json_array_get(d, 0));
		const json_t *ms = json_array_get(d, 1);
		if (json_array_size(d) != 6 || id == NULL || !json_is_integer(ms) ||
		    !json_is_string(json_array_get(d, 3)))
			return false;
		json_t *body = restore_body(r);
		for (size_t k = 0; k < 4; k++) {
			const json_t *v = json_array_get(d, 2 + k);
			if (!json_is_string(v) && !json_is_null(v))
				return false;
			if (json_is_string(v))
				json_object_set(body, keys[k], (json_t *)v);
		}
		struct item *it =
		    restore_item(r, "document.issued", id, json_integer_value(ms), body);
		if (it == NULL)
			return false;
		f->docs[f->n_docs++] = it;
	}
	return true;
}

/* The order of the state, with the walk, into f; false when malformed. */
static bool order_restore(struct fold *f, struct restore *r, const json_t *order,
                          const json_t *walk)
{
	const char *status = json_string_value(json_object_get(order, "status"));
	const json_t *hs = json_object_get(walk, "hs"), *v;

	if (status == NULL || !str_or_null_member(order, "created_at", &v))
		return false;
	f->created_at = json_string_value(v);
	if (!str_or_null_member(order, "updated_at", &v))
		return false;
	f->updated_at = json_string_value(v);
	f->confirmed = json_is_true(json_object_get(walk, "confirmed"));
	f->cancelled = json_is_true(json_object_get(walk, "cancelled"));
	/* Pending is the one status without an order.created. */
	if (strcmp(status, "pending") == 0)
		return hs == NULL;
	if (!json_is_array(hs))
		return false;
	json_t *body = restore_body(r), *lines = json_array();
	for (size_t i = 0; created_keys[i] != NULL; i++) {
		if (!str_or_null_member(order, created_keys[i], &v))
			return false;
		json_object_set(body, created_keys[i], (json_t *)v);
	}
	size_t i;
	json_array_foreach(hs, i, v)
	{
		if (!json_is_string(v))
			return false;
		json_array_append_new(lines, json_pack("{s:O}", "hs_code", v));
	}
	json_object_set_new(body, "lines", lines);
	f->created = restore_item(r, "order.created", "", 0, body);
	return f->created != NULL;
}

/* Rebuild the fold of the walk from the state and the walk into f; false when malformed. */
static bool walk_restore(struct fold *f, struct restore *r, const json_t *state, const json_t *walk)
{
	const json_t *ships = json_object_get(walk, "ships"),
	             *rows = json_object_get(state, "shipments");
	size_t i;
	const json_t *row;

	if (!json_is_object(ships) || !json_is_array(rows) ||
	    json_object_size(ships) != json_array_size(rows) ||
	    !order_restore(f, r, json_object_get(state, "order"), walk))
		return false;
	json_array_foreach(rows, i, row)
	{
		const char *ref = json_string_value(json_object_get(row, "shipment_ref"));
		if (ref == NULL || !ship_restore(f, r, row, json_object_get(ships, ref)))
			return false;
	}
	return docs_restore(f, r, json_object_get(walk, "docs"));
}

json_t *model_fold_from(const json_t *state, const json_t *walk, struct model_event *evs, size_t n,
                        const struct model_rules *rules, json_t **walk_out)
{
	const json_t *last = json_object_get(walk, "last"), *seen = json_object_get(walk, "n");
	const json_t *last_ms = json_array_get(last, 0), *docs = json_object_get(walk, "docs");
	const char *last_id = json_string_value(json_array_get(last, 1));
	size_t n_items, n_docs = json_array_size(docs);
	struct item *items;
	struct fold f;
	struct restore r = {0};
	json_t *out = NULL;

	*walk_out = NULL;
	if (json_integer_value(json_object_get(walk, "v")) != WALK_VERSION ||
	    !json_is_integer(seen) || json_integer_value(seen) < 1 || !json_is_integer(last_ms) ||
	    last_id == NULL || !json_is_array(docs) || !json_is_object(state))
		return NULL;
	items = items_unique(evs, n, &n_items);
	qsort(items, n_items, sizeof(*items), by_time);
	/* Only events that come after every one walked, and no retraction,
	 * which can take out an event walked long ago. */
	if (n_items == 0 || any_retraction(items, n_items) ||
	    items[0].ev->occurred_ms < json_integer_value(last_ms) ||
	    (items[0].ev->occurred_ms == json_integer_value(last_ms) &&
	     strcmp(items[0].ev->id, last_id) <= 0)) {
		free(items);
		return NULL;
	}
	memset(&f, 0, sizeof(f));
	r.cap = 1 + N_STAGES * json_object_size(json_object_get(walk, "ships")) + n_docs;
	r.evs = xcalloc(r.cap, sizeof(*r.evs));
	r.items = xcalloc(r.cap, sizeof(*r.items));
	r.bodies = json_array();
	f.docs = xcalloc(n_docs + n_items, sizeof(*f.docs));
	if (walk_restore(&f, &r, state, walk)) {
		const struct item *created = f.created;
		size_t done = (size_t)json_integer_value(seen);
		walk_items(&f, items, n_items, done);
		out = fold_result(&f, rules);
		/* The lines are not in the walk: unchanged unless a new
		 * order.created came. */
		if (f.created == created && created != NULL)
			json_object_set_new(out, "lines", json_null());
		*walk_out = walk_save(&f, items[n_items - 1].ev, done + n_items);
	}
	json_decref(r.bodies);
	free(f.docs);
	free(f.ships);
	free(r.evs);
	free(r.items);
	free(items);
	return out;
}
