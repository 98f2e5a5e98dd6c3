//! `[sources]`: hosts discovered in AWS, merged into the config's zones.

use super::AppError;
use crate::config::diagnostics::Diagnostic;
use crate::config::load::Config;
use crate::model::inventory::NAME_MAX;
use crate::transport::aws::discovery::{DiscoveredHost, discover, into_hosts};

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
        config.host_warnings.extend(
            found
                .iter()
                .filter_map(|host| refused_name_warning(&source.name, host)),
        );
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

/// Prints what discovery warned about, for commands that journal nothing
/// (`plan`, `run --dry-run`); a run journals it as warnings instead.
pub fn print_host_warnings(config: &Config, quiet: bool) {
    if quiet {
        return;
    }
    for warning in &config.host_warnings {
        tracing::warn!("{warning}");
    }
}

/// The warning for an instance whose `Name` tag could not name its host.
/// The tag is shown escaped (`{:?}`): it may hold a newline.
fn refused_name_warning(source: &str, host: &DiscoveredHost) -> Option<String> {
    let tag = host.refused_name.as_ref()?;
    Some(format!(
        "source {source}: instance {} is tagged Name = {tag:?}, which cannot name a host \
         (letters, digits, `.`, `_` and `-`, at most {NAME_MAX} characters); it is named {} instead",
        host.instance_id, host.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refused_name_tag_is_named_escaped_with_its_instance() {
        let mut host = DiscoveredHost {
            name: "i-0abc".into(),
            instance_id: "i-0abc".into(),
            zone: "eu-west-1a".into(),
            address: "10.0.0.1".into(),
            asg: None,
            private_ip: None,
            refused_name: None,
        };
        assert_eq!(refused_name_warning("web", &host), None);
        host.refused_name = Some("web-01\nset server app/web-02 state ready".into());
        assert_eq!(
            refused_name_warning("web", &host).unwrap(),
            "source web: instance i-0abc is tagged Name = \"web-01\\nset server app/web-02 state ready\", \
             which cannot name a host (letters, digits, `.`, `_` and `-`, at most 253 characters); \
             it is named i-0abc instead"
        );
    }
}
