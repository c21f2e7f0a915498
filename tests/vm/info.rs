//! `bufsync-info` in the VM: every subcommand run on the guest's real
//! devices (vkms, vgem, virtio_gpu, lavapipe), its facts cross-checked
//! against ioctls done here, its `--json` parsed and checked against the
//! documented schema (`docs/info/`), its text within 100 columns and
//! holding the same facts.
//!
//! The tool runs in-process through `bufsync_info::run`, which is the
//! binary less its `main` (argument list in, exit status out). The one
//! case that needs another user (`buffer` refused by `pidfd_getfd`)
//! re-runs this test binary as `nobody`.

use std::os::unix::process::CommandExt as _;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use bufsync_backends::drm::DrmDevice;
use bufsync_backends::testing::VgemBuffer;
use bufsync_backends::vulkan::{Submitter, Wait, WaitPath};
use bufsync_info::{schema, text::WIDTH};
use bufsync_tests::{has_driver, lavapipe, require, serial};
use drm::control::Device as _;
use drm::{ClientCapability, Device as _, DriverCapability};
use serde_json::Value;

/// Runs the tool: (exit status, stdout, stderr).
fn info(args: &[&str]) -> (i32, String, String) {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = bufsync_info::run(&args, &mut out, &mut err);
    let err = String::from_utf8(err).expect("utf-8 errors");
    for l in err.lines() {
        assert!(
            l.chars().count() <= WIDTH,
            "an error line over {WIDTH} columns:\n{l}"
        );
    }
    (
        code,
        String::from_utf8(out).expect("utf-8 report"),
        // Errors are wrapped at 100 columns: compare them as one line.
        err.split_whitespace().collect::<Vec<_>>().join(" "),
    )
}

/// Runs `args` with `--json`, expects status 0, parses the report and
/// checks it against its schema.
fn info_json(args: &[&str]) -> Value {
    let mut a = args.to_vec();
    a.push("--json");
    let (code, out, err) = info(&a);
    let v: Value = serde_json::from_str(&out).expect("the report parses as JSON");
    let failed: Vec<&Value> = v["cells"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter(|c| c["verify"]["result"] == "fail")
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(
        code, 0,
        "bufsync-info {args:?}: {err}; failed cells: {failed:#?}"
    );
    let s = schema::schema(args[0]).expect("a schema");
    let errors = schema::validate(&s, &v);
    assert!(
        errors.is_empty(),
        "{args:?} against its schema: {errors:#?}"
    );
    assert_eq!(v["schema"], format!("bufsync-info.{}", args[0]));
    assert_eq!(v["version"], schema::VERSION);
    v
}

/// Runs `args` as text, expects status 0 and lines within [`WIDTH`].
fn info_text(args: &[&str]) -> String {
    let (code, out, err) = info(args);
    assert_eq!(code, 0, "bufsync-info {args:?}: {err}");
    for l in out.lines() {
        assert!(
            l.chars().count() <= WIDTH,
            "{args:?}: a line over {WIDTH} columns:\n{l}"
        );
    }
    log::info!("bufsync-info {}:\n{out}", args.join(" "));
    out
}

fn node<'a>(report: &'a Value, driver: &str, kind: &str) -> &'a Value {
    report["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["driver"] == driver && n["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} node of {driver} in {report:#}"))
}

fn strings(v: &Value) -> Vec<&str> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_str().unwrap())
        .collect()
}

#[test]
fn devices_lists_vkms_vgem_virtio_gpu_as_the_kernel_says() {
    let _g = serial();
    for d in ["vkms", "vgem", "virtio_gpu"] {
        require!(d, has_driver(d));
    }
    let r = info_json(&["devices"]);
    let text = info_text(&["devices"]);

    // Every node, cross-checked against the kernel directly.
    for n in r["nodes"].as_array().unwrap() {
        let path = n["path"].as_str().unwrap();
        let dev = DrmDevice::open(path).unwrap();
        let version = dev.get_driver().unwrap();
        assert_eq!(n["driver"], version.name().to_str().unwrap(), "{path}");
        let cap = |c| dev.get_driver_capability(c).unwrap_or(0);
        let prime = cap(DriverCapability::Prime);
        assert_eq!(n["caps"]["prime_import"], prime & 1 != 0, "{path}");
        assert_eq!(n["caps"]["prime_export"], prime & 2 != 0, "{path}");
        assert_eq!(n["caps"]["syncobj"], cap(DriverCapability::SyncObj) != 0);
        assert_eq!(
            n["caps"]["syncobj_timeline"],
            cap(DriverCapability::TimelineSyncObj) != 0
        );
        assert_eq!(
            n["caps"]["dumb_buffer"],
            cap(DriverCapability::DumbBuffer) != 0
        );
        let name = path.strip_prefix("/dev/dri/").unwrap();
        assert!(text.contains(name), "{name} in the text");
        if n["kms"].is_null() {
            continue;
        }
        // Every plane a universal-planes client sees; those an atomic
        // client does not are the hotspot cursors.
        dev.set_client_capability(ClientCapability::UniversalPlanes, true)
            .unwrap();
        let planes = dev.plane_handles().unwrap();
        let listed = n["kms"]["planes"].as_array().unwrap();
        assert_eq!(listed.len(), planes.len(), "{path}: every plane");
        dev.set_client_capability(ClientCapability::Atomic, true)
            .unwrap();
        let atomic = dev.plane_handles().unwrap();
        for p in listed {
            let h = planes.iter().find(|h| p["id"] == u32::from(**h)).unwrap();
            assert_eq!(p["hotspot_cursor"], !atomic.contains(h), "{path}: {p:#}");
        }
        for (p, h) in listed.iter().zip(&planes) {
            assert_eq!(p["id"], u32::from(*h));
            // The plain format list (GETPLANE) is in IN_FORMATS' pairs.
            for f in dev.get_plane(*h).unwrap().formats() {
                let name = bufsync_info::names::fourcc(*f);
                assert!(
                    strings(&p["formats"])
                        .iter()
                        .any(|x| x.split(':').next() == Some(&name)),
                    "{path} plane {h:?}: {name} in {}",
                    p["formats"]
                );
            }
        }
        let res = dev.resource_handles().unwrap();
        assert_eq!(
            n["kms"]["crtcs"].as_array().unwrap().len(),
            res.crtcs().len()
        );
    }

    // vkms: atomic, no syncobj, primary + 8 overlays + cursor, all with
    // IN_FENCE_FD and XR24:LINEAR, a CRTC with OUT_FENCE_PTR, writeback.
    let vkms = node(&r, "vkms", "primary");
    assert_eq!(vkms["caps"]["atomic"], true);
    assert_eq!(vkms["caps"]["syncobj"], false);
    assert_eq!(vkms["caps"]["prime_import"], true);
    let k = &vkms["kms"];
    let planes = k["planes"].as_array().unwrap();
    let count = |t: &str| planes.iter().filter(|p| p["type"] == t).count();
    assert_eq!((count("primary"), count("cursor")), (1, 1));
    assert_eq!(count("overlay"), 8, "vkms loaded with enable_overlay=1");
    for p in planes {
        assert_eq!(p["in_fence_fd"], true);
        assert_eq!(p["in_formats"], true);
        assert!(strings(&p["formats"]).contains(&"XR24:LINEAR"), "{p:#}");
    }
    assert!(k["crtcs"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["out_fence_ptr"] == true));
    let wb = k["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["writeback"] == true)
        .expect("vkms's writeback connector");
    assert_eq!(wb["writeback_out_fence_ptr"], true);
    assert!(strings(&wb["writeback_formats"]).contains(&"XR24"));
    let virt = k["connectors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["writeback"] == false)
        .unwrap();
    assert_eq!(virt["state"], "connected");
    assert!(virt["modes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["name"] == "1024x768@60" && m["preferred"] == true));

    // virtio_gpu: atomic KMS with syncobj timelines, one primary plane
    // with IN_FENCE_FD and XR24:LINEAR.
    let vg = node(&r, "virtio_gpu", "primary");
    assert_eq!(vg["caps"]["atomic"], true);
    assert_eq!(vg["caps"]["syncobj"], true);
    assert_eq!(vg["caps"]["syncobj_timeline"], true);
    let vp = vg["kms"]["planes"].as_array().unwrap();
    assert_eq!(vp.len(), 2, "primary and the hotspot cursor");
    assert_eq!(vp[0]["type"], "primary");
    assert_eq!(vp[0]["hotspot_cursor"], false);
    assert_eq!(
        (vp[1]["type"].as_str(), vp[1]["hotspot_cursor"].as_bool()),
        (Some("cursor"), Some(true))
    );
    assert_eq!(vp[0]["in_fence_fd"], true);
    assert!(strings(&vp[0]["formats"]).contains(&"XR24:LINEAR"));
    assert_eq!(node(&r, "virtio_gpu", "render")["caps"]["syncobj"], true);

    // vgem: GEM and PRIME only.
    let vgem = node(&r, "vgem", "render");
    assert_eq!(vgem["caps"]["prime_export"], true);
    assert_eq!(vgem["caps"]["prime_import"], true);
    assert_eq!(vgem["caps"]["syncobj"], false);
    assert!(vgem["kms"].is_null());

    // The text holds the same facts.
    assert!(text.contains("XR24:LINEAR"));
    for d in ["vkms", "vgem", "virtio_gpu"] {
        assert!(text.contains(d));
    }
    for p in planes.iter().chain(vp) {
        let id = p["id"].as_u64().unwrap();
        assert!(
            text.lines()
                .any(|l| l.trim_start().starts_with(&format!("{id} "))
                    && l.contains(p["type"].as_str().unwrap())),
            "plane {id} in the text"
        );
    }
    assert!(text.contains("Writeback-1") && text.contains("WRITEBACK_OUT_FENCE_PTR: yes"));
}

#[test]
fn vulkan_shows_lavapipe_extensions_handles_and_the_sync_fd_probe() {
    let _g = serial();
    let ctx = lavapipe();
    require!("lavapipe", ctx.is_some());
    let ctx = ctx.unwrap();
    let r = info_json(&["vulkan"]);
    let text = info_text(&["vulkan"]);
    let devs = r["devices"].as_array().unwrap();
    let d = devs
        .iter()
        .find(|d| d["name"].as_str().unwrap().starts_with("llvmpipe"))
        .expect("lavapipe listed");
    assert_eq!(d["type"], "cpu");
    let c = &d["context"];
    let ext = |name: &str| {
        c["extensions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap_or_else(|| panic!("{name} listed"))["present"]
            .clone()
    };
    assert_eq!(ext("VK_KHR_external_memory_fd"), true);
    assert_eq!(ext("VK_EXT_external_memory_dma_buf"), true);
    assert_eq!(ext("VK_KHR_external_semaphore_fd"), true);
    for e in c["extensions"].as_array().unwrap() {
        let name = std::ffi::CString::new(e["name"].as_str().unwrap()).unwrap();
        assert_eq!(e["present"], ctx.has_extension(&name), "{name:?}");
    }
    assert_eq!(c["timeline_semaphores"], true);
    // lavapipe's SYNC_FD export waits for the work: no pending sync_file.
    assert_eq!(c["sync_fd_export"], "blocks");
    let handle = |list: &str, object: &str, handle: &str| {
        c[list]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["object"] == object && h["handle"] == handle)
            .unwrap_or_else(|| panic!("{object} {handle}"))
            .clone()
    };
    let dmabuf = handle("external_memory", "buffer", "DMA_BUF");
    assert_eq!(dmabuf["import"], ctx.caps().dmabuf_buffer.import);
    assert_eq!(dmabuf["export"], true, "udmabuf in the guest");
    let sync_fd = handle("external_semaphores", "binary semaphore", "SYNC_FD");
    assert_eq!(sync_fd["import"], ctx.caps().sync_fd_semaphore.import);
    let bgra = c["drm_modifiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["vk_format"] == "B8G8R8A8_UNORM")
        .expect("B8G8R8A8_UNORM's modifiers");
    assert_eq!(strings(&bgra["drm_formats"]), ["AR24", "XR24"]);
    let linear = bgra["modifiers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "LINEAR")
        .expect("LINEAR");
    assert_eq!(
        (linear["import"].clone(), linear["export"].clone()),
        (true.into(), true.into())
    );

    assert!(text.contains("llvmpipe"));
    assert!(text.contains("VK_EXT_external_memory_dma_buf   present"));
    assert!(text.contains("SYNC_FD export probe: blocks"));
    assert!(text.contains("export: AR24:LINEAR XR24:LINEAR"));
}

fn cell<'a>(r: &'a Value, fence: &str, waiter: &str) -> &'a Value {
    r["cells"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["fence"] == fence && c["waiter"] == waiter)
        .unwrap_or_else(|| panic!("no cell ({fence}, {waiter})"))
}

fn plane_ids(r: &Value, driver: &str) -> Vec<String> {
    r["waiters"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|w| w["kind"] == "kms_plane" && w["label"].as_str().unwrap().contains(driver))
        .map(|w| w["id"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn paths_is_the_runtimes_decision_for_this_vm() {
    let _g = serial();
    let ctx = lavapipe();
    require!("lavapipe", ctx.is_some());
    require!("vkms", has_driver("vkms"));
    require!("virtio_gpu", has_driver("virtio_gpu"));
    let ctx = ctx.unwrap();
    let r = info_json(&["paths"]);
    let text = info_text(&["paths"]);
    assert_eq!(r["verified"], false);
    let fences: Vec<&str> = r["fences"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["id"].as_str().unwrap())
        .collect();
    assert_eq!(fences, ["software", "sync_file", "syncobj", "vk0", "seqno"]);
    for f in r["fences"].as_array().unwrap() {
        assert_eq!(f["available"], true, "{f:#}");
    }
    let vkms = plane_ids(&r, "vkms");
    let virtio = plane_ids(&r, "virtio_gpu");
    assert_eq!((vkms.len(), virtio.len()), (10, 1));
    let waiters = r["waiters"].as_array().unwrap();
    assert_eq!(waiters.len(), 1 + 1 + 11 + 1, "cpu, vk0, 11 planes, dmabuf");
    assert_eq!(
        r["cells"].as_array().unwrap().len(),
        fences.len() * waiters.len()
    );

    let route = |f: &str, w: &str| {
        let c = cell(&r, f, w);
        (c["class"].as_str().unwrap().to_string(), c["route"].clone())
    };
    let hw = |name: &str| ("hardware".to_string(), Value::from(name));
    let sw = |name: &str| ("software".to_string(), Value::from(name));
    assert_eq!(route("sync_file", "cpu"), hw("sync_file_poll"));
    assert_eq!(route("syncobj", "cpu"), hw("syncobj_eventfd"));
    assert_eq!(route("software", "cpu"), sw("runtime_wait"));
    assert_eq!(route("seqno", "cpu"), sw("engine_poll"));
    assert_eq!(route("vk0", "vk0"), hw("timeline_semaphore"));
    assert_eq!(route("sync_file", "vk0"), hw("sync_fd_semaphore"));
    assert_eq!(route("software", "vk0"), sw("cpu_wait_before_submit"));
    assert_eq!(route("sync_file", "dmabuf"), hw("import_sync_file"));
    assert_eq!(route("vk0", "dmabuf"), sw("cpu_wait_before_handoff"));
    for p in vkms.iter().chain(&virtio) {
        assert_eq!(route("sync_file", p), hw("in_fence_fd"), "{p}");
        assert_eq!(route("syncobj", p), hw("in_fence_fd"), "{p}");
        // lavapipe's render points have no pending sync_file.
        assert_eq!(route("vk0", p), sw("cpu_wait_before_commit"), "{p}");
        assert_eq!(route("seqno", p), sw("cpu_wait_before_commit"), "{p}");
    }

    // The same decision the runtime makes: a submission on lavapipe
    // classifies those waits the way the matrix's vk0 column says.
    let sub = Submitter::new(&ctx).unwrap();
    let tl = bufsync_backends::testing::SwSyncTimeline::new().unwrap();
    let pending = tl.create_fence(1, "info-test").unwrap();
    assert_eq!(
        sub.classify(&Wait::SyncFile(&pending)),
        WaitPath::SyncFileHw
    );
    let sw_fence = bufsync::fence::FenceContext::new("t", "t").create_fence();
    assert_eq!(sub.classify(&Wait::Fence(&sw_fence)), WaitPath::Software);
    tl.inc(1).unwrap();
    sw_fence.signal().unwrap();

    // The text: the same routes, in the grid and the legend.
    assert!(text.contains("hw infence") && text.contains("sw cpu") && text.contains("hw tlsem"));
    for w in waiters {
        assert!(
            text.contains(w["id"].as_str().unwrap()),
            "{} in the text",
            w["id"]
        );
    }
    for c in r["cells"].as_array().unwrap() {
        if let Some(route) = c["route"].as_str() {
            assert!(text.contains(route), "route {route} explained in the text");
        }
    }
}

#[test]
fn paths_verify_passes_every_possible_cell_with_a_latency() {
    let _g = serial();
    require!("lavapipe", lavapipe().is_some());
    require!("vkms", has_driver("vkms"));
    require!("virtio_gpu", has_driver("virtio_gpu"));
    let r = info_json(&["paths", "--verify"]);
    assert_eq!(r["verified"], true);
    let (mut hw, mut sw) = (0, 0);
    for c in r["cells"].as_array().unwrap() {
        if c["route"].is_null() {
            assert!(c["verify"].is_null(), "impossible cells are not tried");
            continue;
        }
        let v = &c["verify"];
        assert_eq!(v["result"], "pass", "{c:#}");
        let us = v["latency_us"].as_f64().expect("a latency");
        assert!(us.is_finite() && us > 0.0 && us < 5e6, "{c:#}");
        assert_eq!(v["samples"], 3, "the default: 3 trials, the median");
        let (lo, hi) = (
            v["latency_min_us"].as_f64().unwrap(),
            v["latency_max_us"].as_f64().unwrap(),
        );
        assert!(lo <= us && us <= hi, "{c:#}");
        match c["class"].as_str().unwrap() {
            "hardware" => hw += 1,
            "software" => sw += 1,
            other => panic!("class {other}"),
        }
    }
    assert!(
        hw >= 20 && sw >= 20,
        "{hw} hardware and {sw} software cells"
    );
    let total = hw + sw;

    let (code, text, err) = info(&["paths", "--verify", "--repeat", "1"]);
    assert_eq!(code, 0, "{err}");
    log::info!("bufsync-info paths --verify:\n{text}");
    assert!(text.lines().all(|l| l.chars().count() <= WIDTH));
    assert!(
        text.contains(&format!("verify: {total} passed, 0 failed, 0 skipped")),
        "{text}"
    );
    assert!(text.contains(
        "verify: latency from the producer's signal to the waiter done (median of 1 trial)"
    ));
}

/// `sleep` holding `fd` as its stdin: a process other than this one that
/// holds a dma-buf.
fn holder(fd: std::os::fd::OwnedFd) -> Child {
    Command::new("sleep")
        .arg("300")
        .stdin(Stdio::from(fd))
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn sleep")
}

struct Reap(Child);

impl Drop for Reap {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn buffer_shows_a_childs_vgem_fence_pending_then_signaled() {
    let _g = serial();
    require!("vgem", has_driver("vgem"));
    let vgem = VgemBuffer::device().unwrap();
    let bo = VgemBuffer::create(&vgem, 64, 64).unwrap();
    let fence = bo.attach_fence(true).unwrap();
    let buf = bo.export().unwrap();
    let size = buf.size();
    let inode = rustix::fs::fstat(buf.fd()).unwrap().st_ino;
    let child = Reap(holder(buf.into_fd()));
    let pid = child.0.id().to_string();

    let r = info_json(&["buffer", &pid, "0"]);
    assert_eq!(r["pid"], child.0.id());
    assert_eq!(r["comm"], "sleep");
    assert_eq!(r["size"], size);
    assert_eq!(r["inode"], inode);
    assert!(r["exporter"].is_string());
    assert_eq!(r["fdinfo_source"], format!("/proc/{pid}/fdinfo/0"));
    let w = r["write_fences"].as_array().unwrap();
    assert_eq!(w.len(), 1, "{r:#}");
    assert_eq!(w[0]["driver"], "vgem");
    assert_eq!(w[0]["status"], "pending");
    assert!(w[0]["timestamp_ns"].is_null());
    assert!(r["read_fences"].as_array().unwrap().is_empty());
    let d = &r["debugfs"]["fences"];
    assert_eq!(d.as_array().unwrap().len(), 1, "{r:#}");
    assert_eq!(
        (d[0]["usage"].as_str(), d[0]["driver"].as_str()),
        (Some("write"), Some("vgem"))
    );
    assert_eq!(d[0]["signaled"], false);
    let text = info_text(&["buffer", &pid, "0"]);
    assert!(text.contains(&format!("inode {inode}")) && text.contains("vgem"));
    assert!(text.contains("write fences (a reader waits for them): 1"));

    // --wait keeps the snapshot and shows how the fence ended: signal it
    // while the tool waits.
    let waiter = {
        let pid = pid.clone();
        std::thread::spawn(move || info(&["buffer", &pid, "0", "--wait", "30", "--json"]))
    };
    std::thread::sleep(Duration::from_secs(2));
    fence.signal().unwrap();
    let (code, out, err) = waiter.join().unwrap();
    assert_eq!(code, 0, "{err}");
    let r: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        schema::validate(&schema::schema("buffer").unwrap(), &r),
        Vec::<String>::new()
    );
    assert_eq!(
        r["write_fences"][0]["status"], "pending",
        "the snapshot before the signal"
    );
    let wait = &r["wait"];
    assert_eq!(wait["all_signaled"], true);
    assert!(wait["waited_ms"].as_f64().unwrap() >= 1000.0, "{wait:#}");
    let ended = &wait["write_fences"][0];
    assert_eq!(ended["status"], "signaled");
    assert!(ended["timestamp_ns"].as_u64().unwrap() > 0);
    assert_eq!(r["debugfs"]["fences"][0]["signaled"], true);

    // A fresh look: nothing pending, the kernel's list shows it signaled.
    let r = info_json(&["buffer", &pid, "0"]);
    assert!(r["write_fences"].as_array().unwrap().is_empty());
    assert_eq!(r["debugfs"]["fences"][0]["driver"], "vgem");
    assert_eq!(r["debugfs"]["fences"][0]["signaled"], true);
    let text = info_text(&["buffer", &pid, "0"]);
    assert!(text.contains("write fences (a reader waits for them): none pending"));
    assert!(
        text.lines()
            .any(|l| l.contains("vgem") && l.contains("signaled")),
        "{text}"
    );
}

#[test]
fn buffer_errors_are_plain() {
    // Run again by itself as another user (below): only the tool's run.
    if let Ok(args) = std::env::var("BUFSYNC_INFO_HELPER_ARGS") {
        let args: Vec<&str> = args.split(' ').collect();
        let (code, out, err) = info(&args);
        println!("HELPER-RC {code}\nHELPER-OUT {out}\nHELPER-ERR {err}");
        return;
    }
    let _g = serial();
    require!("vgem", has_driver("vgem"));
    let vgem = VgemBuffer::device().unwrap();
    let buf = VgemBuffer::create(&vgem, 16, 16).unwrap().export().unwrap();
    let child = Reap(holder(buf.into_fd()));
    let pid = child.0.id().to_string();

    let (code, _, err) = info(&["buffer", &pid, "7"]);
    assert_eq!(code, 1);
    assert!(err.contains(&format!("process {pid} has no fd 7")), "{err}");
    // Its stdout is /dev/null: not a dma-buf.
    let (code, _, err) = info(&["buffer", &pid, "1"]);
    assert_eq!(code, 1);
    assert!(err.contains("is not a dma-buf (it is /dev/null)"), "{err}");
    let (code, _, err) = info(&["buffer", "999999999", "0"]);
    assert_eq!(code, 1);
    assert!(err.contains("no process 999999999"), "{err}");
    let (code, _, err) = info(&["buffer", &pid]);
    assert_eq!(code, 2, "bad usage");
    assert!(err.contains("buffer needs PID and FD"), "{err}");

    // Another user may not take root's fd: pidfd_getfd says EPERM.
    let out = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "buffer_errors_are_plain", "--nocapture"])
        .env("BUFSYNC_INFO_HELPER_ARGS", format!("buffer {pid} 0"))
        .uid(65534)
        .gid(65534)
        .output()
        .expect("run this test binary as nobody");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("HELPER-RC 1"),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!(
            "not permitted to take fd 0 of process {pid} (it runs as uid 0, this tool as uid 65534)"
        )) && stdout.contains("pidfd_getfd needs ptrace access to it (CAP_SYS_PTRACE"),
        "{stdout}"
    );
}

#[test]
fn negotiate_runs_the_presenter_headless_or_on_each_display() {
    let _g = serial();
    require!("lavapipe", lavapipe().is_some());
    require!("vkms", has_driver("vkms"));
    let r = info_json(&["negotiate"]);
    let text = info_text(&["negotiate"]);
    let displays = strings(&r["displays"]);
    assert!(displays.len() >= 2, "vkms and virtio_gpu: {displays:?}");
    let pairs = r["pairs"].as_array().unwrap();
    assert_eq!(pairs.len(), displays.len());
    for p in pairs {
        assert!(p["error"].is_null(), "{p:#}");
        assert!(
            p["chosen"].is_string(),
            "every display gets a strategy: {p:#}"
        );
        assert!(text.contains(p["chosen"].as_str().unwrap()));
    }
}
