//! Measures `plan` over a generated fleet: load + resolve, plan, render.
//!
//! ```text
//! cargo run --release --example plan_bench -- [HOSTS] [--write DIR]
//! ```
//!
//! Prints the best and median of several rounds for each stage. With
//! `--write DIR` it also leaves the generated inventory and playbook in DIR,
//! so that the real binary can be timed on them:
//! `time target/release/fleetroll plan -i DIR/inventory.toml -p DIR/playbook.toml`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use fleetroll::config::load::{LoadOptions, load_from_text};
use fleetroll::config::source::SourceFile;
use fleetroll::plan::batches::plan_batches;
use fleetroll::plan::render::{PlanView, render_human, render_json};
use fleetroll::plan::select::select;

const ZONES: usize = 10;
const ROUNDS: usize = 7;

fn main() {
    let mut args = std::env::args().skip(1);
    let mut hosts = 10_000usize;
    let mut write_to: Option<PathBuf> = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--write" => write_to = args.next().map(PathBuf::from),
            number => hosts = number.parse().expect("HOSTS must be a number"),
        }
    }
    let inventory = generate_inventory(hosts);
    let playbook = PLAYBOOK.to_owned();
    if let Some(dir) = &write_to {
        std::fs::create_dir_all(dir).expect("create output directory");
        std::fs::write(dir.join("inventory.toml"), &inventory).expect("write inventory");
        std::fs::write(dir.join("playbook.toml"), &playbook).expect("write playbook");
    }

    let mut load_times = Vec::new();
    let mut plan_times = Vec::new();
    let mut render_times = Vec::new();
    let mut batches = 0;
    let mut output_bytes = 0;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        let config = load_from_text(
            SourceFile::new("inventory.toml", inventory.clone()),
            SourceFile::new("playbook.toml", playbook.clone()),
            Path::new("."),
            &LoadOptions::default(),
        )
        .unwrap_or_else(|diagnostics| panic!("{}", diagnostics.render(false)));
        let loaded = Instant::now();
        let input = select(&config.inventory, &[]).expect("select every host");
        let plan = plan_batches(&input, &config.playbook.strategy).expect("plan");
        let planned = Instant::now();
        let view = PlanView::new(&plan, &config.playbook, &config.inventory);
        output_bytes = render_human(&view).len() + render_json(&view).len();
        let rendered = Instant::now();
        batches = plan.batches.len();
        load_times.push(loaded - started);
        plan_times.push(planned - loaded);
        render_times.push(rendered - planned);
    }
    let total: Vec<Duration> = (0..ROUNDS)
        .map(|i| load_times[i] + plan_times[i] + render_times[i])
        .collect();
    println!(
        "plan over {hosts} hosts in {ZONES} zones: {batches} batches, {} KiB inventory, {} KiB output",
        inventory.len() / 1024,
        output_bytes / 1024
    );
    println!("{:<22} {:>10} {:>10}", "stage", "best", "median");
    for (stage, times) in [
        ("load + resolve + check", &load_times),
        ("plan", &plan_times),
        ("render (table + json)", &render_times),
        ("total", &total),
    ] {
        let mut sorted = times.clone();
        sorted.sort();
        println!(
            "{stage:<22} {:>8.3}ms {:>8.3}ms",
            sorted[0].as_secs_f64() * 1e3,
            sorted[ROUNDS / 2].as_secs_f64() * 1e3
        );
    }
}

fn generate_inventory(hosts: usize) -> String {
    let mut out = String::from(
        "[defaults]\nuser = \"deploy\"\nbalancer = \"web\"\n\n[vars]\nservice = \"myapp\"\n\n\
         [balancers.web]\nkind = \"haproxy\"\nsocket = \"/run/haproxy/admin.sock\"\nbackend = \"app\"\n",
    );
    let per_zone = hosts.div_ceil(ZONES);
    for zone in 0..ZONES {
        let _ = write!(out, "\n[zones.zone-{zone:02}]\nhosts = [\n");
        for index in zone * per_zone..((zone + 1) * per_zone).min(hosts) {
            let _ = writeln!(
                out,
                "  {{ name = \"web-{index:05}\", address = \"10.{}.{}.{}\" }},",
                zone,
                index / 250 % 250,
                index % 250 + 1
            );
        }
        out.push_str("]\n");
    }
    out
}

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
