//! `[limits] backend = "redis"`: the server answers, the password is right, its
//! version runs the limiter's scripts, and scripts are allowed (some hosted Redis
//! offerings turn `EVAL` off).
//!
//! While Redis is down Hearth still serves under `on_redis_error = "open"` (limits
//! not enforced), so that is a warn; under `"closed"` every limited request would be
//! refused, so it is a fail.

use std::time::Duration;

use hearth_config::{LimitsBackend, LimitsConfig, RedisFailurePolicy, redact_url};

use super::report::Check;

/// Redis 5 is the first whose scripts may call `TIME` without
/// `redis.replicate_commands()` (effects replication by default).
const MIN_MAJOR: u32 = 5;

pub fn check(limits: &LimitsConfig, checks: &mut Vec<Check>) {
    let (LimitsBackend::Redis, Some(url)) = (limits.backend, limits.redis_url.as_deref()) else {
        return;
    };
    let shown = redact_url(url);
    let timeout = Duration::from_millis(limits.redis_timeout_ms).max(Duration::from_secs(2));
    let down = |reason: String, remedy: &str| match limits.on_redis_error {
        RedisFailurePolicy::Open => Check::warn(
            "servers",
            "redis",
            format!(
                "{reason}; limits are not enforced while it is down (on_redis_error = \"open\")"
            ),
            remedy.to_owned(),
        ),
        RedisFailurePolicy::Closed => Check::fail(
            "servers",
            "redis",
            format!(
                "{reason}; every limited request is refused while it is down (on_redis_error = \"closed\")"
            ),
            remedy.to_owned(),
        ),
    };
    let answer = redis::Client::open(url)
        .and_then(|c| c.get_connection_with_timeout(timeout))
        .and_then(|mut con| {
            con.set_read_timeout(Some(timeout))?;
            con.set_write_timeout(Some(timeout))?;
            let info: String = redis::cmd("INFO").arg("server").query(&mut con)?;
            let scripted: redis::RedisResult<i64> =
                redis::cmd("EVAL").arg("return 1").arg(0).query(&mut con);
            Ok((info, scripted))
        });
    let (info, scripted) = match answer {
        Ok(a) => a,
        Err(e) => {
            let auth = e.kind() == redis::ErrorKind::AuthenticationFailed
                || e.to_string().contains("WRONGPASS")
                || e.to_string().contains("NOAUTH");
            checks.push(if auth {
                down(
                    format!("{shown} refused the password"),
                    "set the password in limits.redis_url (or HEARTH_REDIS_URL): redis://:PASSWORD@host:port",
                )
            } else {
                down(
                    format!("cannot reach Redis at {shown}: {e}"),
                    "start Redis there, or check the host, port and firewall in limits.redis_url (or HEARTH_REDIS_URL)",
                )
            });
            return;
        }
    };
    let version = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))
        .unwrap_or("unknown")
        .trim()
        .to_owned();
    let major = version
        .split('.')
        .next()
        .and_then(|m| m.parse::<u32>().ok());
    if major.is_some_and(|m| m < MIN_MAJOR) {
        checks.push(Check::fail(
            "servers",
            "redis",
            format!(
                "{shown} runs Redis {version}; the limiter's scripts need {MIN_MAJOR}.0 or newer"
            ),
            "upgrade Redis (Debian 12 ships 7.0), or use backend = \"local\"",
        ));
        return;
    }
    if let Err(e) = scripted {
        checks.push(Check::fail(
            "servers",
            "redis",
            format!("{shown} does not run Lua scripts ({e}); the limiter needs EVAL/EVALSHA"),
            "allow scripting on this Redis (some hosted plans disable it), or use another Redis",
        ));
        return;
    }
    checks.push(Check::ok(
        "servers",
        "redis",
        format!("Redis {version} at {shown} answers; rate limits are counted there"),
    ));
}
