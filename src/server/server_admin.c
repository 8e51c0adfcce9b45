/*
 * server_admin.c - the bodies of the admin listener's answers
 * (docs/server.md, "Admin listener"): GET /metrics in the Prometheus text
 * exposition format 0.0.4 and GET /stats in JSON. The admin listener is a
 * separate socket (loopback unless --admin names another address); the
 * traffic port never answers these paths itself.
 *
 * The counters are read while the loops run: each is a recent value (the
 * loops' relaxed adds; the engine's wait-free limiter stats), not a
 * consistent cut across counters.
 */
#include "server.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const int server_status_codes[SERVER_NSTATUS] = { 200, 204, 400, 401, 403, 404, 405, 413,
						   414, 429, 431, 500, 501, 503, 505, 0 };

unsigned server_status_index(int status)
{
	for (unsigned i = 0; i + 1 < SERVER_NSTATUS; i++)
		if (server_status_codes[i] == status)
			return i;
	return SERVER_NSTATUS - 1; /* any other: code="other" */
}

struct out {
	char *p;
	size_t cap, len;
	bool full;
};

static void put(struct out *o, const char *fmt, ...)
{
	va_list ap;

	if (o->full)
		return;
	va_start(ap, fmt);
	int n = vsnprintf(o->p + o->len, o->cap - o->len, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= o->cap - o->len)
		o->full = true;
	else
		o->len += (size_t)n;
}

/* A label value: backslash, double quote and newline escaped (0.0.4). */
static void put_label(struct out *o, const char *v)
{
	for (; *v != '\0'; v++) {
		if (*v == '\\' || *v == '"')
			put(o, "\\%c", *v);
		else if (*v == '\n')
			put(o, "\\n");
		else
			put(o, "%c", *v);
	}
}

static const char *reason_name(unsigned reason)
{
	static const char *const names[] = { "none", "rate", "quota", "concurrency", "capacity",
					     "never" };
	return reason < sizeof names / sizeof names[0] ? names[reason] : "unknown";
}

/* One metric family over every limit: HELP, TYPE, then a sample each. */
enum { M_ADMITTED, M_REFUSED, M_DEGRADED, M_LIVE_KEYS, M_BYTES, M_DRY_RUN, M_COUNT };

static void put_limits(struct out *o, struct server_decider *d)
{
	static const struct {
		const char *name, *type, *help;
	} fam[M_COUNT] = {
		{ "sluice_limit_admitted_total", "counter",
		  "Requests a limit admitted (a request another limit refused may count)." },
		{ "sluice_limit_refused_total", "counter",
		  "Requests a limit refused, by the limit's reason." },
		{ "sluice_limit_degraded_total", "counter",
		  "Answers a limit's fail mode gave (no room for a new key)." },
		{ "sluice_limit_live_keys", "gauge", "Keys a limit tracks now." },
		{ "sluice_limit_bytes", "gauge", "Bytes of a limit's tracked keys." },
		{ "sluice_limit_dry_run_refused_total", "counter",
		  "Requests a dry-run limit would have refused and that passed." },
	};
	const struct sluice_policy_spec *spec = server_decider_spec(d);
	struct sluice_engine *eng = server_decider_engine(d);

	for (unsigned m = 0; m < M_COUNT; m++) {
		put(o, "# HELP %s %s\n# TYPE %s %s\n", fam[m].name, fam[m].help, fam[m].name,
		    fam[m].type);
		for (uint32_t i = 0; i < spec->limit_count; i++) {
			const struct sluice_policy_limit *l = &spec->limits[i];
			struct sluice_engine_limit_stats ls = { .size = sizeof ls };
			if (sluice_engine_limit_stats(eng, i, &ls) != SLUICE_OK)
				continue; /* not on this engine: no sample */
			const uint64_t v[M_COUNT] = { ls.admitted, ls.denied, ls.degraded,
						      ls.live_keys, ls.bytes, ls.dry_run_refused };
			put(o, "%s{limit=\"", fam[m].name);
			put_label(o, l->name);
			if (m == M_REFUSED)
				put(o, "\",reason=\"%s", reason_name(l->reason));
			put(o, "\"} %llu\n", (unsigned long long)v[m]);
		}
	}
}

size_t server_admin_metrics(struct server_decider *d, const struct server_totals *t, char *out,
			    size_t cap)
{
	struct out o = { out, cap, 0, cap == 0 };

	put(&o, "# HELP sluice_http_requests_total Requests answered on the traffic port.\n"
		"# TYPE sluice_http_requests_total counter\n"
		"sluice_http_requests_total %llu\n",
	    (unsigned long long)t->requests);
	put(&o, "# HELP sluice_http_responses_total Responses on the traffic port, by status.\n"
		"# TYPE sluice_http_responses_total counter\n");
	for (unsigned i = 0; i + 1 < SERVER_NSTATUS; i++)
		put(&o, "sluice_http_responses_total{code=\"%d\"} %llu\n", server_status_codes[i],
		    (unsigned long long)t->by_status[i]);
	put(&o, "sluice_http_responses_total{code=\"other\"} %llu\n",
	    (unsigned long long)t->by_status[SERVER_NSTATUS - 1]);
	put(&o, "# HELP sluice_http_connections_total Connections accepted on the traffic port.\n"
		"# TYPE sluice_http_connections_total counter\n"
		"sluice_http_connections_total %llu\n",
	    (unsigned long long)t->accepted);
	if (d != NULL)
		put_limits(&o, d);
	return o.full ? 0 : o.len;
}

size_t server_admin_stats(const struct server_totals *t, char *out, size_t cap)
{
	struct out o = { out, cap, 0, cap == 0 };

	put(&o, "{\"requests\":%llu,\"ok\":%llu,\"limited\":%llu,\"errors\":%llu,\"connections\":%llu,"
		"\"dry_run_refused\":%llu}",
	    (unsigned long long)t->requests, (unsigned long long)t->ok,
	    (unsigned long long)t->limited, (unsigned long long)t->errors,
	    (unsigned long long)t->accepted, (unsigned long long)t->dry_run);
	return o.full ? 0 : o.len;
}
