//! The `rapport report` and `rapport log` commands, and the targets half of `rapport check`.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;
use clap::{Args, ValueEnum};

use super::period::local_day_start;
use super::progress::{RepFilter, progress, progress_csv, progress_table};
use crate::activity::ActivityKind;
use crate::config::{Config, ConfigError};
use crate::sources::manual::{ManualEntry, log_activity};
use crate::store::Store;
use crate::targets::{PeriodKind, Targets};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// day, week, month or quarter (periods are in each rep's time zone).
    #[arg(long, default_value = "week", value_parser = parse_period)]
    pub period: PeriodKind,
    /// Only this rep.
    #[arg(long, conflicts_with = "team")]
    pub rep: Option<String>,
    /// Only the reps of this team.
    #[arg(long)]
    pub team: Option<String>,
    #[arg(long, value_enum, default_value_t = ReportFormat::Table)]
    pub format: ReportFormat,
    /// Report the period holding this day (YYYY-MM-DD) or instant (RFC 3339) instead of now.
    #[arg(long)]
    pub at: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ManualKind {
    Call,
    Visit,
    Task,
    Note,
}

impl From<ManualKind> for ActivityKind {
    fn from(k: ManualKind) -> Self {
        match k {
            ManualKind::Call => ActivityKind::Call,
            ManualKind::Visit => ActivityKind::Visit,
            ManualKind::Task => ActivityKind::Task,
            ManualKind::Note => ActivityKind::Note,
        }
    }
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// What happened.
    #[arg(value_enum)]
    pub kind: ManualKind,
    /// The rep who did it.
    #[arg(long)]
    pub rep: String,
    /// The lead's email address (created if unknown).
    #[arg(long)]
    pub lead: Option<String>,
    /// When: RFC 3339, or `YYYY-MM-DD HH:MM` / `YYYY-MM-DD` in the rep's time zone. Default: now.
    #[arg(long)]
    pub at: Option<String>,
    /// Free text kept with the activity.
    #[arg(long)]
    pub note: Option<String>,
    /// Your own id for this entry; logging the same id again adds nothing.
    #[arg(long)]
    pub id: Option<String>,
}

fn parse_period(s: &str) -> Result<PeriodKind, String> {
    s.parse()
}

/// Parses a point in time: RFC 3339, or a local `YYYY-MM-DD HH:MM[:SS]` or `YYYY-MM-DD`
/// (start of day) in `tz`.
pub fn parse_when(s: &str, tz: Tz) -> Result<DateTime<Utc>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t.with_timezone(&Utc));
    }
    for f in [
        "%Y-%m-%d %H:%M",
        "%Y-%m-%d %H:%M:%S",
        "%Y-%m-%dT%H:%M",
        "%Y-%m-%dT%H:%M:%S",
    ] {
        if let Ok(local) = NaiveDateTime::parse_from_str(s, f) {
            return tz
                .from_local_datetime(&local)
                .earliest()
                .map(|t| t.with_timezone(&Utc))
                .with_context(|| format!("{s} does not exist in {tz} (a DST gap)"));
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return Ok(local_day_start(d, tz));
    }
    bail!("cannot read `{s}` as a time: use 2026-11-23, `2026-11-23 14:30` or 2026-11-23T14:30:00Z")
}

/// The instant a report's `--at` names: a day means its middle (UTC noon), which falls on that
/// same date in every time zone a rep is likely to be in.
fn report_at(s: &str) -> Result<DateTime<Utc>> {
    if let Ok(d) = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d") {
        return Ok(Utc.from_utc_datetime(&d.and_time(NaiveTime::from_hms_opt(12, 0, 0).expect("noon"))));
    }
    parse_when(s, Tz::UTC)
}

/// Loads the targets file the config names; prints its problems and fails when invalid.
pub fn load_targets(config: &Config) -> Result<Targets> {
    match Targets::for_config(config) {
        Ok(t) => Ok(t),
        Err(ConfigError::Invalid(d)) => {
            eprintln!("{d}");
            bail!("the targets file is invalid")
        }
        Err(e) => Err(e.into()),
    }
}

/// The targets part of `rapport check`.
pub fn check_targets(config: &Config) -> Result<ExitCode> {
    match Targets::for_config(config) {
        Ok(_) => Ok(ExitCode::SUCCESS),
        Err(ConfigError::Invalid(d)) => {
            eprintln!("{d}");
            Ok(ExitCode::FAILURE)
        }
        Err(e) => {
            eprintln!("error: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

/// `rapport report`.
pub async fn report(store: &Store, config: &Config, args: &ReportArgs) -> Result<ExitCode> {
    let targets = load_targets(config)?;
    let now = store.now();
    let at = match &args.at {
        Some(s) => report_at(s)?,
        None => now,
    };
    let filter = match (&args.rep, &args.team) {
        (Some(r), _) => RepFilter::Rep(r.clone()),
        (None, Some(t)) => RepFilter::Team(t.clone()),
        (None, None) => RepFilter::All,
    };
    let rows = progress(store, config, &targets, args.period, at, now, &filter).await?;
    match args.format {
        ReportFormat::Table => print!("{}", progress_table(&rows)),
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        ReportFormat::Csv => print!("{}", progress_csv(&rows)?),
    }
    Ok(ExitCode::SUCCESS)
}

/// `rapport log`.
pub async fn log(store: &Store, config: &Config, args: &LogArgs) -> Result<ExitCode> {
    let rep = config
        .rep(&args.rep)
        .with_context(|| format!("unknown rep `{}`", args.rep))?;
    let occurred_at = match &args.at {
        Some(s) => parse_when(s, rep.time_zone)?,
        None => store.now(),
    };
    let entry = ManualEntry {
        rep_id: args.rep.clone(),
        kind: args.kind.into(),
        lead: args.lead.clone(),
        occurred_at,
        note: args.note.clone(),
        client_id: args.id.clone(),
    };
    let logged = log_activity(store, config, &entry).await?;
    match logged.id {
        Some(id) => println!(
            "logged {} #{id} for {} at {}",
            entry.kind,
            entry.rep_id,
            occurred_at.to_rfc3339()
        ),
        None => println!("{} was logged before; nothing added", logged.source_id),
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_in_the_reps_zone() {
        let tz: Tz = "Europe/Rome".parse().unwrap();
        assert_eq!(
            parse_when("2026-11-23 14:30", tz).unwrap().to_rfc3339(),
            "2026-11-23T13:30:00+00:00"
        );
        assert_eq!(
            parse_when("2026-11-23", tz).unwrap().to_rfc3339(),
            "2026-11-22T23:00:00+00:00"
        );
        assert_eq!(
            parse_when("2026-11-23T14:30:00Z", tz).unwrap().to_rfc3339(),
            "2026-11-23T14:30:00+00:00"
        );
        assert!(parse_when("next tuesday", tz).is_err());
        assert_eq!(
            report_at("2026-11-18").unwrap().to_rfc3339(),
            "2026-11-18T12:00:00+00:00"
        );
    }
}
