//! `rapport auth MAILBOX`: obtaining a mailbox's first refresh token, once, by an operator.
//!
//! - In a browser: the authorization-code flow with PKCE (RFC 7636) and a loopback redirect
//!   (RFC 8252): Rapport listens on 127.0.0.1 on a free port, prints the provider's URL, and
//!   takes the code from the redirect.
//! - On a headless server (`--device`): the device flow (RFC 8628): Rapport prints a URL and a
//!   code to enter on any other device, and polls the token endpoint until it is done.
//!
//! Either way the tokens go to the mailbox's `token_file` (mode 0600) and nothing secret is
//! printed or logged.

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, DeviceAuthorizationUrl, PkceCodeChallenge,
    RedirectUrl, Scope, StandardDeviceAuthorizationResponse, TokenResponse, TokenUrl,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::{StoredToken, http_client, save_token};
use crate::clock::SharedClock;
use crate::config::{OAuthConfig, OAuthProviderKind};

/// How long `rapport auth` waits for the operator.
const WAIT_FOR_OPERATOR: Duration = Duration::from_secs(15 * 60);

fn client_id_and_secret(cfg: &OAuthConfig) -> Result<(ClientId, Option<ClientSecret>)> {
    let secret = match &cfg.client_secret {
        Some(src) => Some(ClientSecret::new(src.read()?.expose().to_owned())),
        None => None,
    };
    Ok((ClientId::new(cfg.client_id.clone()), secret))
}

fn stored(response: &impl TokenResponse, clock: &SharedClock) -> Result<StoredToken> {
    let refresh = response.refresh_token().ok_or_else(|| {
        anyhow!("the provider returned no refresh token (Google: the client must ask for offline access; Microsoft: add the offline_access scope)")
    })?;
    Ok(StoredToken {
        refresh_token: refresh.secret().clone(),
        access_token: Some(response.access_token().secret().clone()),
        expires_at: response
            .expires_in()
            .and_then(|d| chrono::Duration::from_std(d).ok())
            .map(|d| clock.now() + d),
    })
}

/// The authorization-code flow with PKCE and a loopback redirect. `show` gets the URL the
/// operator must open. Stores and returns the tokens.
pub async fn authorize_in_browser(cfg: &OAuthConfig, clock: SharedClock, show: impl Fn(&str)) -> Result<StoredToken> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .context("listening on 127.0.0.1 for the redirect")?;
    let redirect = format!("http://127.0.0.1:{}/", listener.local_addr()?.port());
    let (id, secret) = client_id_and_secret(cfg)?;
    let mut client = BasicClient::new(id)
        .set_auth_uri(AuthUrl::new(cfg.auth_url.clone()).context("auth_url")?)
        .set_token_uri(TokenUrl::new(cfg.token_url.clone()).context("token_url")?)
        .set_redirect_uri(RedirectUrl::new(redirect).context("redirect URL")?);
    if let Some(s) = secret {
        client = client.set_client_secret(s);
    }
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let mut request = client
        .authorize_url(CsrfToken::new_random)
        .set_pkce_challenge(challenge)
        .add_scopes(cfg.scopes.iter().map(|s| Scope::new(s.clone())));
    if cfg.provider == OAuthProviderKind::Google {
        // Without these Google issues no refresh token (or none on a second consent).
        request = request
            .add_extra_param("access_type", "offline")
            .add_extra_param("prompt", "consent");
    }
    let (url, state) = request.url();
    show(url.as_str());
    let code = tokio::time::timeout(WAIT_FOR_OPERATOR, receive_code(&listener, state.secret()))
        .await
        .map_err(|_| anyhow!("no answer from the browser within {WAIT_FOR_OPERATOR:?}"))??;
    let http = http_client()?;
    let response = client
        .exchange_code(AuthorizationCode::new(code))
        .set_pkce_verifier(verifier)
        .request_async(&http)
        .await
        .map_err(|e| anyhow!("exchanging the authorization code: {}", describe(&e)))?;
    let token = stored(&response, &clock)?;
    save_token(&cfg.token_file, &token)?;
    Ok(token)
}

/// The device flow. `show` gets the instructions (URL and user code) for the operator.
pub async fn authorize_on_device(cfg: &OAuthConfig, clock: SharedClock, show: impl Fn(&str)) -> Result<StoredToken> {
    let device_url = cfg
        .device_url
        .clone()
        .ok_or_else(|| anyhow!("mailbox {}: no `device_url` for this provider", cfg.mailbox_id))?;
    let (id, secret) = client_id_and_secret(cfg)?;
    let mut client = BasicClient::new(id)
        .set_token_uri(TokenUrl::new(cfg.token_url.clone()).context("token_url")?)
        .set_device_authorization_url(DeviceAuthorizationUrl::new(device_url).context("device_url")?);
    if let Some(s) = secret {
        client = client.set_client_secret(s);
    }
    let http = http_client()?;
    let details: StandardDeviceAuthorizationResponse = client
        .exchange_device_code()
        .add_scopes(cfg.scopes.iter().map(|s| Scope::new(s.clone())))
        .request_async(&http)
        .await
        .map_err(|e| anyhow!("asking for a device code: {}", describe(&e)))?;
    show(&format!(
        "Open {} on any device and enter the code {}",
        details.verification_uri().as_str(),
        details.user_code().secret()
    ));
    let response = client
        .exchange_device_access_token(&details)
        .request_async(&http, tokio::time::sleep, Some(WAIT_FOR_OPERATOR))
        .await
        .map_err(|e| anyhow!("waiting for the device authorization: {}", describe(&e)))?;
    let token = stored(&response, &clock)?;
    save_token(&cfg.token_file, &token)?;
    Ok(token)
}

/// An OAuth error without the response body (which may echo what was sent).
fn describe<RE: std::error::Error + 'static, T: oauth2::ErrorResponse + 'static>(
    e: &oauth2::RequestTokenError<RE, T>,
) -> String {
    match e {
        oauth2::RequestTokenError::ServerResponse(r) => format!("the provider answered {r}"),
        oauth2::RequestTokenError::Request(e) => format!("request failed: {e}"),
        oauth2::RequestTokenError::Parse(e, _) => format!("unreadable answer: {e}"),
        oauth2::RequestTokenError::Other(e) => e.clone(),
    }
}

/// Serves the loopback redirect until it brings a code with the expected `state`.
async fn receive_code(listener: &TcpListener, state: &str) -> Result<String> {
    loop {
        let (mut sock, _) = listener.accept().await.context("accepting the redirect")?;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            let n = sock.read(&mut buf).await.unwrap_or(0);
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        let head = String::from_utf8_lossy(&head);
        let target = head
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("GET "))
            .and_then(|l| l.split(' ').next())
            .unwrap_or("/");
        let url = oauth2::url::Url::parse(&format!("http://127.0.0.1{target}")).context("redirect URL")?;
        let param = |name: &str| url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
        let (status, body, outcome) = match (param("code"), param("error")) {
            (_, Some(err)) => (
                "400 Bad Request",
                format!("Authorization failed: {err}. Run `rapport auth` again.\n"),
                Some(Err(anyhow!("the provider refused: {err}"))),
            ),
            (Some(code), None) if param("state").as_deref() == Some(state) => (
                "200 OK",
                "Rapport is authorized. You can close this window.\n".to_string(),
                Some(Ok(code)),
            ),
            (Some(_), None) => (
                "400 Bad Request",
                "This answer does not belong to this authorization request.\n".to_string(),
                None,
            ),
            (None, None) => ("404 Not Found", "Not found.\n".to_string(), None),
        };
        let reply = format!(
            "HTTP/1.1 {status}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = sock.write_all(reply.as_bytes()).await;
        let _ = sock.shutdown().await;
        match outcome {
            Some(Ok(code)) => return Ok(code),
            Some(Err(e)) => bail!(e),
            None => continue,
        }
    }
}
