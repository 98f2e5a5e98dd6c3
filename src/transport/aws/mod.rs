//! AWS: ELBv2 target groups as balancers, EC2 and Auto Scaling groups as
//! host sources, and the Auto Scaling calls behind instance replacement.
//!
//! Every client is built from [`config::sdk_config`], which bounds each call
//! and its retries.

pub mod autoscaling;
pub mod config;
pub mod discovery;
pub mod elbv2;
pub mod target_health;

pub use autoscaling::{AsgError, AutoScaling, GroupInfo, GroupInstance, NewInstance, RefreshCheck};
pub use config::{AwsError, sdk_config, sdk_config_with};
pub use discovery::{DiscoveredHost, DiscoveryError, discover, discover_with, into_hosts};
pub use elbv2::{Registration, TargetGroupBalancer};
