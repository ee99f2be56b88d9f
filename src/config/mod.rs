//! The daemon's configuration: one YAML file (by default `/etc/rapport/rapport.yaml`) that
//! names the database, the company's domains, the reps and the mailboxes and calendars that
//! are theirs. `config/rapport.example.yaml` documents every key.
//!
//! Loading never stops at the first mistake: [`Config::load`] returns every problem it finds
//! as [`Diagnostics`], each with file, line, column and a hint.

pub mod diagnostic;
pub mod oauth;
pub mod secret;
pub mod yaml;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono_tz::Tz;

pub use diagnostic::{Diagnostic, Diagnostics, Pos};
pub use oauth::{OAuthConfig, OAuthProviderKind};
pub use secret::{Secret, SecretSource};
use yaml::{Doc, FromYaml, MapReader, Node, did_you_mean_hint, resolve_path};

use crate::address;

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(Diagnostics),
}

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from; relative paths inside it were resolved against its folder.
    pub path: PathBuf,
    pub database: DatabaseConfig,
    /// Domains whose addresses are colleagues, never leads (subdomains included).
    pub internal_domains: Vec<String>,
    pub matching: MatchingConfig,
    pub reps: Vec<RepConfig>,
    pub mailboxes: Vec<MailboxConfig>,
    pub calendars: Vec<CalendarConfig>,
    /// CSV files of leads imported (upserted) every time the daemon starts.
    pub lead_files: Vec<PathBuf>,
    /// Folder of sequence files (`*.yaml`), read by the sequences feature.
    pub sequences_dir: Option<PathBuf>,
    /// Activity targets file, read by the targets feature.
    pub targets_file: Option<PathBuf>,
    /// Settings shared by every sequence.
    pub sequences: SequencesConfig,
    pub http: HttpConfig,
    pub privacy: PrivacyConfig,
    /// How long shutdown waits for in-flight work before abandoning it.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `sqlite://path/to/file.db` or `postgres://user@host/db`.
    pub url: String,
    pub max_connections: u32,
}

/// What to do with an external sender that matches no lead and no known company.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownSenders {
    Ignore,
    CreateLead,
}

#[derive(Debug, Clone)]
pub struct MatchingConfig {
    /// Treat `sara+news@acme.example` as `sara@acme.example`.
    pub strip_plus_tags: bool,
    pub unknown_senders: UnknownSenders,
    /// Domains never matched to a company or lead (competitors, vendors).
    pub blocked_domains: Vec<String>,
    /// Added to the built-in list of free-mail domains.
    pub extra_free_mail_domains: Vec<String>,
}

/// What Rapport keeps about mail. Bodies are never stored.
#[derive(Debug, Clone, Default)]
pub struct PrivacyConfig {
    /// Store message subjects (default true).
    pub store_subjects: bool,
    /// Mail with any of these participants is not recorded at all (lower-case addresses).
    pub exclude_addresses: Vec<String>,
    /// Mail with a participant in one of these domains (or subdomains) is not recorded at all.
    pub exclude_domains: Vec<String>,
}

impl PrivacyConfig {
    /// True when `address` (normalized) is excluded.
    pub fn excludes(&self, address: &str) -> bool {
        self.exclude_addresses.iter().any(|a| a == address)
            || self
                .exclude_domains
                .iter()
                .any(|d| address::domain_within(address::domain_of(address), d))
    }
}

#[derive(Debug, Clone)]
pub struct RepConfig {
    pub id: String,
    pub name: String,
    /// Primary address, lower-cased.
    pub email: String,
    /// Other addresses that are the same person (lower-cased).
    pub aliases: Vec<String>,
    pub time_zone: Tz,
    pub mailboxes: Vec<String>,
    pub calendars: Vec<String>,
    /// Team the rep belongs to, for team targets and reports.
    pub team: Option<String>,
}

impl RepConfig {
    /// The primary address and every alias.
    pub fn addresses(&self) -> impl Iterator<Item = &str> {
        std::iter::once(self.email.as_str()).chain(self.aliases.iter().map(String::as_str))
    }
}

#[derive(Debug, Clone)]
pub struct MailboxConfig {
    pub id: String,
    pub source: MailboxSource,
    /// Outgoing mail for sequences; a mailbox without it never sends.
    pub smtp: Option<SmtpConfig>,
}

/// How sequences send through a mailbox (the `smtp:` block of a mailbox).
#[derive(Debug, Clone)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// Implicit TLS (465), STARTTLS (587) or, only to a loopback host, plain.
    pub tls: TlsMode,
    /// `None`: no authentication (a local relay).
    pub username: Option<String>,
    pub auth: Option<ImapAuth>,
    /// The From address; default the owner rep's email.
    pub from: Option<String>,
    /// At most this many messages a day (the mailbox owner's local day), all sequences together.
    pub daily_cap: u32,
    /// At least this long between two messages of this mailbox.
    pub min_gap: Duration,
    /// Extra CA certificate (PEM) to trust, for self-signed servers.
    pub ca_file: Option<PathBuf>,
    /// Append a copy of each sent message to the IMAP Sent folder (for servers that do not
    /// store SMTP-sent mail there themselves).
    pub append_to_sent: bool,
    /// The mailbox's server keeps SMTP-sent mail in Sent (Gmail, Microsoft 365): after a crash
    /// a message not found there was not sent. Default false: not found means unknown.
    pub sent_folder_is_authoritative: bool,
}

/// Settings shared by every sequence (the top-level `sequences:` block).
#[derive(Debug, Clone)]
pub struct SequencesConfig {
    /// Base of the one-click unsubscribe link, e.g. `https://rapport.example.com`.
    pub unsubscribe_url: Option<String>,
    /// Address for `mailto:` unsubscribes (the token goes in the subject).
    pub unsubscribe_address: Option<String>,
    /// Key of the unsubscribe tokens' HMAC.
    pub unsubscribe_key: Option<SecretSource>,
    /// After a crash, resend a message whose fate cannot be told (default false: mark it
    /// `unknown` and report it).
    pub resend_unknown: bool,
    /// How long a claimed step stays leased to one sender before another may take it.
    pub lease: Duration,
    /// How often an idle sender looks for due steps.
    pub poll_interval: Duration,
}

impl Default for SequencesConfig {
    fn default() -> Self {
        SequencesConfig {
            unsubscribe_url: None,
            unsubscribe_address: None,
            unsubscribe_key: None,
            resend_unknown: false,
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_secs(30),
        }
    }
}

#[derive(Debug, Clone)]
pub enum MailboxSource {
    Imap(ImapConfig),
    Maildir(MaildirConfig),
}

/// How the IMAP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS from the first byte (port 993).
    Implicit,
    /// Plain connection upgraded with STARTTLS (port 143).
    StartTls,
    /// No TLS at all: only for servers on loopback or trusted local networks.
    None,
}

#[derive(Debug, Clone)]
pub enum ImapAuth {
    Password(SecretSource),
    /// OAuth2 bearer token (XOAUTH2 SASL), e.g. Gmail and Microsoft 365.
    XOAuth2(SecretSource),
    /// XOAUTH2 with access tokens Rapport obtains and refreshes itself (`rapport auth`).
    OAuth2(Box<OAuthConfig>),
}

#[derive(Debug, Clone)]
pub struct ImapConfig {
    pub host: String,
    pub port: u16,
    pub tls: TlsMode,
    pub username: String,
    pub auth: ImapAuth,
    /// Folders to watch; empty means INBOX plus the folder flagged `\Sent`.
    pub folders: Vec<String>,
    /// How far back the first sync goes.
    pub backfill_days: u32,
    /// How often folders without IDLE are polled.
    pub poll_interval: Duration,
    /// Use IMAP IDLE on INBOX when the server supports it.
    pub idle: bool,
    /// Extra CA certificate (PEM) to trust, for self-signed servers.
    pub ca_file: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct MaildirConfig {
    /// Maildir++ root: `cur/` and `new/` are the inbox, `.Folder/` subfolders the rest.
    pub path: PathBuf,
    pub poll_interval: Duration,
}

#[derive(Debug, Clone)]
pub struct CalendarConfig {
    pub id: String,
    pub source: CalendarSource,
    /// How many days back and ahead the sync window reaches.
    pub past_days: u32,
    pub future_days: u32,
    pub poll_interval: Duration,
}

#[derive(Debug, Clone)]
pub enum CalendarSource {
    Google {
        calendar_id: String,
        token: SecretSource,
        /// Override of Google's API root, for tests against a local fake.
        base_url: Option<String>,
    },
    CalDav {
        url: String,
        username: Option<String>,
        password: Option<SecretSource>,
        token: Option<SecretSource>,
    },
    Ics {
        /// An `https://` feed URL or a local file.
        location: IcsLocation,
    },
}

#[derive(Debug, Clone)]
pub enum IcsLocation {
    Url(String),
    File(PathBuf),
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Serve HTTP from `rapport run` (true when the file has an `http:` section, unless it says
    /// `enabled: false`).
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Bearer token for the API (health and unsubscribe endpoints need none).
    pub api_token: Option<SecretSource>,
}

impl Config {
    /// Reads and validates a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_str(path, &src)
    }

    /// Validates config text as if read from `path` (used for relative paths and messages).
    pub fn from_str(path: &Path, src: &str) -> Result<Config, ConfigError> {
        let doc = Doc::new(path, src);
        let config = doc.parse().and_then(|root| read_config(&doc, &root));
        if doc.has_errors() {
            return Err(ConfigError::Invalid(doc.into_diagnostics()));
        }
        config.ok_or_else(|| ConfigError::Invalid(doc.into_diagnostics()))
    }

    pub fn rep(&self, id: &str) -> Option<&RepConfig> {
        self.reps.iter().find(|r| r.id == id)
    }

    /// The rep a mailbox belongs to (validation guarantees exactly one).
    pub fn mailbox_owner(&self, mailbox_id: &str) -> Option<&RepConfig> {
        self.reps.iter().find(|r| r.mailboxes.iter().any(|m| m == mailbox_id))
    }

    /// The rep a calendar belongs to.
    pub fn calendar_owner(&self, calendar_id: &str) -> Option<&RepConfig> {
        self.reps.iter().find(|r| r.calendars.iter().any(|c| c == calendar_id))
    }
}

impl FromYaml for Tz {
    fn from_yaml(doc: &Doc, node: &Node) -> Option<Self> {
        let (text, _) = yaml::scalar(doc, node, "an IANA time zone name")?;
        match text.parse::<Tz>() {
            Ok(tz) => Some(tz),
            Err(_) => {
                let hint = did_you_mean_hint(text, chrono_tz::TZ_VARIANTS.iter().map(|t| t.name()))
                    .unwrap_or_else(|| "use an IANA name such as Europe/Berlin or America/New_York".into());
                doc.error_hint(node, format!("unknown time zone `{text}`"), hint);
                None
            }
        }
    }
}

/// Reads a secret reference written as `<prefix>_file`, `<prefix>_env` or `<prefix>_credential`.
/// A bare `<prefix>` key (the secret itself in the file) is refused.
fn read_secret(m: &MapReader<'_>, prefix: &'static str, required: bool) -> Option<SecretSource> {
    let (k_file, k_env, k_cred) = match prefix {
        "password" => ("password_file", "password_env", "password_credential"),
        "token" => ("token_file", "token_env", "token_credential"),
        "api_token" => ("api_token_file", "api_token_env", "api_token_credential"),
        "client_secret" => ("client_secret_file", "client_secret_env", "client_secret_credential"),
        "unsubscribe_key" => (
            "unsubscribe_key_file",
            "unsubscribe_key_env",
            "unsubscribe_key_credential",
        ),
        other => unreachable!("no secret keys for {other}"),
    };
    let doc = m.doc();
    if let Some(node) = m.get(prefix) {
        doc.error_hint(
            node,
            format!("secrets are never written in the config file (`{prefix}`)"),
            format!("put it in a file and use `{k_file}`, or use `{k_env}` or `{k_cred}` (systemd LoadCredential=)"),
        );
        return None;
    }
    let file: Option<PathBuf> = m.opt(k_file);
    let env: Option<String> = m.opt(k_env);
    let cred: Option<String> = m.opt(k_cred);
    let given = [file.is_some(), env.is_some(), cred.is_some()]
        .iter()
        .filter(|b| **b)
        .count();
    if given > 1 {
        doc.error(m.node(), format!("give only one of `{k_file}`, `{k_env}`, `{k_cred}`"));
        return None;
    }
    if let Some(f) = file {
        return Some(SecretSource::File(resolve_path(&doc.file, &f)));
    }
    if let Some(e) = env {
        return Some(SecretSource::Env(e));
    }
    if let Some(c) = cred {
        return Some(SecretSource::Credential(c));
    }
    if required {
        doc.error(m.node(), format!("missing `{k_file}`, `{k_env}` or `{k_cred}`"));
    }
    None
}

fn read_id(m: &MapReader<'_>, what: &str) -> Option<String> {
    let node = m.get("id");
    let id: Option<String> = m.req("id");
    let id = id?;
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !ok {
        if let Some(n) = node {
            m.doc().error_hint(
                n,
                format!("`{id}` is not a valid {what} id"),
                "use 1 to 64 letters, digits, `-`, `_` or `.`",
            );
        }
        return None;
    }
    Some(id)
}

fn read_address(doc: &Doc, node: &Node) -> Option<String> {
    let text: String = doc.read(node)?;
    match address::normalize(&text) {
        Ok(a) => Some(a),
        Err(e) => {
            doc.error(node, format!("invalid email address: {e}"));
            None
        }
    }
}

/// A list of email addresses, each normalized; every bad one is reported.
fn read_addresses(m: &MapReader<'_>, key: &'static str) -> Vec<String> {
    let doc = m.doc();
    match m.get(key) {
        Some(n) => match &n.value {
            yaml::Value::Seq(items) => items.iter().filter_map(|i| read_address(doc, i)).collect(),
            _ => {
                doc.error(n, format!("`{key}` must be a list of addresses"));
                Vec::new()
            }
        },
        None => Vec::new(),
    }
}

fn read_domains(m: &MapReader<'_>, key: &'static str) -> Vec<String> {
    let Some(list) = m.get(key) else { return Vec::new() };
    let doc = m.doc();
    let Some(items): Option<Vec<Node>> = (match &list.value {
        yaml::Value::Seq(items) => Some(items.clone()),
        _ => {
            doc.error(list, "expected a list of domain names");
            None
        }
    }) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|n| {
            let s: String = doc.read(n)?;
            let d = address::normalize_domain(&s);
            if d.is_none() {
                doc.error(n, format!("`{s}` is not a domain name"));
            }
            d
        })
        .collect()
}

fn read_config(doc: &Doc, root: &Node) -> Option<Config> {
    let m = doc.map(root, "the configuration file")?;

    let database = match m.get("database") {
        Some(n) => read_database(doc, n),
        None => Some(DatabaseConfig {
            url: "sqlite://rapport.db".into(),
            max_connections: 8,
        }),
    };
    let internal_domains = read_domains(&m, "internal_domains");
    if m.get("internal_domains").is_none() {
        doc.error_hint(
            root,
            "missing required key `internal_domains`",
            "list your company's own mail domains, so colleagues are never taken for leads",
        );
    }
    let matching = match m.get("matching") {
        Some(n) => read_matching(doc, n),
        None => Some(MatchingConfig {
            strip_plus_tags: true,
            unknown_senders: UnknownSenders::Ignore,
            blocked_domains: Vec::new(),
            extra_free_mail_domains: Vec::new(),
        }),
    };
    let mailboxes = read_list(doc, &m, "mailboxes", read_mailbox);
    let calendars = read_list(doc, &m, "calendars", read_calendar);
    let reps = read_list(doc, &m, "reps", read_rep);
    if m.get("reps").is_none() {
        doc.error_hint(root, "no reps are configured", "add at least one entry under `reps:`");
    }
    let lead_files: Vec<PathBuf> = m
        .opt::<Vec<PathBuf>>("lead_files")
        .unwrap_or_default()
        .into_iter()
        .map(|p| resolve_path(&doc.file, &p))
        .collect();
    if let Some(node) = m.get("lead_files") {
        for f in &lead_files {
            if !f.is_file() {
                doc.error(node, format!("lead file {} does not exist", f.display()));
            }
        }
    }
    let sequences_dir = m.opt::<PathBuf>("sequences_dir").map(|p| resolve_path(&doc.file, &p));
    let targets_file = m.opt::<PathBuf>("targets_file").map(|p| resolve_path(&doc.file, &p));
    let http = match m.get("http") {
        Some(n) => read_http(doc, n),
        None => Some(HttpConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            api_token: None,
        }),
    };
    let privacy = match m.get("privacy") {
        Some(n) => read_privacy(doc, n),
        None => Some(PrivacyConfig {
            store_subjects: true,
            ..Default::default()
        }),
    };
    let shutdown_timeout = m.or("shutdown_timeout", Duration::from_secs(10));
    let sequences = match m.get("sequences") {
        Some(n) => read_sequences(doc, n),
        None => Some(SequencesConfig::default()),
    };
    m.finish();

    cross_check(doc, &reps, &mailboxes, &calendars, &internal_domains);

    Some(Config {
        path: doc.file.clone(),
        database: database?,
        internal_domains,
        matching: matching?,
        reps: reps.into_iter().map(|(_, r)| r).collect(),
        mailboxes: mailboxes.into_iter().map(|(_, b)| b).collect(),
        calendars: calendars.into_iter().map(|(_, c)| c).collect(),
        lead_files,
        sequences_dir,
        targets_file,
        sequences: sequences?,
        http: http?,
        privacy: privacy?,
        shutdown_timeout,
    })
}

/// Reads a list of entries, keeping each entry's node for later cross-checks.
fn read_list<T>(doc: &Doc, m: &MapReader<'_>, key: &'static str, read: fn(&Doc, &Node) -> Option<T>) -> Vec<(Node, T)> {
    let Some(node) = m.get(key) else { return Vec::new() };
    match &node.value {
        yaml::Value::Seq(items) => items
            .iter()
            .filter_map(|n| read(doc, n).map(|v| (n.clone(), v)))
            .collect(),
        _ => {
            doc.error(node, format!("`{key}` must be a list (each entry starting with `- `)"));
            Vec::new()
        }
    }
}

fn read_database(doc: &Doc, node: &Node) -> Option<DatabaseConfig> {
    let m = doc.map(node, "`database`")?;
    let url: String = m.or("url", "sqlite://rapport.db".to_string());
    if let Some(n) = m.get("url")
        && !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
    {
        doc.error_hint(
            n,
            format!("unsupported database URL `{}`", redact_url(&url)),
            "use sqlite://FILE or postgres://USER@HOST/DB",
        );
    }
    let max_connections = m.or("max_connections", 8u32);
    m.finish();
    Some(DatabaseConfig { url, max_connections })
}

/// Hides the passwords in a URL (`postgres://u:secret@h` → `postgres://u:***@h`, and a
/// `password=` query parameter).
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((userinfo, host)) = rest.split_once('@')
        && let Some((user, _)) = userinfo.split_once(':')
    {
        out = format!("{scheme}://{user}:***@{host}");
    }
    if let Some((base, query)) = out.clone().split_once('?') {
        let params: Vec<String> = query
            .split('&')
            .map(|p| match p.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => p.to_owned(),
            })
            .collect();
        out = format!("{base}?{}", params.join("&"));
    }
    out
}

fn read_matching(doc: &Doc, node: &Node) -> Option<MatchingConfig> {
    let m = doc.map(node, "`matching`")?;
    let strip_plus_tags = m.or("strip_plus_tags", true);
    let unknown_senders = match m.get("unknown_senders") {
        None => UnknownSenders::Ignore,
        Some(n) => {
            let s: String = doc.read(n).unwrap_or_default();
            match s.as_str() {
                "ignore" => UnknownSenders::Ignore,
                "create_lead" => UnknownSenders::CreateLead,
                other => {
                    doc.error_hint(
                        n,
                        format!("unknown value `{other}` for unknown_senders"),
                        "use `ignore` or `create_lead`",
                    );
                    UnknownSenders::Ignore
                }
            }
        }
    };
    let blocked_domains = read_domains(&m, "blocked_domains");
    let extra_free_mail_domains = read_domains(&m, "free_mail_domains");
    m.finish();
    Some(MatchingConfig {
        strip_plus_tags,
        unknown_senders,
        blocked_domains,
        extra_free_mail_domains,
    })
}

fn read_privacy(doc: &Doc, node: &Node) -> Option<PrivacyConfig> {
    let m = doc.map(node, "`privacy`")?;
    let store_subjects = m.or("store_subjects", true);
    let exclude_addresses = read_addresses(&m, "exclude_addresses");
    let exclude_domains = read_domains(&m, "exclude_domains");
    m.finish();
    Some(PrivacyConfig {
        store_subjects,
        exclude_addresses,
        exclude_domains,
    })
}

fn read_rep(doc: &Doc, node: &Node) -> Option<RepConfig> {
    let m = doc.map(node, "a rep")?;
    let id = read_id(&m, "rep");
    let name: Option<String> = m.req("name");
    let email = match m.get("email") {
        Some(n) => read_address(doc, n),
        None => {
            doc.error(node, "missing required key `email`");
            None
        }
    };
    let aliases = read_addresses(&m, "aliases");
    let time_zone: Tz = m.opt("time_zone").unwrap_or(Tz::UTC);
    let mailboxes: Vec<String> = m.opt("mailboxes").unwrap_or_default();
    let calendars: Vec<String> = m.opt("calendars").unwrap_or_default();
    let team: Option<String> = m.opt("team");
    m.finish();
    Some(RepConfig {
        id: id?,
        name: name?,
        email: email?,
        aliases,
        time_zone,
        mailboxes,
        calendars,
        team,
    })
}

/// Reads `kind:` and checks it against the known kinds, with a suggestion.
fn read_kind<'a>(m: &MapReader<'_>, known: &[&'a str]) -> Option<&'a str> {
    let node = m.get("kind");
    let kind: String = m.req("kind")?;
    match known.iter().find(|k| **k == kind) {
        Some(k) => Some(k),
        None => {
            let hint = did_you_mean_hint(&kind, known.iter().copied())
                .unwrap_or_else(|| format!("use one of: {}", known.join(", ")));
            if let Some(n) = node {
                m.doc().error_hint(n, format!("unknown kind `{kind}`"), hint);
            }
            None
        }
    }
}

fn read_mailbox(doc: &Doc, node: &Node) -> Option<MailboxConfig> {
    let m = doc.map(node, "a mailbox")?;
    let id = read_id(&m, "mailbox");
    let source = match read_kind(&m, &["imap", "maildir"]) {
        Some("imap") => read_imap(&m, id.as_deref().unwrap_or_default()),
        Some("maildir") => {
            let path: Option<PathBuf> = m.req("path");
            let poll_interval = m.or("poll_interval", Duration::from_secs(60));
            path.map(|p| {
                MailboxSource::Maildir(MaildirConfig {
                    path: resolve_path(&doc.file, &p),
                    poll_interval,
                })
            })
        }
        _ => None,
    };
    // SMTP `auth: oauth2` sends with the token of the mailbox's own OAuth2 login.
    let imap_oauth = match &source {
        Some(MailboxSource::Imap(ImapConfig {
            auth: ImapAuth::OAuth2(o),
            ..
        })) => Some(o.as_ref()),
        _ => None,
    };
    let smtp = m.get("smtp").and_then(|n| read_smtp(doc, n, imap_oauth));
    let smtp_bad = m.get("smtp").is_some() && smtp.is_none();
    m.finish();
    if smtp_bad {
        return None;
    }
    Some(MailboxConfig {
        id: id?,
        source: source?,
        smtp,
    })
}

/// `tls: implicit | starttls | none`, `default` when absent.
fn read_tls(m: &MapReader<'_>, default: TlsMode) -> Option<TlsMode> {
    let Some(n) = m.get("tls") else {
        return Some(default);
    };
    match m.doc().read::<String>(n)?.as_str() {
        "implicit" => Some(TlsMode::Implicit),
        "starttls" => Some(TlsMode::StartTls),
        "none" => Some(TlsMode::None),
        other => {
            m.doc().error_hint(
                n,
                format!("unknown tls mode `{other}`"),
                "use implicit, starttls or none",
            );
            None
        }
    }
}

/// `tls: none` is refused for any host but loopback: the login and the mail would cross the
/// network in clear text.
fn plain_only_to_loopback(m: &MapReader<'_>, tls: TlsMode, host: Option<&str>, protocol: &str) -> Option<TlsMode> {
    if tls == TlsMode::None
        && let Some(h) = host
        && !is_loopback(h)
    {
        if let Some(n) = m.get("tls") {
            m.doc().error_hint(
                n,
                format!("`tls: none` would send the login and the mail to {h} in clear text"),
                format!("plain {protocol} is only allowed to a loopback host (127.0.0.1, ::1, localhost); use implicit or starttls"),
            );
        }
        return None;
    }
    Some(tls)
}

fn read_smtp(doc: &Doc, node: &Node, imap_oauth: Option<&OAuthConfig>) -> Option<SmtpConfig> {
    let m = doc.map(node, "`smtp`")?;
    let host: Option<String> = m.req("host");
    let tls = read_tls(&m, TlsMode::StartTls);
    let port: Option<u16> = m.opt("port");
    let username: Option<String> = m.opt("username");
    let auth_node = m.get("auth");
    let auth = match (username.is_some(), m.opt::<String>("auth").as_deref()) {
        (false, None) => Some(None),
        (true, None | Some("password")) => read_secret(&m, "password", true).map(|s| Some(ImapAuth::Password(s))),
        (true, Some("xoauth2")) => read_secret(&m, "token", true).map(|s| Some(ImapAuth::XOAuth2(s))),
        (true, Some("oauth2")) => match imap_oauth {
            Some(o) => Some(Some(ImapAuth::OAuth2(Box::new(o.clone())))),
            None => {
                if let Some(n) = auth_node {
                    doc.error_hint(
                        n,
                        "`auth: oauth2` for SMTP uses the OAuth2 login of this mailbox's IMAP",
                        "give the mailbox `auth: oauth2` and an `oauth:` block, or use xoauth2 with a token file",
                    );
                }
                None
            }
        },
        (false, Some(_)) => {
            if let Some(n) = auth_node {
                doc.error(n, "`auth` needs a `username`");
            }
            None
        }
        (true, Some(other)) => {
            if let Some(n) = auth_node {
                doc.error_hint(n, format!("unknown auth `{other}`"), "use password, oauth2 or xoauth2");
            }
            None
        }
    };
    let from = m.get("from").and_then(|n| read_address(doc, n));
    let daily_cap = m.or("daily_cap", 200u32);
    let min_gap = m.or("min_gap", Duration::from_secs(60));
    let ca_file = m.opt::<PathBuf>("ca_file").map(|p| resolve_path(&doc.file, &p));
    let append_to_sent = m.or("append_to_sent", false);
    let sent_folder_is_authoritative = m.or("sent_folder_is_authoritative", false);
    let tls = plain_only_to_loopback(&m, tls?, host.as_deref(), "SMTP")?;
    m.finish();
    Some(SmtpConfig {
        host: host?,
        port: port.unwrap_or(match tls {
            TlsMode::Implicit => 465,
            TlsMode::StartTls => 587,
            TlsMode::None => 25,
        }),
        tls,
        username,
        auth: auth?,
        from,
        daily_cap,
        min_gap,
        ca_file,
        append_to_sent,
        sent_folder_is_authoritative,
    })
}

fn read_sequences(doc: &Doc, node: &Node) -> Option<SequencesConfig> {
    let m = doc.map(node, "`sequences`")?;
    let d = SequencesConfig::default();
    let unsubscribe_url: Option<String> = m.opt("unsubscribe_url");
    if let (Some(u), Some(n)) = (&unsubscribe_url, m.get("unsubscribe_url"))
        && !(u.starts_with("https://") || u.starts_with("http://"))
    {
        doc.error_hint(
            n,
            format!("`{u}` is not an http(s) URL"),
            "e.g. https://rapport.example.com",
        );
    }
    let unsubscribe_address = m.get("unsubscribe_address").and_then(|n| read_address(doc, n));
    let unsubscribe_key = read_secret(&m, "unsubscribe_key", false);
    let resend_unknown = m.or("resend_unknown", d.resend_unknown);
    let lease = m.or("lease", d.lease);
    let poll_interval = m.or("poll_interval", d.poll_interval);
    m.finish();
    Some(SequencesConfig {
        unsubscribe_url: unsubscribe_url.map(|u| u.trim_end_matches('/').to_owned()),
        unsubscribe_address,
        unsubscribe_key,
        resend_unknown,
        lease,
        poll_interval,
    })
}

fn read_imap(m: &MapReader<'_>, mailbox_id: &str) -> Option<MailboxSource> {
    let doc = m.doc();
    let host: Option<String> = m.req("host");
    let tls = read_tls(m, TlsMode::Implicit);
    let port: Option<u16> = m.opt("port");
    let username: Option<String> = m.req("username");
    let auth_node = m.get("auth");
    let auth_kind: String = m.opt("auth").unwrap_or_else(|| "password".into());
    let auth = match auth_kind.as_str() {
        "password" => read_secret(m, "password", true).map(ImapAuth::Password),
        "xoauth2" => read_secret(m, "token", true).map(ImapAuth::XOAuth2),
        "oauth2" => match m.get("oauth") {
            Some(n) => oauth::read_oauth(doc, n, mailbox_id).map(|o| ImapAuth::OAuth2(Box::new(o))),
            None => {
                doc.error_hint(
                    m.node(),
                    "`auth: oauth2` needs an `oauth:` block",
                    "give at least `provider` and `client_id` (see config/rapport.example.yaml)",
                );
                None
            }
        },
        other => {
            if let Some(n) = auth_node {
                doc.error_hint(n, format!("unknown auth `{other}`"), "use password, xoauth2 or oauth2");
            }
            None
        }
    };
    let folders: Vec<String> = m.opt("folders").unwrap_or_default();
    let backfill_days = m.or("backfill_days", 90u32);
    let poll_interval = m.or("poll_interval", Duration::from_secs(60));
    let idle = m.or("idle", true);
    let ca_file = m.opt::<PathBuf>("ca_file").map(|p| resolve_path(&doc.file, &p));
    let tls = plain_only_to_loopback(m, tls?, host.as_deref(), "IMAP")?;
    Some(MailboxSource::Imap(ImapConfig {
        host: host?,
        port: port.unwrap_or(if tls == TlsMode::Implicit { 993 } else { 143 }),
        tls,
        username: username?,
        auth: auth?,
        folders,
        backfill_days,
        poll_interval,
        idle,
        ca_file,
    }))
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn read_calendar(doc: &Doc, node: &Node) -> Option<CalendarConfig> {
    let m = doc.map(node, "a calendar")?;
    let id = read_id(&m, "calendar");
    let source = match read_kind(&m, &["google", "caldav", "ics"]) {
        Some("google") => {
            let calendar_id: String = m.or("calendar_id", "primary".to_string());
            let token = read_secret(&m, "token", true);
            let base_url: Option<String> = m.opt("base_url");
            token.map(|token| CalendarSource::Google {
                calendar_id,
                token,
                base_url,
            })
        }
        Some("caldav") => {
            let url: Option<String> = m.req("url");
            let username: Option<String> = m.opt("username");
            let password = read_secret(&m, "password", false);
            let token = read_secret(&m, "token", false);
            url.map(|url| CalendarSource::CalDav {
                url,
                username,
                password,
                token,
            })
        }
        Some("ics") => {
            let url: Option<String> = m.opt("url");
            let path: Option<PathBuf> = m.opt("path");
            match (url, path) {
                (Some(u), None) => Some(CalendarSource::Ics {
                    location: IcsLocation::Url(u),
                }),
                (None, Some(p)) => Some(CalendarSource::Ics {
                    location: IcsLocation::File(resolve_path(&doc.file, &p)),
                }),
                _ => {
                    doc.error(node, "an ics calendar needs exactly one of `url` or `path`");
                    None
                }
            }
        }
        _ => None,
    };
    let past_days = m.or("past_days", 30u32);
    let future_days = m.or("future_days", 90u32);
    let poll_interval = m.or("poll_interval", Duration::from_secs(300));
    m.finish();
    Some(CalendarConfig {
        id: id?,
        source: source?,
        past_days,
        future_days,
        poll_interval,
    })
}

fn read_http(doc: &Doc, node: &Node) -> Option<HttpConfig> {
    let m = doc.map(node, "`http`")?;
    let listen = match m.get("listen") {
        None => Some(SocketAddr::from(([127, 0, 0, 1], 8787))),
        Some(n) => {
            let s: String = doc.read(n)?;
            match s.parse::<SocketAddr>() {
                Ok(a) => Some(a),
                Err(_) => {
                    doc.error_hint(n, format!("`{s}` is not an address:port"), "for example 127.0.0.1:8787");
                    None
                }
            }
        }
    };
    let api_token = read_secret(&m, "api_token", false);
    let enabled = m.or("enabled", true);
    m.finish();
    Some(HttpConfig {
        enabled,
        listen: listen?,
        api_token,
    })
}

/// Checks that need the whole file: unique ids, references between sections, ownership.
fn cross_check(
    doc: &Doc,
    reps: &[(Node, RepConfig)],
    mailboxes: &[(Node, MailboxConfig)],
    calendars: &[(Node, CalendarConfig)],
    internal_domains: &[String],
) {
    fn unique<'a>(doc: &Doc, what: &str, items: impl Iterator<Item = (&'a Node, &'a str)>) {
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (node, id) in items {
            if let Some(line) = seen.get(id) {
                doc.error_hint(
                    node,
                    format!("duplicate {what} id `{id}`"),
                    format!("first defined on line {line}"),
                );
            } else {
                seen.insert(id, node.pos.line);
            }
        }
    }
    unique(doc, "rep", reps.iter().map(|(n, r)| (n, r.id.as_str())));
    unique(doc, "mailbox", mailboxes.iter().map(|(n, b)| (n, b.id.as_str())));
    unique(doc, "calendar", calendars.iter().map(|(n, c)| (n, c.id.as_str())));

    let mailbox_ids: HashSet<&str> = mailboxes.iter().map(|(_, b)| b.id.as_str()).collect();
    let calendar_ids: HashSet<&str> = calendars.iter().map(|(_, c)| c.id.as_str()).collect();
    let mut mailbox_owner: HashMap<&str, &str> = HashMap::new();
    let mut calendar_owner: HashMap<&str, &str> = HashMap::new();
    let mut address_owner: HashMap<&str, &str> = HashMap::new();
    for (node, rep) in reps {
        for mb in &rep.mailboxes {
            if !mailbox_ids.contains(mb.as_str()) {
                let hint = did_you_mean_hint(mb, mailbox_ids.iter().copied())
                    .unwrap_or_else(|| "define it under `mailboxes:`".into());
                doc.error_hint(node, format!("rep `{}` names unknown mailbox `{mb}`", rep.id), hint);
            } else if let Some(other) = mailbox_owner.insert(mb, &rep.id) {
                doc.error(
                    node,
                    format!("mailbox `{mb}` is listed by both `{other}` and `{}`", rep.id),
                );
            }
        }
        for cal in &rep.calendars {
            if !calendar_ids.contains(cal.as_str()) {
                let hint = did_you_mean_hint(cal, calendar_ids.iter().copied())
                    .unwrap_or_else(|| "define it under `calendars:`".into());
                doc.error_hint(node, format!("rep `{}` names unknown calendar `{cal}`", rep.id), hint);
            } else if let Some(other) = calendar_owner.insert(cal, &rep.id) {
                doc.error(
                    node,
                    format!("calendar `{cal}` is listed by both `{other}` and `{}`", rep.id),
                );
            }
        }
        for addr in rep.addresses() {
            if let Some(other) = address_owner.insert(addr, &rep.id)
                && other != rep.id
            {
                doc.error(
                    node,
                    format!("address `{addr}` belongs to both `{other}` and `{}`", rep.id),
                );
            }
            let domain = address::domain_of(addr);
            if !internal_domains.is_empty() && !internal_domains.iter().any(|d| address::domain_within(domain, d)) {
                doc.error_hint(
                    node,
                    format!("rep address `{addr}` is outside the internal domains"),
                    format!("add `{domain}` to internal_domains, or fix the address"),
                );
            }
        }
    }
    for (node, mb) in mailboxes {
        if !mailbox_owner.contains_key(mb.id.as_str()) {
            doc.error_hint(
                node,
                format!("mailbox `{}` belongs to no rep", mb.id),
                "list it under the `mailboxes:` of the rep whose mail it holds",
            );
        }
    }
    for (node, cal) in calendars {
        if !calendar_owner.contains_key(cal.id.as_str()) {
            doc.error_hint(
                node,
                format!("calendar `{}` belongs to no rep", cal.id),
                "list it under the `calendars:` of the rep whose meetings it holds",
            );
        }
    }
}

#[cfg(test)]
mod tests;
