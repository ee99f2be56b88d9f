use super::*;

fn load(src: &str) -> Result<Config, Diagnostics> {
    match Config::from_str(Path::new("/etc/rapport/rapport.yaml"), src) {
        Ok(c) => Ok(c),
        Err(ConfigError::Invalid(d)) => Err(d),
        Err(e) => panic!("unexpected {e}"),
    }
}

const MINIMAL: &str = "\
internal_domains: [example.com]
reps:
  - id: alice
    name: Alice
    email: Alice@Example.com
    mailboxes: [a]
mailboxes:
  - id: a
    kind: maildir
    path: mail/alice
";

#[test]
fn reference_config_is_valid() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/rapport.example.yaml");
    let config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.reps.len(), 1);
    assert_eq!(config.mailboxes.len(), 2);
    let alice = config.rep("alice").unwrap();
    assert_eq!(alice.time_zone, chrono_tz::Europe::Stockholm);
    assert_eq!(
        alice.addresses().collect::<Vec<_>>(),
        ["alice@example.com", "a.andersson@example.com"]
    );
    match &config.mailboxes[0].source {
        MailboxSource::Imap(imap) => {
            assert_eq!(imap.port, 993);
            assert!(matches!(imap.auth, ImapAuth::Password(SecretSource::File(_))));
        }
        other => panic!("expected imap, got {other:?}"),
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let c = load(MINIMAL).unwrap();
    assert_eq!(c.database.url, "sqlite://rapport.db");
    assert_eq!(c.reps[0].email, "alice@example.com");
    assert_eq!(c.reps[0].time_zone, Tz::UTC);
    assert_eq!(c.http.listen.to_string(), "127.0.0.1:8787");
    assert_eq!(c.shutdown_timeout, Duration::from_secs(10));
    assert_eq!(c.mailbox_owner("a").unwrap().id, "alice");
    match &c.mailboxes[0].source {
        MailboxSource::Maildir(m) => assert_eq!(m.path, Path::new("/etc/rapport/mail/alice")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn three_mistakes_give_three_located_errors() {
    let src = "\
internal_domains: [example.com]
reps:
  - id: alice
    name: Alice
    email: alice@example.com
    time_zone: Europe/Stokholm
    mailboxes: [a]
mailboxes:
  - id: a
    kind: imap
    host: imap.example.com
    usernme: alice
    password_file: /x
    backfill_days: lots
";
    let errs = load(src).unwrap_err();
    let text = errs.to_string();
    let lines: Vec<(usize, usize)> = errs.iter().map(|d| (d.pos.line, d.pos.column)).collect();
    // The time zone, the misspelt key (which also leaves `username` missing), the number.
    assert!(text.contains("unknown time zone `Europe/Stokholm`"), "{text}");
    assert!(text.contains("did you mean `Europe/Stockholm`?"), "{text}");
    assert!(text.contains("unknown key `usernme`"), "{text}");
    assert!(text.contains("did you mean `username`?"), "{text}");
    assert!(text.contains("expected a whole number"), "{text}");
    assert!(lines.contains(&(6, 16)), "{lines:?}");
    assert!(lines.contains(&(12, 5)), "{lines:?}");
    assert!(lines.contains(&(14, 20)), "{lines:?}");
}

#[test]
fn cross_references_are_checked() {
    let src = "\
internal_domains: [example.com]
reps:
  - id: alice
    name: Alice
    email: alice@elsewhere.example
    mailboxes: [alice-mial]
  - id: alice
    name: Other
    email: other@example.com
mailboxes:
  - id: alice-mail
    kind: maildir
    path: x
";
    let text = load(src).unwrap_err().to_string();
    assert!(text.contains("unknown mailbox `alice-mial`"), "{text}");
    assert!(text.contains("did you mean `alice-mail`?"), "{text}");
    assert!(text.contains("duplicate rep id `alice`"), "{text}");
    assert!(text.contains("outside the internal domains"), "{text}");
    assert!(text.contains("mailbox `alice-mail` belongs to no rep"), "{text}");
}

#[test]
fn secrets_in_the_file_are_refused() {
    let src = MINIMAL.replace(
        "    kind: maildir\n    path: mail/alice\n",
        "    kind: imap\n    host: h\n    username: u\n    password: hunter2\n",
    );
    let errs = load(&src).unwrap_err();
    let text = errs.to_string();
    assert!(text.contains("secrets are never written in the config file"), "{text}");
    assert!(!errs.iter().any(|d| d.message.contains("hunter2")), "{text}");
}

#[test]
fn plain_imap_only_on_loopback() {
    let imap = |host: &str| {
        MINIMAL.replace(
            "    kind: maildir\n    path: mail/alice\n",
            &format!("    kind: imap\n    host: {host}\n    tls: none\n    username: u\n    password_env: PW\n"),
        )
    };
    assert!(load(&imap("127.0.0.1")).is_ok());
    assert!(load(&imap("localhost")).is_ok());
    let text = load(&imap("imap.example.com")).unwrap_err().to_string();
    assert!(text.contains("clear text"), "{text}");
}

#[test]
fn unknown_kind_is_suggested() {
    let src = MINIMAL.replace("kind: maildir", "kind: imapp");
    let text = load(&src).unwrap_err().to_string();
    assert!(text.contains("unknown kind `imapp`"), "{text}");
    assert!(text.contains("did you mean `imap`?"), "{text}");
}

#[test]
fn missing_internal_domains_is_an_error() {
    let src = MINIMAL.replace("internal_domains: [example.com]\n", "");
    let text = load(&src).unwrap_err().to_string();
    assert!(text.contains("missing required key `internal_domains`"), "{text}");
}

#[test]
fn syntax_error_is_located() {
    let errs = load("reps: [\n").unwrap_err();
    assert_eq!(errs.len(), 1);
    assert!(errs.0[0].message.contains("YAML syntax error"));
}

#[test]
fn database_password_is_redacted() {
    assert_eq!(
        redact_url("postgres://rapport:s3cret@db/rapport"),
        "postgres://rapport:***@db/rapport"
    );
    assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
    assert_eq!(
        redact_url("postgres://u@db/r?sslmode=require&password=s3cret"),
        "postgres://u@db/r?sslmode=require&password=***"
    );
}
