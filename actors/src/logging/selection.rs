//! Which meta keys and headers a log record carries: names as configured (`[logs] meta` and
//! `headers`, or a log hook's own lists), exact or a prefix ending in `*`.

use serde_json::{Map, Value};

use crate::model::headers;

/// A configured name: exact, or a prefix when it ends in `*`.
#[derive(Debug, Clone)]
struct NamePattern {
    text: String,
    prefix: bool,
}

impl NamePattern {
    fn new(s: &str) -> Self {
        match s.strip_suffix('*') {
            Some(p) => Self { text: p.to_string(), prefix: true },
            None => Self { text: s.to_string(), prefix: false },
        }
    }

    fn matches(&self, name: &str, case_insensitive: bool) -> bool {
        let eq = |a: &str, b: &str| if case_insensitive { a.eq_ignore_ascii_case(b) } else { a == b };
        if self.prefix {
            name.len() >= self.text.len()
                && name.is_char_boundary(self.text.len())
                && eq(&name[..self.text.len()], &self.text)
        } else {
            eq(name, &self.text)
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Selection {
    meta: Vec<NamePattern>,
    headers: Vec<NamePattern>,
}

impl Selection {
    pub fn new(meta: &[String], headers: &[String]) -> Selection {
        Selection {
            meta: meta.iter().map(|s| NamePattern::new(s)).collect(),
            headers: headers.iter().map(|s| NamePattern::new(s)).collect(),
        }
    }

    /// Selected meta keys (case-sensitive).
    pub fn meta(&self, meta: &Map<String, Value>) -> Map<String, Value> {
        if self.meta.is_empty() {
            return Map::new();
        }
        meta.iter()
            .filter(|(k, _)| self.meta.iter().any(|p| p.matches(k, false)))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Selected headers by their name as written; a repeated header becomes an array.
    pub fn headers(&self, data: &[u8]) -> Map<String, Value> {
        let mut out = Map::new();
        if self.headers.is_empty() {
            return out;
        }
        for h in headers::headers(data) {
            if !self.headers.iter().any(|p| p.matches(&h.name, true)) {
                continue;
            }
            let key = out
                .keys()
                .find(|k| k.eq_ignore_ascii_case(&h.name))
                .cloned()
                .unwrap_or_else(|| h.name.clone());
            match out.get_mut(&key) {
                None => {
                    out.insert(key, Value::String(h.value));
                }
                Some(Value::Array(list)) => list.push(Value::String(h.value)),
                Some(existing) => {
                    let first = existing.take();
                    *existing = Value::Array(vec![first, Value::String(h.value)]);
                }
            }
        }
        out
    }
}
