//! `hearth jobs submit`: send an image (and an instruction) to a running Hearth as an
//! agent job; with `--wait`, follow it step by step and list what it made.
//!
//! A client of `/api/jobs` like any other (the server does the work): the upload
//! is a multipart body, progress comes from the job's event stream, and from
//! polling `GET /api/jobs/{id}` when the stream is cut (a proxy, a restart).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::client::{Client, Event, Events, ServerArgs};
use crate::output;

/// How often `--wait` polls when the event stream is not available.
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, clap::Args)]
pub struct JobsArgs {
    #[command(subcommand)]
    pub command: JobsCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum JobsCommand {
    /// Submit an image as a job: prints the job's id, or with --wait its progress
    /// and its files.
    ///
    /// The job reads the image with the vision model, plans and writes a Python
    /// script, checks it (ruff, bandit) and runs it in the sandbox. Exit 0 when it
    /// was submitted (with --wait: when it succeeded), 1 otherwise.
    Submit(SubmitArgs),
}

#[derive(Debug, clap::Args)]
pub struct SubmitArgs {
    /// The image: PNG, JPEG, WebP or GIF.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    /// What to do with it ("plot these numbers", "extract the table as CSV").
    #[arg(long, short, value_name = "TEXT", default_value = "")]
    pub prompt: String,
    #[command(flatten)]
    pub server: ServerArgs,
    /// Follow the job until it ends: each step as it ends, then its files (or why
    /// it failed). Exit 1 unless it succeeded.
    #[arg(long)]
    pub wait: bool,
}

pub fn run(args: JobsArgs) -> ExitCode {
    let JobsCommand::Submit(args) = args.command;
    let runtime = match super::runtime() {
        Ok(rt) => rt,
        Err(code) => return code,
    };
    match runtime.block_on(submit(&args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            output::err(format!("error: {e}"));
            ExitCode::FAILURE
        }
    }
}

async fn job(client: &Client, id: &str) -> Result<Value, String> {
    client.get_json(&format!("/api/jobs/{id}")).await
}

/// Submits the job; with `--wait`, follows it. `Ok(true)`: submitted (and, with
/// `--wait`, succeeded).
async fn submit(args: &SubmitArgs) -> Result<bool, String> {
    let image = std::fs::read(&args.image)
        .map_err(|e| format!("cannot read {}: {e}", args.image.display()))?;
    let client = Client::new(&args.server)?;
    let (ctype, body) = multipart(&args.image, &image, &args.prompt);
    let job = client
        .send_json(
            client
                .request(reqwest::Method::POST, "/api/jobs")
                .header(reqwest::header::CONTENT_TYPE, ctype)
                .body(body),
        )
        .await?;
    let id = job["id"]
        .as_str()
        .ok_or("the server's answer has no job id")?
        .to_owned();
    if !args.wait {
        output::line(&id);
        return Ok(true);
    }
    output::line(format!("Job {id} submitted."));
    let job = follow(&client, &id).await?;
    Ok(report(&client, &job))
}

/// A `multipart/form-data` body with the image (named as the file is, which the
/// server ignores: it goes by the bytes) and the instruction.
fn multipart(path: &Path, image: &[u8], prompt: &str) -> (String, Vec<u8>) {
    let boundary = format!("hearth-{}", uuid_like());
    let name: String = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .filter(|c| !matches!(c, '"' | '\\' | '\r' | '\n'))
        .collect();
    let mut body = Vec::with_capacity(image.len() + prompt.len() + 512);
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(image);
    body.extend_from_slice(
        format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\n")
            .as_bytes(),
    );
    body.extend_from_slice(prompt.as_bytes());
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

/// A boundary that no image will contain by chance: the time and the process id.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{nanos:x}{:x}", std::process::id())
}

/// Prints each step as it ends, until the job does; returns the job as it ended.
async fn follow(client: &Client, id: &str) -> Result<Value, String> {
    let mut shown = HashSet::new();
    match stream(client, id, &mut shown).await {
        Ok(Some(job)) => return Ok(job),
        // The stream ended early (a restart, a proxy): poll instead.
        Ok(None) => {}
        Err(e) => tracing::debug!(error = %e, "no event stream; polling the job"),
    }
    loop {
        let job = job(client, id).await?;
        show_steps(&job, &mut shown);
        if ended(&job) {
            return Ok(job);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Follows the job's event stream: the job as it ended, or `None` when the stream
/// ended first.
async fn stream(
    client: &Client,
    id: &str,
    shown: &mut HashSet<String>,
) -> Result<Option<Value>, String> {
    let resp = client
        .send(client.request(reqwest::Method::GET, &format!("/api/jobs/{id}/events")))
        .await?;
    let mut events = Events::new(resp);
    while let Some(event) = events.next().await? {
        let Event::Json(v) = event else { continue };
        match v["type"].as_str() {
            Some("job") => {
                show_steps(&v, shown);
                if ended(&v) {
                    return Ok(Some(v));
                }
            }
            Some("step") => {
                let status = v["status"].as_str().unwrap_or("");
                let step_id = v["step_id"].as_str().unwrap_or("").to_owned();
                if status != "running" && shown.insert(step_id) {
                    show_step(
                        v["kind"].as_str().unwrap_or("?"),
                        v["attempt"].as_i64().unwrap_or(1),
                        status,
                    );
                }
            }
            _ => {}
        }
    }
    Ok(None)
}

fn ended(job: &Value) -> bool {
    matches!(
        job["status"].as_str(),
        Some("succeeded" | "failed" | "cancelled")
    )
}

/// Prints the job's ended steps not printed yet, in order.
fn show_steps(job: &Value, shown: &mut HashSet<String>) {
    for s in job["steps"].as_array().into_iter().flatten() {
        let status = s["status"].as_str().unwrap_or("");
        if status == "running" {
            continue;
        }
        if shown.insert(s["id"].as_str().unwrap_or("").to_owned()) {
            show_step(
                s["kind"].as_str().unwrap_or("?"),
                s["attempt"].as_i64().unwrap_or(1),
                status,
            );
        }
    }
}

fn show_step(kind: &str, attempt: i64, status: &str) {
    let name = if attempt > 1 {
        format!("{kind} (attempt {attempt})")
    } else {
        kind.to_owned()
    };
    let what = match status {
        "succeeded" => "done",
        "interrupted" => "interrupted (runs again)",
        other => other,
    };
    output::line(format!("  {name:<20} {what}"));
}

/// The end, in plain words: the files it made, or why it failed. True when it
/// succeeded.
fn report(client: &Client, job: &Value) -> bool {
    let took = match (job["created_at"].as_i64(), job["finished_at"].as_i64()) {
        (Some(a), Some(b)) if b >= a => format!(" in {:.1} s", (b - a) as f64 / 1000.0),
        _ => String::new(),
    };
    match job["status"].as_str() {
        Some("succeeded") => {
            let files: Vec<&Value> = job["files"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|f| f["role"] == "artifact")
                .collect();
            match files.len() {
                0 => output::line(format!("Succeeded{took}; the script wrote no files.")),
                1 => output::line(format!("Succeeded{took}. 1 file:")),
                n => output::line(format!("Succeeded{took}. {n} files:")),
            }
            let width = files
                .iter()
                .map(|f| f["name"].as_str().unwrap_or("").len())
                .max()
                .unwrap_or(0);
            for f in files {
                output::line(format!(
                    "  {:<width$}  {:>9}  {}{}",
                    f["name"].as_str().unwrap_or("?"),
                    size(f["size"].as_u64().unwrap_or(0)),
                    client.base,
                    f["url"].as_str().unwrap_or("")
                ));
            }
            true
        }
        Some(status) => {
            let step = job["step"].as_str().unwrap_or("?");
            let why = job["error"].as_str().unwrap_or("no reason given");
            let what = if status == "cancelled" {
                "Cancelled"
            } else {
                "Failed"
            };
            output::line(format!("{what} at the {step} step: {why}"));
            false
        }
        None => false,
    }
}

/// `512 B`, `14.2 kB`, `3.1 MB`.
fn size(n: u64) -> String {
    match n {
        0..1000 => format!("{n} B"),
        1000..1_000_000 => format!("{:.1} kB", n as f64 / 1e3),
        _ => format!("{:.1} MB", n as f64 / 1e6),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(size(512), "512 B");
        assert_eq!(size(14_200), "14.2 kB");
        assert_eq!(size(3_100_000), "3.1 MB");
    }

    #[test]
    fn the_body_holds_the_image_and_the_prompt() {
        let (ctype, body) = multipart(Path::new("/tmp/a\"b.png"), b"\x89PNG", "plot it");
        let boundary = ctype
            .strip_prefix("multipart/form-data; boundary=")
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.starts_with(&format!("--{boundary}\r\n")));
        assert!(
            text.contains("name=\"image\"; filename=\"ab.png\""),
            "{text}"
        );
        assert!(
            text.contains("name=\"prompt\"\r\n\r\nplot it\r\n"),
            "{text}"
        );
        assert!(text.ends_with(&format!("--{boundary}--\r\n")));
    }
}
