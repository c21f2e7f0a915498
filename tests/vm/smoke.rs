//! Device smoke test: the VM has vkms, vgem and virtio-gpu (found by driver
//! name), and a vgem fence shows through a PRIME dma-buf's implicit
//! sync_file.

use std::time::Duration;

use bufsync_backends::dmabuf::Access;
use bufsync_backends::drm::DrmDevice;
use bufsync_backends::testing::VgemBuffer;
use bufsync_tests::{has_driver, require};

#[test]
fn devices_present_by_driver_name() {
    bufsync_tests::init_log();
    for driver in ["vkms", "vgem", "virtio_gpu"] {
        require!(driver, has_driver(driver));
        let dev = DrmDevice::find(driver).expect("find by driver name");
        assert_eq!(dev.driver(), driver);
        log::info!("{driver}: {} caps {:?}", dev.path().display(), dev.caps());
    }
    let vkms = DrmDevice::find("vkms").unwrap();
    let kms = vkms.kms_summary().expect("vkms KMS summary");
    assert!(!kms.crtcs.is_empty() && kms.crtcs.iter().all(|c| c.out_fence_ptr));
    assert!(kms.planes.iter().any(|p| p.in_fence_fd));
    assert!(kms.connectors.iter().any(|c| c.writeback));
}

#[test]
fn vgem_fence_through_prime_sync_file() {
    bufsync_tests::init_log();
    require!("vgem", has_driver("vgem"));
    let vgem = VgemBuffer::device().unwrap();
    let bo = VgemBuffer::create(&vgem, 64, 64).unwrap();
    let dmabuf = bo.export().unwrap();
    assert!(dmabuf.size() >= 64 * 64 * 4);

    let idle = dmabuf.export_sync_file(Access::Read).unwrap();
    assert!(
        idle.is_signaled().unwrap(),
        "no fence yet: signaled at once"
    );

    let fence = bo.attach_fence(true).unwrap();
    let pending = dmabuf.export_sync_file(Access::Read).unwrap();
    assert!(
        !pending.is_signaled().unwrap(),
        "pending after VGEM_FENCE_ATTACH"
    );
    let info = pending.info().unwrap();
    assert_eq!(info.status, 0);
    assert_eq!(info.fences.len(), 1);

    fence.signal().unwrap();
    pending.wait(Duration::from_secs(5)).unwrap();
    assert!(
        pending.is_signaled().unwrap(),
        "signaled after VGEM_FENCE_SIGNAL"
    );
    assert_eq!(pending.info().unwrap().status, 1);
}
