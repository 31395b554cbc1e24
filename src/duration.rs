//! Durations as people write them in settings, subcommand flags and API
//! bodies: `90s`, `30m`, `2h`.
//!
//! A leaf module so that the settings (`config`), the subcommands that
//! declare their own flags (`check_failover`) and the HTTP API parse them
//! the same way without importing each other.

use std::time::Duration;

/// Parse `30m`, `2h`, `90s`, with a message that says what is accepted.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|_| "accepted: a duration such as 90s, 30m or 2h".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_people_write() {
        assert_eq!(parse_duration(" 30m "), Ok(Duration::from_secs(1800)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        let err = parse_duration("soon").unwrap_err();
        assert!(err.contains("30m"), "{err}");
    }
}
