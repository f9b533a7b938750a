//! A fault-injecting HTTP proxy in front of the S3 server, for `scripts/bench.sh --faults`
//! and for trying bucketfs by hand against a server that misbehaves as real S3 does: 500s,
//! 503 SlowDown, connections reset before or in the middle of an answer, answers held back
//! for seconds, outages. The proxy itself is `tests/common/faults.rs` (how it works, what
//! each fault does); the decisions come from a seeded RNG, so a run with the same seed and
//! the same order of requests meets the same faults.
//!
//!   fault_proxy 127.0.0.1:3912 127.0.0.1:3900 --seed 14 --mix issue14 \
//!       --stats-file /tmp/faults.json --outage-file /tmp/outage
//!
//! `--outage-file PATH`: the outage is on while PATH exists (checked every 100 ms).
//! `--stats-file PATH`: the counters as one JSON object, rewritten every 200 ms and at exit
//! (SIGTERM, SIGINT). Each fault is logged on stderr unless `--quiet`.

#[path = "../tests/common/faults.rs"]
mod faults;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::{Parser, ValueEnum};
use faults::{FaultMix, FaultProxy};

#[derive(Clone, Copy, ValueEnum)]
enum Mix {
    /// 4 % each of 500, 503 SlowDown, reset before the answer, reset mid-body; 3 % stalls
    /// of 2-5 s (issue 14)
    Issue14,
    /// No faults (counts requests; outages still work)
    None,
}

#[derive(Parser)]
#[command(about = "Fault-injecting HTTP proxy in front of an S3 server (seeded, reproducible)")]
struct Args {
    /// Address to listen on, e.g. 127.0.0.1:3912
    listen: String,
    /// The server, e.g. 127.0.0.1:3900 or http://127.0.0.1:3900
    upstream: String,
    /// Seed of the fault decisions
    #[arg(long, default_value_t = 14)]
    seed: u64,
    /// The mix to start from; the probability options below override its fields
    #[arg(long, value_enum, default_value = "issue14")]
    mix: Mix,
    /// Probability of a 500 InternalError
    #[arg(long, value_name = "P")]
    error_500: Option<f64>,
    /// Probability of a 503 SlowDown
    #[arg(long, value_name = "P")]
    error_503: Option<f64>,
    /// Probability of a reset after reading the request, before any answer
    #[arg(long, value_name = "P")]
    reset_before: Option<f64>,
    /// Probability of a reset in the middle of the answer's body
    #[arg(long, value_name = "P")]
    reset_mid_body: Option<f64>,
    /// Probability of an answer held back
    #[arg(long, value_name = "P")]
    stall: Option<f64>,
    /// Shortest stall, milliseconds
    #[arg(long, value_name = "MS")]
    stall_min_ms: Option<u64>,
    /// Longest stall, milliseconds
    #[arg(long, value_name = "MS")]
    stall_max_ms: Option<u64>,
    /// Outage (every connection reset) while this file exists
    #[arg(long, value_name = "PATH")]
    outage_file: Option<PathBuf>,
    /// Write the counters here as JSON, every 200 ms and at exit
    #[arg(long, value_name = "PATH")]
    stats_file: Option<PathBuf>,
    /// Do not log each fault on stderr
    #[arg(long)]
    quiet: bool,
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

fn mix_of(args: &Args) -> Result<FaultMix, String> {
    let mut mix = match args.mix {
        Mix::Issue14 => FaultMix::issue_14(),
        Mix::None => FaultMix::none(),
    };
    let fields = [
        (args.error_500, &mut mix.error_500, "--error-500"),
        (args.error_503, &mut mix.error_503, "--error-503"),
        (args.reset_before, &mut mix.reset_before, "--reset-before"),
        (
            args.reset_mid_body,
            &mut mix.reset_mid_body,
            "--reset-mid-body",
        ),
        (args.stall, &mut mix.stall, "--stall"),
    ];
    for (given, field, flag) in fields {
        if let Some(p) = given {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!("{flag} {p}: a probability is between 0 and 1"));
            }
            *field = p;
        }
    }
    if let Some(ms) = args.stall_min_ms {
        mix.stall_min = Duration::from_millis(ms);
    }
    if let Some(ms) = args.stall_max_ms {
        mix.stall_max = Duration::from_millis(ms);
    }
    if mix.stall_max < mix.stall_min {
        return Err("the longest stall is shorter than the shortest".into());
    }
    let total = mix.error_500 + mix.error_503 + mix.reset_before + mix.reset_mid_body + mix.stall;
    if total > 1.0 + 1e-9 {
        return Err(format!("the probabilities add up to {total} (more than 1)"));
    }
    Ok(mix)
}

/// Writes `text` to `path` through a temporary file and a rename (a reader never sees half).
fn write_atomic(path: &Path, text: &str) {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, path);
    }
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let mix = match mix_of(&args) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("fault-proxy: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let proxy = match FaultProxy::bind(&args.listen, &args.upstream, mix, args.seed) {
        Ok(p) => p,
        Err(e) => {
            eprintln!(
                "fault-proxy: cannot listen on {} for {}: {e}",
                args.listen, args.upstream
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    proxy.log_faults(!args.quiet);
    let handler = on_signal as extern "C" fn(libc::c_int);
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(libc::SIGTERM, handler as libc::sighandler_t);
        libc::signal(libc::SIGINT, handler as libc::sighandler_t);
    }
    eprintln!(
        "fault-proxy: {} -> {}, seed {}, {mix:?}",
        args.listen, args.upstream, args.seed
    );
    let stats_json = |p: &FaultProxy| {
        let s = p.stats().to_json();
        // Add the run's settings to the counters' object.
        format!(
            "{{\"seed\":{},\"outage\":{},{}\n",
            args.seed,
            p.outage(),
            s.strip_prefix('{').unwrap_or(&s)
        )
    };
    let mut tick = 0u64;
    while !STOP.load(Ordering::SeqCst) {
        if let Some(f) = &args.outage_file {
            let on = f.exists();
            if on != proxy.outage() {
                eprintln!("fault-proxy: outage {}", if on { "on" } else { "off" });
                proxy.set_outage(on);
            }
        }
        if tick.is_multiple_of(2) {
            if let Some(f) = &args.stats_file {
                write_atomic(f, &stats_json(&proxy));
            }
        }
        tick += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    if let Some(f) = &args.stats_file {
        write_atomic(f, &stats_json(&proxy));
    }
    let s = proxy.stats();
    eprintln!(
        "fault-proxy: exit after {} requests ({} forwarded, {} faults)",
        s.requests,
        s.forwarded,
        s.faults()
    );
    std::process::ExitCode::SUCCESS
}
