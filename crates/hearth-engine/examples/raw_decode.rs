//! The ceiling for `bench/engine`: a bare loop over `llama-cpp-2`, no server, no
//! scheduler, no channels. It measures prefill of one 512-token prompt, then greedy
//! decoding of 1, 4 and 8 sequences in one batch per step, on the same context
//! settings the engine uses (unified KV cache, n_batch 512, same thread count).
//!
//! Usage: cargo run --release -p hearth-engine --example raw_decode -- MODEL [THREADS] [TOKENS]
//! Prints one JSON object per measurement.
#![allow(clippy::print_stdout, reason = "a benchmark program reports on stdout")]

use std::error::Error;
use std::num::NonZeroU32;
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::sampling::LlamaSampler;

const PROMPT: &str = "The history of the lighthouse is a story of stone, fire and patience. ";

fn main() -> Result<(), Box<dyn Error>> {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .ok_or("usage: raw_decode MODEL [THREADS] [TOKENS]")?;
    let threads: i32 = match args.next() {
        Some(t) => t.parse()?,
        None => i32::try_from(hearth_engine::settings::physical_cores())?,
    };
    let tokens: usize = args.next().map(|t| t.parse()).transpose()?.unwrap_or(128);

    let mut backend = LlamaBackend::init()?;
    backend.void_logs();
    let model = LlamaModel::load_from_file(&backend, &path, &LlamaModelParams::default())?;
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(4096))
        .with_n_batch(512)
        .with_n_ubatch(512)
        .with_n_seq_max(8)
        .with_n_threads(threads)
        .with_n_threads_batch(threads)
        .with_kv_unified(true);
    let mut ctx = model.new_context(&backend, params)?;
    let vocab = model.vocab();

    // Prefill: a 512-token prompt in one batch; the second run is reported.
    let long: Vec<_> = vocab
        .tokenize(PROMPT.repeat(64).as_bytes(), true, false)
        .into_iter()
        .take(512)
        .collect();
    let mut batch = LlamaBatch::new(512, 1);
    let mut prefill = 0.0;
    for _ in 0..2 {
        ctx.clear_kv_cache();
        batch.clear();
        batch.add_sequence(&long, 0, false)?;
        let t = Instant::now();
        ctx.decode(&mut batch)?;
        prefill = long.len() as f64 / t.elapsed().as_secs_f64();
    }
    println!(
        "{{\"kind\":\"prefill\",\"threads\":{threads},\"prompt_tokens\":{},\"tok_s\":{prefill:.1}}}",
        long.len()
    );

    let short = vocab.tokenize(b"<|im_start|>user\nWrite a long story about a lighthouse keeper.<|im_end|>\n<|im_start|>assistant\n", true, true);
    for n in [1usize, 4, 8] {
        // The median of three runs: this box is shared, single runs are noisy.
        let mut runs = Vec::new();
        for _ in 0..3 {
            runs.push(decode_run(&mut ctx, &mut batch, &short, n, tokens)?);
        }
        runs.sort_by(f64::total_cmp);
        println!(
            "{{\"kind\":\"decode\",\"threads\":{threads},\"sequences\":{n},\"tokens_per_sequence\":{tokens},\"tok_s\":{:.1},\"runs\":{runs:?}}}",
            runs[1]
        );
    }
    println!(
        "{{\"kind\":\"rss\",\"peak_rss_mib\":{:.1}}}",
        peak_rss_mib()
    );
    Ok(())
}

/// Prefills `n` copies of `short`, then decodes `tokens` steps of `n` tokens;
/// returns the aggregate decode tok/s.
fn decode_run(
    ctx: &mut llama_cpp_2::context::LlamaContext<'_>,
    batch: &mut LlamaBatch<'_>,
    short: &[llama_cpp_2::token::LlamaToken],
    n: usize,
    tokens: usize,
) -> Result<f64, Box<dyn Error>> {
    {
        ctx.clear_kv_cache();
        let mut samplers: Vec<LlamaSampler> = (0..n).map(|_| LlamaSampler::greedy()).collect();
        let mut last = Vec::with_capacity(n);
        // Prefill every sequence's prompt in one batch.
        batch.clear();
        let mut logits_at = Vec::new();
        for s in 0..n {
            for (i, &t) in short.iter().enumerate() {
                let is_last = i + 1 == short.len();
                if is_last {
                    logits_at.push(batch.n_tokens());
                }
                batch.add(t, i32::try_from(i)?, &[i32::try_from(s)?], is_last)?;
            }
        }
        ctx.decode(batch)?;
        for (s, idx) in logits_at.iter().enumerate() {
            last.push(samplers[s].sample(ctx, *idx));
        }
        // Decode: one token per sequence per step; end-of-generation is ignored so
        // every sequence decodes exactly `tokens` tokens.
        let t = Instant::now();
        for step in 0..tokens {
            batch.clear();
            for (s, &tok) in last.iter().enumerate() {
                batch.add(
                    tok,
                    i32::try_from(short.len() + step)?,
                    &[i32::try_from(s)?],
                    true,
                )?;
            }
            ctx.decode(batch)?;
            for (s, tok) in last.iter_mut().enumerate() {
                *tok = samplers[s].sample(ctx, i32::try_from(s)?);
            }
        }
        Ok((n * tokens) as f64 / t.elapsed().as_secs_f64())
    }
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
