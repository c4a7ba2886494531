//! status.completedIndexes of an Indexed job: a sorted list of intervals,
//! "1,3-5,7", as kube writes it. Parsing ignores what is malformed or
//! outside [0, completions), as kube does.

use std::collections::BTreeSet;

pub fn parse(text: &str, completions: i32) -> BTreeSet<i32> {
    let mut out = BTreeSet::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        let (Ok(lo), Ok(hi)) = (lo, hi) else {
            continue;
        };
        for i in lo.max(0)..=hi.min(completions - 1) {
            out.insert(i);
        }
    }
    out
}

pub fn format(indexes: &BTreeSet<i32>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end += 1;
            iter.next();
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_intervals() {
        let set = parse("1,3-5,7", 10);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [1, 3, 4, 5, 7]);
        assert_eq!(format(&set), "1,3-5,7");
        assert_eq!(format(&BTreeSet::new()), "");
        assert_eq!(format(&[0, 1].into()), "0-1");
    }

    #[test]
    fn ignores_bad_and_out_of_range_parts() {
        let set = parse("x,2,8-12,-1", 10);
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [2, 8, 9]);
    }
}
