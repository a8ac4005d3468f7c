//! Which records a log hook takes (KumoMTA's `per_record`): a table keyed by record type, or
//! `Any` for the types not listed, each with `enable` (default true). Without `per_record` a
//! hook takes every record.

use std::collections::HashMap;

use serde::Deserialize;

use super::record::RecordType;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PerRecord {
    #[serde(default = "yes")]
    pub enable: bool,
    /// Accepted for KumoMTA policies that template their local logs; log hooks send the record
    /// as JSON.
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub suffix: Option<String>,
    #[serde(default)]
    pub log_dir: Option<String>,
    #[serde(default)]
    pub segment_header: Option<String>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecordFilter {
    by_type: HashMap<RecordType, bool>,
    any: Option<bool>,
}

impl RecordFilter {
    /// From `per_record`'s keys (record type names as logged, or `Any`).
    pub fn new(per_record: HashMap<String, PerRecord>) -> Result<RecordFilter, String> {
        let mut filter = RecordFilter::default();
        for (key, params) in per_record {
            if key == "Any" {
                filter.any = Some(params.enable);
                continue;
            }
            let kind: RecordType = serde_json::from_value(serde_json::Value::String(key.clone()))
                .map_err(|_| format!("per_record: {key:?} is not a record type (nor Any)"))?;
            filter.by_type.insert(kind, params.enable);
        }
        Ok(filter)
    }

    pub fn takes(&self, kind: RecordType) -> bool {
        self.by_type.get(&kind).copied().or(self.any).unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on(enable: bool) -> PerRecord {
        PerRecord { enable, ..PerRecord::default() }
    }

    #[test]
    fn listed_types_then_any_then_everything() {
        assert!(RecordFilter::default().takes(RecordType::Reception));
        let only_outcomes = RecordFilter::new(HashMap::from([
            ("Delivery".to_string(), on(true)),
            ("Bounce".to_string(), on(true)),
            ("TransientFailure".to_string(), on(true)),
            ("Any".to_string(), on(false)),
        ]))
        .unwrap();
        assert!(
            only_outcomes.takes(RecordType::Delivery) && only_outcomes.takes(RecordType::TransientFailure)
        );
        assert!(!only_outcomes.takes(RecordType::Reception) && !only_outcomes.takes(RecordType::Oob));
        let no_receptions = RecordFilter::new(HashMap::from([("Reception".to_string(), on(false))])).unwrap();
        assert!(!no_receptions.takes(RecordType::Reception) && no_receptions.takes(RecordType::Bounce));
        let e = RecordFilter::new(HashMap::from([("Deliveries".to_string(), on(true))])).unwrap_err();
        assert!(e.contains("Deliveries"), "{e}");
    }
}
