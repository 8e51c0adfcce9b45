/*
 * thread.c - the keyed limiter's per-thread state: a statistics stripe and
 * the urcu-memb registration (docs/limiter.md,
 * "Statistics", "RCU flavor and threads").
 *
 * Statistics are striped so that counting an admission is a plain store on
 * a cache line no other thread writes. A thread claims one of SLOTS stripes
 * on its first call (a CAS of slot_owned[i] from 0 to 1) and keeps it for
 * its lifetime; its destructor (a pthread key) gives the stripe back with a
 * release store, and the next owner's acquire CAS makes the old owner's
 * counter stores happen-before its own, so each stripe has one writer at a
 * time and stat_add() (store_internal.h) may add with a relaxed load and
 * store. Threads beyond SLOTS share the last stripe with a relaxed
 * fetch_add. Readers (sluice_limiter_stats(), limiter.c) sum relaxed loads:
 * a recent total, exact once the writers are quiescent.
 *
 * The same first call registers the thread with urcu-memb (unless the
 * caller registers its own threads), and the destructor unregisters it.
 * thread_enter() in store_internal.h is the inline check every entry point
 * makes; this file is its slow path.
 */
#include <pthread.h>
#include <stdatomic.h>

#include "limiter/store_internal.h"

static _Atomic unsigned char slot_owned[SLOTS];

_Thread_local struct thread_state sluice__limiter_tls = { -1, false, false };

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t thread_key;
static int key_error;

static void thread_exit(void *unused)
{
	(void)unused;
	if (sluice__limiter_tls.rcu) {
		rcu_unregister_thread();
		sluice__limiter_tls.rcu = false;
	}
	if (sluice__limiter_tls.slot >= 0 && sluice__limiter_tls.slot < SLOTS)
		/* release: our last relaxed stripe stores happen-before the next
		 * owner's acquire CAS, so its read-modify-writes continue ours. */
		atomic_store_explicit(&slot_owned[sluice__limiter_tls.slot], 0, memory_order_release); /* release: why above */
	sluice__limiter_tls.slot = -1;
	sluice__limiter_tls.keyed = false;
}

static void key_create(void)
{
	key_error = pthread_key_create(&thread_key, thread_exit);
}

int sluice__limiter_thread_enter_slow(uint32_t flags)
{
	if (pthread_once(&key_once, key_create) != 0 || key_error != 0)
		return SLUICE_ETHREAD;
	if (!sluice__limiter_tls.keyed) {
		if (pthread_setspecific(thread_key, &sluice__limiter_tls) != 0)
			return SLUICE_ETHREAD;
		sluice__limiter_tls.keyed = true;
	}
	if (sluice__limiter_tls.slot < 0) {
		sluice__limiter_tls.slot = SLOTS;
		for (int i = 0; i < SLOTS; i++) {
			unsigned char expected = 0;
			/* The load is a relaxed pre-check (skip owned stripes
			 * without a locked RMW); the CAS decides. CAS acquire on
			 * success: pairs with the release store in thread_exit()
			 * of the stripe's previous owner. relaxed on failure:
			 * nothing is read. */
			if (atomic_load_explicit(&slot_owned[i], memory_order_relaxed) == 0 && /* relaxed pre-check: why above */
			    atomic_compare_exchange_strong_explicit(&slot_owned[i], &expected, 1, /* acquire/relaxed: why above */
								    memory_order_acquire,
								    memory_order_relaxed)) {
				sluice__limiter_tls.slot = i;
				break;
			}
		}
	}
	if (!sluice__limiter_tls.rcu && !(flags & SLUICE_LIMITER_CALLER_REGISTERS_RCU)) {
		rcu_register_thread();
		sluice__limiter_tls.rcu = true;
	}
	return SLUICE_OK;
}

int sluice__limiter_thread_enter(struct sluice_limiter *lim)
{
	return thread_enter(lim);
}

int sluice__rcu_thread_enter(bool caller_registers)
{
	if (SLUICE_LIKELY(sluice__limiter_tls.slot >= 0 && (sluice__limiter_tls.rcu || caller_registers)))
		return SLUICE_OK;
	return sluice__limiter_thread_enter_slow(caller_registers ? SLUICE_LIMITER_CALLER_REGISTERS_RCU : 0);
}
