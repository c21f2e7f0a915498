// bufsync.h from C++17: compiles with every warning an error, links, and
// the basic calls work.
#include <bufsync.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

namespace {
struct FenceDeleter {
    void operator()(bufsync_fence *f) const { bufsync_fence_destroy(f); }
};
using Fence = std::unique_ptr<bufsync_fence, FenceDeleter>;
}  // namespace

int main() {
    static_assert(BUFSYNC_VERSION == BUFSYNC_MAKE_VERSION(BUFSYNC_VERSION_MAJOR,
                                                          BUFSYNC_VERSION_MINOR,
                                                          BUFSYNC_VERSION_PATCH),
                  "version macros agree");
    bufsync_context *ctx = nullptr;
    if (bufsync_context_create("c++", nullptr, &ctx) != 0) return 1;
    bufsync_fence *raw = nullptr;
    if (bufsync_context_create_fence(ctx, &raw) != 0) return 1;
    Fence fence(raw);
    if (bufsync_fence_wait(fence.get(), 0) != -ETIME) return 1;
    int called = 0;
    auto cb = [](const bufsync_fence *, void *user) { ++*static_cast<int *>(user); };
    if (bufsync_fence_add_callback(fence.get(), cb, &called, nullptr) != 0) return 1;
    if (bufsync_fence_signal(fence.get()) != 0 || called != 1) return 1;
    bufsync_reserve_entry entry{nullptr, BUFSYNC_ACCESS_READ};
    bufsync_ticket *ticket = nullptr;
    if (bufsync_ticket_create(&ticket) != 0) return 1;
    if (bufsync_ticket_reserve(ticket, &entry, 1) != -EINVAL) return 1;
    if (std::strlen(bufsync_last_error_message()) == 0) return 1;
    bufsync_ticket_destroy(ticket);
    bufsync_context_destroy(ctx);
    std::printf("%s\n", bufsync_version_string());
    return 0;
}
