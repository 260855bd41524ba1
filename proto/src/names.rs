//! Names on the wire: subjects, JetStream streams, KV and object-store
//! buckets, headers, and the escaping of stream names into subject tokens.
//!
//! A DVR stream name may contain `.` (`channel-1.backup`), which NATS reads
//! as a token separator, so it is escaped as `%2E` wherever it becomes part
//! of a subject; `%` never occurs in a valid stream name, so the escaping is
//! reversible. Object names and KV values carry the name unescaped.

use dvr_common::StreamName;

/// Prefix of every subject of this protocol version.
pub const SUBJECT_PREFIX: &str = "dvr.v1";

/// The JetStream stream holding every live log's segment descriptors.
pub const LIVE_STREAM: &str = "DVR_V1_LIVE";
/// The subjects [`LIVE_STREAM`] captures.
pub const LIVE_STREAM_SUBJECTS: &str = "dvr.v1.live.>";
/// Object-store bucket holding segment bytes (chunked by the object store,
/// 128 KiB per message, so no message nears the 1 MiB max payload).
pub const SEGMENTS_OBJECT_BUCKET: &str = "dvr_v1_segments";
/// Chunk size used when storing segment bytes.
pub const SEGMENT_CHUNK_BYTES: usize = 128 * 1024;

/// KV bucket: stream configuration, key = escaped stream name, value = the
/// stream's config as JSON (watched by every service).
pub const STREAMS_KV_BUCKET: &str = "dvr_v1_streams";
/// KV bucket: ownership leases, key `{role}.{escaped stream}`.
pub const LEASES_KV_BUCKET: &str = "dvr_v1_leases";
/// KV bucket: the catalog of archived chunks.
pub const CATALOG_KV_BUCKET: &str = "dvr_v1_catalog";
/// KV bucket: one key per stream ([`lock_edit_key`]) held while its
/// `locks.json` is edited or retention plans and deletes, so a lock written
/// meanwhile is never deleted under it. The locks themselves live in the
/// archive.
pub const LOCKS_KV_BUCKET: &str = "dvr_v1_locks";
/// KV bucket: play sessions, key = the session id (hex), value a
/// [`SessionRecord`](crate::SessionRecord) as JSON.
pub const SESSIONS_KV_BUCKET: &str = "dvr_v1_sessions";
/// KV bucket: what the services running a stream report about it (today
/// the ingest: the input playing and its counters, an
/// [`IngestReport`](crate::IngestReport)), key [`runtime_key`]. On NATS
/// its entries expire [`RUNTIME_MAX_AGE_SECS`] after their last write, so
/// the report of a node that died goes with it; a writer rewrites its
/// entries well within that and deletes them when it stops.
pub const RUNTIME_KV_BUCKET: &str = "dvr_v1_runtime";
/// How long a [`RUNTIME_KV_BUCKET`] entry lives without being rewritten.
pub const RUNTIME_MAX_AGE_SECS: u64 = 30;

/// KV bucket: the nonces of origin-to-origin requests signed with the
/// cluster key (`dvr_cluster`), key `n.{nonce}`: a nonce is taken once, by
/// whichever replica sees it first, so a request replayed to any replica is
/// refused. Entries expire [`CLUSTER_NONCE_MAX_AGE_SECS`] after their write,
/// longer than a signature stays acceptable
/// ([`CLUSTER_SIGNATURE_WINDOW_SECS`] either side of its date).
pub const CLUSTER_NONCES_KV_BUCKET: &str = "dvr_v1_cluster_nonces";
/// How far a signed request's date may be from the receiver's clock.
pub const CLUSTER_SIGNATURE_WINDOW_SECS: u64 = 30;
/// How long a [`CLUSTER_NONCES_KV_BUCKET`] entry lives.
pub const CLUSTER_NONCE_MAX_AGE_SECS: u64 = 4 * CLUSTER_SIGNATURE_WINDOW_SECS;

/// How long the entries of `bucket` live after their last write; `None`
/// for buckets whose entries stay until deleted.
pub fn kv_max_age_secs(bucket: &str) -> Option<u64> {
    match bucket {
        RUNTIME_KV_BUCKET => Some(RUNTIME_MAX_AGE_SECS),
        CLUSTER_NONCES_KV_BUCKET => Some(CLUSTER_NONCE_MAX_AGE_SECS),
        _ => None,
    }
}

/// KV bucket: the streams `sources:` put in [`STREAMS_KV_BUCKET`], key
/// [`stream_config_key`]: what the sources' follower may change or delete
/// there (a stream not listed here was configured, and wins).
pub const SOURCES_KV_BUCKET: &str = "dvr_v1_sources";

/// KV bucket: MP4 export jobs (`save-mp4`, the API's export), key
/// [`export_job_key`], value an [`ExportJob`](crate::ExportJob); the
/// replica running one holds [`export_held_key`] in the same bucket
/// (`dvr_bus::Exclusive`), so after a crash another takes it over.
pub const EXPORTS_KV_BUCKET: &str = "dvr_v1_exports";

/// Key in [`EXPORTS_KV_BUCKET`] of an export job's record.
pub fn export_job_key(id: &str) -> String {
    format!("job.{id}")
}

/// Key in [`EXPORTS_KV_BUCKET`] held while a replica runs job `id`.
pub fn export_held_key(id: &str) -> String {
    format!("held.{id}")
}

/// Where an export is written in its stream's archive store:
/// `exports/{stream}/{file}`.
pub fn export_object_key(stream: &StreamName, file: &str) -> String {
    format!("exports/{stream}/{file}")
}

/// Header: JetStream de-duplication id; the live log sets it to
/// [`segment_msg_id`] so a retried append is stored once.
pub const HEADER_MSG_ID: &str = "Nats-Msg-Id";
/// Header: the protocol version of a message, `1`.
pub const HEADER_PROTO_VERSION: &str = "Dvr-Proto";
/// Header on an error reply to a request: the error kind (`not_found`,
/// `unavailable`, …) as `dvr_common::ErrorKind` names it.
pub const HEADER_ERROR_KIND: &str = "Dvr-Error-Kind";

/// Subject for the auth service's play check (request/reply).
pub const AUTH_CHECK_SUBJECT: &str = "dvr.v1.auth.check";
/// Subject on which packagers report the bytes they served per session
/// (request/reply, a [`SessionUsage`](crate::SessionUsage); the reply is
/// empty).
pub const AUTH_USAGE_SUBJECT: &str = "dvr.v1.auth.usage";
/// Queue group the auth service's replicas answer [`AUTH_CHECK_SUBJECT`]
/// and [`AUTH_USAGE_SUBJECT`] in, so each request is answered once.
pub const AUTH_QUEUE_GROUP: &str = "dvr-auth";
/// Wildcard matching every event of every stream.
pub const EVENTS_ALL: &str = "dvr.v1.events.>";

/// Escapes a stream name into one subject token (`.` becomes `%2E`).
pub fn stream_token(stream: &StreamName) -> String {
    stream.as_str().replace('.', "%2E")
}

/// The inverse of [`stream_token`]; `None` for a token that is no valid
/// stream name.
pub fn stream_from_token(token: &str) -> Option<StreamName> {
    StreamName::new(&token.replace("%2E", ".")).ok()
}

/// Subject of a stream's segment descriptors in [`LIVE_STREAM`]:
/// `dvr.v1.live.{stream}.seg`.
pub fn live_segments_subject(stream: &StreamName) -> String {
    format!("{SUBJECT_PREFIX}.live.{}.seg", stream_token(stream))
}

/// Object name of a segment's bytes in [`SEGMENTS_OBJECT_BUCKET`]:
/// `{stream}/{seq:020}` (the stream name unescaped).
pub fn segment_object_name(stream: &StreamName, seq: u64) -> String {
    format!("{stream}/{seq:020}")
}

/// De-duplication id of a segment's descriptor: `{stream}:{seq}`.
pub fn segment_msg_id(stream: &StreamName, seq: u64) -> String {
    format!("{stream}:{seq}")
}

/// Subject of one kind of event for one stream:
/// `dvr.v1.events.{kind}.{stream}`.
pub fn event_subject(kind: crate::EventKind, stream: &StreamName) -> String {
    format!(
        "{SUBJECT_PREFIX}.events.{}.{}",
        kind.as_str(),
        stream_token(stream)
    )
}

/// Wildcard for every event about one stream: `dvr.v1.events.*.{stream}`.
pub fn events_of_stream(stream: &StreamName) -> String {
    format!("{SUBJECT_PREFIX}.events.*.{}", stream_token(stream))
}

/// Key in [`STREAMS_KV_BUCKET`] for a stream's config: the name with `.`
/// written `=2E`, since NATS KV keys may not hold `%`, nor `..` or a `.` at
/// either end, which stream names may (`=` never occurs in a stream name,
/// so the escaping is reversible).
pub fn stream_config_key(stream: &StreamName) -> String {
    stream.as_str().replace('.', "=2E")
}

/// Key in [`LOCKS_KV_BUCKET`] held by whoever edits a stream's locks or
/// runs its retention (`dvr_bus::Exclusive`).
pub fn lock_edit_key(stream: &StreamName) -> String {
    stream_config_key(stream)
}

/// The inverse of [`stream_config_key`]; `None` for a key that is no
/// valid stream name.
pub fn stream_from_config_key(key: &str) -> Option<StreamName> {
    StreamName::new(&key.replace("=2E", ".")).ok()
}

/// Key in [`LEASES_KV_BUCKET`] for who holds `role` (`ingest`, `recorder`)
/// of a stream: `{role}.{stream}`, the name escaped as in
/// [`stream_config_key`].
pub fn lease_key(role: &str, stream: &StreamName) -> String {
    format!("{role}.{}", stream_config_key(stream))
}

/// Key in [`RUNTIME_KV_BUCKET`] for what `role` reports about a stream:
/// `{role}.{stream}`, escaped as [`lease_key`] does.
pub fn runtime_key(role: &str, stream: &StreamName) -> String {
    lease_key(role, stream)
}

/// Key in [`RUNTIME_KV_BUCKET`] that a packager puts (empty) while
/// viewers ask for an on-demand stream: `demand.{stream}`. The ingests
/// watch it and run the stream until none came for its `on_demand` time,
/// judged by their own clock.
pub fn demand_key(stream: &StreamName) -> String {
    runtime_key(DEMAND_ROLE, stream)
}

/// The role part of [`demand_key`], for watching its prefix.
pub const DEMAND_ROLE: &str = "demand";

/// Key in [`CATALOG_KV_BUCKET`] for a stream's catalog summary.
pub fn catalog_key(stream: &StreamName) -> String {
    stream_config_key(stream)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::EventKind;

    fn name(s: &str) -> StreamName {
        StreamName::new(s).unwrap()
    }

    #[test]
    fn stream_names_become_one_token_and_back() {
        for s in ["ort", "news/hd", "channel-1.backup", "a.b.c"] {
            let t = stream_token(&name(s));
            assert!(!t.contains('.'), "{t}");
            assert_eq!(stream_from_token(&t), Some(name(s)));
        }
        assert_eq!(stream_from_token("%2E%2E"), None);
        for s in ["ort", "news/hd", "channel-1.backup", ".a..b.", "a/..x"] {
            let key = stream_config_key(&name(s));
            assert!(
                key.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-/_=".contains(&b)),
                "{key}"
            );
            assert_eq!(stream_from_config_key(&key), Some(name(s)));
        }
    }

    #[test]
    fn subjects_are_versioned_and_match_their_wildcards() {
        let s = name("channel-1.backup");
        assert_eq!(
            live_segments_subject(&s),
            "dvr.v1.live.channel-1%2Ebackup.seg"
        );
        assert!(live_segments_subject(&s).starts_with(LIVE_STREAM_SUBJECTS.trim_end_matches('>')));
        assert_eq!(
            event_subject(EventKind::GapOpened, &s),
            "dvr.v1.events.gap_opened.channel-1%2Ebackup"
        );
        assert_eq!(
            segment_object_name(&s, 42),
            "channel-1.backup/00000000000000000042"
        );
        assert_eq!(lease_key("recorder", &s), "recorder.channel-1=2Ebackup");
    }
}
