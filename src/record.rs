//! Access record: the JSON nginx logs for one request, decoded in place.
//!
//! simd-json's tape API parses into a reused node vector and unescapes
//! strings inside the receive buffer, so every string field is a slice of the
//! datagram and the steady state allocates nothing. The serde path would
//! build the same borrowed struct but costs a visitor per field; on ~500-byte
//! objects the tape walk is what keeps decoding ahead of the socket.
//!
//! What real nginx writes shapes the rules here: with `escape=json` an absent
//! value is `""`, with `escape=default` it is `"-"`; numbers may be bare or
//! quoted; and bytes ≥ 0x80 pass through raw, so a line may be invalid UTF-8.
//! Such a line is repaired in place (each invalid byte becomes `?`, keeping the
//! length) rather than lost. `escape=default` is not JSON at all where it
//! escapes (`\x22` for a quote, `\xC3\xA9` for é): those escapes are rewritten
//! in place into JSON before parsing. Both repairs run only on lines that
//! need them, found by a scan the common line passes in one pass.

use simd_json::prelude::*;
use simd_json::{Buffers, Node, Tape};

/// Padding the decoder needs after the message, in the same buffer.
pub const INPUT_PADDING: usize = simd_json::INPUT_PADDING;

/// One request as logged. Strings borrow the receive buffer; absent values
/// (`""` or `"-"`) are empty strings.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct AccessRecord<'a> {
    pub time: &'a str,
    pub remote_addr: &'a str,
    pub request: &'a str,
    pub method: &'a str,
    pub uri: &'a str,
    /// Final status sent to the client.
    pub status: u16,
    pub body_bytes_sent: u64,
    /// `$request_time` in seconds, if logged: as read, so possibly
    /// negative or infinite, and NaN when logged but not a number. The
    /// pipeline decides what is plausible.
    pub request_time: Option<f64>,
    pub upstream_status: &'a str,
    pub upstream_addr: &'a str,
    pub upstream_response_time: &'a str,
    pub pool: &'a str,
    pub release: &'a str,
    pub request_id: &'a str,
    pub http_user_agent: &'a str,
    /// The line held invalid UTF-8 and was repaired before decoding.
    pub repaired_utf8: bool,
}

/// An [`AccessRecord`] as offsets into the buffer it was decoded from:
/// what lets a batch decoded on one thread travel with its buffers to
/// another and be folded in there without decoding it again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spans {
    /// Start and length of each string field, in declaration order.
    strs: [(u32, u32); STRS],
    status: u16,
    body_bytes_sent: u64,
    request_time: Option<f64>,
    repaired_utf8: bool,
}

/// How many string fields a record has.
const STRS: usize = 12;

impl<'a> AccessRecord<'a> {
    /// The string fields, in the order of the first [`Field`]s.
    fn strs(&self) -> [&'a str; STRS] {
        [
            self.time,
            self.remote_addr,
            self.request,
            self.method,
            self.uri,
            self.upstream_status,
            self.upstream_addr,
            self.upstream_response_time,
            self.pool,
            self.release,
            self.request_id,
            self.http_user_agent,
        ]
    }

    /// A record from its string fields, in the order of [`Self::strs`],
    /// and the rest.
    fn from_parts(
        strs: [&'a str; STRS],
        status: u16,
        body_bytes_sent: u64,
        request_time: Option<f64>,
        repaired_utf8: bool,
    ) -> AccessRecord<'a> {
        let [
            time,
            remote_addr,
            request,
            method,
            uri,
            upstream_status,
            upstream_addr,
            upstream_response_time,
            pool,
            release,
            request_id,
            http_user_agent,
        ] = strs;
        AccessRecord {
            time,
            remote_addr,
            request,
            method,
            uri,
            status,
            body_bytes_sent,
            request_time,
            upstream_status,
            upstream_addr,
            upstream_response_time,
            pool,
            release,
            request_id,
            http_user_agent,
            repaired_utf8,
        }
    }

    /// Where each string of this record lies in `base`, the address range
    /// (`as_ptr_range`) of the buffer it was decoded from. `None` if a
    /// non-empty one lies elsewhere, which decoding in place never does.
    pub fn spans(&self, base: std::ops::Range<*const u8>) -> Option<Spans> {
        let (start, end) = (base.start as usize, base.end as usize);
        let mut strs = [(0, 0); STRS];
        for (span, s) in strs.iter_mut().zip(self.strs()) {
            if s.is_empty() {
                continue;
            }
            let at = (s.as_ptr() as usize).checked_sub(start)?;
            if start + at + s.len() > end {
                return None;
            }
            *span = (u32::try_from(at).ok()?, u32::try_from(s.len()).ok()?);
        }
        Some(Spans {
            strs,
            status: self.status,
            body_bytes_sent: self.body_bytes_sent,
            request_time: self.request_time,
            repaired_utf8: self.repaired_utf8,
        })
    }
}

impl Spans {
    /// The record again, its strings read from `base`.
    ///
    /// # Safety
    /// `base` holds the bytes [`AccessRecord::spans`] was given, unchanged
    /// since: each span is then a whole `str` of the record.
    pub unsafe fn record<'a>(&self, base: &'a [u8]) -> AccessRecord<'a> {
        let s = |(at, len): (u32, u32)| {
            let bytes = &base[at as usize..(at + len) as usize];
            // SAFETY: the caller promises these bytes are a `str` that
            // `spans` measured, unchanged.
            unsafe { std::str::from_utf8_unchecked(bytes) }
        };
        AccessRecord::from_parts(
            self.strs.map(s),
            self.status,
            self.body_bytes_sent,
            self.request_time,
            self.repaired_utf8,
        )
    }
}

/// Why a message is not an access record. Each maps to a `reason` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// Not a JSON object at all: an `error_log` line or other text.
    NotAccessLog,
    /// Starts like JSON but does not parse, or is not an object.
    InvalidJson,
    /// No `status` field (or an empty one).
    MissingStatus,
    /// `status` is not a number from 100 to 599.
    BadStatus,
}

impl DecodeError {
    /// The `reason` label used in `poolwatch_ingest_malformed_total`.
    pub fn reason(self) -> &'static str {
        match self {
            DecodeError::NotAccessLog => "not_access_log",
            DecodeError::InvalidJson => "invalid_json",
            DecodeError::MissingStatus => "missing_status",
            DecodeError::BadStatus => "bad_status",
        }
    }
}

/// Reusable decoding state: simd-json's buffers and tape, kept across lines.
pub struct Decoder {
    buffers: Buffers,
    // Always empty between calls; its lifetime is re-bound per line by
    // `Tape::reset`, which keeps the allocation.
    tape: Tape<'static>,
    /// The key seen at each position of the last line. nginx writes the
    /// same keys in the same order every time, so one comparison per key
    /// usually identifies it.
    order: KeyOrder,
}

const ORDER_SLOTS: usize = 32;

/// Field (or unknown key, `None`) and its name, by position in the object.
type KeyOrder = [Option<(Option<Field>, &'static str)>; ORDER_SLOTS];

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    pub fn new() -> Self {
        Decoder {
            buffers: Buffers::new(4096),
            tape: Tape(Vec::with_capacity(128)),
            order: [None; ORDER_SLOTS],
        }
    }

    /// Decode the message `buf[..len]`. `buf` must extend at least
    /// [`INPUT_PADDING`] bytes past `len`; those bytes may hold anything and
    /// are left as they were. The message bytes are rewritten in place.
    pub fn decode<'a>(
        &mut self,
        buf: &'a mut [u8],
        len: usize,
    ) -> Result<AccessRecord<'a>, DecodeError> {
        if buf[..len].first() != Some(&b'{') {
            return Err(DecodeError::NotAccessLog);
        }
        let mut len = len;
        let mut repaired = false;
        // Repairs must happen before parsing (a failed parse may already
        // have unescaped strings in place), so look first, cheaply: only a
        // line with a backslash or a byte >= 0x80 can need one.
        if may_need_repair(&buf[..len]) {
            if has_hex_escape(&buf[..len]) {
                len = rewrite_hex_escapes(&mut buf[..len]);
            }
            if std::str::from_utf8(&buf[..len]).is_err() {
                repair_utf8(&mut buf[..len]);
                repaired = true;
            }
        }
        let mut tape: Tape<'a> = std::mem::replace(&mut self.tape, Tape(Vec::new())).reset();
        let result = match simd_json::fill_tape_padded(buf, len, &mut self.buffers, &mut tape) {
            Ok(()) => read_fields(&tape.0, &mut self.order),
            Err(_) => Err(DecodeError::InvalidJson),
        };
        self.tape = tape.reset();
        result.map(|mut r| {
            r.repaired_utf8 = repaired;
            r
        })
    }
}

/// Whether the line holds a backslash or a byte >= 0x80, eight bytes at a
/// time (SWAR): the common line (plain ASCII, no escapes) pays a few
/// nanoseconds, not a byte loop.
pub(crate) fn may_need_repair(bytes: &[u8]) -> bool {
    const HIGH: u64 = 0x8080_8080_8080_8080;
    const ONES: u64 = 0x0101_0101_0101_0101;
    const BACKSLASH: u64 = 0x5C5C_5C5C_5C5C_5C5C;
    let mut acc = 0u64;
    let mut words = bytes.chunks_exact(8);
    for w in &mut words {
        let w = u64::from_le_bytes(w.try_into().expect("8-byte chunk"));
        // A byte of `x` is zero where `w` holds a backslash; the classic
        // "has a zero byte" test sets that byte's high bit.
        let x = w ^ BACKSLASH;
        acc |= w | (x.wrapping_sub(ONES) & !x);
    }
    acc & HIGH != 0 || words.remainder().iter().any(|&b| b >= 0x80 || b == b'\\')
}

/// Does the line use `escape=default`'s `\xHH`? In JSON a backslash is
/// always followed by one of `"\\/bfnrtu`, so a `\x` pair cannot be valid JSON.
fn has_hex_escape(bytes: &[u8]) -> bool {
    let mut i = 0;
    while let Some(p) = bytes[i..].iter().position(|&b| b == b'\\') {
        let at = i + p;
        if bytes.get(at + 1) == Some(&b'x') {
            return true;
        }
        i = at + 2;
        if i >= bytes.len() {
            return false;
        }
    }
    false
}

/// Rewrite `\xHH` escapes into JSON, in place; returns the new length.
/// Every replacement is no longer than the escape, so the write position
/// never overtakes the read position: a quote or backslash becomes its
/// two-byte JSON escape, a byte ≥ 0x80 becomes itself (UTF-8 is checked
/// afterwards), a control byte becomes `\t`, `\n`, `\r` or `?`.
fn rewrite_hex_escapes(bytes: &mut [u8]) -> usize {
    let (mut r, mut w) = (0, 0);
    while r < bytes.len() {
        let b = bytes[r];
        if b == b'\\' && r + 1 < bytes.len() {
            let hex = bytes
                .get(r + 2..r + 4)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[r + 1], hex) {
                (b'x', Some(v)) => {
                    let (out, n): ([u8; 2], usize) = match v {
                        b'"' => (*b"\\\"", 2),
                        b'\\' => (*b"\\\\", 2),
                        b'\t' => (*b"\\t", 2),
                        b'\n' => (*b"\\n", 2),
                        b'\r' => (*b"\\r", 2),
                        0..=0x1F | 0x7F => ([b'?', 0], 1),
                        _ => ([v, 0], 1),
                    };
                    bytes[w..w + n].copy_from_slice(&out[..n]);
                    w += n;
                    r += 4;
                }
                _ => {
                    // A JSON escape: keep both bytes.
                    bytes[w] = b;
                    bytes[w + 1] = bytes[r + 1];
                    w += 2;
                    r += 2;
                }
            }
        } else {
            bytes[w] = b;
            w += 1;
            r += 1;
        }
    }
    w
}

/// Replace each invalid UTF-8 sequence with `?`, byte for byte, so the
/// length, and with it every offset, stays the same.
fn repair_utf8(bytes: &mut [u8]) {
    let mut at = 0;
    while at < bytes.len() {
        match std::str::from_utf8(&bytes[at..]) {
            Ok(_) => return,
            Err(e) => {
                let bad_start = at + e.valid_up_to();
                let bad_len = e.error_len().unwrap_or(bytes.len() - bad_start);
                bytes[bad_start..bad_start + bad_len].fill(b'?');
                at = bad_start + bad_len;
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    // The string fields first, in the order of `AccessRecord::strs`, so
    // that a field's number is its place there.
    Time,
    RemoteAddr,
    Request,
    Method,
    Uri,
    UpstreamStatus,
    UpstreamAddr,
    UpstreamResponseTime,
    Pool,
    Release,
    RequestId,
    UserAgent,
    Status,
    BodyBytesSent,
    RequestTime,
}

/// Field names, for the position cache.
const FIELD_NAMES: [(&str, Field); 15] = [
    ("time", Field::Time),
    ("remote_addr", Field::RemoteAddr),
    ("request", Field::Request),
    ("method", Field::Method),
    ("uri", Field::Uri),
    ("upstream_status", Field::UpstreamStatus),
    ("upstream_addr", Field::UpstreamAddr),
    ("upstream_response_time", Field::UpstreamResponseTime),
    ("pool", Field::Pool),
    ("release", Field::Release),
    ("request_id", Field::RequestId),
    ("http_user_agent", Field::UserAgent),
    ("status", Field::Status),
    ("body_bytes_sent", Field::BodyBytesSent),
    ("request_time", Field::RequestTime),
];

/// Identify the key at `pos`, trying the key seen there last time first.
fn field_at(key: &str, pos: usize, order: &mut KeyOrder) -> Option<Field> {
    let slot = order.get_mut(pos);
    if let Some(Some((f, name))) = slot.as_deref()
        && same_short(name.as_bytes(), key.as_bytes())
    {
        return *f;
    }
    let f = field(key);
    if let Some(slot) = slot {
        let name = f.map_or("", |f| FIELD_NAMES[f as usize].0);
        // Unknown keys are not cached by name (it would have to be owned);
        // they fall back to the full match each time.
        *slot = f.map(|f| (Some(f), name));
    }
    f
}

/// Equality for short byte strings (keys are at most a few dozen bytes),
/// eight bytes at a time and inline: a `memcmp` call per key was a
/// measurable share of the tape walk. The last word overlaps the one
/// before it rather than falling back to a byte loop, so a key of any
/// length from 8 up costs one comparison per word.
#[inline]
fn same_short(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        if n < 4 {
            return a.iter().zip(b).all(|(x, y)| x == y);
        }
        return u32::from_ne_bytes(word(a, 0)) == u32::from_ne_bytes(word(b, 0))
            && u32::from_ne_bytes(word(a, n - 4)) == u32::from_ne_bytes(word(b, n - 4));
    }
    let mut at = 0;
    while at + 8 < n {
        if u64::from_ne_bytes(word(a, at)) != u64::from_ne_bytes(word(b, at)) {
            return false;
        }
        at += 8;
    }
    u64::from_ne_bytes(word(a, n - 8)) == u64::from_ne_bytes(word(b, n - 8))
}

/// The `N` bytes of `s` from `at`.
#[inline(always)]
fn word<const N: usize>(s: &[u8], at: usize) -> [u8; N] {
    s[at..at + N].try_into().expect("N bytes")
}

fn field(key: &str) -> Option<Field> {
    Some(match key {
        "time" => Field::Time,
        "remote_addr" => Field::RemoteAddr,
        "request" => Field::Request,
        "method" => Field::Method,
        "uri" => Field::Uri,
        "status" => Field::Status,
        "body_bytes_sent" => Field::BodyBytesSent,
        "request_time" => Field::RequestTime,
        "upstream_status" => Field::UpstreamStatus,
        "upstream_addr" => Field::UpstreamAddr,
        "upstream_response_time" => Field::UpstreamResponseTime,
        "pool" => Field::Pool,
        "release" => Field::Release,
        "request_id" => Field::RequestId,
        "http_user_agent" => Field::UserAgent,
        _ => return None,
    })
}

/// A scalar as logged: bare number or string. `escape=default` writes `-`
/// for absent values, which reads as absent here too.
enum Scalar<'a> {
    Str(&'a str),
    U64(u64),
    F64(f64),
    Other,
}

fn scalar<'a>(node: &Node<'a>) -> Scalar<'a> {
    match node {
        Node::String(s) if *s == "-" => Scalar::Str(""),
        Node::String(s) => Scalar::Str(s),
        Node::Static(s) => {
            if let Some(u) = s.as_u64() {
                Scalar::U64(u)
            } else if let Some(f) = s.as_f64() {
                Scalar::F64(f)
            } else {
                Scalar::Other
            }
        }
        _ => Scalar::Other,
    }
}

fn read_fields<'a>(
    nodes: &[Node<'a>],
    order: &mut KeyOrder,
) -> Result<AccessRecord<'a>, DecodeError> {
    let Some(Node::Object { len, .. }) = nodes.first() else {
        return Err(DecodeError::InvalidJson);
    };
    // String fields by `Field` number, filled as found and moved into the
    // record at the end: one indexed store per key instead of a match.
    let mut strs: [&'a str; STRS] = [""; STRS];
    let mut status: Option<Result<u16, DecodeError>> = None;
    let (mut body_bytes_sent, mut request_time) = (0, None);
    let mut i = 1;
    for pos in 0..*len {
        let (Some(Node::String(key)), Some(value)) = (nodes.get(i), nodes.get(i + 1)) else {
            return Err(DecodeError::InvalidJson);
        };
        i += 1 + node_span(value);
        let Some(f) = field_at(key, pos, order) else {
            continue;
        };
        match (f, value) {
            // "-" is a real element here (no response), not an absent value.
            (Field::UpstreamStatus, Node::String(s)) => strs[f as usize] = s,
            (Field::Status, v) => status = Some(parse_status(&scalar(v))),
            (Field::BodyBytesSent, v) => body_bytes_sent = as_u64(&scalar(v)).unwrap_or(0),
            (Field::RequestTime, v) => request_time = as_seconds(&scalar(v)),
            (_, v) => {
                strs[f as usize] = match scalar(v) {
                    Scalar::Str(s) => s,
                    _ => "",
                }
            }
        }
    }
    Ok(AccessRecord::from_parts(
        strs,
        status.ok_or(DecodeError::MissingStatus)??,
        body_bytes_sent,
        request_time,
        false,
    ))
}

/// Number of tape nodes a value occupies, nested values included.
fn node_span(node: &Node<'_>) -> usize {
    match node {
        Node::Object { count, .. } | Node::Array { count, .. } => count + 1,
        _ => 1,
    }
}

fn parse_status(v: &Scalar<'_>) -> Result<u16, DecodeError> {
    let n = match v {
        Scalar::U64(n) => *n,
        Scalar::Str("") => return Err(DecodeError::MissingStatus),
        Scalar::Str(s) => s.parse::<u64>().map_err(|_| DecodeError::BadStatus)?,
        _ => return Err(DecodeError::BadStatus),
    };
    if (100..=599).contains(&n) {
        Ok(n as u16)
    } else {
        Err(DecodeError::BadStatus)
    }
}

fn as_u64(v: &Scalar<'_>) -> Option<u64> {
    match v {
        Scalar::U64(n) => Some(*n),
        Scalar::Str(s) => s.parse().ok(),
        _ => None,
    }
}

/// A number of seconds: `None` when absent (`""`, `"-"`), NaN when present
/// but not a number, so that it can be counted rather than mistaken for
/// absent.
fn as_seconds(v: &Scalar<'_>) -> Option<f64> {
    match v {
        Scalar::Str("") => None,
        Scalar::U64(n) => Some(*n as f64),
        Scalar::F64(f) => Some(*f),
        Scalar::Str(s) => Some(s.parse().unwrap_or(f64::NAN)),
        Scalar::Other => Some(f64::NAN),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn padded(s: &[u8]) -> (Vec<u8>, usize) {
        let mut v = s.to_vec();
        let len = v.len();
        v.resize(len + INPUT_PADDING, 0);
        (v, len)
    }

    fn decode(s: &[u8]) -> Result<AccessRecord<'static>, DecodeError> {
        let (v, len) = padded(s);
        let buf: &'static mut [u8] = Box::leak(v.into_boxed_slice());
        Decoder::new().decode(buf, len)
    }

    #[test]
    fn escape_json_line() {
        let r = decode(br#"{"time":"2026-11-05T09:07:03+00:00","status":200,"request_time":0.005,"upstream_status":"500, 200","upstream_addr":"10.0.0.2:3000, 10.0.0.3:3000","pool":"green","release":"g-1","uri":"/a\"b","http_user_agent":""}"#).unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.request_time, Some(0.005));
        assert_eq!(r.upstream_status, "500, 200");
        assert_eq!(r.pool, "green");
        assert_eq!(r.uri, "/a\"b");
        assert_eq!(r.http_user_agent, "");
        assert!(!r.repaired_utf8);
    }

    #[test]
    fn escape_default_dashes_and_quoted_numbers() {
        let r = decode(br#"{"status":"404","request_time":"0.000","upstream_status":"-","pool":"-","body_bytes_sent":"153"}"#).unwrap();
        assert_eq!(r.status, 404);
        assert_eq!(r.request_time, Some(0.0));
        // Kept as logged: in upstream_status "-" is an element (no response).
        assert_eq!(r.upstream_status, "-");
        assert_eq!(r.pool, "");
        assert_eq!(r.body_bytes_sent, 153);
    }

    #[test]
    fn request_times_are_read_as_logged() {
        let time = |v: &str| {
            let line = format!(r#"{{"status":200,"request_time":{v}}}"#);
            decode(line.as_bytes()).unwrap().request_time
        };
        assert_eq!(time("0.004"), Some(0.004));
        assert_eq!(time("\"0.004\""), Some(0.004));
        assert_eq!(time("3"), Some(3.0));
        assert_eq!(time("1e308"), Some(1e308));
        assert_eq!(time("-1.5"), Some(-1.5));
        assert_eq!(time("\"\""), None);
        assert_eq!(time("\"-\""), None);
        assert!(time("\"soon\"").unwrap().is_nan());
        assert!(time("null").unwrap().is_nan());
        assert!(time("\"inf\"").unwrap().is_infinite());
    }

    #[test]
    fn malformed_reasons() {
        assert_eq!(
            decode(b"2026/11/05 [error] x"),
            Err(DecodeError::NotAccessLog)
        );
        assert_eq!(decode(b"{\"status\":200"), Err(DecodeError::InvalidJson));
        assert_eq!(
            decode(b"{\"pool\":\"blue\"}"),
            Err(DecodeError::MissingStatus)
        );
        assert_eq!(
            decode(b"{\"status\":\"\"}"),
            Err(DecodeError::MissingStatus)
        );
        assert_eq!(decode(b"{\"status\":\"abc\"}"), Err(DecodeError::BadStatus));
        assert_eq!(decode(b"{\"status\":true}"), Err(DecodeError::BadStatus));
        assert_eq!(decode(b"{\"status\":20000}"), Err(DecodeError::BadStatus));
        assert_eq!(decode(b"{\"status\":600}"), Err(DecodeError::BadStatus));
        assert_eq!(decode(b"{\"status\":-1}"), Err(DecodeError::BadStatus));
    }

    #[test]
    fn escape_default_hex_escapes_become_json() {
        let r = decode(br#"{"status":200,"http_user_agent":"say \x22hi\x22 \x5C caf\xC3\xA9\x09\x01\x41","uri":"/a\\xb"}"#).unwrap();
        assert_eq!(r.http_user_agent, "say \"hi\" \\ caf\u{e9}\t?A");
        assert!(!r.repaired_utf8);
        // A JSON-escaped backslash before an x is not a hex escape.
        assert_eq!(r.uri, "/a\\xb");
        let r = decode(br#"{"status":200,"uri":"/\xFF"}"#).unwrap();
        assert!(r.repaired_utf8);
        assert_eq!(r.uri, "/?");
        assert!(has_hex_escape(br#"{"a":"\x"}"#));
        assert!(!has_hex_escape(br#"{"a":"\\x"}"#));
        assert!(!has_hex_escape(b"{\"a\":\"\\"));
    }

    #[test]
    fn repair_screen_sees_backslashes_and_high_bytes() {
        assert!(!may_need_repair(
            br#"{"status":200,"uri":"/plain/ascii/line/longer/than/one/chunk/of/32"}"#
        ));
        assert!(may_need_repair(br#"{"uri":"/a\"b"}"#));
        let mut long = vec![b'a'; 100];
        long[77] = 0xC3;
        assert!(may_need_repair(&long));
        long[77] = b'a';
        long[99] = b'\\';
        assert!(may_need_repair(&long));
    }

    proptest::proptest! {
        #[test]
        fn short_equality_is_equality(a in proptest::collection::vec(0u8..4, 0..40), b in proptest::collection::vec(0u8..4, 0..40)) {
            proptest::prop_assert_eq!(same_short(&a, &b), a == b);
            proptest::prop_assert!(same_short(&a, &a));
        }

        #[test]
        fn short_equality_sees_one_changed_byte(a in proptest::collection::vec(proptest::prelude::any::<u8>(), 1..40), at in 0usize..40, flip in 1u8..=255) {
            let mut b = a.clone();
            let at = at % a.len();
            b[at] ^= flip;
            proptest::prop_assert!(!same_short(&a, &b));
            proptest::prop_assert!(same_short(&a, &a.clone()));
        }

        #[test]
        fn repair_screen_matches_its_definition(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..100)) {
            let naive = bytes.iter().any(|&b| b >= 0x80 || b == b'\\');
            proptest::prop_assert_eq!(may_need_repair(&bytes), naive);
        }
    }

    #[test]
    fn key_order_cache_follows_changing_layouts() {
        let mut d = Decoder::new();
        let lines: [&[u8]; 4] = [
            br#"{"status":200,"pool":"blue","x":1}"#,
            br#"{"status":201,"pool":"blue","x":1}"#,
            br#"{"pool":"green","x":1,"status":202}"#,
            br#"{"x":1,"status":203,"pool":"blue"}"#,
        ];
        for (i, line) in lines.iter().enumerate() {
            let (mut v, len) = padded(line);
            let r = d.decode(&mut v, len).unwrap();
            assert_eq!(r.status, 200 + i as u16);
            assert!(r.pool == "blue" || r.pool == "green");
        }
        assert!(
            FIELD_NAMES
                .iter()
                .enumerate()
                .all(|(i, (n, f))| *f as usize == i && field(n) == Some(*f))
        );
    }

    #[test]
    fn spans_give_the_same_record_back() {
        let line = br#"{"time":"t","status":502,"request_time":"0.5","uri":"/a\"b","upstream_status":"-","upstream_addr":"10.0.0.2:3000","pool":"-","release":"r1","http_user_agent":"caf\xC3\xA9"}"#;
        let (mut v, len) = padded(line);
        let mut d = Decoder::new();
        let base = v.as_ptr_range();
        let r = d.decode(&mut v, len).unwrap();
        let spans = r
            .spans(base.clone())
            .expect("every string lies in the buffer");
        // A string from elsewhere has no span.
        let elsewhere = AccessRecord {
            pool: "blue",
            ..r.clone()
        };
        assert_eq!(elsewhere.spans(base), None);
        let copy = format!("{r:?}");
        assert_eq!(r.uri, "/a\"b");
        // SAFETY: the same buffer, unchanged since.
        assert_eq!(format!("{:?}", unsafe { spans.record(&v) }), copy);
    }

    #[test]
    fn nested_values_are_skipped() {
        let r = decode(br#"{"x":{"status":500,"y":[1,{"z":2}]},"status":201}"#).unwrap();
        assert_eq!(r.status, 201);
    }

    #[test]
    fn invalid_utf8_is_repaired_in_place() {
        let r = decode(b"{\"status\":200,\"uri\":\"/\xFF\xFEa\",\"http_user_agent\":\"\xC3(\"}")
            .unwrap();
        assert!(r.repaired_utf8);
        assert_eq!(r.uri, "/??a");
        assert_eq!(r.http_user_agent, "?(");
    }

    #[test]
    fn decoder_is_reusable_and_leaves_padding_alone() {
        let mut d = Decoder::new();
        for i in 0..3u16 {
            let line = format!("{{\"status\":{}}}", 200 + i);
            let (mut v, len) = padded(line.as_bytes());
            v[len..].fill(0xAB);
            assert_eq!(d.decode(&mut v, len).unwrap().status, 200 + i);
            assert!(v[len..].iter().all(|&b| b == 0xAB));
        }
    }
}
