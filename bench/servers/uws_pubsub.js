// uWebSockets pub/sub peer of bench/hub_fanout.sh: uWS's own topic fan-out, app.publish.
//   node uws_pubsub.js PORT
// Environment: UWS_MODULE (the npm package to require, installed outside the repository
// by bench/hub_fanout.sh; default @btc-vision/uwebsockets.js), UWS_MAX_BACKPRESSURE
// (bytes a subscriber may have unsent, default 1 MiB like wsvisor's
// limits.send_queue_bytes), UWS_CLOSE_ON_BACKPRESSURE (1: a subscriber over that limit is
// closed, as wsvisor closes a slow consumer; 0: uWS drops what does not fit).
//
// Every WebSocket except /pub subscribes on open: to topic "bench", or with
// ?channels=K to "bench0" .. "bench<K-1>" (K = 0: to none; the memory runs). A text or
// binary message from a /pub connection is app.publish("bench", message) and is then
// acknowledged to its sender with "ok" (so that a publisher can keep K publications
// outstanding, as it does with HTTP answers from wsvisor). GET /stats counts.
'use strict';

const moduleName = process.env.UWS_MODULE || '@btc-vision/uwebsockets.js';
const uWS = require(moduleName);

const port = Number(process.argv[2] || 9001);
const TOPIC = 'bench';
const maxBackpressure = Number(process.env.UWS_MAX_BACKPRESSURE || 1024 * 1024);
const closeOnBackpressureLimit = process.env.UWS_CLOSE_ON_BACKPRESSURE !== '0';
const counts = { subscribers: 0, publishers: 0, subscriptions: 0, publications: 0, closed: 0 };

const app = uWS.App();
app.ws('/*', {
  compression: uWS.DISABLED,
  maxPayloadLength: 1024 * 1024,
  maxBackpressure,
  closeOnBackpressureLimit,
  idleTimeout: 120,
  sendPingsAutomatically: true,
  upgrade: (res, req, context) => {
    const query = new URLSearchParams(req.getQuery() || '');
    const channels = query.has('channels') ? Number(query.get('channels')) : 1;
    res.upgrade(
      { publisher: req.getUrl() === '/pub', channels },
      req.getHeader('sec-websocket-key'),
      req.getHeader('sec-websocket-protocol'),
      req.getHeader('sec-websocket-extensions'),
      context,
    );
  },
  open: (ws) => {
    const data = ws.getUserData();
    if (data.publisher) {
      counts.publishers++;
      return;
    }
    counts.subscribers++;
    if (data.channels === 1) {
      ws.subscribe(TOPIC);
    } else {
      for (let i = 0; i < data.channels; i++) ws.subscribe(TOPIC + i);
    }
    counts.subscriptions += data.channels;
  },
  message: (ws, message, isBinary) => {
    if (!ws.getUserData().publisher) return;
    app.publish(TOPIC, message, isBinary);
    counts.publications++;
    ws.send('ok');
  },
  close: (ws) => {
    const data = ws.getUserData();
    counts.closed++;
    if (data.publisher) {
      counts.publishers--;
    } else {
      counts.subscribers--;
      counts.subscriptions -= data.channels;
    }
  },
});
app.get('/stats', (res) => {
  const body = { ...counts, topic_subscribers: app.numSubscribers(TOPIC), module: moduleName };
  res.writeHeader('Content-Type', 'application/json').end(JSON.stringify(body));
});
app.any('/*', (res) => {
  res.writeStatus('404 Not Found').end('not found');
});

app.listen('127.0.0.1', port, (token) => {
  if (!token) {
    console.error(`uws_pubsub: cannot listen on 127.0.0.1:${port}`);
    process.exit(1);
  }
  console.log(`uws_pubsub: ${moduleName} listening on 127.0.0.1:${port}`);
});
for (const sig of ['SIGINT', 'SIGTERM']) process.on(sig, () => process.exit(0));
