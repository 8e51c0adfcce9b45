/*
 * fuzz_engine_snapshot.c - the engine's state file (sluice/engine.h, "State
 * file"; docs/policy.md, "Engine snapshots") as a parser of untrusted bytes.
 *
 * Each input is restored twice into a fresh engine of a small fixed policy
 * (a GCRA, a calendar, a sliding log and a concurrency limit, a tier and an
 * override): as it is, and with its checksum made right (the last 8 bytes
 * rewritten), so that the fuzzer gets past the checksum to the container's
 * records and the limiter snapshots inside them. For every restore:
 *   - it never crashes (ASan/UBSan in CI);
 *   - it loads all or nothing: after an error the engine is as created, so
 *     a restore of a known good file into it succeeds (a binding left
 *     loaded would make it SLUICE_ESTATE);
 *   - on success, loaded + skipped_idle == entries, and the engine
 *     snapshots again and that file restores into a fresh engine with the
 *     same number of keys loaded.
 *
 * Seeds: SLUICE_ENGINE_SNAPSHOT_SEED_DIR=fuzz/corpus/engine_snapshot
 * build/fuzz/replay_engine_snapshot /dev/null writes a few valid files made
 * by the library itself, then exits.
 */
#include <sluice.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "fuzz.h"

#define SEC 1000000000ull
#define T0 (UINT64_C(1795392000) * SEC)

static const char policy_text[] =
	"policy \"fuzz\"\nscope token\nscope workspace\ntier pro x2\n"
	"limit minute per token rate 10/1m tiered\n"
	"limit day per token quota 100/1d@utc\n"
	"limit ws per workspace sliding 20/1m\n"
	"limit inflight per token concurrency 3 lease 30s\n"
	"override minute token \"vip\" 50 until 2100-01-01T00:00:00Z\n";

static char in_path[64], good_path[64], out_path[64];

static struct sluice_engine *engine(void)
{
	struct sluice_policy *p;
	struct sluice_policy_error err;
	struct sluice_engine *e;
	if (sluice_policy_parse(policy_text, sizeof policy_text - 1, NULL, &p, &err) != SLUICE_OK)
		abort();
	if (sluice_engine_create(&e, p, NULL) != SLUICE_OK)
		abort();
	return e;
}

static void request(struct sluice_engine *e, const char *tok, const char *ws, int32_t tier, bool keep)
{
	struct sluice_identity id[2] = { { tok, strlen(tok) }, { ws, ws ? strlen(ws) : 0 } };
	struct sluice_engine_request r;
	struct sluice_engine_decision d;
	memset(&r, 0, sizeof r);
	r.method = "GET";
	r.method_len = 3;
	r.path = "/";
	r.path_len = 1;
	r.identities = id;
	r.identity_count = 2;
	r.tier = tier;
	r.cost = 1;
	r.now_ns = T0;
	if (sluice_engine_check(e, &r, &d) != SLUICE_OK)
		abort();
	if (!keep)
		sluice_engine_release(e, &d);
}

/* A busy engine's state file at path. */
static void make_good(const char *path, int variant)
{
	struct sluice_engine *e = engine();
	for (int i = 0; i <= variant; i++) {
		request(e, "a", "w1", SLUICE_POLICY_NO_TIER, i == 0);
		request(e, "b", "w1", 0, false);
		request(e, "vip", NULL, SLUICE_POLICY_NO_TIER, true);
	}
	if (sluice_engine_snapshot(e, path, T0 + SEC, NULL) != SLUICE_OK)
		abort();
	sluice_engine_destroy(e);
}

static void spit(const char *path, const uint8_t *data, size_t size)
{
	FILE *f = fopen(path, "wb");
	if (f == NULL || (size > 0 && fwrite(data, 1, size, f) != size))
		abort();
	fclose(f);
}

static void check(const uint8_t *data, size_t size)
{
	struct sluice_snapshot_info info = { .size = sizeof info };
	struct sluice_engine *e = engine();
	spit(in_path, data, size);
	int rc = sluice_engine_restore(e, in_path, T0 + 10 * SEC, &info);
	if (rc != SLUICE_OK) {
		if (info.loaded != 0)
			abort();
		/* All or nothing: the engine is as created. */
		if (sluice_engine_restore(e, good_path, T0 + 10 * SEC, NULL) != SLUICE_OK)
			abort();
		sluice_engine_destroy(e);
		return;
	}
	if (info.loaded + info.skipped_idle != info.entries)
		abort();
	if (sluice_engine_snapshot(e, out_path, T0 + 10 * SEC, NULL) != SLUICE_OK)
		abort();
	sluice_engine_destroy(e);
	struct sluice_snapshot_info again = { .size = sizeof again };
	e = engine();
	if (sluice_engine_restore(e, out_path, T0 + 10 * SEC, &again) != SLUICE_OK ||
	    again.loaded != info.loaded)
		abort();
	sluice_engine_destroy(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	check(data, size);
	if (size >= 8) {
		uint8_t *fixed = malloc(size);
		memcpy(fixed, data, size);
		uint64_t sum = XXH3_64bits(fixed, size - 8);
		memcpy(fixed + size - 8, &sum, 8);
		check(fixed, size);
		free(fixed);
	}
	return 0;
}

static void cleanup(void)
{
	remove(in_path);
	remove(good_path);
	remove(out_path);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	int pid = (int)getpid();
	snprintf(in_path, sizeof in_path, "/tmp/sluice_fuzz_esnap_in.%d", pid);
	snprintf(good_path, sizeof good_path, "/tmp/sluice_fuzz_esnap_good.%d", pid);
	snprintf(out_path, sizeof out_path, "/tmp/sluice_fuzz_esnap_out.%d", pid);
	const char *dir = getenv("SLUICE_ENGINE_SNAPSHOT_SEED_DIR");
	if (dir != NULL) {
		char path[512];
		for (int v = 0; v < 3; v++) {
			snprintf(path, sizeof path, "%s/seed_%d", dir, v);
			make_good(path, v);
		}
		exit(0);
	}
	make_good(good_path, 0);
	atexit(cleanup);
	return 0;
}
