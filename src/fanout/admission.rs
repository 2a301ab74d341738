//! Admission: the subscriber limits (`--max-subscribers`, `--max-subscribers-per-ip`) and the
//! hub's closing, checked on the subscriber's own worker.
//!
//! A subscriber takes its place with [`Admission::reserve`] before anything costly is done for
//! it (no selector compiled, no message to the broadcaster), so a refusal costs a lock and a
//! counter, and a subscriber with no cursor needs no round trip to the broadcaster at all
//! ([`crate::fanout::shard::LocalQueue::register_here`]). The place is a [`Slot`]: it counts
//! for as long as the slot lives (held by the broadcaster's membership once the subscriber is
//! registered) and is given back when it drops, so the limits stay exact whichever path, error
//! or shutdown ends it.

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, PoisonError,
    },
};

/// Why a subscriber was not admitted.
#[derive(Debug, Clone, Copy, thiserror::Error, PartialEq, Eq)]
pub enum Refused {
    #[error("too many subscribers")]
    TooMany,
    #[error("too many subscribers from this address")]
    TooManyFromAddress,
    #[error("the hub is shutting down")]
    ShuttingDown,
}

/// The counts every worker shares; cloned handles share one state.
#[derive(Debug, Clone)]
pub struct Admission(Arc<Shared>);

#[derive(Debug)]
struct Shared {
    counts: Mutex<Counts>,
    /// Set by the broadcaster before it ends every stream: no one is admitted after.
    closing: AtomicBool,
    max_subscribers: usize,
    max_per_ip: usize,
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    /// Addresses with at least one place taken (no entry at zero): at most `total` entries.
    per_ip: HashMap<IpAddr, usize>,
}

impl Admission {
    /// At most `max_subscribers` at once, `max_per_ip` from one address.
    #[must_use]
    pub fn new(max_subscribers: usize, max_per_ip: usize) -> Self {
        Self(Arc::new(Shared {
            counts: Mutex::new(Counts::default()),
            closing: AtomicBool::new(false),
            max_subscribers,
            max_per_ip,
        }))
    }

    /// Takes a place for one more subscriber, from `ip` if known (no address, no per-address
    /// limit), or says which limit refuses it.
    pub fn reserve(&self, ip: Option<IpAddr>) -> Result<Slot, Refused> {
        if self.is_closing() {
            return Err(Refused::ShuttingDown);
        }
        let mut counts = self.lock();
        if counts.total >= self.0.max_subscribers {
            return Err(Refused::TooMany);
        }
        if let Some(ip) = ip {
            let from_ip = counts.per_ip.entry(ip).or_default();
            if *from_ip >= self.0.max_per_ip {
                if *from_ip == 0 {
                    counts.per_ip.remove(&ip);
                }
                return Err(Refused::TooManyFromAddress);
            }
            *from_ip += 1;
        }
        counts.total += 1;
        Ok(Slot {
            admission: self.clone(),
            ip,
        })
    }

    /// Whether the hub is closing (nobody is admitted any more).
    #[must_use]
    pub fn is_closing(&self) -> bool {
        self.0.closing.load(Ordering::SeqCst)
    }

    /// Refuses everyone from now on. The broadcaster calls it before it tells the shards to
    /// end their streams, so a worker that registers a subscriber after its shard ended them
    /// sees it (the shard's message came after this store).
    pub fn close(&self) {
        self.0.closing.store(true, Ordering::SeqCst);
    }

    /// Places taken now.
    #[must_use]
    pub fn taken(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.0.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn release(&self, ip: Option<IpAddr>) {
        let mut counts = self.lock();
        counts.total -= 1;
        if let Some(ip) = ip {
            if let Some(count) = counts.per_ip.get_mut(&ip) {
                *count -= 1;
                if *count == 0 {
                    counts.per_ip.remove(&ip);
                }
            }
        }
    }
}

/// One admitted subscriber's place in the counts, given back when dropped.
#[derive(Debug)]
pub struct Slot {
    admission: Admission,
    ip: Option<IpAddr>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.admission.release(self.ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_per_address_limit_refuses_one_more_and_a_dropped_slot_gives_its_place_back() {
        let admission = Admission::new(10, 2);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let first = admission.reserve(Some(ip)).unwrap();
        let _second = admission.reserve(Some(ip)).unwrap();
        assert_eq!(
            admission.reserve(Some(ip)).unwrap_err(),
            Refused::TooManyFromAddress
        );
        let _third = admission.reserve(Some(other)).unwrap();
        let _anonymous = admission
            .reserve(None)
            .expect("no address, no per-address limit");
        drop(first);
        let _again = admission.reserve(Some(ip)).expect("a place was given back");
        assert_eq!(admission.taken(), 4);
    }

    #[test]
    fn the_total_limit_counts_everyone_and_closing_refuses_all() {
        let admission = Admission::new(2, 10);
        let a = admission.reserve(None).unwrap();
        let _b = admission
            .reserve(Some("192.0.2.1".parse().unwrap()))
            .unwrap();
        assert_eq!(admission.reserve(None).unwrap_err(), Refused::TooMany);
        drop(a);
        assert_eq!(admission.taken(), 1);
        admission.close();
        assert_eq!(admission.reserve(None).unwrap_err(), Refused::ShuttingDown);
        assert!(admission.is_closing());
    }

    #[test]
    fn an_address_with_nobody_left_is_forgotten() {
        let admission = Admission::new(10, 1);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        drop(admission.reserve(Some(ip)).unwrap());
        let zero = Admission::new(10, 0);
        assert!(zero.reserve(Some(ip)).is_err());
        assert!(admission.lock().per_ip.is_empty());
        assert!(zero.lock().per_ip.is_empty());
    }
}
