//! The fan-out: the broadcaster that orders everything, the per-worker shards that deliver,
//! the subscriptions they match, and the active-subscriptions events.

pub mod active;
pub mod admission;
pub mod broadcaster;
pub mod direct;
pub mod presence;
pub mod registry;
pub mod shard;
pub mod subscription;
pub mod ticket;
