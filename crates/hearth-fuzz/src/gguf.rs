//! The GGUF metadata reader (hearth-engine's `gguf::inspect`, over bytes).
//!
//! Each input is used twice:
//! - as a file: no panic, no allocation beyond the file's size (a corrupt length
//!   is an error, not a huge buffer); an accepted file stays accepted, with the
//!   same header, when more bytes follow it;
//! - as the parameters of a GGUF file this target writes (every metadata type,
//!   arrays of numbers and strings, an alignment, tensors of known types with their
//!   data): the reader must read back every key and value, the tensor count and
//!   the parameter count; and the file cut anywhere inside its header is refused.

use std::collections::BTreeMap;
use std::io::Cursor;
use std::path::Path;

use crate::engine_gguf::{GgufInfo, MetaValue, inspect_reader};

pub fn run(data: &[u8]) {
    if let Ok(info) = read(data) {
        assert_eq!(info.file_size, data.len() as u64);
        let mut longer = data.to_vec();
        longer.extend_from_slice(&[0; 64]);
        let again = read(&longer).expect("an accepted file followed by more bytes is refused");
        assert_eq!(
            (&again.metadata, again.tensor_count, again.parameter_count),
            (&info.metadata, info.tensor_count, info.parameter_count)
        );
    }
    let mut p = Params(data);
    if let Some(file) = write(&mut p) {
        let info = match read(&file.bytes) {
            Ok(info) => info,
            Err(e) => panic!("a file written to the format is refused: {e}"),
        };
        assert_eq!(info.metadata, file.metadata);
        assert_eq!(info.tensor_count, file.tensors);
        assert_eq!(info.parameter_count, file.parameters);
        assert_eq!(info.version, file.version);
        if let Some(cut) = p.u16() {
            let cut = usize::from(cut) % file.header_end;
            assert!(
                read(&file.bytes[..cut]).is_err(),
                "a file cut at {cut} of its {}-byte header is accepted",
                file.header_end
            );
        }
    }
}

fn read(bytes: &[u8]) -> Result<GgufInfo, crate::engine_gguf::GgufError> {
    inspect_reader(
        Path::new("fuzz.gguf"),
        Cursor::new(bytes),
        bytes.len() as u64,
    )
}

/// The fuzz input read as parameters.
struct Params<'a>(&'a [u8]);

impl Params<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take::<1>().map(|[b]| b)
    }
    fn u16(&mut self) -> Option<u16> {
        self.take().map(u16::from_le_bytes)
    }
    /// A short string, valid UTF-8 so it reads back as written.
    fn string(&mut self) -> Option<String> {
        let len = usize::from(self.u8()? % 24);
        let raw: Vec<u8> = (0..len).map_while(|_| self.u8()).collect();
        Some(String::from_utf8_lossy(&raw).into_owned())
    }
}

/// A written file and what the reader must find in it.
struct Written {
    bytes: Vec<u8>,
    version: u32,
    metadata: BTreeMap<String, MetaValue>,
    tensors: u64,
    parameters: u64,
    /// Where the header (metadata and tensor table) ends.
    header_end: usize,
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u64).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

/// `(elements per block, bytes per block)` of the tensor types written.
const TENSOR_TYPES: &[(u32, u64, u64)] = &[
    (0, 1, 4),
    (1, 1, 2),
    (2, 32, 18),
    (8, 32, 34),
    (12, 256, 144),
    (14, 256, 210),
    (30, 1, 2),
    (39, 32, 17),
];

fn write(p: &mut Params<'_>) -> Option<Written> {
    let version = 2 + u32::from(p.u8()? % 2);
    let n_kv = usize::from(p.u8()? % 12);
    let n_tensors = usize::from(p.u8()? % 4);
    let alignment =
        [None, Some(1u32), Some(8), Some(32), Some(64), Some(0)][usize::from(p.u8()? % 6)];
    let mut kv = Vec::new();
    let mut metadata = BTreeMap::new();
    let mut n = 0u64;
    if let Some(a) = alignment {
        put_str(&mut kv, "general.alignment");
        kv.extend_from_slice(&4u32.to_le_bytes());
        kv.extend_from_slice(&a.to_le_bytes());
        metadata.insert("general.alignment".to_owned(), MetaValue::Int(a.into()));
        n += 1;
    }
    for _ in 0..n_kv {
        let key = p.string()?;
        if key == "general.alignment" {
            continue;
        }
        let ty = u32::from(p.u8()? % 13);
        put_str(&mut kv, &key);
        kv.extend_from_slice(&ty.to_le_bytes());
        let value = match ty {
            0..=7 | 10..=12 => scalar(p, ty, &mut kv)?,
            8 => {
                let s = p.string()?;
                put_str(&mut kv, &s);
                MetaValue::Str(s)
            }
            _ => {
                let elem = [0u32, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12][usize::from(p.u8()? % 12)];
                let count = u64::from(p.u8()? % 16);
                kv.extend_from_slice(&elem.to_le_bytes());
                kv.extend_from_slice(&count.to_le_bytes());
                for _ in 0..count {
                    if elem == 8 {
                        let s = p.string()?;
                        put_str(&mut kv, &s);
                    } else {
                        scalar(p, elem, &mut kv)?;
                    }
                }
                MetaValue::Array(count)
            }
        };
        metadata.insert(key, value);
        n += 1;
    }
    let align = u64::from(alignment.unwrap_or(32).max(1));
    let mut table = Vec::new();
    let mut offset = 0u64;
    let mut parameters = 0u64;
    for i in 0..n_tensors {
        let name = format!("blk.{i}.weight");
        put_str(&mut table, &name);
        let n_dims = u32::from(p.u8()? % 4);
        table.extend_from_slice(&n_dims.to_le_bytes());
        let mut elements = 1u64;
        for _ in 0..n_dims {
            let d = u64::from(p.u8()? % 17);
            elements *= d;
            table.extend_from_slice(&d.to_le_bytes());
        }
        let (ty, block, bytes) = TENSOR_TYPES[usize::from(p.u8()?) % TENSOR_TYPES.len()];
        table.extend_from_slice(&ty.to_le_bytes());
        table.extend_from_slice(&offset.to_le_bytes());
        parameters += elements;
        offset += (elements.div_ceil(block) * bytes).div_ceil(align) * align;
    }
    let mut b = Vec::new();
    b.extend_from_slice(b"GGUF");
    b.extend_from_slice(&version.to_le_bytes());
    b.extend_from_slice(&(n_tensors as u64).to_le_bytes());
    b.extend_from_slice(&n.to_le_bytes());
    b.extend_from_slice(&kv);
    b.extend_from_slice(&table);
    let header_end = b.len();
    while !(b.len() as u64).is_multiple_of(align) {
        b.push(0);
    }
    b.resize(b.len() + offset as usize, 0x5a);
    Some(Written {
        bytes: b,
        version,
        metadata,
        tensors: n_tensors as u64,
        parameters,
        header_end,
    })
}

/// Writes a scalar of type `ty` from the parameters; returns how it reads.
fn scalar(p: &mut Params<'_>, ty: u32, b: &mut Vec<u8>) -> Option<MetaValue> {
    Some(match ty {
        0 => {
            let v = p.u8()?;
            b.push(v);
            MetaValue::Int(v.into())
        }
        1 => {
            let v = p.u8()? as i8;
            b.extend_from_slice(&v.to_le_bytes());
            MetaValue::Int(v.into())
        }
        2 => {
            let v = p.u16()?;
            b.extend_from_slice(&v.to_le_bytes());
            MetaValue::Int(v.into())
        }
        3 => {
            let v = p.u16()? as i16;
            b.extend_from_slice(&v.to_le_bytes());
            MetaValue::Int(v.into())
        }
        4 => {
            let v = u32::from_le_bytes(p.take()?);
            b.extend_from_slice(&v.to_le_bytes());
            MetaValue::Int(v.into())
        }
        5 => {
            let v = i32::from_le_bytes(p.take()?);
            b.extend_from_slice(&v.to_le_bytes());
            MetaValue::Int(v.into())
        }
        6 => {
            let v = f32::from_le_bytes(p.take()?);
            let v = if v.is_nan() { 0.5 } else { v };
            b.extend_from_slice(&v.to_le_bytes());
            MetaValue::Float(v.into())
        }
        7 => {
            let v = p.u8()?;
            b.push(v);
            MetaValue::Bool(v != 0)
        }
        10 => {
            let v = u64::from_le_bytes(p.take()?);
            b.extend_from_slice(&v.to_le_bytes());
            MetaValue::Int(v.into())
        }
        11 => {
            let v = i64::from_le_bytes(p.take()?);
            b.extend_from_slice(&v.to_le_bytes());
            MetaValue::Int(v.into())
        }
        _ => {
            let v = f64::from_le_bytes(p.take()?);
            let v = if v.is_nan() { 0.5 } else { v };
            b.extend_from_slice(&v.to_le_bytes());
            MetaValue::Float(v)
        }
    })
}
