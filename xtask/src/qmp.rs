//! A minimal QMP client (qemu's JSON machine protocol over a unix socket):
//! the capabilities handshake and `screendump`. One command at a time;
//! asynchronous events in between are skipped.

use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// How long one QMP reply may take (a screendump of a 1280x800 console
/// under TCG takes well under a second).
const REPLY: Duration = Duration::from_secs(30);

/// A connected QMP session past the handshake.
pub struct Qmp {
    out: UnixStream,
    input: BufReader<UnixStream>,
}

/// JSON string escaping for paths (quotes, backslashes, control bytes).
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Qmp {
    /// Connects to `socket` and negotiates capabilities.
    pub fn connect(socket: &Path) -> io::Result<Qmp> {
        let out = UnixStream::connect(socket)?;
        out.set_read_timeout(Some(REPLY))?;
        let input = BufReader::new(out.try_clone()?);
        let mut me = Qmp { out, input };
        let greeting = me.line()?;
        if !greeting.contains("\"QMP\"") {
            return Err(io::Error::other(format!("not a QMP greeting: {greeting}")));
        }
        me.execute("{\"execute\":\"qmp_capabilities\"}")?;
        Ok(me)
    }

    fn line(&mut self) -> io::Result<String> {
        let mut l = String::new();
        if self.input.read_line(&mut l)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "QMP closed"));
        }
        Ok(l)
    }

    /// Sends one command and waits for its `return` (an `error` is Err).
    fn execute(&mut self, cmd: &str) -> io::Result<()> {
        self.out.write_all(cmd.as_bytes())?;
        self.out.write_all(b"\n")?;
        loop {
            let l = self.line()?;
            if l.contains("\"return\"") {
                return Ok(());
            }
            if l.contains("\"error\"") {
                return Err(io::Error::other(format!("QMP: {}", l.trim())));
            }
            // An asynchronous event: not our answer.
        }
    }

    /// `screendump` of the primary console into `out` (PPM).
    pub fn screendump(&mut self, out: &Path) -> io::Result<()> {
        self.execute(&format!(
            "{{\"execute\":\"screendump\",\"arguments\":{{\"filename\":{}}}}}",
            json_string(&out.to_string_lossy())
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_paths() {
        assert_eq!(json_string("/a\"b\\c"), "\"/a\\\"b\\\\c\"");
        assert_eq!(json_string("x\ny"), "\"x\\u000ay\"");
    }
}
