/*
 * top.c - the engine's top-N: the n busiest keys of one binding, kept in a
 * bounded min-heap in the caller's array while the executor walks the
 * binding's table (sluice_engine_top(); no allocation), then sorted busiest
 * first. Order: higher usage first, ties by key bytes ascending.
 */
#include <string.h>

#include "common/util_internal.h"
#include "engine/engine_internal.h"

/* a "less busy" than b: lower usage, or equal usage and a larger key. */
static int top_cmp(const struct sluice_engine_top *a, const struct sluice_engine_top *b)
{
	if (a->used != b->used)
		return a->used < b->used ? -1 : 1;
	size_t la = SLUICE_MIN((size_t)a->key_len, (size_t)SLUICE_ENGINE_TOP_KEY);
	size_t lb = SLUICE_MIN((size_t)b->key_len, (size_t)SLUICE_ENGINE_TOP_KEY);
	int c = memcmp(a->key, b->key, SLUICE_MIN(la, lb));
	if (c == 0)
		c = la < lb ? -1 : la > lb ? 1 : 0;
	return -c;
}

static void sift_down(struct sluice_engine_top *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && top_cmp(&h[l], &h[m]) < 0)
			m = l;
		if (r < n && top_cmp(&h[r], &h[m]) < 0)
			m = r;
		if (m == i)
			return;
		struct sluice_engine_top t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static void sift_up(struct sluice_engine_top *h, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (top_cmp(&h[i], &h[p]) >= 0)
			return;
		struct sluice_engine_top t = h[i];
		h[i] = h[p];
		h[p] = t;
		i = p;
	}
}

void sluice__top_visit(void *user, const void *key, size_t key_len, const struct sluice_decision *d)
{
	struct sluice__top_heap *c = user;
	struct sluice_engine_top rec;

	rec.count = d->limit;
	rec.remaining = d->remaining;
	rec.used = d->remaining < d->limit ? d->limit - d->remaining : 0;
	if (rec.used == 0)
		return; /* idle keys are not "busy" */
	rec.key_len = (uint32_t)key_len;
	memset(rec.key, 0, sizeof rec.key);
	memcpy(rec.key, key, SLUICE_MIN(key_len, (size_t)SLUICE_ENGINE_TOP_KEY));
	if (c->n < c->cap) {
		c->heap[c->n] = rec;
		sift_up(c->heap, c->n++);
	} else if (top_cmp(&rec, &c->heap[0]) > 0) {
		c->heap[0] = rec;
		sift_down(c->heap, c->n, 0);
	}
}


size_t sluice__top_sort(struct sluice__top_heap *h)
{
	/* Heap sort: repeatedly move the least busy to the end. */
	for (size_t m = h->n; m > 1; m--) {
		struct sluice_engine_top t = h->heap[0];
		h->heap[0] = h->heap[m - 1];
		h->heap[m - 1] = t;
		sift_down(h->heap, m - 1, 0);
	}
	return h->n;
}
