/*
 * Concurrency slots: a counting semaphore of N with per-slot handles and
 * leases.
 *
 * State. `in_use` counts reservations (0..N). Each slot has a state word
 *
 *     bits 0-1 phase: FREE, CLAIMING (being handed out), HELD
 *     bits 2-29 gen: the slot's use count (mod 2^28, never 0 once used)
 *     bits 30-57 reaped: the gen of the last use that was reclaimed (0: none)
 *
 * and a deadline word (lease end, written while CLAIMING).
 *
 * Acquire reserves first, then claims: a CAS raises in_use below N, then a
 * scan CASes some FREE slot to CLAIMING with the next gen, writes its
 * deadline and publishes HELD. Release and reap go the other way: a CAS
 * moves HELD(g) to FREE(g), then in_use is decremented. So at every moment
 * the slots that are not FREE are at most the reservations, which are at
 * most N: never more than N holders, and a reserving acquirer always finds
 * a FREE slot (each lost claim CAS is another thread's success: lock-free).
 *
 * Handles encode (tag, gen, index). Release CASes HELD(g) to FREE(g) only if
 * the slot still carries the handle's gen, so a handle releases at most
 * once: a later release finds FREE(g) (released: SLUICE_EDOUBLE; reaped,
 * i.e. reaped == g: SLUICE_ESTALE) or another gen (reused since: EDOUBLE, or
 * ESTALE if reaped == g). A wrong tag or index is SLUICE_ESTALE. None of
 * these paths touches in_use.
 *
 * Leases. A HELD slot whose deadline has passed may be taken from its
 * holder: by an acquirer that found in_use == N, which CASes HELD(g)
 * straight to CLAIMING(g + 1) with reaped = g, inheriting the reservation
 * (in_use unchanged), or by sluice_slots_reap(), which CASes HELD(g) to
 * FREE(g) with reaped = g and then decrements in_use. The CAS on the full
 * word makes each use end exactly once: by its release or by one reclaim.
 * Time going backwards only makes deadlines look further away.
 *
 * Memory orders. in_use carries the semaphore's happens-before: the
 * reserving CAS is acquire, the decrement of release and reap is release, so
 * a holder's work before its release happens-before the next holder's. The
 * deadline is written (relaxed) while the slot is CLAIMING and published by
 * the release store of HELD; reclaimers load the state with acquire before
 * reading the deadline, and their CAS on the exact state word they saw
 * rejects a deadline read from a later use. Other slot-word CASes are
 * relaxed: the word's own modification order is all they rely on.
 */
#include <sluice/slots.h>

#include <stdatomic.h>
#include <string.h>
#include <time.h>

#include "common/util_internal.h"

enum { FREE = 0, CLAIMING = 1, HELD = 2 };

#define GEN_BITS 28
#define GEN_MASK ((UINT64_C(1) << GEN_BITS) - 1)
#define INDEX_BITS 12
#define TAG_MASK ((UINT64_C(1) << 24) - 1)

_Static_assert(sizeof(struct sluice_slots) == 16, "slots header is two words");
_Static_assert(SLUICE_SLOTS_MAX == 1u << INDEX_BITS, "slot index fits its handle field");
_Static_assert(INDEX_BITS + GEN_BITS + 24 == 64, "handle fields fill one word");

struct slot {
	_Atomic uint64_t state;
	_Atomic uint64_t deadline_ns;
};

static inline struct slot *slots_of(const struct sluice_slots *cell)
{
	return (struct slot *)(uintptr_t)(cell + 1);
}

static inline uint64_t phase(uint64_t s) { return s & 3; }
static inline uint64_t gen(uint64_t s) { return (s >> 2) & GEN_MASK; }
static inline uint64_t reaped(uint64_t s) { return (s >> (2 + GEN_BITS)) & GEN_MASK; }
static inline uint64_t make(uint64_t ph, uint64_t g, uint64_t r)
{
	return ph | g << 2 | r << (2 + GEN_BITS);
}
static inline uint64_t next_gen(uint64_t g)
{
	g = (g + 1) & GEN_MASK;
	return g == 0 ? 1 : g;
}

static inline sluice_slot_handle make_handle(const struct sluice_slots *cell, uint64_t g,
					     uint64_t index)
{
	return cell->tag << (INDEX_BITS + GEN_BITS) | g << INDEX_BITS | index;
}

int sluice_slots_config_init(struct sluice_slots_config *cfg, uint64_t slots, uint64_t lease_ttl_ns,
			     uint64_t retry_after_ns)
{
	if (cfg == NULL || slots == 0)
		return SLUICE_EINVAL;
	if (slots > SLUICE_SLOTS_MAX)
		return SLUICE_ETOOBIG;
	cfg->slots = slots;
	cfg->lease_ttl_ns = lease_ttl_ns;
	cfg->retry_after_ns = retry_after_ns != 0 ? retry_after_ns : SLUICE_SLOTS_DEFAULT_RETRY_NS;
	return SLUICE_OK;
}

size_t sluice_slots_size(const struct sluice_slots_config *cfg)
{
	if (cfg == NULL)
		return 0;
	return sizeof(struct sluice_slots) + (size_t)cfg->slots * sizeof(struct slot);
}

void sluice_slots_init(struct sluice_slots *cell, const struct sluice_slots_config *cfg)
{
	static _Atomic uint64_t next_tag = 1;
	struct slot *slot = slots_of(cell);

	/* relaxed: only uniqueness of the drawn value matters. */
	uint64_t tag = atomic_fetch_add_explicit(&next_tag, 1, memory_order_relaxed) & TAG_MASK; /* relaxed: why above */
	cell->tag = tag;
	/* relaxed: initialisation precedes publication of the cell; whatever
	 * publishes it (thread start, RCU insert) orders these stores. */
	atomic_store_explicit(&cell->in_use, 0, memory_order_relaxed); /* relaxed: why above */
	for (uint64_t i = 0; i < cfg->slots; i++) {
		atomic_store_explicit(&slot[i].state, make(FREE, 0, 0), memory_order_relaxed); /* relaxed: why above */
		atomic_store_explicit(&slot[i].deadline_ns, 0, memory_order_relaxed); /* relaxed: why above */
	}
}

static inline void fill(struct sluice_decision *out, const struct sluice_slots_config *cfg,
			bool allowed, uint64_t in_use)
{
	if (out == NULL)
		return;
	sluice__decision_set(out, allowed, allowed ? SLUICE_REASON_NONE : SLUICE_REASON_CONCURRENCY,
			     cfg->slots, in_use >= cfg->slots ? 0 : cfg->slots - in_use,
			     allowed ? 0 : cfg->retry_after_ns, allowed ? 0 : cfg->retry_after_ns);
}

/* Publish a slot we hold in CLAIMING(g) as HELD, with its lease. */
static sluice_slot_handle publish(struct sluice_slots *cell, const struct sluice_slots_config *cfg,
				  uint64_t index, uint64_t claimed, uint64_t now_ns)
{
	struct slot *slot = &slots_of(cell)[index];
	uint64_t deadline = cfg->lease_ttl_ns == 0 ? SLUICE_NEVER
						   : sluice__add_sat(now_ns, cfg->lease_ttl_ns);

	/* relaxed: published by the release store of HELD below. */
	atomic_store_explicit(&slot->deadline_ns, deadline, memory_order_relaxed); /* relaxed: why above */
	/* release: makes the deadline visible to reclaimers that load HELD with
	 * acquire; plain store, as only the claimer writes a CLAIMING slot. */
	atomic_store_explicit(&slot->state, make(HELD, gen(claimed), reaped(claimed)), /* release: why above */
			      memory_order_release);
	return make_handle(cell, gen(claimed), index);
}

/* With the cell full: take over one expired lease. Returns its index + 1, or
 * 0; *claimed receives the CLAIMING word. */
static uint64_t take_expired(struct sluice_slots *cell, const struct sluice_slots_config *cfg,
			     uint64_t now_ns, uint64_t *claimed)
{
	struct slot *slot = slots_of(cell);

	for (uint64_t i = 0; i < cfg->slots; i++) {
		/* acquire: pairs with the release store of HELD in publish(), so
		 * the deadline read below is at least this use's. */
		uint64_t s = atomic_load_explicit(&slot[i].state, memory_order_acquire); /* acquire: why above */
		if (phase(s) != HELD)
			continue;
		/* relaxed: ordered by the acquire above; a later use's deadline
		 * makes the CAS below fail, as the state word changed. */
		if (now_ns < atomic_load_explicit(&slot[i].deadline_ns, memory_order_relaxed)) /* relaxed: why above */
			continue;
		uint64_t c = make(CLAIMING, next_gen(gen(s)), gen(s));
		/* relaxed on success and failure: the CAS on the exact word ends
		 * this use once; the reservation passes to us unchanged. */
		if (atomic_compare_exchange_strong_explicit(&slot[i].state, &s, c, /* relaxed: why above */
							    memory_order_relaxed,
							    memory_order_relaxed)) {
			*claimed = c;
			return i + 1;
		}
	}
	return 0;
}

bool sluice_slots_acquire(struct sluice_slots *cell, const struct sluice_slots_config *cfg,
			  uint64_t now_ns, struct sluice_decision *out, sluice_slot_handle *handle)
{
	if (handle == NULL)
		return sluice_slots_peek(cell, cfg, now_ns, out);
	*handle = SLUICE_SLOT_NONE;

	/* relaxed: a first guess for the CAS below, which decides. */
	uint64_t n = atomic_load_explicit(&cell->in_use, memory_order_relaxed); /* relaxed: why above */
	for (;;) {
		if (n >= cfg->slots) {
			uint64_t claimed, i;
			if (cfg->lease_ttl_ns != 0 &&
			    (i = take_expired(cell, cfg, now_ns, &claimed)) != 0) {
				*handle = publish(cell, cfg, i - 1, claimed, now_ns);
				fill(out, cfg, true, n);
				return true;
			}
			fill(out, cfg, false, n);
			return false;
		}
		/* acquire on success: pairs with the release decrement of the
		 * release or reap that freed this capacity. relaxed on failure:
		 * n is reloaded and re-tested. */
		if (atomic_compare_exchange_weak_explicit(&cell->in_use, &n, n + 1, /* acquire/relaxed: why above */
							  memory_order_acquire,
							  memory_order_relaxed))
			break;
	}

	/* Reserved: some slot is FREE (file comment). Start the scan at our
	 * count (n < N here) so that concurrent acquirers start apart. */
	struct slot *slot = slots_of(cell);
	for (uint64_t i = n;; i = i + 1 == cfg->slots ? 0 : i + 1) {
		/* relaxed: the CAS below decides; nothing is published by FREE. */
		uint64_t s = atomic_load_explicit(&slot[i].state, memory_order_relaxed); /* relaxed: why above */
		if (phase(s) != FREE)
			continue;
		uint64_t c = make(CLAIMING, next_gen(gen(s)), reaped(s));
		/* relaxed on success and failure: the slot word's modification
		 * order is all that matters; in_use carried the acquire. */
		if (atomic_compare_exchange_strong_explicit(&slot[i].state, &s, c, /* relaxed: why above */
							    memory_order_relaxed,
							    memory_order_relaxed)) {
			*handle = publish(cell, cfg, i, c, now_ns);
			fill(out, cfg, true, n + 1);
			return true;
		}
	}
}

bool sluice_slots_peek(const struct sluice_slots *cell, const struct sluice_slots_config *cfg,
		       uint64_t now_ns, struct sluice_decision *out)
{
	(void)now_ns;
	/* relaxed: a snapshot of one word. */
	uint64_t n = atomic_load_explicit(&((struct sluice_slots *)(uintptr_t)cell)->in_use, /* relaxed: why above */
					  memory_order_relaxed);
	fill(out, cfg, n < cfg->slots, n);
	if (out != NULL && n < cfg->slots)
		out->reason = SLUICE_REASON_NONE;
	return n < cfg->slots;
}

int sluice_slots_release(struct sluice_slots *cell, const struct sluice_slots_config *cfg,
			 sluice_slot_handle handle)
{
	uint64_t index = handle & ((UINT64_C(1) << INDEX_BITS) - 1);
	uint64_t g = (handle >> INDEX_BITS) & GEN_MASK;

	if (cell == NULL || cfg == NULL || handle >> (INDEX_BITS + GEN_BITS) != cell->tag ||
	    index >= cfg->slots || g == 0)
		return SLUICE_ESTALE;

	struct slot *slot = &slots_of(cell)[index];
	/* relaxed: the CAS below decides. */
	uint64_t s = atomic_load_explicit(&slot->state, memory_order_relaxed); /* relaxed: why above */
	for (;;) {
		if (gen(s) != g || phase(s) != HELD) {
			if (reaped(s) == g)
				return SLUICE_ESTALE;
			/* CLAIMING with our gen: that use's handle is not out yet. */
			if (gen(s) == g && phase(s) == CLAIMING)
				return SLUICE_ESTALE;
			return SLUICE_EDOUBLE;
		}
		/* relaxed on success and failure: ends this use exactly once; the
		 * happens-before to the next holder is the release below. */
		if (atomic_compare_exchange_weak_explicit(&slot->state, &s, make(FREE, g, reaped(s)), /* relaxed: why above */
							  memory_order_relaxed,
							  memory_order_relaxed))
			break;
	}
	/* release: our work before the release happens-before the acquirer
	 * whose reserving CAS (acquire) reads this decrement. */
	atomic_fetch_sub_explicit(&cell->in_use, 1, memory_order_release); /* release: why above */
	return SLUICE_OK;
}

bool sluice_slots_cancel(struct sluice_slots *cell, const struct sluice_slots_config *cfg,
			 sluice_slot_handle handle)
{
	return sluice_slots_release(cell, cfg, handle) == SLUICE_OK;
}

unsigned sluice_slots_reap(struct sluice_slots *cell, const struct sluice_slots_config *cfg,
			   uint64_t now_ns)
{
	struct slot *slot = slots_of(cell);
	unsigned reclaimed = 0;

	if (cfg->lease_ttl_ns == 0)
		return 0;
	for (uint64_t i = 0; i < cfg->slots; i++) {
		/* acquire: pairs with publish()'s release of HELD (deadline). */
		uint64_t s = atomic_load_explicit(&slot[i].state, memory_order_acquire); /* acquire: why above */
		if (phase(s) != HELD)
			continue;
		/* relaxed: ordered by the acquire above (see take_expired()). */
		if (now_ns < atomic_load_explicit(&slot[i].deadline_ns, memory_order_relaxed)) /* relaxed: why above */
			continue;
		/* relaxed on success and failure: ends this use exactly once. */
		if (atomic_compare_exchange_strong_explicit(&slot[i].state, &s, /* relaxed: why above */
							    make(FREE, gen(s), gen(s)),
							    memory_order_relaxed,
							    memory_order_relaxed)) {
			/* release: as in sluice_slots_release(). */
			atomic_fetch_sub_explicit(&cell->in_use, 1, memory_order_release); /* release: why above */
			reclaimed++;
		}
	}
	return reclaimed;
}

bool sluice_slots_is_idle(const struct sluice_slots *cell, const struct sluice_slots_config *cfg,
			  uint64_t now_ns)
{
	(void)cfg;
	(void)now_ns;
	/* relaxed: a snapshot; the limiter re-checks under its own protocol. */
	return atomic_load_explicit(&((struct sluice_slots *)(uintptr_t)cell)->in_use, /* relaxed: why above */
				    memory_order_relaxed) == 0;
}

int sluice_slots_acquire_wait(struct sluice_slots *cell, const struct sluice_slots_config *cfg,
			      uint64_t deadline_ns, struct sluice_decision *out,
			      sluice_slot_handle *handle)
{
	uint64_t backoff_ns = 1000;

	if (cell == NULL || cfg == NULL || handle == NULL)
		return SLUICE_EINVAL;
	for (;;) {
		uint64_t now = sluice_monotonic_ns();
		if (sluice_slots_acquire(cell, cfg, now, out, handle))
			return SLUICE_OK;
		if (now >= deadline_ns)
			return SLUICE_ETIMEDOUT;
		uint64_t nap = SLUICE_MIN(backoff_ns, deadline_ns - now);
		struct timespec ts = { .tv_sec = (time_t)(nap / SLUICE_NS_PER_SEC),
				       .tv_nsec = (long)(nap % SLUICE_NS_PER_SEC) };
		nanosleep(&ts, NULL);
		backoff_ns = SLUICE_MIN(backoff_ns * 2, 1000000);
	}
}
