//! The HTTP listener: health (`/healthz`, `/readyz`), Prometheus metrics (`/metrics`), the
//! JSON API (`/api/v1/…`, bearer token), and the dashboard (`/`).
//!
//! Everything is read from the database on request, so several daemons behind one PostgreSQL
//! show the same numbers and a restart loses nothing. The daemon runs the listener as one more
//! supervised task ([`HttpServer`] implements [`Supervised`]); other features add their own
//! unauthenticated routes (the sequences' unsubscribe links) with [`HttpServer::with_routes`].

mod api;
mod dashboard;
pub mod metrics;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::Router;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::{Config, Secret};
use crate::daemon::Supervised;
use crate::store::Store;
use crate::targets::Targets;

/// What every handler reads.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Store,
    config: Config,
    targets: Targets,
    /// The API's bearer token; `None` locks the API (every call gets 401).
    token: Option<Secret>,
}

impl AppState {
    pub fn store(&self) -> &Store {
        &self.inner.store
    }
    pub fn config(&self) -> &Config {
        &self.inner.config
    }
    pub fn targets(&self) -> &Targets {
        &self.inner.targets
    }
}

/// The HTTP server of one daemon.
pub struct HttpServer {
    state: AppState,
    listen: SocketAddr,
    extra: Router,
}

impl HttpServer {
    /// Reads the API token now (from its file, variable or credential); when it cannot be read
    /// the API stays locked and an error is logged, while health, metrics and the dashboard
    /// still serve.
    pub fn new(store: Store, config: Config, targets: Targets) -> HttpServer {
        let token = match &config.http.api_token {
            None => None,
            Some(src) => match src.read() {
                Ok(t) => Some(t),
                Err(e) => {
                    error!("cannot read the API token ({e:#}); the API will answer 401 to every call");
                    None
                }
            },
        };
        let listen = config.http.listen;
        HttpServer {
            state: AppState {
                inner: Arc::new(Inner {
                    store,
                    config,
                    targets,
                    token,
                }),
            },
            listen,
            extra: Router::new(),
        }
    }

    /// Adds routes served without the API token (e.g. `/unsubscribe/{token}`).
    pub fn with_routes(mut self, routes: Router) -> HttpServer {
        self.extra = self.extra.merge(routes);
        self
    }

    /// Every route of the server.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/api/v1/progress", get(api::progress))
            .route("/api/v1/activities", get(api::list_activities).post(api::post_activity));
        Router::new()
            .route("/", get(dashboard::page))
            .route("/healthz", get(healthz))
            .route("/readyz", get(readyz))
            .route("/metrics", get(metrics::handler))
            .merge(api)
            .with_state(self.state.clone())
            .merge(self.extra.clone())
    }

    /// Serves on `listener` until `cancel` fires.
    pub async fn serve(&self, listener: TcpListener, cancel: CancellationToken) -> Result<()> {
        let addr = listener.local_addr().ok();
        info!(address = ?addr, "HTTP listener started");
        axum::serve(listener, self.router())
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await
            .context("serving HTTP")
    }
}

impl Supervised for HttpServer {
    fn name(&self) -> String {
        format!("http {}", self.listen)
    }

    fn run(self: Arc<Self>, cancel: CancellationToken) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async move {
            let listener = match TcpListener::bind(self.listen).await {
                Ok(l) => l,
                Err(e) => {
                    error!(address = %self.listen, "cannot listen for HTTP: {e}");
                    return;
                }
            };
            if let Err(e) = self.serve(listener, cancel).await {
                error!("HTTP listener stopped: {e:#}");
            }
        })
    }
}

/// A JSON error body with a status.
pub(crate) fn json_error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, axum::Json(json!({ "error": message.into() }))).into_response()
}

/// Proof that a request carried the API's bearer token; handlers that take it are protected.
pub(crate) struct Authorized;

/// Compares without an early exit, so the time taken says nothing about the token.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl FromRequestParts<AppState> for Authorized {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let given = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim);
        let ok = match (&state.inner.token, given) {
            (Some(token), Some(given)) => same_secret(token.expose().as_bytes(), given.as_bytes()),
            _ => false,
        };
        if ok {
            return Ok(Authorized);
        }
        let message = match (&state.inner.token, given) {
            (None, _) => "the API is locked: no api_token is configured",
            (Some(_), None) => "missing bearer token",
            (Some(_), Some(_)) => "wrong bearer token",
        };
        let mut resp = json_error(StatusCode::UNAUTHORIZED, message);
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"rapport\""),
        );
        Err(resp)
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready when the database answers and no source has stopped for good (login refused or a
/// permanent failure); sources that are retrying are listed but do not make it unready.
async fn readyz(State(state): State<AppState>) -> Response {
    if let Err(e) = state.store().ping().await {
        warn!("readiness: {e:#}");
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "database": "unreachable" })),
        )
            .into_response();
    }
    let health = match state.store().health().await {
        Ok(h) => h,
        Err(e) => return json_error(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    };
    let config = state.config();
    let ids = config
        .mailboxes
        .iter()
        .map(|m| m.id.as_str())
        .chain(config.calendars.iter().map(|c| c.id.as_str()));
    let mut failing = Vec::new();
    let mut sources = serde_json::Map::new();
    for id in ids {
        let s = health
            .iter()
            .find(|h| h.source_id == id)
            .map(|h| h.state.as_str())
            .unwrap_or("starting");
        if s == "failed" || s == "auth_failed" {
            failing.push(id.to_owned());
        }
        sources.insert(id.to_owned(), json!(s));
    }
    let ready = failing.is_empty();
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        axum::Json(json!({ "ready": ready, "database": "ok", "sources": sources, "failing": failing })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret(b"abc", b"abc"));
        assert!(!same_secret(b"abc", b"abd"));
        assert!(!same_secret(b"abc", b"abcd"));
    }
}
