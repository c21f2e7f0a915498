/* Host tests of libbufsync's C API: fences, reservations, tickets, the
 * logging hook, fd ownership with fds any machine has (pipes, memfds),
 * NULL and bad arguments, and the panic boundary. Built with -Wall -Wextra
 * -Werror and run under AddressSanitizer + LeakSanitizer, one process per
 * test (capi/tests/c.rs). Kernel objects (sync_file, dma-buf) are in
 * kernel.c, run in the VM. */
#define _GNU_SOURCE
#include "check.h"

#include <pthread.h>
#include <sys/mman.h>
#include <time.h>

static const uint64_t MS = 1000000ull;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bufsync_context *context(void) {
    bufsync_context *ctx = NULL;
    CHECK_OK(bufsync_context_create("capi-test", "timeline", &ctx));
    CHECK(ctx != NULL);
    return ctx;
}

static bufsync_fence *new_fence(bufsync_context *ctx) {
    bufsync_fence *f = NULL;
    CHECK_OK(bufsync_context_create_fence(ctx, &f));
    CHECK(f != NULL);
    return f;
}

static int status_of(const bufsync_fence *f) {
    int s = 42;
    CHECK_OK(bufsync_fence_get_status(f, &s));
    return s;
}

/* ------------------------------------------------------------ versions */

static void version(void) {
    CHECK(bufsync_version() == BUFSYNC_VERSION);
    CHECK(BUFSYNC_VERSION == BUFSYNC_MAKE_VERSION(BUFSYNC_VERSION_MAJOR,
                                                  BUFSYNC_VERSION_MINOR,
                                                  BUFSYNC_VERSION_PATCH));
    char want[32];
    snprintf(want, sizeof want, "%u.%u.%u", BUFSYNC_VERSION_MAJOR,
             BUFSYNC_VERSION_MINOR, BUFSYNC_VERSION_PATCH);
    CHECK(strcmp(bufsync_version_string(), want) == 0);
    /* No call has failed yet on this thread. */
    CHECK(strcmp(bufsync_last_error_message(), "") == 0);
}

/* -------------------------------------------------------------- fences */

static void fence_signal_status(void) {
    bufsync_context *ctx = context();
    bufsync_fence *a = new_fence(ctx), *b = new_fence(ctx);
    CHECK(bufsync_fence_context(a) == bufsync_context_id(ctx));
    CHECK(bufsync_fence_context(a) != 0);
    CHECK(bufsync_fence_seqno(b) == bufsync_fence_seqno(a) + 1);
    CHECK(status_of(a) == 0);
    CHECK_OK(bufsync_fence_signal(a));
    CHECK(status_of(a) == 1);
    CHECK_OK(bufsync_fence_wait(a, 0));
    /* A second signal fails and changes nothing. */
    CHECK_RC(bufsync_fence_signal(a), -EALREADY);
    CHECK(strstr(bufsync_last_error_message(), "bufsync_fence_signal") != NULL);
    CHECK(status_of(a) == 1);
    /* A clone is the same fence. */
    bufsync_fence *c = NULL;
    CHECK_OK(bufsync_fence_clone(b, &c));
    CHECK(status_of(c) == 0);
    CHECK_OK(bufsync_fence_signal(c));
    CHECK(status_of(b) == 1);
    bufsync_fence_destroy(c);
    bufsync_fence_destroy(b);
    bufsync_fence_destroy(a);
    /* Fences outlive their context. */
    bufsync_fence *d = new_fence(ctx);
    bufsync_context_destroy(ctx);
    CHECK_OK(bufsync_fence_signal(d));
    bufsync_fence_destroy(d);
}

static void fence_signal_error(void) {
    bufsync_context *ctx = context();
    bufsync_fence *f = new_fence(ctx);
    CHECK_RC(bufsync_fence_signal_error(f, 0), -EINVAL);
    CHECK_RC(bufsync_fence_signal_error(f, ECANCELED), -EINVAL);
    CHECK(status_of(f) == 0);
    CHECK_OK(bufsync_fence_signal_error(f, -ECANCELED));
    CHECK(status_of(f) == -ECANCELED);
    CHECK_RC(bufsync_fence_wait(f, BUFSYNC_TIMEOUT_INFINITE), -ECANCELED);
    CHECK_RC(bufsync_fence_signal(f), -EALREADY);
    CHECK_RC(bufsync_fence_signal_error(f, -EIO), -EALREADY);
    CHECK(status_of(f) == -ECANCELED);
    /* A lost device, an errno bufsync has no name for. */
    bufsync_fence *g = new_fence(ctx), *h = new_fence(ctx);
    CHECK_OK(bufsync_fence_signal_error(g, -ENODEV));
    CHECK_RC(bufsync_fence_wait(g, 0), -ENODEV);
    CHECK_OK(bufsync_fence_signal_error(h, -EPROTO));
    CHECK(status_of(h) == -EPROTO);
    bufsync_fence_destroy(h);
    bufsync_fence_destroy(g);
    bufsync_fence_destroy(f);
    bufsync_context_destroy(ctx);
}

struct signal_later {
    bufsync_fence *fence;
    uint64_t after_ns;
};

static void *signal_later_thread(void *arg) {
    struct signal_later *s = arg;
    struct timespec ts = {0, (long)s->after_ns};
    nanosleep(&ts, NULL);
    CHECK_OK(bufsync_fence_signal(s->fence));
    return NULL;
}

static void fence_wait_timeout(void) {
    bufsync_context *ctx = context();
    bufsync_fence *f = new_fence(ctx);
    CHECK_RC(bufsync_fence_wait(f, 0), -ETIME);
    uint64_t t0 = now_ns();
    CHECK_RC(bufsync_fence_wait(f, 20 * MS), -ETIME);
    CHECK(now_ns() - t0 >= 20 * MS);
    /* A timeout ends the wait, never the fence. */
    CHECK(status_of(f) == 0);
    struct signal_later s = {f, 20 * MS};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, signal_later_thread, &s) == 0);
    CHECK_OK(bufsync_fence_wait(f, BUFSYNC_TIMEOUT_INFINITE));
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(status_of(f) == 1);
    bufsync_fence_destroy(f);
    bufsync_context_destroy(ctx);
}

struct cb_record {
    int calls;
    uint64_t seqno;
    int status;
    bufsync_fence *kept;
};

static void on_signal(const bufsync_fence *fence, void *user_data) {
    struct cb_record *r = user_data;
    r->calls++;
    r->seqno = bufsync_fence_seqno(fence);
    CHECK_OK(bufsync_fence_get_status(fence, &r->status));
    /* The handle is valid for the call; a clone keeps the fence. */
    CHECK_OK(bufsync_fence_clone(fence, &r->kept));
}

static void fence_callbacks(void) {
    bufsync_context *ctx = context();
    bufsync_fence *f = new_fence(ctx);
    struct cb_record first = {0, 0, 0, NULL}, second = {0, 0, 0, NULL};
    uint64_t id1 = 0, id2 = 0;
    CHECK_OK(bufsync_fence_add_callback(f, on_signal, &first, &id1));
    CHECK_OK(bufsync_fence_add_callback(f, on_signal, &second, &id2));
    CHECK(id1 != 0 && id2 != 0 && id1 != id2);
    CHECK_RC(bufsync_fence_remove_callback(f, id2), 1);
    CHECK_RC(bufsync_fence_remove_callback(f, id2), 0);
    CHECK_RC(bufsync_fence_remove_callback(f, 999999), 0);
    CHECK(first.calls == 0);
    CHECK_OK(bufsync_fence_signal_error(f, -ECANCELED));
    /* Callbacks ran on this thread, before signal returned, once. */
    CHECK(first.calls == 1 && second.calls == 0);
    CHECK(first.seqno == bufsync_fence_seqno(f));
    CHECK(first.status == -ECANCELED);
    CHECK(first.kept != NULL && status_of(first.kept) == -ECANCELED);
    CHECK_RC(bufsync_fence_remove_callback(f, id1), 0);
    /* On a signaled fence: -ENOENT, not added, not called. */
    CHECK_RC(bufsync_fence_add_callback(f, on_signal, &second, NULL), -ENOENT);
    CHECK(second.calls == 0);
    /* A callback without a function. */
    bufsync_fence *g = new_fence(ctx);
    CHECK_RC(bufsync_fence_add_callback(g, NULL, NULL, NULL), -EINVAL);
    /* A callback never called because it was removed frees nothing of ours. */
    CHECK_OK(bufsync_fence_add_callback(g, on_signal, &second, &id2));
    CHECK_RC(bufsync_fence_remove_callback(g, id2), 1);
    CHECK_OK(bufsync_fence_signal(g));
    CHECK(second.calls == 0);
    bufsync_fence_destroy(first.kept);
    bufsync_fence_destroy(g);
    bufsync_fence_destroy(f);
    bufsync_context_destroy(ctx);
}

static void fence_merge(void) {
    bufsync_context *a = context(), *b = context();
    bufsync_fence *a1 = new_fence(a), *a2 = new_fence(a), *b1 = new_fence(b);
    const bufsync_fence *list[] = {a1, b1, a2};
    bufsync_fence *m = NULL;
    CHECK_OK(bufsync_fence_merge(list, 3, &m));
    CHECK(status_of(m) == 0);
    /* One fence per context is kept, the latest: a2 stands for a1. */
    CHECK_OK(bufsync_fence_signal(a2));
    CHECK_OK(bufsync_fence_signal(b1));
    CHECK_OK(bufsync_fence_wait(m, 1000 * MS));
    CHECK(status_of(a1) == 0);
    CHECK_OK(bufsync_fence_signal(a1));
    bufsync_fence_destroy(m);

    /* An error of any member is the merge's error. */
    bufsync_fence *x = new_fence(a), *y = new_fence(b);
    CHECK_OK(bufsync_fence_signal_error(x, -EIO));
    const bufsync_fence *list2[] = {x, y};
    CHECK_OK(bufsync_fence_merge(list2, 2, &m));
    CHECK_OK(bufsync_fence_signal(y));
    CHECK_RC(bufsync_fence_wait(m, 1000 * MS), -EIO);
    bufsync_fence_destroy(m);

    /* Nothing to merge: a signaled fence. */
    CHECK_OK(bufsync_fence_merge(NULL, 0, &m));
    CHECK(status_of(m) == 1);
    bufsync_fence_destroy(m);
    /* Bad lists. */
    m = NULL;
    CHECK_RC(bufsync_fence_merge(NULL, 2, &m), -EINVAL);
    const bufsync_fence *holey[] = {x, NULL};
    CHECK_RC(bufsync_fence_merge(holey, 2, &m), -EINVAL);
    CHECK(strstr(bufsync_last_error_message(), "fences[1]") != NULL);
    CHECK_RC(bufsync_fence_merge(list2, 2, NULL), -EINVAL);
    CHECK(m == NULL);
    bufsync_fence_destroy(x);
    bufsync_fence_destroy(y);
    bufsync_fence_destroy(a1);
    bufsync_fence_destroy(a2);
    bufsync_fence_destroy(b1);
    bufsync_context_destroy(a);
    bufsync_context_destroy(b);
}

/* ---------------------------------------------------- fds (host-only) */

static void sync_file_fd_ownership(void) {
    int base = open_fd_count();
    bufsync_fence *f = NULL;
    /* Negative and closed fds. */
    CHECK_RC(bufsync_fence_import_sync_file(-1, &f), -EBADF);
    int p[2];
    CHECK(pipe(p) == 0);
    int closed = dup(p[0]);
    CHECK(closed >= 0);
    close(closed);
    CHECK_RC(bufsync_fence_import_sync_file(closed, &f), -EBADF);
    /* Not a sync_file: refused, and the caller's fd is untouched. */
    CHECK_RC(bufsync_fence_import_sync_file(p[0], &f), -EINVAL);
    CHECK(f == NULL);
    CHECK(fd_is_open(p[0]) && fd_is_open(p[1]));
    CHECK(write(p[1], "x", 1) == 1);
    char c;
    CHECK(read(p[0], &c, 1) == 1 && c == 'x');
    /* NULL out: nothing is duplicated. */
    CHECK_RC(bufsync_fence_import_sync_file(p[0], NULL), -EINVAL);
    close(p[0]);
    close(p[1]);
    CHECK(open_fd_count() == base);

    /* Export: a signaled fence needs no fd (-1), a pending software fence
     * has no kernel form, an error is the fence's. */
    bufsync_context *ctx = context();
    bufsync_fence *done = new_fence(ctx), *pending = new_fence(ctx),
                  *failed = new_fence(ctx);
    CHECK_OK(bufsync_fence_signal(done));
    CHECK_OK(bufsync_fence_signal_error(failed, -ECANCELED));
    int fd = 1234;
    CHECK_OK(bufsync_fence_export_sync_file(done, &fd));
    CHECK(fd == -1);
    fd = 1234;
    CHECK_RC(bufsync_fence_export_sync_file(pending, &fd), -ENODATA);
    CHECK_RC(bufsync_fence_export_sync_file(failed, &fd), -ECANCELED);
    CHECK(fd == 1234);
    CHECK_RC(bufsync_fence_export_sync_file(done, NULL), -EINVAL);
    CHECK_OK(bufsync_fence_signal(pending));
    bufsync_fence_destroy(done);
    bufsync_fence_destroy(pending);
    bufsync_fence_destroy(failed);
    bufsync_context_destroy(ctx);
    CHECK(open_fd_count() == base);
}

static void dmabuf_fd_ownership(void) {
    int base = open_fd_count();
    bufsync_dmabuf *buf = NULL;
    CHECK_RC(bufsync_dmabuf_import(-1, NULL, &buf), -EBADF);
    int mfd = memfd_create("not-a-dmabuf", MFD_CLOEXEC);
    CHECK(mfd >= 0);
    CHECK(ftruncate(mfd, 4096) == 0);
    /* A memfd is not a dma-buf: refused, the fd untouched. */
    CHECK_RC(bufsync_dmabuf_import(mfd, NULL, &buf), -EINVAL);
    CHECK(strstr(bufsync_last_error_message(), "not a dma-buf") != NULL);
    CHECK(buf == NULL && fd_is_open(mfd));
    /* A bad layout is refused before the fd is looked at. */
    bufsync_layout bad;
    memset(&bad, 0, sizeof bad);
    bad.width = 64;
    bad.height = 64;
    bad.plane_count = 5;
    CHECK_RC(bufsync_dmabuf_import(mfd, &bad, &buf), -EINVAL);
    CHECK(strstr(bufsync_last_error_message(), "plane_count") != NULL);
    CHECK_RC(bufsync_dmabuf_import(mfd, NULL, NULL), -EINVAL);
    CHECK(fd_is_open(mfd));
    close(mfd);
    CHECK(open_fd_count() == base);
}

/* ------------------------------------------------ reservations, tickets */

static bufsync_reservation *reservation(void) {
    bufsync_reservation *r = NULL;
    CHECK_OK(bufsync_reservation_create(&r));
    CHECK(r != NULL && bufsync_reservation_id(r) != 0);
    return r;
}

static bufsync_ticket *ticket(void) {
    bufsync_ticket *t = NULL;
    CHECK_OK(bufsync_ticket_create(&t));
    CHECK(t != NULL);
    return t;
}

static size_t wait_set_count(bufsync_ticket *t) {
    size_t n = 99;
    CHECK_OK(bufsync_ticket_get_wait_set(t, NULL, 0, &n));
    return n;
}

/* The design's frame: a writer commits its fence; a reader's wait set is
 * that fence; the reader commits its own; the next writer waits for it. */
static void ticket_frame_flow(void) {
    bufsync_context *ctx = context();
    bufsync_reservation *frame = reservation(), *other = reservation();
    bufsync_ticket *t = ticket();

    bufsync_reserve_entry w[] = {{frame, BUFSYNC_ACCESS_WRITE},
                                 {other, BUFSYNC_ACCESS_READ}};
    CHECK_OK(bufsync_ticket_reserve(t, w, 2));
    CHECK(wait_set_count(t) == 0);
    bufsync_fence *render = new_fence(ctx);
    CHECK_OK(bufsync_ticket_commit(t, render));
    CHECK_RC(bufsync_reservation_test_signaled(frame, BUFSYNC_USAGE_WRITE), 0);
    CHECK_RC(bufsync_reservation_test_signaled(frame, BUFSYNC_USAGE_KERNEL), 1);
    CHECK_RC(bufsync_reservation_wait(frame, BUFSYNC_USAGE_READ, 0), -ETIME);

    /* The reader waits for the writer. */
    bufsync_reserve_entry r[] = {{frame, BUFSYNC_ACCESS_READ}};
    CHECK_OK(bufsync_ticket_reserve(t, r, 1));
    bufsync_fence *set[4] = {NULL, NULL, NULL, NULL};
    size_t n = 0;
    CHECK_RC(bufsync_ticket_get_wait_set(t, set, 0, &n), -ENOSPC);
    CHECK(n == 1 && set[0] == NULL);
    CHECK_OK(bufsync_ticket_get_wait_set(t, set, 4, &n));
    CHECK(n == 1 && bufsync_fence_seqno(set[0]) == bufsync_fence_seqno(render));
    bufsync_fence *merged = NULL;
    CHECK_OK(bufsync_ticket_get_wait_fence(t, &merged));
    CHECK_RC(bufsync_ticket_wait(t, 5 * MS), -ETIME);
    CHECK_OK(bufsync_fence_signal(render));
    CHECK_OK(bufsync_ticket_wait(t, BUFSYNC_TIMEOUT_INFINITE));
    CHECK(status_of(merged) == 1);
    bufsync_fence *scanout = new_fence(ctx);
    CHECK_OK(bufsync_ticket_commit(t, scanout));

    /* The reservation holds the reader now (the signaled writer may be
     * pruned): the next writer waits for the scanout. */
    bufsync_fence *held[4];
    CHECK_OK(bufsync_reservation_get_fences(frame, BUFSYNC_USAGE_READ, held, 4, &n));
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        found |= bufsync_fence_seqno(held[i]) == bufsync_fence_seqno(scanout);
        bufsync_fence_destroy(held[i]);
    }
    CHECK(found);
    CHECK_OK(bufsync_ticket_reserve(t, w, 1));
    bufsync_fence *again[4];
    CHECK_OK(bufsync_ticket_get_wait_set(t, again, 4, &n));
    CHECK(n == 1 && bufsync_fence_seqno(again[0]) == bufsync_fence_seqno(scanout));
    bufsync_fence_destroy(again[0]);
    CHECK_OK(bufsync_ticket_backoff(t));
    CHECK_OK(bufsync_fence_signal(scanout));
    CHECK_RC(bufsync_reservation_test_signaled(frame, BUFSYNC_USAGE_BOOKKEEP), 1);

    bufsync_fence_destroy(set[0]);
    bufsync_fence_destroy(merged);
    bufsync_fence_destroy(render);
    bufsync_fence_destroy(scanout);
    bufsync_ticket_destroy(t);
    bufsync_reservation_destroy(frame);
    bufsync_reservation_destroy(other);
    bufsync_context_destroy(ctx);
}

static void ticket_misuse(void) {
    bufsync_context *ctx = context();
    bufsync_reservation *a = reservation(), *b = reservation();
    bufsync_ticket *t = ticket(), *u = ticket();
    bufsync_fence *f = new_fence(ctx);
    bufsync_reserve_entry e[] = {{a, BUFSYNC_ACCESS_WRITE}, {b, BUFSYNC_ACCESS_READ}};

    /* Nothing reserved. */
    CHECK_RC(bufsync_ticket_commit(t, f), -EINVAL);
    CHECK_RC(bufsync_ticket_backoff(t), -EINVAL);
    CHECK_RC(bufsync_ticket_wait(t, 0), -EINVAL);
    size_t n = 0;
    CHECK_RC(bufsync_ticket_get_wait_set(t, NULL, 0, &n), -EINVAL);
    /* Bad lists hold nothing afterwards. */
    CHECK_RC(bufsync_ticket_reserve(t, NULL, 2), -EINVAL);
    bufsync_reserve_entry bad_access[] = {{a, BUFSYNC_ACCESS_READ}, {b, 7}};
    CHECK_RC(bufsync_ticket_reserve(t, bad_access, 2), -EINVAL);
    CHECK(strstr(bufsync_last_error_message(), "entries[1].access") != NULL);
    bufsync_reserve_entry null_resv[] = {{a, BUFSYNC_ACCESS_READ}, {NULL, 0}};
    CHECK_RC(bufsync_ticket_reserve(t, null_resv, 2), -EINVAL);
    CHECK_OK(bufsync_ticket_set_timeout(u, 0));
    CHECK_OK(bufsync_ticket_reserve(u, e, 2)); /* free: nothing was held */
    CHECK_OK(bufsync_ticket_backoff(u));

    /* An empty list is a valid (empty) reservation. */
    CHECK_OK(bufsync_ticket_reserve(t, NULL, 0));
    CHECK(wait_set_count(t) == 0);
    CHECK_OK(bufsync_ticket_commit(t, f));

    /* Holding: a second reserve, a timeout change, a restart are refused. */
    CHECK_OK(bufsync_ticket_reserve(t, e, 2));
    CHECK_RC(bufsync_ticket_reserve(t, e, 2), -EBUSY);
    CHECK_RC(bufsync_ticket_set_timeout(t, 0), -EBUSY);
    CHECK_RC(bufsync_ticket_restart(t), -EBUSY);
    CHECK_RC(bufsync_ticket_commit(t, NULL), -EINVAL);
    /* Still reserved after the refused commit: another ticket times out. */
    CHECK_OK(bufsync_ticket_set_timeout(u, 10 * MS));
    CHECK_RC(bufsync_ticket_reserve(u, e, 2), -ETIME);
    /* Listing one reservation twice locks it once, writing if any entry writes. */
    CHECK_OK(bufsync_ticket_commit(t, f));
    bufsync_reserve_entry twice[] = {{b, BUFSYNC_ACCESS_READ}, {b, BUFSYNC_ACCESS_WRITE}};
    CHECK_OK(bufsync_ticket_reserve(t, twice, 2));
    bufsync_fence *g = new_fence(ctx);
    CHECK_OK(bufsync_ticket_commit(t, g));
    CHECK_RC(bufsync_reservation_test_signaled(b, BUFSYNC_USAGE_WRITE), 0);
    /* Wait set capacity too small: nothing handed out but the count. */
    bufsync_reserve_entry wb[] = {{b, BUFSYNC_ACCESS_WRITE}};
    CHECK_OK(bufsync_ticket_reserve(t, wb, 1));
    bufsync_fence *one = NULL;
    n = 0;
    CHECK_RC(bufsync_ticket_get_wait_set(t, &one, 0, &n), -ENOSPC);
    CHECK(n == 1 && one == NULL);
    CHECK_RC(bufsync_ticket_get_wait_set(t, &one, 1, NULL), -EINVAL);
    CHECK(one == NULL);
    /* Destroying a holding ticket backs off. */
    bufsync_ticket_destroy(t);
    CHECK_OK(bufsync_ticket_reserve(u, wb, 1));
    CHECK_OK(bufsync_ticket_backoff(u));
    CHECK_RC(bufsync_reservation_get_fences(b, 9, NULL, 0, &n), -EINVAL);
    CHECK_RC(bufsync_reservation_wait(b, 4, 0), -EINVAL);

    CHECK_OK(bufsync_fence_signal(f));
    CHECK_OK(bufsync_fence_signal(g));
    bufsync_fence_destroy(f);
    bufsync_fence_destroy(g);
    bufsync_ticket_destroy(u);
    bufsync_reservation_destroy(a);
    bufsync_reservation_destroy(b);
    bufsync_context_destroy(ctx);
}

/* ABBA and more: threads reserve overlapping lists in opposite orders;
 * the back-off inside reserve keeps them from deadlocking. */
#define CONTEND_RESV 4
#define CONTEND_ROUNDS 300

struct contend {
    bufsync_reservation **resv;
    int reverse;
    bufsync_context *ctx;
    uint64_t backoffs;
};

static void *contend_thread(void *arg) {
    struct contend *c = arg;
    bufsync_ticket *t = ticket();
    bufsync_reserve_entry e[CONTEND_RESV];
    for (int i = 0; i < CONTEND_RESV; i++) {
        int k = c->reverse ? CONTEND_RESV - 1 - i : i;
        e[i].reservation = c->resv[k];
        e[i].access = BUFSYNC_ACCESS_WRITE;
    }
    for (int round = 0; round < CONTEND_ROUNDS; round++) {
        CHECK_OK(bufsync_ticket_reserve(t, e, CONTEND_RESV));
        bufsync_fence *f = new_fence(c->ctx);
        /* Hold the locks a little so that the other thread contends. */
        sched_yield();
        CHECK_OK(bufsync_fence_signal(f));
        CHECK_OK(bufsync_ticket_commit(t, f));
        bufsync_fence_destroy(f);
    }
    c->backoffs = bufsync_ticket_backoffs(t);
    bufsync_ticket_destroy(t);
    return NULL;
}

static void ticket_contention(void) {
    bufsync_context *ctx = context();
    bufsync_reservation *resv[CONTEND_RESV];
    for (int i = 0; i < CONTEND_RESV; i++)
        resv[i] = reservation();
    struct contend c[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        c[i] = (struct contend){resv, i % 2, ctx, 0};
        CHECK(pthread_create(&th[i], NULL, contend_thread, &c[i]) == 0);
    }
    uint64_t backoffs = 0;
    for (int i = 0; i < 4; i++) {
        CHECK(pthread_join(th[i], NULL) == 0);
        backoffs += c[i].backoffs;
    }
    fprintf(stderr, "ticket_contention: %d reserves, %llu back-offs\n",
            4 * CONTEND_ROUNDS, (unsigned long long)backoffs);
    for (int i = 0; i < CONTEND_RESV; i++) {
        CHECK_RC(bufsync_reservation_test_signaled(resv[i], BUFSYNC_USAGE_BOOKKEEP), 1);
        bufsync_reservation_destroy(resv[i]);
    }
    bufsync_context_destroy(ctx);
}

struct blocked {
    bufsync_ticket *t;
    bufsync_reservation *r;
    int rc;
};

static void *blocked_reserve(void *arg) {
    struct blocked *b = arg;
    bufsync_reserve_entry e[] = {{b->r, BUFSYNC_ACCESS_WRITE}};
    b->rc = bufsync_ticket_reserve(b->t, e, 1);
    if (b->rc == 0)
        CHECK_OK(bufsync_ticket_backoff(b->t));
    return NULL;
}

static void ticket_cancel(void) {
    bufsync_reservation *r = reservation();
    bufsync_ticket *holder = ticket(), *waiter = ticket();
    bufsync_reserve_entry e[] = {{r, BUFSYNC_ACCESS_WRITE}};
    CHECK_OK(bufsync_ticket_reserve(holder, e, 1));
    struct blocked b = {waiter, r, 1};
    pthread_t th;
    CHECK(pthread_create(&th, NULL, blocked_reserve, &b) == 0);
    struct timespec ts = {0, (long)(30 * MS)};
    nanosleep(&ts, NULL);
    /* From another thread while the waiter is inside reserve. */
    CHECK_OK(bufsync_ticket_cancel(waiter));
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(b.rc == -ECANCELED);
    /* The cancel stays until restart: a reserve that would wait returns
     * at once. */
    uint64_t t0 = now_ns();
    CHECK_RC(bufsync_ticket_reserve(waiter, e, 1), -ECANCELED);
    CHECK(now_ns() - t0 < 1000 * MS);
    CHECK_OK(bufsync_ticket_restart(waiter));
    CHECK_OK(bufsync_ticket_set_timeout(waiter, 10 * MS));
    CHECK_RC(bufsync_ticket_reserve(waiter, e, 1), -ETIME);
    CHECK_OK(bufsync_ticket_backoff(holder));
    CHECK_OK(bufsync_ticket_reserve(waiter, e, 1));
    CHECK_OK(bufsync_ticket_backoff(waiter));
    CHECK_RC(bufsync_ticket_cancel(NULL), -EINVAL);
    bufsync_ticket_destroy(holder);
    bufsync_ticket_destroy(waiter);
    bufsync_reservation_destroy(r);
}

/* ------------------------------------------------- NULL and bad input */

static void null_arguments(void) {
    bufsync_context *ctx = NULL;
    bufsync_fence *f = NULL;
    int s = 0;
    size_t n = 0;
    uint64_t id = 0;
    bufsync_layout layout;
    CHECK_RC(bufsync_context_create(NULL, NULL, NULL), -EINVAL);
    CHECK(strstr(bufsync_last_error_message(), "out is NULL") != NULL);
    CHECK_RC(bufsync_context_create_fence(NULL, &f), -EINVAL);
    CHECK(bufsync_context_id(NULL) == 0);
    CHECK_OK(bufsync_context_create(NULL, NULL, &ctx)); /* default names */
    CHECK_RC(bufsync_context_create_fence(ctx, NULL), -EINVAL);
    CHECK_RC(bufsync_fence_clone(NULL, &f), -EINVAL);
    CHECK_RC(bufsync_fence_signal(NULL), -EINVAL);
    CHECK_RC(bufsync_fence_signal_error(NULL, -EIO), -EINVAL);
    CHECK_RC(bufsync_fence_get_status(NULL, &s), -EINVAL);
    CHECK_RC(bufsync_fence_wait(NULL, 0), -EINVAL);
    CHECK_RC(bufsync_fence_add_callback(NULL, on_signal, NULL, &id), -EINVAL);
    CHECK_RC(bufsync_fence_remove_callback(NULL, 1), -EINVAL);
    CHECK_RC(bufsync_fence_export_sync_file(NULL, &s), -EINVAL);
    CHECK(bufsync_fence_context(NULL) == 0 && bufsync_fence_seqno(NULL) == 0);
    f = new_fence(ctx);
    CHECK_RC(bufsync_fence_get_status(f, NULL), -EINVAL);
    CHECK_RC(bufsync_fence_clone(f, NULL), -EINVAL);
    CHECK_RC(bufsync_reservation_create(NULL), -EINVAL);
    CHECK_RC(bufsync_reservation_test_signaled(NULL, 0), -EINVAL);
    CHECK_RC(bufsync_reservation_wait(NULL, 0, 0), -EINVAL);
    CHECK_RC(bufsync_reservation_get_fences(NULL, 0, NULL, 0, &n), -EINVAL);
    CHECK(bufsync_reservation_id(NULL) == 0);
    CHECK_RC(bufsync_ticket_create(NULL), -EINVAL);
    CHECK_RC(bufsync_ticket_reserve(NULL, NULL, 0), -EINVAL);
    CHECK_RC(bufsync_ticket_commit(NULL, f), -EINVAL);
    CHECK_RC(bufsync_ticket_backoff(NULL), -EINVAL);
    CHECK_RC(bufsync_ticket_wait(NULL, 0), -EINVAL);
    CHECK_RC(bufsync_ticket_get_wait_fence(NULL, &f), -EINVAL);
    CHECK_RC(bufsync_ticket_get_wait_set(NULL, NULL, 0, &n), -EINVAL);
    CHECK_RC(bufsync_ticket_set_timeout(NULL, 0), -EINVAL);
    CHECK_RC(bufsync_ticket_restart(NULL), -EINVAL);
    CHECK(bufsync_ticket_backoffs(NULL) == 0);
    CHECK_RC(bufsync_dmabuf_get_layout(NULL, &layout), -EINVAL);
    CHECK_RC(bufsync_dmabuf_get_reservation(NULL, NULL), -EINVAL);
    CHECK_RC(bufsync_dmabuf_export_sync_file(NULL, 0, &s), -EINVAL);
    CHECK_RC(bufsync_dmabuf_import_sync_file(NULL, 0, 0), -EINVAL);
    CHECK_RC(bufsync_dmabuf_pull_kernel_fences(NULL, 0, NULL), -EINVAL);
    CHECK_RC(bufsync_dmabuf_push_fence(NULL, f, 0), -EINVAL);
    CHECK(bufsync_dmabuf_fd(NULL) == -1 && bufsync_dmabuf_size(NULL) == 0);
    /* The presenter: NULL everywhere, and a device without its handles. */
    bufsync_presenter *p = NULL;
    bufsync_presenter_info pinfo;
    bufsync_frame frame;
    bufsync_capture cap;
    bufsync_present_totals totals;
    bufsync_vulkan_device vkdev;
    memset(&vkdev, 0, sizeof vkdev);
    bufsync_presenter_options popts;
    memset(&popts, 0, sizeof popts);
    popts.display = "vkms";
    popts.display_fd = -1;
    CHECK_RC(bufsync_presenter_create_vulkan(NULL, &popts, &p), -EINVAL);
    CHECK_RC(bufsync_presenter_create_vulkan(&vkdev, &popts, &p), -EINVAL);
    CHECK(strstr(bufsync_last_error_message(), "instance") != NULL);
    CHECK_RC(bufsync_presenter_create_vulkan(&vkdev, NULL, &p), -EINVAL);
    CHECK_RC(bufsync_presenter_create_vulkan(&vkdev, &popts, NULL), -EINVAL);
    CHECK(p == NULL);
    CHECK_RC(bufsync_presenter_get_info(NULL, &pinfo), -EINVAL);
    CHECK_RC(bufsync_presenter_describe(NULL, NULL, 0, NULL), -EINVAL);
    CHECK_RC(bufsync_presenter_acquire(NULL, 0, &frame), -EINVAL);
    CHECK_RC(bufsync_presenter_present(NULL, 0, NULL, 0), -EINVAL);
    CHECK_RC(bufsync_presenter_present_fence(NULL, 0, NULL), -EINVAL);
    CHECK_RC(bufsync_presenter_cancel(NULL, 0), -EINVAL);
    CHECK_RC(bufsync_presenter_wait_idle(NULL, 0), -EINVAL);
    CHECK_RC(bufsync_presenter_dispatch(NULL), -EINVAL);
    CHECK_RC(bufsync_presenter_get_totals(NULL, &totals), -EINVAL);
    CHECK_RC(bufsync_presenter_enable_capture(NULL), -EINVAL);
    CHECK_RC(bufsync_presenter_next_capture(NULL, false, &cap), -EINVAL);
    CHECK(bufsync_presenter_fd(NULL) == -1);
    bufsync_presenter_destroy(NULL);
    CHECK_OK(bufsync_log(BUFSYNC_LOG_ERROR, NULL));
    /* Destroying NULL does nothing. */
    bufsync_context_destroy(NULL);
    bufsync_fence_destroy(NULL);
    bufsync_reservation_destroy(NULL);
    bufsync_ticket_destroy(NULL);
    bufsync_dmabuf_destroy(NULL);
    /* A name that is not UTF-8. */
    bufsync_context *bad = NULL;
    CHECK_RC(bufsync_context_create("\xff\xfe", NULL, &bad), -EINVAL);
    CHECK(bad == NULL);
    CHECK_OK(bufsync_fence_signal(f));
    bufsync_fence_destroy(f);
    bufsync_context_destroy(ctx);
}

/* ------------------------------------------------------------- panics */

struct log_record {
    int lines;
    uint32_t level;
    char target[128];
    char message[512];
    int errors;
    int reentry_rc;
};

static void on_log(void *user_data, uint32_t level, const char *target,
                   const char *message) {
    struct log_record *r = user_data;
    r->lines++;
    r->level = level;
    snprintf(r->target, sizeof r->target, "%s", target);
    snprintf(r->message, sizeof r->message, "%s", message);
    if (level == BUFSYNC_LOG_ERROR)
        r->errors++;
    if (strcmp(message, "reenter") == 0) {
        /* Calls from inside the callback: refused, or not forwarded. */
        r->reentry_rc = bufsync_set_log_callback(NULL, NULL, 0);
        bufsync_log(BUFSYNC_LOG_ERROR, "nested");
    }
}

static void panic_is_an_error_code(void) {
    struct log_record rec;
    memset(&rec, 0, sizeof rec);
    CHECK_OK(bufsync_set_log_callback(on_log, &rec, BUFSYNC_LOG_WARN));
    CHECK_RC(bufsync_test_panic(), BUFSYNC_EPANIC);
    CHECK(BUFSYNC_EPANIC == -ENOTRECOVERABLE);
    const char *msg = bufsync_last_error_message();
    CHECK(strstr(msg, "bufsync_test_panic") != NULL);
    CHECK(strstr(msg, "panic") != NULL);
    /* The panic was logged, not printed. */
    CHECK(rec.errors == 1 && strstr(rec.message, "panicked") != NULL);
    /* The library stays usable, also after a second panic. */
    CHECK_RC(bufsync_test_panic(), BUFSYNC_EPANIC);
    bufsync_context *ctx = context();
    bufsync_fence *f = new_fence(ctx);
    CHECK_OK(bufsync_fence_signal(f));
    bufsync_fence_destroy(f);
    bufsync_context_destroy(ctx);
    CHECK_OK(bufsync_set_log_callback(NULL, NULL, 0));
}

static void *fail_in_thread(void *arg) {
    (void)arg;
    CHECK_RC(bufsync_fence_signal(NULL), -EINVAL);
    CHECK(strstr(bufsync_last_error_message(), "bufsync_fence_signal") != NULL);
    return NULL;
}

static void last_error_is_per_thread(void) {
    CHECK_RC(bufsync_ticket_backoff(NULL), -EINVAL);
    pthread_t th;
    CHECK(pthread_create(&th, NULL, fail_in_thread, NULL) == 0);
    CHECK(pthread_join(th, NULL) == 0);
    CHECK(strstr(bufsync_last_error_message(), "bufsync_ticket_backoff") != NULL);
    /* A successful call leaves the message as it was. */
    bufsync_context *ctx = context();
    CHECK(strstr(bufsync_last_error_message(), "bufsync_ticket_backoff") != NULL);
    bufsync_context_destroy(ctx);
}

/* ------------------------------------------------------------ logging */

static void log_hook(void) {
    struct log_record rec;
    memset(&rec, 0, sizeof rec);
    /* Silent until a callback is set. */
    CHECK_OK(bufsync_log(BUFSYNC_LOG_ERROR, "before"));
    CHECK_OK(bufsync_set_log_callback(on_log, &rec, BUFSYNC_LOG_INFO));
    CHECK_OK(bufsync_log(BUFSYNC_LOG_INFO, "hello"));
    CHECK(rec.lines == 1 && rec.level == BUFSYNC_LOG_INFO);
    CHECK(strcmp(rec.target, "bufsync_capi") == 0 && strcmp(rec.message, "hello") == 0);
    CHECK_OK(bufsync_log(BUFSYNC_LOG_DEBUG, "filtered"));
    CHECK(rec.lines == 1);
    /* Raising the level. */
    CHECK_OK(bufsync_set_log_callback(on_log, &rec, BUFSYNC_LOG_TRACE));
    CHECK_OK(bufsync_log(BUFSYNC_LOG_TRACE, "trace"));
    CHECK(rec.lines == 2 && rec.level == BUFSYNC_LOG_TRACE);
    /* Re-entry from the callback: setting is refused, nested lines dropped. */
    CHECK_OK(bufsync_log(BUFSYNC_LOG_WARN, "reenter"));
    CHECK(rec.lines == 3 && rec.reentry_rc == -EDEADLK);
    CHECK(strcmp(rec.message, "reenter") == 0);
    /* Off. */
    CHECK_OK(bufsync_set_log_callback(NULL, NULL, BUFSYNC_LOG_TRACE));
    CHECK_OK(bufsync_log(BUFSYNC_LOG_ERROR, "after"));
    CHECK(rec.lines == 3);
}

/* Not a test of the library: leaks a fence handle on purpose, to show
 * that the harness catches leaks (capi/tests/c.rs expects it to fail). */
static void selftest_leak_is_caught(void) {
    bufsync_context *ctx = context();
    bufsync_fence *f = new_fence(ctx);
    CHECK_OK(bufsync_fence_signal(f));
    bufsync_context_destroy(ctx);
}

static const struct test_case TESTS[] = {
    {"selftest_leak_is_caught", selftest_leak_is_caught},
    {"version", version},
    {"fence_signal_status", fence_signal_status},
    {"fence_signal_error", fence_signal_error},
    {"fence_wait_timeout", fence_wait_timeout},
    {"fence_callbacks", fence_callbacks},
    {"fence_merge", fence_merge},
    {"sync_file_fd_ownership", sync_file_fd_ownership},
    {"dmabuf_fd_ownership", dmabuf_fd_ownership},
    {"ticket_frame_flow", ticket_frame_flow},
    {"ticket_misuse", ticket_misuse},
    {"ticket_contention", ticket_contention},
    {"ticket_cancel", ticket_cancel},
    {"null_arguments", null_arguments},
    {"panic_is_an_error_code", panic_is_an_error_code},
    {"last_error_is_per_thread", last_error_is_per_thread},
    {"log_hook", log_hook},
};

int main(int argc, char **argv) {
    return run_tests(TESTS, sizeof TESTS / sizeof TESTS[0], argc, argv);
}
