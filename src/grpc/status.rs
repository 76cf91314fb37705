//! Every error becomes a `tonic::Status` here, and only here.
//!
//! Client mistakes get a message naming the field or the missing role.
//! Service failures get a fixed message: the detail (SQL, driver, host
//! names) goes to the log, never onto the wire.

use tonic::Status;

use crate::{authority::Error, clients::AuthError, input::InvalidInput, store::StoreError};

impl From<AuthError> for Status {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Unauthenticated => Status::unauthenticated(err.to_string()),
            AuthError::PermissionDenied(_) => Status::permission_denied(err.to_string()),
        }
    }
}

impl From<InvalidInput> for Status {
    fn from(err: InvalidInput) -> Self {
        Status::invalid_argument(err.to_string())
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        err.log();
        match err {
            Error::Invalid(invalid) => invalid.into(),
            Error::NotFound => Status::not_found("grant not found"),
            Error::ParentUnknown => Status::not_found(err.to_string()),
            Error::Precondition(why) => Status::failed_precondition(why),
            Error::Store(StoreError::Unavailable(_)) => {
                Status::unavailable("database unavailable, retry later")
            }
            Error::Store(StoreError::Internal(_)) | Error::Unsealable(_) => {
                Status::internal("internal error")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clients::Role;
    use tonic::Code;

    #[test]
    fn codes() {
        let cases: Vec<(Status, Code)> = vec![
            (AuthError::Unauthenticated.into(), Code::Unauthenticated),
            (
                AuthError::PermissionDenied(Role::Mint).into(),
                Code::PermissionDenied,
            ),
            (
                InvalidInput::new("ttl", "must be positive").into(),
                Code::InvalidArgument,
            ),
            (Error::NotFound.into(), Code::NotFound),
            (
                Error::Store(StoreError::Unavailable(sqlx::Error::PoolTimedOut)).into(),
                Code::Unavailable,
            ),
            (
                Error::Store(StoreError::Internal(sqlx::Error::RowNotFound)).into(),
                Code::Internal,
            ),
        ];
        for (status, code) in cases {
            assert_eq!(status.code(), code, "{status:?}");
        }
        let status: Status = Error::Store(StoreError::Internal(sqlx::Error::Protocol(
            "secret detail".into(),
        )))
        .into();
        assert_eq!(status.message(), "internal error");
    }
}
