//! Helpers shared by the test binaries: Arrow rows as JSON maps, so tests compare whole rows.
#![allow(dead_code)]

use arrow_array::cast::AsArray;
use arrow_array::types::{Int32Type, Int64Type, TimestampMillisecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use serde_json::{Map, Value};

/// `2019-02-06T00:00:38Z` (chrono, independent of the crate's own date code).
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms).unwrap().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

pub fn rows(batch: &RecordBatch) -> Vec<Map<String, Value>> {
    let schema = batch.schema();
    (0..batch.num_rows())
        .map(|i| {
            let mut m = Map::new();
            for (f, col) in schema.fields().iter().zip(batch.columns()) {
                let v = if col.is_null(i) {
                    Value::Null
                } else {
                    match f.data_type() {
                        DataType::Utf8 => Value::from(col.as_string::<i32>().value(i)),
                        DataType::Int32 => Value::from(col.as_primitive::<Int32Type>().value(i)),
                        DataType::Int64 => Value::from(col.as_primitive::<Int64Type>().value(i)),
                        DataType::Timestamp(..) => {
                            Value::from(iso(col.as_primitive::<TimestampMillisecondType>().value(i)))
                        }
                        DataType::Binary => {
                            Value::from(String::from_utf8_lossy(col.as_binary::<i32>().value(i)).into_owned())
                        }
                        other => panic!("unexpected type {other}"),
                    }
                };
                m.insert(f.name().clone(), v);
            }
            m
        })
        .collect()
}
