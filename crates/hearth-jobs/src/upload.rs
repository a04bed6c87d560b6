//! Upload checks: what an upload is, read from its bytes (never its name or the
//! client's `Content-Type`), its size, and the dimensions its header declares.
//!
//! Pure functions over the bytes. The HTTP layer maps [`UploadError::status`] to the
//! response: 413 too large, 415 not an accepted image, 400 a header that declares
//! too many pixels (a decompression bomb) or cannot be read.

use std::fmt;

/// An accepted image type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageKind {
    Png,
    Jpeg,
    Webp,
    Gif,
}

impl ImageKind {
    /// `png`, `jpeg`, `webp`, `gif`.
    pub fn name(self) -> &'static str {
        match self {
            ImageKind::Png => "png",
            ImageKind::Jpeg => "jpeg",
            ImageKind::Webp => "webp",
            ImageKind::Gif => "gif",
        }
    }

    pub fn mime(self) -> &'static str {
        match self {
            ImageKind::Png => "image/png",
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Webp => "image/webp",
            ImageKind::Gif => "image/gif",
        }
    }

    /// The file extension used for the input file the script reads.
    pub fn extension(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "jpg",
            other => other.name(),
        }
    }

    pub fn parse(name: &str) -> Option<ImageKind> {
        Some(match name {
            "png" => ImageKind::Png,
            "jpeg" => ImageKind::Jpeg,
            "webp" => ImageKind::Webp,
            "gif" => ImageKind::Gif,
            _ => return None,
        })
    }
}

impl fmt::Display for ImageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ImageKind::Png => "PNG",
            ImageKind::Jpeg => "JPEG",
            ImageKind::Webp => "WebP",
            ImageKind::Gif => "GIF",
        })
    }
}

/// What accepted uploads are, for messages.
pub const ACCEPTED: &str = "PNG, JPEG, WebP or GIF";

/// An upload that passed the checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckedImage {
    pub kind: ImageKind,
    pub width: u32,
    pub height: u32,
}

/// Why an upload is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("the upload is {size} bytes; the most accepted is {max} bytes")]
    TooLarge { size: u64, max: u64 },
    #[error("the upload is empty; send a {ACCEPTED} image")]
    Empty,
    #[error("the upload is {detected}, not an image this accepts; send a {ACCEPTED} image")]
    Unsupported { detected: String },
    #[error(
        "the {kind} image declares {width}×{height} pixels, more than the {max} accepted; send a smaller image"
    )]
    TooManyPixels {
        kind: ImageKind,
        width: u32,
        height: u32,
        max: u64,
    },
    #[error("the upload starts as a {kind} image but its header is damaged or cut short: {why}")]
    Malformed { kind: ImageKind, why: &'static str },
}

impl UploadError {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            UploadError::TooLarge { .. } => 413,
            UploadError::Unsupported { .. } => 415,
            UploadError::Empty
            | UploadError::TooManyPixels { .. }
            | UploadError::Malformed { .. } => 400,
        }
    }
}

/// Checks an upload: at most `max_bytes`, an accepted image by its magic bytes, and
/// at most `max_pixels` declared in its header.
pub fn check(bytes: &[u8], max_bytes: u64, max_pixels: u64) -> Result<CheckedImage, UploadError> {
    let size = bytes.len() as u64;
    if size > max_bytes {
        return Err(UploadError::TooLarge {
            size,
            max: max_bytes,
        });
    }
    if bytes.is_empty() {
        return Err(UploadError::Empty);
    }
    let kind = detect(bytes).map_err(|detected| UploadError::Unsupported {
        detected: detected.to_owned(),
    })?;
    let (width, height) =
        dimensions(kind, bytes).map_err(|why| UploadError::Malformed { kind, why })?;
    if width == 0 || height == 0 {
        return Err(UploadError::Malformed {
            kind,
            why: "it declares no pixels",
        });
    }
    if u64::from(width) * u64::from(height) > max_pixels {
        return Err(UploadError::TooManyPixels {
            kind,
            width,
            height,
            max: max_pixels,
        });
    }
    Ok(CheckedImage {
        kind,
        width,
        height,
    })
}

/// The accepted image type these bytes start as, or what they look like instead.
pub fn detect(b: &[u8]) -> Result<ImageKind, &'static str> {
    if b.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageKind::Png);
    }
    if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageKind::Jpeg);
    }
    if b.starts_with(b"GIF87a") || b.starts_with(b"GIF89a") {
        return Ok(ImageKind::Gif);
    }
    if b.len() >= 12 && &b[..4] == b"RIFF" && &b[8..12] == b"WEBP" {
        return Ok(ImageKind::Webp);
    }
    Err(describe(b))
}

/// What bytes that are not an accepted image look like, for the refusal.
fn describe(b: &[u8]) -> &'static str {
    let text = std::str::from_utf8(&b[..b.len().min(512)])
        .map(|s| {
            s.trim_start_matches('\u{feff}')
                .trim_start()
                .to_ascii_lowercase()
        })
        .ok();
    let starts = |m: &[u8]| b.starts_with(m);
    if starts(b"%PDF-") {
        "a PDF document"
    } else if starts(b"PK\x03\x04") {
        "a ZIP archive (or an Office document)"
    } else if starts(b"BM") {
        "a BMP image"
    } else if starts(b"II*\0") || starts(b"MM\0*") {
        "a TIFF image"
    } else if b.len() >= 12 && &b[4..8] == b"ftyp" {
        match &b[8..12] {
            b"heic" | b"heix" | b"mif1" | b"msf1" => "a HEIC image",
            b"avif" | b"avis" => "an AVIF image",
            _ => "an MP4/QuickTime file",
        }
    } else if starts(b"\x7fELF") {
        "an executable (ELF)"
    } else if starts(b"\x1f\x8b") {
        "a gzip archive"
    } else if starts(&[0x00, 0x00, 0x01, 0x00]) {
        "an ICO icon"
    } else if let Some(t) = text {
        if t.starts_with("<svg") || (t.starts_with("<?xml") && t.contains("<svg")) {
            "an SVG image"
        } else if t.starts_with("<!doctype html") || t.starts_with("<html") {
            "an HTML document"
        } else if t.starts_with("<?xml") {
            "an XML document"
        } else {
            "text"
        }
    } else {
        "data of an unknown type"
    }
}

fn be16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_be_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

fn le16(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from(u16::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
    ])))
}

fn le24(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes([
        *b.get(at)?,
        *b.get(at + 1)?,
        *b.get(at + 2)?,
        0,
    ]))
}

/// Width and height as the header declares them (nothing is decoded).
pub fn dimensions(kind: ImageKind, b: &[u8]) -> Result<(u32, u32), &'static str> {
    match kind {
        ImageKind::Png => {
            // Signature, then the IHDR chunk: length, "IHDR", width, height (BE).
            if b.get(12..16) != Some(b"IHDR") {
                return Err("no IHDR chunk after the signature");
            }
            let w = b.get(16..20).ok_or("no width")?;
            let h = b.get(20..24).ok_or("no height")?;
            Ok((
                u32::from_be_bytes([w[0], w[1], w[2], w[3]]),
                u32::from_be_bytes([h[0], h[1], h[2], h[3]]),
            ))
        }
        ImageKind::Gif => Ok((
            le16(b, 6).ok_or("no width")?,
            le16(b, 8).ok_or("no height")?,
        )),
        ImageKind::Webp => match b.get(12..16) {
            // Lossy: a key frame's start code, then 14-bit width and height.
            Some(b"VP8 ") => {
                if b.get(23..26) != Some(&[0x9d, 0x01, 0x2a]) {
                    return Err("no VP8 start code");
                }
                Ok((
                    le16(b, 26).ok_or("no width")? & 0x3fff,
                    le16(b, 28).ok_or("no height")? & 0x3fff,
                ))
            }
            // Lossless: a signature byte, then 14-bit width-1 and height-1.
            Some(b"VP8L") => {
                if b.get(20) != Some(&0x2f) {
                    return Err("no VP8L signature");
                }
                let bits = b.get(21..25).ok_or("no size")?;
                let v = u32::from_le_bytes([bits[0], bits[1], bits[2], bits[3]]);
                Ok(((v & 0x3fff) + 1, ((v >> 14) & 0x3fff) + 1))
            }
            // Extended: 24-bit canvas width-1 and height-1.
            Some(b"VP8X") => Ok((
                le24(b, 24).ok_or("no width")? + 1,
                le24(b, 27).ok_or("no height")? + 1,
            )),
            _ => Err("no VP8, VP8L or VP8X chunk"),
        },
        ImageKind::Jpeg => jpeg_dimensions(b),
    }
}

/// Walks the JPEG's segments to the first start-of-frame and reads its size.
fn jpeg_dimensions(b: &[u8]) -> Result<(u32, u32), &'static str> {
    let mut i = 2;
    loop {
        // Markers may be padded with 0xFF fill bytes.
        while b.get(i) == Some(&0xFF) && b.get(i + 1) == Some(&0xFF) {
            i += 1;
        }
        if b.get(i) != Some(&0xFF) {
            return Err("no start-of-frame segment");
        }
        let marker = *b.get(i + 1).ok_or("cut short before a frame")?;
        // Markers without a length: TEM, RSTn.
        if marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
            i += 2;
            continue;
        }
        if marker == 0xD9 || marker == 0xDA {
            return Err("no start-of-frame before the image data");
        }
        let len = be16(b, i + 2).ok_or("cut short in a segment")? as usize;
        if len < 2 {
            return Err("a segment with a bad length");
        }
        // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
        if (0xC0..=0xCF).contains(&marker) && ![0xC4, 0xC8, 0xCC].contains(&marker) {
            let h = be16(b, i + 5).ok_or("cut short in the frame header")?;
            let w = be16(b, i + 7).ok_or("cut short in the frame header")?;
            return Ok((w, h));
        }
        i += 2 + len;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: u64 = 20_000_000;
    const PIXELS: u64 = 50_000_000;

    fn png(w: u32, h: u32) -> Vec<u8> {
        let mut v = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&[8, 2, 0, 0, 0]);
        v
    }

    fn jpeg(w: u16, h: u16) -> Vec<u8> {
        let mut v = vec![0xFF, 0xD8];
        // An APP0 segment to skip, then SOF0.
        v.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x04, 0x4A, 0x46]);
        v.extend_from_slice(&[0xFF, 0xC0, 0x00, 0x11, 0x08]);
        v.extend_from_slice(&h.to_be_bytes());
        v.extend_from_slice(&w.to_be_bytes());
        v.extend_from_slice(&[3; 12]);
        v
    }

    fn gif(w: u16, h: u16) -> Vec<u8> {
        let mut v = b"GIF89a".to_vec();
        v.extend_from_slice(&w.to_le_bytes());
        v.extend_from_slice(&h.to_le_bytes());
        v
    }

    fn webp(chunk: &[u8; 4], body: &[u8]) -> Vec<u8> {
        let mut v = b"RIFF\0\0\0\0WEBP".to_vec();
        v.extend_from_slice(chunk);
        v.extend_from_slice(&(body.len() as u32).to_le_bytes());
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn accepted_images_are_recognised_with_their_size() {
        let ok = |b: &[u8]| check(b, MAX, PIXELS).unwrap();
        assert_eq!(
            ok(&png(640, 480)),
            CheckedImage {
                kind: ImageKind::Png,
                width: 640,
                height: 480
            }
        );
        assert_eq!(
            ok(&jpeg(800, 600)),
            CheckedImage {
                kind: ImageKind::Jpeg,
                width: 800,
                height: 600
            }
        );
        assert_eq!(
            ok(&gif(32, 16)),
            CheckedImage {
                kind: ImageKind::Gif,
                width: 32,
                height: 16
            }
        );
        // VP8: frame tag (3), start code, 14-bit sizes.
        let mut vp8 = vec![0, 0, 0, 0x9d, 0x01, 0x2a];
        vp8.extend_from_slice(&300u16.to_le_bytes());
        vp8.extend_from_slice(&200u16.to_le_bytes());
        assert_eq!(
            (
                ok(&webp(b"VP8 ", &vp8)).width,
                ok(&webp(b"VP8 ", &vp8)).height
            ),
            (300, 200)
        );
        // VP8L: signature, (w-1) | (h-1) << 14.
        let bits: u32 = 99 | (49 << 14);
        let mut vp8l = vec![0x2f];
        vp8l.extend_from_slice(&bits.to_le_bytes());
        let c = ok(&webp(b"VP8L", &vp8l));
        assert_eq!((c.kind, c.width, c.height), (ImageKind::Webp, 100, 50));
        // VP8X: flags (4), then 24-bit w-1 and h-1.
        let mut vp8x = vec![0; 4];
        vp8x.extend_from_slice(&[0x87, 0x13, 0x00, 0xCF, 0x07, 0x00]);
        let c = ok(&webp(b"VP8X", &vp8x));
        assert_eq!((c.width, c.height), (5_000, 2_000));
    }

    #[test]
    fn other_files_are_refused_naming_what_they_are() {
        let e = check(b"%PDF-1.7\n%\xe2\xe3", MAX, PIXELS).unwrap_err();
        assert_eq!(e.status(), 415);
        assert_eq!(
            e.to_string(),
            "the upload is a PDF document, not an image this accepts; send a PNG, JPEG, WebP or GIF image"
        );
        for (bytes, what) in [
            (
                &b"<svg xmlns='http://www.w3.org/2000/svg'/>"[..],
                "an SVG image",
            ),
            (b"<!DOCTYPE html><p>", "an HTML document"),
            (b"BM\0\0\0\0", "a BMP image"),
            (b"PK\x03\x04rest", "a ZIP archive (or an Office document)"),
            (b"hello", "text"),
            (&[0u8, 159, 146, 150][..], "data of an unknown type"),
        ] {
            match check(bytes, MAX, PIXELS) {
                Err(UploadError::Unsupported { detected }) => assert_eq!(detected, what),
                other => panic!("{what}: {other:?}"),
            }
        }
    }

    #[test]
    fn size_and_declared_pixels_are_capped() {
        let e = check(&png(10, 10), 10, PIXELS).unwrap_err();
        assert_eq!(
            (
                e.status(),
                matches!(e, UploadError::TooLarge { size: 29, max: 10 })
            ),
            (413, true)
        );
        // A 100 000 × 100 000 PNG header: ten gigapixels in 33 bytes.
        let e = check(&png(100_000, 100_000), MAX, PIXELS).unwrap_err();
        assert_eq!(e.status(), 400);
        assert!(e.to_string().contains("100000×100000"), "{e}");
        assert_eq!(check(b"", MAX, PIXELS).unwrap_err().status(), 400);
    }

    #[test]
    fn damaged_headers_are_refused_not_trusted() {
        let cut = &png(10, 10)[..18];
        assert!(matches!(
            check(cut, MAX, PIXELS),
            Err(UploadError::Malformed {
                kind: ImageKind::Png,
                ..
            })
        ));
        let no_frame = [0xFF, 0xD8, 0xFF, 0xDA, 0x00, 0x02];
        assert_eq!(check(&no_frame, MAX, PIXELS).unwrap_err().status(), 400);
        assert!(check(&png(0, 10), MAX, PIXELS).is_err());
        assert!(check(&webp(b"ABCD", b""), MAX, PIXELS).is_err());
    }
}
