/*
 * sluice/policy.h - rate-limit policies: the model, the config format and its
 * parser, the route matcher, tiers and overrides.
 *
 * A policy says, for one API, which limits a request must pass:
 *
 *   - scopes: the kinds of identity a request carries (ip, api_key, token,
 *     workspace, organization: names the policy defines);
 *   - endpoint classes: routes (method + path pattern) grouped under a name;
 *     a request's route maps to exactly one class, "default" (class 0) when no
 *     route rule names it;
 *   - limits: each one a kind of cell (GCRA token bucket, sliding window,
 *     calendar window aligned to UTC, concurrency slots) with its numbers, the
 *     scopes its state is keyed by (optionally combined with the endpoint
 *     class), the classes it applies to, an optional soft-warning threshold;
 *   - tiers: plan multipliers applied to the limits marked "tiered";
 *   - overrides: per-key replacement counts with an expiry;
 *   - the response style: header family, reset style, body shape, fail mode.
 *
 * A policy is written in a small line-oriented text format (grammar in
 * docs/policy.md; examples in docs/policies/) and loaded with
 * sluice_policy_parse(), which validates everything once.
 *
 * Memory ordering: a loaded policy is immutable. Every function below that
 * takes a const policy only reads it, may be called concurrently from any
 * number of threads (no RCU registration), and orders no memory: concurrent
 * readers need no synchronisation beyond the one by which they obtained the
 * pointer (a thread start, a mutex, a release store the reader pairs with
 * an acquire load; the engine's reload is such a publication). The caller
 * guarantees no reader remains when it calls sluice_policy_destroy().
 *
 * Evaluating a policy against per-key state (all-or-nothing across limits,
 * hot reload, soft warnings at runtime, usage) is the job of the policy
 * engine built on the keyed limiter (sluice/engine.h); this header is its
 * input.
 */
#ifndef SLUICE_POLICY_H
#define SLUICE_POLICY_H

#include "common.h"
#include "http.h"

#ifdef __cplusplus
extern "C" {
#endif

/*
 * Ceilings. Input beyond any of them is refused with SLUICE_ETOOBIG (and the
 * line and column of the offending item), so a policy's memory is bounded.
 */
#define SLUICE_POLICY_MAX_INPUT (1u << 20)   /* bytes of policy text */
#define SLUICE_POLICY_MAX_NAME 31            /* bytes of a scope/limit/class/tier name */
#define SLUICE_POLICY_MAX_TITLE 63           /* bytes of the policy's quoted name */
#define SLUICE_POLICY_MAX_SCOPES 8
#define SLUICE_POLICY_MAX_LIMITS 32
#define SLUICE_POLICY_MAX_CLASSES 64         /* including "default" */
#define SLUICE_POLICY_MAX_ROUTES 256
#define SLUICE_POLICY_MAX_METHODS 16         /* distinct methods across routes */
#define SLUICE_POLICY_MAX_METHOD_LEN 16
#define SLUICE_POLICY_MAX_PATTERN 256        /* bytes of one path pattern */
#define SLUICE_POLICY_MAX_SEGMENTS 16        /* segments of one path pattern */
#define SLUICE_POLICY_MAX_TIERS 16
#define SLUICE_POLICY_MAX_OVERRIDES 256
#define SLUICE_POLICY_MAX_KEY 128            /* bytes of an override's key */
#define SLUICE_POLICY_MAX_COUNT (UINT64_C(1) << 40) /* units of one limit */
#define SLUICE_POLICY_MAX_PERIOD_NS (UINT64_C(1) << 62)
#define SLUICE_POLICY_MAX_MULTIPLIER 1000000u /* x1000.000, in thousandths */
#define SLUICE_POLICY_MAX_PATH 4096          /* bytes of a request path (before '?') that
					      * sluice_policy_match() normalizes */

/* The class every unmatched route maps to; always present, named "default". */
#define SLUICE_POLICY_DEFAULT_CLASS 0u
/* A route's method_id that matches any method (pattern method "*"). */
#define SLUICE_POLICY_ANY_METHOD UINT32_MAX
/* "No tier": the base numbers of every limit. */
#define SLUICE_POLICY_NO_TIER (-1)

/*
 * What a limit of a policy is, in the policy's words. Not the keyed
 * limiter's enum sluice_limit_kind, which names a cell: the engine maps
 * SLIDING to the exact log (SLUICE_LIMIT_SLIDING_LOG) when the count is at
 * most SLUICE_WINDOW_LOG_MAX_LIMIT and to the sliding-window counter above,
 * and a tier or an override can move a limit across that line, so the cell
 * of a policy limit is a per-binding choice, not a property of the policy.
 */
enum sluice_policy_kind {
	SLUICE_POLICY_KIND_GCRA = 1,        /* token bucket "rate N/P [burst B]" */
	SLUICE_POLICY_KIND_SLIDING = 2,     /* sliding window "sliding N/P" */
	SLUICE_POLICY_KIND_CALENDAR = 3,    /* fixed window on UTC boundaries "quota N/P@utc" */
	SLUICE_POLICY_KIND_CONCURRENCY = 4, /* slots "concurrency N" */
};

/*
 * One limit. `count` units per `period_ns` (GCRA, sliding, calendar) or
 * `count` requests in flight (concurrency, period_ns == 0).
 *
 *   reason          enum sluice_reason derived from the kind: RATE for GCRA
 *                   and sliding, QUOTA for calendar, CONCURRENCY for slots.
 *   burst           GCRA bucket capacity (== count unless "burst B");
 *                   == count for the other kinds.
 *   scope_mask      bit i set: scope i is part of the state's key.
 *   per_class       the endpoint class id is part of the key too ("+class").
 *   all_classes     applies to every class (no "on" list); else class_mask
 *                   (bit c: class c) lists them.
 *   tiered          tier multipliers apply to count and burst.
 *   warn_percent    0: none; else the soft-warning threshold (1..100):
 *                   usage above warn_percent % of the count in force (after
 *                   tier or override) is flagged.
 *   retry_after_ns  concurrency only: the Retry-After hint of a refusal.
 *   lease_ns        concurrency only: slot time-to-live, 0 = none.
 */
struct sluice_policy_limit {
	const char *name;
	uint8_t kind;   /* enum sluice_policy_kind */
	uint8_t reason; /* enum sluice_reason */
	uint8_t warn_percent;
	bool per_class;
	bool all_classes;
	bool tiered;
	uint32_t scope_mask;
	uint64_t class_mask;
	uint64_t count;
	uint64_t period_ns;
	uint64_t burst;
	uint64_t retry_after_ns;
	uint64_t lease_ns;
	uint32_t line; /* where it was declared (for messages) */
	/* Appended (docs/build.md, "ABI"):
	 *   dry_run   "dry-run" (or the policy's "dry-run all"): evaluated and
	 *             counted, a would-be refusal does not refuse the request
	 *             (docs/policy.md, "Dry run");
	 *   resource  "resource \"<label>\"": the custom header family's
	 *             resource field for this limit; NULL: its name;
	 *   unless_mask  "unless <scope>[+<scope>]": bit i set: the limit does
	 *             not apply to a request that carries scope i's own
	 *             identity (not a fallback's stand-in), e.g. a per-IP
	 *             limit for anonymous callers only (docs/policy.md,
	 *             "Limits for some callers only"). */
	bool dry_run;
	const char *resource;
	uint32_t unless_mask;
};

/* One route rule: method (or "*") + path pattern -> class. */
struct sluice_policy_route {
	const char *method;  /* as written, upper case, or "*" */
	const char *pattern; /* as written: "/v1/campaigns/:id", or "/auth/" then "*" */
	uint32_t class_id;
	uint32_t line;
};

struct sluice_policy_tier {
	const char *name;
	uint32_t multiplier_milli; /* x2 -> 2000, x1.5 -> 1500 */
};

/*
 * A per-key override: while now < expires_at_ns, the state of limit `limit`
 * for requests whose identity for scope `scope` equals key[0..key_len)
 * uses `count`/`burst` instead of the limit's own (and of any tier's).
 */
struct sluice_policy_override {
	uint32_t limit;
	uint32_t scope;
	const uint8_t *key;
	uint32_t key_len;
	uint64_t count;
	uint64_t burst;
	uint64_t expires_at_ns; /* Unix time */
	uint32_t line;
};

/*
 * The read-only description of a loaded policy. Arrays are indexed by the
 * ids used everywhere else (scope i, limit i, class i; class 0 is
 * "default"). Valid until sluice_policy_destroy().
 *
 *   families   the response's header fields as the `families` argument of
 *              sluice_http_render_headers(): at most one family bit of enum
 *              sluice_http_families ("headers draft-6" is
 *              SLUICE_HTTP_DRAFT06, "x-ratelimit reset=unix-ms" is
 *              SLUICE_HTTP_X_UNIX_MS, "headers custom" is
 *              SLUICE_HTTP_CUSTOM with the names in `custom`, "none" is no
 *              bit), plus SLUICE_HTTP_RETRY_AFTER when refusals carry
 *              Retry-After.
 *   body       enum sluice_http_body_style of a refusal whose reason has
 *              no answer (answers[reason].status == 0).
 *   fail       enum sluice_fail_mode: what the engine answers when it
 *              cannot evaluate (table full, backend down).
 */
#define SLUICE_POLICY_MAX_CONTENT_TYPE 127 /* bytes of an answer's content type */
#define SLUICE_POLICY_MAX_HEADER_NAME 63   /* bytes of a header name the policy chooses */

enum sluice_policy_answer_reason {
	SLUICE_POLICY_ANSWER_RATE = 0,        /* SLUICE_REASON_RATE and _NEVER */
	SLUICE_POLICY_ANSWER_QUOTA = 1,       /* SLUICE_REASON_QUOTA */
	SLUICE_POLICY_ANSWER_CONCURRENCY = 2, /* SLUICE_REASON_CONCURRENCY */
	SLUICE_POLICY_ANSWER_CAPACITY = 3,    /* SLUICE_REASON_CAPACITY (fail closed) */
	SLUICE_POLICY_ANSWER_IDENTITY = 4,    /* SLUICE_REASON_IDENTITY (a required identity missing) */
	SLUICE_POLICY_ANSWER_COUNT = 5
};

/*
 * The answer to a refusal of one reason ("answer <reason> status <code>
 * type \"<content type>\" body \"<template>\"", docs/policy.md). status 0:
 * none declared; the refusal takes 429 and the policy's body style. body is
 * a response template (sluice/template.h), already compiled once by the
 * load, JSON-escaped when the content type names JSON (json_escape).
 */
struct sluice_policy_answer {
	uint32_t status;          /* 100..599, or 0: not declared */
	bool json_escape;         /* compile body with SLUICE_TEMPLATE_JSON */
	const char *content_type; /* NUL-terminated; "" when the body is empty */
	const char *body;         /* template text, body_len bytes, NUL-terminated */
	uint32_t body_len;
	uint32_t line;
};

/*
 * Where a scope's identity comes from, and what a request without one gets
 * ("scope NAME [from SOURCE] [required | optional | fallback SCOPE]",
 * docs/policy.md "Identities"). The rule lives in the engine's planner, so
 * every embedder gets it; the source is read by sluice_identity_extract()
 * (sluice/identity.h), which the server and any embedder share.
 */
enum sluice_policy_identity_rule {
	SLUICE_POLICY_IDENTITY_REQUIRED = 0, /* no identity: refused, SLUICE_REASON_IDENTITY
					      * (the default) */
	SLUICE_POLICY_IDENTITY_FALLBACK = 1, /* no identity: keyed by `fallback`'s instead,
					      * in a key space of its own */
	SLUICE_POLICY_IDENTITY_OPTIONAL = 2, /* no identity: the scope's limits do not apply */
};

enum sluice_policy_source {
	SLUICE_POLICY_SOURCE_AUTHORIZATION = 1, /* "authorization SCHEME": the credentials */
	SLUICE_POLICY_SOURCE_HEADER = 2,        /* "header NAME": the field's value */
	SLUICE_POLICY_SOURCE_COOKIE = 3,        /* "cookie NAME" */
	SLUICE_POLICY_SOURCE_QUERY = 4,         /* "query NAME": percent-decoded */
	SLUICE_POLICY_SOURCE_PEER = 5,          /* "peer": the connection's address */
	SLUICE_POLICY_SOURCE_FORWARDED_FOR = 6, /* "forwarded-for": X-Forwarded-For through
						 * trusted proxies, else the peer */
	SLUICE_POLICY_SOURCE_MAP = 7,           /* "map FILE key SCOPE" */
};

#define SLUICE_POLICY_MAX_SOURCE_NAME 63 /* bytes of a header, cookie, parameter or scheme name */
#define SLUICE_POLICY_MAX_PROXIES 32     /* "trusted-proxies" entries */
#define SLUICE_POLICY_MAX_MAPS 8         /* "from map" declarations (scopes and the tier) */
#define SLUICE_POLICY_MAX_MAP_FILE (64u << 20) /* bytes of one map file */
#define SLUICE_POLICY_MAX_MAP_ENTRIES (1u << 22)
#define SLUICE_POLICY_MAX_MAP_PATH 255   /* bytes of a map file's path as written */

/* A static map loaded with the policy ("from map \"FILE\" key SCOPE"):
 * one "key value" pair a line; keys and values at most
 * SLUICE_IDENTITY_MAX (256) bytes; looked up with sluice_policy_map_find(). */
struct sluice_policy_map {
	const char *path;     /* as written in the policy */
	uint32_t entry_count;
	uint32_t key_scope;   /* whose identity is the key */
	uint32_t line;
};

/*
 * One scope's identity declaration. A scope that declares no source takes
 * its default, resolved at load (source_declared false): "token" from
 * authorization Bearer, "ip" from the peer, any other "foo_bar" from
 * header X-Foo-Bar.
 *   name      the scheme (authorization), field (header), cookie or query
 *             parameter name; "" for peer, forwarded-for and map.
 *   fallback  FALLBACK: the scope whose identity stands in (never a cycle).
 *   map, map_key  MAP: the map (index in spec->maps) and the scope whose
 *             identity is looked up in it (declared earlier).
 */
struct sluice_policy_scope_rule {
	uint8_t rule;   /* enum sluice_policy_identity_rule */
	uint8_t source; /* enum sluice_policy_source */
	bool rule_declared;
	bool source_declared;
	uint32_t fallback;
	uint32_t map;
	uint32_t map_key;
	const char *name;
	uint32_t name_len;
	uint32_t line;
};

/* One "trusted-proxies" entry: an address block (IPv4 as 4 bytes, IPv6 as
 * 16; prefix in bits). */
struct sluice_policy_cidr {
	uint8_t family; /* 4 or 6 */
	uint8_t prefix;
	uint8_t addr[16];
};

/* Which limit the header families describe ("describe=" of "headers"):
 * the governing limit (default), the rate-like (rate, sliding) limit with
 * the least remaining, or a limit index. */
#define SLUICE_POLICY_DESCRIBE_GOVERNING UINT32_MAX
#define SLUICE_POLICY_DESCRIBE_TIGHTEST (UINT32_MAX - 1)

struct sluice_policy_spec {
	const char *name;
	uint32_t families;   /* OR of enum sluice_http_families */
	uint8_t body;        /* enum sluice_http_body_style */
	uint8_t fail;        /* enum sluice_fail_mode */
	bool route_fold_case; /* "routes case-insensitive": paths match ASCII
			       * case-insensitively (SLUICE_PATH_FOLD_CASE) */
	uint32_t scope_count;
	uint32_t limit_count;
	uint32_t class_count;
	uint32_t route_count;
	uint32_t tier_count;
	uint32_t override_count;
	const char *const *scopes;
	const struct sluice_policy_limit *limits;
	const char *const *classes;
	const struct sluice_policy_route *routes;
	const struct sluice_policy_tier *tiers;
	const struct sluice_policy_override *overrides;
	/* The refusal answers, by enum sluice_policy_answer_reason, and which
	 * limit the headers describe (SLUICE_POLICY_DESCRIBE_* or a limit). */
	struct sluice_policy_answer answers[SLUICE_POLICY_ANSWER_COUNT];
	uint32_t describe;
	/* Appended (docs/build.md, "ABI"). custom: the names of "headers
	 * custom" (families has SLUICE_HTTP_CUSTOM; render with
	 * sluice_http_render_custom()); all NULL otherwise. dry_run_header:
	 * "dry-run header <name>", the response header that names the
	 * dry-run limits that would have refused (NULL: none). dry_run_mask:
	 * bit i set when limit i is dry-run. */
	struct sluice_http_custom custom;
	const char *dry_run_header;
	uint32_t dry_run_mask;
	/* Identities: scope_rules[scope_count], and the proxies whose
	 * X-Forwarded-For is believed. */
	const struct sluice_policy_scope_rule *scope_rules;
	uint32_t proxy_count;
	const struct sluice_policy_cidr *proxies;
	/* Maps, and the one the request's tier comes from ("tier from map";
	 * UINT32_MAX: none): its values are tier names. */
	uint32_t map_count;
	const struct sluice_policy_map *maps;
	uint32_t tier_map;
	/* Bit i set when limit i has an "unless" (its unless_mask is not 0). */
	uint32_t unless_limits;
};

/* Where and why a load failed. line and column are 1-based (column in
 * bytes); 0 when the error has no position (allocation failure, input too
 * large). message is NUL-terminated, at most 127 bytes. */
struct sluice_policy_error {
	int code;
	int line;
	int column;
	char message[128];
};

/*
 * Load options (versioned: set size = sizeof(struct sluice_policy_options);
 * zero-filled fields take their defaults). NULL options = all defaults.
 *
 *   alloc, free, alloc_ctx   allocator hooks (default malloc/free). A load
 *                            makes two allocations: a bounded scratch
 *                            builder (freed before return) and the policy.
 *   max_bytes                refuse (SLUICE_ETOOBIG) a policy whose memory
 *                            would exceed this; 0 = no limit beyond the
 *                            ceilings above.
 */
struct sluice_policy_options {
	size_t size;
	void *(*alloc)(void *ctx, size_t size);
	void (*free)(void *ctx, void *ptr);
	void *alloc_ctx;
	size_t max_bytes;
	/* The directory a relative map path is read from (NULL: the current
	 * directory); sluice_policy_load_file() sets it to the policy file's. */
	const char *base_dir;
};

struct sluice_policy; /* opaque, immutable once loaded */

/*
 * Parse and validate `len` bytes of policy text (not NUL-terminated; NUL
 * bytes in it are a syntax error). On success *out receives the policy and
 * 0 is returned. On failure *out is NULL, nothing is leaked, the code is
 * returned and, when err is not NULL, stored in *err with a position and a
 * message saying what was expected:
 *   SLUICE_EINVAL    NULL text/out, bad options, or a semantic error
 *                    (duplicate name, option not valid for the kind, zero)
 *   SLUICE_ESYNTAX   the text does not follow the grammar
 *   SLUICE_ERANGE    a number, duration or time out of its range
 *   SLUICE_ENOTFOUND a reference to an undeclared scope, class or limit
 *   SLUICE_ETOOBIG   a documented ceiling or options->max_bytes exceeded
 *   SLUICE_ENOMEM    the allocator failed
 * Thread-safe (no shared state); never reads past text[len - 1].
 */
SLUICE_API int sluice_policy_parse(const char *text, size_t len,
				   const struct sluice_policy_options *options,
				   struct sluice_policy **out, struct sluice_policy_error *err);

/*
 * Read the policy file at `path` and parse it as sluice_policy_parse()
 * does, with options->base_dir (unless set) the file's directory, so that
 * its map files are found beside it. Also SLUICE_EIO (the file cannot be
 * read; err->message says why) and SLUICE_ETOOBIG (longer than
 * SLUICE_POLICY_MAX_INPUT).
 */
SLUICE_API int sluice_policy_load_file(const char *path, const struct sluice_policy_options *options,
				       struct sluice_policy **out, struct sluice_policy_error *err);

/*
 * Look key[0..key_len) up in map `map` of the policy: 0 and *value,
 * *value_len (NUL-terminated, in the policy) when present; SLUICE_ENOTFOUND
 * when not; SLUICE_EINVAL for NULL arguments or a map out of range. A hash
 * table built at load (XXH3, fixed seed; open addressing at most half
 * full): no allocation; thread-safe.
 */
SLUICE_API int sluice_policy_map_find(const struct sluice_policy *policy, uint32_t map, const void *key,
				      size_t key_len, const char **value, size_t *value_len);

/* Free a policy (with the allocator it was loaded with). NULL is a no-op.
 * The caller guarantees no thread still uses it. */
SLUICE_API void sluice_policy_destroy(struct sluice_policy *policy);

/* The description of a loaded policy (never NULL for a non-NULL policy). */
SLUICE_API const struct sluice_policy_spec *sluice_policy_spec(const struct sluice_policy *policy);

/* Index of the scope / limit / class / tier called `name` (NUL-terminated),
 * or SLUICE_ENOTFOUND; SLUICE_EINVAL for NULL arguments. */
SLUICE_API int sluice_policy_scope_index(const struct sluice_policy *policy, const char *name);
SLUICE_API int sluice_policy_limit_index(const struct sluice_policy *policy, const char *name);
SLUICE_API int sluice_policy_class_index(const struct sluice_policy *policy, const char *name);
SLUICE_API int sluice_policy_tier_index(const struct sluice_policy *policy, const char *name);

/*
 * Normalize the path of a request target (docs/policy.md, "Path
 * normalization"): in[0..len) must start with '/' (origin form); anything
 * from the first '?' or '#' is cut. Then, in this order:
 *   1. every percent-escape must be '%' and two hex digits (either case),
 *      else SLUICE_ESYNTAX; a control byte (0x00-0x1F, 0x7F) in the path is
 *      SLUICE_ESYNTAX too (answer 400);
 *   2. escapes of unreserved characters (ALPHA DIGIT '-' '.' '_' '~', RFC
 *      3986 2.3) are decoded; every other escape is kept with its hex digits
 *      in upper case ("%2f" -> "%2F"); "%2F" stays an escape, never a '/';
 *   3. runs of '/' count as one (empty segments are dropped);
 *   4. "." and ".." segments (after decoding: "%2e%2E" is "..") are removed
 *      as RFC 3986 5.2.4 does; ".." at the root stays at the root; a path
 *      whose last segment was "." or ".." ends with '/';
 *   5. with SLUICE_PATH_FOLD_CASE, ASCII letters are lowered (not the hex
 *      digits of a kept escape).
 * Bytes 0x80-0xFF and every other visible byte are kept as they are.
 * The result starts with '/' and is never longer than the path part of the
 * input; normalizing it again gives the same bytes.
 *
 * out receives the result and a NUL. *out_len (may be NULL) receives the
 * result's length without the NUL, also on SLUICE_ETRUNC. Returns 0;
 * SLUICE_EINVAL (NULL in, NULL out with cap > 0, empty input, no leading
 * '/', unknown flag); SLUICE_ESYNTAX (see 1); SLUICE_ETRUNC (cap <=
 * the result's length: nothing useful in out). No allocation; O(len);
 * thread-safe.
 */
#define SLUICE_PATH_FOLD_CASE 1u
SLUICE_API int sluice_path_normalize(const char *in, size_t len, unsigned flags, char *out, size_t cap,
				     size_t *out_len);

/*
 * The endpoint class of a request: `method` (method_len bytes) and `path`
 * (path_len bytes, starting with '/'; anything from the first '?' or '#' is
 * ignored). Returns the class id (>= 0; SLUICE_POLICY_DEFAULT_CLASS when no
 * route matches), or SLUICE_EINVAL for a NULL pointer, an empty method or a
 * path that does not start with '/', SLUICE_ESYNTAX for a path that
 * sluice_path_normalize() refuses (a malformed escape or a control byte: a
 * server answers 400), SLUICE_ETOOBIG for a path longer than
 * SLUICE_POLICY_MAX_PATH bytes before its '?' (answer 414).
 *
 * Matching (docs/policy.md, "Route matching"): the path is normalized first
 * (sluice_path_normalize(), with SLUICE_PATH_FOLD_CASE when the policy says
 * "routes case-insensitive"), so "/v1/./a", "/v1/x/../a", "/v1//a" and
 * "/v1/%61" all match "/v1/a". Methods compare ASCII case-insensitively,
 * normalized paths byte for byte; empty segments are ignored (so
 * "/v1/users/" matches "/v1/users"). Of all matching rules
 * the most specific wins: compare the patterns segment by segment from the
 * left, a literal beats ":param" beats "*"; for equal patterns an exact
 * method beats "*".
 *
 * Precompiled trie; no allocation, lock or syscall (a path that needs
 * normalizing is rewritten into a stack buffer of SLUICE_POLICY_MAX_PATH
 * bytes; one that is already normal is matched in place); visits each trie
 * node at most once. Thread-safe.
 */
SLUICE_API int sluice_policy_match(const struct sluice_policy *policy, const char *method,
				   size_t method_len, const char *path, size_t path_len);

/*
 * The limits that apply to requests of class `class_id`: bit i set for limit
 * i (precomputed at load from each limit's class list; SLUICE_POLICY_MAX_LIMITS
 * is 32). 0 for a NULL policy or a class id out of range. Thread-safe; O(1).
 */
SLUICE_API uint32_t sluice_policy_class_limits(const struct sluice_policy *policy, uint32_t class_id);

/*
 * The numbers of limit `limit` under tier `tier` (SLUICE_POLICY_NO_TIER for
 * the base numbers; ignored for a limit that is not tiered): count and burst
 * multiplied by the tier's multiplier, rounded down (validated >= 1 at load).
 * Either output may be NULL. Returns 0 or SLUICE_EINVAL (NULL policy, limit
 * or tier out of range).
 */
SLUICE_API int sluice_policy_limit_numbers(const struct sluice_policy *policy, uint32_t limit,
					   int tier, uint64_t *count, uint64_t *burst);

/*
 * The override in force for limit `limit` and the identity key[0..key_len)
 * of scope `scope` at Unix time now_ns: its index in spec->overrides, or
 * SLUICE_ENOTFOUND (none, or expired: now_ns >= expires_at_ns), or
 * SLUICE_EINVAL (NULL policy, NULL key with key_len > 0, indices out of
 * range). Binary search; no allocation. Thread-safe.
 */
SLUICE_API int sluice_policy_override_find(const struct sluice_policy *policy, uint32_t limit,
					   uint32_t scope, const void *key, size_t key_len,
					   uint64_t now_ns);

/*
 * Write the canonical text of a policy into buf (cap bytes, NUL-terminated
 * when cap > 0). *len_out (may be NULL) receives the length of the full text
 * without its NUL. Returns 0, SLUICE_ETRUNC when cap <= that length (the
 * text is cut and still NUL-terminated), SLUICE_EINVAL for a NULL policy or
 * a NULL buf with cap > 0. Parsing the canonical text gives a policy equal
 * to the original (sluice_policy_equal). Thread-safe.
 */
SLUICE_API int sluice_policy_print(const struct sluice_policy *policy, char *buf, size_t cap,
				   size_t *len_out);

/* True iff the two policies describe the same thing: every field of their
 * specs, names, routes (in order), tiers and overrides equal; the lines where
 * items were declared are not compared. Two NULLs are equal. */
SLUICE_API bool sluice_policy_equal(const struct sluice_policy *a, const struct sluice_policy *b);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_POLICY_H */
