//! `WalHeader::parse` and `scan_frames` on arbitrary bytes never panic and keep their
//! invariants; on a WAL built from known frames the scan finds exactly the committed prefix,
//! and after one flipped bit it stops exactly at the damaged frame.
#![no_main]

use libfuzzer_sys::fuzz_target;
use walship::sqlite::wal::{
    self, HEADER_SIZE, Scan, StopReason, WalHeader, make_frame, make_header, scan_frames,
};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        raw(rest);
    } else {
        built(rest);
    }
});

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn check_scan(buf: &[u8], h: &WalHeader, seed: (u32, u32), s: &Scan) {
    let fs = h.frame_size();
    assert!(s.committed_len <= s.valid_len, "{s:?}");
    assert!(s.valid_len <= buf.len() as u64, "{s:?}");
    assert_eq!(s.valid_len % fs, 0, "{s:?}");
    assert_eq!(s.committed_len % fs, 0, "{s:?}");
    assert!(u64::from(s.commits) <= s.committed_len / fs, "{s:?}");
    assert_eq!(s.commits == 0, s.committed_len == 0, "{s:?}");
    if s.commits == 0 {
        assert_eq!(
            (s.commit_db_pages, s.committed_checksum),
            (0, seed),
            "{s:?}"
        );
    } else {
        assert_ne!(s.commit_db_pages, 0, "{s:?}");
    }
    if s.stop == StopReason::End {
        assert!(
            buf.len() as u64 - s.valid_len < fs,
            "stopped at End with a whole frame left"
        );
    }
    // Scanning only the committed prefix gives the same committed result.
    let again = scan_frames(&buf[..s.committed_len as usize], h, seed);
    assert_eq!(again.committed_len, s.committed_len);
    assert_eq!(again.committed_checksum, s.committed_checksum);
    assert_eq!(again.commits, s.commits);
    assert_eq!(again.valid_len, s.committed_len);
}

fn raw(data: &[u8]) {
    // The input as a whole WAL file.
    if let Ok(h) = WalHeader::parse(data) {
        assert!(h.page_size.is_power_of_two() && (512..=65536).contains(&h.page_size));
        let s = scan_frames(&data[HEADER_SIZE..], &h, h.checksum);
        check_scan(&data[HEADER_SIZE..], &h, h.checksum, &s);
        let a = wal::align(data.len() as u64, h.page_size);
        assert!(a <= data.len() as u64 && a >= HEADER_SIZE as u64);
        assert_eq!((a - HEADER_SIZE as u64) % h.frame_size(), 0);
    }
    // The input as frames under a valid header made from its first bytes.
    if data.len() >= 10 {
        let page_size = 512u32 << (data[0] % 8);
        let salt = (be32(&data[1..5]), be32(&data[5..9]));
        let big_endian = data[9] & 1 == 1;
        let hb = make_header(page_size, 3, salt, big_endian);
        let h = WalHeader::parse(&hb).expect("a header from make_header parses");
        assert_eq!(
            (h.page_size, h.salt, h.big_endian()),
            (page_size, salt, big_endian)
        );
        let buf = &data[10..];
        let s = scan_frames(buf, &h, h.checksum);
        check_scan(buf, &h, h.checksum, &s);
    }
}

fn built(data: &[u8]) {
    if data.len() < 5 {
        return;
    }
    let flip = be32(&data[0..4]) as usize;
    let big_endian = data[4] & 1 == 1;
    let spec = &data[5..data.len().min(5 + 32)];
    let hb = make_header(512, 7, (0x1234_5678, 0x9abc_def0), big_endian);
    let h = WalHeader::parse(&hb).expect("a header from make_header parses");
    let fs = h.frame_size() as usize;

    let mut w = hb.to_vec();
    let mut ck = h.checksum;
    let mut commit_ends = Vec::new();
    for (i, &b) in spec.iter().enumerate() {
        let pgno = u32::from(b >> 1) + 1;
        let commit = if b & 1 == 1 { i as u32 + 1 } else { 0 };
        let page: Vec<u8> = (0..512u32).map(|j| (j as u8) ^ b ^ (i as u8)).collect();
        let (f, c) = make_frame(&h, ck, pgno, commit, &page);
        ck = c;
        w.extend_from_slice(&f);
        if commit != 0 {
            commit_ends.push((i + 1) * fs);
        }
    }
    let n = spec.len();
    let s = scan_frames(&w[HEADER_SIZE..], &h, h.checksum);
    check_scan(&w[HEADER_SIZE..], &h, h.checksum, &s);
    assert_eq!(s.stop, StopReason::End);
    assert_eq!(s.valid_len as usize, n * fs);
    assert_eq!(
        s.committed_len as usize,
        commit_ends.last().copied().unwrap_or(0)
    );
    assert_eq!(s.commits as usize, commit_ends.len());
    if n == 0 {
        return;
    }

    // One flipped bit anywhere in the frames: the scan stops exactly at that frame (the
    // checksum catches every single-bit change; a salt change or page number 0 is caught
    // before it).
    let bit = flip % (n * fs * 8);
    let byte = bit / 8;
    w[HEADER_SIZE + byte] ^= 1 << (bit % 8);
    let bad = byte / fs;
    let s2 = scan_frames(&w[HEADER_SIZE..], &h, h.checksum);
    check_scan(&w[HEADER_SIZE..], &h, h.checksum, &s2);
    assert_ne!(s2.stop, StopReason::End, "flip at byte {byte} not detected");
    assert_eq!(s2.valid_len as usize, bad * fs, "flip at byte {byte}");
    let want_committed = commit_ends
        .iter()
        .copied()
        .filter(|&e| e <= bad * fs)
        .max()
        .unwrap_or(0);
    assert_eq!(
        s2.committed_len as usize, want_committed,
        "flip at byte {byte}"
    );
}
