/*
 * snapshot.c - a keyed limiter's state in a file: written while admissions
 * go on, checked whole before any of it is loaded (sluice/snapshot.h).
 *
 * The file (native byte order; all integers little- or big-endian as the
 * writer's, which the reader checks; layout in docs/limiter.md,
 * "Snapshots"):
 *
 *     header   "SLUICESN", u32 version, u32 nlimits, u64 byte-order mark
 *              0x0102030405060708, u64 taken_ns, then per limit u32 kind,
 *              u32 0, u64 p1, p2, p3 (the numbers that define it)
 *     entries  u32 key_len, the key, then per limit its saved words: one
 *              u64 (GCRA, counter, calendar: the cell word; slots: the
 *              number held), or for a sliding log u64 n and n u64 times
 *     trailer  u64 entry count, "SLUICEND", u64 XXH3-64 of every byte
 *              before it
 *
 * Why it never loads a bad file. The reader refuses unless the magic,
 * version, byte-order mark, trailer and checksum are right (a truncated
 * file lacks its trailer; a flipped bit fails the checksum), then parses
 * every entry to the exact end of the entries, checks that every saved
 * state is a state of its limit (by building each entry once without
 * inserting it) and that no key comes twice, and only then inserts. An
 * insertion can still fail on the key budget or memory; then every entry
 * inserted so far is removed again, so a restore loads all or nothing.
 *
 * Why a restore never over-admits beyond the snapshot interval. Each saved
 * cell state is one the cell really held at the instant it was copied
 * (one atomic word, or a validated copy of a sliding log), and on an entry
 * of several cells every admission counted in the saved cell 0 is counted
 * in every other saved cell (limiter_internal.h, sluice__limiter_visit()).
 * A limiter restored from it decides, from now_ns on, as the old one would
 * have if nothing had been admitted after those instants: so it can grant
 * again at most what was granted after the copy, which a periodic snapshot
 * bounds by its interval. Slots come back no freer than they were (see
 * limit_kind.c, slots_save()).
 */
#include <sluice/snapshot.h>

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "limiter/limit_kind_internal.h"
#include "limiter/limiter_internal.h"

static const char magic_head[8] = { 'S', 'L', 'U', 'I', 'C', 'E', 'S', 'N' };
static const char magic_tail[8] = { 'S', 'L', 'U', 'I', 'C', 'E', 'N', 'D' };
#define BYTE_ORDER_MARK UINT64_C(0x0102030405060708)
#define HEAD_BYTES 32u  /* magic, version, nlimits, mark, taken_ns */
#define LIMIT_BYTES 32u /* kind, 0, p1, p2, p3 */
#define TAIL_BYTES 24u  /* count, magic, checksum */

/* ---- info ---- */

void sluice__snap_info_reset(struct sluice_snapshot_info *info)
{
	if (info == NULL || info->size < sizeof *info)
		return;
	memset(info, 0, sizeof *info);
	info->size = sizeof *info;
}

static bool info_ok(const struct sluice_snapshot_info *info)
{
	return info != NULL && info->size >= sizeof *info;
}

int sluice__snap_fail(struct sluice_snapshot_info *info, int rc, const char *fmt, ...)
{
	if (info_ok(info)) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(info->message, sizeof info->message, fmt, ap);
		va_end(ap);
	}
	return rc;
}

static int fail_errno(struct sluice_snapshot_info *info, const char *call, const char *path)
{
	int e = errno;
	if (info_ok(info))
		info->sys_errno = e;
	return sluice__snap_fail(info, SLUICE_EIO, "%s(%s): %s", call, path, strerror(e));
}

/* ---- policy identity ---- */

/* The numbers that define a limit (those its config_init takes). */
static void identity(const struct sluice_limit *l, uint64_t p[3])
{
	p[0] = p[1] = p[2] = 0;
	switch (l->kind) {
	case SLUICE_LIMIT_GCRA:
		p[0] = l->rate.limit, p[1] = l->rate.period_ns, p[2] = l->rate.burst;
		break;
	case SLUICE_LIMIT_SLIDING_LOG:
		p[0] = l->log.limit, p[1] = l->log.window_ns;
		break;
	case SLUICE_LIMIT_SLIDING_COUNTER:
		p[0] = l->counter.limit, p[1] = l->counter.window_ns;
		break;
	case SLUICE_LIMIT_CALENDAR:
		p[0] = l->calendar.limit, p[1] = l->calendar.window_ns;
		break;
	case SLUICE_LIMIT_SLOTS:
		p[0] = l->slots.slots, p[1] = l->slots.lease_ttl_ns, p[2] = l->slots.retry_after_ns;
		break;
	default:
		break;
	}
}

/* ---- writing ---- */

void sluice__snap_put(struct sluice__snap_buf *b, const void *src, size_t n)
{
	if (b->oom)
		return;
	if (b->cap - b->len < n) {
		size_t cap = b->cap != 0 ? b->cap : 1u << 16;
		while (cap - b->len < n)
			cap *= 2;
		unsigned char *p = realloc(b->p, cap);
		if (p == NULL) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, src, n);
	b->len += n;
}

void sluice__snap_seal(struct sluice__snap_buf *b, size_t start, uint64_t count)
{
	sluice__snap_put(b, &count, sizeof count);
	sluice__snap_put(b, magic_tail, sizeof magic_tail);
	uint64_t sum = b->oom ? 0 : XXH3_64bits(b->p + start, b->len - start);
	sluice__snap_put(b, &sum, sizeof sum);
}

int sluice__snap_unseal(const unsigned char *p, size_t len, uint64_t *count,
			struct sluice_snapshot_info *info)
{
	uint64_t stored;

	if (len < TAIL_BYTES || memcmp(p + len - 16, magic_tail, 8) != 0)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "truncated or corrupt: %zu bytes, no trailer", len);
	memcpy(&stored, p + len - 8, 8);
	if (XXH3_64bits(p, len - 8) != stored)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "checksum mismatch");
	memcpy(count, p + len - TAIL_BYTES, 8);
	return SLUICE_OK;
}

struct out {
	struct sluice__snap_buf *b;
	uint64_t entries;
	size_t nlimits;
};

static void put(struct out *o, const void *src, size_t n) { sluice__snap_put(o->b, src, n); }
static void put32(struct out *o, uint32_t v) { put(o, &v, sizeof v); }
static void put64(struct out *o, uint64_t v) { put(o, &v, sizeof v); }

static int put_entry(void *user, const void *key, size_t key_len, const uint64_t *words,
		     const size_t *nwords)
{
	struct out *o = user;
	size_t total = 0;

	put32(o, (uint32_t)key_len);
	put(o, key, key_len);
	for (size_t u = 0; u < o->nlimits; u++)
		total += nwords[u];
	put(o, words, total * sizeof *words);
	o->entries++;
	return o->b->oom ? SLUICE_ENOMEM : 0;
}

int sluice__limiter_snapshot_append(struct sluice_limiter *lim, uint64_t now_ns,
				    struct sluice__snap_buf *b, struct sluice_snapshot_info *info)
{
	struct sluice_limit pol[SLUICE_LIMITER_MAX_LIMITS];
	struct out o = { .b = b };
	size_t start = b->len;

	size_t n = sluice__limiter_policy(lim, pol);
	o.nlimits = n;
	put(&o, magic_head, sizeof magic_head);
	put32(&o, SLUICE_SNAPSHOT_VERSION);
	put32(&o, (uint32_t)n);
	put64(&o, BYTE_ORDER_MARK);
	put64(&o, now_ns);
	for (size_t i = 0; i < n; i++) {
		uint64_t p[3];
		identity(&pol[i], p);
		put32(&o, pol[i].kind);
		put32(&o, 0);
		put(&o, p, sizeof p);
	}
	if (b->oom)
		return sluice__snap_fail(info, SLUICE_ENOMEM, "out of memory");
	int rc = sluice__limiter_visit(lim, now_ns, put_entry, &o);
	if (rc == SLUICE_OK) {
		sluice__snap_seal(b, start, o.entries);
		if (b->oom)
			rc = SLUICE_ENOMEM;
	}
	if (rc != SLUICE_OK)
		return sluice__snap_fail(info, rc, "%s", sluice_strerror(rc));
	if (info_ok(info)) {
		info->taken_ns = now_ns;
		info->entries = o.entries;
		info->bytes = b->len - start;
	}
	return SLUICE_OK;
}

int sluice_limiter_snapshot_mem(struct sluice_limiter *lim, uint64_t now_ns, void **buf, size_t *len,
				struct sluice_snapshot_info *info)
{
	struct sluice__snap_buf b = { 0 };

	sluice__snap_info_reset(info);
	if (lim == NULL || buf == NULL || len == NULL)
		return sluice__snap_fail(info, SLUICE_EINVAL, "NULL argument");
	*buf = NULL;
	*len = 0;
	int rc = sluice__limiter_snapshot_append(lim, now_ns, &b, info);
	if (rc != SLUICE_OK) {
		free(b.p);
		return rc;
	}
	*buf = b.p;
	*len = b.len;
	return SLUICE_OK;
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* The directory part of path ("." if none) into dir. */
static void dir_of(const char *path, char *dir, size_t cap)
{
	const char *slash = strrchr(path, '/');
	if (slash == NULL) {
		snprintf(dir, cap, ".");
		return;
	}
	size_t n = slash == path ? 1 : (size_t)(slash - path);
	snprintf(dir, cap, "%.*s", (int)n, path);
}

int sluice__snap_write_file(const char *path, const void *buf, size_t len,
			    struct sluice_snapshot_info *info)
{
	int rc = SLUICE_OK;
	size_t plen = strlen(path);
	char *tmp = malloc(plen + 5);
	char *dir = malloc(plen + 2);
	if (tmp == NULL || dir == NULL) {
		free(tmp);
		free(dir);
		return sluice__snap_fail(info, SLUICE_ENOMEM, "out of memory");
	}
	memcpy(tmp, path, plen);
	memcpy(tmp + plen, ".tmp", 5);
	dir_of(path, dir, plen + 2);

	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = fail_errno(info, "open", tmp);
	} else if (write_all(fd, buf, len) != 0) {
		rc = fail_errno(info, "write", tmp);
	} else if (fsync(fd) != 0) {
		rc = fail_errno(info, "fsync", tmp);
	}
	if (fd >= 0 && close(fd) != 0 && rc == SLUICE_OK)
		rc = fail_errno(info, "close", tmp);
	if (rc == SLUICE_OK && rename(tmp, path) != 0)
		rc = fail_errno(info, "rename", tmp);
	if (rc != SLUICE_OK) {
		if (fd >= 0)
			(void)unlink(tmp);
	} else {
		/* The rename is durable once the directory is. */
		int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd < 0)
			rc = fail_errno(info, "open", dir);
		else {
			if (fsync(dfd) != 0)
				rc = fail_errno(info, "fsync", dir);
			close(dfd);
		}
	}
	free(tmp);
	free(dir);
	return rc;
}

int sluice_limiter_snapshot(struct sluice_limiter *lim, const char *path, uint64_t now_ns,
			    struct sluice_snapshot_info *info)
{
	void *buf;
	size_t len;

	sluice__snap_info_reset(info);
	if (lim == NULL || path == NULL)
		return sluice__snap_fail(info, SLUICE_EINVAL, "NULL argument");
	int rc = sluice_limiter_snapshot_mem(lim, now_ns, &buf, &len, info);
	if (rc != SLUICE_OK)
		return rc;
	rc = sluice__snap_write_file(path, buf, len, info);
	free(buf);
	return rc;
}

/* ---- reading ---- */

struct file_limit {
	uint32_t kind;
	uint64_t p[3];
	int32_t match; /* the limiter's limit index, -1: dropped */
};

struct reader {
	const unsigned char *p;
	size_t len;          /* bytes before the trailer */
	size_t at;
	uint32_t nfile;
	struct file_limit fl[SLUICE_LIMITER_MAX_LIMITS];
	size_t nlim;          /* the limiter's limits */
	uint64_t taken_ns;
	uint64_t entries;
};

static bool take(struct reader *r, void *dst, size_t n)
{
	if (r->len - r->at < n)
		return false;
	memcpy(dst, r->p + r->at, n);
	r->at += n;
	return true;
}

/* Header and trailer, checksum included; fills r. */
static int read_frame(struct reader *r, const unsigned char *p, size_t len,
		      const struct sluice_limit *pol, size_t nlim, struct sluice_snapshot_info *info)
{
	char m[8];
	uint32_t version, nfile;
	uint64_t mark;

	if (len < HEAD_BYTES + TAIL_BYTES)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "truncated: %zu bytes, shorter than a header and trailer", len);
	memcpy(m, p, 8);
	if (memcmp(m, magic_head, 8) != 0)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "not a sluice snapshot (bad magic)");
	memcpy(&version, p + 8, 4);
	memcpy(&nfile, p + 12, 4);
	memcpy(&mark, p + 16, 8);
	if (mark != BYTE_ORDER_MARK)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "written with another byte order or word size");
	if (version != SLUICE_SNAPSHOT_VERSION)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "format version %u, this build reads %u", version,
			    (unsigned)SLUICE_SNAPSHOT_VERSION);
	uint64_t entries = 0;
	int rc = sluice__snap_unseal(p, len, &entries, info);
	if (rc != SLUICE_OK)
		return rc;
	if (nfile == 0 || nfile > SLUICE_LIMITER_MAX_LIMITS)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "%u limits", nfile);

	memset(r, 0, sizeof *r);
	r->p = p;
	r->len = len - TAIL_BYTES;
	r->at = 24;
	r->nfile = nfile;
	r->nlim = nlim;
	r->entries = entries;
	if (!take(r, &r->taken_ns, 8))
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "truncated header");
	bool used[SLUICE_LIMITER_MAX_LIMITS] = { false };
	for (uint32_t j = 0; j < nfile; j++) {
		struct file_limit *f = &r->fl[j];
		uint32_t zero;
		if (!take(r, &f->kind, 4) || !take(r, &zero, 4) || !take(r, f->p, sizeof f->p))
			return sluice__snap_fail(info, SLUICE_ECORRUPT, "truncated header");
		if (zero != 0 || f->kind < SLUICE_LIMIT_GCRA || f->kind > SLUICE_LIMIT_SLOTS)
			return sluice__snap_fail(info, SLUICE_ECORRUPT, "limit %u: unknown kind %u", j, f->kind);
		/* Same kind and numbers: the hot-reload rule. Each of the
		 * limiter's limits takes at most one of the file's. */
		f->match = -1;
		for (size_t i = 0; i < nlim; i++) {
			uint64_t q[3];
			identity(&pol[i], q);
			if (!used[i] && pol[i].kind == f->kind && memcmp(q, f->p, sizeof q) == 0) {
				f->match = (int32_t)i;
				used[i] = true;
				break;
			}
		}
	}
	if (r->entries > (r->len - r->at) / 4)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "entry count %llu exceeds the file",
			    (unsigned long long)r->entries);
	return SLUICE_OK;
}

/* One entry's key and the words of each matched limit (copied into the
 * aligned words[], at most `cap`). Returns 0 or SLUICE_ECORRUPT. */
struct parsed {
	const unsigned char *key;
	uint32_t key_len;
	const uint64_t *w[SLUICE_LIMITER_MAX_LIMITS];
	size_t n[SLUICE_LIMITER_MAX_LIMITS];
};

static int read_entry(struct reader *r, struct parsed *e, uint64_t *words, size_t cap,
		      struct sluice_snapshot_info *info, uint64_t index)
{
	size_t used = 0;

	if (!take(r, &e->key_len, 4) || e->key_len > SLUICE_LIMITER_MAX_KEY ||
	    r->len - r->at < e->key_len)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "entry %llu: bad key", (unsigned long long)index);
	e->key = r->p + r->at;
	r->at += e->key_len;
	for (size_t i = 0; i < r->nlim; i++) {
		e->w[i] = NULL;
		e->n[i] = 0;
	}
	for (uint32_t j = 0; j < r->nfile; j++) {
		const struct file_limit *f = &r->fl[j];
		uint64_t n = 1;
		if (f->kind == SLUICE_LIMIT_SLIDING_LOG) {
			size_t at = r->at;
			if (!take(r, &n, 8) || n > f->p[0])
				return sluice__snap_fail(info, SLUICE_ECORRUPT, "entry %llu: bad log",
					    (unsigned long long)index);
			r->at = at;
			n += 1;
		}
		if ((r->len - r->at) / 8 < n)
			return sluice__snap_fail(info, SLUICE_ECORRUPT, "entry %llu: truncated",
				    (unsigned long long)index);
		if (f->match >= 0) {
			if (cap - used < n)
				return sluice__snap_fail(info, SLUICE_ECORRUPT, "entry %llu: too many words",
					    (unsigned long long)index);
			memcpy(words + used, r->p + r->at, (size_t)n * 8);
			e->w[f->match] = words + used;
			e->n[f->match] = (size_t)n;
			used += (size_t)n;
		}
		r->at += (size_t)n * 8;
	}
	return SLUICE_OK;
}

struct key_ref {
	uint64_t hash;
	const unsigned char *key;
	uint32_t len;
};

static int cmp_key_ref(const void *a, const void *b)
{
	const struct key_ref *x = a, *y = b;
	if (x->hash != y->hash)
		return x->hash < y->hash ? -1 : 1;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(x->key, y->key, x->len);
}

/* One pass over the entries: dry (check everything, insert nothing) or
 * not (insert). */
static int load_pass(struct sluice_limiter *lim, struct reader *r, uint64_t *words, size_t cap,
		     uint64_t now_ns, bool dry, struct key_ref *keys,
		     struct sluice_snapshot_info *info)
{
	struct parsed e;
	uint64_t loaded = 0, idle = 0;

	r->at = HEAD_BYTES + (size_t)r->nfile * LIMIT_BYTES;
	for (uint64_t i = 0; i < r->entries; i++) {
		int rc = read_entry(r, &e, words, cap, info, i);
		if (rc != SLUICE_OK)
			return rc;
		if (keys != NULL)
			keys[i] = (struct key_ref){ XXH3_64bits(e.key, e.key_len), e.key, e.key_len };
		rc = sluice__limiter_restore_entry(lim, e.key, e.key_len,
						   (const uint64_t *const *)e.w, e.n, r->taken_ns,
						   now_ns, dry);
		if (rc == SLUICE_ECORRUPT)
			return sluice__snap_fail(info, rc, "entry %llu: a saved state no limit can hold",
				    (unsigned long long)i);
		if (rc == SLUICE_ESTATE)
			return sluice__snap_fail(info, SLUICE_ECORRUPT, "entry %llu: key repeated",
				    (unsigned long long)i);
		if (rc < 0)
			return sluice__snap_fail(info, rc, "entry %llu: %s", (unsigned long long)i,
				    sluice_strerror(rc));
		if (rc == 1)
			loaded++;
		else
			idle++;
	}
	if (r->at != r->len)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "%zu bytes after the last entry", r->len - r->at);
	if (info_ok(info)) {
		info->loaded = dry ? 0 : loaded;
		info->skipped_idle = idle;
	}
	return SLUICE_OK;
}

int sluice_limiter_restore_mem(struct sluice_limiter *lim, const void *buf, size_t len,
			       uint64_t now_ns, struct sluice_snapshot_info *info)
{
	struct sluice_limit pol[SLUICE_LIMITER_MAX_LIMITS];
	struct reader r;

	sluice__snap_info_reset(info);
	if (lim == NULL || (buf == NULL && len != 0))
		return sluice__snap_fail(info, SLUICE_EINVAL, "NULL argument");
	int rc = sluice__limiter_restore_begin(lim);
	if (rc != SLUICE_OK)
		return sluice__snap_fail(info, rc, "%s", rc == SLUICE_ESTATE ? "the limiter already has entries"
							       : sluice_strerror(rc));
	size_t nlim = sluice__limiter_policy(lim, pol);
	rc = read_frame(&r, buf, len, pol, nlim, info);
	if (rc != SLUICE_OK)
		return rc;
	if (info_ok(info)) {
		info->taken_ns = r.taken_ns;
		info->entries = r.entries;
		info->bytes = len;
		for (uint32_t j = 0; j < r.nfile; j++) {
			if (r.fl[j].match >= 0)
				info->limits_kept++;
			else
				info->limits_dropped++;
		}
	}
	if (now_ns < r.taken_ns)
		return sluice__snap_fail(info, SLUICE_ERANGE, "now_ns %llu is earlier than the snapshot's %llu",
			    (unsigned long long)now_ns, (unsigned long long)r.taken_ns);

	size_t cap = 0;
	for (size_t i = 0; i < nlim; i++)
		cap += sluice__limit_saved_max(&pol[i]);
	uint64_t *words = malloc(cap * sizeof *words);
	struct key_ref *keys = malloc((r.entries != 0 ? r.entries : 1) * sizeof *keys);
	if (words == NULL || keys == NULL) {
		free(words);
		free(keys);
		return sluice__snap_fail(info, SLUICE_ENOMEM, "out of memory");
	}
	/* Pass 1 checks everything and inserts nothing. */
	rc = load_pass(lim, &r, words, cap, now_ns, true, keys, info);
	if (rc == SLUICE_OK) {
		qsort(keys, r.entries, sizeof *keys, cmp_key_ref);
		for (uint64_t i = 1; i < r.entries; i++)
			if (cmp_key_ref(&keys[i - 1], &keys[i]) == 0) {
				rc = sluice__snap_fail(info, SLUICE_ECORRUPT, "a key repeated");
				break;
			}
	}
	free(keys);
	/* Pass 2 inserts; a failure now (budget, memory) undoes it all. */
	if (rc == SLUICE_OK) {
		rc = load_pass(lim, &r, words, cap, now_ns, false, NULL, info);
		if (rc != SLUICE_OK) {
			sluice__limiter_clear(lim);
			if (info_ok(info))
				info->loaded = 0;
		}
	}
	free(words);
	return rc;
}

int sluice__snap_read_file(const char *path, unsigned char **out, size_t *out_len,
			   struct sluice_snapshot_info *info)
{
	struct stat st;

	*out = NULL;
	*out_len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT)
			return sluice__snap_fail(info, SLUICE_ENOTFOUND, "no snapshot at %s", path);
		return fail_errno(info, "open", path);
	}
	if (fstat(fd, &st) != 0) {
		int rc = fail_errno(info, "fstat", path);
		close(fd);
		return rc;
	}
	size_t len = (size_t)st.st_size;
	unsigned char *buf = malloc(len != 0 ? len : 1);
	if (buf == NULL) {
		close(fd);
		return sluice__snap_fail(info, SLUICE_ENOMEM, "out of memory");
	}
	size_t got = 0;
	while (got < len) {
		ssize_t n = read(fd, buf + got, len - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int rc = fail_errno(info, "read", path);
			close(fd);
			free(buf);
			return rc;
		}
		if (n == 0)
			break; /* shrank meanwhile: judged as truncated */
		got += (size_t)n;
	}
	close(fd);
	*out = buf;
	*out_len = got;
	return SLUICE_OK;
}

int sluice_limiter_restore(struct sluice_limiter *lim, const char *path, uint64_t now_ns,
			   struct sluice_snapshot_info *info)
{
	unsigned char *buf;
	size_t len;

	sluice__snap_info_reset(info);
	if (lim == NULL || path == NULL)
		return sluice__snap_fail(info, SLUICE_EINVAL, "NULL argument");
	int rc = sluice__snap_read_file(path, &buf, &len, info);
	if (rc != SLUICE_OK)
		return rc;
	rc = sluice_limiter_restore_mem(lim, buf, len, now_ns, info);
	free(buf);
	return rc;
}
