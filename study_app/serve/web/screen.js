// The study's screen component (st.components.v2, in the page's own document): shows the stimulus, confirms to the
// server that it loaded (or offers a retry when it did not), and owns the keyboard.
//
// Keyboard gate: a key answers only the screen it was pressed on. It is ignored when it is a key-repeat, when its
// keydown happened before the screen was visible (buttons on the page, image decoded and painted), when it comes
// sooner than min_rt_ms after that, or when the screen already took a key. Mouse clicks on the screen's buttons obey
// the same timing. The server checks its own clock too (study_app/serve/trials.py).
function installGate() {
  const G = {screen: null, keymap: {}, minRt: 0, visibleAt: null, accepted: false, waitImage: false,
             imageOk: false, passing: false, ignored: [], acceptedLog: [], outageText: ""};
  const buttonFor = (key) => {
    const box = document.querySelector(".st-key-" + CSS.escape(key));
    return box ? box.querySelector("button") : null;
  };
  G.buttonFor = buttonFor;
  const normKey = (e) => e.key.toUpperCase();
  const tooEarly = (stamp) => G.visibleAt === null || stamp < G.visibleAt || stamp - G.visibleAt < G.minRt;
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    const key = normKey(e);
    if (!(key in G.keymap)) return;
    const t = e.target;
    if (t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.isContentEditable)) return;
    e.preventDefault();
    e.stopPropagation();
    const why = e.repeat ? "repeat" : tooEarly(e.timeStamp) ? "early" : G.accepted ? "taken" : null;
    const btn = why ? null : buttonFor(G.keymap[key]);
    if (why || !btn || btn.disabled) {
      G.ignored.push({screen: G.screen, key: key, why: why || "no button"});
      return;
    }
    G.accepted = true;
    G.acceptedLog.push({screen: G.screen, key: key, ms: e.timeStamp - G.visibleAt});
    G.passing = true;
    try { btn.click(); } finally { G.passing = false; }
  }, true);
  document.addEventListener("click", (e) => {
    if (G.passing) return;
    const box = e.target && e.target.closest ? e.target.closest("[class*='st-key-']") : null;
    if (!box) return;
    const mine = Object.values(G.keymap).some((k) => box.classList.contains("st-key-" + k));
    if (mine && tooEarly(e.timeStamp)) {
      e.preventDefault();
      e.stopPropagation();
      G.ignored.push({screen: G.screen, key: "click", why: "early"});
    }
  }, true);
  watchConnection(G);
  return G;
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
      if (G.screen === screen && G.visibleAt === null) G.visibleAt = performance.now();
    }));
  };
  requestAnimationFrame(check);
}

// Streamlit's own dialog on a lost connection speaks to developers ("streamlit run yourscript.py"): hide it and
// show the study's message from the moment the connection drops until it is back.
function watchConnection(G) {
  const update = () => {
    const dialogs = Array.from(document.querySelectorAll("[data-testid='stDialog'], [role='dialog']"));
    const lost = dialogs.filter((d) => /connection error|is streamlit still running|streamlit run/i.test(d.textContent));
    lost.forEach((d) => { d.style.visibility = "hidden"; });
    const status = document.querySelector("[data-testid='stConnectionStatus']");
    const connecting = G.screen !== null && status && /connecting|offline/i.test(status.textContent);
    let box = document.getElementById("cyto-outage");
    if ((lost.length || connecting) && !box) {
      box = document.createElement("div");
      box.id = "cyto-outage";
      box.setAttribute("role", "status");
      box.innerHTML = "<div class='cyto-outage-card'>" + G.outageText + "</div>";
      document.body.appendChild(box);
    } else if (!lost.length && !connecting && box) {
      box.remove();
    }
  };
  new MutationObserver(update).observe(document.body, {childList: true, subtree: true, characterData: true});
  setInterval(update, 500);
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
  img.style.width = im.width + "px";
  img.style.height = im.width + "px";
  if (img.dataset.url === im.url) return;
  img.dataset.url = im.url;
  G.imageOk = false;
  err.hidden = true;
  img.hidden = false;
  img.onload = () => {
    const done = () => requestAnimationFrame(() => requestAnimationFrame(() => {
      if (img.dataset.url !== im.url) return;
      G.imageOk = true;
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

export default function (component) {
  const {data, setTriggerValue, parentElement} = component;
  const G = window.__cytoGate || (window.__cytoGate = installGate());
  G.outageText = data.outage_text || G.outageText;
  if (data.remember) {
    try { localStorage.setItem("cytostudy:" + data.remember.study, data.remember.token); } catch (e) { /* private mode */ }
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
  if (data.screen !== G.screen) {
    G.screen = data.screen;
    G.visibleAt = null;
    G.accepted = false;
    G.minRt = data.min_rt_ms || 0;
    G.waitImage = !!(data.image && data.image.confirm);
    G.keymap = data.keymap || {};
    showImage(G, data, parentElement, setTriggerValue);
    waitVisible(G);
  } else {
    G.keymap = data.keymap || {};
    showImage(G, data, parentElement, setTriggerValue);
  }
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
