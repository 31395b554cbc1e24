//! Syslog framing: find the message inside one datagram.
//!
//! nginx sends one datagram per log line, with no trailing newline, in a
//! narrow RFC 3164 dialect: `<PRI>Mmm dd hh:mm:ss HOST TAG: MSG`, or without
//! the hostname when `nohostname` is set. A generic RFC 3164 parser would take
//! the tag for a hostname in the second form, so instead of tokenising the
//! header we skip the fixed-width timestamp and start the message after the
//! first `": "`. RFC 5424 (from relays) and bare JSON lines (replay, tests) are
//! accepted too.
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
        after_pri + rfc5424_msg_offset(&rest[2..])? + 2
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

/// RFC 3164 as nginx writes it: a 15-byte `Mmm dd hh:mm:ss` timestamp, then
/// `HOST TAG: ` or just `TAG: `. Returns the message offset within `rest`.
fn rfc3164_msg_offset(rest: &[u8]) -> Result<usize, FrameError> {
    const TS: usize = 15;
    if rest.len() < TS + 1 || !looks_like_bsd_timestamp(&rest[..TS]) || rest[TS] != b' ' {
        return Err(FrameError::BadHeader);
    }
    // Hostnames and tags never contain ": ", the message may: the first one
    // after the timestamp ends the header in both the hostname and the
    // nohostname forms.
    let header = &rest[TS + 1..];
    let mut from = 0;
    while let Some(c) = header[from..].iter().position(|&b| b == b':') {
        let at = from + c;
        if header.get(at + 1) == Some(&b' ') {
            return Ok(TS + 1 + at + 2);
        }
        from = at + 1;
    }
    Err(FrameError::BadHeader)
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
        && [7, 8, 10, 11, 13, 14]
            .iter()
            .all(|&i| ts[i].is_ascii_digit())
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
        if rest[i] != b' ' {
            return Err(FrameError::BadHeader);
        }
        i += 1;
    }
    if rest[i..].starts_with(b"\xEF\xBB\xBF") {
        i += 3;
    }
    Ok(i)
}

/// STRUCTURED-DATA is `-` or one or more `[id k="v" …]` elements, where a
/// quoted value may contain an escaped `\]` or `\"`.
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
