// The original JavaScript Spectacles relay, pointed at the simulator (bench figure 6).
//
// @spectacles/gateway shards receive the Discord gateway (zlib-stream, JSON) and emit each
// dispatch's decoded `d`; each relayed event is published with @spectacles/brokers' Amqp broker,
// which re-encodes it (JSON here, see BROKER_SERIALIZE) into the direct exchange named after the
// group, routing key = event name: how the original system relays.
//
// Harness-only adaptations (the packages are unchanged on disk), see bench/README.md:
//   1. Gateway.prototype.fetch GETs the simulator's /api/v10/gateway/bot instead of the
//      hard-coded https://discordapp.com/api/v6/gateway/bot.
//   2. Shards connect with ?v=10 (Shard hard-codes version 6, which the simulator refuses).
//   3. IDENTIFY carries `intents` (v6 had none; v10 requires them).
//
// Environment: SIM_API_URL, DISCORD_TOKEN, AMQP_URL, BROKER_GROUP, DISCORD_SHARD_COUNT,
// DISCORD_SHARD_IDS (comma list, default all), DISCORD_INTENTS (integer), DISCORD_EVENTS (comma list), BROKER_SERIALIZE (json | msgpack),
// BROKER_PERSISTENT (0 | 1). Prints one `READY {...}` line once the broker is connected.
'use strict';

const fetch = require('node-fetch');
const { Gateway, Shard } = require('@spectacles/gateway');
const { Amqp } = require('@spectacles/brokers');

const env = (name, fallback) => {
  const value = process.env[name];
  if (value === undefined || value === '') {
    if (fallback === undefined) throw new Error(`missing environment variable ${name}`);
    return fallback;
  }
  return value;
};

const SIM_API_URL = env('SIM_API_URL').replace(/\/$/, '');
const TOKEN = env('DISCORD_TOKEN');
const AMQP_URL = env('AMQP_URL', 'amqp://guest:guest@localhost:5672/');
const GROUP = env('BROKER_GROUP');
const SHARD_COUNT = Number(env('DISCORD_SHARD_COUNT', '1'));
const SHARD_IDS = env('DISCORD_SHARD_IDS', '')
  .split(',').map(s => s.trim()).filter(Boolean).map(Number);
const INTENTS = Number(env('DISCORD_INTENTS', String((1 << 0) | (1 << 9) | (1 << 15))));
const EVENTS = env('DISCORD_EVENTS', 'MESSAGE_CREATE').split(',').map(s => s.trim()).filter(Boolean);
const SERIALIZE = env('BROKER_SERIALIZE', 'json');
const PERSISTENT = env('BROKER_PERSISTENT', '0') === '1';

// 1. Discovery from the simulator instead of discordapp.com/api/v6.
Gateway.prototype.fetch = async function fetchFromSimulator(force = false) {
  if (!force && this._data) return this;
  const res = await fetch(`${SIM_API_URL}/gateway/bot`, {
    headers: { Authorization: `Bot ${this.token}`, Accept: 'application/json' },
  });
  if (!res.ok) throw new Error(`GET /gateway/bot -> ${res.status} ${res.statusText}`);
  this._data = await res.json();
  if (!this._shards || this._shards <= 0) this._shards = this._data.shards;
  return this;
};

// 2. Gateway API v10 (the connect URL is built from `this.version`).
const originalConnect = Shard.prototype.connect;
Shard.prototype.connect = function connectV10() {
  this.version = 10;
  return originalConnect.call(this);
};

// 3. IDENTIFY with intents. Gateway's constructor wraps `this.identify` (found on the prototype)
// in its 1-per-5s throttle, so the patch keeps the original identify pacing.
const originalIdentify = Gateway.prototype.identify;
Gateway.prototype.identify = function identifyWithIntents(shard, packet) {
  return originalIdentify.call(this, shard, Object.assign({ intents: INTENTS }, packet));
};

async function main() {
  const serialize = SERIALIZE === 'json' ? data => Buffer.from(JSON.stringify(data)) : undefined;
  const broker = new Amqp(GROUP, serialize ? { serialize } : {});
  broker.on('error', err => console.error('broker error', err && err.message));
  // @spectacles/brokers prefixes "amqp://" itself.
  await broker.connect(AMQP_URL.replace(/^amqps?:\/\//, ''));
  const options = PERSISTENT ? { persistent: true } : {};

  const gateway = new Gateway(TOKEN, SHARD_COUNT);
  const shards = [];
  const ids = SHARD_IDS.length ? SHARD_IDS : [...Array(SHARD_COUNT).keys()];
  for (const id of ids) {
    const shard = new Shard(gateway, id);
    shard.on('error', err => console.error(`shard ${id} error`, err && err.message));
    shard.on('close', event => console.error(`shard ${id} closed`, event && event.code));
    for (const event of EVENTS) shard.on(event, d => broker.publish(event, d, options));
    shards.push(shard);
  }
  let zlib = 'pako';
  try {
    require.resolve('zlib-sync');
    require('zlib-sync');
    zlib = 'zlib-sync';
  } catch (_) { /* pako fallback, as the gateway does */ }
  console.log('READY ' + JSON.stringify({ shards: shards.length, zlib, serialize: SERIALIZE, persistent: PERSISTENT }));
}

process.on('SIGTERM', () => process.exit(0));
process.on('SIGINT', () => process.exit(0));
main().catch(err => {
  console.error('relay failed:', err && err.stack ? err.stack : err);
  process.exit(1);
});
