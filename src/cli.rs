//! The `rapport` command line: parsing, and one function per command. Errors leave here as
//! `anyhow` messages with context; `main.rs` prints them.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::clock;
use crate::config::{Config, ConfigError, redact_url};
use crate::daemon;
use crate::leads;
use crate::sources::mail::verify::verify_mailbox;
use crate::store::Store;

/// Rapport logs your sales team's email and meetings as activities, counts them toward
/// targets, and sends nurture sequences.
#[derive(Debug, Parser)]
#[command(name = "rapport", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file.
    #[arg(
        long,
        short,
        global = true,
        env = "RAPPORT_CONFIG",
        default_value = "/etc/rapport/rapport.yaml"
    )]
    pub config: PathBuf,

    /// Log format on stderr.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon: sync every mailbox and calendar and log activities until stopped.
    Run(RunArgs),
    /// Validate the configuration and print every problem with file:line:column.
    Check,
    /// Apply the database migrations that are not applied yet.
    Migrate,
    /// Import and list leads.
    #[command(subcommand)]
    Leads(LeadsCommand),
    /// Show leads, activities and the health of each source.
    Status,
    /// Say why a message was or was not counted, for whom, and against which lead.
    Explain {
        /// The Message-ID (with or without angle brackets).
        message_id: String,
    },
    /// Compare each mailbox with what was seen and name every missed message; exits 1 on a gap.
    Verify {
        /// Check only this mailbox.
        #[arg(long)]
        mailbox: Option<String>,
    },
    /// Check the config, the database, every server's reachability, TLS and login, and the
    /// clock: one verdict per line; exits 1 when a check fails.
    Doctor,
    /// Authorize an OAuth2 mailbox (`auth: oauth2`): opens the provider's consent page and
    /// stores the refresh token (mode 0600). Reload or restart the daemon afterwards.
    Auth {
        /// The mailbox id.
        mailbox: String,
        /// Device flow for headless servers: enter a code on any other device.
        #[arg(long)]
        device: bool,
    },
    /// Progress toward targets per rep and goal: done, target, percent and pace.
    Report(crate::report::command::ReportArgs),
    /// Log an activity no mailbox sees: a call, visit, task or note.
    Log(crate::report::command::LogArgs),
    /// Enroll a lead, or every lead of a CSV file (an `email` column), in a sequence.
    Enroll {
        /// The sequence id (its file name without `.yaml`).
        sequence: String,
        #[arg(long, conflicts_with = "csv", required_unless_present = "csv")]
        lead: Option<String>,
        #[arg(long)]
        csv: Option<PathBuf>,
    },
    /// Stop a lead's enrollments (in one sequence, or all).
    Unenroll {
        /// Only this sequence.
        sequence: Option<String>,
        #[arg(long)]
        lead: String,
    },
    /// Inspect sequences.
    #[command(subcommand)]
    Sequences(SequencesCommand),
}

#[derive(Debug, Subcommand)]
pub enum SequencesCommand {
    /// Every sequence with its version, steps and enrollments.
    List,
    /// Enrollments (of one sequence), their state and next due time; deliveries left unknown.
    Status { sequence: Option<String> },
    /// Render every step for a lead and show when each would go out, without sending.
    Preview {
        sequence: String,
        #[arg(long)]
        lead: String,
    },
    /// What would go out in the next days, per mailbox, against its daily cap.
    Upcoming {
        #[arg(long, default_value_t = 7)]
        days: i64,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Sync every source once, print a per-rep summary and exit.
    #[arg(long)]
    pub once: bool,
}

#[derive(Debug, Subcommand)]
pub enum LeadsCommand {
    /// Upsert leads from a CSV file with a header row (an `email` column is required).
    Import {
        /// The CSV file.
        file: PathBuf,
    },
    /// List leads, ordered by email.
    List {
        /// How many leads to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
        /// How many to skip.
        #[arg(long, default_value_t = 0)]
        offset: i64,
    },
}

/// Loads the config, printing every problem to stderr when it is invalid.
pub fn load_config(path: &Path) -> Result<Config> {
    match Config::load(path) {
        Ok(c) => Ok(c),
        Err(ConfigError::Invalid(d)) => {
            eprintln!("{d}");
            anyhow::bail!("{} is invalid; nothing was started", path.display())
        }
        Err(e) => Err(e.into()),
    }
}

async fn open_store(config: &Config) -> Result<Store> {
    let store = Store::open(config, clock::system()).await?;
    store.migrate().await?;
    store.sync_reps(config).await?;
    Ok(store)
}

pub async fn execute(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Check => match Config::load(&cli.config) {
            Ok(config) => {
                // Every file is checked, so one run names every error.
                let targets = crate::report::command::check_targets(&config)?;
                let sequences = crate::sequences::commands::check(&config);
                Ok(if targets == ExitCode::SUCCESS {
                    sequences
                } else {
                    targets
                })
            }
            Err(ConfigError::Invalid(d)) => {
                eprintln!("{d}");
                Ok(ExitCode::FAILURE)
            }
            Err(e) => Err(e.into()),
        },
        Command::Migrate => {
            let config = load_config(&cli.config)?;
            let store = Store::open(&config, clock::system()).await?;
            store.migrate().await?;
            println!("migrations applied to {}", redact_url(&config.database.url));
            Ok(ExitCode::SUCCESS)
        }
        Command::Leads(LeadsCommand::Import { file }) => {
            let config = load_config(&cli.config)?;
            let store = open_store(&config).await?;
            let report = leads::import_file(&store, &config, &file).await?;
            let linked = daemon::rematch_seen_mail(&config, &store).await?;
            for r in &report.rejected {
                eprintln!("{}: {r}", file.display());
            }
            let c = report.counts;
            println!(
                "{}: {} inserted, {} updated, {} unchanged, {} rejected",
                file.display(),
                c.inserted,
                c.updated,
                c.unchanged,
                report.rejected.len()
            );
            if linked > 0 {
                println!("{linked} message(s) seen earlier now count for the imported leads");
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Leads(LeadsCommand::List { limit, offset }) => {
            let config = load_config(&cli.config)?;
            let store = open_store(&config).await?;
            let leads = store.list_leads(limit, offset).await?;
            println!(
                "{:<36} {:<24} {:<24} {:<10} STATUS",
                "EMAIL", "NAME", "COMPANY", "OWNER"
            );
            for l in leads {
                println!(
                    "{:<36} {:<24} {:<24} {:<10} {}",
                    l.email,
                    l.name.unwrap_or_default(),
                    l.company_name.or(l.company_domain).unwrap_or_default(),
                    l.owner_rep.unwrap_or_default(),
                    l.status
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Status => {
            let config = load_config(&cli.config)?;
            let store = open_store(&config).await?;
            print!("{}", daemon::status_text(&store, &config).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Explain { message_id } => {
            let config = load_config(&cli.config)?;
            let store = open_store(&config).await?;
            let rows = store.explain_message(&message_id).await?;
            if rows.is_empty() {
                println!(
                    "<{}> has not been seen in any mailbox",
                    message_id.trim_matches(['<', '>'])
                );
                return Ok(ExitCode::FAILURE);
            }
            for r in rows {
                let when = r
                    .occurred_at
                    .map(|t| t.to_rfc3339())
                    .unwrap_or_else(|| "unknown time".into());
                println!(
                    "{} / {} (rep {}, {when}): {}",
                    r.mailbox_id, r.folder, r.rep_id, r.reason
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { mailbox } => {
            let config = load_config(&cli.config)?;
            let store = open_store(&config).await?;
            let mut gaps = 0;
            let mut failed = false;
            for mb in config
                .mailboxes
                .iter()
                .filter(|m| mailbox.as_ref().is_none_or(|id| *id == m.id))
            {
                match verify_mailbox(mb, &store, store.now()).await {
                    Ok(checks) => {
                        for c in checks {
                            println!(
                                "{} / {}: {} in the window, {} seen, {} missed, {} not yet synced",
                                mb.id,
                                c.folder,
                                c.on_server,
                                c.seen,
                                c.missed.len(),
                                c.pending
                            );
                            for m in &c.missed {
                                println!("  missed: {m}");
                            }
                            gaps += c.missed.len();
                        }
                    }
                    Err(e) => {
                        println!("{}: cannot verify: {e:#}", mb.id);
                        failed = true;
                    }
                }
            }
            if mailbox.is_some() && !config.mailboxes.iter().any(|m| Some(&m.id) == mailbox.as_ref()) {
                anyhow::bail!("no mailbox {} in {}", mailbox.unwrap_or_default(), cli.config.display());
            }
            Ok(if gaps > 0 || failed {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Auth { mailbox, device } => {
            let config = load_config(&cli.config)?;
            let mb = config
                .mailboxes
                .iter()
                .find(|m| m.id == mailbox)
                .with_context(|| format!("no mailbox {mailbox} in {}", cli.config.display()))?;
            let oauth = match &mb.source {
                crate::config::MailboxSource::Imap(i) => match &i.auth {
                    crate::config::ImapAuth::OAuth2(o) => o.as_ref().clone(),
                    _ => anyhow::bail!("mailbox {mailbox} does not use `auth: oauth2`"),
                },
                _ => anyhow::bail!("mailbox {mailbox} is not an IMAP mailbox"),
            };
            let show = |text: &str| {
                println!("{text}");
                let _ = std::io::Write::flush(&mut std::io::stdout());
            };
            if device {
                crate::oauth::flow::authorize_on_device(&oauth, clock::system(), show).await?;
            } else {
                println!("Open this URL in a browser on this machine and grant access:");
                crate::oauth::flow::authorize_in_browser(&oauth, clock::system(), show).await?;
            }
            println!(
                "mailbox {mailbox} is authorized; token stored in {} (mode 0600). Run `systemctl reload rapport`.",
                oauth.token_file.display()
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Doctor => {
            let report = crate::doctor::run(&cli.config, clock::system()).await;
            for check in &report.checks {
                println!("{check}");
            }
            Ok(if report.failed() {
                println!("verdict: FAIL");
                ExitCode::FAILURE
            } else {
                println!("verdict: ok");
                ExitCode::SUCCESS
            })
        }
        Command::Report(args) => {
            let config = load_config(&cli.config)?;
            let store = open_store(&config).await?;
            crate::report::command::report(&store, &config, &args).await
        }
        Command::Log(args) => {
            let config = load_config(&cli.config)?;
            let store = open_store(&config).await?;
            crate::report::command::log(&store, &config, &args).await
        }
        Command::Enroll { sequence, lead, csv } => {
            let engine = sequence_engine(&cli.config).await?;
            let (text, refused) =
                crate::sequences::commands::enroll(&engine, &sequence, lead.as_deref(), csv.as_deref()).await?;
            print!("{text}");
            Ok(if refused { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::Unenroll { sequence, lead } => {
            let engine = sequence_engine(&cli.config).await?;
            print!(
                "{}",
                crate::sequences::commands::unenroll(&engine, sequence.as_deref(), &lead).await?
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Sequences(cmd) => {
            let engine = sequence_engine(&cli.config).await?;
            let text = match cmd {
                SequencesCommand::List => crate::sequences::commands::list(&engine).await?,
                SequencesCommand::Status { sequence } => {
                    crate::sequences::commands::status(&engine, sequence.as_deref()).await?
                }
                SequencesCommand::Preview { sequence, lead } => {
                    crate::sequences::commands::preview(&engine, &sequence, &lead).await?
                }
                SequencesCommand::Upcoming { days } => crate::sequences::commands::upcoming(&engine, days).await?,
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => {
            let config = load_config(&cli.config)?;
            let options = daemon::RunOptions { once: args.once };
            daemon::run(config, clock::system(), options, daemon::shutdown_signal())
                .await
                .context("the daemon stopped with an error")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The sequences of the config, over its store.
async fn sequence_engine(path: &Path) -> Result<crate::sequences::engine::Engine> {
    let config = load_config(path)?;
    let store = open_store(&config).await?;
    crate::sequences::engine::Engine::load(std::sync::Arc::new(config), store)
}

/// Sets up logging: `RAPPORT_LOG` (or `RUST_LOG`) picks levels, default `info`.
pub fn init_logging(format: LogFormat) {
    let filter = std::env::var("RAPPORT_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".into());
    let mut filter =
        tracing_subscriber::EnvFilter::try_new(&filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // At debug level these libraries log the protocol itself: lettre every SMTP line (AUTH
    // with the password, DATA with the body), async-imap (through `log`) LOGIN lines. Whatever
    // RAPPORT_LOG asks, they log warnings only.
    for quiet in ["lettre=warn", "async_imap=warn"] {
        if let Ok(d) = quiet.parse() {
            filter = filter.add_directive(d);
        }
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
