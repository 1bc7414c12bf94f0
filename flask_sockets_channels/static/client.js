// flask-sockets-channels browser client: a WebSocket that reconnects by
// itself and resumes hub rooms where it left off. Plain JavaScript, no
// dependency: load it as a script (window.FlaskSocketsChannels) or import
// client.mjs. The protocol it speaks is in docs/browser-client.md.
(function (root) {
  "use strict";

  var DEFAULTS = {
    minDelay: 500, // ms, first reconnect delay bound (full jitter: 0..bound)
    maxDelay: 30000, // ms, the bound never grows past this
    refusedAttempts: 2, // a close before open (a refused handshake) counts as this many failures
    stopCodes: [1003, 1008], // never reconnect after these; add the app's 4xxx
    queueSize: 100, // messages sent while not connected, kept at most
    queueOverflow: "drop-oldest", // or "error": send() throws when full
    idleTimeout: 0, // ms without any frame: the connection is dead (0: off)
    sinceParam: "since", // query parameter that carries the positions
    protocols: undefined,
  };

  // "epoch:offset" with offset "n" or "ms-seq": compare within one epoch.
  function parse(position) {
    var at = position.lastIndexOf(":");
    return { epoch: position.slice(0, at), parts: position.slice(at + 1).split("-").map(Number) };
  }

  function after(position, last) {
    if (last === undefined) return true;
    var a = parse(position);
    var b = parse(last);
    if (a.epoch !== b.epoch) return true;
    for (var i = 0; i < Math.max(a.parts.length, b.parts.length); i++) {
      var x = a.parts[i] || 0;
      var y = b.parts[i] || 0;
      if (x !== y) return x > y;
    }
    return false;
  }

  function Socket(url, options) {
    var o = {};
    var key;
    for (key in DEFAULTS) o[key] = DEFAULTS[key];
    for (key in options || {}) o[key] = options[key];
    this.url = url;
    this.options = o;
    this.state = "connecting";
    this.positions = {}; // room -> last position received
    this._WebSocket = o.WebSocket || root.WebSocket;
    this._window = o.window || (typeof window !== "undefined" ? window : null);
    this._random = o.random || Math.random;
    this._listeners = {};
    this._queue = [];
    this._attempt = 0;
    this._ws = null;
    this._timer = null;
    this._idle = null;
    var self = this;
    this._wake = function () {
      if (self.state === "reconnecting") self._connect();
    };
    this._visible = function () {
      var doc = self._window && self._window.document;
      if (!doc || doc.visibilityState === "visible") self._wake();
    };
    if (this._window) {
      this._window.addEventListener("online", this._wake);
      this._window.addEventListener("visibilitychange", this._visible);
    }
    this._connect();
  }

  Socket.prototype.on = function (event, listener) {
    (this._listeners[event] = this._listeners[event] || []).push(listener);
    return this;
  };

  Socket.prototype.off = function (event, listener) {
    var list = this._listeners[event] || [];
    var index = list.indexOf(listener);
    if (index >= 0) list.splice(index, 1);
    return this;
  };

  Socket.prototype._emit = function (event, value, meta) {
    var list = (this._listeners[event] || []).slice();
    for (var i = 0; i < list.length; i++) list[i](value, meta);
  };

  Socket.prototype._setState = function (state) {
    if (this.state === state) return;
    this.state = state;
    this._emit("state", state);
  };

  Socket.prototype.send = function (data) {
    var text = typeof data === "string" ? data : JSON.stringify(data);
    if (this.state === "closed") throw new Error("socket closed");
    if (this.state === "open" && this._ws.readyState === 1) return this._ws.send(text);
    if (this._queue.length >= this.options.queueSize) {
      if (this.options.queueOverflow === "error") throw new Error("send queue full");
      this._queue.shift();
    }
    this._queue.push(text);
  };

  Socket.prototype.close = function () {
    this._stop(1000, "closed by the page");
  };

  Socket.prototype._stop = function (code, reason) {
    clearTimeout(this._timer);
    clearTimeout(this._idle);
    if (this._window) {
      this._window.removeEventListener("online", this._wake);
      this._window.removeEventListener("visibilitychange", this._visible);
    }
    var ws = this._ws;
    this._ws = null;
    if (ws && ws.readyState < 2) ws.close(1000);
    if (this.state !== "closed") {
      this._setState("closed");
      this._emit("closed", { code: code, reason: reason });
    }
  };

  // The URL to open: relative to the page, ws: or wss: as the page is
  // http: or https:, with the last positions received (JSON, room -> position).
  Socket.prototype._target = function () {
    var target = new URL(this.url, this._window ? this._window.location.href : undefined);
    target.protocol = target.protocol.replace(/^http/, "ws");
    if (Object.keys(this.positions).length) {
      target.searchParams.set(this.options.sinceParam, JSON.stringify(this.positions));
    }
    return target.toString();
  };

  Socket.prototype._connect = function () {
    clearTimeout(this._timer);
    if (this._ws) {
      var stale = this._ws;
      this._ws = null;
      stale.onopen = stale.onmessage = stale.onclose = stale.onerror = null;
      if (stale.readyState < 2) stale.close(4000, "reconnecting");
    }
    var self = this;
    var ws = new this._WebSocket(this._target(), this.options.protocols);
    var opened = false;
    this._ws = ws;
    ws.onopen = function () {
      opened = true;
      self._attempt = 0;
      self._setState("open");
      self._alive();
      while (self._queue.length && ws.readyState === 1) ws.send(self._queue.shift());
    };
    ws.onmessage = function (event) {
      self._alive();
      self._receive(event.data);
    };
    ws.onclose = function (event) {
      if (self._ws !== ws) return;
      self._ws = null;
      clearTimeout(self._idle);
      if (self.options.stopCodes.indexOf(event.code) >= 0) return self._stop(event.code, event.reason);
      // A close before open is most often a refused handshake (503, 429,
      // 401: a browser cannot read the status): back off harder.
      self._attempt += opened ? 1 : self.options.refusedAttempts;
      self._setState("reconnecting");
      var bound = Math.min(self.options.maxDelay, self.options.minDelay * Math.pow(2, self._attempt - 1));
      self._timer = setTimeout(function () {
        self._connect();
      }, self._random() * bound);
    };
  };

  // Any frame is a sign of life; a silence past idleTimeout is a dead
  // connection the browser did not notice (a laptop that slept, a network
  // that changed): reconnect.
  Socket.prototype._alive = function () {
    var self = this;
    clearTimeout(this._idle);
    if (this.options.idleTimeout > 0) {
      this._idle = setTimeout(function () {
        if (self._ws) self._ws.close(4000, "idle");
        self._connect();
      }, this.options.idleTimeout);
    }
  };

  Socket.prototype._receive = function (text) {
    if (text === "") return; // the server's heartbeat
    if (typeof text !== "string") return this._emit("message", text, {}); // binary
    var message;
    try {
      message = JSON.parse(text);
    } catch (error) {
      return this._emit("message", text, {});
    }
    if (message && typeof message.room === "string" && typeof message.position === "string") {
      var room = message.room;
      if (!("data" in message)) {
        // The notice of a join: where the room stands, and whether what
        // the page missed follows (recovered: null for a first join).
        this.positions[room] = message.position;
        if (typeof message.recovered === "boolean") this._emit("recovered", message);
        return;
      }
      if (!after(message.position, this.positions[room])) return; // had it already
      this.positions[room] = message.position;
      return this._emit("message", message.data, { room: room, position: message.position });
    }
    this._emit("message", message, {});
  };

  root.FlaskSocketsChannels = { Socket: Socket, after: after };
})(typeof globalThis !== "undefined" ? globalThis : this);
