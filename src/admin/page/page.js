"use strict";
// Changes go to the admin API with fetch, same origin, as JSON with the
// operator token in a header: the API refuses anything else. Campaign ids
// are read from the cards' data-campaign attributes, never written into
// this script, so the script is the same bytes on every page and the CSP
// can pin its hash.
(function () {
  var KEY = "nudge.operator_token";
  // A rollback's outcome, kept across the reload that shows its effect.
  var RESULT_KEY = "nudge.models_result";
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

  // One change: `scope` holds the alert that shows a refusal; `done`
  // (optional) reads the answer before the page reloads.
  async function send(scope, method, url, body, buttons, done) {
    var alert = scope.querySelector("[role=alert]");
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
      res = await fetch(url, {
        method: method,
        headers: headers,
        body: JSON.stringify(body),
        credentials: "omit",
        cache: "no-store"
      });
    } catch (e) {
      buttons.forEach(function (b) { b.disabled = false; });
      say(alert, "The admin server did not answer.");
      return;
    }
    if (res.ok) {
      if (done) {
        try {
          await done(await res.json());
        } catch (e) {
          // The change is made: the reload shows it.
        }
      }
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

  function campaignUrl(card) {
    return "/api/v1/campaigns/" + encodeURIComponent(card.getAttribute("data-campaign"));
  }

  function reasonOf(scope, group) {
    var input = group.querySelector("input[name=reason]");
    var reason = input.value.trim();
    if (reason === "") {
      say(scope.querySelector("[role=alert]"), "Reason: say why, it goes into the audit trail.");
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
    send(card, "PATCH", campaignUrl(card), { paused: !paused, reason: reason }, [button]);
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
    send(card, "PATCH", campaignUrl(card), { daily_cap_cents: value, reason: reason }, [
      group.querySelector("button[name=set_cap]")
    ]);
  }

  function rollBack(section) {
    var group = section.querySelector("[data-action=rollback]");
    var button = group.querySelector("button[name=rollback]");
    if (button.disabled) return;
    say(document.getElementById("models-result"), "");
    var reason = reasonOf(section, group);
    if (reason === null) return;
    send(section, "POST", "/api/v1/models/rollback", { reason: reason }, [button], function (j) {
      var message =
        "Rolled back: " + j.live.version + " is served again, " + j.rolled_back.version + " is out of service.";
      try {
        sessionStorage.setItem(RESULT_KEY, message);
      } catch (e) {
        // Storage refused: the table still shows which model is served.
      }
    });
  }

  var models = document.getElementById("models");
  if (models) {
    var shown = "";
    try {
      shown = sessionStorage.getItem(RESULT_KEY) || "";
      sessionStorage.removeItem(RESULT_KEY);
    } catch (e) {
      // Nothing kept.
    }
    say(document.getElementById("models-result"), shown);
    var group = models.querySelector("[data-action=rollback]");
    group.querySelector("button[name=rollback]").addEventListener("click", function () { rollBack(models); });
    group.addEventListener("keydown", function (e) {
      if (e.key === "Enter" && e.target.tagName === "INPUT") rollBack(models);
    });
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
