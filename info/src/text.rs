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

/// `label` followed by `items` separated by spaces, wrapped at [`WIDTH`]
/// with continuation lines indented under the first item.
pub fn wrap(label: &str, items: &[String]) -> String {
    let indent = label.chars().count();
    let mut out = String::from(label);
    let mut col = indent;
    for (i, item) in items.iter().enumerate() {
        let len = item.chars().count();
        if i > 0 && col + 1 + len > WIDTH {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
        } else if i > 0 {
            out.push(' ');
            col += 1;
        }
        out.push_str(item);
        col += len;
    }
    out.push('\n');
    out
}

/// `label` followed by the words of `sentence`, wrapped like [`wrap`].
pub fn para(label: &str, sentence: &str) -> String {
    let words: Vec<String> = sentence.split(' ').map(String::from).collect();
    wrap(label, &words)
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
}
