// Drives Debian's Chromium with playwright-core through the player page and
// the operator page of a running `dvr run`, for services/dvr/tests/pages.rs.
// It measures and reports (one JSON object per line on stdout, `{"step":…}`);
// the Rust test judges. Arguments come as environment variables:
// PLAYWRIGHT (path of playwright-core), CHROMIUM, BASE (http://127.0.0.1:PORT),
// STREAM, RANGE_FROM, PROTECTED, PROTECTED_TOKEN, API_TOKEN, SHOTS (screenshot directory), LOCK_FROM.
const { chromium } = require(process.env.PLAYWRIGHT);

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env("BASE");
const STREAM = env("STREAM");
const report = (step, data) => console.log(JSON.stringify({ step, ...data }));
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const DESKTOP = { width: 1280, height: 800 };
const PHONE = { width: 390, height: 844 };

async function main() {
  const browser = await chromium.launch({
    executablePath: env("CHROMIUM"),
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--autoplay-policy=no-user-gesture-required"],
  });
  const context = await browser.newContext({ viewport: DESKTOP });
  const foreign = [];
  context.on("request", (r) => {
    if (!r.url().startsWith(BASE) && !r.url().startsWith("blob:") && !r.url().startsWith("data:")) foreign.push(r.url());
  });
  const errors = [];
  context.on("page", (p) => p.on("pageerror", (e) => errors.push(String(e))));

  // 1. Live: currentTime advances.
  {
    const page = await context.newPage();
    await page.goto(`${BASE}/${STREAM}/embed.html?autoplay&mute`);
    await page.waitForFunction(() => document.querySelector("video").currentTime > 0.5, null, { timeout: 30000 });
    const t0 = await page.evaluate(() => document.querySelector("video").currentTime);
    await sleep(3000);
    const t1 = await page.evaluate(() => document.querySelector("video").currentTime);
    report("live", { t0, t1, source: await page.evaluate(() => document.body.dataset.source) });
    await page.close();
  }

  // 1b. A closed range from the query.
  {
    const page = await context.newPage();
    const from = Number(env("RANGE_FROM"));
    await page.goto(`${BASE}/${STREAM}/embed.html?from=${from}&to=${from + 6}&autoplay&mute`);
    await page.waitForFunction(() => document.querySelector("video").currentTime > 1, null, { timeout: 30000 });
    report("range", {
      source: await page.evaluate(() => document.body.dataset.source),
      duration: await page.evaluate(() => document.querySelector("video").duration),
    });
    await page.close();
  }

  // 2. The timeline against recording_status.json.
  const page = await context.newPage();
  await page.goto(`${BASE}/${STREAM}/embed.html?dvr=true&autoplay&mute`);
  await page.waitForSelector('[data-role="timeline"] .range', { state: "attached", timeout: 20000 });
  await page.waitForFunction(() => document.querySelector("video").currentTime > 0.5, null, { timeout: 30000 });
  const drawn = await page.evaluate(async () => {
    const tl = document.querySelector('[data-role="timeline"]');
    const box = tl.getBoundingClientRect();
    const spans = [...tl.querySelectorAll(".range")].map((r) => {
      const b = r.getBoundingClientRect();
      return { from: +r.dataset.from, to: +r.dataset.to, left: b.left - box.left, right: b.right - box.left };
    });
    const q = new URLSearchParams(location.search);
    const token = q.get("token");
    const r = await fetch(`recording_status.json?from=${tl.dataset.from}&to=${tl.dataset.to}&request=ranges${token ? `&token=${token}` : ""}`);
    return { view: { from: +tl.dataset.from, to: +tl.dataset.to, width: box.width, left: box.left }, spans, status: await r.json() };
  });
  report("timeline", drawn);
  await page.screenshot({ path: `${env("SHOTS")}/embed-desktop.png` });

  // 3. A click in the past plays from there.
  {
    const { view } = drawn;
    const first = drawn.spans[0];
    const target = first.from + 4;
    const track = await page.$('[data-role="timeline"] .track');
    const tb = await track.boundingBox();
    const x = tb.x + ((target + 0.5 - view.from) / (view.to - view.from)) * tb.width;
    // Archive at twice the speed: the rate must hold across the new source.
    await page.selectOption('[data-role="rate"]', "2");
    await page.mouse.click(x, tb.y + tb.height / 2);
    await page.waitForFunction(() => (document.body.dataset.source || "").startsWith("archive-"), null, { timeout: 5000 });
    await page.waitForFunction(() => document.querySelector("video").currentTime > 0.5 && window.dvrPlayhead() !== null, null, { timeout: 30000 });
    const seen = await page.evaluate(() => ({
      source: document.body.dataset.source,
      playhead: window.dvrPlayhead(),
      currentTime: document.querySelector("video").currentTime,
      playbackRate: document.querySelector("video").playbackRate,
    }));
    // The link to this moment.
    await page.click('[data-role="link"]');
    await page.waitForSelector('[data-role="link-field"]:not([hidden])', { timeout: 5000 });
    const link = await page.inputValue('[data-role="link-field"]');
    report("seek", { target, ...seen, link, linkPlayhead: await page.evaluate(() => window.dvrPlayhead()) });
    await page.selectOption('[data-role="rate"]', "1");
  }

  // 4. Drag to select: the export and copy links.
  {
    const tb = await (await page.$('[data-role="timeline"] .track')).boundingBox();
    await page.mouse.move(tb.x + tb.width * 0.2, tb.y + 10);
    await page.mouse.down();
    await page.mouse.move(tb.x + tb.width * 0.5, tb.y + 10, { steps: 5 });
    await page.mouse.up();
    await page.waitForSelector('[data-role="selection"]:not([hidden])', { timeout: 5000 });
    const download = await page.getAttribute('[data-role="download"]', "href");
    report("select", { download });
    // Chromium's own <video> plays the export and seeks in it (Range).
    const mp4 = await context.newPage();
    await mp4.goto(`${BASE}${download}`);
    const played = await mp4.evaluate(async () => {
      const v = document.querySelector("video");
      v.muted = true;
      if (v.readyState < 1) await new Promise((r) => v.addEventListener("loadedmetadata", r, { once: true }));
      const duration = v.duration;
      const target = duration / 2;
      const seeked = new Promise((r) => v.addEventListener("seeked", r, { once: true }));
      v.currentTime = target;
      await seeked;
      const at = v.currentTime;
      await v.play();
      await new Promise((r) => setTimeout(r, 1500));
      return { duration, target, at, later: v.currentTime, error: v.error && v.error.message };
    });
    report("export_video", played);
    await mp4.close();
    await page.screenshot({ path: `${env("SHOTS")}/embed-selection-desktop.png` });
  }

  // 4b. The calendar: its days against the hour bitmap, and a day's button
  // shows that day on the timeline.
  {
    await page.setViewportSize(PHONE);
    await sleep(500);
    await page.screenshot({ path: `${env("SHOTS")}/embed-phone.png`, fullPage: true });
    await page.setViewportSize(DESKTOP);
    await page.waitForSelector('[data-role="calendar"] button', { timeout: 20000 });
    const days = await page.$$eval('[data-role="calendar"] button', (b) => b.map((e) => ({ from: +e.dataset.from, to: +e.dataset.to })));
    const bitmap = await page.evaluate(async () => (await (await fetch("recording_status.json?request=hour_bitmap")).json())[0]);
    await page.click('[data-role="calendar"] button');
    const tl = await page.$eval('[data-role="timeline"]', (e) => ({ from: +e.dataset.from, to: +e.dataset.to }));
    report("calendar", { days, bitmap, view: tl, now: Date.now() / 1000 });
  }
  await page.close();

  // 4c. The seeds' other options.
  {
    const open = async (query) => {
      const p = await context.newPage();
      await p.goto(`${BASE}/${STREAM}/embed.html?${query}`);
      return p;
    };
    const text = (p, role) => p.textContent(`[data-role="${role}"]`);
    const video = (p) => p.evaluate(() => ({ currentTime: document.querySelector("video").currentTime, paused: document.querySelector("video").paused }));
    let p = await open("play_duration=3&mute");
    await p.waitForFunction(() => document.querySelector('[data-role="notice"]').textContent.includes("play_duration"), null, { timeout: 30000 });
    const stoppedAt = await video(p);
    await sleep(1500);
    report("play_duration", { notice: await text(p, "notice"), stoppedAt, later: await video(p) });
    await p.close();
    p = await open("ago=30&mute");
    await p.waitForFunction(() => document.body.dataset.source, null, { timeout: 5000 });
    report("ago", { source: await p.evaluate(() => document.body.dataset.source), now: Date.now() / 1000 });
    await p.close();
    p = await open("realtime=true&mute");
    await p.waitForFunction(() => document.querySelector("video").currentTime > 0.5, null, { timeout: 30000 });
    report("realtime", { notice: await text(p, "notice"), source: await p.evaluate(() => document.body.dataset.source) });
    await p.close();
    p = await open("autoplay=false");
    await sleep(3000);
    const before = await video(p);
    await sleep(1500);
    report("no_autoplay", { before, later: await video(p) });
    await p.close();
    p = await open("from=abc&mute");
    await sleep(500);
    report("bad_from", { message: await text(p, "message"), source: await p.evaluate(() => document.body.dataset.source || null) });
    await p.close();
  }

  // 5. The operator page: the list, then a lock.
  {
    const admin = await context.newPage();
    const posts = [];
    admin.on("request", (r) => {
      if (r.method() !== "GET") posts.push({ url: r.url(), headers: r.headers() });
    });
    await admin.goto(`${BASE}/admin/`);
    await admin.fill('input[name="token"]', env("API_TOKEN"));
    await admin.click('form[data-role="login"] button[type="submit"]');
    await admin.waitForSelector(`section.stream[data-stream="${STREAM}"]`, { timeout: 15000 });
    await admin.waitForSelector('[data-role="storage-list"] li', { timeout: 15000 });
    const listed = await admin.$$eval("section.stream", (s) => s.map((e) => e.dataset.stream));
    const card = `section.stream[data-stream="${STREAM}"]`;
    const lockFrom = Number(env("LOCK_FROM"));
    await admin.evaluate(({ card, lockFrom }) => {
      const d = new Date(lockFrom * 1000 - new Date(lockFrom * 1000).getTimezoneOffset() * 60000);
      document.querySelector(`${card} input[name="from"]`).value = d.toISOString().slice(0, 19);
      document.querySelector(`${card} input[name="minutes"]`).value = "10";
    }, { card, lockFrom });
    await admin.click(`${card} [data-role="lock-add"] button[type="submit"]`);
    await admin.waitForSelector(`${card} [data-role="locks"] li`, { timeout: 15000 });
    await admin.screenshot({ path: `${env("SHOTS")}/admin-desktop.png`, fullPage: true });
    await admin.setViewportSize(PHONE);
    await sleep(500);
    await admin.screenshot({ path: `${env("SHOTS")}/admin-phone.png`, fullPage: true });
    report("admin", {
      listed,
      storage: await admin.$$eval('[data-role="storage-list"] li', (l) => l.map((e) => ({ ok: e.classList.contains("ok"), root: e.dataset.root, text: e.textContent }))),
      locks: await admin.$$eval(`${card} [data-role="locks"] li`, (l) => l.map((e) => e.textContent)),
      card: await admin.textContent(card),
      cookie: await admin.evaluate(() => document.cookie),
      posts: posts.map((p) => ({ url: p.url, authorization: Boolean(p.headers.authorization), cookie: p.headers.cookie || null })),
    });
    await admin.close();
  }

  // 6. A protected stream without a token.
  {
    const p = await context.newPage();
    const response = await p.goto(`${BASE}/${env("PROTECTED")}/embed.html?autoplay&mute`);
    await sleep(2000);
    report("protected", {
      status: response.status(),
      message: await p.textContent('[data-role="message"]'),
      currentTime: await p.evaluate(() => document.querySelector("video").currentTime),
    });
    await p.screenshot({ path: `${env("SHOTS")}/embed-refused.png` });
    await p.close();
  }

  // 7. The protected stream with its token: it plays, and every request
  // for the stream carries the token.
  {
    const p = await context.newPage();
    const asked = [];
    p.on("request", (r) => {
      if (r.url().startsWith(`${BASE}/${env("PROTECTED")}/`)) asked.push(r.url());
    });
    const token = encodeURIComponent(env("PROTECTED_TOKEN"));
    const response = await p.goto(`${BASE}/${env("PROTECTED")}/embed.html?dvr=true&autoplay&mute&token=${token}`);
    await p.waitForSelector('[data-role="timeline"] .range', { state: "attached", timeout: 20000 });
    await p.waitForFunction(() => document.querySelector("video").currentTime > 0.5, null, { timeout: 30000 });
    report("protected_with_token", {
      status: response.status(),
      asked,
      without: asked.filter((u) => new URL(u).searchParams.get("token") !== env("PROTECTED_TOKEN")),
    });
    await p.close();
  }

  report("done", { foreign, errors });
  await browser.close();
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
