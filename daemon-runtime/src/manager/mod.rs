//! The manager: one thread, no async runtime, an event loop on poll(2) over its signals, the
//! workers' wake pipe, the control channel and the metrics. Its decisions are the core's
//! (`core`, a state machine that does no I/O and reads no clock); this is the driver: it turns
//! what happens into the core's events (a signal, a reaped child, a fork's result, a control
//! request, a configuration read again, what an upgrade's new manager said), carries out the
//! commands the core answers with (fork, signal, write the scoreboard, tell systemd, run a hook,
//! move the pid file, start an upgrade), and sleeps until the core's next deadline. Idle, with
//! heartbeats on, it wakes about once per `heartbeat_timeout`; with them off, never.

pub(crate) mod core;
mod metrics;
mod spawn;
mod upgrade;

use std::os::fd::{AsFd, OwnedFd};

use daemon_config::{Config, GroupConfig};
use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::signalfd::SignalFd;
use tracing::{debug, error, info, warn};

use self::core::{BoardWrite, Command, Core, Event, ExitStatus, Hook, Notify, PidFileOp, Pid, Request, Sig, Start};
use crate::boot::listener::Listener;
use crate::boot::notify;
use crate::boot::{Housework, Restart};
use crate::control::{self, Channel};
use crate::hooks::{Handler, Hooks};
use crate::scoreboard::{Scoreboard, SlotView};
use crate::signals;
use crate::sources::Layers;
use crate::sys::monotonic_ms;

/// Descriptors that are the manager's alone; a worker closes them first thing (dropping the pid
/// file here closes this process's copy without removing the file, so its lock stays the
/// manager's).
struct Own {
    signals: SignalFd,
    wake_read: OwnedFd,
    /// The control channel, when there is a pid file to find it by.
    channel: Option<Channel>,
    /// `GET /metrics`, with `metrics_listen`.
    metrics: Option<metrics::MetricsServer>,
    /// Workers' stacks: what they send, and the helpers that symbolize them.
    stacks: crate::stack::Stacks,
    housework: Housework,
}

pub(crate) struct Manager {
    core: Core,
    /// Every source of settings, to resolve again on HUP.
    layers: Layers,
    board: Scoreboard,
    listeners: Vec<Listener>,
    hooks: Hooks,
    own: Option<Own>,
    wake_write: OwnedFd,
    /// Where every worker sends its threads' stacks when asked.
    stack_write: OwnedFd,
    pid: nix::unistd::Pid,
    /// How to start the program again (USR2), and the upgrade under way.
    restart: Option<Restart>,
    upgrade: Option<upgrade::UpgradeIo>,
    /// The manager whose upgrade started this one, while it is our parent.
    old_manager: Option<nix::unistd::Pid>,
    /// A connection accepted for the post-forking pool, until its child is forked.
    connection: Option<crate::net::Stream>,
    /// The socket files of listeners closed by the stop, to remove when it is over.
    closed_files: Vec<crate::boot::unix_socket::SocketFile>,
    /// When the metrics last sampled the pools' work and the queues.
    metrics_sampled: Option<u64>,
}

/// Why the manager could not start.
#[derive(Debug)]
pub struct StartError(pub String);

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The scoreboard, as the core reads it.
impl core::Board for Scoreboard {
    fn view(&self, slot: usize) -> SlotView {
        Scoreboard::view(self, slot)
    }
    fn note(&self, slot: usize) -> Option<String> {
        Scoreboard::note(self, slot)
    }
    fn request_label(&self, slot: usize) -> Option<String> {
        Scoreboard::request_label(self, slot)
    }
    fn wakes(&self) -> u64 {
        Scoreboard::wakes(self)
    }
    fn work(&self, slot: usize) -> crate::scoreboard::Work {
        Scoreboard::work(self, slot, crate::sys::monotonic_ns())
    }
}

/// The core's signal for a system one.
pub(crate) fn sig_of(signal: Signal) -> Sig {
    match signal {
        Signal::SIGHUP => Sig::Hup,
        Signal::SIGINT => Sig::Int,
        Signal::SIGQUIT => Sig::Quit,
        Signal::SIGKILL => Sig::Kill,
        Signal::SIGUSR1 => Sig::Usr1,
        Signal::SIGUSR2 => Sig::Usr2,
        Signal::SIGTERM => Sig::Term,
        Signal::SIGCHLD => Sig::Chld,
        Signal::SIGWINCH => Sig::Winch,
        Signal::SIGTTIN => Sig::Ttin,
        Signal::SIGTTOU => Sig::Ttou,
        other => Sig::Other(other.as_str()),
    }
}

/// The system's signal for one of the core's (`None`: one the core never sends).
fn signal_of(sig: Sig) -> Option<Signal> {
    Some(match sig {
        Sig::Hup => Signal::SIGHUP,
        Sig::Int => Signal::SIGINT,
        Sig::Quit => Signal::SIGQUIT,
        Sig::Kill => Signal::SIGKILL,
        Sig::Usr1 => Signal::SIGUSR1,
        Sig::Usr2 => Signal::SIGUSR2,
        Sig::Term => Signal::SIGTERM,
        Sig::Chld => Signal::SIGCHLD,
        Sig::Winch => Signal::SIGWINCH,
        Sig::Ttin => Signal::SIGTTIN,
        Sig::Ttou => Signal::SIGTTOU,
        Sig::Other(_) => return None,
    })
}

/// How a reaped child ended, for the core: signals that mean the process broke itself are told
/// apart from those someone sent. A real-time signal (which nix's `Signal` cannot name) is one.
pub(crate) fn exit_status(ended: crate::sys::Ended) -> ExitStatus {
    match ended {
        crate::sys::Ended::Exited(code) => ExitStatus::Exited(code),
        crate::sys::Ended::Signaled(number) => match Signal::try_from(number) {
            Ok(signal) => {
                let fault = matches!(
                    signal,
                    Signal::SIGSEGV | Signal::SIGBUS | Signal::SIGILL | Signal::SIGFPE | Signal::SIGABRT | Signal::SIGSYS | Signal::SIGTRAP
                );
                ExitStatus::Signaled { sig: sig_of(signal), number, fault }
            }
            Err(_) => ExitStatus::Signaled { sig: Sig::Other("a real-time signal"), number, fault: false },
        },
    }
}

/// Sends `signal` to `pid`; one already gone is no error (it will be reaped).
pub(crate) fn send(pid: nix::unistd::Pid, signal: Signal) {
    if let Err(e) = kill(pid, signal) {
        if e != Errno::ESRCH {
            warn!(pid = pid.as_raw(), signal = %signal, error = %e, "cannot signal worker");
        }
    }
}

/// Tells systemd, when it listens.
pub(crate) fn tell_systemd(n: &Notify) {
    if !notify::enabled() {
        return;
    }
    match n {
        Notify::Ready(text) => notify::ready(text),
        Notify::Reloading => notify::reloading(),
        Notify::Stopping => notify::stopping(),
        Notify::Status(text) => notify::status(text),
        Notify::MainPid(pid) => notify::main_pid(pid.0 as u32),
        Notify::Watchdog => notify::watchdog(),
    }
}

/// Runs a manager hook.
pub(crate) fn run_hook(hooks: &Hooks, hook: &Hook) {
    match hook {
        Hook::Ready => hooks.on_ready(),
        Hook::Spawn(s) => hooks.on_spawn(s),
        Hook::Reap(r) => hooks.on_reap(r),
        Hook::Reload => hooks.on_reload(),
        Hook::Exit => hooks.on_exit(),
    }
}

impl Manager {
    /// Sets up everything the workers inherit: the scoreboard, the signal descriptor (blocking
    /// the signals first), the wake pipe; and the core with the program's pools.
    pub(crate) fn new(
        config: Config,
        groups: Vec<GroupConfig>,
        layers: Layers,
        hooks: Hooks,
        listeners: Vec<Listener>,
        housework: Housework,
        app: Option<Vec<(String, String)>>,
    ) -> Result<Manager, Box<(StartError, Housework)>> {
        let setup = || -> Result<_, StartError> {
            let board = Scoreboard::new().map_err(|e| StartError(format!("cannot map the scoreboard: {e}")))?;
            let signals = signals::manager_signalfd().map_err(|e| StartError(format!("cannot set up signal handling: {e}")))?;
            let (wake_read, wake_write) = nix::unistd::pipe2(OFlag::O_NONBLOCK | OFlag::O_CLOEXEC)
                .map_err(|e| StartError(format!("cannot create the wake pipe: {e}")))?;
            let stacks = crate::stack::Stacks::new().map_err(|e| StartError(format!("cannot create the workers' stack socket: {e}")))?;
            crate::sys::stack_signal::ignore().map_err(|e| StartError(format!("cannot ignore the stack signal: {e}")))?;
            Ok((board, signals, wake_read, wake_write, stacks))
        };
        let (board, signals, wake_read, wake_write, (stacks, stack_write)) = match setup() {
            Ok(parts) => parts,
            Err(e) => return Err(failed_start(e, housework, &listeners)),
        };
        // What a worker leaves behind (a process it started and did not wait for) is re-parented
        // to the manager, reaped by it, and stopped with the daemon, as systemd's
        // KillMode=control-group would: nothing of the daemon's outlives its stop.
        if let Err(e) = nix::sys::prctl::set_child_subreaper(true) {
            warn!(error = %e, "cannot become a child subreaper: processes the workers leave behind go to init, and outlive the daemon");
        }
        let pid = nix::unistd::getpid();
        // Without a pid file nothing can find the control channel; with one, the daemon has its
        // channel or does not start.
        let channel = match housework.pid_file.as_ref().map(|_| Channel::open(pid.as_raw() as u32)).transpose() {
            Ok(c) => c,
            Err(e) => {
                let why = StartError(format!("cannot open the control channel (for stop, reload and status): {e}"));
                return Err(failed_start(why, housework, &listeners));
            }
        };
        if let Some(c) = &channel {
            debug!(name = c.name(), "control channel open");
        }
        let start = Start {
            serving: hooks.on_accept.map(|a| matches!(a.handler, Handler::Sync(_))),
            supervised: hooks.supervised.is_some(),
            addresses: listeners.iter().map(|l| l.addr.to_string()).collect(),
            watchdog_ms: notify::watchdog_interval().map(|d| d.as_millis() as u64),
            pid: Pid(pid.as_raw()),
            package: housework.package,
            upgraded_from: housework.upgraded_from.map(|p| Pid(p.as_raw())),
            plain: false,
            app,
            config,
            groups,
        };
        let core = match Core::new(start, monotonic_ms()) {
            Ok(c) => c,
            Err(why) => return Err(failed_start(StartError(why), housework, &listeners)),
        };
        let (restart, old_manager) = (housework.restart.clone(), housework.upgraded_from);
        let mut housework = housework;
        let metrics = housework.metrics.take().map(|l| {
            let user = core.config().user.as_deref().and_then(|u| crate::boot::privileges::uid_of(u).ok());
            metrics::MetricsServer::new(l, user)
        });
        Ok(Manager {
            core,
            layers,
            board,
            listeners,
            hooks,
            own: Some(Own { signals, wake_read, channel, metrics, stacks, housework }),
            wake_write,
            stack_write,
            pid,
            restart,
            upgrade: None,
            old_manager,
            connection: None,
            closed_files: Vec::new(),
            metrics_sampled: None,
        })
    }

    /// Runs until every pool is stopped and every worker reaped. Returns the exit status.
    pub(crate) fn run(mut self) -> i32 {
        self.execute(monotonic_ms());
        self.handle(Event::Tick);
        loop {
            if let Some(code) = self.core.finished() {
                return code;
            }
            self.wait();
        }
    }

    /// Gives the core an event, then carries out what it asks.
    fn handle(&mut self, event: Event) {
        let now = monotonic_ms();
        self.core.handle(now, &self.board, event);
        self.execute(now);
    }

    /// Carries out the core's commands, in order; a command's result is the core's next event.
    fn execute(&mut self, now: u64) {
        while let Some(command) = self.core.poll_command() {
            if let Some(event) = self.carry_out(command) {
                self.core.handle(now, &self.board, event);
            }
        }
    }

    fn carry_out(&mut self, command: Command) -> Option<Event> {
        match command {
            Command::Fork { pool, slot, generation, job } => return Some(self.fork(pool, slot, generation, job)),
            Command::Signal { pid, sig } => {
                if let Some(signal) = signal_of(sig) {
                    send(nix::unistd::Pid::from_raw(pid.0), signal);
                }
            }
            Command::Board(write) => self.write_board(write),
            Command::Notify(n) => tell_systemd(&n),
            Command::Ready => {
                if let Some(own) = self.own.as_mut() {
                    own.housework.readiness.ready();
                }
            }
            Command::StartFailed(why) => {
                if let Some(own) = self.own.as_mut() {
                    own.housework.readiness.failed(&why);
                }
            }
            Command::Hook(hook) => run_hook(&self.hooks, &hook),
            Command::PidFile(PidFileOp::TakeBack { new }) => {
                self.upgrade = None;
                self.take_back_pid_file(new.0);
            }
            Command::PidFile(PidFileOp::Remove) => {
                if let Some(p) = self.own.as_mut().and_then(|o| o.housework.pid_file.take()) {
                    p.remove();
                }
            }
            Command::StartUpgrade { hold } => match self.start_upgrade() {
                Ok(child) => return Some(Event::UpgradeStarted { child: Pid(child.as_raw()), hold }),
                Err(why) => warn!("upgrade: {why}; nothing started"),
            },
            Command::ReopenLogs => return Some(Event::LogsReopened(self.reopen_logs())),
            Command::ProgramSettings(value) => crate::app::set_current(value),
            Command::Plain(_) => {}
            Command::RemoveSocketFiles => {
                for file in self.listeners.iter().filter_map(|l| l.file.as_ref()).chain(&self.closed_files) {
                    file.remove();
                }
            }
            Command::CloseListeners => {
                // The files stay (removed once the daemon has stopped, if it owns them).
                for l in std::mem::take(&mut self.listeners) {
                    self.closed_files.extend(l.file);
                }
            }
            Command::ListChildren => {
                // The stack helpers are the manager's own, not what a worker left.
                let helper = |pid: i32| self.own.as_ref().is_some_and(|o| o.stacks.is_helper(pid));
                let children = crate::sys::proc::children().into_iter().filter(|&p| !helper(p)).map(Pid).collect();
                return Some(Event::Orphans(children));
            }
            Command::MeasureQueues => return Some(Event::Queues(self.measure_queues())),
            Command::CaptureStacks { pid, slot, pool, verdict } => {
                let own = self.own.as_mut()?;
                match own.stacks.start(pid.0, slot, &pool, crate::stack::Purpose::Verdict(verdict), monotonic_ms()) {
                    Ok(crate::stack::Started::Asking) => {}
                    Ok(crate::stack::Started::Taken) => return Some(Event::StacksTaken { pid }),
                    Err(why) => {
                        warn!(pool = %pool, slot, pid = pid.0, "cannot take the stack of the worker: {why}");
                        return Some(Event::StacksTaken { pid });
                    }
                }
            }
        }
        None
    }

    /// Every listener's accept queue now. One that cannot be read is left out (and said once
    /// at debug level: a socket the kernel has no `TCP_INFO` for is not one to watch).
    fn measure_queues(&self) -> Vec<crate::pool::backlog::Sample> {
        let mut samples = Vec::new();
        for l in &self.listeners {
            let queue = crate::sys::accept_queue(l.as_fd(), !matches!(l.addr, crate::net::Local::Tcp(_)));
            match queue {
                Ok(q) => samples.push(crate::pool::backlog::Sample { listener: l.addr.to_string(), waiting: q.waiting, limit: q.limit, overflows: q.overflows }),
                Err(e) => debug!(listener = %l.addr, error = %e, "cannot read the listen queue"),
            }
        }
        samples
    }

    /// What came from the workers' stacks and the helpers: a judged worker's rung goes once its
    /// stack is taken; a symbolized stack is logged with its verdict, or answers `dump`.
    fn serve_stacks(&mut self) {
        let Some(own) = self.own.as_mut() else { return };
        let heard = own.stacks.service(monotonic_ms());
        for h in heard {
            match h {
                crate::stack::Heard::Taken { pid } => self.handle(Event::StacksTaken { pid: Pid(pid) }),
                crate::stack::Heard::Report { capture, report, text } => {
                    for purpose in &capture.purposes {
                        match purpose {
                            crate::stack::Purpose::Verdict(verdict) => {
                                error!(pool = %capture.pool, slot = capture.slot, pid = capture.pid, verdict = %verdict, "stack of the worker, taken before it was stopped:\n{text}");
                            }
                            crate::stack::Purpose::Dump(client) => {
                                let mut answer = report.clone();
                                answer["text"] = text.clone().into();
                                answer["pid"] = self.pid.as_raw().into();
                                answer["worker_pid"] = capture.pid.into();
                                answer["package"] = self.own.as_ref().map_or("", |o| o.housework.package.name).into();
                                if let Some(channel) = self.own.as_mut().and_then(|o| o.channel.as_mut()) {
                                    channel.answer_later(*client, answer);
                                }
                            }
                        }
                    }
                }
            }
        }
    }

    fn write_board(&self, write: BoardWrite) {
        match write {
            BoardWrite::Prepare { slot, generation } => self.board.prepare(slot, generation),
            BoardWrite::Pid { slot, pid } => self.board.set_pid(slot, pid.0),
            BoardWrite::Clear { pool, slot } => {
                // The worker's metrics outlive it: kept before its row is anyone else's.
                crate::metrics::area::fold_slot(slot);
                self.board.clear(pool, slot)
            }
            BoardWrite::Publish { pool, min_spare, max_spare, rules, accept_cap } => {
                self.board.publish(pool, min_spare, max_spare, &rules, accept_cap)
            }
            BoardWrite::AnnounceReady { pool, on } => self.board.announce_ready(pool, on),
            BoardWrite::Saturated { pool, on } => self.board.set_saturated(pool, on),
        }
    }

    /// USR1 (and HUP): reopen the log file here (the core then tells every worker). Whether it
    /// was reopened.
    fn reopen_logs(&mut self) -> bool {
        let Some(log) = self.own.as_ref().and_then(|o| o.housework.log_file.as_ref()) else {
            info!("no log file to reopen (logs go to standard error)");
            return false;
        };
        match log.reopen() {
            Ok(()) => {
                info!(path = %log.path().display(), "log file reopened");
                true
            }
            Err(e) => {
                error!(path = %log.path().display(), error = %e, "cannot reopen the log file; still writing to the old one");
                false
            }
        }
    }

    /// Sleeps until a signal, a wake-up from a worker, a control client, a connection for the
    /// post-forking pool, or the next deadline; then tells the core what happened.
    fn wait(&mut self) {
        let core_deadline = self.core.poll_timeout();
        // Workers wake the manager for a change that brings a verdict before it means to look.
        self.board.sleeping_until(core_deadline);
        let accepting = self.core.accepting(monotonic_ms());
        let Some(own) = self.own.as_ref() else { return };
        let io_deadline = [own.channel.as_ref().and_then(Channel::deadline), own.metrics.as_ref().and_then(|m| m.deadline()), own.stacks.deadline()]
            .into_iter()
            .flatten()
            .min();
        let deadline = [core_deadline, io_deadline].into_iter().flatten().min();
        let timeout = match deadline {
            None => PollTimeout::NONE,
            Some(at) => {
                let ms = at.saturating_sub(monotonic_ms()).min(i32::MAX as u64) as i32;
                // Round up so we do not wake a hair early and spin.
                PollTimeout::try_from(ms.saturating_add(1)).unwrap_or(PollTimeout::MAX)
            }
        };
        let mut fds = vec![PollFd::new(own.signals.as_fd(), PollFlags::POLLIN), PollFd::new(own.wake_read.as_fd(), PollFlags::POLLIN)];
        // At max_children the listeners are left out: connections wait in their backlog (POE's
        // daemon_pause), and are taken again below it (daemon_accept).
        let listening = if accepting { self.listeners.len() } else { 0 };
        for l in self.listeners.iter().take(listening) {
            fds.push(PollFd::new(l.as_fd(), PollFlags::POLLIN));
        }
        let verdict = self.upgrade.as_ref().and_then(upgrade::UpgradeIo::verdict_fd);
        let verdict_at = fds.len();
        if let Some(fd) = verdict {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let metrics_at = fds.len();
        if let Some(m) = own.metrics.as_ref() {
            for (fd, writing) in m.poll_fds(self.core.answers_metrics()) {
                fds.push(PollFd::new(fd, if writing { PollFlags::POLLOUT } else { PollFlags::POLLIN }));
            }
        }
        let stacks_at = fds.len();
        for fd in own.stacks.poll_fds() {
            fds.push(PollFd::new(fd, PollFlags::POLLIN));
        }
        let control_at = fds.len();
        if let Some(channel) = own.channel.as_ref() {
            for (fd, writing) in channel.poll_fds() {
                fds.push(PollFd::new(fd, if writing { PollFlags::POLLOUT } else { PollFlags::POLLIN }));
            }
        }
        match poll(&mut fds, timeout) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => {
                error!(error = %e, "poll failed");
                return;
            }
        }
        let ready = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
        let connections: Vec<usize> = fds[2..2 + listening].iter().enumerate().filter(|(_, f)| ready(f)).map(|(i, _)| i).collect();
        let said = verdict.is_some() && fds.get(verdict_at).is_some_and(ready);
        let asked = fds[control_at..].iter().any(ready);
        let scraped = fds[metrics_at..stacks_at].iter().any(ready);
        let stacks = fds[stacks_at..control_at].iter().any(ready);
        drop(fds);
        // The signals are read before the children are reaped, never after: a SIGCHLD read after
        // the reap would be consumed with its child unreaped, and the manager would sleep until
        // its next deadline (a stop waited graceful_timeout for a worker that ended at once).
        // A child that ends after this read leaves its SIGCHLD pending, which wakes the next poll.
        let received = signals::drain(&own.signals);
        // From here until it sleeps again, a worker's change that the core might not see wakes it.
        self.board.awake();
        // The old manager of this one's upgrade: gone yet? (Before any request: `upgrade`
        // and `status` depend on it.)
        if let Some(old) = self.old_manager {
            if nix::unistd::getppid() != old {
                self.old_manager = None;
                adopt_metrics(true);
                self.handle(Event::OldManagerGone);
            }
        }
        // The children that ended first: the core judges the rest, and climbs no ladder, with
        // the dead counted out.
        self.reap();
        let now = monotonic_ms();
        if said {
            self.read_verdict();
        }
        if stacks || self.own.as_ref().and_then(|o| o.stacks.deadline()).is_some_and(|at| at <= now) {
            self.serve_stacks();
        }
        if scraped || self.own.as_ref().and_then(|o| o.metrics.as_ref()).and_then(|m| m.deadline()).is_some_and(|at| at <= now) {
            self.serve_metrics();
        }
        if !connections.is_empty() {
            self.accept_postfork(&connections);
        }
        if asked || self.own.as_ref().and_then(|o| o.channel.as_ref()).and_then(Channel::deadline).is_some_and(|at| at <= now) {
            self.serve_control();
        }
        let Some(own) = self.own.as_ref() else { return };
        let mut buf = [0u8; 256];
        let mut woken = false;
        while matches!(nix::unistd::read(&own.wake_read, &mut buf), Ok(n) if n > 0) {
            woken = true;
        }
        if woken {
            self.handle(Event::Woken);
        }
        for sig in received {
            self.on_signal(sig);
        }
        for pid in crate::foreign::take() {
            self.handle(Event::Foreign(Pid(pid)));
        }
        self.handle(Event::Tick);
    }

    fn on_signal(&mut self, signal: Signal) {
        match signal {
            Signal::SIGHUP => {
                // Reopen the logs, then the configuration, read again.
                self.handle(Event::Signal(Sig::Hup));
                let resolved = self.resolve_reload();
                self.handle(Event::Reload(Box::new(resolved)));
            }
            // A terminal's resizes send WINCH too (gunicorn issues 500 and 530).
            Signal::SIGWINCH if std::fs::File::open("/dev/tty").is_ok() => self.handle(Event::WinchFromTerminal),
            other => self.handle(Event::Signal(sig_of(other))),
        }
    }

    /// A reload's configuration, read again, with what it needs read before the new workers
    /// fork: TLS's certificate and key. Files that cannot be used refuse the reload, whole.
    fn resolve_reload(&self) -> Result<crate::sources::Resolved, Vec<String>> {
        let resolved = self.layers.resolve_all()?;
        #[cfg(feature = "tls")]
        if !self.listeners.is_empty() {
            crate::tls::load(&resolved.config, None).map_err(|why| vec![why])?;
        }
        #[cfg(not(feature = "tls"))]
        if resolved.config.tls_cert.is_some() {
            return Err(vec!["tls_cert is set, but the program was built without TLS: enable the `tls` feature of the daemon crate".to_string()]);
        }
        Ok(resolved)
    }

    /// Collects every child that has exited; no zombie is left behind. As a child subreaper the
    /// manager also reaps what its workers left behind, which the core tells from its workers by
    /// pid.
    fn reap(&mut self) {
        loop {
            match crate::sys::reap_one() {
                Ok(None) => return,
                Err(e) => {
                    error!(error = %e, "waitpid failed");
                    return;
                }
                Ok(Some((pid, ended))) => {
                    let (pid, status) = (Pid(pid), exit_status(ended));
                    if let Some(own) = self.own.as_mut().filter(|o| o.stacks.is_helper(pid.0)) {
                        own.stacks.reaped(pid.0);
                        self.serve_stacks();
                        continue;
                    }
                    // What the upgrade's new manager said before it ended is its reason; what its
                    // workers counted is this manager's to keep.
                    if self.upgrade.as_ref().is_some_and(|u| u.child.as_raw() == pid.0) {
                        self.read_verdict();
                        adopt_metrics(false);
                    }
                    self.handle(Event::Exited { pid, status });
                }
            }
        }
    }

    /// Reads what the upgrade's new manager said, for the core.
    fn read_verdict(&mut self) {
        let Some(u) = self.upgrade.as_mut() else { return };
        let (text, whole) = u.read();
        self.handle(Event::UpgradeSaid { text, whole });
    }

    /// The post-forking pool: takes connections from the ready listeners while there is room,
    /// and forks a child for each.
    fn accept_postfork(&mut self, ready: &[usize]) {
        for &i in ready {
            while self.core.accepting(monotonic_ms()) {
                let Some(listener) = self.listeners.get(i) else { break };
                let stream = match crate::worker::accept::accept_one(listener) {
                    Ok(Some(s)) => s,
                    Ok(None) => break,
                    Err(e) => {
                        warn!(error = %e, "accept failed");
                        break;
                    }
                };
                self.connection = Some(stream);
                self.handle(Event::Accepted);
                // Not taken (the fork failed, or no room after all): the client is let go.
                if self.connection.take().is_some() {
                    break;
                }
            }
        }
    }

    /// Serves the control channel's clients; their requests act as the signals would.
    fn serve_control(&mut self) {
        let Some(mut channel) = self.own.as_mut().and_then(|o| o.channel.take()) else { return };
        channel.serve(monotonic_ms(), |request, client| self.on_request(request, client));
        if let Some(own) = self.own.as_mut() {
            own.channel = Some(channel);
        }
    }

    /// A request from a control command, over the verified channel; `None`: answered later
    /// (`dump` of a worker, once its stacks are symbolized).
    fn on_request(&mut self, request: control::Request, client: u64) -> Option<serde_json::Value> {
        let request = match request {
            control::Request::Status => {
                self.handle(Event::Queues(self.measure_queues()));
                Request::Status
            }
            control::Request::Stop { graceful } => Request::Stop { graceful },
            control::Request::Reload => Request::Reload(Box::new(self.resolve_reload())),
            control::Request::Backout => Request::Backout,
            control::Request::Upgrade { hold } => return Some(self.upgrade_request(hold)),
            control::Request::Dump { slot: None, pid: None } => Request::Dump,
            control::Request::Dump { slot, pid } => return self.dump_worker(slot, pid, client),
        };
        let answer = self.core.request(monotonic_ms(), &self.board, request);
        self.execute(monotonic_ms());
        Some(answer)
    }

    /// `dump --slot N` or `--pid P`: asks the worker's threads for their stacks; the answer
    /// comes once they are symbolized. Only a worker of this manager's: any other pid is refused.
    fn dump_worker(&mut self, slot: Option<u32>, pid: Option<i32>, client: u64) -> Option<serde_json::Value> {
        let refuse = |why: String, me: i32, package: &str| Some(serde_json::json!({ "why": why, "pid": me, "package": package }));
        let package = self.own.as_ref().map_or("", |o| o.housework.package.name);
        let me = self.pid.as_raw();
        let Some((worker, slot, pool)) = self.core.worker(slot, pid) else {
            let which = slot.map(|s| format!("slot {s}")).or(pid.map(|p| format!("pid {p}"))).unwrap_or_default();
            return refuse(format!("{which} is not a live worker of this manager (see `status`)"), me, package);
        };
        let own = self.own.as_mut()?;
        match own.stacks.start(worker.0, slot, &pool, crate::stack::Purpose::Dump(client), monotonic_ms()) {
            Ok(_) => None,
            Err(why) => refuse(why, me, package),
        }
    }

    /// `upgrade`: started, or why not.
    fn upgrade_request(&mut self, hold: bool) -> serde_json::Value {
        let started = self.core.may_upgrade().and_then(|()| self.start_upgrade());
        let mut answer = match started {
            Ok(child) => {
                self.handle(Event::UpgradeStarted { child: Pid(child.as_raw()), hold });
                serde_json::json!({ "new_pid": child.as_raw(), "hold": hold })
            }
            Err(why) => {
                warn!("upgrade: {why}; nothing started");
                serde_json::json!({ "why": why })
            }
        };
        let package = self.own.as_ref().map_or("", |o| o.housework.package.name);
        answer["pid"] = self.pid.as_raw().into();
        answer["package"] = package.into();
        answer
    }
}

/// A manager that cannot be set up leaves nothing behind: its pid file and the socket files it
/// bound go before the failure is told (a start run again at once must find no trace).
fn failed_start(why: StartError, mut housework: Housework, listeners: &[Listener]) -> Box<(StartError, Housework)> {
    if let Some(p) = housework.pid_file.take() {
        p.remove();
    }
    for file in listeners.iter().filter_map(|l| l.file.as_ref()) {
        file.remove();
    }
    Box::new((why, housework))
}

/// Takes over the metrics the other manager of an upgrade counted, once it is gone (`gone`: we
/// know it is; otherwise, only if its process no longer exists).
fn adopt_metrics(gone: bool) {
    for lost in crate::metrics::area::adopt_other_half(gone) {
        warn!(metric = %lost, "metrics: the counts of the manager before could not be carried over");
    }
}
