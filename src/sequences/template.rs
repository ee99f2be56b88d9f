//! Step templates (minijinja, strict): checked when a sequence file is read so that a misspelt
//! variable or a syntax error is reported with file:line:column by `rapport check`, before
//! anything is sent; rendered per lead, where a missing value without a `default` skips the
//! lead with a reason.
//!
//! Variables: `lead.*` (email, name, first_name, last_name, company, status, time_zone, and
//! every imported attribute by its column name), `rep.*` (id, name, first_name, email, team),
//! `company.*` (name, domain), `sequence.name`, `unsubscribe_url`. Filters besides
//! minijinja's own: `first_name` (first word of a name) and `date(format)`.

use std::collections::{BTreeMap, BTreeSet};

use minijinja::{Environment, UndefinedBehavior, Value as JValue};
use serde_json::{Map, Value};

use crate::config::yaml::{Doc, Node};
use crate::config::{Diagnostic, Pos};

const LEAD_FIELDS: &[&str] = &[
    "email",
    "name",
    "first_name",
    "last_name",
    "company",
    "status",
    "time_zone",
    "owner",
];
const REP_FIELDS: &[&str] = &["id", "name", "first_name", "email", "team"];
const COMPANY_FIELDS: &[&str] = &["name", "domain"];
const ROOTS: &[&str] = &["lead", "rep", "company", "sequence", "unsubscribe_url"];

/// The compiled templates of one sequence and its per-variable defaults.
pub struct Templates {
    env: Environment<'static>,
    /// `lead.first_name` → `there`: used when the lead has no value.
    defaults: BTreeMap<String, String>,
    /// Lead attributes the templates use (beyond the built-in fields).
    pub attributes: BTreeSet<String>,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("defaults", &self.defaults)
            .field("attributes", &self.attributes)
            .finish()
    }
}

/// The first word of a name: `Sara Lind` → `Sara`.
pub fn first_name(name: &str) -> String {
    name.split_whitespace().next().unwrap_or_default().to_owned()
}

fn date_filter(value: String, format: Option<String>) -> Result<String, minijinja::Error> {
    let fmt = format.unwrap_or_else(|| "%Y-%m-%d".into());
    let parsed = chrono::DateTime::parse_from_rfc3339(&value)
        .map(|d| d.naive_local())
        .or_else(|_| chrono::NaiveDate::parse_from_str(&value, "%Y-%m-%d").map(|d| d.and_time(chrono::NaiveTime::MIN)))
        .map_err(|_| {
            minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("`{value}` is not a date"),
            )
        })?;
    Ok(parsed.format(&fmt).to_string())
}

impl Templates {
    /// `attributes`: lead attributes the sequence declares as required (no default).
    pub fn new(defaults: BTreeMap<String, String>, attributes: BTreeSet<String>) -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_debug(true);
        env.set_keep_trailing_newline(true);
        env.add_filter("first_name", |s: String| first_name(&s));
        env.add_filter("date", date_filter);
        Templates {
            env,
            defaults,
            attributes,
        }
    }

    fn name(step: usize, part: &str) -> String {
        format!("step{}.{part}", step + 1)
    }

    /// Whether step `step` has a template for `part` (subject, body, html, task).
    pub fn has(&self, step: usize, part: &str) -> bool {
        self.env.get_template(&Self::name(step, part)).is_ok()
    }

    /// Renders one part for a context made by [`context`]. The error names the missing value.
    pub fn render(&self, step: usize, part: &str, ctx: &Value) -> anyhow::Result<String> {
        let t = self
            .env
            .get_template(&Self::name(step, part))
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        t.render(JValue::from_serialize(ctx))
            .map_err(|e| anyhow::anyhow!("step {} {part}: {}", step + 1, e.detail().unwrap_or("cannot render")))
    }

    /// Fills values a lead lacks from the sequence's `defaults`.
    pub fn apply_defaults(&self, ctx: &mut Value) {
        for (path, default) in &self.defaults {
            let Some((root, field)) = path.split_once('.') else {
                continue;
            };
            let Some(obj) = ctx.get_mut(root).and_then(Value::as_object_mut) else {
                continue;
            };
            let missing = match obj.get(field) {
                None | Some(Value::Null) => true,
                Some(Value::String(s)) => s.trim().is_empty(),
                _ => false,
            };
            if missing {
                obj.insert(field.to_owned(), Value::String(default.clone()));
            }
        }
    }
}

/// Maps a position inside a template (1-based line, 0-based byte column) to the YAML file.
fn file_pos(doc: &Doc, node: &Node, template: &str, line: usize, col: usize) -> Pos {
    let tline = template.lines().nth(line.saturating_sub(1)).unwrap_or_default();
    let file_lines: Vec<&str> = doc.src.lines().collect();
    // Block scalars (`|`, `>`) start on the line after the key; flow scalars on the key's line.
    let start = node.pos.line.saturating_sub(1);
    let block = file_lines.get(start).is_some_and(|l| {
        l.trim_end().ends_with('|') || l.trim_end().ends_with('>') || l.contains("|-") || l.contains(">-")
    });
    let guess = start + line.saturating_sub(1) + usize::from(block);
    let probe = |i: usize| -> Option<(usize, usize)> {
        let fl = file_lines.get(i)?;
        let at = if tline.trim().is_empty() {
            None
        } else {
            fl.find(tline.trim_start())
        }?;
        let lead_ws = tline.len() - tline.trim_start().len();
        Some((
            i + 1,
            fl[..at].chars().count() + 1 + tline[..col.min(tline.len())].chars().count() - lead_ws.min(col),
        ))
    };
    if let Some((l, c)) = probe(guess).or_else(|| (start..file_lines.len()).find_map(probe)) {
        return Pos { line: l, column: c };
    }
    node.pos
}

/// Byte offset → (1-based line, 0-based byte column).
fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let before = &src[..offset.min(src.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| before.len() - i - 1).unwrap_or(before.len());
    (line, col)
}

/// Compiles one template and checks its variables; the error is located in the YAML file.
pub(crate) fn check_template(
    doc: &Doc,
    templates: &mut Templates,
    step: usize,
    part: &str,
    text: &str,
    node: &Node,
) -> Result<(), Diagnostic> {
    if let Err(e) = templates
        .env
        .add_template_owned(Templates::name(step, part), text.to_owned())
    {
        let (line, col) = match e.range() {
            Some(r) => line_col(text, r.start),
            None => (e.line().unwrap_or(1), 0),
        };
        let pos = file_pos(doc, node, text, line, col);
        let what = e.detail().map(str::to_owned).unwrap_or_else(|| e.kind().to_string());
        return Err(doc
            .diag(
                pos,
                format!("template syntax error in step {} {part}: {what}", step + 1),
            )
            .with_hint("minijinja syntax: {{ lead.first_name }}, {% if ... %}...{% endif %}"));
    }
    let vars = templates
        .env
        .get_template(&Templates::name(step, part))
        .map(|t| t.undeclared_variables(true))
        .unwrap_or_default();
    let mut vars: Vec<String> = vars.into_iter().collect();
    vars.sort();
    for var in vars {
        let mut it = var.splitn(2, '.');
        let root = it.next().unwrap_or_default();
        let field = it.next();
        let problem = match (root, field) {
            ("lead", Some(f)) if !LEAD_FIELDS.contains(&f) => {
                // An imported attribute: fine when the sequence declares it (a default, or
                // listed as required); a typo of a built-in field is reported.
                if templates.defaults.contains_key(&var) || templates.attributes.contains(f) {
                    None
                } else if let Some(s) = crate::config::diagnostic::did_you_mean(f, LEAD_FIELDS.iter().copied()) {
                    Some(format!("did you mean `lead.{s}`?"))
                } else {
                    Some(format!(
                        "lead fields are {}; for an imported attribute list it under `attributes:` or give it a default under `defaults:` (`lead.{f}: ...`)",
                        LEAD_FIELDS.join(", ")
                    ))
                }
            }
            ("rep", Some(f)) if !REP_FIELDS.contains(&f) => Some(format!("rep fields are {}", REP_FIELDS.join(", "))),
            ("company", Some(f)) if !COMPANY_FIELDS.contains(&f) => {
                Some(format!("company fields are {}", COMPANY_FIELDS.join(", ")))
            }
            ("sequence", Some(f)) if f != "name" => Some("the only sequence field is `name`".into()),
            (r, _) if !ROOTS.contains(&r) => Some(
                crate::config::diagnostic::did_you_mean(r, ROOTS.iter().copied())
                    .map(|s| format!("did you mean `{s}`?"))
                    .unwrap_or_else(|| format!("variables start with {}", ROOTS.join(", "))),
            ),
            _ => None,
        };
        if let Some(hint) = problem {
            let offset = text.find(&var).or_else(|| text.find(root)).unwrap_or(0);
            let (line, col) = line_col(text, offset);
            let pos = file_pos(doc, node, text, line, col);
            return Err(doc
                .diag(
                    pos,
                    format!("unknown template variable `{var}` in step {} {part}", step + 1),
                )
                .with_hint(hint));
        }
    }
    Ok(())
}

/// What a template can see about one lead, its rep and company.
pub struct ContextParts<'a> {
    pub lead_email: &'a str,
    pub lead_name: Option<&'a str>,
    pub lead_status: &'a str,
    pub lead_time_zone: Option<&'a str>,
    pub lead_owner: Option<&'a str>,
    pub attributes: &'a Value,
    pub company_name: Option<&'a str>,
    pub company_domain: Option<&'a str>,
    pub rep_id: &'a str,
    pub rep_name: &'a str,
    pub rep_email: &'a str,
    pub rep_team: Option<&'a str>,
    pub sequence_name: &'a str,
    pub unsubscribe_url: &'a str,
}

/// Builds the render context; absent values are left out so strict rendering reports them.
pub fn context(p: &ContextParts<'_>) -> Value {
    let mut lead = Map::new();
    if let Some(attrs) = p.attributes.as_object() {
        for (k, v) in attrs {
            if !(v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty())) {
                lead.insert(k.clone(), v.clone());
            }
        }
    }
    let set = |m: &mut Map<String, Value>, k: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
            m.insert(k.to_owned(), Value::String(v.to_owned()));
        }
    };
    set(&mut lead, "email", Some(p.lead_email));
    set(&mut lead, "name", p.lead_name);
    if let Some(n) = p.lead_name {
        let first = first_name(n);
        set(&mut lead, "first_name", Some(&first));
        let last = n.split_whitespace().skip(1).collect::<Vec<_>>().join(" ");
        set(&mut lead, "last_name", Some(&last));
    }
    set(&mut lead, "company", p.company_name.or(p.company_domain));
    set(&mut lead, "status", Some(p.lead_status));
    set(&mut lead, "time_zone", p.lead_time_zone);
    set(&mut lead, "owner", p.lead_owner);
    let mut rep = Map::new();
    set(&mut rep, "id", Some(p.rep_id));
    set(&mut rep, "name", Some(p.rep_name));
    set(&mut rep, "first_name", Some(&first_name(p.rep_name)));
    set(&mut rep, "email", Some(p.rep_email));
    set(&mut rep, "team", p.rep_team);
    let mut company = Map::new();
    set(&mut company, "name", p.company_name.or(p.company_domain));
    set(&mut company, "domain", p.company_domain);
    serde_json::json!({
        "lead": lead,
        "rep": rep,
        "company": company,
        "sequence": { "name": p.sequence_name },
        "unsubscribe_url": p.unsubscribe_url,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_names() {
        assert_eq!(first_name("Sara Lind"), "Sara");
        assert_eq!(first_name(""), "");
    }

    #[test]
    fn dates_format() {
        assert_eq!(
            date_filter("2026-11-02".into(), Some("%d.%m.%Y".into())).unwrap(),
            "02.11.2026"
        );
        assert!(date_filter("soon".into(), None).is_err());
    }
}
