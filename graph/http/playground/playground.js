// The contactgraph playground: GraphiQL with the explorer, plus a key box.
// The key lives in this tab's sessionStorage only (never a cookie, never the
// URL) and goes out as "Authorization: Bearer <key>" on HTTP and as
// "authorization" in the connection_init payload of subscriptions.
(function () {
  "use strict";

  var KEY_ITEM = "contactgraph.apiKey";
  var config = JSON.parse(document.getElementById("cg-config").textContent);
  var input = document.getElementById("cg-key");
  var status = document.getElementById("cg-key-status");
  var endpoint = window.location.pathname;
  var socketUrl =
    (window.location.protocol === "https:" ? "wss://" : "ws://") + window.location.host + endpoint;

  function readKey() {
    try {
      return window.sessionStorage.getItem(KEY_ITEM) || "";
    } catch (err) {
      return ""; // storage disabled: the key lasts until the page is left
    }
  }

  function keepKey(key) {
    try {
      if (key) window.sessionStorage.setItem(KEY_ITEM, key);
      else window.sessionStorage.removeItem(KEY_ITEM);
    } catch (err) {
      /* storage disabled: nothing to keep */
    }
  }

  // Enough to tell keys apart (the role prefix and the last characters), never the whole key.
  function masked(key) {
    var role = /^cg_[a-z]+_/.exec(key);
    return (role ? role[0] : "") + "…" + key.slice(-4);
  }

  function say(text, state) {
    status.textContent = text;
    status.setAttribute("data-state", state);
  }

  function noKeyFetcher() {
    return Promise.resolve({
      errors: [{ message: "No API key yet: paste one into the API key box above and press Enter." }],
    });
  }

  function fetcherFor(key) {
    if (!key) return noKeyFetcher;
    var bearer = "Bearer " + key;
    return GraphiQL.createFetcher({
      url: endpoint,
      headers: { Authorization: bearer },
      subscriptionUrl: socketUrl,
      wsConnectionParams: { authorization: bearer },
      fetch: function (url, init) {
        return window.fetch(url, init).then(function (response) {
          if (response.status === 401) {
            say("This key was refused (401): check it, or make one with `contactgraph keys create`.", "refused");
          } else if (response.ok) {
            say("Using key " + masked(key) + " (kept in this tab only).", "ok");
          }
          return response;
        });
      },
    });
  }

  var explorer = GraphiQLPluginExplorer.explorerPlugin();
  var root = ReactDOM.createRoot(document.getElementById("graphiql"));

  function render(key) {
    root.render(
      React.createElement(GraphiQL, {
        fetcher: fetcherFor(key),
        defaultQuery: config.defaultQuery,
        plugins: [explorer],
        shouldPersistHeaders: false,
      })
    );
  }

  function useKey(key) {
    key = key.trim();
    keepKey(key);
    input.value = key;
    if (key) say("Using key " + masked(key) + " (kept in this tab only).", "set");
    else say("No key yet.", "none");
    render(key);
  }

  document.getElementById("cg-key-use").addEventListener("click", function () {
    useKey(input.value);
  });
  document.getElementById("cg-key-forget").addEventListener("click", function () {
    useKey("");
  });
  input.addEventListener("keydown", function (event) {
    if (event.key === "Enter") {
      event.preventDefault();
      useKey(input.value);
    }
  });

  useKey(readKey());
})();
