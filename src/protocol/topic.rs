//! Validated Mercure topics and the selectors subscribers use to pick them.
//!
//! A [`TopicSelector`] matches a topic in one of three ways:
//!
//! - `*` matches every topic.
//! - A selector containing `{` or `}` is an RFC 6570 URI template (levels 1-4). It is
//!   compiled once into an anchored regex that accepts the strings some expansion of the
//!   template could produce; every variable may be undefined, so every expression may
//!   match the empty string. A topic byte-for-byte equal to the template also matches.
//! - Anything else matches only a byte-for-byte equal topic.
//!
//! Mercure 1.0 matchers (`match`, `match_exact`, `match_urlpattern`) are selectors too, built
//! by [`Templates::matcher`]: an exact matcher is an exact selector whatever it holds (braces
//! included), a URL pattern is compiled by [`crate::protocol::url_pattern`], and `*` is the
//! wildcard whatever the matcher type.
//!
//! Template matching is deliberately a little permissive: it checks character classes,
//! separators and variable order, but cannot know the publisher's actual variable values.
//! No normalisation (percent-decoding, case folding) is done on either side.

use std::{
    collections::HashMap,
    fmt,
    str::FromStr,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex, PoisonError, Weak,
    },
};

use regex_automata::meta;
use url::Url;

use crate::protocol::url_pattern::{PatternError, Patterns, UrlPattern};

/// Longest accepted topic or selector, in bytes.
pub const MAX_TOPIC_LEN: usize = 2048;

/// Largest compiled program of one template, in bytes.
const MAX_TEMPLATE_NFA: usize = 256 << 10;

/// Largest lazy-DFA cache of one template; past it the matcher falls back to a slower engine
/// rather than grow.
const HYBRID_CACHE_CAPACITY: usize = 16 << 10;

/// What the templates of one request (its selectors and its token's) may cost together.
pub const SUBSCRIPTION_TEMPLATE_BYTES: usize = 1 << 20;

/// Why a topic or selector was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The string is empty.
    #[error("topic is empty")]
    Empty,
    /// The string is longer than [`MAX_TOPIC_LEN`] bytes.
    #[error("topic is longer than {} bytes", MAX_TOPIC_LEN)]
    TooLong,
    /// The string contains CR, LF or NUL, which would corrupt the SSE stream.
    #[error("topic contains CR, LF or NUL")]
    ControlChar,
    /// The selector looks like a URI template but is not a valid one.
    #[error("invalid URI template: {0}")]
    InvalidTemplate(String),
}

/// Checks the rules shared by topics and selectors.
fn validate(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(TopicError::TooLong);
    }
    // CR and LF would split an SSE field line; NUL is mangled by many consumers.
    if s.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0)) {
        return Err(TopicError::ControlChar);
    }
    Ok(())
}

/// A topic name that passed validation; usually an IRI, but any string is accepted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Topic(String);

impl Topic {
    /// Validates `s` as a topic: non-empty, at most [`MAX_TOPIC_LEN`] bytes, no CR/LF/NUL.
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        validate(s)?;
        Ok(Self(s.to_owned()))
    }

    /// The topic as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for Topic {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// A subscriber's topic selector, compiled once at subscribe time. Cheap to clone: a
/// template is shared (see [`Templates`]).
#[derive(Clone, Debug)]
pub struct TopicSelector(Kind);

#[derive(Clone, Debug)]
enum Kind {
    Any,
    Exact(Box<str>),
    Template(Arc<Template>),
    UrlPattern(Arc<UrlPattern>),
}

impl TopicSelector {
    /// Parses `*`, a URI template (anything containing `{` or `}`) or an exact topic.
    ///
    /// Applies the same length and CR/LF/NUL rules as [`Topic::parse`]; an invalid
    /// template yields [`TopicError::InvalidTemplate`]. The template is compiled for this
    /// selector alone; requests share theirs through [`Templates`].
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        Ok(match Self::plain(s)? {
            Some(selector) => selector,
            None => Self(Kind::Template(Arc::new(Template::compile(
                s,
                MAX_TEMPLATE_NFA,
            )?))),
        })
    }

    /// `*` or an exact topic; `None` for a template.
    fn plain(s: &str) -> Result<Option<Self>, TopicError> {
        validate(s)?;
        Ok(if s == "*" {
            Some(Self(Kind::Any))
        } else if s.contains(['{', '}']) {
            None
        } else {
            Some(Self(Kind::Exact(s.into())))
        })
    }

    /// Whether `topic` is selected; does not allocate.
    pub fn matches(&self, topic: &str) -> bool {
        match &self.0 {
            Kind::Any => true,
            Kind::Exact(s) => **s == *topic,
            Kind::Template(template) => template.matches(topic),
            Kind::UrlPattern(pattern) => pattern.matches(topic),
        }
    }

    /// The selector as the client sent it.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            Kind::Any => "*",
            Kind::Exact(s) => s,
            Kind::Template(template) => &template.source,
            Kind::UrlPattern(pattern) => pattern.source(),
        }
    }

    /// The topic for an exact selector, so callers can index those in a hash map.
    pub fn exact(&self) -> Option<&str> {
        match &self.0 {
            Kind::Exact(s) => Some(s),
            _ => None,
        }
    }

    /// The compiled template of a template selector.
    pub fn template(&self) -> Option<&Arc<Template>> {
        match &self.0 {
            Kind::Template(template) => Some(template),
            _ => None,
        }
    }

    /// The compiled pattern of a `match_urlpattern` matcher.
    pub fn url_pattern(&self) -> Option<&Arc<UrlPattern>> {
        match &self.0 {
            Kind::UrlPattern(pattern) => Some(pattern),
            _ => None,
        }
    }

    /// Whether this is the `*` selector.
    pub fn is_any(&self) -> bool {
        matches!(self.0, Kind::Any)
    }
}

impl FromStr for TopicSelector {
    type Err = TopicError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for TopicSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A compiled URI template: an anchored regex, built lean (no captures, no backtracker, a
/// small lazy-DFA cache) since only `is_match` is ever asked.
#[derive(Debug)]
pub struct Template {
    source: Box<str>,
    regex: meta::Regex,
    /// Bytes it may hold: the compiled program and one match cache at its largest.
    cost: usize,
    /// The set it is interned in, told when the last selector using it goes.
    interned: Option<Arc<Interned>>,
}

impl Template {
    /// Compiles `src`, refusing a program over `nfa_limit` bytes before building it further.
    fn compile(src: &str, nfa_limit: usize) -> Result<Self, TopicError> {
        let pattern = super::template::pattern(src).map_err(invalid)?;
        let config = crate::protocol::url_pattern::linear(nfa_limit, HYBRID_CACHE_CAPACITY);
        let regex = meta::Builder::new()
            .configure(config)
            .build(&pattern)
            // Every piece is escaped or built from fixed fragments: the only way to fail is
            // the size limit.
            .map_err(|_| too_complex())?;
        let cost = src.len()
            + regex.memory_usage()
            + regex.create_cache().memory_usage()
            + HYBRID_CACHE_CAPACITY;
        Ok(Self {
            source: src.into(),
            regex,
            cost,
            interned: None,
        })
    }

    /// Whether `topic` fits the template (or is the template itself).
    pub fn matches(&self, topic: &str) -> bool {
        *self.source == *topic || self.regex.is_match(topic)
    }

    /// The template as the client sent it.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Bytes this template may hold.
    pub fn cost(&self) -> usize {
        self.cost
    }
}

impl Drop for Template {
    fn drop(&mut self) {
        if let Some(interned) = self.interned.take() {
            interned.bytes.fetch_sub(self.cost, Ordering::Relaxed);
            let mut map = interned.map.lock().unwrap_or_else(PoisonError::into_inner);
            // A newer copy may have replaced this one meanwhile: remove only a dead entry.
            if map.get(&self.source).is_some_and(|w| w.strong_count() == 0) {
                map.remove(&self.source);
            }
        }
    }
}

/// Why a request's selectors were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error(transparent)]
    Topic(#[from] TopicError),
    /// The templates of one subscription would hold more than [`SUBSCRIPTION_TEMPLATE_BYTES`].
    #[error("the topic templates of this request are too complex (over {} KiB compiled)", SUBSCRIPTION_TEMPLATE_BYTES >> 10)]
    TooComplex,
    /// The hub holds `--max-template-memory` of distinct templates already.
    #[error("the hub holds too many distinct topic templates; try again later")]
    HubFull,
    /// A Mercure 1.0 matcher that is not valid for its type.
    #[error(transparent)]
    Matcher(#[from] MatcherError),
}

/// Why a Mercure 1.0 matcher value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatcherError {
    #[error("matcher is empty")]
    Empty,
    #[error("matcher is longer than {} bytes", MAX_TOPIC_LEN)]
    TooLong,
    /// C0, C1, DEL or a format (Cf) character, at this character offset.
    #[error("matcher holds a control or format character at character {0}")]
    Forbidden(usize),
    #[error(transparent)]
    Pattern(#[from] PatternError),
}

/// A Mercure 1.0 matcher type, named by its subscribe parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatcherType {
    /// `match` or `match_exact`: byte-for-byte equality.
    Exact,
    /// `match_urlpattern`: a WHATWG URL Pattern.
    UrlPattern,
}

impl MatcherType {
    /// The matcher type a parameter names: `None` for a name outside the reserved `match`
    /// prefix (ASCII case-insensitive), `Some(Err(()))` for an unknown name inside it.
    #[must_use]
    pub fn from_param(name: &str) -> Option<Result<Self, ()>> {
        let reserved = name
            .get(..5)
            .is_some_and(|p| p.eq_ignore_ascii_case("match"));
        reserved.then_some(match name {
            "match" | "match_exact" => Ok(Self::Exact),
            "match_urlpattern" => Ok(Self::UrlPattern),
            _ => Err(()),
        })
    }

    /// The type's canonical name, as in subscription events and the subscriptions API.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::UrlPattern => "urlpattern",
        }
    }

    /// The type of a canonical name (case-sensitive, as URL paths are).
    #[must_use]
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "exact" => Some(Self::Exact),
            "urlpattern" => Some(Self::UrlPattern),
            _ => None,
        }
    }
}

/// Checks a selector's text without compiling anything: a 0.x `topic` (`kind` `None`) or a
/// 1.0 matcher of `kind`. A subscription checks every value this way before it compiles one,
/// so a request refused for a bad value costs no compilation.
pub fn check_text(kind: Option<MatcherType>, s: &str) -> Result<(), SelectorError> {
    match kind {
        None => Ok(validate(s)?),
        Some(_) => Ok(validate_matcher(s)?),
    }
}

/// Checks a matcher value: not empty, at most [`MAX_TOPIC_LEN`] bytes, no C0, C1, DEL or Cf
/// character.
fn validate_matcher(s: &str) -> Result<(), MatcherError> {
    if s.is_empty() {
        return Err(MatcherError::Empty);
    }
    if s.len() > MAX_TOPIC_LEN {
        return Err(MatcherError::TooLong);
    }
    match s.chars().position(crate::protocol::text::is_forbidden) {
        Some(at) => Err(MatcherError::Forbidden(at)),
        None => Ok(()),
    }
}

/// What one request's templates may still cost, in bytes.
#[derive(Debug, Clone, Copy)]
pub struct Budget(pub(crate) usize);

impl Default for Budget {
    /// [`SUBSCRIPTION_TEMPLATE_BYTES`].
    fn default() -> Self {
        Self(SUBSCRIPTION_TEMPLATE_BYTES)
    }
}

#[derive(Debug)]
struct Interned {
    map: Mutex<HashMap<Box<str>, Weak<Template>>>,
    /// Cost of the templates alive in `map`.
    bytes: AtomicUsize,
    limit: usize,
}

/// The hub's compiled templates, shared: every selector with the same source string uses one
/// compiled template, which the broadcaster evaluates once per update whatever the number of
/// subscribers. Bounded twice: per request ([`Budget`]: every template it uses counts, shared
/// or not) and per hub (`limit` bytes of distinct templates alive at once). URL patterns are
/// interned beside them the same way, with a limit of their own of the same size.
#[derive(Debug, Clone)]
pub struct Templates(Arc<Interned>, Patterns);

impl Templates {
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Self(
            Arc::new(Interned {
                map: Mutex::new(HashMap::new()),
                bytes: AtomicUsize::new(0),
                limit,
            }),
            Patterns::new(limit),
        )
    }

    /// Bytes of distinct templates alive.
    #[must_use]
    pub fn bytes(&self) -> usize {
        self.0.bytes.load(Ordering::Relaxed)
    }

    /// Parses a Mercure 1.0 matcher of type `kind`; a URL pattern is resolved against `base`
    /// (the hub's URL), shared with every other user of the same pattern and base, and charged
    /// to `budget`.
    pub fn matcher(
        &self,
        kind: MatcherType,
        s: &str,
        base: &Arc<Url>,
        budget: &mut Budget,
    ) -> Result<TopicSelector, SelectorError> {
        validate_matcher(s)?;
        if s == "*" {
            return Ok(TopicSelector(Kind::Any));
        }
        Ok(TopicSelector(match kind {
            MatcherType::Exact => Kind::Exact(s.into()),
            MatcherType::UrlPattern => {
                let pattern = self.1.get(s, base, &mut budget.0).map_err(|e| match e {
                    PatternError::TooComplex => SelectorError::TooComplex,
                    e => SelectorError::Matcher(e.into()),
                })?;
                Kind::UrlPattern(pattern)
            }
        }))
    }

    /// Parses a selector, sharing its compiled template with every other user of the same
    /// string and charging its cost to `budget`.
    pub fn selector(&self, s: &str, budget: &mut Budget) -> Result<TopicSelector, SelectorError> {
        if let Some(plain) = TopicSelector::plain(s)? {
            return Ok(plain);
        }
        let found = self.lock().get(s).and_then(Weak::upgrade);
        let template = match found {
            Some(template) => template,
            None => {
                // Never build more than the request may still hold.
                let limit = MAX_TEMPLATE_NFA.min(budget.0);
                let compiled = Template::compile(s, limit).map_err(|err| {
                    if limit < MAX_TEMPLATE_NFA && err == too_complex() {
                        SelectorError::TooComplex
                    } else {
                        err.into()
                    }
                })?;
                self.intern(compiled)?
            }
        };
        budget.0 = budget
            .0
            .checked_sub(template.cost)
            .ok_or(SelectorError::TooComplex)?;
        Ok(TopicSelector(Kind::Template(template)))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Weak<Template>>> {
        self.0.map.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Stores a freshly compiled template, unless another request stored the same one first.
    fn intern(&self, mut compiled: Template) -> Result<Arc<Template>, SelectorError> {
        let mut map = self.lock();
        if let Some(existing) = map.get(&compiled.source).and_then(Weak::upgrade) {
            drop(map);
            return Ok(existing);
        }
        let cost = compiled.cost;
        if self.bytes() + cost > self.0.limit {
            drop(map);
            return Err(SelectorError::HubFull);
        }
        self.0.bytes.fetch_add(cost, Ordering::Relaxed);
        compiled.interned = Some(Arc::clone(&self.0));
        let template = Arc::new(compiled);
        map.insert(template.source.clone(), Arc::downgrade(&template));
        Ok(template)
    }
}

fn invalid(reason: String) -> TopicError {
    TopicError::InvalidTemplate(reason)
}

fn too_complex() -> TopicError {
    invalid("template is too complex".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::template::{MAX_EXPRESSIONS, MAX_VARSPECS};
    use proptest::prelude::*;

    fn sel(s: &str) -> TopicSelector {
        TopicSelector::parse(s).expect("test selector is valid")
    }

    fn err(s: &str) -> String {
        TopicSelector::parse(s).expect_err(s).to_string()
    }

    #[test]
    fn validation() {
        use TopicError::{ControlChar, Empty, TooLong};
        let long = "a".repeat(MAX_TOPIC_LEN + 1);
        for (s, err) in [
            ("", Empty),
            ("a\nb", ControlChar),
            ("{x}\r", ControlChar),
            ("a\0", ControlChar),
            (&long, TooLong),
        ] {
            assert_eq!(Topic::parse(s), Err(err.clone()));
            assert_eq!(TopicSelector::parse(s).err(), Some(err));
        }
        assert!(Topic::parse(&long[1..]).is_ok());
        let t: Topic = "https://example.com/books/1".parse().expect("valid");
        assert_eq!(t.to_string(), "https://example.com/books/1");
    }

    #[test]
    fn any_and_exact() {
        let any = sel("*");
        assert!(any.is_any() && any.exact().is_none() && any.matches("x"));
        assert_eq!(any.as_str(), "*");
        let exact = sel("https://example.com/a");
        assert_eq!(exact.exact(), Some("https://example.com/a"));
        assert!(exact.matches("https://example.com/a"));
        assert!(!exact.matches("https://example.com/ab"));
        let template = sel("https://example.com/books/{id}");
        assert!(template.exact().is_none() && !template.is_any());
        // The template string itself is also a match.
        assert!(template.matches("https://example.com/books/{id}"));
    }

    /// (template, space-separated topics that match, topics that do not).
    const CASES: &[(&str, &str, &str)] = &[
        (
            "https://example.com/books/{id}",
            "https://example.com/books/42 https://example.com/books/ https://example.com/books/a%2F",
            "https://example.com/books/42/x https://example.com/authors/42",
        ),
        ("https://example.com/{+path}", "https://example.com/a/b/c https://example.com/a?b", ""),
        (
            "https://example.com/search{?q,lang}",
            "https://example.com/search?q=rust&lang=en https://example.com/search \
             https://example.com/search?q=rust https://example.com/search?lang=en",
            "https://example.com/search?lang=en&q=rust https://example.com/search?q",
        ),
        ("/page{#frag}", "/page#a/b,c /page", "/page/x"),
        ("/s?fixed=1{&x}", "/s?fixed=1&x=2 /s?fixed=1", "/s?fixed=1&y=2"),
        ("/s{?list*}", "/s?a=1&b=2 /s", "/s?a"),
        ("/users/{id}/books{/book}", "/users/1/books/2 /users/1/books", "/users/1/books/2/3"),
        ("/files{/path*}", "/files/a/b/c /files", "/filesa"),
        ("/file{.fmt}", "/file.json /file", "/filejson /file/json"),
        ("/map{;x,y}", "/map;x=1;y=2 /map;x /map", "/map;z=1 /map;y;x"),
        ("/p/{x,y}", "/p/1,2 /p/1 /p/", "/p/1/2"),
        ("/p/{var:3}", "/p/abc /p/a%20c", "/p/abcd"),
    ];

    #[test]
    fn template_cases() {
        for (template, good, bad) in CASES {
            let s = sel(template);
            for topic in good.split_whitespace() {
                assert!(s.matches(topic), "{template} should match {topic}");
            }
            for topic in bad.split_whitespace() {
                assert!(!s.matches(topic), "{template} should not match {topic}");
            }
        }
        let big = sel("/p/{var:9999}");
        assert!(big.matches(&format!("/p/{}", "a".repeat(500))));
    }

    #[test]
    fn invalid_templates() {
        let bad = "https://e.com/{id https://e.com/{} https://e.com/{=x} https://e.com/} /{a{b} \
            /{+} /{a-b} /{a..b} /{.a.} /{a,} /{a:0} /{a:10000} /{a:} /{|a} /{,a}";
        for bad in bad.split_whitespace() {
            assert!(err(bad).starts_with("invalid URI template: "), "{bad}");
        }
        assert_eq!(
            err("https://e.com/{id"),
            "invalid URI template: unclosed '{' at byte 14"
        );
        assert_eq!(
            err("/{a}}"),
            "invalid URI template: unmatched '}' at byte 4"
        );
        assert!(TopicSelector::parse("/{a.b_c%20}").is_ok());
        assert!(
            err("/books/{ path}").ends_with("write `+` as `%2B`)"),
            "{}",
            err("/books/{ path}")
        );
        assert!(!err("/books/{pa th}").contains("%2B"));
        assert!(TopicSelector::parse(&"{x}".repeat(MAX_EXPRESSIONS)).is_ok());
        assert!(TopicSelector::parse(&"{x}".repeat(MAX_EXPRESSIONS + 1)).is_err());
    }

    #[test]
    fn hostile_templates_are_refused_not_fatal() {
        // Many prefix modifiers unroll into a big program: refused by the size limit.
        let t = format!("{{{}}}", ["a:64"; 12].join(",")).repeat(MAX_EXPRESSIONS);
        assert_eq!(err(&t), "invalid URI template: template is too complex");
        // Varspecs nest groups, so their number per expression is capped.
        let wide = |n: usize| format!("{{{}}}", vec!["a"; n].join(","));
        assert!(TopicSelector::parse(&wide(MAX_VARSPECS)).is_ok());
        assert!(TopicSelector::parse(&wide(MAX_VARSPECS + 1)).is_err());
    }

    proptest! {
        #[test]
        fn exact_selector_matches_only_itself(
            s in "[^{}\r\n\u{0}]{1,64}",
            other in "[^{}\r\n\u{0}]{0,64}",
        ) {
            prop_assume!(s != "*");
            let selector = TopicSelector::parse(&s).expect("generated literal is valid");
            prop_assert_eq!(selector.exact(), Some(s.as_str()));
            prop_assert!(selector.matches(&s));
            prop_assert_eq!(selector.matches(&other), other == s);
            let longer = format!("{s}x");
            prop_assert!(!selector.matches(&longer));
        }

        #[test]
        fn template_matches_unreserved_ids(
            prefix in "[a-z:/.]{0,30}",
            id in "([A-Za-z0-9._~-]|%[0-9A-F]{2}){0,20}",
        ) {
            let selector = TopicSelector::parse(&format!("{prefix}/{{id}}"))
                .expect("generated template is valid");
            let topic = format!("{prefix}/{id}");
            prop_assert!(selector.matches(&topic));
            let nested = format!("{prefix}/{id}/x");
            prop_assert!(!selector.matches(&nested));
        }
    }
}
