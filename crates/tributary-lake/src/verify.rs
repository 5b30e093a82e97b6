//! Auditing a lake against the landing invariant (`docs/LANDING.md`): a
//! partition's commit log and the files it lists ([`Lake::verify`],
//! [`Lake::verify_with`]), the files under the root that no commit lists
//! ([`Lake::orphans`]), and both for the whole lake ([`Lake::verify_lake`]).

mod parquet_footer;

use std::collections::{HashMap, HashSet};
use std::fmt;

use futures::StreamExt;
use tributary_core::TopicPartition;

use crate::commit::{CommitRecord, FileKind};
use crate::error::LakeError;
use crate::lake::{Lake, IO_CONCURRENCY};
use crate::layout::{
    commit_path, file_name, is_temp_name, validate_partition, CONTROL_DIR, DEAD_LETTER_DIR,
};

/// How closely verification looks at committed files. Without either flag
/// only existence and size are checked (one metadata request per file);
/// either flag reads every file whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Compare every committed file's CRC-32C with the recorded one.
    pub checksums: bool,
    /// Count the rows of every committed file and compare them with the
    /// recorded count: the `num_rows` of a Parquet footer (data files named
    /// `*.parquet`), the lines of a dead-letter file.
    pub row_counts: bool,
}

impl VerifyOptions {
    /// Read every file: checksums and row counts.
    pub fn contents() -> Self {
        Self {
            checksums: true,
            row_counts: true,
        }
    }

    /// Existence and size only; no file is read.
    pub fn sizes_only() -> Self {
        Self {
            checksums: false,
            row_counts: false,
        }
    }

    fn reads_files(&self) -> bool {
        self.checksums || self.row_counts
    }
}

impl Default for VerifyOptions {
    /// [`VerifyOptions::contents`].
    fn default() -> Self {
        Self::contents()
    }
}

/// What kind of break of the invariant a [`Problem`] is. The names returned
/// by [`ProblemKind::as_str`] are stable: `tributary verify --json` prints
/// them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ProblemKind {
    /// `missing_commit`: a sequence number is missing from the commit log.
    MissingCommit,
    /// `unreadable_commit`: a commit record cannot be read or parsed, or
    /// names another partition or sequence number.
    UnreadableCommit,
    /// `bad_fence`: a fence lists files or records, or breaks the chain of ranges.
    BadFence,
    /// `bad_range`: the first range starts before offset 0.
    BadRange,
    /// `offset_gap`: offsets between two consecutive ranges are in no commit.
    OffsetGap,
    /// `offset_overlap`: a range starts inside an earlier one.
    OffsetOverlap,
    /// `count_mismatch`: a commit's `rows` or `dead_lettered` differs from the
    /// sum over the files it lists.
    CountMismatch,
    /// `too_many_records`: a commit counts more records than its range has offsets.
    TooManyRecords,
    /// `duplicate_file`: a file is listed twice (by one commit or by two).
    DuplicateFile,
    /// `missing_file`: a committed file does not exist.
    MissingFile,
    /// `size_mismatch`: a committed file's size differs from the recorded one.
    SizeMismatch,
    /// `checksum_mismatch`: a committed file's CRC-32C differs from the recorded one.
    ChecksumMismatch,
    /// `row_count_mismatch`: the rows in a committed file (Parquet footer,
    /// dead-letter lines) differ from the recorded count.
    RowCountMismatch,
    /// `unreadable_file`: a committed Parquet file's footer cannot be read.
    UnreadableFile,
}

impl ProblemKind {
    /// The stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            ProblemKind::MissingCommit => "missing_commit",
            ProblemKind::UnreadableCommit => "unreadable_commit",
            ProblemKind::BadFence => "bad_fence",
            ProblemKind::BadRange => "bad_range",
            ProblemKind::OffsetGap => "offset_gap",
            ProblemKind::OffsetOverlap => "offset_overlap",
            ProblemKind::CountMismatch => "count_mismatch",
            ProblemKind::TooManyRecords => "too_many_records",
            ProblemKind::DuplicateFile => "duplicate_file",
            ProblemKind::MissingFile => "missing_file",
            ProblemKind::SizeMismatch => "size_mismatch",
            ProblemKind::ChecksumMismatch => "checksum_mismatch",
            ProblemKind::RowCountMismatch => "row_count_mismatch",
            ProblemKind::UnreadableFile => "unreadable_file",
        }
    }
}

impl fmt::Display for ProblemKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One way a partition's lake state breaks the landing invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// What kind of break it is.
    pub kind: ProblemKind,
    /// The commit record or file concerned.
    pub path: String,
    /// Sequence number of the commit concerned (for a file: the commit
    /// listing it; for a missing commit: the missing number).
    pub seq: Option<u64>,
    /// First offset of that commit's range, when it was read.
    pub first_offset: Option<i64>,
    /// Last offset of that commit's range, when it was read.
    pub last_offset: Option<i64>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(seq) = self.seq {
            write!(f, "commit {seq}")?;
            if let (Some(first), Some(last)) = (self.first_offset, self.last_offset) {
                write!(f, " (offsets {first}..={last})")?;
            }
            f.write_str(", ")?;
        }
        write!(f, "{}: {} [{}]", self.path, self.message, self.kind)
    }
}

/// What [`Lake::verify`] found for one partition.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartitionReport {
    /// The partition.
    pub partition: TopicPartition,
    /// Commit records read (fences included).
    pub commits: u64,
    /// Of which fences.
    pub fences: u64,
    /// First offset of the landed range, if any range was landed.
    pub first_offset: Option<i64>,
    /// Last offset of the landed range, if any range was landed.
    pub last_offset: Option<i64>,
    /// Rows in data files.
    pub rows: u64,
    /// Records in dead-letter files.
    pub dead_lettered: u64,
    /// Records skipped.
    pub skipped: u64,
    /// Files listed by commits.
    pub files: u64,
    /// Their total size.
    pub bytes: u64,
    /// Intents still stored (landings in flight or left by a crash).
    pub intents: u64,
    /// Everything that breaks the invariant. Empty when the partition is sound.
    pub problems: Vec<Problem>,
}

impl PartitionReport {
    /// A report of a partition with nothing in the lake.
    pub fn empty(partition: TopicPartition) -> Self {
        Self {
            partition,
            commits: 0,
            fences: 0,
            first_offset: None,
            last_offset: None,
            rows: 0,
            dead_lettered: 0,
            skipped: 0,
            files: 0,
            bytes: 0,
            intents: 0,
            problems: Vec::new(),
        }
    }

    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
    }

    /// The offset right after the landed range: where the partition resumes.
    pub fn next_offset(&self) -> Option<i64> {
        self.last_offset.map(|last| last + 1)
    }
}

/// A file under the lake root (outside `_tributary/`) that no commit lists.
///
/// Readers that glob `**/*.parquet` see an orphan data file, so rows can be
/// counted twice or rows never committed can be read. A file named by an
/// intent is normal while its landing is in flight, and after a crash until
/// the partition's next recovery deletes it; any other orphan breaks the
/// invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrphanFile {
    /// Path relative to the lake root.
    pub path: String,
    /// Size in bytes.
    pub bytes: u64,
    /// What its path says it is: `Data` for `*.parquet`, `DeadLetter` under
    /// `_dead_letter/`, `None` for anything else.
    pub kind: Option<FileKind>,
    /// The partition its name carries, when it follows Tributary's naming.
    pub partition: Option<TopicPartition>,
    /// The first offset its name carries, when it follows Tributary's naming.
    pub first_offset: Option<i64>,
    /// The intent naming the file, if one is stored.
    pub intent: Option<String>,
}

impl OrphanFile {
    /// Whether an intent names the file: a landing in flight, or files a
    /// crash left for the partition's next recovery to delete.
    pub fn is_pending(&self) -> bool {
        self.intent.is_some()
    }
}

/// What [`Lake::verify_lake`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LakeReport {
    /// Every partition with a commit log or intents, sorted.
    pub partitions: Vec<PartitionReport>,
    /// Files no commit lists, sorted by path (pending ones included).
    pub orphans: Vec<OrphanFile>,
}

impl LakeReport {
    /// Whether no partition has a problem and every orphan is pending (named
    /// by an intent).
    pub fn is_ok(&self) -> bool {
        self.partitions.iter().all(PartitionReport::is_ok)
            && self.orphans.iter().all(OrphanFile::is_pending)
    }
}

/// A committed file and the commit listing it.
struct ListedFile {
    path: String,
    kind: FileKind,
    rows: u64,
    bytes: u64,
    crc32c: u32,
    seq: u64,
    first_offset: i64,
    last_offset: i64,
}

impl ListedFile {
    fn problem(&self, kind: ProblemKind, message: String) -> Problem {
        Problem {
            kind,
            path: self.path.clone(),
            seq: Some(self.seq),
            first_offset: Some(self.first_offset),
            last_offset: Some(self.last_offset),
            message,
        }
    }
}

fn commit_problem(
    tp: &TopicPartition,
    c: &CommitRecord,
    kind: ProblemKind,
    message: String,
) -> Problem {
    Problem {
        kind,
        path: commit_path(tp, c.seq),
        seq: Some(c.seq),
        first_offset: Some(c.first_offset),
        last_offset: Some(c.last_offset),
        message,
    }
}

impl Lake {
    /// Audits a partition: the commit log has no gaps, ranges chain without
    /// gaps or overlaps, counts add up, no file is listed twice, and every
    /// listed file exists with the recorded size (and, with
    /// `check_contents`, the recorded CRC-32C, which reads every file).
    ///
    /// Problems are reported, not returned as errors; errors are storage
    /// failures that stopped the audit.
    pub async fn verify(
        &self,
        tp: &TopicPartition,
        check_contents: bool,
    ) -> Result<PartitionReport, LakeError> {
        let options = VerifyOptions {
            checksums: check_contents,
            row_counts: false,
        };
        self.verify_with(tp, &options).await
    }

    /// [`Lake::verify`] with explicit options: with
    /// [`VerifyOptions::row_counts`], also the rows each file holds.
    pub async fn verify_with(
        &self,
        tp: &TopicPartition,
        options: &VerifyOptions,
    ) -> Result<PartitionReport, LakeError> {
        Ok(self.verify_partition(tp, options).await?.0)
    }

    /// Audits the whole lake: every partition as [`Lake::verify_with`] does,
    /// and every file under the root outside `_tributary/` that no commit
    /// lists (see [`OrphanFile`]).
    ///
    /// Safe on a lake that is being written: files are listed first, then
    /// intents, then commits, so a landing that completes meanwhile is never
    /// mistaken for an orphan (its commit is read after its files were
    /// listed), and an orphan candidate that is gone by the end (an abandoned
    /// landing being cleaned up) is dropped.
    pub async fn verify_lake(&self, options: &VerifyOptions) -> Result<LakeReport, LakeError> {
        let objects = self.lake_files().await?;
        let partitions = self.partitions().await?;
        let intents = self.intent_files(&partitions).await?;
        let mut committed = HashSet::new();
        let mut reports = Vec::with_capacity(partitions.len());
        for tp in &partitions {
            let (report, listed) = self.verify_partition(tp, options).await?;
            committed.extend(listed);
            reports.push(report);
        }
        let orphans = self.orphans_among(objects, &committed, &intents).await?;
        Ok(LakeReport {
            partitions: reports,
            orphans,
        })
    }

    /// Files under the lake root (outside `_tributary/`, temporary files
    /// skipped) that no readable commit record lists, sorted by path. Files
    /// of `_dead_letter/` are data like any other: commits list them.
    pub async fn orphans(&self) -> Result<Vec<OrphanFile>, LakeError> {
        let objects = self.lake_files().await?;
        let partitions = self.partitions().await?;
        let intents = self.intent_files(&partitions).await?;
        let mut committed = HashSet::new();
        for tp in &partitions {
            for seq in self.commit_seqs(tp, 0).await? {
                match self.read_commit(tp, seq).await {
                    Ok(Some(c)) => committed.extend(c.files.into_iter().map(|f| f.path)),
                    Ok(None) | Err(LakeError::CommitLog { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
        }
        self.orphans_among(objects, &committed, &intents).await
    }

    /// The report of one partition and every path its commits list.
    async fn verify_partition(
        &self,
        tp: &TopicPartition,
        options: &VerifyOptions,
    ) -> Result<(PartitionReport, HashSet<String>), LakeError> {
        validate_partition(tp)?;
        let mut report = PartitionReport::empty(tp.clone());

        let seqs = self.commit_seqs(tp, 0).await?;
        let mut expected = 0u64;
        for &seq in &seqs {
            while expected < seq {
                report.problems.push(Problem {
                    kind: ProblemKind::MissingCommit,
                    path: commit_path(tp, expected),
                    seq: Some(expected),
                    first_offset: None,
                    last_offset: None,
                    message: format!("commit {expected} is missing although commit {seq} exists"),
                });
                expected += 1;
            }
            expected = seq + 1;
        }
        let read: Vec<(u64, Result<Option<CommitRecord>, LakeError>)> = futures::stream::iter(seqs)
            .map(|seq| {
                let lake = self.clone();
                let tp = tp.clone();
                async move { (seq, lake.read_commit(&tp, seq).await) }
            })
            .buffered(IO_CONCURRENCY)
            .collect()
            .await;
        let mut commits: Vec<CommitRecord> = Vec::with_capacity(read.len());
        for (seq, r) in read {
            let (path, message) = match r {
                Ok(Some(c)) => {
                    commits.push(c);
                    continue;
                }
                Ok(None) => (
                    commit_path(tp, seq),
                    "listed but gone when read back".to_string(),
                ),
                Err(LakeError::CommitLog { path, message, .. }) => (path, message),
                Err(e) => return Err(e),
            };
            report.problems.push(Problem {
                kind: ProblemKind::UnreadableCommit,
                path,
                seq: Some(seq),
                first_offset: None,
                last_offset: None,
                message,
            });
        }

        let mut next: Option<i64> = None;
        let mut listed: HashSet<String> = HashSet::new();
        let mut files: Vec<ListedFile> = Vec::new();
        for c in &commits {
            report.commits += 1;
            if c.is_fence() {
                report.fences += 1;
                if !c.files.is_empty() || c.rows + c.dead_lettered + c.skipped > 0 {
                    report.problems.push(commit_problem(
                        tp,
                        c,
                        ProblemKind::BadFence,
                        "a fence lists files or records".into(),
                    ));
                }
                let expected_first = next.unwrap_or(-1);
                if c.first_offset != expected_first || c.last_offset != expected_first - 1 {
                    report.problems.push(commit_problem(
                        tp,
                        c,
                        ProblemKind::BadFence,
                        format!(
                            "fence range {}..={} does not keep the chain at {expected_first}",
                            c.first_offset, c.last_offset
                        ),
                    ));
                }
                continue;
            }
            match next {
                Some(n) if c.first_offset > n => report.problems.push(commit_problem(
                    tp,
                    c,
                    ProblemKind::OffsetGap,
                    format!(
                        "offsets {n}..={} are in no commit: the previous range ends at {} and this one starts at {}",
                        c.first_offset - 1,
                        n - 1,
                        c.first_offset
                    ),
                )),
                Some(n) if c.first_offset < n => report.problems.push(commit_problem(
                    tp,
                    c,
                    ProblemKind::OffsetOverlap,
                    format!(
                        "offsets {}..={} are landed again: the previous range ends at {}",
                        c.first_offset,
                        (n - 1).min(c.last_offset),
                        n - 1
                    ),
                )),
                None if c.first_offset < 0 => report.problems.push(commit_problem(
                    tp,
                    c,
                    ProblemKind::BadRange,
                    "range starts before offset 0".into(),
                )),
                _ => {}
            }
            if report.first_offset.is_none() {
                report.first_offset = Some(c.first_offset);
            }
            report.last_offset = Some(c.last_offset);
            next = Some(c.last_offset + 1);

            let mut sums: HashMap<FileKind, u64> = HashMap::new();
            for f in &c.files {
                *sums.entry(f.kind).or_default() += f.rows;
                if !listed.insert(f.path.clone()) {
                    report.problems.push(Problem {
                        path: f.path.clone(),
                        ..commit_problem(
                            tp,
                            c,
                            ProblemKind::DuplicateFile,
                            format!("listed again by commit {}", c.seq),
                        )
                    });
                } else {
                    files.push(ListedFile {
                        path: f.path.clone(),
                        kind: f.kind,
                        rows: f.rows,
                        bytes: f.bytes,
                        crc32c: f.crc32c,
                        seq: c.seq,
                        first_offset: c.first_offset,
                        last_offset: c.last_offset,
                    });
                }
            }
            let data_rows = sums.get(&FileKind::Data).copied().unwrap_or(0);
            let dead_rows = sums.get(&FileKind::DeadLetter).copied().unwrap_or(0)
                + c.dead_letter_topic
                    .as_ref()
                    .map_or(0, |d| d.offsets.len() as u64);
            if data_rows != c.rows || dead_rows != c.dead_lettered {
                report.problems.push(commit_problem(
                    tp,
                    c,
                    ProblemKind::CountMismatch,
                    format!(
                        "the commit counts {} rows and {} dead-lettered, its files and dead-letter topic positions {data_rows} and {dead_rows}",
                        c.rows, c.dead_lettered
                    ),
                ));
            }
            let span = (c.last_offset - c.first_offset) as u128 + 1;
            if c.rows as u128 + c.dead_lettered as u128 + c.skipped as u128 > span {
                report.problems.push(commit_problem(
                    tp,
                    c,
                    ProblemKind::TooManyRecords,
                    format!("more records than the {span} offsets of the range"),
                ));
            }
            report.rows += c.rows;
            report.dead_lettered += c.dead_lettered;
            report.skipped += c.skipped;
        }

        report.files = files.len() as u64;
        report.bytes = files.iter().map(|f| f.bytes).sum();
        let options = *options;
        let checked: Vec<Option<Problem>> = futures::stream::iter(files)
            .map(|f| {
                let lake = self.clone();
                async move { lake.check_file(f, options).await }
            })
            .buffered(IO_CONCURRENCY)
            .collect::<Vec<Result<Option<Problem>, LakeError>>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        report.problems.extend(checked.into_iter().flatten());
        report.intents = self.intent_entries(tp).await?.len() as u64;
        Ok((report, listed))
    }

    /// The first problem of a committed file, if it has one.
    async fn check_file(
        &self,
        f: ListedFile,
        options: VerifyOptions,
    ) -> Result<Option<Problem>, LakeError> {
        let missing = || f.problem(ProblemKind::MissingFile, "committed file is missing".into());
        let wrong_size = |size: u64| {
            f.problem(
                ProblemKind::SizeMismatch,
                format!("size {size} differs from the recorded {}", f.bytes),
            )
        };
        if !options.reads_files() {
            return Ok(match self.storage.size(&f.path).await? {
                None => Some(missing()),
                Some(size) if size != f.bytes => Some(wrong_size(size)),
                Some(_) => None,
            });
        }
        let Some(found) = self.storage.get(&f.path).await? else {
            return Ok(Some(missing()));
        };
        if found.len() as u64 != f.bytes {
            return Ok(Some(wrong_size(found.len() as u64)));
        }
        if options.checksums {
            let crc = crc32c::crc32c(&found);
            if crc != f.crc32c {
                return Ok(Some(f.problem(
                    ProblemKind::ChecksumMismatch,
                    format!(
                        "CRC-32C {crc:08x} differs from the recorded {:08x}",
                        f.crc32c
                    ),
                )));
            }
        }
        if options.row_counts {
            match count_rows(f.kind, &f.path, &found) {
                Some(Ok(rows)) if rows != f.rows => {
                    return Ok(Some(f.problem(
                        ProblemKind::RowCountMismatch,
                        format!("the file holds {rows} rows, its commit records {}", f.rows),
                    )));
                }
                Some(Err(message)) => {
                    return Ok(Some(f.problem(ProblemKind::UnreadableFile, message)));
                }
                _ => {}
            }
        }
        Ok(None)
    }

    /// Every object under the root outside `_tributary/`, temporary files
    /// skipped, sorted by path.
    async fn lake_files(&self) -> Result<Vec<(String, u64)>, LakeError> {
        let control = format!("{CONTROL_DIR}/");
        let mut objects: Vec<(String, u64)> = self
            .storage
            .list("", None)
            .await?
            .into_iter()
            .filter(|(p, _)| !p.starts_with(&control) && !is_temp_name(file_name(p)))
            .collect();
        objects.sort();
        Ok(objects)
    }

    /// Files named by the readable intents of `partitions`, each with the
    /// intent's path.
    async fn intent_files(
        &self,
        partitions: &[TopicPartition],
    ) -> Result<HashMap<String, String>, LakeError> {
        let mut named = HashMap::new();
        for tp in partitions {
            for entry in self.intent_entries(tp).await? {
                if let Ok(record) = entry.record {
                    for f in record.files {
                        named.insert(f, entry.path.clone());
                    }
                }
            }
        }
        Ok(named)
    }

    /// The objects that are not committed and still exist.
    async fn orphans_among(
        &self,
        objects: Vec<(String, u64)>,
        committed: &HashSet<String>,
        intents: &HashMap<String, String>,
    ) -> Result<Vec<OrphanFile>, LakeError> {
        let candidates: Vec<String> = objects
            .into_iter()
            .map(|(p, _)| p)
            .filter(|p| !committed.contains(p))
            .collect();
        // Files an abandoned landing was deleting when they were listed are
        // gone by now; only what is still there is reported.
        let sized: Vec<(String, Option<u64>)> = futures::stream::iter(candidates)
            .map(|path| {
                let lake = self.clone();
                async move {
                    let size = lake.storage.size(&path).await?;
                    Ok::<_, LakeError>((path, size))
                }
            })
            .buffered(IO_CONCURRENCY)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        Ok(sized
            .into_iter()
            .filter_map(|(path, size)| {
                let bytes = size?;
                let (kind, named) = describe(&path);
                let (partition, first_offset) = named.unzip();
                Some(OrphanFile {
                    intent: intents.get(&path).cloned(),
                    path,
                    bytes,
                    kind,
                    partition,
                    first_offset,
                })
            })
            .collect())
    }
}

/// The rows a file holds, when its kind can be counted.
fn count_rows(kind: FileKind, path: &str, bytes: &[u8]) -> Option<Result<u64, String>> {
    match kind {
        FileKind::Data if path.ends_with(".parquet") => Some(parquet_footer::num_rows(bytes)),
        FileKind::Data => None,
        FileKind::DeadLetter => Some(Ok(bytes
            .split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .count() as u64)),
    }
}

/// What a path says about a file: its kind and, when the name follows
/// Tributary's naming, its partition and first offset.
fn describe(path: &str) -> (Option<FileKind>, Option<(TopicPartition, i64)>) {
    if let Some(rest) = path
        .strip_prefix(DEAD_LETTER_DIR)
        .and_then(|r| r.strip_prefix('/'))
    {
        // <topic>/<partition>/<first:020>-<writer>-<nonce>.jsonl
        let named = (|| {
            let mut parts = rest.split('/');
            let (topic, partition, name) = (parts.next()?, parts.next()?, parts.next()?);
            if parts.next().is_some() {
                return None;
            }
            let tp = TopicPartition::new(topic, parse_partition(partition)?);
            Some((tp, parse_offset(name.get(..20)?)?))
        })();
        return (Some(FileKind::DeadLetter), named);
    }
    let Some(stem) = file_name(path).strip_suffix(".parquet") else {
        return (None, None);
    };
    // <topic>-<partition>-<first:020>-<writer>-<nonce>: the topic may hold
    // '-', writer ids made by new_writer_id and nonces do not.
    let named = (|| {
        let parts: Vec<&str> = stem.rsplitn(5, '-').collect();
        let [_nonce, _writer, first, partition, topic] = parts.as_slice() else {
            return None;
        };
        let tp = TopicPartition::new(*topic, parse_partition(partition)?);
        Some((tp, parse_offset(first)?))
    })();
    (Some(FileKind::Data), named)
}

fn parse_partition(s: &str) -> Option<i32> {
    let p: i32 = s.parse().ok()?;
    (p >= 0 && p.to_string() == s).then_some(p)
}

fn parse_offset(s: &str) -> Option<i64> {
    if s.len() != 20 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tributary_config::StorageConfig;

    use super::*;
    use crate::landing::{Landing, PendingFile};
    use crate::layout::{data_file_path, dead_letter_path, intent_path, new_writer_id};

    /// A lake in a temporary directory, as `file://` URLs open it.
    fn local_lake() -> (tempfile::TempDir, Lake) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("file://{}", dir.path().display());
        let lake = Lake::open(&url, &StorageConfig::default()).unwrap();
        (dir, lake)
    }

    /// A landing of `first..=last`: one data file holding all rows but one,
    /// and a dead-letter file with one line.
    fn landing(tp: &TopicPartition, writer: &str, first: i64, last: i64) -> Landing {
        let rows = (last - first) as u64;
        Landing {
            first_offset: first,
            last_offset: last,
            rows,
            dead_lettered: 1,
            skipped: 0,
            files: vec![
                PendingFile {
                    path: data_file_path(Some("dt=2026-11-24"), tp, first, writer),
                    kind: FileKind::Data,
                    rows,
                    bytes: Bytes::from(format!("rows {first}..{last}")),
                },
                PendingFile {
                    path: dead_letter_path(tp, first, writer),
                    kind: FileKind::DeadLetter,
                    rows: 1,
                    bytes: Bytes::from(format!("{{\"offset\":{last}}}\n")),
                },
            ],
            dead_letter_topic: None,
        }
    }

    /// Three commits of 100 offsets each: 0..=99, 100..=199, 200..=299.
    async fn three_commits(lake: &Lake, tp: &TopicPartition) -> Vec<CommitRecord> {
        let w = new_writer_id("w");
        let mut log = lake.recover(tp, &w).await.unwrap();
        let mut out = Vec::new();
        for first in [0, 100, 200] {
            out.push(
                lake.land(&mut log, &w, landing(tp, &w, first, first + 99))
                    .await
                    .unwrap(),
            );
        }
        out
    }

    /// Counting rows of fake data files is not possible; dead-letter lines are.
    fn no_footers() -> VerifyOptions {
        VerifyOptions {
            checksums: true,
            row_counts: false,
        }
    }

    fn kinds(report: &PartitionReport) -> Vec<ProblemKind> {
        report.problems.iter().map(|p| p.kind).collect()
    }

    #[tokio::test]
    async fn a_clean_lake_is_ok() {
        let (_dir, lake) = local_lake();
        let tp = TopicPartition::new("orders", 0);
        three_commits(&lake, &tp).await;
        let report = lake.verify_lake(&no_footers()).await.unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert!(report.orphans.is_empty());
        let p = &report.partitions[0];
        assert_eq!(p.partition, tp);
        assert_eq!((p.commits, p.fences, p.files, p.intents), (3, 0, 6, 0));
        assert_eq!((p.first_offset, p.last_offset), (Some(0), Some(299)));
        assert_eq!(p.next_offset(), Some(300));
        assert_eq!((p.rows, p.dead_lettered), (297, 3));
        // Dead-letter lines are counted too.
        let opts = VerifyOptions {
            checksums: false,
            row_counts: true,
        };
        let dead_only = lake.verify_with(&tp, &opts).await.unwrap();
        assert_eq!(
            kinds(&dead_only),
            vec![ProblemKind::UnreadableFile; 3],
            "fake data files are not Parquet"
        );
        assert!(lake
            .verify_with(&tp, &VerifyOptions::sizes_only())
            .await
            .unwrap()
            .is_ok());
        assert!(lake.orphans().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn a_corrupt_file_is_a_checksum_problem_naming_it() {
        let (dir, lake) = local_lake();
        let tp = TopicPartition::new("orders", 1);
        let commits = three_commits(&lake, &tp).await;
        let victim = &commits[1].files[0];
        let on_disk = dir.path().join(&victim.path);
        let mut bytes = std::fs::read(&on_disk).unwrap();
        bytes[0] ^= 0xff;
        std::fs::write(&on_disk, &bytes).unwrap();

        let report = lake.verify_lake(&no_footers()).await.unwrap();
        assert!(!report.is_ok());
        let problems = &report.partitions[0].problems;
        assert_eq!(problems.len(), 1, "{problems:?}");
        let p = &problems[0];
        assert_eq!(p.kind, ProblemKind::ChecksumMismatch);
        assert_eq!(p.path, victim.path);
        assert_eq!(
            (p.seq, p.first_offset, p.last_offset),
            (Some(1), Some(100), Some(199))
        );
        assert!(p.to_string().contains(&victim.path), "{p}");
        // Without reading contents the same size passes.
        assert!(lake
            .verify_with(&tp, &VerifyOptions::sizes_only())
            .await
            .unwrap()
            .is_ok());
        // A truncated file is caught by size alone.
        std::fs::write(&on_disk, &bytes[1..]).unwrap();
        let sizes = lake
            .verify_with(&tp, &VerifyOptions::sizes_only())
            .await
            .unwrap();
        assert_eq!(kinds(&sizes), vec![ProblemKind::SizeMismatch]);
        std::fs::remove_file(&on_disk).unwrap();
        let gone = lake.verify_with(&tp, &no_footers()).await.unwrap();
        assert_eq!(kinds(&gone), vec![ProblemKind::MissingFile]);
    }

    #[tokio::test]
    async fn a_deleted_middle_commit_is_a_gap() {
        let (dir, lake) = local_lake();
        let tp = TopicPartition::new("orders", 2);
        let commits = three_commits(&lake, &tp).await;
        std::fs::remove_file(dir.path().join(commit_path(&tp, 1))).unwrap();

        let report = lake.verify_lake(&no_footers()).await.unwrap();
        let p = &report.partitions[0];
        assert_eq!(
            kinds(p),
            vec![ProblemKind::MissingCommit, ProblemKind::OffsetGap]
        );
        assert_eq!(p.problems[0].path, commit_path(&tp, 1));
        assert_eq!(p.problems[0].seq, Some(1));
        let gap = &p.problems[1];
        assert_eq!(gap.path, commit_path(&tp, 2));
        assert_eq!((gap.first_offset, gap.last_offset), (Some(200), Some(299)));
        assert!(gap.message.contains("offsets 100..=199"), "{}", gap.message);
        // The lost commit's files are now orphans, and not pending ones.
        let mut expected: Vec<String> = commits[1].files.iter().map(|f| f.path.clone()).collect();
        expected.sort();
        let orphans: Vec<String> = report.orphans.iter().map(|o| o.path.clone()).collect();
        assert_eq!(orphans, expected);
        assert!(report.orphans.iter().all(|o| !o.is_pending()));
        assert!(!report.is_ok());
    }

    #[tokio::test]
    async fn a_stray_parquet_file_is_an_orphan() {
        let (dir, lake) = local_lake();
        let tp = TopicPartition::new("orders-v2", 3);
        three_commits(&lake, &tp).await;
        let stray = data_file_path(Some("dt=2026-11-25"), &tp, 300, "w_1_deadbeef");
        std::fs::create_dir_all(dir.path().join("dt=2026-11-25")).unwrap();
        std::fs::write(dir.path().join(&stray), b"PAR1 stray PAR1").unwrap();
        // Neither the commit log's own files nor temporary files count.
        std::fs::write(dir.path().join("_tributary/DEMO"), b"marker").unwrap();
        std::fs::write(
            dir.path()
                .join("dt=2026-11-25/.x.parquet.tmp-0123456789abcdef"),
            b"half",
        )
        .unwrap();

        let report = lake.verify_lake(&no_footers()).await.unwrap();
        assert!(report.partitions[0].is_ok());
        assert!(!report.is_ok());
        let expected = OrphanFile {
            path: stray.clone(),
            bytes: 15,
            kind: Some(FileKind::Data),
            partition: Some(tp.clone()),
            first_offset: Some(300),
            intent: None,
        };
        assert_eq!(report.orphans, vec![expected.clone()]);
        assert_eq!(lake.orphans().await.unwrap(), vec![expected]);

        // Named by an intent, the same file is a landing in flight.
        let intent = intent_path(&tp, 3, "w_1_deadbeef");
        let record = crate::IntentRecord {
            version: crate::RECORD_VERSION,
            seq: 3,
            writer: "w_1_deadbeef".into(),
            created_at: "2026-11-25T00:00:00.000Z".into(),
            files: vec![stray.clone()],
        };
        std::fs::create_dir_all(dir.path().join(intent.rsplit_once('/').unwrap().0)).unwrap();
        std::fs::write(
            dir.path().join(&intent),
            serde_json::to_vec(&record).unwrap(),
        )
        .unwrap();
        let report = lake.verify_lake(&no_footers()).await.unwrap();
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.orphans[0].intent.as_deref(), Some(intent.as_str()));
        assert_eq!(report.partitions[0].intents, 1);
    }

    #[tokio::test]
    async fn rows_that_do_not_add_up_are_reported() {
        let (dir, lake) = local_lake();
        let tp = TopicPartition::new("orders", 4);
        three_commits(&lake, &tp).await;
        // A commit whose total disagrees with its files.
        let path = commit_path(&tp, 2);
        let mut c: CommitRecord =
            serde_json::from_slice(&std::fs::read(dir.path().join(&path)).unwrap()).unwrap();
        c.rows -= 5;
        std::fs::write(dir.path().join(&path), serde_json::to_vec(&c).unwrap()).unwrap();
        let report = lake.verify_with(&tp, &no_footers()).await.unwrap();
        assert_eq!(kinds(&report), vec![ProblemKind::CountMismatch]);
        assert_eq!(report.problems[0].path, path);
        assert!(
            report.problems[0].message.contains("94 rows"),
            "{}",
            report.problems[0].message
        );

        // A dead-letter file holding more lines than its commit records.
        let tp = TopicPartition::new("orders", 5);
        let w = new_writer_id("w");
        let mut log = lake.recover(&tp, &w).await.unwrap();
        let mut l = landing(&tp, &w, 0, 9);
        l.files[1].bytes = Bytes::from_static(b"{\"offset\":8}\n{\"offset\":9}\n");
        let committed = lake.land(&mut log, &w, l).await.unwrap();
        let opts = VerifyOptions {
            checksums: true,
            row_counts: true,
        };
        let report = lake.verify_with(&tp, &opts).await.unwrap();
        let dead: Vec<&Problem> = report
            .problems
            .iter()
            .filter(|p| p.kind == ProblemKind::RowCountMismatch)
            .collect();
        assert_eq!(dead.len(), 1, "{:?}", report.problems);
        assert_eq!(dead[0].path, committed.files[1].path);
        assert!(
            dead[0].message.contains("holds 2 rows"),
            "{}",
            dead[0].message
        );
    }

    #[tokio::test]
    async fn overlaps_and_duplicates_are_reported() {
        let (dir, lake) = local_lake();
        let tp = TopicPartition::new("orders", 6);
        let commits = three_commits(&lake, &tp).await;
        let path = commit_path(&tp, 2);
        let mut c = commits[2].clone();
        c.first_offset = 150;
        c.files.push(commits[0].files[1].clone());
        c.dead_lettered += 1;
        std::fs::write(dir.path().join(&path), serde_json::to_vec(&c).unwrap()).unwrap();
        let report = lake.verify_with(&tp, &no_footers()).await.unwrap();
        assert_eq!(
            kinds(&report),
            vec![ProblemKind::OffsetOverlap, ProblemKind::DuplicateFile]
        );
        assert!(
            report.problems[0].message.contains("150..=199"),
            "{}",
            report.problems[0].message
        );
        assert_eq!(report.problems[1].path, commits[0].files[1].path);
        assert_eq!(report.problems[1].seq, Some(2));
    }

    #[test]
    fn paths_say_what_files_are() {
        let tp = TopicPartition::new("web-clicks-2", 11);
        let data = data_file_path(Some("dt=x"), &tp, 42, "worker_1_abcdef12");
        assert_eq!(
            describe(&data),
            (Some(FileKind::Data), Some((tp.clone(), 42)))
        );
        let dead = dead_letter_path(&tp, 7, "worker_1_abcdef12");
        assert_eq!(
            describe(&dead),
            (Some(FileKind::DeadLetter), Some((tp.clone(), 7)))
        );
        assert_eq!(describe("x/part-0.parquet"), (Some(FileKind::Data), None));
        assert_eq!(
            describe("_dead_letter/odd.jsonl"),
            (Some(FileKind::DeadLetter), None)
        );
        assert_eq!(describe("README"), (None, None));
        assert_eq!(
            count_rows(FileKind::DeadLetter, "d.jsonl", b"{}\n\n{}"),
            Some(Ok(2))
        );
        assert_eq!(count_rows(FileKind::Data, "d.orc", b"x"), None);
    }
}
