/* Groundwork chat widget loader.
 *   <script src="https://HOST/static/widget/widget.js" data-bot="PUBLIC_KEY" async></script>
 * Adds a launcher button; the chat runs in an iframe served by Groundwork, created on first use.
 * Both live in a shadow root styled with !important inline rules, so the page's CSS cannot reach
 * them and theirs cannot reach the page. Holds only the public widget key. */
(function () {
  "use strict";
  var script = document.currentScript || document.querySelector("script[data-bot][src*='/static/widget/widget.js']");
  var key = script && script.getAttribute("data-bot");
  if (!key || document.querySelector("groundwork-chat[data-bot='" + key.replace(/[^\w-]/g, "") + "']")) return;
  var base = script.src.replace(/\/static\/widget\/widget\.js([?#].*)?$/, "");
  var appOrigin = new URL(script.src).origin;
  var api = base + "/api/widget/" + encodeURIComponent(key);
  var CSS =
    ".w{all:initial}" +
    ".l{all:initial;position:fixed;bottom:20px;right:20px;z-index:2147483647;box-sizing:border-box;width:56px;height:56px;" +
    "border-radius:50%;background:var(--c);color:var(--t);display:flex;align-items:center;justify-content:center;" +
    "cursor:pointer;box-shadow:0 4px 14px rgba(0,0,0,.25);transition:transform .15s}" +
    ".l:hover{transform:scale(1.06)}.l:focus-visible{outline:3px solid var(--c);outline-offset:3px}" +
    ".l svg{display:block;width:26px;height:26px;fill:currentColor}.l .x,.o .l .b{display:none}.o .l .x{display:block}" +
    ".f{all:initial;display:block;position:fixed;bottom:88px;right:20px;z-index:2147483647;box-sizing:border-box;" +
    "width:380px;max-width:calc(100% - 40px);height:min(640px,calc(100% - 108px));border:0;border-radius:16px;" +
    "background:#fff;box-shadow:0 12px 40px rgba(0,0,0,.25);color-scheme:light;visibility:hidden;opacity:0;" +
    "transform:translateY(10px);transition:opacity .15s,transform .15s,visibility 0s .15s}" +
    ".o .f{visibility:visible;opacity:1;transform:none;transition:opacity .15s,transform .15s}" +
    ".left .l,.left .f{right:auto;left:20px}" +
    "@media (max-width:480px){.f{inset:0;width:100%;max-width:none;height:100%;border-radius:0}.o .l{display:none}}" +
    "@media (prefers-reduced-motion:reduce){.l,.f{transition:none}}";
  var ICONS = {
    b: "M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-5 4v-4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2z",
    x: "M5.3 6.7l1.4-1.4L12 10.6l5.3-5.3 1.4 1.4-5.3 5.3 5.3 5.3-1.4 1.4-5.3-5.3-5.3 5.3-1.4-1.4 5.3-5.3z",
  };

  function mount(config) {
    var color = /^#[0-9a-f]{6}$/i.test(config.theme_color || "") ? config.theme_color : "#2457c5";
    var n = parseInt(color.slice(1), 16);
    var light = 0.299 * (n >> 16) + 0.587 * ((n >> 8) & 255) + 0.114 * (n & 255) > 170;
    var title = config.title || "Chat";

    var host = document.createElement("groundwork-chat");
    host.setAttribute("data-bot", key);
    // Inline !important beats any page rule, including `* { all: unset }` and transforms that
    // would turn our fixed boxes into ones positioned inside the page.
    host.style.cssText = "all:initial!important;display:contents!important";
    var root = host.attachShadow({ mode: "open" });
    if (root.adoptedStyleSheets && window.CSSStyleSheet && CSSStyleSheet.prototype.replaceSync) {
      var sheet = new CSSStyleSheet(); // not subject to the page's CSP style-src, unlike <style>
      sheet.replaceSync(CSS);
      root.adoptedStyleSheets = [sheet];
    } else {
      root.appendChild(document.createElement("style")).textContent = CSS;
    }
    var wrap = root.appendChild(document.createElement("div"));
    wrap.className = "w " + (config.position === "left" ? "left" : "right");
    wrap.style.setProperty("--c", color);
    wrap.style.setProperty("--t", light ? "#111" : "#fff");
    var button = wrap.appendChild(document.createElement("button"));
    button.className = "l";
    button.type = "button";
    Object.keys(ICONS).forEach(function (name) {
      var svg = button.appendChild(document.createElementNS("http://www.w3.org/2000/svg", "svg"));
      svg.setAttribute("class", name);
      svg.setAttribute("viewBox", "0 0 24 24");
      svg.setAttribute("aria-hidden", "true");
      svg.appendChild(document.createElementNS("http://www.w3.org/2000/svg", "path")).setAttribute("d", ICONS[name]);
    });
    var frame = null;
    var ready = false;
    var opened = false;
    var t0 = 0;

    function label() {
      button.setAttribute("aria-expanded", String(opened));
      button.setAttribute("aria-label", (opened ? "Close chat: " : "Open chat: ") + title);
    }
    function build() {
      if (frame) return;
      frame = document.createElement("iframe");
      frame.className = "f";
      frame.title = "Chat: " + title;
      frame.setAttribute("sandbox", "allow-scripts allow-same-origin allow-forms allow-popups allow-popups-to-escape-sandbox");
      frame.src = base + "/widget/" + encodeURIComponent(key) + "/?origin=" + encodeURIComponent(location.origin);
      wrap.insertBefore(frame, button);
    }
    function shown() {
      frame.focus();
      frame.contentWindow.postMessage({ gw: "open" }, appOrigin);
      if (t0) {
        document.dispatchEvent(new CustomEvent("groundwork:open", { detail: { bot: key, ms: performance.now() - t0 } }));
        t0 = 0;
      }
    }
    function open() {
      t0 = performance.now();
      build();
      opened = true;
      wrap.classList.add("o");
      label();
      if (ready) shown();
    }
    function close() {
      opened = false;
      wrap.classList.remove("o");
      label();
      button.focus();
    }
    button.addEventListener("click", function () { (opened ? close : open)(); });
    // Warm up on intent: the iframe loads while the pointer travels to the button.
    button.addEventListener("pointerenter", build);
    button.addEventListener("focus", build);
    window.addEventListener("message", function (e) {
      if (!frame || e.source !== frame.contentWindow || e.origin !== appOrigin || !e.data) return;
      if (e.data.gw === "ready") {
        ready = true;
        if (opened) shown();
      } else if (e.data.gw === "close" && opened) close();
    });
    label();
    (document.body || document.documentElement).appendChild(host);
  }

  fetch(api + "/config", { credentials: "omit" })
    .then(function (r) {
      return r.json().then(function (data) {
        if (!r.ok) throw data;
        return data;
      });
    })
    .then(mount, function (err) {
      if (err && err.error === "bot_disabled") return;
      // Refused origins get no CORS headers, so the reason is unreadable here; the chat window
      // shows it when opened.
      if (window.console) console.warn("Groundwork chat: " + ((err && err.detail) || "not available on " + location.origin));
      mount({});
    });
})();
