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
//
// A streamed response (awslambda.streamifyResponse) is one chunked POST written piece by
// piece as the handler writes (ResponseSender), ended by the last chunk, with the error
// trailers if the handler failed half way.
import net from 'node:net';
import { toRuntimeResponse } from './errors.mjs';

const PREFIX = '/2018-06-01/runtime';
const ERROR_CONTENT_TYPE = 'application/vnd.aws.lambda.error+json';
const HEADER_END = Buffer.from('\r\n\r\n');
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const ERROR_BODY_HEADER = 'Lambda-Runtime-Function-Error-Body';

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

  /** Writes `text` (a string or bytes); callback(err, status, headers, body) on the answer. */
  request(text, callback, written) {
    this.busy = true;
    this.callback = callback;
    this.reset();
    if (this.socket === null || this.socket.destroyed) this.connect();
    this.socket.ref();
    this.socket.write(text, written);
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

  /** The sender of a streamed response to invocation `id`; nothing is sent before its first send(). */
  responseSender(id) {
    return new ResponseSender(this, id);
  }

  postInvocationError(error, id, callback) {
    this._postError(`/invocation/${encodeURIComponent(id)}/error`, error, callback);
  }

  postInitError(error, callback) {
    this._postError('/init/error', error, callback);
  }

  _postError(path, error, callback) {
    const [document, body] = errorDocument(error);
    const headers = {
      'Content-Type': ERROR_CONTENT_TYPE,
      'Lambda-Runtime-Function-Error-Type': headerSafe(document.errorType),
    };
    this._request('POST', path, headers, body, (err) => callback(err));
  }
}

/** [{errorType, errorMessage, trace}, its JSON]. */
function errorDocument(error) {
  const document = toRuntimeResponse(error);
  try {
    return [document, JSON.stringify(document)];
  } catch {
    return [document, JSON.stringify({ errorType: String(document.errorType), errorMessage: String(document.errorMessage), trace: [] })];
  }
}

/**
 * One streamed response: POST /invocation/{id}/response with Transfer-Encoding: chunked.
 * The head goes out with the first send() (chunk frames built by the caller), so a handler
 * that fails before writing anything can still post to /error. finish() writes the last
 * chunk, with the error trailers when given an error. onAnswer(err, status) is called once
 * the Runtime API has answered (or the connection failed).
 *
 * While the body is open the socket does not keep the process alive by itself (a handler
 * that stops writing without ending the stream lets the event loop empty); from finish()
 * on it does, until the answer.
 */
class ResponseSender {
  constructor(client, id) {
    this.client = client;
    this.id = id;
    this.contentType = 'application/octet-stream';
    this.onAnswer = null;
    this.connection = null;
    this.socket = null;
    this.started = false;
    this.terminated = false; // the last chunk is written (or nothing more may be)
    this.answered = false;
  }

  /** Writes `parts` (Buffers) as they are; written(err) once they are flushed. */
  send(parts, written) {
    if (!this.started) {
      this._open(parts, written);
      return;
    }
    const socket = this.socket;
    if (this.answered || socket === null || socket.destroyed || this.connection.socket !== socket) {
      process.nextTick(written, new Error('The Runtime API connection of the response stream is closed'));
      return;
    }
    const last = parts.length - 1;
    if (last === 0) {
      socket.write(parts[0], written);
      return;
    }
    socket.cork();
    for (let i = 0; i < last; i++) socket.write(parts[i]);
    socket.write(parts[last], written);
    socket.uncork();
  }

  /** The last chunk (opening the request if nothing was sent yet); trailers if `error` is given. */
  finish(error, written) {
    let frame = '0\r\n';
    if (error !== undefined) {
      const [document, body] = errorDocument(error);
      frame += `${ERROR_TYPE_HEADER}: ${headerSafe(document.errorType)}\r\n` +
        `${ERROR_BODY_HEADER}: ${Buffer.from(body).toString('base64')}\r\n`;
    }
    this.terminated = true;
    this.send([Buffer.from(frame + '\r\n', 'latin1')], written);
    if (this.socket !== null && !this.answered) this.socket.ref();
  }

  _open(parts, written) {
    this.started = true;
    const client = this.client;
    const head =
      `POST ${PREFIX}/invocation/${encodeURIComponent(this.id)}/response HTTP/1.1\r\nHost: ${client.hostHeader}\r\n` +
      'Lambda-Runtime-Function-Response-Mode: streaming\r\nTransfer-Encoding: chunked\r\n' +
      `Trailer: ${ERROR_TYPE_HEADER}, ${ERROR_BODY_HEADER}\r\nContent-Type: ${headerSafe(this.contentType)}\r\n\r\n`;
    let connection = client.connection;
    if (connection.busy) connection = new Connection(client.host, client.port); // one-off
    this.connection = connection;
    connection.request(Buffer.concat([Buffer.from(head, 'latin1'), ...parts]), (err, status) => {
      this.answered = true;
      if (connection !== client.connection && connection.socket !== null) connection.socket.destroy();
      if (this.onAnswer !== null) this.onAnswer(err, status);
    }, written);
    this.socket = connection.socket;
    if (!this.terminated) this.socket.unref();
  }
}
