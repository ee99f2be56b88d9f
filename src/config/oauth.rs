//! OAuth2 settings of a mailbox (`auth: oauth2` with an `oauth:` block): Google, Microsoft 365
//! or a generic provider (its own endpoints and scopes). `rapport auth MAILBOX` obtains the
//! refresh token once; the daemon keeps it (mode 0600) in `token_file` and refreshes access
//! tokens from it.
//!
//! ```yaml
//! auth: oauth2
//! oauth:
//!   provider: google            # google | microsoft | generic
//!   client_id: 1234.apps.googleusercontent.com
//!   client_secret_file: google-client-secret   # optional (_env, _credential too)
//!   tenant: common              # microsoft only; default common
//!   # generic (or to override a provider's defaults):
//!   auth_url: https://idp.example/authorize
//!   token_url: https://idp.example/token
//!   device_url: https://idp.example/device    # for `rapport auth --device`
//!   scopes: [imap, offline_access]
//!   token_file: /var/lib/rapport/oauth/alice-imap.json   # default: $STATE_DIRECTORY/oauth/<mailbox>.json
//! ```

use std::path::PathBuf;

use super::yaml::{Doc, Node, did_you_mean_hint, resolve_path};
use super::{SecretSource, read_secret};

/// Which identity provider issues the tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthProviderKind {
    Google,
    Microsoft,
    Generic,
}

/// Everything needed to obtain and refresh a mailbox's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthConfig {
    /// The mailbox these tokens are for (named in "run `rapport auth <mailbox>`").
    pub mailbox_id: String,
    pub provider: OAuthProviderKind,
    pub client_id: String,
    /// Confidential clients only; Google "desktop app" clients have one that is not secret.
    pub client_secret: Option<SecretSource>,
    pub auth_url: String,
    pub token_url: String,
    /// Device authorization endpoint (RFC 8628), for headless servers.
    pub device_url: Option<String>,
    pub scopes: Vec<String>,
    /// Where the refresh token (and the current access token) are kept, mode 0600.
    pub token_file: PathBuf,
}

/// Google: Gmail over IMAP/SMTP (`https://mail.google.com/`) and Calendar read access.
const GOOGLE_SCOPES: &[&str] = &[
    "https://mail.google.com/",
    "https://www.googleapis.com/auth/calendar.readonly",
];
/// Microsoft 365: Outlook IMAP and SMTP, and a refresh token (`offline_access`).
const MICROSOFT_SCOPES: &[&str] = &[
    "https://outlook.office.com/IMAP.AccessAsUser.All",
    "https://outlook.office.com/SMTP.Send",
    "offline_access",
];

/// The folder refresh tokens go to by default: systemd's `StateDirectory=` when set, else
/// `./oauth` under the working directory.
fn default_token_dir() -> PathBuf {
    std::env::var_os("STATE_DIRECTORY")
        .map(|d| {
            // StateDirectory= may list several, separated by colons: the first is ours.
            let d = d.to_string_lossy().split(':').next().unwrap_or_default().to_owned();
            PathBuf::from(d)
        })
        .unwrap_or_else(|| PathBuf::from("."))
        .join("oauth")
}

/// Reads the `oauth:` block of mailbox `mailbox_id`.
pub(super) fn read_oauth(doc: &Doc, node: &Node, mailbox_id: &str) -> Option<OAuthConfig> {
    let m = doc.map(node, "`oauth`")?;
    let kind_node = m.get("provider");
    let provider = match m.req::<String>("provider").as_deref() {
        Some("google") => Some(OAuthProviderKind::Google),
        Some("microsoft") => Some(OAuthProviderKind::Microsoft),
        Some("generic") => Some(OAuthProviderKind::Generic),
        Some(other) => {
            let known = ["google", "microsoft", "generic"];
            let hint = did_you_mean_hint(other, known).unwrap_or_else(|| "use google, microsoft or generic".into());
            if let Some(n) = kind_node {
                doc.error_hint(n, format!("unknown OAuth provider `{other}`"), hint);
            }
            None
        }
        None => None,
    };
    let client_id: Option<String> = m.req("client_id");
    let client_secret = read_secret(&m, "client_secret", false);
    let tenant: String = m.or("tenant", "common".to_string());
    let auth_url: Option<String> = m.opt("auth_url");
    let token_url: Option<String> = m.opt("token_url");
    let device_url: Option<String> = m.opt("device_url");
    let scopes: Option<Vec<String>> = m.opt("scopes");
    let token_file = m.opt::<PathBuf>("token_file").map(|p| resolve_path(&doc.file, &p));
    let provider = provider?;
    let (auth_default, token_default, device_default, scopes_default): (String, String, Option<String>, &[&str]) =
        match provider {
            OAuthProviderKind::Google => (
                "https://accounts.google.com/o/oauth2/v2/auth".into(),
                "https://oauth2.googleapis.com/token".into(),
                Some("https://oauth2.googleapis.com/device/code".into()),
                GOOGLE_SCOPES,
            ),
            OAuthProviderKind::Microsoft => {
                let base = format!("https://login.microsoftonline.com/{tenant}/oauth2/v2.0");
                (
                    format!("{base}/authorize"),
                    format!("{base}/token"),
                    Some(format!("{base}/devicecode")),
                    MICROSOFT_SCOPES,
                )
            }
            OAuthProviderKind::Generic => {
                for key in ["auth_url", "token_url", "scopes"] {
                    if m.key_node(key).is_none() {
                        doc.error(m.node(), format!("a generic OAuth provider needs `{key}`"));
                    }
                }
                (String::new(), String::new(), None, &[])
            }
        };
    let check_url = |key: &'static str, url: &str| {
        let local = url.starts_with("http://127.0.0.1")
            || url.starts_with("http://localhost")
            || url.starts_with("http://[::1]");
        if !(url.starts_with("https://") || local)
            && let Some(n) = m.key_node(key)
        {
            doc.error_hint(
                n,
                format!("`{key}` must be an https:// URL"),
                "tokens are never sent in clear text (http:// only to loopback, for tests)",
            );
        }
    };
    for (key, url) in [
        ("auth_url", &auth_url),
        ("token_url", &token_url),
        ("device_url", &device_url),
    ] {
        if let Some(u) = url {
            check_url(key, u);
        }
    }
    m.finish();
    Some(OAuthConfig {
        mailbox_id: mailbox_id.to_owned(),
        provider,
        client_id: client_id?,
        client_secret,
        auth_url: auth_url.unwrap_or(auth_default),
        token_url: token_url.unwrap_or(token_default),
        device_url: device_url.or(device_default),
        scopes: scopes.unwrap_or_else(|| scopes_default.iter().map(|s| s.to_string()).collect()),
        token_file: token_file.unwrap_or_else(|| default_token_dir().join(format!("{mailbox_id}.json"))),
    })
}
