//! Plain-text layout: tables with aligned columns and word lists wrapped
//! at [`WIDTH`] columns.

use std::fmt::Write as _;

/// The text output's width.
pub const WIDTH: usize = 100;

/// A table: a header row and rows of cells, columns padded to their
/// widest cell (the last column is not padded).
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Table {
            rows: vec![header.into_iter().map(Into::into).collect()],
        }
    }

    /// Adds a row.
    pub fn row<S: Into<String>>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    /// The table, each line indented by `indent` spaces.
    pub fn render(&self, indent: usize) -> String {
        let cols = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0usize; cols];
        for r in &self.rows {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in &self.rows {
            let mut line = " ".repeat(indent);
            for (i, c) in r.iter().enumerate() {
                if i + 1 == r.len() {
                    line.push_str(c);
                } else {
                    let _ = write!(line, "{c:<w$} ", w = widths[i]);
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// `label` followed by `items` separated by spaces, wrapped at [`WIDTH`].
/// Continuation lines are indented under the first item, or, when the
/// label takes more than half the width, four columns past the label's
/// own indent. An item longer than a line is cut. Every line fits in
/// [`WIDTH`] when `label` does.
pub fn wrap(label: &str, items: &[String]) -> String {
    let label_len = label.chars().count();
    let lead = label.chars().take_while(|c| *c == ' ').count();
    let indent = if label_len > WIDTH / 2 {
        lead + 4
    } else {
        label_len
    };
    let room = WIDTH.saturating_sub(indent).max(1);
    let mut out = String::from(label);
    let mut col = label_len;
    let mut first = true;
    for item in items {
        let mut chars: Vec<char> = item.chars().collect();
        loop {
            let need = chars.len() + usize::from(!first);
            if col + need > WIDTH && !(first && col == indent) {
                out.push('\n');
                out.push_str(&" ".repeat(indent));
                col = indent;
                first = true;
            }
            if !first {
                out.push(' ');
                col += 1;
            }
            let fits = WIDTH.saturating_sub(col).max(1).min(room);
            let take = chars.len().min(fits);
            out.extend(chars.drain(..take));
            col += take;
            first = false;
            if chars.is_empty() {
                break;
            }
            // The rest of a cut item starts the next line.
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
            first = true;
        }
    }
    out.push('\n');
    out
}

/// `label` followed by the words of `sentence`, wrapped like [`wrap`].
pub fn para(label: &str, sentence: &str) -> String {
    let words: Vec<String> = sentence.split(' ').map(String::from).collect();
    wrap(label, &words)
}

/// `line` (without its newline) as it is when it fits in [`WIDTH`], else
/// its words wrapped with continuation lines four columns past its own
/// indent; with a newline.
pub fn fit(line: &str) -> String {
    if line.chars().count() <= WIDTH {
        return format!("{line}\n");
    }
    let lead = line.len() - line.trim_start_matches(' ').len();
    let words: Vec<String> = line[lead..]
        .split(' ')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect();
    let mut out = String::new();
    let mut col = 0;
    for (i, w) in words.iter().enumerate() {
        let indent = if i == 0 || col == 0 { lead } else { 0 };
        let len = w.chars().count();
        if i > 0 && col + 1 + len > WIDTH {
            out.push('\n');
            out.push_str(&" ".repeat(lead + 4));
            col = lead + 4;
        } else if i > 0 {
            out.push(' ');
            col += 1;
        } else {
            out.push_str(&" ".repeat(indent));
            col = indent;
        }
        out.push_str(w);
        col += len;
    }
    out.push('\n');
    out
}

/// `yes` or `-`.
pub fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "-"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_and_wraps_stay_narrow() {
        let mut t = Table::new(["a", "bb"]);
        t.row(["ccc", "d"]);
        assert_eq!(t.render(2), "  a   bb\n  ccc d\n");
        let items: Vec<String> = (0..40).map(|i| format!("XR24:LINEAR{i}")).collect();
        let w = wrap("    formats: ", &items);
        assert!(w.lines().all(|l| l.chars().count() <= WIDTH), "{w}");
        assert!(w.lines().nth(1).unwrap().starts_with(&" ".repeat(13)));
    }

    #[test]
    fn long_labels_and_long_words_still_fit() {
        let label = format!("  {}: ", "x".repeat(70));
        let w = para(
            &label,
            "a few words that will not fit after such a long label at all",
        );
        assert!(w.lines().all(|l| l.chars().count() <= WIDTH), "{w}");
        assert!(w.lines().nth(1).unwrap().starts_with("      fit"), "{w}");
        let long = "y".repeat(250);
        let w = wrap("  path: ", std::slice::from_ref(&long));
        assert!(w.lines().all(|l| l.chars().count() <= WIDTH), "{w}");
        let joined: String = w
            .lines()
            .map(|l| l.trim_start_matches("  path: ").trim())
            .collect();
        assert_eq!(joined, long, "nothing lost when a word is cut");
        assert_eq!(wrap("x: ", &[]), "x: \n");
        assert_eq!(fit("  short line"), "  short line\n");
        let long = format!("  {}", "word ".repeat(40));
        let f = fit(long.trim_end());
        assert!(f.lines().all(|l| l.chars().count() <= WIDTH), "{f}");
        assert!(f.lines().nth(1).unwrap().starts_with("      word"));
        assert_eq!(para("x: ", "a b"), "x: a b\n");
    }
}
