//! One job, step by step: vision → plan → code → critic → run, with the repair loop
//! (a blocked or raising script goes back to the code model, at most `max_repairs`
//! times). Every step is recorded as it starts and ends; a job that was running
//! when its process stopped resumes here from the steps that ended ([`Resume`]).

use std::path::PathBuf;

use hearth_api::MessageContent;
use hearth_gateway::Principal;
use hearth_sandbox::{Outcome, Spec};
use hearth_store::{
    Job, JobEnd, JobStatus, JobStep, NewFile, NewStep, StepEnd, StepStatus, StoreError,
};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::ask::{self, Reply};
use crate::blobs::content_type_for;
use crate::critic::{self, Finding, Review};
use crate::events::JobEvent;
use crate::prompts;
use crate::runner::{self, Ran};
use crate::service::Inner;
use crate::upload::ImageKind;

/// Most log lines sent for each of a run's stdout and stderr.
const LOG_LINES: usize = 200;
/// Most bytes of a traceback sent back to the code model.
const TRACEBACK_BYTES: usize = 4000;
/// How much of an artifact is read from disk at a time on its way to the store.
const ARTIFACT_CHUNK: usize = 256 << 10;

/// Why a job stopped before it succeeded.
#[derive(Debug)]
enum Stop {
    /// The user cancelled it.
    Cancelled,
    /// The service is stopping: the job stays as it is, to resume at the next start.
    Shutdown,
    Failed {
        code: &'static str,
        message: String,
    },
    Internal(String),
}

impl From<StoreError> for Stop {
    fn from(e: StoreError) -> Self {
        Stop::Internal(e.to_string())
    }
}

type Flow<T> = Result<T, Stop>;

/// What goes back to the code model with a repair.
#[derive(Debug, Clone)]
enum Feedback {
    Findings {
        code: String,
        findings: Vec<Finding>,
    },
    Traceback {
        code: String,
        traceback: String,
    },
}

/// The next thing to do in the code/critic/run loop.
#[derive(Debug, Clone)]
enum Next {
    Code(Option<Feedback>),
    Critic(String),
    Run(String),
}

/// Where a job stands, read from the steps that ended.
#[derive(Debug)]
struct Resume {
    vision: Option<String>,
    plan: Option<String>,
    /// The last code attempt made.
    attempt: i64,
    next: Next,
}

impl Resume {
    fn read(steps: &[JobStep]) -> Resume {
        let mut r = Resume {
            vision: None,
            plan: None,
            attempt: 0,
            next: Next::Code(None),
        };
        for s in steps {
            let status = s.status();
            if !matches!(status, StepStatus::Succeeded | StepStatus::Failed) {
                continue;
            }
            let ok = status == StepStatus::Succeeded;
            let detail: serde_json::Value = s
                .detail
                .as_deref()
                .and_then(|d| serde_json::from_str(d).ok())
                .unwrap_or_default();
            match (s.kind.as_str(), &r.next) {
                ("vision", _) if ok => r.vision = s.output.clone(),
                ("plan", _) if ok => r.plan = s.output.clone(),
                ("code", _) if ok => {
                    r.attempt = s.attempt;
                    if let Some(code) = &s.output {
                        r.next = Next::Critic(code.clone());
                    }
                }
                ("critic", Next::Critic(code)) => {
                    let code = code.clone();
                    if ok {
                        r.next = Next::Run(code);
                    } else if let Ok(review) = serde_json::from_value::<Review>(detail) {
                        r.next = Next::Code(Some(Feedback::Findings {
                            code,
                            findings: review.findings,
                        }));
                    }
                    // A critic that could not run (no verdict) runs again.
                }
                ("run", Next::Run(code)) if !ok && detail.is_object() => {
                    let text = |k: &str| {
                        detail
                            .get(k)
                            .and_then(serde_json::Value::as_str)
                            .unwrap_or("")
                            .to_owned()
                    };
                    // What went wrong: the traceback, and the limit that ended it.
                    let traceback = [text("stderr"), text("explanation")]
                        .into_iter()
                        .filter(|t| !t.trim().is_empty())
                        .collect::<Vec<_>>()
                        .join("\n");
                    r.next = Next::Code(Some(Feedback::Traceback {
                        code: code.clone(),
                        traceback,
                    }));
                }
                _ => {}
            }
        }
        r
    }
}

enum RunEnd {
    Succeeded,
    Raised(String),
}

struct Ctx<'a> {
    inner: &'a Inner,
    job: &'a Job,
    cancel: &'a CancellationToken,
    who: Principal,
}

/// Runs `job` (claimed, `running`) to its end, and records the end.
pub(crate) async fn run(inner: &Inner, job: Job, cancel: &CancellationToken) {
    let ctx = Ctx {
        inner,
        job: &job,
        cancel,
        // The job's owner: its model calls are not refused (the submission was
        // admitted), but their tokens count against the owner's limits.
        who: inner
            .gateway
            .keys()
            .by_id(&job.owner)
            .cloned()
            .unwrap_or_else(|| Principal::new(&job.owner, 0, 0, false)),
    };
    inner.emit(JobEvent::Status {
        job_id: job.id.clone(),
        status: JobStatus::Running.as_str().into(),
        step: job.step.clone(),
        error: None,
    });
    let result = ctx.pipeline().await;
    let _ = tokio::fs::remove_dir_all(ctx.work_dir()).await;
    let end = match result {
        Ok(()) => JobEnd {
            status: JobStatus::Succeeded,
            error: None,
            error_code: None,
        },
        Err(Stop::Shutdown) => return,
        Err(Stop::Cancelled) => JobEnd {
            status: JobStatus::Cancelled,
            error: Some("cancelled".into()),
            error_code: Some("cancelled".into()),
        },
        Err(Stop::Failed { code, message }) => JobEnd {
            status: JobStatus::Failed,
            error: Some(message),
            error_code: Some(code.into()),
        },
        Err(Stop::Internal(why)) => {
            tracing::error!(error = %why, "job failed on an internal error");
            JobEnd {
                status: JobStatus::Failed,
                error: Some(format!("internal error: {why}")),
                error_code: Some("internal".into()),
            }
        }
    };
    match inner.store.finish_job(&job.id, &end).await {
        Ok(Some(j)) => inner.emit(JobEvent::Status {
            job_id: j.id.clone(),
            status: j.status.clone(),
            step: j.step.clone(),
            error: j.error.clone(),
        }),
        Ok(None) => {}
        Err(e) => tracing::error!(error = %e, "cannot record the end of a job"),
    }
}

/// A critic step's detail: the review (findings, verdict) and what the check used.
fn review_detail(review: &Review, outcome: &Outcome) -> String {
    let mut v = serde_json::to_value(review).unwrap_or_default();
    if let serde_json::Value::Object(m) = &mut v {
        m.insert("usage".into(), json!(outcome.usage));
    }
    v.to_string()
}

fn failed(output: String, detail: Option<String>) -> StepEnd {
    StepEnd {
        status: StepStatus::Failed,
        output: Some(output),
        detail,
        model: None,
        prompt_tokens: None,
        completion_tokens: None,
    }
}

fn answered(reply: &Reply, output: String, detail: Option<String>) -> StepEnd {
    StepEnd {
        status: StepStatus::Succeeded,
        output: Some(output),
        detail,
        model: Some(reply.model.clone()),
        prompt_tokens: reply.prompt_tokens,
        completion_tokens: reply.completion_tokens,
    }
}

/// The last `max` bytes of `s`, on a character boundary.
fn tail(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut start = s.len() - max;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    &s[start..]
}

impl Ctx<'_> {
    fn id(&self) -> &str {
        &self.job.id
    }

    fn stopped(&self) -> Stop {
        if self.inner.stop.is_cancelled() {
            Stop::Shutdown
        } else {
            Stop::Cancelled
        }
    }

    fn work_dir(&self) -> PathBuf {
        self.inner.work_dir.join(&self.job.id)
    }

    fn log(&self, step: &str, line: impl Into<String>) {
        self.inner.emit(JobEvent::Log {
            job_id: self.id().to_owned(),
            step: step.to_owned(),
            line: line.into(),
        });
    }

    async fn begin(
        &self,
        kind: &str,
        attempt: i64,
        input: String,
        model: Option<&str>,
    ) -> Flow<JobStep> {
        if self.cancel.is_cancelled() {
            return Err(self.stopped());
        }
        let step = self
            .inner
            .store
            .begin_step(
                self.id(),
                NewStep {
                    kind: kind.to_owned(),
                    attempt,
                    input,
                    model: model.map(str::to_owned),
                },
            )
            .await?;
        self.inner.emit(JobEvent::Status {
            job_id: self.id().to_owned(),
            status: JobStatus::Running.as_str().into(),
            step: Some(kind.to_owned()),
            error: None,
        });
        self.emit_step(&step, StepStatus::Running);
        Ok(step)
    }

    fn emit_step(&self, step: &JobStep, status: StepStatus) {
        self.inner.emit(JobEvent::Step {
            job_id: self.id().to_owned(),
            step_id: step.id.clone(),
            kind: step.kind.clone(),
            attempt: step.attempt,
            status: status.as_str().into(),
        });
    }

    async fn end(&self, step: &JobStep, end: StepEnd) -> Flow<()> {
        self.inner.store.finish_step(&step.id, &end).await?;
        self.emit_step(step, end.status);
        Ok(())
    }

    /// The step was stopped: cancelled by the user (recorded), or by a shutdown
    /// (left running, to be marked interrupted and run again at the next start).
    async fn interrupted(&self, step: &JobStep) -> Stop {
        let stop = self.stopped();
        if matches!(stop, Stop::Cancelled) {
            let end = StepEnd {
                status: StepStatus::Cancelled,
                output: None,
                detail: None,
                model: None,
                prompt_tokens: None,
                completion_tokens: None,
            };
            if let Err(e) = self.end(step, end).await {
                return e;
            }
        }
        stop
    }

    async fn pipeline(&self) -> Flow<()> {
        let steps = self.inner.store.steps(self.id()).await?;
        let resume = Resume::read(&steps);
        let kind = ImageKind::parse(&self.job.image_type)
            .ok_or_else(|| Stop::Internal(format!("unknown image type {}", self.job.image_type)))?;
        let description = match resume.vision {
            Some(d) => d,
            None => self.vision(kind).await?,
        };
        let plan = match resume.plan {
            Some(p) => p,
            None => self.plan(&description).await?,
        };
        let rules = prompts::rules(
            &self.inner.settings.limits,
            &format!("input.{}", kind.extension()),
        );
        let mut attempt = resume.attempt;
        let mut next = resume.next;
        loop {
            next = match next {
                Next::Code(feedback) => {
                    attempt += 1;
                    let code = self
                        .code(attempt, &description, &plan, &rules, feedback)
                        .await?;
                    Next::Critic(code)
                }
                Next::Critic(code) => {
                    let review = self.critic(attempt, &code).await?;
                    if !review.blocked {
                        Next::Run(code)
                    } else if self.can_repair(attempt) {
                        Next::Code(Some(Feedback::Findings {
                            code,
                            findings: review.findings,
                        }))
                    } else {
                        let first = review
                            .findings
                            .iter()
                            .find(|f| f.blocking)
                            .map(|f| {
                                format!("{} {} at line {}: {}", f.tool, f.rule, f.line, f.message)
                            })
                            .unwrap_or_default();
                        return Err(Stop::Failed {
                            code: "critic",
                            message: format!(
                                "the critic blocked the script after {attempt} attempt(s): {first}"
                            ),
                        });
                    }
                }
                Next::Run(code) => match self.run_script(attempt, &code, kind).await? {
                    RunEnd::Succeeded => return Ok(()),
                    RunEnd::Raised(traceback) if self.can_repair(attempt) => {
                        Next::Code(Some(Feedback::Traceback { code, traceback }))
                    }
                    RunEnd::Raised(traceback) => {
                        return Err(Stop::Failed {
                            code: "script",
                            message: format!(
                                "the script failed after {attempt} attempt(s): {}",
                                traceback.trim().lines().last().unwrap_or("no message")
                            ),
                        });
                    }
                },
            };
        }
    }

    fn can_repair(&self, attempt: i64) -> bool {
        attempt <= i64::from(self.inner.settings.max_repairs)
    }

    /// A step that asks a model: the reply, or the step ended and the job stopped.
    async fn ask_step(
        &self,
        kind: &str,
        attempt: i64,
        model: &str,
        input: String,
        content: MessageContent,
    ) -> Flow<(JobStep, Reply)> {
        let step = self.begin(kind, attempt, input, Some(model)).await?;
        let asked = ask::ask(
            &self.inner.gateway,
            &self.who,
            model,
            content,
            self.inner.settings.max_tokens,
            self.id(),
            self.cancel,
        )
        .await;
        match asked {
            Ok(Some(reply)) => Ok((step, reply)),
            Ok(None) => Err(self.interrupted(&step).await),
            Err(e) => {
                self.end(&step, failed(e.message.clone(), None)).await?;
                Err(Stop::Failed {
                    code: "model",
                    message: format!("the {kind} step's model `{model}` failed: {}", e.message),
                })
            }
        }
    }

    async fn vision(&self, kind: ImageKind) -> Flow<String> {
        let s = &self.inner.settings;
        let model = s.vision_model.as_str();
        let text = prompts::vision(&self.job.prompt);
        let input = ask::recorded_input(&text, Some((kind.name(), &self.job.image_sha256)));
        if !s.vision_capable {
            let step = self.begin("vision", 1, input, Some(model)).await?;
            let message = format!(
                "the vision model `{model}` cannot read images: if it can, mark it `vision = true` \
                 in its [[models]] entry; otherwise set [jobs] vision_model to a model that can \
                 (for example Qwen2.5-VL on a vLLM upstream)"
            );
            self.end(&step, failed(message.clone(), None)).await?;
            return Err(Stop::Failed {
                code: "vision_unsupported",
                message,
            });
        }
        let image = self
            .inner
            .blobs
            .get(&self.job.image_sha256)
            .await
            .map_err(|e| Stop::Internal(format!("reading the job's image: {e}")))?;
        let content = ask::with_image(&text, kind.mime(), &image);
        let (step, reply) = self.ask_step("vision", 1, model, input, content).await?;
        self.end(&step, answered(&reply, reply.text.clone(), None))
            .await?;
        Ok(reply.text)
    }

    async fn plan(&self, description: &str) -> Flow<String> {
        let model = self.inner.settings.reasoning_model.as_str();
        let text = prompts::plan(&self.job.prompt, description);
        let (step, reply) = self
            .ask_step("plan", 1, model, text.clone(), MessageContent::Text(text))
            .await?;
        self.end(&step, answered(&reply, reply.text.clone(), None))
            .await?;
        Ok(reply.text)
    }

    async fn code(
        &self,
        attempt: i64,
        description: &str,
        plan: &str,
        rules: &str,
        feedback: Option<Feedback>,
    ) -> Flow<String> {
        let model = self.inner.settings.code_model.as_str();
        let text = match &feedback {
            None => prompts::code(&self.job.prompt, description, plan, rules),
            Some(Feedback::Findings { code, findings }) => {
                prompts::repair_findings(code, findings, rules)
            }
            Some(Feedback::Traceback { code, traceback }) => {
                prompts::repair_traceback(code, traceback, rules)
            }
        };
        let (step, reply) = self
            .ask_step(
                "code",
                attempt,
                model,
                text.clone(),
                MessageContent::Text(text),
            )
            .await?;
        let detail = json!({"reply": reply.text}).to_string();
        match prompts::extract_python(&reply.text) {
            Some(code) => {
                self.end(&step, answered(&reply, code.clone(), Some(detail)))
                    .await?;
                Ok(code)
            }
            None => {
                let mut end = answered(
                    &reply,
                    "the reply has no Python script".into(),
                    Some(detail),
                );
                end.status = StepStatus::Failed;
                self.end(&step, end).await?;
                Err(Stop::Failed {
                    code: "no_script",
                    message: format!("the code model `{model}` answered without a Python script"),
                })
            }
        }
    }

    /// Runs `spec` in the sandbox for `step`; a cancel or a sandbox failure ends the
    /// step and the job.
    async fn sandboxed(&self, step: &JobStep, spec: Spec, what: &str) -> Flow<Outcome> {
        match runner::run(self.inner.sandbox.clone(), spec, self.cancel).await {
            Ok(Ran::Done(o)) => Ok(o),
            Ok(Ran::Cancelled(_)) => Err(self.interrupted(step).await),
            Err(e) => {
                self.end(step, failed(e.to_string(), None)).await?;
                Err(Stop::Failed {
                    code: "sandbox",
                    message: format!("the sandbox could not run {what}: {e}"),
                })
            }
        }
    }

    async fn critic(&self, attempt: i64, code: &str) -> Flow<Review> {
        let step = self.begin("critic", attempt, code.to_owned(), None).await?;
        let spec = critic::spec(code, self.inner.settings.critic_limits.clone());
        let outcome = self.sandboxed(&step, spec, "the critic").await?;
        match critic::review(&outcome, self.inner.settings.critic) {
            Ok(review) => {
                for f in &review.findings {
                    self.log(
                        "critic",
                        format!(
                            "{} {} line {} ({}{}): {}",
                            f.tool,
                            f.rule,
                            f.line,
                            f.severity,
                            if f.blocking { ", blocks" } else { "" },
                            f.message
                        ),
                    );
                }
                let blocking = review.findings.iter().filter(|f| f.blocking).count();
                let summary = format!("{} finding(s), {blocking} blocking", review.findings.len());
                let end = StepEnd {
                    status: if review.blocked {
                        StepStatus::Failed
                    } else {
                        StepStatus::Succeeded
                    },
                    output: Some(summary),
                    detail: Some(review_detail(&review, &outcome)),
                    model: None,
                    prompt_tokens: None,
                    completion_tokens: None,
                };
                self.end(&step, end).await?;
                Ok(review)
            }
            Err(e) => {
                self.end(&step, failed(e.to_string(), None)).await?;
                Err(Stop::Failed {
                    code: "critic",
                    message: e.to_string(),
                })
            }
        }
    }

    /// The run's input folder, holding the image as `input.<ext>`, readable by the
    /// sandboxed program's unprivileged user. The folders above it can be passed
    /// but not listed (`0711`): another local user cannot find a job's folder.
    /// A fresh, empty folder for the script's `/output` to be copied into.
    async fn output_dir(&self) -> Flow<PathBuf> {
        let dir = self.work_dir().join("output");
        let fresh = async {
            match tokio::fs::remove_dir_all(&dir).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
            tokio::fs::create_dir_all(&dir).await
        };
        fresh
            .await
            .map_err(|e| Stop::Internal(format!("preparing {}: {e}", dir.display())))?;
        Ok(dir)
    }

    async fn input_dir(&self, kind: ImageKind) -> Flow<PathBuf> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let dir = self.work_dir().join("input");
        let target = dir.join(format!("input.{}", kind.extension()));
        let prepared = async {
            tokio::fs::create_dir_all(&dir).await?;
            // In a shared temp folder: refuse one another user made (or a link) first.
            let top = tokio::fs::symlink_metadata(&self.inner.work_dir).await?;
            if !top.is_dir() || top.uid() != rustix::process::getuid().as_raw() {
                return Err(std::io::Error::other(format!(
                    "{} is not a folder of this user's",
                    self.inner.work_dir.display()
                )));
            }
            for d in [&self.inner.work_dir, &self.work_dir()] {
                tokio::fs::set_permissions(d, std::fs::Permissions::from_mode(0o711)).await?;
            }
            tokio::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).await?;
            self.inner
                .blobs
                .copy_to_file(&self.job.image_sha256, &target)
                .await
                .map_err(std::io::Error::other)?;
            tokio::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).await
        };
        prepared
            .await
            .map_err(|e| Stop::Internal(format!("preparing the run's input folder: {e}")))?;
        Ok(dir)
    }

    async fn run_script(&self, attempt: i64, code: &str, kind: ImageKind) -> Flow<RunEnd> {
        let step = self.begin("run", attempt, code.to_owned(), None).await?;
        let limits = self.inner.settings.limits.clone();
        let mut spec = Spec::python(code);
        spec.input = Some(self.input_dir(kind).await?);
        // The artifacts go to disk as they are read back, and on to the object
        // store from there: none is held in memory whole.
        let output = self.output_dir().await?;
        spec.output_dir = Some(output.clone());
        spec.limits = limits.clone();
        let o = self.sandboxed(&step, spec, "the script").await?;
        for line in o.stdout.lines().take(LOG_LINES) {
            self.log("run", format!("stdout: {line}"));
        }
        for line in o.stderr.lines().take(LOG_LINES) {
            self.log("run", format!("stderr: {line}"));
        }
        for w in &o.warnings {
            self.log("run", format!("warning: {w}"));
        }
        let explained = o.limit.map(|l| runner::explain_limit(l, &limits));
        let detail = json!({
            "exit_code": o.exit_code,
            "signal": o.signal,
            "limit": o.limit,
            "explanation": explained.as_ref().map(|(_, words)| format!("the script {words}")),
            "stderr": o.stderr,
            "stdout_truncated": o.stdout_truncated,
            "stderr_truncated": o.stderr_truncated,
            "files": o.files,
            "files_truncated": o.files_truncated,
            "usage": o.usage,
            "isolation": o.isolation,
            "warnings": o.warnings,
        })
        .to_string();
        let end = |status| StepEnd {
            status,
            output: Some(o.stdout.clone()),
            detail: Some(detail.clone()),
            model: None,
            prompt_tokens: None,
            completion_tokens: None,
        };
        if let Some((code, words)) = explained {
            self.end(&step, end(StepStatus::Failed)).await?;
            return Err(Stop::Failed {
                code,
                message: format!("the script {words}"),
            });
        }
        if !o.success() {
            self.end(&step, end(StepStatus::Failed)).await?;
            let traceback = if o.stderr.trim().is_empty() {
                match (o.exit_code, o.signal) {
                    (_, Some(sig)) => format!("the script was ended by signal {sig}"),
                    (Some(c), _) => format!("the script ended with exit code {c}"),
                    _ => "the script ended without a status".into(),
                }
            } else {
                tail(&o.stderr, TRACEBACK_BYTES).to_owned()
            };
            return Ok(RunEnd::Raised(traceback));
        }
        for f in &o.files {
            let files = self.inner.files_lock.lock().await;
            let shared = self.inner.store.files_lock(false).await?;
            let stored = async {
                let file = tokio::fs::File::open(output.join(&f.path))
                    .await
                    .map_err(|e| format!("cannot read {} back: {e}", f.path))?;
                self.inner
                    .blobs
                    .put_stream(tokio_util::io::ReaderStream::with_capacity(
                        file,
                        ARTIFACT_CHUNK,
                    ))
                    .await
                    .map_err(|e| e.to_string())
            };
            let (sha, _) = stored
                .await
                .map_err(|e| Stop::Internal(format!("storing an artifact: {e}")))?;
            self.inner
                .store
                .add_artifact(
                    self.id(),
                    NewFile {
                        name: f.path.clone(),
                        sha256: sha,
                        size: i64::try_from(f.size).unwrap_or(i64::MAX),
                        content_type: content_type_for(&f.path).to_owned(),
                        step_id: Some(step.id.clone()),
                    },
                )
                .await?;
            drop(shared);
            drop(files);
            self.log("run", format!("wrote {} ({} bytes)", f.path, f.size));
        }
        self.end(&step, end(StepStatus::Succeeded)).await?;
        Ok(RunEnd::Succeeded)
    }
}
