//! A daemon started and upgraded through its control commands, in a directory of its own, and
//! clients that keep it busy meanwhile: what the zero-downtime tests share.
//!
//! Each `App` runs its own copy of the lab binary (`app`), so a test can replace it on disk, and
//! controls it with another copy (`ctl`), which stays the lab whatever `app` becomes.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Output;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use super::*;

pub struct App {
    pub dir: TempDir,
    pub exe: PathBuf,
    pub ctl: PathBuf,
    pub pid_file: PathBuf,
    pub log: PathBuf,
    /// Every manager seen, to kill at the end with its workers.
    pub managers: Mutex<Vec<i32>>,
}

impl App {
    pub fn start(tag: &str, extra: &[&str]) -> App {
        App::start_owned(tag, extra, None)
    }

    /// Started in a directory that belongs to `owner` (uid), as README asks of a daemon that
    /// drops to that user.
    pub fn start_owned(tag: &str, extra: &[&str], owner: Option<u32>) -> App {
        App::start_example("lab", tag, extra, owner)
    }

    /// [`App::start_owned`] with another example than the lab.
    pub fn start_example(example_name: &str, tag: &str, extra: &[&str], owner: Option<u32>) -> App {
        App::start_example_with_env(example_name, tag, extra, owner, &[])
    }

    /// [`App::start_example`] with these environment variables (which an upgrade passes on).
    pub fn start_example_with_env(example_name: &str, tag: &str, extra: &[&str], owner: Option<u32>, env: &[(&str, &str)]) -> App {
        let dir = TempDir::new(tag);
        if let Some(uid) = owner {
            nix::unistd::chown(&dir.0, Some(nix::unistd::Uid::from_raw(uid)), Some(nix::unistd::Gid::from_raw(uid))).expect("chown the directory");
        }
        let (exe, ctl) = (dir.path("app"), dir.path("ctl"));
        std::fs::copy(example(example_name), &exe).expect("copy the example's binary");
        std::fs::copy(example(example_name), &ctl).expect("copy the example's binary");
        let (pid_file, log) = (dir.path("app.pid"), dir.path("app.log"));
        let app = App { dir, exe, ctl, pid_file, log, managers: Mutex::new(Vec::new()) };
        let (p, l) = (app.pid_file.display().to_string(), app.log.display().to_string());
        let mut args = vec!["start", "--listen", "127.0.0.1:0", "--workers", "2", "--pid-file", &p, "--log-file", &l];
        args.extend_from_slice(extra);
        let mut start = command(&app.exe, &args);
        start.envs(env.iter().copied());
        let out = finish(start);
        assert!(out.status.success(), "start: {out:?}");
        app.track();
        app
    }

    /// The manager the pid file names now (remembered, to be killed at the end).
    pub fn track(&self) -> i32 {
        let pid = read_pid(&self.pid_file).expect("a pid file");
        let mut seen = self.managers.lock().unwrap();
        if !seen.contains(&pid) {
            seen.push(pid);
        }
        pid
    }

    pub fn control(&self, args: &[&str]) -> Output {
        let p = self.pid_file.display().to_string();
        let mut all = args.to_vec();
        all.extend_from_slice(&["--pid-file", &p]);
        run_program(&self.ctl, &all)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn port(&self) -> u16 {
        port_in(&self.log_text()).expect("the log names the port")
    }

    pub fn status(&self) -> serde_json::Value {
        let out = self.control(&["status", "--json"]);
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null)
    }

    /// Replaces the binary on disk, as a deploy does: written beside it, then renamed over it.
    pub fn replace(&self, contents: &[u8]) {
        let new = self.dir.path("app.new");
        std::fs::write(&new, contents).expect("write the new binary");
        std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("make it executable");
        std::fs::rename(&new, &self.exe).expect("move it in place");
    }

    /// A script in place of the binary: `body` runs with the lab (the `ctl` copy) at `$LAB`.
    pub fn replace_with_script(&self, body: &str) {
        self.replace(format!("#!/bin/sh\nLAB={}\n{body}\n", self.ctl.display()).as_bytes());
    }

    /// `upgrade`, which waits until the new manager serves or the upgrade rolled back.
    pub fn upgrade(&self, extra: &[&str]) -> Output {
        let mut args = vec!["upgrade"];
        args.extend_from_slice(extra);
        let out = self.control(&args);
        if let Some(pid) = text(&out.stdout).split("the new manager, pid ").nth(1).and_then(|r| r.split(';').next()).and_then(|p| p.trim().parse().ok()) {
            self.managers.lock().unwrap().push(pid);
        }
        out
    }

    /// Waits until only the manager the pid file names runs (an upgrade's old one is gone).
    pub fn settle(&self) -> i32 {
        let current = self.track();
        let others: Vec<i32> = self.managers.lock().unwrap().iter().copied().filter(|&p| p != current).collect();
        for old in others {
            wait_until(SOON, "the old manager to exit", || !alive(old));
        }
        current
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let managers = self.managers.lock().map(|m| m.clone()).unwrap_or_default();
        for pid in managers {
            let workers = children(pid);
            for p in std::iter::once(pid).chain(workers) {
                if alive(p) {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), Signal::SIGKILL);
                }
            }
        }
    }
}

/// Reads one response on a keep-alive connection: its status, whether the server closes the
/// connection after it, and its body.
pub fn read_keep_alive(stream: &mut TcpStream) -> std::io::Result<(u16, bool, String)> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte)? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, format!("closed after {} bytes of a response head", head.len())));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:").map(|v| v.trim().to_string()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body)?;
    Ok((status, head.contains("connection: close"), String::from_utf8_lossy(&body).into_owned()))
}

#[derive(Debug, Default)]
pub struct Counts {
    pub ok: u64,
    pub failed: u64,
    pub first_failures: Vec<String>,
}

impl Counts {
    pub fn fail(&mut self, why: String) {
        self.failed += 1;
        if self.first_failures.len() < 5 {
            self.first_failures.push(why);
        }
    }
}

/// Clients that run until stopped: `keep_alive` of them on keep-alive connections (a
/// connection the server closes after a `Connection: close` answer is opened again: not a
/// failure), `fresh` of them a new connection per request. Every other end is a failure.
pub struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<Counts>>,
}

impl Load {
    pub fn start(port: u16, keep_alive: usize, fresh: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for _ in 0..keep_alive {
            let stop = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                let mut counts = Counts::default();
                let mut conn: Option<TcpStream> = None;
                while !stop.load(Ordering::Relaxed) {
                    let c = match conn.take() {
                        Some(c) => c,
                        None => match connect(port) {
                            Ok(c) => c,
                            Err(e) => {
                                counts.fail(format!("connect: {e}"));
                                continue;
                            }
                        },
                    };
                    let mut c = c;
                    let asked = c.write_all(b"GET / HTTP/1.1\r\nHost: app\r\n\r\n").and_then(|()| read_keep_alive(&mut c));
                    match asked {
                        Ok((200, close, body)) if body == "hello\n" => {
                            counts.ok += 1;
                            if close {
                                // The server said so: it closes, we open another.
                                let mut rest = Vec::new();
                                let _ = c.read_to_end(&mut rest);
                            } else {
                                conn = Some(c);
                            }
                        }
                        Ok(other) => counts.fail(format!("keep-alive answer {other:?}")),
                        Err(e) => counts.fail(format!("keep-alive: {e}")),
                    }
                }
                counts
            }));
        }
        for _ in 0..fresh {
            let stop = Arc::clone(&stop);
            threads.push(std::thread::spawn(move || {
                let mut counts = Counts::default();
                while !stop.load(Ordering::Relaxed) {
                    match http_get(port, "/") {
                        Ok((200, body)) if body == "hello\n" => counts.ok += 1,
                        Ok(other) => counts.fail(format!("answer {other:?}")),
                        Err(e) => counts.fail(format!("new connection: {e}")),
                    }
                }
                counts
            }));
        }
        Load { stop, threads }
    }

    pub fn finish(self) -> Counts {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Counts::default();
        for t in self.threads {
            let c = t.join().expect("a client thread");
            all.ok += c.ok;
            all.failed += c.failed;
            all.first_failures.extend(c.first_failures);
        }
        all
    }
}

pub fn generation(app: &App) -> u64 {
    let s = app.status();
    s["generation"].as_u64().unwrap_or(0)
}

/// The main pool is ready at `generation` (every worker of it accepts, no older one left).
pub fn ready_at(app: &App, generation: u64) -> bool {
    let s = app.status();
    let workers = s["workers"].as_array().cloned().unwrap_or_default();
    s["generation"].as_u64() == Some(generation)
        && workers.len() == 2
        && workers.iter().all(|w| w["generation"].as_u64() == Some(generation) && (w["state"] == "w" || w["state"] == "r"))
}

pub fn version(port: u16) -> String {
    let (code, body) = http_get(port, "/version").expect("GET /version");
    assert_eq!(code, 200);
    body
}

