//! DASH manifests (ISO/IEC 23009-1, the `isoff-live` profile) over the same
//! segments as the HLS forms: live `index.mpd`, `rewind-N.mpd`,
//! `archive-FROM-DUR.mpd` and start-over `archive-FROM-now.mpd`.
//!
//! - **What is listed** is what the matching HLS form lists
//!   ([`Packager::plan`]): the same windows, caps and `ignore_gaps`; but
//!   every stored segment is its own `SegmentTimeline` entry (`$Time$`
//!   URLs name one segment, so nothing is coalesced). Equal durations in a
//!   row are one `<S r=…>`.
//! - **One Period per continuous run of tape**: a gap or a discontinuity
//!   starts a new Period (players do not jump holes inside one), with
//!   `presentationTimeOffset` = the run's first `@t` and its own init
//!   segments. Times are the tape's, 90 kHz ticks since the epoch
//!   (`timescale="90000"`, audio too: the timeline is the stored segments',
//!   the samples carry their own rate).
//! - **One AdaptationSet per kind + language + codec**; a second video
//!   track joins the first's set only if it starts its segments with the
//!   same kind of stream access point (judged on the run's first two
//!   segments: every encoder starts with a keyframe, so the first alone
//!   says nothing), and `startWithSAP` is written only when it is true of
//!   every Representation. Each Representation is one
//!   track (`tracks-N/` pieces, [`crate::cmaf`]); codecs, sizes and rates
//!   come from the run's first segment.
//! - **The same bytes on every replica**: nothing here reads a clock. A
//!   dynamic MPD's `availabilityStartTime` is the epoch (so a Period starts
//!   at its tape time in seconds) and its `publishTime` the end of the last
//!   listed segment; a static MPD has neither. Dynamic MPDs name the
//!   server itself for `UTCTiming` (`http-head`: the `Date` header of a
//!   `HEAD` of the MPD's own URL), so players need no outside time server.

use std::fmt::Write;
use std::sync::Arc;

use axum::body::Body;
use axum::http::header;
use axum::response::Response;
use dvr_common::{Ticks, UtcMs, TICKS_PER_SEC};
use dvr_media::codec::TrackKind;
use dvr_media::SegmentMeta;

use crate::cmaf::{SegmentView, TrackView};
use crate::error::PackagerError;
use crate::http::DASH_XML;
use crate::playlist::{init_name, tape_start, RunInit};
use crate::playlists::Planned;
use crate::service::{form_name, set, Asked, Packager};
use crate::url::{Flavor, Form, RangeEnd};
use dvr_archive::tape::StreamTape;

/// One Period: a continuous run of tape and what it holds.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeriodSpec<'a> {
    pub(crate) view: &'a SegmentView,
    /// The tape time of the segment the view (and the init segments) are
    /// read from: the run's first, unless that one is lost.
    pub(crate) init_at: i64,
    pub(crate) segments: &'a [SegmentMeta],
}

/// How a dynamic MPD moves, in 90 kHz ticks.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Live {
    /// `timeShiftBufferDepth`.
    pub(crate) depth: i64,
}

/// Everything an MPD says.
#[derive(Clone, Debug)]
pub(crate) struct MpdSpec<'a> {
    /// Dynamic, or static when `None`.
    pub(crate) live: Option<Live>,
    pub(crate) periods: Vec<PeriodSpec<'a>>,
    /// Before every `tracks-N/` URL (`../` when the MPD is itself in a
    /// `tracks-…/` directory).
    pub(crate) prefix: &'a str,
    /// After every segment URL (the token).
    pub(crate) query: Option<&'a str>,
    /// The `UTCTiming` URL of a dynamic MPD.
    pub(crate) clock: Option<&'a str>,
}

/// `PT…S` of `ticks`, to the microsecond.
fn duration(ticks: i64) -> String {
    let ticks = ticks.max(0);
    let whole = ticks / TICKS_PER_SEC;
    let micros = (ticks % TICKS_PER_SEC) * 1_000_000 / TICKS_PER_SEC;
    if micros == 0 {
        return format!("PT{whole}S");
    }
    let fraction = format!("{micros:06}");
    format!("PT{whole}.{}S", fraction.trim_end_matches('0'))
}

/// Text for an XML attribute value.
fn xml(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// An `xs:language` as the schema's pattern allows it, else `None`.
fn language(code: Option<&str>) -> Option<&str> {
    code.filter(|c| (1..=8).contains(&c.len()) && c.bytes().all(|b| b.is_ascii_alphabetic()))
}

/// `first` with each track's SAP type as it holds for `next` too: the
/// larger of the two, or 0 where either does not start with one.
fn with_access_points_of(first: &SegmentView, next: &SegmentView) -> SegmentView {
    let mut out = first.clone();
    for track in &mut out.tracks {
        let later = next
            .tracks
            .iter()
            .find(|t| t.number == track.number)
            .map_or(0, |t| t.sap_type);
        track.sap_type = if later == 0 || track.sap_type == 0 {
            0
        } else {
            track.sap_type.max(later)
        };
    }
    out
}

/// The tracks of a Period grouped into AdaptationSets.
fn adaptation_sets(view: &SegmentView) -> Vec<Vec<&TrackView>> {
    let mut sets: Vec<Vec<&TrackView>> = Vec::new();
    let family = |t: &TrackView| {
        t.codec_string
            .split('.')
            .next()
            .unwrap_or_default()
            .to_owned()
    };
    for track in view
        .tracks
        .iter()
        .filter(|t| matches!(t.kind, TrackKind::Video | TrackKind::Audio))
    {
        let joins = sets.iter_mut().find(|set| {
            let first = set[0];
            first.kind == track.kind
                && first.language == track.language
                && family(first) == family(track)
                // Switching between renditions needs their segments to
                // start alike.
                && (track.kind != TrackKind::Video
                    || (track.sap_type > 0 && first.sap_type == track.sap_type))
        });
        match joins {
            Some(set) => set.push(track),
            None => sets.push(vec![track]),
        }
    }
    sets
}

/// The `SegmentTimeline` of a run: explicit `@t` where the run starts or
/// an entry does not follow the one before, `@r` for repeats.
fn timeline(segments: &[SegmentMeta]) -> String {
    let mut entries: Vec<(i64, i64, u32, bool)> = Vec::new();
    let mut expected: Option<i64> = None;
    for segment in segments {
        let (t, d) = (tape_start(segment), segment.duration.0);
        match entries.last_mut() {
            Some(last) if last.1 == d && expected == Some(t) => last.2 += 1,
            _ => entries.push((t, d, 0, expected != Some(t))),
        }
        expected = Some(t + d);
    }
    let mut out = String::from("<SegmentTimeline>");
    for (t, d, r, explicit) in entries {
        out.push_str("<S");
        if explicit {
            let _ = write!(out, " t=\"{t}\"");
        }
        let _ = write!(out, " d=\"{d}\"");
        if r > 0 {
            let _ = write!(out, " r=\"{r}\"");
        }
        out.push_str("/>");
    }
    out.push_str("</SegmentTimeline>");
    out
}

/// Writes the MPD.
pub(crate) fn mpd(spec: &MpdSpec<'_>) -> String {
    let first = spec.periods.first().and_then(|p| p.segments.first());
    let last = spec.periods.last().and_then(|p| p.segments.last());
    let (Some(first), Some(last)) = (first, last) else {
        return String::new();
    };
    let start = tape_start(first);
    let end = tape_start(last) + last.duration.0;
    let longest = spec
        .periods
        .iter()
        .flat_map(|p| p.segments.iter().map(|s| s.duration.0))
        .max()
        .unwrap_or(0);
    // Whole seconds, as players expect of the update period.
    let target = ((Ticks(longest).as_ms() + 999) / 1000).max(1);
    let mut out = String::with_capacity(2048);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(
        "<MPD xmlns=\"urn:mpeg:dash:schema:mpd:2011\" profiles=\"urn:mpeg:dash:profile:isoff-live:2011\"",
    );
    match spec.live {
        None => {
            let _ = write!(
                out,
                " type=\"static\" mediaPresentationDuration=\"{}\"",
                duration(end - start)
            );
        }
        Some(live) => {
            // Players join four segments behind the newest: a segment is
            // listed only once recorded, and the MPD is reloaded every
            // segment, so dash.js joining three behind rebuffered at the
            // live edge (stalls of 1 to 1.5 s in the players test).
            let _ = write!(
                out,
                " type=\"dynamic\" availabilityStartTime=\"{}\" publishTime=\"{}\" minimumUpdatePeriod=\"PT{target}S\" timeShiftBufferDepth=\"{}\" suggestedPresentationDelay=\"PT{}S\"",
                UtcMs(0),
                last.utc_end(),
                duration(live.depth),
                4 * target
            );
        }
    }
    let _ = writeln!(
        out,
        " minBufferTime=\"PT{target}S\" maxSegmentDuration=\"{}\">",
        duration(longest)
    );
    let query = spec
        .query
        .map(|q| format!("?{}", xml(&q.replace('$', "$$"))))
        .unwrap_or_default();
    for period in &spec.periods {
        let Some(run_first) = period.segments.first() else {
            continue;
        };
        let t = tape_start(run_first);
        // Dynamic: from the epoch (availabilityStartTime); static: from the
        // first Period.
        let period_start = if spec.live.is_some() { t } else { t - start };
        let _ = writeln!(
            out,
            "<Period id=\"p{t}\" start=\"{}\">",
            duration(period_start)
        );
        let timeline = timeline(period.segments);
        for (i, set) in adaptation_sets(period.view).iter().enumerate() {
            let head = set[0];
            let (content, mime) = match head.kind {
                TrackKind::Video => ("video", "video/mp4"),
                _ => ("audio", "audio/mp4"),
            };
            let _ = write!(
                out,
                "<AdaptationSet id=\"{}\" contentType=\"{content}\" mimeType=\"{mime}\" segmentAlignment=\"true\"",
                i + 1
            );
            if head.sap_type > 0 && set.iter().all(|t| t.sap_type == head.sap_type) {
                let _ = write!(out, " startWithSAP=\"{}\"", head.sap_type);
            }
            if let Some(lang) = language(head.language.as_deref()) {
                let _ = write!(out, " lang=\"{lang}\"");
            }
            out.push_str(">\n");
            for track in set {
                let n = track.number;
                let _ = write!(
                    out,
                    "<Representation id=\"{n}\" bandwidth=\"{}\" codecs=\"{}\"",
                    track.bandwidth,
                    xml(&track.codec_string)
                );
                if let Some((width, height)) = track.size {
                    let _ = write!(out, " width=\"{width}\" height=\"{height}\"");
                }
                if let Some(rate) = track.frame_rate.filter(|r| r.num > 0 && r.den > 0) {
                    if rate.den == 1 {
                        let _ = write!(out, " frameRate=\"{}\"", rate.num);
                    } else {
                        let _ = write!(out, " frameRate=\"{}/{}\"", rate.num, rate.den);
                    }
                }
                if let Some((rate, _)) = track.audio {
                    let _ = write!(out, " audioSamplingRate=\"{rate}\"");
                }
                out.push_str(">\n");
                if let Some((_, channels)) = track.audio {
                    let _ = writeln!(
                        out,
                        "<AudioChannelConfiguration schemeIdUri=\"urn:mpeg:dash:23003:3:audio_channel_configuration:2011\" value=\"{channels}\"/>"
                    );
                }
                let dir = format!("{}tracks-{n}/", spec.prefix);
                let _ = writeln!(
                    out,
                    "<SegmentTemplate timescale=\"90000\" presentationTimeOffset=\"{t}\" initialization=\"{dir}{}{query}\" media=\"{dir}frag-$Time$.m4s{query}\">",
                    init_name(RunInit {
                        at: period.init_at,
                        id: track.init,
                    })
                );
                out.push_str(&timeline);
                out.push_str("\n</SegmentTemplate>\n</Representation>\n");
            }
            out.push_str("</AdaptationSet>\n");
        }
        out.push_str("</Period>\n");
    }
    if let (Some(_), Some(clock)) = (spec.live, spec.clock) {
        let _ = writeln!(
            out,
            "<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-head:2014\" value=\"{}\"/>",
            xml(clock)
        );
    }
    out.push_str("</MPD>\n");
    out
}

impl Packager {
    /// A DASH form: the segments its HLS twin lists, as an MPD.
    pub(crate) async fn mpd(
        &self,
        tape: &StreamTape,
        asked: &Asked<'_>,
    ) -> Result<Response, PackagerError> {
        let now = asked.now;
        let (form, dynamic) = match asked.playback.form {
            Form::LiveDash => (Form::LivePlaylist(Flavor::Index), true),
            Form::RewindDash { window } => (
                Form::Rewind {
                    flavor: Flavor::Index,
                    window,
                },
                true,
            ),
            Form::RangeDash { from, end } => {
                let dynamic = match end {
                    RangeEnd::Now => true,
                    // `auto`: dynamic while the range is not over.
                    RangeEnd::Duration(d) => asked.query.dynamic.unwrap_or_else(|| {
                        UtcMs::from_secs(from).saturating_add_ms(i64::from(d) * 1000) > now
                    }),
                };
                let form = Form::RangePlaylist {
                    flavor: Flavor::Archive,
                    from,
                    end,
                };
                (form, dynamic)
            }
            other => return Err(PackagerError::NotSupported(form_name(other))),
        };
        let plan = match self.plan(tape, asked, form, false).await? {
            Planned::Plan(plan) => plan,
            Planned::Answer(response) => return Ok(response),
        };
        if plan.segments.is_empty() {
            return Err(PackagerError::NothingRecorded(format!(
                "stream {} has nothing recorded in this window",
                tape.name()
            )));
        }
        let selection = asked.playback.tracks;
        let mut views = self.run_views(tape, &plan.segments, selection).await?;
        // A rendition's keyframes can line up with the cut at a run's
        // start by chance (every encoder starts with one): its stream
        // access points are judged on the run's first two segments.
        for i in 0..views.len() {
            let end = views
                .get(i + 1)
                .map_or(plan.segments.len(), |next| next.start);
            let Some(next) = plan.segments[..end]
                .iter()
                .find(|s| s.seq > views[i].read.seq)
            else {
                continue;
            };
            if let Ok(next) = self.segment_view(tape, next, selection).await {
                views[i].view = Arc::new(with_access_points_of(&views[i].view, &next));
            }
        }
        let periods: Vec<PeriodSpec<'_>> = views
            .iter()
            .enumerate()
            .map(|(i, run)| {
                let end = views
                    .get(i + 1)
                    .map_or(plan.segments.len(), |next| next.start);
                PeriodSpec {
                    view: &run.view,
                    init_at: tape_start(&run.read),
                    segments: &plan.segments[run.start..end],
                }
            })
            .collect();
        let live = dynamic.then(|| {
            let first = tape_start(&plan.segments[0]);
            let last = &plan.segments[plan.segments.len() - 1];
            let end = tape_start(last) + last.duration.0;
            let depth = match asked.playback.form {
                Form::RewindDash { window } => {
                    i64::from(window.min(self.config.max_range_secs)) * TICKS_PER_SEC
                }
                // Back to FROM, and a little further, for the time the
                // player takes to load the next update.
                Form::RangeDash { from, .. } => {
                    end - from.saturating_mul(TICKS_PER_SEC) + 2 * last.duration.0
                }
                _ => end - first,
            };
            Live { depth }
        });
        let carried = asked.query.carried();
        let clock = asked.context.origin.as_ref().map(|origin| {
            let mut url = format!("{origin}{}", asked.path);
            if let Some(q) = asked.raw_query.filter(|q| !q.is_empty()) {
                url.push('?');
                url.push_str(q);
            }
            url
        });
        let text = mpd(&MpdSpec {
            live,
            periods,
            prefix: if selection.is_some() { "../" } else { "" },
            query: carried.as_deref(),
            clock: clock.as_deref(),
        });
        let mut response = Response::new(Body::from(text));
        set(&mut response, header::CONTENT_TYPE, DASH_XML);
        set(
            &mut response,
            header::CACHE_CONTROL,
            if dynamic { "no-cache" } else { plan.cache },
        );
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use dvr_media::fmp4::InitId;
    use dvr_media::SegmentFlags;

    use super::*;

    fn meta(seq: u64, start_ms: i64, dur_ms: i64, discontinuity: bool) -> SegmentMeta {
        SegmentMeta {
            seq,
            utc_start: UtcMs(start_ms),
            duration: Ticks::from_ms(dur_ms),
            pts_start: Ticks(0),
            bytes: 188,
            flags: SegmentFlags {
                discontinuity,
                independent: true,
            },
        }
    }

    fn track(number: usize, kind: TrackKind, language: Option<&str>, codec: &str) -> TrackView {
        TrackView {
            number,
            kind,
            language: language.map(str::to_owned),
            codec_string: codec.into(),
            init: InitId([number as u8; 8]),
            size: (kind == TrackKind::Video).then_some((640, 360)),
            frame_rate: None,
            audio: (kind == TrackKind::Audio).then_some((48_000, 2)),
            sap_type: 1,
            bandwidth: 1000,
        }
    }

    #[test]
    fn timelines_run_length_equal_durations() {
        let segments = [
            meta(1, 0, 2000, false),
            meta(2, 2000, 2000, false),
            meta(3, 4000, 2000, false),
            meta(4, 6000, 1000, false),
            // Not where the one before ends.
            meta(5, 7001, 1000, false),
        ];
        assert_eq!(
            timeline(&segments),
            "<SegmentTimeline><S t=\"0\" d=\"180000\" r=\"2\"/><S d=\"90000\"/><S t=\"630090\" d=\"90000\"/></SegmentTimeline>"
        );
    }

    #[test]
    fn durations_are_exact_to_the_microsecond() {
        assert_eq!(duration(180_000), "PT2S");
        assert_eq!(duration(180_090), "PT2.001S");
        assert_eq!(duration(1), "PT0.000011S");
        assert_eq!(duration(-5), "PT0S");
    }

    #[test]
    fn sets_by_kind_language_and_codec() {
        let mut second_video = track(2, TrackKind::Video, None, "avc1.4d401e");
        let view = SegmentView {
            tracks: vec![
                track(1, TrackKind::Video, None, "avc1.64001f"),
                second_video.clone(),
                track(3, TrackKind::Audio, Some("eng"), "mp4a.40.2"),
                track(4, TrackKind::Audio, Some("deu"), "mp4a.40.2"),
                track(5, TrackKind::Audio, Some("eng"), "ac-3"),
            ],
            init: InitId([0; 8]),
        };
        let numbers = |view: &SegmentView| -> Vec<Vec<usize>> {
            adaptation_sets(view)
                .iter()
                .map(|set| set.iter().map(|t| t.number).collect())
                .collect()
        };
        assert_eq!(numbers(&view), [vec![1, 2], vec![3], vec![4], vec![5]]);
        // A rendition whose segments do not start with a sync sample is a
        // set of its own.
        second_video.sap_type = 0;
        let mut view = view;
        view.tracks[1] = second_video;
        assert_eq!(
            numbers(&view),
            [vec![1], vec![2], vec![3], vec![4], vec![5]]
        );
    }

    #[test]
    fn static_and_dynamic_mpds_come_from_the_tape_alone() {
        let t = 1_795_356_332_040;
        let runs = [
            [meta(7, t, 2000, false), meta(8, t + 2000, 2000, false)],
            [
                meta(9, t + 14_000, 2000, true),
                meta(10, t + 16_000, 2000, false),
            ],
        ];
        let view = SegmentView {
            tracks: vec![
                track(1, TrackKind::Video, None, "avc1.64001f"),
                track(2, TrackKind::Audio, Some("eng"), "mp4a.40.2"),
            ],
            init: InitId([0; 8]),
        };
        let periods: Vec<PeriodSpec<'_>> = runs
            .iter()
            .map(|segments| PeriodSpec {
                view: &view,
                init_at: tape_start(&segments[0]),
                segments,
            })
            .collect();
        let mut spec = MpdSpec {
            live: None,
            periods,
            prefix: "",
            query: Some("token=a&b"),
            clock: Some("http://dvr/ch/index.mpd"),
        };
        let text = mpd(&spec);
        assert!(
            text.contains("type=\"static\" mediaPresentationDuration=\"PT18S\""),
            "{text}"
        );
        assert!(
            !text.contains("publishTime") && !text.contains("UTCTiming"),
            "{text}"
        );
        assert!(text.contains(&format!("<Period id=\"p{}\" start=\"PT0S\">", t * 90)));
        assert!(text.contains(&format!(
            "<Period id=\"p{}\" start=\"PT14S\">",
            (t + 14_000) * 90
        )));
        assert!(
            text.contains("media=\"tracks-2/frag-$Time$.m4s?token=a&amp;b\""),
            "{text}"
        );
        assert!(text.contains(&format!(
            "initialization=\"tracks-1/init-{}-0101010101010101.mp4?token=a&amp;b\"",
            t * 90
        )));
        assert!(text.contains("lang=\"eng\""));
        spec.live = Some(Live { depth: 18 * 90_000 });
        let text = mpd(&spec);
        assert!(text.contains("type=\"dynamic\" availabilityStartTime=\"1970-01-01T00:00:00.000Z\" publishTime=\"2026-11-22T14:05:50.040Z\""), "{text}");
        assert!(text.contains("timeShiftBufferDepth=\"PT18S\" suggestedPresentationDelay=\"PT8S\""));
        assert!(text.contains(&format!(
            "<Period id=\"p{}\" start=\"PT{}.04S\">",
            t * 90,
            t / 1000
        )));
        assert!(text.contains("<UTCTiming schemeIdUri=\"urn:mpeg:dash:utc:http-head:2014\" value=\"http://dvr/ch/index.mpd\"/>"));
    }
}
