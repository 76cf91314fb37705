//! The gRPC adapter: authenticate, shape the input, call the authority, map
//! the result. No rule lives here.

pub(crate) mod convert;
mod redact;
mod shed;
mod status;

use std::sync::Arc;

use tonic::{
    Request, Response, Status,
    metadata::MetadataMap,
    service::{Interceptor, interceptor::InterceptedService},
};
use tracing::info;

use crate::{
    audit,
    authority::Authority,
    clients::{AuthError, Caller, Clients, Role},
    input::MAX_MESSAGE,
    pb::{self, token_authority_server::TokenAuthority},
    store::Store,
};

pub use pb::token_authority_server::{SERVICE_NAME, TokenAuthorityServer};
pub use shed::Shed;

/// The `TokenAuthority` service over any store: the key check first, then
/// load shedding beyond `max_in_flight` calls, then the handlers.
pub fn server<S: Store>(
    authority: Arc<Authority<S>>,
    clients: Arc<Clients>,
    max_in_flight: usize,
) -> InterceptedService<Shed<TokenAuthorityServer<Service<S>>>, Authenticate> {
    let service =
        TokenAuthorityServer::new(Service { authority }).max_decoding_message_size(MAX_MESSAGE);
    InterceptedService::new(Shed::new(service, max_in_flight), Authenticate { clients })
}

/// Checks the bearer key from the headers, before the body is even decoded,
/// and hands the caller to the handler in the request's extensions.
#[derive(Clone)]
pub struct Authenticate {
    clients: Arc<Clients>,
}

impl Interceptor for Authenticate {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        match self.clients.authenticate(bearer(request.metadata())) {
            Ok(caller) => {
                request.extensions_mut().insert(caller);
                Ok(request)
            }
            Err(err) => {
                info!(target: audit::TARGET, event = "authenticate", outcome = "refused", reason = %err, "authentication failed");
                Err(err.into())
            }
        }
    }
}

/// The key of `authorization: Bearer <key>`, if the header has that shape.
fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

/// The caller the interceptor authenticated, if it has `role` (`None` =
/// any role will do).
fn caller<T>(request: &Request<T>, role: Option<Role>) -> Result<Arc<Caller>, Status> {
    let caller = request
        .extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .ok_or(AuthError::Unauthenticated)?;
    if let Some(role) = role.filter(|&role| !caller.has(role)) {
        info!(
            target: audit::TARGET,
            event = "authorize",
            outcome = "refused",
            client = %caller.id,
            role = role.name(),
            "permission denied"
        );
        return Err(AuthError::PermissionDenied(role).into());
    }
    Ok(caller)
}

/// The `TokenAuthority` service over any store.
pub struct Service<S> {
    authority: Arc<Authority<S>>,
}

#[tonic::async_trait]
impl<S: Store> TokenAuthority for Service<S> {
    async fn mint(
        &self,
        request: Request<pb::MintRequest>,
    ) -> Result<Response<pb::MintResponse>, Status> {
        let caller = caller(&request, Some(Role::Mint))?;
        let spec = convert::mint_spec(request.into_inner())?;
        let (token, grant) = self.authority.mint(&caller, spec).await?;
        Ok(Response::new(pb::MintResponse {
            token: token.into_plaintext(),
            grant: Some(grant.into()),
        }))
    }

    async fn validate(
        &self,
        request: Request<pb::ValidateRequest>,
    ) -> Result<Response<pb::ValidateResponse>, Status> {
        let caller = caller(&request, Some(Role::Validate))?;
        let check = convert::validate_check(request.into_inner())?;
        let outcome = self.authority.validate(&caller, check).await?;
        Ok(Response::new(outcome.into()))
    }

    async fn claim(
        &self,
        request: Request<pb::ClaimRequest>,
    ) -> Result<Response<pb::ClaimResponse>, Status> {
        let caller = caller(&request, Some(Role::Claim))?;
        let check = convert::claim_check(request.into_inner())?;
        let outcome = self.authority.claim(&caller, check).await?;
        Ok(Response::new(outcome.into()))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let caller = caller(&request, Some(Role::Revoke))?;
        let (target, reason) = convert::revoke_target(request.into_inner())?;
        let revoked = self.authority.revoke(&caller, target, reason).await?;
        Ok(Response::new(pb::RevokeResponse { revoked }))
    }

    async fn get_grant(
        &self,
        request: Request<pb::GetGrantRequest>,
    ) -> Result<Response<pb::GetGrantResponse>, Status> {
        let caller = caller(&request, None)?;
        let grant = self
            .authority
            .get(&caller, request.into_inner().grant_id)
            .await?;
        Ok(Response::new(pb::GetGrantResponse {
            grant: Some(grant.into()),
        }))
    }

    async fn list_grants(
        &self,
        request: Request<pb::ListGrantsRequest>,
    ) -> Result<Response<pb::ListGrantsResponse>, Status> {
        let caller = caller(&request, None)?;
        let request = request.into_inner();
        let page = self
            .authority
            .list(
                &caller,
                crate::input::optional_id("subject", request.subject)?,
                crate::input::optional_id("run_id", request.run_id)?,
                request.include_inactive,
                request.page_size,
                crate::input::optional_id("page_token", request.page_token)?,
            )
            .await?;
        Ok(Response::new(page.into()))
    }
}
