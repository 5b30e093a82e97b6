//! `tributary-schema-registry`: the testkit's in-memory Confluent Schema
//! Registry as a standalone process, for end-to-end tests that run the
//! `tributary` binary beside it. See `--help`.

use std::io::Read as _;
use std::process::ExitCode;

use clap::Parser;
use tributary_testkit::schema_registry::SchemaRegistryServer;

const LONG_ABOUT: &str = "\
Serves an in-memory Confluent Schema Registry on 127.0.0.1 (the documented REST endpoints a \
serializer and deserializer use: GET /schemas/ids/{id}, GET /subjects, \
GET /subjects/{s}/versions[/{v}|/latest], POST /subjects/{s}/versions, with Confluent's error \
bodies). Prints exactly one line `URL=http://127.0.0.1:<port>` to stdout once it accepts \
connections, then serves until SIGTERM, SIGINT or (with --exit-on-stdin-eof) the end of stdin. \
Nothing is persisted. For tests only.";

#[derive(Debug, Parser)]
#[command(name = "tributary-schema-registry", version, about = "In-memory Confluent Schema Registry for tests", long_about = LONG_ABOUT)]
struct Args {
    /// Port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,

    /// Require HTTP basic auth with this user name; the password is read
    /// from the environment variable SCHEMA_REGISTRY_PASSWORD.
    #[arg(long, value_name = "USER")]
    username: Option<String>,

    /// Exit (0) when stdin reaches end of file, e.g. when the parent process dies.
    #[arg(long)]
    exit_on_stdin_eof: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let password = std::env::var("SCHEMA_REGISTRY_PASSWORD").ok();
    let auth = match (&args.username, &password) {
        (Some(u), Some(p)) => Some((u.as_str(), p.as_str())),
        (None, _) => None,
        (Some(_), None) => {
            eprintln!("--username needs the password in SCHEMA_REGISTRY_PASSWORD");
            return ExitCode::from(2);
        }
    };
    let server = match SchemaRegistryServer::bind(&format!("127.0.0.1:{}", args.port), auth) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("cannot listen on 127.0.0.1:{}: {e}", args.port);
            return ExitCode::FAILURE;
        }
    };
    println!("URL={}", server.url());
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the signal handler: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let stdin_eof = async {
            if args.exit_on_stdin_eof {
                let _ = tokio::task::spawn_blocking(|| {
                    let mut sink = Vec::new();
                    let _ = std::io::stdin().read_to_end(&mut sink);
                })
                .await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("cannot watch SIGTERM: {e}");
                    return;
                }
            };
        tokio::select! {
            _ = stdin_eof => {}
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    });
    drop(server);
    // The stdin reader may still block on a blocking thread: do not wait for it.
    runtime.shutdown_background();
    ExitCode::SUCCESS
}
