//! The log of workers' exits: the first exit of each kind in a window is logged whole, the ones
//! like it after are counted, and a line at the window's end says how many. Handlers that abort
//! in a loop once wrote 12.5 MB of log in 12 s, a line per death.

use std::collections::BTreeMap;

/// How long a window lasts (also the least time between two saturation warnings).
pub(crate) const WINDOW_MS: u64 = 10_000;

#[derive(Debug, Default)]
pub(crate) struct ExitLog {
    window: Option<Window>,
}

#[derive(Debug)]
struct Window {
    ends_ms: u64,
    /// Exits counted but not logged, by kind.
    more: BTreeMap<String, u32>,
}

impl ExitLog {
    /// An exit of `kind` (its cause, not its slot or pid) at `now`: whether to log it in full.
    pub(crate) fn first_of_kind(&mut self, kind: &str, now_ms: u64) -> bool {
        let window = self.window.get_or_insert_with(|| Window { ends_ms: now_ms + WINDOW_MS, more: BTreeMap::new() });
        match window.more.get_mut(kind) {
            Some(n) => {
                *n += 1;
                false
            }
            None => {
                window.more.insert(kind.to_string(), 0);
                true
            }
        }
    }

    /// When the window ends, if there is one.
    pub(crate) fn deadline(&self) -> Option<u64> {
        self.window.as_ref().map(|w| w.ends_ms)
    }

    /// The counts to log at the window's end (kinds with more exits than the first), and the
    /// window is closed.
    pub(crate) fn close_if_due(&mut self, now_ms: u64) -> Vec<(String, u32)> {
        match &self.window {
            Some(w) if now_ms >= w.ends_ms => {}
            _ => return Vec::new(),
        }
        let w = self.window.take().map(|w| w.more).unwrap_or_default();
        w.into_iter().filter(|(_, n)| *n > 0).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_kind_then_a_count() {
        let mut log = ExitLog::default();
        assert!(log.first_of_kind("killed by SIGABRT", 0));
        for t in 1..100 {
            assert!(!log.first_of_kind("killed by SIGABRT", t));
        }
        assert!(log.first_of_kind("exit status 1", 50));
        assert_eq!(log.close_if_due(9_999), vec![]);
        assert_eq!(log.close_if_due(10_000), vec![("killed by SIGABRT".to_string(), 99)]);
        assert_eq!(log.deadline(), None);
        assert!(log.first_of_kind("killed by SIGABRT", 10_001), "a new window logs again");
    }
}
