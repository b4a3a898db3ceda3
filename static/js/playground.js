// Playground: stream an answer from the chat API (server-sent events over fetch) and show its sources.
(function () {
  "use strict";
  const root = document.getElementById("playground");
  if (!root) return;
  const form = document.getElementById("ask-form");
  const input = document.getElementById("ask-input");
  const transcript = document.getElementById("transcript");
  const retrievalOnly = document.getElementById("retrieval-only");
  const csrf = form.querySelector("input[name=csrfmiddlewaretoken]").value;
  let conversationId = null;

  function bubble(role, text) {
    const div = document.createElement("div");
    div.className = "msg-bubble " + role;
    div.textContent = text;
    transcript.appendChild(div);
    div.scrollIntoView({ block: "end" });
    return div;
  }

  function renderAnswer(el, payload) {
    // Text only (never innerHTML): answers quote documents, which are untrusted.
    el.textContent = payload.answer;
    el.classList.toggle("refused", payload.refused);
    const meta = document.createElement("div");
    meta.className = "answer-meta";
    meta.textContent = (payload.refused ? "No answer found in the documents · " : "") +
      "model " + (payload.model || "none (nothing relevant retrieved)") +
      (payload.grounding && payload.grounding.label ? " · grounding: " + payload.grounding.label : "") +
      (payload.latency && payload.latency.total_ms ? " · " + Math.round(payload.latency.total_ms) + " ms" : "");
    el.appendChild(meta);
    if (payload.citations && payload.citations.length) {
      const list = document.createElement("ol");
      list.className = "sources";
      list.setAttribute("aria-label", "Sources");
      payload.citations.forEach(function (c) {
        const li = document.createElement("li");
        li.value = c.number;
        const link = document.createElement("a");
        // The cited place: the page (a PDF page rendered with the quote boxed) or the text with the quote marked.
        if (c.source_path) {
          link.href = c.source_path;
          link.className = "citation-link";
          link.title = "Open the source with the quote highlighted";
          link.target = "_blank";
          link.rel = "noopener";
        } else {
          link.href = "/documents/" + c.document_id + "/";
        }
        link.textContent = c.document_title + (c.page ? ", p. " + c.page : "") + " (v" + c.version + ")";
        li.appendChild(link);
        if (c.section) {
          const s = document.createElement("span");
          s.className = "muted small";
          s.textContent = " · " + c.section;
          li.appendChild(s);
        }
        const q = document.createElement("blockquote");
        q.textContent = c.quote;
        li.appendChild(q);
        list.appendChild(li);
      });
      el.appendChild(list);
    }
  }

  async function ask(question) {
    bubble("user", question);
    const answer = bubble("assistant streaming", "");
    answer.setAttribute("aria-busy", "true");
    const response = await fetch(root.dataset.chatUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrf, Accept: "text/event-stream, application/json" },
      body: JSON.stringify({ message: question, conversation_id: conversationId, stream: true }),
      credentials: "same-origin",
    });
    if (!response.ok || !response.body) {
      answer.textContent = "Error " + response.status + ": the question could not be sent.";
      answer.classList.remove("streaming");
      answer.classList.add("error");
      return;
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while ((cut = buffer.indexOf("\n\n")) >= 0) {
        const raw = buffer.slice(0, cut);
        buffer = buffer.slice(cut + 2);
        let event = "message";
        const data = [];
        raw.split("\n").forEach(function (line) {
          if (line.startsWith("event: ")) event = line.slice(7);
          else if (line.startsWith("data: ")) data.push(line.slice(6));
        });
        const payload = JSON.parse(data.join("\n") || "{}");
        if (event === "start") conversationId = payload.conversation_id;
        else if (event === "delta") answer.textContent += payload.text;
        else if (event === "final") {
          conversationId = payload.conversation_id;
          answer.classList.remove("streaming");
          answer.removeAttribute("aria-busy");
          renderAnswer(answer, payload);
        } else if (event === "error") {
          answer.classList.remove("streaming");
          answer.textContent = payload.detail;
          answer.classList.add("error");
        }
      }
    }
  }

  // Suggested questions (the bot's, as visitors see them in the widget): one click asks it.
  root.querySelectorAll("button.suggestion[data-question]").forEach(function (button) {
    button.addEventListener("click", function () {
      input.value = button.dataset.question;
      retrievalOnly.checked = false;
      form.requestSubmit();
    });
  });

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    const question = input.value.trim();
    if (!question) return;
    if (retrievalOnly.checked) {
      htmx.trigger(form, "retrieval");
      return;
    }
    input.value = "";
    document.getElementById("retrieval").innerHTML = "";
    ask(question).catch(function (err) { bubble("assistant error", "Network error: " + err.message); });
  });
})();
