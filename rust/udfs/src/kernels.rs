//! Shared plumbing for Weir's UDFs: turning DataFusion arguments (arrays or scalars) into
//! string arrays and wrapping results back into the shape DataFusion expects.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{exec_err, Result, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs};

/// The arguments as arrays of `number_rows` rows, and whether all of them were scalars
/// (then the result goes back as a scalar too).
pub fn args_as_arrays(args: &ScalarFunctionArgs) -> Result<(Vec<ArrayRef>, bool)> {
    let all_scalar = args.args.iter().all(|a| matches!(a, ColumnarValue::Scalar(_)));
    let arrays = if all_scalar {
        args.args
            .iter()
            .map(|a| a.to_array(1))
            .collect::<Result<Vec<_>>>()?
    } else {
        ColumnarValue::values_to_arrays(&args.args)?
    };
    Ok((arrays, all_scalar))
}

/// Casts `array` to UTF-8 (a no-op for `Utf8`), so functions accept every string type.
pub fn to_utf8(array: &ArrayRef) -> Result<StringArray> {
    let utf8 = match array.data_type() {
        DataType::Utf8 => Arc::clone(array),
        _ => cast(array, &DataType::Utf8)?,
    };
    Ok(utf8
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("cast to Utf8 yields a StringArray")
        .clone())
}

/// Wraps a result array as DataFusion expects: a scalar when every input was a scalar.
pub fn into_columnar(result: ArrayRef, all_scalar: bool) -> Result<ColumnarValue> {
    if all_scalar {
        Ok(ColumnarValue::Scalar(ScalarValue::try_from_array(&result, 0)?))
    } else {
        Ok(ColumnarValue::Array(result))
    }
}

/// Applies `f` to each non-null value of a one-argument string function; nulls stay null.
/// `f` writes its result into a buffer that is reused across rows (no allocation per row).
pub fn map_strings(
    name: &str,
    args: &ScalarFunctionArgs,
    f: impl Fn(&str, &mut String),
) -> Result<ColumnarValue> {
    let (arrays, all_scalar) = args_as_arrays(args)?;
    let [input] = arrays.as_slice() else {
        return exec_err!("{name} takes exactly one argument, got {}", arrays.len());
    };
    let strings = to_utf8(input)?;
    let mut buffer = String::new();
    // Often every value is already normal (a contract pattern may even require it): then the
    // input is the result, and no value is copied.
    let first_changed = strings.iter().position(|value| {
        value.is_some_and(|value| {
            buffer.clear();
            f(value, &mut buffer);
            buffer != value
        })
    });
    let Some(first_changed) = first_changed else {
        return into_columnar(Arc::new(strings), all_scalar);
    };
    let mut out = StringBuilder::with_capacity(strings.len(), strings.value_data().len());
    out.extend(strings.iter().take(first_changed));
    for value in strings.iter().skip(first_changed) {
        match value {
            None => out.append_null(),
            Some(value) => {
                buffer.clear();
                f(value, &mut buffer);
                out.append_value(&buffer);
            }
        }
    }
    into_columnar(Arc::new(out.finish()), all_scalar)
}

/// Trims `value` and appends it to `out` in lower or upper case (ASCII fast path).
pub fn push_trimmed_case(value: &str, out: &mut String, upper: bool) {
    let trimmed = value.trim();
    if trimmed.is_ascii() {
        out.push_str(trimmed);
        if upper {
            out.make_ascii_uppercase();
        } else {
            out.make_ascii_lowercase();
        }
    } else if upper {
        out.push_str(&trimmed.to_uppercase());
    } else {
        out.push_str(&trimmed.to_lowercase());
    }
}
