//! Measures what `fleetroll plan` does over generated fleets of 1,000,
//! 10,000 and 100,000 hosts, and whether it grows linearly.
//!
//! ```text
//! cargo run --release --example plan_bench                  # 1,000, 10,000 and 100,000 hosts
//! cargo run --release --example plan_bench -- 50000         # one size
//! cargo run --release --example plan_bench -- 10000 --write DIR
//! ```
//!
//! Each size goes through the library functions the CLI calls, in the same
//! order: `config::load::load` (read both files from disk, parse, resolve,
//! check, apply ssh_config to every host), then `select` and
//! `plan_batches`, then the table `plan` prints (and, timed apart, its
//! `--json`). The inventory has 10 zones behind one HAProxy balancer and
//! its own ssh_config file; the playbook has a canary, percentage batches,
//! `max_unavailable` and per-zone caps.
//!
//! Prints the best and median of several rounds per stage, then the ratio
//! of the 100,000-host time to the 10,000-host one: near 10 when every
//! check is linear, near 100 when one compares every host with every
//! other. The total is also given in CPU time (Linux's schedstat): on a
//! machine shared with other work, a 100,000-host round is preempted more
//! often than a short one, which inflates its wall time and the ratio. With `--write DIR` the files are left in DIR, so that the real
//! binary can be timed on them:
//! `time target/release/fleetroll plan -i DIR/inventory.toml -p DIR/playbook.toml`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleetroll::config::load::{LoadOptions, load};
use fleetroll::plan::batches::plan_batches;
use fleetroll::plan::render::{PlanView, render_human, render_json};
use fleetroll::plan::select::select;

const SIZES: [usize; 3] = [1_000, 10_000, 100_000];
const ZONES: usize = 10;
/// At most this many rounds per size …
const ROUNDS: usize = 7;
/// … and no new round once a size has taken this long (a quadratic build
/// takes minutes for one round of 100,000 hosts).
const BUDGET: Duration = Duration::from_secs(5);

fn main() {
    let mut args = std::env::args().skip(1);
    let mut sizes = SIZES.to_vec();
    let mut write_to: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--write" => write_to = Some(PathBuf::from(args.next().expect("--write DIR"))),
            number => sizes = vec![number.parse().expect("HOSTS must be a number")],
        }
    }
    let scratch = tempfile::tempdir().expect("temporary directory");
    let mut totals = Vec::new();
    for &hosts in &sizes {
        let dir = match (&write_to, sizes.len()) {
            (Some(dir), 1) => dir.clone(),
            (Some(dir), _) => dir.join(hosts.to_string()),
            (None, _) => scratch.path().join(hosts.to_string()),
        };
        write_files(&dir, hosts);
        let stages = bench(&dir);
        print_stages(hosts, &dir, &stages);
        totals.push((hosts, best(&stages.total), best(&stages.total_cpu)));
    }
    print_ratios(&totals);
}

/// Each stage's time, one entry per round.
#[derive(Debug, Default)]
struct Stages {
    load: Vec<Duration>,
    plan: Vec<Duration>,
    table: Vec<Duration>,
    json: Vec<Duration>,
    /// load + plan + table: what `fleetroll plan` spends.
    total: Vec<Duration>,
    /// The same rounds' time on a CPU; empty where schedstat is missing.
    total_cpu: Vec<Duration>,
    batches: usize,
    table_bytes: usize,
}

fn bench(dir: &Path) -> Stages {
    let inventory = dir.join("inventory.toml");
    let playbook = dir.join("playbook.toml");
    // HOME is the scratch directory: the inventory names its own
    // ssh_config, and nothing of the machine's may change the figures.
    let options = LoadOptions {
        overrides: &[],
        home: Some(dir),
        read_ssh_config: true,
    };
    let mut stages = Stages::default();
    let started_size = Instant::now();
    while stages.total.len() < ROUNDS
        && (stages.total.is_empty() || started_size.elapsed() < BUDGET)
    {
        let started_cpu = cpu_time();
        let started = Instant::now();
        let config = load(&inventory, &playbook, &options)
            .unwrap_or_else(|diagnostics| panic!("{}", diagnostics.render(false)));
        let loaded = Instant::now();
        let input = select(&config.inventory, &[]).expect("select every host");
        let plan = plan_batches(&input, &config.playbook.strategy).expect("plan");
        let planned = Instant::now();
        let mut view = PlanView::new(&plan, &config.playbook, &config.inventory);
        view.now = Some(jiff::Timestamp::now());
        stages.table_bytes = render_human(&view).len();
        let rendered = Instant::now();
        let rendered_cpu = cpu_time();
        std::hint::black_box(render_json(&view));
        let json_rendered = Instant::now();
        stages.batches = plan.batches.len();
        stages.load.push(loaded - started);
        stages.plan.push(planned - loaded);
        stages.table.push(rendered - planned);
        stages.json.push(json_rendered - rendered);
        stages.total.push(rendered - started);
        if let (Some(start), Some(end)) = (started_cpu, rendered_cpu) {
            stages.total_cpu.push(end - start);
        }
    }
    stages
}

/// How long this thread has run on a CPU, from `/proc/thread-self/schedstat`
/// (nanoseconds, first field); `None` off Linux.
fn cpu_time() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = text.split_whitespace().next()?.parse().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn best(times: &[Duration]) -> Duration {
    times.iter().copied().min().unwrap_or_default()
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted.get(sorted.len() / 2).copied().unwrap_or_default()
}

fn print_stages(hosts: usize, dir: &Path, stages: &Stages) {
    let inventory_bytes = std::fs::metadata(dir.join("inventory.toml")).map_or(0, |m| m.len());
    println!(
        "\nplan over {hosts} hosts in {ZONES} zones: {} batches, {} KiB inventory, {} KiB table, {} rounds",
        stages.batches,
        inventory_bytes / 1024,
        stages.table_bytes / 1024,
        stages.total.len(),
    );
    println!("  {:<30} {:>11} {:>11}", "stage", "best", "median");
    for (stage, times) in [
        ("load (read, parse, check, ssh)", &stages.load),
        ("select + plan", &stages.plan),
        ("render table", &stages.table),
        ("total (what `plan` spends)", &stages.total),
        ("total, CPU time", &stages.total_cpu),
        ("render --json (apart)", &stages.json),
    ] {
        println!(
            "  {stage:<30} {:>9.3}ms {:>9.3}ms",
            best(times).as_secs_f64() * 1e3,
            median(times).as_secs_f64() * 1e3
        );
    }
}

/// Each size's best total (wall, CPU) against the previous size's: 10×
/// the hosts should take about 10× the time.
fn print_ratios(totals: &[(usize, Duration, Duration)]) {
    if totals.len() < 2 {
        return;
    }
    println!();
    let ratio = |large: Duration, small: Duration| large.as_secs_f64() / small.as_secs_f64();
    for pair in totals.windows(2) {
        let [
            (small, small_wall, small_cpu),
            (large, large_wall, large_cpu),
        ] = pair
        else {
            continue;
        };
        println!(
            "ratio {large}/{small} hosts: {:.1} wall, {:.1} CPU (best totals; {:.1} would be linear)",
            ratio(*large_wall, *small_wall),
            ratio(*large_cpu, *small_cpu),
            *large as f64 / *small as f64
        );
    }
}

fn write_files(dir: &Path, hosts: usize) {
    std::fs::create_dir_all(dir).expect("create the output directory");
    std::fs::write(dir.join("inventory.toml"), generate_inventory(hosts)).expect("write inventory");
    std::fs::write(dir.join("playbook.toml"), PLAYBOOK).expect("write playbook");
    std::fs::write(dir.join("ssh_config"), SSH_CONFIG).expect("write ssh_config");
}

fn generate_inventory(hosts: usize) -> String {
    let mut out = String::from(
        "[defaults]\nuser = \"deploy\"\nbalancer = \"web\"\nsudo = true\nssh_config = \"ssh_config\"\n\n\
         [vars]\nservice = \"myapp\"\n\n\
         [balancers.web]\nkind = \"haproxy\"\nsocket = \"/run/haproxy/admin.sock\"\nbackend = \"app\"\n",
    );
    let per_zone = hosts.div_ceil(ZONES);
    for zone in 0..ZONES {
        let _ = write!(out, "\n[zones.zone-{zone:02}]\nhosts = [\n");
        for index in zone * per_zone..((zone + 1) * per_zone).min(hosts) {
            let _ = write!(
                out,
                "  {{ name = \"web-{index:06}\", address = \"10.{}.{}.{}\"",
                zone,
                index / 250 % 250,
                index % 250 + 1
            );
            // A few hosts with keys of their own, as real inventories have.
            if index % 50 == 0 {
                let _ = write!(out, ", port = 2222, vars = {{ role = \"canary\" }}");
            }
            out.push_str(" },\n");
        }
        out.push_str("]\n");
    }
    out
}

const SSH_CONFIG: &str = "Host web-*
    ServerAliveInterval 30
    ConnectTimeout 10

Host *
    IdentityFile ~/.ssh/id_ed25519
";

const PLAYBOOK: &str = r#"name = "bench"

[vars]
version = "2.0.0"

[strategy]
batch = [1, "1%", "10%"]
zones = "spread"
max_unavailable = "10%"
max_unavailable_per_zone = "20%"
max_failed = "1%"
skip_if = "grep -qx {vars.version} /etc/{vars.service}/VERSION"

[[steps]]
run = "apt-get install -y {vars.service}={vars.version}"
timeout = "5m"

[[probes]]
http = "http://{address}:8080/healthz"
expect_body = "{vars.version}"

[[probes]]
command = "systemctl is-active {vars.service}"
"#;
