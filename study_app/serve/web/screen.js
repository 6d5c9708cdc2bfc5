// The study's screen component (st.components.v2, in the page's own document): shows the stimulus, confirms to the
// server that it loaded (or offers a retry when it did not), owns the keyboard, re-syncs after a lost connection
// and says when an answer was not stored.
//
// Keyboard gate: a key answers only the screen it was pressed on. It is ignored when
//   * it is a key-repeat (a key held down), or another key is still held;
//   * not every key was released since the previous answer (a fresh keydown of the same key counts as released);
//   * its keydown came before the screen was answerable (buttons on the page and enabled, image decoded, two frames
//     painted) or sooner than min_rt_ms after that;
//   * the screen already took a key, or the page has not re-synced with the server since a lost connection.
// Consecutive questions of one image use different keys (study_app/serve/labels.py), so a double press has nothing
// to answer on the next question. Clicks and taps on the screen's buttons obey the same timing (from their
// pointerdown); the second click of a double click never counts. The server checks its own clock too
// (study_app/serve/trials.py).
//
// Not stored, never dropped silently: an accepted answer that comes back as the same question (a new presentation
// of it, or after a lost connection) is shown as not stored; the server's own refusals come as `notice`.
function installGate() {
  const G = {screen: null, keymap: {}, minRt: 0, visibleAt: null, decodedAt: null, accepted: false,
             waitImage: false, imageOk: false, passing: false, ignored: [], acceptedLog: [], outageText: "",
             down: new Set(), released: true, pointerAt: null, synced: false, connected: true, lastRun: null,
             pending: null, notice: null, trigger: null, resyncs: 0,
             events: []};   // {what: "decoded" | "answerable", screen, at}: for tests and benchmarks
  const buttonFor = (key) => {
    const box = document.querySelector(".st-key-" + CSS.escape(key));
    return box ? box.querySelector("button") : null;
  };
  G.buttonFor = buttonFor;
  const normKey = (e) => e.key.toUpperCase();
  const tooEarly = (stamp) => G.visibleAt === null || stamp < G.visibleAt || stamp - G.visibleAt < G.minRt;
  const refuse = (key, why) => { G.ignored.push({screen: G.screen, key: key, why: why}); };
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const key = normKey(e);
    if (!e.repeat) G.down.delete(key);        // a fresh keydown: this key was released (even if we missed it)
    const othersHeld = G.down.size > 0;
    if (!e.repeat) G.down.add(key);
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    if (!(key in G.keymap)) {
      if (Object.keys(G.keymap).length && !e.repeat) refuse(key, "not on this screen");
      return;
    }
    e.preventDefault();
    e.stopPropagation();
    const why = e.repeat ? "repeat" : !G.synced ? "not synced" : tooEarly(e.timeStamp) ? "early"
      : G.accepted ? "taken" : (othersHeld || !G.released) ? "held" : null;
    const btn = why ? null : buttonFor(G.keymap[key]);
    if (why || !btn || btn.disabled) { refuse(key, why || "no button"); return; }
    accept(G, key, e.timeStamp);
    G.passing = true;
    try { btn.click(); } finally { G.passing = false; }
  }, true);
  document.addEventListener("keyup", (e) => {
    G.down.delete(normKey(e));
    if (G.down.size === 0) G.released = true;
  }, true);
  window.addEventListener("blur", () => { G.down.clear(); G.released = true; });
  document.addEventListener("pointerdown", (e) => { G.pointerAt = e.timeStamp; }, true);
  document.addEventListener("click", (e) => {
    if (G.passing) return;
    const box = e.target && e.target.closest ? e.target.closest("[class*='st-key-']") : null;
    if (!box) return;
    const mine = Object.values(G.keymap).some((k) => box.classList.contains("st-key-" + k));
    if (!mine) return;
    const stamp = G.pointerAt !== null && e.timeStamp - G.pointerAt < 5000 ? G.pointerAt : e.timeStamp;
    const why = !G.synced ? "not synced" : e.detail >= 2 ? "double click" : tooEarly(stamp) ? "early"
      : G.accepted ? "taken" : null;
    if (why) {
      e.preventDefault();
      e.stopPropagation();
      refuse("click", why);
      return;
    }
    accept(G, "click", stamp);
  }, true);
  watchConnection(G);
  return G;
}

// "m3.p2.auth.ready" -> question "m3.auth", presentation "p2" (trial screens; other screens are their own question)
const question = (id) => { const p = (id || "").split("."); return p.length === 4 ? p[0] + "." + p[2] : id; };
const presentation = (id) => { const p = (id || "").split("."); return p.length === 4 ? p[1] : ""; };

function accept(G, key, stamp) {
  G.accepted = true;
  G.released = G.down.size === 0 && key === "click";
  G.acceptedLog.push({screen: G.screen, key: key, ms: stamp - G.visibleAt, at: stamp});
  G.pending = {q: question(G.screen), pres: presentation(G.screen), lost: !G.connected};
  setNotice(G, null);
}

function waitVisible(G) {
  const screen = G.screen;
  const check = () => {
    if (G.screen !== screen) return;
    const ready = Object.values(G.keymap).every((k) => { const b = G.buttonFor(k); return b && !b.disabled; })
      && (!G.waitImage || G.imageOk);
    if (!ready) { requestAnimationFrame(check); return; }
    // two frames: the first paints the screen, the second starts after it is on the display
    requestAnimationFrame(() => requestAnimationFrame(() => {
      if (G.screen === screen && G.visibleAt === null) {
        G.visibleAt = performance.now();
        G.events.push({what: "answerable", screen: screen, at: G.visibleAt});
      }
    }));
  };
  requestAnimationFrame(check);
}

// Streamlit's own dialog on a lost connection speaks to developers ("streamlit run yourscript.py"): hide it and
// show the study's message from the moment the connection drops until it is back. While it is down, and after it
// is back until a page run reaches this page again (asked for here if none comes), no key and no click counts.
function watchConnection(G) {
  const update = () => {
    const dialogs = Array.from(document.querySelectorAll("[data-testid='stDialog'], [role='dialog']"));
    const lost = dialogs.filter((d) => /connection error|is streamlit still running|streamlit run/i.test(d.textContent));
    lost.forEach((d) => { d.style.visibility = "hidden"; });
    const status = document.querySelector("[data-testid='stConnectionStatus']");
    const connecting = G.screen !== null && status && /connecting|offline/i.test(status.textContent);
    const down = !!(lost.length || connecting);
    if (down && G.connected) {
      G.connected = false;
      G.synced = false;
      if (G.pending) G.pending.lost = true;
    } else if (!down && !G.connected) {
      G.connected = true;
      G.reconnectedAt = performance.now();
    }
    let box = document.getElementById("cyto-outage");
    if (down && !box) {
      box = document.createElement("div");
      box.id = "cyto-outage";
      box.setAttribute("role", "status");
      box.innerHTML = "<div class='cyto-outage-card'>" + G.outageText + "</div>";
      document.body.appendChild(box);
    } else if (!down && box) {
      box.remove();
    }
  };
  new MutationObserver(update).observe(document.body, {childList: true, subtree: true, characterData: true});
  setInterval(() => {
    update();
    // back online but no page run yet: ask for one (a restarted server does not know this page's widgets)
    if (G.connected && !G.synced && G.trigger && performance.now() - (G.reconnectedAt || 0) > 700) {
      G.reconnectedAt = performance.now();
      G.resyncs += 1;
      G.trigger("resync", {n: G.resyncs});
    }
  }, 250);
}

const escapeHtml = (s) => s.replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c]));
const NOT_STORED = "**Your last answer was not stored** (the connection was interrupted). Please answer again.";

function setNotice(G, text, parent) {
  G.notice = text;
  const host = parent || G.parent;
  if (!host) return;
  let box = host.querySelector(".cyto-notice");
  if (!text) { if (box) box.remove(); return; }
  if (!box) {
    box = document.createElement("div");
    box.className = "cyto-notice";
    box.setAttribute("role", "alert");
    host.insertBefore(box, host.firstChild);
  }
  box.innerHTML = escapeHtml(text).replace(/\*\*(.+?)\*\*/g, "<b>$1</b>");
  box.dataset.question = question(G.screen);
}

// the answer pressed last: stored (the question moved on), refused by the server (its notice), or lost
function settle(G, data, parent) {
  if (data.notice) { G.pending = null; setNotice(G, data.notice, parent); return; }
  const box = parent.querySelector(".cyto-notice");
  if (box && box.dataset.question !== question(data.screen)) setNotice(G, null, parent);
  if (!G.pending) return;
  if (question(data.screen) !== G.pending.q) { G.pending = null; return; }
  if (presentation(data.screen) !== G.pending.pres || G.pending.lost) {
    G.pending = null;
    setNotice(G, NOT_STORED, parent);
  }
}

function scrollToTop() {
  for (const el of [document.scrollingElement, document.querySelector("[data-testid='stMain']"),
                    document.querySelector("[data-testid='stAppViewContainer']")]) {
    if (el && el.scrollTop) el.scrollTop = 0;
  }
  window.scrollTo(0, 0);
}

function showImage(G, data, parent, setTriggerValue) {
  let wrap = parent.querySelector(".cyto-stim-wrap");
  if (!data.image) { if (wrap) wrap.remove(); G.imageOk = true; return; }
  if (!wrap) {
    wrap = document.createElement("div");
    wrap.className = "cyto-stim-wrap";
    wrap.innerHTML = "<img class='cyto-stim' alt=''><div class='cyto-stim-error' hidden>" +
      "<p>The image did not load.</p><button type='button' class='cyto-retry'>Load it again</button></div>";
    parent.appendChild(wrap);
  }
  const img = wrap.querySelector("img");
  const err = wrap.querySelector(".cyto-stim-error");
  const im = data.image;
  img.style.setProperty("--cyto-w", im.width + "px");
  if (img.dataset.url === im.url) return;
  img.dataset.url = im.url;
  G.imageOk = false;
  err.hidden = true;
  img.hidden = false;
  img.onload = () => {
    const done = () => requestAnimationFrame(() => requestAnimationFrame(() => {
      if (img.dataset.url !== im.url) return;
      G.imageOk = true;
      G.decodedAt = performance.now();
      G.events.push({what: "decoded", screen: G.screen, at: G.decodedAt});
      if (im.confirm) setTriggerValue("loaded", {presentation: im.presentation, url: im.url});
    }));
    (img.decode ? img.decode() : Promise.resolve()).then(done, done);
  };
  img.onerror = () => {
    if (img.dataset.url !== im.url) return;
    img.hidden = true;
    err.hidden = false;
    err.querySelector("button").onclick = () => setTriggerValue("retry", {presentation: im.presentation});
  };
  img.src = im.url;
}

function remember(data, setTriggerValue, G) {
  if (data.remember) {
    try { localStorage.setItem("cytostudy:" + data.remember.study, data.remember.token); } catch (e) { /* private */ }
  }
  if (data.recall && G.recalled !== data.screen) {
    G.recalled = data.screen;
    let token = "";
    try { token = localStorage.getItem("cytostudy:" + data.recall) || ""; } catch (e) { /* private mode */ }
    setTriggerValue("recalled", {token: token});
  }
  if (data.forget) {
    try { localStorage.removeItem("cytostudy:" + data.forget); } catch (e) { /* private mode */ }
  }
}

export default function (component) {
  const {data, setTriggerValue, parentElement} = component;
  const G = window.__cytoGate || (window.__cytoGate = installGate());
  G.outageText = data.outage_text || G.outageText;
  G.trigger = setTriggerValue;
  G.parent = parentElement;
  if (data.run !== G.lastRun) {               // a page run reached this page: it shows the server's state
    G.lastRun = data.run;
    G.synced = true;
    G.connected = true;
  }
  remember(data, setTriggerValue, G);
  const newScreen = data.screen !== G.screen;
  if (newScreen) {
    G.screen = data.screen;
    G.visibleAt = null;
    G.decodedAt = null;
    G.accepted = false;
    G.minRt = data.min_rt_ms || 0;
    G.waitImage = !!(data.image && data.image.confirm);
    G.keymap = data.keymap || {};
    // nothing of the last screen carries over: no focus or highlight on a button, the page at its top
    const act = document.activeElement;
    if (act && act.tagName === "BUTTON") act.blur();
    if (question(data.screen) !== question(G.shownQuestion || "")) scrollToTop();
    G.shownQuestion = data.screen;
    showImage(G, data, parentElement, setTriggerValue);
    waitVisible(G);
  } else {
    G.keymap = data.keymap || {};
    showImage(G, data, parentElement, setTriggerValue);
  }
  settle(G, data, parentElement);
  if (data.focus) {
    const until = performance.now() + 3000, screen = data.screen;
    const tryFocus = () => {   // the element may arrive after this component in the same page run
      const el = document.querySelector(data.focus);
      if (el && !el.disabled) { if (document.activeElement !== el) el.focus(); return; }
      if (G.screen === screen && performance.now() < until) requestAnimationFrame(tryFocus);
    };
    tryFocus();
  }
}
