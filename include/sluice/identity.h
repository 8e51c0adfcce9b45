/*
 * sluice/identity.h - a request's identities, read the way its policy
 * declares them ("scope NAME from SOURCE", docs/policy.md "Identities"), so
 * that the example server, the nginx module and any embedder key the same
 * request the same way.
 *
 * The input is a view of the request that points into the caller's own
 * buffers (the target, the header fields, the peer's address as text); the
 * output is one struct sluice_identity per scope of the policy, indexed as
 * the engine's request wants it (sluice/engine.h), pointing into the
 * request or into the caller's struct sluice_identity_set. No allocation,
 * no lock, no syscall; O(size of the request).
 *
 * Hostile input: an empty value (after trimming spaces and tabs) is no
 * identity; a value longer than SLUICE_IDENTITY_MAX bytes is replaced by
 * its 128-bit XXH3 hash keyed with the caller's secret (32 lower-case hex
 * digits), so a client cannot choose a long value that collides with
 * another's; an identity given twice with different values (two
 * Authorization fields, "sid=a; sid=b", "?key=a&key=b") is ambiguous:
 * SLUICE_ESYNTAX, which a server answers with 400, since the application
 * behind it might read either one.
 *
 * Thread-safe: the policy is only read; out is the caller's.
 */
#ifndef SLUICE_IDENTITY_H
#define SLUICE_IDENTITY_H

#include "common.h"
#include "policy.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Longest identity value of one scope, in bytes (SLUICE_ENGINE_MAX_IDENTITY). */
#define SLUICE_IDENTITY_MAX 256
/* Least bytes of the secret that keys the hash of over-long values
 * (XXH3_SECRET_SIZE_MIN). */
#define SLUICE_IDENTITY_SECRET_MIN 136

/* One identity value (e.g. the token "tok_123"). bytes NULL: the request
 * carries no identity for this scope, and the scope's rule in the policy
 * decides (required: refused; fallback: another scope's identity stands
 * in; optional: the limits keyed by the scope do not apply). len 0 with
 * bytes non-NULL is the empty identity, a valid key. */
struct sluice_identity {
	const void *bytes;
	size_t len;
};

/* One header field as received (name compared ASCII case-insensitively). */
struct sluice_header_view {
	const char *name;
	size_t name_len;
	const char *value;
	size_t value_len;
};

/*
 * A request, as the extraction reads it.
 *   target    the request target (origin form, "/path?query"); the query
 *             is what "query NAME" reads; NULL with target_len 0: none.
 *   headers   the fields in the order received.
 *   peer      the connection's peer address as text ("192.0.2.1", "::1",
 *             "::ffff:192.0.2.1"); NULL with peer_len 0: none.
 */
struct sluice_request_view {
	const char *target;
	size_t target_len;
	const struct sluice_header_view *headers;
	size_t header_count;
	const char *peer;
	size_t peer_len;
};

/*
 * Options, versioned: size = sizeof(struct sluice_identity_options).
 *   secret, secret_len   keys the hash of over-long values; at least
 *                        SLUICE_IDENTITY_SECRET_MIN bytes (random, per
 *                        process or per deployment; required).
 *   proxies, proxy_count trusted proxies in addition to the policy's
 *                        "trusted-proxies" (e.g. a server's command line).
 *   forwarded_for_ip     a scope named "ip" that declares no source reads
 *                        forwarded-for instead of the peer.
 */
struct sluice_identity_options {
	size_t size;
	const void *secret;
	size_t secret_len;
	const struct sluice_policy_cidr *proxies;
	size_t proxy_count;
	bool forwarded_for_ip;
};

/* The identities of one request: ids[s] for scope s of the policy
 * (scope_count entries are set), and the tier the policy's tier map gives
 * (the engine request's tier). buf is private: where decoded and hashed
 * values live (ids point into it), so keep the set while ids are used. */
struct sluice_identity_set {
	struct sluice_identity ids[SLUICE_POLICY_MAX_SCOPES];
	int32_t tier; /* from "tier from map", else SLUICE_POLICY_NO_TIER */
	unsigned char buf[SLUICE_POLICY_MAX_SCOPES][SLUICE_IDENTITY_MAX];
};

/*
 * Fill out->ids for every scope of `policy` from `req`, per each scope's
 * declared (or default) source:
 *   authorization S  "Authorization: S <credentials>", S compared ASCII
 *                    case-insensitively: the credentials, trimmed.
 *   header N         the value of field N, trimmed.
 *   cookie N         the value of cookie N in the Cookie fields ("a=1;
 *                    N=v"), its double quotes removed.
 *   query N          the value of parameter N of the target's query,
 *                    percent-decoded ('+' is a space); the name is
 *                    compared after decoding too ("api%5Fkey" is api_key).
 *   peer             req->peer.
 *   forwarded-for    when the peer is a trusted proxy, the rightmost
 *                    X-Forwarded-For entry that is not itself one (all of
 *                    them trusted: the leftmost); otherwise the peer: an
 *                    untrusted client's X-Forwarded-For is ignored.
 *   map F key K      the value of the map for scope K's identity (as
 *                    extracted: over-long values hashed); K absent or not
 *                    in the map: no identity.
 * out->tier: the tier the policy's "tier from map" names for its key
 * scope's identity, SLUICE_POLICY_NO_TIER without one.
 * Returns 0; SLUICE_EINVAL (NULL policy, req or out; options NULL, of
 * another size, or with a secret shorter than SLUICE_IDENTITY_SECRET_MIN;
 * proxies NULL with proxy_count > 0); SLUICE_ESYNTAX (an ambiguous
 * identity, see above; out->ids are then unset).
 */
SLUICE_API int sluice_identity_extract(const struct sluice_policy *policy, const struct sluice_request_view *req,
				       const struct sluice_identity_options *options,
				       struct sluice_identity_set *out);

/*
 * Parse "address" or "address/prefix" (IPv4 or IPv6; text[0..len), not
 * NUL-terminated) into *out, as "trusted-proxies" does: 0; SLUICE_ESYNTAX
 * (not an address, or a bad prefix), SLUICE_ERANGE (prefix beyond 32 or
 * 128), SLUICE_EINVAL (bits set past the prefix, or NULL). *where (may be
 * NULL) receives the offset of the offending byte (0: the address).
 */
SLUICE_API int sluice_identity_cidr_parse(const char *text, size_t len, struct sluice_policy_cidr *out,
					  size_t *where);

/* Is the textual address addr[0..len) inside one of the n blocks? (IPv4
 * and IPv4-mapped IPv6 addresses match IPv4 blocks.) False for text that
 * is not an address. */
SLUICE_API bool sluice_identity_cidr_match(const struct sluice_policy_cidr *blocks, size_t n, const char *addr,
					   size_t len);

#ifdef __cplusplus
}
#endif

#endif /* SLUICE_IDENTITY_H */
