/*
 * client_internal.h - helpers shared by the client-side files (client.c,
 * client_time.c, client_vendor.c, client_pacer.c, backoff.c). Not
 * installed; not part of the API.
 */
#ifndef SLUICE_CLIENT_INTERNAL_H
#define SLUICE_CLIENT_INTERNAL_H

#include <sluice/client.h>

#include "common/util_internal.h"

#define SLUICE__NS_PER_MS 1000000ull

/* Trim SP/HTAB on both sides. */
void sluice__client_trim(const char **s, size_t *len);

/* 1*DIGIT [ "." 1*DIGIT ] (the fraction only if allow_frac), saturating;
 * the fraction to ns, rounded up (digits beyond the ninth count as one
 * more ns when non-zero; a fraction that rounds to 10^9 ns carries into
 * the integer part). false on anything else. */
bool sluice__client_number(const char *s, size_t len, bool allow_frac, uint64_t *v,
			   uint32_t *frac_ns);

/* Delay from now_ns until the instant unix_s + frac_ns (0 if past). */
uint64_t sluice__client_until(int64_t unix_s, uint32_t frac_ns, uint64_t now_ns);

/* Field name equality, ASCII case-insensitive; want is lowercase. */
bool sluice__client_name_is(const struct sluice_http_field *f, const char *want, size_t want_len);

/* Parse one value of the given format as a reset: a delay from now_ns.
 * *absolute tells whether the value was an instant (true) or a delta. */
bool sluice__client_time_value(const char *s, size_t len, uint8_t format, uint64_t now_ns,
			       uint64_t now_unix_ns, uint64_t *delay_ns, bool *absolute);

/* out->bucket from a field value (trimmed; 1-63 bytes of visible ASCII or
 * SP); false, and nothing stored, otherwise. */
bool sluice__client_set_bucket(struct sluice_client_limits *out, const char *v, size_t len);

/* The policy entry named name (NUL-terminated) without pk, created with
 * unit if absent; NULL when the table is full. */
struct sluice_client_policy *sluice__client_dimension(struct sluice_client_limits *out,
						      const char *name, const char *unit);

/* The vendor and caller tables over the response; returns the family bits
 * of the tables that matched a well-formed field, sets *ignored bits.
 * name_len: the rows' name lengths, or NULL to compare names alone. */
uint32_t sluice__client_apply_rules(const struct sluice_http_field *fields, size_t n,
				    const struct sluice_client_rule *rules, const uint8_t *name_len,
				    size_t nrules, uint32_t family, uint64_t now_ns, uint64_t now_unix_ns,
				    struct sluice_client_limits *out, uint32_t *first_dim,
				    uint32_t *ignored);

/* The built-in vendor table. */
extern const struct sluice_client_rule sluice__client_vendor_rules[];
extern const uint8_t sluice__client_vendor_name_len[];
extern const size_t sluice__client_vendor_nrules;

/* Index of the most restrictive dimension among policies[from..to): an
 * exhausted one with the longest reset, else the least share of its
 * limit left; UINT32_MAX if none has a remaining count. */
uint32_t sluice__client_most_restrictive(const struct sluice_client_limits *out, uint32_t from,
					 uint32_t to);

/* The options are complete and within their ranges. */
bool sluice__backoff_opts_valid(const struct sluice_backoff_opts *o);

/* Uniform in [0, n] from the caller's generator. */
uint64_t sluice__rng_upto(struct sluice_rng *rng, uint64_t n);

/* The fraction permille/1000 of d, exactly. */
static inline uint64_t sluice__permille_of(uint64_t d, uint32_t permille)
{
	return (uint64_t)((sluice__u128)d * permille / 1000);
}

#endif /* SLUICE_CLIENT_INTERNAL_H */
