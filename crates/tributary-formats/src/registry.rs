//! A client for a Confluent Schema Registry: the documented REST endpoints
//! a deserializer needs, schemas cached by id.
//!
//! - `GET /schemas/ids/{id}`: the schema a Confluent-framed record names
//!   ([`SchemaRegistry::schema_by_id`], cached: a registered schema never
//!   changes under its id).
//! - `GET /subjects/{subject}/versions/{version}`: one version of a subject,
//!   used to resolve a schema's `references`
//!   ([`SchemaRegistry::schema_by_subject_version`], cached for numbered
//!   versions; [`SchemaRegistry::references_of`] walks them transitively).
//!
//! Basic auth (`username` + `password`), `https://` with the system roots
//! plus an optional private CA (`ca_file`), and one timeout per request.
//! The registry's error bodies (`{"error_code":40403,"message":"Schema not
//! found"}`) are surfaced in [`RegistryError::Status`] next to the id or
//! subject asked for.
//!
//! The client is synchronous, because converters are. A lookup that misses
//! the cache runs its request on a short-lived thread of its own, inside
//! [`tokio::task::block_in_place`] when called from a multi-threaded tokio
//! runtime, so it is safe to call from async code; the cache makes misses
//! rare (once per schema id per process).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use tributary_config::Secret;
use tributary_core::ErrorClass;

/// The `schema_registry` table of a converter (see the README).
pub type RegistryConfig = tributary_config::SchemaRegistryConfig;

/// What kind of schema a registered schema is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SchemaType {
    /// Apache Avro (the registry omits `schemaType` for these).
    Avro,
    /// Protocol Buffers (`.proto` text).
    Protobuf,
    /// JSON Schema.
    Json,
}

impl SchemaType {
    fn parse(s: Option<&str>) -> Option<Self> {
        match s {
            None | Some("AVRO") => Some(Self::Avro),
            Some("PROTOBUF") => Some(Self::Protobuf),
            Some("JSON") => Some(Self::Json),
            Some(_) => None,
        }
    }
}

impl std::fmt::Display for SchemaType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Avro => "AVRO",
            Self::Protobuf => "PROTOBUF",
            Self::Json => "JSON",
        })
    }
}

/// A reference from one schema to a schema registered under another subject
/// (an Avro named type defined elsewhere, a `.proto` import).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Deserialize, serde::Serialize)]
pub struct SchemaReference {
    /// The name the referring schema uses: an Avro full name, a `.proto` file name.
    pub name: String,
    /// Subject the referenced schema is registered under.
    pub subject: String,
    /// Version of that subject.
    pub version: i32,
}

/// A schema as the registry returned it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// Its global id (what Confluent-framed records carry).
    pub id: u32,
    /// Avro, Protobuf or JSON Schema.
    pub schema_type: SchemaType,
    /// The schema text (Avro JSON, `.proto` source, JSON Schema).
    pub schema: String,
    /// Schemas this one refers to, as registered.
    pub references: Vec<SchemaReference>,
}

/// A registry lookup failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// A `schema_registry` setting cannot be used.
    #[error("schema_registry.{key}: {message}")]
    Config {
        /// The key inside the `schema_registry` table.
        key: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The request did not get an answer (connection refused, TLS, timeout).
    #[error("{what}: schema registry request GET {path} failed: {source}")]
    Transport {
        /// What was asked for, e.g. `schema id 7`.
        what: String,
        /// The request path.
        path: String,
        /// Underlying error (its chain names the cause).
        #[source]
        source: reqwest::Error,
    },
    /// The registry answered with an error status; `error_code` and
    /// `message` come from its documented error body when it sent one.
    #[error("{what} {}", status_text(*.status, *.error_code, .message))]
    Status {
        /// What was asked for, e.g. `schema id 9999` or `subject "orders-value" version 3`.
        what: String,
        /// HTTP status.
        status: u16,
        /// Confluent error code (40403 schema not found, 40401 subject not
        /// found, 40402 version not found, 40101 unauthorized, ...).
        error_code: Option<i64>,
        /// The registry's message (or the start of a body that was not JSON).
        message: String,
    },
    /// The registry answered 200 with a body that is not what the API documents.
    #[error("{what}: schema registry answer is not understood: {message}")]
    Body {
        /// What was asked for.
        what: String,
        /// What is wrong with the body.
        message: String,
    },
    /// A schema's references could not be resolved (cycle, too deep).
    #[error("{what}: {message}")]
    References {
        /// The referring schema.
        what: String,
        /// What is wrong.
        message: String,
    },
}

fn status_text(status: u16, code: Option<i64>, message: &str) -> String {
    let code = code.map_or(String::new(), |c| format!("{c}: "));
    match status {
        404 => format!("not found in the schema registry ({code}{message})"),
        401 | 403 => format!(
            "cannot be read: the schema registry refused the credentials (HTTP {status}, {code}{message})"
        ),
        _ => format!("cannot be read: the schema registry answered HTTP {status} ({code}{message})"),
    }
}

impl RegistryError {
    /// Whether the registry said the schema, subject or version does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::Status { status: 404, .. })
    }

    /// Retry hint: transport failures, 5xx and 429 may pass; the rest will not.
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Transport { .. } => ErrorClass::Retryable,
            Self::Status { status, .. } if *status >= 500 || *status == 429 => {
                ErrorClass::Retryable
            }
            _ => ErrorClass::Permanent,
        }
    }
}

/// How deep reference chains may go before they are taken for a cycle.
const MAX_REFERENCE_DEPTH: usize = 32;

/// A Schema Registry client with a cache of schemas by id.
pub struct SchemaRegistry {
    base: String,
    client: reqwest::blocking::Client,
    auth: Option<(String, Secret)>,
    by_id: Mutex<HashMap<u32, Arc<RegisteredSchema>>>,
    by_version: Mutex<HashMap<(String, i32), Arc<RegisteredSchema>>>,
}

impl std::fmt::Debug for SchemaRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SchemaRegistry")
            .field("url", &self.base)
            .field("auth", &self.auth.as_ref().map(|(u, _)| u))
            .finish_non_exhaustive()
    }
}

/// Wire shape of `GET /schemas/ids/{id}` and `GET /subjects/{s}/versions/{v}`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SchemaBody {
    schema: String,
    #[serde(default)]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<SchemaReference>,
    /// Present in subject-version answers only.
    #[serde(default)]
    id: Option<u32>,
}

/// Wire shape of the documented error body.
#[derive(Deserialize)]
struct ErrorBody {
    error_code: Option<i64>,
    message: Option<String>,
}

impl SchemaRegistry {
    /// Builds a client. No request is made; a bad URL or an unreadable or
    /// invalid `ca_file` is an error here.
    pub fn new(cfg: &RegistryConfig) -> Result<Self, RegistryError> {
        let url = cfg.url.trim().trim_end_matches('/').to_string();
        let lower = url.to_ascii_lowercase();
        let https = lower.starts_with("https://");
        if !https && !lower.starts_with("http://") {
            return Err(RegistryError::Config {
                key: "url",
                message: format!("{:?} is not an http:// or https:// URL", cfg.url),
            });
        }
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(cfg.timeout.0)
            .connect_timeout(cfg.timeout.0)
            .user_agent(concat!("tributary/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &cfg.ca_file {
            if !https {
                return Err(RegistryError::Config {
                    key: "ca_file",
                    message: "a CA file only applies to an https:// URL".into(),
                });
            }
            let pem = std::fs::read(path).map_err(|e| RegistryError::Config {
                key: "ca_file",
                message: format!("cannot read {}: {e}", path.display()),
            })?;
            let certs =
                reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| RegistryError::Config {
                    key: "ca_file",
                    message: format!("{} is not a PEM certificate bundle: {e}", path.display()),
                })?;
            if certs.is_empty() {
                return Err(RegistryError::Config {
                    key: "ca_file",
                    message: format!("{} holds no PEM certificate", path.display()),
                });
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let auth = match (&cfg.username, &cfg.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            (Some(_), None) => {
                return Err(RegistryError::Config {
                    key: "password",
                    message: "`username` is set, so `password` is needed too".into(),
                })
            }
            (None, Some(_)) => {
                return Err(RegistryError::Config {
                    key: "username",
                    message: "`password` is set, so `username` is needed too".into(),
                })
            }
        };
        // The blocking client runs its own runtime thread; building it must
        // happen outside any tokio context.
        let client = off_runtime(move || builder.build()).map_err(|e| RegistryError::Config {
            key: "url",
            message: format!("cannot build the HTTP client: {e}"),
        })?;
        Ok(Self {
            base: url,
            client,
            auth,
            by_id: Mutex::new(HashMap::new()),
            by_version: Mutex::new(HashMap::new()),
        })
    }

    /// The registry's base URL (no credentials are ever part of it).
    pub fn url(&self) -> &str {
        &self.base
    }

    /// The schema registered under `id` (`GET /schemas/ids/{id}`), from the
    /// cache after the first lookup.
    pub fn schema_by_id(&self, id: u32) -> Result<Arc<RegisteredSchema>, RegistryError> {
        if let Some(s) = lock(&self.by_id).get(&id) {
            return Ok(s.clone());
        }
        let what = format!("schema id {id}");
        let body = self.get(&what, &format!("/schemas/ids/{id}"))?;
        let schema = Arc::new(parse_schema_body(&what, &body, Some(id))?);
        tracing::debug!(id, schema_type = %schema.schema_type, url = %self.base, "fetched schema");
        lock(&self.by_id).insert(id, schema.clone());
        Ok(schema)
    }

    /// Version `version` of `subject` (`GET /subjects/{subject}/versions/{version}`),
    /// cached.
    pub fn schema_by_subject_version(
        &self,
        subject: &str,
        version: i32,
    ) -> Result<Arc<RegisteredSchema>, RegistryError> {
        let key = (subject.to_string(), version);
        if let Some(s) = lock(&self.by_version).get(&key) {
            return Ok(s.clone());
        }
        let what = format!("subject {subject:?} version {version}");
        let path = format!("/subjects/{}/versions/{version}", encode_segment(subject));
        let body = self.get(&what, &path)?;
        let schema = Arc::new(parse_schema_body(&what, &body, None)?);
        lock(&self.by_version).insert(key, schema.clone());
        lock(&self.by_id)
            .entry(schema.id)
            .or_insert_with(|| schema.clone());
        Ok(schema)
    }

    /// The latest version of `subject` (`GET /subjects/{subject}/versions/latest`);
    /// never cached, since it changes when a version is registered.
    pub fn latest_schema(&self, subject: &str) -> Result<Arc<RegisteredSchema>, RegistryError> {
        let what = format!("subject {subject:?} version latest");
        let path = format!("/subjects/{}/versions/latest", encode_segment(subject));
        let body = self.get(&what, &path)?;
        Ok(Arc::new(parse_schema_body(&what, &body, None)?))
    }

    /// Every schema `schema` refers to, transitively, each once, in an order
    /// where a schema comes after the schemas it refers to. Each comes with
    /// the name it is referred to by.
    pub fn references_of(
        &self,
        schema: &RegisteredSchema,
    ) -> Result<Vec<(SchemaReference, Arc<RegisteredSchema>)>, RegistryError> {
        let mut out = Vec::new();
        let mut done = HashSet::new();
        let mut path = Vec::new();
        self.collect_references(schema, &mut path, &mut done, &mut out)?;
        Ok(out)
    }

    fn collect_references(
        &self,
        schema: &RegisteredSchema,
        path: &mut Vec<(String, i32)>,
        done: &mut HashSet<(String, i32)>,
        out: &mut Vec<(SchemaReference, Arc<RegisteredSchema>)>,
    ) -> Result<(), RegistryError> {
        for r in &schema.references {
            let key = (r.subject.clone(), r.version);
            if done.contains(&key) {
                continue;
            }
            if path.contains(&key) || path.len() >= MAX_REFERENCE_DEPTH {
                return Err(RegistryError::References {
                    what: format!("schema id {}", schema.id),
                    message: format!(
                        "reference {:?} (subject {:?} version {}) forms a cycle or nests deeper than {MAX_REFERENCE_DEPTH}",
                        r.name, r.subject, r.version
                    ),
                });
            }
            let referenced = self.schema_by_subject_version(&r.subject, r.version)?;
            path.push(key.clone());
            self.collect_references(&referenced, path, done, out)?;
            path.pop();
            done.insert(key);
            out.push((r.clone(), referenced));
        }
        Ok(())
    }

    /// One GET; the body of a 2xx answer, or the error the answer carries.
    fn get(&self, what: &str, path: &str) -> Result<Vec<u8>, RegistryError> {
        let url = format!("{}{path}", self.base);
        let mut request = self.client.get(&url).header(
            reqwest::header::ACCEPT,
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some((user, password)) = &self.auth {
            request = request.basic_auth(user, Some(password.expose()));
        }
        let transport = |source| RegistryError::Transport {
            what: what.to_string(),
            path: path.to_string(),
            source,
        };
        let (status, body) = off_runtime(move || -> Result<_, reqwest::Error> {
            let response = request.send()?;
            let status = response.status().as_u16();
            Ok((status, response.bytes()?))
        })
        .map_err(transport)?;
        if (200..300).contains(&status) {
            return Ok(body.to_vec());
        }
        let (error_code, message) = match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(e) => (e.error_code, e.message.unwrap_or_default()),
            Err(_) => (None, snippet(&body)),
        };
        tracing::debug!(status, error_code, what, url = %self.base, "schema registry error");
        Err(RegistryError::Status {
            what: what.to_string(),
            status,
            error_code,
            message,
        })
    }
}

fn parse_schema_body(
    what: &str,
    body: &[u8],
    id: Option<u32>,
) -> Result<RegisteredSchema, RegistryError> {
    let bad = |message: String| RegistryError::Body {
        what: what.to_string(),
        message,
    };
    let b: SchemaBody = serde_json::from_slice(body).map_err(|e| {
        bad(format!(
            "{e} (body starts with {:?})",
            snippet(body).chars().take(80).collect::<String>()
        ))
    })?;
    let schema_type = SchemaType::parse(b.schema_type.as_deref())
        .ok_or_else(|| bad(format!("unknown schemaType {:?}", b.schema_type)))?;
    let id = id
        .or(b.id)
        .ok_or_else(|| bad("the answer has no \"id\"".into()))?;
    Ok(RegisteredSchema {
        id,
        schema_type,
        schema: b.schema,
        references: b.references,
    })
}

/// Runs `f` on a thread outside any tokio context (the blocking HTTP client
/// must not run on a runtime thread), yielding the worker to the runtime
/// meanwhile when on a multi-threaded runtime.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    let run = || {
        std::thread::scope(|s| match s.spawn(f).join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        })
    };
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(run)
        }
        _ => run(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Percent-encodes a subject name for use as one path segment.
fn encode_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.trim().to_string()
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::time::Duration;

    use serde_json::json;
    use tributary_config::HumanDuration;
    use tributary_testkit::schema_registry::{SchemaRegistryServer, TEST_CA_PEM};

    use super::*;

    fn config(url: &str) -> RegistryConfig {
        RegistryConfig {
            url: url.to_string(),
            username: None,
            password: None,
            ca_file: None,
            timeout: HumanDuration::from_secs(10),
        }
    }

    #[test]
    fn fetches_by_id_over_http_and_caches() {
        let server = SchemaRegistryServer::start();
        let avro = server.register("orders-value", r#"{"type":"string"}"#, None);
        let proto = server.register("p-value", "syntax = \"proto3\";", Some("PROTOBUF"));
        let registry = SchemaRegistry::new(&config(&format!("{}/", server.url()))).unwrap();
        let s = registry.schema_by_id(avro).unwrap();
        assert_eq!(
            *s,
            RegisteredSchema {
                id: avro,
                schema_type: SchemaType::Avro,
                schema: r#"{"type":"string"}"#.into(),
                references: vec![],
            }
        );
        assert_eq!(registry.schema_by_id(avro).unwrap(), s);
        assert_eq!(server.requests(&format!("GET /schemas/ids/{avro}")), 1);
        assert_eq!(
            registry.schema_by_id(proto).unwrap().schema_type,
            SchemaType::Protobuf
        );
    }

    #[test]
    fn surfaces_documented_error_bodies() {
        let server = SchemaRegistryServer::start();
        server.register("orders-value", r#"{"type":"string"}"#, None);
        let registry = SchemaRegistry::new(&config(&server.url())).unwrap();
        let e = registry.schema_by_id(9999).unwrap_err();
        assert!(e.is_not_found());
        assert_eq!(e.class(), ErrorClass::Permanent);
        assert_eq!(
            e.to_string(),
            "schema id 9999 not found in the schema registry (40403: Schema 9999 not found)"
        );
        // Not found is not cached: the id may be registered later.
        let id = server.register("orders-value", r#"{"type":"long"}"#, None);
        assert_eq!(id, 2);
        let e = registry.schema_by_subject_version("nope", 1).unwrap_err();
        assert_eq!(
            e.to_string(),
            "subject \"nope\" version 1 not found in the schema registry (40401: Subject 'nope' not found.)"
        );
        let e = registry
            .schema_by_subject_version("orders-value", 7)
            .unwrap_err();
        assert!(
            matches!(
                e,
                RegistryError::Status {
                    error_code: Some(40402),
                    ..
                }
            ),
            "{e}"
        );
        let v2 = registry
            .schema_by_subject_version("orders-value", 2)
            .unwrap();
        assert_eq!((v2.id, v2.schema.as_str()), (2, r#"{"type":"long"}"#));
        assert_eq!(registry.latest_schema("orders-value").unwrap().id, 2);
    }

    #[test]
    fn sends_basic_auth_and_never_shows_the_password() {
        let server = SchemaRegistryServer::start_with_auth("reader", "hunter2");
        let id = server.register("s", r#"{"type":"int"}"#, None);
        let mut cfg = config(&server.url());
        cfg.username = Some("reader".into());
        cfg.password = Some(Secret::new("hunter2"));
        let registry = SchemaRegistry::new(&cfg).unwrap();
        assert_eq!(
            registry.schema_by_id(id).unwrap().schema,
            r#"{"type":"int"}"#
        );
        assert!(!format!("{registry:?}").contains("hunter2"));

        cfg.password = Some(Secret::new("wrong"));
        let e = SchemaRegistry::new(&cfg)
            .unwrap()
            .schema_by_id(id)
            .unwrap_err();
        assert!(
            matches!(e, RegistryError::Status { status: 401, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("refused the credentials"), "{e}");
        assert!(!e.to_string().contains("wrong"), "{e}");
        let e = SchemaRegistry::new(&config(&server.url()))
            .unwrap()
            .schema_by_id(id)
            .unwrap_err();
        assert!(e.to_string().contains("HTTP 401, 401: Unauthorized"), "{e}");
    }

    #[test]
    fn resolves_references_transitively() {
        let server = SchemaRegistryServer::start();
        server.register("money", r#"{"type":"fixed","name":"M","size":2}"#, None);
        server.register_with_references(
            "line",
            r#"{"type":"record","name":"Line","fields":[{"name":"m","type":"M"}]}"#,
            None,
            vec![json!({"name": "M", "subject": "money", "version": 1})],
        );
        let order = server.register_with_references(
            "order",
            r#"{"type":"array","items":"Line"}"#,
            None,
            vec![
                json!({"name": "Line", "subject": "line", "version": 1}),
                json!({"name": "M", "subject": "money", "version": 1}),
            ],
        );
        let registry = SchemaRegistry::new(&config(&server.url())).unwrap();
        let schema = registry.schema_by_id(order).unwrap();
        let refs = registry.references_of(&schema).unwrap();
        let names: Vec<&str> = refs.iter().map(|(r, _)| r.name.as_str()).collect();
        assert_eq!(names, ["M", "Line"]);
        assert_eq!(refs[1].1.id, 2);
        assert_eq!(server.requests("GET /subjects/money/versions/1"), 1);

        let missing = server.register_with_references(
            "broken",
            r#"{"type":"array","items":"X"}"#,
            None,
            vec![json!({"name": "X", "subject": "gone", "version": 3})],
        );
        let e = registry
            .references_of(&registry.schema_by_id(missing).unwrap())
            .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("subject \"gone\" version 3 not found"),
            "{e}"
        );
    }

    #[test]
    fn transport_failures_are_retryable_and_named() {
        // A port that was free a moment ago: connection refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let registry = SchemaRegistry::new(&config(&format!("http://127.0.0.1:{port}"))).unwrap();
        let e = registry.schema_by_id(1).unwrap_err();
        assert_eq!(e.class(), ErrorClass::Retryable);
        assert!(
            e.to_string()
                .starts_with("schema id 1: schema registry request GET /schemas/ids/1 failed"),
            "{e}"
        );

        // A server that accepts and never answers: the timeout ends the wait.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut cfg = config(&format!("http://{}", silent.local_addr().unwrap()));
        cfg.timeout = HumanDuration(Duration::from_millis(200));
        let e = SchemaRegistry::new(&cfg)
            .unwrap()
            .schema_by_id(1)
            .unwrap_err();
        assert!(matches!(e, RegistryError::Transport { .. }), "{e}");
        let chain = std::error::Error::source(&e)
            .map(|s| format!("{s:?}"))
            .unwrap_or_default();
        assert!(
            chain.contains("TimedOut") || chain.contains("timed out"),
            "{chain}"
        );
    }

    #[test]
    fn checks_tls_options() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::File::create(&ca)
            .unwrap()
            .write_all(TEST_CA_PEM.as_bytes())
            .unwrap();
        let mut cfg = config("https://registry.internal:8081");
        cfg.ca_file = Some(ca.clone());
        SchemaRegistry::new(&cfg).unwrap();

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate").unwrap();
        cfg.ca_file = Some(garbage);
        let e = SchemaRegistry::new(&cfg).unwrap_err();
        assert!(
            e.to_string().starts_with("schema_registry.ca_file: "),
            "{e}"
        );
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");

        cfg.ca_file = Some(dir.path().join("missing.pem"));
        let e = SchemaRegistry::new(&cfg).unwrap_err();
        assert!(e.to_string().contains("cannot read"), "{e}");

        let mut plain = config("http://127.0.0.1:8081");
        plain.ca_file = Some(ca);
        let e = SchemaRegistry::new(&plain).unwrap_err();
        assert!(
            e.to_string().contains("only applies to an https:// URL"),
            "{e}"
        );

        let e = SchemaRegistry::new(&config("ftp://x")).unwrap_err();
        assert!(e.to_string().starts_with("schema_registry.url: "), "{e}");
        let mut half = config("http://127.0.0.1:8081");
        half.username = Some("u".into());
        assert!(SchemaRegistry::new(&half)
            .unwrap_err()
            .to_string()
            .contains("`password` is needed"));
    }

    #[test]
    fn trusts_a_private_ca_over_https() {
        let server = SchemaRegistryServer::start_tls();
        let id = server.register("s", r#"{"type":"int"}"#, None);
        assert!(server.url().starts_with("https://127.0.0.1:"));
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, TEST_CA_PEM).unwrap();
        let mut cfg = config(&server.url());
        cfg.ca_file = Some(ca);
        let registry = SchemaRegistry::new(&cfg).unwrap();
        assert_eq!(
            registry.schema_by_id(id).unwrap().schema,
            r#"{"type":"int"}"#
        );

        // Without the CA the server's certificate is not trusted.
        let e = SchemaRegistry::new(&config(&server.url()))
            .unwrap()
            .schema_by_id(id)
            .unwrap_err();
        assert!(matches!(e, RegistryError::Transport { .. }), "{e}");
        let mut chain = String::new();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            chain.push_str(&format!("{s} / "));
            source = s.source();
        }
        assert!(chain.to_lowercase().contains("certificate"), "{chain}");
    }

    #[test]
    fn works_from_inside_tokio_runtimes() {
        let server = SchemaRegistryServer::start();
        let id = server.register("s", r#"{"type":"int"}"#, None);
        for multi in [false, true] {
            let runtime = if multi {
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
            } else {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
            }
            .unwrap();
            let url = server.url();
            let fetched = runtime.block_on(async move {
                tokio::spawn(async move {
                    let registry = SchemaRegistry::new(&config(&url)).unwrap();
                    let s = registry.schema_by_id(id).unwrap();
                    drop(registry);
                    s
                })
                .await
                .unwrap()
            });
            assert_eq!(fetched.id, id);
        }
    }

    #[test]
    fn encodes_subjects_as_one_path_segment() {
        assert_eq!(encode_segment("orders-value"), "orders-value");
        assert_eq!(encode_segment("a/b c"), "a%2Fb%20c");
    }
}
