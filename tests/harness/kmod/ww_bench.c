// SPDX-License-Identifier: GPL-2.0
/*
 * The reserve bench's contended workload on the kernel's own ww_mutex, as
 * the anchor for bufsync's figures (`cargo xtask bench-kernel`).
 *
 * NLOCKS locks; for each thread count in `threads`, that many kthreads each
 * take random subsets of SUBSET locks in random order (a duplicate is
 * -EALREADY and skipped) and release them, for `ms` milliseconds per run:
 *   sorted     plain mutexes, subset sorted and deduplicated (the baseline);
 *   wait-die   ww_mutex of a DEFINE_WD_CLASS (the reservation class's kind);
 *   wound-wait ww_mutex of a DEFINE_WW_CLASS.
 * A ww run resolves -EDEADLK as drm_exec does: unlock everything,
 * ww_mutex_lock_slow() the contended lock, start over with the same context.
 * The threads are preempted where the kernel lets them be (each lock's
 * might_sleep(), that is also while they hold the locks taken before), not
 * at an extra cond_resched() between operations, which would spare them
 * preemption inside their critical sections.
 *
 * Everything runs in module init; each run prints one line
 *   ww_bench: threads=T mode=M ops=N ns=D backoffs=B
 * to the kernel log, then init returns 0 (rmmod unloads it).
 */
#include <linux/completion.h>
#include <linux/delay.h>
#include <linux/kthread.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/slab.h>
#include <linux/ww_mutex.h>

#define NLOCKS 16
#define SUBSET 4
#define MAX_THREADS 64

static int threads[8] = { 4, 2 };
static int nthreads_param = 2;
module_param_array_named(threads, threads, int, &nthreads_param, 0444);
MODULE_PARM_DESC(threads, "thread counts to run, in order (default 4,2)");

static int ms = 2000;
module_param(ms, int, 0444);
MODULE_PARM_DESC(ms, "length of each run in milliseconds (default 2000)");

DEFINE_WD_CLASS(ww_bench_wd_class);
DEFINE_WW_CLASS(ww_bench_ww_class);

enum mode { SORTED, WAIT_DIE, WOUND_WAIT };
static const char *const mode_names[] = { "sorted", "wait-die", "wound-wait" };

struct run {
	enum mode mode;
	struct mutex plain[NLOCKS];
	struct ww_mutex ww[NLOCKS];
	struct ww_class *class;
	struct completion start;
	int stop;
};

struct worker {
	struct run *run;
	struct task_struct *task;
	u64 rng;
	u64 ops;
	u64 backoffs;
};

static u64 xorshift(u64 *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

static void pick(struct worker *w, int *idx)
{
	int k;

	for (k = 0; k < SUBSET; k++)
		idx[k] = xorshift(&w->rng) % NLOCKS;
}

static void op_sorted(struct worker *w)
{
	int idx[SUBSET], i, j, n = 0, tmp;

	pick(w, idx);
	for (i = 1; i < SUBSET; i++)
		for (j = i; j > 0 && idx[j - 1] > idx[j]; j--) {
			tmp = idx[j];
			idx[j] = idx[j - 1];
			idx[j - 1] = tmp;
		}
	for (i = 0; i < SUBSET; i++)
		if (n == 0 || idx[n - 1] != idx[i])
			idx[n++] = idx[i];
	for (i = 0; i < n; i++)
		mutex_lock_nested(&w->run->plain[idx[i]], i);
	for (i = n - 1; i >= 0; i--)
		mutex_unlock(&w->run->plain[idx[i]]);
}

static void op_ww(struct worker *w)
{
	struct ww_mutex *locks = w->run->ww;
	struct ww_acquire_ctx ctx;
	int idx[SUBSET], held[SUBSET], nheld = 0, k, err;

	pick(w, idx);
	ww_acquire_init(&ctx, w->run->class);
retry:
	for (k = 0; k < SUBSET; k++) {
		err = ww_mutex_lock(&locks[idx[k]], &ctx);
		if (err == -EALREADY)
			continue;
		if (err == -EDEADLK) {
			while (nheld > 0)
				ww_mutex_unlock(&locks[held[--nheld]]);
			w->backoffs++;
			ww_mutex_lock_slow(&locks[idx[k]], &ctx);
			held[nheld++] = idx[k];
			goto retry;
		}
		held[nheld++] = idx[k];
	}
	ww_acquire_done(&ctx);
	while (nheld > 0)
		ww_mutex_unlock(&locks[held[--nheld]]);
	ww_acquire_fini(&ctx);
}

static int worker_fn(void *data)
{
	struct worker *w = data;
	struct run *run = w->run;

	wait_for_completion(&run->start);
	while (!READ_ONCE(run->stop)) {
		if (run->mode == SORTED)
			op_sorted(w);
		else
			op_ww(w);
		w->ops++;
	}
	set_current_state(TASK_INTERRUPTIBLE);
	while (!kthread_should_stop()) {
		schedule();
		set_current_state(TASK_INTERRUPTIBLE);
	}
	__set_current_state(TASK_RUNNING);
	return 0;
}

static int bench(enum mode mode, int nthreads)
{
	struct worker *workers;
	struct run *run;
	u64 t0, ns, ops = 0, backoffs = 0;
	int i, err = 0, started = 0;

	run = kzalloc(sizeof(*run), GFP_KERNEL);
	workers = kcalloc(nthreads, sizeof(*workers), GFP_KERNEL);
	if (!run || !workers) {
		err = -ENOMEM;
		goto out;
	}
	run->mode = mode;
	run->class = mode == WAIT_DIE ? &ww_bench_wd_class : &ww_bench_ww_class;
	for (i = 0; i < NLOCKS; i++) {
		mutex_init(&run->plain[i]);
		ww_mutex_init(&run->ww[i], run->class);
	}
	init_completion(&run->start);
	for (i = 0; i < nthreads; i++) {
		workers[i].run = run;
		workers[i].rng = 0x9E3779B97F4A7C15ull ^ ((u64)(i + 1) * 0xD1B54A32D192ED03ull);
		workers[i].task = kthread_run(worker_fn, &workers[i], "ww_bench/%d", i);
		if (IS_ERR(workers[i].task)) {
			err = PTR_ERR(workers[i].task);
			break;
		}
		started++;
	}
	t0 = ktime_get_ns();
	complete_all(&run->start);
	if (!err)
		msleep(ms);
	WRITE_ONCE(run->stop, 1);
	ns = ktime_get_ns() - t0;
	for (i = 0; i < started; i++) {
		kthread_stop(workers[i].task);
		ops += workers[i].ops;
		backoffs += workers[i].backoffs;
	}
	if (!err)
		pr_info("ww_bench: threads=%d mode=%s ops=%llu ns=%llu backoffs=%llu\n",
			nthreads, mode_names[mode], ops, ns, backoffs);
	for (i = 0; i < NLOCKS; i++) {
		mutex_destroy(&run->plain[i]);
		ww_mutex_destroy(&run->ww[i]);
	}
out:
	kfree(workers);
	kfree(run);
	return err;
}

static int __init ww_bench_init(void)
{
	int t, m, err;

	for (t = 0; t < nthreads_param; t++) {
		if (threads[t] < 1 || threads[t] > MAX_THREADS)
			return -EINVAL;
		for (m = SORTED; m <= WOUND_WAIT; m++) {
			err = bench(m, threads[t]);
			if (err)
				return err;
		}
	}
	pr_info("ww_bench: done\n");
	return 0;
}

static void __exit ww_bench_exit(void)
{
}

module_init(ww_bench_init);
module_exit(ww_bench_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bufsync's reserve bench workload on the kernel's ww_mutex");
