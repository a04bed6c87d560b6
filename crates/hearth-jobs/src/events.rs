//! [`JobEvent`]: what the worker tells listeners (the HTTP layer's server-sent
//! events) as jobs move: status and step changes, and log lines.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum JobEvent {
    /// The job's status or current step changed.
    Status {
        job_id: String,
        /// A `JobStatus` name.
        status: String,
        step: Option<String>,
        error: Option<String>,
    },
    /// A step started or ended.
    Step {
        job_id: String,
        step_id: String,
        kind: String,
        attempt: i64,
        /// A `StepStatus` name.
        status: String,
    },
    /// A line of a step's log (a critic finding, the script's output).
    Log {
        job_id: String,
        step: String,
        line: String,
    },
}

impl JobEvent {
    pub fn job_id(&self) -> &str {
        match self {
            JobEvent::Status { job_id, .. }
            | JobEvent::Step { job_id, .. }
            | JobEvent::Log { job_id, .. } => job_id,
        }
    }
}
