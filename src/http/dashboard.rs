//! The dashboard at `/`: one card per rep with a progress bar per goal for the current period
//! (a marker shows where the rep should be by now), and a bar chart of daily activity over the
//! last 30 days. Plain server-rendered HTML with inline CSS and SVG: no script, no build step,
//! and it reflows to one column on a phone.

use std::collections::BTreeMap;
use std::fmt::Write;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde::Deserialize;

use super::AppState;
use crate::report::period::local_day_start;
use crate::report::progress::{GoalProgress, RepFilter, RepProgress, progress};
use crate::targets::PeriodKind;

/// Days in the activity chart.
const CHART_DAYS: i64 = 30;

#[derive(Debug, Deserialize)]
pub(crate) struct PageQuery {
    period: Option<String>,
    team: Option<String>,
}

/// Escapes text for HTML content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { --fg: #1d2430; --muted: #5d6878; --bg: #f5f6f8; --card: #fff; --ok: #2e8b57; --behind: #d08700; --track: #e4e7ec; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { padding: 12px 16px; background: #243447; color: #fff; display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: baseline; }
header h1 { margin: 0; font-size: 20px; }
header nav a { color: #cfe3ff; margin-right: 10px; text-decoration: none; }
header nav a.current { color: #fff; font-weight: 600; text-decoration: underline; }
header .updated { color: #cbd5e1; font-size: 13px; margin-left: auto; }
main { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; padding: 12px; }
section.rep { background: var(--card); border-radius: 8px; padding: 12px 14px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
section.rep h2 { margin: 0; font-size: 17px; }
section.rep .meta { color: var(--muted); font-size: 13px; margin-bottom: 8px; }
.goal { margin: 8px 0; }
.goal .label { display: flex; justify-content: space-between; font-size: 14px; }
.goal .nums .pct { color: var(--muted); margin-left: 6px; }
.bar { position: relative; height: 12px; background: var(--track); border-radius: 6px; margin-top: 3px; }
.bar .fill { height: 100%; border-radius: 6px; background: var(--ok); }
.bar .fill.behind { background: var(--behind); }
.bar .pace { position: absolute; top: -3px; width: 2px; height: 18px; background: var(--fg); }
.goal .note { color: var(--muted); font-size: 12px; }
figure { margin: 10px 0 0; }
figcaption { color: var(--muted); font-size: 12px; }
svg.chart { width: 100%; height: 64px; display: block; }
svg.chart rect.day { fill: #4a7ab8; }
svg.chart line { stroke: #c8ced6; }
.empty { padding: 16px; }
"#;

fn goal_html(out: &mut String, g: &GoalProgress) {
    let title = g.goal.replace('_', " ");
    let _ = write!(
        out,
        "<div class=\"goal\" data-goal=\"{}\" data-done=\"{}\" data-target=\"{}\">",
        esc(&g.goal),
        g.done,
        g.target.map(|t| t.to_string()).unwrap_or_default()
    );
    let _ = write!(
        out,
        "<div class=\"label\"><span>{}</span><span class=\"nums\"><b class=\"done\">{}</b>",
        esc(&title),
        g.done
    );
    if let Some(t) = g.target {
        let _ = write!(out, " / <span class=\"target\">{t}</span>");
    }
    if let Some(p) = g.percent {
        let _ = write!(out, "<span class=\"pct\">{p:.0}%</span>");
    }
    out.push_str("</span></div>");
    if let Some(t) = g.target.filter(|t| *t > 0) {
        let fill = (g.done as f64 * 100.0 / t as f64).min(100.0);
        let class = if g.on_pace == Some(false) {
            "fill behind"
        } else {
            "fill"
        };
        let _ = write!(
            out,
            "<div class=\"bar\" role=\"progressbar\" aria-label=\"{}\" aria-valuemin=\"0\" aria-valuemax=\"{t}\" aria-valuenow=\"{}\"><div class=\"{class}\" style=\"width:{fill:.1}%\"></div>",
            esc(&title),
            g.done
        );
        if let Some(e) = g.expected {
            let at = (e * 100.0 / t as f64).clamp(0.0, 100.0);
            let _ = write!(
                out,
                "<div class=\"pace\" data-expected=\"{e:.1}\" style=\"left:calc({at:.1}% - 1px)\" title=\"pace: {e:.1} by now\"></div>"
            );
        }
        out.push_str("</div>");
        match (g.on_pace, g.needed_per_day) {
            (Some(false), Some(n)) => {
                let _ = write!(out, "<div class=\"note\">behind pace; {n:.1} a day to reach it</div>");
            }
            (Some(false), None) => out.push_str("<div class=\"note\">behind pace</div>"),
            _ => {}
        }
    }
    out.push_str("</div>");
}

/// An inline SVG bar chart of `days` (oldest first).
fn chart_svg(days: &[(NaiveDate, i64)]) -> String {
    let max = days.iter().map(|(_, n)| *n).max().unwrap_or(0).max(1);
    let (w, h) = (300.0, 60.0);
    let step = w / days.len().max(1) as f64;
    let mut svg = format!(
        "<svg class=\"chart\" viewBox=\"0 0 {w} {h}\" preserveAspectRatio=\"none\" role=\"img\" aria-label=\"activities per day\"><line x1=\"0\" y1=\"{h}\" x2=\"{w}\" y2=\"{h}\"/>"
    );
    for (i, (day, n)) in days.iter().enumerate() {
        let bh = (*n as f64 / max as f64) * (h - 4.0);
        let _ = write!(
            svg,
            "<rect class=\"day\" data-day=\"{day}\" data-count=\"{n}\" x=\"{:.2}\" y=\"{:.2}\" width=\"{:.2}\" height=\"{bh:.2}\"><title>{day}: {n}</title></rect>",
            i as f64 * step + 0.5,
            h - bh,
            (step - 1.0).max(0.5)
        );
    }
    svg.push_str("</svg>");
    svg
}

/// Activities per local day of the rep over the last [`CHART_DAYS`] days, oldest first.
async fn daily(state: &AppState, rep: &RepProgress, now: DateTime<Utc>) -> anyhow::Result<Vec<(NaiveDate, i64)>> {
    let tz: chrono_tz::Tz = rep.time_zone.parse().unwrap_or(chrono_tz::UTC);
    let today = now.with_timezone(&tz).date_naive();
    let first = today - Duration::days(CHART_DAYS - 1);
    let mut by_day: BTreeMap<NaiveDate, i64> = (0..CHART_DAYS).map(|i| (first + Duration::days(i), 0)).collect();
    let times = state
        .store()
        .activity_times(
            &rep.rep_id,
            local_day_start(first, tz),
            local_day_start(today + Duration::days(1), tz),
        )
        .await?;
    for t in times {
        if let Some(n) = by_day.get_mut(&t.with_timezone(&tz).date_naive()) {
            *n += 1;
        }
    }
    Ok(by_day.into_iter().collect())
}

pub(crate) async fn page(State(state): State<AppState>, Query(q): Query<PageQuery>) -> Response {
    let period = match q.period.as_deref() {
        Some(p) => match p.parse::<PeriodKind>() {
            Ok(p) => p,
            Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
        },
        None => state.targets().periods().first().copied().unwrap_or(PeriodKind::Week),
    };
    let filter = match q.team {
        Some(t) => RepFilter::Team(t),
        None => RepFilter::All,
    };
    let now = state.store().now();
    let rows = match progress(
        state.store(),
        state.config(),
        state.targets(),
        period,
        now,
        now,
        &filter,
    )
    .await
    {
        Ok(r) => r,
        Err(e) => return (StatusCode::NOT_FOUND, format!("{e:#}")).into_response(),
    };
    let mut out = String::new();
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><meta http-equiv=\"refresh\" content=\"300\"><title>Rapport: {period} progress</title><style>{STYLE}</style></head><body><header><h1>Rapport</h1><nav>"
    );
    for p in PeriodKind::ALL {
        let class = if p == period { " class=\"current\"" } else { "" };
        let _ = write!(out, "<a href=\"/?period={p}\"{class}>{p}</a>");
    }
    let _ = write!(
        out,
        "</nav><span class=\"updated\" data-now=\"{}\">updated {}</span></header><main>",
        now.to_rfc3339(),
        now.format("%Y-%m-%d %H:%M UTC")
    );
    if rows.is_empty() {
        out.push_str("<p class=\"empty\">No reps are configured.</p>");
    }
    for r in &rows {
        let _ = write!(
            out,
            "<section class=\"rep\" data-rep=\"{}\"><h2>{}</h2><div class=\"meta\">{}{} {}&ndash;{} &middot; {} business day(s) left</div>",
            esc(&r.rep_id),
            esc(&r.name),
            r.team
                .as_deref()
                .map(|t| format!("{} &middot; ", esc(t)))
                .unwrap_or_default(),
            r.period,
            r.first_day.format("%b %-d"),
            r.last_day.format("%b %-d"),
            r.business_days_left
        );
        for g in &r.goals {
            goal_html(&mut out, g);
        }
        match daily(&state, r, now).await {
            Ok(days) => {
                let total: i64 = days.iter().map(|(_, n)| n).sum();
                let _ = write!(
                    out,
                    "<figure data-total=\"{total}\"><figcaption>Activities per day, last {CHART_DAYS} days ({total})</figcaption>{}</figure>",
                    chart_svg(&days)
                );
            }
            Err(e) => {
                let _ = write!(
                    out,
                    "<p class=\"note\">chart unavailable: {}</p>",
                    esc(&format!("{e:#}"))
                );
            }
        }
        out.push_str("</section>");
    }
    out.push_str("</main></body></html>\n");
    Html(out).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            esc("<a href=\"x\">O'Brien & co</a>"),
            "&lt;a href=&quot;x&quot;&gt;O&#39;Brien &amp; co&lt;/a&gt;"
        );
    }

    #[test]
    fn chart_has_one_bar_per_day() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap();
        let svg = chart_svg(&[(d, 2), (d + Duration::days(1), 0), (d + Duration::days(2), 4)]);
        assert_eq!(svg.matches("<rect").count(), 3);
        assert!(svg.contains("data-day=\"2026-11-03\" data-count=\"4\""));
    }
}
