//! Raw `[state]` → [`StateStore`]: where the inventory's lock and journals live.

use toml::Spanned;

use super::inventory::PathContext;
use crate::config::checker::{Checker, span_of};
use crate::config::raw::RawState;
use crate::model::inventory::StateStore;

/// The local state directory when `[state]` names none.
pub const DEFAULT_DIR: &str = ".fleetroll";

/// How long a silent holder of an S3 lock keeps it, by default.
pub const DEFAULT_LEASE: std::time::Duration = crate::lock::HEARTBEAT_EXPIRY;
/// Below this, a heartbeat (a ninth of the lease) would hammer the bucket.
const MIN_LEASE: std::time::Duration = std::time::Duration::from_secs(3);

pub fn resolve_state(
    raw: Option<Spanned<RawState>>,
    checker: &mut Checker<'_>,
    paths: PathContext<'_>,
) -> StateStore {
    let default = || StateStore::Local {
        dir: paths.resolve(DEFAULT_DIR),
    };
    let Some(raw) = raw else {
        return default();
    };
    let table_span = raw.span();
    let RawState {
        backend,
        dir,
        bucket,
        prefix,
        region,
        endpoint_url,
        lease,
    } = raw.into_inner();
    let present = [
        ("backend", span_of(&backend)),
        ("dir", span_of(&dir)),
        ("bucket", span_of(&bucket)),
        ("prefix", span_of(&prefix)),
        ("region", span_of(&region)),
        ("endpoint_url", span_of(&endpoint_url)),
        ("lease", span_of(&lease)),
    ];
    let what = "[state]";
    match backend.as_ref().map_or("local", |b| b.get_ref().as_str()) {
        "local" => {
            checker.only_keys_of("a local", what, &present, &["backend", "dir"]);
            let Some(dir) = dir else { return default() };
            if dir.get_ref().trim().is_empty() {
                checker.error(
                    dir.span(),
                    "the state directory is empty",
                    "expected a directory, relative to this file or absolute",
                );
                return default();
            }
            StateStore::Local {
                dir: paths.resolve(dir.get_ref()),
            }
        }
        "s3" => {
            checker.only_keys_of(
                "an s3",
                what,
                &present,
                &[
                    "backend",
                    "bucket",
                    "prefix",
                    "region",
                    "endpoint_url",
                    "lease",
                ],
            );
            let bucket = match &bucket {
                Some(bucket) => checker.word(bucket, "bucket name"),
                None => {
                    checker
                        .error(table_span, "s3 state needs a bucket", "`bucket` missing")
                        .set_help("add bucket = \"NAME\"");
                    None
                }
            };
            let region = region.as_ref().and_then(|r| checker.word(r, "region"));
            let endpoint_url = endpoint_url
                .as_ref()
                .and_then(|u| checker.http_url(u, "endpoint_url"));
            let lease_value = checker.duration(lease.as_ref(), DEFAULT_LEASE);
            if let Some(lease) = &lease
                && lease_value < MIN_LEASE
            {
                checker.error(
                    lease.span(),
                    format!("a lease of `{}` is too short", lease.get_ref()),
                    "at least 3s: the holder renews it every ninth of the lease",
                );
            }
            StateStore::S3 {
                bucket: bucket.unwrap_or_default(),
                prefix: prefix.map(Spanned::into_inner).unwrap_or_default(),
                region,
                endpoint_url,
                lease: lease_value.max(MIN_LEASE),
            }
        }
        other => {
            if let Some(backend) = &backend {
                checker.error(
                    backend.span(),
                    format!("unknown state backend `{other}`"),
                    "expected \"local\" or \"s3\"",
                );
            }
            default()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::config::diagnostics::Diagnostics;
    use crate::config::raw::RawStateOnly;
    use crate::config::source::SourceFile;

    fn resolve(text: &str) -> (StateStore, Diagnostics) {
        let file = SourceFile::new("inventory.toml", text);
        let raw: RawStateOnly = toml::from_str(text).unwrap();
        let mut diagnostics = Diagnostics::default();
        let mut checker = Checker::new(&file, &mut diagnostics);
        let paths = PathContext {
            base_dir: Path::new("/etc/fleetroll"),
            home: Some(Path::new("/home/ops")),
        };
        let state = resolve_state(raw.state, &mut checker, paths);
        (state, diagnostics)
    }

    fn local(dir: &str) -> StateStore {
        StateStore::Local {
            dir: PathBuf::from(dir),
        }
    }

    #[test]
    fn local_directories_are_relative_to_the_inventory() {
        for (text, dir) in [
            ("", "/etc/fleetroll/.fleetroll"),
            ("[state]\n", "/etc/fleetroll/.fleetroll"),
            (
                "[state]\nbackend = \"local\"\n",
                "/etc/fleetroll/.fleetroll",
            ),
            ("[state]\ndir = \"state/web\"\n", "/etc/fleetroll/state/web"),
            (
                "[state]\ndir = \"/var/lib/fleetroll\"\n",
                "/var/lib/fleetroll",
            ),
            ("[state]\ndir = \"~/fleetroll\"\n", "/home/ops/fleetroll"),
        ] {
            let (state, diagnostics) = resolve(text);
            assert_eq!(state, local(dir), "{text}");
            assert!(
                diagnostics.is_empty(),
                "{text}: {}",
                diagnostics.render(false)
            );
        }
    }

    #[test]
    fn s3_is_parsed_with_its_lease() {
        let (state, diagnostics) = resolve(
            "[state]\nbackend = \"s3\"\nbucket = \"ops\"\nprefix = \"web/\"\nendpoint_url = \"http://127.0.0.1:5000\"\nlease = \"30s\"\n",
        );
        assert_eq!(
            state,
            StateStore::S3 {
                bucket: "ops".into(),
                prefix: "web/".into(),
                region: None,
                endpoint_url: Some("http://127.0.0.1:5000".into()),
                lease: std::time::Duration::from_secs(30),
            }
        );
        assert!(diagnostics.is_empty(), "{}", diagnostics.render(false));
        let (state, _) = resolve("[state]\nbackend = \"s3\"\nbucket = \"ops\"\n");
        assert!(matches!(state, StateStore::S3 { lease, .. } if lease == DEFAULT_LEASE));
        let (_, diagnostics) =
            resolve("[state]\nbackend = \"s3\"\nbucket = \"ops\"\nlease = \"1s\"\n");
        assert!(diagnostics.render(false).contains("too short"));
    }

    #[test]
    fn keys_of_the_other_backend_and_unknown_backends_are_errors() {
        for (text, expected) in [
            (
                "[state]\ndir = \"x\"\nbucket = \"b\"\n",
                "`bucket` is not a key of a local [state]",
            ),
            (
                "[state]\nbackend = \"s3\"\nbucket = \"b\"\ndir = \"x\"\n",
                "`dir` is not a key of an s3 [state]",
            ),
            ("[state]\nbackend = \"s3\"\n", "s3 state needs a bucket"),
            (
                "[state]\nbackend = \"nfs\"\n",
                "unknown state backend `nfs`",
            ),
            ("[state]\ndir = \"\"\n", "the state directory is empty"),
        ] {
            let (_, diagnostics) = resolve(text);
            assert!(diagnostics.has_errors(), "{text}");
            let rendered = diagnostics.render(false);
            assert!(rendered.contains(expected), "{text}: {rendered}");
        }
    }
}
