//! CronJob schedules with the syntax kube accepts (robfig/cron's standard
//! parser): five fields (minute, hour, day of month, month, day of week)
//! of `*`, `?`, numbers, names (JAN-DEC, SUN-SAT), ranges, lists and
//! `/steps`, or a descriptor (@yearly, @annually, @monthly, @weekly,
//! @daily, @midnight, @hourly, @every <duration>). As in robfig/cron, when
//! both day fields are restricted (neither starts with `*` or `?`) a day
//! matching either one matches; otherwise both must.
//!
//! Written here rather than taken from a crate: the `cron` crate wants a
//! seconds field and has no OR rule for the day fields, and `croner` would
//! bring chrono and chrono-tz beside the jiff this crate already uses for
//! time zones; the grammar is small.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ScheduleError(String);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    Cron(Fields),
    /// @every: fixed intervals (whole seconds).
    Every(SignedDuration),
}

/// One bit per allowed value; `star` when the field began with * or ?.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Field {
    bits: u64,
    star: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fields {
    minute: Field,
    hour: Field,
    dom: Field,
    month: Field,
    dow: Field,
}

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

fn err(s: impl Into<String>) -> ScheduleError {
    ScheduleError(s.into())
}

fn value(s: &str, names: &[&str], offset: u32) -> Result<u32, ScheduleError> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        return Ok(i as u32 + offset);
    }
    s.parse::<u32>()
        .map_err(|_| err(format!("failed to parse int from {s}")))
}

fn field(
    text: &str,
    min: u32,
    max: u32,
    names: &[&str],
    name_offset: u32,
) -> Result<Field, ScheduleError> {
    let mut f = Field {
        bits: 0,
        star: false,
    };
    for part in text.split(',') {
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => (r, Some(s)),
            None => (part, None),
        };
        let (lo, hi, star) = if range == "*" || range == "?" {
            (min, max, true)
        } else if let Some((a, b)) = range.split_once('-') {
            (
                value(a, names, name_offset)?,
                value(b, names, name_offset)?,
                false,
            )
        } else {
            let v = value(range, names, name_offset)?;
            // "5/10" runs from 5 to the end, as robfig/cron reads it.
            (v, if step.is_some() { max } else { v }, false)
        };
        let step = match step {
            Some(s) => s
                .parse::<u32>()
                .map_err(|_| err(format!("failed to parse int from {s}")))?,
            None => 1,
        };
        if lo < min || hi > max || lo > hi {
            return Err(err(format!("{part}: out of range ({min}-{max})")));
        }
        if step == 0 {
            return Err(err(format!(
                "step of range should be a positive number: {part}"
            )));
        }
        f.star |= star;
        let mut v = lo;
        while v <= hi {
            f.bits |= 1 << v;
            v += step;
        }
    }
    Ok(f)
}

/// A Go duration as @every takes it ("1h30m", "90s", "500ms").
fn go_duration(text: &str) -> Result<SignedDuration, ScheduleError> {
    let bad = || err(format!("failed to parse duration @every {text}"));
    let mut total = 0f64;
    let mut rest = text;
    if rest.is_empty() {
        return Err(bad());
    }
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let n: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return Err(bad()),
        };
        total += n * scale;
        rest = &rest[unit_len..];
    }
    // robfig/cron rounds @every up to whole seconds, 1 s at least.
    let secs = total.ceil().max(1.0) as i64;
    Ok(SignedDuration::from_secs(secs))
}

pub fn parse(text: &str) -> Result<Schedule, ScheduleError> {
    let text = text.trim();
    if text.starts_with("TZ=") || text.starts_with("CRON_TZ=") {
        return Err(err(
            "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
        ));
    }
    let spec = match text {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        t if t.starts_with("@every ") => {
            return go_duration(t["@every ".len()..].trim()).map(Schedule::Every);
        }
        t if t.starts_with('@') => return Err(err(format!("unrecognized descriptor: {t}"))),
        t => t,
    };
    let parts: Vec<&str> = spec.split_whitespace().collect();
    let [minute, hour, dom, month, dow] = parts[..] else {
        return Err(err(format!(
            "expected exactly 5 fields, found {}: {text}",
            parts.len()
        )));
    };
    Ok(Schedule::Cron(Fields {
        minute: field(minute, 0, 59, &[], 0)?,
        hour: field(hour, 0, 23, &[], 0)?,
        dom: field(dom, 1, 31, &[], 0)?,
        month: field(month, 1, 12, &MONTHS, 1)?,
        dow: field(dow, 0, 6, &DAYS, 0)?,
    }))
}

impl Fields {
    fn has(f: Field, v: i8) -> bool {
        v >= 0 && f.bits & (1 << v) != 0
    }

    fn day_matches(&self, d: Date) -> bool {
        let dom = Self::has(self.dom, d.day());
        let dow = Self::has(self.dow, d.weekday().to_sunday_zero_offset());
        if self.dom.star || self.dow.star {
            dom && dow
        } else {
            dom || dow
        }
    }
}

/// The first time of `schedule` strictly after `after`, in `tz`; none
/// within five years (a 30th of February).
pub fn next(schedule: &Schedule, after: Timestamp, tz: &TimeZone) -> Option<Timestamp> {
    let fields = match schedule {
        Schedule::Every(d) => {
            let next = after.checked_add(*d).ok()?;
            return Timestamp::from_second(next.as_second()).ok();
        }
        Schedule::Cron(f) => f,
    };
    let start: DateTime = after.to_zoned(tz.clone()).datetime();
    let mut day = start.date();
    for _ in 0..(366 * 5) {
        if Fields::has(fields.month, day.month()) && fields.day_matches(day) {
            for hour in 0..24i8 {
                if !Fields::has(fields.hour, hour) {
                    continue;
                }
                for minute in 0..60i8 {
                    if !Fields::has(fields.minute, minute) {
                        continue;
                    }
                    let at = day.at(hour, minute, 0, 0);
                    let Ok(zoned) = tz.to_ambiguous_zoned(at).compatible() else {
                        continue;
                    };
                    if zoned.timestamp() > after {
                        return Some(zoned.timestamp());
                    }
                }
            }
        }
        day = day.tomorrow().ok()?;
    }
    None
}

/// The time zone of a CronJob: its timeZone, or this machine's.
pub fn time_zone(name: Option<&str>) -> Result<TimeZone, ScheduleError> {
    match name {
        None => Ok(TimeZone::try_system().unwrap_or(TimeZone::UTC)),
        Some(n) => TimeZone::get(n).map_err(|e| err(format!("unknown time zone {n}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn next_utc(spec: &str, after: &str) -> String {
        next(&parse(spec).unwrap(), ts(after), &TimeZone::UTC)
            .unwrap()
            .to_string()
    }

    #[test]
    fn parses_what_kube_accepts_and_refuses_the_rest() {
        for ok in [
            "*/5 * * * *",
            "0 0 1 1 *",
            "@hourly",
            "@every 1h30m",
            "0 9 * JAN-MAR mon-fri",
            "? * * * *",
            "5/10 * * * *",
        ] {
            parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "* * * *",
            "60 * * * *",
            "* * * * 7",
            "@often",
            "TZ=UTC * * * * *",
            "*/0 * * * *",
            "x * * * *",
            "@every 3x",
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn next_times() {
        assert_eq!(
            next_utc("*/5 * * * *", "2026-01-01T10:02:30Z"),
            "2026-01-01T10:05:00Z"
        );
        assert_eq!(
            next_utc("*/5 * * * *", "2026-01-01T10:05:00Z"),
            "2026-01-01T10:10:00Z"
        );
        assert_eq!(
            next_utc("@hourly", "2026-01-01T10:00:00Z"),
            "2026-01-01T11:00:00Z"
        );
        assert_eq!(
            next_utc("@monthly", "2026-01-15T00:00:00Z"),
            "2026-02-01T00:00:00Z"
        );
        assert_eq!(
            next_utc("@weekly", "2026-01-01T00:00:00Z"),
            "2026-01-04T00:00:00Z"
        );
        assert_eq!(
            next_utc("0 0 29 2 *", "2026-01-01T00:00:00Z"),
            "2028-02-29T00:00:00Z"
        );
        assert_eq!(
            next_utc("@every 90s", "2026-01-01T00:00:00Z"),
            "2026-01-01T00:01:30Z"
        );
        assert!(
            next(
                &parse("0 0 30 2 *").unwrap(),
                ts("2026-01-01T00:00:00Z"),
                &TimeZone::UTC
            )
            .is_none()
        );
    }

    #[test]
    fn restricted_day_fields_or_and_a_star_ands() {
        // The 13th, or any Friday.
        assert_eq!(
            next_utc("0 0 13 * 5", "2026-01-01T00:00:00Z"),
            "2026-01-02T00:00:00Z"
        );
        // Every other day of the month that is also a Friday (* makes it AND).
        assert_eq!(
            next_utc("0 0 */2 * 5", "2026-01-01T00:00:00Z"),
            "2026-01-09T00:00:00Z"
        );
    }

    #[test]
    fn time_zones() {
        let Ok(tz) = time_zone(Some("America/New_York")) else {
            return; // no tz database on this machine
        };
        let got = next(
            &parse("0 9 * * *").unwrap(),
            ts("2026-07-01T00:00:00Z"),
            &tz,
        )
        .unwrap();
        assert_eq!(got.to_string(), "2026-07-01T13:00:00Z");
        assert!(time_zone(Some("Mars/Olympus")).is_err());
    }
}
