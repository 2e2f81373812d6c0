//! A spell of rounds that found the database locked by the application: routine, logged at
//! debug, and said once at warn level when it lasts long enough to need a look.
use std::time::Duration;

/// How long the database may stay locked by another connection before the monitor says so
/// at warn level (shorter spells are logged at debug: the next round catches up).
const BUSY_WARN_AFTER: Duration = Duration::from_secs(10);

/// A spell of rounds that found the database locked by another connection (the monitor's
/// sync, a checkpoint, a scheduled snapshot): routine, logged at debug, and said once at
/// warn level when it lasts [`BUSY_WARN_AFTER`].
#[derive(Debug, Default)]
pub(crate) struct BusySpell(Option<(std::time::Instant, bool)>);

impl BusySpell {
    /// One more busy round. `Some(seconds so far)` exactly once per spell, the first time
    /// it has lasted [`BUSY_WARN_AFTER`]: the caller says so at warn level (else debug).
    pub(crate) fn busy(&mut self) -> Option<u64> {
        let (since, warned) = self.0.get_or_insert((std::time::Instant::now(), false));
        if since.elapsed() >= BUSY_WARN_AFTER && !*warned {
            *warned = true;
            Some(since.elapsed().as_secs())
        } else {
            None
        }
    }

    /// The lock was had: the spell is over. Whether it had been said at warn level.
    pub(crate) fn end(&mut self) -> bool {
        self.0.take().is_some_and(|(_, warned)| warned)
    }
}
