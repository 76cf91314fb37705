//! Limits on the Credentials fields (the secret's own are in
//! [`super::secret`]). Like every limit, a violation names the field and
//! the rule, never the value.

use std::time::Duration;

use crate::input::{InvalidInput, MAX_PAGE, Result, required_id};

/// Get's `refresh_window` when the caller does not say.
pub const DEFAULT_REFRESH_WINDOW: Duration = Duration::from_secs(5 * 60);
/// The longest `refresh_window`.
pub const MAX_REFRESH_WINDOW: Duration = Duration::from_secs(30 * 86_400);
/// BeginRefresh's `lease_ttl` when the caller does not say.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30);
/// The longest `lease_ttl`.
pub const MAX_LEASE_TTL: Duration = Duration::from_secs(3600);
/// List's page when the caller does not say.
pub const DEFAULT_PAGE: u32 = 100;

/// A bearer id: 1 to 256 bytes, no control or invisible characters.
pub fn bearer_id(value: String) -> Result<String> {
    required_id("bearer_id", value)
}

/// A credential's name (or a page token, which is one): as a bearer id.
pub fn name(field: &str, value: String) -> Result<String> {
    required_id(field, value)
}

pub fn refresh_window(window: Option<Duration>) -> Result<Duration> {
    match window {
        None => Ok(DEFAULT_REFRESH_WINDOW),
        Some(window) if window <= MAX_REFRESH_WINDOW => Ok(window),
        Some(_) => Err(InvalidInput::new(
            "refresh_window",
            "must be at most 30 days",
        )),
    }
}

pub fn lease_ttl(ttl: Option<Duration>) -> Result<Duration> {
    match ttl {
        None => Ok(DEFAULT_LEASE_TTL),
        Some(ttl) if ttl < Duration::from_millis(1) => {
            Err(InvalidInput::new("lease_ttl", "must be at least 1ms"))
        }
        Some(ttl) if ttl > MAX_LEASE_TTL => {
            Err(InvalidInput::new("lease_ttl", "must be at most 1 hour"))
        }
        Some(ttl) => Ok(ttl),
    }
}

pub fn page_size(size: u32) -> Result<u32> {
    match size {
        0 => Ok(DEFAULT_PAGE),
        size if size <= MAX_PAGE => Ok(size),
        _ => Err(InvalidInput::new(
            "page_size",
            format!("must be at most {MAX_PAGE}"),
        )),
    }
}

/// A wire duration (`field`) as a `Duration`; negative ones are refused.
pub fn duration(field: &str, seconds: i64, nanos: i32) -> Result<Duration> {
    match (u64::try_from(seconds), u32::try_from(nanos)) {
        (Ok(seconds), Ok(nanos)) if nanos < 1_000_000_000 => Ok(Duration::new(seconds, nanos)),
        _ => Err(InvalidInput::new(field, "must be a non-negative duration")),
    }
}

/// A wire timestamp (`field`) as unix microseconds, between 1970 and 9999.
pub fn timestamp(field: &str, seconds: i64, nanos: i32) -> Result<i64> {
    const MAX_SECONDS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    match u32::try_from(nanos) {
        Ok(nanos) if nanos < 1_000_000_000 && (0..=MAX_SECONDS).contains(&seconds) => {
            Ok(seconds * 1_000_000 + i64::from(nanos / 1_000))
        }
        _ => Err(InvalidInput::new(
            field,
            "must be a valid time between 1970 and 9999",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_bounds() {
        assert_eq!(refresh_window(None), Ok(DEFAULT_REFRESH_WINDOW));
        assert_eq!(refresh_window(Some(Duration::ZERO)), Ok(Duration::ZERO));
        assert!(refresh_window(Some(MAX_REFRESH_WINDOW * 2)).is_err());
        assert_eq!(lease_ttl(None), Ok(DEFAULT_LEASE_TTL));
        assert!(lease_ttl(Some(Duration::ZERO)).is_err());
        assert!(lease_ttl(Some(Duration::from_secs(3601))).is_err());
        assert_eq!(page_size(0), Ok(DEFAULT_PAGE));
        assert!(page_size(MAX_PAGE + 1).is_err());
        assert!(duration("lease_ttl", -1, 0).is_err());
        assert!(duration("lease_ttl", 1, -1).is_err());
        assert_eq!(timestamp("expires_at", 2, 5_000), Ok(2_000_005));
        assert!(timestamp("expires_at", -1, 0).is_err());
        assert!(timestamp("expires_at", i64::MAX, 0).is_err());
        let err = bearer_id("a\u{202E}b".into()).unwrap_err().to_string();
        assert!(err.starts_with("bearer_id:"), "{err}");
        assert!(name("name", String::new()).is_err());
        assert!(name("name", "n".repeat(257)).is_err());
    }
}
