//! `TimeDelta` (SPEC §8): the `delay` argument of requeue_message and what
//! `kumo.time.parse_duration` returns.

use std::time::Duration;

use ferry_config::{format_duration, parse_duration};
use mlua::{MetaMethod, UserData, UserDataFields, UserDataMethods, UserDataRef, Value};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeDelta(pub Duration);

impl TimeDelta {
    /// From a number of seconds, a human string, or another TimeDelta.
    pub fn from_lua_arg(v: Value) -> mlua::Result<TimeDelta> {
        match v {
            Value::Integer(i) if i >= 0 => Ok(TimeDelta(Duration::from_secs(i as u64))),
            Value::Number(n) => Duration::try_from_secs_f64(n).map(TimeDelta).map_err(mlua::Error::external),
            Value::String(s) => parse_duration(&s.to_str()?).map(TimeDelta).map_err(mlua::Error::external),
            Value::UserData(ud) => Ok(*ud.borrow::<TimeDelta>()?),
            other => Err(mlua::Error::runtime(format!("expected a duration, got {}", other.type_name()))),
        }
    }
}

impl UserData for TimeDelta {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        fields.add_field_method_get("seconds", |_, d| Ok(d.0.as_secs_f64()));
        fields.add_field_method_get("milliseconds", |_, d| Ok(d.0.as_millis() as i64));
        fields.add_field_method_get("microseconds", |_, d| Ok(d.0.as_micros() as i64));
        fields.add_field_method_get("nanoseconds", |_, d| Ok(d.0.as_nanos() as i64));
        fields.add_field_method_get("human", |_, d| Ok(format_duration(d.0)));
    }
    fn add_methods<M: UserDataMethods<Self>>(methods: &mut M) {
        methods.add_meta_method(MetaMethod::ToString, |_, d, ()| Ok(format_duration(d.0)));
        methods.add_meta_method(MetaMethod::Eq, |_, a, b: UserDataRef<TimeDelta>| Ok(a.0 == b.0));
        methods.add_meta_method(MetaMethod::Add, |_, a, b: Value| {
            Ok(TimeDelta(a.0 + TimeDelta::from_lua_arg(b)?.0))
        });
        methods.add_meta_method(MetaMethod::Sub, |_, a, b: Value| {
            Ok(TimeDelta(a.0.saturating_sub(TimeDelta::from_lua_arg(b)?.0)))
        });
    }
}
