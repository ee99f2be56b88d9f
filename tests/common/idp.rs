//! A local OAuth2 provider for tests (axum on 127.0.0.1, free port) that follows RFC 6749
//! (authorization code with RFC 7636 PKCE, refresh with rotation, `invalid_grant`), RFC 8628
//! (device flow, `authorization_pending` once) and RFC 7662 (token introspection, which the
//! test Dovecot's oauth2 passdb calls for every XOAUTH2 login).
#![allow(dead_code)]

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

#[derive(Default)]
pub struct IdpState {
    /// Valid refresh tokens and the user each is for.
    pub refresh_tokens: HashMap<String, String>,
    /// Valid access tokens and their user.
    pub access_tokens: HashMap<String, String>,
    /// Issue a new refresh token on every refresh (and retire the old one).
    pub rotate: bool,
    /// `expires_in` of new access tokens, seconds.
    pub expires_in: u64,
    /// Authorization codes handed out by the test's "browser": code → (PKCE challenge, user).
    pub codes: HashMap<String, (String, String)>,
    /// Device codes not yet polled (answered `authorization_pending` once).
    pub pending_devices: HashSet<String>,
    /// How many refresh_token grants were asked for.
    pub refreshes: usize,
    /// How many introspection requests Dovecot made.
    pub introspections: usize,
    next: usize,
}

impl IdpState {
    fn issue(&mut self, user: &str, with_refresh: bool) -> serde_json::Value {
        self.next += 1;
        let access = format!("at-{}-{}", user, self.next);
        self.access_tokens.insert(access.clone(), user.to_owned());
        let mut body = json!({
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        });
        if with_refresh {
            let refresh = format!("rt-{}-{}", user, self.next);
            self.refresh_tokens.insert(refresh.clone(), user.to_owned());
            body["refresh_token"] = json!(refresh);
        }
        body
    }

    /// Revokes every token of `user` (a password change at the provider).
    pub fn revoke_user(&mut self, user: &str) {
        self.refresh_tokens.retain(|_, u| u != user);
        self.access_tokens.retain(|_, u| u != user);
    }
}

pub struct Idp {
    pub state: Arc<Mutex<IdpState>>,
    pub base: String,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Idp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn error(status: StatusCode, code: &str) -> Response {
    (status, Json(json!({ "error": code }))).into_response()
}

async fn token(State(st): State<Arc<Mutex<IdpState>>>, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut st = st.lock().unwrap();
    match f.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {
            st.refreshes += 1;
            let Some(rt) = f.get("refresh_token") else {
                return error(StatusCode::BAD_REQUEST, "invalid_request");
            };
            let Some(user) = st.refresh_tokens.get(rt).cloned() else {
                return error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            let rotate = st.rotate;
            if rotate {
                st.refresh_tokens.remove(rt);
            }
            Json(st.issue(&user, rotate)).into_response()
        }
        Some("authorization_code") => {
            let (Some(code), Some(verifier)) = (f.get("code"), f.get("code_verifier")) else {
                return error(StatusCode::BAD_REQUEST, "invalid_request");
            };
            let Some((challenge, user)) = st.codes.remove(code) else {
                return error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            let expected =
                oauth2::PkceCodeChallenge::from_code_verifier_sha256(&oauth2::PkceCodeVerifier::new(verifier.clone()));
            if expected.as_str() != challenge {
                return error(StatusCode::BAD_REQUEST, "invalid_grant");
            }
            Json(st.issue(&user, true)).into_response()
        }
        Some("urn:ietf:params:oauth:grant-type:device_code") => {
            let Some(code) = f.get("device_code") else {
                return error(StatusCode::BAD_REQUEST, "invalid_request");
            };
            if st.pending_devices.remove(code) {
                return error(StatusCode::BAD_REQUEST, "authorization_pending");
            }
            let Some(user) = code.strip_prefix("device-") else {
                return error(StatusCode::BAD_REQUEST, "invalid_grant");
            };
            let user = user.to_owned();
            Json(st.issue(&user, true)).into_response()
        }
        _ => error(StatusCode::BAD_REQUEST, "unsupported_grant_type"),
    }
}

/// The device authorization endpoint: the device code names the user the test approves.
async fn device(State(st): State<Arc<Mutex<IdpState>>>, Form(f): Form<HashMap<String, String>>) -> Response {
    let user = f.get("client_id").cloned().unwrap_or_default().replace("client-", "");
    let code = format!("device-{user}");
    st.lock().unwrap().pending_devices.insert(code.clone());
    Json(json!({
        "device_code": code,
        "user_code": "WDJB-MJHT",
        "verification_uri": "https://idp.example/device",
        "expires_in": 600,
        "interval": 1,
    }))
    .into_response()
}

async fn introspect(State(st): State<Arc<Mutex<IdpState>>>, Form(f): Form<HashMap<String, String>>) -> Response {
    let mut st = st.lock().unwrap();
    st.introspections += 1;
    let token = f.get("token").cloned().unwrap_or_default();
    match st.access_tokens.get(&token) {
        Some(user) => Json(json!({ "active": true, "username": user })).into_response(),
        None => Json(json!({ "active": false })).into_response(),
    }
}

impl Idp {
    pub async fn start() -> Idp {
        let state = Arc::new(Mutex::new(IdpState {
            rotate: true,
            expires_in: 3600,
            ..Default::default()
        }));
        let app = Router::new()
            .route("/token", post(token))
            .route("/device", post(device))
            .route("/introspect", post(introspect))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Idp { state, base, task }
    }

    /// A refresh token for `user`, as if `rapport auth` had been run.
    pub fn grant(&self, user: &str) -> String {
        let mut st = self.state.lock().unwrap();
        st.next += 1;
        let rt = format!("rt-{user}-granted-{}", st.next);
        st.refresh_tokens.insert(rt.clone(), user.to_owned());
        rt
    }

    /// The `oauth:` block of a mailbox using this provider.
    pub fn oauth_yaml(&self, client: &str, token_file: &str) -> String {
        format!(
            "    auth: oauth2\n    oauth:\n      provider: generic\n      client_id: {client}\n      auth_url: {b}/authorize\n      token_url: {b}/token\n      device_url: {b}/device\n      scopes: [imap, offline_access]\n      token_file: {token_file}\n",
            b = self.base
        )
    }
}
