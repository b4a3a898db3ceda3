// Drag-and-drop upload of many files at once, with a progress bar per file.
// Each file is posted to the documents API (session auth + CSRF); the document table then shows
// its live status (htmx polling) until it is ready or failed.
(function () {
  "use strict";
  const zone = document.getElementById("upload-form");
  if (!zone) return;
  const input = document.getElementById("upload-files");
  const list = document.getElementById("upload-list");
  const csrf = zone.querySelector("input[name=csrfmiddlewaretoken]").value;
  const apiUrl = zone.dataset.apiUrl;
  const tableUrl = zone.dataset.tableUrl;

  function refreshTable() {
    if (window.htmx) htmx.ajax("GET", tableUrl, { target: "#document-table", swap: "outerHTML" });
  }

  function uploadOne(file) {
    const row = document.createElement("li");
    row.className = "upload-item";
    const name = document.createElement("span");
    name.className = "upload-name";
    name.textContent = file.name;
    const bar = document.createElement("progress");
    bar.max = 100;
    bar.value = 0;
    bar.setAttribute("aria-label", "Upload progress of " + file.name);
    const state = document.createElement("span");
    state.className = "upload-state muted small";
    state.textContent = "uploading…";
    row.append(name, bar, state);
    list.appendChild(row);

    return new Promise(function (resolve) {
      const xhr = new XMLHttpRequest();
      xhr.open("POST", apiUrl);
      xhr.setRequestHeader("X-CSRFToken", csrf);
      xhr.upload.onprogress = function (e) {
        if (e.lengthComputable) bar.value = Math.round((100 * e.loaded) / e.total);
      };
      xhr.onload = function () {
        let body = {};
        try { body = JSON.parse(xhr.responseText); } catch (err) { /* not JSON */ }
        if (xhr.status === 201) {
          bar.value = 100;
          state.textContent = "uploaded — processing";
        } else if (xhr.status === 200 && body.duplicate) {
          state.textContent = "already in this knowledge base";
        } else {
          row.classList.add("failed");
          state.textContent = body.detail || body.error || ("failed (" + xhr.status + ")");
        }
        resolve();
      };
      xhr.onerror = function () {
        row.classList.add("failed");
        state.textContent = "network error — try again";
        resolve();
      };
      const form = new FormData();
      form.append("file", file, file.name);
      xhr.send(form);
    });
  }

  function uploadAll(files) {
    if (!files || !files.length) return;
    Promise.all(Array.from(files).map(uploadOne)).then(refreshTable);
    refreshTable();
  }

  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (e) {
      e.preventDefault();
      zone.classList.add("dragover");
    });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function (e) {
      e.preventDefault();
      zone.classList.remove("dragover");
    });
  });
  zone.addEventListener("drop", function (e) {
    uploadAll(e.dataTransfer && e.dataTransfer.files);
  });
  zone.addEventListener("submit", function (e) {
    e.preventDefault();
    uploadAll(input.files);
    input.value = "";
  });
  input.addEventListener("change", function () {
    uploadAll(input.files);
    input.value = "";
  });
})();
