//! The one error type. A token Tessera refuses is not an error: it is a
//! [`Validation::Denied`](crate::Validation::Denied) or
//! [`ClaimOutcome::Denied`](crate::ClaimOutcome::Denied) value, as in the
//! proto. An error means the request was bad, the caller is not allowed,
//! or the call did not complete.
//!
//! A status Tessera answers with is read through the wire crate's table of
//! error codes ([`ErrorCode`]), the one the server answers by.

use std::error::Error as _;

use tessera_wire::error::ErrorCode;
use tonic::{Code, Status};

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The client's settings are wrong (a bad URL, an unreadable CA file).
    #[error("invalid client configuration: {0}")]
    Config(String),
    /// The first connection could not be made (`ClientBuilder::connect`).
    #[error("cannot connect to Tessera")]
    Connect(#[source] tonic::transport::Error),
    /// The request was bad; Tessera names the field.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The client key is missing, malformed or unknown; Tessera says which
    /// and how to make one (never anything about other keys).
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// The client lacks the method's role.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
    /// No such grant or credential for this client (or a parent token that
    /// is not a live token for this client, for Delegate).
    #[error("not found")]
    NotFound,
    /// The state forbids it (a grant rotated already, no seal key, a lease
    /// no longer held…).
    #[error("failed precondition: {0}")]
    FailedPrecondition(String),
    /// A compare-and-set lost (Credentials `Put` with `if_version`).
    #[error("aborted: {0}")]
    Aborted(String),
    /// Tessera shed the call: too many calls in flight. Nothing was done.
    #[error("Tessera is overloaded")]
    Overloaded,
    /// Tessera (or the network to it) failed. `unsent` is true when the
    /// connection could not even be made, so the request never left.
    #[error("Tessera is unavailable: {message}")]
    Unavailable { message: String, unsent: bool },
    /// The call's deadline passed (retries included).
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// Any other gRPC status.
    #[error("Tessera answered {code:?}: {message}")]
    Rpc { code: Code, message: String },
    /// Tessera's answer lacked a field it always sends.
    #[error("malformed answer from Tessera: {0}")]
    Protocol(&'static str),
}

impl Error {
    /// The gRPC code this error stands for, if it came from a call.
    pub fn code(&self) -> Option<Code> {
        Some(match self {
            Self::Config(_) | Self::Connect(_) | Self::Protocol(_) => return None,
            Self::InvalidArgument(_) => Code::InvalidArgument,
            Self::Unauthenticated(_) => Code::Unauthenticated,
            Self::PermissionDenied(_) => Code::PermissionDenied,
            Self::NotFound => Code::NotFound,
            Self::FailedPrecondition(_) => Code::FailedPrecondition,
            Self::Aborted(_) => Code::Aborted,
            Self::Overloaded => Code::ResourceExhausted,
            Self::Unavailable { .. } => Code::Unavailable,
            Self::DeadlineExceeded => Code::DeadlineExceeded,
            Self::Rpc { code, .. } => *code,
        })
    }

    /// Whether trying the same call again may succeed and cannot do twice
    /// what was done once, for a call that is idempotent (Validate, a
    /// keyed Claim, Revoke, reads).
    pub(crate) fn retryable_if_idempotent(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { .. } | Self::DeadlineExceeded | Self::Overloaded
        ) || matches!(self, Self::Rpc { code, .. } if *code == Code::Cancelled)
    }

    /// Whether the request provably did nothing: it never left (no
    /// connection), or Tessera shed it before running it. Only these are
    /// retried for calls that are not idempotent (Mint, Rotate, Delegate).
    pub(crate) fn provably_not_done(&self) -> bool {
        matches!(
            self,
            Self::Unavailable { unsent: true, .. } | Self::Overloaded
        )
    }
}

impl From<Status> for Error {
    fn from(status: Status) -> Self {
        // tonic reports its own client-side timeout as CANCELLED with a
        // `TimeoutExpired` source, and a failed connection as UNAVAILABLE
        // with a `ConnectError` source: look for both.
        let mut source = status.source();
        let mut unsent = false;
        while let Some(err) = source {
            if err.is::<tonic::TimeoutExpired>() {
                return Self::DeadlineExceeded;
            }
            if err.is::<tonic::ConnectError>() {
                unsent = true;
            }
            source = err.source();
        }
        let message = status.message().to_owned();
        // Tessera never answers UNKNOWN: an UNKNOWN with a source is tonic
        // reporting a transport failure (the connection dropped mid-call),
        // so the request may or may not have been served.
        if status.code() == Code::Unknown && status.source().is_some() {
            return Self::Unavailable { message, unsent };
        }
        let Some(code) = ErrorCode::from_grpc(status.code()) else {
            return match status.code() {
                Code::DeadlineExceeded => Self::DeadlineExceeded,
                code => Self::Rpc { code, message },
            };
        };
        match code {
            ErrorCode::InvalidArgument => Self::InvalidArgument(message),
            ErrorCode::Unauthenticated => Self::Unauthenticated(message),
            ErrorCode::PermissionDenied => Self::PermissionDenied(message),
            ErrorCode::NotFound => Self::NotFound,
            ErrorCode::FailedPrecondition => Self::FailedPrecondition(message),
            ErrorCode::Aborted => Self::Aborted(message),
            ErrorCode::Overloaded => Self::Overloaded,
            ErrorCode::Unavailable => Self::Unavailable { message, unsent },
            ErrorCode::Internal => Self::Rpc {
                code: code.grpc(),
                message,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_variants() {
        let err = Error::from(Status::unavailable("db down"));
        assert!(matches!(err, Error::Unavailable { unsent: false, .. }));
        assert!(err.retryable_if_idempotent() && !err.provably_not_done());
        let err = Error::from(Status::resource_exhausted("shed"));
        assert!(err.retryable_if_idempotent() && err.provably_not_done());
        let err = Error::from(Status::deadline_exceeded("late"));
        assert!(err.retryable_if_idempotent() && !err.provably_not_done());
        let err = Error::from(Status::invalid_argument("scopes: bad"));
        assert!(!err.retryable_if_idempotent());
        assert_eq!(err.code(), Some(Code::InvalidArgument));
        let err = Error::from(Status::cancelled("server timeout"));
        assert!(err.retryable_if_idempotent() && !err.provably_not_done());
    }
}
