//! Label-set helpers: matching, signatures and Prometheus' text form.

use promql_parser::label::{Matcher, Matchers};

use super::Labels;

pub(crate) const METRIC_NAME: &str = "__name__";

/// True when every matcher accepts `labels` (a missing label reads as "").
pub(crate) fn matchers_match(matchers: &Matchers, labels: &Labels) -> bool {
    let all = |ms: &[Matcher]| ms.iter().all(|m| m.is_match(labels.get(&m.name).map(String::as_str).unwrap_or("")));
    if matchers.or_matchers.is_empty() {
        all(&matchers.matchers)
    } else {
        matchers.or_matchers.iter().any(|group| all(group))
    }
}

/// `labels` without `__name__`.
pub(crate) fn drop_name(labels: &Labels) -> Labels {
    let mut out = labels.clone();
    out.remove(METRIC_NAME);
    out
}

/// Sets `name` to `value`, or removes it when `value` is empty (Prometheus' builder rule).
pub(crate) fn set_or_remove(labels: &mut Labels, name: &str, value: &str) {
    if value.is_empty() {
        labels.remove(name);
    } else {
        labels.insert(name.to_string(), value.to_string());
    }
}

/// A key identifying the values of `names` (`on`/`by`), missing labels reading as "".
pub(crate) fn key_on(labels: &Labels, names: &[String]) -> String {
    let mut key = String::new();
    for name in names {
        if let Some(value) = labels.get(name) {
            key.push_str(name);
            key.push('\u{fffe}');
            key.push_str(value);
        }
        key.push('\u{ffff}');
    }
    key
}

/// A key identifying every label but `names` and `__name__` (`ignoring`/`without`).
pub(crate) fn key_without(labels: &Labels, names: &[String]) -> String {
    let mut key = String::new();
    for (name, value) in labels {
        if name == METRIC_NAME || names.iter().any(|n| n == name) {
            continue;
        }
        key.push_str(name);
        key.push('\u{fffe}');
        key.push_str(value);
        key.push('\u{ffff}');
    }
    key
}

/// Prometheus' `labels.String()`: `{a="1", b="2"}`.
pub(crate) fn to_prom_string(labels: &Labels) -> String {
    let parts: Vec<String> = labels.iter().map(|(name, value)| format!("{name}={}", go_quote(value))).collect();
    format!("{{{}}}", parts.join(", "))
}

/// Go's `strconv.Quote` for the characters label values usually hold.
fn go_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Prometheus' label name rule: `[a-zA-Z_][a-zA-Z0-9_]*`.
pub(crate) fn is_valid_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    match chars.next() {
        Some(c) if c.is_ascii_alphabetic() || c == '_' => {}
        _ => return false,
    }
    chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn prom_string_quotes_values_and_keeps_the_name() {
        let l = labels(&[("__name__", "up"), ("job", "a\"b")]);
        assert_eq!(to_prom_string(&l), r#"{__name__="up", job="a\"b"}"#);
    }

    #[test]
    fn keys_ignore_the_metric_name_only_without() {
        let a = labels(&[("__name__", "x"), ("job", "a")]);
        let b = labels(&[("__name__", "y"), ("job", "a")]);
        assert_eq!(key_without(&a, &[]), key_without(&b, &[]));
        let names = vec!["__name__".to_string()];
        assert_ne!(key_on(&a, &names), key_on(&b, &names));
    }

    #[test]
    fn label_names_follow_prometheus_rule() {
        assert!(is_valid_label_name("_a1"));
        assert!(!is_valid_label_name("1a"));
        assert!(!is_valid_label_name("a-b"));
        assert!(!is_valid_label_name(""));
    }
}
