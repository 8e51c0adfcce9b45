/*
 * engine_snapshot.c - an engine's per-key state in one file, so that a
 * restart does not hand every key a fresh allowance (sluice/engine.h,
 * "State file"; docs/policy.md, "Engine snapshots").
 *
 * The file is a container of keyed-limiter snapshots, one per in-process
 * binding, each tagged with the binding's identity; the limiter layer
 * writes each one, seals the container with the same trailer and checksum
 * and writes the file with the same atomic writer (src/limiter/snapshot.c:
 * one format writer, one file writer):
 *
 *     header   "SLUICEEN", u32 version, u32 binding count, u64 byte-order
 *              mark 0x0102030405060708, u64 taken_ns
 *     binding  u8 is_override, u8 policy kind, u8 per_class, u8 0,
 *              u32 scope_mask, u32 name_len, u32 tier_len, the name and
 *              tier bytes, u64 count, burst, period_ns, lease_ns,
 *              retry_after_ns, u32 oscope, u32 okey_len, u64 oexpires_ns,
 *              the override key bytes, u64 length of the limiter snapshot,
 *              then that snapshot (sluice/snapshot.h's format, whole)
 *     trailer  u64 binding count, "SLUICEND", u64 XXH3-64 of every byte
 *              before it
 *
 * Why it never loads a bad file, nor half of one. The container's magic,
 * version, byte-order mark and checksum are checked first, then every
 * binding record is parsed to the exact end (a record that overruns the
 * file, or two records of one binding, refuse the whole); each record
 * whose identity matches a binding of the engine's policy (the carry-over
 * rule of reload, engine.c: same limit name, tier or override scope, key
 * and expiry, kind, scopes, per-class flag and numbers) is loaded by the
 * limiter's own all-or-nothing restore, which checks its snapshot whole
 * before inserting. If a later binding's restore fails, every binding
 * loaded before it is cleared again: the engine is left as created.
 *
 * Why the bound holds. Each binding's snapshot gives the limiter layer's
 * guarantee (every saved cell is a state the cell really held when it was
 * copied), and the bindings of one request are independent limiters: a
 * restored key can admit again at most what it admitted after its cells
 * were copied, which the snapshot interval bounds. A binding written later
 * in the walk than another is only more recent, never older than the
 * snapshot's taken_ns, so restoring every binding at taken_ns's rules
 * (idle at now_ns, slot leases from taken_ns) is conservative.
 *
 * Locking. A snapshot holds the engine's lock (reloads and sweeps wait;
 * checks, releases and usage never do: each limiter is walked in
 * read-side sections of bounded length). A restore runs on an engine not
 * yet shared.
 */
#include <sluice/engine.h>
#include <sluice/snapshot.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engine/engine_internal.h"
#include "limiter/limiter_internal.h"

static const char engine_magic[8] = { 'S', 'L', 'U', 'I', 'C', 'E', 'E', 'N' };
static const char limiter_magic[8] = { 'S', 'L', 'U', 'I', 'C', 'E', 'S', 'N' };
#define ENGINE_SNAPSHOT_VERSION 1u
#define BYTE_ORDER_MARK UINT64_C(0x0102030405060708)
#define HEAD_BYTES 32u
#define TAIL_BYTES 24u

/* ---- writing ---- */

static void put32(struct sluice__snap_buf *b, uint32_t v) { sluice__snap_put(b, &v, sizeof v); }
static void put64(struct sluice__snap_buf *b, uint64_t v) { sluice__snap_put(b, &v, sizeof v); }

static int put_binding(struct sluice__snap_buf *buf, const struct sluice__binding *b, uint64_t now_ns,
		       struct sluice_snapshot_info *total)
{
	struct sluice_snapshot_info one = { .size = sizeof one };
	unsigned char head[4] = { b->is_override, b->policy_kind, b->per_class, 0 };
	uint32_t name_len = (uint32_t)strlen(b->name), tier_len = (uint32_t)strlen(b->tier);

	sluice__snap_put(buf, head, sizeof head);
	put32(buf, b->scope_mask);
	put32(buf, name_len);
	put32(buf, tier_len);
	sluice__snap_put(buf, b->name, name_len);
	sluice__snap_put(buf, b->tier, tier_len);
	put64(buf, b->count);
	put64(buf, b->burst);
	put64(buf, b->period_ns);
	put64(buf, b->lease_ns);
	put64(buf, b->retry_after_ns);
	put32(buf, b->oscope);
	put32(buf, b->okey_len);
	put64(buf, b->oexpires_ns);
	sluice__snap_put(buf, b->okey, b->okey_len);
	size_t len_at = buf->len;
	put64(buf, 0); /* the limiter snapshot's length, patched below */
	if (buf->oom)
		return sluice__snap_fail(total, SLUICE_ENOMEM, "out of memory");
	int rc = sluice__limiter_snapshot_append(b->exec, now_ns, buf, &one);
	if (rc != SLUICE_OK)
		return sluice__snap_fail(total, rc, "limit %s%s%s: %s", b->name, b->tier[0] ? " tier " : "",
					 b->tier, one.message);
	uint64_t len = buf->len - len_at - 8;
	memcpy(buf->p + len_at, &len, sizeof len);
	total->entries += one.entries;
	total->limits_kept++;
	return SLUICE_OK;
}

static void stats_record(struct sluice_engine *eng, int rc, const struct sluice_snapshot_info *info)
{
	pthread_mutex_lock(&eng->s_lock);
	struct sluice_engine_state_stats *s = &eng->s_stats;
	if (rc == SLUICE_OK) {
		s->snapshots++;
		s->last_taken_ns = info->taken_ns;
		s->last_entries = info->entries;
		s->last_bytes = info->bytes;
	} else {
		s->failures++;
		s->last_error = rc;
		snprintf(s->last_message, sizeof s->last_message, "%s", info->message);
	}
	pthread_mutex_unlock(&eng->s_lock);
}

int sluice__engine_snapshot_locked(struct sluice_engine *eng, const char *path, uint64_t now_ns,
				   struct sluice_snapshot_info *info)
{
	struct sluice__snap_buf buf = { 0 };
	uint32_t n = 0;
	int rc = SLUICE_OK;

	/* relaxed: the caller holds eng->lock, which excludes reloads (the
	 * only writers of the pointer). */
	struct sluice__state *st = atomic_load_explicit(&eng->state, memory_order_relaxed); /* relaxed: why above */
	STATE_BINDINGS(st, b, { (void)b; n++; });
	sluice__snap_put(&buf, engine_magic, sizeof engine_magic);
	put32(&buf, ENGINE_SNAPSHOT_VERSION);
	put32(&buf, n);
	put64(&buf, BYTE_ORDER_MARK);
	put64(&buf, now_ns);
	STATE_BINDINGS(st, b, {
		if (rc == SLUICE_OK)
			rc = put_binding(&buf, b, now_ns, info);
	});
	if (rc == SLUICE_OK) {
		sluice__snap_seal(&buf, 0, n);
		rc = buf.oom ? sluice__snap_fail(info, SLUICE_ENOMEM, "out of memory") : SLUICE_OK;
	}
	if (rc == SLUICE_OK) {
		info->taken_ns = now_ns;
		info->bytes = buf.len;
		rc = sluice__snap_write_file(path, buf.p, buf.len, info);
	}
	free(buf.p);
	stats_record(eng, rc, info);
	return rc;
}

/* What snapshot and restore check first: info (the caller's, or `local`
 * when it has none), the engine, an in-process one, the path (NULL:
 * options.state_path), the calling thread registered. */
static int call_begin(struct sluice_engine *eng, const char **path, struct sluice_snapshot_info **info,
		      struct sluice_snapshot_info *local)
{
	sluice__snap_info_reset(*info);
	if (*info == NULL || (*info)->size < sizeof **info)
		*info = local;
	if (eng == NULL)
		return sluice__snap_fail(*info, SLUICE_EINVAL, "NULL engine");
	if (eng->ops != &sluice__exec_local_ops)
		return sluice__snap_fail(*info, SLUICE_EUNSUPPORTED, "an engine on Redis keeps its state there");
	*path = *path != NULL ? *path : eng->state_path;
	if (*path == NULL)
		return sluice__snap_fail(*info, SLUICE_EINVAL, "no path and no options.state_path");
	int rc = sluice__rcu_thread_enter(eng->flags & SLUICE_ENGINE_CALLER_REGISTERS_RCU);
	return rc == SLUICE_OK ? rc : sluice__snap_fail(*info, rc, "%s", sluice_strerror(rc));
}

int sluice_engine_snapshot(struct sluice_engine *eng, const char *path, uint64_t now_ns,
			   struct sluice_snapshot_info *info)
{
	struct sluice_snapshot_info local = { .size = sizeof local };

	int rc = call_begin(eng, &path, &info, &local);
	if (rc != SLUICE_OK)
		return rc;
	pthread_mutex_lock(&eng->lock);
	rc = sluice__engine_snapshot_locked(eng, path, now_ns, info);
	pthread_mutex_unlock(&eng->lock);
	return rc;
}

/* ---- reading ---- */

struct record {
	struct sluice__binding id; /* the identity fields only */
	const unsigned char *blob;
	uint64_t blob_len;
	struct sluice__binding *match; /* the engine's binding, or NULL */
};

struct cursor {
	const unsigned char *p;
	size_t len, at;
};

static bool take(struct cursor *c, void *dst, size_t n)
{
	if (c->len - c->at < n)
		return false;
	memcpy(dst, c->p + c->at, n);
	c->at += n;
	return true;
}

static int read_record(struct cursor *c, struct record *r)
{
	unsigned char head[4];
	uint32_t name_len, tier_len;

	memset(r, 0, sizeof *r);
	if (!take(c, head, 4) || !take(c, &r->id.scope_mask, 4) || !take(c, &name_len, 4) ||
	    !take(c, &tier_len, 4) || name_len > SLUICE_POLICY_MAX_NAME || tier_len > SLUICE_POLICY_MAX_NAME ||
	    head[0] > 1 || head[2] > 1 || head[3] != 0)
		return SLUICE_ECORRUPT;
	r->id.is_override = head[0];
	r->id.policy_kind = head[1];
	r->id.per_class = head[2];
	if (!take(c, r->id.name, name_len) || !take(c, r->id.tier, tier_len) ||
	    !take(c, &r->id.count, 8) || !take(c, &r->id.burst, 8) || !take(c, &r->id.period_ns, 8) ||
	    !take(c, &r->id.lease_ns, 8) || !take(c, &r->id.retry_after_ns, 8) ||
	    !take(c, &r->id.oscope, 4) || !take(c, &r->id.okey_len, 4) || !take(c, &r->id.oexpires_ns, 8) ||
	    r->id.okey_len > SLUICE_POLICY_MAX_KEY || !take(c, r->id.okey, r->id.okey_len) ||
	    !take(c, &r->blob_len, 8) || r->blob_len > c->len - c->at)
		return SLUICE_ECORRUPT;
	r->blob = c->p + c->at;
	c->at += (size_t)r->blob_len;
	return SLUICE_OK;
}

/* The carry-over rule of reload (engine.c, find_kept and
 * find_kept_override), on the numbers the file records. */
static bool same_binding(const struct sluice__binding *a, const struct sluice__binding *b)
{
	if (a->is_override != b->is_override || a->policy_kind != b->policy_kind ||
	    a->per_class != b->per_class || a->scope_mask != b->scope_mask ||
	    strcmp(a->name, b->name) != 0 || strcmp(a->tier, b->tier) != 0 || a->count != b->count ||
	    a->burst != b->burst || a->period_ns != b->period_ns || a->lease_ns != b->lease_ns ||
	    a->retry_after_ns != b->retry_after_ns)
		return false;
	return !a->is_override || (a->oscope == b->oscope && a->okey_len == b->okey_len &&
				   a->oexpires_ns == b->oexpires_ns &&
				   memcmp(a->okey, b->okey, a->okey_len) == 0);
}

static int restore_buf(struct sluice_engine *eng, const unsigned char *p, size_t len, uint64_t now_ns,
		       struct sluice_snapshot_info *info)
{
	uint32_t version, n;
	uint64_t mark, taken_ns, count = 0;

	if (len < HEAD_BYTES + TAIL_BYTES)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "truncated: %zu bytes, shorter than a header and trailer", len);
	if (memcmp(p, limiter_magic, 8) == 0)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "a keyed limiter's snapshot, not an engine's");
	if (memcmp(p, engine_magic, 8) != 0)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "not a sluice engine snapshot (bad magic)");
	memcpy(&version, p + 8, 4);
	memcpy(&n, p + 12, 4);
	memcpy(&mark, p + 16, 8);
	memcpy(&taken_ns, p + 24, 8);
	if (mark != BYTE_ORDER_MARK)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "written with another byte order or word size");
	if (version != ENGINE_SNAPSHOT_VERSION)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "engine format version %u, this build reads %u",
					 version, ENGINE_SNAPSHOT_VERSION);
	int rc = sluice__snap_unseal(p, len, &count, info);
	if (rc != SLUICE_OK)
		return rc;
	if (count != n || n > (len - HEAD_BYTES - TAIL_BYTES) / 8)
		return sluice__snap_fail(info, SLUICE_ECORRUPT, "binding count %u against %llu in the trailer", n,
					 (unsigned long long)count);
	info->taken_ns = taken_ns;
	info->bytes = len;

	/* relaxed: the engine is not shared yet (restore's contract). */
	struct sluice__state *st = atomic_load_explicit(&eng->state, memory_order_relaxed); /* relaxed: why above */
	struct record *recs = calloc(n != 0 ? n : 1, sizeof *recs);
	if (recs == NULL)
		return sluice__snap_fail(info, SLUICE_ENOMEM, "out of memory");
	struct cursor c = { p, len - TAIL_BYTES, HEAD_BYTES };
	for (uint32_t k = 0; k < n && rc == SLUICE_OK; k++) {
		if (read_record(&c, &recs[k]) != SLUICE_OK) {
			rc = sluice__snap_fail(info, SLUICE_ECORRUPT, "binding %u: truncated or bad record", k);
			break;
		}
		STATE_BINDINGS(st, b, {
			if (recs[k].match == NULL && same_binding(&recs[k].id, b))
				recs[k].match = b;
		});
		for (uint32_t j = 0; j < k && recs[k].match != NULL; j++)
			if (recs[j].match == recs[k].match)
				rc = sluice__snap_fail(info, SLUICE_ECORRUPT, "binding %u: limit %s repeated", k,
						       recs[k].id.name);
	}
	if (rc == SLUICE_OK && c.at != c.len)
		rc = sluice__snap_fail(info, SLUICE_ECORRUPT, "%zu bytes after the last binding", c.len - c.at);
	if (rc == SLUICE_OK && now_ns < taken_ns)
		rc = sluice__snap_fail(info, SLUICE_ERANGE, "now_ns %llu is earlier than the snapshot's %llu",
				       (unsigned long long)now_ns, (unsigned long long)taken_ns);

	/* Load the matched bindings, each all-or-nothing; a failure clears
	 * those loaded before it. */
	uint32_t loaded = 0;
	for (uint32_t k = 0; k < n && rc == SLUICE_OK; k++, loaded = k) {
		struct sluice_snapshot_info one = { .size = sizeof one };
		if (recs[k].match == NULL) {
			info->limits_dropped++;
			continue;
		}
		rc = sluice_limiter_restore_mem(recs[k].match->exec, recs[k].blob, (size_t)recs[k].blob_len, now_ns,
						&one);
		if (rc != SLUICE_OK) {
			rc = sluice__snap_fail(info, rc, "limit %s%s%s: %s", recs[k].id.name,
					       recs[k].id.tier[0] ? " tier " : "", recs[k].id.tier, one.message);
			break;
		}
		info->entries += one.entries;
		info->loaded += one.loaded;
		info->skipped_idle += one.skipped_idle;
		info->limits_kept++;
	}
	if (rc != SLUICE_OK) {
		for (uint32_t k = 0; k < loaded; k++)
			if (recs[k].match != NULL)
				sluice__limiter_clear(recs[k].match->exec);
		info->loaded = 0;
		info->skipped_idle = 0;
	}
	free(recs);
	return rc;
}

int sluice_engine_restore(struct sluice_engine *eng, const char *path, uint64_t now_ns,
			  struct sluice_snapshot_info *info)
{
	struct sluice_snapshot_info local = { .size = sizeof local };
	unsigned char *buf;
	size_t len;

	int rc = call_begin(eng, &path, &info, &local);
	if (rc != SLUICE_OK)
		return rc;
	/* Every binding's limiter must still be empty. */
	struct sluice__state *st = atomic_load_explicit(&eng->state, memory_order_relaxed); /* relaxed: not shared yet (restore's contract) */
	STATE_BINDINGS(st, b, {
		int r = sluice__limiter_restore_begin(b->exec);
		if (r != SLUICE_OK && rc == SLUICE_OK)
			rc = r;
	});
	if (rc != SLUICE_OK)
		return sluice__snap_fail(info, rc, "%s", rc == SLUICE_ESTATE ? "the engine already holds state"
									 : sluice_strerror(rc));
	rc = sluice__snap_read_file(path, &buf, &len, info);
	if (rc != SLUICE_OK)
		return rc;
	rc = restore_buf(eng, buf, len, now_ns, info);
	free(buf);
	return rc;
}

int sluice_engine_state_stats(struct sluice_engine *eng, struct sluice_engine_state_stats *out)
{
	if (eng == NULL || out == NULL || out->size != sizeof *out)
		return SLUICE_EINVAL;
	pthread_mutex_lock(&eng->s_lock);
	*out = eng->s_stats;
	pthread_mutex_unlock(&eng->s_lock);
	out->size = sizeof *out;
	return SLUICE_OK;
}
