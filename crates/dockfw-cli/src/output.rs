//! Human output: aligned tables and colour. Colour goes through `anstream`,
//! which strips it when the stream is not a terminal or NO_COLOR is set.

use anstream::AutoStream;
use anstyle::{AnsiColor, Style};
use dockfw_core::{Action, Diagnostic, Severity};
use std::cell::{RefCell, RefMut};
use std::fmt::Write;
use std::io;
use std::rc::Rc;

/// Writes a line to the session's standard output ([`Console::out`]), as
/// `println!` would.
macro_rules! outln {
    ($session:expr) => {
        $crate::output::outln!($session, "")
    };
    ($session:expr, $($arg:tt)*) => {{
        use std::io::Write as _;
        // As anstream's println!, a closed pipe ends nothing.
        let _ = writeln!($session.console.out(), $($arg)*);
    }};
}

/// Writes to the session's standard output ([`Console::out`]), as `print!` would.
macro_rules! out {
    ($session:expr, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = write!($session.console.out(), $($arg)*);
    }};
}

/// Writes a line to the session's standard error ([`Console::err`]), as
/// `eprintln!` would.
macro_rules! errln {
    ($console:expr, $($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!($console.err(), $($arg)*);
    }};
}

pub(crate) use {errln, out, outln};

/// Where a command writes: the terminal, or (for tests) memory. Colour is
/// stripped where the stream is not a terminal, NO_COLOR is set, or the
/// output is captured.
pub struct Console {
    out: RefCell<AutoStream<Box<dyn io::Write>>>,
    err: RefCell<AutoStream<Box<dyn io::Write>>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Console")
    }
}

impl Console {
    /// Standard output and error, coloured as `anstream` decides for them
    /// (terminal, NO_COLOR, CLICOLOR_FORCE).
    pub fn terminal() -> Self {
        let out = AutoStream::choice(&io::stdout());
        let err = AutoStream::choice(&io::stderr());
        Self {
            out: RefCell::new(AutoStream::new(Box::new(io::stdout()), out)),
            err: RefCell::new(AutoStream::new(Box::new(io::stderr()), err)),
        }
    }

    /// Output and error kept in memory, without colour: for tests.
    pub fn capture() -> (Self, Captured) {
        let captured = Captured::default();
        let console = Self {
            out: RefCell::new(AutoStream::never(Box::new(captured.out.clone()))),
            err: RefCell::new(AutoStream::never(Box::new(captured.err.clone()))),
        };
        (console, captured)
    }

    /// Standard output.
    pub fn out(&self) -> RefMut<'_, AutoStream<Box<dyn io::Write>>> {
        self.out.borrow_mut()
    }

    /// Standard error.
    pub fn err(&self) -> RefMut<'_, AutoStream<Box<dyn io::Write>>> {
        self.err.borrow_mut()
    }
}

/// What a command wrote to a [`Console::capture`]d console.
#[derive(Debug, Clone, Default)]
pub struct Captured {
    out: Buffer,
    err: Buffer,
}

impl Captured {
    /// Everything written to standard output so far.
    pub fn stdout(&self) -> String {
        self.out.text()
    }

    /// Everything written to standard error so far.
    pub fn stderr(&self) -> String {
        self.err.text()
    }

    /// Forgets what was written so far.
    pub fn clear(&self) {
        self.out.0.borrow_mut().clear();
        self.err.0.borrow_mut().clear();
    }
}

/// A byte buffer shared by the console writing it and the test reading it.
#[derive(Debug, Clone, Default)]
struct Buffer(Rc<RefCell<Vec<u8>>>);

impl Buffer {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.borrow()).into_owned()
    }
}

impl io::Write for Buffer {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.borrow_mut().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

pub const BOLD: Style = Style::new().bold();
pub const DIM: Style = Style::new().dimmed();
pub const GOOD: Style = AnsiColor::Green.on_default();
pub const BAD: Style = AnsiColor::Red.on_default().bold();
pub const WARN: Style = AnsiColor::Yellow.on_default().bold();
pub const ADDED: Style = AnsiColor::Green.on_default();
pub const REMOVED: Style = AnsiColor::Red.on_default();

/// How much to print, from `-q` and `-v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

pub fn paint(style: Style, text: impl std::fmt::Display) -> String {
    let text = text.to_string();
    // Nothing to style: no escape codes that would hide trailing blanks from trimming.
    if text.is_empty() {
        return text;
    }
    format!("{style}{text}{style:#}")
}

pub fn action_style(action: Action) -> Style {
    match action {
        Action::Allow => GOOD,
        Action::Drop | Action::Reject => BAD,
    }
}

/// Prints policy diagnostics to stderr, coloured by severity.
pub fn print_diagnostics(console: &Console, diagnostics: &[Diagnostic]) {
    for diagnostic in diagnostics {
        let style = match diagnostic.severity {
            Severity::Error => BAD,
            Severity::Warning => WARN,
        };
        // Diagnostic's Display reads "FILE:LINE:COL: error: ..."; colour the severity word.
        let text = diagnostic.to_string();
        let word = match diagnostic.severity {
            Severity::Error => "error:",
            Severity::Warning => "warning:",
        };
        let text = text.replacen(word, &paint(style, word), 1);
        errln!(console, "{text}");
    }
}

/// Column alignment.
#[derive(Debug, Clone, Copy)]
pub enum Align {
    Left,
    Right,
}

/// A table with a header row; cells may be styled, widths come from the plain text.
#[derive(Debug, Default)]
pub struct Table {
    columns: Vec<(String, Align)>,
    rows: Vec<Vec<(String, Style)>>,
}

impl Table {
    pub fn new(columns: &[(&str, Align)]) -> Self {
        Self {
            columns: columns
                .iter()
                .map(|(name, align)| (name.to_string(), *align))
                .collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<(String, Style)>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let widths: Vec<usize> = (0..self.columns.len())
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|row| row.get(i))
                    .map(|(text, _)| text.chars().count())
                    .chain([self.columns[i].0.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        let header: Vec<(String, Style)> = self
            .columns
            .iter()
            .map(|(name, _)| (name.clone(), BOLD))
            .collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::from("  ");
            for (i, (text, style)) in row.iter().enumerate() {
                let pad = widths[i].saturating_sub(text.chars().count());
                let last = i + 1 == row.len();
                match self.columns[i].1 {
                    Align::Left if last => line.push_str(&paint(*style, text)),
                    Align::Left => {
                        line.push_str(&paint(*style, text));
                        line.push_str(&" ".repeat(pad));
                    }
                    Align::Right => {
                        line.push_str(&" ".repeat(pad));
                        line.push_str(&paint(*style, text));
                    }
                }
                if !last {
                    line.push_str("   ");
                }
            }
            let _ = writeln!(out, "{}", line.trim_end());
        }
        out
    }
}

/// Bytes as a short human figure (1000-based units would surprise; use KiB).
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

pub fn plural(count: usize, word: &str) -> String {
    if count == 1 {
        format!("{count} {word}")
    } else {
        format!("{count} {word}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_plain_text_whatever_the_style() {
        let mut table = Table::new(&[("RULE", Align::Left), ("PACKETS", Align::Right)]);
        table.row(vec![("office".into(), Style::new()), ("7".into(), GOOD)]);
        table.row(vec![
            ("default".into(), Style::new()),
            ("1234".into(), Style::new()),
        ]);
        let plain = anstream::adapter::strip_str(&table.render()).to_string();
        assert_eq!(
            plain,
            "  RULE      PACKETS\n  office          7\n  default      1234\n"
        );
    }

    #[test]
    fn bytes_read_naturally() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(3 * 1024 * 1024), "3.0 MiB");
    }
}
