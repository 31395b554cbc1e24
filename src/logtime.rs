//! Log time: nginx's `$time_iso8601` and `$time_local`, as seconds since the
//! Unix epoch, and back to RFC 3339 for messages.
//!
//! Only replay reads log time (live windows run on the receive clock), and
//! only these two fixed layouts, so a small exact parser does the job
//! without a calendar library.

/// Parse `2026-11-05T09:07:03+00:00` (fraction and `Z` allowed) or
/// `05/Nov/2026:09:07:03 +0000`.
pub fn parse(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() >= 19 && b[4] == b'-' && b[10] == b'T' {
        let (y, mo, d) = (num(b, 0, 4)?, num(b, 5, 2)?, num(b, 8, 2)?);
        let (h, mi, se) = (num(b, 11, 2)?, num(b, 14, 2)?, num(b, 17, 2)?);
        let mut rest = &s[19..];
        if let Some(frac) = rest.strip_prefix('.') {
            rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
        }
        let offset = match rest {
            "Z" | "" => 0,
            _ => offset(rest.as_bytes(), true)?,
        };
        return epoch(y, mo, d, h, mi, se).map(|t| t - offset);
    }
    if b.len() == 26 && b[2] == b'/' && b[6] == b'/' && b[11] == b':' && b[20] == b' ' {
        const MONTHS: [&[u8]; 12] = [
            b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
            b"Dec",
        ];
        let mo = MONTHS.iter().position(|m| *m == &b[3..6])? as i64 + 1;
        let (d, y) = (num(b, 0, 2)?, num(b, 7, 4)?);
        let (h, mi, se) = (num(b, 12, 2)?, num(b, 15, 2)?, num(b, 18, 2)?);
        return epoch(y, mo, d, h, mi, se).map(|t| t - offset(&b[21..], false).unwrap_or(0));
    }
    None
}

/// Format Unix seconds as `2026-11-05T09:07:03Z`.
pub fn format_rfc3339(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days, after H. Hinnant.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn num(b: &[u8], at: usize, len: usize) -> Option<i64> {
    b.get(at..at + len)?.iter().try_fold(0i64, |n, &c| {
        c.is_ascii_digit().then(|| n * 10 + i64::from(c - b'0'))
    })
}

/// `+HH:MM` (colon) or `+HHMM`, in seconds east of UTC.
fn offset(b: &[u8], colon: bool) -> Option<i64> {
    let sign = match b.first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let (h, m) = if colon {
        (b.len() == 6 && b[3] == b':').then_some(())?;
        (num(b, 1, 2)?, num(b, 4, 2)?)
    } else {
        (b.len() == 5).then_some(())?;
        (num(b, 1, 2)?, num(b, 3, 2)?)
    };
    Some(sign * (h * 3600 + m * 60))
}

fn epoch(y: i64, mo: i64, d: i64, h: i64, mi: i64, s: i64) -> Option<i64> {
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || s > 60 {
        return None;
    }
    // Days from civil date (proleptic Gregorian), after H. Hinnant.
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (mo + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + h * 3600 + mi * 60 + s)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn iso8601_forms() {
        assert_eq!(parse("1970-01-01T00:00:00+00:00"), Some(0));
        assert_eq!(parse("2026-11-05T09:07:03+00:00"), Some(1_793_869_623));
        assert_eq!(parse("2026-11-05T10:07:03+01:00"), Some(1_793_869_623));
        assert_eq!(parse("2026-11-05T09:07:03.250Z"), Some(1_793_869_623));
        assert_eq!(parse("2024-02-29T00:00:00Z"), Some(1_709_164_800));
    }

    #[test]
    fn time_local_form() {
        assert_eq!(parse("05/Nov/2026:09:07:03 +0000"), Some(1_793_869_623));
        assert_eq!(parse("05/Nov/2026:04:07:03 -0500"), Some(1_793_869_623));
    }

    #[test]
    fn formats_round_trip() {
        for s in [
            "1970-01-01T00:00:00Z",
            "2026-11-05T09:07:03Z",
            "2024-02-29T23:59:59Z",
            "2000-03-01T00:00:00Z",
        ] {
            assert_eq!(super::format_rfc3339(parse(s).unwrap()), s);
        }
    }

    #[test]
    fn garbage_is_none() {
        for s in [
            "",
            "-",
            "2026-13-05T09:07:03Z",
            "05/Foo/2026:09:07:03 +0000",
            "2026-11-05T09:07:03+0",
        ] {
            assert_eq!(parse(s), None, "{s}");
        }
    }
}
