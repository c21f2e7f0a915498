/* vk_scanout: a plain C Vulkan program that presents frames on a KMS
 * display through libbufsync.
 *
 * It creates its own instance and device (any Vulkan 1.2 device with
 * timeline semaphores; in the test VM that is lavapipe), hands them to
 * bufsync_presenter_create_vulkan with a display (default "vkms"), and
 * presents --frames N (default 120) frames. Each frame is a clear of the
 * acquired VkImage to a solid colour derived from its frame number, waited
 * on the frame's acquire semaphore and signaling a timeline semaphore that
 * present takes. With --check, every flip is captured through the
 * display's writeback connector and each capture is compared, pixel for
 * pixel, with the colour of the frame it shows; the exit status is 0 only
 * if every frame was presented, captured and matched. The presenter's
 * first flip sets the mode and cannot be captured (vkms loses writeback
 * in the commit that enables the CRTC), so --check first presents one
 * mode-setting frame (frame 0), then the N checked frames 1..N.
 *
 * With --binary, each clear signals a binary semaphore of its buffer slot
 * instead of the timeline (the other form present takes).
 *
 * Build:   cc vk_scanout.c -o vk_scanout $(pkg-config --cflags --libs bufsync vulkan)
 * Run:     ./vk_scanout [--frames N] [--display DRIVER|PATH] [--check] [--binary]
 */
#include <bufsync.h>

#include <vulkan/vulkan.h>

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECOND_NS 1000000000ull

static void fail(const char *what, int rc) {
    fprintf(stderr, "vk_scanout: %s failed (%d): %s\n", what, rc, bufsync_last_error_message());
    exit(1);
}

static void vk_check(VkResult r, const char *what) {
    if (r != VK_SUCCESS) {
        fprintf(stderr, "vk_scanout: %s failed: VkResult %d\n", what, (int)r);
        exit(1);
    }
}

/* The colour of frame n: distinct for consecutive frames, never black. */
static uint32_t frame_rgb(uint64_t n) {
    uint32_t r = (uint32_t)(n * 37u + 40u) & 0xffu;
    uint32_t g = (uint32_t)(n * 91u + 80u) & 0xffu;
    uint32_t b = (uint32_t)(n * 53u + 160u) & 0xffu;
    return (r << 16) | (g << 8) | b;
}

/* The application's queue lock: it takes it around its own submissions,
 * and bufsync calls the hooks around each of its own (counted here). */
static pthread_mutex_t queue_mutex = PTHREAD_MUTEX_INITIALIZER;
static uint64_t hook_locks, hook_unlocks;

static void lock_queue(void *user, VkQueue_T *queue) {
    (void)user;
    (void)queue;
    pthread_mutex_lock(&queue_mutex);
    hook_locks++;
}

static void unlock_queue(void *user, VkQueue_T *queue) {
    (void)user;
    (void)queue;
    hook_unlocks++;
    pthread_mutex_unlock(&queue_mutex);
}

/* bufsync's log lines, to stderr (a library never prints by itself). */
static void on_log(void *user, uint32_t level, const char *target, const char *message) {
    static const char *names[] = {"off", "error", "warn", "info", "debug", "trace"};
    (void)user;
    fprintf(stderr, "[bufsync %s %s] %s\n", level <= 5 ? names[level] : "?", target, message);
}

/* The device extensions bufsync uses, enabled where the device has them. */
static const char *const WANTED[] = {
    "VK_KHR_external_memory_fd",  "VK_EXT_external_memory_dma_buf",
    "VK_EXT_image_drm_format_modifier", "VK_KHR_external_semaphore_fd",
    "VK_EXT_queue_family_foreign", "VK_KHR_image_format_list",
};
#define N_WANTED (sizeof WANTED / sizeof WANTED[0])

struct vk {
    VkInstance instance;
    VkPhysicalDevice physical;
    VkDevice device;
    VkQueue queue;
    uint32_t family;
    const char *enabled[N_WANTED];
    uint32_t enabled_count;
    VkCommandPool pool;
    VkSemaphore rendered; /* timeline: frame n's clear signals n + 1 */
    VkSemaphore *binary;  /* with --binary: one per buffer slot */
};

static VkSemaphore binary_semaphore(VkDevice device) {
    VkSemaphoreCreateInfo sci = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO};
    VkSemaphore s;
    vk_check(vkCreateSemaphore(device, &sci, NULL, &s), "vkCreateSemaphore");
    return s;
}

static void create_device(struct vk *v) {
    VkApplicationInfo app = {
        .sType = VK_STRUCTURE_TYPE_APPLICATION_INFO,
        .pApplicationName = "vk_scanout",
        .apiVersion = VK_API_VERSION_1_2,
    };
    VkInstanceCreateInfo ici = {
        .sType = VK_STRUCTURE_TYPE_INSTANCE_CREATE_INFO,
        .pApplicationInfo = &app,
    };
    vk_check(vkCreateInstance(&ici, NULL, &v->instance), "vkCreateInstance");

    uint32_t n = 0;
    vk_check(vkEnumeratePhysicalDevices(v->instance, &n, NULL), "vkEnumeratePhysicalDevices");
    if (n == 0) {
        fprintf(stderr, "vk_scanout: no Vulkan device\n");
        exit(1);
    }
    VkPhysicalDevice *devs = calloc(n, sizeof *devs);
    vk_check(vkEnumeratePhysicalDevices(v->instance, &n, devs), "vkEnumeratePhysicalDevices");
    v->physical = devs[0];
    free(devs);
    VkPhysicalDeviceProperties props;
    vkGetPhysicalDeviceProperties(v->physical, &props);
    printf("vk_scanout: Vulkan device %s\n", props.deviceName);

    uint32_t nq = 0;
    vkGetPhysicalDeviceQueueFamilyProperties(v->physical, &nq, NULL);
    VkQueueFamilyProperties *qf = calloc(nq, sizeof *qf);
    vkGetPhysicalDeviceQueueFamilyProperties(v->physical, &nq, qf);
    v->family = UINT32_MAX;
    for (uint32_t i = 0; i < nq && v->family == UINT32_MAX; i++)
        if (qf[i].queueFlags & (VK_QUEUE_GRAPHICS_BIT | VK_QUEUE_COMPUTE_BIT))
            v->family = i;
    free(qf);
    if (v->family == UINT32_MAX) {
        fprintf(stderr, "vk_scanout: no queue family that can clear images\n");
        exit(1);
    }

    uint32_t ne = 0;
    vk_check(vkEnumerateDeviceExtensionProperties(v->physical, NULL, &ne, NULL), "extensions");
    VkExtensionProperties *ext = calloc(ne, sizeof *ext);
    vk_check(vkEnumerateDeviceExtensionProperties(v->physical, NULL, &ne, ext), "extensions");
    for (size_t w = 0; w < N_WANTED; w++)
        for (uint32_t i = 0; i < ne; i++)
            if (strcmp(ext[i].extensionName, WANTED[w]) == 0)
                v->enabled[v->enabled_count++] = WANTED[w];
    free(ext);

    float priority = 1.0f;
    VkDeviceQueueCreateInfo qci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_QUEUE_CREATE_INFO,
        .queueFamilyIndex = v->family,
        .queueCount = 1,
        .pQueuePriorities = &priority,
    };
    VkPhysicalDeviceVulkan12Features f12 = {
        .sType = VK_STRUCTURE_TYPE_PHYSICAL_DEVICE_VULKAN_1_2_FEATURES,
        .timelineSemaphore = VK_TRUE,
    };
    VkDeviceCreateInfo dci = {
        .sType = VK_STRUCTURE_TYPE_DEVICE_CREATE_INFO,
        .pNext = &f12,
        .queueCreateInfoCount = 1,
        .pQueueCreateInfos = &qci,
        .enabledExtensionCount = v->enabled_count,
        .ppEnabledExtensionNames = v->enabled,
    };
    vk_check(vkCreateDevice(v->physical, &dci, NULL, &v->device), "vkCreateDevice");
    vkGetDeviceQueue(v->device, v->family, 0, &v->queue);

    VkCommandPoolCreateInfo pci = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_POOL_CREATE_INFO,
        .flags = VK_COMMAND_POOL_CREATE_RESET_COMMAND_BUFFER_BIT,
        .queueFamilyIndex = v->family,
    };
    vk_check(vkCreateCommandPool(v->device, &pci, NULL, &v->pool), "vkCreateCommandPool");
    VkSemaphoreTypeCreateInfo tci = {
        .sType = VK_STRUCTURE_TYPE_SEMAPHORE_TYPE_CREATE_INFO,
        .semaphoreType = VK_SEMAPHORE_TYPE_TIMELINE,
        .initialValue = 0,
    };
    VkSemaphoreCreateInfo sci = {.sType = VK_STRUCTURE_TYPE_SEMAPHORE_CREATE_INFO, .pNext = &tci};
    vk_check(vkCreateSemaphore(v->device, &sci, NULL, &v->rendered), "vkCreateSemaphore");
}

/* Records and submits frame f's clear: waits for its acquire semaphore,
 * signals the timeline at f->number + 1, and `binary` when not NULL. */
static void render(struct vk *v, VkCommandBuffer cmd, const bufsync_frame *f, VkSemaphore binary) {
    vk_check(vkResetCommandBuffer(cmd, 0), "vkResetCommandBuffer");
    VkCommandBufferBeginInfo begin = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_BEGIN_INFO,
        .flags = VK_COMMAND_BUFFER_USAGE_ONE_TIME_SUBMIT_BIT,
    };
    vk_check(vkBeginCommandBuffer(cmd, &begin), "vkBeginCommandBuffer");
    uint32_t rgb = frame_rgb(f->number);
    VkClearColorValue colour = {.float32 = {
                                    (float)((rgb >> 16) & 0xff) / 255.0f,
                                    (float)((rgb >> 8) & 0xff) / 255.0f,
                                    (float)(rgb & 0xff) / 255.0f,
                                    1.0f,
                                }};
    VkImageSubresourceRange all = {VK_IMAGE_ASPECT_COLOR_BIT, 0, 1, 0, 1};
    VkImageMemoryBarrier before = {
        .sType = VK_STRUCTURE_TYPE_IMAGE_MEMORY_BARRIER,
        .srcAccessMask = 0,
        .dstAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT,
        .oldLayout = VK_IMAGE_LAYOUT_GENERAL,
        .newLayout = VK_IMAGE_LAYOUT_GENERAL,
        .srcQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
        .dstQueueFamilyIndex = VK_QUEUE_FAMILY_IGNORED,
        .image = (VkImage)f->image,
        .subresourceRange = all,
    };
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TOP_OF_PIPE_BIT, VK_PIPELINE_STAGE_TRANSFER_BIT,
                         0, 0, NULL, 0, NULL, 1, &before);
    vkCmdClearColorImage(cmd, (VkImage)f->image, VK_IMAGE_LAYOUT_GENERAL, &colour, 1, &all);
    VkImageMemoryBarrier after = before;
    after.srcAccessMask = VK_ACCESS_TRANSFER_WRITE_BIT;
    after.dstAccessMask = VK_ACCESS_MEMORY_READ_BIT;
    vkCmdPipelineBarrier(cmd, VK_PIPELINE_STAGE_TRANSFER_BIT, VK_PIPELINE_STAGE_BOTTOM_OF_PIPE_BIT,
                         0, 0, NULL, 0, NULL, 1, &after);
    vk_check(vkEndCommandBuffer(cmd), "vkEndCommandBuffer");

    VkSemaphore wait = (VkSemaphore)f->wait_semaphore;
    VkPipelineStageFlags stage = VK_PIPELINE_STAGE_TRANSFER_BIT;
    uint64_t wait_value = 0, signal_values[2] = {f->number + 1, 0};
    VkSemaphore signals[2] = {v->rendered, binary};
    VkTimelineSemaphoreSubmitInfo tl = {
        .sType = VK_STRUCTURE_TYPE_TIMELINE_SEMAPHORE_SUBMIT_INFO,
        .waitSemaphoreValueCount = wait ? 1 : 0,
        .pWaitSemaphoreValues = &wait_value,
        .signalSemaphoreValueCount = binary ? 2 : 1,
        .pSignalSemaphoreValues = signal_values,
    };
    VkSubmitInfo submit = {
        .sType = VK_STRUCTURE_TYPE_SUBMIT_INFO,
        .pNext = &tl,
        .waitSemaphoreCount = wait ? 1 : 0,
        .pWaitSemaphores = &wait,
        .pWaitDstStageMask = &stage,
        .commandBufferCount = 1,
        .pCommandBuffers = &cmd,
        .signalSemaphoreCount = binary ? 2 : 1,
        .pSignalSemaphores = signals,
    };
    pthread_mutex_lock(&queue_mutex);
    VkResult r = vkQueueSubmit(v->queue, 1, &submit, VK_NULL_HANDLE);
    pthread_mutex_unlock(&queue_mutex);
    vk_check(r, "vkQueueSubmit");
}

/* Compares a capture with the colour of the frame it shows; returns the
 * number of pixels that differ (and prints the first). */
static uint64_t differing_pixels(const bufsync_capture *c) {
    uint32_t want = frame_rgb(c->frame);
    uint64_t bad = 0;
    for (uint32_t y = 0; y < c->height; y++) {
        const uint32_t *row = (const uint32_t *)(const void *)(c->pixels + (size_t)y * c->stride);
        for (uint32_t x = 0; x < c->width; x++) {
            uint32_t got = row[x] & 0xffffffu;
            if (got != want && bad++ == 0)
                fprintf(stderr, "vk_scanout: frame %" PRIu64 " pixel (%u,%u) is %06x, want %06x\n",
                        c->frame, x, y, got, want);
        }
    }
    return bad;
}

/* Captures come in flip order: frame `*next` is the one each should show. */
static int capture_matches(const bufsync_capture *c, uint64_t *next) {
    if (c->frame != *next) {
        fprintf(stderr, "vk_scanout: capture of frame %" PRIu64 ", expected frame %" PRIu64 "\n",
                c->frame, *next);
        *next = c->frame + 1;
        return 0;
    }
    (*next)++;
    return differing_pixels(c) == 0;
}

int main(int argc, char **argv) {
    uint64_t frames = 120;
    const char *display = "vkms";
    int check = 0, binary = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--frames") == 0 && i + 1 < argc)
            frames = strtoull(argv[++i], NULL, 10);
        else if (strcmp(argv[i], "--display") == 0 && i + 1 < argc)
            display = argv[++i];
        else if (strcmp(argv[i], "--check") == 0)
            check = 1;
        else if (strcmp(argv[i], "--binary") == 0)
            binary = 1;
        else {
            printf("usage: %s [--frames N] [--display DRIVER|PATH] [--check] [--binary]\n",
                   argv[0]);
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    if ((bufsync_version() >> 8) != (BUFSYNC_VERSION >> 8)) {
        fprintf(stderr, "vk_scanout: built against libbufsync %u.%u, running %s\n",
                BUFSYNC_VERSION_MAJOR, BUFSYNC_VERSION_MINOR, bufsync_version_string());
        return 1;
    }
    bufsync_set_log_callback(on_log, NULL, BUFSYNC_LOG_INFO);

    struct vk v;
    memset(&v, 0, sizeof v);
    create_device(&v);

    bufsync_vulkan_device dev = {
        .get_instance_proc_addr = (bufsync_vk_get_instance_proc_addr)vkGetInstanceProcAddr,
        .instance = v.instance,
        .physical_device = v.physical,
        .device = v.device,
        .queue = v.queue,
        .queue_family_index = v.family,
        .enabled_extensions = v.enabled,
        .enabled_extension_count = v.enabled_count,
        .timeline_semaphore = true,
        .lock_queue = lock_queue,
        .unlock_queue = unlock_queue,
        .queue_user_data = NULL,
    };
    bufsync_presenter_options opts;
    memset(&opts, 0, sizeof opts);
    opts.display = display;
    opts.display_fd = -1;
    /* A software renderer in an emulated machine may take seconds a frame
     * under load: a generous bound on each wait for a render. */
    opts.render_timeout_ns = 10 * SECOND_NS;
    bufsync_presenter *p = NULL;
    int rc = bufsync_presenter_create_vulkan(&dev, &opts, &p);
    if (rc)
        fail("bufsync_presenter_create_vulkan", rc);
    bufsync_presenter_info info;
    if ((rc = bufsync_presenter_get_info(p, &info)))
        fail("bufsync_presenter_get_info", rc);
    char how[2048];
    bufsync_presenter_describe(p, how, sizeof how, NULL);
    printf("vk_scanout: %ux%u, %u buffers, %s\n%s\n", info.width, info.height, info.buffers,
           info.in_fence ? "display waits IN_FENCE_FD" : "no IN_FENCE_FD", how);
    if (check && (rc = bufsync_presenter_enable_capture(p)))
        fail("bufsync_presenter_enable_capture", rc);

    VkCommandBuffer *cmds = calloc(info.buffers, sizeof *cmds);
    uint64_t *last_use = calloc(info.buffers, sizeof *last_use);
    VkCommandBufferAllocateInfo cai = {
        .sType = VK_STRUCTURE_TYPE_COMMAND_BUFFER_ALLOCATE_INFO,
        .commandPool = v.pool,
        .level = VK_COMMAND_BUFFER_LEVEL_PRIMARY,
        .commandBufferCount = info.buffers,
    };
    vk_check(vkAllocateCommandBuffers(v.device, &cai, cmds), "vkAllocateCommandBuffers");
    if (binary) {
        v.binary = calloc(info.buffers, sizeof *v.binary);
        for (uint32_t i = 0; i < info.buffers; i++)
            v.binary[i] = binary_semaphore(v.device);
    }

    /* With --check, frame 0 sets the mode (not capturable), then 1..frames. */
    uint64_t flips = check ? frames + 1 : frames, next_capture = 1;
    uint64_t presented = 0, captured = 0, matched = 0, waited_on_gpu = 0;
    for (uint64_t n = 0; n < flips; n++) {
        bufsync_frame f;
        if ((rc = bufsync_presenter_acquire(p, 5 * SECOND_NS, &f)))
            fail("bufsync_presenter_acquire", rc);
        /* The slot's command buffer is free once its last clear is done. */
        if (last_use[f.index]) {
            VkSemaphoreWaitInfo wi = {
                .sType = VK_STRUCTURE_TYPE_SEMAPHORE_WAIT_INFO,
                .semaphoreCount = 1,
                .pSemaphores = &v.rendered,
                .pValues = &last_use[f.index],
            };
            vk_check(vkWaitSemaphores(v.device, &wi, 5 * SECOND_NS), "vkWaitSemaphores");
        }
        waited_on_gpu += f.wait_semaphore != NULL;
        VkSemaphore done = binary ? v.binary[f.index] : VK_NULL_HANDLE;
        render(&v, cmds[f.index], &f, done);
        last_use[f.index] = f.number + 1;
        /* A timeline semaphore with the value it reaches, or a binary one
         * (value 0) that the presenter waits on and so unsignals again. */
        rc = binary ? bufsync_presenter_present(p, f.index, done, 0)
                    : bufsync_presenter_present(p, f.index, v.rendered, f.number + 1);
        if (rc) {
            fprintf(stderr, "vk_scanout: frame %" PRIu64 ":\n", f.number);
            fail("bufsync_presenter_present", rc);
        }
        presented++;
        if (check) {
            bufsync_capture c;
            while ((rc = bufsync_presenter_next_capture(p, false, &c)) == 0) {
                captured++;
                matched += capture_matches(&c, &next_capture);
            }
            if (rc != -ENOENT)
                fail("bufsync_presenter_next_capture", rc);
        }
    }
    if ((rc = bufsync_presenter_wait_idle(p, 5 * SECOND_NS)))
        fail("bufsync_presenter_wait_idle", rc);
    if (check) {
        bufsync_capture c;
        while ((rc = bufsync_presenter_next_capture(p, true, &c)) == 0) {
            captured++;
            matched += capture_matches(&c, &next_capture);
        }
        if (rc != -ENOENT)
            fail("bufsync_presenter_next_capture", rc);
    }
    bufsync_present_totals t;
    if ((rc = bufsync_presenter_get_totals(p, &t)))
        fail("bufsync_presenter_get_totals", rc);
    printf("vk_scanout: %" PRIu64 " frames presented, %" PRIu64 " shown (edges: %" PRIu64
           " IN_FENCE_FD, %" PRIu64 " implicit, %" PRIu64 " software, %" PRIu64
           " done before the flip); %" PRIu64 " acquires waited on the GPU\n",
           presented, t.shown, t.in_fence, t.implicit, t.software, t.signaled, waited_on_gpu);
    printf("vk_scanout: bufsync took the application's queue lock %" PRIu64
           " times (released %" PRIu64 ")\n",
           hook_locks, hook_unlocks);
    int ok = presented == flips && t.shown == flips && hook_locks == hook_unlocks;
    if (check) {
        printf("vk_scanout: frame 0 set the mode; of frames 1..%" PRIu64 ", %" PRIu64
               " captured through writeback, %" PRIu64 " matched their frame's colour\n",
               frames, captured, matched);
        ok = ok && captured == frames && matched == frames;
    }

    bufsync_presenter_destroy(p);
    vkDeviceWaitIdle(v.device);
    vkFreeCommandBuffers(v.device, v.pool, info.buffers, cmds);
    free(cmds);
    free(last_use);
    vkDestroySemaphore(v.device, v.rendered, NULL);
    for (uint32_t i = 0; binary && i < info.buffers; i++)
        vkDestroySemaphore(v.device, v.binary[i], NULL);
    free(v.binary);
    vkDestroyCommandPool(v.device, v.pool, NULL);
    vkDestroyDevice(v.device, NULL);
    vkDestroyInstance(v.instance, NULL);
    bufsync_set_log_callback(NULL, NULL, BUFSYNC_LOG_OFF);
    printf("vk_scanout: %s\n", ok ? "ok" : "FAILED");
    return ok ? 0 : 1;
}
