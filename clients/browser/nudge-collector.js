/*!
 * nudge-collector.js: the browser side of nudge.
 *
 * Records a shop session's micro-signals (page views with their dwell and
 * scroll depth, cart changes, checkout steps, searches, exit intent, coupon
 * field focus, image zoom, reviews, shipping info, price sort, a hidden tab),
 * sends them to nudge's JSON API (`POST /v1/track`) in batches with their
 * real times, and asks for a decision (`POST /v1/decide`) at the moments the
 * shop chooses. When nudge offers a voucher, the shop's `onOffer` callback
 * shows it.
 *
 * Plain ES2017, no build step, no dependency. One global, `NudgeCollector`
 * (also `module.exports` under CommonJS; `nudge-collector.mjs` re-exports it
 * as an ES module):
 *
 *   const nudge = NudgeCollector.start({
 *     endpoint: "/nudge",               // the shop's proxy, or nudge itself
 *     onOffer: (offer) => showVoucher(offer.code, offer.amountCents),
 *   });
 *   addToCartButton.onclick = () => nudge.cartAdd("sku-1", 12900, 1);
 *
 * Every option and what is sent when: README.md next to this file.
 *
 * Why it fails open: a voucher is a bonus, never a dependency of the page.
 * A slow, failing or unreachable nudge means no offer and a call to
 * `onError`; no exception escapes to the shop's code, and every decision
 * request is bounded by `decideTimeoutMs`.
 */
(function (root) {
  "use strict";

  var VERSION = "1";

  var PAGE_KINDS = {
    home: "PAGE_KIND_HOME",
    category: "PAGE_KIND_CATEGORY",
    product: "PAGE_KIND_PRODUCT",
    search: "PAGE_KIND_SEARCH",
    cart: "PAGE_KIND_CART",
    checkout: "PAGE_KIND_CHECKOUT",
    other: "PAGE_KIND_OTHER",
  };

  var SIGNALS = {
    coupon_focus: "SIGNAL_COUPON_FIELD_FOCUS",
    exit_intent: "SIGNAL_EXIT_INTENT",
    tab_hidden: "SIGNAL_TAB_HIDDEN",
    image_zoom: "SIGNAL_IMAGE_ZOOM",
    reviews_opened: "SIGNAL_REVIEWS_OPENED",
    shipping_info: "SIGNAL_SHIPPING_INFO",
    price_sort: "SIGNAL_PRICE_SORT",
  };

  var DEVICES = {
    desktop: "DEVICE_DESKTOP",
    mobile: "DEVICE_MOBILE",
    tablet: "DEVICE_TABLET",
  };

  var SOURCES = {
    direct: "TRAFFIC_SOURCE_DIRECT",
    search: "TRAFFIC_SOURCE_SEARCH",
    ads: "TRAFFIC_SOURCE_ADS",
    email: "TRAFFIC_SOURCE_EMAIL",
    social: "TRAFFIC_SOURCE_SOCIAL",
    referral: "TRAFFIC_SOURCE_REFERRAL",
  };

  // The moments a decision may be asked at; each is also the name of the
  // event (or signal) that triggers it.
  var MOMENTS = ["exit_intent", "coupon_focus", "cart_add", "checkout_step"];

  var DEFAULTS = {
    endpoint: "",
    trackPath: "/v1/track",
    decidePath: "/v1/decide",
    token: "",
    headers: null,
    sessionId: "",
    visitorId: "",
    campaign: "",
    context: null,
    decideOn: MOMENTS.slice(),
    decideTimeoutMs: 1500,
    trackTimeoutMs: 10000,
    flushIntervalMs: 5000,
    batchSize: 20,
    maxQueue: 200,
    sessionIdleMs: 30 * 60 * 1000,
    storagePrefix: "nudge.",
    page: null,
    autoPageView: true,
    onOffer: null,
    onDecision: null,
    onError: null,
  };

  // Server limits (see nudge.proto): checked here so that one bad value
  // from the shop does not get a whole batch refused.
  var MAX_CENTS = 100000000;
  var MAX_DWELL_MS = 3600000;
  var MAX_ID_BYTES = 128;
  // Decide and Track carry at most this many events (limits.max_events_per_request).
  var MAX_EVENTS_PER_REQUEST = 256;

  function now() {
    return Date.now();
  }

  function clamp(x, lo, hi) {
    return x < lo ? lo : x > hi ? hi : x;
  }

  function isCents(x) {
    return typeof x === "number" && Number.isInteger(x) && x >= 0 && x <= MAX_CENTS;
  }

  // Printable ASCII, at most 128 bytes: what nudge accepts as an id.
  function isId(s) {
    return typeof s === "string" && s.length > 0 && s.length <= MAX_ID_BYTES && /^[\x20-\x7e]+$/.test(s);
  }

  function randomId(prefix) {
    var c = root.crypto;
    if (c && typeof c.randomUUID === "function") return prefix + c.randomUUID();
    var bytes = new Uint8Array(16);
    if (c && typeof c.getRandomValues === "function") c.getRandomValues(bytes);
    else for (var i = 0; i < 16; i++) bytes[i] = Math.floor(Math.random() * 256);
    return prefix + Array.prototype.map.call(bytes, function (b) {
      return (b + 256).toString(16).slice(1);
    }).join("");
  }

  // Storage that may be missing or throw (private mode, blocked cookies):
  // then the ids live as long as the page.
  function store(kind) {
    var memory = {};
    var s = null;
    try {
      s = root[kind];
      var probe = "nudge.probe";
      s.setItem(probe, "1");
      s.removeItem(probe);
    } catch (e) {
      s = null;
    }
    return {
      get: function (k) {
        try {
          return s ? s.getItem(k) : Object.prototype.hasOwnProperty.call(memory, k) ? memory[k] : null;
        } catch (e) {
          return null;
        }
      },
      set: function (k, v) {
        try {
          if (s) s.setItem(k, v);
          else memory[k] = v;
        } catch (e) {
          memory[k] = v;
        }
      },
      remove: function (k) {
        try {
          if (s) s.removeItem(k);
        } catch (e) {
          /* nothing to do */
        }
        delete memory[k];
      },
    };
  }

  /** The device class from the user agent, then the viewport. */
  function detectDevice(nav, win) {
    var ua = (nav && nav.userAgent) || "";
    if (/iPad|Tablet|PlayBook|Silk|Kindle/i.test(ua) || (/Android/i.test(ua) && !/Mobile/i.test(ua))) {
      return "tablet";
    }
    // iPadOS reports itself as a Mac with touch.
    if (/Macintosh/.test(ua) && nav && nav.maxTouchPoints > 1) return "tablet";
    if (/Mobi|iPhone|iPod|Android|Windows Phone/i.test(ua)) return "mobile";
    var w = (win && win.innerWidth) || 0;
    var touch = nav && nav.maxTouchPoints > 0;
    if (touch && w > 0 && w < 768) return "mobile";
    if (touch && w >= 768 && w < 1100) return "tablet";
    return "desktop";
  }

  var SEARCH_HOSTS = /(^|\.)(google|bing|yahoo|duckduckgo|ecosia|baidu|yandex|qwant|startpage|brave)\./i;
  var SOCIAL_HOSTS = /(^|\.)(facebook|fb|instagram|t|twitter|x|linkedin|lnkd|pinterest|tiktok|reddit|youtube|snapchat|threads|mastodon)\.(com|co|net|social|in)$/i;
  var MAIL_HOSTS = /(^|\.)(mail\.google|outlook\.live|mail\.yahoo|webmail|gmx|web\.de|proton\.me)/i;

  /**
   * The traffic source of the session's landing page: utm_medium first,
   * then click ids of ad networks, then the referrer's host (another page
   * of the same shop is no source), else direct.
   */
  function detectSource(loc, referrer) {
    var params;
    try {
      params = new URL(loc.href).searchParams;
    } catch (e) {
      params = null;
    }
    if (params) {
      var medium = (params.get("utm_medium") || "").toLowerCase();
      if (/^(cpc|ppc|paid|paidsearch|paid_search|paid-social|paid_social|display|cpm|cpv|banner|retargeting|affiliate|ads?)$/.test(medium)) return "ads";
      if (/^(e-?mail|newsletter)$/.test(medium)) return "email";
      if (/^(social|social-network|social_network|sm)$/.test(medium)) return "social";
      if (/^organic$/.test(medium)) return "search";
      if (/^referral$/.test(medium)) return "referral";
      if (params.get("gclid") || params.get("msclkid") || params.get("fbclid") || params.get("dclid") || params.get("ttclid")) {
        return "ads";
      }
    }
    if (referrer) {
      var host = "";
      try {
        host = new URL(referrer).hostname;
      } catch (e) {
        host = "";
      }
      if (host && host !== loc.hostname) {
        if (MAIL_HOSTS.test(host)) return "email";
        if (SEARCH_HOSTS.test(host)) return "search";
        if (SOCIAL_HOSTS.test(host)) return "social";
        return "referral";
      }
    }
    return "direct";
  }

  function enumName(table, value, field) {
    if (value == null || value === "") return undefined;
    var key = String(value).toLowerCase();
    if (Object.prototype.hasOwnProperty.call(table, key)) return table[key];
    for (var k in table) if (table[k] === value) return value;
    throw new TypeError(field + ": unknown value " + JSON.stringify(value));
  }

  // A field of a JSON answer under its proto name or its lowerCamelCase one.
  function field(obj, snake) {
    if (!obj) return undefined;
    if (obj[snake] !== undefined) return obj[snake];
    var camel = snake.replace(/_([a-z])/g, function (_, c) {
      return c.toUpperCase();
    });
    return obj[camel];
  }

  function num(v) {
    var n = typeof v === "string" ? Number(v) : v;
    return typeof n === "number" && isFinite(n) ? n : 0;
  }

  function NudgeError(kind, message, detail) {
    var e = new Error(message);
    e.name = "NudgeError";
    e.kind = kind;
    if (detail) for (var k in detail) e[k] = detail[k];
    return e;
  }

  /**
   * A collector for one page. Most shops call `NudgeCollector.start(options)`
   * once per page, after the body exists.
   */
  function NudgeCollector(options) {
    if (!(this instanceof NudgeCollector)) return new NudgeCollector(options);
    var o = {};
    var k;
    for (k in DEFAULTS) o[k] = DEFAULTS[k];
    for (k in options || {}) {
      if (!Object.prototype.hasOwnProperty.call(DEFAULTS, k)) {
        throw new TypeError("NudgeCollector: unknown option " + JSON.stringify(k));
      }
      if (options[k] !== undefined) o[k] = options[k];
    }
    if (typeof o.endpoint !== "string") throw new TypeError("NudgeCollector: endpoint must be a string (a URL or a path)");
    o.endpoint = o.endpoint.replace(/\/+$/, "");
    ["decideTimeoutMs", "trackTimeoutMs", "flushIntervalMs", "batchSize", "maxQueue", "sessionIdleMs"].forEach(function (name) {
      if (typeof o[name] !== "number" || !(o[name] > 0)) {
        throw new TypeError("NudgeCollector: " + name + " must be a positive number");
      }
    });
    o.maxQueue = Math.min(o.maxQueue, MAX_EVENTS_PER_REQUEST - 1);
    o.batchSize = Math.min(o.batchSize, o.maxQueue);
    if (!Array.isArray(o.decideOn)) throw new TypeError("NudgeCollector: decideOn must be an array");
    o.decideOn.forEach(function (m) {
      if (MOMENTS.indexOf(m) < 0) {
        throw new TypeError("NudgeCollector: decideOn: unknown moment " + JSON.stringify(m) + " (one of " + MOMENTS.join(", ") + ")");
      }
    });
    if (o.sessionId && !isId(o.sessionId)) throw new TypeError("NudgeCollector: sessionId must be 1..128 printable ASCII characters");
    if (o.visitorId && !isId(o.visitorId)) throw new TypeError("NudgeCollector: visitorId must be 1..128 printable ASCII characters");
    this.options = o;
    this._queue = [];
    this._dropped = 0;
    this._sent = 0;
    this._tracking = false;
    this._flushAgain = false;
    this._deciding = null;
    this._page = null;
    this._exitFired = false;
    this._left = false;
    this._timer = null;
    this._listeners = [];
    this._session = store("sessionStorage");
    this._local = store("localStorage");
    this._ids();
  }

  NudgeCollector.VERSION = VERSION;
  NudgeCollector.MOMENTS = MOMENTS.slice();
  NudgeCollector.detectDevice = detectDevice;
  NudgeCollector.detectSource = detectSource;

  /** Creates a collector and starts listening to the page. */
  NudgeCollector.start = function (options) {
    var c = new NudgeCollector(options);
    c.start();
    return c;
  };

  var P = NudgeCollector.prototype;

  // --- Ids and context ---

  P._key = function (name) {
    return this.options.storagePrefix + name;
  };

  /**
   * The visitor id lives in localStorage (it outlives the tab), the session
   * id in sessionStorage (one per tab), renewed after `sessionIdleMs` without
   * an event: nudge forgets idle sessions after its own TTL, and events
   * older than it are refused.
   */
  P._ids = function () {
    var o = this.options;
    var visitor = o.visitorId || this._local.get(this._key("visitor"));
    var returning = false;
    if (!isId(visitor)) visitor = randomId("v-");
    else returning = !o.visitorId;
    this._local.set(this._key("visitor"), visitor);
    this.visitorId = visitor;

    var session = o.sessionId;
    var last = Number(this._session.get(this._key("last_ms"))) || 0;
    var stored = this._session.get(this._key("session"));
    if (!session) {
      session = isId(stored) && now() - last < o.sessionIdleMs ? stored : randomId("s-");
    }
    if (session !== stored) {
      // A new session: its context (source of the landing page) and its
      // offer start afresh.
      this._session.remove(this._key("context"));
      this._session.remove(this._key("offer"));
      this._session.set(this._key("session"), session);
    }
    this.sessionId = session;

    var context = null;
    try {
      context = JSON.parse(this._session.get(this._key("context")) || "null");
    } catch (e) {
      context = null;
    }
    if (!context) {
      var doc = root.document;
      context = {
        device: detectDevice(root.navigator, root),
        trafficSource: detectSource(root.location || { href: "", hostname: "" }, doc ? doc.referrer : ""),
        returningVisitor: returning,
        priorOrders: 0,
      };
      this._session.set(this._key("context"), JSON.stringify(context));
    }
    var given = o.context || {};
    for (var k in given) {
      if (["device", "trafficSource", "returningVisitor", "priorOrders"].indexOf(k) < 0) {
        throw new TypeError("NudgeCollector: context: unknown field " + JSON.stringify(k));
      }
      if (given[k] !== undefined) context[k] = given[k];
    }
    this._context = {
      device: enumName(DEVICES, context.device, "context.device"),
      traffic_source: enumName(SOURCES, context.trafficSource, "context.trafficSource"),
      returning_visitor: !!context.returningVisitor,
      prior_orders: clamp(Math.floor(num(context.priorOrders)), 0, 1000),
    };
    // A page load is activity: the session's idle time starts now.
    this._touch();
  };

  P._touch = function () {
    this._session.set(this._key("last_ms"), String(now()));
  };

  // --- Listening to the page ---

  P._on = function (target, type, fn, capture) {
    var self = this;
    var safe = function (ev) {
      try {
        fn.call(self, ev);
      } catch (e) {
        self._error(NudgeError("internal", "collector: " + (e && e.message)));
      }
    };
    target.addEventListener(type, safe, capture ? { capture: true, passive: true } : { passive: true });
    this._listeners.push([target, type, safe, !!capture]);
  };

  /** Starts recording: the page view, the page's signals, the flush timer. */
  P.start = function () {
    if (this._timer) return this;
    var doc = root.document;
    var self = this;
    if (this.options.autoPageView) this.pageView(this.options.page || undefined);
    this._on(root, "scroll", this._measureScroll);
    this._on(root, "resize", this._measureScroll);
    this._on(doc, "visibilitychange", this._visibility);
    this._on(root, "pagehide", this._leave);
    this._on(root, "pageshow", this._show);
    this._on(doc, "mouseout", this._mouseOut);
    this._on(doc, "focusin", this._focus);
    this._on(doc, "click", this._click);
    // `toggle` does not bubble: listen in the capture phase.
    this._on(doc, "toggle", this._toggle, true);
    this._timer = root.setInterval(function () {
      self.flush();
    }, this.options.flushIntervalMs);
    this._replayOffer();
    return this;
  };

  /** Stops listening and sends what is queued. */
  P.stop = function () {
    this._endPageView();
    this._listeners.forEach(function (l) {
      l[0].removeEventListener(l[1], l[2], l[3]);
    });
    this._listeners = [];
    if (this._timer) root.clearInterval(this._timer);
    this._timer = null;
    return this.flush();
  };

  // The page's kind and product from its body's data attributes.
  P._pageFromDom = function () {
    var body = root.document && root.document.body;
    var ds = (body && body.dataset) || {};
    return {
      kind: ds.nudgePage || "other",
      productId: ds.nudgeProductId || "",
      priceCents: ds.nudgePriceCents ? Number(ds.nudgePriceCents) : 0,
    };
  };

  /**
   * Starts a page view (ending the current one): called by `start`, and by
   * single-page shops on each route change. `page` is `{kind, productId,
   * priceCents}`; omitted, it is read from `<body data-nudge-page ...>`.
   */
  P.pageView = function (page) {
    this._endPageView();
    var p = page || this._pageFromDom();
    var kind = enumName(PAGE_KINDS, p.kind || "other", "page.kind");
    var price = p.priceCents == null ? 0 : Number(p.priceCents);
    if (!isCents(price)) {
      this._error(NudgeError("input", "page.priceCents: integer cents in 0..100000000 expected, got " + p.priceCents));
      price = 0;
    }
    var productId = p.productId ? String(p.productId) : "";
    if (kind === "PAGE_KIND_PRODUCT" && !isId(productId)) {
      this._error(NudgeError("input", "page.productId: required on a product page (data-nudge-product-id)"));
      kind = "PAGE_KIND_OTHER";
      productId = "";
    }
    var doc = root.document;
    var visible = !doc || doc.visibilityState !== "hidden";
    this._page = {
      atMs: now(),
      kind: kind,
      productId: productId,
      priceCents: price,
      dwellMs: 0,
      visibleSince: visible ? root.performance.now() : null,
      scroll: 0,
    };
    this._exitFired = false;
    this._measureScroll();
  };

  P._measureScroll = function () {
    var page = this._page;
    if (!page) return;
    var doc = root.document && root.document.documentElement;
    if (!doc) return;
    var height = Math.max(doc.scrollHeight, (root.document.body && root.document.body.scrollHeight) || 0);
    var seen = (root.scrollY || doc.scrollTop || 0) + (root.innerHeight || doc.clientHeight || 0);
    // A page that fits the window was seen whole.
    var depth = height > 0 ? clamp(seen / height, 0, 1) : 1;
    if (depth > page.scroll) page.scroll = depth;
  };

  P._dwellNow = function () {
    var page = this._page;
    var d = page.dwellMs;
    if (page.visibleSince != null) d += root.performance.now() - page.visibleSince;
    return Math.min(Math.round(d), MAX_DWELL_MS);
  };

  /**
   * Queues the current page view, once, with the time it was shown and the
   * dwell and scroll depth so far. Called when the page is hidden or left,
   * or by a decision (so that it scores this page too); a later return to
   * the tab adds nothing to it.
   */
  P._endPageView = function (noFlush) {
    var page = this._page;
    if (!page) return;
    this._measureScroll();
    var view = { page_kind: page.kind, dwell_ms: this._dwellNow(), scroll_depth: Math.round(page.scroll * 1000) / 1000 };
    if (page.productId) view.product_id = page.productId;
    if (page.priceCents) view.price_cents = page.priceCents;
    this._page = null;
    // In time order: the view started before the events it saw.
    var i = this._queue.length;
    while (i > 0 && this._queue[i - 1].at_ms > page.atMs) i--;
    this._queue.splice(i, 0, { at_ms: page.atMs, page_view: view });
    if (!noFlush) this._push(null);
  };

  P._visibility = function () {
    var doc = root.document;
    if (doc.visibilityState === "hidden") {
      // A page being left is hidden too; it is no hidden tab. Chromium says
      // `pagehide` first, so the case is known there.
      if (!this._left) this._push({ at_ms: now(), interaction: { signal: SIGNALS.tab_hidden } });
      // The last moment a mobile browser reliably runs our code.
      this._endPageView();
      this.flush(true);
    } else if (this._page && this._page.visibleSince == null) {
      this._page.visibleSince = root.performance.now();
    }
  };

  P._leave = function () {
    this._left = true;
    this._endPageView();
    this.flush(true);
  };

  // Back from the back/forward cache: a new page view of the same page.
  P._show = function (ev) {
    this._left = false;
    if (ev.persisted && this.options.autoPageView) this.pageView(this.options.page || undefined);
  };

  // Exit intent: the pointer leaves the document through the top edge
  // (towards the tabs and the address bar), once per page view.
  P._mouseOut = function (ev) {
    if (ev.relatedTarget || ev.toElement || ev.clientY > 0 || this._exitFired) return;
    this._exitFired = true;
    this.signal("exit_intent");
  };

  function isCoupon(el) {
    if (!el || el.nodeType !== 1) return false;
    if (el.closest && el.closest("[data-nudge-coupon]")) return true;
    var tag = el.tagName;
    return (tag === "INPUT" || tag === "TEXTAREA") && /coupon|voucher/i.test((el.name || "") + " " + (el.id || ""));
  }

  P._focus = function (ev) {
    if (isCoupon(ev.target)) this.signal("coupon_focus");
  };

  // Click targets by data attribute; <details> elements are counted on
  // `toggle` instead, so that a click on their summary is not counted twice.
  var CLICKS = [
    ["[data-nudge-zoom]", "image_zoom"],
    ["[data-nudge-reviews]", "reviews_opened"],
    ["[data-nudge-shipping]", "shipping_info"],
    ["[data-nudge-price-sort]", "price_sort"],
  ];

  P._click = function (ev) {
    var t = ev.target;
    if (!t || !t.closest) return;
    for (var i = 0; i < CLICKS.length; i++) {
      var el = t.closest(CLICKS[i][0]);
      if (el && el.tagName !== "DETAILS") {
        this.signal(CLICKS[i][1]);
        return;
      }
    }
  };

  P._toggle = function (ev) {
    var el = ev.target;
    if (!el || el.tagName !== "DETAILS" || !el.open) return;
    if (el.matches("[data-nudge-reviews]")) this.signal("reviews_opened");
    else if (el.matches("[data-nudge-shipping]")) this.signal("shipping_info");
  };

  // --- What the shop calls ---

  /**
   * Records a signal by name: "coupon_focus", "exit_intent", "tab_hidden",
   * "image_zoom", "reviews_opened", "shipping_info", "price_sort".
   */
  P.signal = function (name) {
    var s = SIGNALS[name];
    if (!s) {
      this._error(NudgeError("input", "signal: unknown signal " + JSON.stringify(name) + " (one of " + Object.keys(SIGNALS).join(", ") + ")"));
      return;
    }
    this._push({ at_ms: now(), interaction: { signal: s } });
    this._moment(name);
  };

  P._cart = function (which, productId, unitPriceCents, quantity) {
    var q = quantity == null ? 1 : quantity;
    var bad = !isId(String(productId || ""))
      ? "productId: 1..128 printable ASCII characters expected"
      : !isCents(unitPriceCents)
        ? "unitPriceCents: integer cents in 0..100000000 expected, got " + unitPriceCents
        : !(Number.isInteger(q) && q >= 1 && q <= 1000)
          ? "quantity: an integer in 1..1000 expected, got " + quantity
          : null;
    if (bad) {
      this._error(NudgeError("input", which + ": " + bad));
      return false;
    }
    var ev = { at_ms: now() };
    ev[which === "cartAdd" ? "cart_add" : "cart_remove"] = {
      product_id: String(productId),
      unit_price_cents: unitPriceCents,
      quantity: q,
    };
    this._push(ev);
    return true;
  };

  /** The visitor put `quantity` (default 1) of a product in the cart. */
  P.cartAdd = function (productId, unitPriceCents, quantity) {
    if (this._cart("cartAdd", productId, unitPriceCents, quantity)) this._moment("cart_add");
  };

  /** The visitor took `quantity` (default 1) of a product out of the cart. */
  P.cartRemove = function (productId, unitPriceCents, quantity) {
    this._cart("cartRemove", productId, unitPriceCents, quantity);
  };

  /** The visitor reached checkout step `n` (1 = address ... 4 = payment, at most 10). */
  P.checkoutStep = function (n) {
    if (!(Number.isInteger(n) && n >= 1 && n <= 10)) {
      this._error(NudgeError("input", "checkoutStep: step: an integer in 1..10 expected, got " + n));
      return;
    }
    this._push({ at_ms: now(), checkout_step: { step: n } });
    this._moment("checkout_step");
  };

  /** A site search returned `results` hits (0 counts as a zero-result search). */
  P.search = function (results) {
    if (!(Number.isInteger(results) && results >= 0)) {
      this._error(NudgeError("input", "search: results: a non-negative integer expected, got " + results));
      return;
    }
    this._push({ at_ms: now(), search: { results: Math.min(results, 4294967295) } });
  };

  // --- The queue and Track ---

  // Queues `ev` (null: only enforce the cap and the batch size).
  P._push = function (ev) {
    if (ev) this._queue.push(ev);
    this._touch();
    if (this._queue.length > this.options.maxQueue) {
      // The oldest events matter least to a decision made now.
      var extra = this._queue.length - this.options.maxQueue;
      this._queue.splice(0, extra);
      this._dropped += extra;
    }
    if (this._queue.length >= this.options.batchSize) this.flush();
  };

  P._headers = function () {
    var h = { "content-type": "application/json" };
    var extra = this.options.headers || {};
    for (var k in extra) h[k] = extra[k];
    if (this.options.token) h.authorization = "Bearer " + this.options.token;
    return h;
  };

  P._body = function (events) {
    var body = {
      session_id: this.sessionId,
      visitor_id: this.visitorId,
      context: this._context,
      events: events,
    };
    return body;
  };

  // Events older than the session window would get the whole request
  // refused: they are dropped (and counted) instead.
  P._takeQueue = function () {
    var oldest = now() - this.options.sessionIdleMs;
    var q = this._queue;
    this._queue = [];
    var fresh = q.filter(function (e) {
      return e.at_ms >= oldest;
    });
    this._dropped += q.length - fresh.length;
    return fresh;
  };

  /**
   * Sends the queued events with Track. `leaving` (the page is being
   * hidden or unloaded) sends at once, even with another Track in flight.
   * Resolves when done; never rejects.
   */
  P.flush = function (leaving) {
    var self = this;
    if (this._tracking && !leaving) {
      this._flushAgain = true;
      return this._tracking;
    }
    var events = this._takeQueue();
    if (!events.length) return Promise.resolve();
    var url = this.options.endpoint + this.options.trackPath;
    var body = JSON.stringify(this._body(events));
    // A Track that hangs would hold every later flush back: it is given up
    // after trackTimeoutMs and its events are queued again.
    var controller = typeof root.AbortController === "function" ? new root.AbortController() : null;
    var timer = controller
      ? root.setTimeout(function () {
          controller.abort();
        }, this.options.trackTimeoutMs)
      : null;
    var init = { keepalive: true };
    if (controller) init.signal = controller.signal;
    var p = this._fetch(url, body, init)
      .then(function (res) {
        if (res.ok) {
          self._sent += events.length;
          return;
        }
        return self._refused(res, "track").then(function (err) {
          // Overload or an outage: keep the events for the next flush.
          // Anything else (a 4xx) would be refused again.
          if (res.status === 429 || res.status >= 500) self._requeue(events);
          self._error(err);
        });
      })
      .catch(function (e) {
        self._requeue(events);
        self._error(NudgeError("network", "track: " + (e && e.message), { cause: e }));
      })
      .then(function () {
        if (timer) root.clearTimeout(timer);
        if (self._tracking === p) self._tracking = false;
        if (self._flushAgain) {
          self._flushAgain = false;
          return self.flush();
        }
      });
    if (!leaving) this._tracking = p;
    return p;
  };

  P._requeue = function (events) {
    this._queue = events.concat(this._queue);
    var extra = this._queue.length - this.options.maxQueue;
    if (extra > 0) {
      this._queue.splice(0, extra);
      this._dropped += extra;
    }
  };

  P._fetch = function (url, body, init) {
    var req = { method: "POST", headers: this._headers(), body: body, credentials: "omit", mode: "cors" };
    for (var k in init || {}) req[k] = init[k];
    return root.fetch(url, req);
  };

  // The error of a refused call, from nudge's JSON error body when there is one.
  P._refused = function (res, what) {
    return res
      .json()
      .catch(function () {
        return null;
      })
      .then(function (body) {
        var msg = (body && body.message) || res.statusText || "";
        return NudgeError("http", what + ": HTTP " + res.status + (msg ? ": " + msg : ""), {
          status: res.status,
          code: body && body.code,
          body: body,
        });
      });
  };

  // --- Decide ---

  P._moment = function (name) {
    if (this.options.decideOn.indexOf(name) >= 0) this.decide(name);
  };

  P._offered = function () {
    try {
      return JSON.parse(this._session.get(this._key("offer")) || "null");
    } catch (e) {
      return null;
    }
  };

  // A page of a session that already got an offer shows it again.
  P._replayOffer = function () {
    var offer = this._offered();
    if (offer && offer.expiresAtMs > now() && typeof this.options.onOffer === "function") {
      var copy = {};
      for (var k in offer) copy[k] = offer[k];
      copy.replayed = true;
      this._call("onOffer", copy);
    }
  };

  /**
   * Asks nudge for a decision now, carrying the current page view (so far)
   * and every event not sent yet. Resolves to the decision (nudge's JSON
   * answer), or null when none was asked (an offer was already made in
   * this session, or another decision is in flight) or it failed (then
   * `onError` was called): it never rejects.
   */
  P.decide = function (moment) {
    var self = this;
    if (this._offered()) return Promise.resolve(null);
    if (this._deciding) return Promise.resolve(null);
    // The page view goes with the decision, not with a Track racing it.
    this._endPageView(true);
    var events = this._takeQueue();
    var body = this._body(events);
    if (this.options.campaign) body.campaign = this.options.campaign;
    var controller = typeof root.AbortController === "function" ? new root.AbortController() : null;
    var timedOut = false;
    var timeout = this.options.decideTimeoutMs;
    var timer = root.setTimeout(function () {
      timedOut = true;
      if (controller) controller.abort();
    }, timeout);
    var url = this.options.endpoint + this.options.decidePath;
    // The events go with this one request, at most once: a lost answer
    // may still have been applied, and sending them again would count
    // them twice.
    var request = this._fetch(url, JSON.stringify(body), controller ? { signal: controller.signal } : {});
    var guardTimer = null;
    var guard = new Promise(function (_, reject) {
      // Without AbortController the answer is still ignored after the timeout.
      guardTimer = root.setTimeout(function () {
        reject(NudgeError("timeout", "decide: no answer within " + timeout + " ms", { moment: moment || "manual" }));
      }, timeout + 10);
    });
    this._deciding = Promise.race([request, guard])
      .then(function (res) {
        if (!res.ok) {
          return self._refused(res, "decide").then(function (err) {
            throw err;
          });
        }
        return res.json();
      })
      .then(function (decision) {
        self._sent += events.length;
        self._decided(decision);
        return decision;
      })
      .catch(function (e) {
        var err =
          e && e.name === "NudgeError"
            ? e
            : timedOut
              ? NudgeError("timeout", "decide: no answer within " + timeout + " ms", { cause: e })
              : NudgeError("network", "decide: " + (e && e.message), { cause: e });
        err.moment = moment || "manual";
        self._error(err);
        return null;
      })
      .then(function (decision) {
        root.clearTimeout(timer);
        root.clearTimeout(guardTimer);
        self._deciding = null;
        // The page view went with this decision; the visitor is still on
        // the page, but its view was counted: nothing more is sent for it.
        return decision;
      });
    return this._deciding;
  };

  P._decided = function (decision) {
    this._call("onDecision", decision);
    var offer = field(decision, "offer");
    var code = offer && field(offer, "voucher_code");
    if (!code) return;
    var segment = String(field(decision, "segment") || "").replace(/^SEGMENT_/, "").toLowerCase();
    var shown = {
      code: code,
      amountCents: num(field(offer, "amount_cents")),
      expiresAtMs: num(field(offer, "expires_at_ms")),
      segment: segment,
      probability: num(field(decision, "purchase_probability")),
    };
    this._session.set(this._key("offer"), JSON.stringify(shown));
    this._call("onOffer", shown);
  };

  // The shop's callbacks run apart from ours: their exceptions go to the
  // console, never into the collector's state.
  P._call = function (name, arg) {
    var fn = this.options[name];
    if (typeof fn !== "function") return;
    try {
      fn.call(this, arg);
    } catch (e) {
      if (root.console) root.console.error("nudge collector: " + name + " threw", e);
    }
  };

  P._error = function (err) {
    if (typeof this.options.onError === "function") this._call("onError", err);
    else if (root.console) root.console.warn("nudge collector: " + err.message);
  };

  /** Counters: events queued now, dropped (queue cap, too old), sent. */
  P.stats = function () {
    return { queued: this._queue.length, dropped: this._dropped, sent: this._sent, offered: !!this._offered() };
  };

  root.NudgeCollector = NudgeCollector;
  if (typeof module === "object" && module && module.exports) module.exports = NudgeCollector;
})(typeof globalThis !== "undefined" ? globalThis : typeof self !== "undefined" ? self : this);
