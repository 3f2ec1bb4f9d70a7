//! Diagnostics: errors and warnings about a policy file, each with its place
//! (file:line:column), the rule it concerns, and a hint on how to fix it.

use serde::Serialize;
use std::fmt;
use std::ops::Range;

/// How serious a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// The policy cannot be used.
    Error,
    /// The policy works but probably not as meant.
    Warning,
}

/// A place in a policy file.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Location {
    /// The file name as given by the caller.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// One error or warning.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// Where in the file; `None` when the problem is not at one place.
    pub location: Option<Location>,
    /// The policy rule concerned, by name.
    pub rule: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(location) = &self.location {
            write!(f, "{location}: ")?;
        }
        f.write_str(match self.severity {
            Severity::Error => "error: ",
            Severity::Warning => "warning: ",
        })?;
        if let Some(rule) = &self.rule {
            write!(f, "rule \"{rule}\": ")?;
        }
        f.write_str(&self.message)?;
        if let Some(hint) = &self.hint {
            write!(f, "\n  hint: {hint}")?;
        }
        Ok(())
    }
}

/// The errors (and warnings) that made a policy unusable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct PolicyError {
    /// All diagnostics, errors first, each group in file order.
    pub diagnostics: Vec<Diagnostic>,
}

impl PolicyError {
    /// Only the errors.
    pub fn errors(&self) -> impl Iterator<Item = &Diagnostic> {
        self.diagnostics.iter().filter(|d| d.severity == Severity::Error)
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let count = self.errors().count();
        for (i, diagnostic) in self.diagnostics.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{diagnostic}")?;
        }
        write!(
            f,
            "\n{count} error{} in the policy",
            if count == 1 { "" } else { "s" }
        )
    }
}

/// Turns byte offsets of one source text into locations.
#[derive(Debug)]
pub(crate) struct SourceMap<'a> {
    file: &'a str,
    text: &'a str,
    line_starts: Vec<usize>,
}

impl<'a> SourceMap<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str) -> Self {
        let line_starts = std::iter::once(0)
            .chain(text.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        Self {
            file,
            text,
            line_starts,
        }
    }

    /// The 1-based line of `offset`: cheaper than [`SourceMap::locate`],
    /// which counts the characters before it on its line.
    pub(crate) fn line(&self, offset: usize) -> usize {
        self.line_starts
            .partition_point(|&start| start <= offset.min(self.text.len()))
    }

    /// [`SourceMap::line`] of `offset`, for offsets that mostly come in
    /// order: it steps on from the line found last (`previous`, updated),
    /// a few lines at most, instead of searching all of them (100,000 set
    /// entries, one per line, each a cache miss).
    pub(crate) fn line_after(&self, previous: &mut usize, offset: usize) -> usize {
        const STEPS: usize = 8;
        let offset = offset.min(self.text.len());
        let from = (*previous).max(1);
        let line = (from..self.line_starts.len().min(from + STEPS))
            .find(|&line| self.line_starts[line] > offset)
            .filter(|_| self.line_starts[from - 1] <= offset)
            .unwrap_or_else(|| self.line(offset));
        *previous = line;
        line
    }

    pub(crate) fn locate(&self, offset: usize) -> Location {
        let offset = offset.min(self.text.len());
        let line = self.line_starts.partition_point(|&start| start <= offset) - 1;
        let start = self.line_starts[line];
        let column = self
            .text
            .get(start..offset)
            .map_or(offset - start, |s| s.chars().count())
            + 1;
        Location {
            file: self.file.to_string(),
            line: line + 1,
            column,
        }
    }
}

/// Collects diagnostics while a policy is read.
#[derive(Debug)]
pub(crate) struct Collector<'a> {
    pub(crate) map: SourceMap<'a>,
    pub(crate) diagnostics: Vec<Diagnostic>,
}

impl<'a> Collector<'a> {
    pub(crate) fn new(file: &'a str, text: &'a str) -> Self {
        Self {
            map: SourceMap::new(file, text),
            diagnostics: Vec::new(),
        }
    }

    pub(crate) fn push(
        &mut self,
        severity: Severity,
        span: Option<Range<usize>>,
        rule: Option<&str>,
        message: impl Into<String>,
        hint: Option<String>,
    ) {
        self.diagnostics.push(Diagnostic {
            severity,
            location: span.map(|span| self.map.locate(span.start)),
            rule: rule.map(str::to_string),
            message: message.into(),
            hint,
        });
    }

    pub(crate) fn error(
        &mut self,
        span: Range<usize>,
        rule: Option<&str>,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        self.push(Severity::Error, Some(span), rule, message, hint.into());
    }

    pub(crate) fn warning(
        &mut self,
        span: Range<usize>,
        rule: Option<&str>,
        message: impl Into<String>,
        hint: impl Into<Option<String>>,
    ) {
        self.push(Severity::Warning, Some(span), rule, message, hint.into());
    }

    pub(crate) fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.severity == Severity::Error)
    }

    /// Errors first, then warnings, each in file order.
    pub(crate) fn into_sorted(self) -> Vec<Diagnostic> {
        sorted(self.diagnostics)
    }
}

/// Errors first, then warnings, each in file order.
pub(crate) fn sorted(mut diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
    diagnostics.sort_by(|a, b| (a.severity, &a.location).cmp(&(b.severity, &b.location)));
    diagnostics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_lines_and_columns_in_characters() {
        let map = SourceMap::new("p.toml", "ab\nçd = 1\n");
        assert_eq!(
            map.locate(0),
            Location {
                file: "p.toml".into(),
                line: 1,
                column: 1
            }
        );
        assert_eq!(map.locate(3).line, 2);
        // 'ç' is two bytes but one column.
        assert_eq!(map.locate(5).column, 2);
        assert_eq!(map.locate(100).line, 3);
        let mut previous = 0;
        for offset in [0, 2, 3, 5, 100, 0, 4, 3, 100] {
            assert_eq!(
                map.line_after(&mut previous, offset),
                map.line(offset),
                "{offset}"
            );
        }
        for offset in [0, 2, 3, 5, 100] {
            assert_eq!(map.line(offset), map.locate(offset).line);
        }
    }

    #[test]
    fn lines_after_agree_with_lines_in_any_order() {
        let text: String = (0..50).map(|i| format!("{}\n", "x".repeat(i % 7))).collect();
        let map = SourceMap::new("p.toml", &text);
        let offsets: Vec<usize> = (0..=text.len() + 2).collect();
        for order in [
            offsets.clone(),
            offsets.iter().rev().copied().collect(),
            offsets.iter().step_by(13).copied().collect(),
        ] {
            let mut previous = 0;
            for &offset in &order {
                assert_eq!(
                    map.line_after(&mut previous, offset),
                    map.line(offset),
                    "{offset}"
                );
            }
        }
    }
}
