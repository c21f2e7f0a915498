/* A minimal test harness for the C tests of libbufsync: each test is a
 * function; `prog NAME` runs one (in its own process, so that
 * LeakSanitizer checks each), `prog --list` names them all. */
#ifndef BUFSYNC_CHECK_H
#define BUFSYNC_CHECK_H

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <bufsync.h>

#define CHECK(cond)                                                          \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n",    \
                    __FILE__, __LINE__, #cond, bufsync_last_error_message()); \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

/* `expr` must return exactly `want` (an int). */
#define CHECK_RC(expr, want)                                                 \
    do {                                                                     \
        int rc_ = (expr);                                                    \
        if (rc_ != (want)) {                                                 \
            fprintf(stderr, "%s:%d: %s returned %d (%s), wanted %d (%s)\n"  \
                    "  last error: %s\n",                                    \
                    __FILE__, __LINE__, #expr, rc_, strerror(-rc_), (want),  \
                    strerror(-(want)), bufsync_last_error_message());        \
            exit(1);                                                         \
        }                                                                    \
    } while (0)

#define CHECK_OK(expr) CHECK_RC(expr, 0)

struct test_case {
    const char *name;
    void (*run)(void);
};

/* Open fds of this process (entries of /proc/self/fd, minus the one
 * opendir holds). */
static inline int open_fd_count(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d)
        return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", "..", and the directory's own fd */
}

/* Whether `fd` is open. */
static inline int fd_is_open(int fd) { return fcntl(fd, F_GETFD) != -1; }

/* Whether `a` and `b` are the same open file (same inode and device). */
static inline int same_file(int a, int b) {
    struct stat sa, sb;
    return fstat(a, &sa) == 0 && fstat(b, &sb) == 0 && sa.st_ino == sb.st_ino &&
           sa.st_dev == sb.st_dev;
}

/* Runs a test on a thread of its own and joins it: LeakSanitizer then
 * scans no stale stack of the test (the main thread's stack keeps old
 * pointers that would hide leaks). */
static inline void *run_on_thread(void *arg) {
    ((const struct test_case *)arg)->run();
    return NULL;
}

static inline int run_tests(const struct test_case *tests, size_t n, int argc,
                            char **argv) {
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (size_t i = 0; i < n; i++)
            printf("%s\n", tests[i].name);
        return 0;
    }
    if (argc != 2) {
        fprintf(stderr, "usage: %s --list | NAME\n", argv[0]);
        return 2;
    }
    for (size_t i = 0; i < n; i++) {
        if (strcmp(argv[1], tests[i].name) == 0) {
            pthread_t th;
            if (pthread_create(&th, NULL, run_on_thread, (void *)&tests[i]) != 0 ||
                pthread_join(th, NULL) != 0) {
                fprintf(stderr, "cannot run %s on a thread\n", tests[i].name);
                return 1;
            }
            printf("ok %s\n", tests[i].name);
            return 0;
        }
    }
    fprintf(stderr, "no test named %s\n", argv[1]);
    return 2;
}

#endif
