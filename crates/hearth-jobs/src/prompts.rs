//! What the models are asked at each step, and reading the script out of a reply.

use hearth_sandbox::Limits;

use crate::critic::Finding;

/// Asked of the vision model, with the image.
pub fn vision(instruction: &str) -> String {
    format!(
        "Describe this image precisely for a programmer who cannot see it. Transcribe every \
         number, label, axis, legend and table cell you can read, in order; say what kind of \
         image it is (chart, table, form, photo...).\n\nThe user's instruction: {}",
        or_default(instruction)
    )
}

/// Asked of the reasoning model.
pub fn plan(instruction: &str, description: &str) -> String {
    format!(
        "Plan a single Python script that fulfils the user's instruction for the image \
         described below. List the steps, the data it will hard-code or read, and the files it \
         will write. Be brief.\n\nInstruction: {}\n\nImage description:\n{description}",
        or_default(instruction)
    )
}

/// The sandbox's rules, stated in the code step's prompt.
pub fn rules(limits: &Limits, input_name: &str) -> String {
    format!(
        "Rules of the machine the script runs on:\n\
         - Python 3 with numpy, pandas and matplotlib (backend Agg); no other packages, and no \
         network: do not install or download anything.\n\
         - The image is at /input/{input_name} (read-only).\n\
         - Write every result (PNG charts, CSV, JSON) to /output; nothing else is kept.\n\
         - Limits: {cpus} CPU cores, {mem} MiB of memory, {secs} s of time.\n\
         - Do not start other programs (no subprocess, os.system or shell).",
        cpus = limits.cpus,
        mem = limits.memory_bytes >> 20,
        secs = limits.wall_time.as_secs(),
    )
}

/// Asked of the code model for the first attempt.
pub fn code(instruction: &str, description: &str, plan: &str, rules: &str) -> String {
    format!(
        "Write one complete Python script for this task. Answer with the script in a single \
         ```python block.\n\nInstruction: {}\n\nImage description:\n{description}\n\nPlan:\n{plan}\n\n{rules}",
        or_default(instruction)
    )
}

/// Asked of the code model after the critic blocked the script.
pub fn repair_findings(script: &str, findings: &[Finding], rules: &str) -> String {
    let list: Vec<String> = findings
        .iter()
        .filter(|f| f.blocking)
        .map(|f| {
            format!(
                "- line {}: {} {} ({}): {}",
                f.line, f.tool, f.rule, f.severity, f.message
            )
        })
        .collect();
    format!(
        "The script below was refused before running because of these findings:\n{}\n\n\
         Fix them and answer with the whole corrected script in a single ```python block.\n\n\
         ```python\n{script}\n```\n\n{rules}",
        list.join("\n")
    )
}

/// Asked of the code model after the script raised.
pub fn repair_traceback(script: &str, traceback: &str, rules: &str) -> String {
    format!(
        "The script below failed when it ran:\n\n```\n{traceback}\n```\n\n\
         Fix it and answer with the whole corrected script in a single ```python block.\n\n\
         ```python\n{script}\n```\n\n{rules}"
    )
}

fn or_default(instruction: &str) -> &str {
    let t = instruction.trim();
    if t.is_empty() {
        "re-create what the image shows with Python (a chart as PNG, a table as CSV)"
    } else {
        t
    }
}

/// The script in a reply: the first ```python (or ```py, or bare ```) block, else
/// the whole reply when it has no fence at all. `None` when it is empty.
pub fn extract_python(reply: &str) -> Option<String> {
    let mut best: Option<String> = None;
    let mut rest = reply;
    while let Some(start) = rest.find("```") {
        let after = &rest[start + 3..];
        let (lang, body) = after.split_once('\n').unwrap_or((after, ""));
        let lang = lang.trim().to_ascii_lowercase();
        let (code, next) = match body.find("```") {
            Some(end) => (&body[..end], &body[end + 3..]),
            None => (body, ""),
        };
        if lang == "python" || lang == "py" || lang == "python3" {
            return non_empty(code);
        }
        if lang.is_empty() && best.is_none() {
            best = non_empty(code);
        }
        rest = next;
    }
    if best.is_some() {
        return best;
    }
    if reply.contains("```") {
        return None;
    }
    non_empty(reply)
}

fn non_empty(code: &str) -> Option<String> {
    let code = code.trim_matches('\n');
    (!code.trim().is_empty()).then(|| format!("{}\n", code.trim_end()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_python_block_is_taken_from_a_reply() {
        let reply = "Here you go:\n```text\nnot this\n```\n```python\nprint(1)\n```\nDone.";
        assert_eq!(extract_python(reply).unwrap(), "print(1)\n");
        assert_eq!(extract_python("```\nx = 1\n```").unwrap(), "x = 1\n");
        assert_eq!(extract_python("x = 2\n").unwrap(), "x = 2\n");
        assert_eq!(extract_python("```py\ny = 3").unwrap(), "y = 3\n");
        assert!(extract_python("  \n").is_none());
        assert!(extract_python("```text\nprose\n```").is_none());
    }
}
