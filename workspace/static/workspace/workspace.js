/* The staff workspace's only script besides htmx. The pages work without it
   (links and forms); it adds the live connection, presence and typing, the
   keyboard, drafts kept per conversation, the SMS segment count and the "new
   message" pill. No inline scripts or styles: the Content-Security-Policy
   allows this file and htmx only. */
(function () {
  "use strict";

  var body = document.body;
  var me = body.dataset.user;
  var live = null;
  var liveLostAt = null;
  var viewers = {};
  var typers = {};
  var presenceTimer = null;
  var lastTypingSent = 0;
  var PRESENCE_EVERY_MS = 10000;
  var PRESENCE_TTL_MS = 25000;
  var TYPING_TTL_MS = 6000;

  function $(selector, root) { return (root || document).querySelector(selector); }
  function $all(selector, root) { return Array.prototype.slice.call((root || document).querySelectorAll(selector)); }
  function work() { return $("#work[data-conversation]"); }
  function openConversation() { var w = work(); return w ? w.dataset.conversation : null; }
  function csrf() {
    var field = $("input[name=csrfmiddlewaretoken]");
    return field ? field.value : "";
  }
  function fire(name) { body.dispatchEvent(new CustomEvent(name)); }

  /* --- Live connection (server-sent events) ---------------------------------- */
  var pending = {};
  function debounced(name) {
    if (pending[name]) return;
    pending[name] = setTimeout(function () { pending[name] = null; fire(name); }, 150);
  }

  function setLiveStatus(text) {
    var status = $("#live-status");
    if (!status) return;
    status.textContent = text || "";
    status.hidden = !text;
  }

  function connect() {
    /* The inbox and the supervisor's board listen; both refresh on "live-inbox". */
    if (!me || !window.EventSource || !$("#inbox-list, [data-live-board]")) return;
    live = new EventSource("/live/");
    live.addEventListener("ready", function () {
      if (liveLostAt) {
        /* Whatever happened while disconnected: fetch the current state. */
        setLiveStatus("");
        liveLostAt = null;
        fire("live-inbox");
        if (openConversation()) fire("live-thread");
      }
      body.dataset.live = "open";
      announcePresence("viewing");
    });
    live.onerror = function () {
      body.dataset.live = "lost";
      if (!liveLostAt) liveLostAt = Date.now();
      setLiveStatus("Live updates lost. Reconnecting… The page still works; reload to be sure it is current.");
    };
    ["message", "delivery", "conversation"].forEach(function (kind) {
      live.addEventListener(kind, function (event) {
        var data = JSON.parse(event.data);
        debounced("live-inbox");
        if (data.conversation !== openConversation()) return;
        if (kind === "message") {
          lastMessageEvent = ++sequence;
          threadAppend();
        } else if (kind === "delivery" && data.interaction) {
          noteDelivery(data.interaction);
          threadMessage(data.interaction);
        } else {
          lastThreadEvent = ++sequence;
          debounced("live-thread");
        }
      });
    });
    live.addEventListener("presence", function (event) {
      var data = JSON.parse(event.data);
      if (String(data.user) === me || data.conversation !== openConversation()) return;
      if (data.left) delete viewers[data.username];
      else viewers[data.username] = Date.now() + PRESENCE_TTL_MS;
      renderPresence();
    });
    live.addEventListener("typing", function (event) {
      var data = JSON.parse(event.data);
      if (String(data.user) === me || data.conversation !== openConversation()) return;
      typers[data.username] = Date.now() + TYPING_TTL_MS;
      viewers[data.username] = Date.now() + PRESENCE_TTL_MS;
      renderPresence();
    });
  }

  /* The open thread follows new messages by keyset: only those after the last one
     shown are fetched and appended (one request at a time; an event meanwhile
     asks again after it). A delivery state fetches its one message again. */
  var appending = null;
  var appendAgain = false;
  function threadAppend() {
    var thread = $("#thread");
    if (!thread || !window.htmx) return;
    if (!thread.dataset.after) { debounced("live-thread"); return; }
    if (appending) { appendAgain = true; return; }
    appending = htmx.ajax("GET", thread.dataset.threadUrl + "?after=" + encodeURIComponent(thread.dataset.after),
      { source: thread, target: "#thread .messages", swap: "beforeend" });
    appending.then(done, done);
    function done() {
      appending = null;
      if (appendAgain) { appendAgain = false; threadAppend(); }
    }
  }
  function threadMessage(id) {
    var thread = $("#thread");
    var shown = document.getElementById("m-" + id);
    if (!thread || !window.htmx) return;
    if (!shown) { threadAppend(); return; }
    htmx.ajax("GET", thread.dataset.threadUrl + "?message=" + encodeURIComponent(id),
      { source: thread, target: "#m-" + id, swap: "outerHTML" });
  }
  /* A live event can reach the page before the answer to a request sent earlier:
     a send's answer carries the thread as the server read it, and on a busy
     server the worker may meet the provider's refusal, or the patient write
     again, and the live connection report it first. Requests and events take
     numbers from one counter; when an answer older than an event has been
     swapped into the conversation, what the event said is fetched again: the
     message whose delivery state moved, the messages after the last shown, or
     the thread (a change of status, assignee, priority or labels). */
  var sequence = 0;
  var lastMessageEvent = 0;
  var lastThreadEvent = 0;
  var deliveredAt = {};
  var DELIVERIES_KEPT = 200;
  function noteDelivery(id) {
    delete deliveredAt[id];
    deliveredAt[id] = ++sequence;
    var ids = Object.keys(deliveredAt);
    if (ids.length > DELIVERIES_KEPT) delete deliveredAt[ids[0]];
  }
  body.addEventListener("htmx:beforeRequest", function (event) {
    if (event.detail.xhr) event.detail.xhr.sequence = ++sequence;
  });
  body.addEventListener("htmx:afterSettle", function (event) {
    var xhr = event.detail.xhr;
    if (!xhr || !xhr.sequence) return;
    /* An answer settles once per element it put in: each check runs once. */
    if (!xhr.deliveriesChecked) {
      xhr.deliveriesChecked = true;
      Object.keys(deliveredAt).forEach(function (id) {
        if (deliveredAt[id] > xhr.sequence && document.getElementById("m-" + id)) threadMessage(id);
      });
    }
    var settled = event.target;
    var inConversation = settled && settled.closest && settled.closest("#work");
    if (!xhr.messagesChecked && inConversation && lastMessageEvent > xhr.sequence) {
      xhr.messagesChecked = true;
      threadAppend();
    }
    if (!xhr.threadChecked && inConversation && lastThreadEvent > xhr.sequence) {
      xhr.threadChecked = true;
      debounced("live-thread");
    }
  });

  body.addEventListener("thread-advanced", function (event) {
    var thread = $("#thread");
    if (!thread) return;
    thread.dataset.after = event.detail.after;
    thread.dataset.lastSeen = event.detail.lastSeen;
    if (event.detail.lastInbound) thread.dataset.lastInbound = event.detail.lastInbound;
    /* A message the page had already (its own reply's answer) is shown once. */
    var seen = {};
    $all("#thread .messages > li[id]").forEach(function (item) {
      if (seen[item.id]) item.remove(); else seen[item.id] = true;
    });
    onThreadSwapped();
  });

  /* --- Presence and "is replying" ---------------------------------------------- */
  function alive(map) {
    var now = Date.now();
    return Object.keys(map).filter(function (name) { return map[name] > now; }).sort();
  }

  function renderPresence() {
    var box = $("#presence");
    if (!box) return;
    var typing = alive(typers);
    var watching = alive(viewers).filter(function (n) { return typing.indexOf(n) < 0; });
    var parts = typing.map(function (n) { return n + " is replying…"; });
    if (watching.length) parts.push("Also viewing: " + watching.join(", "));
    box.textContent = parts.join(" · ");
  }
  setInterval(renderPresence, 2000);

  function announcePresence(state) {
    var w = work();
    if (!w || !w.dataset.presenceUrl) return;
    var data = new FormData();
    data.append("state", state);
    data.append("csrfmiddlewaretoken", csrf());
    if (state === "left" && navigator.sendBeacon) {
      navigator.sendBeacon(w.dataset.presenceUrl, data);
      return;
    }
    fetch(w.dataset.presenceUrl, { method: "POST", body: data, credentials: "same-origin" }).catch(function () {});
  }

  function startPresence() {
    clearInterval(presenceTimer);
    viewers = {};
    typers = {};
    renderPresence();
    if (!openConversation()) return;
    announcePresence("viewing");
    presenceTimer = setInterval(function () { announcePresence("viewing"); }, PRESENCE_EVERY_MS);
  }
  window.addEventListener("pagehide", function () { announcePresence("left"); });

  /* --- Composer: drafts, mode, segments, typing ---------------------------------- */
  function draftKey(form) { return "draft:" + form.dataset.conversation; }
  /* Drafts live in this tab's sessionStorage: they survive a page change or a
     sign-in after the session ended, never the closed tab (they can hold PHI). */
  var drafts = window.sessionStorage;

  function composer() { return $("#composer"); }

  var GSM7 = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡" +
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var GSM7_EXTENDED = "^{}\\[~]|€\f";

  function segments(text) {
    var units = 0, gsm = true;
    for (var i = 0; i < text.length; i++) {
      var c = text[i];
      if (GSM7.indexOf(c) >= 0) units += 1;
      else if (GSM7_EXTENDED.indexOf(c) >= 0) units += 2;
      else { gsm = false; break; }
    }
    if (!gsm) units = text.length;
    var single = gsm ? 160 : 70, part = gsm ? 153 : 67;
    var count = units === 0 ? 0 : (units <= single ? 1 : Math.ceil(units / part));
    return { count: count, units: units, gsm: gsm };
  }

  function updateComposer(form) {
    var textarea = $("textarea", form);
    var note = $("#mode-note", form).checked;
    form.classList.toggle("is-note", note);
    var meta = $("[data-segments]", form);
    if (meta && form.dataset.channel === "sms") {
      var s = segments(textarea.value);
      meta.hidden = note;
      meta.textContent = s.count === 0 ? "" :
        s.count + (s.count === 1 ? " text message" : " text messages") +
        " (" + textarea.value.length + " characters" + (s.gsm ? "" : ", special characters") + ")";
    }
  }

  function setupComposer() {
    var form = composer();
    if (!form) return;
    var textarea = $("textarea", form);
    var saved = drafts.getItem(draftKey(form));
    if (!textarea.value && saved) textarea.value = saved;
    updateComposer(form);
    textarea.addEventListener("input", function () {
      if (textarea.value) drafts.setItem(draftKey(form), textarea.value);
      else drafts.removeItem(draftKey(form));
      updateComposer(form);
      var now = Date.now();
      if (!$("#mode-note", form).checked && now - lastTypingSent > 3000) {
        lastTypingSent = now;
        announcePresence("typing");
      }
    });
    $all("input[name=mode]", form).forEach(function (radio) {
      radio.addEventListener("change", function () { updateComposer(form); });
    });
  }

  /* Canned responses: a suggestion's button or the list's choice puts its text
     (filled in for this patient by the server) into the composer. */
  function insertCanned(text) {
    var form = composer();
    if (!form || !text) return;
    var textarea = $("textarea", form);
    $("#mode-reply", form).checked = true;
    textarea.value = textarea.value.trim() ? textarea.value.replace(/\s+$/, "") + "\n" + text : text;
    textarea.dispatchEvent(new Event("input"));
    textarea.focus();
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest("#composer [data-canned-text]");
    if (button && button.tagName === "BUTTON") insertCanned(button.dataset.cannedText);
  });
  document.addEventListener("change", function (event) {
    if (!event.target.matches("#composer [data-canned-pick]")) return;
    var option = event.target.selectedOptions[0];
    if (option && option.dataset.cannedText) insertCanned(option.dataset.cannedText);
    event.target.value = "";
  });
  /* Alt+1, Alt+2, Alt+3 take the first, second or third suggestion. */
  document.addEventListener("keydown", function (event) {
    if (!event.altKey || event.ctrlKey || event.metaKey || !/^[1-3]$/.test(event.key)) return;
    var suggestion = $all("#composer .suggestion")[Number(event.key) - 1];
    if (!suggestion) return;
    event.preventDefault();
    suggestion.click();
  });

  /* Sending: the page says so at once and shows the message as "Sending…" in the
     thread; the server's answer replaces both. The form sends one request at a
     time (hx-sync), and the server answers a repeated key with the first send. */
  function pendingBubble(form) {
    var list = $("#thread .messages");
    var text = $("textarea", form).value.trim();
    if (!list || !text) return;
    var note = $("#mode-note", form).checked;
    var item = document.createElement("li");
    item.id = "pending-send";
    item.className = "msg is-pending " + (note ? "msg-internal kind-note" : "msg-outbound kind-message");
    var article = document.createElement("article");
    var bodyText = document.createElement("div");
    bodyText.className = "msg-body";
    bodyText.textContent = text;
    var state = document.createElement("p");
    state.className = "delivery delivery-sending";
    state.textContent = note ? "Saving…" : "Sending…";
    article.appendChild(bodyText);
    article.appendChild(state);
    item.appendChild(article);
    list.appendChild(item);
    list.scrollTop = list.scrollHeight;
  }
  function clearPending() {
    var pending = $("#pending-send");
    if (pending) pending.remove();
  }
  body.addEventListener("htmx:beforeRequest", function (event) {
    var form = event.detail.elt;
    if (!form || form.id !== "composer") return;
    var status = $("[data-composer-status]", form);
    if (status) status.textContent = $("#mode-note", form).checked ? "Saving the note…" : "Sending…";
    form.classList.add("is-sending");
    form.setAttribute("aria-busy", "true");
    pendingBubble(form);
  });
  body.addEventListener("htmx:afterRequest", function (event) {
    var form = event.detail.elt;
    if (!form || form.id !== "composer") return;
    clearPending();
    form.classList.remove("is-sending");
    form.removeAttribute("aria-busy");
    var status = $("[data-composer-status]", form);
    if (status && !event.detail.successful) status.textContent = "";
  });
  /* A server error page must not replace part of the page. A refresh that failed
     (a GET) leaves the page as it was: the next event or reconnect fetches again.
     A send or an action that failed says so, with the draft kept. */
  body.addEventListener("htmx:beforeSwap", function (event) {
    var xhr = event.detail.xhr;
    if (!xhr || xhr.status < 500) return;
    event.detail.shouldSwap = false;
    var config = event.detail.requestConfig;
    if (config && config.verb === "get") return;
    var notices = $("#notices");
    if (notices) {
      notices.innerHTML = "";
      var p = document.createElement("p");
      p.className = "notice notice-error";
      p.setAttribute("role", "alert");
      p.textContent = "Not done: the server had a problem (error " + xhr.status +
        "). Nothing was changed and your draft is kept; try again in a moment.";
      notices.appendChild(p);
    }
  });

  /* After a send the server answers with a fresh composer; a sent draft is gone. */
  body.addEventListener("htmx:afterSwap", function (event) {
    var target = event.detail.target;
    if (target && target.id === "composer" || (target && target.closest && target.closest("#composer"))) {
      var form = composer();
      if (form && form.dataset.sent === "true") drafts.removeItem(draftKey(form));
      setupComposer();
    }
  });

  /* While the agent writes, a newer patient message is shown but not counted as
     seen until they look at it: a send then meets the server's stale-reply guard
     instead of answering a message they have not read. */
  /* The suggested replies answer the patient's latest message: when the thread
     shows a newer one, they are fetched again (a new composer fetches its own). */
  function followLatestInbound(thread) {
    var box = $("#composer-suggestions");
    var latest = thread.dataset.lastInbound || "";
    if (!box) return;
    if (box.dataset.forInbound === undefined) { box.dataset.forInbound = latest; return; }
    if (box.dataset.forInbound === latest) return;
    box.dataset.forInbound = latest;
    fire("live-suggestions");
  }

  function onThreadSwapped() {
    var thread = $("#thread");
    var form = composer();
    if (!thread || !form) return;
    followLatestInbound(thread);
    var messages = $(".messages", thread);
    if (messages) messages.scrollTop = messages.scrollHeight;
    var seenField = $("[data-last-seen]", form);
    var writing = $("textarea", form).value.trim() !== "";
    if (!writing || seenField.value === "") {
      seenField.value = thread.dataset.lastSeen;
      return;
    }
    if (thread.dataset.lastInbound && seenField.value !== thread.dataset.lastSeen) {
      var pill = document.createElement("button");
      pill.type = "button";
      pill.className = "new-pill";
      pill.textContent = "New message from the patient: read it before you send";
      pill.addEventListener("click", function () {
        seenField.value = thread.dataset.lastSeen;
        pill.remove();
        $("textarea", form).focus();
      });
      thread.appendChild(pill);
    }
  }

  body.addEventListener("htmx:afterSettle", function (event) {
    var target = event.detail.target;
    if (!target) return;
    if (target.id === "thread" || target.id === "composer") onThreadSwapped();
    if (target.id === "work") {
      body.dataset.pane = "work";
      setupComposer();
      onThreadSwapped();
      startPresence();
      markSelected(openConversation());
      /* Opening a conversation moves focus to it; an action on it leaves focus
         where the keyboard user is, so the next shortcut still works. */
      var main = $("#main");
      var opened = event.detail.requestConfig && event.detail.requestConfig.verb === "get";
      if (main && opened) main.focus({ preventScroll: true });
    }
    if (target.id === "inbox-list") markSelected(openConversation());
  });

  /* htmx swaps error answers too (see the htmx-config meta); a lost network
     leaves the form as it was, so say so. */
  body.addEventListener("htmx:sendError", function () {
    var notices = $("#notices");
    if (notices) notices.innerHTML = '<p class="notice notice-error" role="alert">No connection to the server: nothing was changed. Your draft is kept; try again.</p>';
  });

  /* --- The list: selection, cursor, keyboard --------------------------------------- */
  function rows() { return $all("#inbox-list .row"); }

  function markSelected(id) {
    rows().forEach(function (row) {
      var selected = row.dataset.conversation === id;
      row.classList.toggle("is-selected", selected);
      var link = $(".row-link", row);
      if (selected) link.setAttribute("aria-current", "true");
      else link.removeAttribute("aria-current");
    });
  }

  var cursorId = null;
  function moveCursor(step) {
    var all = rows();
    if (!all.length) return;
    var index = all.findIndex(function (r) { return r.dataset.conversation === cursorId; });
    if (index < 0) index = all.findIndex(function (r) { return r.classList.contains("is-selected"); });
    index = Math.min(Math.max(index + step, 0), all.length - 1);
    all.forEach(function (r) { r.classList.remove("is-cursor"); });
    var row = all[index];
    row.classList.add("is-cursor");
    cursorId = row.dataset.conversation;
    $(".row-link", row).focus();
  }

  function typingInField(target) {
    return target.closest("input, textarea, select, [contenteditable=true]");
  }

  function clickShortcut(key) {
    var button = $("#work [data-shortcut='" + key + "']");
    if (button) button.click();
  }

  document.addEventListener("keydown", function (event) {
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    if (event.key === "Escape") {
      if (typingInField(event.target)) {
        event.target.blur();
        moveCursor(0);
      }
      return;
    }
    if (typingInField(event.target) || $("dialog[open]")) return;
    var form = composer();
    switch (event.key) {
      case "j": moveCursor(1); break;
      case "k": moveCursor(-1); break;
      case "Enter":
        if (!event.target.classList.contains("row-link")) {
          var cursorRow = $("#inbox-list .row.is-cursor .row-link");
          if (cursorRow) cursorRow.click(); else return;
        } else return;
        break;
      case "r":
      case "n":
        if (!form) return;
        $(event.key === "n" ? "#mode-note" : "#mode-reply", form).checked = true;
        updateComposer(form);
        $("textarea", form).focus();
        break;
      case "e": clickShortcut("e"); break;
      case "a": clickShortcut("a"); break;
      case "/": if (!$("#search-patient")) return; $("#search-patient").focus(); break;
      case "?": if (!$("#shortcuts")) return; $("#shortcuts").showModal(); break;
      default: return;
    }
    event.preventDefault();
  });

  /* Ctrl+Enter sends from the composer. */
  document.addEventListener("keydown", function (event) {
    if (event.key === "Enter" && (event.ctrlKey || event.metaKey) && event.target.id === "composer-body") {
      event.preventDefault();
      var send = $("#composer [data-send]");
      if (send) send.click();
    }
  });

  document.addEventListener("click", function (event) {
    if (event.target.closest("[data-open-shortcuts]")) $("#shortcuts").showModal();
    var back = event.target.closest("[data-back]");
    if (back && $("#inbox-list") && window.matchMedia("(max-width: 760px)").matches) {
      /* On a phone the list is still on the page behind the thread: show it
         again where it was instead of loading it anew. */
      event.preventDefault();
      body.dataset.pane = "list";
      history.pushState({}, "", back.href);
      var selected = $("#inbox-list .row.is-selected .row-link");
      if (selected) selected.focus();
    }
  });
  window.addEventListener("popstate", function () {
    if (window.location.pathname.indexOf("/conversations/") === 0) body.dataset.pane = "work";
    else body.dataset.pane = "list";
  });

  var summary = $("[data-autofocus]");
  if (summary) summary.focus();

  setupComposer();
  onThreadSwapped();
  startPresence();
  connect();
})();
