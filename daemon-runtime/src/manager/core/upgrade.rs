//! A hot upgrade as the core sees it: started (by the driver, which forks and execs the program
//! with the sockets), then the new manager's verdict (`OK` once its workers accept, `ERR why`),
//! its exit, or `upgrade_timeout`; it ends in took over, rolled back, or backed out (a held
//! upgrade whose new manager ended while this one lives on).

use serde_json::json;
use tracing::{error, info, warn};

use super::{ms, Board, Command, Core, ExitStatus, Notify, PidFileOp, Pid, Sig, StopKind};

/// An upgrade this manager started.
#[derive(Debug)]
pub(crate) struct UpgradeState {
    pub child: Pid,
    /// What the new manager has said on its verdict pipe so far.
    said: String,
    /// Whether the verdict is whole (read, acted on).
    decided: bool,
    started_ms: u64,
    deadline_ms: u64,
    pub hold: bool,
    pub state: State,
    /// When the new manager gets KILL, once it was asked to stop.
    kill_at_ms: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum State {
    /// Its workers are starting.
    Starting,
    /// It serves; this manager stops (or, held, stays backed out).
    TookOver,
    /// It failed; it is being stopped, and this manager serves on.
    RollingBack(String),
}

/// How the last upgrade ended, for `status` and the `upgrade` command.
#[derive(Clone, Debug)]
pub(crate) struct Outcome {
    pub new_pid: i32,
    pub outcome: &'static str,
    pub why: String,
}

impl Core {
    /// This manager's own old manager, while it runs (it is our parent until it exits).
    pub(crate) fn old_manager_runs(&self) -> Option<Pid> {
        self.upgraded_from
    }

    /// Whether this manager speaks for the service to systemd: not once a new manager has taken
    /// over from it, and, for a new manager, not before it has (its failing start, or its stop
    /// in a rollback, is not the service's).
    pub(crate) fn speaks(&self) -> bool {
        let handed_over = self.upgrade.as_ref().is_some_and(|u| u.state == State::TookOver);
        !handed_over && (self.old_manager_runs().is_none() || self.ready_reported)
    }

    /// Whether the Unix socket files the daemon listens on are this manager's to remove as it
    /// ends: not once a new manager has taken them over, nor while its old manager runs (a
    /// new manager that ends then is rolled back, and the old one serves on).
    pub(crate) fn owns_socket_files(&self) -> bool {
        let handed_over = self.upgrade.as_ref().is_some_and(|u| u.state == State::TookOver);
        !handed_over && self.old_manager_runs().is_none()
    }

    /// Whether this manager answers on the metrics listener, which the two managers of an
    /// upgrade share: the old one until the new one took over, the new one once its pool is
    /// ready. Both at once, a scraper saw each one's counters in turn (a counter that went back
    /// to zero fifteen times in three seconds), and a probe saw `/readyz` flap.
    pub(crate) fn answers_metrics(&self) -> bool {
        let handed_over = self.upgrade.as_ref().is_some_and(|u| u.state == State::TookOver);
        !handed_over && (self.old_manager_runs().is_none() || self.ready_reported)
    }

    /// A new manager whose old one still runs holds its supervised worker and task groups: the
    /// old manager's own run until it is gone (two at once could do one job twice).
    pub(crate) fn singletons_held(&self) -> bool {
        self.old_manager_runs().is_some() && self.pools.values().any(|p| p.kind.singleton())
    }

    /// Whether an upgrade may start now; why not.
    pub(crate) fn may_upgrade(&self) -> Result<(), String> {
        if self.plain {
            return Err("a plain daemon (no workers) cannot be upgraded in place: restart it".to_string());
        }
        if self.stop.is_some() {
            return Err("the daemon is stopping".to_string());
        }
        if let Some(u) = &self.upgrade {
            return Err(format!("an upgrade is under way already (the new manager is pid {})", u.child));
        }
        if let Some(old) = self.old_manager_runs() {
            return Err(format!("this manager's own upgrade is not finished: the old manager (pid {old}) still runs; stop it first"));
        }
        Ok(())
    }

    /// The driver started the new manager.
    pub(super) fn upgrade_started(&mut self, child: Pid, hold: bool, now: u64) {
        let timeout = ms(self.config.upgrade_timeout);
        self.upgrade = Some(UpgradeState {
            child,
            said: String::new(),
            decided: false,
            started_ms: now,
            deadline_ms: now.saturating_add(timeout),
            hold,
            state: State::Starting,
            kill_at_ms: None,
        });
    }

    /// What the new manager has said so far; acted on once whole.
    pub(super) fn upgrade_said(&mut self, text: String, whole: bool, board: &dyn Board, now: u64) {
        let Some(u) = self.upgrade.as_mut() else { return };
        if u.decided {
            return;
        }
        u.said = text;
        if !whole {
            return;
        }
        u.decided = true;
        let said = u.said.trim().to_string();
        let child = u.child;
        if u.state != State::Starting {
            return;
        }
        if said == "OK" {
            self.took_over(child, board, now);
        } else {
            let why = match said.strip_prefix("ERR ") {
                Some(why) => format!("the new manager failed to start: {why}"),
                None if said.is_empty() => {
                    "the new program ended, or closed its verdict pipe, without saying its workers are ready".to_string()
                }
                None => format!("the new program said {said:?}, not that its workers are ready"),
            };
            self.roll_back(why, now);
        }
    }

    fn took_over(&mut self, child: Pid, board: &dyn Board, now: u64) {
        let Some(u) = self.upgrade.as_mut() else { return };
        u.state = State::TookOver;
        let (hold, took_ms) = (u.hold, now.saturating_sub(u.started_ms));
        self.last_upgrade = Some(Outcome { new_pid: child.0, outcome: "took over", why: String::new() });
        *self.counters.upgrades.entry("took_over").or_default() += 1;
        if hold {
            info!(new_manager = child.0, took_ms, "upgrade: the new manager serves; this one is held");
            self.back_out("the upgrade is held", now);
        } else {
            info!(new_manager = child.0, took_ms, "upgrade: the new manager serves; this one retires");
            self.begin_stop(StopKind::Graceful, "upgraded: the new manager serves", board, now);
        }
    }

    /// The upgrade failed: the new manager is stopped, and this one serves on.
    fn roll_back(&mut self, why: String, now: u64) {
        self.roll_back_with(why, true, false, now)
    }

    /// `alive` is false once the new manager is reaped: its pid is nobody's to signal.
    /// `stopping`: the daemon stops, so this manager does not serve on either.
    fn roll_back_with(&mut self, why: String, alive: bool, stopping: bool, now: u64) {
        // Time for the new manager's own stop ladder (QUIT, TERM after graceful_timeout, KILL)
        // to end its workers, before it gets KILL itself.
        let graceful = ms(self.config.graceful_timeout).saturating_add(5_000);
        let Some(u) = self.upgrade.as_mut() else { return };
        if matches!(u.state, State::RollingBack(_)) {
            return;
        }
        let child = u.child;
        u.state = State::RollingBack(why.clone());
        u.decided = true;
        if alive {
            u.kill_at_ms = Some(now.saturating_add(graceful));
            self.push(Command::Signal { pid: child, sig: Sig::Quit });
        }
        if stopping {
            warn!(new_manager = child.0, "upgrade abandoned: the daemon stops, the new manager with it");
        } else if self.backed_out {
            error!(new_manager = child.0, why = %why, "upgrade rolled back: the new manager is stopped; this manager is backed out, with no workers: HUP starts them again");
        } else {
            error!(new_manager = child.0, why = %why, "upgrade rolled back: the new manager is stopped; this manager serves on");
        }
        self.last_upgrade = Some(Outcome { new_pid: child.0, outcome: "rolled back", why });
        *self.counters.upgrades.entry("rolled_back").or_default() += 1;
        self.push(Command::Notify(Notify::MainPid(self.pid)));
        self.push(Command::Notify(Notify::Status("upgrade rolled back".into())));
    }

    /// The daemon stops while the new manager starts: it stops too (the stop is the daemon's).
    pub(super) fn roll_back_for_stop(&mut self, now: u64) {
        self.roll_back_with("the daemon is stopping".to_string(), true, true, now);
    }

    /// The upgrade's deadlines: the new manager's readiness, or its KILL.
    pub(super) fn upgrade_deadline(&self) -> Option<u64> {
        let u = self.upgrade.as_ref()?;
        match u.state {
            State::Starting => Some(u.deadline_ms),
            _ => u.kill_at_ms,
        }
    }

    pub(super) fn check_upgrade(&mut self, now: u64) {
        let Some(u) = self.upgrade.as_mut() else { return };
        if u.state == State::Starting && now >= u.deadline_ms {
            let timeout = self.config.upgrade_timeout;
            self.roll_back(format!("the new manager's workers were not ready within upgrade_timeout ({timeout:?})"), now);
            return;
        }
        if u.kill_at_ms.is_some_and(|at| now >= at) {
            warn!(new_manager = u.child.0, "upgrade: the new manager did not stop within graceful_timeout: KILL");
            let child = u.child;
            u.kill_at_ms = None;
            self.push(Command::Signal { pid: child, sig: Sig::Kill });
        }
    }

    /// A child that is not a worker was reaped: if it is the new manager, the upgrade ends.
    /// Returns whether it was.
    pub(super) fn upgrade_child_exited(&mut self, pid: Pid, status: ExitStatus, now: u64) -> bool {
        let Some(u) = self.upgrade.as_ref() else { return false };
        if u.child != pid {
            return false;
        }
        let state = u.state.clone();
        let said = u.said.trim().to_string();
        match state {
            State::Starting => {
                // What it said before it ended is the reason; it is reaped, so nothing is signalled.
                let why = match said.strip_prefix("ERR ") {
                    Some(why) => format!("the new manager failed to start: {why} ({})", status.describe()),
                    None if status == ExitStatus::Exited(2) => format!(
                        "the new manager ended before its workers were ready: {} (a bad command line or configuration: its reason is in this log or on its stderr)",
                        status.describe()
                    ),
                    None => format!("the new manager ended before its workers were ready: {}", status.describe()),
                };
                let stopping = self.stop.is_some();
                self.roll_back_with(why, false, stopping, now);
            }
            State::RollingBack(_) => {
                info!(new_manager = pid.0, status = %status.describe(), "upgrade: the new manager has exited");
                if let Some(o) = self.last_upgrade.as_mut().filter(|o| o.new_pid == pid.0) {
                    o.why = format!("{} (it ended: {})", o.why, status.describe());
                }
            }
            State::TookOver if self.stop.is_some() => {}
            State::TookOver => {
                if self.backed_out {
                    warn!(new_manager = pid.0, status = %status.describe(), "the new manager has exited; this manager is backed out: HUP starts its workers again")
                } else {
                    info!(new_manager = pid.0, status = %status.describe(), "the new manager has exited; this manager serves (it was backed in)")
                }
                // A held upgrade whose new manager is gone while this one lives on was backed out,
                // whatever it had done before.
                if let Some(o) = self.last_upgrade.as_mut().filter(|o| o.new_pid == pid.0) {
                    o.outcome = "backed out";
                    o.why = format!("the new manager took over, then exited ({}); this manager is the daemon again", status.describe());
                }
                *self.counters.upgrades.entry("backed_out").or_default() += 1;
            }
        }
        // A held old manager outlives the new one: it is the service's main process again.
        if state == State::TookOver && self.stop.is_none() {
            self.push(Command::Notify(Notify::MainPid(self.pid)));
        }
        self.upgrade = None;
        // Its name back, unless the new manager still has it or someone else took it.
        self.push(Command::PidFile(PidFileOp::TakeBack { new: pid }));
        true
    }

    /// The status's upgrade keys: `upgrade`, `last_upgrade`, `upgraded_from`, `backed_out`.
    pub(super) fn upgrade_snapshot(&self, now: u64) -> serde_json::Map<String, serde_json::Value> {
        let current = self.upgrade.as_ref().map(|u| {
            let (state, why) = match &u.state {
                State::Starting => ("starting", None),
                State::TookOver => ("took over", None),
                State::RollingBack(why) => ("rolling back", Some(why.clone())),
            };
            json!({
                "new_pid": u.child.0,
                "state": state,
                "why": why,
                "hold": u.hold,
                "age_ms": now.saturating_sub(u.started_ms),
            })
        });
        let last = self.last_upgrade.as_ref().map(|o| json!({ "new_pid": o.new_pid, "outcome": o.outcome, "why": o.why }));
        let mut keys = serde_json::Map::new();
        keys.insert("upgrade".into(), json!(current));
        keys.insert("last_upgrade".into(), json!(last));
        keys.insert("upgraded_from".into(), json!(self.old_manager_runs().map(|p| p.0)));
        keys.insert("backed_out".into(), json!(self.backed_out));
        keys
    }
}
