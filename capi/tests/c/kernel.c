/* libbufsync's C API on real kernel objects: sync_files from sw_sync
 * timelines, dma-bufs from udmabuf. fd ownership is checked by counting
 * the process's open fds around every step. Built with -Wall -Wextra
 * -Werror under AddressSanitizer + LeakSanitizer and run in the test VM
 * (capi/tests/vm_c.rs). */
#define _GNU_SOURCE
#include "check.h"

#include <linux/sync_file.h>
#include <linux/udmabuf.h>
#include <poll.h>
#include <stdatomic.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

static const uint64_t MS = 1000000ull;

/* drivers/dma-buf/sw_sync.c's private uapi (debugfs). */
struct sw_sync_create_fence_data {
    uint32_t value;
    char name[32];
    int32_t fence;
};
#define SW_SYNC_IOC_CREATE_FENCE _IOWR('W', 0, struct sw_sync_create_fence_data)
#define SW_SYNC_IOC_INC _IOW('W', 1, uint32_t)

static int timeline(void) {
    int fd = open("/sys/kernel/debug/sync/sw_sync", O_RDWR | O_CLOEXEC);
    CHECK(fd >= 0);
    return fd;
}

static int sw_fence(int tl, uint32_t value) {
    struct sw_sync_create_fence_data d;
    memset(&d, 0, sizeof d);
    d.value = value;
    snprintf(d.name, sizeof d.name, "capi-%u", value);
    CHECK(ioctl(tl, SW_SYNC_IOC_CREATE_FENCE, &d) == 0);
    return d.fence;
}

static void sw_inc(int tl, uint32_t by) { CHECK(ioctl(tl, SW_SYNC_IOC_INC, &by) == 0); }

/* Number of fences in a sync_file, -1 if it is not one. */
static int sync_file_fences(int fd) {
    struct sync_file_info info;
    memset(&info, 0, sizeof info);
    if (ioctl(fd, SYNC_IOC_FILE_INFO, &info) != 0)
        return -1;
    return (int)info.num_fences;
}

static int fd_readable_now(int fd) {
    struct pollfd p = {fd, POLLIN, 0};
    return poll(&p, 1, 0) == 1 && (p.revents & POLLIN);
}

/* A dma-buf of `size` bytes from a sealed memfd through /dev/udmabuf. */
static int udmabuf(size_t size) {
    int mfd = memfd_create("capi-udmabuf", MFD_ALLOW_SEALING | MFD_CLOEXEC);
    CHECK(mfd >= 0);
    CHECK(ftruncate(mfd, (off_t)size) == 0);
    CHECK(fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK) == 0);
    int dev = open("/dev/udmabuf", O_RDWR | O_CLOEXEC);
    CHECK(dev >= 0);
    struct udmabuf_create c;
    memset(&c, 0, sizeof c);
    c.memfd = (uint32_t)mfd;
    c.flags = UDMABUF_FLAGS_CLOEXEC;
    c.offset = 0;
    c.size = size;
    int buf = ioctl(dev, UDMABUF_CREATE, &c);
    CHECK(buf >= 0);
    close(dev);
    close(mfd);
    return buf;
}

static int status_of(const bufsync_fence *f) {
    int s = 42;
    CHECK_OK(bufsync_fence_get_status(f, &s));
    return s;
}

static void on_signal(const bufsync_fence *fence, void *user_data) {
    (void)fence;
    atomic_fetch_add((atomic_int *)user_data, 1);
}

/* Waits up to 2 s for *flag to become nonzero. */
static int eventually(atomic_int *flag) {
    for (int i = 0; i < 400 && !atomic_load(flag); i++) {
        struct timespec ts = {0, (long)(5 * MS)};
        nanosleep(&ts, NULL);
    }
    return atomic_load(flag);
}

/* Whether the open fd count comes back to `want` within 2 s: the
 * library's reactor thread drops its duplicate of a sync_file just after
 * it signals the fence, so a count right after a wait may race with it. */
static int fds_settle_to(int want) {
    for (int i = 0; i < 400 && open_fd_count() != want; i++) {
        struct timespec ts = {0, (long)(5 * MS)};
        nanosleep(&ts, NULL);
    }
    return open_fd_count() == want;
}

/* The open fd count once it has not changed for 30 ms (see fds_settle_to). */
static int settled_fd_count(void) {
    int last = open_fd_count(), same = 0;
    for (int i = 0; i < 200 && same < 3; i++) {
        struct timespec ts = {0, (long)(10 * MS)};
        nanosleep(&ts, NULL);
        int now = open_fd_count();
        same = now == last ? same + 1 : 0;
        last = now;
    }
    return last;
}

/* The library starts its reactor (an epoll fd, a wake-up fd, a thread) on
 * the first software wait on a kernel fence: start it before counting fds. */
static void warm_up(void) {
    int tl = timeline();
    int sf = sw_fence(tl, 1);
    bufsync_fence *f = NULL;
    CHECK_OK(bufsync_fence_import_sync_file(sf, &f));
    atomic_int called = 0;
    CHECK_OK(bufsync_fence_add_callback(f, on_signal, &called, NULL));
    sw_inc(tl, 1);
    CHECK(eventually(&called));
    bufsync_fence_destroy(f);
    close(sf);
    close(tl);
}

static void sync_file_roundtrip(void) {
    warm_up();
    int tl = timeline();
    int sf = sw_fence(tl, 1);
    int base = settled_fd_count();
    bufsync_fence *f = NULL;
    CHECK_OK(bufsync_fence_import_sync_file(sf, &f));
    /* Borrowed: the caller's fd is still its own, the library has a dup. */
    CHECK(fd_is_open(sf) && open_fd_count() == base + 1);
    CHECK(status_of(f) == 0);
    CHECK_RC(bufsync_fence_wait(f, 0), -ETIME);
    CHECK_RC(bufsync_fence_wait(f, 10 * MS), -ETIME);
    /* Export: a new fd, the caller's to close, the same kernel fence. */
    int e = -1;
    CHECK_OK(bufsync_fence_export_sync_file(f, &e));
    CHECK(e >= 0 && e != sf && open_fd_count() == base + 2);
    CHECK(sync_file_fences(e) == 1 && !fd_readable_now(e));
    /* A software waiter and a callback wake when the kernel signals. */
    atomic_int called = 0;
    CHECK_OK(bufsync_fence_add_callback(f, on_signal, &called, NULL));
    sw_inc(tl, 1);
    CHECK_OK(bufsync_fence_wait(f, 2000 * MS));
    CHECK(eventually(&called) && status_of(f) == 1);
    CHECK(fd_readable_now(e));
    close(e);
    /* Signaled: nothing to export. */
    CHECK_OK(bufsync_fence_export_sync_file(f, &e));
    CHECK(e == -1 && fds_settle_to(base + 1));
    bufsync_fence_destroy(f);
    CHECK(fds_settle_to(base) && fd_is_open(sf));
    close(sf);
    close(tl);
}

static void sync_file_merge_export(void) {
    warm_up();
    int ta = timeline(), tb = timeline();
    int fa = sw_fence(ta, 1), fb = sw_fence(tb, 2);
    int base = settled_fd_count();
    bufsync_fence *a = NULL, *b = NULL, *m = NULL;
    CHECK_OK(bufsync_fence_import_sync_file(fa, &a));
    CHECK_OK(bufsync_fence_import_sync_file(fb, &b));
    const bufsync_fence *list[] = {a, b};
    CHECK_OK(bufsync_fence_merge(list, 2, &m));
    int e = -1;
    CHECK_OK(bufsync_fence_export_sync_file(m, &e));
    CHECK(sync_file_fences(e) == 2);
    sw_inc(ta, 1);
    CHECK(!fd_readable_now(e));
    CHECK_RC(bufsync_fence_wait(m, 20 * MS), -ETIME);
    sw_inc(tb, 2);
    CHECK_OK(bufsync_fence_wait(m, 2000 * MS));
    CHECK(fd_readable_now(e));
    close(e);
    bufsync_fence_destroy(m);
    bufsync_fence_destroy(a);
    bufsync_fence_destroy(b);
    CHECK(fds_settle_to(base));
    close(fa);
    close(fb);
    close(ta);
    close(tb);
}

static void sync_file_error(void) {
    warm_up();
    int tl = timeline();
    int sf = sw_fence(tl, 1);
    bufsync_fence *f = NULL;
    CHECK_OK(bufsync_fence_import_sync_file(sf, &f));
    /* A closed sw_sync timeline signals its fences with an error; the
     * fence carries it, and so does a wait and an export. */
    close(tl);
    int rc = bufsync_fence_wait(f, 2000 * MS);
    CHECK(rc < 0 && rc != -ETIME);
    CHECK(status_of(f) == rc);
    int e = 7;
    CHECK_RC(bufsync_fence_export_sync_file(f, &e), rc);
    CHECK(e == 7);
    bufsync_fence_destroy(f);
    close(sf);
}

#define W 64
#define H 64
#define STRIDE 256
#define XR24 0x34325258u /* 'X' 'R' '2' '4' */

static bufsync_layout linear(uint32_t fourcc, uint32_t stride) {
    bufsync_layout l;
    memset(&l, 0, sizeof l);
    l.width = W;
    l.height = H;
    l.fourcc = fourcc;
    l.plane_count = 1;
    l.modifier = 0;
    l.planes[0].offset = 0;
    l.planes[0].stride = stride;
    return l;
}

static void dmabuf_import_layout(void) {
    int fd = udmabuf(STRIDE * H);
    int base = open_fd_count();
    bufsync_layout l = linear(XR24, STRIDE);
    bufsync_dmabuf *buf = NULL;
    CHECK_OK(bufsync_dmabuf_import(fd, &l, &buf));
    CHECK(fd_is_open(fd) && open_fd_count() == base + 1);
    CHECK(bufsync_dmabuf_size(buf) == STRIDE * H);
    int lib_fd = bufsync_dmabuf_fd(buf);
    CHECK(lib_fd >= 0 && lib_fd != fd && same_file(lib_fd, fd));
    bufsync_layout got;
    memset(&got, 0xff, sizeof got);
    CHECK_OK(bufsync_dmabuf_get_layout(buf, &got));
    CHECK(got.width == W && got.height == H && got.fourcc == XR24 &&
          got.plane_count == 1 && got.modifier == 0 && got.planes[0].stride == STRIDE);
    bufsync_dmabuf_destroy(buf);
    CHECK(open_fd_count() == base);
    /* Without a layout. */
    CHECK_OK(bufsync_dmabuf_import(fd, NULL, &buf));
    CHECK_RC(bufsync_dmabuf_get_layout(buf, &got), -ENOENT);
    bufsync_dmabuf_destroy(buf);
    /* Layouts that do not fit: refused, nothing kept. */
    buf = NULL;
    bufsync_layout narrow = linear(XR24, 100);
    CHECK_RC(bufsync_dmabuf_import(fd, &narrow, &buf), -EINVAL);
    CHECK(strstr(bufsync_last_error_message(), "stride") != NULL);
    bufsync_layout tall = linear(XR24, STRIDE);
    tall.height = 2 * H;
    CHECK_RC(bufsync_dmabuf_import(fd, &tall, &buf), -EINVAL);
    bufsync_layout unknown = linear(0x5a5a5a5au, STRIDE);
    CHECK_RC(bufsync_dmabuf_import(fd, &unknown, &buf), -EOPNOTSUPP);
    CHECK(buf == NULL && open_fd_count() == base && fd_is_open(fd));
    /* A sync_file is not a dma-buf. */
    int tl = timeline();
    int sf = sw_fence(tl, 1);
    CHECK_RC(bufsync_dmabuf_import(sf, NULL, &buf), -EINVAL);
    CHECK(fd_is_open(sf));
    close(sf);
    close(tl);
    close(fd);
}

static void dmabuf_implicit_fences(void) {
    warm_up();
    int fd = udmabuf(STRIDE * H);
    int tl = timeline();
    int sf = sw_fence(tl, 1);
    int base = settled_fd_count();
    bufsync_dmabuf *buf = NULL;
    CHECK_OK(bufsync_dmabuf_import(fd, NULL, &buf));

    /* No kernel fences yet: the snapshot is signaled. */
    int snap = -1;
    CHECK_OK(bufsync_dmabuf_export_sync_file(buf, BUFSYNC_ACCESS_WRITE, &snap));
    CHECK(snap >= 0 && fd_readable_now(snap));
    close(snap);
    CHECK_RC(bufsync_dmabuf_export_sync_file(buf, 9, &snap), -EINVAL);

    /* A kernel writer: IMPORT_SYNC_FILE borrows the fd. */
    CHECK_OK(bufsync_dmabuf_import_sync_file(buf, BUFSYNC_ACCESS_WRITE, sf));
    CHECK(fd_is_open(sf) && open_fd_count() == base + 1);
    CHECK_OK(bufsync_dmabuf_export_sync_file(buf, BUFSYNC_ACCESS_READ, &snap));
    CHECK(!fd_readable_now(snap));
    CHECK_RC(bufsync_dmabuf_import_sync_file(buf, BUFSYNC_ACCESS_WRITE, fd), -EINVAL);
    CHECK_RC(bufsync_dmabuf_import_sync_file(buf, BUFSYNC_ACCESS_WRITE, -1), -EBADF);

    /* Pull it into the runtime reservation: a reader's ticket waits for it. */
    bufsync_fence *pulled = NULL;
    CHECK_OK(bufsync_dmabuf_pull_kernel_fences(buf, BUFSYNC_ACCESS_READ, &pulled));
    CHECK(pulled != NULL && status_of(pulled) == 0);
    bufsync_reservation *resv = NULL;
    CHECK_OK(bufsync_dmabuf_get_reservation(buf, &resv));
    bufsync_ticket *t = NULL;
    CHECK_OK(bufsync_ticket_create(&t));
    bufsync_reserve_entry e[] = {{resv, BUFSYNC_ACCESS_READ}};
    CHECK_OK(bufsync_ticket_reserve(t, e, 1));
    bufsync_fence *set[2] = {NULL, NULL};
    size_t n = 0;
    CHECK_OK(bufsync_ticket_get_wait_set(t, set, 2, &n));
    CHECK(n == 1 && bufsync_fence_context(set[0]) == bufsync_fence_context(pulled));
    CHECK_RC(bufsync_ticket_wait(t, 0), -ETIME);
    sw_inc(tl, 1);
    CHECK_OK(bufsync_ticket_wait(t, 2000 * MS));
    CHECK(fd_readable_now(snap));
    close(snap);

    /* Push: a kernel-backed fence enters the kernel reservation, a
     * pending software fence cannot, a signaled one needs not. */
    bufsync_context *ctx = NULL;
    CHECK_OK(bufsync_context_create(NULL, NULL, &ctx));
    bufsync_fence *soft = NULL;
    CHECK_OK(bufsync_context_create_fence(ctx, &soft));
    CHECK_RC(bufsync_dmabuf_push_fence(buf, soft, BUFSYNC_ACCESS_READ), -ENODATA);
    CHECK_OK(bufsync_ticket_commit(t, soft));
    CHECK_OK(bufsync_fence_signal(soft));
    CHECK_RC(bufsync_dmabuf_push_fence(buf, soft, BUFSYNC_ACCESS_READ), 0);
    int sf2 = sw_fence(tl, 2);
    bufsync_fence *kernel = NULL;
    CHECK_OK(bufsync_fence_import_sync_file(sf2, &kernel));
    CHECK_RC(bufsync_dmabuf_push_fence(buf, kernel, BUFSYNC_ACCESS_READ), 1);
    /* A kernel reader: a writer's snapshot waits for it, a reader's not. */
    CHECK_OK(bufsync_dmabuf_export_sync_file(buf, BUFSYNC_ACCESS_WRITE, &snap));
    CHECK(!fd_readable_now(snap));
    close(snap);
    CHECK_OK(bufsync_dmabuf_export_sync_file(buf, BUFSYNC_ACCESS_READ, &snap));
    CHECK(fd_readable_now(snap));
    close(snap);
    sw_inc(tl, 1);

    bufsync_fence_destroy(set[0]);
    bufsync_fence_destroy(pulled);
    bufsync_fence_destroy(soft);
    bufsync_fence_destroy(kernel);
    bufsync_context_destroy(ctx);
    bufsync_ticket_destroy(t);
    bufsync_reservation_destroy(resv);
    bufsync_dmabuf_destroy(buf);
    close(sf2);
    CHECK(fds_settle_to(base));
    close(sf);
    close(tl);
    close(fd);
}

/* The library's fd of a buffer closes with the buffer's last reference:
 * handles, reservation handles and a ticket that holds it. */
static void dmabuf_fd_lifetime(void) {
    int fd = udmabuf(4096);
    int base = open_fd_count();
    bufsync_dmabuf *buf = NULL;
    CHECK_OK(bufsync_dmabuf_import(fd, NULL, &buf));
    bufsync_reservation *resv = NULL;
    CHECK_OK(bufsync_dmabuf_get_reservation(buf, &resv));
    bufsync_dmabuf_destroy(buf);
    CHECK(open_fd_count() == base + 1);
    bufsync_ticket *t = NULL;
    CHECK_OK(bufsync_ticket_create(&t));
    bufsync_reserve_entry e[] = {{resv, BUFSYNC_ACCESS_WRITE}};
    CHECK_OK(bufsync_ticket_reserve(t, e, 1));
    bufsync_reservation_destroy(resv);
    CHECK(open_fd_count() == base + 1);
    CHECK_OK(bufsync_ticket_backoff(t));
    CHECK(open_fd_count() == base);
    bufsync_ticket_destroy(t);
    CHECK(fd_is_open(fd));
    close(fd);
}

static const struct test_case TESTS[] = {
    {"sync_file_roundtrip", sync_file_roundtrip},
    {"sync_file_merge_export", sync_file_merge_export},
    {"sync_file_error", sync_file_error},
    {"dmabuf_import_layout", dmabuf_import_layout},
    {"dmabuf_implicit_fences", dmabuf_implicit_fences},
    {"dmabuf_fd_lifetime", dmabuf_fd_lifetime},
};

int main(int argc, char **argv) {
    return run_tests(TESTS, sizeof TESTS / sizeof TESTS[0], argc, argv);
}
