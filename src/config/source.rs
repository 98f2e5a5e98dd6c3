//! A configuration file's text, kept so that errors can point into it.

use std::fmt;
use std::ops::Range;
use std::sync::{Arc, OnceLock};

/// One loaded file: the name it is shown under and its full text.
#[derive(Clone)]
pub struct SourceFile {
    name: String,
    text: Arc<String>,
    /// Where each line starts, found on the first [`SourceFile::line_col`]
    /// and shared by every clone (each diagnostic and template site holds
    /// one). Without it each position counted every newline before it:
    /// resolving records where each host's address was written, so loading
    /// an inventory of n hosts read O(n²) bytes.
    line_starts: Arc<OnceLock<Vec<usize>>>,
}

/// The name and text only: the line index is a cache, and printing it
/// would double the output for nothing.
impl fmt::Debug for SourceFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SourceFile")
            .field("name", &self.name)
            .field("text", &self.text)
            .finish()
    }
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: Arc::new(text.into()),
            line_starts: Arc::default(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn named_source(&self) -> miette::NamedSource<Arc<String>> {
        miette::NamedSource::new(&self.name, Arc::clone(&self.text))
    }

    /// 1-based line and column of a byte offset, as editors count them
    /// (the column in characters): a binary search over the line starts,
    /// then a count of the characters on that line before `offset`.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let offset = offset.min(self.text.len());
        let starts = self.line_starts();
        // starts[0] is 0, so at least one line starts at or before `offset`.
        let line = starts.partition_point(|&start| start <= offset);
        let column = self.text[starts[line - 1]..offset].chars().count() + 1;
        (line, column)
    }

    /// Byte offsets of the first byte of every line, the first being 0.
    fn line_starts(&self) -> &[usize] {
        self.line_starts.get_or_init(|| {
            let newlines = self.text.match_indices('\n').map(|(at, _)| at + 1);
            std::iter::once(0).chain(newlines).collect()
        })
    }

    /// The span of `needle` inside the TOML string value at `value_span`.
    ///
    /// Spans from the TOML parser cover a whole value, quotes included; a
    /// placeholder error should point at the placeholder itself. When the
    /// needle cannot be found verbatim (escapes, continuation lines), the
    /// whole value is the best we can do.
    /// Like [`SourceFile::sub_span`], for the `nth` (from 0) occurrence.
    pub fn sub_span_nth(
        &self,
        value_span: &Range<usize>,
        needle: &str,
        nth: usize,
    ) -> Range<usize> {
        self.text
            .get(value_span.clone())
            .and_then(|raw| raw.match_indices(needle).nth(nth))
            .map_or(value_span.clone(), |(at, _)| {
                let start = value_span.start + at;
                start..start + needle.len()
            })
    }

    pub fn sub_span(&self, value_span: &Range<usize>, needle: &str) -> Range<usize> {
        self.text
            .get(value_span.clone())
            .and_then(|raw| raw.find(needle))
            .map_or(value_span.clone(), |at| {
                let start = value_span.start + at;
                start..start + needle.len()
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one() {
        let file = SourceFile::new("f.toml", "a = 1\nbb = 2\n");
        assert_eq!(file.line_col(0), (1, 1));
        assert_eq!(file.line_col(6), (2, 1));
        assert_eq!(file.line_col(9), (2, 4));
    }

    /// The line index gives what counting every newline before the offset
    /// gave, at every character boundary: line ends, the end of the file,
    /// past it, empty lines, `\r\n` and characters of several bytes.
    #[test]
    fn line_col_agrees_with_counting_newlines() {
        let text = "a = 1\n\nname = \"héllo\" # ✓\r\nlast = 2";
        let file = SourceFile::new("f.toml", text);
        let counted = |offset: usize| {
            let before = &text[..offset.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
                before[nl + 1..].chars().count()
            }) + 1;
            (line, column)
        };
        for offset in (0..=text.len() + 3).filter(|&o| o >= text.len() || text.is_char_boundary(o))
        {
            assert_eq!(file.line_col(offset), counted(offset), "offset {offset}");
        }
        assert_eq!(file.line_col(text.len()), (4, 9));
    }

    #[test]
    fn clones_share_one_line_index() {
        let file = SourceFile::new("f.toml", "a\nb\n");
        let clone = file.clone();
        assert_eq!(file.line_col(2), (2, 1));
        assert!(Arc::ptr_eq(&file.line_starts, &clone.line_starts));
        assert_eq!(clone.line_starts.get().map(Vec::len), Some(3));
    }

    #[test]
    fn an_empty_file_is_one_empty_line() {
        let file = SourceFile::new("f.toml", "");
        assert_eq!(file.line_col(0), (1, 1));
        assert_eq!(file.line_col(5), (1, 1));
    }

    #[test]
    fn sub_span_finds_the_placeholder_inside_the_value() {
        let file = SourceFile::new("f.toml", "run = \"echo {nope}\"\n");
        assert_eq!(file.sub_span(&(6..19), "{nope}"), 12..18);
        assert_eq!(file.sub_span(&(6..19), "{absent}"), 6..19);
    }

    #[test]
    fn sub_span_nth_finds_a_later_occurrence() {
        let file = SourceFile::new("f.toml", "run = \"echo {host} \\\"{host}\\\"\"\n");
        let value = 6..file.text().len() - 1;
        assert_eq!(file.sub_span_nth(&value, "{host}", 0), 12..18);
        assert_eq!(file.sub_span_nth(&value, "{host}", 1), 21..27);
        assert_eq!(file.sub_span_nth(&value, "{host}", 2), value);
    }
}
