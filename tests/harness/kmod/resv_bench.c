// SPDX-License-Identifier: GPL-2.0
/*
 * The reserve bench's uncontended table on the kernel's own dma_resv, as
 * the anchor for bufsync's figures (`cargo xtask bench-kernel`).
 *
 * For 1, 8 and 64 objects, ns per object of one frame, best of ROUNDS
 * interleaved rounds (each round runs the three rows once, one after the
 * other, so load hits them alike):
 *   sorted  plain mutexes locked in sorted order, then unlocked (the
 *           baseline: the same job without fences);
 *   same    ww_acquire_init on reservation_ww_class, dma_resv_lock +
 *           dma_resv_reserve_fences(1) per object, dma_resv_add_fence of the
 *           same fence every frame (writes on even objects, reads on odd),
 *           dma_resv_unlock, ww_acquire_fini;
 *   new     the same with a new fence every frame (all made up front, one
 *           context, rising seqnos: each add replaces the last frame's).
 * Everything runs in module init; each object count prints one line
 *   resv_bench: objects=N frames=F sorted_ps=A same_ps=B new_ps=C
 * (picoseconds per object) to the kernel log, then init returns 0.
 */
#include <linux/dma-fence.h>
#include <linux/dma-resv.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/spinlock.h>

#define MAX_OBJECTS 64
#define ROUNDS 31

static const char *resv_bench_name(struct dma_fence *f)
{
	return "resv_bench";
}

static const struct dma_fence_ops resv_bench_ops = {
	.get_driver_name = resv_bench_name,
	.get_timeline_name = resv_bench_name,
};

static DEFINE_SPINLOCK(resv_bench_lock);

struct bench {
	int n;
	struct dma_resv resv[MAX_OBJECTS];
	struct mutex plain[MAX_OBJECTS];
	int order[MAX_OBJECTS];
	u64 context;
	u64 seqno;
};

/* Frames of one round for n objects (the reserve bench's frames_for). */
static int frames_for(int n)
{
	return max(20000 / n, 500);
}

static u64 round_sorted(struct bench *b, int frames)
{
	int f, i, j, tmp, n = b->n;
	u64 t0 = ktime_get_ns();

	for (f = 0; f < frames; f++) {
		/* The baseline sorts its (already sorted) order every frame. */
		for (i = 1; i < n; i++)
			for (j = i; j > 0 && b->order[j - 1] > b->order[j]; j--) {
				tmp = b->order[j];
				b->order[j] = b->order[j - 1];
				b->order[j - 1] = tmp;
			}
		for (i = 0; i < n; i++)
			mutex_lock(&b->plain[b->order[i]]);
		for (i = n - 1; i >= 0; i--)
			mutex_unlock(&b->plain[b->order[i]]);
	}
	return ktime_get_ns() - t0;
}

/* One frame: lock and reserve every object, add `fence`, unlock. */
static int frame(struct bench *b, struct dma_fence *fence)
{
	struct ww_acquire_ctx ctx;
	int i, err;

	ww_acquire_init(&ctx, &reservation_ww_class);
	for (i = 0; i < b->n; i++) {
		/* Uncontended: -EDEADLK cannot happen, -ENOMEM can. */
		err = dma_resv_lock(&b->resv[i], &ctx);
		if (err)
			goto unwind;
		err = dma_resv_reserve_fences(&b->resv[i], 1);
		if (err) {
			i++;
			goto unwind;
		}
	}
	ww_acquire_done(&ctx);
	for (i = 0; i < b->n; i++)
		dma_resv_add_fence(&b->resv[i], fence,
				   i % 2 ? DMA_RESV_USAGE_READ : DMA_RESV_USAGE_WRITE);
	for (i = 0; i < b->n; i++)
		dma_resv_unlock(&b->resv[i]);
	ww_acquire_fini(&ctx);
	return 0;
unwind:
	/* Objects 0..i-1 are locked. */
	while (--i >= 0)
		dma_resv_unlock(&b->resv[i]);
	ww_acquire_fini(&ctx);
	return err;
}

static struct dma_fence *new_fence(struct bench *b)
{
	struct dma_fence *f = kzalloc(sizeof(*f), GFP_KERNEL);

	if (f)
		dma_fence_init(f, &resv_bench_ops, &resv_bench_lock, b->context,
			       ++b->seqno);
	return f;
}

static int round_same(struct bench *b, struct dma_fence *fence, int frames,
		      u64 *ns)
{
	int f, err = 0;
	u64 t0 = ktime_get_ns();

	for (f = 0; f < frames && !err; f++)
		err = frame(b, fence);
	*ns = ktime_get_ns() - t0;
	return err;
}

static int round_new(struct bench *b, int frames, u64 *ns)
{
	struct dma_fence **fences;
	int f, made, err = 0;
	u64 t0;

	fences = kvcalloc(frames, sizeof(*fences), GFP_KERNEL);
	if (!fences)
		return -ENOMEM;
	for (made = 0; made < frames; made++) {
		fences[made] = new_fence(b);
		if (!fences[made]) {
			err = -ENOMEM;
			break;
		}
	}
	if (!err) {
		t0 = ktime_get_ns();
		for (f = 0; f < frames && !err; f++)
			err = frame(b, fences[f]);
		*ns = ktime_get_ns() - t0;
	}
	while (--made >= 0)
		dma_fence_put(fences[made]);
	kvfree(fences);
	return err;
}

static int bench(int n)
{
	struct bench *b = kzalloc(sizeof(*b), GFP_KERNEL);
	u64 best_sorted = U64_MAX, best_same = U64_MAX, best_new = U64_MAX;
	u64 ns, per;
	struct dma_fence *same = NULL;
	int i, r, err = 0, frames = frames_for(n);

	if (!b)
		return -ENOMEM;
	b->n = n;
	b->context = dma_fence_context_alloc(1);
	for (i = 0; i < n; i++) {
		dma_resv_init(&b->resv[i]);
		mutex_init(&b->plain[i]);
		b->order[i] = n - 1 - i;
	}
	same = new_fence(b);
	if (!same) {
		err = -ENOMEM;
		goto out;
	}
	for (r = 0; r < ROUNDS && !err; r++) {
		best_sorted = min(best_sorted, round_sorted(b, frames));
		err = round_same(b, same, frames, &ns);
		best_same = min(best_same, ns);
		if (!err)
			err = round_new(b, frames, &ns);
		best_new = min(best_new, ns);
		cond_resched();
	}
	per = (u64)frames * n;
	if (!err)
		pr_info("resv_bench: objects=%d frames=%d sorted_ps=%llu same_ps=%llu new_ps=%llu\n",
			n, frames, div64_u64(best_sorted * 1000, per),
			div64_u64(best_same * 1000, per),
			div64_u64(best_new * 1000, per));
out:
	for (i = 0; i < n; i++) {
		dma_resv_fini(&b->resv[i]);
		mutex_destroy(&b->plain[i]);
	}
	if (same)
		dma_fence_put(same);
	kfree(b);
	return err;
}

static int __init resv_bench_init(void)
{
	static const int objects[] = { 1, 8, 64 };
	int i, err;

	for (i = 0; i < ARRAY_SIZE(objects); i++) {
		err = bench(objects[i]);
		if (err)
			return err;
	}
	pr_info("resv_bench: done\n");
	return 0;
}

static void __exit resv_bench_exit(void)
{
}

module_init(resv_bench_init);
module_exit(resv_bench_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("bufsync's uncontended reserve bench on the kernel's dma_resv");
