//! Setup's progress: one line when a step starts, its elapsed time when it
//! ends, and a log file that takes the output of apt, dpkg and make (its
//! tail is shown when a command fails).

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::process::describe;

/// Lines of the log shown when a logged command fails.
const TAIL_LINES: usize = 25;

/// The setup log and the step reporter.
pub struct Progress {
    log: PathBuf,
    announced: bool,
}

impl Progress {
    /// A reporter whose commands log into `log` (created on first use).
    pub fn new(log: PathBuf) -> Progress {
        Progress {
            log,
            announced: false,
        }
    }

    /// Runs one step: prints `setup: <what> ...` first and `setup: <what>:
    /// done in N s` (or `FAILED`) after.
    pub fn step<T>(
        &mut self,
        what: &str,
        f: impl FnOnce(&mut Self) -> io::Result<T>,
    ) -> io::Result<T> {
        if !self.announced {
            self.announced = true;
            println!("setup: command output goes to {}", self.log.display());
        }
        println!("setup: {what} ...");
        let t = Instant::now();
        let r = f(self);
        let secs = t.elapsed().as_secs_f64();
        match &r {
            Ok(_) => println!("setup: {what}: done in {secs:.1} s"),
            Err(_) => println!("setup: {what}: FAILED after {secs:.1} s"),
        }
        r
    }

    /// Runs `cmd` with its stdout and stderr appended to the log. On failure
    /// the error carries the command and the log's last lines.
    pub fn run(&mut self, cmd: &mut Command) -> io::Result<()> {
        let mut log = self.open_log()?;
        let start = log.seek(SeekFrom::End(0))?;
        writeln!(log, "\n$ {}", describe(cmd))?;
        let status = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .status()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot run `{}`: {e}", describe(cmd)))
            })?;
        if status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "`{}` failed ({status}); the end of {}:\n{}",
            describe(cmd),
            self.log.display(),
            self.tail_since(start)
        )))
    }

    /// Runs `cmd` (logged like [`Progress::run`]) while files grow under
    /// `dir`, printing bytes done of `total` (a terminal gets one updating
    /// line; a pipe gets a line per quarter).
    pub fn run_with_download(
        &mut self,
        cmd: &mut Command,
        dir: &Path,
        total: u64,
    ) -> io::Result<()> {
        let mut log = self.open_log()?;
        writeln!(log, "\n$ {}", describe(cmd))?;
        let start = log.seek(SeekFrom::End(0))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .spawn()
            .map_err(|e| {
                io::Error::new(e.kind(), format!("cannot run `{}`: {e}", describe(cmd)))
            })?;
        let tty = rustix::termios::isatty(rustix::stdio::stdout());
        let mut shown_quarter = 0;
        let status = loop {
            if let Some(s) = child.try_wait()? {
                break s;
            }
            let done = dir_bytes(dir).min(total);
            if tty {
                print!("\rsetup:   downloaded {} of {}   ", mb(done), mb(total));
                let _ = io::stdout().flush();
            } else if total > 0 && done * 4 / total > shown_quarter {
                shown_quarter = done * 4 / total;
                println!("setup:   downloaded {} of {}", mb(done), mb(total));
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        let done = dir_bytes(dir).min(total);
        if tty {
            println!("\rsetup:   downloaded {} of {}   ", mb(done), mb(total));
        } else if shown_quarter < 4 {
            println!("setup:   downloaded {} of {}", mb(done), mb(total));
        }
        if status.success() {
            return Ok(());
        }
        Err(io::Error::other(format!(
            "`{}` failed ({status}); the end of {}:\n{}",
            describe(cmd),
            self.log.display(),
            self.tail_since(start)
        )))
    }

    fn open_log(&self) -> io::Result<File> {
        if let Some(dir) = self.log.parent() {
            fs::create_dir_all(dir)?;
        }
        OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.log)
    }

    /// The last lines the log got since byte `start`.
    fn tail_since(&self, start: u64) -> String {
        let mut text = String::new();
        if let Ok(mut f) = File::open(&self.log) {
            let _ = f.seek(SeekFrom::Start(start));
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(TAIL_LINES)..]
            .iter()
            .map(|l| format!("  | {l}\n"))
            .collect()
    }
}

/// Megabytes, for progress lines.
pub fn mb(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn dir_bytes(dir: &Path) -> u64 {
    fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok()?.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_command_shows_its_log_tail() {
        let dir = std::env::temp_dir().join(format!("xtask-progress-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let mut p = Progress::new(dir.join("setup.log"));
        p.run(Command::new("sh").args(["-c", "echo fine"])).unwrap();
        let e = p
            .run(Command::new("sh").args(["-c", "echo first; echo 'it broke' >&2; exit 3"]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("it broke"), "{e}");
        assert!(!e.contains("fine"), "only this command's lines: {e}");
        let log = fs::read_to_string(dir.join("setup.log")).unwrap();
        assert!(log.contains("fine") && log.contains("it broke"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn megabytes() {
        assert_eq!(mb(106_422_608), "106.4 MB");
    }
}
