//! RFC 6570 URI templates turned into the anchored regular expressions their matches fit: the
//! selectors of 0.x subscribers (`https://example.com/books/{id}`). Errors are the reason the
//! `400` gives.

/// Most expressions a template selector may contain.
pub(super) const MAX_EXPRESSIONS: usize = 32;
/// Most varspecs one expression may contain; each one nests a regex group.
pub(super) const MAX_VARSPECS: usize = 32;
/// Largest `{var:N}` bound compiled as a counted repetition; larger ones match unbounded,
/// because counted repetitions are unrolled and would blow the size budget.
const MAX_COUNTED_PREFIX: u16 = 64;
/// An unreserved character or a percent-encoded triplet.
const VAL_UNRESERVED: &str = r"(?:[A-Za-z0-9\-._~]|%[0-9A-Fa-f]{2})";
/// An unreserved or reserved character, or a percent-encoded triplet (`+` and `#`).
const VAL_RESERVED: &str = r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})";

/// The anchored regex pattern of a whole template.
pub(super) fn pattern(src: &str) -> Result<String, String> {
    let bytes = src.as_bytes();
    let mut pattern = String::with_capacity(src.len() * 4 + 8);
    pattern.push_str(r"\A");
    let (mut i, mut literal_start, mut expressions) = (0, 0, 0);
    while i < bytes.len() {
        match bytes[i] {
            b'{' => {
                // Slicing at '{' and '}' is safe: ASCII bytes are always char boundaries.
                pattern.push_str(&regex::escape(&src[literal_start..i]));
                let close = (i + 1..bytes.len())
                    .find(|&j| matches!(bytes[j], b'{' | b'}'))
                    .filter(|&j| bytes[j] == b'}')
                    .ok_or_else(|| format!("unclosed '{{' at byte {i}"))?;
                expressions += 1;
                if expressions > MAX_EXPRESSIONS {
                    return Err(format!("more than {MAX_EXPRESSIONS} expressions"));
                }
                compile_expression(&src[i + 1..close], i, &mut pattern)?;
                i = close + 1;
                literal_start = i;
            }
            b'}' => return Err(format!("unmatched '}}' at byte {i}")),
            _ => i += 1,
        }
    }
    pattern.push_str(&regex::escape(&src[literal_start..]));
    pattern.push_str(r"\z");
    Ok(pattern)
}

/// An RFC 6570 expression operator, with what it needs for matching.
#[derive(Clone, Copy)]
struct Op {
    /// Regex for the text before the first defined value.
    first: &'static str,
    /// Regex for the text between values.
    sep: &'static str,
    /// Renders `name=value` pairs.
    named: bool,
    /// Value character class.
    val: &'static str,
}

impl Op {
    const fn new(first: &'static str, sep: &'static str, named: bool, val: &'static str) -> Self {
        Self {
            first,
            sep,
            named,
            val,
        }
    }

    /// `;` renders a bare `name` for an empty value, where `?` and `&` render `name=`.
    fn bare_if_empty(self) -> bool {
        self.first == ";"
    }

    /// Reads the optional operator at the start of an expression body.
    fn parse(body: &str, at: usize) -> Result<(Self, &str), String> {
        let (u, r) = (VAL_UNRESERVED, VAL_RESERVED);
        let op = match body.as_bytes().first() {
            Some(b'+') => Self::new("", ",", false, r),
            Some(b'#') => Self::new("#", ",", false, r),
            Some(b'.') => Self::new(r"\.", r"\.", false, u),
            Some(b'/') => Self::new("/", "/", false, u),
            Some(b';') => Self::new(";", ";", true, u),
            Some(b'?') => Self::new(r"\?", "&", true, u),
            Some(b'&') => Self::new("&", "&", true, u),
            Some(&c @ (b'=' | b',' | b'!' | b'@' | b'|')) => {
                return Err(format!(
                    "reserved operator '{}' at byte {at}",
                    char::from(c)
                ))
            }
            _ => return Ok((Self::new("", ",", false, u), body)),
        };
        Ok((op, &body[1..]))
    }
}

/// Compiles one `{...}` body; `open` is the byte offset of its `{`, for error messages.
fn compile_expression(body: &str, open: usize, out: &mut String) -> Result<(), String> {
    let (op, list) = Op::parse(body, open + 1)?;
    if list.is_empty() {
        return Err(format!("empty expression at byte {open}"));
    }
    // Each varspec contributes nothing (undefined) or a chunk; defined chunks keep their
    // order and are joined by the separator. That is P_k = (?:P_{k-1}(?:sep C_k)?|C_k),
    // written out by opening all groups first so the pattern stays linear in size.
    let specs = list.split(',').count();
    if specs > MAX_VARSPECS {
        return Err(format!(
            "more than {MAX_VARSPECS} variables in expression at byte {open}"
        ));
    }
    out.push_str("(?:");
    out.push_str(op.first);
    out.push_str(&"(?:".repeat(specs - 1));
    let mut at = open + 1 + (body.len() - list.len());
    for (k, spec) in list.split(',').enumerate() {
        let chunk = compile_varspec(spec, at, op)?;
        if k == 0 {
            out.push_str(&chunk);
        } else {
            out.push_str(&format!("(?:{}{chunk})?|{chunk})", op.sep));
        }
        at += spec.len() + 1;
    }
    out.push_str(")?");
    Ok(())
}

/// Compiles one varspec (`name`, `name:N` or `name*`) into the regex of its defined value.
fn compile_varspec(spec: &str, at: usize, op: Op) -> Result<String, String> {
    let val = op.val;
    let (name, explode, prefix) = if let Some(name) = spec.strip_suffix('*') {
        (name, true, None)
    } else if let Some((name, len)) = spec.split_once(':') {
        (
            name,
            false,
            Some(parse_prefix_len(len, at + name.len() + 1)?),
        )
    } else {
        (spec, false, None)
    };
    if !is_varname(name) {
        // `{+path}` typed into a query string by hand arrives as `{ path}`: say why.
        let plus = if name.starts_with(' ') {
            ": a space, as a `+` in a query string becomes one (write `+` as `%2B`)"
        } else {
            ""
        };
        return Err(format!("invalid variable name at byte {at}{plus}"));
    }
    let item = if explode {
        // Exploded lists repeat the name (named ops) or just the values; exploded maps
        // render `key=value` with arbitrary keys. One item pattern covers all of these.
        match (op.named, op.bare_if_empty()) {
            (true, true) => format!("{val}+(?:={val}*)?"),
            (true, false) => format!("{val}+={val}*"),
            (false, _) => format!("{val}*(?:={val}*)?"),
        }
    } else {
        // Prefixes apply to strings only; otherwise the value may be a comma-joined list
        // or map, which reserved-class operators already cover.
        let value = match prefix {
            Some(n) if n <= MAX_COUNTED_PREFIX => format!("{val}{{0,{n}}}"),
            _ => format!("(?:{val}|,)*"),
        };
        let name = regex::escape(name);
        return Ok(match (op.named, op.bare_if_empty()) {
            (true, true) => format!("{name}(?:={value})?"),
            (true, false) => format!("{name}={value}"),
            (false, _) => value,
        });
    };
    Ok(format!("{item}(?:{}{item})*", op.sep))
}

/// Parses a prefix modifier length: 1 to 9999 with no leading zero, per RFC 6570.
fn parse_prefix_len(s: &str, at: usize) -> Result<u16, String> {
    let ok =
        (1..=4).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) && !s.starts_with('0');
    match s.parse::<u16>() {
        Ok(n) if ok => Ok(n),
        _ => Err(format!("invalid prefix length at byte {at}")),
    }
}

/// RFC 6570 varname: varchars (ALPHA / DIGIT / "_" / pct-encoded) with single dots between.
fn is_varname(name: &str) -> bool {
    let b = name.as_bytes();
    let mut i = 0;
    let mut need_char = true; // at start and right after a dot
    while i < b.len() {
        match b[i] {
            c if c.is_ascii_alphanumeric() || c == b'_' => i += 1,
            b'%' if b.len() > i + 2 && b[i + 1..=i + 2].iter().all(u8::is_ascii_hexdigit) => i += 3,
            b'.' if !need_char => {
                i += 1;
                need_char = true;
                continue;
            }
            _ => return false,
        }
        need_char = false;
    }
    !need_char
}
