//! Images in chat messages, on a model configured with a multimodal projector
//! (`mmproj`), through llama.cpp's `mtmd` library.
//!
//! The intake thread renders the chat with a marker where each image was,
//! tokenizes the text between markers as usual, and has `mtmd` decode each image
//! (PNG, JPEG, GIF, BMP… as `stb_image` reads them) into the chunk its projector
//! turns into embeddings. In the prompt an image is a span of placeholder tokens,
//! one per position it takes, all one id made from the image's bytes: the same
//! image in the next turn of a conversation matches, so its cells are reused
//! like any cached prefix, and a different image never does. The placeholders are
//! never decoded as tokens: when the prefill reaches a span, the decode thread
//! evaluates the image there ([`Vision::eval`]: the vision tower, then a decode of
//! its embeddings into the sequence), and the text after it goes on in the batch.

use std::hash::{Hash, Hasher};
use std::sync::Mutex;

use hearth_api::ApiError;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::mtmd::{
    MtmdBitmap, MtmdContext, MtmdContextParams, MtmdInputChunks, MtmdInputText,
};
use llama_cpp_2::token::LlamaToken;

use crate::settings::Settings;

/// The projector of one model, shared by its intake thread (which decodes and
/// tokenizes images) and its decode thread (which evaluates them).
pub struct Vision {
    ctx: Mutex<MtmdContext>,
    marker: String,
}

/// One image of a prompt, waiting for the prefill to reach it.
pub struct Media {
    /// Where its span starts in the prompt, and how many positions it takes.
    pub at: usize,
    pub len: usize,
    /// What `mtmd` made of it: the image chunk (with, for some projectors, the
    /// text tokens that frame an image).
    pub chunks: MtmdInputChunks,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media")
            .field("at", &self.at)
            .field("len", &self.len)
            .finish()
    }
}

/// Whether `t` is an image's placeholder rather than a token of the vocabulary.
pub fn is_placeholder(t: LlamaToken) -> bool {
    t.0 < 0
}

impl Vision {
    /// Loads the projector for `model`; says why not (a missing file, a projector
    /// made for a model of another width, a kind of projector Hearth cannot place).
    pub fn load(model: &LlamaModel, s: &Settings) -> Result<Option<Vision>, String> {
        let Some(path) = &s.mmproj else {
            return Ok(None);
        };
        if !path.is_file() {
            return Err(format!(
                "model `{}`: the projector file `mmproj` = {} does not exist",
                s.name,
                path.display()
            ));
        }
        let marker = llama_cpp_2::mtmd::mtmd_default_marker().to_owned();
        let params = MtmdContextParams {
            use_gpu: s.gpu_layers > 0,
            print_timings: false,
            n_threads: i32::try_from(s.threads).unwrap_or(1),
            media_marker: std::ffi::CString::new(marker.clone()).map_err(|e| e.to_string())?,
            image_min_tokens: -1,
            image_max_tokens: -1,
        };
        let path_text = path.to_string_lossy();
        let ctx = MtmdContext::init_from_file(&path_text, model, &params).map_err(|e| {
            format!(
                "model `{}`: cannot load the projector {} ({e}); is it the `mmproj` published with this model? llama.cpp's log above says why",
                s.name,
                path.display()
            )
        })?;
        if !ctx.support_vision() {
            return Err(format!(
                "model `{}`: the projector {} has no vision encoder (an audio projector?)",
                s.name,
                path.display()
            ));
        }
        if ctx.decode_use_mrope() {
            return Err(format!(
                "model `{}`: the projector {} places images with M-RoPE positions (the Qwen2-VL family), which Hearth's engine does not do yet; serve this model through llama-server or vLLM as an upstream",
                s.name,
                path.display()
            ));
        }
        Ok(Some(Vision {
            ctx: Mutex::new(ctx),
            marker,
        }))
    }

    /// The tokens of a rendered prompt holding one marker per image, in order,
    /// with each image a span of placeholders, and the images to evaluate.
    /// `images` are the files' bytes; one that cannot be decoded is a 400 naming
    /// which.
    pub fn tokenize(
        &self,
        model: &LlamaModel,
        text: &str,
        images: &[Vec<u8>],
    ) -> Result<(Vec<LlamaToken>, Vec<Media>), ApiError> {
        let pieces: Vec<&str> = text.split(self.marker.as_str()).collect();
        if pieces.len() != images.len() + 1 {
            return Err(ApiError::invalid_param(
                "messages",
                format!(
                    "the messages hold {} image(s) but the text says `{}` {} time(s): that text is how this model marks an image, so it cannot appear in a message",
                    images.len(),
                    self.marker,
                    pieces.len() - 1
                ),
            ));
        }
        let ctx = self.ctx.lock().unwrap_or_else(|e| e.into_inner());
        let vocab = model.vocab();
        let mut tokens = Vec::new();
        let mut media = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            tokens.extend(vocab.tokenize(piece.as_bytes(), i == 0, true));
            let Some(bytes) = images.get(i) else { break };
            let bad = |why: String| {
                ApiError::invalid_param(
                    "messages",
                    format!("image {} of the messages: {why}", i + 1),
                )
                .with_code("invalid_image")
            };
            let bitmap = MtmdBitmap::from_buffer(&ctx, bytes, false).map_err(|_| {
                bad("cannot be decoded (Hearth reads PNG, JPEG, GIF, BMP and the other formats stb_image reads)".into())
            })?;
            let chunks = ctx
                .tokenize(
                    MtmdInputText {
                        text: self.marker.clone(),
                        add_special: false,
                        parse_special: true,
                    },
                    &[&bitmap],
                )
                .map_err(|e| bad(format!("the projector cannot take it ({e})")))?;
            let len = chunks.total_tokens();
            media.push(Media {
                at: tokens.len(),
                len,
                chunks,
            });
            tokens.extend(std::iter::repeat_n(placeholder(bytes), len));
        }
        Ok((tokens, media))
    }

    /// Evaluates `media` into sequence `seq` at its place: the vision tower, then
    /// its embeddings decoded in batches of `n_batch`. On the decode thread.
    pub fn eval(
        &self,
        ctx: &mut LlamaContext<'_>,
        media: &Media,
        seq: i32,
        n_batch: i32,
    ) -> Result<(), String> {
        let mut mtmd = self.ctx.lock().unwrap_or_else(|e| e.into_inner());
        let at = i32::try_from(media.at).map_err(|e| e.to_string())?;
        let end = media
            .chunks
            .eval_chunks(&mut mtmd, ctx, at, seq, n_batch, false)
            .map_err(|e| format!("evaluating an image failed: {e}"))?;
        if usize::try_from(end - at).ok() != Some(media.len) {
            return Err(format!(
                "an image took {} positions where {} were planned",
                end - at,
                media.len
            ));
        }
        Ok(())
    }
}

/// The placeholder of an image: a negative id (no token has one) made from its
/// bytes, never -1 (llama.cpp's "no token").
fn placeholder(bytes: &[u8]) -> LlamaToken {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    let bits = i32::try_from(h.finish() & 0x3fff_ffff).unwrap_or(0);
    LlamaToken::new(-2 - bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_negative_per_image_and_never_minus_one() {
        let a = placeholder(b"one image");
        assert!(is_placeholder(a) && a.0 != -1);
        assert_eq!(a, placeholder(b"one image"));
        assert_ne!(a, placeholder(b"another image"));
        assert!(!is_placeholder(LlamaToken::new(0)));
    }
}
