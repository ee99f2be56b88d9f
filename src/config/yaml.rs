//! A YAML tree that remembers where every node came from, and a reader over it that collects
//! every problem instead of stopping at the first.
//!
//! Serde-based loaders stop at the first error and lose positions once a value is
//! deserialized. Rapport's operators edit these files by hand, so `rapport check` must list
//! *all* mistakes, each with file:line:column. The reader records which keys the code asked
//! for; every other key is reported as unknown, with a "did you mean" taken from the keys that
//! were asked for, so the schema lives in one place: the code that reads it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use saphyr_parser::{Event, Parser, ScalarStyle, Span};

use super::diagnostic::{Diagnostic, Diagnostics, Pos, did_you_mean};

/// A YAML node with its position.
#[derive(Debug, Clone)]
pub struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug, Clone)]
pub enum Value {
    /// `~`, `null`, or nothing at all.
    Null,
    /// A scalar; `quoted` is true for quoted and block scalars, which are always strings.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    fn kind_name(&self) -> &'static str {
        match &self.value {
            Value::Null => "nothing (null)",
            Value::Scalar { .. } => "a scalar",
            Value::Seq(_) => "a list",
            Value::Map(_) => "a mapping",
        }
    }
}

fn pos_of(span: &Span) -> Pos {
    Pos {
        line: span.start.line(),
        column: span.start.col() + 1,
    }
}

/// Parses YAML text into a [`Node`]. An empty document is `Null`.
pub fn parse(src: &str) -> Result<Node, (Pos, String)> {
    enum Frame {
        Seq(Pos, usize, Vec<Node>),
        Map(Pos, usize, Vec<Node>),
    }
    let mut parser = Parser::new_from_str(src);
    let mut stack: Vec<Frame> = Vec::new();
    let mut anchors: HashMap<usize, Node> = HashMap::new();
    let mut root: Option<Node> = None;

    loop {
        let (event, span) = match parser.next_event() {
            None => break,
            Some(Err(e)) => {
                let m = e.marker();
                let pos = Pos {
                    line: m.line(),
                    column: m.col() + 1,
                };
                return Err((pos, e.info().to_string()));
            }
            Some(Ok(ev)) => ev,
        };
        let pos = pos_of(&span);
        let finished: Option<(Node, usize)> = match event {
            Event::StreamEnd => break,
            Event::Nothing | Event::StreamStart | Event::DocumentEnd => None,
            Event::DocumentStart(_) => {
                if root.is_some() {
                    return Err((pos, "only one YAML document per file is supported".into()));
                }
                None
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(node) => Some((
                    Node {
                        pos,
                        value: node.value.clone(),
                    },
                    0,
                )),
                None => return Err((pos, "alias refers to an unknown anchor".into())),
            },
            Event::Scalar(text, style, anchor, tag) => {
                let quoted = !matches!(style, ScalarStyle::Plain) || tag.is_some();
                let value = if !quoted && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL") {
                    Value::Null
                } else {
                    Value::Scalar {
                        text: text.into_owned(),
                        quoted,
                    }
                };
                Some((Node { pos, value }, anchor))
            }
            Event::SequenceStart(anchor, _) => {
                stack.push(Frame::Seq(pos, anchor, Vec::new()));
                None
            }
            Event::MappingStart(anchor, _) => {
                stack.push(Frame::Map(pos, anchor, Vec::new()));
                None
            }
            Event::SequenceEnd => match stack.pop() {
                Some(Frame::Seq(p, anchor, items)) => Some((
                    Node {
                        pos: p,
                        value: Value::Seq(items),
                    },
                    anchor,
                )),
                _ => return Err((pos, "unbalanced sequence".into())),
            },
            Event::MappingEnd => match stack.pop() {
                Some(Frame::Map(p, anchor, items)) => {
                    let mut pairs = Vec::with_capacity(items.len() / 2);
                    let mut it = items.into_iter();
                    while let (Some(k), Some(v)) = (it.next(), it.next()) {
                        pairs.push((k, v));
                    }
                    Some((
                        Node {
                            pos: p,
                            value: Value::Map(pairs),
                        },
                        anchor,
                    ))
                }
                _ => return Err((pos, "unbalanced mapping".into())),
            },
        };
        if let Some((node, anchor)) = finished {
            if anchor != 0 {
                anchors.insert(anchor, node.clone());
            }
            match stack.last_mut() {
                Some(Frame::Seq(_, _, items)) | Some(Frame::Map(_, _, items)) => items.push(node),
                None => root = Some(node),
            }
        }
    }
    Ok(root.unwrap_or(Node {
        pos: Pos { line: 1, column: 1 },
        value: Value::Null,
    }))
}

/// One file being read: its name and text, and the problems found so far.
pub struct Doc {
    pub file: PathBuf,
    pub src: String,
    errors: RefCell<Vec<Diagnostic>>,
}

impl Doc {
    pub fn new(file: impl Into<PathBuf>, src: impl Into<String>) -> Self {
        Doc {
            file: file.into(),
            src: src.into(),
            errors: RefCell::new(Vec::new()),
        }
    }

    /// Parses the text; a syntax error is recorded and `None` returned.
    pub fn parse(&self) -> Option<Node> {
        match parse(&self.src) {
            Ok(node) => Some(node),
            Err((pos, msg)) => {
                self.push(self.diag(pos, format!("YAML syntax error: {msg}")));
                None
            }
        }
    }

    pub fn diag(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(&self.file, Some(&self.src), pos, message)
    }

    pub fn push(&self, d: Diagnostic) {
        self.errors.borrow_mut().push(d);
    }

    /// Records an error at `node`.
    pub fn error(&self, node: &Node, message: impl Into<String>) {
        self.push(self.diag(node.pos, message));
    }

    /// Records an error with a hint at `node`.
    pub fn error_hint(&self, node: &Node, message: impl Into<String>, hint: impl Into<String>) {
        self.push(self.diag(node.pos, message).with_hint(hint));
    }

    pub fn has_errors(&self) -> bool {
        !self.errors.borrow().is_empty()
    }

    pub fn into_diagnostics(self) -> Diagnostics {
        let mut v = self.errors.into_inner();
        v.sort_by_key(|d| (d.pos.line, d.pos.column));
        Diagnostics(v)
    }

    /// Reads `node` as a mapping.
    pub fn map<'d>(&'d self, node: &'d Node, what: &str) -> Option<MapReader<'d>> {
        match &node.value {
            Value::Map(pairs) => Some(MapReader::new(self, node, pairs)),
            _ => {
                self.error(
                    node,
                    format!("{what} must be a mapping (key: value), found {}", node.kind_name()),
                );
                None
            }
        }
    }

    /// Reads `node` as a value of type `T`, recording an error when it is not one.
    pub fn read<T: FromYaml>(&self, node: &Node) -> Option<T> {
        T::from_yaml(self, node)
    }
}

/// Reads the keys of one mapping and remembers which were asked for.
pub struct MapReader<'d> {
    doc: &'d Doc,
    node: &'d Node,
    pairs: Vec<(&'d str, &'d Node, &'d Node)>,
    asked: RefCell<Vec<&'static str>>,
}

impl<'d> MapReader<'d> {
    fn new(doc: &'d Doc, node: &'d Node, raw: &'d [(Node, Node)]) -> Self {
        let mut pairs: Vec<(&str, &Node, &Node)> = Vec::with_capacity(raw.len());
        for (k, v) in raw {
            match &k.value {
                Value::Scalar { text, .. } => {
                    if let Some((_, first, _)) = pairs.iter().find(|(name, _, _)| *name == text.as_str()) {
                        doc.error_hint(
                            k,
                            format!("duplicate key `{text}`"),
                            format!("it is already set on line {}", first.pos.line),
                        );
                    } else {
                        pairs.push((text.as_str(), k, v));
                    }
                }
                _ => doc.error(k, "keys must be plain strings"),
            }
        }
        MapReader {
            doc,
            node,
            pairs,
            asked: RefCell::new(Vec::new()),
        }
    }

    pub fn doc(&self) -> &'d Doc {
        self.doc
    }

    /// The node of the mapping itself, for errors about the whole entry.
    pub fn node(&self) -> &'d Node {
        self.node
    }

    /// The raw node under `key`, if present (and not null).
    pub fn get(&self, key: &'static str) -> Option<&'d Node> {
        self.asked.borrow_mut().push(key);
        self.pairs
            .iter()
            .find(|(name, _, _)| *name == key)
            .map(|(_, _, v)| *v)
            .filter(|v| !matches!(v.value, Value::Null))
    }

    /// The key node for `key` (for errors that point at the key rather than its value).
    pub fn key_node(&self, key: &str) -> Option<&'d Node> {
        self.pairs.iter().find(|(name, _, _)| *name == key).map(|(_, k, _)| *k)
    }

    /// An optional value.
    pub fn opt<T: FromYaml>(&self, key: &'static str) -> Option<T> {
        self.get(key).and_then(|n| T::from_yaml(self.doc, n))
    }

    /// An optional value with a default (the default is used when the key is absent or invalid;
    /// an invalid value is still reported).
    pub fn or<T: FromYaml>(&self, key: &'static str, default: T) -> T {
        self.opt(key).unwrap_or(default)
    }

    /// A required value; its absence is recorded as an error.
    pub fn req<T: FromYaml>(&self, key: &'static str) -> Option<T> {
        match self.get(key) {
            Some(n) => T::from_yaml(self.doc, n),
            None => {
                self.doc.error(self.node, format!("missing required key `{key}`"));
                None
            }
        }
    }

    /// Reports every key that was never asked for. Call after reading all keys.
    pub fn finish(self) {
        let asked = self.asked.into_inner();
        for (name, key, _) in &self.pairs {
            if asked.contains(name) {
                continue;
            }
            let hint = match did_you_mean_hint(name, asked.iter().copied()) {
                Some(h) => h,
                None => {
                    let mut known = asked.clone();
                    known.sort_unstable();
                    known.dedup();
                    format!("known keys here: {}", known.join(", "))
                }
            };
            self.doc.error_hint(key, format!("unknown key `{name}`"), hint);
        }
    }
}

/// Conversion of a node into a typed value, recording an error on failure.
pub trait FromYaml: Sized {
    fn from_yaml(doc: &Doc, node: &Node) -> Option<Self>;
}

/// The text of a scalar node, or an error naming what was found instead.
pub fn scalar<'n>(doc: &Doc, node: &'n Node, expected: &str) -> Option<(&'n str, bool)> {
    match &node.value {
        Value::Scalar { text, quoted } => Some((text.as_str(), *quoted)),
        _ => {
            doc.error(node, format!("expected {expected}, found {}", node.kind_name()));
            None
        }
    }
}

impl FromYaml for String {
    fn from_yaml(doc: &Doc, node: &Node) -> Option<Self> {
        scalar(doc, node, "a string").map(|(s, _)| s.to_owned())
    }
}

impl FromYaml for bool {
    fn from_yaml(doc: &Doc, node: &Node) -> Option<Self> {
        let (text, quoted) = scalar(doc, node, "true or false")?;
        match (text, quoted) {
            ("true", false) => Some(true),
            ("false", false) => Some(false),
            _ => {
                doc.error_hint(
                    node,
                    format!("expected true or false, found `{text}`"),
                    "only the unquoted words true and false are booleans here",
                );
                None
            }
        }
    }
}

macro_rules! integer_from_yaml {
    ($($t:ty),*) => {$(
        impl FromYaml for $t {
            fn from_yaml(doc: &Doc, node: &Node) -> Option<Self> {
                let (text, _) = scalar(doc, node, "a whole number")?;
                match text.replace('_', "").parse::<$t>() {
                    Ok(v) => Some(v),
                    Err(_) => {
                        doc.error(node, format!(
                            "expected a whole number from {} to {}, found `{text}`",
                            <$t>::MIN, <$t>::MAX
                        ));
                        None
                    }
                }
            }
        }
    )*};
}
integer_from_yaml!(u16, u32, u64, usize, i64);

impl FromYaml for PathBuf {
    fn from_yaml(doc: &Doc, node: &Node) -> Option<Self> {
        let (text, _) = scalar(doc, node, "a file path")?;
        Some(PathBuf::from(text))
    }
}

impl<T: FromYaml> FromYaml for Vec<T> {
    fn from_yaml(doc: &Doc, node: &Node) -> Option<Self> {
        match &node.value {
            Value::Seq(items) => {
                // Read every item so that each bad one is reported.
                let read: Vec<Option<T>> = items.iter().map(|n| T::from_yaml(doc, n)).collect();
                read.into_iter().collect()
            }
            _ => {
                doc.error(node, format!("expected a list, found {}", node.kind_name()));
                None
            }
        }
    }
}

/// A duration written as `90s`, `5m`, `2h`, `3d`, `250ms`, or a combination like `1h30m`.
impl FromYaml for Duration {
    fn from_yaml(doc: &Doc, node: &Node) -> Option<Self> {
        let (text, _) = scalar(doc, node, "a duration")?;
        match parse_duration(text) {
            Some(d) => Some(d),
            None => {
                doc.error_hint(
                    node,
                    format!("`{text}` is not a duration"),
                    "write a number and a unit, e.g. 90s, 5m, 2h, 3d or 1h30m",
                );
                None
            }
        }
    }
}

/// Parses `90s`, `5m`, `1h30m`, `250ms`, `3d`, with optional spaces and long unit names.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let s: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if s.is_empty() {
        return None;
    }
    let mut total = Duration::ZERO;
    let mut rest = s.as_str();
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = match unit {
            "ms" | "millis" | "milliseconds" => {
                total += Duration::from_millis(n);
                continue;
            }
            "s" | "sec" | "secs" | "second" | "seconds" => 1,
            "m" | "min" | "mins" | "minute" | "minutes" => 60,
            "h" | "hr" | "hrs" | "hour" | "hours" => 3600,
            "d" | "day" | "days" => 86_400,
            "w" | "week" | "weeks" => 7 * 86_400,
            _ => return None,
        };
        total += Duration::from_secs(n.checked_mul(secs)?);
    }
    Some(total)
}

/// "did you mean `x`?" for the closest candidate, if any is close.
pub fn did_you_mean_hint<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    did_you_mean(word, candidates).map(|s| format!("did you mean `{s}`?"))
}

/// Resolves `path` against the directory of the file it was written in.
pub fn resolve_path(base_file: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base_file.parent().unwrap_or(Path::new(".")).join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(src: &str) -> Doc {
        Doc::new("t.yaml", src)
    }

    #[test]
    fn positions_are_one_based() {
        let n = parse("a:\n  b: hello\n").unwrap();
        let Value::Map(pairs) = &n.value else {
            panic!("not a map")
        };
        let Value::Map(inner) = &pairs[0].1.value else {
            panic!("not a map")
        };
        assert_eq!(inner[0].1.pos, Pos { line: 2, column: 6 });
    }

    #[test]
    fn unknown_and_missing_keys_are_all_reported() {
        let d = doc("nmae: x\nextra: 1\n");
        let root = d.parse().unwrap();
        let m = d.map(&root, "root").unwrap();
        let _: Option<String> = m.req("name");
        m.finish();
        let errs = d.into_diagnostics();
        let text = errs.to_string();
        assert_eq!(errs.len(), 3, "{text}");
        assert!(text.contains("missing required key `name`"), "{text}");
        assert!(text.contains("t.yaml:1:1: error: unknown key `nmae`"), "{text}");
        assert!(text.contains("did you mean `name`?"), "{text}");
        assert!(text.contains("t.yaml:2:1: error: unknown key `extra`"), "{text}");
    }

    #[test]
    fn strict_booleans() {
        let d = doc("a: yes\nb: true\nc: \"true\"\n");
        let root = d.parse().unwrap();
        let m = d.map(&root, "root").unwrap();
        assert_eq!(m.opt::<bool>("a"), None);
        assert_eq!(m.opt::<bool>("b"), Some(true));
        assert_eq!(m.opt::<bool>("c"), None);
        m.finish();
        assert_eq!(d.into_diagnostics().len(), 2);
    }

    #[test]
    fn every_bad_list_item_is_reported() {
        let d = doc("ports: [1, x, 3, y]\n");
        let root = d.parse().unwrap();
        let m = d.map(&root, "root").unwrap();
        assert_eq!(m.opt::<Vec<u16>>("ports"), None);
        m.finish();
        let errs = d.into_diagnostics();
        assert_eq!(errs.len(), 2);
        assert_eq!(errs.0[0].pos, Pos { line: 1, column: 12 });
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let d = doc("a: 1\na: 2\n");
        let root = d.parse().unwrap();
        let m = d.map(&root, "root").unwrap();
        let _: Option<u32> = m.opt("a");
        m.finish();
        let errs = d.into_diagnostics();
        assert_eq!(errs.len(), 1);
        assert!(errs.0[0].message.contains("duplicate key `a`"));
        assert_eq!(errs.0[0].pos.line, 2);
    }

    #[test]
    fn syntax_errors_are_located() {
        let d = doc("a: [1, 2\nb: 3\n");
        assert!(d.parse().is_none());
        let errs = d.into_diagnostics();
        assert_eq!(errs.len(), 1);
        assert!(errs.0[0].message.starts_with("YAML syntax error"));
        assert!(errs.0[0].pos.line >= 1);
    }

    #[test]
    fn aliases_copy_the_anchored_value() {
        let n = parse("base: &b [x, y]\nother: *b\n").unwrap();
        let Value::Map(pairs) = &n.value else { panic!() };
        assert!(matches!(&pairs[1].1.value, Value::Seq(items) if items.len() == 2));
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_duration("3 days"), Some(Duration::from_secs(3 * 86400)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("5"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration(""), None);
    }
}
