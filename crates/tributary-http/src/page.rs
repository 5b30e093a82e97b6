//! The read-only status page at `/`: plain HTML rendered on the server,
//! refreshed by the browser every five seconds; no scripts, nothing fetched
//! from elsewhere.

use std::fmt::Write as _;
use std::sync::Arc;

use axum::extract::State;
use axum::response::Html;

use crate::{rfc3339, Registry};

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn opt<T: std::fmt::Display>(v: Option<T>) -> String {
    v.map_or_else(|| "–".to_string(), |v| v.to_string())
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2em;color:#222}\
table{border-collapse:collapse;margin:0.5em 0 1.5em}\
td,th{border:1px solid #ccc;padding:0.25em 0.6em;text-align:left}\
th{background:#f3f3f3}.OK{color:#176117}.WARN{color:#8a6d00}\
.STALL,.STOP,.failed{color:#b00020;font-weight:bold}";

pub(crate) async fn index(State(reg): State<Arc<Registry>>) -> Html<String> {
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"5\">\
         <title>Tributary worker {id}</title><style>{STYLE}</style></head><body>\
         <h1>Tributary worker <span id=\"worker\">{id}</span></h1>",
        id = esc(&reg.worker_id)
    );
    let ready = match reg.readiness() {
        Ok(()) => "ready".to_string(),
        Err(why) => format!("not ready: {}", esc(&why)),
    };
    let _ = write!(h, "<p id=\"readiness\">Readiness: {ready}</p>");
    let statuses = reg.statuses();
    if statuses.is_empty() {
        h.push_str("<p>No pipeline has started yet.</p>");
    }
    for s in &statuses {
        let t = &s.totals;
        let _ = write!(
            h,
            "<section class=\"pipeline\"><h2>Pipeline {name}: <span class=\"{state}\">{state}</span></h2>\
             <p>Consumed {c} records; landed {l} rows in {f} files ({b} bytes); \
             dead-lettered {d}; skipped {sk}; buffered {buf} bytes.</p>",
            name = esc(&s.name),
            state = s.state.as_str(),
            c = t.consumed,
            l = t.landed_rows,
            f = t.files,
            b = t.bytes,
            d = t.dead_lettered,
            sk = t.skipped,
            buf = s.buffered_bytes,
        );
        if let Some(e) = &s.error {
            let _ = write!(h, "<p class=\"failed\">Error: {}</p>", esc(e));
        }
        h.push_str(
            "<h3>Partitions</h3><table><tr><th>Partition</th><th>Landed offset</th>\
             <th>Committed offset</th><th>High watermark</th><th>Lag</th><th>Lag status</th>\
             <th>Last landing</th><th>Last error</th></tr>",
        );
        let mut any = false;
        for (tp, p) in s.partitions.iter().filter(|(_, p)| p.assigned) {
            any = true;
            let st = p.lag_status.as_str();
            let _ = write!(
                h,
                "<tr><td>{tp}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
                 <td class=\"{st}\">{st}</td><td>{}</td><td>{}</td></tr>",
                opt(p.landed_offset),
                opt(p.committed_offset),
                opt(p.high_watermark),
                opt(p.lag),
                opt(p.last_landing.map(rfc3339)),
                p.last_error.as_deref().map_or("".into(), esc),
                tp = esc(&tp.to_string()),
            );
        }
        if !any {
            h.push_str("<tr><td colspan=\"8\">No partition assigned to this worker.</td></tr>");
        }
        h.push_str(
            "</table><h3>Recent files</h3><table><tr><th>Landed at</th><th>Partition</th>\
             <th>File</th><th>Rows</th><th>Bytes</th></tr>",
        );
        for f in s.recent_files.iter().rev() {
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                rfc3339(f.landed_at),
                esc(&f.partition.to_string()),
                esc(&f.path),
                f.rows,
                f.bytes
            );
        }
        if s.recent_files.is_empty() {
            h.push_str("<tr><td colspan=\"5\">No file landed yet.</td></tr>");
        }
        h.push_str("</table></section>");
    }
    h.push_str(
        "<p>JSON: <a href=\"/pipelines\">/pipelines</a> · \
         <a href=\"/metrics\">/metrics</a> · <a href=\"/readyz\">/readyz</a></p></body></html>",
    );
    Html(h)
}
