//! Agent jobs: an image in; analysed, coded, criticised and safely run Python out,
//! with its artifacts.
//!
//! A job goes `queued → vision → plan → code → critic → run → succeeded | failed |
//! cancelled`. The models are called through [`hearth_gateway::Gateway::complete`]
//! in-process (the image as an OpenAI `image_url` content part); the critic (ruff and
//! bandit) and the script run in [`hearth_sandbox`]; every step, attempt, file and
//! the job's state live in a [`hearth_store::JobStore`], so a restart loses nothing.
//! This crate knows nothing of HTTP: the HTTP layer calls [`Jobs`], maps
//! [`UploadError::status`] to its answer and turns [`JobEvent`]s into server-sent
//! events.
//!
//! # Layout
//! - `service`: [`Jobs`] (submit, job, list, cancel, delete, file, subscribe) and its
//!   worker pool.
//! - `pipeline`: one job, step by step, with the repair loop and resuming.
//! - [`upload`]: what an upload is, by its magic bytes; size and pixel caps.
//! - `ask`: one model call of a step through the gateway.
//! - [`critic`]: ruff and bandit in the sandbox, their findings, the policy.
//! - [`runner`]: a sandbox run a cancel can kill; limits in plain words.
//! - [`prompts`]: what each step asks, and the script out of a reply.
//! - [`blobs`]: job files by SHA-256 in an object store: `data_dir/files` or an
//!   S3-compatible bucket.
//! - [`settings`]: what the pipeline reads of `[jobs]`.
//! - [`events`]: the events of jobs, [`JobEvent`].
//! - [`relay`]: [`EventRelay`], the events of jobs other replicas run.

mod ask;
pub mod blobs;
pub mod critic;
pub mod events;
mod pipeline;
pub mod prompts;
pub mod relay;
pub mod runner;
mod service;
pub mod settings;
pub mod upload;

pub use ask::{Reply, with_image};
pub use blobs::{Blobs, Object, ObjectsError, content_type_for, shown_inline};
pub use critic::{Finding, Review};
pub use events::JobEvent;
pub use relay::EventRelay;
pub use service::{JobView, Jobs, JobsError, SubmitError};
pub use settings::{CriticPolicy, Settings, Severity};
pub use upload::{CheckedImage, ImageKind, UploadError};

pub use hearth_store::{
    Job, JobFile, JobListQuery, JobPage, JobStatus, JobStep, Scope, StepStatus,
};
