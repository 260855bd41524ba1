// The player page, /STREAM/embed.html: live with hls.js (or the browser's
// own HLS on Safari), and with ?dvr=true the archive's timeline to seek,
// select, download and copy URLs. Every request goes to this server, with
// the page's ?token= carried along (the packager repeats it into segment
// URLs). Query: dvr, token, autoplay, mute, from and to (UTC seconds).

import { copy, duration, local, utc } from "./common.js";
import { Timeline } from "./timeline.js";

const $ = (role) => document.querySelector(`[data-role="${role}"]`);
const params = new URLSearchParams(location.search);
const flag = (name) => params.has(name) && !["false", "0", "no"].includes(params.get(name));
const token = params.get("token");
const video = $("video");
const message = $("message");
/** How often the timeline asks for recording_status.json, in ms. */
const REFRESH_MS = 5000;
/** The widest recording_status.json request answered second by second. */
const DETAILED_SECS = 4 * 86400 - 60;

/** A URL of this stream with the page's token. */
function streamUrl(path, absolute = false) {
  const url = new URL(path, location.href);
  if (token !== null) url.searchParams.set("token", token);
  return absolute ? url.href : url.pathname + url.search;
}

function say(text) {
  message.textContent = text;
  document.body.classList.toggle("failed", Boolean(text));
}

/** Why a request failed, for the viewer. */
function explain(code) {
  if (code === 401 || code === 403) {
    return token === null
      ? "This stream needs a token: open the page with the ?token= your provider gave you."
      : "Access denied: the token is not (or no longer) valid for this stream.";
  }
  if (code === 404) return "Nothing is recorded here (yet).";
  if (code === 503) return "The server is busy or cannot reach its storage; try again shortly.";
  return code ? `The server answered ${code}.` : "The server cannot be reached.";
}

let hls = null;
/** UTC second at the playhead's start for archive playback, null when live. */
let playingFrom = null;

function play(path, fromStart) {
  say("");
  if (hls) hls.destroy();
  hls = null;
  const src = streamUrl(path);
  if (window.Hls && Hls.isSupported()) {
    hls = new Hls({ startPosition: fromStart ? 0 : -1, enableWorker: true });
    hls.on(Hls.Events.ERROR, (_, d) => {
      if (d.fatal) say(explain(d.response ? d.response.code : 0));
    });
    hls.on(Hls.Events.MANIFEST_PARSED, () => {
      if (flag("autoplay") || playingFrom !== null || video.dataset.started) start();
    });
    hls.loadSource(src);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = src;
    if (flag("autoplay") || video.dataset.started) start();
  } else {
    say("This browser cannot play HLS.");
  }
  document.body.dataset.source = path;
}

function start() {
  video.dataset.started = "1";
  video.play().catch(() => {
    // Browsers refuse unmuted autoplay: start muted rather than not at all.
    video.muted = true;
    video.play().catch(() => {});
  });
}

function live() {
  playingFrom = null;
  document.body.classList.add("is-live");
  play("index.m3u8", false);
}

function playFrom(t) {
  playingFrom = t;
  document.body.classList.remove("is-live");
  // archive-FROM-now: the tape from t, growing towards live, that any
  // replica can answer.
  play(`archive-${t}-now.m3u8`, true);
}

/** The UTC second under the playhead, from the segments' PROGRAM-DATE-TIME. */
function playheadSecond() {
  if (hls && hls.playingDate) return hls.playingDate.getTime() / 1000;
  if (video.getStartDate && !isNaN(video.getStartDate().getTime())) {
    return video.getStartDate().getTime() / 1000 + video.currentTime;
  }
  return null;
}
window.dvrPlayhead = playheadSecond;

function setupDvr() {
  $("dvr").hidden = false;
  const cursor = $("cursor");
  const spanText = $("span");
  const selection = $("selection");
  const timeline = new Timeline($("timeline"), {
    onSeek: playFrom,
    onCursor: (t) => {
      cursor.textContent = t === null ? "" : `${utc(t)} · ${local(t)} local`;
    },
    onSelect: (from, to) => {
      if (from === null || to - from < 1) {
        selection.hidden = true;
        return;
      }
      const dur = Math.max(1, Math.round(to - from));
      $("selection-text").textContent = `${utc(from)} + ${duration(dur)}`;
      $("download").href = streamUrl(`archive-${from}-${dur}.mp4`);
      $("download").setAttribute("download", `${document.body.dataset.stream.replaceAll("/", "_")}-${from}-${dur}.mp4`);
      const field = $("copy-field");
      field.hidden = true;
      $("copy-hls").onclick = () => copy(streamUrl(`archive-${from}-${dur}.m3u8`, true), field);
      $("copy-dash").onclick = () => copy(streamUrl(`archive-${from}-${dur}.mpd`, true), field);
      selection.hidden = false;
    },
  });
  $("zoom-in").onclick = () => timeline.zoom(0.5);
  $("zoom-out").onclick = () => timeline.zoom(2);
  $("live").onclick = () => {
    live();
    timeline.followLive = true;
  };

  let failed = false;
  async function refresh() {
    const now = Math.floor(Date.now() / 1000);
    // What is shown, and as much again before it; first the last four
    // days, the most the server details second by second (wider asks
    // are answered in whole hours).
    const view = timeline.view;
    const from = view ? Math.max(0, Math.floor(view.from - (view.to - view.from))) : now - DETAILED_SECS;
    try {
      const r = await fetch(streamUrl(`recording_status.json?from=${from}&to=now&request=ranges,locks`));
      if (!r.ok) throw r.status;
      const [status] = await r.json();
      timeline.update(status.ranges || [], status.locks || [], now);
      const ranges = status.ranges || [];
      if (ranges.length) {
        const first = ranges[0].from;
        const last = ranges[ranges.length - 1];
        spanText.textContent = `recorded ${duration(last.from + last.duration - first)}` +
          (ranges.length > 1 ? `, ${ranges.length - 1} gap${ranges.length > 2 ? "s" : ""}` : "");
      }
      if (failed) say("");
      failed = false;
    } catch (e) {
      failed = true;
      say(typeof e === "number" ? explain(e) : "The archive's status cannot be read.");
    }
    timeline.playhead = playheadSecond();
    timeline.draw();
  }
  refresh();
  setInterval(refresh, REFRESH_MS);
  video.addEventListener("timeupdate", () => {
    const t = playheadSecond();
    if (t !== null && Math.abs((timeline.playhead ?? 0) - t) >= 1) {
      timeline.playhead = t;
      timeline.draw();
    }
  });
}

function main() {
  if (message.textContent.trim()) {
    // The gate refused this page: nothing would play.
    document.body.classList.add("failed");
    video.hidden = true;
    return;
  }
  video.muted = flag("mute");
  if (params.has("dvr") && flag("dvr")) setupDvr();
  const from = Number.parseInt(params.get("from") ?? "", 10);
  const to = Number.parseInt(params.get("to") ?? "", 10);
  if (Number.isFinite(from) && from > 0 && Number.isFinite(to) && to > from) {
    // A closed range: the VOD playlist of exactly that.
    playingFrom = from;
    play(`archive-${from}-${to - from}.m3u8`, true);
  } else if (Number.isFinite(from) && from > 0) {
    playFrom(from);
  } else {
    live();
  }
}

// hls.min.js is a classic deferred script: it has run before this module.
main();
