// Squall's Node.js runtime: loads the handler named by _HANDLER from LAMBDA_TASK_ROOT, then
// serves the Lambda Runtime API loop (GET next -> handler -> POST response | error), with the
// behaviour of AWS's Node.js runtime for nodejs18.x / nodejs20.x / nodejs22.x:
//
// * handlers: async (the promise settles the invoke) or callback-style (event, context,
//   callback); callback results are sent once the event loop is empty unless
//   context.callbackWaitsForEmptyEventLoop = false; context.succeed / fail / done send at
//   once; a handler that neither returns a promise nor calls back gets `null` when the event
//   loop empties.
// * an uncaught exception / unhandled rejection is reported for the current request (or as
//   the init error), then the process exits 129 / 128.
// * init failures (Runtime.ImportModuleError, .HandlerNotFound, .MalformedHandlerName,
//   .UserCodeSyntaxError) are logged as "Uncaught Exception", posted to /init/error, exit 129.
// * the global `awslambda` (unless AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA is 1 or true) is
//   set before the handler module loads: awslambda.streamifyResponse(handler, {highWaterMark})
//   marks a response-streaming handler (streaming.mjs), awslambda.HttpResponseStream.from()
//   writes the HTTP integration prelude (Function URLs) before its body.
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { RuntimeClient } from './client.mjs';
import {
  HandlerNotFound,
  ImportModuleError,
  MalformedHandlerName,
  MalformedStreamingHandler,
  UnhandledPromiseRejection,
  UserCodeSyntaxError,
} from './errors.mjs';
import { logError, patchConsole, setRequestContext } from './logging.mjs';

const require = createRequire(import.meta.url);

// Set once a fatal error is being reported: nothing else is posted, no new event is fetched.
let dying = false;

// ---------------------------------------------------------------------------------------
// the global `awslambda`

const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const STREAM_RESPONSE = 'response';
const HTTP_INTEGRATION_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';

class HttpResponseStream {
  /** The stream, set to start with the JSON of `prelude` ({statusCode, headers, cookies}) and 8 NUL bytes. */
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType(HTTP_INTEGRATION_CONTENT_TYPE);
    const metadataPrelude = JSON.stringify(prelude);
    underlyingStream._onBeforeFirstWrite = (write) => {
      write(metadataPrelude);
      write(new Uint8Array(8));
    };
    return underlyingStream;
  }
}

function setupGlobals() {
  const off = process.env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA;
  if (off === '1' || off === 'true') return;
  globalThis.awslambda = {
    ...globalThis.awslambda,
    streamifyResponse(handler, options) {
      handler[HANDLER_STREAMING] = STREAM_RESPONSE;
      if (typeof options?.highWaterMark === 'number') handler[HANDLER_HIGHWATERMARK] = parseInt(options.highWaterMark);
      return handler;
    },
    HttpResponseStream,
  };
}

/** null for an ordinary handler; {highWaterMark} for a response-streaming one. */
function streamingMode(handler) {
  const mode = handler[HANDLER_STREAMING];
  if (mode === undefined || mode === null || mode === false) return null;
  if (mode !== STREAM_RESPONSE) throw new MalformedStreamingHandler('Only response streaming is supported.');
  const highWaterMark = parseInt(handler[HANDLER_HIGHWATERMARK]);
  return { highWaterMark: Number.isNaN(highWaterMark) ? undefined : highWaterMark };
}

// ---------------------------------------------------------------------------------------
// handler loading

const FUNCTION_EXPR = /^([^.]*)\.(.*)$/;

function packageJsonSaysModule(folder) {
  // The nearest package.json decides; a node_modules folder or the root stops the search.
  for (;;) {
    if (folder.endsWith('/node_modules')) return false;
    const file = path.join(folder, 'package.json');
    if (existsSync(file)) {
      try {
        return JSON.parse(readFileSync(file, 'utf8'))?.type === 'module';
      } catch (e) {
        console.warn(`${file} cannot be read, it will be ignored for ES module detection purposes.`, e);
        return false;
      }
    }
    const parent = path.dirname(folder);
    if (parent === folder) return false;
    folder = parent;
  }
}

function requireIfExists(file) {
  return existsSync(file) ? require(file) : undefined;
}

async function importIfExists(file) {
  return existsSync(file) ? await import(pathToFileURL(file).href) : undefined;
}

async function loadModule(appRoot, moduleRoot, moduleName) {
  const base = path.resolve(appRoot, moduleRoot, moduleName);
  const extensionless = requireIfExists(base);
  if (extensionless) return extensionless;
  const esm = packageJsonSaysModule(path.dirname(base));
  if (!esm) {
    const cjs = requireIfExists(base + '.js');
    if (cjs) return cjs;
  }
  const loaded =
    (esm && (await importIfExists(base + '.js'))) ||
    (await importIfExists(base + '.mjs')) ||
    requireIfExists(base + '.cjs');
  if (loaded) return loaded;
  // Last, a package of that name (node_modules, NODE_PATH); fails with node's
  // "Cannot find module '<name>'\nRequire stack:\n- .../index.mjs".
  return require(require.resolve(moduleName, { paths: [appRoot, path.join(appRoot, moduleRoot)] }));
}

export async function loadHandler(appRoot, fullHandler) {
  if (fullHandler.includes('..')) {
    throw new MalformedHandlerName("'../' not allowed in handler name. Use absolute paths instead.");
  }
  const handlerBase = path.basename(fullHandler);
  const moduleRoot = fullHandler.substring(0, fullHandler.indexOf(handlerBase));
  const match = handlerBase.match(FUNCTION_EXPR);
  if (!match || match.length !== 3) throw new MalformedHandlerName('Bad handler');
  const [, moduleName, handlerPath] = match;

  let app;
  try {
    app = await loadModule(appRoot, moduleRoot, moduleName);
  } catch (e) {
    if (e instanceof SyntaxError) throw new UserCodeSyntaxError(e);
    if (e && e.code === 'MODULE_NOT_FOUND') throw new ImportModuleError(e);
    throw e;
  }
  const handler = handlerPath.split('.').reduce((object, key) => object && object[key], app);
  if (!handler) throw new HandlerNotFound(`${fullHandler} is undefined or not exported`);
  if (typeof handler !== 'function') throw new HandlerNotFound(`${fullHandler} is not a function`);
  return handler;
}

// ---------------------------------------------------------------------------------------
// "when the event loop is empty"

const noop = () => {};
let beforeExitListener = noop;

const BeforeExit = {
  set(listener) {
    beforeExitListener = listener;
  },
  reset() {
    beforeExitListener = noop;
  },
  fire() {
    const listener = beforeExitListener;
    beforeExitListener = noop;
    listener();
  },
};

// ---------------------------------------------------------------------------------------
// one invocation

const ENV = {
  functionName: process.env.AWS_LAMBDA_FUNCTION_NAME,
  functionVersion: process.env.AWS_LAMBDA_FUNCTION_VERSION,
  memoryLimitInMB: process.env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
  logGroupName: process.env.AWS_LAMBDA_LOG_GROUP_NAME,
  logStreamName: process.env.AWS_LAMBDA_LOG_STREAM_NAME,
};

function parseHeaderJson(text, name) {
  if (text === undefined) return undefined;
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

/**
 * The Lambda context of one invocation. ``flags.waitForEmptyEventLoop`` backs
 * ``callbackWaitsForEmptyEventLoop``; ``extra`` adds the legacy succeed/fail/done.
 */
function makeContext(headers, id, flags, extra) {
  const deadline = Number(headers['lambda-runtime-deadline-ms']);
  const context = {
    get callbackWaitsForEmptyEventLoop() {
      return flags.waitForEmptyEventLoop;
    },
    set callbackWaitsForEmptyEventLoop(value) {
      flags.waitForEmptyEventLoop = value;
    },
    ...extra,
    ...ENV,
    clientContext: parseHeaderJson(headers['lambda-runtime-client-context'], 'ClientContext'),
    identity: parseHeaderJson(headers['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
    invokedFunctionArn: headers['lambda-runtime-invoked-function-arn'],
    awsRequestId: id,
    getRemainingTimeInMillis: () => deadline - Date.now(),
  };
  const tenantId = headers['lambda-runtime-aws-tenant-id'];
  if (tenantId !== undefined) context.tenantId = tenantId;
  return context;
}

function isPromise(value) {
  return value != null && typeof value.then === 'function';
}

const isDying = () => dying;

class Runtime {
  constructor(client, handler, errorCallbacks, streaming) {
    this.client = client;
    this.handler = handler;
    this.errorCallbacks = errorCallbacks;
    this.scheduleNext = () => this.scheduleIteration();
    if (streaming !== null) {
      this.streaming = streaming; // {highWaterMark, StreamingInvocation}
      this.handleOnce = this.handleOnceStreaming;
    }
  }

  scheduleIteration() {
    setImmediate(() => {
      if (dying) return;
      this.handleOnce().catch((err) => {
        process.stderr.write(`Unexpected Top Level Error: ${err && err.stack ? err.stack : err}\n`);
        process.exit(2);
      });
    });
  }

  /** Per-invocation setup: trace id, log context, fatal-error reporting. */
  begin(headers) {
    const id = headers['lambda-runtime-aws-request-id'];
    const traceId = headers['lambda-runtime-trace-id'];
    if (traceId !== undefined) process.env._X_AMZN_TRACE_ID = traceId;
    else delete process.env._X_AMZN_TRACE_ID;
    const tenantId = headers['lambda-runtime-aws-tenant-id'];
    setRequestContext(id, tenantId);
    this.errorCallbacks.uncaughtException = (error) => this.client.postInvocationError(error, id, () => process.exit(129));
    this.errorCallbacks.unhandledRejection = (error) => this.client.postInvocationError(error, id, () => process.exit(128));
    return id;
  }

  async handleOnce() {
    const { headers, body } = await this.client.nextInvocation();
    const id = this.begin(headers);

    const client = this.client;
    const next = this.scheduleNext;
    let finished = false;
    let callbackCalled = false;
    let waitForEmptyEventLoop = true;

    const succeed = (result) => {
      if (finished || dying) return;
      finished = true;
      BeforeExit.reset();
      client.postInvocationResponse(result, id, next); // throws if the result cannot be serialised
    };
    const fail = (err) => {
      if (finished || dying) return;
      finished = true;
      BeforeExit.reset();
      if (err === undefined || err === null) err = 'handled';
      logError('Invoke Error', err);
      client.postInvocationError(err, id, next);
    };
    const done = (err, result) => (err !== undefined && err !== null ? fail(err) : succeed(result));
    const callback = (err, result) => {
      if (finished || callbackCalled) return;
      callbackCalled = true;
      if (waitForEmptyEventLoop) BeforeExit.set(() => done(err, result));
      else done(err, result);
    };

    // A handler that neither settles a promise nor calls back answers null once idle.
    BeforeExit.set(() => succeed(null));
    try {
      const flags = {
        get waitForEmptyEventLoop() {
          return waitForEmptyEventLoop;
        },
        set waitForEmptyEventLoop(value) {
          waitForEmptyEventLoop = value;
        },
      };
      const context = makeContext(headers, id, flags, { succeed, fail, done });
      const result = this.handler(JSON.parse(body), context, callback);
      if (isPromise(result)) result.then(succeed, fail);
    } catch (err) {
      callback(err);
    }
  }

  /** handleOnce for a handler wrapped by awslambda.streamifyResponse. */
  async handleOnceStreaming() {
    const { headers, body } = await this.client.nextInvocation();
    const id = this.begin(headers);
    const flags = { waitForEmptyEventLoop: true };
    const invocation = new this.streaming.StreamingInvocation(this.client, id, {
      highWaterMark: this.streaming.highWaterMark,
      flags,
      next: this.scheduleNext,
      beforeExit: BeforeExit,
      isDying,
    });
    let event;
    let context;
    try {
      context = makeContext(headers, id, flags, {});
      event = JSON.parse(body);
    } catch (err) {
      invocation.fail(err);
      return;
    }
    invocation.run(this.handler, event, context);
  }
}

// ---------------------------------------------------------------------------------------
// start

export async function start() {
  patchConsole();
  const client = new RuntimeClient(process.env.AWS_LAMBDA_RUNTIME_API);
  const errorCallbacks = {
    uncaughtException: (error) => client.postInitError(error, () => process.exit(129)),
    unhandledRejection: (error) => client.postInitError(error, () => process.exit(128)),
  };
  const fatal = (code) => {
    // exit even if the report never gets an answer
    setTimeout(() => process.exit(code), 2000).unref();
  };
  process.on('uncaughtException', (error) => {
    if (dying) return;
    dying = true;
    fatal(129);
    logError('Uncaught Exception', error);
    errorCallbacks.uncaughtException(error);
  });
  process.on('unhandledRejection', (reason, promise) => {
    if (dying) return;
    dying = true;
    fatal(128);
    let message;
    try {
      message = reason?.toString();
    } catch {
      message = String(typeof reason);
    }
    const error = new UnhandledPromiseRejection(message, promise);
    logError('Unhandled Promise Rejection', error);
    errorCallbacks.unhandledRejection(error);
  });
  process.on('beforeExit', BeforeExit.fire);

  let handler;
  let streaming;
  try {
    setupGlobals();
    handler = await loadHandler(process.env.LAMBDA_TASK_ROOT || process.cwd(), process.env._HANDLER || '');
    streaming = streamingMode(handler);
    if (streaming !== null) streaming.StreamingInvocation = (await import('./streaming.mjs')).StreamingInvocation;
  } catch (error) {
    dying = true;
    fatal(129);
    logError('Uncaught Exception', error);
    client.postInitError(error, () => process.exit(129));
    return;
  }
  new Runtime(client, handler, errorCallbacks, streaming).scheduleIteration();
}
