//! The decoders of every message a stage receives (tile batches, requests, score batches) fed
//! random and mutated Arrow arrays: wrong types, missing columns, wrong lengths and shapes,
//! headers claiming huge tiles, NaN and infinities, sliced arrays. Each gives a value or an error,
//! never a panic, and no decoder allocates what a header claims rather than what the data holds.
use arrow::array::{
    Array, ArrayRef, FixedSizeListArray, Float32Array, Float64Array, StringArray, StructArray,
    UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Fields};
use geosr::flow::Request;
use geosr::scores::{Score, ScoreBatch};
use geosr::tile::TileBatch;
use proptest::prelude::*;
use std::sync::Arc;

/// What can be done to one column of a valid batch.
#[derive(Debug, Clone)]
enum Mutation {
    Drop,
    /// Another type, same length.
    Retype(u8),
    /// A u32 header column set to this value in every row.
    Header(u32),
    /// A fixed-size list rebuilt with another per-row size.
    Resize(u16),
    /// One value of a float column made NaN, +inf or -inf.
    NotFinite(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        Just(Mutation::Drop),
        (0u8..4).prop_map(Mutation::Retype),
        prop_oneof![
            Just(0u32),
            Just(1),
            Just(u32::MAX),
            Just(1 << 16),
            any::<u32>()
        ]
        .prop_map(Mutation::Header),
        (0u16..70).prop_map(Mutation::Resize),
        (any::<usize>(), 0u8..3).prop_map(|(i, k)| Mutation::NotFinite(i, k)),
    ]
}

fn other_type(kind: u8, len: usize) -> ArrayRef {
    match kind {
        0 => Arc::new(Float64Array::from(vec![1.5; len])),
        1 => Arc::new(StringArray::from(vec!["x"; len])),
        2 => Arc::new(UInt64Array::from(vec![7u64; len])),
        _ => Arc::new(UInt32Array::from(vec![3u32; len])),
    }
}

fn not_finite(k: u8) -> f64 {
    [f64::NAN, f64::INFINITY, f64::NEG_INFINITY][k as usize % 3]
}

/// Applies `m` to column `col` of `s`, rebuilding the struct with whatever fields result.
fn mutate(s: &StructArray, col: usize, m: &Mutation) -> Option<StructArray> {
    let (fields, mut columns, nulls) = s.clone().into_parts();
    let mut fields: Vec<Field> = fields.iter().map(|f| f.as_ref().clone()).collect();
    let n = s.len();
    let c = &columns[col];
    let replaced: Option<ArrayRef> = match m {
        Mutation::Drop => {
            fields.remove(col);
            columns.remove(col);
            None
        }
        Mutation::Retype(k) => Some(other_type(*k, n)),
        Mutation::Header(v) if c.data_type() == &DataType::UInt32 => {
            Some(Arc::new(UInt32Array::from(vec![*v; n])))
        }
        Mutation::Resize(size) => match c.data_type() {
            DataType::FixedSizeList(item, _) => {
                let size = *size as usize;
                let values: ArrayRef = match item.data_type() {
                    DataType::UInt32 => Arc::new(UInt32Array::from(vec![1u32; n * size])),
                    DataType::Float64 => Arc::new(Float64Array::from(vec![1.0; n * size])),
                    _ => Arc::new(Float32Array::from(vec![0.5f32; n * size])),
                };
                Some(Arc::new(
                    FixedSizeListArray::try_new(item.clone(), size as i32, values, None).ok()?,
                ))
            }
            _ => return None,
        },
        Mutation::NotFinite(i, k) => {
            let bad = not_finite(*k);
            match c.data_type() {
                DataType::Float64 => {
                    let mut v: Vec<f64> =
                        c.as_any().downcast_ref::<Float64Array>()?.values().to_vec();
                    let at = i % v.len().max(1);
                    *v.get_mut(at)? = bad;
                    Some(Arc::new(Float64Array::from(v)))
                }
                DataType::FixedSizeList(item, size) if item.data_type() != &DataType::UInt32 => {
                    let l = c.as_any().downcast_ref::<FixedSizeListArray>()?;
                    let values: ArrayRef = match item.data_type() {
                        DataType::Float64 => {
                            let mut v = l
                                .values()
                                .as_any()
                                .downcast_ref::<Float64Array>()?
                                .values()
                                .to_vec();
                            let at = i % v.len().max(1);
                            *v.get_mut(at)? = bad;
                            Arc::new(Float64Array::from(v))
                        }
                        _ => {
                            let mut v = l
                                .values()
                                .as_any()
                                .downcast_ref::<Float32Array>()?
                                .values()
                                .to_vec();
                            let at = i % v.len().max(1);
                            *v.get_mut(at)? = bad as f32;
                            Arc::new(Float32Array::from(v))
                        }
                    };
                    Some(Arc::new(
                        FixedSizeListArray::try_new(item.clone(), *size, values, None).ok()?,
                    ))
                }
                _ => return None,
            }
        }
        _ => return None,
    };
    if let Some(new) = replaced {
        fields[col] = Field::new(fields[col].name(), new.data_type().clone(), true);
        columns[col] = new;
    }
    StructArray::try_new(Fields::from(fields), columns, nulls).ok()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn tile_batches_never_panic(
        n in 1usize..4, c in 1usize..4, h in 1usize..6, w in 1usize..6,
        mutations in proptest::collection::vec((0usize..19, mutation()), 0..4),
        slice in proptest::option::of((0usize..4, 0usize..4)),
        with_loss in any::<bool>(),
    ) {
        let mut batch = TileBatch::example(n, c, h, w);
        if with_loss {
            batch.loss = Some(vec![0.25; n]);
        }
        let valid = batch.to_arrow().unwrap();
        let mut s = valid.as_any().downcast_ref::<StructArray>().unwrap().clone();
        let mutated = !mutations.is_empty();
        for (col, m) in &mutations {
            let col = col % s.num_columns().max(1);
            if let Some(next) = mutate(&s, col, m) {
                s = next;
            }
        }
        if let Some((off, len)) = slice {
            let off = off.min(s.len());
            s = s.slice(off, len.min(s.len() - off));
        }
        // The decoder answers; a value must be a consistent batch.
        if let Ok(b) = TileBatch::from_arrow(&s) {
            prop_assert_eq!(b.pixels.len(), b.len() * b.bands * b.height * b.width);
            prop_assert!(b.pixels.iter().all(|v| v.is_finite()));
            if !mutated && slice.is_none() {
                prop_assert_eq!(b, batch);
            }
        }
    }

    #[test]
    fn requests_never_panic(kind in 0u8..6, split in "[a-z]{0,6}", index in any::<u64>(), rows in 0usize..3) {
        let array: ArrayRef = match kind {
            0 => Request::infer(index).to_arrow(),
            1 => Arc::new(StructArray::try_new(
                Fields::from(vec![
                    Field::new("split", DataType::Utf8, false),
                    Field::new("index", DataType::UInt64, false),
                ]),
                vec![
                    Arc::new(StringArray::from(vec![split.as_str(); rows])),
                    Arc::new(UInt64Array::from(vec![index; rows])),
                ],
                None,
            ).unwrap()),
            2 => Arc::new(StructArray::try_new(
                Fields::from(vec![Field::new("split", DataType::Utf8, false)]),
                vec![Arc::new(StringArray::from(vec![split.as_str(); rows]))],
                None,
            ).unwrap()),
            3 => Arc::new(UInt64Array::from(vec![index; rows])),
            4 => TileBatch::example(rows.max(1), 1, 2, 2).to_arrow().unwrap(),
            _ => Arc::new(StructArray::try_new(
                Fields::from(vec![
                    Field::new("split", DataType::UInt64, false),
                    Field::new("index", DataType::Utf8, false),
                ]),
                vec![
                    Arc::new(UInt64Array::from(vec![index; rows])),
                    Arc::new(StringArray::from(vec![split.as_str(); rows])),
                ],
                None,
            ).unwrap()),
        };
        if let Ok(r) = Request::from_arrow(array.as_ref()) {
            prop_assert_eq!(r.index, index);
        }
    }

    #[test]
    fn score_batches_never_panic(
        rows in 0usize..5,
        mutations in proptest::collection::vec((0usize..5, mutation()), 0..3),
    ) {
        let b = ScoreBatch((0..rows).map(|i| Score {
            batch_id: i as u64, tile: i as u32, method: "unet".into(), metric: "vgg".into(), value: 0.5,
        }).collect());
        let valid = b.to_arrow();
        let mut s = valid.as_any().downcast_ref::<StructArray>().unwrap().clone();
        for (col, m) in &mutations {
            let col = col % s.num_columns().max(1);
            if let Some(next) = mutate(&s, col, m) {
                s = next;
            }
        }
        if let Ok(decoded) = ScoreBatch::from_arrow(&s) {
            prop_assert!(decoded.0.iter().all(|r| r.value.is_finite()));
            if mutations.is_empty() {
                prop_assert_eq!(decoded, b);
            }
        }
    }
}

#[test]
fn a_header_claiming_huge_tiles_is_refused_before_allocating() {
    let batch = TileBatch::example(2, 3, 4, 4);
    let valid = batch.to_arrow().unwrap();
    let s = valid.as_any().downcast_ref::<StructArray>().unwrap();
    let height = s
        .column_names()
        .iter()
        .position(|c| *c == "height")
        .unwrap();
    let huge = mutate(s, height, &Mutation::Header(u32::MAX)).unwrap();
    let err = TileBatch::from_arrow(&huge).unwrap_err().to_string();
    assert!(err.contains("not a usable shape"), "{err}");
    let pixels = s
        .column_names()
        .iter()
        .position(|c| *c == "pixels")
        .unwrap();
    let nan = mutate(s, pixels, &Mutation::NotFinite(5, 0)).unwrap();
    let err = TileBatch::from_arrow(&nan).unwrap_err().to_string();
    assert!(err.contains("column `pixels` holds NaN"), "{err}");
}
