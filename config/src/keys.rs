//! Every key the schema accepts, read from the `Deserialize` implementations themselves: a
//! deserializer that, each time serde asks for a struct, notes the field names serde would accept
//! and then walks into one of them. The manual's coverage test compares this list with the
//! manual, so a new key cannot go undocumented.

use std::collections::BTreeSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};

use crate::Config;

/// Dotted names of every key of [`Config`] (`smtp.listen`, `smtp.listeners.tls`, …), sorted.
/// Tables are listed too (`smtp`, `smtp.listeners`).
pub fn all_keys() -> Vec<String> {
    let mut found = BTreeSet::new();
    let mut todo = vec![Vec::<&'static str>::new()];
    while let Some(path) = todo.pop() {
        let mut fields = None;
        // Leaves (strings, numbers, enums) are refused with an error; by then the walk has seen
        // everything it came for.
        let _ = <Config as serde::Deserialize>::deserialize(Walker { path: &path, fields: &mut fields });
        for field in fields.unwrap_or_default() {
            let mut next = path.clone();
            next.push(field);
            if found.insert(next.join(".")) {
                todo.push(next);
            }
        }
    }
    found.into_iter().collect()
}

/// Follows `path` down the schema; records the fields of the struct at its end.
struct Walker<'a> {
    path: &'a [&'static str],
    fields: &'a mut Option<&'static [&'static str]>,
}

#[derive(Debug)]
struct Leaf;

impl fmt::Display for Leaf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a table")
    }
}

impl std::error::Error for Leaf {}

impl de::Error for Leaf {
    fn custom<T: fmt::Display>(_: T) -> Self {
        Leaf
    }
}

impl<'de> Deserializer<'de> for Walker<'_> {
    type Error = Leaf;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Leaf> {
        Err(Leaf)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Leaf> {
        match self.path.split_first() {
            None => {
                *self.fields = Some(fields);
                Err(Leaf)
            }
            Some((first, rest)) => {
                visitor.visit_map(OneEntry { key: Some(first), path: rest, fields: self.fields })
            }
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Leaf> {
        visitor.visit_some(self)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Leaf> {
        visitor.visit_newtype_struct(self)
    }

    /// An array of tables (`[[smtp.listeners]]`): its keys are those of one element.
    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Leaf> {
        visitor.visit_seq(OneElement { walker: Some(self) })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf unit
        unit_struct tuple tuple_struct map enum identifier ignored_any
    }
}

/// A map with one key, whose value is walked further.
struct OneEntry<'a> {
    key: Option<&'static str>,
    path: &'a [&'static str],
    fields: &'a mut Option<&'static [&'static str]>,
}

impl<'de> MapAccess<'de> for OneEntry<'_> {
    type Error = Leaf;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Leaf> {
        match self.key.take() {
            Some(k) => seed.deserialize(k.into_deserializer()).map(Some),
            None => Ok(None),
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Leaf> {
        seed.deserialize(Walker { path: self.path, fields: self.fields })
    }
}

struct OneElement<'a> {
    walker: Option<Walker<'a>>,
}

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = Leaf;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, Leaf> {
        match self.walker.take() {
            Some(w) => seed.deserialize(w).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_walk_finds_sections_nested_keys_and_array_tables() {
        let keys = super::all_keys();
        for key in
            ["node", "node.data_dir", "smtp.listen", "smtp.listeners", "smtp.listeners.tls", "spool.map_size"]
        {
            assert!(keys.contains(&key.to_string()), "{key} in {keys:?}");
        }
        assert!(!keys.iter().any(|k| k.ends_with("source")), "skipped fields are not keys: {keys:?}");
    }

    #[test]
    fn every_key_found_is_accepted_by_the_parser() {
        // Each leaf key, alone in a config, is known: the error (if any) is about its value.
        for key in super::all_keys() {
            let (table, leaf) = key.rsplit_once('.').unwrap_or(("", &key));
            if table.is_empty() || super::all_keys().iter().any(|k| k.starts_with(&format!("{key}."))) {
                continue;
            }
            let text = if table == "smtp.listeners" {
                format!("[[{table}]]\n{leaf} = \"?\"\n")
            } else {
                format!("[{table}]\n{leaf} = \"?\"\n")
            };
            if let Err(e) = crate::Config::parse(&text, crate::ConfigSource::Embedded) {
                assert!(!e.to_string().contains("unknown field"), "{key}: {e}");
            }
        }
    }
}
