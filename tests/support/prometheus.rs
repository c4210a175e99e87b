//! A real Prometheus (Debian's `prometheus`, which `.ci/run` installs), scraping one target
//! every second, and its HTTP API for the tests' queries.

use super::{http_get, port_in, Daemon, TempDir, SOON};

/// A port nobody listens on now (the OS picks it; free again once this returns).
pub fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    l.local_addr().expect("its address").port()
}

/// Prometheus, killed with its process group when dropped.
pub struct Prometheus {
    _process: Daemon,
    web: u16,
}

impl Prometheus {
    /// Starts one that scrapes `127.0.0.1:target` as `job`, its data under `dir`.
    pub fn scraping(dir: &TempDir, job: &str, target: u16) -> Prometheus {
        let config = dir.path("prometheus.yml");
        std::fs::write(
            &config,
            format!(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
            ),
        )
        .expect("write prometheus.yml");
        let web = free_port();
        let (c, data, listen) = (config.display().to_string(), dir.path("prometheus-data").display().to_string(), format!("127.0.0.1:{web}"));
        let process = Daemon::start_program(
            std::path::Path::new("prometheus"),
            "prometheus",
            &["--config.file", &c, "--storage.tsdb.path", &data, "--web.listen-address", &listen],
            &[],
        );
        Prometheus { _process: process, web }
    }

    /// The first result's value of an instant query (`query` URL-encoded), once Prometheus
    /// answers it with one.
    pub fn query(&self, query: &str) -> Option<String> {
        let (code, body) = http_get(self.web, &format!("/api/v1/query?query={query}")).ok()?;
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        (code == 200 && v["status"] == "success").then_some(())?;
        v["data"]["result"][0]["value"][1].as_str().map(String::from)
    }
}

/// The daemon's metrics port, from its log.
pub fn metrics_port(d: &Daemon) -> u16 {
    let line = d.wait_for_line("GET /metrics answered here", SOON);
    port_in(&line.replace("addr=", "listening addr=")).expect("the metrics address")
}

/// A value of a metrics page: the sample whose name and labels are `series`.
pub fn sample(page: &str, series: &str) -> Option<f64> {
    page.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' ')).and_then(|l| l.rsplit(' ').next()?.parse().ok())
}
