//! # tributary-file-source
//!
//! A bounded [`Source`] over existing files — JSON lines, CSV or Parquet —
//! in a local directory or a bucket prefix, for dumps older than a topic's
//! retention. It goes through the same converter and sink as Kafka records,
//! and lands every file exactly once.
//!
//! ## One lane per file
//!
//! Each input file is its own source partition: topic = the configured
//! `topic`, partition = CRC-32C of the file's path relative to the source
//! URL (31 bits; two listed files with the same number are refused, naming
//! both). A record's offset is its position in the file: the line number for
//! JSON lines (blank lines take a number and hold no record), the row number
//! for CSV and Parquet. So every file has its own commit log in the lake,
//! and the landing protocol gives per-file exactly-once for free:
//!
//! * a re-run finds the file's log at its end and skips the file;
//! * a crash in the middle of a file resumes at the next unlanded row;
//! * two runs at once race per sequence number like any two writers.
//!
//! Beside the commit log, the first run records the file's path, size,
//! CRC-32C and record count in a *source manifest* in the sink's lake
//! (`_tributary/sources/<topic>/<partition>.json`). A later run that finds
//! the same path with another size — or, when it reads the file because it
//! is not fully landed, another checksum — refuses to land it (rename the
//! file to land it as a new input); a run that finds the file's log past its
//! last record skips it without reading it.
//!
//! ## Formats
//!
//! The converter path is the JSON converter for every format: CSV (header
//! row, column types inferred by arrow-csv from the file) and Parquet files
//! are read into Arrow batches and written back out as one JSON object per
//! row (arrow-json; nulls left out), which the converter decodes against the
//! pipeline's schema or inference like any record. This costs a JSON round
//! trip per row, but keeps one converter, one error policy (rejects go to
//! the dead-letter route with the file's lane and row number) and the same
//! metadata columns for every source. A file is read whole into memory.
//!
//! In `tributary run` the source ends after the last file (the pipeline then
//! stops); `tributary backfill` runs it the same way, with progress.

#![warn(missing_docs)]

mod read;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tracing::{info, warn};
use tributary_config::{FileSourceConfig, InputFormat};
use tributary_core::{
    ErrorClass, RawRecord, ResumeAt, Source, SourceBatch, SourceError, SourceEvent, TopicPartition,
};
use tributary_lake::Lake;

pub use read::parse;

/// An input file as listed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputFile {
    /// Path relative to the source URL.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Its lane.
    pub partition: TopicPartition,
}

/// What the lake keeps about a landed file (see the crate docs).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileManifest {
    /// Path relative to the source URL.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// CRC-32C of the whole file.
    pub crc32c: u32,
    /// Records in the file.
    pub records: u64,
    /// Offset of the last record (`-1` when the file holds none).
    pub last_offset: i64,
}

/// Progress of a [`FileSource`], for displays.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FileProgress {
    /// Files listed.
    pub files: u64,
    /// Files whose every record has been delivered, or that were skipped.
    pub files_done: u64,
    /// Files skipped because the lake already holds all of them.
    pub files_skipped: u64,
    /// Records delivered.
    pub records: u64,
    /// Bytes of the files read.
    pub bytes_read: u64,
}

fn setup(message: impl Into<String>) -> SourceError {
    SourceError::Setup {
        message: message.into(),
    }
}

fn io(operation: String, e: impl std::error::Error + Send + Sync + 'static) -> SourceError {
    SourceError::Io {
        operation,
        source: Box::new(e),
        class: ErrorClass::Permanent,
    }
}

/// The lane of a path: CRC-32C of the relative path, 31 bits.
pub fn partition_of(path: &str) -> i32 {
    (crc32c::crc32c(path.as_bytes()) & 0x7fff_ffff) as i32
}

/// Lists the input files under `input` (sorted by path): names ending with
/// the configured suffix, outside `_`/`.`-prefixed directories.
pub async fn list_inputs(
    cfg: &FileSourceConfig,
    input: &Lake,
) -> Result<Vec<InputFile>, SourceError> {
    let suffix = cfg
        .suffix
        .clone()
        .unwrap_or_else(|| cfg.format.default_suffix().to_string());
    let listed = input
        .list("")
        .await
        .map_err(|e| io(format!("listing {}", cfg.url), e))?;
    let mut out: Vec<InputFile> = listed
        .into_iter()
        .filter(|(path, _)| {
            path.ends_with(&suffix)
                && !path
                    .split('/')
                    .any(|c| c.starts_with('_') || c.starts_with('.'))
        })
        .map(|(path, size)| InputFile {
            partition: TopicPartition::new(cfg.topic.as_str(), partition_of(&path)),
            path,
            size,
        })
        .collect();
    out.sort_by(|a, b| a.path.cmp(&b.path));
    let mut seen: HashMap<i32, &str> = HashMap::new();
    for f in &out {
        if let Some(other) = seen.insert(f.partition.partition, &f.path) {
            return Err(setup(format!(
                "input files {other:?} and {:?} map to the same lane ({}); rename one",
                f.path, f.partition
            )));
        }
    }
    Ok(out)
}

/// A file being delivered.
struct Current {
    index: usize,
    records: VecDeque<RawRecord>,
}

/// The file source. See the [crate documentation](crate).
pub struct FileSource {
    cfg: FileSourceConfig,
    input: Lake,
    /// The sink's lake, where manifests are kept (`None`: no manifests).
    manifests: Option<Lake>,
    files: Vec<InputFile>,
    by_partition: HashMap<TopicPartition, usize>,
    listed: bool,
    ack: Option<oneshot::Receiver<Vec<(TopicPartition, ResumeAt)>>>,
    /// Files to deliver, with the offset to start at.
    queue: VecDeque<(usize, i64)>,
    current: Option<Current>,
    events: VecDeque<SourceEvent>,
    /// Files delivered or skipped, by index (a seek re-opens one).
    finished: Vec<bool>,
    progress: Arc<Mutex<FileProgress>>,
    ended: bool,
}

impl std::fmt::Debug for FileSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileSource")
            .field("url", &self.cfg.url)
            .field("files", &self.files.len())
            .finish_non_exhaustive()
    }
}

impl FileSource {
    /// A source over `cfg.url`; `sink_lake` is where file manifests are
    /// kept (the pipeline sink's lake). Nothing is read before the first
    /// [`Source::next`].
    pub fn new(cfg: &FileSourceConfig, sink_lake: Option<Lake>) -> Result<Self, SourceError> {
        let input = Lake::open(&cfg.url, &cfg.storage)
            .map_err(|e| setup(format!("opening the file source url {}: {e}", cfg.url)))?;
        Ok(Self {
            cfg: cfg.clone(),
            input,
            manifests: sink_lake,
            files: Vec::new(),
            by_partition: HashMap::new(),
            listed: false,
            ack: None,
            queue: VecDeque::new(),
            current: None,
            events: VecDeque::new(),
            finished: Vec::new(),
            progress: Arc::default(),
            ended: false,
        })
    }

    /// Live counters.
    pub fn progress(&self) -> Arc<Mutex<FileProgress>> {
        self.progress.clone()
    }

    fn bump(&self, f: impl FnOnce(&mut FileProgress)) {
        f(&mut self.progress.lock().unwrap_or_else(|e| e.into_inner()));
    }

    async fn stored_manifest(
        &self,
        tp: &TopicPartition,
    ) -> Result<Option<FileManifest>, SourceError> {
        let Some(lake) = &self.manifests else {
            return Ok(None);
        };
        let Some(bytes) = lake
            .source_manifest(tp)
            .await
            .map_err(|e| io(format!("reading the manifest of {tp}"), e))?
        else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| setup(format!("the manifest of {tp} is not readable: {e}")))
    }

    /// Loads file `index` and queues its records from `from` on; `false`
    /// when there was nothing to deliver.
    async fn open_file(&mut self, index: usize, from: i64) -> Result<bool, SourceError> {
        let file = self.files[index].clone();
        let stored = self.stored_manifest(&file.partition).await?;
        if let Some(m) = &stored {
            if m.path != file.path || m.size != file.size {
                return Err(setup(format!(
                    "input file {:?} ({}) changed since it was first landed: it was {:?} of {} bytes, \
                     it is {} bytes now; rename it to land it as a new file",
                    file.path, file.partition, m.path, m.size, file.size
                )));
            }
            if from > m.last_offset {
                info!(file = %file.path, partition = %file.partition, "File already landed; skipped.");
                self.bump(|p| p.files_skipped += 1);
                return Ok(false);
            }
        }
        let bytes = self
            .input
            .read(&file.path)
            .await
            .map_err(|e| io(format!("reading {}", file.path), e))?;
        let crc = crc32c::crc32c(&bytes);
        let size = bytes.len() as u64;
        let (format, delimiter) = (self.cfg.format, self.cfg.csv_delimiter.as_bytes()[0]);
        let path = file.path.clone();
        let records = tokio::task::spawn_blocking(move || read::parse(format, delimiter, bytes))
            .await
            .map_err(|e| setup(format!("parsing {path}: {e}")))?
            .map_err(|e| setup(format!("input file {:?}: {e}", file.path)))?;
        let manifest = FileManifest {
            path: file.path.clone(),
            size,
            crc32c: crc,
            records: records.len() as u64,
            last_offset: records.last().map_or(-1, |r| r.offset),
        };
        match &stored {
            Some(m) if *m != manifest => {
                return Err(setup(format!(
                    "input file {:?} ({}) changed since it was first landed (checksum {:08x}, now \
                     {:08x}); rename it to land it as a new file",
                    file.path, file.partition, m.crc32c, crc
                )))
            }
            Some(_) => {}
            None => {
                if let Some(lake) = &self.manifests {
                    let bytes =
                        Bytes::from(serde_json::to_vec_pretty(&manifest).unwrap_or_default());
                    let existing = lake
                        .put_source_manifest(&file.partition, bytes)
                        .await
                        .map_err(|e| {
                            io(format!("writing the manifest of {}", file.partition), e)
                        })?;
                    if let Some(existing) = existing {
                        let theirs: Option<FileManifest> = serde_json::from_slice(&existing).ok();
                        if theirs.as_ref() != Some(&manifest) {
                            return Err(setup(format!(
                                "input file {:?} ({}): another run recorded it with different \
                                 contents ({theirs:?})",
                                file.path, file.partition
                            )));
                        }
                    }
                }
            }
        }
        self.bump(|p| p.bytes_read += size);
        let records: VecDeque<RawRecord> =
            records.into_iter().filter(|r| r.offset >= from).collect();
        info!(file = %file.path, partition = %file.partition, from, records = records.len(), "Reading input file.");
        if records.is_empty() {
            return Ok(false);
        }
        self.current = Some(Current { index, records });
        Ok(true)
    }

    fn finish(&mut self, index: usize) {
        if !self.finished[index] {
            self.finished[index] = true;
            self.bump(|p| p.files_done += 1);
        }
    }
}

#[async_trait]
impl Source for FileSource {
    async fn next(&mut self) -> Result<SourceEvent, SourceError> {
        if let Some(event) = self.events.pop_front() {
            return Ok(event);
        }
        if !self.listed {
            let files = list_inputs(&self.cfg, &self.input).await?;
            info!(url = %self.cfg.url, files = files.len(), "Listed input files.");
            self.by_partition = files
                .iter()
                .enumerate()
                .map(|(i, f)| (f.partition.clone(), i))
                .collect();
            self.finished = vec![false; files.len()];
            self.bump(|p| p.files = files.len() as u64);
            self.files = files;
            self.listed = true;
            let (ack, answer) = oneshot::channel();
            self.ack = Some(answer);
            return Ok(SourceEvent::Assigned {
                partitions: self.files.iter().map(|f| f.partition.clone()).collect(),
                ack,
            });
        }
        if let Some(answer) = &mut self.ack {
            // Cancel-safe: the receiver stays in place until it yields.
            let resume = answer.await.map_err(|_| SourceError::Closed)?;
            self.ack = None;
            let resume: BTreeMap<TopicPartition, ResumeAt> = resume.into_iter().collect();
            for (i, f) in self.files.iter().enumerate() {
                match resume.get(&f.partition) {
                    Some(ResumeAt::Offset(o)) => self.queue.push_back((i, *o)),
                    Some(ResumeAt::Default) => self.queue.push_back((i, 0)),
                    None => {}
                }
            }
        }
        loop {
            if let Some(current) = &mut self.current {
                let n = self.cfg.batch_size.min(current.records.len());
                let records: Vec<RawRecord> = current.records.drain(..n).collect();
                let index = current.index;
                let partition = self.files[index].partition.clone();
                if current.records.is_empty() {
                    self.current = None;
                    self.finish(index);
                }
                self.bump(|p| p.records += records.len() as u64);
                return Ok(SourceEvent::Records(vec![SourceBatch {
                    partition,
                    records,
                }]));
            }
            let Some(&(index, from)) = self.queue.front() else {
                if !self.ended {
                    self.ended = true;
                    info!(url = %self.cfg.url, "Every input file delivered.");
                }
                return Ok(SourceEvent::End);
            };
            // Popped only once opened: a cancelled open is redone.
            let delivered = self.open_file(index, from).await?;
            self.queue.pop_front();
            if !delivered {
                self.finish(index);
            }
        }
    }

    async fn commit(&mut self, _offsets: &[(TopicPartition, i64)]) -> Result<(), SourceError> {
        // The lake's commit logs are the record of what landed.
        Ok(())
    }

    async fn seek(&mut self, partition: &TopicPartition, offset: i64) -> Result<(), SourceError> {
        let Some(&index) = self.by_partition.get(partition) else {
            warn!(partition = %partition, "Seek of an unknown lane ignored.");
            return Ok(());
        };
        if self.current.as_ref().is_some_and(|c| c.index == index) {
            self.current = None;
        }
        self.queue.retain(|(i, _)| *i != index);
        self.queue.push_front((index, offset));
        if self.finished[index] {
            self.finished[index] = false;
            self.bump(|p| p.files_done = p.files_done.saturating_sub(1));
        }
        self.events.push_back(SourceEvent::Seeked {
            partition: partition.clone(),
            offset,
        });
        Ok(())
    }

    async fn close(self: Box<Self>) {}
}

/// Format names for messages.
pub fn format_name(format: InputFormat) -> &'static str {
    match format {
        InputFormat::Jsonl => "jsonl",
        InputFormat::Csv => "csv",
        InputFormat::Parquet => "parquet",
    }
}
