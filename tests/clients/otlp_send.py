"""Sends logs and metrics to KillKrill with the OpenTelemetry Python SDK and its OTLP
exporters, as an instrumented application would: used by tests/api/otlp.rs.

    python otlp_send.py '{"transport": "http"|"grpc", "endpoint": "...", "headers": {...}}'

`endpoint` is the base URL (HTTP: the exporter appends nothing, so it gets the base and
this script adds /v1/logs and /v1/metrics; gRPC: host and port). gzip is on. Exits 1
(with the reason on stderr) when an export was not a success.
"""

import json
import sys

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import LogRecordExportResult, SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

config = json.loads(sys.argv[1])
transport, endpoint, headers = config["transport"], config["endpoint"], config["headers"]

if transport == "http":
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    log_exporter = OTLPLogExporter(endpoint=f"{endpoint}/v1/logs", headers=headers, compression=Compression.Gzip)
    metric_exporter = OTLPMetricExporter(
        endpoint=f"{endpoint}/v1/metrics", headers=headers, compression=Compression.Gzip
    )
else:
    from grpc import Compression
    from opentelemetry.exporter.otlp.proto.grpc._log_exporter import OTLPLogExporter
    from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import OTLPMetricExporter

    log_exporter = OTLPLogExporter(endpoint=endpoint, insecure=True, headers=headers, compression=Compression.Gzip)
    metric_exporter = OTLPMetricExporter(
        endpoint=endpoint, insecure=True, headers=headers, compression=Compression.Gzip
    )

failures = []


class CheckedLogs(SimpleLogRecordProcessor):
    """Records whether each export succeeded (the SDK only logs a failure)."""

    def on_emit(self, log_record):
        result = self._exporter.export((log_record,))
        if result != LogRecordExportResult.SUCCESS:
            failures.append(f"log export: {result}")


resource = Resource.create(
    {
        "service.name": "checkout",
        "service.namespace": "shop",
        "service.instance.id": f"{transport}-1",
        "host.name": "e2e-host",
        "deployment.environment.name": "test",
        "cloud.region": "eu-west-1",
    }
)

logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(CheckedLogs(log_exporter))
logger = logger_provider.get_logger("e2e.logs", "1.0")
span = NonRecordingSpan(
    SpanContext(
        trace_id=0x5B8EFFF798038103D269B633813FC60C,
        span_id=0xEEE19B7EC3C1B174,
        is_remote=False,
        trace_flags=TraceFlags(1),
    )
)
logger.emit(
    timestamp=1_767_225_600_123_456_789,
    context=trace.set_span_in_context(span),
    severity_number=SeverityNumber.WARN,
    severity_text="WARN",
    body=f"disk almost full ({transport})",
    attributes={"disk.free_mb": 42, "mount": "/var"},
)
logger.emit(
    timestamp=1_767_225_601_000_000_000,
    severity_number=SeverityNumber.ERROR,
    body={"event": "payment_failed", "amount": 12.5},
)
logger.emit(severity_number=SeverityNumber.FATAL2, body=f"no time given ({transport})")
logger_provider.shutdown()


original_export = metric_exporter.export


def checked_export(metrics_data, *args, **kwargs):
    result = original_export(metrics_data, *args, **kwargs)
    if result != MetricExportResult.SUCCESS:
        failures.append(f"metric export: {result}")
    return result


metric_exporter.export = checked_export
reader = PeriodicExportingMetricReader(metric_exporter, export_interval_millis=3_600_000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
meter = meter_provider.get_meter("e2e.metrics", "2.0")
orders = meter.create_counter("orders.placed")
orders.add(3, {"shop.region": "eu"})
orders.add(2, {"shop.region": "eu"})
queue = meter.create_up_down_counter("queue.depth")
queue.add(5)
queue.add(-2)
duration = meter.create_histogram("request.duration", unit="ms")
duration.record(7)
duration.record(30)
meter.create_observable_gauge(
    "room.temperature", callbacks=[lambda options: [Observation(21.5)]]
)
meter_provider.force_flush()
meter_provider.shutdown()

if failures:
    print("; ".join(failures), file=sys.stderr)
    sys.exit(1)
print("ok")
