//! Why a server descriptor could not be built.

use thiserror::Error;

/// A descriptor could not be built. Each kind says what to change:
/// [`Invalid`](Self::Invalid), [`Policy`](Self::Policy) and
/// [`TooLarge`](Self::TooLarge) are configuration to fix,
/// [`Keys`](Self::Keys) means the key set must be regenerated or renewed,
/// [`Encode`](Self::Encode) is a bug.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DescriptorError {
    /// A field of the descriptor information is not acceptable.
    #[error("{field} {value:?}: {reason}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// The value given (truncated to 80 characters).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An exit policy rule could not be used.
    #[error("exit policy {line:?}: {reason}")]
    Policy {
        /// The rule (truncated to 80 characters).
        line: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The keys do not fit together (e.g. the signing-key certificate does
    /// not certify the signing key) or have expired.
    #[error("relay keys: {0}")]
    Keys(String),
    /// The encoded descriptor is larger than authorities accept.
    #[error("descriptor is {size} bytes; authorities accept at most {limit}")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// Encoding or signing failed although the inputs were checked: a bug.
    #[error("encoding the descriptor failed: {0}")]
    Encode(String),
}

impl DescriptorError {
    pub(crate) fn invalid(field: &'static str, value: &str, reason: &'static str) -> Self {
        Self::Invalid {
            field,
            value: value.chars().take(80).collect(),
            reason,
        }
    }
}
