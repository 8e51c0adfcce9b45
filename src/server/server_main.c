/*
 * server_main.c - sluice-server: an HTTP/1.1 server that answers every
 * request 200 or 429 according to a sluice policy (docs/server.md).
 *
 *   sluice-server --listen 127.0.0.1:8080 --policy docs/policies/seed002.policy
 *
 * The main thread loads the policy, builds the decider, starts the event
 * loops and then only waits for SIGINT/SIGTERM (blocked in every thread,
 * taken with sigwait), asks the loops to drain, joins them and prints the
 * totals on stderr.
 */
#include "server.h"

#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fputs("usage: sluice-server --listen HOST:PORT (--policy FILE | --no-limit) [options]\n"
	      "  --listen HOST:PORT        numeric IPv4 or [IPv6] address; port 0 picks a free one\n"
	      "  --policy FILE             policy to enforce (docs/policy.md)\n"
	      "  --no-limit                answer 200 to everything, without sluice (baseline)\n"
	      "  --admin [HOST:]PORT       admin listener for GET /metrics and GET /stats\n"
	      "                            (default: none; HOST defaults to 127.0.0.1; port 0\n"
	      "                            picks a free one, printed at start)\n"
	      "  --threads N               event loops (default: the number of CPUs)\n"
	      "  --max-body BYTES          largest request body accepted (default 65536; 413 beyond)\n"
	      "  --max-conns N             open connections per thread (default 10000)\n"
	      "  --idle-timeout SECONDS    close connections idle that long (default 60)\n"
	      "  --max-keys N              keys tracked per keyed limiter (default 100000)\n"
	      "  --trust-forwarded-for     a scope 'ip' without a declared source reads\n"
	      "                            X-Forwarded-For from trusted proxies (docs/server.md)\n"
	      "  --trusted-proxies LIST    CIDRs (comma-separated) trusted besides the policy's\n"
	      "                            trusted-proxies, e.g. 10.0.0.0/8,::1\n"
	      "  --frozen-clock            time stands still at start (deterministic tests)\n"
	      "  --work-ms MS              hold every 2xx answer MS ms, as if working (its\n"
	      "                            concurrency slots stay taken meanwhile); tests, demos\n"
	      "  --state-file PATH         keep every limit's per-key state in PATH: restored at\n"
	      "                            start (a bad file: refuse to start), written every\n"
	      "                            --state-interval and at SIGTERM/SIGINT\n"
	      "  --state-interval DURATION periodic snapshots, e.g. 500ms, 10s, 5m (default 10s;\n"
	      "                            0: only at stop)\n"
	      "  --state-fresh-on-error    a state file that cannot be loaded: start empty\n",
	      f);
}

static bool parse_u64(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v < lo || v > hi)
		return false;
	*out = v;
	return true;
}

/* "500ms", "10s", "5m", "1h", "0" -> nanoseconds. */
static bool parse_duration(const char *s, uint64_t *out)
{
	static const struct {
		const char *unit;
		uint64_t ns;
	} units[] = { { "ms", 1000000 }, { "s", SLUICE_NS_PER_SEC }, { "m", 60 * SLUICE_NS_PER_SEC },
		      { "h", 3600 * SLUICE_NS_PER_SEC } };
	char *end;
	unsigned long long v;

	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno != 0)
		return false;
	if (*end == '\0' && v == 0) {
		*out = 0;
		return true;
	}
	for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
		if (strcmp(end, units[i].unit) == 0 && v <= UINT64_MAX / units[i].ns) {
			*out = v * units[i].ns;
			return true;
		}
	return false;
}

/* "10.0.0.0/8,::1": at most SLUICE_POLICY_MAX_PROXIES blocks. */
static bool parse_proxies(const char *list, struct sluice_policy_cidr *out, size_t *n)
{
	*n = 0;
	for (const char *p = list;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (*n == SLUICE_POLICY_MAX_PROXIES || sluice_identity_cidr_parse(p, len, &out[*n], NULL) != SLUICE_OK)
			return false;
		(*n)++;
		if (comma == NULL)
			return true;
		p = comma + 1;
	}
}

/* "127.0.0.1:8080", "[::1]:8080" -> host and port (host copied into buf,
 * 128 bytes, kept by the caller: argv stays as given, for ps). */
static bool parse_listen(const char *text, char buf[128], const char **host, uint16_t *port)
{
	char *arg = buf, *colon;
	uint64_t p;

	if (strlen(text) >= 128)
		return false;
	strcpy(buf, text);
	colon = strrchr(arg, ':');
	if (colon == NULL || !parse_u64(colon + 1, 0, 65535, &p))
		return false;
	*colon = '\0';
	if (arg[0] == '[') {
		size_t n = strlen(arg);
		if (n < 3 || arg[n - 1] != ']')
			return false;
		arg[n - 1] = '\0';
		arg++;
	}
	*host = arg;
	*port = (uint16_t)p;
	return **host != '\0';
}

/* One line on stderr: what the restore at start did. */
static void report_restore(const char *path, const struct sluice_snapshot_info *info)
{
	if (info->message[0] != '\0')
		fprintf(stderr, "sluice-server: state file %s: %s; started empty (--state-fresh-on-error)\n",
			path, info->message);
	else if (info->bytes == 0)
		fprintf(stderr, "sluice-server: state file %s: none yet; started empty\n", path);
	else
		fprintf(stderr,
			"sluice-server: state restored from %s: %llu keys loaded, %llu idle skipped, "
			"%u limits kept, %u dropped (changed or removed)\n",
			path, (unsigned long long)info->loaded, (unsigned long long)info->skipped_idle,
			info->limits_kept, info->limits_dropped);
}

int main(int argc, char **argv)
{
	struct server_config cfg = {
		.max_body = SERVER_DEFAULT_MAX_BODY,
		.max_conns = 10000,
		.idle_timeout_ns = 60 * SLUICE_NS_PER_SEC,
		.drain_timeout_ns = 5 * SLUICE_NS_PER_SEC,
	};
	struct sluice_snapshot_info restore_info = { .size = sizeof restore_info };
	struct server_decider_options dopts = {
		.max_keys = 100000,
		.state_interval_ns = 10 * SLUICE_NS_PER_SEC,
		.restore_info = &restore_info,
	};
	static struct sluice_policy_cidr proxies[SLUICE_POLICY_MAX_PROXIES];
	static char listen_buf[128], admin_buf[128];
	const char *policy_path = NULL, *why = NULL;
	bool have_listen = false;
	uint64_t v;

	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	cfg.threads = ncpu > 0 ? (unsigned)ncpu : 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *next = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--listen") == 0 && next) {
			have_listen = parse_listen(argv[++i], listen_buf, &cfg.host, &cfg.port);
			if (!have_listen) {
				fprintf(stderr, "sluice-server: --listen: expected HOST:PORT, got '%s'\n", next);
				return 2;
			}
		} else if (strcmp(a, "--admin") == 0 && next) {
			i++;
			if (parse_u64(next, 0, 65535, &v)) {
				cfg.admin_host = "127.0.0.1"; /* a port alone: loopback */
				cfg.admin_port = (uint16_t)v;
			} else if (!parse_listen(next, admin_buf, &cfg.admin_host, &cfg.admin_port)) {
				fprintf(stderr, "sluice-server: --admin: expected [HOST:]PORT, got '%s'\n", next);
				return 2;
			}
		} else if (strcmp(a, "--policy") == 0 && next) {
			policy_path = argv[++i];
		} else if (strcmp(a, "--no-limit") == 0) {
			cfg.no_limit = true;
		} else if (strcmp(a, "--threads") == 0 && parse_u64(next, 1, 1024, &v)) {
			cfg.threads = (unsigned)v;
			i++;
		} else if (strcmp(a, "--max-body") == 0 && parse_u64(next, 0, UINT64_MAX, &v)) {
			cfg.max_body = v;
			i++;
		} else if (strcmp(a, "--max-conns") == 0 && parse_u64(next, 1, 1000000, &v)) {
			cfg.max_conns = (unsigned)v;
			i++;
		} else if (strcmp(a, "--idle-timeout") == 0 && parse_u64(next, 1, 86400, &v)) {
			cfg.idle_timeout_ns = v * SLUICE_NS_PER_SEC;
			i++;
		} else if (strcmp(a, "--max-keys") == 0 && parse_u64(next, 0, UINT64_MAX, &v)) {
			dopts.max_keys = v;
			i++;
		} else if (strcmp(a, "--trust-forwarded-for") == 0) {
			dopts.trust_forwarded_for = true;
		} else if (strcmp(a, "--trusted-proxies") == 0 && next != NULL &&
			   parse_proxies(next, proxies, &dopts.proxy_count)) {
			dopts.proxies = proxies;
			i++;
		} else if (strcmp(a, "--work-ms") == 0 && parse_u64(next, 0, 3600000, &v)) {
			cfg.work_ns = v * 1000000;
			i++;
		} else if (strcmp(a, "--frozen-clock") == 0) {
			dopts.frozen_clock = true;
		} else if (strcmp(a, "--state-file") == 0 && next) {
			dopts.state_file = argv[++i];
		} else if (strcmp(a, "--state-interval") == 0 && parse_duration(next, &v)) {
			dopts.state_interval_ns = v;
			i++;
		} else if (strcmp(a, "--state-fresh-on-error") == 0) {
			dopts.state_fresh_on_error = true;
		} else {
			fprintf(stderr, "sluice-server: bad argument '%s'\n", a);
			usage(stderr);
			return 2;
		}
	}
	if (!have_listen || (policy_path == NULL && !cfg.no_limit)) {
		usage(stderr);
		return 2;
	}
	if (dopts.state_file != NULL && (dopts.frozen_clock || cfg.no_limit)) {
		/* A frozen clock's requests are older than the real-time
		 * snapshots; --no-limit has no state. */
		fprintf(stderr, "sluice-server: --state-file does not go with --frozen-clock or --no-limit\n");
		return 2;
	}

	/* Block the stop signals before any thread exists (the limiters'
	 * maintenance threads and the loops inherit the mask); main takes them
	 * with sigwait. */
	sigset_t stop;
	sigemptyset(&stop);
	sigaddset(&stop, SIGINT);
	sigaddset(&stop, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &stop, NULL);
	signal(SIGPIPE, SIG_IGN);

	struct sluice_policy *policy = NULL;
	struct server_decider *decider = NULL;
	if (policy_path != NULL) {
		struct sluice_policy_error err;
		/* The file's directory is where its map files are read from. */
		int rc = sluice_policy_load_file(policy_path, NULL, &policy, &err);
		if (rc == SLUICE_EIO) {
			fprintf(stderr, "sluice-server: cannot read %s: %s\n", policy_path, err.message);
			return 1;
		}
		if (rc != SLUICE_OK) {
			fprintf(stderr, "sluice-server: %s:%d:%d: %s (%s)\n", policy_path, err.line,
				err.column, err.message, sluice_strerror(rc));
			return 1;
		}
		if (!cfg.no_limit) {
			rc = server_decider_create(&decider, policy, &dopts, &why);
			if (rc != SLUICE_OK) {
				if (dopts.state_file != NULL && restore_info.message[0] != '\0')
					fprintf(stderr, "sluice-server: state file %s: %s (%s); not started "
						"(--state-fresh-on-error starts empty)\n",
						dopts.state_file, restore_info.message, sluice_strerror(rc));
				else
					fprintf(stderr, "sluice-server: %s (%s)\n", why, sluice_strerror(rc));
				sluice_policy_destroy(policy);
				return 1;
			}
			policy = NULL; /* the decider owns it */
			if (dopts.state_file != NULL)
				report_restore(dopts.state_file, &restore_info);
		}
	}

	struct server *srv;
	uint16_t port, admin_port;
	if (server_start(&srv, &cfg, decider, &port, &admin_port, &why) != 0) {
		fprintf(stderr, "sluice-server: %s: %s\n", why, strerror(errno));
		server_decider_destroy(decider);
		sluice_policy_destroy(policy);
		return 1;
	}
	printf("sluice-server: listening on %s%s%s:%u, %u thread%s, %s\n",
	       strchr(cfg.host, ':') ? "[" : "", cfg.host, strchr(cfg.host, ':') ? "]" : "",
	       (unsigned)port, cfg.threads, cfg.threads == 1 ? "" : "s",
	       decider ? server_decider_policy_name(decider) : "no limits");
	if (cfg.admin_host != NULL)
		printf("sluice-server: admin on %s%s%s:%u (GET /metrics, GET /stats)\n",
		       strchr(cfg.admin_host, ':') ? "[" : "", cfg.admin_host,
		       strchr(cfg.admin_host, ':') ? "]" : "", (unsigned)admin_port);
	fflush(stdout);

	int sig = 0;
	while (sigwait(&stop, &sig) != 0) {
	}
	server_stop(srv);
	struct server_totals total;
	server_join(srv, &total);
	fprintf(stderr,
		"sluice-server: stopped (signal %d): requests=%llu ok=%llu limited=%llu errors=%llu "
		"connections=%llu\n",
		sig, (unsigned long long)total.requests, (unsigned long long)total.ok,
		(unsigned long long)total.limited, (unsigned long long)total.errors,
		(unsigned long long)total.accepted);
	int status = 0;
	if (decider != NULL && dopts.state_file != NULL) {
		/* After the loops: nothing is admitted after this snapshot. */
		struct sluice_snapshot_info info = { .size = sizeof info };
		int rc = server_decider_save(decider, &info);
		if (rc == SLUICE_OK) {
			fprintf(stderr, "sluice-server: state saved to %s: %llu keys, %llu bytes\n",
				dopts.state_file, (unsigned long long)info.entries,
				(unsigned long long)info.bytes);
		} else {
			fprintf(stderr, "sluice-server: state not saved to %s: %s (%s)\n", dopts.state_file,
				info.message, sluice_strerror(rc));
			status = 1;
		}
	}
	server_decider_destroy(decider);
	sluice_policy_destroy(policy);
	return status;
}
