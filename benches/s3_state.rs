//! The cost of S3 state: the same 30-host rollout (real sshd hosts behind
//! one HAProxy, batches of 5) with its lock and journal in a local
//! directory and in a bucket of a moto_server on loopback, alternating
//! which goes first. A benchmark, not a test: it prints wall times, the
//! ratio, and the objects one S3 run wrote.
//!
//! `cargo bench --bench s3_state` (as root, after `bash tests/setup.sh`).
//! `FLEETROLL_BENCH_ROUNDS=N` runs N rounds (2 by default).

mod common;
#[path = "../tests/fixture/mod.rs"]
#[expect(
    dead_code,
    unused_imports,
    reason = "the fixture serves several targets; the bench uses a subset"
)]
mod fixture;
#[path = "../tests/aws/moto.rs"]
#[expect(
    dead_code,
    reason = "the bench uses moto_server, not the failure proxy"
)]
mod moto;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use fixture::{Fleet, FleetSpec, InventoryOptions};

const ZONES: usize = 3;
const PER_ZONE: usize = 10;
const BUCKET: &str = "ops-fleetroll";

fn main() {
    let rounds: usize = std::env::var("FLEETROLL_BENCH_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    let moto = runtime.block_on(moto::Moto::start());
    let client = {
        let config = runtime.block_on(moto.config());
        aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config)
                .force_path_style(true)
                .build(),
        )
    };
    runtime
        .block_on(client.create_bucket().bucket(BUCKET).send())
        .expect("create the bucket");
    let fleet = Fleet::start(FleetSpec::new(ZONES, PER_ZONE));
    println!("fleet of {} hosts ready", fleet.hosts().len());

    let local = tempfile::tempdir().expect("a scratch directory");
    fleet.write_inventory(
        &local.path().join("inventory.toml"),
        &InventoryOptions::default(),
    );
    let shared = tempfile::tempdir().expect("a scratch directory");
    let inventory = shared.path().join("inventory.toml");
    fleet.write_inventory(&inventory, &InventoryOptions::default());
    let mut text = std::fs::read_to_string(&inventory).expect("read the inventory");
    text.push_str(&format!(
        "\n[state]\nbackend = \"s3\"\nbucket = \"{BUCKET}\"\nprefix = \"bench/\"\n\
         region = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        moto.endpoint
    ));
    std::fs::write(&inventory, text).expect("write the inventory");

    let mut version = 1;
    let (mut local_total, mut s3_total) = (Duration::ZERO, Duration::ZERO);
    for round in 0..rounds {
        for s3_turn in [round % 2 == 1, round % 2 == 0] {
            version += 1;
            let version = format!("{version}.0");
            if s3_turn {
                let took = run(&fleet, shared.path(), &version);
                println!("round {round}: S3 state    {took:.2?}");
                s3_total += took;
            } else {
                let took = run(&fleet, local.path(), &version);
                println!("round {round}: local state {took:.2?}");
                local_total += took;
            }
        }
    }
    let per_round = |total: Duration| total / u32::try_from(rounds).unwrap_or(1);
    println!(
        "mean over {rounds} round(s): local state {:.2?}, S3 state {:.2?}, ratio S3/local {:.3}",
        per_round(local_total),
        per_round(s3_total),
        s3_total.as_secs_f64() / local_total.as_secs_f64()
    );
    let keys: Vec<String> = runtime.block_on(async {
        let mut pages = client
            .list_objects_v2()
            .bucket(BUCKET)
            .into_paginator()
            .send();
        let mut keys = Vec::new();
        while let Some(page) = pages.next().await {
            let page = page.expect("list the bucket");
            keys.extend(
                page.contents()
                    .iter()
                    .filter_map(|o| o.key().map(str::to_owned)),
            );
        }
        keys
    });
    let runs: std::collections::BTreeSet<&str> = keys
        .iter()
        .filter_map(|k| k.strip_prefix("bench/runs/")?.split('/').next())
        .collect();
    println!(
        "bucket: {} objects: {} runs, {} segments, and {}",
        keys.len(),
        runs.len(),
        keys.iter().filter(|k| k.ends_with(".jsonl")).count(),
        keys.iter()
            .filter(|k| !k.ends_with(".jsonl"))
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join(", ")
    );
}

fn run(fleet: &Fleet, dir: &Path, version: &str) -> Duration {
    std::fs::write(dir.join("playbook.toml"), common::playbook(version, 5))
        .expect("write playbook.toml");
    let mut command = Command::new(env!("CARGO_BIN_EXE_fleetroll"));
    command
        .args([
            "run",
            "-i",
            "inventory.toml",
            "-p",
            "playbook.toml",
            "-q",
            "--json",
        ])
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let started = Instant::now();
    let started_at = jiff::Timestamp::now();
    let output = command.output().expect("run fleetroll");
    let took = started.elapsed();
    assert!(
        output.status.success(),
        "fleetroll failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    for host in fleet.hosts() {
        assert_eq!(host.version(), version, "{}", host.name);
    }
    print_phases(started_at, &String::from_utf8_lossy(&output.stdout), took);
    took
}

/// Where the time went: from the process's start to `run_started`, the
/// batches, and from `run_finished` to the exit.
fn print_phases(started_at: jiff::Timestamp, events: &str, took: Duration) {
    let times: Vec<(String, jiff::Timestamp)> = events
        .lines()
        .filter_map(|line| {
            let event: serde_json::Value = serde_json::from_str(line).ok()?;
            Some((
                event["event"].as_str()?.to_owned(),
                event["ts"].as_str()?.parse().ok()?,
            ))
        })
        .collect();
    let at = |name: &str| times.iter().find(|(n, _)| n == name).map(|(_, t)| *t);
    let last = |name: &str| times.iter().rev().find(|(n, _)| n == name).map(|(_, t)| *t);
    if let (Some(first), Some(end)) = (at("run_started"), last("run_finished")) {
        let seconds =
            |from: jiff::Timestamp, to: jiff::Timestamp| to.duration_since(from).as_secs_f64();
        println!(
            "    start {:.2} s, rollout {:.2} s, end {:.2} s",
            seconds(started_at, first),
            seconds(first, end),
            took.as_secs_f64() - seconds(started_at, end)
        );
    }
}
