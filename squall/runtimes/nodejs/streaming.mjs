// Response streaming: handlers wrapped by awslambda.streamifyResponse(handler) are called as
// handler(event, responseStream, context), as on AWS's Node.js runtime. Loaded only for such
// handlers.
//
// * responseStream is a Writable; what the handler writes is sent as it comes, as the chunks
//   of POST /invocation/{id}/response (Lambda-Runtime-Function-Response-Mode: streaming),
//   one write in flight at a time (the stream buffers up to its highWaterMark, then write()
//   returns false until 'drain'). Content-Type: application/octet-stream, or what
//   setContentType() set before the first write; anything but a string or bytes is written
//   as JSON.
// * responseStream.end() completes the response; the handler's promise must settle too
//   (its value is ignored, with a warning).
// * a handler that throws or rejects before anything was written posts to /error as usual;
//   after, the body ends with the trailers Lambda-Runtime-Function-Error-Type and
//   Lambda-Runtime-Function-Error-Body (base64 of the error document). A handler that is not
//   async fails with "Streaming does not support non-async handlers."; one that settles (or
//   lets the event loop empty) without ending the stream fails with "Response stream is not
//   finished.".
// * the next event is fetched once the event loop is empty, unless
//   context.callbackWaitsForEmptyEventLoop = false.
import { Writable } from 'node:stream';
import { InvalidStreamingOperation } from './errors.mjs';
import { logError } from './logging.mjs';

const CRLF = Buffer.from('\r\n');
const noop = () => {};

function chunkHead(size) {
  return Buffer.from(`${size.toString(16)}\r\n`, 'latin1');
}

function notFinished() {
  return new Error('Response stream is not finished.');
}

class ResponseStream extends Writable {
  #sender;
  #invocation;
  #writeCalled = false;

  constructor(invocation, highWaterMark) {
    super(highWaterMark === undefined ? undefined : { highWaterMark });
    this.#invocation = invocation;
    this.#sender = invocation.sender;
    // Lambda's HttpResponseStream.from() sets this hook: it writes the prelude first.
    this._onBeforeFirstWrite = undefined;
    this.on('error', noop); // a failed stream is reported as the invocation's error
  }

  setContentType(contentType) {
    if (this.#writeCalled || this.writableEnded) {
      throw new InvalidStreamingOperation('Cannot set content-type, too late.');
    }
    this.#sender.contentType = String(contentType);
  }

  #beforeFirstWrite() {
    this.#writeCalled = true;
    if (typeof this._onBeforeFirstWrite === 'function') {
      this._onBeforeFirstWrite((chunk) => Writable.prototype.write.call(this, chunk));
    }
  }

  write(chunk, encoding, callback) {
    if (this.writableEnded && !this.destroyed) {
      // A stray write after end() does not undo the response that end() completes (or the
      // error it ends with): the write alone fails.
      if (typeof encoding === 'function') callback = encoding;
      if (typeof callback === 'function') {
        const err = new Error('write after end');
        err.code = 'ERR_STREAM_WRITE_AFTER_END';
        process.nextTick(callback, err);
      }
      return false;
    }
    if (typeof chunk !== 'string' && !(chunk instanceof Uint8Array)) chunk = JSON.stringify(chunk);
    if (!this.#writeCalled && !this.writableEnded) this.#beforeFirstWrite();
    return super.write(chunk, encoding, callback);
  }

  end(chunk, encoding, callback) {
    if (typeof chunk === 'function') {
      callback = chunk;
      chunk = undefined;
    } else if (typeof encoding === 'function') {
      callback = encoding;
      encoding = undefined;
    }
    if (chunk !== undefined && chunk !== null) this.write(chunk, encoding);
    else if (!this.#writeCalled && !this.writableEnded) this.#beforeFirstWrite(); // e.g. a prelude with no body
    return super.end(callback);
  }

  _write(chunk, _encoding, callback) {
    if (chunk.length === 0) callback();
    else this.#sender.send([chunkHead(chunk.length), chunk, CRLF], callback);
  }

  _writev(entries, callback) {
    let size = 0;
    const parts = [null];
    for (const { chunk } of entries) {
      if (chunk.length === 0) continue;
      size += chunk.length;
      parts.push(chunk);
    }
    if (size === 0) return callback();
    parts[0] = chunkHead(size);
    parts.push(CRLF);
    this.#sender.send(parts, callback);
  }

  _final(callback) {
    this.#sender.finish(this.#invocation.failure, callback);
  }

  _destroy(err, callback) {
    // destroyed half way (by the handler, or a failed write): end the body with the error
    const sender = this.#sender;
    if (sender.started && !sender.terminated) sender.finish(err ?? notFinished(), noop);
    callback(err);
  }
}

/** One invocation of a streaming handler. */
export class StreamingInvocation {
  /**
   * client: the RuntimeClient; next(): fetch the next event; flags.waitForEmptyEventLoop:
   * context.callbackWaitsForEmptyEventLoop; beforeExit: the runtime's BeforeExit;
   * isDying(): a fatal error is being reported.
   */
  constructor(client, id, { highWaterMark, flags, next, beforeExit, isDying }) {
    this.client = client;
    this.id = id;
    this.flags = flags;
    this.next = next;
    this.beforeExit = beforeExit;
    this.isDying = isDying;
    this.sender = client.responseSender(id);
    this.sender.onAnswer = () => this.#answered();
    this.stream = new ResponseStream(this, highWaterMark);
    this.failure = undefined; // the error the stream's trailers report
    this.settled = false; // the handler is done with the invocation
    this.answered = false; // the Runtime API has the response or the error
    this.nextScheduled = false;
  }

  run(handler, event, context) {
    // The event loop emptied before the invocation was done.
    this.beforeExit.set(() => (this.stream.writableFinished ? this.#settle() : this.fail(notFinished())));
    let result;
    try {
      result = handler(event, this.stream, context);
    } catch (err) {
      this.fail(err);
      return;
    }
    if (result == null || typeof result.then !== 'function') {
      this.fail(new Error('Streaming does not support non-async handlers.'));
      return;
    }
    result.then((value) => this.#resolved(value), (err) => this.fail(err));
  }

  #resolved(value) {
    if (this.settled) return;
    if (value !== undefined) console.warn('Streaming handlers ignore return values.');
    const stream = this.stream;
    if (stream.writableFinished) {
      this.#settle();
    } else if (stream.destroyed) {
      this.fail(notFinished());
    } else {
      // ended later (e.g. by a pipeline the handler did not wait for), or never
      stream.once('finish', () => this.#settle());
      stream.once('close', () => {
        if (!stream.writableFinished) this.fail(notFinished());
      });
    }
  }

  /** The handler failed (threw, rejected, or left the stream unfinished). */
  fail(err) {
    if (this.settled) return;
    this.settled = true;
    if (this.isDying()) return;
    if (err === undefined || err === null) err = 'handled';
    logError('Invoke Error', err);
    const { stream, sender } = this;
    if (!sender.started && (stream.destroyed || !stream.writableEnded)) {
      // nothing sent yet: an ordinary error response
      sender.terminated = true;
      stream.destroy();
      this.client.postInvocationError(err, this.id, () => this.#answered());
    } else if (sender.started && !sender.terminated && !stream.writableEnded && !stream.destroyed) {
      // half way: what was written, then the last chunk with the error trailers
      this.failure = err;
      Writable.prototype.end.call(stream);
    } // else the response is complete already (or its end is on the way)
    this.#maybeNext();
  }

  #settle() {
    if (this.settled) return;
    this.settled = true;
    this.#maybeNext();
  }

  #answered() {
    this.answered = true;
    this.#maybeNext();
  }

  #maybeNext() {
    if (!this.settled || !this.answered || this.nextScheduled || this.isDying()) return;
    this.nextScheduled = true;
    this.beforeExit.reset();
    if (this.flags.waitForEmptyEventLoop) this.beforeExit.set(this.next);
    else this.next();
  }
}
