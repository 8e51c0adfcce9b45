/*
 * fuzz_snapshot.c - the keyed limiter's snapshot format (sluice/snapshot.h,
 * docs/limiter.md "Snapshots") as a parser of untrusted bytes.
 *
 * Each input is restored twice: as it is, and with its checksum made right
 * (the last 8 bytes rewritten), so that the fuzzer gets past the checksum
 * and reaches the structure and every kind's saved-state checks. The
 * limiter restored into has the policy the file's header names when those
 * numbers make a valid policy (so states load), else a default one. For
 * every restore:
 *   - it never crashes (ASan/UBSan in CI), and it loads all or nothing: on
 *     an error the limiter has no entry;
 *   - on success, loaded + skipped_idle == entries, and the limiter holds
 *     `loaded` keys; re-serialized at the file's time it restores again
 *     with every entry loaded, into the very same state: the same entries
 *     with the same saved words (a fixed point after one round), compared
 *     entry by entry, since the order of the entries is the table's and two
 *     keys of one probe sequence sit in the order they were inserted
 *     (regression: corpus/snapshot/regress_probe_order_not_walk_order).
 *
 * Seeds: SLUICE_SNAPSHOT_SEED_DIR=fuzz/corpus/snapshot
 * build/fuzz/replay_snapshot /dev/null writes a few small valid files made
 * by the library itself (every kind; a policy of several limits; an empty
 * limiter), then exits.
 */
#include <sluice.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "fuzz.h"
#include "limiter/limiter_internal.h"

static const char secret[] = "fuzz_snapshot";

static struct sluice_limiter *make(const struct sluice_limit *l, size_t n)
{
	struct sluice_limiter_options o;
	struct sluice_limiter *lim = NULL;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.hash_secret = secret;
	o.hash_secret_len = sizeof secret;
	if (sluice_limiter_create(&lim, l, n, &o) != SLUICE_OK)
		return NULL;
	return lim;
}

static uint64_t rd64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return v;
}

static uint32_t rd32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* The policy the header names, if its numbers make one; else 0. */
static size_t policy_of(const uint8_t *p, size_t len, struct sluice_limit *l)
{
	if (len < 32)
		return 0;
	uint32_t n = rd32(p + 12);
	if (n == 0 || n > SLUICE_LIMITER_MAX_LIMITS || len < 32 + (size_t)n * 32)
		return 0;
	memset(l, 0, n * sizeof *l);
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *f = p + 32 + (size_t)i * 32;
		uint64_t a = rd64(f + 8), b = rd64(f + 16), c = rd64(f + 24);
		int rc = SLUICE_EINVAL;
		l[i].kind = rd32(f);
		switch (l[i].kind) {
		case SLUICE_LIMIT_GCRA:
			rc = sluice_rate_init(&l[i].rate, a, b, c);
			break;
		case SLUICE_LIMIT_SLIDING_LOG:
			rc = sluice_window_log_config_init(&l[i].log, a, b);
			break;
		case SLUICE_LIMIT_SLIDING_COUNTER:
			rc = sluice_window_counter_config_init(&l[i].counter, a, b);
			break;
		case SLUICE_LIMIT_CALENDAR:
			rc = sluice_calendar_config_init(&l[i].calendar, a, b);
			break;
		case SLUICE_LIMIT_SLOTS:
			rc = sluice_slots_config_init(&l[i].slots, a, b, c);
			break;
		default:
			break;
		}
		if (rc != SLUICE_OK)
			return 0;
	}
	return n;
}

static uint64_t live(struct sluice_limiter *lim)
{
	struct sluice_limiter_stats s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	if (sluice_limiter_stats(lim, &s) != SLUICE_OK)
		abort();
	return s.live_keys;
}

/* A limiter's state, entry by entry (key, then every saved word), in the
 * order of its table: sluice__limiter_visit(), the snapshot's own walk. */
struct rec {
	unsigned char *b;
	size_t len;
};
struct recs {
	struct rec *r;
	size_t n, cap, nlimits;
};

static int collect(void *user, const void *key, size_t key_len, const uint64_t *words,
		   const size_t *nwords)
{
	struct recs *s = user;
	size_t total = 0;

	for (size_t u = 0; u < s->nlimits; u++)
		total += nwords[u];
	if (s->n == s->cap) {
		s->cap = s->cap ? 2 * s->cap : 16;
		s->r = realloc(s->r, s->cap * sizeof *s->r);
		if (s->r == NULL)
			abort();
	}
	size_t len = sizeof key_len + key_len + s->nlimits * sizeof *nwords + total * sizeof *words;
	unsigned char *b = malloc(len), *p = b;
	if (b == NULL)
		abort();
	memcpy(p, &key_len, sizeof key_len), p += sizeof key_len;
	memcpy(p, key, key_len), p += key_len;
	memcpy(p, nwords, s->nlimits * sizeof *nwords), p += s->nlimits * sizeof *nwords;
	memcpy(p, words, total * sizeof *words);
	s->r[s->n++] = (struct rec){ b, len };
	return 0;
}

static int cmp_rec(const void *x, const void *y)
{
	const struct rec *a = x, *b = y;
	if (a->len != b->len)
		return a->len < b->len ? -1 : 1;
	return memcmp(a->b, b->b, a->len);
}

static struct recs state_of(struct sluice_limiter *lim, uint64_t now, size_t nlimits)
{
	struct recs s = { NULL, 0, 0, nlimits };
	if (sluice__limiter_visit(lim, now, collect, &s) != SLUICE_OK)
		abort();
	if (s.n != 0)
		qsort(s.r, s.n, sizeof *s.r, cmp_rec);
	return s;
}

/* Do a and b hold the same entries with the same saved words? The table
 * order is not part of the state: two keys of one probe sequence sit in the
 * order they were inserted, which a restore takes from the snapshot's walk
 * (a slot order that need not be the probe order). */
static bool same_state(struct sluice_limiter *a, struct sluice_limiter *b, uint64_t now,
		       size_t nlimits)
{
	struct recs x = state_of(a, now, nlimits), y = state_of(b, now, nlimits);
	bool same = x.n == y.n;
	for (size_t i = 0; i < x.n && same; i++)
		same = cmp_rec(&x.r[i], &y.r[i]) == 0;
	for (size_t i = 0; i < x.n; i++)
		free(x.r[i].b);
	for (size_t i = 0; i < y.n; i++)
		free(y.r[i].b);
	free(x.r);
	free(y.r);
	return same;
}

static void one(const uint8_t *data, size_t size)
{
	struct sluice_limit l[SLUICE_LIMITER_MAX_LIMITS];
	size_t n = policy_of(data, size, l);
	if (n == 0) {
		memset(l, 0, sizeof l[0]);
		l[0].kind = SLUICE_LIMIT_GCRA;
		if (sluice_rate_init(&l[0].rate, 3, 100, 3) != SLUICE_OK)
			abort();
		n = 1;
	}
	struct sluice_limiter *a = make(l, n);
	if (a == NULL)
		return; /* the policy is valid per limit but not as a whole (two slots) */
	struct sluice_snapshot_info info;
	memset(&info, 0, sizeof info);
	info.size = sizeof info;
	uint64_t now = size >= 32 ? rd64(data + 24) : 0;
	int rc = sluice_limiter_restore_mem(a, data, size, now, &info);
	if (rc != SLUICE_OK) {
		if (live(a) != 0 || info.loaded != 0 || info.message[0] == '\0')
			abort(); /* half-loaded, or refused without saying why */
		sluice_limiter_destroy(a);
		return;
	}
	if (info.loaded + info.skipped_idle != info.entries || live(a) != info.loaded)
		abort();

	void *b1, *b2;
	size_t n1, n2;
	if (sluice_limiter_snapshot_mem(a, now, &b1, &n1, NULL) != SLUICE_OK)
		abort();
	struct sluice_limiter *b = make(l, n);
	if (b == NULL || sluice_limiter_restore_mem(b, b1, n1, now, &info) != SLUICE_OK ||
	    info.skipped_idle != 0 || info.loaded != live(a) ||
	    sluice_limiter_snapshot_mem(b, now, &b2, &n2, NULL) != SLUICE_OK)
		abort();
	if (n1 != n2 || !same_state(a, b, now, n))
		abort(); /* not a fixed point */
	free(b1);
	free(b2);
	sluice_limiter_destroy(a);
	sluice_limiter_destroy(b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	one(data, size);
	if (size >= 8 + 32) {
		uint8_t *fixed = malloc(size);
		memcpy(fixed, data, size);
		uint64_t sum = XXH3_64bits(fixed, size - 8);
		memcpy(fixed + size - 8, &sum, 8);
		one(fixed, size);
		free(fixed);
	}
	return 0;
}

/* ---- seeds ---- */

static void write_seed(const char *dir, const char *name, struct sluice_limiter *lim, uint64_t now)
{
	char path[4096];
	void *buf;
	size_t len;
	snprintf(path, sizeof path, "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	if (f == NULL || sluice_limiter_snapshot_mem(lim, now, &buf, &len, NULL) != SLUICE_OK ||
	    fwrite(buf, 1, len, f) != len)
		abort();
	fclose(f);
	free(buf);
}

static void seeds(const char *dir)
{
	const uint64_t t = UINT64_C(1700000000000000000), sec = 1000000000u;
	struct sluice_limit l[4];
	struct sluice_decision d;
	sluice_slot_handle h;
	memset(l, 0, sizeof l);
	l[0].kind = SLUICE_LIMIT_GCRA;
	l[1].kind = SLUICE_LIMIT_SLIDING_LOG;
	l[2].kind = SLUICE_LIMIT_CALENDAR;
	l[3].kind = SLUICE_LIMIT_SLOTS;
	if (sluice_rate_init(&l[0].rate, 5, sec, 5) != SLUICE_OK ||
	    sluice_window_log_config_init(&l[1].log, 4, sec) != SLUICE_OK ||
	    sluice_calendar_config_init(&l[2].calendar, 100, 86400 * sec) != SLUICE_OK ||
	    sluice_slots_config_init(&l[3].slots, 2, 10 * sec, sec) != SLUICE_OK)
		abort();
	struct sluice_limit c;
	memset(&c, 0, sizeof c);
	c.kind = SLUICE_LIMIT_SLIDING_COUNTER;
	if (sluice_window_counter_config_init(&c.counter, 6, sec) != SLUICE_OK)
		abort();

	struct sluice_limiter *all = make(l, 4);
	const char *keys[] = { "", "a", "token-1234", "10.0.0.1" };
	for (int i = 0; i < 4; i++)
		if (sluice_limiter_acquire(all, keys[i], strlen(keys[i]), 1 + (unsigned)i % 3, t,
					   &d, &h) != SLUICE_OK)
			abort();
	write_seed(dir, "all_kinds", all, t + sec / 2);
	write_seed(dir, "empty", make(l, 4), t);
	for (int k = 0; k < 4; k++) {
		struct sluice_limiter *one_kind = make(k == 3 ? &c : &l[k], 1);
		for (int i = 0; i < 3; i++)
			if (sluice_limiter_admit(one_kind, keys[i], strlen(keys[i]), 1 + (unsigned)i,
						 t + (uint64_t)i * sec / 10, &d) != SLUICE_OK)
				abort();
		char name[32];
		snprintf(name, sizeof name, "kind_%d", k);
		write_seed(dir, name, one_kind, t + sec / 3);
	}
	/* The limiters are left for the process's exit. */
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	const char *dir = getenv("SLUICE_SNAPSHOT_SEED_DIR");
	if (dir != NULL) {
		seeds(dir);
		exit(0);
	}
	return 0;
}
