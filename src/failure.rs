//! Every error the server answers with becomes a [`Failure`] here, and
//! only here: a code from the wire's table ([`ErrorCode`]) and a message
//! safe to send. The gRPC adapter turns it into a `Status`, the HTTP face
//! into an OAuth answer, each in one place, by the same table.
//!
//! Client mistakes get a message naming the field or the missing role.
//! Service failures get their code's fixed message; their detail (SQL,
//! driver, host names) is logged here, once, and never goes onto the wire.

use std::borrow::Cow;

pub use tessera_wire::error::ErrorCode;

use crate::{authority, clients::AuthError, credentials, input::InvalidInput, store::StoreError};

/// An error as the wire says it.
#[derive(Debug)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: Cow<'static, str>,
}

impl Failure {
    fn new(code: ErrorCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// A failure of the service, its detail logged and kept off the wire.
    fn service(code: ErrorCode) -> Self {
        Self::new(code, code.service_message().unwrap_or("internal error"))
    }

    /// Too many calls in flight: shed before anything ran.
    pub fn overloaded() -> Self {
        Self::new(
            ErrorCode::Overloaded,
            "server overloaded; retry with backoff",
        )
    }
}

impl From<InvalidInput> for Failure {
    fn from(err: InvalidInput) -> Self {
        Self::new(ErrorCode::InvalidArgument, err.to_string())
    }
}

impl From<AuthError> for Failure {
    fn from(err: AuthError) -> Self {
        let code = match err {
            AuthError::Unauthenticated(_) => ErrorCode::Unauthenticated,
            AuthError::PermissionDenied(_) => ErrorCode::PermissionDenied,
        };
        Self::new(code, err.to_string())
    }
}

impl From<StoreError> for Failure {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Unavailable(source) => {
                tracing::error!(error = %source, "database unavailable");
                Self::service(ErrorCode::Unavailable)
            }
            StoreError::Internal(source) => {
                tracing::error!(error = %source, "database error");
                Self::service(ErrorCode::Internal)
            }
        }
    }
}

/// A stored value that does not open under the keys this server holds;
/// `what` says which kind, for the log.
fn unsealable(what: &'static str, source: &dyn std::fmt::Display) -> Failure {
    tracing::error!(error = %source, "stored {what} does not open");
    Failure::service(ErrorCode::Internal)
}

impl From<authority::Error> for Failure {
    fn from(err: authority::Error) -> Self {
        use authority::Error as E;
        match err {
            E::Invalid(invalid) => invalid.into(),
            E::NotFound | E::ParentUnknown => Self::new(ErrorCode::NotFound, err.to_string()),
            E::Precondition(why) => Self::new(ErrorCode::FailedPrecondition, why),
            E::Forbidden(why) => Self::new(ErrorCode::PermissionDenied, why),
            E::Credential(err) => err.into(),
            E::Store(err) => err.into(),
            E::Unsealable(source) => unsealable("payload", &source),
        }
    }
}

impl From<credentials::Error> for Failure {
    fn from(err: credentials::Error) -> Self {
        use credentials::Error as E;
        match err {
            E::Disabled | E::LeaseNotHeld => {
                Self::new(ErrorCode::FailedPrecondition, err.to_string())
            }
            E::Invalid(invalid) => invalid.into(),
            E::NotFound => Self::new(ErrorCode::NotFound, err.to_string()),
            E::VersionMismatch(_) | E::Contended => Self::new(ErrorCode::Aborted, err.to_string()),
            E::Store(err) => err.into(),
            E::Unsealable(source) => unsealable("credential", &source),
        }
    }
}
