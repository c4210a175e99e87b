//! What `status` shows: the manager, each pool and every worker, as JSON.

use serde_json::{json, Value};

use super::{Board, Core};
use crate::pool::supervise;

impl Core {
    pub(super) fn snapshot(&self, now: u64, board: &dyn Board) -> Value {
        if self.plain {
            return json!({
                "pid": self.pid.0,
                "package": self.package.name,
                "mode": "plain",
                "version": self.package.version,
                "uptime_ms": now.saturating_sub(self.started_ms),
                "stopping": self.stop.is_some(),
                "workers": [],
            });
        }
        let workers: Vec<Value> = self
            .procs
            .iter()
            .map(|p| {
                let v = board.view(p.slot);
                json!({
                    "pool": self.pools.get(&p.pool).map(|pool| pool.name.as_str()),
                    "slot": p.slot,
                    "pid": p.pid.map(|p| p.0),
                    "state": self.state_of(p, board).letter().to_string(),
                    "generation": p.generation,
                    "requests": v.requests,
                    "active": v.active,
                    "age_ms": now.saturating_sub(p.started_ms),
                    "last_heartbeat_ms": now.saturating_sub(v.heartbeat_ms),
                    "request_age_ms": v.request_ms.map(|t| now.saturating_sub(t)),
                    "request": board.request_label(p.slot),
                    "rss": v.rss,
                    "cpu_ms": v.cpu_ms,
                    "stopping": p.stopping.map(|s| s.why.describe()),
                    "accepting": v.accepting,
                })
            })
            .collect();
        let pools: Vec<Value> = self
            .pools
            .values()
            .map(|pool| {
                let l = pool.limits;
                let r = &pool.restarts;
                let group = pool.group().map(|g| {
                    json!({
                        "run": g.run,
                        "model": g.model.name(),
                        "workers": g.workers,
                        "max_workers": g.max_workers,
                        "scaling_interval_ms": g.scaling_interval.as_millis() as u64,
                    })
                });
                json!({
                    "name": pool.name,
                    "kind": pool.kind.name(),
                    "generation": pool.generation,
                    "scoreboard": self.letters(pool.index, board),
                    "workers": self.procs.iter().filter(|p| p.pool == pool.index).count(),
                    "workers_auto": matches!(pool.kind, crate::pool::Kind::Prefork).then_some(self.config.workers_auto.as_deref()).flatten(),
                    "accept_cap": Some(pool.accept_cap).filter(|&c| c > 0),
                    "accepting": self.procs.iter().filter(|p| p.pool == pool.index && board.view(p.slot).accepting).count(),
                    "limits": {
                        "workers": l.workers,
                        "min_spare": l.min_spare,
                        "max_spare": l.max_spare,
                        "max_children": l.max_children,
                    },
                    "group": group,
                    "crash_loop": r.in_crash_loop(),
                    "recent_crashes": r.recent_crashes(),
                    "consecutive_crashes": r.consecutive_crashes(),
                    "fork_failures": r.fork_failures(),
                    "saturated": pool.saturated_since.is_some(),
                    "removed": pool.removed,
                    "busy": self.recent_busy(&pool.name, now).map(|(window_ms, busy, workers)| {
                        let percent = if workers > 0.0 { (100.0 * busy / workers).min(100.0) } else { 0.0 };
                        json!({ "window_ms": window_ms, "workers": busy, "pool_workers": workers, "percent": percent })
                    }),
                    "requests": self.counters.seen_work.get(&pool.name).map_or(0, |w| w.requests()),
                })
            })
            .collect();
        // The first pool (the serving one, when there is one) is the daemon's mode.
        let main = self.pools.values().next();
        let listeners: Vec<Value> = self
            .queues
            .samples
            .iter()
            .map(|q| json!({ "listener": q.listener, "waiting": q.waiting, "limit": q.limit, "overflows": q.overflows }))
            .collect();
        let mut status = json!({
            "listeners": listeners,
            "pid": self.pid.0,
            "package": self.package.name,
            "version": self.package.version,
            "mode": main.map_or("none", |p| p.kind.name()),
            "generation": main.map_or(0, |p| p.generation),
            "pools": pools,
            "stopping": self.stop.is_some(),
            "workers": workers,
        });
        if let Some(keys) = status.as_object_mut() {
            keys.extend(self.upgrade_snapshot(now));
        }
        status
    }

    /// `dump` with no worker: what the manager holds and means to do: its pools (limits,
    /// backoff, restarts), its process table (each worker's stop ladder and when a verdict can
    /// next come), its deadlines, and when it next wakes and why.
    pub(super) fn dump(&self, now: u64, board: &dyn Board) -> Value {
        let at = |t: Option<u64>| t.map(|t| json!({ "in_ms": t as i64 - now as i64 }));
        let pools: Vec<Value> = self
            .pools
            .values()
            .map(|pool| {
                let s = pool.supervision;
                json!({
                    "name": pool.name,
                    "kind": pool.kind.name(),
                    "generation": pool.generation,
                    "limits": { "workers": pool.limits.workers, "min_spare": pool.limits.min_spare, "max_spare": pool.limits.max_spare, "max_children": pool.limits.max_children },
                    "supervision": {
                        "heartbeat_timeout_ms": s.heartbeat_timeout_ms,
                        "request_timeout_ms": s.request_timeout_ms,
                        "long_request_timeout_ms": s.long_request_timeout_ms,
                        "start_timeout_ms": s.start_timeout_ms,
                        "graceful_ms": s.graceful_ms,
                        "max_rss": s.max_rss,
                        "max_cpu_ms": s.max_cpu_ms,
                        "manager_judges_requests": s.manager_judges_requests,
                    },
                    "next_fork_not_before": at(Some(pool.restarts.not_before().max(pool.next_ms)).filter(|&t| t > now)),
                    "crash_loop": pool.restarts.in_crash_loop(),
                    "consecutive_crashes": pool.restarts.consecutive_crashes(),
                    "last_retire": at(pool.last_retire_ms),
                    "saturated_since": at(pool.saturated_since),
                    "waiting_for_pool": pool.waiting_for_pool,
                    "starting": pool.starting.is_some(),
                    "removed": pool.removed,
                })
            })
            .collect();
        let processes: Vec<Value> = self
            .procs
            .iter()
            .map(|p| {
                let s = self.pools.get(&p.pool).map(|pool| pool.supervision);
                let facts = super::supervision::facts(p, &board.view(p.slot));
                let verdict_at = s.and_then(|s| supervise::next_check(&facts, &s, &self.guard));
                json!({
                    "pool": self.pools.get(&p.pool).map(|pool| pool.name.as_str()),
                    "slot": p.slot,
                    "pid": p.pid.map(|p| p.0),
                    "generation": p.generation,
                    "state": self.state_of(p, board).letter().to_string(),
                    "age_ms": now.saturating_sub(p.started_ms),
                    "next_verdict_check": at(verdict_at),
                    "stopping": p.stopping.map(|st| json!({
                        "why": st.why.describe(),
                        "rung": format!("{:?}", st.ladder.rung),
                        "since_ms": now.saturating_sub(st.ladder.at_ms),
                        "held_for_stack": st.held_until.is_some(),
                        "next": s.and_then(|s| st.next_due(&s)).map(|(rung, due)| json!({ "rung": format!("{rung:?}"), "in_ms": due as i64 - now as i64 })),
                    })),
                })
            })
            .collect();
        let foreign: Vec<Value> = self.procs.foreign().map(|(pid, f)| json!({ "pid": pid.0, "kill": at(f.kill_at_ms) })).collect();
        json!({
            "manager": {
                "uptime_ms": now.saturating_sub(self.started_ms),
                "stopping": self.stop.map(|k| format!("{k:?}")),
                "stop_deadline": at(self.stop_deadline),
                "backed_out": self.backed_out,
                "ready_reported": self.ready_reported,
                "reloading": self.reloading,
                "stall_guard_until": at(Some(self.guard.until_ms).filter(|&t| t > now)),
                "watchdog_due": at(self.watchdog.map(|(_, due)| due)),
                "wakes_by_workers": board.wakes(),
            },
            "next_wake": at(self.next_look),
            "next_wake_why": self.next_why,
            "pools": pools,
            "processes": processes,
            "foreign_children": foreign,
        })
    }

    /// `/readyz`: ready when the manager is not stopping nor backed out, and its serving pool
    /// (or, without one, every primary pool) has a worker that takes work and is not in a crash
    /// loop; otherwise why not, in a few words.
    pub(crate) fn readiness(&self, board: &dyn Board) -> Result<(), String> {
        if self.stop.is_some() {
            return Err("the daemon is stopping".into());
        }
        if self.backed_out {
            return Err("backed out: no workers until a reload".into());
        }
        let primary: Vec<_> = self.pools.values().filter(|p| p.primary && !p.removed).collect();
        if primary.is_empty() {
            return Err("no pool".into());
        }
        for pool in primary {
            if pool.restarts.in_crash_loop() {
                return Err(format!("{} is in a crash loop", pool.name));
            }
            // Post-forked children come with connections: the manager itself accepts for them.
            if pool.kind == crate::pool::Kind::Postfork {
                continue;
            }
            let serving = self.procs.iter().any(|p| {
                p.pool == pool.index
                    && p.stopping.is_none()
                    && matches!(self.state_of(p, board), crate::scoreboard::State::Waiting | crate::scoreboard::State::Request | crate::scoreboard::State::Long)
            });
            if !serving {
                return Err(format!("no worker of {} is ready", pool.name));
            }
        }
        Ok(())
    }
}
