//! Sending over SMTP against aiosmtpd (tests/common/smtp.rs): STARTTLS and implicit TLS with a
//! private CA; a password (PLAIN); XOAUTH2 with the access tokens of the mailbox's OAuth2 login
//! (tests/common/idp.rs), the server checking each bearer token by RFC 7662 introspection at
//! the provider. A refused token is refreshed and the message goes out on the next try.
//! `rapport doctor` checks the same logins.

mod common;

use std::path::Path;

use common::idp::Idp;
use common::smtp::SmtpSink;
use rapport::config::Config;
use rapport::oauth::{StoredToken, save_token};
use rapport::sequences::smtp::{SendOutcome, SmtpClient};

const RAW: &[u8] = b"From: alice@example.com\r\nTo: sara@acme.example\r\nSubject: Hello\r\nMessage-ID: <smtp-auth-1@example.com>\r\n\r\nHello Sara\r\n";

/// A config whose one mailbox sends through `sink` (SMTP `tls: none`); `imap_auth` and
/// `smtp_auth` are the YAML lines of each login.
fn config(dir: &Path, sink: &SmtpSink, imap_auth: &str, smtp_auth: &str) -> (Config, std::path::PathBuf) {
    config_tls(dir, sink, imap_auth, smtp_auth, "none")
}

fn config_tls(
    dir: &Path,
    sink: &SmtpSink,
    imap_auth: &str,
    smtp_auth: &str,
    tls: &str,
) -> (Config, std::path::PathBuf) {
    let yaml = format!(
        "database:\n  url: sqlite://{db}\ninternal_domains: [example.com]\nreps:\n  - id: alice\n    name: Alice\n    email: alice@example.com\n    mailboxes: [alice-imap]\nmailboxes:\n  - id: alice-imap\n    kind: imap\n    host: 127.0.0.1\n    port: {closed}\n    tls: none\n    username: alice\n{imap_auth}    smtp:\n      host: 127.0.0.1\n      port: {port}\n      tls: {tls}\n      username: alice\n{smtp_auth}",
        db = dir.join("r.db").display(),
        closed = closed_port(),
        port = sink.port
    );
    let path = dir.join("rapport.yaml");
    std::fs::write(&path, yaml).unwrap();
    (Config::load(&path).unwrap_or_else(|e| panic!("{e}")), path)
}

fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn client(config: &Config) -> SmtpClient {
    let smtp = config.mailboxes[0].smtp.as_ref().expect("an smtp block");
    SmtpClient::new(smtp, rapport::clock::system()).unwrap()
}

fn logins(sink: &SmtpSink) -> String {
    std::fs::read_to_string(sink.dir().join("logins")).unwrap_or_default()
}

fn doctor_smtp_line(config: &Path) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rapport"))
        .arg("--config")
        .arg(config)
        .arg("doctor")
        .env("RAPPORT_LOG", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines()
        .find(|l| l.contains("mailbox alice-imap: smtp"))
        .unwrap_or_else(|| panic!("no smtp line:\n{text}"))
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_login_sends_and_a_wrong_password_fails_for_good() {
    let sink = SmtpSink::start(&["--login", "alice:s3cret-pw"]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("imap.pw"), "x\n").unwrap();
    std::fs::write(dir.path().join("smtp.pw"), "s3cret-pw\n").unwrap();
    std::fs::write(dir.path().join("wrong.pw"), "not-it\n").unwrap();
    let imap = "    password_file: imap.pw\n";

    let (good, good_path) = config(dir.path(), &sink, imap, "      password_file: smtp.pw\n");
    let outcome = client(&good)
        .send_raw("alice@example.com", "sara@acme.example", RAW)
        .await;
    assert_eq!(outcome, SendOutcome::Sent);
    assert_eq!(logins(&sink), "PLAIN alice\n");
    assert_eq!(sink.messages().len(), 1);
    assert!(doctor_smtp_line(&good_path).starts_with("ok"));

    let (bad, bad_path) = config(dir.path(), &sink, imap, "      password_file: wrong.pw\n");
    match client(&bad)
        .send_raw("alice@example.com", "sara@acme.example", RAW)
        .await
    {
        SendOutcome::Failed(why) => assert!(why.contains("535"), "{why}"),
        other => panic!("a refused password is a permanent failure, got {other:?}"),
    }
    let line = doctor_smtp_line(&bad_path);
    assert!(line.starts_with("FAIL") && line.contains("535"), "{line}");
    assert!(!line.contains("not-it"), "no password in the output");
    assert_eq!(sink.messages().len(), 1, "nothing more was accepted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xoauth2_sends_with_the_mailboxs_oauth_token_and_refreshes_a_refused_one() {
    let idp = Idp::start().await;
    let sink = SmtpSink::start(&["--introspect", &format!("{}/introspect", idp.base)]);
    let dir = tempfile::tempdir().unwrap();
    let (config, path) = config(
        dir.path(),
        &sink,
        &idp.oauth_yaml("client-alice", "alice.json"),
        "      auth: oauth2\n",
    );
    // A stored access token that still looks valid here but that the provider no longer knows.
    save_token(
        &dir.path().join("alice.json"),
        &StoredToken {
            refresh_token: idp.grant("alice"),
            access_token: Some("at-revoked".into()),
            expires_at: Some(chrono::Utc::now() + chrono::Duration::hours(1)),
        },
    )
    .unwrap();
    let client = client(&config);

    match client.send_raw("alice@example.com", "sara@acme.example", RAW).await {
        SendOutcome::Retry(_) => {}
        other => panic!("a refused token is retried after a refresh, got {other:?}"),
    }
    assert_eq!(
        idp.state.lock().unwrap().refreshes,
        1,
        "the refusal refreshed the token"
    );
    assert!(sink.messages().is_empty());

    let outcome = client.send_raw("alice@example.com", "sara@acme.example", RAW).await;
    assert_eq!(outcome, SendOutcome::Sent);
    assert_eq!(logins(&sink), "XOAUTH2 alice\n");
    assert_eq!(sink.messages().len(), 1);
    assert_eq!(idp.state.lock().unwrap().refreshes, 1, "the fresh token was reused");

    let line = doctor_smtp_line(&path);
    assert!(line.starts_with("ok") && line.contains("alice logged in"), "{line}");

    // Revoked at the provider: the refresh fails, the message waits (retry) and is not lost.
    idp.state.lock().unwrap().revoke_user("alice");
    let line = doctor_smtp_line(&path);
    assert!(line.starts_with("FAIL"), "{line}");
}

/// STARTTLS and implicit TLS with a certificate from a private CA: sent when the client trusts
/// that CA (`ca_file`), refused (and retried later, nothing delivered) when it does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn starttls_and_implicit_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let tls = dir.path().join("tls");
    common::dovecot::make_certificates(&tls);
    let (cert, key, ca) = (tls.join("server.pem"), tls.join("server.key"), tls.join("ca.pem"));
    std::fs::write(dir.path().join("imap.pw"), "x\n").unwrap();
    std::fs::write(dir.path().join("smtp.pw"), "s3cret-pw\n").unwrap();
    for mode in ["starttls", "implicit"] {
        let mut args = vec![
            "--login",
            "alice:s3cret-pw",
            "--tls",
            cert.to_str().unwrap(),
            key.to_str().unwrap(),
        ];
        if mode == "implicit" {
            args.push("--implicit-tls");
        }
        let sink = SmtpSink::start(&args);
        let smtp = |trusted: bool| {
            let ca_line = if trusted {
                format!("      ca_file: {}\n", ca.display())
            } else {
                String::new()
            };
            format!("      password_file: smtp.pw\n{ca_line}")
        };
        let imap = "    password_file: imap.pw\n";
        let (untrusted, untrusted_path) = config_tls(dir.path(), &sink, imap, &smtp(false), mode);
        match client(&untrusted)
            .send_raw("alice@example.com", "sara@acme.example", RAW)
            .await
        {
            SendOutcome::Retry(why) => assert!(why.to_lowercase().contains("certificate"), "{mode}: {why}"),
            other => panic!("{mode}: an untrusted certificate must not send, got {other:?}"),
        }
        assert!(sink.messages().is_empty(), "{mode}");
        let line = doctor_smtp_line(&untrusted_path);
        assert!(line.starts_with("FAIL"), "{mode}: {line}");

        let (trusted, trusted_path) = config_tls(dir.path(), &sink, imap, &smtp(true), mode);
        let outcome = client(&trusted)
            .send_raw("alice@example.com", "sara@acme.example", RAW)
            .await;
        assert_eq!(outcome, SendOutcome::Sent, "{mode}");
        assert_eq!(sink.messages().len(), 1, "{mode}");
        let versions = std::fs::read_to_string(sink.dir().join("tls")).unwrap();
        assert!(versions.trim().starts_with("TLSv1."), "{mode}: {versions}");
        assert_eq!(logins(&sink), "PLAIN alice\n", "{mode}");
        let line = doctor_smtp_line(&trusted_path);
        assert!(line.starts_with("ok"), "{mode}: {line}");
    }
}
