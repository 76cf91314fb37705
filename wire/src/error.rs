//! The one table of the errors Tessera answers with: a deliberately small
//! set of codes, each mapped here once to a gRPC code and once to an HTTP
//! status and OAuth 2.0 error (RFC 6749 5.2), so that the server's two faces
//! and the client read the same list. A token Tessera refuses is not an
//! error: it is a `Denial` in the answer.

use http::StatusCode;
use tonic::Code;

/// Why a call failed, as the wire says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// A field is missing, malformed or outside its limits; the message
    /// names the field.
    InvalidArgument,
    /// No client key, a malformed one, or one the server does not admit.
    Unauthenticated,
    /// The client lacks the method's role, or may not act on this grant.
    PermissionDenied,
    /// No such grant or credential for this client.
    NotFound,
    /// The state refuses it: a grant rotated already, no seal key, a lease
    /// no longer held.
    FailedPrecondition,
    /// A compare-and-set lost, or writers kept racing: read again, retry.
    Aborted,
    /// Too many calls in flight: shed before it ran, so nothing was done.
    Overloaded,
    /// The database does not answer: retry later.
    Unavailable,
    /// The service failed otherwise; the detail stays in the server's log.
    Internal,
}

impl ErrorCode {
    /// Every code, for the tests that walk the table.
    pub const ALL: [ErrorCode; 9] = [
        ErrorCode::InvalidArgument,
        ErrorCode::Unauthenticated,
        ErrorCode::PermissionDenied,
        ErrorCode::NotFound,
        ErrorCode::FailedPrecondition,
        ErrorCode::Aborted,
        ErrorCode::Overloaded,
        ErrorCode::Unavailable,
        ErrorCode::Internal,
    ];

    /// The gRPC code that carries it.
    pub const fn grpc(self) -> Code {
        match self {
            ErrorCode::InvalidArgument => Code::InvalidArgument,
            ErrorCode::Unauthenticated => Code::Unauthenticated,
            ErrorCode::PermissionDenied => Code::PermissionDenied,
            ErrorCode::NotFound => Code::NotFound,
            ErrorCode::FailedPrecondition => Code::FailedPrecondition,
            ErrorCode::Aborted => Code::Aborted,
            ErrorCode::Overloaded => Code::ResourceExhausted,
            ErrorCode::Unavailable => Code::Unavailable,
            ErrorCode::Internal => Code::Internal,
        }
    }

    /// The code a gRPC status carries, if it is one of Tessera's. Anything
    /// else (DEADLINE_EXCEEDED, CANCELLED, UNKNOWN…) comes from the
    /// transport, not from Tessera's answer.
    pub fn from_grpc(code: Code) -> Option<Self> {
        Self::ALL.into_iter().find(|known| known.grpc() == code)
    }

    /// The HTTP status of the OAuth face's answer.
    pub const fn http_status(self) -> StatusCode {
        match self {
            ErrorCode::InvalidArgument | ErrorCode::FailedPrecondition => StatusCode::BAD_REQUEST,
            ErrorCode::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorCode::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorCode::NotFound => StatusCode::NOT_FOUND,
            ErrorCode::Aborted => StatusCode::CONFLICT,
            ErrorCode::Overloaded => StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The `error` of the OAuth face's JSON answer: RFC 6749 5.2's codes
    /// (`invalid_client` stays the code of a refused client key, whatever
    /// the reason), RFC 6749 4.1.2.1's for the service's own failures.
    pub const fn oauth_error(self) -> &'static str {
        match self {
            ErrorCode::InvalidArgument | ErrorCode::FailedPrecondition | ErrorCode::Aborted => {
                "invalid_request"
            }
            ErrorCode::Unauthenticated => "invalid_client",
            ErrorCode::PermissionDenied => "access_denied",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Overloaded | ErrorCode::Unavailable => "temporarily_unavailable",
            ErrorCode::Internal => "server_error",
        }
    }

    /// Whether the OAuth answer carries the message as its
    /// `error_description`: it does where the caller can act on it, and
    /// not where the code says all there is to say.
    pub const fn http_describes(self) -> bool {
        !matches!(
            self,
            ErrorCode::NotFound | ErrorCode::Unavailable | ErrorCode::Internal
        )
    }

    /// Whether the caller should come back (HTTP adds `Retry-After`).
    pub const fn retry_later(self) -> bool {
        matches!(self, ErrorCode::Overloaded | ErrorCode::Unavailable)
    }

    /// The fixed message of a service failure: what went wrong inside
    /// (SQL, driver, host names) never goes onto the wire.
    pub const fn service_message(self) -> Option<&'static str> {
        match self {
            ErrorCode::Unavailable => Some("database unavailable, retry later"),
            ErrorCode::Internal => Some("internal error"),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_through_grpc() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_grpc(code.grpc()), Some(code), "{code:?}");
        }
        // The transport's own codes are not Tessera's answers.
        for code in [
            Code::Ok,
            Code::Cancelled,
            Code::Unknown,
            Code::DeadlineExceeded,
            Code::Unimplemented,
        ] {
            assert_eq!(ErrorCode::from_grpc(code), None, "{code:?}");
        }
    }

    #[test]
    fn every_code_has_its_http_answer() {
        for code in ErrorCode::ALL {
            let status = code.http_status();
            let service = code.service_message().is_some();
            // The caller's mistakes are 4xx, the service's failures 5xx.
            assert_eq!(status.is_server_error(), service, "{code:?}");
            assert!(status.is_client_error() || status.is_server_error());
            // A service failure says nothing beyond its code.
            assert!(!(service && code.http_describes()), "{code:?}");
            assert_eq!(
                code.retry_later(),
                matches!(status.as_u16(), 429 | 503),
                "{code:?}"
            );
            assert!(
                [
                    "invalid_request",
                    "invalid_client",
                    "access_denied",
                    "not_found",
                    "temporarily_unavailable",
                    "server_error"
                ]
                .contains(&code.oauth_error()),
                "{code:?}"
            );
        }
    }
}
