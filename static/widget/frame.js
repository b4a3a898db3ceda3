// The chat window inside the widget iframe (served by the app, so its API calls are same-origin).
// Answers quote documents and come from a model: both are untrusted. Nothing they contain is ever
// parsed as HTML — text goes in with textContent, the few formats allowed (paragraphs, lists,
// bold, italics, http(s) links) are built as DOM nodes.
(function () {
  "use strict";

  var cfg = JSON.parse(document.getElementById("gw-config").textContent);
  var parentOrigin = cfg.parent_origin || "*";
  var framed = window.parent !== window;

  function tell(type) {
    if (framed) window.parent.postMessage({ gw: type }, parentOrigin);
  }

  var closeButton = document.getElementById("gw-close");
  if (closeButton) {
    closeButton.hidden = !framed;
    closeButton.addEventListener("click", function () { tell("close"); });
  }
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && !e.defaultPrevented) tell("close");
  });
  if (cfg.refusal) {
    tell("ready");
    return;
  }

  // --- theme ---------------------------------------------------------------------------------
  function readableOn(hex) {
    var n = parseInt(hex.slice(1), 16);
    var lin = [n >> 16, (n >> 8) & 255, n & 255].map(function (c) {
      c /= 255;
      return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4);
    });
    var luminance = 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2];
    return luminance > 0.45 ? "#111827" : "#ffffff";
  }
  document.documentElement.style.setProperty("--gw-accent", cfg.theme_color);
  document.documentElement.style.setProperty("--gw-on-accent", readableOn(cfg.theme_color));

  // --- storage: per bot, in this frame's (per top-level site) localStorage -------------------
  var memory = {};
  function load(key) {
    try {
      return JSON.parse(window.localStorage.getItem(key) || "null");
    } catch (e) {
      return memory[key] || null;
    }
  }
  function save(key, value) {
    memory[key] = value;
    try {
      if (value == null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, JSON.stringify(value));
    } catch (e) { /* storage blocked: this page view only */ }
  }
  var storeKey = "groundwork:" + cfg.key;
  var state = load(storeKey) || {};
  var visitorId = load("groundwork:visitor");
  if (typeof visitorId !== "string") {
    var bytes = new Uint8Array(16);
    window.crypto.getRandomValues(bytes);
    visitorId = Array.prototype.map.call(bytes, function (b) { return ("0" + b.toString(16)).slice(-2); }).join("");
    save("groundwork:visitor", visitorId);
  }

  // --- API -----------------------------------------------------------------------------------
  function ApiError(detail, code, status, retriable) {
    this.detail = detail;
    this.code = code;
    this.status = status;
    this.retriable = retriable;
  }
  var OFFLINE = "Could not reach the assistant. Check your connection and try again.";

  function request(path, method, body) {
    var init = {
      method: method || "GET",
      headers: { "X-Groundwork-Host": cfg.parent_origin, Accept: "application/json, text/event-stream" },
      credentials: "omit",
      cache: "no-store",
    };
    if (body) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    return fetch(cfg.api + path, init).catch(function () {
      throw new ApiError(OFFLINE, "network", 0, true);
    });
  }

  function errorFrom(response) {
    return response.json().catch(function () { return {}; }).then(function (data) {
      var status = response.status;
      var detail = data.detail || (status >= 500 ? "The assistant had a problem. Please try again." : "The request was refused.");
      return new ApiError(detail, data.error || "http_" + status, status, status >= 500 || status === 429);
    });
  }

  function json(path, method, body) {
    return request(path, method, body).then(function (response) {
      if (!response.ok) return errorFrom(response).then(function (err) { throw err; });
      return response.json();
    });
  }

  // --- DOM helpers ---------------------------------------------------------------------------
  var log = document.getElementById("gw-log");
  var form = document.getElementById("gw-form");
  var input = document.getElementById("gw-input");
  var sendButton = document.getElementById("gw-send");

  function el(tag, className, text) {
    var node = document.createElement(tag);
    if (className) node.className = className;
    if (text != null) node.textContent = text;
    return node;
  }
  var SVG = "http://www.w3.org/2000/svg";
  function icon(d) {
    var svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", "0 0 24 24");
    svg.setAttribute("width", "16");
    svg.setAttribute("height", "16");
    svg.setAttribute("aria-hidden", "true");
    var path = document.createElementNS(SVG, "path");
    path.setAttribute("d", d);
    svg.appendChild(path);
    return svg;
  }
  var THUMB_UP = "M7 10v11H4a1 1 0 0 1-1-1v-9a1 1 0 0 1 1-1h3zm0 0 4-8a3 3 0 0 1 3 3v4h5.5a2 2 0 0 1 2 2.3l-1.3 8A2 2 0 0 1 18.2 21H7";
  var THUMB_DOWN = "M17 14V3h3a1 1 0 0 1 1 1v9a1 1 0 0 1-1 1h-3zm0 0-4 8a3 3 0 0 1-3-3v-4H4.5a2 2 0 0 1-2-2.3l1.3-8A2 2 0 0 1 5.8 3H17";

  var stickToBottom = true;
  log.addEventListener("scroll", function () {
    stickToBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
  });
  function scrollDown(force) {
    if (force || stickToBottom) log.scrollTop = log.scrollHeight;
  }

  // --- safe Markdown subset ------------------------------------------------------------------
  var INLINE = "\\*\\*([^*\\n]+?)\\*\\*" + // **bold**
    "|\\*([^*\\s](?:[^*\\n]*?[^*\\s])?)\\*" + // *italics*
    "|\\[([^\\]\\n]+)\\]\\(([^)\\s]+)\\)" + // [label](url)
    "|\\s?\\[(\\d{1,2})\\]" + // [1] citation marker (and the space before it)
    "|(https?:\\/\\/[^\\s<>()\\[\\]]*[^\\s<>()\\[\\].,;:!?'\"])"; // bare URL

  function safeUrl(url) {
    try {
      var parsed = new URL(url);
      return parsed.protocol === "https:" || parsed.protocol === "http:" ? parsed.href : null;
    } catch (e) {
      return null;
    }
  }

  function link(parent, label, url) {
    var href = safeUrl(url);
    if (!href) {
      parent.appendChild(document.createTextNode(label));
      return;
    }
    var a = el("a", null, label);
    a.href = href;
    a.target = "_blank";
    a.rel = "noopener noreferrer nofollow";
    parent.appendChild(a);
  }

  function inline(parent, text) {
    var re = new RegExp(INLINE, "g");
    var last = 0;
    var m;
    while ((m = re.exec(text))) {
      if (m.index > last) parent.appendChild(document.createTextNode(text.slice(last, m.index)));
      if (m[1]) inline(parent.appendChild(el("strong")), m[1]);
      else if (m[2]) inline(parent.appendChild(el("em")), m[2]);
      else if (m[3]) link(parent, m[3], m[4]);
      else if (m[5]) {
        var ref = el("sup", "gw-ref", m[5]);
        ref.setAttribute("aria-label", "source " + m[5]);
        parent.appendChild(ref);
      } else if (m[6]) link(parent, m[6], m[6]);
      last = re.lastIndex;
    }
    if (last < text.length) parent.appendChild(document.createTextNode(text.slice(last)));
  }

  function renderMarkdown(container, text) {
    container.textContent = "";
    var para = null;
    var list = null;
    String(text || "").replace(/\r\n?/g, "\n").split("\n").forEach(function (line) {
      if (!line.trim()) {
        para = list = null;
        return;
      }
      var bullet = /^\s*[-*+•]\s+(.*)$/.exec(line);
      var numbered = /^\s*(\d{1,3})[.)]\s+(.*)$/.exec(line);
      if (bullet || numbered) {
        var tag = bullet ? "UL" : "OL";
        if (!list || list.tagName !== tag) {
          list = container.appendChild(el(tag.toLowerCase()));
          if (numbered && numbered[1] !== "1") list.start = parseInt(numbered[1], 10);
        }
        inline(list.appendChild(el("li")), bullet ? bullet[1] : numbered[2]);
        para = null;
        return;
      }
      list = null;
      var heading = /^\s{0,3}#{1,6}\s+(.*)$/.exec(line);
      if (heading) {
        para = null;
        inline(container.appendChild(el("p")).appendChild(el("strong")), heading[1]);
        return;
      }
      if (para) para.appendChild(el("br"));
      else para = container.appendChild(el("p"));
      inline(para, line);
    });
  }

  // --- messages ------------------------------------------------------------------------------
  function addUser(text) {
    var bubble = el("div", "gw-msg user", text);
    log.appendChild(bubble);
    scrollDown(true);
    return bubble;
  }

  function addBot(className) {
    var bubble = el("div", "gw-msg bot" + (className ? " " + className : ""));
    log.appendChild(bubble);
    scrollDown(true);
    return bubble;
  }

  function typing() {
    var dots = el("span", "gw-typing");
    dots.setAttribute("role", "status");
    dots.setAttribute("aria-label", "The assistant is typing");
    for (var i = 0; i < 3; i++) dots.appendChild(el("span"));
    return dots;
  }

  function pageLabel(c) {
    if (!c.page) return "";
    return c.page_end && c.page_end !== c.page ? "pp. " + c.page + "–" + c.page_end : "p. " + c.page;
  }

  var openChip = null;
  function closeChip() {
    if (!openChip) return;
    openChip.classList.remove("open");
    openChip.querySelector("button").setAttribute("aria-expanded", "false");
    openChip = null;
  }
  document.addEventListener("click", function (e) {
    if (openChip && !openChip.contains(e.target)) closeChip();
  });
  document.addEventListener("keydown", function (e) {
    if (e.key === "Escape" && openChip) {
      closeChip();
      e.preventDefault();
    }
  });

  function sources(citations) {
    var list = el("ul", "gw-sources");
    list.setAttribute("aria-label", "Sources");
    citations.forEach(function (c) {
      var item = el("li", "gw-source");
      var chip = el("button", "gw-chip");
      chip.type = "button";
      chip.setAttribute("aria-expanded", "false");
      chip.appendChild(el("span", "gw-chip-n", String(c.number)));
      chip.appendChild(el("span", "gw-chip-title", c.title));
      var page = pageLabel(c);
      if (page) chip.appendChild(el("span", "gw-chip-page", page));
      var quoteId = "gw-q-" + Math.random().toString(36).slice(2);
      chip.setAttribute("aria-controls", quoteId);
      chip.setAttribute("aria-label", "Source " + c.number + ": " + c.title + (page ? ", " + page : "") + ". Show quote");
      var quote = el("div", "gw-quote");
      quote.id = quoteId;
      quote.setAttribute("role", "note");
      quote.appendChild(el("span", "gw-quote-where", c.title + (page ? " · " + page : "") + (c.section ? " · " + c.section : "")));
      quote.appendChild(el("q", null, c.quote));
      // `source`: our signed link to the cited place (a path of the app); `url`: the web page cited.
      var source = c.source && c.source.charAt(0) === "/" ? new URL(c.source, window.location.origin).href : null;
      var url = source || (c.url ? safeUrl(c.url) : null);
      if (url) {
        var a = el("a", "gw-quote-link", source ? "Open source at the quote" : "Open source");
        a.href = url;
        a.target = "_blank";
        a.rel = "noopener noreferrer nofollow";
        quote.appendChild(a);
      }
      chip.addEventListener("click", function () {
        var wasOpen = openChip === item;
        closeChip();
        if (!wasOpen) {
          item.classList.add("open");
          chip.setAttribute("aria-expanded", "true");
          openChip = item;
        }
      });
      item.appendChild(chip);
      item.appendChild(quote);
      list.appendChild(item);
    });
    return list;
  }

  function feedback(message) {
    var row = el("div", "gw-feedback");
    var status = el("span", "gw-feedback-status");
    status.setAttribute("role", "status");
    var buttons = {};
    function press(value) {
      ["up", "down"].forEach(function (v) { buttons[v].setAttribute("aria-pressed", String(v === value)); });
    }
    function send(value, comment) {
      return json("/messages/" + message.id + "/feedback", "POST", {
        value: value, comment: comment || "", visitor_token: state.token,
      });
    }
    function commentForm() {
      if (row.parentNode.querySelector(".gw-comment")) return;
      var box = el("form", "gw-comment");
      var label = el("label", null, "What was wrong? (optional)");
      var area = el("textarea");
      area.rows = 2;
      area.maxLength = 1000;
      area.id = "gw-c-" + message.id;
      label.htmlFor = area.id;
      var actions = el("div", "gw-actions");
      var submit = el("button", "gw-button", "Send");
      submit.type = "submit";
      var skip = el("button", "gw-link", "Skip");
      skip.type = "button";
      skip.addEventListener("click", function () { box.remove(); });
      actions.appendChild(submit);
      actions.appendChild(skip);
      box.appendChild(label);
      box.appendChild(area);
      box.appendChild(actions);
      box.addEventListener("submit", function (e) {
        e.preventDefault();
        submit.disabled = true;
        send("down", area.value).then(function () {
          box.remove();
          status.textContent = "Thanks for telling us.";
        }, function (err) {
          submit.disabled = false;
          status.textContent = err.detail;
        });
      });
      row.parentNode.insertBefore(box, row.nextSibling);
      area.focus();
    }
    [["up", "Helpful", THUMB_UP], ["down", "Not helpful", THUMB_DOWN]].forEach(function (spec) {
      var b = el("button", "gw-fb");
      b.type = "button";
      b.setAttribute("aria-label", spec[1]);
      b.title = spec[1];
      b.setAttribute("aria-pressed", String(message.feedback === spec[0]));
      b.appendChild(icon(spec[2]));
      b.addEventListener("click", function () {
        var previous = message.feedback;
        message.feedback = spec[0];
        press(spec[0]);
        send(spec[0]).then(function () {
          status.textContent = spec[0] === "up" ? "Thanks!" : "";
          if (spec[0] === "down") commentForm();
        }, function (err) {
          message.feedback = previous;
          press(previous);
          status.textContent = err.detail;
        });
      });
      buttons[spec[0]] = b;
      row.appendChild(b);
    });
    row.appendChild(status);
    return row;
  }

  function renderAnswer(bubble, message) {
    bubble.textContent = "";
    bubble.removeAttribute("aria-busy");
    bubble.classList.remove("streaming");
    bubble.classList.toggle("refused", !!message.refused);
    var body = el("div", "gw-body");
    renderMarkdown(body, message.content);
    bubble.appendChild(body);
    if (message.citations && message.citations.length) bubble.appendChild(sources(message.citations));
    bubble.appendChild(feedback(message));
    scrollDown();
  }

  function showError(err, retry) {
    var bubble = addBot("error");
    bubble.setAttribute("role", "alert");
    bubble.appendChild(el("span", null, err.detail || OFFLINE));
    if (err.retriable && retry) {
      var again = el("button", "gw-button gw-retry", "Retry");
      again.type = "button";
      again.addEventListener("click", function () {
        bubble.remove();
        retry();
      });
      bubble.appendChild(again);
    }
    scrollDown(true);
  }

  // --- lead capture --------------------------------------------------------------------------
  function field(box, label, control) {
    var wrap = el("label", "gw-field");
    wrap.appendChild(el("span", null, label));
    wrap.appendChild(control);
    box.appendChild(wrap);
    return control;
  }

  function offerLead(question) {
    if (!cfg.lead_capture || state.lead || log.querySelector(".gw-lead")) return;
    var card = addBot("gw-lead");
    var box = el("form");
    box.appendChild(el("p", "gw-lead-intro", "Leave your e-mail and we'll get back to you."));
    var email = field(box, "E-mail", el("input"));
    email.type = "email";
    email.required = true;
    email.autocomplete = "email";
    var name = field(box, "Name (optional)", el("input"));
    name.autocomplete = "name";
    var note = field(box, "Message (optional)", el("textarea"));
    note.rows = 2;
    note.value = question || "";
    var status = el("p", "gw-lead-status");
    status.setAttribute("role", "alert");
    var actions = el("div", "gw-actions");
    var submit = el("button", "gw-button", "Send");
    submit.type = "submit";
    var dismiss = el("button", "gw-link", "No thanks");
    dismiss.type = "button";
    dismiss.addEventListener("click", function () { card.remove(); input.focus(); });
    actions.appendChild(submit);
    actions.appendChild(dismiss);
    box.appendChild(status);
    box.appendChild(actions);
    box.addEventListener("submit", function (e) {
      e.preventDefault();
      submit.disabled = true;
      status.textContent = "";
      json("/lead", "POST", {
        conversation_id: state.id, visitor_token: state.token,
        email: email.value, name: name.value, message: note.value,
      }).then(function () {
        state.lead = true;
        save(storeKey, state);
        card.textContent = "";
        card.appendChild(el("p", null, "Thanks! We'll get back to you at " + email.value.trim() + "."));
      }, function (err) {
        submit.disabled = false;
        status.textContent = err.detail;
      });
    });
    card.appendChild(box);
    scrollDown(true);
  }

  // --- conversation --------------------------------------------------------------------------
  function forget() {
    state = {};
    save(storeKey, null);
  }

  function ensureConversation() {
    if (state.id && state.token) return Promise.resolve();
    return json("/conversations", "POST", { visitor_id: visitorId }).then(function (data) {
      state = { id: data.conversation_id, token: data.visitor_token };
      save(storeKey, state);
    });
  }

  // Server-sent events over fetch (EventSource cannot POST).
  function readEvents(response, onEvent) {
    var reader = response.body.getReader();
    var decoder = new TextDecoder();
    var buffer = "";
    function pump() {
      return reader.read().then(function (chunk) {
        if (chunk.done) return;
        buffer += decoder.decode(chunk.value, { stream: true });
        var cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          var raw = buffer.slice(0, cut);
          buffer = buffer.slice(cut + 2);
          var name = "message";
          var data = [];
          raw.split("\n").forEach(function (line) {
            if (line.indexOf("event: ") === 0) name = line.slice(7);
            else if (line.indexOf("data: ") === 0) data.push(line.slice(6));
          });
          onEvent(name, JSON.parse(data.join("\n") || "{}"));
        }
        return pump();
      });
    }
    return pump().catch(function (err) {
      if (err instanceof ApiError) throw err;
      throw new ApiError("The connection dropped before the answer was complete.", "network", 0, true);
    });
  }

  function streamAnswer(question, bubble, renewed) {
    return request("/chat", "POST", {
      message: question, conversation_id: state.id, visitor_token: state.token,
    }).then(function (response) {
      if (response.status === 404 && !renewed) {
        // The stored conversation is gone (deleted, or another bot's): start a new one.
        forget();
        return ensureConversation().then(function () { return streamAnswer(question, bubble, true); });
      }
      if (!response.ok || !response.body) return errorFrom(response).then(function (err) { throw err; });
      var text = "";
      var final = null;
      var timer = null;
      function paint() {
        timer = null;
        if (!final) {
          renderMarkdown(bubble, text);
          scrollDown();
        }
      }
      return readEvents(response, function (name, data) {
        if (name === "delta") {
          text += data.text;
          if (!timer) timer = setTimeout(paint, 40);
        } else if (name === "final") {
          final = data;
          renderAnswer(bubble, data.message);
          if (data.offer_lead) offerLead(question);
        } else if (name === "error" || name === "busy") {
          // busy: no database connection came free in time; the visitor can simply ask again.
          var retriable = data.retriable === true || data.error === "server_error" || name === "busy";
          throw new ApiError(data.detail, data.error, 200, retriable);
        }
      }).then(function () {
        if (!final) throw new ApiError("The answer was interrupted.", "interrupted", 0, true);
      });
    });
  }

  var busy = false;
  var ready = Promise.resolve();

  function setBusy(value) {
    busy = value;
    sendButton.disabled = value;
    log.setAttribute("aria-busy", String(value));
  }

  function ask(question) {
    if (busy) return;
    setBusy(true);
    var suggestions = log.querySelector(".gw-suggest");
    if (suggestions) suggestions.remove();
    var bubble = addBot("streaming");
    bubble.appendChild(typing());
    ready
      .then(ensureConversation)
      .then(function () { return streamAnswer(question, bubble, false); })
      .catch(function (err) {
        bubble.remove();
        if (!(err instanceof ApiError)) err = new ApiError(OFFLINE, "network", 0, true);
        showError(err, function () { ask(question); });
      })
      .then(function () { setBusy(false); });
  }

  function submit(text) {
    var question = (text || "").trim();
    if (!question || busy) return;
    addUser(question);
    ask(question);
  }

  function welcome() {
    log.textContent = "";
    if (cfg.welcome_message) renderMarkdown(addBot("welcome"), cfg.welcome_message);
    if (cfg.suggested_questions.length) {
      var box = el("div", "gw-suggest");
      box.setAttribute("aria-label", "Suggested questions");
      box.setAttribute("role", "group");
      cfg.suggested_questions.forEach(function (q) {
        var b = el("button", "gw-chip-q", q);
        b.type = "button";
        b.addEventListener("click", function () { submit(q); });
        box.appendChild(b);
      });
      log.appendChild(box);
    }
  }

  function restore(attempt) {
    if (!state.id || !state.token) return Promise.resolve();
    return json("/conversations/" + state.id + "?token=" + encodeURIComponent(state.token)).then(function (data) {
      if (data.messages.length) {
        var suggestions = log.querySelector(".gw-suggest");
        if (suggestions) suggestions.remove();
      }
      state.lead = data.lead_captured;
      data.messages.forEach(function (m) {
        if (m.role === "user") addUser(m.content);
        else renderAnswer(addBot(), m);
      });
      scrollDown(true);
    }, function (err) {
      if (err.status === 404) forget();
      else if (err.retriable && attempt < 3) {
        return new Promise(function (resolve) { setTimeout(resolve, 500 * Math.pow(2, attempt)); })
          .then(function () { return restore(attempt + 1); });
      }
    });
  }

  // --- wiring --------------------------------------------------------------------------------
  form.addEventListener("submit", function (e) {
    e.preventDefault();
    if (busy) return;
    var text = input.value;
    input.value = "";
    grow();
    submit(text);
  });
  function grow() {
    input.style.height = "auto";
    input.style.height = Math.min(input.scrollHeight, 120) + "px";
  }
  input.addEventListener("input", grow);
  input.addEventListener("keydown", function (e) {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) {
      e.preventDefault();
      form.requestSubmit();
    }
  });
  document.getElementById("gw-new").addEventListener("click", function () {
    if (busy) return;
    forget();
    welcome();
    input.focus();
  });
  window.addEventListener("message", function (e) {
    if (e.source !== window.parent || e.origin !== parentOrigin || !e.data) return;
    if (e.data.gw === "open") input.focus();
  });

  welcome();
  ready = restore(0);
  tell("ready");
})();
