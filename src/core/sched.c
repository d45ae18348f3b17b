/*
 * sched.c: the scheduler, one for every driver with a start (doc/design.md, "Layers"). It
 * steps the runnable exchanges, hands the requests they ask for to the driver (at most
 * max_concurrency on the wire), pumps the driver for I/O, and sleeps until a socket is ready,
 * the driver's timer, the store's timer or an exchange's wake-up. Blocking calls and async
 * requests run through the same loop; a frame's poll(0) runs it with a work budget.
 * Core: libc only; time comes from the core's env.
 */
#include <math.h>
#include <string.h>

#include "core/engine.h"

#define NOW(c) ((c)->env.now((c)->env.ud))

void ach_core_work(ach_core *core)
{
	core->units++;
}

/* Whether the run's budget is used up. The first unit of work is always done, so that every
 * run moves something. */
int ach_core_over_budget(const ach_core *core)
{
	return core->units > 0 && core->budget_end != INFINITY && NOW(core) >= core->budget_end;
}

static int active(ach_core *core)
{
	return core->drv.active(core->drv.ud);
}

/* Steps the runnable exchanges; returns the earliest wake-up time (or `until`). A step can run
 * Lua hooks, which may change the list, so no pointer into it is kept across a step: each
 * round walks from the head and takes the first exchange it has not stepped yet. A request is
 * handed to the driver at once, within the run's budget. */
static double step_runnable(ach_core *core, double now, double until, int *progress)
{
	double wake = until;
	unsigned round = ++core->round;
	for (;;) {
		ach_exchange *ex;
		for (ex = core->runnable; ex != NULL; ex = ex->next_runnable) {
			if (ex->transfer != NULL || ex->stepped == round)
				continue;
			ex->stepped = round;
			if (active(core) >= core->opt.max_concurrency && ach_exchange_wake(ex) == 0)
				continue; /* it wants to send: it waits for a free place on the wire */
			break;
		}
		if (ex == NULL || ach_core_over_budget(core))
			break;
		switch (ach_exchange_step(ex, now)) {
		case ACH_STEP_SEND:
			if (core->drv.start(core->drv.ud, ex) != 0) {
				ach_http_response r;
				memset(&r, 0, sizeof r);
				r.failure = ACH_KIND_NETWORK;
				r.message = "could not start the transfer (out of memory)";
				ach_exchange_response(ex, &r, now);
			} else {
				ach_exchange_sent(ex); /* hooks run Lua: only once it is on the wire */
			}
			core->units++;
			*progress = 1;
			break;
		case ACH_STEP_WAIT:
			if (ach_exchange_wake(ex) < wake)
				wake = ach_exchange_wake(ex);
			break;
		default:
			*progress = 1;
			break;
		}
	}
	return wake;
}

static int run_loop(ach_core *core, ach_exchange *target, double until)
{
	unsigned finished0 = core->finished;
	int wait_ms = 0;
	for (;;) {
		double now, wake, timer;
		int progress = 0, moved;
		ach_exchange *ex;

		/* exchanges that are runnable but wait for a free place on the wire are re-stepped
		 * only when one frees up; the others get stepped now */
		wake = step_runnable(core, NOW(core), until, &progress);
		moved = core->drv.pump(core->drv.ud, progress ? 0 : wait_ms);
		if (moved < 0) {
			core->cannot_wait = 1; /* its bytes move outside: see ach_core_finish */
			break;
		}
		if (moved > 0)
			progress = 1;
		if (target != NULL ? ach_exchange_done(target) : core->finished != finished0)
			break;
		now = NOW(core);
		if (now >= until || ach_core_over_budget(core))
			break;
		wait_ms = 0;
		if (progress)
			continue;
		/* nothing moved: the next pump sleeps until a socket is ready, the driver's timer
		 * or an exchange's wake-up */
		for (ex = core->runnable; ex != NULL; ex = ex->next_runnable) {
			double wk = ach_exchange_wake(ex);
			if (ex->transfer == NULL && wk == 0 && active(core) < core->opt.max_concurrency)
				wake = now; /* runnable right away */
			else if (wk > 0 && wk < wake)
				wake = wk; /* put to sleep after its step (by a state store answer) */
		}
		timer = core->drv.timer(core->drv.ud);
		if (active(core) == 0 && core->runnable == NULL && timer < 0 &&
		    (core->watch.busy == NULL || !core->watch.busy(core->watch.ud)))
			break; /* nothing in flight and nothing to step: nothing to wait for */
		{
			double w = wake - now;
			if (timer >= 0 && timer - now < w)
				w = timer - now;
			if (core->watch.timer >= 0 && core->watch.timer - now < w)
				w = core->watch.timer - now; /* the state store's */
			if (w > 1.0)
				w = 1.0;
			wait_ms = w <= 0 ? 0 : (int)ceil(w * 1000);
		}
	}
	return (int)(core->finished - finished0);
}

int ach_core_run(ach_core *core, ach_exchange *target, double until, double budget)
{
	/* a hook may start a run of its own (client:async) inside this one: the outer run's
	 * budget is its own again afterwards */
	double outer_end = core->budget_end;
	int outer_units = core->units, n;
	if (core->drv.start == NULL)
		return 0; /* no driver yet: nothing can move */
	core->budget_end = budget == INFINITY ? INFINITY : NOW(core) + budget;
	core->units = 0;
	core->in_driver++;
	n = run_loop(core, target, until);
	core->in_driver--;
	core->budget_end = outer_end;
	core->units = outer_units;
	return n;
}

int ach_core_finish(ach_core *core, ach_exchange *ex)
{
	if (core->drv.start == NULL && !ach_exchange_done(ex))
		return -1; /* no driver: nothing will ever move it */
	while (!ach_exchange_done(ex)) {
		core->cannot_wait = 0;
		ach_core_run(core, ex, INFINITY, INFINITY);
		if (!ach_exchange_done(ex) && core->cannot_wait)
			return -2; /* a driver whose callers move their own exchanges cannot block */
		if (!ach_exchange_done(ex) && core->runnable == NULL && ex->transfer == NULL &&
		    (ex->slot == NULL || ex->slot->fetching == NULL))
			return -1; /* nothing can move it any more */
	}
	return 0;
}

/* ---- callers that move their own exchange ------------------------------------------------------
 * A driver that loops outside (the Lua driver: each nginx request moves its own call, in its
 * own coroutine, and its cosockets are its own) asks the scheduler for one step at a time of
 * its caller's exchange: the call itself, or the slot's token request it waits on, unless its
 * own deadline has passed. What that step asks for is started through the same driver ops. */
ach_step ach_core_step_own(ach_exchange *ex, double now, ach_exchange **stepped)
{
	ach_core *core = ex->core;
	int guard;
	for (guard = 0; guard < 16; guard++) {
		ach_exchange *cur = ach_exchange_waits_on_slot(ex) ? ex->slot->fetching : ex;
		ach_step step;
		/* waiting on the slot's token request past its own deadline: its own step ends it
		 * (kind timeout), as run_loop wakes it at its deadline */
		if (cur != ex && ex->deadline_at > 0 && now >= ex->deadline_at)
			cur = ex;
		*stepped = cur;
		if (cur->transfer != NULL)
			return ACH_STEP_BLOCKED; /* on the wire: its answer comes through its sender */
		step = ach_exchange_step(cur, now);
		switch (step) {
		case ACH_STEP_SEND:
			if (core->drv.start == NULL || core->drv.start(core->drv.ud, cur) != 0) {
				ach_http_response r;
				memset(&r, 0, sizeof r);
				r.failure = ACH_KIND_NETWORK;
				r.message = "could not start the request (out of memory)";
				ach_exchange_response(cur, &r, now);
				continue;
			}
			ach_exchange_sent(cur);
			return ACH_STEP_SEND;
		case ACH_STEP_DONE:
			if (cur != ex)
				continue; /* the slot's token request ended: the call goes on */
			return ACH_STEP_DONE;
		case ACH_STEP_BLOCKED:
			/* the slot's token request may have ended, and been freed, in that step: look
			 * again from the caller's own exchange */
			cur = ach_exchange_waits_on_slot(ex) ? ex->slot->fetching : ex;
			*stepped = cur;
			if (cur->transfer != NULL || cur->store_wait)
				return ACH_STEP_BLOCKED; /* an answer another caller brings */
			continue;
		default:
			return step;
		}
	}
	return ACH_STEP_BLOCKED;
}
