//! Inputs: every kind of source behind one trait, [`Source`], that yields
//! chunks of transport stream, and the URL syntax that picks one.
//!
//! A source only moves bytes; it knows nothing of packets beyond what pacing
//! needs, and nothing of segments. Live sources (UDP, HTTP) never end on their
//! own: a failure is returned as an error and the next call tries again, so
//! the failover logic above sees every loss and every recovery.

mod file;
mod http;
mod udp;

use bytes::Bytes;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::str::FromStr;

pub use file::{FileSource, FileTarget};
pub use http::{HttpOptions, HttpSource};
pub use udp::{UdpSource, UdpTarget};

use crate::error::IngestError;

/// A boxed, sendable future, so [`Source`] can be used as a trait object.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// An async source of transport-stream bytes.
pub trait Source: Send + fmt::Debug {
    /// The input this reads, for logs (credentials masked by its `Display`).
    fn url(&self) -> &InputUrl;

    /// The next chunk of bytes (any size, any alignment). `Ok(None)` means the
    /// source has ended for good (a file without `loop`); an error means it is
    /// lost for now, and calling again retries.
    fn next_chunk(&mut self) -> BoxFuture<'_, Result<Option<Bytes>, IngestError>>;
}

/// What an input URL designates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// `udp://[iface@]host:port`: unicast bind or IPv4 multicast join.
    Udp(UdpTarget),
    /// `http://`, `https://` or `tshttp://`: a streaming GET of MPEG-TS.
    Http(String),
    /// `file://PATH?loop=true`: a TS file played in real time, optionally looped.
    File(FileTarget),
}

/// A parsed input URL. `Display` prints it with credentials masked.
#[derive(Clone, PartialEq, Eq)]
pub struct InputUrl {
    kind: InputKind,
    masked: String,
}

impl InputUrl {
    /// What the URL designates.
    pub fn kind(&self) -> &InputKind {
        &self.kind
    }

    /// Opens the source. Nothing is connected yet for HTTP (the first
    /// [`Source::next_chunk`] connects); UDP sockets are bound here.
    pub async fn open(&self, http: &HttpOptions) -> Result<Box<dyn Source>, IngestError> {
        Ok(match &self.kind {
            InputKind::Udp(target) => Box::new(UdpSource::bind(self.clone(), target).await?),
            InputKind::Http(url) => Box::new(HttpSource::new(self.clone(), url, http)?),
            InputKind::File(target) => Box::new(FileSource::new(self.clone(), target)),
        })
    }
}

impl fmt::Display for InputUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl fmt::Debug for InputUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InputUrl({})", self.masked)
    }
}

impl FromStr for InputUrl {
    type Err = IngestError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let masked = mask_credentials(s);
        let invalid = |reason: &str| IngestError::InvalidUrl {
            url: masked.clone(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = s
            .split_once("://")
            .ok_or_else(|| invalid("no scheme (expected udp://, http://, tshttp:// or file://)"))?;
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "udp" => InputKind::Udp(UdpTarget::parse(rest).map_err(|e| invalid(&e))?),
            "http" | "https" | "tshttp" => {
                let scheme = if scheme.eq_ignore_ascii_case("https") {
                    "https"
                } else {
                    "http"
                };
                let url = format!("{scheme}://{rest}");
                let parsed = url::Url::parse(&url).map_err(|e| invalid(&e.to_string()))?;
                if parsed.host_str().is_none_or(str::is_empty) {
                    return Err(invalid("no host"));
                }
                InputKind::Http(url)
            }
            "file" => InputKind::File(FileTarget::parse(rest).map_err(|e| invalid(&e))?),
            _ => return Err(invalid("unsupported scheme")),
        };
        Ok(InputUrl { kind, masked })
    }
}

/// Query keys whose values are secrets.
const SECRET_KEYS: &[&str] = &[
    "token",
    "password",
    "pass",
    "passwd",
    "secret",
    "key",
    "auth",
    "sig",
    "signature",
];

/// The URL with the password of its user info and the values of secret-named
/// query parameters replaced by `***`. Works on strings that do not parse.
pub fn mask_credentials(url: &str) -> String {
    let (before_query, query) = match url.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (url, None),
    };
    let mut out = String::with_capacity(url.len());
    match before_query.split_once("://") {
        Some((scheme, rest)) => {
            out.push_str(scheme);
            out.push_str("://");
            let authority_end = rest.find(['/', '#']).unwrap_or(rest.len());
            let (authority, path) = rest.split_at(authority_end);
            match authority.rsplit_once('@') {
                Some((userinfo, host)) => {
                    match userinfo.split_once(':') {
                        Some((user, _password)) => {
                            out.push_str(user);
                            out.push_str(":***");
                        }
                        None => out.push_str(userinfo),
                    }
                    out.push('@');
                    out.push_str(host);
                }
                None => out.push_str(authority),
            }
            out.push_str(path);
        }
        None => out.push_str(before_query),
    }
    if let Some(query) = query {
        out.push('?');
        let pairs: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, _)) if SECRET_KEYS.contains(&k.to_ascii_lowercase().as_str()) => {
                    format!("{k}=***")
                }
                _ => pair.to_owned(),
            })
            .collect();
        out.push_str(&pairs.join("&"));
    }
    out
}

/// Parses a `true`/`false` query value.
fn parse_bool(key: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" | "yes" => Ok(true),
        "false" | "0" | "no" => Ok(false),
        _ => Err(format!("{key}={value}: expected true or false")),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    fn parse(s: &str) -> InputUrl {
        s.parse().unwrap()
    }

    #[test]
    fn parses_udp_unicast_multicast_and_interface() {
        let u = parse("udp://239.0.0.1:1234");
        assert_eq!(
            u.kind(),
            &InputKind::Udp(UdpTarget {
                iface: None,
                host: "239.0.0.1".into(),
                port: 1234
            })
        );
        let InputKind::Udp(t) = parse("udp://eth1@239.0.0.2:5000").kind().clone() else {
            panic!("not udp")
        };
        assert_eq!(t.iface.as_deref(), Some("eth1"));
        assert_eq!(t.multicast_group(), Some(Ipv4Addr::new(239, 0, 0, 2)));
        assert!(matches!(parse("udp://[::1]:9").kind(), InputKind::Udp(t) if t.host == "::1"));
        assert_eq!(
            parse("udp://127.0.0.1:9").kind(),
            &InputKind::Udp(UdpTarget {
                iface: None,
                host: "127.0.0.1".into(),
                port: 9
            })
        );
        for bad in [
            "udp://239.0.0.1",
            "udp://239.0.0.1:99999",
            "udp://:1234",
            "udp://../x@239.0.0.1:1",
            "udp://[ff02::1]:1234",
        ] {
            assert!(bad.parse::<InputUrl>().is_err(), "{bad}");
        }
    }

    #[test]
    fn parses_http_variants_and_masks_credentials() {
        assert_eq!(
            parse("tshttp://cam.example:8080/live.ts").kind(),
            &InputKind::Http("http://cam.example:8080/live.ts".into())
        );
        let u = parse("https://bob:hunter2@origin.example/ort.ts?token=abc&x=1");
        assert_eq!(
            u.to_string(),
            "https://bob:***@origin.example/ort.ts?token=***&x=1"
        );
        assert!(!format!("{u:?}").contains("hunter2"));
        let err = "gopher://bob:hunter2@x/".parse::<InputUrl>().unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
        assert!("http://".parse::<InputUrl>().is_err());
    }

    #[test]
    fn parses_file_options() {
        assert_eq!(
            parse("file:///tmp/clip.ts?loop=true").kind(),
            &InputKind::File(FileTarget {
                path: "/tmp/clip.ts".into(),
                passes: None,
                paced: true
            })
        );
        assert_eq!(
            parse("file://clip.ts?pace=false").kind(),
            &InputKind::File(FileTarget {
                path: "clip.ts".into(),
                passes: Some(1),
                paced: false
            })
        );
        let InputKind::File(t) = parse("file://localhost/x.ts?loop=3").kind().clone() else {
            panic!("not a file")
        };
        assert_eq!((t.path.to_str(), t.passes), (Some("/x.ts"), Some(3)));
        assert!("file:///x.ts?loop=maybe".parse::<InputUrl>().is_err());
        assert!("file:///x.ts?loop=0".parse::<InputUrl>().is_err());
        assert!("file:///x.ts?speed=2".parse::<InputUrl>().is_err());
        assert!("file://".parse::<InputUrl>().is_err());
    }

    #[test]
    fn masks_only_what_is_secret() {
        assert_eq!(
            mask_credentials("udp://eth1@239.0.0.1:1"),
            "udp://eth1@239.0.0.1:1"
        );
        assert_eq!(mask_credentials("not a url"), "not a url");
        assert_eq!(
            mask_credentials("http://u:p@h/a@b?Key=1"),
            "http://u:***@h/a@b?Key=***"
        );
    }
}
