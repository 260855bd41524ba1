//! `dvr ctl --url …`: the operator's commands over a running DVR's API,
//! printed as tables (or the API's JSON with `--json`).

use anyhow::{bail, Context};
use reqwest::Method;
use serde_json::{json, Value};

use crate::ctl::{CtlArgs, CtlCommand};

/// A stream name as one path segment (`/` as `%2F`).
fn segment(name: &str) -> String {
    name.replace('/', "%2F")
}

async fn call(
    args: &CtlArgs,
    base: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Value> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::Client::new();
    let url = format!("{}{path}", base.trim_end_matches('/'));
    let mut req = client.request(method.clone(), &url);
    if let Some(token) = &args.token {
        req = req.bearer_auth(token);
    }
    if let Some(body) = body {
        req = req
            .header("content-type", "application/json")
            .body(body.to_string());
    }
    let res = req
        .send()
        .await
        .with_context(|| format!("{method} {url}"))?;
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if !status.is_success() {
        let why = value["error"]
            .as_str()
            .map_or_else(|| value.to_string(), str::to_owned);
        bail!("{method} {path}: {status}: {why}");
    }
    Ok(value)
}

/// Runs one command against the API at `base`.
pub async fn run(base: &str, args: &CtlArgs) -> anyhow::Result<()> {
    let out = match &args.command {
        CtlCommand::Streams => call(args, base, Method::GET, "/api/v1/streams", None).await?,
        CtlCommand::Status { stream: Some(s) } => {
            let one = call(
                args,
                base,
                Method::GET,
                &format!("/api/v1/streams/{}/status", segment(s)),
                None,
            )
            .await?;
            json!({ "streams": [one] })
        }
        CtlCommand::Status { stream: None } => {
            call(args, base, Method::GET, "/api/v1/status", None).await?
        }
        CtlCommand::Sessions => call(args, base, Method::GET, "/api/v1/sessions", None).await?,
        CtlCommand::Locks(t) => {
            call(
                args,
                base,
                Method::GET,
                &format!("/api/v1/streams/{}/dvr/locks", segment(t.stream.as_str())),
                None,
            )
            .await?
        }
        CtlCommand::Lock(a) => {
            let body = json!({ "from": a.from, "duration": a.duration / 1000 });
            call(
                args,
                base,
                Method::POST,
                &format!(
                    "/api/v1/streams/{}/dvr/locks",
                    segment(a.target.stream.as_str())
                ),
                Some(body),
            )
            .await?
        }
        CtlCommand::Unlock(a) => {
            let path = format!(
                "/api/v1/streams/{}/dvr/locks?from={}&duration={}",
                segment(a.target.stream.as_str()),
                a.from,
                a.duration / 1000
            );
            call(args, base, Method::DELETE, &path, None).await?
        }
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    match &args.command {
        CtlCommand::Streams => print_streams(&out),
        CtlCommand::Status { .. } => print_status(&out),
        CtlCommand::Sessions => print_sessions(&out),
        CtlCommand::Locks(_) | CtlCommand::Lock(_) | CtlCommand::Unlock(_) => print_locks(&out),
    }
    Ok(())
}

/// Prints rows under a header, each column as wide as its widest cell.
fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|h| (*h).to_owned()).collect());
    for row in rows {
        line(row.clone());
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_streams(v: &Value) {
    let rows: Vec<Vec<String>> = v["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let c = &s["config"];
            let dvr = match &c["dvr"] {
                Value::Null => "-".to_owned(),
                Value::String(line) => line.clone(),
                d => format!(
                    "{} {}{}",
                    text(&d["root"]),
                    text(&d["depth"]),
                    if d["enabled"] == json!(false) {
                        " (disabled)"
                    } else {
                        ""
                    }
                ),
            };
            let inputs: Vec<String> = c["inputs"]
                .as_array()
                .into_iter()
                .flatten()
                .map(text)
                .collect();
            vec![
                text(&s["name"]),
                text(&s["revision"]),
                dvr,
                inputs.join(" "),
            ]
        })
        .collect();
    table(&["STREAM", "REV", "DVR", "INPUTS"], &rows);
}

fn print_status(v: &Value) {
    let rows: Vec<Vec<String>> = v["streams"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let yes = |k: &str| if s[k] == json!(true) { "yes" } else { "no" }.to_owned();
            let kbps = s["bitrate_bps"]
                .as_u64()
                .map_or("-".into(), |b| format!("{}", b / 1000));
            let last = s["last_segment"]["seq"]
                .as_u64()
                .map_or("-".into(), |q| q.to_string());
            let recorded = match (
                s["recorded"]["from"].as_i64(),
                s["recorded"]["duration"].as_i64(),
            ) {
                (Some(f), Some(d)) => format!("{f}+{d}s"),
                _ => "-".into(),
            };
            let gaps = s["gaps"].as_array().map_or(0, Vec::len).to_string();
            vec![
                text(&s["name"]),
                yes("running"),
                yes("dvr_enabled"),
                yes("recording"),
                yes("source_alive"),
                kbps,
                last,
                recorded,
                gaps,
            ]
        })
        .collect();
    table(
        &[
            "STREAM",
            "RUNNING",
            "DVR",
            "RECORDING",
            "SOURCE",
            "KBIT/S",
            "LAST SEQ",
            "RECORDED",
            "GAPS",
        ],
        &rows,
    );
}

fn print_sessions(v: &Value) {
    let rows: Vec<Vec<String>> = v["sessions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            [
                "id",
                "stream",
                "ip",
                "user_id",
                "protocol",
                "opened_at",
                "closed_at",
                "bytes",
            ]
            .iter()
            .map(|k| text(&s[*k]))
            .collect()
        })
        .collect();
    table(
        &[
            "ID", "STREAM", "IP", "USER", "PROTO", "OPENED", "CLOSED", "BYTES",
        ],
        &rows,
    );
}

fn print_locks(v: &Value) {
    println!("stream {}", text(&v["stream"]));
    let rows: Vec<Vec<String>> = v["locks"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|l| vec![text(&l["from"]), text(&l["duration"])])
        .collect();
    table(&["FROM", "DURATION_S"], &rows);
}
