use arrow::array::ListArray;
use arrow::array::{
    Date32Array, Decimal128Array, Float32Array, Float64Array, Int16Array, Int32Array, Int64Array,
    Int8Array, LargeStringArray, StringArray, TimestampMillisecondArray, UInt32Array, UInt64Array,
    UInt8Array,
};
use arrow::datatypes::{Float64Type, Int32Type, Int64Type};

use super::*;

fn field(name: &str, t: DataType) -> Field {
    Field::new(name, t, true)
}

fn batch(fields: Vec<Field>, columns: Vec<ArrayRef>) -> RecordBatch {
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

fn one(name: &str, column: ArrayRef) -> RecordBatch {
    let t = column.data_type().clone();
    batch(vec![field(name, t)], vec![column])
}

fn merge() -> TableSchema {
    TableSchema::new(EvolutionPolicy::Merge)
}

/// The type `old` then `new` merge to, with the admitted second batch's column.
fn widen(old: ArrayRef, new: ArrayRef) -> (DataType, ArrayRef) {
    let mut t = merge();
    t.admit(one("v", old)).unwrap();
    let out = t.admit(one("v", new)).unwrap();
    assert_eq!(t.changes(), 1, "the second batch changes the schema");
    (
        t.schema().unwrap().field(0).data_type().clone(),
        out.column(0).clone(),
    )
}

fn incompatible(old: ArrayRef, new: ArrayRef) -> SchemaChange {
    let mut t = merge();
    t.admit(one("v", old)).unwrap();
    let before = t.schema().unwrap().clone();
    let err = t.admit(one("v", new)).unwrap_err();
    assert_eq!(
        t.schema().unwrap(),
        &before,
        "a failed admit leaves the table as it was"
    );
    assert_eq!(t.changes(), 0);
    err
}

#[test]
fn signed_integers_widen_step_by_step() {
    let mut t = merge();
    t.admit(one("v", Arc::new(Int8Array::from(vec![1]))))
        .unwrap();
    t.admit(one("v", Arc::new(Int16Array::from(vec![300]))))
        .unwrap();
    t.admit(one("v", Arc::new(Int32Array::from(vec![70_000]))))
        .unwrap();
    let out = t
        .admit(one("v", Arc::new(Int64Array::from(vec![1i64 << 40]))))
        .unwrap();
    assert_eq!(t.changes(), 3);
    assert_eq!(out.schema().field(0).data_type(), &DataType::Int64);
    // An old int8 batch after that is cast up and changes nothing.
    let old = t
        .admit(one("v", Arc::new(Int8Array::from(vec![-5]))))
        .unwrap();
    assert_eq!(t.changes(), 3);
    assert_eq!(old.column(0).as_primitive::<Int64Type>().value(0), -5);
}

#[test]
fn unsigned_integers_widen_to_a_signed_type_that_holds_them() {
    let (t, col) = widen(
        Arc::new(Int8Array::from(vec![1])),
        Arc::new(UInt8Array::from(vec![200])),
    );
    assert_eq!(t, DataType::Int16);
    assert_eq!(
        col.as_primitive::<arrow::datatypes::Int16Type>().value(0),
        200
    );
    let (t, _) = widen(
        Arc::new(UInt32Array::from(vec![1])),
        Arc::new(Int32Array::from(vec![-1])),
    );
    assert_eq!(t, DataType::Int64);
    let (t, _) = widen(
        Arc::new(UInt8Array::from(vec![1])),
        Arc::new(UInt32Array::from(vec![1])),
    );
    assert_eq!(t, DataType::UInt32);
    let err = incompatible(
        Arc::new(UInt64Array::from(vec![1])),
        Arc::new(Int8Array::from(vec![1])),
    );
    assert_eq!(err.path, "v");
    assert_eq!(
        (err.old, err.new),
        (Some(DataType::UInt64), Some(DataType::Int8))
    );
}

#[test]
fn integers_and_float32_widen_to_float64() {
    let (t, col) = widen(
        Arc::new(Int64Array::from(vec![3])),
        Arc::new(Float64Array::from(vec![1.5])),
    );
    assert_eq!(t, DataType::Float64);
    assert_eq!(col.as_primitive::<Float64Type>().value(0), 1.5);
    let (t, _) = widen(
        Arc::new(Int32Array::from(vec![3])),
        Arc::new(Float32Array::from(vec![1.5])),
    );
    assert_eq!(t, DataType::Float64);
    let (t, col) = widen(
        Arc::new(Float32Array::from(vec![0.5])),
        Arc::new(Float64Array::from(vec![0.25])),
    );
    assert_eq!(t, DataType::Float64);
    assert_eq!(col.as_primitive::<Float64Type>().value(0), 0.25);
}

#[test]
fn strings_dates_timestamps_and_decimals_widen() {
    let (t, col) = widen(
        Arc::new(StringArray::from(vec!["a"])),
        Arc::new(LargeStringArray::from(vec!["b"])),
    );
    assert_eq!(t, DataType::LargeUtf8);
    assert_eq!(col.as_string::<i64>().value(0), "b");

    let ts = |unit| DataType::Timestamp(unit, Some("UTC".into()));
    let (t, _) = widen(
        Arc::new(Date32Array::from(vec![1])),
        Arc::new(TimestampMillisecondArray::from(vec![86_400_000]).with_timezone("UTC")),
    );
    assert_eq!(t, ts(TimeUnit::Millisecond));

    // An old date batch after the widening is cast to the timestamp.
    let mut table = merge();
    table
        .admit(one(
            "v",
            Arc::new(TimestampMillisecondArray::from(vec![0]).with_timezone("UTC")),
        ))
        .unwrap();
    let out = table
        .admit(one("v", Arc::new(Date32Array::from(vec![2]))))
        .unwrap();
    assert_eq!(out.column(0).data_type(), &ts(TimeUnit::Millisecond));
    assert_eq!(
        out.column(0)
            .as_primitive::<arrow::datatypes::TimestampMillisecondType>()
            .value(0),
        2 * 86_400_000
    );

    let (t, _) = widen(
        Arc::new(arrow::array::TimestampSecondArray::from(vec![1]).with_timezone("UTC")),
        Arc::new(arrow::array::TimestampMicrosecondArray::from(vec![1]).with_timezone("UTC")),
    );
    assert_eq!(t, ts(TimeUnit::Microsecond));

    let dec = |v: i128, p, s| -> ArrayRef {
        Arc::new(
            Decimal128Array::from(vec![v])
                .with_precision_and_scale(p, s)
                .unwrap(),
        )
    };
    let (t, col) = widen(dec(12_345, 10, 2), dec(1_2345, 12, 4));
    // 8 integer digits and 4 fraction digits.
    assert_eq!(t, DataType::Decimal128(12, 4));
    assert_eq!(
        col.as_primitive::<arrow::datatypes::Decimal128Type>()
            .value(0),
        1_2345
    );
    let (t, _) = widen(dec(1, 38, 0), dec(1, 38, 10));
    assert_eq!(t, DataType::Decimal256(48, 10));
}

#[test]
fn new_fields_are_added_as_nullable_and_missing_ones_are_null() {
    let mut t = merge();
    t.admit(batch(
        vec![Field::new("id", DataType::Int64, false)],
        vec![Arc::new(Int64Array::from(vec![1]))],
    ))
    .unwrap();
    let grown = t
        .admit(batch(
            vec![
                Field::new("id", DataType::Int64, false),
                Field::new("note", DataType::Utf8, false),
            ],
            vec![
                Arc::new(Int64Array::from(vec![2])),
                Arc::new(StringArray::from(vec!["hi"])),
            ],
        ))
        .unwrap();
    let schema = t.schema().unwrap().clone();
    assert_eq!(schema.field(1), &Field::new("note", DataType::Utf8, true));
    assert!(
        !schema.field(0).is_nullable(),
        "id is in every batch so far"
    );
    assert_eq!(grown.schema(), schema);
    // An old-shape batch gets a null note and keeps the schema.
    let old = t
        .admit(batch(
            vec![Field::new("id", DataType::Int64, false)],
            vec![Arc::new(Int64Array::from(vec![3]))],
        ))
        .unwrap();
    assert_eq!(old.schema(), schema);
    assert!(old.column(1).is_null(0));
    assert_eq!(t.changes(), 1);
    // A batch without `id` makes it nullable: that is a change.
    let no_id = t
        .admit(one("note", Arc::new(StringArray::from(vec!["x"]))))
        .unwrap();
    assert!(no_id.schema().field(0).is_nullable());
    assert!(no_id.column(0).is_null(0));
    assert_eq!(t.changes(), 2);
}

fn point(fields: Vec<Field>, columns: Vec<ArrayRef>) -> ArrayRef {
    Arc::new(StructArray::new(fields.into(), columns, None))
}

#[test]
fn struct_fields_and_list_items_evolve_recursively() {
    let mut t = merge();
    t.admit(one(
        "p",
        point(
            vec![field("x", DataType::Int32)],
            vec![Arc::new(Int32Array::from(vec![1]))],
        ),
    ))
    .unwrap();
    let out = t
        .admit(one(
            "p",
            point(
                vec![field("y", DataType::Utf8), field("x", DataType::Int64)],
                vec![
                    Arc::new(StringArray::from(vec!["b"])),
                    Arc::new(Int64Array::from(vec![7])),
                ],
            ),
        ))
        .unwrap();
    let DataType::Struct(children) = t.schema().unwrap().field(0).data_type().clone() else {
        panic!("p is a struct");
    };
    assert_eq!(
        children
            .iter()
            .map(|f| (f.name().as_str(), f.data_type().clone()))
            .collect::<Vec<_>>(),
        [("x", DataType::Int64), ("y", DataType::Utf8)]
    );
    let s = out.column(0).as_struct();
    assert_eq!(s.column(0).as_primitive::<Int64Type>().value(0), 7);
    // The old shape gets a null `y`.
    let old = t
        .admit(one(
            "p",
            point(
                vec![field("x", DataType::Int32)],
                vec![Arc::new(Int32Array::from(vec![1]))],
            ),
        ))
        .unwrap();
    assert!(old.column(0).as_struct().column(1).is_null(0));
    assert_eq!(t.changes(), 1);

    let list = |values: Vec<Option<Vec<Option<i32>>>>| -> ArrayRef {
        Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(values))
    };
    let mut t = merge();
    t.admit(one("l", list(vec![Some(vec![Some(1)])]))).unwrap();
    let floats: ArrayRef = {
        let values = Float64Array::from(vec![0.5, 1.5]);
        let field = Arc::new(Field::new_list_field(DataType::Float64, true));
        Arc::new(
            ListArray::try_new(
                field,
                arrow::buffer::OffsetBuffer::from_lengths([2]),
                Arc::new(values),
                None,
            )
            .unwrap(),
        )
    };
    t.admit(one("l", floats)).unwrap();
    let old = t
        .admit(one("l", list(vec![Some(vec![Some(4)]), None])))
        .unwrap();
    let l = old.column(0).as_list::<i32>();
    assert_eq!(l.value_type(), DataType::Float64);
    assert_eq!(l.value(0).as_primitive::<Float64Type>().value(0), 4.0);
    assert!(l.is_null(1));
}

#[test]
fn changes_that_are_not_widenings_name_the_field() {
    let err = incompatible(
        Arc::new(Int64Array::from(vec![1])),
        Arc::new(StringArray::from(vec!["one"])),
    );
    assert_eq!(
        err.to_string(),
        r#"field "v": type Int64 cannot change to Utf8 (not a widening)"#
    );
    incompatible(
        Arc::new(StringArray::from(vec!["one"])),
        Arc::new(Int64Array::from(vec![1])),
    );
    incompatible(
        Arc::new(Float64Array::from(vec![1.0])),
        Arc::new(arrow::array::BooleanArray::from(vec![true])),
    );
    incompatible(
        Arc::new(TimestampMillisecondArray::from(vec![0]).with_timezone("UTC")),
        Arc::new(TimestampMillisecondArray::from(vec![0]).with_timezone("+01:00")),
    );
    // A struct where a scalar was, and a scalar inside a struct changing kind.
    let err = incompatible(
        Arc::new(Int64Array::from(vec![1])),
        point(
            vec![field("x", DataType::Int32)],
            vec![Arc::new(Int32Array::from(vec![1]))],
        ),
    );
    assert_eq!(err.path, "v");
    let err = incompatible(
        point(
            vec![field("x", DataType::Int32)],
            vec![Arc::new(Int32Array::from(vec![1]))],
        ),
        point(
            vec![field("x", DataType::Utf8)],
            vec![Arc::new(StringArray::from(vec!["a"]))],
        ),
    );
    assert_eq!(err.path, "v.x");
    assert_eq!(
        (err.old, err.new),
        (Some(DataType::Int32), Some(DataType::Utf8))
    );
}

#[test]
fn alternating_old_and_new_shapes_change_the_schema_once() {
    let old = || {
        batch(
            vec![field("id", DataType::Int64), field("n", DataType::Int64)],
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(Int64Array::from(vec![2])),
            ],
        )
    };
    let new = || {
        batch(
            vec![
                field("id", DataType::Int64),
                field("n", DataType::Float64),
                field("tag", DataType::Utf8),
            ],
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(Float64Array::from(vec![2.5])),
                Arc::new(StringArray::from(vec!["t"])),
            ],
        )
    };
    let mut t = merge();
    let first = t.admit(old()).unwrap();
    let mut schemas = vec![first.schema()];
    for k in 0..20 {
        let b = if k % 2 == 0 { new() } else { old() };
        schemas.push(t.admit(b).unwrap().schema());
    }
    assert_eq!(t.changes(), 1);
    schemas.dedup();
    assert_eq!(schemas.len(), 2, "one schema before the change, one after");
}

#[test]
fn strict_admits_only_batches_that_fit() {
    let mut t = TableSchema::with_schema(
        Arc::new(Schema::new(vec![
            field("id", DataType::Int64),
            field("note", DataType::Utf8),
        ])),
        EvolutionPolicy::Strict,
    );
    // Narrower types and missing nullable fields fit.
    let out = t
        .admit(one("id", Arc::new(Int32Array::from(vec![1]))))
        .unwrap();
    assert_eq!(out.schema().as_ref(), t.schema().unwrap().as_ref());
    assert!(out.column(1).is_null(0));
    let err = t
        .admit(one("extra", Arc::new(Int32Array::from(vec![1]))))
        .unwrap_err();
    assert_eq!(err.path, "extra");
    assert!(err.to_string().contains("strict"), "{err}");
    let err = t
        .admit(one("id", Arc::new(Float64Array::from(vec![1.5]))))
        .unwrap_err();
    assert_eq!(err.path, "id");
    assert_eq!(t.changes(), 0);
}
