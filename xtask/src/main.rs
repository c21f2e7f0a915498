//! `cargo xtask`: bufsync's developer tasks.
//!
//! - `setup [--yes]`: install what runs on the host (qemu, busybox, build
//!   tools; Debian 12, root), extract the guest's kernel, modules and
//!   lavapipe into the cache, build the guest modules and the initramfs;
//!   cached and idempotent.
//! - `clean-cache`: remove that cache.
//! - `vm [--timeout S] [--timings] -- CMD ...`: run CMD in a fresh guest with
//!   real DRM devices (vkms, vgem, virtio-gpu, udmabuf, DMA heap, sw_sync).
//! - `test`: the README's test command: host tests, loom models, VM tests,
//!   and one summary line.
//! - `demo`: the README's main command.
//! - `capi [--prefix DIR] ...`: build and install libbufsync for C (cargo-c's layout).
//! - `bench-kernel [--boots N]`: the kernel's ww_mutex, dma_resv and
//!   dma_fence beside bufsync's reserve and fence benches on the same
//!   workloads, in one guest, side by side.
//! - `gpu-check DIR [--run]`: prepare (and with `--run` run) the check for a
//!   machine with a real GPU and no VM: prebuilt binaries and a script that
//!   writes one report.
//!
//! xtask is a developer tool, not library code: it prints.

mod bench_kernel;
mod capi;
mod demo;
mod gpu_check;
mod layout;
mod process;
mod qmp;
mod results;
mod setup;
mod setup_check;
mod test;
mod vm;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <command>

commands:
  setup [--yes]               install host packages (asks first on a terminal), extract the
                              guest kernel, modules and lavapipe into the cache, build the
                              guest modules and initramfs
  clean-cache                 remove the VM cache (~/.cache/bufsync-vm)
  env                         print the exports that point Vulkan at the cached lavapipe
                              (eval its output before a plain cargo test or bench)
  vm [OPTIONS] -- CMD ...     run CMD inside a fresh test VM
       --timeout S            kill the guest after S seconds (default 900)
       --timings              print boot-to-first-command timings
       --no-virtio-gpu        leave out the virtio-gpu device
  test [--no-vm] [--no-loom]  run every test; ends with 'N passed, N failed, N skipped'
  demo [--vm] [-- ARGS ...]   run the render_to_scanout demo (on this machine's devices,
                              or in the VM without them or with --vm)
  bench-kernel [OPTIONS]      the kernel's ww_mutex, dma_resv and dma_fence beside bufsync's
                              reserve and fence benches, one guest
       --boots N              guests to run, median (min-max) over them (default 3)
       --ms MS                length of each run, both sides (default 2000)
       --threads LIST         thread counts (default 4,2)
       --timeout S            kill a guest after S seconds (default 600)
  capi [--prefix DIR] [--libdir DIR] [--includedir DIR] [--destdir DIR]
                              build libbufsync (release) and install libbufsync.so (versioned
                              soname), libbufsync.a, bufsync/bufsync.h and pkgconfig/bufsync.pc
                              as cargo-c does (prefix /usr/local, libdir lib)
  gpu-check DIR [--run]       build bufsync-info and the Vulkan tests (release) into DIR/bin and
                              write DIR/gpu-check.sh: run it on a machine with a real GPU (no
                              cargo needed) for DIR/report.md; --run runs it here right away
  capi --header               regenerate capi/include/bufsync.h with cbindgen
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some((cmd, rest)) = args.split_first() else {
        eprint!("{USAGE}");
        return ExitCode::from(2);
    };
    let result = match cmd.as_str() {
        "setup" => setup::run(rest),
        "clean-cache" => setup::clean_cache(rest),
        "env" => setup::print_env(rest),
        "vm" => vm::main(rest),
        "test" => test::run(rest),
        "demo" => demo::run(rest),
        "bench-kernel" => bench_kernel::run(rest),
        "capi" => capi::run(rest),
        "gpu-check" => gpu_check::run(rest),
        "help" | "-h" | "--help" => {
            print!("{USAGE}");
            Ok(0)
        }
        other => {
            eprintln!("xtask: unknown command `{other}`\n\n{USAGE}");
            Ok(2)
        }
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("xtask {cmd}: {e}");
            ExitCode::from(1)
        }
    }
}
