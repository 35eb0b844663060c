//! Request schemas as strict as the validation behind them: what the annotations cannot
//! say (a pattern built from a rule, a value that is a number or a string, a time, one
//! field or another), written onto the generated document by [`requests`].
//!
//! Each rule cites the code it restates. What OpenAPI cannot state at all (a password
//! equal to the username, a batch's `end` before its `start`) is left to the description.

use serde_json::{Value, json};

/// Unicode `White_Space`, which `str::trim` and `char::is_whitespace` remove or test.
const WS: &str = r"\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// The control characters (`Cc`) `char::is_control` tests.
const CC: &str = r"\x00-\x1f\x7f-\x9f";

/// A canonical or upper-case hyphenated UUID (`ids::canonical`).
pub const UUID: &str = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$";

/// A year a stored time may have: 1970 to 9999 in UTC (`logs::parse_timestamp`), less
/// the edge years an offset could carry outside.
const YEAR: &str = "(197[1-9]|19[89][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])";

/// 1 to 128 characters, no control character, no white space at either end
/// (`SourceInput::validate`'s name).
fn bare_name() -> String {
    format!("[^{CC}{WS}]([^{CC}]{{0,126}}[^{CC}{WS}])?")
}

/// `word` in any ASCII case, as `to_ascii_lowercase` compares it.
fn any_case(word: &str) -> String {
    word.chars()
        .map(|c| {
            if c.is_ascii_alphabetic() {
                format!("[{}{}]", c.to_ascii_lowercase(), c.to_ascii_uppercase())
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// A level name or syslog severity as `logs::normalize_level` reads a string.
fn level_text() -> String {
    let names = [
        "trace",
        "debug",
        "info",
        "information",
        "informational",
        "notice",
        "warn",
        "warning",
        "err",
        "error",
        "crit",
        "critical",
        "fatal",
        "alert",
        "emerg",
        "emergency",
        "panic",
    ];
    let names: Vec<String> = names.iter().map(|n| any_case(n)).collect();
    format!(r"^[{WS}]*(\+?0*[0-7]|{})[{WS}]*$", names.join("|"))
}

/// A query's time (`time::parse_time`): RFC 3339, or a finite number of Unix seconds in
/// Rust's float syntax (bounded in digits, so that it is finite).
fn query_time() -> Value {
    let number = r"^[+-]?(([0-9]{1,300}(\.[0-9]*)?|\.[0-9]+)|([0-9]{1,15}(\.[0-9]*)?|\.[0-9]+)[eE][+-]?[0-9]{1,2})$";
    json!({
        "type": "string",
        "description": "RFC 3339, or Unix seconds",
        "anyOf": [{"format": "date-time"}, {"pattern": number}],
    })
}

/// A stored time (`logs::parse_timestamp`): Unix seconds from 0 to 253402300799 as a
/// number or a string, or RFC 3339 from 1970 to 9999.
fn stored_time(nullable: bool) -> Value {
    let seconds = format!(r"^[{WS}]*\+?([0-9]{{1,11}}(\.[0-9]*)?|\.[0-9]+)[{WS}]*$");
    let mut any = vec![
        json!({"type": "number", "minimum": 0, "maximum": 253_402_300_799u64}),
        json!({"type": "string", "pattern": seconds}),
        json!({"type": "string", "format": "date-time", "pattern": format!("^{YEAR}-")}),
    ];
    if nullable {
        any.insert(0, json!({"type": "null"}));
    }
    json!({"description": "RFC 3339 (1970 to 9999), or Unix seconds as a number or a string", "anyOf": any})
}

/// `samples::parse_step`: seconds (at least 1 ms, and finite in microseconds: the
/// maximum is the largest `f64` whose product with 10^6 is), or a number and a unit.
fn step() -> Value {
    let text = format!(r"^[{WS}]*0*[1-9][0-9]{{0,11}}(\.[0-9]*)?(ms|s|m|h|d)?[{WS}]*$");
    json!({
        "description": "Seconds (a number, at least 0.001), or a duration: `\"500ms\"`, `\"60s\"`, `\"5m\"`, \
                        `\"1h\"`, `\"1d\"`. At most 11,000 steps per series, and `end` not before `start` \
                        (neither can be stated here).",
        "anyOf": [
            {"type": "number", "minimum": 0.001, "maximum": 1.797_693_134_862_315_4e302},
            {"type": "string", "pattern": text},
        ],
    })
}

/// `net::Cidr`: an address (Rust's parsers: no leading zeros in IPv4), or one with a
/// prefix length, with white space around it.
fn cidr() -> String {
    let octet = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
    let v4 = format!(r"{octet}(\.{octet}){{3}}");
    let h = "[0-9a-fA-F]{1,4}";
    let mut v6 = vec![
        format!("({h}:){{7}}{h}"),
        format!("({h}:){{1,7}}:"),
        format!("({h}:){{1,6}}:{h}"),
        format!("({h}:){{1,5}}(:{h}){{1,2}}"),
        format!("({h}:){{1,4}}(:{h}){{1,3}}"),
        format!("({h}:){{1,3}}(:{h}){{1,4}}"),
        format!("({h}:){{1,2}}(:{h}){{1,5}}"),
        format!("{h}:(:{h}){{1,6}}"),
        format!(":((:{h}){{1,7}}|:)"),
        format!("({h}:){{6}}{v4}"),
        format!("::({h}:){{0,5}}{v4}"),
    ];
    for k in 1..=4 {
        v6.push(format!("({h}:){{{k}}}:({h}:){{0,{}}}{v4}", 5 - k));
    }
    let p4 = r"\+?0*([0-9]|[12][0-9]|3[0-2])";
    let p6 = r"\+?0*([0-9]|[1-9][0-9]|1[01][0-9]|12[0-8])";
    format!("^[{WS}]*({v4}(/{p4})?|({})(/{p6})?)[{WS}]*$", v6.join("|"))
}

/// `users::validate_email`: at most 255 bytes, no white space, a non-empty local part,
/// and a domain with a dot, not at either end.
fn email() -> Value {
    json!({
        "type": "string",
        "maxLength": 255,
        "pattern": format!(r"^[^@{WS}]+@[^.{WS}][^{WS}]*\.[^{WS}]*[^.{WS}]$"),
    })
}

/// `auth::password::check_policy`, less what a schema cannot say (8 characters as NFC
/// counts them, at most 1024 bytes, not the username).
fn password(nullable: bool) -> Value {
    json!({
        "type": if nullable { json!(["string", "null"]) } else { json!("string") },
        "minLength": 8,
        "maxLength": 1024,
        "description": "At least 8 characters (NFC), at most 1024 bytes, not the username in any case",
    })
}

fn roles() -> Value {
    json!({
        "type": ["array", "null"],
        "minItems": 1,
        "items": {"type": "string", "enum": ["admin", "maintainer", "viewer"]},
    })
}

/// What changes: a JSON pointer into the document and the schema keywords written there
/// (`Set` replaces the schema, `Merge` adds keywords to it).
enum Rule {
    Set(String, Value),
    Merge(String, Value),
}

fn property(schema: &str, field: &str) -> String {
    format!("/components/schemas/{schema}/properties/{field}")
}

fn rules(api_key_max_days: u32) -> Vec<Rule> {
    use Rule::{Merge, Set};
    let trimmed_name = format!("^[{WS}]*{}[{WS}]*$", bare_name());
    let username = json!({"type": "string", "pattern": "^[A-Za-z0-9._-]{3,64}$"});
    let name_100 = |nullable: bool| json!({"type": if nullable { json!(["string", "null"]) } else { json!("string") }, "maxLength": 100});
    let metric_name = "^[a-zA-Z_:][a-zA-Z0-9_:]*$";
    let label_name = "^(_|_[a-zA-Z0-9][a-zA-Z0-9_]{0,126}|[a-zA-Z][a-zA-Z0-9_]{0,127})$";
    let level = json!({
        "description": "A level name (debug, info, notice, warning, error, critical, alert, emergency, \
                        or an alias) or a syslog severity 0-7",
        "anyOf": [
            {"type": "null"},
            // An enum, not an integer range: `3.0` is an integer to a schema, not to `as_u64`.
            {"enum": [0, 1, 2, 3, 4, 5, 6, 7]},
            {"type": "string", "pattern": level_text()},
        ],
    });
    let non_blank = format!("[^{WS}]");
    vec![
        // auth
        Merge(
            "/components/schemas/LoginRequest".into(),
            json!({
                "description": "`username`, or `email` when `username` is absent or null: not blank",
                "anyOf": [
                    {"required": ["username"], "properties": {"username": {"type": "string", "pattern": non_blank}}},
                    {"required": ["email"], "properties": {
                        "username": {"type": "null"}, "email": {"type": "string", "pattern": non_blank}}},
                ],
            }),
        ),
        Set(property("ChangePasswordRequest", "new_password"), password(false)),
        // The pattern bounds the length: what counts is the name without its surrounding spaces.
        Set(property("CreateKeyRequest", "name"), json!({"type": "string", "pattern": trimmed_name})),
        Set(property("CreateKeyRequest", "roles"), roles()),
        Merge(property("CreateKeyRequest", "expires_in_days"), json!({"maximum": api_key_max_days})),
        // users
        Set(property("CreateUser", "username"), username),
        Set(property("CreateUser", "email"), email()),
        Set(property("CreateUser", "password"), password(false)),
        Set(property("CreateUser", "first_name"), name_100(false)),
        Set(property("CreateUser", "last_name"), name_100(false)),
        Set(property("CreateUser", "roles"), roles()),
        Set(property("UpdateUser", "email"), {
            let mut e = email();
            e["type"] = json!(["string", "null"]);
            e
        }),
        Set(property("UpdateUser", "password"), password(true)),
        Set(property("UpdateUser", "first_name"), name_100(true)),
        Set(property("UpdateUser", "last_name"), name_100(true)),
        Set(property("UpdateUser", "roles"), roles()),
        // sources and their keys
        Merge(property("SourceInput", "name"), json!({"pattern": format!("^{}$", bare_name())})),
        Set(
            property("SourceInput", "config"),
            json!({"type": ["object", "null"], "description": "A JSON object, at most 64 KiB and 30 levels deep"}),
        ),
        Merge(property("SourceInput", "allowed_cidrs"), json!({"items": {"type": "string", "pattern": cidr()}})),
        Set(property("CreateKey", "name"), json!({"type": "string", "pattern": trimmed_name})),
        // logs
        Set(property("LogInput", "timestamp"), stored_time(true)),
        Set(property("LogInput", "level"), level.clone()),
        Set(property("LogInput", "message"), json!({"type": "string", "minLength": 1, "maxLength": 65_536})),
        Merge(property("LogInput", "hostname"), json!({"maxLength": 255})),
        Merge(property("LogInput", "application"), json!({"maxLength": 255})),
        Set(
            property("LogInput", "attributes"),
            json!({"type": ["object", "null"], "description": "A JSON object, at most 16 KiB and 30 levels deep"}),
        ),
        Merge(property("LogBatch", "source_id"), json!({"pattern": UUID})),
        // metrics
        Merge(property("MetricBatch", "source_id"), json!({"pattern": UUID})),
        Set(property("SampleInput", "name"), json!({"type": "string", "maxLength": 255, "pattern": metric_name})),
        Set(
            property("SampleInput", "labels"),
            json!({
                "type": ["object", "null"],
                "maxProperties": 32,
                "propertyNames": {"type": "string", "pattern": label_name},
                "additionalProperties": {"anyOf": [
                    {"type": "string", "maxLength": 1024}, {"type": "number"}, {"type": "boolean"}]},
            }),
        ),
        Set(property("SampleInput", "value"), json!({"type": "number"})),
        Set(property("SampleInput", "timestamp"), stored_time(true)),
        Set(property("RangeQuery", "start"), stored_time(false)),
        Set(property("RangeQuery", "end"), {
            let mut end = stored_time(false);
            end["description"] = json!("As `start`; not before it");
            end
        }),
        Set(property("RangeQuery", "step"), step()),
    ]
}

/// The query and path parameters' rules, by name, wherever they appear.
fn parameter(name: &str, location: &str, path: &str) -> Option<Value> {
    let uuid = json!({"type": "string", "pattern": UUID});
    Some(match (location, name) {
        ("path", _) => uuid,
        ("query", "user_id" | "source_id") => uuid,
        ("query", "since" | "until") => query_time(),
        ("query", "level") => json!({"type": "string", "pattern": level_text()}),
        ("query", "type") => json!({"type": "string", "enum": crate::service::sources::SOURCE_TYPES}),
        ("query", "enabled") => {
            let words: Vec<String> = ["true", "1", "yes", "false", "0", "no"].iter().map(|w| any_case(w)).collect();
            json!({"type": "string", "pattern": format!("^({})$", words.join("|"))})
        }
        ("query", "action") => json!({"type": "string", "pattern": format!(r"^([^{WS}]([\s\S]*[^{WS}])?)?$")}),
        ("query", "name") if path == "/api/v1/metrics" => {
            json!({"type": "string", "pattern": "^[a-zA-Z_:][a-zA-Z0-9_:]*$"})
        }
        ("query", "cursor") => json!({
            "type": "string",
            "description": "The `next_cursor` of the previous page, as the server issued it",
            "pattern": format!("^[{WS}]*[A-Za-z0-9_-]+[{WS}]*$"),
        }),
        _ => return None,
    })
}

/// Writes the rules onto `doc`; returns the pointers that named nothing (a renamed
/// schema or field), which the tests require to be none.
pub fn requests(doc: &mut Value, api_key_max_days: u32) -> Vec<String> {
    let mut missing = Vec::new();
    for rule in rules(api_key_max_days) {
        let (Rule::Set(pointer, value) | Rule::Merge(pointer, value)) = &rule;
        let Some(target) = doc.pointer_mut(pointer) else {
            missing.push(pointer.clone());
            continue;
        };
        match (&rule, target.as_object_mut(), value) {
            (Rule::Merge(..), Some(object), Value::Object(keywords)) => {
                object.extend(keywords.clone());
            }
            _ => {
                // Keep the field's own description when the rule brings none.
                let description = target.get("description").cloned();
                *target = value.clone();
                if let (Some(description), Some(object)) = (description, target.as_object_mut()) {
                    object.entry("description").or_insert(description);
                }
            }
        }
    }
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else { return missing };
    for (path, item) in paths.iter_mut() {
        for operation in item.as_object_mut().into_iter().flat_map(|item| item.values_mut()) {
            for parameter_ in operation.get_mut("parameters").and_then(Value::as_array_mut).into_iter().flatten() {
                let (Some(name), Some(location)) = (parameter_["name"].as_str(), parameter_["in"].as_str()) else {
                    continue;
                };
                if let Some(schema) = parameter(name, location, path) {
                    parameter_["schema"] = schema;
                }
            }
        }
    }
    missing
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_names_a_schema_of_the_document() {
        let (_, doc) = crate::router::api().split_for_parts();
        let mut doc = serde_json::to_value(&doc).unwrap();
        assert_eq!(requests(&mut doc, 365), Vec::<String>::new());
    }
}
