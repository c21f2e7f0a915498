/* The smallest program against libbufsync: linked with what bufsync.pc
 * gives (shared, and static with --static). */
#include <bufsync.h>
#include <stdio.h>

int main(void) {
    bufsync_context *ctx = NULL;
    bufsync_fence *f = NULL;
    if (bufsync_context_create(NULL, NULL, &ctx) || bufsync_context_create_fence(ctx, &f))
        return 1;
    if (bufsync_fence_signal(f) || bufsync_fence_wait(f, 0))
        return 1;
    bufsync_fence_destroy(f);
    bufsync_context_destroy(ctx);
    printf("libbufsync %s\n", bufsync_version_string());
    return 0;
}
