//! What `status` shows: the manager, its pool and every worker, as JSON.

use serde_json::{json, Value};

use super::Manager;
use crate::sys::monotonic_ms;

impl Manager {
    pub(super) fn snapshot(&self) -> Value {
        let now = monotonic_ms();
        let workers: Vec<Value> = self
            .procs
            .iter()
            .map(|p| {
                let v = self.board.view(p.slot);
                json!({
                    "slot": p.slot,
                    "pid": p.pid.as_raw(),
                    "state": v.state.letter().to_string(),
                    "generation": p.generation,
                    "requests": v.requests,
                    "active": v.active,
                    "age_ms": now.saturating_sub(p.started_ms),
                    "last_heartbeat_ms": now.saturating_sub(v.heartbeat_ms),
                    "request_age_ms": v.request_ms.map(|t| now.saturating_sub(t)),
                    "request": self.board.request_label(p.slot),
                    "rss": v.rss,
                    "cpu_ms": v.cpu_ms,
                    "stopping": p.stopping.map(|s| format!("{:?}", s.why)),
                })
            })
            .collect();
        let l = self.pool.limits;
        let r = &self.pool.restarts;
        json!({
            "pid": self.pid.as_raw(),
            "package": self.package().name,
            "version": self.package().version,
            "mode": "prefork",
            "generation": self.pool.generation,
            "scoreboard": self.letters(),
            "limits": {
                "workers": l.workers,
                "min_spare": l.min_spare,
                "max_spare": l.max_spare,
                "max_children": l.max_children,
            },
            "pool": {
                "name": self.pool.name,
                "crash_loop": r.in_crash_loop(),
                "recent_crashes": r.recent_crashes(),
                "consecutive_crashes": r.consecutive_crashes(),
                "saturated": self.pool.saturated_since.is_some(),
            },
            "stopping": self.stop.is_some(),
            "workers": workers,
        })
    }
}
