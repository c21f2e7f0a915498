//! Helpers for bufsync's device tests.
//!
//! Every device test starts with [`require!`](macro@require) (or [`require`](fn@require)): inside the
//! test VM (`BUFSYNC_IN_VM=1`) a missing device is a failure; elsewhere the
//! test is reported as skipped (stderr and the `BUFSYNC_SKIP_LOG` file) and
//! returns early.

use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, Once};

use bufsync_backends::vulkan::VulkanContext;

/// Whether this process runs inside the test VM (`BUFSYNC_IN_VM=1`).
pub fn in_vm() -> bool {
    std::env::var("BUFSYNC_IN_VM").is_ok_and(|v| v == "1")
}

/// Decides whether test `test` can run: `true` when `available`; otherwise
/// panics inside the VM, or prints `SKIPPED: <test>: <reason>` to stderr,
/// appends `<test>\t<reason>` to `$BUFSYNC_SKIP_LOG` (if set) and returns
/// `false` so the test returns early.
pub fn require(test: &str, what: &str, available: bool) -> bool {
    if available {
        return true;
    }
    let reason = format!("{what} not available");
    if in_vm() {
        panic!("{test}: {reason} inside the test VM");
    }
    eprintln!("SKIPPED: {test}: {reason}");
    if let Ok(path) = std::env::var("BUFSYNC_SKIP_LOG") {
        match std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
        {
            Ok(mut f) => {
                let _ = writeln!(f, "{test}\t{reason}");
            }
            Err(e) => eprintln!("cannot append to BUFSYNC_SKIP_LOG {path}: {e}"),
        }
    }
    false
}

/// `require!(what, available)`: [`require`](fn@require) with the calling test's name;
/// returns from the test when the device is missing outside the VM.
#[macro_export]
macro_rules! require {
    ($what:expr, $available:expr) => {
        if !$crate::require($crate::test_name!(), $what, $available) {
            return;
        }
    };
}

/// The enclosing function's name (the test name), e.g. `vm_smoke::vgem_fence`.
#[macro_export]
macro_rules! test_name {
    () => {{
        fn f() {}
        fn type_name_of<T>(_: T) -> &'static str {
            ::std::any::type_name::<T>()
        }
        let name = type_name_of(f);
        name.strip_suffix("::f").unwrap_or(name)
    }};
}

/// Whether a DRM device with this driver name is present.
pub fn has_driver(driver: &str) -> bool {
    bufsync_backends::drm::DrmDevice::is_present(driver)
}

/// Counts this process's open fds (`/proc/self/fd`).
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Initializes `env_logger` once, through the test harness's capture:
/// `info` and up by default (the tests' figures and capabilities), RUST_LOG
/// overrides.
pub fn init_log() {
    let _ = env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"))
        .is_test(true)
        .try_init();
}

/// Runs a test binary's tests one at a time where they share a device (the
/// vkms CRTC) or count the process's fds: hold the guard for the whole test.
/// Also initializes logging.
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    init_log();
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Where Mesa installs lavapipe's ICD manifest on a host that has it.
pub const LVP_ICD: &str = "/usr/share/vulkan/icd.d/lvp_icd.json";

/// lavapipe's ICD manifest: `BUFSYNC_LVP_ICD` (set by `cargo xtask`, which
/// keeps lavapipe in its cache rather than on the host), else [`LVP_ICD`].
pub fn lavapipe_icd() -> PathBuf {
    std::env::var_os("BUFSYNC_LVP_ICD")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(LVP_ICD))
}

/// Whether the Vulkan tests run on the loader's own choice of device
/// (`BUFSYNC_VK_DEVICE=any`: `cargo xtask gpu-check` on a machine with a
/// real GPU) rather than on lavapipe.
pub fn any_vulkan_device() -> bool {
    std::env::var("BUFSYNC_VK_DEVICE").is_ok_and(|v| v == "any")
}

/// A Vulkan context for the device tests, or `None` when there is none
/// (the reason is logged).
///
/// By default on lavapipe only (`VK_ICD_FILENAMES` is set once, so no other
/// ICD probes `/dev/dri`), `None` when lavapipe is not installed or refuses.
/// With `BUFSYNC_VK_DEVICE=any` ([`any_vulkan_device`]) on the device
/// [`VulkanContext::new`] picks from every ICD the loader finds (discrete
/// GPUs first), `VK_ICD_FILENAMES` left as the caller set it.
pub fn lavapipe() -> Option<Arc<VulkanContext>> {
    static ONCE: Once = Once::new();
    let any = any_vulkan_device();
    ONCE.call_once(|| {
        init_log();
        if !any {
            std::env::set_var("VK_ICD_FILENAMES", lavapipe_icd());
        }
    });
    if !any && !lavapipe_icd().exists() {
        return None;
    }
    VulkanContext::new()
        .map_err(|e| log::warn!("Vulkan test context: {e}"))
        .ok()
}

/// The connector routing and CRTC activity in the kernel's atomic state
/// of the card whose driver is `driver` (debugfs `state`): what a display's
/// `restore` must put back. Empty when debugfs has no such card.
pub fn display_routing(driver: &str) -> Vec<String> {
    let dri = std::path::Path::new("/sys/kernel/debug/dri");
    let Some(dir) = std::fs::read_dir(dri).ok().and_then(|rd| {
        rd.filter_map(Result::ok).map(|e| e.path()).find(|p| {
            std::fs::read_to_string(p.join("name"))
                .is_ok_and(|n| n.split_whitespace().next() == Some(driver))
        })
    }) else {
        return Vec::new();
    };
    let state = std::fs::read_to_string(dir.join("state")).unwrap_or_default();
    let mut out = Vec::new();
    let mut section = String::new();
    for line in state.lines() {
        if !line.starts_with('\t') {
            section = line.trim_end_matches(':').to_string();
        } else {
            let l = line.trim();
            let keep = (section.starts_with("connector") && l.starts_with("crtc="))
                || (section.starts_with("crtc")
                    && (l.starts_with("enable=") || l.starts_with("active=")));
            if keep {
                out.push(format!("{section}: {l}"));
            }
        }
    }
    out
}

/// Takes the displays for test `test` (one CRTC each: one flow at a time);
/// `None` (the test skips, loudly) without DRM devices outside the VM.
pub fn take_displays(test: &str) -> Option<MutexGuard<'static, ()>> {
    let guard = serial();
    require(
        test,
        "vkms, virtio_gpu, vgem and lavapipe",
        std::path::Path::new("/dev/dri").exists(),
    )
    .then_some(guard)
}

/// The display state to compare with after a test: the routing after a
/// plain open and close of the display (when the card's last fd closes,
/// the kernel's fbdev emulation puts its console on the output).
pub fn routing_at_rest(driver: &str) -> Vec<String> {
    drop(bufsync_backends::kms::Display::open_by_driver(driver));
    display_routing(driver)
}

/// Waits (up to 1 s) for the fence reactor to let go of every fd it was
/// watching (fences that signaled a moment ago), then counts fds.
pub fn settled_fds() -> usize {
    if let Ok(reactor) = bufsync_backends::reactor::global() {
        for _ in 0..100 {
            if reactor.pending() == 0 {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    open_fds()
}

/// An XR24 test pattern with the X byte set (what writeback writes back).
pub fn pattern_pixel(x: u32, y: u32, seed: u32) -> u32 {
    let r = (x.wrapping_mul(7) ^ seed) & 0xff;
    let g = (y.wrapping_mul(3) ^ (seed >> 8)) & 0xff;
    let b = (x ^ y ^ seed.rotate_left(5)) & 0xff;
    0xff00_0000 | (r << 16) | (g << 8) | b
}

/// The `w` x `h` XR24 bytes of [`pattern_pixel`] (rows of `w * 4` bytes).
pub fn pattern_bytes(w: u32, h: u32, seed: u32) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(w as usize * h as usize * 4);
    for y in 0..h {
        for x in 0..w {
            bytes.extend_from_slice(&pattern_pixel(x, y, seed).to_le_bytes());
        }
    }
    bytes
}

/// A udmabuf holding a `w` x `h` XR24 image (stride `w * 4`) of
/// [`pattern_pixel`], written through its memfd, with that layout.
pub fn pattern_buffer(w: u32, h: u32, seed: u32) -> bufsync_backends::dmabuf::DmaBuf {
    use bufsync_backends::dmabuf::{fourcc, Layout, Udmabuf};
    use std::io::Write;
    use std::os::fd::{AsFd, OwnedFd};
    let size = u64::from(w) * u64::from(h) * 4;
    let page = rustix::param::page_size() as u64;
    let alloc = size.div_ceil(page) * page;
    let memfd: OwnedFd = rustix::fs::memfd_create(
        "pattern",
        rustix::fs::MemfdFlags::CLOEXEC | rustix::fs::MemfdFlags::ALLOW_SEALING,
    )
    .expect("memfd_create");
    rustix::fs::ftruncate(&memfd, alloc).expect("ftruncate");
    let mut file = std::fs::File::from(memfd);
    file.write_all(&pattern_bytes(w, h, seed)).expect("write");
    let memfd = OwnedFd::from(file);
    rustix::fs::fcntl_add_seals(&memfd, rustix::fs::SealFlags::SHRINK).expect("seal");
    let buf = Udmabuf::from_memfd(memfd.as_fd(), 0, alloc).expect("udmabuf");
    buf.with_layout(Layout::linear(w, h, fourcc(b"XR24"), w * 4))
        .expect("layout")
}
