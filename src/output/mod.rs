//! How result rows look outside the engine: JSON (the documented result format) and tables.

pub mod json;
pub mod table;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;

use crate::Millis;

/// The SQL result of one fired window.
pub struct WindowResult<'a> {
    pub job: &'a str,
    pub start: Millis,
    pub end: Millis,
    /// The window fired before; these rows replace its earlier result.
    pub update: bool,
    /// 0 the first time a window fires, n for its n-th update (`_revision` in JSON).
    pub revision: u32,
    /// Emitted at a stop (`--flush-on-stop`) before the watermark closed it (`_incomplete`).
    pub incomplete: bool,
    pub schema: &'a SchemaRef,
    pub batches: &'a [RecordBatch],
}

impl WindowResult<'_> {
    pub fn rows(&self) -> usize {
        self.batches.iter().map(|b| b.num_rows()).sum()
    }
}
