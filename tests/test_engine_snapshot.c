/*
 * test_engine_snapshot.c - the engine's state file (sluice/engine.h, "State
 * file"): seed 002's state carried across a restart, a restore after a
 * policy change, bad files refused with nothing loaded, the state file at
 * create, periodic snapshots and the one at destroy.
 */
#include "engine_test_util.h"
#include "limit_util.h"

#include <sluice/snapshot.h>

#include <unistd.h>

static char dir[64];

static void make_dir(void)
{
	snprintf(dir, sizeof dir, "/tmp/sluice_esnap_XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
	char cmd[128];
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(engine_snapshot, .init = make_dir, .fini = remove_dir);

static const char *file(const char *name)
{
	static char path[4][128];
	static int k;
	k = (k + 1) % 4;
	snprintf(path[k], sizeof path[k], "%s/%s", dir, name);
	return path[k];
}

/* Every usage record of the request's key at now. */
static size_t usage_all(struct sluice_engine *e, struct req *q, uint64_t now,
			struct sluice_engine_usage *u)
{
	size_t n = 0;
	q->r.now_ns = now;
	cr_assert_eq(sluice_engine_usage(e, &q->r, u, SLUICE_POLICY_MAX_LIMITS, &n), SLUICE_OK);
	return n;
}

static uint64_t used_at(struct sluice_engine *e, struct req *q, uint64_t now, const char *name)
{
	q->r.now_ns = now;
	return used_of(e, NULL, q, name);
}

/* Seed 002 after 30 completed requests and 5 in flight of tok_a in ws_1,
 * and 7 of tok_b, at DAY0 + 10 s. */
static struct sluice_engine *seed002_busy(struct sluice_engine_decision held[5])
{
	struct sluice_engine *e = engine_of(load_file("seed002.policy"));
	struct req a, b;
	req_init(&a, "GET", "/v1/items", "tok_a", "ws_1", DAY0 + 10 * SEC);
	req_init(&b, "GET", "/v1/items", "tok_b", "ws_1", DAY0 + 10 * SEC);
	for (int i = 0; i < 30; i++)
		cr_assert(run(e, &a).d.allowed);
	for (int i = 0; i < 7; i++)
		cr_assert(run(e, &b).d.allowed);
	for (int i = 0; i < 5; i++) {
		cr_assert_eq(sluice_engine_check(e, &a.r, &held[i]), SLUICE_OK);
		cr_assert(held[i].d.allowed);
	}
	return e;
}

Test(engine_snapshot, seed002_round_trip_carries_daily_and_minute_consumption)
{
	struct sluice_engine_decision held[5];
	struct sluice_engine *e = seed002_busy(held);
	struct sluice_snapshot_info info = { .size = sizeof info };
	cr_assert_eq(sluice_engine_snapshot(e, file("state"), DAY0 + 11 * SEC, &info), SLUICE_OK, "%s",
		     info.message);
	cr_assert_eq(info.limits_kept, 5, "one binding per limit");
	/* Keys: tok_a and tok_b in the three token limits, ws_1 in two. */
	cr_assert_eq(info.entries, 2 * 3 + 2);
	struct req a;
	req_init(&a, "GET", "/v1/items", "tok_a", "ws_1", 0);
	struct sluice_engine_usage before[SLUICE_POLICY_MAX_LIMITS];
	size_t nb = usage_all(e, &a, DAY0 + 12 * SEC, before);
	sluice_engine_destroy(e); /* the held slots die with the process */

	struct sluice_engine *r = engine_of(load_file("seed002.policy"));
	cr_assert_eq(sluice_engine_restore(r, file("state"), DAY0 + 12 * SEC, &info), SLUICE_OK, "%s",
		     info.message);
	/* token_inflight's keys hold no slot now (below): idle, skipped. */
	cr_assert_eq(info.loaded, 6);
	cr_assert_eq(info.skipped_idle, 2);
	cr_assert_eq(info.limits_kept, 5);
	cr_assert_eq(info.limits_dropped, 0);
	struct sluice_engine_usage after[SLUICE_POLICY_MAX_LIMITS];
	size_t na = usage_all(r, &a, DAY0 + 12 * SEC, after);
	cr_assert_eq(na, nb);
	for (size_t i = 0; i < na; i++) {
		if (strcmp(after[i].name, "token_inflight") == 0) {
			/* No lease: nobody can release the dead process's
			 * slots, so they come back free. */
			cr_assert_eq(before[i].used, 5);
			cr_assert_eq(after[i].used, 0);
			continue;
		}
		cr_assert_eq(after[i].used, before[i].used, "%s: %llu then %llu", after[i].name,
			     (unsigned long long)before[i].used, (unsigned long long)after[i].used);
		cr_assert_eq(after[i].remaining, before[i].remaining, "%s", after[i].name);
	}
	cr_assert_eq(used_at(r, &a, DAY0 + 12 * SEC, "token_day"), 35);
	cr_assert_eq(used_at(r, &a, DAY0 + 12 * SEC, "ws_day"), 42);
	/* The minute window goes on from where it was: the 35 requests of
	 * DAY0 + 10 s are still inside the sliding 60 s. */
	cr_assert_eq(used_at(r, &a, DAY0 + 12 * SEC, "token_minute"), 35);
	/* The daily allowance still resets at midnight UTC. */
	cr_assert_eq(used_at(r, &a, DAY0 + 86400 * SEC, "token_day"), 0);
	sluice_engine_destroy(r);
}

Test(engine_snapshot, held_slots_with_a_lease_stay_held_until_the_lease_expires)
{
	const char *text = "policy \"lease\"\nscope token\n"
			   "limit inflight per token concurrency 2 lease 30s\n";
	struct sluice_engine *e = engine_of(load_text(text));
	struct req a;
	req_init(&a, "GET", "/", "tok_a", NULL, DAY0);
	struct sluice_engine_decision d[2];
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(sluice_engine_check(e, &a.r, &d[i]), SLUICE_OK);
		cr_assert(d[i].d.allowed);
	}
	cr_assert_eq(sluice_engine_snapshot(e, file("state"), DAY0 + SEC, NULL), SLUICE_OK);
	sluice_engine_destroy(e);

	struct sluice_engine *r = engine_of(load_text(text));
	cr_assert_eq(sluice_engine_restore(r, file("state"), DAY0 + 2 * SEC, NULL), SLUICE_OK);
	cr_assert_eq(used_at(r, &a, DAY0 + 2 * SEC, "inflight"), 2, "held until the lease ends");
	a.r.now_ns = DAY0 + 2 * SEC;
	struct sluice_engine_decision x;
	cr_assert_eq(sluice_engine_check(r, &a.r, &x), SLUICE_OK);
	cr_assert_not(x.d.allowed);
	/* Past the snapshot's time + the lease, the slots are expired: both
	 * can be taken again. */
	a.r.now_ns = DAY0 + 32 * SEC;
	for (int i = 0; i < 2; i++) {
		cr_assert_eq(sluice_engine_check(r, &a.r, &d[i]), SLUICE_OK);
		cr_assert(d[i].d.allowed, "slot %d", i);
	}
	sluice_engine_destroy(r);
}

Test(engine_snapshot, after_a_policy_change_the_changed_limit_starts_fresh)
{
	struct sluice_engine_decision held[5];
	struct sluice_engine *e = seed002_busy(held);
	cr_assert_eq(sluice_engine_snapshot(e, file("state"), DAY0 + 11 * SEC, NULL), SLUICE_OK);
	sluice_engine_destroy(e);

	/* token_minute is now 100/1m and ws_day is gone. */
	const char *text = "policy \"seed002b\"\nscope token\nscope workspace\n"
			   "limit token_minute    per token      sliding 100/1m\n"
			   "limit token_day       per token      quota 50_000/1d@utc     warn 80%\n"
			   "limit ws_minute       per workspace  sliding 300/1m\n"
			   "limit token_inflight  per token      concurrency 20 retry-after 1s\n";
	struct sluice_engine *r = engine_of(load_text(text));
	struct sluice_snapshot_info info = { .size = sizeof info };
	cr_assert_eq(sluice_engine_restore(r, file("state"), DAY0 + 12 * SEC, &info), SLUICE_OK, "%s",
		     info.message);
	cr_assert_eq(info.limits_kept, 3, "token_day, ws_minute, token_inflight");
	cr_assert_eq(info.limits_dropped, 2, "the old token_minute and ws_day");
	struct req a;
	req_init(&a, "GET", "/v1/items", "tok_a", "ws_1", 0);
	cr_assert_eq(used_at(r, &a, DAY0 + 12 * SEC, "token_minute"), 0, "changed: fresh");
	cr_assert_eq(used_at(r, &a, DAY0 + 12 * SEC, "token_day"), 35, "unchanged: kept");
	cr_assert_eq(used_at(r, &a, DAY0 + 12 * SEC, "ws_minute"), 42, "kept (all inside the window)");
	sluice_engine_destroy(r);
}

/* The file's bytes into *len (malloc). */
static unsigned char *slurp(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	cr_assert_not_null(f);
	static unsigned char buf[1 << 16];
	*len = fread(buf, 1, sizeof buf, f);
	fclose(f);
	unsigned char *p = malloc(*len);
	memcpy(p, buf, *len);
	return p;
}

static void spit(const char *path, const unsigned char *p, size_t len)
{
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(p, 1, len, f), len);
	fclose(f);
}

/* Restore path into a fresh seed-002 engine: expect rc, a message
 * containing `says`, and nothing loaded. */
static void refused(const char *path, int rc, const char *says)
{
	struct sluice_engine *r = engine_of(load_file("seed002.policy"));
	struct sluice_snapshot_info info = { .size = sizeof info };
	cr_assert_eq(sluice_engine_restore(r, path, DAY0 + 12 * SEC, &info), rc, "%s", info.message);
	cr_assert_not_null(strstr(info.message, says), "message: %s", info.message);
	cr_assert_eq(info.loaded, 0);
	struct req a;
	req_init(&a, "GET", "/v1/items", "tok_a", "ws_1", 0);
	struct sluice_engine_usage u[SLUICE_POLICY_MAX_LIMITS];
	size_t n = usage_all(r, &a, DAY0 + 12 * SEC, u);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(u[i].used, 0, "%s loaded from a refused file", u[i].name);
	/* Refused, the engine is as created: a good file still loads. */
	cr_assert_eq(sluice_engine_restore(r, file("state"), DAY0 + 12 * SEC, &info), SLUICE_OK, "%s",
		     info.message);
	sluice_engine_destroy(r);
}

Test(engine_snapshot, corrupt_truncated_and_foreign_files_are_refused_with_nothing_loaded)
{
	struct sluice_engine_decision held[5];
	struct sluice_engine *e = seed002_busy(held);
	cr_assert_eq(sluice_engine_snapshot(e, file("state"), DAY0 + 11 * SEC, NULL), SLUICE_OK);
	sluice_engine_destroy(e);
	size_t len;
	unsigned char *good = slurp(file("state"), &len);
	unsigned char *bad = malloc(len);

	memcpy(bad, good, len);
	bad[len / 2] ^= 0x10;
	spit(file("flipped"), bad, len);
	refused(file("flipped"), SLUICE_ECORRUPT, "checksum mismatch");

	for (size_t cut = 0; cut < len; cut += len / 7 + 1) {
		spit(file("short"), good, cut);
		refused(file("short"), SLUICE_ECORRUPT, "truncated");
	}
	spit(file("short"), good, len - 1);
	refused(file("short"), SLUICE_ECORRUPT, "truncated");

	/* A keyed limiter's snapshot is not an engine's. */
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter *lim;
	cr_assert_eq(sluice_limiter_create(&lim, &l, 1, NULL), SLUICE_OK);
	cr_assert_eq(sluice_limiter_snapshot(lim, file("limiter"), DAY0, NULL), SLUICE_OK);
	sluice_limiter_destroy(lim);
	refused(file("limiter"), SLUICE_ECORRUPT, "keyed limiter");

	memset(bad, 'x', len);
	spit(file("junk"), bad, len);
	refused(file("junk"), SLUICE_ECORRUPT, "bad magic");

	/* Another format version (the checksum would match: the version is
	 * checked first). */
	memcpy(bad, good, len);
	bad[8] = 99;
	spit(file("version"), bad, len);
	refused(file("version"), SLUICE_ECORRUPT, "version 99");

	/* Written in the future of the restore's clock. */
	struct sluice_engine *r = engine_of(load_file("seed002.policy"));
	struct sluice_snapshot_info info = { .size = sizeof info };
	cr_assert_eq(sluice_engine_restore(r, file("state"), DAY0 + 10 * SEC, &info), SLUICE_ERANGE);
	cr_assert_eq(info.loaded, 0);
	sluice_engine_destroy(r);
	refused(file("absent"), SLUICE_ENOTFOUND, "no snapshot");
	free(good);
	free(bad);
}

Test(engine_snapshot, a_binding_that_fails_to_load_unloads_those_before_it)
{
	/* Workspace limits first: they load (one key each), then the token
	 * limit's two keys exceed max_keys 1 and everything is undone. */
	const char *text = "policy \"order\"\nscope token\nscope workspace\n"
			   "limit ws_day per workspace quota 1000/1d@utc\n"
			   "limit token_day per token quota 100/1d@utc\n";
	struct sluice_engine *e = engine_of(load_text(text));
	struct req a, b;
	req_init(&a, "GET", "/", "tok_a", "ws_1", DAY0);
	req_init(&b, "GET", "/", "tok_b", "ws_1", DAY0);
	cr_assert(run(e, &a).d.allowed);
	cr_assert(run(e, &b).d.allowed);
	cr_assert_eq(sluice_engine_snapshot(e, file("state"), DAY0, NULL), SLUICE_OK);
	sluice_engine_destroy(e);

	struct sluice_engine_options o = { .size = sizeof o, .max_keys = 1 };
	struct sluice_engine *r;
	cr_assert_eq(sluice_engine_create(&r, load_text(text), &o), SLUICE_OK);
	struct sluice_snapshot_info info = { .size = sizeof info };
	cr_assert_eq(sluice_engine_restore(r, file("state"), DAY0, &info), SLUICE_EFULL);
	cr_assert_not_null(strstr(info.message, "token_day"), "%s", info.message);
	cr_assert_eq(info.loaded, 0);
	cr_assert_eq(used_at(r, &a, DAY0, "ws_day"), 0, "the first binding was unloaded");
	cr_assert_eq(sluice_engine_restore(r, file("state"), DAY0, &info), SLUICE_EFULL,
		     "and the engine can be restored again");
	sluice_engine_destroy(r);
}

Test(engine_snapshot, restore_needs_an_engine_without_state)
{
	struct sluice_engine_decision held[5];
	struct sluice_engine *e = seed002_busy(held);
	cr_assert_eq(sluice_engine_snapshot(e, file("state"), DAY0 + 11 * SEC, NULL), SLUICE_OK);
	cr_assert_eq(sluice_engine_restore(e, file("state"), DAY0 + 12 * SEC, NULL), SLUICE_ESTATE);
	cr_assert_eq(sluice_engine_snapshot(e, NULL, DAY0, NULL), SLUICE_EINVAL, "no path anywhere");
	cr_assert_eq(sluice_engine_snapshot(NULL, file("x"), DAY0, NULL), SLUICE_EINVAL);
	sluice_engine_destroy(e);
}

/* An engine of seed 002 with a state file and flags. */
static int create_with_state(struct sluice_engine **out, const char *path, uint32_t flags,
			     uint64_t interval_ns, struct sluice_snapshot_info *info)
{
	struct sluice_engine_options o = {
		.size = sizeof o,
		.flags = flags,
		.state_path = path,
		.snapshot_interval_ns = interval_ns,
		.restore_info = info,
	};
	struct sluice_policy *p = load_file("seed002.policy");
	int rc = sluice_engine_create(out, p, &o);
	if (rc != SLUICE_OK)
		sluice_policy_destroy(p);
	return rc;
}

Test(engine_snapshot, state_file_at_create_refuses_a_bad_file_unless_told_to_start_fresh)
{
	struct sluice_engine *e;
	struct sluice_snapshot_info info = { .size = sizeof info };
	/* No file: a first start, empty. */
	cr_assert_eq(create_with_state(&e, file("state"), 0, 0, &info), SLUICE_OK);
	struct req a;
	req_init(&a, "GET", "/v1/items", "tok_a", "ws_1", sluice_realtime_ns());
	for (int i = 0; i < 3; i++)
		cr_assert(run(e, &a).d.allowed);
	uint64_t now = sluice_realtime_ns();
	cr_assert_eq(sluice_engine_snapshot(e, NULL, now, NULL), SLUICE_OK, "options.state_path");
	sluice_engine_destroy(e);

	cr_assert_eq(create_with_state(&e, file("state"), 0, 0, &info), SLUICE_OK, "%s", info.message);
	cr_assert_eq(info.limits_kept, 5);
	cr_assert_eq(used_at(e, &a, sluice_realtime_ns(), "token_day"), 3, "restored at create");
	sluice_engine_destroy(e);

	spit(file("state"), (const unsigned char *)"SLUICEEN garbage", 16);
	e = (struct sluice_engine *)&e;
	cr_assert_eq(create_with_state(&e, file("state"), 0, 0, &info), SLUICE_ECORRUPT);
	cr_assert_null(e);
	cr_assert_not_null(strstr(info.message, "truncated"), "%s", info.message);
	cr_assert_eq(create_with_state(&e, file("state"), SLUICE_ENGINE_STATE_FRESH_ON_ERROR, 0, &info),
		     SLUICE_OK);
	cr_assert_not_null(strstr(info.message, "truncated"), "reported: %s", info.message);
	cr_assert_eq(used_at(e, &a, sluice_realtime_ns(), "token_day"), 0, "started empty");
	sluice_engine_destroy(e);
	/* An interval needs a path. */
	cr_assert_eq(create_with_state(&e, NULL, 0, SEC, NULL), SLUICE_EINVAL);
}

Test(engine_snapshot, periodic_snapshots_and_the_one_at_destroy)
{
	struct sluice_engine *e;
	cr_assert_eq(create_with_state(&e, file("state"), SLUICE_ENGINE_STATE_SAVE_AT_DESTROY,
				       20 * 1000000ull, NULL),
		     SLUICE_OK);
	struct req a;
	req_init(&a, "GET", "/v1/items", "tok_a", "ws_1", sluice_realtime_ns());
	cr_assert(run(e, &a).d.allowed);
	struct sluice_engine_state_stats s = { .size = sizeof s };
	for (int i = 0; i < 500 && s.snapshots < 2; i++) {
		usleep(10000);
		cr_assert_eq(sluice_engine_state_stats(e, &s), SLUICE_OK);
	}
	cr_assert_geq(s.snapshots, 2);
	cr_assert_eq(s.failures, 0);
	cr_assert_eq(s.last_entries, 5, "tok_a in three limits, ws_1 in two");
	cr_assert_eq(access(file("state"), F_OK), 0);
	/* After the last periodic one: the one at destroy carries it. */
	for (int i = 0; i < 4; i++)
		cr_assert(run(e, &a).d.allowed);
	sluice_engine_destroy(e);
	cr_assert_eq(create_with_state(&e, file("state"), 0, 0, NULL), SLUICE_OK);
	cr_assert_eq(used_at(e, &a, sluice_realtime_ns(), "token_day"), 5);
	sluice_engine_destroy(e);
}

Test(engine_snapshot, a_failing_snapshot_is_counted_and_the_thread_goes_on)
{
	struct sluice_engine *e;
	char path[128];
	snprintf(path, sizeof path, "%s/no/such/dir/state", dir);
	cr_assert_eq(create_with_state(&e, path, 0, 10 * 1000000ull, NULL), SLUICE_OK);
	struct sluice_engine_state_stats s = { .size = sizeof s };
	for (int i = 0; i < 500 && s.failures < 3; i++) {
		usleep(10000);
		cr_assert_eq(sluice_engine_state_stats(e, &s), SLUICE_OK);
	}
	cr_assert_geq(s.failures, 3, "the thread went on after a failure");
	cr_assert_eq(s.snapshots, 0);
	cr_assert_eq(s.last_error, SLUICE_EIO);
	cr_assert_not_null(strstr(s.last_message, "open"), "%s", s.last_message);
	struct req a;
	req_init(&a, "GET", "/v1/items", "tok_a", "ws_1", sluice_realtime_ns());
	cr_assert(run(e, &a).d.allowed, "checks go on");
	sluice_engine_destroy(e);
}
