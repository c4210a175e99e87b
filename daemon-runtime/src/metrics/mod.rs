//! The program's own metrics, on the manager's `/metrics` beside the daemon's: counters, gauges
//! and histograms declared as statics and used anywhere (handlers, tasks, hooks, `main`).
//!
//! ```
//! use daemon_runtime::metrics::{Counter, Histogram}; // daemon::metrics in a program
//!
//! static JOBS_DONE: Counter = Counter::new("jobs_done_total", "Jobs finished");
//! static JOBS_FAILED: Counter = Counter::new("jobs_total", "Jobs, by result").with_labels(&[("result", "failed")]);
//! static JOB_SECONDS: Histogram = Histogram::new("job_seconds", "How long a job took", Histogram::DEFAULT_BUCKETS);
//!
//! fn finished(seconds: f64, ok: bool) {
//!     if ok { JOBS_DONE.inc() } else { JOBS_FAILED.inc() }
//!     JOB_SECONDS.observe(seconds);
//! }
//! # finished(0.2, true);
//! ```
//!
//! What `/metrics` shows is the sum over every worker of every pool, and the manager: each
//! process counts in its own row of memory shared with the manager (no lock, no system call:
//! one relaxed atomic add), and the manager adds the rows up when it is scraped. A worker's
//! counts outlive it (the manager keeps them when it reaps it) and a hot upgrade (the new
//! manager is handed the memory, and keeps the old one's counts when it is gone); a
//! gauge is each process's own, summed over those alive.
//!
//! A name or label that Prometheus would refuse is a compile error where the static is
//! declared (the constructors are `const fn`, checked as the static is built); names beginning
//! `daemon_` are the daemon's own. What can only fail at run time (room: 128 metrics, each set
//! of labels counting as one, and 1,024 cells a row; one name described two ways; a
//! histogram's bounds) is logged once by the process that meets it, and that metric counts
//! nothing there. Outside a daemon (a test calling a handler) a metric counts nothing.

pub(crate) mod area;

use std::sync::atomic::{AtomicU32, Ordering};

use area::{Def, Kind};

/// Not resolved yet (this process has not used it).
const UNRESOLVED: u32 = 0;
/// It cannot count here (logged once).
const FAILED: u32 = u32::MAX;

/// What every kind of metric keeps: its declaration and where its cells are, once resolved.
struct Declared {
    name: &'static str,
    help: &'static str,
    labels: &'static [(&'static str, &'static str)],
    kind: Kind,
    bounds: &'static [f64],
    /// Its first cell, plus one, in this process (0: not resolved yet; `FAILED`).
    at: AtomicU32,
}

impl Declared {
    const fn new(name: &'static str, help: &'static str, kind: Kind, own: bool) -> Declared {
        check_name(name, own);
        check_text(help.as_bytes(), area::HELP, "a metric's help is at most 256 bytes");
        Declared { name, help, labels: &[], kind, bounds: &[], at: AtomicU32::new(UNRESOLVED) }
    }

    /// Its first cell in this process's row; `None` when it counts nothing here.
    #[inline]
    fn base(&self) -> Option<u32> {
        match self.at.load(Ordering::Relaxed) {
            FAILED => None,
            UNRESOLVED => self.resolve(),
            at => Some(at - 1),
        }
    }

    #[cold]
    fn resolve(&self) -> Option<u32> {
        let labels = render_labels(self.labels);
        let def = Def { name: self.name, labels: &labels, help: self.help, kind: self.kind, bounds: self.bounds };
        let checked = if self.kind == Kind::Histogram { check_bounds(self.bounds) } else { Ok(()) };
        let registered = checked.and_then(|()| {
            if labels.len() > area::LABELS {
                return Err(format!("its labels take {} bytes written out, and {} fit", labels.len(), area::LABELS));
            }
            area::register(&def)
        });
        match registered {
            Ok(Some(base)) => {
                self.at.store(base + 1, Ordering::Relaxed);
                Some(base)
            }
            // No area (not a daemon, or not yet): nothing counts, and the next use asks again.
            Ok(None) => None,
            Err(why) => {
                tracing::warn!(metric = self.name, labels = %labels, "this metric counts nothing in this process: {why}");
                self.at.store(FAILED, Ordering::Relaxed);
                None
            }
        }
    }

    #[inline]
    fn cell(&self, k: usize) -> Option<&'static std::sync::atomic::AtomicU64> {
        area::cell(self.base()?, k)
    }
}

/// A number that only goes up (Prometheus's counter): jobs done, bytes sent. Name it
/// `..._total`.
pub struct Counter(Declared);

impl Counter {
    /// A counter named `name` (letters, digits, `_` and `:`, not starting with a digit, nor
    /// with `daemon_`), described by `help`.
    pub const fn new(name: &'static str, help: &'static str) -> Counter {
        Counter(Declared::new(name, help, Kind::Counter, false))
    }

    /// The daemon's own, named `daemon_...`.
    #[allow(dead_code)]
    pub(crate) const fn own(name: &'static str, help: &'static str) -> Counter {
        Counter(Declared::new(name, help, Kind::Counter, true))
    }

    /// This counter with fixed labels: each set of labels of one name is a series of its own
    /// (declare one static per set: `JOBS_OK`, `JOBS_FAILED`).
    pub const fn with_labels(self, labels: &'static [(&'static str, &'static str)]) -> Counter {
        check_labels(labels, false);
        let Counter(d) = self;
        Counter(Declared { labels, ..d })
    }

    #[inline]
    pub fn inc(&self) {
        self.inc_by(1);
    }

    #[inline]
    pub fn inc_by(&self, n: u64) {
        if let Some(c) = self.0.cell(0) {
            c.fetch_add(n, Ordering::Relaxed);
        }
    }
}

/// A number that goes up and down (Prometheus's gauge): jobs in hand, connections open. Each
/// process sets its own; `/metrics` shows the sum over the processes alive.
pub struct Gauge(Declared);

impl Gauge {
    /// A gauge named `name` (as [`Counter::new`]'s), described by `help`.
    pub const fn new(name: &'static str, help: &'static str) -> Gauge {
        Gauge(Declared::new(name, help, Kind::Gauge, false))
    }

    /// This gauge with fixed labels.
    pub const fn with_labels(self, labels: &'static [(&'static str, &'static str)]) -> Gauge {
        check_labels(labels, false);
        let Gauge(d) = self;
        Gauge(Declared { labels, ..d })
    }

    /// Sets this process's value.
    #[inline]
    pub fn set(&self, v: i64) {
        if let Some(c) = self.0.cell(0) {
            c.store(v as u64, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn add(&self, v: i64) {
        if let Some(c) = self.0.cell(0) {
            c.fetch_add(v as u64, Ordering::Relaxed);
        }
    }

    #[inline]
    pub fn sub(&self, v: i64) {
        self.add(v.wrapping_neg());
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    #[inline]
    pub fn dec(&self) {
        self.add(-1);
    }
}

/// A distribution (Prometheus's histogram): how many observations fell at or below each bound,
/// their sum and their count.
pub struct Histogram(Declared);

impl Histogram {
    /// Prometheus's default buckets, for durations in seconds.
    pub const DEFAULT_BUCKETS: &'static [f64] = &[0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

    /// A histogram named `name` (as [`Counter::new`]'s), with the upper bounds of its buckets
    /// (1 to 30, finite, increasing; `+Inf` is added).
    pub const fn new(name: &'static str, help: &'static str, bounds: &'static [f64]) -> Histogram {
        assert!(!bounds.is_empty() && bounds.len() <= area::MAX_BOUNDS, "a histogram has 1 to 30 bucket bounds (+Inf is added)");
        let d = Declared::new(name, help, Kind::Histogram, false);
        Histogram(Declared { bounds, ..d })
    }

    /// This histogram with fixed labels (not `le`, which is the buckets').
    pub const fn with_labels(self, labels: &'static [(&'static str, &'static str)]) -> Histogram {
        check_labels(labels, true);
        let Histogram(d) = self;
        Histogram(Declared { labels, ..d })
    }

    /// Counts one observation.
    #[inline]
    pub fn observe(&self, v: f64) {
        let d = &self.0;
        let Some(base) = d.base() else { return };
        let n = d.bounds.len();
        let bucket = d.bounds.iter().position(|b| v <= *b).unwrap_or(n);
        if let Some(c) = area::cell(base, bucket) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(sum) = area::cell(base, n + 1) {
            // One writer a row but for the program's own threads: a short loop at most.
            let _ = sum.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| Some((f64::from_bits(old) + v).to_bits()));
        }
        if let Some(count) = area::cell(base, n + 2) {
            count.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Counts a duration, in seconds.
    #[inline]
    pub fn observe_duration(&self, d: std::time::Duration) {
        self.observe(d.as_secs_f64());
    }
}

/// Bounds that are finite and increasing (a `const fn` cannot compare floats on the oldest
/// compiler this crate supports, so this is checked at first use).
fn check_bounds(bounds: &[f64]) -> Result<(), String> {
    if bounds.iter().any(|b| !b.is_finite()) || bounds.windows(2).any(|w| w[0] >= w[1]) {
        return Err(format!("its bucket bounds {bounds:?} are not finite and increasing"));
    }
    Ok(())
}

/// `k="v",k2="v2"`, values escaped as the text format does.
fn render_labels(labels: &[(&str, &str)]) -> String {
    let mut out = String::new();
    for (i, (k, v)) in labels.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(k);
        out.push_str("=\"");
        for c in v.chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '"' => out.push_str("\\\""),
                '\n' => out.push_str("\\n"),
                c => out.push(c),
            }
        }
        out.push('"');
    }
    out
}

/// The labels back from their rendering, for the encoder (which escapes them itself).
pub(crate) fn parse_labels(text: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next().map(|(_, c)| c) {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => {}
                },
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').to_string(), value));
        rest = &after[end..];
    }
    out
}

// The checks made as a static is built: a `panic!` in a `const fn` evaluated for a static is a
// compile error at the declaration, with this message.

const fn check_name(name: &str, own: bool) {
    let b = name.as_bytes();
    assert!(!b.is_empty() && b.len() <= area::NAME, "a metric's name has 1 to 64 characters");
    assert!(valid_name(b), "a metric's name is ASCII letters, digits, `_` and `:`, and does not begin with a digit");
    let daemon = b.len() >= 7 && b[0] == b'd' && b[1] == b'a' && b[2] == b'e' && b[3] == b'm' && b[4] == b'o' && b[5] == b'n' && b[6] == b'_';
    assert!(own || !daemon, "metric names beginning `daemon_` are the daemon's own: name it after the program");
}

/// The daemon's own metrics that count in the shared area (the others are the manager's, in
/// its registry): the only `daemon_` names a description read back from it may carry.
pub(crate) const HTTP_REQUESTS: &str = "daemon_http_requests_total";
const OWN_IN_THE_AREA: &[&str] = &[HTTP_REQUESTS];

/// Whether a description read back from the area may carry `name`: a program's declaration
/// cannot begin with `daemon_`, so only the daemon's own there may, and a name written by
/// anyone else cannot stand for one of the manager's families in a scrape.
pub(crate) fn may_be_in_the_area(name: &str) -> bool {
    !name.starts_with("daemon_") || OWN_IN_THE_AREA.contains(&name)
}

/// Prometheus's metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`. Checked at compile time for a
/// declaration, and again on every description read back from the shared area.
pub(crate) const fn valid_name(b: &[u8]) -> bool {
    if b.is_empty() || b[0].is_ascii_digit() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if !(b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
            return false;
        }
        i += 1;
    }
    true
}

/// Prometheus's label name: `[a-zA-Z_][a-zA-Z0-9_]*`, not `__` (its own), not `le` on a
/// histogram (its buckets').
pub(crate) const fn valid_label_name(k: &[u8], histogram: bool) -> bool {
    if k.is_empty() || k[0].is_ascii_digit() || (k.len() >= 2 && k[0] == b'_' && k[1] == b'_') {
        return false;
    }
    if histogram && k.len() == 2 && k[0] == b'l' && k[1] == b'e' {
        return false;
    }
    let mut j = 0;
    while j < k.len() {
        if !(k[j].is_ascii_alphanumeric() || k[j] == b'_') {
            return false;
        }
        j += 1;
    }
    true
}

/// Whether `text` is exactly what [`render_labels`] writes for some valid labels: what a
/// scrape reads from the shared area is rendered only then (a worker may have written anything).
pub(crate) fn valid_labels(text: &str, histogram: bool) -> bool {
    let labels = parse_labels(text);
    let pairs: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let distinct = pairs.iter().enumerate().all(|(i, (k, _))| pairs[..i].iter().all(|(o, _)| o != k));
    distinct && pairs.iter().all(|(k, _)| valid_label_name(k.as_bytes(), histogram)) && render_labels(&pairs) == text
}

const fn check_text(b: &[u8], most: usize, message: &'static str) {
    if b.len() > most {
        panic!("{}", message);
    }
}

const fn check_labels(labels: &[(&str, &str)], histogram: bool) {
    let mut i = 0;
    while i < labels.len() {
        let k = labels[i].0.as_bytes();
        assert!(!(k.len() >= 2 && k[0] == b'_' && k[1] == b'_'), "label names beginning `__` are Prometheus's own");
        assert!(!(histogram && k.len() == 2 && k[0] == b'l' && k[1] == b'e'), "`le` is the label of a histogram's buckets: name yours otherwise");
        assert!(valid_label_name(k, histogram), "a label's name is ASCII letters, digits and `_`, and does not begin with a digit");
        let mut other = 0;
        while other < i {
            let o = labels[other].0.as_bytes();
            let mut same = o.len() == k.len();
            let mut c = 0;
            while same && c < k.len() {
                same = o[c] == k[c];
                c += 1;
            }
            assert!(!same, "a label is given twice");
            other += 1;
        }
        i += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_written_out_and_read_back() {
        let text = render_labels(&[("queue", "mail"), ("note", "a \"b\"\\\nc")]);
        assert_eq!(text, r#"queue="mail",note="a \"b\"\\\nc""#);
        assert_eq!(parse_labels(&text), [("queue".to_string(), "mail".to_string()), ("note".to_string(), "a \"b\"\\\nc".to_string())]);
        assert!(parse_labels("").is_empty());
    }

    #[test]
    fn only_what_a_declaration_could_write_is_rendered() {
        assert!(valid_name(b"jobs_total") && valid_name(b"a:b") && valid_name(b"_x"));
        for bad in [&b""[..], b"1x", b"a b", b"a\nfake_total 1", b"a{b}", "\u{e9}".as_bytes()] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        assert!(valid_labels("", false) && valid_labels(r#"queue="mail",note="a \"b\"""#, false));
        for bad in [
            r#"queue="mail"#,                       // unterminated
            r#"queue="a"} fake_total 1"#,          // text past the labels
            r#"q ueue="a""#,                        // a bad label name
            r#"__name__="x""#,                      // Prometheus's own
            r#"a="1",a="2""#,                       // twice
            "a=\"1\"\n",                          // a line break outside a value
            r#"junk"#,                              // no labels at all, but not empty
        ] {
            assert!(!valid_labels(bad, false), "{bad}");
        }
        assert!(valid_labels(r#"le="1""#, false) && !valid_labels(r#"le="1""#, true));
    }

    #[test]
    fn bounds_are_finite_and_increasing() {
        assert!(check_bounds(&[0.1, 1.0]).is_ok());
        assert!(check_bounds(&[1.0, 1.0]).is_err());
        assert!(check_bounds(&[f64::NAN]).is_err());
    }

    #[test]
    fn outside_a_daemon_a_metric_counts_nothing_and_asks_again() {
        static C: Counter = Counter::new("c_total", "c");
        C.inc();
        assert_eq!(C.0.at.load(Ordering::Relaxed), UNRESOLVED);
    }
}
