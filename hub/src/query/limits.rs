//! Functions whose output size is set by an argument, capped before they
//! allocate: `repeat`, `lpad`, `rpad`, `array_repeat`, and the list forms
//! of `range` and `generate_series`.
//!
//! DataFusion's memory pool accounts for what operators reserve (hash
//! tables, sorts, join buffers), not for the arrays an expression builds:
//! `SELECT length(repeat('x', 200000000)) FROM generate_series(1, 40)` asks
//! for 8 GB in one batch. Each of these functions is replaced in every
//! query session by a wrapper that computes, from its arguments, the most
//! bytes one value could take and fails the query (400) when that is over
//! `query.max_string_bytes`, before calling the real function.

use std::sync::Arc;

use deltalake::arrow::array::{Array, ArrayRef, AsArray};
use deltalake::arrow::compute::kernels::length::length;
use deltalake::arrow::compute::{cast, max};
use deltalake::arrow::datatypes::{DataType, FieldRef, Int64Type};
use deltalake::datafusion::common::{Result, ScalarValue, exec_err};
use deltalake::datafusion::logical_expr::{
    ColumnarValue, Documentation, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl,
    Signature,
};

/// How a function's output grows with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Growth {
    /// `repeat(text, n)`: `len(text) × n` bytes.
    Repeat,
    /// `lpad(text, n [, fill])`, `rpad`: `n` characters, up to 4 bytes each.
    Pad,
    /// `array_repeat(element, n)`: `n` elements (8 bytes counted each).
    ArrayRepeat,
    /// `range(stop)`, `range(start, stop [, step])`: one element per step.
    Range,
}

/// A function wrapped with its size check.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Limited {
    inner: Arc<ScalarUDF>,
    growth: Growth,
    limit: u64,
}

/// The wrappers to register in a session (replacing the built-ins of the
/// same names).
pub(crate) fn limited_functions(limit_bytes: u64) -> Vec<ScalarUDF> {
    use deltalake::datafusion::functions::{string, unicode};
    use deltalake::datafusion::functions_nested::{range, repeat};
    [
        (string::repeat(), Growth::Repeat),
        (unicode::lpad(), Growth::Pad),
        (unicode::rpad(), Growth::Pad),
        (repeat::array_repeat_udf(), Growth::ArrayRepeat),
        (range::range_udf(), Growth::Range),
        (range::gen_series_udf(), Growth::Range),
    ]
    .into_iter()
    .map(|(inner, growth)| {
        ScalarUDF::new_from_impl(Limited {
            inner,
            growth,
            limit: limit_bytes,
        })
    })
    .collect()
}

/// The largest integer in an argument (`None` when it is not an integer).
fn max_int(arg: &ColumnarValue) -> Option<i64> {
    match arg {
        ColumnarValue::Scalar(s) => match s.cast_to(&DataType::Int64).ok()? {
            ScalarValue::Int64(v) => v,
            _ => None,
        },
        ColumnarValue::Array(a) => {
            if !a.data_type().is_integer() {
                return None;
            }
            let ints: ArrayRef = cast(a, &DataType::Int64).ok()?;
            max(ints.as_primitive::<Int64Type>())
        }
    }
}

/// The smallest integer in an argument.
fn min_int(arg: &ColumnarValue) -> Option<i64> {
    match arg {
        ColumnarValue::Scalar(_) => max_int(arg),
        ColumnarValue::Array(a) => {
            if !a.data_type().is_integer() {
                return None;
            }
            let ints: ArrayRef = cast(a, &DataType::Int64).ok()?;
            deltalake::arrow::compute::min(ints.as_primitive::<Int64Type>())
        }
    }
}

/// The longest string in an argument, in bytes.
fn max_len(arg: &ColumnarValue) -> Option<u64> {
    match arg {
        ColumnarValue::Scalar(s) => match s {
            ScalarValue::Utf8(v) | ScalarValue::LargeUtf8(v) | ScalarValue::Utf8View(v) => {
                Some(v.as_ref().map_or(0, |s| s.len() as u64))
            }
            _ => None,
        },
        ColumnarValue::Array(a) => {
            let lengths = length(a).ok()?;
            let lengths: ArrayRef = cast(&lengths, &DataType::Int64).ok()?;
            max(lengths.as_primitive::<Int64Type>()).map(|n| n.max(0) as u64)
        }
    }
}

impl Limited {
    /// The most bytes one value of this call could take, if it can be told.
    fn bound(&self, args: &[ColumnarValue]) -> Option<u64> {
        let count = |arg: Option<&ColumnarValue>| arg.and_then(max_int).map(|n| n.max(0) as u64);
        match self.growth {
            Growth::Repeat => {
                let text = args.first().and_then(max_len)?;
                Some(text.saturating_mul(count(args.get(1))?))
            }
            Growth::Pad => Some(count(args.get(1))?.saturating_mul(4)),
            Growth::ArrayRepeat => Some(count(args.get(1))?.saturating_mul(8)),
            Growth::Range => {
                let (lo, hi, step) = match args {
                    [stop] => (Some(0), max_int(stop), Some(1)),
                    [start, stop] => (min_int(start), max_int(stop), Some(1)),
                    [start, stop, step] => (min_int(start), max_int(stop), min_int(step)),
                    _ => return None,
                };
                // Integers only; dates and timestamps with intervals are
                // not bounded here (query.timeout still applies).
                let (lo, hi) = (lo?, hi?);
                let step = step?.unsigned_abs().max(1);
                let span = (i128::from(hi) - i128::from(lo)).unsigned_abs();
                let n = u64::try_from(span / u128::from(step)).unwrap_or(u64::MAX);
                Some(n.saturating_add(1).saturating_mul(8))
            }
        }
    }
}

impl ScalarUDFImpl for Limited {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn aliases(&self) -> &[String] {
        self.inner.aliases()
    }

    fn signature(&self) -> &Signature {
        self.inner.signature()
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        self.inner.return_type(arg_types)
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        self.inner.return_field_from_args(args)
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        self.inner.coerce_types(arg_types)
    }

    fn documentation(&self) -> Option<&Documentation> {
        self.inner.documentation()
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        if let Some(bytes) = self.bound(&args.args)
            && bytes > self.limit
        {
            return exec_err!(
                "{}() would build a value of up to {bytes} bytes; query.max_string_bytes allows {}",
                self.inner.name(),
                self.limit
            );
        }
        self.inner.invoke_with_args(args)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::datafusion::prelude::SessionContext;

    async fn run(sql: &str) -> Result<usize> {
        let ctx = SessionContext::new();
        for f in limited_functions(1024 * 1024) {
            ctx.register_udf(f);
        }
        let batches = ctx.sql(sql).await?.collect().await?;
        Ok(batches.iter().map(|b| b.num_rows()).sum())
    }

    #[tokio::test]
    async fn oversized_values_fail_before_they_are_built() {
        for sql in [
            "SELECT length(repeat('x', 200000000)) FROM generate_series(1, 40)",
            "SELECT lpad('a', 100000000)",
            "SELECT rpad(s, 100000000) FROM (VALUES ('a'), ('b')) t(s)",
            "SELECT array_repeat(1, 100000000)",
            "SELECT cardinality(range(1, 1000000000))",
            "SELECT unnest(generate_series(1, 1000000000))",
        ] {
            let err = run(sql).await.expect_err(sql);
            assert!(
                err.to_string().contains("query.max_string_bytes"),
                "{sql}: {err}"
            );
        }
        // Ordinary sizes are untouched, and the range table function (a
        // stream) is not a list.
        for sql in [
            "SELECT repeat('ab', 1000), lpad('7', 3, '0'), rpad('x', 5)",
            "SELECT array_repeat(1, 10), range(5), generate_series(1, 10, 2)",
            "SELECT count(*) FROM generate_series(1, 100000)",
        ] {
            assert_eq!(run(sql).await.expect(sql), 1, "{sql}");
        }
    }
}
