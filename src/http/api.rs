//! `/api/v1`: progress toward targets, activity listings, and manual logging. Every handler
//! takes [`Authorized`], so a call without the right bearer token never reaches it.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use super::{AppState, Authorized, json_error};
use crate::activity::ActivityKind;
use crate::report::command::parse_when;
use crate::report::progress::{RepFilter, progress as compute_progress};
use crate::sources::manual::{ManualEntry, log_activity, validate};
use crate::store::ActivityFilter;
use crate::targets::PeriodKind;

#[derive(Debug, Deserialize)]
pub(crate) struct ProgressQuery {
    period: Option<String>,
    rep: Option<String>,
    team: Option<String>,
    /// A day (YYYY-MM-DD) or an RFC 3339 instant inside the period.
    at: Option<String>,
}

pub(crate) async fn progress(_: Authorized, State(state): State<AppState>, Query(q): Query<ProgressQuery>) -> Response {
    let period = match q.period.as_deref().unwrap_or("week").parse::<PeriodKind>() {
        Ok(p) => p,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e),
    };
    let filter = match (q.rep, q.team) {
        (Some(_), Some(_)) => return json_error(StatusCode::BAD_REQUEST, "give `rep` or `team`, not both"),
        (Some(r), None) => RepFilter::Rep(r),
        (None, Some(t)) => RepFilter::Team(t),
        (None, None) => RepFilter::All,
    };
    let known = match &filter {
        RepFilter::All => true,
        RepFilter::Rep(r) => state.config().rep(r).is_some(),
        RepFilter::Team(t) => state
            .config()
            .reps
            .iter()
            .any(|r| r.team.as_deref() == Some(t.as_str())),
    };
    if !known {
        return json_error(StatusCode::NOT_FOUND, "no such rep or team");
    }
    let now = state.store().now();
    let at = match q.at.as_deref().map(|s| parse_when(s, chrono_tz::UTC)) {
        None => now,
        Some(Ok(t)) => t,
        Some(Err(e)) => return json_error(StatusCode::BAD_REQUEST, format!("{e:#}")),
    };
    let at = if q.at.as_deref().is_some_and(|s| s.len() == 10) {
        // A bare day: its middle, so that it is the same date in every rep's zone.
        at + chrono::Duration::hours(12)
    } else {
        at
    };
    match compute_progress(state.store(), state.config(), state.targets(), period, at, now, &filter).await {
        Ok(rows) => Json(json!({ "period": period, "at": at, "reps": rows })).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct ActivitiesQuery {
    rep: Option<String>,
    lead: Option<String>,
    kind: Option<String>,
    from: Option<String>,
    to: Option<String>,
    /// Page size, 1 to 500 (default 50).
    limit: Option<i64>,
    /// The `next` value of the previous page.
    before: Option<i64>,
}

/// One activity as the API shows it.
#[derive(Debug, Serialize)]
pub(crate) struct ActivityJson {
    id: i64,
    rep: String,
    kind: String,
    occurred_at: DateTime<Utc>,
    source: String,
    direction: String,
    subject: Option<String>,
    leads: Vec<String>,
}

pub(crate) async fn list_activities(
    _: Authorized,
    State(state): State<AppState>,
    Query(q): Query<ActivitiesQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(50);
    if !(1..=500).contains(&limit) {
        return json_error(StatusCode::BAD_REQUEST, "`limit` must be from 1 to 500");
    }
    if let Some(k) = &q.kind
        && k.parse::<ActivityKind>().is_err()
    {
        return json_error(StatusCode::BAD_REQUEST, format!("unknown kind `{k}`"));
    }
    let time = |s: &Option<String>| s.as_deref().map(|s| parse_when(s, chrono_tz::UTC)).transpose();
    let (from, to) = match (time(&q.from), time(&q.to)) {
        (Ok(f), Ok(t)) => (f, t),
        (Err(e), _) | (_, Err(e)) => return json_error(StatusCode::BAD_REQUEST, format!("{e:#}")),
    };
    let filter = ActivityFilter {
        rep_id: q.rep,
        lead: q.lead,
        kind: q.kind,
        from,
        to,
        before_id: q.before,
        limit,
    };
    let rows = match state.store().list_activities(&filter).await {
        Ok(r) => r,
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    };
    let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
    let mut leads: HashMap<i64, Vec<String>> = HashMap::new();
    match state.store().lead_emails_for(&ids).await {
        Ok(pairs) => {
            for (id, email) in pairs {
                leads.entry(id).or_default().push(email);
            }
        }
        Err(e) => return json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
    // A full page may have more behind it; the last id is where the next page starts.
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.id))
        .flatten();
    let activities: Vec<ActivityJson> = rows
        .into_iter()
        .map(|r| ActivityJson {
            leads: leads.remove(&r.id).unwrap_or_default(),
            id: r.id,
            rep: r.rep_id,
            kind: r.kind,
            occurred_at: r.occurred_at,
            source: r.source,
            direction: r.direction,
            subject: r.subject,
        })
        .collect();
    Json(json!({ "activities": activities, "next": next })).into_response()
}

/// The body of `POST /api/v1/activities`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NewManualActivity {
    rep: String,
    /// call, visit, task or note.
    kind: String,
    lead: Option<String>,
    /// RFC 3339, or local `YYYY-MM-DD HH:MM` in the rep's zone; default now.
    at: Option<String>,
    note: Option<String>,
    /// The caller's id for the entry: posting it again adds nothing.
    id: Option<String>,
}

pub(crate) async fn post_activity(
    _: Authorized,
    State(state): State<AppState>,
    body: Result<Json<NewManualActivity>, axum::extract::rejection::JsonRejection>,
) -> Response {
    let Json(b) = match body {
        Ok(b) => b,
        Err(e) => return json_error(StatusCode::BAD_REQUEST, e.body_text()),
    };
    let config = state.config();
    let Some(rep) = config.rep(&b.rep) else {
        return json_error(StatusCode::UNPROCESSABLE_ENTITY, format!("unknown rep `{}`", b.rep));
    };
    let kind = match b.kind.parse::<ActivityKind>() {
        Ok(k) => k,
        Err(e) => return json_error(StatusCode::UNPROCESSABLE_ENTITY, e),
    };
    let occurred_at = match b.at.as_deref().map(|s| parse_when(s, rep.time_zone)) {
        None => state.store().now(),
        Some(Ok(t)) => t,
        Some(Err(e)) => return json_error(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}")),
    };
    let entry = ManualEntry {
        rep_id: b.rep,
        kind,
        lead: b.lead,
        occurred_at,
        note: b.note,
        client_id: b.id,
    };
    if let Err(e) = validate(config, &entry) {
        return json_error(StatusCode::UNPROCESSABLE_ENTITY, format!("{e:#}"));
    }
    match log_activity(state.store(), config, &entry).await {
        Ok(logged) => {
            let status = if logged.id.is_some() {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            (status, Json(logged)).into_response()
        }
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, format!("{e:#}")),
    }
}
