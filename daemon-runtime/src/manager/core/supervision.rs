//! Carrying out supervision: the verdicts of `pool::supervise` on each worker, the stop ladders,
//! and what each death means for the pool (backoff, crash loops, a failing start), with a log
//! that says each thing once.

use tracing::{error, info, warn};

use super::procs::{Proc, Why};
use super::{signal_of, Board, BoardWrite, Command, Core, ExitStatus, Hook, Notify, Sig};
use crate::hooks::Reaped;
use crate::pool::supervise::{self, Activity, Change, Death, Ending, Exit, Facts, Verdict};
use crate::pool::Kind;
use crate::scoreboard::{SlotView, State};

/// How a scoreboard letter reads as supervision's activity.
pub(super) fn activity(state: State) -> Activity {
    match state {
        State::Empty | State::Forking | State::Forked | State::Starting => Activity::Starting,
        State::Waiting => Activity::Idle,
        State::Request => Activity::Request,
        State::Long => Activity::Long,
        State::Exiting => Activity::Exiting,
    }
}

pub(super) fn facts(p: &Proc, v: &SlotView) -> Facts {
    Facts {
        activity: activity(v.state),
        started_ms: p.started_ms,
        heartbeat_ms: v.heartbeat_ms,
        request_ms: v.request_ms,
        rss: Some(v.rss).filter(|&r| r > 0),
        cpu_ms: Some(v.cpu_ms).filter(|&c| c > 0),
        stopping: p.stopping.map(|s| s.ladder.rung),
    }
}

/// The pool of the worker in `slot`.
fn slot_pool(procs: &super::procs::Procs, slot: usize) -> usize {
    procs.get(slot).map_or(usize::MAX, |p| p.pool)
}

/// `1234ms` as people read it.
fn human(ms: u64) -> String {
    if ms < 10_000 {
        format!("{ms}ms")
    } else {
        format!("{}s", ms / 1000)
    }
}

impl Core {
    /// Judges every worker; stops those a verdict is against. Returns when to judge again.
    /// A worker whose fork is not confirmed yet has no facts to judge.
    pub(super) fn supervise(&mut self, now: u64, board: &dyn Board) -> Option<u64> {
        let workers = self.procs.iter().filter(|p| p.pid.is_some()).filter_map(|p| {
            let s = self.pools.get(&p.pool)?.supervision;
            Some((p.slot, facts(p, &board.view(p.slot)), s))
        });
        let (verdicts, mut next) = supervise::sweep(workers, now, &self.guard);
        for (slot, verdict) in verdicts {
            self.log_verdict(slot, &verdict, now, board);
            // A classic request the manager cuts is never counted by its worker: it is a timeout
            // of its age (in the histogram too, where the slowest requests belong).
            if let Verdict::Overdue { started_ms, .. } = verdict {
                let pool = self.pools.get(&slot_pool(&self.procs, slot)).map(|p| p.name.clone()).unwrap_or_default();
                let age_ns = now.saturating_sub(started_ms).saturating_mul(1_000_000);
                self.counters.retired_work.entry(pool).or_default().record(age_ns, crate::scoreboard::Outcome::Timeout);
            }
            self.stop_worker(slot, verdict.first_rung(), Why::Verdict(verdict), now);
            // Stopped (QUIT) for one limit, it keeps its request's deadline.
            let (Some(p), Some(s)) = (self.procs.get(slot), self.pools.get(&slot_pool(&self.procs, slot)).map(|pool| pool.supervision)) else { continue };
            if let Some(at) = supervise::next_check(&facts(p, &board.view(slot)), &s, &self.guard) {
                next = Some(next.map_or(at, |n| n.min(at)));
            }
        }
        next
    }

    fn log_verdict(&self, slot: usize, verdict: &Verdict, now: u64, board: &dyn Board) {
        let Some(p) = self.procs.get(slot) else { return };
        let v = board.view(slot);
        let pid = p.pid.map_or(0, |p| p.0);
        let state = v.state.letter().to_string();
        let request = board.request_label(slot).unwrap_or_else(|| "(not described)".to_string());
        let request_age = v.request_ms.map(|t| human(now.saturating_sub(t))).unwrap_or_else(|| "none".into());
        let Some(s) = self.pools.get(&p.pool).map(|pool| pool.supervision) else { return };
        let pool = self.pools.get(&p.pool).map(|pool| pool.name.as_str()).unwrap_or("?");
        match verdict {
            Verdict::Silent { since_ms, long } => {
                let limit = if *long { "long_request_timeout" } else { "heartbeat_timeout" };
                error!(
                    pool, slot, pid, %state, %request, %request_age,
                    silent = %human(now.saturating_sub(*since_ms)),
                    "worker hung: no heartbeat within {limit}; taking its stack, then stopping it (QUIT, then TERM after graceful_timeout) and replacing it"
                );
            }
            Verdict::Overdue { started_ms, long } => {
                let limit = if *long { "long_request_timeout" } else { "request_timeout" };
                error!(
                    pool, slot, pid, %state, %request,
                    request_age = %human(now.saturating_sub(*started_ms)),
                    "request past {limit}: taking the worker's stack, then killing it (TERM) and replacing it"
                );
            }
            Verdict::NotReady => error!(
                pool, slot, pid, %state,
                started = %human(now.saturating_sub(p.started_ms)),
                "worker not ready within start_timeout; stopping it and replacing it"
            ),
            Verdict::OverMemory { rss } => warn!(
                pool, slot, pid, rss, max_rss = s.max_rss.unwrap_or(0),
                "worker over max_rss: retiring it gracefully and replacing it"
            ),
            Verdict::OverCpu { cpu_ms } => warn!(
                pool, slot, pid, cpu_ms, max_cpu_ms = s.max_cpu_ms.unwrap_or(0),
                "worker over max_cpu: retiring it gracefully and replacing it"
            ),
        }
    }

    /// Climbs every stopping worker's ladder that is due, and kills foreign children that did
    /// not stop in time. Returns the next rung's time.
    pub(super) fn climb_ladders(&mut self, now: u64) -> Option<u64> {
        let mut next = None::<u64>;
        let mut signals = Vec::new();
        for p in self.procs.iter_mut() {
            let Some(s) = self.pools.get(&p.pool).map(|pool| pool.supervision) else { continue };
            let Some(stopping) = p.stopping.as_mut() else { continue };
            // Not forked yet: its ladder starts once its pid is known.
            let Some(pid) = p.pid else { continue };
            // The first rung held for the worker's stack: sent when the stack is taken or the
            // wait is over; the ladder counts from then.
            if let Some(until) = stopping.held_until {
                if now < until {
                    next = Some(next.map_or(until, |n| n.min(until)));
                    continue;
                }
                stopping.held_until = None;
                stopping.ladder.at_ms = now;
                signals.push((pid, signal_of(stopping.ladder.rung)));
            }
            if let Some(rung) = stopping.ladder.climb(&s, now) {
                stopping.climbed = true;
                warn!(slot = p.slot, pid = pid.0, signal = signal_of(rung).name(), "worker did not stop in time: climbing the stop ladder");
                signals.push((pid, signal_of(rung)));
            }
            if let Some((_, due)) = stopping.ladder.next(&s) {
                next = Some(next.map_or(due, |n| n.min(due)));
            }
        }
        for (pid, child) in self.procs.foreign_mut() {
            if child.kill_at_ms.is_some_and(|at| at <= now) {
                warn!(pid = pid.0, "foreign child did not stop within graceful_timeout: KILL");
                signals.push((pid, Sig::Kill));
                child.kill_at_ms = None;
                self.had_to_kill = true;
            }
        }
        for (pid, sig) in signals {
            self.push(Command::Signal { pid, sig });
        }
        next
    }

    /// Once a worker has been ready for `min_worker_lifetime`, the crash backoff starts again
    /// from the bottom (and a crash loop ends). Returns when the youngest ready worker will have
    /// lived long enough, if the pool is waiting for that.
    pub(super) fn notice_health(&mut self, i: usize, now: u64, board: &dyn Board) -> Option<u64> {
        let pool = self.pools.get_mut(&i)?;
        let r = pool.restart;
        if pool.restarts.consecutive_crashes() == 0 && !pool.restarts.in_crash_loop() {
            return None;
        }
        let mut soonest = None::<u64>;
        // Of the pool's current generation only: an old one that lives on while a reload's new
        // workers crash proves nothing of them (the crash loop was said over, then again, every 10 s).
        let generation = pool.generation;
        for p in self.procs.iter().filter(|p| p.stopping.is_none() && p.pool == i && p.pid.is_some() && p.generation == generation) {
            let state = board.view(p.slot).state;
            if !matches!(state, State::Waiting | State::Request | State::Long) {
                continue;
            }
            let old_enough = p.started_ms.saturating_add(r.min_lifetime_ms);
            if now >= old_enough {
                if pool.restarts.healthy(now, &r) == Change::LeftCrashLoop {
                    info!(pool = %pool.name, slot = p.slot, pid = p.pid.map_or(0, |p| p.0), "the crash loop is over: a worker has lived past min_worker_lifetime");
                }
                return None;
            }
            soonest = Some(soonest.map_or(old_enough, |s| s.min(old_enough)));
        }
        soonest
    }

    /// What a worker's death means: logged (once per kind per window), counted towards the
    /// backoff and the crash loop, and towards a failing start.
    pub(super) fn on_death(&mut self, p: Proc, status: ExitStatus, board: &dyn Board, now: u64) {
        let slot = p.slot;
        let pid = p.pid.map_or(0, |p| p.0);
        let view = board.view(slot);
        let note = board.note(slot);
        self.push(Command::Board(BoardWrite::Clear { pool: p.pool, slot }));
        let (ending, code, signal) = match status {
            ExitStatus::Exited(code) => (Ending::Exited(code), Some(code), None),
            ExitStatus::Signaled { number, fault, .. } => (Ending::Signaled { fault }, None, Some(number)),
        };
        let how = status.describe();
        let never_ready = view.state.before_ready();
        let exit = Exit {
            ending,
            asked: p.stopping.is_some(),
            announced: view.state == State::Exiting,
            was_ready: !never_ready,
            gave_up: note.is_some(),
            lived_ms: now.saturating_sub(p.started_ms),
        };
        let Some(pool) = self.pools.get(&p.pool) else { return };
        let (pool_name, kind, r) = (pool.name.clone(), pool.kind.clone(), pool.restart);
        let death = supervise::classify(&exit, r.min_lifetime_ms);
        // During the daemon's stop, a worker was killed when the ladder had to climb because it
        // did not stop in time (past what the stop asked, QUIT or TERM) and that rung ended it,
        // or when its own graceful_timeout alarm did. One that crashed meanwhile was not killed,
        // nor one that a later, faster stop ended as it asked. (A worker that was never ready had
        // no work to cut off: TERM is how a stop ends it.)
        let climbed = p.stopping.is_some_and(|s| s.climbed);
        let killed = !never_ready
            && match status {
                ExitStatus::Signaled { sig: Sig::Other("SIGALRM"), .. } => true,
                ExitStatus::Signaled { sig: Sig::Term | Sig::Kill, .. } => climbed,
                _ => false,
            };
        if self.stop.is_some() && p.stopping.is_some_and(|s| s.why == Why::Stop) && killed {
            warn!(pool = %pool_name, slot, pid, status = %how, "worker did not stop in time and was killed; the manager's exit status will say so");
            self.had_to_kill = true;
        }
        let reason = note.clone().unwrap_or_else(|| "none given".to_string());
        let death_name = match death {
            Death::Expected => "expected",
            Death::Crash => "crash",
            Death::Unexpected => "unexpected",
        };
        // A post-forked child's expected end is one per connection: not worth a line each.
        let quiet = kind == Kind::Postfork && death == Death::Expected;
        let log_kind = match death {
            Death::Expected => format!("{pool_name}: workers exited ({how})"),
            Death::Unexpected => format!("{pool_name}: workers died ({how}; {reason})"),
            Death::Crash => format!("{pool_name}: workers crashed ({how}; {reason})"),
        };
        if !quiet && self.exits.first_of_kind(&log_kind, now) {
            let why = p.stopping.map_or("it returned", |s| s.why.describe());
            match death {
                Death::Expected => info!(pool = %pool_name, slot, pid, requests = view.requests, status = %how, why, "worker exited"),
                Death::Unexpected => warn!(
                    pool = %pool_name, slot, pid, requests = view.requests, status = %how, reason = %reason,
                    scoreboard = %self.letters(p.pool, board),
                    "worker died; replacing it"
                ),
                Death::Crash => error!(
                    pool = %pool_name, slot, pid, requests = view.requests, status = %how, reason = %reason,
                    lived_ms = exit.lived_ms,
                    "worker crashed (before it was ready, or soon after): backing off before the next fork"
                ),
            }
        }
        let cause = match (p.stopping.map(|s| s.why), death) {
            (Some(Why::Stop), _) => "stopped",
            (Some(Why::Retire), _) => "retired",
            (Some(Why::Verdict(Verdict::Silent { .. })), _) => "hung",
            (Some(Why::Verdict(Verdict::Overdue { .. })), _) => "deadline",
            (Some(Why::Verdict(Verdict::NotReady)), _) => "not_ready",
            (Some(Why::Verdict(Verdict::OverMemory { .. })), _) => "memory",
            (Some(Why::Verdict(Verdict::OverCpu { .. })), _) => "cpu",
            (None, Death::Crash) => "crashed",
            (None, Death::Unexpected) => "failed",
            (None, Death::Expected) => match kind {
                Kind::Prefork => "recycled",
                Kind::Postfork => "served",
                _ => "returned",
            },
        };
        *self.counters.exits.entry((pool_name.clone(), cause)).or_default() += 1;
        *self.counters.served.entry(pool_name.clone()).or_default() += view.requests;
        self.counters.retired_work.entry(pool_name.clone()).or_default().add(&board.work(slot));
        // A worker that ended with a request in hand (a crash, a kill, a fast stop) never
        // counted it: an error of its age (one killed for its deadline was counted then).
        let cut_for_deadline = matches!(p.stopping.map(|s| s.why), Some(Why::Verdict(Verdict::Overdue { .. })));
        if let Some(started) = view.request_ms.filter(|_| !cut_for_deadline && matches!(view.state, State::Request | State::Long)) {
            let age_ns = now.saturating_sub(started).saturating_mul(1_000_000);
            self.counters.retired_work.entry(pool_name.clone()).or_default().record(age_ns, crate::scoreboard::Outcome::Error);
        }
        self.push(Command::Hook(Hook::Reap(Reaped { pid: pid as u32, pool: pool_name.clone(), slot, code, signal, death: death_name })));
        let speaks = self.speaks();
        let Some(pool) = self.pools.get_mut(&p.pool) else { return };
        if kind == Kind::Supervised && self.stop.is_none() {
            // App::Base's delay_before_respawn, whatever the cause; a crash may wait longer.
            pool.next_ms = now.saturating_add(u64::try_from(self.config.respawn_delay.as_millis()).unwrap_or(u64::MAX));
            if p.stopping.is_none() {
                info!(pool = %pool_name, delay_ms = pool.next_ms - now, "the supervised worker ended; starting it again after respawn_delay");
            }
        }
        if death == Death::Crash && self.stop.is_none() {
            if pool.restarts.record(death, now, &r) == Change::EnteredCrashLoop {
                error!(
                    pool = %pool_name,
                    crashes = pool.restarts.recent_crashes(),
                    restart_intensity = r.intensity,
                    restart_period_ms = r.period_ms,
                    last = %format!("{how}; {reason}"),
                    "the pool is in a crash loop: workers keep dying soon after they start; \
                     forking one each {}s until one lives past min_worker_lifetime",
                    supervise::BACKOFF_MAX_MS / 1000
                );
                if speaks {
                    self.commands.push_back(Command::Notify(Notify::Status(format!("crash loop in {pool_name}: workers keep dying soon after they start"))));
                }
            }
            if never_ready {
                if let Some((watch, last)) = pool.starting.as_mut() {
                    watch.died_before_ready += 1;
                    *last = Some(match &note {
                        Some(note) => format!("(slot {slot}, pid {pid}, {how}) said: {note}"),
                        None => format!("(slot {slot}, pid {pid}) ended with {how}, without a word"),
                    });
                }
            }
        }
    }

    /// The counts of exits not logged one by one, at the end of their window.
    pub(super) fn log_exit_counts(&mut self, now: u64) {
        for (kind, more) in self.exits.close_if_due(now) {
            let secs = super::exits::WINDOW_MS / 1000;
            if kind.contains(": workers exited (") {
                info!(more, "{kind}: {more} more like this in the last {secs}s");
            } else {
                warn!(more, "{kind}: {more} more like this in the last {secs}s");
            }
        }
    }
}
