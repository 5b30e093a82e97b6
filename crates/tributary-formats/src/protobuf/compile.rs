//! Compiling `.proto` text into descriptors at run time (with `protox`), and
//! finding a message type by name or by Confluent message indexes.

use std::collections::HashMap;
use std::path::Path;

use prost_reflect::{FileDescriptor, MessageDescriptor};
use protox::file::{
    ChainFileResolver, File, FileResolver, GoogleFileResolver, IncludeFileResolver,
};

/// `.proto` sources held in memory, by the name they are imported as.
struct Sources(HashMap<String, String>);

impl FileResolver for Sources {
    fn open_file(&self, name: &str) -> Result<File, protox::Error> {
        match self.0.get(name) {
            Some(source) => File::from_source(name, source),
            None => Err(protox::Error::file_not_found(name)),
        }
    }
}

/// Compiles `main` out of in-memory `sources` (the main file and everything
/// it imports, by import name); `google/protobuf/*.proto` well-known types
/// not among them are built in. The error is protox's, which names the file
/// and the line.
pub(crate) fn compile_sources(
    main: &str,
    sources: HashMap<String, String>,
) -> Result<FileDescriptor, String> {
    let mut chain = ChainFileResolver::new();
    chain.add(Sources(sources));
    chain.add(GoogleFileResolver::new());
    compile(chain, main)
}

/// Compiles a `.proto` file on disk; its imports are looked up in the
/// file's directory, then among the well-known types.
pub(crate) fn compile_file(path: &Path) -> Result<FileDescriptor, String> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| "not a file name".to_string())?;
    if !path.is_file() {
        return Err("no such file".into());
    }
    let mut chain = ChainFileResolver::new();
    chain.add(IncludeFileResolver::new(dir.to_path_buf()));
    chain.add(GoogleFileResolver::new());
    compile(chain, name)
}

fn compile(resolver: ChainFileResolver, main: &str) -> Result<FileDescriptor, String> {
    let mut compiler = protox::Compiler::with_file_resolver(resolver);
    compiler.include_imports(true);
    compiler.open_file(main).map_err(|e| located(&e))?;
    compiler
        .descriptor_pool()
        .get_file_by_name(main)
        .ok_or_else(|| format!("{main} is missing after compiling it"))
}

/// protox's message, after `file:line:column: ` when it points at a place.
fn located(error: &protox::Error) -> String {
    use miette::Diagnostic;
    let place = error.source_code().and_then(|source| {
        let label = error.labels()?.next()?;
        let span = source.read_span(label.inner(), 0, 0).ok()?;
        Some((span.line() + 1, span.column() + 1))
    });
    match (error.file(), place) {
        (Some(file), Some((line, column))) => format!("{file}:{line}:{column}: {error}"),
        (Some(file), None) if !error.to_string().contains(file) => format!("{file}: {error}"),
        _ => error.to_string(),
    }
}

/// The message called `name` (full name, `pkg.Outer.Inner`; a leading `.`
/// is ignored) in the file, or an error listing the messages it has.
pub(crate) fn message_by_name(
    file: &FileDescriptor,
    name: &str,
) -> Result<MessageDescriptor, String> {
    let name = name.trim().trim_start_matches('.');
    if let Some(m) = file.parent_pool().get_message_by_name(name) {
        return Ok(m);
    }
    let known: Vec<String> = file
        .messages()
        .flat_map(|m| {
            let mut all = vec![m.clone()];
            let mut k = 0;
            while k < all.len() {
                let children: Vec<_> = all[k]
                    .child_messages()
                    .filter(|c| !c.is_map_entry())
                    .collect();
                all.extend(children);
                k += 1;
            }
            all
        })
        .map(|m| m.full_name().to_string())
        .collect();
    Err(format!(
        "no message {name:?} in {}; it defines {}",
        file.name(),
        if known.is_empty() {
            "no message".to_string()
        } else {
            known.join(", ")
        }
    ))
}

/// The message a Confluent message-index path points at: the first index
/// picks a top-level message of the file, each further index a message
/// nested in the previous one (declaration order, map entries included, as
/// in the descriptor).
pub(crate) fn message_at(
    file: &FileDescriptor,
    indexes: &[usize],
) -> Result<MessageDescriptor, String> {
    let not_found = || {
        format!(
            "message indexes {indexes:?} point at no message of {} (it has {} top-level messages)",
            file.name(),
            file.messages().len()
        )
    };
    let (&first, rest) = indexes.split_first().ok_or_else(not_found)?;
    let mut message = file.messages().nth(first).ok_or_else(not_found)?;
    for &i in rest {
        let child = message.child_messages().nth(i);
        message = child.ok_or_else(not_found)?;
    }
    Ok(message)
}
