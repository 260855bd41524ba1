//! Values to Kubernetes objects, each built as a typed k8s-openapi struct.
//!
//! No text templates: a field name the API does not know cannot be written,
//! and YAML quoting is the serializer's job, not the template author's.
//! Each object goes to its own file, named `kind-name.yaml`, and the
//! kustomization lists them, so `kubectl apply -k` applies the directory.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment, StatefulSet,
    StatefulSetSpec,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::core::v1::{
    Affinity, Capabilities, ConfigMap, ConfigMapVolumeSource, Container, ContainerPort,
    EmptyDirVolumeSource, EnvFromSource, EnvVar, EnvVarSource, ExecAction, HTTPGetAction,
    KeyToPath, LocalObjectReference, Namespace, ObjectFieldSelector, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodAffinityTerm, PodAntiAffinity, PodSecurityContext, PodSpec,
    PodTemplateSpec, Probe, ResourceRequirements, SeccompProfile, SecretEnvSource,
    SecretKeySelector, SecretVolumeSource, SecurityContext, Service, ServiceAccount, ServicePort,
    ServiceSpec, Toleration, Volume, VolumeMount, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, IngressTLS, ServiceBackendPort,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use k8s_openapi::{Metadata, Resource};
use serde::Serialize;

use crate::values::{Credentials, Resources, Values, Workload};

/// The first line of every rendered file; `write` only ever deletes files
/// that start with it.
pub const HEADER: &str =
    "# Rendered by `dvr deploy render` from a values file (charts/dvr/values.yaml); do not edit.\n";

/// Where the stream config is mounted in every DVR pod.
pub const CONFIG_PATH: &str = "/etc/dvr/dvr.yaml";
/// The pods' writable data directory (an emptyDir).
pub const DATA_DIR: &str = "/var/lib/dvr";
/// UID and GID the pods run as (the image's non-root user).
pub const RUN_AS: i64 = 65532;

/// Ports of the in-chart NATS servers.
const NATS_CLIENT: i32 = 4222;
const NATS_CLUSTER: i32 = 6222;
const NATS_MONITOR: i32 = 8222;

/// One rendered file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// File name, `kind-name.yaml`.
    pub file: String,
    /// Its YAML, header first.
    pub yaml: String,
}

/// A value the serializer refused (never expected: every type is plain data).
#[derive(Debug, thiserror::Error)]
#[error("cannot write {what} as YAML: {message}")]
pub struct RenderError {
    what: String,
    message: String,
}

/// Every object the values describe, then `kustomization.yaml`.
pub fn render(values: &Values) -> Result<Vec<Manifest>, RenderError> {
    let r = Renderer { v: values };
    let mut out = Vec::new();
    out.push(doc(&r.namespace())?);
    out.push(doc(&r.service_account())?);
    out.push(doc(&r.config_map())?);
    if values.nats.url.is_empty() {
        out.push(doc(&r.nats_config())?);
        out.push(doc(&r.nats_headless_service())?);
        out.push(doc(&r.nats_client_service())?);
        out.push(doc(&r.nats_stateful_set())?);
        out.push(doc(&r.pdb("nats", "nats", 1))?);
    }
    for (name, workload) in values.services.all() {
        out.push(doc(&r.deployment(name, workload))?);
        out.push(doc(&r.service(name))?);
        out.push(doc(&r.pdb(
            name,
            &format!("dvr-{name}"),
            workload.max_unavailable,
        ))?);
    }
    if let Some(hpa) = r.packager_hpa() {
        out.push(doc(&hpa)?);
    }
    if let Some(ingress) = r.ingress() {
        out.push(doc(&ingress)?);
    }
    let kustomization = Kustomization {
        api_version: "kustomize.config.k8s.io/v1beta1",
        kind: "Kustomization",
        resources: out.iter().map(|m| m.file.clone()).collect(),
    };
    out.push(Manifest {
        file: "kustomization.yaml".to_owned(),
        yaml: yaml("kustomization", &kustomization)?,
    });
    Ok(out)
}

/// kustomize's file: only what it needs to apply the directory.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Kustomization {
    api_version: &'static str,
    kind: &'static str,
    resources: Vec<String>,
}

fn yaml(what: &str, value: &impl Serialize) -> Result<String, RenderError> {
    let body = serde_saphyr::to_string(value).map_err(|e| RenderError {
        what: what.to_owned(),
        message: e.to_string(),
    })?;
    Ok(format!("{HEADER}{body}"))
}

fn doc<T>(object: &T) -> Result<Manifest, RenderError>
where
    T: Serialize + Resource + Metadata<Ty = ObjectMeta>,
{
    let name = object.metadata().name.clone().unwrap_or_default();
    let file = format!("{}-{name}.yaml", T::KIND.to_ascii_lowercase());
    Ok(Manifest {
        yaml: yaml(&file, object)?,
        file,
    })
}

struct Renderer<'a> {
    v: &'a Values,
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn quantity(s: &str) -> Quantity {
    Quantity(s.to_owned())
}

fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.to_owned()),
        ..EnvVar::default()
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The services, each a NATS user.
pub const NATS_USERS: [&str; 5] = ["ingest", "recorder", "packager", "api", "auth"];

/// The `authorization` block of `nats.conf`: one user per service, its
/// password from the environment, its denials from [`nats_denials`].
pub fn nats_authorization() -> String {
    let list = |subjects: &[&str]| {
        subjects
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut conf = String::from("authorization {\n  users: [\n");
    for user in NATS_USERS {
        let (publish, subscribe) = nats_denials(user);
        conf.push_str(&format!(
            "    {{ user: {user}, password: ${}, permissions: {{ publish: {{ allow: [\">\"], deny: [{}] }}, subscribe: {{ allow: [\">\"], deny: [{}] }} }} }}\n",
            nats_password_key(user),
            list(&publish),
            list(&subscribe)
        ));
    }
    conf.push_str("  ]\n}\n");
    conf
}

/// The Secret key holding a service's NATS password.
fn nats_password_key(service: &str) -> String {
    format!("DVR_NATS_{}_PASSWORD", service.to_ascii_uppercase())
}

/// What a service may not do on the bus; everything else it may. The
/// internet-facing packager only reads: it appends to no live log, writes
/// no segment bytes, no setting, lock, lease, catalog entry, session or
/// runtime report, and deletes or purges no stream (it writes export jobs,
/// which it runs). The others may not
/// write what only other services write. Only auth answers play checks. Subjects as
/// `dvr-proto` names them (`$KV.bucket.key`, `$O.bucket.…` are how
/// JetStream writes keys and objects; reads go through `$JS.API.…`).
fn nats_denials(service: &str) -> (Vec<&'static str>, Vec<&'static str>) {
    const LIVE: &str = "dvr.v1.live.>";
    const SEGMENTS: &str = "$O.dvr_v1_segments.>";
    const STREAMS: &str = "$KV.dvr_v1_streams.>";
    const LOCKS: &str = "$KV.dvr_v1_locks.>";
    const LEASES: &str = "$KV.dvr_v1_leases.>";
    const CATALOG: &str = "$KV.dvr_v1_catalog.>";
    const SESSIONS: &str = "$KV.dvr_v1_sessions.>";
    const RUNTIME: &str = "$KV.dvr_v1_runtime.>";
    const EXPORTS: &str = "$KV.dvr_v1_exports.>";
    const DESTROY: [&str; 3] = [
        "$JS.API.STREAM.DELETE.>",
        "$JS.API.STREAM.PURGE.>",
        "$JS.API.STREAM.MSG.DELETE.>",
    ];
    const ANSWER_AUTH: [&str; 2] = ["dvr.v1.auth.check", "dvr.v1.auth.usage"];
    let publish: Vec<&str> = match service {
        "packager" => [
            LIVE, SEGMENTS, STREAMS, LOCKS, LEASES, CATALOG, SESSIONS, RUNTIME,
        ]
        .into_iter()
        .chain(DESTROY)
        .collect(),
        // Every other service seeds the settings at start.
        "ingest" => vec![LOCKS, CATALOG, SESSIONS, EXPORTS],
        "recorder" => vec![LIVE, SESSIONS, EXPORTS],
        "api" => [LIVE, SEGMENTS, LEASES, CATALOG, RUNTIME]
            .into_iter()
            .chain(DESTROY)
            .collect(),
        "auth" => [LIVE, SEGMENTS, LOCKS, LEASES, CATALOG, RUNTIME, EXPORTS]
            .into_iter()
            .chain(DESTROY)
            .collect(),
        _ => Vec::new(),
    };
    let subscribe = if service == "auth" {
        Vec::new()
    } else {
        ANSWER_AUTH.to_vec()
    };
    (publish, subscribe)
}

fn field_env(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                ..ObjectFieldSelector::default()
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..VolumeMount::default()
    }
}

fn empty_dir(name: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource::default()),
        ..Volume::default()
    }
}

/// A Secret's keys as files (`keys`: all of them when empty).
fn secret_volume(name: &str, secret: &str, keys: &[&str]) -> Volume {
    Volume {
        name: name.to_owned(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(secret.to_owned()),
            items: (!keys.is_empty()).then(|| {
                keys.iter()
                    .map(|k| KeyToPath {
                        key: (*k).to_owned(),
                        path: (*k).to_owned(),
                        ..KeyToPath::default()
                    })
                    .collect()
            }),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// Where pods find the NATS TLS Secret's files.
pub const NATS_TLS_DIR: &str = "/etc/nats-tls";

/// A `tls { … }` block of `nats.conf` for the files in `dir` (a server
/// certificate, its key and the CA that verifies peers), for the client
/// port and, inside `cluster`, for routes.
pub fn nats_tls(dir: &str, indent: &str) -> String {
    format!(
        "{indent}tls {{\n{indent}  cert_file: \"{dir}/tls.crt\"\n{indent}  key_file: \"{dir}/tls.key\"\n\
         {indent}  ca_file: \"{dir}/ca.crt\"\n{indent}  timeout: 5\n{indent}}}\n"
    )
}

fn config_volume(name: &str, config_map: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        config_map: Some(ConfigMapVolumeSource {
            name: config_map.to_owned(),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    }
}

fn http_probe(path: &str, port: &str, period: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.to_owned()),
            port: IntOrString::String(port.to_owned()),
            ..HTTPGetAction::default()
        }),
        period_seconds: Some(period),
        failure_threshold: Some(failures),
        timeout_seconds: Some(2),
        ..Probe::default()
    }
}

fn resources(r: &Resources) -> Option<ResourceRequirements> {
    let side = |cm: &Option<crate::values::CpuMemory>| {
        cm.as_ref().map(|cm| {
            let mut m = BTreeMap::new();
            if let Some(cpu) = &cm.cpu {
                m.insert("cpu".to_owned(), quantity(cpu));
            }
            if let Some(memory) = &cm.memory {
                m.insert("memory".to_owned(), quantity(memory));
            }
            m
        })
    };
    (r.requests.is_some() || r.limits.is_some()).then(|| ResourceRequirements {
        requests: side(&r.requests),
        limits: side(&r.limits),
        ..ResourceRequirements::default()
    })
}

/// Non-root, read-only root filesystem, no privilege escalation, no
/// capabilities: the DVR needs none (multicast joins and ports above 1024
/// are unprivileged).
fn container_security() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        run_as_non_root: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            ..Capabilities::default()
        }),
        ..SecurityContext::default()
    }
}

fn pod_security(uid: i64) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(uid),
        run_as_group: Some(uid),
        fs_group: Some(uid),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            ..SeccompProfile::default()
        }),
        ..PodSecurityContext::default()
    }
}

fn tolerations(w: &Workload) -> Option<Vec<Toleration>> {
    (!w.tolerations.is_empty()).then(|| {
        w.tolerations
            .iter()
            .map(|t| Toleration {
                key: t.key.clone(),
                operator: t.operator.map(|o| format!("{o:?}")),
                value: t.value.clone(),
                effect: t.effect.map(|e| format!("{e:?}")),
                toleration_seconds: t.toleration_seconds,
            })
            .collect()
    })
}

impl Renderer<'_> {
    fn meta(&self, name: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.v.namespace.clone()),
            labels: Some(labels),
            ..ObjectMeta::default()
        }
    }

    /// Labels that select a component's pods (stable across upgrades).
    fn selector(component: &str, app: &str) -> BTreeMap<String, String> {
        map(&[
            ("app.kubernetes.io/name", app),
            ("app.kubernetes.io/component", component),
        ])
    }

    /// Selector labels plus the descriptive ones.
    fn labels(&self, component: &str, app: &str) -> BTreeMap<String, String> {
        let mut labels = Self::selector(component, app);
        labels.extend(map(&[
            ("app.kubernetes.io/part-of", "dvr"),
            ("app.kubernetes.io/managed-by", "dvr-deploy"),
        ]));
        if app == "dvr" {
            labels.insert(
                "app.kubernetes.io/version".to_owned(),
                self.v.image.tag.clone(),
            );
        }
        labels
    }

    fn namespace(&self) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some(self.v.namespace.clone()),
                labels: Some(map(&[
                    ("app.kubernetes.io/part-of", "dvr"),
                    ("app.kubernetes.io/managed-by", "dvr-deploy"),
                    // The DVR's pods meet the restricted Pod Security
                    // Standard, except ingest's host network: baseline
                    // would refuse that too, so only warn about it.
                    ("pod-security.kubernetes.io/warn", "restricted"),
                ])),
                ..ObjectMeta::default()
            },
            ..Namespace::default()
        }
    }

    fn service_account(&self) -> ServiceAccount {
        let sa = &self.v.service_account;
        let mut metadata = self.meta(&sa.name, self.labels("dvr", "dvr"));
        metadata.annotations = (!sa.annotations.is_empty()).then(|| sa.annotations.clone());
        ServiceAccount {
            metadata,
            // The pods never talk to the API server; a web-identity webhook
            // projects its own token, so none is mounted by default.
            automount_service_account_token: Some(false),
            ..ServiceAccount::default()
        }
    }

    fn config_map(&self) -> ConfigMap {
        ConfigMap {
            metadata: self.meta("dvr-config", self.labels("dvr", "dvr")),
            data: Some(BTreeMap::from([(
                "dvr.yaml".to_owned(),
                self.v.config_file(),
            )])),
            ..ConfigMap::default()
        }
    }

    fn nats_url(&self) -> String {
        if self.v.nats.url.is_empty() {
            let scheme = if self.v.nats.tls_secret.is_empty() {
                "nats"
            } else {
                "tls"
            };
            format!("{scheme}://nats:{NATS_CLIENT}")
        } else {
            self.v.nats.url.clone()
        }
    }

    /// Copies of each JetStream stream: the in-chart cluster's size, or
    /// what the values say for an external one.
    fn stream_replicas(&self) -> u32 {
        if self.v.nats.url.is_empty() {
            self.v.nats.replicas
        } else {
            self.v.nats.stream_replicas
        }
    }

    fn archive_env(&self) -> (Vec<EnvVar>, Option<Vec<EnvFromSource>>) {
        let a = &self.v.archive;
        let mut vars = Vec::new();
        if !a.endpoint.is_empty() {
            vars.push(env("AWS_ENDPOINT_URL", &a.endpoint));
        }
        if !a.region.is_empty() {
            vars.push(env("AWS_REGION", &a.region));
        }
        let from = (a.credentials != Credentials::None).then(|| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: a.secret_name.clone(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            }]
        });
        (vars, from)
    }

    fn deployment(&self, name: &str, w: &Workload) -> Deployment {
        let v = self.v;
        let component = name;
        let full = format!("dvr-{name}");
        let mut env = vec![
            env("RUST_LOG", &v.log_level),
            env("OTEL_SERVICE_NAME", &full),
            field_env("POD_NAME", "metadata.name"),
            field_env("NODE_NAME", "spec.nodeName"),
        ];
        if !v.otlp_endpoint.is_empty() {
            env.push(self::env("OTEL_EXPORTER_OTLP_ENDPOINT", &v.otlp_endpoint));
        }
        // Each service is its own NATS user, with the permissions
        // `nats_denials` gives it.
        env.push(self::env("DVR_NATS_USER", name));
        env.push(secret_env(
            "DVR_NATS_PASSWORD",
            &v.nats.auth_secret,
            &nats_password_key(name),
        ));
        // The CA that signed the NATS servers' certificate (only ca.crt is
        // mounted: a service pod never holds the servers' key).
        if !v.nats.tls_secret.is_empty() {
            env.push(self::env("DVR_NATS_CA", &format!("{NATS_TLS_DIR}/ca.crt")));
        }
        // Who touches the archive: the recorder writes it, the packager and
        // the API read it (and lock ranges); ingest and auth never do.
        let mut env_from: Option<Vec<EnvFromSource>> = None;
        if matches!(name, "recorder" | "packager" | "api") {
            let (vars, from) = self.archive_env();
            env.extend(vars);
            env_from = from;
        }
        // The API's credentials (`${VAR}`s of the config's `api:` section)
        // reach its pods only: no other service reads that section.
        if name == "api" && !v.api_secret.is_empty() {
            env_from.get_or_insert_with(Vec::new).push(EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: v.api_secret.clone(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            });
        }
        let port = i32::from(v.http_port);
        let container = Container {
            name: name.to_owned(),
            image: Some(format!("{}:{}", v.image.repository, v.image.tag)),
            image_pull_policy: Some(v.image.pull_policy.as_str().to_owned()),
            args: Some(
                [
                    "--log-format",
                    "json",
                    "run",
                    "--services",
                    name,
                    "--nats",
                    &self.nats_url(),
                    "--nats-replicas",
                    &self.stream_replicas().to_string(),
                    "--hot-tier-outage",
                    &v.nats.hot_tier_outage,
                    "--config",
                    CONFIG_PATH,
                    "--data-dir",
                    DATA_DIR,
                    "--listen",
                    &format!("0.0.0.0:{port}"),
                ]
                .map(str::to_owned)
                .to_vec(),
            ),
            ports: Some(vec![ContainerPort {
                name: Some("http".to_owned()),
                container_port: port,
                protocol: Some("TCP".to_owned()),
                ..ContainerPort::default()
            }]),
            env: Some(env),
            env_from,
            resources: resources(&w.resources),
            liveness_probe: Some(http_probe("/healthz", "http", 10, 3)),
            readiness_probe: Some(http_probe("/readyz", "http", 5, 2)),
            // Loading the catalog or taking over leases can take a while
            // on a big archive: a minute before liveness counts.
            startup_probe: Some(http_probe("/healthz", "http", 2, 30)),
            security_context: Some(container_security()),
            volume_mounts: Some(
                [
                    mount("config", "/etc/dvr", true),
                    mount("data", DATA_DIR, false),
                    mount("tmp", "/tmp", false),
                ]
                .into_iter()
                .chain(
                    (!v.nats.tls_secret.is_empty()).then(|| mount("nats-tls", NATS_TLS_DIR, true)),
                )
                .collect(),
            ),
            ..Container::default()
        };
        let host_network = w.host_network;
        let pod = PodSpec {
            service_account_name: Some(v.service_account.name.clone()),
            automount_service_account_token: Some(false),
            containers: vec![container],
            security_context: Some(pod_security(RUN_AS)),
            termination_grace_period_seconds: Some(i64::from(w.termination_grace_seconds)),
            node_selector: (!w.node_selector.is_empty()).then(|| w.node_selector.clone()),
            tolerations: tolerations(w),
            host_network: host_network.then_some(true),
            // On the node's network, cluster DNS must still resolve `nats`.
            dns_policy: host_network.then(|| "ClusterFirstWithHostNet".to_owned()),
            // Two pods on the host network of one node would share a port.
            affinity: host_network.then(|| Affinity {
                pod_anti_affinity: Some(PodAntiAffinity {
                    required_during_scheduling_ignored_during_execution: Some(vec![
                        PodAffinityTerm {
                            label_selector: Some(LabelSelector {
                                match_labels: Some(Self::selector(component, "dvr")),
                                ..LabelSelector::default()
                            }),
                            topology_key: "kubernetes.io/hostname".to_owned(),
                            ..PodAffinityTerm::default()
                        },
                    ]),
                    ..PodAntiAffinity::default()
                }),
                ..Affinity::default()
            }),
            image_pull_secrets: (!v.image.pull_secrets.is_empty()).then(|| {
                v.image
                    .pull_secrets
                    .iter()
                    .map(|n| LocalObjectReference { name: n.clone() })
                    .collect()
            }),
            volumes: Some(
                [
                    config_volume("config", "dvr-config"),
                    empty_dir("data"),
                    empty_dir("tmp"),
                ]
                .into_iter()
                .chain(
                    (!v.nats.tls_secret.is_empty())
                        .then(|| secret_volume("nats-tls", &v.nats.tls_secret, &["ca.crt"])),
                )
                .collect(),
            ),
            ..PodSpec::default()
        };
        let autoscaled = w.autoscaling.is_some();
        Deployment {
            metadata: self.meta(&full, self.labels(component, "dvr")),
            spec: Some(DeploymentSpec {
                // Under an autoscaler the replica count is its to set; a
                // fixed one here would fight it on every apply.
                replicas: (!autoscaled).then(|| i32::try_from(w.replicas).unwrap_or(i32::MAX)),
                selector: LabelSelector {
                    match_labels: Some(Self::selector(component, "dvr")),
                    ..LabelSelector::default()
                },
                // Replace one pod at a time; on the host network a new pod
                // cannot start beside the old one, so the old one goes first.
                strategy: Some(DeploymentStrategy {
                    type_: Some("RollingUpdate".to_owned()),
                    rolling_update: Some(RollingUpdateDeployment {
                        max_surge: Some(IntOrString::Int(i32::from(!host_network))),
                        max_unavailable: Some(IntOrString::Int(i32::from(host_network))),
                    }),
                }),
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.labels(component, "dvr")),
                        annotations: Some(map(&[
                            ("prometheus.io/scrape", "true"),
                            ("prometheus.io/port", &v.http_port.to_string()),
                            ("prometheus.io/path", "/metrics"),
                        ])),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(pod),
                },
                ..DeploymentSpec::default()
            }),
            ..Deployment::default()
        }
    }

    fn service(&self, name: &str) -> Service {
        let port = i32::from(self.v.http_port);
        Service {
            metadata: self.meta(&format!("dvr-{name}"), self.labels(name, "dvr")),
            spec: Some(ServiceSpec {
                selector: Some(Self::selector(name, "dvr")),
                ports: Some(vec![ServicePort {
                    name: Some("http".to_owned()),
                    port,
                    target_port: Some(IntOrString::String("http".to_owned())),
                    protocol: Some("TCP".to_owned()),
                    ..ServicePort::default()
                }]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn pdb(&self, component: &str, name: &str, max_unavailable: u32) -> PodDisruptionBudget {
        let app = if component == "nats" { "nats" } else { "dvr" };
        PodDisruptionBudget {
            metadata: self.meta(name, self.labels(component, app)),
            spec: Some(PodDisruptionBudgetSpec {
                max_unavailable: Some(IntOrString::Int(
                    i32::try_from(max_unavailable).unwrap_or(1),
                )),
                selector: Some(LabelSelector {
                    match_labels: Some(Self::selector(component, app)),
                    ..LabelSelector::default()
                }),
                ..PodDisruptionBudgetSpec::default()
            }),
            ..PodDisruptionBudget::default()
        }
    }

    fn packager_hpa(&self) -> Option<HorizontalPodAutoscaler> {
        let a = self.v.services.packager.autoscaling.as_ref()?;
        let count = |n: u32| i32::try_from(n).unwrap_or(i32::MAX);
        Some(HorizontalPodAutoscaler {
            metadata: self.meta("dvr-packager", self.labels("packager", "dvr")),
            spec: Some(HorizontalPodAutoscalerSpec {
                scale_target_ref: CrossVersionObjectReference {
                    api_version: Some("apps/v1".to_owned()),
                    kind: "Deployment".to_owned(),
                    name: "dvr-packager".to_owned(),
                },
                min_replicas: Some(count(a.min_replicas)),
                max_replicas: count(a.max_replicas),
                metrics: Some(vec![MetricSpec {
                    type_: "Resource".to_owned(),
                    resource: Some(ResourceMetricSource {
                        name: "cpu".to_owned(),
                        target: MetricTarget {
                            type_: "Utilization".to_owned(),
                            average_utilization: Some(count(a.target_cpu_percent)),
                            ..MetricTarget::default()
                        },
                    }),
                    ..MetricSpec::default()
                }]),
                ..HorizontalPodAutoscalerSpec::default()
            }),
            ..HorizontalPodAutoscaler::default()
        })
    }

    fn ingress(&self) -> Option<Ingress> {
        let i = self.v.ingress.as_ref()?;
        let backend = |service: &str| IngressBackend {
            service: Some(IngressServiceBackend {
                name: service.to_owned(),
                port: Some(ServiceBackendPort {
                    name: Some("http".to_owned()),
                    ..ServiceBackendPort::default()
                }),
            }),
            ..IngressBackend::default()
        };
        let path = |p: &str, service: &str| HTTPIngressPath {
            path: Some(p.to_owned()),
            path_type: "Prefix".to_owned(),
            backend: backend(service),
        };
        let mut metadata = self.meta("dvr", self.labels("ingress", "dvr"));
        metadata.annotations = (!i.annotations.is_empty()).then(|| i.annotations.clone());
        Some(Ingress {
            metadata,
            spec: Some(IngressSpec {
                ingress_class_name: (!i.class_name.is_empty()).then(|| i.class_name.clone()),
                tls: (!i.tls_secret.is_empty()).then(|| {
                    vec![IngressTLS {
                        hosts: Some(vec![i.host.clone()]),
                        secret_name: Some(i.tls_secret.clone()),
                    }]
                }),
                rules: Some(vec![IngressRule {
                    host: Some(i.host.clone()),
                    http: Some(HTTPIngressRuleValue {
                        // The longest prefix wins: `/api…` to the API, every
                        // other path (`/STREAM/…` playback URLs) to packagers.
                        paths: vec![path("/api", "dvr-api"), path("/", "dvr-packager")],
                    }),
                }]),
                ..IngressSpec::default()
            }),
            ..Ingress::default()
        })
    }

    // ---- the in-chart NATS cluster ----

    fn nats_labels(&self) -> BTreeMap<String, String> {
        self.labels("nats", "nats")
    }

    /// `nats.conf`: JetStream on the volume, a route to every peer by its
    /// stable StatefulSet name, lame-duck mode on shutdown so clients move
    /// before the server goes, and one user per service (passwords from
    /// the auth Secret's environment, `$DVR_NATS_…_PASSWORD`).
    fn nats_conf(&self) -> String {
        let n = self.v.nats.replicas;
        let mut conf = format!(
            "server_name: $POD_NAME\nlisten: 0.0.0.0:{NATS_CLIENT}\nhttp: 0.0.0.0:{NATS_MONITOR}\n\
             pid_file: /var/run/nats/nats.pid\nlame_duck_duration: 30s\nlame_duck_grace_period: 10s\n\
             jetstream {{\n  store_dir: /data\n}}\n"
        );
        let tls = !self.v.nats.tls_secret.is_empty();
        if tls {
            conf.push_str(&nats_tls(NATS_TLS_DIR, ""));
        }
        conf.push_str(&nats_authorization());
        if n > 1 {
            conf.push_str(&format!(
                "cluster {{\n  name: dvr\n  listen: 0.0.0.0:{NATS_CLUSTER}\n  routes: [\n"
            ));
            for i in 0..n {
                conf.push_str(&format!(
                    "    nats://nats-{i}.nats-headless:{NATS_CLUSTER}\n"
                ));
            }
            conf.push_str("  ]\n");
            if tls {
                conf.push_str(&nats_tls(NATS_TLS_DIR, "  "));
            }
            conf.push_str("}\n");
        }
        conf
    }

    fn nats_config(&self) -> ConfigMap {
        ConfigMap {
            metadata: self.meta("nats-config", self.nats_labels()),
            data: Some(BTreeMap::from([("nats.conf".to_owned(), self.nats_conf())])),
            ..ConfigMap::default()
        }
    }

    fn nats_port(name: &str, port: i32) -> ServicePort {
        ServicePort {
            name: Some(name.to_owned()),
            port,
            target_port: Some(IntOrString::String(name.to_owned())),
            protocol: Some("TCP".to_owned()),
            ..ServicePort::default()
        }
    }

    /// The peers' stable DNS names (`nats-0.nats-headless`), published
    /// before they are ready so the cluster can form.
    fn nats_headless_service(&self) -> Service {
        Service {
            metadata: self.meta("nats-headless", self.nats_labels()),
            spec: Some(ServiceSpec {
                cluster_ip: Some("None".to_owned()),
                publish_not_ready_addresses: Some(true),
                selector: Some(Self::selector("nats", "nats")),
                ports: Some(vec![
                    Self::nats_port("client", NATS_CLIENT),
                    Self::nats_port("cluster", NATS_CLUSTER),
                    Self::nats_port("monitor", NATS_MONITOR),
                ]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn nats_client_service(&self) -> Service {
        Service {
            metadata: self.meta("nats", self.nats_labels()),
            spec: Some(ServiceSpec {
                selector: Some(Self::selector("nats", "nats")),
                ports: Some(vec![Self::nats_port("client", NATS_CLIENT)]),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    fn nats_stateful_set(&self) -> StatefulSet {
        let n = &self.v.nats;
        let port = |name: &str, p: i32| ContainerPort {
            name: Some(name.to_owned()),
            container_port: p,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        };
        let health = |query: &str, period: i32, failures: i32| Probe {
            http_get: Some(HTTPGetAction {
                path: Some(format!("/healthz?{query}")),
                port: IntOrString::String("monitor".to_owned()),
                ..HTTPGetAction::default()
            }),
            period_seconds: Some(period),
            failure_threshold: Some(failures),
            timeout_seconds: Some(5),
            ..Probe::default()
        };
        let container = Container {
            name: "nats".to_owned(),
            image: Some(n.image.clone()),
            args: Some(vec![
                "--config".to_owned(),
                "/etc/nats/nats.conf".to_owned(),
            ]),
            ports: Some(vec![
                port("client", NATS_CLIENT),
                port("cluster", NATS_CLUSTER),
                port("monitor", NATS_MONITOR),
            ]),
            env: Some(vec![field_env("POD_NAME", "metadata.name")]),
            // The services' passwords, which nats.conf names.
            env_from: Some(vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: n.auth_secret.clone(),
                    optional: Some(false),
                }),
                ..EnvFromSource::default()
            }]),
            resources: resources(&n.resources),
            // Ready once it serves clients; alive while JetStream is;
            // catching up a stream after a restart may take minutes.
            startup_probe: Some(health("js-enabled-only=true", 10, 90)),
            liveness_probe: Some(health("js-enabled-only=true", 30, 3)),
            readiness_probe: Some(health("js-server-only=true", 10, 3)),
            lifecycle: Some(k8s_openapi::api::core::v1::Lifecycle {
                pre_stop: Some(k8s_openapi::api::core::v1::LifecycleHandler {
                    exec: Some(ExecAction {
                        command: Some(
                            ["nats-server", "-sl=ldm=/var/run/nats/nats.pid"]
                                .map(str::to_owned)
                                .to_vec(),
                        ),
                    }),
                    ..k8s_openapi::api::core::v1::LifecycleHandler::default()
                }),
                ..k8s_openapi::api::core::v1::Lifecycle::default()
            }),
            security_context: Some(container_security()),
            volume_mounts: Some(
                [
                    mount("config", "/etc/nats", true),
                    mount("data", "/data", false),
                    mount("run", "/var/run/nats", false),
                ]
                .into_iter()
                .chain((!n.tls_secret.is_empty()).then(|| mount("nats-tls", NATS_TLS_DIR, true)))
                .collect(),
            ),
            ..Container::default()
        };
        let claim = PersistentVolumeClaim {
            metadata: ObjectMeta {
                name: Some("data".to_owned()),
                ..ObjectMeta::default()
            },
            spec: Some(PersistentVolumeClaimSpec {
                access_modes: Some(vec!["ReadWriteOnce".to_owned()]),
                storage_class_name: (!n.storage_class.is_empty()).then(|| n.storage_class.clone()),
                resources: Some(VolumeResourceRequirements {
                    requests: Some(BTreeMap::from([(
                        "storage".to_owned(),
                        quantity(&n.storage),
                    )])),
                    ..VolumeResourceRequirements::default()
                }),
                ..PersistentVolumeClaimSpec::default()
            }),
            ..PersistentVolumeClaim::default()
        };
        StatefulSet {
            metadata: self.meta("nats", self.nats_labels()),
            spec: Some(StatefulSetSpec {
                replicas: Some(i32::try_from(n.replicas).unwrap_or(3)),
                service_name: Some("nats-headless".to_owned()),
                // Peers start together: a JetStream cluster needs a quorum
                // to elect its meta leader, which one-by-one would delay.
                pod_management_policy: Some("Parallel".to_owned()),
                selector: LabelSelector {
                    match_labels: Some(Self::selector("nats", "nats")),
                    ..LabelSelector::default()
                },
                template: PodTemplateSpec {
                    metadata: Some(ObjectMeta {
                        labels: Some(self.nats_labels()),
                        ..ObjectMeta::default()
                    }),
                    spec: Some(PodSpec {
                        containers: vec![container],
                        security_context: Some(pod_security(1000)),
                        automount_service_account_token: Some(false),
                        termination_grace_period_seconds: Some(60),
                        // One server per node: losing a node loses one peer.
                        affinity: Some(Affinity {
                            pod_anti_affinity: Some(PodAntiAffinity {
                                required_during_scheduling_ignored_during_execution: Some(vec![
                                    PodAffinityTerm {
                                        label_selector: Some(LabelSelector {
                                            match_labels: Some(Self::selector("nats", "nats")),
                                            ..LabelSelector::default()
                                        }),
                                        topology_key: "kubernetes.io/hostname".to_owned(),
                                        ..PodAffinityTerm::default()
                                    },
                                ]),
                                ..PodAntiAffinity::default()
                            }),
                            ..Affinity::default()
                        }),
                        volumes: Some(
                            [config_volume("config", "nats-config"), empty_dir("run")]
                                .into_iter()
                                .chain(
                                    (!n.tls_secret.is_empty())
                                        .then(|| secret_volume("nats-tls", &n.tls_secret, &[])),
                                )
                                .collect(),
                        ),
                        ..PodSpec::default()
                    }),
                },
                volume_claim_templates: Some(vec![claim]),
                ..StatefulSetSpec::default()
            }),
            ..StatefulSet::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nats_routes_name_every_peer() {
        let text =
            std::fs::read_to_string(dvr_common::fuzz_corpus::repo_path("charts/dvr/values.yaml"))
                .unwrap();
        let values = Values::from_yaml_str(&text, "values.yaml").unwrap();
        let conf = Renderer { v: &values }.nats_conf();
        for i in 0..3 {
            assert!(
                conf.contains(&format!("nats://nats-{i}.nats-headless:6222")),
                "{conf}"
            );
        }
    }
}
