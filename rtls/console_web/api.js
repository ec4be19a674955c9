// WebSocket client of the console API (docs/console-api.md): login, resume with the highest
// alarm seq seen, token refresh at half-life, reconnection with back-off, replies matched to
// requests by id, and a connection status ("connecting", "connected", "reconnecting", "stale",
// "offline") for the indicator. Knows nothing about the page.

const TOKEN_KEY = "rtls.token";
const STALE_S = 15;            // no message for this long: the screen is stale, reconnect
const REPLY_TIMEOUT_MS = 10000;
const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];

export class ConsoleClient {
  /**
   * @param {object} h handlers: message(msg) for every server message but replies to login /
   *   resume / refresh; auth(reply) after a successful login or resume; loggedOut(reason) when
   *   the session ends ("expired", "logout"); status(s) on each status change.
   */
  constructor(url, h) {
    this.url = url;
    this.h = h;
    this.ws = null;
    this.nextId = 1;
    this.pending = new Map();
    this.authed = false;
    this.user = null;
    this.seq = null;            // highest alarm seq seen (null: no state yet, resume gets a snapshot)
    this.lastMessageMs = 0;
    this.clockOffset = 0;       // server clock minus browser clock, seconds
    this.expiresT = null;
    this.clockChecked = true;
    this.attempt = 0;
    this.reconnectTimer = null;
    this.refreshTimer = null;
    this.status = "offline";
    this.closedByUs = false;
    this.openWaiters = [];
    setInterval(() => this.watchdog(), 1000);
  }

  get token() {
    try { return sessionStorage.getItem(TOKEN_KEY); } catch { return null; }
  }

  set token(v) {
    try {
      if (v) sessionStorage.setItem(TOKEN_KEY, v); else sessionStorage.removeItem(TOKEN_KEY);
    } catch { /* storage disabled: the session lasts as long as the socket */ }
  }

  /** Open the socket (and resume when a token is stored). */
  connect() {
    clearTimeout(this.reconnectTimer);
    this.closedByUs = false;
    if (this.ws && this.ws.readyState <= WebSocket.OPEN) return;
    if (this.isStale()) this.setStatus("stale");
    else this.setStatus(this.attempt === 0 ? "connecting" : "reconnecting");
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.onopen = () => {
      this.attempt = 0;
      for (const w of this.openWaiters.splice(0)) w.resolve();
      if (this.token) this.resume();
      else this.setStatus("connected");
    };
    ws.onmessage = (ev) => this.receive(ev.data);
    ws.onclose = (ev) => this.closed(ws, ev);
    ws.onerror = () => { /* onclose follows */ };
  }

  /** Resolves when the socket is open (connecting if needed); rejects after 10 s. */
  ready() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) return Promise.resolve();
    this.connect();
    return new Promise((resolve, reject) => {
      const w = { resolve: () => { clearTimeout(timer); resolve(); } };
      const timer = setTimeout(() => {
        this.openWaiters = this.openWaiters.filter((x) => x !== w);
        reject(new Error("not connected"));
      }, REPLY_TIMEOUT_MS);
      this.openWaiters.push(w);
    });
  }

  /** Log in; resolves with the reply (ok or not). */
  async login(user, password, lang) {
    await this.ready();
    const reply = await this.request({ op: "login", user, password, lang });
    if (reply.ok) this.authenticated(reply);
    return reply;
  }

  resume() {
    const req = { op: "resume", token: this.token };
    if (this.seq != null) req.since = this.seq;
    this.request(req).then((reply) => {
      if (reply.ok) this.authenticated(reply);
      else this.sessionEnded("expired");
    }).catch(() => { /* the socket closed meanwhile: the next open resumes again */ });
  }

  authenticated(reply) {
    this.authed = true;
    this.user = reply.user || this.user;
    this.token = reply.token;
    this.lastMessageMs = Date.now();
    this.setStatus("connected");
    this.scheduleRefresh(reply.expires_t);
    this.h.auth(reply);
  }

  /** The server's clock now (seconds), from the `t` of its latest message. */
  serverNow() {
    return Date.now() / 1000 + this.clockOffset;
  }

  /** Refresh at half the token's remaining life (at least 5 s from now), on the server's clock. */
  scheduleRefresh(expiresT) {
    clearTimeout(this.refreshTimer);
    this.expiresT = expiresT;
    this.clockChecked = false;
    let remaining = Number(expiresT) - this.serverNow();
    // Clock skew between browser and server: fall back to a safe period.
    if (!Number.isFinite(remaining) || remaining <= 10 || remaining > 86400) remaining = 120;
    this.refreshTimer = setTimeout(() => this.refresh(), Math.max(5, remaining / 2) * 1000);
  }

  refresh() {
    if (!this.authed) return;
    this.request({ op: "refresh" }).then((reply) => {
      if (reply.ok) {
        this.token = reply.token;
        this.scheduleRefresh(reply.expires_t);
      } else {
        this.sessionEnded("expired");
      }
    }).catch(() => { /* reconnect will resume; refresh rescheduled then */ });
  }

  /** Send a request; resolves with its reply, rejects when not connected or no reply in 10 s. */
  request(fields) {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new Error("not connected"));
    }
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ ...fields, id }));
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error("no reply"));
      }, REPLY_TIMEOUT_MS);
      this.pending.set(id, { resolve, reject, timer });
    });
  }

  /** A console command (acknowledge, resolve, sign_out, …); resolves with the reply. */
  command(command, args) {
    return this.request({ op: "command", command, args });
  }

  logout() {
    if (this.ws && this.ws.readyState === WebSocket.OPEN && this.authed) {
      try { this.ws.send(JSON.stringify({ op: "logout", id: this.nextId++ })); } catch { /* closing */ }
    }
    this.sessionEnded("logout");
  }

  sessionEnded(reason) {
    const was = this.authed || this.token;
    this.authed = false;
    this.user = null;
    this.token = null;
    this.seq = null;
    this.lastMessageMs = 0;
    clearTimeout(this.refreshTimer);
    if (this.ws) {
      this.closedByUs = true;
      try { this.ws.close(1000); } catch { /* already closed */ }
      this.ws = null;
    }
    this.setStatus("offline");
    if (was) this.h.loggedOut(reason);
  }

  receive(data) {
    this.lastMessageMs = Date.now();
    let msg;
    try { msg = JSON.parse(data); } catch { return; }
    if (msg == null || typeof msg !== "object") return;
    if (Number.isFinite(msg.t) && msg.type !== "reply") {
      this.clockOffset = msg.t - Date.now() / 1000;
      // The token's expiry is on the server's clock: re-plan once the clock is known.
      if (!this.clockChecked && this.authed) this.scheduleRefresh(this.expiresT);
      this.clockChecked = true;
    }
    if (this.status === "stale" || this.status === "reconnecting") {
      if (this.authed) this.setStatus("connected");
    }
    if (msg.type === "reply" && this.pending.has(msg.id)) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      clearTimeout(p.timer);
      p.resolve(msg);
      return;
    }
    if (msg.type === "snapshot" && Number.isFinite(msg.seq)) this.seq = msg.seq;
    if (msg.type === "alarm" && Number.isFinite(msg.seq)) {
      this.seq = this.seq == null ? msg.seq : Math.max(this.seq, msg.seq);
    }
    this.h.message(msg);
  }

  closed(ws, ev) {
    if (ws !== this.ws) return;
    this.ws = null;
    // 1008 before authentication: too many failed logins on this connection.
    const why = ev.code === 1008 && !this.authed ? "too many attempts" : "closed";
    for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject(new Error(why)); }
    this.pending.clear();
    if (this.closedByUs) return;
    if (ev.code === 4401) {               // session expired or revoked
      this.sessionEnded("expired");
      return;
    }
    this.authed = false;
    this.scheduleReconnect();
  }

  scheduleReconnect() {
    clearTimeout(this.reconnectTimer);
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    this.attempt += 1;
    this.setStatus(this.isStale() ? "stale" : "reconnecting");
    this.reconnectTimer = setTimeout(() => this.connect(), base + Math.random() * base * 0.3);
  }

  isStale() {
    return this.lastMessageMs > 0 && Date.now() - this.lastMessageMs > STALE_S * 1000;
  }

  /** Seconds since the last server message (0 before any). */
  silenceS() {
    return this.lastMessageMs ? (Date.now() - this.lastMessageMs) / 1000 : 0;
  }

  watchdog() {
    if (!this.token && !this.authed) return;   // not logged in: no heartbeats expected
    if (!this.isStale()) return;
    if (this.status !== "stale") this.setStatus("stale");
    if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      // No message for 15 s on an open socket: drop it and resume on a new one.
      const ws = this.ws;
      this.ws = null;
      try { ws.close(4000); } catch { /* ignore */ }
      this.authed = false;
      for (const [, p] of this.pending) { clearTimeout(p.timer); p.reject(new Error("closed")); }
      this.pending.clear();
      this.scheduleReconnect();
    } else if (this.h.status) {
      this.h.status(this.status);               // let the indicator count the seconds
    }
  }

  setStatus(s) {
    if (s === this.status) return;
    this.status = s;
    this.h.status?.(s);
  }
}
