//! The worker's side of a stack capture: a signal handler that walks the stack of the thread it
//! interrupts and sends the return addresses to the manager, in one datagram, from inside the
//! handler. Only async-signal-safe work happens here: the unwinder (libgcc's `_Unwind_Backtrace`,
//! which finds each frame's unwind table with glibc's lock-free `_dl_find_object` and allocates
//! nothing), a few loads and stores, `getpid`, `gettid` and `send`. Symbolizing the addresses
//! (which reads debug information and allocates) is done by the manager's helper, never here.
//!
//! What it needs is set up before the worker runs any of the program's code: the socket (the
//! manager's, inherited at fork) and the manager's pid (only it may ask).

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

/// Most frames one thread sends: a 2 KiB buffer on the interrupted thread's own stack (the
/// handler runs there, not on an alternate stack), one datagram.
pub(crate) const MAX_FRAMES: usize = 256;

/// A message: magic, pid, tid, the index of the interrupted frame, the frame count, then the
/// frames' addresses (all native-endian: it never leaves the machine).
pub(crate) const MAGIC: u32 = 0x6473_746b;
pub(crate) const HEADER: usize = 5;

static SOCKET: AtomicI32 = AtomicI32::new(-1);
static MANAGER: AtomicI32 = AtomicI32::new(0);

/// The signal that asks a thread for its stack: a real-time one, which nobody sends by accident
/// (the parent-death signal is `SIGRTMIN + 1`).
pub(crate) fn signal() -> libc::c_int {
    libc::SIGRTMIN() + 2
}

/// The address the interrupted thread was executing, from the signal's context.
///
/// # Safety
/// `context` is the third argument of an `SA_SIGINFO` handler.
unsafe fn interrupted_pc(context: *mut libc::c_void) -> usize {
    if context.is_null() {
        return 0;
    }
    let uc = context.cast::<libc::ucontext_t>();
    #[cfg(target_arch = "x86_64")]
    {
        // SAFETY: the kernel passes a valid ucontext_t to an SA_SIGINFO handler.
        unsafe { (*uc).uc_mcontext.gregs[libc::REG_RIP as usize] as usize }
    }
    #[cfg(target_arch = "aarch64")]
    {
        // SAFETY: as above.
        unsafe { (*uc).uc_mcontext.pc as usize }
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
    {
        let _ = uc;
        0
    }
}

extern "C" fn on_signal(_: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: errno is thread-local; saving and restoring it keeps the interrupted code's.
    let errno = unsafe { *libc::__errno_location() };
    // SAFETY: the kernel passes a valid siginfo_t to an SA_SIGINFO handler.
    // Sent by the manager with tgkill(2): `SI_TKILL`, a code no other process can forge (one
    // that queues a signal with its own siginfo may claim any `si_pid`, but only with a code
    // below zero that is not the kernel's tgkill one).
    let (sender, code) = if info.is_null() { (0, 0) } else { unsafe { ((*info).si_pid(), (*info).si_code) } };
    let socket = SOCKET.load(Ordering::Relaxed);
    if answers(code, sender, MANAGER.load(Ordering::Relaxed)) && socket >= 0 {
        // SAFETY: as above, for the context.
        let pc = unsafe { interrupted_pc(context) };
        send_stack(socket, pc);
    }
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Whether a stack signal is the manager's own request: sent with tgkill (`SI_TKILL`, which no
/// other process can claim) by the manager's pid.
fn answers(code: libc::c_int, sender: libc::pid_t, manager: libc::pid_t) -> bool {
    code == libc::SI_TKILL && sender == manager && manager > 0
}

/// Walks this thread's stack and sends it. The buffer is on this thread's stack (2 KiB): the
/// handler runs on the interrupted thread's stack, and every thread has its own message.
fn send_stack(socket: RawFd, pc: usize) {
    let mut message = [0u64; HEADER + MAX_FRAMES];
    let mut count = 0usize;
    let mut interrupted = u64::MAX;
    // SAFETY: `trace_unsynchronized` is unsafe only because it does not take backtrace's lock,
    // which is for symbolizing and for Windows' dbghelp; on Linux it is libgcc's unwinder, which
    // allocates nothing and takes no lock (glibc 2.35+ finds unwind tables with
    // `_dl_find_object`). The closure writes only into `message`.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            let ip = frame.ip() as usize;
            if ip == pc && interrupted == u64::MAX {
                interrupted = count as u64;
            }
            if let Some(cell) = message.get_mut(HEADER + count) {
                *cell = ip as u64;
                count += 1;
                true
            } else {
                false
            }
        });
    }
    // SAFETY: getpid and gettid are async-signal-safe system calls with no arguments.
    let (pid, tid) = unsafe { (libc::getpid(), libc::gettid()) };
    message[0] = u64::from(MAGIC);
    message[1] = pid as u64;
    message[2] = tid as u64;
    message[3] = interrupted;
    message[4] = count as u64;
    let len = (HEADER + count) * std::mem::size_of::<u64>();
    // SAFETY: send(2) is async-signal-safe; the buffer is valid for `len` bytes. A full socket
    // loses this thread's stack (MSG_DONTWAIT), never blocks the worker.
    unsafe {
        libc::send(socket, message.as_ptr().cast(), len, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL);
    }
}

/// The manager ignores the stack signal (its default action would end it), from before its
/// first fork: a worker forked before it installs its handler, and the helpers, ignore it too
/// (an ignored signal is discarded, not queued against the user's pending-signal limit).
pub(crate) fn ignore() -> std::io::Result<()> {
    // SAFETY: a zeroed sigaction is valid; SIG_IGN takes no handler.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = libc::SIG_IGN;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal(), &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Installs the handler in this worker: its stacks go to `socket` when `manager` asks.
pub(crate) fn install(socket: RawFd, manager: i32) -> std::io::Result<()> {
    SOCKET.store(socket, Ordering::Relaxed);
    MANAGER.store(manager, Ordering::Relaxed);
    // Nothing to warm up: Rust links with `-z now` (every symbol bound at load, none lazily in
    // a handler), and libgcc's unwinder keeps no state to set up (`_dl_find_object`). A walk
    // here made each idle worker touch about 250 KiB of unwind tables and libgcc for nothing
    // (`Pss` of `smaps_rollup`: 1,375 KiB, then 1,131 KiB without it).
    // SAFETY: a zeroed sigaction is valid (no flags, an empty mask); the handler only makes
    // async-signal-safe calls (see `send_stack`).
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_signal as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as *const () as usize;
        action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        if libc::sigaction(signal(), &action, std::ptr::null_mut()) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Asks thread `tid` of process `pid` for its stack.
pub(crate) fn ask(pid: i32, tid: i32) -> std::io::Result<()> {
    // SAFETY: tgkill(2) takes no memory; a thread of another process is named by both ids, so
    // a recycled thread id elsewhere is never hit.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, signal()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_managers_tgkill_is_answered() {
        assert!(answers(libc::SI_TKILL, 42, 42));
        // rt_tgsigqueueinfo lets a process of the same user claim any si_pid, with its own code.
        assert!(!answers(libc::SI_QUEUE, 42, 42), "a queued signal claiming the manager's pid");
        assert!(!answers(libc::SI_USER, 42, 42), "kill(2)");
        assert!(!answers(libc::SI_TKILL, 43, 42), "someone else's tgkill");
        assert!(!answers(libc::SI_TKILL, 0, 0), "no manager known");
    }
}
