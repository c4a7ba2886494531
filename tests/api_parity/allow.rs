//! The allow-list: differences deckhand keeps on purpose, each with why.
//! An entry matches a step by prefix (`*` for any step) and a JSON
//! pointer by prefix. Keep it short: a difference that is a bug gets
//! fixed, not listed.

pub struct Allowed {
    pub step: &'static str,
    pub pointer: &'static str,
    pub why: &'static str,
}

pub const ALLOWED: &[Allowed] = &[];

pub fn allowed(step: &str, pointer: &str) -> Option<&'static str> {
    ALLOWED
        .iter()
        .find(|a| (a.step == "*" || step.starts_with(a.step)) && pointer.starts_with(a.pointer))
        .map(|a| a.why)
}
