//! A CronJob's schedule checked as kube's cron parser (robfig/cron's
//! standard parser) checks it: five fields or an `@` descriptor, with an
//! optional `TZ=`/`CRON_TZ=` prefix, and its error messages.

const FIELDS: [(u32, u32, &[&str]); 5] = [
    (0, 59, &[]),
    (0, 23, &[]),
    (1, 31, &[]),
    (
        1,
        12,
        &[
            "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
        ],
    ),
    (0, 6, &["sun", "mon", "tue", "wed", "thu", "fri", "sat"]),
];

const DESCRIPTORS: &[&str] = &[
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];

/// Ok if the schedule parses; else the parser's message.
pub fn parse(schedule: &str) -> Result<(), String> {
    let mut spec = schedule.trim();
    for prefix in ["TZ=", "CRON_TZ="] {
        if let Some(rest) = spec.strip_prefix(prefix) {
            spec = rest.split_once(' ').map_or("", |(_, s)| s).trim();
        }
    }
    if spec.starts_with('@') {
        if DESCRIPTORS.contains(&spec) || spec.starts_with("@every ") {
            return Ok(());
        }
        return Err(format!("unrecognized descriptor: {spec}"));
    }
    let fields: Vec<&str> = spec.split_whitespace().collect();
    if fields.len() != 5 {
        return Err(format!(
            "expected exactly 5 fields, found {}: [{}]",
            fields.len(),
            fields.join(" ")
        ));
    }
    for (field, (min, max, names)) in fields.iter().zip(FIELDS) {
        for range in field.split(',') {
            check_range(range, min, max, names)?;
        }
    }
    Ok(())
}

fn check_range(expr: &str, min: u32, max: u32, names: &[&str]) -> Result<(), String> {
    let (range, step) = match expr.split_once('/') {
        Some((r, s)) => (r, Some(s)),
        None => (expr, None),
    };
    let (start, end) = if range == "*" || range == "?" {
        (min, max)
    } else {
        let (lo, hi) = match range.split_once('-') {
            Some((lo, hi)) => (lo, Some(hi)),
            None => (range, None),
        };
        let lo = value(lo, names)?;
        let hi = match hi {
            Some(hi) => value(hi, names)?,
            None => lo,
        };
        (lo, hi)
    };
    if let Some(step) = step {
        let n = number(step)?;
        if n == 0 {
            return Err(format!("step of range should be a positive number: {expr}"));
        }
    }
    if start < min {
        return Err(format!(
            "beginning of range ({start}) below minimum ({min}): {expr}"
        ));
    }
    if end > max {
        return Err(format!(
            "end of range ({end}) above maximum ({max}): {expr}"
        ));
    }
    if start > end {
        return Err(format!(
            "beginning of range ({start}) beyond end of range ({end}): {expr}"
        ));
    }
    Ok(())
}

fn value(s: &str, names: &[&str]) -> Result<u32, String> {
    let lower = s.to_ascii_lowercase();
    if let Some(i) = names.iter().position(|n| *n == lower) {
        let base = if names.len() == 12 { 1 } else { 0 };
        return Ok(i as u32 + base);
    }
    number(s)
}

fn number(s: &str) -> Result<u32, String> {
    s.parse::<u32>().map_err(|_| {
        format!("failed to parse int from {s}: strconv.Atoi: parsing \"{s}\": invalid syntax")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules() {
        assert!(parse("*/5 * * * *").is_ok());
        assert!(parse("0 9-17 * jan-mar mon,fri").is_ok());
        assert!(parse("@hourly").is_ok());
        assert!(parse("TZ=Etc/UTC 0 0 * * *").is_ok());
        assert_eq!(
            parse("61 * * * *").unwrap_err(),
            "end of range (61) above maximum (59): 61"
        );
        assert_eq!(
            parse("bogus").unwrap_err(),
            "expected exactly 5 fields, found 1: [bogus]"
        );
    }
}
