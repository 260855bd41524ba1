// The operator page, /admin/: every stream with its state, recording on
// and off, its locks, and a link to its player; above them whether each
// archive's storage answers. It uses only the public
// API (/api/v1, docs/api.md) with the token the operator types in, kept
// in this tab's sessionStorage and sent as `Authorization: Bearer`: no
// cookie, so no other site can make the browser call the API (CSRF).

import { duration, el, local, utc } from "./common.js";

const $ = (role) => document.querySelector(`[data-role="${role}"]`);
const KEY = "dvr-api-token";
const REFRESH_MS = 5000;
const message = $("message");
const login = $("login");
const list = $("streams");

class Refused extends Error {}

async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${sessionStorage.getItem(KEY) ?? ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const r = await fetch(`/api/v1/${path}`, {
    method, headers, credentials: "omit", cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 401 || r.status === 403) throw new Refused((await r.json().catch(() => ({}))).error || r.statusText);
  if (!r.ok) throw new Error(`${method} /api/v1/${path}: ${r.status} ${(await r.json().catch(() => ({}))).error || r.statusText}`);
  return r.status === 204 ? null : r.json();
}

const enc = encodeURIComponent;

function say(text) {
  message.textContent = text;
}

function showLogin(why) {
  list.replaceChildren();
  $("storage").hidden = true;
  login.hidden = false;
  $("logout").hidden = true;
  say(why);
  login.querySelector("input").focus();
}

login.addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem(KEY, login.elements.token.value.trim());
  login.reset();
  refresh();
});
$("logout").onclick = () => {
  sessionStorage.removeItem(KEY);
  showLogin("");
};

/** An action button: runs `act`, then refreshes; errors are shown. */
function action(label, act, attrs = {}) {
  return el("button", {
    type: "button", ...attrs,
    onclick: async (e) => {
      e.target.disabled = true;
      try {
        await act();
        say("");
      } catch (err) {
        say(err.message);
      }
      await refresh();
    },
  }, label);
}

function state(s) {
  if (!s.running) return ["stopped", "off"];
  if (!s.source_alive) return ["no signal", "bad"];
  if (s.recording) return ["recording", "ok"];
  return [s.dvr_enabled ? "live" : "live, not recording", "warn"];
}

function lockForm(name) {
  const from = el("input", { type: "datetime-local", step: "1", name: "from", required: true, "aria-label": "lock from (local time)" });
  const minutes = el("input", { type: "number", min: "1", value: "10", name: "minutes", required: true, "aria-label": "minutes" });
  const tenMinutesAgo = new Date(Date.now() - 600_000 - new Date().getTimezoneOffset() * 60_000);
  from.value = tenMinutesAgo.toISOString().slice(0, 19);
  const form = el("form", { class: "lock-add", "data-role": "lock-add" },
    el("label", {}, "Lock from ", from), el("label", {}, " for ", minutes, " min "),
    el("button", { type: "submit" }, "Add lock"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const secs = Math.floor(new Date(from.value).getTime() / 1000);
    try {
      await api("POST", `streams/${enc(name)}/dvr/locks`, { from: secs, duration: Number(minutes.value) * 60 });
      say("");
    } catch (err) {
      say(err.message);
    }
    refresh();
  });
  return form;
}

function card(s, config, locks) {
  const [label, cls] = state(s);
  const name = s.name;
  const dvr = config?.dvr ?? {};
  const last = s.last_segment;
  const rows = [
    ["State", el("span", { class: `state ${cls}` }, label)],
    ["Bitrate", s.bitrate_bps ? `${(s.bitrate_bps / 1e6).toFixed(2)} Mbit/s` : "—"],
    ["Last segment", last ? `${duration(Date.now() / 1000 - (last.utc_start_ms + last.duration_ms) / 1000)} ago (#${last.seq}, ${(last.duration_ms / 1000).toFixed(1)} s)` : "—"],
    ["Recorded", s.recorded ? `${utc(s.recorded.from)} + ${duration(s.recorded.duration)}` : "—"],
    ["Gaps (last day)", String(s.gaps?.length ?? 0)],
    ["Depth", dvr.depth ?? (s.dvr_configured ? "—" : "no DVR")],
    ["Inputs", (config?.inputs ?? []).map((i) => i.replace(/\/\/[^/@]*@/, "//…@")).join(", ") || "—"],
    ["Playing", s.ingest?.input ? `${s.ingest.input} (input ${s.ingest.input_index + 1}, on ${s.ingest.node})` : "—"],
    ["Since start", s.ingest
      ? `${s.ingest.switches} switches, ${s.ingest.signal_losses} signal losses, ` +
        `${s.ingest.cc_errors} CC errors, ${s.ingest.discontinuities} discontinuities`
      : "—"],
  ];
  const lockRows = locks.map((l) => el("li", {},
    `${utc(l.from)} (${local(l.from, true)} local) + ${duration(l.duration)} `,
    action("Remove", () => api("DELETE", `streams/${enc(name)}/dvr/locks?from=${l.from}&duration=${l.duration}`), { class: "small" })));
  return el("section", { class: "stream", "data-stream": name },
    el("h2", {}, name, " ", el("a", { href: `/${name.split("/").map(enc).join("/")}/embed.html?dvr=true`, target: "_blank", rel: "noopener" }, "player ↗")),
    el("dl", {}, rows.map(([k, v]) => [el("dt", {}, k), el("dd", {}, v)])),
    s.dvr_configured
      ? el("div", { class: "actions" },
          s.dvr_enabled
            ? action("Stop recording", () => api("POST", `streams/${enc(name)}/dvr/disable`), { "data-role": "dvr-disable" })
            : action("Start recording", () => api("POST", `streams/${enc(name)}/dvr/enable`), { "data-role": "dvr-enable" }))
      : null,
    s.dvr_configured
      ? el("div", { class: "locks" }, el("h3", {}, `Locks (${locks.length})`),
          el("ul", { "data-role": "locks" }, lockRows), lockForm(name))
      : null);
}

/** The archives' check (`GET /api/v1/storage`), one line per root. */
function storageRows(health) {
  return health.archives.map((a) => el("li", { class: a.ok ? "ok" : "bad", "data-root": a.root },
    el("span", { class: `state ${a.ok ? "ok" : "bad"}` }, a.ok ? "answers" : "failing"), " ",
    el("code", {}, a.root), ` ${a.latency_ms} ms`,
    a.streams.length ? ` · ${a.streams.join(", ")}` : " · no stream",
    a.error ? el("div", { class: "error" }, a.error) : null));
}

let busy = false;
async function refresh() {
  if (busy) return;
  if (!sessionStorage.getItem(KEY)) {
    showLogin("");
    return;
  }
  busy = true;
  try {
    const [{ streams: configs }, { streams }, health] = await Promise.all([
      api("GET", "streams"), api("GET", "status"), api("GET", "storage")]);
    const byName = new Map(configs.map((c) => [c.name, c.config]));
    const locks = await Promise.all(streams.map((s) => s.dvr_configured
      ? api("GET", `streams/${enc(s.name)}/dvr/locks`).then((l) => l.locks).catch(() => [])
      : Promise.resolve([])));
    login.hidden = true;
    $("logout").hidden = false;
    $("storage").hidden = false;
    $("storage-list").replaceChildren(...storageRows(health));
    // Keep a lock form being typed into: redraw only when nothing has focus in the list.
    if (!list.contains(document.activeElement) || document.activeElement.tagName === "BUTTON") {
      list.replaceChildren(...streams.map((s, i) => card(s, byName.get(s.name), locks[i])));
      if (!streams.length) list.append(el("p", {}, "No streams are configured."));
    }
    document.body.dataset.loaded = "1";
  } catch (err) {
    if (err instanceof Refused) showLogin(`The API refused the token: ${err.message}`);
    else say(err.message);
  } finally {
    busy = false;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
