/*
 * Parsing rate-limit response fields (client side).
 *
 * Every field is first combined (all lines of one name, matched
 * case-insensitively, joined with ", " into a stack buffer), then parsed as
 * a whole, then checked against its draft's rules; any failure drops that
 * one field, never the others ("Malformed RateLimit header fields MUST be
 * ignored"). The RFC 9651 parser runs over a stack array of nodes sized for
 * the largest value accepted, so nothing allocates.
 *
 * Telling the RateLimit shapes apart (docs/http.md, "Classification"):
 * `limit=100, remaining=50, reset=5` is a valid Dictionary and an invalid
 * List; `"default";r=50;t=30` a valid List and an invalid Dictionary (a key
 * cannot start with '"'). Only Token-named items (`default;r=50`) parse both
 * ways: they are read as a List unless the Dictionary reading has the
 * draft-07 keys.
 *
 * Reset values (other than draft-11's t, always delta seconds) mean delta
 * seconds, Unix seconds or Unix milliseconds depending on the sender; the
 * size rule of sluice_client_reset_delay() tells them apart.
 */
#include <sluice/sf.h>

#include <string.h>

#include "client/client_internal.h"

#define MAX_NODES SLUICE_CLIENT_SF_NODES_MAX

/* ---- field access ----------------------------------------------------------- */

/* The field names the parser reads, lowercase. */
enum slot {
	S_POLICY,
	S_RATELIMIT,
	S_RL_LIMIT,
	S_RL_REMAINING,
	S_RL_RESET,
	S_X_LIMIT,
	S_X_REMAINING,
	S_X_RESET,
	S_XX_LIMIT,
	S_XX_REMAINING,
	S_XX_RESET,
	S_RETRY_AFTER,
	S_DATE,
	S_X_RESET_AFTER,
	S_X_BUCKET,
	S_X_RESOURCE,
	S_XX_PLAIN,
	S_COUNT
};

#define SLOT_NAME(s) {s, sizeof(s) - 1}
static const struct {
	const char *name;
	size_t len;
} slot_names[S_COUNT] = {
	SLOT_NAME("ratelimit-policy"),   SLOT_NAME("ratelimit"),
	SLOT_NAME("ratelimit-limit"),    SLOT_NAME("ratelimit-remaining"),
	SLOT_NAME("ratelimit-reset"),    SLOT_NAME("x-ratelimit-limit"),
	SLOT_NAME("x-ratelimit-remaining"), SLOT_NAME("x-ratelimit-reset"),
	SLOT_NAME("x-rate-limit-limit"), SLOT_NAME("x-rate-limit-remaining"),
	SLOT_NAME("x-rate-limit-reset"), SLOT_NAME("retry-after"),
	SLOT_NAME("date"),               SLOT_NAME("x-ratelimit-reset-after"),
	SLOT_NAME("x-ratelimit-bucket"), SLOT_NAME("x-ratelimit-resource"),
	SLOT_NAME("x-rate-limit"),
};

/* Where each known field's lines are: one pass over the response. */
struct field_index {
	const struct sluice_http_field *fields;
	size_t n;
	size_t first[S_COUNT];
	size_t count[S_COUNT];
};

bool sluice__client_name_is(const struct sluice_http_field *f, const char *want, size_t want_len)
{
	if (f->name == NULL || f->name_len != want_len)
		return false;
	for (size_t i = 0; i < want_len; i++) {
		char c = f->name[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != want[i])
			return false;
	}
	return true;
}

static bool name_is(const struct sluice_http_field *f, int slot)
{
	return sluice__client_name_is(f, slot_names[slot].name, slot_names[slot].len);
}

static void index_fields(struct field_index *ix, const struct sluice_http_field *fields, size_t n)
{
	ix->fields = fields;
	ix->n = n;
	for (int s = 0; s < S_COUNT; s++)
		ix->count[s] = 0;
	for (size_t i = 0; i < n; i++) {
		for (int s = 0; s < S_COUNT; s++) {
			if (name_is(&fields[i], s)) {
				if (ix->count[s]++ == 0)
					ix->first[s] = i;
				break;
			}
		}
	}
}

/* The combined value of a field: all its lines joined with ", " (RFC 9110
 * 5.3). A single line is used in place; several are copied into buf.
 * Returns the length, or -1 if the field is absent or its value is longer
 * than SLUICE_CLIENT_FIELD_MAX (such a field is ignored). */
static long field_value(const struct field_index *ix, int slot, char *buf, const char **value)
{
	const struct sluice_http_field *f = ix->fields;
	size_t len = 0;

	if (ix->count[slot] == 0)
		return -1;
	if (ix->count[slot] == 1) {
		const struct sluice_http_field *one = &f[ix->first[slot]];
		if (one->value_len > SLUICE_CLIENT_FIELD_MAX || (one->value_len > 0 && one->value == NULL))
			return -1;
		*value = one->value_len > 0 ? one->value : "";
		return (long)one->value_len;
	}
	for (size_t i = ix->first[slot], seen = 0; seen < ix->count[slot]; i++) {
		if (!name_is(&f[i], slot))
			continue;
		size_t add = f[i].value_len + (seen > 0 ? 2 : 0);
		if (add > SLUICE_CLIENT_FIELD_MAX - len || (f[i].value_len > 0 && f[i].value == NULL))
			return -1;
		if (seen++ > 0) {
			memcpy(buf + len, ", ", 2);
			len += 2;
		}
		if (f[i].value_len > 0)
			memcpy(buf + len, f[i].value, f[i].value_len);
		len += f[i].value_len;
	}
	*value = buf;
	return (long)len;
}

/* ---- SF helpers ------------------------------------------------------------- */

/* The non-negative Integer parameter `key`: 1 found, 0 absent, -1 wrong type. */
static int param_uint(const struct sluice_sf_node *item, const char *key, uint64_t *v)
{
	const struct sluice_sf_node *p = sluice_sf_param(item, key);

	if (p == NULL)
		return 0;
	if (p->type != SLUICE_SF_INTEGER || p->value < 0)
		return -1;
	*v = (uint64_t)p->value;
	return 1;
}

static void copy_text(const struct sluice_sf_node *n, char *out, size_t cap, bool *truncated)
{
	size_t len = 0;
	int rc = sluice_sf_decode(n, (uint8_t *)out, cap - 1, &len);

	if (truncated != NULL)
		*truncated = rc == SLUICE_ETRUNC;
	out[SLUICE_MIN(len, cap - 1)] = '\0';
}

/* A policy entry for (name node or "", pk node or NULL): the existing one
 * (if merge) or a new one; NULL when the table is full. Unnamed draft 04-07
 * policies are never merged. by_name: a RateLimit item without pk joins
 * the one policy of its name whatever that policy's pk (express-rate-limit
 * sends pk on RateLimit-Policy only). */
static struct sluice_client_policy *policy_for(struct sluice_client_limits *out,
					       const struct sluice_sf_node *name,
					       const struct sluice_sf_node *pk, bool merge, bool by_name)
{
	uint32_t same_name = 0, last = 0;

	struct sluice_client_policy key;

	memset(&key, 0, sizeof(key));
	if (name != NULL)
		copy_text(name, key.name, sizeof(key.name), &key.name_truncated);
	if (pk != NULL) {
		size_t len = 0;
		key.pk_truncated = sluice_sf_decode(pk, key.pk, sizeof(key.pk), &len) == SLUICE_ETRUNC;
		key.pk_len = (uint32_t)SLUICE_MIN(len, sizeof(key.pk));
	}
	for (uint32_t i = 0; merge && i < out->npolicies; i++) {
		struct sluice_client_policy *p = &out->policies[i];
		if (strcmp(p->name, key.name) != 0)
			continue;
		if (p->pk_len == key.pk_len && memcmp(p->pk, key.pk, key.pk_len) == 0)
			return p;
		same_name++;
		last = i;
	}
	if (merge && by_name && pk == NULL && same_name == 1)
		return &out->policies[last];
	if (out->npolicies == SLUICE_CLIENT_MAX_POLICIES) {
		out->policies_truncated = true;
		return NULL;
	}
	out->policies[out->npolicies] = key;
	return &out->policies[out->npolicies++];
}

/* ---- RateLimit-Policy --------------------------------------------------------- */

/* Check (apply == false) or store (apply == true) a RateLimit-Policy list. */
static bool policy_items(const struct sluice_sf_node *nodes, size_t members, bool named, bool apply,
			 struct sluice_client_limits *out)
{
	size_t at = 0;

	for (size_t m = 0; m < members; m++) {
		const struct sluice_sf_node *it = &nodes[at];
		uint64_t q = 0, w = 0;
		int hq, hw;
		const struct sluice_sf_node *qu = sluice_sf_param(it, "qu");
		const struct sluice_sf_node *pk = sluice_sf_param(it, "pk");

		at += sluice_sf_member_span(it);
		if (named) {
			/* drafts 08-11: q REQUIRED, w >= 1, qu String, pk Byte Sequence */
			hq = param_uint(it, "q", &q);
			hw = param_uint(it, "w", &w);
			if (hq != 1 || hw < 0 || (hw == 1 && w == 0))
				return false;
			if ((qu != NULL && qu->type != SLUICE_SF_STRING) ||
			    (pk != NULL && pk->type != SLUICE_SF_BINARY))
				return false;
		} else {
			/* drafts 04-07: <quota>;w=<window>, w REQUIRED */
			if (it->type != SLUICE_SF_INTEGER || it->value < 0)
				return false;
			q = (uint64_t)it->value;
			hq = 1;
			hw = param_uint(it, "w", &w);
			if (hw != 1 || w == 0)
				return false;
			qu = pk = NULL;
		}
		if (!apply)
			continue;
		struct sluice_client_policy *p = policy_for(out, named ? it : NULL, pk, named, false);
		if (p == NULL)
			continue;
		p->has_quota = true;
		p->quota = q;
		if (hw == 1) {
			p->has_window = true;
			p->window_s = w;
		}
		if (qu != NULL)
			copy_text(qu, p->unit, sizeof(p->unit), NULL);
	}
	return true;
}

/* Every member an Item of type `type` (String or Token names). */
static bool all_items_of(const struct sluice_sf_node *nodes, size_t members, uint8_t type)
{
	size_t at = 0;

	for (size_t m = 0; m < members; m++) {
		if (nodes[at].type != type)
			return false;
		at += sluice_sf_member_span(&nodes[at]);
	}
	return members > 0;
}

/* false when the field is malformed (and ignored) */
static bool parse_policy(const char *v, size_t len, struct sluice_client_limits *out,
			 struct sluice_sf_node *nodes)
{
	struct sluice_sf_result res;

	if (sluice_sf_parse(SLUICE_SF_KIND_LIST, v, len, nodes, MAX_NODES, &res) != 0 ||
	    res.members == 0)
		return false;
	if (all_items_of(nodes, res.members, SLUICE_SF_STRING) ||
	    all_items_of(nodes, res.members, SLUICE_SF_TOKEN)) {
		if (!policy_items(nodes, res.members, true, false, out))
			return false;
		policy_items(nodes, res.members, true, true, out);
		out->seen |= SLUICE_CLIENT_DRAFT08;
		return true;
	}
	if (all_items_of(nodes, res.members, SLUICE_SF_INTEGER) &&
	    policy_items(nodes, res.members, false, false, out)) {
		policy_items(nodes, res.members, false, true, out);
		out->seen |= SLUICE_CLIENT_DRAFT06;
		return true;
	}
	return false;
}

/* ---- RateLimit ---------------------------------------------------------------- */

static bool service_items_valid(const struct sluice_sf_node *nodes, size_t members)
{
	size_t at = 0;

	for (size_t m = 0; m < members; m++) {
		const struct sluice_sf_node *it = &nodes[at];
		const struct sluice_sf_node *pk = sluice_sf_param(it, "pk");
		uint64_t v;
		at += sluice_sf_member_span(it);
		if (param_uint(it, "r", &v) != 1 || param_uint(it, "t", &v) < 0)
			return false;
		if (pk != NULL && pk->type != SLUICE_SF_BINARY)
			return false;
	}
	return true;
}

/* drafts 08-11: store each item; fill limit/remaining/reset from the
 * governing one (least r, ties the longest t). Ties compare t in seconds:
 * t_ns saturates beyond 2^64 ns, and two saturated resets still differ. */
static void apply_service_items(const struct sluice_sf_node *nodes, size_t members,
				struct sluice_client_limits *out, uint32_t *governing)
{
	size_t at = 0;
	bool have = false;
	uint64_t best_r = 0, best_t = 0, best_t_ns = 0;

	for (size_t m = 0; m < members; m++) {
		const struct sluice_sf_node *it = &nodes[at];
		uint64_t r = 0, t = 0;
		at += sluice_sf_member_span(it);
		param_uint(it, "r", &r);
		bool ht = param_uint(it, "t", &t) == 1;
		uint64_t t_ns = sluice__mul_sat(t, SLUICE_NS_PER_SEC);
		struct sluice_client_policy *p = policy_for(out, it, sluice_sf_param(it, "pk"), true, true);
		if (p != NULL) {
			p->has_remaining = true;
			p->remaining = r;
			p->has_reset = ht;
			p->reset_ns = ht ? t_ns : 0;
		}
		if (!have || r < best_r || (r == best_r && t > best_t)) {
			have = true;
			best_r = r;
			best_t = t;
			best_t_ns = t_ns;
			*governing = p != NULL ? (uint32_t)(p - out->policies) : UINT32_MAX;
			out->has_reset = ht;
		}
	}
	out->has_remaining = true;
	out->remaining = best_r;
	out->reset_ns = out->has_reset ? best_t_ns : 0;
}

struct draft07 {
	bool ok;
	uint64_t limit, remaining, reset;
	bool has_remaining;
};

static struct draft07 parse_draft07(const struct sluice_sf_node *nodes, size_t members)
{
	struct draft07 d = {false, 0, 0, 0, false};
	bool has_limit = false, has_reset = false;
	size_t at = 0;

	for (size_t m = 0; m < members; m++) {
		const struct sluice_sf_node *it = &nodes[at];
		uint64_t *dst = NULL;
		at += sluice_sf_member_span(it);
		if (it->key_len == 5 && memcmp(it->key, "limit", 5) == 0) {
			dst = &d.limit;
			has_limit = true;
		} else if (it->key_len == 9 && memcmp(it->key, "remaining", 9) == 0) {
			dst = &d.remaining;
			d.has_remaining = true;
		} else if (it->key_len == 5 && memcmp(it->key, "reset", 5) == 0) {
			dst = &d.reset;
			has_reset = true;
		} else {
			continue; /* unknown keys: ignored */
		}
		if (it->type != SLUICE_SF_INTEGER || it->value < 0)
			return d; /* malformed: the whole field is ignored */
		*dst = (uint64_t)it->value;
	}
	d.ok = has_limit && has_reset;
	return d;
}

/* ---- dimensions (vendor and caller tables) ------------------------------------ */

bool sluice__client_set_bucket(struct sluice_client_limits *out, const char *v, size_t len)
{
	sluice__client_trim(&v, &len);
	if (len == 0 || len >= sizeof(out->bucket))
		return false;
	for (size_t i = 0; i < len; i++)
		if (v[i] < 0x20 || v[i] > 0x7e) /* visible ASCII and SP: an id, printable */
			return false;
	memcpy(out->bucket, v, len);
	out->bucket[len] = '\0';
	out->bucket_len = (uint32_t)len;
	return true;
}

struct sluice_client_policy *sluice__client_dimension(struct sluice_client_limits *out,
						      const char *name, const char *unit)
{
	size_t nlen = strlen(name);

	for (uint32_t i = 0; i < out->npolicies; i++) {
		struct sluice_client_policy *p = &out->policies[i];
		if (p->pk_len == 0 && strncmp(p->name, name, sizeof(p->name) - 1) == 0 &&
		    p->name[SLUICE_MIN(nlen, sizeof(p->name) - 1)] == '\0')
			return p;
	}
	if (out->npolicies == SLUICE_CLIENT_MAX_POLICIES) {
		out->policies_truncated = true;
		return NULL;
	}
	struct sluice_client_policy *p = &out->policies[out->npolicies++];
	memset(p, 0, sizeof(*p));
	p->name_truncated = nlen >= sizeof(p->name);
	memcpy(p->name, name, SLUICE_MIN(nlen, sizeof(p->name) - 1));
	if (unit != NULL) {
		size_t ulen = SLUICE_MIN(strlen(unit), sizeof(p->unit) - 1);
		memcpy(p->unit, unit, ulen);
	}
	return p;
}

/* a/b < c/d for shares of limits, exactly (b, d > 0) */
static bool share_less(uint64_t a, uint64_t b, uint64_t c, uint64_t d)
{
	return (sluice__u128)a * d < (sluice__u128)c * b;
}

uint32_t sluice__client_most_restrictive(const struct sluice_client_limits *out, uint32_t from,
					 uint32_t to)
{
	uint32_t g = UINT32_MAX;

	for (uint32_t i = from; i < to; i++) {
		const struct sluice_client_policy *p = &out->policies[i];
		if (!p->has_remaining)
			continue;
		if (g == UINT32_MAX) {
			g = i;
			continue;
		}
		const struct sluice_client_policy *b = &out->policies[g];
		bool better;
		if ((p->remaining == 0) != (b->remaining == 0))
			better = p->remaining == 0;
		else if (p->remaining == 0)
			better = p->reset_ns > b->reset_ns;
		else
			better = share_less(p->remaining, p->has_quota && p->quota > 0 ? p->quota : p->remaining,
					    b->remaining, b->has_quota && b->quota > 0 ? b->quota : b->remaining);
		if (better)
			g = i;
	}
	return g;
}

/* ---- the whole response -------------------------------------------------------- */

struct triple {
	bool has_limit, has_remaining, has_reset;
	uint64_t limit, remaining, reset_ns;
};

/* An SF Item that is a non-negative Integer (parameters ignored). */
static bool sf_uint_item(const char *v, long len, bool first_of_list, struct sluice_sf_node *nodes,
			 uint64_t *out)
{
	struct sluice_sf_result res;

	if (len < 0)
		return false;
	/* drafts 00-03 sent RateLimit-Limit as a List whose first member is
	 * the limit ("10, 10;w=1, 50;w=60"); an Item is a one-member List */
	enum sluice_sf_kind kind = first_of_list ? SLUICE_SF_KIND_LIST : SLUICE_SF_KIND_ITEM;
	if (sluice_sf_parse(kind, v, (size_t)len, nodes, MAX_NODES, &res) != 0 || res.members == 0)
		return false;
	if (nodes[0].type != SLUICE_SF_INTEGER || nodes[0].value < 0)
		return false;
	*out = (uint64_t)nodes[0].value;
	return true;
}

static void set_source(struct sluice_client_limits *out, uint32_t family, const struct triple *t)
{
	if (out->source != 0 || !(t->has_limit || t->has_remaining || t->has_reset))
		return;
	out->source = family;
	out->has_limit = t->has_limit;
	out->limit = t->limit;
	out->has_remaining = t->has_remaining;
	out->remaining = t->remaining;
	out->has_reset = t->has_reset;
	out->reset_ns = t->reset_ns;
}

/* The most restrictive of the dimensions policies[from..) as the source. */
static void source_from_dimensions(struct sluice_client_limits *out, uint32_t family, uint32_t from)
{
	uint32_t g = sluice__client_most_restrictive(out, from, out->npolicies);

	if (g == UINT32_MAX || out->source != 0)
		return;
	const struct sluice_client_policy *p = &out->policies[g];
	struct triple t = {p->has_quota, true, p->has_reset, p->quota, p->remaining, p->reset_ns};
	set_source(out, family, &t);
	out->governing = g;
}

/* X-RateLimit-Limit as a List: "100, 100;window=60, 10000;window=86400",
 * the first member the limit, the others unnamed policies with their
 * window (w or window). */
static bool x_limit_list(const char *v, size_t len, struct sluice_sf_node *nodes,
			 struct sluice_client_limits *out, uint64_t *limit)
{
	struct sluice_sf_result res;
	size_t at = 0;

	if (sluice_sf_parse(SLUICE_SF_KIND_LIST, v, len, nodes, MAX_NODES, &res) != 0 ||
	    res.members == 0 || !all_items_of(nodes, res.members, SLUICE_SF_INTEGER))
		return false;
	for (size_t m = 0; m < res.members; m++) {
		const struct sluice_sf_node *it = &nodes[at];
		uint64_t w = 0;
		at += sluice_sf_member_span(it);
		if (it->value < 0)
			return false;
		int hw = param_uint(it, "w", &w);
		if (hw == 0)
			hw = param_uint(it, "window", &w);
		if (hw < 0 || (hw == 1 && w == 0) || (m > 0 && hw == 0))
			return false;
	}
	*limit = (uint64_t)nodes[0].value;
	at = 0;
	for (size_t m = 0; m < res.members; m++) {
		const struct sluice_sf_node *it = &nodes[at];
		uint64_t w = 0;
		at += sluice_sf_member_span(it);
		if (param_uint(it, "w", &w) != 1 && param_uint(it, "window", &w) != 1)
			continue;
		struct sluice_client_policy *p = policy_for(out, NULL, NULL, false, false);
		if (p != NULL) {
			p->has_quota = p->has_window = true;
			p->quota = (uint64_t)it->value;
			p->window_s = w;
		}
	}
	return true;
}

/* Plain number, trimmed. */
static bool plain_number(const char *v, long len, bool frac_ok, uint64_t *out)
{
	uint32_t frac;
	size_t n = (size_t)len;

	if (len < 0)
		return false;
	sluice__client_trim(&v, &n);
	return sluice__client_number(v, n, frac_ok, out, &frac);
}

static void x_family(const struct field_index *ix, char *buf, struct sluice_sf_node *nodes,
		     uint64_t now_ns, uint64_t now_unix_ns, struct sluice_client_limits *out)
{
	static const int slots[2][3] = {
		{S_X_LIMIT, S_X_REMAINING, S_X_RESET},
		{S_XX_LIMIT, S_XX_REMAINING, S_XX_RESET},
	};
	struct triple t = {false, false, false, 0, 0, 0};
	bool bad = false, absolute = false;
	const char *v = NULL;
	long len;

	if ((len = field_value(ix, S_X_RESET_AFTER, buf, &v)) >= 0) {
		/* relative: immune to clock skew, so it wins over Reset */
		t.has_reset = sluice__client_time_value(v, (size_t)len, SLUICE_CLIENT_FMT_SECONDS, now_ns,
						       now_unix_ns, &t.reset_ns, &absolute);
		bad |= !t.has_reset;
	}
	for (int k = 0; k < 2; k++) {
		if (!t.has_limit && (len = field_value(ix, slots[k][0], buf, &v)) >= 0) {
			t.has_limit = plain_number(v, len, false, &t.limit) ||
				      x_limit_list(v, (size_t)len, nodes, out, &t.limit);
			bad |= !t.has_limit;
		}
		if (!t.has_remaining && (len = field_value(ix, slots[k][1], buf, &v)) >= 0) {
			t.has_remaining = plain_number(v, len, true, &t.remaining);
			bad |= !t.has_remaining;
		}
		if (!t.has_reset && (len = field_value(ix, slots[k][2], buf, &v)) >= 0) {
			t.has_reset = sluice__client_time_value(v, (size_t)len, SLUICE_CLIENT_FMT_AUTO, now_ns,
							       now_unix_ns, &t.reset_ns, &absolute);
			bad |= !t.has_reset;
		}
	}
	/* X-Rate-Limit alone is the limit of the X-Rate-Limit-* spelling */
	if (!t.has_limit && (len = field_value(ix, S_XX_PLAIN, buf, &v)) >= 0) {
		t.has_limit = plain_number(v, len, false, &t.limit);
		bad |= !t.has_limit;
	}
	for (int s = S_X_BUCKET; s <= S_X_RESOURCE && out->bucket_len == 0; s++) {
		if ((len = field_value(ix, s, buf, &v)) < 0)
			continue;
		bad |= !sluice__client_set_bucket(out, v, (size_t)len);
	}
	if (bad)
		out->ignored |= SLUICE_CLIENT_X;
	if (t.has_limit || t.has_remaining || t.has_reset || out->bucket_len > 0) {
		out->seen |= SLUICE_CLIENT_X;
		set_source(out, SLUICE_CLIENT_X, &t);
	}
}

static void ratelimit_field(const char *v, size_t len, struct sluice_sf_node *nodes, uint64_t now_ns,
			    struct sluice_client_limits *out)
{
	struct sluice_sf_result res;
	bool list_ok = sluice_sf_parse(SLUICE_SF_KIND_LIST, v, len, nodes, MAX_NODES, &res) == 0 &&
		       res.members > 0;
	bool strings = list_ok && all_items_of(nodes, res.members, SLUICE_SF_STRING);
	bool tokens = list_ok && all_items_of(nodes, res.members, SLUICE_SF_TOKEN);
	struct draft07 d7 = {false, 0, 0, 0, false};

	if (!strings) {
		struct sluice_sf_result dres;
		if (sluice_sf_parse(SLUICE_SF_KIND_DICT, v, len, nodes, MAX_NODES, &dres) == 0)
			d7 = parse_draft07(nodes, dres.members);
		/* the Token-named List, parsed again over the dictionary */
		if (tokens && !d7.ok)
			sluice_sf_parse(SLUICE_SF_KIND_LIST, v, len, nodes, MAX_NODES, &res);
	}
	if ((strings || (tokens && !d7.ok)) && service_items_valid(nodes, res.members)) {
		uint32_t g = UINT32_MAX;
		apply_service_items(nodes, res.members, out, &g);
		out->seen |= SLUICE_CLIENT_DRAFT08;
		out->source = SLUICE_CLIENT_DRAFT08;
		out->governing = g;
		/* the governing item's policy: same name and pk (or its name's
		 * one policy), else the same name without a pk (a policy shared
		 * by partitions) */
		for (uint32_t i = 0; g != UINT32_MAX && i <= out->npolicies; i++) {
			const struct sluice_client_policy *p = i == 0 ? &out->policies[g] : &out->policies[i - 1];
			if (i > 0 && (p->pk_len != 0 || strcmp(p->name, out->policies[g].name) != 0))
				continue;
			if (p->has_quota) {
				out->has_limit = true;
				out->limit = p->quota;
				break;
			}
		}
	} else if (d7.ok) {
		struct triple t = {true, d7.has_remaining, true, d7.limit, d7.remaining,
				   sluice_client_reset_delay(d7.reset, 0, now_ns)};
		out->seen |= SLUICE_CLIENT_DRAFT07;
		set_source(out, SLUICE_CLIENT_DRAFT07, &t);
	} else {
		out->ignored |= SLUICE_CLIENT_DRAFT08;
	}
}

static bool valid_rules(const struct sluice_client_rule *r, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (r[i].name == NULL || r[i].role < SLUICE_CLIENT_ROLE_LIMIT ||
		    r[i].role > SLUICE_CLIENT_ROLE_BUCKET || r[i].format < SLUICE_CLIENT_FMT_COUNT ||
		    r[i].format > SLUICE_CLIENT_FMT_TEXT)
			return false;
	}
	return true;
}

int sluice_client_parse_ex(const struct sluice_http_field *fields, size_t n, uint64_t now_unix_ns,
			   const struct sluice_client_parse_opts *opts, struct sluice_client_limits *out)
{
	char buf[SLUICE_CLIENT_FIELD_MAX];
	struct sluice_sf_node nodes[MAX_NODES];
	struct field_index ix;
	const char *v = NULL;
	long len;
	uint32_t flags = 0, first = 0;

	if (out == NULL || (fields == NULL && n > 0))
		return SLUICE_EINVAL;
	if (opts != NULL) {
		if (opts->size < sizeof(*opts) || (opts->rules == NULL && opts->nrules > 0) ||
		    !valid_rules(opts->rules, opts->nrules))
			return SLUICE_EINVAL;
		flags = opts->flags;
	}
	memset(out, 0, sizeof(*out));
	out->governing = UINT32_MAX;
	index_fields(&ix, fields, n);

	/* The server's clock: absolute times are measured from Date when the
	 * caller's clock is not within [Date, Date + slack] (Date is whole
	 * seconds, truncated, and the response took time to arrive). */
	uint64_t now_ns = now_unix_ns;
	if ((len = field_value(&ix, S_DATE, buf, &v)) >= 0) {
		const char *d = v;
		size_t dlen = (size_t)len;
		sluice__client_trim(&d, &dlen);
		if (sluice_http_date_parse(d, dlen, now_unix_ns, &out->date_unix_s) == 0 &&
		    out->date_unix_s >= 0) {
			out->has_date = true;
			out->seen |= SLUICE_CLIENT_DATE;
			uint64_t date_ns = sluice__mul_sat((uint64_t)out->date_unix_s, SLUICE_NS_PER_SEC);
			if (!(flags & SLUICE_CLIENT_NO_DATE_ANCHOR) &&
			    (now_unix_ns < date_ns || now_unix_ns - date_ns > SLUICE_CLIENT_DATE_SLACK_NS)) {
				now_ns = date_ns;
				out->clock_anchored = true;
			}
		} else {
			out->ignored |= SLUICE_CLIENT_DATE;
		}
	}

	/* 0. the caller's table */
	if (opts != NULL && opts->nrules > 0 &&
	    sluice__client_apply_rules(fields, n, opts->rules, NULL, opts->nrules, SLUICE_CLIENT_CALLER,
				       now_ns, now_unix_ns, out, &first, &out->ignored) != 0) {
		out->seen |= SLUICE_CLIENT_CALLER;
		source_from_dimensions(out, SLUICE_CLIENT_CALLER, first);
	}

	/* 1-3. RateLimit-Policy first, so RateLimit items join their policies */
	if ((len = field_value(&ix, S_POLICY, buf, &v)) >= 0 && !parse_policy(v, (size_t)len, out, nodes))
		out->ignored |= SLUICE_CLIENT_DRAFT08;
	if ((len = field_value(&ix, S_RATELIMIT, buf, &v)) >= 0) {
		/* when the caller's table already supplied the source, the
		 * drafts add their policies but do not replace it */
		uint32_t source = out->source, governing = out->governing;
		struct triple head = {out->has_limit, out->has_remaining, out->has_reset,
				      out->limit,     out->remaining,     out->reset_ns};
		ratelimit_field(v, (size_t)len, nodes, now_ns, out);
		if (source != 0) {
			out->source = 0;
			set_source(out, source, &head);
			out->governing = governing;
		}
	}

	/* 4. drafts 04-06 */
	{
		struct triple t = {false, false, false, 0, 0, 0};
		uint64_t reset = 0;
		bool present = false;
		len = field_value(&ix, S_RL_LIMIT, buf, &v);
		present |= len >= 0;
		t.has_limit = sf_uint_item(v, len, true, nodes, &t.limit);
		len = field_value(&ix, S_RL_REMAINING, buf, &v);
		present |= len >= 0;
		t.has_remaining = sf_uint_item(v, len, false, nodes, &t.remaining);
		len = field_value(&ix, S_RL_RESET, buf, &v);
		present |= len >= 0;
		t.has_reset = sf_uint_item(v, len, false, nodes, &reset);
		t.reset_ns = t.has_reset ? sluice_client_reset_delay(reset, 0, now_ns) : 0;
		if (t.has_limit || t.has_remaining || t.has_reset) {
			out->seen |= SLUICE_CLIENT_DRAFT06;
			set_source(out, SLUICE_CLIENT_DRAFT06, &t);
		} else if (present) {
			out->ignored |= SLUICE_CLIENT_DRAFT06;
		}
	}

	/* 5. vendor tables */
	if (!(flags & SLUICE_CLIENT_NO_VENDOR_TABLES) &&
	    sluice__client_apply_rules(fields, n, sluice__client_vendor_rules,
				       sluice__client_vendor_name_len, sluice__client_vendor_nrules,
				       SLUICE_CLIENT_VENDOR, now_ns,
				       now_unix_ns, out, &first, &out->ignored) != 0) {
		out->seen |= SLUICE_CLIENT_VENDOR;
		source_from_dimensions(out, SLUICE_CLIENT_VENDOR, first);
	}

	/* 6. X-RateLimit-* and X-Rate-Limit-* */
	x_family(&ix, buf, nodes, now_ns, now_unix_ns, out);

	if ((len = field_value(&ix, S_RETRY_AFTER, buf, &v)) >= 0) {
		uint64_t d;
		if (sluice_client_retry_after(v, (size_t)len, now_ns, &d) == 0) {
			out->has_retry_after = true;
			out->retry_after_ns = SLUICE_MAX(out->retry_after_ns, d);
			out->seen |= SLUICE_CLIENT_RETRY_AFTER;
		} else {
			out->ignored |= SLUICE_CLIENT_RETRY_AFTER;
		}
	}
	out->reset_past = out->has_reset && out->reset_ns == 0;
	return 0;
}

int sluice_client_parse(const struct sluice_http_field *fields, size_t n, uint64_t now_unix_ns,
			struct sluice_client_limits *out)
{
	return sluice_client_parse_ex(fields, n, now_unix_ns, NULL, out);
}
