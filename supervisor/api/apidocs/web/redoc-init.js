// Starts ReDoc on the /redoc page. It lives in a file, not in the HTML, so
// the page runs under a Content-Security-Policy without 'unsafe-inline'
// scripts. The spec URL comes from the container's data-spec-url attribute.
(function () {
  "use strict";
  var el = document.getElementById("redoc-container");
  // ReDoc's default theme names Roboto and Montserrat, which its tutorial
  // pulls from Google Fonts. Nothing is loaded from outside, so name the
  // system's own fonts instead of falling back to a random serif.
  var sans = 'system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif';
  var mono = 'ui-monospace, SFMono-Regular, Menlo, Consolas, "Liberation Mono", monospace';
  Redoc.init(el.getAttribute("data-spec-url"), {
    theme: {
      typography: {
        fontFamily: sans,
        headings: { fontFamily: sans },
        code: { fontFamily: mono }
      }
    }
  }, el);
})();
