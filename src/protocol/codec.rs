//! Request bodies as the protocols compress them: gzip (`Content-Encoding`) and snappy's
//! block format (remote_write, Loki push). Every decoder stops at a limit, the body limit,
//! before it allocates past it: a small compressed body cannot make the server hold more.

use std::{borrow::Cow, io::Read};

/// Why a body could not be decoded.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    /// Decompressed, it would be larger than the limit (413).
    #[error("{0}")]
    TooLarge(String),
    /// Not what its encoding says (400), or an encoding this server does not read (415
    /// where the protocol says so, else 400).
    #[error("{0}")]
    Malformed(String),
    #[error("unsupported content encoding `{0}`")]
    UnsupportedEncoding(String),
}

fn too_large(limit: usize) -> CodecError {
    CodecError::TooLarge(format!("the decompressed body is larger than the limit of {limit} bytes"))
}

/// The body as sent under `Content-Encoding` (none, `identity` or `gzip`), at most
/// `limit` bytes once decompressed.
pub fn decode_content<'a>(
    body: &'a [u8],
    content_encoding: Option<&str>,
    limit: usize,
) -> Result<Cow<'a, [u8]>, CodecError> {
    match content_encoding.map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("" | "identity") => Ok(Cow::Borrowed(body)),
        Some("gzip" | "x-gzip") => gunzip(body, limit).map(Cow::Owned),
        Some(other) => Err(CodecError::UnsupportedEncoding(other.to_owned())),
    }
}

/// A gzip body (one or more members), read through a reader that stops one byte past
/// `limit`.
pub fn gunzip(body: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(limit));
    let reader = flate2::read::MultiGzDecoder::new(body);
    reader
        .take(limit as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|err| CodecError::Malformed(format!("the body is not valid gzip: {err}")))?;
    if out.len() > limit {
        return Err(too_large(limit));
    }
    Ok(out)
}

/// A body in snappy's block format, whose header states its decompressed length: checked
/// against `limit` before anything is allocated. A body in snappy's framed (streaming)
/// format is refused with a reason saying so.
pub fn snappy_block(body: &[u8], limit: usize) -> Result<Vec<u8>, CodecError> {
    const FRAMED_STREAM_ID: &[u8] = b"\xff\x06\x00\x00sNaPpY";
    if body.starts_with(FRAMED_STREAM_ID) {
        return Err(CodecError::Malformed(
            "the body is in snappy's framed format; this endpoint reads the block format".to_owned(),
        ));
    }
    let length = snap::raw::decompress_len(body)
        .map_err(|err| CodecError::Malformed(format!("the body is not valid snappy: {err}")))?;
    if length > limit {
        return Err(too_large(limit));
    }
    snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|err| CodecError::Malformed(format!("the body is not valid snappy: {err}")))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn gzip_is_read_up_to_the_limit() {
        let data = vec![b'a'; 10_000];
        assert_eq!(decode_content(&gzip(&data), Some("gzip"), 10_000).unwrap(), &data[..]);
        assert!(matches!(decode_content(&gzip(&data), Some("GZIP"), 9_999), Err(CodecError::TooLarge(_))));
        assert!(matches!(decode_content(b"not gzip", Some("gzip"), 100), Err(CodecError::Malformed(_))));
        assert_eq!(decode_content(b"plain", None, 100).unwrap(), &b"plain"[..]);
        assert!(matches!(decode_content(b"x", Some("br"), 100), Err(CodecError::UnsupportedEncoding(_))));
    }

    #[test]
    fn snappy_length_is_checked_before_decoding() {
        let data = vec![b'b'; 5_000];
        let block = snap::raw::Encoder::new().compress_vec(&data).unwrap();
        assert_eq!(snappy_block(&block, 5_000).unwrap(), data);
        assert!(matches!(snappy_block(&block, 4_999), Err(CodecError::TooLarge(_))));
        // A header claiming 128 MiB, with nothing behind it.
        assert!(matches!(snappy_block(&[0x80, 0x80, 0x80, 0x40], 1 << 24), Err(CodecError::TooLarge(_))));
        assert!(matches!(snappy_block(&[0x05, 0xff], 100), Err(CodecError::Malformed(_))));
        let mut framed = snap::write::FrameEncoder::new(Vec::new());
        framed.write_all(&data).unwrap();
        let framed = framed.into_inner().unwrap();
        assert!(snappy_block(&framed, 1 << 20).is_err_and(|e| e.to_string().contains("framed")));
    }
}
