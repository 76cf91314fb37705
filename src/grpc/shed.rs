//! Load shedding: a fixed number of calls run at once, and the next one is
//! refused at once with RESOURCE_EXHAUSTED instead of queueing. Queued calls
//! would only grow latency and memory until clients time out; a quick
//! refusal lets them back off or try another replica.

use std::{
    sync::Arc,
    task::{Context, Poll},
};

use tokio::sync::Semaphore;
use tonic::{
    Status,
    body::Body,
    codegen::{BoxFuture, Service, http},
    server::NamedService,
};
use tracing::debug;

/// Wraps one gRPC service; clones share the permits.
#[derive(Clone)]
pub struct Shed<S> {
    inner: S,
    permits: Arc<Semaphore>,
}

impl<S> Shed<S> {
    pub fn new(inner: S, max_in_flight: usize) -> Self {
        Self {
            inner,
            permits: Arc::new(Semaphore::new(max_in_flight)),
        }
    }
}

impl<S: NamedService> NamedService for Shed<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B> Service<http::Request<B>> for Shed<S>
where
    S: Service<http::Request<B>, Response = http::Response<Body>> + Send,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        match self.permits.clone().try_acquire_owned() {
            Ok(permit) => {
                let call = self.inner.call(request);
                Box::pin(async move {
                    let response = call.await;
                    drop(permit);
                    response
                })
            }
            Err(_) => {
                debug!("overloaded: call refused");
                let status = Status::resource_exhausted("server overloaded; retry with backoff");
                Box::pin(async move { Ok(status.into_http()) })
            }
        }
    }
}
