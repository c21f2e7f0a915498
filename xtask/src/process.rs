//! Running host commands with readable errors.

use std::io;
use std::process::{Command, Stdio};

/// Formats a command line for messages.
pub fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs `cmd` with inherited stdio; an error unless it exits 0.
pub fn run(cmd: &mut Command) -> io::Result<()> {
    let status = cmd.status().map_err(|e| with_context(cmd, e))?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "`{}` failed: {status}",
            describe(cmd)
        )))
    }
}

/// Runs `cmd` quietly; its output is returned, or shown in the error.
pub fn output(cmd: &mut Command) -> io::Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| with_context(cmd, e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(io::Error::other(format!(
            "`{}` failed: {}\n{}{}",
            describe(cmd),
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn with_context(cmd: &Command, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("cannot run `{}`: {e}", describe(cmd)))
}
