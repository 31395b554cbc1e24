//! Upstream attempts: the tries nginx made for one request.
//!
//! `$upstream_status`, `$upstream_addr` and `$upstream_response_time` are
//! parallel lists. Tries within one pass are separated by `", "`, passes across
//! an internal redirect by `" : "`; nginx keeps the three lists the same length.
//! Reading them as one list of attempts is what lets a failure masked by a
//! retry (`"500, 200"`) count against the pool that failed.
//!
//! The lists come from the datagram, so a sender can make them any length:
//! more than [`MAX_ATTEMPTS`] is no record nginx writes, and is skipped as
//! malformed rather than counted as thousands of failures.

/// Most attempts a record may list. nginx tries each server of an upstream
/// block at most once per pass (`proxy_next_upstream_tries` caps it lower),
/// and a request passes through a handful of internal redirects at most.
pub const MAX_ATTEMPTS: usize = 32;

/// Longest plausible `$upstream_response_time` element, in whole seconds:
/// a day.
const MAX_RESPONSE_SECS: u32 = 86_400;
/// How one attempt ended. `Success` is the upstream answering, a client
/// abort is no verdict on the upstream at all; every other variant is an
/// upstream failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Any non-5xx status: the upstream answered.
    Success,
    /// 500, 501, 503 or another 5xx the upstream sent.
    Error5xx,
    /// 502: connection refused or reset, or a 502 from the app.
    BadGateway,
    /// 504: connect or read timeout.
    Timeout,
    /// `-` on an attempt nginx gave up on for another reason than its
    /// client leaving: no response, and no status nginx chose either.
    NoResponse,
    /// `-` on the last attempt of a request answered 499: the client closed
    /// the connection while nginx waited on this upstream. Nothing is known
    /// about the upstream, so it is neither an answer nor a failure (see
    /// [`client_aborted`]).
    ClientAbort,
}

/// nginx's status for a request whose client closed the connection first.
pub const CLIENT_CLOSED: u16 = 499;

impl Outcome {
    pub const ALL: [Outcome; 6] = [
        Outcome::Success,
        Outcome::Error5xx,
        Outcome::BadGateway,
        Outcome::Timeout,
        Outcome::NoResponse,
        Outcome::ClientAbort,
    ];

    /// The `outcome` label of `poolwatch_upstream_attempts_total`.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Error5xx => "error_5xx",
            Outcome::BadGateway => "bad_gateway",
            Outcome::Timeout => "timeout",
            Outcome::NoResponse => "no_response",
            Outcome::ClientAbort => "client_abort",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }

    /// An upstream failure: counts against the pool in every ratio and rule.
    pub fn is_failure(self) -> bool {
        !matches!(self, Outcome::Success | Outcome::ClientAbort)
    }

    /// From the status an attempt logged, if it logged a number.
    fn from_status(status: Option<u16>) -> Outcome {
        match status {
            Some(502) => Outcome::BadGateway,
            Some(504) => Outcome::Timeout,
            Some(500..=599) => Outcome::Error5xx,
            Some(_) => Outcome::Success,
            None => Outcome::NoResponse,
        }
    }
}

/// One try at one server.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Attempt<'a> {
    /// `host:port`, `unix:/path`, or the `upstream {}` block's name when no
    /// server was alive (see [`Attempt::is_no_live_upstream`]).
    pub addr: &'a str,
    pub outcome: Outcome,
    /// The status the upstream sent, if it sent one.
    pub status: Option<u16>,
    /// `$upstream_response_time` for this try, in seconds.
    pub response_time: Option<f64>,
}

impl Attempt<'_> {
    /// nginx logs the upstream group's name instead of an address when every
    /// server was marked down: no pool was tried at all.
    pub fn is_no_live_upstream(&self) -> bool {
        // From the end: an address's colon is its port's, a few bytes back.
        !self.addr.is_empty() && !self.addr.bytes().rev().any(|b| b == b':')
    }
}

/// Iterate the attempts of one record, pairing the three lists by position.
///
/// The address list decides how many attempts there were: a status of `-`
/// is an attempt that got no response (a 499 logs `"-"` beside blue's
/// address), while `-` as the whole address list is `escape=default`'s way
/// of saying nginx tried no server.
pub fn attempts<'a>(
    status: &'a str,
    addr: &'a str,
    response_time: &'a str,
) -> impl Iterator<Item = Attempt<'a>> + 'a {
    let mut statuses = split(status);
    let mut times = split(response_time);
    let addrs = if addr == "-" { split("") } else { split(addr) };
    addrs.map(move |addr| {
        let status = statuses.next().and_then(parse_status);
        Attempt {
            addr,
            outcome: Outcome::from_status(status),
            status,
            response_time: times.next().and_then(|t| t.parse().ok()),
        }
    })
}

/// An attempt's status: three digits as nginx writes it, read without the
/// general integer parser (one per attempt adds up at line rate); anything
/// else as `u16` would read it.
fn parse_status(s: &str) -> Option<u16> {
    match *s.as_bytes() {
        [a, b, c] if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => s.parse().ok(),
    }
}

/// Whether attempt `a`, the last of a request answered `final_status`, was
/// cut short by the client.
///
/// nginx writes an attempt's status once it has one: the upstream's own
/// status, or the 502 or 504 it sets itself when a connection is refused,
/// reset or times out. An attempt still waiting when the client closes the
/// connection has none, so it logs `-` beside the server's address and the
/// request ends as 499. A client that leaves can only end the attempt in
/// progress, which is the last one; earlier attempts had their status
/// before nginx moved on.
pub fn client_aborted(a: &Attempt<'_>, last: bool, final_status: u16) -> bool {
    last && final_status == CLIENT_CLOSED && a.status.is_none()
}

/// Whether the address list holds more than [`MAX_ATTEMPTS`] attempts.
/// Costs a length comparison for any list real traffic produces.
pub fn too_many_attempts(addr: &str) -> bool {
    // Every element takes at least a byte and every separator two: a list
    // this short cannot hold more.
    addr.len() > 3 * MAX_ATTEMPTS && split(addr).nth(MAX_ATTEMPTS).is_some()
}

/// Whether every element of an `$upstream_response_time` list reads as a
/// duration nginx could log: `-`, or seconds like `0.004` of at most a day.
/// A negative, non-finite, exponent or absurd value is not one. A byte scan,
/// no float parsing: nothing else reads these values yet.
pub fn response_times_plausible(list: &str) -> bool {
    let (mut whole, mut digits, mut fraction, mut dash) = (0u32, false, false, false);
    for &b in list.as_bytes() {
        match b {
            b'0'..=b'9' if !dash => {
                digits = true;
                if !fraction {
                    whole = whole * 10 + u32::from(b - b'0');
                    if whole > MAX_RESPONSE_SECS {
                        return false;
                    }
                }
            }
            b'.' if digits && !fraction => fraction = true,
            b'-' if !digits && !dash => dash = true,
            // Separators: `, ` and ` : `.
            b',' | b' ' | b':' => (whole, digits, fraction, dash) = (0, false, false, false),
            _ => return false,
        }
    }
    true
}

/// Whether the last address of the list is the upstream group's name: nginx
/// found no live server and answered by itself. Reads from the end, without
/// splitting the list.
pub fn ends_with_no_live_upstream(addr: &str) -> bool {
    // Both separators contain a space and addresses never do, so the last
    // address is whatever follows the last space. One backward pass, which
    // for the common answer (an address, with a port) stops at its colon.
    let b = addr.as_bytes();
    let mut start = b.len();
    while start > 0 {
        match b[start - 1] {
            b':' => return false,
            b' ' => break,
            _ => start -= 1,
        }
    }
    let last = &b[start..];
    !last.is_empty() && last != b"-"
}

/// Split on `", "` and `" : "`. An empty list has no elements; addresses
/// never contain either separator (IPv6 has no spaces).
fn split(list: &str) -> Split<'_> {
    Split {
        rest: list,
        done: list.is_empty(),
    }
}

struct Split<'a> {
    rest: &'a str,
    done: bool,
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        // Both separators hold a space and elements never do, so only a
        // space can start or end one: look for spaces alone, then check
        // which separator, if any, it belongs to. The first space decides
        // (a `", "` ending there starts before any separator after it).
        let b = self.rest.as_bytes();
        let mut from = 0;
        while let Some(p) = b[from..].iter().position(|&c| c == b' ') {
            let i = from + p;
            if i > 0 && b[i - 1] == b',' {
                let item = &self.rest[..i - 1];
                self.rest = &self.rest[i + 1..];
                return Some(item);
            }
            if b.get(i + 1) == Some(&b':') && b.get(i + 2) == Some(&b' ') {
                let item = &self.rest[..i];
                self.rest = &self.rest[i + 3..];
                return Some(item);
            }
            from = i + 1;
        }
        self.done = true;
        Some(self.rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcomes(s: &str) -> Vec<Outcome> {
        let n = s.split([',', ':']).count();
        let addrs = vec!["10.0.0.2:3000"; n].join(", ");
        attempts(s, &addrs, "").map(|a| a.outcome).collect()
    }

    #[test]
    fn retry_lists() {
        use Outcome::*;
        assert_eq!(outcomes("500, 200"), [Error5xx, Success]);
        assert_eq!(outcomes("504, 200"), [Timeout, Success]);
        assert_eq!(outcomes("502, 200"), [BadGateway, Success]);
        assert_eq!(outcomes("500, 502"), [Error5xx, BadGateway]);
        assert_eq!(outcomes("404 : 200"), [Success, Success]);
        assert_eq!(outcomes("-"), [NoResponse]);
        assert_eq!(outcomes("504, -"), [Timeout, NoResponse]);
        assert_eq!(attempts("", "", "").count(), 0);
        // escape=default writes "-" for every absent value.
        assert_eq!(attempts("-", "-", "-").count(), 0);
    }

    #[test]
    fn lists_pair_by_position() {
        let a: Vec<_> = attempts(
            "500, 200 : 404",
            "10.0.0.2:3000, [::1]:3000 : unix:/run/app.sock",
            "0.010, 0.002 : -",
        )
        .collect();
        assert_eq!(a.len(), 3);
        assert_eq!(a[0].addr, "10.0.0.2:3000");
        assert_eq!(a[0].status, Some(500));
        assert_eq!(a[0].response_time, Some(0.010));
        assert_eq!(a[1].addr, "[::1]:3000");
        assert_eq!(a[2].addr, "unix:/run/app.sock");
        assert_eq!(a[2].response_time, None);
        assert!(a.iter().all(|a| !a.is_no_live_upstream()));
    }

    #[test]
    fn upstream_group_name_means_no_live_upstream() {
        let a: Vec<_> = attempts("502", "backend", "0.000").collect();
        assert!(a[0].is_no_live_upstream());
    }

    #[test]
    fn last_address_says_no_live_upstream() {
        assert!(ends_with_no_live_upstream("backend"));
        assert!(ends_with_no_live_upstream("10.0.0.2:3000, backend"));
        assert!(ends_with_no_live_upstream("10.0.0.2:3000 : backend"));
        assert!(!ends_with_no_live_upstream("backend, 10.0.0.2:3000"));
        assert!(!ends_with_no_live_upstream("a:1, b:2 : c:3"));
        assert!(!ends_with_no_live_upstream("a:1 : b:2, c:3"));
        assert!(!ends_with_no_live_upstream(""));
        assert!(!ends_with_no_live_upstream("-"));
        assert!(!ends_with_no_live_upstream("unix:/run/app.sock"));
    }

    #[test]
    fn attempt_lists_are_bounded() {
        let list = |n: usize, sep: &str| vec!["a:1"; n].join(sep);
        assert!(!too_many_attempts(&list(MAX_ATTEMPTS, ", ")));
        assert!(too_many_attempts(&list(MAX_ATTEMPTS + 1, ", ")));
        assert!(too_many_attempts(&list(MAX_ATTEMPTS + 1, " : ")));
        assert!(too_many_attempts(&list(5000, ", ")));
        // Long addresses are not many attempts.
        let long = ["[2001:db8:1234:5678:9abc:def0:1234:5678]:3000"; 3].join(", ");
        assert!(!too_many_attempts(&long));
        assert!(!too_many_attempts(""));
        assert!(!too_many_attempts(&"x".repeat(10_000)));
        // The shortest list past the bound.
        let shortest = vec!["a"; MAX_ATTEMPTS + 1].join(", ");
        assert_eq!(shortest.len(), 3 * MAX_ATTEMPTS + 1);
        assert!(too_many_attempts(&shortest));
    }

    #[test]
    fn response_times_that_nginx_could_log() {
        for ok in [
            "",
            "-",
            "0.004",
            "0.010, 0.002 : -",
            "-, 2.000",
            "86400.000",
            "12",
        ] {
            assert!(response_times_plausible(ok), "{ok}");
        }
        for bad in [
            "1e308",
            "-1.000",
            "0.004, -0.5",
            "inf",
            "NaN",
            "86401.000",
            "99999999999",
            "0.0.1",
            "--",
            "1-",
            "+1",
            ".5",
            "0.004; 1",
        ] {
            assert!(!response_times_plausible(bad), "{bad}");
        }
    }

    #[test]
    fn only_the_last_unanswered_attempt_of_a_499_is_a_client_abort() {
        let tries = |status: &str, addr: &str, final_status: u16| -> Vec<bool> {
            let a: Vec<_> = attempts(status, addr, "").collect();
            let n = a.len();
            a.iter()
                .enumerate()
                .map(|(i, a)| client_aborted(a, i + 1 == n, final_status))
                .collect()
        };
        // The client left while nginx waited on blue.
        assert_eq!(tries("-", "10.0.0.2:3000", 499), [true]);
        // Blue timed out, then the client left while green was tried.
        assert_eq!(
            tries("504, -", "10.0.0.2:3000, 10.0.0.3:3000", 499),
            [false, true]
        );
        // An answer, even a 5xx, is never an abort: the upstream spoke.
        assert_eq!(tries("502", "10.0.0.2:3000", 499), [false]);
        assert_eq!(tries("200", "10.0.0.2:3000", 499), [false]);
        // `-` on a request that did not end as 499 is no client abort.
        assert_eq!(tries("-", "10.0.0.2:3000", 502), [false]);
        assert_eq!(tries("-", "10.0.0.2:3000", 500), [false]);
        assert!(!Outcome::ClientAbort.is_failure());
        assert!(Outcome::NoResponse.is_failure());
        assert_eq!(Outcome::ClientAbort.label(), "client_abort");
    }

    #[test]
    fn shorter_parallel_lists_do_not_panic() {
        let a: Vec<_> = attempts("500", "x:1, y:1", "").collect();
        assert_eq!(a[1].outcome, Outcome::NoResponse);
        assert_eq!(a[1].response_time, None);
        assert_eq!(attempts("500, 200", "x:1", "").count(), 1);
    }

    /// The list split the plain way: at each separator, leftmost first.
    fn split_by_scan(list: &str) -> Vec<&str> {
        if list.is_empty() {
            return vec![];
        }
        let (mut out, mut start, mut i) = (vec![], 0, 0);
        let b = list.as_bytes();
        while i < b.len() {
            let sep = if b[i..].starts_with(b", ") {
                2
            } else if b[i..].starts_with(b" : ") {
                3
            } else {
                0
            };
            if sep > 0 {
                out.push(&list[start..i]);
                i += sep;
                start = i;
            } else {
                i += 1;
            }
        }
        out.push(&list[start..]);
        out
    }

    proptest::proptest! {
        #[test]
        fn split_finds_the_separators_a_scan_finds(list in "[a1,: ]{0,24}") {
            proptest::prop_assert_eq!(split(&list).collect::<Vec<_>>(), split_by_scan(&list));
        }
    }

    proptest::proptest! {
        #[test]
        fn statuses_read_as_u16_reads_them(s in "[+0-9a-]{0,6}") {
            proptest::prop_assert_eq!(parse_status(&s), s.parse::<u16>().ok());
        }
    }
}
