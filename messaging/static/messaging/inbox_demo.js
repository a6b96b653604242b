// The reference inbox client of Automata-Signal: plain JavaScript, no framework, no build step.
// It lists a subscription's inbox (GET /inbox, newest first), shows the unread count on a bell
// (GET /inbox/count), marks items read, unread and archived, and stays live over Server-Sent
// Events (GET /inbox/stream), reconnecting by itself and resuming from the last event it saw.
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("inbox-demo-config").textContent);
  var $ = function (id) { return document.getElementById(id); };
  var session = null; // {subscription_id, api_key, user_hash}
  var items = new Map(); // id -> item, as the API shows it
  var order = []; // ids, newest first
  var nextUrl = null;
  var source = null;
  var lastEventId = "";
  var retryTimer = null;
  var retryDelay = 1000;
  var opened = false; // the stream has been open once (a later open is a reconnection)

  function query(params) {
    var search = new URLSearchParams({ subscription_id: session.subscription_id });
    Object.keys(params || {}).forEach(function (name) {
      if (params[name] !== undefined && params[name] !== "") search.set(name, params[name]);
    });
    return search.toString();
  }

  function api(method, path, params) {
    var headers = { "X-API-Key": session.api_key, Accept: "application/json" };
    if (session.user_hash) headers["X-User-Hash"] = session.user_hash;
    var url = path.indexOf("http") === 0 ? path : config.api_url + path + "?" + query(params);
    return fetch(url, { method: method, headers: headers }).then(function (response) {
      return response.json().catch(function () { return {}; }).then(function (body) {
        if (!response.ok) {
          var error = (body && body.error) || {};
          throw new Error(response.status + " " + (error.code || "") + ": " + (error.message || response.statusText));
        }
        return body;
      });
    });
  }

  function showError(error) { $("error").textContent = error ? String(error.message || error) : ""; }

  function setConnection(state, text) {
    var badge = $("connection");
    badge.dataset.state = state;
    badge.textContent = text;
  }

  function setCount(count) {
    var badge = $("bell-count");
    badge.textContent = String(count.unread);
    badge.dataset.unread = String(count.unread);
    $("total").textContent = count.total + " in the inbox";
    document.title = (count.unread ? "(" + count.unread + ") " : "") + "Inbox demo · Automata-Signal";
  }

  function wanted(item) {
    var state = $("state").value;
    if (state === "all") return !item.archived_at;
    if (state === "archived") return !!item.archived_at;
    if (state === "unread") return !item.read_at && !item.archived_at;
    return !!item.read_at && !item.archived_at; // read
  }

  function button(label, action, id) {
    var element = document.createElement("button");
    element.type = "button";
    element.textContent = label;
    element.className = action;
    element.addEventListener("click", function (event) {
      event.stopPropagation();
      act(id, action);
    });
    return element;
  }

  function render() {
    var list = $("items");
    list.textContent = "";
    order.forEach(function (id) {
      var item = items.get(id);
      if (!item || !wanted(item)) return;
      var li = document.createElement("li");
      li.className = "item " + (item.read_at ? "read" : "unread");
      li.dataset.id = item.id;
      var title = document.createElement("div");
      title.className = "title";
      title.textContent = item.title || "(no title)";
      var body = document.createElement("div");
      body.className = "body";
      body.textContent = item.body || "";
      var meta = document.createElement("div");
      meta.className = "meta";
      var when = document.createElement("span");
      when.textContent = new Date(item.created_at).toLocaleString();
      var actions = document.createElement("span");
      if (item.read_at) actions.appendChild(button("Mark unread", "unread", item.id));
      if (!item.archived_at) actions.appendChild(button("Archive", "archive", item.id));
      meta.appendChild(when);
      meta.appendChild(actions);
      li.appendChild(title);
      li.appendChild(body);
      li.appendChild(meta);
      li.addEventListener("click", function () { if (!item.read_at) act(item.id, "read"); });
      list.appendChild(li);
    });
    $("more").hidden = !nextUrl;
  }

  function remember(item, atTop) {
    if (!items.has(item.id)) {
      if (atTop) order.unshift(item.id); else order.push(item.id);
    }
    items.set(item.id, item);
  }

  var arrivedDuringFetch = null; // items the stream brought while the list was being fetched

  function sortNewestFirst() {
    order.sort(function (a, b) {
      return String(items.get(b).created_at).localeCompare(String(items.get(a).created_at)) ||
        String(b).localeCompare(String(a));
    });
  }

  function loadList() {
    var arrived = arrivedDuringFetch = new Map();
    return api("GET", "/inbox", { state: $("state").value }).then(function (page) {
      items.clear();
      order = [];
      page.results.forEach(function (item) { remember(item, false); });
      // What came live meanwhile may be newer than the page: kept, not dropped.
      arrived.forEach(function (item, id) { if (!items.has(id)) remember(item, true); });
      if (arrivedDuringFetch === arrived) arrivedDuringFetch = null;
      sortNewestFirst();
      nextUrl = page.next;
      render();
    });
  }

  function loadMore() {
    if (!nextUrl) return;
    api("GET", nextUrl).then(function (page) {
      page.results.forEach(function (item) { remember(item, false); });
      nextUrl = page.next;
      render();
    }).catch(showError);
  }

  // A count fetched over HTTP is older than a count event that arrived while it was on its way:
  // it is shown only when the stream said nothing meanwhile.
  var countEvents = 0;

  function fetchedCount(request) {
    var seen = countEvents;
    return request.then(function (count) {
      if (seen === countEvents && count && typeof count.unread === "number") setCount(count);
      return count;
    });
  }

  function loadCount() { return fetchedCount(api("GET", "/inbox/count")); }

  function act(id, action) {
    api("POST", "/inbox/" + encodeURIComponent(id) + "/" + action).then(function (item) {
      if (item && item.id) remember(item, false);
      render();
      return loadCount(); // the stream's count event says the same; this keeps it right offline
    }).then(function () { showError(null); }).catch(showError);
  }

  function readAll() {
    fetchedCount(api("POST", "/inbox/read-all")).then(function () {
      var now = new Date().toISOString();
      items.forEach(function (item) { if (!item.read_at) item.read_at = now; });
      render();
    }).catch(showError);
  }

  function streamUrl() {
    var params = { api_key: session.api_key, user_hash: session.user_hash };
    // A new EventSource starts without the last id: it goes in the query string instead.
    if (lastEventId) params.last_event_id = lastEventId;
    return config.stream_url + config.api_url + "/inbox/stream?" + query(params);
  }

  function connect() {
    clearTimeout(retryTimer);
    if (source) source.close();
    setConnection("connecting", opened ? "reconnecting…" : "connecting…");
    source = new EventSource(streamUrl());
    source.onopen = function () {
      retryDelay = 1000;
      setConnection("open", "live");
      // The list is fetched again once the stream is open: on the first open, so that nothing
      // that arrived between the first fetch and the stream is missing; after a cut, since
      // only a count comes when the gap outlived the replay window.
      loadList().then(loadCount).then(function () { showError(null); }).catch(showError);
      opened = true;
    };
    source.onerror = function () {
      if (source.readyState === EventSource.CONNECTING) {
        // The browser reconnects by itself (after the server's retry: hint), sending Last-Event-ID.
        setConnection("connecting", "reconnecting…");
        return;
      }
      // CLOSED: the browser gave up (an HTTP error, a server that was down): try again later.
      setConnection("closed", "disconnected, retrying in " + Math.round(retryDelay / 1000) + " s");
      source.close();
      retryTimer = setTimeout(connect, retryDelay);
      retryDelay = Math.min(retryDelay * 2, 30000);
    };
    source.addEventListener("message", function (event) {
      lastEventId = event.lastEventId || lastEventId;
      var item = JSON.parse(event.data);
      if (arrivedDuringFetch) arrivedDuringFetch.set(item.id, item);
      remember(item, true);
      sortNewestFirst();
      render();
    });
    source.addEventListener("count", function (event) {
      lastEventId = event.lastEventId || lastEventId;
      countEvents += 1;
      setCount(JSON.parse(event.data));
    });
  }

  function start(values) {
    session = values;
    lastEventId = "";
    opened = false;
    var search = new URLSearchParams();
    Object.keys(values).forEach(function (name) { if (values[name]) search.set(name, values[name]); });
    history.replaceState(null, "", "?" + search.toString());
    $("read-all").disabled = false;
    showError(null);
    Promise.all([loadList(), loadCount()]).catch(showError);
    connect();
  }

  ["subscription_id", "api_key", "user_hash"].forEach(function (name) { $(name).value = config[name] || ""; });
  $("settings").addEventListener("submit", function (event) {
    event.preventDefault();
    start({
      subscription_id: $("subscription_id").value.trim(),
      api_key: $("api_key").value.trim(),
      user_hash: $("user_hash").value.trim(),
    });
  });
  $("state").addEventListener("change", function () { if (session) loadList().catch(showError); });
  $("read-all").addEventListener("click", readAll);
  $("more").addEventListener("click", loadMore);
  if (config.subscription_id && config.api_key) {
    start({ subscription_id: config.subscription_id, api_key: config.api_key, user_hash: config.user_hash || "" });
  }
})();
