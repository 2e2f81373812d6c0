//! Every `layout::parse_*` never panics on arbitrary text, accepts only names without `/` or
//! `..`, and round-trips: for what it accepts, formatting the parsed value gives the same
//! name back, and parsing a formatted value gives the value back.
#![no_main]

use libfuzzer_sys::fuzz_target;
use walship::layout;
use walship::pos::Generation;

fn safe(name: &str) {
    assert!(!name.contains('/'), "accepted a name with '/': {name:?}");
    assert!(!name.contains(".."), "accepted a name with '..': {name:?}");
    assert!(!name.is_empty());
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let name = text.as_ref();

    if let Some(g) = layout::parse_generation_name(name) {
        safe(name);
        assert_eq!(g.to_string(), name);
        assert_eq!(layout::parse_generation_name(&g.to_string()), Some(g));
    }
    if let Some(i) = layout::parse_snapshot_name(name) {
        safe(name);
        assert_eq!(layout::snapshot_name(i), name);
        assert_eq!(
            layout::parse_snapshot_name(&layout::snapshot_name(i)),
            Some(i)
        );
    }
    if let Some((i, o)) = layout::parse_wal_segment_name(name) {
        safe(name);
        assert_eq!(layout::wal_segment_name(i, o), name);
        assert_eq!(
            layout::parse_wal_segment_name(&layout::wal_segment_name(i, o)),
            Some((i, o))
        );
    }
    if let Some(i) = layout::parse_shadow_wal_name(name) {
        safe(name);
        assert_eq!(layout::shadow_wal_name(i), name);
        assert_eq!(
            layout::parse_shadow_wal_name(&layout::shadow_wal_name(i)),
            Some(i)
        );
    }
    // A name is at most one kind of thing.
    let kinds = [
        layout::parse_generation_name(name).is_some(),
        layout::parse_snapshot_name(name).is_some(),
        layout::parse_wal_segment_name(name).is_some(),
        layout::parse_shadow_wal_name(name).is_some(),
    ];
    assert!(
        kinds.iter().filter(|k| **k).count() <= 1,
        "{name:?} parses as two kinds"
    );
    let _ = layout::join(name, "generations");

    // Values taken from the input, formatted then parsed.
    if data.len() >= 16 {
        let n = u64::from_le_bytes(data[..8].try_into().expect("8 bytes"));
        let (i, o) = (n as u32, (n >> 32) as u32);
        let g = Generation(u64::from_le_bytes(data[8..16].try_into().expect("8 bytes")));
        assert_eq!(layout::parse_generation_name(&g.to_string()), Some(g));
        assert_eq!(
            layout::parse_snapshot_name(&layout::snapshot_name(i)),
            Some(i)
        );
        assert_eq!(
            layout::parse_wal_segment_name(&layout::wal_segment_name(i, o)),
            Some((i, o))
        );
        assert_eq!(
            layout::parse_shadow_wal_name(&layout::shadow_wal_name(o)),
            Some(o)
        );
        // Full paths split back into their parsed parts.
        let p = layout::wal_segment_path(g, i, o);
        let parts: Vec<&str> = p.split('/').collect();
        assert_eq!(parts.len(), 4, "{p}");
        assert_eq!(parts[0], layout::GENERATIONS_DIR);
        assert_eq!(layout::parse_generation_name(parts[1]), Some(g));
        assert_eq!(parts[2], "wal");
        assert_eq!(layout::parse_wal_segment_name(parts[3]), Some((i, o)));
        let p = layout::snapshot_path(g, i);
        let parts: Vec<&str> = p.split('/').collect();
        assert_eq!(parts.len(), 4, "{p}");
        assert_eq!(layout::parse_generation_name(parts[1]), Some(g));
        assert_eq!(parts[2], "snapshots");
        assert_eq!(layout::parse_snapshot_name(parts[3]), Some(i));
    }
});
