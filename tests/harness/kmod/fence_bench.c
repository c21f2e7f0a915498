// SPDX-License-Identifier: GPL-2.0
/*
 * The fence bench's signal and callback rows on the kernel's own dma_fence,
 * as the anchor for bufsync's figures (`cargo xtask bench-kernel`).
 *
 * Each row is ns per fence, best of its rounds, next to its baseline:
 *   signal             dma_fence_signal of fresh fences nobody waits for
 *                      (batches of 2048), against mutex lock + unlock;
 *   signal_timestamp   dma_fence_signal_timestamp with one ktime_get per
 *                      batch, against the same;
 *   clock              ktime_get, the read every dma_fence_signal takes;
 *   callback           kmalloc a callback, dma_fence_add_callback,
 *                      dma_fence_signal (the callback counts and frees
 *                      itself), 20000 fences a round, against: kmalloc a
 *                      closure, add it to a list under a mutex, take the
 *                      list under the mutex, run it (it counts and frees);
 *   callback_timestamp the same with dma_fence_signal_timestamp.
 * Fences are initialized before each round, outside the timing. Everything
 * runs in module init; each row prints one line
 *   fence_bench: row=R ps=V baseline_ps=B
 * (picoseconds per fence) to the kernel log, then init returns 0.
 */
#include <linux/dma-fence.h>
#include <linux/ktime.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

#define BATCH 2048
#define CALLBACKS 20000

static const char *fence_bench_name(struct dma_fence *f)
{
	return "fence_bench";
}

static const struct dma_fence_ops fence_bench_ops = {
	.get_driver_name = fence_bench_name,
	.get_timeline_name = fence_bench_name,
};

static DEFINE_SPINLOCK(fence_bench_lock);
static DEFINE_MUTEX(fence_bench_mutex);
static atomic64_t fence_bench_count = ATOMIC64_INIT(0);

struct bench_cb {
	struct dma_fence_cb cb;
	atomic64_t *counter;
};

static void bench_cb_fn(struct dma_fence *f, struct dma_fence_cb *cb)
{
	struct bench_cb *w = container_of(cb, struct bench_cb, cb);

	atomic64_inc(w->counter);
	kfree(w);
}

struct closure {
	struct list_head link;
	void (*fn)(struct closure *c);
	atomic64_t *counter;
};

static void closure_fn(struct closure *c)
{
	atomic64_inc(c->counter);
	kfree(c);
}

static void init_fences(struct dma_fence *fences, int n, u64 context)
{
	int i;

	for (i = 0; i < n; i++)
		dma_fence_init(&fences[i], &fence_bench_ops, &fence_bench_lock,
			       context, i + 1);
}

/*
 * ps per fence of the best of `rounds` rounds over `n` fresh fences: signal
 * each (dma_fence_signal, or dma_fence_signal_timestamp with one ktime_get
 * per round), after adding a kmalloc'ed callback first if `callback`.
 * 0 on -ENOMEM (the fences of the round not reached have no callback).
 */
static u64 fence_rounds(struct dma_fence *fences, int n, u64 context,
			int rounds, bool callback, bool timestamped)
{
	u64 best = U64_MAX, t0;
	struct bench_cb *w;
	ktime_t at;
	int r, i;

	for (r = 0; r < rounds; r++) {
		init_fences(fences, n, context);
		t0 = ktime_get_ns();
		at = ktime_get();
		for (i = 0; i < n; i++) {
			if (callback) {
				w = kmalloc(sizeof(*w), GFP_KERNEL);
				if (!w)
					return 0;
				w->counter = &fence_bench_count;
				if (dma_fence_add_callback(&fences[i], &w->cb,
							   bench_cb_fn))
					kfree(w);
			}
			if (timestamped)
				dma_fence_signal_timestamp(&fences[i], at);
			else
				dma_fence_signal(&fences[i]);
		}
		best = min(best, ktime_get_ns() - t0);
		cond_resched();
	}
	return div64_u64(best * 1000, n);
}

/*
 * ps per step of the best of `rounds` rounds of CALLBACKS steps: a mutex
 * lock + unlock (the signal rows' baseline), or a ktime_get if `clock`.
 */
static u64 step_rounds(int rounds, bool clock)
{
	u64 best = U64_MAX, t0;
	int r, i;

	for (r = 0; r < rounds; r++) {
		t0 = ktime_get_ns();
		for (i = 0; i < CALLBACKS; i++) {
			if (clock) {
				barrier_data((void *)(unsigned long)ktime_get());
			} else {
				mutex_lock(&fence_bench_mutex);
				mutex_unlock(&fence_bench_mutex);
			}
		}
		best = min(best, ktime_get_ns() - t0);
		cond_resched();
	}
	return div64_u64(best * 1000, CALLBACKS);
}

/* The callbacks' baseline: a closure on a mutex-guarded list. */
static u64 closure_rounds(int rounds)
{
	u64 best = U64_MAX, t0;
	struct closure *c, *next;
	LIST_HEAD(list);
	LIST_HEAD(taken);
	int r, i;

	for (r = 0; r < rounds; r++) {
		t0 = ktime_get_ns();
		for (i = 0; i < CALLBACKS; i++) {
			c = kmalloc(sizeof(*c), GFP_KERNEL);
			if (!c)
				return 0;
			c->fn = closure_fn;
			c->counter = &fence_bench_count;
			mutex_lock(&fence_bench_mutex);
			list_add_tail(&c->link, &list);
			mutex_unlock(&fence_bench_mutex);
			mutex_lock(&fence_bench_mutex);
			list_splice_init(&list, &taken);
			mutex_unlock(&fence_bench_mutex);
			list_for_each_entry_safe(c, next, &taken, link) {
				list_del(&c->link);
				c->fn(c);
			}
		}
		best = min(best, ktime_get_ns() - t0);
		cond_resched();
	}
	return div64_u64(best * 1000, CALLBACKS);
}

static void row(const char *name, u64 ps, u64 baseline_ps)
{
	pr_info("fence_bench: row=%s ps=%llu baseline_ps=%llu\n", name, ps,
		baseline_ps);
}

static int __init fence_bench_init(void)
{
	struct dma_fence *fences;
	u64 context = dma_fence_context_alloc(1);
	u64 mutex_ps, closure_ps, cb, cb_ts;

	fences = kvcalloc(CALLBACKS, sizeof(*fences), GFP_KERNEL);
	if (!fences)
		return -ENOMEM;
	mutex_ps = step_rounds(100, false);
	row("signal", fence_rounds(fences, BATCH, context, 200, false, false),
	    mutex_ps);
	row("signal_timestamp",
	    fence_rounds(fences, BATCH, context, 200, false, true), mutex_ps);
	row("clock", step_rounds(100, true), mutex_ps);
	closure_ps = closure_rounds(30);
	cb = fence_rounds(fences, CALLBACKS, context, 30, true, false);
	cb_ts = fence_rounds(fences, CALLBACKS, context, 30, true, true);
	/* No fence holds a reference or a callback any more: plain memory. */
	kvfree(fences);
	if (!closure_ps || !cb || !cb_ts)
		return -ENOMEM;
	row("callback", cb, closure_ps);
	row("callback_timestamp", cb_ts, closure_ps);
	pr_info("fence_bench: done\n");
	return 0;
}

static void __exit fence_bench_exit(void)
{
}

module_init(fence_bench_init);
module_exit(fence_bench_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bufsync's fence bench rows on the kernel's dma_fence");
