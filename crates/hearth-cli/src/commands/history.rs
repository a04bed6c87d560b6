//! `hearth history`: the chat UI's conversations from a terminal. A list, newest
//! first (searched like the UI's sidebar), or one conversation whole, as Markdown
//! or JSON (the UI's export). The key sees only its own conversations, as in the
//! browser; `hearth chat --resume ID` goes on with one.

use std::process::ExitCode;

use serde_json::Value;

use super::client::{Client, ServerArgs};
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  hearth history                        the 20 newest conversations
  hearth history --search lisbon        those whose title or messages say it
  hearth history 0b6f… > trip.md        one conversation as Markdown
  hearth chat --resume 0b6f…            go on with it")]
pub struct HistoryArgs {
    /// One conversation to print whole (its id, or its address `…/c/ID`):
    /// Markdown, or with --json the UI's JSON export. Without it: the list.
    #[arg(value_name = "ID")]
    pub id: Option<String>,
    /// Only conversations whose title or messages contain this text.
    #[arg(long, short, value_name = "TEXT", conflicts_with = "id")]
    pub search: Option<String>,
    /// How many conversations to list (1 to 200), newest first.
    #[arg(
        long,
        short = 'n',
        value_name = "N",
        default_value_t = 20,
        conflicts_with = "id"
    )]
    pub limit: u32,
    /// Print the server's JSON instead of the table (or the Markdown).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub server: ServerArgs,
}

pub fn run(args: HistoryArgs) -> ExitCode {
    super::finish(async {
        match &args.id {
            Some(id) => show(&args, id).await,
            None => list(&args).await,
        }
    })
}

async fn list(args: &HistoryArgs) -> Result<(), String> {
    let client = Client::new(&args.server)?;
    let mut query = vec![("limit", args.limit.to_string())];
    if let Some(s) = args.search.as_deref().filter(|s| !s.trim().is_empty()) {
        query.push(("search", s.to_owned()));
    }
    let page = client
        .send_json(
            client
                .request(reqwest::Method::GET, "/api/hearth/conversations")
                .query(&query),
        )
        .await?;
    let data = page["data"]
        .as_array()
        .ok_or("the server's answer has no list of conversations")?;
    if args.json {
        output::line(page);
    } else if data.is_empty() {
        output::line(if args.search.is_some() {
            "No conversation says that."
        } else {
            "No conversations yet: `hearth chat --save` or the chat UI makes one."
        });
    } else {
        output::line(table(data));
        if !page["next_cursor"].is_null() {
            output::err(format!(
                "(more than {}: --limit N lists more, --search TEXT finds one)",
                data.len()
            ));
        }
    }
    Ok(())
}

async fn show(args: &HistoryArgs, which: &str) -> Result<(), String> {
    let id = conversation_id(which)?;
    let client = Client::new(&args.server)?;
    let format = if args.json { "json" } else { "markdown" };
    let resp = client
        .send(client.request(
            reqwest::Method::GET,
            &format!("/api/hearth/conversations/{id}/export?format={format}"),
        ))
        .await?;
    let text = resp
        .text()
        .await
        .map_err(|e| format!("the server's answer cannot be read: {e}"))?;
    output::text(&text);
    if !text.ends_with('\n') {
        output::text("\n");
    }
    Ok(())
}

/// A conversation's id from the id itself or the UI's address of it
/// (`https://host/c/ID`).
pub fn conversation_id(which: &str) -> Result<&str, String> {
    let id = which.trim().trim_end_matches('/');
    let id = id.rsplit_once("/c/").map_or(id, |(_, id)| id);
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
        return Err(format!(
            "'{which}' is not a conversation's id (a UUID, as in the chat UI's address /c/ID)"
        ));
    }
    Ok(id)
}

/// One row a conversation: its id (what --resume takes), when it last changed
/// (UTC), its model, its title.
fn table(conversations: &[Value]) -> String {
    let mut rows = vec![["ID", "UPDATED (UTC)", "MODEL", "TITLE"].map(str::to_owned)];
    for c in conversations {
        rows.push([
            c["id"].as_str().unwrap_or("?").to_owned(),
            c["updated_at"]
                .as_i64()
                .map_or_else(|| "?".to_owned(), utc_minute),
            c["model"].as_str().unwrap_or("default").to_owned(),
            c["title"]
                .as_str()
                .filter(|t| !t.is_empty())
                .unwrap_or("New chat")
                .to_owned(),
        ]);
    }
    output::columns(&rows)
}

/// Milliseconds since the epoch as `2026-12-03 09:14`.
fn utc_minute(ms: i64) -> String {
    match time::OffsetDateTime::from_unix_timestamp(ms.div_euclid(1000)) {
        Ok(t) => format!(
            "{}-{:02}-{:02} {:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute()
        ),
        Err(_) => "?".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn each_conversation_is_a_row_newest_first() {
        let list = [
            json!({"id": "0b6f3c9e-1111-4111-8111-111111111111", "title": "Plan a trip to Lisbon",
                   "model": "qwen", "updated_at": 1_764_753_240_000_i64}),
            json!({"id": "22222222-2222-4222-8222-222222222222", "title": "", "model": null,
                   "updated_at": 0}),
        ];
        assert_eq!(
            table(&list),
            "ID                                    UPDATED (UTC)     MODEL    TITLE\n\
             0b6f3c9e-1111-4111-8111-111111111111  2025-12-03 09:14  qwen     Plan a trip to Lisbon\n\
             22222222-2222-4222-8222-222222222222  1970-01-01 00:00  default  New chat"
        );
    }

    #[test]
    fn an_id_or_the_uis_address_of_it() {
        let id = "0b6f3c9e-1111-4111-8111-111111111111";
        assert_eq!(conversation_id(id), Ok(id));
        assert_eq!(
            conversation_id(&format!("https://ai.example.org/c/{id}/")),
            Ok(id)
        );
        assert!(conversation_id("../../v1/models").is_err());
        assert!(conversation_id("").is_err());
    }
}
