//! Server URLs with their passwords taken out, for logs and messages.

/// `url` with the password of its userinfo (`scheme://user:PASSWORD@host`) replaced
/// by `***`. A URL with none, or one that does not parse as `scheme://...`, comes
/// back as it is when it holds no `@`, else as `scheme://***@rest`: never the
/// secret.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return if url.contains('@') {
            "***".into()
        } else {
            url.into()
        };
    };
    // The userinfo ends at the last `@` before the path: a password may hold `@`
    // (badly escaped), a path may not start before the host.
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let Some(at) = rest[..authority_end].rfind('@') else {
        return url.into();
    };
    let userinfo = &rest[..at];
    let shown = match userinfo.split_once(':') {
        Some((user, _password)) => format!("{user}:***"),
        None if userinfo.is_empty() => String::new(),
        // A bare `user@` may be a token (`redis://TOKEN@host`): hidden too.
        None => "***".into(),
    };
    format!("{scheme}://{shown}@{}", &rest[at + 1..])
}

#[cfg(test)]
mod tests {
    use super::redact_url;

    #[test]
    fn passwords_never_come_back() {
        for (url, want) in [
            ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
            ("redis://:s3cret@host:6379", "redis://:***@host:6379"),
            (
                "postgres://app:s3cret@db:5432/hearth?sslmode=require",
                "postgres://app:***@db:5432/hearth?sslmode=require",
            ),
            (
                "postgres://app:p@ss@db/hearth",
                "postgres://app:***@db/hearth",
            ),
            ("redis://s3cret@host", "redis://***@host"),
            ("host/path@x", "***"),
            (
                "postgres://db/hearth?user=a@b",
                "postgres://db/hearth?user=a@b",
            ),
        ] {
            assert_eq!(redact_url(url), want, "{url}");
            if url.contains("s3cret") || url.contains("p@ss") {
                assert!(!redact_url(url).contains("s3cret") && !redact_url(url).contains("ss@"));
            }
        }
    }
}
