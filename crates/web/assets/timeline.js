// The DVR timeline: recorded ranges, gaps, locks and the live edge of one
// stream, drawn from `recording_status.json` into the element marked
// data-role="timeline". Its left edge is the oldest time shown. A click
// asks to play from that second; a drag selects a range; the wheel and
// the +/- buttons zoom (from 30 days down to 30 seconds).

import { el, local, utc } from "./common.js";

const MIN_SPAN = 30;
const MAX_SPAN = 30 * 86400;
/** A drag shorter than this many pixels is a click. */
const DRAG_PX = 4;

export class Timeline {
  /**
   * @param {HTMLElement} root the data-role="timeline" element
   * @param {{onSeek(t:number):void, onSelect(from:number,to:number):void, onCursor(t:number|null):void}} hooks
   */
  constructor(root, hooks) {
    this.root = root;
    this.hooks = hooks;
    this.ranges = [];
    this.locks = [];
    this.now = Date.now() / 1000;
    this.view = null;
    this.playhead = null;
    this.selection = null;
    this.track = el("div", { class: "track" });
    this.axis = el("div", { class: "axis" });
    root.append(this.track, this.axis);
    this.listen();
  }

  /** New data: ranges as `[{from, duration}]`, locks as `[{from, duration}]`, `now` in seconds. */
  update(ranges, locks, now) {
    this.ranges = ranges;
    this.locks = locks;
    this.now = now;
    if (!this.view) {
      const start = ranges.length ? ranges[0].from : now - 600;
      this.view = this.clamp(start, now);
      this.followLive = true;
    } else if (this.followLive) {
      const span = this.view.to - this.view.from;
      this.view = { from: now - span, to: now };
    }
    this.draw();
  }

  clamp(from, to) {
    const span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, to - from));
    to = Math.min(this.now, from + span);
    return { from: to - span, to };
  }

  /** Shows `from`..`to`, ending at now at the latest (a day not over yet
   *  shows from its start to now), within the zoom limits. */
  show(from, to) {
    to = Math.min(to, this.now);
    const span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, to - from));
    this.view = { from: to - span, to };
    this.followLive = this.view.to >= this.now - 1;
    this.draw();
  }

  /** Zooms by `factor` (< 1 in) around second `at` (the middle by default). */
  zoom(factor, at) {
    const { from, to } = this.view;
    at = at ?? (from + to) / 2;
    const span = Math.min(MAX_SPAN, Math.max(MIN_SPAN, (to - from) * factor));
    const left = at - (at - from) * (span / (to - from));
    this.view = this.clamp(left, left + span);
    this.followLive = this.view.to >= this.now - 1;
    this.draw();
  }

  secondAt(clientX) {
    const box = this.track.getBoundingClientRect();
    const x = Math.min(Math.max(clientX - box.left, 0), box.width);
    const { from, to } = this.view;
    return Math.floor(from + (x / box.width) * (to - from));
  }

  pct(t) {
    const { from, to } = this.view;
    return ((Math.min(Math.max(t, from), to) - from) / (to - from)) * 100;
  }

  listen() {
    let down = null;
    this.track.addEventListener("pointerdown", (e) => {
      if (!this.view) return;
      down = { x: e.clientX, t: this.secondAt(e.clientX) };
      this.track.setPointerCapture(e.pointerId);
    });
    this.track.addEventListener("pointermove", (e) => {
      if (!this.view) return;
      const t = this.secondAt(e.clientX);
      this.hooks.onCursor(t);
      this.cursor = t;
      if (down && Math.abs(e.clientX - down.x) >= DRAG_PX) {
        this.selection = { from: Math.min(down.t, t), to: Math.max(down.t, t) };
      }
      this.draw();
    });
    this.track.addEventListener("pointerleave", () => {
      this.cursor = null;
      this.hooks.onCursor(null);
      this.draw();
    });
    this.track.addEventListener("pointerup", (e) => {
      if (!down) return;
      const t = this.secondAt(e.clientX);
      if (Math.abs(e.clientX - down.x) < DRAG_PX) {
        this.selection = null;
        this.hooks.onSelect(null, null);
        this.hooks.onSeek(t);
      } else if (this.selection) {
        this.hooks.onSelect(this.selection.from, this.selection.to);
      }
      down = null;
      this.draw();
    });
    this.track.addEventListener("wheel", (e) => {
      if (!this.view) return;
      e.preventDefault();
      this.zoom(e.deltaY > 0 ? 1.5 : 1 / 1.5, this.secondAt(e.clientX));
    }, { passive: false });
  }

  /** Tick spacing: the smallest step giving at most ~8 labels. */
  step() {
    const span = this.view.to - this.view.from;
    const steps = [10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 86400, 7 * 86400];
    return steps.find((s) => span / s <= 8) ?? 7 * 86400;
  }

  draw() {
    if (!this.view) return;
    const { from, to } = this.view;
    const bar = (cls, a, b, extra = {}) => {
      const left = this.pct(a);
      const width = this.pct(b) - left;
      return el("div", {
        class: cls,
        style: { left: `${left}%`, width: `${Math.max(width, 0.2)}%` },
        ...extra,
      });
    };
    const parts = [];
    // Gaps first: everything shown before the live edge and not recorded.
    parts.push(bar("gap", from, Math.min(to, this.now)));
    for (const r of this.ranges) {
      const end = r.from + r.duration;
      if (end < from || r.from > to) continue;
      parts.push(bar("range", r.from, end, {
        "data-from": r.from, "data-to": end, title: `${utc(r.from)} – ${utc(end)}`,
      }));
    }
    for (const l of this.locks) {
      const end = l.from + l.duration;
      if (end < from || l.from > to) continue;
      parts.push(bar("lock", l.from, end, {
        "data-from": l.from, "data-to": end, title: `locked ${utc(l.from)} – ${utc(end)}`,
      }));
    }
    if (this.selection) parts.push(bar("sel", this.selection.from, this.selection.to));
    if (this.now >= from && this.now <= to) {
      parts.push(el("div", { class: "edge", style: { left: `${this.pct(this.now)}%` }, title: "live edge" }));
    }
    if (this.playhead !== null && this.playhead >= from && this.playhead <= to) {
      parts.push(el("div", { class: "playhead", style: { left: `${this.pct(this.playhead)}%` } }));
    }
    if (this.cursor !== null && this.cursor !== undefined) {
      parts.push(el("div", { class: "hover", style: { left: `${this.pct(this.cursor)}%` } }));
    }
    this.track.replaceChildren(...parts);
    this.root.dataset.from = String(Math.floor(from));
    this.root.dataset.to = String(Math.floor(to));
    const step = this.step();
    const ticks = [];
    for (let t = Math.ceil(from / step) * step; t <= to; t += step) {
      ticks.push(el("span", { style: { left: `${this.pct(t)}%` } }, local(t, step >= 86400)));
    }
    this.axis.replaceChildren(...ticks);
  }
}
