//! Sales activities: what Rapport logs, whatever source it came from.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};

/// What kind of activity a row is. Stored as its `as_str()` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ActivityKind {
    EmailSent,
    EmailReceived,
    /// Inbound mail that answers an earlier outbound message in the same thread.
    ReplyReceived,
    /// Out-of-office and other automatic answers from a lead.
    AutoReply,
    /// A delivery-status notification naming a lead's address.
    Bounce,
    MeetingBooked,
    MeetingHeld,
    MeetingCancelled,
    MeetingRescheduled,
    Call,
    Visit,
    Task,
    Note,
}

impl ActivityKind {
    pub const ALL: [ActivityKind; 13] = [
        ActivityKind::EmailSent,
        ActivityKind::EmailReceived,
        ActivityKind::ReplyReceived,
        ActivityKind::AutoReply,
        ActivityKind::Bounce,
        ActivityKind::MeetingBooked,
        ActivityKind::MeetingHeld,
        ActivityKind::MeetingCancelled,
        ActivityKind::MeetingRescheduled,
        ActivityKind::Call,
        ActivityKind::Visit,
        ActivityKind::Task,
        ActivityKind::Note,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ActivityKind::EmailSent => "email_sent",
            ActivityKind::EmailReceived => "email_received",
            ActivityKind::ReplyReceived => "reply_received",
            ActivityKind::AutoReply => "auto_reply",
            ActivityKind::Bounce => "bounce",
            ActivityKind::MeetingBooked => "meeting_booked",
            ActivityKind::MeetingHeld => "meeting_held",
            ActivityKind::MeetingCancelled => "meeting_cancelled",
            ActivityKind::MeetingRescheduled => "meeting_rescheduled",
            ActivityKind::Call => "call",
            ActivityKind::Visit => "visit",
            ActivityKind::Task => "task",
            ActivityKind::Note => "note",
        }
    }
}

impl fmt::Display for ActivityKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ActivityKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        ActivityKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| format!("unknown activity kind `{s}`"))
    }
}

/// Which way an activity went, seen from the rep.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    Outbound,
    Inbound,
    /// Meetings, calls logged without a direction, tasks.
    None,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
            Direction::None => "none",
        }
    }
}

/// Where an activity was observed. With `source_id`, `rep_id` and `kind` it forms the
/// natural key that makes logging idempotent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SourceKind {
    Mail,
    Calendar,
    Sequence,
    Manual,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Mail => "mail",
            SourceKind::Calendar => "calendar",
            SourceKind::Sequence => "sequence",
            SourceKind::Manual => "manual",
        }
    }
}

/// An activity ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct NewActivity {
    pub rep_id: String,
    pub kind: ActivityKind,
    pub occurred_at: DateTime<Utc>,
    pub source: SourceKind,
    /// The source's own identity for the thing observed (Message-ID, event UID + instance).
    pub source_id: String,
    pub thread_key: Option<String>,
    pub subject: Option<String>,
    pub direction: Direction,
    pub lead_ids: Vec<i64>,
    pub details: serde_json::Value,
}

impl NewActivity {
    /// The kind as the natural key sees it: every kind of mail activity is the same message
    /// (so a message first taken for `email_received` cannot come back as `reply_received`
    /// beside it), other sources keep one activity per kind.
    pub fn dedup_kind(&self) -> &'static str {
        match self.source {
            SourceKind::Mail => "message",
            _ => self.kind.as_str(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip() {
        for k in ActivityKind::ALL {
            assert_eq!(k.as_str().parse::<ActivityKind>(), Ok(k));
        }
        assert!("email".parse::<ActivityKind>().is_err());
    }
}
