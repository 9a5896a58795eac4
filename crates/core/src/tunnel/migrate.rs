//! Live stream migration on a tunnel (Braid proposal 001 §4): the
//! [`StreamMap`](crate::stream::StreamMap)'s migration calls, each followed
//! by moving what it made sendable. The rules are the stream layer's
//! ([`crate::stream::migrate`]); the driver carries the ticket and the
//! handover between the two tunnels, and nothing else.

use std::time::Instant;

use crate::ids::StreamId;
use crate::stream::{Handover, MigrateTicket, StreamError};

use super::client::ClientTunnel;
use super::error::TunnelError;

impl ClientTunnel {
    /// True if stream `id` may be migrated now (the exit gave it a token).
    pub fn migratable(&self, id: StreamId) -> bool {
        self.streams.as_ref().is_some_and(|s| s.migratable(id))
    }

    /// True if stream `id` is the old or the new id of a migration.
    pub fn migrating(&self, id: StreamId) -> bool {
        self.streams.as_ref().is_some_and(|s| s.migrating(id))
    }

    /// True while one of its streams is being migrated (see
    /// [`StreamMap::migrations_pending`](crate::stream::StreamMap::migrations_pending)).
    pub fn migrations_pending(&self) -> bool {
        self.streams
            .as_ref()
            .is_some_and(crate::stream::StreamMap::migrations_pending)
    }

    /// The tunnel's streams, for listings.
    pub fn stream_ids(&self) -> Vec<StreamId> {
        self.streams
            .as_ref()
            .map(|s| s.ids().collect())
            .unwrap_or_default()
    }

    /// Bytes stream `id` sent and received on this tunnel.
    pub fn stream_bytes(&self, id: StreamId) -> Option<(u64, u64)> {
        self.streams.as_ref()?.byte_counts(id)
    }

    /// Begin moving stream `id` to another tunnel to the same exit
    /// ([`StreamMap::migrate_out`](crate::stream::StreamMap::migrate_out)).
    pub fn migrate_out(
        &mut self,
        id: StreamId,
        now: Instant,
    ) -> Result<MigrateTicket, StreamError> {
        let t = self.streams_mut(id)?.migrate_out(id)?;
        self.settle(now);
        Ok(t)
    }

    /// Open the new id of a migration on this tunnel
    /// ([`StreamMap::migrate_in`](crate::stream::StreamMap::migrate_in)).
    pub fn migrate_in(
        &mut self,
        ticket: &MigrateTicket,
        now: Instant,
    ) -> Result<StreamId, TunnelError> {
        let id = self
            .open_streams_mut()?
            .migrate_in(ticket, now)
            .map_err(TunnelError::Stream)?;
        self.settle(now);
        Ok(id)
    }

    /// The migration's new id failed
    /// ([`StreamMap::migrate_target_failed`](crate::stream::StreamMap::migrate_target_failed)).
    pub fn migrate_target_failed(
        &mut self,
        id: StreamId,
        refused: bool,
        now: Instant,
    ) -> Result<(), StreamError> {
        self.streams_mut(id)?
            .migrate_target_failed(id, refused, now)?;
        if refused {
            self.counters.migrations_refused += 1;
        } else {
            self.counters.migrations_aborted += 1;
        }
        self.settle(now);
        Ok(())
    }

    /// Take what is left of old stream `id`
    /// ([`StreamMap::migrate_finish`](crate::stream::StreamMap::migrate_finish)).
    pub fn migrate_finish(&mut self, id: StreamId, now: Instant) -> Result<Handover, StreamError> {
        let h = self.streams_mut(id)?.migrate_finish(id, now);
        match &h {
            Ok(_) => self.counters.migrations_done += 1,
            Err(_) => self.counters.migrations_aborted += 1,
        }
        let h = h?;
        self.settle(now);
        Ok(h)
    }

    /// New stream `id` takes the stream over
    /// ([`StreamMap::migrate_join`](crate::stream::StreamMap::migrate_join)).
    pub fn migrate_join(
        &mut self,
        id: StreamId,
        handover: Handover,
        now: Instant,
    ) -> Result<(), StreamError> {
        let r = self.streams_mut(id)?.migrate_join(id, handover, now);
        self.settle(now);
        r
    }
}
