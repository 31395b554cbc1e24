//! Syslog framing: find the message inside one datagram.
//!
//! nginx sends one datagram per log line, with no trailing newline, in a
//! narrow RFC 3164 dialect: `<PRI>Mmm dd hh:mm:ss HOST TAG: MSG`, or without
//! the hostname when `nohostname` is set. Relays (rsyslog, syslog-ng) forward
//! the same line re-framed, and each has its own habits:
//!
//! - RFC 5424 (`<PRI>1 TIMESTAMP HOST APP PROCID MSGID SD MSG`): rsyslog's
//!   `RSYSLOG_SyslogProtocol23Format` writes two spaces before the message
//!   (its MSG keeps the space that followed nginx's `nginx:` tag) and a
//!   trailing newline; syslog-ng's `syslog()` driver adds structured data
//!   (`[meta sequenceId="1"]`). Fractional seconds, a PROCID, escaped
//!   SD-PARAM values and a BOM before the message all occur.
//! - RFC 3164 with another timestamp: rsyslog's `RSYSLOG_ForwardFormat`
//!   writes RFC 3339 with microseconds (`2026-11-05T09:07:03.123456+00:00`),
//!   syslog-ng's `frac-digits()` appends them to the BSD timestamp
//!   (`Nov  5 09:07:03.000`).
//! - RFC 3164 with a tag that has no colon: a relay that received RFC 5424
//!   writes `HOST nginx {...}` (there is no colon in APP-NAME).
//! - A relay that did not parse nginx's hostname from a local socket
//!   (rsyslog's `imuxsock` and syslog-ng's `unix-dgram()` by default) takes it
//!   for the tag, so `HOST` comes twice in RFC 3164 and `nginx: ` is left at
//!   the start of an RFC 5424 MSG.
//!
//! A generic RFC 3164 parser would take the tag for a hostname in nginx's
//! `nohostname` form, so instead of naming header fields we skip the
//! timestamp and then at most three header words: the message starts after
//! the first word that ends in `:` (a tag), or at the first word that starts
//! with `{` (a JSON message after a colon-less tag). Bare JSON lines (replay,
//! tests) and `<PRI>{...}` are accepted too.
//!
//! The parser only returns offsets: the caller decodes the message in place in
//! the receive buffer, so framing never copies or allocates.

use std::ops::Range;

/// Severity used when a line carries no PRI (bare JSON): informational, like
/// nginx's access log default `local7.info`.
pub const SEVERITY_INFO: u8 = 6;

/// Where the message sits in a datagram, and what the header said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Byte range of the message (the JSON for an access log line).
    pub msg: Range<usize>,
    /// Syslog severity (0 emerg … 7 debug).
    pub severity: u8,
}

/// Why a datagram could not be framed. Each maps to a `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Nothing but whitespace.
    Empty,
    /// `<PRI>` missing, not a number, or out of range.
    BadPri,
    /// The header after PRI does not follow RFC 3164 or RFC 5424.
    BadHeader,
}

impl FrameError {
    /// The `reason` label used in `poolwatch_ingest_malformed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            FrameError::Empty => "empty",
            FrameError::BadPri => "bad_syslog_pri",
            FrameError::BadHeader => "bad_syslog_header",
        }
    }
}

/// Locate the message in `datagram`.
pub fn parse(datagram: &[u8]) -> Result<Frame, FrameError> {
    // Relays and files may add line endings that nginx never sends.
    let end = datagram
        .iter()
        .rposition(|&b| !matches!(b, b'\n' | b'\r' | b'\0' | b' ' | b'\t'))
        .map_or(0, |p| p + 1);
    let d = &datagram[..end];
    let start = d
        .iter()
        .position(|&b| !matches!(b, b' ' | b'\t'))
        .ok_or(FrameError::Empty)?;
    if d[start] != b'<' {
        // A bare line: the whole datagram is the message.
        return Ok(Frame {
            msg: start..end,
            severity: SEVERITY_INFO,
        });
    }
    let (pri, after_pri) = parse_pri(d, start)?;
    let severity = (pri & 7) as u8;
    let rest = &d[after_pri..];
    let msg_start = if rest.starts_with(b"1 ") {
        after_pri + 2 + rfc5424_msg_offset(&rest[2..])?
    } else if rest.first() == Some(&b'{') {
        // Some relays strip the header but keep PRI.
        after_pri
    } else {
        after_pri + rfc3164_msg_offset(rest)?
    };
    Ok(Frame {
        msg: msg_start.min(end)..end,
        severity,
    })
}

/// Parse `<N>` at `start`; returns PRI and the offset just past `>`.
fn parse_pri(d: &[u8], start: usize) -> Result<(u32, usize), FrameError> {
    let mut pri: u32 = 0;
    let mut i = start + 1;
    while i < d.len() && i - start <= 4 {
        match d[i] {
            b'0'..=b'9' => pri = pri * 10 + u32::from(d[i] - b'0'),
            b'>' if i > start + 1 && pri <= 191 => return Ok((pri, i + 1)),
            _ => return Err(FrameError::BadPri),
        }
        i += 1;
    }
    Err(FrameError::BadPri)
}

/// How many header words may precede the message after an RFC 3164
/// timestamp: `HOST TAG:`, plus a second `HOST` from a relay that did not
/// parse nginx's own.
const MAX_3164_HEADER_WORDS: usize = 3;

/// RFC 3164: a timestamp (BSD, BSD with fractional seconds, or RFC 3339),
/// then up to three header words. Returns the message offset within `rest`.
fn rfc3164_msg_offset(rest: &[u8]) -> Result<usize, FrameError> {
    let mut i = timestamp_len(rest).ok_or(FrameError::BadHeader)?;
    for _ in 0..MAX_3164_HEADER_WORDS {
        if rest.get(i) != Some(&b' ') {
            return Err(FrameError::BadHeader);
        }
        i = skip_spaces(rest, i + 1);
        let json = skip_bom(rest, i);
        if rest.get(json) == Some(&b'{') {
            // `HOST nginx[PID] {...}`: a tag taken from RFC 5424's APP-NAME,
            // and the BOM that came with its message.
            return Ok(json);
        }
        // A word with nothing after it is a header without a message.
        let len = rest[i..]
            .iter()
            .position(|&b| b == b' ')
            .ok_or(FrameError::BadHeader)?;
        i += len;
        // Hostnames never end in ':', tags end in ':' in both the hostname
        // and the nohostname forms.
        if rest[i - 1] == b':' {
            return Ok(skip_bom(rest, skip_spaces(rest, i + 1)));
        }
    }
    // No tag within three words: not a header any relay writes.
    Err(FrameError::BadHeader)
}

/// Length of the RFC 3164 timestamp at the start of `rest`, if it has one.
fn timestamp_len(rest: &[u8]) -> Option<usize> {
    const BSD: usize = 15;
    if rest.len() > BSD && looks_like_bsd_timestamp(&rest[..BSD]) {
        // syslog-ng's frac-digits() appends fractional seconds.
        return Some(BSD + fraction_len(rest, BSD)?);
    }
    rfc3339_len(rest)
}

fn looks_like_bsd_timestamp(ts: &[u8]) -> bool {
    // "Nov  5 09:07:03": month letters, space, space-padded day, hh:mm:ss.
    ts[0].is_ascii_uppercase()
        && ts[1].is_ascii_lowercase()
        && ts[2].is_ascii_lowercase()
        && ts[3] == b' '
        && (ts[4] == b' ' || ts[4].is_ascii_digit())
        && ts[5].is_ascii_digit()
        && ts[6] == b' '
        && ts[9] == b':'
        && ts[12] == b':'
        && all_digits(ts, [7, 8, 10, 11, 13, 14])
}

/// Whether `s` has an ASCII digit at every index in `at`. A fixed-size
/// array keeps this a handful of inlined comparisons.
#[inline(always)]
fn all_digits<const N: usize>(s: &[u8], at: [usize; N]) -> bool {
    let mut ok = true;
    for i in at {
        ok &= s[i].is_ascii_digit();
    }
    ok
}

/// `YYYY-MM-DDThh:mm:ss[.frac](Z|+hh:mm|-hh:mm)`, as rsyslog's
/// `RSYSLOG_ForwardFormat` and syslog-ng's `${ISODATE}` write it. Kept out
/// of line: nginx itself always sends the BSD form.
#[inline(never)]
fn rfc3339_len(ts: &[u8]) -> Option<usize> {
    const SECONDS: usize = 19;
    let shape_ok = ts.len() > SECONDS
        && ts[4] == b'-'
        && ts[7] == b'-'
        && matches!(ts[10], b'T' | b't')
        && ts[13] == b':'
        && ts[16] == b':'
        && all_digits(ts, [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]);
    if !shape_ok {
        return None;
    }
    let i = SECONDS + fraction_len(ts, SECONDS)?;
    match ts.get(i)? {
        b'Z' | b'z' => Some(i + 1),
        b'+' | b'-' => {
            let off = ts.get(i + 1..i + 6)?;
            let ok = off[2] == b':' && all_digits(off, [0, 1, 3, 4]);
            ok.then_some(i + 6)
        }
        _ => None,
    }
}

/// Length of `.digits` at `at` (0 when there is no `.`); `None` for a dot
/// without digits.
fn fraction_len(s: &[u8], at: usize) -> Option<usize> {
    if s.get(at) != Some(&b'.') {
        return Some(0);
    }
    let digits = s[at + 1..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    (digits > 0).then_some(1 + digits)
}

/// RFC 5424 after `1 `: TIMESTAMP HOST APP PROCID MSGID SD [MSG].
/// Returns the message offset within `rest`.
fn rfc5424_msg_offset(rest: &[u8]) -> Result<usize, FrameError> {
    let mut i = 0;
    for _ in 0..5 {
        let sp = rest[i..]
            .iter()
            .position(|&b| b == b' ')
            .ok_or(FrameError::BadHeader)?;
        if sp == 0 {
            return Err(FrameError::BadHeader);
        }
        i += sp + 1;
    }
    i = skip_structured_data(rest, i)?;
    if i < rest.len() {
        // RFC 5424 has one space here; rsyslog writes two (see the module
        // docs), and a message never starts with a space we need.
        if rest[i] != b' ' {
            return Err(FrameError::BadHeader);
        }
        i = skip_spaces(rest, i);
    }
    let i = skip_bom(rest, i);
    Ok(i + tag_in_message_len(&rest[i..]))
}

/// `nginx: ` at the start of an RFC 5424 MSG followed by JSON: a relay took
/// nginx's hostname for the tag (see the module docs). Returns how much to
/// skip, 0 when the message is anything else.
fn tag_in_message_len(msg: &[u8]) -> usize {
    if msg.first() == Some(&b'{') {
        return 0;
    }
    let Some(word_end) = msg.iter().position(|&b| b == b' ') else {
        return 0;
    };
    if word_end == 0 || msg[word_end - 1] != b':' {
        return 0;
    }
    let next = skip_spaces(msg, word_end);
    if msg.get(next) == Some(&b'{') {
        next
    } else {
        0
    }
}

/// STRUCTURED-DATA is `-` or one or more `[id k="v" …]` elements, where a
/// quoted value may contain an escaped `\]`, `\"` or `\\`.
fn skip_structured_data(rest: &[u8], mut i: usize) -> Result<usize, FrameError> {
    match rest.get(i) {
        Some(b'-') => return Ok(i + 1),
        Some(b'[') => {}
        _ => return Err(FrameError::BadHeader),
    }
    while rest.get(i) == Some(&b'[') {
        i += 1;
        let mut in_quotes = false;
        loop {
            match rest.get(i) {
                None => return Err(FrameError::BadHeader),
                Some(b'\\') if in_quotes => i += 2,
                Some(b'"') => {
                    in_quotes = !in_quotes;
                    i += 1;
                }
                Some(b']') if !in_quotes => {
                    i += 1;
                    break;
                }
                Some(_) => i += 1,
            }
        }
    }
    Ok(i)
}

/// `i`, or just past a UTF-8 byte order mark at `i`: RFC 5424 allows one
/// before the message, and relays keep it when they re-frame as RFC 3164.
fn skip_bom(s: &[u8], i: usize) -> usize {
    match s.get(i..i + 3) {
        Some([0xEF, 0xBB, 0xBF]) => i + 3,
        _ => i,
    }
}

/// The offset of the first byte at or after `i` that is not a space.
fn skip_spaces(s: &[u8], mut i: usize) -> usize {
    while s.get(i) == Some(&b' ') {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(d: &[u8]) -> &[u8] {
        let f = parse(d).expect("frames");
        &d[f.msg]
    }

    #[test]
    fn nginx_with_hostname() {
        let d = b"<190>Nov  5 09:07:03 web-1 nginx: {\"status\":200}";
        assert_eq!(msg(d), b"{\"status\":200}");
        assert_eq!(parse(d).unwrap().severity, 6);
    }

    #[test]
    fn nginx_nohostname_is_not_mistaken_for_a_host() {
        let d = b"<190>Nov 15 09:07:03 nginx: {\"a\":\"b: c\"}";
        assert_eq!(msg(d), b"{\"a\":\"b: c\"}");
    }

    #[test]
    fn any_facility_and_severity() {
        let d = b"<11>Nov  5 09:07:03 h nginx: text";
        let f = parse(d).unwrap();
        assert_eq!(f.severity, 3);
        assert_eq!(&d[f.msg], b"text");
        assert_eq!(
            parse(b"<192>Nov  5 09:07:03 h t: x"),
            Err(FrameError::BadPri)
        );
        assert_eq!(parse(b"<>x"), Err(FrameError::BadPri));
        assert_eq!(parse(b"<1900>x"), Err(FrameError::BadPri));
    }

    /// A relay fixture, byte for byte (see `tests/fixtures/rsyslog` and
    /// `tests/fixtures/syslog-ng`).
    macro_rules! relayed {
        ($relay:literal, $name:literal) => {
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/",
                $relay,
                "/",
                $name,
                ".dgram"
            ))
            .as_slice()
        };
    }

    /// The JSON nginx sent in `tests/fixtures/nginx/NAME.dgram`: what every
    /// relayed copy of it must frame to.
    fn nginx_json(name: &str) -> Vec<u8> {
        let path = format!(
            "{}/tests/fixtures/nginx/{name}.dgram",
            env!("CARGO_MANIFEST_DIR")
        );
        let d = std::fs::read(&path).expect("nginx fixture");
        let at = d.iter().position(|&b| b == b'{').expect("JSON in fixture");
        d[at..].to_vec()
    }

    /// Frames `d` and checks it yields `ok_blue.dgram`'s JSON at severity 6.
    fn frames_ok_blue(d: &[u8]) {
        let f = parse(d).unwrap_or_else(|e| panic!("{e:?}: {}", String::from_utf8_lossy(d)));
        assert_eq!(
            String::from_utf8_lossy(&d[f.msg]),
            String::from_utf8_lossy(&nginx_json("ok_blue")),
            "from {}",
            String::from_utf8_lossy(d)
        );
        assert_eq!(f.severity, 6);
    }

    #[test]
    fn rsyslog_rfc5424_puts_two_spaces_before_the_message() {
        let d = relayed!("rsyslog", "nginx.protocol23");
        assert!(
            d.windows(5).any(|w| w == b"-  {\""),
            "two spaces, as captured"
        );
        assert_eq!(d.last(), Some(&b'\n'));
        frames_ok_blue(d);
    }

    #[test]
    fn rfc5424_structured_data_escapes_procid_msgid_and_bom() {
        // rsyslog passes the sender's header through; syslog-ng appends its
        // own SD-ELEMENT after the sender's.
        let rsyslog = relayed!("rsyslog", "rfc5424_sd.protocol23");
        for escaped in [&b"/a\\]b"[..], b"say \\\"hi", b"C:\\\\tmp"] {
            let found = rsyslog.windows(escaped.len()).any(|w| w == escaped);
            assert!(found, "{} kept as sent", String::from_utf8_lossy(escaped));
        }
        frames_ok_blue(rsyslog);
        frames_ok_blue(relayed!("syslog-ng", "rfc5424_sd.syslog"));
        frames_ok_blue(relayed!("syslog-ng", "nginx.syslog"));
    }

    #[test]
    fn rfc3164_with_an_rfc3339_timestamp() {
        // rsyslog's RSYSLOG_ForwardFormat (microseconds, +00:00) and
        // syslog-ng's ${ISODATE} (whole seconds).
        frames_ok_blue(relayed!("rsyslog", "nginx.forward"));
        frames_ok_blue(relayed!("syslog-ng", "nginx.isodate"));
        frames_ok_blue(relayed!("syslog-ng", "rfc5424_sd.isodate"));
    }

    #[test]
    fn rfc3164_with_the_traditional_timestamp() {
        frames_ok_blue(relayed!("rsyslog", "nginx.traditional"));
        frames_ok_blue(relayed!("syslog-ng", "nginx.network"));
        // syslog-ng's frac-digits(3) on the BSD time stamp.
        frames_ok_blue(relayed!("syslog-ng", "nginx.network_frac"));
        frames_ok_blue(relayed!("syslog-ng", "rfc5424_sd.network_frac"));
    }

    #[test]
    fn rfc3164_relayed_without_a_hostname() {
        frames_ok_blue(relayed!("rsyslog", "nginx.nohostname"));
        let f = parse(relayed!("rsyslog", "nginx_nohostname.nohostname")).unwrap();
        let d = relayed!("rsyslog", "nginx_nohostname.nohostname");
        assert_eq!(&d[f.msg], nginx_json("nohostname").as_slice());
    }

    #[test]
    fn rfc3164_colon_less_tag_from_rfc5424_keeps_its_bom_out() {
        // rsyslog relays an RFC 5424 line as `HOST nginx[4242] BOM{...}`.
        for d in [
            relayed!("rsyslog", "rfc5424_sd.forward"),
            relayed!("rsyslog", "rfc5424_sd.traditional"),
            relayed!("rsyslog", "rfc5424_sd.nohostname"),
        ] {
            assert!(d.windows(5).any(|w| w == b"] \xEF\xBB\xBF"), "as captured");
            frames_ok_blue(d);
        }
        frames_ok_blue(relayed!("syslog-ng", "rfc5424_sd.network"));
    }

    #[test]
    fn relays_that_did_not_parse_nginx_hostname() {
        // RFC 3164 gets the host twice; RFC 5424 gets `nginx: ` in MSG.
        frames_ok_blue(relayed!("rsyslog", "nginx_unparsed.traditional"));
        frames_ok_blue(relayed!("rsyslog", "nginx_unparsed.forward"));
        frames_ok_blue(relayed!("rsyslog", "nginx_unparsed.nohostname"));
        frames_ok_blue(relayed!("rsyslog", "nginx_unparsed.protocol23"));
        frames_ok_blue(relayed!("syslog-ng", "nginx_unparsed.network"));
        frames_ok_blue(relayed!("syslog-ng", "nginx_unparsed.syslog"));
    }

    #[test]
    fn every_relay_fixture_frames_to_what_nginx_sent() {
        let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let mut seen = 0;
        for relay in ["rsyslog", "syslog-ng"] {
            for entry in std::fs::read_dir(format!("{root}/{relay}")).expect("fixture dir") {
                let path = entry.expect("dir entry").path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                let Some(stem) = name.strip_suffix(".dgram") else {
                    continue;
                };
                let source = if stem.starts_with("nginx_nohostname.") {
                    "nohostname"
                } else {
                    "ok_blue"
                };
                let d = std::fs::read(&path).expect("fixture");
                let f = parse(&d).unwrap_or_else(|e| panic!("{relay}/{name}: {e:?}"));
                assert_eq!(&d[f.msg], nginx_json(source).as_slice(), "{relay}/{name}");
                assert_eq!(f.severity, 6, "{relay}/{name}");
                seen += 1;
            }
        }
        assert_eq!(seen, 32, "16 fixtures per relay");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 2000,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Relayed headers cut, spliced and corrupted anywhere frame or fail
        /// cleanly, and a frame always lies inside the datagram.
        #[test]
        fn mutated_relay_headers_never_panic(
            which in 0usize..4,
            edits in proptest::collection::vec(
                (proptest::prelude::any::<proptest::sample::Index>(), proptest::prelude::any::<u8>(), 0u8..4),
                1..6,
            ),
        ) {
            let mut d = [
                relayed!("rsyslog", "rfc5424_sd.protocol23"),
                relayed!("rsyslog", "nginx.forward"),
                relayed!("rsyslog", "rfc5424_sd.traditional"),
                relayed!("syslog-ng", "nginx.network_frac"),
            ][which]
                .to_vec();
            for (at, byte, op) in edits {
                if d.is_empty() {
                    break;
                }
                // Edits land in the header, where the parser looks.
                let i = at.index(d.len().min(200));
                match op {
                    0 => d[i] = byte,
                    1 => {
                        d.remove(i);
                    }
                    2 => d.insert(i, byte),
                    _ => d.truncate(i),
                }
            }
            if let Ok(f) = parse(&d) {
                proptest::prop_assert!(f.msg.start <= f.msg.end && f.msg.end <= d.len());
            }
        }
    }

    #[test]
    fn structured_data_escapes_do_not_end_a_value_early() {
        // `\\` is an escaped backslash, so the quote after it closes the
        // value; `\]` and `\"` stay inside it.
        let d = br#"<190>1 2026-11-05T09:07:03Z h nginx - - [a@1 x="\\" y="]"][b@1 z="\]\"]"] {}"#;
        assert_eq!(msg(d), b"{}");
        // An element that never closes is not a header.
        let d = br#"<190>1 2026-11-05T09:07:03Z h nginx - - [a@1 x="\"] {}"#;
        assert_eq!(parse(d), Err(FrameError::BadHeader));
        let d = br#"<190>1 2026-11-05T09:07:03Z h nginx - - x {}"#;
        assert_eq!(parse(d), Err(FrameError::BadHeader));
    }

    #[test]
    fn rfc5424_message_keeps_a_tag_that_is_not_before_json() {
        // Only `TAG: {` is taken for an unparsed nginx header; any other
        // message is left whole for the decoder to judge.
        let d = b"<187>1 2026-11-05T09:07:03Z h vm - - - nginx: 2026/11/05 [error] x";
        assert_eq!(msg(d), b"nginx: 2026/11/05 [error] x");
        let d = b"<190>1 2026-11-05T09:07:03Z h nginx - - -   ";
        assert_eq!(msg(d), b"");
    }

    #[test]
    fn rfc3164_timestamps_that_are_not_are_rejected() {
        for d in [
            // RFC 3339 without an offset, with a space for T, with a bad offset.
            &b"<190>2026-11-05T09:07:03 h nginx: {}"[..],
            b"<190>2026-11-05 09:07:03Z h nginx: {}",
            b"<190>2026-11-05T09:07:03+0100 h nginx: {}",
            // A fraction without digits.
            b"<190>Nov  5 09:07:03. h nginx: {}",
            b"<190>2026-11-05T09:07:03.Z h nginx: {}",
            // No time stamp at all.
            b"<190>h nginx: {}",
        ] {
            assert_eq!(
                parse(d),
                Err(FrameError::BadHeader),
                "{}",
                String::from_utf8_lossy(d)
            );
        }
        assert_eq!(msg(b"<190>2026-11-05t09:07:03.5-05:30 h nginx: {}"), b"{}");
    }

    #[test]
    fn rfc3164_header_is_at_most_three_words() {
        assert_eq!(msg(b"<190>Nov  5 09:07:03 a b c: {}"), b"{}");
        assert_eq!(
            parse(b"<190>Nov  5 09:07:03 a b c d: {}"),
            Err(FrameError::BadHeader)
        );
        // A colon inside the message never ends the header early.
        assert_eq!(
            msg(b"<190>Nov  5 09:07:03 h nginx {\"a\": 1}"),
            b"{\"a\": 1}"
        );
        assert_eq!(msg(b"<190>Nov  5 09:07:03 h nginx:   {}"), b"{}");
    }

    #[test]
    fn rfc5424_with_and_without_structured_data() {
        let d = b"<190>1 2026-11-05T09:07:03.001Z web-1 nginx - - - {\"s\":1}";
        assert_eq!(msg(d), b"{\"s\":1}");
        let d = b"<190>1 2026-11-05T09:07:03Z h nginx 12 ID [x@1 a=\"q\\]\" b=\"c\"][y@2] \xEF\xBB\xBF{}";
        assert_eq!(msg(d), b"{}");
        let d = b"<190>1 2026-11-05T09:07:03Z h nginx - -";
        assert_eq!(parse(d), Err(FrameError::BadHeader));
    }

    #[test]
    fn bare_json_and_line_endings() {
        assert_eq!(msg(b"{\"s\":1}\r\n"), b"{\"s\":1}");
        assert_eq!(msg(b"  {\"s\":1}"), b"{\"s\":1}");
        assert_eq!(parse(b" \n"), Err(FrameError::Empty));
        assert_eq!(parse(b""), Err(FrameError::Empty));
    }

    #[test]
    fn header_without_tag_separator_is_rejected() {
        assert_eq!(
            parse(b"<190>Nov  5 09:07:03 host nginx"),
            Err(FrameError::BadHeader)
        );
        assert_eq!(parse(b"<190>garbage"), Err(FrameError::BadHeader));
    }
}
