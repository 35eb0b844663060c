//! Loki push (`POST /loki/api/v1/push`): the `PushRequest` message and its JSON form, read
//! into log entries for `service::logs`.
//!
//! The messages are written from the wire format Loki documents (field numbers and types
//! of `PushRequest`, `StreamAdapter`, `EntryAdapter`, `LabelPairAdapter`); fields KillKrill
//! does not read (the stream's hash, the request's format, an entry's query-side `parsed`
//! labels) are left out, and prost skips them. Label text and lines are read as bytes so
//! that invalid UTF-8 is refused naming the stream or entry that holds it.
//!
//! How a stream becomes log entries:
//! - its labels (selector syntax `{a="b", c="d"}`, or a JSON object) are each entry's
//!   labels, names sanitised to `[a-zA-Z_][a-zA-Z0-9_]*`, empty values dropped;
//! - level: the label `level`, else `detected_level`, else structured metadata `level`,
//!   else `detected_level` (names as `Level::parse` reads them; an unknown one is info);
//! - hostname: the label `hostname`, else `host`; application: `app`, else `application`,
//!   else `service_name`;
//! - the entry's time (nanoseconds) to microseconds; the line is the message;
//! - structured metadata → attributes, flat, values as text.

use std::collections::BTreeMap;

use prost::Message as _;
use serde_json::{Map, Value};

use crate::service::logs::{self, Level, NewLog};

/// `logproto.PushRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PushRequest {
    #[prost(message, repeated, tag = "1")]
    pub streams: Vec<StreamAdapter>,
}

/// `logproto.StreamAdapter`: one stream's labels and entries.
#[derive(Clone, PartialEq, prost::Message)]
pub struct StreamAdapter {
    /// Selector syntax: `{job="api", env="prod"}`.
    #[prost(bytes = "vec", tag = "1")]
    pub labels: Vec<u8>,
    #[prost(message, repeated, tag = "2")]
    pub entries: Vec<EntryAdapter>,
}

/// `logproto.EntryAdapter`: one line.
#[derive(Clone, PartialEq, prost::Message)]
pub struct EntryAdapter {
    #[prost(message, optional, tag = "1")]
    pub timestamp: Option<prost_types::Timestamp>,
    #[prost(bytes = "vec", tag = "2")]
    pub line: Vec<u8>,
    #[prost(message, repeated, tag = "3")]
    pub structured_metadata: Vec<LabelPairAdapter>,
}

/// `logproto.LabelPairAdapter`: one name and value of structured metadata.
#[derive(Clone, PartialEq, prost::Message)]
pub struct LabelPairAdapter {
    #[prost(bytes = "vec", tag = "1")]
    pub name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// A push read into log entries, with where each came from for error messages.
#[derive(Debug)]
pub struct Push {
    pub logs: Vec<NewLog>,
    /// The index of each stream's first entry in `logs`.
    starts: Vec<usize>,
    /// `entries` (protobuf) or `values` (JSON): how the client names a stream's lines.
    entries_field: &'static str,
}

impl Push {
    /// Where the entry at `index` of `logs` came from: `streams[s].entries[e]`.
    pub fn locate(&self, index: usize) -> String {
        let stream = self.starts.partition_point(|&start| start <= index).saturating_sub(1);
        let entry = index - self.starts.get(stream).copied().unwrap_or(0);
        format!("streams[{stream}].{}[{entry}]", self.entries_field)
    }

    /// The field a service error names (`logs[12].message`) as the client wrote it
    /// (`streams[1].values[4].message`).
    pub fn rename_field(&self, field: &str) -> String {
        let Some((index, rest)) = field.strip_prefix("logs[").and_then(|rest| rest.split_once(']')) else {
            return field.to_owned();
        };
        match index.parse::<usize>() {
            Ok(index) => format!("{}{rest}", self.locate(index)),
            Err(_) => field.to_owned(),
        }
    }
}

/// Reads a decompressed protobuf `PushRequest`.
pub fn read_protobuf(body: &[u8]) -> Result<Push, String> {
    let request = PushRequest::decode(body).map_err(|e| format!("malformed protobuf PushRequest: {e}"))?;
    let mut push = Push { logs: Vec::new(), starts: Vec::new(), entries_field: "entries" };
    push.logs.reserve(request.streams.iter().map(|s| s.entries.len()).sum());
    for (s, stream) in request.streams.into_iter().enumerate() {
        let at = |what: &str| format!("streams[{s}].{what}");
        let text = String::from_utf8(stream.labels).map_err(|_| format!("{}: not valid UTF-8", at("labels")))?;
        let labels = parse_selector(&text).map_err(|e| format!("{}: {e}", at("labels")))?;
        let context = StreamContext::new(labels).map_err(|e| format!("{}: {e}", at("labels")))?;
        push.starts.push(push.logs.len());
        for (e, entry) in stream.entries.into_iter().enumerate() {
            let at = |what: &str| format!("streams[{s}].entries[{e}].{what}");
            let line = String::from_utf8(entry.line).map_err(|_| format!("{}: not valid UTF-8", at("line")))?;
            let mut metadata = Map::with_capacity(entry.structured_metadata.len());
            for pair in entry.structured_metadata {
                let (Ok(name), Ok(value)) = (String::from_utf8(pair.name), String::from_utf8(pair.value)) else {
                    return Err(format!("{}: not valid UTF-8", at("structuredMetadata")));
                };
                metadata.insert(name, Value::String(value));
            }
            let timestamp = entry.timestamp.map(|t| micros_of_timestamp(&t)).transpose();
            push.logs.push(context.entry(timestamp, line, metadata));
        }
    }
    Ok(push)
}

/// Reads a JSON push: `{"streams":[{"stream":{…},"values":[["<ns>","line",{…}?]]}]}`.
pub fn read_json(body: &[u8]) -> Result<Push, String> {
    let document: Value = serde_json::from_slice(body).map_err(|e| format!("malformed JSON: {e}"))?;
    let Some(streams) = document.get("streams").and_then(Value::as_array) else {
        return Err("streams: must be an array".to_owned());
    };
    let mut push = Push { logs: Vec::new(), starts: Vec::new(), entries_field: "values" };
    for (s, stream) in streams.iter().enumerate() {
        let at = |what: &str| format!("streams[{s}].{what}");
        let mut labels = Vec::new();
        match stream.get("stream") {
            None | Some(Value::Null) => {}
            Some(Value::Object(map)) => {
                for (name, value) in map {
                    let Value::String(value) = value else {
                        return Err(format!("{}: label `{name}` must be a string", at("stream")));
                    };
                    labels.push((name.clone(), value.clone()));
                }
            }
            Some(_) => return Err(format!("{}: must be an object of label names and values", at("stream"))),
        }
        let context = StreamContext::new(labels).map_err(|e| format!("{}: {e}", at("stream")))?;
        let Some(values) = stream.get("values").and_then(Value::as_array) else {
            return Err(format!("{}: must be an array", at("values")));
        };
        push.starts.push(push.logs.len());
        for (e, value) in values.iter().enumerate() {
            let at = format!("streams[{s}].values[{e}]");
            let item = value.as_array().filter(|a| a.len() == 2 || a.len() == 3).ok_or_else(|| {
                format!("{at}: must be [\"<unix ns>\", \"<line>\"] or [\"<unix ns>\", \"<line>\", {{…}}]")
            })?;
            let timestamp = json_timestamp(&item[0]).map(Some);
            let Value::String(line) = &item[1] else {
                return Err(format!("{at}[1]: the line must be a string"));
            };
            let metadata = match item.get(2) {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(map)) => {
                    let mut metadata = Map::with_capacity(map.len());
                    for (name, value) in map {
                        let value = match value {
                            Value::String(_) => value.clone(),
                            Value::Number(n) => Value::String(n.to_string()),
                            Value::Bool(b) => Value::String(b.to_string()),
                            _ => return Err(format!("{at}[2]: structured metadata `{name}` must be a string")),
                        };
                        metadata.insert(name.clone(), value);
                    }
                    metadata
                }
                Some(_) => return Err(format!("{at}[2]: structured metadata must be an object")),
            };
            push.logs.push(context.entry(timestamp, line.clone(), metadata));
        }
    }
    Ok(push)
}

/// The largest time RFC 3339 can write (9999-12-31T23:59:59.999999Z), in microseconds.
const MAX_MICROS: i64 = 253_402_300_799_999_999;

fn micros_in_range(micros: i64) -> Result<i64, String> {
    if (0..=MAX_MICROS).contains(&micros) { Ok(micros) } else { Err("is out of range".to_owned()) }
}

/// A protobuf `Timestamp` in microseconds (nanoseconds below a microsecond dropped).
fn micros_of_timestamp(t: &prost_types::Timestamp) -> Result<i64, String> {
    t.seconds
        .checked_mul(1_000_000)
        .and_then(|micros| micros.checked_add(i64::from(t.nanos).div_euclid(1_000)))
        .ok_or_else(|| "is out of range".to_owned())
        .and_then(micros_in_range)
}

/// Nanoseconds since the epoch as Loki's JSON writes them: a string of digits. A whole
/// number is taken too (Loki refuses one; nothing is lost by reading it).
fn json_timestamp(value: &Value) -> Result<i64, String> {
    let nanos = match value {
        Value::String(text) => text.trim().parse::<i64>().ok(),
        Value::Number(n) => n.as_i64(),
        _ => None,
    };
    let nanos = nanos.ok_or_else(|| "must be Unix nanoseconds as a string of digits".to_owned())?;
    micros_in_range(nanos.div_euclid(1_000))
}

/// What a stream's labels give each of its entries.
struct StreamContext {
    labels: BTreeMap<String, String>,
    level: Option<Level>,
    hostname: Option<String>,
    application: Option<String>,
}

impl StreamContext {
    fn new(pairs: Vec<(String, String)>) -> Result<StreamContext, String> {
        let mut labels = BTreeMap::new();
        for (name, value) in pairs {
            if value.is_empty() {
                continue;
            }
            let sanitised = logs::label_name(&name);
            if labels.insert(sanitised.clone(), value).is_some() {
                return Err(format!("label `{sanitised}` is given twice (label names are sanitised to [a-zA-Z0-9_])"));
            }
        }
        let first = |names: &[&str]| names.iter().find_map(|name| labels.get(*name).cloned());
        let level = first(&["level", "detected_level"]).map(|text| level_or_info(&text));
        let hostname = first(&["hostname", "host"]);
        let application = first(&["app", "application", "service_name"]);
        Ok(StreamContext { labels, level, hostname, application })
    }

    fn entry(&self, timestamp: Result<Option<i64>, String>, line: String, metadata: Map<String, Value>) -> NewLog {
        let level = self.level.or_else(|| {
            ["level", "detected_level"].iter().find_map(|name| metadata.get(*name)?.as_str().map(level_or_info))
        });
        NewLog {
            timestamp,
            level: Ok(level),
            message: line,
            hostname: self.hostname.clone(),
            application: self.application.clone(),
            labels: self.labels.clone(),
            attributes: (!metadata.is_empty()).then_some(Value::Object(metadata)),
        }
    }
}

/// A level name as agents write it; one KillKrill does not know reads as info, so an
/// unusual spelling never costs the line.
fn level_or_info(text: &str) -> Level {
    Level::parse(text).unwrap_or(Level::Info)
}

/// Parses a stream's labels in selector syntax, `{name="value", …}`: names are identifiers,
/// values quoted with `"`, `'` (Go escapes) or backquotes (raw); only `=` is allowed, and
/// a name only once.
pub fn parse_selector(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut p = SelectorParser { text: text.as_bytes(), at: 0 };
    let mut pairs: Vec<(String, String)> = Vec::new();
    p.skip_spaces();
    p.expect(b'{')?;
    loop {
        p.skip_spaces();
        if p.eat(b'}') {
            break;
        }
        let name = p.identifier()?;
        p.skip_spaces();
        p.expect(b'=')?;
        if matches!(p.peek(), Some(b'~')) {
            return Err(format!("label `{name}`: only `=` is allowed in a stream's labels"));
        }
        p.skip_spaces();
        let value = p.string()?;
        if pairs.iter().any(|(n, _)| *n == name) {
            return Err(format!("label `{name}` is given twice"));
        }
        pairs.push((name, value));
        p.skip_spaces();
        if p.eat(b',') {
            continue;
        }
        p.expect(b'}')?;
        break;
    }
    p.skip_spaces();
    if p.at < p.text.len() {
        return Err(format!("unexpected text after `}}` at byte {}", p.at));
    }
    Ok(pairs)
}

struct SelectorParser<'a> {
    text: &'a [u8],
    at: usize,
}

impl SelectorParser<'_> {
    fn peek(&self) -> Option<u8> {
        self.text.get(self.at).copied()
    }

    fn eat(&mut self, byte: u8) -> bool {
        let found = self.peek() == Some(byte);
        if found {
            self.at += 1;
        }
        found
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        if self.eat(byte) {
            return Ok(());
        }
        let found = match self.peek() {
            Some(b) if b.is_ascii_graphic() => format!("`{}`", b as char),
            Some(b) => format!("byte 0x{b:02x}"),
            None => "the end".to_owned(),
        };
        Err(format!("expected `{}` at byte {}, found {found}", byte as char, self.at))
    }

    fn skip_spaces(&mut self) {
        while self.peek().is_some_and(|b| b.is_ascii_whitespace()) {
            self.at += 1;
        }
    }

    fn identifier(&mut self) -> Result<String, String> {
        let start = self.at;
        while self.peek().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_') {
            self.at += 1;
        }
        let name = &self.text[start..self.at];
        if name.is_empty() || name[0].is_ascii_digit() {
            return Err(format!("expected a label name ([a-zA-Z_][a-zA-Z0-9_]*) at byte {start}"));
        }
        Ok(String::from_utf8_lossy(name).into_owned())
    }

    /// A quoted value. Escapes may write single bytes (`\x..`, octal), so the value is
    /// built as bytes and must be UTF-8 as a whole.
    fn string(&mut self) -> Result<String, String> {
        let start = self.at;
        let quote = match self.peek() {
            Some(q @ (b'"' | b'\'' | b'`')) => q,
            _ => return Err(format!("expected a quoted label value at byte {start}")),
        };
        self.at += 1;
        let mut out = Vec::new();
        loop {
            let Some(b) = self.peek() else {
                return Err(format!("label value opened at byte {start} is not closed"));
            };
            self.at += 1;
            match b {
                _ if b == quote => break,
                b'\\' if quote != b'`' => self.escape(&mut out)?,
                b'\n' if quote != b'`' => return Err(format!("label value opened at byte {start} is not closed")),
                _ => out.push(b),
            }
        }
        String::from_utf8(out).map_err(|_| format!("label value at byte {start} is not valid UTF-8"))
    }

    fn escape(&mut self, out: &mut Vec<u8>) -> Result<(), String> {
        let at = self.at - 1;
        let bad = || format!("invalid escape at byte {at}");
        let Some(c) = self.peek() else { return Err(bad()) };
        self.at += 1;
        let simple = match c {
            b'a' => Some(0x07),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            b'v' => Some(0x0b),
            b'\\' | b'"' | b'\'' => Some(c),
            _ => None,
        };
        if let Some(byte) = simple {
            out.push(byte);
            return Ok(());
        }
        match c {
            b'x' => out.push(u8::try_from(self.hex_digits(2).ok_or_else(bad)?).map_err(|_| bad())?),
            b'u' | b'U' => {
                let code = self.hex_digits(if c == b'u' { 4 } else { 8 }).ok_or_else(bad)?;
                let ch = char::from_u32(code).ok_or_else(bad)?;
                out.extend_from_slice(ch.encode_utf8(&mut [0; 4]).as_bytes());
            }
            b'0'..=b'7' => {
                let digits = self.text.get(self.at - 1..self.at + 2).ok_or_else(bad)?;
                let mut value: u32 = 0;
                for d in digits {
                    if !(b'0'..=b'7').contains(d) {
                        return Err(bad());
                    }
                    value = value * 8 + u32::from(d - b'0');
                }
                self.at += 2;
                out.push(u8::try_from(value).map_err(|_| bad())?);
            }
            _ => return Err(bad()),
        }
        Ok(())
    }

    fn hex_digits(&mut self, n: usize) -> Option<u32> {
        let digits = self.text.get(self.at..self.at + n)?;
        let text = std::str::from_utf8(digits).ok()?;
        let value = u32::from_str_radix(text, 16).ok().filter(|_| text.bytes().all(|b| b.is_ascii_hexdigit()))?;
        self.at += n;
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter().map(|(a, b)| ((*a).to_owned(), (*b).to_owned())).collect()
    }

    #[test]
    fn loki_selectors_parse_with_escapes_and_any_quotes() {
        assert_eq!(parse_selector("{}"), Ok(vec![]));
        assert_eq!(parse_selector(r#" { job="api" , env = 'prod',} "#), Ok(pairs(&[("job", "api"), ("env", "prod")])));
        assert_eq!(
            parse_selector(r#"{a="q\"uote\\ \n\t\u00e9\x41\101", b=`raw\n`}"#),
            Ok(pairs(&[("a", "q\"uote\\ \n\té\u{41}A"), ("b", "raw\\n")]))
        );
        assert_eq!(parse_selector(r#"{a="日本"}"#), Ok(pairs(&[("a", "日本")])));
    }

    #[test]
    fn loki_selectors_refuse_what_is_not_a_stream_selector() {
        for (text, wanted) in [
            ("job=\"x\"", "expected `{`"),
            ("{job=~\"x\"}", "only `=`"),
            ("{job!=\"x\"}", "expected `=`"),
            ("{job=\"x\"", "expected `}`"),
            ("{job=\"x}", "not closed"),
            ("{job=x}", "quoted label value"),
            ("{1job=\"x\"}", "label name"),
            ("{a=\"1\", a=\"2\"}", "twice"),
            ("{a=\"\\q\"}", "invalid escape"),
            ("{a=\"\\xff\"}", "UTF-8"),
            ("{a=\"x\"} extra", "after `}`"),
        ] {
            let err = parse_selector(text).expect_err(text);
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }

    fn entry(seconds: i64, nanos: i32, line: &str, metadata: &[(&str, &str)]) -> EntryAdapter {
        EntryAdapter {
            timestamp: Some(prost_types::Timestamp { seconds, nanos }),
            line: line.as_bytes().to_vec(),
            structured_metadata: metadata
                .iter()
                .map(|(n, v)| LabelPairAdapter { name: n.as_bytes().to_vec(), value: v.as_bytes().to_vec() })
                .collect(),
        }
    }

    #[test]
    fn loki_protobuf_streams_become_log_entries() {
        let request = PushRequest {
            streams: vec![
                StreamAdapter {
                    labels: br#"{job="api", level="WARN", host="web-1", service_name="checkout"}"#.to_vec(),
                    entries: vec![
                        entry(1_767_225_600, 123_456_789, "first", &[("trace_id", "abc")]),
                        entry(1_767_225_601, 0, "second", &[]),
                    ],
                },
                StreamAdapter {
                    labels: br#"{job="worker", app="billing", hostname="h2", empty=""}"#.to_vec(),
                    entries: vec![entry(1_767_225_602, 999, "third", &[("level", "error")])],
                },
            ],
        };
        let push = read_protobuf(&request.encode_to_vec()).unwrap();
        assert_eq!(push.logs.len(), 3);
        let first = &push.logs[0];
        assert_eq!(first.timestamp, Ok(Some(1_767_225_600_123_456)));
        assert_eq!(first.level, Ok(Some(Level::Warning)));
        assert_eq!(first.message, "first");
        assert_eq!(first.hostname.as_deref(), Some("web-1"));
        assert_eq!(first.application.as_deref(), Some("checkout"));
        assert_eq!(first.attributes, Some(json!({"trace_id": "abc"})));
        assert_eq!(first.labels.get("job").map(String::as_str), Some("api"));
        assert_eq!(push.logs[1].attributes, None);
        let third = &push.logs[2];
        assert_eq!(third.timestamp, Ok(Some(1_767_225_602_000_000)));
        assert_eq!(third.level, Ok(Some(Level::Error)));
        assert_eq!((third.hostname.as_deref(), third.application.as_deref()), (Some("h2"), Some("billing")));
        assert!(!third.labels.contains_key("empty"));
        assert_eq!(push.locate(2), "streams[1].entries[0]");
        assert_eq!(push.rename_field("logs[1].message"), "streams[0].entries[1].message");
    }

    #[test]
    fn loki_levels_default_to_info_and_unknown_ones_read_as_info() {
        let push = |labels: &str, metadata: &[(&str, &str)]| {
            let request = PushRequest {
                streams: vec![StreamAdapter {
                    labels: labels.as_bytes().to_vec(),
                    entries: vec![entry(1, 0, "x", metadata)],
                }],
            };
            read_protobuf(&request.encode_to_vec()).unwrap().logs.remove(0).level
        };
        assert_eq!(push("{}", &[]), Ok(None));
        assert_eq!(push(r#"{level="shouting"}"#, &[]), Ok(Some(Level::Info)));
        assert_eq!(push(r#"{detected_level="debug"}"#, &[("level", "error")]), Ok(Some(Level::Debug)));
        assert_eq!(push("{}", &[("detected_level", "fatal")]), Ok(Some(Level::Critical)));
    }

    #[test]
    fn loki_protobuf_refusals_name_the_stream_or_entry() {
        let bad_utf8 = PushRequest {
            streams: vec![StreamAdapter {
                labels: b"{}".to_vec(),
                entries: vec![
                    entry(1, 0, "ok", &[]),
                    EntryAdapter { timestamp: None, line: vec![0xff, 0xfe], structured_metadata: vec![] },
                ],
            }],
        };
        assert_eq!(
            read_protobuf(&bad_utf8.encode_to_vec()).unwrap_err(),
            "streams[0].entries[1].line: not valid UTF-8"
        );
        let bad_labels = PushRequest { streams: vec![StreamAdapter { labels: b"job=x".to_vec(), entries: vec![] }] };
        assert!(read_protobuf(&bad_labels.encode_to_vec()).unwrap_err().starts_with("streams[0].labels: expected `{`"));
        assert!(read_protobuf(b"\x0a\x05garbage").unwrap_err().starts_with("malformed protobuf"));
        let far = PushRequest {
            streams: vec![StreamAdapter { labels: b"{}".to_vec(), entries: vec![entry(i64::MAX / 10, 0, "x", &[])] }],
        };
        assert_eq!(read_protobuf(&far.encode_to_vec()).unwrap().logs[0].timestamp, Err("is out of range".to_owned()));
    }

    #[test]
    fn loki_json_pushes_read_string_nanoseconds_and_structured_metadata() {
        let body = json!({"streams": [
            {"stream": {"job": "api", "service.name": "shop", "level": "error"}, "values": [
                ["1767225600123456789", "one"],
                ["1767225601000000000", "two", {"trace_id": "t1", "retries": 3}],
            ]},
            {"stream": {}, "values": [[1_767_225_602_000_000_000_i64, "three"]]},
        ]});
        let push = read_json(body.to_string().as_bytes()).unwrap();
        assert_eq!(push.logs.len(), 3);
        assert_eq!(push.logs[0].timestamp, Ok(Some(1_767_225_600_123_456)));
        assert_eq!(push.logs[0].level, Ok(Some(Level::Error)));
        assert_eq!(push.logs[0].labels.get("service_name").map(String::as_str), Some("shop"));
        assert_eq!(push.logs[0].application.as_deref(), Some("shop"));
        assert_eq!(push.logs[1].attributes, Some(json!({"trace_id": "t1", "retries": "3"})));
        assert_eq!(push.logs[2].timestamp, Ok(Some(1_767_225_602_000_000)));
        assert_eq!(push.rename_field("logs[2].message"), "streams[1].values[0].message");
    }

    #[test]
    fn loki_json_refusals_name_the_value() {
        for (body, wanted) in [
            ("{", "malformed JSON"),
            ("{}", "streams: must be an array"),
            (r#"{"streams":[{"stream":{"a":1},"values":[]}]}"#, "streams[0].stream: label `a` must be a string"),
            (r#"{"streams":[{"stream":{}}]}"#, "streams[0].values: must be an array"),
            (r#"{"streams":[{"values":[["1"]]}]}"#, "streams[0].values[0]: must be"),
            (r#"{"streams":[{"values":[["1", 5]]}]}"#, "streams[0].values[0][1]: the line must be a string"),
            (r#"{"streams":[{"values":[["1", "x", []]]}]}"#, "streams[0].values[0][2]"),
            (r#"{"streams":[{"stream":{"a.b":"1","a_b":"2"},"values":[]}]}"#, "given twice"),
        ] {
            let err = read_json(body.as_bytes()).expect_err(body);
            assert!(err.contains(wanted), "{body}: {err}");
        }
        let push = read_json(br#"{"streams":[{"values":[["soon", "x"]]}]}"#).unwrap();
        assert!(push.logs[0].timestamp.as_ref().unwrap_err().contains("nanoseconds"));
    }
}
