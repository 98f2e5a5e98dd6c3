//! `[sources]`: hosts discovered in AWS, merged into the config's zones.

use super::AppError;
use crate::config::diagnostics::Diagnostic;
use crate::config::load::Config;
use crate::transport::aws::discovery::{discover, into_hosts};

/// Discovers every source's hosts and adds them to `config`; returns one
/// line per source for the plan ("web (aws-asg web-asg): 6 hosts").
pub async fn resolve_sources(config: &mut Config) -> Result<Vec<String>, AppError> {
    let sources = std::mem::take(&mut config.inventory.sources);
    let mut lines = Vec::new();
    for source in &sources {
        let found = discover(source).await.map_err(|error| {
            AppError::Invalid(
                Diagnostic::plain(format!("source {}: {error}", source.name))
                    .with_help("check the source's region, endpoint and credentials, or plan with --offline")
                    .into(),
            )
        })?;
        let count = found.len();
        let mut zones: Vec<String> = found.iter().map(|h| h.zone.clone()).collect();
        zones.dedup();
        config
            .add_discovered(into_hosts(source, found))
            .map_err(|message| AppError::Invalid(Diagnostic::plain(message).into()))?;
        lines.push(format!(
            "{} ({}): {count} hosts discovered in {}",
            source.name,
            source.kind.describe(),
            if zones.is_empty() {
                "no zone".to_owned()
            } else {
                zones.join(", ")
            }
        ));
    }
    Ok(lines)
}
