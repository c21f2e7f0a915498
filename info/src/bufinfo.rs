//! The kernel's own view of a dma-buf: debugfs `dma_buf/bufinfo`
//! (`drivers/dma-buf/dma-buf.c`, `dma_buf_debug_show`). For every buffer
//! it prints size, flags, mode, file count, exporter, inode and name, then
//! every fence of its `dma_resv` up to READ usage (`dma_resv_describe`:
//! `\t<usage> fence:<driver> <timeline> seq <n> [un]signalled`), signaled
//! ones included, then the attached devices.
//!
//! The sync_file snapshots `buffer` takes hold only unsignaled fences;
//! this file is how a fence that has signaled still shows, with its seqno.
//! Reading it needs debugfs mounted and root; the kernel takes each
//! buffer's reservation lock while it prints.

use schemars::JsonSchema;
use serde::Serialize;

/// Where debugfs keeps the file.
pub const PATH: &str = "/sys/kernel/debug/dma_buf/bufinfo";

/// One buffer's entry.
#[derive(Debug, Serialize, JsonSchema, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `file_count` of the dma-buf's file: the references to it (fds,
    /// mappings, importers' holds).
    pub file_count: u64,
    /// Every fence of the reservation, in the kernel's order.
    pub fences: Vec<ResvFence>,
    /// `dev_name` of each attached device (`0000:00:05.0`, `vkms`...).
    pub attached: Vec<String>,
}

/// One fence of a reservation.
#[derive(Debug, Serialize, JsonSchema, Clone, PartialEq, Eq)]
pub struct ResvFence {
    /// `kernel`, `write`, `read` (`enum dma_resv_usage`; BOOKKEEP fences
    /// are not listed by the kernel).
    #[schemars(extend("enum" = ["kernel", "write", "read", "bookkeep"]))]
    pub usage: String,
    /// The driver's name.
    pub driver: String,
    /// The timeline's name.
    pub timeline: String,
    /// The fence's seqno on its timeline.
    pub seqno: u64,
    /// Signaled when the kernel printed it.
    pub signaled: bool,
}

/// Parses one fence line (without the leading tab).
fn fence(line: &str) -> Option<ResvFence> {
    let (usage, rest) = line.split_once(" fence:")?;
    let (names, tail) = rest.rsplit_once(" seq ")?;
    let (seqno, state) = tail.split_once(' ')?;
    let (driver, timeline) = names.split_once(' ').unwrap_or((names, ""));
    Some(ResvFence {
        usage: usage.to_string(),
        driver: driver.to_string(),
        timeline: timeline.to_string(),
        seqno: seqno.parse().ok()?,
        signaled: match state {
            "signalled" => true,
            "unsignalled" => false,
            _ => return None,
        },
    })
}

/// The entry of the buffer whose inode is `inode` in the text of
/// `bufinfo`, if it is listed.
pub fn find(bufinfo: &str, inode: u64) -> Option<Entry> {
    let mut lines = bufinfo.lines();
    while let Some(line) = lines.next() {
        let cols: Vec<&str> = line.split('\t').collect();
        // size flags mode count exp_name ino name
        if cols.len() < 7 || cols[5].trim().parse::<u64>().ok() != Some(inode) {
            continue;
        }
        let mut entry = Entry {
            file_count: cols[3].trim().parse().unwrap_or(0),
            fences: Vec::new(),
            attached: Vec::new(),
        };
        let mut in_attached = false;
        for l in lines.by_ref() {
            let Some(body) = l.strip_prefix('\t') else {
                break; // "Total N devices attached"
            };
            if body == "Attached Devices:" {
                in_attached = true;
            } else if in_attached {
                entry.attached.push(body.to_string());
            } else if let Some(f) = fence(body) {
                entry.fences.push(f);
            }
        }
        return Some(entry);
    }
    None
}

/// Reads [`PATH`] and finds `inode`: `Err` says why it cannot be read
/// here, `Ok(None)` that the buffer is not listed.
pub fn read(inode: u64) -> Result<Option<Entry>, String> {
    match std::fs::read_to_string(PATH) {
        Ok(text) => Ok(find(&text, inode)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{PATH} does not exist (debugfs not mounted, or a kernel without CONFIG_DEBUG_FS)"
        )),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Err(format!("{PATH}: permission denied (debugfs needs root)"))
        }
        Err(e) => Err(format!("{PATH}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // As 6.12's dma_buf_debug_show prints it.
    const SAMPLE: &str = "\nDma-buf Objects:\n\
size    \tflags   \tmode    \tcount   \texp_name\tino     \tname\n\
00016384\t00000002\t00080007\t00000003\tdrm\t00000041\t<none>\n\
\twrite fence:vgem 5 seq 1 unsignalled\n\
\tread fence:sw_sync my timeline seq 12 signalled\n\
\tAttached Devices:\n\
\tvkms\n\
Total 1 devices attached\n\n\
00004096\t00000002\t00080007\t00000001\tudmabuf\t00000042\t<none>\n\
\tAttached Devices:\n\
Total 0 devices attached\n\n\
\nTotal 2 objects, 20480 bytes\n";

    #[test]
    fn finds_a_buffer_by_inode() {
        let e = find(SAMPLE, 41).unwrap();
        assert_eq!(e.file_count, 3);
        assert_eq!(e.attached, vec!["vkms"]);
        assert_eq!(
            e.fences,
            vec![
                ResvFence {
                    usage: "write".into(),
                    driver: "vgem".into(),
                    timeline: "5".into(),
                    seqno: 1,
                    signaled: false,
                },
                ResvFence {
                    usage: "read".into(),
                    driver: "sw_sync".into(),
                    timeline: "my timeline".into(),
                    seqno: 12,
                    signaled: true,
                },
            ]
        );
        let idle = find(SAMPLE, 42).unwrap();
        assert!(idle.fences.is_empty() && idle.attached.is_empty());
        assert_eq!(find(SAMPLE, 43), None);
    }
}
