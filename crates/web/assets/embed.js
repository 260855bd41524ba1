// The player page, /STREAM/embed.html: live with hls.js (or the browser's
// own HLS on Safari), and with ?dvr=true the archive's timeline to seek,
// select, download and copy URLs, with a calendar of the recorded days.
// Every request goes to this server, with the page's ?token= carried along
// (the packager repeats it into segment URLs). Query, as the seeds name it:
// dvr, token, autoplay (on unless false), mute, from and to (UTC seconds),
// ago (seconds behind live), play_duration (seconds until playback stops);
// realtime is answered with a line saying there is no low-latency mode.

import { copy, duration, local, utc } from "./common.js";
import { Calendar } from "./calendar.js";
import { Timeline } from "./timeline.js";

const $ = (role) => document.querySelector(`[data-role="${role}"]`);
const params = new URLSearchParams(location.search);
const NO = ["false", "0", "no"];
const flag = (name) => params.has(name) && !NO.includes(params.get(name));
const token = params.get("token");
const video = $("video");
const message = $("message");
const notice = $("notice");
/** How often the timeline asks for recording_status.json, in ms. */
const REFRESH_MS = 5000;
/** How often the calendar asks for the hour bitmap, in ms. */
const CALENDAR_MS = 60000;
/** The widest recording_status.json request answered second by second. */
const DETAILED_SECS = 4 * 86400 - 60;
/** Playback rates offered for the archive. */
const RATES = [1, 2, 4, 8];

/** Autoplay is the seeds' default; `autoplay=false` turns it off. */
const autoplay = !NO.includes(params.get("autoplay") ?? "");

/**
 * A positive whole number of seconds from the query, `null` when absent;
 * a malformed value throws a line naming the parameter.
 */
function seconds(name) {
  const raw = params.get(name);
  if (raw === null) return null;
  if (!/^[0-9]+$/.test(raw) || Number(raw) <= 0) {
    throw new Error(`${name}=${JSON.stringify(raw)}: expected a whole number of seconds above 0.`);
  }
  return Number(raw);
}

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
      if (autoplay || video.dataset.started) start();
    });
    hls.loadSource(src);
    hls.attachMedia(video);
  } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
    video.src = src;
    if (autoplay || video.dataset.started) start();
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

/** A line over the video that is not a failure (the player goes on). */
function inform(text) {
  notice.textContent = text;
}

/**
 * `play_duration`: playback stops once `limit` seconds have played, and
 * loading with it, to save traffic; play goes on for another `limit`.
 */
function limitPlayback(limit) {
  let played = 0;
  let last = null;
  let stopped = false;
  video.addEventListener("timeupdate", () => {
    const t = video.currentTime;
    if (video.paused || video.seeking || stopped) {
      last = null;
      return;
    }
    // Jumps (a seek, a new source) are not playing time.
    if (last !== null && t > last && t - last < 2) played += t - last;
    last = t;
    if (played >= limit) {
      stopped = true;
      video.pause();
      if (hls) hls.stopLoad();
      inform(`Stopped after ${duration(limit)} (play_duration=${limit}): press play to watch on.`);
    }
  });
  video.addEventListener("play", () => {
    if (!stopped) return;
    stopped = false;
    played = 0;
    last = null;
    if (hls) hls.startLoad();
    inform("");
  });
}

function setupDvr() {
  $("dvr").hidden = false;
  const cursor = $("cursor");
  const spanText = $("span");
  const selection = $("selection");
  const timeline = new Timeline($("timeline"), {
    onSeek: (t) => {
      video.dataset.started = "1";
      playFrom(t);
    },
    onCursor: (t) => {
      cursor.textContent = t === null ? "" : `${utc(t)} · ${local(t)} local`;
    },
    onSelect: (from, to) => {
      if (from === null || to - from < 1) {
        selection.hidden = true;
        return;
      }
      const dur = Math.max(1, Math.round(to - from));
      // A range across a gap is exported as its recorded parts joined
      // (the packager refuses it without ignore_gaps=true).
      const parts = timeline.ranges.filter((r) => r.from < from + dur && r.from + r.duration > from).length;
      $("selection-text").textContent = `${utc(from)} + ${duration(dur)}` +
        (parts > 1 ? ` (${parts} recorded parts, joined)` : "");
      $("download").href = streamUrl(`archive-${from}-${dur}.mp4${parts > 1 ? "?ignore_gaps=true" : ""}`);
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
    video.dataset.started = "1";
    live();
    timeline.followLive = true;
  };
  const rate = $("rate");
  rate.replaceChildren(...RATES.map((r) => new Option(`${r}×`, String(r))));
  rate.onchange = () => {
    video.playbackRate = Number(rate.value);
  };
  // hls.js resets the rate on a new source: keep the chosen one.
  video.addEventListener("loadedmetadata", () => {
    video.playbackRate = Number(rate.value);
  });
  // A link to this page at what plays now (or at live).
  $("link").onclick = () => {
    const t = Math.floor(playheadSecond() ?? Date.now() / 1000);
    const url = new URL(location.href);
    url.search = "";
    url.searchParams.set("dvr", "true");
    if (playingFrom !== null) url.searchParams.set("from", String(t));
    if (token !== null) url.searchParams.set("token", token);
    copy(url.href, $("link-field"));
  };
  const calendar = new Calendar($("calendar"), (from, to) => timeline.show(from, to));
  async function refreshCalendar() {
    try {
      // Without from: the whole tape, one character an hour.
      const r = await fetch(streamUrl("recording_status.json?request=hour_bitmap"));
      if (!r.ok) return;
      const [status] = await r.json();
      if (status.hour_bitmap !== undefined) calendar.update(status.hour_bitmap, status.hour_bitmap_from);
    } catch {
      // The timeline's own refresh says what is wrong.
    }
  }
  refreshCalendar();
  setInterval(refreshCalendar, CALENDAR_MS);

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
  let from, to, ago, playDuration;
  try {
    [from, to, ago, playDuration] = ["from", "to", "ago", "play_duration"].map(seconds);
    if (to !== null && from === null) throw new Error("to= needs from=.");
    if (to !== null && to <= from) throw new Error(`to=${to} is not after from=${from}.`);
    if (ago !== null && from !== null) throw new Error("ago= and from= cannot be used together.");
  } catch (e) {
    say(e.message);
    return;
  }
  video.muted = flag("mute");
  if (flag("realtime")) {
    inform("realtime=true: this server has no low-latency protocol (MSE-LD, WebRTC); playing HLS.");
  }
  if (playDuration !== null) limitPlayback(playDuration);
  if (params.has("dvr") && flag("dvr")) setupDvr();
  if (from !== null && to !== null) {
    // A closed range: the VOD playlist of exactly that.
    playingFrom = from;
    play(`archive-${from}-${to - from}.m3u8`, true);
  } else if (from !== null) {
    playFrom(from);
  } else if (ago !== null) {
    playFrom(Math.floor(Date.now() / 1000) - ago);
  } else {
    live();
  }
}

// hls.min.js is a classic deferred script: it has run before this module.
main();
