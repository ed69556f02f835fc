"use strict";
// Changes go to the admin API with fetch, same origin, as JSON with the
// operator token in a header: the API refuses anything else. Campaign ids
// are read from the cards' data-campaign attributes, never written into
// this script, so the script is the same bytes on every page and the CSP
// can pin its hash.
(function () {
  var KEY = "nudge.operator_token";
  var authRequired = document.body.getAttribute("data-auth-required") === "true";

  // sessionStorage: the token lives as long as the tab and is never sent
  // anywhere by the browser on its own (unlike a cookie).
  function token() {
    try {
      return sessionStorage.getItem(KEY) || "";
    } catch (e) {
      return "";
    }
  }

  function showTokenState() {
    var state = document.getElementById("token-state");
    if (!state) return;
    var set = token() !== "";
    state.textContent = set ? "Token set for this tab" : "No token set";
    state.className = set ? "token-state set" : "token-state";
  }

  function say(el, message) {
    el.textContent = message;
  }

  // Euros as typed to integer cents without floating point: at most 13
  // digits of euros and two of cents keep the result exact in a double.
  function cents(text) {
    var m = /^(\d{1,13})(?:\.(\d{1,2}))?$/.exec(text.trim());
    if (!m) return null;
    var frac = ((m[2] || "") + "00").slice(0, 2);
    return parseInt(m[1], 10) * 100 + parseInt(frac, 10);
  }

  async function send(card, body, buttons) {
    var alert = card.querySelector("[role=alert]");
    var headers = { "Content-Type": "application/json" };
    if (authRequired) {
      var t = token();
      if (t === "") {
        say(alert, "Enter the operator token at the top of the page first.");
        return;
      }
      headers["Authorization"] = "Bearer " + t;
    }
    say(alert, "");
    buttons.forEach(function (b) { b.disabled = true; });
    var res;
    try {
      res = await fetch(
        "/api/v1/campaigns/" + encodeURIComponent(card.getAttribute("data-campaign")),
        {
          method: "PATCH",
          headers: headers,
          body: JSON.stringify(body),
          credentials: "omit",
          cache: "no-store"
        }
      );
    } catch (e) {
      buttons.forEach(function (b) { b.disabled = false; });
      say(alert, "The admin server did not answer.");
      return;
    }
    if (res.ok) {
      location.reload();
      return;
    }
    var message = "The change was refused (HTTP " + res.status + ").";
    try {
      var j = await res.json();
      if (j && typeof j.error === "string" && j.error !== "") message = j.error;
    } catch (e) {
      // Not JSON: keep the status line.
    }
    buttons.forEach(function (b) { b.disabled = false; });
    say(alert, message);
  }

  function reasonOf(card, group) {
    var input = group.querySelector("input[name=reason]");
    var reason = input.value.trim();
    if (reason === "") {
      say(card.querySelector("[role=alert]"), "Reason: say why, it goes into the audit trail.");
      input.focus();
      return null;
    }
    return reason;
  }

  function pause(card) {
    var group = card.querySelector("[data-action=pause]");
    var button = group.querySelector("button[name=toggle]");
    var reason = reasonOf(card, group);
    if (reason === null) return;
    var paused = button.getAttribute("data-paused") === "true";
    send(card, { paused: !paused, reason: reason }, [button]);
  }

  function setCap(card) {
    var group = card.querySelector("[data-action=cap]");
    var input = group.querySelector("input[name=daily_cap_eur]");
    var value = cents(input.value);
    if (value === null) {
      say(
        card.querySelector("[role=alert]"),
        "Daily cap (EUR): enter an amount in euros with at most two decimals, e.g. 12.34."
      );
      input.focus();
      return;
    }
    var reason = reasonOf(card, group);
    if (reason === null) return;
    send(card, { daily_cap_cents: value, reason: reason }, [group.querySelector("button[name=set_cap]")]);
  }

  document.querySelectorAll("[data-campaign]").forEach(function (card) {
    var p = card.querySelector("[data-action=pause]");
    var c = card.querySelector("[data-action=cap]");
    p.querySelector("button[name=toggle]").addEventListener("click", function () { pause(card); });
    c.querySelector("button[name=set_cap]").addEventListener("click", function () { setCap(card); });
    // Enter in a field submits its group, as in a form.
    p.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && e.target.tagName === "INPUT") pause(card);
    });
    c.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && e.target.tagName === "INPUT") setCap(card);
    });
  });

  var use = document.getElementById("use-token");
  if (use) {
    var field = document.getElementById("token");
    var apply = function () {
      var t = field.value.trim();
      if (t === "") return;
      try {
        sessionStorage.setItem(KEY, t);
      } catch (e) {
        // Storage refused (private mode limits): changes will ask again.
      }
      field.value = "";
      showTokenState();
    };
    use.addEventListener("click", apply);
    field.addEventListener("keydown", function (e) {
      if (e.key === "Enter") apply();
    });
    document.getElementById("forget-token").addEventListener("click", function () {
      try {
        sessionStorage.removeItem(KEY);
      } catch (e) {
        // Nothing stored.
      }
      showTokenState();
    });
    showTokenState();
  }
})();
