//! Weir's UDFs as datafusion-ffi capsules: `datafusion.udf(obj)` in datafusion-python 53
//! accepts any object with `__datafusion_scalar_udf__`, and the UDF then runs natively.

use std::ffi::CString;
use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;
use datafusion_ffi::udf::FFI_ScalarUDF;
use pyo3::prelude::*;
use pyo3::types::PyCapsule;

/// One Weir scalar UDF, exportable to datafusion-python.
#[pyclass(module = "weir._native", frozen, name = "ScalarUdf")]
pub struct WeirScalarUdf {
    inner: Arc<ScalarUDF>,
}

#[pymethods]
impl WeirScalarUdf {
    #[getter]
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn __datafusion_scalar_udf__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyCapsule>> {
        let udf = FFI_ScalarUDF::from(Arc::clone(&self.inner));
        PyCapsule::new(py, udf, Some(CString::new("datafusion_scalar_udf").expect("no NUL")))
    }

    fn __repr__(&self) -> String {
        format!("<weir UDF {}>", self.inner.name())
    }
}

/// Every Weir UDF.
#[pyfunction]
pub fn udfs() -> Vec<WeirScalarUdf> {
    weir_udfs::all_udfs().into_iter().map(|inner| WeirScalarUdf { inner }).collect()
}
