//! The server's one shutdown path (as mini-redis's `shutdown.rs`): `serve`
//! makes one [`Shutdown`] and begins it once, when the caller's signal
//! comes; every background task and every listener holds a [`Stopping`]
//! and winds down when it fires. Nothing else tells anything to stop.

use tokio::sync::watch;

/// Begins the shutdown, once, for everything that holds a [`Stopping`].
pub struct Shutdown(watch::Sender<bool>);

/// Tells its holder that the server is stopping. Cheap to clone: one per
/// task and listener.
#[derive(Clone)]
pub struct Stopping(watch::Receiver<bool>);

impl Default for Shutdown {
    fn default() -> Self {
        Self(watch::channel(false).0)
    }
}

impl Shutdown {
    /// A handle for one more task or listener.
    pub fn subscribe(&self) -> Stopping {
        Stopping(self.0.subscribe())
    }

    /// Everything holding a [`Stopping`] sees it from now on.
    pub fn begin(&self) {
        self.0.send_replace(true);
    }
}

impl Stopping {
    /// Whether the shutdown has begun.
    pub fn is_stopping(&self) -> bool {
        *self.0.borrow()
    }

    /// [`Stopping::wait`], owning the handle (for a listener's future).
    pub async fn stopped(mut self) {
        self.wait().await;
    }

    /// Resolves once the shutdown has begun (at once if it has already).
    pub async fn wait(&mut self) {
        // An error means the `Shutdown` is gone, which only happens once
        // the server has stopped: stopping too.
        let _ = self.0.wait_for(|stopping| *stopping).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn every_holder_sees_the_one_begin() {
        let shutdown = Shutdown::default();
        let mut early = shutdown.subscribe();
        let waiting = tokio::spawn(async move { early.wait().await });
        assert!(!shutdown.subscribe().is_stopping());
        shutdown.begin();
        waiting.await.unwrap();
        // A holder made after the begin sees it too, and waits no more.
        let mut late = shutdown.subscribe();
        assert!(late.is_stopping());
        late.wait().await;
    }
}
