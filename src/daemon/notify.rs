//! The systemd notification protocol (`Type=notify`): `READY=1` once the config is validated,
//! the migrations applied and every source task started; `RELOADING=1` … `READY=1` around a
//! reload; `STOPPING=1` at shutdown; `WATCHDOG=1` while the supervised tasks are alive.
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) every call does nothing. A failed send is logged
//! and otherwise ignored: the daemon keeps working without its service manager.

use std::sync::OnceLock;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::supervisor::{HEARTBEAT_EVERY, Heartbeats};

enum Message {
    Text(String),
    /// Answered once every message before it has been sent.
    Flush(SyncSender<()>),
}

/// The notification thread's queue, or `None` outside a service manager. Messages go out from a
/// thread of their own because sending to the notification socket blocks while the manager's
/// queue is full (a manager that does not read), and that must never stall the async runtime.
fn queue() -> Option<&'static SyncSender<Message>> {
    static QUEUE: OnceLock<Option<SyncSender<Message>>> = OnceLock::new();
    QUEUE
        .get_or_init(|| {
            std::env::var_os("NOTIFY_SOCKET")?;
            let (tx, rx) = sync_channel::<Message>(64);
            let spawned = std::thread::Builder::new().name("sd-notify".into()).spawn(move || {
                for msg in rx {
                    match msg {
                        Message::Text(text) => {
                            if let Err(e) = sd_notify::notify(&[NotifyState::Custom(&text)]) {
                                warn!("cannot notify the service manager: {e}");
                            }
                        }
                        Message::Flush(done) => {
                            let _ = done.send(());
                        }
                    }
                }
            });
            match spawned {
                Ok(_) => Some(tx),
                Err(e) => {
                    warn!("cannot start the notification thread ({e}); systemd will not hear from rapport");
                    None
                }
            }
        })
        .as_ref()
}

fn send(states: &[NotifyState<'_>]) {
    let Some(queue) = queue() else { return };
    let text: Vec<String> = states.iter().map(|s| s.to_string()).collect();
    match queue.try_send(Message::Text(text.join("\n"))) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => debug!("the service manager is not reading; notification dropped"),
        Err(TrySendError::Disconnected(_)) => warn!("the notification thread is gone"),
    }
}

/// Waits (at most `limit`) until every notification queued so far is sent: the last ones
/// (`STOPPING=1`) must leave before the process exits.
pub fn flush(limit: Duration) {
    let Some(queue) = queue() else { return };
    let until = Instant::now() + limit;
    let (done_tx, done_rx) = sync_channel(1);
    let mut msg = Message::Flush(done_tx);
    loop {
        match queue.try_send(msg) {
            Ok(()) => break,
            Err(TrySendError::Full(m)) if Instant::now() < until => {
                msg = m;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(_) => return,
        }
    }
    let _ = done_rx.recv_timeout(until.saturating_duration_since(Instant::now()));
}

/// The daemon is up: sources started, and `status` says what runs.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload has begun; [`ready`] ends it.
pub fn reloading() {
    // MONOTONIC_USEC lets systemd (Type=notify-reload) match this to the SIGHUP it sent.
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// A free-form status line (`systemctl status` shows it).
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// How old the last beat of a task may be for the daemon to count as alive, given the
/// watchdog interval: half of it, but never so little that a beat due now is missed.
pub fn max_beat_age(watchdog: Duration) -> Duration {
    (watchdog / 2).max(HEARTBEAT_EVERY * 3)
}

/// Pings the systemd watchdog (`WatchdogSec=`) every half interval while every supervised
/// task is alive; when one has stopped beating, names it and sends nothing, so that systemd
/// restarts the daemon. Returns at once when no watchdog is configured, or when `cancel` fires.
pub async fn watchdog(heartbeats: Heartbeats, cancel: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let every = interval / 2;
    let max_age = max_beat_age(interval);
    debug!(?interval, "systemd watchdog enabled");
    loop {
        let stale = heartbeats.stale(Instant::now(), max_age);
        if stale.is_empty() {
            send(&[NotifyState::Watchdog]);
        } else {
            warn!(tasks = ?stale, "tasks stopped beating; not pinging the watchdog");
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
    }
}
