//! Finding and rewriting (possibly nested) columns by field path.

use std::sync::Arc;

use arrow::array::{make_array, Array, ArrayRef, AsArray, StructArray};
use arrow::buffer::NullBuffer;
use arrow::datatypes::{DataType, FieldRef, Fields};

/// Up to this many names are listed when a field is not found.
const LISTED: usize = 20;

/// The names of `fields`, for messages.
pub(crate) fn names(fields: &Fields) -> String {
    let mut out: Vec<String> = fields
        .iter()
        .take(LISTED)
        .map(|f| format!("{:?}", f.name()))
        .collect();
    if fields.len() > LISTED {
        out.push(format!("and {} more", fields.len() - LISTED));
    }
    if out.is_empty() {
        "none".into()
    } else {
        out.join(", ")
    }
}

/// The child indexes leading to `path`: a top-level field with exactly that
/// name wins, else the path is split at dots (`customer.address.city`).
pub(crate) fn resolve(fields: &Fields, path: &str) -> Result<Vec<usize>, String> {
    if let Some((i, _)) = fields.find(path) {
        return Ok(vec![i]);
    }
    let mut out = Vec::new();
    let mut level = fields.clone();
    let parts: Vec<&str> = path.split('.').collect();
    for (depth, part) in parts.iter().enumerate() {
        let Some((i, field)) = level.find(part) else {
            let at = if depth == 0 {
                "the top level".to_string()
            } else {
                format!("{:?}", parts[..depth].join("."))
            };
            return Err(format!(
                "field {path:?} not found: {at} has fields {}",
                names(&level)
            ));
        };
        out.push(i);
        if depth + 1 < parts.len() {
            match field.data_type() {
                DataType::Struct(children) => level = children.clone(),
                other => {
                    return Err(format!(
                        "field {path:?} not found: {:?} is {other}, not a struct",
                        parts[..=depth].join(".")
                    ))
                }
            }
        }
    }
    Ok(out)
}

/// The field and column at `index` path; the column's nulls include those
/// of its parent structs (a child of a null struct is null).
pub(crate) fn get(
    fields: &Fields,
    columns: &[ArrayRef],
    index: &[usize],
) -> Result<(FieldRef, ArrayRef), String> {
    let mut field = fields[index[0]].clone();
    let mut column = columns[index[0]].clone();
    let mut parent: Option<NullBuffer> = None;
    for &i in &index[1..] {
        let s = column.as_struct();
        parent = NullBuffer::union(parent.as_ref(), s.nulls());
        let DataType::Struct(children) = field.data_type() else {
            unreachable!("resolve only descends into structs")
        };
        field = children[i].clone();
        column = s.column(i).clone();
    }
    Ok((field, with_parent_nulls(&column, parent.as_ref())?))
}

/// `column` with `parent` nulls added to its own.
pub(crate) fn with_parent_nulls(
    column: &ArrayRef,
    parent: Option<&NullBuffer>,
) -> Result<ArrayRef, String> {
    let Some(parent) = parent else {
        return Ok(column.clone());
    };
    if parent.null_count() == 0 {
        return Ok(column.clone());
    }
    let nulls = NullBuffer::union(column.nulls(), Some(parent));
    let data = column
        .to_data()
        .into_builder()
        .nulls(nulls)
        .build()
        .map_err(|e| e.to_string())?;
    Ok(make_array(data))
}

/// What an edit does with the field it reaches: keep a replacement or remove it.
pub(crate) type Edited = Option<(FieldRef, ArrayRef)>;

/// The function an [`edit`] applies: field, column and parent nulls in, [`Edited`] out.
pub(crate) type EditFn<'a, E> =
    dyn FnMut(&FieldRef, &ArrayRef, Option<&NullBuffer>) -> Result<Edited, E> + 'a;

/// Fields and columns of one level.
pub(crate) type Parts = (Vec<FieldRef>, Vec<ArrayRef>);

/// Rewrites the field at `index` (see [`resolve`]) with `f`, which gets the
/// field, its column and the nulls of its parent structs, and rebuilds the
/// structs above it.
pub(crate) fn edit<E>(
    fields: &Fields,
    columns: &[ArrayRef],
    index: &[usize],
    f: &mut EditFn<'_, E>,
) -> Result<Parts, EditError<E>> {
    edit_below(fields, columns, index, None, f)
}

/// Why an [`edit`] failed.
#[derive(Debug)]
pub(crate) enum EditError<E> {
    /// The edit function failed.
    Inner(E),
    /// The rebuilt structs are not valid.
    Rebuild(String),
}

fn edit_below<E>(
    fields: &Fields,
    columns: &[ArrayRef],
    index: &[usize],
    parent: Option<&NullBuffer>,
    f: &mut EditFn<'_, E>,
) -> Result<Parts, EditError<E>> {
    let mut out_fields: Vec<FieldRef> = fields.iter().cloned().collect();
    let mut out_columns = columns.to_vec();
    let i = index[0];
    let replaced = if index.len() == 1 {
        f(&fields[i], &columns[i], parent).map_err(EditError::Inner)?
    } else {
        let s = columns[i].as_struct();
        let below = NullBuffer::union(parent, s.nulls());
        let (child_fields, child_columns) =
            edit_below(s.fields(), s.columns(), &index[1..], below.as_ref(), f)?;
        if child_fields.is_empty() {
            return Err(EditError::Rebuild(format!(
                "struct {:?} would have no fields left; drop it instead",
                fields[i].name()
            )));
        }
        let child_fields = Fields::from(child_fields);
        let rebuilt = StructArray::try_new(child_fields.clone(), child_columns, s.nulls().cloned())
            .map_err(|e| EditError::Rebuild(e.to_string()))?;
        let field = fields[i]
            .as_ref()
            .clone()
            .with_data_type(DataType::Struct(child_fields));
        Some((Arc::new(field), Arc::new(rebuilt) as ArrayRef))
    };
    match replaced {
        Some((field, column)) => {
            out_fields[i] = field;
            out_columns[i] = column;
        }
        None => {
            out_fields.remove(i);
            out_columns.remove(i);
        }
    }
    Ok((out_fields, out_columns))
}
