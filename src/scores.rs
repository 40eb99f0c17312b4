//! Per-tile scores: the second message type of the contract, sent by stages that measure tiles
//! instead of producing pixels (`vgg-loss` in evaluation mode).
//!
//! A score batch is an Arrow `StructArray` with one row per scored tile:
//!
//! | column | Arrow type | meaning |
//! |---|---|---|
//! | `batch_id` | UInt64 | the tile batch the tile belongs to |
//! | `tile` | UInt32 | the tile's row in that batch |
//! | `method` | Utf8 | what produced the scored pixels (the input id without `sr_`, e.g. `unet`) |
//! | `metric` | Utf8 | what was measured, e.g. `vgg_relu2_2` |
//! | `value` | Float64 | the score |
//!
//! ```
//! use geosr::scores::{Score, ScoreBatch};
//! let b = ScoreBatch(vec![Score { batch_id: 3, tile: 0, method: "unet".into(), metric: "vgg".into(), value: 0.5 }]);
//! assert_eq!(ScoreBatch::from_arrow(b.to_arrow().as_ref()).unwrap(), b);
//! ```
use crate::error::{Error, Result};
use arrow::array::{Array, ArrayRef, AsArray, Float64Array, StringArray, StructArray};
use arrow::array::{UInt32Array, UInt64Array};
use arrow::datatypes::{DataType, Field, Fields, Float64Type, UInt32Type, UInt64Type};
use std::sync::Arc;

/// One scored tile.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub batch_id: u64,
    pub tile: u32,
    pub method: String,
    pub metric: String,
    pub value: f64,
}

/// The rows of one score message.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ScoreBatch(pub Vec<Score>);

impl ScoreBatch {
    pub fn to_arrow(&self) -> ArrayRef {
        let rows = &self.0;
        let fields = Fields::from(vec![
            Field::new("batch_id", DataType::UInt64, false),
            Field::new("tile", DataType::UInt32, false),
            Field::new("method", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("value", DataType::Float64, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|r| r.batch_id),
            )),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.tile))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.method.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.metric.as_str()),
            )),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))),
        ];
        Arc::new(StructArray::try_new(fields, columns, None).expect("columns match their fields"))
    }

    pub fn from_arrow(array: &dyn Array) -> Result<Self> {
        let bad = || {
            Error::Contract(format!(
                "a score batch must be Struct<batch_id: UInt64, tile: UInt32, method: Utf8, metric: Utf8, value: Float64>, got {}",
                array.data_type()
            ))
        };
        let s = array.as_struct_opt().ok_or_else(bad)?;
        let col = |name: &str| s.column_by_name(name).ok_or_else(bad);
        let ids = col("batch_id")?
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(bad)?;
        let tiles = col("tile")?
            .as_primitive_opt::<UInt32Type>()
            .ok_or_else(bad)?;
        let methods = col("method")?.as_string_opt::<i32>().ok_or_else(bad)?;
        let metrics = col("metric")?.as_string_opt::<i32>().ok_or_else(bad)?;
        let values = col("value")?
            .as_primitive_opt::<Float64Type>()
            .ok_or_else(bad)?;
        if values.values().iter().any(|v| !v.is_finite()) {
            return Err(Error::Contract(
                "a score batch holds NaN or an infinite value".into(),
            ));
        }
        Ok(ScoreBatch(
            (0..s.len())
                .map(|i| Score {
                    batch_id: ids.value(i),
                    tile: tiles.value(i),
                    method: methods.value(i).to_owned(),
                    metric: metrics.value(i).to_owned(),
                    value: values.value(i),
                })
                .collect(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn refuses_a_tile_batch() {
        let tiles = crate::tile::TileBatch::example(1, 1, 2, 2)
            .to_arrow()
            .unwrap();
        assert!(ScoreBatch::from_arrow(tiles.as_ref()).is_err());
    }
}
