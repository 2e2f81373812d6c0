//! Generations on the local side: resuming the one the meta directory names at start-up,
//! starting a new one (a fresh shadow WAL from the current WAL header), and removing the
//! others.
use super::*;

impl Db {
    /// Loads the current generation from the meta directory at start-up, or leaves none.
    pub(super) fn load_state(&self, inner: &mut Inner) -> Result<()> {
        create_dir_all_synced(&self.meta_dir)?;
        remove_tmp_files(&self.meta_dir);
        inner.shadow = None;
        let g = match shadow::read_generation(&self.meta_dir)? {
            GenerationFile::Missing => return Ok(()),
            GenerationFile::Damaged => {
                warn!(db = %self.opts.path.display(), file = %shadow::generation_file(&self.meta_dir).display(), "generation file is damaged; starting a new generation");
                return Ok(());
            }
            GenerationFile::Found(g) => g,
        };
        let Some(index) = shadow::max_index(&self.meta_dir, g) else {
            warn!(db = %self.opts.path.display(), generation = %g, "no shadow wal found; starting a new generation");
            return Ok(());
        };
        let path = self.shadow_path(g, index);
        let data = std::fs::read(&path).map_err(Error::io("read", &path))?;
        let Ok(hdr) = WalHeader::parse(&data) else {
            warn!(db = %self.opts.path.display(), path = %path.display(), "shadow wal header is damaged; starting a new generation");
            return Ok(());
        };
        let scan = wal::scan_frames(&data[HEADER_SIZE..], &hdr, hdr.checksum);
        let size = HEADER_SIZE as u64 + scan.committed_len;
        if size < data.len() as u64 {
            // A crash in the middle of an append: drop the partial tail.
            warn!(path = %path.display(), from = data.len(), to = size, "truncating partial shadow wal tail");
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(Error::io("open", &path))?;
            f.set_len(size).map_err(Error::io("truncate", &path))?;
            f.sync_all().map_err(Error::io("fsync", &path))?;
        }
        let mut header = [0u8; HEADER_SIZE];
        header.copy_from_slice(&data[..HEADER_SIZE]);
        inner.shadow = Some(Shadow {
            generation: g,
            index,
            size,
            header,
            hdr,
            checksum: scan.committed_checksum,
        });
        self.remove_other_generations(g);
        debug!(db = %self.opts.path.display(), pos = %Pos::new(g, index, size), "resuming generation");
        Ok(())
    }

    fn remove_other_generations(&self, keep: Generation) {
        let dir = self.meta_dir.join(layout::GENERATIONS_DIR);
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let name = e.file_name();
            if Generation::parse(&name.to_string_lossy()) != Some(keep)
                && let Err(err) = std::fs::remove_dir_all(e.path())
            {
                warn!(path = %e.path().display(), error = %err, "cannot remove old generation");
            }
        }
    }

    pub(super) fn create_generation(&self, inner: &mut Inner, reason: &str) -> Result<()> {
        let g = Generation::random();
        info!(db = %self.opts.path.display(), generation = %g, reason, "sync: new generation");
        if let Some(tx) = self.events.get() {
            let _ = tx.send(crate::event::Event::GenerationStarted {
                db: self.opts.path.clone(),
                generation: g,
                reason: reason.to_string(),
            });
        }
        inner.shadow = None;
        let wal_file = File::open(&self.wal_path).map_err(Error::io("open", &self.wal_path))?;
        let mut header = [0u8; HEADER_SIZE];
        if read_up_to(&wal_file, &mut header, 0, &self.wal_path)? < HEADER_SIZE {
            return Err(Error::corrupt(
                self.wal_path.display().to_string(),
                "wal header missing",
            ));
        }
        let hdr = WalHeader::parse(&header)
            .map_err(|e| Error::corrupt(self.wal_path.display().to_string(), e.to_string()))?;
        let path = self.shadow_path(g, 0);
        write_atomic(&path, &header)?;
        self.metrics.total_wal_bytes.inc_by(HEADER_SIZE as u64);
        let mut sh = Shadow {
            generation: g,
            index: 0,
            size: HEADER_SIZE as u64,
            header,
            hdr,
            checksum: hdr.checksum,
        };
        let real_len = wal_file
            .metadata()
            .map_err(Error::io("stat", &self.wal_path))?
            .len();
        self.copy_frames(&wal_file, real_len, &mut sh)?;
        crate::fault::point("generation.before_record");
        write_atomic(
            &shadow::generation_file(&self.meta_dir),
            format!("{g}\n").as_bytes(),
        )?;
        inner.shadow = Some(sh);
        self.remove_other_generations(g);
        inner.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Starts a new generation now (and with it a new snapshot on every replica), e.g.
    /// after a replica failed validation. Blocking.
    pub fn force_new_generation(&self, reason: &str) -> Result<()> {
        let mut inner = self.lock();
        self.conn(&mut inner)?;
        let r = self.create_generation(&mut inner, reason);
        let pos = inner.shadow.as_ref().map(Shadow::pos);
        drop(inner);
        self.pos_tx.send_if_modified(|p| {
            let changed = *p != pos;
            *p = pos;
            changed
        });
        r
    }
}
