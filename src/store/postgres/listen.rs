//! The invalidation listener: the database announces every grant that
//! ended early (a trigger and `NOTIFY`), and each replica's cache forgets it.

use sqlx::postgres::PgListener;

use super::PgStore;
use crate::{store::Invalidation, token::TokenHash};

/// The channel the `grants_ended` trigger notifies (migration 0010), one
/// per schema: named from the schema that holds the `grants` table this
/// connection's statements find (the same search path).
const CHANNEL_OF_SCHEMA: &str = "SELECT 'tessera_grants_' || left(md5(n.nspname), 16) \
     FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE c.oid = 'grants'::regclass";

impl PgStore {
    /// Listens until the connection is lost (`Ok`) or cannot be set up. The
    /// connection comes from the pool, so it is on the member that accepts
    /// writes (see [`super::primary`]) and, after a failover, on the new one;
    /// notifications sent while it was away are lost, which the caller
    /// answers by forgetting everything cached ([`Invalidation::Lost`]).
    pub(super) async fn listen_once(
        &self,
        on: &impl Fn(Invalidation),
    ) -> std::result::Result<(), sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.sql.pool).await?;
        let channel: String = sqlx::query_scalar(CHANNEL_OF_SCHEMA)
            .fetch_one(&mut listener)
            .await?;
        listener.listen(&channel).await?;
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
