//! IMAP over TLS against a real Dovecot with a throwaway CA (`Dovecot::start_tls`): implicit TLS
//! and STARTTLS with the CA as `ca_file`, an untrusted certificate, and a plaintext login where
//! the server only allows it after STARTTLS. Each test on SQLite and PostgreSQL.

mod common;

use common::message;

use common::TestDb;
use common::dovecot::{Dovecot, HOST, NON_LOCAL_HOST};
use rapport::config::Config;
use rapport::daemon::{MailboxTask, mailbox_tasks};

struct Env {
    db: TestDb,
    dovecot: Dovecot,
    config: Config,
    _dir: tempfile::TempDir,
}

/// How alice's mailbox reaches the TLS Dovecot.
enum Mode {
    /// Implicit TLS on `tls_port()`, trusting the harness CA.
    Implicit,
    /// Implicit TLS on `tls_port()` with only the public (webpki) roots.
    ImplicitUntrusted,
    /// STARTTLS on `port()`, trusting the harness CA.
    StartTls,
    /// Plaintext on `port()` at `NON_LOCAL_HOST`, where Dovecot allows logins only after STARTTLS.
    Plain,
}

/// A TLS Dovecot with alice's mail (3 sent to a lead, 1 reply) written into its Maildir, and a
/// config with alice reading it as `mode` says.
async fn env(db: TestDb, mode: Mode) -> Env {
    let dovecot = Dovecot::start_tls(&[("alice", "alice-pw")]);
    seed_alice(&dovecot);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("alice.pw"), "alice-pw\n").unwrap();
    let ca = format!("    ca_file: {}\n", dovecot.ca_cert_path().display());
    let (host, tls, port, ca_file) = match mode {
        Mode::Implicit => (HOST, "implicit", dovecot.tls_port(), ca.as_str()),
        Mode::ImplicitUntrusted => (HOST, "implicit", dovecot.tls_port(), ""),
        Mode::StartTls => (HOST, "starttls", dovecot.port(), ca.as_str()),
        // Not 127.0.0.1: Dovecot allows plaintext logins on connections it thinks are local.
        Mode::Plain => (NON_LOCAL_HOST, "none", dovecot.port(), ""),
    };
    let config = common::imap_config(
        &db,
        dir.path(),
        &format!(
            "mailboxes:\n  - id: alice-imap\n    kind: imap\n    host: {host}\n    port: {port}\n    tls: {tls}\n{ca_file}    username: alice\n    password_file: alice.pw\n    poll_interval: 1h\n"
        ),
    )
    .await;
    common::add_leads(&db.store, &[common::acme_lead("sara@acme.example")]).await;
    Env {
        db,
        dovecot,
        config,
        _dir: dir,
    }
}

/// Straight into the Maildir: the harness's IMAP client cannot log in to a TLS-only server.
fn seed_alice(d: &Dovecot) {
    let sent = (0..3).map(|i| {
        message(
            &format!("out{i}@example.com"),
            "alice@example.com",
            "sara@acme.example",
            "Proposal",
            "",
        )
    });
    assert_eq!(d.write_maildir_messages("alice", Some("Sent"), sent), 3);
    let reply = message(
        "reply0@acme.example",
        "Sara <sara@acme.example>",
        "alice@example.com",
        "Re: Proposal",
        "In-Reply-To: <out0@example.com>\r\nReferences: <out0@example.com>\r\n",
    );
    assert_eq!(d.write_maildir_messages("alice", None, [reply]), 1);
}

async fn tasks(e: &Env) -> Vec<MailboxTask> {
    mailbox_tasks(&e.config, &e.db.store).await.unwrap().0
}

async fn count(e: &Env, kind: &str) -> i64 {
    common::count_kind(&e.db.store, kind).await
}

async fn total(e: &Env) -> i64 {
    e.db.store
        .count_by_rep_and_kind(None, None)
        .await
        .unwrap()
        .iter()
        .map(|c| c.count)
        .sum()
}

/// Dovecot logged `n` logins of alice, all over TLS (`Login: user=<alice>, ..., TLS, session=...`).
fn assert_logins_over_tls(d: &Dovecot, n: usize) {
    let log = d.log();
    let logins: Vec<&str> = log.lines().filter(|l| l.contains("Login: user=<alice>")).collect();
    assert_eq!(logins.len(), n, "{log}");
    assert!(logins.iter().all(|l| l.contains(", TLS, ")), "{log}");
}

/// The seeded mail is in the store, once.
async fn assert_synced(e: &Env) {
    let t = tasks(e).await;
    let stats = t[0].sync_once().await.unwrap_or_else(|err| panic!("{err:#}"));
    assert_eq!(stats.seen, 4);
    assert_eq!(count(e, "email_sent").await, 3);
    assert_eq!(count(e, "reply_received").await, 1);
    assert_eq!(t[0].sync_once().await.unwrap().seen, 0, "nothing fetched twice");
}

store_tests!(
    implicit_tls_with_ca_file_syncs,
    starttls_with_ca_file_syncs,
    untrusted_certificate_is_a_transient_error,
    plaintext_login_refused_where_tls_is_required,
);

async fn implicit_tls_with_ca_file_syncs(db: TestDb) {
    let e = env(db, Mode::Implicit).await;
    assert_synced(&e).await;
    assert_logins_over_tls(&e.dovecot, 2);
}

async fn starttls_with_ca_file_syncs(db: TestDb) {
    let e = env(db, Mode::StartTls).await;
    assert_synced(&e).await;
    assert_logins_over_tls(&e.dovecot, 2);
}

async fn untrusted_certificate_is_a_transient_error(db: TestDb) {
    let e = env(db, Mode::ImplicitUntrusted).await;
    let err = tasks(&e).await[0].sync_once().await.unwrap_err();
    let text = format!("{err:#}");
    assert!(!err.is_auth(), "a certificate problem is not an auth failure: {text}");
    // rustls: `invalid peer certificate: UnknownIssuer`, after the `TLS handshake` context.
    assert!(
        text.contains("TLS handshake: invalid peer certificate: UnknownIssuer"),
        "{text}"
    );
    assert_eq!(total(&e).await, 0);
}

async fn plaintext_login_refused_where_tls_is_required(db: TestDb) {
    let e = env(db, Mode::Plain).await;
    let err = tasks(&e).await[0].sync_once().await.unwrap_err();
    let text = format!("{err:#}");
    // Dovecot answers LOGIN with a tagged `NO [PRIVACYREQUIRED] Plaintext authentication
    // disallowed on non-secure (SSL/TLS) connections.`, which Rapport reports like any refused
    // login: an auth failure, so the task stops (retrying cannot help) and says why.
    assert!(err.is_auth(), "{text}");
    assert!(text.contains("refused the login of alice"), "{text}");
    assert!(
        text.contains("[PRIVACYREQUIRED] Plaintext authentication disallowed"),
        "{text}"
    );
    assert!(!text.contains("alice-pw"), "the password never appears in errors");
    assert!(!e.dovecot.log().contains("Login: user=<alice>"));
    assert_eq!(total(&e).await, 0);
}
