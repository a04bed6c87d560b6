//! Secrets: their values come from the CI's environment at apply time and are
//! masked in every line Hearth prints or records; the repository holds only
//! their names. Also the scan `check` runs for values committed by mistake.

/// Replaces secret values with `***`.
#[derive(Debug, Clone, Default)]
pub struct Masker {
    /// Longest first, so a value that contains another is masked whole.
    values: Vec<String>,
}

impl Masker {
    pub fn new(values: impl IntoIterator<Item = String>) -> Masker {
        let mut values: Vec<String> = values.into_iter().filter(|v| !v.is_empty()).collect();
        values.sort_by_key(|v| std::cmp::Reverse(v.len()));
        values.dedup();
        Masker { values }
    }

    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for v in &self.values {
            if out.contains(v.as_str()) {
                out = out.replace(v.as_str(), "***");
            }
        }
        out
    }
}

/// What a committed secret looks like in a line, if it looks like one.
pub(crate) fn secret_in_line(line: &str) -> Option<&'static str> {
    if line.contains("-----BEGIN") && line.contains("PRIVATE KEY-----") {
        return Some("a private key");
    }
    // Prefixes of the tokens people commit most, and the least length of what follows.
    const TOKENS: &[(&str, usize, &str)] = &[
        ("ghp_", 30, "a GitHub token"),
        ("gho_", 30, "a GitHub token"),
        ("ghs_", 30, "a GitHub token"),
        ("ghr_", 30, "a GitHub token"),
        ("github_pat_", 30, "a GitHub token"),
        ("glpat-", 20, "a GitLab token"),
        ("xoxb-", 20, "a Slack token"),
        ("xoxp-", 20, "a Slack token"),
        ("sk-proj-", 20, "an OpenAI key"),
        ("sk-ant-", 20, "an Anthropic key"),
        ("sk_live_", 20, "a Stripe key"),
        ("AKIA", 16, "an AWS access key id"),
        ("hf_", 30, "a Hugging Face token"),
    ];
    for (prefix, min, what) in TOKENS {
        let mut rest = line;
        while let Some(i) = rest.find(prefix) {
            // The prefix must start a word: `mask_ghp_` is not a token.
            let before = rest[..i].chars().next_back();
            let tail = &rest[i + prefix.len()..];
            let run = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
                .count();
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && run >= *min {
                return Some(what);
            }
            rest = tail;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_masked_longest_first() {
        let m = Masker::new(["abc".to_string(), "abcdef".to_string(), String::new()]);
        assert_eq!(m.mask("x abcdef y abc"), "x *** y ***");
    }

    #[test]
    fn token_shapes() {
        // Put together here, so that this file holds no token-shaped string.
        let gh = format!(
            "token = \"{}_{}\"",
            "ghp", "0123456789abcdefghijklmnopqrstuvwxyz"
        );
        assert_eq!(secret_in_line(&gh), Some("a GitHub token"));
        assert_eq!(
            secret_in_line("-----BEGIN OPENSSH PRIVATE KEY-----"),
            Some("a private key")
        );
        let aws = format!("key = {}{}", "AKIA", "ABCDEFGHIJKLMNOP");
        assert_eq!(secret_in_line(&aws), Some("an AWS access key id"));
        assert_eq!(secret_in_line("secrets = [\"GITHUB_TOKEN\"]"), None);
        assert_eq!(secret_in_line("ghp_short"), None);
    }
}
