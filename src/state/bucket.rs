//! An S3 bucket and prefix holding an inventory's lock and journals, used
//! through conditional writes only: an object is created with
//! `If-None-Match: *` (it must not exist yet) or replaced with `If-Match` on
//! the ETag last read (nobody may have changed it since), the way
//! Terraform's S3 backend keeps its lock. A write that loses such a race is
//! told apart from a failure ([`ObjectError::Changed`]).
//!
//! The lock and the journal are written from synchronous code (the
//! dispatcher appends and syncs between two `select!` turns, exactly as it
//! fsyncs a local journal), so each call runs on the bucket's own small
//! runtime and the caller waits for it; on a multi-threaded runtime the
//! wait gives the worker's other tasks away (`block_in_place`), so host
//! tasks go on while a segment is being written.

use std::future::Future;

use aws_sdk_s3::primitives::ByteStream;
use futures_util::StreamExt;

use crate::transport::aws::config::{AwsError, sdk_config_with};

/// An S3 location: `s3://bucket/prefix`, every key relative to the prefix.
pub struct Bucket {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// Empty, or ending with `/`.
    prefix: String,
    runtime: Option<tokio::runtime::Runtime>,
    /// Tests: the cache root instead of `$XDG_CACHE_HOME` or `~/.cache`.
    #[cfg(test)]
    cache_root: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Bucket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.location())
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ObjectError {
    /// The condition failed: the object exists (create) or is no longer
    /// the one read (replace).
    #[error("{key} was written meanwhile by another fleetroll")]
    Changed { key: String },
    #[error("{0}")]
    Failed(AwsError),
}

/// An object's body and the ETag to replace it with.
#[derive(Debug, Clone)]
pub struct Object {
    pub body: Vec<u8>,
    pub etag: String,
}

/// How many segment reads a journal read keeps in flight.
const PARALLEL_READS: usize = 16;

impl Bucket {
    /// A client for `bucket` under `prefix`, with the default credential
    /// chain and fleetroll's bounded timeouts and retries.
    pub fn connect(
        bucket: &str,
        prefix: &str,
        region: Option<&str>,
        endpoint_url: Option<&str>,
    ) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("fleetroll-s3")
            .enable_all()
            .build()?;
        let config = {
            let region = region.map(str::to_owned);
            let endpoint_url = endpoint_url.map(str::to_owned);
            wait_for(&runtime, async move {
                sdk_config_with(region.as_deref(), endpoint_url.as_deref(), None).await
            })
        };
        let s3_config = aws_sdk_s3::config::Builder::from(&config)
            // S3-compatible stores and local endpoints answer on one host.
            .force_path_style(endpoint_url.is_some())
            .build();
        Ok(Self {
            client: aws_sdk_s3::Client::from_conf(s3_config),
            bucket: bucket.to_owned(),
            prefix: normalized_prefix(prefix),
            runtime: Some(runtime),
            #[cfg(test)]
            cache_root: None,
        })
    }

    /// Tests: a bucket that is never called, keeping copies under `cache`.
    #[cfg(test)]
    pub fn offline_for_tests(bucket: &str, prefix: &str, cache: std::path::PathBuf) -> Self {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(aws_sdk_s3::config::BehaviorVersion::latest())
            .build();
        Self {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: bucket.to_owned(),
            prefix: normalized_prefix(prefix),
            runtime: None,
            cache_root: Some(cache),
        }
    }

    /// `s3://bucket/prefix`, as messages name it.
    pub fn location(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    /// `s3://bucket/prefix/key`.
    pub fn url_of(&self, key: &str) -> String {
        format!("{}{key}", self.location())
    }

    fn full_key(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }

    fn block<T: Send + 'static>(&self, call: impl Future<Output = T> + Send + 'static) -> T {
        let runtime = self
            .runtime
            .as_ref()
            .expect("the runtime lives as long as the bucket");
        wait_for(runtime, call)
    }

    /// Creates `key`; [`ObjectError::Changed`] if it exists. A create whose
    /// answer was lost and that the SDK retried finds its own object: that
    /// counts as created.
    pub fn create(&self, key: &str, body: Vec<u8>) -> Result<String, ObjectError> {
        match self.put(key, body.clone(), Condition::Absent) {
            Err(ObjectError::Changed { .. }) => self.own_write(key, &body),
            done => done,
        }
    }

    /// Replaces `key` if its ETag is still `etag`.
    pub fn replace(&self, key: &str, body: Vec<u8>, etag: &str) -> Result<String, ObjectError> {
        match self.put(key, body.clone(), Condition::Unchanged(etag.to_owned())) {
            Err(ObjectError::Changed { .. }) => self.own_write(key, &body),
            done => done,
        }
    }

    /// After a failed condition: the object may be this very write, retried
    /// by the SDK after its first answer was lost.
    fn own_write(&self, key: &str, body: &[u8]) -> Result<String, ObjectError> {
        match self.get(key)? {
            Some(object) if object.body == body => Ok(object.etag),
            _ => Err(ObjectError::Changed {
                key: self.url_of(key),
            }),
        }
    }

    fn put(&self, key: &str, body: Vec<u8>, condition: Condition) -> Result<String, ObjectError> {
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        let full_key = self.full_key(key);
        let url = self.url_of(key);
        self.block(async move {
            let request = client
                .put_object()
                .bucket(bucket)
                .key(full_key)
                .body(ByteStream::from(body));
            let request = match condition {
                Condition::Absent => request.if_none_match("*"),
                Condition::Unchanged(etag) => request.if_match(etag),
            };
            match request.send().await {
                Ok(output) => Ok(output.e_tag().unwrap_or_default().to_owned()),
                Err(error) => {
                    let error = AwsError::from_sdk("PutObject", url.clone(), &error);
                    // 409: a concurrent conditional write to the same key.
                    if matches!(error.status, Some(412 | 409)) {
                        Err(ObjectError::Changed { key: url })
                    } else {
                        Err(ObjectError::Failed(error))
                    }
                }
            }
        })
    }

    /// The object at `key`, or `None` if there is none.
    pub fn get(&self, key: &str) -> Result<Option<Object>, ObjectError> {
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        let full_key = self.full_key(key);
        let url = self.url_of(key);
        self.block(async move { get(&client, bucket, full_key, url).await })
    }

    /// The bodies of `keys`, in order, read in parallel.
    pub fn get_all(&self, keys: Vec<String>) -> Result<Vec<Vec<u8>>, ObjectError> {
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        let keys: Vec<(String, String)> = keys
            .into_iter()
            .map(|key| (self.full_key(&key), self.url_of(&key)))
            .collect();
        self.block(async move {
            let reads = futures_util::stream::iter(keys.into_iter().map(|(full_key, url)| {
                let client = client.clone();
                let bucket = bucket.clone();
                async move {
                    match get(&client, bucket, full_key, url.clone()).await? {
                        Some(object) => Ok(object.body),
                        None => Err(ObjectError::Failed(AwsError {
                            operation: "GetObject",
                            subject: url,
                            code: Some("NoSuchKey".into()),
                            message: "listed but gone".into(),
                            status: Some(404),
                            transient: false,
                        })),
                    }
                }
            }))
            .buffered(PARALLEL_READS);
            reads.collect::<Vec<_>>().await.into_iter().collect()
        })
    }

    /// Every key under `dir` (relative, ending with `/`), sorted, with its
    /// ETag.
    pub fn list(&self, dir: &str) -> Result<Vec<Listed>, ObjectError> {
        self.list_with(dir, false, None)
    }

    /// The keys under `dir` that sort after `after` (a key under `dir`):
    /// what was added since, when keys only ever grow.
    pub fn list_after(&self, dir: &str, after: &str) -> Result<Vec<Listed>, ObjectError> {
        self.list_with(dir, false, Some(after))
    }

    /// The names of the "directories" right under `dir` (relative, ending
    /// with `/`), sorted, without their trailing `/`.
    pub fn list_dirs(&self, dir: &str) -> Result<Vec<String>, ObjectError> {
        Ok(self
            .list_with(dir, true, None)?
            .into_iter()
            .map(|listed| listed.key)
            .collect())
    }

    fn list_with(
        &self,
        dir: &str,
        dirs: bool,
        after: Option<&str>,
    ) -> Result<Vec<Listed>, ObjectError> {
        let start_after = after.map(|key| self.full_key(key));
        let client = self.client.clone();
        let bucket = self.bucket.clone();
        let full_dir = self.full_key(dir);
        let url = self.url_of(dir);
        let strip = self.full_key(dir);
        let mut listed = self.block(async move {
            let mut request = client.list_objects_v2().bucket(bucket).prefix(full_dir);
            if dirs {
                request = request.delimiter("/");
            }
            if let Some(start_after) = start_after {
                request = request.start_after(start_after);
            }
            let mut pages = request.into_paginator().send();
            let mut names = Vec::new();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|error| {
                    ObjectError::Failed(AwsError::from_sdk("ListObjectsV2", url.clone(), &error))
                })?;
                if dirs {
                    names.extend(page.common_prefixes().iter().filter_map(|p| {
                        let name = p.prefix()?.strip_prefix(&strip)?;
                        Some(Listed {
                            key: name.trim_end_matches('/').to_owned(),
                            etag: String::new(),
                        })
                    }));
                } else {
                    names.extend(page.contents().iter().filter_map(|o| {
                        Some(Listed {
                            key: o.key()?.strip_prefix(&strip)?.to_owned(),
                            etag: o.e_tag().unwrap_or_default().to_owned(),
                        })
                    }));
                }
            }
            Ok::<_, ObjectError>(names)
        })?;
        if !dirs {
            for entry in &mut listed {
                entry.key = format!("{dir}{}", entry.key);
            }
        }
        listed.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(listed)
    }

    /// Where this machine may keep copies of the bucket's immutable
    /// objects: `$XDG_CACHE_HOME/fleetroll/s3/BUCKET/PREFIX` (or under
    /// `~/.cache`); `None` without either variable.
    pub fn cache_dir(&self) -> Option<std::path::PathBuf> {
        #[cfg(test)]
        if let Some(root) = &self.cache_root {
            return Some(
                root.join("fleetroll/s3")
                    .join(&self.bucket)
                    .join(self.prefix.trim_end_matches('/')),
            );
        }
        let root = std::env::var_os("XDG_CACHE_HOME")
            .filter(|dir| !dir.is_empty())
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME")
                    .filter(|dir| !dir.is_empty())
                    .map(|home| std::path::PathBuf::from(home).join(".cache"))
            })?;
        Some(
            root.join("fleetroll/s3")
                .join(&self.bucket)
                .join(self.prefix.trim_end_matches('/')),
        )
    }
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Relative to the bucket's prefix.
    pub key: String,
    pub etag: String,
}

impl Drop for Bucket {
    /// A runtime may not be dropped (joined) inside another: let it go.
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

enum Condition {
    Absent,
    Unchanged(String),
}

async fn get(
    client: &aws_sdk_s3::Client,
    bucket: String,
    full_key: String,
    url: String,
) -> Result<Option<Object>, ObjectError> {
    match client
        .get_object()
        .bucket(bucket)
        .key(full_key)
        .send()
        .await
    {
        Ok(output) => {
            let etag = output.e_tag().unwrap_or_default().to_owned();
            let body = output.body.collect().await.map_err(|error| {
                ObjectError::Failed(AwsError {
                    operation: "GetObject",
                    subject: url,
                    code: None,
                    message: error.to_string(),
                    status: None,
                    transient: true,
                })
            })?;
            Ok(Some(Object {
                body: body.into_bytes().to_vec(),
                etag,
            }))
        }
        Err(error) if error.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
        Err(error) => Err(ObjectError::Failed(AwsError::from_sdk(
            "GetObject",
            url,
            &error,
        ))),
    }
}

/// Runs `call` on `runtime` and waits for it; on a multi-threaded runtime
/// the waiting worker hands its other tasks to the rest meanwhile.
fn wait_for<T: Send + 'static>(
    runtime: &tokio::runtime::Runtime,
    call: impl Future<Output = T> + Send + 'static,
) -> T {
    let (sender, receiver) = std::sync::mpsc::channel();
    runtime.spawn(async move {
        let _ = sender.send(call.await);
    });
    let wait = move || {
        receiver
            .recv()
            .expect("the bucket's runtime runs every call to its end")
    };
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(wait)
        }
        _ => wait(),
    }
}

/// `web` and `web/` are the same prefix; an empty one is the bucket's root.
fn normalized_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_matches('/');
    if trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_normalized() {
        assert_eq!(normalized_prefix(""), "");
        assert_eq!(normalized_prefix("/"), "");
        assert_eq!(normalized_prefix("web"), "web/");
        assert_eq!(normalized_prefix("/teams/web/"), "teams/web/");
    }
}
