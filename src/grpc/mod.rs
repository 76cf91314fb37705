//! The gRPC adapter: authenticate, shape the input, call the authority, map
//! the result. No rule lives here.

mod convert;
mod redact;
mod status;

use std::sync::Arc;

use tonic::{Request, Response, Status, metadata::MetadataMap};

use crate::{
    authority::Authority,
    clients::{Caller, Clients, Role},
    pb::{self, token_authority_server::TokenAuthority},
    store::Store,
};

pub use pb::token_authority_server::{SERVICE_NAME, TokenAuthorityServer};

/// The `TokenAuthority` service over any store.
pub struct Service<S> {
    authority: Arc<Authority<S>>,
    clients: Arc<Clients>,
}

impl<S: Store> Service<S> {
    pub fn new(authority: Arc<Authority<S>>, clients: Arc<Clients>) -> Self {
        Self { authority, clients }
    }

    fn authorize(&self, metadata: &MetadataMap, role: Role) -> Result<Arc<Caller>, Status> {
        Ok(self.clients.authorize(bearer(metadata), role)?)
    }

    fn authenticate(&self, metadata: &MetadataMap) -> Result<Arc<Caller>, Status> {
        Ok(self.clients.authenticate(bearer(metadata))?)
    }
}

/// The key of `authorization: Bearer <key>`, if the header has that shape.
fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, key) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
}

#[tonic::async_trait]
impl<S: Store> TokenAuthority for Service<S> {
    async fn mint(
        &self,
        request: Request<pb::MintRequest>,
    ) -> Result<Response<pb::MintResponse>, Status> {
        let caller = self.authorize(request.metadata(), Role::Mint)?;
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
        let caller = self.authorize(request.metadata(), Role::Validate)?;
        let check = convert::validate_check(request.into_inner())?;
        let outcome = self.authority.validate(&caller, check).await?;
        Ok(Response::new(outcome.into()))
    }

    async fn claim(
        &self,
        request: Request<pb::ClaimRequest>,
    ) -> Result<Response<pb::ClaimResponse>, Status> {
        let caller = self.authorize(request.metadata(), Role::Claim)?;
        let check = convert::claim_check(request.into_inner())?;
        let outcome = self.authority.claim(&caller, check).await?;
        Ok(Response::new(outcome.into()))
    }

    async fn revoke(
        &self,
        request: Request<pb::RevokeRequest>,
    ) -> Result<Response<pb::RevokeResponse>, Status> {
        let caller = self.authorize(request.metadata(), Role::Revoke)?;
        let (target, reason) = convert::revoke_target(request.into_inner())?;
        let revoked = self.authority.revoke(&caller, target, reason).await?;
        Ok(Response::new(pb::RevokeResponse { revoked }))
    }

    async fn get_grant(
        &self,
        request: Request<pb::GetGrantRequest>,
    ) -> Result<Response<pb::GetGrantResponse>, Status> {
        let caller = self.authenticate(request.metadata())?;
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
        let caller = self.authenticate(request.metadata())?;
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
