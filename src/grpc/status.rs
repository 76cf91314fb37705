//! Every error becomes a `tonic::Status` here, and only here.
//!
//! Client mistakes get a message naming the field or the missing role.
//! Service failures get a fixed message: the detail (SQL, driver, host
//! names) goes to the log, never onto the wire.

use tonic::Status;

use crate::{
    authority::Error, clients::AuthError, credentials, input::InvalidInput, store::StoreError,
};

impl From<AuthError> for Status {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Unauthenticated(_) => Status::unauthenticated(err.to_string()),
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
            Error::Forbidden(why) => Status::permission_denied(why),
            Error::Credential(err) => err.into(),
            Error::Store(StoreError::Unavailable(_)) => {
                Status::unavailable("database unavailable, retry later")
            }
            Error::Store(StoreError::Internal(_)) | Error::Unsealable(_) => {
                Status::internal("internal error")
            }
        }
    }
}

impl From<credentials::Error> for Status {
    fn from(err: credentials::Error) -> Self {
        use credentials::Error as E;
        err.log();
        match err {
            E::Disabled | E::LeaseNotHeld => Status::failed_precondition(err.to_string()),
            E::Invalid(invalid) => invalid.into(),
            E::NotFound => Status::not_found(err.to_string()),
            E::VersionMismatch(_) | E::Contended => Status::aborted(err.to_string()),
            E::Store(StoreError::Unavailable(_)) => {
                Status::unavailable("database unavailable, retry later")
            }
            E::Store(StoreError::Internal(_)) | E::Unsealable(_) => {
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
            (
                AuthError::Unauthenticated(crate::clients::Unauthenticated::NoKey).into(),
                Code::Unauthenticated,
            ),
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

    #[test]
    fn credential_codes() {
        use crate::credentials::{Error as E, Unsealable};
        let cases: Vec<(Status, Code)> = vec![
            (E::Disabled.into(), Code::FailedPrecondition),
            (E::LeaseNotHeld.into(), Code::FailedPrecondition),
            (
                E::Invalid(InvalidInput::new("name", "is required")).into(),
                Code::InvalidArgument,
            ),
            (E::NotFound.into(), Code::NotFound),
            (E::VersionMismatch("no").into(), Code::Aborted),
            (E::Contended.into(), Code::Aborted),
            (
                E::Store(StoreError::Unavailable(sqlx::Error::PoolTimedOut)).into(),
                Code::Unavailable,
            ),
            (
                E::Unsealable(Unsealable::UnknownKey("k0".into())).into(),
                Code::Internal,
            ),
        ];
        for (status, code) in cases {
            assert_eq!(status.code(), code, "{status:?}");
        }
        let disabled = Status::from(E::Disabled);
        assert!(disabled.message().contains("--seal-key"), "{disabled:?}");
        let hidden = Status::from(E::Unsealable(Unsealable::UnknownKey("k0".into())));
        assert_eq!(hidden.message(), "internal error");
    }
}
