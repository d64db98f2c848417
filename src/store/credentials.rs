//! AWS credentials the way the AWS CLI finds them, for object_store's S3 client.
//!
//! object_store reads credentials from environment variables, web identity, ECS and instance
//! metadata, but not from `AWS_PROFILE` and the shared config and credentials files (nor SSO
//! profiles). The AWS SDK's default provider chain does all of these; this adapter lends it to
//! object_store. The chain is resolved on first use and its credentials are kept until five minutes
//! before they expire, so thousands of requests do not re-run it. Secrets never leave this module
//! except into request signatures: errors name the failure, not the keys.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_config::BehaviorVersion;
use aws_config::provider_config::ProviderConfig;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use object_store::CredentialProvider;
use object_store::aws::AwsCredential;
use tokio::sync::{Mutex, OnceCell};

use crate::store::sdk_http_client;

/// The AWS SDK's default credential chain, as an object_store credential provider.
#[derive(Debug, Default)]
pub struct SdkCredentials {
    /// The profile named by `--profile`: only its credentials are used. Otherwise the default
    /// chain, with `AWS_PROFILE` (else `default`).
    profile: Option<String>,
    chain: OnceCell<Option<SharedCredentialsProvider>>,
    cached: Mutex<Option<(Arc<AwsCredential>, Option<SystemTime>)>>,
}

impl SdkCredentials {
    pub fn for_profile(profile: Option<String>) -> Self {
        SdkCredentials { profile, ..SdkCredentials::default() }
    }
}

fn unavailable(message: String) -> object_store::Error {
    object_store::Error::Unauthenticated { path: String::new(), source: message.into() }
}

#[async_trait::async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let mut cached = self.cached.lock().await;
        if let Some((credential, expiry)) = cached.as_ref() {
            let fresh = expiry.is_none_or(|e| e > SystemTime::now() + Duration::from_secs(300));
            if fresh {
                return Ok(credential.clone());
            }
        }
        let chain = self
            .chain
            .get_or_init(|| async {
                match &self.profile {
                    // A profile named on the command line is the one used, not keys in the
                    // environment (the AWS CLI drops them from its chain then, too).
                    Some(p) => Some(SharedCredentialsProvider::new(
                        aws_config::profile::ProfileFileCredentialsProvider::builder()
                            .configure(&ProviderConfig::default().with_http_client(sdk_http_client()))
                            .profile_name(p)
                            .build(),
                    )),
                    None => aws_config::defaults(BehaviorVersion::latest())
                        .http_client(sdk_http_client())
                        .load()
                        .await
                        .credentials_provider(),
                }
            })
            .await
            .as_ref()
            .ok_or_else(|| unavailable("no AWS credential provider is configured".into()))?;
        let c = chain.provide_credentials().await.map_err(|e| {
            let tried = match &self.profile {
                Some(p) => format!("profile {p}"),
                None => "environment, AWS_PROFILE, SSO, web identity, ECS, instance metadata".into(),
            };
            // "The credential provider was not enabled" only says that none gave any.
            let why = match e {
                aws_credential_types::provider::error::CredentialsError::CredentialsNotLoaded(_) => String::new(),
                e => format!(": {e}"),
            };
            unavailable(crate::store::redact::redact(&format!("no AWS credentials found ({tried}){why}")))
        })?;
        crate::store::redact::register(c.secret_access_key());
        if let Some(token) = c.session_token() {
            crate::store::redact::register(token);
        }
        let credential = Arc::new(AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        });
        *cached = Some((credential.clone(), c.expiry()));
        Ok(credential)
    }
}
