//! What `status` shows: the manager, each pool and every worker, as JSON.

use serde_json::{json, Value};

use super::{Board, Core};

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
                })
            })
            .collect();
        // The first pool (the serving one, when there is one) is the daemon's mode.
        let main = self.pools.values().next();
        let mut status = json!({
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
}
