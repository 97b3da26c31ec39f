//! Ordered metadata with typed getters.

use std::collections::HashMap;

use crate::error::MetadataError;
use crate::value::{Array, Value};

/// Key/value metadata in file order, with lookup by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

impl Metadata {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(n: usize) -> Self {
        Metadata { entries: Vec::with_capacity(n), index: HashMap::with_capacity(n) }
    }

    /// Sets `key`; an existing key keeps its position and gets the new value.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, value));
            }
        }
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.index.remove(key)?;
        let (_, v) = self.entries.remove(i);
        for idx in self.index.values_mut() {
            if *idx > i {
                *idx -= 1;
            }
        }
        Some(v)
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    pub fn contains(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    fn require(&self, key: &str) -> Result<&Value, MetadataError> {
        self.get(key).ok_or_else(|| MetadataError::Missing { key: key.to_owned() })
    }

    fn wrong(key: &str, expected: &'static str, found: &Value) -> MetadataError {
        let found = match found {
            Value::Array(a) => format!("array of {}", a.elem_type()),
            v => v.value_type().to_string(),
        };
        MetadataError::WrongType { key: key.to_owned(), expected, found }
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Result<&str, MetadataError> {
        let v = self.require(key)?;
        v.as_str().ok_or_else(|| Self::wrong(key, "string", v))
    }

    /// A non-negative integer stored in any integer type.
    pub fn get_u64(&self, key: &str) -> Result<u64, MetadataError> {
        let v = self.require(key)?;
        v.as_u64().ok_or_else(|| Self::wrong(key, "non-negative integer", v))
    }

    /// An integer stored in any integer type.
    pub fn get_i64(&self, key: &str) -> Result<i64, MetadataError> {
        let v = self.require(key)?;
        v.as_i64().ok_or_else(|| Self::wrong(key, "integer", v))
    }

    /// A float stored as f32 or f64.
    pub fn get_f64(&self, key: &str) -> Result<f64, MetadataError> {
        let v = self.require(key)?;
        v.as_f64().ok_or_else(|| Self::wrong(key, "float", v))
    }

    pub fn get_bool(&self, key: &str) -> Result<bool, MetadataError> {
        let v = self.require(key)?;
        v.as_bool().ok_or_else(|| Self::wrong(key, "bool", v))
    }

    pub fn get_array(&self, key: &str) -> Result<&Array, MetadataError> {
        let v = self.require(key)?;
        v.as_array().ok_or_else(|| Self::wrong(key, "array", v))
    }

    /// An array of strings.
    pub fn get_strings(&self, key: &str) -> Result<&[String], MetadataError> {
        let v = self.require(key)?;
        v.as_array().and_then(Array::as_strings).ok_or_else(|| Self::wrong(key, "array of string", v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_replaces_in_place_and_remove_reindexes() {
        let mut m = Metadata::new();
        m.insert("a", 1u32);
        m.insert("b", "x");
        m.insert("c", 2.5f32);
        m.insert("a", 7u64);
        assert_eq!(m.iter().map(|(k, _)| k).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(m.get_u64("a"), Ok(7));
        assert_eq!(m.remove("b"), Some(Value::from("x")));
        assert_eq!(m.get_f64("c"), Ok(2.5));
        assert_eq!(m.get_u64("missing"), Err(MetadataError::Missing { key: "missing".into() }));
        assert!(matches!(m.get_str("a"), Err(MetadataError::WrongType { .. })));
    }
}
