// Error types and error documents, as the Lambda Node.js runtime reports them.
//
// Posted to /error and /init/error:   {"errorType", "errorMessage", "trace": [stack lines]}
// Logged ("Invoke Error", ...):        \t{"errorType", "errorMessage", "code"?, <own props>, "stack": [lines]}
import { types } from 'node:util';

function runtimeError(shortName) {
  const cls = class extends Error {};
  Object.defineProperty(cls, 'name', { value: shortName });
  // The stack's first line and error.name read "Runtime.<Name>".
  cls.prototype.name = `Runtime.${shortName}`;
  return cls;
}

export const ImportModuleError = runtimeError('ImportModuleError');
export const HandlerNotFound = runtimeError('HandlerNotFound');
export const MalformedHandlerName = runtimeError('MalformedHandlerName');
export const UserCodeSyntaxError = runtimeError('UserCodeSyntaxError');
export const MalformedStreamingHandler = runtimeError('MalformedStreamingHandler');
export const InvalidStreamingOperation = runtimeError('InvalidStreamingOperation');

export class UnhandledPromiseRejection extends Error {
  constructor(reason, promise) {
    super(reason);
    this.reason = reason;
    this.promise = promise;
  }
}
UnhandledPromiseRejection.prototype.name = 'Runtime.UnhandledPromiseRejection';

export function isError(value) {
  return value instanceof Error || types.isNativeError(value);
}

function clean(text) {
  return String(text).replace(/\x7F/g, '%7F');
}

/** The body posted to /invocation/{id}/error or /init/error. */
export function toRuntimeResponse(error) {
  try {
    if (isError(error)) {
      return {
        errorType: clean(error.name),
        errorMessage: clean(error.message),
        trace: typeof error.stack === 'string' ? clean(error.stack).split('\n') : [],
      };
    }
    return { errorType: typeof error, errorMessage: error.toString(), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
    };
  }
}

function withEnumerableProperties(value) {
  if (!isError(value)) return value;
  const out = Object.assign({ errorType: value.name, errorMessage: value.message, code: value.code }, value);
  if (typeof value.stack === 'string') out.stack = value.stack.split('\n');
  return out;
}

/** "\t" + the error as JSON, the way the runtime logs it after "Invoke Error" / "Uncaught Exception". */
export function toFormatted(error) {
  try {
    return '\t' + JSON.stringify(error, (_key, value) => withEnumerableProperties(value));
  } catch {
    return '\t' + JSON.stringify(toRuntimeResponse(error));
  }
}

export function intoError(value) {
  return isError(value) ? value : new Error(value);
}
