/*
 * redis.c - the Redis backend: GCRA limits evaluated atomically on a Redis
 * server by one Lua script (docs/redis.md).
 *
 * The algorithm is the GCRA cell's (gcra.c): a limit of bucket depth
 * tau = burst * T is described by its theoretical arrival time F; at time t
 * the debt is max(F, t) - t, and taking c units (need = c * T) is possible
 * iff debt <= tau - need, moving F to max(F, t) + need. The keyed limiter's
 * composition rule (limiter.c) decides several limits: a dry run over every
 * limit, in order, stops at the first denier and writes nothing; if none
 * denies, every limit is written. On Redis the script is atomic (no other
 * command runs during it), so the dry run and the writes need no receipts.
 *
 * Division of labour. The script only compares and adds: per limit it gets
 * the field name, need (or -1: cost > burst) and slack = tau - need from C,
 * and answers with the status and the debt before the decision as a
 * (seconds, nanoseconds) pair. C then computes remaining, reset_ns and
 * retry_after_ns in exact 64-bit arithmetic, exactly as gcra.c's fill().
 *
 * Exactness in Lua (doubles). Times (F, now) are up to 2^64 ns, stored as
 * decimal strings and split into (s = floor(x / 10^9), ns = x mod 10^9) by
 * string slicing: both parts are below 2^35 and exact. Durations (need,
 * slack, and any debt that can admit) are at most tau <= 2^52
 * (SLUICE_REDIS_MAX_TOLERANCE_NS, checked here before sending), so
 * debt = s * 10^9 + ns is exact whenever s < 4503600 (< 2^53), and a larger s
 * means debt > 2^52 >= slack: a denial, with the exact pair returned. Every
 * floor division is corrected by exact multiplication.
 *
 * Connections. One hiredis blocking context per node (one node unless in
 * cluster mode, where requests go to the node of their keys' hash slot:
 * CLUSTER SLOTS, then MOVED corrections). Every blocking step
 * (connect, write, read) gets the time left until the call's deadline as its
 * socket timeout, so a call never blocks past timeout_ns. A connection that
 * fails in a call is dropped; if it had been working (say the server
 * restarted) the call reconnects at once, within its deadline; otherwise the
 * next attempt waits for an exponential backoff and calls in between answer
 * by the fail mode without touching the network. NOSCRIPT reloads the script
 * and retries once. hiredis writes with write(2), which raises SIGPIPE on a
 * reset connection: SIGPIPE is blocked in the calling thread during I/O and a
 * pending one that we caused is consumed, so the process's signal handling
 * is left as it was.
 */
#include <sluice/redis.h>

#ifndef SLUICE_WITH_REDIS

int sluice_redis_create(struct sluice_redis **out, const struct sluice_redis_options *opts)
{
	(void)opts;
	if (out != NULL)
		*out = NULL;
	return SLUICE_EUNSUPPORTED;
}

void sluice_redis_destroy(struct sluice_redis *r)
{
	(void)r;
}

int sluice_redis_admit_scopes(struct sluice_redis *r, const struct sluice_redis_scope *scopes,
			      size_t nscopes, uint64_t cost, uint64_t now_ns, struct sluice_decision *out)
{
	(void)r, (void)scopes, (void)nscopes, (void)cost, (void)now_ns, (void)out;
	return SLUICE_EUNSUPPORTED;
}

int sluice_redis_admit(struct sluice_redis *r, const void *key, size_t key_len,
		       const struct sluice_limit *limits, size_t nlimits, uint64_t cost, uint64_t now_ns,
		       struct sluice_decision *out)
{
	(void)r, (void)key, (void)key_len, (void)limits, (void)nlimits, (void)cost, (void)now_ns,
		(void)out;
	return SLUICE_EUNSUPPORTED;
}

int sluice_redis_admit_batch(struct sluice_redis *r, const struct sluice_redis_request *reqs,
			     size_t n, uint64_t now_ns, struct sluice_decision *out)
{
	(void)r, (void)reqs, (void)n, (void)now_ns, (void)out;
	return SLUICE_EUNSUPPORTED;
}

int sluice_redis_stats(const struct sluice_redis *r, struct sluice_redis_stats *out)
{
	(void)r, (void)out;
	return SLUICE_EUNSUPPORTED;
}

#else /* SLUICE_WITH_REDIS */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>

#include <hiredis/hiredis.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "limit_kind_internal.h"
#include "util_internal.h"

/*
 * The script. KEYS: one hash per scope. ARGV[1]: now in ns ("" = the
 * server's TIME), ARGV[2]: "1" to admit, "0" to peek, ARGV[3]: the expiry
 * grace in ns; then per scope the
 * number of limits k, then k triples (field, need, slack). Answer:
 *   denied:  {status, flat index of the denier, debt_s, debt_ns}
 *            status 1 = rate, 2 = never (cost > burst, or past the horizon)
 *   allowed: {0, -1, debt_s, debt_ns per limit in order}  (debt before it)
 * The hash field of a limit holds F in decimal; its key expires when every
 * field is back to full (PEXPIRE to the largest debt after the admission,
 * never shortened). Needs Redis >= 4.0 (HSET of several fields); on 3.2-4.x
 * replicate_commands() makes TIME before writes legal (effects
 * replication, the only mode since 7.0, where the call is a no-op).
 */
static const char script_text[] =
	"local B = 1000000000\n"
	"local function fdiv(x, d)\n"
	"  local q = math.floor(x / d)\n"
	"  while q * d > x do q = q - 1 end\n"
	"  while (q + 1) * d <= x do q = q + 1 end\n"
	"  return q\n"
	"end\n"
	"local function split(s)\n"
	"  if not s then return 0, 0 end\n"
	"  local n = #s\n"
	"  if n <= 9 then return 0, tonumber(s) end\n"
	"  return tonumber(string.sub(s, 1, n - 9)), tonumber(string.sub(s, n - 8))\n"
	"end\n"
	"if redis.replicate_commands then redis.replicate_commands() end\n"
	"local nh, nl\n"
	"if ARGV[1] == '' then\n"
	"  local t = redis.call('TIME')\n"
	"  nh, nl = tonumber(t[1]), tonumber(t[2]) * 1000\n"
	"else\n"
	"  nh, nl = split(ARGV[1])\n"
	"end\n"
	"local write = ARGV[2] == '1'\n"
	"local grace = tonumber(ARGV[3])\n"
	"local a, flat = 4, 0\n"
	"local out = {0, -1}\n"
	"local plan = {}\n"
	"for s = 1, #KEYS do\n"
	"  local k = tonumber(ARGV[a]); a = a + 1\n"
	"  local fields = {}\n"
	"  for i = 1, k do fields[i] = ARGV[a + 3 * (i - 1)] end\n"
	"  local vals = redis.call('HMGET', KEYS[s], unpack(fields))\n"
	"  local sets, ttl = {}, 0\n"
	"  for i = 1, k do\n"
	"    local need, slack = tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])\n"
	"    a = a + 3\n"
	"    local bh, bl = split(vals[i])\n"
	"    if bh < nh or (bh == nh and bl < nl) then bh, bl = nh, nl end\n"
	"    local dh, dl = bh - nh, bl - nl\n"
	"    if dl < 0 then dh, dl = dh - 1, dl + B end\n"
	"    if write then\n"
	"      local st = 0\n"
	"      if need < 0 then\n"
	"        st = 2\n"
	"      else\n"
	"        local xl = bl + need\n"
	"        local c = fdiv(xl, B)\n"
	"        local xh = bh + c\n"
	"        xl = xl - c * B\n"
	"        if xh > 18446744073 or (xh == 18446744073 and xl > 709551613) then\n"
	"          st = 2\n"
	"        elseif dh >= 4503600 or dh * B + dl > slack then\n"
	"          st = 1\n"
	"        else\n"
	"          sets[#sets + 1] = fields[i]\n"
	"          if xh > 0 then\n"
	"            sets[#sets + 1] = string.format('%d%09d', xh, xl)\n"
	"          else\n"
	"            sets[#sets + 1] = string.format('%d', xl)\n"
	"          end\n"
	"          local post = dh * B + dl + need + grace\n"
	"          if post > ttl then ttl = post end\n"
	"        end\n"
	"      end\n"
	"      if st ~= 0 then return {st, flat + i - 1, dh, dl} end\n"
	"    end\n"
	"    out[#out + 1] = dh\n"
	"    out[#out + 1] = dl\n"
	"  end\n"
	"  flat = flat + k\n"
	"  plan[s] = {sets, ttl}\n"
	"end\n"
	"if write then\n"
	"  for s = 1, #KEYS do\n"
	"    local p = plan[s]\n"
	"    redis.call('HSET', KEYS[s], unpack(p[1]))\n"
	"    local ms = fdiv(p[2] + 999999, 1000000)\n"
	"    if ms < 1 then ms = 1 end\n"
	"    if redis.call('PTTL', KEYS[s]) < ms then redis.call('PEXPIRE', KEYS[s], ms) end\n"
	"  end\n"
	"end\n"
	"return out\n";

enum { ST_OK = 0, ST_RATE = 1, ST_NEVER = 2 };

/* Bound on the arguments of one script call: EVALSHA sha numkeys, keys,
 * now, write, then per scope k and 3 per limit. */
#define MAX_ARGS (3 + 3 + 2 * SLUICE_REDIS_MAX_SCOPES + 3 * SLUICE_REDIS_MAX_LIMITS)
/* Longest field name "i:interval:tau" and number. */
#define FIELD_MAX 48
#define NUM_MAX 24

/* One slot of the local deny cache: the latest F this handle has seen for
 * one (key, limit), in the clock the cache uses. */
struct deny_slot {
	uint64_t tag; /* 0: empty */
	uint64_t tat_ns;
};

/* A request, validated and flattened. */
struct prepared {
	const struct sluice_redis_request *req;
	size_t nlimits;
	const struct sluice_limit *limit[SLUICE_REDIS_MAX_LIMITS];
	uint64_t tag[SLUICE_REDIS_MAX_LIMITS]; /* deny-cache tags */
	uint32_t slot;                         /* cluster hash slot of its keys */
	bool done;                             /* decided (locally or from a reply) */
	bool sent;                             /* in the current pipeline */
	/* Local lease: while this request takes a lease, req points to take
	 * (the caller's request with cost = the lease's units) and orig to
	 * the caller's request; lease is its slot, lease_sig its shape. */
	const struct sluice_redis_request *orig;
	struct sluice_redis_request take;
	struct lease *lease;
	uint64_t lease_sig;
	int ask_node; /* cluster: the node an ASK reply named; -1: none */
};

/* One entry of the lease table: a request shape's heat and its lease. */
struct lease {
	uint64_t sig;           /* request shape (hash of its deny-cache tags); 0: empty */
	uint64_t heat_start_ns; /* start of the current heat window */
	uint32_t hits;          /* requests of this shape since heat_start_ns */
	bool taking;            /* a request of the current call takes this lease */
	uint64_t left;          /* leased units not yet spent (0: no lease) */
	uint64_t start_ns;      /* the lease's start: before its round trip was sent */
	uint64_t gov_tat_ns;    /* the governing limit's F right after the take */
	uint64_t gov_limit;     /* the governing limit's limit */
	uint32_t gov_index;     /* and its flat index */
};

/* One server: the configured one, or in cluster mode any node we learnt. */
#define MAX_NODES 16
#define HOST_MAX 256
#define CLUSTER_SLOTS 16384

struct node {
	redisContext *ctx; /* NULL: not connected */
	bool ever_worked;  /* ctx has answered a script call since it connected */
	char host[HOST_MAX];
	int port;
	uint64_t backoff_ns;      /* the next wait */
	uint64_t next_attempt_ns; /* monotonic; no connect before it */
};

struct sluice_redis {
	struct node nodes[MAX_NODES]; /* nodes[0]: the configured server */
	uint32_t nnodes;
	uint8_t *slot_node; /* cluster mode: node index per hash slot; else NULL */
	char sha[41];
	uint32_t fail_mode;
	uint32_t flags;
	uint64_t timeout_ns;
	char grace[NUM_MAX]; /* expiry grace, decimal ns */
	size_t grace_len;
	uint64_t backoff_min_ns;
	uint64_t backoff_max_ns;
	char *prefix;
	size_t prefix_len;
	struct deny_slot *cache;
	uint64_t cache_mask;
	uint64_t cache_seed;
	/* Scratch for one call's arguments: no allocation per call. */
	char *buf;
	size_t buf_cap;
	const char *argv[MAX_ARGS];
	size_t argvlen[MAX_ARGS];
	struct prepared *prep; /* batch scratch */
	size_t prep_cap;
	struct sluice_redis_stats st;
	/* The local lease (off: lease == NULL). */
	struct lease *lease;
	uint64_t lease_mask;
	uint64_t lease_units;
	uint64_t lease_hot_hits;
	uint64_t lease_ttl_ns;
};

/* ---- small helpers ---- */

static struct timeval tv_of(uint64_t ns)
{
	struct timeval tv;

	if (ns < 1000)
		ns = 1000; /* a zero timeval means "no timeout" to setsockopt */
	tv.tv_sec = (time_t)(ns / SLUICE_NS_PER_SEC);
	tv.tv_usec = (suseconds_t)(ns % SLUICE_NS_PER_SEC / 1000);
	return tv;
}

/* Time left before the deadline, 0 if none. */
static uint64_t time_left(uint64_t deadline_ns)
{
	uint64_t now = sluice_monotonic_ns();
	return deadline_ns > now ? deadline_ns - now : 0;
}

/* SIGPIPE guard: see the file comment. */
struct sigpipe_guard {
	sigset_t old;
	bool was_pending;
};

static void sigpipe_block(struct sigpipe_guard *g)
{
	sigset_t set, pending;

	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	sigemptyset(&pending);
	sigpending(&pending);
	g->was_pending = sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &set, &g->old);
}

static void sigpipe_restore(const struct sigpipe_guard *g)
{
	sigset_t set, pending;

	if (!g->was_pending) {
		sigemptyset(&pending);
		sigpending(&pending);
		if (sigismember(&pending, SIGPIPE) == 1) {
			sigemptyset(&set);
			sigaddset(&set, SIGPIPE);
			struct timespec zero = { 0, 0 };
			while (sigtimedwait(&set, NULL, &zero) == -1 && errno == EINTR)
				;
		}
	}
	pthread_sigmask(SIG_SETMASK, &g->old, NULL);
}

/* ---- decisions ---- */

/* gcra.c's fill() for a limit whose debt after the decision is `debt`. */
static void fill(struct sluice_decision *out, const struct sluice_rate *rate, bool allowed,
		 uint64_t debt, uint64_t retry_after_ns, uint8_t reason)
{
	out->allowed = allowed;
	out->degraded = false;
	out->reason = reason;
	out->reserved_ = 0;
	out->limit_index = 0;
	out->limit = rate->limit;
	out->remaining = debt >= rate->tolerance_ns ? 0 : (rate->tolerance_ns - debt) / rate->interval_ns;
	out->reset_ns = debt;
	out->retry_after_ns = retry_after_ns;
}

/* The decision of one limit given its debt before the request, as gcra.c's
 * admit()/check would make it (status from the script or the cache). */
static void decide_limit(struct sluice_decision *out, const struct sluice_rate *rate, int status,
			 uint64_t debt, uint64_t cost)
{
	if (status == ST_NEVER) {
		fill(out, rate, false, debt, SLUICE_NEVER, SLUICE_REASON_NEVER);
	} else if (status == ST_RATE) {
		uint64_t slack = rate->tolerance_ns - cost * rate->interval_ns;
		fill(out, rate, false, debt, debt - slack, SLUICE_REASON_RATE);
	} else {
		fill(out, rate, true, debt + cost * rate->interval_ns, 0, SLUICE_REASON_NONE);
	}
}

/* Least remaining, then the shorter reset (limiter.c's govern()). */
static void govern(const struct sluice_decision *d, size_t n, struct sluice_decision *out)
{
	size_t best = 0;

	for (size_t i = 1; i < n; i++)
		if (d[i].remaining < d[best].remaining ||
		    (d[i].remaining == d[best].remaining && d[i].reset_ns < d[best].reset_ns))
			best = i;
	*out = d[best];
	out->limit_index = (uint32_t)best;
}

static void fill_degraded(struct sluice_redis *r, const struct prepared *p, struct sluice_decision *out)
{
	bool open = r->fail_mode == SLUICE_FAIL_OPEN;

	memset(out, 0, sizeof *out);
	out->allowed = open || p->req->cost == 0;
	out->degraded = true;
	out->reason = out->allowed ? SLUICE_REASON_NONE : SLUICE_REASON_CAPACITY;
	out->limit = p->limit[0]->rate.limit;
	r->st.degraded++;
}

static void count(struct sluice_redis *r, const struct prepared *p, const struct sluice_decision *d)
{
	if (p->req->cost == 0)
		return; /* peeks are not admissions */
	if (d->allowed)
		r->st.admitted++;
	else
		r->st.denied++;
}

/* ---- the deny cache ---- */

static uint64_t cache_now(const struct sluice_redis *r, uint64_t now_ns)
{
	return (r->flags & SLUICE_REDIS_CALLER_CLOCK) ? now_ns : sluice_monotonic_ns();
}

static struct deny_slot *cache_find(struct sluice_redis *r, uint64_t tag)
{
	struct deny_slot *s = &r->cache[tag & r->cache_mask];
	return s->tag == tag ? s : NULL;
}

/* Record that F >= tat_ns for tag (both are lower bounds of the server's F,
 * so the larger one is kept). */
static void cache_note(struct sluice_redis *r, uint64_t tag, uint64_t tat_ns)
{
	struct deny_slot *s = &r->cache[tag & r->cache_mask];
	if (s->tag == tag && s->tat_ns >= tat_ns)
		return;
	s->tag = tag;
	s->tat_ns = tat_ns;
}

/* Try to deny p locally at time t. True with *out filled on a hit: some
 * limit j denies on the cached F, and every limit before j has a cached F
 * that admits (so j is the first denier the server would find on the same
 * state). */
static bool cache_try_deny(struct sluice_redis *r, const struct prepared *p, uint64_t t,
			   struct sluice_decision *out)
{
	uint64_t cost = p->req->cost;

	for (size_t j = 0; j < p->nlimits; j++) {
		const struct sluice_rate *rate = &p->limit[j]->rate;
		const struct deny_slot *s = cache_find(r, p->tag[j]);
		if (s == NULL || cost > rate->burst)
			return false;
		uint64_t debt = s->tat_ns > t ? s->tat_ns - t : 0;
		uint64_t slack = rate->tolerance_ns - cost * rate->interval_ns;
		if (debt > slack) {
			/* The server's horizon rule could answer NEVER for an F
			 * near 2^64; leave that rare case to the server. */
			if (s->tat_ns > UINT64_MAX - 2 - rate->tolerance_ns)
				return false;
			decide_limit(out, rate, ST_RATE, debt, cost);
			out->limit_index = (uint32_t)j;
			r->st.cache_hits++;
			return true;
		}
	}
	return false;
}

/* ---- the local lease ---- */

/*
 * A hot request shape (the same keys and limits, seen lease_hot_hits times
 * within one lease_ttl_ns by this handle) takes a lease: the request is sent
 * with cost = the lease's units L (all-or-nothing with every limit and scope,
 * as any request), the caller gets its cost c, and the other L - c units are
 * kept here; later requests of the shape are answered from them without a
 * round trip while they last and the lease is younger than lease_ttl_ns.
 * Unused units are dropped, never returned to the server. The fleet-wide
 * bound and the meaning of a leased answer's fields: docs/redis.md,
 * "Local lease".
 */

/* The shape of a request: its keys and limits in order (the deny-cache
 * tags hash each (key, limit index, interval, depth); their sequence
 * names the request's keys and limits). A 64-bit hash, as for the deny
 * cache: two shapes share a lease only on a hash collision. */
static uint64_t lease_sig(const struct prepared *p)
{
	uint64_t h = XXH3_64bits_withSeed(p->tag, p->nlimits * sizeof p->tag[0], p->req->nscopes);
	return h != 0 ? h : 1;
}

/* Count a request (cost > 0) towards its shape's heat, and answer it from
 * the shape's lease if that holds enough units and is live at t (lease
 * clock = the deny cache's). True with *out filled on a leased answer. */
static bool lease_answer(struct sluice_redis *r, struct prepared *p, uint64_t t, struct sluice_decision *out)
{
	uint64_t cost = p->req->cost;
	uint64_t sig = lease_sig(p);
	struct lease *l = &r->lease[sig & r->lease_mask];

	p->lease_sig = sig;
	if (l->sig != sig) {
		/* Never during a take: admit_prepared() matches every request
		 * of a call to its entry before it marks any take. */
		r->st.lease_wasted += l->left;
		memset(l, 0, sizeof *l);
		l->sig = sig;
		l->heat_start_ns = t;
	}
	if (t < l->heat_start_ns || t - l->heat_start_ns >= r->lease_ttl_ns) {
		l->heat_start_ns = t;
		l->hits = 0;
	}
	if (l->hits < UINT32_MAX)
		l->hits++;
	if (l->left > 0 && t >= l->start_ns && t - l->start_ns >= r->lease_ttl_ns) {
		r->st.lease_wasted += l->left; /* expired */
		l->left = 0;
	}
	/* t < start: the caller's clock went back before the lease; answering
	 * then would break the bound (an admission before its consumption). */
	if (l->left < cost || t < l->start_ns)
		return false;
	l->left -= cost;
	out->allowed = true;
	out->degraded = false;
	out->reason = SLUICE_REASON_NONE;
	out->reserved_ = 0;
	out->limit_index = l->gov_index;
	out->limit = l->gov_limit;
	out->remaining = l->left; /* only what we hold: the server's share is unknown */
	out->reset_ns = l->gov_tat_ns > t ? l->gov_tat_ns - t : 0;
	out->retry_after_ns = 0;
	r->st.leased++;
	return true;
}

/* If p's shape is hot and has no take in this call, turn p into a lease
 * take: req points to a copy with cost = the lease's units, capped by the
 * smallest burst of its limits (a lease that some limit could never grant
 * would deny every time); no take if that is not more than p's own cost. */
static void lease_mark_take(struct sluice_redis *r, struct prepared *p)
{
	struct lease *l = &r->lease[p->lease_sig & r->lease_mask];
	uint64_t units = r->lease_units;

	if (l->sig != p->lease_sig || l->taking || l->hits < r->lease_hot_hits)
		return;
	for (size_t j = 0; j < p->nlimits; j++)
		if (p->limit[j]->rate.burst < units)
			units = p->limit[j]->rate.burst;
	if (units <= p->req->cost)
		return;
	l->taking = true;
	p->lease = l;
	p->orig = p->req;
	p->take = *p->req;
	p->take.cost = units;
	p->req = &p->take;
}

/*
 * After the exchange: turn each take's answer (a decision for L units) into
 * the answer for the caller's cost c, and install the lease. Allowed: the
 * lease holds L - c units from t (the time before the take was sent), and
 * the answer's remaining counts them (exact at the server's moment: its
 * remaining after L, plus what we hold). Denied at limit j with debt d: if
 * c would be denied at j too (d > tau - c*T; the limits before j admitted
 * L >= c, so j is also c's first denier), that is c's exact answer;
 * otherwise c might fit where L did not, and the request is sent again
 * with cost c (returns true). Degraded answers stay as they are.
 */
static bool lease_finish(struct sluice_redis *r, struct prepared *ps, size_t n, uint64_t t,
			 struct sluice_decision *out)
{
	bool resend = false;

	for (size_t i = 0; i < n; i++) {
		struct prepared *p = &ps[i];
		struct lease *l = p->lease;
		if (l == NULL)
			continue;
		uint64_t units = p->take.cost, cost = p->orig->cost;
		p->req = p->orig;
		p->lease = NULL;
		l->taking = false;
		struct sluice_decision *d = &out[i];
		if (!p->done || d->degraded)
			continue;
		if (d->allowed) {
			r->st.lease_grants++;
			r->st.lease_wasted += l->left; /* superseded */
			l->left = units - cost;
			l->start_ns = t;
			l->gov_index = d->limit_index;
			l->gov_limit = d->limit;
			l->gov_tat_ns = sluice__add_sat(t, d->reset_ns);
			d->remaining += units - cost;
			continue;
		}
		uint32_t j = d->limit_index;
		const struct sluice_rate *rate = &p->limit[j]->rate;
		if (d->reason == SLUICE_REASON_RATE &&
		    d->reset_ns > rate->tolerance_ns - cost * rate->interval_ns) {
			decide_limit(d, rate, ST_RATE, d->reset_ns, cost);
			d->limit_index = j;
			continue;
		}
		r->st.denied--; /* counted by count(); the resend counts again */
		p->done = false;
		resend = true;
	}
	return resend;
}

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
static uint32_t key_slot(const char *k, size_t n)
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

/* ---- validation and argument building ---- */

static int prepare(struct sluice_redis *r, const struct sluice_redis_request *req, struct prepared *p)
{
	if (req->scopes == NULL || req->nscopes == 0)
		return SLUICE_EINVAL;
	if (req->nscopes > SLUICE_REDIS_MAX_SCOPES)
		return SLUICE_ETOOBIG;
	p->req = req;
	p->nlimits = 0;
	p->slot = 0;
	p->done = p->sent = false;
	for (size_t s = 0; s < req->nscopes; s++) {
		const struct sluice_redis_scope *sc = &req->scopes[s];
		if (sc->key == NULL || sc->key_len > SLUICE_LIMITER_MAX_KEY)
			return SLUICE_EKEY;
		if (sc->limits == NULL || sc->nlimits == 0)
			return SLUICE_EINVAL;
		for (size_t q = 0; q < s; q++)
			if (req->scopes[q].key_len == sc->key_len &&
			    memcmp(req->scopes[q].key, sc->key, sc->key_len) == 0)
				return SLUICE_EINVAL;
		if (sc->nlimits > SLUICE_REDIS_MAX_LIMITS - p->nlimits)
			return SLUICE_ETOOBIG;
		if (r->slot_node != NULL) {
			/* Cluster: one script call runs on one node, so every key
			 * of a request must hash to one slot (share a {tag}). */
			memcpy(r->buf, r->prefix, r->prefix_len);
			memcpy(r->buf + r->prefix_len, sc->key, sc->key_len);
			uint32_t slot = key_slot(r->buf, r->prefix_len + sc->key_len);
			if (s == 0)
				p->slot = slot;
			else if (slot != p->slot)
				return SLUICE_EINVAL;
		}
		uint64_t key_hash = XXH3_64bits_withSeed(sc->key, sc->key_len, r->cache_seed);
		for (size_t i = 0; i < sc->nlimits; i++) {
			const struct sluice_limit *l = &sc->limits[i];
			if (l->kind != SLUICE_LIMIT_GCRA || sluice__limit_validate(l) != SLUICE_OK)
				return SLUICE_EINVAL;
			if (l->rate.tolerance_ns > SLUICE_REDIS_MAX_TOLERANCE_NS)
				return SLUICE_ERANGE;
			uint64_t id[3] = { i, l->rate.interval_ns, l->rate.tolerance_ns };
			uint64_t tag = XXH3_64bits_withSeed(id, sizeof id, key_hash);
			p->tag[p->nlimits] = tag != 0 ? tag : 1;
			p->limit[p->nlimits++] = l;
		}
	}
	return SLUICE_OK;
}

/* Fill r->argv for p; returns argc. r->buf is large enough by construction
 * (create sizes it for the largest request). */
static int build_args(struct sluice_redis *r, const struct prepared *p, uint64_t now_ns)
{
	const struct sluice_redis_request *req = p->req;
	char *w = r->buf;
	int argc = 0;

#define ARG(ptr, len) (r->argv[argc] = (ptr), r->argvlen[argc] = (len), argc++)
	ARG("EVALSHA", 7);
	ARG(r->sha, 40);
	ARG(w, sluice__u64_to_dec(w, req->nscopes));
	w += NUM_MAX;
	for (size_t s = 0; s < req->nscopes; s++) {
		memcpy(w, r->prefix, r->prefix_len);
		memcpy(w + r->prefix_len, req->scopes[s].key, req->scopes[s].key_len);
		ARG(w, r->prefix_len + req->scopes[s].key_len);
		w += r->prefix_len + req->scopes[s].key_len;
	}
	if (r->flags & SLUICE_REDIS_CALLER_CLOCK) {
		ARG(w, sluice__u64_to_dec(w, now_ns));
		w += NUM_MAX;
	} else {
		ARG("", 0);
	}
	ARG(req->cost > 0 ? "1" : "0", 1);
	ARG(r->grace, r->grace_len);
	size_t flat = 0;
	for (size_t s = 0; s < req->nscopes; s++) {
		ARG(w, sluice__u64_to_dec(w, req->scopes[s].nlimits));
		w += NUM_MAX;
		for (size_t i = 0; i < req->scopes[s].nlimits; i++, flat++) {
			const struct sluice_rate *rate = &p->limit[flat]->rate;
			char *f = w;
			size_t n = sluice__u64_to_dec(f, i);
			f[n++] = ':';
			n += sluice__u64_to_dec(f + n, rate->interval_ns);
			f[n++] = ':';
			n += sluice__u64_to_dec(f + n, rate->tolerance_ns);
			ARG(f, n);
			w += FIELD_MAX;
			if (req->cost > rate->burst) {
				ARG("-1", 2);
				ARG(w, sluice__u64_to_dec(w, rate->tolerance_ns));
			} else {
				uint64_t need = req->cost * rate->interval_ns;
				ARG(w, sluice__u64_to_dec(w, need));
				w += NUM_MAX;
				ARG(w, sluice__u64_to_dec(w, rate->tolerance_ns - need));
			}
			w += NUM_MAX;
		}
	}
#undef ARG
	return argc;
}

static size_t buf_size_for(size_t prefix_len)
{
	return NUM_MAX * 2 + SLUICE_REDIS_MAX_SCOPES * (prefix_len + SLUICE_LIMITER_MAX_KEY + NUM_MAX) +
	       SLUICE_REDIS_MAX_LIMITS * (FIELD_MAX + 2 * NUM_MAX);
}

/* ---- connection ---- */

static void drop(struct node *nd)
{
	if (nd->ctx != NULL) {
		redisFree(nd->ctx);
		nd->ctx = NULL;
	}
	nd->ever_worked = false;
}

static void schedule_retry(struct sluice_redis *r, struct node *nd)
{
	nd->next_attempt_ns = sluice__add_sat(sluice_monotonic_ns(), nd->backoff_ns);
	nd->backoff_ns = nd->backoff_ns > r->backoff_max_ns / 2 ? r->backoff_max_ns : nd->backoff_ns * 2;
}

/* Set the socket timeout to the time left; false (dropped) if none is. */
static bool arm_timeout(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns)
{
	uint64_t left = time_left(deadline_ns);
	if (left == 0 || redisSetTimeout(nd->ctx, tv_of(left)) != REDIS_OK) {
		r->st.timeouts += left == 0;
		drop(nd);
		return false;
	}
	return true;
}

/* SCRIPT LOAD on nd's connection. 0, or -1 (connection dropped). */
static int load_script(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns)
{
	if (!arm_timeout(r, nd, deadline_ns))
		return -1;
	r->st.script_loads++;
	r->st.round_trips++;
	const char *argv[3] = { "SCRIPT", "LOAD", script_text };
	size_t argvlen[3] = { 6, 4, sizeof script_text - 1 };
	redisReply *rep = redisCommandArgv(nd->ctx, 3, argv, argvlen);
	if (rep == NULL) {
		r->st.io_errors++;
		r->st.timeouts += time_left(deadline_ns) == 0;
		drop(nd);
		return -1;
	}
	int rc = -1;
	if (rep->type == REDIS_REPLY_STRING && rep->len == 40) {
		/* The SHA1 of the script: the same on every node. */
		memcpy(r->sha, rep->str, 40);
		r->sha[40] = '\0';
		rc = 0;
	} else {
		r->st.server_errors++;
		drop(nd);
	}
	freeReplyObject(rep);
	return rc;
}

static void refresh_slots(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns);

/* Make sure nd has a connection with the script loaded. 0, or -1 (fail
 * mode: down, in backoff, or out of time). */
static int ensure_connected(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns)
{
	if (nd->ctx != NULL)
		return 0;
	if (sluice_monotonic_ns() < nd->next_attempt_ns) {
		r->st.backoff_skips++;
		return -1;
	}
	uint64_t left = time_left(deadline_ns);
	if (left == 0) {
		r->st.timeouts++;
		return -1;
	}
	nd->ctx = redisConnectWithTimeout(nd->host, nd->port, tv_of(left));
	if (nd->ctx == NULL || nd->ctx->err != 0) {
		r->st.connect_failures++;
		drop(nd);
		schedule_retry(r, nd);
		return -1;
	}
	if (load_script(r, nd, deadline_ns) != 0) {
		r->st.connect_failures++;
		schedule_retry(r, nd);
		return -1;
	}
	r->st.connects++;
	nd->backoff_ns = r->backoff_min_ns;
	nd->next_attempt_ns = 0;
	if (r->slot_node != NULL && nd == &r->nodes[0])
		refresh_slots(r, nd, deadline_ns);
	return 0;
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
static void refresh_slots(struct sluice_redis *r, struct node *nd, uint64_t deadline_ns)
{
	if (!arm_timeout(r, nd, deadline_ns))
		return;
	r->st.round_trips++;
	redisReply *rep = redisCommand(nd->ctx, "CLUSTER SLOTS");
	if (rep == NULL) {
		r->st.io_errors++;
		drop(nd);
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
static int parse_redirect(struct sluice_redis *r, const redisReply *rep, size_t skip, uint32_t *slot)
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
static bool learn_moved(struct sluice_redis *r, const redisReply *rep)
{
	uint32_t slot;
	int ni = parse_redirect(r, rep, 6, &slot);
	if (ni < 0)
		return false;
	r->slot_node[slot] = (uint8_t)ni;
	return true;
}

static uint32_t node_of(const struct sluice_redis *r, const struct prepared *p)
{
	return r->slot_node != NULL ? r->slot_node[p->slot] : 0;
}

/* ---- replies ---- */

static bool reply_is_error(const redisReply *rep, const char *prefix)
{
	size_t n = strlen(prefix);
	return rep->type == REDIS_REPLY_ERROR && rep->len >= n && memcmp(rep->str, prefix, n) == 0;
}

static bool int_elem(const redisReply *rep, size_t i, long long lo, long long hi, long long *v)
{
	if (i >= rep->elements || rep->element[i]->type != REDIS_REPLY_INTEGER)
		return false;
	*v = rep->element[i]->integer;
	return *v >= lo && *v <= hi;
}

/* The debt pair (s, ns) at elements i, i+1 as ns; false if malformed. */
static bool debt_elem(const redisReply *rep, size_t i, uint64_t *debt)
{
	long long s, ns;
	if (!int_elem(rep, i, 0, (long long)(UINT64_MAX / SLUICE_NS_PER_SEC), &s) ||
	    !int_elem(rep, i + 1, 0, (long long)SLUICE_NS_PER_SEC - 1, &ns))
		return false;
	sluice__u128 d = (sluice__u128)(uint64_t)s * SLUICE_NS_PER_SEC + (uint64_t)ns;
	if (d > UINT64_MAX)
		return false;
	*debt = (uint64_t)d;
	return true;
}

/* Turn a script answer into the decision. False if malformed. t is the
 * request's time in the cache's clock (for noting F). */
static bool decode(struct sluice_redis *r, const struct prepared *p, const redisReply *rep, uint64_t t,
		   struct sluice_decision *out)
{
	uint64_t cost = p->req->cost;
	long long status, index;
	uint64_t debt;

	if (rep->type != REDIS_REPLY_ARRAY || !int_elem(rep, 0, ST_OK, ST_NEVER, &status))
		return false;
	if (status != ST_OK) {
		if (rep->elements != 4 || !int_elem(rep, 1, 0, (long long)p->nlimits - 1, &index) ||
		    !debt_elem(rep, 2, &debt))
			return false;
		const struct sluice_rate *rate = &p->limit[index]->rate;
		if (status == ST_RATE && (cost > rate->burst ||
					  debt <= rate->tolerance_ns - cost * rate->interval_ns))
			return false;
		decide_limit(out, rate, (int)status, debt, cost);
		out->limit_index = (uint32_t)index;
		if (r->cache != NULL && status == ST_RATE)
			cache_note(r, p->tag[index], sluice__add_sat(t, debt));
		return true;
	}
	if (rep->elements != 2 + 2 * p->nlimits || !int_elem(rep, 1, -1, -1, &index))
		return false;
	struct sluice_decision d[SLUICE_REDIS_MAX_LIMITS];
	for (size_t j = 0; j < p->nlimits; j++) {
		const struct sluice_rate *rate = &p->limit[j]->rate;
		if (!debt_elem(rep, 2 + 2 * j, &debt))
			return false;
		if (cost > 0) {
			if (cost > rate->burst || debt > rate->tolerance_ns - cost * rate->interval_ns)
				return false;
			decide_limit(&d[j], rate, ST_OK, debt, cost);
			if (r->cache != NULL)
				cache_note(r, p->tag[j], sluice__add_sat(t, d[j].reset_ns));
		} else {
			fill(&d[j], rate, true, debt, 0, SLUICE_REASON_NONE);
		}
	}
	govern(d, p->nlimits, out);
	return true;
}

/* ---- the exchange ---- */

/*
 * ASK (cluster, a slot being migrated): the node that owns the slot does not
 * have the request's keys any more, or not yet all of them; the node it
 * names (importing the slot) decides this one request if it is preceded by
 * ASKING. Both go in one pipeline: one round trip. The slot map is not
 * changed (the slot still belongs to the old node until the migration ends;
 * then MOVED re-points it). Done once: a second ASK, TRYAGAIN (some keys of
 * a multi-key request are on each side), an error or a lost connection ends
 * in the fail mode; MOVED or NOSCRIPT from the asked node leave the request
 * pending for the caller's next round (*again set).
 */
static void ask_one(struct sluice_redis *r, struct prepared *p, uint64_t now_ns, uint64_t t,
		    struct sluice_decision *out, uint64_t deadline_ns, bool *again)
{
	struct node *nd = &r->nodes[p->ask_node];
	static const char asking[] = "ASKING";
	const char *asking_argv[1] = { asking };
	size_t asking_len[1] = { sizeof asking - 1 };

	p->ask_node = -1;
	if (ensure_connected(r, nd, deadline_ns) != 0 || !arm_timeout(r, nd, deadline_ns))
		goto degraded;
	int argc = build_args(r, p, now_ns);
	if (redisAppendCommandArgv(nd->ctx, 1, asking_argv, asking_len) != REDIS_OK ||
	    redisAppendCommandArgv(nd->ctx, argc, r->argv, r->argvlen) != REDIS_OK) {
		drop(nd);
		goto degraded;
	}
	r->st.round_trips++;
	redisReply *ok = NULL, *rep = NULL;
	if (redisGetReply(nd->ctx, (void **)&ok) != REDIS_OK || ok == NULL ||
	    redisGetReply(nd->ctx, (void **)&rep) != REDIS_OK || rep == NULL) {
		if (ok != NULL)
			freeReplyObject(ok);
		r->st.io_errors++;
		r->st.timeouts += time_left(deadline_ns) == 0;
		drop(nd);
		goto degraded;
	}
	nd->ever_worked = true;
	bool asked = ok->type == REDIS_REPLY_STATUS && ok->len == 2 && memcmp(ok->str, "OK", 2) == 0;
	freeReplyObject(ok);
	if (asked && reply_is_error(rep, "NOSCRIPT")) {
		r->st.noscript++;
		if (load_script(r, nd, deadline_ns) == 0)
			*again = true;
	} else if (asked && reply_is_error(rep, "MOVED ") && learn_moved(r, rep)) {
		r->st.moved++;
		*again = true;
	} else if (asked && decode(r, p, rep, t, out)) {
		p->done = true;
		count(r, p, out);
	} else {
		if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "READONLY") != NULL)
			r->st.readonly++;
		else
			r->st.server_errors++;
		p->done = true;
		fill_degraded(r, p, out);
	}
	freeReplyObject(rep);
	if (p->done || *again)
		return;
degraded:
	p->done = true;
	fill_degraded(r, p, out);
}

/*
 * Decide every prepared request not yet done that belongs to node ni:
 * pipeline their script calls on its connection, read the replies in order.
 * Up to three passes: a NOSCRIPT reloads the script and resends those
 * requests; a connection that had been working and breaks (not by timeout)
 * is re-established once. A MOVED reply (cluster) re-points the slot and
 * leaves the request pending for the caller's next round (*moved set).
 */
static void exchange(struct sluice_redis *r, uint32_t ni, struct prepared *ps, size_t n,
		     uint64_t now_ns, struct sluice_decision *out, uint64_t deadline_ns, bool *moved)
{
	struct node *nd = &r->nodes[ni];
	uint64_t t = cache_now(r, now_ns);
	bool reconnected = false;

	for (int pass = 0; pass < 3; pass++) {
		bool pending = false;
		for (size_t i = 0; i < n; i++)
			pending |= !ps[i].done && node_of(r, &ps[i]) == ni;
		if (!pending || ensure_connected(r, nd, deadline_ns) != 0)
			break;
		if (!arm_timeout(r, nd, deadline_ns))
			break;
		bool ok = true;
		for (size_t i = 0; i < n && ok; i++) {
			ps[i].sent = false;
			if (ps[i].done || node_of(r, &ps[i]) != ni)
				continue;
			int argc = build_args(r, &ps[i], now_ns);
			if (redisAppendCommandArgv(nd->ctx, argc, r->argv, r->argvlen) != REDIS_OK) {
				ok = false;
			} else {
				ps[i].sent = true;
				ps[i].ask_node = -1;
			}
		}
		if (!ok) { /* out of memory in hiredis' output buffer */
			drop(nd);
			break;
		}
		r->st.round_trips++;
		bool noscript = false, broken = false, asked = false;
		for (size_t i = 0; i < n; i++) {
			if (!ps[i].sent)
				continue;
			redisReply *rep = NULL;
			if (redisGetReply(nd->ctx, (void **)&rep) != REDIS_OK || rep == NULL) {
				broken = true;
				break;
			}
			if (reply_is_error(rep, "NOSCRIPT")) {
				r->st.noscript++;
				noscript = true;
			} else if (r->slot_node != NULL && reply_is_error(rep, "MOVED ") &&
				   learn_moved(r, rep)) {
				r->st.moved++;
				*moved = true;
			} else if (r->slot_node != NULL && reply_is_error(rep, "ASK ") &&
				   (ps[i].ask_node = parse_redirect(r, rep, 4, &(uint32_t){ 0 })) >= 0) {
				r->st.ask++;
				asked = true;
			} else if (decode(r, &ps[i], rep, t, &out[i])) {
				ps[i].done = true;
				count(r, &ps[i], &out[i]);
			} else {
				if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "READONLY") != NULL)
					r->st.readonly++;
				else
					r->st.server_errors++;
				ps[i].done = true;
				fill_degraded(r, &ps[i], &out[i]);
			}
			freeReplyObject(rep);
		}
		if (broken) {
			bool timed_out = time_left(deadline_ns) == 0;
			bool worked = nd->ever_worked;
			r->st.io_errors++;
			r->st.timeouts += timed_out;
			drop(nd);
			if (timed_out || !worked || reconnected)
				break;
			reconnected = true; /* a restart: try a fresh connection now */
			continue;
		}
		nd->ever_worked = true;
		/* After every reply of nd's pipeline is read: nd's connection
		 * is idle while the asked nodes are used. */
		for (size_t i = 0; asked && i < n; i++)
			if (ps[i].sent && !ps[i].done && ps[i].ask_node >= 0)
				ask_one(r, &ps[i], now_ns, t, &out[i], deadline_ns, moved);
		if (noscript && load_script(r, nd, deadline_ns) != 0)
			break;
	}
}

/* ---- public API ---- */

/* One round per node that has requests; in cluster mode, more rounds
 * while MOVED replies re-point slots (at most 3 redirections). */
static void rounds(struct sluice_redis *r, struct prepared *ps, size_t n, uint64_t now_ns,
		   struct sluice_decision *out, uint64_t deadline)
{
	for (int round = 0; round < 4; round++) {
		bool moved = false;
		for (uint32_t ni = 0; ni < r->nnodes; ni++)
			exchange(r, ni, ps, n, now_ns, out, deadline, &moved);
		if (!moved)
			break;
	}
}

static int admit_prepared(struct sluice_redis *r, struct prepared *ps, size_t n, uint64_t now_ns,
			  struct sluice_decision *out)
{
	uint64_t deadline = sluice__add_sat(sluice_monotonic_ns(), r->timeout_ns);
	/* The lease clock (the deny cache's), read before anything is sent. */
	uint64_t lease_t = r->lease != NULL ? cache_now(r, now_ns) : 0;

	for (size_t i = 0; i < n; i++) {
		ps[i].lease = NULL;
		ps[i].ask_node = -1;
		if (r->lease != NULL && ps[i].req->cost > 0 &&
		    lease_answer(r, &ps[i], lease_t, &out[i])) {
			ps[i].done = true;
			count(r, &ps[i], &out[i]);
		}
	}
	if (r->cache != NULL) {
		uint64_t t = cache_now(r, now_ns);
		for (size_t i = 0; i < n; i++) {
			if (!ps[i].done && ps[i].req->cost > 0 && cache_try_deny(r, &ps[i], t, &out[i])) {
				ps[i].done = true;
				count(r, &ps[i], &out[i]);
			}
		}
	}
	bool pending = false;
	for (size_t i = 0; i < n; i++) {
		if (ps[i].done)
			continue;
		pending = true;
		if (r->lease != NULL && ps[i].req->cost > 0)
			lease_mark_take(r, &ps[i]);
	}
	/* Answered locally (lease, deny cache): no I/O, so no signal mask
	 * syscalls either. */
	if (pending) {
		struct sigpipe_guard guard;
		sigpipe_block(&guard);
		rounds(r, ps, n, now_ns, out, deadline);
		if (r->lease != NULL && lease_finish(r, ps, n, lease_t, out))
			rounds(r, ps, n, now_ns, out, deadline);
		sigpipe_restore(&guard);
	}
	for (size_t i = 0; i < n; i++) {
		if (!ps[i].done) {
			ps[i].done = true;
			fill_degraded(r, &ps[i], &out[i]);
		}
	}
	return SLUICE_OK;
}

int sluice_redis_admit_scopes(struct sluice_redis *r, const struct sluice_redis_scope *scopes,
			      size_t nscopes, uint64_t cost, uint64_t now_ns, struct sluice_decision *out)
{
	if (r == NULL || out == NULL)
		return SLUICE_EINVAL;
	struct sluice_redis_request req = { scopes, nscopes, cost };
	struct prepared p;
	int rc = prepare(r, &req, &p);
	if (rc != SLUICE_OK)
		return rc;
	return admit_prepared(r, &p, 1, now_ns, out);
}

int sluice_redis_admit(struct sluice_redis *r, const void *key, size_t key_len,
		       const struct sluice_limit *limits, size_t nlimits, uint64_t cost, uint64_t now_ns,
		       struct sluice_decision *out)
{
	struct sluice_redis_scope scope = { key, key_len, limits, nlimits };
	return sluice_redis_admit_scopes(r, &scope, 1, cost, now_ns, out);
}

int sluice_redis_admit_batch(struct sluice_redis *r, const struct sluice_redis_request *reqs,
			     size_t n, uint64_t now_ns, struct sluice_decision *out)
{
	if (r == NULL || (n > 0 && (reqs == NULL || out == NULL)))
		return SLUICE_EINVAL;
	if (n == 0)
		return SLUICE_OK;
	if (n > r->prep_cap) {
		if (n > SIZE_MAX / sizeof *r->prep)
			return SLUICE_ENOMEM;
		struct prepared *np = realloc(r->prep, n * sizeof *np);
		if (np == NULL)
			return SLUICE_ENOMEM;
		r->prep = np;
		r->prep_cap = n;
	}
	for (size_t i = 0; i < n; i++) {
		int rc = prepare(r, &reqs[i], &r->prep[i]);
		if (rc != SLUICE_OK)
			return rc;
	}
	return admit_prepared(r, r->prep, n, now_ns, out);
}

int sluice_redis_stats(const struct sluice_redis *r, struct sluice_redis_stats *out)
{
	if (r == NULL || out == NULL ||
	    (out->size != SLUICE_REDIS_STATS_V1_SIZE && out->size < sizeof *out))
		return SLUICE_EINVAL;
	/* A version-1 caller's struct ends before the lease fields. */
	size_t n = out->size < sizeof *out ? out->size : sizeof *out;
	memcpy(out, &r->st, n);
	out->size = n;
	return SLUICE_OK;
}

static char *dup_str(const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = malloc(n);
	if (d != NULL)
		memcpy(d, s, n);
	return d;
}

int sluice_redis_create(struct sluice_redis **out, const struct sluice_redis_options *opts)
{
	struct sluice_redis_options o = { .size = sizeof o };

	if (out == NULL)
		return SLUICE_EINVAL;
	*out = NULL;
	if (opts != NULL) {
		/* Version 1 (no lease fields) or the current one. */
		if (opts->size != SLUICE_REDIS_OPTIONS_V1_SIZE && opts->size < sizeof o)
			return SLUICE_EINVAL;
		memcpy(&o, opts, opts->size < sizeof o ? opts->size : sizeof o);
	}
	const char *host = o.host != NULL ? o.host : "127.0.0.1";
	if (o.fail_mode > SLUICE_FAIL_CLOSED ||
	    (o.flags & ~(SLUICE_REDIS_CALLER_CLOCK | SLUICE_REDIS_CLUSTER)) ||
	    strlen(host) == 0 || strlen(host) >= HOST_MAX ||
	    o.port > 65535 || (o.deny_cache_slots & (o.deny_cache_slots - 1)) != 0 ||
	    o.expiry_grace_ns > SLUICE_REDIS_MAX_TOLERANCE_NS / 2 ||
	    (o.lease_slots & (o.lease_slots - 1)) != 0 || o.lease_reserved_ != 0 ||
	    o.lease_ttl_ns > SLUICE_REDIS_MAX_TOLERANCE_NS)
		return SLUICE_EINVAL;
	if (o.timeout_ns == 0)
		o.timeout_ns = 50 * 1000 * 1000;
	if (o.backoff_min_ns == 0)
		o.backoff_min_ns = 10 * 1000 * 1000;
	if (o.backoff_max_ns == 0)
		o.backoff_max_ns = SLUICE_NS_PER_SEC;
	if (o.backoff_min_ns > o.backoff_max_ns)
		return SLUICE_EINVAL;

	struct sluice_redis *r = calloc(1, sizeof *r);
	if (r == NULL)
		return SLUICE_ENOMEM;
	r->prefix = dup_str(o.key_prefix != NULL ? o.key_prefix : "sluice:");
	if (r->prefix == NULL)
		goto nomem;
	if (o.flags & SLUICE_REDIS_CLUSTER) {
		/* All slots start at node 0; CLUSTER SLOTS and MOVED fill in. */
		r->slot_node = calloc(CLUSTER_SLOTS, 1);
		if (r->slot_node == NULL)
			goto nomem;
	}
	r->prefix_len = strlen(r->prefix);
	r->buf_cap = buf_size_for(r->prefix_len);
	r->buf = malloc(r->buf_cap);
	if (r->buf == NULL)
		goto nomem;
	if (o.deny_cache_slots != 0) {
		r->cache = calloc(o.deny_cache_slots, sizeof *r->cache);
		if (r->cache == NULL)
			goto nomem;
		r->cache_mask = o.deny_cache_slots - 1;
	}
	/* Seeds the tags of the deny cache and of the lease shapes. */
	r->cache_seed = sluice_monotonic_ns() ^ (uint64_t)(uintptr_t)r;
	if (o.lease_units != 0) {
		uint32_t slots = o.lease_slots != 0 ? o.lease_slots : 64;
		r->lease = calloc(slots, sizeof *r->lease);
		if (r->lease == NULL)
			goto nomem;
		r->lease_mask = slots - 1;
		r->lease_units = o.lease_units;
		r->lease_hot_hits = o.lease_hot_hits != 0 ? o.lease_hot_hits : o.lease_units;
		r->lease_ttl_ns = o.lease_ttl_ns != 0 ? o.lease_ttl_ns : 100 * 1000 * 1000;
	}
	memcpy(r->nodes[0].host, host, strlen(host) + 1);
	r->nodes[0].port = o.port != 0 ? (int)o.port : 6379;
	r->nodes[0].backoff_ns = o.backoff_min_ns;
	r->nnodes = 1;
	r->fail_mode = o.fail_mode;
	r->flags = o.flags;
	r->timeout_ns = o.timeout_ns;
	r->grace_len = sluice__u64_to_dec(r->grace, o.expiry_grace_ns);
	r->backoff_min_ns = o.backoff_min_ns;
	r->backoff_max_ns = o.backoff_max_ns;
	r->st.size = sizeof r->st;

	struct sigpipe_guard guard;
	sigpipe_block(&guard);
	(void)ensure_connected(r, &r->nodes[0], sluice__add_sat(sluice_monotonic_ns(), r->timeout_ns));
	sigpipe_restore(&guard);
	*out = r;
	return SLUICE_OK;
nomem:
	sluice_redis_destroy(r);
	return SLUICE_ENOMEM;
}

void sluice_redis_destroy(struct sluice_redis *r)
{
	if (r == NULL)
		return;
	for (uint32_t i = 0; i < r->nnodes; i++)
		drop(&r->nodes[i]);
	free(r->slot_node);
	free(r->prefix);
	free(r->buf);
	free(r->cache);
	free(r->lease);
	free(r->prep);
	free(r);
}

#endif /* SLUICE_WITH_REDIS */
