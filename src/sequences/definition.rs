//! Sequence files (`config/sequences/*.yaml`, one sequence a file), read with every problem
//! located (file:line:column) like the main config, templates checked before anything is sent.
//!
//! ```yaml
//! name: Trial follow-up
//! mailbox: alice-mail          # optional: default is the lead's owner rep's sending mailbox
//! time_zone: Europe/Berlin     # used when neither the lead nor the rep has one
//! window: { start: "09:00", end: "17:00", days: [mon, tue, wed, thu, fri], jitter: 20m }
//! holidays: [2026-12-24, 2026-12-25]
//! auto_reply_pause: 7d         # pause this long after an auto-reply without a return date
//! defaults: { lead.first_name: there }
//! attributes: [plan]          # imported lead attributes the templates need (no default)
//! enroll: [{ status: trial }, { attribute: plan, equals: pro }]
//! steps:
//!   - email: { subject: "Hi {{ lead.first_name }}", body: "..." }
//!   - wait: 2 business days
//!   - email: { reply_to_previous: true, body: "..." }
//!   - task: "Call {{ lead.name }}"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{NaiveDate, NaiveTime, Weekday};
use chrono_tz::Tz;

use super::template::{Templates, check_template};
use crate::config::yaml::{self, Doc, MapReader, Node, Value};
use crate::config::{Diagnostic, Diagnostics};

/// How long a `wait` step lasts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitSpec {
    /// Calendar days, keeping the local wall-clock time (DST-correct).
    Days(u32),
    /// Days the sending window is open that are not holidays.
    BusinessDays(u32),
    /// Elapsed hours.
    Hours(u32),
}

impl WaitSpec {
    /// `3 days`, `2 business days`, `4 hours` (also `1 day`, `1 hour`, `3d`, `4h`).
    pub fn parse(text: &str) -> Option<WaitSpec> {
        let t = text.trim().to_ascii_lowercase();
        let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let n: u32 = t[..digits].parse().ok()?;
        match t[digits..].trim() {
            "d" | "day" | "days" => Some(WaitSpec::Days(n)),
            "business day" | "business days" | "bd" | "working day" | "working days" => Some(WaitSpec::BusinessDays(n)),
            "h" | "hour" | "hours" => Some(WaitSpec::Hours(n)),
            _ => None,
        }
    }
}

/// One step of a sequence.
#[derive(Debug, Clone)]
pub enum Step {
    Email {
        /// `None` with `reply_to_previous`: `Re:` and the earlier step's subject.
        has_subject: bool,
        has_html: bool,
        reply_to_previous: bool,
    },
    Wait(WaitSpec),
    /// A reminder activity for the rep (e.g. "call Sara").
    Task,
}

/// When mail may go out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub start: NaiveTime,
    pub end: NaiveTime,
    pub days: Vec<Weekday>,
    /// Spread of send times after the window opens, so a backlog does not all go at 09:00:00.
    pub jitter: Duration,
}

impl Default for Window {
    fn default() -> Self {
        Window {
            start: NaiveTime::from_hms_opt(9, 0, 0).unwrap_or_default(),
            end: NaiveTime::from_hms_opt(17, 0, 0).unwrap_or_default(),
            days: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri],
            jitter: Duration::from_secs(30 * 60),
        }
    }
}

/// A rule that enrolls leads automatically when they are imported or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnrollRule {
    Status(String),
    Attribute { name: String, equals: String },
}

/// A validated sequence.
#[derive(Debug, Clone)]
pub struct Sequence {
    /// The file stem: `trial-follow-up.yaml` is `trial-follow-up`.
    pub id: String,
    pub name: String,
    pub path: PathBuf,
    /// Content hash of the file: an enrollment is pinned to the version it started on.
    pub version: String,
    /// The sending mailbox; `None` means the lead's owner rep's.
    pub mailbox: Option<String>,
    pub time_zone: Tz,
    pub window: Window,
    pub holidays: Vec<NaiveDate>,
    pub auto_reply_pause: Duration,
    pub enroll: Vec<EnrollRule>,
    pub steps: Vec<Step>,
    /// One hash per step (its kind and template text): a step whose hash is gone from the
    /// current file was removed, and never fires for enrollments pinned to older versions.
    pub step_fingerprints: Vec<String>,
    pub templates: Arc<Templates>,
}

/// The content hash that names a version of a sequence file.
pub fn content_hash(src: &str) -> String {
    let d = ring::digest::digest(&ring::digest::SHA256, src.as_bytes());
    d.as_ref()[..8].iter().map(|b| format!("{b:02x}")).collect()
}

impl Sequence {
    /// Reads and validates a sequence file.
    pub fn load(path: &Path) -> Result<Sequence, Diagnostics> {
        let src = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic::new(
                path,
                None,
                crate::config::Pos { line: 1, column: 1 },
                format!("cannot read: {e}"),
            )])
        })?;
        Sequence::from_str(path, &src)
    }

    /// Validates sequence text as if read from `path`.
    pub fn from_str(path: &Path, src: &str) -> Result<Sequence, Diagnostics> {
        let doc = Doc::new(path, src);
        let seq = doc.parse().and_then(|root| read_sequence(&doc, &root));
        if doc.has_errors() {
            return Err(doc.into_diagnostics());
        }
        seq.ok_or_else(|| doc.into_diagnostics())
    }

    /// The index of the email step a `reply_to_previous` step at `index` answers.
    pub fn previous_email(&self, index: usize) -> Option<usize> {
        (0..index).rev().find(|i| matches!(self.steps[*i], Step::Email { .. }))
    }
}

/// Reads every `*.yaml` file of `dir`, sorted by name, collecting every problem.
pub fn load_dir(dir: &Path) -> Result<Vec<Sequence>, Diagnostics> {
    let mut files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(rd) => rd
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect(),
        Err(e) => {
            return Err(Diagnostics(vec![Diagnostic::new(
                dir,
                None,
                crate::config::Pos { line: 1, column: 1 },
                format!("cannot read the sequences folder: {e}"),
            )]));
        }
    };
    files.sort();
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in files {
        match Sequence::load(&f) {
            Ok(s) => out.push(s),
            Err(d) => errors.extend(d.0),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Diagnostics(errors))
    }
}

fn parse_hhmm(text: &str) -> Option<NaiveTime> {
    NaiveTime::parse_from_str(text.trim(), "%H:%M").ok()
}

fn parse_weekday(text: &str) -> Option<Weekday> {
    Some(match text.trim().to_ascii_lowercase().get(..3)? {
        "mon" => Weekday::Mon,
        "tue" => Weekday::Tue,
        "wed" => Weekday::Wed,
        "thu" => Weekday::Thu,
        "fri" => Weekday::Fri,
        "sat" => Weekday::Sat,
        "sun" => Weekday::Sun,
        _ => return None,
    })
}

fn scalar_text(doc: &Doc, node: &Node, what: &str) -> Option<String> {
    yaml::scalar(doc, node, what).map(|(t, _)| t.to_owned())
}

fn read_window(doc: &Doc, node: &Node) -> Option<Window> {
    let m = doc.map(node, "`window`")?;
    let mut w = Window::default();
    let mut ok = true;
    for (key, slot) in [("start", &mut w.start), ("end", &mut w.end)] {
        if let Some(n) = m.get(key) {
            let text = scalar_text(doc, n, "a time of day")?;
            match parse_hhmm(&text) {
                Some(t) => *slot = t,
                None => {
                    doc.error_hint(
                        n,
                        format!("`{text}` is not a time of day"),
                        "write HH:MM, e.g. \"09:00\"",
                    );
                    ok = false;
                }
            }
        }
    }
    if let Some(n) = m.get("days") {
        match &n.value {
            Value::Seq(items) => {
                let mut days = Vec::new();
                for i in items {
                    let text = scalar_text(doc, i, "a weekday").unwrap_or_default();
                    match parse_weekday(&text) {
                        Some(d) if !days.contains(&d) => days.push(d),
                        Some(_) => {}
                        None => {
                            doc.error_hint(
                                i,
                                format!("`{text}` is not a weekday"),
                                "use mon, tue, wed, thu, fri, sat, sun",
                            );
                            ok = false;
                        }
                    }
                }
                if days.is_empty() && ok {
                    doc.error(n, "the sending window needs at least one day");
                    ok = false;
                }
                w.days = days;
            }
            _ => {
                doc.error(n, "`days` must be a list such as [mon, tue, wed, thu, fri]");
                ok = false;
            }
        }
    }
    if let Some(j) = m.opt::<Duration>("jitter") {
        w.jitter = j;
    }
    if ok && w.start >= w.end {
        doc.error_hint(
            m.get("end").unwrap_or(node),
            format!(
                "the window ends ({}) before it starts ({})",
                w.end.format("%H:%M"),
                w.start.format("%H:%M")
            ),
            "the end must be later the same day, e.g. start \"09:00\", end \"17:00\"",
        );
        ok = false;
    }
    m.finish();
    ok.then_some(w)
}

fn read_holidays(doc: &Doc, node: &Node) -> Vec<NaiveDate> {
    let Value::Seq(items) = &node.value else {
        doc.error(node, "`holidays` must be a list of dates (YYYY-MM-DD)");
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|i| {
            let text = scalar_text(doc, i, "a date")?;
            let d = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d").ok();
            if d.is_none() {
                doc.error_hint(i, format!("`{text}` is not a date"), "write YYYY-MM-DD");
            }
            d
        })
        .collect()
}

fn read_enroll(doc: &Doc, node: &Node) -> Vec<EnrollRule> {
    let Value::Seq(items) = &node.value else {
        doc.error(node, "`enroll` must be a list of rules");
        return Vec::new();
    };
    let mut out = Vec::new();
    for i in items {
        let Some(m) = doc.map(i, "an enroll rule") else {
            continue;
        };
        let status: Option<String> = m.opt("status");
        let attribute: Option<String> = m.opt("attribute");
        let equals: Option<String> = m.opt("equals");
        match (status, attribute, equals) {
            (Some(s), None, None) => out.push(EnrollRule::Status(s)),
            (None, Some(name), Some(equals)) => out.push(EnrollRule::Attribute { name, equals }),
            _ => doc.error_hint(
                i,
                "an enroll rule is `status: X` or `attribute: NAME` with `equals: VALUE`",
                "for example `- status: trial`",
            ),
        }
        m.finish();
    }
    out
}

/// The template sources of one step, with where each starts in the file.
pub(crate) struct StepSources {
    pub index: usize,
    pub parts: Vec<(&'static str, String, Node)>,
}

fn read_step(doc: &Doc, node: &Node, index: usize, sources: &mut Vec<StepSources>) -> Option<Step> {
    let m = doc.map(node, "a step")?;
    let keys = ["email", "wait", "task"];
    let present: Vec<&str> = keys.iter().copied().filter(|k| m.key_node(k).is_some()).collect();
    let step = match present.as_slice() {
        ["email"] => {
            let n = m.get("email")?;
            let e = doc.map(n, "an email step")?;
            let subject = e.get("subject");
            let body = e.get("body");
            let html = e.get("html");
            let reply_to_previous = e.or("reply_to_previous", false);
            e.finish();
            let mut parts = Vec::new();
            for (name, n) in [("subject", subject), ("body", body), ("html", html)] {
                if let Some(n) = n {
                    let text = scalar_text(doc, n, "a template")?;
                    parts.push((name, text, n.clone()));
                }
            }
            if body.is_none() {
                doc.error(n, "an email step needs a `body`");
                return None;
            }
            if subject.is_none() && !reply_to_previous {
                doc.error_hint(
                    n,
                    "an email step needs a `subject`",
                    "or set `reply_to_previous: true` to answer the earlier email",
                );
                return None;
            }
            sources.push(StepSources { index, parts });
            Step::Email {
                has_subject: subject.is_some(),
                has_html: html.is_some(),
                reply_to_previous,
            }
        }
        ["wait"] => {
            let n = m.get("wait")?;
            let text = scalar_text(doc, n, "a wait")?;
            match WaitSpec::parse(&text) {
                Some(w) => Step::Wait(w),
                None => {
                    doc.error_hint(
                        n,
                        format!("`{text}` is not a wait"),
                        "write e.g. `3 days`, `2 business days` or `4 hours`",
                    );
                    return None;
                }
            }
        }
        ["task"] => {
            let n = m.get("task")?;
            let text = scalar_text(doc, n, "a task text")?;
            sources.push(StepSources {
                index,
                parts: vec![("task", text, n.clone())],
            });
            Step::Task
        }
        [] => {
            // Ask for the keys so `finish` suggests them for a misspelt one.
            for k in keys {
                let _ = m.get(k);
            }
            m.finish();
            doc.error_hint(
                node,
                "a step needs one of `email`, `wait` or `task`",
                "e.g. `- wait: 3 days`",
            );
            return None;
        }
        _ => {
            doc.error(
                node,
                format!(
                    "a step has exactly one of `email`, `wait`, `task` (found {})",
                    present.join(", ")
                ),
            );
            return None;
        }
    };
    m.finish();
    Some(step)
}

fn read_sequence(doc: &Doc, root: &Node) -> Option<Sequence> {
    let m = doc.map(root, "a sequence file")?;
    let id = doc
        .file
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name: String = m.opt("name").unwrap_or_else(|| id.clone());
    let mailbox: Option<String> = m.opt("mailbox");
    let time_zone: Tz = m.opt("time_zone").unwrap_or(Tz::UTC);
    let window = match m.get("window") {
        Some(n) => read_window(doc, n),
        None => Some(Window::default()),
    };
    let holidays = m.get("holidays").map(|n| read_holidays(doc, n)).unwrap_or_default();
    let auto_reply_pause = m.or("auto_reply_pause", Duration::from_secs(7 * 86_400));
    let enroll = m.get("enroll").map(|n| read_enroll(doc, n)).unwrap_or_default();
    let defaults = read_defaults(&m);
    let attributes: Vec<String> = m.opt("attributes").unwrap_or_default();
    let mut sources = Vec::new();
    let steps: Vec<Step> = match m.get("steps") {
        Some(Node {
            value: Value::Seq(items),
            ..
        }) => items
            .iter()
            .enumerate()
            .filter_map(|(i, n)| read_step(doc, n, i, &mut sources))
            .collect(),
        Some(n) => {
            doc.error(n, "`steps` must be a list (each entry starting with `- `)");
            Vec::new()
        }
        None => {
            doc.error(root, "missing required key `steps`");
            Vec::new()
        }
    };
    m.finish();
    if steps.iter().all(|s| !matches!(s, Step::Email { .. })) && !doc.has_errors() {
        doc.error_hint(root, "the sequence sends no email", "add an `- email:` step");
    }
    if let Some(Step::Email {
        reply_to_previous: true,
        ..
    }) = steps.first()
        && let Some(n) = m_steps_first(root)
    {
        doc.error(
            &n,
            "the first email cannot `reply_to_previous`: there is no earlier email",
        );
    }
    let mut templates = Templates::new(
        defaults.iter().map(|(k, (v, _))| (k.clone(), v.clone())).collect(),
        attributes.into_iter().collect(),
    );
    for s in &sources {
        for (part, text, node) in &s.parts {
            if let Err(d) = check_template(doc, &mut templates, s.index, part, text, node) {
                doc.push(d);
            }
        }
    }
    for (key, (_, node)) in &defaults {
        if !key.starts_with("lead.") && !key.starts_with("company.") && !key.starts_with("rep.") {
            doc.error_hint(
                node,
                format!("`{key}` is not a template variable"),
                "defaults are for lead.*, company.* or rep.* values",
            );
        }
    }
    let step_fingerprints = steps
        .iter()
        .enumerate()
        .map(|(i, st)| {
            let texts: Vec<&str> = sources
                .iter()
                .filter(|s| s.index == i)
                .flat_map(|s| s.parts.iter().map(|(p, t, _)| [*p, t.as_str()]))
                .flatten()
                .collect();
            content_hash(&format!("{st:?}|{}", texts.join("|")))
        })
        .collect();
    Some(Sequence {
        id,
        name,
        path: doc.file.clone(),
        version: content_hash(&doc.src),
        mailbox,
        time_zone,
        window: window?,
        holidays,
        auto_reply_pause,
        enroll,
        steps,
        step_fingerprints,
        templates: Arc::new(templates),
    })
}

fn m_steps_first(root: &Node) -> Option<Node> {
    let Value::Map(pairs) = &root.value else { return None };
    pairs.iter().find_map(|(k, v)| match (&k.value, &v.value) {
        (Value::Scalar { text, .. }, Value::Seq(items)) if text == "steps" => items.first().cloned(),
        _ => None,
    })
}

fn read_defaults(m: &MapReader<'_>) -> BTreeMap<String, (String, Node)> {
    let doc = m.doc();
    let mut out = BTreeMap::new();
    let Some(n) = m.get("defaults") else { return out };
    let Value::Map(pairs) = &n.value else {
        doc.error(n, "`defaults` must be a mapping such as `lead.first_name: there`");
        return out;
    };
    for (k, v) in pairs {
        let (Some(key), Some(value)) = (
            scalar_text(doc, k, "a variable name"),
            scalar_text(doc, v, "a default value"),
        ) else {
            continue;
        };
        out.insert(key, (value, k.clone()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits() {
        assert_eq!(WaitSpec::parse("3 days"), Some(WaitSpec::Days(3)));
        assert_eq!(WaitSpec::parse("2 business days"), Some(WaitSpec::BusinessDays(2)));
        assert_eq!(WaitSpec::parse("4 hours"), Some(WaitSpec::Hours(4)));
        assert_eq!(WaitSpec::parse("1 day"), Some(WaitSpec::Days(1)));
        assert_eq!(WaitSpec::parse("soon"), None);
        assert_eq!(WaitSpec::parse("3 fortnights"), None);
    }

    fn errors(src: &str) -> String {
        match Sequence::from_str(Path::new("seq/trial.yaml"), src) {
            Ok(_) => panic!("accepted:\n{src}"),
            Err(d) => d.to_string(),
        }
    }

    const GOOD: &str = "name: T\nsteps:\n  - email:\n      subject: \"Hi {{ lead.first_name }}\"\n      body: |\n        Hello {{ lead.name }},\n        bye\n  - wait: 2 business days\n  - email: { reply_to_previous: true, body: \"again\" }\n";

    #[test]
    fn a_good_file_loads() {
        let s = Sequence::from_str(Path::new("seq/trial.yaml"), GOOD).unwrap_or_else(|d| panic!("{d}"));
        assert_eq!(s.id, "trial");
        assert_eq!(s.steps.len(), 3);
        assert_eq!(s.previous_email(2), Some(0));
        assert_eq!(s.version, content_hash(GOOD));
    }

    #[test]
    fn unknown_key_is_located() {
        let e = errors(&GOOD.replace("name: T", "name: T\nwindoww: {}"));
        assert!(e.contains("seq/trial.yaml:2:1: error: unknown key `windoww`"), "{e}");
        assert!(e.contains("did you mean `window`?"), "{e}");
    }

    #[test]
    fn bad_duration_is_located() {
        let e = errors(&GOOD.replace("2 business days", "2 fortnights"));
        assert!(
            e.contains("seq/trial.yaml:8:11: error: `2 fortnights` is not a wait"),
            "{e}"
        );
    }

    #[test]
    fn unknown_template_variable_is_located() {
        let e = errors(&GOOD.replace("{{ lead.name }}", "{{ lead.nmae }}"));
        assert!(
            e.contains("seq/trial.yaml:6:18: error: unknown template variable `lead.nmae` in step 1 body"),
            "{e}"
        );
        assert!(e.contains("did you mean `lead.name`?"), "{e}");
        let e = errors(&GOOD.replace("{{ lead.first_name }}", "{{ leed.first_name }}"));
        assert!(
            e.contains("seq/trial.yaml:4:23: error: unknown template variable `leed.first_name`"),
            "{e}"
        );
    }

    #[test]
    fn template_syntax_error_is_located() {
        let e = errors(&GOOD.replace("bye", "{% if lead.name %}bye"));
        assert!(e.contains("seq/trial.yaml:7:"), "{e}");
        assert!(e.contains("template syntax error in step 1 body"), "{e}");
    }

    #[test]
    fn bad_window_is_located() {
        let e = errors(&GOOD.replace("name: T", "name: T\nwindow: { start: \"17:00\", end: \"09:00\" }"));
        assert!(e.contains("seq/trial.yaml:2:"), "{e}");
        assert!(e.contains("the window ends (09:00) before it starts (17:00)"), "{e}");
        let e = errors(&GOOD.replace("name: T", "name: T\nwindow: { start: \"9am\", days: [mon, funday] }"));
        assert!(e.contains("`9am` is not a time of day"), "{e}");
        assert!(e.contains("`funday` is not a weekday"), "{e}");
    }

    #[test]
    fn attributes_need_a_default_or_a_declaration() {
        let src = GOOD.replace("bye", "{{ lead.plan }}");
        assert!(errors(&src).contains("unknown template variable `lead.plan`"));
        assert!(
            Sequence::from_str(
                Path::new("t.yaml"),
                &src.replace("name: T", "name: T\nattributes: [plan]")
            )
            .is_ok()
        );
        assert!(
            Sequence::from_str(
                Path::new("t.yaml"),
                &src.replace("name: T", "name: T\ndefaults: { lead.plan: basic }")
            )
            .is_ok()
        );
    }

    #[test]
    fn hash_changes_with_content() {
        assert_ne!(content_hash("a"), content_hash("b"));
        assert_eq!(content_hash("a").len(), 16);
    }
}
