// The calendar over the timeline: one button per local day that has
// something recorded, from `recording_status.json?request=hour_bitmap`
// (one character per hour of the whole tape, "1" where any of that hour
// is recorded). A day's button shows that day on the timeline. Days keep
// the browser's zone, as the timeline's axis does.

import { el } from "./common.js";

/** The local midnight at or before UTC second `t`. */
function dayStart(t) {
  const d = new Date(t * 1000);
  d.setHours(0, 0, 0, 0);
  return d.getTime() / 1000;
}

/** The local midnight after the day starting at `start` (DST-safe). */
function nextDay(start) {
  const d = new Date(start * 1000);
  d.setDate(d.getDate() + 1);
  d.setHours(0, 0, 0, 0);
  return d.getTime() / 1000;
}

/**
 * The local days with a recorded hour, oldest first, as `[{from, to, hours}]`.
 * @param {string} bits one character per hour, "1" where something is recorded
 * @param {number} from the UTC second of the first hour
 */
export function recordedDays(bits, from) {
  const days = [];
  for (let i = 0; i < bits.length; i++) {
    if (bits[i] !== "1") continue;
    const start = dayStart(from + i * 3600);
    const last = days[days.length - 1];
    if (last && last.from === start) last.hours += 1;
    else days.push({ from: start, to: nextDay(start), hours: 1 });
  }
  return days;
}

export class Calendar {
  /**
   * @param {HTMLElement} root the data-role="calendar" element
   * @param {(from:number, to:number) => void} onDay called with a day's edges
   */
  constructor(root, onDay) {
    this.root = root;
    this.onDay = onDay;
    this.key = "";
  }

  /** New bitmap; redraws only when the days changed. */
  update(bits, from) {
    const days = recordedDays(bits, from);
    const key = days.map((d) => `${d.from}:${d.hours}`).join(",");
    if (key === this.key) return;
    this.key = key;
    const label = new Intl.DateTimeFormat(undefined, { weekday: "short", month: "short", day: "numeric" });
    this.root.replaceChildren(...days.map((d) => el("button", {
      type: "button",
      "data-from": d.from,
      "data-to": d.to,
      title: `${d.hours} h recorded`,
      onclick: () => this.onDay(d.from, d.to),
    }, label.format(new Date(d.from * 1000)))));
    this.root.hidden = days.length === 0;
  }
}
