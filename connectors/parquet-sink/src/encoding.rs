//! Per-column dictionary encoding, learned from the files the sink wrote.
//!
//! Parquet writers start every column chunk with dictionary encoding and
//! fall back to plain encoding once the dictionary page outgrows its limit
//! (1 MiB). For a high-cardinality column — ids, timestamps, amounts — the
//! dictionary never pays: until the fallback every value is hashed and
//! interned, and a file of one source partition often ends before the
//! fallback, so the whole file pays it, and the dictionary page ends up
//! holding most of the column's bytes. That interning was the largest single
//! cost of the end-to-end benchmark over 12 partitions.
//!
//! The [`DictionaryAdvisor`] looks at every finished file: a column whose
//! dictionary page took at least half of the column chunk's bytes, or whose
//! writer fell back to plain pages, is written without a dictionary in the
//! next files. Low-cardinality columns (countries, event names) keep theirs.
//! Decisions expire after [`REPROBE_AFTER`] files, so a column whose values
//! become repetitive gets its dictionary back.
//!
//! A file's first rows decide too ([`sampled_properties`]): a column whose
//! values hardly repeat in the first [`SAMPLE_ROWS`] rows of a file is
//! written without a dictionary in that file. That spares the first
//! file of every partition, before the advisor has seen anything, and long
//! files, whose row groups each start a new dictionary.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, PoisonError};

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::row::{RowConverter, SortField};
use parquet::basic::{Encoding, PageType};
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

/// Files written without a dictionary for a column before it is tried again.
pub(crate) const REPROBE_AFTER: u32 = 64;
/// Rows of a file's first batch looked at for distinct values.
pub(crate) const SAMPLE_ROWS: usize = 4096;
/// Fewer sampled rows than this decide nothing: in a handful of rows even a
/// country column looks unique.
const MIN_SAMPLE_ROWS: usize = 256;
/// A column taken as unique looks like it holds more distinct values than
/// this. A dictionary of that many values would outgrow its 1 MiB page
/// long before a row group ends, unless they average under 26 bytes.
const UNIQUE_ABOVE: f64 = 40_000.0;

/// `props` for a file whose first rows are `rows`, with dictionary encoding
/// switched off for the columns whose first rows (up to 4,096) look drawn
/// from more than 40,000 distinct values: ids, timestamps, amounts. A
/// dictionary there is hashed and interned for nothing until the writer
/// falls back to plain pages. `None` when no column changes, or `rows` has
/// under 256 rows.
pub fn sampled_properties(
    props: &WriterProperties,
    rows: &RecordBatch,
) -> Option<WriterProperties> {
    let n = rows.num_rows().min(SAMPLE_ROWS);
    if n < MIN_SAMPLE_ROWS {
        return None;
    }
    let mut unique = Vec::new();
    for (field, column) in rows.schema().fields().iter().zip(rows.columns()) {
        leaves(
            vec![field.name().clone()],
            &column.slice(0, n),
            &mut |path, array| {
                let path = ColumnPath::new(path.to_vec());
                if props.dictionary_enabled(&path) && looks_unique(array) {
                    unique.push(path);
                }
            },
        );
    }
    if unique.is_empty() {
        return None;
    }
    let mut builder = props.clone().into_builder();
    for path in unique {
        builder = builder.set_column_dictionary_enabled(path, false);
    }
    Some(builder.build())
}

/// Calls `each` with the Parquet path and values of every leaf column that
/// a dictionary can encode (not booleans, not inside lists or maps).
fn leaves(path: Vec<String>, array: &ArrayRef, each: &mut impl FnMut(&[String], &ArrayRef)) {
    match array.data_type() {
        DataType::Struct(fields) => {
            let s = array.as_struct();
            for (field, child) in fields.iter().zip(s.columns()) {
                let mut p = path.clone();
                p.push(field.name().clone());
                leaves(p, child, each);
            }
        }
        DataType::Boolean
        | DataType::Null
        | DataType::List(_)
        | DataType::LargeList(_)
        | DataType::FixedSizeList(..)
        | DataType::Map(..)
        | DataType::Dictionary(..) => {}
        _ => each(&path, array),
    }
}

/// Whether `array`'s values look drawn from more than [`UNIQUE_ABOVE`]
/// distinct values. `n` draws from `k` equally likely values repeat about
/// `n² / 2k` times, so fewer repeats than `n² / 2·UNIQUE_ABOVE` means a
/// larger `k`: at 4,096 rows that is 209 repeats (95 % distinct), at 512
/// rows 3. A column of 10,000 values repeats about 730 times in 4,096 rows
/// and 13 times in 512, and keeps its dictionary.
fn looks_unique(array: &ArrayRef) -> bool {
    let Ok(converter) = RowConverter::new(vec![SortField::new(array.data_type().clone())]) else {
        return false;
    };
    let Ok(rows) = converter.convert_columns(std::slice::from_ref(array)) else {
        return false;
    };
    let distinct: HashSet<_> = rows.iter().collect();
    let n = array.len() as f64;
    let repeats = n - distinct.len() as f64;
    repeats <= n * n / (2.0 * UNIQUE_ABOVE)
}

/// Learns, per column, whether dictionary encoding pays.
#[derive(Default)]
pub(crate) struct DictionaryAdvisor {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Columns written without a dictionary, with the files left before
    /// the next probe.
    plain: HashMap<ColumnPath, u32>,
    /// Writer properties for the current decisions, built from the base once
    /// per change.
    cached: Option<WriterProperties>,
}

impl DictionaryAdvisor {
    /// Writer properties for the next file: `base` with dictionary encoding
    /// switched off for the columns where it did not pay.
    pub fn properties(&self, base: &WriterProperties) -> WriterProperties {
        let mut state = self.lock();
        if let Some(p) = &state.cached {
            return p.clone();
        }
        let mut builder = base.clone().into_builder();
        for column in state.plain.keys() {
            builder = builder.set_column_dictionary_enabled(column.clone(), false);
        }
        let props = builder.build();
        state.cached = Some(props.clone());
        props
    }

    /// Learns from a finished file.
    pub fn learn(&self, metadata: &ParquetMetaData) {
        let mut verdicts: HashMap<ColumnPath, bool> = HashMap::new();
        for rg in metadata.row_groups() {
            for column in rg.columns() {
                if let Some(pays) = dictionary_pays(column) {
                    let v = verdicts.entry(column.column_path().clone()).or_insert(true);
                    *v &= pays;
                }
            }
        }
        let mut state = self.lock();
        let mut changed = false;
        // Columns written plain this time count down towards a new probe.
        state.plain.retain(|column, left| {
            if verdicts.contains_key(column) {
                // Written with a dictionary after all (a new file schema):
                // the verdict below decides.
                return true;
            }
            *left = left.saturating_sub(1);
            if *left == 0 {
                changed = true;
            }
            *left > 0
        });
        for (column, pays) in verdicts {
            if pays {
                changed |= state.plain.remove(&column).is_some();
            } else if state.plain.insert(column, REPROBE_AFTER).is_none() {
                changed = true;
            }
        }
        if changed {
            state.cached = None;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Whether the dictionary of one column chunk paid for itself; `None` when
/// the chunk had no dictionary.
fn dictionary_pays(column: &ColumnChunkMetaData) -> Option<bool> {
    let dict_offset = column.dictionary_page_offset()?;
    // The dictionary page itself is PLAIN-encoded: only a data page in
    // PLAIN means the writer fell back.
    let fell_back = column.page_encoding_stats().is_some_and(|stats| {
        stats.iter().any(|s| {
            matches!(s.page_type, PageType::DATA_PAGE | PageType::DATA_PAGE_V2)
                && s.encoding == Encoding::PLAIN
        })
    });
    let dict_bytes = column.data_page_offset().saturating_sub(dict_offset);
    let total = column.compressed_size().max(1);
    Some(!fell_back && dict_bytes * 2 < total)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Int64Array, RecordBatch, StringArray, StructArray};
    use arrow::datatypes::{DataType, Field, Fields, Schema};
    use parquet::arrow::ArrowWriter;

    use super::*;

    fn file(props: WriterProperties, rows: usize) -> ParquetMetaData {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("country", DataType::Utf8, false),
        ]));
        let ids = Int64Array::from_iter_values((0..rows as i64).map(|i| i * 7919));
        let countries = StringArray::from_iter_values((0..rows).map(|i| ["DE", "FR", "US"][i % 3]));
        let batch =
            RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(countries)]).unwrap();
        let mut w = ArrowWriter::try_new(Vec::new(), schema, Some(props)).unwrap();
        w.write(&batch).unwrap();
        w.finish().unwrap()
    }

    fn dictionary_enabled(props: &WriterProperties, column: &str) -> bool {
        let parts = column.split('.').map(str::to_string).collect();
        props.dictionary_enabled(&ColumnPath::new(parts))
    }

    #[test]
    fn unique_columns_lose_their_dictionary_and_repetitive_ones_keep_it() {
        let advisor = DictionaryAdvisor::default();
        let base = WriterProperties::builder().build();
        let first = advisor.properties(&base);
        assert!(dictionary_enabled(&first, "id"));
        advisor.learn(&file(first, 20_000));
        let next = advisor.properties(&base);
        assert!(
            !dictionary_enabled(&next, "id"),
            "unique ids: no dictionary"
        );
        assert!(
            dictionary_enabled(&next, "country"),
            "3 countries: dictionary"
        );
        // The file written plain is readable and the decision holds.
        advisor.learn(&file(next, 20_000));
        assert!(!dictionary_enabled(&advisor.properties(&base), "id"));
    }

    #[test]
    fn a_plain_column_is_probed_again_after_a_while() {
        let advisor = DictionaryAdvisor::default();
        let base = WriterProperties::builder().build();
        advisor.learn(&file(base.clone(), 20_000));
        for _ in 0..REPROBE_AFTER - 1 {
            let props = advisor.properties(&base);
            assert!(!dictionary_enabled(&props, "id"));
            advisor.learn(&file(props, 100));
        }
        let props = advisor.properties(&base);
        assert!(!dictionary_enabled(&props, "id"));
        advisor.learn(&file(props, 100));
        assert!(
            dictionary_enabled(&advisor.properties(&base), "id"),
            "after {REPROBE_AFTER} plain files the dictionary is tried again"
        );
    }

    /// SplitMix64's finaliser: consecutive inputs, scattered outputs.
    fn mix(i: u64) -> u64 {
        let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Rows: a unique id, a country among 3, a model among 10,000, and a
    /// struct holding a unique session and an os among 4.
    fn sample(rows: usize) -> RecordBatch {
        let ids = Int64Array::from_iter_values((0..rows as i64).map(|i| i * 7919));
        let countries = StringArray::from_iter_values((0..rows).map(|i| ["DE", "FR", "US"][i % 3]));
        let models = StringArray::from_iter_values(
            (0..rows as u64).map(|i| format!("m{}", mix(i) % 10_000)),
        );
        let device = StructArray::from(vec![
            (
                Arc::new(Field::new("session", DataType::Utf8, false)),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| format!("s{i:012x}")),
                )) as ArrayRef,
            ),
            (
                Arc::new(Field::new("os", DataType::Utf8, false)),
                Arc::new(StringArray::from_iter_values(
                    (0..rows).map(|i| ["a", "i", "l", "w"][i % 4]),
                )) as ArrayRef,
            ),
        ]);
        let fields: Fields = device.fields().clone();
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("country", DataType::Utf8, false),
            Field::new("model", DataType::Utf8, false),
            Field::new("device", DataType::Struct(fields), false),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(ids),
                Arc::new(countries),
                Arc::new(models),
                Arc::new(device),
            ],
        )
        .unwrap()
    }

    #[test]
    fn a_files_first_rows_switch_the_dictionary_off_for_unique_columns_only() {
        let base = WriterProperties::builder().build();
        let props = sampled_properties(&base, &sample(SAMPLE_ROWS * 2)).expect("unique columns");
        assert!(!dictionary_enabled(&props, "id"));
        assert!(!dictionary_enabled(&props, "device.session"));
        assert!(dictionary_enabled(&props, "country"));
        assert!(dictionary_enabled(&props, "model"), "10,000 models repeat");
        assert!(dictionary_enabled(&props, "device.os"));
        // A first batch of 600 rows (a poll batch spread over 12 partitions)
        // decides the same.
        let small = sampled_properties(&base, &sample(600)).expect("unique columns");
        assert!(!dictionary_enabled(&small, "id"));
        assert!(!dictionary_enabled(&small, "device.session"));
        assert!(dictionary_enabled(&small, "model"), "10,000 models repeat");
        assert!(dictionary_enabled(&small, "country"));
        // Too few rows decide nothing.
        assert!(sampled_properties(&base, &sample(MIN_SAMPLE_ROWS - 1)).is_none());
        // A column already without a dictionary changes nothing.
        let plain = base
            .clone()
            .into_builder()
            .set_column_dictionary_enabled(ColumnPath::from("id"), false)
            .set_column_dictionary_enabled(
                ColumnPath::new(vec!["device".into(), "session".into()]),
                false,
            )
            .build();
        assert!(sampled_properties(&plain, &sample(SAMPLE_ROWS)).is_none());
    }

    #[test]
    fn a_file_written_with_sampled_properties_has_dictionaries_only_where_they_pay() {
        let rows = sample(SAMPLE_ROWS * 2);
        let props = sampled_properties(&WriterProperties::builder().build(), &rows).unwrap();
        let mut w = ArrowWriter::try_new(Vec::new(), rows.schema(), Some(props)).unwrap();
        w.write(&rows).unwrap();
        let metadata = w.finish().unwrap();
        let with_dictionary: Vec<String> = metadata.row_groups()[0]
            .columns()
            .iter()
            .filter(|c| c.dictionary_page_offset().is_some())
            .map(|c| c.column_path().string())
            .collect();
        assert_eq!(with_dictionary, ["country", "model", "device.os"]);
    }
}
