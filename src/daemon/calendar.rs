//! One task per calendar: sync, wait for the poll interval, repeat; back off on transient
//! errors; stop for good when the server refuses the credentials.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tracing::info;

use super::Supervised;
use super::source_task::{after_failure, pause};
use crate::config::{CalendarConfig, CalendarSource, IcsLocation, SecretSource};
use crate::sources::calendar::caldav::{self, CalDavClient, DavAuth};
use crate::sources::calendar::google::{self, GoogleCalendar};
use crate::sources::calendar::ics::Window;
use crate::sources::calendar::{CalendarIngestor, CalendarStats, feed};
use crate::sources::{Backoff, SourceError};
use crate::store::HealthState;

/// A calendar and the ingestor that stores what it finds.
pub struct CalendarTask {
    pub config: CalendarConfig,
    pub ingestor: Arc<CalendarIngestor>,
    pub client: reqwest::Client,
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .user_agent(concat!("rapport/", env!("CARGO_PKG_VERSION")))
        .timeout(std::time::Duration::from_secs(120))
        .build()
        .unwrap_or_default()
}

/// A calendar's source, ready to use: secrets read, clients built.
enum Source<'a> {
    Ics(&'a IcsLocation),
    CalDav(CalDavClient),
    Google(GoogleCalendar),
}

impl<'a> Source<'a> {
    fn of(config: &'a CalendarConfig, client: &reqwest::Client) -> Result<Source<'a>, SourceError> {
        let secret = |s: &SecretSource| s.read().map_err(|e| SourceError::Auth(format!("{e:#}")));
        Ok(match &config.source {
            CalendarSource::Ics { location } => Source::Ics(location),
            CalendarSource::CalDav {
                url,
                username,
                password,
                token,
            } => {
                let auth = match (username, password, token) {
                    (_, _, Some(t)) => DavAuth::Bearer(secret(t)?),
                    (Some(u), Some(p), None) => DavAuth::Basic {
                        username: u.clone(),
                        password: secret(p)?,
                    },
                    _ => DavAuth::None,
                };
                Source::CalDav(CalDavClient::new(client.clone(), url, auth)?)
            }
            CalendarSource::Google {
                calendar_id,
                token,
                base_url,
            } => Source::Google(GoogleCalendar {
                calendar_id: calendar_id.clone(),
                token: token.clone(),
                root_url: base_url.clone(),
                rate_limit_backoff: std::time::Duration::from_secs(1),
            }),
        })
    }
}

/// `rapport doctor`: reaches the calendar's server with its credentials and reads, storing
/// nothing. Says what it found (occurrences in the window, collections, or that the API
/// answers).
pub async fn probe_calendar(
    config: &CalendarConfig,
    tz: chrono_tz::Tz,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, SourceError> {
    let client = http_client();
    let window = Window::around(now, config.past_days, config.future_days);
    match Source::of(config, &client)? {
        Source::Ics(location) => feed::probe(location, &client, &window, tz).await,
        Source::CalDav(dav) => {
            let collections = dav.discover().await?;
            Ok(format!("logged in; {} calendar collection(s)", collections.len()))
        }
        Source::Google(cal) => google::probe(&cal).await,
    }
}

impl CalendarTask {
    pub fn new(config: CalendarConfig, ingestor: Arc<CalendarIngestor>) -> Self {
        CalendarTask {
            config,
            ingestor,
            client: http_client(),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self.config.source {
            CalendarSource::Google { .. } => "google",
            CalendarSource::CalDav { .. } => "caldav",
            CalendarSource::Ics { .. } => "ics",
        }
    }

    /// The span synced now.
    pub fn window(&self) -> Window {
        Window::around(self.ingestor.now(), self.config.past_days, self.config.future_days)
    }

    /// One complete sync.
    pub async fn sync_once(&self) -> Result<CalendarStats, SourceError> {
        let window = self.window();
        match Source::of(&self.config, &self.client)? {
            Source::Ics(location) => feed::sync_feed(location, &self.ingestor, &self.client, &window).await,
            Source::CalDav(client) => caldav::sync_account(&client, &self.ingestor, &window).await,
            Source::Google(cal) => google::sync_google(&cal, &self.ingestor, &window).await,
        }
    }

    async fn serve(&self, cancel: CancellationToken) {
        let id = self.config.id.clone();
        self.ingestor
            .store
            .record_health(&id, self.kind(), HealthState::Starting, None)
            .await;
        let mut backoff = Backoff::default();
        loop {
            let result = tokio::select! {
                _ = cancel.cancelled() => break,
                r = self.sync_once() => r,
            };
            let delay = match result {
                Ok(stats) => {
                    backoff.reset();
                    self.ingestor.synced(self.kind(), &stats).await;
                    self.config.poll_interval
                }
                Err(e) => {
                    let store = &self.ingestor.store;
                    match after_failure(store, "calendar", &id, self.kind(), &e, &mut backoff).await {
                        Some(d) => d,
                        None => return,
                    }
                }
            };
            if !pause(&cancel, delay).await {
                break;
            }
        }
        info!(calendar = %id, "calendar task stopped");
    }
}

impl Supervised for CalendarTask {
    fn name(&self) -> String {
        format!("calendar {}", self.config.id)
    }

    fn run(self: Arc<Self>, cancel: CancellationToken) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(async move { self.serve(cancel).await })
    }
}
