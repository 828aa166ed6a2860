/*
 * notify.c - what changed between two folds of an order, and how webhook
 * deliveries are signed and spaced; see notify.h.
 *
 * notify_diff() compares two read models member by member: the shipments
 * are matched by shipment_ref over the union of both states, so a shipment
 * that appears has from = null and one that disappears (its events were
 * retracted) has to = null, for its status and for its eta alike.  Values
 * are compared as strings, so a change of nothing at all (a duplicate, a
 * late event that the fold ranks below what is there) yields no item.  An
 * eta is compared as the string the exporter sent, not as an instant: the
 * same instant written with another offset counts as a change, which is
 * what a buyer who reads the string would see.  The anomalies are compared
 * as a set (sorted, joined by ","), so their order in the array does not
 * matter.  A member missing from a state, or of the wrong JSON kind, reads
 * as null; the function never fails, it only appends fewer items.
 *
 * Signatures are HMAC-SHA256 over "<t>.<body>" through libcrypto's one-shot
 * HMAC(); the backoff is a plain doubling with a cap.  Nothing here reads a
 * clock: the caller passes t.
 */
#include "notify.h"

#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#define BACKOFF_FIRST_MS 1000u
#define BACKOFF_CAP_MS   300000u
#define SIG_HEX_LEN      64

/* One shipment ref of either state, with the object it names there. */
struct ship_ref {
	const char *ref;
	const json_t *obj;
	bool is_new; /* from new_state, else from old_state */
	size_t pos;  /* its index among all refs, so that equal refs keep their order */
};

/* Allocate or abort: running out of memory is not a code path. */
static void *xmalloc(size_t size)
{
	void *p = malloc(size == 0 ? 1 : size);

	if (p == NULL)
		abort();
	return p;
}

/* A string member of obj, or NULL when absent, null or not a string. */
static const char *member_str(const json_t *obj, const char *key)
{
	return json_string_value(json_object_get(obj, key));
}

/* Are two optional strings equal (NULL equals only NULL)? */
static bool opt_equal(const char *a, const char *b)
{
	if (a == NULL || b == NULL)
		return a == b;
	return strcmp(a, b) == 0;
}

/* A new JSON string for s, or JSON null for NULL. */
static json_t *str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

/* Is cause a later than cause b, by occurred_ms and then id? */
static bool cause_later(const struct notify_cause *a, const struct notify_cause *b)
{
	if (a->occurred_ms != b->occurred_ms)
		return a->occurred_ms > b->occurred_ms;
	return strcmp(a->id, b->id) > 0;
}

/*
 * Can cause c have changed shipment ref?  Only a shipment.* event of it
 * can (lib/model.c): a document.issued may name the shipment too but
 * changes no status, eta or location of it.
 */
static bool cause_moves_shipment(const struct notify_cause *c, const char *ref)
{
	if (c->shipment == NULL || strcmp(c->shipment, ref) != 0)
		return false;
	return c->type == NULL || strncmp(c->type, "shipment.", 9) == 0;
}

/* The latest cause of shipment ref (any cause of the order for NULL), or NULL when none. */
static const struct notify_cause *cause_latest(const struct notify_cause *causes, size_t n,
                                               const char *ref)
{
	const struct notify_cause *best = NULL;

	for (size_t i = 0; i < n; i++) {
		const struct notify_cause *c = &causes[i];

		/* A cause without an id names no event; it cannot be cited. */
		if (c->id == NULL)
			continue;
		if (ref != NULL && !cause_moves_shipment(c, ref))
			continue;
		if (best == NULL || cause_later(c, best))
			best = c;
	}
	return best;
}

/* Append one item with exactly the members of the wire format; returns 1, or 0 if refused. */
static size_t item_append(json_t *out, const char *kind, const char *exporter, const char *order,
                          const char *shipment, const char *from, const char *to,
                          const struct notify_cause *cause)
{
	json_t *item = json_object();

	json_object_set_new(item, "kind", json_string(kind));
	json_object_set_new(item, "exporter", str_or_null(exporter));
	json_object_set_new(item, "order", str_or_null(order));
	json_object_set_new(item, "shipment", str_or_null(shipment));
	json_object_set_new(item, "from", str_or_null(from));
	json_object_set_new(item, "to", str_or_null(to));
	json_object_set_new(item, "event", str_or_null(cause != NULL ? cause->id : NULL));
	json_object_set_new(item, "occurred_at",
	                    str_or_null(cause != NULL ? cause->occurred_at : NULL));
	return json_array_append_new(out, item) == 0 ? 1 : 0;
}

/*
 * Order shipment refs by ref, the old state's entries before the new one's,
 * then as they came: qsort need not be stable, and the first entry of a
 * repeated ref is the one that counts.
 */
static int ship_ref_cmp(const void *pa, const void *pb)
{
	const struct ship_ref *a = pa, *b = pb;
	int c = strcmp(a->ref, b->ref);

	if (c != 0)
		return c;
	if (a->is_new != b->is_new)
		return (int)a->is_new - (int)b->is_new;
	return (a->pos > b->pos) - (a->pos < b->pos);
}

/* Add the shipments of state that have a string ref to refs; returns the new count. */
static size_t ship_refs_add(struct ship_ref *refs, size_t n, const json_t *state, bool is_new)
{
	const json_t *ships = json_object_get(state, "shipments");
	const json_t *s;
	size_t i;

	json_array_foreach(ships, i, s)
	{
		const char *ref = member_str(s, "shipment_ref");

		if (ref == NULL)
			continue;
		refs[n].ref = ref;
		refs[n].obj = s;
		refs[n].is_new = is_new;
		refs[n].pos = n;
		n++;
	}
	return n;
}

/* Append the status and eta items of one shipment (either side may be NULL). */
static size_t diff_shipment(const char *ref, const json_t *was, const json_t *now,
                            const char *exporter, const char *order,
                            const struct notify_cause *causes, size_t n_causes, json_t *out)
{
	const char *st_from = member_str(was, "status"), *st_to = member_str(now, "status");
	const char *eta_from = member_str(was, "eta"), *eta_to = member_str(now, "eta");
	const struct notify_cause *cause;
	size_t n = 0;

	if (opt_equal(st_from, st_to) && opt_equal(eta_from, eta_to))
		return 0;
	cause = cause_latest(causes, n_causes, ref);
	if (cause == NULL)
		cause = cause_latest(causes, n_causes, NULL);
	if (!opt_equal(st_from, st_to))
		n += item_append(out, "shipment.status", exporter, order, ref, st_from, st_to,
		                 cause);
	if (!opt_equal(eta_from, eta_to))
		n +=
		    item_append(out, "shipment.eta", exporter, order, ref, eta_from, eta_to, cause);
	return n;
}

/* Append the items of every shipment of either state, by ref. */
static size_t diff_shipments(const json_t *old_state, const json_t *new_state, const char *exporter,
                             const char *order, const struct notify_cause *causes, size_t n_causes,
                             json_t *out)
{
	size_t cap = json_array_size(json_object_get(old_state, "shipments")) +
	             json_array_size(json_object_get(new_state, "shipments"));
	struct ship_ref *refs = xmalloc(cap * sizeof(*refs));
	size_t n_refs = 0, n = 0;

	n_refs = ship_refs_add(refs, n_refs, old_state, false);
	n_refs = ship_refs_add(refs, n_refs, new_state, true);
	qsort(refs, n_refs, sizeof(*refs), ship_ref_cmp);
	for (size_t i = 0; i < n_refs;) {
		const json_t *was = NULL, *now = NULL;
		size_t j = i;

		/* One group per ref; should a state repeat a ref, its first entry counts. */
		for (; j < n_refs && strcmp(refs[j].ref, refs[i].ref) == 0; j++) {
			if (refs[j].is_new && now == NULL)
				now = refs[j].obj;
			else if (!refs[j].is_new && was == NULL)
				was = refs[j].obj;
		}
		n += diff_shipment(refs[i].ref, was, now, exporter, order, causes, n_causes, out);
		i = j;
	}
	free(refs);
	return n;
}

/* Order C strings for qsort. */
static int str_cmp(const void *pa, const void *pb)
{
	return strcmp(*(const char *const *)pa, *(const char *const *)pb);
}

/* The order's anomaly words of state, sorted and joined by ","; NULL for none (caller frees). */
static char *anomalies_join(const json_t *state)
{
	const json_t *arr = json_object_get(json_object_get(state, "order"), "anomalies");
	const char **words = xmalloc(json_array_size(arr) * sizeof(*words));
	size_t n = 0, len = 0, i;
	const json_t *w;
	char *out = NULL;

	json_array_foreach(arr, i, w)
	{
		const char *s = json_string_value(w);

		if (s == NULL)
			continue;
		words[n++] = s;
		len += strlen(s) + 1;
	}
	if (n > 0) {
		qsort(words, n, sizeof(*words), str_cmp);
		out = xmalloc(len);
		len = 0;
		for (i = 0; i < n; i++) {
			size_t wl = strlen(words[i]);

			if (i > 0)
				out[len++] = ',';
			memcpy(out + len, words[i], wl);
			len += wl;
		}
		out[len] = '\0';
	}
	free(words);
	return out;
}

/* Append the order.status and order.anomaly items. */
static size_t diff_order(const json_t *old_state, const json_t *new_state, const char *exporter,
                         const char *order, const struct notify_cause *cause, json_t *out)
{
	const char *st_from = member_str(json_object_get(old_state, "order"), "status");
	const char *st_to = member_str(json_object_get(new_state, "order"), "status");
	char *an_from = anomalies_join(old_state);
	char *an_to = anomalies_join(new_state);
	size_t n = 0;

	if (!opt_equal(st_from, st_to))
		n += item_append(out, "order.status", exporter, order, NULL, st_from, st_to, cause);
	if (!opt_equal(an_from, an_to))
		n +=
		    item_append(out, "order.anomaly", exporter, order, NULL, an_from, an_to, cause);
	free(an_from);
	free(an_to);
	return n;
}

/* Append one item per change between old_state and new_state to out; see notify.h. */
size_t notify_diff(const json_t *old_state, const json_t *new_state, const char *exporter,
                   const char *order, const struct notify_cause *causes, size_t n_causes,
                   json_t *out)
{
	size_t n;

	if (!json_is_array(out))
		return 0;
	if (causes == NULL)
		n_causes = 0;
	n = diff_shipments(old_state, new_state, exporter, order, causes, n_causes, out);
	n += diff_order(old_state, new_state, exporter, order, cause_latest(causes, n_causes, NULL),
	                out);
	return n;
}

/* Write the 64 lowercase hex digits of HMAC-SHA256(secret, "<t>.<body>") to out, or "". */
void notify_sign(const char *secret, long long t, const char *body, size_t len, char out[65])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int md_len = 0;
	char prefix[32];
	int plen;
	unsigned char *msg;
	const unsigned char *mac;

	out[0] = '\0';
	if (secret == NULL || strlen(secret) > INT_MAX || (body == NULL && len > 0))
		return;
	plen = snprintf(prefix, sizeof(prefix), "%lld.", t);
	if (plen < 0 || (size_t)plen >= sizeof(prefix))
		return;
	msg = xmalloc((size_t)plen + len);
	memcpy(msg, prefix, (size_t)plen);
	if (len > 0)
		memcpy(msg + plen, body, len);
	mac = HMAC(EVP_sha256(), secret, (int)strlen(secret), msg, (size_t)plen + len, md, &md_len);
	free(msg);
	/* libcrypto can refuse (a FIPS provider refuses short keys): leave out empty. */
	if (mac == NULL || md_len * 2 != SIG_HEX_LEN)
		return;
	for (unsigned int i = 0; i < md_len; i++) {
		out[2 * i] = hex[md[i] >> 4];
		out[2 * i + 1] = hex[md[i] & 0x0f];
	}
	out[SIG_HEX_LEN] = '\0';
}

/* Write "t=<t>,v1=<hex>[,v1=<hex>...]" to out; 0 (and "") if it fails or does not fit. */
size_t notify_signature_header(const char *const *secrets, size_t n_secrets, long long t,
                               const char *body, size_t len, char *out, size_t cap)
{
	char sig[SIG_HEX_LEN + 1];
	size_t used;
	int w;

	if (out == NULL || cap == 0)
		return 0;
	out[0] = '\0';
	if (secrets == NULL || n_secrets == 0)
		return 0;
	w = snprintf(out, cap, "t=%lld", t);
	if (w < 0 || (size_t)w >= cap)
		goto fail;
	used = (size_t)w;
	for (size_t i = 0; i < n_secrets; i++) {
		notify_sign(secrets[i], t, body, len, sig);
		if (sig[0] == '\0')
			goto fail;
		w = snprintf(out + used, cap - used, ",v1=%s", sig);
		if (w < 0 || (size_t)w >= cap - used)
			goto fail;
		used += (size_t)w;
	}
	return used;
fail:
	/* A cut or partly signed header would only be refused: write nothing. */
	out[0] = '\0';
	return 0;
}

/* The delay before retry number attempt: 0 for 0, then 1 s doubling, capped at 5 minutes. */
unsigned notify_backoff_ms(unsigned attempt)
{
	unsigned ms = BACKOFF_FIRST_MS;

	if (attempt == 0)
		return 0;
	/* Double step by step and stop at the cap, so no shift can overflow. */
	for (unsigned i = 1; i < attempt && ms < BACKOFF_CAP_MS; i++)
		ms *= 2;
	return ms < BACKOFF_CAP_MS ? ms : BACKOFF_CAP_MS;
}

static const char *skip_space(const char *p)
{
	while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')
		p++;
	return p;
}

long long notify_payload_seq(const char *payload)
{
	const char *p = skip_space(payload);
	if (*p != '{')
		return -1;
	p = skip_space(p + 1);
	if (strncmp(p, "\"seq\"", 5) != 0)
		return -1;
	p = skip_space(p + 5);
	if (*p != ':')
		return -1;
	p = skip_space(p + 1);
	long long seq = 0;
	int digits = 0;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (++digits > 18) /* beyond any seq, and keeps seq from overflowing */
			return -1;
		seq = seq * 10 + (*p - '0');
	}
	if (digits == 0)
		return -1;
	p = skip_space(p);
	return *p == ',' || *p == '}' ? seq : -1;
}
