//! Gap filling in time buckets, as in InfluxDB 3:
//!
//! ```sql
//! SELECT date_bin_gapfill(INTERVAL '5 minutes', time) AS bucket, room,
//!        avg(temp), locf(avg(temp)), interpolate(avg(co))
//! FROM home
//! WHERE time >= '2026-01-01T00:00:00Z' AND time < '2026-01-01T01:00:00Z'
//! GROUP BY bucket, room
//! ```
//!
//! Every bucket of the `WHERE` range is in the answer for every group
//! (here: room) that has at least one row. A bucket without rows has
//! `NULL` for plain aggregates, the last non-null value before it for
//! `locf(...)`, and for `interpolate(...)` the value on the straight line
//! between the nearest buckets with values before and after it (`NULL`
//! at the edges). The answer is ordered by group, then bucket.
//!
//! # How
//!
//! `date_bin_gapfill` is `date_bin` under another name, `locf` and
//! `interpolate` are the identity: the statement plans and runs as an
//! ordinary aggregation. The optimized logical plan tells which output
//! columns are the bucket, the other group keys and the filled values, the
//! stride and origin (literals), and the range (the `WHERE` bounds on the
//! bucketed column, folded to timestamp literals); the rows are then
//! filled in ([`fill`]). The range must be bounded on both sides (400
//! otherwise), the stride a fixed duration (no months). The filled answer
//! stops at `query.max_rows` rows like any other (flagged `truncated`), so
//! a tiny stride over a long range cannot build an unbounded answer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use deltalake::arrow::array::{
    Array, ArrayRef, AsArray, Float64Array, RecordBatch, TimestampNanosecondArray, UInt64Array,
};
use deltalake::arrow::compute::{cast, concat_batches, take};
use deltalake::arrow::datatypes::{DataType, FieldRef, Float64Type, SchemaRef, TimeUnit};
use deltalake::arrow::row::{RowConverter, SortField};
use deltalake::datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use deltalake::datafusion::common::{Result as DfResult, ScalarValue};
use deltalake::datafusion::logical_expr::utils::split_conjunction;
use deltalake::datafusion::logical_expr::{
    BinaryExpr, ColumnarValue, Documentation, Expr, LogicalPlan, Operator, ReturnFieldArgs,
    ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

use crate::server::ApiError;

/// The bucketing function's name.
pub const GAPFILL: &str = "date_bin_gapfill";
const LOCF: &str = "locf";
const INTERPOLATE: &str = "interpolate";

/// `date_bin` under the name `date_bin_gapfill`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Bucketing {
    inner: Arc<ScalarUDF>,
}

impl ScalarUDFImpl for Bucketing {
    fn name(&self) -> &str {
        GAPFILL
    }
    fn signature(&self) -> &Signature {
        self.inner.signature()
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        self.inner.return_type(arg_types)
    }
    fn return_field_from_args(&self, args: ReturnFieldArgs) -> DfResult<FieldRef> {
        self.inner.return_field_from_args(args)
    }
    fn coerce_types(&self, arg_types: &[DataType]) -> DfResult<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }
    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        self.inner.invoke_with_args(args)
    }
}

/// `locf(x)` and `interpolate(x)`: `x`, marked for the filling.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Marker {
    name: &'static str,
    signature: Signature,
}

impl ScalarUDFImpl for Marker {
    fn name(&self) -> &str {
        self.name
    }
    fn signature(&self) -> &Signature {
        &self.signature
    }
    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok(arg_types.first().cloned().unwrap_or(DataType::Null))
    }
    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        args.args.into_iter().next().map_or_else(
            || {
                Err(deltalake::datafusion::error::DataFusionError::Plan(
                    format!("{}() takes one argument", self.name),
                ))
            },
            Ok,
        )
    }
}

/// The three functions, to register in every query session.
pub(crate) fn functions() -> Vec<ScalarUDF> {
    let mut out = vec![ScalarUDF::new_from_impl(Bucketing {
        inner: deltalake::datafusion::functions::datetime::date_bin(),
    })];
    for name in [LOCF, INTERPOLATE] {
        out.push(ScalarUDF::new_from_impl(Marker {
            name,
            signature: Signature::any(1, Volatility::Immutable),
        }));
    }
    out
}

/// How a column is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fill {
    Null,
    Locf,
    Interpolate,
}

/// What to fill, read from a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Spec {
    bucket: usize,
    groups: Vec<usize>,
    fills: Vec<(usize, Fill)>,
    stride_ns: i64,
    origin_ns: i64,
    lower_ns: i64,
    upper_ns: i64,
    upper_inclusive: bool,
}

fn bad(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// A timestamp literal in ns.
fn timestamp_ns(v: &ScalarValue) -> Option<i64> {
    match v {
        ScalarValue::TimestampNanosecond(Some(n), _) => Some(*n),
        ScalarValue::TimestampMicrosecond(Some(n), _) => n.checked_mul(1_000),
        ScalarValue::TimestampMillisecond(Some(n), _) => n.checked_mul(1_000_000),
        ScalarValue::TimestampSecond(Some(n), _) => n.checked_mul(1_000_000_000),
        _ => None,
    }
}

fn strip(e: &Expr) -> &Expr {
    match e {
        Expr::Alias(a) => strip(&a.expr),
        Expr::Cast(c) => strip(&c.expr),
        Expr::TryCast(c) => strip(&c.expr),
        other => other,
    }
}

/// The fill of a projection expression: the outermost `locf` or
/// `interpolate` it is wrapped in.
fn fill_of(e: &Expr) -> Fill {
    match strip(e) {
        Expr::ScalarFunction(f) if f.func.name() == LOCF => Fill::Locf,
        Expr::ScalarFunction(f) if f.func.name() == INTERPOLATE => Fill::Interpolate,
        _ => Fill::Null,
    }
}

/// The bucketing call of an aggregation: (its output name, stride, origin,
/// the bucketed column's name).
fn bucketing(plan: &LogicalPlan) -> Result<Option<(String, i64, i64, String)>, ApiError> {
    let mut found = None;
    let mut error = None;
    let _ = plan.apply(|node| {
        if let LogicalPlan::Aggregate(agg) = node {
            for (i, g) in agg.group_expr.iter().enumerate() {
                let Expr::ScalarFunction(f) = strip(g) else {
                    continue;
                };
                if f.func.name() != GAPFILL {
                    continue;
                }
                let name = agg.schema.field(i).name().clone();
                match read_bucketing(&f.args) {
                    Ok((stride, origin, column)) => found = Some((name, stride, origin, column)),
                    Err(e) => error = Some(e),
                }
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match error {
        Some(e) => Err(e),
        None => Ok(found),
    }
}

fn read_bucketing(args: &[Expr]) -> Result<(i64, i64, String), ApiError> {
    let stride = match args.first().map(strip) {
        Some(Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _)) if v.months == 0 => {
            i64::from(v.days)
                .checked_mul(86_400_000_000_000)
                .and_then(|d| d.checked_add(v.nanoseconds))
        }
        Some(Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _)) => i64::from(v.days)
            .checked_mul(86_400_000_000_000)
            .and_then(|d| d.checked_add(i64::from(v.milliseconds) * 1_000_000)),
        _ => None,
    }
    .filter(|s| *s > 0)
    .ok_or_else(|| {
        bad("date_bin_gapfill's stride must be a fixed positive interval literal (no months)")
    })?;
    let column = match args.get(1).map(strip) {
        Some(Expr::Column(c)) => c.name.clone(),
        _ => {
            return Err(bad(
                "date_bin_gapfill's second argument must be a time column",
            ));
        }
    };
    let origin = match args.get(2).map(strip) {
        None => 0,
        Some(Expr::Literal(v, _)) => timestamp_ns(v)
            .ok_or_else(|| bad("date_bin_gapfill's origin must be a timestamp literal"))?,
        Some(_) => return Err(bad("date_bin_gapfill's origin must be a timestamp literal")),
    };
    Ok((stride, origin, column))
}

/// The `WHERE` bounds on `column` anywhere in the plan: (lower, upper,
/// upper inclusive).
fn bounds(plan: &LogicalPlan, column: &str) -> (Option<i64>, Option<(i64, bool)>) {
    let mut lower: Option<i64> = None;
    let mut upper: Option<(i64, bool)> = None;
    let mut see = |e: &Expr| {
        for c in split_conjunction(e) {
            let Expr::BinaryExpr(BinaryExpr { left, op, right }) = c else {
                continue;
            };
            let (op, value) = match (strip(left), strip(right)) {
                (Expr::Column(col), Expr::Literal(v, _)) if col.name == column => (*op, v),
                (Expr::Literal(v, _), Expr::Column(col)) if col.name == column => match op.swap() {
                    Some(op) => (op, v),
                    None => continue,
                },
                _ => continue,
            };
            let Some(ns) = timestamp_ns(value) else {
                continue;
            };
            match op {
                Operator::Gt | Operator::GtEq => lower = Some(lower.map_or(ns, |l| l.max(ns))),
                Operator::Lt => {
                    upper = Some(
                        upper.map_or((ns, false), |u| if ns <= u.0 { (ns, false) } else { u }),
                    );
                }
                Operator::LtEq => {
                    upper =
                        Some(upper.map_or((ns, true), |u| if ns < u.0 { (ns, true) } else { u }));
                }
                _ => {}
            }
        }
    };
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::Filter(f) => see(&f.predicate),
            LogicalPlan::TableScan(s) => s.filters.iter().for_each(&mut see),
            _ => {}
        }
        Ok(TreeNodeRecursion::Continue)
    });
    (lower, upper)
}

/// The projection that gives the plan its output columns.
fn output_exprs(plan: &LogicalPlan) -> Option<&[Expr]> {
    match plan {
        LogicalPlan::Projection(p) => Some(&p.expr),
        LogicalPlan::Sort(s) => output_exprs(&s.input),
        LogicalPlan::Limit(l) => output_exprs(&l.input),
        LogicalPlan::SubqueryAlias(a) => output_exprs(&a.input),
        _ => None,
    }
}

/// Reads what to fill from an optimized plan; `None` when it does not
/// bucket with `date_bin_gapfill`.
pub fn spec(plan: &LogicalPlan) -> Result<Option<Spec>, ApiError> {
    let Some((bucket_name, stride_ns, origin_ns, column)) = bucketing(plan)? else {
        return Ok(None);
    };
    let group_names: Vec<String> = {
        let mut names = Vec::new();
        let _ = plan.apply(|node| {
            if let LogicalPlan::Aggregate(agg) = node {
                names = (0..agg.group_expr.len())
                    .map(|i| agg.schema.field(i).name().clone())
                    .collect();
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        });
        names
    };
    let exprs = output_exprs(plan).ok_or_else(|| {
        bad("date_bin_gapfill needs a plain SELECT ... GROUP BY over its buckets")
    })?;
    let mut bucket = None;
    let mut groups = Vec::new();
    let mut fills = Vec::new();
    for (i, e) in exprs.iter().enumerate() {
        match strip(e) {
            Expr::Column(c) if c.name == bucket_name => bucket = Some(i),
            Expr::Column(c) if group_names.contains(&c.name) => groups.push(i),
            _ => fills.push((i, fill_of(e))),
        }
    }
    let bucket =
        bucket.ok_or_else(|| bad("the date_bin_gapfill bucket must be in the SELECT list"))?;
    let (lower, upper) = bounds(plan, &column);
    let (Some(lower_ns), Some((upper_ns, upper_inclusive))) = (lower, upper) else {
        return Err(bad(format!(
            "date_bin_gapfill needs the WHERE clause to bound {column} below and above \
             ({column} >= '…' AND {column} < '…')"
        )));
    };
    Ok(Some(Spec {
        bucket,
        groups,
        fills,
        stride_ns,
        origin_ns,
        lower_ns,
        upper_ns,
        upper_inclusive,
    }))
}

/// The rows of `batches` with every missing bucket filled in, ordered by
/// group then bucket; at most `max_rows` rows (and `true` when cut).
pub fn fill(
    spec: &Spec,
    schema: &SchemaRef,
    batches: &[RecordBatch],
    max_rows: usize,
) -> Result<(RecordBatch, bool), ApiError> {
    let internal = |e: &dyn std::fmt::Display| ApiError::internal("gap filling", e);
    let all = concat_batches(schema, batches).map_err(|e| internal(&e))?;
    let ns_type = DataType::Timestamp(TimeUnit::Nanosecond, None);
    let times_ns = cast(all.column(spec.bucket), &ns_type).map_err(|e| internal(&e))?;
    let times = times_ns.as_primitive::<deltalake::arrow::datatypes::TimestampNanosecondType>();
    // Rows by group (in the group columns' sort order), then bucket.
    let group_columns: Vec<ArrayRef> = spec.groups.iter().map(|&g| all.column(g).clone()).collect();
    let converter = RowConverter::new(
        group_columns
            .iter()
            .map(|c| SortField::new(c.data_type().clone()))
            .collect(),
    )
    .map_err(|e| internal(&e))?;
    let keys = converter
        .convert_columns(&group_columns)
        .map_err(|e| internal(&e))?;
    let mut by_group: BTreeMap<Vec<u8>, BTreeMap<i64, usize>> = BTreeMap::new();
    for row in 0..all.num_rows() {
        if times.is_null(row) {
            continue;
        }
        // Without group columns the converter holds no rows: one group.
        let key = if spec.groups.is_empty() {
            Vec::new()
        } else {
            keys.row(row).as_ref().to_vec()
        };
        by_group
            .entry(key)
            .or_default()
            .insert(times.value(row), row);
    }
    let stride = spec.stride_ns;
    let first = spec.origin_ns + (spec.lower_ns - spec.origin_ns).div_euclid(stride) * stride;
    let in_range = |b: i64| {
        if spec.upper_inclusive {
            b <= spec.upper_ns
        } else {
            b < spec.upper_ns
        }
    };
    // One output row per (group, bucket): the source row if there is one.
    let mut out_time: Vec<i64> = Vec::new();
    let mut out_group_row: Vec<u64> = Vec::new();
    let mut out_source: Vec<Option<u64>> = Vec::new();
    let mut group_starts = Vec::new();
    let mut truncated = false;
    'groups: for rows in by_group.values() {
        let any_row = *rows.values().next().unwrap_or(&0) as u64;
        group_starts.push(out_time.len());
        // The group's buckets: every one of the range, and any row's own.
        let mut buckets: BTreeSet<i64> = rows.keys().copied().collect();
        let mut b = first;
        while in_range(b) {
            if out_time.len() + buckets.len() > max_rows {
                break;
            }
            buckets.insert(b);
            b = match b.checked_add(stride) {
                Some(next) => next,
                None => break,
            };
        }
        for t in buckets {
            if out_time.len() >= max_rows {
                truncated = true;
                break 'groups;
            }
            out_time.push(t);
            out_group_row.push(any_row);
            out_source.push(rows.get(&t).map(|r| *r as u64));
        }
        if in_range(b) {
            truncated = true;
            break;
        }
    }
    group_starts.push(out_time.len());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(all.num_columns());
    for (i, field) in schema.fields().iter().enumerate() {
        let column = if i == spec.bucket {
            let ts: ArrayRef = Arc::new(TimestampNanosecondArray::from(out_time.clone()));
            cast(&ts, field.data_type()).map_err(|e| internal(&e))?
        } else if spec.groups.contains(&i) {
            take(
                all.column(i),
                &UInt64Array::from(out_group_row.clone()),
                None,
            )
            .map_err(|e| internal(&e))?
        } else {
            let how = spec
                .fills
                .iter()
                .find(|(c, _)| *c == i)
                .map_or(Fill::Null, |(_, f)| *f);
            filled(all.column(i), how, &out_time, &out_source, &group_starts)
                .map_err(|e| internal(&e))?
        };
        columns.push(column);
    }
    let batch = RecordBatch::try_new(schema.clone(), columns).map_err(|e| internal(&e))?;
    Ok((batch, truncated))
}

/// One value column of the filled answer.
fn filled(
    column: &ArrayRef,
    how: Fill,
    times: &[i64],
    source: &[Option<u64>],
    group_starts: &[usize],
) -> Result<ArrayRef, deltalake::arrow::error::ArrowError> {
    let present = |row: Option<u64>| row.filter(|&r| column.is_valid(r as usize));
    match how {
        Fill::Null => take(column, &UInt64Array::from(source.to_vec()), None),
        Fill::Locf => {
            let mut indices = Vec::with_capacity(source.len());
            for w in group_starts.windows(2) {
                let mut last = None;
                for s in &source[w[0]..w[1]] {
                    if let Some(r) = present(*s) {
                        last = Some(r);
                    }
                    indices.push(present(*s).or(last));
                }
            }
            take(column, &UInt64Array::from(indices), None)
        }
        Fill::Interpolate => {
            let values = cast(column, &DataType::Float64)?;
            let values = values.as_primitive::<Float64Type>();
            let mut out: Vec<Option<f64>> = Vec::with_capacity(source.len());
            for w in group_starts.windows(2) {
                let rows = w[0]..w[1];
                let known: Vec<(i64, f64)> = rows
                    .clone()
                    .filter_map(|i| {
                        present(source[i]).map(|r| (times[i], values.value(r as usize)))
                    })
                    .collect();
                for i in rows {
                    if let Some(r) = present(source[i]) {
                        out.push(Some(values.value(r as usize)));
                        continue;
                    }
                    let t = times[i];
                    let after = known.partition_point(|(k, _)| *k < t);
                    out.push(
                        match (after.checked_sub(1).map(|b| known[b]), known.get(after)) {
                            (Some((t0, v0)), Some(&(t1, v1))) if t1 > t0 => {
                                Some(v0 + (v1 - v0) * (t - t0) as f64 / (t1 - t0) as f64)
                            }
                            _ => None,
                        },
                    );
                }
            }
            let floats: ArrayRef = Arc::new(Float64Array::from(out));
            cast(&floats, column.data_type())
        }
    }
}

#[cfg(test)]
mod tests;
