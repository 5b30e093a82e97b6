//! Auditing a partition's commit log against the landing invariant.

use std::collections::{HashMap, HashSet};

use futures::StreamExt;
use tributary_core::TopicPartition;

use crate::commit::{CommitRecord, FileKind};
use crate::error::LakeError;
use crate::lake::{Lake, IO_CONCURRENCY};
use crate::layout::{commit_path, validate_partition};

/// One way a partition's lake state breaks the landing invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The commit record or file concerned.
    pub path: String,
    /// What is wrong.
    pub message: String,
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
    /// Whether no problem was found.
    pub fn is_ok(&self) -> bool {
        self.problems.is_empty()
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
        validate_partition(tp)?;
        let mut report = PartitionReport {
            partition: tp.clone(),
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
        };
        let problem = |report: &mut PartitionReport, path: String, message: String| {
            report.problems.push(Problem { path, message });
        };

        let seqs = self.commit_seqs(tp, 0).await?;
        let mut commits: Vec<CommitRecord> = Vec::with_capacity(seqs.len());
        let mut expected = 0u64;
        for &seq in &seqs {
            while expected < seq {
                problem(
                    &mut report,
                    commit_path(tp, expected),
                    "commit is missing".into(),
                );
                expected += 1;
            }
            expected = seq + 1;
        }
        let read: Vec<(u64, Result<Option<CommitRecord>, LakeError>)> = futures::stream::iter(seqs)
            .map(|seq| async move { (seq, self.read_commit(tp, seq).await) })
            .buffered(IO_CONCURRENCY)
            .collect()
            .await;
        for (seq, r) in read {
            match r {
                Ok(Some(c)) => commits.push(c),
                Ok(None) => problem(
                    &mut report,
                    commit_path(tp, seq),
                    "listed but unreadable".into(),
                ),
                Err(LakeError::CommitLog { path, message, .. }) => {
                    problem(&mut report, path, message)
                }
                Err(e) => return Err(e),
            }
        }

        let mut next: Option<i64> = None;
        let mut listed: HashSet<String> = HashSet::new();
        let mut files: Vec<(String, u64, u32)> = Vec::new();
        for c in &commits {
            let at = commit_path(tp, c.seq);
            report.commits += 1;
            if c.is_fence() {
                report.fences += 1;
                if !c.files.is_empty() || c.rows + c.dead_lettered + c.skipped > 0 {
                    problem(
                        &mut report,
                        at.clone(),
                        "a fence lists files or records".into(),
                    );
                }
                let expected_first = next.unwrap_or(-1);
                if c.first_offset != expected_first || c.last_offset != expected_first - 1 {
                    problem(
                        &mut report,
                        at,
                        format!(
                            "fence range {}..={} does not keep the chain at {expected_first}",
                            c.first_offset, c.last_offset
                        ),
                    );
                }
                continue;
            }
            match next {
                Some(n) if c.first_offset != n => problem(
                    &mut report,
                    at.clone(),
                    format!(
                        "range starts at {} but the previous range ends at {}",
                        c.first_offset,
                        n - 1
                    ),
                ),
                None if c.first_offset < 0 => problem(
                    &mut report,
                    at.clone(),
                    "range starts before offset 0".into(),
                ),
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
                    problem(
                        &mut report,
                        f.path.clone(),
                        format!("listed again by commit {}", c.seq),
                    );
                } else {
                    files.push((f.path.clone(), f.bytes, f.crc32c));
                }
            }
            if sums.get(&FileKind::Data).copied().unwrap_or(0) != c.rows
                || sums.get(&FileKind::DeadLetter).copied().unwrap_or(0) != c.dead_lettered
            {
                problem(
                    &mut report,
                    at.clone(),
                    "row counts do not match the files".into(),
                );
            }
            let span = (c.last_offset - c.first_offset) as u128 + 1;
            if c.rows as u128 + c.dead_lettered as u128 + c.skipped as u128 > span {
                problem(
                    &mut report,
                    at,
                    "more records than offsets in the range".into(),
                );
            }
            report.rows += c.rows;
            report.dead_lettered += c.dead_lettered;
            report.skipped += c.skipped;
        }

        report.files = files.len() as u64;
        report.bytes = files.iter().map(|f| f.1).sum();
        let checked: Vec<Option<Problem>> = futures::stream::iter(files)
            .map(|(path, bytes, crc)| async move {
                if !check_contents {
                    return match self.storage.size(&path).await? {
                        None => Ok(Some(Problem {
                            path,
                            message: "committed file is missing".into(),
                        })),
                        Some(size) if size != bytes => Ok(Some(Problem {
                            path,
                            message: format!("size {size} differs from the recorded {bytes}"),
                        })),
                        Some(_) => Ok(None),
                    };
                }
                let Some(found) = self.storage.get(&path).await? else {
                    return Ok(Some(Problem {
                        path,
                        message: "committed file is missing".into(),
                    }));
                };
                if found.len() as u64 != bytes {
                    return Ok(Some(Problem {
                        path,
                        message: format!("size {} differs from the recorded {bytes}", found.len()),
                    }));
                }
                if crc32c::crc32c(&found) != crc {
                    return Ok(Some(Problem {
                        path,
                        message: "CRC-32C differs from the recorded one".into(),
                    }));
                }
                Ok(None)
            })
            .buffered(IO_CONCURRENCY)
            .collect::<Vec<Result<Option<Problem>, LakeError>>>()
            .await
            .into_iter()
            .collect::<Result<_, _>>()?;
        report.problems.extend(checked.into_iter().flatten());
        report.intents = self.intent_entries(tp).await?.len() as u64;
        Ok(report)
    }
}
