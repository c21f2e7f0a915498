//! The decision itself: a pure function of what the fence is
//! ([`FenceForm`]) and what the waiter can do ([`Waiter`]).
//!
//! The rule is the design's eighth idea: a waiter that understands the
//! fence waits in hardware (a Vulkan queue on a same-device timeline point
//! or on an imported sync_file, a KMS plane through `IN_FENCE_FD`, the
//! kernel's implicit sync through `DMA_BUF_IOCTL_IMPORT_SYNC_FILE`, the CPU
//! through the kernel's or driver's own wait); anything else is waited in
//! software by the runtime and the waiter is started afterwards.
//!
//! Locking: none; plain data, no syscall. Cheap enough for every
//! submission and every flip.

use std::fmt;

/// What a pending fence is, as far as choosing its wait goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FenceForm {
    /// A runtime fence with no kernel or device object behind it: its
    /// producer signals it through the runtime (`bufsync::fence`).
    Software,
    /// A kernel `dma_fence` reached through a sync_file fd.
    SyncFile,
    /// A drm_syncobj timeline point (exportable as a sync_file once its
    /// fence has been submitted).
    SyncobjPoint,
    /// A Vulkan timeline semaphore point of the `VkDevice` whose raw
    /// handle is `device`; `sync_file` when the point also carries a
    /// pending sync_file of the same completion (render-done points of
    /// devices whose SYNC_FD export hands out pending fences).
    VulkanPoint {
        /// `VkDevice` raw handle (same value = same device).
        device: u64,
        /// The point has a pending sync_file form.
        sync_file: bool,
    },
    /// A seqno word in mapped memory (`SeqnoFence`), written by a device
    /// or the CPU.
    Seqno,
}

impl FenceForm {
    /// Whether a pending fence of this form can be handed to the kernel as
    /// a sync_file (IN_FENCE_FD, IMPORT_SYNC_FILE, a SYNC_FD semaphore).
    pub fn has_sync_file(self) -> bool {
        match self {
            FenceForm::SyncFile | FenceForm::SyncobjPoint => true,
            FenceForm::VulkanPoint { sync_file, .. } => sync_file,
            FenceForm::Software | FenceForm::Seqno => false,
        }
    }

    /// Every [`name`](Self::name), in the order of the variants.
    pub const NAMES: [&'static str; 5] = [
        "software",
        "sync_file",
        "syncobj_point",
        "vulkan_point",
        "seqno",
    ];

    /// A stable short name: `software`, `sync_file`, `syncobj_point`,
    /// `vulkan_point`, `seqno`.
    pub fn name(self) -> &'static str {
        match self {
            FenceForm::Software => "software",
            FenceForm::SyncFile => "sync_file",
            FenceForm::SyncobjPoint => "syncobj_point",
            FenceForm::VulkanPoint { .. } => "vulkan_point",
            FenceForm::Seqno => "seqno",
        }
    }
}

/// Who waits, with the capabilities that matter for the choice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Waiter {
    /// A CPU thread.
    Cpu,
    /// A submission on the Vulkan device whose raw `VkDevice` handle is
    /// `device`.
    Vulkan {
        /// `VkDevice` raw handle.
        device: u64,
        /// The device imports SYNC_FD into binary semaphores
        /// (`VulkanCaps::sync_file_in`).
        sync_file_import: bool,
    },
    /// A KMS plane's scanout (an atomic commit).
    KmsPlane {
        /// The plane has `IN_FENCE_FD`.
        in_fence_fd: bool,
        /// The frame's buffer takes `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` and
        /// the driver honours a buffer's implicit fences on a flip without
        /// an in-fence (the presenter probes the ioctl and checks every
        /// implicit flip).
        implicit: bool,
        /// Prefer the buffer's implicit fences over `IN_FENCE_FD`.
        prefer_implicit: bool,
    },
    /// A dma-buf's implicit sync: every importer that waits for the
    /// buffer's `dma_resv` (a driver without explicit sync, a compositor,
    /// `poll` on the dma-buf).
    DmaBuf {
        /// The kernel takes `DMA_BUF_IOCTL_IMPORT_SYNC_FILE` (6.0+).
        import_sync_file: bool,
    },
}

impl Waiter {
    /// Every [`name`](Self::name), in the order of the variants.
    pub const NAMES: [&'static str; 4] = ["cpu", "vulkan", "kms_plane", "dmabuf"];

    /// A stable short name: `cpu`, `vulkan`, `kms_plane`, `dmabuf`.
    pub fn name(&self) -> &'static str {
        match self {
            Waiter::Cpu => "cpu",
            Waiter::Vulkan { .. } => "vulkan",
            Waiter::KmsPlane { .. } => "kms_plane",
            Waiter::DmaBuf { .. } => "dmabuf",
        }
    }
}

/// Hardware or software.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WaitClass {
    /// The waiter's own mechanism waits on the fence: the GPU, the display
    /// engine, the kernel's implicit sync, or for a CPU the kernel's or the
    /// driver's blocking wait (the producer's signal wakes the waiter).
    Hardware,
    /// The runtime waits (on the CPU) and starts the waiter afterwards, or
    /// observes the fence by polling.
    Software,
}

impl WaitClass {
    /// `hardware` or `software`.
    pub fn name(self) -> &'static str {
        match self {
            WaitClass::Hardware => "hardware",
            WaitClass::Software => "software",
        }
    }
}

/// The concrete way a wait is done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// CPU: `poll` on the sync_file (through the shared reactor's epoll):
    /// the kernel wakes the waiter when the `dma_fence` signals.
    CpuSyncFilePoll,
    /// CPU: `DRM_IOCTL_SYNCOBJ_EVENTFD` on the point (through the reactor).
    CpuSyncobjEventfd,
    /// CPU: `vkWaitSemaphores` on the point's timeline semaphore.
    CpuVkWaitSemaphores,
    /// CPU: the runtime's wait; the producer's signal wakes the waiter.
    CpuRuntimeWait,
    /// CPU: the runtime's fence engine polls the word (50 µs doubling to
    /// 5 ms).
    CpuPolled,
    /// Vulkan: a same-device timeline point as a wait semaphore.
    GpuTimeline,
    /// Vulkan: the fence's sync_file imported into a temporary SYNC_FD
    /// binary semaphore, waited on the GPU.
    GpuSyncFile,
    /// Vulkan: waited on the CPU before `vkQueueSubmit` (bounded).
    CpuBeforeSubmit,
    /// KMS: the fence's sync_file as the plane's `IN_FENCE_FD`.
    InFenceFd,
    /// KMS: the sync_file imported into the frame's buffer
    /// (`IMPORT_SYNC_FILE`, as a writer) and a flip without an in-fence:
    /// the display waits for the buffer's implicit fences.
    ImplicitFlip,
    /// KMS: waited on the CPU before the commit (bounded).
    CpuBeforeCommit,
    /// dma-buf: the sync_file added to the buffer's `dma_resv`
    /// (`IMPORT_SYNC_FILE`): every implicit-sync importer waits for it.
    ImportSyncFile,
    /// dma-buf: waited on the CPU before the buffer is handed to an
    /// implicit-sync user (bounded).
    CpuBeforeHandoff,
}

impl Route {
    /// Every route, in the order of the variants.
    pub const ALL: [Route; 13] = [
        Route::CpuSyncFilePoll,
        Route::CpuSyncobjEventfd,
        Route::CpuVkWaitSemaphores,
        Route::CpuRuntimeWait,
        Route::CpuPolled,
        Route::GpuTimeline,
        Route::GpuSyncFile,
        Route::CpuBeforeSubmit,
        Route::InFenceFd,
        Route::ImplicitFlip,
        Route::CpuBeforeCommit,
        Route::ImportSyncFile,
        Route::CpuBeforeHandoff,
    ];

    /// The route named `name` ([`Route::name`]).
    pub fn from_name(name: &str) -> Option<Route> {
        Route::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Hardware or software.
    pub fn class(self) -> WaitClass {
        match self {
            Route::CpuSyncFilePoll
            | Route::CpuSyncobjEventfd
            | Route::CpuVkWaitSemaphores
            | Route::GpuTimeline
            | Route::GpuSyncFile
            | Route::InFenceFd
            | Route::ImplicitFlip
            | Route::ImportSyncFile => WaitClass::Hardware,
            Route::CpuRuntimeWait
            | Route::CpuPolled
            | Route::CpuBeforeSubmit
            | Route::CpuBeforeCommit
            | Route::CpuBeforeHandoff => WaitClass::Software,
        }
    }

    /// A stable name (snake_case), as `bufsync-info paths --json` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Route::CpuSyncFilePoll => "sync_file_poll",
            Route::CpuSyncobjEventfd => "syncobj_eventfd",
            Route::CpuVkWaitSemaphores => "vk_wait_semaphores",
            Route::CpuRuntimeWait => "runtime_wait",
            Route::CpuPolled => "engine_poll",
            Route::GpuTimeline => "timeline_semaphore",
            Route::GpuSyncFile => "sync_fd_semaphore",
            Route::CpuBeforeSubmit => "cpu_wait_before_submit",
            Route::InFenceFd => "in_fence_fd",
            Route::ImplicitFlip => "implicit_flip",
            Route::CpuBeforeCommit => "cpu_wait_before_commit",
            Route::ImportSyncFile => "import_sync_file",
            Route::CpuBeforeHandoff => "cpu_wait_before_handoff",
        }
    }
}

impl fmt::Display for Route {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What [`decide`] chose, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decision {
    /// The way the wait is done.
    pub route: Route,
    /// One sentence: why this route (for logs and `bufsync-info paths`).
    pub why: &'static str,
}

impl Decision {
    /// Hardware or software.
    pub fn class(&self) -> WaitClass {
        self.route.class()
    }

    fn new(route: Route, why: &'static str) -> Self {
        Decision { route, why }
    }
}

/// How a pending fence of `form` is waited by `waiter`. The one rule every
/// wait of bufsync follows (`vulkan::Submitter::classify` and its
/// submissions, `vulkan::wait_fence`, `kms::Display::commit_fenced`,
/// `DmaBuf::push_fence`, the presenter's render → display edge) and the one
/// `bufsync-info paths` prints. A signaled fence needs no wait; callers
/// check that first.
///
/// ```
/// use bufsync_backends::wait_path::{decide, FenceForm, Route, Waiter, WaitClass};
///
/// let plane = Waiter::KmsPlane { in_fence_fd: true, implicit: false, prefer_implicit: false };
/// assert_eq!(decide(FenceForm::SyncFile, &plane).route, Route::InFenceFd);
/// // lavapipe's render-done points have no pending sync_file: the display
/// // cannot wait for them itself.
/// let point = FenceForm::VulkanPoint { device: 1, sync_file: false };
/// assert_eq!(decide(point, &plane).class(), WaitClass::Software);
/// // The same device waits for its own point on the GPU.
/// let gpu = Waiter::Vulkan { device: 1, sync_file_import: false };
/// assert_eq!(decide(point, &gpu).route, Route::GpuTimeline);
/// ```
pub fn decide(form: FenceForm, waiter: &Waiter) -> Decision {
    use Route::*;
    let no_form = || match form {
        FenceForm::Software => "a software fence has no kernel form",
        FenceForm::Seqno => "a seqno word has no kernel form",
        FenceForm::VulkanPoint { .. } => {
            "the device's SYNC_FD export gives no pending sync_file for its points"
        }
        // Kinds with a sync_file form never reach this.
        FenceForm::SyncFile | FenceForm::SyncobjPoint => "no sync_file form",
    };
    match *waiter {
        Waiter::Cpu => match form {
            FenceForm::SyncFile => Decision::new(
                CpuSyncFilePoll,
                "poll(2) on the sync_file: the kernel wakes the waiter",
            ),
            FenceForm::SyncobjPoint => Decision::new(
                CpuSyncobjEventfd,
                "DRM_IOCTL_SYNCOBJ_EVENTFD: the kernel wakes the waiter",
            ),
            FenceForm::VulkanPoint { .. } => Decision::new(
                CpuVkWaitSemaphores,
                "vkWaitSemaphores: the driver wakes the waiter",
            ),
            FenceForm::Software => Decision::new(
                CpuRuntimeWait,
                "the runtime's wait: the producer's signal wakes the waiter",
            ),
            FenceForm::Seqno => Decision::new(
                CpuPolled,
                "nothing signals a memory write: the runtime's engine polls the word",
            ),
        },
        Waiter::Vulkan {
            device,
            sync_file_import,
        } => match form {
            FenceForm::VulkanPoint { device: d, .. } if d == device => Decision::new(
                GpuTimeline,
                "a point of this device's own timeline: a wait semaphore",
            ),
            f if f.has_sync_file() && sync_file_import => Decision::new(
                GpuSyncFile,
                "its sync_file imported into a SYNC_FD semaphore, waited on the GPU",
            ),
            f if f.has_sync_file() => Decision::new(
                CpuBeforeSubmit,
                "the device cannot import SYNC_FD semaphores: waited on the CPU before the submit",
            ),
            FenceForm::VulkanPoint { .. } => Decision::new(
                CpuBeforeSubmit,
                "another device's point without a pending sync_file: waited on the CPU before the submit",
            ),
            _ => Decision::new(CpuBeforeSubmit, no_form()),
        },
        Waiter::KmsPlane {
            in_fence_fd,
            implicit,
            prefer_implicit,
        } => {
            if !form.has_sync_file() {
                Decision::new(CpuBeforeCommit, no_form())
            } else if implicit && (prefer_implicit || !in_fence_fd) {
                Decision::new(
                    ImplicitFlip,
                    if in_fence_fd {
                        "implicit sync preferred: IMPORT_SYNC_FILE into the frame, flip without an in-fence"
                    } else {
                        "the plane has no IN_FENCE_FD: IMPORT_SYNC_FILE into the frame, the display waits for its implicit fences"
                    },
                )
            } else if in_fence_fd {
                Decision::new(
                    InFenceFd,
                    "its sync_file as IN_FENCE_FD: the display waits before scanout",
                )
            } else {
                Decision::new(
                    CpuBeforeCommit,
                    "the plane has no IN_FENCE_FD and the buffer no implicit sync: waited on the CPU before the commit",
                )
            }
        }
        Waiter::DmaBuf { import_sync_file } => {
            if !form.has_sync_file() {
                Decision::new(CpuBeforeHandoff, no_form())
            } else if import_sync_file {
                Decision::new(
                    ImportSyncFile,
                    "IMPORT_SYNC_FILE into the buffer's dma_resv: every implicit-sync user waits",
                )
            } else {
                Decision::new(
                    CpuBeforeHandoff,
                    "the kernel lacks DMA_BUF_IOCTL_IMPORT_SYNC_FILE (before 6.0): waited on the CPU before the hand-off",
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMS: [FenceForm; 7] = [
        FenceForm::Software,
        FenceForm::SyncFile,
        FenceForm::SyncobjPoint,
        FenceForm::VulkanPoint {
            device: 1,
            sync_file: false,
        },
        FenceForm::VulkanPoint {
            device: 1,
            sync_file: true,
        },
        FenceForm::VulkanPoint {
            device: 2,
            sync_file: false,
        },
        FenceForm::Seqno,
    ];

    fn waiters() -> Vec<Waiter> {
        let mut v = vec![Waiter::Cpu];
        for sync_file_import in [false, true] {
            v.push(Waiter::Vulkan {
                device: 1,
                sync_file_import,
            });
        }
        for in_fence_fd in [false, true] {
            for implicit in [false, true] {
                for prefer_implicit in [false, true] {
                    v.push(Waiter::KmsPlane {
                        in_fence_fd,
                        implicit,
                        prefer_implicit,
                    });
                }
            }
        }
        for import_sync_file in [false, true] {
            v.push(Waiter::DmaBuf { import_sync_file });
        }
        v
    }

    #[test]
    fn hardware_only_when_the_waiter_understands_the_fence() {
        for form in FORMS {
            for w in waiters() {
                let d = decide(form, &w);
                assert!(!d.why.is_empty());
                let hw = d.class() == WaitClass::Hardware;
                let understood = match w {
                    Waiter::Cpu => form != FenceForm::Software && form != FenceForm::Seqno,
                    Waiter::Vulkan {
                        device,
                        sync_file_import,
                    } => {
                        matches!(form, FenceForm::VulkanPoint { device: d, .. } if d == device)
                            || (form.has_sync_file() && sync_file_import)
                    }
                    Waiter::KmsPlane {
                        in_fence_fd,
                        implicit,
                        ..
                    } => form.has_sync_file() && (in_fence_fd || implicit),
                    Waiter::DmaBuf { import_sync_file } => form.has_sync_file() && import_sync_file,
                };
                assert_eq!(hw, understood, "{form:?} waited by {w:?}: {d:?}");
            }
        }
    }

    #[test]
    fn routes_belong_to_their_waiter() {
        for form in FORMS {
            for w in waiters() {
                let r = decide(form, &w).route;
                let ok = match w {
                    Waiter::Cpu => matches!(
                        r,
                        Route::CpuSyncFilePoll
                            | Route::CpuSyncobjEventfd
                            | Route::CpuVkWaitSemaphores
                            | Route::CpuRuntimeWait
                            | Route::CpuPolled
                    ),
                    Waiter::Vulkan { .. } => matches!(
                        r,
                        Route::GpuTimeline | Route::GpuSyncFile | Route::CpuBeforeSubmit
                    ),
                    Waiter::KmsPlane { .. } => matches!(
                        r,
                        Route::InFenceFd | Route::ImplicitFlip | Route::CpuBeforeCommit
                    ),
                    Waiter::DmaBuf { .. } => {
                        matches!(r, Route::ImportSyncFile | Route::CpuBeforeHandoff)
                    }
                };
                assert!(ok, "{form:?} by {w:?} gave {r:?}");
            }
        }
    }

    #[test]
    fn the_edge_prefers_in_fence_then_implicit() {
        let plane = |in_fence_fd, implicit, prefer_implicit| Waiter::KmsPlane {
            in_fence_fd,
            implicit,
            prefer_implicit,
        };
        let f = FenceForm::SyncFile;
        assert_eq!(decide(f, &plane(true, true, false)).route, Route::InFenceFd);
        assert_eq!(
            decide(f, &plane(true, true, true)).route,
            Route::ImplicitFlip
        );
        assert_eq!(
            decide(f, &plane(false, true, false)).route,
            Route::ImplicitFlip
        );
        assert_eq!(decide(f, &plane(true, false, true)).route, Route::InFenceFd);
        assert_eq!(
            decide(f, &plane(false, false, false)).route,
            Route::CpuBeforeCommit
        );
    }

    #[test]
    fn names_are_distinct_and_round_trip() {
        let names: std::collections::HashSet<_> = Route::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Route::ALL.len());
        for r in Route::ALL {
            assert_eq!(Route::from_name(r.name()), Some(r));
        }
        for f in FORMS {
            assert!(FenceForm::NAMES.contains(&f.name()));
        }
        for w in waiters() {
            assert!(Waiter::NAMES.contains(&w.name()));
        }
    }
}
