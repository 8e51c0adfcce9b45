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
#include <sluice/client.h>
#include <sluice/sf.h>

#include <string.h>

#include "common/util_internal.h"

#define NS_PER_MS 1000000ull
#define MAX_NODES 512

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
};

/* Where each known field's lines are: one pass over the response. */
struct field_index {
	const struct sluice_http_field *fields;
	size_t n;
	size_t first[S_COUNT];
	size_t count[S_COUNT];
};

static bool name_is(const struct sluice_http_field *f, int slot)
{
	const char *name = slot_names[slot].name;

	if (f->name == NULL || f->name_len != slot_names[slot].len)
		return false;
	for (size_t i = 0; i < f->name_len; i++) {
		char c = f->name[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c != name[i])
			return false;
	}
	return true;
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
 * policies are never merged. */
static struct sluice_client_policy *policy_for(struct sluice_client_limits *out,
					       const struct sluice_sf_node *name,
					       const struct sluice_sf_node *pk, bool merge)
{
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
		if (strcmp(p->name, key.name) == 0 && p->pk_len == key.pk_len &&
		    memcmp(p->pk, key.pk, key.pk_len) == 0)
			return p;
	}
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
		struct sluice_client_policy *p = policy_for(out, named ? it : NULL, pk, named);
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

static void parse_policy(const char *v, size_t len, struct sluice_client_limits *out,
			 struct sluice_sf_node *nodes)
{
	struct sluice_sf_result res;

	if (sluice_sf_parse(SLUICE_SF_KIND_LIST, v, len, nodes, MAX_NODES, &res) != 0 ||
	    res.members == 0)
		return;
	if (all_items_of(nodes, res.members, SLUICE_SF_STRING) ||
	    all_items_of(nodes, res.members, SLUICE_SF_TOKEN)) {
		if (policy_items(nodes, res.members, true, false, out)) {
			policy_items(nodes, res.members, true, true, out);
			out->seen |= SLUICE_CLIENT_DRAFT08;
		}
	} else if (all_items_of(nodes, res.members, SLUICE_SF_INTEGER)) {
		if (policy_items(nodes, res.members, false, false, out)) {
			policy_items(nodes, res.members, false, true, out);
			out->seen |= SLUICE_CLIENT_DRAFT06;
		}
	}
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
		struct sluice_client_policy *p = policy_for(out, it, sluice_sf_param(it, "pk"), true);
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

/* ---- plain numbers (X-RateLimit-*, Retry-After) -------------------------------- */

static void trim_ows(const char **s, size_t *len)
{
	while (*len > 0 && (**s == ' ' || **s == '\t')) {
		++*s;
		--*len;
	}
	while (*len > 0 && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t'))
		--*len;
}

/* 1*DIGIT [ "." 1*DIGIT ], saturating; the fraction to ns (9 digits kept).
 * Returns false on anything else. */
static bool parse_number(const char *s, size_t len, bool allow_frac, uint64_t *v, uint32_t *frac_ns)
{
	size_t i = 0;
	uint64_t x = 0;
	uint32_t f = 0, scale = 100000000;

	while (i < len && s[i] >= '0' && s[i] <= '9') {
		uint64_t d = (uint64_t)(s[i] - '0');
		x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
		i++;
	}
	if (i == 0)
		return false;
	if (i < len && allow_frac && s[i] == '.') {
		size_t start = ++i;
		while (i < len && s[i] >= '0' && s[i] <= '9') {
			f += (uint32_t)(s[i] - '0') * scale;
			scale /= 10;
			i++;
		}
		if (i == start)
			return false;
	}
	if (i != len)
		return false;
	*v = x;
	*frac_ns = f;
	return true;
}

uint64_t sluice_client_reset_delay(uint64_t v, uint32_t frac_ns, uint64_t now_unix_ns)
{
	uint64_t at_ns;

	if (v >= UINT64_C(1000000000000)) {
		at_ns = sluice__add_sat(sluice__mul_sat(v, NS_PER_MS), frac_ns / 1000u);
	} else if (v >= UINT64_C(1000000000)) {
		at_ns = sluice__add_sat(sluice__mul_sat(v, SLUICE_NS_PER_SEC), frac_ns);
	} else {
		return sluice__add_sat(sluice__mul_sat(v, SLUICE_NS_PER_SEC), frac_ns);
	}
	return at_ns > now_unix_ns ? at_ns - now_unix_ns : 0;
}

/* ---- HTTP-date ---------------------------------------------------------------- */

static const char *const day_short[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
static const char *const day_long[] = {"Monday", "Tuesday", "Wednesday", "Thursday",
				       "Friday", "Saturday", "Sunday"};
static const char *const month_name[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

struct cursor {
	const char *s;
	size_t len;
	size_t i;
};

static bool lit(struct cursor *c, const char *t)
{
	size_t n = strlen(t);
	if (c->len - c->i < n || memcmp(c->s + c->i, t, n) != 0)
		return false;
	c->i += n;
	return true;
}

static bool digits(struct cursor *c, size_t n, int *out)
{
	int v = 0;
	if (c->len - c->i < n)
		return false;
	for (size_t k = 0; k < n; k++) {
		char ch = c->s[c->i + k];
		if (ch < '0' || ch > '9')
			return false;
		v = v * 10 + (ch - '0');
	}
	c->i += n;
	*out = v;
	return true;
}

static bool month(struct cursor *c, int *m)
{
	for (int k = 0; k < 12; k++) {
		if (lit(c, month_name[k])) {
			*m = k + 1;
			return true;
		}
	}
	return false;
}

static bool time_of_day(struct cursor *c, int *h, int *mi, int *s)
{
	return digits(c, 2, h) && lit(c, ":") && digits(c, 2, mi) && lit(c, ":") && digits(c, 2, s) &&
	       *h <= 23 && *mi <= 59 && *s <= 60;
}

static bool is_leap(int64_t y)
{
	return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

static int month_days(int64_t y, int m)
{
	static const int days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	return m == 2 && is_leap(y) ? 29 : days[m - 1];
}

/* Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
 * days_from_civil). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
	y -= m <= 2;
	int64_t era = (y >= 0 ? y : y - 399) / 400;
	int64_t yoe = y - era * 400;
	int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
	z += 719468;
	int64_t era = (z >= 0 ? z : z - 146096) / 146097;
	int64_t doe = z - era * 146097;
	int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
	int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
	int64_t mp = (5 * doy + 2) / 153;
	*d = (int)(doy - (153 * mp + 2) / 5 + 1);
	*m = (int)(mp < 10 ? mp + 3 : mp - 9);
	*y = yoe + era * 400 + (*m <= 2);
}

/* RFC 9110: a two-digit year "that appears to be more than 50 years in the
 * future" is the most recent past year with those digits. */
static int64_t rfc850_year(int yy, int mo, int d, int h, int mi, int s, uint64_t now_unix_ns)
{
	int64_t now_s = (int64_t)(now_unix_ns / SLUICE_NS_PER_SEC);
	int64_t ny;
	int nm, nd;
	civil_from_days(now_s / 86400, &ny, &nm, &nd);
	int64_t tod = now_s % 86400;
	/* candidates around now, largest first; take the first not more than
	 * 50 years ahead (compared as calendar tuples) */
	int64_t base = ny - ny % 100 + yy + 100;
	for (int k = 0; k < 3; k++, base -= 100) {
		int64_t lim = ny + 50;
		bool later = base > lim ||
			     (base == lim && (mo > nm || (mo == nm && (d > nd || (d == nd &&
				h * 3600 + mi * 60 + s > tod)))));
		if (!later)
			return base;
	}
	return base;
}

int sluice_http_date_parse(const char *s, size_t len, uint64_t now_unix_ns, int64_t *unix_s)
{
	struct cursor c = {s, len, 0};
	int day = 0, mo = 0, h = 0, mi = 0, sec = 0, y4 = 0;
	int64_t year;
	size_t k;

	if (s == NULL || unix_s == NULL)
		return SLUICE_EINVAL;
	for (k = 0; k < 7; k++) {
		if (lit(&c, day_long[k]))
			break;
	}
	if (k < 7) { /* rfc850-date */
		int yy;
		if (!(lit(&c, ", ") && digits(&c, 2, &day) && lit(&c, "-") && month(&c, &mo) &&
		      lit(&c, "-") && digits(&c, 2, &yy) && lit(&c, " ") && time_of_day(&c, &h, &mi, &sec) &&
		      lit(&c, " GMT")))
			return SLUICE_ESYNTAX;
		year = rfc850_year(yy, mo, day, h, mi, sec, now_unix_ns);
	} else {
		for (k = 0; k < 7; k++) {
			if (lit(&c, day_short[k]))
				break;
		}
		if (k == 7)
			return SLUICE_ESYNTAX;
		if (lit(&c, ", ")) { /* IMF-fixdate */
			if (!(digits(&c, 2, &day) && lit(&c, " ") && month(&c, &mo) && lit(&c, " ") &&
			      digits(&c, 4, &y4) && lit(&c, " ") && time_of_day(&c, &h, &mi, &sec) &&
			      lit(&c, " GMT")))
				return SLUICE_ESYNTAX;
		} else { /* asctime-date: month SP ( 2DIGIT / ( SP 1DIGIT ) ) */
			if (!(lit(&c, " ") && month(&c, &mo) && lit(&c, " ")))
				return SLUICE_ESYNTAX;
			if (!(lit(&c, " ") ? digits(&c, 1, &day) : digits(&c, 2, &day)))
				return SLUICE_ESYNTAX;
			if (!(lit(&c, " ") && time_of_day(&c, &h, &mi, &sec) && lit(&c, " ") &&
			      digits(&c, 4, &y4)))
				return SLUICE_ESYNTAX;
		}
		year = y4;
	}
	if (c.i != len || day < 1 || day > month_days(year, mo))
		return SLUICE_ESYNTAX;
	*unix_s = days_from_civil(year, mo, day) * 86400 + h * 3600 + mi * 60 + sec;
	return 0;
}

int sluice_client_retry_after(const char *value, size_t len, uint64_t now_unix_ns, uint64_t *delay_ns)
{
	uint64_t v;
	uint32_t frac;
	int64_t at;

	if ((value == NULL && len > 0) || delay_ns == NULL)
		return SLUICE_EINVAL;
	trim_ows(&value, &len);
	if (len == 0)
		return SLUICE_ESYNTAX;
	if (parse_number(value, len, false, &v, &frac)) {
		*delay_ns = sluice__mul_sat(v, SLUICE_NS_PER_SEC);
		return 0;
	}
	if (sluice_http_date_parse(value, len, now_unix_ns, &at) != 0)
		return SLUICE_ESYNTAX;
	if (at <= 0) {
		*delay_ns = 0;
		return 0;
	}
	uint64_t at_ns = sluice__mul_sat((uint64_t)at, SLUICE_NS_PER_SEC);
	*delay_ns = at_ns > now_unix_ns ? at_ns - now_unix_ns : 0;
	return 0;
}

/* A reset field value: a number (classified by size) or an HTTP-date. */
static bool parse_reset_text(const char *s, size_t len, uint64_t now_unix_ns, uint64_t *delay_ns)
{
	uint64_t v;
	uint32_t frac;
	int64_t at;

	trim_ows(&s, &len);
	if (parse_number(s, len, true, &v, &frac)) {
		*delay_ns = sluice_client_reset_delay(v, frac, now_unix_ns);
		return true;
	}
	if (sluice_http_date_parse(s, len, now_unix_ns, &at) == 0) {
		uint64_t at_ns = at > 0 ? sluice__mul_sat((uint64_t)at, SLUICE_NS_PER_SEC) : 0;
		*delay_ns = at_ns > now_unix_ns ? at_ns - now_unix_ns : 0;
		return true;
	}
	return false;
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

int sluice_client_parse(const struct sluice_http_field *fields, size_t n, uint64_t now_unix_ns,
			struct sluice_client_limits *out)
{
	char buf[SLUICE_CLIENT_FIELD_MAX];
	struct sluice_sf_node nodes[MAX_NODES];
	struct sluice_sf_result res;
	struct field_index ix;
	const char *v = NULL;
	long len;

	if (out == NULL || (fields == NULL && n > 0))
		return SLUICE_EINVAL;
	memset(out, 0, sizeof(*out));
	index_fields(&ix, fields, n);

	/* RateLimit-Policy first, so RateLimit items join their policies */
	if ((len = field_value(&ix, S_POLICY, buf, &v)) >= 0)
		parse_policy(v, (size_t)len, out, nodes);

	if ((len = field_value(&ix, S_RATELIMIT, buf, &v)) >= 0) {
		bool list_ok = sluice_sf_parse(SLUICE_SF_KIND_LIST, v, (size_t)len, nodes, MAX_NODES,
					       &res) == 0 && res.members > 0;
		bool strings = list_ok && all_items_of(nodes, res.members, SLUICE_SF_STRING);
		bool tokens = list_ok && all_items_of(nodes, res.members, SLUICE_SF_TOKEN);
		struct draft07 d7 = {false, 0, 0, 0, false};

		if (!strings) {
			struct sluice_sf_result dres;
			if (sluice_sf_parse(SLUICE_SF_KIND_DICT, v, (size_t)len, nodes, MAX_NODES,
					    &dres) == 0)
				d7 = parse_draft07(nodes, dres.members);
			/* the Token-named List, parsed again over the dictionary */
			if (tokens && !d7.ok)
				sluice_sf_parse(SLUICE_SF_KIND_LIST, v, (size_t)len, nodes, MAX_NODES, &res);
		}
		if ((strings || (tokens && !d7.ok)) && service_items_valid(nodes, res.members)) {
			uint32_t g = UINT32_MAX;
			apply_service_items(nodes, res.members, out, &g);
			out->seen |= SLUICE_CLIENT_DRAFT08;
			out->source = SLUICE_CLIENT_DRAFT08;
			/* the governing item's policy: same name and pk, else the
			 * same name without a pk (a policy shared by partitions) */
			for (uint32_t i = 0; g != UINT32_MAX && i <= out->npolicies; i++) {
				const struct sluice_client_policy *p =
					i == 0 ? &out->policies[g] : &out->policies[i - 1];
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
					   sluice_client_reset_delay(d7.reset, 0, now_unix_ns)};
			out->seen |= SLUICE_CLIENT_DRAFT07;
			set_source(out, SLUICE_CLIENT_DRAFT07, &t);
		}
	}

	/* drafts 04-06 */
	{
		struct triple t = {false, false, false, 0, 0, 0};
		uint64_t reset = 0;
		len = field_value(&ix, S_RL_LIMIT, buf, &v);
		t.has_limit = sf_uint_item(v, len, true, nodes, &t.limit);
		len = field_value(&ix, S_RL_REMAINING, buf, &v);
		t.has_remaining = sf_uint_item(v, len, false, nodes, &t.remaining);
		len = field_value(&ix, S_RL_RESET, buf, &v);
		t.has_reset = sf_uint_item(v, len, false, nodes, &reset);
		t.reset_ns = t.has_reset ? sluice_client_reset_delay(reset, 0, now_unix_ns) : 0;
		if (t.has_limit || t.has_remaining || t.has_reset) {
			out->seen |= SLUICE_CLIENT_DRAFT06;
			set_source(out, SLUICE_CLIENT_DRAFT06, &t);
		}
	}

	/* X-RateLimit-* and X-Rate-Limit-* */
	{
		static const int slots[2][3] = {
			{S_X_LIMIT, S_X_REMAINING, S_X_RESET},
			{S_XX_LIMIT, S_XX_REMAINING, S_XX_RESET},
		};
		struct triple t = {false, false, false, 0, 0, 0};
		for (int k = 0; k < 2; k++) {
			uint64_t x;
			uint32_t frac;
			const char *p;
			size_t plen;
			if (!t.has_limit && (len = field_value(&ix, slots[k][0], buf, &v)) >= 0) {
				p = v;
				plen = (size_t)len;
				trim_ows(&p, &plen);
				if (parse_number(p, plen, false, &x, &frac)) {
					t.has_limit = true;
					t.limit = x;
				}
			}
			if (!t.has_remaining && (len = field_value(&ix, slots[k][1], buf, &v)) >= 0) {
				p = v;
				plen = (size_t)len;
				trim_ows(&p, &plen);
				if (parse_number(p, plen, true, &x, &frac)) {
					t.has_remaining = true;
					t.remaining = x;
				}
			}
			if (!t.has_reset && (len = field_value(&ix, slots[k][2], buf, &v)) >= 0)
				t.has_reset = parse_reset_text(v, (size_t)len, now_unix_ns, &t.reset_ns);
		}
		if (t.has_limit || t.has_remaining || t.has_reset) {
			out->seen |= SLUICE_CLIENT_X;
			set_source(out, SLUICE_CLIENT_X, &t);
		}
	}

	if ((len = field_value(&ix, S_RETRY_AFTER, buf, &v)) >= 0 &&
	    sluice_client_retry_after(v, (size_t)len, now_unix_ns, &out->retry_after_ns) == 0) {
		out->has_retry_after = true;
		out->seen |= SLUICE_CLIENT_RETRY_AFTER;
	}
	return 0;
}
