/*
 * parse_map.c - static maps loaded with a policy:
 *
 *   scope NAME from map "FILE" key SCOPE [rule]   NAME = map[SCOPE's identity]
 *   tier from map "FILE" key SCOPE                the tier = map[SCOPE's identity]
 *
 * A map file is one "key value" pair a line; blank lines and comments (a
 * word starting with '#' to the end of the line) are skipped; words are
 * runs of visible ASCII and bytes 0x80-0xFF, separated by spaces or tabs;
 * lines end with "\n" or "\r\n". FILE is relative to options->base_dir
 * (the policy file's directory with sluice_policy_load_file()).
 *
 * Why a map is right once loaded: every line is checked at load (a key
 * without a value, a third word, a control byte, a word over
 * SLUICE_IDENTITY_MAX bytes, a key given twice, a tier map's value that
 * names no tier), each with the file's own line and column in the message
 * and the policy's line and column of the file name in the error; so a map
 * that loads has exactly one value per key. The table is open addressing
 * with linear probing, built at load at most half full, so a lookup probes
 * a short run and stops at an empty slot: absent keys end too. The hash is
 * XXH3 with a fixed seed rather than a secret: the keys are the
 * provider's, fixed at load, and a client can only choose what to look up,
 * never what is stored, so it cannot lengthen a probe run beyond what the
 * provider's own keys make; a fixed hash keeps the table a pure function
 * of the file (reproducible, comparable).
 *
 * Memory: one temporary allocation per map (text, entries, slots; freed
 * before the load returns); the entries, slots and strings are copied into
 * the policy's one block by the layout.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include <sluice/identity.h>

#include "policy/parse_internal.h"

#define MAP_SEED UINT64_C(0x736c75696365) /* fixed: see the file comment */

uint64_t sluice__map_hash(const void *key, size_t len)
{
	return XXH3_64bits_withSeed(key, len, MAP_SEED);
}

const struct sluice__map_entry *sluice__map_lookup(const struct sluice__map_table *t, const void *key, size_t len)
{
	if (t->slots == NULL)
		return NULL;
	for (uint64_t h = sluice__map_hash(key, len);; h++) {
		uint32_t v = t->slots[h & t->mask];
		if (v == 0)
			return NULL;
		const struct sluice__map_entry *e = &t->entries[v - 1];
		if (e->key_len == len && memcmp(e->key, key, len) == 0)
			return e;
	}
}

/* "map" "FILE" "key" SCOPE (the words after "from"): records the map. */
int sluice__parse_map_source(struct parser *p, uint32_t scope, bool tier, uint32_t *map)
{
	struct builder *b = p->b;
	const struct word *w = NULL;
	char name[NAME_CAP];
	uint32_t len;
	int rc;

	if ((rc = sluice__parse_next_word(p, "a quoted map file name", &w)) != SLUICE_OK)
		return rc;
	if (!w->quoted)
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected a quoted map file name");
	if (b->nmaps == SLUICE_POLICY_MAX_MAPS)
		return sluice__parse_fail(p, SLUICE_ETOOBIG, w->col, "more than %d maps", SLUICE_POLICY_MAX_MAPS);
	struct bmap *m = &b->maps[b->nmaps];
	memset(m, 0, sizeof *m);
	if ((rc = sluice__parse_string_word(p, w, "a map file name", true, (uint8_t *)m->path,
					    SLUICE_POLICY_MAX_MAP_PATH, &len)) != SLUICE_OK)
		return rc;
	if (len == 0)
		return sluice__parse_fail(p, SLUICE_EINVAL, w->col, "an empty map file name");
	m->path[len] = '\0';
	m->line = p->line;
	m->col = w->col;
	m->tier = tier;
	if ((rc = sluice__parse_next_word(p, "'key'", &w)) != SLUICE_OK)
		return rc;
	if (!sluice__parse_word_is(w, "key"))
		return sluice__parse_fail(p, SLUICE_ESYNTAX, w->col, "expected 'key' and the scope looked up");
	if ((rc = sluice__parse_next_word(p, "the scope looked up", &w)) != SLUICE_OK)
		return rc;
	if ((rc = sluice__parse_name_word(p, w, "the scope looked up", name)) != SLUICE_OK)
		return rc;
	int k = sluice__parse_find_name(b->scopes, scope, w->s, w->len);
	if (k < 0)
		return sluice__parse_fail(p, SLUICE_ENOTFOUND, w->col,
					  "map key '%s' is not a scope declared before this line", name);
	m->key_scope = (uint32_t)k;
	*map = b->nmaps++;
	return SLUICE_OK;
}

int sluice__parse_d_tier_map(struct parser *p)
{
	struct builder *b = p->b;
	uint32_t map = 0;
	int rc;

	if (b->tier_map_plus1 != 0)
		return sluice__parse_fail(p, SLUICE_EINVAL, p->w[0].col, "second 'tier from map' (line %u)",
					  b->maps[b->tier_map_plus1 - 1].line);
	p->pos = 3; /* "tier" "from" "map" */
	if ((rc = sluice__parse_map_source(p, b->nscopes, true, &map)) != SLUICE_OK)
		return rc;
	b->tier_map_plus1 = map + 1;
	return sluice__parse_expect_end(p);
}

/* ---- the files ---- */

static bool is_map_byte(unsigned char c)
{
	return c > 0x20 && c != 0x7f;
}

/* An error in map m at its line:col, reported at the policy's line and
 * column of the file name. */
__attribute__((format(printf, 6, 7))) static int map_fail(struct parser *p, const struct bmap *m, int code,
							  uint32_t line, uint32_t col, const char *fmt, ...)
{
	char what[96];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof what, fmt, ap);
	va_end(ap);
	p->line = m->line;
	if (line == 0)
		return sluice__parse_fail(p, code, m->col, "map \"%.60s\": %s", m->path, what);
	return sluice__parse_fail(p, code, m->col, "%.60s:%u:%u: %s", m->path, line, col, what);
}

static int read_file(struct parser *p, struct bmap *m, size_t *size)
{
	char path[PATH_MAX];
	int n = m->path[0] == '/' || p->base_dir == NULL
			? snprintf(path, sizeof path, "%s", m->path)
			: snprintf(path, sizeof path, "%s/%s", p->base_dir, m->path);
	if (n < 0 || (size_t)n >= sizeof path)
		return map_fail(p, m, SLUICE_ETOOBIG, 0, 0, "path too long");
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return map_fail(p, m, SLUICE_EIO, 0, 0, "cannot open: %s", strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return map_fail(p, m, SLUICE_EIO, 0, 0, "not a regular file");
	}
	if ((uint64_t)st.st_size > SLUICE_POLICY_MAX_MAP_FILE) {
		close(fd);
		return map_fail(p, m, SLUICE_ETOOBIG, 0, 0, "longer than %u bytes", SLUICE_POLICY_MAX_MAP_FILE);
	}
	size_t len = (size_t)st.st_size;
	/* entries: at most one a line; slots: a power of two >= 2 entries */
	size_t lines = len / 2 + 1;
	if (lines > SLUICE_POLICY_MAX_MAP_ENTRIES)
		lines = SLUICE_POLICY_MAX_MAP_ENTRIES;
	uint32_t cap = 2;
	while (cap < 2 * lines)
		cap *= 2;
	size_t text = (len + 1 + 7) & ~(size_t)7;
	size_t bytes = text + lines * sizeof(struct bmap_entry) + (size_t)cap * sizeof(uint32_t);
	m->buf = p->alloc_fn(p->alloc_ctx, bytes);
	if (m->buf == NULL) {
		close(fd);
		return map_fail(p, m, SLUICE_ENOMEM, 0, 0, "out of memory (%zu bytes)", bytes);
	}
	size_t got = 0;
	while (got < len) {
		ssize_t r = read(fd, m->buf + got, len - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			close(fd);
			return map_fail(p, m, SLUICE_EIO, 0, 0, "read failed: %s", r < 0 ? strerror(errno) : "short");
		}
		got += (size_t)r;
	}
	close(fd);
	m->buf[len] = '\0';
	m->entries = (struct bmap_entry *)(void *)(m->buf + text);
	m->slots = (uint32_t *)(void *)(m->buf + text + lines * sizeof(struct bmap_entry));
	memset(m->slots, 0, (size_t)cap * sizeof(uint32_t));
	m->cap_slots = cap;
	*size = len;
	return SLUICE_OK;
}

static int tier_of(const struct builder *b, const char *s, uint32_t len)
{
	for (uint32_t t = 0; t < b->ntiers; t++)
		if (strlen(b->tiers[t].name) == len && memcmp(b->tiers[t].name, s, len) == 0)
			return (int)t;
	return -1;
}

/* Parse the text of map m into entries and slots. */
static int parse_file(struct parser *p, struct bmap *m, size_t len)
{
	const char *t = m->buf;
	uint32_t line = 0;

	for (size_t pos = 0; pos < len;) {
		line++;
		size_t end = pos;
		while (end < len && t[end] != '\n')
			end++;
		size_t stop = end > pos && t[end - 1] == '\r' ? end - 1 : end;
		uint32_t off[3], wlen[3], nw = 0;
		for (size_t i = pos; i < stop;) {
			unsigned char c = (unsigned char)t[i];
			if (c == ' ' || c == '\t') {
				i++;
				continue;
			}
			if (c == '#')
				break;
			if (!is_map_byte(c))
				return map_fail(p, m, SLUICE_ESYNTAX, line, (uint32_t)(i - pos + 1), "control byte 0x%02x",
						c);
			size_t w = i;
			while (i < stop && is_map_byte((unsigned char)t[i]))
				i++;
			if (nw == 2)
				return map_fail(p, m, SLUICE_ESYNTAX, line, (uint32_t)(w - pos + 1),
						"a third word: expected 'key value'");
			if (i - w > SLUICE_IDENTITY_MAX)
				return map_fail(p, m, SLUICE_ETOOBIG, line, (uint32_t)(w - pos + 1),
						"a word longer than %d bytes", SLUICE_IDENTITY_MAX);
			off[nw] = (uint32_t)w;
			wlen[nw++] = (uint32_t)(i - w);
		}
		if (nw == 1)
			return map_fail(p, m, SLUICE_ESYNTAX, line, (uint32_t)(off[0] + wlen[0] - pos + 1),
					"expected a value after the key");
		if (nw == 2) {
			if (m->count == SLUICE_POLICY_MAX_MAP_ENTRIES)
				return map_fail(p, m, SLUICE_ETOOBIG, line, 1, "more than %u entries",
						SLUICE_POLICY_MAX_MAP_ENTRIES);
			struct bmap_entry *e = &m->entries[m->count];
			*e = (struct bmap_entry){off[0], wlen[0], off[1], wlen[1], 0};
			if (m->tier) {
				int tier = tier_of(p->b, t + off[1], wlen[1]);
				if (tier < 0)
					return map_fail(p, m, SLUICE_ENOTFOUND, line, (uint32_t)(off[1] - pos + 1),
							"'%.*s' names no tier", (int)(wlen[1] > 32 ? 32 : wlen[1]),
							t + off[1]);
				e->aux = (uint32_t)tier;
			}
			uint32_t mask = m->cap_slots - 1;
			for (uint64_t h = sluice__map_hash(t + off[0], wlen[0]);; h++) {
				uint32_t v = m->slots[h & mask];
				if (v == 0) {
					m->slots[h & mask] = ++m->count;
					break;
				}
				const struct bmap_entry *o = &m->entries[v - 1];
				if (o->key_len == wlen[0] && memcmp(t + o->key_off, t + off[0], wlen[0]) == 0) {
					uint32_t first = 1;
					for (size_t i = 0; i < o->key_off; i++)
						first += t[i] == '\n';
					return map_fail(p, m, SLUICE_EINVAL, line, (uint32_t)(off[0] - pos + 1),
							"key '%.*s' already given on line %u",
							(int)(wlen[0] > 32 ? 32 : wlen[0]), t + off[0], first);
				}
			}
			m->str_bytes += (size_t)wlen[0] + wlen[1] + 2;
		}
		pos = end + 1;
	}
	return SLUICE_OK;
}

int sluice__parse_maps_load(struct parser *p)
{
	struct builder *b = p->b;

	for (uint32_t i = 0; i < b->nmaps; i++) {
		size_t len;
		int rc = read_file(p, &b->maps[i], &len);
		if (rc == SLUICE_OK)
			rc = parse_file(p, &b->maps[i], len);
		if (rc != SLUICE_OK)
			return rc;
	}
	return SLUICE_OK;
}

void sluice__parse_maps_free(struct parser *p)
{
	struct builder *b = p->b;

	if (b == NULL)
		return;
	for (uint32_t i = 0; i < b->nmaps; i++) {
		if (b->maps[i].buf != NULL)
			p->free_fn(p->alloc_ctx, b->maps[i].buf);
		b->maps[i].buf = NULL;
	}
}

void sluice__parse_layout_maps(const struct builder *b, struct carve *c, struct sluice_policy *pol)
{
	struct sluice_policy_map *maps =
		sluice__parse_take(c, sizeof(*maps) * b->nmaps, _Alignof(struct sluice_policy_map));

	for (uint32_t i = 0; i < b->nmaps; i++) {
		const struct bmap *m = &b->maps[i];
		const char *path = sluice__parse_take_str(c, m->path, strlen(m->path));
		struct sluice__map_entry *entries =
			sluice__parse_take(c, sizeof(*entries) * m->count, _Alignof(struct sluice__map_entry));
		uint32_t *slots = sluice__parse_take(c, sizeof(uint32_t) * m->cap_slots, _Alignof(uint32_t));
		char *str = sluice__parse_take(c, m->str_bytes, 1);
		if (maps == NULL)
			continue;
		maps[i] = (struct sluice_policy_map){path, m->count, m->key_scope, m->line};
		for (uint32_t k = 0; k < m->count; k++) {
			const struct bmap_entry *e = &m->entries[k];
			entries[k].key = str;
			entries[k].key_len = e->key_len;
			memcpy(str, m->buf + e->key_off, e->key_len);
			str[e->key_len] = '\0';
			str += e->key_len + 1;
			entries[k].value = str;
			entries[k].value_len = e->value_len;
			memcpy(str, m->buf + e->value_off, e->value_len);
			str[e->value_len] = '\0';
			str += e->value_len + 1;
			entries[k].aux = e->aux;
		}
		memcpy(slots, m->slots, sizeof(uint32_t) * m->cap_slots);
		pol->maps[i] = (struct sluice__map_table){entries, slots, m->cap_slots - 1};
	}
	if (maps == NULL)
		return;
	pol->spec.map_count = b->nmaps;
	pol->spec.maps = maps;
	pol->spec.tier_map = b->tier_map_plus1 == 0 ? UINT32_MAX : b->tier_map_plus1 - 1;
}
