// What the node scenarios of hub mode's e2e tests share (tests/e2e/hub_helpers.py runs
// them as `node tests/node/<scenario>.mjs '<json-args>'`): the real npm SDK `centrifuge`
// and `ws`, loaded from the build directory, and one JSON object per line on stdout for
// every event, so that Python can assert on them.
//
// The packages come from WSVISOR_NODE_MODULES (ctest sets it: <build>/node/node_modules,
// installed by CMake from tests/node/package-lock.json), else <repo>/build/node/node_modules.
// Every scenario is bounded by its `timeout_ms` argument: past it, it prints
// {"event":"timeout"} and exits 3, so that a test never waits on a stuck node process.
// It also exits when its stdin closes (the test is gone).

import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const started = Date.now();

// One event as one JSON line: {"t": ms since start, "event": name, ...fields}.
export function emit(event, fields = {}) {
  process.stdout.write(JSON.stringify({ t: Date.now() - started, event, ...fields }) + '\n');
}

export const nodeModules =
  process.env.WSVISOR_NODE_MODULES || path.resolve(here, '..', '..', 'build', 'node', 'node_modules');

// require() that resolves from the build directory's node_modules (not from this file's).
const requireFromBuild = createRequire(path.join(nodeModules, '..', 'wsvisor-e2e.cjs'));

function load(name) {
  try {
    return requireFromBuild(name);
  } catch (error) {
    emit('fatal', {
      message: `cannot load ${name} from ${nodeModules} (build the project: CMake installs ` +
        `tests/node/package-lock.json there; or set WSVISOR_NODE_MODULES): ${error.message}`,
    });
    process.exit(2);
  }
}

export const WebSocket = load('ws');
export const { Centrifuge } = load('centrifuge');

// The scenario's arguments: one JSON object as argv[2].
export function parseArgs() {
  const text = process.argv[2] || '{}';
  try {
    return JSON.parse(text);
  } catch (error) {
    emit('fatal', { message: `argument is not JSON: ${error.message}` });
    process.exit(2);
  }
}

let cleanup = () => {};

// What runs before any exit (closing clients): set once by the scenario.
export function onExit(fn) {
  cleanup = fn;
}

let exiting = false;

export function exit(code) {
  if (exiting) return;
  exiting = true;
  try {
    cleanup();
  } catch (error) {
    emit('cleanup_error', { message: String(error) });
  }
  emit('exit', { code });
  // Let the close frames leave before the process goes.
  setTimeout(() => process.exit(code), 150);
}

// The overall bound, and the end of the test (stdin closed); errors are events too.
export function bound(timeoutMs) {
  const timer = setTimeout(() => {
    emit('timeout', { timeout_ms: timeoutMs });
    exit(3);
  }, timeoutMs);
  timer.unref();
  process.on('uncaughtException', (error) => {
    emit('fatal', { message: String(error && error.stack ? error.stack : error) });
    exit(1);
  });
  process.on('unhandledRejection', (reason) => {
    emit('unhandled_rejection', { reason: describeError(reason) });
  });
}

// An SDK error ({code, message}, an Error, anything) as JSON.
export function describeError(error) {
  if (error && typeof error === 'object' && 'code' in error)
    return { code: error.code, message: error.message, temporary: error.temporary };
  return { code: null, message: String(error) };
}

// Commands from stdin, one JSON object per line, each handed to `handle` (which may be
// async); its result or error is printed as {"event":"result","id",...}. stdin closing
// ends the scenario.
export function readCommands(handle) {
  let buffer = '';
  process.stdin.setEncoding('utf8');
  process.stdin.on('data', (chunk) => {
    buffer += chunk;
    let newline;
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline).trim();
      buffer = buffer.slice(newline + 1);
      if (line === '') continue;
      let command;
      try {
        command = JSON.parse(line);
      } catch (error) {
        emit('bad_command', { line, message: error.message });
        continue;
      }
      Promise.resolve()
        .then(() => handle(command))
        .then(
          (result) => emit('result', { id: command.id, op: command.op, ok: true, result: result ?? null }),
          (error) => emit('result', { id: command.id, op: command.op, ok: false, error: describeError(error) }),
        );
    }
  });
  process.stdin.on('end', () => {
    emit('stdin_closed');
    exit(0);
  });
}

// A publication context as printed: channel, data, offset, info (who published), tags.
function publication(ctx) {
  const fields = { channel: ctx.channel, data: ctx.data };
  if (ctx.offset !== undefined) fields.offset = ctx.offset;
  if (ctx.info) fields.info = ctx.info;
  if (ctx.tags) fields.tags = ctx.tags;
  return fields;
}

function subscribedFields(ctx) {
  return {
    channel: ctx.channel,
    recovered: ctx.recovered,
    wasRecovering: ctx.wasRecovering,
    recoverable: ctx.recoverable,
    positioned: ctx.positioned,
    hasRecoveredPublications: ctx.hasRecoveredPublications,
    streamPosition: ctx.streamPosition ?? null,
    data: ctx.data ?? null,
  };
}

// Prints every event of a Centrifuge client (`name` tells the clients of one scenario
// apart): connecting/connected/disconnected (code, reason), error, message, and the
// server-side subscriptions' events as server_subscribed, server_publication, ...
export function watchClient(client, name) {
  client.on('connecting', (ctx) => emit('connecting', { client: name, code: ctx.code, reason: ctx.reason }));
  client.on('connected', (ctx) =>
    emit('connected', { client: name, client_id: ctx.client, transport: ctx.transport, data: ctx.data ?? null }));
  client.on('disconnected', (ctx) => emit('disconnected', { client: name, code: ctx.code, reason: ctx.reason }));
  client.on('error', (ctx) =>
    emit('error', { client: name, type: ctx.type, error: describeError(ctx.error), transport: ctx.transport }));
  client.on('message', (ctx) => emit('message', { client: name, data: ctx.data }));
  // Server-side subscriptions (the personal channel, the token's `channels`): the SDK
  // emits their events on the client itself.
  client.on('subscribing', (ctx) => emit('server_subscribing', { client: name, channel: ctx.channel }));
  client.on('subscribed', (ctx) => emit('server_subscribed', { client: name, ...subscribedFields(ctx) }));
  client.on('unsubscribed', (ctx) => emit('server_unsubscribed', { client: name, channel: ctx.channel }));
  client.on('publication', (ctx) => emit('server_publication', { client: name, ...publication(ctx) }));
  client.on('join', (ctx) => emit('server_join', { client: name, channel: ctx.channel, info: ctx.info }));
  client.on('leave', (ctx) => emit('server_leave', { client: name, channel: ctx.channel, info: ctx.info }));
}

// Prints every event of a client-side subscription as sub_<event>.
export function watchSubscription(sub, name) {
  sub.on('subscribing', (ctx) =>
    emit('sub_subscribing', { client: name, channel: ctx.channel, code: ctx.code, reason: ctx.reason }));
  sub.on('subscribed', (ctx) => emit('sub_subscribed', { client: name, ...subscribedFields(ctx) }));
  sub.on('unsubscribed', (ctx) =>
    emit('sub_unsubscribed', { client: name, channel: ctx.channel, code: ctx.code, reason: ctx.reason }));
  sub.on('error', (ctx) =>
    emit('sub_error', { client: name, channel: ctx.channel, type: ctx.type, error: describeError(ctx.error) }));
  sub.on('publication', (ctx) => emit('sub_publication', { client: name, ...publication(ctx) }));
  sub.on('join', (ctx) => emit('sub_join', { client: name, channel: ctx.channel, info: ctx.info }));
  sub.on('leave', (ctx) => emit('sub_leave', { client: name, channel: ctx.channel, info: ctx.info }));
}

// A Centrifuge client from a scenario's description:
//   {name, url, token?, get_token?: "none" | "list" | "hang" | "null", refresh_tokens?: [...],
//    data?, min_reconnect_delay_ms?, max_reconnect_delay_ms?, timeout_ms?, debug?}
// get_token "list" answers each getToken call with the next of refresh_tokens (the last
// one again when they run out), "hang" never answers (the SDK then cannot refresh, so the
// server's expiry is what ends the connection), "null" answers null (the SDK's way to
// say unauthorized), "none" (default) sets no getToken at all. Every call is an event
// get_token {n}.
export function makeClient(spec) {
  const name = spec.name;
  const options = {
    websocket: WebSocket,
    debug: spec.debug === true,
    minReconnectDelay: spec.min_reconnect_delay_ms ?? 200,
    maxReconnectDelay: spec.max_reconnect_delay_ms ?? 1000,
    timeout: spec.timeout_ms ?? 5000,
  };
  // How long the SDK waits past the server's ping interval before it gives up on a
  // silent server (its own default is 10 s).
  if (spec.max_server_ping_delay_ms !== undefined) options.maxServerPingDelay = spec.max_server_ping_delay_ms;
  if (spec.token !== undefined) options.token = spec.token;
  if (spec.data !== undefined) options.data = spec.data;
  const mode = spec.get_token ?? 'none';
  let calls = 0;
  const tokens = spec.refresh_tokens ?? [];
  if (mode === 'list') {
    options.getToken = async () => {
      calls += 1;
      emit('get_token', { client: name, n: calls });
      return tokens.length === 0 ? '' : tokens[Math.min(calls, tokens.length) - 1];
    };
  } else if (mode === 'hang') {
    options.getToken = () => {
      calls += 1;
      emit('get_token', { client: name, n: calls });
      return new Promise(() => {});
    };
  } else if (mode === 'null') {
    options.getToken = async () => {
      calls += 1;
      emit('get_token', { client: name, n: calls });
      return null;
    };
  }
  const client = new Centrifuge(spec.url, options);
  watchClient(client, name);
  return client;
}
