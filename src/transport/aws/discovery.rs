//! Dynamic hosts: the running EC2 instances an inventory `[sources.*]` names.
//!
//! `aws-ec2` sources list running instances by the source's filters;
//! `aws-asg` sources list the InService and Standby members of Auto Scaling
//! groups (Standby so that a host fleetroll itself stood by before an
//! interruption is still found on resume) and read their addresses from EC2.
//! The result is sorted by zone, then name, so plans are deterministic.

use std::collections::{BTreeMap, HashMap};

use aws_config::SdkConfig;
use aws_sdk_autoscaling::types::LifecycleState;
use aws_sdk_ec2::types::{Filter, Instance};

use super::config::{AwsError, sdk_config};
use crate::model::inventory::{AddressKind, Host, Source, SourceKind, is_safe_name};

/// Values per EC2 filter: DescribeInstances accepts at most 200.
const MAX_FILTER_VALUES: usize = 200;
/// The tag AWS puts on every instance an Auto Scaling group launches.
const ASG_TAG: &str = "aws:autoscaling:groupName";

/// One instance found by a source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiscoveredHost {
    /// The `Name` tag, or the instance id; unique within one discovery.
    pub name: String,
    pub instance_id: String,
    /// The availability zone, which is the host's zone in the plan.
    pub zone: String,
    /// The address the source's `address` setting picks.
    pub address: String,
    /// The Auto Scaling group the instance belongs to, if any.
    pub asg: Option<String>,
    /// Its private IP address (its id in `ip` target groups).
    pub private_ip: Option<String>,
    /// The `Name` tag, when it could not name a host and the instance id
    /// stands in for it (see [`is_safe_name`]).
    pub refused_name: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiscoveryError {
    #[error("source {source_name}: {error}")]
    Api {
        source_name: String,
        error: AwsError,
    },
    #[error("source {source_name}: Auto Scaling group {group} not found")]
    GroupNotFound { source_name: String, group: String },
    #[error("source {source_name}: instance {instance_id} has no {what} (address = \"{setting}\")")]
    NoAddress {
        source_name: String,
        instance_id: String,
        what: &'static str,
        setting: &'static str,
    },
}

impl DiscoveryError {
    /// Whether asking again later may succeed (throttling, timeouts).
    pub fn retryable(&self) -> bool {
        matches!(self, DiscoveryError::Api { error, .. } if error.transient)
    }
}

/// The hosts `source` stands for, with the shared SDK configuration of its
/// region and endpoint.
pub async fn discover(source: &Source) -> Result<Vec<DiscoveredHost>, DiscoveryError> {
    let config = sdk_config(source.region.as_deref(), source.endpoint_url.as_deref()).await;
    discover_with(&config, source).await
}

/// One instance as `source` would have discovered it: after a replacement,
/// the new instance's name and address.
pub async fn describe_instance(
    source: &Source,
    instance_id: &str,
) -> Result<DiscoveredHost, DiscoveryError> {
    let config = sdk_config(source.region.as_deref(), source.endpoint_url.as_deref()).await;
    let ec2 = aws_sdk_ec2::Client::new(&config);
    let filters = vec![
        Filter::builder()
            .name("instance-id")
            .values(instance_id)
            .build(),
    ];
    let instances = describe_instances(&ec2, filters, instance_id)
        .await
        .map_err(|error| DiscoveryError::Api {
            source_name: source.name.clone(),
            error,
        })?;
    hosts_from(source, &instances, &HashMap::new())?
        .into_iter()
        .next()
        .ok_or_else(|| DiscoveryError::GroupNotFound {
            source_name: source.name.clone(),
            group: format!("(instance {instance_id} not found)"),
        })
}

/// [`discover`] with a given SDK configuration.
pub async fn discover_with(
    config: &SdkConfig,
    source: &Source,
) -> Result<Vec<DiscoveredHost>, DiscoveryError> {
    let api = |error| DiscoveryError::Api {
        source_name: source.name.clone(),
        error,
    };
    let ec2 = aws_sdk_ec2::Client::new(config);
    let (instances, groups) = match &source.kind {
        SourceKind::AwsEc2 { filters } => {
            let mut filters: Vec<Filter> = filters
                .iter()
                .map(|(name, values)| {
                    Filter::builder()
                        .name(name)
                        .set_values(Some(values.clone()))
                        .build()
                })
                .collect();
            filters.push(running());
            (
                describe_instances(&ec2, filters, &source.kind.describe())
                    .await
                    .map_err(api)?,
                HashMap::new(),
            )
        }
        SourceKind::AwsAsg { groups } => {
            let autoscaling = aws_sdk_autoscaling::Client::new(config);
            let members = group_members(&autoscaling, groups, &source.name).await?;
            let ids: Vec<String> = members.keys().cloned().collect();
            let mut instances = Vec::new();
            for chunk in ids.chunks(MAX_FILTER_VALUES) {
                let filters = vec![
                    Filter::builder()
                        .name("instance-id")
                        .set_values(Some(chunk.to_vec()))
                        .build(),
                    running(),
                ];
                // A member terminated since the group was described is
                // simply not found: the filter, unlike InstanceIds, does
                // not fail on it.
                let found = describe_instances(&ec2, filters, &groups.join(", "))
                    .await
                    .map_err(api)?;
                instances.extend(found);
            }
            (instances, members)
        }
    };
    hosts_from(source, &instances, &groups)
}

fn running() -> Filter {
    Filter::builder()
        .name("instance-state-name")
        .values("running")
        .build()
}

async fn describe_instances(
    ec2: &aws_sdk_ec2::Client,
    filters: Vec<Filter>,
    subject: &str,
) -> Result<Vec<Instance>, AwsError> {
    let pages: Vec<_> = ec2
        .describe_instances()
        .set_filters(Some(filters))
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| AwsError::from_sdk("DescribeInstances", subject, &e))?;
    Ok(pages
        .iter()
        .flat_map(|page| page.reservations())
        .flat_map(|reservation| reservation.instances())
        .cloned()
        .collect())
}

/// The InService and Standby members of the named groups: instance id to
/// (group name, availability zone). A named group that does not exist is an
/// error, not an empty fleet.
async fn group_members(
    autoscaling: &aws_sdk_autoscaling::Client,
    names: &[String],
    source_name: &str,
) -> Result<HashMap<String, (String, String)>, DiscoveryError> {
    let pages: Vec<_> = autoscaling
        .describe_auto_scaling_groups()
        .set_auto_scaling_group_names(Some(names.to_vec()))
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| DiscoveryError::Api {
            source_name: source_name.to_owned(),
            error: AwsError::from_sdk("DescribeAutoScalingGroups", names.join(", "), &e),
        })?;
    let groups: Vec<_> = pages
        .iter()
        .flat_map(|page| page.auto_scaling_groups())
        .collect();
    let mut members = HashMap::new();
    for name in names {
        let group = groups
            .iter()
            .find(|g| g.auto_scaling_group_name() == Some(name))
            .ok_or_else(|| DiscoveryError::GroupNotFound {
                source_name: source_name.to_owned(),
                group: name.clone(),
            })?;
        for instance in group.instances() {
            let wanted = matches!(
                instance.lifecycle_state(),
                Some(LifecycleState::InService | LifecycleState::Standby)
            );
            if let (true, Some(id)) = (wanted, instance.instance_id()) {
                let zone = instance.availability_zone().unwrap_or_default();
                members.insert(id.to_owned(), (name.clone(), zone.to_owned()));
            }
        }
    }
    Ok(members)
}

fn tag<'a>(instance: &'a Instance, key: &str) -> Option<&'a str> {
    instance
        .tags()
        .iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
        .filter(|v| !v.is_empty())
}

/// Turns described instances into hosts: addresses per the source's
/// setting, zones from their placement, unique names.
pub fn hosts_from(
    source: &Source,
    instances: &[Instance],
    groups: &HashMap<String, (String, String)>,
) -> Result<Vec<DiscoveredHost>, DiscoveryError> {
    let mut found = Vec::with_capacity(instances.len());
    for instance in instances {
        let Some(id) = instance.instance_id() else {
            continue;
        };
        let (what, setting, address) = match source.address {
            AddressKind::PrivateIp => (
                "private IP address",
                "private-ip",
                instance.private_ip_address(),
            ),
            AddressKind::PublicIp => (
                "public IP address",
                "public-ip",
                instance.public_ip_address(),
            ),
            AddressKind::PrivateDns => (
                "private DNS name",
                "private-dns",
                instance.private_dns_name(),
            ),
        };
        let address =
            address
                .filter(|a| !a.is_empty())
                .ok_or_else(|| DiscoveryError::NoAddress {
                    source_name: source.name.clone(),
                    instance_id: id.to_owned(),
                    what,
                    setting,
                })?;
        let member = groups.get(id);
        let zone = instance
            .placement()
            .and_then(|p| p.availability_zone())
            .or(member.map(|(_, zone)| zone.as_str()))
            .unwrap_or_default();
        // A Name tag is written by whoever may tag instances, and becomes
        // the host's name and HAProxy server name: one that is not a plain
        // identifier gives way to the instance id (unique, stable, plain),
        // so the instance is still rolled, and a balancer that knows it by
        // that tag refuses it loudly rather than receiving the tag.
        let name_tag = tag(instance, "Name");
        let refused_name = name_tag.filter(|n| !is_safe_name(n)).map(str::to_owned);
        found.push(DiscoveredHost {
            name: name_tag
                .filter(|n| is_safe_name(n))
                .unwrap_or(id)
                .to_owned(),
            instance_id: id.to_owned(),
            zone: zone.to_owned(),
            address: address.to_owned(),
            private_ip: instance.private_ip_address().map(str::to_owned),
            asg: member
                .map(|(group, _)| group.clone())
                .or_else(|| tag(instance, ASG_TAG).map(str::to_owned)),
            refused_name,
        });
    }
    Ok(finish(found))
}

/// Makes names unique and orders the hosts. An Auto Scaling group copies its
/// `Name` tag to every instance, so a name several instances share gets the
/// instance id appended (`web-i-0abc…`) on each of them; names that are
/// unique stay as they are.
pub fn finish(mut found: Vec<DiscoveredHost>) -> Vec<DiscoveredHost> {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for host in &found {
        *counts.entry(host.name.clone()).or_default() += 1;
    }
    for host in &mut found {
        if counts[&host.name] > 1 && host.name != host.instance_id {
            let shared = format!("{}-{}", host.name, host.instance_id);
            if is_safe_name(&shared) {
                host.name = shared;
            } else {
                // Too long with the id appended: the id alone.
                host.refused_name =
                    Some(std::mem::replace(&mut host.name, host.instance_id.clone()));
            }
        }
    }
    found.sort_by(|a, b| {
        (&a.zone, &a.name, &a.instance_id).cmp(&(&b.zone, &b.name, &b.instance_id))
    });
    found.dedup_by(|a, b| a.instance_id == b.instance_id);
    found
}

/// Model hosts for discovered instances, with the source's SSH settings,
/// balancers and variables. The inventory's fleet variables are not known
/// here: the caller lays the source's `vars` over them, as for static hosts.
pub fn into_hosts(source: &Source, found: Vec<DiscoveredHost>) -> Vec<Host> {
    found
        .into_iter()
        .map(|discovered| Host {
            lb_server: discovered.name.clone(),
            name: discovered.name,
            address: discovered.address,
            zone: discovered.zone,
            ssh: source.ssh.clone(),
            balancers: source.balancers.clone(),
            target_id: Some(discovered.instance_id),
            vars: source.vars.clone(),
            aws: Some(crate::model::inventory::AwsOrigin {
                source: source.clone(),
                asg: discovered.asg,
                private_ip: discovered.private_ip,
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::inventory::SshSettings;
    use aws_sdk_ec2::types::{Placement, Tag};

    fn source(address: AddressKind) -> Source {
        Source {
            name: "web".into(),
            kind: SourceKind::AwsEc2 {
                filters: vec![("tag:Role".into(), vec!["web".into()])],
            },
            region: Some("eu-west-1".into()),
            endpoint_url: None,
            address,
            ssh: SshSettings {
                user: "deploy".into(),
                port: 2222,
                sudo: true,
                ..SshSettings::default()
            },
            balancers: vec!["alb".into()],
            vars: [("role".to_owned(), "web".to_owned())].into(),
        }
    }

    fn instance(id: &str, zone: &str, name: Option<&str>, public: bool) -> Instance {
        let mut builder = Instance::builder()
            .instance_id(id)
            .placement(Placement::builder().availability_zone(zone).build())
            .private_ip_address(format!("10.0.0.{}", id.len()))
            .private_dns_name(format!("ip-{id}.internal"));
        if public {
            builder = builder.public_ip_address("203.0.113.9");
        }
        if let Some(name) = name {
            builder = builder.tags(Tag::builder().key("Name").value(name).build());
        }
        builder.build()
    }

    #[test]
    fn picks_the_configured_address_and_sorts_by_zone_then_name() {
        let instances = [
            instance("i-3", "eu-west-1b", Some("web-03"), true),
            instance("i-1", "eu-west-1a", Some("web-02"), true),
            instance("i-2", "eu-west-1a", None, true),
        ];
        let found = hosts_from(
            &source(AddressKind::PrivateDns),
            &instances,
            &HashMap::new(),
        )
        .unwrap();
        let view: Vec<(&str, &str, &str)> = found
            .iter()
            .map(|h| (h.zone.as_str(), h.name.as_str(), h.address.as_str()))
            .collect();
        assert_eq!(
            view,
            [
                ("eu-west-1a", "i-2", "ip-i-2.internal"),
                ("eu-west-1a", "web-02", "ip-i-1.internal"),
                ("eu-west-1b", "web-03", "ip-i-3.internal"),
            ]
        );
        let found =
            hosts_from(&source(AddressKind::PublicIp), &instances, &HashMap::new()).unwrap();
        assert!(found.iter().all(|h| h.address == "203.0.113.9"));
    }

    #[test]
    fn a_missing_address_is_an_error_naming_the_instance() {
        let instances = [instance("i-1", "eu-west-1a", None, false)];
        let error =
            hosts_from(&source(AddressKind::PublicIp), &instances, &HashMap::new()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "source web: instance i-1 has no public IP address (address = \"public-ip\")"
        );
    }

    #[test]
    fn shared_names_get_the_instance_id() {
        let instances = [
            instance("i-1", "eu-west-1a", Some("web"), false),
            instance("i-2", "eu-west-1b", Some("web"), false),
            instance("i-3", "eu-west-1b", Some("db"), false),
        ];
        let groups = [(
            "i-1".to_owned(),
            ("web-asg".to_owned(), "eu-west-1a".to_owned()),
        )]
        .into();
        let found = hosts_from(&source(AddressKind::PrivateIp), &instances, &groups).unwrap();
        let names: Vec<&str> = found.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["web-i-1", "db", "web-i-2"]);
        assert_eq!(found[0].asg.as_deref(), Some("web-asg"));
        assert_eq!(found[1].asg, None);
    }

    /// A `Name` tag becomes the host's name and its HAProxy server name, and
    /// anyone who can tag an instance can write one: a tag that is not a
    /// plain identifier is replaced by the instance id, and said so.
    #[test]
    fn name_tags_that_are_not_plain_identifiers_give_way_to_the_instance_id() {
        let instances = [
            instance("i-1", "eu-west-1a", Some("web-01;disable server"), false),
            instance(
                "i-2",
                "eu-west-1a",
                Some("web-02\nset server app/web-03 state ready"),
                false,
            ),
            instance("i-3", "eu-west-1a", Some("--all"), false),
            instance("i-4", "eu-west-1a", Some(&"w".repeat(300)), false),
            instance(
                "i-5",
                "eu-west-1a",
                Some("web-05.eu-west-1.internal"),
                false,
            ),
        ];
        let found =
            hosts_from(&source(AddressKind::PrivateIp), &instances, &HashMap::new()).unwrap();
        let names: Vec<(&str, Option<&str>)> = found
            .iter()
            .map(|h| (h.name.as_str(), h.refused_name.as_deref()))
            .collect();
        assert_eq!(
            names,
            [
                ("i-1", Some("web-01;disable server")),
                ("i-2", Some("web-02\nset server app/web-03 state ready")),
                ("i-3", Some("--all")),
                ("i-4", Some("w".repeat(300).as_str())),
                ("web-05.eu-west-1.internal", None),
            ]
        );
    }

    #[test]
    fn hosts_carry_the_source_settings() {
        let src = source(AddressKind::PrivateIp);
        let found = vec![DiscoveredHost {
            name: "web-01".into(),
            instance_id: "i-0abc".into(),
            zone: "eu-west-1c".into(),
            address: "10.0.3.4".into(),
            asg: Some("web-asg".into()),
            private_ip: Some("10.0.3.4".into()),
            refused_name: None,
        }];
        let hosts = into_hosts(&src, found);
        assert_eq!(hosts.len(), 1);
        let host = &hosts[0];
        assert_eq!(host.name, "web-01");
        assert_eq!(host.lb_server, "web-01");
        assert_eq!(host.target_id.as_deref(), Some("i-0abc"));
        assert_eq!(host.zone, "eu-west-1c");
        assert_eq!(host.address, "10.0.3.4");
        assert_eq!(host.ssh, src.ssh);
        assert_eq!(host.balancers, ["alb"]);
        assert_eq!(host.vars.get("role").map(String::as_str), Some("web"));
    }
}
