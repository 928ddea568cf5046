# ruff: noqa: E501  (the page is one embedded HTML/JS document)
"""A live HTML view of the simulated guilds: channels and messages, polled from the control API.

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
</style></head>
<body>
<header><h1>Spectacles Discord simulator</h1><span id="stats">connecting...</span>
<span><a href="/_sim">control API</a> &middot; <a href="/_sim/stats">stats</a> &middot;
<a href="/_sim/rest-log">REST log</a></span></header>
<main id="guilds"></main>
<script>
"use strict";
const state = {};  // channel id -> {after, el}
const esc = s => String(s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c]));
async function getJSON(url) { const r = await fetch(url); if (!r.ok) throw new Error(url + " " + r.status); return r.json(); }
function render(m) {
  const div = document.createElement("div");
  const t = new Date(m.timestamp).toLocaleTimeString();
  const bot = m.author.bot ? " bot" : "";
  div.className = "msg" + bot;
  let body = esc(m.content);
  if (m.type === 7) body = '<span class="sys">' + esc(m.author.username) + " joined the server.</span>";
  for (const e of (m.embeds || [])) {
    body += '<div class="embed"><b>' + esc(e.title || "") + "</b> " + esc(e.description || "") + "</div>";
  }
  const who = m.type === 7 ? "" : '<span class="who">' + esc(m.author.global_name || m.author.username) + "</span>" + (bot ? '<span class="tag">BOT</span>' : "");
  div.innerHTML = '<span class="time">' + t + "</span>" + who + body;
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
      state[c.id] = {after: "0", el: log};
    }
    sec.appendChild(grid);
    main.appendChild(sec);
  }
}
async function poll() {
  try {
    for (const [cid, st] of Object.entries(state)) {
      const msgs = await getJSON("/_sim/channels/" + cid + "/messages?after=" + st.after);
      if (!msgs.length) continue;
      const stick = st.el.scrollTop + st.el.clientHeight >= st.el.scrollHeight - 20;
      for (const m of msgs) { st.el.appendChild(render(m)); st.after = m.id; }
      while (st.el.childNodes.length > 300) st.el.removeChild(st.el.firstChild);
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
