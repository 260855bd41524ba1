// Helpers both pages use: times as the pages show them, and small DOM bits.

const pad = (n, w = 2) => String(n).padStart(w, "0");

/** `2026-12-05 06:30:15 UTC` for UTC seconds. */
export function utc(secs) {
  const d = new Date(secs * 1000);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}

/** `06:30:15` (or with the date when `withDate`) in the browser's zone. */
export function local(secs, withDate = false) {
  const d = new Date(secs * 1000);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}` : time;
}

/** `1 h 05 min`, `42 s`: a duration in seconds, for people. */
export function duration(secs) {
  secs = Math.round(secs);
  if (secs < 60) return `${secs} s`;
  if (secs < 3600) return `${Math.floor(secs / 60)} min ${pad(secs % 60)} s`;
  if (secs < 86400) return `${Math.floor(secs / 3600)} h ${pad(Math.floor(secs / 60) % 60)} min`;
  return `${Math.floor(secs / 86400)} d ${Math.floor(secs / 3600) % 24} h`;
}

/** An element with attributes (`style` an object of properties) and children (strings become text, never HTML). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    // Through the CSSOM: the pages' Content-Security-Policy refuses style attributes.
    else if (k === "style") Object.assign(node.style, v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat(Infinity)) {
    if (c !== undefined && c !== null) node.append(c);
  }
  return node;
}

/** Copies `text` to the clipboard; falls back to selecting it in `field`. */
export async function copy(text, field) {
  field.value = text;
  field.hidden = false;
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    field.select();
    return false;
  }
}
