//! A configuration file's text, kept so that errors can point into it.

use std::ops::Range;
use std::sync::Arc;

/// One loaded file: the name it is shown under and its full text.
#[derive(Debug, Clone)]
pub struct SourceFile {
    name: String,
    text: Arc<String>,
}

impl SourceFile {
    pub fn new(name: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            text: Arc::new(text.into()),
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

    /// 1-based line and column of a byte offset, as editors count them.
    pub fn line_col(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rfind('\n').map_or(before.chars().count(), |nl| {
            before[nl + 1..].chars().count()
        }) + 1;
        (line, column)
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
