//! Safe logging, as C-tor's `SafeLogging 1` (its default): the hosts and
//! addresses applications connect to, and the addresses applications
//! connect from, are written to the log as `[scrubbed]` unless unsafe
//! logging was asked for (`braid proxy --unsafe-logging`). Relays'
//! addresses are public and are logged as they are.
//!
//! The switch is process-wide, like C-tor's option: logging is.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};

/// What a scrubbed value is logged as (C-tor's word).
pub const SCRUBBED: &str = "[scrubbed]";

static UNSAFE_LOGGING: AtomicBool = AtomicBool::new(false);

/// Log sensitive values as they are (`true`) or scrubbed (`false`, the
/// default).
pub fn set_unsafe_logging(on: bool) {
    UNSAFE_LOGGING.store(on, Ordering::Relaxed);
}

/// Whether sensitive values are logged as they are.
pub fn unsafe_logging() -> bool {
    UNSAFE_LOGGING.load(Ordering::Relaxed)
}

/// A value that is displayed (and debug-printed) as [`SCRUBBED`] unless
/// unsafe logging is on.
#[derive(Clone, Copy)]
pub struct Sensitive<T>(pub T);

/// Wrap `value` for logging.
pub fn sensitive<T>(value: T) -> Sensitive<T> {
    Sensitive(value)
}

impl<T: fmt::Display> fmt::Display for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if unsafe_logging() {
            self.0.fmt(f)
        } else {
            f.write_str(SCRUBBED)
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for Sensitive<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if unsafe_logging() {
            self.0.fmt(f)
        } else {
            f.write_str(SCRUBBED)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scrubbed_unless_asked() {
        // One test touches the process-wide switch, so tests running in
        // parallel never see it on.
        assert!(!unsafe_logging());
        let host = sensitive("secret.example:443");
        assert_eq!(host.to_string(), SCRUBBED);
        assert_eq!(format!("{host:?}"), SCRUBBED);
        set_unsafe_logging(true);
        assert_eq!(host.to_string(), "secret.example:443");
        assert_eq!(format!("{host:?}"), "\"secret.example:443\"");
        set_unsafe_logging(false);
        assert_eq!(host.to_string(), SCRUBBED);
    }
}
