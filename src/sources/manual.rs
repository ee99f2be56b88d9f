//! Activities no mailbox or calendar sees (calls, in-person visits, tasks, notes), logged by
//! hand with `rapport log …` or `POST /api/v1/activities`.

use anyhow::{Result, bail};
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::activity::{ActivityKind, Direction, NewActivity, SourceKind};
use crate::address;
use crate::config::Config;
use crate::matcher::domains::{DomainClass, DomainRules};
use crate::store::Store;

/// The kinds that may be logged by hand.
pub const MANUAL_KINDS: [ActivityKind; 4] = [
    ActivityKind::Call,
    ActivityKind::Visit,
    ActivityKind::Task,
    ActivityKind::Note,
];

/// A hand-logged activity before it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct ManualEntry {
    pub rep_id: String,
    pub kind: ActivityKind,
    /// The lead's email address; a lead that does not exist yet is created (owned by the rep).
    pub lead: Option<String>,
    pub occurred_at: DateTime<Utc>,
    pub note: Option<String>,
    /// The caller's own id for this entry: logging the same id twice stores it once. A random
    /// one is made when absent.
    pub client_id: Option<String>,
}

/// What was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Logged {
    /// The activity's id, or `None` when an entry with the same client id existed.
    pub id: Option<i64>,
    pub lead_id: Option<i64>,
    pub source_id: String,
}

/// The lead's normalized address and, for a company domain, that domain.
fn resolve_lead(config: &Config, raw: &str) -> Result<(String, Option<String>)> {
    let addr = address::normalize(raw).map_err(|err| anyhow::anyhow!("invalid lead address `{raw}`: {err}"))?;
    let domain = address::domain_of(&addr).to_owned();
    match DomainRules::from_config(config).classify(&domain) {
        DomainClass::Internal => bail!("`{addr}` is a colleague's address, not a lead"),
        DomainClass::Company => Ok((addr, Some(domain))),
        DomainClass::FreeMail | DomainClass::Blocked => Ok((addr, None)),
    }
}

/// Checks an entry against the config; the message says what to fix. Whatever passes here
/// can only fail to be stored for reasons of the database.
pub fn validate(config: &Config, e: &ManualEntry) -> Result<()> {
    if config.rep(&e.rep_id).is_none() {
        let ids: Vec<&str> = config.reps.iter().map(|r| r.id.as_str()).collect();
        bail!("unknown rep `{}` (configured: {})", e.rep_id, ids.join(", "));
    }
    if !MANUAL_KINDS.contains(&e.kind) {
        bail!("`{}` cannot be logged by hand (use call, visit, task or note)", e.kind);
    }
    if let Some(id) = &e.client_id
        && (id.is_empty() || id.len() > 200)
    {
        bail!("the entry id must be 1 to 200 characters");
    }
    if let Some(raw) = &e.lead {
        resolve_lead(config, raw)?;
    }
    Ok(())
}

/// Validates and stores a hand-logged activity in one transaction (with its lead).
pub async fn log_activity(store: &Store, config: &Config, e: &ManualEntry) -> Result<Logged> {
    validate(config, e)?;
    let lead = e.lead.as_deref().map(|raw| resolve_lead(config, raw)).transpose()?;
    let source_id = match &e.client_id {
        Some(id) => id.clone(),
        None => format!("{}-{:016x}", e.occurred_at.format("%Y%m%dT%H%M%S"), fastrand::u64(..)),
    };
    let now = store.now();
    let mut tx = store.begin().await?;
    let lead_id = match &lead {
        Some((addr, company)) => Some(
            tx.ensure_lead(addr, company.as_deref(), &e.rep_id, "manual", now)
                .await?,
        ),
        None => None,
    };
    let direction = match e.kind {
        // The rep reached out (or met the lead): outbound, so a first call counts as contact.
        ActivityKind::Call | ActivityKind::Visit if lead_id.is_some() => Direction::Outbound,
        _ => Direction::None,
    };
    let mut details = serde_json::Map::new();
    if let Some(n) = &e.note {
        details.insert("note".into(), serde_json::Value::String(n.clone()));
    }
    let activity = NewActivity {
        rep_id: e.rep_id.clone(),
        kind: e.kind,
        occurred_at: e.occurred_at,
        source: SourceKind::Manual,
        source_id: source_id.clone(),
        thread_key: None,
        subject: None,
        direction,
        lead_ids: lead_id.into_iter().collect(),
        details: serde_json::Value::Object(details),
    };
    let id = tx.record_activity(&activity, now).await?;
    tx.commit().await?;
    Ok(Logged { id, lead_id, source_id })
}
