/*
 * redis_cross.c - the cross-slot protocol (cluster; docs/redis.md, "Scopes on
 * different slots"): a request whose keys hash to several slots is reserved
 * slot group by slot group, each by one script call that returns a receipt
 * of what it wrote; at the first group that denies or fails, the groups
 * already reserved are cancelled in reverse order from their receipts.
 */
#include "redis/redis_internal.h"

#ifdef SLUICE_WITH_REDIS

#include <string.h>

/* Undo a reserved group (cross-slot protocol): every field it wrote gets
 * its value before back if it still holds the value we wrote; a field
 * something else wrote since keeps it (consumption stays: conservative).
 * An unreachable node leaves the reservation in place (conservative too).
 * Frees the kept reply. */
static void cancel_group(struct sluice_redis *r, struct prepared *p, uint64_t now_ns, uint64_t deadline_ns)
{
	redisReply *rep = p->reply;
	char *w;

	p->reply = NULL;
	if (rep == NULL)
		return;
	if (rep->elements <= 4 + 4 * p->nlimits) { /* a denial: wrote nothing */
		freeReplyObject(rep);
		return;
	}
	int argc = sluice__redis_head_args(r, p, now_ns, "c", &w);
	for (size_t e = 4 + 4 * p->nlimits; e + 3 < rep->elements; e += 4) {
		long long key;
		if (!sluice__redis_int_elem(rep, e, 1, (long long)p->req->nscopes, &key) ||
		    rep->element[e + 1]->type != REDIS_REPLY_STRING ||
		    rep->element[e + 2]->type != REDIS_REPLY_STRING ||
		    rep->element[e + 3]->type != REDIS_REPLY_STRING || argc + 4 > MAX_ARGS) {
			r->st.server_errors++;
			freeReplyObject(rep);
			return;
		}
		r->argv[argc] = w;
		r->argvlen[argc++] = sluice__u64_to_dec(w, (uint64_t)key);
		w += NUM_MAX;
		for (int k = 1; k <= 3; k++) {
			r->argv[argc] = rep->element[e + (size_t)k]->str;
			r->argvlen[argc++] = rep->element[e + (size_t)k]->len;
		}
	}
	redisReply *got = sluice__redis_call_script(r, p->slot, argc, deadline_ns);
	if (got != NULL && got->type != REDIS_REPLY_INTEGER)
		r->st.server_errors++;
	freeReplyObject(got);
	freeReplyObject(rep);
}

/*
 * A request whose keys hash to several cluster slots (docs/redis.md,
 * "Scopes on different slots"): the scopes are grouped by slot and the
 * groups visited in ascending slot order (scopes of a group in the
 * caller's order). Each group is reserved all-or-nothing by one script call
 * that also returns its receipt; at the first group that denies (or fails),
 * the groups already reserved are cancelled in reverse order. The decision
 * is the one of the visiting order: the first denier, else the least
 * remaining of all limits.
 */
int sluice__redis_admit_cross(struct sluice_redis *r, const struct prepared *whole, uint64_t now_ns,
			      struct sluice_decision *out, sluice_slot_handle *handles)
{
	const struct sluice_redis_request *req = whole->req;
	size_t ns = req->nscopes, ng = 0;
	uint32_t slot[SLUICE_REDIS_MAX_SCOPES], order[SLUICE_REDIS_MAX_SCOPES];
	struct group *g = r->groups;

	for (size_t s = 0; s < ns; s++) {
		memcpy(r->buf, r->prefix, r->prefix_len);
		memcpy(r->buf + r->prefix_len, req->scopes[s].key, req->scopes[s].key_len);
		slot[s] = sluice__redis_key_slot(r->buf, r->prefix_len + req->scopes[s].key_len);
		size_t q = s; /* insertion sort by (slot, index): stable */
		for (; q > 0 && slot[order[q - 1]] > slot[s]; q--)
			order[q] = order[q - 1];
		order[q] = (uint32_t)s;
	}
	for (size_t q = 0; q < ns; q++) {
		uint32_t s = order[q];
		if (q == 0 || slot[s] != slot[order[q - 1]]) {
			g[ng].req = (struct sluice_redis_request){ g[ng].sc, 0, req->cost };
			ng++;
		}
		struct group *gr = &g[ng - 1];
		gr->sc[gr->req.nscopes] = req->scopes[s];
		gr->p.caller_scope[gr->req.nscopes] = (uint8_t)s; /* kept through the prepare below */
		gr->req.nscopes++;
	}

	struct sluice_decision best, d;
	size_t done = 0;
	bool denied = false;
	uint64_t deadline = sluice__add_sat(sluice_monotonic_ns(), r->timeout_ns);
	for (; done < ng; done++) {
		struct group *gr = &g[done];
		uint8_t caller[SLUICE_REDIS_MAX_SCOPES];
		memcpy(caller, gr->p.caller_scope, sizeof caller);
		/* Validated as a whole already. */
		if (sluice__redis_prepare(r, &gr->req, &gr->p) != SLUICE_OK)
			return SLUICE_EINVAL;
		for (size_t s = 0; s < gr->req.nscopes; s++) {
			gr->p.caller_scope[s] = caller[s];
			gr->p.base[s] = whole->base[caller[s]];
		}
		gr->p.cross = false;
		gr->p.mode = req->cost > 0 ? MODE_RESERVE : MODE_PEEK;
		gr->p.handles = handles;
		gr->p.each = whole->each; /* the group's bases are the whole's */
		r->call_deadline_ns = deadline;
		sluice__redis_admit_prepared(r, &gr->p, 1, now_ns, &d);
		r->call_deadline_ns = 0;
		/* sluice__redis_admit_prepared() counted the group's verdict; count the request
		 * once, below. */
		if (d.degraded)
			r->st.degraded--;
		else if (req->cost > 0) {
			if (d.allowed)
				r->st.admitted--;
			else
				r->st.denied--;
		}
		if (d.degraded || !d.allowed) {
			denied = true;
			break;
		}
		if (done == 0 || sluice__redis_governs_over(&d, &best))
			best = d;
	}
	if (denied) {
		if (req->cost > 0) {
			/* The cancels get their own timeout: a group that timed
			 * out must not leave the others' reservations behind. */
			deadline = sluice__add_sat(sluice_monotonic_ns(), r->timeout_ns);
			struct sluice__sigpipe_guard guard;
			sluice__redis_sigpipe_block(&guard);
			cancel_group(r, &g[done].p, now_ns, deadline); /* a degraded reserve may have run */
			while (done-- > 0)
				cancel_group(r, &g[done].p, now_ns, deadline);
			sluice__redis_sigpipe_restore(&guard);
			if (handles != NULL)
				for (size_t s = 0; s < ns; s++)
					handles[s] = SLUICE_SLOT_NONE;
		}
		*out = d;
		if (d.degraded) {
			struct prepared tmp = *whole;
			sluice__redis_fill_degraded(r, &tmp, out);
		}
	} else {
		for (size_t q = 0; q < ng; q++)
			if (g[q].p.reply != NULL) {
				freeReplyObject(g[q].p.reply);
				g[q].p.reply = NULL;
			}
		*out = best;
	}
	if (req->cost > 0 && !out->degraded) {
		if (out->allowed)
			r->st.admitted++;
		else
			r->st.denied++;
	}
	return SLUICE_OK;
}

#endif /* SLUICE_WITH_REDIS */
