//! Elasticsearch `_bulk`: the NDJSON body read into actions, each document mapped onto a
//! log entry, and the answers (the bulk response, errors) in Elasticsearch's own forms.
//!
//! A body is a sequence of action lines (`{"index": {"_index": "app", "_id": "1"}}`), each
//! followed by a document line, except `delete`, which has none. `index` and `create`
//! store their document; `update` and `delete` are refused per item, since stored logs
//! do not change. Whatever is wrong with one action (a malformed line, a document without
//! a message, an unreadable `@timestamp`) refuses that action alone, with a 400 item: the
//! others are still stored. Only a body with no action at all is refused as a whole.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::{Map, Value};

use crate::{service::logs::Level, time};

/// The document fields read as the message, in order of preference (the first that is a
/// non-empty string).
pub const MESSAGE_FIELDS: [&str; 3] = ["message", "log", "msg"];
/// The document fields read as the level, in order of preference (the first that is a
/// known level name or a syslog severity; a word KillKrill does not know stays an attribute).
pub const LEVEL_FIELDS: [&str; 2] = ["log.level", "level"];

/// `error.type` of a document that cannot be stored.
pub const MAPPER_PARSING: &str = "mapper_parsing_exception";
/// `error.type` of an action KillKrill does not perform, or that misses what it needs.
pub const VALIDATION: &str = "action_request_validation_exception";
/// `error.type` of a line that is not an action.
pub const ILLEGAL_ARGUMENT: &str = "illegal_argument_exception";

/// What an `update` or `delete` action is answered.
pub const NO_CHANGES: &str = "KillKrill does not change stored logs";

/// A refusal in Elasticsearch's terms: an HTTP status, an `error.type` and a reason. It is
/// either one action's (its item carries it) or the whole request's ([`Failure::body`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub status: u16,
    pub kind: &'static str,
    pub reason: String,
}

impl Failure {
    /// A 400 of `kind`.
    pub fn invalid(kind: &'static str, reason: impl Into<String>) -> Self {
        Failure { status: 400, kind, reason: reason.into() }
    }

    /// The error body of a refused request:
    /// `{"error":{"root_cause":[{"type","reason"}],"type","reason"},"status"}`.
    pub fn body(&self) -> Vec<u8> {
        #[derive(Serialize)]
        struct Cause<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            reason: &'a str,
        }
        #[derive(Serialize)]
        struct Error<'a> {
            root_cause: [Cause<'a>; 1],
            #[serde(rename = "type")]
            kind: &'a str,
            reason: &'a str,
        }
        #[derive(Serialize)]
        struct Body<'a> {
            error: Error<'a>,
            status: u16,
        }
        let cause = || Cause { kind: self.kind, reason: &self.reason };
        let body =
            Body { error: Error { root_cause: [cause()], kind: self.kind, reason: &self.reason }, status: self.status };
        serde_json::to_vec(&body).unwrap_or_default()
    }
}

/// One action of a bulk body.
#[derive(Debug)]
pub struct Action {
    /// The action's name as sent (`index`, `create`, `update`, `delete`; `index` for a
    /// line that could not be read): the key of its item in the answer.
    pub name: String,
    /// `_index` of the action line, else the index of the URL.
    pub index: Option<String>,
    /// `_id` of the action line.
    pub id: Option<String>,
    /// The document to store, or why the action is refused.
    pub outcome: Result<Document, Failure>,
}

/// A document read as a log entry.
#[derive(Debug, PartialEq)]
pub struct Document {
    /// Microseconds since the Unix epoch, from `@timestamp`; `None` for the time of receipt.
    pub timestamp: Option<i64>,
    pub level: Option<Level>,
    pub message: String,
    /// `host.name`.
    pub hostname: Option<String>,
    /// `service.name`.
    pub application: Option<String>,
    /// `index` (the action's index) and `service_name`.
    pub labels: BTreeMap<String, String>,
    /// Every other field under its dotted path (`{"http": {"method": "GET"}}` →
    /// `"http.method": "GET"`); arrays stay arrays.
    pub attributes: Map<String, Value>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Index,
    Create,
    Update,
    Delete,
}

impl Op {
    fn of(name: &str) -> Option<Op> {
        Some(match name {
            "index" => Op::Index,
            "create" => Op::Create,
            "update" => Op::Update,
            "delete" => Op::Delete,
            _ => return None,
        })
    }

    /// Whether a document line follows the action line.
    fn has_document(self) -> bool {
        self != Op::Delete
    }
}

/// An action line read: its name, operation if known, `_index` and `_id`, or why the line
/// is not a usable action.
struct Head {
    name: String,
    op: Option<Op>,
    index: Option<String>,
    id: Option<String>,
    problem: Option<Failure>,
}

impl Head {
    fn read(line: &[u8], number: usize) -> Head {
        let malformed = |name: &str, op, why: String| Head {
            name: name.to_owned(),
            op,
            index: None,
            id: None,
            problem: Some(Failure::invalid(
                ILLEGAL_ARGUMENT,
                format!("Malformed action/metadata line [{number}], {why}"),
            )),
        };
        let map = match serde_json::from_slice::<Map<String, Value>>(line) {
            Ok(map) => map,
            Err(err) => return malformed("index", None, format!("expected a JSON object: {err}")),
        };
        let mut entries = map.into_iter();
        let (name, meta) = match (entries.next(), entries.next()) {
            (Some(entry), None) => entry,
            _ => return malformed("index", None, "expected one action (create, delete, index or update)".to_owned()),
        };
        let Some(op) = Op::of(&name) else {
            return malformed(
                &name,
                None,
                format!("expected one of [create, delete, index, update] but found [{name}]"),
            );
        };
        let Value::Object(meta) = meta else {
            return malformed(&name, Some(op), format!("expected an object under [{name}]"));
        };
        let index = match meta.get("_index") {
            None | Some(Value::Null) => None,
            Some(Value::String(index)) if !index.is_empty() => Some(index.clone()),
            Some(_) => return malformed(&name, Some(op), "[_index] must be a non-empty string".to_owned()),
        };
        let id = match meta.get("_id") {
            None | Some(Value::Null) => None,
            Some(Value::String(id)) if !id.is_empty() => Some(id.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => return malformed(&name, Some(op), "[_id] must be a non-empty string".to_owned()),
        };
        Head { name, op: Some(op), index, id, problem: None }
    }

    /// Whether `line` reads as an action line (used to find the next action after a line
    /// that could not be read: the line after it is its document unless it is an action).
    fn looks_like_action(line: &[u8]) -> bool {
        let Ok(map) = serde_json::from_slice::<Map<String, Value>>(line) else {
            return false;
        };
        map.len() == 1 && map.iter().all(|(name, meta)| Op::of(name).is_some() && meta.is_object())
    }
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

/// Reads a `_bulk` body: one [`Action`] per action line, in order. `url_index` is the
/// `{index}` of `/{index}/_bulk`, used by actions that name none. Lines end with `\n` (or
/// `\r\n`); the last one may lack it; blank lines between actions are skipped. Only a body
/// with no action is refused as a whole.
pub fn parse_bulk(body: &[u8], url_index: Option<&str>) -> Result<Vec<Action>, Failure> {
    // The newline ending the last line starts no line of its own.
    let body = body.strip_suffix(b"\n").unwrap_or(body);
    let mut lines =
        body.split(|&b| b == b'\n').map(|line| line.strip_suffix(b"\r").unwrap_or(line)).enumerate().peekable();
    let mut actions = Vec::new();
    while let Some((at, line)) = lines.next() {
        if is_blank(line) {
            continue;
        }
        let number = at + 1;
        let head = Head::read(line, number);
        let index = head.index.or_else(|| url_index.map(str::to_owned));
        let source_line = match head.op {
            Some(op) if op.has_document() => Some(lines.next()),
            Some(_) => None,
            // Not knowing the action, the next line is taken as its document unless it
            // reads as an action itself.
            None => lines.next_if(|(_, next)| !is_blank(next) && !Head::looks_like_action(next)).map(Some),
        };
        let outcome = match (head.problem, head.op) {
            (Some(problem), _) => Err(problem),
            (None, Some(Op::Update | Op::Delete)) => Err(Failure::invalid(
                VALIDATION,
                format!("{NO_CHANGES}: the [{}] action is not supported (line [{number}])", head.name),
            )),
            (None, _) => match (&index, source_line.flatten()) {
                (None, _) => Err(Failure::invalid(VALIDATION, "Validation Failed: 1: index is missing;")),
                (Some(_), None) => Err(Failure::invalid(
                    ILLEGAL_ARGUMENT,
                    format!("The [{}] action on line [{number}] is not followed by a document", head.name),
                )),
                (Some(index), Some((at, line))) => document(line, at + 1, index),
            },
        };
        actions.push(Action { name: head.name, index, id: head.id, outcome });
    }
    if actions.is_empty() {
        return Err(Failure::invalid(VALIDATION, "Validation Failed: 1: no requests added;"));
    }
    Ok(actions)
}

/// Reads the body of a single-document request (`/{index}/_doc`): one JSON object, on
/// any number of lines.
pub fn parse_document(body: &[u8], index: &str) -> Result<Document, Failure> {
    document(body, 1, index)
}

/// Reads the document on line `number`, of an action into `index`.
fn document(line: &[u8], number: usize, index: &str) -> Result<Document, Failure> {
    let invalid = |why: String| {
        Failure::invalid(MAPPER_PARSING, format!("failed to parse the document on line [{number}]: {why}"))
    };
    if is_blank(line) {
        return Err(invalid("the line is empty".to_owned()));
    }
    let source = serde_json::from_slice::<Map<String, Value>>(line).map_err(|err| invalid(err.to_string()))?;
    let mut fields = Map::new();
    flatten(String::new(), source, &mut fields);

    let timestamp = match fields.remove("@timestamp") {
        None | Some(Value::Null) => None,
        Some(value) => Some(timestamp_of(&value).map_err(|why| {
            Failure::invalid(
                MAPPER_PARSING,
                format!("failed to parse field [@timestamp] of type [date] on line [{number}]: {why}"),
            )
        })?),
    };
    // Vector's default schema names the time `timestamp`: read when `@timestamp` is
    // missing and it reads as a time, else it stays an attribute.
    let timestamp = timestamp.or_else(|| {
        let micros = timestamp_of(fields.get("timestamp")?).ok()?;
        fields.remove("timestamp");
        Some(micros)
    });
    let message_field = MESSAGE_FIELDS
        .into_iter()
        .find(|name| fields.get(*name).and_then(Value::as_str).is_some_and(|text| !text.is_empty()))
        .ok_or_else(|| {
            Failure::invalid(
                MAPPER_PARSING,
                format!("the document on line [{number}] has no [message] field (nor [log] or [msg]) holding text"),
            )
        })?;
    let message = take_string(&mut fields, message_field).unwrap_or_default();
    let level = LEVEL_FIELDS.into_iter().find_map(|name| {
        let level = level_of(fields.get(name)?)?;
        fields.remove(name);
        Some(level)
    });
    // `host` as a string is Vector's and rsyslog's hostname.
    let hostname = take_string(&mut fields, "host.name").or_else(|| take_string(&mut fields, "host"));
    let application = take_string(&mut fields, "service.name");
    let mut labels = BTreeMap::from([("index".to_owned(), index.to_owned())]);
    if let Some(service) = &application {
        labels.insert("service_name".to_owned(), service.clone());
    }
    Ok(Document { timestamp, level, message, hostname, application, labels, attributes: fields })
}

/// Moves the fields of `object` into `into`, under `prefix` + their dotted path; an empty
/// object is dropped, arrays and other values are kept as they are.
fn flatten(prefix: String, object: Map<String, Value>, into: &mut Map<String, Value>) {
    for (key, value) in object {
        let path = if prefix.is_empty() { key } else { format!("{prefix}.{key}") };
        match value {
            Value::Object(inner) => flatten(path, inner, into),
            other => {
                into.insert(path, other);
            }
        }
    }
}

/// Removes `name` from `fields` if it holds a string, and returns it.
fn take_string(fields: &mut Map<String, Value>, name: &str) -> Option<String> {
    if !fields.get(name).is_some_and(Value::is_string) {
        return None;
    }
    match fields.remove(name) {
        Some(Value::String(text)) => Some(text),
        _ => None,
    }
}

/// A level as documents carry it: a name in any of its usual spellings, or a syslog
/// severity (number or numeric string); `None` for anything else.
fn level_of(value: &Value) -> Option<Level> {
    match value {
        Value::String(text) => Level::parse(text).ok(),
        Value::Number(n) => Level::from_severity(n.as_u64()?).ok(),
        _ => None,
    }
}

/// `@timestamp` as Elasticsearch's default date format reads it: epoch milliseconds (a
/// number or a numeric string), RFC 3339, or an ISO 8601 date or date-time without an
/// offset (UTC). Microseconds since the Unix epoch.
pub fn timestamp_of(value: &Value) -> Result<i64, String> {
    const FORMAT: &str = "must be epoch milliseconds or an RFC 3339 / ISO 8601 time";
    let millis = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(text) if is_numeric(text.trim()) => text.trim().parse::<f64>().ok(),
        Value::String(text) => return iso_time(text.trim()).ok_or_else(|| FORMAT.to_owned()),
        _ => return Err(FORMAT.to_owned()),
    };
    millis.map_or_else(|| Err(FORMAT.to_owned()), |ms| time::timestamp_from_seconds(ms / 1000.0))
}

fn is_numeric(text: &str) -> bool {
    let digits = text.strip_prefix('-').unwrap_or(text);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && digits.bytes().any(|b| b.is_ascii_digit())
}

/// RFC 3339, else a date-time or a date without an offset, taken as UTC; in 1970-9999.
fn iso_time(text: &str) -> Option<i64> {
    use chrono::{NaiveDate, NaiveDateTime};
    let micros = match time::parse_timestamp(text) {
        Ok(micros) => return Some(micros),
        Err(_) => NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
            .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f"))
            .ok()
            .or_else(|| NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?.and_hms_opt(0, 0, 0))?
            .and_utc()
            .timestamp_micros(),
    };
    (0..=253_402_300_799_999_999).contains(&micros).then_some(micros)
}

/// A document id as Elasticsearch makes them: 20 URL-safe base64 characters.
pub fn new_id() -> String {
    use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
    let bytes = uuid::Uuid::new_v4().into_bytes();
    URL_SAFE_NO_PAD.encode(&bytes[..15])
}

/// The answer of one action.
#[derive(Debug)]
pub struct Item<'a> {
    /// The key of the item: the action's name.
    pub name: &'a str,
    pub index: Option<&'a str>,
    pub id: &'a str,
    /// Stored (with its sequence number), or refused.
    pub outcome: Result<u64, &'a Failure>,
}

/// The answer of a bulk request: `{"took","errors","items"}`, with one item per action, in
/// order. Serialized compactly (clients search the text for `"errors":true`, or
/// `"errors":false,"items":[`), in this field order.
#[derive(Debug, Serialize)]
pub struct BulkAnswer<'a> {
    pub took: u64,
    pub errors: bool,
    pub items: Vec<Item<'a>>,
}

impl<'a> BulkAnswer<'a> {
    pub fn new(took: u64, items: Vec<Item<'a>>) -> Self {
        BulkAnswer { took, errors: items.iter().any(|item| item.outcome.is_err()), items }
    }
}

impl Serialize for Item<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Shards {
            total: u8,
            successful: u8,
            failed: u8,
        }
        #[derive(Serialize)]
        struct Cause<'a> {
            #[serde(rename = "type")]
            kind: &'a str,
            reason: &'a str,
        }
        #[derive(Serialize)]
        struct Stored<'a> {
            _index: Option<&'a str>,
            _id: &'a str,
            _version: u8,
            result: &'a str,
            _shards: Shards,
            _seq_no: u64,
            _primary_term: u8,
            status: u16,
        }
        #[derive(Serialize)]
        struct Refused<'a> {
            _index: Option<&'a str>,
            _id: &'a str,
            status: u16,
            error: Cause<'a>,
        }
        let mut map = serializer.serialize_map(Some(1))?;
        match self.outcome {
            Ok(seq_no) => map.serialize_entry(
                self.name,
                &Stored {
                    _index: self.index,
                    _id: self.id,
                    _version: 1,
                    result: "created",
                    _shards: Shards { total: 1, successful: 1, failed: 0 },
                    _seq_no: seq_no,
                    _primary_term: 1,
                    status: 201,
                },
            )?,
            Err(failure) => map.serialize_entry(
                self.name,
                &Refused {
                    _index: self.index,
                    _id: self.id,
                    status: failure.status,
                    error: Cause { kind: failure.kind, reason: &failure.reason },
                },
            )?,
        }
        map.end()
    }
}

/// Keeps of `value` only what `filter_path` names: comma-separated dotted paths whose
/// segments may hold `*` (any characters of one key) or be `**` (any depth); arrays are
/// looked through (`items.*.status` names the status of every item). Paths starting with
/// `-` (exclusions) are ignored, and so are paths past the 32nd. Nothing kept gives `{}`.
pub fn filter_path(value: Value, filter: &str) -> Value {
    const MAX_FILTER_PATHS: usize = 32;
    let patterns: Vec<Vec<&str>> = filter
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty() && !p.starts_with('-'))
        // Enough for any client's filter, and a bound on the work one request can ask for.
        .take(MAX_FILTER_PATHS)
        .map(|p| p.split('.').collect())
        .collect();
    if patterns.is_empty() {
        return value;
    }
    let patterns: Vec<&[&str]> = patterns.iter().map(Vec::as_slice).collect();
    keep(value, &patterns).unwrap_or_else(|| Value::Object(Map::new()))
}

fn keep(value: Value, patterns: &[&[&str]]) -> Option<Value> {
    // A path used up, or ending in `**`, keeps all that is below.
    if patterns.iter().any(|p| p.is_empty() || *p == ["**"]) {
        return Some(value);
    }
    match value {
        Value::Object(map) => {
            let mut kept = Map::new();
            for (key, child) in map {
                let mut inner: Vec<&[&str]> = Vec::new();
                for pattern in patterns {
                    if pattern[0] == "**" {
                        inner.push(pattern);
                        if pattern.len() > 1 && glob(pattern[1], &key) {
                            inner.push(&pattern[2..]);
                        }
                    } else if glob(pattern[0], &key) {
                        inner.push(&pattern[1..]);
                    }
                }
                if !inner.is_empty()
                    && let Some(child) = keep(child, &inner)
                {
                    kept.insert(key, child);
                }
            }
            (!kept.is_empty()).then_some(Value::Object(kept))
        }
        Value::Array(items) => {
            let kept: Vec<Value> = items.into_iter().filter_map(|item| keep(item, patterns)).collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        _ => None,
    }
}

/// Whether `text` matches `pattern`, where `*` stands for any characters. Greedy with one
/// backtrack point (the last `*`), so the time is at most the product of the lengths
/// whatever the number of `*`.
fn glob(pattern: &str, text: &str) -> bool {
    let (pattern, text): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut p, mut t) = (0, 0);
    // After the last `*` seen: where the pattern resumes, and where the text did.
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == '*' {
            star = Some((p + 1, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((resume, from)) = star {
            // Let the `*` take one more character, and try the rest again.
            star = Some((resume, from + 1));
            p = resume;
            t = from + 1;
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ndjson(lines: &[Value]) -> Vec<u8> {
        lines.iter().map(|line| format!("{line}\n")).collect::<String>().into_bytes()
    }

    fn doc(source: Value) -> Result<Document, Failure> {
        document(source.to_string().as_bytes(), 2, "app")
    }

    #[test]
    fn ecs_documents_map_onto_log_entries() {
        let document = doc(json!({
            "@timestamp": "2026-01-01T00:00:01.5Z",
            "message": "GET /orders 200",
            "log": { "level": "WARN", "logger": "http" },
            "host": { "name": "web-1", "ip": ["10.0.0.1", "10.0.0.2"] },
            "service": { "name": "shop", "version": "1.2" },
            "http.request.method": "GET",
            "labels": {},
            "user": null,
        }))
        .unwrap();
        assert_eq!(document.timestamp, Some(1_767_225_601_500_000));
        assert_eq!(document.message, "GET /orders 200");
        assert_eq!(document.level, Some(Level::Warning));
        assert_eq!(document.hostname.as_deref(), Some("web-1"));
        assert_eq!(document.application.as_deref(), Some("shop"));
        assert_eq!(
            document.labels,
            BTreeMap::from([("index".into(), "app".into()), ("service_name".into(), "shop".into())])
        );
        assert_eq!(
            Value::Object(document.attributes),
            json!({
                "log.logger": "http",
                "host.ip": ["10.0.0.1", "10.0.0.2"],
                "service.version": "1.2",
                "http.request.method": "GET",
                "user": null,
            })
        );
    }

    #[test]
    fn vector_s_default_time_and_host_fields_are_read_too() {
        let d = doc(json!({ "message": "m", "timestamp": "2026-01-01T00:00:00.5Z", "host": "web-2" })).unwrap();
        assert_eq!((d.timestamp, d.hostname.as_deref()), (Some(1_767_225_600_500_000), Some("web-2")));
        assert!(d.attributes.is_empty(), "{:?}", d.attributes);
        let d = doc(json!({ "message": "m", "@timestamp": 0, "timestamp": "later", "host": { "ip": "10.0.0.1" } }))
            .unwrap();
        assert_eq!((d.timestamp, d.hostname), (Some(0), None));
        assert_eq!(Value::Object(d.attributes), json!({ "timestamp": "later", "host.ip": "10.0.0.1" }));
        let d = doc(json!({ "message": "m", "timestamp": "later" })).unwrap();
        assert_eq!((d.timestamp, Value::Object(d.attributes)), (None, json!({ "timestamp": "later" })));
    }

    #[test]
    fn the_message_is_message_else_log_else_msg() {
        assert_eq!(doc(json!({ "log": "from docker", "msg": "m" })).unwrap().message, "from docker");
        let d = doc(json!({ "msg": "m", "message": "" , "log": { "level": "error" } })).unwrap();
        assert_eq!((d.message.as_str(), d.level), ("m", Some(Level::Error)));
        assert_eq!(Value::Object(d.attributes), json!({ "message": "" }));
        let refused = doc(json!({ "message": { "text": "x" }, "level": "info" })).unwrap_err();
        assert_eq!(refused.status, 400);
        assert_eq!(refused.kind, MAPPER_PARSING);
        assert!(refused.reason.contains("[message]"), "{}", refused.reason);
    }

    #[test]
    fn levels_come_from_log_level_or_level_and_unknown_words_stay_attributes() {
        assert_eq!(
            doc(json!({ "message": "m", "log.level": "err", "level": "info" })).unwrap().level,
            Some(Level::Error)
        );
        assert_eq!(doc(json!({ "message": "m", "level": 2 })).unwrap().level, Some(Level::Critical));
        let d = doc(json!({ "message": "m", "log.level": "verbose", "level": "debug" })).unwrap();
        assert_eq!(d.level, Some(Level::Debug));
        assert_eq!(Value::Object(d.attributes), json!({ "log.level": "verbose" }));
        let d = doc(json!({ "message": "m", "level": "chatty" })).unwrap();
        assert_eq!((d.level, Value::Object(d.attributes)), (None, json!({ "level": "chatty" })));
    }

    #[test]
    fn timestamps_are_rfc3339_iso_or_epoch_millis() {
        let t0 = 1_767_225_600_000_000;
        for (value, micros) in [
            (json!("2026-01-01T00:00:00Z"), t0),
            (json!("2026-01-01T02:00:00+02:00"), t0),
            (json!("2026-01-01T00:00:00.250"), t0 + 250_000),
            (json!("2026-01-01"), t0),
            (json!(1_767_225_600_123_i64), t0 + 123_000),
            (json!("1767225600123"), t0 + 123_000),
            (json!(1_767_225_600_123.5), t0 + 123_500),
        ] {
            assert_eq!(timestamp_of(&value), Ok(micros), "{value}");
        }
        for value in [json!("yesterday"), json!(true), json!(-5), json!("NaN"), json!("10000-01-01T00:00:00Z")] {
            assert!(timestamp_of(&value).is_err(), "{value}");
        }
        let refused = doc(json!({ "message": "m", "@timestamp": "soon" })).unwrap_err();
        assert_eq!(refused.kind, MAPPER_PARSING);
        assert!(refused.reason.contains("[@timestamp]"), "{}", refused.reason);
        assert_eq!(doc(json!({ "message": "m", "@timestamp": null })).unwrap().timestamp, None);
    }

    #[test]
    fn bulk_bodies_give_one_action_per_action_line_in_order() {
        let mut body = ndjson(&[
            json!({ "index": { "_index": "a", "_id": "1", "_type": "_doc" } }),
            json!({ "message": "one" }),
            json!({ "create": {} }),
            json!({ "message": "two" }),
            json!({ "delete": { "_index": "a", "_id": "1" } }),
            json!({ "update": { "_id": "1" } }),
            json!({ "doc": { "message": "changed" } }),
            json!({ "index": { "_index": "b" } }),
            json!({ "no": "message" }),
        ]);
        body.extend_from_slice(b"\r\n\n{\"create\":{\"_id\":7}}\r\n{\"msg\":\"last, no newline\"}");
        let actions = parse_bulk(&body, Some("url")).unwrap();
        let summary: Vec<(&str, Option<&str>, Option<&str>, bool)> =
            actions.iter().map(|a| (a.name.as_str(), a.index.as_deref(), a.id.as_deref(), a.outcome.is_ok())).collect();
        assert_eq!(
            summary,
            [
                ("index", Some("a"), Some("1"), true),
                ("create", Some("url"), None, true),
                ("delete", Some("a"), Some("1"), false),
                ("update", Some("url"), Some("1"), false),
                ("index", Some("b"), None, false),
                ("create", Some("url"), Some("7"), true),
            ]
        );
        let refused = actions[2].outcome.as_ref().unwrap_err();
        assert_eq!((refused.status, refused.kind), (400, VALIDATION));
        assert!(refused.reason.starts_with(NO_CHANGES), "{}", refused.reason);
        assert_eq!(actions[5].outcome.as_ref().unwrap().message, "last, no newline");
        assert_eq!(actions[1].outcome.as_ref().unwrap().labels["index"], "url");
    }

    #[test]
    fn a_malformed_action_line_refuses_that_action_and_the_rest_goes_on() {
        let body = b"{\"index\":\n{\"message\":\"its document\"}\n{\"index\":{}}\n{\"message\":\"kept\"}\n\
            {\"upsert\":{}}\n{\"index\":{}}\n{\"message\":\"kept too\"}\n{\"index\":[]}\n{\"message\":\"skipped\"}\n\
            {\"index\":{}}\n";
        let actions = parse_bulk(body, Some("x")).unwrap();
        let summary: Vec<(&str, Result<&str, &str>)> = actions
            .iter()
            .map(|a| (a.name.as_str(), a.outcome.as_ref().map(|d| d.message.as_str()).map_err(|f| f.kind)))
            .collect();
        assert_eq!(
            summary,
            [
                ("index", Err(ILLEGAL_ARGUMENT)),
                ("index", Ok("kept")),
                ("upsert", Err(ILLEGAL_ARGUMENT)),
                ("index", Ok("kept too")),
                ("index", Err(ILLEGAL_ARGUMENT)),
                ("index", Err(ILLEGAL_ARGUMENT)),
            ]
        );
        assert!(actions[0].outcome.as_ref().unwrap_err().reason.contains("line [1]"));
        assert!(actions[5].outcome.as_ref().unwrap_err().reason.contains("not followed by a document"));
    }

    #[test]
    fn an_action_needs_an_index_and_a_body_needs_an_action() {
        let actions = parse_bulk(b"{\"index\":{}}\n{\"message\":\"m\"}\n", None).unwrap();
        assert_eq!(actions[0].outcome.as_ref().unwrap_err().reason, "Validation Failed: 1: index is missing;");
        for body in [&b""[..], b"\n\r\n  \n"] {
            let failure = parse_bulk(body, Some("x")).unwrap_err();
            assert_eq!((failure.status, failure.kind), (400, VALIDATION));
        }
        let failure = parse_bulk(b"", None).unwrap_err();
        let body: Value = serde_json::from_slice(&failure.body()).unwrap();
        assert_eq!(
            body,
            json!({
                "error": {
                    "root_cause": [{ "type": VALIDATION, "reason": "Validation Failed: 1: no requests added;" }],
                    "type": VALIDATION,
                    "reason": "Validation Failed: 1: no requests added;",
                },
                "status": 400,
            })
        );
    }

    #[test]
    fn the_answer_is_compact_and_in_the_elasticsearch_form() {
        let refused = Failure::invalid(VALIDATION, "no");
        let answer = BulkAnswer::new(
            3,
            vec![
                Item { name: "create", index: Some("a"), id: "x1", outcome: Ok(0) },
                Item { name: "delete", index: None, id: "x2", outcome: Err(&refused) },
            ],
        );
        let text = String::from_utf8(serde_json::to_vec(&answer).unwrap()).unwrap();
        assert!(text.starts_with("{\"took\":3,\"errors\":true,\"items\":[{\"create\":{"), "{text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({ "took": 3, "errors": true, "items": [
                { "create": { "_index": "a", "_id": "x1", "_version": 1, "result": "created",
                    "_shards": { "total": 1, "successful": 1, "failed": 0 }, "_seq_no": 0, "_primary_term": 1, "status": 201 } },
                { "delete": { "_index": null, "_id": "x2", "status": 400, "error": { "type": VALIDATION, "reason": "no" } } },
            ] })
        );
        let ok = BulkAnswer::new(1, vec![Item { name: "index", index: Some("a"), id: "i", outcome: Ok(0) }]);
        assert!(serde_json::to_string(&ok).unwrap().contains("\"errors\":false,\"items\":["));
        assert_eq!(new_id().len(), 20);
    }

    #[test]
    fn filter_path_keeps_what_it_names() {
        let answer = json!({ "took": 1, "errors": true, "items": [
            { "index": { "_id": "a", "status": 201 } },
            { "create": { "_id": "b", "status": 400, "error": { "type": "t", "reason": "r" } } },
        ] });
        assert_eq!(
            filter_path(answer.clone(), "errors,items.*.error,items.*.status"),
            json!({ "errors": true, "items": [
                { "index": { "status": 201 } },
                { "create": { "status": 400, "error": { "type": "t", "reason": "r" } } },
            ] })
        );
        assert_eq!(
            filter_path(answer.clone(), "items.*.error"),
            json!({ "items": [{ "create": { "error": { "type": "t", "reason": "r" } } }] })
        );
        assert_eq!(
            filter_path(answer.clone(), "**.reason"),
            json!({ "items": [{ "create": { "error": { "reason": "r" } } }] })
        );
        assert_eq!(filter_path(answer.clone(), "to*"), json!({ "took": 1 }));
        assert_eq!(filter_path(answer.clone(), "items.**"), json!({ "items": answer["items"].clone() }));
        assert_eq!(filter_path(answer.clone(), "nothing"), json!({}));
        assert_eq!(filter_path(answer.clone(), "-took"), answer);
    }

    #[test]
    fn globs_match_in_bounded_time() {
        for (pattern, text, matches) in [
            ("*", "", true),
            ("it*s", "items", true),
            ("*e*r*", "error", true),
            ("_*", "took", false),
            ("*ß", "straße", false),
            ("*ße", "straße", true),
            ("a*b*c", "abxbc", true),
            ("a*b*c", "abxbd", false),
        ] {
            assert_eq!(glob(pattern, text), matches, "{pattern} {text}");
        }
        let stars = "*a".repeat(40) + "b";
        assert!(!glob(&stars, &"a".repeat(60)));
    }
}
