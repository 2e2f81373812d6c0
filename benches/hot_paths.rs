//! Throughput of the engine's hot paths on synthetic data: WAL frame scanning (checksum
//! chain), LZ4 compression of WAL-like pages, and LZ4 decompression.
//!
//! Run: `cargo bench --bench hot_paths`. Prints MB/s per path; numbers from a shared
//! machine drift, so compare runs made side by side. (The Litestream comparison harness of
//! the "Faster than Litestream" issue is not here yet.)
use std::hint::black_box;
use std::time::Instant;

use walship::compress;
use walship::sqlite::wal::{WalHeader, make_frame, make_header, scan_frames};

fn main() {
    let page_size = 4096u32;
    let frames = 16_384u32; // 64 MiB of pages
    let hb = make_header(page_size, 0, (0x1234_5678, 0x9abc_def0), false);
    let hdr = WalHeader::parse(&hb).expect("valid header");
    let mut wal = Vec::with_capacity((frames as usize) * (page_size as usize + 24));
    let mut ck = hdr.checksum;
    let mut page = vec![0u8; page_size as usize];
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    for i in 0..frames {
        // Half text-like, half pseudo-random bytes: roughly what table pages look like.
        for (j, b) in page.iter_mut().enumerate() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            *b = if j < page_size as usize / 2 {
                b"row data "[j % 9]
            } else {
                rng as u8
            };
        }
        let commit = if i % 10 == 9 { i + 1 } else { 0 };
        let (f, c) = make_frame(&hdr, ck, i % 1000 + 1, commit, &page);
        ck = c;
        wal.extend_from_slice(&f);
    }
    let mb = wal.len() as f64 / 1e6;

    let best = |f: &mut dyn FnMut()| {
        (0..5)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };

    let t = best(&mut || {
        black_box(scan_frames(black_box(&wal), &hdr, hdr.checksum));
    });
    println!("wal scan (checksum chain)  {:8.0} MB/s", mb / t);

    let t = best(&mut || {
        black_box(compress::compress(black_box(&wal)));
    });
    let compressed = compress::compress(&wal);
    println!(
        "lz4 compress               {:8.0} MB/s  (ratio {:.2})",
        mb / t,
        wal.len() as f64 / compressed.len() as f64
    );

    let t = best(&mut || {
        black_box(compress::decompress(black_box(&compressed), 1 << 30).expect("round trip"));
    });
    println!("lz4 decompress             {:8.0} MB/s", mb / t);
}
