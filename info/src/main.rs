//! `bufsync-info`: see the library's docs and `docs/info.md`.
#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    env_logger::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    let code = bufsync_info::run(&args, &mut out, &mut err);
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}
