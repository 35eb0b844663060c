//! Internal values: every node is evaluated over all steps of its range at once, as in
//! Prometheus' engine, so each value holds the whole range.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use super::{EngineError, Labels, Limits};

/// Shared labels: samples of one series at many steps point at one label set.
pub(crate) type Lbl = Arc<Labels>;

/// Prometheus' stale marker.
pub(crate) const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

pub(crate) fn is_stale(v: f64) -> bool {
    v.to_bits() == STALE_NAN_BITS
}

/// A series of points: raw samples, or one point per step where an expression had a value.
#[derive(Debug, Clone)]
pub(crate) struct StepSeries {
    pub labels: Lbl,
    pub points: Vec<(i64, f64)>,
}

/// The evaluation times of one node: `start..=end` every `step` (at least 1 ms).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Ctx {
    /// The number of steps (computed wide, so no time range overflows it).
    pub fn steps(&self) -> usize {
        if self.end < self.start {
            return 0;
        }
        let n = (i128::from(self.end) - i128::from(self.start)) / i128::from(self.step.max(1)) + 1;
        usize::try_from(n).unwrap_or(usize::MAX)
    }

    /// The step times; each is at most `end`, so none overflows.
    pub fn times(&self) -> impl Iterator<Item = i64> + use<> {
        let ctx = *self;
        (0..self.steps()).map(move |i| ctx.time_at(i))
    }

    /// The index of the first step at or after `t` (`steps()` when there is none).
    pub fn first_step_at_or_after(&self, t: i64) -> usize {
        if t <= self.start {
            return 0;
        }
        let step = i128::from(self.step.max(1));
        let n = (i128::from(t) - i128::from(self.start) + step - 1) / step;
        usize::try_from(n).unwrap_or(usize::MAX).min(self.steps())
    }

    /// The time of step `i`.
    pub fn time_at(&self, i: usize) -> i64 {
        let t = i128::from(self.start) + i128::from(self.step.max(1)) * i as i128;
        i64::try_from(t).unwrap_or(if t < 0 { i64::MIN } else { i64::MAX })
    }
}

/// A node's value over its range.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    /// An instant-vector expression: per series, a point at each step it had a value.
    Vector(Vec<StepSeries>),
    /// A scalar expression: one value per step.
    Scalar(Vec<f64>),
    /// A range vector at one instant: raw points per series.
    Matrix(Vec<StepSeries>),
    Str(String),
}

/// One element of an instant vector at one step.
#[derive(Debug, Clone)]
pub(crate) struct Sample {
    pub labels: Lbl,
    /// The input series this sample comes from (for per-series precomputed keys).
    pub src: usize,
    /// The sample's own time (the step, or the raw sample's time for `timestamp()`).
    pub t: i64,
    pub v: f64,
}

/// The samples limit and the deadline, counted as Prometheus counts samples in memory.
pub(crate) struct Budget {
    pub current: usize,
    max: usize,
    deadline: Option<Instant>,
}

impl Budget {
    pub fn new(limits: &Limits) -> Self {
        Budget { current: 0, max: limits.max_samples, deadline: limits.deadline }
    }

    /// Fails when holding `extra` more samples would pass the limit.
    pub fn check(&self, extra: usize) -> Result<(), EngineError> {
        if self.current.saturating_add(extra) > self.max {
            return Err(too_many_samples());
        }
        Ok(())
    }

    pub fn add(&mut self, n: usize) -> Result<(), EngineError> {
        self.check(n)?;
        self.current += n;
        Ok(())
    }

    pub fn check_deadline(&self) -> Result<(), EngineError> {
        match self.deadline {
            Some(deadline) if Instant::now() >= deadline => {
                Err(EngineError::Timeout("query timed out in expression evaluation".into()))
            }
            _ => Ok(()),
        }
    }
}

pub(crate) fn too_many_samples() -> EngineError {
    EngineError::Execution("query processing would load too many samples into memory in query execution".into())
}

pub(crate) fn same_labelset_error() -> EngineError {
    EngineError::Execution("vector cannot contain metrics with the same labelset".into())
}

/// Collects per-step output samples into series, refusing two samples with the same
/// label set at one step. Series keep the order they first appear in.
#[derive(Default)]
pub(crate) struct Collector {
    index: HashMap<Lbl, usize>,
    pub series: Vec<StepSeries>,
}

impl Collector {
    pub fn push(&mut self, labels: Lbl, t: i64, v: f64) -> Result<(), EngineError> {
        if let Some(&i) = self.index.get(&labels) {
            let points = &mut self.series[i].points;
            if points.last().is_some_and(|p| p.0 == t) {
                return Err(same_labelset_error());
            }
            points.push((t, v));
        } else {
            self.index.insert(labels.clone(), self.series.len());
            self.series.push(StepSeries { labels, points: vec![(t, v)] });
        }
        Ok(())
    }

    pub fn total_points(&self) -> usize {
        self.series.iter().map(|s| s.points.len()).sum()
    }
}
