/*
 * curl_paced_client.c - a real HTTP client that stays under a server's
 * limits: libcurl requests, every response's fields parsed by sluice and
 * fed to one struct sluice_pacer shared by all threads.
 *
 *   curl_paced_client URL TOKEN LIMIT THREADS SECONDS
 *   curl_paced_client --self-test
 *
 * URL is served under a limit of LIMIT requests per calendar second for
 * the bearer TOKEN (tests/test_client_curl.sh runs sluice-server so), with
 * X-RateLimit-* fields whose reset is in Unix milliseconds.
 *
 * Phase 1 (unpaced): LIMIT + 2 requests back to back, without asking the
 * pacer, which still learns from every answer: the last ones are refused
 * with 429 and Retry-After; the next request asks the pacer, waits what it
 * says, and must be admitted. The output shows that the wait was the
 * server's Retry-After and no more (plus the jitter, at most 2%).
 *
 * Phase 2 (paced): THREADS threads for SECONDS, each one
 * acquire -> wait -> request -> update. The output counts the answers per
 * server window (the reset instant the server sent), refusals, and how
 * late after each window opened its first request was sent. Checks: no
 * window admitted more than LIMIT, no refusal, and no window's first
 * request later than the jitter plus a scheduling allowance after the
 * window opened (the client never slept longer than needed).
 *
 * --self-test feeds curl_fields_cb() the lines of a 100 Continue, a
 * redirect and a final answer, and checks that only the last set counts.
 *
 * Exit status 0 when every check holds.
 */
#include <sluice.h>

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "curl_fields.h"

#define JITTER_PERMILLE 20
#define LATE_ALLOWANCE_MS 250 /* thread wake-up on a loaded machine */
#define MAX_RECORDS 100000
#define MAX(a, b) ((a) > (b) ? (a) : (b))

struct record {
	int status;
	uint64_t sent_unix_ms;  /* local clock when the request left */
	uint64_t reset_unix_ms; /* the window's end, as the server said */
};

struct run {
	const char *url, *token;
	uint64_t limit;
	uint64_t deadline_mono_ns;
	struct sluice_pacer *pacer;
	char auth[256];
	pthread_mutex_t lock;
	struct record *rec;
	size_t nrec;
	uint64_t waits, wait_ns_total, errors;
};

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {(time_t)(ns / 1000000000ull), (long)(ns % 1000000000ull)};
	while (nanosleep(&ts, &ts) != 0)
		;
}

static size_t discard(char *p, size_t size, size_t n, void *u)
{
	(void)p;
	(void)u;
	return size * n;
}

/* One request: status (0 if none), parsed fields, the send time. */
static int request(CURL *curl, struct curl_fields *h, struct sluice_client_limits *l, uint64_t *sent_unix_ms)
{
	curl_fields_reset(h);
	*sent_unix_ms = sluice_realtime_ns() / 1000000ull;
	CURLcode rc = curl_easy_perform(curl);
	sluice_client_parse(h->f, h->n, sluice_realtime_ns(), l);
	return rc == CURLE_OK ? h->status : 0;
}

/* An easy handle with the bearer header (*hdrs: free it after the handle). */
static CURL *make_curl(struct run *r, struct curl_fields *h, struct curl_slist **hdrs)
{
	CURL *curl = curl_easy_init();
	*hdrs = curl_slist_append(NULL, r->auth);
	curl_easy_setopt(curl, CURLOPT_URL, r->url);
	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, *hdrs);
	curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, curl_fields_cb);
	curl_easy_setopt(curl, CURLOPT_HEADERDATA, h);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT, 10L);
	return curl;
}

/* The window's end as the server wrote it: X-RateLimit-Reset in Unix ms. */
static uint64_t reset_field(const struct curl_fields *h)
{
	for (size_t i = 0; i < h->n; i++) {
		if (h->f[i].name_len != 17 || strncasecmp(h->f[i].name, "X-RateLimit-Reset", 17) != 0)
			continue;
		uint64_t v = 0;
		for (size_t k = 0; k < h->f[i].value_len && h->f[i].value[k] >= '0' && h->f[i].value[k] <= '9'; k++)
			v = v * 10 + (uint64_t)(h->f[i].value[k] - '0');
		return v;
	}
	return 0;
}

static void record(struct run *r, int status, uint64_t sent, const struct curl_fields *h)
{
	pthread_mutex_lock(&r->lock);
	if (r->nrec < MAX_RECORDS)
		r->rec[r->nrec++] = (struct record){status, sent, reset_field(h)};
	pthread_mutex_unlock(&r->lock);
}

/* One request let through at granted_ns (the acquire's now), its answer
 * parsed and reported to the pacer; returns the status (0: no answer) and
 * sets *ok false if the pacer refused the report. */
static int exchange(struct run *r, CURL *curl, struct curl_fields *h, struct sluice_rng *rng,
		    uint64_t granted_ns, struct sluice_client_limits *l, uint64_t *sent, bool *ok)
{
	int status = request(curl, h, l, sent);
	struct sluice_backoff_request req = {.status = status, .idempotent = true, .attempt = 1, .limits = l};
	struct sluice_backoff_plan plan;
	*ok = sluice_pacer_update(r->pacer, r->token, strlen(r->token), &req, granted_ns, sluice_monotonic_ns(),
				  rng, &plan) == 0;
	return status;
}

static void *worker(void *arg)
{
	struct run *r = arg;
	struct curl_fields *h = malloc(sizeof(*h));
	struct curl_slist *hdrs;
	CURL *curl = make_curl(r, h, &hdrs);
	struct sluice_rng rng = {(uint64_t)(uintptr_t)h ^ sluice_monotonic_ns()};
	size_t keylen = strlen(r->token);

	while (sluice_monotonic_ns() < r->deadline_mono_ns) {
		uint64_t wait, granted = sluice_monotonic_ns();
		if (sluice_pacer_acquire(r->pacer, r->token, keylen, 0, granted, &wait) != 0)
			break;
		if (wait > 0) {
			pthread_mutex_lock(&r->lock);
			r->waits++;
			r->wait_ns_total += wait;
			pthread_mutex_unlock(&r->lock);
			sleep_ns(wait);
			continue;
		}
		struct sluice_client_limits l;
		uint64_t sent;
		bool ok;
		int status = exchange(r, curl, h, &rng, granted, &l, &sent, &ok);
		record(r, status, sent, h);
		if (!ok || status == 0) {
			pthread_mutex_lock(&r->lock);
			r->errors++;
			pthread_mutex_unlock(&r->lock);
		}
	}
	curl_easy_cleanup(curl);
	curl_slist_free_all(hdrs);
	free(h);
	return NULL;
}

static int self_test(void)
{
	static const char *const lines[] = {
		"HTTP/1.1 100 Continue\r\n", "\r\n",
		"HTTP/1.1 302 Found\r\n", "Location: /next\r\n", "Retry-After: 99\r\n", "\r\n",
		"HTTP/2 429 \r\n", "retry-after: 3\r\n", "x-ratelimit-remaining:  0 \r\n",
		" folded continuation\r\n", "no colon here\r\n", "\r\n",
	};
	struct curl_fields h;
	struct sluice_client_limits l;
	curl_fields_reset(&h);
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		curl_fields_cb((char *)lines[i], 1, strlen(lines[i]), &h);
	sluice_client_parse(h.f, h.n, 0, &l);
	int ok = h.status == 429 && h.n == 2 && h.dropped == 2 && l.retry_after_ns == 3 * SLUICE_NS_PER_SEC &&
		 l.has_remaining && l.remaining == 0;
	printf("self-test: status %d, %zu fields, %zu dropped, retry-after %llu s: %s\n", h.status, h.n,
	       h.dropped, (unsigned long long)(l.retry_after_ns / SLUICE_NS_PER_SEC), ok ? "ok" : "FAILED");
	return ok ? 0 : 1;
}

/* Phase 1: a burst past the limit, then the pacer's wait. */
static int unpaced(struct run *r)
{
	struct curl_fields *h = malloc(sizeof(*h));
	struct curl_slist *hdrs;
	CURL *curl = make_curl(r, h, &hdrs);
	struct sluice_rng rng = {42};
	size_t keylen = strlen(r->token);
	uint64_t told_ns = 0, refused = 0;
	int failed = 0;

	for (uint64_t i = 0; i < r->limit + 2; i++) {
		struct sluice_client_limits l;
		uint64_t sent;
		bool ok;
		int status = exchange(r, curl, h, &rng, sluice_monotonic_ns(), &l, &sent, &ok);
		if (status == 429) {
			refused++;
			told_ns = MAX(told_ns, l.retry_after_ns);
		}
	}
	uint64_t t0 = sluice_monotonic_ns(), wait = 0, slept = 0, granted;
	for (;;) {
		granted = sluice_monotonic_ns();
		sluice_pacer_acquire(r->pacer, r->token, keylen, 0, granted, &wait);
		if (wait == 0)
			break;
		sleep_ns(wait);
	}
	slept = sluice_monotonic_ns() - t0;
	struct sluice_client_limits l;
	uint64_t sent;
	bool ok;
	int status = exchange(r, curl, h, &rng, granted, &l, &sent, &ok);
	uint64_t most = told_ns + told_ns * JITTER_PERMILLE / 1000 + 50 * 1000000ull;
	printf("unpaced: %llu requests, %llu refused with Retry-After %llu ms; the pacer waited %llu ms "
	       "(at most %llu); the next request: %d\n",
	       (unsigned long long)(r->limit + 2), (unsigned long long)refused,
	       (unsigned long long)(told_ns / 1000000), (unsigned long long)(slept / 1000000),
	       (unsigned long long)(most / 1000000), status);
	if (refused == 0 || told_ns == 0) {
		printf("FAIL: the burst was never refused\n");
		failed++;
	}
	if (slept < told_ns || slept > most) {
		printf("FAIL: waited %llu ms for a Retry-After of %llu ms\n", (unsigned long long)(slept / 1000000),
		       (unsigned long long)(told_ns / 1000000));
		failed++;
	}
	if (status != 200) {
		printf("FAIL: the request after the wait got %d\n", status);
		failed++;
	}
	curl_easy_cleanup(curl);
	curl_slist_free_all(hdrs);
	free(h);
	return failed;
}

static int by_reset(const void *a, const void *b)
{
	const struct record *x = a, *y = b;
	if (x->reset_unix_ms != y->reset_unix_ms)
		return x->reset_unix_ms < y->reset_unix_ms ? -1 : 1;
	return x->sent_unix_ms < y->sent_unix_ms ? -1 : x->sent_unix_ms > y->sent_unix_ms;
}

/* Phase 2's checks over the records. */
static int report(struct run *r, int threads, int seconds)
{
	uint64_t ok = 0, refused = 0, windows = 0, most = 0, late_max = 0, late_sum = 0, late_n = 0;
	int failed = 0;

	qsort(r->rec, r->nrec, sizeof(r->rec[0]), by_reset);
	for (size_t i = 0; i < r->nrec;) {
		size_t j = i;
		uint64_t admitted = 0;
		while (j < r->nrec && r->rec[j].reset_unix_ms == r->rec[i].reset_unix_ms) {
			admitted += r->rec[j].status == 200;
			refused += r->rec[j].status == 429;
			j++;
		}
		ok += admitted;
		windows++;
		most = MAX(most, admitted);
		if (admitted > r->limit) {
			printf("FAIL: the window ending at %llu admitted %llu > %llu\n",
			       (unsigned long long)r->rec[i].reset_unix_ms, (unsigned long long)admitted,
			       (unsigned long long)r->limit);
			failed++;
		}
		/* how late this window's first request left after the previous
		 * window ended (when this one opened) */
		if (i > 0 && r->rec[i - 1].reset_unix_ms + 1000 == r->rec[i].reset_unix_ms &&
		    r->rec[i].sent_unix_ms >= r->rec[i - 1].reset_unix_ms) {
			uint64_t late = r->rec[i].sent_unix_ms - r->rec[i - 1].reset_unix_ms;
			late_max = MAX(late_max, late);
			late_sum += late;
			late_n++;
		}
		i = j;
	}
	uint64_t allowance = 1000 * JITTER_PERMILLE / 1000 + LATE_ALLOWANCE_MS;
	printf("paced: %d threads, %d s: %zu requests, %llu admitted, %llu refused, %llu windows, "
	       "at most %llu admitted per window (limit %llu), %llu waits averaging %llu ms, "
	       "first request of a window %llu ms after it opened on average, %llu ms at most "
	       "(allowed %llu)\n",
	       threads, seconds, r->nrec, (unsigned long long)ok, (unsigned long long)refused,
	       (unsigned long long)windows, (unsigned long long)most, (unsigned long long)r->limit,
	       (unsigned long long)r->waits,
	       (unsigned long long)(r->waits ? r->wait_ns_total / r->waits / 1000000 : 0),
	       (unsigned long long)(late_n ? late_sum / late_n : 0), (unsigned long long)late_max,
	       (unsigned long long)allowance);
	if (refused != 0) {
		printf("FAIL: %llu refusals while paced\n", (unsigned long long)refused);
		failed++;
	}
	if (r->errors != 0) {
		printf("FAIL: %llu transport or pacer errors\n", (unsigned long long)r->errors);
		failed++;
	}
	if (late_n == 0 || late_max > allowance) {
		printf("FAIL: windows opened and were used late (%llu ms)\n", (unsigned long long)late_max);
		failed++;
	}
	if (ok * 2 < r->limit * (uint64_t)(seconds - 1)) {
		printf("FAIL: only %llu admitted in %d s\n", (unsigned long long)ok, seconds);
		failed++;
	}
	return failed;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--self-test") == 0)
		return self_test();
	if (argc != 6) {
		fprintf(stderr, "usage: %s URL TOKEN LIMIT THREADS SECONDS | --self-test\n", argv[0]);
		return 2;
	}
	struct run r;
	memset(&r, 0, sizeof(r));
	r.url = argv[1];
	r.token = argv[2];
	r.limit = strtoull(argv[3], NULL, 10);
	int threads = atoi(argv[4]), seconds = atoi(argv[5]);
	if (r.limit == 0 || threads < 1 || threads > 64 || seconds < 2) {
		fprintf(stderr, "bad arguments\n");
		return 2;
	}
	snprintf(r.auth, sizeof(r.auth), "Authorization: Bearer %s", r.token);
	pthread_mutex_init(&r.lock, NULL);
	r.rec = calloc(MAX_RECORDS, sizeof(*r.rec));
	struct sluice_pacer_opts o;
	sluice_pacer_opts_default(&o);
	o.jitter_permille = JITTER_PERMILLE;         /* on resets */
	o.backoff.jitter_permille = JITTER_PERMILLE; /* on Retry-After */
	o.low_permille = 0;               /* spend the budget, then wait for the window */
	o.poll_ns = 1000000;
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != 0 || r.rec == NULL ||
	    sluice_pacer_create(&o, &r.pacer) != 0) {
		fprintf(stderr, "set-up failed\n");
		return 1;
	}
	int failed = unpaced(&r);

	r.deadline_mono_ns = sluice_monotonic_ns() + (uint64_t)seconds * SLUICE_NS_PER_SEC;
	pthread_t t[64];
	for (int i = 0; i < threads; i++)
		pthread_create(&t[i], NULL, worker, &r);
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
	failed += report(&r, threads, seconds);

	sluice_pacer_destroy(r.pacer);
	free(r.rec);
	curl_global_cleanup();
	printf("%s\n", failed == 0 ? "ok" : "FAILED");
	return failed == 0 ? 0 : 1;
}
