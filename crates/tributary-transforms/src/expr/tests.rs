use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Decimal128Array, Float64Array, Int64Array, StringArray, StructArray,
    TimestampMicrosecondArray,
};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, Field, Fields, Schema, TimeUnit};
use arrow::record_batch::RecordBatch;

use super::*;

fn err(input: &str) -> String {
    parse(input).unwrap_err().to_string()
}

#[test]
fn syntax_errors_name_the_column_and_what_was_expected() {
    assert_eq!(
        err("amount >"),
        "expected a value after '>', found end of expression at column 9"
    );
    assert_eq!(
        err("amount > 0 and"),
        "expected a condition after 'and', found end of expression at column 15"
    );
    assert_eq!(
        err("(amount > 0"),
        "expected ')' to close the '(' at column 1, found end of expression at column 12"
    );
    assert_eq!(
        err("country = 'XX"),
        "unterminated string (missing closing ') at column 11"
    );
    assert_eq!(
        err("amount = null"),
        "'=' with null is never true; use 'is null' or 'is not null' at column 8"
    );
    assert_eq!(
        err("amount is 5"),
        "expected 'null' after 'is', found '5' at column 11"
    );
    assert_eq!(
        err("amount is not"),
        "expected 'null' after 'is not', found end of expression at column 14"
    );
    assert_eq!(
        err("country in ('DE' 'FR')"),
        "expected ',' or ')' in the 'in' list, found string 'FR' at column 18"
    );
    assert_eq!(
        err("country in ('DE', other)"),
        "expected a literal in the 'in' list, found field 'other' at column 19"
    );
    assert_eq!(
        err("a ! b"),
        "expected '!=' after '!' (use 'not' to negate) at column 3"
    );
    assert_eq!(
        err("a = 1 b"),
        "expected 'and', 'or' or the end of the expression, found 'b' at column 7"
    );
    assert_eq!(
        err("and a"),
        "expected a condition, found keyword 'and' at column 1"
    );
    assert_eq!(err("a = 1x"), "invalid number '1x' at column 5");
    assert_eq!(err("a = #"), "unexpected character '#' at column 5");
    assert_eq!(
        err("  "),
        "expected a condition, found an empty expression at column 1"
    );
    assert_eq!(err("a.b. = 1"), "invalid field path 'a.b.' at column 1");
}

fn field(path: &str, column: usize) -> Operand {
    Operand::Field {
        path: path.into(),
        column,
    }
}

#[test]
fn precedence_is_not_then_and_then_or() {
    let e = parse("a = 1 or not b = 2 and c").unwrap();
    assert_eq!(
        e,
        Expr::Or(
            Box::new(Expr::Cmp(
                field("a", 1),
                CmpOp::Eq,
                Operand::Literal(Literal::Int(1))
            )),
            Box::new(Expr::And(
                Box::new(Expr::Not(Box::new(Expr::Cmp(
                    field("b", 14),
                    CmpOp::Eq,
                    Operand::Literal(Literal::Int(2))
                )))),
                Box::new(Expr::Value(field("c", 24))),
            )),
        )
    );
    // Keywords in any case, `==` and `<>`, negative numbers, escaped quotes,
    // quoted field names.
    let e = parse("`odd name` == -1.5 AND x <> 'O''Brien' Or y IS NOT NULL").unwrap();
    assert_eq!(e.fields(), vec![("odd name", 1), ("x", 24), ("y", 43)]);
    assert!(matches!(
        parse("x <> 'O''Brien'").unwrap(),
        Expr::Cmp(_, CmpOp::NotEq, Operand::Literal(Literal::Str(s))) if s == "O'Brien"
    ));
}

/// amount: float64, country: string, qty: int64, price: decimal(12,2),
/// ts: timestamp[us, UTC], vip: bool, customer: struct{tier} (null in row 2).
fn batch() -> RecordBatch {
    let tier: ArrayRef = Arc::new(StringArray::from(vec![
        Some("gold"),
        Some("silver"),
        Some("gold"),
        None,
    ]));
    let customer = StructArray::new(
        Fields::from(vec![Field::new("tier", DataType::Utf8, true)]),
        vec![tier],
        Some(NullBuffer::from(vec![true, true, false, true])),
    );
    let ts = TimestampMicrosecondArray::from(vec![
        1_767_225_600_000_000,
        1_767_225_600_000_001,
        0,
        1_800_000_000_000_000,
    ])
    .with_timezone("UTC");
    let schema = Schema::new(vec![
        Field::new("amount", DataType::Float64, true),
        Field::new("country", DataType::Utf8, true),
        Field::new("qty", DataType::Int64, false),
        Field::new("price", DataType::Decimal128(12, 2), false),
        Field::new(
            "ts",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("vip", DataType::Boolean, true),
        Field::new("customer", customer.data_type().clone(), true),
    ]);
    RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Float64Array::from(vec![
                Some(10.0),
                Some(-1.0),
                None,
                Some(5.0),
            ])),
            Arc::new(StringArray::from(vec![
                Some("DE"),
                Some("XX"),
                Some("FR"),
                None,
            ])),
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            Arc::new(
                Decimal128Array::from(vec![1050, 999, 2000, 1051])
                    .with_precision_and_scale(12, 2)
                    .unwrap(),
            ),
            Arc::new(ts),
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
            ])),
            Arc::new(customer),
        ],
    )
    .unwrap()
}

/// Rows for which `expr` is true.
fn keep(expr: &str) -> Vec<usize> {
    let mask = parse(expr).unwrap().evaluate(&batch()).unwrap();
    (0..mask.len())
        .filter(|&i| mask.is_valid(i) && mask.value(i))
        .collect()
}

#[test]
fn conditions_follow_sql_null_semantics() {
    // Row 2 (amount null) and row 3 (country null) are unknown, not kept.
    assert_eq!(keep("amount > 0 and country != 'XX'"), vec![0]);
    assert_eq!(keep("amount > 0 or country = 'FR'"), vec![0, 2, 3]);
    assert_eq!(keep("not (amount > 0)"), vec![1]);
    assert_eq!(keep("country is null"), vec![3]);
    assert_eq!(keep("country is not null and amount is null"), vec![2]);
    assert_eq!(keep("country in ('DE', 'FR')"), vec![0, 2]);
    assert_eq!(keep("country not in ('DE')"), vec![1, 2]);
    assert_eq!(keep("vip"), vec![0, 3]);
    assert_eq!(keep("not vip"), vec![1]);
    assert_eq!(keep("true"), vec![0, 1, 2, 3]);
    assert_eq!(keep("1 = 2"), Vec::<usize>::new());
}

#[test]
fn literals_take_the_type_of_the_field() {
    // int64 field with a fractional literal: compared as float64.
    assert_eq!(keep("qty > 1.5"), vec![1, 2, 3]);
    assert_eq!(keep("qty = 2"), vec![1]);
    // decimal(12,2) with numbers.
    assert_eq!(keep("price >= 10.5"), vec![0, 2, 3]);
    assert_eq!(keep("price < 10"), vec![1]);
    // timestamp with RFC 3339 text.
    assert_eq!(keep("ts > '2026-01-01T00:00:00Z'"), vec![1, 3]);
    // int field against a float field.
    assert_eq!(keep("amount > qty"), vec![0, 3]);
}

#[test]
fn nested_fields_are_null_under_a_null_parent() {
    // Row 2's customer is null: its tier is null even though the child holds "gold".
    assert_eq!(keep("customer.tier = 'gold'"), vec![0]);
    assert_eq!(keep("customer.tier is null"), vec![2, 3]);
}

#[test]
fn type_and_field_errors_are_clear() {
    let eval = |e: &str| parse(e).unwrap().evaluate(&batch()).unwrap_err();
    assert_eq!(
        eval("amout > 0"),
        "field \"amout\" not found: the top level has fields \"amount\", \"country\", \"qty\", \
         \"price\", \"ts\", \"vip\", \"customer\" (at column 1)"
    );
    assert_eq!(
        eval("customer.tire = 'x'"),
        "field \"customer.tire\" not found: \"customer\" has fields \"tier\" (at column 1)"
    );
    assert_eq!(
        eval("country > 5"),
        "cannot compare field \"country\" (Utf8) with 5 (Int64)"
    );
    assert_eq!(
        eval("amount"),
        "field \"amount\" is Float64, not a condition; compare it with a value"
    );
    assert!(
        eval("ts > 'yesterday'").starts_with("cannot compare 'yesterday' as Timestamp("),
        "{}",
        eval("ts > 'yesterday'")
    );
}

#[test]
fn an_empty_batch_checks_types_too() {
    let empty = RecordBatch::new_empty(batch().schema());
    assert_eq!(
        parse("amount > 0 and country != 'XX'")
            .unwrap()
            .evaluate(&empty)
            .unwrap()
            .len(),
        0
    );
    assert!(parse("country > 5").unwrap().evaluate(&empty).is_err());
    assert!(parse("missing = 1").unwrap().evaluate(&empty).is_err());
}
