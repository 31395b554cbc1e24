//! Wording: every sentence poolwatch says to people, made from a finding.
//!
//! [`words`] turns a [`Finding`] into a [`Notification`]: a title, a
//! summary, and the evidence as labelled fields, in display order. The rules
//! decide and this module speaks, so changing a message never touches a
//! decision, and a sink that does not show prose (Alertmanager's labels)
//! never has to parse it. RUNBOOK.md quotes these titles: keep them in step.
//!
//! Times are RFC 3339 in UTC, durations as people say them ("4 min 12 s").

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use super::finding::{Facts, Finding, Kind, Phase, Severity};

/// One message for people. Field values may hold text that came from
/// requests (release ids, pool labels): sinks must treat every string here
/// as untrusted.
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
    /// Link to this poolwatch's status page, if `PUBLIC_URL` is set; the
    /// sinks add it (see `DeliveryConfig::status_url`).
    pub status_url: Option<String>,
}

/// The words for `f`. `runbook` is `RUNBOOK_URL`: each notification about
/// the pools links to its section there.
pub(crate) fn words(f: &Finding, runbook: Option<&str>) -> Notification {
    let (title, summary, fields) = match &f.facts {
        Facts::Failover {
            from,
            to,
            from_release,
            to_release,
            retried,
            failures,
            client_5xx,
        } => {
            let (p, to) = (&from.label, &to.label);
            (
                format!(
                    "{}Failover: {p} → {to}",
                    if f.phase == Phase::Repeat {
                        "Still failing over: "
                    } else {
                        ""
                    },
                ),
                format!(
                    "{p} is failing and nginx retries its requests on {to}. Users saw \
                     {client_5xx} errors so far: retries are hiding the failure, but {to} has no \
                     backup left."
                ),
                vec![
                    field("From → to", format!("{p} → {to}")),
                    field(format!("Release {p}"), from_release),
                    field(format!("Release {to}"), to_release),
                    field("First seen", timestamp(f.started)),
                    field("Requests retried so far", retried),
                    field(
                        "Upstream statuses seen",
                        format!(
                            "500/5xx ×{}, 502 refused ×{}, 504 timeout ×{}, no response ×{}",
                            failures.error_5xx,
                            failures.bad_gateway,
                            failures.timeout,
                            failures.no_response
                        ),
                    ),
                    field("Client-visible errors", client_5xx),
                ],
            )
        }
        Facts::Recovered {
            pool,
            took_over,
            confirmed_secs,
            answered,
            over_secs,
            retried,
            client_5xx,
            release,
        } => {
            let (p, to) = (&pool.label, &took_over.label);
            let lasted = human_duration(f.at - f.started);
            let evidence = format!(
                "{p} answered {answered} requests without a failure over {}",
                seconds(*over_secs)
            );
            (
                format!("Recovered: {p} is serving again"),
                format!(
                    "Traffic is back on {p}: {evidence}. This ends the failover {p} → {to} that \
                     started at {} and lasted {lasted}.",
                    timestamp(f.started)
                ),
                vec![
                    field("Failover", format!("{p} → {to}")),
                    field("Evidence", evidence),
                    field(
                        "Required",
                        format!("{confirmed_secs:.0} s without a failure, serving again"),
                    ),
                    field("Started", timestamp(f.started)),
                    field("Lasted", lasted),
                    field("Requests retried", retried),
                    field("Client-visible errors", client_5xx),
                    field("Release now serving", release),
                ],
            )
        }
        Facts::Switch {
            from,
            to,
            from_release,
            to_release,
            during_failover,
        } => {
            let (old, new) = (&from.label, &to.label);
            let (title, summary) = match during_failover {
                None => (
                    format!("Pool switch: {old} → {new} (planned)"),
                    format!(
                        "Traffic moved from {old} to {new} with no failures on {old}: a planned \
                         switch, not a failover. Failures on {new} are the ones that matter from \
                         now on."
                    ),
                ),
                Some(silent_secs) => (
                    format!("Pool switch: {old} → {new} (during the failover)"),
                    format!(
                        "nginx has not tried {old} for {silent_secs:.0} s while {new} served: \
                         {old} was taken out of rotation and {new} is the primary now. This ends \
                         the failover {old} → {new} that started at {} and lasted {}.",
                        timestamp(f.started),
                        human_duration(f.at - f.started)
                    ),
                ),
            };
            (
                title,
                summary,
                vec![
                    field("From → to", format!("{old} → {new}")),
                    field(format!("Release {old}"), from_release),
                    field(format!("Release {new}"), to_release),
                    field("Seen", timestamp(f.at)),
                ],
            )
        }
        Facts::ErrorRate {
            pool,
            window,
            threshold,
            window_size,
            client_5xx,
            release,
        } => {
            let (label, rate) = (&pool.label, window.percent);
            let masked = *client_5xx == 0;
            (
                format!("High error rate on {label}: {rate:.1} %"),
                format!(
                    "{} of the last {} upstream attempts on {label} failed ({rate:.1} %, \
                     threshold {threshold} %). {}",
                    window.bad,
                    window.total,
                    if masked {
                        "Retries on the other pool hid every failure from users."
                    } else {
                        "Users received errors."
                    }
                ),
                vec![
                    field("Pool", label),
                    field("Error rate", format!("{rate:.2} %")),
                    field(
                        "Failures / attempts",
                        format!("{} / {}", window.bad, window.total),
                    ),
                    field("Window", format!("last {window_size} attempts")),
                    field("Threshold", format!("> {threshold} %")),
                    field(
                        "Users saw errors",
                        if masked {
                            "no: masked by retries".to_string()
                        } else {
                            format!("yes: {client_5xx} client 5xx in the window")
                        },
                    ),
                    field("Release", release),
                ],
            )
        }
        Facts::ErrorRateResolved {
            pool,
            window,
            threshold,
            good_since,
            answered,
            failed,
            over_secs,
        } => {
            let (label, rate) = (&pool.label, window.percent);
            let evidence = format!(
                "{label} answered {answered} requests with {failed} failures over {}",
                seconds(*over_secs)
            );
            (
                format!("Resolved: error rate on {label} back to {rate:.1} %"),
                format!(
                    "{} of the last {} attempts on {label} failed ({rate:.1} %), under the \
                     threshold of {threshold} % since {}: {evidence}. The incident lasted {}.",
                    window.bad,
                    window.total,
                    timestamp(*good_since),
                    human_duration(f.at - f.started)
                ),
                vec![
                    field("Pool", label),
                    field("Error rate", format!("{rate:.2} %")),
                    field(
                        "Failures / attempts",
                        format!("{} / {}", window.bad, window.total),
                    ),
                    field("Evidence", evidence),
                    field("Threshold", format!("> {threshold} %")),
                    field("Started", timestamp(f.started)),
                ],
            )
        }
        Facts::NoTraffic {
            pool,
            since,
            window_seconds,
            last,
        } => {
            let (label, rate) = (&pool.label, last.percent);
            let since = timestamp(*since);
            (
                format!("Closed: no traffic to {label} since {since}"),
                format!(
                    "No traffic to {label} since {since}; last error rate {rate:.1} % ({} of its \
                     last {} attempts failed). With nothing to judge for {window_seconds} s, the \
                     error-rate incident closes without calling {label} healthy. If {label} \
                     fails again once it gets traffic, a new incident opens. The incident \
                     lasted {}.",
                    last.bad,
                    last.total,
                    human_duration(f.at - f.started)
                ),
                vec![
                    field("Pool", label),
                    field("Last attempt", since),
                    field("Last error rate", format!("{rate:.2} %")),
                    field(
                        "Failures / attempts",
                        format!("{} / {}", last.bad, last.total),
                    ),
                    field("Started", timestamp(f.started)),
                ],
            )
        }
        Facts::UsersSeeingErrors {
            window,
            window_seconds,
            no_live_upstream,
            threshold,
            serving,
        } => {
            let rate = window.percent;
            (
                format!("Users are seeing errors: {rate:.1} % 5xx"),
                format!(
                    "{} of {} responses in the last {window_seconds} s were 5xx ({rate:.1} %){}. \
                     Retries are no longer hiding the failure.",
                    window.bad,
                    window.total,
                    if *no_live_upstream > 0 {
                        format!(", and nginx found no live upstream {no_live_upstream} times")
                    } else {
                        String::new()
                    }
                ),
                vec![
                    field("Client 5xx rate", format!("{rate:.2} %")),
                    field(
                        "5xx / responses",
                        format!("{} / {}", window.bad, window.total),
                    ),
                    field("Window", format!("last {window_seconds} s, all pools")),
                    field("No live upstream", no_live_upstream),
                    field("Threshold", format!("> {threshold} %")),
                    field(
                        "Serving pool",
                        serving.as_ref().map_or("none", |p| p.label.as_str()),
                    ),
                ],
            )
        }
        Facts::UsersNoLongerSeeingErrors {
            window,
            window_seconds,
            client_5xx_during,
        } => {
            let rate = window.percent;
            (
                format!("Resolved: users no longer see errors ({rate:.1} % 5xx)"),
                format!(
                    "Client 5xx are at {rate:.1} % over the last {window_seconds} s. The incident \
                     started at {} and lasted {}.",
                    timestamp(f.started),
                    human_duration(f.at - f.started)
                ),
                vec![
                    field("Client 5xx rate", format!("{rate:.2} %")),
                    field("Started", timestamp(f.started)),
                    field("Client 5xx during the incident", client_5xx_during),
                ],
            )
        }
        Facts::MaintenanceStarted { by, reason, until } => {
            let until = until.map_or("until turned off".to_string(), |u| {
                format!("until {}", timestamp(u))
            });
            (
                format!("Maintenance started by {by}"),
                format!(
                    "Failover, pool switch and error-rate notifications are held back {until}. \
                     Users seeing errors is still reported. Reason: {reason}"
                ),
                vec![
                    field("By", by),
                    field("Reason", reason),
                    field("Until", until),
                ],
            )
        }
        Facts::MaintenanceEnded {
            by,
            reason,
            why,
            held_back,
        } => {
            let total: u64 = held_back.iter().map(|(_, n)| n).sum();
            let list = if held_back.is_empty() {
                "nothing".to_string()
            } else {
                held_back
                    .iter()
                    .map(|(k, n)| format!("{} ×{n}", k.label()))
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            (
                format!("Maintenance ended ({why})"),
                format!(
                    "Notifications are live again. {total} were held back during maintenance: \
                     {list}. Open incidents are announced on their next evidence."
                ),
                vec![
                    field("Started by", by),
                    field("Reason", reason),
                    field("Began", timestamp(f.started)),
                    field("Held back", list),
                ],
            )
        }
        Facts::Test { sent_by, host } => (
            "poolwatch alert test".to_string(),
            "If you can read this, poolwatch can reach this channel. Nothing is wrong.".to_string(),
            vec![field("Sent by", sent_by), field("Host", host)],
        ),
    };
    let kind = f.kind();
    Notification {
        kind,
        severity: f.severity,
        pool: f.pool().map(|p| p.label.clone()),
        title,
        summary,
        fields,
        // A failover is dated by its first retried request; every other
        // message by the moment it was decided.
        first_seen: timestamp(match f.facts {
            Facts::Failover { .. } => f.started,
            _ => f.at,
        }),
        resolved: f.resolves(),
        // Maintenance is announced, not handled: no runbook section to open.
        runbook_url: match kind {
            Kind::Maintenance => None,
            _ => runbook.map(|base| runbook_link(base, kind)),
        },
        status_url: None,
    }
}

/// The section of RUNBOOK.md (published at `base`) for `kind`.
pub(crate) fn runbook_link(base: &str, kind: Kind) -> String {
    format!("{}#{}", base.trim_end_matches('#'), kind.runbook_anchor())
}

fn field(label: impl Into<String>, value: impl ToString) -> (String, String) {
    (label.into(), value.to_string())
}

/// Unix seconds as RFC 3339 UTC, to the second: `2026-11-05T09:07:03Z`.
/// Times outside what RFC 3339 can write (before 1970, after 9999) are
/// clamped to its ends: a replayed log can hold any date.
pub(crate) fn timestamp(secs: f64) -> String {
    humantime::format_rfc3339_seconds(system_time(secs)).to_string()
}

/// Unix seconds as a `SystemTime`, clamped to what RFC 3339 can write.
pub(crate) fn system_time(secs: f64) -> SystemTime {
    /// 9999-12-31T23:59:59Z.
    const LAST: f64 = 253_402_300_799.0;
    let secs = if secs.is_nan() {
        0.0
    } else {
        secs.clamp(0.0, LAST)
    };
    UNIX_EPOCH + Duration::from_secs(secs as u64)
}

/// A span of evidence, to the tenth below a minute: "5.2 s".
fn seconds(secs: f64) -> String {
    if secs < 60.0 {
        format!("{:.1} s", secs.max(0.0))
    } else {
        human_duration(secs)
    }
}

/// "4 min 12 s", "1 h 3 min", "12 s".
pub(crate) fn human_duration(secs: f64) -> String {
    let s = secs.max(0.0).round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerting::finding::IncidentKey;

    #[test]
    fn durations_read_well() {
        assert_eq!(human_duration(12.4), "12 s");
        assert_eq!(human_duration(252.0), "4 min 12 s");
        assert_eq!(human_duration(3780.0), "1 h 3 min");
    }

    #[test]
    fn timestamps_are_rfc3339_and_never_fail() {
        assert_eq!(timestamp(1_793_869_623.9), "2026-11-05T09:07:03Z");
        assert_eq!(timestamp(0.0), "1970-01-01T00:00:00Z");
        // A replayed log may carry any date: clamped, never a panic.
        assert_eq!(timestamp(-5.0), "1970-01-01T00:00:00Z");
        assert_eq!(timestamp(1e18), "9999-12-31T23:59:59Z");
        assert_eq!(timestamp(f64::NAN), "1970-01-01T00:00:00Z");
    }

    fn blue() -> crate::alerting::finding::Pool {
        crate::alerting::finding::Pool {
            id: 0,
            label: "blue".into(),
        }
    }

    fn finding(kind: Kind, facts: Facts) -> Finding {
        Finding {
            key: IncidentKey {
                kind,
                pool: Some(0),
            },
            phase: Phase::Resolve,
            severity: Severity::Resolved,
            started: 1_793_869_623.0,
            at: 1_793_869_683.0,
            facts,
        }
    }

    #[test]
    fn recovery_states_its_evidence() {
        let n = words(
            &finding(
                Kind::Failover,
                Facts::Recovered {
                    pool: blue(),
                    took_over: crate::alerting::finding::Pool {
                        id: 1,
                        label: "green".into(),
                    },
                    confirmed_secs: 5.0,
                    answered: 812,
                    over_secs: 5.04,
                    retried: 3,
                    client_5xx: 0,
                    release: "blue-7".into(),
                },
            ),
            None,
        );
        assert_eq!(n.title, "Recovered: blue is serving again");
        assert!(
            n.summary
                .contains("blue answered 812 requests without a failure over 5.0 s"),
            "{}",
            n.summary
        );
        assert!(!n.summary.contains("no failures for"), "{}", n.summary);
    }

    #[test]
    fn an_idle_pool_closes_with_no_traffic_and_its_last_rate() {
        let f = finding(
            Kind::ErrorRate,
            Facts::NoTraffic {
                pool: blue(),
                since: 1_793_869_625.0,
                window_seconds: 60,
                last: crate::alerting::finding::Ratio::new(16, 200),
            },
        );
        let n = words(&f, None);
        assert_eq!(n.kind, Kind::ErrorRate);
        assert!(n.resolved);
        assert_eq!(
            n.title,
            "Closed: no traffic to blue since 2026-11-05T09:07:05Z"
        );
        assert!(
            n.summary.starts_with(
                "No traffic to blue since 2026-11-05T09:07:05Z; last error rate 8.0 %"
            ),
            "{}",
            n.summary
        );
        assert!(n.summary.contains("without calling blue healthy"));
    }

    #[test]
    fn maintenance_is_worded_without_a_runbook_link() {
        let f = Finding {
            key: IncidentKey {
                kind: Kind::Maintenance,
                pool: None,
            },
            phase: Phase::Resolve,
            severity: Severity::Resolved,
            started: 1_793_869_623.0,
            at: 1_793_869_683.0,
            facts: Facts::MaintenanceEnded {
                by: "ops".into(),
                reason: "deploy".into(),
                why: "expired".into(),
                held_back: vec![(Kind::Failover, 1), (Kind::ErrorRate, 2)],
            },
        };
        let n = words(&f, Some("https://x.test/RUNBOOK.md"));
        assert_eq!(n.title, "Maintenance ended (expired)");
        assert!(n.resolved);
        assert_eq!(n.runbook_url, None);
        assert!(
            n.summary
                .contains("3 were held back during maintenance: failover ×1, error_rate ×2"),
            "{}",
            n.summary
        );
        assert!(
            n.fields
                .contains(&("Began".into(), "2026-11-05T09:07:03Z".into()))
        );
    }
}
