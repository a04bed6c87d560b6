//! `hearth keys`: every API key of a running Hearth, its limits and where its token
//! budget stands this period (`GET /api/hearth/keys`, an admin key's view): who
//! used how much, and when it renews.

use std::process::ExitCode;

use serde_json::Value;

use super::client::{Client, ServerArgs};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(flatten)]
    pub server: ServerArgs,
    /// Print the server's JSON (`{"object":"list","data":[…]}`) instead of the table.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: KeysArgs) -> ExitCode {
    super::finish(list(&args))
}

async fn list(args: &KeysArgs) -> Result<(), String> {
    let client = Client::new(&args.server)?;
    let body = client.get_json("/api/hearth/keys").await?;
    let keys = body["data"]
        .as_array()
        .ok_or("the server's answer has no list of keys")?;
    if args.json {
        output::line(body.to_string());
    } else if keys.is_empty() {
        output::line(
            "This server has no API keys ([[keys]] or HEARTH_API_KEYS): it answers without one, on loopback only.",
        );
    } else {
        output::line(table(keys));
    }
    Ok(())
}

const HEADER: [&str; 8] = [
    "KEY", "ADMIN", "RPM", "TPM", "BUDGET", "USED", "LEFT", "RENEWS",
];

/// One row a key, columns padded to their widest cell; `-` where a limit or a
/// budget is not set.
fn table(keys: &[Value]) -> String {
    let limit = |v: &Value| match v.as_u64() {
        Some(0) | None => "-".to_owned(),
        Some(n) => n.to_string(),
    };
    let mut rows: Vec<[String; 8]> = vec![HEADER.map(str::to_owned)];
    for k in keys {
        let b = &k["budget"];
        let (budget, used, left, renews) = if b.is_object() {
            (
                format!(
                    "{}/{}",
                    b["tokens"].as_u64().unwrap_or(0),
                    b["period"].as_str().unwrap_or("?")
                ),
                b["used"].as_u64().unwrap_or(0).to_string(),
                b["remaining"].as_u64().unwrap_or(0).to_string(),
                b["renews_at"].as_str().unwrap_or("").to_owned(),
            )
        } else {
            ("-".into(), "-".into(), "-".into(), "-".into())
        };
        rows.push([
            k["key"].as_str().unwrap_or("?").to_owned(),
            if k["admin"] == true { "yes" } else { "no" }.to_owned(),
            limit(&k["rpm"]),
            limit(&k["tpm"]),
            budget,
            used,
            left,
            renews,
        ]);
    }
    output::columns(&rows)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_key_is_a_row_and_what_is_unset_a_dash() {
        let keys = [
            json!({"key": "alice", "admin": false, "rpm": 60, "tpm": 0, "budget": {
                "tokens": 2_000_000, "period": "month", "used": 18_500, "remaining": 1_981_500,
                "renews_at": "2027-01-01T00:00:00Z"}}),
            json!({"key": "root", "admin": true, "rpm": 0, "tpm": 0, "budget": null}),
        ];
        assert_eq!(
            table(&keys),
            "KEY    ADMIN  RPM  TPM  BUDGET         USED   LEFT     RENEWS\n\
             alice  no     60   -    2000000/month  18500  1981500  2027-01-01T00:00:00Z\n\
             root   yes    -    -    -              -      -        -"
        );
    }
}
