//! PLACEHOLDER until the full SPEC §1.3 module lands.
use chrono::{DateTime, Utc};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduling(serde_json::Value);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct SchedulingError(String);

impl Scheduling {
    pub fn from_json(v: &serde_json::Value) -> Result<Scheduling, SchedulingError> {
        Ok(Self(v.clone()))
    }
    pub fn from_json_str(s: &str) -> Result<Scheduling, SchedulingError> {
        serde_json::from_str(s).map(Self).map_err(|e| SchedulingError(e.to_string()))
    }
    pub fn to_json(&self) -> serde_json::Value {
        self.0.clone()
    }
    pub fn expires(&self) -> Option<DateTime<Utc>> {
        None
    }
    pub fn first_attempt(&self) -> Option<DateTime<Utc>> {
        None
    }
    pub fn adjust(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        t
    }
}
impl serde::Serialize for Scheduling {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}
impl<'de> serde::Deserialize<'de> for Scheduling {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde_json::Value::deserialize(d).map(Self)
    }
}
