//! Quantities (`500m`, `2`, `100Mi`, `1G`, `1e3`) read from a plain string
//! through f64, for reserved resources and eviction thresholds.

/// A quantity in thousandths of its unit (millicores for cpu, millibytes for
/// memory), so both cpu and byte quantities fit one parser.
pub fn parse_milli(s: &str) -> Option<i128> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == '+'))
        .unwrap_or(s.len());
    let (number, suffix) = s.split_at(split);
    let (mantissa, exponent): (f64, i32) = match suffix {
        "" => (number.parse().ok()?, 0),
        s if s.starts_with(['e', 'E']) => (number.parse().ok()?, s[1..].parse().ok()?),
        _ => (number.parse().ok()?, 0),
    };
    let scale: f64 = match suffix {
        "" => 1.0,
        s if s.starts_with(['e', 'E']) => 10f64.powi(exponent),
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        _ => return None,
    };
    let milli = (mantissa * scale * 1000.0).round();
    // `1e400` is infinite and `1e40E` past i128: no quantity we can hold
    // (the cast would saturate, and rounding up would overflow).
    if !milli.is_finite() || milli.abs() >= i128::MAX as f64 {
        return None;
    }
    Some(milli as i128)
}

/// A whole-unit quantity (bytes, pods), rounded up as the apiserver rounds.
pub fn parse_units(s: &str) -> Option<i128> {
    parse_milli(s).map(|m| m.div_euclid(1000) + i128::from(m.rem_euclid(1000) != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_suffixes() {
        assert_eq!(parse_milli("500m"), Some(500));
        assert_eq!(parse_milli("2"), Some(2000));
        assert_eq!(parse_units("100Mi"), Some(100 << 20));
        assert_eq!(parse_units("1G"), Some(1_000_000_000));
        assert_eq!(parse_units("1e3"), Some(1000));
        assert_eq!(parse_units("0.5Ki"), Some(512));
        assert_eq!(parse_milli("1x"), None);
        assert_eq!(parse_units("-1500m"), Some(-1));
    }

    /// Found by tests/fuzz (fuzz_quantity): a huge quantity overflowed
    /// `parse_units`' rounding (a panic in debug, a negative size in release).
    #[test]
    fn regression_huge_quantities_are_none_not_an_overflow() {
        assert_eq!(parse_units("1e400"), None);
        assert_eq!(parse_milli("1e400"), None);
        assert_eq!(parse_units("9e37"), None);
        assert_eq!(parse_units("170141183460469231731687303715884105727"), None);
        assert_eq!(parse_units("1e15"), Some(10i128.pow(15)));
    }
}
