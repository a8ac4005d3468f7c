//! The steady-state ceilings an egress path config implies (KumoMTA's `EffectiveConstraints`, as
//! `inspect-ready-q` and `resolve-egress-path` report them): each axis with the configuration
//! term that produced it, so an operator can tell shaping from a slow remote. Pure.
//!
//! Ferry has no `additional_*` limits (refused at config time) and `source_selection_rate` has no
//! effect, so those sources never appear and `max_source_selection_rate` is always null.

use serde::Serialize;

use super::egress_path::EgressPathConfig;
use super::queue_config::Rate;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CeilingSource {
    /// The axis's own key: `connection_limit`, `max_message_rate`, `max_connection_rate`.
    Primary,
    /// `max_deliveries_per_connection × max_connection_rate`: connections are recycled after
    /// that many messages and new ones come no faster than the connection rate.
    ReconnectCycling,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveCeiling {
    /// Events per second for rates; a count for concurrency.
    pub value: f64,
    pub source: CeilingSource,
    /// In the operator's own units (`10/m` stays `10/m`).
    pub display: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EffectiveConstraints {
    pub max_concurrent_dispatchers: EffectiveCeiling,
    pub max_message_rate: Option<EffectiveCeiling>,
    /// The configured `max_message_rate` when another term is tighter (it cannot be reached).
    pub max_message_rate_declared: Option<String>,
    pub max_connection_rate: Option<EffectiveCeiling>,
    pub max_source_selection_rate: Option<EffectiveCeiling>,
}

fn per_sec(rate: &Rate) -> f64 {
    rate.count as f64 / rate.per.as_secs_f64()
}

/// `10/s`, `10/m`, ... as Ferry writes rates.
fn display(rate: &Rate) -> String {
    serde_json::to_value(rate).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
}

pub fn of(path: &EgressPathConfig) -> EffectiveConstraints {
    let primary = |rate: &Rate| EffectiveCeiling {
        value: per_sec(rate),
        source: CeilingSource::Primary,
        display: display(rate),
    };
    let mut candidates: Vec<EffectiveCeiling> = path.max_message_rate.iter().map(primary).collect();
    if let Some(conn) = &path.max_connection_rate {
        let k = path.max_deliveries_per_connection as u64;
        let total = Rate { count: conn.count.saturating_mul(k), per: conn.per };
        candidates.push(EffectiveCeiling {
            value: per_sec(conn) * k as f64,
            source: CeilingSource::ReconnectCycling,
            display: format!("{k} × {} = {}", display(conn), display(&total)),
        });
    }
    let max_message_rate = candidates.into_iter().min_by(|a, b| a.value.total_cmp(&b.value));
    let max_message_rate_declared = match (&max_message_rate, &path.max_message_rate) {
        (Some(winner), Some(declared)) if winner.source != CeilingSource::Primary => Some(display(declared)),
        _ => None,
    };
    EffectiveConstraints {
        max_concurrent_dispatchers: EffectiveCeiling {
            value: path.connection_limit as f64,
            source: CeilingSource::Primary,
            display: path.connection_limit.to_string(),
        },
        max_message_rate,
        max_message_rate_declared,
        max_connection_rate: path.max_connection_rate.as_ref().map(primary),
        max_source_selection_rate: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_limit_only_concurrency() {
        let c = of(&EgressPathConfig::default());
        assert_eq!(
            serde_json::to_value(&c).unwrap(),
            json!({
                "max_concurrent_dispatchers": {"value": 32.0, "source": {"kind": "primary"}, "display": "32"},
                "max_message_rate": null, "max_message_rate_declared": null,
                "max_connection_rate": null, "max_source_selection_rate": null,
            })
        );
    }

    #[test]
    fn reconnect_cycling_can_make_the_declared_rate_unreachable() {
        let path = EgressPathConfig::from_json(&json!({
            "max_message_rate": "1000/s", "max_connection_rate": "10/s", "max_deliveries_per_connection": 10,
        }))
        .unwrap();
        let c = of(&path);
        let rate = c.max_message_rate.unwrap();
        assert_eq!((rate.value, rate.source), (100.0, CeilingSource::ReconnectCycling));
        assert_eq!(rate.display, "10 × 10/s = 100/s");
        assert_eq!(c.max_message_rate_declared.as_deref(), Some("1000/s"));
        assert_eq!(c.max_connection_rate.unwrap().display, "10/s");

        let path = EgressPathConfig::from_json(&json!({"max_message_rate": "60/m"})).unwrap();
        let c = of(&path);
        assert_eq!(c.max_message_rate.unwrap().value, 1.0);
        assert_eq!(c.max_message_rate_declared, None, "the declared rate wins: no annotation");
    }
}
