/*
 * maintenance.c - the engine's one maintenance thread: every
 * sweep_interval_ns it sweeps every binding (sluice_engine_sweep(), engine.c)
 * and every snapshot_interval_ns it writes the state file
 * (sluice_engine_snapshot(), engine_snapshot.c), whichever is due first,
 * however many limits, tiers and overrides the policy has. It waits on a
 * condition variable on CLOCK_MONOTONIC (a wall-clock step neither stalls
 * nor hurries it); destroy wakes it and joins it. A failed sweep or
 * snapshot is not fatal: the snapshot's failure is counted in the engine's
 * state stats, and the next round tries again.
 */
#include <sluice/engine.h>
#include <sluice/limiter.h>

#include <errno.h>
#include <pthread.h>
#include <time.h>

#include <urcu.h>

#include "common/util_internal.h"
#include "engine/engine_internal.h"

/* The maintenance clock: Unix time (the engine's clock), lagging so that
 * requests whose clock reading is up to that stale are not older than a
 * sweep. */
static uint64_t realtime_lagged(void)
{
	uint64_t now = sluice_realtime_ns();
	return now > SLUICE_LIMITER_SWEEP_LAG_NS ? now - SLUICE_LIMITER_SWEEP_LAG_NS : 0;
}

/* Entries each binding's sweep visits per round. */
#define MAINTENANCE_BUDGET 4096

static uint64_t monotonic_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * SLUICE_NS_PER_SEC + (uint64_t)ts.tv_nsec;
}

/* Sweeps every m_interval_ns and snapshots every m_snapshot_ns (each 0:
 * never), whichever is due first. A failed snapshot is counted in
 * s_stats (engine_snapshot.c) and the thread goes on. */
static void *maintenance_main(void *arg)
{
	struct sluice_engine *eng = arg;
	bool own_rcu = eng->flags & SLUICE_ENGINE_CALLER_REGISTERS_RCU;
	uint64_t now = monotonic_ns();
	uint64_t next_sweep = eng->m_interval_ns != 0 ? sluice__add_sat(now, eng->m_interval_ns) : UINT64_MAX;
	uint64_t next_snap = eng->m_snapshot_ns != 0 ? sluice__add_sat(now, eng->m_snapshot_ns) : UINT64_MAX;

	/* Our own thread: with CALLER_REGISTERS_RCU nobody else registers it. */
	if (own_rcu)
		rcu_register_thread();
	pthread_mutex_lock(&eng->m_lock);
	while (!eng->m_stop) {
		struct timespec ts;
		uint64_t at = next_sweep < next_snap ? next_sweep : next_snap;
		ts.tv_sec = (time_t)(at / SLUICE_NS_PER_SEC);
		ts.tv_nsec = (long)(at % SLUICE_NS_PER_SEC);
		int w = 0;
		while (!eng->m_stop && w != ETIMEDOUT)
			w = pthread_cond_timedwait(&eng->m_cond, &eng->m_lock, &ts);
		if (eng->m_stop)
			break;
		pthread_mutex_unlock(&eng->m_lock);
		now = monotonic_ns();
		if (now >= next_sweep) {
			(void)sluice_engine_sweep(eng, realtime_lagged(), MAINTENANCE_BUDGET);
			next_sweep = sluice__add_sat(monotonic_ns(), eng->m_interval_ns);
		}
		if (now >= next_snap) {
			(void)sluice_engine_snapshot(eng, NULL, sluice_realtime_ns(), NULL);
			next_snap = sluice__add_sat(monotonic_ns(), eng->m_snapshot_ns);
		}
		pthread_mutex_lock(&eng->m_lock);
	}
	pthread_mutex_unlock(&eng->m_lock);
	if (own_rcu)
		rcu_unregister_thread();
	return NULL;
}

int sluice__engine_maintenance_start(struct sluice_engine *eng, uint64_t interval_ns, uint64_t snapshot_ns)
{
	pthread_condattr_t ca;
	if (pthread_mutex_init(&eng->m_lock, NULL) != 0)
		return SLUICE_ENOMEM;
	if (pthread_condattr_init(&ca) != 0) {
		pthread_mutex_destroy(&eng->m_lock);
		return SLUICE_ENOMEM;
	}
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	int cr = pthread_cond_init(&eng->m_cond, &ca);
	pthread_condattr_destroy(&ca);
	if (cr != 0) {
		pthread_mutex_destroy(&eng->m_lock);
		return SLUICE_ENOMEM;
	}
	eng->m_interval_ns = interval_ns;
	eng->m_snapshot_ns = snapshot_ns;
	eng->m_stop = false;
	if (pthread_create(&eng->m_thread, NULL, maintenance_main, eng) != 0) {
		pthread_cond_destroy(&eng->m_cond);
		pthread_mutex_destroy(&eng->m_lock);
		return SLUICE_ETHREAD;
	}
	eng->m_running = true;
	return SLUICE_OK;
}

void sluice__engine_maintenance_stop(struct sluice_engine *eng)
{
	if (!eng->m_running)
		return;
	pthread_mutex_lock(&eng->m_lock);
	eng->m_stop = true;
	pthread_cond_signal(&eng->m_cond);
	pthread_mutex_unlock(&eng->m_lock);
	pthread_join(eng->m_thread, NULL);
	pthread_cond_destroy(&eng->m_cond);
	pthread_mutex_destroy(&eng->m_lock);
	eng->m_running = false;
}
