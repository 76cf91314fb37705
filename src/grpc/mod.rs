//! The gRPC adapter: authenticate, shape the input, call the authority, map
//! the result. No rule lives here.

pub(crate) mod codec;
pub(crate) mod convert;
mod credentials;
mod gate;
mod redact;
mod status;

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::{
    authority::Authority,
    clients::{AuthError, Caller, Unauthenticated},
    door::Door,
    input::MAX_MESSAGE,
    pb::{self, token_authority_server::TokenAuthority},
    store::Store,
};

pub use credentials::credentials_server;
pub use gate::{Gate, Served, bearer, logged, route};
pub use pb::token_authority_server::{SERVICE_NAME, TokenAuthorityServer};

/// The `TokenAuthority` service over any store, behind its gate (key, role,
/// body deadline, in-flight limits).
pub fn server<S: Store>(
    authority: Arc<Authority<S>>,
    door: Arc<Door>,
) -> Gate<TokenAuthorityServer<Service<S>>> {
    let service =
        TokenAuthorityServer::new(Service { authority }).max_decoding_message_size(MAX_MESSAGE);
    Gate::new(service, door)
}

/// The caller the gate admitted (with the method's role already checked).
fn caller<T>(request: &Request<T>) -> Result<Arc<Caller>, Status> {
    Ok(request
        .extensions()
        .get::<Arc<Caller>>()
        .cloned()
        .ok_or(AuthError::Unauthenticated(Unauthenticated::NoKey))?)
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
        let caller = caller(&request)?;
        let spec = convert::mint_spec(request.into_inner())?;
        let (token, grant, revision) = self.authority.mint(&caller, spec).await?;
        Ok(Response::new(pb::MintResponse {
            token: token.into_plaintext(),
            grant: Some(grant.into()),
            revision: convert::revision(revision),
        }))
    }

    async fn validate(
        &self,
        request: Request<pb::ValidateRequest>,
    ) -> Result<Response<pb::ValidateResponse>, Status> {
        let caller = caller(&request)?;
        let check = convert::validate_check(request.into_inner())?;
        let outcome = self.authority.validate(&caller, check).await?;
        Ok(Response::new(outcome.into()))
    }

    async fn claim(
        &self,
        request: Request<pb::ClaimRequest>,
    ) -> Result<Response<pb::ClaimResponse>, Status> {
        let caller = caller(&request)?;
        let check = convert::claim_check(request.into_inner())?;
        let outcome = self.authority.claim(&caller, check).await?;
        Ok(Response::new(outcome.into()))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let caller = caller(&request)?;
        let (target, reason) = convert::revoke_target(request.into_inner())?;
        let (revoked, revision) = self.authority.revoke(&caller, target, reason).await?;
        Ok(Response::new(pb::RevokeResponse {
            revoked,
            revision: convert::revision(revision),
        }))
    }

    async fn rotate(
        &self,
        request: Request<pb::RotateRequest>,
    ) -> Result<Response<pb::RotateResponse>, Status> {
        let caller = caller(&request)?;
        let (target, overlap, ttl) = convert::rotate_request(request.into_inner())?;
        let (token, grant, previous) = self.authority.rotate(&caller, target, overlap, ttl).await?;
        Ok(Response::new(pb::RotateResponse {
            token: token.into_plaintext(),
            grant: Some(grant.into()),
            previous: Some(previous.into()),
        }))
    }

    async fn delegate(
        &self,
        request: Request<pb::DelegateRequest>,
    ) -> Result<Response<pb::DelegateResponse>, Status> {
        let caller = caller(&request)?;
        let spec = convert::delegate_spec(request.into_inner())?;
        let (token, grant) = self.authority.delegate(&caller, spec).await?;
        Ok(Response::new(pb::DelegateResponse {
            token: token.into_plaintext(),
            grant: Some(grant.into()),
        }))
    }

    async fn get_grant(
        &self,
        request: Request<pb::GetGrantRequest>,
    ) -> Result<Response<pb::GetGrantResponse>, Status> {
        let caller = caller(&request)?;
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
        let caller = caller(&request)?;
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
