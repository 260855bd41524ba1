//! The auth service on the bus: the [`Engine`] as an
//! [`Authorizer`](dvr_bus::Authorizer) for a packager in the same process
//! (embedded mode), and [`serve`], which answers the requests a
//! [`BusAuthorizer`](dvr_bus::BusAuthorizer) sends (distributed mode).

use async_trait::async_trait;
use bytes::Bytes;
use dvr_bus::{Authorizer, BusError, Kv, Responder};
use dvr_common::config::{Config, PolicyReads};
use dvr_common::ErrorKind;
use dvr_proto::{
    AuthReply, AuthRequest, SessionRecord, SessionUsage, Versioned, AUTH_CHECK_SUBJECT,
    AUTH_QUEUE_GROUP, AUTH_USAGE_SUBJECT,
};
use futures::StreamExt;
use tracing::{warn, Instrument};

use crate::engine::Engine;

#[async_trait]
impl Authorizer for Engine {
    fn set_policies(&self, config: &Config) {
        Engine::set_policies(self, config);
    }

    fn reads(&self, stream: &str) -> Option<PolicyReads> {
        Engine::reads(self, stream)
    }

    async fn check(&self, request: &AuthRequest) -> Result<AuthReply, BusError> {
        Ok(Engine::check(self, request).await)
    }

    async fn report_usage(&self, usage: &SessionUsage) -> Result<(), BusError> {
        self.record_usage(usage);
        Ok(())
    }
}

/// The auth service: answers `dvr.v1.auth.check` and `dvr.v1.auth.usage`
/// with `engine` until the bus goes away. Each request is handled in its
/// own task, so one waiting on a slow backend holds up no other.
pub async fn serve(engine: Engine, responder: &dyn Responder) -> Result<(), BusError> {
    let checks = responder
        .serve(AUTH_CHECK_SUBJECT, AUTH_QUEUE_GROUP)
        .await?;
    let usage = responder
        .serve(AUTH_USAGE_SUBJECT, AUTH_QUEUE_GROUP)
        .await?;
    let mut requests = futures::stream::select(checks, usage);
    while let Some(request) = requests.next().await {
        let engine = engine.clone();
        // The work runs in the request's span, the asker's child, so a
        // packager request is one trace through auth.
        let span = request.span().clone();
        tokio::spawn(
            async move {
            let answer = if request.subject == AUTH_USAGE_SUBJECT {
                SessionUsage::decode(&request.body).map(|usage| {
                    engine.record_usage(&usage);
                    Bytes::new()
                })
            } else {
                match AuthRequest::decode(&request.body) {
                    Ok(ask) => Ok(Bytes::from(engine.check(&ask).await.encode())),
                    Err(e) => Err(e),
                }
            };
            let sent = match answer {
                Ok(body) => request.reply(body).await,
                Err(e) => {
                    warn!(subject = %request.subject, error = %e, "refusing a malformed auth request");
                    request
                        .reply_error(ErrorKind::BadRequest, &e.to_string())
                        .await
                }
            };
            if let Err(e) = sent {
                warn!(error = %e, "cannot send an auth reply");
            }
            }
            .instrument(span),
        );
    }
    Ok(())
}

/// Every session recorded in the sessions bucket, oldest first: what
/// `GET /api/v1/sessions` lists.
pub async fn list_sessions(kv: &dyn Kv) -> Result<Vec<SessionRecord>, BusError> {
    let mut out = Vec::new();
    for entry in kv.list("").await? {
        match SessionRecord::decode(&entry.value) {
            Ok(r) => out.push(r),
            Err(e) => warn!(key = %entry.key, error = %e, "skipping an unreadable session record"),
        }
    }
    out.sort_by(|a, b| (a.opened_at, &a.id).cmp(&(b.opened_at, &b.id)));
    Ok(out)
}
