//! Release versions: safe as folder names, ordered by their numbers.

use std::cmp::Ordering;

use super::DeployError;

/// Checks that a version can name a folder under `releases/` without escaping
/// it or hiding as a dot-file (`.X.partial` is the staging name).
pub fn validate(version: &str) -> Result<(), DeployError> {
    let ok = !version.is_empty()
        && version.len() <= 128
        && !version.starts_with('.')
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'));
    if ok {
        Ok(())
    } else {
        Err(DeployError::InvalidVersion {
            version: version.to_string(),
        })
    }
}

/// Orders versions the semver way as far as it matters here: numeric parts
/// numerically (`0.10.0` after `0.9.0`), a pre-release (`1.0.0-rc1`) before
/// its release, build metadata (`+abc`) ignored except as a last tie-break.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (a_main, a_build) = split_once_or(a, '+');
    let (b_main, b_build) = split_once_or(b, '+');
    let (a_core, a_pre) = split_once_or(a_main, '-');
    let (b_core, b_pre) = split_once_or(b_main, '-');
    compare_parts(a_core, b_core)
        .then_with(|| match (a_pre.is_empty(), b_pre.is_empty()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            (false, false) => compare_parts(a_pre, b_pre),
        })
        .then_with(|| a_build.cmp(b_build))
}

fn split_once_or(s: &str, sep: char) -> (&str, &str) {
    s.split_once(sep).unwrap_or((s, ""))
}

fn compare_parts(a: &str, b: &str) -> Ordering {
    let mut a_parts = a.split(['.', '-', '_']);
    let mut b_parts = b.split(['.', '-', '_']);
    loop {
        match (a_parts.next(), b_parts.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    // A number sorts before a word, as in semver pre-releases.
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    (Err(_), Err(_)) => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_sort_numerically() {
        let mut v = vec![
            "0.10.0",
            "0.9.1",
            "1.0.0",
            "0.9.0",
            "1.0.0-rc1",
            "0.9.10",
            "1.0.0-rc2",
        ];
        v.sort_by(|a, b| compare(a, b));
        assert_eq!(
            v,
            [
                "0.9.0",
                "0.9.1",
                "0.9.10",
                "0.10.0",
                "1.0.0-rc1",
                "1.0.0-rc2",
                "1.0.0"
            ]
        );
    }

    #[test]
    fn versions_that_escape_the_folder_are_refused() {
        for bad in ["", "..", ".hidden", "a/b", "1.0 beta", "../../etc"] {
            assert!(validate(bad).is_err(), "{bad:?} should be refused");
        }
        for good in ["0.1.0", "1.2.3-rc.1+git.abc", "2026_01"] {
            assert!(validate(good).is_ok(), "{good:?} should be accepted");
        }
    }
}
