//! Why a batch took long (issue 21's longest-batch goal): what the machine and the server were
//! doing while it ran. A sampler reads, with a pause of `EVERY` between samples, the kernel's
//! CPU and I/O pressure (`/proc/pressure`), the CPU time the hypervisor gave others (`steal` in
//! `/proc/stat`), the dirty page cache, and the wait event of each active backend of the job's database; the
//! server's log gives the autovacuums and checkpoints (`log_autovacuum_min_duration = 0`,
//! `log_checkpoints`). A batch's window [started_at, started_at + ms] is then lined up with
//! both. Runs during both jobs of a comparison, so each pays the same small cost.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeDelta, Utc};
use sqlx::{Connection, PgConnection};

const EVERY: Duration = Duration::from_millis(20);

/// The server settings that make the log say what `ServerEvent`s need, one statement each
/// (ALTER SYSTEM refuses a transaction); then a reload.
pub const LOG_SETTINGS: &[&str] = &[
    "ALTER SYSTEM SET log_autovacuum_min_duration = 0",
    "ALTER SYSTEM SET log_checkpoints = on",
    "ALTER SYSTEM SET log_timezone = 'UTC'",
    "ALTER SYSTEM SET log_line_prefix = '%m [%p] %d '",
    "SELECT pg_reload_conf()",
];

/// Cumulative counters read at one instant.
#[derive(Debug, Clone, Copy, Default)]
struct Counters {
    /// `/proc/stat` ticks: all, idle + iowait, steal.
    total: u64,
    idle: u64,
    steal: u64,
    /// `/proc/pressure/{cpu,io}` "some" totals, in µs: time some task waited for a CPU, for I/O.
    cpu_stall_us: u64,
    io_stall_us: u64,
}

#[derive(Debug, Clone)]
struct Sample {
    at: DateTime<Utc>,
    counters: Counters,
    dirty_kb: u64,
    /// `application_name/wait` of each active client backend of the database.
    waits: Vec<String>,
}

pub struct Sampler {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<Sample>>,
}

pub struct Samples(Vec<Sample>);

impl Sampler {
    pub async fn start(admin_url: &str, database: &str) -> Sampler {
        let mut conn = PgConnection::connect(admin_url).await.unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let database = database.to_owned();
        let task = tokio::spawn(async move {
            let mut samples = Vec::new();
            while !stopped.load(Ordering::Relaxed) {
                samples.push(sample(&mut conn, &database).await);
                tokio::time::sleep(EVERY).await;
            }
            samples.push(sample(&mut conn, &database).await);
            samples
        });
        Sampler { stop, task }
    }

    pub async fn finish(self) -> Samples {
        self.stop.store(true, Ordering::Relaxed);
        Samples(self.task.await.unwrap())
    }
}

async fn sample(conn: &mut PgConnection, database: &str) -> Sample {
    let waits: Vec<(String,)> = sqlx::query_as(
        "SELECT coalesce(nullif(application_name, ''), 'app') || '/'
                || coalesce(wait_event_type || ':' || wait_event, 'CPU')
         FROM pg_stat_activity
         WHERE datname = $1 AND state = 'active' AND backend_type = 'client backend'
           AND pid <> pg_backend_pid()",
    )
    .bind(database)
    .fetch_all(conn)
    .await
    .unwrap();
    Sample {
        at: Utc::now(),
        counters: counters(),
        dirty_kb: dirty_kb(),
        waits: waits.into_iter().map(|(w,)| w).collect(),
    }
}

fn counters() -> Counters {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|t| t.parse().ok())
        .collect();
    let tick = |i: usize| ticks.get(i).copied().unwrap_or(0);
    Counters {
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        total: (0..8).map(tick).sum(),
        idle: tick(3) + tick(4),
        steal: tick(7),
        cpu_stall_us: stall_us("cpu"),
        io_stall_us: stall_us("io"),
    }
}

/// The "some" line's `total=` of `/proc/pressure/<what>` (0 where the kernel has no PSI).
fn stall_us(what: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/pressure/{what}")).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("some"))
        .and_then(|l| l.rsplit("total=").next())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

fn dirty_kb() -> u64 {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    meminfo
        .lines()
        .find(|l| l.starts_with("Dirty:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse().ok())
        .unwrap_or(0)
}

/// What the server logged as taking time: an autovacuum or autoanalyze of a table, a checkpoint.
#[derive(Debug, Clone)]
pub struct ServerEvent {
    what: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

/// The events of the server's log (written with `LOG_SETTINGS`).
pub fn server_events(log: &Path) -> Vec<ServerEvent> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let mut events = Vec::new();
    let mut maintenance: Option<(DateTime<Utc>, String)> = None;
    let mut checkpoint_began: Option<(DateTime<Utc>, String)> = None;
    for line in text.lines() {
        if let Some((at, message)) = logged_at(line) {
            maintenance = None;
            if let Some(table) = message.strip_prefix("LOG:  automatic ") {
                maintenance = Some((at, table.replace(" of table ", " ")));
            } else if let Some(why) = message.strip_prefix("LOG:  checkpoint starting: ") {
                checkpoint_began = Some((at, why.to_owned()));
            } else if message.starts_with("LOG:  checkpoint complete")
                && let Some((from, why)) = checkpoint_began.take()
            {
                events.push(ServerEvent {
                    what: format!("checkpoint ({why})"),
                    from,
                    to: at,
                });
            }
        } else if let Some((ended, what)) = &maintenance
            && let Some(elapsed) = line.rsplit("elapsed: ").next()
            && line.contains("system usage:")
        {
            let secs: f64 = elapsed.trim_end_matches(" s").trim().parse().unwrap_or(0.0);
            let what = what.split(':').next().unwrap_or(what).to_owned();
            events.push(ServerEvent {
                what,
                from: *ended - TimeDelta::milliseconds((secs * 1000.0) as i64),
                to: *ended,
            });
            maintenance = None;
        }
    }
    events
}

/// `2026-12-07 17:45:12.345 UTC [123] db LOG:  …` → (the time, `LOG:  …`).
fn logged_at(line: &str) -> Option<(DateTime<Utc>, &str)> {
    let stamp = NaiveDateTime::parse_from_str(line.get(..23)?, "%Y-%m-%d %H:%M:%S%.3f").ok()?;
    let message = &line[line.find("LOG:  ").or_else(|| line.find("ERROR:  "))?..];
    Some((stamp.and_utc(), message))
}

/// One line on a batch of a paytool report (an entry of `slowest_batches`): what overlapped
/// its window.
pub fn explain(batch: &serde_json::Value, samples: &Samples, events: &[ServerEvent]) -> String {
    let from: DateTime<Utc> = batch["started_at"].as_str().unwrap().parse().unwrap();
    let ms = batch["ms"].as_i64().unwrap();
    let to = from + TimeDelta::milliseconds(ms);
    let mut text = format!(
        "{ms} ms at {} ({} rows after {})",
        from.format("%H:%M:%S%.3f"),
        batch["size"],
        batch["after"]
    );
    text.push_str(&format!("; {}", samples.during(from, to)));
    let overlapping: Vec<String> = events
        .iter()
        .filter(|e| e.from < to && e.to > from)
        .map(|e| {
            format!(
                "{} ({:.1} s, {:+.1} s to {:+.1} s)",
                e.what,
                (e.to - e.from).as_seconds_f64(),
                (e.from - from).as_seconds_f64(),
                (e.to - from).as_seconds_f64()
            )
        })
        .collect();
    if overlapping.is_empty() {
        text.push_str("; server: nothing logged");
    } else {
        text.push_str(&format!("; server: {}", overlapping.join(", ")));
    }
    text
}

impl Samples {
    /// The machine over the whole job, to compare a batch's window with.
    pub fn whole_run(&self) -> String {
        match (self.0.first(), self.0.last()) {
            (Some(a), Some(b)) => machine(a, b),
            _ => "no samples".to_owned(),
        }
    }

    /// The whole job: the machine, and the server's maintenance that overlapped it (each
    /// autovacuum with its time, the share of the job a checkpoint was running).
    pub fn whole_run_with(&self, events: &[ServerEvent]) -> String {
        let (Some(first), Some(last)) = (self.0.first(), self.0.last()) else {
            return "no samples".to_owned();
        };
        let (from, to) = (first.at, last.at);
        let overlap = |e: &ServerEvent| (e.to.min(to) - e.from.max(from)).as_seconds_f64();
        let during: Vec<&ServerEvent> = events.iter().filter(|e| overlap(e) > 0.0).collect();
        let checkpointing: f64 = during
            .iter()
            .filter(|e| e.what.starts_with("checkpoint"))
            .map(|e| overlap(e))
            .fold(0.0, |sum, s| sum + s);
        let maintenance: Vec<String> = during
            .iter()
            .filter(|e| !e.what.starts_with("checkpoint"))
            .map(|e| format!("{} {:.1} s", e.what, overlap(e)))
            .collect();
        format!(
            "{}; checkpoint running {:.0}% of it; {}",
            machine(first, last),
            100.0 * checkpointing / (to - from).as_seconds_f64().max(0.001),
            if maintenance.is_empty() {
                "no autovacuum".to_owned()
            } else {
                maintenance.join(", ")
            }
        )
    }

    fn during(&self, from: DateTime<Utc>, to: DateTime<Utc>) -> String {
        let before = self.0.iter().rev().find(|s| s.at <= from);
        let after = self.0.iter().find(|s| s.at >= to);
        let (Some(before), Some(after)) = (before, after) else {
            return "no samples".to_owned();
        };
        let mut waits: BTreeMap<&str, usize> = BTreeMap::new();
        let inside = self.0.iter().filter(|s| s.at >= from && s.at <= to);
        let mut dirty_max = 0;
        for s in inside {
            dirty_max = dirty_max.max(s.dirty_kb);
            for w in &s.waits {
                *waits.entry(w.as_str()).or_default() += 1;
            }
        }
        let waits: Vec<String> = waits.iter().map(|(w, n)| format!("{w}×{n}")).collect();
        format!(
            "{}, dirty ≤ {} MB; waits {}",
            machine(before, after),
            dirty_max / 1024,
            waits.join(" ")
        )
    }
}

/// CPU busy, steal, and the time tasks stalled for a CPU and for I/O, between two samples.
fn machine(a: &Sample, b: &Sample) -> String {
    let (a, b, span) = (a.counters, b.counters, b.at - a.at);
    let ticks = (b.total - a.total).max(1) as f64;
    let span_ms = span.num_milliseconds().max(1) as f64;
    format!(
        "CPU busy {:.0}%, steal {:.0}%, CPU stall {:.0}%, I/O stall {:.0}% (over {span_ms:.0} ms)",
        100.0 * (ticks - (b.idle - a.idle) as f64) / ticks,
        100.0 * (b.steal - a.steal) as f64 / ticks,
        (b.cpu_stall_us - a.cpu_stall_us) as f64 / 10.0 / span_ms,
        (b.io_stall_us - a.io_stall_us) as f64 / 10.0 / span_ms,
    )
}
