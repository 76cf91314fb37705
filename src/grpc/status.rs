//! Every error becomes a `tonic::Status` here, and only here: through
//! [`Failure`](crate::failure::Failure), whose code the wire's table maps
//! to its gRPC code (the HTTP face maps the same failure by the same table).

use tonic::Status;

use crate::{
    authority::Error, clients::AuthError, credentials, failure::Failure, input::InvalidInput,
};

impl From<Failure> for Status {
    fn from(failure: Failure) -> Self {
        Status::new(failure.code.grpc(), failure.message)
    }
}

impl From<AuthError> for Status {
    fn from(err: AuthError) -> Self {
        Failure::from(err).into()
    }
}

impl From<InvalidInput> for Status {
    fn from(err: InvalidInput) -> Self {
        Failure::from(err).into()
    }
}

impl From<Error> for Status {
    fn from(err: Error) -> Self {
        Failure::from(err).into()
    }
}

impl From<credentials::Error> for Status {
    fn from(err: credentials::Error) -> Self {
        Failure::from(err).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{clients::Role, store::StoreError};
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
