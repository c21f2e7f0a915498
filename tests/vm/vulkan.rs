//! Vulkan backend in the test VM (lavapipe with udmabuf, vgem): dma-buf
//! export + render + mmap check, rendering into an imported vgem buffer, a
//! GPU-side wait on a pending vgem sync_file, the SYNC_FD export probe and
//! the GPU-written seqno word.

use std::sync::Arc;
use std::time::Duration;

use bufsync::fence::WaitError;
use bufsync_backends::dmabuf::{Access, DmaBuf};
use bufsync_backends::sync_file::SyncFileFence;
use bufsync_backends::testing::VgemBuffer;
use bufsync_backends::vulkan::ash::vk;
use bufsync_backends::vulkan::{
    wait_fence, ExternalBuffer, ExternalImage, ImageLayout, SeqnoWriter, Submitter, SyncFdExport,
    TimelineSemaphore, Wait, WaitPath, DRM_FORMAT_MOD_LINEAR, DRM_FORMAT_XRGB8888,
};
use bufsync_examples::check::{check_frame, decode_frame_number};
use bufsync_examples::render::pattern::PatternRenderer;
use bufsync_tests::{has_driver, lavapipe, require, serial};

/// Bound on waits that must succeed.
const LONG: std::time::Duration = std::time::Duration::from_secs(10);

const W: u32 = 128;
const H: u32 = 48;

/// lavapipe that can export dma-bufs (udmabuf present).
macro_rules! exporting_lavapipe {
    ($ctx:ident) => {
        let _serial = serial();
        let $ctx = lavapipe();
        require!("lavapipe (Vulkan)", $ctx.is_some());
        let $ctx = $ctx.unwrap();
        require!(
            "Vulkan DMA_BUF export (udmabuf)",
            $ctx.caps().dmabuf_buffer.export
        );
    };
}

/// Reads the whole dma-buf inside a DMA_BUF_IOCTL_SYNC read bracket.
fn read_dmabuf(buf: &DmaBuf) -> Vec<u8> {
    let map = buf.map(false).unwrap();
    let access = buf
        .begin_cpu_access(Access::Read, Duration::from_secs(10))
        .unwrap();
    // SAFETY: the map covers `len` readable bytes and lives across the copy.
    let bytes = unsafe { std::slice::from_raw_parts(map.as_ptr(), map.len()) }.to_vec();
    access.end().unwrap();
    bytes
}

fn render(
    sub: &Submitter,
    renderer: &PatternRenderer,
    target: &bufsync_examples::render::pattern::RenderTarget,
    frame: u32,
) {
    let s = sub
        .submit(&[], LONG, |_, cmd| {
            renderer.record(cmd, target, frame);
            Ok(())
        })
        .unwrap();
    wait_fence(&s.fence, LONG).unwrap();
}

#[test]
fn caps_in_vm() {
    exporting_lavapipe!(ctx);
    let caps = ctx.caps();
    log::info!("{caps}");
    assert!(caps.dmabuf_buffer.import && caps.dmabuf_buffer.export);
    assert!(caps.image_drm_format_modifier);
    assert!(caps.drm_modifiers.iter().all(|m| m
        .modifiers
        .iter()
        .any(|i| i.modifier == DRM_FORMAT_MOD_LINEAR)));
}

#[test]
fn sync_fd_export_probe() {
    exporting_lavapipe!(ctx);
    let caps = ctx.caps();
    require!("SYNC_FD semaphore export", caps.sync_fd_semaphore.export);
    // The probe decided by trying (on this first need), and reached a verdict.
    assert_ne!(ctx.sync_fd_export(), SyncFdExport::Unsupported, "{caps}");
    log::info!("SYNC_FD export: {:?}", ctx.sync_fd_export());
    // What submissions do follows the verdict: a pending sync_file while the
    // work is held back, or none at all.
    let gate = TimelineSemaphore::new(&ctx, 0).unwrap();
    let dep = gate.point(1);
    let sub = Submitter::new(&ctx).unwrap();
    if ctx.sync_file_out() {
        let s = sub
            .submit(&[Wait::Fence(&dep)], LONG, |_, _| Ok(()))
            .unwrap();
        let sf = s.sync_file.as_ref().expect("a pending sync_file");
        assert!(!sf.is_signaled().unwrap());
        gate.signal(1).unwrap();
        sf.wait(Duration::from_secs(10)).unwrap();
        wait_fence(&s.fence, LONG).unwrap();
    } else {
        gate.signal(1).unwrap();
        let s = sub
            .submit(&[Wait::Fence(&dep)], LONG, |_, _| Ok(()))
            .unwrap();
        assert!(s.sync_file.is_none());
        wait_fence(&s.fence, LONG).unwrap();
    }
}

#[test]
fn export_buffer_render_mmap_check() {
    exporting_lavapipe!(ctx);
    let stride = u64::from(W) * 4;
    let size = stride * u64::from(H);
    let layout = ImageLayout::linear(W, H, DRM_FORMAT_XRGB8888, 0, stride, size);
    let (buf, dmabuf) = ExternalBuffer::export_dmabuf(
        &ctx,
        size,
        vk::BufferUsageFlags::STORAGE_BUFFER,
        Some(&layout),
    )
    .unwrap();
    assert!(dmabuf.size() >= size);
    assert_eq!(dmabuf.layout().unwrap().planes[0].stride as u64, stride);
    let renderer = PatternRenderer::new(&ctx).unwrap();
    let target = renderer.target(Arc::new(buf), &layout).unwrap();
    let sub = Submitter::new(&ctx).unwrap();
    for frame in [1u32, 2, 0x8000_0001] {
        render(&sub, &renderer, &target, frame);
        let bytes = read_dmabuf(&dmabuf);
        check_frame(&bytes, &layout, frame).unwrap();
        assert_eq!(decode_frame_number(&bytes, &layout), Some(frame));
    }
}

#[test]
fn export_linear_image_and_render_through_reimport() {
    exporting_lavapipe!(ctx);
    let usage = vk::ImageUsageFlags::STORAGE | vk::ImageUsageFlags::TRANSFER_SRC;
    let (img, dmabuf) =
        ExternalImage::export_dmabuf(&ctx, W, H, vk::Format::B8G8R8A8_UNORM, usage, true).unwrap();
    let layout = img.layout().clone();
    log::info!("exported image layout: {layout:?}");
    assert_eq!(layout.modifier, DRM_FORMAT_MOD_LINEAR);
    assert!(layout.planes[0].stride >= u64::from(W) * 4);
    // Import the exported dma-buf again (as another device would) and draw.
    let buf =
        ExternalBuffer::import_dmabuf(&ctx, &dmabuf, vk::BufferUsageFlags::STORAGE_BUFFER).unwrap();
    let renderer = PatternRenderer::new(&ctx).unwrap();
    let target = renderer.target(Arc::new(buf), &layout).unwrap();
    let sub = Submitter::new(&ctx).unwrap();
    render(&sub, &renderer, &target, 42);
    let bytes = read_dmabuf(&dmabuf);
    check_frame(&bytes, &layout, 42).unwrap();
    // The same dma-buf also imports as an image with its explicit layout.
    let again =
        ExternalImage::import_dmabuf(&ctx, &dmabuf, vk::ImageUsageFlags::TRANSFER_SRC).unwrap();
    assert_eq!(again.layout().planes, layout.planes);
}

#[test]
fn export_modifier_image_and_render_as_storage_image() {
    exporting_lavapipe!(ctx);
    let usage = vk::ImageUsageFlags::STORAGE | vk::ImageUsageFlags::TRANSFER_SRC;
    // The driver picks among the probed modifiers that allow storage.
    let (img, dmabuf) =
        ExternalImage::export_dmabuf(&ctx, W, H, vk::Format::B8G8R8A8_UNORM, usage, true).unwrap();
    let layout = img.layout().clone();
    assert!(ctx
        .caps()
        .drm_modifiers
        .iter()
        .any(|m| m.modifiers.iter().any(|i| i.modifier == layout.modifier)));
    let renderer = PatternRenderer::new(&ctx).unwrap();
    let target = renderer.image_target(Arc::new(img)).unwrap();
    let sub = Submitter::new(&ctx).unwrap();
    render(&sub, &renderer, &target, 5);
    if layout.modifier == DRM_FORMAT_MOD_LINEAR {
        let bytes = read_dmabuf(&dmabuf);
        check_frame(&bytes, &layout, 5).unwrap();
        assert_eq!(decode_frame_number(&bytes, &layout), Some(5));
    }
}

#[test]
fn import_vgem_buffer_and_render_into_it() {
    let _serial = serial();
    require!("vgem", has_driver("vgem"));
    let ctx = lavapipe();
    require!("lavapipe (Vulkan)", ctx.is_some());
    let ctx = ctx.unwrap();
    let vgem = VgemBuffer::device().unwrap();
    let bo = VgemBuffer::create(&vgem, W, H).unwrap();
    let dmabuf = bo.export().unwrap();
    let layout = ImageLayout::from_dmabuf(dmabuf.layout().unwrap(), dmabuf.size());
    let buf =
        ExternalBuffer::import_dmabuf(&ctx, &dmabuf, vk::BufferUsageFlags::STORAGE_BUFFER).unwrap();
    let renderer = PatternRenderer::new(&ctx).unwrap();
    let target = renderer.target(Arc::new(buf), &layout).unwrap();
    let sub = Submitter::new(&ctx).unwrap();
    render(&sub, &renderer, &target, 9);
    let bytes = read_dmabuf(&dmabuf);
    check_frame(&bytes, &layout, 9).unwrap();
    assert_eq!(decode_frame_number(&bytes, &layout), Some(9));
}

#[test]
fn gpu_waits_on_pending_vgem_sync_file() {
    let _serial = serial();
    require!("vgem", has_driver("vgem"));
    let ctx = lavapipe();
    require!("lavapipe (Vulkan)", ctx.is_some());
    let ctx = ctx.unwrap();
    require!("SYNC_FD semaphore import", ctx.caps().sync_file_in());
    let vgem = VgemBuffer::device().unwrap();
    let bo = VgemBuffer::create(&vgem, W, H).unwrap();
    let dmabuf = bo.export().unwrap();
    let fence = bo.attach_fence(true).unwrap();
    let pending = dmabuf.export_sync_file(Access::Read).unwrap();
    assert!(!pending.is_signaled().unwrap());
    // Render into the vgem buffer once its writer (the vgem fence) is done.
    let layout = ImageLayout::from_dmabuf(dmabuf.layout().unwrap(), dmabuf.size());
    let buf =
        ExternalBuffer::import_dmabuf(&ctx, &dmabuf, vk::BufferUsageFlags::STORAGE_BUFFER).unwrap();
    let renderer = PatternRenderer::new(&ctx).unwrap();
    let target = renderer.target(Arc::new(buf), &layout).unwrap();
    let sub = Submitter::new(&ctx).unwrap();
    assert_eq!(sub.classify(&Wait::from(&pending)), WaitPath::SyncFileHw);
    let s = sub
        .submit(&[Wait::from(&pending)], LONG, |_, cmd| {
            renderer.record(cmd, &target, 77);
            Ok(())
        })
        .unwrap();
    assert_eq!(s.report.sync_file_hw, 1, "{:?}", s.report);
    assert_eq!(s.report.software, 0);
    // The submit returned at once; the GPU holds the work back.
    assert_eq!(
        wait_fence(&s.fence, Duration::from_millis(200)),
        Err(WaitError::TimedOut)
    );
    assert!(!s.fence.is_signaled());
    fence.signal().unwrap();
    wait_fence(&s.fence, LONG).unwrap();
    check_frame(&read_dmabuf(&dmabuf), &layout, 77).unwrap();
}

#[test]
fn gpu_written_seqno_fence() {
    exporting_lavapipe!(ctx);
    let (_buf, dmabuf) =
        ExternalBuffer::export_dmabuf(&ctx, 4096, vk::BufferUsageFlags::TRANSFER_DST, None)
            .unwrap();
    let writer = SeqnoWriter::for_dmabuf(&ctx, &dmabuf, 64).unwrap();
    let gate = TimelineSemaphore::new(&ctx, 0).unwrap();
    let sub = Submitter::new(&ctx).unwrap();
    for seqno in 1..=3u32 {
        let fence = writer.fence(seqno).unwrap();
        let dep = gate.point(u64::from(seqno));
        let s = sub
            .submit(&[Wait::Fence(&dep)], LONG, |dev, cmd| {
                writer.record(dev, cmd, seqno);
                Ok(())
            })
            .unwrap();
        // Written by the GPU only once its dependency signals.
        assert!(!fence.is_signaled());
        assert_eq!(writer.word().unwrap().load(), u64::from(seqno - 1));
        gate.signal(u64::from(seqno)).unwrap();
        fence.wait().unwrap();
        let b = read_dmabuf(&dmabuf);
        assert_eq!(u32::from_ne_bytes([b[64], b[65], b[66], b[67]]), seqno);
        wait_fence(&s.fence, LONG).unwrap();
    }
}

#[test]
fn sync_file_fence_is_waited_on_the_gpu() {
    let _serial = serial();
    require!("vgem", has_driver("vgem"));
    let ctx = lavapipe();
    require!("lavapipe (Vulkan)", ctx.is_some());
    let ctx = ctx.unwrap();
    require!("SYNC_FD semaphore import", ctx.caps().sync_file_in());
    let vgem = VgemBuffer::device().unwrap();
    let bo = VgemBuffer::create(&vgem, 16, 16).unwrap();
    let dmabuf = bo.export().unwrap();
    let vfence = bo.attach_fence(true).unwrap();
    let runtime = SyncFileFence::fence(dmabuf.export_sync_file(Access::Read).unwrap()).unwrap();
    let sub = Submitter::new(&ctx).unwrap();
    assert_eq!(sub.classify(&Wait::Fence(&runtime)), WaitPath::SyncFileHw);
    let s = sub
        .submit(&[Wait::Fence(&runtime)], LONG, |_, _| Ok(()))
        .unwrap();
    assert_eq!(s.report.sync_file_hw, 1, "{:?}", s.report);
    assert!(!s.fence.is_signaled());
    vfence.signal().unwrap();
    wait_fence(&s.fence, LONG).unwrap();
    runtime.wait().unwrap();
}
