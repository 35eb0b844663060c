//! Binary operators: arithmetic, comparisons (filtering or `bool`), `atan2`, and the set
//! operators, with Prometheus' vector matching (`on`/`ignoring`, `group_left`/`group_right`).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use promql_parser::parser::{BinaryExpr, LabelModifier, VectorMatchCardinality};

use super::eval::{Evaluator, range_eval};
use super::labels::{METRIC_NAME, drop_name, key_on, key_without, set_or_remove, to_prom_string};
use super::value::{Ctx, Lbl, Sample, StepSeries, Val};
use super::{EngineError, Labels};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Op {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Atan2,
    Eq,
    Ne,
    Gt,
    Lt,
    Ge,
    Le,
    And,
    Or,
    Unless,
}

impl Op {
    fn parse(op: &str) -> Result<Op, EngineError> {
        Ok(match op {
            "+" => Op::Add,
            "-" => Op::Sub,
            "*" => Op::Mul,
            "/" => Op::Div,
            "%" => Op::Mod,
            "^" => Op::Pow,
            "atan2" => Op::Atan2,
            "==" => Op::Eq,
            "!=" => Op::Ne,
            ">" => Op::Gt,
            "<" => Op::Lt,
            ">=" => Op::Ge,
            "<=" => Op::Le,
            "and" => Op::And,
            "or" => Op::Or,
            "unless" => Op::Unless,
            other => return Err(EngineError::Execution(format!("unsupported binary operator: {other}"))),
        })
    }

    fn is_comparison(self) -> bool {
        matches!(self, Op::Eq | Op::Ne | Op::Gt | Op::Lt | Op::Ge | Op::Le)
    }

    /// Arithmetic drops `__name__`; comparisons and `atan2` keep it (Prometheus 2.42).
    fn drops_name(self) -> bool {
        matches!(self, Op::Add | Op::Sub | Op::Mul | Op::Div | Op::Mod | Op::Pow)
    }

    /// The value and whether a comparison keeps the element (`vectorElemBinop`).
    fn apply(self, l: f64, r: f64) -> (f64, bool) {
        match self {
            Op::Add => (l + r, true),
            Op::Sub => (l - r, true),
            Op::Mul => (l * r, true),
            Op::Div => (l / r, true),
            Op::Mod => (go_mod(l, r), true),
            Op::Pow => (l.powf(r), true),
            Op::Atan2 => (l.atan2(r), true),
            Op::Eq => (l, l == r),
            Op::Ne => (l, l != r),
            Op::Gt => (l, l > r),
            Op::Lt => (l, l < r),
            Op::Ge => (l, l >= r),
            Op::Le => (l, l <= r),
            Op::And | Op::Or | Op::Unless => (f64::NAN, false),
        }
    }

    /// Between two scalars a comparison yields 0 or 1.
    fn scalar(self, l: f64, r: f64) -> f64 {
        let (v, keep) = self.apply(l, r);
        if self.is_comparison() { if keep { 1.0 } else { 0.0 } } else { v }
    }
}

/// Go's `math.Mod`: the result has the sign of `l` (as Rust's `%`).
fn go_mod(l: f64, r: f64) -> f64 {
    l % r
}

/// How the two sides' series are matched.
struct Matching {
    card: VectorMatchCardinality,
    on: bool,
    names: Vec<String>,
}

impl Matching {
    fn signature(&self, labels: &Labels) -> String {
        if self.on { key_on(labels, &self.names) } else { key_without(labels, &self.names) }
    }

    /// The labels the match group is made of (for error messages).
    fn match_labels(&self, labels: &Labels) -> Labels {
        labels
            .iter()
            .filter(|(k, _)| {
                let listed = self.names.contains(k);
                listed == self.on && (self.on || k.as_str() != METRIC_NAME)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }
}

impl Evaluator {
    pub(crate) fn eval_binary(&mut self, b: &BinaryExpr, ctx: &Ctx) -> Result<Val, EngineError> {
        let op = Op::parse(&b.op.to_string().to_lowercase())?;
        let return_bool = b.modifier.as_ref().is_some_and(|m| m.return_bool);
        let base = self.budget.current;
        let lhs = self.eval(&b.lhs, ctx)?;
        let rhs = self.eval(&b.rhs, ctx)?;
        match (lhs, rhs) {
            (Val::Scalar(l), Val::Scalar(r)) => {
                let out: Vec<f64> = l.iter().zip(&r).map(|(&l, &r)| op.scalar(l, r)).collect();
                self.budget.current = base + out.len();
                Ok(Val::Scalar(out))
            }
            (Val::Vector(v), Val::Scalar(s)) => self.vector_scalar(op, v, s, false, return_bool, ctx, base),
            (Val::Scalar(s), Val::Vector(v)) => self.vector_scalar(op, v, s, true, return_bool, ctx, base),
            (Val::Vector(l), Val::Vector(r)) => {
                let mut matching = match b.modifier.as_ref() {
                    None => Matching { card: VectorMatchCardinality::OneToOne, on: false, names: Vec::new() },
                    Some(m) => {
                        let (on, names) = match &m.matching {
                            Some(LabelModifier::Include(l)) => (true, l.labels.clone()),
                            Some(LabelModifier::Exclude(l)) => (false, l.labels.clone()),
                            None => (false, Vec::new()),
                        };
                        Matching { card: m.card.clone(), on, names }
                    }
                };
                matching.names.sort();
                self.vector_vector(op, l, r, &matching, return_bool, ctx, base)
            }
            _ => Err(EngineError::Execution("binary operator on unsupported operand types".into())),
        }
    }

    #[expect(clippy::too_many_arguments, reason = "the operands and modifiers of one operation")]
    fn vector_scalar(
        &mut self,
        op: Op,
        series: Vec<StepSeries>,
        scalar: Vec<f64>,
        swap: bool,
        return_bool: bool,
        ctx: &Ctx,
        base: usize,
    ) -> Result<Val, EngineError> {
        let drop = op.drops_name() || return_bool;
        let mut names: HashMap<usize, Lbl> = HashMap::new();
        let args = [Val::Vector(series), Val::Scalar(scalar)];
        range_eval(&mut self.budget, ctx, base, &args, |_, _, a| {
            let s = a[1].scalar();
            let mut out = Vec::with_capacity(a[0].vector().len());
            for sample in a[0].vector() {
                let (l, r) = if swap { (s, sample.v) } else { (sample.v, s) };
                let (mut value, mut keep) = op.apply(l, r);
                if op.is_comparison() && swap {
                    value = r;
                }
                if return_bool {
                    value = if keep { 1.0 } else { 0.0 };
                    keep = true;
                }
                if keep {
                    let labels = if drop { name_dropped(&mut names, sample) } else { sample.labels.clone() };
                    out.push((labels, value));
                }
            }
            Ok(out)
        })
    }

    #[expect(clippy::too_many_arguments, reason = "the operands and modifiers of one operation")]
    fn vector_vector(
        &mut self,
        op: Op,
        lhs: Vec<StepSeries>,
        rhs: Vec<StepSeries>,
        matching: &Matching,
        return_bool: bool,
        ctx: &Ctx,
        base: usize,
    ) -> Result<Val, EngineError> {
        let lsig: Vec<String> = lhs.iter().map(|s| matching.signature(&s.labels)).collect();
        let rsig: Vec<String> = rhs.iter().map(|s| matching.signature(&s.labels)).collect();
        let args = [Val::Vector(lhs), Val::Vector(rhs)];
        let mut metrics: HashMap<(usize, usize), Lbl> = HashMap::new();
        range_eval(&mut self.budget, ctx, base, &args, |_, _, a| {
            let (l, r) = (a[0].vector(), a[1].vector());
            match op {
                Op::And => {
                    let right: HashSet<&str> = r.iter().map(|s| rsig[s.src].as_str()).collect();
                    Ok(l.iter().filter(|s| right.contains(lsig[s.src].as_str())).map(pair).collect())
                }
                Op::Or => {
                    let left: HashSet<&str> = l.iter().map(|s| lsig[s.src].as_str()).collect();
                    let mut out: Vec<(Lbl, f64)> = l.iter().map(pair).collect();
                    out.extend(r.iter().filter(|s| !left.contains(rsig[s.src].as_str())).map(pair));
                    Ok(out)
                }
                Op::Unless => {
                    let right: HashSet<&str> = r.iter().map(|s| rsig[s.src].as_str()).collect();
                    Ok(l.iter().filter(|s| !right.contains(lsig[s.src].as_str())).map(pair).collect())
                }
                _ => vector_binop(op, l, r, &lsig, &rsig, matching, return_bool, &mut metrics),
            }
        })
    }
}

fn pair(s: &Sample) -> (Lbl, f64) {
    (s.labels.clone(), s.v)
}

fn name_dropped(cache: &mut HashMap<usize, Lbl>, s: &Sample) -> Lbl {
    cache.entry(s.src).or_insert_with(|| Arc::new(drop_name(&s.labels))).clone()
}

/// One step of an arithmetic or comparison operation between two vectors
/// (Prometheus' `VectorBinop`).
#[expect(clippy::too_many_arguments, reason = "both sides with their signatures")]
fn vector_binop(
    op: Op,
    lhs: &[Sample],
    rhs: &[Sample],
    lsig: &[String],
    rsig: &[String],
    matching: &Matching,
    return_bool: bool,
    metrics: &mut HashMap<(usize, usize), Lbl>,
) -> Result<Vec<(Lbl, f64)>, EngineError> {
    if lhs.is_empty() || rhs.is_empty() {
        return Ok(Vec::new());
    }
    let one_to_many = matches!(matching.card, VectorMatchCardinality::OneToMany(_));
    // The "many" side is iterated; the "one" side is looked up by signature.
    let (many, one, many_sig, one_sig) = if one_to_many { (rhs, lhs, rsig, lsig) } else { (lhs, rhs, lsig, rsig) };
    let mut one_by_sig: HashMap<&str, &Sample> = HashMap::with_capacity(one.len());
    for s in one {
        let sig = one_sig[s.src].as_str();
        if let Some(dup) = one_by_sig.insert(sig, s) {
            let side = if one_to_many { "left" } else { "right" };
            return Err(EngineError::Execution(format!(
                "found duplicate series for the match group {} on the {side} hand-side of the operation: [{}, {}];many-to-many matching not allowed: matching labels must be unique on one side",
                to_prom_string(&matching.match_labels(&s.labels)),
                to_prom_string(&s.labels),
                to_prom_string(&dup.labels),
            )));
        }
    }
    let include: &[String] = match &matching.card {
        VectorMatchCardinality::ManyToOne(l) | VectorMatchCardinality::OneToMany(l) => &l.labels,
        _ => &[],
    };
    let one_to_one = matches!(matching.card, VectorMatchCardinality::OneToOne);
    let mut matched: HashMap<&str, HashSet<Lbl>> = HashMap::new();
    let mut out = Vec::new();
    for ls in many {
        let sig = many_sig[ls.src].as_str();
        let Some(rs) = one_by_sig.get(sig) else { continue };
        let (vl, vr) = if one_to_many { (rs.v, ls.v) } else { (ls.v, rs.v) };
        let (mut value, keep) = op.apply(vl, vr);
        if return_bool {
            value = if keep { 1.0 } else { 0.0 };
        } else if !keep {
            continue;
        }
        let metric = metrics
            .entry((ls.src, rs.src))
            .or_insert_with(|| Arc::new(result_metric(&ls.labels, &rs.labels, op, matching, include, return_bool)))
            .clone();
        let seen = matched.entry(sig).or_default();
        if one_to_one {
            if !seen.is_empty() {
                return Err(EngineError::Execution(
                    "multiple matches for labels: many-to-one matching must be explicit (group_left/group_right)"
                        .into(),
                ));
            }
            seen.insert(metric.clone());
        } else if !seen.insert(metric.clone()) {
            return Err(EngineError::Execution(
                "multiple matches for labels: grouping labels must ensure unique matches".into(),
            ));
        }
        out.push((metric, value));
    }
    Ok(out)
}

/// The labels of a result element (Prometheus' `resultMetric`): the "many" side's labels,
/// without `__name__` for arithmetic, reduced to the matching labels for one-to-one `on`,
/// plus the `group_x` labels taken from the "one" side.
fn result_metric(
    many: &Labels,
    one: &Labels,
    op: Op,
    matching: &Matching,
    include: &[String],
    return_bool: bool,
) -> Labels {
    let mut out = many.clone();
    if op.drops_name() {
        out.remove(METRIC_NAME);
    }
    if matches!(matching.card, VectorMatchCardinality::OneToOne) {
        if matching.on {
            out.retain(|k, _| matching.names.contains(k));
        } else {
            out.retain(|k, _| !matching.names.contains(k));
        }
    }
    for name in include {
        let value = one.get(name).map(String::as_str).unwrap_or("");
        set_or_remove(&mut out, name, value);
    }
    if return_bool {
        out.remove(METRIC_NAME);
    }
    out
}
