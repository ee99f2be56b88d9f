//! `/metrics` in the Prometheus text format (version 0.0.4), computed from the database on
//! each scrape, so every daemon instance and every restart reports the same numbers.
//!
//! Counts by a single label that are one SQL query each are listed in [`LABELLED`]: adding
//! one (for example sequence sends by outcome, once the sequences tables exist) is one entry
//! whose query returns `(label value, count)` rows.

use std::fmt::Write;

use anyhow::Result;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};

use super::AppState;
use crate::store::Store;

/// A metric whose samples are the `(label, count)` rows of one query.
pub struct LabelledMetric {
    pub name: &'static str,
    pub help: &'static str,
    /// `gauge` or `counter`.
    pub kind: &'static str,
    pub label: &'static str,
    pub sql: &'static str,
}

/// The one-query metrics. Sequence sends by outcome and anything else that is a GROUP BY over
/// one table belongs here.
pub const LABELLED: &[LabelledMetric] = &[
    LabelledMetric {
        name: "rapport_outbox_messages",
        help: "Messages in the sequence outbox, by state.",
        kind: "gauge",
        label: "state",
        sql: "SELECT state, COUNT(*) FROM outbox GROUP BY state ORDER BY state",
    },
    LabelledMetric {
        name: "rapport_outbox_depth",
        help: "Outbox messages not sent yet (queued or waiting for a retry), by mailbox.",
        kind: "gauge",
        label: "mailbox",
        sql: "SELECT mailbox_id, COUNT(*) FROM outbox WHERE sent_at IS NULL GROUP BY mailbox_id ORDER BY mailbox_id",
    },
    LabelledMetric {
        name: "rapport_enrollments",
        help: "Sequence enrollments, by state.",
        kind: "gauge",
        label: "state",
        sql: "SELECT state, COUNT(*) FROM enrollments GROUP BY state ORDER BY state",
    },
];

/// Escapes a label value (backslash, double quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}");
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

fn seconds(t: DateTime<Utc>) -> f64 {
    t.timestamp_millis() as f64 / 1000.0
}

/// Renders every metric.
pub async fn render(store: &Store) -> Result<String> {
    let now = store.now();
    let mut out = String::new();

    let counts = store.count_by_rep_and_kind(None, None).await?;
    header(
        &mut out,
        "rapport_activities_total",
        "counter",
        "Activities logged, by rep and kind.",
    );
    for c in &counts {
        let _ = writeln!(
            out,
            "rapport_activities_total{{rep=\"{}\",kind=\"{}\"}} {}",
            label(&c.rep_id),
            label(&c.kind),
            c.count
        );
    }

    let syncs = store.source_syncs().await?;
    header(
        &mut out,
        "rapport_source_last_success_timestamp_seconds",
        "gauge",
        "When each mailbox or calendar last synced successfully (Unix time).",
    );
    for s in syncs.iter() {
        if let Some(t) = s.last_success_at {
            let _ = writeln!(
                out,
                "rapport_source_last_success_timestamp_seconds{{source=\"{}\",kind=\"{}\"}} {}",
                label(&s.source_id),
                label(&s.kind),
                seconds(t)
            );
        }
    }
    header(
        &mut out,
        "rapport_source_sync_lag_seconds",
        "gauge",
        "Seconds since each source last synced successfully.",
    );
    for s in syncs.iter() {
        if let Some(t) = s.last_success_at {
            let _ = writeln!(
                out,
                "rapport_source_sync_lag_seconds{{source=\"{}\",kind=\"{}\"}} {}",
                label(&s.source_id),
                label(&s.kind),
                seconds(now) - seconds(t)
            );
        }
    }
    header(
        &mut out,
        "rapport_source_up",
        "gauge",
        "1 when the source's last sync succeeded, 0 while it is failing (retrying, auth_failed, failed).",
    );
    for s in syncs.iter() {
        let _ = writeln!(
            out,
            "rapport_source_up{{source=\"{}\",kind=\"{}\",state=\"{}\"}} {}",
            label(&s.source_id),
            label(&s.kind),
            label(&s.state),
            u8::from(s.state == "ok" || s.state == "starting")
        );
    }
    header(
        &mut out,
        "rapport_source_last_error_timestamp_seconds",
        "gauge",
        "When each source last failed to sync (Unix time).",
    );
    for s in syncs.iter() {
        if let Some(t) = s.last_error_at {
            let _ = writeln!(
                out,
                "rapport_source_last_error_timestamp_seconds{{source=\"{}\",kind=\"{}\"}} {}",
                label(&s.source_id),
                label(&s.kind),
                seconds(t)
            );
        }
    }

    for m in LABELLED {
        header(&mut out, m.name, m.kind, m.help);
        for (value, n) in store.labelled_counts(m.sql).await? {
            let _ = writeln!(out, "{}{{{}=\"{}\"}} {n}", m.name, m.label, label(&value));
        }
    }
    Ok(out)
}

pub(crate) async fn handler(State(state): State<AppState>) -> Response {
    match render(state.store()).await {
        Ok(text) => (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            text,
        )
            .into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}\n")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(label("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
