/*
 * stress_engine_snapshot.c - engine state files written while other
 * threads check requests and a reloader swaps the policy, each restored and
 * checked against the documented bound. A plain executable (runs under
 * TSan).
 *
 * Every request is at one instant T, so nothing refills: a request of token
 * k (workspace k % WS) takes one unit of "tok" (quota L per token per day)
 * and of "ws" (quota WL per workspace per day), all-or-nothing. CHECKERS
 * threads send requests until every token is refused, counting each
 * admission after the check returns (release). The reloader swaps between
 * two policies that differ only in an unrelated limit ("other", changed
 * numbers), so "tok" and "ws" are kept across every reload with their
 * state. The snapshot thread reads every token's count (acquire) before
 * each snapshot (A_start) and writes the state file.
 *
 * Afterwards each file is restored into a fresh engine; there a token's
 * used count B of "tok" must satisfy A_start <= B <= A_total (the restore
 * holds a state the limit really had during the snapshot: it never invents
 * consumption and never loses what was counted before the snapshot began),
 * and a final snapshot after the checkers stopped restores exactly
 * A_total. Prints "N passed, N failed".
 */
#include <pthread.h>
#include <sluice.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEC 1000000000ull
#define T (UINT64_C(1795392000) * SEC + 3600 * SEC)
#define L 300
#define TOKENS 32
#define WS 4
#define CHECKERS 2
#define SNAPS 8

static const char *const policies[2] = {
	"policy \"a\"\nscope token\nscope workspace\n"
	"limit tok per token quota 300/1d@utc\n"
	"limit ws per workspace quota 100000/1d@utc\n"
	"limit other per token rate 100000/1s\n",
	"policy \"b\"\nscope token\nscope workspace\n"
	"limit tok per token quota 300/1d@utc\n"
	"limit ws per workspace quota 100000/1d@utc\n"
	"limit other per token rate 100001/1s\n",
};

static struct sluice_engine *eng;
static _Atomic uint64_t admitted[TOKENS];
static _Atomic bool done;
/* Snapshots written so far: each checker waits for a new one every PACE
 * admissions, so that snapshots interleave with checks on any scheduler. */
static _Atomic int taken;
#define PACE 600
static char dir[64];
static int passed, failed;

static void expect(bool ok, const char *what, long a, long b)
{
	if (ok) {
		passed++;
	} else {
		failed++;
		fprintf(stderr, "FAIL: %s (%ld, %ld)\n", what, a, b);
	}
}

static struct sluice_policy *parse(int which)
{
	struct sluice_policy *p;
	struct sluice_policy_error err;
	if (sluice_policy_parse(policies[which], strlen(policies[which]), NULL, &p, &err) != SLUICE_OK)
		abort();
	return p;
}

static void request_of(int k, struct sluice_identity id[2], char tok[8], char ws[8],
		       struct sluice_engine_request *r)
{
	snprintf(tok, 8, "t%02d", k);
	snprintf(ws, 8, "w%d", k % WS);
	id[0] = (struct sluice_identity){ tok, strlen(tok) };
	id[1] = (struct sluice_identity){ ws, strlen(ws) };
	memset(r, 0, sizeof *r);
	r->method = "GET";
	r->method_len = 3;
	r->path = "/";
	r->path_len = 1;
	r->identities = id;
	r->identity_count = 2;
	r->tier = SLUICE_POLICY_NO_TIER;
	r->cost = 1;
	r->now_ns = T;
}

static void *checker(void *arg)
{
	unsigned seed = (unsigned)(uintptr_t)arg;
	bool refused[TOKENS] = { false };
	int left = TOKENS, since = 0;
	while (left > 0) {
		if (++since == PACE) {
			since = 0;
			/* acquire: pairs with the snapshotter's release add. */
			int seen = atomic_load_explicit(&taken, memory_order_acquire); /* acquire: why above */
			for (int w = 0; w < 2000 && seen < SNAPS &&
					atomic_load_explicit(&taken, memory_order_acquire) == seen; w++) /* acquire: as above */
				usleep(100);
		}
		int k = (int)(rand_r(&seed) % TOKENS);
		if (refused[k])
			continue;
		struct sluice_identity id[2];
		struct sluice_engine_request r;
		struct sluice_engine_decision d;
		char tok[8], ws[8];
		request_of(k, id, tok, ws, &r);
		if (sluice_engine_check(eng, &r, &d) != SLUICE_OK)
			abort();
		if (d.d.allowed) {
			/* release: after the admission; pairs with the acquire
			 * reads of the snapshot thread and the final check. */
			atomic_fetch_add_explicit(&admitted[k], 1, memory_order_release); /* release: why above */
		} else if (strcmp(d.limit_name, "tok") == 0) {
			refused[k] = true;
			left--;
		}
	}
	return NULL;
}

static void *reloader(void *arg)
{
	(void)arg;
	/* acquire: pairs with the release store of done after the checkers
	 * joined. */
	for (int i = 0; !atomic_load_explicit(&done, memory_order_acquire); i++) { /* acquire: why above */
		struct sluice_policy *p = parse((i + 1) % 2);
		if (sluice_engine_reload(eng, p) != SLUICE_OK)
			abort();
		usleep(2000);
	}
	return NULL;
}

static uint64_t a_start[SNAPS][TOKENS];
static int snaps;

static void *snapshotter(void *arg)
{
	(void)arg;
	/* acquire: as in reloader. */
	while (snaps < SNAPS && !atomic_load_explicit(&done, memory_order_acquire)) { /* acquire: why above */
		char path[128];
		for (int k = 0; k < TOKENS; k++)
			/* acquire: pairs with the checkers' release adds. */
			a_start[snaps][k] = atomic_load_explicit(&admitted[k], memory_order_acquire); /* acquire: why above */
		snprintf(path, sizeof path, "%s/s%d", dir, snaps);
		if (sluice_engine_snapshot(eng, path, T, NULL) != SLUICE_OK)
			abort();
		snaps++;
		/* release: publishes a_start and the file to the checkers that
		 * wait for it (only pacing: main reads both after the join). */
		atomic_fetch_add_explicit(&taken, 1, memory_order_release); /* release: why above */
		usleep(500);
	}
	return NULL;
}

/* The used count of "tok" of every token after restoring path. */
static void restored(const char *path, uint64_t used[TOKENS])
{
	struct sluice_engine *e;
	if (sluice_engine_create(&e, parse(0), NULL) != SLUICE_OK)
		abort();
	struct sluice_snapshot_info info = { .size = sizeof info };
	int rc = sluice_engine_restore(e, path, T, &info);
	expect(rc == SLUICE_OK, info.message, rc, 0);
	for (int k = 0; k < TOKENS; k++) {
		struct sluice_identity id[2];
		struct sluice_engine_request r;
		struct sluice_engine_usage u[4];
		size_t n = 0;
		char tok[8], ws[8];
		request_of(k, id, tok, ws, &r);
		if (sluice_engine_usage(e, &r, u, 4, &n) != SLUICE_OK)
			abort();
		used[k] = u[0].used; /* "tok" is limit 0 */
	}
	sluice_engine_destroy(e);
}

int main(void)
{
	snprintf(dir, sizeof dir, "/tmp/sluice_stress_esnap_XXXXXX");
	if (mkdtemp(dir) == NULL)
		abort();
	if (sluice_engine_create(&eng, parse(0), NULL) != SLUICE_OK)
		abort();
	pthread_t c[CHECKERS], rl, sn;
	for (int i = 0; i < CHECKERS; i++)
		pthread_create(&c[i], NULL, checker, (void *)(uintptr_t)(i + 1));
	pthread_create(&rl, NULL, reloader, NULL);
	pthread_create(&sn, NULL, snapshotter, NULL);
	for (int i = 0; i < CHECKERS; i++)
		pthread_join(c[i], NULL);
	/* release: pairs with the acquire loads of the reloader and the
	 * snapshotter. */
	atomic_store_explicit(&done, true, memory_order_release); /* release: why above */
	pthread_join(rl, NULL);
	pthread_join(sn, NULL);

	uint64_t total[TOKENS], used[TOKENS];
	for (int k = 0; k < TOKENS; k++) {
		/* relaxed: the checkers were joined. */
		total[k] = atomic_load_explicit(&admitted[k], memory_order_relaxed); /* relaxed: why above */
		expect(total[k] == L, "a token admitted exactly its quota", (long)total[k], L);
	}
	for (int s = 0; s < snaps; s++) {
		char path[128];
		snprintf(path, sizeof path, "%s/s%d", dir, s);
		restored(path, used);
		for (int k = 0; k < TOKENS; k++)
			expect(a_start[s][k] <= used[k] && used[k] <= total[k],
			       "A_start <= restored used <= A_total", (long)a_start[s][k], (long)used[k]);
	}
	/* A snapshot after the last admission (a graceful stop) loses nothing. */
	char path[128];
	snprintf(path, sizeof path, "%s/final", dir);
	if (sluice_engine_snapshot(eng, path, T, NULL) != SLUICE_OK)
		abort();
	restored(path, used);
	for (int k = 0; k < TOKENS; k++)
		expect(used[k] == total[k], "the final snapshot restores exactly", (long)used[k], (long)total[k]);
	sluice_engine_destroy(eng);
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	if (system(cmd) != 0)
		failed++;
	printf("%d snapshots under traffic and reloads; %d passed, %d failed\n", snaps, passed, failed);
	return failed == 0 ? 0 : 1;
}
