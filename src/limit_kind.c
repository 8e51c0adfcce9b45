/*
 * limit_kind.c - the table of operations of each limit kind
 * (limit_kind_internal.h). GCRA: thin wrappers over gcra.c.
 */
#include <stdatomic.h>
#include <string.h>

#include "gcra_internal.h"
#include "limit_kind_internal.h"

_Static_assert(sizeof(struct sluice_gcra_receipt) <= sizeof(struct sluice__receipt),
	       "a GCRA receipt fits in the generic one");
_Static_assert(sizeof(struct sluice_rate) <= sizeof(((struct sluice_limit *)0)->params_),
	       "GCRA parameters fit in the parameter block");
_Static_assert(sizeof(struct sluice_limit) == 136, "struct sluice_limit is ABI");

static void gcra_init(void *cell)
{
	sluice_gcra_init(cell);
}

static bool gcra_check(const void *cell, const struct sluice_limit *limit, uint64_t now_ns,
		       uint64_t cost, struct sluice_decision *out)
{
	return sluice__gcra_check_word(sluice__gcra_word(cell), &limit->rate, now_ns, cost, out);
}

static bool gcra_check_word(uint64_t word, const struct sluice_limit *limit, uint64_t now_ns,
			    uint64_t cost, struct sluice_decision *out)
{
	return sluice__gcra_check_word(word, &limit->rate, now_ns, cost, out);
}

static bool gcra_admit(void *cell, const struct sluice_limit *limit, uint64_t now_ns, uint64_t cost,
		       struct sluice_decision *out, struct sluice__receipt *receipt)
{
	if (receipt == NULL)
		return sluice_gcra_admit(cell, &limit->rate, now_ns, cost, out);
	struct sluice_gcra_receipt r;
	bool ok = sluice_gcra_admit_receipt(cell, &limit->rate, now_ns, cost, out, &r);
	receipt->w[0] = r.before;
	receipt->w[1] = r.after;
	return ok;
}

static bool gcra_cancel(void *cell, const struct sluice__receipt *receipt)
{
	struct sluice_gcra_receipt r = { .before = receipt->w[0], .after = receipt->w[1] };
	return sluice_gcra_cancel(cell, &r);
}

static bool gcra_word_is_idle(uint64_t word, const struct sluice_limit *limit, uint64_t now_ns)
{
	(void)limit;
	return word <= now_ns && !sluice__gcra_is_tomb(word);
}

static bool gcra_is_idle(const void *cell, const struct sluice_limit *limit, uint64_t now_ns)
{
	return gcra_word_is_idle(sluice__gcra_word(cell), limit, now_ns);
}

static uint64_t gcra_word(const void *cell)
{
	return sluice__gcra_word(cell);
}

static bool gcra_tomb(void *cell, uint64_t observed)
{
	return sluice__gcra_tomb(cell, observed);
}

static void gcra_mark_unlinked(void *cell)
{
	struct sluice_gcra *c = cell;
	/* release: the cds_lfht_del() that returned 0 before this store (the
	 * physical unlink) happens-before the sweeper's acquire load that sees
	 * it, so the grace period the sweeper starts next covers every reader
	 * that could still reach the node. */
	atomic_store_explicit(&c->tat_ns, SLUICE__GCRA_TOMB_UNLINKED, memory_order_release); /* release: why above */
}

static bool gcra_is_unlinked(const void *cell)
{
	struct sluice_gcra *c = (struct sluice_gcra *)cell;
	/* acquire: pairs with the release store in gcra_mark_unlinked(). */
	return atomic_load_explicit(&c->tat_ns, memory_order_acquire) == SLUICE__GCRA_TOMB_UNLINKED; /* acquire: why above */
}

static const struct sluice__limit_ops gcra_ops = {
	.cell_size = sizeof(struct sluice_gcra),
	.init = gcra_init,
	.check = gcra_check,
	.admit = gcra_admit,
	.cancel = gcra_cancel,
	.is_idle = gcra_is_idle,
	.word = gcra_word,
	.is_tomb = sluice__gcra_is_tomb,
	.word_is_idle = gcra_word_is_idle,
	.check_word = gcra_check_word,
	.tomb = gcra_tomb,
	.mark_unlinked = gcra_mark_unlinked,
	.is_unlinked = gcra_is_unlinked,
};

const struct sluice__limit_ops *sluice__limit_ops_of(uint32_t kind)
{
	switch (kind) {
	case SLUICE_LIMIT_GCRA:
		return &gcra_ops;
	default:
		return NULL;
	}
}

int sluice__limit_validate(const struct sluice_limit *limit)
{
	static const unsigned char zero[sizeof(limit->params_)];

	if (limit->reserved_ != 0)
		return SLUICE_EINVAL;
	switch (limit->kind) {
	case SLUICE_LIMIT_GCRA: {
		const struct sluice_rate *r = &limit->rate;
		struct sluice_rate fresh;
		if (sluice_rate_init(&fresh, r->limit, r->period_ns, r->burst) != SLUICE_OK)
			return SLUICE_EINVAL;
		if (fresh.interval_ns != r->interval_ns || fresh.tolerance_ns != r->tolerance_ns ||
		    fresh.div_magic != r->div_magic || fresh.div_shift != r->div_shift ||
		    fresh.exact != r->exact)
			return SLUICE_EINVAL;
		/* The rest of the parameter block is reserved for other kinds. */
		size_t used = sizeof(struct sluice_rate);
		if (memcmp((const unsigned char *)limit->params_ + used, zero,
			   sizeof(limit->params_) - used) != 0)
			return SLUICE_EINVAL;
		return SLUICE_OK;
	}
	default:
		return SLUICE_EINVAL;
	}
}
