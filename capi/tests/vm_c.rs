//! The C API on real kernel objects, in the test VM: `tests/c/kernel.c`
//! (sync_files from sw_sync, dma-bufs from udmabuf: import/export, merge,
//! errors, implicit fences, fd ownership counted around every step), built
//! with -Wall -Wextra -Werror and run under AddressSanitizer +
//! LeakSanitizer, one process per case. Outside the VM the cases skip
//! loudly (no sw_sync, no udmabuf).

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

fn devices() -> bool {
    bufsync_backends::testing::SwSyncTimeline::is_available()
        && std::path::Path::new("/dev/udmabuf").exists()
}

fn kernel() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| common::build_c_test("kernel", &["kernel.c"]))
        .clone()
}

macro_rules! vm_cases {
    ($($case:ident),* $(,)?) => {
        $(
            #[test]
            fn $case() {
                bufsync_tests::require!("sw_sync and udmabuf", devices());
                common::run_case(&kernel(), stringify!($case));
            }
        )*

        #[test]
        fn every_c_case_has_a_rust_test() {
            let declared: Vec<String> = vec![$(stringify!($case).to_owned()),*];
            assert_eq!(common::list_cases(&kernel()), declared, "declare each C case in vm_cases!");
        }
    };
}

vm_cases!(
    sync_file_roundtrip,
    sync_file_merge_export,
    sync_file_error,
    dmabuf_import_layout,
    dmabuf_implicit_fences,
    dmabuf_fd_lifetime,
);
