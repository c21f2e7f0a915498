//! GEM handles in the VM (vkms, vgem): one refcounted handle table per DRM
//! fd. PRIME gives every import of one buffer on one fd the same handle,
//! and `GEM_CLOSE` closes it for all: the table closes it only when its
//! last owner (an import, a dumb buffer, a framebuffer) goes.

use std::collections::HashSet;
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use bufsync_backends::dmabuf::{fourcc, DmaBuf, Layout};
use bufsync_backends::drm::{DrmDevice, DumbBuffer, GemHandle};
use bufsync_backends::kms::{Display, FlipRequest, Framebuffer};
use bufsync_backends::testing::VgemBuffer;
use bufsync_tests::{
    has_driver, open_fds, pattern_buffer, pattern_bytes, pattern_pixel, require, serial,
};

const XR24: u32 = fourcc(b"XR24");
const WAIT: Duration = Duration::from_secs(5);
const EINVAL: i32 = 22;

/// Whether `handle` is closed on `dev`'s fd: `GEM_CLOSE` of it says EINVAL
/// (the probe closes it if it was still open, which the callers check
/// only once nothing should hold it).
fn closed(dev: &DrmDevice, handle: u32) -> bool {
    match bufsync_backends::sys::drm::gem_close(dev.as_fd(), handle) {
        Err(e) => e.raw_os_error() == Some(EINVAL),
        Ok(()) => false,
    }
}

/// Shows `fb` and checks, through writeback, that the screen holds the
/// pattern of `seed` (every pixel).
fn shows_pattern(display: &mut Display, fb: &Framebuffer, seed: u32) {
    display.commit(FlipRequest::new(fb)).unwrap();
    let cap = display.capture_writeback(WAIT).unwrap();
    let (w, h) = (fb.width().min(cap.width), fb.height().min(cap.height));
    let bad = (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .filter(|&(x, y)| cap.pixel(x, y) != Some(pattern_pixel(x, y, seed)))
        .count();
    assert_eq!(bad, 0, "{bad} pixels differ from pattern {seed}");
}

/// A display-sized dumb buffer on the display's own fd, filled with the
/// pattern of `seed` through its device mapping.
fn pattern_dumb(display: &Display, seed: u32) -> DumbBuffer {
    let (w, h) = display.size();
    let dumb = DumbBuffer::create(display.device(), w, h, 32).unwrap();
    let bytes = pattern_bytes(w, h, seed);
    let mut map = dumb.map().unwrap();
    let row = w as usize * 4;
    for (y, chunk) in bytes.chunks(row).enumerate() {
        map.write_at(y * dumb.pitch() as usize, chunk).unwrap();
    }
    drop(map);
    dumb
}

/// The same dma-buf imported twice on one fd: one handle with two owners;
/// dropping one import leaves the other working, and it still scans out.
#[test]
fn one_buffer_imported_twice_shares_its_handle() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    let mut display = Display::open_by_driver("vkms").unwrap();
    let dev = display.device().clone();
    let (w, h) = display.size();
    let buf = pattern_buffer(w, h, 3);
    let a = dev.import_dmabuf(&buf).unwrap();
    let b = dev.import_dmabuf(&buf).unwrap();
    assert_eq!(a.raw(), b.raw(), "PRIME deduplicates per fd");
    let handle = a.raw();
    assert_eq!(dev.gem_table().owners(handle), 2);
    drop(a);
    assert_eq!(dev.gem_table().owners(handle), 1);
    let fb = display
        .add_framebuffer(&b, buf.size(), buf.layout().unwrap())
        .unwrap();
    drop(b);
    assert_eq!(dev.gem_table().owners(handle), 1, "the framebuffer's");
    shows_pattern(&mut display, &fb, 3);
    // Importing again while the framebuffer holds it: the same handle.
    let c = dev.import_dmabuf(&buf).unwrap();
    assert_eq!(c.raw(), handle);
    drop(c);
    display.restore().unwrap();
    drop(fb);
    assert_eq!(dev.gem_table().owners(handle), 0);
    assert!(closed(&dev, handle), "the last owner did not close it");
}

/// A dumb buffer exported and imported back on its own fd (what a
/// display-allocated swapchain does) gets its own handle back; used as a
/// framebuffer and dropped in either order, the handle closes exactly once,
/// after its last owner, and a buffer created afterwards is never hit by a
/// stale close.
#[test]
fn dumb_buffer_reimported_on_its_own_fd() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    let mut display = Display::open_by_driver("vkms").unwrap();
    let dev = display.device().clone();
    let (w, h) = display.size();
    for dumb_first in [true, false] {
        let dumb = pattern_dumb(&display, 11);
        let handle = dumb.handle().raw();
        let buf = dumb.export(XR24).unwrap();
        let import = dev.import_dmabuf(&buf).unwrap();
        assert_eq!(import.raw(), handle, "its own handle comes back");
        assert_eq!(dev.gem_table().owners(handle), 2);
        let layout = Layout::linear(w, h, XR24, dumb.pitch());
        let fb = display
            .add_framebuffer(&import, dumb.size(), &layout)
            .unwrap();
        drop(import);
        assert_eq!(dev.gem_table().owners(handle), 2, "buffer + framebuffer");
        let size = dumb.size();
        if dumb_first {
            drop(dumb);
            assert_eq!(dev.gem_table().owners(handle), 1);
            shows_pattern(&mut display, &fb, 11);
            // A new buffer cannot get the still-open number...
            let other = pattern_dumb(&display, 12);
            assert_ne!(other.handle().raw(), handle);
            display.restore().unwrap();
            drop(fb);
            assert!(closed(&dev, handle));
            // ...and keeps working after the old handle's close.
            other.map().unwrap();
            let again = other.export(XR24).unwrap();
            assert_eq!(again.size(), size);
        } else {
            shows_pattern(&mut display, &fb, 11);
            display.restore().unwrap();
            drop(fb);
            assert_eq!(dev.gem_table().owners(handle), 1);
            // The buffer is intact: mapped and exported.
            dumb.map().unwrap();
            dumb.export(XR24).unwrap();
            drop((buf, dumb));
            assert!(closed(&dev, handle));
        }
    }
    assert!(dev.gem_table().is_empty());
}

/// A framebuffer or a handle of another fd is refused with a typed error.
#[test]
fn foreign_handle_is_refused() {
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    require!("vgem", has_driver("vgem"));
    let display = Display::open_by_driver("vkms").unwrap();
    let vgem = VgemBuffer::device().unwrap();
    let bo = VgemBuffer::create(&vgem, 64, 64).unwrap();
    let e = display
        .add_framebuffer(
            bo.dumb().handle(),
            bo.dumb().size(),
            &Layout::linear(64, 64, XR24, bo.dumb().pitch()),
        )
        .unwrap_err();
    assert!(
        matches!(e, bufsync_backends::kms::KmsError::ForeignHandle { .. }),
        "{e}"
    );
}

enum Item {
    Dumb(DumbBuffer),
    Buf(DmaBuf),
    Handle(GemHandle),
    Fb(Framebuffer),
    /// Keeps a vgem buffer alive while its dma-buf and imports are used.
    Vgem {
        _bo: VgemBuffer,
    },
}

/// 10 000 mixed cycles on the display's fd (dumb buffers, exports, imports
/// of its own and of vgem's buffers, framebuffers over either, drops in a
/// random order): every live handle stays valid (its export has the
/// buffer's size), and at the end the table is empty, every handle number
/// ever handed out is closed (`GEM_CLOSE` probe: EINVAL), and no fd leaked.
#[test]
fn ten_thousand_mixed_cycles_leak_nothing() {
    const CYCLES: u32 = 10_000;
    let _g = serial();
    require!("vkms", has_driver("vkms"));
    require!("vgem", has_driver("vgem"));
    let display = Display::open_by_driver("vkms").unwrap();
    let dev: Arc<DrmDevice> = display.device().clone();
    let vgem = VgemBuffer::device().unwrap();
    let fds = open_fds();
    let mut seen: HashSet<u32> = HashSet::new();
    let mut items: Vec<(Item, u64)> = Vec::new();
    let mut rng: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let (w, h) = (64u32, 64u32);
    let layout = |pitch| Layout::linear(w, h, XR24, pitch);
    let mut counts = [0u32; 6];
    for cycle in 0..CYCLES {
        let op = if items.len() >= 48 { 5 } else { next(6) };
        counts[op] += 1;
        match op {
            0 => {
                let d = DumbBuffer::create(&dev, w, h, 32).unwrap();
                seen.insert(d.handle().raw());
                let size = d.size();
                items.push((Item::Dumb(d), size));
            }
            1 => {
                // Export something of this fd (a dumb buffer or an import).
                let pick = items
                    .iter()
                    .position(|(i, _)| matches!(i, Item::Dumb(_) | Item::Handle(_)));
                if let Some(i) = pick {
                    let buf = match &items[i].0 {
                        Item::Dumb(d) => d.export(XR24).unwrap(),
                        Item::Handle(g) => g.export(false).unwrap(),
                        _ => unreachable!(),
                    };
                    let size = buf.size();
                    items.push((Item::Buf(buf), size));
                }
            }
            2 => {
                // Import a dma-buf (of this fd, or of vgem) on the display's fd.
                let bufs: Vec<usize> = (0..items.len())
                    .filter(|&i| matches!(items[i].0, Item::Buf(_)))
                    .collect();
                if bufs.is_empty() || next(3) == 0 {
                    let bo = VgemBuffer::create(&vgem, w, h).unwrap();
                    let buf = bo.export().unwrap();
                    let g = dev.import_dmabuf(&buf).unwrap();
                    seen.insert(g.raw());
                    let size = buf.size();
                    items.push((Item::Vgem { _bo: bo }, size));
                    items.push((Item::Handle(g), size));
                    items.push((Item::Buf(buf), size));
                } else {
                    let i = bufs[next(bufs.len())];
                    let Item::Buf(buf) = &items[i].0 else {
                        unreachable!()
                    };
                    let g = dev.import_dmabuf(buf).unwrap();
                    seen.insert(g.raw());
                    let size = items[i].1;
                    items.push((Item::Handle(g), size));
                }
            }
            3 | 4 => {
                // A framebuffer over a handle of this fd.
                let handles: Vec<usize> = (0..items.len())
                    .filter(|&i| matches!(items[i].0, Item::Dumb(_) | Item::Handle(_)))
                    .collect();
                if !handles.is_empty() {
                    let i = handles[next(handles.len())];
                    let size = items[i].1;
                    let (gem, pitch) = match &items[i].0 {
                        Item::Dumb(d) => (d.handle(), d.pitch()),
                        Item::Handle(g) => (g, w * 4),
                        _ => unreachable!(),
                    };
                    let fb = display.add_framebuffer(gem, size, &layout(pitch)).unwrap();
                    items.push((Item::Fb(fb), size));
                }
            }
            _ => {
                if !items.is_empty() {
                    let i = next(items.len());
                    items.swap_remove(i);
                }
            }
        }
        if cycle % 500 == 0 {
            // Every live handle still names its own buffer.
            for (item, size) in &items {
                let gem = match item {
                    Item::Dumb(d) => d.handle(),
                    Item::Handle(g) => g,
                    Item::Fb(f) => f.handle(),
                    _ => continue,
                };
                assert!(dev.gem_table().owners(gem.raw()) >= 1);
                assert_eq!(
                    gem.export(false).unwrap().size(),
                    *size,
                    "handle {}",
                    gem.raw()
                );
            }
        }
    }
    drop(items);
    let open = dev.gem_table().len();
    let leaked: Vec<u32> = seen.iter().copied().filter(|&h| !closed(&dev, h)).collect();
    log::info!(
        "gem: {CYCLES} cycles (ops {counts:?}), {} distinct handle numbers, {open} open in the table after, {} still open in the kernel, fds {fds} -> {}",
        seen.len(),
        leaked.len(),
        open_fds()
    );
    assert_eq!(open, 0, "handles left in the table");
    assert!(leaked.is_empty(), "handles leaked: {leaked:?}");
    assert!(vgem.gem_table().is_empty(), "vgem handles leaked");
    assert_eq!(open_fds(), fds, "fds leaked");
}
