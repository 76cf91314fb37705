//! The invalidation listener: the database announces every grant that
//! ended early (a trigger and `NOTIFY`), and each replica's cache forgets it.

use sqlx::postgres::PgListener;

use super::PgStore;
use crate::{store::Invalidation, token::TokenHash};

/// The channel the `grants_ended` trigger notifies (migration 0002).
const CHANNEL: &str = "tessera_grants";

impl PgStore {
    /// Listens until the connection is lost (`Ok`) or cannot be set up.
    pub(super) async fn listen_once(
        &self,
        on: &impl Fn(Invalidation),
    ) -> std::result::Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        on(Invalidation::Resumed);
        while let Some(notification) = listener.try_recv().await? {
            let mut hash = [0u8; 32];
            match hex::decode_to_slice(notification.payload(), &mut hash) {
                Ok(()) => on(Invalidation::Grant(TokenHash(hash))),
                // Not ours to parse: forget everything rather than risk staleness.
                Err(_) => {
                    on(Invalidation::Lost);
                    on(Invalidation::Resumed);
                }
            }
        }
        Ok(())
    }
}
