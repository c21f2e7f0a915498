//! Vulkan backend benchmarks (lavapipe is enough; skipped without Vulkan).
//!
//! - `signal/runtime_fence`: submit -> timeline signal -> runtime fence
//!   signaled by the fence engine's poller (the software path), against
//!   `signal/vk_wait_semaphores`: the same submit waited directly.
//! - `chain/hw_wait`: two chained submits (render, then render again) where
//!   the second waits for the first on the GPU (timeline wait semaphore),
//!   against `chain/sw_wait`: the CPU waits for the first before submitting
//!   the second.
//!
//! Run: `eval "$(cargo xtask env)"; cargo bench -p bufsync-examples --bench vulkan`
//! (`xtask env` points Vulkan at the cached lavapipe; a host with its own
//! Mesa 25 lavapipe needs nothing).

use std::os::fd::AsFd;
use std::sync::Arc;

use bufsync_backends::vulkan::ash::vk;
use bufsync_backends::vulkan::{
    wait_fence, ExternalBuffer, ImageLayout, Submitter, VulkanContext, Wait, DRM_FORMAT_XRGB8888,
};
use bufsync_examples::render::pattern::{PatternRenderer, RenderTarget};
use criterion::{criterion_group, criterion_main, Criterion};

/// Bound on waits that must succeed.
const LONG: std::time::Duration = std::time::Duration::from_secs(10);

const W: u32 = 256;
const H: u32 = 256;

fn context() -> Option<Arc<VulkanContext>> {
    if std::env::var_os("VK_ICD_FILENAMES").is_none() {
        let icd = std::env::var_os("BUFSYNC_LVP_ICD")
            .unwrap_or_else(|| "/usr/share/vulkan/icd.d/lvp_icd.json".into());
        std::env::set_var("VK_ICD_FILENAMES", icd);
    }
    match VulkanContext::new() {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("SKIPPED: vulkan benches: no Vulkan device: {e}");
            None
        }
    }
}

fn target(
    ctx: &Arc<VulkanContext>,
    renderer: &PatternRenderer,
) -> Option<(RenderTarget, std::os::fd::OwnedFd)> {
    let stride = u64::from(W) * 4;
    let size = stride * u64::from(H);
    let fd = rustix::fs::memfd_create("bench", rustix::fs::MemfdFlags::CLOEXEC).ok()?;
    rustix::fs::ftruncate(&fd, size).ok()?;
    let buf = ExternalBuffer::import(
        ctx,
        fd.as_fd(),
        0,
        size,
        vk::BufferUsageFlags::STORAGE_BUFFER,
    )
    .ok()?;
    let layout = ImageLayout::linear(W, H, DRM_FORMAT_XRGB8888, 0, stride, size);
    Some((renderer.target(Arc::new(buf), &layout).ok()?, fd))
}

fn signal(c: &mut Criterion) {
    let Some(ctx) = context() else { return };
    let sub = Submitter::new(&ctx).expect("submitter");
    let mut g = c.benchmark_group("signal");
    g.bench_function("runtime_fence", |b| {
        b.iter(|| {
            let s = sub.submit(&[], LONG, |_, _| Ok(())).expect("submit");
            // The runtime's wait: enable_signaling -> engine poll -> signal.
            s.fence.wait().expect("wait");
        })
    });
    g.bench_function("vk_wait_semaphores", |b| {
        b.iter(|| {
            let s = sub.submit(&[], LONG, |_, _| Ok(())).expect("submit");
            assert!(sub.timeline().wait(s.value, LONG).expect("wait"));
        })
    });
    g.finish();
}

fn chain(c: &mut Criterion) {
    let Some(ctx) = context() else { return };
    let renderer = PatternRenderer::new(&ctx).expect("renderer");
    let Some((t1, _fd1)) = target(&ctx, &renderer) else {
        eprintln!("SKIPPED: chain benches: memfd import unsupported");
        return;
    };
    let Some((t2, _fd2)) = target(&ctx, &renderer) else {
        return;
    };
    let sub = Submitter::new(&ctx).expect("submitter");
    let mut frame = 0u32;
    let mut g = c.benchmark_group("chain");
    g.bench_function("hw_wait", |b| {
        b.iter(|| {
            frame = frame.wrapping_add(1);
            let a = sub
                .submit(&[], LONG, |_, cmd| {
                    renderer.record(cmd, &t1, frame);
                    Ok(())
                })
                .expect("submit a");
            let b2 = sub
                .submit(&[Wait::Fence(&a.fence)], LONG, |_, cmd| {
                    renderer.record(cmd, &t2, frame);
                    Ok(())
                })
                .expect("submit b");
            wait_fence(&b2.fence, LONG).expect("wait b");
        })
    });
    g.bench_function("sw_wait", |b| {
        b.iter(|| {
            frame = frame.wrapping_add(1);
            let a = sub
                .submit(&[], LONG, |_, cmd| {
                    renderer.record(cmd, &t1, frame);
                    Ok(())
                })
                .expect("submit a");
            a.fence.wait().expect("wait a");
            let b2 = sub
                .submit(&[], LONG, |_, cmd| {
                    renderer.record(cmd, &t2, frame);
                    Ok(())
                })
                .expect("submit b");
            wait_fence(&b2.fence, LONG).expect("wait b");
        })
    });
    g.finish();
}

criterion_group!(benches, signal, chain);
criterion_main!(benches);
