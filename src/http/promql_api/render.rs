//! Prometheus' answers: `{"status":"success","data":…}` and
//! `{"status":"error","errorType":…,"error":…}` with the status Prometheus gives each
//! error type; query results with times as Unix seconds and values as strings.

use axum::{
    http::{HeaderValue, StatusCode, header, response::Parts},
    response::{IntoResponse, Response},
};
use serde::{Serialize, Serializer, ser::SerializeSeq};

use crate::{
    error::AppError,
    http::{
        error::HttpError,
        plain_text::ProtocolBody,
        prometheus::{sample_value, value_text},
    },
    service::promql::Labels,
};

/// Prometheus' error types (`web/api/v1/api.go`), with the statuses it answers them
/// with; `unauthorized`, `forbidden` and `method_not_allowed` are ours, for what a
/// Prometheus without authentication never says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Canceled,
    Internal,
    Unavailable,
    NotFound,
    Unauthorized,
    Forbidden,
    MethodNotAllowed,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
            ErrorType::NotFound => "not_found",
            ErrorType::Unauthorized => "unauthorized",
            ErrorType::Forbidden => "forbidden",
            ErrorType::MethodNotAllowed => "method_not_allowed",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout | ErrorType::Canceled | ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
            ErrorType::Unauthorized => StatusCode::UNAUTHORIZED,
            ErrorType::Forbidden => StatusCode::FORBIDDEN,
            ErrorType::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        }
    }

    /// The type of an error another layer answered with `status` (an unknown route, a
    /// refused credential, a body over the limit, the request timeout).
    pub fn of_status(status: StatusCode) -> ErrorType {
        match status {
            StatusCode::UNPROCESSABLE_ENTITY => ErrorType::Execution,
            StatusCode::NOT_FOUND => ErrorType::NotFound,
            StatusCode::UNAUTHORIZED => ErrorType::Unauthorized,
            StatusCode::FORBIDDEN => ErrorType::Forbidden,
            StatusCode::METHOD_NOT_ALLOWED => ErrorType::MethodNotAllowed,
            StatusCode::REQUEST_TIMEOUT => ErrorType::Timeout,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => ErrorType::Unavailable,
            status if status.is_client_error() => ErrorType::BadData,
            _ => ErrorType::Internal,
        }
    }
}

/// An error in Prometheus' form.
#[derive(Debug)]
pub struct PromError {
    pub kind: ErrorType,
    pub message: String,
}

impl PromError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self { kind, message: message.into() }
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        Self::new(ErrorType::BadData, message)
    }
}

impl IntoResponse for PromError {
    fn into_response(self) -> Response {
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = self.kind.status();
        parts.extensions.insert(ProtocolBody);
        error_response(parts, self.kind, &self.message)
    }
}

/// What a handler of the query API fails with: an error of Prometheus' own, or one of
/// the service or the framework (a credential refused, the database down), which the
/// request middleware renders in Prometheus' form from its status.
#[derive(Debug)]
pub enum ApiError {
    Prom(PromError),
    Http(HttpError),
}

impl From<PromError> for ApiError {
    fn from(err: PromError) -> Self {
        ApiError::Prom(err)
    }
}

impl From<HttpError> for ApiError {
    fn from(err: HttpError) -> Self {
        ApiError::Http(err)
    }
}

impl From<AppError> for ApiError {
    fn from(err: AppError) -> Self {
        ApiError::Http(err.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Prom(err) => err.into_response(),
            ApiError::Http(err) => err.into_response(),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    #[serde(rename = "errorType")]
    error_type: &'static str,
    error: &'a str,
}

/// The error body of `kind` with `message`, replacing whatever `parts` carried; the
/// request timeout (408) becomes Prometheus' query timeout, 503.
pub fn error_response(mut parts: Parts, kind: ErrorType, message: &str) -> Response {
    if parts.status == StatusCode::REQUEST_TIMEOUT {
        parts.status = StatusCode::SERVICE_UNAVAILABLE;
    }
    let body = ErrorBody { status: "error", error_type: kind.as_str(), error: message };
    let bytes = serde_json::to_vec(&body).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Response::from_parts(parts, axum::body::Body::from(bytes))
}

#[derive(Serialize)]
struct Success<'a, T: Serialize> {
    status: &'static str,
    data: T,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    warnings: &'a [String],
}

/// `{"status":"success","data":…}`, with `warnings` when there are some.
pub fn success(data: impl Serialize, warnings: &[String]) -> Response {
    match serde_json::to_vec(&Success { status: "success", data, warnings }) {
        Ok(bytes) => ([(header::CONTENT_TYPE, "application/json")], bytes).into_response(),
        Err(err) => {
            PromError::new(ErrorType::Internal, format!("error marshaling json response: {err}")).into_response()
        }
    }
}

/// A time in milliseconds as Unix seconds: an integer when whole, else the decimal.
pub struct Seconds(pub i64);

impl Serialize for Seconds {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 % 1000 == 0 {
            serializer.serialize_i64(self.0 / 1000)
        } else {
            serializer.serialize_f64(self.0 as f64 / 1000.0)
        }
    }
}

/// `[seconds, "value"]` of a vector or matrix sample.
pub struct Point(pub i64, pub f64);

impl Serialize for Point {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (Seconds(self.0), sample_value(self.1)).serialize(serializer)
    }
}

/// A scalar result, `[seconds, "value"]`, its value in Go's `'f'` form, as Prometheus
/// writes scalars.
pub struct ScalarPoint(pub i64, pub f64);

impl Serialize for ScalarPoint {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (Seconds(self.0), value_text(self.1)).serialize(serializer)
    }
}

/// One sample of an instant vector.
#[derive(Serialize)]
pub struct VectorSample<'a> {
    pub metric: &'a Labels,
    pub value: Point,
}

/// One series of a matrix.
pub struct MatrixSeries<'a> {
    pub metric: &'a Labels,
    pub values: &'a [(i64, f64)],
}

impl Serialize for MatrixSeries<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("metric", self.metric)?;
        map.serialize_entry("values", &Points(self.values))?;
        map.end()
    }
}

struct Points<'a>(&'a [(i64, f64)]);

impl Serialize for Points<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for (t, v) in self.0 {
            seq.serialize_element(&Point(*t, *v))?;
        }
        seq.end()
    }
}

/// `{"resultType": …, "result": …}`.
#[derive(Serialize)]
pub struct QueryData<T: Serialize> {
    #[serde(rename = "resultType")]
    pub result_type: &'static str,
    pub result: T,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn times_are_seconds_and_values_strings() {
        let labels = Labels::from([("__name__".to_owned(), "up".to_owned())]);
        let points = [(4_000, 1.0), (4_500, 1e-7), (-1_250, f64::NAN)];
        let series = MatrixSeries { metric: &labels, values: &points };
        assert_eq!(
            serde_json::to_value(&series).unwrap(),
            json!({"metric": {"__name__": "up"}, "values": [[4, "1"], [4.5, "1e-07"], [-1.25, "NaN"]]})
        );
        assert_eq!(serde_json::to_value(ScalarPoint(4_000, 2.0)).unwrap(), json!([4, "2"]));
        assert_eq!(serde_json::to_value(ScalarPoint(1, 1e-7)).unwrap(), json!([0.001, "0.0000001"]));
    }
}
