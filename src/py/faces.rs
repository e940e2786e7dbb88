//! `two_faces!`: the sync and the async class of one concept (`Client`/`AsyncClient`, `Batch`/`AsyncBatch`,
//! `Job`/`AsyncJob`) from one definition, so the two faces cannot drift: the same fields, the same methods.
//!
//! - `{ fields }`: the struct fields of both classes. `$sync::on_face(py, face, fields...)` makes the class of
//!   either face (what an operation returns: a `Batch` on the sync face, an `AsyncBatch` on the async one).
//! - `getters`: plain getters, the same on both faces (no panic guard: they only read a field).
//! - `shared`: methods returning `PyResult`, the same on both faces, each body run under `no_panic`.
//! - `ops`: operations. Each body makes an `Operation` (op.rs); the sync face runs it to its value, the async
//!   face returns an awaitable of it (or, for a `Now`, the value). Every op takes `&self, py` first; the
//!   generated method returns `PyResult<Bound<'py, PyAny>>` and runs under `no_panic`.
//! - `sync_only` / `async_only`: what differs by nature (`__enter__` against `__aenter__`, `__repr__`).
//!
//! `stream_exports!`: the DataFrame and file exports of a results stream (`ResultStream`, `AsyncStream`), written
//! once for both: each calls the stream's own `export` with the export's name.

macro_rules! two_faces {
    (
        $(#[$sattr:meta])* struct $sync:ident;
        $(#[$aattr:meta])* struct $async_:ident;
        { $($field:ident : $fty:ty),* $(,)? }
        getters $getters:tt
        shared $shared:tt
        ops $ops:tt
        sync_only $sync_only:tt
        async_only $async_only:tt
    ) => {
        $(#[$sattr])*
        #[pyo3::pyclass(module = "labelport", frozen)]
        pub struct $sync {
            $($field: $fty),*
        }

        $(#[$aattr])*
        #[pyo3::pyclass(module = "labelport", frozen)]
        pub struct $async_ {
            $($field: $fty),*
        }

        impl $sync {
            /// The class of `face` (this one, or its async twin) holding these fields.
            pub(super) fn on_face(
                py: pyo3::Python<'_>,
                face: $crate::py::op::Face,
                $($field: $fty),*
            ) -> pyo3::PyResult<pyo3::Bound<'_, pyo3::PyAny>> {
                Ok(match face {
                    $crate::py::op::Face::Sync => pyo3::Bound::new(py, $sync { $($field),* })?.into_any(),
                    $crate::py::op::Face::Async => {
                        pyo3::Bound::new(py, $async_ { $($field),* })?.into_any()
                    }
                })
            }
        }

        two_faces!(@face $sync, Sync, $getters, $shared, $ops, $sync_only);
        two_faces!(@face $async_, Async, $getters, $shared, $ops, $async_only);
    };

    (@face $class:ident, $face:ident,
        { $($getters:tt)* },
        { $(
            $(#[$sm:meta])*
            fn $sname:ident $(<$slt:lifetime>)? ( $($sparams:tt)* ) -> $sret:ty $sbody:block
        )* },
        { $(
            $(#[$om:meta])*
            fn $oname:ident ( &$oself:ident, $opy:ident $($oparams:tt)* ) $obody:block
        )* },
        { $($only:tt)* }
    ) => {
        #[pyo3::pymethods]
        impl $class {
            $($getters)*
            $(
                $(#[$sm])*
                fn $sname $(<$slt>)? ( $($sparams)* ) -> $sret {
                    $crate::py::runtime::no_panic(|| $sbody)
                }
            )*
            $(
                $(#[$om])*
                // One Rust parameter per Python argument; the body is a closure so its `?` stays inside.
                #[allow(clippy::too_many_arguments, clippy::redundant_closure_call)]
                fn $oname<'py>(
                    &$oself,
                    $opy: pyo3::Python<'py>
                    $($oparams)*
                ) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> {
                    $crate::py::runtime::no_panic(|| {
                        let op = (|| -> pyo3::PyResult<_> { $obody })()?;
                        $crate::py::op::Operation::run(op, $opy, $crate::py::op::Face::$face)
                    })
                }
            )*
            $($only)*
        }
    };
}

macro_rules! stream_exports {
    ($class:ident { $($methods:tt)* }) => {
        stream_exports!(@impl $class { $($methods)* } [
            /// The remaining results as a pandas DataFrame (`pip install "labelport[pandas]"`), one row per
            /// result. `flatten=True` spreads `input` and `output` into columns (`input.caption`,
            /// `output.label`); `key_type` casts the `key` column (e.g. `df["image_id"].dtype`) to join back on
            /// the input frame. (On an `AsyncStream`, a coroutine, as every export.)
            to_pandas "pandas" "($self, flatten=False, *, key_type=None, progress=None)";
            /// The remaining results as a polars DataFrame (`pip install "labelport[polars]"`); arguments as
            /// `to_pandas`.
            to_polars "polars" "($self, flatten=False, *, key_type=None, progress=None)";
            /// The remaining results as a pyarrow Table (`pip install "labelport[arrow]"`); arguments as
            /// `to_pandas`.
            to_arrow "arrow" "($self, flatten=False, *, key_type=None, progress=None)";
            /// Writes the remaining results to a parquet file, streamed (constant memory), flattened by
            /// default; returns how many were written (`pip install "labelport[arrow]"`).
            to_parquet "parquet" "($self, path, *, flatten=True, progress=None)";
            /// Writes the remaining results to a CSV file, streamed (constant memory), flattened by default;
            /// returns how many were written. Needs no extra.
            to_csv "csv" "($self, path, *, flatten=True, progress=None)";
        ]);
    };

    (@impl $class:ident { $($methods:tt)* } [ $( $(#[$doc:meta])* $name:ident $kind:tt $sig:tt; )* ]) => {
        #[pyo3::pymethods]
        impl $class {
            $($methods)*
            $(
                $(#[$doc])*
                #[pyo3(signature = (*args, **kwargs), text_signature = $sig)]
                fn $name<'py>(
                    slf: pyo3::Bound<'py, Self>,
                    args: &pyo3::Bound<'py, pyo3::types::PyTuple>,
                    kwargs: Option<&pyo3::Bound<'py, pyo3::types::PyDict>>,
                ) -> pyo3::PyResult<pyo3::Bound<'py, pyo3::PyAny>> {
                    $crate::py::runtime::no_panic(|| Self::export(slf, $kind, args, kwargs))
                }
            )*
        }
    };
}

pub(super) use stream_exports;
pub(super) use two_faces;
