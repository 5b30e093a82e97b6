//! The filter expression language: a parser with precise errors and a
//! vectorised evaluator on Arrow kernels.
//!
//! ```text
//! expr      := or
//! or        := and ( "or" and )*
//! and       := not ( "and" not )*
//! not       := "not" not | "(" expr ")" | predicate
//! predicate := operand [ cmp operand
//!                      | "is" [ "not" ] "null"
//!                      | [ "not" ] "in" "(" literal ( "," literal )* ")" ]
//! cmp       := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
//! operand   := field | literal
//! field     := name ( "." name )*  |  `any text`
//! literal   := 'string' | number | true | false | null
//! ```
//!
//! Keywords are case-insensitive. Strings use single quotes; a quote inside
//! is doubled (`'O''Brien'`). A bare operand must be a boolean field. Nulls
//! follow SQL: a comparison with a null value is null, and rows whose
//! condition is null are dropped like rows whose condition is false.

use std::fmt;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BooleanArray, Datum, Float64Array, Int64Array, Scalar, StringArray,
};
use arrow::compute::kernels::{boolean, cmp};
use arrow::compute::{cast_with_options, CastOptions};
use arrow::datatypes::{DataType, Fields};
use arrow::record_batch::RecordBatch;

use crate::path;

/// A syntax error at a 1-based character column.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    /// Column (1-based, in characters) where the problem is.
    pub column: usize,
    /// What was expected or found.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at column {}", self.message, self.column)
    }
}

impl std::error::Error for ParseError {}

/// A literal value.
#[derive(Clone, Debug, PartialEq)]
pub enum Literal {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A number with a fraction or exponent.
    Float(f64),
    /// A quoted string.
    Str(String),
}

impl fmt::Display for Literal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Literal::Null => f.write_str("null"),
            Literal::Bool(b) => write!(f, "{b}"),
            Literal::Int(i) => write!(f, "{i}"),
            Literal::Float(x) => write!(f, "{x}"),
            Literal::Str(s) => write!(f, "'{}'", s.replace('\'', "''")),
        }
    }
}

/// A value in a condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Operand {
    /// A field path, with the column where it appears.
    Field {
        /// Path (`a.b`).
        path: String,
        /// Column of its first character.
        column: usize,
    },
    /// A constant.
    Literal(Literal),
}

/// Comparison operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CmpOp {
    /// `=`, `==`
    Eq,
    /// `!=`, `<>`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    LtEq,
    /// `>`
    Gt,
    /// `>=`
    GtEq,
}

impl CmpOp {
    fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::NotEq => "!=",
            CmpOp::Lt => "<",
            CmpOp::LtEq => "<=",
            CmpOp::Gt => ">",
            CmpOp::GtEq => ">=",
        }
    }
}

/// A parsed condition.
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// `a or b`
    Or(Box<Expr>, Box<Expr>),
    /// `a and b`
    And(Box<Expr>, Box<Expr>),
    /// `not a`
    Not(Box<Expr>),
    /// `x op y`
    Cmp(Operand, CmpOp, Operand),
    /// `x is null` (`negated`: `x is not null`)
    IsNull {
        /// The value tested.
        operand: Operand,
        /// `is not null`.
        negated: bool,
    },
    /// `x in (...)` (`negated`: `x not in (...)`)
    In {
        /// The value tested.
        operand: Operand,
        /// The list.
        list: Vec<Literal>,
        /// `not in`.
        negated: bool,
    },
    /// A boolean field or literal on its own.
    Value(Operand),
}

#[derive(Clone, Debug, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(Literal),
    Op(CmpOp),
    LParen,
    RParen,
    Comma,
    Minus,
    End,
}

#[derive(Clone, Debug)]
struct Token {
    tok: Tok,
    column: usize,
    text: String,
}

fn describe(t: &Token) -> String {
    match t.tok {
        Tok::End => "end of expression".into(),
        Tok::Str(_) => format!("string {}", t.text),
        _ => format!("'{}'", t.text),
    }
}

fn lex(input: &str) -> Result<Vec<Token>, ParseError> {
    let chars: Vec<char> = input.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let column = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        let tok = match c {
            '(' => {
                i += 1;
                Tok::LParen
            }
            ')' => {
                i += 1;
                Tok::RParen
            }
            ',' => {
                i += 1;
                Tok::Comma
            }
            '-' => {
                i += 1;
                Tok::Minus
            }
            '=' => {
                i += if chars.get(i + 1) == Some(&'=') { 2 } else { 1 };
                Tok::Op(CmpOp::Eq)
            }
            '!' => {
                if chars.get(i + 1) != Some(&'=') {
                    return Err(ParseError {
                        column,
                        message: "expected '!=' after '!' (use 'not' to negate)".into(),
                    });
                }
                i += 2;
                Tok::Op(CmpOp::NotEq)
            }
            '<' => match chars.get(i + 1) {
                Some('=') => {
                    i += 2;
                    Tok::Op(CmpOp::LtEq)
                }
                Some('>') => {
                    i += 2;
                    Tok::Op(CmpOp::NotEq)
                }
                _ => {
                    i += 1;
                    Tok::Op(CmpOp::Lt)
                }
            },
            '>' => {
                if chars.get(i + 1) == Some(&'=') {
                    i += 2;
                    Tok::Op(CmpOp::GtEq)
                } else {
                    i += 1;
                    Tok::Op(CmpOp::Gt)
                }
            }
            '\'' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(ParseError {
                                column,
                                message: "unterminated string (missing closing ')".into(),
                            })
                        }
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            s.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&c) => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                Tok::Str(s)
            }
            '`' => {
                let end = chars[i + 1..].iter().position(|&c| c == '`');
                let Some(end) = end else {
                    return Err(ParseError {
                        column,
                        message: "unterminated quoted field name (missing closing `)".into(),
                    });
                };
                let name: String = chars[i + 1..i + 1 + end].iter().collect();
                i += end + 2;
                if name.is_empty() {
                    return Err(ParseError {
                        column,
                        message: "empty quoted field name".into(),
                    });
                }
                Tok::Ident(name)
            }
            c if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())) =>
            {
                while i < chars.len() && (chars[i].is_ascii_digit() || chars[i] == '.') {
                    i += 1;
                }
                if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                    i += 1;
                    if i < chars.len() && (chars[i] == '+' || chars[i] == '-') {
                        i += 1;
                    }
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
                let text: String = chars[start..i].iter().collect();
                if i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                    return Err(ParseError {
                        column,
                        message: format!("invalid number '{text}{}'", chars[i]),
                    });
                }
                let lit = if text.contains(['.', 'e', 'E']) {
                    text.parse::<f64>().ok().map(Literal::Float)
                } else {
                    text.parse::<i64>().ok().map(Literal::Int)
                };
                match lit {
                    Some(l) => Tok::Num(l),
                    None => {
                        return Err(ParseError {
                            column,
                            message: format!("invalid number '{text}'"),
                        })
                    }
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '.')
                {
                    i += 1;
                }
                let text: String = chars[start..i].iter().collect();
                if text.ends_with('.') || text.contains("..") {
                    return Err(ParseError {
                        column,
                        message: format!("invalid field path '{text}'"),
                    });
                }
                Tok::Ident(text)
            }
            other => {
                return Err(ParseError {
                    column,
                    message: format!("unexpected character '{other}'"),
                })
            }
        };
        out.push(Token {
            tok,
            column,
            text: chars[start..i].iter().collect(),
        });
    }
    out.push(Token {
        tok: Tok::End,
        column: chars.len() + 1,
        text: String::new(),
    });
    Ok(out)
}

/// Parses a filter expression.
pub fn parse(input: &str) -> Result<Expr, ParseError> {
    let tokens = lex(input)?;
    let mut p = Parser { tokens, pos: 0 };
    if p.peek().tok == Tok::End {
        return Err(ParseError {
            column: 1,
            message: "expected a condition, found an empty expression".into(),
        });
    }
    let expr = p.or()?;
    let t = p.peek();
    if t.tok != Tok::End {
        let t = t.clone();
        return Err(p.error(
            &t,
            format!(
                "expected 'and', 'or' or the end of the expression, found {}",
                describe(&t)
            ),
        ));
    }
    Ok(expr)
}

struct Parser {
    tokens: Vec<Token>,
    pos: usize,
}

fn keyword(t: &Token, word: &str) -> bool {
    matches!(&t.tok, Tok::Ident(s) if s.eq_ignore_ascii_case(word)) && !t.text.starts_with('`')
}

const KEYWORDS: [&str; 7] = ["and", "or", "not", "is", "in", "null", "true"];

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.pos]
    }

    fn next(&mut self) -> Token {
        let t = self.tokens[self.pos].clone();
        if t.tok != Tok::End {
            self.pos += 1;
        }
        t
    }

    fn error(&self, at: &Token, message: String) -> ParseError {
        ParseError {
            column: at.column,
            message,
        }
    }

    fn or(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.and()?;
        while keyword(self.peek(), "or") {
            self.next();
            let right = self.and()?;
            left = Expr::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Expr, ParseError> {
        let mut left = self.not()?;
        while keyword(self.peek(), "and") {
            self.next();
            let right = self.not()?;
            left = Expr::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn not(&mut self) -> Result<Expr, ParseError> {
        let t = self.peek().clone();
        if keyword(&t, "not") {
            self.next();
            return Ok(Expr::Not(Box::new(self.not()?)));
        }
        if t.tok == Tok::LParen {
            self.next();
            let inner = self.or()?;
            let close = self.next();
            if close.tok != Tok::RParen {
                return Err(self.error(
                    &close,
                    format!(
                        "expected ')' to close the '(' at column {}, found {}",
                        t.column,
                        describe(&close)
                    ),
                ));
            }
            return Ok(inner);
        }
        self.predicate()
    }

    fn predicate(&mut self) -> Result<Expr, ParseError> {
        let left = self.operand("a condition")?;
        let t = self.peek().clone();
        match &t.tok {
            Tok::Op(op) => {
                let op = *op;
                self.next();
                let right = self.operand("a value")?;
                for side in [&left, &right] {
                    if *side == Operand::Literal(Literal::Null) {
                        return Err(self.error(
                            &t,
                            format!(
                                "'{}' with null is never true; use 'is null' or 'is not null'",
                                op.symbol()
                            ),
                        ));
                    }
                }
                Ok(Expr::Cmp(left, op, right))
            }
            _ if keyword(&t, "is") => {
                self.next();
                let mut negated = false;
                if keyword(self.peek(), "not") {
                    self.next();
                    negated = true;
                }
                let n = self.next();
                if !keyword(&n, "null") {
                    let after = if negated { "'is not'" } else { "'is'" };
                    return Err(self.error(
                        &n,
                        format!("expected 'null' after {after}, found {}", describe(&n)),
                    ));
                }
                Ok(Expr::IsNull {
                    operand: left,
                    negated,
                })
            }
            _ if keyword(&t, "in") || keyword(&t, "not") => {
                self.next();
                let negated = keyword(&t, "not");
                if negated {
                    let n = self.next();
                    if !keyword(&n, "in") {
                        return Err(self.error(
                            &n,
                            format!("expected 'in' after 'not', found {}", describe(&n)),
                        ));
                    }
                }
                let open = self.next();
                if open.tok != Tok::LParen {
                    return Err(self.error(
                        &open,
                        format!("expected '(' after 'in', found {}", describe(&open)),
                    ));
                }
                let mut list = Vec::new();
                loop {
                    let at = self.peek().clone();
                    match self.operand("a value")? {
                        Operand::Literal(Literal::Null) => {
                            return Err(self.error(
                                &at,
                                "null in an 'in' list never matches; use 'is null'".into(),
                            ))
                        }
                        Operand::Literal(l) => list.push(l),
                        Operand::Field { .. } => {
                            return Err(self.error(
                                &at,
                                format!(
                                    "expected a literal in the 'in' list, found field '{}'",
                                    at.text
                                ),
                            ))
                        }
                    }
                    let sep = self.next();
                    match sep.tok {
                        Tok::Comma => continue,
                        Tok::RParen => break,
                        _ => {
                            return Err(self.error(
                                &sep,
                                format!(
                                    "expected ',' or ')' in the 'in' list, found {}",
                                    describe(&sep)
                                ),
                            ))
                        }
                    }
                }
                Ok(Expr::In {
                    operand: left,
                    list,
                    negated,
                })
            }
            _ => Ok(Expr::Value(left)),
        }
    }

    fn operand(&mut self, what: &str) -> Result<Operand, ParseError> {
        let after = match self.pos.checked_sub(1) {
            Some(i) => format!(" after '{}'", self.tokens[i].text),
            None => String::new(),
        };
        let t = self.next();
        match t.tok {
            Tok::Str(s) => Ok(Operand::Literal(Literal::Str(s))),
            Tok::Num(l) => Ok(Operand::Literal(l)),
            Tok::Minus => {
                let n = self.next();
                match n.tok {
                    Tok::Num(Literal::Int(i)) => Ok(Operand::Literal(Literal::Int(-i))),
                    Tok::Num(Literal::Float(x)) => Ok(Operand::Literal(Literal::Float(-x))),
                    _ => Err(self.error(
                        &n,
                        format!("expected a number after '-', found {}", describe(&n)),
                    )),
                }
            }
            Tok::Ident(ref s) if !t.text.starts_with('`') => {
                let lower = s.to_ascii_lowercase();
                match lower.as_str() {
                    "null" => Ok(Operand::Literal(Literal::Null)),
                    "true" => Ok(Operand::Literal(Literal::Bool(true))),
                    "false" => Ok(Operand::Literal(Literal::Bool(false))),
                    _ if KEYWORDS.contains(&lower.as_str()) => {
                        Err(self.error(&t, format!("expected {what}{after}, found keyword '{s}'")))
                    }
                    _ => Ok(Operand::Field {
                        path: s.clone(),
                        column: t.column,
                    }),
                }
            }
            Tok::Ident(s) => Ok(Operand::Field {
                path: s,
                column: t.column,
            }),
            _ => Err(self.error(
                &t,
                format!("expected {what}{after}, found {}", describe(&t)),
            )),
        }
    }
}

impl Expr {
    /// Field paths the expression reads, with their columns.
    pub fn fields(&self) -> Vec<(&str, usize)> {
        let mut out = Vec::new();
        self.collect(&mut out);
        out
    }

    fn collect<'a>(&'a self, out: &mut Vec<(&'a str, usize)>) {
        let operand = |o: &'a Operand, out: &mut Vec<(&'a str, usize)>| {
            if let Operand::Field { path, column } = o {
                out.push((path.as_str(), *column));
            }
        };
        match self {
            Expr::Or(a, b) | Expr::And(a, b) => {
                a.collect(out);
                b.collect(out);
            }
            Expr::Not(a) => a.collect(out),
            Expr::Cmp(a, _, b) => {
                operand(a, out);
                operand(b, out);
            }
            Expr::IsNull { operand: o, .. } | Expr::In { operand: o, .. } | Expr::Value(o) => {
                operand(o, out)
            }
        }
    }

    /// Evaluates the condition on every row: true, false or null.
    pub fn evaluate(&self, batch: &RecordBatch) -> Result<BooleanArray, String> {
        let n = batch.num_rows();
        let fields = batch.schema().fields().clone();
        let eval = Eval {
            fields: &fields,
            columns: batch.columns(),
            rows: n,
        };
        eval.expr(self)
    }
}

struct Eval<'a> {
    fields: &'a Fields,
    columns: &'a [ArrayRef],
    rows: usize,
}

/// An evaluated operand.
enum Val {
    Column(ArrayRef, String),
    Literal(Literal),
}

impl Val {
    fn name(&self) -> String {
        match self {
            Val::Column(_, path) => format!("field {path:?}"),
            Val::Literal(l) => l.to_string(),
        }
    }
}

fn literal_array(l: &Literal, n: usize) -> ArrayRef {
    match l {
        Literal::Null => Arc::new(arrow::array::NullArray::new(n)),
        Literal::Bool(b) => Arc::new(BooleanArray::from(vec![*b; n])),
        Literal::Int(i) => Arc::new(Int64Array::from_value(*i, n)),
        Literal::Float(x) => Arc::new(Float64Array::from_value(*x, n)),
        Literal::Str(s) => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(s, n))),
    }
}

fn is_integer(t: &DataType) -> bool {
    t.is_integer()
}

fn is_string(t: &DataType) -> bool {
    matches!(t, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View)
}

/// The type both sides of a comparison are cast to.
fn common_type(l: &DataType, r: &DataType, l_lit: bool, r_lit: bool) -> Option<DataType> {
    if l == r {
        return Some(l.clone());
    }
    let numeric = |t: &DataType| t.is_numeric();
    if numeric(l) && numeric(r) {
        let dec = |t: &DataType| match t {
            DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => Some((*p, *s)),
            _ => None,
        };
        return Some(match (dec(l), dec(r)) {
            (Some((_, s1)), Some((_, s2))) => DataType::Decimal128(38, s1.max(s2)),
            (Some(_), None) if is_integer(r) || r_lit => l.clone(),
            (None, Some(_)) if is_integer(l) || l_lit => r.clone(),
            _ if is_integer(l) && is_integer(r) => DataType::Int64,
            _ => DataType::Float64,
        });
    }
    if is_string(l) && is_string(r) {
        return Some(DataType::Utf8);
    }
    // A string literal compared with a typed field takes the field's type
    // (timestamps, dates, decimals written as text).
    if l_lit && is_string(l) && !r_lit {
        return Some(r.clone());
    }
    if r_lit && is_string(r) && !l_lit {
        return Some(l.clone());
    }
    if matches!(l, DataType::Timestamp(..)) && matches!(r, DataType::Timestamp(..)) {
        return Some(l.clone());
    }
    None
}

impl Eval<'_> {
    fn operand(&self, o: &Operand) -> Result<Val, String> {
        match o {
            Operand::Literal(l) => Ok(Val::Literal(l.clone())),
            Operand::Field { path, column } => {
                let index = path::resolve(self.fields, path)
                    .map_err(|e| format!("{e} (at column {column})"))?;
                let (_, array) = path::get(self.fields, self.columns, &index)?;
                Ok(Val::Column(array, path.clone()))
            }
        }
    }

    fn expr(&self, e: &Expr) -> Result<BooleanArray, String> {
        match e {
            Expr::Or(a, b) => {
                boolean::or_kleene(&self.expr(a)?, &self.expr(b)?).map_err(|e| e.to_string())
            }
            Expr::And(a, b) => {
                boolean::and_kleene(&self.expr(a)?, &self.expr(b)?).map_err(|e| e.to_string())
            }
            Expr::Not(a) => boolean::not(&self.expr(a)?).map_err(|e| e.to_string()),
            Expr::Value(o) => match self.operand(o)? {
                Val::Literal(Literal::Bool(b)) => Ok(BooleanArray::from(vec![b; self.rows])),
                Val::Column(a, path) => match a.as_any().downcast_ref::<BooleanArray>() {
                    Some(b) => Ok(b.clone()),
                    None => Err(format!(
                        "field {path:?} is {}, not a condition; compare it with a value",
                        a.data_type()
                    )),
                },
                Val::Literal(l) => Err(format!("{l} is not a condition")),
            },
            Expr::IsNull { operand, negated } => {
                let array = match self.operand(operand)? {
                    Val::Column(a, _) => a,
                    Val::Literal(l) => literal_array(&l, self.rows),
                };
                let r = if *negated {
                    arrow::compute::is_not_null(&array)
                } else {
                    arrow::compute::is_null(&array)
                };
                r.map_err(|e| e.to_string())
            }
            Expr::In {
                operand,
                list,
                negated,
            } => {
                let mut acc: Option<BooleanArray> = None;
                for l in list {
                    let eq = self.compare(operand, CmpOp::Eq, &Operand::Literal(l.clone()))?;
                    acc = Some(match acc {
                        None => eq,
                        Some(a) => boolean::or_kleene(&a, &eq).map_err(|e| e.to_string())?,
                    });
                }
                let acc = acc.unwrap_or_else(|| BooleanArray::from(vec![false; self.rows]));
                if *negated {
                    boolean::not(&acc).map_err(|e| e.to_string())
                } else {
                    Ok(acc)
                }
            }
            Expr::Cmp(a, op, b) => self.compare(a, *op, b),
        }
    }

    fn compare(&self, a: &Operand, op: CmpOp, b: &Operand) -> Result<BooleanArray, String> {
        let (l, r) = (self.operand(a)?, self.operand(b)?);
        let both_literal = matches!((&l, &r), (Val::Literal(_), Val::Literal(_)));
        let side = |v: &Val, scalar: bool| -> (ArrayRef, bool) {
            match v {
                Val::Column(a, _) => (a.clone(), false),
                Val::Literal(lit) => (literal_array(lit, if scalar { 1 } else { self.rows }), true),
            }
        };
        // Two literals: the left one is spread over all rows.
        let (la, l_lit) = side(&l, !both_literal);
        let (ra, r_lit) = side(&r, true);
        let (lt, rt) = (la.data_type().clone(), ra.data_type().clone());
        let Some(common) = common_type(&lt, &rt, l_lit, r_lit) else {
            return Err(format!(
                "cannot compare {} ({lt}) with {} ({rt})",
                l.name(),
                r.name()
            ));
        };
        let strict = CastOptions {
            safe: false,
            ..Default::default()
        };
        let convert = |array: ArrayRef, v: &Val| -> Result<ArrayRef, String> {
            if *array.data_type() == common {
                return Ok(array);
            }
            cast_with_options(&array, &common, &strict)
                .map_err(|e| format!("cannot compare {} as {common}: {e}", v.name()))
        };
        let la = convert(la, &l)?;
        let ra = convert(ra, &r)?;
        let left: Box<dyn Datum> = if matches!(l, Val::Literal(_)) && !both_literal {
            Box::new(Scalar::new(la))
        } else {
            Box::new(la)
        };
        let right: Box<dyn Datum> = if matches!(r, Val::Literal(_)) {
            Box::new(Scalar::new(ra))
        } else {
            Box::new(ra)
        };
        let (left, right) = (left.as_ref(), right.as_ref());
        let result = match op {
            CmpOp::Eq => cmp::eq(left, right),
            CmpOp::NotEq => cmp::neq(left, right),
            CmpOp::Lt => cmp::lt(left, right),
            CmpOp::LtEq => cmp::lt_eq(left, right),
            CmpOp::Gt => cmp::gt(left, right),
            CmpOp::GtEq => cmp::gt_eq(left, right),
        };
        result.map_err(|e| {
            format!(
                "cannot compare {} {} {}: {e}",
                l.name(),
                op.symbol(),
                r.name()
            )
        })
    }
}

#[cfg(test)]
mod tests;
