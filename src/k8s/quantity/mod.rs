//! Kubernetes resource quantities ("100m", "1.5Gi", "2e3"); part of the `k8s`
//! leaf that node, apiserver and controllers use.
//!
//! This file reads a [`Quantity`] as the apimachinery methods the kubelet
//! calls do: `MilliValue()` and `Value()`, both rounding up. Exact decimal
//! arithmetic (no floats), so "0.1" is 100m. [`approx`] reads a plain string
//! through f64, rounding to nearest (reserved resources, eviction thresholds,
//! scheduler and PV sizes).

mod approx;

pub use approx::{parse_milli, parse_units};

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// A parsed quantity: `mantissa * 10^exp10 * 2^exp2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Parsed {
    mantissa: i128,
    exp10: i32,
    exp2: u32,
}

fn parse(text: &str) -> Option<Parsed> {
    let text = text.trim();
    let (negative, rest) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    if number.is_empty() || number == "." {
        return None;
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if fraction.contains('.') {
        return None;
    }
    let digits = format!("{whole}{fraction}");
    let digits = digits.trim_start_matches('0');
    if digits.len() > 30 {
        return None;
    }
    let mut mantissa: i128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    if negative {
        mantissa = -mantissa;
    }
    let mut exp10 = -(fraction.len() as i32);
    let mut exp2 = 0;
    match suffix {
        "" => {}
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        _ => {
            let exponent = suffix.strip_prefix(['e', 'E'])?;
            exp10 += exponent.parse::<i32>().ok()?;
        }
    }
    Some(Parsed {
        mantissa,
        exp10,
        exp2,
    })
}

/// The value scaled by 10^scale, rounded up (towards +inf), saturating.
fn scaled(text: &str, scale: i32) -> Option<i64> {
    let p = parse(text)?;
    let mut value = p.mantissa.checked_mul(1i128.checked_shl(p.exp2)?)?;
    let exp = p.exp10 + scale;
    if exp >= 0 {
        for _ in 0..exp {
            value = match value.checked_mul(10) {
                Some(v) => v,
                None => return Some(if value < 0 { i64::MIN } else { i64::MAX }),
            };
        }
    } else {
        let divisor = 10i128.checked_pow(exp.unsigned_abs()).unwrap_or(i128::MAX);
        let quotient = value.div_euclid(divisor);
        value = if value.rem_euclid(divisor) != 0 {
            quotient + 1
        } else {
            quotient
        };
    }
    Some(value.clamp(i64::MIN as i128, i64::MAX as i128) as i64)
}

/// Quantity.MilliValue(): 0 for a quantity that does not parse (the API
/// server never stores one).
pub fn milli_value(q: &Quantity) -> i64 {
    scaled(&q.0, 3).unwrap_or(0)
}

/// Quantity.Value(), rounded up.
pub fn value(q: &Quantity) -> i64 {
    scaled(&q.0, 0).unwrap_or(0)
}

/// Exact comparison of two quantities (Quantity.Cmp), by value in nano units.
pub fn cmp(a: &Quantity, b: &Quantity) -> std::cmp::Ordering {
    scaled(&a.0, 9)
        .unwrap_or(0)
        .cmp(&scaled(&b.0, 9).unwrap_or(0))
}

/// Quantity.Sign() > 0
pub fn is_positive(q: &Quantity) -> bool {
    parse(&q.0).is_some_and(|p| p.mantissa > 0)
}

/// a + b, kept exact in nano units (enough for cpu and memory sums).
pub fn add(a: &Quantity, b: &Quantity) -> Quantity {
    let nanos = scaled(&a.0, 9)
        .unwrap_or(0)
        .saturating_add(scaled(&b.0, 9).unwrap_or(0));
    Quantity(format!("{nanos}n"))
}

/// Adds `q` to `list[name]` (inserting it when absent).
pub fn add_to(list: &mut std::collections::BTreeMap<String, Quantity>, name: &str, q: &Quantity) {
    let sum = match list.get(name) {
        Some(old) => add(old, q),
        None => q.clone(),
    };
    list.insert(name.to_string(), sum);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Quantity {
        Quantity(s.into())
    }

    #[test]
    fn milli_values() {
        assert_eq!(milli_value(&q("100m")), 100);
        assert_eq!(milli_value(&q("0.1")), 100);
        assert_eq!(milli_value(&q("1")), 1000);
        assert_eq!(milli_value(&q("2.5")), 2500);
        assert_eq!(milli_value(&q("1500u")), 2, "rounds up");
        assert_eq!(milli_value(&q("1n")), 1, "rounds up");
        assert_eq!(milli_value(&q("1e3")), 1_000_000);
        assert_eq!(milli_value(&q("bogus")), 0);
    }

    #[test]
    fn values() {
        assert_eq!(value(&q("64Mi")), 64 << 20);
        assert_eq!(value(&q("1Gi")), 1 << 30);
        assert_eq!(value(&q("1.5Gi")), 3 << 29);
        assert_eq!(value(&q("128M")), 128_000_000);
        assert_eq!(value(&q("100m")), 1, "rounds up");
        assert_eq!(value(&q("0")), 0);
        assert_eq!(value(&q("12e6")), 12_000_000);
        assert_eq!(value(&q("1Ei")), 1 << 60);
        assert_eq!(value(&q("100E")), i64::MAX, "saturates");
    }

    #[test]
    fn compare_and_add() {
        assert_eq!(cmp(&q("1"), &q("1000m")), std::cmp::Ordering::Equal);
        assert_eq!(cmp(&q("1Ki"), &q("1k")), std::cmp::Ordering::Greater);
        assert_eq!(milli_value(&add(&q("100m"), &q("0.5"))), 600);
        assert!(is_positive(&q("1m")));
        assert!(!is_positive(&q("0")));
        assert!(!is_positive(&q("-1")));
    }
}
