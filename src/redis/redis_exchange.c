/*
 * redis_exchange.c - the exchange with the servers: a batch of prepared
 * requests answered locally where the lease or the deny cache can, the rest
 * pipelined to the node of their hash slot, replies read in order;
 * NOSCRIPT reloads and resends, a broken connection that had worked is
 * re-established once, MOVED re-points the slot and runs another round, ASK
 * is followed once (ASKING + the call, one round trip), TRYAGAIN is resent
 * after a pause within the call's deadline. sluice__redis_call_script() does the same for
 * one call outside a pipeline (cancels and releases).
 */
#include "redis/redis_internal.h"

#ifdef SLUICE_WITH_REDIS

#include <string.h>

/* ---- the exchange ---- */

/*
 * ASK (cluster, a slot being migrated): the node that owns the slot does not
 * have the request's keys any more, or not yet all of them; the node it
 * names (importing the slot) decides this one request if it is preceded by
 * ASKING. Both go in one pipeline: one round trip. The slot map is not
 * changed (the slot still belongs to the old node until the migration ends;
 * then MOVED re-points it). Done once: a second ASK, an error or a lost
 * connection ends in the fail mode; MOVED or NOSCRIPT from the asked node
 * leave the request pending for the caller's next round (*again set), and
 * TRYAGAIN (some keys of a multi-key request are on each side) for the round
 * after the pause (p->tryagain; the owner is asked again). A reserve (a group of
 * a cross-slot request) keeps its reply for the receipts, as in
 * exchange(); its cancel, and a release, follow ASK in sluice__redis_call_script().
 */

/* p's answer from a script reply that is not a redirection, NOSCRIPT or
 * TRYAGAIN: decoded (the deny cache learns what it showed), else (an error,
 * a malformed reply) the fail mode's. p is done. True if p keeps the reply
 * (a reserve: its receipts; the caller must not free it). */
static bool answer(struct sluice_redis *r, struct prepared *p, redisReply *rep, uint64_t t,
		   uint64_t now_ns, struct sluice_decision *out)
{
	struct sluice__redis_learnt learnt;

	p->done = true;
	if (!sluice__redis_decode(r, p, rep, t, now_ns, out, &learnt)) {
		if (rep->type == REDIS_REPLY_ERROR && strstr(rep->str, "READONLY") != NULL)
			r->st.readonly++;
		else
			r->st.server_errors++;
		sluice__redis_fill_degraded(r, p, out);
		return false;
	}
	sluice__redis_cache_learn(r, &learnt);
	sluice__redis_count(r, p, out);
	if (p->mode != MODE_RESERVE)
		return false;
	p->reply = rep;
	return true;
}

/* ASKING, then the call in r->argv[0..argc-1], pipelined on nd's connection
 * (armed by the caller): one round trip. Returns the call's reply, or NULL:
 * the connection failed (dropped) or ASKING was refused (a server error). */
static redisReply *asking_call(struct sluice_redis *r, struct node *nd, int argc, uint64_t deadline_ns)
{
	static const char asking[] = "ASKING";
	const char *asking_argv[1] = { asking };
	size_t asking_len[1] = { sizeof asking - 1 };

	if (redisAppendCommandArgv(nd->ctx, 1, asking_argv, asking_len) != REDIS_OK ||
	    redisAppendCommandArgv(nd->ctx, argc, r->argv, r->argvlen) != REDIS_OK) {
		sluice__redis_drop(nd);
		return NULL;
	}
	r->st.round_trips++;
	redisReply *ok = NULL, *rep = NULL;
	if (redisGetReply(nd->ctx, (void **)&ok) != REDIS_OK || ok == NULL ||
	    redisGetReply(nd->ctx, (void **)&rep) != REDIS_OK || rep == NULL) {
		if (ok != NULL)
			freeReplyObject(ok);
		r->st.io_errors++;
		r->st.timeouts += sluice__redis_time_left(deadline_ns) == 0;
		sluice__redis_drop(nd);
		return NULL;
	}
	nd->ever_worked = true;
	bool asked = ok->type == REDIS_REPLY_STATUS && ok->len == 2 && memcmp(ok->str, "OK", 2) == 0;
	freeReplyObject(ok);
	if (!asked) {
		r->st.server_errors++;
		freeReplyObject(rep);
		return NULL;
	}
	return rep;
}

static void ask_one(struct sluice_redis *r, struct prepared *p, uint64_t now_ns, uint64_t t,
		    struct sluice_decision *out, uint64_t deadline_ns, bool *again)
{
	struct node *nd = &r->nodes[p->ask_node];

	p->ask_node = -1;
	if (sluice__redis_ensure_connected(r, nd, deadline_ns) != 0 ||
	    !sluice__redis_arm_timeout(r, nd, deadline_ns))
		goto degraded;
	int argc = sluice__redis_build_args(r, p, now_ns);
	redisReply *rep = asking_call(r, nd, argc, deadline_ns);
	if (rep == NULL)
		goto degraded;
	if (sluice__redis_reply_is_error(rep, "NOSCRIPT")) {
		r->st.noscript++;
		if (sluice__redis_load_script(r, nd, deadline_ns) == 0)
			*again = true;
	} else if (sluice__redis_reply_is_error(rep, "MOVED ") && sluice__redis_learn_moved(r, rep)) {
		r->st.moved++;
		*again = true;
	} else if (sluice__redis_reply_is_error(rep, "TRYAGAIN")) {
		r->st.tryagain++; /* did not run: resent after the pause */
		p->tryagain = true;
	} else if (answer(r, p, rep, t, now_ns, out)) {
		rep = NULL; /* kept for the receipts, as exchange() */
	}
	freeReplyObject(rep);
	if (p->done || *again || p->tryagain)
		return;
degraded:
	p->done = true;
	sluice__redis_fill_degraded(r, p, out);
}

/*
 * Decide every prepared request not yet done that belongs to node ni:
 * pipeline their script calls on its connection, read the replies in order.
 * Up to three passes: a NOSCRIPT reloads the script and resends those
 * requests; a connection that had been working and breaks (not by timeout)
 * is re-established once. A MOVED reply (cluster) re-points the slot and
 * leaves the request pending for the caller's next round (*moved set); a
 * TRYAGAIN (from nd or the asked node) leaves it pending with p->tryagain
 * set, not sent again until rounds() has paused.
 */
static void exchange(struct sluice_redis *r, uint32_t ni, struct prepared *ps, size_t n,
		     uint64_t now_ns, struct sluice_decision *out, uint64_t deadline_ns, bool *moved)
{
	struct node *nd = &r->nodes[ni];
	uint64_t t = sluice__redis_cache_now(r, now_ns);
	bool reconnected = false;

	for (int pass = 0; pass < 3; pass++) {
		bool pending = false;
		for (size_t i = 0; i < n; i++)
			pending |= !ps[i].done && !ps[i].tryagain && sluice__redis_node_of(r, &ps[i]) == ni;
		if (!pending || sluice__redis_ensure_connected(r, nd, deadline_ns) != 0)
			break;
		if (!sluice__redis_arm_timeout(r, nd, deadline_ns))
			break;
		bool ok = true;
		for (size_t i = 0; i < n && ok; i++) {
			ps[i].sent = false;
			if (ps[i].done || ps[i].tryagain || sluice__redis_node_of(r, &ps[i]) != ni)
				continue;
			int argc = sluice__redis_build_args(r, &ps[i], now_ns);
			if (redisAppendCommandArgv(nd->ctx, argc, r->argv, r->argvlen) != REDIS_OK) {
				ok = false;
			} else {
				ps[i].sent = true;
				ps[i].ask_node = -1;
			}
		}
		if (!ok) { /* out of memory in hiredis' output buffer */
			sluice__redis_drop(nd);
			break;
		}
		r->st.round_trips++;
		bool noscript = false, broken = false, asked = false;
		uint32_t ask_slot; /* unused: an ASK leaves the slot map as it is */
		for (size_t i = 0; i < n; i++) {
			if (!ps[i].sent)
				continue;
			redisReply *rep = NULL;
			if (redisGetReply(nd->ctx, (void **)&rep) != REDIS_OK || rep == NULL) {
				broken = true;
				break;
			}
			if (sluice__redis_reply_is_error(rep, "NOSCRIPT")) {
				r->st.noscript++;
				noscript = true;
			} else if (r->slot_node != NULL && sluice__redis_reply_is_error(rep, "MOVED ") &&
				   sluice__redis_learn_moved(r, rep)) {
				r->st.moved++;
				*moved = true;
			} else if (r->slot_node != NULL && sluice__redis_reply_is_error(rep, "ASK ") &&
				   (ps[i].ask_node = sluice__redis_parse_redirect(r, rep, 4, &ask_slot)) >= 0) {
				r->st.ask++;
				asked = true;
			} else if (r->slot_node != NULL && sluice__redis_reply_is_error(rep, "TRYAGAIN")) {
				r->st.tryagain++; /* did not run: resent after the pause */
				ps[i].tryagain = true;
			} else if (answer(r, &ps[i], rep, t, now_ns, &out[i])) {
				rep = NULL; /* kept for the receipts */
			}
			freeReplyObject(rep);
		}
		if (broken) {
			bool timed_out = sluice__redis_time_left(deadline_ns) == 0;
			bool worked = nd->ever_worked;
			r->st.io_errors++;
			r->st.timeouts += timed_out;
			sluice__redis_drop(nd);
			if (timed_out || !worked || reconnected)
				break;
			reconnected = true; /* a restart: try a fresh connection now */
			continue;
		}
		nd->ever_worked = true;
		/* After every reply of nd's pipeline is read: nd's connection
		 * is idle while the asked nodes are used. */
		for (size_t i = 0; asked && i < n; i++)
			if (ps[i].sent && !ps[i].done && ps[i].ask_node >= 0)
				ask_one(r, &ps[i], now_ns, t, &out[i], deadline_ns, moved);
		if (noscript && sluice__redis_load_script(r, nd, deadline_ns) != 0)
			break;
	}
}

/* ---- public API ---- */

/* One round per node that has requests; in cluster mode, more rounds
 * while MOVED replies re-point slots (at most 3 redirections), and while
 * requests answered TRYAGAIN: after each such round a pause
 * (sluice__redis_tryagain_pause()), then those requests are sent again, from the start
 * (their slot's owner, which may ask again); the deadline bounds these
 * retries, and they do not count as redirections. A TRYAGAIN reply means
 * the script did not run, so a resend never consumes twice. A round that
 * runs only for TRYAGAIN resends nothing else: a request left pending by a
 * failure (a lost connection, whose call may have run) answers by the fail
 * mode, as it would without the TRYAGAIN. Requests still pending at the
 * end answer by the fail mode too (sluice__redis_admit_prepared()). */
static void rounds(struct sluice_redis *r, struct prepared *ps, size_t n, uint64_t now_ns,
		   struct sluice_decision *out, uint64_t deadline)
{
	uint64_t pause_ns = TRYAGAIN_PAUSE_MIN_NS;

	for (int redirections = 0;;) {
		bool moved = false, tryagain = false;
		for (uint32_t ni = 0; ni < r->nnodes; ni++)
			exchange(r, ni, ps, n, now_ns, out, deadline, &moved);
		for (size_t i = 0; i < n; i++)
			tryagain |= !ps[i].done && ps[i].tryagain;
		bool redirected = moved && redirections++ < 3;
		if (!tryagain) {
			if (!redirected)
				break;
			continue;
		}
		if (!redirected) {
			for (size_t i = 0; i < n; i++) {
				if (!ps[i].done && !ps[i].tryagain) {
					ps[i].done = true;
					sluice__redis_fill_degraded(r, &ps[i], &out[i]);
				}
			}
		}
		if (!sluice__redis_tryagain_pause(r, deadline, &pause_ns))
			break;
		for (size_t i = 0; i < n; i++)
			ps[i].tryagain = false;
	}
	for (size_t i = 0; i < n; i++)
		ps[i].tryagain = false;
}

int sluice__redis_admit_prepared(struct sluice_redis *r, struct prepared *ps, size_t n, uint64_t now_ns,
				 struct sluice_decision *out)
{
	/* A cross-slot request's reserves share its deadline. */
	uint64_t deadline = r->call_deadline_ns != 0 ? r->call_deadline_ns
						     : sluice__add_sat(sluice_monotonic_ns(), r->timeout_ns);
	/* The lease clock (the deny cache's), read before anything is sent. */
	uint64_t lease_t = r->lease != NULL ? sluice__redis_cache_now(r, now_ns) : 0;

	for (size_t i = 0; i < n; i++) {
		ps[i].lease = NULL;
		ps[i].ask_node = -1;
		ps[i].tryagain = false;
		if (sluice__redis_lease_eligible(r, &ps[i]) &&
		    sluice__redis_lease_answer(r, &ps[i], lease_t, &out[i])) {
			ps[i].done = true;
			sluice__redis_count(r, &ps[i], &out[i]);
		}
	}
	if (r->cache != NULL) {
		uint64_t t = sluice__redis_cache_now(r, now_ns);
		uint64_t batch = ++r->cache_batch;
		for (size_t i = 0; i < n; i++) {
			if (ps[i].done || ps[i].req->cost == 0)
				continue;
			if (sluice__redis_cache_try_deny(r, &ps[i], t, batch, &out[i])) {
				ps[i].done = true;
				sluice__redis_count(r, &ps[i], &out[i]);
			} else if (i + 1 < n) {
				/* Sent: later requests of the batch on its limits
				 * meet what it leaves (redis_cache.c, the hold). */
				sluice__redis_cache_hold(r, &ps[i], batch);
			}
		}
	}
	bool pending = false;
	for (size_t i = 0; i < n; i++) {
		if (ps[i].done)
			continue;
		pending = true;
		if (sluice__redis_lease_eligible(r, &ps[i]))
			sluice__redis_lease_mark_take(r, &ps[i]);
	}
	/* Answered locally (lease, deny cache): no I/O, so no signal mask
	 * syscalls either. */
	if (pending) {
		struct sluice__sigpipe_guard guard;
		sluice__redis_sigpipe_block(&guard);
		rounds(r, ps, n, now_ns, out, deadline);
		if (r->lease != NULL && sluice__redis_lease_finish(r, ps, n, lease_t, out))
			rounds(r, ps, n, now_ns, out, deadline);
		sluice__redis_sigpipe_restore(&guard);
	}
	for (size_t i = 0; i < n; i++) {
		if (!ps[i].done) {
			ps[i].done = true;
			sluice__redis_fill_degraded(r, &ps[i], &out[i]);
		}
	}
	return SLUICE_OK;
}

/* One script call routed by hash slot, outside the pipelined exchange:
 * cancels and releases. Handles NOSCRIPT (reload, resend), MOVED (re-point,
 * resend), ASK (the next attempt is ASKING + the call on the node it names,
 * the map unchanged, as ask_one()) and a lost connection that had been
 * working (reconnect once). TRYAGAIN (the keys of a multi-key call split by
 * a migration; the script did not run) pauses (sluice__redis_tryagain_pause()) and starts
 * the call again from the slot's owner, while the deadline allows. An ASK
 * from the asked node ends the call: NULL.
 * r->argv[0..argc-1] must be set, argv[1] the script's SHA. Returns the
 * reply (the caller frees it) or NULL (fail mode: down, out of time, the
 * keys not reachable in one place). */
redisReply *sluice__redis_call_script(struct sluice_redis *r, uint32_t slot, int argc, uint64_t deadline_ns)
{
	bool reconnected = false;
	int ask = -1; /* the node the last ASK named: the next attempt's */
	uint64_t pause_ns = TRYAGAIN_PAUSE_MIN_NS;

	for (int attempt = 0; attempt < 5; attempt++) {
		bool via_ask = ask >= 0;
		uint32_t ni = via_ask ? (uint32_t)ask : r->slot_node != NULL ? r->slot_node[slot] : 0;
		struct node *nd = &r->nodes[ni];
		ask = -1;
		if (sluice__redis_ensure_connected(r, nd, deadline_ns) != 0 ||
		    !sluice__redis_arm_timeout(r, nd, deadline_ns))
			return NULL;
		redisReply *rep;
		if (via_ask) {
			rep = asking_call(r, nd, argc, deadline_ns);
			if (rep == NULL)
				return NULL; /* counted there */
		} else {
			r->st.round_trips++;
			rep = redisCommandArgv(nd->ctx, argc, r->argv, r->argvlen);
		}
		if (rep == NULL) {
			bool timed_out = sluice__redis_time_left(deadline_ns) == 0, worked = nd->ever_worked;
			r->st.io_errors++;
			r->st.timeouts += timed_out;
			sluice__redis_drop(nd);
			if (timed_out || !worked || reconnected)
				return NULL;
			reconnected = true;
			continue;
		}
		nd->ever_worked = true;
		if (sluice__redis_reply_is_error(rep, "NOSCRIPT")) {
			r->st.noscript++;
			freeReplyObject(rep);
			if (sluice__redis_load_script(r, nd, deadline_ns) != 0)
				return NULL;
			if (via_ask)
				ask = (int)ni; /* the owner would only ask again */
			continue;
		}
		if (r->slot_node != NULL && sluice__redis_reply_is_error(rep, "MOVED ") && sluice__redis_learn_moved(r, rep)) {
			r->st.moved++;
			freeReplyObject(rep);
			continue;
		}
		if (r->slot_node != NULL && !via_ask && sluice__redis_reply_is_error(rep, "ASK ") &&
		    (ask = sluice__redis_parse_redirect(r, rep, 4, &(uint32_t){ 0 })) >= 0) {
			r->st.ask++;
			freeReplyObject(rep);
			continue;
		}
		if (r->slot_node != NULL && sluice__redis_reply_is_error(rep, "TRYAGAIN")) {
			r->st.tryagain++;
			freeReplyObject(rep);
			if (!sluice__redis_tryagain_pause(r, deadline_ns, &pause_ns))
				return NULL;
			attempt = -1; /* afresh; the deadline bounds the retries (pause >= 1 ms) */
			continue;
		}
		if (sluice__redis_reply_is_error(rep, "ASK ")) {
			r->st.server_errors++;
			freeReplyObject(rep);
			return NULL;
		}
		return rep;
	}
	return NULL;
}

#endif /* SLUICE_WITH_REDIS */
