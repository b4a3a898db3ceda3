// The cited source: bring the highlighted quote into view (the <mark> of a text source).
(function () {
  "use strict";
  const mark = document.getElementById("quote");
  if (mark) {
    mark.scrollIntoView({ block: "center" });
    mark.setAttribute("tabindex", "-1");
    mark.focus({ preventScroll: true });
  }
})();
