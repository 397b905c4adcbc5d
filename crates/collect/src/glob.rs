//! A small glob matcher for dataset file patterns.
//!
//! Matches `/`-separated relative paths. `*` matches within one component,
//! `?` one character, `[abc]`/`[a-z]`/`[!a]` a class, `{csv,json}` one of
//! the alternatives, and a whole `**` component any number of components
//! (including none). Hidden files are matched like any other.

/// A compiled pattern.
#[derive(Debug, Clone)]
pub struct Glob {
    source: String,
    /// Alternatives after `{…}` expansion, each split into components.
    alternatives: Vec<Vec<String>>,
}

impl Glob {
    /// Compiles `pattern`; an error says what is wrong with it.
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("the glob is empty; use e.g. \"**/*.csv\"".into());
        }
        if pattern.starts_with('/') {
            return Err("the glob must be relative to the dataset folder (no leading `/`)".into());
        }
        let expanded = expand_braces(pattern)?;
        let mut alternatives = Vec::new();
        for alt in expanded {
            let comps: Vec<String> = alt.split('/').map(str::to_string).collect();
            for c in &comps {
                if c.is_empty() {
                    return Err("the glob has an empty component (`//`)".into());
                }
                if c.contains("**") && c != "**" {
                    return Err(format!(
                        "`**` must be a whole path component (as in \"**/*.csv\"), not part of {c:?}"
                    ));
                }
                check_classes(c)?;
            }
            alternatives.push(comps);
        }
        Ok(Glob {
            source: pattern.to_string(),
            alternatives,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Does the relative path `path` (`/`-separated) match?
    pub fn matches(&self, path: &str) -> bool {
        let comps: Vec<&str> = path.split('/').collect();
        self.alternatives
            .iter()
            .any(|alt| match_components(alt, &comps))
    }
}

fn expand_braces(p: &str) -> Result<Vec<String>, String> {
    let Some(open) = p.find('{') else {
        if p.contains('}') {
            return Err("the glob has a `}` without a `{`".into());
        }
        return Ok(vec![p.to_string()]);
    };
    let close = p[open..]
        .find('}')
        .map(|i| i + open)
        .ok_or_else(|| "the glob has a `{` without a closing `}`".to_string())?;
    let inner = &p[open + 1..close];
    if inner.contains('{') {
        return Err("nested `{…}` are not supported in globs".into());
    }
    let mut out = Vec::new();
    for alt in inner.split(',') {
        let s = format!("{}{}{}", &p[..open], alt, &p[close + 1..]);
        out.extend(expand_braces(&s)?);
    }
    Ok(out)
}

fn check_classes(c: &str) -> Result<(), String> {
    let mut chars = c.chars();
    while let Some(ch) = chars.next() {
        if ch == '[' && !chars.by_ref().any(|x| x == ']') {
            return Err(format!(
                "the glob component {c:?} has a `[` without a closing `]`"
            ));
        }
    }
    Ok(())
}

fn match_components(pat: &[String], path: &[&str]) -> bool {
    match pat.first() {
        None => path.is_empty(),
        Some(p) if p == "**" => {
            (0..=path.len()).any(|skip| match_components(&pat[1..], &path[skip..]))
        }
        Some(p) => {
            !path.is_empty()
                && match_component(
                    &p.chars().collect::<Vec<_>>(),
                    &path[0].chars().collect::<Vec<_>>(),
                )
                && match_components(&pat[1..], &path[1..])
        }
    }
}

fn match_component(p: &[char], s: &[char]) -> bool {
    match p.first() {
        None => s.is_empty(),
        Some('*') => (0..=s.len()).any(|i| match_component(&p[1..], &s[i..])),
        Some('?') => !s.is_empty() && match_component(&p[1..], &s[1..]),
        Some('[') => {
            let Some(end) = p.iter().skip(1).position(|c| *c == ']').map(|i| i + 1) else {
                return false;
            };
            let Some(&c) = s.first() else { return false };
            let mut class = &p[1..end];
            let negate = matches!(class.first(), Some('!') | Some('^'));
            if negate {
                class = &class[1..];
            }
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == '-' {
                    hit |= class[i] <= c && c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == c;
                    i += 1;
                }
            }
            hit != negate && match_component(&p[end + 1..], &s[1..])
        }
        Some(&lit) => s.first() == Some(&lit) && match_component(&p[1..], &s[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::Glob;

    #[test]
    fn table() {
        let cases: &[(&str, &str, bool)] = &[
            ("**/*.csv", "a.csv", true),
            ("**/*.csv", "x/y/a.csv", true),
            ("**/*.csv", "x/y/a.json", false),
            ("*.csv", "x/a.csv", false),
            ("*.{csv,json}", "a.json", true),
            ("logs/**", "logs/a/b.log", true),
            ("logs/**", "other/b.log", false),
            ("data-??.txt", "data-01.txt", true),
            ("data-??.txt", "data-1.txt", false),
            ("[a-c]*.log", "b1.log", true),
            ("[!a-c]*.log", "b1.log", false),
            ("**", "anything/at/all", true),
        ];
        for (p, s, want) in cases {
            assert_eq!(Glob::new(p).unwrap().matches(s), *want, "{p} vs {s}");
        }
    }

    #[test]
    fn errors() {
        for bad in ["", "/abs/*.csv", "a**/b", "{a,b", "a}", "[ab"] {
            assert!(Glob::new(bad).is_err(), "{bad}");
        }
    }
}
