//! Reaching object stores: the S3 client (credentials, region, endpoint), the retry policy every
//! request goes through, and turning a store's error into one that names the object. Used by the
//! source and the destination alike.

pub mod credentials;
pub mod redact;
pub mod retry;
pub mod throttle;

use std::sync::Arc;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;

use crate::error::Error;
use crate::store::retry::RetryPolicy;
use crate::store::retry::is_permanent;

/// Makes ring the crypto provider of rustls for every HTTPS client of the process (object_store's
/// S3 client, the Glue client, the AWS SDK's credential providers). Idempotent; called before any
/// client is built.
pub fn install_tls() {
    // An error only says a provider is installed already.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The AWS SDK's HTTP client (SSO, STS, instance metadata), over rustls with ring.
pub(crate) fn sdk_http_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::Ring))
        .build_https()
}

/// A wrapper put around every object store a run opens: for fault injection and request
/// counting in tests, or instrumentation.
#[derive(Clone)]
pub struct StoreLayer(pub Arc<WrapStore>);

/// Takes the store s3logs opened and returns the one it will use.
pub type WrapStore = dyn Fn(Arc<dyn ObjectStore>) -> Arc<dyn ObjectStore> + Send + Sync;

impl std::fmt::Debug for StoreLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreLayer")
    }
}

/// How to reach object stores.
#[derive(Debug, Clone, Default)]
pub struct StoreOptions {
    /// S3-compatible endpoint (otherwise `AWS_ENDPOINT_URL_S3`, `AWS_ENDPOINT_URL`, otherwise AWS).
    pub endpoint_url: Option<String>,
    /// AWS region (otherwise `AWS_REGION` / `AWS_DEFAULT_REGION`).
    pub region: Option<String>,
    /// The AWS profile credentials and region come from (otherwise `AWS_PROFILE`, else `default`),
    /// ahead of credentials in the environment, as the AWS CLI's `--profile`.
    pub profile: Option<String>,
    /// Access key id and secret, instead of the environment's credential chain.
    pub static_credentials: Option<(String, String)>,
    /// Our retries, on top of object_store's own: they also cover failures a layer injects.
    pub retry: RetryPolicy,
    /// The gate every S3 request goes through, shared by the clients built from these options
    /// (each run starts its own, of `--concurrency` requests).
    pub gate: throttle::RequestGate,
    pub layer: Option<StoreLayer>,
}

/// The first line of an error message: S3 error bodies (XML) follow on later lines.
pub(crate) fn first_line(message: &str) -> String {
    crate::store::redact::redact(message.lines().next().unwrap_or(""))
}

/// A store error in one line, as an operator needs it: S3's own error code and message where the
/// server sent them (`NoSuchBucket: The specified bucket does not exist (HTTP 404 Not Found)`,
/// `AccessDenied`, `SlowDown`), which object_store's text carries only in an XML body after its
/// first line; missing credentials without the empty path object_store names.
pub(crate) fn describe(e: &object_store::Error) -> String {
    if let object_store::Error::Unauthenticated { source, .. } = e {
        return first_line(&source.to_string());
    }
    let text = e.to_string();
    let tag = |name: &str| {
        let start = text.find(&format!("<{name}>"))? + name.len() + 2;
        let len = text[start..].find(&format!("</{name}>"))?;
        Some(text[start..start + len].trim().to_string()).filter(|v| !v.is_empty())
    };
    let status = text
        .find("status code: ")
        .map(|i| &text[i + "status code: ".len()..])
        .and_then(|rest| rest.split(':').next())
        .map(|s| format!(" (HTTP {})", s.trim()))
        .unwrap_or_default();
    match (tag("Code"), tag("Message")) {
        (Some(code), Some(message)) => crate::store::redact::redact(&format!("{code}: {message}{status}")),
        (Some(code), None) => crate::store::redact::redact(&format!("{code}{status}")),
        _ => unreachable_endpoint(e, &text).unwrap_or_else(|| first_line(&text)),
    }
}

/// The innermost cause of an error: for a request that got no answer, what the connection or TLS
/// said (object_store's own text leaves it out).
pub(crate) fn root_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> &'a (dyn std::error::Error + 'static) {
    let mut root = e;
    while let Some(next) = root.source() {
        root = next;
    }
    root
}

/// A request that never got an answer (connection refused, DNS, TLS), in plain words: the
/// endpoint, the root cause object_store's text leaves out, and its retries.
fn unreachable_endpoint(e: &object_store::Error, text: &str) -> Option<String> {
    if !text.contains("error sending request") {
        return None;
    }
    let root = root_cause(e);
    let start = text.find("http://").or_else(|| text.find("https://"))?;
    let url = &text[start..];
    let host_end = url.find("://").map(|i| i + 3).and_then(|i| url[i..].find(['/', ' ']).map(|j| i + j));
    let endpoint = &url[..host_end.unwrap_or(url.len())];
    let retries = text.find("after ").map(|i| &text[i..]).and_then(|t| t.split(',').next()).unwrap_or("");
    let sep = if retries.is_empty() { "" } else { ", " };
    Some(crate::store::redact::redact(&format!("cannot reach {endpoint}: {root}{sep}{retries}")))
}

/// An async runtime for S3 requests (two worker threads: requests wait, they do not compute).
pub fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::read("the async runtime", e))
}

/// A store error as this crate's error: `Temporary` (exit 75) when retrying did not help but a
/// later run may, `Store` (exit 74) when the request cannot succeed as it is.
pub fn store_error(url: &str, e: &object_store::Error) -> Error {
    let cause = describe(e);
    if is_permanent(e) {
        Error::Store { url: url.to_string(), cause }
    } else {
        Error::Temporary { url: url.to_string(), cause }
    }
}

/// Fills in what the AWS configuration gives and the options do not, as the AWS CLI reads it:
/// the region from the profile (`--profile`, else `AWS_PROFILE`, else `default`, in the shared
/// config file) when neither `--region` nor `AWS_REGION` / `AWS_DEFAULT_REGION` gives one
/// (without any, object_store uses us-east-1); and the endpoint, when `--endpoint-url` gives
/// none, from `AWS_ENDPOINT_URL_S3`, the profile's `services` section for `s3`, `AWS_ENDPOINT_URL`
/// or the profile's `endpoint_url`, in that order.
pub fn resolve_region(opts: &mut StoreOptions, rt: &tokio::runtime::Runtime) {
    if opts.region.is_none() && !["AWS_REGION", "AWS_DEFAULT_REGION"].iter().any(|v| std::env::var_os(v).is_some()) {
        use aws_config::meta::region::ProvideRegion;
        let mut provider = aws_config::profile::ProfileFileRegionProvider::builder();
        if let Some(p) = &opts.profile {
            provider = provider.profile_name(p);
        }
        if let Some(region) = rt.block_on(provider.build().region()) {
            tracing::info!(region = %region, "region from the AWS profile");
            opts.region = Some(region.to_string());
        }
    }
    if opts.endpoint_url.is_none() {
        opts.endpoint_url = configured_endpoint(opts.profile.as_deref(), rt);
    }
}

/// The S3 endpoint the AWS configuration names, as the AWS SDK's S3 client resolves it.
fn configured_endpoint(profile: Option<&str>, rt: &tokio::runtime::Runtime) -> Option<String> {
    use aws_types::service_config::ServiceConfigKey;
    // A fixed region: the loader would otherwise look for one, as far as instance metadata.
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .http_client(sdk_http_client())
        .region(aws_types::region::Region::from_static("us-east-1"));
    if let Some(p) = profile {
        loader = loader.profile_name(p);
    }
    let config = rt.block_on(loader.load());
    let key =
        ServiceConfigKey::builder().service_id("S3").profile("endpoint_url").env("AWS_ENDPOINT_URL").build().ok()?;
    let endpoint =
        config.service_config().and_then(|c| c.load_config(key)).or_else(|| config.endpoint_url().map(str::to_string));
    if let Some(e) = &endpoint {
        tracing::info!(endpoint = %e, "S3 endpoint from the AWS configuration");
    }
    endpoint.filter(|e| !e.is_empty())
}

/// An S3 key (or key prefix) as object_store's path, character for character. object_store's
/// `Path::from` percent-encodes characters such as `%`, `#`, `[` and `{`, which S3 allows in keys:
/// `logs%2024/` would become `logs%252024/`, another prefix, which lists nothing.
pub(crate) fn key_path(key: &str) -> object_store::path::Path {
    object_store::path::Path::parse(key).unwrap_or_else(|_| object_store::path::Path::from(key))
}

/// Splits `s3://bucket/key/prefix` into bucket and key prefix.
pub fn split_s3_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    (!bucket.is_empty()).then_some((bucket, prefix))
}

/// An S3 client for `bucket`: credentials and settings from the AWS environment, endpoint and
/// region from the options where given.
pub fn s3_store(bucket: &str, opts: &StoreOptions) -> Result<Arc<dyn ObjectStore>, String> {
    s3_stores(bucket, opts).map(|(store, _)| store)
}

/// [`s3_store`], and the same client's multipart API (which object_store offers only on the S3
/// client itself, outside any layer): a DEST records and aborts its own uploads with it.
pub fn s3_stores(
    bucket: &str,
    opts: &StoreOptions,
) -> Result<(Arc<dyn ObjectStore>, Arc<object_store::aws::AmazonS3>), String> {
    install_tls();
    let mut b = AmazonS3Builder::from_env()
        .with_bucket_name(bucket)
        .with_http_connector(throttle::GatedConnector(opts.gate.clone()));
    match &opts.static_credentials {
        Some((id, secret)) => b = b.with_access_key_id(id).with_secret_access_key(secret),
        // Keys in the environment are read by object_store itself (unless a profile is named);
        // otherwise the AWS SDK's chain (profiles, SSO, web identity, ECS, instance metadata)
        // supplies them.
        None if opts.profile.is_some() || std::env::var_os("AWS_ACCESS_KEY_ID").is_none() => {
            let chain = crate::store::credentials::SdkCredentials::for_profile(opts.profile.clone());
            b = b.with_credentials(Arc::new(chain));
        }
        None => {}
    }
    // As the AWS CLI: the service's own variable before the general one.
    let endpoint = opts
        .endpoint_url
        .clone()
        .or_else(|| std::env::var("AWS_ENDPOINT_URL_S3").ok())
        .or_else(|| std::env::var("AWS_ENDPOINT_URL").ok())
        .filter(|e| !e.is_empty());
    if let Some(e) = endpoint {
        b = b.with_allow_http(e.starts_with("http://")).with_endpoint(e);
    }
    if let Some(r) = &opts.region {
        b = b.with_region(r);
    }
    let s3 = Arc::new(b.build().map_err(|e| e.to_string())?);
    let store: Arc<dyn ObjectStore> = s3.clone();
    let store = match &opts.layer {
        Some(layer) => (layer.0)(store),
        None => store,
    };
    Ok((store, s3))
}

/// An error as object_store reports most S3 answers: generic, with the whole story in its text.
#[cfg(test)]
pub(crate) fn generic(text: &str) -> object_store::Error {
    object_store::Error::Generic { store: "S3", source: text.to_string().into() }
}

#[cfg(test)]
mod describe_tests {
    use super::{describe, generic};

    /// What object_store says about an S3 error answer: the request, then the body on the next
    /// lines. The code and message are what an operator acts on.
    #[test]
    fn s3_error_codes_are_named() {
        let e = generic(
            "Error performing list request: Error performing GET http://h/b?list-type=2 in 15ms - Server \
             returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error>\
             <Code>NoSuchBucket</Code><Message>The specified bucket does not exist</Message>\
             <BucketName>b</BucketName></Error>",
        );
        assert_eq!(describe(&e), "NoSuchBucket: The specified bucket does not exist (HTTP 404 Not Found)");
        let e = generic(
            "Server returned non-2xx status code: 503 Service Unavailable: <Error><Code>SlowDown</Code></Error>",
        );
        assert_eq!(describe(&e), "SlowDown (HTTP 503 Service Unavailable)");
        let e = generic("connection refused\nmore");
        assert_eq!(describe(&e), "Generic S3 error: connection refused");
        let e = object_store::Error::Unauthenticated { path: String::new(), source: "no AWS credentials found".into() };
        assert_eq!(describe(&e), "no AWS credentials found");
    }
}
