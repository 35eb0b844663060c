//! Prometheus metrics: the request metrics under the Flask service's names (labelled by
//! route template), plus process and database-pool figures read at scrape time.

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric},
    metrics::{
        counter::{ConstCounter, Counter},
        family::Family,
        gauge::{ConstGauge, Gauge},
        histogram::Histogram,
    },
    registry::{Registry, Unit},
};

use crate::storage::Database;

/// Label value of requests that matched no route, so unknown paths share one series.
pub const UNMATCHED_ENDPOINT: &str = "unmatched";

const DURATION_BUCKETS: [f64; 14] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    endpoint: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcLabels {
    method: String,
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct GrpcMethodLabels {
    method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CheckLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct IngestLabels {
    source_id: String,
    kind: &'static str,
    outcome: &'static str,
}

/// What an ingest batch carried: log lines or metric samples.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngestKind {
    Logs,
    Samples,
}

impl IngestKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IngestKind::Logs => "logs",
            IngestKind::Samples => "samples",
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DurationLabels {
    endpoint: String,
    method: String,
}

type HistogramFamily<L = DurationLabels> = Family<L, Histogram, fn() -> Histogram>;

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

/// The registry and the metrics the request path updates.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    durations: Option<HistogramFamily>,
    license_checks: Family<CheckLabels, Counter>,
    grpc_calls: Family<GrpcLabels, Counter>,
    grpc_durations: Option<HistogramFamily<GrpcMethodLabels>>,
    ingest_items: Family<IngestLabels, Counter>,
    retention_removed: Family<KindLabels, Counter>,
    retention_last_run: Gauge,
    retention_errors: Counter,
    compaction_samples: Counter,
    compaction_chunks: Counter,
    compaction_last_run: Gauge,
    compaction_errors: Counter,
    requests_total: std::sync::atomic::AtomicU64,
}

impl Metrics {
    /// `detailed` turns the request-duration histogram on (`ENABLE_DETAILED_METRICS`).
    pub fn new(db: Database, detailed: bool) -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let durations: Option<HistogramFamily> =
            detailed.then(|| Family::new_with_constructor(duration_histogram as fn() -> Histogram));
        {
            let seed = registry.sub_registry_with_prefix("killkrill_flask_backend");
            seed.register("requests", "HTTP requests served", requests.clone());
            if let Some(durations) = &durations {
                seed.register_with_unit(
                    "request_duration",
                    "Time to serve an HTTP request",
                    Unit::Seconds,
                    durations.clone(),
                );
            }
        }
        let grpc_calls = Family::<GrpcLabels, Counter>::default();
        registry.register(
            "killkrill_grpc_requests",
            "gRPC calls served, by method and status code",
            grpc_calls.clone(),
        );
        let grpc_durations: Option<HistogramFamily<GrpcMethodLabels>> =
            detailed.then(|| Family::new_with_constructor(duration_histogram as fn() -> Histogram));
        if let Some(durations) = &grpc_durations {
            registry.register_with_unit(
                "killkrill_grpc_request_duration",
                "Time to serve a gRPC call, to the end of its response stream",
                Unit::Seconds,
                durations.clone(),
            );
        }
        let ingest_items = Family::<IngestLabels, Counter>::default();
        registry.register(
            "killkrill_ingest_items",
            "Log lines and metric samples received per source, accepted (stored) or refused (their batch was)",
            ingest_items.clone(),
        );
        let retention_removed = Family::<KindLabels, Counter>::default();
        registry.register(
            "killkrill_retention_removed_rows",
            "Log lines (kind=logs) and metric samples (kind=samples) the retention sweep removed",
            retention_removed.clone(),
        );
        for kind in [IngestKind::Logs, IngestKind::Samples] {
            let _ = retention_removed.get_or_create(&KindLabels { kind: kind.as_str() });
        }
        let retention_last_run = Gauge::default();
        registry.register_with_unit(
            "killkrill_retention_last_run_timestamp",
            "When this replica last completed a retention sweep, in Unix seconds (0: not yet)",
            Unit::Seconds,
            retention_last_run.clone(),
        );
        let retention_errors = Counter::default();
        registry.register("killkrill_retention_errors", "Retention sweeps that failed", retention_errors.clone());
        let compaction_samples = Counter::default();
        registry.register(
            "killkrill_compaction_samples",
            "Metric samples the compaction moved from the head into chunks",
            compaction_samples.clone(),
        );
        let compaction_chunks = Counter::default();
        registry.register(
            "killkrill_compaction_chunks_written",
            "Metric chunks the compaction wrote (new, or rewritten with late samples)",
            compaction_chunks.clone(),
        );
        let compaction_last_run = Gauge::default();
        registry.register_with_unit(
            "killkrill_compaction_last_run_timestamp",
            "When this replica last completed a compaction, in Unix seconds (0: not yet)",
            Unit::Seconds,
            compaction_last_run.clone(),
        );
        let compaction_errors = Counter::default();
        registry.register("killkrill_compaction_errors", "Compactions that failed", compaction_errors.clone());
        let license_checks = Family::<CheckLabels, Counter>::default();
        registry.register("killkrill_license_checks", "Calls to the license server, by result", license_checks.clone());
        registry.register_collector(Box::new(ProcessCollector));
        registry.register_collector(Box::new(PoolCollector { db }));
        Self {
            registry,
            requests,
            durations,
            license_checks,
            grpc_calls,
            grpc_durations,
            ingest_items,
            retention_removed,
            retention_last_run,
            retention_errors,
            compaction_samples,
            compaction_chunks,
            compaction_last_run,
            compaction_errors,
            requests_total: Default::default(),
        }
    }

    /// Counts the items of an ingest batch for `source_id`: `accepted` if it was stored,
    /// else refused (a batch is stored whole or not at all).
    pub fn observe_ingest(&self, source_id: &str, kind: IngestKind, items: usize, accepted: bool) {
        let labels = IngestLabels {
            source_id: source_id.to_owned(),
            kind: kind.as_str(),
            outcome: if accepted { "accepted" } else { "refused" },
        };
        self.ingest_items.get_or_create(&labels).inc_by(items as u64);
    }

    /// Counts the items of a batch that were accepted but not stored, being older than
    /// their source's retention.
    pub fn observe_dropped(&self, source_id: &str, kind: IngestKind, items: usize) {
        if items > 0 {
            let labels = IngestLabels { source_id: source_id.to_owned(), kind: kind.as_str(), outcome: "dropped" };
            self.ingest_items.get_or_create(&labels).inc_by(items as u64);
        }
    }

    /// Records a completed retention sweep: the rows it removed and when it ended.
    pub fn observe_sweep(&self, logs: u64, samples: u64, chunks: u64, ended_unix_seconds: i64) {
        self.retention_removed.get_or_create(&KindLabels { kind: IngestKind::Logs.as_str() }).inc_by(logs);
        self.retention_removed.get_or_create(&KindLabels { kind: IngestKind::Samples.as_str() }).inc_by(samples);
        self.retention_removed.get_or_create(&KindLabels { kind: "metric_chunks" }).inc_by(chunks);
        self.retention_last_run.set(ended_unix_seconds);
    }

    /// Records a completed compaction: the samples it moved, the chunks it wrote, and
    /// when it ended.
    pub fn observe_compaction(&self, samples: u64, chunks: u64, ended_unix_seconds: i64) {
        self.compaction_samples.inc_by(samples);
        self.compaction_chunks.inc_by(chunks);
        self.compaction_last_run.set(ended_unix_seconds);
    }

    /// Counts a compaction that failed.
    pub fn observe_compaction_error(&self) {
        self.compaction_errors.inc();
    }

    /// Counts a retention sweep that failed.
    pub fn observe_sweep_error(&self) {
        self.retention_errors.inc();
    }

    /// Counts a call to the license server.
    pub fn observe_license_check(&self, ok: bool) {
        self.license_checks.get_or_create(&CheckLabels { result: if ok { "ok" } else { "error" } }).inc();
    }

    /// Requests served since start, for the license keepalive.
    pub fn requests_total(&self) -> u64 {
        self.requests_total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records one served request. `endpoint` is the matched route template.
    pub fn observe_request(&self, endpoint: &str, method: &str, status: u16, seconds: f64) {
        self.requests_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.requests
            .get_or_create(&RequestLabels { endpoint: endpoint.to_owned(), method: method.to_owned(), status })
            .inc();
        if let Some(durations) = &self.durations {
            durations
                .get_or_create(&DurationLabels { endpoint: endpoint.to_owned(), method: method.to_owned() })
                .observe(seconds);
        }
    }

    /// Records one gRPC call: `method` is its path (`/package.Service/Method`), `code`
    /// the gRPC status code's name.
    pub fn observe_grpc(&self, method: &str, code: &'static str, seconds: f64) {
        self.requests_total.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.grpc_calls.get_or_create(&GrpcLabels { method: method.to_owned(), code }).inc();
        if let Some(durations) = &self.grpc_durations {
            durations.get_or_create(&GrpcMethodLabels { method: method.to_owned() }).observe(seconds);
        }
    }

    /// The Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(8 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// `process_*` figures of the running process, read from `/proc` at scrape time.
#[derive(Debug)]
struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = process_stats() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu",
            "User and system CPU time spent",
            Some(&Unit::Seconds),
            cpu.metric_type(),
        )?)?;
        let gauges: [(&str, &str, Option<&Unit>, f64); 4] = [
            ("process_resident_memory", "Resident memory size", Some(&Unit::Bytes), stats.resident_bytes),
            ("process_virtual_memory", "Virtual memory size", Some(&Unit::Bytes), stats.virtual_bytes),
            ("process_open_fds", "Open file descriptors", None, stats.open_fds),
            ("process_start_time", "Start time since the Unix epoch", Some(&Unit::Seconds), stats.start_time),
        ];
        for (name, help, unit, value) in gauges {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, unit, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

/// Connection-pool figures of the database layer.
#[derive(Debug)]
struct PoolCollector {
    db: Database,
}

impl Collector for PoolCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let stats = self.db.pool_stats();
        let figures = [
            ("killkrill_db_pool_connections", "Connections open in the pool", stats.size),
            ("killkrill_db_pool_idle_connections", "Idle connections in the pool", stats.idle),
            ("killkrill_db_pool_max_connections", "DB_POOL_SIZE + DB_MAX_OVERFLOW", stats.max),
        ];
        for (name, help, value) in figures {
            let gauge = ConstGauge::new(i64::from(value));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

struct ProcessStats {
    cpu_seconds: f64,
    resident_bytes: f64,
    virtual_bytes: f64,
    open_fds: f64,
    start_time: f64,
}

/// Reads `/proc/self`; `None` where there is no procfs (the figures are then omitted).
fn process_stats() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name, which may itself contain spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| -> Option<f64> { fields.get(n - 3)?.parse().ok() };
    // SAFETY: sysconf only reads a constant of the running system.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    // SAFETY: as above.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    let cpu_seconds = (field(14)? + field(15)?) / ticks;
    let start_ticks = field(22)?;
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix("btime ")?.trim().parse::<f64>().ok())?;
    let open_fds = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as f64;
    Some(ProcessStats {
        cpu_seconds,
        resident_bytes: field(24)? * page,
        virtual_bytes: field(23)?,
        open_fds,
        start_time: boot_time + start_ticks / ticks,
    })
}
