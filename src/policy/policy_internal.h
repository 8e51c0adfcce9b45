/*
 * policy_internal.h - the layout of a loaded policy (opaque in the API) and
 * the cross-file helpers of policy*.c. Not installed.
 *
 * A loaded policy is one allocation: the struct below, then its arrays and
 * a pool of NUL-terminated strings, all carved by parse_layout.c once the
 * sizes are known. Nothing in it is written after the load.
 */
#ifndef SLUICE_POLICY_INTERNAL_H
#define SLUICE_POLICY_INTERNAL_H

#include <sluice/policy.h>

#define SLUICE__NODE_NONE UINT32_MAX

_Static_assert(SLUICE_POLICY_MAX_LIMITS <= 32, "class_limits holds one bit per limit");
_Static_assert(SLUICE_POLICY_MAX_CLASSES <= 64, "class_mask holds one bit per class");
_Static_assert(SLUICE_POLICY_MAX_SCOPES <= 32, "scope_mask holds one bit per scope");

/*
 * A node of the route trie. Node 0 is the root (the empty path). The
 * literal children of a node are contiguous (lit_first .. lit_first +
 * lit_count - 1) and sorted by (length, bytes) for binary search; a node has
 * at most one ":param" child. The terms in [term_first, +term_count) are the
 * rules whose pattern ends at this node; those in [wild_first, +wild_count)
 * the rules whose pattern is this node's path followed by a final "*" segment.
 */
struct sluice__route_node {
	const char *seg; /* literal segment text (NULL for the root and :param) */
	uint32_t seg_len;
	uint32_t lit_first;
	uint32_t lit_count;
	uint32_t param_child;
	uint32_t term_first;
	uint32_t term_count;
	uint32_t wild_first;
	uint32_t wild_count;
};

/* A rule ending at a node: method id (or SLUICE_POLICY_ANY_METHOD) -> class. */
struct sluice__route_term {
	uint32_t method_id;
	uint32_t class_id;
};

/* One pair of a map (parse_map.c): key and value NUL-terminated in the
 * policy's block; aux is the tier index of the value in the tier map. */
struct sluice__map_entry {
	const char *key;
	const char *value;
	uint32_t key_len;
	uint32_t value_len;
	uint32_t aux;
};

/* A map's hash table: slots[h & mask] holds entry index + 1 (0: empty);
 * linear probing; at most half full. */
struct sluice__map_table {
	const struct sluice__map_entry *entries;
	const uint32_t *slots;
	uint32_t mask;
};

/* The hash of a map key (fixed seed: see docs/policy.md "Maps"). */
uint64_t sluice__map_hash(const void *key, size_t len);
/* The entry of key in table t, or NULL. */
const struct sluice__map_entry *sluice__map_lookup(const struct sluice__map_table *t, const void *key, size_t len);

struct sluice_policy {
	struct sluice_policy_spec spec;
	struct sluice__map_table maps[SLUICE_POLICY_MAX_MAPS];
	void (*free_fn)(void *ctx, void *ptr);
	void *alloc_ctx;
	size_t bytes; /* size of the allocation */

	/* route matcher */
	const struct sluice__route_node *nodes;
	const struct sluice__route_term *terms;
	uint32_t node_count;
	uint32_t term_count;
	uint32_t method_count;
	const char *const *methods; /* distinct route methods, upper case */
	const uint8_t *method_lens;

	/* class id -> bitmask of the limits that apply to it */
	uint32_t class_limits[SLUICE_POLICY_MAX_CLASSES];

	/* overrides, sorted by (limit, scope, key bytes, key length) */
	const uint32_t *override_order;
};

/* normalize.c: the end of the path part of path[0..len) (the first '?' or
 * '#', else len; path[0] is '/'), and in *normal whether sluice_path_normalize()
 * would leave that part unchanged as far as route matching goes, so that
 * it can be matched in place. */
size_t sluice__path_scan(const char *path, size_t len, unsigned flags, bool *normal);

/* normalize.c: sluice_path_normalize() of path[0..n) (no '?' or '#' in it)
 * into buf, which has room for n bytes (the result is never longer): one
 * writing pass, no measuring one. *out points into buf. No NUL. */
int sluice__path_normalize_bounded(const char *path, size_t n, unsigned flags, char *buf, const char **out,
				   size_t *out_len);

#endif /* SLUICE_POLICY_INTERNAL_H */
