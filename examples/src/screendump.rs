//! What the virtual monitor shows, taken from outside the guest: qemu's
//! QMP `screendump` of the display device's console, asked for by the
//! guest through the run directory that `cargo xtask vm` shares with it.
//!
//! Protocol (see `xtask/src/vm.rs`): the guest writes the output path into
//! `$BUFSYNC_VM_RUN/screendump/N.req` (atomically: a rename); xtask, which
//! polls that directory while the guest runs, sends `screendump` over the
//! run's QMP socket and writes `N.done` (`ok`, or the error). The picture is
//! a binary PPM (P6, 8-bit RGB).
//!
//! Locking: none; one request at a time per caller (numbers from a
//! process-wide counter).

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

/// A screendump: `width` x `height` RGB pixels, rows of `width * 3` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Screendump {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// R, G, B per pixel.
    pub rgb: Vec<u8>,
}

impl Screendump {
    /// The pixels as XRGB8888 (B, G, R, X in memory), the display's format.
    pub fn to_xrgb(&self) -> Vec<u8> {
        self.rgb
            .chunks_exact(3)
            .flat_map(|p| [p[2], p[1], p[0], 0xff])
            .collect()
    }
}

/// The screendump directory of this guest run, when `cargo xtask vm`
/// provides one (`BUFSYNC_VM_RUN`).
pub fn available() -> Option<PathBuf> {
    let run = std::env::var_os("BUFSYNC_VM_RUN")?;
    let dir = PathBuf::from(run).join("screendump");
    dir.is_dir().then_some(dir)
}

/// Asks the host for a screendump and waits (at most `timeout`) for it.
pub fn take(timeout: Duration) -> io::Result<Screendump> {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = available().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no screendump channel (run inside `cargo xtask vm`)",
        )
    })?;
    let n = format!(
        "{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let out = dir.join(format!("{n}.ppm"));
    let tmp = dir.join(format!("{n}.tmp"));
    let req = dir.join(format!("{n}.req"));
    let done = dir.join(format!("{n}.done"));
    std::fs::write(&tmp, out.to_string_lossy().as_bytes())?;
    std::fs::rename(&tmp, &req)?;
    let deadline = Instant::now() + timeout;
    let answer = loop {
        match std::fs::read_to_string(&done) {
            Ok(a) => break a,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            let _ = std::fs::remove_file(&req);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no screendump within {timeout:?}"),
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let _ = std::fs::remove_file(&done);
    if answer.trim() != "ok" {
        let _ = std::fs::remove_file(&out);
        return Err(io::Error::other(format!("screendump: {}", answer.trim())));
    }
    let bytes = std::fs::read(&out)?;
    let _ = std::fs::remove_file(&out);
    parse_ppm(&bytes)
}

/// Parses a binary PPM (P6, maxval 255).
pub fn parse_ppm(bytes: &[u8]) -> io::Result<Screendump> {
    let bad = |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("PPM: {what}"));
    let mut fields = Vec::new();
    let mut at = 0;
    while fields.len() < 4 {
        while at < bytes.len() && bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if bytes.get(at) == Some(&b'#') {
            while at < bytes.len() && bytes[at] != b'\n' {
                at += 1;
            }
            continue;
        }
        let start = at;
        while at < bytes.len() && !bytes[at].is_ascii_whitespace() {
            at += 1;
        }
        if start == at {
            return Err(bad("truncated header"));
        }
        fields.push(String::from_utf8_lossy(&bytes[start..at]).into_owned());
    }
    at += 1; // the single whitespace after maxval
    if fields[0] != "P6" || fields[3] != "255" {
        return Err(bad(&format!("{} with maxval {}", fields[0], fields[3])));
    }
    let width: u32 = fields[1].parse().map_err(|_| bad("width"))?;
    let height: u32 = fields[2].parse().map_err(|_| bad("height"))?;
    let len = width as usize * height as usize * 3;
    let rgb = bytes
        .get(at..at + len)
        .ok_or_else(|| bad("short pixel data"))?
        .to_vec();
    Ok(Screendump { width, height, rgb })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_qemus_ppm() {
        let mut b = b"P6\n2 1\n255\n".to_vec();
        b.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let d = parse_ppm(&b).unwrap();
        assert_eq!((d.width, d.height), (2, 1));
        assert_eq!(d.to_xrgb(), vec![3, 2, 1, 0xff, 6, 5, 4, 0xff]);
        assert!(parse_ppm(&b[..b.len() - 1]).is_err());
        assert!(parse_ppm(b"P5\n1 1\n255\n\0").is_err());
    }
}
