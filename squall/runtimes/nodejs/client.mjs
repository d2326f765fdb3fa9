// Client of the Lambda Runtime API (2018-06-01).
//
// A minimal HTTP/1.1 client on one keep-alive TCP connection (TCP_NODELAY, each request
// written with a single write): node's http module costs about 0.25 ms per request more,
// and an invoke is two requests (POST the result, GET the next event). Responses may use
// Content-Length or chunked encoding; "Connection: close" or a dropped connection makes
// the next request reconnect.
//
// The socket is unref'd while no request is in flight, so between requests the client keeps
// nothing alive: "wait for an empty event loop" (process 'beforeExit') still works. A
// request made while the connection is busy (a fatal error reported while GET next is
// parked) gets a connection of its own.
import net from 'node:net';
import { toRuntimeResponse } from './errors.mjs';

const PREFIX = '/2018-06-01/runtime';
const ERROR_CONTENT_TYPE = 'application/vnd.aws.lambda.error+json';
const HEADER_END = Buffer.from('\r\n\r\n');

function splitAddress(address) {
  if (!address) throw new Error('AWS_LAMBDA_RUNTIME_API is not set');
  const colon = address.lastIndexOf(':');
  if (colon < 0) return [address, 80];
  let host = address.slice(0, colon);
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  return [host, Number(address.slice(colon + 1))];
}

function headerSafe(text) {
  return String(text).replace(/[^\t\x20-\x7e]/g, '?');
}

function serialise(body) {
  try {
    return JSON.stringify(body === undefined ? null : body) ?? 'null';
  } catch {
    throw new Error('Unable to stringify response body');
  }
}

/** Decodes a complete chunked body, or returns null while more bytes are needed. */
function decodeChunked(data) {
  const parts = [];
  let offset = 0;
  for (;;) {
    const lineEnd = data.indexOf('\r\n', offset, 'latin1');
    if (lineEnd < 0) return null;
    const size = parseInt(data.toString('latin1', offset, lineEnd).split(';')[0], 16);
    if (Number.isNaN(size)) throw new Error('Malformed chunked response from the Runtime API');
    offset = lineEnd + 2;
    if (size === 0) {
      // then optional trailer lines, then an empty line
      if (data.length < offset + 2) return null;
      if (data[offset] === 13 && data[offset + 1] === 10) return Buffer.concat(parts);
      return data.indexOf(HEADER_END, offset) >= 0 ? Buffer.concat(parts) : null;
    }
    if (data.length < offset + size + 2) return null;
    parts.push(data.subarray(offset, offset + size));
    offset += size + 2;
  }
}

class Connection {
  constructor(host, port) {
    this.host = host;
    this.port = port;
    this.socket = null;
    this.busy = false;
    this.callback = null;
    this.reset();
  }

  reset() {
    this.head = null; // {status, headers}
    this.pending = null; // bytes before the end of the head
    this.chunks = [];
    this.received = 0;
  }

  connect() {
    const socket = net.connect({ host: this.host, port: this.port, noDelay: true });
    socket.setNoDelay(true);
    // events of a socket this connection has since replaced are ignored
    socket.on('data', (chunk) => {
      if (this.socket === socket) this.onData(chunk);
    });
    socket.on('error', (err) => {
      if (this.socket === socket) this.fail(err);
    });
    socket.on('close', () => {
      if (this.socket === socket) this.fail(new Error('The Runtime API closed the connection'));
    });
    this.socket = socket;
  }

  request(text, callback) {
    this.busy = true;
    this.callback = callback;
    this.reset();
    if (this.socket === null || this.socket.destroyed) this.connect();
    this.socket.ref();
    this.socket.write(text);
  }

  fail(err) {
    const callback = this.callback;
    this.callback = null;
    this.busy = false;
    if (this.socket !== null) {
      const socket = this.socket;
      this.socket = null;
      socket.destroy();
    }
    if (callback !== null) callback(err);
  }

  onData(chunk) {
    if (this.callback === null) return; // nothing asked: ignore
    try {
      if (this.head === null) {
        const data = this.pending === null ? chunk : Buffer.concat([this.pending, chunk]);
        const end = data.indexOf(HEADER_END);
        if (end < 0) {
          this.pending = data;
          return;
        }
        this.pending = null;
        this.head = parseHead(data.toString('latin1', 0, end));
        chunk = data.subarray(end + 4);
        if (this.head.status >= 100 && this.head.status < 200) {
          this.head = null; // an interim response: the real one follows
          if (chunk.length) this.onData(chunk);
          return;
        }
      }
      if (chunk.length) {
        this.chunks.push(chunk);
        this.received += chunk.length;
      }
      const { headers } = this.head;
      let body;
      if (headers['transfer-encoding'] !== undefined && headers['transfer-encoding'].toLowerCase().includes('chunked')) {
        body = decodeChunked(this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks));
        if (body === null) return;
      } else {
        const length = headers['content-length'] === undefined ? 0 : Number(headers['content-length']);
        if (this.received < length) return;
        body = this.chunks.length === 1 ? this.chunks[0] : Buffer.concat(this.chunks, this.received);
        if (body.length > length) body = body.subarray(0, length);
      }
      const { status } = this.head;
      const callback = this.callback;
      this.callback = null;
      this.busy = false;
      this.reset();
      if ((headers.connection || '').toLowerCase() === 'close') {
        const socket = this.socket;
        this.socket = null;
        socket.destroy();
      } else {
        this.socket.unref();
      }
      callback(null, status, headers, body);
    } catch (err) {
      this.fail(err);
    }
  }
}

function parseHead(text) {
  const lines = text.split('\r\n');
  const status = Number(lines[0].split(' ')[1]);
  if (!Number.isInteger(status)) throw new Error(`Malformed response from the Runtime API: ${lines[0]}`);
  const headers = {};
  for (let i = 1; i < lines.length; i++) {
    const colon = lines[i].indexOf(':');
    if (colon > 0) headers[lines[i].slice(0, colon).trim().toLowerCase()] = lines[i].slice(colon + 1).trim();
  }
  return { status, headers };
}

export class RuntimeClient {
  constructor(address) {
    [this.host, this.port] = splitAddress(address);
    this.hostHeader = address;
    this.connection = new Connection(this.host, this.port);
  }

  /** Sends one request; callback(err, status, headers, bodyBuffer). */
  _request(method, path, headers, body, callback) {
    let text = `${method} ${PREFIX}${path} HTTP/1.1\r\nHost: ${this.hostHeader}\r\n`;
    if (headers !== undefined) {
      for (const name in headers) text += `${name}: ${headers[name]}\r\n`;
    }
    text += body === undefined ? '\r\n' : `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
    let connection = this.connection;
    if (connection.busy) connection = new Connection(this.host, this.port); // one-off
    connection.request(text, (err, status, responseHeaders, data) => {
      if (connection !== this.connection && connection.socket !== null) connection.socket.destroy();
      callback(err, status, responseHeaders, data);
    });
  }

  /** The next event: resolves to {headers, body (string)}. */
  nextInvocation() {
    return new Promise((resolve, reject) => {
      this._request('GET', '/invocation/next', undefined, undefined, (err, status, headers, data) => {
        if (err) return reject(err);
        if (status !== 200) {
          return reject(new Error(`Failed to get the next invocation: HTTP ${status}: ${data.toString('utf8')}`));
        }
        resolve({ headers, body: data.toString('utf8') });
      });
    });
  }

  /** Serialises synchronously (throws "Unable to stringify response body"), then posts. */
  postInvocationResponse(result, id, callback) {
    const body = serialise(result);
    this._request('POST', `/invocation/${encodeURIComponent(id)}/response`, { 'Content-Type': 'application/json' }, body,
      (err) => callback(err));
  }

  postInvocationError(error, id, callback) {
    this._postError(`/invocation/${encodeURIComponent(id)}/error`, error, callback);
  }

  postInitError(error, callback) {
    this._postError('/init/error', error, callback);
  }

  _postError(path, error, callback) {
    const document = toRuntimeResponse(error);
    let body;
    try {
      body = JSON.stringify(document);
    } catch {
      body = JSON.stringify({ errorType: String(document.errorType), errorMessage: String(document.errorMessage), trace: [] });
    }
    const headers = {
      'Content-Type': ERROR_CONTENT_TYPE,
      'Lambda-Runtime-Function-Error-Type': headerSafe(document.errorType),
    };
    this._request('POST', path, headers, body, (err) => callback(err));
  }
}
