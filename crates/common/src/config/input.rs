//! Source URLs, checked for syntax when the config is read.
//!
//! Ingest opens these; the config only guarantees that each names a
//! supported scheme and has the parts that scheme needs, so a typo fails at
//! start with the stream and the field named, not at the first reconnect.

use std::fmt;
use std::str::FromStr;

use crate::stream_name::StreamName;

/// One input of a stream, in priority order with its siblings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputUrl {
    /// `udp://[iface@]host:port`: multicast (joined on `interface`) or unicast.
    Udp {
        /// Network interface to join the group on, e.g. `eth1`.
        interface: Option<String>,
        /// Group or unicast address (IPv6 without brackets).
        host: String,
        /// UDP port.
        port: u16,
    },
    /// `http://` or `https://` MPEG-TS pull.
    Http {
        /// The whole URL.
        url: String,
    },
    /// `tshttp://`: MPEG-TS over HTTP, the seeds' spelling; fetched as `http://`.
    TsHttp {
        /// The whole URL as written.
        url: String,
    },
    /// `file://PATH?loop=true`: a file paced in real time.
    File {
        /// The file path.
        path: String,
        /// Start again at the end, timestamps continuing.
        looped: bool,
    },
    /// `timeshift://OTHER/N`: OTHER's tape, N seconds behind live.
    Timeshift {
        /// The recorded stream to read.
        source: StreamName,
        /// The delay in milliseconds (the URL carries whole seconds).
        delay_ms: i64,
    },
}

/// Why an input URL was rejected.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid input URL {input:?}: {reason}")]
pub struct InputUrlError {
    input: String,
    reason: String,
}

impl FromStr for InputUrl {
    type Err = InputUrlError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let err = |reason: &str| InputUrlError {
            input: input.to_owned(),
            reason: reason.to_owned(),
        };
        let (scheme, rest) = input.split_once("://").ok_or_else(|| {
            err("missing scheme (udp://, http://, https://, tshttp://, file://, timeshift://)")
        })?;
        match scheme {
            "udp" => parse_udp(rest).map_err(err),
            "http" | "https" => {
                check_authority(rest).map_err(err)?;
                Ok(InputUrl::Http {
                    url: input.to_owned(),
                })
            }
            "tshttp" => {
                check_authority(rest).map_err(err)?;
                Ok(InputUrl::TsHttp {
                    url: input.to_owned(),
                })
            }
            "file" => parse_file(rest).map_err(|e| err(&e)),
            "timeshift" => parse_timeshift(rest).map_err(|e| err(&e)),
            other => Err(err(&format!(
                "unsupported scheme {other:?} (use udp, http, https, tshttp, file or timeshift)"
            ))),
        }
    }
}

fn split_host_port(hostport: &str) -> Result<(String, u16), &'static str> {
    let (host, port) = hostport.rsplit_once(':').ok_or("missing :port")?;
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err("missing host");
    }
    if !host
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))
    {
        return Err("invalid character in host");
    }
    let port: u16 = port
        .parse()
        .map_err(|_| "port is not a number from 1 to 65535")?;
    if port == 0 {
        return Err("port is not a number from 1 to 65535");
    }
    Ok((host.to_owned(), port))
}

fn parse_udp(rest: &str) -> Result<InputUrl, &'static str> {
    if rest.contains(['/', '?']) {
        return Err("udp takes only [iface@]host:port");
    }
    let (interface, hostport) = match rest.split_once('@') {
        Some(("", _)) => return Err("empty interface before '@'"),
        Some((iface, hp)) => (Some(iface.to_owned()), hp),
        None => (None, rest),
    };
    let (host, port) = split_host_port(hostport)?;
    Ok(InputUrl::Udp {
        interface,
        host,
        port,
    })
}

fn check_authority(rest: &str) -> Result<(), &'static str> {
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..end];
    let hostport = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    if hostport.is_empty() {
        return Err("missing host");
    }
    if hostport.contains(':') && !hostport.ends_with(']') {
        split_host_port(hostport)?;
    }
    Ok(())
}

fn parse_file(rest: &str) -> Result<InputUrl, String> {
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path.is_empty() {
        return Err("missing path".to_owned());
    }
    let mut looped = false;
    for param in query.split('&').filter(|p| !p.is_empty()) {
        looped = match param {
            "loop=true" | "loop" => true,
            "loop=false" => false,
            other => {
                return Err(format!(
                    "unknown parameter {other:?} (only loop=true|false)"
                ))
            }
        };
    }
    Ok(InputUrl::File {
        path: path.to_owned(),
        looped,
    })
}

fn parse_timeshift(rest: &str) -> Result<InputUrl, String> {
    let (source, secs) = rest
        .rsplit_once('/')
        .ok_or("expected timeshift://STREAM/SECONDS")?;
    let source = StreamName::new(source).map_err(|e| e.to_string())?;
    let secs: i64 = secs
        .parse()
        .map_err(|_| "delay is not a whole number of seconds")?;
    if secs <= 0 || secs > 366 * 86_400 {
        return Err("delay must be from 1 second to 366 days".to_owned());
    }
    Ok(InputUrl::Timeshift {
        source,
        delay_ms: secs * 1000,
    })
}

impl fmt::Display for InputUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InputUrl::Udp {
                interface: Some(i),
                host,
                port,
            } if host.contains(':') => {
                write!(f, "udp://{i}@[{host}]:{port}")
            }
            InputUrl::Udp {
                interface: Some(i),
                host,
                port,
            } => write!(f, "udp://{i}@{host}:{port}"),
            InputUrl::Udp {
                interface: None,
                host,
                port,
            } if host.contains(':') => {
                write!(f, "udp://[{host}]:{port}")
            }
            InputUrl::Udp {
                interface: None,
                host,
                port,
            } => write!(f, "udp://{host}:{port}"),
            InputUrl::Http { url } | InputUrl::TsHttp { url } => f.write_str(url),
            InputUrl::File { path, looped: true } => write!(f, "file://{path}?loop=true"),
            InputUrl::File {
                path,
                looped: false,
            } => write!(f, "file://{path}"),
            InputUrl::Timeshift { source, delay_ms } => {
                write!(f, "timeshift://{source}/{}", delay_ms / 1000)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> InputUrl {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_every_supported_scheme() {
        assert_eq!(
            ok("udp://eth1@239.0.0.2:1234"),
            InputUrl::Udp {
                interface: Some("eth1".into()),
                host: "239.0.0.2".into(),
                port: 1234
            }
        );
        assert_eq!(
            ok("udp://[ff02::1]:5000"),
            InputUrl::Udp {
                interface: None,
                host: "ff02::1".into(),
                port: 5000
            }
        );
        assert!(matches!(
            ok("http://backup.example/ort.ts"),
            InputUrl::Http { .. }
        ));
        assert!(matches!(
            ok("https://u:p@h.example:8443/x?y=1"),
            InputUrl::Http { .. }
        ));
        assert!(matches!(ok("tshttp://vlc:9090/"), InputUrl::TsHttp { .. }));
        assert_eq!(
            ok("file:///clips/a.ts?loop=true"),
            InputUrl::File {
                path: "/clips/a.ts".into(),
                looped: true
            }
        );
        assert_eq!(
            ok("timeshift://ort/3600"),
            InputUrl::Timeshift {
                source: "ort".parse().unwrap(),
                delay_ms: 3_600_000
            }
        );
        for s in [
            "udp://eth1@239.0.0.2:1234",
            "udp://[ff02::1]:5000",
            "file:///a?loop=true",
        ] {
            assert_eq!(ok(s).to_string(), s);
        }
    }

    #[test]
    fn rejects_malformed_urls() {
        for bad in [
            "239.0.0.1:1234",
            "rtmp://x/y",
            "udp://239.0.0.1",
            "udp://239.0.0.1:0",
            "udp://239.0.0.1:70000",
            "udp://@239.0.0.1:1",
            "http://",
            "http://h:port/",
            "file://",
            "file:///a?lop=true",
            "timeshift://ort",
            "timeshift://../x/10",
            "timeshift://ort/-5",
        ] {
            assert!(bad.parse::<InputUrl>().is_err(), "{bad}");
        }
        assert_eq!(
            "udp://239.0.0.1"
                .parse::<InputUrl>()
                .unwrap_err()
                .to_string(),
            r#"invalid input URL "udp://239.0.0.1": missing :port"#
        );
    }
}
