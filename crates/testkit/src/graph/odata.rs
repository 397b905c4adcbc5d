//! The small part of OData that the emulator understands: query strings,
//! `$filter` expressions (`eq`, `and`, `startswith`, `Any` lambdas) and
//! Graph's date-time shapes.

use jiff::{civil, tz::TimeZone, Timestamp};
use serde_json::Value;

/// Decodes `%XX` escapes and `+` (as a space) in a query component.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a query string into decoded `(key, value)` pairs.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// A parsed `$filter` expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Filter {
    Eq(Vec<String>, String),
    StartsWith(Vec<String>, String),
    And(Box<Filter>, Box<Filter>),
    Or(Box<Filter>, Box<Filter>),
    /// `collection/any(var: body)`
    Any {
        collection: Vec<String>,
        var: String,
        body: Box<Filter>,
    },
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    LParen,
    RParen,
    Comma,
    Colon,
    Slash,
}

fn tokenize(s: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = s.chars().collect();
    let mut i = 0;
    let mut out = Vec::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            ' ' | '\t' => i += 1,
            '(' => {
                out.push(Tok::LParen);
                i += 1
            }
            ')' => {
                out.push(Tok::RParen);
                i += 1
            }
            ',' => {
                out.push(Tok::Comma);
                i += 1
            }
            ':' => {
                out.push(Tok::Colon);
                i += 1
            }
            '/' => {
                out.push(Tok::Slash);
                i += 1
            }
            '\'' => {
                let mut v = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err("unterminated string literal".into()),
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            v.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            v.push(ch);
                            i += 1;
                        }
                    }
                }
                out.push(Tok::Str(v));
            }
            c if c.is_alphanumeric() || c == '_' || c == '@' || c == '.' || c == '$' => {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || matches!(chars[i], '_' | '@' | '.' | '$'))
                {
                    i += 1;
                }
                out.push(Tok::Ident(chars[start..i].iter().collect()));
            }
            other => return Err(format!("unexpected character '{other}'")),
        }
    }
    Ok(out)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }
    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }
    fn expect(&mut self, t: Tok) -> Result<(), String> {
        match self.next() {
            Some(ref x) if *x == t => Ok(()),
            other => Err(format!("expected {t:?}, found {other:?}")),
        }
    }
    fn keyword(&self, kw: &str) -> bool {
        matches!(self.peek(), Some(Tok::Ident(w)) if w.eq_ignore_ascii_case(kw))
    }

    fn or_expr(&mut self) -> Result<Filter, String> {
        let mut left = self.and_expr()?;
        while self.keyword("or") {
            self.pos += 1;
            let right = self.and_expr()?;
            left = Filter::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and_expr(&mut self) -> Result<Filter, String> {
        let mut left = self.primary()?;
        while self.keyword("and") {
            self.pos += 1;
            let right = self.primary()?;
            left = Filter::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn path(&mut self) -> Result<Vec<String>, String> {
        let mut segs = Vec::new();
        match self.next() {
            Some(Tok::Ident(s)) => segs.push(s),
            other => return Err(format!("expected a property, found {other:?}")),
        }
        while self.peek() == Some(&Tok::Slash) {
            self.pos += 1;
            match self.next() {
                Some(Tok::Ident(s)) => segs.push(s),
                other => return Err(format!("expected a property after '/', found {other:?}")),
            }
        }
        Ok(segs)
    }

    fn string(&mut self) -> Result<String, String> {
        match self.next() {
            Some(Tok::Str(s)) => Ok(s),
            other => Err(format!("expected a string literal, found {other:?}")),
        }
    }

    fn primary(&mut self) -> Result<Filter, String> {
        if self.peek() == Some(&Tok::LParen) {
            self.pos += 1;
            let e = self.or_expr()?;
            self.expect(Tok::RParen)?;
            return Ok(e);
        }
        if self.keyword("startswith") {
            self.pos += 1;
            self.expect(Tok::LParen)?;
            let p = self.path()?;
            self.expect(Tok::Comma)?;
            let v = self.string()?;
            self.expect(Tok::RParen)?;
            return Ok(Filter::StartsWith(p, v));
        }
        let mut p = self.path()?;
        let last_is_any = p.last().is_some_and(|s| s.eq_ignore_ascii_case("any"));
        if last_is_any && self.peek() == Some(&Tok::LParen) {
            p.pop();
            self.pos += 1;
            let var = match self.next() {
                Some(Tok::Ident(v)) => v,
                other => return Err(format!("expected a lambda variable, found {other:?}")),
            };
            self.expect(Tok::Colon)?;
            let body = self.or_expr()?;
            self.expect(Tok::RParen)?;
            return Ok(Filter::Any {
                collection: p,
                var,
                body: Box::new(body),
            });
        }
        if self.keyword("eq") {
            self.pos += 1;
            let v = self.string()?;
            return Ok(Filter::Eq(p, v));
        }
        Err(format!(
            "unsupported operator after '{}' (the emulator supports eq, and, or, startswith, any)",
            p.join("/")
        ))
    }
}

/// Parses an OData `$filter` expression of the supported subset.
pub(crate) fn parse_filter(s: &str) -> Result<Filter, String> {
    let toks = tokenize(s)?;
    let mut p = Parser { toks, pos: 0 };
    let f = p.or_expr()?;
    if p.pos != p.toks.len() {
        return Err(format!("unexpected trailing input at token {}", p.pos));
    }
    Ok(f)
}

/// Normalises an extended property id: the type and GUID are case-insensitive,
/// the `Name` part is case-sensitive (as documented by Microsoft).
pub(crate) fn normalize_ext_id(id: &str) -> String {
    let parts: Vec<&str> = id.split_whitespace().collect();
    if parts.len() >= 4 && parts[2].eq_ignore_ascii_case("name") {
        format!(
            "{} {} Name {}",
            parts[0].to_ascii_lowercase(),
            parts[1].to_ascii_lowercase(),
            parts[3..].join(" ")
        )
    } else {
        parts
            .iter()
            .map(|p| p.to_ascii_lowercase())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn resolve<'a>(
    root: &'a Value,
    scope: &[(String, &'a Value)],
    path: &[String],
) -> Option<&'a Value> {
    let (mut cur, rest) = match scope.iter().rev().find(|(v, _)| Some(v) == path.first()) {
        Some((_, v)) => (*v, &path[1..]),
        None => (root, path),
    };
    for seg in rest {
        cur = cur
            .as_object()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(seg))?
            .1;
    }
    Some(cur)
}

fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn compare_eq(path: &[String], actual: &str, wanted: &str) -> bool {
    let is_ext_id = path.last().is_some_and(|l| l == "id");
    if is_ext_id {
        normalize_ext_id(actual) == normalize_ext_id(wanted)
    } else {
        actual.eq_ignore_ascii_case(wanted)
    }
}

/// Evaluates a filter against a JSON object.
pub(crate) fn eval(f: &Filter, root: &Value) -> bool {
    eval_in(f, root, &mut Vec::new())
}

fn eval_in<'a>(f: &Filter, root: &'a Value, scope: &mut Vec<(String, &'a Value)>) -> bool {
    match f {
        Filter::Eq(p, want) => resolve(root, scope, p)
            .and_then(as_text)
            .is_some_and(|a| compare_eq(p, &a, want)),
        Filter::StartsWith(p, want) => resolve(root, scope, p)
            .and_then(as_text)
            .is_some_and(|a| a.to_lowercase().starts_with(&want.to_lowercase())),
        Filter::And(a, b) => eval_in(a, root, scope) && eval_in(b, root, scope),
        Filter::Or(a, b) => eval_in(a, root, scope) || eval_in(b, root, scope),
        Filter::Any {
            collection,
            var,
            body,
        } => {
            let Some(Value::Array(items)) = resolve(root, scope, collection) else {
                return false;
            };
            items.iter().any(|item| {
                scope.push((var.clone(), item));
                let r = eval_in(body, root, scope);
                scope.pop();
                r
            })
        }
    }
}

/// Parses a Graph `dateTimeTimeZone` into a timestamp.
pub(crate) fn parse_date_time_tz(v: &Value) -> Result<Timestamp, String> {
    let dt = v
        .get("dateTime")
        .and_then(Value::as_str)
        .ok_or("dateTime is missing")?;
    let tz_name = v
        .get("timeZone")
        .and_then(Value::as_str)
        .ok_or("timeZone is missing")?;
    let civil: civil::DateTime = dt
        .trim_end_matches('Z')
        .parse()
        .map_err(|e| format!("dateTime '{dt}' is not a valid date-time: {e}"))?;
    let tz = if tz_name.eq_ignore_ascii_case("utc") || tz_name.eq_ignore_ascii_case("etc/utc") {
        TimeZone::UTC
    } else {
        TimeZone::get(tz_name).map_err(|_| format!("time zone '{tz_name}' is not supported"))?
    };
    civil
        .to_zoned(tz)
        .map(|z| z.timestamp())
        .map_err(|e| format!("dateTime '{dt}' in '{tz_name}': {e}"))
}

/// Parses the `startDateTime`/`endDateTime` of calendarView: with an offset,
/// or without one (then UTC).
pub(crate) fn parse_query_instant(s: &str) -> Result<Timestamp, String> {
    let s = s.trim().replace(' ', "+");
    if let Ok(ts) = s.parse::<Timestamp>() {
        return Ok(ts);
    }
    let civil: civil::DateTime = s
        .parse()
        .map_err(|e| format!("'{s}' is not an ISO 8601 date-time: {e}"))?;
    civil
        .to_zoned(TimeZone::UTC)
        .map(|z| z.timestamp())
        .map_err(|e| e.to_string())
}

/// Formats a timestamp the way Graph returns `dateTime` in UTC.
pub(crate) fn format_graph_utc(ts: Timestamp) -> String {
    format!("{}.0000000", ts.strftime("%Y-%m-%dT%H:%M:%S"))
}

/// `{ "dateTime": ..., "timeZone": "UTC" }`
pub(crate) fn date_time_tz(ts: Timestamp) -> Value {
    serde_json::json!({ "dateTime": format_graph_utc(ts), "timeZone": "UTC" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn marker_filter_matches_only_matching_property() {
        let f = parse_filter(
            "singleValueExtendedProperties/Any(ep: ep/id eq 'String {AAAA-bb} Name k' and ep/value eq 'p/1')",
        )
        .unwrap();
        let ev = json!({"singleValueExtendedProperties":[{"id":"string {aaaa-BB} Name k","value":"P/1"}]});
        assert!(eval(&f, &ev));
        let other = json!({"singleValueExtendedProperties":[{"id":"String {aaaa-bb} Name K","value":"p/1"}]});
        assert!(!eval(&f, &other));
        assert!(!eval(&f, &json!({})));
    }

    #[test]
    fn name_filter_and_quotes() {
        let f = parse_filter("name eq 'Bob''s'").unwrap();
        assert!(eval(&f, &json!({"name": "bob's"})));
        assert!(parse_filter("name gt 'x'").is_err());
    }

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("%24filter", true), "$filter");
        assert_eq!(percent_decode("a+b%2B", true), "a b+");
        assert_eq!(percent_decode("100%", true), "100%");
    }

    #[test]
    fn date_times() {
        let ts =
            parse_date_time_tz(&json!({"dateTime":"2026-01-05T09:00:00.0000000","timeZone":"UTC"}))
                .unwrap();
        assert_eq!(format_graph_utc(ts), "2026-01-05T09:00:00.0000000");
        let ts2 = parse_date_time_tz(
            &json!({"dateTime":"2026-07-05T10:00:00","timeZone":"Europe/London"}),
        )
        .unwrap();
        assert_eq!(format_graph_utc(ts2), "2026-07-05T09:00:00.0000000");
        assert_eq!(parse_query_instant("2026-01-05T09:00:00Z").unwrap(), ts);
        assert_eq!(parse_query_instant("2026-01-05T09:00:00").unwrap(), ts);
    }
}
