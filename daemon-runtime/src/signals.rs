//! Which signals each role handles, and how: the manager reads its signals from a signalfd in its
//! poll loop (no handler ever runs); a worker reads QUIT from its own signalfd and leaves TERM and
//! INT at their default, which ends it at once.

use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::sys::set_disposition;

/// The signals the manager acts on (see the README's table).
pub(crate) const MANAGER: [Signal; 10] = [
    Signal::SIGTERM,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGHUP,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGWINCH,
    Signal::SIGTTIN,
    Signal::SIGTTOU,
    Signal::SIGCHLD,
];

/// The manager's control signals whose default action would end or stop the daemon while it
/// starts (a log rotation's USR1 or HUP, a USR2, a TTIN): noted from as early as the daemon
/// exists (before its pid file names it) and acted on by the manager's loop once it runs. Not
/// blocked: a blocked mask would pass on to what `main`'s body starts. TERM, INT and QUIT keep
/// their default: a stop asked before the daemon runs ends it.
pub(crate) fn note_early_signals() -> nix::Result<()> {
    for s in EARLY {
        crate::sys::note_early(s)?;
    }
    // A new manager of an upgrade starts with the old one's mask: what came meanwhile is noted now.
    let set: SigSet = MANAGER.into_iter().collect();
    set.thread_unblock()
}

const EARLY: [Signal; 6] = [Signal::SIGHUP, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH, Signal::SIGTTIN, Signal::SIGTTOU];

/// Blocks the manager's signals and returns a descriptor that reads them. Called before the
/// first fork, so children start with these signals blocked and lose none before they are set up.
pub(crate) fn manager_signalfd() -> nix::Result<SignalFd> {
    let set: SigSet = MANAGER.into_iter().collect();
    set.thread_block()?;
    let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
    // Blocked now, the early ones go back to their default, and those that came are raised
    // again, pending for this descriptor.
    for s in EARLY {
        set_disposition(s, false)?;
    }
    for s in crate::sys::take_early_signals() {
        nix::sys::signal::raise(s)?;
    }
    Ok(fd)
}

/// A worker's signals: the manager's control signals are ignored (they are the manager's, and a
/// stray TTIN would stop the process), TERM, INT and ALRM end the worker at once, and QUIT (stop
/// gracefully) and USR1 (reopen the log file) are read from the returned descriptor.
pub(crate) fn worker_signalfd() -> nix::Result<SignalFd> {
    for s in [
        Signal::SIGHUP,
        Signal::SIGUSR2,
        Signal::SIGWINCH,
        Signal::SIGTTIN,
        Signal::SIGTTOU,
    ] {
        set_disposition(s, true)?;
    }
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGALRM, Signal::SIGCHLD] {
        set_disposition(s, false)?;
    }
    let mut read = SigSet::from(Signal::SIGQUIT);
    read.add(Signal::SIGUSR1);
    // These stay blocked (a pending one is read from the descriptor); everything else unblocks.
    read.thread_set_mask()?;
    SignalFd::with_flags(&read, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
}

/// Reads every pending signal from a signalfd.
pub(crate) fn drain(fd: &SignalFd) -> Vec<Signal> {
    let mut out = Vec::new();
    while let Ok(Some(info)) = fd.read_signal() {
        if let Ok(sig) = Signal::try_from(info.ssi_signo as i32) {
            out.push(sig);
        }
    }
    out
}

/// Starts a program with no signal blocked and every standard signal (1 to 31) at its default
/// action. A program started with `std::process::Command` inherits the signal mask of the thread
/// that starts it (Rust's `Command` stopped clearing it in 1.66) and the signals its process
/// ignores, and the daemon blocks and ignores some: a worker blocks QUIT and USR1 and ignores
/// HUP, USR2, WINCH, TTIN and TTOU; the manager (so its hooks) and the plain daemon block TERM,
/// INT, QUIT, HUP, USR1, USR2, WINCH, TTIN, TTOU and CHLD. A shell started so cannot even trap
/// HUP (a signal ignored when it starts stays ignored), and `kill -QUIT` does nothing to it.
///
/// This has the child, after its fork and before its exec, unblock every signal and give every
/// standard signal its default action, as a service manager does (an ignore the daemon itself
/// was started with, `nohup`'s HUP say, is reset too). It is a `pre_exec` step, so `Command`
/// forks and execs instead of using `posix_spawn`. For tokio's `Command`, pass
/// `command.as_std_mut()`.
///
/// ```no_run
/// let mut helper = std::process::Command::new("sh");
/// helper.args(["-c", "trap 'echo reloading' HUP; while :; do sleep 1; done"]);
/// daemon_runtime::default_signals(&mut helper).spawn()?;
/// # Ok::<(), std::io::Error>(())
/// ```
pub fn default_signals(command: &mut std::process::Command) -> &mut std::process::Command {
    crate::sys::default_signals_at_exec(command)
}
