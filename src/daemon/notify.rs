//! The systemd notification protocol (`Type=notify`): `READY=1` once the config is validated,
//! the migrations applied and every source task started; `RELOADING=1` … `READY=1` around a
//! reload; `STOPPING=1` at shutdown; `WATCHDOG=1` while the supervised tasks are alive.
//!
//! Outside systemd (`$NOTIFY_SOCKET` unset) every call does nothing. A failed send is logged
//! and otherwise ignored: the daemon keeps working without its service manager.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use super::supervisor::{HEARTBEAT_EVERY, Heartbeats};

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        warn!("cannot notify the service manager: {e}");
    }
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
