//! The samples the query API's cases and the conformance run read: counters with resets,
//! gauges with gaps, stale markers, NaN and ±Inf, classic histograms, several jobs and
//! instances, every 15 s (with a little jitter) over 50 minutes from a whole minute.
//! The same `WriteRequest`s go to Prometheus and to KillKrill.

use killkrill::protocol::remote_write::{Label, MetricMetadata, MetricType, Sample, TimeSeries, WriteRequest};

/// Samples per series at most (one every 15 s for 50 minutes).
pub const POINTS: i64 = 200;
pub const INTERVAL_MS: i64 = 15_000;
pub const STALE_NAN: f64 = f64::from_bits(0x7ff0_0000_0000_0002);

/// A fixed pseudo-random sequence (xorshift64*), so that every run writes the same shapes.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A whole number in `[0, n)`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A fraction in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One series being built: its labels and samples.
struct Built {
    labels: Vec<(String, String)>,
    samples: Vec<(i64, f64)>,
}

struct Builder {
    start_ms: i64,
    random: Random,
    series: Vec<Built>,
}

impl Builder {
    /// The time of sample `i`, with up to ±120 ms of scrape jitter when `jitter`.
    fn at(&mut self, i: i64, jitter: bool) -> i64 {
        let offset = if jitter { self.random.below(241) as i64 - 120 } else { 0 };
        self.start_ms + i * INTERVAL_MS + offset
    }

    /// Adds a series whose sample `i` is `value(i)`, skipping `None`.
    fn add(
        &mut self,
        name: &str,
        labels: &[(&str, &str)],
        jitter: bool,
        mut value: impl FnMut(i64, &mut Random) -> Option<f64>,
    ) {
        let mut all: Vec<(String, String)> = labels.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        all.push(("__name__".to_owned(), name.to_owned()));
        all.sort();
        let mut samples = Vec::new();
        for i in 0..POINTS {
            let t = self.at(i, jitter);
            if let Some(v) = value(i, &mut self.random) {
                samples.push((t, v));
            }
        }
        self.series.push(Built { labels: all, samples });
    }

    /// A counter growing by up to `step` a scrape, back to a small value at each of `resets`.
    fn counter(&mut self, name: &str, labels: &[(&str, &str)], step: u64, resets: &[i64]) {
        let mut total = 0.0;
        let resets = resets.to_vec();
        self.add(name, labels, true, move |i, r| {
            if resets.contains(&i) {
                total = r.below(3) as f64;
            } else {
                total += r.below(step + 1) as f64;
            }
            Some(total)
        });
    }
}

/// The dataset's series, starting at `start_ms` (a whole minute, in the last hour).
pub fn series(start_ms: i64) -> Vec<TimeSeries> {
    let mut b = Builder { start_ms, random: Random(0x9E37_79B9_7F4A_7C15), series: Vec::new() };
    let api1 = [("job", "api"), ("instance", "api-1:80")];
    let api2 = [("job", "api"), ("instance", "api-2:80")];
    let web1 = [("job", "web"), ("instance", "web-1:80")];

    // Counters: resets, a double reset, a gap longer than the lookback, a late start.
    b.counter("http_requests_total", &[api1[0], api1[1], ("method", "GET"), ("code", "200")], 20, &[80]);
    b.counter("http_requests_total", &[api1[0], api1[1], ("method", "GET"), ("code", "500")], 2, &[]);
    b.counter("http_requests_total", &[api2[0], api2[1], ("method", "POST"), ("code", "200")], 9, &[130, 131]);
    let mut total = 0.0;
    b.add("http_requests_total", &[web1[0], web1[1], ("method", "GET"), ("code", "200")], true, |i, r| {
        total += r.below(6) as f64;
        (!(60..100).contains(&i)).then_some(total)
    });
    let mut total = 0.0;
    b.add("http_requests_total", &[web1[0], web1[1], ("method", "GET"), ("code", "404")], true, |i, r| {
        total += r.below(2) as f64;
        (i >= 50).then_some(total)
    });
    let mut cpu = 0.0;
    b.add("process_cpu_seconds_total", &api1, true, |_, r| {
        cpu += r.unit() * 0.37;
        Some(cpu)
    });
    let mut cpu = 100.0;
    b.add("process_cpu_seconds_total", &api2, true, |i, r| {
        cpu = if i == 70 { 0.5 } else { cpu + r.unit() * 0.2 };
        Some(cpu)
    });

    // Gauges: a stale marker then a resumption, an end by a stale marker, large and tiny
    // and negative values.
    for (instance, sensor, base) in [("n1", "cpu", 55.0), ("n1", "gpu", 70.0), ("n2", "cpu", 48.0)] {
        let labels = [("job", "node"), ("instance", instance), ("sensor", sensor)];
        b.add("node_temperature_celsius", &labels, false, |i, r| {
            if instance == "n1" && sensor == "gpu" {
                if i == 120 {
                    return Some(STALE_NAN);
                }
                if (121..140).contains(&i) {
                    return None;
                }
            }
            Some(base + (i as f64 / 9.0).sin() * 6.0 + r.unit())
        });
    }
    b.add("queue_depth", &[("job", "worker"), ("instance", "w1")], false, |i, r| match i {
        100 => Some(STALE_NAN),
        101.. => None,
        _ => Some(r.below(40) as f64),
    });
    b.add("queue_depth", &[("job", "worker"), ("instance", "w2")], false, |_, r| Some(r.below(25) as f64));
    for (kind, used) in [("used", 6.2e9), ("free", 1.9e9)] {
        b.add("memory_bytes", &[("job", "node"), ("instance", "n1"), ("type", kind)], false, |i, r| {
            Some((used + i as f64 * 1.5e6 + r.below(1 << 20) as f64).round())
        });
    }
    b.add("tiny_values", &[("job", "node")], false, |i, _| Some((i as f64 + 1.0) * 3e-9));
    b.add("signed_gauge", &[("job", "node")], false, |i, _| Some(((i as f64) / 7.0).cos() * 12.5 - 2.0));

    // NaN and the infinities.
    b.add("weird_values", &[("kind", "nan")], false, |i, _| Some(if i % 10 == 3 { f64::NAN } else { i as f64 }));
    b.add("weird_values", &[("kind", "inf")], false, |i, _| Some(if i % 25 == 7 { f64::INFINITY } else { 1.0 }));
    b.add("weird_values", &[("kind", "neginf")], false, |i, _| {
        Some(if i >= 150 { f64::NEG_INFINITY } else { -(i as f64) })
    });

    // Availability and build information (for joins with group_left).
    for (labels, down) in [(api1, 40..48), (api2, 0..0), (web1, 150..170)] {
        b.add("up", &labels, false, |i, _| Some(if down.contains(&i) { 0.0 } else { 1.0 }));
    }
    b.add("build_info", &[api1[0], api1[1], ("version", "1.2.3")], false, |_, _| Some(1.0));
    b.add("build_info", &[api2[0], api2[1], ("version", "1.2.4")], false, |_, _| Some(1.0));

    // Classic histograms, the web one with a counter reset.
    let bounds = ["0.05", "0.1", "0.25", "0.5", "1", "2.5", "+Inf"];
    for (labels, reset) in [(api1, None), (web1, Some(110))] {
        let mut counts = [0.0f64; 7];
        let mut sum = 0.0;
        let mut rows: Vec<([f64; 7], f64)> = Vec::new();
        let mut random = Random(if reset.is_some() { 7 } else { 11 });
        for i in 0..POINTS {
            if Some(i) == reset {
                counts = [0.0; 7];
                sum = 0.0;
            }
            for _ in 0..random.below(12) {
                let latency = random.unit().powi(3) * 3.0;
                sum += latency;
                for (count, bound) in counts.iter_mut().zip(bounds) {
                    if bound == "+Inf" || latency <= bound.parse::<f64>().unwrap() {
                        *count += 1.0;
                    }
                }
            }
            rows.push((counts, sum));
        }
        for (at, bound) in bounds.iter().enumerate() {
            let labels = [labels[0], labels[1], ("le", *bound)];
            b.add("request_duration_seconds_bucket", &labels, false, |i, _| Some(rows[i as usize].0[at]));
        }
        b.add("request_duration_seconds_sum", &labels, false, |i, _| Some(rows[i as usize].1));
        b.add("request_duration_seconds_count", &labels, false, |i, _| Some(rows[i as usize].0[6]));
    }

    b.series
        .into_iter()
        .map(|s| TimeSeries {
            labels: s
                .labels
                .into_iter()
                .map(|(name, value)| Label { name: name.into_bytes(), value: value.into_bytes() })
                .collect(),
            samples: s.samples.into_iter().map(|(timestamp, value)| Sample { value, timestamp }).collect(),
            histograms: vec![],
        })
        .collect()
}

/// The families' declared types and help, as Prometheus sends them beside the samples.
pub fn metadata() -> Vec<MetricMetadata> {
    let declared = |name: &str, t: MetricType, help: &str| MetricMetadata {
        r#type: t as i32,
        metric_family_name: name.to_owned(),
        help: help.to_owned(),
        unit: String::new(),
    };
    vec![
        declared("http_requests_total", MetricType::Counter, "Requests served."),
        declared("node_temperature_celsius", MetricType::Gauge, "A temperature."),
        declared("request_duration_seconds", MetricType::Histogram, "Request latency."),
        declared("up", MetricType::Gauge, "Whether the target answered."),
    ]
}

/// The dataset as remote_write requests of at most `most` samples each (whole series).
pub fn requests(start_ms: i64, most: usize) -> Vec<WriteRequest> {
    let mut requests = vec![WriteRequest { timeseries: vec![], metadata: metadata() }];
    let mut size = 0;
    for series in series(start_ms) {
        if size + series.samples.len() > most {
            requests.push(WriteRequest { timeseries: vec![], metadata: vec![] });
            size = 0;
        }
        size += series.samples.len();
        requests.last_mut().unwrap().timeseries.push(series);
    }
    requests
}
