//! Unsubscribing: a token per (lead, enrollment) signed with HMAC-SHA256, the HTTP router
//! (GET shows a confirmation page, POST is RFC 8058 one-click), and `mailto:` unsubscribes
//! (a message to the unsubscribe address whose subject carries the token).
//!
//! The HTTP listener itself belongs to the daemon's HTTP server; it mounts
//! [`unsubscribe_router`] under `/unsubscribe`.

use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use tracing::{info, warn};

use crate::store::Store;

/// The HMAC key of unsubscribe tokens.
#[derive(Clone)]
pub struct UnsubscribeKey(Arc<ring::hmac::Key>);

impl std::fmt::Debug for UnsubscribeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnsubscribeKey(***)")
    }
}

/// A verified token's content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenClaims {
    pub lead_id: i64,
    pub enrollment_id: i64,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl UnsubscribeKey {
    pub fn new(secret: &[u8]) -> Self {
        UnsubscribeKey(Arc::new(ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret)))
    }

    /// The key `sequences.unsubscribe_key_file`/`_env`/`_credential` names, if the config has one.
    pub fn from_config(config: &crate::config::Config) -> Result<Option<UnsubscribeKey>> {
        config
            .sequences
            .unsubscribe_key
            .as_ref()
            .map(|src| Ok(UnsubscribeKey::new(src.read()?.expose().as_bytes())))
            .transpose()
    }

    /// `<lead>-<enrollment>-<HMAC-SHA256, hex>`: URL- and subject-safe.
    pub fn token(&self, lead_id: i64, enrollment_id: i64) -> String {
        let tag = ring::hmac::sign(&self.0, &Self::message(lead_id, enrollment_id));
        format!("{lead_id}-{enrollment_id}-{}", hex(tag.as_ref()))
    }

    fn message(lead_id: i64, enrollment_id: i64) -> Vec<u8> {
        format!("unsubscribe:{lead_id}:{enrollment_id}").into_bytes()
    }

    /// The claims of a genuine token; `None` for anything else (checked in constant time).
    pub fn verify(&self, token: &str) -> Option<TokenClaims> {
        let mut it = token.trim().splitn(3, '-');
        let lead_id: i64 = it.next()?.parse().ok()?;
        let enrollment_id: i64 = it.next()?.parse().ok()?;
        let given = it.next()?;
        if given.len() != 64 || !given.is_ascii() {
            return None;
        }
        let tag: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&given[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<_>>()?;
        ring::hmac::verify(&self.0, &Self::message(lead_id, enrollment_id), &tag).ok()?;
        Some(TokenClaims { lead_id, enrollment_id })
    }

    /// Finds a genuine token anywhere in a text (a mailto subject or body line).
    pub fn find_in(&self, text: &str) -> Option<TokenClaims> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
            .filter(|w| w.len() > 32)
            .find_map(|w| self.verify(w))
    }
}

#[derive(Clone)]
struct RouterState {
    store: Store,
    key: UnsubscribeKey,
}

/// `GET /unsubscribe/{token}`: a confirmation page with a button; `POST /unsubscribe/{token}`:
/// unsubscribes at once (RFC 8058 one-click, body `List-Unsubscribe=One-Click`).
pub fn unsubscribe_router(store: Store, key: UnsubscribeKey) -> Router {
    Router::new()
        .route("/unsubscribe/{token}", get(confirm_page).post(one_click))
        .with_state(RouterState { store, key })
}

async fn confirm_page(State(s): State<RouterState>, Path(token): Path<String>) -> Response {
    if s.key.verify(&token).is_none() {
        return (
            StatusCode::NOT_FOUND,
            Html("<p>This unsubscribe link is not valid.</p>"),
        )
            .into_response();
    }
    Html(format!(
        "<!doctype html><meta charset=utf-8><title>Unsubscribe</title>\
         <p>Stop receiving these emails?</p>\
         <form method=post action=\"/unsubscribe/{token}\">\
         <input type=hidden name=List-Unsubscribe value=One-Click>\
         <button type=submit>Unsubscribe</button></form>"
    ))
    .into_response()
}

async fn one_click(State(s): State<RouterState>, Path(token): Path<String>) -> Response {
    let Some(claims) = s.key.verify(&token) else {
        return (
            StatusCode::NOT_FOUND,
            Html("<p>This unsubscribe link is not valid.</p>"),
        )
            .into_response();
    };
    match s.store.unsubscribe_lead(claims.lead_id).await {
        Ok(()) => {
            info!(
                lead = claims.lead_id,
                enrollment = claims.enrollment_id,
                "unsubscribed (one-click)"
            );
            Html("<p>You are unsubscribed. You will not receive these emails again.</p>").into_response()
        }
        Err(e) => {
            warn!("unsubscribe failed: {e:#}");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Html("<p>Please try again in a minute.</p>"),
            )
                .into_response()
        }
    }
}

/// Acts on `mailto:` unsubscribes: messages seen by mail capture since the last call that went
/// to `address` and carry a genuine token in their subject. Returns how many leads were
/// unsubscribed. The position is kept in `sync_cursors`, so a restart resumes where it was.
pub async fn process_mailto_unsubscribes(store: &Store, key: &UnsubscribeKey, address: &str) -> Result<usize> {
    const CURSOR: (&str, &str) = ("sequences", "mailto-unsubscribe");
    let cursor = store.cursor(CURSOR.0, CURSOR.1).await?;
    let since = cursor
        .as_ref()
        .and_then(|c| c.token.as_deref())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&chrono::Utc));
    let rows = store.seen_headers_since(since).await?;
    let mut done = 0;
    let mut latest = since;
    for (seen_at, headers) in rows {
        latest = Some(latest.map_or(seen_at, |l| l.max(seen_at)));
        let Ok(h) = serde_json::from_value::<crate::sources::mail::MailHeaders>(headers) else {
            continue;
        };
        if !h.recipients().any(|r| r.eq_ignore_ascii_case(address)) {
            continue;
        }
        let Some(claims) = h.subject.as_deref().and_then(|s| key.find_in(s)) else {
            continue;
        };
        store.unsubscribe_lead(claims.lead_id).await?;
        info!(lead = claims.lead_id, "unsubscribed (mailto)");
        done += 1;
    }
    if let Some(l) = latest
        && Some(l) != since
    {
        let c = crate::store::SyncCursor {
            source_id: CURSOR.0.into(),
            scope: CURSOR.1.into(),
            validity: None,
            last_uid: None,
            highest_modseq: None,
            token: Some(l.to_rfc3339()),
        };
        let mut tx = store.begin().await?;
        tx.put_cursor(&c, store.now())
            .await
            .context("saving the mailto cursor")?;
        tx.commit().await?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_and_resist_tampering() {
        let k = UnsubscribeKey::new(b"test key");
        let t = k.token(12, 34);
        assert_eq!(
            k.verify(&t),
            Some(TokenClaims {
                lead_id: 12,
                enrollment_id: 34
            })
        );
        assert_eq!(k.verify(&t.replacen("12-", "13-", 1)), None);
        assert_eq!(UnsubscribeKey::new(b"other").verify(&t), None);
        assert_eq!(
            k.find_in(&format!("Re: unsubscribe {t} please")).map(|c| c.lead_id),
            Some(12)
        );
        assert_eq!(k.verify("garbage"), None);
    }
}
