//! Maildir (and Maildir++) mailboxes on disk: `cur/` and `new/` are the inbox, each `.Name/`
//! subfolder another folder. A file's unique name (before the `:2,` flags) identifies it, and
//! the `mail_seen` table is the cursor: a rescan reads only files not seen before.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use tracing::info;

use super::{FetchedMail, IngestStats, Ingestor, MailHeaders};

/// Messages per transaction.
const BATCH: usize = 500;

/// Folders that hold no sent or received conversation: unsent drafts, deleted mail, spam.
const SKIPPED_FOLDERS: &[&str] = &["Drafts", "Draft", "Trash", "Deleted Messages", "Junk", "Spam"];

/// One folder of a Maildir++ tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MaildirFolder {
    /// `INBOX`, `Sent`, `Archive/2026` …
    pub name: String,
    pub path: PathBuf,
}

/// The folders under `root`, sent folders first: replies are told apart from other inbound
/// mail by the outbound messages they answer, so those must be known first.
pub fn folders(root: &Path) -> Result<Vec<MaildirFolder>> {
    let mut out = vec![MaildirFolder {
        name: "INBOX".into(),
        path: root.to_path_buf(),
    }];
    let entries = std::fs::read_dir(root).with_context(|| format!("reading Maildir {}", root.display()))?;
    for e in entries {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(sub) = name.strip_prefix('.')
            && !sub.is_empty()
            && e.path().join("cur").is_dir()
            && !SKIPPED_FOLDERS.iter().any(|s| s.eq_ignore_ascii_case(sub))
        {
            out.push(MaildirFolder {
                name: sub.replace('.', "/"),
                path: e.path(),
            });
        }
    }
    out.sort_by_key(|f| {
        (
            !f.name.to_lowercase().contains("sent"),
            f.name == "INBOX",
            f.name.clone(),
        )
    });
    Ok(out)
}

/// The unique part of a Maildir file name (`1700000000.M1P2.host:2,S` → `1700000000.M1P2.host`).
pub fn unique_name(file_name: &str) -> &str {
    file_name.split([':', ';']).next().unwrap_or(file_name)
}

/// The unique names of every message file in a folder, with the files' modification times.
/// Blocking.
pub fn message_names(folder: &Path) -> Result<std::collections::HashMap<String, Option<DateTime<Utc>>>> {
    let mut out = std::collections::HashMap::new();
    for sub in ["new", "cur"] {
        let Ok(entries) = std::fs::read_dir(folder.join(sub)) else {
            continue;
        };
        for e in entries {
            let e = e?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && e.file_type()?.is_file() {
                let modified = e
                    .metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .map(DateTime::<Utc>::from);
                out.insert(unique_name(&name).to_owned(), modified);
            }
        }
    }
    Ok(out)
}

/// Reads the files of `folder` not in `seen`, oldest first. Blocking.
fn read_new(folder: &MaildirFolder, seen: &std::collections::HashSet<String>) -> Result<Vec<FetchedMail>> {
    let mut out = Vec::new();
    for sub in ["new", "cur"] {
        let dir = folder.path.join(sub);
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries {
            let e = e?;
            let file_name = e.file_name().to_string_lossy().into_owned();
            if file_name.starts_with('.') || !e.file_type()?.is_file() {
                continue;
            }
            let key = unique_name(&file_name).to_owned();
            if seen.contains(&key) {
                continue;
            }
            let path = e.path();
            let raw = match std::fs::read(&path) {
                Ok(r) => r,
                // Moved between new/ and cur/ while we looked: the next scan finds it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
            };
            // The delivery time the MDA wrote at the start of the unique name survives copies,
            // backups and checkouts; the file's mtime does not, so it is only the fallback.
            let internal_date = delivery_time(&key).or_else(|| {
                e.metadata()
                    .ok()
                    .and_then(|m| m.modified().ok())
                    .map(DateTime::<Utc>::from)
            });
            // Maildir flags follow ":2,"; D is \Draft.
            let draft = file_name
                .split_once(":2,")
                .is_some_and(|(_, flags)| flags.contains('D'));
            out.push(FetchedMail {
                folder: folder.name.clone(),
                item_key: key,
                headers: MailHeaders::parse(&raw).map(|h| MailHeaders { draft, ..h }),
                internal_date,
            });
        }
    }
    out.sort_by_key(|m| {
        (
            m.headers.as_ref().and_then(|h| h.date).or(m.internal_date),
            m.item_key.clone(),
        )
    });
    Ok(out)
}

/// Scans every folder once and ingests what is new.
pub async fn sync_once(root: &Path, ingestor: &Ingestor) -> Result<IngestStats> {
    let root = root.to_path_buf();
    let list = {
        let root = root.clone();
        tokio::task::spawn_blocking(move || folders(&root)).await??
    };
    let mut total = IngestStats::default();
    for folder in list {
        let seen = ingestor.store.seen_keys(&ingestor.mailbox_id, &folder.name).await?;
        let f = folder.clone();
        let fetched = tokio::task::spawn_blocking(move || read_new(&f, &seen)).await??;
        if fetched.is_empty() {
            continue;
        }
        for batch in fetched.chunks(BATCH) {
            total += ingestor.ingest(batch, None).await?;
        }
        info!(mailbox = %ingestor.mailbox_id, folder = %folder.name, messages = fetched.len(), "maildir folder synced");
    }
    Ok(total)
}

/// The delivery time at the start of a Maildir unique name (`1732114800.M1P2.host`), when it
/// is a plausible one (after 2000).
pub fn delivery_time(unique: &str) -> Option<DateTime<Utc>> {
    let secs: i64 = unique.split('.').next()?.parse().ok()?;
    (secs >= 946_684_800)
        .then(|| DateTime::<Utc>::from_timestamp(secs, 0))
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folder_order_puts_sent_first_and_inbox_last() {
        let dir = tempfile::tempdir().unwrap();
        for sub in [
            ".Sent/cur",
            ".Archive.2026/cur",
            "cur",
            ".Drafts/cur",
            ".Trash/cur",
            ".Junk/cur",
        ] {
            std::fs::create_dir_all(dir.path().join(sub)).unwrap();
        }
        let names: Vec<String> = folders(dir.path()).unwrap().into_iter().map(|f| f.name).collect();
        assert_eq!(names, ["Sent", "Archive/2026", "INBOX"]);
    }

    #[test]
    fn unique_names() {
        assert_eq!(unique_name("1700000000.M1P2.host:2,S"), "1700000000.M1P2.host");
        assert_eq!(unique_name("1700000000.M1P2.host"), "1700000000.M1P2.host");
    }

    #[test]
    fn delivery_time_comes_from_the_unique_name() {
        assert_eq!(
            delivery_time("1790838720.M653092P8746.mail.example.com").map(|t| t.to_rfc3339()),
            Some("2026-10-01T07:12:00+00:00".into())
        );
        assert_eq!(delivery_time("1.M1P1.host"), None);
        assert_eq!(delivery_time("msg-3"), None);
    }
}
