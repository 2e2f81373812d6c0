//! What a replica reads of the shadow WAL (the next segment from its position), and the
//! cleanup of shadow WAL files every replica has shipped.
use super::*;

impl Db {
    /// Removes shadow WAL files every replica is past (keeping one spare index).
    pub(super) fn clean_shadow(&self, inner: &Inner) {
        let Some(sh) = &inner.shadow else { return };
        let map = self.replica_pos.lock().unwrap_or_else(|e| e.into_inner());
        if map.is_empty() {
            return;
        }
        let mut min = u32::MAX;
        for p in map.values() {
            match p {
                Some(p) if p.generation == sh.generation => min = min.min(p.index),
                _ => return,
            }
        }
        drop(map);
        let dir = self.shadow_dir(sh.generation);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if let Some(i) = e
                .file_name()
                .to_str()
                .and_then(layout::parse_shadow_wal_name)
                && i.saturating_add(1) < min
                && i < sh.index
            {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }

    /// Reads the shadow WAL at `pos` for a replica: what is committed from `pos` on in that
    /// index, up to `max_end` when given (a commit boundary), cut at a commit boundary past
    /// [`MAX_SEGMENT_BYTES`] and at or past `min_end` (`u64::MAX` for everything).
    /// Blocking.
    pub fn read_shadow(&self, pos: Pos, min_end: u64, max_end: Option<u64>) -> Result<ShadowRead> {
        let (cur_index, cur_size) = {
            let inner = self.lock();
            match &inner.shadow {
                Some(sh) if sh.generation == pos.generation => (sh.index, sh.size),
                _ => return Err(Error::NoGeneration),
            }
        };
        let path = self.shadow_path(pos.generation, pos.index);
        let end = if pos.index == cur_index {
            cur_size
        } else if pos.index < cur_index {
            let f = File::open(&path).map_err(Error::io("open", &path))?;
            let hdr = {
                let mut h = [0u8; HEADER_SIZE];
                read_up_to(&f, &mut h, 0, &path)?;
                WalHeader::parse(&h)
                    .map_err(|e| Error::corrupt(path.display().to_string(), e.to_string()))?
            };
            wal::align(
                f.metadata().map_err(Error::io("stat", &path))?.len(),
                hdr.page_size,
            )
        } else {
            return Err(Error::corrupt(
                path.display().to_string(),
                "replica position is ahead of the database",
            ));
        };
        if pos.offset > end {
            return Err(Error::corrupt(
                path.display().to_string(),
                format!("replica position {pos} is past the shadow wal end {end}"),
            ));
        }
        if pos.offset == end {
            return Ok(if pos.index < cur_index {
                ShadowRead::NextIndex
            } else {
                ShadowRead::UpToDate
            });
        }
        let f = File::open(&path).map_err(Error::io("open", &path))?;
        if pos.offset == 0 {
            // The offset-0 segment must start with the index's WAL header.
            let mut h = [0u8; HEADER_SIZE];
            read_up_to(&f, &mut h, 0, &path)?;
            WalHeader::parse(&h).map_err(|e| {
                Error::corrupt(format!("shadow wal {:08x}", pos.index), e.to_string())
            })?;
        }
        // `max_end` is a commit boundary: the shadow only ever grows by whole transactions.
        let end = max_end.map_or(end, |m| m.clamp(pos.offset, end));
        let end = segment_end(&f, &path, pos.offset, end, min_end)?;
        if end - pos.offset > INLINE_SEGMENT_BYTES {
            let file = compress_range(&f, &path, pos.offset, end, &self.meta_dir)?;
            return Ok(ShadowRead::File {
                pos,
                len: end - pos.offset,
                file,
            });
        }
        let mut data = vec![0u8; (end - pos.offset) as usize];
        let n = read_up_to(&f, &mut data, pos.offset, &path)?;
        if n < data.len() {
            return Err(Error::corrupt(
                path.display().to_string(),
                "shadow wal shorter than recorded",
            ));
        }
        Ok(ShadowRead::Data { pos, data })
    }
}
