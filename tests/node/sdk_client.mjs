// Centrifuge SDK clients driven by a test: `node sdk_client.mjs '<json-args>'` with
//   {"url": "ws://127.0.0.1:P/connection/websocket", "timeout_ms": 30000,
//    "clients": [{"name": "alice", "token": "...", "connect": true, ...}, ...]}
// (client options: makeClient in hub_client.mjs). Every event is a JSON line on stdout
// (hub_client.mjs); commands come on stdin, one JSON object per line:
//   {"id": 1, "op": "subscribe", "client": "alice", "channel": "chat:1", "options": {...}}
// ops: add_client (the client's options as "spec"), connect, disconnect, ready,
// subscribe (options: token, recoverable, positioned, joinLeave, data), unsubscribe,
// publish (data; through the subscription when there is one), presence, presence_stats,
// history (limit, since, reverse), rpc (method, data), send (data), state, exit.
// Each command's outcome is {"event":"result","id","ok",("result"|"error")}.

import { bound, emit, exit, makeClient, onExit, parseArgs, readCommands, watchSubscription } from './hub_client.mjs';

const args = parseArgs();
bound(args.timeout_ms ?? 30000);

const clients = new Map(); // name -> Centrifuge
const subscriptions = new Map(); // name + "\n" + channel -> Subscription

function addClient(spec) {
  if (clients.has(spec.name)) throw new Error(`client ${spec.name} exists`);
  const client = makeClient({ url: args.url, ...spec });
  clients.set(spec.name, client);
  if (spec.connect !== false) client.connect();
  return client;
}

function clientOf(command) {
  const client = clients.get(command.client);
  if (!client) throw new Error(`no client ${command.client}`);
  return client;
}

function subscriptionOf(command) {
  return subscriptions.get(command.client + '\n' + command.channel) ?? null;
}

onExit(() => {
  for (const client of clients.values()) client.disconnect();
});

for (const spec of args.clients ?? []) addClient(spec);
emit('started', { clients: [...clients.keys()] });

readCommands(async (command) => {
  switch (command.op) {
    case 'add_client':
      addClient(command.spec);
      return null;
    case 'connect':
      clientOf(command).connect();
      return null;
    case 'disconnect':
      clientOf(command).disconnect();
      return null;
    case 'ready':
      await clientOf(command).ready(command.timeout_ms ?? 5000);
      return clientOf(command).state;
    case 'state': {
      const sub = subscriptionOf(command);
      return { client: clientOf(command).state, subscription: sub ? sub.state : null };
    }
    case 'subscribe': {
      const client = clientOf(command);
      let sub = subscriptionOf(command);
      if (!sub) {
        sub = client.newSubscription(command.channel, command.options ?? {});
        watchSubscription(sub, command.client);
        subscriptions.set(command.client + '\n' + command.channel, sub);
      }
      sub.subscribe();
      return null;
    }
    case 'unsubscribe': {
      const sub = subscriptionOf(command);
      if (!sub) throw new Error(`no subscription to ${command.channel}`);
      sub.unsubscribe();
      return null;
    }
    case 'publish': {
      const sub = subscriptionOf(command);
      return sub ? sub.publish(command.data) : clientOf(command).publish(command.channel, command.data);
    }
    case 'presence': {
      const sub = subscriptionOf(command);
      return sub ? sub.presence() : clientOf(command).presence(command.channel);
    }
    case 'presence_stats': {
      const sub = subscriptionOf(command);
      return sub ? sub.presenceStats() : clientOf(command).presenceStats(command.channel);
    }
    case 'history': {
      const options = {};
      if (command.limit !== undefined) options.limit = command.limit;
      if (command.since !== undefined) options.since = command.since;
      if (command.reverse !== undefined) options.reverse = command.reverse;
      const sub = subscriptionOf(command);
      return sub ? sub.history(options) : clientOf(command).history(command.channel, options);
    }
    case 'rpc':
      return clientOf(command).rpc(command.method, command.data);
    case 'send':
      await clientOf(command).send(command.data);
      return null;
    case 'exit':
      exit(0);
      return null;
    default:
      throw new Error(`unknown op ${command.op}`);
  }
});
