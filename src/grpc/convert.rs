//! `google.protobuf.Struct` ⇄ JSON, for source configs and log attributes, and the
//! timestamps of the gRPC messages.

use prost_types::{ListValue, Struct, Value as ProtoValue, value::Kind};
use serde_json::{Map, Number, Value};

pub fn struct_to_json(value: Struct) -> Value {
    Value::Object(value.fields.into_iter().map(|(k, v)| (k, value_to_json(v))).collect())
}

fn value_to_json(value: ProtoValue) -> Value {
    match value.kind {
        None | Some(Kind::NullValue(_)) => Value::Null,
        Some(Kind::BoolValue(b)) => Value::Bool(b),
        // Whole numbers stay integers, as JSON clients would have sent them.
        Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 9.0e15 => Value::from(n as i64),
        Some(Kind::NumberValue(n)) => Number::from_f64(n).map_or(Value::Null, Value::Number),
        Some(Kind::StringValue(s)) => Value::String(s),
        Some(Kind::StructValue(s)) => struct_to_json(s),
        Some(Kind::ListValue(list)) => Value::Array(list.values.into_iter().map(value_to_json).collect()),
    }
}

/// A JSON object as a `Struct`; anything else (a stored `null`) as an empty one.
pub fn json_to_struct(value: Value) -> Struct {
    match value {
        Value::Object(map) => object_to_struct(map),
        _ => Struct::default(),
    }
}

fn object_to_struct(map: Map<String, Value>) -> Struct {
    Struct { fields: map.into_iter().map(|(k, v)| (k, json_to_value(v))).collect() }
}

fn json_to_value(value: Value) -> ProtoValue {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(b) => Kind::BoolValue(b),
        Value::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        Value::String(s) => Kind::StringValue(s),
        Value::Array(items) => Kind::ListValue(ListValue { values: items.into_iter().map(json_to_value).collect() }),
        Value::Object(map) => Kind::StructValue(object_to_struct(map)),
    };
    ProtoValue { kind: Some(kind) }
}

/// A message's `double timestamp` (Unix seconds; 0 = unset) as the service layer takes
/// timestamps: microseconds, `None` meaning "the time of receipt" (NaN and infinities are
/// out of range).
pub fn timestamp(seconds: f64) -> Result<Option<i64>, String> {
    if seconds == 0.0 {
        return Ok(None);
    }
    crate::time::timestamp_from_seconds(seconds).map(Some)
}

/// An optional string, `None` when empty (proto3 strings cannot be absent).
pub fn non_empty(text: String) -> Option<String> {
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_objects_survive_the_round_trip() {
        let original = json!({"pid": 42, "ratio": 0.5, "tags": ["a", null, true], "nested": {"k": "v"}});
        assert_eq!(struct_to_json(json_to_struct(original.clone())), original);
        assert_eq!(json_to_struct(json!([1, 2])), Struct::default());
    }

    #[test]
    fn zero_timestamps_mean_receipt_time() {
        assert_eq!(timestamp(0.0), Ok(None));
        assert_eq!(timestamp(1.5), Ok(Some(1_500_000)));
        assert_eq!(timestamp(f64::NAN), Err("is out of range".to_owned()));
        assert_eq!(timestamp(f64::INFINITY), Err("is out of range".to_owned()));
    }
}
