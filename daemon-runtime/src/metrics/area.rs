//! Where the program's metrics live: one sealed memfd, mapped by the manager before it forks (so
//! every worker shares it) and handed to the next manager in an upgrade.
//!
//! The area has two halves, one per manager of an upgrade: a manager writes its half, and its
//! successor takes the other, so the old workers (still draining) and the new ones never share
//! a row. Each half holds:
//! - a registry of metric descriptions (name, labels, help, kind, bucket bounds), claimed by
//!   whichever process registers a metric first, found by the others by a hash of its name and
//!   labels (open addressing, no lock: a compare-and-swap claims an entry);
//! - one row of counts per scoreboard slot, which only that slot's worker writes (a relaxed
//!   `fetch_add` on its own cache lines: no lock, no contention on the hot path), a row for the
//!   manager itself, and a row of the counts of workers gone (`retired`).
//!
//! When a worker is reaped, the manager folds its row into `retired` (counters and histograms;
//! a gauge is the worker's own and goes with it); when the old manager of an upgrade is gone,
//! the new one folds the whole old half into its own and frees it. A scrape sums `retired` and
//! the rows in use, of both halves while an upgrade hands over; a fold in progress is waited
//! out (a sequence count), so a counter never reads lower than it did.
//!
//! Everything in the area is an integer atomic, and everything read from it is checked: a
//! worker (or the old program) may have written anything there.

use std::os::fd::OwnedFd;
use std::sync::atomic::{fence, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::OnceLock;

use crate::scoreboard::SLOTS;
use crate::sys::{AnyBitsValid, Shared, ZeroValid};

/// Registry entries per half: metrics, counting each set of labels as one.
pub(crate) const ENTRIES: usize = 128;
/// Cells per row: a counter or a gauge takes one, a histogram its buckets and three more.
pub(crate) const CELLS: usize = 1024;
/// A histogram's finite bucket bounds, at most.
pub(crate) const MAX_BOUNDS: usize = 30;
pub(crate) const NAME: usize = 64;
pub(crate) const LABELS: usize = 128;
pub(crate) const HELP: usize = 256;
/// Rows: one per slot, then the manager's, then the retired.
const MANAGER_ROW: usize = SLOTS;
const RETIRED_ROW: usize = SLOTS + 1;
const ROWS: usize = SLOTS + 2;
/// How long a process waits for another to finish describing a metric it claimed.
const CLAIM_WAIT_MS: u64 = 200;

/// An entry's state.
const FREE: u32 = 0;
const CLAIMED: u32 = 1;
const READY: u32 = 2;
/// Carried over from the manager before an upgrade: counts, but no process of this program
/// has registered it yet (a program that now describes it differently takes it over).
const ADOPTED: u32 = 3;
/// Its cells would not fit: it counts nothing.
const FULL: u32 = 4;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    Counter = 1,
    Gauge = 2,
    Histogram = 3,
}

impl Kind {
    fn from_u32(k: u32) -> Option<Kind> {
        match k {
            1 => Some(Kind::Counter),
            2 => Some(Kind::Gauge),
            3 => Some(Kind::Histogram),
            _ => None,
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// What a metric is, as its declaration says.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Def<'a> {
    pub name: &'a str,
    /// The labels, rendered: `result="ok",queue="mail"` (values escaped).
    pub labels: &'a str,
    pub help: &'a str,
    pub kind: Kind,
    pub bounds: &'a [f64],
}

impl Def<'_> {
    /// The cells it takes: one, or a histogram's buckets (the finite ones and +Inf), its sum
    /// and its count.
    pub(crate) fn cells(&self) -> usize {
        match self.kind {
            Kind::Histogram => self.bounds.len() + 3,
            _ => 1,
        }
    }

    /// Its identity across processes and programs: FNV-1a of name and labels, never 0.
    fn id(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in self.name.bytes().chain([0xff]).chain(self.labels.bytes()) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        h | 1
    }
}

#[repr(C)]
struct Entry {
    id: AtomicU64,
    state: AtomicU32,
    kind: AtomicU32,
    /// Its first cell in every row.
    base: AtomicU32,
    bounds_len: AtomicU32,
    bounds: [AtomicU64; MAX_BOUNDS],
    name: [AtomicU8; NAME],
    labels: [AtomicU8; LABELS],
    help: [AtomicU8; HELP],
}

#[repr(C)]
struct Half {
    /// The manager writing this half; 0 when free.
    owner: AtomicU32,
    /// Odd while a row is being folded.
    seq: AtomicU64,
    /// The next free cell of every row.
    next_cell: AtomicU32,
    entries: [Entry; ENTRIES],
    /// Rows that may hold counts: set by the writer when it starts, cleared by the fold.
    used: [AtomicU8; ROWS],
    rows: [[AtomicU64; CELLS]; ROWS],
}

#[repr(C)]
pub(crate) struct Area {
    halves: [Half; 2],
}

// SAFETY: every field, at any depth, is an integer atomic or an array of them: all zero is valid.
unsafe impl ZeroValid for Area {}
// SAFETY: as above: every bit pattern of an integer atomic is a valid value, and no field's
// value is trusted beyond the bounds checks of the code that reads it.
unsafe impl AnyBitsValid for Area {}

/// This process's area, once the daemon has one (the manager makes it before it forks; its
/// workers inherit the mapping).
static AREA: OnceLock<Shared<Area>> = OnceLock::new();
/// The half this process's manager writes.
static HALF: AtomicUsize = AtomicUsize::new(0);
/// The row this process writes: its slot's in a worker, the manager's otherwise.
static ROW: AtomicUsize = AtomicUsize::new(MANAGER_ROW);

fn area() -> Option<&'static Area> {
    AREA.get().map(|s| s.get())
}

fn mine() -> Option<&'static Half> {
    area().map(|a| &a.halves[HALF.load(Ordering::Relaxed) & 1])
}

/// The area for a manager starting: the one an upgrading manager handed over (`handed`: its
/// memfd and the half it writes), whose other half this manager takes, or a new one. Returns
/// the memfd, for the manager to hand on in its own upgrade, and what to log.
pub(crate) fn install(handed: Option<(OwnedFd, usize)>) -> (Option<OwnedFd>, Option<String>) {
    let me = std::process::id();
    let mut note = None;
    if let Some((fd, old_half)) = handed {
        match Shared::<Area>::from_memfd(&fd) {
            Ok(shared) => {
                let half = 1 - (old_half & 1);
                let theirs = &shared.get().halves[half];
                let owner = theirs.owner.load(Ordering::Acquire);
                let busy = owner != 0 && owner != me && nix::sys::signal::kill(nix::unistd::Pid::from_raw(owner as i32), None).is_ok();
                if busy {
                    note = Some(format!(
                        "metrics: the handed-over area's other half is still written by pid {owner} (an upgrade before the last is still draining): the program's metrics start again"
                    ));
                } else {
                    reset(theirs);
                    theirs.owner.store(me, Ordering::Release);
                    theirs.used[MANAGER_ROW].store(1, Ordering::Relaxed);
                    HALF.store(half, Ordering::Relaxed);
                    let _ = AREA.set(shared);
                    return (Some(fd), None);
                }
            }
            Err(why) => note = Some(format!("metrics: the area handed over {why}: the program's metrics start again")),
        }
    }
    match Shared::<Area>::in_memfd("daemon-metrics") {
        Ok((shared, fd)) => {
            let half = &shared.get().halves[0];
            half.owner.store(me, Ordering::Release);
            half.used[MANAGER_ROW].store(1, Ordering::Relaxed);
            HALF.store(0, Ordering::Relaxed);
            let _ = AREA.set(shared);
            (Some(fd), note)
        }
        Err(e) => (None, Some(format!("metrics: cannot make the shared area ({e}): the program's metrics count nothing"))),
    }
}

/// The half this manager writes, to name in an upgrade's handover.
pub(crate) fn half() -> usize {
    HALF.load(Ordering::Relaxed) & 1
}

/// In a worker, right after fork: from now on this process writes its slot's row.
pub(crate) fn become_worker(slot: usize) {
    if slot >= SLOTS {
        return;
    }
    ROW.store(slot, Ordering::Relaxed);
    if let Some(half) = mine() {
        half.used[slot].store(1, Ordering::Release);
    }
}

/// The cell `k` of a metric whose first cell is `base`, in this process's row.
pub(crate) fn cell(base: u32, k: usize) -> Option<&'static AtomicU64> {
    let half = mine()?;
    half.rows.get(ROW.load(Ordering::Relaxed))?.get(base as usize + k)
}

/// Registers `def` in this process's half, or finds it there: its first cell.
pub(crate) fn register(def: &Def<'_>) -> Result<Option<u32>, String> {
    let Some(half) = mine() else { return Ok(None) };
    register_in(half, def, READY).map(Some)
}

fn register_in(half: &Half, def: &Def<'_>, as_state: u32) -> Result<u32, String> {
    if def.kind == Kind::Histogram && def.bounds.len() > MAX_BOUNDS {
        return Err(format!("a histogram has at most {MAX_BOUNDS} buckets"));
    }
    let id = def.id();
    let start = (id % ENTRIES as u64) as usize;
    for k in 0..ENTRIES {
        let e = &half.entries[(start + k) % ENTRIES];
        match e.id.compare_exchange(0, id, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return describe(half, e, def, as_state),
            Err(other) if other != id => continue,
            Err(_) => {}
        }
        // Someone registered this identity (or is doing it): wait for its description.
        let waited_from = crate::sys::monotonic_ms();
        let state = loop {
            let s = e.state.load(Ordering::Acquire);
            if s != FREE && s != CLAIMED {
                break s;
            }
            if crate::sys::monotonic_ms().saturating_sub(waited_from) > CLAIM_WAIT_MS {
                return Err("another process began to register it and did not finish".to_string());
            }
            std::thread::yield_now();
        };
        let found = read_def(e);
        let Some(found) = found.filter(|f| f.name == def.name && f.labels == def.labels) else {
            // Another identity with the same hash: on to the next entry.
            continue;
        };
        if state == FULL {
            return Err(format!("the metrics area has no room left ({CELLS} cells a row)"));
        }
        if found.kind == def.kind && found.bounds == def.bounds {
            if state == ADOPTED && as_state == READY {
                let _ = e.state.compare_exchange(ADOPTED, READY, Ordering::AcqRel, Ordering::Acquire);
            }
            // The base read and checked with the description, not read again: another
            // process may have written anything there since.
            return Ok(found.base as u32);
        }
        // Carried over from the program before an upgrade, and described differently now: the
        // new description takes the entry over, with cells of its own (the old counts go).
        if state == ADOPTED && as_state == READY && e.state.compare_exchange(ADOPTED, CLAIMED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            return describe(half, e, def, as_state);
        }
        let other = if found.kind == def.kind { format!("a {} with other buckets", found.kind.name()) } else { format!("a {}", found.kind.name()) };
        return Err(format!("it is registered already as {other}: one name and labels, one description"));
    }
    Err(format!("the metrics area holds {ENTRIES} metrics (each set of labels counts as one), and all are taken"))
}

/// Fills a claimed entry and makes it ready.
fn describe(half: &Half, e: &Entry, def: &Def<'_>, as_state: u32) -> Result<u32, String> {
    let cells = def.cells() as u32;
    let base = half.next_cell.fetch_add(cells, Ordering::AcqRel);
    write_text(&e.name, def.name);
    write_text(&e.labels, def.labels);
    write_text(&e.help, def.help);
    e.kind.store(def.kind as u32, Ordering::Relaxed);
    e.bounds_len.store(def.bounds.len() as u32, Ordering::Relaxed);
    for (slot, b) in e.bounds.iter().zip(def.bounds) {
        slot.store(b.to_bits(), Ordering::Relaxed);
    }
    if base as usize + cells as usize > CELLS {
        e.state.store(FULL, Ordering::Release);
        return Err(format!("the metrics area has no room left ({CELLS} cells a row)"));
    }
    e.base.store(base, Ordering::Relaxed);
    e.state.store(as_state, Ordering::Release);
    Ok(base)
}

fn write_text(to: &[AtomicU8], text: &str) {
    let bytes = text.as_bytes();
    for (i, slot) in to.iter().enumerate() {
        slot.store(bytes.get(i).copied().unwrap_or(0), Ordering::Relaxed);
    }
}

fn read_text(from: &[AtomicU8]) -> String {
    let bytes: Vec<u8> = from.iter().map(|b| b.load(Ordering::Relaxed)).take_while(|b| *b != 0).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// An entry's description, as owned text: `None` unless it is whole and sane.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Described {
    pub name: String,
    pub labels: String,
    pub help: String,
    pub kind: Kind,
    pub bounds: Vec<f64>,
    base: usize,
}

fn read_def(e: &Entry) -> Option<Described> {
    let kind = Kind::from_u32(e.kind.load(Ordering::Relaxed))?;
    let n = (e.bounds_len.load(Ordering::Relaxed) as usize).min(MAX_BOUNDS);
    let bounds = e.bounds[..n].iter().map(|b| f64::from_bits(b.load(Ordering::Relaxed))).collect();
    let d = Described {
        name: read_text(&e.name),
        labels: read_text(&e.labels),
        help: read_text(&e.help),
        kind,
        bounds,
        base: e.base.load(Ordering::Relaxed) as usize,
    };
    let cells = if kind == Kind::Histogram { n + 3 } else { 1 };
    let histogram = kind == Kind::Histogram;
    // Only what a declaration could have written is rendered: a name or labels with a line
    // break or a brace in them would add lines of their own to the scrape.
    let sane = super::valid_name(d.name.as_bytes())
        && super::may_be_in_the_area(&d.name)
        && super::valid_labels(&d.labels, histogram)
        && super::check_bounds(&d.bounds).is_ok();
    (d.base + cells <= CELLS && sane).then_some(d)
}

/// The entries of a half that count.
fn described(half: &Half) -> Vec<(u64, Described)> {
    half.entries
        .iter()
        .filter(|e| matches!(e.state.load(Ordering::Acquire), READY | ADOPTED))
        .filter_map(|e| read_def(e).map(|d| (e.id.load(Ordering::Relaxed), d)))
        .collect()
}

/// What one metric (one set of labels) counts, summed over the rows: a counter's or gauge's
/// value (a gauge's as the bits of an `i64`), or a histogram's bucket counts (not cumulative),
/// then its sum (as `f64` bits) and its count.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Sample {
    pub def: Described,
    pub values: Vec<u64>,
}

impl Sample {
    pub(crate) fn histogram_sum(&self) -> f64 {
        self.values.get(self.def.bounds.len() + 1).map_or(0.0, |b| f64::from_bits(*b))
    }
}

/// Adds cell values of one metric: integers wrap (a gauge's negative values too), a
/// histogram's sum adds as a float.
fn add_cells(kind: Kind, bounds: usize, into: &mut [u64], from: impl Iterator<Item = u64>) {
    for (k, (to, v)) in into.iter_mut().zip(from).enumerate() {
        if kind == Kind::Histogram && k == bounds + 1 {
            *to = (f64::from_bits(*to) + f64::from_bits(v)).to_bits();
        } else {
            *to = to.wrapping_add(v);
        }
    }
}

/// Every metric of a half, summed over its retired row and every row in use; waits out a fold
/// in progress (by the manager that owns the half, in another process during an upgrade).
fn sum_half(half: &Half) -> Vec<Sample> {
    for _ in 0..100 {
        let before = half.seq.load(Ordering::Acquire);
        if before & 1 == 1 {
            std::thread::yield_now();
            continue;
        }
        let samples = sum_half_once(half);
        fence(Ordering::Acquire);
        if half.seq.load(Ordering::Relaxed) == before {
            return samples;
        }
    }
    sum_half_once(half)
}

fn sum_half_once(half: &Half) -> Vec<Sample> {
    let rows: Vec<&[AtomicU64; CELLS]> =
        (0..ROWS).filter(|&r| r == RETIRED_ROW || half.used[r].load(Ordering::Acquire) != 0).map(|r| &half.rows[r]).collect();
    described(half)
        .into_iter()
        .map(|(_, def)| {
            let n = if def.kind == Kind::Histogram { def.bounds.len() + 3 } else { 1 };
            let mut values = vec![0u64; n];
            for row in &rows {
                let cells = row[def.base..def.base + n].iter().map(|c| c.load(Ordering::Relaxed));
                add_cells(def.kind, def.bounds.len(), &mut values, cells);
            }
            Sample { def, values }
        })
        .collect()
}

/// Every metric, summed over both halves (the other one's only while an upgrade hands over):
/// by name and labels, where both describe it alike; this manager's description wins.
pub(crate) fn gather() -> Vec<Sample> {
    let Some(area) = area() else { return Vec::new() };
    let h = half();
    let mut samples = sum_half(&area.halves[h]);
    let other = &area.halves[1 - h];
    if other.owner.load(Ordering::Acquire) != 0 {
        for s in sum_half(other) {
            let same = samples.iter().position(|m| m.def.name == s.def.name && m.def.labels == s.def.labels);
            let clash = samples.iter().any(|m| m.def.name == s.def.name && m.def.kind != s.def.kind);
            match same.and_then(|i| samples.get_mut(i)) {
                Some(m) if m.def.kind == s.def.kind && m.def.bounds == s.def.bounds => {
                    let bounds = m.def.bounds.len();
                    add_cells(m.def.kind, bounds, &mut m.values, s.values.into_iter());
                }
                Some(_) => {}
                None if clash => {}
                None => samples.push(s),
            }
        }
    }
    samples.sort_by(|a, b| (&a.def.name, &a.def.labels).cmp(&(&b.def.name, &b.def.labels)));
    samples
}

/// Folds the row of a worker gone (its slot is free) into the retired row, and frees the row.
pub(crate) fn fold_slot(slot: usize) {
    let Some(half) = mine() else { return };
    if slot >= SLOTS || half.used[slot].load(Ordering::Acquire) == 0 {
        return;
    }
    let defs = described(half);
    half.seq.fetch_add(1, Ordering::AcqRel);
    fence(Ordering::Release);
    for (_, d) in &defs {
        let n = if d.kind == Kind::Histogram { d.bounds.len() + 3 } else { 1 };
        for k in 0..n {
            let v = half.rows[slot][d.base + k].swap(0, Ordering::AcqRel);
            if d.kind != Kind::Gauge {
                add_to_retired(&half.rows[RETIRED_ROW][d.base + k], d, k, v);
            }
        }
    }
    half.used[slot].store(0, Ordering::Release);
    half.seq.fetch_add(1, Ordering::Release);
}

fn add_to_retired(cell: &AtomicU64, d: &Described, k: usize, v: u64) {
    if d.kind == Kind::Histogram && k == d.bounds.len() + 1 {
        let _ = cell.fetch_update(Ordering::AcqRel, Ordering::Acquire, |old| Some((f64::from_bits(old) + f64::from_bits(v)).to_bits()));
    } else {
        cell.fetch_add(v, Ordering::AcqRel);
    }
}

/// The other manager of an upgrade is gone (the old one, once it has handed over; the new one,
/// once a rollback has reaped it): what its half counted (its workers gone, and any left) joins
/// this manager's retired row, metric by metric, and the half is free for the next upgrade.
/// `gone`: the caller knows it is gone; otherwise only a half whose owner no longer exists is
/// taken. Returns the metrics whose counts could not be carried, for the log.
pub(crate) fn adopt_other_half(gone: bool) -> Vec<String> {
    let Some(area) = area() else { return Vec::new() };
    let h = half();
    let (mine, other) = (&area.halves[h], &area.halves[1 - h]);
    let owner = other.owner.load(Ordering::Acquire);
    let exists = |pid: u32| nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None) != Err(nix::errno::Errno::ESRCH);
    if owner == 0 || (!gone && exists(owner)) {
        return Vec::new();
    }
    let mut lost = Vec::new();
    let samples = sum_half(other);
    mine.seq.fetch_add(1, Ordering::AcqRel);
    fence(Ordering::Release);
    // Taken from the other half's view first: from here on a scrape sees them in ours.
    other.owner.store(0, Ordering::Release);
    for s in samples {
        let bounds: Vec<f64> = s.def.bounds.clone();
        let def = Def { name: &s.def.name, labels: &s.def.labels, help: &s.def.help, kind: s.def.kind, bounds: &bounds };
        match register_in(mine, &def, ADOPTED) {
            Ok(base) => {
                let d = Described { base: base as usize, ..s.def.clone() };
                for (k, v) in s.values.iter().enumerate() {
                    match mine.rows[RETIRED_ROW].get(base as usize + k) {
                        Some(cell) if d.kind != Kind::Gauge => add_to_retired(cell, &d, k, *v),
                        _ => {}
                    }
                }
            }
            Err(why) => lost.push(format!("{}{{{}}}: {why}", s.def.name, s.def.labels)),
        }
    }
    mine.seq.fetch_add(1, Ordering::Release);
    reset(other);
    lost
}

/// Empties a half no manager writes: its registry, and the rows that were in use.
fn reset(half: &Half) {
    let cells = (half.next_cell.load(Ordering::Acquire) as usize).min(CELLS);
    for r in 0..ROWS {
        if r == RETIRED_ROW || r == MANAGER_ROW || half.used[r].load(Ordering::Acquire) != 0 {
            for c in &half.rows[r][..cells] {
                c.store(0, Ordering::Relaxed);
            }
            half.used[r].store(0, Ordering::Relaxed);
        }
    }
    for e in &half.entries {
        e.state.store(FREE, Ordering::Relaxed);
        e.id.store(0, Ordering::Relaxed);
    }
    half.next_cell.store(0, Ordering::Relaxed);
    half.seq.store(0, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn half() -> Box<Half> {
        // The test's own half, on the heap: the layout is what matters, not the sharing.
        let layout = std::alloc::Layout::new::<Half>();
        // SAFETY: `Half` is made of integer atomics, for which all zero bytes are valid; the
        // layout is `Half`'s own, and the box frees it with the same layout.
        unsafe {
            let p = std::alloc::alloc_zeroed(layout).cast::<Half>();
            assert!(!p.is_null());
            Box::from_raw(p)
        }
    }

    const JOBS: Def<'static> = Def { name: "jobs_total", labels: "", help: "Jobs done", kind: Kind::Counter, bounds: &[] };
    const LATENCY: Def<'static> =
        Def { name: "job_seconds", labels: "queue=\"mail\"", help: "How long", kind: Kind::Histogram, bounds: &[0.1, 1.0] };

    fn value(h: &Half, name: &str) -> Vec<u64> {
        sum_half(h).into_iter().find(|s| s.def.name == name).map(|s| s.values).unwrap_or_default()
    }

    #[test]
    fn a_metric_is_registered_once_and_found_by_its_identity() {
        let h = half();
        let a = register_in(&h, &JOBS, READY);
        let b = register_in(&h, &JOBS, READY);
        assert_eq!(a, Ok(0));
        assert_eq!(b, Ok(0));
        assert_eq!(register_in(&h, &LATENCY, READY), Ok(1), "after the counter's one cell");
        let gauge = Def { kind: Kind::Gauge, ..JOBS };
        let e = register_in(&h, &gauge, READY).unwrap_err();
        assert!(e.contains("registered already as a counter"), "{e}");
        let other_labels = Def { labels: "queue=\"sms\"", ..LATENCY };
        assert_eq!(register_in(&h, &other_labels, READY), Ok(6));
    }

    #[test]
    fn rows_sum_and_a_fold_keeps_counters_and_drops_gauges() {
        let h = half();
        let jobs = register_in(&h, &JOBS, READY).unwrap() as usize;
        let busy = register_in(&h, &Def { name: "busy", kind: Kind::Gauge, ..JOBS }, READY).unwrap() as usize;
        let lat = register_in(&h, &LATENCY, READY).unwrap() as usize;
        for slot in [3, 9] {
            h.used[slot].store(1, Ordering::Relaxed);
            h.rows[slot][jobs].fetch_add(5, Ordering::Relaxed);
            h.rows[slot][busy].store(2, Ordering::Relaxed);
            h.rows[slot][lat + 1].fetch_add(1, Ordering::Relaxed); // in (0.1, 1]
            h.rows[slot][lat + 3].store(0.5f64.to_bits(), Ordering::Relaxed);
            h.rows[slot][lat + 4].fetch_add(1, Ordering::Relaxed);
        }
        // A row not in use is not read.
        h.rows[4][jobs].store(1000, Ordering::Relaxed);
        assert_eq!(value(&h, "jobs_total"), [10]);
        assert_eq!(value(&h, "busy"), [4]);
        // Folding a row the way `fold_slot` does, without the process's global area.
        let defs = described(&h);
        for (_, d) in &defs {
            let n = if d.kind == Kind::Histogram { d.bounds.len() + 3 } else { 1 };
            for k in 0..n {
                let v = h.rows[3][d.base + k].swap(0, Ordering::AcqRel);
                if d.kind != Kind::Gauge {
                    add_to_retired(&h.rows[RETIRED_ROW][d.base + k], d, k, v);
                }
            }
        }
        h.used[3].store(0, Ordering::Relaxed);
        assert_eq!(value(&h, "jobs_total"), [10], "a worker's counts outlive it");
        assert_eq!(value(&h, "busy"), [2], "its gauge goes with it");
        let lat = sum_half(&h).into_iter().find(|s| s.def.name == "job_seconds").unwrap();
        assert_eq!((lat.values[1], lat.histogram_sum(), lat.values[4]), (2, 1.0, 2));
    }

    #[test]
    fn an_upgrade_that_redescribes_a_metric_takes_it_over() {
        let h = half();
        assert_eq!(register_in(&h, &JOBS, ADOPTED), Ok(0));
        // The same description makes it the program's own; another one replaces it.
        let as_gauge = Def { kind: Kind::Gauge, ..JOBS };
        assert_eq!(register_in(&h, &as_gauge, READY), Ok(1));
        assert_eq!(sum_half(&h).len(), 1);
        assert_eq!(sum_half(&h)[0].def.kind, Kind::Gauge);
    }

    #[test]
    fn what_a_stranger_wrote_is_read_within_bounds() {
        let h = half();
        register_in(&h, &LATENCY, READY).unwrap();
        let e = h.entries.iter().find(|e| e.state.load(Ordering::Relaxed) == READY).unwrap();
        e.bounds_len.store(u32::MAX, Ordering::Relaxed);
        e.base.store(u32::MAX - 2, Ordering::Relaxed);
        e.kind.store(77, Ordering::Relaxed);
        assert!(sum_half(&h).is_empty());
        e.kind.store(3, Ordering::Relaxed);
        assert!(sum_half(&h).is_empty(), "cells past the row are refused");
    }

    #[test]
    fn a_description_no_declaration_could_write_is_not_rendered() {
        let h = half();
        register_in(&h, &LATENCY, READY).unwrap();
        let e = h.entries.iter().find(|e| e.state.load(Ordering::Relaxed) == READY).unwrap();
        assert_eq!(sum_half(&h).len(), 1);
        write_text(&e.name, "job_seconds\nfake_total 1");
        assert!(sum_half(&h).is_empty(), "a name with a line break");
        write_text(&e.name, "job_seconds");
        write_text(&e.labels, "queue=\"mail\"} 1\nfake_total{a=\"b\"");
        assert!(sum_half(&h).is_empty(), "labels with text past them");
        write_text(&e.name, "daemon_pool_crash_loop");
        assert!(sum_half(&h).is_empty(), "one of the daemon's own names, which no declaration of the program can take");
        write_text(&e.name, "job_seconds");
        write_text(&e.labels, "le=\"1\"");
        assert!(sum_half(&h).is_empty(), "a histogram's own label");
        write_text(&e.labels, "queue=\"mail\"");
        e.bounds[0].store(f64::NAN.to_bits(), Ordering::Relaxed);
        assert!(sum_half(&h).is_empty(), "bounds that are not increasing");
    }

    #[test]
    fn a_full_registry_says_so() {
        let h = half();
        let names: Vec<String> = (0..ENTRIES + 1).map(|i| format!("m{i}")).collect();
        let results: Vec<_> = names.iter().map(|n| register_in(&h, &Def { name: n, ..JOBS }, READY)).collect();
        assert!(results[..ENTRIES].iter().all(|r| r.is_ok()));
        assert!(results[ENTRIES].as_ref().unwrap_err().contains("all are taken"));
    }
}
