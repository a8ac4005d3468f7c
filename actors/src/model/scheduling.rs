//! Per-message scheduling constraints (SPEC §1.3): an optional weekly delivery window
//! (`dow`, `tz`, `start`, `end`), an optional earliest attempt (`first_attempt`) and an optional
//! absolute expiry (`expires`, consumed by the expiration checks of SPEC §2.7).
//!
//! The value arrives as JSON (an `X-Schedule` header or a Lua table), is validated once here, and is
//! persisted/re-emitted in a normalised form so that it round-trips byte-for-byte after the first pass.

use chrono::{DateTime, Datelike, FixedOffset, LocalResult, NaiveDate, NaiveTime, SecondsFormat};
use chrono::{TimeZone, Utc, Weekday};
use chrono_tz::Tz;
use serde_json::Value;

/// Short names in week order; index = `Weekday::num_days_from_monday()`.
const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
/// Every allowed key (SPEC §1.3 rule 6); the first four are the window, in the order the
/// "missing" error lists them (rule 1).
const KEYS: [&str; 6] = ["dow", "tz", "start", "end", "first_attempt", "expires"];
/// SPEC §1.3 Adjust step 2: today plus the 7 following days covers every weekday once.
const MAX_ROUNDS: usize = 8;

/// A validated scheduling constraint (SPEC §1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scheduling {
    window: Option<Window>,
    first_attempt: Option<Stamp>,
    expires: Option<Stamp>,
}

/// The daily window `[start, end)` in `tz`, on the weekdays set in `days` (bit i = Mon + i).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Window {
    days: u8,
    tz: Tz,
    start: NaiveTime,
    end: NaiveTime,
}

/// An RFC 3339 instant that remembers the offset it was written with, so that it re-serialises
/// unchanged (SPEC §1.3 rule 5). Equality compares the offset too: chrono's `DateTime` equality
/// alone compares instants, which would call two differently-serialised values equal.
#[derive(Debug, Clone, Copy)]
struct Stamp(DateTime<FixedOffset>);

impl PartialEq for Stamp {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0 && self.0.offset() == other.0.offset()
    }
}
impl Eq for Stamp {}

impl Stamp {
    fn utc(&self) -> DateTime<Utc> {
        self.0.with_timezone(&Utc)
    }
    /// `Z` is written as `+00:00`; fractional seconds keep their precision (0, 3, 6 or 9 digits).
    fn render(&self) -> String {
        self.0.to_rfc3339_opts(SecondsFormat::AutoSi, false)
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SchedulingError {
    #[error("scheduling is not valid JSON: {0}")]
    InvalidJson(String),
    #[error("scheduling must be a JSON object, not {0}")]
    NotAnObject(&'static str),
    #[error("unknown scheduling key `{0}` (allowed: dow, tz, start, end, first_attempt, expires)")]
    UnknownKey(String),
    #[error("`{field}` must be a string, not {found}")]
    WrongType { field: &'static str, found: &'static str },
    /// SPEC §1.3 rule 1; the message reads e.g. "… together: dow, end are missing".
    #[error("scheduling needs dow, tz, start and end together: {}", missing(.0))]
    MissingWindowFields(Vec<&'static str>),
    #[error("`dow` {value:?} is invalid: {reason}")]
    BadDow { value: String, reason: String },
    #[error("`tz` {0:?} is not an IANA time zone name (Area/Location, e.g. America/New_York)")]
    BadTz(String),
    #[error("`{field}` {value:?} is not a time of day (HH:MM:SS or HH:MM)")]
    BadTime { field: &'static str, value: String },
    #[error("`start` ({start}) must be before `end` ({end}): the window is [start, end) within one day")]
    EmptyWindow { start: String, end: String },
    #[error("`{field}` {value:?} is not an RFC 3339 timestamp: {reason}")]
    BadTimestamp { field: &'static str, value: String, reason: String },
}

fn missing(fields: &[&'static str]) -> String {
    let verb = if fields.len() == 1 { "is" } else { "are" };
    format!("{} {verb} missing", fields.join(", "))
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

impl Scheduling {
    /// Parse + validate from a JSON value (what X-Schedule headers and Lua tables become).
    ///
    /// A JSON `null` member counts as absent (as in KMTA, whose serde model uses `Option` fields);
    /// every other non-string value is a type error naming the field.
    pub fn from_json(v: &Value) -> Result<Scheduling, SchedulingError> {
        let obj = match v {
            Value::Object(obj) => obj,
            other => return Err(SchedulingError::NotAnObject(json_type(other))),
        };
        // SPEC §1.3 rule 6 (serde_json maps iterate in key order, so the report is deterministic).
        if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
            return Err(SchedulingError::UnknownKey(k.clone()));
        }
        let field = |name: &'static str| match obj.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.as_str())),
            Some(other) => Err(SchedulingError::WrongType { field: name, found: json_type(other) }),
        };
        let stamp = |name| field(name)?.map(|s| parse_stamp(name, s)).transpose();
        let (first_attempt, expires) = (stamp("first_attempt")?, stamp("expires")?);

        // SPEC §1.3 rule 1: all four window fields or none.
        let window = match [field("dow")?, field("tz")?, field("start")?, field("end")?] {
            [None, None, None, None] => None,
            [Some(dow), Some(tz), Some(start), Some(end)] => Some(parse_window(dow, tz, start, end)?),
            given => {
                let absent = KEYS.iter().zip(given).filter(|(_, v)| v.is_none());
                return Err(SchedulingError::MissingWindowFields(absent.map(|(k, _)| *k).collect()));
            }
        };
        Ok(Scheduling { window, first_attempt, expires })
    }

    /// Parse + validate from a JSON string (an X-Schedule header value).
    pub fn from_json_str(s: &str) -> Result<Scheduling, SchedulingError> {
        let v: Value = serde_json::from_str(s).map_err(|e| SchedulingError::InvalidJson(e.to_string()))?;
        Self::from_json(&v)
    }

    /// Normalised JSON object (SPEC §1.3 rules 2 and 5); absent fields are omitted.
    pub fn to_json(&self) -> Value {
        Value::Object(self.entries().into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }

    pub fn expires(&self) -> Option<DateTime<Utc>> {
        self.expires.as_ref().map(Stamp::utc)
    }

    pub fn first_attempt(&self) -> Option<DateTime<Utc>> {
        self.first_attempt.as_ref().map(Stamp::utc)
    }

    /// SPEC §1.3 Adjust(t): the earliest instant `>= t` that satisfies `first_attempt` and the window.
    pub fn adjust(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        // Step 1.
        let t = match self.first_attempt() {
            Some(fa) if fa > t => fa,
            _ => t,
        };
        // Steps 2 and 3.
        match &self.window {
            Some(w) => w.adjust(t),
            None => t,
        }
    }

    /// Normalised `(key, value)` pairs in the spec's key order; shared by `to_json` and `Serialize`.
    fn entries(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::with_capacity(6);
        if let Some(w) = &self.window {
            let dow: Vec<&str> = (0..7).filter(|i| w.days & 1 << i != 0).map(|i| DAYS[i]).collect();
            out.push(("dow", dow.join(",")));
            out.push(("tz", w.tz.name().to_owned()));
            out.push(("start", w.start.format("%H:%M:%S").to_string()));
            out.push(("end", w.end.format("%H:%M:%S").to_string()));
        }
        if let Some(s) = &self.first_attempt {
            out.push(("first_attempt", s.render()));
        }
        if let Some(s) = &self.expires {
            out.push(("expires", s.render()));
        }
        out
    }
}

impl Window {
    fn allows(&self, day: Weekday) -> bool {
        self.days & (1 << day.num_days_from_monday()) != 0
    }

    /// `time` on local `day`, only when the local clock shows it exactly once. A nonexistent
    /// (spring-forward gap) or ambiguous (fall-back overlap) time yields `None`: SPEC §1.3 says to
    /// skip such a day rather than guess which instant the sender meant.
    fn at(&self, day: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
        match self.tz.from_local_datetime(&day.and_time(time)) {
            LocalResult::Single(dt) => Some(dt.with_timezone(&Utc)),
            _ => None,
        }
    }

    /// SPEC §1.3 Adjust step 2. "Next day" means the next *local calendar date* at `start`, not
    /// `start + 24h`, so the window keeps its local clock time across DST changes.
    fn adjust(&self, t: DateTime<Utc>) -> DateTime<Utc> {
        let mut day = t.with_timezone(&self.tz).date_naive();
        // Some(t) in the first round; afterwards the candidate is "start of `day`" (None), which may
        // not even exist as an instant on a skipped day.
        let mut exact = Some(t);
        let mut last = t;
        for _ in 0..MAX_ROUNDS {
            if let (Some(start), Some(end)) = (self.at(day, self.start), self.at(day, self.end)) {
                let cand = exact.unwrap_or(start);
                last = cand;
                if self.allows(day.weekday()) {
                    if cand < start {
                        return start;
                    }
                    if cand < end {
                        return cand;
                    }
                }
            }
            match day.succ_opt() {
                Some(next) => day = next,
                None => return last,
            }
            exact = None;
        }
        // Rounds exhausted: the last candidate is the next day's start, if that instant exists.
        self.at(day, self.start).unwrap_or(last)
    }
}

/// SPEC §1.3 rules 2–4.
fn parse_window(dow: &str, tz: &str, start: &str, end: &str) -> Result<Window, SchedulingError> {
    let days = parse_dow(dow)?;
    let tz = parse_tz(tz)?;
    let (start, end) = (parse_time("start", start)?, parse_time("end", end)?);
    // The engine rejects start == end too (SPEC §10 D18): such a window never opens.
    if start >= end {
        let fmt = |t: NaiveTime| t.format("%H:%M:%S").to_string();
        return Err(SchedulingError::EmptyWindow { start: fmt(start), end: fmt(end) });
    }
    Ok(Window { days, tz, start, end })
}

/// Comma list of 3-letter or full English names, case-insensitive, blanks around items ignored,
/// duplicates collapse. An empty item (`"Mon,,Tue"`, `"Mon,"`) is rejected as a likely typo.
fn parse_dow(value: &str) -> Result<u8, SchedulingError> {
    let bad = |reason: String| SchedulingError::BadDow { value: value.to_owned(), reason };
    if value.trim().is_empty() {
        return Err(bad("at least one day is required".into()));
    }
    let mut days = 0u8;
    for item in value.split(',').map(str::trim) {
        // chrono's parser takes exactly "mon" or "monday", any case; "Mond" is an error.
        match item.parse::<Weekday>() {
            Ok(day) => days |= 1 << day.num_days_from_monday(),
            Err(_) if item.is_empty() => return Err(bad("empty day name in the list".into())),
            Err(_) => {
                return Err(bad(format!("unknown day {item:?} (use Mon..Sun or Monday..Sunday)")));
            }
        }
    }
    Ok(days)
}

/// IANA names only (SPEC §1.3 rule 3). chrono-tz also knows the database's legacy top-level names
/// (`EST`, `MST`, `HST`, `CET`, `PST8PDT`, `GMT`, `Zulu`, `Japan`, …). Those are abbreviations or
/// POSIX-style rules rather than locations, so we accept only `Area/Location` names (backward links
/// such as `US/Eastern` included), everything under `Etc/`, and exactly `UTC`. `PST` is not in the
/// database at all. Matching is case-sensitive, as the database's names are.
fn parse_tz(value: &str) -> Result<Tz, SchedulingError> {
    let shaped = value == "UTC" || value.contains('/');
    match value.parse::<Tz>() {
        Ok(tz) if shaped => Ok(tz),
        _ => Err(SchedulingError::BadTz(value.to_owned())),
    }
}

/// `HH:MM:SS` or `HH:MM`, two digits per part, 00:00:00–23:59:59 (no leap seconds, no `24:00`).
fn parse_time(field: &'static str, value: &str) -> Result<NaiveTime, SchedulingError> {
    let b = value.as_bytes();
    let shaped = matches!(b.len(), 5 | 8)
        && (b.iter().enumerate()).all(|(i, c)| if i % 3 == 2 { *c == b':' } else { c.is_ascii_digit() });
    let num = |i: usize| value.get(i..i + 2).and_then(|p| p.parse().ok()).unwrap_or(0);
    let time = shaped.then(|| NaiveTime::from_hms_opt(num(0), num(3), num(6))).flatten();
    time.ok_or_else(|| SchedulingError::BadTime { field, value: value.to_owned() })
}

fn parse_stamp(field: &'static str, value: &str) -> Result<Stamp, SchedulingError> {
    DateTime::parse_from_rfc3339(value).map(Stamp).map_err(|e| SchedulingError::BadTimestamp {
        field,
        value: value.to_owned(),
        reason: e.to_string(),
    })
}

impl serde::Serialize for Scheduling {
    /// Same content as `to_json`, written in the spec's key order regardless of serde_json features.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.entries())
    }
}

impl<'de> serde::Deserialize<'de> for Scheduling {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Value::deserialize(d)?;
        Scheduling::from_json(&v).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sched(v: Value) -> Scheduling {
        Scheduling::from_json(&v).unwrap()
    }
    fn err(v: Value) -> SchedulingError {
        Scheduling::from_json(&v).unwrap_err()
    }
    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }
    fn window(dow: &str, tz: &str, start: &str, end: &str) -> Scheduling {
        sched(json!({"dow": dow, "tz": tz, "start": start, "end": end}))
    }

    #[test]
    fn normalises_and_round_trips() {
        let s = sched(json!({"dow": " wednesday, MON ,mon", "tz": "America/Phoenix", "start": "09:00",
            "end": "17:00:00", "first_attempt": "2026-03-01T17:00:00-08:00",
            "expires": "2026-03-08T00:00:00Z"}));
        let spec = concat!(
            r#"{"dow":"Mon,Wed","tz":"America/Phoenix","start":"09:00:00","end":"17:00:00","#,
            r#""first_attempt":"2026-03-01T17:00:00-08:00","expires":"2026-03-08T00:00:00+00:00"}"#
        );
        assert_eq!(serde_json::to_string(&s).unwrap(), spec, "Serialize keeps the spec's key order");
        assert_eq!(s.to_json(), serde_json::from_str::<Value>(spec).unwrap());
        assert_eq!(serde_json::from_str::<Scheduling>(spec).unwrap(), s);
        assert_eq!(Scheduling::from_json(&s.to_json()).unwrap(), s);
        assert_eq!(s.first_attempt(), Some(utc("2026-03-02T01:00:00Z")));
        assert_eq!(s.expires(), Some(utc("2026-03-08T00:00:00Z")));

        let all = window("sunday,Saturday,FRIDAY,thu,Wednesday,tuesday,Monday", "UTC", "00:00", "23:59:59");
        assert_eq!(all.to_json()["dow"], "Mon,Tue,Wed,Thu,Fri,Sat,Sun");
        // Same instant, different offsets: not equal, each serialises as written (fraction kept).
        let a = sched(json!({"expires": "2026-03-08T00:00:00.250Z"}));
        let b = sched(json!({"expires": "2026-03-07T19:00:00.250-05:00"}));
        assert_eq!(a.expires(), b.expires());
        assert_ne!(a, b);
        assert_eq!(b.to_json(), json!({"expires": "2026-03-07T19:00:00.250-05:00"}));
        // Empty object and null members: no constraint at all.
        let none = sched(json!({"expires": null}));
        assert_eq!(none.to_json(), json!({}));
        assert_eq!(none.adjust(utc("2026-03-02T03:04:05Z")), utc("2026-03-02T03:04:05Z"));
    }

    #[test]
    fn time_zone_names() {
        for ok in ["America/New_York", "Europe/London", "US/Eastern", "UTC", "Etc/UTC", "Etc/GMT+5"] {
            assert_eq!(window("Mon", ok, "09:00", "17:00").to_json()["tz"], ok);
        }
        for bad in ["PST", "EST", "PST8PDT", "GMT", "Zulu", "america/new_york", " UTC", ""] {
            let e = err(json!({"dow": "Mon", "tz": bad, "start": "09:00", "end": "17:00"}));
            assert_eq!(e, SchedulingError::BadTz(bad.into()));
            assert!(e.to_string().contains("`tz`"), "{e}");
        }
    }

    #[test]
    fn validation_errors() {
        use SchedulingError::*;
        let w = |dow: &str, start: &str, end: &str| {
            err(json!({"dow": dow, "tz": "UTC", "start": start, "end": end}))
        };
        assert_eq!(err(json!([])), NotAnObject("an array"));
        assert!(matches!(Scheduling::from_json_str("{\"dow\":"), Err(InvalidJson(_))));
        let e = err(json!({"expires": "2026-03-08T00:00:00Z", "color": "red"}));
        assert_eq!(e, UnknownKey("color".into()));
        assert!(e.to_string().contains("`color`"), "{e}");
        let e = err(json!({"tz": "UTC", "start": "09:00:00"}));
        assert!(e.to_string().ends_with("dow, end are missing"), "{e}");
        let e = err(json!({"dow": "Mon", "tz": "UTC", "start": "09:00:00"}));
        assert!(e.to_string().ends_with(": end is missing"), "{e}");
        assert_eq!(err(json!({"dow": ["Mon"]})), WrongType { field: "dow", found: "an array" });
        let e = err(json!({"expires": 1_700_000_000}));
        assert_eq!(e.to_string(), "`expires` must be a string, not a number");
        for bad in ["", " , ", "Mon,,Tue", "Mon,Funday", "Mond", "M"] {
            assert!(matches!(w(bad, "09:00", "17:00"), BadDow { .. }), "dow {bad:?}");
        }
        for bad in ["9:00", "24:00:00", "09:60", "09:00:60", "23:59:60", "09:00:00.5", "0900", "09:00:0a"] {
            assert_eq!(w("Mon", bad, "23:00"), BadTime { field: "start", value: bad.into() });
            assert_eq!(w("Mon", "00:00", bad), BadTime { field: "end", value: bad.into() });
        }
        let e = w("Mon", "17:00", "09:00:00");
        assert_eq!(e, EmptyWindow { start: "17:00:00".into(), end: "09:00:00".into() });
        assert!(e.to_string().contains("`start` (17:00:00) must be before `end` (09:00:00)"), "{e}");
        assert!(matches!(w("Mon", "09:00", "09:00:00"), EmptyWindow { .. }), "start == end (D18)");
        let e = err(json!({"first_attempt": "2026-03-08 tomorrow"}));
        assert!(matches!(e, BadTimestamp { field: "first_attempt", .. }), "{e}");
        // Deserialize surfaces the same message through serde.
        let e =
            serde_json::from_str::<Scheduling>(r#"{"dow":"Mon","tz":"PST","start":"09:00","end":"17:00"}"#);
        assert!(e.unwrap_err().to_string().contains("\"PST\" is not an IANA time zone"));
    }

    #[test]
    fn adjust_within_one_day_and_across_days() {
        // America/Phoenix is UTC-7 all year (no DST). 2026-03-02 is a Monday.
        let s = window("Mon,Wed", "America/Phoenix", "09:00:00", "17:00:00");
        assert_eq!(s.adjust(utc("2026-03-02T08:00:00-07:00")), utc("2026-03-02T16:00:00Z"), "before start");
        assert_eq!(s.adjust(utc("2026-03-02T10:11:12-07:00")), utc("2026-03-02T10:11:12-07:00"), "inside");
        assert_eq!(s.adjust(utc("2026-03-02T17:00:00-07:00")), utc("2026-03-04T16:00:00Z"), "end excluded");
        assert_eq!(s.adjust(utc("2026-03-05T12:00:00-07:00")), utc("2026-03-09T16:00:00Z"), "Thu → Mon");
        // The US DST change (2026-03-08) does not move Phoenix; July is still 16:00Z.
        assert_eq!(s.adjust(utc("2026-07-06T08:00:00-07:00")), utc("2026-07-06T16:00:00Z"));
    }

    #[test]
    fn adjust_skips_weekend() {
        let s = window("Mon,Tue,Wed,Thu,Fri", "Etc/UTC", "09:00", "17:00");
        for t in
            ["2026-03-06T17:00:00Z", "2026-03-07T12:00:00Z", "2026-03-08T23:59:59Z", "2026-03-09T08:00:00Z"]
        {
            assert_eq!(s.adjust(utc(t)), utc("2026-03-09T09:00:00Z"), "from {t}");
        }
        assert_eq!(s.adjust(utc("2026-03-10T16:59:59Z")), utc("2026-03-10T16:59:59Z"));
    }

    #[test]
    fn adjust_first_attempt() {
        let s = sched(json!({"first_attempt": "2026-03-02T12:00:00-05:00"}));
        assert_eq!(s.adjust(utc("2026-03-01T00:00:00Z")), utc("2026-03-02T17:00:00Z"), "pushed forward");
        assert_eq!(s.adjust(utc("2026-03-03T00:00:00Z")), utc("2026-03-03T00:00:00Z"), "already later");
        // first_attempt lands after Monday's window: the window then moves it to Tuesday's start.
        let s = sched(json!({"dow": "Mon,Tue", "tz": "UTC", "start": "09:00", "end": "12:00",
            "first_attempt": "2026-03-02T12:00:00-05:00"}));
        assert_eq!(s.adjust(utc("2026-03-01T00:00:00Z")), utc("2026-03-03T09:00:00Z"));
    }

    #[test]
    fn adjust_keeps_local_start_across_dst() {
        // New York springs forward on Sun 2026-03-08 and falls back on Sun 2026-11-01: the next day's
        // start is the local 09:00, not yesterday's start + 24h.
        let s = window("Sun", "America/New_York", "09:00", "17:00");
        assert_eq!(s.adjust(utc("2026-03-07T18:00:00-05:00")), utc("2026-03-08T13:00:00Z"));
        assert_eq!(s.adjust(utc("2026-10-31T18:00:00-04:00")), utc("2026-11-01T14:00:00Z"));
    }

    #[test]
    fn adjust_skips_days_with_nonexistent_or_ambiguous_times() {
        let ny = |start, end| window("Mon,Tue,Wed,Thu,Fri,Sat,Sun", "America/New_York", start, end);
        let london = |start, end| window("Mon,Tue,Wed,Thu,Fri,Sat,Sun", "Europe/London", start, end);
        // 02:30 does not exist in New York on 2026-03-08 (nor does an end of 02:30): next day, EDT.
        assert_eq!(ny("02:30", "05:00").adjust(utc("2026-03-08T05:00:00Z")), utc("2026-03-09T06:30:00Z"));
        assert_eq!(ny("01:00", "02:30").adjust(utc("2026-03-08T05:00:00Z")), utc("2026-03-09T05:00:00Z"));
        // 01:30 happens twice on 2026-11-01: skipped, next day in EST.
        assert_eq!(ny("01:30", "04:00").adjust(utc("2026-11-01T04:00:00Z")), utc("2026-11-02T06:30:00Z"));
        // London: 01:30 is missing on 2026-03-29 and doubled on 2026-10-25.
        assert_eq!(london("01:30", "03:00").adjust(utc("2026-03-29T00:00:00Z")), utc("2026-03-30T00:30:00Z"));
        assert_eq!(london("01:30", "03:00").adjust(utc("2026-10-24T23:00:00Z")), utc("2026-10-26T01:30:00Z"));
        // Only Sundays, and the DST Sunday is skipped: the 8 rounds (Sat, Sun skipped, Mon..Sat) run
        // out and the last candidate, the following Sunday's start, is returned.
        let sun = window("Sun", "America/New_York", "02:30", "05:00");
        assert_eq!(sun.adjust(utc("2026-03-07T12:00:00-05:00")), utc("2026-03-15T06:30:00Z"));
    }
}
