/*
 * stress_pacer.c - threads sharing one struct sluice_pacer (also under
 * TSan) in front of a simulated server: a fixed window of LIMIT requests
 * per WINDOW_MS on the monotonic clock, answering 429 beyond it, with the
 * X triple (limit, remaining, exact reset delay) on every answer. Each
 * thread loops acquire -> (wait) -> send -> update, with a random delay
 * between the send and the answer so that answers cross window boundaries
 * and arrive out of order.
 *
 * Conservation law checked: the server never refuses a request the pacer
 * let through (every window admits at most LIMIT, and the pacer never
 * offered more), while the pacer still lets a fair share through (at least
 * a quarter of the server's capacity over the run). Then: after the run no
 * request is in flight (a last acquire is granted at once after a reset).
 *
 * Duration: SLUICE_STRESS_MS (default 1000). Prints "N passed, N failed".
 */
#include <sluice.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define THREADS 4
#define LIMIT 10
#define WINDOW_MS 20
#define KEY "stress.example"

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
	nanosleep(&ts, NULL);
}

struct server {
	pthread_mutex_t lock;
	uint64_t window, count;
	uint64_t admitted, refused, windows_seen;
};

struct shared {
	struct sluice_pacer *pacer;
	struct server srv;
	uint64_t deadline_ns;
	pthread_mutex_t stats;
	uint64_t waits, errors;
};

/* The server's answer at its own now: status and fields. */
static int serve(struct server *s, struct sluice_client_limits *l)
{
	pthread_mutex_lock(&s->lock);
	uint64_t now = now_ns(), w = now / (WINDOW_MS * 1000000ull);
	if (w != s->window) {
		s->window = w;
		s->count = 0;
		s->windows_seen++;
	}
	bool ok = s->count < LIMIT;
	if (ok) {
		s->count++;
		s->admitted++;
	} else {
		s->refused++;
	}
	memset(l, 0, sizeof(*l));
	l->has_limit = l->has_remaining = l->has_reset = true;
	l->limit = LIMIT;
	l->remaining = LIMIT - s->count;
	l->reset_ns = (w + 1) * WINDOW_MS * 1000000ull - now;
	if (!ok) {
		l->has_retry_after = true;
		l->retry_after_ns = l->reset_ns;
	}
	pthread_mutex_unlock(&s->lock);
	return ok ? 200 : 429;
}

static void *worker(void *arg)
{
	struct shared *sh = arg;
	struct sluice_rng rng = {(uint64_t)(uintptr_t)&rng};
	uint64_t waits = 0, errors = 0;

	while (now_ns() < sh->deadline_ns) {
		uint64_t wait, sent = now_ns();
		if (sluice_pacer_acquire(sh->pacer, KEY, strlen(KEY), 0, sent, &wait) != 0) {
			errors++;
			break;
		}
		if (wait > 0) {
			waits++;
			sleep_ns(wait);
			continue;
		}
		/* the request travels, is served, the answer travels back */
		sleep_ns(sluice_rng_next(&rng) % 200000);
		struct sluice_client_limits l;
		int status = serve(&sh->srv, &l);
		sleep_ns(sluice_rng_next(&rng) % 200000);
		struct sluice_backoff_request req = {.status = status, .idempotent = true, .attempt = 1, .limits = &l};
		struct sluice_backoff_plan plan;
		if (sluice_pacer_update(sh->pacer, KEY, strlen(KEY), &req, sent, now_ns(), &rng, &plan) != 0)
			errors++;
	}
	pthread_mutex_lock(&sh->stats);
	sh->waits += waits;
	sh->errors += errors;
	pthread_mutex_unlock(&sh->stats);
	return NULL;
}

int main(void)
{
	const char *env = getenv("SLUICE_STRESS_MS");
	uint64_t ms = env != NULL ? strtoull(env, NULL, 10) : 1000;
	int passed = 0, failed = 0;
	struct shared sh;
	struct sluice_pacer_opts o;

	memset(&sh, 0, sizeof(sh));
	pthread_mutex_init(&sh.srv.lock, NULL);
	pthread_mutex_init(&sh.stats, NULL);
	sh.srv.window = UINT64_MAX;
	sluice_pacer_opts_default(&o);
	o.jitter_permille = 50;
	o.poll_ns = 100000;
	if (sluice_pacer_create(&o, &sh.pacer) != 0) {
		printf("0 passed, 1 failed\n");
		return 1;
	}
	uint64_t start = now_ns();
	sh.deadline_ns = start + ms * 1000000ull;
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, worker, &sh);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	uint64_t elapsed_ms = (now_ns() - start) / 1000000ull;
	uint64_t capacity = (elapsed_ms / WINDOW_MS + 1) * LIMIT;

#define CHECK(cond, ...)                                                                       \
	do {                                                                                   \
		if (cond) {                                                                    \
			passed++;                                                              \
		} else {                                                                       \
			failed++;                                                              \
			printf("FAIL: " __VA_ARGS__);                                          \
			printf("\n");                                                          \
		}                                                                              \
	} while (0)

	CHECK(sh.errors == 0, "%llu pacer errors", (unsigned long long)sh.errors);
	CHECK(sh.srv.refused == 0, "the server refused %llu of %llu requests the pacer let through",
	      (unsigned long long)sh.srv.refused, (unsigned long long)(sh.srv.admitted + sh.srv.refused));
	CHECK(sh.srv.admitted <= capacity, "admitted %llu > capacity %llu", (unsigned long long)sh.srv.admitted,
	      (unsigned long long)capacity);
	CHECK(sh.srv.admitted * 4 >= capacity, "admitted only %llu of a capacity of %llu",
	      (unsigned long long)sh.srv.admitted, (unsigned long long)capacity);
	/* nothing left in flight: after a full window one request goes at once */
	sleep_ns(2 * WINDOW_MS * 1000000ull);
	uint64_t wait = 1;
	CHECK(sluice_pacer_acquire(sh.pacer, KEY, strlen(KEY), 0, now_ns(), &wait) == 0 && wait == 0,
	      "a request after the run waits %llu ns", (unsigned long long)wait);
	printf("pacer: %llu admitted, %llu refused, %llu waits, capacity %llu over %llu ms\n",
	       (unsigned long long)sh.srv.admitted, (unsigned long long)sh.srv.refused,
	       (unsigned long long)sh.waits, (unsigned long long)capacity, (unsigned long long)elapsed_ms);
	sluice_pacer_destroy(sh.pacer);
	printf("%d passed, %d failed\n", passed, failed);
	return failed == 0 ? 0 : 1;
}
