//! How a packager reaches a play decision without knowing who decides:
//! the [`Authorizer`] trait. The binary hands the packager the auth
//! service's engine in process (embedded mode) or a [`BusAuthorizer`] that
//! asks the auth service over the bus (distributed mode), so no service
//! imports another.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use dvr_common::config::{policy_reads, Config, PolicyReads};
use dvr_proto::{
    AuthReply, AuthRequest, SessionUsage, Versioned, AUTH_CHECK_SUBJECT, AUTH_USAGE_SUBJECT,
};

use crate::error::BusError;
use crate::request::Requester;

/// Decides play requests.
///
/// An implementor provides [`Authorizer::reads`]; [`Authorizer::protects`]
/// follows from it. (Each has a default in terms of the other, so an
/// implementor written before `reads` existed, providing `protects` only,
/// still compiles and is taken to read every field. One of the two must be
/// provided.)
#[async_trait]
pub trait Authorizer: Send + Sync + fmt::Debug {
    /// What the policy of `stream` decides on besides stream, client
    /// address and token; `None` when `stream` has no policy. An answer
    /// may be reused only for requests that agree on these fields: a cache
    /// of answers keys on them.
    fn reads(&self, stream: &str) -> Option<PolicyReads> {
        self.protects(stream).then_some(PolicyReads::ALL)
    }

    /// Whether plays of `stream` need an allow (it has a policy).
    fn protects(&self, stream: &str) -> bool {
        self.reads(stream).is_some()
    }

    /// Takes the policies of `config`'s streams from now on: the streams
    /// bucket changed (a stream added or changed through the API).
    fn set_policies(&self, config: &Config);

    /// Decides one request. An `Err` means no decision could be had (the
    /// auth service is unreachable): the asker keeps what it knew.
    async fn check(&self, request: &AuthRequest) -> Result<AuthReply, BusError>;

    /// Reports the bytes served per session since the last report. An
    /// `Err` means the report did not arrive: the asker keeps the bytes
    /// and sends them with its next one.
    async fn report_usage(&self, usage: &SessionUsage) -> Result<(), BusError>;
}

/// Asks the auth service over the bus (`dvr.v1.auth.check`).
#[derive(Debug)]
pub struct BusAuthorizer {
    requester: Arc<dyn Requester>,
    /// What each protected stream's policy reads ([`policy_reads`]).
    reads: std::sync::RwLock<HashMap<String, PolicyReads>>,
    timeout: Duration,
}

impl BusAuthorizer {
    /// An authorizer for the streams `config` gives a policy, asking
    /// through `requester` and waiting at most `timeout` (more than the
    /// backends' 3 s, so a slow backend is not taken for a lost service).
    pub fn new(config: &Config, requester: Arc<dyn Requester>, timeout: Duration) -> Self {
        Self {
            requester,
            reads: std::sync::RwLock::new(policy_reads(config)),
            timeout,
        }
    }
}

#[async_trait]
impl Authorizer for BusAuthorizer {
    fn set_policies(&self, config: &Config) {
        *self
            .reads
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = policy_reads(config);
    }

    fn reads(&self, stream: &str) -> Option<PolicyReads> {
        self.reads
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(stream)
            .copied()
    }

    async fn check(&self, request: &AuthRequest) -> Result<AuthReply, BusError> {
        let body = self
            .requester
            .request(
                AUTH_CHECK_SUBJECT,
                Bytes::from(request.encode()),
                self.timeout,
            )
            .await?;
        AuthReply::decode(&body).map_err(|source| BusError::Proto {
            target: AUTH_CHECK_SUBJECT.to_owned(),
            source,
        })
    }

    async fn report_usage(&self, usage: &SessionUsage) -> Result<(), BusError> {
        self.requester
            .request(
                AUTH_USAGE_SUBJECT,
                Bytes::from(usage.encode()),
                self.timeout,
            )
            .await
            .map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An authorizer written before `reads`: it says which streams it
    /// protects, nothing more.
    #[derive(Debug)]
    struct ProtectsOnly;

    #[async_trait]
    impl Authorizer for ProtectsOnly {
        fn protects(&self, stream: &str) -> bool {
            stream == "news"
        }

        fn set_policies(&self, _: &Config) {}

        async fn check(&self, _: &AuthRequest) -> Result<AuthReply, BusError> {
            Err(BusError::NoResponders {
                subject: AUTH_CHECK_SUBJECT.into(),
            })
        }

        async fn report_usage(&self, _: &SessionUsage) -> Result<(), BusError> {
            Ok(())
        }
    }

    #[test]
    fn an_authorizer_that_only_protects_is_taken_to_read_everything() {
        assert_eq!(ProtectsOnly.reads("news"), Some(PolicyReads::ALL));
        assert_eq!(ProtectsOnly.reads("free"), None);
    }

    #[tokio::test]
    async fn the_bus_authorizer_reads_what_the_config_says() {
        let yaml = "version: 1\n\
            auth_backends:\n  main: { deny: { ua: [ \"BadBot\" ] }, default: allow }\n\
            streams:\n\
            \x20 ort: { inputs: [ \"udp://239.0.0.1:1\" ], auth: \"auth://main\" }\n\
            \x20 free: { inputs: [ \"udp://239.0.0.1:2\" ] }\n";
        let config = Config::from_yaml_str(yaml, "t.yaml").unwrap();
        let hub = Arc::new(crate::request::MemoryRequests::new());
        let auth = BusAuthorizer::new(&config, hub, Duration::from_secs(1));
        let ua = Some(PolicyReads {
            user_agent: true,
            ..PolicyReads::NONE
        });
        assert_eq!(auth.reads("ort"), ua);
        assert!(auth.protects("ort") && !auth.protects("free"));
        assert_eq!(auth.reads("free"), None);
        // The streams bucket changed: the policy reads what the new one does.
        let changed = yaml.replace("auth://main", "securetoken://K");
        auth.set_policies(&Config::from_yaml_str(&changed, "t.yaml").unwrap());
        assert_eq!(auth.reads("ort"), Some(PolicyReads::NONE));
    }
}
