//! `compress::decompress` with a small limit never panics and never returns more than the
//! limit; `compress` then `decompress` round-trips with Litestream's frame header; a cut
//! frame is always an error, never a short result.
#![no_main]

use libfuzzer_sys::fuzz_target;
use walship::compress::{DecompressError, compress, decompress};

const LIMIT: u64 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    // Arbitrary bytes as a stored object.
    if let Ok(out) = decompress(data, LIMIT) {
        assert!(out.len() as u64 <= LIMIT);
        let again = compress(&out);
        assert_eq!(
            decompress(&again, LIMIT).expect("re-compressed frame decodes"),
            out
        );
    }

    // Round trip of the input as content.
    let c = compress(data);
    assert_eq!(
        &c[..7],
        &[0x04, 0x22, 0x4d, 0x18, 0x64, 0x70, 0xb9],
        "not Litestream's frame header"
    );
    let len = data.len() as u64;
    assert_eq!(decompress(&c, len).expect("round trip"), data);
    if len > 0 {
        assert!(matches!(
            decompress(&c, len - 1),
            Err(DecompressError::TooLarge(_))
        ));
    }
    // Any strict prefix of the frame is an error.
    let cut = data.first().map_or(0, |&b| usize::from(b)) % c.len();
    assert!(
        decompress(&c[..cut], len).is_err(),
        "prefix of {cut}/{} bytes decoded",
        c.len()
    );
});
