//! Embeds the built chat UI (`web/dist`) into the binary.
//!
//! Writes `$OUT_DIR/ui_assets.rs`: one entry per file, with its bytes (and a gzip
//! copy for text files) included at compile time. When `web/dist` has not been
//! built, a one-page fallback says how to build it, so the crate always compiles.
//! `HEARTH_UI_DIST` points at another build directory.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

const FALLBACK: &str = "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"color-scheme\" content=\"light dark\"><title>Hearth</title></head>\
<body style=\"font-family:system-ui;max-width:40rem;margin:4rem auto;padding:0 1rem\">\
<h1>Hearth</h1><p>The chat UI was not built into this binary. Run <code>make run</code> \
(or <code>npm ci &amp;&amp; npm run build</code> in <code>web/</code>, then rebuild).</p>\
<p>The OpenAI-compatible API is at <code>/v1</code>.</p></body></html>";

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = std::env::var_os("HEARTH_UI_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest.join("../../web/dist"));
    println!("cargo:rerun-if-env-changed=HEARTH_UI_DIST");
    println!("cargo:rerun-if-changed={}", dist.display());
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default());

    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        collect(&dist, &dist, &mut files);
        println!(
            "cargo:rerun-if-changed={}",
            dist.join("index.html").display()
        );
    } else {
        let fallback = out.join("ui-fallback");
        let _ = std::fs::create_dir_all(&fallback);
        let _ = std::fs::write(fallback.join("index.html"), FALLBACK);
        files.push(("/index.html".to_owned(), fallback.join("index.html")));
        println!(
            "cargo:warning=web/dist is not built; the binary serves a page that says to run `make run`"
        );
    }
    files.sort();

    let mut code = String::from(
        "/// A file of the UI build: its path, bytes, and gzip bytes when worth it.\n",
    );
    code.push_str("pub type Asset = (&'static str, &'static [u8], Option<&'static [u8]>);\n");
    code.push_str("pub static ASSETS: &[Asset] = &[\n");
    for (i, (url, path)) in files.iter().enumerate() {
        let gz = if compressible(url) {
            gzip(path, &out.join(format!("ui-{i}.gz")))
        } else {
            None
        };
        let _ = writeln!(
            code,
            "    ({url:?}, include_bytes!({:?}), {}),",
            path.display().to_string(),
            match gz {
                Some(g) => format!("Some(include_bytes!({:?}))", g.display().to_string()),
                None => "None".to_owned(),
            }
        );
    }
    code.push_str("];\n");
    let _ = std::fs::write(out.join("ui_assets.rs"), code);
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(root, &p, files);
        } else if let Ok(rel) = p.strip_prefix(root) {
            let url = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
            files.push((url, p.canonicalize().unwrap_or(p)));
        }
    }
}

fn compressible(url: &str) -> bool {
    [".js", ".css", ".html", ".svg", ".json", ".txt", ".map"]
        .iter()
        .any(|e| url.ends_with(e))
}

/// Gzips `src` into `dst` when that saves space.
fn gzip(src: &Path, dst: &Path) -> Option<PathBuf> {
    let data = std::fs::read(src).ok()?;
    if data.len() < 1024 {
        return None;
    }
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    enc.write_all(&data).ok()?;
    let gz = enc.finish().ok()?;
    if gz.len() >= data.len() {
        return None;
    }
    std::fs::write(dst, gz).ok()?;
    Some(dst.to_path_buf())
}
