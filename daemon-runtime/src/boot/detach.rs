//! Detaching: double fork, setsid, chdir to `/`, umask, standard streams away from the terminal.
//! The process the user started does not exit at once: it waits on a pipe until the daemon says
//! its workers accept (exit 0) or that start-up failed (exit 1, the reason on its stderr), so a
//! script, start-stop-daemon or systemd `Type=forking` sees the truth.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use nix::fcntl::OFlag;
use nix::sys::stat::{umask, Mode};
use nix::unistd::setsid;

use crate::sys::{exit_now, fork, Forked};

/// The daemon's end of the readiness pipe. Dropping it unsaid tells the waiting process that
/// start-up failed without a word.
#[derive(Debug)]
pub(crate) struct Readiness {
    pipe: Option<std::fs::File>,
}

impl Readiness {
    /// No one waits (the daemon did not detach).
    pub(crate) fn none() -> Readiness {
        Readiness { pipe: None }
    }

    /// The verdict goes to the manager this one upgrades, on the pipe it handed over.
    pub(crate) fn upgrade(pipe: OwnedFd) -> Readiness {
        Readiness { pipe: Some(std::fs::File::from(pipe)) }
    }

    /// The workers accept: the starting process may exit 0.
    pub(crate) fn ready(&mut self) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(b"OK\n");
        }
    }

    /// Start-up failed: the starting process prints `why` and exits 1.
    pub(crate) fn failed(&mut self, why: &str) {
        if let Some(mut p) = self.pipe.take() {
            let _ = p.write_all(format!("ERR {why}\n").as_bytes());
        }
    }
}

/// Detaches. Returns in the daemon process only; the starting process exits with the daemon's
/// verdict, the intermediate one at once.
pub(crate) fn detach(program: &str) -> std::io::Result<Readiness> {
    let (read, write): (OwnedFd, OwnedFd) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
    match fork()? {
        Forked::Parent(child) => {
            drop(write);
            let _ = nix::sys::wait::waitpid(child, None);
            let mut verdict = String::new();
            let _ = std::fs::File::from(read).read_to_string(&mut verdict);
            if verdict.starts_with("OK") {
                exit_now(0);
            }
            let why = verdict.strip_prefix("ERR ").map(str::trim).unwrap_or(
                "the daemon exited during start-up without saying why (see its log file)",
            );
            eprintln!("{program}: error: {why}");
            exit_now(1);
        }
        Forked::Child => {}
    }
    drop(read);
    // A session of our own: no controlling terminal, no signals from the shell's job control.
    setsid()?;
    match fork()? {
        // The session leader leaves, so the daemon can never reacquire a terminal.
        Forked::Parent(_) => exit_now(0),
        Forked::Child => {}
    }
    std::env::set_current_dir("/")?;
    umask(Mode::from_bits_truncate(0o022));
    let null = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    nix::unistd::dup2_stdout(&null)?;
    nix::unistd::dup2_stderr(&null)?;
    Ok(Readiness { pipe: Some(std::fs::File::from(write)) })
}
