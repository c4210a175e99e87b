//! The few operations that need `unsafe`: fork, shared mappings (anonymous, or of a sealed memfd), `_exit`, and taking
//! ownership of raw descriptors the kernel hands back. Everything else in the runtime is safe
//! code on top of these.

pub(crate) mod cpus;
pub(crate) mod proc;
pub(crate) mod sock_diag;
pub(crate) mod stack_signal;

use std::marker::PhantomData;
use std::num::NonZeroUsize;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

use nix::errno::Errno;
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use nix::unistd::{ForkResult, Pid};

/// Which side of a fork we are on.
pub(crate) enum Forked {
    Parent(Pid),
    Child,
}

/// Forks the process.
///
/// Callers must be single-threaded (the manager checks `threads() == 1` before its first fork),
/// so the child holds no lock some other thread owned, and may allocate.
pub(crate) fn fork() -> nix::Result<Forked> {
    // SAFETY: the manager is single-threaded (checked before the first fork, and it starts no
    // thread afterwards), so the child's copy of the address space has no lock held by a thread
    // that does not exist in it; the child sets up its own state before doing anything else.
    match unsafe { nix::unistd::fork() }? {
        ForkResult::Parent { child } => Ok(Forked::Parent(child)),
        ForkResult::Child => Ok(Forked::Child),
    }
}

/// Ends the process at once: no destructors, no exit handlers, no flushing of buffers that are
/// the manager's copies. How every worker ends.
pub(crate) fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` is async-signal-safe and has no preconditions.
    unsafe { libc::_exit(code) }
}

/// Closes the listening sockets a worker inherited, once it accepts no more: while any process
/// holds a copy, the kernel queues new connections that nobody will take (a stop then leaves
/// its clients hanging until the last worker ends, instead of refusing them).
pub(crate) fn close_worker_listeners(listeners: &[crate::boot::listener::Listener]) {
    for l in listeners {
        // SAFETY: close(2) takes no memory. The worker never touches its listeners after its
        // acceptor has stopped, and never drops them: it ends with `_exit` (`exit_now`), so the
        // `OwnedFd` in its copy of the manager's memory is never closed a second time.
        unsafe {
            libc::close(std::os::fd::AsRawFd::as_raw_fd(&l.socket));
        }
    }
}

/// Takes ownership of a descriptor the kernel just returned (accept4, signalfd...).
pub(crate) fn own_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: callers pass a descriptor freshly returned by a successful system call, which
    // nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Takes ownership of descriptor `fd`, handed to this process by whoever started it (socket
/// activation, an upgrade), if it is open. Only for numbers the protocol gives, at start,
/// before anything of the process's own is open.
pub(crate) fn claim_inherited_fd(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: fcntl(F_GETFD) on any number only asks whether it is open.
    if unsafe { libc::fcntl(fd, libc::F_GETFD) } < 0 {
        return None;
    }
    // SAFETY: the descriptor is open, and it is one the starter handed on: at this point of the
    // start nothing of the process's own is open at or above 3, so nothing else owns it.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Puts a copy of `fd` at number `target`, without close-on-exec, in a child about to exec.
pub(crate) fn dup_onto(fd: RawFd, target: RawFd) -> nix::Result<()> {
    // SAFETY: dup2(2) takes no memory. Whatever had `target` in this child is given up: the
    // child only execs next (everything of the daemon's own is close-on-exec), or is the stack
    // helper, which ends with `_exit` and never uses nor drops what it copied of the manager.
    if unsafe { libc::dup2(fd, target) } < 0 {
        return Err(nix::errno::Errno::last());
    }
    Ok(())
}

/// Types whose all-zero bit pattern is a valid value (atomics, integers, arrays of them).
///
/// # Safety
/// Implement only for types whose every field is valid when all bytes are zero.
pub(crate) unsafe trait ZeroValid: Sync {}

/// A `T` in memory shared by the manager and every worker it forks (MAP_SHARED | MAP_ANONYMOUS,
/// mapped before the first fork so children inherit it at the same address). Pages are
/// committed only when touched.
pub(crate) struct Shared<T: ZeroValid> {
    ptr: NonNull<T>,
    len: NonZeroUsize,
    _owns: PhantomData<T>,
}

// SAFETY: `T: Sync` (required by `ZeroValid`), and the mapping is only ever accessed through
// `&T`, so sharing the handle across threads is as safe as sharing `&T`.
unsafe impl<T: ZeroValid> Send for Shared<T> {}
// SAFETY: as above.
unsafe impl<T: ZeroValid> Sync for Shared<T> {}

impl<T: ZeroValid> Shared<T> {
    pub(crate) fn new() -> nix::Result<Shared<T>> {
        let len = NonZeroUsize::new(std::mem::size_of::<T>()).ok_or(Errno::EINVAL)?;
        // SAFETY: a fresh anonymous mapping aliases no existing memory; mmap returns page-aligned
        // memory, which satisfies `T`'s alignment (at most a cache line here).
        let ptr = unsafe {
            mmap_anonymous(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED)
        }?;
        debug_assert!(std::mem::align_of::<T>() <= 4096);
        Ok(Shared { ptr: ptr.cast(), len, _owns: PhantomData })
    }

    pub(crate) fn get(&self) -> &T {
        // SAFETY: the mapping is `size_of::<T>()` bytes, aligned, zero-filled by the kernel
        // (valid for `T: ZeroValid`), lives as long as `self`, and is only accessed through
        // shared references (every field is atomic).
        unsafe { self.ptr.as_ref() }
    }
}

/// Types whose every bit pattern is a valid value (integer atomics, arrays of them): memory
/// another process wrote, such as a file handed over, can be read as one.
///
/// # Safety
/// Implement only for types made of integer atomics and arrays of them, with no padding that
/// matters and no invariant between fields that memory safety relies on.
// Only ever named in bounds, which the dead-code lint does not count.
#[allow(dead_code)]
pub(crate) unsafe trait AnyBitsValid: ZeroValid {}

impl<T: AnyBitsValid> Shared<T> {
    /// A fresh zeroed `T` in a sealed memfd (its size can never change, so a mapping of it
    /// never faults past its end), and the memfd, to hand to another program.
    pub(crate) fn in_memfd(name: &str) -> nix::Result<(Shared<T>, OwnedFd)> {
        use nix::sys::memfd::{memfd_create, MFdFlags};
        let fd = memfd_create(name, MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING)?;
        // Its creator's alone (a memfd is made 0777): those who hold it need no permission.
        nix::sys::stat::fchmod(&fd, nix::sys::stat::Mode::S_IRUSR | nix::sys::stat::Mode::S_IWUSR)?;
        let len = i64::try_from(std::mem::size_of::<T>()).map_err(|_| Errno::EINVAL)?;
        nix::unistd::ftruncate(&fd, len)?;
        let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
        // SAFETY: fcntl(2) F_ADD_SEALS on a descriptor we own; no memory is passed.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } < 0 {
            return Err(Errno::last());
        }
        let shared = Shared::map(&fd)?;
        Ok((shared, fd))
    }

    /// Maps a memfd made by `in_memfd` (in this program or another): refused unless it is
    /// sealed against shrinking and holds at least a `T`.
    pub(crate) fn from_memfd(fd: &OwnedFd) -> Result<Shared<T>, String> {
        // SAFETY: fcntl(2) F_GET_SEALS on a descriptor we own; no memory is passed.
        let seals = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GET_SEALS) };
        if seals < 0 || seals & libc::F_SEAL_SHRINK == 0 {
            return Err("is not a memfd sealed against shrinking".to_string());
        }
        let size = nix::sys::stat::fstat(fd).map_err(|e| e.to_string())?.st_size;
        if usize::try_from(size).map_or(true, |s| s < std::mem::size_of::<T>()) {
            return Err(format!("holds {size} bytes, fewer than {}", std::mem::size_of::<T>()));
        }
        Shared::map(fd).map_err(|e| e.to_string())
    }

    fn map(fd: &OwnedFd) -> nix::Result<Shared<T>> {
        use nix::sys::mman::mmap;
        let len = NonZeroUsize::new(std::mem::size_of::<T>()).ok_or(Errno::EINVAL)?;
        // SAFETY: the file holds at least `len` bytes and is sealed against shrinking (checked
        // by both callers), so every byte of the mapping stays backed; the mapping is
        // page-aligned; `T: AnyBitsValid`, so whatever another process wrote there is a valid
        // `T`; and it is only ever accessed through `&T` (every field is atomic).
        let ptr = unsafe { mmap(None, len, ProtFlags::PROT_READ | ProtFlags::PROT_WRITE, MapFlags::MAP_SHARED, fd, 0) }?;
        Ok(Shared { ptr: ptr.cast(), len, _owns: PhantomData })
    }
}

impl<T: ZeroValid> Drop for Shared<T> {
    fn drop(&mut self) {
        // SAFETY: the pointer and length are those mmap returned; no reference outlives `self`.
        let _ = unsafe { munmap(self.ptr.cast(), self.len.get()) };
    }
}

/// Arms SIGALRM to end this process after `secs` seconds (0 disarms). A stopping worker uses it
/// so that it ends on time even if its manager is gone.
pub(crate) fn alarm(secs: u32) {
    // SAFETY: alarm(2) has no memory-safety preconditions.
    unsafe {
        libc::alarm(secs);
    }
}

/// The grace a worker has once its manager is gone (see `stop_when_parent_dies`).
static ORPHAN_GRACE_SECS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

extern "C" fn parent_died(_: libc::c_int) {
    // SAFETY: alarm(2), getpid(2) and kill(2) are async-signal-safe, and the atomic load is a
    // plain load.
    unsafe {
        libc::alarm(ORPHAN_GRACE_SECS.load(std::sync::atomic::Ordering::Relaxed));
        libc::kill(libc::getpid(), libc::SIGQUIT);
    }
}

/// When this worker's parent (the manager) dies, it stops gracefully, and ends after `grace`
/// seconds whatever it is doing: the kernel's parent-death signal (a real-time one, which
/// nobody sends by accident) arms the alarm and queues QUIT for the worker's own graceful path.
/// A worker whose handler never returns to its loop (a classic one with a busy client) still
/// ends on time, which QUIT alone, read between connections, could not promise.
pub(crate) fn stop_when_parent_dies(grace: u32) -> std::io::Result<()> {
    ORPHAN_GRACE_SECS.store(grace.max(1), std::sync::atomic::Ordering::Relaxed);
    let signal = libc::SIGRTMIN() + 1;
    // SAFETY: a zeroed sigaction is valid (no flags, an empty mask); the handler only makes
    // async-signal-safe calls; prctl takes no memory.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = parent_died as extern "C" fn(libc::c_int) as *const () as usize;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal, &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, signal as libc::c_ulong, 0, 0, 0) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Milliseconds on the coarse monotonic clock (a few ms of resolution, and a fraction of the cost
/// of the precise one): enough for a heartbeat stamp written on every connection.
pub(crate) fn coarse_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC_COARSE)
        .map(|t| (t.tv_sec() as u64) * 1000 + (t.tv_nsec() as u64) / 1_000_000)
        .unwrap_or(0)
}

/// Milliseconds on the monotonic clock, which every process on the machine shares.
pub(crate) fn monotonic_ms() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| (t.tv_sec() as u64) * 1000 + (t.tv_nsec() as u64) / 1_000_000)
        .unwrap_or(0)
}

/// How a reaped child ended: its exit code, or the number of the signal that ended it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ended {
    Exited(i32),
    Signaled(i32),
}

/// Reaps one child that has ended, without waiting: `Ok(None)` when none has (or there is no
/// child). Decoded here, not by nix, whose `waitpid` reaps a child ended by a real-time signal
/// and then fails to name the signal (EINVAL): that child's death was lost, and its pid stayed
/// in the process table for good.
pub(crate) fn reap_one() -> nix::Result<Option<(i32, Ended)>> {
    loop {
        let mut status: libc::c_int = 0;
        // SAFETY: waitpid(2) writes the status into the int it is given.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid < 0 {
            return match Errno::last() {
                Errno::EINTR => continue,
                Errno::ECHILD => Ok(None),
                e => Err(e),
            };
        }
        if pid == 0 {
            return Ok(None);
        }
        if libc::WIFEXITED(status) {
            return Ok(Some((pid, Ended::Exited(libc::WEXITSTATUS(status)))));
        }
        if libc::WIFSIGNALED(status) {
            return Ok(Some((pid, Ended::Signaled(libc::WTERMSIG(status)))));
        }
        // Stopped or continued: not an end (WNOHANG without WUNTRACED reports neither).
    }
}

/// Nanoseconds on the monotonic clock (the vDSO's: tens of nanoseconds), for busy time and
/// request durations.
pub(crate) fn monotonic_ns() -> u64 {
    nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC)
        .map(|t| (t.tv_sec() as u64).saturating_mul(1_000_000_000).saturating_add(t.tv_nsec() as u64))
        .unwrap_or(0)
}

/// Sets a signal's disposition to "ignore" or back to the default.
pub(crate) fn set_disposition(signal: nix::sys::signal::Signal, ignore: bool) -> nix::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let handler = if ignore { SigHandler::SigIgn } else { SigHandler::SigDfl };
    let action = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_IGN and SIG_DFL are not functions, so no handler code runs in signal context.
    unsafe { sigaction(signal, &action) }.map(|_| ())
}

/// Signals that came while the daemon started, before its manager reads them (one bit each).
static EARLY_SIGNALS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

extern "C" fn note_early_signal(signal: libc::c_int) {
    // Async-signal-safe: one atomic operation on a static.
    if (0..64).contains(&signal) {
        EARLY_SIGNALS.fetch_or(1 << signal, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Notes `signal` when it comes, instead of its default action, until [`take_early_signals`].
/// A handler, not a blocked mask: what the program starts meanwhile (its `main`'s children)
/// gets neither, as exec resets handled signals to their default.
pub(crate) fn note_early(signal: nix::sys::signal::Signal) -> nix::Result<()> {
    use nix::sys::signal::{sigaction, SaFlags, SigAction, SigHandler, SigSet};
    let action = SigAction::new(SigHandler::Handler(note_early_signal), SaFlags::SA_RESTART, SigSet::empty());
    // SAFETY: the handler does one atomic `fetch_or` on a static, which is async-signal-safe.
    unsafe { sigaction(signal, &action) }.map(|_| ())
}

/// The signals [`note_early`] noted, and forgets them.
pub(crate) fn take_early_signals() -> Vec<nix::sys::signal::Signal> {
    let bits = EARLY_SIGNALS.swap(0, std::sync::atomic::Ordering::SeqCst);
    (1..64).filter(|n| bits & (1 << n) != 0).filter_map(|n| nix::sys::signal::Signal::try_from(n as libc::c_int).ok()).collect()
}

/// Takes an exclusive flock(2) on `file` without waiting. `Ok(false)`: another open file holds it.
///
/// The lock is released only when every descriptor of this open file is closed; closing one copy
/// (as a worker does with the manager's pid file) never releases it, unlike an explicit unlock.
pub(crate) fn try_lock_exclusive(file: &std::fs::File) -> std::io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock(2) on a descriptor `file` owns; no memory is passed.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(err)
    }
}

/// Closes every descriptor from `first` up: what the starting process left open without
/// close-on-exec would otherwise stay open in the manager, every worker and every foreign child
/// (daemon(7)), holding a pipe or a terminal open for good.
///
/// Call it before this process opens anything it keeps: it closes whatever it finds.
pub(crate) fn close_from(first: u32) {
    // SAFETY: close_range(2) takes no memory. Nothing of this process's own is open at or above
    // `first` when it is called (the entry point calls it before opening anything it keeps), so
    // no Rust object is left owning a closed descriptor; the stack helper, the other caller,
    // never uses nor drops what it copied of the manager, and ends with `_exit`.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0u32) };
    if rc == 0 {
        return;
    }
    // Kernels before 5.9: every open descriptor, from /proc.
    let open: Vec<i32> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
            .filter(|fd| u32::try_from(*fd).is_ok_and(|fd| fd >= first))
            .collect(),
        Err(_) => return,
    };
    for fd in open {
        // SAFETY: as above; the directory's own descriptor is among them but closed already, so
        // closing it again only fails with EBADF.
        unsafe {
            libc::close(fd);
        }
    }
}

/// A listening socket's accept queue: the connections waiting, the queue's length, and (TCP)
/// the connections the kernel dropped at this listener because the queue was full.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AcceptQueue {
    pub waiting: u32,
    pub limit: u32,
    pub overflows: Option<u64>,
}

/// The accept queue of a listening TCP socket: `TCP_INFO` (for a listener, `tcpi_unacked` is
/// the queue's depth and `tcpi_sacked` its length) and `SO_MEMINFO`'s drops (each listen
/// overflow counts there, per socket, besides the machine's `ListenOverflows`).
pub(crate) fn tcp_accept_queue(fd: std::os::fd::BorrowedFd<'_>) -> std::io::Result<AcceptQueue> {
    // SAFETY: getsockopt(2) writes at most `len` bytes into a zeroed tcp_info, which is plain
    // data; `len` is its size.
    let info = unsafe {
        let mut info: libc::tcp_info = std::mem::zeroed();
        let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
        if libc::getsockopt(fd.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&mut info as *mut libc::tcp_info).cast(), &mut len) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        info
    };
    /// `SK_MEMINFO_VARS` and `SK_MEMINFO_DROPS` (linux/sock_diag.h).
    const VARS: usize = 9;
    const DROPS: usize = 8;
    let mut meminfo = [0u32; VARS];
    let mut len = std::mem::size_of_val(&meminfo) as libc::socklen_t;
    // SAFETY: getsockopt(2) writes at most `len` bytes into the array.
    let rc = unsafe { libc::getsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, libc::SO_MEMINFO, meminfo.as_mut_ptr().cast(), &mut len) };
    let overflows = (rc == 0 && len as usize >= (DROPS + 1) * 4).then(|| u64::from(meminfo[DROPS]));
    Ok(AcceptQueue { waiting: info.tcpi_unacked, limit: info.tcpi_sacked, overflows })
}

/// The accept queue of a listening socket, TCP (`tcp_accept_queue`) or Unix (`sock_diag`, by
/// the socket's inode; no drop count: a Unix client waits or is refused, never dropped).
pub(crate) fn accept_queue(fd: std::os::fd::BorrowedFd<'_>, unix: bool) -> std::io::Result<AcceptQueue> {
    if !unix {
        return tcp_accept_queue(fd);
    }
    let st = nix::sys::stat::fstat(fd).map_err(std::io::Error::from)?;
    let (waiting, limit) = sock_diag::unix_accept_queue(st.st_ino as u32)?;
    Ok(AcceptQueue { waiting, limit, overflows: None })
}

/// Fills `buf` from the kernel's random source (getrandom(2)).
/// `listen(2)` with any queue length (nix's `Backlog` stops at the C library's SOMAXCONN, 4096,
/// while the kernel's cap, `net.core.somaxconn`, may be raised past it).
pub(crate) fn listen_queue(fd: std::os::fd::BorrowedFd<'_>, backlog: u32) -> std::io::Result<()> {
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    // SAFETY: listen(2) on a descriptor the caller holds; no memory is passed.
    if unsafe { libc::listen(fd.as_raw_fd(), backlog) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// TCP_DEFER_ACCEPT on a listening TCP socket: connections are queued for accept only once
/// their client has sent data, or after `secs` (nix has no wrapper for it).
pub(crate) fn defer_accept(fd: std::os::fd::BorrowedFd<'_>, secs: u32) -> std::io::Result<()> {
    let value = libc::c_int::try_from(secs).unwrap_or(libc::c_int::MAX);
    // SAFETY: setsockopt(2) on a descriptor the caller holds, reading one c_int from a live local
    // of that size.
    let done = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_DEFER_ACCEPT,
            std::ptr::addr_of!(value).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if done != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// `n` bytes from the kernel's random source, in hex: names nobody can guess first.
pub(crate) fn random_hex(n: usize) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n];
    random_bytes(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub(crate) fn random_bytes(buf: &mut [u8]) -> std::io::Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        let rest = &mut buf[filled..];
        // SAFETY: the pointer and length describe `rest`, a live, writable slice.
        let n = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        filled += n as usize;
    }
    Ok(())
}

/// A descriptor that tokio watches, kept open by the `Arc` of its owner that the watch holds.
pub(crate) struct Watched<O: std::os::fd::AsFd>(pub std::sync::Arc<O>);

impl<O: std::os::fd::AsFd> std::os::fd::AsRawFd for Watched<O> {
    fn as_raw_fd(&self) -> RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.0.as_fd())
    }
}

/// Registers `owner`'s descriptor with the current tokio runtime, to wait until it is readable.
pub(crate) fn watch_readable<O: std::os::fd::AsFd>(
    owner: std::sync::Arc<O>,
) -> std::io::Result<tokio::io::unix::AsyncFd<Watched<O>>> {
    // SAFETY: the watch owns an `Arc` of the descriptor's owner, so the descriptor stays open, and
    // the same, for the watch's whole life; `as_raw_fd` returns that one descriptor every time.
    unsafe { tokio::io::unix::AsyncFd::register_with_interest(Watched(owner), tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)
}

/// Has `command`'s child, between its fork and its exec, unblock every signal and give every
/// standard signal its default action.
pub(crate) fn default_signals_at_exec(command: &mut std::process::Command) -> &mut std::process::Command {
    use std::os::unix::process::CommandExt;
    let reset = || -> std::io::Result<()> {
        // SAFETY: in the forked child only sigemptyset, pthread_sigmask and signal run, which
        // are async-signal-safe, on a set that lives on this stack frame.
        unsafe {
            let mut none = std::mem::MaybeUninit::<libc::sigset_t>::uninit();
            libc::sigemptyset(none.as_mut_ptr());
            // It returns the error number; it does not set errno.
            let failed = libc::pthread_sigmask(libc::SIG_SETMASK, none.as_ptr(), std::ptr::null_mut());
            if failed != 0 {
                return Err(std::io::Error::from_raw_os_error(failed));
            }
            // KILL and STOP cannot be changed (EINVAL), nor is anything else left to fail.
            for signal in 1..32 {
                if signal != libc::SIGKILL && signal != libc::SIGSTOP {
                    libc::signal(signal, libc::SIG_DFL);
                }
            }
            // The stack signal, which the manager ignores.
            libc::signal(stack_signal::signal(), libc::SIG_DFL);
        }
        Ok(())
    };
    // SAFETY: the closure does only async-signal-safe work (above) and touches no lock or heap.
    unsafe { command.pre_exec(reset) }
}
