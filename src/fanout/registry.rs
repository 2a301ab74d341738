//! One worker's registry of its own subscribers, held by that worker's shard
//! ([`crate::fanout::shard`]; the broadcaster keeps only their counts), indexed by selector so
//! a publish costs in proportion to the subscribers it may reach and to the distinct templates
//! in use, not to all subscribers.
//!
//! Every selector of a subscription files its subscriber under one index: a plain topic in
//! `by_topic`, a URI template in `by_template` (one entry per distinct template, shared by
//! every subscriber that uses it, so each template is evaluated once per update), a URL
//! pattern in `by_base` (by the hub URL it was resolved against, then one entry per distinct
//! pattern: each topic is resolved once per base and each pattern evaluated once per update),
//! `*` in `any`. Sets are `IndexSet`s: iteration as fast as a `Vec`, removal in O(1).

use std::{collections::HashMap, sync::Arc};

use indexmap::IndexSet;

use url::Url;

use crate::{
    fanout::subscription::Subscription,
    protocol::topic::{Template, TopicSelector},
    protocol::update::Update,
    protocol::url_pattern::{TopicParts, UrlPattern},
};

/// Identifies one registered subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SubscriberId(pub(crate) u64);

#[derive(Debug)]
struct Entry {
    subscription: Arc<Subscription>,
    /// The fan-out round that last visited this entry, so one reached through several
    /// selectors gets an update once.
    visited: u64,
}

/// What became of one delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Sent,
    /// The subscriber's queue is full: it is not keeping up.
    Full,
    /// The subscriber is gone.
    Closed,
}

/// What one fan-out did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FanOut {
    pub delivered: u64,
    /// Removed because their queue was full.
    pub slow: u64,
    /// Removed because their receiver was gone.
    pub left: u64,
}

/// The subscribers of one distinct template.
#[derive(Debug)]
struct TemplateSubscribers {
    template: Arc<Template>,
    ids: IndexSet<SubscriberId>,
}

/// The subscribers of one distinct URL pattern.
#[derive(Debug)]
struct PatternSubscribers {
    pattern: Arc<UrlPattern>,
    ids: IndexSet<SubscriberId>,
}

/// The URL patterns resolved against one hub URL.
#[derive(Debug)]
struct BaseGroup {
    base: Arc<Url>,
    patterns: HashMap<Box<str>, PatternSubscribers>,
}

/// Subscribers and their selector indexes.
#[derive(Debug, Default)]
pub struct Registry {
    /// Ids are the shard's own counter, nothing a client chooses: a fast hash is safe.
    entries: HashMap<SubscriberId, Entry, foldhash::fast::RandomState>,
    by_topic: HashMap<Box<str>, IndexSet<SubscriberId>>,
    by_template: HashMap<Box<str>, TemplateSubscribers>,
    by_base: HashMap<Box<str>, BaseGroup>,
    any: IndexSet<SubscriberId>,
    selectors: usize,
    round: u64,
    /// Reused between fan-outs so a publish allocates nothing here.
    candidates: Vec<SubscriberId>,
    failed: Vec<(SubscriberId, bool)>,
    parts: Vec<TopicParts>,
}

impl Registry {
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Topic selectors of all subscribers.
    #[must_use]
    pub fn selectors(&self) -> usize {
        self.selectors
    }

    /// Distinct templates in use.
    #[must_use]
    pub fn templates(&self) -> usize {
        self.by_template.len()
    }

    /// Distinct URL patterns in use (the same pattern under two hub URLs counts twice).
    #[must_use]
    pub fn url_patterns(&self) -> usize {
        self.by_base.values().map(|g| g.patterns.len()).sum()
    }

    pub fn insert(&mut self, id: SubscriberId, subscription: Arc<Subscription>) {
        for selector in subscription.selectors() {
            self.index(selector, id);
        }
        self.selectors += subscription.selectors().len();
        let entry = Entry {
            subscription,
            visited: 0,
        };
        self.entries.insert(id, entry);
    }

    fn index(&mut self, selector: &TopicSelector, id: SubscriberId) {
        if let Some(topic) = selector.exact() {
            self.by_topic.entry(topic.into()).or_default().insert(id);
        } else if let Some(template) = selector.template() {
            self.by_template
                .entry(template.source().into())
                .or_insert_with(|| TemplateSubscribers {
                    template: Arc::clone(template),
                    ids: IndexSet::new(),
                })
                .ids
                .insert(id);
        } else if let Some(pattern) = selector.url_pattern() {
            self.by_base
                .entry(pattern.base().as_str().into())
                .or_insert_with(|| BaseGroup {
                    base: Arc::clone(pattern.base()),
                    patterns: HashMap::new(),
                })
                .patterns
                .entry(pattern.source().into())
                .or_insert_with(|| PatternSubscribers {
                    pattern: Arc::clone(pattern),
                    ids: IndexSet::new(),
                })
                .ids
                .insert(id);
        } else {
            self.any.insert(id);
        }
    }

    fn unindex(&mut self, selector: &TopicSelector, id: SubscriberId) {
        if let Some(topic) = selector.exact() {
            if let Some(ids) = self.by_topic.get_mut(topic) {
                ids.swap_remove(&id);
                if ids.is_empty() {
                    self.by_topic.remove(topic);
                }
            }
        } else if let Some(template) = selector.template() {
            if let Some(entry) = self.by_template.get_mut(template.source()) {
                entry.ids.swap_remove(&id);
                if entry.ids.is_empty() {
                    self.by_template.remove(template.source());
                }
            }
        } else if let Some(pattern) = selector.url_pattern() {
            let base = pattern.base().as_str();
            if let Some(group) = self.by_base.get_mut(base) {
                if let Some(entry) = group.patterns.get_mut(pattern.source()) {
                    entry.ids.swap_remove(&id);
                    if entry.ids.is_empty() {
                        group.patterns.remove(pattern.source());
                    }
                }
                if group.patterns.is_empty() {
                    self.by_base.remove(base);
                }
            }
        } else {
            self.any.swap_remove(&id);
        }
    }

    /// Unregisters `id`; false if it was not registered. Costs O(its selectors).
    pub fn remove(&mut self, id: SubscriberId) -> bool {
        let Some(entry) = self.entries.remove(&id) else {
            return false;
        };
        for selector in entry.subscription.selectors() {
            self.unindex(selector, id);
        }
        self.selectors -= entry.subscription.selectors().len();
        true
    }

    /// Drops every subscriber (their streams end).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Hands `update` to `deliver` for every subscriber that wants it, once each.
    ///
    /// Policy: never wait. A full queue means the subscriber is not keeping up: it is removed,
    /// which ends its stream, so it reconnects and resumes from history. A closed queue means
    /// the client left: it is removed too.
    pub fn fan_out(
        &mut self,
        update: &Update,
        mut deliver: impl FnMut(SubscriberId) -> Delivery,
    ) -> FanOut {
        self.round += 1;
        let round = self.round;
        let Self {
            entries,
            by_topic,
            by_template,
            by_base,
            any,
            candidates,
            failed,
            parts,
            ..
        } = self;
        candidates.clear();
        for topic in update.topics() {
            if let Some(ids) = by_topic.get(topic.as_str()) {
                candidates.extend(ids);
            }
        }
        // Each distinct template once, however many subscribers share it.
        for subscribers in by_template.values() {
            let template = &subscribers.template;
            if update.topics().iter().any(|t| template.matches(t.as_str())) {
                candidates.extend(&subscribers.ids);
            }
        }
        // Each topic resolved once per hub URL, each distinct pattern evaluated once.
        for group in by_base.values() {
            parts.clear();
            parts.extend(
                update
                    .topics()
                    .iter()
                    .map(|t| TopicParts::parse(t.as_str(), &group.base)),
            );
            for subscribers in group.patterns.values() {
                if parts.iter().any(|p| subscribers.pattern.matches_parts(p)) {
                    candidates.extend(&subscribers.ids);
                }
            }
        }
        candidates.extend(any.iter());
        let mut out = FanOut::default();
        for id in candidates.iter() {
            let Some(entry) = entries.get_mut(id) else {
                continue;
            };
            // Found by a selector that matches: only the token's claim is left to check.
            if entry.visited == round || !entry.subscription.may_read(update) {
                continue;
            }
            entry.visited = round;
            match deliver(*id) {
                Delivery::Sent => out.delivered += 1,
                Delivery::Full => failed.push((*id, true)),
                Delivery::Closed => failed.push((*id, false)),
            }
        }
        let failed = std::mem::take(&mut self.failed);
        for &(id, slow) in &failed {
            if slow {
                out.slow += 1;
                log::info!("dropping a slow subscriber: its queue is full");
            } else {
                out.left += 1;
            }
            self.remove(id);
        }
        self.failed = failed;
        self.failed.clear();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        protocol::topic::{Topic, TopicSelector},
        protocol::update::EventId,
    };

    fn subscription(selectors: &[&str]) -> Arc<Subscription> {
        let selectors = selectors
            .iter()
            .map(|s| TopicSelector::parse(s).unwrap())
            .collect();
        Arc::new(Subscription::new(selectors, Vec::new(), None))
    }

    fn update(topics: &[&str]) -> Update {
        let topics = topics.iter().map(|t| Topic::parse(t).unwrap()).collect();
        Update::new(EventId::generate(), topics, "x", false, None, None)
    }

    /// Fans out and returns who got the update, in id order.
    fn reached(registry: &mut Registry, topics: &[&str]) -> Vec<u64> {
        let mut got = Vec::new();
        registry.fan_out(&update(topics), |id| {
            got.push(id.0);
            Delivery::Sent
        });
        got.sort_unstable();
        got
    }

    #[test]
    fn each_subscriber_gets_an_update_once_whatever_matches_it() {
        let mut registry = Registry::default();
        registry.insert(SubscriberId(1), subscription(&["/a", "/b", "/a"]));
        registry.insert(SubscriberId(2), subscription(&["/{x}", "/b"]));
        registry.insert(SubscriberId(3), subscription(&["/c"]));
        registry.insert(SubscriberId(4), subscription(&["*"]));
        assert_eq!(reached(&mut registry, &["/a", "/b"]), [1, 2, 4]);
    }

    #[test]
    fn removal_cleans_the_index_and_counts() {
        let mut registry = Registry::default();
        registry.insert(SubscriberId(1), subscription(&["/a", "/b"]));
        assert_eq!((registry.len(), registry.selectors()), (1, 2));
        assert!(registry.remove(SubscriberId(1)));
        assert!(!registry.remove(SubscriberId(1)));
        assert_eq!((registry.len(), registry.selectors()), (0, 0));
        assert!(registry.by_topic.is_empty());
    }

    #[test]
    fn subscribers_of_one_template_share_one_evaluation() {
        let templates = crate::protocol::topic::Templates::new(1 << 20);
        let mut registry = Registry::default();
        for i in 0..100 {
            let mut budget = crate::protocol::topic::Budget::default();
            let selector = templates.selector("/books/{id}", &mut budget).unwrap();
            let subscription = Arc::new(Subscription::new(vec![selector], Vec::new(), None));
            registry.insert(SubscriberId(i), subscription);
        }
        assert_eq!(registry.templates(), 1);
        assert_eq!(reached(&mut registry, &["/books/1"]).len(), 100);
        assert!(reached(&mut registry, &["/authors/1"]).is_empty());
        for i in 0..100 {
            assert!(registry.remove(SubscriberId(i)));
        }
        assert_eq!(registry.templates(), 0);
        drop(registry);
        assert_eq!(
            templates.bytes(),
            0,
            "the last user frees the compiled template"
        );
    }

    #[test]
    fn subscribers_of_one_url_pattern_share_one_evaluation() {
        use crate::protocol::topic::{Budget, MatcherType, Templates};
        let templates = Templates::new(64 << 20);
        let base = Arc::new(Url::parse("http://hub.test/.well-known/mercure").unwrap());
        let mut registry = Registry::default();
        for i in 0..10 {
            let selectors = ["/books/:id", "/books/1"]
                .iter()
                .zip([MatcherType::UrlPattern, MatcherType::Exact])
                .map(|(s, kind)| {
                    templates
                        .matcher(kind, s, &base, &mut Budget::default())
                        .unwrap()
                })
                .collect();
            let subscription = Arc::new(Subscription::new(selectors, Vec::new(), None));
            registry.insert(SubscriberId(i), subscription);
        }
        assert_eq!(registry.url_patterns(), 1);
        assert_eq!(
            reached(&mut registry, &["http://hub.test/books/2"]).len(),
            10
        );
        assert_eq!(reached(&mut registry, &["/books/1"]).len(), 10);
        assert!(reached(&mut registry, &["/authors/1"]).is_empty());
        for i in 0..10 {
            assert!(registry.remove(SubscriberId(i)));
        }
        assert_eq!(registry.url_patterns(), 0);
        assert!(registry.by_base.is_empty());
    }

    #[test]
    fn full_and_closed_queues_are_removed() {
        let mut registry = Registry::default();
        registry.insert(SubscriberId(1), subscription(&["/a"]));
        registry.insert(SubscriberId(2), subscription(&["*"]));
        let out = registry.fan_out(&update(&["/a"]), |id| {
            if id.0 == 1 {
                Delivery::Full
            } else {
                Delivery::Closed
            }
        });
        assert_eq!((out.delivered, out.slow, out.left), (0, 1, 1));
        assert!(registry.is_empty());
    }
}
