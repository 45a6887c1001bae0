// The viewer reads the spec from the server that serves this page; the online validator badge is
// off, so the page asks no other host for anything.
window.ui = SwaggerUIBundle({
  url: "/openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  validatorUrl: null,
});
