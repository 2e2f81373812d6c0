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
pub(crate) struct BusySpell(Option<(tokio::time::Instant, bool)>);

impl BusySpell {
    /// One more busy round. `Some(seconds so far)` exactly once per spell, the first time
    /// it has lasted [`BUSY_WARN_AFTER`]: the caller says so at warn level (else debug).
    pub(crate) fn busy(&mut self) -> Option<u64> {
        let (since, warned) = self.0.get_or_insert((tokio::time::Instant::now(), false));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_spell_is_said_once_after_the_threshold_and_again_after_it_ends() {
        let mut b = BusySpell::default();
        assert_eq!(
            b.busy(),
            None,
            "the first busy round starts the spell quietly"
        );
        tokio::time::advance(BUSY_WARN_AFTER - Duration::from_millis(1)).await;
        assert_eq!(b.busy(), None, "not yet {BUSY_WARN_AFTER:?}");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(
            b.busy(),
            Some(BUSY_WARN_AFTER.as_secs()),
            "said at the threshold"
        );
        tokio::time::advance(Duration::from_secs(30)).await;
        assert_eq!(b.busy(), None, "said once per spell");
        assert!(b.end(), "the spell had been said");
        assert!(!b.end(), "a second end finds no spell");
        assert_eq!(b.busy(), None, "a new spell starts quietly");
        assert!(!b.end(), "a short spell was never said");
    }
}
