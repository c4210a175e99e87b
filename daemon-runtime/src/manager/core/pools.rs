//! Keeping every pool at its size: the spare policy's plan carried out (forks, retirements),
//! generations (HUP), task groups following the file, the post-forking pool's connections,
//! readiness and saturation.

use daemon_config::{GroupConfig, TaskModel};
use tracing::{error, info, warn};

use super::procs::{Proc, Why};
use super::{exits, ms, Board, BoardWrite, Command, Core, ForkError, Hook, Job, Notify, Pid};
use crate::hooks::Spawned;
use crate::pool::backlog;
use crate::pool::policy::{self, Phase, WorkerView};
use crate::pool::supervise::{Rung, BACKOFF_MAX_MS};
use crate::pool::{Kind, Pool};
use crate::scoreboard::State;

impl Core {
    /// The workers of pool `index`, as the spare policy sees them. A worker whose fork is not
    /// confirmed yet is starting.
    pub(super) fn views(&self, index: usize, board: &dyn Board) -> Vec<WorkerView> {
        // While a new generation starts, the old one serves on beside it, outside the policy's
        // view: the policy forks the new generation as if the pool were empty.
        let generation = self.pools.get(&index).map_or(0, |p| p.generation);
        self.procs
            .iter()
            .filter(|p| p.pool == index && !(p.generation < generation && p.stopping.is_none()))
            .map(|p| {
                if p.pid.is_none() {
                    return WorkerView { slot: p.slot, phase: if p.stopping.is_some() { Phase::Exiting } else { Phase::Starting }, started_ms: p.started_ms, unoccupied: true };
                }
                let v = board.view(p.slot);
                let phase = if p.stopping.is_some() || v.state == State::Exiting {
                    Phase::Exiting
                } else {
                    match v.state {
                        State::Waiting | State::Request | State::Long if v.room => Phase::Idle,
                        State::Waiting | State::Request | State::Long => Phase::Busy,
                        _ => Phase::Starting,
                    }
                };
                WorkerView { slot: p.slot, phase, started_ms: p.started_ms, unoccupied: v.active == 0 }
            })
            .collect()
    }

    /// A worker's state letter (`F` while its fork is not confirmed).
    pub(super) fn state_of(&self, p: &Proc, board: &dyn Board) -> State {
        if p.pid.is_none() {
            State::Forking
        } else {
            board.view(p.slot).state
        }
    }

    /// Pool `i`'s state letters, one per worker, in slot order.
    pub(super) fn letters(&self, i: usize, board: &dyn Board) -> String {
        self.procs.iter().filter(|p| p.pool == i).map(|p| self.state_of(p, board).letter()).collect()
    }

    /// Keeps every pool at its size. Returns when to look again, if there is a reason to.
    pub(super) fn manage(&mut self, now: u64, board: &dyn Board) -> Option<u64> {
        // Backed out: the workers retire and none is forked until HUP.
        if self.backed_out {
            return None;
        }
        let indexes: Vec<usize> = self.pools.keys().copied().collect();
        let mut next = None::<u64>;
        let mut counts = policy::Counts::default();
        let held = self.singletons_held();
        for i in indexes {
            // A supervised worker or a task group's would run beside the old manager's own.
            if held && self.pools.get(&i).is_some_and(|p| p.kind.singleton()) {
                continue;
            }
            let (at, c) = self.manage_pool(i, now, board);
            if let Some(at) = at {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
            counts.live += c.live;
            counts.pool += c.pool;
            counts.spares += c.spares;
            counts.busy += c.busy;
        }
        self.report_ready();
        self.tell_status(counts);
        next
    }

    fn manage_pool(&mut self, i: usize, now: u64, board: &dyn Board) -> (Option<u64>, policy::Counts) {
        let views = self.views(i, board);
        let c = policy::count(&views);
        let backlog = self.backlog_of(i, now);
        // The serving pool has no room: connections queue in the kernel, which the next looks
        // sample (and grow the pool for).
        if let Some(p) = self.pools.get(&i).filter(|p| p.primary && p.kind.serves() && !p.removed) {
            let no_room = match p.kind {
                Kind::Postfork => c.live >= p.limits.max_children,
                _ => c.spares == 0 && c.live > 0,
            };
            self.want_queue_samples(no_room);
        }
        let Some(pool) = self.pools.get_mut(&i) else { return (None, c) };
        if pool.removed {
            return (None, c);
        }
        if pool.waiting_for_pool {
            let ready = views.iter().filter(|w| matches!(w.phase, Phase::Idle | Phase::Busy)).count();
            if let Some((watch, _)) = pool.starting.as_mut() {
                watch.any_ready |= ready > 0;
            }
            if ready >= pool.limits.workers as usize {
                pool.waiting_for_pool = false;
                pool.starting = None;
                let (name, generation) = (pool.name.clone(), pool.generation);
                let what = if pool.kind.serves() { "pool ready: every worker accepts" } else { "pool ready: every worker runs" };
                self.push(Command::Board(BoardWrite::AnnounceReady { pool: i, on: false }));
                info!(pool = %name, generation, workers = ready, scoreboard = %self.letters(i, board), "{what}");
                self.retire_older_generations(i, generation, now);
            }
        }
        self.watch_saturation(i, &c, now);
        let healthy_at = self.notice_health(i, now, board);
        let Some(pool) = self.pools.get_mut(&i) else { return (None, c) };
        let mut fork_again = None;
        let mut recheck = None;
        let mut spawn = 0;
        let mut retire = None;
        match pool.kind.clone() {
            // Its children come with connections (see `accepted`); after a crash, the
            // listeners wait out the backoff.
            Kind::Postfork => {
                let at = pool.restarts.not_before();
                if now < at {
                    recheck = Some(at);
                }
            }
            Kind::Supervised => {
                if c.live == 0 {
                    let at = pool.next_ms.max(pool.restarts.not_before());
                    if now >= at {
                        spawn = 1;
                    } else {
                        recheck = Some(at);
                    }
                }
            }
            Kind::Prefork => {
                let plan = policy::plan(&views, &pool.limits, now, pool.last_retire_ms);
                (spawn, retire, recheck) = (plan.spawn, plan.retire, plan.recheck_at);
                // Connections wait and nobody has room: fork for them at once, not one a look.
                let faster = backlog::growth(&views, &pool.limits, backlog);
                if faster > spawn && now >= pool.restarts.not_before() {
                    info!(
                        pool = %pool.name, queued = backlog.queued, forking = faster, workers = c.pool,
                        max_children = pool.limits.max_children,
                        "connections wait in the listen queue and no worker has room: growing the pool faster"
                    );
                    spawn = faster;
                }
            }
            Kind::Task(g) => {
                let plan = policy::plan(&views, &pool.limits, now, pool.last_retire_ms);
                let below_floor = c.pool < pool.limits.workers;
                if g.model == TaskModel::OneShot && !below_floor {
                    // Grown and shrunk at its scaling interval only, by one at a time.
                    if now >= pool.next_ms {
                        pool.next_ms = now.saturating_add(ms(g.scaling_interval));
                        (spawn, retire) = (plan.spawn.min(1), plan.retire);
                    }
                    recheck = Some(pool.next_ms);
                } else {
                    (spawn, retire) = (plan.spawn, plan.retire);
                }
            }
        }
        if let Some(slot) = retire {
            info!(pool = %pool.name, slot, "retiring a surplus spare");
            pool.last_retire_ms = Some(now);
            self.stop_worker(slot, Rung::Quit, Why::Retire, now);
        }
        if spawn > 0 {
            let not_before = self.pools.get(&i).map_or(0, |p| p.restarts.not_before());
            if now < not_before {
                fork_again = Some(not_before);
            } else {
                for _ in 0..spawn {
                    if !self.spawn(i, now) {
                        break;
                    }
                }
            }
        }
        ([recheck, fork_again, healthy_at].into_iter().flatten().min(), c)
    }

    /// Asks for one worker of pool `i` in a free slot. Returns false if there is none.
    pub(super) fn spawn(&mut self, i: usize, now: u64) -> bool {
        let Some(slot) = self.procs.free_slot() else {
            error!("the scoreboard is full");
            return false;
        };
        let Some(pool) = self.pools.get(&i) else { return false };
        let generation = pool.generation;
        let job = match &pool.kind {
            Kind::Prefork => Job::Accept,
            Kind::Postfork => Job::Connection,
            Kind::Supervised => Job::Supervised,
            Kind::Task(g) => Job::Task { group: g.name.clone(), run: g.run.clone() },
        };
        self.procs.insert(Proc { pid: None, slot, pool: i, generation, started_ms: now, stopping: None });
        self.push(Command::Board(BoardWrite::Prepare { slot, generation }));
        self.push(Command::Fork { pool: i, slot, generation, job });
        true
    }

    /// The fork of `slot` worked.
    pub(super) fn forked(&mut self, slot: usize, pid: Pid, now: u64) {
        let Some(p) = self.procs.get_mut(slot) else { return };
        if p.pid.is_some() {
            return;
        }
        self.procs.set_pid(slot, pid);
        self.push(Command::Board(BoardWrite::Pid { slot, pid }));
        let Some(p) = self.procs.get(slot) else { return };
        let (i, generation, stopping) = (p.pool, p.generation, p.stopping);
        // Stopped before its pid was known: the signal goes now.
        if let Some(s) = stopping {
            self.push(Command::Signal { pid, sig: super::signal_of(s.ladder.rung) });
        }
        let Some(pool) = self.pools.get_mut(&i) else { return };
        let failed = pool.restarts.fork_worked();
        if failed > 0 {
            info!(pool = %pool.name, failed, "fork works again");
            pool.fork_failures_logged = false;
        }
        let spawned = Spawned { pid: pid.0 as u32, pool: pool.name.clone(), slot, generation };
        *self.counters.spawned.entry(pool.name.clone()).or_default() += 1;
        // One line per post-forked child would be one per connection: debug.
        if pool.kind == Kind::Postfork {
            tracing::debug!(slot, pid = spawned.pid, "child forked for a connection");
        } else {
            info!(pool = %pool.name, slot, pid = spawned.pid, generation, "worker spawned");
        }
        let _ = now;
        self.push(Command::Hook(Hook::Spawn(spawned)));
    }

    /// The fork of `slot` failed: EAGAIN and ENOMEM (out of processes or memory, for now) are
    /// retried with the pool's backoff and logged once per episode; anything else is reported the
    /// same way and retried at the slowest rate, and the pool keeps what it has.
    pub(super) fn fork_failed(&mut self, slot: usize, error: ForkError, now: u64) {
        let Some(p) = self.procs.get(slot) else { return };
        if p.pid.is_some() {
            return;
        }
        let i = p.pool;
        self.procs.remove_slot(slot);
        self.push(Command::Board(BoardWrite::Clear { pool: i, slot }));
        let Some(pool) = self.pools.get_mut(&i) else { return };
        let (delay, what) = match error {
            ForkError::Again(what) => (pool.restarts.fork_failed(now), what),
            ForkError::Other(what) => {
                for _ in 0..16 {
                    pool.restarts.fork_failed(now);
                }
                (BACKOFF_MAX_MS, what)
            }
        };
        if !pool.fork_failures_logged {
            pool.fork_failures_logged = true;
            warn!(
                pool = %pool.name,
                error = what,
                delay_ms = delay,
                "fork failed; retrying with a backoff (further failures are counted, not logged, until one works)"
            );
        }
    }

    /// Whether the post-forking pool may take a connection now: below max_children, past any
    /// backoff, and no stop.
    pub(crate) fn accepting(&self, now: u64) -> bool {
        self.stop.is_none()
            && !self.backed_out
            && self.pools.get(&0).is_some_and(|p| {
                p.kind == Kind::Postfork
                    && now >= p.restarts.not_before()
                    && self.procs.iter().filter(|w| w.pool == 0).count() < p.limits.max_children as usize
            })
    }

    /// The driver accepted a connection for the post-forking pool: a child for it, if there is
    /// room (else the driver drops it).
    pub(super) fn accepted(&mut self, now: u64) {
        if self.accepting(now) {
            self.spawn(0, now);
        }
    }

    /// Once every pool the start waits for is ready: the detach's verdict, systemd's READY=1, and
    /// the on_ready hooks. After a reload, READY=1 again.
    fn report_ready(&mut self) {
        // The first time, only the pools the start waits for; after a reload, every pool.
        let held = self.singletons_held();
        let waiting = self
            .pools
            .values()
            .filter(|p| !(held && p.kind.singleton()))
            .any(|p| p.waiting_for_pool && !p.removed && (p.primary || self.ready_reported));
        if waiting || (self.ready_reported && !self.reloading) {
            return;
        }
        let first = !self.ready_reported;
        self.ready_reported = true;
        if first {
            // Told once: the start cannot fail after it (held singletons start later).
            for pool in self.pools.values_mut() {
                pool.starting = None;
            }
            self.push(Command::Ready);
            let workers = self.procs.len();
            // After an upgrade, this manager is the service's main process now.
            if self.upgraded_from.is_some() {
                self.push(Command::Notify(Notify::MainPid(self.pid)));
            }
            let accepting = if self.addresses.is_empty() { String::new() } else { format!(" accepting on {}", self.addresses.join(",")) };
            self.push(Command::Notify(Notify::Ready(format!("{workers} workers{accepting}"))));
            self.push(Command::Hook(Hook::Ready));
        } else if self.reloading {
            self.reloading = false;
            if self.speaks() {
                self.push(Command::Notify(Notify::Ready("reloaded".into())));
            }
        }
    }

    /// STATUS= for systemd, when something changed.
    fn tell_status(&mut self, c: policy::Counts) {
        if !self.speaks() {
            return;
        }
        let looping: Vec<&str> = self.pools.values().filter(|p| p.restarts.in_crash_loop()).map(|p| p.name.as_str()).collect();
        let text = if looping.is_empty() {
            format!("{} busy, {} idle, {} workers", c.busy, c.spares, c.pool)
        } else {
            format!(
                "crash loop in {}: workers die soon after they start; forking one each {}s; {} workers",
                looping.join(", "),
                BACKOFF_MAX_MS / 1000,
                c.pool
            )
        };
        if self.told_status.as_deref() != Some(&text) {
            self.told_status = Some(text.clone());
            self.push(Command::Notify(Notify::Status(text)));
        }
    }

    /// Says once per episode that every worker of a serving pool is busy and no more may be
    /// forked (Apache's "server reached MaxRequestWorkers"), and when it is over.
    fn watch_saturation(&mut self, i: usize, c: &policy::Counts, now: u64) {
        let clients = self.config.clients;
        let Some(pool) = self.pools.get_mut(&i) else { return };
        let saturated = match pool.kind {
            Kind::Prefork => c.spares == 0 && c.live >= pool.limits.max_children && c.busy > 0,
            Kind::Postfork => c.live >= pool.limits.max_children,
            _ => false,
        };
        let was = pool.saturated_since.is_some();
        match (saturated, pool.saturated_since) {
            // A pool that keeps reaching its limit says so once per window, not per connection.
            (true, None) if now.saturating_sub(pool.saturation_told_ms) < exits::WINDOW_MS && pool.saturation_told_ms > 0 => {
                pool.saturated_since = Some(now);
            }
            (true, None) => {
                pool.saturation_told_ms = now;
                warn!(
                    pool = %pool.name,
                    busy = c.busy,
                    max_children = pool.limits.max_children,
                    clients,
                    "the pool is saturated: every worker is busy and max_children is reached; \
                     new connections wait in the listen queue (raise max_children or clients)"
                );
                pool.saturated_since = Some(now);
            }
            (false, Some(since)) => {
                if since == pool.saturation_told_ms {
                    info!(pool = %pool.name, lasted_ms = now.saturating_sub(since), "the pool is no longer saturated");
                }
                pool.saturated_since = None;
            }
            _ => {}
        }
        if saturated != was {
            self.push(Command::Board(BoardWrite::Saturated { pool: i, on: saturated }));
        }
    }

    /// Task groups after a reload.
    /// `changed`: the settings a worker reads that the reload changed (none: "").
    pub(super) fn regroup(&mut self, groups: Vec<GroupConfig>, changed: &str, now: u64) {
        let running: Vec<(usize, GroupConfig)> =
            self.pools.values().filter(|p| !p.removed).filter_map(|p| p.group().map(|g| (p.index, g.clone()))).collect();
        for (i, old) in &running {
            match groups.iter().find(|g| g.name == old.name && g.workers > 0) {
                None => {
                    info!(group = %old.name, "HUP: task group removed; stopping its workers gracefully");
                    if let Some(p) = self.pools.get_mut(i) {
                        p.removed = true;
                    }
                    let slots: Vec<usize> = self.procs.iter().filter(|w| w.pool == *i).map(|w| w.slot).collect();
                    for slot in slots {
                        self.stop_worker(slot, Rung::Quit, Why::Retire, now);
                    }
                }
                Some(new) => {
                    let own = new.run != old.run || new.model != old.model || new.scaling_interval != old.scaling_interval;
                    let resized = new.workers != old.workers || new.max_workers != old.max_workers;
                    let config = self.config.clone();
                    if let Some(p) = self.pools.get_mut(i) {
                        p.regroup(new.clone(), &config);
                    }
                    let publish = self.publish_of_index(*i);
                    self.push(Command::Board(publish));
                    // Never old values kept in silence: a worker that can read what changed is
                    // replaced (it finishes its job first), and the log says which and why.
                    if own {
                        info!(pool = %new.name, "HUP: new workers: the group's run, model or scaling_interval changed (each finishes its job first)");
                        self.new_generation_of_singletons(*i, now);
                    } else if !changed.is_empty() {
                        info!(pool = %new.name, changed, "HUP: new workers: their settings changed (each finishes its job first)");
                        self.new_generation_of_singletons(*i, now);
                    } else if resized {
                        info!(pool = %new.name, workers = new.workers, max_workers = new.max_workers, "HUP: task group resized; workers kept: nothing they read changed");
                    } else {
                        info!(pool = %new.name, "HUP: workers kept: nothing they read changed");
                    }
                }
            }
        }
        for g in groups.into_iter().filter(|g| g.workers > 0) {
            if running.iter().any(|(_, old)| old.name == g.name) {
                continue;
            }
            let Some(i) = (0..crate::scoreboard::POOLS).find(|i| !self.pools.contains_key(i)) else {
                error!(group = %g.name, "HUP: no room for another pool on the scoreboard; the group does not start");
                continue;
            };
            info!(group = %g.name, workers = g.workers, "HUP: task group added; starting it");
            let name = g.name.clone();
            let mut pool = Pool::new(i, &name, Kind::Task(g), &self.config, true, now);
            pool.starting = None;
            pool.primary = false;
            let publish = self.publish_of(&pool);
            self.push(Command::Board(publish));
            self.push(Command::Board(BoardWrite::AnnounceReady { pool: i, on: true }));
            self.pools.insert(i, pool);
        }
    }

    /// A new generation of pool `i`'s workers replaces the old one, which finishes its work
    /// first. In a pre-forked pool the old generation serves on until every new worker is ready
    /// (a new generation that cannot start leaves the old one serving); in the others, where two
    /// generations at once could run one job twice, the old one stops at once.
    pub(super) fn new_generation(&mut self, i: usize, board: &dyn Board, now: u64) {
        let Some(pool) = self.pools.get_mut(&i) else { return };
        if pool.kind != Kind::Prefork {
            self.new_generation_of_singletons(i, now);
            return;
        }
        pool.generation += 1;
        pool.waiting_for_pool = true;
        pool.next_ms = 0;
        let generation = pool.generation;
        info!(pool = %pool.name, generation, workers = pool.limits.workers, "new generation: starting it; the old one serves until it is ready");
        self.push(Command::Board(BoardWrite::AnnounceReady { pool: i, on: true }));
        // Of a generation that a quicker HUP made old before it was ready, the workers still
        // starting serve nobody: they end now, so a burst of HUPs does not pile them up.
        let starting: Vec<usize> = self
            .procs
            .iter()
            .filter(|p| p.pool == i && p.stopping.is_none() && p.generation < generation)
            .filter(|p| self.state_of(p, board).before_ready())
            .map(|p| p.slot)
            .collect();
        for slot in starting {
            self.stop_worker(slot, Rung::Term, Why::Retire, now);
        }
    }

    /// A new generation of a pool whose old workers stop first (post-forked children, the
    /// supervised worker, a task group).
    fn new_generation_of_singletons(&mut self, i: usize, now: u64) {
        let Some(pool) = self.pools.get_mut(&i) else { return };
        pool.generation += 1;
        pool.waiting_for_pool = pool.kind != Kind::Postfork;
        pool.next_ms = 0;
        let generation = pool.generation;
        info!(pool = %pool.name, generation, workers = pool.limits.workers, "new generation: replacing every worker");
        self.push(Command::Board(BoardWrite::AnnounceReady { pool: i, on: true }));
        self.retire_older_generations(i, generation, now);
    }

    /// Stops, gracefully, every worker of pool `i` older than `generation`.
    fn retire_older_generations(&mut self, i: usize, generation: u32, now: u64) {
        let old: Vec<usize> =
            self.procs.iter().filter(|p| p.pool == i && p.stopping.is_none() && p.generation < generation).map(|p| p.slot).collect();
        for slot in old {
            self.stop_worker(slot, Rung::Quit, Why::Retire, now);
        }
    }
}
