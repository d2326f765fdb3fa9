// console.* as the Lambda Node.js runtime patches it: one log event per call, on stdout.
//
// Text (default):  <ISO time>\t<requestId>\t<LEVEL>\t<util.format(args)>\n   ("\n" inside -> "\r")
// JSON (AWS_LAMBDA_LOG_FORMAT=JSON): {"timestamp","level","requestId","message", errorType?...}\n
// AWS_LAMBDA_LOG_LEVEL (TRACE|DEBUG|INFO|WARN|ERROR|FATAL) drops the levels below it.
// process.stdout / process.stderr are not touched.
import { format } from 'node:util';
import { intoError, isError, toFormatted } from './errors.mjs';

const LEVELS = { TRACE: 1, DEBUG: 2, INFO: 3, WARN: 4, ERROR: 5, FATAL: 6 };

const jsonFormat = (process.env.AWS_LAMBDA_LOG_FORMAT || '').toUpperCase() === 'JSON';
const minimum = LEVELS[(process.env.AWS_LAMBDA_LOG_LEVEL || '').toUpperCase()] || LEVELS.TRACE;

let requestId; // undefined until the first invoke ("undefined" in text lines, as on Lambda)
let tenantId;

export function setRequestContext(id, tenant) {
  requestId = id;
  tenantId = tenant;
}

function errorFields(error) {
  return {
    errorType: error?.constructor?.name ?? 'UnknownError',
    errorMessage: error.message,
    stackTrace: typeof error.stack === 'string' ? error.stack.split('\n') : error.stack,
  };
}

function errorReplacer(_key, value) {
  return isError(value) ? Object.assign(errorFields(value), value) : value;
}

function jsonLine(level, message, params) {
  const record = { timestamp: new Date().toISOString(), level, requestId };
  if (tenantId !== undefined) record.tenantId = tenantId;
  if (params.length === 0) {
    record.message = message;
    try {
      return JSON.stringify(record, errorReplacer);
    } catch {
      record.message = format(message);
      return JSON.stringify(record);
    }
  }
  record.message = format(message, ...params);
  for (const param of params) {
    if (isError(param)) {
      Object.assign(record, errorFields(param));
      break;
    }
  }
  try {
    return JSON.stringify(record, errorReplacer);
  } catch {
    return JSON.stringify({ timestamp: record.timestamp, level, requestId, message: record.message });
  }
}

function emit(level, message, params) {
  let line;
  if (jsonFormat) {
    line = jsonLine(level, message, params);
  } else {
    line = `${new Date().toISOString()}\t${requestId}\t${level}\t${format(message, ...params)}`;
  }
  process.stdout.write(line.replace(/\n/g, '\r') + '\n');
}

function logger(level) {
  if (LEVELS[level] < minimum) return function () {};
  return function (message, ...params) {
    emit(level, message, params);
  };
}

export function patchConsole() {
  console.trace = logger('TRACE');
  console.debug = logger('DEBUG');
  console.info = logger('INFO');
  console.log = logger('INFO');
  console.warn = logger('WARN');
  console.error = logger('ERROR');
  console.fatal = logger('FATAL');
}

/** The runtime's own error lines: "Invoke Error", "Uncaught Exception", "Unhandled Promise Rejection". */
export function logError(label, error) {
  if (LEVELS.ERROR < minimum) return;
  if (jsonFormat) emit('ERROR', label, [intoError(error)]);
  else emit('ERROR', label, [toFormatted(intoError(error))]);
}
