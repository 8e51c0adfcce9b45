/*
 * parse_identity.c - the identity directives of the policy parser:
 *
 *   scope NAME [from SOURCE] [required | optional | fallback SCOPE]
 *   trusted-proxies CIDR { CIDR }
 *
 * SOURCE is "authorization SCHEME", "header NAME", "cookie NAME", "query
 * NAME", "peer", "forwarded-for" or "map \"FILE\" key SCOPE" (the maps:
 * parse_map.c) (docs/policy.md, "Identities").
 *
 * Why the checks are where they are. A fallback may name a scope declared
 * later, so fallbacks are resolved once the whole text is read
 * (sluice__parse_identity_finish): an unknown name is ENOTFOUND at the
 * fallback word, and a chain that comes back to a scope it left (a -> b ->
 * a, or a -> a) is refused at the fallback word of the first scope of the
 * cycle in declaration order. Each scope has at most one fallback, so a
 * chain either ends at a scope that is not FALLBACK or revisits a scope
 * within SLUICE_POLICY_MAX_SCOPES steps; walking that many steps from every
 * scope finds every cycle. With no cycle, the engine's planner can follow
 * any chain to its end in at most SLUICE_POLICY_MAX_SCOPES - 1 steps.
 *
 * A scope that declares no source gets the example server's historical
 * default here, once, so that every reader of the policy (the server, the
 * nginx module, an embedder through sluice_identity_extract()) resolves it
 * the same way: "token" from "authorization Bearer", "ip" from the peer,
 * any other "foo_bar" from header "X-Foo-Bar".
 */
#include <string.h>

#include <sluice/identity.h>

#include "policy/parse_internal.h"

/* RFC 9110 tchar: the bytes of a field name, a cookie name, a scheme. */
static bool is_tchar(char c)
{
	return is_alpha(c) || is_digit(c) || (c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* A query parameter name: visible ASCII but the query's own delimiters. */
static bool is_qchar(char c)
{
	return c > 0x20 && c < 0x7f && c != '&' && c != '=' && c != '#' && c != '"';
}

static int source_name(struct parser *p, struct bscope_rule *r, const char *what, bool (*ok)(char))
{
	const struct word *w = NULL;
	int rc = sluice__parse_next_word(p, what, &w);

	if (rc != SLUICE_OK)
		return rc;
	if (w->quoted)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected %s, not a quoted string", what);
	if (w->len > SLUICE_POLICY_MAX_SOURCE_NAME)
		return sluice__parse_fail(p, SLUICE_ETOOBIG, w->col, "%s longer than %d bytes", what,
					  SLUICE_POLICY_MAX_SOURCE_NAME);
	for (uint32_t i = 0; i < w->len; i++)
		if (!ok(w->s[i]))
			return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col + i, "byte '%c' is not allowed in %s",
						  w->s[i], what);
	memcpy(r->name, w->s, w->len);
	r->name[w->len] = '\0';
	r->name_len = w->len;
	return SLUICE_OK;
}

static int source(struct parser *p, struct bscope_rule *r)
{
	const struct word *w = NULL;
	char buf[32];
	int rc = sluice__parse_next_word(p, "an identity source", &w);

	if (rc != SLUICE_OK)
		return rc;
	r->source_declared = true;
	if (sluice__parse_word_is(w, "authorization")) {
		r->source = SLUICE_POLICY_SOURCE_AUTHORIZATION;
		return source_name(p, r, "an authorization scheme", is_tchar);
	}
	if (sluice__parse_word_is(w, "header")) {
		r->source = SLUICE_POLICY_SOURCE_HEADER;
		return source_name(p, r, "a header name", is_tchar);
	}
	if (sluice__parse_word_is(w, "cookie")) {
		r->source = SLUICE_POLICY_SOURCE_COOKIE;
		return source_name(p, r, "a cookie name", is_tchar);
	}
	if (sluice__parse_word_is(w, "query")) {
		r->source = SLUICE_POLICY_SOURCE_QUERY;
		return source_name(p, r, "a query parameter name", is_qchar);
	}
	if (sluice__parse_word_is(w, "peer")) {
		r->source = SLUICE_POLICY_SOURCE_PEER;
		return SLUICE_OK;
	}
	if (sluice__parse_word_is(w, "forwarded-for")) {
		r->source = SLUICE_POLICY_SOURCE_FORWARDED_FOR;
		return SLUICE_OK;
	}
	if (sluice__parse_word_is(w, "map")) {
		r->source = SLUICE_POLICY_SOURCE_MAP;
		return sluice__parse_map_source(p, p->b->nscopes, false, &r->map);
	}
	return sluice__parse_fail(
		p, SLUICE_ESYNTAX, w->col,
		"unknown identity source '%s': expected authorization, header, cookie, query, peer, forwarded-for or map",
		sluice__parse_show(w, buf));
}

static int rule(struct parser *p, struct bscope_rule *r)
{
	const struct word *w = &p->w[p->pos++];
	char buf[32];
	int rc;

	r->rule_declared = true;
	if (sluice__parse_word_is(w, "required")) {
		r->rule = SLUICE_POLICY_IDENTITY_REQUIRED;
	} else if (sluice__parse_word_is(w, "optional")) {
		r->rule = SLUICE_POLICY_IDENTITY_OPTIONAL;
	} else if (sluice__parse_word_is(w, "fallback")) {
		r->rule = SLUICE_POLICY_IDENTITY_FALLBACK;
		if ((rc = sluice__parse_next_word(p, "the scope to fall back to", &w)) != SLUICE_OK)
			return rc;
		if ((rc = sluice__parse_name_word(p, w, "the scope to fall back to", r->fallback_name)) != SLUICE_OK)
			return rc;
		r->fallback_col = w->col;
	} else {
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col,
					  "unexpected '%s': expected from, required, optional or fallback",
					  sluice__parse_show(w, buf));
	}
	return sluice__parse_expect_end(p);
}

int sluice__parse_d_scope(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char name[NAME_CAP];
	int rc;

	if ((rc = sluice__parse_next_word(p, "a scope name", &w)) != SLUICE_OK)
		return rc;
	if ((rc = sluice__parse_name_word(p, w, "a scope name", name)) != SLUICE_OK)
		return rc;
	if (strcmp(name, "class") == 0)
		return sluice__parse_fail(p, SLUICE_EINVAL, w->col,
					  "'class' is reserved (it names the endpoint class in 'per')");
	if (sluice__parse_find_name(b->scopes, b->nscopes, w->s, w->len) >= 0)
		return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "scope '%s' already declared", name);
	if (b->nscopes == SLUICE_POLICY_MAX_SCOPES)
		return sluice__parse_fail(p, SLUICE_ETOOBIG, w->col, "more than %d scopes", SLUICE_POLICY_MAX_SCOPES);
	struct bscope_rule *r = &b->rules[b->nscopes];
	memset(r, 0, sizeof *r);
	r->line = p->line;
	if (p->pos < p->nw && sluice__parse_word_is(&p->w[p->pos], "from")) {
		p->pos++;
		if ((rc = source(p, r)) != SLUICE_OK)
			return rc;
	}
	if (p->pos < p->nw && (rc = rule(p, r)) != SLUICE_OK)
		return rc;
	memcpy(b->scopes[b->nscopes++], name, NAME_CAP);
	return SLUICE_OK;
}

/* One CIDR word: an IPv4 or IPv6 address, optionally "/prefix"; the bits
 * past the prefix must be zero (a typo there would trust the wrong block). */
static int cidr_word(struct parser *p, const struct word *w, struct sluice_policy_cidr *out)
{
	size_t at = 0;
	uint32_t n = 0;

	while (n < w->len && w->s[n] != '/')
		n++;
	if (w->quoted || n == 0)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected an address or address/prefix");
	int rc = sluice_identity_cidr_parse(w->s, w->len, out, &at);
	uint32_t col = w->col + (uint32_t)at;
	unsigned bits = out->family == 4 ? 32 : 128;
	switch (rc) {
	case SLUICE_OK:
		return SLUICE_OK;
	case SLUICE_ERANGE:
		return sluice__parse_fail(p, rc, col, "a prefix length of an IPv%u address is 0..%u",
					  out->family == 4 ? 4u : 6u, bits);
	case SLUICE_EINVAL:
		return sluice__parse_fail(p, rc, col, "'%.*s' has bits set past its /%u prefix", (int)w->len, w->s,
					  out->prefix);
	default:
		if (at > 0)
			return sluice__parse_fail(p, rc, col, "expected a prefix length (0..%u)", bits);
		return sluice__parse_fail(p, rc, col, "'%.*s' is not an IPv4 or IPv6 address", (int)n, w->s);
	}
}

int sluice__parse_d_trusted_proxies(struct parser *p)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	int rc;

	if (b->proxies_line != 0)
		return sluice__parse_fail(p, SLUICE_EINVAL, p->w[0].col, "second 'trusted-proxies' (line %u)",
					  b->proxies_line);
	b->proxies_line = p->line;
	if ((rc = sluice__parse_next_word(p, "an address or address/prefix", &w)) != SLUICE_OK)
		return rc;
	p->pos--;
	while (p->pos < p->nw) {
		w = &p->w[p->pos++];
		if (b->nproxies == SLUICE_POLICY_MAX_PROXIES)
			return sluice__parse_fail(p, SLUICE_ETOOBIG, w->col, "more than %d trusted proxies",
						  SLUICE_POLICY_MAX_PROXIES);
		if ((rc = cidr_word(p, w, &b->proxies[b->nproxies])) != SLUICE_OK)
			return rc;
		b->nproxies++;
	}
	return SLUICE_OK;
}

/* The source of a scope that declares none (see the file comment). */
static void default_source(const char *scope, struct bscope_rule *r)
{
	if (strcmp(scope, "token") == 0) {
		r->source = SLUICE_POLICY_SOURCE_AUTHORIZATION;
		strcpy(r->name, "Bearer");
	} else if (strcmp(scope, "ip") == 0) {
		r->source = SLUICE_POLICY_SOURCE_PEER;
		r->name[0] = '\0';
	} else {
		/* "foo_bar" -> "X-Foo-Bar" (field names compare case-insensitively) */
		size_t k = 0;
		r->source = SLUICE_POLICY_SOURCE_HEADER;
		r->name[k++] = 'X';
		r->name[k++] = '-';
		for (size_t i = 0; scope[i] != '\0' && k < sizeof r->name - 1; i++)
			r->name[k++] = scope[i] == '_' ? '-' : scope[i];
		r->name[k] = '\0';
	}
	r->name_len = (uint32_t)strlen(r->name);
}

int sluice__parse_identity_finish(struct parser *p)
{
	struct builder *b = p->b;

	for (uint32_t s = 0; s < b->nscopes; s++) {
		struct bscope_rule *r = &b->rules[s];
		if (!r->source_declared)
			default_source(b->scopes[s], r);
		if (r->rule != SLUICE_POLICY_IDENTITY_FALLBACK)
			continue;
		int f = sluice__parse_find_name(b->scopes, b->nscopes, r->fallback_name,
						(uint32_t)strlen(r->fallback_name));
		p->line = r->line;
		if (f < 0)
			return sluice__parse_fail(p, SLUICE_ENOTFOUND, r->fallback_col,
						  "scope '%s' falls back to undeclared scope '%s'", b->scopes[s],
						  r->fallback_name);
		r->fallback = (uint32_t)f;
	}
	for (uint32_t s = 0; s < b->nscopes; s++) {
		uint32_t at = s;
		for (uint32_t step = 0; step < b->nscopes; step++) {
			if (b->rules[at].rule != SLUICE_POLICY_IDENTITY_FALLBACK)
				break;
			at = b->rules[at].fallback;
			if (at == s) {
				p->line = b->rules[s].line;
				return sluice__parse_fail(p, SLUICE_EINVAL, b->rules[s].fallback_col,
							  "fallback cycle: scope '%s' falls back to itself through '%s'",
							  b->scopes[s], b->rules[s].fallback_name);
			}
		}
	}
	return sluice__parse_maps_load(p);
}

void sluice__parse_layout_identity(const struct builder *b, struct carve *c, struct sluice_policy *pol)
{
	struct sluice_policy_scope_rule *rules =
		sluice__parse_take(c, sizeof(*rules) * b->nscopes, _Alignof(struct sluice_policy_scope_rule));
	struct sluice_policy_cidr *proxies =
		sluice__parse_take(c, sizeof(*proxies) * b->nproxies, _Alignof(struct sluice_policy_cidr));

	for (uint32_t s = 0; s < b->nscopes; s++) {
		const struct bscope_rule *r = &b->rules[s];
		const char *name = sluice__parse_take_str(c, r->name, r->name_len);
		if (rules == NULL)
			continue;
		rules[s] = (struct sluice_policy_scope_rule){
			.rule = r->rule,
			.source = r->source,
			.rule_declared = r->rule_declared,
			.source_declared = r->source_declared,
			.fallback = r->rule == SLUICE_POLICY_IDENTITY_FALLBACK ? r->fallback : s,
			.map = r->source == SLUICE_POLICY_SOURCE_MAP ? r->map : UINT32_MAX,
			.map_key = r->source == SLUICE_POLICY_SOURCE_MAP ? b->maps[r->map].key_scope : UINT32_MAX,
			.name = name,
			.name_len = r->name_len,
			.line = r->line,
		};
	}
	if (proxies != NULL)
		memcpy(proxies, b->proxies, sizeof(*proxies) * b->nproxies);
	sluice__parse_layout_maps(b, c, pol);
	if (c->base == NULL)
		return;
	pol->spec.scope_rules = rules;
	pol->spec.proxy_count = b->nproxies;
	pol->spec.proxies = proxies;
}
