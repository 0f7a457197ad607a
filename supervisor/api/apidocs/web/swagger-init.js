// Starts Swagger UI on the /docs page. It lives in a file, not in the HTML,
// so the page runs under a Content-Security-Policy without 'unsafe-inline'
// scripts. The spec URL comes from the container's data-spec-url attribute.
// "Try it out" requests go to the same origin, so fetch's default
// credentials mode already sends the session cookie: no withCredentials.
(function () {
  "use strict";
  var el = document.getElementById("swagger-ui");
  window.ui = SwaggerUIBundle({
    url: el.getAttribute("data-spec-url"),
    domNode: el,
    deepLinking: true,
    // The default sends the spec to validator.swagger.io for a badge:
    // off, the page must not talk to the internet.
    validatorUrl: null,
    // BaseLayout: the standalone preset's top bar (an URL box and a link
    // to swagger.io) is not shipped.
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout"
  });
})();
