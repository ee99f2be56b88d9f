//! CalDAV (RFC 4791) on reqwest, with roxmltree reading the multistatus answers.
//!
//! Discovery from a base URL: the URL itself when it is a calendar, else
//! current-user-principal → calendar-home-set → every calendar collection with events.
//! Each collection syncs with `sync-collection` (RFC 6578); when a server refuses it (some
//! answer 403 or 500 to a token they gave out) the collection falls back to comparing ETags
//! (PROPFIND Depth 1 `getetag`, skipped entirely while the `getctag` is unchanged). Changed
//! objects are then read with `calendar-multiget`. Once a day (when the sync window moves) every
//! object is read again, so occurrences of old series that move into the window are seen.

use std::collections::{HashMap, HashSet};

use anyhow::{Context, anyhow};
use reqwest::{Method, StatusCode, Url};
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};

use super::ics::{Window, parse_ics};
use super::{CalendarChanges, CalendarIngestor, CalendarObject, CalendarStats};
use crate::config::Secret;
use crate::sources::SourceError;
use crate::store::SyncCursor;

const DAV: &str = "DAV:";
const CALDAV: &str = "urn:ietf:params:xml:ns:caldav";
const CALSERVER: &str = "http://calendarserver.org/ns/";

/// How requests authenticate.
#[derive(Clone)]
pub enum DavAuth {
    None,
    Basic { username: String, password: Secret },
    Bearer(Secret),
}

/// A CalDAV account: a base URL and credentials.
pub struct CalDavClient {
    http: reqwest::Client,
    base: Url,
    auth: DavAuth,
}

/// One member of a multistatus answer.
#[derive(Debug, Clone, Default)]
struct DavResponse {
    href: String,
    /// The response's own status (a deleted member in a sync report), if any.
    status: Option<u16>,
    /// Properties found (status 200), by local name.
    props: HashMap<String, String>,
    /// Child element names of `resourcetype`.
    resource_types: Vec<String>,
    /// Component names of `supported-calendar-component-set`.
    components: Vec<String>,
    /// `href` children of the found properties, by property name.
    prop_hrefs: HashMap<String, String>,
}

/// What a collection's sync position is, kept in the sync cursor.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct CollectionCursor {
    sync_token: Option<String>,
    ctag: Option<String>,
    /// The first day of the window when every object was last read.
    window_start: Option<String>,
}

fn status_code(text: &str) -> Option<u16> {
    text.split_whitespace().nth(1)?.parse().ok()
}

/// Parses a multistatus body.
fn parse_multistatus(body: &str) -> anyhow::Result<(Vec<DavResponse>, Option<String>)> {
    let doc = roxmltree::Document::parse(body).context("the server's XML answer is not well-formed")?;
    let mut out = Vec::new();
    let root = doc.root_element();
    let sync_token = root
        .children()
        .find(|n| n.has_tag_name((DAV, "sync-token")))
        .and_then(|n| n.text())
        .map(|t| t.trim().to_owned());
    for resp in root.children().filter(|n| n.has_tag_name((DAV, "response"))) {
        let mut r = DavResponse::default();
        for child in resp.children().filter(|n| n.is_element()) {
            if child.has_tag_name((DAV, "href")) {
                r.href = child.text().unwrap_or_default().trim().to_owned();
            } else if child.has_tag_name((DAV, "status")) {
                r.status = status_code(child.text().unwrap_or_default());
            } else if child.has_tag_name((DAV, "propstat")) {
                let ok = child
                    .children()
                    .find(|n| n.has_tag_name((DAV, "status")))
                    .and_then(|n| status_code(n.text().unwrap_or_default()))
                    .is_none_or(|s| (200..300).contains(&s));
                if !ok {
                    continue;
                }
                let Some(prop) = child.children().find(|n| n.has_tag_name((DAV, "prop"))) else {
                    continue;
                };
                for p in prop.children().filter(|n| n.is_element()) {
                    let name = p.tag_name().name().to_owned();
                    match name.as_str() {
                        "resourcetype" => {
                            r.resource_types = p
                                .children()
                                .filter(|n| n.is_element())
                                .map(|n| n.tag_name().name().to_owned())
                                .collect();
                        }
                        "supported-calendar-component-set" => {
                            r.components = p
                                .children()
                                .filter(|n| n.is_element())
                                .filter_map(|n| n.attribute("name").map(str::to_ascii_uppercase))
                                .collect();
                        }
                        _ => {
                            if let Some(h) = p.children().find(|n| n.tag_name().name() == "href") {
                                r.prop_hrefs
                                    .insert(name.clone(), h.text().unwrap_or_default().trim().to_owned());
                            }
                            let text: String = p
                                .descendants()
                                .filter(|n| n.is_text())
                                .filter_map(|n| n.text())
                                .collect();
                            r.props.insert(name, text);
                        }
                    }
                }
            }
        }
        if !r.href.is_empty() {
            out.push(r);
        }
    }
    Ok((out, sync_token))
}

/// Why a request failed, sorted for the task's retry logic.
fn http_error(what: &str, status: StatusCode) -> SourceError {
    if status == StatusCode::UNAUTHORIZED {
        SourceError::Auth(format!("{what}: the CalDAV server refused the credentials ({status})"))
    } else {
        SourceError::Transient(anyhow!("{what}: the CalDAV server answered {status}"))
    }
}

impl CalDavClient {
    pub fn new(http: reqwest::Client, base: &str, auth: DavAuth) -> Result<CalDavClient, SourceError> {
        let mut base = Url::parse(base).map_err(|e| SourceError::Transient(anyhow!("invalid CalDAV URL: {e}")))?;
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(CalDavClient { http, base, auth })
    }

    fn url(&self, href: &str) -> Result<Url, SourceError> {
        self.base
            .join(href)
            .map_err(|e| SourceError::Transient(anyhow!("bad href {href}: {e}")))
    }

    async fn send(
        &self,
        method: &str,
        url: &Url,
        depth: Option<&str>,
        body: String,
    ) -> Result<(StatusCode, String), SourceError> {
        let method = Method::from_bytes(method.as_bytes()).map_err(|e| SourceError::Transient(anyhow!("{e}")))?;
        let mut req = self
            .http
            .request(method, url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/xml; charset=utf-8")
            .body(body);
        if let Some(d) = depth {
            req = req.header("Depth", d);
        }
        req = match &self.auth {
            DavAuth::None => req,
            DavAuth::Basic { username, password } => req.basic_auth(username, Some(password.expose())),
            DavAuth::Bearer(token) => req.bearer_auth(token.expose()),
        };
        let resp = req
            .send()
            .await
            .map_err(|e| SourceError::Transient(anyhow!("CalDAV request failed: {}", e.without_url())))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| SourceError::Transient(anyhow!("reading a CalDAV answer: {}", e.without_url())))?;
        Ok((status, text))
    }

    async fn propfind(&self, url: &Url, depth: &str, props: &str) -> Result<Vec<DavResponse>, SourceError> {
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><d:propfind xmlns:d="DAV:" xmlns:c="{CALDAV}" xmlns:cs="{CALSERVER}"><d:prop>{props}</d:prop></d:propfind>"#
        );
        let (status, text) = self.send("PROPFIND", url, Some(depth), body).await?;
        if status != StatusCode::MULTI_STATUS {
            return Err(http_error("PROPFIND", status));
        }
        Ok(parse_multistatus(&text)?.0)
    }

    /// The calendar collections (with events) under the base URL.
    pub async fn discover(&self) -> Result<Vec<Url>, SourceError> {
        let base = self.base.clone();
        let first = self
            .propfind(
                &base,
                "0",
                "<d:resourcetype/><d:current-user-principal/><c:calendar-home-set/>",
            )
            .await?;
        let me = first.first().cloned().unwrap_or_default();
        if me.resource_types.iter().any(|t| t == "calendar") {
            return Ok(vec![base]);
        }
        let home = match me.prop_hrefs.get("calendar-home-set") {
            Some(h) => self.url(h)?,
            None => {
                let principal = me
                    .prop_hrefs
                    .get("current-user-principal")
                    .ok_or_else(|| SourceError::Transient(anyhow!("the CalDAV server names no principal at {base}")))?;
                let p = self
                    .propfind(&self.url(principal)?, "0", "<c:calendar-home-set/>")
                    .await?;
                let home = p
                    .first()
                    .and_then(|r| r.prop_hrefs.get("calendar-home-set"))
                    .ok_or_else(|| SourceError::Transient(anyhow!("the CalDAV principal has no calendar-home-set")))?;
                self.url(home)?
            }
        };
        let members = self
            .propfind(&home, "1", "<d:resourcetype/><c:supported-calendar-component-set/>")
            .await?;
        let mut out = Vec::new();
        for m in members {
            let events = m.components.is_empty() || m.components.iter().any(|c| c == "VEVENT");
            if m.resource_types.iter().any(|t| t == "calendar") && events {
                out.push(self.url(&m.href)?);
            }
        }
        Ok(out)
    }

    /// `sync-collection`: changed hrefs (with ETags), deleted hrefs, the new token. `Ok(None)`
    /// when the server refuses the report (the caller compares ETags instead).
    async fn sync_collection(
        &self,
        collection: &Url,
        token: Option<&str>,
    ) -> Result<Option<(Vec<(String, Option<String>)>, Vec<String>, Option<String>)>, SourceError> {
        let token_xml = token.map(xml_escape).unwrap_or_default();
        let body = format!(
            r#"<?xml version="1.0" encoding="utf-8"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>{token_xml}</d:sync-token><d:sync-level>1</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"#
        );
        let (status, text) = self.send("REPORT", collection, None, body).await?;
        if status == StatusCode::UNAUTHORIZED {
            return Err(http_error("sync-collection", status));
        }
        if status != StatusCode::MULTI_STATUS {
            debug!(%status, "sync-collection refused; comparing ETags instead");
            return Ok(None);
        }
        let (responses, new_token) = parse_multistatus(&text)?;
        let mut changed = Vec::new();
        let mut deleted = Vec::new();
        for r in responses {
            if same_path(&r.href, collection.path()) {
                continue;
            }
            if r.status == Some(404) {
                deleted.push(r.href);
            } else if r.props.contains_key("getetag") || r.status.is_none_or(|s| s < 300) {
                changed.push((r.href.clone(), r.props.get("getetag").cloned()));
            }
        }
        Ok(Some((changed, deleted, new_token)))
    }

    /// Every object of a collection with its ETag, and the collection's ctag.
    async fn list_etags(
        &self,
        collection: &Url,
    ) -> Result<(HashMap<String, Option<String>>, Option<String>), SourceError> {
        let members = self
            .propfind(collection, "1", "<d:getetag/><d:resourcetype/><cs:getctag/>")
            .await?;
        let mut etags = HashMap::new();
        let mut ctag = None;
        for m in members {
            if same_path(&m.href, collection.path()) {
                ctag = m.props.get("getctag").cloned();
                continue;
            }
            if m.resource_types.iter().any(|t| t == "collection") {
                continue;
            }
            etags.insert(m.href, m.props.get("getetag").cloned());
        }
        Ok((etags, ctag))
    }

    async fn ctag(&self, collection: &Url) -> Result<Option<String>, SourceError> {
        let r = self.propfind(collection, "0", "<cs:getctag/>").await?;
        Ok(r.first().and_then(|r| r.props.get("getctag").cloned()))
    }

    /// `calendar-multiget`: the data of the named objects, with ETags.
    async fn multiget(
        &self,
        collection: &Url,
        hrefs: &[String],
    ) -> Result<Vec<(String, Option<String>, String)>, SourceError> {
        let mut out = Vec::new();
        for chunk in hrefs.chunks(100) {
            let list: String = chunk
                .iter()
                .map(|h| format!("<d:href>{}</d:href>", xml_escape(h)))
                .collect();
            let body = format!(
                r#"<?xml version="1.0" encoding="utf-8"?><c:calendar-multiget xmlns:d="DAV:" xmlns:c="{CALDAV}"><d:prop><d:getetag/><c:calendar-data/></d:prop>{list}</c:calendar-multiget>"#
            );
            let (status, text) = self.send("REPORT", collection, Some("1"), body).await?;
            if status != StatusCode::MULTI_STATUS {
                return Err(http_error("calendar-multiget", status));
            }
            for r in parse_multistatus(&text)?.0 {
                if let Some(data) = r.props.get("calendar-data") {
                    out.push((r.href.clone(), r.props.get("getetag").cloned(), data.clone()));
                }
            }
        }
        Ok(out)
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// Compares hrefs by path, ignoring a trailing slash and percent-encoding differences in case.
fn same_path(href: &str, path: &str) -> bool {
    let h = Url::parse(href)
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|_| href.to_owned());
    h.trim_end_matches('/').eq_ignore_ascii_case(path.trim_end_matches('/'))
}

/// The path of an href (servers answer with paths or full URLs).
fn href_path(href: &str) -> String {
    Url::parse(href)
        .map(|u| u.path().to_owned())
        .unwrap_or_else(|_| href.to_owned())
}

/// Syncs every calendar collection of the account once.
pub async fn sync_account(
    client: &CalDavClient,
    ingestor: &CalendarIngestor,
    window: &Window,
) -> Result<CalendarStats, SourceError> {
    let collections = client.discover().await?;
    if collections.is_empty() {
        warn!(calendar = %ingestor.calendar_id, "the CalDAV account has no calendar with events");
    }
    let mut total = CalendarStats::default();
    for c in collections {
        let s = sync_collection(client, ingestor, &c, window).await?;
        total.objects += s.objects;
        total.instances += s.instances;
        total.activities += s.activities;
    }
    Ok(total)
}

async fn sync_collection(
    client: &CalDavClient,
    ingestor: &CalendarIngestor,
    collection: &Url,
    window: &Window,
) -> Result<CalendarStats, SourceError> {
    let scope = collection.path().to_owned();
    let before: CollectionCursor = ingestor
        .store
        .cursor(&ingestor.calendar_id, &scope)
        .await?
        .and_then(|c| c.token)
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    let window_start = window.start.date_naive().to_string();
    let reread_all = before.window_start.as_deref() != Some(window_start.as_str());
    let stored: HashMap<String, Option<String>> = ingestor
        .store
        .calendar_etags(&ingestor.calendar_id)
        .await?
        .into_iter()
        .filter(|(href, _)| href.starts_with(scope.as_str()))
        .collect();

    let mut after = CollectionCursor {
        window_start: Some(window_start),
        ..before.clone()
    };
    // Try sync-collection (with the token, unless everything must be read again anyway).
    let token = if reread_all { None } else { before.sync_token.as_deref() };
    let report = match client.sync_collection(collection, token).await? {
        Some(r) => Some(r),
        // A token the server no longer accepts: one full listing resets it.
        None if token.is_some() => client.sync_collection(collection, None).await?,
        None => None,
    };
    let (to_read, deleted): (Vec<String>, Vec<String>) = match report {
        Some((changed, deleted, new_token)) => {
            after.sync_token = new_token;
            let changed: Vec<(String, Option<String>)> = changed.into_iter().map(|(h, e)| (href_path(&h), e)).collect();
            let mut deleted: Vec<String> = deleted.iter().map(|h| href_path(h)).collect();
            if token.is_none() {
                // A full listing: what is stored and not listed is gone.
                let listed: HashSet<&str> = changed.iter().map(|(h, _)| h.as_str()).collect();
                deleted.extend(stored.keys().filter(|h| !listed.contains(h.as_str())).cloned());
            }
            let to_read = changed
                .into_iter()
                .filter(|(href, etag)| {
                    reread_all || token.is_some() || etag.is_none() || stored.get(href) != Some(etag)
                })
                .map(|(href, _)| href)
                .collect();
            (to_read, deleted)
        }
        None => {
            after.sync_token = None;
            let ctag = client.ctag(collection).await?;
            if !reread_all && ctag.is_some() && ctag == before.ctag {
                (Vec::new(), Vec::new())
            } else {
                let (listing, ctag) = client.list_etags(collection).await?;
                after.ctag = ctag;
                let listing: HashMap<String, Option<String>> =
                    listing.into_iter().map(|(h, e)| (href_path(&h), e)).collect();
                let to_read = listing
                    .iter()
                    .filter(|(h, e)| reread_all || stored.get(*h) != Some(*e) || e.is_none())
                    .map(|(h, _)| h.clone())
                    .collect();
                let deleted = stored.keys().filter(|h| !listing.contains_key(*h)).cloned().collect();
                (to_read, deleted)
            }
        }
    };

    let mut objects = Vec::new();
    for (href, etag, data) in client.multiget(collection, &to_read).await? {
        let parsed = parse_ics(&data, window, ingestor.rep_time_zone);
        let href = href_path(&href);
        ingestor.report_problems(&href, &parsed.problems);
        objects.push(CalendarObject {
            href,
            etag,
            instances: parsed.instances,
        });
    }
    let cursor = SyncCursor {
        source_id: ingestor.calendar_id.clone(),
        scope,
        token: serde_json::to_string(&after).ok(),
        ..Default::default()
    };
    let changes = CalendarChanges {
        complete: false,
        updated: objects,
        deleted,
    };
    Ok(ingestor.apply(&changes, window, Some(&cursor)).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multistatus_with_deleted_members_and_token() {
        let body = r#"<?xml version="1.0"?>
<d:multistatus xmlns:d="DAV:" xmlns:c="urn:ietf:params:xml:ns:caldav">
  <d:response><d:href>/cal/a.ics</d:href>
    <d:propstat><d:prop><d:getetag>"1"</d:getetag><c:calendar-data>BEGIN:VCALENDAR&#13;
END:VCALENDAR</c:calendar-data></d:prop><d:status>HTTP/1.1 200 OK</d:status></d:propstat>
    <d:propstat><d:prop><d:displayname/></d:prop><d:status>HTTP/1.1 404 Not Found</d:status></d:propstat>
  </d:response>
  <d:response><d:href>/cal/b.ics</d:href><d:status>HTTP/1.1 404 Not Found</d:status></d:response>
  <d:sync-token>http://example/sync/7</d:sync-token>
</d:multistatus>"#;
        let (r, token) = parse_multistatus(body).unwrap();
        assert_eq!(token.as_deref(), Some("http://example/sync/7"));
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].props["getetag"], "\"1\"");
        assert!(r[0].props["calendar-data"].starts_with("BEGIN:VCALENDAR\r\n"));
        assert!(!r[0].props.contains_key("displayname"));
        assert_eq!(r[1].status, Some(404));
    }

    #[test]
    fn resource_types_and_home_set() {
        let body = r#"<multistatus xmlns="DAV:"><response><href>/dav/</href><propstat><prop>
            <resourcetype><collection/><calendar xmlns="urn:ietf:params:xml:ns:caldav"/></resourcetype>
            <calendar-home-set xmlns="urn:ietf:params:xml:ns:caldav"><href>/home/</href></calendar-home-set>
            <supported-calendar-component-set xmlns="urn:ietf:params:xml:ns:caldav"><comp name="VEVENT"/><comp name="vtodo"/></supported-calendar-component-set>
            </prop><status>HTTP/1.1 200 OK</status></propstat></response></multistatus>"#;
        let (r, _) = parse_multistatus(body).unwrap();
        assert_eq!(r[0].resource_types, vec!["collection", "calendar"]);
        assert_eq!(r[0].prop_hrefs["calendar-home-set"], "/home/");
        assert_eq!(r[0].components, vec!["VEVENT", "VTODO"]);
        assert!(parse_multistatus("<not xml").is_err());
    }
}
