//! A SQL boolean over the rows of a batch (an invariant's `violation`): parsed and planned
//! once against the batch's schema, then evaluated on each batch without a query plan.

use std::sync::Arc;

use datafusion::arrow::array::{AsArray, BooleanArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::DFSchema;
use datafusion::error::{DataFusionError, Result};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

#[derive(Debug)]
pub struct RowPredicate {
    expr: Arc<dyn PhysicalExpr>,
}

impl RowPredicate {
    /// Plan `sql` over rows of `schema`; it must be a boolean.
    pub fn compile(sql: &str, schema: &SchemaRef) -> Result<RowPredicate> {
        let ctx = SessionContext::new();
        let df_schema = DFSchema::try_from(schema.as_ref().clone())?;
        let logical = ctx.parse_sql_expr(sql, &df_schema)?;
        let expr = ctx.create_physical_expr(logical, &df_schema)?;
        let ty = expr.data_type(schema.as_ref())?;
        if ty != DataType::Boolean {
            return Err(DataFusionError::Plan(format!("the expression is {ty}, not a boolean (true where the row violates)")));
        }
        Ok(RowPredicate { expr })
    }

    /// True where the row satisfies the expression (null counts as false).
    pub fn eval(&self, batch: &RecordBatch) -> Result<BooleanArray> {
        let array = self.expr.evaluate(batch)?.into_array(batch.num_rows())?;
        let b = array.as_boolean();
        Ok(b.iter().map(|v| Some(v.unwrap_or(false))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Int64Array, StringArray};
    use datafusion::arrow::datatypes::{Field, Schema};

    #[test]
    fn a_boolean_over_columns_and_a_refusal_for_anything_else() {
        let schema: SchemaRef = Arc::new(Schema::new(vec![Field::new("net", DataType::Int64, true), Field::new("s", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![Arc::new(Int64Array::from(vec![Some(5), Some(-20_000), None])), Arc::new(StringArray::from(vec!["a", "b", "c"]))],
        )
        .unwrap();
        let p = RowPredicate::compile("abs(net) > 10000", &schema).unwrap();
        assert_eq!(p.eval(&batch).unwrap(), BooleanArray::from(vec![false, true, false]));
        assert!(RowPredicate::compile("net + 1", &schema).unwrap_err().to_string().contains("not a boolean"));
        assert!(RowPredicate::compile("nosuch > 1", &schema).is_err());
    }
}
