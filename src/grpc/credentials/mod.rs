//! The `Credentials` service: the caller the gate admitted, the fields
//! shaped into domain input, the domain's answer back onto the wire.

use std::{sync::Arc, time::Duration};

use tonic::{Request, Response, Status};

use super::{Gate, caller, convert::timestamp};
use crate::{
    clients::Caller,
    credentials::{self, Credentials, PutSpec, Refresh, Secret, input},
    door::Door,
    input::MAX_MESSAGE,
    pb::{self, credentials_server::CredentialsServer},
    store::CredentialStore,
};

/// The `Credentials` service over any store, behind the same gate as
/// `TokenAuthority` (every method needs the `credentials` role).
pub fn credentials_server<S: CredentialStore>(
    credentials: Arc<Credentials<S>>,
    door: Arc<Door>,
) -> Gate<CredentialsServer<Service<S>>> {
    let service =
        CredentialsServer::new(Service { credentials }).max_decoding_message_size(MAX_MESSAGE);
    Gate::new(service, door)
}

pub struct Service<S> {
    credentials: Arc<Credentials<S>>,
}

impl<S: CredentialStore> Service<S> {
    /// The admitted caller, once the service is known to be on (a server
    /// without a seal key refuses every call before reading any field).
    fn admit<T>(&self, request: &Request<T>) -> Result<Arc<Caller>, Status> {
        let caller = caller(request)?;
        self.credentials.enabled()?;
        Ok(caller)
    }
}

fn duration(field: &str, d: Option<prost_types::Duration>) -> Result<Option<Duration>, Status> {
    Ok(d.map(|d| input::duration(field, d.seconds, d.nanos))
        .transpose()?)
}

fn expires_at(t: Option<prost_types::Timestamp>) -> Result<Option<i64>, Status> {
    Ok(
        t.map(|t| input::timestamp("expires_at", t.seconds, t.nanos))
            .transpose()?,
    )
}

#[tonic::async_trait]
impl<S: CredentialStore> pb::credentials_server::Credentials for Service<S> {
    async fn put(
        &self,
        request: Request<pb::PutRequest>,
    ) -> Result<Response<pb::PutResponse>, Status> {
        let caller = self.admit(&request)?;
        let m = request.into_inner();
        let spec = PutSpec {
            secret: Secret::parse("secret", m.secret)?,
            expires_at: expires_at(m.expires_at)?,
            bearer_id: m.bearer_id,
            name: m.name,
            if_version: m.if_version,
        };
        let version = self.credentials.put(&caller, spec).await?;
        Ok(Response::new(pb::PutResponse { version }))
    }

    async fn get(
        &self,
        request: Request<pb::GetRequest>,
    ) -> Result<Response<pb::GetResponse>, Status> {
        let caller = self.admit(&request)?;
        let m = request.into_inner();
        let window = duration("refresh_window", m.refresh_window)?;
        let current = self
            .credentials
            .get(&caller, m.bearer_id, m.name, window)
            .await?;
        Ok(Response::new(pb::GetResponse {
            secret: current.secret.into_parts().into_iter().collect(),
            version: current.version,
            expires_at: current.expires_at.map(timestamp),
            refresh_due: current.refresh_due,
        }))
    }

    async fn begin_refresh(
        &self,
        request: Request<pb::BeginRefreshRequest>,
    ) -> Result<Response<pb::BeginRefreshResponse>, Status> {
        let caller = self.admit(&request)?;
        let m = request.into_inner();
        let ttl = duration("lease_ttl", m.lease_ttl)?;
        let refresh = self
            .credentials
            .begin_refresh(&caller, m.bearer_id, m.name, ttl)
            .await?;
        Ok(Response::new(refresh.into()))
    }

    async fn complete_refresh(
        &self,
        request: Request<pb::CompleteRefreshRequest>,
    ) -> Result<Response<pb::CompleteRefreshResponse>, Status> {
        let caller = self.admit(&request)?;
        let m = request.into_inner();
        let secret = Secret::parse("secret", m.secret)?;
        let expires_at = expires_at(m.expires_at)?;
        let version = self
            .credentials
            .complete_refresh(&caller, m.lease_id, secret, expires_at)
            .await?;
        Ok(Response::new(pb::CompleteRefreshResponse { version }))
    }

    async fn abort_refresh(
        &self,
        request: Request<pb::AbortRefreshRequest>,
    ) -> Result<Response<pb::AbortRefreshResponse>, Status> {
        let caller = self.admit(&request)?;
        let lease_id = request.into_inner().lease_id;
        self.credentials.abort_refresh(&caller, lease_id).await?;
        Ok(Response::new(pb::AbortRefreshResponse {}))
    }

    async fn delete(
        &self,
        request: Request<pb::DeleteRequest>,
    ) -> Result<Response<pb::DeleteResponse>, Status> {
        let caller = self.admit(&request)?;
        let m = request.into_inner();
        let deleted = self
            .credentials
            .delete(&caller, m.bearer_id, m.name)
            .await?;
        Ok(Response::new(pb::DeleteResponse { deleted }))
    }

    async fn list(
        &self,
        request: Request<pb::ListRequest>,
    ) -> Result<Response<pb::ListResponse>, Status> {
        let caller = self.admit(&request)?;
        let m = request.into_inner();
        let page = self
            .credentials
            .list(&caller, m.bearer_id, m.page_size, m.page_token)
            .await?;
        Ok(Response::new(page.into()))
    }
}

impl From<Refresh> for pb::BeginRefreshResponse {
    fn from(refresh: Refresh) -> Self {
        match refresh {
            Refresh::Granted {
                lease_id,
                version,
                fence,
                expires_at,
            } => Self {
                granted: true,
                lease_id: lease_id.into_string(),
                version,
                holder_expires_at: Some(timestamp(expires_at)),
                fence,
            },
            Refresh::Held {
                version,
                holder_expires_at,
            } => Self {
                granted: false,
                version,
                holder_expires_at: Some(timestamp(holder_expires_at)),
                ..Default::default()
            },
        }
    }
}

impl From<credentials::Page> for pb::ListResponse {
    fn from(page: credentials::Page) -> Self {
        Self {
            credentials: page
                .credentials
                .into_iter()
                .map(|c| pb::CredentialInfo {
                    name: c.name,
                    version: c.version,
                    expires_at: c.expires_at.map(timestamp),
                })
                .collect(),
            next_page_token: page.next_page_token.unwrap_or_default(),
        }
    }
}
