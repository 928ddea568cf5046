# ruff: noqa: E501  (the page is one embedded HTML/JS document)
"""A live HTML view of the guilds: channels, messages and interactions, as Discord shows them.

Polled from the control API (`/_sim/channels/{id}/view`).

Self-contained (no external assets) so it works offline and inside Compose.
"""

from __future__ import annotations

from typing import Final

__all__ = ["ui_page"]

_PAGE: Final = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>Spectacles Discord simulator</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
 body{margin:0;font:14px/1.4 system-ui,sans-serif;background:#313338;color:#dbdee1}
 header{padding:10px 16px;background:#1e1f22;display:flex;gap:24px;align-items:baseline;flex-wrap:wrap}
 header h1{font-size:16px;margin:0;color:#fff} header span{color:#949ba4;font-size:12px}
 a{color:#00a8fc}
 .guild{padding:8px 16px} .guild h2{font-size:15px;margin:8px 0;color:#fff}
 .guild h2 small{color:#949ba4;font-weight:normal;margin-left:8px}
 .channels{display:grid;grid-template-columns:repeat(auto-fill,minmax(340px,1fr));gap:12px}
 .channel{background:#2b2d31;border-radius:6px;display:flex;flex-direction:column;height:320px}
 .channel h3{margin:0;padding:8px 10px;font-size:13px;border-bottom:1px solid #1e1f22;color:#f2f3f5}
 .log{overflow-y:auto;padding:6px 10px;flex:1}
 .msg{margin:3px 0;word-wrap:break-word;white-space:pre-wrap} .who{font-weight:600;color:#f2f3f5;margin-right:6px}
 .bot .who{color:#5865f2} .bot .tag{background:#5865f2;color:#fff;border-radius:3px;padding:0 4px;
  font-size:10px;margin-right:6px} .sys{color:#949ba4;font-style:italic}
 .time{color:#949ba4;font-size:11px;margin-right:6px}
 .embed{border-left:4px solid #ed4245;background:#232428;padding:4px 8px;margin:2px 0;border-radius:3px}
 .used{color:#949ba4;font-size:12px} .used b{color:#dbdee1;font-weight:600} .cmd{color:#00a8fc}
 .eph{background:#2e3035;border-left:2px solid #5865f2;padding-left:6px} .ephnote{color:#949ba4;font-size:11px}
 .fail{color:#f23f43}
</style></head>
<body>
<header><h1>Spectacles Discord simulator</h1><span id="stats">connecting...</span>
<span><a href="/_sim">control API</a> &middot; <a href="/_sim/stats">stats</a> &middot;
<a href="/_sim/rest-log">REST log</a></span></header>
<main id="guilds"></main>
<script>
"use strict";
const state = {};  // channel id -> {seen (last view JSON), el}
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
async function getJSON(url) { const r = await fetch(url); if (!r.ok) throw new Error(url + " " + r.status); return r.json(); }
function render(m) {
  const div = document.createElement("div");
  div.className = "msg" + (m.bot ? " bot" : "") + (m.ephemeral ? " eph" : "");
  const t = new Date(m.at).toLocaleTimeString();
  let body = esc(m.text);
  if (m.system) body = '<span class="sys">' + esc(m.author) + " joined the server.</span>";
  else if (m.loading) body = '<span class="sys">' + esc(m.author) + " is thinking…</span>";
  else if (m.kind === "pending") body = '<span class="sys">' + esc(m.text) + "</span>";
  else if (m.kind === "failed") body = '<span class="fail">&#9888; ' + esc(m.text) + "</span>";
  for (const e of (m.embeds || [])) {
    body += '<div class="embed"><b>' + esc(e.title) + "</b> " + esc(e.description) + "</div>";
  }
  if (m.edited) body += ' <span class="time">(edited)</span>';
  const used = m.used ? '<div class="used">&#8627; <b>' + esc(m.used.user) + '</b> used <span class="cmd">' + esc(m.used.command) + "</span></div>" : "";
  const who = m.system ? "" : '<span class="who">' + esc(m.author) + "</span>" + (m.bot ? '<span class="tag">BOT</span>' : "");
  const only = m.ephemeral ? '<div class="ephnote">Only ' + esc(m.used ? m.used.user : "the user") + " can see this</div>" : "";
  div.innerHTML = used + '<span class="time">' + t + "</span>" + who + body + only;
  return div;
}
async function setup() {
  const guilds = await getJSON("/_sim/guilds");
  const main = document.getElementById("guilds");
  main.innerHTML = "";
  for (const g of guilds) {
    const sec = document.createElement("section");
    sec.className = "guild";
    sec.innerHTML = "<h2>" + esc(g.name) + "<small>id " + g.id + " &middot; shard " + g.shard +
      " &middot; <span data-members=" + g.id + ">" + g.member_count + "</span> members &middot; verification level <span data-level=" + g.id + ">" + g.verification_level + "</span></small></h2>";
    const grid = document.createElement("div");
    grid.className = "channels";
    for (const c of g.channels) {
      const box = document.createElement("div");
      box.className = "channel";
      box.innerHTML = "<h3>#" + esc(c.name) + "</h3>";
      const log = document.createElement("div");
      log.className = "log";
      box.appendChild(log);
      grid.appendChild(box);
      state[c.id] = {seen: "", el: log};
    }
    sec.appendChild(grid);
    main.appendChild(sec);
  }
}
async function poll() {
  try {
    for (const [cid, st] of Object.entries(state)) {
      const items = await getJSON("/_sim/channels/" + cid + "/view?limit=100");
      const seen = JSON.stringify(items);
      if (seen === st.seen) continue;
      st.seen = seen;
      const stick = st.el.scrollTop + st.el.clientHeight >= st.el.scrollHeight - 20;
      st.el.replaceChildren(...items.map(render));
      if (stick) st.el.scrollTop = st.el.scrollHeight;
    }
    const guilds = await getJSON("/_sim/guilds");
    for (const g of guilds) {
      const m = document.querySelector("[data-members='" + g.id + "']"); if (m) m.textContent = g.member_count;
      const l = document.querySelector("[data-level='" + g.id + "']"); if (l) l.textContent = g.verification_level;
    }
    const s = await getJSON("/_sim/stats");
    document.getElementById("stats").textContent =
      "connections " + s.connections.open + " · sessions " + s.sessions + " · identifies " + s.identifies +
      " · resumes " + s.resumes + " · dispatches " + s.dispatches_total + " · REST calls " + s.rest_requests +
      " · 429s " + s.rate_limited;
  } catch (e) { document.getElementById("stats").textContent = "simulator unreachable: " + e.message; }
  setTimeout(poll, 1000);
}
setup().then(poll, e => { document.getElementById("stats").textContent = String(e); setTimeout(() => location.reload(), 3000); });
</script></body></html>
"""


def ui_page() -> str:
    """The page served at `/` and `/_sim/ui`."""
    return _PAGE
