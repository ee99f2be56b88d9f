//! Progress toward targets: per rep and goal, what was done in the period, the target, the
//! percentage, and the pace (where the rep should be by now, in business days).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use anyhow::{Result, bail};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Serialize;

use super::period::{PeriodBounds, business_days_left, elapsed_share, period_containing};
use crate::activity::ActivityKind;
use crate::config::{Config, RepConfig};
use crate::store::{RepGroup, Store};
use crate::targets::{Goal, Metric, PeriodKind, Targets};

/// Goals shown for a rep that has no target in the period: the numbers still matter.
const DEFAULT_GOALS: [&str; 6] = [
    "emails_sent",
    "replies_received",
    "meetings_booked",
    "meetings_held",
    "calls",
    "new_leads_contacted",
];

/// A period's `[start, end)`: reps whose periods have the same bounds are counted together.
type PeriodKey = (DateTime<Utc>, DateTime<Utc>);

/// Which reps a report covers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RepFilter {
    #[default]
    All,
    Rep(String),
    Team(String),
}

impl RepFilter {
    fn admits(&self, rep: &RepConfig) -> bool {
        match self {
            RepFilter::All => true,
            RepFilter::Rep(id) => rep.id == *id,
            RepFilter::Team(t) => rep.team.as_deref() == Some(t.as_str()),
        }
    }
}

/// One goal of one rep in one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GoalProgress {
    pub goal: String,
    pub done: i64,
    /// `None` when no target is set for this goal (the count is shown anyway).
    pub target: Option<i64>,
    /// done / target in percent (may pass 100).
    pub percent: Option<f64>,
    /// Where the rep should be by now: the target times the share of business time elapsed.
    pub expected: Option<f64>,
    /// True when done is at or above the expected number.
    pub on_pace: Option<bool>,
    /// What is left to do per business day after today to reach the target.
    pub needed_per_day: Option<f64>,
}

/// One rep's progress in one period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RepProgress {
    pub rep_id: String,
    pub name: String,
    pub team: Option<String>,
    pub time_zone: String,
    pub period: PeriodKind,
    pub first_day: NaiveDate,
    pub last_day: NaiveDate,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// Share of the period's business time elapsed, 0 to 1.
    pub elapsed: f64,
    pub business_days_left: u32,
    pub goals: Vec<GoalProgress>,
}

impl serde::Serialize for PeriodKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Turns a glob into a SQL `LIKE` pattern that matches at least what the glob matches (the
/// exact match is done afterwards in Rust).
fn glob_to_like(glob: &str) -> String {
    glob.to_lowercase().replace('*', "%").replace('?', "_")
}

/// Progress of every rep the filter admits, for the period of `kind` that holds `at`, with pace
/// measured at `now` (a period already over has all its time elapsed).
pub async fn progress(
    store: &Store,
    config: &Config,
    targets: &Targets,
    kind: PeriodKind,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
    filter: &RepFilter,
) -> Result<Vec<RepProgress>> {
    let reps: Vec<&RepConfig> = config.reps.iter().filter(|r| filter.admits(r)).collect();
    if reps.is_empty() {
        match filter {
            RepFilter::Rep(id) => bail!("no rep `{id}` in the config"),
            RepFilter::Team(t) => bail!("no rep is in team `{t}`"),
            RepFilter::All => return Ok(Vec::new()),
        }
    }
    // Reps in the same time zone share their period bounds: one set of queries per zone.
    let mut groups: BTreeMap<PeriodKey, (PeriodBounds, Vec<String>)> = BTreeMap::new();
    let mut bounds_of: HashMap<&str, PeriodBounds> = HashMap::new();
    for rep in &reps {
        let b = period_containing(kind, at, rep.time_zone, targets.week_start);
        bounds_of.insert(rep.id.as_str(), b);
        groups
            .entry((b.start, b.end))
            .or_insert_with(|| (b, Vec::new()))
            .1
            .push(rep.id.clone());
    }
    let mut kind_counts: HashMap<(String, String), i64> = HashMap::new();
    let mut first_contacts: HashMap<String, i64> = HashMap::new();
    let mut proposals: HashMap<String, i64> = HashMap::new();
    let subject_like: Vec<String> = targets
        .proposals
        .subject_patterns
        .iter()
        .map(|p| glob_to_like(p))
        .collect();
    let rep_groups: Vec<RepGroup<'_>> = groups
        .values()
        .map(|(b, ids)| RepGroup {
            reps: ids,
            from: b.start,
            to: b.end,
        })
        .collect();
    for c in store.count_for_reps(&rep_groups).await? {
        kind_counts.insert((c.rep_id, c.kind), c.count);
    }
    for (rep, n) in store.first_contacts_for_reps(&rep_groups).await? {
        first_contacts.insert(rep, n);
    }
    if !targets.proposals.is_empty() {
        for m in store.proposal_candidates(&rep_groups, &subject_like).await? {
            if targets.proposals.matches(m.subject.as_deref(), &m.attachments()) {
                *proposals.entry(m.rep_id.clone()).or_default() += 1;
            }
        }
    }

    let mut out = Vec::with_capacity(reps.len());
    for rep in reps {
        let b = bounds_of[rep.id.as_str()];
        let elapsed = elapsed_share(&b, now, rep.time_zone, &targets.business_days);
        let days_left = business_days_left(&b, now, rep.time_zone, &targets.business_days);
        let mut goals: Vec<(Goal, Option<i64>)> = targets
            .goals_for(rep, kind)
            .into_iter()
            .map(|(g, n)| (g, Some(n)))
            .collect();
        if goals.is_empty() {
            goals = DEFAULT_GOALS
                .iter()
                .filter_map(|n| Goal::parse(n))
                .map(|g| (g, None))
                .collect();
        }
        let goals = goals
            .into_iter()
            .map(|(goal, target)| {
                let done = match goal.metric {
                    Metric::Kind(k) => kind_counts
                        .get(&(rep.id.clone(), k.as_str().to_owned()))
                        .copied()
                        .unwrap_or(0),
                    Metric::NewLeadsContacted => first_contacts.get(&rep.id).copied().unwrap_or(0),
                    Metric::ProposalsSent => proposals.get(&rep.id).copied().unwrap_or(0),
                };
                goal_progress(goal.name, done, target, elapsed, days_left, now < b.end)
            })
            .collect();
        out.push(RepProgress {
            rep_id: rep.id.clone(),
            name: rep.name.clone(),
            team: rep.team.clone(),
            time_zone: rep.time_zone.name().to_owned(),
            period: kind,
            first_day: b.first_day,
            last_day: b.end_day - Duration::days(1),
            start: b.start,
            end: b.end,
            elapsed,
            business_days_left: days_left,
            goals,
        });
    }
    Ok(out)
}

fn goal_progress(
    goal: String,
    done: i64,
    target: Option<i64>,
    elapsed: f64,
    days_left: u32,
    running: bool,
) -> GoalProgress {
    let percent = target.filter(|t| *t > 0).map(|t| done as f64 * 100.0 / t as f64);
    let expected = target.map(|t| (t as f64 * elapsed * 10.0).round() / 10.0);
    let on_pace = expected.map(|e| done as f64 >= e.floor());
    let needed_per_day = target.and_then(|t| {
        let left = (t - done).max(0) as f64;
        (running && days_left > 0).then(|| (left / f64::from(days_left) * 10.0).round() / 10.0)
    });
    GoalProgress {
        goal,
        done,
        target,
        percent,
        expected,
        on_pace,
        needed_per_day,
    }
}

/// The kinds a goal name may count, for callers that count independently.
pub fn goal_kind(name: &str) -> Option<ActivityKind> {
    match Goal::parse(name)?.metric {
        Metric::Kind(k) => Some(k),
        _ => None,
    }
}

fn fmt_opt_i(v: Option<i64>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".into())
}

fn fmt_percent(v: Option<f64>) -> String {
    v.map(|p| format!("{p:.0}%")).unwrap_or_else(|| "-".into())
}

fn fmt_pace(g: &GoalProgress) -> String {
    match (g.expected, g.on_pace) {
        (Some(e), Some(true)) => format!("{e:.1} on pace"),
        (Some(e), Some(false)) => format!("{e:.1} behind"),
        _ => "-".into(),
    }
}

/// The report as an aligned text table, one line per rep and goal.
pub fn progress_table(rows: &[RepProgress]) -> String {
    let mut out = String::new();
    let header = ["REP", "PERIOD", "GOAL", "DONE", "TARGET", "PCT", "PACE", "LEFT/DAY"];
    let mut lines: Vec<[String; 8]> = Vec::new();
    for r in rows {
        for g in &r.goals {
            lines.push([
                r.rep_id.clone(),
                format!("{} {}..{}", r.period, r.first_day, r.last_day),
                g.goal.clone(),
                g.done.to_string(),
                fmt_opt_i(g.target),
                fmt_percent(g.percent),
                fmt_pace(g),
                g.needed_per_day
                    .map(|n| format!("{n:.1}"))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
    }
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for l in &lines {
        for (i, c) in l.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let numeric = [false, false, false, true, true, true, false, true];
    let mut push_row = |cells: Vec<&str>| {
        let mut line = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                line.push_str("  ");
            }
            if numeric[i] {
                let _ = write!(line, "{c:>w$}", w = widths[i]);
            } else {
                let _ = write!(line, "{c:<w$}", w = widths[i]);
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(header.to_vec());
    for l in &lines {
        push_row(l.iter().map(String::as_str).collect());
    }
    out
}

/// The report as CSV with a header row.
pub fn progress_csv(rows: &[RepProgress]) -> Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "rep",
        "team",
        "period",
        "first_day",
        "last_day",
        "goal",
        "done",
        "target",
        "percent",
        "expected",
        "on_pace",
        "needed_per_day",
    ])?;
    for r in rows {
        for g in &r.goals {
            w.write_record([
                r.rep_id.clone(),
                r.team.clone().unwrap_or_default(),
                r.period.to_string(),
                r.first_day.to_string(),
                r.last_day.to_string(),
                g.goal.clone(),
                g.done.to_string(),
                g.target.map(|t| t.to_string()).unwrap_or_default(),
                g.percent.map(|p| format!("{p:.1}")).unwrap_or_default(),
                g.expected.map(|e| format!("{e:.1}")).unwrap_or_default(),
                g.on_pace.map(|b| b.to_string()).unwrap_or_default(),
                g.needed_per_day.map(|n| format!("{n:.1}")).unwrap_or_default(),
            ])?;
        }
    }
    Ok(String::from_utf8(w.into_inner()?)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_and_percent() {
        let g = goal_progress("calls".into(), 3, Some(10), 0.5, 2, true);
        assert_eq!(g.percent, Some(30.0));
        assert_eq!(g.expected, Some(5.0));
        assert_eq!(g.on_pace, Some(false));
        assert_eq!(g.needed_per_day, Some(3.5));
        let g = goal_progress("calls".into(), 12, Some(10), 1.0, 0, false);
        assert_eq!((g.on_pace, g.needed_per_day), (Some(true), None));
        let g = goal_progress("calls".into(), 4, None, 0.3, 3, true);
        assert_eq!((g.percent, g.expected, g.on_pace), (None, None, None));
    }

    #[test]
    fn globs_become_wider_like_patterns() {
        assert_eq!(glob_to_like("*Proposal?*"), "%proposal_%");
    }
}
