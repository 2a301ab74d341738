//! Who is subscribed: every registered subscriber, holding its place in the limits (an
//! admission [`Slot`], taken on its worker before it got here), and (with `--subscriptions`)
//! the announced subscriptions the API lists.
//!
//! The broadcaster records a subscriber with [`Membership::join`] once its shard has it;
//! [`Membership::leave`] forgets it and drops its slot, which gives its place back.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use crate::{
    fanout::active::{Announced, Scope},
    fanout::admission::Slot,
    fanout::registry::SubscriberId,
    fanout::shard::ShardId,
};

/// What is kept of a registered subscriber: its place in the limits, its selector count and,
/// with `--subscriptions`, what the subscriptions API lists.
#[derive(Debug)]
struct Member {
    /// Gives the subscriber's place back when the member goes.
    _slot: Slot,
    selectors: usize,
    announced: Option<Arc<Announced>>,
}

/// Every registered subscriber, by its shard and its id there.
#[derive(Debug)]
pub(super) struct Membership {
    members: HashMap<(ShardId, SubscriberId), Member>,
    /// With `--subscriptions`: the announced subscribers by collection (a 0.x topic or a 1.0
    /// matcher type and matcher, see `active::collection`), then by their id, so the list of
    /// one collection costs its own subscriptions, not a walk over every subscriber (empty, and
    /// never touched, without the flag).
    by_collection: HashMap<String, BTreeMap<String, Arc<Announced>>>,
    selectors: usize,
}

impl Membership {
    /// No subscriber yet.
    pub(super) fn new() -> Self {
        Self {
            members: HashMap::new(),
            by_collection: HashMap::new(),
            selectors: 0,
        }
    }

    /// Subscribers registered now.
    pub(super) fn len(&self) -> usize {
        self.members.len()
    }

    /// Topic selectors of every registered subscriber, summed.
    pub(super) fn selectors(&self) -> usize {
        self.selectors
    }

    /// Records a registered subscriber with its place (`slot`) and its `selectors` count; an
    /// `announced` one is listed by the subscriptions API until it leaves.
    pub(super) fn join(
        &mut self,
        shard: ShardId,
        id: SubscriberId,
        slot: Slot,
        selectors: usize,
        announced: Option<Arc<Announced>>,
    ) {
        if let Some(announced) = &announced {
            self.index(announced);
        }
        self.selectors += selectors;
        self.members.insert(
            (shard, id),
            Member {
                _slot: slot,
                selectors,
                announced,
            },
        );
    }

    /// Removes a subscriber and gives back what it announced (`Some(None)`: it announced
    /// nothing); `None` if it was not registered (it left before its registration, or twice).
    pub(super) fn leave(
        &mut self,
        shard: ShardId,
        id: SubscriberId,
    ) -> Option<Option<Arc<Announced>>> {
        let member = self.members.remove(&(shard, id))?;
        self.forget(&member);
        Some(member.announced)
    }

    /// Every announced subscriber registered now.
    pub(super) fn announced(&self) -> impl Iterator<Item = &Arc<Announced>> {
        self.members.values().filter_map(|m| m.announced.as_ref())
    }

    /// Forgets every subscriber (shutdown).
    pub(super) fn clear(&mut self) {
        self.members.clear();
        self.by_collection.clear();
        self.selectors = 0;
    }

    /// The active subscription documents: one collection's from the index (a lookup, then its
    /// own subscriptions, already by subscriber), one generation's by walking the members; by
    /// subscriber id (so in connection order), then selector.
    pub(super) fn listed(&self, scope: &Scope, subscriber: Option<&str>) -> Vec<serde_json::Value> {
        match scope {
            Scope::Collection(key) => {
                let ids = self.by_collection.get(key);
                let found: Vec<&Arc<Announced>> = match subscriber {
                    Some(subscriber) => ids
                        .and_then(|ids| ids.get(subscriber))
                        .into_iter()
                        .collect(),
                    None => ids.into_iter().flat_map(BTreeMap::values).collect(),
                };
                found
                    .into_iter()
                    .filter_map(|a| a.find(key).map(|s| a.object(s, true)))
                    .collect()
            }
            Scope::All(generation) => {
                let mut announced: Vec<&Announced> = self
                    .members
                    .values()
                    .filter_map(|m| m.announced.as_deref())
                    .filter(|a| subscriber.is_none_or(|s| s == a.id))
                    .collect();
                announced.sort_by(|a, b| a.id.cmp(&b.id));
                announced
                    .into_iter()
                    .flat_map(|a| {
                        a.subscriptions
                            .iter()
                            .filter(|s| s.form.generation() == *generation)
                            .map(|s| a.object(s, true))
                    })
                    .collect()
            }
        }
    }

    /// Takes a member that went out of the counts and the index.
    fn forget(&mut self, member: &Member) {
        self.selectors -= member.selectors;
        if let Some(announced) = &member.announced {
            self.unindex(announced);
        }
    }

    /// Adds `announced`'s subscriptions to the index by collection.
    fn index(&mut self, announced: &Arc<Announced>) {
        for subscription in &announced.subscriptions {
            self.by_collection
                .entry(subscription.collection().to_owned())
                .or_default()
                .insert(announced.id.clone(), Arc::clone(announced));
        }
    }

    /// Takes `announced`'s subscriptions out of the index by collection.
    fn unindex(&mut self, announced: &Announced) {
        for subscription in &announced.subscriptions {
            let key = subscription.collection();
            if let Some(ids) = self.by_collection.get_mut(key) {
                ids.remove(&announced.id);
                if ids.is_empty() {
                    self.by_collection.remove(key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        fanout::active::{collection, Announcement, Form, Generation},
        fanout::admission::Admission,
        protocol::topic::MatcherType,
    };

    fn slot() -> Slot {
        Admission::new(usize::MAX, usize::MAX)
            .reserve(None)
            .expect("no limit")
    }

    fn announced(id: &str, selectors: &[&str]) -> Arc<Announced> {
        Arc::new(Announced {
            id: id.to_owned(),
            subscriptions: selectors
                .iter()
                .map(|s| Announcement::new(Form::Legacy, (*s).to_owned(), None))
                .collect(),
        })
    }

    fn topic(selector: &str) -> Scope {
        Scope::Collection(collection(Form::Legacy, selector))
    }

    const LEGACY: Scope = Scope::All(Generation::Legacy);

    /// Each listed object as "subscriber topic".
    fn pairs(listed: &[serde_json::Value]) -> Vec<String> {
        listed
            .iter()
            .map(|o| format!("{} {}", o["subscriber"], o["topic"]).replace('"', ""))
            .collect()
    }

    #[test]
    fn every_subscriber_counts_leaving_twice_counts_once_and_its_place_is_given_back() {
        let admission = Admission::new(2, 10);
        let mut members = Membership::new();
        let place = || admission.reserve(None).expect("within the limit");
        members.join(ShardId(0), SubscriberId(0), place(), 3, None);
        members.join(ShardId(1), SubscriberId(0), place(), 2, None);
        assert_eq!((members.len(), members.selectors()), (2, 5));
        assert!(admission.reserve(None).is_err());
        assert!(members.leave(ShardId(1), SubscriberId(0)).is_some());
        assert!(members.leave(ShardId(1), SubscriberId(0)).is_none());
        assert!(members.leave(ShardId(2), SubscriberId(0)).is_none());
        assert_eq!((members.len(), members.selectors()), (1, 3));
        assert_eq!(admission.taken(), 1);
        members.clear();
        assert_eq!(admission.taken(), 0);
        assert_eq!((members.len(), members.selectors()), (0, 0));
    }

    #[test]
    fn subscriptions_are_listed_by_subscriber_then_selector_whole_or_by_topic() {
        let mut members = Membership::new();
        let (second, first) = (
            announced("urn:2", &["/b", "/a"]),
            announced("urn:1", &["/a"]),
        );
        members.join(
            ShardId(0),
            SubscriberId(0),
            slot(),
            2,
            Some(Arc::clone(&second)),
        );
        members.join(ShardId(0), SubscriberId(1), slot(), 1, None);
        members.join(ShardId(1), SubscriberId(0), slot(), 1, Some(first));
        assert_eq!(
            pairs(&members.listed(&LEGACY, None)),
            ["urn:1 /a", "urn:2 /b", "urn:2 /a"]
        );
        assert_eq!(
            pairs(&members.listed(&topic("/a"), None)),
            ["urn:1 /a", "urn:2 /a"]
        );
        assert_eq!(
            pairs(&members.listed(&topic("/a"), Some("urn:2"))),
            ["urn:2 /a"]
        );
        assert_eq!(
            pairs(&members.listed(&LEGACY, Some("urn:2"))),
            ["urn:2 /b", "urn:2 /a"]
        );
        assert!(members.listed(&topic("/c"), None).is_empty());
        assert_eq!(members.announced().count(), 2);

        let gone = members.leave(ShardId(0), SubscriberId(0));
        assert!(gone.flatten().is_some_and(|a| Arc::ptr_eq(&a, &second)));
        assert_eq!(pairs(&members.listed(&LEGACY, None)), ["urn:1 /a"]);
        assert!(members.listed(&topic("/b"), None).is_empty());
        assert!(
            !members.by_collection.contains_key("%2Fb"),
            "a selector nobody holds leaves the index"
        );
    }

    #[test]
    fn each_generation_is_listed_apart_and_a_matcher_by_its_collection() {
        let mut members = Membership::new();
        let mixed = Arc::new(Announced {
            id: "urn:1".into(),
            subscriptions: vec![
                Announcement::new(Form::Legacy, "/a".into(), None),
                Announcement::new(Form::Matcher(MatcherType::Exact), "/a".into(), None),
            ],
        });
        members.join(ShardId(0), SubscriberId(0), slot(), 2, Some(mixed));
        let current = members.listed(&Scope::All(Generation::Current), None);
        assert_eq!(current.len(), 1);
        assert_eq!(current[0]["match_type"], "exact");
        assert_eq!(members.listed(&LEGACY, None)[0]["topic"], "/a");
        let exact = Scope::Collection(collection(Form::Matcher(MatcherType::Exact), "/a"));
        assert_eq!(members.listed(&exact, Some("urn:1"))[0]["match"], "/a");
        assert!(members.listed(&exact, Some("urn:2")).is_empty());
        assert_eq!(
            members.listed(&topic("/a"), None)[0]["type"],
            "Subscription"
        );
    }
}
