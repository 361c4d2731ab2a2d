// The georay try-it page: send a photo to POST v1/geolocate, show the answer on a world map.
// Plain script, no build step and no framework: a handful of elements and one fetch per photo.
// Every URL is relative to the page, so it works under any route prefix, and nothing is
// fetched from anywhere but this server. API data only ever goes into textContent.
// What the user reads is always a sentence written for them (a Shown error, or the API's own
// words): a JavaScript exception's text goes to the console, never onto the page.
"use strict";

const $ = (id) => document.getElementById(id);
const SVG = "http://www.w3.org/2000/svg";
const WORLD = [-1800, -900, 3600, 1800]; // the map's frame: tenths of a degree, y = -10 * lat
const MIN_VIEW_WIDTH = 120; // the narrowest zoomed view, 12 degrees: a res-5 cell shows
const MULTIPART_SLACK = 1024; // bytes of multipart framing around the photo, with room to spare
const RETRY_SECONDS = [1, 2, 4, 8, 15]; // GET v1/config again after a failure, then every 15 s
const MAP_CANDIDATES = 3; // candidates drawn on the map (the list shows them all)
let config = null; // GET v1/config: auth, size limits, URL fetching
let configured; // a promise of config: a photo chosen before it has come waits for it
let view = WORLD; // the zoomed view of the last answer

// An error whose message is written for the user (everything else is a bug: see userMessage).
class Shown extends Error {}
class Unreachable extends Shown {} // no answer at all: no connection, or the server is down

function userMessage(err) {
  if (err instanceof Shown) return err.message;
  console.error(err);
  return "Something went wrong in this page (details in the browser's console). " +
    "Try again, or reload the page.";
}

// -- talking to the server --------------------------------------------------------------

// fetch, with a failure to connect said in words (fetch's own TypeError text is not).
async function request(url, options) {
  try {
    return await fetch(url, options);
  } catch (err) {
    console.error(err);
    throw new Unreachable("The server could not be reached: check the connection and try again.");
  }
}

async function readJSON(response) {
  try {
    return await response.json();
  } catch (err) {
    console.error(err);
    throw new Shown(`The server's answer was not JSON (${response.status} ${response.statusText}).`);
  }
}

async function getJSON(url) {
  const response = await request(url);
  if (!response.ok) throw new Shown(await errorText(response));
  return readJSON(response);
}

// The API's own words for a failed request: {"error": ...} or the body as text.
async function errorText(response) {
  const text = await response.text();
  let message = text;
  try {
    message = JSON.parse(text).error ?? text;
  } catch {}
  return `${response.status} ${response.statusText}: ${message || "(no details)"}`.trim();
}

async function geolocate(body, contentType) {
  const headers = contentType ? { "Content-Type": contentType } : {};
  const key = $("key").value.trim();
  if (key) headers["X-API-Key"] = key; // a header, never the URL: URLs end up in logs
  const response = await request("v1/geolocate", { method: "POST", headers, body });
  if (!response.ok) {
    const hint = response.status === 401 ? " (see the API key field)" : "";
    throw new Shown((await errorText(response)) + hint);
  }
  return readJSON(response);
}

// -- fitting a photo to the server's limits ---------------------------------------------

// The photo itself when the server takes it as it is, else a downscaled JPEG that fits
// max_request_bytes and max_image_pixels. Photos the browser cannot decode (HEIC and RAW in
// most browsers) go as they are: the server reads them, or says what is wrong with them.
async function fitToServer(file) {
  const room = config.max_request_bytes - MULTIPART_SLACK;
  let bitmap;
  try {
    bitmap = await createImageBitmap(file); // applies the EXIF orientation
  } catch {
    if (file.size <= room) return { blob: file, note: "" };
    throw new Shown(`This photo (${mb(file.size)}) is over the server's ${mb(room)} limit, ` +
      "and this browser cannot decode it to make it smaller.");
  }
  const { width, height } = bitmap;
  if (file.size <= room && width * height <= config.max_image_pixels) {
    bitmap.close();
    return { blob: file, note: "" };
  }
  const exif = exifSegment(new Uint8Array(await file.arrayBuffer()));
  let scale = Math.min(1, Math.sqrt(config.max_image_pixels / (width * height)));
  for (let attempt = 0; attempt < 8; attempt++) {
    const w = Math.max(1, Math.floor(width * scale));
    const h = Math.max(1, Math.floor(height * scale));
    const canvas = new OffscreenCanvas(w, h);
    canvas.getContext("2d").drawImage(bitmap, 0, 0, w, h);
    let blob = await canvas.convertToBlob({ type: "image/jpeg", quality: 0.9 });
    // Keep the EXIF block (GPS) right after the new JPEG's start-of-image marker.
    if (exif) blob = new Blob([blob.slice(0, 2), exif, blob.slice(2)], { type: "image/jpeg" });
    if (blob.size <= room) {
      bitmap.close();
      const note = `Downscaled ${width}×${height} (${mb(file.size)}) to ${w}×${h} ` +
        `(${mb(blob.size)}) to fit the server's limits.`;
      return { blob, note };
    }
    scale *= 0.9 * Math.sqrt(room / blob.size);
  }
  bitmap.close();
  throw new Shown(`Could not shrink the photo under the server's ${mb(room)} limit.`);
}

const mb = (bytes) => `${(bytes / 1048576).toFixed(1)} MB`;

// A JPEG's EXIF block (APP1 segment), with its orientation set to 1 since the canvas has
// already turned the pixels upright; null when there is none or it is malformed.
function exifSegment(bytes) {
  try {
    if (bytes[0] !== 0xff || bytes[1] !== 0xd8) return null;
    for (let i = 2; i + 10 < bytes.length && bytes[i] === 0xff; ) {
      const marker = bytes[i + 1];
      const length = (bytes[i + 2] << 8) | bytes[i + 3];
      if (marker === 0xda) return null; // start of scan: the headers are over
      const id = String.fromCharCode(...bytes.subarray(i + 4, i + 8));
      if (marker === 0xe1 && id === "Exif") {
        const segment = bytes.slice(i, i + 2 + length);
        uprightOrientation(new DataView(segment.buffer), 10); // TIFF header after "Exif\0\0"
        return segment;
      }
      i += 2 + length;
    }
  } catch {}
  return null;
}

function uprightOrientation(view, tiff) {
  const little = view.getUint16(tiff) === 0x4949; // "II": little-endian
  const ifd = tiff + view.getUint32(tiff + 4, little);
  const count = view.getUint16(ifd, little);
  for (let k = 0; k < count; k++) {
    const entry = ifd + 2 + 12 * k;
    if (view.getUint16(entry, little) === 0x0112) view.setUint16(entry + 8, 1, little);
  }
}

// -- the map ----------------------------------------------------------------------------

function svg(tag, attrs, parent) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  return parent.appendChild(node);
}

const xy = (lat, lon) => [10 * lon, -10 * lat];

function drawCountries(outlines) {
  const group = $("countries");
  for (const [code, d] of Object.entries(outlines)) svg("path", { d, "data-code": code }, group);
}

function setView([x, y, w, h]) {
  $("map").setAttribute("viewBox", `${x} ${y} ${w} ${h}`);
  const r = w / 180; // markers keep their size on screen, and leave the cell around them visible
  for (const dot of $("overlay").querySelectorAll("circle")) {
    dot.setAttribute("r", dot.classList.contains("cand") ? 0.7 * r : r); // under the answer's
  }
}

// The smallest view with the map's aspect ratio that holds every point, padded.
function viewAround(points) {
  const xs = points.map((p) => p[0]);
  const ys = points.map((p) => p[1]);
  const [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  const w = Math.max(MIN_VIEW_WIDTH, 1.3 * (x1 - x0), 2 * 1.3 * (y1 - y0));
  return [(x0 + x1) / 2 - w / 2, (y0 + y1) / 2 - w / 4, w, w / 2];
}

async function drawAnswer(answer) {
  const overlay = $("overlay");
  overlay.replaceChildren();
  for (const path of $("countries").querySelectorAll(".hit")) path.classList.remove("hit");
  const hit = answer.country_code && $("countries").querySelector(
    `[data-code="${CSS.escape(answer.country_code)}"]`);
  if (hit) hit.classList.add("hit");
  const points = [];
  if (answer.h3) {
    const cell = await getJSON(`v1/h3/${encodeURIComponent(answer.h3)}`);
    const ring = cell.boundary.map(([lat, lon]) => xy(lat, lon));
    svg("polygon", { id: "cell", class: "cell", points: ring.join(" ") }, overlay);
    points.push(...ring);
  }
  const pred = answer.lat != null && xy(answer.lat, answer.lon);
  const exif = answer.exif_lat != null && xy(answer.exif_lat, answer.exif_lon);
  if (pred && exif) {
    svg("line", { class: "gap", x1: pred[0], y1: pred[1], x2: exif[0], y2: exif[1] }, overlay);
  }
  const cands = drawCandidates(answer.candidates, overlay);
  if (exif) svg("circle", { id: "exif-marker", class: "exif", cx: exif[0], cy: exif[1] }, overlay);
  if (pred) svg("circle", { id: "pred-marker", class: "pred", cx: pred[0], cy: pred[1] }, overlay);
  points.push(...[pred, exif].filter(Boolean), ...cands);
  view = points.length ? viewAround(points) : WORLD;
  setView(view);
  $("zoom").hidden = !points.length;
  $("zoom").textContent = "Whole world";
}

// The first MAP_CANDIDATES candidates with a point, as numbered markers (the first is the
// answer itself, under its own marker); returns their points.
function drawCandidates(candidates, overlay) {
  const points = [];
  (candidates || []).slice(0, MAP_CANDIDATES).forEach((c, i) => {
    if (c.lat == null || c.lon == null) return;
    const [cx, cy] = xy(c.lat, c.lon);
    const dot = svg("circle", { id: `cand-marker-${i + 1}`, class: "cand", cx, cy,
      "data-rank": i + 1 }, overlay);
    svg("title", {}, dot).textContent = `${i + 1}. ${placeName(c)} · ${pct(c.probability)}`;
    points.push([cx, cy]);
  });
  return points;
}

function toggleZoom() {
  const whole = $("zoom").textContent === "Whole world";
  setView(whole ? WORLD : view);
  $("zoom").textContent = whole ? "Zoom in" : "Whole world";
}

// -- showing answers --------------------------------------------------------------------

// Great-circle distance, the same sphere as georay.geo.distance (radius 6371.0 km).
function haversineKm(lat1, lon1, lat2, lon2) {
  const rad = Math.PI / 180;
  const a = Math.sin(((lat2 - lat1) * rad) / 2) ** 2 +
    Math.cos(lat1 * rad) * Math.cos(lat2 * rad) * Math.sin(((lon2 - lon1) * rad) / 2) ** 2;
  return 2 * 6371.0 * Math.asin(Math.min(1, Math.sqrt(a)));
}

const deg = (lat, lon) => `${lat.toFixed(4)}, ${lon.toFixed(4)}`;
const pct = (p) => (p == null ? "?" : `${(100 * p).toFixed(1)}%`);
const placeName = (c) => [c.city, c.country || c.country_code].filter(Boolean).join(", ") || "?";

// "87.0% that the country is right, 61.0% the city", and whether the answer abstained (its
// confidence is under the server's --min-confidence: a person should check it).
function confidenceText(answer) {
  if (answer.country_confidence == null) return "not given by this model";
  let text = `${pct(answer.country_confidence)} that the country is right`;
  if (answer.city_confidence != null) text += `, ${pct(answer.city_confidence)} the city`;
  return text;
}

function showConfidence(answer) {
  const box = $("confidence");
  box.textContent = confidenceText(answer);
  if (answer.abstained) {
    const note = document.createElement("div");
    note.className = "unsure";
    note.textContent = "Under the server's minimum confidence: check this answer by hand.";
    box.appendChild(note);
  }
  const list = document.createElement("ol");
  for (const c of answer.candidates || []) {
    const item = list.appendChild(document.createElement("li"));
    item.textContent = `${placeName(c)} · ${pct(c.probability)}`;
  }
  $("candidates").replaceChildren(list.children.length ? list : "–");
}

async function show(answer) {
  $("country").textContent = answer.country
    ? `${answer.country}${answer.country_code ? ` (${answer.country_code})` : ""}`
    : "no usable answer: see the raw answer below";
  $("city").textContent = answer.city || "–";
  $("reasons").textContent = answer.reasons || "–";
  showConfidence(answer);
  $("point").textContent = answer.lat == null ? "–"
    : `${deg(answer.lat, answer.lon)} · H3 cell ${answer.h3} (placed by ${answer.resolution})`;
  if (answer.exif_lat == null) {
    $("exif").textContent = "none in the photo";
  } else {
    const km = answer.lat == null ? null
      : haversineKm(answer.exif_lat, answer.exif_lon, answer.lat, answer.lon);
    $("exif").textContent = deg(answer.exif_lat, answer.exif_lon) +
      (km == null ? "" : ` · ${Math.round(km).toLocaleString("en")} km from the prediction`);
  }
  $("raw").textContent = JSON.stringify(answer, null, 2);
  $("answer").hidden = $("raw-box").hidden = false;
  await drawAnswer(answer);
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("status").textContent = "";
  document.body.dataset.state = "error";
}

// One request at a time: whatever goes wrong ends up as a readable message on the page.
async function run(task) {
  $("error").hidden = true;
  $("answer").hidden = $("raw-box").hidden = true;
  document.body.dataset.state = "busy";
  $("status").textContent = "Locating…";
  const started = performance.now();
  try {
    const note = await task();
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    $("status").textContent = `${note ? note + " " : ""}Answered in ${seconds} s.`;
    document.body.dataset.state = "done";
  } catch (err) {
    showError(userMessage(err));
  }
}

function locateFile(file) {
  if (!file) return;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  run(async () => {
    if (!config) $("status").textContent = "Waiting for the server's settings…";
    await configured;
    $("status").textContent = "Locating…";
    const { blob, note } = await fitToServer(file);
    const form = new FormData();
    form.append("image", blob, file.name || "photo.jpg");
    await show(await geolocate(form));
    return note;
  });
}

function locateUrl() {
  const url = $("url").value.trim();
  if (!url) return;
  $("preview").hidden = true;
  run(async () => {
    await configured;
    await show(await geolocate(JSON.stringify({ image_url: url }), "application/json"));
  });
}

// -- start ------------------------------------------------------------------------------

function wire() {
  const drop = $("drop");
  $("file").addEventListener("change", (e) => {
    locateFile(e.target.files[0]);
    e.target.value = ""; // so that choosing the same photo again asks again
  });
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    locateFile(e.dataTransfer.files[0]);
  });
  drop.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") $("file").click();
  });
  $("url-go").addEventListener("click", locateUrl);
  $("url").addEventListener("keydown", (e) => e.key === "Enter" && locateUrl());
  $("zoom").addEventListener("click", toggleZoom);
  // Not an image this browser shows (HEIC, RAW): no preview, the server still reads it.
  $("preview").addEventListener("error", () => ($("preview").hidden = true));
  // A photo chosen before this script ran fired its change event before anyone listened.
  if ($("file").files.length) {
    locateFile($("file").files[0]);
    $("file").value = "";
  }
}

const sleep = (seconds) => new Promise((resolve) => setTimeout(resolve, 1000 * seconds));

// The page's settings and map, asked for again (with a message) until the server answers.
async function loadSettings() {
  for (let attempt = 0; ; attempt++) {
    try {
      const [cfg, outlines] = await Promise.all([getJSON("v1/config"), getJSON("static/world.json")]);
      $("model").textContent = cfg.model;
      $("key-row").hidden = !cfg.auth;
      $("url-row").hidden = !cfg.allow_url_fetch;
      drawCountries(outlines);
      return cfg;
    } catch (err) {
      const wait = RETRY_SECONDS[Math.min(attempt, RETRY_SECONDS.length - 1)];
      // An HTTP error says what the server answered; anything else is not for the user.
      const why = err instanceof Shown && !(err instanceof Unreachable) ? ` (${err.message})` : "";
      $("error").textContent = `The server could not be reached${why}. Trying again in ${wait} s…`;
      $("error").hidden = false;
      if (document.body.dataset.state !== "busy") document.body.dataset.state = "offline";
      userMessage(err); // a bug, if it is one, goes to the console
      await sleep(wait);
    }
  }
}

function start() {
  const oops = (err) => showError(userMessage(err));
  window.addEventListener("error", (e) => oops(e.error));
  window.addEventListener("unhandledrejection", (e) => oops(e.reason));
  configured = loadSettings().then((cfg) => {
    config = cfg;
    $("error").hidden = true; // the "could not be reached" message, if it was shown
    if (document.body.dataset.state !== "busy") {
      document.body.dataset.state = "ready";
      $("status").textContent = "";
    }
    return cfg;
  });
  wire();
}

start();
