//! Serde structs that mirror the TOML files exactly, spans kept.
//!
//! Nothing here has defaults or meaning; `resolve` turns these into the
//! model. Every struct refuses unknown keys. Kind-specific tables (balancers,
//! sources, steps, probes, gates) are flat structs with every possible key,
//! so that `resolve` can say "`socket` is not a key of a command balancer"
//! with a span, which an internally tagged serde enum cannot.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

use super::values::{IntOrString, OneOrMany, PathOrOff, VarValue};

pub type S<T> = Spanned<T>;
pub type RawVars = IndexMap<S<String>, S<VarValue>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawInventory {
    pub defaults: Option<RawDefaults>,
    pub vars: Option<RawVars>,
    pub balancers: Option<IndexMap<S<String>, S<RawBalancer>>>,
    pub zones: Option<IndexMap<S<String>, S<RawZone>>>,
    pub sources: Option<IndexMap<S<String>, S<RawSource>>>,
    pub state: Option<S<RawState>>,
}

/// Only the inventory's `[state]`, for commands that need nothing else of
/// it (`status`, `unlock`): the rest of the file is not looked at, so a
/// mistake elsewhere does not keep an operator from a stale lock.
#[derive(Debug, Deserialize)]
pub struct RawStateOnly {
    pub state: Option<S<RawState>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub backend: Option<S<String>>,
    // local
    pub dir: Option<S<String>>,
    // s3
    pub bucket: Option<S<String>>,
    pub prefix: Option<S<String>>,
    pub region: Option<S<String>>,
    pub endpoint_url: Option<S<String>>,
    pub lease: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub user: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub identity_file: Option<S<String>>,
    pub certificate_file: Option<S<String>>,
    pub known_hosts: Option<S<String>>,
    pub jump: Option<S<String>>,
    pub sudo: Option<S<bool>>,
    pub step_lock: Option<S<PathOrOff>>,
    pub balancer: Option<S<OneOrMany>>,
    pub ssh_config: Option<S<PathOrOff>>,
    pub max_handshakes: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    pub hosts: S<Vec<S<RawHost>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHost {
    pub name: S<String>,
    pub address: Option<S<String>>,
    pub port: Option<S<i64>>,
    pub user: Option<S<String>>,
    pub identity_file: Option<S<String>>,
    pub certificate_file: Option<S<String>>,
    pub known_hosts: Option<S<String>>,
    pub jump: Option<S<String>>,
    pub sudo: Option<S<bool>>,
    pub step_lock: Option<S<PathOrOff>>,
    pub balancer: Option<S<OneOrMany>>,
    pub lb_server: Option<S<String>>,
    pub target_id: Option<S<String>>,
    pub vars: Option<RawVars>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBalancer {
    pub kind: S<String>,
    // haproxy
    pub socket: Option<S<String>>,
    pub address: Option<S<String>>,
    pub backend: Option<S<String>>,
    // aws-target-group
    pub target_group_arn: Option<S<String>>,
    pub target_group_arns: Option<S<Vec<S<String>>>>,
    pub discover: Option<S<bool>>,
    pub region: Option<S<String>>,
    pub endpoint_url: Option<S<String>>,
    pub port: Option<S<i64>>,
    // command
    pub drain: Option<S<String>>,
    pub undrain: Option<S<String>>,
    pub status: Option<S<String>>,
    pub ssh: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    pub kind: S<String>,
    // aws-asg
    pub name: Option<S<OneOrMany>>,
    // aws-ec2
    pub filters: Option<S<IndexMap<String, OneOrMany>>>,
    pub region: Option<S<String>>,
    pub endpoint_url: Option<S<String>>,
    pub address: Option<S<String>>,
    // settings for every discovered host
    pub port: Option<S<i64>>,
    pub user: Option<S<String>>,
    pub identity_file: Option<S<String>>,
    pub certificate_file: Option<S<String>>,
    pub known_hosts: Option<S<String>>,
    pub jump: Option<S<String>>,
    pub sudo: Option<S<bool>>,
    pub step_lock: Option<S<PathOrOff>>,
    pub balancer: Option<S<OneOrMany>>,
    pub vars: Option<RawVars>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlaybook {
    pub name: S<String>,
    pub vars: Option<RawVars>,
    pub strategy: Option<RawStrategy>,
    pub window: Option<S<RawWindow>>,
    pub drain: Option<RawDrain>,
    pub steps: Option<S<Vec<S<RawStep>>>>,
    pub health: Option<RawHealth>,
    pub probes: Option<Vec<S<RawProbe>>>,
    pub gates: Option<Vec<S<RawGate>>>,
    pub rollback: Option<Vec<S<RawStep>>>,
    pub notify: Option<RawNotify>,
    pub asg_standby: Option<S<bool>>,
    pub watch: Option<S<RawWatch>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWatch {
    #[serde(rename = "for")]
    pub duration: Option<S<String>>,
    pub source: Option<S<String>>,
    pub prometheus: Option<S<String>>,
    pub errors: Option<S<String>>,
    pub requests: Option<S<String>>,
    pub min_requests: Option<S<i64>>,
    pub max_error_ratio: Option<S<String>>,
    pub baseline_factor: Option<S<f64>>,
    pub max_latency_factor: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStrategy {
    pub batch: Option<S<Vec<S<IntOrString>>>>,
    pub zones: Option<S<String>>,
    pub zone_order: Option<Vec<S<String>>>,
    pub max_unavailable: Option<S<IntOrString>>,
    pub max_unavailable_per_zone: Option<S<IntOrString>>,
    pub pause: Option<S<String>>,
    pub max_failed: Option<S<IntOrString>>,
    pub max_failed_per_zone: Option<S<IntOrString>>,
    pub on_failure: Option<S<String>>,
    pub min_healthy: Option<S<IntOrString>>,
    pub skip_if: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWindow {
    pub days: Option<Vec<S<String>>>,
    pub start: S<String>,
    pub end: S<String>,
    pub timezone: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDrain {
    pub timeout: Option<S<String>>,
    pub settle: Option<S<String>>,
    pub return_timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawStep {
    pub name: Option<S<String>>,
    pub run: Option<S<String>>,
    pub reboot: Option<S<bool>>,
    pub replace: Option<S<String>>,
    pub surge: Option<S<bool>>,
    pub only_if: Option<S<String>>,
    pub timeout: Option<S<String>>,
    pub retries: Option<S<i64>>,
    pub estimate: Option<S<String>>,
    pub reboot_command: Option<S<String>>,
    pub boot_id_file: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHealth {
    pub interval: Option<S<String>>,
    pub healthy_after: Option<S<i64>>,
    pub timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub name: Option<S<String>>,
    pub http: Option<S<String>>,
    pub tcp: Option<S<String>>,
    pub command: Option<S<String>>,
    pub expect_status: Option<S<i64>>,
    pub expect_body: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGate {
    pub name: Option<S<String>>,
    pub command: Option<S<String>>,
    pub http: Option<S<String>>,
    pub expect_status: Option<S<i64>>,
    pub expect_body: Option<S<String>>,
    pub prometheus: Option<S<String>>,
    pub query: Option<S<String>>,
    pub max: Option<S<f64>>,
    pub min: Option<S<f64>>,
    pub timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNotify {
    pub webhooks: Option<Vec<S<String>>>,
}
