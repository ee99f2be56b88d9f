//! Outgoing mail: one pooled lettre transport per sending mailbox, the message builder with
//! the headers sequences need (Message-ID, Date, threading, List-Unsubscribe), and the sorting
//! of SMTP outcomes into sent / retry / failed.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chrono::{DateTime, Utc};
use lettre::address::Envelope;
use lettre::message::header::{ContentType, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};
use lettre::transport::smtp::PoolConfig;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::clock::SharedClock;
use crate::config::{ImapAuth, Secret, SmtpConfig, TlsMode};
use crate::oauth::TokenSource;

/// What became of one SMTP transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendOutcome {
    Sent,
    /// A temporary failure (4xx, connection trouble): try again later.
    Retry(String),
    /// The server refused the recipient for good (550, 551, 553): the address bounced.
    RecipientRejected(String),
    /// Another permanent failure (a 5xx that is not about the recipient, e.g. a refused login).
    Failed(String),
}

/// A pooled SMTP client for one mailbox.
#[derive(Clone)]
pub struct SmtpClient {
    login: Arc<Login>,
}

enum Login {
    /// No login, a password, or a bearer token managed elsewhere: one transport for good.
    Fixed(AsyncSmtpTransport<Tokio1Executor>),
    /// XOAUTH2 with the access tokens of the mailbox's OAuth2 login. Lettre's credentials are
    /// fixed per transport, so the transport is rebuilt whenever the token changes.
    OAuth(Box<OAuthLogin>),
}

struct OAuthLogin {
    cfg: SmtpConfig,
    user: String,
    tokens: TokenSource,
    current: tokio::sync::Mutex<Option<(String, AsyncSmtpTransport<Tokio1Executor>)>>,
}

fn transport(
    cfg: &SmtpConfig,
    credentials: Option<(Credentials, Vec<Mechanism>)>,
) -> Result<AsyncSmtpTransport<Tokio1Executor>> {
    let mut b = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(cfg.host.clone())
        .port(cfg.port)
        .timeout(Some(Duration::from_secs(60)))
        .pool_config(PoolConfig::new().max_size(4).idle_timeout(Duration::from_secs(60)));
    let tls_params = || -> Result<TlsParameters> {
        let mut p = TlsParameters::builder(cfg.host.clone());
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).with_context(|| format!("reading CA file {}", ca.display()))?;
            p = p.add_root_certificate(Certificate::from_pem(&pem).context("parsing the CA file")?);
        }
        p.build_rustls().context("setting up TLS")
    };
    b = match cfg.tls {
        TlsMode::Implicit => b.tls(Tls::Wrapper(tls_params()?)),
        TlsMode::StartTls => b.tls(Tls::Required(tls_params()?)),
        TlsMode::None => b.tls(Tls::None),
    };
    if let Some((credentials, mechanisms)) = credentials {
        b = b.credentials(credentials).authentication(mechanisms);
    }
    Ok(b.build())
}

impl SmtpClient {
    /// Builds the transport; secrets are read now (OAuth2 tokens at each send) and never logged.
    pub fn new(cfg: &SmtpConfig, clock: SharedClock) -> Result<SmtpClient> {
        let fixed = |secret: Secret, mechanisms: Vec<Mechanism>| -> Result<Login> {
            let credentials = cfg
                .username
                .as_ref()
                .map(|user| (Credentials::new(user.clone(), secret.expose().to_owned()), mechanisms));
            Ok(Login::Fixed(transport(cfg, credentials)?))
        };
        let login = match (&cfg.username, &cfg.auth) {
            (Some(_), Some(ImapAuth::Password(s))) => fixed(s.read()?, vec![Mechanism::Plain, Mechanism::Login])?,
            (Some(_), Some(ImapAuth::XOAuth2(s))) => fixed(s.read()?, vec![Mechanism::Xoauth2])?,
            (Some(user), Some(ImapAuth::OAuth2(o))) => Login::OAuth(Box::new(OAuthLogin {
                cfg: cfg.clone(),
                user: user.clone(),
                tokens: TokenSource::new(o, clock)?,
                current: tokio::sync::Mutex::new(None),
            })),
            _ => Login::Fixed(transport(cfg, None)?),
        };
        Ok(SmtpClient { login: Arc::new(login) })
    }

    /// The transport to send with: for OAuth2, one logged in with a valid access token.
    async fn transport(&self) -> std::result::Result<AsyncSmtpTransport<Tokio1Executor>, SendOutcome> {
        let (cfg, user, tokens, current) = match &*self.login {
            Login::Fixed(t) => return Ok(t.clone()),
            Login::OAuth(o) => (&o.cfg, &o.user, &o.tokens, &o.current),
        };
        // A token the provider refuses, or a network failure, is worth another try later: the
        // step waits (with backoff) until `rapport auth` has been run, and is not lost.
        let token = tokens
            .access_token()
            .await
            .map_err(|e| SendOutcome::Retry(format!("no OAuth2 access token for SMTP: {e}")))?;
        let mut current = current.lock().await;
        if let Some((t, transport)) = current.as_ref()
            && t == token.expose()
        {
            return Ok(transport.clone());
        }
        let credentials = Credentials::new(user.clone(), token.expose().to_owned());
        let built = transport(cfg, Some((credentials, vec![Mechanism::Xoauth2])))
            .map_err(|e| SendOutcome::Failed(format!("{e:#}")))?;
        *current = Some((token.expose().to_owned(), built.clone()));
        Ok(built)
    }

    /// After the server refused an OAuth2 login: forget the token so the next send refreshes it.
    async fn token_refused(&self) {
        if let Login::OAuth(o) = &*self.login {
            o.current.lock().await.take();
            if let Err(e) = o.tokens.refreshed_token().await {
                tracing::warn!("cannot refresh the OAuth2 token for SMTP: {e}");
            }
        }
    }

    /// Whether `e` is the server refusing this client's OAuth2 access token: 534/535, or the
    /// RFC 7628 error challenge (a 334 with a JSON status) that servers such as Gmail send
    /// first, which lettre reports as a client error because XOAUTH2 expects no challenge.
    fn oauth_refused(&self, e: &lettre::transport::smtp::Error) -> bool {
        matches!(*self.login, Login::OAuth(_))
            && (e
                .status()
                .is_some_and(|c| ["534", "535"].contains(&c.to_string().as_str()))
                || (e.is_client() && e.to_string().contains("does not expect a challenge")))
    }

    /// Connects, negotiates TLS, logs in and says QUIT (`rapport doctor`).
    pub async fn test_login(&self) -> std::result::Result<(), String> {
        let transport = self.transport().await.map_err(|o| match o {
            SendOutcome::Retry(m) | SendOutcome::Failed(m) | SendOutcome::RecipientRejected(m) => m,
            SendOutcome::Sent => String::new(),
        })?;
        match transport.test_connection().await {
            Ok(true) => Ok(()),
            Ok(false) => Err("the server closed the connection".to_owned()),
            Err(e) if self.oauth_refused(&e) => Err(format!(
                "the server refused the OAuth2 access token ({e}); run `rapport auth` for this mailbox"
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Sends a message exactly as stored in the outbox.
    pub async fn send_raw(&self, from: &str, to: &str, raw: &[u8]) -> SendOutcome {
        let envelope = match (from.parse::<Address>(), to.parse::<Address>()) {
            (Ok(f), Ok(t)) => match Envelope::new(Some(f), vec![t]) {
                Ok(e) => e,
                Err(e) => return SendOutcome::Failed(format!("bad envelope: {e}")),
            },
            (Err(e), _) | (_, Err(e)) => return SendOutcome::RecipientRejected(format!("bad address: {e}")),
        };
        let transport = match self.transport().await {
            Ok(t) => t,
            Err(outcome) => return outcome,
        };
        match transport.send_raw(&envelope, raw).await {
            Ok(_) => SendOutcome::Sent,
            // With OAuth2 a refused login means an expired or revoked access token: refresh it
            // and try again later rather than failing the step for good.
            Err(e) if self.oauth_refused(&e) => {
                self.token_refused().await;
                SendOutcome::Retry(e.to_string())
            }
            Err(e) => classify(&e),
        }
    }
}

fn classify(e: &lettre::transport::smtp::Error) -> SendOutcome {
    let text = e.to_string();
    if e.is_permanent() {
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        if ["550", "551", "553"].iter().any(|c| code.starts_with(c)) {
            SendOutcome::RecipientRejected(text)
        } else {
            SendOutcome::Failed(text)
        }
    } else {
        // 4xx, timeouts, refused connections, TLS hiccups: all worth another try.
        SendOutcome::Retry(text)
    }
}

/// Everything a sequence email carries.
#[derive(Debug, Clone)]
pub struct OutgoingEmail<'a> {
    pub message_id: &'a str,
    pub from_name: &'a str,
    pub from: &'a str,
    pub to_name: Option<&'a str>,
    pub to: &'a str,
    pub subject: &'a str,
    pub text: &'a str,
    pub html: Option<&'a str>,
    pub date: DateTime<Utc>,
    /// Message-IDs of the thread so far, oldest first (the last one is In-Reply-To).
    pub thread: &'a [String],
    /// `https://…` one-click link, and the mailto address with the token in its subject.
    pub unsubscribe_https: Option<&'a str>,
    pub unsubscribe_mailto: Option<&'a str>,
}

/// A new Message-ID at the sender's domain (without angle brackets, as the store keeps them).
pub fn new_message_id(from: &str) -> String {
    let domain = crate::address::domain_of(from);
    let domain = if domain.is_empty() { "rapport.invalid" } else { domain };
    format!("rapport.{:016x}{:016x}@{domain}", fastrand::u64(..), fastrand::u64(..))
}

/// Builds the RFC 5322 message.
pub fn build_message(m: &OutgoingEmail<'_>) -> Result<Vec<u8>> {
    let from: Address = m
        .from
        .parse()
        .with_context(|| format!("bad sender address {}", m.from))?;
    let to: Address =
        m.to.parse()
            .with_context(|| format!("bad recipient address {}", m.to))?;
    let mut b = Message::builder()
        .from(Mailbox::new(Some(m.from_name.to_owned()), from))
        .to(Mailbox::new(m.to_name.map(str::to_owned), to))
        .subject(m.subject)
        .message_id(Some(format!("<{}>", m.message_id)))
        .date(m.date.into());
    if let Some(last) = m.thread.last() {
        b = b.in_reply_to(format!("<{last}>"));
        let refs: Vec<String> = m.thread.iter().map(|id| format!("<{id}>")).collect();
        b = b.references(refs.join(" "));
    }
    let mut targets = Vec::new();
    if let Some(addr) = m.unsubscribe_mailto {
        targets.push(format!("<mailto:{addr}>"));
    }
    if let Some(url) = m.unsubscribe_https {
        targets.push(format!("<{url}>"));
    }
    if !targets.is_empty() {
        b = b.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe"),
            targets.join(", "),
        ));
    }
    if m.unsubscribe_https.is_some() {
        b = b.raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("List-Unsubscribe-Post"),
            "List-Unsubscribe=One-Click".to_owned(),
        ));
    }
    let msg = match m.html {
        Some(html) => b.multipart(MultiPart::alternative_plain_html(m.text.to_owned(), html.to_owned())),
        None => b.singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(m.text.to_owned()),
        ),
    }
    .context("building the message")?;
    Ok(msg.formatted())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_for_a_follow_up() {
        let thread = vec!["a@example.com".to_string(), "b@example.com".to_string()];
        let raw = build_message(&OutgoingEmail {
            message_id: "c@example.com",
            from_name: "Alice",
            from: "alice@example.com",
            to_name: Some("Sara Lind"),
            to: "sara@acme.example",
            subject: "Re: Hello",
            text: "Hi Sara",
            html: None,
            date: DateTime::parse_from_rfc3339("2026-11-02T09:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
            thread: &thread,
            unsubscribe_https: Some("https://r.example/u/tok"),
            unsubscribe_mailto: Some("unsubscribe@example.com?subject=unsubscribe%20tok"),
        })
        .unwrap();
        let text = String::from_utf8(raw).unwrap();
        assert!(text.contains("Message-ID: <c@example.com>"), "{text}");
        assert!(text.contains("In-Reply-To: <b@example.com>"), "{text}");
        assert!(text.contains("References: <a@example.com> <b@example.com>"), "{text}");
        assert!(
            text.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click"),
            "{text}"
        );
        assert!(text.contains("Date: Mon, 02 Nov 2026 09:00:00"), "{text}");
    }

    #[test]
    fn message_ids_are_unique_and_at_the_sender_domain() {
        let a = new_message_id("alice@example.com");
        assert!(a.ends_with("@example.com"));
        assert_ne!(a, new_message_id("alice@example.com"));
    }
}
