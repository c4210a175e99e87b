//! Stacks of workers, for the manager: of a worker judged hung (taken before it is stopped, and
//! logged with the verdict), and of a live one on demand (`dump`).
//!
//! How (DESIGN.md, "Stacks of workers"): the manager lists the worker's threads in
//! `/proc/PID/task`, reads what the kernel says of each (state, `wchan`, `syscall`: the call a
//! blocked thread is in, which the next step interrupts), and sends each thread the stack signal
//! (`tgkill`). Each thread's handler walks its own stack and sends the addresses down a datagram
//! socket the manager made before its first fork (`sys::stack_signal`). Once every thread has
//! answered, or after [`ANSWER_MS`], the manager has what it needs: a worker that was being
//! judged is stopped now (the core's held rung), and a helper process forked from the manager
//! (the same binary at the same addresses as every worker it forked) turns the addresses into
//! function names, files and lines, and writes them back as JSON down a pipe. The manager's loop
//! never reads debug information itself: it stays small and on time.

mod symbols;

use std::collections::BTreeMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde_json::{json, Value as Json};

use crate::sys::stack_signal::{self, HEADER, MAGIC, MAX_FRAMES};

/// How long the manager waits for the threads' stacks before it stops a judged worker anyway.
pub(crate) const ANSWER_MS: u64 = 1_000;

/// How long the helper may take to symbolize before the manager kills it and reports addresses.
const SYMBOLIZE_MS: u64 = 10_000;

/// The most of a helper's answer the manager reads.
const MAX_ANSWER: usize = 8 << 20;

/// Captures at once, symbolizing included: each helper maps the binary's debug information (a
/// hundred MB for a debug build), so a burst of hangs or of `dump`s is taken a few at a time.
pub(crate) const MAX_AT_ONCE: usize = 4;

/// Why a capture was asked.
#[derive(Clone, Debug)]
pub(crate) enum Purpose {
    /// A verdict against the worker (its log line's words).
    Verdict(String),
    /// `dump`: the control client waiting for it.
    Dump(u64),
}

/// One thread of a captured worker.
#[derive(Clone, Debug)]
struct Thread {
    tid: i32,
    name: String,
    /// The kernel's one-letter state (`R`, `S`, `D`...).
    state: String,
    wchan: Option<String>,
    syscall: Option<String>,
    /// The addresses it sent, from the interrupted frame on.
    frames: Option<Vec<u64>>,
}

/// A capture under way, or being symbolized: one per worker at a time, for everyone who asked
/// (a verdict, `dump` clients).
#[derive(Debug)]
pub(crate) struct Capture {
    pub pid: i32,
    pub slot: usize,
    pub pool: String,
    pub purposes: Vec<Purpose>,
    deadline_ms: u64,
    threads: Vec<Thread>,
}

impl Capture {
    fn for_verdict(&self) -> bool {
        self.purposes.iter().any(|p| matches!(p, Purpose::Verdict(_)))
    }
}

/// What `Stacks::start` did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Started {
    /// The threads were asked (or a capture of the worker under way takes this one too).
    Asking,
    /// The worker's stacks are in already (a capture being symbolized takes this one too): a
    /// judged worker may be stopped now.
    Taken,
}

/// A helper symbolizing a capture.
struct Helper {
    pid: i32,
    pipe: OwnedFd,
    answer: Vec<u8>,
    deadline_ms: u64,
    capture: Capture,
    ended: bool,
    /// Reaped already (by the manager's loop): its pid may be anyone's from now on.
    reaped: bool,
}

/// What the manager's loop hears from the stacks.
#[derive(Debug)]
pub(crate) enum Heard {
    /// Every thread of `pid` answered, or the time to answer is over: a judged worker may be
    /// stopped now (said only for a capture a verdict asked for).
    Taken { pid: i32 },
    /// A capture, symbolized (or not, with the reason), to log or to answer.
    Report { capture: Capture, report: Json, text: String },
}

/// The manager's side.
pub(crate) struct Stacks {
    socket: OwnedFd,
    captures: Vec<Capture>,
    helpers: Vec<Helper>,
    /// Helpers whose answer is in, not reaped yet: still the manager's own, never an orphan.
    unreaped: Vec<i32>,
}

impl Stacks {
    /// The manager's end, and the end every worker inherits and writes its stacks to.
    pub(crate) fn new() -> std::io::Result<(Stacks, OwnedFd)> {
        let (read, write) = socketpair(AddressFamily::Unix, SockType::Datagram, None, SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK)?;
        // The workers' end sends only; the manager's only receives, with each sender's pid.
        nix::sys::socket::shutdown(read.as_raw_fd(), nix::sys::socket::Shutdown::Write)?;
        nix::sys::socket::setsockopt(&read, nix::sys::socket::sockopt::PassCred, &true)?;
        Ok((Stacks { socket: read, captures: Vec::new(), helpers: Vec::new(), unreaped: Vec::new() }, write))
    }

    /// Asks every thread of worker `pid` for its stack, or joins the capture of it under way.
    pub(crate) fn start(&mut self, pid: i32, slot: usize, pool: &str, purpose: Purpose, now: u64) -> Result<Started, String> {
        if let Some(c) = self.captures.iter_mut().find(|c| c.pid == pid) {
            c.purposes.push(purpose);
            return Ok(Started::Asking);
        }
        if let Some(h) = self.helpers.iter_mut().find(|h| h.capture.pid == pid && !h.ended) {
            h.capture.purposes.push(purpose);
            return Ok(Started::Taken);
        }
        let busy = self.captures.len() + self.helpers.len();
        if busy >= MAX_AT_ONCE {
            return Err(format!("{busy} stacks are being taken already (at most {MAX_AT_ONCE} at once); try again in a moment"));
        }
        // Stacks that came after an earlier capture of this worker gave up are not this one's.
        self.receive();
        let tids = threads_of(pid).map_err(|e| format!("cannot list the threads of pid {pid}: {e}"))?;
        let mut threads = Vec::new();
        for tid in tids {
            let dir = format!("/proc/{pid}/task/{tid}");
            let read = |file: &str| std::fs::read(format!("{dir}/{file}")).map(|b| String::from_utf8_lossy(&b).trim().to_string());
            let stat = read("stat").unwrap_or_default();
            let state = stat.rsplit_once(") ").and_then(|(_, rest)| rest.split_whitespace().next()).unwrap_or("?").to_string();
            // Both need the access ptrace would (the kernel's PTRACE_MODE_*_FSCREDS): a worker
            // that is not dumpable (with `user`) hides them from a manager that is not root.
            let (syscall, wchan) = match read("syscall") {
                Ok(s) => (Some(describe_syscall(&s)), read("wchan").ok().filter(|w| !w.is_empty() && w != "0")),
                Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                    (Some("unreadable: the worker is not dumpable (`user` is set) and the manager is not root".to_string()), None)
                }
                Err(_) => (None, None),
            };
            threads.push(Thread { tid, name: read("comm").unwrap_or_default(), state, wchan, syscall, frames: None });
        }
        // The kernel's view first, the signals after: a signal interrupts the call it shows.
        let mut refused = None;
        threads.retain(|t| match stack_signal::ask(pid, t.tid) {
            Ok(()) => true,
            Err(e) => {
                refused.get_or_insert(e);
                false
            }
        });
        if threads.is_empty() {
            return Err(match refused {
                Some(e) if e.raw_os_error() == Some(libc::EAGAIN) => format!(
                    "pid {pid}'s threads cannot be signalled: the user's queue of pending signals is full (RLIMIT_SIGPENDING; {e})"
                ),
                Some(e) if e.raw_os_error() == Some(libc::ESRCH) => format!("pid {pid} has ended"),
                Some(e) => format!("pid {pid}'s threads cannot be signalled: {e}"),
                None => format!("pid {pid} has no thread to ask (it has ended)"),
            });
        }
        self.captures.push(Capture { pid, slot, pool: pool.to_string(), purposes: vec![purpose], deadline_ms: now.saturating_add(ANSWER_MS), threads });
        Ok(Started::Asking)
    }

    /// What the manager polls: the socket and the helpers' pipes.
    pub(crate) fn poll_fds(&self) -> Vec<BorrowedFd<'_>> {
        std::iter::once(self.socket.as_fd()).chain(self.helpers.iter().filter(|h| !h.ended).map(|h| h.pipe.as_fd())).collect()
    }

    /// The next time something here is due.
    pub(crate) fn deadline(&self) -> Option<u64> {
        self.captures.iter().map(|c| c.deadline_ms).chain(self.helpers.iter().map(|h| h.deadline_ms)).min()
    }

    /// Whether `pid` is one of the helpers (reaped by the manager's loop, not a worker).
    pub(crate) fn is_helper(&self, pid: i32) -> bool {
        self.helpers.iter().any(|h| h.pid == pid) || self.unreaped.contains(&pid)
    }

    /// A helper was reaped: what it wrote is all there is.
    pub(crate) fn reaped(&mut self, pid: i32) {
        for h in self.helpers.iter_mut().filter(|h| h.pid == pid) {
            h.ended = true;
            h.reaped = true;
        }
        self.unreaped.retain(|&p| p != pid);
    }

    /// Reads what came (stacks, helpers' answers) and what is due; returns what the loop acts
    /// on.
    pub(crate) fn service(&mut self, now: u64) -> Vec<Heard> {
        let mut heard = Vec::new();
        self.receive();
        let (done, waiting): (Vec<Capture>, Vec<Capture>) =
            std::mem::take(&mut self.captures).into_iter().partition(|c| now >= c.deadline_ms || c.threads.iter().all(|t| t.frames.is_some()));
        self.captures = waiting;
        for capture in done {
            if capture.for_verdict() {
                heard.push(Heard::Taken { pid: capture.pid });
            }
            match self.symbolize(capture, now) {
                Ok(()) => {}
                Err((capture, why)) => heard.push(report(capture, None, Some(&why))),
            }
        }
        let mut still = Vec::new();
        for mut h in std::mem::take(&mut self.helpers) {
            h.read_answer();
            let overdue = now >= h.deadline_ms;
            if overdue && !h.ended {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(h.pid), nix::sys::signal::Signal::SIGKILL);
            }
            if h.ended || overdue {
                let symbols: Option<Json> = serde_json::from_slice(&h.answer).ok();
                let why = symbols.is_none().then(|| {
                    if overdue { "the helper took too long to symbolize".to_string() } else { "the helper gave no answer".to_string() }
                });
                if !h.reaped {
                    self.unreaped.push(h.pid);
                }
                heard.push(report(h.capture, symbols, why.as_deref()));
            } else {
                still.push(h);
            }
        }
        self.helpers = still;
        heard
    }

    /// Takes every stack that came. The sender's pid comes from the kernel (`SO_PASSCRED`), so a
    /// worker cannot send a stack for another: a message whose pid is not its sender's is dropped,
    /// and so is a second answer from a thread.
    fn receive(&mut self) {
        use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags, UnixCredentials};
        let mut buf = vec![0u8; (HEADER + MAX_FRAMES) * 8];
        loop {
            let mut space = nix::cmsg_space!(UnixCredentials);
            let (n, sender) = {
                let mut iov = [std::io::IoSliceMut::new(&mut buf)];
                match recvmsg::<()>(self.socket.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_DONTWAIT) {
                    Ok(msg) => {
                        let sender = msg.cmsgs().ok().and_then(|mut c| {
                            c.find_map(|m| match m {
                                ControlMessageOwned::ScmCredentials(cred) => Some(cred.pid()),
                                _ => None,
                            })
                        });
                        (msg.bytes, sender)
                    }
                    Err(nix::errno::Errno::EINTR) => continue,
                    Err(_) => return,
                }
            };
            let words: Vec<u64> = buf[..n - n % 8].chunks_exact(8).map(|c| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]))).collect();
            let Some(message) = Message::parse(&words) else { continue };
            if sender.map(i64::from) != Some(message.pid) {
                continue;
            }
            let Some(capture) = self.captures.iter_mut().find(|c| i64::from(c.pid) == message.pid) else { continue };
            let Some(thread) = capture.threads.iter_mut().find(|t| i64::from(t.tid) == message.tid && t.frames.is_none()) else { continue };
            thread.frames = Some(message.frames);
        }
    }

    /// Forks the helper that symbolizes `capture`.
    fn symbolize(&mut self, capture: Capture, now: u64) -> Result<(), (Capture, String)> {
        let stacks: Vec<(i32, Vec<u64>)> = capture.threads.iter().filter_map(|t| Some((t.tid, t.frames.clone()?))).collect();
        if stacks.is_empty() {
            return Err((capture, "no thread answered (blocked in the kernel, or stopped)".to_string()));
        }
        let (read, write) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC | nix::fcntl::OFlag::O_NONBLOCK) {
            Ok(p) => p,
            Err(e) => return Err((capture, format!("cannot make the helper's pipe: {e}"))),
        };
        match crate::sys::fork() {
            Ok(crate::sys::Forked::Child) => symbols::helper(write, &stacks),
            Ok(crate::sys::Forked::Parent(pid)) => {
                drop(write);
                self.helpers.push(Helper {
                    pid: pid.as_raw(),
                    pipe: read,
                    answer: Vec::new(),
                    deadline_ms: now.saturating_add(SYMBOLIZE_MS),
                    capture,
                    ended: false,
                    reaped: false,
                });
                Ok(())
            }
            Err(e) => Err((capture, format!("cannot fork the helper that symbolizes: {e}"))),
        }
    }
}

impl Helper {
    fn read_answer(&mut self) {
        let mut buf = [0u8; 16 * 1024];
        loop {
            match nix::unistd::read(&self.pipe, &mut buf) {
                Ok(0) => {
                    self.ended = true;
                    return;
                }
                Ok(n) if self.answer.len() + n <= MAX_ANSWER => self.answer.extend_from_slice(&buf[..n]),
                Ok(_) => {
                    self.ended = true;
                    return;
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(_) => return,
            }
        }
    }
}

/// A stack as a thread sent it.
struct Message {
    pid: i64,
    tid: i64,
    frames: Vec<u64>,
}

impl Message {
    /// Checks everything: any worker could have written anything here.
    fn parse(words: &[u64]) -> Option<Message> {
        let header = words.get(..HEADER)?;
        if header[0] != u64::from(MAGIC) {
            return None;
        }
        let count = usize::try_from(header[4]).ok().filter(|&c| c <= MAX_FRAMES)?;
        let frames = words.get(HEADER..HEADER + count)?;
        // The frames of the handler itself come before the interrupted one.
        let first = usize::try_from(header[3]).ok().filter(|&i| i < count).unwrap_or(0);
        Some(Message { pid: header[1] as i64, tid: header[2] as i64, frames: frames[first..].to_vec() })
    }
}

/// The thread ids of process `pid`.
fn threads_of(pid: i32) -> std::io::Result<Vec<i32>> {
    let mut tids: Vec<i32> = std::fs::read_dir(format!("/proc/{pid}/task"))?.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    tids.sort_unstable();
    Ok(tids)
}

/// `/proc/.../syscall` as people read it: `232 0x5 ...` is `epoll_wait`, with its number.
fn describe_syscall(line: &str) -> String {
    let mut fields = line.split_whitespace();
    match fields.next() {
        Some("running") => "running".to_string(),
        Some("-1") => "not in a system call".to_string(),
        Some(n) => match n.parse::<i64>().ok().and_then(syscall_name) {
            Some(name) => format!("{name} ({n})"),
            None => format!("system call {n}"),
        },
        None => "unknown".to_string(),
    }
}

/// The names of the calls a worker is most often found blocked in.
fn syscall_name(n: i64) -> Option<&'static str> {
    macro_rules! names {
        ($($name:ident),* $(,)?) => {
            $(if n == libc::$name as i64 { return Some(&stringify!($name)[4..]); })*
        };
    }
    names!(
        SYS_read, SYS_write, SYS_close, SYS_poll, SYS_ppoll, SYS_select, SYS_pselect6, SYS_nanosleep, SYS_clock_nanosleep,
        SYS_futex, SYS_epoll_wait, SYS_epoll_pwait, SYS_accept, SYS_accept4, SYS_recvfrom, SYS_recvmsg, SYS_sendto, SYS_sendmsg,
        SYS_connect, SYS_wait4, SYS_waitid, SYS_flock, SYS_fsync, SYS_fdatasync, SYS_openat, SYS_pread64, SYS_pwrite64,
        SYS_readv, SYS_writev, SYS_sendfile, SYS_rt_sigtimedwait, SYS_rt_sigsuspend, SYS_sched_yield, SYS_restart_syscall,
        SYS_getrandom, SYS_io_uring_enter, SYS_epoll_pwait2, SYS_ioctl, SYS_fcntl, SYS_msgrcv, SYS_semop,
    );
    None
}

/// The report of a capture: JSON (for `dump --json`) and text (for the log and `dump`).
fn report(capture: Capture, symbols: Option<Json>, why: Option<&str>) -> Heard {
    let resolved: BTreeMap<i64, &Vec<Json>> = symbols
        .as_ref()
        .and_then(Json::as_array)
        .map(|threads| {
            threads
                .iter()
                .filter_map(|t| Some((t.get("tid")?.as_i64()?, t.get("frames")?.as_array()?)))
                .collect()
        })
        .unwrap_or_default();
    let mut text = String::new();
    let mut threads = Vec::new();
    for t in &capture.threads {
        let kernel = [
            Some(format!("state {}", t.state)),
            t.syscall.as_ref().map(|s| format!("syscall {s}")),
            t.wchan.as_ref().map(|w| format!("wchan {w}")),
        ];
        let kernel: Vec<String> = kernel.into_iter().flatten().collect();
        text.push_str(&format!("thread {} {:?} ({})\n", t.tid, t.name, kernel.join(", ")));
        let frames: Vec<Json> = match (resolved.get(&i64::from(t.tid)), &t.frames) {
            (Some(frames), _) => frames.iter().map(|f| (*f).clone()).collect(),
            (None, Some(addresses)) => addresses.iter().map(|a| json!({ "address": format!("{a:#x}") })).collect(),
            (None, None) => Vec::new(),
        };
        if t.frames.is_none() {
            text.push_str(&format!("    (no stack: the thread did not answer within {}ms)\n", ANSWER_MS));
        }
        for (i, f) in frames.iter().enumerate() {
            let function = f.get("function").and_then(Json::as_str).unwrap_or("??");
            let address = f.get("address").and_then(Json::as_str).unwrap_or("");
            let place = match (f.get("file").and_then(Json::as_str), f.get("line").and_then(Json::as_u64)) {
                (Some(file), Some(line)) => format!(" at {file}:{line}"),
                (Some(file), None) => format!(" at {file}"),
                _ => String::new(),
            };
            text.push_str(&format!("  {i:>3}: {function} [{address}]{place}\n"));
        }
        threads.push(json!({
            "tid": t.tid,
            "name": t.name,
            "state": t.state,
            "syscall": t.syscall,
            "wchan": t.wchan,
            "answered": t.frames.is_some(),
            "frames": frames,
        }));
    }
    let ended = !crate::sys::proc::runs(capture.pid);
    if ended {
        text.push_str("(the worker ended while its stack was taken)\n");
    }
    if let Some(why) = why {
        text.push_str(&format!("(not symbolized: {why})\n"));
    }
    let report = json!({
        "pid": capture.pid,
        "slot": capture.slot,
        "pool": capture.pool,
        "threads": threads,
        "symbolized": why.is_none(),
        "problem": why,
        "ended": ended,
    });
    Heard::Report { capture, report, text }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_checked_before_it_is_believed() {
        let good = [u64::from(MAGIC), 10, 11, 2, 4, 0xa, 0xb, 0xc, 0xd];
        let m = Message::parse(&good).expect("a good message");
        assert_eq!((m.pid, m.tid, m.frames), (10, 11, vec![0xc, 0xd]));
        // The interrupted frame not found: every frame is kept.
        let mut unknown = good;
        unknown[3] = u64::MAX;
        assert_eq!(Message::parse(&unknown).map(|m| m.frames.len()), Some(4));
        let mut bad = good;
        bad[0] = 1;
        assert!(Message::parse(&bad).is_none());
        let mut long = good;
        long[4] = 9;
        assert!(Message::parse(&long).is_none(), "more frames than were sent");
        long[4] = u64::MAX;
        assert!(Message::parse(&long).is_none());
        assert!(Message::parse(&good[..3]).is_none());
    }

    #[test]
    fn a_stack_counts_only_from_the_process_it_names() {
        let (mut stacks, write) = Stacks::new().expect("a socket pair");
        let me = std::process::id() as i32;
        let thread = |tid| Thread { tid, name: String::new(), state: "R".into(), wchan: None, syscall: None, frames: None };
        for pid in [me, me + 1] {
            stacks.captures.push(Capture { pid, slot: 0, pool: "main".into(), purposes: vec![Purpose::Dump(0)], deadline_ms: u64::MAX, threads: vec![thread(7)] });
        }
        let send = |pid: i32, frames: &[u64]| {
            let mut words = vec![u64::from(MAGIC), pid as u64, 7, 0, frames.len() as u64];
            words.extend_from_slice(frames);
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_ne_bytes()).collect();
            nix::sys::socket::send(write.as_raw_fd(), &bytes, nix::sys::socket::MsgFlags::empty()).expect("send");
        };
        // This process claims another's stack (a worker's code could): the kernel says who sent it.
        send(me + 1, &[0xbad]);
        // Its own, twice: the first answer stands.
        send(me, &[0x1]);
        send(me, &[0x2]);
        stacks.receive();
        assert_eq!(stacks.captures[0].threads[0].frames, Some(vec![0x1]));
        assert_eq!(stacks.captures[1].threads[0].frames, None, "a forged stack was taken");
    }

    #[test]
    fn a_system_call_is_named() {
        assert_eq!(format!("{:?}", "web\u{202e}\"x"), "\"web\\u{202e}\\\"x\"", "a name's quotes and format characters are escaped");
        let sleep = format!("{} 0x0 0x0 0x7ffd 0x0 0x0 0x0 0x7ffd 0x7f12", libc::SYS_clock_nanosleep);
        assert_eq!(describe_syscall(&sleep), format!("clock_nanosleep ({})", libc::SYS_clock_nanosleep));
        assert_eq!(describe_syscall("running"), "running");
        assert_eq!(describe_syscall("-1 0x7ffd 0x7f12"), "not in a system call");
        assert_eq!(describe_syscall("9999 0x0"), "system call 9999");
    }
}
