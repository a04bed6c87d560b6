//! Upload sniffing (hearth-jobs' `upload::check`, `detect`, `dimensions`).
//!
//! Each input is used twice:
//! - as an upload: no panic; `check` agrees with `detect` and `dimensions` (an
//!   accepted image is of the detected kind, with the header's dimensions, none
//!   zero, within the pixel limit); each refusal has its status;
//! - as the parameters of an image header this target writes (PNG, GIF, JPEG with
//!   fuzz-chosen segments and fill bytes before its frame, WebP lossy, lossless and
//!   extended): the sniffer must read back the kind and dimensions written.

use crate::jobs_upload::{ImageKind, UploadError, check, detect, dimensions};

const MAX_BYTES: u64 = 1 << 20;
const MAX_PIXELS: u64 = 50_000_000;

pub fn run(data: &[u8]) {
    as_upload(data);
    let mut p = Params(data);
    if let Some((image, kind, dims)) = write_image(&mut p) {
        assert_eq!(detect(&image), Ok(kind), "{image:02x?}");
        assert_eq!(dimensions(kind, &image), Ok(dims), "{image:02x?}");
        as_upload(&image);
    }
}

fn as_upload(data: &[u8]) {
    match check(data, MAX_BYTES, MAX_PIXELS) {
        Ok(c) => {
            assert_eq!(detect(data), Ok(c.kind));
            assert_eq!(dimensions(c.kind, data), Ok((c.width, c.height)));
            assert!(c.width > 0 && c.height > 0);
            assert!(u64::from(c.width) * u64::from(c.height) <= MAX_PIXELS);
        }
        Err(e) => {
            assert!(matches!(e.status(), 400 | 413 | 415));
            match e {
                UploadError::TooLarge { size, .. } => assert!(size > MAX_BYTES),
                UploadError::Empty => assert!(data.is_empty()),
                UploadError::Unsupported { .. } => assert!(detect(data).is_err()),
                UploadError::Malformed { kind, .. } | UploadError::TooManyPixels { kind, .. } => {
                    assert_eq!(detect(data), Ok(kind));
                }
            }
        }
    }
}

/// The fuzz input read as parameters.
struct Params<'a>(&'a [u8]);

impl Params<'_> {
    fn u8(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes([
            self.u8()?,
            self.u8()?,
            self.u8()?,
            self.u8()?,
        ]))
    }
}

/// An image header made from the parameters: its bytes, kind and dimensions.
fn write_image(p: &mut Params<'_>) -> Option<(Vec<u8>, ImageKind, (u32, u32))> {
    let mut b = Vec::new();
    match p.u8()? % 6 {
        0 => {
            let (w, h) = (p.u32()?, p.u32()?);
            b.extend_from_slice(b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR");
            b.extend_from_slice(&w.to_be_bytes());
            b.extend_from_slice(&h.to_be_bytes());
            b.extend_from_slice(&[8, 6, 0, 0, 0]);
            Some((b, ImageKind::Png, (w, h)))
        }
        1 => {
            let (w, h) = (p.u16()?, p.u16()?);
            b.extend_from_slice(b"GIF89a");
            b.extend_from_slice(&w.to_le_bytes());
            b.extend_from_slice(&h.to_le_bytes());
            b.extend_from_slice(&[0, 0, 0]);
            Some((b, ImageKind::Gif, (w.into(), h.into())))
        }
        2 => {
            let (w, h) = (p.u16()?, p.u16()?);
            b.extend_from_slice(&[0xFF, 0xD8]);
            // Segments before the frame: fill bytes, markers without a length, and
            // application segments of any content.
            for _ in 0..p.u8()? % 8 {
                let fill = usize::from(p.u8()? % 3);
                b.extend(std::iter::repeat_n(0xFF, fill));
                match p.u8()? % 3 {
                    0 => b.extend_from_slice(&[0xFF, 0xD0 + p.u8()? % 8]),
                    _ => {
                        let len = usize::from(p.u8()?);
                        b.extend_from_slice(&[0xFF, 0xE0 + p.u8()? % 16]);
                        b.extend_from_slice(&(len as u16 + 2).to_be_bytes());
                        for _ in 0..len {
                            b.push(p.u8().unwrap_or(0));
                        }
                    }
                }
            }
            let sof = [
                0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF,
            ];
            let marker = sof[usize::from(p.u8()?) % sof.len()];
            b.extend_from_slice(&[0xFF, marker, 0, 17, 8]);
            b.extend_from_slice(&h.to_be_bytes());
            b.extend_from_slice(&w.to_be_bytes());
            b.extend_from_slice(&[3, 1, 0x22, 0, 2, 0x11, 1, 3, 0x11, 1]);
            Some((b, ImageKind::Jpeg, (w.into(), h.into())))
        }
        3 => {
            // Lossy: 14-bit sizes; the top two bits are the scale, not the size.
            let (w, h) = (p.u16()?, p.u16()?);
            riff(&mut b, b"VP8 ");
            b.extend_from_slice(&[0x10, 0x02, 0x00, 0x9d, 0x01, 0x2a]);
            b.extend_from_slice(&w.to_le_bytes());
            b.extend_from_slice(&h.to_le_bytes());
            Some((
                b,
                ImageKind::Webp,
                (u32::from(w & 0x3fff), u32::from(h & 0x3fff)),
            ))
        }
        4 => {
            let (w, h) = (u32::from(p.u16()? % 16384), u32::from(p.u16()? % 16384));
            riff(&mut b, b"VP8L");
            b.push(0x2f);
            b.extend_from_slice(&(w | (h << 14)).to_le_bytes());
            Some((b, ImageKind::Webp, (w + 1, h + 1)))
        }
        _ => {
            let (w, h) = (p.u32()? & 0xff_ffff, p.u32()? & 0xff_ffff);
            riff(&mut b, b"VP8X");
            b.extend_from_slice(&[0x10, 0, 0, 0]);
            b.extend_from_slice(&w.to_le_bytes()[..3]);
            b.extend_from_slice(&h.to_le_bytes()[..3]);
            Some((b, ImageKind::Webp, (w + 1, h + 1)))
        }
    }
}

/// `RIFF`, a size, `WEBP`, then the first chunk's name and size.
fn riff(b: &mut Vec<u8>, chunk: &[u8; 4]) {
    b.extend_from_slice(b"RIFF\x24\0\0\0WEBP");
    b.extend_from_slice(chunk);
    b.extend_from_slice(&[0x18, 0, 0, 0]);
}
