//! Activity targets: what each rep (or every rep of a team) should do per day, week, month or
//! quarter, read from the targets file the config names (`targets_file`).
//!
//! ```yaml
//! week_start: monday            # first day of a week (default monday)
//! business_days: [mon, tue, wed, thu, fri]   # days pace counts (default Monday to Friday)
//! proposals:                    # what makes a sent mail a proposal
//!   subject_patterns: ["*proposal*", "*quote*"]
//!   attachment_patterns: ["*proposal*.pdf"]
//! targets:
//!   - team: nordics
//!     period: week
//!     goals: {emails_sent: 20, replies_received: 5}
//!   - rep: bob                  # a rep's own goal wins over their team's for the same period
//!     period: month
//!     goals: {calls: 30, new_leads_contacted: 10}
//! ```
//!
//! Like the config, loading collects every problem with file:line:column.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use chrono::Weekday;

use crate::activity::ActivityKind;
use crate::config::yaml::{Doc, MapReader, Node, Value, did_you_mean_hint};
use crate::config::{Config, ConfigError, RepConfig};

/// The length of a reporting period; periods are calendar-aligned in the rep's time zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PeriodKind {
    Day,
    Week,
    Month,
    Quarter,
}

impl PeriodKind {
    pub const ALL: [PeriodKind; 4] = [
        PeriodKind::Day,
        PeriodKind::Week,
        PeriodKind::Month,
        PeriodKind::Quarter,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PeriodKind::Day => "day",
            PeriodKind::Week => "week",
            PeriodKind::Month => "month",
            PeriodKind::Quarter => "quarter",
        }
    }
}

impl fmt::Display for PeriodKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for PeriodKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        PeriodKind::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| format!("unknown period `{s}` (use day, week, month or quarter)"))
    }
}

/// What a goal counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Activities of one kind.
    Kind(ActivityKind),
    /// Leads whose first outbound activity (by anyone) was this rep's, in the period.
    NewLeadsContacted,
    /// Sent mail that the proposal rules recognise.
    ProposalsSent,
}

/// The goal names a targets file may use, besides every activity kind's own name.
const NAMED_GOALS: [(&str, Metric); 9] = [
    ("emails_sent", Metric::Kind(ActivityKind::EmailSent)),
    ("replies_received", Metric::Kind(ActivityKind::ReplyReceived)),
    ("meetings_booked", Metric::Kind(ActivityKind::MeetingBooked)),
    ("meetings_held", Metric::Kind(ActivityKind::MeetingHeld)),
    ("calls", Metric::Kind(ActivityKind::Call)),
    ("visits", Metric::Kind(ActivityKind::Visit)),
    ("tasks_done", Metric::Kind(ActivityKind::Task)),
    ("new_leads_contacted", Metric::NewLeadsContacted),
    ("proposals_sent", Metric::ProposalsSent),
];

/// A goal by its name in the targets file (`emails_sent`, `calls`, `bounce`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Goal {
    pub name: String,
    pub metric: Metric,
}

impl Goal {
    pub fn parse(name: &str) -> Option<Goal> {
        let metric = NAMED_GOALS
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| *m)
            .or_else(|| name.parse::<ActivityKind>().ok().map(Metric::Kind))?;
        Some(Goal {
            name: name.to_owned(),
            metric,
        })
    }

    /// Every name `parse` accepts, for hints.
    pub fn known_names() -> Vec<&'static str> {
        NAMED_GOALS
            .iter()
            .map(|(n, _)| *n)
            .chain(ActivityKind::ALL.iter().map(|k| k.as_str()))
            .collect()
    }
}

/// Who a target applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Team(String),
    Rep(String),
}

/// One entry of the `targets:` list.
#[derive(Debug, Clone, PartialEq)]
pub struct TargetRule {
    pub scope: Scope,
    pub period: PeriodKind,
    /// Goal and the number to reach in one period, in file order.
    pub goals: Vec<(Goal, i64)>,
}

/// Which sent mail counts as a proposal. Patterns are globs (`*` any run, `?` one character),
/// matched case-insensitively against the whole subject or attachment file name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProposalRules {
    pub subject_patterns: Vec<String>,
    pub attachment_patterns: Vec<String>,
}

impl ProposalRules {
    pub fn is_empty(&self) -> bool {
        self.subject_patterns.is_empty() && self.attachment_patterns.is_empty()
    }

    /// True when a sent mail with this subject and these attachment names is a proposal.
    pub fn matches(&self, subject: Option<&str>, attachments: &[String]) -> bool {
        subject.is_some_and(|s| self.subject_patterns.iter().any(|p| glob_match(p, s)))
            || attachments
                .iter()
                .any(|a| self.attachment_patterns.iter().any(|p| glob_match(p, a)))
    }
}

/// Case-insensitive glob match of the whole text: `*` matches any run, `?` one character.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    // Classic two-pointer wildcard match with backtracking to the last star.
    let (mut pi, mut ti) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

/// The whole targets file.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    pub path: Option<PathBuf>,
    pub week_start: Weekday,
    /// Days that count for pace; weekends and other days off are skipped.
    pub business_days: Vec<Weekday>,
    pub proposals: ProposalRules,
    pub rules: Vec<TargetRule>,
}

impl Default for Targets {
    fn default() -> Self {
        Targets {
            path: None,
            week_start: Weekday::Mon,
            business_days: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri],
            proposals: ProposalRules::default(),
            rules: Vec::new(),
        }
    }
}

impl Targets {
    /// The targets file named by the config, or no targets at all when it names none.
    pub fn for_config(config: &Config) -> Result<Targets, ConfigError> {
        match &config.targets_file {
            Some(path) => Targets::load(path, config),
            None => Ok(Targets::default()),
        }
    }

    /// Reads and validates a targets file; reps and teams must exist in `config`.
    pub fn load(path: &Path, config: &Config) -> Result<Targets, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Targets::from_str(path, &src, config)
    }

    /// Validates targets text as if read from `path`.
    pub fn from_str(path: &Path, src: &str, config: &Config) -> Result<Targets, ConfigError> {
        let doc = Doc::new(path, src);
        let targets = doc.parse().and_then(|root| read_targets(&doc, &root, config));
        if doc.has_errors() {
            return Err(ConfigError::Invalid(doc.into_diagnostics()));
        }
        targets
            .map(|mut t| {
                t.path = Some(path.to_path_buf());
                t
            })
            .ok_or_else(|| ConfigError::Invalid(doc.into_diagnostics()))
    }

    /// The goals of `rep` for one period: the team's, overridden goal by goal by the rep's own.
    pub fn goals_for(&self, rep: &RepConfig, period: PeriodKind) -> Vec<(Goal, i64)> {
        let mut out: Vec<(Goal, i64)> = Vec::new();
        let applies = |scope: &Scope| match scope {
            Scope::Team(t) => rep.team.as_deref() == Some(t.as_str()),
            Scope::Rep(r) => *r == rep.id,
        };
        // Team rules first, then rep rules, so that a rep's goal replaces the team's.
        let team_rules = self.rules.iter().filter(|r| matches!(r.scope, Scope::Team(_)));
        let rep_rules = self.rules.iter().filter(|r| matches!(r.scope, Scope::Rep(_)));
        for rule in team_rules.chain(rep_rules) {
            if rule.period != period || !applies(&rule.scope) {
                continue;
            }
            for (goal, n) in &rule.goals {
                match out.iter_mut().find(|(g, _)| g.name == goal.name) {
                    Some(slot) => slot.1 = *n,
                    None => out.push((goal.clone(), *n)),
                }
            }
        }
        out
    }

    /// Periods for which any target exists, shortest first.
    pub fn periods(&self) -> Vec<PeriodKind> {
        let mut p: Vec<PeriodKind> = self.rules.iter().map(|r| r.period).collect();
        p.sort();
        p.dedup();
        p
    }
}

fn parse_weekday(s: &str) -> Option<Weekday> {
    match s.to_ascii_lowercase().as_str() {
        "mon" | "monday" => Some(Weekday::Mon),
        "tue" | "tuesday" => Some(Weekday::Tue),
        "wed" | "wednesday" => Some(Weekday::Wed),
        "thu" | "thursday" => Some(Weekday::Thu),
        "fri" | "friday" => Some(Weekday::Fri),
        "sat" | "saturday" => Some(Weekday::Sat),
        "sun" | "sunday" => Some(Weekday::Sun),
        _ => None,
    }
}

fn read_weekday(doc: &Doc, node: &Node) -> Option<Weekday> {
    let s: String = doc.read(node)?;
    let day = parse_weekday(&s);
    if day.is_none() {
        doc.error_hint(
            node,
            format!("`{s}` is not a day of the week"),
            "use monday … sunday (or mon … sun)",
        );
    }
    day
}

fn read_patterns(m: &MapReader<'_>, key: &'static str) -> Vec<String> {
    let patterns: Vec<String> = m.opt(key).unwrap_or_default();
    if let Some(node) = m.get(key) {
        for p in &patterns {
            if p.trim().is_empty() {
                m.doc().error(node, format!("empty pattern in `{key}`"));
            }
        }
    }
    patterns
}

fn read_targets(doc: &Doc, root: &Node, config: &Config) -> Option<Targets> {
    if matches!(root.value, Value::Null) {
        return Some(Targets::default());
    }
    let m = doc.map(root, "the targets file")?;
    let defaults = Targets::default();
    let week_start = m
        .get("week_start")
        .and_then(|n| read_weekday(doc, n))
        .unwrap_or(Weekday::Mon);
    let business_days = match m.get("business_days") {
        None => defaults.business_days.clone(),
        Some(n) => match &n.value {
            Value::Seq(items) => {
                let days: Vec<Weekday> = items.iter().filter_map(|i| read_weekday(doc, i)).collect();
                if days.is_empty() {
                    doc.error(n, "`business_days` needs at least one day");
                }
                days
            }
            _ => {
                doc.error(
                    n,
                    "`business_days` must be a list of days, e.g. [mon, tue, wed, thu, fri]",
                );
                defaults.business_days.clone()
            }
        },
    };
    let proposals = match m.get("proposals") {
        None => ProposalRules::default(),
        Some(n) => match doc.map(n, "`proposals`") {
            Some(pm) => {
                let rules = ProposalRules {
                    subject_patterns: read_patterns(&pm, "subject_patterns"),
                    attachment_patterns: read_patterns(&pm, "attachment_patterns"),
                };
                pm.finish();
                rules
            }
            None => ProposalRules::default(),
        },
    };
    let rules = match m.get("targets") {
        None => Vec::new(),
        Some(n) => match &n.value {
            Value::Seq(items) => items.iter().filter_map(|i| read_rule(doc, i, config)).collect(),
            _ => {
                doc.error(n, "`targets` must be a list (each entry starting with `- `)");
                Vec::new()
            }
        },
    };
    m.finish();
    if rules
        .iter()
        .any(|r| r.goals.iter().any(|(g, _)| g.metric == Metric::ProposalsSent))
        && proposals.is_empty()
    {
        doc.error_hint(
            root,
            "a `proposals_sent` goal is set but no proposal rules are",
            "add `proposals:` with `subject_patterns` and/or `attachment_patterns`",
        );
    }
    Some(Targets {
        path: None,
        week_start,
        business_days,
        proposals,
        rules,
    })
}

fn read_rule(doc: &Doc, node: &Node, config: &Config) -> Option<TargetRule> {
    let m = doc.map(node, "a target")?;
    let team: Option<String> = m.opt("team");
    let rep: Option<String> = m.opt("rep");
    let scope = match (team, rep) {
        (Some(t), None) => {
            let teams: Vec<&str> = config.reps.iter().filter_map(|r| r.team.as_deref()).collect();
            if !teams.contains(&t.as_str()) {
                let hint = did_you_mean_hint(&t, teams.iter().copied())
                    .unwrap_or_else(|| "set `team:` on the reps in the config".into());
                doc.error_hint(m.get("team").unwrap_or(node), format!("no rep is in team `{t}`"), hint);
            }
            Some(Scope::Team(t))
        }
        (None, Some(r)) => {
            if config.rep(&r).is_none() {
                let hint = did_you_mean_hint(&r, config.reps.iter().map(|r| r.id.as_str()))
                    .unwrap_or_else(|| "use a rep id from the config".into());
                doc.error_hint(m.get("rep").unwrap_or(node), format!("unknown rep `{r}`"), hint);
            }
            Some(Scope::Rep(r))
        }
        _ => {
            doc.error(node, "a target needs exactly one of `team` or `rep`");
            None
        }
    };
    let period = match m.get("period") {
        None => {
            doc.error(node, "missing required key `period` (day, week, month or quarter)");
            None
        }
        Some(n) => {
            let s: String = doc.read(n)?;
            match s.parse::<PeriodKind>() {
                Ok(p) => Some(p),
                Err(e) => {
                    doc.error(n, e);
                    None
                }
            }
        }
    };
    let goals = match m.get("goals") {
        None => {
            doc.error(node, "missing required key `goals` (e.g. `goals: {emails_sent: 20}`)");
            None
        }
        Some(n) => match &n.value {
            Value::Map(pairs) => {
                let mut goals = Vec::new();
                for (k, v) in pairs {
                    let name: Option<String> = doc.read(k);
                    let Some(name) = name else { continue };
                    let Some(goal) = Goal::parse(&name) else {
                        let known = Goal::known_names();
                        let hint = did_you_mean_hint(&name, known.iter().copied())
                            .unwrap_or_else(|| format!("use one of: {}", known.join(", ")));
                        doc.error_hint(k, format!("unknown goal `{name}`"), hint);
                        continue;
                    };
                    if goals.iter().any(|(g, _): &(Goal, i64)| g.name == name) {
                        doc.error(k, format!("goal `{name}` is given twice"));
                        continue;
                    }
                    let target: Option<i64> = doc.read(v);
                    match target {
                        Some(t) if t >= 0 => goals.push((goal, t)),
                        Some(t) => doc.error(v, format!("a goal must be 0 or more, found {t}")),
                        None => {}
                    }
                }
                Some(goals)
            }
            _ => {
                doc.error(n, "`goals` must be a mapping of goal name to number");
                None
            }
        },
    };
    m.finish();
    Some(TargetRule {
        scope: scope?,
        period: period?,
        goals: goals?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_str(
            Path::new("c.yaml"),
            "internal_domains: [example.com]\nreps:\n  - {id: alice, name: A, email: alice@example.com, team: nordics}\n  - {id: bob, name: B, email: bob@example.com, team: americas}\n",
        )
        .unwrap()
    }

    #[test]
    fn rep_goals_override_team_goals() {
        let src = "week_start: sunday\ntargets:\n  - team: nordics\n    period: week\n    goals: {emails_sent: 20, calls: 5}\n  - rep: alice\n    period: week\n    goals: {calls: 8}\n  - rep: alice\n    period: month\n    goals: {visit: 2}\n";
        let t = Targets::from_str(Path::new("t.yaml"), src, &config()).unwrap();
        assert_eq!(t.week_start, Weekday::Sun);
        let c = config();
        let alice = c.rep("alice").unwrap();
        let week: Vec<(String, i64)> = t
            .goals_for(alice, PeriodKind::Week)
            .into_iter()
            .map(|(g, n)| (g.name, n))
            .collect();
        assert_eq!(week, vec![("emails_sent".into(), 20), ("calls".into(), 8)]);
        let month = t.goals_for(alice, PeriodKind::Month);
        assert_eq!(month[0].0.metric, Metric::Kind(ActivityKind::Visit));
        assert!(t.goals_for(c.rep("bob").unwrap(), PeriodKind::Week).is_empty());
        assert_eq!(t.periods(), vec![PeriodKind::Week, PeriodKind::Month]);
    }

    #[test]
    fn every_mistake_is_located() {
        let src = "targets:\n  - team: nordix\n    period: fortnight\n    goals: {emails_snt: 3, calls: -1}\n  - rep: zed\n    period: week\n    goals: {calls: 1}\n";
        let err = Targets::from_str(Path::new("t.yaml"), src, &config()).unwrap_err();
        let text = err.to_string();
        for want in [
            "t.yaml:2:11: error: no rep is in team `nordix`",
            "t.yaml:3:13: error: unknown period `fortnight`",
            "t.yaml:4:13: error: unknown goal `emails_snt`",
            "emails_sent",
            "t.yaml:4:35: error: a goal must be 0 or more",
            "t.yaml:5:10: error: unknown rep `zed`",
        ] {
            assert!(text.contains(want), "missing {want:?} in\n{text}");
        }
    }

    #[test]
    fn proposals_need_rules() {
        let src = "targets:\n  - rep: bob\n    period: month\n    goals: {proposals_sent: 4}\n";
        let err = Targets::from_str(Path::new("t.yaml"), src, &config()).unwrap_err();
        assert!(err.to_string().contains("no proposal rules"), "{err}");
    }

    #[test]
    fn globs_match_whole_names_case_insensitively() {
        assert!(glob_match("*proposal*.pdf", "ACME-Proposal-v2.PDF"));
        assert!(!glob_match("*proposal*.pdf", "proposal.docx"));
        assert!(glob_match("quote ?", "Quote 7"));
        assert!(glob_match("*", ""));
        assert!(!glob_match("a*b", "acbd"));
        let rules = ProposalRules {
            subject_patterns: vec!["*proposal*".into()],
            attachment_patterns: vec!["*offer*.pdf".into()],
        };
        assert!(rules.matches(Some("Our proposal for Q1"), &[]));
        assert!(rules.matches(Some("Hello"), &["Offer_2026.pdf".into()]));
        assert!(!rules.matches(None, &["notes.txt".into()]));
    }
}
