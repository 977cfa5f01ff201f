// ami-bridge console login: posts the form to /dashboard/login (same origin); the answer
// sets an HttpOnly session cookie, then the console loads.
"use strict";

(function () {
  var form = document.getElementById("login-form");
  var error = document.getElementById("login-error");
  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    error.hidden = true;
    fetch("/dashboard/login", { method: "POST", body: new URLSearchParams(new FormData(form)),
                                credentials: "same-origin" })
      .then(function (r) {
        if (r.ok) { window.location.replace("/dashboard"); return null; }
        return r.json().then(function (body) {
          error.textContent = (body && (body.detail || body.message)) || ("HTTP " + r.status);
          error.hidden = false;
        });
      })
      .catch(function (err) { error.textContent = String(err); error.hidden = false; });
  });
})();
