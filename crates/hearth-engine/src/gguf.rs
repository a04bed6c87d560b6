//! A GGUF header reader in plain Rust: enough to validate a file before llama.cpp
//! sees it (magic, version, a complete header, tensor data within the file) and to
//! show its metadata (architecture, quantization, context length) in `hearth models
//! list` without loading the weights.
//!
//! llama.cpp would reject most bad files too, but only after starting to load them
//! and with the reason in its own log; reading the header first gives the user one
//! precise message naming the path and the problem, in milliseconds.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

const MAGIC: &[u8; 4] = b"GGUF";
/// Upper bound for one metadata string; the longest real ones (chat templates) are
/// a few kilobytes. Anything larger means a corrupt length field.
const MAX_STRING: u64 = 64 << 20;
const MAX_DIMS: u32 = 8;

/// Why a file is not a usable GGUF model.
#[derive(Debug, thiserror::Error)]
pub enum GgufError {
    #[error("model file {path} does not exist")]
    NotFound { path: PathBuf },
    #[error("cannot read model file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} is not a GGUF model file (it starts with {found:?}, not \"GGUF\")")]
    NotGguf { path: PathBuf, found: String },
    #[error("{path} uses GGUF version {version}, which is not supported (versions 2 and 3 are)")]
    UnsupportedVersion { path: PathBuf, version: u32 },
    #[error("{path} is truncated: {detail} (file size {size} bytes); download it again")]
    Truncated {
        path: PathBuf,
        detail: String,
        size: u64,
    },
    #[error("{path} is corrupt: {detail}")]
    Corrupt { path: PathBuf, detail: String },
}

/// A metadata value, as far as we keep it.
#[derive(Debug, Clone, PartialEq)]
pub enum MetaValue {
    Int(i128),
    Float(f64),
    Bool(bool),
    Str(String),
    /// Arrays are skipped; their element count is kept.
    Array(u64),
}

impl MetaValue {
    pub fn as_u64(&self) -> Option<u64> {
        match self {
            MetaValue::Int(i) => u64::try_from(*i).ok(),
            _ => None,
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }
}

/// What `hearth models list` shows, and what the engine checks before loading.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufInfo {
    pub path: PathBuf,
    pub version: u32,
    pub file_size: u64,
    pub tensor_count: u64,
    /// Weights, summed over tensor shapes.
    pub parameter_count: u64,
    pub metadata: BTreeMap<String, MetaValue>,
    /// The most common tensor type, used when `general.file_type` is absent.
    dominant_tensor_type: Option<u32>,
}

impl GgufInfo {
    pub fn get(&self, key: &str) -> Option<&MetaValue> {
        self.metadata.get(key)
    }

    /// `general.architecture`, e.g. `llama`.
    pub fn architecture(&self) -> Option<&str> {
        self.get("general.architecture").and_then(MetaValue::as_str)
    }

    /// `general.name`, e.g. `SmolLM2 135M Instruct`.
    pub fn name(&self) -> Option<&str> {
        self.get("general.name").and_then(MetaValue::as_str)
    }

    /// The training context length (`<arch>.context_length`).
    pub fn context_length(&self) -> Option<u64> {
        let arch = self.architecture()?;
        self.get(&format!("{arch}.context_length"))
            .and_then(MetaValue::as_u64)
    }

    /// Quantization, e.g. `Q4_1`, from `general.file_type` or the tensors.
    pub fn quantization(&self) -> Option<String> {
        if let Some(name) = self
            .get("general.file_type")
            .and_then(MetaValue::as_u64)
            .and_then(file_type_name)
        {
            return Some(name.to_owned());
        }
        self.dominant_tensor_type
            .and_then(tensor_type_name)
            .map(str::to_owned)
    }

    pub fn has_chat_template(&self) -> bool {
        self.metadata.contains_key("tokenizer.chat_template")
    }
}

/// Reads and checks the header of `path`: magic, version, metadata, tensor table,
/// and that every tensor's data lies within the file.
pub fn inspect(path: &Path) -> Result<GgufInfo, GgufError> {
    let file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => GgufError::NotFound {
            path: path.to_owned(),
        },
        _ => GgufError::Io {
            path: path.to_owned(),
            source: e,
        },
    })?;
    let io_err = |e: io::Error| GgufError::Io {
        path: path.to_owned(),
        source: e,
    };
    let file_size = file.metadata().map_err(io_err)?.len();
    if file.metadata().map_err(io_err)?.is_dir() {
        return Err(GgufError::Corrupt {
            path: path.to_owned(),
            detail: "it is a directory".into(),
        });
    }
    inspect_reader(path, BufReader::new(file), file_size)
}

/// [`inspect`] over any seekable reader of `file_size` bytes, named `path` in
/// messages. The fuzz targets (crates/hearth-fuzz) feed it bytes in memory.
#[doc(hidden)]
pub fn inspect_reader<R: Read + Seek>(
    path: &Path,
    inner: R,
    file_size: u64,
) -> Result<GgufInfo, GgufError> {
    let mut r = Reader {
        inner,
        pos: 0,
        size: file_size,
    };
    read_header(&mut r, path, file_size).map_err(|e| match e {
        ReadError::Eof(what) => GgufError::Truncated {
            path: path.to_owned(),
            detail: format!("the header ends inside {what}"),
            size: file_size,
        },
        ReadError::Io(source) => GgufError::Io {
            path: path.to_owned(),
            source,
        },
        ReadError::Gguf(e) => e,
    })
}

enum ReadError {
    /// The file ended while reading the named part.
    Eof(&'static str),
    Io(io::Error),
    Gguf(GgufError),
}

struct Reader<R> {
    inner: R,
    pos: u64,
    size: u64,
}

impl<R: Read + Seek> Reader<R> {
    fn bytes<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], ReadError> {
        let mut buf = [0u8; N];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => ReadError::Eof(what),
                _ => ReadError::Io(e),
            })?;
        self.pos += N as u64;
        Ok(buf)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, ReadError> {
        Ok(u32::from_le_bytes(self.bytes(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, ReadError> {
        Ok(u64::from_le_bytes(self.bytes(what)?))
    }

    /// A string's length, checked against the bytes left in the file.
    fn string_len(&mut self, what: &'static str) -> Result<u64, ReadError> {
        let len = self.u64(what)?;
        if len > self.size.saturating_sub(self.pos) {
            return Err(ReadError::Eof(what));
        }
        Ok(len)
    }

    fn string(&mut self, what: &'static str, path: &Path) -> Result<String, ReadError> {
        let len = self.string_len(what)?;
        if len > MAX_STRING {
            return Err(corrupt(path, format!("a {what} claims {len} bytes")));
        }
        let mut buf = vec![0u8; len as usize];
        self.inner
            .read_exact(&mut buf)
            .map_err(|e| match e.kind() {
                io::ErrorKind::UnexpectedEof => ReadError::Eof(what),
                _ => ReadError::Io(e),
            })?;
        self.pos += len;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }

    fn skip(&mut self, n: u64, what: &'static str) -> Result<(), ReadError> {
        if n > self.size.saturating_sub(self.pos) {
            return Err(ReadError::Eof(what));
        }
        let off = i64::try_from(n).map_err(|_| ReadError::Eof(what))?;
        self.inner.seek_relative(off).map_err(ReadError::Io)?;
        self.pos += n;
        Ok(())
    }
}

fn corrupt(path: &Path, detail: String) -> ReadError {
    ReadError::Gguf(GgufError::Corrupt {
        path: path.to_owned(),
        detail,
    })
}

fn read_header<R: Read + Seek>(
    r: &mut Reader<R>,
    path: &Path,
    file_size: u64,
) -> Result<GgufInfo, ReadError> {
    let magic: [u8; 4] = match r.bytes("the magic number") {
        Ok(m) => m,
        Err(ReadError::Eof(_)) if file_size < 4 => {
            return Err(ReadError::Gguf(GgufError::NotGguf {
                path: path.to_owned(),
                found: format!("{file_size} bytes"),
            }));
        }
        Err(e) => return Err(e),
    };
    if &magic != MAGIC {
        return Err(ReadError::Gguf(GgufError::NotGguf {
            path: path.to_owned(),
            found: String::from_utf8_lossy(&magic).into_owned(),
        }));
    }
    let version = r.u32("the version")?;
    if !(2..=3).contains(&version) {
        return Err(ReadError::Gguf(GgufError::UnsupportedVersion {
            path: path.to_owned(),
            version,
        }));
    }
    let tensor_count = r.u64("the tensor count")?;
    let kv_count = r.u64("the metadata count")?;
    // Counts are not trusted for allocation: each entry is read (and bounds-checked)
    // one by one, so a corrupt count ends in a precise "truncated" error.

    let mut metadata = BTreeMap::new();
    for _ in 0..kv_count {
        let key = r.string("a metadata key", path)?;
        let ty = r.u32("a metadata type")?;
        let value = read_value(r, ty, path)?;
        metadata.insert(key, value);
    }

    let mut max_end = 0u64;
    let mut parameter_count = 0u64;
    let mut type_counts: BTreeMap<u32, u64> = BTreeMap::new();
    for _ in 0..tensor_count {
        let name = r.string("a tensor name", path)?;
        let n_dims = r.u32("a tensor's dimension count")?;
        if n_dims > MAX_DIMS {
            return Err(corrupt(
                path,
                format!("tensor {name} has {n_dims} dimensions"),
            ));
        }
        let mut elements = 1u64;
        for _ in 0..n_dims {
            elements = elements.saturating_mul(r.u64("a tensor dimension")?);
        }
        let ty = r.u32("a tensor type")?;
        let offset = r.u64("a tensor offset")?;
        parameter_count = parameter_count.saturating_add(elements);
        // Saturating: the dimensions are the file's, any size (found by fuzzing).
        let count = type_counts.entry(ty).or_default();
        *count = count.saturating_add(elements);
        if let Some((block, bytes)) = tensor_type_size(ty) {
            let size = elements.div_ceil(block).saturating_mul(bytes);
            max_end = max_end.max(offset.saturating_add(size));
        }
    }

    let alignment = metadata
        .get("general.alignment")
        .and_then(MetaValue::as_u64)
        .unwrap_or(32)
        .max(1);
    let data_start = r.pos.div_ceil(alignment).saturating_mul(alignment);
    let needed = data_start.saturating_add(max_end);
    if tensor_count > 0 && needed > file_size {
        return Err(ReadError::Gguf(GgufError::Truncated {
            path: path.to_owned(),
            detail: format!("its tensors need {needed} bytes"),
            size: file_size,
        }));
    }
    // Weights (2-D and up) dominate; 1-D norms are F32 in every quantization.
    let dominant_tensor_type = type_counts.iter().max_by_key(|(_, n)| **n).map(|(t, _)| *t);
    Ok(GgufInfo {
        path: path.to_owned(),
        version,
        file_size,
        tensor_count,
        parameter_count,
        metadata,
        dominant_tensor_type,
    })
}

fn read_value<R: Read + Seek>(
    r: &mut Reader<R>,
    ty: u32,
    path: &Path,
) -> Result<MetaValue, ReadError> {
    const W: &str = "a metadata value";
    Ok(match ty {
        0 => MetaValue::Int(i128::from(r.bytes::<1>(W)?[0])),
        1 => MetaValue::Int(i128::from(i8::from_le_bytes(r.bytes(W)?))),
        2 => MetaValue::Int(i128::from(u16::from_le_bytes(r.bytes(W)?))),
        3 => MetaValue::Int(i128::from(i16::from_le_bytes(r.bytes(W)?))),
        4 => MetaValue::Int(i128::from(r.u32(W)?)),
        5 => MetaValue::Int(i128::from(i32::from_le_bytes(r.bytes(W)?))),
        6 => MetaValue::Float(f64::from(f32::from_le_bytes(r.bytes(W)?))),
        7 => MetaValue::Bool(r.bytes::<1>(W)?[0] != 0),
        8 => MetaValue::Str(r.string(W, path)?),
        9 => {
            let elem = r.u32("an array type")?;
            let count = r.u64("an array length")?;
            skip_array(r, elem, count, path)?;
            MetaValue::Array(count)
        }
        10 => MetaValue::Int(i128::from(r.u64(W)?)),
        11 => MetaValue::Int(i128::from(i64::from_le_bytes(r.bytes(W)?))),
        12 => MetaValue::Float(f64::from_le_bytes(r.bytes(W)?)),
        other => return Err(corrupt(path, format!("unknown metadata type {other}"))),
    })
}

fn skip_array<R: Read + Seek>(
    r: &mut Reader<R>,
    elem: u32,
    count: u64,
    path: &Path,
) -> Result<(), ReadError> {
    const W: &str = "a metadata array";
    let width = match elem {
        0 | 1 | 7 => 1,
        2 | 3 => 2,
        4..=6 => 4,
        10..=12 => 8,
        8 => {
            for _ in 0..count {
                let len = r.string_len(W)?;
                r.skip(len, W)?;
            }
            return Ok(());
        }
        other => {
            return Err(corrupt(
                path,
                format!("unsupported array element type {other}"),
            ));
        }
    };
    r.skip(count.saturating_mul(width), W)
}

/// `(elements per block, bytes per block)` of a ggml tensor type, from ggml's type
/// traits. Unknown (newer) types are skipped by the bounds check.
fn tensor_type_size(ty: u32) -> Option<(u64, u64)> {
    Some(match ty {
        0 => (1, 4),      // F32
        1 => (1, 2),      // F16
        2 => (32, 18),    // Q4_0
        3 => (32, 20),    // Q4_1
        6 => (32, 22),    // Q5_0
        7 => (32, 24),    // Q5_1
        8 => (32, 34),    // Q8_0
        9 => (32, 36),    // Q8_1
        10 => (256, 84),  // Q2_K
        11 => (256, 110), // Q3_K
        12 => (256, 144), // Q4_K
        13 => (256, 176), // Q5_K
        14 => (256, 210), // Q6_K
        15 => (256, 292), // Q8_K
        16 => (256, 66),  // IQ2_XXS
        17 => (256, 74),  // IQ2_XS
        18 => (256, 98),  // IQ3_XXS
        19 => (256, 50),  // IQ1_S
        20 => (32, 18),   // IQ4_NL
        21 => (256, 110), // IQ3_S
        22 => (256, 82),  // IQ2_S
        23 => (256, 136), // IQ4_XS
        24 => (1, 1),     // I8
        25 => (1, 2),     // I16
        26 => (1, 4),     // I32
        27 => (1, 8),     // I64
        28 => (1, 8),     // F64
        29 => (256, 56),  // IQ1_M
        30 => (1, 2),     // BF16
        34 => (256, 54),  // TQ1_0
        35 => (256, 66),  // TQ2_0
        39 => (32, 17),   // MXFP4
        _ => return None,
    })
}

fn tensor_type_name(ty: u32) -> Option<&'static str> {
    Some(match ty {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        6 => "Q5_0",
        7 => "Q5_1",
        8 => "Q8_0",
        10 => "Q2_K",
        11 => "Q3_K",
        12 => "Q4_K",
        13 => "Q5_K",
        14 => "Q6_K",
        16 => "IQ2_XXS",
        17 => "IQ2_XS",
        18 => "IQ3_XXS",
        19 => "IQ1_S",
        20 => "IQ4_NL",
        21 => "IQ3_S",
        22 => "IQ2_S",
        23 => "IQ4_XS",
        29 => "IQ1_M",
        30 => "BF16",
        34 => "TQ1_0",
        35 => "TQ2_0",
        39 => "MXFP4",
        _ => return None,
    })
}

/// llama.cpp's `llama_ftype` names (`general.file_type`).
fn file_type_name(ft: u64) -> Option<&'static str> {
    Some(match ft {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        _ => return None,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::io::Write;

    /// A tiny but complete GGUF file: two metadata keys and one F32 tensor of 8 values.
    pub(crate) fn tiny_gguf() -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&1u64.to_le_bytes()); // tensors
        b.extend_from_slice(&3u64.to_le_bytes()); // kv
        let s = |b: &mut Vec<u8>, s: &str| {
            b.extend_from_slice(&(s.len() as u64).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
        };
        s(&mut b, "general.architecture");
        b.extend_from_slice(&8u32.to_le_bytes());
        s(&mut b, "llama");
        s(&mut b, "llama.context_length");
        b.extend_from_slice(&4u32.to_le_bytes());
        b.extend_from_slice(&2048u32.to_le_bytes());
        s(&mut b, "tokenizer.ggml.tokens");
        b.extend_from_slice(&9u32.to_le_bytes());
        b.extend_from_slice(&8u32.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        s(&mut b, "a");
        s(&mut b, "bc");
        s(&mut b, "weight");
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&8u64.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // F32
        b.extend_from_slice(&0u64.to_le_bytes());
        while b.len() % 32 != 0 {
            b.push(0);
        }
        b.extend_from_slice(&[0u8; 32]);
        b
    }

    fn write(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    #[test]
    fn reads_metadata_of_a_complete_file() {
        let f = write(&tiny_gguf());
        let info = inspect(f.path()).unwrap();
        assert_eq!(info.architecture(), Some("llama"));
        assert_eq!(info.context_length(), Some(2048));
        assert_eq!(
            info.get("tokenizer.ggml.tokens"),
            Some(&MetaValue::Array(2))
        );
        assert_eq!(info.quantization().as_deref(), Some("F32"));
        assert_eq!(info.parameter_count, 8);
    }

    #[test]
    fn truncated_data_is_named() {
        let bytes = tiny_gguf();
        let f = write(&bytes[..bytes.len() - 1]);
        let e = inspect(f.path()).unwrap_err();
        assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
        assert!(e.to_string().contains(&f.path().display().to_string()));
        assert!(e.to_string().contains("truncated"));
        // Cut inside the header.
        let f = write(&bytes[..40]);
        let e = inspect(f.path()).unwrap_err();
        assert!(e.to_string().contains("truncated"), "{e}");
    }

    #[test]
    fn non_gguf_and_missing_files() {
        let f = write(b"<html>not a model</html>");
        let e = inspect(f.path()).unwrap_err();
        assert!(e.to_string().contains("is not a GGUF model file"), "{e}");
        let f = write(b"");
        assert!(matches!(
            inspect(f.path()).unwrap_err(),
            GgufError::NotGguf { .. }
        ));
        let e = inspect(Path::new("/nonexistent/model.gguf")).unwrap_err();
        assert!(
            e.to_string()
                .contains("/nonexistent/model.gguf does not exist"),
            "{e}"
        );
    }

    #[test]
    fn huge_tensor_shapes_do_not_overflow() {
        // Two tensors of the same type, each of u64::MAX elements: the counts
        // saturate (the data check refuses the file) rather than overflow.
        let mut b = Vec::new();
        b.extend_from_slice(b"GGUF");
        b.extend_from_slice(&3u32.to_le_bytes());
        b.extend_from_slice(&2u64.to_le_bytes());
        b.extend_from_slice(&0u64.to_le_bytes());
        for name in ["a", "b"] {
            b.extend_from_slice(&1u64.to_le_bytes());
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(&1u32.to_le_bytes());
            b.extend_from_slice(&u64::MAX.to_le_bytes());
            b.extend_from_slice(&99u32.to_le_bytes()); // a type of unknown size
            b.extend_from_slice(&0u64.to_le_bytes());
        }
        b.resize(b.len().next_multiple_of(32), 0);
        let info =
            inspect_reader(Path::new("x.gguf"), io::Cursor::new(&b), b.len() as u64).unwrap();
        assert_eq!(info.parameter_count, u64::MAX);
    }

    #[test]
    fn absurd_lengths_are_corrupt_not_allocations() {
        let mut bytes = tiny_gguf();
        // The first key's length field sits right after the 24-byte preamble.
        bytes[24..32].copy_from_slice(&u64::MAX.to_le_bytes());
        let f = write(&bytes);
        assert!(inspect(f.path()).is_err());
    }
}
