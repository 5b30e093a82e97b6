//! A lake in a local directory, written so that a crash or power loss never
//! leaves a partial object under its final name and never loses an object
//! once a write returned:
//!
//! - put: write `.<name>.tmp-<random>` in the target directory, fsync it,
//!   rename it over the final name, fsync the directory;
//! - create-if-absent: write and fsync the temporary file, hard-link it to the
//!   final name (the link fails if the name exists, atomically), fsync the
//!   directory, remove the temporary file;
//! - new directories are fsynced into their parents;
//! - files of 1 MiB and more whose bytes start on a page boundary (the
//!   Parquet sink's file images, see [`Image`](crate::Image)) are written
//!   with `O_DIRECT` on Linux, skipping the page cache's copy, and through
//!   the page cache where the filesystem refuses direct I/O.
//!
//! Temporary names start with `.` and never end in `.parquet`, so readers that
//! glob the lake skip them, and listings here never return them.
//!
//! The filesystem must support hard links (ext4, xfs, btrfs, tmpfs, APFS do;
//! some network and FUSE filesystems do not): without them create-if-absent
//! fails with a storage error rather than risk two winners.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::LakeError;
use crate::layout::is_temp_name;
use crate::storage::{Created, Storage};

/// A lake rooted at a local directory (created on first write).
#[derive(Debug)]
pub(crate) struct LocalStorage {
    root: PathBuf,
}

impl LocalStorage {
    pub(crate) fn new(root: PathBuf) -> Self {
        Self { root }
    }

    fn resolve(&self, path: &str) -> PathBuf {
        let trimmed = path.trim_end_matches('/');
        if trimmed.is_empty() {
            self.root.clone()
        } else {
            self.root.join(trimmed)
        }
    }
}

async fn blocking<T, F>(operation: &'static str, path: &str, f: F) -> Result<T, LakeError>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(LakeError::io(operation, path, e)),
        Err(e) => Err(LakeError::io(operation, path, io::Error::other(e))),
    }
}

#[async_trait]
impl Storage for LocalStorage {
    async fn put(&self, path: &str, data: Bytes) -> Result<(), LakeError> {
        let target = self.resolve(path);
        blocking("put", path, move || {
            let (dir, tmp) = write_temp(&target, &data)?;
            if let Err(e) = fs::rename(&tmp, &target) {
                let _ = fs::remove_file(&tmp);
                return Err(e);
            }
            sync_dir(&dir)
        })
        .await
    }

    async fn create(&self, path: &str, data: Bytes) -> Result<Created, LakeError> {
        let target = self.resolve(path);
        blocking("create", path, move || {
            let (dir, tmp) = write_temp(&target, &data)?;
            let linked = fs::hard_link(&tmp, &target);
            let outcome = match linked {
                Ok(()) => sync_dir(&dir).map(|()| Created::Created),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Created::Exists),
                Err(e) => Err(e),
            };
            let _ = fs::remove_file(&tmp);
            outcome
        })
        .await
    }

    async fn get(&self, path: &str) -> Result<Option<Bytes>, LakeError> {
        let target = self.resolve(path);
        blocking("get", path, move || match fs::read(&target) {
            Ok(data) => Ok(Some(Bytes::from(data))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn size(&self, path: &str) -> Result<Option<u64>, LakeError> {
        let target = self.resolve(path);
        blocking("head", path, move || match fs::metadata(&target) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if is_missing_dir(&e) => Ok(None),
            Err(e) => Err(e),
        })
        .await
    }

    async fn list(
        &self,
        prefix: &str,
        offset: Option<&str>,
    ) -> Result<Vec<(String, u64)>, LakeError> {
        let dir = self.resolve(prefix);
        let rel_prefix = prefix.trim_end_matches('/').to_string();
        let offset = offset.map(str::to_string);
        blocking("list", prefix, move || {
            let mut out = Vec::new();
            walk(&dir, &rel_prefix, &mut out)?;
            if let Some(o) = offset {
                out.retain(|(p, _)| p.as_str() > o.as_str());
            }
            Ok(out)
        })
        .await
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        let dir = self.resolve(prefix);
        blocking("list", prefix, move || {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if is_missing_dir(&e) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            };
            let mut out = Vec::new();
            for entry in entries {
                let entry = entry?;
                if entry.file_type()?.is_dir() {
                    if let Some(name) = entry.file_name().to_str() {
                        out.push(name.to_string());
                    }
                }
            }
            Ok(out)
        })
        .await
    }

    async fn delete(&self, path: &str) -> Result<(), LakeError> {
        let target = self.resolve(path);
        blocking("delete", path, move || match fs::remove_file(&target) {
            Ok(()) => match target.parent() {
                Some(dir) => sync_dir(dir),
                None => Ok(()),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        })
        .await
    }
}

fn is_missing_dir(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

/// Creates the parent directories of `target`, writes `data` to a fresh
/// temporary file beside it and fsyncs it. Returns the directory and the
/// temporary file.
fn write_temp(target: &Path, data: &[u8]) -> io::Result<(PathBuf, PathBuf)> {
    write_temp_via(target, data, write_direct)
}

/// [`write_temp`] with the direct write given, so that tests can make it
/// fail as a filesystem without direct I/O or a failing device would.
fn write_temp_via(
    target: &Path,
    data: &[u8],
    write_direct: fn(&Path, &[u8]) -> Option<io::Result<()>>,
) -> io::Result<(PathBuf, PathBuf)> {
    let dir = target
        .parent()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no parent"))?
        .to_path_buf();
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    ensure_dir(&dir)?;
    let mut nonce = uuid::Uuid::new_v4().simple().to_string();
    nonce.truncate(16);
    let tmp = dir.join(format!(".{name}.tmp-{nonce}"));
    let written = match write_direct(&tmp, data) {
        Some(Ok(())) => Ok(()),
        Some(Err(e)) if !direct_unsupported(&e) => Err(e),
        direct => {
            if direct.is_some() {
                // The filesystem or the device refused direct I/O: the
                // same bytes through the page cache, into a fresh file.
                let _ = fs::remove_file(&tmp);
            }
            (|| {
                let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
                file.write_all(data)?;
                file.sync_all()
            })()
        }
    };
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    Ok((dir, tmp))
}

/// Smallest file written with direct I/O: below it the page cache's copy
/// costs little and direct I/O's wait for the device would dominate.
const DIRECT_MIN: usize = 1 << 20;

/// Writes a large file whose bytes start on a page boundary (an
/// [`Image`](crate::Image)'s) with `O_DIRECT`, then its last partial page
/// through the page cache, and fsyncs it. The data goes from our memory to
/// the device without first being copied into the page cache, which for
/// freshly encoded Parquet files — written once, read by someone else much
/// later — bought nothing and cost CPU. `None` when the data does not
/// qualify (or not on Linux); an error for which [`direct_unsupported`]
/// holds means the filesystem refused and the caller writes it again the
/// ordinary way.
#[cfg(target_os = "linux")]
fn write_direct(tmp: &Path, data: &[u8]) -> Option<io::Result<()>> {
    use std::os::unix::fs::OpenOptionsExt;
    use std::os::unix::io::AsRawFd;

    use crate::image::PAGE;

    if data.len() < DIRECT_MIN || !(data.as_ptr() as usize).is_multiple_of(PAGE) {
        return None;
    }
    let whole = data.len() / PAGE * PAGE;
    Some((|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_DIRECT)
            .open(tmp)?;
        file.write_all(&data[..whole])?;
        if whole < data.len() {
            // The tail is not a whole page: written through the page cache.
            let fd = file.as_raw_fd();
            // SAFETY: F_GETFL/F_SETFL on a descriptor we own.
            let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
            // SAFETY: as above.
            if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
                return Err(io::Error::last_os_error());
            }
            file.write_all(&data[whole..])?;
        }
        file.sync_all()
    })())
}

#[cfg(not(target_os = "linux"))]
fn write_direct(_tmp: &Path, _data: &[u8]) -> Option<io::Result<()>> {
    None
}

/// Whether a direct write failed because direct I/O is not possible there
/// (`EINVAL`: a filesystem without `O_DIRECT`, or a device whose block size
/// the data is not aligned to), rather than for a reason a retry the
/// ordinary way would meet again.
fn direct_unsupported(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::InvalidInput
}

/// Creates `dir` and any missing ancestors, fsyncing each new directory's
/// parent so the new entry survives a crash.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    let mut missing = Vec::new();
    let mut current = dir;
    loop {
        match fs::metadata(current) {
            Ok(m) if m.is_dir() => break,
            Ok(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", current.display()),
                ))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                missing.push(current.to_path_buf());
                match current.parent() {
                    Some(p) => current = p,
                    None => break,
                }
            }
            Err(e) => return Err(e),
        }
    }
    for new_dir in missing.iter().rev() {
        match fs::create_dir(new_dir) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        if let Some(parent) = new_dir.parent() {
            sync_dir(parent)?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Files under `dir` (recursively) as lake paths, skipping temporary files.
/// Entries that vanish during the walk are skipped.
fn walk(dir: &Path, rel: &str, out: &mut Vec<(String, u64)>) -> io::Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if is_missing_dir(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = match entry {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let child = if rel.is_empty() {
            name.clone()
        } else {
            format!("{rel}/{name}")
        };
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if meta.is_dir() {
            walk(&entry.path(), &child, out)?;
        } else if meta.is_file() && !is_temp_name(&name) {
            out.push((child, meta.len()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_files(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                out.extend(all_files(&e.path()));
            } else {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
        out
    }

    /// A large image (written with direct I/O where the filesystem allows
    /// it, through the page cache where it does not) reads back whole, its
    /// last partial page included, by put and by create.
    #[tokio::test]
    async fn large_aligned_images_read_back_whole() {
        use std::io::Write as _;

        let tmp = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(tmp.path().to_path_buf());
        for len in [DIRECT_MIN, DIRECT_MIN + 4096 * 3 + 123] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let mut image = crate::Image::with_capacity(len);
            image.write_all(&data).unwrap();
            let bytes = image.into_bytes();
            assert_eq!(bytes.as_ptr() as usize % crate::PAGE, 0);
            s.put(&format!("p/{len}.parquet"), bytes.clone())
                .await
                .unwrap();
            assert_eq!(
                s.create(&format!("c/{len}.parquet"), bytes).await.unwrap(),
                Created::Created
            );
            for dir in ["p", "c"] {
                let read = fs::read(tmp.path().join(format!("{dir}/{len}.parquet"))).unwrap();
                assert!(read == data, "{dir}/{len}: {} bytes read back", read.len());
            }
        }
        let mut names = all_files(tmp.path());
        names.sort();
        assert_eq!(names.len(), 4, "no temporary file left: {names:?}");
    }

    /// Only large, page-aligned data is written directly; when it is, the
    /// file holds exactly the data (or the filesystem said it cannot).
    #[cfg(target_os = "linux")]
    #[test]
    fn direct_writes_take_large_aligned_data_only() {
        use std::io::Write as _;

        let tmp = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..DIRECT_MIN + 777).map(|i| (i % 253) as u8).collect();
        let mut image = crate::Image::with_capacity(data.len() + 1);
        image.write_all(&data).unwrap();
        let aligned = image.into_bytes();
        let small = &aligned[..DIRECT_MIN - 1];
        let unaligned = &aligned[1..];
        assert!(write_direct(&tmp.path().join("small"), small).is_none());
        assert!(write_direct(&tmp.path().join("unaligned"), unaligned).is_none());
        let path = tmp.path().join("aligned");
        match write_direct(&path, &aligned) {
            Some(Ok(())) => assert!(fs::read(&path).unwrap() == data),
            Some(Err(e)) => assert!(direct_unsupported(&e), "{e}"),
            None => panic!("large aligned data was not written directly"),
        }
    }

    /// A direct write that wrote part of the file, then failed.
    fn half_then(tmp: &Path, data: &[u8], error: io::ErrorKind) -> Option<io::Result<()>> {
        fs::write(tmp, &data[..data.len() / 2]).unwrap();
        Some(Err(io::Error::new(error, "injected")))
    }

    /// Where the filesystem refuses direct I/O (`EINVAL` once some of the
    /// file was written), the file is written again through the page cache
    /// and holds exactly the data.
    #[test]
    fn a_refused_direct_write_goes_through_the_page_cache() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("d/f.parquet");
        let data: Vec<u8> = (0..10_000).map(|i| (i % 241) as u8).collect();
        let (dir, written) = write_temp_via(&target, &data, |tmp, data| {
            half_then(tmp, data, io::ErrorKind::InvalidInput)
        })
        .unwrap();
        assert_eq!(dir, tmp.path().join("d"));
        assert!(fs::read(&written).unwrap() == data);
        assert_eq!(all_files(tmp.path()).len(), 1);
    }

    /// Any other failure of a direct write fails the write and leaves no
    /// temporary file.
    #[test]
    fn a_failed_direct_write_fails_and_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let target = tmp.path().join("d/f.parquet");
        let data = vec![7u8; 10_000];
        let e = write_temp_via(&target, &data, |tmp, data| {
            half_then(tmp, data, io::ErrorKind::Other)
        })
        .unwrap_err();
        assert_eq!(e.to_string(), "injected");
        assert_eq!(all_files(tmp.path()), Vec::<String>::new());
    }

    #[tokio::test]
    async fn durable_writes_leave_no_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(tmp.path().join("new/root"));
        s.put("a/b/c.parquet", Bytes::from_static(b"abc"))
            .await
            .unwrap();
        s.put("a/b/c.parquet", Bytes::from_static(b"abcd"))
            .await
            .unwrap();
        assert_eq!(
            s.create("a/x.json", Bytes::from_static(b"1"))
                .await
                .unwrap(),
            Created::Created
        );
        assert_eq!(
            s.create("a/x.json", Bytes::from_static(b"2"))
                .await
                .unwrap(),
            Created::Exists
        );
        assert_eq!(
            s.get("a/x.json").await.unwrap().unwrap(),
            Bytes::from_static(b"1")
        );
        assert_eq!(
            s.get("a/b/c.parquet").await.unwrap().unwrap(),
            Bytes::from_static(b"abcd")
        );
        assert!(s.get("a/none").await.unwrap().is_none());
        let mut files = all_files(&tmp.path().join("new/root"));
        files.sort();
        assert_eq!(files, vec!["c.parquet".to_string(), "x.json".to_string()]);
    }

    #[tokio::test]
    async fn listing_skips_temp_files() {
        let tmp = tempfile::tempdir().unwrap();
        let s = LocalStorage::new(tmp.path().to_path_buf());
        s.put("d/1.json", Bytes::from_static(b"1")).await.unwrap();
        s.put("d/2.json", Bytes::from_static(b"22")).await.unwrap();
        fs::write(
            tmp.path().join("d/.3.json.tmp-0123456789abcdef"),
            b"partial",
        )
        .unwrap();
        fs::write(tmp.path().join("d/.hidden"), b"h").unwrap();
        let mut listed = s.list("d", None).await.unwrap();
        listed.sort();
        assert_eq!(
            listed,
            vec![
                ("d/.hidden".to_string(), 1),
                ("d/1.json".to_string(), 1),
                ("d/2.json".to_string(), 2)
            ]
        );
        assert_eq!(
            s.list("d/", Some("d/1.json")).await.unwrap(),
            vec![("d/2.json".to_string(), 2)]
        );
        assert!(s.list("missing", None).await.unwrap().is_empty());
        assert!(s.list("d/1.json", None).await.unwrap().is_empty());
        assert_eq!(s.list_dirs("").await.unwrap(), vec!["d".to_string()]);
        s.delete("d/1.json").await.unwrap();
        s.delete("d/1.json").await.unwrap();
        s.delete("nope/1.json").await.unwrap();
        assert_eq!(s.list("", None).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn concurrent_creates_have_one_winner() {
        let tmp = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(LocalStorage::new(tmp.path().to_path_buf()));
        let tasks: Vec<_> = (0..16)
            .map(|i| {
                let s = s.clone();
                tokio::spawn(async move { s.create("c/0.json", Bytes::from(format!("{i}"))).await })
            })
            .collect();
        let mut won = 0;
        for t in tasks {
            if t.await.unwrap().unwrap() == Created::Created {
                won += 1;
            }
        }
        assert_eq!(won, 1);
        assert_eq!(all_files(tmp.path()), vec!["0.json".to_string()]);
    }
}
