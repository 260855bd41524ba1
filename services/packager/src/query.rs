//! The query parameters the packager reads, checked once.
//!
//! A parameter the packager acts on either parses or is a `400` naming
//! it: `?started=abc` silently ignored would restart a viewer's timeline.
//! Every number is bounded (times by [`UtcMs::LAST_SECOND`]) before any
//! arithmetic sees it. Parameters the packager does not know are left
//! alone: players and middleware add their own.

use dvr_common::UtcMs;

/// The query parameters the packager reads.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query {
    /// The `token=…` pair exactly as the client wrote it: middleware signs
    /// or compares tokens byte for byte, so it is never re-encoded.
    pub token: Option<String>,
    /// `event=true`: an EVENT playlist while the range is not over.
    pub event: bool,
    /// `recording_status.json`: `from` (epoch seconds or `now`).
    pub from: Option<String>,
    /// `recording_status.json`: `to` (epoch seconds or `now`).
    pub to: Option<String>,
    /// `recording_status.json`: what to answer (`ranges`, `hour_bitmap`,
    /// `locks`, `force_detailed`).
    pub request: Vec<String>,
    /// `timeshift_abs`: when the viewer started, in ms (set by our redirect).
    pub started: Option<i64>,
    /// Stream mode skips gaps instead of stopping at them; an MP4 export
    /// joins the parts of a range with a gap.
    pub ignore_gaps: bool,
    /// `archive-FROM-DUR.mp4`: start and end at FROM and FROM+DUR to the
    /// frame (an edit list), not at the keyframe before FROM.
    pub precise: bool,
    /// Kodi's shift catch-up: play from `utc` (epoch seconds)...
    pub utc: Option<i64>,
    /// ...as of the viewer's `lutc` (epoch seconds).
    pub lutc: Option<i64>,
    /// `archive-FROM-DUR.mpd`: `dynamic=true|false` forces the MPD type;
    /// `auto` (or none) is dynamic while the range is not over.
    pub dynamic: Option<bool>,
    /// `archive-FROM-DUR.mp4`: keyframes only (`?timelapse`), fitted into
    /// N seconds (`?timelapse=N`).
    pub timelapse: Option<Timelapse>,
    /// `preview.jpg` forms: scale to this width (height keeps the aspect).
    pub width: Option<u32>,
    /// `meta=true`: the seeds' metadata flag of `save-mp4`, which a GET has
    /// no body for; `archive-FROM-DUR.mp4` refuses it by name.
    pub meta: bool,
}

/// `?timelapse` and `?timelapse=N`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Timelapse {
    /// `?timelapse` (or `=true`): each keyframe shown until the next, so
    /// the file lasts as long as the range.
    Recorded,
    /// `?timelapse=N`: all of them within N seconds.
    Fit(u32),
}

/// The longest `?timelapse=N`, in seconds.
pub const MAX_TIMELAPSE_SECS: u32 = 3600;
/// The widest `?width=` a JPEG preview is scaled to.
pub const MAX_PREVIEW_WIDTH: u32 = 1920;

impl Query {
    /// Reads a raw query string; an `Err` is the line a `400` says.
    pub fn parse(raw: Option<&str>) -> Result<Query, String> {
        let mut q = Query::default();
        let raw = raw.unwrap_or_default();
        q.token = raw
            .split('&')
            .find(|pair| pair.starts_with("token="))
            .map(str::to_owned);
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            match &*key {
                "event" => q.event = flag("event", &value)?,
                "ignore_gaps" => q.ignore_gaps = flag("ignore_gaps", &value)?,
                "precise" => q.precise = flag("precise", &value)?,
                "meta" => q.meta = flag("meta", &value)?,
                "from" => q.from = Some(value.into_owned()),
                "to" => q.to = Some(value.into_owned()),
                "request" => q.request.extend(value.split(',').map(str::to_owned)),
                "started" => {
                    q.started = Some(number("started", &value, UtcMs::LAST_SECOND * 1000)?);
                }
                "utc" => q.utc = Some(number("utc", &value, UtcMs::LAST_SECOND)?),
                "lutc" => q.lutc = Some(number("lutc", &value, UtcMs::LAST_SECOND)?),
                "dynamic" => {
                    q.dynamic = match &*value {
                        "auto" => None,
                        other => Some(flag("dynamic", other).map_err(|_| {
                            format!("dynamic={other:?}: expected auto, true or false")
                        })?),
                    };
                }
                "timelapse" => {
                    q.timelapse = Some(match &*value {
                        "" | "true" => Timelapse::Recorded,
                        n => Timelapse::Fit(
                            number("timelapse", n, i64::from(MAX_TIMELAPSE_SECS))
                                .ok()
                                .filter(|n| *n > 0)
                                .map(|n| n as u32)
                                .ok_or_else(|| {
                                    format!(
                                        "timelapse={n:?}: expected nothing (keyframes at recorded pace) or 1 to {MAX_TIMELAPSE_SECS} seconds"
                                    )
                                })?,
                        ),
                    });
                }
                "width" => {
                    q.width = Some(
                        number("width", &value, i64::from(MAX_PREVIEW_WIDTH))?
                            .try_into()
                            .ok()
                            .filter(|w| *w >= 16)
                            .ok_or_else(|| {
                                format!(
                                    "width={value:?}: expected 16 to {MAX_PREVIEW_WIDTH} pixels"
                                )
                            })?,
                    );
                }
                _ => {}
            }
        }
        Ok(q)
    }

    /// The part of the query that must follow the player to segment URLs.
    pub fn carried(&self) -> Option<String> {
        self.token.clone()
    }
}

fn flag(name: &str, value: &str) -> Result<bool, String> {
    match value {
        "true" | "1" => Ok(true),
        "false" | "0" => Ok(false),
        _ => Err(format!("{name}={value:?}: expected true or false")),
    }
}

/// A non-negative integer up to `max`.
fn number(name: &str, value: &str, max: i64) -> Result<i64, String> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{name}={value:?}: expected a whole number"));
    }
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n <= max)
        .ok_or_else(|| format!("{name}={value:?}: out of range (at most {max})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_parse_or_say_which_is_wrong() {
        let q = Query::parse(Some(
            "token=a%2Bb&event=true&started=1700000000123&utc=1700000000&lutc=1700000100&request=ranges,locks&x=y",
        ))
        .unwrap();
        assert_eq!(q.token.as_deref(), Some("token=a%2Bb"));
        assert!(q.event && !q.ignore_gaps);
        assert_eq!(q.started, Some(1_700_000_000_123));
        assert_eq!((q.utc, q.lutc), (Some(1_700_000_000), Some(1_700_000_100)));
        assert_eq!(q.request, ["ranges", "locks"]);
        assert_eq!(Query::parse(None).unwrap(), Query::default());
        for (raw, timelapse) in [
            ("timelapse", Timelapse::Recorded),
            ("timelapse=", Timelapse::Recorded),
            ("timelapse=true", Timelapse::Recorded),
            ("timelapse=60", Timelapse::Fit(60)),
        ] {
            let q = Query::parse(Some(raw)).unwrap();
            assert_eq!(q.timelapse, Some(timelapse), "{raw}");
        }
        assert_eq!(Query::parse(Some("width=640")).unwrap().width, Some(640));
        assert_eq!(Query::parse(Some("dynamic=auto")).unwrap().dynamic, None);
        assert_eq!(
            Query::parse(Some("dynamic=false")).unwrap().dynamic,
            Some(false)
        );
        for (raw, why) in [
            ("started=abc", "started=\"abc\": expected a whole number"),
            ("started=-5", "started=\"-5\": expected a whole number"),
            ("utc=99999999999999999999", "out of range"),
            ("lutc=253402300800", "out of range"),
            ("event=yes", "event=\"yes\": expected true or false"),
            ("timelapse=0", "timelapse=\"0\": expected nothing"),
            ("timelapse=abc", "timelapse=\"abc\": expected nothing"),
            ("timelapse=3601", "timelapse=\"3601\": expected nothing"),
            ("width=0", "width=\"0\": expected 16 to 1920"),
            ("width=4000", "width=\"4000\": out of range"),
            ("width=x", "width=\"x\": expected a whole number"),
            ("ignore_gaps=", "ignore_gaps=\"\": expected true or false"),
            (
                "dynamic=yes",
                "dynamic=\"yes\": expected auto, true or false",
            ),
        ] {
            let e = Query::parse(Some(raw)).unwrap_err();
            assert!(e.contains(why), "{raw}: {e}");
        }
    }
}
