//! A pool of workers as a value: its limits, its generation, its supervision settings and the
//! memory of its recent deaths. The decisions about it are pure: how many to fork or retire
//! (`policy`), and whom to stop, how, and when to fork again (`supervise`).

pub mod policy;
pub mod supervise;

use daemon_config::Config;

use policy::Limits;
use supervise::{RestartSettings, Restarts, Settings, StartWatch, KILL_GRACE_MS};

fn ms(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// One pool, as the manager keeps it.
#[derive(Debug)]
pub(crate) struct Pool {
    /// Its header on the scoreboard.
    pub index: usize,
    pub name: String,
    pub limits: Limits,
    pub generation: u32,
    pub last_retire_ms: Option<u64>,
    pub supervision: Settings,
    pub restart: RestartSettings,
    pub restarts: Restarts,
    /// Waiting for every worker of the current generation to be ready (at start, after HUP).
    pub waiting_for_pool: bool,
    /// While the daemon starts: how the first workers are doing, and the last one's reason for
    /// dying before it was ready.
    pub starting: Option<(StartWatch, Option<String>)>,
    /// Since when every worker is busy at max_children, if it is.
    pub saturated_since: Option<u64>,
    /// Failed forks in this episode (logged once, counted after).
    pub fork_failures_logged: bool,
}

impl Pool {
    pub(crate) fn new(index: usize, name: &str, config: &Config, classic: bool, now_ms: u64) -> Pool {
        Pool {
            index,
            name: name.to_string(),
            limits: limits(config),
            generation: 1,
            last_retire_ms: None,
            supervision: supervision(config, classic),
            restart: restart(config),
            restarts: Restarts::default(),
            waiting_for_pool: true,
            starting: Some((
                StartWatch {
                    deadline_ms: now_ms.saturating_add(ms(config.start_timeout)),
                    died_before_ready: 0,
                    any_ready: false,
                },
                None,
            )),
            saturated_since: None,
            fork_failures_logged: false,
        }
    }

    /// A reloaded configuration: new limits and settings, the same memory of deaths.
    pub(crate) fn reconfigure(&mut self, config: &Config) {
        self.limits = limits(config);
        self.supervision = supervision(config, self.supervision.manager_judges_requests);
        self.restart = restart(config);
    }
}

fn limits(c: &Config) -> Limits {
    Limits { workers: c.workers, min_spare: c.min_spare, max_spare: c.max_spare, max_children: c.max_children }
}

fn supervision(c: &Config, classic: bool) -> Settings {
    Settings {
        heartbeat_timeout_ms: c.heartbeat_timeout.map(ms),
        request_timeout_ms: c.request_timeout.map(ms),
        long_request_timeout_ms: c.long_request_timeout.map(ms),
        start_timeout_ms: ms(c.start_timeout),
        max_rss: c.max_rss,
        max_cpu_ms: c.max_cpu.map(ms),
        graceful_ms: ms(c.graceful_timeout),
        kill_grace_ms: KILL_GRACE_MS,
        manager_judges_requests: classic,
    }
}

fn restart(c: &Config) -> RestartSettings {
    RestartSettings {
        intensity: c.restart_intensity,
        period_ms: ms(c.restart_period),
        min_lifetime_ms: ms(c.min_worker_lifetime),
    }
}
