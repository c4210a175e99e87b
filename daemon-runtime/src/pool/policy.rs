//! Spare management as a pure function: from a snapshot of the pool, the limits and the time, the
//! actions to take. No fork, no signal, no clock here; the manager carries the plan out.
//!
//! The rules:
//! - the pool (workers not exiting) never falls below `workers`;
//! - fewer than `min_spare` spares (idle workers, and workers still starting, which will be idle)
//!   and the manager forks more;
//! - never more than `max_children` processes alive, exiting ones included;
//! - more than `max_spare` spares and a pool above `workers`: retire one fully idle worker
//!   gracefully, then wait [`RETIRE_INTERVAL_MS`] before the next, so a passing lull does not
//!   throw away the workers the next burst needs;
//! - a plan never both forks and retires, and a worker forked because spares were short is never
//!   retired for being surplus while nothing else changed (min_spare ≤ max_spare).

/// The least time between two retirements of surplus spares.
pub const RETIRE_INTERVAL_MS: u64 = 1000;

/// The bounds the policy keeps the pool in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The pool's floor (`prefork`, moved by TTIN/TTOU).
    pub workers: u32,
    pub min_spare: u32,
    pub max_spare: u32,
    pub max_children: u32,
}

/// A worker as the policy sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Forked, not accepting yet (will be a spare).
    Starting,
    /// Has room for another connection.
    Idle,
    /// Has no room.
    Busy,
    /// Stopping: accepts nothing more (retired, recycled, or told to stop).
    Exiting,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorkerView {
    pub slot: usize,
    pub phase: Phase,
    /// When it was forked (ms on the monotonic clock).
    pub started_ms: u64,
    /// Serving nothing at all (an async worker can be Idle with connections in flight).
    pub unoccupied: bool,
}

/// What to do now.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Workers to fork.
    pub spawn: u32,
    /// A worker to retire gracefully.
    pub retire: Option<usize>,
    /// When to plan again if nothing wakes the manager before (ms on the monotonic clock).
    pub recheck_at: Option<u64>,
}

/// Counts of a snapshot.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Processes alive, exiting ones included.
    pub live: u32,
    /// Workers not exiting.
    pub pool: u32,
    /// Starting or idle workers.
    pub spares: u32,
    pub busy: u32,
}

pub fn count(workers: &[WorkerView]) -> Counts {
    let mut c = Counts::default();
    for w in workers {
        c.live += 1;
        match w.phase {
            Phase::Starting | Phase::Idle => {
                c.pool += 1;
                c.spares += 1;
            }
            Phase::Busy => {
                c.pool += 1;
                c.busy += 1;
            }
            Phase::Exiting => {}
        }
    }
    c
}

/// Decides what the manager does with its pool now.
pub fn plan(workers: &[WorkerView], limits: &Limits, now_ms: u64, last_retire_ms: Option<u64>) -> Plan {
    let c = count(workers);
    let short_of_floor = limits.workers.saturating_sub(c.pool);
    let short_of_spares = limits.min_spare.saturating_sub(c.spares);
    let wanted = short_of_floor.max(short_of_spares);
    if wanted > 0 {
        let room = limits.max_children.saturating_sub(c.live);
        return Plan { spawn: wanted.min(room), retire: None, recheck_at: None };
    }
    if c.spares <= limits.max_spare || c.pool <= limits.workers {
        return Plan::default();
    }
    if let Some(last) = last_retire_ms {
        let next = last.saturating_add(RETIRE_INTERVAL_MS);
        if now_ms < next {
            return Plan { recheck_at: Some(next), ..Plan::default() };
        }
    }
    let Some(victim) = newest(workers, |w| w.phase == Phase::Idle && w.unoccupied) else {
        // Every spare is serving something; the next change of state will wake the manager.
        return Plan::default();
    };
    let still_surplus = c.spares - 1 > limits.max_spare && c.pool - 1 > limits.workers;
    Plan {
        spawn: 0,
        retire: Some(victim),
        recheck_at: still_surplus.then(|| now_ms.saturating_add(RETIRE_INTERVAL_MS)),
    }
}

/// The worker to retire when the pool must shrink by one (TTOU): the newest unoccupied idle
/// worker, else the newest idle one, else the newest busy one (it finishes its work first).
pub fn pick_retiree(workers: &[WorkerView]) -> Option<usize> {
    newest(workers, |w| w.phase == Phase::Idle && w.unoccupied)
        .or_else(|| newest(workers, |w| w.phase == Phase::Idle))
        .or_else(|| newest(workers, |w| w.phase == Phase::Starting))
        .or_else(|| newest(workers, |w| w.phase == Phase::Busy))
}

fn newest(workers: &[WorkerView], pred: impl Fn(&WorkerView) -> bool) -> Option<usize> {
    workers
        .iter()
        .filter(|w| pred(w))
        .max_by_key(|w| (w.started_ms, w.slot))
        .map(|w| w.slot)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn w(slot: usize, phase: Phase, started_ms: u64) -> WorkerView {
        WorkerView { slot, phase, started_ms, unoccupied: phase != Phase::Busy }
    }

    const LIMITS: Limits = Limits { workers: 2, min_spare: 1, max_spare: 2, max_children: 5 };

    #[test]
    fn an_empty_pool_is_filled_to_its_floor() {
        assert_eq!(plan(&[], &LIMITS, 0, None).spawn, 2);
    }

    #[test]
    fn busy_workers_bring_spares_up_to_max_children() {
        let pool = [w(0, Phase::Busy, 0), w(1, Phase::Busy, 0)];
        assert_eq!(plan(&pool, &LIMITS, 0, None).spawn, 1);
        let full = [0, 1, 2, 3, 4].map(|i| w(i, Phase::Busy, 0));
        assert_eq!(plan(&full, &LIMITS, 0, None), Plan::default());
    }

    #[test]
    fn surplus_is_retired_one_a_second_newest_first() {
        let pool = [0, 1, 2, 3, 4].map(|i| w(i, Phase::Idle, i as u64));
        let p = plan(&pool, &LIMITS, 10_000, None);
        assert_eq!(p.retire, Some(4));
        assert_eq!(p.recheck_at, Some(11_000));
        let p = plan(&pool[..4], &LIMITS, 10_500, Some(10_000));
        assert_eq!((p.retire, p.recheck_at), (None, Some(11_000)));
        // Down to the floor and no further.
        assert_eq!(plan(&pool[..2], &LIMITS, 99_000, Some(10_000)), Plan::default());
    }

    #[test]
    fn exiting_workers_count_against_max_children_only() {
        let pool = [w(0, Phase::Exiting, 0), w(1, Phase::Exiting, 0), w(2, Phase::Exiting, 0), w(3, Phase::Exiting, 0)];
        assert_eq!(plan(&pool, &LIMITS, 0, None).spawn, 1);
    }

    #[test]
    fn ttou_prefers_an_unoccupied_worker() {
        let mut busy_idle = w(1, Phase::Idle, 9);
        busy_idle.unoccupied = false;
        let pool = [w(0, Phase::Idle, 1), busy_idle, w(2, Phase::Busy, 10)];
        assert_eq!(pick_retiree(&pool), Some(0));
        assert_eq!(pick_retiree(&pool[1..]), Some(1));
        assert_eq!(pick_retiree(&pool[2..]), Some(2));
    }

    fn limits() -> impl Strategy<Value = Limits> {
        (1u32..12, 0u32..8, 0u32..8, 0u32..12).prop_map(|(workers, a, b, extra)| {
            let (min_spare, max_spare) = (a.min(b), a.max(b).max(1));
            Limits { workers, min_spare, max_spare, max_children: workers + extra }
        })
    }

    fn phase() -> impl Strategy<Value = Phase> {
        prop_oneof![Just(Phase::Starting), Just(Phase::Idle), Just(Phase::Busy), Just(Phase::Exiting)]
    }

    fn pool(max: usize) -> impl Strategy<Value = Vec<WorkerView>> {
        prop::collection::vec((phase(), 0u64..5_000, any::<bool>()), 0..max).prop_map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(slot, (phase, started_ms, unoccupied))| WorkerView {
                    slot,
                    phase,
                    started_ms,
                    unoccupied: unoccupied || phase != Phase::Busy,
                })
                .collect()
        })
    }

    /// Applies a plan the way the manager does: new workers start, the retiree exits.
    fn apply(pool: &mut Vec<WorkerView>, p: &Plan, now: u64) {
        for _ in 0..p.spawn {
            let slot = pool.iter().map(|w| w.slot + 1).max().unwrap_or(0);
            pool.push(WorkerView { slot, phase: Phase::Starting, started_ms: now, unoccupied: true });
        }
        if let Some(r) = p.retire {
            if let Some(w) = pool.iter_mut().find(|w| w.slot == r) {
                w.phase = Phase::Exiting;
            }
        }
    }

    proptest! {
        #[test]
        fn never_exceeds_max_children(l in limits(), mut pool in pool(16), now in 0u64..100_000,
                                      steps in prop::collection::vec((phase(), any::<prop::sample::Index>()), 0..20)) {
            // A snapshot may already be over the limit (max_children lowered by a reload); then
            // the plan must not add to it.
            let mut last = None;
            for (t, (new_phase, which)) in steps.into_iter().enumerate() {
                let before = count(&pool).live;
                let now = now + t as u64 * 300;
                let p = plan(&pool, &l, now, last);
                prop_assert!(before + p.spawn <= l.max_children.max(before));
                if p.spawn > 0 { prop_assert!(before + p.spawn <= l.max_children); }
                if p.retire.is_some() { last = Some(now); }
                apply(&mut pool, &p, now);
                if !pool.is_empty() {
                    let i = which.index(pool.len());
                    if pool[i].phase != Phase::Exiting { pool[i].phase = new_phase; }
                }
            }
        }

        #[test]
        fn never_retires_a_spare_it_just_forked(l in limits(), mut pool in pool(16), now in 0u64..100_000,
                                                 last in prop::option::of(0u64..100_000)) {
            let p = plan(&pool, &l, now, last);
            prop_assert!(p.spawn == 0 || p.retire.is_none(), "forks and retires at once: {p:?}");
            if p.spawn > 0 {
                apply(&mut pool, &p, now);
                // Nothing else changed, however long it waits: the new spares stay.
                let later = plan(&pool, &l, now + 10 * RETIRE_INTERVAL_MS, None);
                prop_assert_eq!(later.retire, None, "retired a spare it had just forked");
                // And once they are ready, still nothing to retire.
                for w in pool.iter_mut() { if w.phase == Phase::Starting { w.phase = Phase::Idle; } }
                let ready = plan(&pool, &l, now + 10 * RETIRE_INTERVAL_MS, None);
                prop_assert_eq!(ready.retire, None);
            }
        }

        #[test]
        fn converges_when_load_stops(l in limits(), mut pool in pool(16), now in 0u64..100_000) {
            // With every worker idle and time passing, the pool settles within bounds.
            let mut last = None;
            let mut now = now;
            for _ in 0..64 {
                for w in pool.iter_mut() { if w.phase != Phase::Exiting { w.phase = Phase::Idle; w.unoccupied = true; } }
                pool.retain(|w| w.phase != Phase::Exiting);
                let p = plan(&pool, &l, now, last);
                if p == Plan::default() { break; }
                if p.retire.is_some() { last = Some(now); }
                apply(&mut pool, &p, now);
                now = p.recheck_at.unwrap_or(now + 1);
            }
            let c = count(&pool);
            prop_assert!(c.pool >= l.workers.min(l.max_children));
            prop_assert!(c.spares <= l.max_spare.max(l.workers) || c.live > l.max_children);
            prop_assert!(c.spares >= l.min_spare.min(l.max_children.saturating_sub(0)) || c.live >= l.max_children);
        }
    }
}
