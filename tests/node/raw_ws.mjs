// A plain `ws` WebSocket for what the SDK never sends: `node raw_ws.mjs '<json-args>'` with
//   {"url": "ws://...", "send": ["not json", ...], "send_delay_ms": 0, "timeout_ms": 10000}
// Opens, sends each text frame of `send` (after send_delay_ms), and prints open, message
// {data}, close {code, reason, open_ms: ms from open to close}, error; exits after the close.

import { WebSocket, bound, emit, exit, parseArgs } from './hub_client.mjs';

const args = parseArgs();
bound(args.timeout_ms ?? 10000);

const socket = new WebSocket(args.url, args.protocols ?? [], { headers: args.headers ?? {} });
let openedAt = null;

socket.on('open', () => {
  openedAt = Date.now();
  emit('open');
  setTimeout(() => {
    for (const frame of args.send ?? []) {
      socket.send(frame);
      emit('sent', { data: frame });
    }
  }, args.send_delay_ms ?? 0);
});
socket.on('message', (data, isBinary) =>
  emit('message', { data: isBinary ? Buffer.from(data).toString('base64') : data.toString('utf8'), binary: isBinary }));
socket.on('unexpected-response', (request, response) => {
  emit('unexpected_response', { status: response.statusCode });
  exit(0);
});
socket.on('error', (error) => emit('error', { message: String(error) }));
socket.on('close', (code, reason) => {
  emit('close', { code, reason: reason.toString('utf8'), open_ms: openedAt === null ? null : Date.now() - openedAt });
  exit(0);
});
