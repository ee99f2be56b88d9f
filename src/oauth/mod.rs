//! OAuth2 access tokens for XOAUTH2 logins (Gmail, Microsoft 365, a generic provider): the
//! refresh token `rapport auth` obtained is kept in a 0600 file with the current access token;
//! [`TokenSource::access_token`] hands out the access token, refreshing it shortly before it
//! expires and after a server refused it, and stores a rotated refresh token at once. A refresh
//! token the provider no longer accepts (`invalid_grant`: revoked, expired, password changed)
//! becomes [`OAuthError::NeedsAuthorization`], which stops that mailbox only, with the command
//! to run.
//!
//! For SMTP (the sequence sender): `TokenSource::new(&oauth_config, clock)`, then
//! `source.access_token().await?` gives the bearer token for lettre's `Mechanism::Xoauth2`
//! (`Credentials::new(user, token)`), or [`xoauth2_string`] builds the SASL string directly.

pub mod flow;

use std::io::Write;
use std::path::Path;

use anyhow::{Context, anyhow};
use chrono::{DateTime, Duration, Utc};
use oauth2::basic::{BasicClient, BasicErrorResponseType};
use oauth2::{AuthUrl, ClientId, ClientSecret, RefreshToken, RequestTokenError, TokenResponse, TokenUrl};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::clock::SharedClock;
use crate::config::{OAuthConfig, Secret};

/// Refresh this long before the access token expires.
pub const REFRESH_MARGIN: Duration = Duration::minutes(5);

/// Why no access token could be had.
#[derive(Debug, thiserror::Error)]
pub enum OAuthError {
    /// The refresh token is refused (or there is none): an operator must run `rapport auth`.
    #[error("{0}")]
    NeedsAuthorization(String),
    /// The provider could not be reached or answered oddly: retry later.
    #[error(transparent)]
    Transient(anyhow::Error),
}

/// The SASL XOAUTH2 initial response (before base64), as Google and Microsoft define it.
pub fn xoauth2_string(user: &str, token: &str) -> String {
    format!("user={user}\x01auth=Bearer {token}\x01\x01")
}

/// What the token file holds.
#[derive(Clone, Serialize, Deserialize)]
pub struct StoredToken {
    pub refresh_token: String,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl std::fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// Reads the token file; `None` when there is none yet.
pub fn load_token(path: &Path) -> anyhow::Result<Option<StoredToken>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text)
            .map(Some)
            .with_context(|| format!("{} is not a Rapport token file", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes the token file with mode 0600 (its folder 0700), atomically: a crash leaves the old
/// file or the new one, never half of one (a lost rotated refresh token cannot be recovered).
pub fn save_token(path: &Path, token: &StoredToken) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("token")
    ));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec(token)?)
        .and_then(|()| f.sync_all())
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("replacing {}", path.display()))?;
    Ok(())
}

/// An HTTP client for token endpoints: no redirects (a redirect could carry the credentials
/// elsewhere), bounded time.
pub fn http_client() -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .context("building the HTTP client")
}

/// Access tokens for one mailbox.
pub struct TokenSource {
    config: OAuthConfig,
    http: reqwest::Client,
    clock: SharedClock,
}

impl TokenSource {
    pub fn new(config: &OAuthConfig, clock: SharedClock) -> anyhow::Result<TokenSource> {
        Ok(TokenSource {
            config: config.clone(),
            http: http_client()?,
            clock,
        })
    }

    fn reauthorize(&self, why: &str) -> OAuthError {
        OAuthError::NeedsAuthorization(format!(
            "{why}; run `rapport auth {}` to authorize the mailbox again",
            self.config.mailbox_id
        ))
    }

    /// A valid access token: the stored one while it has more than [`REFRESH_MARGIN`] left,
    /// else a fresh one from the refresh token.
    pub async fn access_token(&self) -> Result<Secret, OAuthError> {
        let stored = load_token(&self.config.token_file).map_err(OAuthError::Transient)?;
        let Some(stored) = stored else {
            return Err(self.reauthorize(&format!("no OAuth token in {}", self.config.token_file.display())));
        };
        let now = self.clock.now();
        if let (Some(token), Some(exp)) = (&stored.access_token, stored.expires_at)
            && exp - REFRESH_MARGIN > now
        {
            return Ok(Secret::new(token.clone()));
        }
        self.refresh(stored).await
    }

    /// Forgets the stored access token (the server refused it) and gets a new one.
    pub async fn refreshed_token(&self) -> Result<Secret, OAuthError> {
        let stored = load_token(&self.config.token_file)
            .map_err(OAuthError::Transient)?
            .ok_or_else(|| self.reauthorize("no OAuth token"))?;
        self.refresh(stored).await
    }

    async fn refresh(&self, stored: StoredToken) -> Result<Secret, OAuthError> {
        let id = &self.config.mailbox_id;
        let client = self.client().map_err(OAuthError::Transient)?;
        let refresh = RefreshToken::new(stored.refresh_token.clone());
        let answer = client.exchange_refresh_token(&refresh).request_async(&self.http).await;
        let response = match answer {
            Ok(r) => r,
            Err(RequestTokenError::ServerResponse(e)) => {
                let code = e.error().clone();
                let permanent = matches!(
                    code,
                    BasicErrorResponseType::InvalidGrant
                        | BasicErrorResponseType::InvalidClient
                        | BasicErrorResponseType::UnauthorizedClient
                );
                if permanent {
                    warn!(mailbox = %id, error = %code, "the OAuth provider refused the refresh token");
                    return Err(self.reauthorize(&format!("the OAuth provider refused the refresh token ({code})")));
                }
                return Err(OAuthError::Transient(anyhow!("token refresh refused: {code}")));
            }
            Err(RequestTokenError::Request(e)) => {
                return Err(OAuthError::Transient(anyhow!("cannot reach the token endpoint: {e}")));
            }
            Err(e) => return Err(OAuthError::Transient(anyhow!("token refresh failed: {e}"))),
        };
        let now = self.clock.now();
        let rotated = response.refresh_token().map(|r| r.secret().clone());
        let token = StoredToken {
            refresh_token: rotated.clone().unwrap_or(stored.refresh_token),
            access_token: Some(response.access_token().secret().clone()),
            expires_at: response
                .expires_in()
                .and_then(|d| Duration::from_std(d).ok())
                .map(|d| now + d),
        };
        save_token(&self.config.token_file, &token).map_err(OAuthError::Transient)?;
        info!(mailbox = %id, rotated = rotated.is_some(), expires_at = ?token.expires_at, "OAuth access token refreshed");
        Ok(Secret::new(token.access_token.unwrap_or_default()))
    }

    fn client(
        &self,
    ) -> anyhow::Result<
        BasicClient<
            oauth2::EndpointSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointNotSet,
            oauth2::EndpointSet,
        >,
    > {
        let mut client = BasicClient::new(ClientId::new(self.config.client_id.clone()))
            .set_auth_uri(AuthUrl::new(self.config.auth_url.clone()).context("auth_url")?)
            .set_token_uri(TokenUrl::new(self.config.token_url.clone()).context("token_url")?);
        if let Some(src) = &self.config.client_secret {
            client = client.set_client_secret(ClientSecret::new(src.read()?.expose().to_owned()));
        }
        Ok(client)
    }
}
