//! Proof of completeness: compare what a mailbox holds with what Rapport has seen, folder by
//! folder, and name every message that was missed.

use anyhow::Result;
use chrono::{DateTime, Duration, Utc};

use super::{imap, maildir};
use crate::config::{MailboxConfig, MailboxSource};
use crate::sources::SourceError;
use crate::store::Store;

/// The comparison for one folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderCheck {
    pub folder: String,
    /// Messages the server (or the directory) holds inside the sync window.
    pub on_server: usize,
    /// Of those, the ones Rapport has looked at.
    pub seen: usize,
    /// Not seen although the cursor is past them: these were missed.
    pub missed: Vec<String>,
    /// Not seen because they arrived after the last sync.
    pub pending: usize,
}

/// Checks one mailbox. For IMAP, the window is the mailbox's `backfill_days`.
pub async fn verify_mailbox(
    mb: &MailboxConfig,
    store: &Store,
    now: DateTime<Utc>,
) -> Result<Vec<FolderCheck>, SourceError> {
    let mut out = Vec::new();
    match &mb.source {
        MailboxSource::Imap(cfg) => {
            let mut session = imap::connect(cfg).await?;
            let (folders, _) = imap::folders(&mut session, cfg).await?;
            let since = now - Duration::days(i64::from(cfg.backfill_days));
            for folder in folders {
                let (validity, uids) = imap::server_uids(&mut session, &folder, since).await?;
                let seen = store.seen_keys(&mb.id, &folder).await?;
                let cursor = store.cursor(&mb.id, &folder).await?;
                let synced_to = cursor
                    .filter(|c| c.validity == Some(i64::from(validity)))
                    .and_then(|c| c.last_uid)
                    .unwrap_or(0);
                let mut check = FolderCheck {
                    folder: folder.clone(),
                    on_server: uids.len(),
                    seen: 0,
                    missed: Vec::new(),
                    pending: 0,
                };
                for uid in uids {
                    if seen.contains(&imap::item_key(validity, uid)) {
                        check.seen += 1;
                    } else if i64::from(uid) > synced_to {
                        check.pending += 1;
                    } else {
                        check.missed.push(format!("UID {uid}"));
                    }
                }
                out.push(check);
            }
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), session.logout()).await;
        }
        MailboxSource::Maildir(cfg) => {
            // Files written after the last successful scan are pending, not missed.
            let last_scan = store
                .health()
                .await?
                .into_iter()
                .find(|h| h.source_id == mb.id)
                .and_then(|h| h.last_success_at);
            let root = cfg.path.clone();
            let folders = tokio::task::spawn_blocking(move || maildir::folders(&root))
                .await
                .map_err(anyhow::Error::from)??;
            for folder in folders {
                let seen = store.seen_keys(&mb.id, &folder.name).await?;
                let path = folder.path.clone();
                let names = tokio::task::spawn_blocking(move || maildir::message_names(&path))
                    .await
                    .map_err(anyhow::Error::from)??;
                let mut check = FolderCheck {
                    folder: folder.name.clone(),
                    on_server: names.len(),
                    seen: 0,
                    missed: Vec::new(),
                    pending: 0,
                };
                let mut missed: Vec<String> = Vec::new();
                for (n, modified) in names {
                    if seen.contains(&n) {
                        check.seen += 1;
                    } else if last_scan.is_none_or(|scan| modified.is_none_or(|m| m >= scan)) {
                        check.pending += 1;
                    } else {
                        missed.push(n);
                    }
                }
                missed.sort();
                check.missed = missed;
                out.push(check);
            }
        }
    }
    Ok(out)
}
