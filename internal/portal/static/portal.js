// Purser owner portal: passkey ceremonies (WebAuthn), the live approval
// queue (server-sent events) and small progressive enhancements. Every
// page works without this file except the passkey buttons, which need
// WebAuthn and so need script.
"use strict";
(function () {
  // ---- base64url <-> ArrayBuffer ----
  function b64u(buf) {
    var s = "", b = new Uint8Array(buf);
    for (var i = 0; i < b.length; i++) s += String.fromCharCode(b[i]);
    return btoa(s).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }
  function unb64u(s) {
    s = s.replace(/-/g, "+").replace(/_/g, "/");
    while (s.length % 4) s += "=";
    var bin = atob(s), b = new Uint8Array(bin.length);
    for (var i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i);
    return b.buffer;
  }
  function csrf() {
    var el = document.querySelector('input[name="csrf_token"]');
    return el ? el.value : "";
  }
  async function post(url, body) {
    var res = await fetch(url, {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body || {})
    });
    var data = null;
    try { data = await res.json(); } catch (e) { /* empty body */ }
    if (!res.ok) throw new Error((data && data.message) || "The server refused this (" + res.status + ").");
    return data || {};
  }
  function showError(id, err) {
    var el = document.getElementById(id);
    if (!el) return;
    el.textContent = err && err.name === "NotAllowedError" ? "The passkey prompt was cancelled or timed out. Try again." : String(err && err.message || err);
    el.hidden = false;
  }
  // Options from the server carry binary fields as base64url strings.
  // The server answers {options: {publicKey: …}}.
  function requestOptions(o) {
    o = o.options || o;
    var pk = o.publicKey || o;
    pk.challenge = unb64u(pk.challenge);
    (pk.allowCredentials || []).forEach(function (c) { c.id = unb64u(c.id); });
    return { publicKey: pk };
  }
  function creationOptions(o) {
    o = o.options || o;
    var pk = o.publicKey || o;
    pk.challenge = unb64u(pk.challenge);
    pk.user.id = unb64u(pk.user.id);
    (pk.excludeCredentials || []).forEach(function (c) { c.id = unb64u(c.id); });
    return { publicKey: pk };
  }
  function assertionJSON(c) {
    return { id: c.id, rawId: b64u(c.rawId), type: c.type, response: {
      authenticatorData: b64u(c.response.authenticatorData), clientDataJSON: b64u(c.response.clientDataJSON),
      signature: b64u(c.response.signature), userHandle: c.response.userHandle ? b64u(c.response.userHandle) : null } };
  }
  function attestationJSON(c) {
    return { id: c.id, rawId: b64u(c.rawId), type: c.type, response: {
      attestationObject: b64u(c.response.attestationObject), clientDataJSON: b64u(c.response.clientDataJSON),
      transports: c.response.getTransports ? c.response.getTransports() : [] } };
  }
  function busy(btn, on) { if (btn) { btn.disabled = on; btn.setAttribute("aria-busy", on ? "true" : "false"); } }

  // ---- sign in ----
  var signin = document.getElementById("signin");
  if (signin) signin.addEventListener("click", async function () {
    busy(signin, true);
    try {
      var opts = await post("/auth/login/begin");
      var cred = await navigator.credentials.get(requestOptions(opts));
      await post("/auth/login/finish", { credential: assertionJSON(cred) });
      location.assign(signin.dataset.next || "/");
    } catch (e) { showError("signin-error", e); busy(signin, false); }
  });

  // ---- enrol from an invite ----
  var enrol = document.getElementById("enrol");
  if (enrol) enrol.addEventListener("submit", async function (ev) {
    ev.preventDefault();
    var btn = enrol.querySelector("button");
    busy(btn, true);
    try {
      // The invite token is in the link's fragment, which never reaches
      // a server log.
      var token = decodeURIComponent(location.hash.slice(1));
      if (!token) throw new Error("This link has no invite in it. Open the whole link you were given.");
      var opts = await post("/auth/enrol/begin", { token: token });
      var cred = await navigator.credentials.create(creationOptions(opts));
      await post("/auth/enrol/finish", { token: token, credential: attestationJSON(cred) });
      location.assign("/");
    } catch (e) { showError("enrol-error", e); busy(btn, false); }
  });

  // ---- approve with a passkey: the challenge commits to this spend ----
  var approve = document.getElementById("approve");
  if (approve) approve.addEventListener("click", async function () {
    busy(approve, true);
    var id = encodeURIComponent(approve.dataset.spend);
    try {
      var opts = await post("/auth/approvals/" + id + "/begin");
      if (opts.already_approved) { location.assign("/approvals?done=approved"); return; }
      var cred = await navigator.credentials.get(requestOptions(opts));
      await post("/auth/approvals/" + id + "/finish", { credential: assertionJSON(cred) });
      location.assign("/approvals?done=approved");
    } catch (e) { showError("approve-error", e); busy(approve, false); }
  });

  // ---- sign out: the endpoint answers JSON, so go to sign-in after ----
  var signout = document.querySelector("form.signout");
  if (signout) signout.addEventListener("submit", async function (ev) {
    ev.preventDefault();
    try { await post(signout.action); } catch (e) { /* signed out already */ }
    location.assign("/signin");
  });

  // ---- live approval queue ----
  var queue = document.getElementById("queue");
  if (queue && queue.dataset.live && window.EventSource) {
    var es = new EventSource(queue.dataset.live);
    es.addEventListener("queue", function (e) {
      var t = document.createElement("template");
      t.innerHTML = e.data;
      var next = t.content.querySelector("#queue");
      var cur = document.getElementById("queue");
      if (next && cur) {
        // Keep keyboard focus where it was when the list is replaced.
        var focused = document.activeElement && cur.contains(document.activeElement) ? document.activeElement.getAttribute("href") : null;
        cur.replaceWith(next);
        if (focused) { var f = next.querySelector('a[href="' + focused + '"]'); if (f) f.focus(); }
      }
    });
  }
})();
