//! The values file (`charts/dvr/values.yaml`), typed.
//!
//! Unknown keys are refused with their line, as in the DVR's own config:
//! a misspelt `node_selecter` must not silently schedule pods anywhere.
//! `charts/dvr/values.yaml` documents every field for operators; the docs
//! here are for the code.

use std::collections::BTreeMap;

use dvr_common::config::{from_yaml_str_as, Config, ConfigError};
use serde::Deserialize;

/// The only values format version this build reads.
pub const VALUES_VERSION: u32 = 1;

/// Everything an operator chooses about a deployment.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Values {
    /// Format version; must be [`VALUES_VERSION`].
    pub version: u32,
    /// Namespace of every object.
    pub namespace: String,
    /// The `dvr` image.
    pub image: Image,
    /// RUST_LOG of every service.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// OTEL_EXPORTER_OTLP_ENDPOINT; empty exports no traces.
    #[serde(default)]
    pub otlp_endpoint: String,
    /// The pods' ServiceAccount.
    pub service_account: ServiceAccountValues,
    /// The archive store.
    pub archive: Archive,
    /// The bus.
    pub nats: Nats,
    /// The stream configuration (`dvr.yaml` text without `archive:`/`http:`).
    pub config: String,
    /// Port of every service's HTTP server.
    #[serde(default = "default_http_port")]
    pub http_port: u16,
    /// Peers whose `X-Forwarded-For` names the client
    /// (`http.trusted_proxies`): the Ingress controller's pods. Behind an
    /// Ingress every request comes from it, so without this every viewer
    /// would count as one client against the per-client limits. Default:
    /// the private ranges a cluster's pod network uses; narrow it to the
    /// controller's pod CIDR where other pods are not to be believed.
    #[serde(default = "default_trusted_proxies")]
    pub trusted_proxies: Vec<String>,
    /// A Secret whose keys become environment variables of the API's pods
    /// only: where the config's `api.tokens`/`api.users` take their
    /// `${VAR}`s from (e.g. `DVR_ADMIN_TOKEN`). Empty: none.
    #[serde(default)]
    pub api_secret: String,
    /// Per-service settings.
    pub services: Services,
    /// The Ingress; `None` renders none.
    #[serde(default)]
    pub ingress: Option<IngressValues>,
}

fn default_log_level() -> String {
    "info".to_owned()
}

fn default_http_port() -> u16 {
    8080
}

fn default_trusted_proxies() -> Vec<String> {
    ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7"]
        .map(str::to_owned)
        .to_vec()
}

/// The container image.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Image {
    /// Registry and repository.
    pub repository: String,
    /// Tag.
    pub tag: String,
    /// Kubernetes `imagePullPolicy`.
    #[serde(default = "default_pull_policy")]
    pub pull_policy: PullPolicy,
    /// Names of image pull Secrets.
    #[serde(default)]
    pub pull_secrets: Vec<String>,
}

fn default_pull_policy() -> PullPolicy {
    PullPolicy::IfNotPresent
}

/// Kubernetes image pull policies.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum PullPolicy {
    /// Pull on every start.
    Always,
    /// Pull when the node lacks the image.
    IfNotPresent,
    /// Never pull.
    Never,
}

impl PullPolicy {
    /// The Kubernetes spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PullPolicy::Always => "Always",
            PullPolicy::IfNotPresent => "IfNotPresent",
            PullPolicy::Never => "Never",
        }
    }
}

/// The ServiceAccount.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceAccountValues {
    /// Its name.
    pub name: String,
    /// Its annotations (web-identity roles).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The archive store and how to reach it.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Archive {
    /// Root URI.
    pub root: String,
    /// Which credentials the Secret holds.
    #[serde(default)]
    pub credentials: Credentials,
    /// The Secret's name (required unless `credentials` is `none`).
    #[serde(default)]
    pub secret_name: String,
    /// AWS_ENDPOINT_URL; empty leaves it unset.
    #[serde(default)]
    pub endpoint: String,
    /// AWS_REGION; empty leaves it unset.
    #[serde(default)]
    pub region: String,
}

/// Kinds of archive credentials.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Credentials {
    /// No Secret: web identity or an instance role.
    #[default]
    None,
    /// S3 access keys.
    S3,
    /// Swift tempauth.
    Swift,
    /// OpenStack Keystone v3.
    Keystone,
}

/// NATS: external by URL, or in-chart.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Nats {
    /// External NATS URL; empty runs the in-chart cluster.
    #[serde(default)]
    pub url: String,
    /// In-chart server count.
    #[serde(default = "default_nats_replicas")]
    pub replicas: u32,
    /// In-chart server image.
    #[serde(default = "default_nats_image")]
    pub image: String,
    /// JetStream volume size per server.
    #[serde(default = "default_nats_storage")]
    pub storage: String,
    /// StorageClass of the volumes; empty: the default.
    #[serde(default)]
    pub storage_class: String,
    /// Resources of each server.
    #[serde(default)]
    pub resources: Resources,
    /// The Secret holding one NATS password per service, keys
    /// `DVR_NATS_INGEST_PASSWORD`, `…_RECORDER_…`, `…_PACKAGER_…`,
    /// `…_API_…`, `…_AUTH_…`: each service connects as its own user.
    #[serde(default = "default_nats_auth_secret")]
    pub auth_secret: String,
    /// Copies of each JetStream stream and bucket on an external cluster
    /// (`url` set); the in-chart cluster uses its server count.
    #[serde(default = "default_nats_replicas")]
    pub stream_replicas: u32,
    /// A `kubernetes.io/tls` Secret (`tls.crt`, `tls.key`, `ca.crt`, as
    /// cert-manager writes it): the in-chart servers serve clients and
    /// routes with it and the services trust its `ca.crt`; with an external
    /// `tls://` cluster only `ca.crt` is used. Empty: plain NATS.
    #[serde(default)]
    pub tls_secret: String,
    /// How long an archive outage the live log on NATS rides out
    /// (`dvr run --hot-tier-outage`); size `storage` from it
    /// (docs/operations.md).
    #[serde(default = "default_hot_tier_outage")]
    pub hot_tier_outage: String,
}

fn default_nats_replicas() -> u32 {
    3
}

fn default_nats_auth_secret() -> String {
    "dvr-nats".to_owned()
}

fn default_hot_tier_outage() -> String {
    "4h".to_owned()
}

fn default_nats_image() -> String {
    "nats:2.11-alpine".to_owned()
}

fn default_nats_storage() -> String {
    "10Gi".to_owned()
}

/// Requests and limits.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// What the scheduler reserves.
    #[serde(default)]
    pub requests: Option<CpuMemory>,
    /// What the pod may use at most.
    #[serde(default)]
    pub limits: Option<CpuMemory>,
}

/// CPU and memory quantities (Kubernetes notation).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuMemory {
    /// Cores (`"2"`) or millicores (`500m`).
    #[serde(default)]
    pub cpu: Option<String>,
    /// Bytes with a suffix (`256Mi`).
    #[serde(default)]
    pub memory: Option<String>,
}

/// The five services.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Services {
    /// Ingest.
    #[serde(default)]
    pub ingest: Workload,
    /// Recorder.
    #[serde(default)]
    pub recorder: Workload,
    /// Packager.
    #[serde(default)]
    pub packager: Workload,
    /// Auth.
    #[serde(default)]
    pub auth: Workload,
    /// API.
    #[serde(default)]
    pub api: Workload,
}

/// One service's pods.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Pod count (ignored by the packager when it autoscales).
    #[serde(default = "one")]
    pub replicas: u32,
    /// Requests and limits.
    #[serde(default)]
    pub resources: Resources,
    /// Node labels required.
    #[serde(default)]
    pub node_selector: BTreeMap<String, String>,
    /// Taints tolerated.
    #[serde(default)]
    pub tolerations: Vec<Toleration>,
    /// The node's network namespace (ingest only).
    #[serde(default)]
    pub host_network: bool,
    /// Seconds from SIGTERM to SIGKILL.
    #[serde(default = "default_grace")]
    pub termination_grace_seconds: u32,
    /// The PodDisruptionBudget's `maxUnavailable`.
    #[serde(default = "one")]
    pub max_unavailable: u32,
    /// A HorizontalPodAutoscaler (packager only).
    #[serde(default)]
    pub autoscaling: Option<Autoscaling>,
}

impl Default for Workload {
    fn default() -> Self {
        Workload {
            replicas: 1,
            resources: Resources::default(),
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            host_network: false,
            termination_grace_seconds: default_grace(),
            max_unavailable: 1,
            autoscaling: None,
        }
    }
}

fn one() -> u32 {
    1
}

fn default_grace() -> u32 {
    30
}

/// A toleration of a node taint.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Toleration {
    /// Taint key; empty with `Exists` tolerates everything.
    #[serde(default)]
    pub key: Option<String>,
    /// `Equal` or `Exists`.
    #[serde(default)]
    pub operator: Option<TolerationOperator>,
    /// Taint value (with `Equal`).
    #[serde(default)]
    pub value: Option<String>,
    /// `NoSchedule`, `PreferNoSchedule` or `NoExecute`; none: all.
    #[serde(default)]
    pub effect: Option<TaintEffect>,
    /// With `NoExecute`: how long the pod stays after the taint appears.
    #[serde(default)]
    pub toleration_seconds: Option<i64>,
}

/// Toleration operators.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum TolerationOperator {
    /// Key and value match.
    Equal,
    /// The key exists.
    Exists,
}

/// Taint effects.
#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
pub enum TaintEffect {
    /// Not scheduled.
    NoSchedule,
    /// Avoided.
    PreferNoSchedule,
    /// Evicted.
    NoExecute,
}

/// HorizontalPodAutoscaler bounds.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Autoscaling {
    /// Fewest pods.
    pub min_replicas: u32,
    /// Most pods.
    pub max_replicas: u32,
    /// Average CPU target, percent of the request.
    #[serde(default = "default_cpu_target")]
    pub target_cpu_percent: u32,
}

fn default_cpu_target() -> u32 {
    70
}

/// The Ingress.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngressValues {
    /// IngressClass name; empty: the default class.
    #[serde(default)]
    pub class_name: String,
    /// Public host.
    pub host: String,
    /// TLS Secret; empty: no TLS.
    #[serde(default)]
    pub tls_secret: String,
    /// Annotations.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// Values that cannot be rendered: where and why, or the stream config's
/// own error.
#[derive(Debug, thiserror::Error)]
pub enum ValuesError {
    /// The YAML does not fit the model, or a value is out of range.
    #[error(transparent)]
    Values(#[from] ConfigError),
    /// The embedded stream configuration is invalid.
    #[error("{source_name}: config: the stream configuration is invalid: {error}")]
    StreamConfig {
        /// The values file.
        source_name: String,
        /// The stream config's error (its lines count from `config: |`).
        error: ConfigError,
    },
}

impl Values {
    /// Reads and checks a values file's text; `source_name` names it in
    /// errors.
    pub fn from_yaml_str(text: &str, source_name: &str) -> Result<Values, ValuesError> {
        let values: Values = from_yaml_str_as(text, source_name)?;
        values.check(text, source_name)?;
        Ok(values)
    }

    /// The stream configuration as parsed by the DVR itself.
    pub fn stream_config(&self) -> Result<Config, ConfigError> {
        Config::from_yaml_str(&self.config_file(), "values config")
    }

    /// The `dvr.yaml` the pods read: the operator's text plus the archive
    /// root and the trusted proxies.
    pub fn config_file(&self) -> String {
        let mut text = self.config.trim_end().to_owned();
        text.push_str(&format!("\narchive: {}\n", self.archive.root));
        if !self.trusted_proxies.is_empty() {
            let list: Vec<String> = self
                .trusted_proxies
                .iter()
                .map(|p| format!("{p:?}"))
                .collect();
            text.push_str(&format!(
                "http: {{ trusted_proxies: [ {} ] }}\n",
                list.join(", ")
            ));
        }
        text
    }

    fn check(&self, text: &str, source_name: &str) -> Result<(), ValuesError> {
        let fail = |key: &str, message: String| -> Result<(), ValuesError> {
            Err(ConfigError {
                source_name: source_name.to_owned(),
                line: line_of(text, key),
                path: key.to_owned(),
                message,
            }
            .into())
        };
        if self.version != VALUES_VERSION {
            return fail(
                "version",
                format!(
                    "unsupported version {}: this build reads {VALUES_VERSION}",
                    self.version
                ),
            );
        }
        if !is_dns_label(&self.namespace) {
            return fail("namespace", dns_label_message(&self.namespace));
        }
        if !is_dns_label(&self.service_account.name) {
            return fail(
                "service_account.name",
                dns_label_message(&self.service_account.name),
            );
        }
        if let Err(e) = dvr_common::config::root_uri(&self.archive.root) {
            return fail("archive.root", e);
        }
        match (
            self.archive.credentials,
            self.archive.secret_name.is_empty(),
        ) {
            (Credentials::None, false) => {
                return fail(
                    "archive.secret_name",
                    "credentials is none (web identity): remove secret_name or set credentials"
                        .to_owned(),
                )
            }
            (Credentials::S3 | Credentials::Swift | Credentials::Keystone, true) => {
                return fail(
                    "archive.secret_name",
                    "the Secret holding the archive credentials must be named".to_owned(),
                )
            }
            _ => {}
        }
        if self.nats.url.is_empty() && (self.nats.replicas == 0 || self.nats.replicas % 2 == 0) {
            return fail(
                "nats.replicas",
                format!(
                    "{} NATS servers: use an odd number (3 tolerate losing one)",
                    self.nats.replicas
                ),
            );
        }
        if self.nats.auth_secret.is_empty() {
            return fail(
                "nats.auth_secret",
                "the bus is closed: name the Secret with one password per service (docs/operations.md shows the kubectl command)".to_owned(),
            );
        }
        if !self.nats.url.is_empty() && self.nats.stream_replicas == 0 {
            return fail(
                "nats.stream_replicas",
                "at least one copy of each stream".to_owned(),
            );
        }
        match dvr_common::time::parse_duration_ms(&self.nats.hot_tier_outage) {
            Ok(ms) if ms >= 60_000 => {}
            Ok(_) => {
                return fail(
                    "nats.hot_tier_outage",
                    format!("{:?} is under a minute", self.nats.hot_tier_outage),
                )
            }
            Err(e) => {
                return fail(
                    "nats.hot_tier_outage",
                    format!(
                        "invalid duration {:?}: {}",
                        self.nats.hot_tier_outage,
                        e.reason()
                    ),
                )
            }
        }
        let url = &self.nats.url;
        if !(url.is_empty() || url.starts_with("nats://") || url.starts_with("tls://")) {
            return fail(
                "nats.url",
                format!("{:?} is not a nats:// or tls:// URL", self.nats.url),
            );
        }
        if self.config.lines().any(|l| l.starts_with("archive:")) {
            return fail(
                "config",
                "set the archive root in archive.root, not in config".to_owned(),
            );
        }
        if self.config.lines().any(|l| l.starts_with("http:")) {
            return fail(
                "config",
                "the manifests set http (http_port); remove it from config".to_owned(),
            );
        }
        self.stream_config()
            .map_err(|error| ValuesError::StreamConfig {
                source_name: source_name.to_owned(),
                error,
            })?;
        // In a pod, `kubectl port-forward` and sidecars arrive from
        // loopback; the API service would refuse to start, so say it now.
        let api = from_yaml_str_as::<ConfigApi>(&self.config_file(), "values config")
            .map_err(|error| ValuesError::StreamConfig {
                source_name: source_name.to_owned(),
                error,
            })?
            .api
            .unwrap_or_default();
        if api.open_on_loopback {
            return fail(
                "config.api",
                "api.open_on_loopback: the API in a cluster always needs credentials (kubectl port-forward and sidecars reach it from loopback); set it to false".to_owned(),
            );
        }
        if api.tokens.is_empty() && api.users.is_empty() {
            return fail(
                "config.api",
                "the API in a cluster needs credentials: set api.tokens (e.g. [ \"${DVR_ADMIN_TOKEN}\" ]) in config and api_secret to the Secret that holds the variable".to_owned(),
            );
        }
        for (name, w) in self.services.all() {
            if w.host_network && name != "ingest" {
                return fail(
                    &format!("services.{name}.host_network"),
                    "only ingest pods join multicast on the node's network".to_owned(),
                );
            }
            if w.autoscaling.is_some() && name != "packager" {
                return fail(
                    &format!("services.{name}.autoscaling"),
                    "only packagers are stateless enough to autoscale".to_owned(),
                );
            }
            if let Some(a) = &w.autoscaling {
                if a.min_replicas == 0 || a.min_replicas > a.max_replicas {
                    return fail(
                        &format!("services.{name}.autoscaling"),
                        format!(
                            "min_replicas {} must be at least 1 and at most max_replicas {}",
                            a.min_replicas, a.max_replicas
                        ),
                    );
                }
            }
        }
        if let Some(ingress) = &self.ingress {
            if ingress.host.is_empty() || ingress.host.contains(['/', ':', ' ']) {
                return fail(
                    "ingress.host",
                    format!("{:?} is not a host name", ingress.host),
                );
            }
        }
        Ok(())
    }
}

impl Services {
    /// Every service with its name, in a fixed order.
    pub fn all(&self) -> [(&'static str, &Workload); 5] {
        [
            ("ingest", &self.ingest),
            ("recorder", &self.recorder),
            ("packager", &self.packager),
            ("auth", &self.auth),
            ("api", &self.api),
        ]
    }
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// What the manifests check in the stream config's `api:` section (the
/// api crate reads the rest when the pod starts).
#[derive(Debug, Default, Deserialize)]
struct ApiSection {
    /// `api.open_on_loopback`: never in a cluster.
    #[serde(default)]
    open_on_loopback: bool,
    /// `api.tokens`: at least one of these or `users`.
    #[serde(default)]
    tokens: Vec<String>,
    /// `api.users`.
    #[serde(default)]
    users: BTreeMap<String, String>,
}

/// The stream config, only as far as its `api:` section.
#[derive(Debug, Deserialize)]
struct ConfigApi {
    #[serde(default)]
    api: Option<ApiSection>,
}

fn dns_label_message(s: &str) -> String {
    format!("{s:?} is not a DNS label (lowercase letters, digits and '-', at most 63)")
}

/// The 1-based line of a dotted key in block YAML (the last segment, after
/// its parents in order), for errors found after parsing.
fn line_of(text: &str, dotted: &str) -> Option<u64> {
    let mut from = 0;
    let mut found = None;
    let lines: Vec<&str> = text.lines().collect();
    for key in dotted.split('.') {
        let at = lines.iter().enumerate().skip(from).find(|(_, l)| {
            let t = l.trim_start().trim_start_matches("- ");
            t.strip_prefix(key)
                .is_some_and(|rest| rest.trim_start().starts_with(':'))
        })?;
        found = Some(at.0);
        from = at.0 + 1;
    }
    found.and_then(|i| u64::try_from(i + 1).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_of_follows_parents() {
        let text = "a:\n  b: 1\nc:\n  b: 2\n";
        assert_eq!(line_of(text, "c.b"), Some(4));
        assert_eq!(line_of(text, "a.b"), Some(2));
        assert_eq!(line_of(text, "d"), None);
    }
}
