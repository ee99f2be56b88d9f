//! The `rapport enroll`, `unenroll` and `sequences …` commands: each returns its text so
//! tests can check it without a terminal.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;

use anyhow::{Context, Result, bail};
use chrono::Duration;

use super::definition::Step;
use super::engine::{Engine, EnrollResult};
use crate::address;

/// Enrolls one lead or every lead of a CSV file (an `email` column). Returns the report and
/// whether any row was refused.
pub async fn enroll(engine: &Engine, sequence: &str, lead: Option<&str>, csv: Option<&Path>) -> Result<(String, bool)> {
    let mut out = String::new();
    let mut refused = false;
    let mut targets: Vec<(String, String)> = Vec::new();
    match (lead, csv) {
        (Some(l), None) => targets.push((l.to_owned(), l.to_owned())),
        (None, Some(file)) => {
            let mut rdr = csv::ReaderBuilder::new()
                .flexible(true)
                .from_path(file)
                .with_context(|| format!("opening {}", file.display()))?;
            let headers = rdr
                .headers()
                .with_context(|| format!("{}: row 1: cannot read the header", file.display()))?;
            let Some(col) = headers.iter().position(|h| h.trim().eq_ignore_ascii_case("email")) else {
                bail!("{}: row 1: no `email` column", file.display());
            };
            for (i, rec) in rdr.records().enumerate() {
                let row = i + 2;
                match rec {
                    Ok(r) => match r.get(col).map(str::trim).filter(|s| !s.is_empty()) {
                        Some(e) => match address::normalize(e) {
                            Ok(a) => targets.push((format!("row {row}"), a)),
                            Err(err) => {
                                refused = true;
                                let _ = writeln!(out, "{}: row {row}: invalid email `{e}`: {err}", file.display());
                            }
                        },
                        None => {
                            refused = true;
                            let _ = writeln!(out, "{}: row {row}: empty email", file.display());
                        }
                    },
                    Err(err) => {
                        refused = true;
                        let _ = writeln!(out, "{}: row {row}: {err}", file.display());
                    }
                }
            }
        }
        _ => bail!("give either --lead EMAIL or --csv FILE"),
    }
    let (mut ok, mut already) = (0, 0);
    for (label, email) in targets {
        match engine.enroll(sequence, &email).await? {
            EnrollResult::Enrolled { first_due, .. } => {
                ok += 1;
                if lead.is_some() {
                    let _ = writeln!(
                        out,
                        "{email}: enrolled in {sequence}, first step due {}",
                        first_due.to_rfc3339()
                    );
                }
            }
            EnrollResult::AlreadyEnrolled => {
                already += 1;
                let _ = writeln!(out, "{label}: {email} is already in {sequence}");
            }
            EnrollResult::Refused(why) => {
                refused = true;
                let _ = writeln!(out, "{label}: {email} not enrolled: {why}");
            }
        }
    }
    let _ = writeln!(out, "{ok} enrolled, {already} already enrolled");
    Ok((out, refused))
}

pub async fn unenroll(engine: &Engine, sequence: Option<&str>, email: &str) -> Result<String> {
    let Some(lead) = engine.store.lead_by_email(email).await? else {
        bail!("no lead with address {email}");
    };
    let n = engine.store.unenroll(lead.id, sequence, "unenrolled").await?;
    Ok(format!("{email}: {n} enrollment(s) stopped\n"))
}

pub async fn list(engine: &Engine) -> Result<String> {
    let counts = engine.store.enrollment_counts().await?;
    let mut out = String::new();
    let _ = writeln!(out, "{:<28} {:<18} {:>5}  ENROLLMENTS", "SEQUENCE", "VERSION", "STEPS");
    let mut ids: Vec<&String> = engine.sequences.keys().collect();
    ids.sort();
    for id in ids {
        let s = &engine.sequences[id];
        let by_state: Vec<String> = counts
            .iter()
            .filter(|(sid, _, _)| sid == id)
            .map(|(_, st, n)| format!("{n} {st}"))
            .collect();
        let _ = writeln!(
            out,
            "{:<28} {:<18} {:>5}  {}",
            id,
            s.version,
            s.steps.len(),
            if by_state.is_empty() {
                "none".into()
            } else {
                by_state.join(", ")
            }
        );
    }
    Ok(out)
}

pub async fn status(engine: &Engine, sequence: Option<&str>) -> Result<String> {
    let mut out = String::new();
    let rows = engine.store.enrollments(sequence, None).await?;
    let _ = writeln!(
        out,
        "{:<8} {:<24} {:<8} {:<10} {:>4}  {:<25} REASON",
        "ID", "SEQUENCE", "LEAD", "STATE", "STEP", "NEXT DUE"
    );
    for e in rows.iter().take(500) {
        let _ = writeln!(
            out,
            "{:<8} {:<24} {:<8} {:<10} {:>4}  {:<25} {}",
            e.id,
            e.sequence_id,
            e.lead_id,
            e.state,
            e.next_step + 1,
            e.next_due_at.map(|t| t.to_rfc3339()).unwrap_or_else(|| "-".into()),
            e.stop_reason.clone().unwrap_or_default()
        );
    }
    let unknown = engine.store.outbox_in_state(None, "unknown").await?;
    for r in unknown {
        let _ = writeln!(
            out,
            "delivery unknown after a crash: <{}> to {} (mailbox {})",
            r.message_id, r.recipient, r.mailbox_id
        );
    }
    Ok(out)
}

/// Renders every step for a lead and says when each would go out; sends nothing.
pub async fn preview(engine: &Engine, sequence: &str, email: &str) -> Result<String> {
    let Some(seq) = engine.sequences.get(sequence) else {
        bail!("no sequence `{sequence}`");
    };
    let Some(lead) = engine.store.lead_by_email(email).await? else {
        bail!("no lead with address {email}");
    };
    let lead = engine.store.lead_for_sending(lead.id).await?.context("lead vanished")?;
    let mut out = String::new();
    let (rep, mailbox) = match engine.sender_for(seq, &lead) {
        Ok((r, m)) => (Some(r), m),
        Err(why) => {
            let _ = writeln!(out, "note: {why}");
            (None, "no mailbox".to_owned())
        }
    };
    let cal = engine.calendar(seq, &lead, rep);
    let ctx = engine.render_context(seq, &lead, rep, 0);
    let _ = writeln!(
        out,
        "{} ({}) for {} via {mailbox}, times in {}",
        seq.name,
        seq.version,
        lead.email,
        cal.tz.name()
    );
    let mut t = cal.next_send_time(engine.store.now(), lead.id as u64);
    let mut last_subject: Option<String> = None;
    for (i, s) in seq.steps.iter().enumerate() {
        let when = t.with_timezone(&cal.tz).format("%a %Y-%m-%d %H:%M %Z");
        match s {
            Step::Wait(w) => {
                t = cal.next_send_time(cal.after_wait(t, *w), lead.id as u64 ^ i as u64);
                let _ = writeln!(out, "\nstep {}: wait {w:?}", i + 1);
            }
            Step::Task => {
                let text = seq
                    .templates
                    .render(i, "task", &ctx)
                    .unwrap_or_else(|e| format!("(cannot render: {e:#})"));
                let _ = writeln!(out, "\nstep {}: task at {when}: {text}", i + 1);
            }
            Step::Email { reply_to_previous, .. } => {
                match engine.render_email(seq, i, *reply_to_previous, last_subject.as_deref(), &ctx) {
                    Ok((subject, text, html)) => {
                        let _ = writeln!(out, "\nstep {}: email at {when}\nSubject: {subject}\n\n{text}", i + 1);
                        if html.is_some() {
                            let _ = writeln!(out, "(with an HTML part)");
                        }
                        last_subject = Some(subject);
                    }
                    Err(e) => {
                        let _ = writeln!(
                            out,
                            "\nstep {}: email at {when}: this lead would be skipped: {e:#}",
                            i + 1
                        );
                    }
                }
            }
        }
    }
    Ok(out)
}

/// What would go out in the next `days` days, per mailbox and day, against the daily cap.
pub async fn upcoming(engine: &Engine, days: i64) -> Result<String> {
    let now = engine.store.now();
    let due = engine.store.due_before(now + Duration::days(days)).await?;
    let mut per: BTreeMap<(String, String), usize> = BTreeMap::new();
    for e in &due {
        let mb = e.mailbox_id.clone().unwrap_or_default();
        let tz = engine
            .config
            .mailbox_owner(&mb)
            .map(|r| r.time_zone)
            .unwrap_or(chrono_tz::Tz::UTC);
        let day = e
            .next_due_at
            .unwrap_or(now)
            .max(now)
            .with_timezone(&tz)
            .format("%Y-%m-%d")
            .to_string();
        *per.entry((mb, day)).or_default() += 1;
    }
    let mut out = String::new();
    let _ = writeln!(out, "{:<20} {:<12} {:>6} {:>6}", "MAILBOX", "DAY", "DUE", "CAP");
    for ((mb, day), n) in per {
        let cap = engine
            .config
            .mailboxes
            .iter()
            .find(|m| m.id == mb)
            .and_then(|m| m.smtp.as_ref())
            .map(|s| s.daily_cap.to_string())
            .unwrap_or_else(|| "-".into());
        let over = cap.parse::<usize>().is_ok_and(|c| n > c);
        let _ = writeln!(
            out,
            "{mb:<20} {day:<12} {n:>6} {cap:>6}{}",
            if over {
                "  (over the cap: the rest moves to later days)"
            } else {
                ""
            }
        );
    }
    Ok(out)
}

/// `rapport check` for sequences: every sequence file's problems (file:line:column), and
/// sequences naming a mailbox that does not exist or cannot send.
pub fn check(config: &crate::config::Config) -> std::process::ExitCode {
    let Some(dir) = &config.sequences_dir else {
        return std::process::ExitCode::SUCCESS;
    };
    let mut bad = false;
    match super::load_dir(dir) {
        Ok(seqs) => {
            for s in &seqs {
                if let Some(mb) = &s.mailbox {
                    match config.mailboxes.iter().find(|m| &m.id == mb) {
                        None => {
                            eprintln!("{}: error: sequence names unknown mailbox `{mb}`", s.path.display());
                            bad = true;
                        }
                        Some(m) if m.smtp.is_none() => {
                            eprintln!(
                                "{}: error: mailbox `{mb}` has no `smtp:` block, so it cannot send",
                                s.path.display()
                            );
                            bad = true;
                        }
                        Some(_) => {}
                    }
                }
            }
        }
        Err(d) => {
            eprintln!("{d}");
            bad = true;
        }
    }
    if bad {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}
