//! A real service on the daemon (`examples/jobs.rs`): an HTTP pool and a task group, both reading
//! an `[app]` setting, each worker with state built in `on_child`, and the program's metrics.
//! A reload reaches both pools; the metrics are summed over workers, outlive them and an upgrade,
//! and a real Prometheus reads them.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::*;

/// The jobs daemon, started detached in `dir` with its config file, listening on free ports.
struct Jobs {
    d: Detached,
    config: ConfigFile,
    metrics: u16,
    spool: std::path::PathBuf,
}

impl Jobs {
    fn start(dir: &TempDir, delay_ms: u64) -> Jobs {
        let config = ConfigFile::new("jobs", &format!("[app]\njob_delay_ms = {delay_ms}\n"));
        let metrics = free_port();
        let spool = dir.path("spool");
        let (c, m, s) = (config.arg(), format!("127.0.0.1:{metrics}"), spool.display().to_string());
        let d = Detached::start_example("jobs", dir, &["--listen", "127.0.0.1:0", "--config", &c, "--metrics-listen", &m, "--spool", &s]);
        Jobs { d, config, metrics, spool }
    }

    fn post(&self, body: &str) -> (u16, Value) {
        let mut stream = connect(self.d.port()).expect("connect");
        let request = format!(
            "POST /jobs HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        std::io::Write::write_all(&mut stream, request.as_bytes()).expect("send");
        let (code, text) = read_response(&mut stream).expect("an answer");
        (code, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    fn get(&self, path: &str) -> Value {
        let (code, text) = http_get(self.d.port(), path).expect("GET");
        assert_eq!(code, 200, "{path}: {text}");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: not JSON ({e}): {text}"))
    }

    /// Queues a job and waits for its result.
    fn run_job(&self, name: &str) -> Value {
        let (code, v) = self.post(&format!("{{\"name\":\"{name}\"}}"));
        assert_eq!(code, 201, "{v}");
        let id = v["id"].as_str().expect("an id").to_string();
        wait_for(SOON, "the job to be done", || {
            let v = self.get(&format!("/jobs/{id}"));
            (v["state"] == "done").then(|| v["result"].clone())
        })
    }

    fn page(&self) -> String {
        http_get(self.metrics, "/metrics").expect("GET /metrics").1
    }
}

#[test]
fn a_reload_of_app_reaches_the_http_pool_and_the_task_group() {
    let dir = TempDir::new("jobs-reload");
    let j = Jobs::start(&dir, 20);
    assert_eq!(j.get("/config")["job_delay_ms"], 20);
    assert_eq!(j.run_job("first")["delay_ms"], 20);

    j.config.write("[app]\njob_delay_ms = 100\n");
    let out = j.d.control(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    // Both pools get the new value, and the log says which got new workers and why.
    wait_until(SOON, "the HTTP pool's new generation", || j.get("/config")["job_delay_ms"] == 100);
    let after = j.run_job("second");
    assert_eq!(after["delay_ms"], 100, "the task group runs with the new value: {after}");
    let log = j.d.log_text();
    assert!(log.contains("HUP: new workers for the serving pool"), "{log}");
    assert!(
        log.lines().any(|l| l.contains("pool=work") && l.contains("new workers: their settings changed") && l.contains("[app] job_delay_ms")),
        "{log}"
    );

    // A reload that changes nothing a worker reads keeps the task workers.
    let pids = |pool: &str| -> Vec<i64> {
        let out = j.d.control(&["status", "--json"]);
        let s: Value = serde_json::from_slice(&out.stdout).expect("status --json");
        let mut p: Vec<i64> = s["workers"].as_array().into_iter().flatten().filter(|w| w["pool"] == pool).filter_map(|w| w["pid"].as_i64()).collect();
        p.sort();
        p
    };
    let work = wait_for(SOON, "two work workers", || Some(pids("work")).filter(|p| p.len() == 2));
    let out = j.d.control(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    wait_until(SOON, "the log of the second reload", || j.d.log_text().contains("workers kept: nothing they read changed"));
    assert_eq!(pids("work"), work, "the task workers stay when nothing they read changed");
    assert!(j.d.control(&["stop"]).status.success());
}

#[test]
fn stop_finishes_the_jobs_in_hand_and_stop_now_does_not() {
    for (now, finished) in [(false, true), (true, false)] {
        let dir = TempDir::new(if now { "jobs-stop-now" } else { "jobs-stop" });
        let j = Jobs::start(&dir, 1500);
        let (code, v) = j.post("{\"name\":\"long\"}");
        assert_eq!(code, 201, "{v}");
        let id = v["id"].as_str().expect("an id").to_string();
        wait_until(SOON, "the job to be worked on", || j.get(&format!("/jobs/{id}"))["state"] == "working");
        let args: &[&str] = if now { &["stop", "--now"] } else { &["stop"] };
        let out = j.d.control(args);
        assert!(out.status.success(), "{out:?}");
        assert!(!alive(j.d.manager));
        let done = j.spool.join("done").join(format!("{id}.json")).exists();
        assert_eq!(done, finished, "stop --now: {now}; the job is done: {done}");
        if now {
            assert!(j.spool.join("working").join(format!("{id}.json")).exists(), "the cut job is left in working/");
        }
    }
}

#[test]
fn per_worker_state_fails_a_start_with_the_reason() {
    // The spool's directories are checked in on_child: without them, no worker starts, and the
    // start fails saying why (not at the first request).
    let dir = TempDir::new("jobs-state");
    let j = Jobs::start(&dir, 0);
    assert_eq!(j.run_job("a")["delay_ms"], 0);
    std::fs::remove_dir_all(j.spool.join("queued")).expect("remove queued/");
    // New workers: their on_child cannot open the spool.
    let out = j.d.control(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    let line = wait_for(SOON, "a worker's failed start", || {
        j.d.log_text().lines().find(|l| l.contains("the on_child hook") && l.contains("failed")).map(String::from)
    });
    assert!(line.contains("routes") || line.contains("open_spool"), "{line}");
    assert!(line.contains("No such file or directory"), "{line}");
    // The old generation serves on meanwhile: a pre-forked pool keeps it until the new is ready.
    assert_eq!(j.get("/config")["job_delay_ms"], 0);
    assert!(j.d.control(&["stop", "--now"]).status.success());
}

#[test]
fn the_programs_metrics_are_summed_and_outlive_workers_and_an_upgrade() {
    let dir = TempDir::new("jobs-metrics");
    let j = Jobs::start(&dir, 0);
    for i in 0..6 {
        j.run_job(&format!("j{i}"));
    }
    let page = j.page();
    assert_eq!(sample(&page, "jobs_submitted_total"), Some(6.0), "{page}");
    assert_eq!(sample(&page, "jobs_done_total"), Some(6.0), "{page}");
    assert_eq!(sample(&page, "job_seconds_count"), Some(6.0), "{page}");
    assert_eq!(sample(&page, "jobs_in_hand"), Some(0.0), "{page}");
    assert!(sample(&page, "daemon_http_requests_total").is_some_and(|n| n >= 12.0), "{page}");
    assert!(sample(&page, "daemon_connections_total{pool=\"main\"}").is_some_and(|n| n >= 12.0), "{page}");
    assert!(page.contains("# TYPE job_seconds histogram") && page.contains("job_seconds_bucket{le=\"+Inf\"} 6"), "{page}");

    // The workers that counted are replaced: their counts stay.
    let out = j.d.control(&["reload"]);
    assert!(out.status.success(), "{out:?}");
    // (The HTTP pool's two: the task workers stay, as nothing they read changed.)
    wait_until(SOON, "the old generation to be gone", || {
        sample(&j.page(), "daemon_worker_exits_total{cause=\"retired\",pool=\"main\"}") == Some(2.0)
    });
    let page = j.page();
    assert_eq!(sample(&page, "jobs_done_total"), Some(6.0), "{page}");
    assert_eq!(sample(&page, "jobs_submitted_total"), Some(6.0), "{page}");

    // An upgrade: the new manager keeps counting from there.
    let out = j.d.control(&["upgrade"]);
    assert!(out.status.success(), "{out:?}");
    j.run_job("after-upgrade");
    let new_manager = read_pid(&j.d.pid_file).expect("the new manager's pid");
    assert_ne!(new_manager, j.d.manager);
    // The handover of the pid file is not a stale file's.
    let log = j.d.log_text();
    assert!(log.contains("took over the pid file") && !log.contains("stale"), "{log}");
    // Once the old manager is gone, its counts are the new one's.
    wait_until(SOON, "the old manager to exit", || !alive(j.d.manager));
    let page = wait_for(SOON, "the metrics after the upgrade", || {
        let page = j.page();
        (sample(&page, "jobs_done_total") == Some(7.0)).then_some(page)
    });
    assert_eq!(sample(&page, "jobs_submitted_total"), Some(7.0), "{page}");
    assert_eq!(sample(&page, "job_seconds_count"), Some(7.0), "{page}");
    let out = run_program(&example("jobs"), &["stop", "--pid-file", &j.d.pid_file.display().to_string()]);
    assert!(out.status.success(), "{out:?}");
}

#[test]
fn a_real_prometheus_reads_the_programs_metrics() {
    let dir = TempDir::new("jobs-prometheus");
    let j = Jobs::start(&dir, 0);
    for i in 0..3 {
        j.run_job(&format!("p{i}"));
    }
    let prometheus = Prometheus::scraping(&dir, "jobs", j.metrics);
    let done = wait_for(Duration::from_secs(60), "Prometheus to have scraped jobs_done_total", || prometheus.query("jobs_done_total"));
    assert_eq!(done, "3");
    let count = wait_for(SOON, "the histogram's count", || prometheus.query("job_seconds_count"));
    assert_eq!(count, "3");
    drop(prometheus);
    assert!(j.d.control(&["stop"]).status.success());
}
