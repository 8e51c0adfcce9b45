/*
 * redis_cluster.c - Redis Cluster routing for the backend: the hash slot of a
 * key (CRC16 of its {hash tag}), the node table, the slot map learnt from
 * CLUSTER SLOTS and corrected by MOVED, and the parsing of MOVED/ASK
 * redirections (docs/redis.md, "Redis Cluster").
 */
#include "redis/redis_internal.h"

#ifdef SLUICE_WITH_REDIS

#include <string.h>

/* ---- cluster hash slots ---- */

/* CRC16-CCITT (XModem), the hash of Redis Cluster's key slots. */
static uint16_t crc16(const char *p, size_t n)
{
	uint16_t crc = 0;

	for (size_t i = 0; i < n; i++) {
		crc ^= (uint16_t)((uint8_t)p[i] << 8);
		for (int b = 0; b < 8; b++)
			crc = (uint16_t)(crc & 0x8000 ? (crc << 1) ^ 0x1021 : crc << 1);
	}
	return crc;
}

/* The slot of a key: of the part inside the first {...} if that is not
 * empty, else of the whole key (the Redis Cluster specification). */
uint32_t sluice__redis_key_slot(const char *k, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (k[i] == '{') {
			for (size_t j = i + 1; j < n; j++) {
				if (k[j] == '}') {
					if (j > i + 1)
						return crc16(k + i + 1, j - i - 1) & (CLUSTER_SLOTS - 1);
					break;
				}
			}
			break;
		}
	}
	return crc16(k, n) & (CLUSTER_SLOTS - 1);
}

/* ---- cluster ---- */

/* The node for host:port, added if new; -1 if the table is full. */
static int node_for(struct sluice_redis *r, const char *host, size_t host_len, long long port)
{
	if (host_len == 0 || host_len >= HOST_MAX || port <= 0 || port > 65535)
		return -1;
	for (uint32_t i = 0; i < r->nnodes; i++)
		if (r->nodes[i].port == port && strlen(r->nodes[i].host) == host_len &&
		    memcmp(r->nodes[i].host, host, host_len) == 0)
			return (int)i;
	if (r->nnodes == MAX_NODES)
		return -1;
	struct node *nd = &r->nodes[r->nnodes];
	memset(nd, 0, sizeof *nd);
	memcpy(nd->host, host, host_len);
	nd->host[host_len] = '\0';
	nd->port = (int)port;
	nd->backoff_ns = r->backoff_min_ns;
	return (int)r->nnodes++;
}

/* Learn the whole slot map from nd (CLUSTER SLOTS). Best effort: a failure
 * leaves the map as it was (MOVED replies still correct it slot by slot). */
void sluice__redis_refresh_slots(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns)
{
	if (!sluice__redis_arm_timeout(r, nd, deadline_ns))
		return;
	r->st.round_trips++;
	redisReply *rep = redisCommand(nd->ctx, "CLUSTER SLOTS");
	if (rep == NULL) {
		r->st.io_errors++;
		sluice__redis_drop(nd);
		return;
	}
	if (rep->type == REDIS_REPLY_ARRAY) {
		for (size_t i = 0; i < rep->elements; i++) {
			const redisReply *e = rep->element[i];
			if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
			    e->element[0]->type != REDIS_REPLY_INTEGER ||
			    e->element[1]->type != REDIS_REPLY_INTEGER ||
			    e->element[2]->type != REDIS_REPLY_ARRAY || e->element[2]->elements < 2 ||
			    e->element[2]->element[0]->type != REDIS_REPLY_STRING ||
			    e->element[2]->element[1]->type != REDIS_REPLY_INTEGER)
				continue;
			long long lo = e->element[0]->integer, hi = e->element[1]->integer;
			const redisReply *m = e->element[2];
			int ni = node_for(r, m->element[0]->str, m->element[0]->len, m->element[1]->integer);
			if (ni < 0 || lo < 0 || hi >= CLUSTER_SLOTS || lo > hi)
				continue;
			memset(r->slot_node + lo, ni, (size_t)(hi - lo + 1));
		}
	}
	freeReplyObject(rep);
}

/* A redirection "<word> <slot> <host>:<port>" (MOVED or ASK), the word
 * and its space being `skip` bytes: the node it names (added if new) and
 * *slot, or -1 if malformed or the node table is full. */
int sluice__redis_parse_redirect(struct sluice_redis *r, const redisReply *rep, size_t skip, uint32_t *slot)
{
	const char *s = rep->str + skip, *end = rep->str + rep->len;
	long long sl = 0, port = 0;

	if (s == end || *s < '0' || *s > '9')
		return -1;
	while (s < end && *s >= '0' && *s <= '9' && sl < CLUSTER_SLOTS)
		sl = sl * 10 + (*s++ - '0');
	if (s >= end || *s++ != ' ' || sl >= CLUSTER_SLOTS)
		return -1;
	const char *colon = NULL;
	for (const char *q = s; q < end; q++)
		if (*q == ':')
			colon = q;
	if (colon == NULL || colon + 1 == end)
		return -1;
	for (const char *q = colon + 1; q < end && port <= 65535; q++) {
		if (*q < '0' || *q > '9')
			return -1;
		port = port * 10 + (*q - '0');
	}
	*slot = (uint32_t)sl;
	return node_for(r, s, (size_t)(colon - s), port);
}

/* "MOVED <slot> <host>:<port>": point the slot at that node. */
bool sluice__redis_learn_moved(struct sluice_redis *r, const redisReply *rep)
{
	uint32_t slot;
	int ni = sluice__redis_parse_redirect(r, rep, 6, &slot);
	if (ni < 0)
		return false;
	r->slot_node[slot] = (uint8_t)ni;
	return true;
}

uint32_t sluice__redis_node_of(const struct sluice_redis *r, const struct prepared *p)
{
	return r->slot_node != NULL ? r->slot_node[p->slot] : 0;
}

#endif /* SLUICE_WITH_REDIS */
