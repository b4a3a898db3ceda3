// Behaviour the staff pages declare with data attributes; no inline handlers, so the pages'
// Content-Security-Policy can forbid inline script (config/security.py).
//   <form data-confirm="Delete this?">   asks before submitting
//   <select data-autosubmit>             submits its form when changed
//   <button data-copy="element-id">      copies that element's text
(function () {
  "use strict";
  document.addEventListener("submit", function (event) {
    var form = event.target;
    if (form instanceof HTMLFormElement && form.dataset.confirm !== undefined && !window.confirm(form.dataset.confirm)) {
      event.preventDefault();
    }
  });
  document.addEventListener("change", function (event) {
    var field = event.target;
    if (field instanceof HTMLElement && field.hasAttribute("data-autosubmit") && field.form) {
      field.form.submit();
    }
  });
  document.addEventListener("click", function (event) {
    var button = event.target instanceof Element ? event.target.closest("[data-copy]") : null;
    if (!button) return;
    var source = document.getElementById(button.getAttribute("data-copy"));
    if (source && navigator.clipboard) {
      navigator.clipboard.writeText(source.textContent || "").then(function () {
        button.textContent = "Copied";
      });
    }
  });
})();
