//! Comparing what a case expects with what happened, and saying how they
//! differ in a way a person can read.
//!
//! Matching is by subset: a mapping in an expectation checks only the keys
//! it names; a list must have the same length and each item must match; an
//! `error` text matches when the actual error contains it (messages carry
//! details a test should not pin). Numbers compare by value.
//!
//! The diff shows the expectation and the actual value *cut to the
//! expectation's shape* (keys the test does not name are left out, so the
//! diff is about what the test checks), both as YAML, line by line:
//! `-` expected, `+` actual.

use serde_json::{Map, Value};

/// Whether `actual` satisfies `expected`.
pub fn matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => e.iter().all(|(k, ev)| {
            let av = a.get(k).unwrap_or(&Value::Null);
            if k == "error" {
                return error_matches(ev, av);
            }
            matches(ev, av)
        }),
        (Value::Object(e), Value::Null) => e.is_empty(),
        (Value::Array(e), Value::Array(a)) => {
            e.len() == a.len() && e.iter().zip(a).all(|(ev, av)| matches(ev, av))
        }
        (Value::Number(e), Value::Number(a)) => e.as_f64() == a.as_f64(),
        (e, a) => e == a,
    }
}

fn error_matches(expected: &Value, actual: &Value) -> bool {
    match (expected, actual) {
        (Value::String(e), Value::String(a)) => a.contains(e.as_str()),
        (e, a) => matches(e, a),
    }
}

/// `actual` cut to the shape of `expected`: only the keys it names, an
/// error that matches shown as expected. Extra list items stay, so a diff
/// shows them.
pub fn project(expected: &Value, actual: &Value) -> Value {
    match (expected, actual) {
        (Value::Object(e), Value::Object(a)) => {
            let mut out = Map::new();
            for (k, ev) in e {
                let av = a.get(k).cloned().unwrap_or(Value::Null);
                let shown = if k == "error" && error_matches(ev, &av) {
                    ev.clone()
                } else {
                    project(ev, &av)
                };
                out.insert(k.clone(), shown);
            }
            Value::Object(out)
        }
        (Value::Array(e), Value::Array(a)) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, av)| match e.get(i) {
                    Some(ev) => project(ev, av),
                    None => av.clone(),
                })
                .collect(),
        ),
        (Value::Number(e), Value::Number(a)) if e.as_f64() == a.as_f64() => expected.clone(),
        (_, a) => a.clone(),
    }
}

/// A line diff of the expectation against the projected actual value,
/// indented by `indent`: `  ` same, `- ` expected only, `+ ` actual only.
pub fn diff(expected: &Value, actual: &Value, indent: &str) -> String {
    let shown = project(expected, actual);
    let left = to_yaml(expected);
    let right = to_yaml(&shown);
    let a: Vec<&str> = left.lines().collect();
    let b: Vec<&str> = right.lines().collect();
    let mut out = String::new();
    for (tag, line) in line_diff(&a, &b) {
        out.push_str(indent);
        out.push_str(tag);
        out.push_str(line);
        out.push('\n');
    }
    out
}

fn to_yaml(v: &Value) -> String {
    match v {
        // A bare scalar reads better without YAML's document syntax.
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null (nothing)".to_string(),
        other => serde_yaml::to_string(other).unwrap_or_else(|_| other.to_string()),
    }
}

/// The classic longest-common-subsequence diff; inputs are small.
fn line_diff<'a>(a: &[&'a str], b: &[&'a str]) -> Vec<(&'static str, &'a str)> {
    let (n, m) = (a.len(), b.len());
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if a[i] == b[j] {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n && j < m {
        if a[i] == b[j] {
            out.push(("  ", a[i]));
            i += 1;
            j += 1;
        } else if lcs[i + 1][j] >= lcs[i][j + 1] {
            out.push(("- ", a[i]));
            i += 1;
        } else {
            out.push(("+ ", b[j]));
            j += 1;
        }
    }
    out.extend(a[i..].iter().map(|l| ("- ", *l)));
    out.extend(b[j..].iter().map(|l| ("+ ", *l)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn mappings_match_as_subsets_and_lists_item_for_item() {
        let actual = json!({"to": "+1", "text": "hi", "kind": "meta", "tags": ["a", "b"]});
        assert!(matches(&json!({"text": "hi"}), &actual));
        assert!(!matches(&json!({"text": "hello"}), &actual));
        assert!(!matches(&json!({"missing": "x"}), &actual));
        assert!(matches(&json!({"missing": null}), &actual));
        assert!(matches(&json!({"tags": ["a", "b"]}), &actual));
        assert!(!matches(&json!({"tags": ["a"]}), &actual));
        assert!(matches(&json!({"n": 2}), &json!({"n": 2.0})));
    }

    #[test]
    fn an_expected_error_matches_when_the_actual_one_contains_it() {
        let actual =
            json!({"error": "step 4 (send_message): HTTP 400: the receiver refused the request"});
        assert!(matches(&json!({"error": "HTTP 400"}), &actual));
        assert!(!matches(&json!({"error": "HTTP 500"}), &actual));
    }

    #[test]
    fn the_diff_shows_only_what_the_test_checks_and_marks_the_difference() {
        let expected = json!({"to": "+1", "text": "Hello"});
        let actual = json!({"to": "+1", "text": "Hi there", "kind": "meta", "attempts": 1});
        let d = diff(&expected, &actual, "  ");
        assert_eq!(d, "    to: '+1'\n  - text: Hello\n  + text: Hi there\n");
    }

    #[test]
    fn an_extra_actual_item_shows_up_in_the_diff() {
        let expected = json!([{"to": "+1"}]);
        let actual = json!([{"to": "+1", "text": "a"}, {"to": "+2", "text": "b"}]);
        assert!(!matches(&expected, &actual));
        let d = diff(&expected, &actual, "");
        assert!(d.contains("+ - to: '+2'"), "{d}");
        assert!(d.contains("+   text: b"), "{d}");
    }
}
