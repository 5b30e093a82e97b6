//! Storage backends: the few primitives the landing protocol needs, over
//! object_store (S3, GCS, Azure, anything wrapped for tests) or over a local
//! directory with fsync-durable writes.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use tributary_config::StorageConfig;

use crate::error::LakeError;
use crate::local::LocalStorage;

/// Objects larger than this are uploaded in parts.
const MULTIPART_THRESHOLD: usize = 64 << 20;
/// Size of one part of a multipart upload.
const PART_SIZE: usize = 16 << 20;
/// Parts of one upload in flight at once.
const PART_CONCURRENCY: usize = 4;

/// Outcome of a create-if-absent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Created {
    /// The object did not exist and now holds the data.
    Created,
    /// An object already existed at the path; nothing was written.
    Exists,
}

/// The primitives the lake needs. Paths are relative to the lake root and
/// have been checked with [`crate::layout::validate_path`].
#[async_trait]
pub(crate) trait Storage: Send + Sync + fmt::Debug {
    /// Writes an object atomically (readers see all of it or nothing) and
    /// durably, replacing any object at the path.
    async fn put(&self, path: &str, data: Bytes) -> Result<(), LakeError>;
    /// Writes an object only if none exists at the path.
    async fn create(&self, path: &str, data: Bytes) -> Result<Created, LakeError>;
    /// Reads an object; `None` when it does not exist.
    async fn get(&self, path: &str) -> Result<Option<Bytes>, LakeError>;
    /// Size of an object; `None` when it does not exist.
    async fn size(&self, path: &str) -> Result<Option<u64>, LakeError>;
    /// Objects under a directory prefix (`""` for the whole lake), with
    /// sizes, in no particular order; only those sorting after `offset` when
    /// one is given.
    async fn list(
        &self,
        prefix: &str,
        offset: Option<&str>,
    ) -> Result<Vec<(String, u64)>, LakeError>;
    /// Names of the directories directly under a prefix.
    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, LakeError>;
    /// Deletes an object; deleting one that does not exist succeeds.
    async fn delete(&self, path: &str) -> Result<(), LakeError>;
}

/// Opens the backend a lake URL names, retrying its idempotent requests
/// (see [`crate::retry`]; in builds with the `fault-injection` feature, the
/// storage faults of `TRIBUTARY_FAULT_STORAGE` are injected beneath the
/// retries, as a real store's failures would be). Does no network I/O.
pub(crate) fn open(url: &str, config: &StorageConfig) -> Result<Arc<dyn Storage>, LakeError> {
    let backend = open_backend(url, config)?;
    #[cfg(feature = "fault-injection")]
    let backend = crate::faults::storage_from_env(url, backend)?;
    Ok(Arc::new(crate::retry::RetryingStorage::new(backend)))
}

fn open_backend(url: &str, config: &StorageConfig) -> Result<Arc<dyn Storage>, LakeError> {
    let url_err = |message: String| LakeError::Url {
        url: url.to_string(),
        message,
    };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        url_err(
            "expected scheme://location, e.g. file:///var/lib/lake or s3://bucket/prefix".into(),
        )
    })?;
    if rest.contains(['?', '#']) {
        return Err(url_err(
            "query strings and fragments are not supported".into(),
        ));
    }
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "file" => {
            reject_fields(
                &scheme,
                config,
                &[
                    "endpoint",
                    "region",
                    "access_key_id",
                    "secret_access_key",
                    "session_token",
                    "path_style",
                    "allow_http",
                    "options",
                ],
            )?;
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(url_err(
                    "a file:// url needs an absolute path: file:///var/lib/lake".into(),
                ));
            }
            let path = percent_decode(path).map_err(url_err)?;
            Ok(Arc::new(LocalStorage::new(path.into())))
        }
        "s3" | "s3a" => {
            let root = root_prefix(url, rest)?;
            let store = build_s3(url, &scheme, config)?;
            Ok(Arc::new(ObjectStorage::new(Arc::new(store), root)))
        }
        "gs" => {
            let root = root_prefix(url, rest)?;
            let store = build_gcs(url, &scheme, config)?;
            Ok(Arc::new(ObjectStorage::new(Arc::new(store), root)))
        }
        "az" | "abfs" | "abfss" => {
            let root = root_prefix(url, rest)?;
            let store = build_azure(url, &scheme, config)?;
            Ok(Arc::new(ObjectStorage::new(Arc::new(store), root)))
        }
        other => Err(url_err(format!(
            "unsupported scheme {other:?} (use file, s3, gs, az, abfs or abfss)"
        ))),
    }
}

/// The lake root inside the bucket: the URL path after `bucket/`.
fn root_prefix(url: &str, rest: &str) -> Result<ObjectPath, LakeError> {
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    if authority.is_empty() {
        return Err(LakeError::Url {
            url: url.to_string(),
            message: "no bucket (or container) named".into(),
        });
    }
    ObjectPath::from_url_path(path).map_err(|e| LakeError::Url {
        url: url.to_string(),
        message: format!("bad path inside the bucket: {e}"),
    })
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape at byte {i}"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "path is not UTF-8 after percent-decoding".to_string())
}

/// Fails when a storage field the backend does not use is set.
fn reject_fields(scheme: &str, c: &StorageConfig, fields: &[&str]) -> Result<(), LakeError> {
    for &field in fields {
        let set = match field {
            "endpoint" => c.endpoint.is_some(),
            "region" => c.region.is_some(),
            "access_key_id" => c.access_key_id.is_some(),
            "secret_access_key" => c.secret_access_key.is_some(),
            "session_token" => c.session_token.is_some(),
            "path_style" => c.path_style.is_some(),
            "allow_http" => c.allow_http.is_some(),
            "options" => !c.options.is_empty(),
            _ => false,
        };
        if set {
            return Err(LakeError::Config {
                key: format!("storage.{field}"),
                scheme: scheme.to_string(),
                message: match scheme {
                    "file" => "local lakes take no storage settings".to_string(),
                    _ => "not used by this backend; pass its own settings in storage.options"
                        .to_string(),
                },
            });
        }
    }
    Ok(())
}

fn unknown_option(scheme: &str, key: &str, e: object_store::Error) -> LakeError {
    LakeError::Config {
        key: format!("storage.options.{key}"),
        scheme: scheme.to_string(),
        message: format!("unknown option ({e})"),
    }
}

fn build_failed(url: &str, e: object_store::Error) -> LakeError {
    LakeError::Url {
        url: url.to_string(),
        message: e.to_string(),
    }
}

fn build_s3(
    url: &str,
    scheme: &str,
    c: &StorageConfig,
) -> Result<object_store::aws::AmazonS3, LakeError> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    let mut b = AmazonS3Builder::from_env().with_url(url);
    if let Some(v) = &c.endpoint {
        b = b.with_endpoint(v);
    }
    if let Some(v) = &c.region {
        b = b.with_region(v);
    }
    if let Some(v) = &c.access_key_id {
        b = b.with_access_key_id(v);
    }
    if let Some(v) = &c.secret_access_key {
        b = b.with_secret_access_key(v.expose());
    }
    if let Some(v) = &c.session_token {
        b = b.with_token(v.expose());
    }
    if let Some(v) = c.path_style {
        b = b.with_virtual_hosted_style_request(!v);
    }
    if let Some(v) = c.allow_http {
        b = b.with_allow_http(v);
    }
    for (k, v) in &c.options {
        let key: AmazonS3ConfigKey = k.parse().map_err(|e| unknown_option(scheme, k, e))?;
        b = b.with_config(key, v);
    }
    b.build().map_err(|e| build_failed(url, e))
}

fn build_gcs(
    url: &str,
    scheme: &str,
    c: &StorageConfig,
) -> Result<object_store::gcp::GoogleCloudStorage, LakeError> {
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};
    use object_store::ClientConfigKey;
    reject_fields(
        scheme,
        c,
        &[
            "region",
            "access_key_id",
            "secret_access_key",
            "session_token",
            "path_style",
        ],
    )?;
    let mut b = GoogleCloudStorageBuilder::from_env().with_url(url);
    if let Some(v) = &c.endpoint {
        b = b.with_config(GoogleConfigKey::BaseUrl, v);
    }
    if let Some(v) = c.allow_http {
        b = b.with_config(
            GoogleConfigKey::Client(ClientConfigKey::AllowHttp),
            v.to_string(),
        );
    }
    for (k, v) in &c.options {
        let key: GoogleConfigKey = k.parse().map_err(|e| unknown_option(scheme, k, e))?;
        b = b.with_config(key, v);
    }
    b.build().map_err(|e| build_failed(url, e))
}

fn build_azure(
    url: &str,
    scheme: &str,
    c: &StorageConfig,
) -> Result<object_store::azure::MicrosoftAzure, LakeError> {
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    reject_fields(
        scheme,
        c,
        &[
            "region",
            "access_key_id",
            "secret_access_key",
            "session_token",
            "path_style",
        ],
    )?;
    let mut b = MicrosoftAzureBuilder::from_env().with_url(url);
    if let Some(v) = &c.endpoint {
        b = b.with_endpoint(v.clone());
    }
    if let Some(v) = c.allow_http {
        b = b.with_allow_http(v);
    }
    for (k, v) in &c.options {
        let key: AzureConfigKey = k.parse().map_err(|e| unknown_option(scheme, k, e))?;
        b = b.with_config(key, v);
    }
    b.build().map_err(|e| build_failed(url, e))
}

/// A lake on any [`ObjectStore`], under a root prefix.
pub(crate) struct ObjectStorage {
    store: Arc<dyn ObjectStore>,
    root: ObjectPath,
    multipart_threshold: usize,
    part_size: usize,
}

impl fmt::Debug for ObjectStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStorage")
            .field("store", &self.store.to_string())
            .field("root", &self.root.as_ref())
            .finish()
    }
}

impl ObjectStorage {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, root: ObjectPath) -> Self {
        Self {
            store,
            root,
            multipart_threshold: MULTIPART_THRESHOLD,
            part_size: PART_SIZE,
        }
    }

    #[cfg(test)]
    fn with_multipart(mut self, threshold: usize, part_size: usize) -> Self {
        self.multipart_threshold = threshold;
        self.part_size = part_size;
        self
    }

    fn location(&self, path: &str) -> Result<ObjectPath, LakeError> {
        let full = if self.root.as_ref().is_empty() {
            path.to_string()
        } else if path.is_empty() {
            self.root.as_ref().to_string()
        } else {
            format!("{}/{path}", self.root.as_ref())
        };
        ObjectPath::parse(&full).map_err(|e| LakeError::path(path, e.to_string()))
    }

    fn relative(&self, location: &ObjectPath) -> Option<String> {
        let loc = location.as_ref();
        let root = self.root.as_ref();
        if root.is_empty() {
            return Some(loc.to_string());
        }
        loc.strip_prefix(root)?
            .strip_prefix('/')
            .map(str::to_string)
    }

    async fn put_multipart(
        &self,
        path: &str,
        location: &ObjectPath,
        data: Bytes,
    ) -> Result<(), LakeError> {
        let upload = self
            .store
            .put_multipart(location)
            .await
            .map_err(|e| LakeError::object_store("put", path, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, self.part_size);
        let mut rest = data;
        while !rest.is_empty() {
            if let Err(e) = writer.wait_for_capacity(PART_CONCURRENCY).await {
                let _ = writer.abort().await;
                return Err(LakeError::object_store("put", path, e));
            }
            let n = rest.len().min(self.part_size);
            writer.put(rest.split_to(n));
        }
        writer
            .finish()
            .await
            .map(|_| ())
            .map_err(|e| LakeError::object_store("put", path, e))
    }
}

#[async_trait]
impl Storage for ObjectStorage {
    async fn put(&self, path: &str, data: Bytes) -> Result<(), LakeError> {
        let location = self.location(path)?;
        if data.len() > self.multipart_threshold {
            return self.put_multipart(path, &location, data).await;
        }
        self.store
            .put(&location, PutPayload::from(data))
            .await
            .map(|_| ())
            .map_err(|e| LakeError::object_store("put", path, e))
    }

    async fn create(&self, path: &str, data: Bytes) -> Result<Created, LakeError> {
        let location = self.location(path)?;
        let opts = PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        match self
            .store
            .put_opts(&location, PutPayload::from(data), opts)
            .await
        {
            Ok(_) => Ok(Created::Created),
            Err(object_store::Error::AlreadyExists { .. }) => Ok(Created::Exists),
            Err(e) => Err(LakeError::object_store("create", path, e)),
        }
    }

    async fn get(&self, path: &str) -> Result<Option<Bytes>, LakeError> {
        let location = self.location(path)?;
        let result = match self.store.get(&location).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(LakeError::object_store("get", path, e)),
        };
        match result.bytes().await {
            Ok(b) => Ok(Some(b)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(LakeError::object_store("get", path, e)),
        }
    }

    async fn size(&self, path: &str) -> Result<Option<u64>, LakeError> {
        let location = self.location(path)?;
        match self.store.head(&location).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(LakeError::object_store("head", path, e)),
        }
    }

    async fn list(
        &self,
        prefix: &str,
        offset: Option<&str>,
    ) -> Result<Vec<(String, u64)>, LakeError> {
        let prefix_loc = self.location(prefix.trim_end_matches('/'))?;
        let prefix_opt = (!prefix_loc.as_ref().is_empty()).then_some(&prefix_loc);
        let stream = match offset {
            Some(o) => {
                let offset_loc = self.location(o)?;
                self.store.list_with_offset(prefix_opt, &offset_loc)
            }
            None => self.store.list(prefix_opt),
        };
        let metas: Vec<_> = stream
            .try_collect()
            .await
            .map_err(|e| LakeError::object_store("list", prefix, e))?;
        Ok(metas
            .into_iter()
            .filter_map(|m| self.relative(&m.location).map(|p| (p, m.size)))
            .filter(|(p, _)| offset.is_none_or(|o| p.as_str() > o))
            .collect())
    }

    async fn list_dirs(&self, prefix: &str) -> Result<Vec<String>, LakeError> {
        let prefix_loc = self.location(prefix.trim_end_matches('/'))?;
        let prefix_opt = (!prefix_loc.as_ref().is_empty()).then_some(&prefix_loc);
        let result = self
            .store
            .list_with_delimiter(prefix_opt)
            .await
            .map_err(|e| LakeError::object_store("list", prefix, e))?;
        Ok(result
            .common_prefixes
            .iter()
            .filter_map(|p| p.filename().map(str::to_string))
            .collect())
    }

    async fn delete(&self, path: &str) -> Result<(), LakeError> {
        let location = self.location(path)?;
        match self.store.delete(&location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(LakeError::object_store("delete", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use object_store::memory::InMemory;
    use tributary_config::Secret;

    use super::*;

    #[tokio::test]
    async fn multipart_round_trip() {
        let mem = Arc::new(InMemory::new());
        let s = ObjectStorage::new(mem.clone(), ObjectPath::from("root")).with_multipart(1000, 300);
        let data = Bytes::from((0..10_000u32).map(|i| (i % 251) as u8).collect::<Vec<_>>());
        s.put("a/big.bin", data.clone()).await.unwrap();
        s.put("a/small.bin", Bytes::from_static(b"x"))
            .await
            .unwrap();
        assert_eq!(s.get("a/big.bin").await.unwrap().unwrap(), data);
        let raw = mem.get(&ObjectPath::from("root/a/big.bin")).await.unwrap();
        assert_eq!(raw.bytes().await.unwrap(), data);
        let mut listed = s.list("a", None).await.unwrap();
        listed.sort();
        assert_eq!(
            listed,
            vec![
                ("a/big.bin".to_string(), 10_000),
                ("a/small.bin".to_string(), 1)
            ]
        );
    }

    #[tokio::test]
    async fn create_list_offset_delete() {
        let s = ObjectStorage::new(Arc::new(InMemory::new()), ObjectPath::from("lake/x"));
        assert_eq!(
            s.create("d/1", Bytes::from_static(b"1")).await.unwrap(),
            Created::Created
        );
        assert_eq!(
            s.create("d/1", Bytes::from_static(b"2")).await.unwrap(),
            Created::Exists
        );
        assert_eq!(
            s.get("d/1").await.unwrap().unwrap(),
            Bytes::from_static(b"1")
        );
        s.put("d/2", Bytes::from_static(b"22")).await.unwrap();
        s.put("d/3", Bytes::from_static(b"333")).await.unwrap();
        s.put("e/sub/4", Bytes::new()).await.unwrap();
        let mut after = s.list("d", Some("d/1")).await.unwrap();
        after.sort();
        assert_eq!(after, vec![("d/2".to_string(), 2), ("d/3".to_string(), 3)]);
        assert_eq!(s.list("", None).await.unwrap().len(), 4);
        let mut dirs = s.list_dirs("").await.unwrap();
        dirs.sort();
        assert_eq!(dirs, vec!["d".to_string(), "e".to_string()]);
        s.delete("d/2").await.unwrap();
        s.delete("d/2").await.unwrap();
        assert!(s.get("d/2").await.unwrap().is_none());
        assert!(s.list("nothing", None).await.unwrap().is_empty());
    }

    #[test]
    fn opens_urls() {
        let none = StorageConfig::default();
        open("file:///tmp/lake", &none).unwrap();
        open("file://localhost/tmp/lake%20x", &none).unwrap();
        for bad in [
            "/tmp/lake",
            "file://tmp/lake",
            "ftp://x/y",
            "s3://",
            "s3:///x",
            "s3://b/p?x=1",
        ] {
            let e = open(bad, &none).unwrap_err();
            assert!(matches!(e, LakeError::Url { .. }), "{bad}: {e}");
        }

        let s3 = StorageConfig {
            endpoint: Some("http://127.0.0.1:8333".into()),
            region: Some("us-east-1".into()),
            access_key_id: Some("AKID".into()),
            secret_access_key: Some(Secret::new("secret")),
            session_token: Some(Secret::new("token")),
            path_style: Some(true),
            allow_http: Some(true),
            options: BTreeMap::from([
                ("aws_sse_kms_key_id".to_string(), "k".to_string()),
                ("timeout".to_string(), "30s".to_string()),
            ]),
        };
        let lake = open("s3://bucket/raw/orders", &s3).unwrap();
        assert!(format!("{lake:?}").contains("raw/orders"));
        assert!(!format!("{lake:?}").contains("secret"));

        let mut bad = s3.clone();
        bad.options.insert("no_such_option".into(), "1".into());
        let e = open("s3://bucket/raw", &bad).unwrap_err();
        assert!(
            e.to_string().contains("storage.options.no_such_option"),
            "{e}"
        );

        let e = open("file:///tmp/lake", &s3).unwrap_err();
        assert!(matches!(e, LakeError::Config { .. }), "{e}");
    }

    #[test]
    fn opens_gcs_and_azure() {
        let gcs = StorageConfig {
            options: BTreeMap::from([("google_skip_signature".to_string(), "true".to_string())]),
            ..Default::default()
        };
        open("gs://bucket/prefix", &gcs).unwrap();
        let az = StorageConfig {
            options: BTreeMap::from([
                ("azure_storage_account_name".to_string(), "acct".to_string()),
                ("azure_skip_signature".to_string(), "true".to_string()),
            ]),
            ..Default::default()
        };
        open("az://container/prefix", &az).unwrap();
        open("abfss://container@acct.dfs.core.windows.net/prefix", &az).unwrap();
        let mut bad = az.clone();
        bad.region = Some("x".into());
        let e = open("az://container/prefix", &bad).unwrap_err();
        assert!(e.to_string().contains("storage.region"), "{e}");
        let mut bad = az;
        bad.options.insert("bogus".into(), "1".into());
        let e = open("abfs://container/prefix", &bad).unwrap_err();
        assert!(e.to_string().contains("storage.options.bogus"), "{e}");
    }

    #[test]
    fn root_prefixes() {
        assert_eq!(root_prefix("u", "bucket/a/b/").unwrap().as_ref(), "a/b");
        assert_eq!(root_prefix("u", "bucket").unwrap().as_ref(), "");
        assert_eq!(root_prefix("u", "bucket/a%20b").unwrap().as_ref(), "a b");
        assert!(root_prefix("u", "bucket/a/../b").is_err());
        assert_eq!(percent_decode("/a%2Fb").unwrap(), "/a/b");
        assert!(percent_decode("/a%zz").is_err());
    }
}
