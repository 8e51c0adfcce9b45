/*
 * test_engine_exec.c - the engine's shape: the one governing rule
 * (common/govern_internal.h), the per-limit decisions of one check
 * (sluice_engine_request.limit_decisions), release from the held slot alone,
 * and one maintenance thread per engine.
 */
#include <criterion/criterion.h>

#include <dirent.h>
#include <sluice.h>
#include <stdio.h>
#include <string.h>

#include "common/govern_internal.h"
#include "engine_test_util.h"

/* ---- the governing rule ---- */

static struct sluice_decision dec(bool allowed, uint64_t remaining, uint64_t reset_ns)
{
	struct sluice_decision d;
	memset(&d, 0, sizeof d);
	d.allowed = allowed;
	d.remaining = remaining;
	d.reset_ns = reset_ns;
	return d;
}

Test(govern, a_denial_governs_over_any_admission)
{
	struct sluice_decision no = dec(false, 5, 9), yes = dec(true, 0, 0);
	cr_assert(sluice__decision_governs(&no, 7, &yes, 0));
	cr_assert_not(sluice__decision_governs(&yes, 0, &no, 7));
}

Test(govern, between_denials_the_lower_rank)
{
	struct sluice_decision a = dec(false, 0, 1), b = dec(false, 0, 5);
	cr_assert(sluice__decision_governs(&a, 1, &b, 2));
	cr_assert_not(sluice__decision_governs(&a, 2, &b, 1), "reset does not order denials");
}

Test(govern, among_admissions_the_least_remaining)
{
	struct sluice_decision a = dec(true, 3, 100), b = dec(true, 4, 1);
	cr_assert(sluice__decision_governs(&a, 9, &b, 0));
	cr_assert_not(sluice__decision_governs(&b, 0, &a, 9));
}

Test(govern, then_the_shorter_reset)
{
	struct sluice_decision a = dec(true, 3, 10), b = dec(true, 3, 11);
	cr_assert(sluice__decision_governs(&a, 9, &b, 0));
	cr_assert_not(sluice__decision_governs(&b, 0, &a, 9));
}

Test(govern, then_the_lower_rank_and_never_itself)
{
	struct sluice_decision a = dec(true, 3, 10), b = dec(true, 3, 10);
	cr_assert(sluice__decision_governs(&a, 1, &b, 2));
	cr_assert_not(sluice__decision_governs(&b, 2, &a, 1));
	cr_assert_not(sluice__decision_governs(&a, 1, &a, 1), "strict");
}

/* ---- per-limit decisions ---- */

static const char policy_pl[] =
	"policy \"pl\"\n"
	"scope token\n"
	"scope workspace optional\n"
	"limit tok_min per token rate 10/1m\n"
	"limit tok_day per token quota 100/1d@utc warn 80%\n"
	"limit ws_min per workspace sliding 3/1m\n"
	"limit tok_inflight per token concurrency 5\n";

/* The state of every limit for q now, by usage (read-only). */
static void peek_all(struct sluice_engine *e, struct req *q, struct sluice_engine_usage *u, size_t *n)
{
	uint64_t cost = q->r.cost;
	q->r.cost = 0;
	cr_assert_eq(sluice_engine_usage(e, &q->r, u, SLUICE_POLICY_MAX_LIMITS, n), SLUICE_OK);
	q->r.cost = cost;
}

static void same_as_usage(const struct sluice_decision *per, const struct sluice_engine_usage *u, size_t n,
			  uint32_t applied, uint32_t skip)
{
	for (size_t k = 0; k < n; k++) {
		uint32_t i = u[k].limit;
		if (!(applied & (UINT32_C(1) << i)) || i == skip)
			continue;
		cr_assert_eq(per[i].limit_index, i);
		cr_assert(per[i].allowed, "limit %u", i);
		cr_assert_eq(per[i].limit, u[k].count, "limit %u", i);
		cr_assert_eq(per[i].remaining, u[k].remaining, "limit %u: %llu vs %llu", i,
			     (unsigned long long)per[i].remaining, (unsigned long long)u[k].remaining);
		cr_assert_eq(per[i].reset_ns, u[k].reset_ns, "limit %u", i);
	}
}

Test(engine_limits, after_an_admission_each_equals_a_peek_at_the_same_instant)
{
	struct sluice_engine *e = engine_of(load_text(policy_pl));
	struct sluice_decision per[SLUICE_POLICY_MAX_LIMITS];
	struct sluice_engine_decision d;
	struct sluice_engine_usage u[SLUICE_POLICY_MAX_LIMITS];
	struct req q;
	size_t n;

	req_init(&q, "GET", "/", "t1", "w1", DAY0 + 3 * SEC);
	memset(per, 0xa5, sizeof per);
	q.r.limit_decisions = per;
	q.r.limit_decisions_cap = SLUICE_POLICY_MAX_LIMITS;
	for (int k = 0; k < 2; k++) {
		cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_OK);
		cr_assert(d.d.allowed);
	}
	cr_assert_eq(d.applied, 0xfu);
	peek_all(e, &q, u, &n);
	cr_assert_eq(n, 4);
	same_as_usage(per, u, n, d.applied, UINT32_MAX);
	/* The governing limit's entry is the decision's. */
	cr_assert_eq(per[d.d.limit_index].remaining, d.d.remaining);
	cr_assert_eq(per[2].remaining, 1, "ws_min: 3 - 2");
	cr_assert_eq(per[3].remaining, 3, "two slots held");
	/* Entries past the applied limits are untouched. */
	unsigned char sentinel[sizeof per[4]];
	memset(sentinel, 0xa5, sizeof sentinel);
	cr_assert_eq(memcmp(&per[4], sentinel, sizeof sentinel), 0);
	sluice_engine_destroy(e);
}

Test(engine_limits, on_a_denial_the_refusal_and_every_other_limit_after_the_undo)
{
	struct sluice_engine *e = engine_of(load_text(policy_pl));
	struct sluice_decision per[SLUICE_POLICY_MAX_LIMITS];
	struct sluice_engine_decision d;
	struct sluice_engine_usage u[SLUICE_POLICY_MAX_LIMITS];
	struct req q;
	size_t n;

	req_init(&q, "GET", "/", "t1", "w1", DAY0);
	for (int k = 0; k < 3; k++)
		cr_assert(run(e, &q).d.allowed);
	q.r.limit_decisions = per;
	q.r.limit_decisions_cap = SLUICE_POLICY_MAX_LIMITS;
	cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_OK);
	cr_assert_not(d.d.allowed);
	cr_assert_str_eq(d.limit_name, "ws_min");
	/* The refusing limit: the decision's own. */
	cr_assert_not(per[2].allowed);
	cr_assert_eq(per[2].limit_index, 2);
	cr_assert_eq(per[2].retry_after_ns, d.d.retry_after_ns);
	cr_assert_eq(per[2].reason, d.d.reason);
	/* The others: as read after the refusal undid the limits before it
	 * (the slot and the token limits hold only the three admissions). */
	peek_all(e, &q, u, &n);
	same_as_usage(per, u, n, d.applied, 2);
	cr_assert_eq(per[0].remaining, 7, "tok_min: 10 - 3, nothing of the refused one");
	cr_assert_eq(per[3].remaining, 5, "no slot held");
	sluice_engine_destroy(e);
}

Test(engine_limits, cost_zero_and_a_short_array_and_bad_arguments)
{
	struct sluice_engine *e = engine_of(load_text(policy_pl));
	struct sluice_decision per[2];
	struct sluice_engine_decision d;
	struct req q;

	req_init(&q, "GET", "/", "t1", NULL, DAY0);
	cr_assert(run(e, &q).d.allowed);
	q.r.cost = 0;
	q.r.limit_decisions = per;
	q.r.limit_decisions_cap = 2;
	cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_OK);
	cr_assert_eq(d.applied, 0xbu, "no workspace: ws_min does not apply");
	cr_assert(per[0].allowed && per[1].allowed);
	cr_assert_eq(per[0].remaining, 9);
	cr_assert_eq(per[1].remaining, 99);
	q.r.limit_decisions = NULL;
	cr_assert_eq(sluice_engine_check(e, &q.r, &d), SLUICE_EINVAL, "a cap without an array");
	sluice_engine_destroy(e);
}

/* ---- release from the held slot ---- */

static const char policy_lease[] =
	"policy \"ls\"\n"
	"scope token\n"
	"limit inflight per token concurrency 1 lease 2s\n";

Test(engine_release, a_slot_whose_lease_expired_and_was_reclaimed_is_stale)
{
	struct sluice_engine *e = engine_of(load_text(policy_lease));
	struct sluice_engine_decision held, again;
	struct req q;

	req_init(&q, "GET", "/", "t1", NULL, DAY0);
	cr_assert_eq(sluice_engine_check(e, &q.r, &held), SLUICE_OK);
	cr_assert(held.d.allowed);
	cr_assert_eq(held.slot_count, 1);
	struct sluice_engine_decision copy = held;
	/* The holder vanished: past its lease a sweep reaps the slot and
	 * reclaims the entry (its memory is freed after a grace period). */
	cr_assert_eq(sluice_engine_sweep(e, DAY0 + 10 * SEC, 1000), SLUICE_OK);
	cr_assert_eq(used_of(e, NULL, &q, "inflight"), 0);
	cr_assert_eq(sluice_engine_release(e, &held), SLUICE_ESTALE);
	cr_assert_eq(held.slot_count, 0);
	/* A new entry of the same key (perhaps at the same address): the old
	 * slot is still not its own. */
	q.r.now_ns = DAY0 + 11 * SEC;
	cr_assert_eq(sluice_engine_check(e, &q.r, &again), SLUICE_OK);
	cr_assert(again.d.allowed);
	cr_assert_eq(sluice_engine_release(e, &copy), SLUICE_ESTALE);
	cr_assert_eq(used_of(e, NULL, &q, "inflight"), 1, "the new holder keeps its slot");
	cr_assert_eq(sluice_engine_release(e, &again), SLUICE_OK);
	cr_assert_eq(used_of(e, NULL, &q, "inflight"), 0);
	sluice_engine_destroy(e);
}

Test(engine_release, double_release_and_stale_after_a_reload)
{
	struct sluice_engine *e = engine_of(load_text(policy_lease));
	struct sluice_engine_decision held;
	struct req q;

	req_init(&q, "GET", "/", "t1", NULL, DAY0);
	cr_assert_eq(sluice_engine_check(e, &q.r, &held), SLUICE_OK);
	struct sluice_engine_decision copy = held;
	cr_assert_eq(sluice_engine_release(e, &held), SLUICE_OK);
	cr_assert_eq(sluice_engine_release(e, &copy), SLUICE_EDOUBLE);
	cr_assert_eq(sluice_engine_check(e, &q.r, &held), SLUICE_OK);
	cr_assert(held.d.allowed);
	char text[256];
	snprintf(text, sizeof text, "%s", policy_lease);
	*strstr(text, "concurrency 1") = '\0';
	strcat(text, "concurrency 2 lease 2s\n");
	cr_assert_eq(sluice_engine_reload(e, load_text(text)), SLUICE_OK);
	cr_assert_eq(sluice_engine_release(e, &held), SLUICE_ESTALE, "its limit changed");
	sluice_engine_destroy(e);
}

/* ---- one maintenance thread ---- */

static int threads_now(void)
{
	DIR *d = opendir("/proc/self/task");
	cr_assert_not_null(d);
	int n = 0;
	for (struct dirent *de; (de = readdir(d)) != NULL;)
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

Test(engine_sweep, one_maintenance_thread_per_engine_however_many_limits)
{
	/* Many bindings: 4 limits x (base + 3 tiers) + overrides. */
	char text[4096] = "policy \"many\"\nscope token\ntier a x2\ntier b x3\ntier c x4\n";
	for (int i = 0; i < 4; i++) {
		char l[96];
		snprintf(l, sizeof l, "limit l%d per token rate %d/1m tiered\n", i, 10 + i);
		strcat(text, l);
	}
	for (int i = 0; i < 6; i++) {
		char l[128];
		snprintf(l, sizeof l, "override l0 token \"k%d\" 99 until 2099-01-01T00:00:00Z\n", i);
		strcat(text, l);
	}
	/* Warm liburcu's own threads (call_rcu, resize) with an engine that
	 * sweeps nothing by itself. */
	struct sluice_engine *warm = engine_of(load_text(text));
	struct req q;
	req_init(&q, "GET", "/", "k1", NULL, DAY0);
	cr_assert(run(warm, &q).d.allowed);
	int before = threads_now();

	struct sluice_engine_options o;
	memset(&o, 0, sizeof o);
	o.size = sizeof o;
	o.sweep_interval_ns = 1000 * 1000;
	struct sluice_engine *e = NULL;
	cr_assert_eq(sluice_engine_create(&e, load_text(text), &o), SLUICE_OK);
	cr_assert_eq(threads_now(), before + 1, "one thread for 22 bindings");
	cr_assert_eq(sluice_engine_reload(e, load_text(text)), SLUICE_OK);
	cr_assert_eq(threads_now(), before + 1, "a reload starts none");
	sluice_engine_destroy(e);
	cr_assert_eq(threads_now(), before, "destroy joins it");
	sluice_engine_destroy(warm);
}
