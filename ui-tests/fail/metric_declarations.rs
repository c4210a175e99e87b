// A metric's name and labels are checked where the static is declared.
use daemon::metrics::{Counter, Histogram};

static STARTS_WITH_A_DIGIT: Counter = Counter::new("1jobs_total", "Jobs done");
static THE_DAEMONS_OWN: Counter = Counter::new("daemon_jobs_total", "Jobs done");
static A_LINE_BREAK: Counter = Counter::new("jobs_total\nfake_total", "Jobs done");
static BUCKETS_LABEL: Histogram = Histogram::new("job_seconds", "How long", &[0.1, 1.0]).with_labels(&[("le", "1")]);
static TWICE: Counter = Counter::new("jobs_total", "Jobs done").with_labels(&[("queue", "a"), ("queue", "b")]);

#[daemon::main]
fn main() {
    let _ = (&STARTS_WITH_A_DIGIT, &THE_DAEMONS_OWN, &A_LINE_BREAK, &BUCKETS_LABEL, &TWICE);
}
