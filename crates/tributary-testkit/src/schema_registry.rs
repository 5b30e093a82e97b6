//! A small in-memory Confluent Schema Registry, speaking the documented REST
//! API over real HTTP/1.1 on 127.0.0.1, so registry clients are tested
//! against sockets, status codes and error bodies rather than a mock object.
//!
//! Endpoints (bodies as Confluent documents them, content type
//! `application/vnd.schemaregistry.v1+json`):
//!
//! | Request | Answer |
//! |---|---|
//! | `GET /schemas/ids/{id}` | `{"schema": "...", "schemaType": "PROTOBUF", "references": [...]}`; `schemaType` is omitted for Avro, `references` when empty; 404 `{"error_code":40403,"message":"Schema 7 not found"}` |
//! | `GET /subjects` | `["orders-value", ...]` |
//! | `GET /subjects/{s}/versions` | `[1, 2]`; 404 40401 |
//! | `GET /subjects/{s}/versions/{v}` (`v` a number or `latest`) | `{"subject","version","id","schema",...}`; 404 40401 (subject) / 40402 (version); 422 42202 (not a version) |
//! | `POST /subjects/{s}/versions` with `{"schema", "schemaType"?, "references"?}` | `{"id": N}` (the same schema text and type gets the same id everywhere) |
//!
//! [`SchemaRegistryServer::start_tls`] serves HTTPS with a certificate for
//! `127.0.0.1` signed by a test-only CA ([`TEST_CA_PEM`], for a client's
//! `ca_file`; `fixtures/tls/README.md` says how it was made).
//!
//! With credentials set, every request needs HTTP basic auth matching them,
//! else 401 `{"error_code":401,"message":"Unauthorized"}`. Unknown paths get
//! 404 `{"error_code":404,"message":"HTTP 404 Not Found"}`. Every answer
//! closes its connection.
//!
//! [`SchemaRegistryServer::start`] runs it in this process (a thread per
//! connection); [`SchemaRegistryProcess::start`] runs the
//! `tributary-schema-registry` binary beside a test's other processes.

use std::collections::{BTreeMap, HashMap};
use std::io::{self, BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde_json::{json, Value};

use crate::process::{kill_group, spawn_tied};

/// Content type of every answer.
const CONTENT_TYPE: &str = "application/vnd.schemaregistry.v1+json";

/// Largest request body accepted (schemas are small).
const MAX_BODY: usize = 16 << 20;

/// The test-only CA that signed the HTTPS mode's server certificate (PEM).
pub const TEST_CA_PEM: &str = include_str!("../fixtures/tls/ca.pem");
const SERVER_CERT_PEM: &str = include_str!("../fixtures/tls/server.pem");
const SERVER_KEY_PEM: &str = include_str!("../fixtures/tls/server.key");

fn tls_config() -> io::Result<Arc<rustls::ServerConfig>> {
    use rustls::pki_types::pem::PemObject as _;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(SERVER_CERT_PEM.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| io::Error::other(format!("test certificate: {e}")))?;
    let key = PrivateKeyDer::from_pem_slice(SERVER_KEY_PEM.as_bytes())
        .map_err(|e| io::Error::other(format!("test key: {e}")))?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(io::Error::other)?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(io::Error::other)?;
    Ok(Arc::new(config))
}

/// One registered schema.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Stored {
    schema: String,
    /// `None` for Avro (Confluent omits the field).
    schema_type: Option<String>,
    references: Vec<Value>,
}

#[derive(Debug, Default)]
struct State {
    /// Schema `id` is at index `id - 1`.
    schemas: Vec<Stored>,
    /// Per subject, the id of each version (version `v` at index `v - 1`).
    subjects: BTreeMap<String, Vec<u32>>,
    /// Requests served, by `METHOD path`.
    requests: HashMap<String, u64>,
}

impl State {
    fn register(&mut self, subject: &str, stored: Stored) -> u32 {
        let id = match self.schemas.iter().position(|s| *s == stored) {
            Some(i) => i as u32 + 1,
            None => {
                self.schemas.push(stored);
                self.schemas.len() as u32
            }
        };
        let versions = self.subjects.entry(subject.to_string()).or_default();
        if !versions.contains(&id) {
            versions.push(id);
        }
        id
    }
}

/// An answer: status and JSON body.
type Answer = (u16, Value);

fn error(status: u16, code: u32, message: String) -> Answer {
    (status, json!({"error_code": code, "message": message}))
}

struct Shared {
    state: Mutex<State>,
    /// Expected `Authorization` header value, when auth is on.
    auth: Option<String>,
}

impl Shared {
    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle(&self, method: &str, target: &str, auth: Option<&str>, body: &[u8]) -> Answer {
        let path = target.split('?').next().unwrap_or_default();
        *self
            .state()
            .requests
            .entry(format!("{method} {path}"))
            .or_default() += 1;
        if let Some(expected) = &self.auth {
            if auth != Some(expected.as_str()) {
                return error(401, 401, "Unauthorized".into());
            }
        }
        let segments: Vec<String> = path
            .trim_matches('/')
            .split('/')
            .map(percent_decode)
            .collect();
        let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
        match (method, segments.as_slice()) {
            ("GET", ["schemas", "ids", id]) => self.schema_by_id(id),
            ("GET", ["subjects"]) => {
                let names: Vec<String> = self.state().subjects.keys().cloned().collect();
                (200, json!(names))
            }
            ("GET", ["subjects", subject, "versions"]) => match self.state().subjects.get(*subject)
            {
                Some(v) => (200, json!((1..=v.len()).collect::<Vec<_>>())),
                None => subject_not_found(subject),
            },
            ("GET", ["subjects", subject, "versions", version]) => {
                self.subject_version(subject, version)
            }
            ("POST", ["subjects", subject, "versions"]) => self.register(subject, body),
            _ => error(404, 404, "HTTP 404 Not Found".into()),
        }
    }

    fn schema_by_id(&self, id: &str) -> Answer {
        let state = self.state();
        let found = id
            .parse::<usize>()
            .ok()
            .filter(|&i| i >= 1)
            .and_then(|i| state.schemas.get(i - 1));
        match found {
            Some(s) => {
                let mut body = json!({"schema": s.schema});
                if let Some(t) = &s.schema_type {
                    body["schemaType"] = json!(t);
                }
                if !s.references.is_empty() {
                    body["references"] = json!(s.references);
                }
                (200, body)
            }
            None => error(404, 40403, format!("Schema {id} not found")),
        }
    }

    fn subject_version(&self, subject: &str, version: &str) -> Answer {
        let state = self.state();
        let Some(versions) = state.subjects.get(subject) else {
            return subject_not_found(subject);
        };
        let number = match version {
            "latest" | "-1" => versions.len(),
            v => match v.parse::<usize>() {
                Ok(n) if n >= 1 => n,
                _ => {
                    return error(
                        422,
                        42202,
                        format!(
                            "The specified version '{v}' is not a valid version id. Allowed values are between [1, 2^31-1] and the string \"latest\""
                        ),
                    )
                }
            },
        };
        let Some(&id) = versions.get(number - 1) else {
            return error(404, 40402, format!("Version {version} not found."));
        };
        let s = &state.schemas[id as usize - 1];
        let mut body = json!({"subject": subject, "version": number, "id": id, "schema": s.schema});
        if let Some(t) = &s.schema_type {
            body["schemaType"] = json!(t);
        }
        if !s.references.is_empty() {
            body["references"] = json!(s.references);
        }
        (200, body)
    }

    fn register(&self, subject: &str, body: &[u8]) -> Answer {
        let request: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return error(422, 422, format!("Unrecognized request body: {e}")),
        };
        let Some(schema) = request.get("schema").and_then(Value::as_str) else {
            return error(422, 42201, "Invalid schema: no \"schema\" string".into());
        };
        let schema_type = match request.get("schemaType").and_then(Value::as_str) {
            None | Some("AVRO") => None,
            Some(t @ ("PROTOBUF" | "JSON")) => Some(t.to_string()),
            Some(other) => {
                return error(422, 42201, format!("Invalid schema type {other}"));
            }
        };
        if schema_type.is_none() && serde_json::from_str::<Value>(schema).is_err() {
            return error(422, 42201, "Invalid schema: not Avro JSON".into());
        }
        let references = request
            .get("references")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let id = self.state().register(
            subject,
            Stored {
                schema: schema.to_string(),
                schema_type,
                references,
            },
        );
        (200, json!({ "id": id }))
    }
}

fn subject_not_found(subject: &str) -> Answer {
    error(404, 40401, format!("Subject '{subject}' not found."))
}

/// An in-memory Schema Registry serving HTTP on 127.0.0.1 from a thread of
/// this process, until dropped.
///
/// ```
/// use tributary_testkit::schema_registry::SchemaRegistryServer;
///
/// let registry = SchemaRegistryServer::start();
/// let id = registry.register("orders-value", r#"{"type": "string"}"#, None);
/// assert_eq!(id, 1);
/// assert!(registry.url().starts_with("http://127.0.0.1:"));
/// ```
pub struct SchemaRegistryServer {
    addr: SocketAddr,
    https: bool,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for SchemaRegistryServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistryServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl SchemaRegistryServer {
    /// Starts a registry without authentication on a free port.
    pub fn start() -> Self {
        Self::bind("127.0.0.1:0", None).expect("binding the schema registry on 127.0.0.1")
    }

    /// Starts a registry that requires HTTP basic auth with these credentials.
    pub fn start_with_auth(user: &str, password: &str) -> Self {
        Self::bind("127.0.0.1:0", Some((user, password)))
            .expect("binding the schema registry on 127.0.0.1")
    }

    /// Starts a registry serving HTTPS (certificate for `127.0.0.1`, signed
    /// by [`TEST_CA_PEM`]) without authentication on a free port.
    pub fn start_tls() -> Self {
        Self::bind_with("127.0.0.1:0", None, true)
            .expect("binding the HTTPS schema registry on 127.0.0.1")
    }

    /// Starts a registry on `addr` (`127.0.0.1:0` for a free port).
    pub fn bind(addr: &str, auth: Option<(&str, &str)>) -> io::Result<Self> {
        Self::bind_with(addr, auth, false)
    }

    /// [`bind`](Self::bind), over HTTPS when `https`.
    pub fn bind_with(addr: &str, auth: Option<(&str, &str)>, https: bool) -> io::Result<Self> {
        let tls = if https { Some(tls_config()?) } else { None };
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            auth: auth.map(|(u, p)| basic_auth(u, p)),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (shared, stop) = (shared.clone(), stop.clone());
            std::thread::Builder::new()
                .name("schema-registry".into())
                .spawn(move || {
                    for stream in listener.incoming() {
                        if stop.load(Ordering::SeqCst) {
                            break;
                        }
                        let Ok(stream) = stream else { continue };
                        let shared = shared.clone();
                        let tls = tls.clone();
                        std::thread::spawn(move || {
                            // A client that hangs up early (or fails the TLS
                            // handshake) is its own business.
                            let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                            match tls {
                                None => {
                                    let _ = serve(&shared, stream);
                                }
                                Some(config) => {
                                    let Ok(conn) = rustls::ServerConnection::new(config) else {
                                        return;
                                    };
                                    let mut tls = rustls::StreamOwned::new(conn, stream);
                                    if serve(&shared, &mut tls).is_ok() {
                                        tls.conn.send_close_notify();
                                        let _ = tls.flush();
                                    }
                                }
                            }
                        });
                    }
                })?
        };
        Ok(Self {
            addr,
            https,
            shared,
            stop,
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`, or `https://` in HTTPS mode.
    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Registers `schema` under `subject` directly (no HTTP) and returns its
    /// id. `schema_type` is `None` (Avro), `Some("PROTOBUF")` or `Some("JSON")`.
    pub fn register(&self, subject: &str, schema: &str, schema_type: Option<&str>) -> u32 {
        self.register_with_references(subject, schema, schema_type, Vec::new())
    }

    /// Like [`register`](Self::register), with `references` entries
    /// (`{"name", "subject", "version"}`).
    pub fn register_with_references(
        &self,
        subject: &str,
        schema: &str,
        schema_type: Option<&str>,
        references: Vec<Value>,
    ) -> u32 {
        self.shared.state().register(
            subject,
            Stored {
                schema: schema.to_string(),
                schema_type: schema_type.filter(|t| *t != "AVRO").map(str::to_string),
                references,
            },
        )
    }

    /// How many `METHOD path` requests were served (e.g. `GET /schemas/ids/1`),
    /// counting refused ones.
    pub fn requests(&self, method_and_path: &str) -> u64 {
        self.shared
            .state()
            .requests
            .get(method_and_path)
            .copied()
            .unwrap_or(0)
    }
}

impl Drop for SchemaRegistryServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves one request on `stream` (the caller closes it).
fn serve(shared: &Shared, mut stream: impl io::Read + io::Write) -> io::Result<()> {
    let mut reader = BufReader::new(&mut stream);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(());
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        drop(reader);
        return respond(
            stream,
            400,
            &json!({"error_code": 400, "message": "Bad request line"}),
        );
    };
    let (method, target) = (method.to_string(), target.to_string());
    let mut content_length = 0usize;
    let mut auth = None;
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 {
            break;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        if let Some((name, value)) = header.split_once(':') {
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                content_length = value.parse().unwrap_or(0);
            } else if name.eq_ignore_ascii_case("authorization") {
                auth = Some(value.to_string());
            }
        }
    }
    if content_length > MAX_BODY {
        drop(reader);
        return respond(
            stream,
            413,
            &json!({"error_code": 413, "message": "Request body too large"}),
        );
    }
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body)?;
    drop(reader);
    let (status, answer) = shared.handle(&method, &target, auth.as_deref(), &body);
    respond(stream, status, &answer)
}

fn respond(mut stream: impl io::Write, status: u16, body: &Value) -> io::Result<()> {
    let body = body.to_string();
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        _ => "Error",
    };
    write!(
        stream,
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    stream.flush()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The `Authorization` header value for HTTP basic auth.
pub fn basic_auth(user: &str, password: &str) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut out = String::from("Basic ");
    for chunk in input.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * k) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Sends one HTTP/1.1 request to `addr` and returns the status and body.
/// A minimal client for tests (registering schemas in a registry process),
/// independent of the registry client under test.
pub fn http_request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&Value>,
    auth: Option<(&str, &str)>,
) -> io::Result<(u16, Value)> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.map(Value::to_string).unwrap_or_default();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: {CONTENT_TYPE}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some((u, p)) = auth {
        request.push_str(&format!("Authorization: {}\r\n", basic_auth(u, p)));
    }
    request.push_str("\r\n");
    request.push_str(&body);
    stream.write_all(request.as_bytes())?;
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer)?;
    let text = String::from_utf8_lossy(&answer);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("malformed HTTP answer {text:?}")))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| io::Error::other(format!("malformed status line in {head:?}")))?;
    let body = serde_json::from_str(body)
        .map_err(|e| io::Error::other(format!("answer body is not JSON ({e}): {body:?}")))?;
    Ok((status, body))
}

/// How long the child may take to print its `URL=` line.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A `tributary-schema-registry` child process (this crate's binary), killed
/// when dropped and when the test process dies.
#[derive(Debug)]
pub struct SchemaRegistryProcess {
    child: Child,
    /// Held open: the child exits when it closes.
    _stdin: Option<ChildStdin>,
    addr: String,
    auth: Option<(String, String)>,
}

impl SchemaRegistryProcess {
    /// Starts the binary, without auth or with `(user, password)`.
    ///
    /// Panics if the binary is not built (see [`crate::bin_path`]) or does
    /// not print its address within 30 s.
    pub fn start(auth: Option<(&str, &str)>) -> Self {
        let binary = crate::bin_path("tributary-schema-registry");
        let mut command = Command::new(&binary);
        command
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        if let Some((u, p)) = auth {
            command
                .arg("--username")
                .arg(u)
                .env("SCHEMA_REGISTRY_PASSWORD", p);
        }
        let mut child = spawn_tied(command)
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("stdout is piped");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = rx
            .recv_timeout(STARTUP_TIMEOUT)
            .unwrap_or_else(|_| panic!("{} printed no URL= line", binary.display()));
        let addr = line
            .trim()
            .strip_prefix("URL=http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_string();
        Self {
            child,
            _stdin: stdin,
            addr,
            auth: auth.map(|(u, p)| (u.to_string(), p.to_string())),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Registers a schema over HTTP (`POST /subjects/{subject}/versions`) and
    /// returns its id. `schema_type` is `None` for Avro.
    pub fn register(&self, subject: &str, schema: &str, schema_type: Option<&str>) -> u32 {
        let mut body = json!({ "schema": schema });
        if let Some(t) = schema_type {
            body["schemaType"] = json!(t);
        }
        let auth = self.auth.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        let path = format!("/subjects/{subject}/versions");
        let (status, answer) = http_request(&self.addr, "POST", &path, Some(&body), auth)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        assert_eq!(status, 200, "POST {path}: {answer}");
        answer["id"]
            .as_u64()
            .and_then(|id| u32::try_from(id).ok())
            .unwrap_or_else(|| panic!("POST {path}: no id in {answer}"))
    }
}

impl Drop for SchemaRegistryProcess {
    fn drop(&mut self) {
        kill_group(&mut self.child);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_auth_matches_rfc_7617_example() {
        assert_eq!(
            basic_auth("Aladdin", "open sesame"),
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="
        );
        assert_eq!(basic_auth("a", "b"), "Basic YTpi");
        assert_eq!(basic_auth("ab", "c"), "Basic YWI6Yw==");
    }

    #[test]
    fn serves_documented_endpoints_and_errors() {
        let server = SchemaRegistryServer::start();
        let addr = server.addr().to_string();
        let get = |path: &str| http_request(&addr, "GET", path, None, None).unwrap();
        let body = json!({"schema": "{\"type\":\"string\"}"});
        let (status, answer) = http_request(
            &addr,
            "POST",
            "/subjects/a-value/versions",
            Some(&body),
            None,
        )
        .unwrap();
        assert_eq!((status, answer), (200, json!({"id": 1})));
        let proto = json!({"schema": "syntax = \"proto3\";", "schemaType": "PROTOBUF",
            "references": [{"name": "x.proto", "subject": "x", "version": 1}]});
        let (_, answer) = http_request(
            &addr,
            "POST",
            "/subjects/a-value/versions",
            Some(&proto),
            None,
        )
        .unwrap();
        assert_eq!(answer, json!({"id": 2}));
        // Same schema again: same id, no new version.
        let (_, answer) = http_request(
            &addr,
            "POST",
            "/subjects/b-value/versions",
            Some(&body),
            None,
        )
        .unwrap();
        assert_eq!(answer, json!({"id": 1}));

        assert_eq!(
            get("/schemas/ids/1"),
            (200, json!({"schema": "{\"type\":\"string\"}"}))
        );
        let (_, p) = get("/schemas/ids/2");
        assert_eq!(p["schemaType"], "PROTOBUF");
        assert_eq!(p["references"][0]["subject"], "x");
        assert_eq!(
            get("/schemas/ids/9999"),
            (
                404,
                json!({"error_code": 40403, "message": "Schema 9999 not found"})
            )
        );
        assert_eq!(get("/subjects/a-value/versions"), (200, json!([1, 2])));
        let (status, latest) = get("/subjects/a-value/versions/latest");
        assert_eq!(
            (status, latest["version"].clone(), latest["id"].clone()),
            (200, json!(2), json!(2))
        );
        let (_, v1) = get("/subjects/a-value/versions/1");
        assert_eq!(
            v1,
            json!({"subject": "a-value", "version": 1, "id": 1, "schema": "{\"type\":\"string\"}"})
        );
        assert_eq!(get("/subjects/nope/versions/1").1["error_code"], 40401);
        assert_eq!(get("/subjects/a-value/versions/3").1["error_code"], 40402);
        assert_eq!(get("/subjects/a-value/versions/x").0, 422);
        assert_eq!(get("/subjects"), (200, json!(["a-value", "b-value"])));
        assert_eq!(get("/nope").0, 404);
        assert_eq!(server.requests("GET /schemas/ids/9999"), 1);
    }

    #[test]
    fn checks_basic_auth() {
        let server = SchemaRegistryServer::start_with_auth("reader", "s3cret");
        let id = server.register("s", r#"{"type":"int"}"#, None);
        let addr = server.addr().to_string();
        let path = format!("/schemas/ids/{id}");
        let (status, body) = http_request(&addr, "GET", &path, None, None).unwrap();
        assert_eq!((status, body["error_code"].clone()), (401, json!(401)));
        let (status, _) =
            http_request(&addr, "GET", &path, None, Some(("reader", "wrong"))).unwrap();
        assert_eq!(status, 401);
        let (status, body) =
            http_request(&addr, "GET", &path, None, Some(("reader", "s3cret"))).unwrap();
        assert_eq!(
            (status, body),
            (200, json!({"schema": "{\"type\":\"int\"}"}))
        );
    }

    #[test]
    fn decodes_percent_encoded_subjects() {
        assert_eq!(percent_decode("a%2Fb%20c"), "a/b c");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
