//! `fake-upstream [PORT] [--chunks N] [--chunk-delay-ms MS]`: the test double as a
//! process, for the SDK suite and benchmarks (slow streams hold connections open).
//! Prints `listening on http://ADDR/v1` and serves until killed.
#![allow(clippy::print_stdout)]

use std::io::Write;
use std::time::Duration;

use hearth_testkit::{Behaviour, FakeUpstream};

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| -> Option<u64> {
        let i = args.iter().position(|a| a == name)?;
        args.get(i + 1)?.parse().ok()
    };
    let port: u16 = args.first().and_then(|p| p.parse().ok()).unwrap_or(0);
    let up = FakeUpstream::start_on(port).await?;
    if let (Some(chunks), Some(delay)) = (flag("--chunks"), flag("--chunk-delay-ms")) {
        let text: String = (0..chunks).map(|i| format!("w{i} ")).collect();
        up.set_default(Behaviour::slow(
            &text,
            chunks as usize,
            Duration::from_millis(delay),
        ));
    }
    println!("listening on {}", up.base_url());
    std::io::stdout().flush()?;
    std::future::pending::<()>().await;
    Ok(())
}
