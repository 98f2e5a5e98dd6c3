//! The shared AWS SDK configuration and the one error type the AWS layer reports.
//!
//! The SDK sets no operation or read timeout by default (PITFALLS), so every
//! client fleetroll builds goes through [`sdk_config`], which bounds each call
//! (30 s per operation, 10 s per attempt, 5 s to connect) and lets the SDK
//! retry throttling and 5xx answers with its standard jittered backoff, at
//! most 5 attempts. Credentials and region come from aws-config's default
//! chain (environment, profiles, SSO, IMDS); `AWS_ENDPOINT_URL` and its
//! per-service variants are honoured by aws-config itself.

use std::collections::HashMap;
use std::sync::OnceLock;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_elasticloadbalancingv2::config::Credentials;
use aws_sdk_elasticloadbalancingv2::config::http::HttpResponse;
use aws_sdk_elasticloadbalancingv2::error::{ProvideErrorMetadata, SdkError};

/// The whole of one API call, retries and backoff included.
pub const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
/// One attempt of a call: a hung connection is retried, not waited on.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Attempts per call, the first one included.
pub const MAX_ATTEMPTS: u32 = 5;

pub fn timeout_config() -> TimeoutConfig {
    TimeoutConfig::builder()
        .operation_timeout(OPERATION_TIMEOUT)
        .operation_attempt_timeout(ATTEMPT_TIMEOUT)
        .connect_timeout(CONNECT_TIMEOUT)
        .build()
}

pub fn retry_config() -> RetryConfig {
    RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS)
}

type CacheKey = (Option<String>, Option<String>);

/// Loaded configurations by (region, endpoint). Loading may probe IMDS or
/// read SSO caches, so a run with several balancers and sources loads each
/// combination once. A cached config carries its HTTP client's connection
/// pool, which belongs to the tokio runtime that first used it: fleetroll has
/// one runtime per process; code that runs several (tests) uses
/// [`sdk_config_with`], which never caches.
fn cache() -> &'static tokio::sync::Mutex<HashMap<CacheKey, SdkConfig>> {
    static CACHE: OnceLock<tokio::sync::Mutex<HashMap<CacheKey, SdkConfig>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// The configuration every AWS client of fleetroll is built from: the default
/// credential and region chain, bounded timeouts and retries, and the
/// inventory's `region` and `endpoint_url` overrides when given.
pub async fn sdk_config(region: Option<&str>, endpoint_url: Option<&str>) -> SdkConfig {
    let key = (region.map(str::to_owned), endpoint_url.map(str::to_owned));
    // Held across the load on purpose: two balancers asking for the same
    // region at once load it once.
    let mut cache = cache().lock().await;
    if let Some(config) = cache.get(&key) {
        return config.clone();
    }
    let config = sdk_config_with(region, endpoint_url, None).await;
    cache.insert(key, config.clone());
    config
}

/// Makes [`sdk_config`] answer `config` for this region and endpoint: for
/// code that runs fleetroll's clients in-process against a local endpoint
/// (tests), with fixed credentials and without touching the process
/// environment.
pub async fn provide(region: Option<&str>, endpoint_url: Option<&str>, config: SdkConfig) {
    let key = (region.map(str::to_owned), endpoint_url.map(str::to_owned));
    cache().lock().await.insert(key, config);
}

/// [`sdk_config`] without the cache, with explicit credentials when given
/// (tests against a local endpoint, without touching the process environment).
pub async fn sdk_config_with(
    region: Option<&str>,
    endpoint_url: Option<&str>,
    credentials: Option<Credentials>,
) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        .timeout_config(timeout_config())
        .retry_config(retry_config());
    if let Some(region) = region {
        loader = loader.region(Region::new(region.to_owned()));
    }
    if let Some(endpoint_url) = endpoint_url {
        loader = loader.endpoint_url(endpoint_url);
    }
    if let Some(credentials) = credentials {
        loader = loader.credentials_provider(credentials);
    }
    loader.load().await
}

/// One failed AWS call, reduced to what fleetroll reports and decides on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsError {
    /// The API operation, e.g. `DeregisterTargets`.
    pub operation: &'static str,
    /// What the call was about (an ARN, a group name), for the message.
    pub subject: String,
    /// AWS's error code (`TargetGroupNotFound`, `Throttling`), when it sent one.
    pub code: Option<String>,
    pub message: String,
    /// The HTTP status of the answer, when there was one.
    pub status: Option<u16>,
    /// Worth trying again later: no answer, a timeout, throttling or a 5xx
    /// that outlasted the SDK's own retries.
    pub transient: bool,
}

/// Error codes AWS uses for throttling, across the query-protocol services.
const THROTTLING_CODES: &[&str] = &[
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "RequestLimitExceeded",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
];

/// Error codes an endpoint uses for an operation it does not implement
/// (emulators; AWS itself for an API a partition lacks).
const NOT_IMPLEMENTED_CODES: &[&str] = &[
    "NotImplemented",
    "InvalidAction",
    "UnknownOperation",
    "UnknownOperationException",
    "UnsupportedOperation",
];

impl AwsError {
    pub fn from_sdk<E>(
        operation: &'static str,
        subject: impl Into<String>,
        error: &SdkError<E, HttpResponse>,
    ) -> Self
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = error.raw_response().map(|raw| raw.status().as_u16());
        let code = error.code().map(str::to_owned);
        let (message, transient) = match error {
            SdkError::ServiceError(_) => {
                // An answer that is not an AWS error document (an
                // emulator's or a proxy's HTML page): the SDK's own text for
                // it dumps the whole raw response, the status says enough.
                let message = error.message().map(str::to_owned).unwrap_or_else(|| {
                    format!(
                        "answer without an AWS error code (HTTP {})",
                        status.unwrap_or_default()
                    )
                });
                let throttled = code
                    .as_deref()
                    .is_some_and(|code| THROTTLING_CODES.contains(&code));
                (message, throttled || status.is_some_and(|s| s >= 500))
            }
            // The request could not even be built: a missing region or
            // credentials. Trying again changes nothing.
            SdkError::ConstructionFailure(_) => (causes(error), false),
            SdkError::ResponseError(_) => (
                format!(
                    "unreadable answer (HTTP {})",
                    status.map_or_else(|| "status unknown".to_owned(), |s| s.to_string())
                ),
                true,
            ),
            // No answer in time or no connection: the endpoint may recover.
            _ => (causes(error), true),
        };
        Self {
            operation,
            subject: subject.into(),
            code,
            message,
            status,
            transient,
        }
    }

    /// Whether AWS turned the call away for the account's request rate.
    pub fn is_throttling(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|code| THROTTLING_CODES.contains(&code))
    }

    /// Whether the endpoint does not implement the operation at all: an
    /// explicit code, HTTP 501, or a 5xx without an AWS error document (what
    /// moto_server answers for an action it lacks; AWS always sends a code).
    pub fn is_not_implemented(&self) -> bool {
        self.code
            .as_deref()
            .is_some_and(|code| NOT_IMPLEMENTED_CODES.contains(&code))
            || self.status == Some(501)
            || (self.code.is_none() && self.status.is_some_and(|s| s >= 500))
    }

    /// `Code: message`, or the message alone when AWS sent no code.
    pub fn reply(&self) -> String {
        match &self.code {
            Some(code) => format!("{code}: {}", self.message),
            None => self.message.clone(),
        }
    }
}

/// An error and its causes on one line (`dispatch failure: io error: …:
/// Connection refused`). The SDK's `DisplayErrorContext` also appends the
/// whole error's Debug form, which no operator wants to read.
fn causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text.push_str(": ");
            text.push_str(&line);
        }
        source = cause.source();
    }
    text
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.operation, self.subject, self.reply())
    }
}

impl std::error::Error for AwsError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: Option<&str>, status: Option<u16>) -> AwsError {
        AwsError {
            operation: "DescribeInstanceRefreshes",
            subject: "web-asg".into(),
            code: code.map(str::to_owned),
            message: "boom".into(),
            status,
            transient: false,
        }
    }

    #[test]
    fn timeouts_and_retries_are_bounded() {
        let timeouts = timeout_config();
        assert_eq!(timeouts.operation_timeout(), Some(OPERATION_TIMEOUT));
        assert_eq!(timeouts.operation_attempt_timeout(), Some(ATTEMPT_TIMEOUT));
        assert_eq!(timeouts.connect_timeout(), Some(CONNECT_TIMEOUT));
        assert_eq!(retry_config().max_attempts(), MAX_ATTEMPTS);
    }

    #[tokio::test]
    async fn overrides_reach_the_loaded_config() {
        let config = sdk_config_with(
            Some("eu-west-3"),
            Some("http://127.0.0.1:1"),
            Some(Credentials::new("a", "b", None, None, "test")),
        )
        .await;
        assert_eq!(config.region().map(|r| r.as_ref()), Some("eu-west-3"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:1"));
        assert_eq!(
            config.timeout_config().and_then(|t| t.operation_timeout()),
            Some(OPERATION_TIMEOUT)
        );
        assert_eq!(
            config.retry_config().map(|r| r.max_attempts()),
            Some(MAX_ATTEMPTS)
        );
    }

    #[test]
    fn tells_an_unimplemented_operation_from_a_real_failure() {
        assert!(error(Some("InvalidAction"), Some(400)).is_not_implemented());
        assert!(error(None, Some(501)).is_not_implemented());
        // moto_server: an HTML 500 page, no AWS error code.
        assert!(error(None, Some(500)).is_not_implemented());
        assert!(!error(Some("InternalFailure"), Some(500)).is_not_implemented());
        assert!(!error(Some("ValidationError"), Some(400)).is_not_implemented());
        assert!(!error(None, None).is_not_implemented());
    }

    #[test]
    fn the_message_names_operation_subject_and_code() {
        let text = error(Some("ValidationError"), Some(400)).to_string();
        assert_eq!(
            text,
            "DescribeInstanceRefreshes web-asg: ValidationError: boom"
        );
        let text = error(None, Some(503)).to_string();
        assert_eq!(text, "DescribeInstanceRefreshes web-asg: boom");
    }
}
