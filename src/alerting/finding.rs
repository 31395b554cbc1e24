//! What a notification is about ([`Kind`]), how loud it is ([`Severity`]),
//! and the [`Notification`] itself.

use serde::Serialize;

/// What a notification is about. Each kind has a RUNBOOK.md section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The primary pool fails and the backup serves.
    Failover,
    /// The serving pool changed with no failures: an operator switched.
    PoolSwitch,
    /// Traffic is back on the primary, healthy, after a failover.
    Recovery,
    /// A pool's upstream failure ratio is over the threshold.
    ErrorRate,
    /// Clients receive 5xx: retries no longer hide the failure.
    UsersSeeingErrors,
    /// Maintenance mode started or ended.
    Maintenance,
    /// `poolwatch alert-test`.
    Test,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Failover,
        Kind::PoolSwitch,
        Kind::Recovery,
        Kind::ErrorRate,
        Kind::UsersSeeingErrors,
        Kind::Maintenance,
        Kind::Test,
    ];

    /// The `kind` label of alert metrics, and the RUNBOOK.md anchor.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Failover => "failover",
            Kind::PoolSwitch => "pool_switch",
            Kind::Recovery => "recovery",
            Kind::ErrorRate => "error_rate",
            Kind::UsersSeeingErrors => "users_seeing_errors",
            Kind::Maintenance => "maintenance",
            Kind::Test => "test",
        }
    }

    /// RUNBOOK.md section anchor for this kind.
    pub fn runbook_anchor(self) -> &'static str {
        match self {
            Kind::Failover => "failover",
            Kind::PoolSwitch => "pool-switch-planned",
            Kind::Recovery => "recovery",
            Kind::ErrorRate => "high-error-rate",
            Kind::UsersSeeingErrors => "users-seeing-errors",
            Kind::Maintenance => "maintenance-mode",
            Kind::Test => "alert-test",
        }
    }
}

/// How loud a notification is; drives colour and emoji.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Good news: something recovered or was resolved.
    Resolved,
    /// Worth knowing, nothing to do (planned switch, maintenance).
    Info,
    /// Someone should look: users are fine for now.
    Warning,
    /// Users are affected.
    Critical,
}

/// One message for people. Field values may hold text that came from
/// requests (release ids, addresses, URIs): sinks must treat every string
/// here as untrusted.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    pub kind: Kind,
    pub severity: Severity,
    /// The pool it is about, if any.
    pub pool: Option<String>,
    /// One line: "Failover: blue → green".
    pub title: String,
    /// A sentence or two saying what happened and what it means.
    pub summary: String,
    /// Evidence, in display order: (label, value).
    pub fields: Vec<(String, String)>,
    /// When the condition was first seen, as RFC 3339 UTC.
    pub first_seen: String,
    /// True when this message closes an incident.
    pub resolved: bool,
    /// Link to the RUNBOOK.md section, if `RUNBOOK_URL` is set.
    pub runbook_url: Option<String>,
}
