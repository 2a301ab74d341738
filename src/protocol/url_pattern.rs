//! `match_urlpattern` matchers: WHATWG URL Patterns, resolved against the hub's URL.
//!
//! A pattern is parsed by the `urlpattern` crate into its eight components, each compiled to a
//! [`regex_automata`] program ([`Linear`]): matching is linear in the topic whatever the pattern
//! (no backtracking, no look-around; a pattern that needs them is refused), and each program is
//! bounded in size when it is built. `ignoreCase` is never set.
//!
//! A topic is resolved against the same base as the pattern, once per update for all the
//! patterns sharing that base ([`TopicParts`]); a topic that is not a URL reference matches no
//! pattern. Patterns are interned ([`Patterns`]) like URI templates: every subscriber of one
//! (base, pattern) pair shares one compiled pattern, evaluated once per update.

use std::{
    cell::Cell,
    collections::HashMap,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, MutexGuard, PoisonError, Weak,
    },
};

use regex_automata::{meta, nfa::thompson::WhichCaptures};
use url::Url;
use urlpattern::{
    component::Component, matcher::InnerMatcher, regexp::RegExp, RegexSyntax, UrlPatternOptions,
};

/// Largest compiled program of one component, in bytes.
const MAX_COMPONENT_NFA: usize = 64 << 10;

/// Largest lazy-DFA cache of one component program.
const HYBRID_CACHE_CAPACITY: usize = 8 << 10;

/// How every selector program of the hub is built: linear-time engines only (the PikeVM and
/// the lazy DFA, no backtracker), no capture groups kept, the compiled program bounded by
/// `nfa_limit` bytes and each matching cache by `cache` bytes.
pub(crate) fn linear(nfa_limit: usize, cache: usize) -> meta::Config {
    meta::Config::new()
        .which_captures(WhichCaptures::None)
        .nfa_size_limit(Some(nfa_limit))
        .onepass(false)
        .backtrack(false)
        .dfa(false)
        .hybrid_cache_capacity(cache)
}

thread_local! {
    /// While [`UrlPattern::compile_within`] runs on this thread: the bytes the pattern's
    /// programs may still take (what is left of the request's budget), and whether a program
    /// was refused for want of them. The crate builds each component's program through
    /// [`Linear::parse`], which has no other way to hear of the budget; so a request past its
    /// budget stops at the first program over it instead of compiling all eight components.
    static LEFT: Cell<Option<usize>> = const { Cell::new(None) };
    static SPENT: Cell<bool> = const { Cell::new(false) };
}

/// A component's regular expression, on a linear-time engine and built lean: only
/// `is_match` is ever asked, so no captures are kept.
#[derive(Debug)]
pub struct Linear {
    regex: meta::Regex,
    source: Box<str>,
}

impl RegExp for Linear {
    fn syntax() -> RegexSyntax {
        RegexSyntax::Rust
    }

    fn parse(pattern: &str, _flags: &str, _force_eval: bool) -> Result<Self, ()> {
        // The flags are always "u" (Unicode, case-sensitive): `ignore_case` is never set.
        let left = LEFT.get();
        let limit = left.map_or(MAX_COMPONENT_NFA, |left| left.min(MAX_COMPONENT_NFA));
        let built = meta::Builder::new()
            .configure(linear(limit, HYBRID_CACHE_CAPACITY))
            .build(pattern);
        let Ok(regex) = built else {
            if limit < MAX_COMPONENT_NFA {
                SPENT.set(true);
            }
            return Err(());
        };
        let linear = Self {
            regex,
            source: pattern.into(),
        };
        if let Some(left) = left {
            // Its program at least (a whole component's keeps no match cache): what is spent
            // for sure, so a pattern within its budget is never stopped.
            let after = left.checked_sub(linear.program_cost());
            SPENT.set(SPENT.get() || after.is_none());
            LEFT.set(Some(after.unwrap_or(0)));
            if after.is_none() {
                return Err(());
            }
        }
        Ok(linear)
    }

    fn matches<'a>(&self, text: &'a str) -> Option<Vec<Option<&'a str>>> {
        // An empty `Vec` does not allocate; the hub never reads the groups.
        self.regex.is_match(text).then(Vec::new)
    }

    fn pattern_string(&self) -> &str {
        &self.source
    }
}

impl Linear {
    /// Bytes of the compiled program.
    fn program_cost(&self) -> usize {
        self.source.len() + self.regex.memory_usage()
    }

    /// Bytes of the program and of one match cache at its largest.
    fn cost(&self) -> usize {
        self.program_cost() + self.regex.create_cache().memory_usage() + HYBRID_CACHE_CAPACITY
    }
}

/// Why a URL pattern was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("invalid URL pattern: {0}")]
    Invalid(String),
    /// The URL patterns of one request would hold more than their budget.
    #[error("the URL patterns of this request are too complex")]
    TooComplex,
    /// The hub holds its limit of distinct patterns already.
    #[error("the hub holds too many distinct URL patterns; try again later")]
    HubFull,
}

/// One topic split into the components a pattern matches, resolved against a base.
#[derive(Debug, Default)]
pub struct TopicParts(Option<urlpattern::quirks::MatchInput>);

impl TopicParts {
    /// Resolves `topic` against `base`; a topic that is no URL reference matches nothing.
    #[must_use]
    pub fn parse(topic: &str, base: &Url) -> Self {
        let parts = Url::options()
            .base_url(Some(base))
            .parse(topic)
            .ok()
            .and_then(|url| {
                urlpattern::quirks::parse_match_input(urlpattern::UrlPatternMatchInput::Url(url))
            });
        Self(parts)
    }
}

/// A compiled URL pattern with the base it was resolved against.
#[derive(Debug)]
pub struct UrlPattern {
    source: Box<str>,
    base: Arc<Url>,
    pattern: urlpattern::UrlPattern<Linear>,
    /// Bytes it may hold: its programs and one match cache each.
    cost: usize,
    interned: Option<Arc<Interned>>,
}

/// Whether one component accepts `input`, as the crate's `Matcher::matches` decides, without
/// collecting groups.
fn component_matches(component: &Component<Linear>, input: &str) -> bool {
    let matcher = &component.matcher;
    let Some(inner) = input
        .strip_prefix(matcher.prefix.as_str())
        .and_then(|rest| rest.strip_suffix(matcher.suffix.as_str()))
    else {
        return false;
    };
    match &matcher.inner {
        InnerMatcher::Literal { literal } => inner == literal,
        InnerMatcher::SingleCapture {
            filter,
            allow_empty,
        } => (*allow_empty || !inner.is_empty()) && filter.is_none_or(|f| !inner.contains(f)),
        InnerMatcher::RegExp { regexp } => regexp.as_ref().is_ok_and(|r| r.regex.is_match(inner)),
    }
}

/// A component holds two programs: the whole component's, which the crate compiles and the
/// hub never runs (so it never gets a cache), and its matcher's, when the matcher needs one.
fn component_cost(component: &Component<Linear>) -> usize {
    let own = component.regexp.as_ref().map_or(0, Linear::program_cost);
    let matcher = match &component.matcher.inner {
        InnerMatcher::RegExp { regexp } => regexp.as_ref().map_or(0, Linear::cost),
        InnerMatcher::Literal { literal } => literal.len(),
        InnerMatcher::SingleCapture { .. } => 0,
    };
    own + matcher + component.pattern_string.len()
}

impl UrlPattern {
    /// Like [`UrlPattern::compile`], but stops as soon as its programs would take more than
    /// `budget` bytes: [`PatternError::TooComplex`] then, with nothing more compiled.
    pub fn compile_within(
        source: &str,
        base: Arc<Url>,
        budget: usize,
    ) -> Result<Self, PatternError> {
        LEFT.set(Some(budget));
        SPENT.set(false);
        let compiled = Self::compile(source, base);
        LEFT.set(None);
        match compiled {
            Err(_) if SPENT.replace(false) => Err(PatternError::TooComplex),
            Ok(pattern) if pattern.cost > budget => Err(PatternError::TooComplex),
            other => other,
        }
    }

    /// Parses and compiles `source` against `base` (the hub's URL).
    pub fn compile(source: &str, base: Arc<Url>) -> Result<Self, PatternError> {
        let init = urlpattern::UrlPatternInit::parse_constructor_string::<Linear>(
            source,
            Some((*base).clone()),
        )
        .map_err(|e| PatternError::Invalid(e.to_string()))?;
        let options = UrlPatternOptions {
            regex_syntax: RegexSyntax::Rust,
            ignore_case: false,
        };
        let pattern = urlpattern::UrlPattern::<Linear>::parse(init, options)
            .map_err(|e| PatternError::Invalid(e.to_string()))?;
        let cost = source.len()
            + [
                &pattern.protocol,
                &pattern.username,
                &pattern.password,
                &pattern.hostname,
                &pattern.port,
                &pattern.pathname,
                &pattern.search,
                &pattern.hash,
            ]
            .into_iter()
            .map(component_cost)
            .sum::<usize>();
        Ok(Self {
            source: source.into(),
            base,
            pattern,
            cost,
            interned: None,
        })
    }

    /// Whether the topic `parts` (resolved against [`Self::base`]) match; does not allocate.
    #[must_use]
    pub fn matches_parts(&self, parts: &TopicParts) -> bool {
        let Some(input) = &parts.0 else {
            return false;
        };
        let p = &self.pattern;
        component_matches(&p.protocol, &input.protocol)
            && component_matches(&p.username, &input.username)
            && component_matches(&p.password, &input.password)
            && component_matches(&p.hostname, &input.hostname)
            && component_matches(&p.port, &input.port)
            && component_matches(&p.pathname, &input.pathname)
            && component_matches(&p.search, &input.search)
            && component_matches(&p.hash, &input.hash)
    }

    /// Whether `topic` matches; resolves it first, so it allocates (replay and checks only:
    /// the fan-out resolves each topic once per update and calls [`Self::matches_parts`]).
    #[must_use]
    pub fn matches(&self, topic: &str) -> bool {
        self.matches_parts(&TopicParts::parse(topic, &self.base))
    }

    /// The pattern as the client sent it.
    #[must_use]
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The URL relative patterns and topics are resolved against.
    #[must_use]
    pub fn base(&self) -> &Arc<Url> {
        &self.base
    }

    /// Bytes this pattern may hold.
    #[must_use]
    pub fn cost(&self) -> usize {
        self.cost
    }
}

type Key = (Box<str>, Box<str>);

impl Drop for UrlPattern {
    fn drop(&mut self) {
        if let Some(interned) = self.interned.take() {
            interned.bytes.fetch_sub(self.cost, Ordering::Relaxed);
            let key: Key = (self.base.as_str().into(), self.source.clone());
            let mut map = interned.map.lock().unwrap_or_else(PoisonError::into_inner);
            // A newer copy may have replaced this one meanwhile: remove only a dead entry.
            if map.get(&key).is_some_and(|w| w.strong_count() == 0) {
                map.remove(&key);
            }
        }
    }
}

#[derive(Debug)]
struct Interned {
    map: Mutex<HashMap<Key, Weak<UrlPattern>>>,
    bytes: AtomicUsize,
    limit: usize,
}

/// The hub's compiled URL patterns, shared by every subscriber of the same pattern and base;
/// at most `limit` bytes of distinct patterns alive at once.
#[derive(Debug, Clone)]
pub struct Patterns(Arc<Interned>);

impl Patterns {
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self(Arc::new(Interned {
            map: Mutex::new(HashMap::new()),
            bytes: AtomicUsize::new(0),
            limit,
        }))
    }

    /// Bytes of distinct patterns alive.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.0.bytes.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Key, Weak<UrlPattern>>> {
        self.0.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The compiled `source` against `base`, shared with every other user of the pair; its
    /// cost is taken from `budget` (bytes the request may still hold).
    pub fn get(
        &self,
        source: &str,
        base: &Arc<Url>,
        budget: &mut usize,
    ) -> Result<Arc<UrlPattern>, PatternError> {
        let key: Key = (base.as_str().into(), source.into());
        let found = self.lock().get(&key).and_then(Weak::upgrade);
        let pattern = match found {
            Some(pattern) => pattern,
            None => {
                let mut compiled = UrlPattern::compile_within(source, Arc::clone(base), *budget)?;
                let mut map = self.lock();
                match map.get(&key).and_then(Weak::upgrade) {
                    Some(existing) => existing,
                    None => {
                        if self.bytes() + compiled.cost > self.0.limit {
                            return Err(PatternError::HubFull);
                        }
                        self.0.bytes.fetch_add(compiled.cost, Ordering::Relaxed);
                        compiled.interned = Some(Arc::clone(&self.0));
                        let pattern = Arc::new(compiled);
                        map.insert(key, Arc::downgrade(&pattern));
                        pattern
                    }
                }
            }
        };
        *budget = budget
            .checked_sub(pattern.cost)
            .ok_or(PatternError::TooComplex)?;
        Ok(pattern)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> Arc<Url> {
        Arc::new(Url::parse("https://hub.example/.well-known/mercure").unwrap())
    }

    fn pattern(s: &str) -> UrlPattern {
        UrlPattern::compile(s, base()).expect(s)
    }

    #[test]
    fn absolute_and_relative_patterns_and_topics() {
        let books = pattern("https://example.com/books/:id");
        assert!(books.matches("https://example.com/books/1"));
        assert!(
            books.matches("https://EXAMPLE.com/books/1"),
            "hosts are case-insensitive"
        );
        assert!(
            !books.matches("https://example.com/Books/1"),
            "paths are not"
        );
        assert!(!books.matches("https://example.com/books/1/2"));
        assert!(!books.matches("/books/1"));
        let relative = pattern("/books/:id");
        assert!(relative.matches("/books/1"));
        assert!(relative.matches("https://hub.example/books/1"));
        assert!(!relative.matches("https://example.com/books/1"));
        assert!(
            !relative.matches("http://[::1/books/1"),
            "not a URL: no match"
        );
        let groups = pattern("/a/:x(\\d+)/{b}?*");
        assert!(groups.matches("/a/12/b/c") && groups.matches("/a/12/"));
        assert!(!groups.matches("/a/x/b"));
    }

    #[test]
    fn invalid_and_backtracking_patterns_are_refused() {
        for bad in ["/a/(", "/:x(?=a)", "/:x(a\\1)", "/:", "/{a"] {
            assert!(
                matches!(
                    UrlPattern::compile(bad, base()),
                    Err(PatternError::Invalid(_))
                ),
                "{bad}"
            );
        }
        // A huge counted repetition is bounded when built, not expanded.
        assert!(UrlPattern::compile("/:x((?:a{1000}){1000})", base()).is_err());
    }

    #[test]
    fn a_pattern_past_its_budget_stops_compiling_and_the_next_one_is_unbounded_again() {
        let heavy = "/:a([a-z]{1,30})/:b([a-z]{1,30})/:c([a-z]{1,30})";
        let whole = UrlPattern::compile(heavy, base()).unwrap().cost();
        assert_eq!(
            UrlPattern::compile_within(heavy, base(), whole / 4).err(),
            Some(PatternError::TooComplex)
        );
        assert!(matches!(
            UrlPattern::compile_within("/a/(", base(), usize::MAX),
            Err(PatternError::Invalid(_))
        ));
        assert!(UrlPattern::compile_within(heavy, base(), whole).is_ok());
        assert!(matches!(
            UrlPattern::compile("/a/(", base()),
            Err(PatternError::Invalid(_))
        ));
        assert!(
            UrlPattern::compile(heavy, base()).is_ok(),
            "no budget left set"
        );
    }

    #[test]
    fn patterns_are_shared_and_freed() {
        let patterns = Patterns::new(64 << 20);
        let mut budget = usize::MAX;
        let a = patterns.get("/books/:id", &base(), &mut budget).unwrap();
        let b = patterns.get("/books/:id", &base(), &mut budget).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert_eq!(patterns.bytes(), a.cost());
        drop((a, b));
        assert_eq!(patterns.bytes(), 0);
        assert!(patterns.lock().is_empty());
        let mut small = 10;
        assert_eq!(
            patterns.get("/books/:id", &base(), &mut small).err(),
            Some(PatternError::TooComplex)
        );
    }
}
