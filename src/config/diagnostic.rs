//! Located, human-readable errors for the files an operator writes by hand (YAML, CSV).
//!
//! Every check that reads a user's file reports through [`Diagnostic`], so that each message
//! names the file, the line and the column, shows the offending line with a caret, and where
//! possible says what to do instead.

use std::fmt;
use std::path::{Path, PathBuf};

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Pos {
    pub line: usize,
    pub column: usize,
}

/// One problem found in a file the operator wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub pos: Pos,
    pub message: String,
    /// What to do about it, when we can tell.
    pub hint: Option<String>,
    /// The source line the position points into, for the caret display.
    pub source_line: Option<String>,
}

impl Diagnostic {
    pub fn new(file: &Path, src: Option<&str>, pos: Pos, message: impl Into<String>) -> Self {
        let source_line = src.and_then(|s| s.lines().nth(pos.line.saturating_sub(1)).map(str::to_owned));
        Diagnostic {
            file: file.to_path_buf(),
            pos,
            message: message.into(),
            hint: None,
            source_line,
        }
    }

    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: error: {}",
            self.file.display(),
            self.pos.line,
            self.pos.column,
            self.message
        )?;
        if let Some(line) = &self.source_line {
            let gutter = self.pos.line.to_string().len();
            write!(f, "\n{:gutter$} |\n{} | {}", "", self.pos.line, line)?;
            let caret_pad = self.pos.column.saturating_sub(1);
            write!(f, "\n{:gutter$} | {:caret_pad$}^", "", "")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "\n  = hint: {hint}")?;
        }
        Ok(())
    }
}

/// All the problems found in one or more files; the error type of every loader.
#[derive(Debug, Clone, Default, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl Diagnostics {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Diagnostic> {
        self.0.iter()
    }
}

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            writeln!(f, "{d}")?;
        }
        let n = self.0.len();
        write!(f, "{n} error{} found", if n == 1 { "" } else { "s" })
    }
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let word_lc = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .map(|c| (edit_distance(&word_lc, &c.to_ascii_lowercase()), c))
        .filter(|(d, c)| *d <= (c.len().max(word.len()) / 3).max(1) + usize::from(c.len() > 6))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Edit distance counting an adjacent transposition as one edit (optimal string alignment),
/// since swapped letters are the most common typo in hand-written keys.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let w = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * w];
    for i in 0..=a.len() {
        d[i * w] = i;
    }
    for (j, cell) in d.iter_mut().enumerate().take(w) {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[(i - 1) * w + j] + 1)
                .min(d[i * w + j - 1] + 1)
                .min(d[(i - 1) * w + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[(i - 2) * w + j - 2] + 1);
            }
            d[i * w + j] = v;
        }
    }
    d[a.len() * w + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_close_keys_only() {
        let keys = ["internal_domains", "database", "reps", "mailboxes"];
        assert_eq!(did_you_mean("internal_domain", keys), Some("internal_domains"));
        assert_eq!(did_you_mean("databse", keys), Some("database"));
        assert_eq!(did_you_mean("mailbox", keys), Some("mailboxes"));
        assert_eq!(did_you_mean("zzz", keys), None);
        assert_eq!(did_you_mean("rpes", keys), Some("reps"));
    }

    #[test]
    fn display_points_at_the_column() {
        let src = "a: 1\nbad_key: 2\n";
        let d = Diagnostic::new(
            Path::new("c.yaml"),
            Some(src),
            Pos { line: 2, column: 1 },
            "unknown key `bad_key`",
        )
        .with_hint("did you mean `bar`?");
        let text = d.to_string();
        assert!(text.starts_with("c.yaml:2:1: error: unknown key `bad_key`"), "{text}");
        assert!(text.contains("2 | bad_key: 2"), "{text}");
        assert!(text.contains("  | ^"), "{text}");
        assert!(text.contains("hint: did you mean `bar`?"), "{text}");
    }
}
