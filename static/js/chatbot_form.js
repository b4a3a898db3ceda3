// Chatbot settings: the live widget preview follows the form as it is edited (text only, never HTML).
(function () {
  "use strict";
  const form = document.getElementById("chatbot-form");
  const preview = document.getElementById("widget-preview");
  if (!form || !preview) return;
  const field = function (name) { return form.elements.namedItem(name); };
  const value = function (name) { const el = field(name); return el && "value" in el ? el.value : ""; };

  function textColorFor(hex) {
    const n = parseInt(hex.slice(1), 16);
    return 0.299 * (n >> 16) + 0.587 * ((n >> 8) & 255) + 0.114 * (n & 255) > 170 ? "#111" : "#fff";
  }

  function render() {
    const title = value("widget_title").trim() || value("name").trim() || "Chat";
    const color = /^#[0-9a-f]{6}$/i.test(value("theme_color")) ? value("theme_color") : "#2457c5";
    const ink = textColorFor(color);
    document.getElementById("wp-title").textContent = title;
    document.getElementById("wp-avatar").textContent = title.charAt(0).toUpperCase();
    ["wp-head", "wp-launcher", "wp-send"].forEach(function (id) {
      const el = document.getElementById(id);
      el.style.background = color;
      el.style.color = ink;
    });
    const welcome = document.getElementById("wp-welcome");
    welcome.textContent = value("welcome_message").trim();
    welcome.hidden = !welcome.textContent;
    const chips = document.getElementById("wp-chips");
    chips.replaceChildren();
    value("suggested_questions_text").split("\n").map(function (q) { return q.trim(); }).filter(Boolean).slice(0, 4)
      .forEach(function (q) {
        const chip = document.createElement("span");
        chip.className = "wp-chip";
        chip.textContent = q;
        chip.style.borderColor = color;
        chips.appendChild(chip);
      });
    const position = form.querySelector("[name=widget_position]");
    document.getElementById("wp-stage").classList.toggle("left", !!position && position.value === "left");
  }

  form.addEventListener("input", render);
  form.addEventListener("change", render);
  render();
})();
