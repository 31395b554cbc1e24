//! Findings: what the rules decided, as data, before anyone words it.
//!
//! A [`Finding`] names its incident ([`IncidentKey`]: kind and pool), where
//! it stands in that incident's life ([`Phase`]), how loud it is, when the
//! incident began, and the figures and evidence behind it ([`Facts`]). The
//! rules write no text: `wording` turns a finding into sentences for people,
//! and each sink renders what its receiver needs (Slack blocks, a stdout
//! line, an Alertmanager alert with labels).
//!
//! Pool labels and release ids in here came from requests: whoever renders
//! them must treat them as untrusted text.

use serde::Serialize;

use crate::pools::PoolId;

/// What a finding is about. Each kind has a RUNBOOK.md section, and is the
/// `kind` label of the alert metrics.
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

    /// The `kind` label of alert metrics.
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

/// How loud a finding is.
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

impl Severity {
    /// As Alertmanager's `severity` label and stdout's field spell it.
    pub fn label(self) -> &'static str {
        match self {
            Severity::Resolved => "resolved",
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }
}

/// Identifies an incident: one open at a time per kind and pool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct IncidentKey {
    pub kind: Kind,
    /// `None` for site-wide incidents.
    pub pool: Option<PoolId>,
}

/// Where a finding stands in its incident's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// The incident opens.
    Open,
    /// New evidence for an open incident: subject to the cooldown.
    Repeat,
    /// The incident closes.
    Resolve,
    /// A one-off outside any incident (planned switch, alert test).
    Event,
}

/// A pool as findings name it: its id for metrics, its label for people.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pool {
    pub id: PoolId,
    pub label: String,
}

/// Upstream attempts that failed during an incident, by how.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Failures {
    /// The app answered 500 or another 5xx.
    pub error_5xx: u64,
    /// 502: nothing listening, or the connection was reset.
    pub bad_gateway: u64,
    /// 504: the app did not answer within nginx's read timeout.
    pub timeout: u64,
    /// No response at all (the client gave up first).
    pub no_response: u64,
}

/// Failures among attempts (or client 5xx among responses) in a window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Ratio {
    pub bad: u64,
    pub total: u64,
    /// `bad / total` in percent; 0 for an empty window.
    pub percent: f64,
}

impl Ratio {
    pub fn new(bad: u64, total: u64) -> Ratio {
        let percent = if total > 0 {
            bad as f64 * 100.0 / total as f64
        } else {
            0.0
        };
        Ratio {
            bad,
            total,
            percent,
        }
    }
}

/// The figures and evidence behind a finding, by what it is about.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Facts {
    /// The primary failed requests that nginx retried on `to`.
    Failover {
        from: Pool,
        to: Pool,
        from_release: String,
        to_release: String,
        /// Requests retried away from `from` since the incident opened.
        retried: u64,
        /// `from`'s failed attempts since the incident opened.
        failures: Failures,
        /// Responses of every pool that reached clients as 5xx since the
        /// incident opened.
        client_5xx: u64,
    },
    /// The failover `pool → took_over` ended: `pool` serves again, and
    /// answered `answered` attempts without a failure over `over_secs`
    /// (at least `confirmed_secs`, `RECOVERY_CONFIRM_SEC`).
    Recovered {
        pool: Pool,
        took_over: Pool,
        confirmed_secs: f64,
        answered: u64,
        over_secs: f64,
        retried: u64,
        client_5xx: u64,
        release: String,
    },
    /// Serving moved from `from` to `to`. Planned when `during_failover` is
    /// `None`; otherwise nginx stopped trying the failed `from` for that
    /// many seconds, which ends the failover.
    Switch {
        from: Pool,
        to: Pool,
        from_release: String,
        to_release: String,
        during_failover: Option<f64>,
    },
    /// `window`: failed attempts among the last attempts on `pool`.
    ErrorRate {
        pool: Pool,
        window: Ratio,
        threshold: f64,
        /// `WINDOW_SIZE`: how many attempts the window holds at most.
        window_size: usize,
        /// Client 5xx among the window's requests: 0 when retries masked
        /// every failure.
        client_5xx: u64,
        release: String,
    },
    /// The error rate stayed low since `good_since`, while the pool
    /// answered `answered` attempts (and failed `failed`) over `over_secs`.
    ErrorRateResolved {
        pool: Pool,
        window: Ratio,
        threshold: f64,
        good_since: f64,
        answered: u64,
        failed: u64,
        over_secs: f64,
    },
    /// `pool` got no attempt since `since` (Unix seconds), a whole time
    /// window (`window_seconds`): its error-rate incident closes for want
    /// of evidence, with `last`, the rate its last attempts showed.
    NoTraffic {
        pool: Pool,
        since: f64,
        window_seconds: u32,
        last: Ratio,
    },
    /// `window`: client 5xx among all pools' responses over the time window.
    UsersSeeingErrors {
        window: Ratio,
        window_seconds: u32,
        /// Requests nginx answered with no live upstream since the incident
        /// opened.
        no_live_upstream: u64,
        threshold: f64,
        serving: Option<Pool>,
    },
    /// Client 5xx back under the line.
    UsersNoLongerSeeingErrors {
        window: Ratio,
        window_seconds: u32,
        /// Client 5xx between the incident's opening and now.
        client_5xx_during: u64,
    },
    /// Maintenance holds back notifications until `until` (or until turned
    /// off).
    MaintenanceStarted {
        by: String,
        reason: String,
        until: Option<f64>,
    },
    /// Maintenance ended (`why`, as maintenance words it), with what it
    /// held back.
    MaintenanceEnded {
        by: String,
        reason: String,
        why: String,
        held_back: Vec<(Kind, u64)>,
    },
    /// `poolwatch alert-test`.
    Test { sent_by: String, host: String },
}

/// What the rules (or maintenance, or `alert-test`) decided.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Finding {
    pub key: IncidentKey,
    pub phase: Phase,
    pub severity: Severity,
    /// When the incident began (Unix seconds); for an event, when it
    /// happened.
    pub started: f64,
    /// When this was decided: wall time live, the log's own time in a
    /// replay.
    pub at: f64,
    pub facts: Facts,
}

impl Finding {
    /// The kind people are told about. A switch that ends a failover
    /// belongs to the failover incident but is told as a switch.
    pub fn kind(&self) -> Kind {
        match self.facts {
            Facts::Failover { .. } => Kind::Failover,
            Facts::Recovered { .. } => Kind::Recovery,
            Facts::Switch { .. } => Kind::PoolSwitch,
            Facts::ErrorRate { .. } | Facts::ErrorRateResolved { .. } | Facts::NoTraffic { .. } => {
                Kind::ErrorRate
            }
            Facts::UsersSeeingErrors { .. } | Facts::UsersNoLongerSeeingErrors { .. } => {
                Kind::UsersSeeingErrors
            }
            Facts::MaintenanceStarted { .. } | Facts::MaintenanceEnded { .. } => Kind::Maintenance,
            Facts::Test { .. } => Kind::Test,
        }
    }

    /// The pool it is about, if any.
    pub fn pool(&self) -> Option<&Pool> {
        match &self.facts {
            Facts::Failover { from, .. } => Some(from),
            Facts::Recovered { pool, .. }
            | Facts::ErrorRate { pool, .. }
            | Facts::ErrorRateResolved { pool, .. }
            | Facts::NoTraffic { pool, .. } => Some(pool),
            Facts::Switch { to, .. } => Some(to),
            Facts::UsersSeeingErrors { .. }
            | Facts::UsersNoLongerSeeingErrors { .. }
            | Facts::MaintenanceStarted { .. }
            | Facts::MaintenanceEnded { .. }
            | Facts::Test { .. } => None,
        }
    }

    /// True when it closes its incident.
    pub fn resolves(&self) -> bool {
        self.phase == Phase::Resolve
    }
}
