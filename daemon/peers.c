/*
 * peers.c - per-address records; see peers.h.
 *
 * An open-addressing hash table keyed by peerkey_format(): the textual
 * address, or an IPv6 address's /64 prefix.  A record lives while the
 * peer has connections or failed within the last minute; idle records are
 * dropped when the table is rebuilt, once half full, so it holds roughly
 * the peers that are connected now.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include "peers.h"

#include "peerkey.h"

#define PEER_HOST_MAX PEERKEY_MAX
#define FAIL_WINDOW_S 60

struct peer {
	char host[PEER_HOST_MAX];
	unsigned conns;
	unsigned failed;     /* failed hellos since window_start */
	time_t window_start; /* start of the current minute of failures */
};

static struct peer **table;
static size_t table_size; /* a power of two */
static size_t table_used;

/* FNV-1a of the address. */
static size_t host_hash(const char *s)
{
	size_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (unsigned char)*s) * 1099511628211ull;
	return h;
}

/* Is this record worth keeping? */
static bool peer_live(const struct peer *p, time_t now)
{
	return p->conns > 0 || (p->failed > 0 && now - p->window_start < FAIL_WINDOW_S);
}

/* Put a record in its slot (the table has room). */
static void table_put(struct peer *p)
{
	size_t i = host_hash(p->host) & (table_size - 1);
	while (table[i] != NULL)
		i = (i + 1) & (table_size - 1);
	table[i] = p;
}

/* Rebuild the table at new_size, dropping idle records. */
static void table_rebuild(size_t new_size, time_t now)
{
	struct peer **old = table;
	size_t old_size = table_size;
	table = calloc(new_size, sizeof(*table));
	if (table == NULL)
		abort();
	table_size = new_size;
	table_used = 0;
	for (size_t i = 0; i < old_size; i++) {
		if (old[i] == NULL)
			continue;
		if (peer_live(old[i], now)) {
			table_put(old[i]);
			table_used++;
		} else {
			free(old[i]);
		}
	}
	free(old);
}

void peer_host(const struct sockaddr *sa, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "?";
	if (sa->sa_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, host, sizeof(host));
	else if (sa->sa_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, host,
		          sizeof(host));
	snprintf(out, cap, "%s", host);
}

struct peer *peer_get(const struct sockaddr *sa)
{
	char host[PEER_HOST_MAX];
	peerkey_format(sa, host, sizeof(host));
	time_t now = time(NULL);
	if (table == NULL)
		table_rebuild(256, now);
	size_t i = host_hash(host) & (table_size - 1);
	for (; table[i] != NULL; i = (i + 1) & (table_size - 1)) {
		if (strcmp(table[i]->host, host) == 0)
			return table[i];
	}
	if ((table_used + 1) * 2 > table_size) {
		/* Idle records go first; grow only if still crowded. */
		table_rebuild(table_size, now);
		if ((table_used + 1) * 2 > table_size)
			table_rebuild(table_size * 2, now);
	}
	struct peer *p = calloc(1, sizeof(*p));
	if (p == NULL)
		abort();
	snprintf(p->host, sizeof(p->host), "%s", host);
	table_put(p);
	table_used++;
	return p;
}

void peer_conn_opened(struct peer *p)
{
	p->conns++;
}

void peer_conn_closed(struct peer *p)
{
	if (p->conns > 0)
		p->conns--;
}

unsigned peer_conns(const struct peer *p)
{
	return p->conns;
}

unsigned peer_hello_failed(struct peer *p, time_t now)
{
	if (now - p->window_start >= FAIL_WINDOW_S) {
		p->window_start = now;
		p->failed = 0;
	}
	return ++p->failed;
}

unsigned peer_failed_hellos(const struct peer *p, time_t now)
{
	return now - p->window_start < FAIL_WINDOW_S ? p->failed : 0;
}

void peers_clear(void)
{
	for (size_t i = 0; i < table_size; i++)
		free(table[i]);
	free(table);
	table = NULL;
	table_size = table_used = 0;
}
