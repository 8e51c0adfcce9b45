/*
 * test_snapshot.c - keyed-limiter snapshots (include/sluice/snapshot.h):
 * round trips of every kind (decisions after a restore equal the original's
 * at the same instants), a policy change, idle entries, corrupt, truncated
 * and foreign files, the file functions, and a writer killed at random
 * points. Concurrent snapshots: stress_snapshot.c.
 */
#include <criterion/criterion.h>
#include <sluice.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "limit_util.h"

#define DAY (86400 * SEC)
#define T0 (UINT64_C(1700000000) * SEC) /* Unix time: calendar windows need it */

static struct sluice_limiter *make(const struct sluice_limit *l, size_t n)
{
	static const char secret[] = "snapshot tests";
	struct sluice_limiter_options o;
	struct sluice_limiter *lim = NULL;

	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.hash_secret = secret;
	o.hash_secret_len = sizeof secret;
	cr_assert_eq(sluice_limiter_create(&lim, l, n, &o), SLUICE_OK);
	return lim;
}

static struct sluice_snapshot_info info_init(void)
{
	struct sluice_snapshot_info i;
	memset(&i, 0, sizeof i);
	i.size = sizeof i;
	return i;
}

static uint64_t live_keys(struct sluice_limiter *lim)
{
	struct sluice_limiter_stats s;
	memset(&s, 0, sizeof s);
	s.size = sizeof s;
	cr_assert_eq(sluice_limiter_stats(lim, &s), SLUICE_OK);
	return s.live_keys;
}

/* Snapshot `a` at now into memory and restore it into a fresh limiter of
 * policy l at `at`. */
static struct sluice_limiter *round_trip(struct sluice_limiter *a, const struct sluice_limit *l,
					 size_t n, uint64_t now, uint64_t at,
					 struct sluice_snapshot_info *ri)
{
	void *buf;
	size_t len;
	struct sluice_snapshot_info wi = info_init();
	cr_assert_eq(sluice_limiter_snapshot_mem(a, now, &buf, &len, &wi), SLUICE_OK);
	cr_assert_eq(wi.bytes, len);
	struct sluice_limiter *b = make(l, n);
	*ri = info_init();
	cr_assert_eq(sluice_limiter_restore_mem(b, buf, len, at, ri), SLUICE_OK, "%s", ri->message);
	cr_assert_eq(ri->entries, wi.entries);
	free(buf);
	return b;
}

static void expect_same(const struct sluice_decision *x, const struct sluice_decision *y,
			const char *what, int step)
{
	cr_assert_eq(x->allowed, y->allowed, "%s step %d: allowed", what, step);
	cr_assert_eq(x->remaining, y->remaining, "%s step %d: remaining %llu vs %llu", what, step,
		     (unsigned long long)x->remaining, (unsigned long long)y->remaining);
	cr_assert_eq(x->reset_ns, y->reset_ns, "%s step %d: reset", what, step);
	cr_assert_eq(x->retry_after_ns, y->retry_after_ns, "%s step %d: retry", what, step);
	cr_assert_eq(x->limit_index, y->limit_index, "%s step %d: limit_index", what, step);
}

/* Drive `a` with a pseudo-random load on a few keys up to T0 + 5 s,
 * snapshot, restore into b, then drive both identically and compare every
 * decision. */
static void check_round_trip(const struct sluice_limit *l, size_t n, const char *what)
{
	struct sluice_limiter *a = make(l, n);
	struct sluice_decision d, e;
	unsigned seed = 7;
	char key[16];
	uint64_t t = T0;

	for (int i = 0; i < 400; i++) {
		t += (uint64_t)(rand_r(&seed) % 30) * MS;
		snprintf(key, sizeof key, "k%u", rand_r(&seed) % 6);
		cr_assert_eq(sluice_limiter_admit(a, key, strlen(key), 1 + rand_r(&seed) % 2, t, &d),
			     SLUICE_OK);
	}
	struct sluice_snapshot_info ri;
	struct sluice_limiter *b = round_trip(a, l, n, t, t, &ri);
	cr_assert_eq(ri.loaded + ri.skipped_idle, ri.entries);
	cr_assert_gt(ri.loaded, 0, "%s: something to compare", what);
	for (int i = 0; i < 600; i++) {
		t += (uint64_t)(rand_r(&seed) % 40) * MS;
		snprintf(key, sizeof key, "k%u", rand_r(&seed) % 7);
		uint64_t cost = rand_r(&seed) % 3;
		cr_assert_eq(sluice_limiter_admit(a, key, strlen(key), cost, t, &d), SLUICE_OK);
		cr_assert_eq(sluice_limiter_admit(b, key, strlen(key), cost, t, &e), SLUICE_OK);
		expect_same(&d, &e, what, i);
	}
	sluice_limiter_destroy(a);
	sluice_limiter_destroy(b);
}

Test(snapshot, round_trip_gcra)
{
	struct sluice_limit l = gcra(20, SEC, 10);
	check_round_trip(&l, 1, "gcra");
}

Test(snapshot, round_trip_sliding_log)
{
	struct sluice_limit l = slog(15, SEC);
	check_round_trip(&l, 1, "log");
}

Test(snapshot, round_trip_sliding_counter)
{
	struct sluice_limit l = counter(15, SEC);
	check_round_trip(&l, 1, "counter");
}

Test(snapshot, round_trip_calendar)
{
	struct sluice_limit l = calendar(40, 2 * SEC);
	check_round_trip(&l, 1, "calendar");
}

Test(snapshot, round_trip_every_kind_in_one_policy)
{
	struct sluice_limit l[] = { calendar(300, DAY), slog(12, SEC), gcra(30, SEC, 8),
				    counter(25, 2 * SEC) };
	check_round_trip(l, 4, "mixed");
}

Test(snapshot, round_trip_windows_without_gcra)
{
	/* Cell 0 is the hidden COMMIT word (a log beside a counter). */
	struct sluice_limit l[] = { slog(9, SEC), counter(14, SEC) };
	check_round_trip(l, 2, "log+counter");
}

/* Slots held across a restart: with a lease, held until the snapshot's time
 * plus the TTL, then reclaimed; the other limits as they were. */
Test(snapshot, held_slots_come_back_until_their_lease_ends)
{
	struct sluice_limit l[] = { gcra(100, SEC, 100), slots(3, 10 * SEC) };
	struct sluice_limiter *a = make(l, 2);
	struct sluice_decision d, e;
	sluice_slot_handle h;

	cr_assert_eq(sluice_limiter_acquire(a, "u", 1, 1, T0, &d, &h), SLUICE_OK);
	cr_assert(d.allowed);
	cr_assert_eq(sluice_limiter_acquire(a, "u", 1, 1, T0 + SEC, &d, &h), SLUICE_OK);
	cr_assert(d.allowed);
	struct sluice_snapshot_info ri;
	struct sluice_limiter *b = round_trip(a, l, 2, T0 + 2 * SEC, T0 + 3 * SEC, &ri);
	cr_assert_eq(ri.loaded, 1);
	/* Two held: one left, in both. */
	cr_assert_eq(sluice_limiter_acquire(a, "u", 1, 1, T0 + 3 * SEC, &d, &h), SLUICE_OK);
	cr_assert_eq(sluice_limiter_acquire(b, "u", 1, 1, T0 + 3 * SEC, &e, &h), SLUICE_OK);
	cr_assert(d.allowed && e.allowed);
	cr_assert_eq(d.remaining, e.remaining);
	cr_assert_eq(sluice_limiter_acquire(b, "u", 1, 1, T0 + 3 * SEC, &e, &h), SLUICE_OK);
	cr_assert_not(e.allowed, "three held: the restored cell is full");
	cr_assert_eq(e.reason, SLUICE_REASON_CONCURRENCY);
	/* The restored holders' leases end at the snapshot's time + TTL. */
	cr_assert_eq(sluice_limiter_acquire(b, "u", 1, 1, T0 + 12 * SEC - 1, &e, &h), SLUICE_OK);
	cr_assert_not(e.allowed);
	cr_assert_eq(sluice_limiter_acquire(b, "u", 1, 1, T0 + 12 * SEC, &e, &h), SLUICE_OK);
	cr_assert(e.allowed, "an expired restored lease is reclaimed");
	sluice_limiter_destroy(a);
	sluice_limiter_destroy(b);
}

Test(snapshot, held_slots_without_a_lease_come_back_free)
{
	struct sluice_limit l[] = { calendar(50, DAY), slots(1, 0) };
	struct sluice_limiter *a = make(l, 2);
	struct sluice_decision d;
	sluice_slot_handle h;

	cr_assert_eq(sluice_limiter_acquire(a, "u", 1, 1, T0, &d, &h), SLUICE_OK);
	cr_assert(d.allowed);
	struct sluice_snapshot_info ri;
	struct sluice_limiter *b = round_trip(a, l, 2, T0, T0 + SEC, &ri);
	cr_assert_eq(ri.loaded, 1, "the calendar's count keeps the entry");
	cr_assert_eq(sluice_limiter_acquire(b, "u", 1, 1, T0 + SEC, &d, &h), SLUICE_OK);
	cr_assert(d.allowed, "nobody could ever release the old holder's slot");
	cr_assert_eq(sluice_limiter_peek(b, "u", 1, T0 + SEC, &d), SLUICE_OK);
	sluice_limiter_destroy(a);
	sluice_limiter_destroy(b);
}

/* The daily allowance survives; a changed limit starts full. */
Test(snapshot, policy_change_keeps_unchanged_limits_only)
{
	struct sluice_limit old[] = { gcra(10, SEC, 10), calendar(100, DAY) };
	struct sluice_limit neu[] = { calendar(100, DAY), gcra(200, SEC, 200), counter(500, SEC) };
	struct sluice_limiter *a = make(old, 2);
	struct sluice_decision d;

	for (int i = 0; i < 10; i++) {
		cr_assert_eq(sluice_limiter_admit(a, "tok", 3, 1, T0, &d), SLUICE_OK);
		cr_assert(d.allowed);
	}
	cr_assert_eq(sluice_limiter_admit(a, "tok", 3, 1, T0, &d), SLUICE_OK);
	cr_assert_not(d.allowed, "the old bucket is empty");
	struct sluice_snapshot_info ri;
	struct sluice_limiter *b = round_trip(a, neu, 3, T0, T0, &ri);
	cr_assert_eq(ri.limits_kept, 1);
	cr_assert_eq(ri.limits_dropped, 1);
	cr_assert_eq(ri.loaded, 1);
	/* The calendar (the caller's index 0 now) kept its 10; the new bucket
	 * and counter are full. */
	cr_assert_eq(sluice_limiter_peek(b, "tok", 3, T0, &d), SLUICE_OK);
	cr_assert_eq(d.limit_index, 0);
	cr_assert_eq(d.remaining, 90, "the day's count carried over");
	cr_assert_eq(sluice_limiter_admit(b, "tok", 3, 50, T0, &d), SLUICE_OK);
	cr_assert(d.allowed, "the changed bucket started full");
	cr_assert_eq(d.remaining, 40);
	sluice_limiter_destroy(a);
	sluice_limiter_destroy(b);
}

Test(snapshot, every_limit_changed_loads_nothing)
{
	struct sluice_limit old = gcra(10, SEC, 10), neu = gcra(10, SEC, 11);
	struct sluice_limiter *a = make(&old, 1);
	struct sluice_decision d;

	cr_assert_eq(sluice_limiter_admit(a, "k", 1, 5, T0, &d), SLUICE_OK);
	struct sluice_snapshot_info ri;
	struct sluice_limiter *b = round_trip(a, &neu, 1, T0, T0, &ri);
	cr_assert_eq(ri.loaded, 0);
	cr_assert_eq(ri.skipped_idle, 1);
	cr_assert_eq(ri.limits_dropped, 1);
	cr_assert_eq(live_keys(b), 0);
	sluice_limiter_destroy(a);
	sluice_limiter_destroy(b);
}

Test(snapshot, idle_entries_are_skipped)
{
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter *a = make(&l, 1);
	struct sluice_decision d;

	cr_assert_eq(sluice_limiter_admit(a, "old", 3, 10, T0, &d), SLUICE_OK);
	cr_assert_eq(sluice_limiter_admit(a, "new", 3, 10, T0 + 5 * SEC, &d), SLUICE_OK);
	struct sluice_snapshot_info ri;
	/* At T0 + 5.5 s "old" has long refilled, "new" is half empty. */
	struct sluice_limiter *b = round_trip(a, &l, 1, T0 + 5 * SEC, T0 + 5 * SEC + 500 * MS, &ri);
	cr_assert_eq(ri.entries, 2);
	cr_assert_eq(ri.loaded, 1);
	cr_assert_eq(ri.skipped_idle, 1);
	cr_assert_eq(live_keys(b), 1);
	cr_assert_eq(sluice_limiter_peek(b, "new", 3, T0 + 5 * SEC + 500 * MS, &d), SLUICE_OK);
	cr_assert_eq(d.remaining, 5);
	sluice_limiter_destroy(a);
	sluice_limiter_destroy(b);
}

Test(snapshot, empty_limiter_round_trips)
{
	struct sluice_limit l = slog(5, SEC);
	struct sluice_limiter *a = make(&l, 1);
	struct sluice_snapshot_info ri;
	struct sluice_limiter *b = round_trip(a, &l, 1, T0, T0, &ri);
	cr_assert_eq(ri.entries, 0);
	cr_assert_eq(ri.loaded, 0);
	sluice_limiter_destroy(a);
	sluice_limiter_destroy(b);
}

/* ---- refusals ---- */

/* A small file of two kinds and three keys. */
static void small_file(void **buf, size_t *len, struct sluice_limit *l)
{
	l[0] = gcra(10, SEC, 10);
	l[1] = slog(4, SEC);
	struct sluice_limiter *a = make(l, 2);
	struct sluice_decision d;
	cr_assert_eq(sluice_limiter_admit(a, "a", 1, 2, T0, &d), SLUICE_OK);
	cr_assert_eq(sluice_limiter_admit(a, "bb", 2, 1, T0, &d), SLUICE_OK);
	cr_assert_eq(sluice_limiter_admit(a, "", 0, 3, T0, &d), SLUICE_OK);
	cr_assert_eq(sluice_limiter_snapshot_mem(a, T0, buf, len, NULL), SLUICE_OK);
	sluice_limiter_destroy(a);
}

Test(snapshot, every_flipped_byte_is_refused_and_nothing_loads)
{
	struct sluice_limit l[2];
	void *buf;
	size_t len;
	small_file(&buf, &len, l);
	struct sluice_limiter *b = make(l, 2);
	unsigned char *p = buf;

	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			struct sluice_snapshot_info ri = info_init();
			p[i] ^= (unsigned char)(1u << bit);
			int rc = sluice_limiter_restore_mem(b, buf, len, T0, &ri);
			p[i] ^= (unsigned char)(1u << bit);
			cr_assert_eq(rc, SLUICE_ECORRUPT, "byte %zu bit %d: %d", i, bit, rc);
			cr_assert_neq(ri.message[0], '\0');
			cr_assert_eq(live_keys(b), 0);
		}
	}
	struct sluice_snapshot_info ri = info_init();
	cr_assert_eq(sluice_limiter_restore_mem(b, buf, len, T0, &ri), SLUICE_OK, "%s", ri.message);
	cr_assert_eq(ri.loaded, 3);
	sluice_limiter_destroy(b);
	free(buf);
}

Test(snapshot, every_truncation_is_refused)
{
	struct sluice_limit l[2];
	void *buf;
	size_t len;
	small_file(&buf, &len, l);
	struct sluice_limiter *b = make(l, 2);

	for (size_t n = 0; n < len; n++) {
		struct sluice_snapshot_info ri = info_init();
		cr_assert_eq(sluice_limiter_restore_mem(b, buf, n, T0, &ri), SLUICE_ECORRUPT,
			     "%zu of %zu bytes", n, len);
		cr_assert_eq(live_keys(b), 0);
	}
	/* A longer file (garbage appended) is refused too: no trailer at its end. */
	unsigned char *longer = malloc(len + 8);
	memcpy(longer, buf, len);
	memset(longer + len, 0, 8);
	cr_assert_eq(sluice_limiter_restore_mem(b, longer, len + 8, T0, NULL), SLUICE_ECORRUPT);
	free(longer);
	sluice_limiter_destroy(b);
	free(buf);
}

Test(snapshot, foreign_files_are_refused)
{
	struct sluice_limit l[2];
	void *buf;
	size_t len;
	small_file(&buf, &len, l);
	struct sluice_limiter *b = make(l, 2);
	unsigned char junk[256];
	struct sluice_snapshot_info ri = info_init();

	for (size_t i = 0; i < sizeof junk; i++)
		junk[i] = (unsigned char)(i * 37 + 11);
	cr_assert_eq(sluice_limiter_restore_mem(b, junk, sizeof junk, T0, &ri), SLUICE_ECORRUPT);
	cr_assert(strstr(ri.message, "magic") != NULL, "%s", ri.message);
	/* Another byte order: the mark reads swapped. */
	unsigned char *p = buf;
	for (int i = 0; i < 4; i++) {
		unsigned char t = p[16 + i];
		p[16 + i] = p[23 - i];
		p[23 - i] = t;
	}
	cr_assert_eq(sluice_limiter_restore_mem(b, buf, len, T0, &ri), SLUICE_ECORRUPT);
	cr_assert(strstr(ri.message, "byte order") != NULL, "%s", ri.message);
	cr_assert_eq(sluice_limiter_restore_mem(b, NULL, 0, T0, &ri), SLUICE_ECORRUPT);
	cr_assert_eq(live_keys(b), 0);
	sluice_limiter_destroy(b);
	free(buf);
}

Test(snapshot, restore_refuses_an_earlier_clock_and_a_used_limiter)
{
	struct sluice_limit l[2];
	void *buf;
	size_t len;
	small_file(&buf, &len, l);
	struct sluice_limiter *b = make(l, 2);
	struct sluice_snapshot_info ri = info_init();
	struct sluice_decision d;

	cr_assert_eq(sluice_limiter_restore_mem(b, buf, len, T0 - 1, &ri), SLUICE_ERANGE);
	cr_assert_eq(live_keys(b), 0);
	cr_assert_eq(sluice_limiter_admit(b, "x", 1, 1, T0, &d), SLUICE_OK);
	cr_assert_eq(sluice_limiter_restore_mem(b, buf, len, T0, &ri), SLUICE_ESTATE);
	cr_assert_eq(sluice_limiter_restore_mem(NULL, buf, len, T0, &ri), SLUICE_EINVAL);
	sluice_limiter_destroy(b);
	free(buf);
}

Test(snapshot, a_restore_that_does_not_fit_the_budget_loads_nothing)
{
	struct sluice_limit l = gcra(10, SEC, 10);
	struct sluice_limiter *a = make(&l, 1);
	struct sluice_decision d;
	char key[8];
	void *buf;
	size_t len;

	for (int i = 0; i < 50; i++) {
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(sluice_limiter_admit(a, key, strlen(key), 5, T0, &d), SLUICE_OK);
	}
	cr_assert_eq(sluice_limiter_snapshot_mem(a, T0, &buf, &len, NULL), SLUICE_OK);
	struct sluice_limiter_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.max_keys = 30;
	struct sluice_limiter *b = NULL;
	cr_assert_eq(sluice_limiter_create(&b, &l, 1, &o), SLUICE_OK);
	struct sluice_snapshot_info ri = info_init();
	cr_assert_eq(sluice_limiter_restore_mem(b, buf, len, T0, &ri), SLUICE_EFULL);
	cr_assert_eq(ri.loaded, 0);
	cr_assert_eq(live_keys(b), 0, "all or nothing");
	for (int i = 0; i < 30; i++) { /* the budget was given back */
		snprintf(key, sizeof key, "k%d", i);
		cr_assert_eq(sluice_limiter_admit(b, key, strlen(key), 1, T0, &d), SLUICE_OK);
		cr_assert_not(d.degraded);
	}
	sluice_limiter_destroy(a);
	sluice_limiter_destroy(b);
	free(buf);
}

/* ---- files ---- */

static void temp_dir(char *dir, size_t cap)
{
	snprintf(dir, cap, "/tmp/sluice_snapshot_XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

Test(snapshot, file_round_trip_and_missing_file)
{
	char dir[64], path[96], tmp[112];
	struct sluice_limit l = calendar(1000, DAY);
	struct sluice_limiter *a = make(&l, 1);
	struct sluice_decision d;
	struct sluice_snapshot_info wi = info_init(), ri = info_init();

	temp_dir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/state", dir);
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	struct sluice_limiter *b = make(&l, 1);
	cr_assert_eq(sluice_limiter_restore(b, path, T0, &ri), SLUICE_ENOTFOUND);
	cr_assert_eq(sluice_limiter_admit(a, "tok", 3, 700, T0, &d), SLUICE_OK);
	cr_assert_eq(sluice_limiter_snapshot(a, path, T0, &wi), SLUICE_OK, "%s", wi.message);
	cr_assert_eq(access(tmp, F_OK), -1, "no temporary file left");
	cr_assert_eq(sluice_limiter_restore(b, path, T0 + 3600 * SEC, &ri), SLUICE_OK, "%s",
		     ri.message);
	cr_assert_eq(ri.bytes, wi.bytes);
	cr_assert_eq(sluice_limiter_admit(b, "tok", 3, 301, T0 + 3600 * SEC, &d), SLUICE_OK);
	cr_assert_not(d.allowed, "700 of 1000 used today: 301 more do not fit");
	cr_assert_eq(d.remaining, 300);
	/* A directory that does not exist: EIO with errno. */
	snprintf(path, sizeof path, "%s/no/such/dir/state", dir);
	cr_assert_eq(sluice_limiter_snapshot(a, path, T0, &wi), SLUICE_EIO);
	cr_assert_eq(wi.sys_errno, ENOENT);
	snprintf(path, sizeof path, "%s/state", dir);
	unlink(path);
	rmdir(dir);
	sluice_limiter_destroy(a);
	sluice_limiter_destroy(b);
}

/* A writer SIGKILLed at random points, many times: the file at `path` is
 * always a whole snapshot, the first or a later one, and loads. The child
 * says through a pipe when its first snapshot is in place, so every round
 * (however slow the build, e.g. under sanitizers) kills it in the middle of
 * a later write and finds a file. */
Test(snapshot, killed_writer_leaves_a_loadable_snapshot, .timeout = 120)
{
	char dir[64], path[96];
	struct sluice_limit l[] = { gcra(10, SEC, 10), calendar(1000, DAY) };
	unsigned seed = 12345;

	temp_dir(dir, sizeof dir);
	snprintf(path, sizeof path, "%s/state", dir);
	for (int round = 0; round < 60; round++) {
		int ready[2];
		cr_assert_eq(pipe(ready), 0);
		pid_t pid = fork();
		cr_assert_geq(pid, 0);
		if (pid == 0) {
			/* The child: a limiter of 20k keys, snapshotted in a loop. */
			struct sluice_limiter *a = NULL;
			struct sluice_decision d;
			char key[16];
			close(ready[0]);
			if (sluice_limiter_create(&a, l, 2, NULL) != SLUICE_OK)
				_exit(2);
			for (int i = 0; i < 20000; i++) {
				snprintf(key, sizeof key, "key%d", i);
				(void)sluice_limiter_admit(a, key, strlen(key), 1 + i % 5, T0, &d);
			}
			for (uint64_t k = 0;; k++) {
				if (sluice_limiter_snapshot(a, path, T0 + k, NULL) != SLUICE_OK)
					_exit(3);
				if (k == 0 && (write(ready[1], "r", 1) != 1 || close(ready[1]) != 0))
					_exit(4);
			}
		}
		close(ready[1]);
		char c;
		cr_assert_eq(read(ready[0], &c, 1), 1, "round %d: the writer died before its first snapshot",
			     round);
		close(ready[0]);
		struct timespec ts = { 0, (long)(rand_r(&seed) % 30) * 1000000L };
		nanosleep(&ts, NULL);
		kill(pid, SIGKILL);
		int status;
		cr_assert_eq(waitpid(pid, &status, 0), pid);
		cr_assert(WIFSIGNALED(status), "the writer failed: %d", WEXITSTATUS(status));
		cr_assert_eq(access(path, F_OK), 0, "round %d: no file after a whole snapshot", round);
		struct sluice_limiter *b = make(l, 2);
		struct sluice_snapshot_info ri = info_init();
		cr_assert_eq(sluice_limiter_restore(b, path, T0 + SEC, &ri), SLUICE_OK,
			     "round %d: %s", round, ri.message);
		cr_assert_eq(ri.entries, 20000);
		sluice_limiter_destroy(b);
	}
	char tmp[112];
	snprintf(tmp, sizeof tmp, "%s.tmp", path);
	unlink(tmp);
	unlink(path);
	rmdir(dir);
}

/* The format has one encoding of a state: what a restore loaded, snapshot
 * again at the same instant, is the same bytes (same hash secret, so the
 * table walks the keys in the same order). */
Test(snapshot, a_restored_file_re_serializes_identically)
{
	struct sluice_limit l[2];
	void *buf, *again;
	size_t len, len2;
	small_file(&buf, &len, l);
	struct sluice_limiter *b = make(l, 2);
	struct sluice_snapshot_info ri = info_init();

	cr_assert_eq(sluice_limiter_restore_mem(b, buf, len, T0, &ri), SLUICE_OK, "%s", ri.message);
	cr_assert_eq(ri.skipped_idle, 0);
	cr_assert_eq(sluice_limiter_snapshot_mem(b, T0, &again, &len2, NULL), SLUICE_OK);
	cr_assert_eq(len2, len);
	cr_assert_eq(memcmp(buf, again, len), 0);
	free(again);
	free(buf);
	sluice_limiter_destroy(b);
}

/* A dropped sliding log's times are skipped, and the limit after it loads. */
Test(snapshot, a_dropped_log_is_skipped_and_the_next_limit_loads)
{
	struct sluice_limit old[] = { slog(8, SEC), gcra(10, SEC, 10) };
	struct sluice_limit neu[] = { gcra(10, SEC, 10) };
	struct sluice_limiter *a = make(old, 2);
	struct sluice_decision d;

	cr_assert_eq(sluice_limiter_admit(a, "k", 1, 6, T0, &d), SLUICE_OK);
	cr_assert(d.allowed);
	struct sluice_snapshot_info ri;
	struct sluice_limiter *b = round_trip(a, neu, 1, T0, T0, &ri);
	cr_assert_eq(ri.limits_kept, 1);
	cr_assert_eq(ri.limits_dropped, 1);
	cr_assert_eq(ri.loaded, 1);
	cr_assert_eq(sluice_limiter_peek(b, "k", 1, T0, &d), SLUICE_OK);
	cr_assert_eq(d.remaining, 4, "the bucket's 6 carried over");
	sluice_limiter_destroy(a);
	sluice_limiter_destroy(b);
}
