//! Reads the store and turns activity counts into what people read: the per-rep summary
//! printed by `rapport run --once` and `rapport status`.

pub mod command;
pub mod period;
pub mod progress;

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::activity::ActivityKind;
use crate::config::Config;
use crate::store::{KindCount, Store};
use crate::targets::Targets;

/// Progress toward targets for each period that has any, as printed after `run --once`;
/// empty when no targets are configured.
pub async fn targets_summary(store: &Store, config: &Config, targets: &Targets) -> anyhow::Result<String> {
    let mut out = String::new();
    let now = store.now();
    for period in targets.periods() {
        let rows = progress::progress(store, config, targets, period, now, now, &progress::RepFilter::All).await?;
        let _ = write!(out, "\nprogress this {period}:\n{}", progress::progress_table(&rows));
    }
    Ok(out)
}

/// A table of activities per rep (rows) and kind (columns), every configured rep included.
pub fn summary_table(config: &Config, counts: &[KindCount]) -> String {
    let mut per_rep: BTreeMap<&str, BTreeMap<&str, i64>> = BTreeMap::new();
    for rep in &config.reps {
        per_rep.entry(rep.id.as_str()).or_default();
    }
    for c in counts {
        *per_rep
            .entry(c.rep_id.as_str())
            .or_default()
            .entry(c.kind.as_str())
            .or_default() += c.count;
    }
    // Columns: the kinds that occur, in the canonical order, plus unknown ones at the end.
    let mut kinds: Vec<&str> = ActivityKind::ALL
        .iter()
        .map(|k| k.as_str())
        .filter(|k| counts.iter().any(|c| c.kind == *k))
        .collect();
    for c in counts {
        if !kinds.contains(&c.kind.as_str()) {
            kinds.push(c.kind.as_str());
        }
    }
    let mut out = String::new();
    let rep_w = per_rep.keys().map(|r| r.len()).max().unwrap_or(3).max(3);
    let _ = write!(out, "{:<rep_w$}", "REP");
    for k in &kinds {
        let _ = write!(out, "  {k:>w$}", w = k.len());
    }
    let _ = writeln!(out, "  {:>5}", "TOTAL");
    for (rep, by_kind) in &per_rep {
        let _ = write!(out, "{rep:<rep_w$}");
        for k in &kinds {
            let _ = write!(out, "  {:>w$}", by_kind.get(k).copied().unwrap_or(0), w = k.len());
        }
        let _ = writeln!(out, "  {:>5}", by_kind.values().sum::<i64>());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn every_rep_gets_a_row_and_totals_add_up() {
        let config = Config::from_str(
            Path::new("c.yaml"),
            "internal_domains: [example.com]\nreps:\n  - {id: alice, name: A, email: alice@example.com}\n  - {id: bob, name: B, email: bob@example.com}\n",
        )
        .unwrap();
        let counts = vec![
            KindCount {
                rep_id: "alice".into(),
                kind: "email_sent".into(),
                count: 3,
            },
            KindCount {
                rep_id: "alice".into(),
                kind: "reply_received".into(),
                count: 2,
            },
        ];
        let t = summary_table(&config, &counts);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 3, "{t}");
        assert!(
            lines[0].contains("email_sent") && lines[0].contains("reply_received"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("alice") && lines[1].trim_end().ends_with('5'),
            "{t}"
        );
        assert!(lines[2].starts_with("bob") && lines[2].trim_end().ends_with('0'), "{t}");
    }
}
