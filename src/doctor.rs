//! `rapport doctor`: checks everything the daemon needs, one verdict per line, so an operator
//! sees at once what is wrong: the config, the database (and its clock), and for each mailbox
//! the server's reachability, TLS and the login (password or bearer token); for OAuth2
//! mailboxes the token and the provider's clock (its HTTP `Date` header); for mailboxes that
//! send, the SMTP server, its TLS and the login; for each calendar, its feed, file or server,
//! read with its credentials (nothing is stored).

use std::fmt;
use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::net::TcpStream;

use crate::clock::SharedClock;
use crate::config::{Config, ConfigError, ImapAuth, MailboxSource, OAuthConfig, SmtpConfig, TlsMode, redact_url};
use crate::daemon::probe_calendar;
use crate::oauth::{OAuthError, TokenSource, load_token};
use crate::sequences::smtp::SmtpClient;
use crate::sources::mail::imap;
use crate::store::{Backend, Store};

/// How long one network check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(15);
/// Clock difference above which the doctor fails (OAuth tokens and TLS certificates are
/// checked against the local clock; IMAP SINCE searches by date).
const MAX_SKEW: chrono::Duration = chrono::Duration::seconds(60);

/// A check's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Ok,
    Fail,
    /// Not checked, with the reason in the line (nothing configured to check).
    Skip,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Ok => "ok  ",
            Verdict::Fail => "FAIL",
            Verdict::Skip => "skip",
        })
    }
}

/// One line of the report.
#[derive(Debug, Clone)]
pub struct Check {
    pub verdict: Verdict,
    /// What was checked: `config`, `database`, `mailbox alice-imap: login`.
    pub subject: String,
    pub detail: String,
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.verdict, self.subject, self.detail)
    }
}

/// Every check's line.
#[derive(Debug, Default)]
pub struct Report {
    pub checks: Vec<Check>,
}

impl Report {
    fn push(&mut self, verdict: Verdict, subject: impl Into<String>, detail: impl Into<String>) {
        self.checks.push(Check {
            verdict,
            subject: subject.into(),
            detail: detail.into(),
        });
    }

    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.verdict == Verdict::Fail)
    }
}

/// Runs every check against the config at `path`.
pub async fn run(path: &Path, clock: SharedClock) -> Report {
    let mut report = Report::default();
    let config = match Config::load(path) {
        Ok(c) => {
            report.push(
                Verdict::Ok,
                "config",
                format!(
                    "{} is valid ({} reps, {} mailboxes, {} calendars)",
                    path.display(),
                    c.reps.len(),
                    c.mailboxes.len(),
                    c.calendars.len()
                ),
            );
            c
        }
        Err(ConfigError::Invalid(d)) => {
            report.push(Verdict::Fail, "config", format!("{} is invalid:\n{d}", path.display()));
            return report;
        }
        Err(e) => {
            report.push(Verdict::Fail, "config", e.to_string());
            return report;
        }
    };
    check_database(&config, clock.clone(), &mut report).await;
    for mb in &config.mailboxes {
        if let MailboxSource::Imap(i) = &mb.source
            && let ImapAuth::OAuth2(oauth) = &i.auth
        {
            check_oauth(oauth, clock.clone(), &mut report).await;
        }
        check_mailbox(mb.id.as_str(), &mb.source, &mut report).await;
    }
    for cal in &config.calendars {
        let subject = format!("calendar {}", cal.id);
        let tz = config
            .calendar_owner(&cal.id)
            .map_or(chrono_tz::Tz::UTC, |r| r.time_zone);
        match tokio::time::timeout(CHECK_TIMEOUT, probe_calendar(cal, tz, clock.now())).await {
            Ok(Ok(found)) => report.push(Verdict::Ok, subject, found),
            Ok(Err(e)) => {
                let hint = if e.is_auth() {
                    " (credentials refused: check the token or password)"
                } else {
                    ""
                };
                report.push(Verdict::Fail, subject, format!("{e:#}{hint}"))
            }
            Err(_) => report.push(Verdict::Fail, subject, format!("no answer within {CHECK_TIMEOUT:?}")),
        }
    }
    for mb in &config.mailboxes {
        if let Some(smtp) = &mb.smtp {
            check_smtp(&mb.id, smtp, clock.clone(), &mut report).await;
        }
    }
    if config.mailboxes.iter().all(|m| m.smtp.is_none()) {
        report.push(Verdict::Skip, "smtp", "no mailbox has an `smtp:` block (nothing sends)");
    }
    report
}

/// Connects to a sending mailbox's SMTP server, with its TLS and login, and says QUIT.
async fn check_smtp(id: &str, cfg: &SmtpConfig, clock: SharedClock, report: &mut Report) {
    let subject = format!("mailbox {id}: smtp");
    let server = format!("{}:{} ({:?})", cfg.host, cfg.port, cfg.tls);
    let client = match SmtpClient::new(cfg, clock) {
        Ok(c) => c,
        Err(e) => return report.push(Verdict::Fail, subject, format!("{server}: {e:#}")),
    };
    match tokio::time::timeout(CHECK_TIMEOUT, client.test_login()).await {
        Ok(Ok(())) => {
            let login = match &cfg.username {
                Some(user) => format!("{user} logged in"),
                None => "no login configured".to_owned(),
            };
            report.push(Verdict::Ok, subject, format!("{server}: connected, {login}"))
        }
        Ok(Err(e)) => report.push(Verdict::Fail, subject, format!("{server}: {e}")),
        Err(_) => report.push(
            Verdict::Fail,
            subject,
            format!("{server}: no answer within {CHECK_TIMEOUT:?}"),
        ),
    }
}

async fn check_database(config: &Config, clock: SharedClock, report: &mut Report) {
    let url = redact_url(&config.database.url);
    let store = match tokio::time::timeout(CHECK_TIMEOUT, Store::open(config, clock.clone())).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            report.push(Verdict::Fail, "database", format!("{url}: {e:#}"));
            return;
        }
        Err(_) => {
            report.push(
                Verdict::Fail,
                "database",
                format!("{url}: no answer within {CHECK_TIMEOUT:?}"),
            );
            return;
        }
    };
    match store.ping().await {
        Ok(()) => report.push(Verdict::Ok, "database", format!("{url} answers")),
        Err(e) => {
            report.push(Verdict::Fail, "database", format!("{url}: {e:#}"));
            return;
        }
    }
    match store.pending_migrations().await {
        Ok(0) => report.push(Verdict::Ok, "database schema", "every migration is applied"),
        Ok(n) => report.push(
            Verdict::Ok,
            "database schema",
            format!("{n} migration(s) not applied yet; `rapport run` or `rapport migrate` applies them"),
        ),
        Err(e) => report.push(Verdict::Fail, "database schema", format!("{e:#}")),
    }
    if store.backend() == Backend::Postgres {
        match store.server_time().await {
            Ok(server) => clock_line(report, "clock (PostgreSQL server)", server, clock.now()),
            Err(e) => report.push(Verdict::Fail, "clock (PostgreSQL server)", format!("{e:#}")),
        }
    } else {
        report.push(
            Verdict::Skip,
            "clock",
            "SQLite shares this machine's clock; no configured server reports its time",
        );
    }
    store.close().await;
}

fn clock_line(report: &mut Report, subject: &str, server: DateTime<Utc>, local: DateTime<Utc>) {
    let skew = local - server;
    let secs = skew.num_milliseconds() as f64 / 1000.0;
    if skew.abs() > MAX_SKEW {
        report.push(
            Verdict::Fail,
            subject,
            format!("this machine's clock is {secs:+.1} s off the server's; fix NTP (timedatectl)"),
        );
    } else {
        report.push(Verdict::Ok, subject, format!("skew {secs:+.1} s"));
    }
}

/// The OAuth token (refreshed if it must be) and the provider's clock (its HTTP `Date`).
async fn check_oauth(oauth: &OAuthConfig, clock: SharedClock, report: &mut Report) {
    let id = &oauth.mailbox_id;
    match TokenSource::new(oauth, clock.clone()) {
        // A refresh, not the cached access token: what must stay valid is the refresh token.
        Ok(source) => match tokio::time::timeout(CHECK_TIMEOUT, source.refreshed_token()).await {
            Ok(Ok(_)) => {
                let until = load_token(&oauth.token_file)
                    .ok()
                    .flatten()
                    .and_then(|t| t.expires_at)
                    .map(|t| format!(" until {}", t.format("%Y-%m-%d %H:%M UTC")))
                    .unwrap_or_default();
                report.push(
                    Verdict::Ok,
                    format!("mailbox {id}: oauth token"),
                    format!("the provider accepts the refresh token; access token valid{until}"),
                );
            }
            Ok(Err(OAuthError::NeedsAuthorization(msg))) => {
                report.push(Verdict::Fail, format!("mailbox {id}: oauth token"), msg)
            }
            Ok(Err(OAuthError::Transient(e))) => {
                report.push(Verdict::Fail, format!("mailbox {id}: oauth token"), format!("{e:#}"))
            }
            Err(_) => report.push(
                Verdict::Fail,
                format!("mailbox {id}: oauth token"),
                format!("the token endpoint did not answer within {CHECK_TIMEOUT:?}"),
            ),
        },
        Err(e) => report.push(Verdict::Fail, format!("mailbox {id}: oauth token"), format!("{e:#}")),
    }
    let subject = format!("clock (OAuth provider of {id})");
    let date = async {
        let http = crate::oauth::http_client()?;
        let resp = http.head(&oauth.token_url).send().await?;
        let date = resp
            .headers()
            .get(reqwest::header::DATE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| DateTime::parse_from_rfc2822(v).ok())
            .map(|d| d.with_timezone(&Utc));
        anyhow::Ok(date)
    };
    match tokio::time::timeout(CHECK_TIMEOUT, date).await {
        Ok(Ok(Some(server))) => clock_line(report, &subject, server, clock.now()),
        Ok(Ok(None)) => report.push(Verdict::Skip, subject, "the provider sends no Date header"),
        Ok(Err(e)) => report.push(Verdict::Fail, subject, format!("{e:#}")),
        Err(_) => report.push(Verdict::Fail, subject, format!("no answer within {CHECK_TIMEOUT:?}")),
    }
}

async fn check_mailbox(id: &str, source: &MailboxSource, report: &mut Report) {
    let cfg = match source {
        MailboxSource::Maildir(m) => {
            let subject = format!("mailbox {id}: maildir");
            if m.path.join("cur").is_dir() {
                report.push(Verdict::Ok, subject, format!("{} is a Maildir", m.path.display()));
            } else {
                report.push(
                    Verdict::Fail,
                    subject,
                    format!("{} has no cur/ folder: not a Maildir", m.path.display()),
                );
            }
            return;
        }
        MailboxSource::Imap(cfg) => cfg,
    };
    let addr = format!("{}:{}", cfg.host, cfg.port);
    match tokio::time::timeout(CHECK_TIMEOUT, TcpStream::connect((cfg.host.as_str(), cfg.port))).await {
        Ok(Ok(_)) => report.push(
            Verdict::Ok,
            format!("mailbox {id}: reach"),
            format!("{addr} accepts connections"),
        ),
        Ok(Err(e)) => {
            report.push(Verdict::Fail, format!("mailbox {id}: reach"), format!("{addr}: {e}"));
            return;
        }
        Err(_) => {
            report.push(
                Verdict::Fail,
                format!("mailbox {id}: reach"),
                format!("{addr}: no answer within {CHECK_TIMEOUT:?} (firewall?)"),
            );
            return;
        }
    }
    let tls = match cfg.tls {
        TlsMode::Implicit => "implicit TLS",
        TlsMode::StartTls => "STARTTLS",
        TlsMode::None => "no TLS (loopback only)",
    };
    match tokio::time::timeout(CHECK_TIMEOUT, imap::open(cfg)).await {
        Ok(Ok(_)) => report.push(
            Verdict::Ok,
            format!("mailbox {id}: tls"),
            format!("{tls}, the server greets"),
        ),
        Ok(Err(e)) => {
            report.push(Verdict::Fail, format!("mailbox {id}: tls"), format!("{tls}: {e:#}"));
            return;
        }
        Err(_) => {
            report.push(
                Verdict::Fail,
                format!("mailbox {id}: tls"),
                format!("{tls}: no greeting within {CHECK_TIMEOUT:?}"),
            );
            return;
        }
    }
    let how = match &cfg.auth {
        ImapAuth::Password(_) => "password",
        ImapAuth::XOAuth2(_) => "XOAUTH2 bearer token",
        ImapAuth::OAuth2(_) => "OAuth2 access token (refreshed from the stored refresh token)",
    };
    match tokio::time::timeout(CHECK_TIMEOUT, imap::connect(cfg)).await {
        Ok(Ok(mut session)) => {
            let _ = tokio::time::timeout(Duration::from_secs(5), session.logout()).await;
            report.push(
                Verdict::Ok,
                format!("mailbox {id}: login"),
                format!("{} logged in with a {how}", cfg.username),
            );
        }
        Ok(Err(e)) => {
            let hint = if e.is_auth() {
                match &cfg.auth {
                    ImapAuth::XOAuth2(_) => " (the token is invalid or expired: renew it)",
                    ImapAuth::OAuth2(_) => "",
                    ImapAuth::Password(_) => " (check the password and the username)",
                }
            } else {
                ""
            };
            report.push(Verdict::Fail, format!("mailbox {id}: login"), format!("{e:#}{hint}"));
        }
        Err(_) => report.push(
            Verdict::Fail,
            format!("mailbox {id}: login"),
            format!("no answer within {CHECK_TIMEOUT:?}"),
        ),
    }
}
